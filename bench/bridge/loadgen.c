/*
 * loadgen.c — the long-poll load generator of the bridge benchmark.
 *
 * Holds N comet sessions on one channel against one comet-bridge: each
 * session has its own keep-alive HTTP/1.1 connection, sets up with
 * {"rid":R,"subscribe":[C]} and from then on keeps exactly one poll held,
 * polling again with the next rid as soon as an answer arrives.  Every
 * packet's data is expected to carry {"t": <send time, µs since the epoch>};
 * for each packet received the load generator records the receive time
 * (CLOCK_REALTIME, taken right after the read that completed the answer)
 * minus t.  At the end every session is ended politely: its held poll's
 * connection is closed (the bridge notices a client gone) and a new
 * connection sends {"sid":S,"rid":R+1,"terminate":true}, so that the bridge
 * does not keep the session until its inactivity timeout.  (A keep-alive
 * connection whose poll is held cannot carry another request.)
 *
 *   loadgen --url-port P [--host 127.0.0.1] [--sessions N] [--channel C]
 *           [--duration S] [--expect K]
 *
 * It stops once every session has received K packets (--expect, 0 = no
 * such stop) or after S seconds, whichever comes first, and then spends
 * at most TERMINATE_MS more saying goodbye.  Set-ups and goodbyes are
 * paced (at most IN_FLIGHT_MAX at a time) so that the bridge's listen
 * backlog never overflows.
 *
 * Output, "key value" lines on stdout, flushed as they happen:
 *   ready E                  every session is set up (E of them) and polling
 *   round K MS               every live session has received K packets
 *   ... then the totals (see loadgen_report) and one line per packet:
 *   packet T COUNT MIN P50 P99 MAX    T = its send time, latencies in µs
 *
 * It must never: talk to an address outside 127.0.0.0/8 and ::1, start a
 * thread, use a library beyond libc, or run unbounded in time or memory.
 * JSON is read with a minimal scanner that knows only what a comet answer
 * looks like (objects, arrays, strings, numbers); it is not a validator.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
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

#define SESSIONS_MAX 100000
#define DURATION_MAX_S 3600
#define EXPECT_MAX 1000000
#define IN_FLIGHT_MAX 128		/* set-ups or goodbyes outstanding at once */
#define POLL_WAIT_S 60			/* "wait" asked for in the set-up */
#define TERMINATE_MS 5000		/* longest goodbye after the run */
#define IN_INITIAL 4096			/* first size of a connection's input */
#define IN_MAX (8 * 1024 * 1024)	/* an answer larger than this is an error */
#define OUT_SIZE 1024			/* one request, headers included */
#define SID_MAX 256
#define FILES_SPARE 32			/* descriptors beyond one per session */
#define EVENTS_MAX 1024
#define ERRORS_LOGGED 10		/* connection errors written to stderr */
#define STATUS_MAX 600

typedef enum ConnState
{
	CONN_UNSTARTED,				/* no socket yet */
	CONN_CONNECTING,			/* non-blocking connect in progress */
	CONN_SETUP,					/* set-up sent, no answer yet */
	CONN_POLLING,				/* a poll is outstanding (held) */
	CONN_GOODBYE,				/* new connection for the terminate */
	CONN_TERMINATING,			/* terminate sent, waiting for its answer */
	CONN_CLOSED					/* done: terminated, failed or lost */
} ConnState;

/* One session and its connection. */
typedef struct Conn
{
	int			fd;
	ConnState	state;
	uint64_t	rid;			/* of the request outstanding */
	char		sid[SID_MAX];
	char	   *in;				/* bytes read, not yet consumed */
	size_t		in_len;
	size_t		in_cap;
	char		out[OUT_SIZE];	/* the request being written */
	size_t		out_len;
	size_t		out_off;
	long		received;		/* packets received */
	long long	last_seq;		/* last durable seq seen, -1 = none yet */
	int			established;	/* the set-up was answered with a sid */
} Conn;

/* One received packet. */
typedef struct Sample
{
	long long	sent_us;		/* the "t" it carries */
	long long	latency_us;		/* receive time - sent_us */
} Sample;

typedef struct Options
{
	const char *host;
	int			port;
	long		sessions;
	const char *channel;
	long		duration_s;
	long		expect;
} Options;

typedef struct Loadgen
{
	Options		options;
	struct sockaddr_storage addr;
	socklen_t	addr_len;
	char		host_header[80];
	int			epoll_fd;
	Conn	   *conns;
	int			ending;			/* the goodbye has begun */
	long		started;		/* conns given a socket so far */
	long		in_flight;		/* connecting or set up, not answered */
	long		goodbye_next;	/* next conn to say goodbye to */
	long		goodbye_in_flight;	/* goodbyes not answered yet */
	long		settled;		/* set-ups answered or failed */
	long		established;
	long		alive;			/* established and not closed */
	long		complete;		/* alive with received >= expect */
	long		setup_failures;
	long		connect_errors;
	long		lost;			/* established sessions that ended early */
	long		http_errors;
	long		status_count[STATUS_MAX];
	long		packets;
	long		packets_missing;	/* seqs skipped */
	long		packets_duplicate;	/* seqs not above the last one */
	long		packets_without_t;
	long		gaps;
	long		terminated;
	long		terminate_failures;
	long	   *round_count;	/* [k]: sessions that reached k packets */
	long		rounds_announced;
	int			ready_announced;
	int			errors_logged;
	Sample	   *samples;
	size_t		samples_len;
	size_t		samples_cap;
	long long	start_us;
} Loadgen;

static long long
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: loadgen --url-port P [--host ADDR] [--sessions N] [--channel C]\n"
			"               [--duration S] [--expect K]\n"
			"  ADDR must be in 127.0.0.0/8 or ::1 (default 127.0.0.1); N 1..%d (1);\n"
			"  C a channel name (bench); S 1..%d seconds (30); K packets per session\n"
			"  after which to stop, 0 = run for S seconds (0)\n",
			SESSIONS_MAX, DURATION_MAX_S);
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
options_parse(int argc, char **argv, Options *options)
{
	int			i;
	long		value;

	for (i = 1; i < argc; i += 2)
	{
		const char *name = argv[i];
		const char *arg = i + 1 < argc ? argv[i + 1] : NULL;

		if (arg == NULL)
		{
			fprintf(stderr, "loadgen: %s needs a value\n", name);
			return -1;
		}
		if (strcmp(name, "--url-port") == 0)
		{
			if (number_parse(arg, 1, 65535, &value) != 0)
				goto bad;
			options->port = (int) value;
		}
		else if (strcmp(name, "--host") == 0)
			options->host = arg;
		else if (strcmp(name, "--sessions") == 0)
		{
			if (number_parse(arg, 1, SESSIONS_MAX, &options->sessions) != 0)
				goto bad;
		}
		else if (strcmp(name, "--channel") == 0)
			options->channel = arg;
		else if (strcmp(name, "--duration") == 0)
		{
			if (number_parse(arg, 1, DURATION_MAX_S, &options->duration_s) != 0)
				goto bad;
		}
		else if (strcmp(name, "--expect") == 0)
		{
			if (number_parse(arg, 0, EXPECT_MAX, &options->expect) != 0)
				goto bad;
		}
		else
		{
			fprintf(stderr, "loadgen: unknown option %s\n", name);
			return -1;
		}
		continue;
bad:
		fprintf(stderr, "loadgen: invalid value for %s: '%s'\n", name, arg);
		return -1;
	}
	if (options->port == 0)
	{
		fprintf(stderr, "loadgen: --url-port is required\n");
		return -1;
	}
	/* the channel goes into JSON as is: allow only what needs no escaping */
	if (options->channel[0] == '\0' || strlen(options->channel) > 63 ||
		strpbrk(options->channel, "\"\\") != NULL)
	{
		fprintf(stderr, "loadgen: channel must be 1-63 bytes without quotes or backslashes\n");
		return -1;
	}
	for (i = 0; options->channel[i] != '\0'; i++)
	{
		if ((unsigned char) options->channel[i] < 0x20)
		{
			fprintf(stderr, "loadgen: channel must not contain control characters\n");
			return -1;
		}
	}
	return 0;
}

/*
 * Resolve the numeric address HOST into LG's address; -1 (after a message)
 * when it is not numeric or not a loopback address.  No name lookups.
 */
static int
address_resolve(Loadgen *lg, const char *host, int port)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *) &lg->addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &lg->addr;

	memset(&lg->addr, 0, sizeof(lg->addr));
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1)
	{
		if ((ntohl(in4->sin_addr.s_addr) >> 24) != 127)
			goto refused;
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t) port);
		lg->addr_len = sizeof(*in4);
		snprintf(lg->host_header, sizeof(lg->host_header), "%s:%d", host, port);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1)
	{
		if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			goto refused;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t) port);
		lg->addr_len = sizeof(*in6);
		snprintf(lg->host_header, sizeof(lg->host_header), "[::1]:%d", port);
		return 0;
	}
	fprintf(stderr, "loadgen: '%s' is not a numeric IPv4 or IPv6 address\n", host);
	return -1;
refused:
	fprintf(stderr, "loadgen: refusing %s: only 127.0.0.0/8 and ::1 are allowed\n", host);
	return -1;
}

/*
 * Raise the soft limit on open files to the hard limit; -1 (after a
 * message) when even the hard limit cannot hold NEED descriptors.
 */
static int
files_raise(long need)
{
	struct rlimit limit;

	if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
	{
		perror("loadgen: getrlimit");
		return -1;
	}
	if (limit.rlim_cur < limit.rlim_max)
	{
		limit.rlim_cur = limit.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
		{
			perror("loadgen: setrlimit");
			return -1;
		}
	}
	if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < (rlim_t) need)
	{
		fprintf(stderr, "loadgen: %ld sessions need %ld open files, the hard limit is %llu\n",
				need - FILES_SPARE, need, (unsigned long long) limit.rlim_cur);
		return -1;
	}
	return 0;
}

/* Write a message about session C to stderr, for the first few only. */
static void
conn_log(Loadgen *lg, Conn *c, const char *format,...)
{
	va_list		args;

	if (lg->errors_logged++ >= ERRORS_LOGGED)
		return;
	fprintf(stderr, "loadgen: session %ld: ", (long) (c - lg->conns));
	va_start(args, format);
	vfprintf(stderr, format, args);
	va_end(args);
	fputc('\n', stderr);
}

/* ---- JSON scanning --------------------------------------------------- */

static const char *
json_skip_space(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/* Just past the string that starts at P (on its quote), or NULL. */
static const char *
json_string_end(const char *p, const char *end)
{
	for (p++; p < end; p++)
	{
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* Just past the value that starts at P, or NULL when it is cut short. */
static const char *
json_value_end(const char *p, const char *end)
{
	int			depth = 0;

	if (p >= end)
		return NULL;
	if (*p == '"')
		return json_string_end(p, end);
	if (*p != '{' && *p != '[')
	{
		while (p < end && strchr(",}] \t\r\n", *p) == NULL)
			p++;
		return p;
	}
	while (p < end)
	{
		if (*p == '"')
		{
			p = json_string_end(p, end);
			if (p == NULL)
				return NULL;
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if (*p == '}' || *p == ']')
		{
			if (--depth == 0)
				return p + 1;
		}
		p++;
	}
	return NULL;
}

/* The value of the member KEY of the object that starts at P, or NULL. */
static const char *
json_member(const char *p, const char *end, const char *key)
{
	size_t		key_len = strlen(key);

	p = json_skip_space(p, end);
	if (p >= end || *p != '{')
		return NULL;
	p++;
	for (;;)
	{
		const char *name;
		const char *name_end;

		p = json_skip_space(p, end);
		if (p >= end || *p != '"')
			return NULL;		/* '}' or not an object member */
		name = p + 1;
		name_end = json_string_end(p, end);
		if (name_end == NULL)
			return NULL;
		p = json_skip_space(name_end, end);
		if (p >= end || *p != ':')
			return NULL;
		p = json_skip_space(p + 1, end);
		if ((size_t) (name_end - 1 - name) == key_len && memcmp(name, key, key_len) == 0)
			return p;
		p = json_value_end(p, end);
		if (p == NULL)
			return NULL;
		p = json_skip_space(p, end);
		if (p < end && *p == ',')
			p++;
	}
}

/* The integer at P into *out; -1 when P does not start an integer. */
static int
json_integer(const char *p, const char *end, long long *out)
{
	char		digits[32];
	size_t		len = 0;
	char	   *stop;

	while (p + len < end && len < sizeof(digits) - 1 &&
		   (p[len] == '-' || (p[len] >= '0' && p[len] <= '9')))
		len++;
	if (len == 0)
		return -1;
	memcpy(digits, p, len);
	digits[len] = '\0';
	errno = 0;
	*out = strtoll(digits, &stop, 10);
	return errno == 0 && *stop == '\0' ? 0 : -1;
}

/* ---- results --------------------------------------------------------- */

/* Remember one packet's latency; -1 when memory runs out. */
static int
sample_add(Loadgen *lg, long long sent_us, long long latency_us)
{
	if (lg->samples_len == lg->samples_cap)
	{
		size_t		cap = lg->samples_cap ? lg->samples_cap * 2 : 65536;
		Sample	   *grown = realloc(lg->samples, cap * sizeof(Sample));

		if (grown == NULL)
			return -1;
		lg->samples = grown;
		lg->samples_cap = cap;
	}
	lg->samples[lg->samples_len].sent_us = sent_us;
	lg->samples[lg->samples_len].latency_us = latency_us;
	lg->samples_len++;
	return 0;
}

static int
sample_by_packet(const void *a, const void *b)
{
	const Sample *x = a;
	const Sample *y = b;

	if (x->sent_us != y->sent_us)
		return (x->sent_us > y->sent_us) - (x->sent_us < y->sent_us);
	return (x->latency_us > y->latency_us) - (x->latency_us < y->latency_us);
}

static int
latency_order(const void *a, const void *b)
{
	long long	x = *(const long long *) a;
	long long	y = *(const long long *) b;

	return (x > y) - (x < y);
}

/* The nearest-rank PERCENT percentile of the N (> 0) sorted values V. */
static long long
percentile(const long long *v, size_t n, unsigned percent)
{
	size_t		rank = (n * percent + 99) / 100;

	return v[rank > 0 ? rank - 1 : 0];
}

/* Announce "ready" and completed rounds as soon as they happen. */
static void
progress_announce(Loadgen *lg)
{
	if (!lg->ready_announced && lg->settled == lg->options.sessions)
	{
		printf("ready %ld\n", lg->established);
		fflush(stdout);
		lg->ready_announced = 1;
	}
	if (!lg->ready_announced || lg->alive == 0)
		return;
	while (lg->rounds_announced < lg->options.expect &&
		   lg->round_count[lg->rounds_announced + 1] >= lg->alive)
	{
		lg->rounds_announced++;
		printf("round %ld %lld\n", lg->rounds_announced, (now_us() - lg->start_us) / 1000);
		fflush(stdout);
	}
}

/* ---- connections ----------------------------------------------------- */

/* (Re)register C with epoll: input always, output while there is some. */
static void
conn_watch(Loadgen *lg, Conn *c, int op)
{
	struct epoll_event ev = {0};

	ev.events = EPOLLIN;
	if (c->out_off < c->out_len || c->state == CONN_CONNECTING || c->state == CONN_GOODBYE)
		ev.events |= EPOLLOUT;
	ev.data.u32 = (uint32_t) (c - lg->conns);
	if (epoll_ctl(lg->epoll_fd, op, c->fd, &ev) != 0)
		conn_log(lg, c, "epoll_ctl: %s", strerror(errno));
}

/* Close C for good; LOST says whether it ended before its time. */
static void
conn_close(Loadgen *lg, Conn *c, int lost)
{
	if (c->state == CONN_CLOSED || c->state == CONN_UNSTARTED)
		return;
	if (c->state == CONN_CONNECTING || c->state == CONN_SETUP)
	{
		lg->in_flight--;
		lg->settled++;
		lg->setup_failures++;
	}
	else if (c->established)
	{
		if (c->state == CONN_GOODBYE || c->state == CONN_TERMINATING)
		{
			lg->goodbye_in_flight--;
			if (lost)
				lg->terminate_failures++;
			else
				lg->terminated++;
		}
		else if (lost)
			lg->lost++;
		lg->alive--;
		if (lg->options.expect > 0 && c->received >= lg->options.expect)
			lg->complete--;
	}
	if (c->fd >= 0)
		close(c->fd);			/* also leaves the epoll set */
	c->fd = -1;
	c->state = CONN_CLOSED;
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_cap = 0;
}

/* Write what is pending of C's request; -1 when the connection failed. */
static int
conn_flush(Loadgen *lg, Conn *c)
{
	int			was_pending = c->out_off < c->out_len;

	while (c->out_off < c->out_len)
	{
		ssize_t		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
		{
			conn_log(lg, c, "send: %s", strerror(errno));
			return -1;
		}
		c->out_off += (size_t) n;
	}
	if (was_pending || c->out_off < c->out_len)
		conn_watch(lg, c, EPOLL_CTL_MOD);	/* EPOLLOUT on or off */
	return 0;
}

/* Send the request BODY (JSON) on C; -1 when the connection failed. */
static int
conn_request(Loadgen *lg, Conn *c, const char *body)
{
	int			n;

	if (c->out_off < c->out_len)
	{
		conn_log(lg, c, "a request is still being written");
		return -1;
	}
	n = snprintf(c->out, sizeof(c->out),
				 "POST /comet HTTP/1.1\r\nHost: %s\r\n"
				 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
				 lg->host_header, strlen(body), body);
	if (n < 0 || (size_t) n >= sizeof(c->out))
	{
		conn_log(lg, c, "request too long");
		return -1;
	}
	c->out_len = (size_t) n;
	c->out_off = 0;
	return conn_flush(lg, c);
}

/* Poll with the next rid. */
static int
conn_poll(Loadgen *lg, Conn *c)
{
	char		body[SID_MAX + 64];

	c->rid++;
	snprintf(body, sizeof(body), "{\"sid\":\"%s\",\"rid\":%llu}", c->sid,
			 (unsigned long long) c->rid);
	return conn_request(lg, c, body);
}

/* C's connect finished: send the set-up. */
static void
conn_connected(Loadgen *lg, Conn *c)
{
	char		body[SID_MAX + 128];
	int			error = 0;
	int			one = 1;
	socklen_t	len = sizeof(error);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0)
	{
		conn_log(lg, c, "connect: %s", strerror(error ? error : errno));
		lg->connect_errors++;
		conn_close(lg, c, 1);
		return;
	}
	(void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (c->state == CONN_GOODBYE)
	{
		c->state = CONN_TERMINATING;
		snprintf(body, sizeof(body), "{\"sid\":\"%s\",\"rid\":%llu,\"terminate\":true}",
				 c->sid, (unsigned long long) ++c->rid);
	}
	else
	{
		c->state = CONN_SETUP;
		snprintf(body, sizeof(body), "{\"rid\":%llu,\"subscribe\":[\"%s\"],\"wait\":%d}",
				 (unsigned long long) c->rid, lg->options.channel, POLL_WAIT_S);
	}
	if (conn_request(lg, c, body) != 0)
		conn_close(lg, c, 1);
	else
		conn_watch(lg, c, EPOLL_CTL_MOD);	/* no more EPOLLOUT for the connect */
}

/*
 * Open a socket for C and start connecting (C's state says what for);
 * conn_connected follows, at once or when the connect is done.
 */
static void
conn_connect(Loadgen *lg, Conn *c)
{
	c->fd = socket(lg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
	{
		conn_log(lg, c, "socket: %s", strerror(errno));
		lg->connect_errors++;
		conn_close(lg, c, 1);
		return;
	}
	if (connect(c->fd, (struct sockaddr *) &lg->addr, lg->addr_len) == 0)
	{
		conn_watch(lg, c, EPOLL_CTL_ADD);
		conn_connected(lg, c);
		return;
	}
	if (errno != EINPROGRESS)
	{
		conn_log(lg, c, "connect: %s", strerror(errno));
		lg->connect_errors++;
		conn_close(lg, c, 1);
		return;
	}
	conn_watch(lg, c, EPOLL_CTL_ADD);
}

/* Start session C: connect, then set up. */
static void
conn_start(Loadgen *lg, Conn *c)
{
	lg->started++;
	lg->in_flight++;
	c->last_seq = -1;
	c->rid = 1000 + (uint64_t) (c - lg->conns);
	c->state = CONN_CONNECTING;
	conn_connect(lg, c);
}

/*
 * End session C politely: drop its held poll's connection and send a
 * terminate with the next rid on a new one.  Sessions not polling close.
 */
static void
conn_goodbye(Loadgen *lg, Conn *c)
{
	if (c->state != CONN_POLLING)
	{
		conn_close(lg, c, 0);
		return;
	}
	close(c->fd);
	c->fd = -1;
	c->in_len = 0;
	c->out_len = c->out_off = 0;
	c->state = CONN_GOODBYE;
	lg->goodbye_in_flight++;
	conn_connect(lg, c);
}

/* Record the packets of one answer's "packets" array, which starts at P. */
static void
packets_record(Loadgen *lg, Conn *c, const char *p, const char *end, long long received_us)
{
	p = json_skip_space(p, end);
	if (p >= end || *p != '[')
		return;
	for (p++;;)
	{
		const char *element_end;
		const char *value;
		long long	seq;
		long long	sent;

		p = json_skip_space(p, end);
		if (p >= end || *p != '{')
			break;
		element_end = json_value_end(p, end);
		if (element_end == NULL)
			break;
		if (json_member(p, element_end, "gap") != NULL)
		{
			lg->gaps++;
			goto next;
		}
		value = json_member(p, element_end, "seq");
		if (value != NULL && json_integer(value, element_end, &seq) == 0)
		{
			if (c->last_seq >= 0 && seq <= c->last_seq)
			{
				lg->packets_duplicate++;
				goto next;
			}
			if (c->last_seq >= 0 && seq > c->last_seq + 1)
				lg->packets_missing += seq - c->last_seq - 1;
			c->last_seq = seq;
		}
		lg->packets++;
		value = json_member(p, element_end, "data");
		if (value != NULL)
			value = json_member(value, element_end, "t");
		if (value != NULL && json_integer(value, element_end, &sent) == 0)
		{
			if (sample_add(lg, sent, received_us - sent) != 0)
			{
				fprintf(stderr, "loadgen: out of memory for samples\n");
				exit(1);
			}
		}
		else
			lg->packets_without_t++;
		if (++c->received <= lg->options.expect)
		{
			lg->round_count[c->received]++;
			if (c->received == lg->options.expect)
				lg->complete++;
		}
next:
		p = json_skip_space(element_end, end);
		if (p < end && *p == ',')
			p++;
	}
}

/* The set-up's answer: learn the sid and the channel's position. */
static void
conn_setup_answered(Loadgen *lg, Conn *c, const char *body, const char *end)
{
	const char *value = json_member(body, end, "sid");
	const char *value_end;
	long long	position;

	value_end = value && *value == '"' ? json_string_end(value, end) : NULL;
	if (value_end == NULL || (size_t) (value_end - value - 2) >= SID_MAX ||
		memchr(value + 1, '\\', (size_t) (value_end - value - 2)) != NULL)
	{
		conn_log(lg, c, "set-up answer without a usable sid");
		conn_close(lg, c, 0);
		return;
	}
	lg->in_flight--;
	lg->settled++;
	memcpy(c->sid, value + 1, (size_t) (value_end - value - 2));
	c->sid[value_end - value - 2] = '\0';
	value = json_member(body, end, "positions");
	if (value != NULL)
		value = json_member(value, end, lg->options.channel);
	if (value != NULL && json_integer(value, end, &position) == 0)
		c->last_seq = position;
	c->established = 1;
	lg->established++;
	lg->alive++;
	c->state = CONN_POLLING;
}

/* One whole answer to C's outstanding request, read at RECEIVED_US. */
static void
conn_answered(Loadgen *lg, Conn *c, int status, const char *body, const char *end,
			  long long received_us)
{
	const char *value;
	long long	rid;

	if (status != 200)
	{
		lg->http_errors++;
		if (status > 0 && status < STATUS_MAX)
			lg->status_count[status]++;
		conn_log(lg, c, "HTTP %d: %.*s", status, (int) (end - body > 200 ? 200 : end - body), body);
		conn_close(lg, c, 1);
		return;
	}
	switch (c->state)
	{
		case CONN_SETUP:
			conn_setup_answered(lg, c, body, end);
			if (c->state != CONN_POLLING)
				return;
			break;
		case CONN_POLLING:
			break;
		case CONN_TERMINATING:
			/* packets still queued come with the terminate's answer */
			value = json_member(body, end, "packets");
			if (value != NULL)
				packets_record(lg, c, value, end, received_us);
			value = json_member(body, end, "rid");
			if (value == NULL || json_integer(value, end, &rid) != 0 || (uint64_t) rid != c->rid)
				conn_log(lg, c, "the terminate's answer has another rid");
			conn_close(lg, c, 0);
			return;
		default:
			conn_log(lg, c, "an answer without a request");
			conn_close(lg, c, 1);
			return;
	}
	value = json_member(body, end, "packets");
	if (value != NULL)
		packets_record(lg, c, value, end, received_us);
	if (conn_poll(lg, c) != 0)
		conn_close(lg, c, 1);
}

/*
 * Consume every complete answer at the start of C's input.  Answers must
 * have a Content-Length (the bridge always sends one).
 */
static void
conn_answers_take(Loadgen *lg, Conn *c, long long received_us)
{
	while (c->state != CONN_CLOSED && c->in_len > 0)
	{
		char	   *head_end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
		char	   *line;
		size_t		head_len;
		size_t		body_len = 0;
		int			has_length = 0;
		int			status = 0;
		char	   *body;
		char		saved;

		if (head_end == NULL)
			return;
		head_len = (size_t) (head_end - c->in) + 4;
		*head_end = '\0';
		if (sscanf(c->in, "HTTP/1.%*d %d", &status) != 1)
			status = 0;
		for (line = strstr(c->in, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n"))
		{
			if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
			{
				body_len = strtoul(line + 17, NULL, 10);
				has_length = 1;
			}
		}
		*head_end = '\r';
		if (!has_length)
		{
			conn_log(lg, c, "an answer without Content-Length");
			conn_close(lg, c, 1);
			return;
		}
		if (head_len + body_len > IN_MAX)
		{
			conn_log(lg, c, "an answer of %zu bytes is too large", head_len + body_len);
			conn_close(lg, c, 1);
			return;
		}
		if (c->in_len < head_len + body_len)
			return;
		body = c->in + head_len;
		saved = body[body_len];
		body[body_len] = '\0';
		conn_answered(lg, c, status, body, body + body_len, received_us);
		if (c->state == CONN_CLOSED)
			return;
		body[body_len] = saved;
		memmove(c->in, c->in + head_len + body_len, c->in_len - head_len - body_len);
		c->in_len -= head_len + body_len;
	}
}

/* C is readable: read what is there and take the complete answers. */
static void
conn_readable(Loadgen *lg, Conn *c)
{
	ssize_t		n;

	if (c->in_cap - c->in_len < 2)
	{
		size_t		cap = c->in_cap ? c->in_cap * 2 : IN_INITIAL;
		char	   *grown;

		if (cap > IN_MAX + 1)
		{
			conn_log(lg, c, "an answer too large");
			conn_close(lg, c, 1);
			return;
		}
		grown = realloc(c->in, cap);
		if (grown == NULL)
		{
			conn_log(lg, c, "out of memory");
			conn_close(lg, c, 1);
			return;
		}
		c->in = grown;
		c->in_cap = cap;
	}
	/* one byte is kept free to terminate a body while it is scanned */
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
	{
		conn_log(lg, c, "%s", n == 0 ? "the bridge closed the connection" : strerror(errno));
		conn_close(lg, c, 1);
		return;
	}
	c->in_len += (size_t) n;
	conn_answers_take(lg, c, now_us());
}

/* One epoll event on C. */
static void
conn_event(Loadgen *lg, Conn *c, uint32_t events)
{
	if (c->state == CONN_CLOSED)
		return;
	if (c->state == CONN_CONNECTING || c->state == CONN_GOODBYE)
	{
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			conn_connected(lg, c);
		return;
	}
	if ((events & EPOLLOUT) && conn_flush(lg, c) != 0)
	{
		conn_close(lg, c, 1);
		return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		conn_readable(lg, c);
}

/* Run the event loop until DEADLINE_US or until DONE says so. */
static void
loop_run(Loadgen *lg, long long deadline_us, int (*done) (Loadgen *))
{
	struct epoll_event events[EVENTS_MAX];

	while (!done(lg))
	{
		long long	left_ms = (deadline_us - now_us()) / 1000;
		int			n;
		int			i;

		if (left_ms <= 0)
			return;
		while (!lg->ending && lg->started < lg->options.sessions && lg->in_flight < IN_FLIGHT_MAX)
			conn_start(lg, &lg->conns[lg->started]);
		while (lg->ending && lg->goodbye_next < lg->started && lg->goodbye_in_flight < IN_FLIGHT_MAX)
			conn_goodbye(lg, &lg->conns[lg->goodbye_next++]);
		n = epoll_wait(lg->epoll_fd, events, EVENTS_MAX, left_ms > 100 ? 100 : (int) left_ms);
		if (n < 0 && errno != EINTR)
		{
			perror("loadgen: epoll_wait");
			return;
		}
		for (i = 0; i < n; i++)
			conn_event(lg, &lg->conns[events[i].data.u32], events[i].events);
		progress_announce(lg);
	}
}

/* The run is over: every live session has its packets (with --expect). */
static int
run_done(Loadgen *lg)
{
	return lg->options.expect > 0 && lg->settled == lg->options.sessions &&
		lg->complete >= lg->alive;
}

/* The goodbye is over: every session has been ended. */
static int
goodbye_done(Loadgen *lg)
{
	return lg->goodbye_next == lg->started && lg->goodbye_in_flight == 0;
}

/* End every session (see conn_goodbye), within TERMINATE_MS. */
static void
sessions_terminate(Loadgen *lg)
{
	long		i;

	lg->ending = 1;
	loop_run(lg, now_us() + (long long) TERMINATE_MS * 1000, goodbye_done);
	for (i = 0; i < lg->started; i++)
		conn_close(lg, &lg->conns[i], lg->conns[i].state == CONN_GOODBYE ||
				   lg->conns[i].state == CONN_TERMINATING);
}

/* Print the totals and the latencies, overall and per packet. */
static void
loadgen_report(Loadgen *lg, long long elapsed_us)
{
	size_t		n = lg->samples_len;
	long long  *all = malloc((n ? n : 1) * sizeof(long long));
	size_t		i;
	size_t		first;

	if (all == NULL)
	{
		fprintf(stderr, "loadgen: out of memory for the report\n");
		exit(1);
	}
	printf("sessions_requested %ld\n", lg->options.sessions);
	printf("sessions_established %ld\n", lg->established);
	printf("setup_failures %ld\n", lg->setup_failures);
	printf("connect_errors %ld\n", lg->connect_errors);
	printf("sessions_lost %ld\n", lg->lost);
	printf("sessions_complete %ld\n", lg->complete);
	printf("sessions_terminated %ld\n", lg->terminated);
	printf("terminate_failures %ld\n", lg->terminate_failures);
	printf("http_errors %ld\n", lg->http_errors);
	for (i = 0; i < STATUS_MAX; i++)
		if (lg->status_count[i] > 0)
			printf("http_status_%zu %ld\n", i, lg->status_count[i]);
	printf("packets %ld\n", lg->packets);
	printf("packets_missing %ld\n", lg->packets_missing);
	printf("packets_duplicate %ld\n", lg->packets_duplicate);
	printf("packets_without_t %ld\n", lg->packets_without_t);
	printf("gaps %ld\n", lg->gaps);
	printf("elapsed_ms %lld\n", elapsed_us / 1000);
	if (n > 0)
	{
		for (i = 0; i < n; i++)
			all[i] = lg->samples[i].latency_us;
		qsort(all, n, sizeof(long long), latency_order);
		printf("latency_p50_us %lld\nlatency_p99_us %lld\nlatency_max_us %lld\n",
			   percentile(all, n, 50), percentile(all, n, 99), all[n - 1]);
		/* per packet: the samples sorted by send time, then latency */
		qsort(lg->samples, n, sizeof(Sample), sample_by_packet);
		for (first = 0; first < n; first = i)
		{
			for (i = first; i < n && lg->samples[i].sent_us == lg->samples[first].sent_us; i++)
				all[i - first] = lg->samples[i].latency_us;
			printf("packet %lld %zu %lld %lld %lld %lld\n", lg->samples[first].sent_us, i - first,
				   all[0], percentile(all, i - first, 50), percentile(all, i - first, 99),
				   all[i - first - 1]);
		}
	}
	fflush(stdout);
	free(all);
}

int
main(int argc, char **argv)
{
	static Loadgen lg;
	long long	end_us;

	lg.options.host = "127.0.0.1";
	lg.options.sessions = 1;
	lg.options.channel = "bench";
	lg.options.duration_s = 30;
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
	{
		usage();
		return 0;
	}
	if (options_parse(argc, argv, &lg.options) != 0 ||
		address_resolve(&lg, lg.options.host, lg.options.port) != 0)
	{
		usage();
		return 2;
	}
	if (files_raise(lg.options.sessions + FILES_SPARE) != 0)
		return 2;
	lg.conns = calloc((size_t) lg.options.sessions, sizeof(Conn));
	lg.round_count = calloc((size_t) lg.options.expect + 2, sizeof(long));
	lg.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (lg.conns == NULL || lg.round_count == NULL || lg.epoll_fd < 0)
	{
		perror("loadgen: start-up");
		return 1;
	}
	lg.start_us = now_us();
	loop_run(&lg, lg.start_us + lg.options.duration_s * 1000000LL, run_done);
	end_us = now_us();
	if (!lg.ready_announced)
		fprintf(stderr, "loadgen: only %ld of %ld sessions were set up in time\n",
				lg.settled, lg.options.sessions);
	sessions_terminate(&lg);
	loadgen_report(&lg, end_us - lg.start_us);
	return 0;
}
