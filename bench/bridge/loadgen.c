/*
 * loadgen.c — the long-poll load generator of the bridge benchmark, for
 * comet-bridge and for Nchan alike.
 *
 * Holds N long-poll sessions against one server, or against several (one
 * port each: session i uses the (i mod P)th of the P ports), spread over C
 * channels (session i is on channel PREFIX<(i mod C) + 1>), each on its own
 * keep-alive HTTP/1.1 connection, each always with exactly one poll out:
 *
 *   comet   POST /comet {"rid":R,"subscribe":[ch],"wait":60} to set up,
 *           then POST /comet?sid=S {"sid":S,"rid":R+1}, R+2, ... as each
 *           answer arrives (the sid in the URL too, as comet.js sends it,
 *           so that a proxy such as examples/nginx can route by it).  At
 *           the end every session is ended politely: a second connection
 *           sends {"sid":S,"rid":R+1,"terminate":true} (a keep-alive
 *           connection whose poll is held cannot carry another request)
 *           while the held poll's stays open, since the bridge takes a
 *           session's requests in rid order and must still read that poll;
 *           once the terminate is answered, both are closed.
 *   nchan   GET /sub/<ch>, and after each answer GET again with the answer's
 *           Last-Modified and Etag as If-Modified-Since and If-None-Match,
 *           which asks for the message after it.  A 304 or 408 (the
 *           server's poll timeout) carries nothing: poll again with the same
 *           headers.  A connection the server closes between answers is
 *           opened again and the poll repeated (nginx closes keep-alive
 *           connections after keepalive_requests answers); nothing is lost,
 *           since the headers say where the session is.  At the end the
 *           connections are closed.
 *
 * Every message (a comet packet's data, an Nchan answer's body) is expected
 * to be a JSON object {"t": T, "n": N, "s": S, ...}: T its send time in µs
 * since the epoch (CLOCK_REALTIME), N its number in its channel (1, 2, ...),
 * S the step of a sustained run it belongs to.  For each message received
 * the load generator records the receive time (CLOCK_REALTIME, taken right
 * after the read that completed the answer) minus T, and checks the order:
 * a session's messages come in the order of S, and within one S numbered
 * 1, 2, ... without gaps (a comet session also checks seq, starting from
 * the position its set-up returned).
 *
 *   loadgen --protocol comet|nchan --port P[,P...] [--host 127.0.0.1]
 *           [--sessions N] [--channel PREFIX] [--channels C]
 *           [--duration S] [--expect K] [--samples FILE]
 *
 * It stops once every session has received K messages (--expect, 0 = no
 * such stop), after S seconds, or on SIGTERM/SIGINT, whichever comes first,
 * and then spends at most GOODBYE_MS more ending the sessions.  Set-ups and
 * goodbyes are paced (at most IN_FLIGHT_MAX at a time) so that the server's
 * listen backlog never overflows.
 *
 * Output, "key value" lines on stdout, flushed as they happen:
 *   ready E CPU              every session is set up (E of them) and polling
 *   round K MS CPU           every live session has received K messages
 *                            (CPU: the load generator's own CPU time so
 *                            far, user and system, in µs: it ends soon
 *                            after the last round, so that nobody else can
 *                            read it then)
 *   step S COUNT P50 P99 MAX FIRST_T LAST_RECEIVED
 *                            on SIGUSR1: for each step S (the "s" of the
 *                            messages) received since the last SIGUSR1, its
 *                            latencies in µs, the earliest send time and the
 *                            latest receive time (µs since the epoch) ...
 *   reported K               ... then this line (K counts the SIGUSR1s)
 *   ... at the end the totals (see loadgen_report) and, with --expect, one
 *   line per message: packet T COUNT MIN P50 P99 MAX (µs).
 * With --samples FILE, every message received is also written to FILE as
 * "SESSION CHANNEL N S T RECEIVED".
 *
 * It must never: talk to an address outside 127.0.0.0/8 and ::1, start a
 * thread, use a library beyond libc, or run unbounded in time or memory.
 * JSON is read with a minimal scanner that knows only what a comet answer
 * and the benchmark's messages look like (objects, arrays, strings,
 * numbers); it is not a validator.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SESSIONS_MAX 100000
#define PORTS_MAX 16			/* servers one load generator spreads over */
#define CHANNELS_MAX 10000
#define DURATION_MAX_S 3600
#define EXPECT_MAX 1000000
#define SAMPLES_MAX (64L * 1024 * 1024)	/* messages kept for the statistics */
#define IN_FLIGHT_MAX 128		/* set-ups or goodbyes outstanding at once */
#define POLL_WAIT_S 60			/* comet: "wait" asked for in the set-up */
#define GOODBYE_MS 5000			/* longest goodbye after the run */
#define IN_INITIAL 4096			/* first size of a connection's input */
#define IN_MAX (8 * 1024 * 1024)	/* an answer larger than this is an error */
#define OUT_SIZE 1024			/* one request, headers included */
#define SID_MAX 256
#define CACHE_HEADER_MAX 128	/* Nchan's Last-Modified and Etag values */
#define CHANNEL_MAX 63
#define FILES_SPARE 32			/* descriptors beyond one per session */
#define EVENTS_MAX 1024
#define ERRORS_LOGGED 10		/* connection errors written to stderr */
#define STATUS_MAX 600
#define SIGNAL_EVENT UINT32_MAX /* epoll data of the signalfd */

typedef enum Protocol
{
	PROTOCOL_COMET,
	PROTOCOL_NCHAN
} Protocol;

typedef enum ConnState
{
	CONN_UNSTARTED,				/* no socket yet */
	CONN_CONNECTING,			/* non-blocking connect in progress */
	CONN_SETUP,					/* comet: set-up sent, no answer yet */
	CONN_POLLING,				/* a poll is outstanding (held) */
	CONN_RECONNECTING,			/* nchan: new connection for the same poll */
	CONN_GOODBYE,				/* comet: new connection for the terminate */
	CONN_TERMINATING,			/* comet: terminate sent, waiting for it */
	CONN_CLOSED					/* done: terminated, failed or lost */
} ConnState;

/* One session and its connection. */
typedef struct Conn
{
	int			fd;
	int			held_fd;		/* comet goodbye: the held poll's socket, out
								 * of the epoll set, open until the
								 * terminate is answered; -1 = none */
	uint32_t	generation;		/* advances with every new socket */
	ConnState	state;
	int			channel;		/* 1..C */
	int			target;			/* index of its server in Loadgen.targets */
	uint64_t	rid;			/* comet: of the request outstanding */
	char		sid[SID_MAX];	/* comet */
	char		last_modified[CACHE_HEADER_MAX];	/* nchan, "" = none yet */
	char		etag[CACHE_HEADER_MAX];	/* nchan */
	char	   *in;				/* bytes read, not yet consumed */
	size_t		in_len;
	size_t		in_cap;
	char		out[OUT_SIZE];	/* the request being written */
	size_t		out_len;
	size_t		out_off;
	long		received;		/* messages received */
	long long	last_seq;		/* comet: last durable seq, -1 = none yet */
	long long	last_step;		/* "s" of the last message, -2 = none yet */
	long long	last_n;			/* its "n"; 0 = none yet in this step */
	int			established;	/* set up (comet: answered with a sid) */
} Conn;

/* One received message. */
typedef struct Sample
{
	long long	sent_us;		/* the "t" it carries */
	long long	latency_us;		/* receive time - sent_us */
	long long	received_us;
	long		step;			/* the "s" it carries, -1 = none */
} Sample;

typedef struct Options
{
	Protocol	protocol;
	const char *host;
	int			ports[PORTS_MAX];
	int			ports_len;
	long		sessions;
	const char *channel;		/* prefix of the channel names */
	long		channels;
	long		duration_s;
	long		expect;
	const char *samples_path;
} Options;

/* One server: the sessions with i mod P == its index connect to it. */
typedef struct Target
{
	struct sockaddr_storage addr;
	socklen_t	addr_len;
	char		host_header[80];
} Target;

typedef struct Loadgen
{
	Options		options;
	Target		targets[PORTS_MAX];
	int			epoll_fd;
	int			signal_fd;
	FILE	   *samples_file;
	Conn	   *conns;
	int			stopping;		/* SIGTERM or SIGINT arrived */
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
	long		reconnects;		/* nchan: connections opened again */
	long		http_errors;
	long		status_count[STATUS_MAX];
	long		empty_answers;	/* polls answered without a message */
	long		packets;
	long		packets_missing;	/* comet: seqs skipped */
	long		packets_duplicate;	/* comet: seqs not above the last one */
	long		messages_missing;	/* numbers skipped */
	long		messages_duplicate; /* numbers or steps not above the last */
	long		packets_without_t;
	long		gaps;			/* comet: gap entries */
	long		terminated;
	long		terminate_failures;
	long	   *round_count;	/* [k]: sessions that reached k messages */
	long		rounds_announced;
	long		reports;		/* SIGUSR1s answered */
	int			ready_announced;
	int			errors_logged;
	Sample	   *samples;
	size_t		samples_len;
	size_t		samples_cap;
	long long	start_us;
} Loadgen;

static void conn_close(Loadgen *lg, Conn *c, int lost);
static void conn_connect(Loadgen *lg, Conn *c);

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
			"usage: loadgen --protocol comet|nchan --port P[,P...] [--host ADDR] [--sessions N]\n"
			"               [--channel PREFIX] [--channels C] [--duration S] [--expect K]\n"
			"               [--samples FILE]\n"
			"  ADDR must be in 127.0.0.0/8 or ::1 (default 127.0.0.1); N 1..%d (1);\n"
			"  session i connects to the (i mod P)th port (1..%d ports);\n"
			"  session i is on channel PREFIX<i mod C + 1> (bench, 1..%d, 1);\n"
			"  S 1..%d seconds (30); K messages per session after which to stop,\n"
			"  0 = run for S seconds or until SIGTERM (0)\n",
			SESSIONS_MAX, PORTS_MAX, CHANNELS_MAX, DURATION_MAX_S);
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

/*
 * The comma-separated ports in TEXT into OPTIONS; -1 when one is not a port
 * or there are more than PORTS_MAX.
 */
static int
ports_parse(const char *text, Options *options)
{
	char		copy[PORTS_MAX * 6 + 1];
	char	   *part;
	char	   *rest;
	long		value;

	if (strlen(text) >= sizeof(copy))
		return -1;
	strcpy(copy, text);
	options->ports_len = 0;
	for (part = strtok_r(copy, ",", &rest); part != NULL; part = strtok_r(NULL, ",", &rest))
	{
		if (options->ports_len == PORTS_MAX || number_parse(part, 1, 65535, &value) != 0)
			return -1;
		options->ports[options->ports_len++] = (int) value;
	}
	return options->ports_len > 0 ? 0 : -1;
}

/* Fill OPTIONS from the command line; -1 (after a message) when invalid. */
static int
options_parse(int argc, char **argv, Options *options)
{
	int			i;
	int			protocol_given = 0;

	for (i = 1; i < argc; i += 2)
	{
		const char *name = argv[i];
		const char *arg = i + 1 < argc ? argv[i + 1] : NULL;

		if (arg == NULL)
		{
			fprintf(stderr, "loadgen: %s needs a value\n", name);
			return -1;
		}
		if (strcmp(name, "--protocol") == 0)
		{
			if (strcmp(arg, "comet") == 0)
				options->protocol = PROTOCOL_COMET;
			else if (strcmp(arg, "nchan") == 0)
				options->protocol = PROTOCOL_NCHAN;
			else
				goto bad;
			protocol_given = 1;
		}
		else if (strcmp(name, "--port") == 0)
		{
			if (ports_parse(arg, options) != 0)
				goto bad;
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
		else if (strcmp(name, "--channels") == 0)
		{
			if (number_parse(arg, 1, CHANNELS_MAX, &options->channels) != 0)
				goto bad;
		}
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
		else if (strcmp(name, "--samples") == 0)
			options->samples_path = arg;
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
	if (!protocol_given || options->ports_len == 0)
	{
		fprintf(stderr, "loadgen: --protocol and --port are required\n");
		return -1;
	}
	/*
	 * The channel goes into JSON and into a URL path as is: letters,
	 * digits, '_' and ':' only, and room for the number.
	 */
	if (options->channel[0] == '\0' || strlen(options->channel) > CHANNEL_MAX - 5 ||
		strspn(options->channel, "abcdefghijklmnopqrstuvwxyz"
			   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:") != strlen(options->channel))
	{
		fprintf(stderr, "loadgen: the channel prefix must be 1-%d letters, digits, '_' or ':'\n",
				CHANNEL_MAX - 5);
		return -1;
	}
	return 0;
}

/*
 * Resolve the numeric address HOST with PORT into TARGET; -1 (after a
 * message) when it is not numeric or not a loopback address.  No name
 * lookups.
 */
static int
address_resolve(Target *target, const char *host, int port)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *) &target->addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &target->addr;

	memset(&target->addr, 0, sizeof(target->addr));
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1)
	{
		if ((ntohl(in4->sin_addr.s_addr) >> 24) != 127)
			goto refused;
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t) port);
		target->addr_len = sizeof(*in4);
		snprintf(target->host_header, sizeof(target->host_header), "%s:%d", host, port);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1)
	{
		if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			goto refused;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t) port);
		target->addr_len = sizeof(*in6);
		snprintf(target->host_header, sizeof(target->host_header), "[::1]:%d", port);
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

	if (p == NULL)
		return -1;
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

/* The integer member KEY of the object at P into *out; -1 when absent. */
static int
json_integer_member(const char *p, const char *end, const char *key, long long *out)
{
	return json_integer(json_member(p, end, key), end, out);
}

/* ---- results --------------------------------------------------------- */

/* Remember one message's latency; exits when memory or the cap runs out. */
static void
sample_add(Loadgen *lg, long long sent_us, long long received_us, long step)
{
	if (lg->samples_len == lg->samples_cap)
	{
		size_t		cap = lg->samples_cap ? lg->samples_cap * 2 : 65536;
		Sample	   *grown;

		if (cap > (size_t) SAMPLES_MAX)
		{
			fprintf(stderr, "loadgen: more than %ld messages to keep\n", SAMPLES_MAX);
			exit(1);
		}
		grown = realloc(lg->samples, cap * sizeof(Sample));
		if (grown == NULL)
		{
			fprintf(stderr, "loadgen: out of memory for samples\n");
			exit(1);
		}
		lg->samples = grown;
		lg->samples_cap = cap;
	}
	lg->samples[lg->samples_len].sent_us = sent_us;
	lg->samples[lg->samples_len].latency_us = received_us - sent_us;
	lg->samples[lg->samples_len].received_us = received_us;
	lg->samples[lg->samples_len].step = step;
	lg->samples_len++;
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
sample_by_step(const void *a, const void *b)
{
	const Sample *x = a;
	const Sample *y = b;

	if (x->step != y->step)
		return (x->step > y->step) - (x->step < y->step);
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

/* The nearest-rank PERCENT percentile of the latencies of the N sorted S. */
static long long
sample_percentile(const Sample *s, size_t n, unsigned percent)
{
	size_t		rank = (n * percent + 99) / 100;

	return s[rank > 0 ? rank - 1 : 0].latency_us;
}

/*
 * SIGUSR1: print one "step" line for each step received since the last
 * report, then "reported K", and forget those samples.
 */
static void
steps_report(Loadgen *lg)
{
	size_t		first;
	size_t		i;

	qsort(lg->samples, lg->samples_len, sizeof(Sample), sample_by_step);
	for (first = 0; first < lg->samples_len; first = i)
	{
		long long	first_sent = lg->samples[first].sent_us;
		long long	last_received = lg->samples[first].received_us;

		for (i = first; i < lg->samples_len && lg->samples[i].step == lg->samples[first].step; i++)
		{
			if (lg->samples[i].sent_us < first_sent)
				first_sent = lg->samples[i].sent_us;
			if (lg->samples[i].received_us > last_received)
				last_received = lg->samples[i].received_us;
		}
		printf("step %ld %zu %lld %lld %lld %lld %lld\n", lg->samples[first].step, i - first,
			   sample_percentile(lg->samples + first, i - first, 50),
			   sample_percentile(lg->samples + first, i - first, 99),
			   lg->samples[i - 1].latency_us, first_sent, last_received);
	}
	lg->samples_len = 0;
	printf("reported %ld\n", ++lg->reports);
	fflush(stdout);
}

/* This process's CPU time so far (user and system), in µs. */
static long long
cpu_used_us(void)
{
	struct rusage usage;

	if (getrusage(RUSAGE_SELF, &usage) != 0)
		return -1;
	return (long long) (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000 +
		usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
}

/* Announce "ready" and completed rounds as soon as they happen. */
static void
progress_announce(Loadgen *lg)
{
	if (!lg->ready_announced && lg->settled == lg->options.sessions)
	{
		printf("ready %ld %lld\n", lg->established, cpu_used_us());
		fflush(stdout);
		lg->ready_announced = 1;
	}
	if (!lg->ready_announced || lg->alive == 0)
		return;
	while (lg->rounds_announced < lg->options.expect &&
		   lg->round_count[lg->rounds_announced + 1] >= lg->alive)
	{
		lg->rounds_announced++;
		printf("round %ld %lld %lld\n", lg->rounds_announced, (now_us() - lg->start_us) / 1000,
			   cpu_used_us());
		fflush(stdout);
	}
}

/*
 * One message for session C with the data object at P: check its number,
 * record its latency.  Returns 0, or -1 when it is a duplicate (skipped).
 */
static int
message_record(Loadgen *lg, Conn *c, const char *p, const char *end, long long received_us)
{
	long long	sent;
	long long	n;
	long long	step;

	if (json_integer_member(p, end, "s", &step) != 0)
		step = -1;
	if (step != c->last_step)
	{
		if (step < c->last_step)
		{
			lg->messages_duplicate++;	/* a step that has passed */
			return -1;
		}
		c->last_step = step;
		c->last_n = 0;
	}
	if (json_integer_member(p, end, "n", &n) == 0)
	{
		if (n <= c->last_n)
		{
			lg->messages_duplicate++;
			return -1;
		}
		if (n > c->last_n + 1)
			lg->messages_missing += n - c->last_n - 1;
		c->last_n = n;
	}
	lg->packets++;
	if (json_integer_member(p, end, "t", &sent) == 0)
	{
		sample_add(lg, sent, received_us, (long) step);
		if (lg->samples_file != NULL)
			fprintf(lg->samples_file, "%ld %d %lld %lld %lld %lld\n", (long) (c - lg->conns),
					c->channel, c->last_n, step, sent, received_us);
	}
	else
		lg->packets_without_t++;
	if (++c->received <= lg->options.expect)
	{
		lg->round_count[c->received]++;
		if (c->received == lg->options.expect)
			lg->complete++;
	}
	return 0;
}

/* ---- connections ----------------------------------------------------- */

/* (Re)register C with epoll: input always, output while there is some. */
static void
conn_watch(Loadgen *lg, Conn *c, int op)
{
	struct epoll_event ev = {0};

	ev.events = EPOLLIN;
	if (c->out_off < c->out_len || c->state == CONN_CONNECTING ||
		c->state == CONN_GOODBYE || c->state == CONN_RECONNECTING)
		ev.events |= EPOLLOUT;
	/* the generation tells an event for an earlier socket of C from one for this */
	ev.data.u64 = (uint64_t) (c - lg->conns) | ((uint64_t) c->generation << 32);
	if (epoll_ctl(lg->epoll_fd, op, c->fd, &ev) != 0)
		conn_log(lg, c, "epoll_ctl: %s", strerror(errno));
}

/*
 * Close the socket FD with an RST (SO_LINGER 0), not a FIN: tens of
 * thousands of connections closed by the load generator would otherwise
 * each leave a TIME_WAIT socket on an ephemeral port for a minute, and
 * bind() on such a port fails, for the next server this benchmark (or
 * anyone else's test on the machine) starts.  An RST drops what the server
 * has not read yet: never reset a connection whose request a later one
 * depends on (see conn_goodbye).
 */
static void
socket_reset_close(int fd)
{
	struct linger reset = {1, 0};

	(void) setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
	close(fd);					/* also leaves the epoll set */
}

/* Close C's socket (if any) and forget what was read or is to be written. */
static void
conn_socket_close(Conn *c)
{
	if (c->fd >= 0)
		socket_reset_close(c->fd);
	c->fd = -1;
	c->generation++;
	c->in_len = 0;
	c->out_len = c->out_off = 0;
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
	conn_socket_close(c);
	if (c->held_fd >= 0)
		socket_reset_close(c->held_fd);
	c->held_fd = -1;
	c->state = CONN_CLOSED;
	free(c->in);
	c->in = NULL;
	c->in_cap = 0;
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

/* Queue the request formatted from FORMAT on C and send it; -1 on failure. */
static int
conn_send(Loadgen *lg, Conn *c, const char *format,...)
{
	va_list		args;
	int			n;

	if (c->out_off < c->out_len)
	{
		conn_log(lg, c, "a request is still being written");
		return -1;
	}
	va_start(args, format);
	n = vsnprintf(c->out, sizeof(c->out), format, args);
	va_end(args);
	if (n < 0 || (size_t) n >= sizeof(c->out))
	{
		conn_log(lg, c, "request too long");
		return -1;
	}
	c->out_len = (size_t) n;
	c->out_off = 0;
	return conn_flush(lg, c);
}

/* ---- comet ----------------------------------------------------------- */

/*
 * Send the comet request BODY (JSON) on C, with ?sid= in the URL once C
 * has a sid (as comet.js does: a proxy routes by it); -1 when the
 * connection failed.  A sid is letters, digits, '.', '_' and '-': nothing
 * to escape.
 */
static int
comet_request(Loadgen *lg, Conn *c, const char *body)
{
	return conn_send(lg, c,
					 "POST /comet%s%s HTTP/1.1\r\nHost: %s\r\n"
					 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
					 c->sid[0] ? "?sid=" : "", c->sid, lg->targets[c->target].host_header,
					 strlen(body), body);
}

/* Poll with the next rid. */
static int
comet_poll(Loadgen *lg, Conn *c)
{
	char		body[SID_MAX + 64];

	c->rid++;
	snprintf(body, sizeof(body), "{\"sid\":\"%s\",\"rid\":%llu}", c->sid,
			 (unsigned long long) c->rid);
	return comet_request(lg, c, body);
}

/* C is connected: send the set-up, or the terminate when saying goodbye. */
static int
comet_connected(Loadgen *lg, Conn *c)
{
	char		body[SID_MAX + 128];

	if (c->state == CONN_GOODBYE)
	{
		c->state = CONN_TERMINATING;
		snprintf(body, sizeof(body), "{\"sid\":\"%s\",\"rid\":%llu,\"terminate\":true}",
				 c->sid, (unsigned long long) ++c->rid);
	}
	else
	{
		c->state = CONN_SETUP;
		snprintf(body, sizeof(body), "{\"rid\":%llu,\"subscribe\":[\"%s%d\"],\"wait\":%d}",
				 (unsigned long long) c->rid, lg->options.channel, c->channel, POLL_WAIT_S);
	}
	return comet_request(lg, c, body);
}

/*
 * Record the packets of one answer's "packets" array, which starts at P;
 * returns how many entries it has.
 */
static int
comet_packets_record(Loadgen *lg, Conn *c, const char *p, const char *end, long long received_us)
{
	int			entries = 0;

	p = json_skip_space(p, end);
	if (p >= end || *p != '[')
		return 0;
	for (p++;;)
	{
		const char *element_end;
		const char *data;
		long long	seq;

		p = json_skip_space(p, end);
		if (p >= end || *p != '{')
			break;
		element_end = json_value_end(p, end);
		if (element_end == NULL)
			break;
		entries++;
		if (json_member(p, element_end, "gap") != NULL)
		{
			lg->gaps++;
			goto next;
		}
		if (json_integer_member(p, element_end, "seq", &seq) == 0)
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
		data = json_member(p, element_end, "data");
		if (data != NULL)
			(void) message_record(lg, c, data, element_end, received_us);
		else
			lg->packets_without_t++;
next:
		p = json_skip_space(element_end, end);
		if (p < end && *p == ',')
			p++;
	}
	return entries;
}

/* The set-up's answer: learn the sid and the channel's position. */
static void
comet_setup_answered(Loadgen *lg, Conn *c, const char *body, const char *end)
{
	const char *value = json_member(body, end, "sid");
	const char *value_end;
	char		channel[CHANNEL_MAX + 1];
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
	snprintf(channel, sizeof(channel), "%s%d", lg->options.channel, c->channel);
	value = json_member(body, end, "positions");
	if (value != NULL && json_integer_member(value, end, channel, &position) == 0)
		c->last_seq = position;
	c->established = 1;
	lg->established++;
	lg->alive++;
	c->state = CONN_POLLING;
}

/* One whole comet answer to C's outstanding request, read at RECEIVED_US. */
static void
comet_answered(Loadgen *lg, Conn *c, int status, const char *body, const char *end,
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
			comet_setup_answered(lg, c, body, end);
			if (c->state != CONN_POLLING)
				return;
			break;
		case CONN_POLLING:
			break;
		case CONN_TERMINATING:
			/* packets still queued come with the terminate's answer */
			value = json_member(body, end, "packets");
			if (value != NULL)
				(void) comet_packets_record(lg, c, value, end, received_us);
			if (json_integer_member(body, end, "rid", &rid) != 0 || (uint64_t) rid != c->rid)
				conn_log(lg, c, "the terminate's answer has another rid");
			conn_close(lg, c, 0);
			return;
		default:
			conn_log(lg, c, "an answer without a request");
			conn_close(lg, c, 1);
			return;
	}
	value = json_member(body, end, "packets");
	if (value == NULL || comet_packets_record(lg, c, value, end, received_us) == 0)
		lg->empty_answers++;
	if (comet_poll(lg, c) != 0)
		conn_close(lg, c, 1);
}

/* ---- nchan ----------------------------------------------------------- */

/* Send C's long poll: GET its channel, after the last message it has. */
static int
nchan_poll(Loadgen *lg, Conn *c)
{
	if (c->last_modified[0] == '\0')
		return conn_send(lg, c, "GET /sub/%s%d HTTP/1.1\r\nHost: %s\r\n\r\n",
						 lg->options.channel, c->channel, lg->targets[c->target].host_header);
	return conn_send(lg, c,
					 "GET /sub/%s%d HTTP/1.1\r\nHost: %s\r\n"
					 "If-Modified-Since: %s\r\nIf-None-Match: %s\r\n\r\n",
					 lg->options.channel, c->channel, lg->targets[c->target].host_header,
					 c->last_modified, c->etag);
}

/* C is connected: its first poll, or the same poll again after a reconnect. */
static int
nchan_connected(Loadgen *lg, Conn *c)
{
	if (c->state == CONN_CONNECTING)
	{
		lg->in_flight--;
		lg->settled++;
		c->established = 1;
		lg->established++;
		lg->alive++;
	}
	c->state = CONN_POLLING;
	return nchan_poll(lg, c);
}

/*
 * Copy the value of the header NAME (with its colon) from the answer head
 * HEAD into OUT; -1 when it is missing or too long.
 */
static int
header_value(const char *head, const char *name, char *out, size_t out_size)
{
	size_t		name_len = strlen(name);
	const char *line;

	for (line = strstr(head, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n"))
	{
		const char *value;
		const char *value_end;

		if (strncasecmp(line + 2, name, name_len) != 0)
			continue;
		value = line + 2 + name_len;
		while (*value == ' ' || *value == '\t')
			value++;
		value_end = strstr(value, "\r\n");
		if (value_end == NULL)
			value_end = value + strlen(value);
		while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t'))
			value_end--;
		if ((size_t) (value_end - value) >= out_size)
			return -1;
		memcpy(out, value, (size_t) (value_end - value));
		out[value_end - value] = '\0';
		return 0;
	}
	return -1;
}

/* One whole Nchan answer (HEAD, then BODY) to C's poll, read at RECEIVED_US. */
static void
nchan_answered(Loadgen *lg, Conn *c, int status, const char *head, const char *body,
			   const char *end, long long received_us)
{
	if (c->state != CONN_POLLING)
	{
		conn_log(lg, c, "an answer without a request");
		conn_close(lg, c, 1);
		return;
	}
	if (status == 304 || status == 408)
	{
		/* nothing new before the server's timeout: ask again */
		lg->empty_answers++;
		if (nchan_poll(lg, c) != 0)
			conn_close(lg, c, 1);
		return;
	}
	if (status != 200)
	{
		lg->http_errors++;
		if (status > 0 && status < STATUS_MAX)
			lg->status_count[status]++;
		conn_log(lg, c, "HTTP %d: %.*s", status, (int) (end - body > 200 ? 200 : end - body), body);
		conn_close(lg, c, 1);
		return;
	}
	if (header_value(head, "Last-Modified:", c->last_modified, sizeof(c->last_modified)) != 0 ||
		header_value(head, "Etag:", c->etag, sizeof(c->etag)) != 0)
	{
		conn_log(lg, c, "an answer without a usable Last-Modified and Etag");
		conn_close(lg, c, 1);
		return;
	}
	(void) message_record(lg, c, body, end, received_us);
	if (nchan_poll(lg, c) != 0)
		conn_close(lg, c, 1);
}

/* ---- HTTP answers and events ----------------------------------------- */

/*
 * Consume every complete answer at the start of C's input.  Answers must
 * have a Content-Length, apart from 204 and 304 (both servers send one).
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
		if (!has_length && status != 204 && status != 304)
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
		{
			*head_end = '\r';
			return;
		}
		body = c->in + head_len;
		saved = body[body_len];
		body[body_len] = '\0';
		if (lg->options.protocol == PROTOCOL_COMET)
			comet_answered(lg, c, status, body, body + body_len, received_us);
		else
			nchan_answered(lg, c, status, c->in, body, body + body_len, received_us);
		if (c->state == CONN_CLOSED)
			return;
		body[body_len] = saved;
		memmove(c->in, c->in + head_len + body_len, c->in_len - head_len - body_len);
		c->in_len -= head_len + body_len;
	}
}

/*
 * The server closed C's connection.  Nchan's sessions open a new one and
 * repeat the poll (nginx ends keep-alive connections after a number of
 * answers); anything else is a lost session.
 */
static void
conn_server_closed(Loadgen *lg, Conn *c, const char *why)
{
	if (lg->options.protocol == PROTOCOL_NCHAN && c->state == CONN_POLLING && !lg->ending &&
		c->in_len == 0)
	{
		conn_socket_close(c);
		c->state = CONN_RECONNECTING;
		lg->reconnects++;
		conn_connect(lg, c);
		return;
	}
	conn_log(lg, c, "%s", why);
	conn_close(lg, c, 1);
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
		conn_server_closed(lg, c, n == 0 ? "the server closed the connection" : strerror(errno));
		return;
	}
	c->in_len += (size_t) n;
	conn_answers_take(lg, c, now_us());
}

/* C's connect finished: send what its state calls for. */
static void
conn_connected(Loadgen *lg, Conn *c)
{
	int			error = 0;
	int			one = 1;
	socklen_t	len = sizeof(error);
	int			failed;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0)
	{
		conn_log(lg, c, "connect: %s", strerror(error ? error : errno));
		lg->connect_errors++;
		conn_close(lg, c, 1);
		return;
	}
	(void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (lg->options.protocol == PROTOCOL_COMET)
		failed = comet_connected(lg, c);
	else
		failed = nchan_connected(lg, c);
	if (failed)
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
	Target	   *target = &lg->targets[c->target];

	c->fd = socket(target->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
	{
		conn_log(lg, c, "socket: %s", strerror(errno));
		lg->connect_errors++;
		conn_close(lg, c, 1);
		return;
	}
	if (connect(c->fd, (struct sockaddr *) &target->addr, target->addr_len) == 0)
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

/* Start session C: connect, then set up (comet) or poll (nchan). */
static void
conn_start(Loadgen *lg, Conn *c)
{
	long		i = (long) (c - lg->conns);

	lg->started++;
	lg->in_flight++;
	c->fd = -1;
	c->held_fd = -1;
	c->channel = (int) (i % lg->options.channels) + 1;
	c->target = (int) (i % lg->options.ports_len);
	c->last_seq = -1;
	c->last_step = -2;
	c->last_n = 0;
	c->rid = 1000 + (uint64_t) i;
	c->state = CONN_CONNECTING;
	conn_connect(lg, c);
}

/*
 * End session C: comet sends a terminate with the next rid on a new
 * connection and keeps the held poll's open, out of the epoll set, until
 * the terminate is answered: the poll may still be unread in the bridge,
 * which would then wait for it before the terminate.  Nchan's just closes.
 * Sessions not polling close.
 */
static void
conn_goodbye(Loadgen *lg, Conn *c)
{
	if (c->state != CONN_POLLING || lg->options.protocol == PROTOCOL_NCHAN)
	{
		if (c->state == CONN_POLLING)
			lg->terminated++;
		conn_close(lg, c, c->state != CONN_POLLING);
		return;
	}
	if (epoll_ctl(lg->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL) != 0)
		conn_log(lg, c, "epoll_ctl: %s", strerror(errno));
	c->held_fd = c->fd;
	c->fd = -1;
	conn_socket_close(c);		/* the rest of a new socket's start */
	c->state = CONN_GOODBYE;
	lg->goodbye_in_flight++;
	conn_connect(lg, c);
}

/* One epoll event on C. */
static void
conn_event(Loadgen *lg, Conn *c, uint32_t events)
{
	if (c->state == CONN_CLOSED)
		return;
	if (c->state == CONN_CONNECTING || c->state == CONN_GOODBYE ||
		c->state == CONN_RECONNECTING)
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

/* The signalfd is readable: SIGUSR1 reports, SIGTERM and SIGINT stop. */
static void
signals_take(Loadgen *lg)
{
	struct signalfd_siginfo info;

	while (read(lg->signal_fd, &info, sizeof(info)) == (ssize_t) sizeof(info))
	{
		if (info.ssi_signo == SIGUSR1)
			steps_report(lg);
		else
			lg->stopping = 1;
	}
}

/* Run the event loop until DEADLINE_US, a stop signal, or DONE says so. */
static void
loop_run(Loadgen *lg, long long deadline_us, int (*done) (Loadgen *))
{
	struct epoll_event events[EVENTS_MAX];

	while (!done(lg))
	{
		long long	left_ms = (deadline_us - now_us()) / 1000;
		int			n;
		int			i;

		if (left_ms <= 0 || (lg->stopping && !lg->ending))
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
		{
			uint32_t	index = (uint32_t) events[i].data.u64;
			Conn	   *c;

			if (index == SIGNAL_EVENT)
			{
				signals_take(lg);
				continue;
			}
			c = &lg->conns[index];
			if ((uint32_t) (events[i].data.u64 >> 32) != c->generation)
				continue;		/* for a socket C has closed since */
			conn_event(lg, c, events[i].events);
		}
		progress_announce(lg);
	}
}

/* The run is over: every live session has its messages (with --expect). */
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

/* End every session (see conn_goodbye), within GOODBYE_MS. */
static void
sessions_end(Loadgen *lg)
{
	long		i;

	lg->ending = 1;
	loop_run(lg, now_us() + (long long) GOODBYE_MS * 1000, goodbye_done);
	for (i = 0; i < lg->started; i++)
		conn_close(lg, &lg->conns[i], lg->conns[i].state != CONN_POLLING);
}

/* Print the totals and the latencies, overall and per message. */
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
	printf("reconnects %ld\n", lg->reconnects);
	printf("http_errors %ld\n", lg->http_errors);
	for (i = 0; i < STATUS_MAX; i++)
		if (lg->status_count[i] > 0)
			printf("http_status_%zu %ld\n", i, lg->status_count[i]);
	printf("empty_answers %ld\n", lg->empty_answers);
	printf("packets %ld\n", lg->packets);
	printf("packets_missing %ld\n", lg->packets_missing);
	printf("packets_duplicate %ld\n", lg->packets_duplicate);
	printf("messages_missing %ld\n", lg->messages_missing);
	printf("messages_duplicate %ld\n", lg->messages_duplicate);
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
	}
	if (n > 0 && lg->options.expect > 0)
	{
		/* per message: the samples sorted by send time, then latency */
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

/* Take SIGUSR1, SIGTERM and SIGINT through a signalfd in the epoll set. */
static int
signals_watch(Loadgen *lg)
{
	sigset_t	mask;
	struct epoll_event ev = {0};

	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
		return -1;
	lg->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (lg->signal_fd < 0)
		return -1;
	ev.events = EPOLLIN;
	ev.data.u64 = SIGNAL_EVENT;
	return epoll_ctl(lg->epoll_fd, EPOLL_CTL_ADD, lg->signal_fd, &ev);
}

int
main(int argc, char **argv)
{
	static Loadgen lg;
	long long	end_us;
	int			i;

	lg.options.host = "127.0.0.1";
	lg.options.sessions = 1;
	lg.options.channel = "bench";
	lg.options.channels = 1;
	lg.options.duration_s = 30;
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
	{
		usage();
		return 0;
	}
	if (options_parse(argc, argv, &lg.options) != 0)
	{
		usage();
		return 2;
	}
	for (i = 0; i < lg.options.ports_len; i++)
	{
		if (address_resolve(&lg.targets[i], lg.options.host, lg.options.ports[i]) != 0)
		{
			usage();
			return 2;
		}
	}
	if (files_raise(lg.options.sessions + FILES_SPARE) != 0)
		return 2;
	if (lg.options.samples_path != NULL)
	{
		lg.samples_file = fopen(lg.options.samples_path, "w");
		if (lg.samples_file == NULL)
		{
			perror(lg.options.samples_path);
			return 2;
		}
	}
	lg.conns = calloc((size_t) lg.options.sessions, sizeof(Conn));
	lg.round_count = calloc((size_t) lg.options.expect + 2, sizeof(long));
	lg.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (lg.conns == NULL || lg.round_count == NULL || lg.epoll_fd < 0 || signals_watch(&lg) != 0)
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
	sessions_end(&lg);
	loadgen_report(&lg, end_us - lg.start_us);
	if (lg.samples_file != NULL && fclose(lg.samples_file) != 0)
	{
		perror(lg.options.samples_path);
		return 1;
	}
	return 0;
}
