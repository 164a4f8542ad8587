/*
 * pg_test.c — the bridge's database side against a real PostgreSQL:
 * queries with parameters and errors, LISTEN and NOTIFY (with a channel
 * name that needs quoting), UNLISTEN, and the LISTEN connection's backend
 * being terminated: it must come back, LISTEN again and say so.
 *
 * COMET_TEST_DB is the conninfo of a throwaway database (make test sets it).
 */
#include "../pg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

typedef struct Seen
{
	int			listening;
	char		last_listening[64];
	int			connected;
	int			disconnected;
	int			notifies;
	char		channel[64];
	char		payload[256];
	/* the last query result */
	int			results;
	int			null_results;
	ExecStatusType status;
	char		value[256];
	char		sqlstate[8];
	int			order[128];
	int			norder;
} Seen;

static Seen seen;
static Loop *loop;
static Pg  *pg;

static void
on_notify(void *ctx, const char *channel, const char *payload)
{
	(void) ctx;
	seen.notifies++;
	snprintf(seen.channel, sizeof(seen.channel), "%s", channel);
	snprintf(seen.payload, sizeof(seen.payload), "%s", payload);
}

static void
on_listening(void *ctx, const char *channel)
{
	(void) ctx;
	seen.listening++;
	snprintf(seen.last_listening, sizeof(seen.last_listening), "%s", channel);
}

static void
on_connected(void *ctx)
{
	(void) ctx;
	seen.connected++;
}

static void
on_disconnected(void *ctx, const char *why)
{
	(void) ctx;
	(void) why;
	seen.disconnected++;
}

static void
on_result(void *arg, PGresult *result)
{
	(void) arg;
	seen.results++;
	if (result == NULL)
	{
		seen.null_results++;
		return;
	}
	seen.status = PQresultStatus(result);
	seen.value[0] = '\0';
	seen.sqlstate[0] = '\0';
	if (seen.status == PGRES_TUPLES_OK && PQntuples(result) > 0)
		snprintf(seen.value, sizeof(seen.value), "%s", PQgetvalue(result, 0, 0));
	if (PQresultErrorField(result, PG_DIAG_SQLSTATE))
		snprintf(seen.sqlstate, sizeof(seen.sqlstate), "%s",
				 PQresultErrorField(result, PG_DIAG_SQLSTATE));
}

static void
on_ordered_result(void *arg, PGresult *result)
{
	(void) result;
	if (seen.norder < 128)
		seen.order[seen.norder++] = (int) (intptr_t) arg;
}

static int	sleep_results;
static int	sleep_null_results;

static void
on_sleep_result(void *arg, PGresult *result)
{
	(void) arg;
	sleep_results++;
	if (result == NULL)
		sleep_null_results++;
}

/*
 * The number of backends running pg_test's slow query, polled on a plain
 * blocking connection of the test's own until it is `want` or timeout_ms
 * passes.
 */
static int
count_sleepers(const char *conninfo, int want, int timeout_ms)
{
	PGconn	   *conn = PQconnectdb(conninfo);
	int			n = -1;
	int			waited;

	for (waited = 0; PQstatus(conn) == CONNECTION_OK && waited <= timeout_ms; waited += 20)
	{
		PGresult   *r = PQexec(conn,
							   "SELECT count(*) FROM pg_stat_activity "
							   "WHERE query = 'SELECT pg_sleep(10) -- pg_test' "
							   "AND state = 'active' AND pid <> pg_backend_pid()");

		n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : -1;
		PQclear(r);
		if (n == want)
			break;
		usleep(20 * 1000);
	}
	PQfinish(conn);
	return n;
}

static void
stop_loop(Loop *l, LoopTimer *timer, void *arg)
{
	(void) timer;
	(void) arg;
	loop_stop(l);
}

/* Run the loop until *counter reaches target, or timeout_ms passes. */
static bool
run_until(const int *counter, int target, uint64_t timeout_ms)
{
	uint64_t	deadline = loop_now_ms(loop) + timeout_ms;
	LoopTimer	tick;

	loop_timer_init(&tick, stop_loop, NULL);
	while (*counter < target && loop_now_ms(loop) < deadline)
	{
		loop_timer_start(loop, &tick, 10);
		loop_run(loop);
	}
	loop_timer_stop(loop, &tick);
	return *counter >= target;
}

static void
query0(const char *sql)
{
	pg_query(pg, sql, 0, NULL, on_result, NULL);
}

int
main(void)
{
	const char *conninfo = getenv("COMET_TEST_DB");
	PgHooks		hooks = {on_notify, on_listening, on_connected, on_disconnected, NULL};
	char		err[200];
	const char *params[2];
	const char *odd = "odd \"chan\"; DROP TABLE x; --";
	int			target;
	int			i;
	int			pid;

	UNIT_CHECK(conninfo != NULL, "COMET_TEST_DB names a database to test against");
	if (conninfo == NULL)
		return unit_done();
	loop = loop_create(err, sizeof(err));
	UNIT_CHECK(pg_create(loop, conninfo, 0, &hooks, err, sizeof(err)) == NULL &&
			   strstr(err, "pool") != NULL,
			   "a pool of 0 connections is refused (%s)", err);
	pg = pg_create(loop, conninfo, 2, &hooks, err, sizeof(err));

	UNIT_CHECK(run_until(&seen.connected, 1, 5000) && pg_listen_connected(pg),
			   "the LISTEN connection comes up and says so");

	query0("SELECT 40 + 2");
	UNIT_CHECK(run_until(&seen.results, 1, 5000) && seen.status == PGRES_TUPLES_OK &&
			   strcmp(seen.value, "42") == 0, "a query runs and returns its rows");

	params[0] = "it's \"quoted\"";
	params[1] = NULL;
	pg_query(pg, "SELECT $1::text || coalesce($2, ' and null')", 2, params, on_result, NULL);
	UNIT_CHECK(run_until(&seen.results, 2, 5000) &&
			   strcmp(seen.value, "it's \"quoted\" and null") == 0,
			   "parameters travel as they are, NULL included (%s)", seen.value);

	query0("SELECT 1/0");
	UNIT_CHECK(run_until(&seen.results, 3, 5000) && seen.status == PGRES_FATAL_ERROR &&
			   strcmp(seen.sqlstate, "22012") == 0,
			   "an SQL error comes back with its SQLSTATE");

	query0("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'comet-bridge'");
	UNIT_CHECK(run_until(&seen.results, 4, 5000) && atoi(seen.value) == 3,
			   "every connection says application_name comet-bridge (%s of 3)", seen.value);

	for (i = 0; i < 50; i++)
		pg_query(pg, "SELECT pg_sleep(0)", 0, NULL, on_ordered_result, (void *) (intptr_t) i);
	target = 50;
	UNIT_CHECK(run_until(&seen.norder, target, 10000) && seen.norder == 50,
			   "50 queued queries all complete, each handler called once");

	pg_listen(pg, "test:one");
	pg_listen(pg, odd);
	UNIT_CHECK(run_until(&seen.listening, 2, 5000) && strcmp(seen.last_listening, odd) == 0,
			   "LISTEN takes effect, also on a name that needs quoting");
	UNIT_CHECK(pg_listen_count(pg) == 2, "two channels are listened on");

	params[0] = odd;
	params[1] = "hello";
	pg_query(pg, "SELECT pg_notify($1, $2)", 2, params, on_result, NULL);
	UNIT_CHECK(run_until(&seen.notifies, 1, 5000) && strcmp(seen.channel, odd) == 0 &&
			   strcmp(seen.payload, "hello") == 0,
			   "a NOTIFY on it arrives with its channel and payload");

	/*
	 * UNLISTEN runs on the LISTEN connection, the NOTIFY on a pool
	 * connection: wait until the UNLISTEN has run (the LISTEN queued behind
	 * it on the same connection says so) before notifying.
	 */
	pg_unlisten(pg, odd);
	pg_listen(pg, "test:two");
	UNIT_CHECK(run_until(&seen.listening, 3, 5000) &&
			   strcmp(seen.last_listening, "test:two") == 0 && pg_listen_count(pg) == 2,
			   "UNLISTEN and LISTEN run in the order they were asked for");
	/* one transaction: its notifications arrive in the order they were made */
	pg_query(pg, "SELECT pg_notify($1, $2), pg_notify('test:one', 'sentinel')",
			 2, params, on_result, NULL);
	UNIT_CHECK(run_until(&seen.notifies, 2, 5000) && strcmp(seen.payload, "sentinel") == 0 &&
			   seen.notifies == 2,
			   "after UNLISTEN nothing more arrives from that channel");

	pid = pg_listen_backend_pid(pg);
	{
		char		pid_text[16];

		snprintf(pid_text, sizeof(pid_text), "%d", pid);
		params[0] = pid_text;
		pg_query(pg, "SELECT pg_terminate_backend($1::int)", 1, params, on_result, NULL);
	}
	UNIT_CHECK(run_until(&seen.disconnected, 1, 5000),
			   "a terminated LISTEN backend is noticed");
	UNIT_CHECK(run_until(&seen.connected, 2, 10000) && pg_listen_backend_pid(pg) != pid,
			   "the LISTEN connection comes back on a new backend");
	UNIT_CHECK(pg_reconnects(pg) >= 1, "the reconnect is counted");
	query0("SELECT pg_notify('test:one', 'after the reconnect')");
	UNIT_CHECK(run_until(&seen.notifies, 3, 5000) &&
			   strcmp(seen.payload, "after the reconnect") == 0,
			   "it listens on its channels again");

	pg_query(pg, "SELECT pg_sleep(10) -- pg_test", 0, NULL, on_sleep_result, NULL);
	UNIT_CHECK(count_sleepers(conninfo, 1, 5000) == 1, "a slow query is running");
	pg_destroy(pg);
	UNIT_CHECK(sleep_results == 1 && sleep_null_results == 1,
			   "pg_destroy answers queries still in flight with no result");
	UNIT_CHECK(count_sleepers(conninfo, 0, 5000) == 0,
			   "pg_destroy cancels the query: it does not outlive the bridge");
	loop_destroy(loop);
	return unit_done();
}
