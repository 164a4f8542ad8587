/*
 * broker.h — what ties the bridge together: HTTP requests to sessions,
 * sessions to channels, channels to the database.  It carries out setups
 * (authenticate, authorize, LISTEN, positions, resume) and work requests
 * (subscribe, unsubscribe, send) with queries on the pool, and turns every
 * NOTIFY into a packet for the channel's subscribers, in order.
 */
#ifndef COMET_BROKER_H
#define COMET_BROKER_H

#include <stddef.h>

#include "http.h"
#include "loop.h"
#include "session.h"

typedef struct Broker Broker;

typedef struct BrokerOptions
{
	const char *conninfo;
	int			pool_size;
	size_t		max_sessions;
	const char *node_id;		/* sid prefix, or NULL */
	/* the SQL functions, already checked: schema-qualified names */
	const char *auth_function;
	const char *authorize_function;
	const char *receive_function;
	const char *session_function;	/* NULL: no presence calls */
	SessionLimits limits;
} BrokerOptions;

Broker	   *broker_create(Loop *loop, const BrokerOptions *options,
						  char *err, size_t errlen);
/* The hooks the HTTP side calls; pass them to http_create. */
HttpHooks	broker_http_hooks(Broker *broker);
void		broker_attach_http(Broker *broker, Http *http);
/* End every session with system-shutdown (SIGTERM). */
void		broker_shutdown(Broker *broker);
void		broker_destroy(Broker *broker);

#endif							/* COMET_BROKER_H */
