/*
 * pg.c — non-blocking libpq connections driven by the event loop.
 *
 * Each connection is a small state machine:
 *
 *   down --start--> connecting --PQconnectPoll OK--> idle <--result--> busy
 *     ^                  |                             |                |
 *     +----- retry timer (backoff) <---- failure ------+----------------+
 *
 * The listener runs LISTEN/UNLISTEN commands one at a time from a queue and
 * reads notifications whenever its socket is readable.  After (re)connecting
 * it queues LISTEN for every wanted channel and then a marker that calls
 * PgHooks.connected.  Pool connections take queries from one FIFO.  A query
 * whose connection fails is answered with a NULL result, never retried: it
 * may have run (a send that committed must not be sent twice).
 */
#include "pg.h"

#include "log.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include "mem.h"

#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 5000

typedef enum PgConnState
{
	PGCONN_DOWN,				/* waiting for the retry timer */
	PGCONN_CONNECTING,
	PGCONN_IDLE,
	PGCONN_BUSY					/* a query or command in flight */
} PgConnState;

typedef struct PgQuery
{
	struct PgQuery *next;
	char	   *sql;
	int			nparams;
	char	  **params;
	PgResultHandler handler;
	void	   *arg;
} PgQuery;

typedef struct PgCommand
{
	bool		listen;			/* LISTEN, else UNLISTEN */
	bool		marker;			/* no command: call PgHooks.connected */
	char		channel[64];
} PgCommand;

typedef struct PgConn
{
	Pg		   *pg;
	bool		is_listener;
	PgConnState state;
	PGconn	   *conn;
	int			fd;				/* the socket watched, -1 if none */
	LoopTimer	retry_timer;
	uint64_t	backoff_ms;
	PgQuery    *query;			/* pool: the query in flight */
	PGresult   *result;			/* its first result */
	PgCommand	command;		/* listener: the command in flight */
} PgConn;

struct Pg
{
	Loop	   *loop;
	LoopTimer	fail_timer;		/* answers queries no connection can take */
	char	   *conninfo;
	PgHooks		hooks;
	PgConn		listener;
	PgConn	   *pool;
	int			pool_size;
	PgQuery    *queue_head;
	PgQuery    *queue_tail;
	size_t		queue_len;
	/* the channels we want to LISTEN on */
	char	  **channels;
	size_t		nchannels;
	size_t		channels_capacity;
	/* listener commands not yet sent (a ring) */
	PgCommand  *commands;
	size_t		commands_head;
	size_t		commands_len;
	size_t		commands_capacity;
	unsigned long reconnects;
	bool		listener_ready;
	bool		destroying;		/* pg_destroy is running: run nothing more */
};

static void conn_start(PgConn *c);
static void conn_event(Loop *loop, int fd, uint32_t events, void *arg);
static void pg_dispatch(Pg *pg);
static void listener_next_command(PgConn *c);
static void pg_push_command(Pg *pg, bool listen, bool marker, const char *channel);
static bool pg_pool_usable(const Pg *pg);

static void
query_free(PgQuery *query)
{
	int			i;

	for (i = 0; i < query->nparams; i++)
		free(query->params[i]);
	free(query->params);
	free(query->sql);
	free(query);
}

/* Call a query's handler once and free it. */
static void
query_finish(PgQuery *query, PGresult *result)
{
	query->handler(query->arg, result);
	query_free(query);
}

/* ---- connections ------------------------------------------------------ */

static void
conn_watch(PgConn *c, uint32_t events)
{
	int			fd = PQsocket(c->conn);

	if (c->fd >= 0 && c->fd != fd)
		loop_unwatch(c->pg->loop, c->fd);
	c->fd = fd;
	if (fd >= 0)
		loop_watch(c->pg->loop, fd, events, conn_event, c);
}

static void
conn_retry(Loop *loop, LoopTimer *timer, void *arg)
{
	(void) loop;
	(void) timer;
	conn_start(arg);
}

/* Give up on this connection: fail what it was doing, retry later. */
static void
conn_fail(PgConn *c, const char *reason)
{
	Pg		   *pg = c->pg;
	PgQuery    *query = c->query;
	bool		was_ready = c->is_listener && pg->listener_ready;
	char		why[256];

	/* the reason may live in the connection about to be closed */
	snprintf(why, sizeof(why), "%s", reason ? reason : "unknown error\n");

	if (c->fd >= 0)
		loop_unwatch(pg->loop, c->fd);
	c->fd = -1;
	if (c->result != NULL)
		PQclear(c->result);
	c->result = NULL;
	if (c->conn != NULL)
		PQfinish(c->conn);
	c->conn = NULL;
	c->query = NULL;
	c->state = PGCONN_DOWN;
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : PG_BACKOFF_MIN_MS;
	if (c->backoff_ms > PG_BACKOFF_MAX_MS)
		c->backoff_ms = PG_BACKOFF_MAX_MS;
	if (!pg->destroying)
		loop_timer_start(pg->loop, &c->retry_timer, c->backoff_ms);
	pg->reconnects++;

	if (c->is_listener)
	{
		pg->listener_ready = false;
		if (was_ready && pg->hooks.disconnected)
			pg->hooks.disconnected(pg->hooks.ctx, why);
	}
	if (query != NULL)
		query_finish(query, NULL);
	if (!c->is_listener && pg->queue_head != NULL && !pg_pool_usable(pg))
		loop_timer_start(pg->loop, &pg->fail_timer, 0);
}

static void
conn_connected(PgConn *c)
{
	Pg		   *pg = c->pg;

	c->state = PGCONN_IDLE;
	c->backoff_ms = 0;
	conn_watch(c, EPOLLIN);
	if (c->is_listener)
	{
		size_t		i;

		/* LISTEN again on everything, then tell the host */
		pg->commands_len = 0;
		pg->commands_head = 0;
		for (i = 0; i < pg->nchannels; i++)
			pg_push_command(pg, true, false, pg->channels[i]);
		pg_push_command(pg, false, true, "");
		listener_next_command(c);
	}
	else
		pg_dispatch(pg);
}

static void
conn_continue_connect(PgConn *c)
{
	switch (PQconnectPoll(c->conn))
	{
		case PGRES_POLLING_READING:
			conn_watch(c, EPOLLIN);
			break;
		case PGRES_POLLING_WRITING:
			conn_watch(c, EPOLLOUT);
			break;
		case PGRES_POLLING_OK:
			conn_connected(c);
			break;
		default:
			conn_fail(c, PQerrorMessage(c->conn));
			break;
	}
}

/* Server notices (and libpq's own): into the bridge's log. */
static void
pg_notice(void *arg, const char *message)
{
	(void) arg;
	log_warn("database: %s", message);
}

static void
conn_start(PgConn *c)
{
	/* TCP keepalives notice a database host that vanished without a word */
	const char *keywords[] = {"dbname", "application_name", "keepalives",
	"keepalives_idle", "keepalives_interval", "keepalives_count", NULL};
	const char *values[] = {c->pg->conninfo, "comet-bridge", "1", "10", "5", "3", NULL};

	c->conn = PQconnectStartParams(keywords, values, 1);
	if (c->conn == NULL || PQstatus(c->conn) == CONNECTION_BAD ||
		PQsetnonblocking(c->conn, 1) != 0)
	{
		conn_fail(c, c->conn ? PQerrorMessage(c->conn) : "out of memory");
		return;
	}
	PQsetNoticeProcessor(c->conn, pg_notice, NULL);
	c->state = PGCONN_CONNECTING;
	c->fd = -1;
	conn_watch(c, EPOLLOUT);
}

/* Flush what libpq has buffered; watch for writability while some is left. */
static bool
conn_flush(PgConn *c)
{
	int			r = PQflush(c->conn);

	if (r < 0)
	{
		conn_fail(c, PQerrorMessage(c->conn));
		return false;
	}
	conn_watch(c, r == 1 ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
	return true;
}

/* ---- the listener ---------------------------------------------------- */

static bool
pg_wants_channel(const Pg *pg, const char *channel, size_t *index)
{
	size_t		i;

	for (i = 0; i < pg->nchannels; i++)
		if (strcmp(pg->channels[i], channel) == 0)
		{
			if (index)
				*index = i;
			return true;
		}
	return false;
}

static void
pg_push_command(Pg *pg, bool listen, bool marker, const char *channel)
{
	PgCommand	command = {listen, marker, ""};

	if (pg->commands_len == pg->commands_capacity)
	{
		size_t		capacity = pg->commands_capacity > 0 ? pg->commands_capacity * 2 : 16;
		PgCommand  *grown = mem_alloc(sizeof(PgCommand) * capacity);
		size_t		i;

		for (i = 0; i < pg->commands_len; i++)
			grown[i] = pg->commands[(pg->commands_head + i) % pg->commands_capacity];
		free(pg->commands);
		pg->commands = grown;
		pg->commands_head = 0;
		pg->commands_capacity = capacity;
	}
	snprintf(command.channel, sizeof(command.channel), "%s", channel);
	pg->commands[(pg->commands_head + pg->commands_len++) % pg->commands_capacity] = command;
}

/* Send the next LISTEN/UNLISTEN, or fire the connected marker. */
static void
listener_next_command(PgConn *c)
{
	Pg		   *pg = c->pg;

	while (c->state == PGCONN_IDLE && pg->commands_len > 0)
	{
		PgCommand	command = pg->commands[pg->commands_head];
		char	   *ident;
		char		sql[200];

		pg->commands_head = (pg->commands_head + 1) % pg->commands_capacity;
		pg->commands_len--;
		if (command.marker)
		{
			pg->listener_ready = true;
			if (pg->hooks.connected)
				pg->hooks.connected(pg->hooks.ctx);
			continue;
		}
		ident = PQescapeIdentifier(c->conn, command.channel, strlen(command.channel));
		if (ident == NULL)
		{
			conn_fail(c, PQerrorMessage(c->conn));
			return;
		}
		snprintf(sql, sizeof(sql), "%s %s", command.listen ? "LISTEN" : "UNLISTEN", ident);
		PQfreemem(ident);
		if (!PQsendQuery(c->conn, sql))
		{
			conn_fail(c, PQerrorMessage(c->conn));
			return;
		}
		c->command = command;
		c->state = PGCONN_BUSY;
		conn_flush(c);
	}
}

static void
listener_deliver_notifies(PgConn *c)
{
	Pg		   *pg = c->pg;
	PGnotify   *notify;

	while (c->conn != NULL && (notify = PQnotifies(c->conn)) != NULL)
	{
		if (pg->hooks.notify)
			pg->hooks.notify(pg->hooks.ctx, notify->relname, notify->extra);
		PQfreemem(notify);
	}
}

/* ---- events ----------------------------------------------------------- */

/* The command or query in flight has all its results. */
static void
conn_done(PgConn *c)
{
	Pg		   *pg = c->pg;
	PGresult   *result = c->result;

	c->result = NULL;
	c->state = PGCONN_IDLE;
	if (c->is_listener)
	{
		bool		ok = result != NULL && PQresultStatus(result) == PGRES_COMMAND_OK;

		if (!ok)
			log_error("%s \"%s\" failed: %s",
					c->command.listen ? "LISTEN" : "UNLISTEN", c->command.channel,
					result ? PQresultErrorMessage(result) : "no result\n");
		if (result)
			PQclear(result);
		if (ok && c->command.listen && pg_wants_channel(pg, c->command.channel, NULL) &&
			pg->hooks.listening)
			pg->hooks.listening(pg->hooks.ctx, c->command.channel);
		listener_next_command(c);
		return;
	}
	{
		PgQuery    *query = c->query;

		c->query = NULL;
		query_finish(query, result);
		if (result)
			PQclear(result);
	}
	pg_dispatch(pg);
}

static void
conn_event(Loop *loop, int fd, uint32_t events, void *arg)
{
	PgConn	   *c = arg;

	(void) loop;
	(void) fd;
	if (c->state == PGCONN_CONNECTING)
	{
		conn_continue_connect(c);
		return;
	}
	if ((events & EPOLLOUT) && !conn_flush(c))
		return;
	if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		return;
	if (!PQconsumeInput(c->conn))
	{
		conn_fail(c, PQerrorMessage(c->conn));
		return;
	}
	if (c->is_listener)
		listener_deliver_notifies(c);
	while (c->state == PGCONN_BUSY && !PQisBusy(c->conn))
	{
		PGresult   *result = PQgetResult(c->conn);

		if (result == NULL)
		{
			conn_done(c);
			break;
		}
		if (c->result == NULL)
			c->result = result;
		else
			PQclear(result);
	}
	if (c->is_listener)
		listener_deliver_notifies(c);
	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_BAD)
		conn_fail(c, PQerrorMessage(c->conn));
}

/* ---- the pool ---------------------------------------------------------- */

static void
pg_dispatch(Pg *pg)
{
	int			i;

	for (i = 0; i < pg->pool_size && pg->queue_head != NULL; i++)
	{
		PgConn	   *c = &pg->pool[i];
		PgQuery    *query;

		if (c->state != PGCONN_IDLE)
			continue;
		query = pg->queue_head;
		pg->queue_head = query->next;
		if (pg->queue_head == NULL)
			pg->queue_tail = NULL;
		pg->queue_len--;
		query->next = NULL;
		if (!PQsendQueryParams(c->conn, query->sql, query->nparams, NULL,
							   (const char *const *) query->params, NULL, NULL, 0))
		{
			c->query = query;	/* failed before running: answered NULL */
			conn_fail(c, PQerrorMessage(c->conn));
			continue;
		}
		c->query = query;
		c->state = PGCONN_BUSY;
		conn_flush(c);
	}
}

/* Is any pool connection up, or still trying for the first time? */
static bool
pg_pool_usable(const Pg *pg)
{
	int			i;

	for (i = 0; i < pg->pool_size; i++)
		if (pg->pool[i].state != PGCONN_DOWN)
			return true;
	return false;
}

/*
 * While every pool connection is down, queued queries are answered with no
 * result (from a timer, never from inside pg_query) instead of waiting for
 * the database to come back: the client gets 503 and retries.
 */
static void
pg_fail_waiting(Loop *loop, LoopTimer *timer, void *arg)
{
	Pg		   *pg = arg;

	(void) loop;
	(void) timer;
	if (pg_pool_usable(pg))
		return;
	while (pg->queue_head != NULL)
	{
		PgQuery    *query = pg->queue_head;

		pg->queue_head = query->next;
		if (pg->queue_head == NULL)
			pg->queue_tail = NULL;
		pg->queue_len--;
		query_finish(query, NULL);
	}
}

void
pg_query(Pg *pg, const char *sql, int nparams, const char *const *params,
		 PgResultHandler handler, void *arg)
{
	PgQuery    *query;
	int			i;

	if (pg->destroying)
	{
		handler(arg, NULL);		/* a handler chaining another query */
		return;
	}
	query = mem_alloc(sizeof(PgQuery));
	query->sql = mem_strdup(sql);
	query->nparams = nparams;
	query->params = mem_alloc(sizeof(char *) * (nparams > 0 ? nparams : 1));
	for (i = 0; i < nparams; i++)
		query->params[i] = params[i] ? mem_strdup(params[i]) : NULL;
	query->handler = handler;
	query->arg = arg;
	if (pg->queue_tail)
		pg->queue_tail->next = query;
	else
		pg->queue_head = query;
	pg->queue_tail = query;
	pg->queue_len++;
	pg_dispatch(pg);
	if (!pg_pool_usable(pg))
		loop_timer_start(pg->loop, &pg->fail_timer, 0);
}

/* ---- the whole ---------------------------------------------------------- */

static void
conn_init(Pg *pg, PgConn *c, bool is_listener)
{
	c->pg = pg;
	c->is_listener = is_listener;
	c->state = PGCONN_DOWN;
	c->fd = -1;
	loop_timer_init(&c->retry_timer, conn_retry, c);
}

Pg *
pg_create(Loop *loop, const char *conninfo, int pool_size, const PgHooks *hooks,
		  char *err, size_t errlen)
{
	Pg		   *pg;
	int			i;

	if (pool_size < 1 || pool_size > 64)
	{
		snprintf(err, errlen, "the query pool must have 1 to 64 connections");
		return NULL;
	}
	pg = mem_alloc(sizeof(Pg));
	pg->loop = loop;
	pg->conninfo = mem_strdup(conninfo ? conninfo : "");
	pg->hooks = *hooks;
	pg->pool_size = pool_size;
	pg->pool = mem_alloc(sizeof(PgConn) * pool_size);
	pg->commands_capacity = 16;
	pg->commands = mem_alloc(sizeof(PgCommand) * pg->commands_capacity);
	loop_timer_init(&pg->fail_timer, pg_fail_waiting, pg);
	conn_init(pg, &pg->listener, true);
	conn_start(&pg->listener);
	for (i = 0; i < pool_size; i++)
	{
		conn_init(pg, &pg->pool[i], false);
		conn_start(&pg->pool[i]);
	}
	return pg;
}

static void
conn_close(PgConn *c)
{
	loop_timer_stop(c->pg->loop, &c->retry_timer);
	if (c->fd >= 0)
		loop_unwatch(c->pg->loop, c->fd);
	if (c->result)
		PQclear(c->result);
	if (c->conn)
		PQfinish(c->conn);
	c->conn = NULL;
	c->fd = -1;
	if (c->query)
		query_finish(c->query, NULL);
	c->query = NULL;
}

/*
 * Ask the server to cancel the query in flight on c.  A backend whose client
 * has gone keeps running its query until it next talks to the client, so
 * without this a slow query would outlive the bridge.  PQcancel blocks for a
 * connect to the server; it is used only when the bridge shuts down.
 */
static void
conn_cancel(PgConn *c)
{
	PGcancel   *cancel;
	char		errbuf[256];

	if (c->conn == NULL || c->state != PGCONN_BUSY)
		return;
	cancel = PQgetCancel(c->conn);
	if (cancel == NULL)
		return;
	if (!PQcancel(cancel, errbuf, sizeof(errbuf)))
		log_warn("could not cancel a query at shutdown: %s", errbuf);
	PQfreeCancel(cancel);
}

void
pg_destroy(Pg *pg)
{
	int			i;
	size_t		j;

	if (pg == NULL)
		return;
	pg->destroying = true;
	loop_timer_stop(pg->loop, &pg->fail_timer);
	conn_close(&pg->listener);
	for (i = 0; i < pg->pool_size; i++)
	{
		conn_cancel(&pg->pool[i]);
		conn_close(&pg->pool[i]);
	}
	while (pg->queue_head)
	{
		PgQuery    *query = pg->queue_head;

		pg->queue_head = query->next;
		query_finish(query, NULL);
	}
	for (j = 0; j < pg->nchannels; j++)
		free(pg->channels[j]);
	free(pg->channels);
	free(pg->commands);
	free(pg->pool);
	free(pg->conninfo);
	free(pg);
}

void
pg_listen(Pg *pg, const char *channel)
{
	if (pg_wants_channel(pg, channel, NULL))
		return;
	if (pg->nchannels == pg->channels_capacity)
	{
		size_t		capacity = pg->channels_capacity ? pg->channels_capacity * 2 : 16;
		char	  **grown = mem_realloc(pg->channels, sizeof(char *) * capacity);
		pg->channels = grown;
		pg->channels_capacity = capacity;
	}
	pg->channels[pg->nchannels++] = mem_strdup(channel);
	/* while connecting, conn_connected will LISTEN on it with the rest */
	if (pg->listener.state == PGCONN_IDLE || pg->listener.state == PGCONN_BUSY)
	{
		pg_push_command(pg, true, false, channel);
		listener_next_command(&pg->listener);
	}
}

void
pg_unlisten(Pg *pg, const char *channel)
{
	size_t		i;

	if (!pg_wants_channel(pg, channel, &i))
		return;
	free(pg->channels[i]);
	pg->channels[i] = pg->channels[--pg->nchannels];
	if (pg->listener.state == PGCONN_IDLE || pg->listener.state == PGCONN_BUSY)
	{
		pg_push_command(pg, false, false, channel);
		listener_next_command(&pg->listener);
	}
}

bool
pg_listen_connected(const Pg *pg)
{
	return pg->listener_ready;
}

int
pg_listen_backend_pid(const Pg *pg)
{
	return pg->listener.conn && pg->listener.state >= PGCONN_IDLE
		? PQbackendPID(pg->listener.conn) : 0;
}

size_t
pg_listen_count(const Pg *pg)
{
	return pg->nchannels;
}

unsigned long
pg_reconnects(const Pg *pg)
{
	return pg->reconnects;
}
