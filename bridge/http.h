/*
 * http.h — the bridge's HTTP side: libmicrohttpd in external-epoll mode,
 * driven by the bridge's event loop.
 *
 * Routes: POST /comet (the protocol; the body goes to HttpHooks.comet),
 * OPTIONS (CORS preflight), GET /healthz, GET /metrics, GET /comet.js and
 * static files from --static.  A /comet request is answered with
 * http_answer, at once or later: until then its connection is suspended
 * (MHD_suspend_connection), never a blocked thread.  A held request's
 * socket is watched for hang-up, so a packet is never written to a client
 * that has gone (HttpHooks.client_gone tells the owner).
 */
#ifndef COMET_HTTP_H
#define COMET_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "answer.h"
#include "buf.h"
#include "loop.h"
#include "protocol.h"

typedef struct Http Http;
typedef struct HttpRequest HttpRequest;

typedef struct HttpHooks
{
	/*
	 * A complete POST /comet body.  url_sid is the ?sid= parameter or NULL.
	 * The hook must eventually call http_answer(req, ...) exactly once.
	 */
	void		(*comet) (void *ctx, HttpRequest *req, const char *url_sid,
						  const char *body, size_t len);
	/* The client of a request passed to http_hold hung up. */
	void		(*client_gone) (void *ctx, HttpRequest *req, void *owner);
	/* GET /healthz: status (200 or 503) and a JSON body. */
	int			(*healthz) (void *ctx, Buf *body);
	/* GET /metrics: Prometheus text. */
	void		(*metrics) (void *ctx, Buf *body);
	/*
	 * Answers due: give up to max of them now (with http_answer); how
	 * many were given.  Called between runs of libmicrohttpd until it
	 * gives none, so that answers are written while later ones are built.
	 */
	size_t		(*flush) (void *ctx, size_t max);
	void	   *ctx;
} HttpHooks;

typedef struct HttpOptions
{
	const char *host;			/* an IPv4 or IPv6 address to listen on */
	int			port;
	size_t		max_body;		/* larger bodies: 413 request-too-large */
	unsigned	connection_limit;
	unsigned	per_address_limit;	/* connections per client address; 0: none */
	/*
	 * libmicrohttpd's memory pool per connection: request headers, the
	 * response's headers.  libmicrohttpd 0.9.75 zeroes all of it between
	 * keep-alive requests, so it is also the RSS of an idle connection.
	 */
	size_t		connection_memory;
	const char *static_dir;		/* NULL: no static files */
	const char *client_js;		/* served as /comet.js; NULL: the built-in client */
	const char *const *allow_origins;	/* CORS origins, NULL-terminated */
} HttpOptions;

/* Error answers sent so far with this condition (for /metrics). */
unsigned long http_error_count(const Http *http, ProtoCondition condition);

/* Listen and serve, or NULL with a reason in err. */
Http	   *http_create(Loop *loop, const HttpOptions *options,
						const HttpHooks *hooks, char *err, size_t errlen);
/*
 * From now on answer everything with system-shutdown without calling the
 * hooks (their owner is about to be freed).
 */
void		http_refuse_all(Http *http);
/* Stop accepting new connections (SIGTERM). */
void		http_stop_accepting(Http *http);
/* Close everything; every suspended request must have been answered. */
void		http_destroy(Http *http);

/*
 * Answer a /comet request with answer's status and JSON body, which the
 * response shares (it takes a reference until the body is written).
 */
void		http_answer(Http *http, HttpRequest *req, Answer *answer);
/* The same with a body that is copied. */
void		http_answer_bytes(Http *http, HttpRequest *req, int status,
							  const char *body, size_t len);
/* Watch a suspended request's socket for hang-up until it is answered. */
void		http_hold(Http *http, HttpRequest *req, void *owner);

/* Requests not yet answered (suspended), for /metrics. */
size_t		http_pending(const Http *http);
/* The port actually bound (for --listen 127.0.0.1:0). */
int			http_port(const Http *http);

#endif							/* COMET_HTTP_H */
