/*
 * http.c — libmicrohttpd glue: routes, bodies, suspend/resume, the held
 * socket watch, CORS and static files.
 *
 * libmicrohttpd runs in external mode with its own epoll set, whose fd is
 * one more fd in the bridge's loop; MHD_run is called when it is readable
 * and when MHD's own timeout expires.  A /comet request whose answer is
 * not known when its body is complete is suspended; http_answer stores the
 * response and resumes it, and MHD calls the access handler once more to
 * queue it.  Every request's state lives in one HttpRequest, freed when
 * MHD says the request is complete.
 *
 * Answers in batches.  A packet for 10,000 held polls makes 10,000 answers
 * due (HttpHooks.flush).  http_idle asks for HTTP_FLUSH_FIRST of them and
 * runs MHD, then for all the others: the first answers are on the wire at
 * once and their clients read them while the rest are built.  Not more
 * batches than two, because every MHD_run that resumes anything walks
 * MHD's whole list of suspended connections (a few ms at 10,000, mostly
 * cache and TLB misses).
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client_js.h"
#include "log.h"
#include "mem.h"
#include "protocol.h"

/*
 * A connection that sends nothing for this long is closed: an idle
 * keep-alive connection, or one stalled mid-request (slowloris).  Held
 * polls and requests waiting for the database are suspended and exempt.
 */
#define HTTP_IDLE_TIMEOUT_S 30

/*
 * One client connection, watched for hang-up (EPOLLRDHUP) from its start to
 * its end, so that holding and answering a poll costs no epoll_ctl.  The
 * first hang-up ends the watch: the connection carries no more requests.
 */
typedef struct HttpConnWatch
{
	Http	   *http;
	int			fd;				/* -1 once the watch has ended */
	bool		hung_up;		/* the client has closed its side */
	HttpRequest *held;			/* the request held on it, if any */
} HttpConnWatch;

struct HttpRequest
{
	Http	   *http;
	struct MHD_Connection *connection;
	Buf			body;
	bool		is_comet;		/* POST /comet */
	bool		too_large;
	bool		dispatched;		/* the body went to HttpHooks.comet */
	bool		suspended;
	bool		gone;			/* the client hung up while held */
	bool		close_after;	/* close the connection after the answer */
	struct MHD_Response *response;	/* ready to be queued */
	unsigned	status;
	HttpConnWatch *watch;		/* its connection's, while held */
	HttpRequest *next_hung_up;	/* in Http.hung_up */
	void	   *owner;
	const char *cors_origin;	/* an allowed Origin, or NULL */
};

struct Http
{
	Loop	   *loop;
	struct MHD_Daemon *daemon;
	int			epoll_fd;
	LoopTimer	timer;
	HttpHooks	hooks;
	size_t		max_body;
	char	   *static_dir;
	char	   *client_js;
	size_t		client_js_len;
	const char *const *allow_origins;
	size_t		pending;
	int			port;
	bool		resumed;		/* MHD_run must see resumed connections */
	HttpRequest *hung_up;		/* held after their client had gone */
	unsigned	connection_limit;
	unsigned long errors[PROTO_CONDITION_COUNT];	/* error answers sent, by condition */
	bool		was_full;		/* at the connection limit after the last run */
	unsigned	zero_timeouts;	/* timeouts of 0 in a row without progress */
	unsigned long progress;		/* access handler calls and completions so far */
	unsigned long progress_seen;	/* ... at the last run */
};

static void http_drive(Http *http);
static void http_unhold(HttpRequest *req);

/* The buffer through which a shared answer in pieces is written. */
#define HTTP_ANSWER_BLOCK 4096

/* The due answers built before the first MHD_run; then all the others. */
#define HTTP_FLUSH_FIRST 256

/* libmicrohttpd's own messages (a client that sent garbage, ...): debug. */
static void
http_mhd_log(void *cls, const char *fmt, va_list args)
{
	(void) cls;
	log_vline(LOG_DEBUG, fmt, args);
}

/* ---- responses -------------------------------------------------------- */

static struct MHD_Response *
http_response(const char *body, size_t len, const char *content_type)
{
	struct MHD_Response *response =
		MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_MUST_COPY);

	if (response == NULL)
	{
		fprintf(stderr, "comet-bridge: out of memory\n");
		abort();
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	return response;
}

static void
http_add_cors(const HttpRequest *req, struct MHD_Response *response)
{
	if (req->cors_origin == NULL)
		return;
	MHD_add_response_header(response, "Access-Control-Allow-Origin", req->cors_origin);
	MHD_add_response_header(response, "Vary", "Origin");
}

/* Queue a response now (inside the access handler) and release it. */
static enum MHD_Result
http_queue(HttpRequest *req, unsigned status, struct MHD_Response *response)
{
	enum MHD_Result result;

	http_add_cors(req, response);
	if (req->close_after)
		MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
	result = MHD_queue_response(req->connection, status, response);
	MHD_destroy_response(response);
	return result;
}

/*
 * Count an answer that is an error ({"error":"<condition>",...}): every
 * answer passes through here or http_queue_error, so /metrics sees them all.
 */
static void
http_count_error(Http *http, const char *body, size_t len)
{
	static const char prefix[] = "{\"error\":\"";
	int			c;

	if (len < sizeof(prefix) || memcmp(body, prefix, sizeof(prefix) - 1) != 0)
		return;
	for (c = PROTO_BAD_REQUEST; c < PROTO_CONDITION_COUNT; c++)
	{
		const char *name = proto_condition_name((ProtoCondition) c);
		size_t		n = strlen(name);

		if (len >= sizeof(prefix) - 1 + n + 1 &&
			memcmp(body + sizeof(prefix) - 1, name, n) == 0 && body[sizeof(prefix) - 1 + n] == '"')
		{
			http->errors[c]++;
			return;
		}
	}
}

unsigned long
http_error_count(const Http *http, ProtoCondition condition)
{
	return http->errors[condition];
}

static enum MHD_Result
http_queue_error(HttpRequest *req, ProtoCondition condition, const char *message)
{
	Buf			body = BUF_INIT;
	struct MHD_Response *response;

	proto_encode_error(&body, condition, message);
	req->http->errors[condition]++;
	response = http_response(body.data, body.len, "application/json");
	buf_free(&body);
	if (condition == PROTO_METHOD_NOT_ALLOWED)
		MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "POST, OPTIONS");
	if (condition == PROTO_SERVICE_UNAVAILABLE || condition == PROTO_SYSTEM_SHUTDOWN)
		MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	return http_queue(req, (unsigned) proto_condition_status(condition), response);
}

/* libmicrohttpd is done with a response: its answer's reference goes. */
static void
http_answer_release(void *cls)
{
	answer_unref(cls);
}

/*
 * libmicrohttpd asks for the body of a shared answer in pieces: copy what
 * lies at pos into buf.  (0.9.75 takes an iovec response's list into the
 * connection's memory pool, and when the request's headers have left too
 * little room there it unlocks a mutex it never locked and aborts the
 * process: so pieces go through this reader, which it copies through a
 * buffer of its own.)
 */
static ssize_t
http_answer_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	const Answer *answer = cls;
	size_t		n = answer_npieces(answer);
	size_t		start = 0;
	size_t		copied = 0;
	size_t		i;

	for (i = 0; i < n && copied < max; i++)
	{
		const char *data;
		size_t		len;

		answer_piece(answer, i, &data, &len);
		if (pos + copied < start + len)
		{
			size_t		from = (size_t) (pos + copied - start);
			size_t		take = len - from < max - copied ? len - from : max - copied;

			memcpy(buf + copied, data + from, take);
			copied += take;
		}
		start += len;
	}
	return copied > 0 ? (ssize_t) copied : MHD_CONTENT_READER_END_OF_STREAM;
}

/* A response that shares answer's body: one buffer, or its pieces. */
static struct MHD_Response *
http_answer_response(Answer *answer)
{
	struct MHD_Response *response;

	if (answer_npieces(answer) == 1)
	{
		const char *data;
		size_t		len;

		answer_piece(answer, 0, &data, &len);
		/* libmicrohttpd only reads it (its parameter is not const) */
		response = MHD_create_response_from_buffer_with_free_callback_cls(len, (void *) (uintptr_t) data,
																		  http_answer_release,
																		  answer_ref(answer));
	}
	else
		response = MHD_create_response_from_callback(answer_length(answer), HTTP_ANSWER_BLOCK,
													 http_answer_read, answer_ref(answer),
													 http_answer_release);
	if (response == NULL)
	{
		fprintf(stderr, "comet-bridge: out of memory\n");
		abort();
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	return response;
}

void
http_answer_bytes(Http *http, HttpRequest *req, int status, const char *body, size_t len)
{
	Answer	   *answer = answer_from_bytes(status, body, len);

	http_answer(http, req, answer);
	answer_unref(answer);
}

void
http_answer(Http *http, HttpRequest *req, Answer *answer)
{
	struct MHD_Response *response = http_answer_response(answer);
	int			status = answer_status(answer);

	if (status >= 400)
	{
		const char *body;
		size_t		len;

		answer_piece(answer, 0, &body, &len);	/* errors are one piece */
		http_count_error(http, body, len);
	}
	if (status == 503)
		MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	if (req->response != NULL)
		MHD_destroy_response(req->response);	/* answered twice: keep the last */
	req->response = response;
	req->status = (unsigned) status;
	http_unhold(req);
	if (req->suspended)
	{
		req->suspended = false;
		http->pending--;
		MHD_resume_connection(req->connection);
		http->resumed = true;	/* MHD_run after this iteration */
	}
}

/* ---- the held socket watch ------------------------------------------------ */

/* The request is no longer held: its connection's watch forgets it. */
static void
http_unhold(HttpRequest *req)
{
	if (req->watch != NULL && req->watch->held == req)
		req->watch->held = NULL;
	req->watch = NULL;
}

/* A held request's client has gone: tell the owner, let MHD close it. */
static void
http_client_gone(HttpRequest *req)
{
	Http	   *http = req->http;

	http_unhold(req);
	req->gone = true;
	http->hooks.client_gone(http->hooks.ctx, req, req->owner);
	if (req->suspended)
	{
		req->suspended = false;
		http->pending--;
		MHD_resume_connection(req->connection);	/* to be closed */
		http->resumed = true;
	}
}

/* EPOLLRDHUP (or an error) on a connection. */
static void
http_conn_hangup(Loop *loop, int fd, uint32_t events, void *arg)
{
	HttpConnWatch *watch = arg;

	(void) events;
	/* level-triggered: stop watching, or it would fire until MHD closes it */
	loop_unwatch(loop, fd);
	watch->fd = -1;
	watch->hung_up = true;
	if (watch->held != NULL)
		http_client_gone(watch->held);
}

/* MHD_OPTION_NOTIFY_CONNECTION: a connection starts or ends. */
static void
http_conn_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
				 enum MHD_ConnectionNotificationCode code)
{
	Http	   *http = cls;
	HttpConnWatch *watch = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED)
	{
		const union MHD_ConnectionInfo *info =
			MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);

		watch = calloc(1, sizeof(HttpConnWatch));
		*socket_context = watch;
		if (watch == NULL)
			return;				/* no hang-up detection for this one */
		watch->http = http;
		watch->fd = info ? info->connect_fd : -1;
		/* hang-up only: a pipelined request must not look like a departure */
		if (watch->fd >= 0 &&
			loop_watch(http->loop, watch->fd, EPOLLRDHUP, http_conn_hangup, watch) != 0)
			watch->fd = -1;
		return;
	}
	if (watch == NULL)
		return;
	if (watch->fd >= 0)
		loop_unwatch(http->loop, watch->fd);
	if (watch->held != NULL)
		watch->held->watch = NULL;
	free(watch);
	*socket_context = NULL;
}

void
http_hold(Http *http, HttpRequest *req, void *owner)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	HttpConnWatch *watch = info ? info->socket_context : NULL;

	req->owner = owner;
	if (watch == NULL || req->watch != NULL)
		return;
	req->watch = watch;
	watch->held = req;
	if (watch->hung_up)
	{
		/* gone already: say so once the request is suspended (http_idle) */
		req->next_hung_up = http->hung_up;
		http->hung_up = req;
	}
}

/* ---- request framing ------------------------------------------------------ */

typedef struct HeaderCheck
{
	int			content_length;
	int			transfer_encoding;
	bool		chunked;
	bool		bad_name;
	bool		bad_length;		/* a Content-Length that is not just digits */
} HeaderCheck;

static enum MHD_Result
http_check_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	HeaderCheck *check = cls;

	(void) kind;
	if (key[0] == '\0' || strpbrk(key, " \t") != NULL)
		check->bad_name = true;
	else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
	{
		check->content_length++;
		if (value == NULL || value[0] == '\0' || strspn(value, "0123456789") != strlen(value))
			check->bad_length = true;
	}
	else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
	{
		check->transfer_encoding++;
		check->chunked = value != NULL && strcasecmp(value, "chunked") == 0;
	}
	return MHD_YES;
}

/*
 * Where a request's body ends must be beyond doubt, or a proxy in front and
 * the bridge could split the bytes differently (request smuggling): one
 * Content-Length, or Transfer-Encoding: chunked alone, and header names
 * without white space.  NULL when the framing is clear.
 */
static const char *
http_framing_problem(struct MHD_Connection *connection)
{
	HeaderCheck check = {0, 0, false, false, false};

	MHD_get_connection_values(connection, MHD_HEADER_KIND, http_check_header, &check);
	if (check.bad_name)
		return "a header name is empty or has white space in it";
	if (check.content_length > 1)
		return "more than one Content-Length";
	if (check.bad_length)
		return "Content-Length must be a number";
	if (check.transfer_encoding > 1)
		return "more than one Transfer-Encoding";
	if (check.transfer_encoding == 1 && check.content_length == 1)
		return "both Content-Length and Transfer-Encoding";
	if (check.transfer_encoding == 1 && !check.chunked)
		return "the only Transfer-Encoding accepted is chunked";
	return NULL;
}

/* ---- routes --------------------------------------------------------------- */

static const char *
http_allowed_origin(const Http *http, struct MHD_Connection *connection)
{
	const char *origin = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
													 MHD_HTTP_HEADER_ORIGIN);
	const char *const *allowed;

	if (origin == NULL || http->allow_origins == NULL)
		return NULL;
	for (allowed = http->allow_origins; *allowed != NULL; allowed++)
		if (strcmp(*allowed, origin) == 0)
			return *allowed;
	return NULL;
}

static const char *
http_content_type(const char *path)
{
	static const struct
	{
		const char *suffix;
		const char *type;
	}			types[] =
	{
		{".html", "text/html; charset=utf-8"},
		{".js", "text/javascript; charset=utf-8"},
		{".mjs", "text/javascript; charset=utf-8"},
		{".css", "text/css; charset=utf-8"},
		{".json", "application/json"},
		{".svg", "image/svg+xml"},
		{".png", "image/png"},
		{".ico", "image/x-icon"},
		{".txt", "text/plain; charset=utf-8"},
	};
	size_t		len = strlen(path);
	size_t		i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
	{
		size_t		n = strlen(types[i].suffix);

		if (len >= n && strcmp(path + len - n, types[i].suffix) == 0)
			return types[i].type;
	}
	return "application/octet-stream";
}

/* A file under --static; no "..", no hidden files, no symlinks out. */
static enum MHD_Result
http_serve_static(Http *http, HttpRequest *req, const char *url)
{
	char		path[4096];
	const char *relative = strcmp(url, "/") == 0 ? "/index.html" : url;
	struct stat st;
	int			fd;
	struct MHD_Response *response;

	if (http->static_dir == NULL || strstr(relative, "/.") != NULL ||
		snprintf(path, sizeof(path), "%s%s", http->static_dir, relative) >= (int) sizeof(path))
		return http_queue_error(req, PROTO_ITEM_NOT_FOUND, "no such file");
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return http_queue_error(req, PROTO_ITEM_NOT_FOUND, "no such file");
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		return http_queue_error(req, PROTO_ITEM_NOT_FOUND, "no such file");
	}
	response = MHD_create_response_from_fd((uint64_t) st.st_size, fd);
	if (response == NULL)
	{
		close(fd);
		return http_queue_error(req, PROTO_INTERNAL_ERROR, "could not read the file");
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, http_content_type(path));
	return http_queue(req, MHD_HTTP_OK, response);
}

/* Everything but POST /comet: answered at once. */
static enum MHD_Result
http_route(Http *http, HttpRequest *req, const char *url, const char *method)
{
	Buf			body = BUF_INIT;
	struct MHD_Response *response;
	bool		get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

	if (strcmp(method, "OPTIONS") == 0)
	{
		if (req->cors_origin == NULL)
			return http_queue_error(req, PROTO_FORBIDDEN, "this origin is not allowed");
		response = http_response("", 0, "text/plain");
		MHD_add_response_header(response, "Access-Control-Allow-Methods", "POST, GET, OPTIONS");
		MHD_add_response_header(response, "Access-Control-Allow-Headers", "Content-Type");
		MHD_add_response_header(response, "Access-Control-Max-Age", "600");
		return http_queue(req, MHD_HTTP_NO_CONTENT, response);
	}
	if (strcmp(url, "/comet") == 0)
		return http_queue_error(req, PROTO_METHOD_NOT_ALLOWED, "use POST for /comet");
	if (!get)
		return http_queue_error(req, PROTO_METHOD_NOT_ALLOWED, "only GET is served here");
	if (strcmp(url, "/healthz") == 0)
	{
		int			status = http->hooks.healthz(http->hooks.ctx, &body);

		response = http_response(body.data ? body.data : "", body.len, "application/json");
		buf_free(&body);
		return http_queue(req, (unsigned) status, response);
	}
	if (strcmp(url, "/metrics") == 0)
	{
		http->hooks.metrics(http->hooks.ctx, &body);
		response = http_response(body.data ? body.data : "", body.len,
								 "text/plain; version=0.0.4");
		buf_free(&body);
		return http_queue(req, MHD_HTTP_OK, response);
	}
	if (strcmp(url, "/comet.js") == 0)
	{
		response = http_response(http->client_js, http->client_js_len,
								 "text/javascript; charset=utf-8");
		return http_queue(req, MHD_HTTP_OK, response);
	}
	if (strcmp(url, "/comet.mjs") == 0)
	{
		ClientFile	module = client_mjs();

		response = http_response(module.data, module.len, "text/javascript; charset=utf-8");
		return http_queue(req, MHD_HTTP_OK, response);
	}
	return http_serve_static(http, req, url);
}

static enum MHD_Result
http_access(void *cls, struct MHD_Connection *connection, const char *url,
			const char *method, const char *version, const char *upload_data,
			size_t *upload_data_size, void **con_cls)
{
	Http	   *http = cls;
	HttpRequest *req = *con_cls;
	const char *url_sid;

	(void) version;
	http->progress++;
	if (req == NULL)
	{
		req = calloc(1, sizeof(HttpRequest));
		if (req == NULL)
			return MHD_NO;
		req->http = http;
		req->connection = connection;
		req->cors_origin = http_allowed_origin(http, connection);
		req->is_comet = strcmp(method, "POST") == 0 && strcmp(url, "/comet") == 0;
		*con_cls = req;
		{
			const char *problem = http_framing_problem(connection);

			if (problem != NULL)
			{
				/* the rest of the bytes cannot be trusted: answer and close */
				req->dispatched = true;
				req->close_after = true;
				return http_queue_error(req, PROTO_BAD_REQUEST, problem);
			}
		}
		if (!req->is_comet)
			return http_route(http, req, url, method);
		{
			/* refuse an announced oversize body before reading any of it */
			const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
															 MHD_HTTP_HEADER_CONTENT_LENGTH);

			if (length != NULL && strtoull(length, NULL, 10) > http->max_body)
			{
				req->dispatched = true;
				return http_queue_error(req, PROTO_REQUEST_TOO_LARGE,
										"the body is larger than the bridge accepts");
			}
		}
		return MHD_YES;			/* the body comes next */
	}
	if (req->gone)
		return MHD_NO;			/* close: the client left */
	if (req->response != NULL)
	{
		struct MHD_Response *response = req->response;

		req->response = NULL;
		return http_queue(req, req->status, response);
	}
	if (!req->is_comet)
		return MHD_YES;
	if (*upload_data_size > 0)
	{
		if (!req->too_large && req->body.len + *upload_data_size > http->max_body)
		{
			req->too_large = true;
			buf_free(&req->body);
		}
		if (!req->too_large)
			buf_append(&req->body, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (req->dispatched)
		return MHD_YES;
	req->dispatched = true;
	if (req->too_large)
		return http_queue_error(req, PROTO_REQUEST_TOO_LARGE,
								"the body is larger than the bridge accepts");

	url_sid = MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, "sid");
	http->hooks.comet(http->hooks.ctx, req, url_sid,
					  req->body.data ? req->body.data : "", req->body.len);
	if (req->response != NULL)
	{
		struct MHD_Response *response = req->response;

		req->response = NULL;
		return http_queue(req, req->status, response);
	}
	MHD_suspend_connection(connection);
	req->suspended = true;
	http->pending++;
	return MHD_YES;
}

static void
http_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
			   enum MHD_RequestTerminationCode toe)
{
	HttpRequest *req = *con_cls;

	(void) cls;
	(void) connection;
	(void) toe;
	if (req == NULL)
		return;
	http_unhold(req);
	{
		HttpRequest **link = &req->http->hung_up;

		while (*link != NULL && *link != req)
			link = &(*link)->next_hung_up;
		if (*link == req)
			*link = req->next_hung_up;
	}
	if (req->response != NULL)
		MHD_destroy_response(req->response);
	buf_free(&req->body);
	free(req);
	*con_cls = NULL;
}

/* ---- driving MHD from the loop ---------------------------------------- */

static void
http_timer_fired(Loop *loop, LoopTimer *timer, void *arg)
{
	(void) loop;
	(void) timer;
	http_drive(arg);
}

static void
http_ready(Loop *loop, int fd, uint32_t events, void *arg)
{
	(void) loop;
	(void) fd;
	(void) events;
	http_drive(arg);
}

/*
 * In external mode MHD only picks up resumed connections in MHD_run, and
 * MHD_run must not be called from inside its own callbacks: so it runs
 * once more at the end of any loop iteration that resumed something.
 */
static void
http_idle(Loop *loop, void *arg)
{
	Http	   *http = arg;
	size_t		batch = HTTP_FLUSH_FIRST;

	(void) loop;
	while (http->hung_up != NULL)
	{
		HttpRequest *req = http->hung_up;

		http->hung_up = req->next_hung_up;
		req->next_hung_up = NULL;
		if (req->watch != NULL && !req->gone)
			http_client_gone(req);
	}
	/*
	 * The first due answers, an MHD_run to write them, then the rest; answering
	 * inside MHD_run can resume more: run until none is left.
	 */
	for (;;)
	{
		size_t		given = http->hooks.flush ? http->hooks.flush(http->hooks.ctx, batch) : 0;

		if (given == 0 && !http->resumed)
			break;
		http_drive(http);
		batch = SIZE_MAX;
	}
}

/*
 * Let MHD do its work, then wake up again when it wants to.  Two things
 * MHD leaves to its caller in external-epoll mode:
 *  - at the connection limit it stops accepting, and takes the listen
 *    socket back only at the start of a later MHD_run: when connections
 *    fall below the limit, run it once more, or nobody would;
 *  - a timeout of 0 that stays 0 while no request moves on (a connection
 *    stuck mid-request, such as an endless chunk-size line) would spin:
 *    after HTTP_SPIN_ZEROS of them in a row, each waits HTTP_SPIN_GUARD_MS.
 */
#define HTTP_SPIN_ZEROS 64
#define HTTP_SPIN_GUARD_MS 10

static void
http_drive(Http *http)
{
	MHD_UNSIGNED_LONG_LONG timeout;
	const union MHD_DaemonInfo *info;
	bool		full;

	http->resumed = false;
	MHD_run(http->daemon);
	info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	full = info != NULL && info->num_connections + 1 >= http->connection_limit;
	if (MHD_get_timeout(http->daemon, &timeout) == MHD_YES)
	{
		/* zeros while requests move on (pipelining) are no spin */
		http->zero_timeouts = timeout == 0 && http->progress == http->progress_seen
			? http->zero_timeouts + 1 : 0;
		http->progress_seen = http->progress;
		if (http->zero_timeouts > HTTP_SPIN_ZEROS)
			timeout = HTTP_SPIN_GUARD_MS;
		loop_timer_start(http->loop, &http->timer, (uint64_t) timeout);
	}
	else
	{
		http->zero_timeouts = 0;
		loop_timer_stop(http->loop, &http->timer);
	}
	if (http->was_full && !full)
		loop_timer_start(http->loop, &http->timer, 0);	/* accept again */
	http->was_full = full;
}

static char *
http_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
	FILE	   *file = fopen(path, "rb");
	char	   *data;
	long		size;

	if (file == NULL || fseek(file, 0, SEEK_END) != 0 || (size = ftell(file)) < 0 ||
		fseek(file, 0, SEEK_SET) != 0)
	{
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		if (file)
			fclose(file);
		return NULL;
	}
	data = malloc((size_t) size + 1);
	if (data == NULL || fread(data, 1, (size_t) size, file) != (size_t) size)
	{
		snprintf(err, errlen, "cannot read %s", path);
		free(data);
		fclose(file);
		return NULL;
	}
	fclose(file);
	*len = (size_t) size;
	return data;
}

Http *
http_create(Loop *loop, const HttpOptions *options, const HttpHooks *hooks,
			char *err, size_t errlen)
{
	Http	   *http = calloc(1, sizeof(Http));
	struct sockaddr_storage addr;
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	const union MHD_DaemonInfo *info;

	if (http == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memset(&addr, 0, sizeof(addr));
	if (inet_pton(AF_INET, options->host, &((struct sockaddr_in *) &addr)->sin_addr) == 1)
	{
		((struct sockaddr_in *) &addr)->sin_family = AF_INET;
		((struct sockaddr_in *) &addr)->sin_port = htons((uint16_t) options->port);
	}
	else if (inet_pton(AF_INET6, options->host, &((struct sockaddr_in6 *) &addr)->sin6_addr) == 1)
	{
		((struct sockaddr_in6 *) &addr)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *) &addr)->sin6_port = htons((uint16_t) options->port);
		flags |= MHD_USE_IPv6;
	}
	else
	{
		snprintf(err, errlen, "\"%s\" is not an IP address", options->host);
		free(http);
		return NULL;
	}
	http->loop = loop;
	http->hooks = *hooks;
	http->max_body = options->max_body;
	http->connection_limit = options->connection_limit;
	http->allow_origins = options->allow_origins;
	if (options->static_dir)
		http->static_dir = strdup(options->static_dir);
	if (options->client_js)
	{
		http->client_js = http_read_file(options->client_js, &http->client_js_len, err, errlen);
		if (http->client_js == NULL)
		{
			free(http->static_dir);
			free(http);
			return NULL;
		}
	}
	else
	{
		/* the client built into the bridge */
		ClientFile	builtin = client_js();

		http->client_js = mem_alloc(builtin.len + 1);
		memcpy(http->client_js, builtin.data, builtin.len);
		http->client_js_len = builtin.len;
	}
	loop_timer_init(&http->timer, http_timer_fired, http);

	http->daemon = MHD_start_daemon(flags, (uint16_t) options->port, NULL, NULL,
									http_access, http,
									MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
									MHD_OPTION_CONNECTION_LIMIT, options->connection_limit,
									MHD_OPTION_PER_IP_CONNECTION_LIMIT, options->per_address_limit,
									MHD_OPTION_CONNECTION_MEMORY_LIMIT,
									options->connection_memory ? options->connection_memory : (size_t) 8192,
									MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) HTTP_IDLE_TIMEOUT_S,
									MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int) 1024,
									MHD_OPTION_NOTIFY_COMPLETED, http_completed, http,
									MHD_OPTION_NOTIFY_CONNECTION, http_conn_notify, http,
									MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, http,
									MHD_OPTION_END);
	if (http->daemon == NULL)
	{
		snprintf(err, errlen, "cannot listen on %s port %d: %s", options->host,
				 options->port, errno ? strerror(errno) : "libmicrohttpd refused");
		free(http->client_js);
		free(http->static_dir);
		free(http);
		return NULL;
	}
	info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	http->epoll_fd = info ? info->epoll_fd : -1;
	info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_BIND_PORT);
	http->port = info ? info->port : options->port;
	if (http->epoll_fd < 0 || loop_watch(loop, http->epoll_fd, EPOLLIN, http_ready, http) != 0)
	{
		snprintf(err, errlen, "cannot watch libmicrohttpd's epoll fd");
		MHD_stop_daemon(http->daemon);
		free(http->client_js);
		free(http->static_dir);
		free(http);
		return NULL;
	}
	loop_on_idle(loop, http_idle, http);
	http_drive(http);
	return http;
}

/* The hooks once the owner is gone: everything is refused. */
static void
http_refuse_comet(void *ctx, HttpRequest *req, const char *url_sid,
				  const char *body, size_t len)
{
	Buf			answer = BUF_INIT;

	(void) url_sid;
	(void) body;
	(void) len;
	proto_encode_error(&answer, PROTO_SYSTEM_SHUTDOWN, "the bridge is shutting down");
	http_answer_bytes(ctx, req, proto_condition_status(PROTO_SYSTEM_SHUTDOWN),
					  answer.data, answer.len);
	buf_free(&answer);
}

static void
http_refuse_gone(void *ctx, HttpRequest *req, void *owner)
{
	(void) ctx;
	(void) req;
	(void) owner;
}

static int
http_refuse_healthz(void *ctx, Buf *body)
{
	(void) ctx;
	buf_append_str(body, "{\"status\":\"shutting down\"}");
	return 503;
}

static void
http_refuse_metrics(void *ctx, Buf *body)
{
	(void) ctx;
	buf_append_str(body, "");
}

void
http_refuse_all(Http *http)
{
	HttpHooks	hooks = {http_refuse_comet, http_refuse_gone, http_refuse_healthz,
	http_refuse_metrics, NULL, http};

	http->hooks = hooks;
}

void
http_stop_accepting(Http *http)
{
	MHD_socket fd = MHD_quiesce_daemon(http->daemon);

	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

void
http_destroy(Http *http)
{
	if (http == NULL)
		return;
	loop_timer_stop(http->loop, &http->timer);
	loop_unwatch(http->loop, http->epoll_fd);
	/* let MHD send what was answered last */
	MHD_run(http->daemon);
	MHD_stop_daemon(http->daemon);
	free(http->client_js);
	free(http->static_dir);
	free(http);
}

size_t
http_pending(const Http *http)
{
	return http->pending;
}

int
http_port(const Http *http)
{
	return http->port;
}
