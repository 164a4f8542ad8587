/*
 * pg.h — the bridge's database side: one LISTEN connection shared by every
 * session, and a small pool of connections for queries (authentication,
 * authorization, sends, catch-up).  All libpq calls are non-blocking and
 * driven by the event loop, so a slow query never stalls delivery.
 *
 * A lost connection is reopened with exponential backoff.  When the LISTEN
 * connection comes back it LISTENs again on every channel and then calls
 * PgHooks.connected, so that the host can catch up each channel from the
 * packet table.  Every connection sets application_name to comet-bridge.
 */
#ifndef COMET_PG_H
#define COMET_PG_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "loop.h"

typedef struct Pg Pg;

typedef struct PgHooks
{
	/* A NOTIFY arrived on a channel we LISTEN on. */
	void		(*notify) (void *ctx, const char *channel, const char *payload);
	/* LISTEN on channel has taken effect (also after a reconnect). */
	void		(*listening) (void *ctx, const char *channel);
	/* The LISTEN connection is up and listening on every channel again. */
	void		(*connected) (void *ctx);
	/* The LISTEN connection was lost; it is being reopened. */
	void		(*disconnected) (void *ctx, const char *why);
	void	   *ctx;
} PgHooks;

/*
 * A query's outcome, called exactly once.  result is NULL when the query
 * could not run (the connection was lost); otherwise it is owned by pg and
 * cleared when the handler returns.
 */
typedef void (*PgResultHandler) (void *arg, PGresult *result);

/*
 * Connect (asynchronously) with conninfo, which may be empty: libpq's PG*
 * environment variables apply.  pool_size query connections.  Returns NULL
 * with a reason in err only for invalid arguments; connection failures are
 * retried.
 */
Pg		   *pg_create(Loop *loop, const char *conninfo, int pool_size,
					  const PgHooks *hooks, char *err, size_t errlen);
/* Close every connection; pending queries get a NULL result. */
void		pg_destroy(Pg *pg);

/* LISTEN / UNLISTEN channel (queued until connected). */
void		pg_listen(Pg *pg, const char *channel);
void		pg_unlisten(Pg *pg, const char *channel);
bool		pg_listen_connected(const Pg *pg);
/* The LISTEN connection's backend pid, 0 when not connected. */
int			pg_listen_backend_pid(const Pg *pg);
size_t		pg_listen_count(const Pg *pg);
unsigned long pg_reconnects(const Pg *pg);

/*
 * Queue a parameterised query (text parameters, text results) for the
 * next free pool connection.  The strings are copied.
 */
void		pg_query(Pg *pg, const char *sql, int nparams,
					 const char *const *params, PgResultHandler handler, void *arg);

#endif							/* COMET_PG_H */
