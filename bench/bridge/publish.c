/*
 * publish.c — the publisher of the bridge benchmark: sends the benchmark's
 * messages to comet (through PostgreSQL) or to Nchan (through HTTP), on
 * time, and says when each call returned.
 *
 *   publish --to comet|notify|nchan [--db CONNINFO] [--port P] [--host ADDR]
 *           [--channel PREFIX] [--channels C] [--size BYTES]
 *           [--connections K] [--listen] [--step S]
 *           (--rate R --duration SECONDS | --count K --interval-ms MS | --stdin)
 *
 * What a message is: the JSON object {"t":T,"n":N,"s":S,"p":"..."}, padded
 * with "p" to --size bytes; T is its send time in µs since the epoch
 * (CLOCK_REALTIME), N its number in its channel (1, 2, ...), S the step
 * given with --step.  Message i goes to channel PREFIX<(i mod C) + 1>.
 *
 * How it is sent:
 *   comet   SELECT comet.send($1, $2::jsonb) on one of K libpq connections
 *           (--db, or libpq's PG* variables), each a committed transaction;
 *   notify  SELECT pg_notify($1, $2), the same way;
 *   nchan   POST /pub/<channel> on one of K keep-alive HTTP/1.1
 *           connections to ADDR:P.
 * Channel c always goes through connection (c - 1) mod K, and a connection
 * has one call out at a time, so the messages of a channel leave, and are
 * committed or published, in their order.  A call returns when the server
 * has answered it completely: for comet and notify when the commit is done
 * (PostgreSQL's ReadyForQuery), for Nchan when the POST's answer is read.
 *
 * When:
 *   --rate R --duration D   R messages a second for D seconds, message i due
 *                           at start + i/R; T is the time it was due, so a
 *                           message that waits for a busy connection shows
 *                           its wait in every latency measured from T.
 *   --count K --interval-ms X   K messages one after another, each X ms
 *                           after the previous one returned; T is the time
 *                           the call started.
 *   --stdin                 one message for each line read from stdin, sent
 *                           at once; T is the time the call started.
 *
 * --listen (comet and notify): also LISTEN on every channel on one more
 * connection and note when each notification arrives: PostgreSQL's own
 * delivery, with no bridge.
 *
 * Output, lines on stdout, flushed as they happen:
 *   sent CHANNEL N T START RETURN   for each message (not with --rate):
 *                                   the call's start and return (µs)
 *   heard CHANNEL N T RECEIVED      with --listen, not with --rate
 *   ... and at the end "key value" totals (see publish_report), among them
 *   its own CPU time (cpu_us).
 * Exit status 0 when every message was sent and every call succeeded.
 *
 * It must never: connect over the network to anything but 127.0.0.0/8,
 * ::1 or a Unix socket, start a thread, use a library beyond libc and
 * libpq, or run unbounded in time or memory.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define CHANNELS_MAX 10000
#define CONNECTIONS_MAX 64
#define RATE_MAX 100000
#define DURATION_MAX_S 600
#define COUNT_MAX 100000
#define INTERVAL_MAX_MS 10000
#define MESSAGES_MAX 2000000	/* messages of one run, whatever the mode */
#define SIZE_MIN 64
#define SIZE_MAX_BYTES 8000		/* also below NOTIFY's payload limit */
#define CALL_TIMEOUT_US (30 * 1000000LL)	/* a call longer than this fails */
#define RUN_MAX_US (3600 * 1000000LL)	/* so does a run longer than this */
#define LISTEN_LINGER_US (2 * 1000000LL)	/* --listen: wait this long after */
#define CHANNEL_MAX 63
#define HTTP_IN_MAX 65536
#define EVENTS_MAX 128
#define STDIN_EVENT UINT32_MAX
#define LISTEN_EVENT (UINT32_MAX - 1)

typedef enum Target
{
	TARGET_COMET,
	TARGET_NOTIFY,
	TARGET_NCHAN
} Target;

typedef enum Mode
{
	MODE_RATE,
	MODE_COUNT,
	MODE_STDIN
} Mode;

typedef struct Options
{
	Target		target;
	Mode		mode;
	const char *db;
	const char *host;
	int			port;
	const char *channel;
	long		channels;
	long		size;
	long		connections;
	int			listen;
	long		step;
	long		rate;
	long		duration_s;
	long		count;
	long		interval_ms;
} Options;

/* One message: where it goes, and when it was due, sent and answered. */
typedef struct Message
{
	int			channel;		/* 1..C */
	long long	n;
	long long	t;				/* the send time it carries */
	long long	start_us;		/* the call started */
	long long	return_us;		/* the call returned, 0 = not yet */
	long		next;			/* next in its connection's queue, -1 = none */
} Message;

/* One connection to the server and the calls waiting for it. */
typedef struct Conn
{
	PGconn	   *pg;				/* comet, notify */
	int			fd;
	long		busy;			/* message being sent, -1 = none */
	long		head;			/* queue of messages due, -1 = empty */
	long		tail;
	int			want_write;		/* watching for EPOLLOUT */
	char		out[SIZE_MAX_BYTES + 512];	/* nchan: the request */
	size_t		out_len;
	size_t		out_off;
	char		in[HTTP_IN_MAX];	/* nchan: the answer so far */
	size_t		in_len;
} Conn;

/* One notification heard with --listen. */
typedef struct Heard
{
	int			channel;
	long long	n;
	long long	t;
	long long	received_us;
} Heard;

typedef struct Publisher
{
	Options		options;
	struct sockaddr_storage addr;
	socklen_t	addr_len;
	char		host_header[80];
	int			epoll_fd;
	Conn	   *conns;
	PGconn	   *listener;
	Message    *messages;
	long		messages_cap;
	long		due;			/* messages made due so far */
	long		returned;
	long		errors;
	long long  *channel_n;		/* [c]: last n given on channel c */
	long long	start_us;
	long long	next_due_us;	/* count mode: when the next one is due */
	int			stdin_open;
	char		stdin_buf[256];
	size_t		stdin_len;
	Heard	   *heard;
	long		heard_len;
	long		heard_cap;
} Publisher;

static long long
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Print a message to stderr and exit with status 1. */
static void
fail(const char *format,...)
{
	va_list		args;

	fputs("publish: ", stderr);
	va_start(args, format);
	vfprintf(stderr, format, args);
	va_end(args);
	fputc('\n', stderr);
	exit(1);
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: publish --to comet|notify|nchan [--db CONNINFO] [--port P] [--host ADDR]\n"
			"               [--channel PREFIX] [--channels C] [--size BYTES] [--connections K]\n"
			"               [--listen] [--step S]\n"
			"               (--rate R --duration SECONDS | --count K --interval-ms MS | --stdin)\n"
			"  ADDR in 127.0.0.0/8 or ::1 (127.0.0.1); C 1..%d (1); BYTES %d..%d (100);\n"
			"  K 1..%d (1); R 1..%d; SECONDS 1..%d; K 1..%d; MS 0..%d\n",
			CHANNELS_MAX, SIZE_MIN, SIZE_MAX_BYTES, CONNECTIONS_MAX, RATE_MAX, DURATION_MAX_S,
			COUNT_MAX, INTERVAL_MAX_MS);
}

/* A whole number in [min, max] from TEXT into *out; -1 when it is not one. */
static int
number_parse(const char *text, long min, long max, long *out)
{
	char	   *end;
	long		value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
		return -1;
	*out = value;
	return 0;
}

/* Fill OPTIONS from the command line; -1 (after a message) when invalid. */
static int
options_parse(int argc, char **argv, Options *o)
{
	int			i;
	int			target_given = 0;
	int			modes = 0;
	long		value;

	for (i = 1; i < argc; i++)
	{
		const char *name = argv[i];
		const char *arg = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(name, "--listen") == 0)
		{
			o->listen = 1;
			continue;
		}
		if (strcmp(name, "--stdin") == 0)
		{
			o->mode = MODE_STDIN;
			modes++;
			continue;
		}
		if (arg == NULL)
		{
			fprintf(stderr, "publish: %s needs a value\n", name);
			return -1;
		}
		i++;
		if (strcmp(name, "--to") == 0)
		{
			if (strcmp(arg, "comet") == 0)
				o->target = TARGET_COMET;
			else if (strcmp(arg, "notify") == 0)
				o->target = TARGET_NOTIFY;
			else if (strcmp(arg, "nchan") == 0)
				o->target = TARGET_NCHAN;
			else
				goto bad;
			target_given = 1;
		}
		else if (strcmp(name, "--db") == 0)
			o->db = arg;
		else if (strcmp(name, "--host") == 0)
			o->host = arg;
		else if (strcmp(name, "--port") == 0)
		{
			if (number_parse(arg, 1, 65535, &value) != 0)
				goto bad;
			o->port = (int) value;
		}
		else if (strcmp(name, "--channel") == 0)
			o->channel = arg;
		else if (strcmp(name, "--channels") == 0)
		{
			if (number_parse(arg, 1, CHANNELS_MAX, &o->channels) != 0)
				goto bad;
		}
		else if (strcmp(name, "--size") == 0)
		{
			if (number_parse(arg, SIZE_MIN, SIZE_MAX_BYTES, &o->size) != 0)
				goto bad;
		}
		else if (strcmp(name, "--connections") == 0)
		{
			if (number_parse(arg, 1, CONNECTIONS_MAX, &o->connections) != 0)
				goto bad;
		}
		else if (strcmp(name, "--step") == 0)
		{
			if (number_parse(arg, 0, 1000000, &o->step) != 0)
				goto bad;
		}
		else if (strcmp(name, "--rate") == 0)
		{
			if (number_parse(arg, 1, RATE_MAX, &o->rate) != 0)
				goto bad;
			o->mode = MODE_RATE;
			modes++;
		}
		else if (strcmp(name, "--duration") == 0)
		{
			if (number_parse(arg, 1, DURATION_MAX_S, &o->duration_s) != 0)
				goto bad;
		}
		else if (strcmp(name, "--count") == 0)
		{
			if (number_parse(arg, 1, COUNT_MAX, &o->count) != 0)
				goto bad;
			o->mode = MODE_COUNT;
			modes++;
		}
		else if (strcmp(name, "--interval-ms") == 0)
		{
			if (number_parse(arg, 0, INTERVAL_MAX_MS, &o->interval_ms) != 0)
				goto bad;
		}
		else
		{
			fprintf(stderr, "publish: unknown option %s\n", name);
			return -1;
		}
		continue;
bad:
		fprintf(stderr, "publish: invalid value for %s: '%s'\n", name, arg);
		return -1;
	}
	if (!target_given || modes != 1)
	{
		fprintf(stderr, "publish: --to and one of --rate, --count, --stdin are required\n");
		return -1;
	}
	if (o->mode == MODE_RATE && o->duration_s == 0)
	{
		fprintf(stderr, "publish: --rate needs --duration\n");
		return -1;
	}
	if (o->mode == MODE_RATE && o->rate * o->duration_s > MESSAGES_MAX)
	{
		fprintf(stderr, "publish: at most %d messages in a run\n", MESSAGES_MAX);
		return -1;
	}
	if (o->target == TARGET_NCHAN && (o->port == 0 || o->listen))
	{
		fprintf(stderr, "publish: nchan needs --port and has no --listen\n");
		return -1;
	}
	/* channel names go into JSON, SQL parameters and URL paths as they are */
	if (o->channel[0] == '\0' || strlen(o->channel) > CHANNEL_MAX - 5 ||
		strspn(o->channel, "abcdefghijklmnopqrstuvwxyz"
			   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:") != strlen(o->channel))
	{
		fprintf(stderr, "publish: the channel prefix must be 1-%d letters, digits, '_' or ':'\n",
				CHANNEL_MAX - 5);
		return -1;
	}
	return 0;
}

/* ---- messages -------------------------------------------------------- */

/* Make message I (the next) due: its channel, its number, its time T. */
static Message *
message_due(Publisher *p, long long t)
{
	long		i = p->due;
	Message    *m;

	if (i >= MESSAGES_MAX)
		fail("more than %d messages", MESSAGES_MAX);
	if (i >= p->messages_cap)
	{
		long		cap = p->messages_cap ? p->messages_cap * 2 : 4096;
		Message    *grown = realloc(p->messages, (size_t) cap * sizeof(Message));

		if (grown == NULL)
			fail("out of memory");
		p->messages = grown;
		p->messages_cap = cap;
	}
	m = &p->messages[i];
	m->channel = (int) (i % p->options.channels) + 1;
	m->n = ++p->channel_n[m->channel];
	m->t = t;
	m->start_us = 0;
	m->return_us = 0;
	m->next = -1;
	p->due++;
	return m;
}

/* The JSON text of message M, padded to --size, into BUF; its length. */
static size_t
message_render(Publisher *p, const Message *m, char *buf, size_t buf_size)
{
	int			len = snprintf(buf, buf_size, "{\"t\":%lld,\"n\":%lld,\"s\":%ld,\"p\":\"",
							   m->t, m->n, p->options.step);
	size_t		pad = 0;

	if (len > 0 && (size_t) len + 2 < (size_t) p->options.size)
		pad = (size_t) p->options.size - (size_t) len - 2;
	if ((size_t) len + pad + 3 > buf_size)
		fail("message too large");
	memset(buf + len, 'x', pad);
	memcpy(buf + len + pad, "\"}", 3);
	return (size_t) len + pad + 2;
}

/* ---- connections ----------------------------------------------------- */

/*
 * Resolve the numeric loopback address HOST:PORT; -1 (after a message)
 * when it is not numeric or not loopback.  No name lookups.
 */
static int
address_resolve(Publisher *p, const char *host, int port)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *) &p->addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &p->addr;

	memset(&p->addr, 0, sizeof(p->addr));
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1)
	{
		if ((ntohl(in4->sin_addr.s_addr) >> 24) != 127)
			goto refused;
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t) port);
		p->addr_len = sizeof(*in4);
		snprintf(p->host_header, sizeof(p->host_header), "%s:%d", host, port);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1)
	{
		if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			goto refused;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t) port);
		p->addr_len = sizeof(*in6);
		snprintf(p->host_header, sizeof(p->host_header), "[::1]:%d", port);
		return 0;
	}
	fprintf(stderr, "publish: '%s' is not a numeric IPv4 or IPv6 address\n", host);
	return -1;
refused:
	fprintf(stderr, "publish: refusing %s: only 127.0.0.0/8 and ::1 are allowed\n", host);
	return -1;
}

/* Whether ADDRESS is a numeric loopback address (127.0.0.0/8 or ::1). */
static int
address_is_loopback(const char *address)
{
	struct in_addr in4;
	struct in6_addr in6;

	return (inet_pton(AF_INET, address, &in4) == 1 && (ntohl(in4.s_addr) >> 24) == 127) ||
		(inet_pton(AF_INET6, address, &in6) == 1 && IN6_IS_ADDR_LOOPBACK(&in6));
}

/*
 * Whether every entry of the comma-separated libpq host list HOSTS is a
 * Unix socket directory, "localhost" or a numeric loopback address.
 */
static int
hosts_are_local(const char *hosts)
{
	char		copy[1024];
	char	   *entry;
	char	   *next;

	if (strlen(hosts) >= sizeof(copy))
		return 0;
	strcpy(copy, hosts);
	for (entry = copy; entry != NULL; entry = next)
	{
		next = strchr(entry, ',');
		if (next != NULL)
			*next++ = '\0';
		if (entry[0] != '\0' && entry[0] != '/' && entry[0] != '@' &&
			strcmp(entry, "localhost") != 0 && !address_is_loopback(entry))
			return 0;
	}
	return 1;
}

/*
 * Refuse (exit) before connecting unless the connection string, with
 * libpq's PG* variables, can only reach a Unix socket or a loopback
 * address.  A service file could name any host: services are refused.
 */
static void
database_target_check(const char *conninfo)
{
	char	   *error = NULL;
	PQconninfoOption *options = PQconninfoParse(conninfo, &error);
	PQconninfoOption *o;
	const char *host = getenv("PGHOST");
	const char *hostaddr = getenv("PGHOSTADDR");
	const char *service = getenv("PGSERVICE");

	if (options == NULL)
		fail("invalid --db: %s", error ? error : "out of memory");
	for (o = options; o->keyword != NULL; o++)
	{
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
		else if (strcmp(o->keyword, "service") == 0)
			service = o->val;
	}
	if ((service != NULL && service[0] != '\0') ||
		(host != NULL && !hosts_are_local(host)) ||
		(hostaddr != NULL && !hosts_are_local(hostaddr)))
		fail("refusing a database outside this machine: only a Unix socket, localhost "
			 "or a loopback address (and no service)");
	PQconninfoFree(options);
}

/*
 * Connect to PostgreSQL, after database_target_check; checks again, once
 * connected, that the server was reached through a Unix socket or a
 * loopback address.
 */
static PGconn *
pg_open(Publisher *p)
{
	PGconn	   *pg;
	const char *host;
	const char *addr;

	database_target_check(p->options.db);
	pg = PQconnectdb(p->options.db);
	if (PQstatus(pg) != CONNECTION_OK)
		fail("cannot connect to the database: %s", PQerrorMessage(pg));
	host = PQhost(pg);
	addr = PQhostaddr(pg);
	if (host == NULL || host[0] != '/')
	{
		const char *a = addr != NULL && addr[0] != '\0' ? addr : host;

		if (a == NULL || !address_is_loopback(a))
			fail("refusing database server %s: only a Unix socket or a loopback address",
				 a ? a : "(unknown)");
	}
	return pg;
}

/* Watch FD for input, and for output when WRITE; DATA tells whose it is. */
static void
fd_watch(Publisher *p, int fd, int op, int write, uint32_t data)
{
	struct epoll_event ev = {0};

	ev.events = EPOLLIN | (write ? EPOLLOUT : 0);
	ev.data.u32 = data;
	if (epoll_ctl(p->epoll_fd, op, fd, &ev) != 0)
		fail("epoll_ctl: %s", strerror(errno));
}

/* Turn EPOLLOUT on or off for connection C. */
static void
conn_want_write(Publisher *p, Conn *c, int want)
{
	if (c->want_write == want)
		return;
	c->want_write = want;
	fd_watch(p, c->fd, EPOLL_CTL_MOD, want, (uint32_t) (c - p->conns));
}

/*
 * Open connection C: a libpq connection with the statement prepared, or a
 * socket to Nchan.  C's queue is left as it is.
 */
static void
conn_open(Publisher *p, Conn *c)
{
	c->want_write = 0;
	c->in_len = 0;
	if (p->options.target != TARGET_NCHAN)
	{
		const char *sql = p->options.target == TARGET_COMET
			? "SELECT comet.send($1, $2::jsonb)"
			: "SELECT pg_notify($1, $2)";
		PGresult   *res;

		c->pg = pg_open(p);
		res = PQprepare(c->pg, "publish", sql, 2, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			fail("cannot prepare %s: %s", sql, PQerrorMessage(c->pg));
		PQclear(res);
		if (PQsetnonblocking(c->pg, 1) != 0)
			fail("cannot make the connection non-blocking");
		c->fd = PQsocket(c->pg);
	}
	else
	{
		int			one = 1;

		c->fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->fd < 0 || connect(c->fd, (struct sockaddr *) &p->addr, p->addr_len) != 0)
			fail("cannot connect to %s: %s", p->host_header, strerror(errno));
		(void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) != 0)
			fail("cannot make the socket non-blocking");
	}
	fd_watch(p, c->fd, EPOLL_CTL_ADD, 0, (uint32_t) (c - p->conns));
}

/* Open the --listen connection: LISTEN on every channel. */
static void
listener_open(Publisher *p)
{
	long		c;

	p->listener = pg_open(p);
	for (c = 1; c <= p->options.channels; c++)
	{
		char		name[CHANNEL_MAX + 1];
		char		sql[2 * CHANNEL_MAX + 32];
		char	   *quoted;
		PGresult   *res;

		snprintf(name, sizeof(name), "%s%ld", p->options.channel, c);
		quoted = PQescapeIdentifier(p->listener, name, strlen(name));
		if (quoted == NULL)
			fail("cannot quote %s", name);
		snprintf(sql, sizeof(sql), "LISTEN %s", quoted);
		PQfreemem(quoted);
		res = PQexec(p->listener, sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			fail("%s: %s", sql, PQerrorMessage(p->listener));
		PQclear(res);
	}
	if (PQsetnonblocking(p->listener, 1) != 0)
		fail("cannot make the listening connection non-blocking");
	fd_watch(p, PQsocket(p->listener), EPOLL_CTL_ADD, 0, LISTEN_EVENT);
}

/* Write what is pending on C; fails (exits) when the connection broke. */
static void
conn_flush(Publisher *p, Conn *c)
{
	if (c->pg != NULL)
	{
		int			r = PQflush(c->pg);

		if (r < 0)
			fail("sending to the database: %s", PQerrorMessage(c->pg));
		conn_want_write(p, c, r == 1);
		return;
	}
	while (c->out_off < c->out_len)
	{
		ssize_t		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			fail("send: %s", strerror(errno));
		c->out_off += (size_t) n;
	}
	conn_want_write(p, c, c->out_off < c->out_len);
}

/* Start the call for the first message queued on C, if C is free. */
static void
conn_start(Publisher *p, Conn *c)
{
	char		body[SIZE_MAX_BYTES + 1];
	size_t		body_len;
	char		channel[CHANNEL_MAX + 1];
	Message    *m;

	if (c->busy >= 0 || c->head < 0)
		return;
	c->busy = c->head;
	m = &p->messages[c->busy];
	c->head = m->next;
	if (c->head < 0)
		c->tail = -1;
	m->start_us = now_us();
	if (p->options.mode != MODE_RATE)
		m->t = m->start_us;
	body_len = message_render(p, m, body, sizeof(body));
	snprintf(channel, sizeof(channel), "%s%d", p->options.channel, m->channel);
	if (c->pg != NULL)
	{
		const char *values[2] = {channel, body};

		if (!PQsendQueryPrepared(c->pg, "publish", 2, values, NULL, NULL, 0))
			fail("sending to the database: %s", PQerrorMessage(c->pg));
	}
	else
	{
		int			n = snprintf(c->out, sizeof(c->out),
								 "POST /pub/%s HTTP/1.1\r\nHost: %s\r\n"
								 "Content-Type: application/json\r\nAccept: text/json\r\n"
								 "Content-Length: %zu\r\n\r\n%s",
								 channel, p->host_header, body_len, body);

		if (n < 0 || (size_t) n >= sizeof(c->out))
			fail("request too long");
		c->out_len = (size_t) n;
		c->out_off = 0;
	}
	conn_flush(p, c);
}

/* Queue message M on the connection of its channel, and start it if free. */
static void
message_queue(Publisher *p, Message *m)
{
	Conn	   *c = &p->conns[(m->channel - 1) % p->options.connections];
	long		i = (long) (m - p->messages);

	if (c->tail >= 0)
		p->messages[c->tail].next = i;
	else
		c->head = i;
	c->tail = i;
	conn_start(p, c);
}

/* C's call returned at RETURNED_US: note it and start the next one. */
static void
conn_returned(Publisher *p, Conn *c, long long returned_us)
{
	Message    *m = &p->messages[c->busy];

	m->return_us = returned_us;
	p->returned++;
	c->busy = -1;
	if (p->options.mode != MODE_RATE)
	{
		printf("sent %d %lld %lld %lld %lld\n", m->channel, m->n, m->t, m->start_us, m->return_us);
		fflush(stdout);
	}
	if (p->options.mode == MODE_COUNT)
		p->next_due_us = returned_us + p->options.interval_ms * 1000;
	conn_start(p, c);
}

/* The database answered on C: read it; the call returns at ReadyForQuery. */
static void
pg_readable(Publisher *p, Conn *c)
{
	if (!PQconsumeInput(c->pg))
		fail("reading from the database: %s", PQerrorMessage(c->pg));
	while (c->busy >= 0 && !PQisBusy(c->pg))
	{
		PGresult   *res = PQgetResult(c->pg);

		if (res == NULL)
		{
			conn_returned(p, c, now_us());
			break;
		}
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			if (p->errors++ < 5)
				fprintf(stderr, "publish: %s", PQresultErrorMessage(res));
		}
		PQclear(res);
	}
}

/* Nchan answered on C: read it; the call returns with the whole answer. */
static void
http_readable(Publisher *p, Conn *c)
{
	for (;;)
	{
		ssize_t		n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len - 1, 0);
		char	   *head_end;
		char	   *length;
		size_t		head_len;
		size_t		body_len;
		int			status = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0 && c->busy < 0 && c->in_len == 0)
		{
			/* nginx ended an idle keep-alive connection: open another */
			close(c->fd);
			conn_open(p, c);
			return;
		}
		if (n <= 0)
			fail("the server closed the connection during a call");
		c->in_len += (size_t) n;
		c->in[c->in_len] = '\0';
		head_end = strstr(c->in, "\r\n\r\n");
		if (head_end == NULL)
		{
			if (c->in_len >= sizeof(c->in) - 1)
				fail("an answer too large");
			continue;
		}
		head_len = (size_t) (head_end - c->in) + 4;
		length = strcasestr(c->in, "\r\nContent-Length:");
		if (length == NULL || length > head_end)
			fail("an answer without Content-Length");
		body_len = strtoul(length + 17, NULL, 10);
		if (head_len + body_len >= sizeof(c->in))
			fail("an answer too large");
		if (c->in_len < head_len + body_len)
			continue;
		if (c->busy < 0 || c->in_len > head_len + body_len)
			fail("an answer without a request");
		if (sscanf(c->in, "HTTP/1.%*d %d", &status) != 1 || (status != 201 && status != 202))
		{
			if (p->errors++ < 5)
				fprintf(stderr, "publish: HTTP %d: %.200s\n", status, c->in + head_len);
		}
		c->in_len = 0;
		head_end[2] = '\0';
		if (strcasestr(c->in, "\r\nConnection: close\r\n") != NULL)
		{
			/* nginx ends this keep-alive connection: the next call needs another */
			close(c->fd);
			conn_open(p, c);
		}
		conn_returned(p, c, now_us());
		return;
	}
}

/* The integer after "KEY": in the JSON text TEXT; -1 when there is none. */
static int
payload_integer(const char *text, const char *key, long long *out)
{
	char		quoted[16];
	const char *p;
	char	   *end;

	snprintf(quoted, sizeof(quoted), "\"%s\"", key);
	p = strstr(text, quoted);
	if (p == NULL)
		return -1;
	p += strlen(quoted);
	while (*p == ' ')
		p++;
	if (*p++ != ':')
		return -1;
	errno = 0;
	*out = strtoll(p, &end, 10);
	return errno == 0 && end != p ? 0 : -1;
}

/* The listening connection has input: note every notification. */
static void
listener_readable(Publisher *p)
{
	long long	received_us;
	PGnotify   *notify;

	if (!PQconsumeInput(p->listener))
		fail("reading notifications: %s", PQerrorMessage(p->listener));
	received_us = now_us();
	while ((notify = PQnotifies(p->listener)) != NULL)
	{
		const char *json = strchr(notify->extra, '{');
		Heard		h = {0};

		h.received_us = received_us;
		h.channel = atoi(notify->relname + strlen(p->options.channel));
		if (json == NULL || payload_integer(json, "t", &h.t) != 0 ||
			payload_integer(json, "n", &h.n) != 0)
		{
			if (p->errors++ < 5)
				fprintf(stderr, "publish: a notification without t and n: %.100s\n", notify->extra);
			PQfreemem(notify);
			continue;
		}
		PQfreemem(notify);
		if (p->heard_len == p->heard_cap)
		{
			long		cap = p->heard_cap ? p->heard_cap * 2 : 4096;
			Heard	   *grown;

			if (cap > MESSAGES_MAX)
				fail("more than %d notifications", MESSAGES_MAX);
			grown = realloc(p->heard, (size_t) cap * sizeof(Heard));
			if (grown == NULL)
				fail("out of memory");
			p->heard = grown;
			p->heard_cap = cap;
		}
		p->heard[p->heard_len++] = h;
		if (p->options.mode != MODE_RATE)
		{
			printf("heard %d %lld %lld %lld\n", h.channel, h.n, h.t, h.received_us);
			fflush(stdout);
		}
	}
}

/* Stdin has input: one message for every whole line. */
static void
stdin_readable(Publisher *p)
{
	ssize_t		n = read(STDIN_FILENO, p->stdin_buf, sizeof(p->stdin_buf));
	ssize_t		i;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0)
	{
		p->stdin_open = 0;
		(void) epoll_ctl(p->epoll_fd, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
		return;
	}
	for (i = 0; i < n; i++)
		if (p->stdin_buf[i] == '\n')
			message_queue(p, message_due(p, 0));
}

static int
long_long_order(const void *a, const void *b)
{
	long long	x = *(const long long *) a;
	long long	y = *(const long long *) b;

	return (x > y) - (x < y);
}

/* Print "NAME_p50_us", "_p99_us" and "_max_us" of the N values V (sorted here). */
static void
percentiles_print(const char *name, long long *v, long n)
{
	if (n <= 0)
		return;
	qsort(v, (size_t) n, sizeof(long long), long_long_order);
	printf("%s_p50_us %lld\n%s_p99_us %lld\n%s_max_us %lld\n", name,
		   v[((size_t) n * 50 + 99) / 100 - 1], name, v[((size_t) n * 99 + 99) / 100 - 1],
		   name, v[n - 1]);
}

/* Print the totals: counts, how late calls started, how long they took. */
static void
publish_report(Publisher *p, long long end_us)
{
	long		n = p->due > p->heard_len ? p->due : p->heard_len;
	long long  *v = malloc((size_t) (n > 0 ? n : 1) * sizeof(long long));
	long long	first_t = 0;
	long long	last_return = 0;
	long		i;

	struct rusage usage;

	if (v == NULL)
		fail("out of memory");
	printf("messages %ld\nreturned %ld\nerrors %ld\nelapsed_ms %lld\n", p->due, p->returned,
		   p->errors, (end_us - p->start_us) / 1000);
	if (getrusage(RUSAGE_SELF, &usage) == 0)
		printf("cpu_us %lld\n",
			   (long long) (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000 +
			   usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
	for (i = 0; i < p->due; i++)
	{
		if (i == 0 || p->messages[i].t < first_t)
			first_t = p->messages[i].t;
		if (p->messages[i].return_us > last_return)
			last_return = p->messages[i].return_us;
	}
	if (p->options.mode == MODE_RATE)
	{
		printf("offered_rate %ld\n", p->options.rate);
		if (last_return > first_t)
			printf("achieved_rate %.0f\n", p->returned * 1e6 / (double) (last_return - first_t));
		for (i = 0; i < p->due; i++)
			v[i] = p->messages[i].start_us - p->messages[i].t;
		percentiles_print("late", v, p->due);
	}
	for (i = 0; i < p->due; i++)
		v[i] = p->messages[i].return_us - p->messages[i].start_us;
	percentiles_print("call", v, p->due);
	if (p->options.listen)
	{
		printf("heard %ld\n", p->heard_len);
		for (i = 0; i < p->heard_len; i++)
			v[i] = p->heard[i].received_us - p->heard[i].t;
		percentiles_print("heard", v, p->heard_len);
	}
	fflush(stdout);
	free(v);
}

/* Everything is sent and answered (and heard, or given up on). */
static int
publish_done(Publisher *p, long long now)
{
	long long	last_return = 0;
	long		i;
	int			all_due;

	switch (p->options.mode)
	{
		case MODE_RATE:
			all_due = p->due == p->options.rate * p->options.duration_s;
			break;
		case MODE_COUNT:
			all_due = p->due == p->options.count;
			break;
		default:
			all_due = !p->stdin_open;
			break;
	}
	if (!all_due || p->returned < p->due)
		return 0;
	if (!p->options.listen || p->heard_len >= p->due)
		return 1;
	for (i = 0; i < p->due; i++)
		if (p->messages[i].return_us > last_return)
			last_return = p->messages[i].return_us;
	return now - last_return > LISTEN_LINGER_US;
}

int
main(int argc, char **argv)
{
	static Publisher p;
	struct epoll_event events[EVENTS_MAX];
	long		i;

	p.options.host = "127.0.0.1";
	p.options.db = "";
	p.options.channel = "bench";
	p.options.channels = 1;
	p.options.size = 100;
	p.options.connections = 1;
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
	{
		usage();
		return 0;
	}
	if (options_parse(argc, argv, &p.options) != 0 ||
		(p.options.target == TARGET_NCHAN &&
		 address_resolve(&p, p.options.host, p.options.port) != 0))
	{
		usage();
		return 2;
	}
	p.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	p.conns = calloc((size_t) p.options.connections, sizeof(Conn));
	p.channel_n = calloc((size_t) p.options.channels + 1, sizeof(long long));
	if (p.epoll_fd < 0 || p.conns == NULL || p.channel_n == NULL)
		fail("start-up: %s", strerror(errno));
	for (i = 0; i < p.options.connections; i++)
	{
		p.conns[i].busy = p.conns[i].head = p.conns[i].tail = -1;
		conn_open(&p, &p.conns[i]);
	}
	if (p.options.listen)
		listener_open(&p);
	if (p.options.mode == MODE_STDIN)
	{
		p.stdin_open = 1;
		fd_watch(&p, STDIN_FILENO, EPOLL_CTL_ADD, 0, STDIN_EVENT);
	}
	p.start_us = now_us();
	p.next_due_us = p.start_us;
	for (;;)
	{
		long long	now = now_us();
		long long	wait_us = 100000;
		int			n;

		if (p.options.mode == MODE_RATE)
		{
			long		total = p.options.rate * p.options.duration_s;

			while (p.due < total)
			{
				long long	due_us = p.start_us + p.due * 1000000LL / p.options.rate;

				if (due_us > now)
				{
					wait_us = due_us - now;
					break;
				}
				message_queue(&p, message_due(&p, due_us));
			}
		}
		else if (p.options.mode == MODE_COUNT && p.due < p.options.count && p.returned == p.due)
		{
			if (now >= p.next_due_us)
				message_queue(&p, message_due(&p, 0));
			else
				wait_us = p.next_due_us - now;
		}
		if (publish_done(&p, now))
			break;
		if (now - p.start_us > RUN_MAX_US)
			fail("running for more than %lld s", RUN_MAX_US / 1000000);
		for (i = 0; i < p.options.connections; i++)
		{
			Conn	   *c = &p.conns[i];

			if (c->busy >= 0 && now - p.messages[c->busy].start_us > CALL_TIMEOUT_US)
				fail("a call took longer than %lld s", CALL_TIMEOUT_US / 1000000);
		}
		if (wait_us > 100000)
			wait_us = 100000;
		n = epoll_wait(p.epoll_fd, events, EVENTS_MAX, (int) ((wait_us + 999) / 1000));
		if (n < 0 && errno != EINTR)
			fail("epoll_wait: %s", strerror(errno));
		for (i = 0; i < n; i++)
		{
			uint32_t	data = events[i].data.u32;
			Conn	   *c;

			if (data == STDIN_EVENT)
			{
				stdin_readable(&p);
				continue;
			}
			if (data == LISTEN_EVENT)
			{
				listener_readable(&p);
				continue;
			}
			c = &p.conns[data];
			if (events[i].events & EPOLLOUT)
				conn_flush(&p, c);
			if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			{
				if (c->pg != NULL)
					pg_readable(&p, c);
				else
					http_readable(&p, c);
			}
		}
	}
	publish_report(&p, now_us());
	for (i = 0; i < p.options.connections; i++)
		if (p.conns[i].pg != NULL)
			PQfinish(p.conns[i].pg);
	if (p.listener != NULL)
		PQfinish(p.listener);
	return p.errors == 0 && p.returned == p.due ? 0 : 1;
}
