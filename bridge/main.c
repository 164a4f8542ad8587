/*
 * main.c — comet-bridge's entry: options, start-up checks, signals and an
 * orderly shutdown.
 *
 * Start-up refuses what would only fail later: a --listen that is not an
 * address and port, limits out of range, function names that are not SQL
 * names, and configured functions that do not exist in the database with
 * the signature the bridge calls them with (checked once, over a blocking
 * connection, before the event loop starts).
 *
 * SIGTERM or SIGINT: stop accepting connections, answer every held request
 * with system-shutdown, give the answers a moment to leave, exit 0.
 */
#include <ctype.h>
#include <unistd.h>
#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "broker.h"
#include "http.h"
#include "log.h"
#include "loop.h"

#define COMET_BRIDGE_VERSION "0.1.0"
#define MAX_ORIGINS 32
/* How long answers to held requests get to leave at shutdown. */
#define SHUTDOWN_DRAIN_MS 300

typedef struct Options
{
	char		host[64];
	int			port;
	const char *db;
	const char *static_dir;
	const char *client_js;
	long		wait_s;
	long		inactivity_s;
	long		max_sessions;
	long		max_body;
	long		connection_memory;
	long		max_pending;
	long		per_address;
	long		pool;
	const char *origins[MAX_ORIGINS + 1];
	int			norigins;
	const char *auth_function;
	const char *authorize_function;
	const char *receive_function;
	const char *session_function;
	const char *node_id;
} Options;

static void
usage(FILE *out)
{
	fprintf(out,
			"Usage: comet-bridge [options]\n"
			"Delivers packets from PostgreSQL (the comet extension) to browsers over HTTP long-polling.\n"
			"\n"
			"  --listen HOST:PORT          address to serve on (default 127.0.0.1:8080; [::1]:8080 for IPv6)\n"
			"  --db CONNINFO               libpq connection string (default: libpq's PG* variables)\n"
			"  --static DIR                serve files from DIR, DIR/index.html at /\n"
			"  --client FILE               serve FILE as /comet.js (default: the built-in client)\n"
			"  --wait SECONDS              longest a poll is held (default 60)\n"
			"  --inactivity SECONDS        end sessions silent this long (default 45)\n"
			"  --max-sessions N            sessions at most (default 10000)\n"
			"  --max-body BYTES            largest request body (default 65536)\n"
			"  --connection-memory BYTES   memory per connection for request and response\n"
			"                              headers (default 8192: headers up to about 4 KiB)\n"
			"  --max-pending N             packets queued per session before overflow (default 1000)\n"
			"  --max-connections-per-address N\n"
			"                              connections one client address may hold (default 0:\n"
			"                              no limit; behind a proxy every client has the proxy's address)\n"
			"  --pool N                    database connections for queries (default 4)\n"
			"  --allow-origin ORIGIN       allow CORS from ORIGIN (repeatable; default none)\n"
			"  --auth-function F           default comet.authenticate    (F(auth jsonb) returns text)\n"
			"  --authorize-function F      default comet.authorize       (F(subject, channel, action text) returns boolean)\n"
			"  --receive-function F        default comet.receive         (F(subject, sid, channel text, data jsonb))\n"
			"  --session-function F        called when sessions open and end (default none)\n"
			"  --node-id NAME              prefix of session ids, for routing between bridges\n"
			"                              (default: the host name and the port, HOST-PORT)\n"
			"  --log-level LEVEL           debug, info, warn or error (default info)\n"
			"  --help, --version\n");
}

static bool
parse_long(const char *text, long min, long max, long *value)
{
	char	   *end;

	errno = 0;
	*value = strtol(text, &end, 10);
	return errno == 0 && end != text && *end == '\0' && *value >= min && *value <= max;
}

static bool
parse_listen(const char *text, Options *options)
{
	const char *colon;
	long		port;
	size_t		host_len;
	const char *host = text;

	if (text[0] == '[')
	{
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':')
			return false;
		host = text + 1;
		host_len = (size_t) (close - host);
		colon = close + 1;
	}
	else
	{
		colon = strrchr(text, ':');
		if (colon == NULL)
			return false;
		host_len = (size_t) (colon - text);
	}
	if (host_len == 0 || host_len >= sizeof(options->host) ||
		!parse_long(colon + 1, 0, 65535, &port))
		return false;
	memcpy(options->host, host, host_len);
	options->host[host_len] = '\0';
	options->port = (int) port;
	return true;
}

/* An SQL function name the bridge may put in a query: [schema.]name. */
static bool
valid_function_name(const char *name)
{
	const char *p = name;
	int			parts = 0;

	while (*p)
	{
		if (!(isalpha((unsigned char) *p) || *p == '_'))
			return false;
		while (isalnum((unsigned char) *p) || *p == '_')
			p++;
		parts++;
		if (*p == '.')
			p++;
		else if (*p != '\0')
			return false;
	}
	return parts >= 1 && parts <= 2 && p[-1] != '.';
}

static bool
valid_node_id(const char *id)
{
	size_t		i;

	if (id[0] == '\0' || strlen(id) > 32)
		return false;
	for (i = 0; id[i]; i++)
		if (!(isalnum((unsigned char) id[i]) || id[i] == '-'))
			return false;
	return true;
}

/*
 * The default --node-id: the host name (letters, digits and '-'; anything
 * else becomes '-'), cut to 24 characters, then "-PORT" — so that a bridge
 * restarted on the same host and port routes and cleans up as before.
 */
static void
default_node_id(char *out, size_t outlen, int port)
{
	char		host[256] = "";
	size_t		i;

	if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "bridge");
	host[24] = '\0';
	for (i = 0; host[i]; i++)
		if (!(isalnum((unsigned char) host[i]) || host[i] == '-'))
			host[i] = '-';
	snprintf(out, outlen, "%.24s-%d", host, port);
}

/*
 * Tell the session function that this bridge starts: F(NULL, prefix,
 * 'start', '{}'), where prefix begins every sid this bridge makes
 * ("NODE-ID.").  Sessions of an earlier run of this bridge are
 * gone, and if it was killed their ends were never reported.  Called before
 * the bridge serves, so it cannot race with a new session's "open".  A
 * failure is logged: presence is the application's, not the bridge's.
 */
static void
announce_start(PGconn *conn, const Options *options)
{
	char		sql[300];
	char		prefix[64];
	const char *params[1];
	PGresult   *result;

	snprintf(sql, sizeof(sql), "SELECT %s(NULL::text, $1, 'start', '{}'::text[])",
			 options->session_function);
	snprintf(prefix, sizeof(prefix), "%s%s", options->node_id ? options->node_id : "",
			 options->node_id ? "." : "");
	params[0] = prefix;
	result = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(result) != PGRES_TUPLES_OK)
		fprintf(stderr, "comet-bridge: error: the session function failed for 'start': %s",
				PQresultErrorMessage(result));
	PQclear(result);
}

/*
 * Check every configured function exists with the signature we call; then
 * announce the start to the session function, if there is one.
 */
static bool
check_functions(const Options *options)
{
	const char *keywords[] = {"dbname", "application_name", "connect_timeout", NULL};
	const char *values[] = {options->db, "comet-bridge", "10", NULL};
	PGconn	   *conn = PQconnectdbParams(keywords, values, 1);
	struct
	{
		const char *name;
		const char *args;
		const char *option;
	}			functions[] =
	{
		{options->auth_function, "(jsonb)", "--auth-function"},
		{options->authorize_function, "(text, text, text)", "--authorize-function"},
		{options->receive_function, "(text, text, text, jsonb)", "--receive-function"},
		{options->session_function, "(text, text, text, text[])", "--session-function"},
		{"comet.replay", "(text, bigint, integer)", "the comet extension"},
		{"comet.last_seq", "(text)", "the comet extension"},
	};
	bool		ok = true;
	size_t		i;

	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "comet-bridge: cannot connect to the database: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return false;
	}
	for (i = 0; i < sizeof(functions) / sizeof(functions[0]); i++)
	{
		char		signature[200];
		const char *params[1];
		PGresult   *result;

		if (functions[i].name == NULL)
			continue;
		snprintf(signature, sizeof(signature), "%s%s", functions[i].name, functions[i].args);
		params[0] = signature;
		/* a function, not a procedure (which to_regprocedure finds too) */
		result = PQexecParams(conn,
							  "SELECT coalesce((SELECT prokind = 'f' FROM pg_catalog.pg_proc"
							  " WHERE oid = to_regprocedure($1)), false)", 1, NULL,
							  params, NULL, NULL, 0);
		if (PQresultStatus(result) != PGRES_TUPLES_OK)
		{
			fprintf(stderr, "comet-bridge: checking %s failed: %s", signature,
					PQresultErrorMessage(result));
			ok = false;
		}
		else if (strcmp(PQgetvalue(result, 0, 0), "t") != 0)
		{
			fprintf(stderr, "comet-bridge: function %s does not exist (%s)%s\n", signature,
					functions[i].option,
					strncmp(functions[i].name, "comet.", 6) == 0
					? "; is the comet extension installed in this database?" : "");
			ok = false;
		}
		PQclear(result);
	}
	if (ok && options->session_function)
		announce_start(conn, options);
	PQfinish(conn);
	return ok;
}

static int
parse_options(int argc, char **argv, Options *options)
{
	static const struct option long_options[] = {
		{"listen", required_argument, NULL, 'l'},
		{"db", required_argument, NULL, 'd'},
		{"static", required_argument, NULL, 's'},
		{"client", required_argument, NULL, 'j'},
		{"wait", required_argument, NULL, 'w'},
		{"inactivity", required_argument, NULL, 'i'},
		{"max-sessions", required_argument, NULL, 'S'},
		{"max-body", required_argument, NULL, 'B'},
		{"connection-memory", required_argument, NULL, 'M'},
		{"max-pending", required_argument, NULL, 'P'},
		{"max-connections-per-address", required_argument, NULL, 'a'},
		{"pool", required_argument, NULL, 'p'},
		{"allow-origin", required_argument, NULL, 'o'},
		{"auth-function", required_argument, NULL, 'A'},
		{"authorize-function", required_argument, NULL, 'Z'},
		{"receive-function", required_argument, NULL, 'R'},
		{"session-function", required_argument, NULL, 'F'},
		{"node-id", required_argument, NULL, 'n'},
		{"log-level", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	int			c;
	int			index = 0;

	while ((c = getopt_long(argc, argv, "", long_options, &index)) != -1)
	{
		bool		ok = true;

		switch (c)
		{
			case 'l':
				ok = parse_listen(optarg, options);
				break;
			case 'd':
				options->db = optarg;
				break;
			case 's':
				options->static_dir = optarg;
				break;
			case 'j':
				options->client_js = optarg;
				break;
			case 'w':
				ok = parse_long(optarg, 1, 3600, &options->wait_s);
				break;
			case 'i':
				ok = parse_long(optarg, 1, 86400, &options->inactivity_s);
				break;
			case 'S':
				ok = parse_long(optarg, 1, 1000000, &options->max_sessions);
				break;
			case 'B':
				ok = parse_long(optarg, 64, 64L * 1024 * 1024, &options->max_body);
				break;
			case 'M':
				ok = parse_long(optarg, 4096, 1024L * 1024, &options->connection_memory);
				break;
			case 'P':
				ok = parse_long(optarg, 1, 1000000, &options->max_pending);
				break;
			case 'a':
				ok = parse_long(optarg, 0, 1000000, &options->per_address);
				break;
			case 'p':
				ok = parse_long(optarg, 1, 64, &options->pool);
				break;
			case 'o':
				ok = options->norigins < MAX_ORIGINS;
				if (ok)
					options->origins[options->norigins++] = optarg;
				break;
			case 'A':
				ok = valid_function_name(optarg);
				options->auth_function = optarg;
				break;
			case 'Z':
				ok = valid_function_name(optarg);
				options->authorize_function = optarg;
				break;
			case 'R':
				ok = valid_function_name(optarg);
				options->receive_function = optarg;
				break;
			case 'F':
				ok = valid_function_name(optarg);
				options->session_function = optarg;
				break;
			case 'n':
				ok = valid_node_id(optarg);
				options->node_id = optarg;
				break;
			case 'L':
				ok = log_parse_level(optarg) >= 0;
				if (ok)
					log_set_level((LogLevel) log_parse_level(optarg));
				break;
			case 'h':
				usage(stdout);
				return 0;
			case 'V':
				printf("comet-bridge %s\n", COMET_BRIDGE_VERSION);
				return 0;
			default:
				usage(stderr);
				return 2;
		}
		if (!ok)
		{
			fprintf(stderr, "comet-bridge: invalid value for --%s: \"%s\"\n",
					long_options[index].name, optarg);
			return 2;
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "comet-bridge: unexpected argument \"%s\"\n", argv[optind]);
		return 2;
	}
	return -1;
}

typedef struct Running
{
	Loop	   *loop;
	Broker	   *broker;
	Http	   *http;
	LoopTimer	drain_timer;
	bool		stopping;
} Running;

static void
drained(Loop *loop, LoopTimer *timer, void *arg)
{
	(void) timer;
	(void) arg;
	loop_stop(loop);
}

static void
on_stop_signal(Loop *loop, int signo, void *arg)
{
	Running    *running = arg;

	if (running->stopping)
		return;
	running->stopping = true;
	log_info("%s: shutting down", strsignal(signo));
	http_stop_accepting(running->http);
	broker_shutdown(running->broker);
	loop_timer_init(&running->drain_timer, drained, running);
	loop_timer_start(loop, &running->drain_timer, SHUTDOWN_DRAIN_MS);
}

/* Allow as many open files as the hard limit: every session is a socket. */
static void
raise_file_limit(void)
{
	struct rlimit limit;

	if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max)
	{
		limit.rlim_cur = limit.rlim_max;
		(void) setrlimit(RLIMIT_NOFILE, &limit);
	}
}

int
main(int argc, char **argv)
{
	Options		options = {
		.host = "127.0.0.1", .port = 8080, .db = "",
		.wait_s = 60, .inactivity_s = 45, .max_sessions = 10000,
		.max_body = 65536, .connection_memory = 8192, .max_pending = 1000, .pool = 4,
		.auth_function = "comet.authenticate",
		.authorize_function = "comet.authorize",
		.receive_function = "comet.receive",
	};
	BrokerOptions broker_options;
	HttpOptions http_options;
	HttpHooks	http_hooks;
	Running		running = {0};
	char		err[256];
	char		node_id[40];
	int			status = parse_options(argc, argv, &options);

	if (status >= 0)
		return status;
	if (options.node_id == NULL)
	{
		default_node_id(node_id, sizeof(node_id), options.port);
		options.node_id = node_id;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_file_limit();
	if (!check_functions(&options))
		return 1;

	running.loop = loop_create(err, sizeof(err));
	if (running.loop == NULL)
	{
		fprintf(stderr, "comet-bridge: %s\n", err);
		return 1;
	}
	memset(&broker_options, 0, sizeof(broker_options));
	broker_options.conninfo = options.db;
	broker_options.pool_size = (int) options.pool;
	broker_options.max_sessions = (size_t) options.max_sessions;
	broker_options.node_id = options.node_id;
	broker_options.auth_function = options.auth_function;
	broker_options.authorize_function = options.authorize_function;
	broker_options.receive_function = options.receive_function;
	broker_options.session_function = options.session_function;
	broker_options.limits.max_wait_ms = (uint64_t) options.wait_s * 1000;
	broker_options.limits.inactivity_ms = (uint64_t) options.inactivity_s * 1000;
	broker_options.limits.max_pending = (size_t) options.max_pending;
	broker_options.limits.window = 2;
	running.broker = broker_create(running.loop, &broker_options, err, sizeof(err));
	if (running.broker == NULL)
	{
		fprintf(stderr, "comet-bridge: %s\n", err);
		return 1;
	}

	memset(&http_options, 0, sizeof(http_options));
	http_options.host = options.host;
	http_options.port = options.port;
	http_options.max_body = (size_t) options.max_body;
	http_options.connection_memory = (size_t) options.connection_memory;
	http_options.connection_limit = (unsigned) (options.max_sessions * 2 + 64);
	http_options.per_address_limit = (unsigned) options.per_address;
	http_options.static_dir = options.static_dir;
	http_options.client_js = options.client_js;
	http_options.allow_origins = options.origins;
	http_hooks = broker_http_hooks(running.broker);
	running.http = http_create(running.loop, &http_options, &http_hooks, err, sizeof(err));
	if (running.http == NULL)
	{
		fprintf(stderr, "comet-bridge: %s\n", err);
		broker_destroy(running.broker);
		return 1;
	}
	broker_attach_http(running.broker, running.http);

	if (loop_on_signal(running.loop, SIGTERM, on_stop_signal, &running) != 0 ||
		loop_on_signal(running.loop, SIGINT, on_stop_signal, &running) != 0)
	{
		fprintf(stderr, "comet-bridge: cannot handle signals: %s\n", strerror(errno));
		return 1;
	}
	/* always written: it is how supervisors and tests know we are up */
	fprintf(stderr, "comet-bridge: info: listening on %s%s%s:%d\n",
			strchr(options.host, ':') ? "[" : "", options.host,
			strchr(options.host, ':') ? "]" : "", http_port(running.http));

	status = loop_run(running.loop) == 0 ? 0 : 1;
	/* requests read while the broker goes are refused, not handed to it */
	http_refuse_all(running.http);
	broker_destroy(running.broker);
	http_destroy(running.http);
	loop_destroy(running.loop);
	return status;
}
