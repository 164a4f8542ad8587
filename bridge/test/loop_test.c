/*
 * loop_test.c — what the event loop promises: fd readiness reaches the right
 * handler and never a stale one, timers fire in (deadline, start) order and
 * can be stopped and moved, a busy timer cannot starve fds, signals arrive
 * from the loop, and the clock is read once per iteration.
 *
 * Every case uses its own loop and real pipes, timers and signals.  Each run
 * of a loop is bounded by a guard timer, and the whole program by alarm(),
 * so a broken loop fails a check instead of hanging.  Delays are a few
 * milliseconds; only the clock test waits as long as 20 ms.
 */
#include "loop.h"
#include "test/unit.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Longest any single loop_run in these tests may take before it is failed. */
#define GUARD_MS 1000

/* ---------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------
 */

static Loop *
test_loop_create(void)
{
	char		err[256];
	Loop	   *loop = loop_create(err, sizeof(err));

	if (loop == NULL)
	{
		printf("Bail out! loop_create: %s\n", err);
		exit(1);
	}
	return loop;
}

static void
make_pipe(int fds[2])
{
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
	{
		printf("Bail out! pipe2: %s\n", strerror(errno));
		exit(1);
	}
}

static void
write_byte(int fd)
{
	if (write(fd, "x", 1) != 1)
	{
		printf("Bail out! write: %s\n", strerror(errno));
		exit(1);
	}
}

static uint64_t
clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static void
stop_loop(Loop *loop, LoopTimer *timer, void *arg)
{
	(void) timer;
	(void) arg;
	loop_stop(loop);
}

/*
 * Run exactly one iteration: a 0 ms timer makes epoll_wait only poll, and
 * stops the loop from that iteration's firing pass.
 */
static int
run_one_iteration(Loop *loop)
{
	LoopTimer	stopper;
	int			rc;

	loop_timer_init(&stopper, stop_loop, NULL);
	loop_timer_start(loop, &stopper, 0);
	rc = loop_run(loop);
	loop_timer_stop(loop, &stopper);
	return rc;
}

typedef struct Guard
{
	LoopTimer	timer;
	bool		expired;
} Guard;

static void
guard_expire(Loop *loop, LoopTimer *timer, void *arg)
{
	Guard	   *guard = arg;

	(void) timer;
	guard->expired = true;
	loop_stop(loop);
}

/*
 * Run until a callback of the test stops the loop.  True if it did, false
 * if loop_run failed or GUARD_MS passed first.
 */
static bool
run_until_stopped(Loop *loop)
{
	Guard		guard = {.expired = false};
	int			rc;

	loop_timer_init(&guard.timer, guard_expire, &guard);
	loop_timer_start(loop, &guard.timer, GUARD_MS);
	rc = loop_run(loop);
	loop_timer_stop(loop, &guard.timer);
	return rc == 0 && !guard.expired;
}

/* Records the calls of an fd handler; stops the loop when told to. */
typedef struct FdProbe
{
	int			calls;
	int			fd;
	uint32_t	events;
	bool		stop_on_call;
} FdProbe;

static void
fd_probe_record(Loop *loop, int fd, uint32_t events, void *arg)
{
	FdProbe    *probe = arg;

	probe->calls++;
	probe->fd = fd;
	probe->events = events;
	if (probe->stop_on_call)
		loop_stop(loop);
}

/* Timers that append their id to a shared log and stop the loop at a count. */
#define FIRE_LOG_MAX 16

typedef struct FireLog
{
	int			ids[FIRE_LOG_MAX];
	int			count;
	int			stop_at_count;
} FireLog;

typedef struct LoggedTimer
{
	LoopTimer	timer;
	int			id;
	FireLog    *log;
} LoggedTimer;

static void
logged_timer_fire(Loop *loop, LoopTimer *timer, void *arg)
{
	LoggedTimer *logged = arg;
	FireLog    *log = logged->log;

	(void) timer;
	if (log->count < FIRE_LOG_MAX)
		log->ids[log->count] = logged->id;
	log->count++;
	if (log->count == log->stop_at_count)
		loop_stop(loop);
}

static void
logged_timer_init(LoggedTimer *logged, int id, FireLog *log)
{
	logged->id = id;
	logged->log = log;
	loop_timer_init(&logged->timer, logged_timer_fire, logged);
}

static bool
fire_log_is(const FireLog *log, const int *expected, int count)
{
	if (log->count != count)
		return false;
	for (int i = 0; i < count; i++)
		if (log->ids[i] != expected[i])
			return false;
	return true;
}

/* ---------------------------------------------------------------------
 * File descriptors
 * ---------------------------------------------------------------------
 */

static void
test_readable_pipe_runs_handler(void)
{
	Loop	   *loop = test_loop_create();
	FdProbe		probe = {.stop_on_call = true};
	int			fds[2];
	int			watch_rc;
	bool		stopped;

	make_pipe(fds);
	watch_rc = loop_watch(loop, fds[0], EPOLLIN, fd_probe_record, &probe);
	UNIT_CHECK(watch_rc == 0, "loop_watch accepts a pipe's read end for EPOLLIN");
	write_byte(fds[1]);
	stopped = run_until_stopped(loop);
	UNIT_CHECK(stopped && probe.calls == 1 &&
			   probe.fd == fds[0] && (probe.events & EPOLLIN) != 0,
			   "a pipe with data is readable: its handler runs once, for its fd, with EPOLLIN");

	loop_unwatch(loop, fds[0]);
	close(fds[0]);
	close(fds[1]);
	loop_destroy(loop);
}

static void
test_unwatch_stops_delivery(void)
{
	Loop	   *loop = test_loop_create();
	FdProbe		probe = {.stop_on_call = false};
	int			fds[2];
	int			unwatch_rc;
	int			run_rc;
	int			watch_rc;
	int			watch_errno;

	make_pipe(fds);
	loop_watch(loop, fds[0], EPOLLIN, fd_probe_record, &probe);
	write_byte(fds[1]);
	unwatch_rc = loop_unwatch(loop, fds[0]);
	run_rc = run_one_iteration(loop);
	UNIT_CHECK(unwatch_rc == 0 && run_rc == 0 && probe.calls == 0,
			   "after loop_unwatch a readable pipe's handler is no longer called");
	unwatch_rc = loop_unwatch(loop, fds[0]);
	UNIT_CHECK(unwatch_rc == 0, "unwatching an fd that is not watched is harmless");

	loop_watch(loop, fds[0], EPOLLIN, fd_probe_record, &probe);
	close(fds[0]);
	unwatch_rc = loop_unwatch(loop, fds[0]);
	UNIT_CHECK(unwatch_rc == 0, "unwatching an fd that was closed first succeeds");

	watch_rc = loop_watch(loop, -1, EPOLLIN, fd_probe_record, &probe);
	watch_errno = errno;
	UNIT_CHECK(watch_rc == -1 && watch_errno == EBADF,
			   "watching a negative fd fails with EBADF");
	watch_rc = loop_watch(loop, fds[1], EPOLLOUT | EPOLLET, fd_probe_record, &probe);
	watch_errno = errno;
	UNIT_CHECK(watch_rc == -1 && watch_errno == EINVAL,
			   "watching edge-triggered is refused with EINVAL (the loop is level-triggered)");

	close(fds[1]);
	loop_destroy(loop);
}

static void
test_rewatch_after_close_without_unwatch(void)
{
	Loop	   *loop = test_loop_create();
	FdProbe		old_probe = {.stop_on_call = false};
	FdProbe		new_probe = {.stop_on_call = true};
	int			old_pipe[2];
	int			new_pipe[2];
	int			watch_rc;
	bool		stopped;

	make_pipe(old_pipe);
	make_pipe(new_pipe);
	loop_watch(loop, old_pipe[0], EPOLLIN, fd_probe_record, &old_probe);
	close(old_pipe[0]);			/* closed while watched: epoll forgets it */
	dup3(new_pipe[0], old_pipe[0], O_CLOEXEC);	/* a new file, same number */
	write_byte(new_pipe[1]);
	watch_rc = loop_watch(loop, old_pipe[0], EPOLLIN, fd_probe_record, &new_probe);
	stopped = run_until_stopped(loop);
	UNIT_CHECK(watch_rc == 0 && stopped && new_probe.calls == 1 && old_probe.calls == 0,
			   "an fd closed while watched and then reopened can be watched again "
			   "without unwatching it first");

	loop_unwatch(loop, old_pipe[0]);
	close(old_pipe[0]);
	close(old_pipe[1]);
	close(new_pipe[0]);
	close(new_pipe[1]);
	loop_destroy(loop);
}

/*
 * Two readable pipes in one epoll batch.  Whichever handler runs first does
 * something to the other pipe's read end (the victim), whose event is then
 * still pending in the batch.
 */
typedef enum StaleRaceAction
{
	STALE_RACE_CLOSE,			/* unwatch and close the victim */
	STALE_RACE_REOPEN,			/* ... then dup an empty pipe onto its number
								 * and watch that */
	STALE_RACE_RETARGET			/* watch the victim for EPOLLOUT only, with a
								 * new handler */
} StaleRaceAction;

typedef struct StaleRace
{
	StaleRaceAction action;
	int			read_ends[2];
	int			write_ends[2];
	int			first_calls;	/* calls of the handler on the original pipes */
	int			victim_fd;
	int			spare[2];		/* empty pipe dup'ed onto the victim's number */
	int			second_calls;	/* calls of the victim's new handler */
} StaleRace;

static void
stale_race_second(Loop *loop, int fd, uint32_t events, void *arg)
{
	StaleRace  *race = arg;

	(void) loop;
	(void) fd;
	(void) events;
	race->second_calls++;
}

static void
stale_race_first(Loop *loop, int fd, uint32_t events, void *arg)
{
	StaleRace  *race = arg;

	(void) events;
	race->first_calls++;
	if (race->first_calls > 1)
		return;
	race->victim_fd = fd == race->read_ends[0] ? race->read_ends[1] : race->read_ends[0];
	if (race->action == STALE_RACE_RETARGET)
	{
		loop_watch(loop, race->victim_fd, EPOLLOUT, stale_race_second, race);
		return;
	}
	loop_unwatch(loop, race->victim_fd);
	close(race->victim_fd);
	if (race->action == STALE_RACE_REOPEN)
	{
		if (dup3(race->spare[0], race->victim_fd, O_CLOEXEC) < 0)
			return;
		loop_watch(loop, race->victim_fd, EPOLLIN, stale_race_second, race);
	}
}

/* Run the race once; true when both pipes were watched and the loop ran. */
static bool
stale_race_run(StaleRace *race)
{
	Loop	   *loop = test_loop_create();
	bool		ran = true;

	for (int i = 0; i < 2; i++)
	{
		int			fds[2];

		make_pipe(fds);
		race->read_ends[i] = fds[0];
		race->write_ends[i] = fds[1];
		write_byte(fds[1]);
		if (loop_watch(loop, fds[0], EPOLLIN, stale_race_first, race) < 0)
			ran = false;
	}
	if (race->action == STALE_RACE_REOPEN)
		make_pipe(race->spare);
	if (run_one_iteration(loop) != 0)
		ran = false;

	for (int i = 0; i < 2; i++)
	{
		loop_unwatch(loop, race->read_ends[i]);
		close(race->read_ends[i]);
		close(race->write_ends[i]);
	}
	if (race->action == STALE_RACE_REOPEN)
	{
		close(race->spare[0]);
		close(race->spare[1]);
	}
	loop_destroy(loop);
	return ran;
}

static void
test_stale_events_not_dispatched(void)
{
	StaleRace	closed = {.action = STALE_RACE_CLOSE};
	StaleRace	reopened = {.action = STALE_RACE_REOPEN};
	StaleRace	retargeted = {.action = STALE_RACE_RETARGET};
	bool		closed_ran = stale_race_run(&closed);
	bool		reopened_ran = stale_race_run(&reopened);
	bool		retargeted_ran = stale_race_run(&retargeted);

	UNIT_CHECK(closed_ran && closed.first_calls == 1,
			   "a handler that unwatches and closes another fd with an event pending "
			   "in the same batch: that stale event is not dispatched");
	UNIT_CHECK(reopened_ran && reopened.first_calls == 1 &&
			   reopened.second_calls == 0,
			   "an fd closed, reopened and watched again within one batch does not get "
			   "the old fd's pending event (the watch generation differs)");
	UNIT_CHECK(retargeted_ran && retargeted.first_calls == 1 &&
			   retargeted.second_calls == 0,
			   "an fd changed within a batch to EPOLLOUT only does not get its pending "
			   "EPOLLIN event");
}

static void
test_modify_events(void)
{
	Loop	   *loop = test_loop_create();
	FdProbe		reading = {.stop_on_call = false};
	FdProbe		writing = {.stop_on_call = true};
	int			fds[2];
	int			run_rc;
	int			watch_rc;
	bool		stopped;

	make_pipe(fds);
	loop_watch(loop, fds[1], EPOLLIN, fd_probe_record, &reading);
	run_rc = run_one_iteration(loop);
	UNIT_CHECK(run_rc == 0 && reading.calls == 0,
			   "a pipe's write end watched for EPOLLIN only is not reported");
	watch_rc = loop_watch(loop, fds[1], EPOLLOUT, fd_probe_record, &writing);
	UNIT_CHECK(watch_rc == 0, "watching an fd that is already watched modifies it");
	stopped = run_until_stopped(loop);
	UNIT_CHECK(stopped && writing.calls == 1 &&
			   (writing.events & EPOLLOUT) != 0 && reading.calls == 0,
			   "after changing to EPOLLOUT the write end is reported writable to the new handler");

	loop_unwatch(loop, fds[1]);
	close(fds[0]);
	close(fds[1]);
	loop_destroy(loop);
}

/* ---------------------------------------------------------------------
 * Timers
 * ---------------------------------------------------------------------
 */

static void
test_timers_fire_in_deadline_then_start_order(void)
{
	Loop	   *loop = test_loop_create();
	bool		stopped;
	FireLog		log = {.stop_at_count = 5};
	LoggedTimer timers[5];
	const uint64_t delays[5] = {6, 3, 1, 3, 3};
	const int	expected[5] = {2, 1, 3, 4, 0};

	for (int i = 0; i < 5; i++)
	{
		logged_timer_init(&timers[i], i, &log);
		loop_timer_start(loop, &timers[i].timer, delays[i]);
	}
	stopped = run_until_stopped(loop);
	UNIT_CHECK(stopped && fire_log_is(&log, expected, 5),
			   "timers fire in deadline order, and those with equal deadlines in start order");
	loop_destroy(loop);
}

static void
test_stopped_timer_does_not_fire(void)
{
	Loop	   *loop = test_loop_create();
	bool		stopped;
	FireLog		log = {.stop_at_count = 1};
	LoggedTimer cancelled;
	LoggedTimer later;
	LoopTimer	zeroed;
	const int	expected[1] = {2};

	memset(&zeroed, 0, sizeof(zeroed));
	UNIT_CHECK(!loop_timer_active(&zeroed),
			   "a zero-initialised timer is not active");
	loop_timer_stop(loop, &zeroed);
	UNIT_CHECK(!loop_timer_active(&zeroed),
			   "stopping a timer that never ran is harmless");

	logged_timer_init(&cancelled, 1, &log);
	logged_timer_init(&later, 2, &log);
	loop_timer_start(loop, &cancelled.timer, 1);
	loop_timer_start(loop, &later.timer, 3);
	UNIT_CHECK(loop_timer_active(&cancelled.timer), "a started timer is active");
	loop_timer_stop(loop, &cancelled.timer);
	UNIT_CHECK(!loop_timer_active(&cancelled.timer) && cancelled.timer.heap_index == SIZE_MAX,
			   "a stopped timer is idle (heap_index SIZE_MAX)");
	stopped = run_until_stopped(loop);
	UNIT_CHECK(stopped && fire_log_is(&log, expected, 1),
			   "a timer stopped before its deadline never fires; a later one still does");
	UNIT_CHECK(!loop_timer_active(&later.timer), "a timer that has fired is idle");
	loop_destroy(loop);
}

static void
test_restart_moves_timer(void)
{
	Loop	   *loop = test_loop_create();
	bool		stopped;
	FireLog		log = {.stop_at_count = 3};
	LoggedTimer timers[3];
	const uint64_t delays[3] = {1, 5, 10};
	const int	expected[3] = {2, 1, 0};

	for (int i = 0; i < 3; i++)
	{
		logged_timer_init(&timers[i], i, &log);
		loop_timer_start(loop, &timers[i].timer, delays[i]);
	}
	loop_timer_start(loop, &timers[0].timer, 8);	/* first moves last */
	loop_timer_start(loop, &timers[2].timer, 2);	/* last moves first */
	stopped = run_until_stopped(loop);
	UNIT_CHECK(stopped && fire_log_is(&log, expected, 3),
			   "restarting a running timer moves it, earlier or later, to its new deadline");
	loop_destroy(loop);
}

/* Fires `limit` times, restarting itself, then stops the loop. */
typedef struct Repeater
{
	LoopTimer	timer;
	uint64_t	delay_ms;
	int			limit;
	int			fires;
	uint64_t	fired_at[8];
} Repeater;

static void
repeater_fire(Loop *loop, LoopTimer *timer, void *arg)
{
	Repeater   *repeater = arg;

	if (repeater->fires < 8)
		repeater->fired_at[repeater->fires] = loop_now_ms(loop);
	repeater->fires++;
	if (repeater->fires < repeater->limit)
		loop_timer_start(loop, timer, repeater->delay_ms);
	else
		loop_stop(loop);
}

static void
test_timer_restarted_from_own_handler(void)
{
	Loop	   *loop = test_loop_create();
	Repeater	repeater = {.delay_ms = 2, .limit = 3};
	bool		stopped;

	loop_timer_init(&repeater.timer, repeater_fire, &repeater);
	loop_timer_start(loop, &repeater.timer, 2);
	stopped = run_until_stopped(loop);
	UNIT_CHECK(stopped && repeater.fires == 3,
			   "a timer restarted from its own handler fires again, and loop_stop "
			   "from a timer makes loop_run return 0");
	UNIT_CHECK(repeater.fired_at[1] >= repeater.fired_at[0] + 2 &&
			   repeater.fired_at[2] >= repeater.fired_at[1] + 2,
			   "each restart fires its delay after the previous firing, not at once");
	UNIT_CHECK(!loop_timer_active(&repeater.timer),
			   "the timer is idle once its handler stops restarting it");
	loop_destroy(loop);
}

/* The heap test: many timers sharing one run log. */
#define HEAP_TIMERS 1000
#define HEAP_MAX_DELAY_MS 40

typedef struct HeapRun
{
	int			fired[HEAP_TIMERS];
	int			fired_count;
	int			stop_at_count;
} HeapRun;

typedef struct HeapTimer
{
	LoopTimer	timer;
	int			index;
	uint64_t	delay_ms;
	bool		stopped;
	HeapRun    *run;
} HeapTimer;

typedef struct HeapExpectation
{
	uint64_t	delay_ms;
	int			index;
} HeapExpectation;

static void
heap_timer_fire(Loop *loop, LoopTimer *timer, void *arg)
{
	HeapTimer  *heap_timer = arg;
	HeapRun    *run = heap_timer->run;

	(void) timer;
	if (run->fired_count < HEAP_TIMERS)
		run->fired[run->fired_count] = heap_timer->index;
	run->fired_count++;
	if (run->fired_count == run->stop_at_count)
		loop_stop(loop);
}

static int
heap_expectation_compare(const void *a, const void *b)
{
	const HeapExpectation *x = a;
	const HeapExpectation *y = b;

	if (x->delay_ms != y->delay_ms)
		return x->delay_ms < y->delay_ms ? -1 : 1;
	return x->index < y->index ? -1 : (x->index > y->index);
}

/* xorshift32: a fixed seed keeps the test deterministic. */
static uint32_t
next_random(uint32_t *state)
{
	uint32_t	x = *state;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return x;
}

static void
test_many_timers_keep_heap_order(void)
{
	Loop	   *loop = test_loop_create();
	bool		stopped;
	HeapRun    *run = calloc(1, sizeof(*run));
	HeapTimer  *timers = calloc(HEAP_TIMERS, sizeof(*timers));
	HeapExpectation *expected = calloc(HEAP_TIMERS, sizeof(*expected));
	int		   *order = calloc(HEAP_TIMERS, sizeof(*order));
	uint32_t	random_state = 2463534242u;
	int			expected_count = 0;
	bool		stopped_fired = false;
	bool		still_active = false;
	bool		in_order = true;

	if (run == NULL || timers == NULL || expected == NULL || order == NULL)
	{
		printf("Bail out! out of memory\n");
		exit(1);
	}
	run->stop_at_count = HEAP_TIMERS / 2;
	for (int i = 0; i < HEAP_TIMERS; i++)
	{
		timers[i].index = i;
		timers[i].run = run;
		timers[i].delay_ms = next_random(&random_state) % (HEAP_MAX_DELAY_MS + 1);
		loop_timer_init(&timers[i].timer, heap_timer_fire, &timers[i]);
		loop_timer_start(loop, &timers[i].timer, timers[i].delay_ms);
		order[i] = i;
	}

	/* stop a random half, in random order, so removals hit every heap level */
	for (int i = HEAP_TIMERS - 1; i > 0; i--)
	{
		int			j = (int) (next_random(&random_state) % (uint32_t) (i + 1));
		int			swap = order[i];

		order[i] = order[j];
		order[j] = swap;
	}
	for (int i = 0; i < HEAP_TIMERS / 2; i++)
	{
		timers[order[i]].stopped = true;
		loop_timer_stop(loop, &timers[order[i]].timer);
	}
	for (int i = 0; i < HEAP_TIMERS; i++)
	{
		if (timers[i].stopped)
			continue;
		expected[expected_count].delay_ms = timers[i].delay_ms;
		expected[expected_count].index = i;
		expected_count++;
	}
	qsort(expected, (size_t) expected_count, sizeof(*expected), heap_expectation_compare);

	stopped = run_until_stopped(loop);
	UNIT_CHECK(stopped && run->fired_count == HEAP_TIMERS / 2,
			   "of %d timers with random delays, the %d not stopped all fire",
			   HEAP_TIMERS, HEAP_TIMERS / 2);
	for (int i = 0; i < run->fired_count && i < HEAP_TIMERS; i++)
	{
		if (timers[run->fired[i]].stopped)
			stopped_fired = true;
		if (i >= expected_count || run->fired[i] != expected[i].index)
			in_order = false;
	}
	for (int i = 0; i < HEAP_TIMERS; i++)
		if (loop_timer_active(&timers[i].timer))
			still_active = true;
	UNIT_CHECK(!stopped_fired, "none of the stopped timers fires");
	UNIT_CHECK(in_order && run->fired_count == expected_count,
			   "the rest fire exactly in (delay, start) order");
	UNIT_CHECK(!still_active, "no timer is left active afterwards");

	loop_destroy(loop);
	free(order);
	free(expected);
	free(timers);
	free(run);
}

/*
 * A timer that restarts itself with delay 0 and, on its third firing, makes
 * a pipe readable; the pipe's handler stops the loop.
 */
typedef struct Spinner
{
	LoopTimer	timer;
	int			fires;
	int			write_fd;
	bool		fd_handled;
	int			fires_when_fd_handled;
} Spinner;

static void
spinner_fire(Loop *loop, LoopTimer *timer, void *arg)
{
	Spinner    *spinner = arg;

	spinner->fires++;
	if (spinner->fires == 3)
		write_byte(spinner->write_fd);
	if (spinner->fires > 1000)
	{
		loop_stop(loop);		/* starved: give up rather than hang */
		return;
	}
	loop_timer_start(loop, timer, 0);
}

static void
spinner_readable(Loop *loop, int fd, uint32_t events, void *arg)
{
	Spinner    *spinner = arg;

	(void) fd;
	(void) events;
	spinner->fd_handled = true;
	spinner->fires_when_fd_handled = spinner->fires;
	loop_stop(loop);
}

static void
test_zero_delay_timer_does_not_starve_fds(void)
{
	Loop	   *loop = test_loop_create();
	bool		stopped;
	Spinner		spinner = {.fires = 0};
	int			fds[2];

	make_pipe(fds);
	spinner.write_fd = fds[1];
	loop_watch(loop, fds[0], EPOLLIN, spinner_readable, &spinner);
	loop_timer_init(&spinner.timer, spinner_fire, &spinner);
	loop_timer_start(loop, &spinner.timer, 0);
	stopped = run_until_stopped(loop);
	UNIT_CHECK(stopped && spinner.fd_handled &&
			   spinner.fires_when_fd_handled == 3,
			   "a handler restarting its timer with delay 0 does not starve fd events: "
			   "the fd is handled in the next iteration");
	UNIT_CHECK(spinner.fires == 4,
			   "such a timer fires once per iteration, not repeatedly within one");

	loop_timer_stop(loop, &spinner.timer);
	loop_unwatch(loop, fds[0]);
	close(fds[0]);
	close(fds[1]);
	loop_destroy(loop);
}

/* ---------------------------------------------------------------------
 * Signals
 * ---------------------------------------------------------------------
 */

typedef struct SignalProbe
{
	int			usr1;
	int			usr2;
	int			misrouted;
	bool		arg_passed;
} SignalProbe;

static void
signal_probe_usr1(Loop *loop, int signo, void *arg)
{
	SignalProbe *probe = arg;

	if (signo == SIGUSR1)
		probe->usr1++;
	else
		probe->misrouted++;
	probe->arg_passed = true;
	if (probe->usr1 > 0 && probe->usr2 > 0)
		loop_stop(loop);
}

static void
signal_probe_usr2(Loop *loop, int signo, void *arg)
{
	SignalProbe *probe = arg;

	if (signo == SIGUSR2)
		probe->usr2++;
	else
		probe->misrouted++;
	if (probe->usr1 > 0 && probe->usr2 > 0)
		loop_stop(loop);
}

static void
test_signals_arrive_through_loop(void)
{
	Loop	   *loop = test_loop_create();
	SignalProbe probe = {.usr1 = 0};
	int			usr1_rc;
	int			usr2_rc;
	int			kill_rc;
	int			kill_errno;
	bool		stopped;

	usr1_rc = loop_on_signal(loop, SIGUSR1, signal_probe_usr1, &probe);
	usr2_rc = loop_on_signal(loop, SIGUSR2, signal_probe_usr2, &probe);
	UNIT_CHECK(usr1_rc == 0 && usr2_rc == 0,
			   "loop_on_signal takes over SIGUSR1 and SIGUSR2");
	kill_rc = loop_on_signal(loop, SIGKILL, signal_probe_usr1, &probe);
	kill_errno = errno;
	UNIT_CHECK(kill_rc == -1 && kill_errno == EINVAL,
			   "SIGKILL cannot be taken over (EINVAL)");
	raise(SIGUSR1);
	raise(SIGUSR2);
	UNIT_CHECK(probe.usr1 == 0 && probe.usr2 == 0,
			   "a raised signal is not handled asynchronously (nor does it kill the process)");
	stopped = run_until_stopped(loop);
	UNIT_CHECK(stopped && probe.usr1 == 1 && probe.usr2 == 1 &&
			   probe.misrouted == 0 && probe.arg_passed,
			   "the loop delivers SIGUSR1 and SIGUSR2 once each, each to its own handler");
	loop_destroy(loop);
}

/* ---------------------------------------------------------------------
 * Idle handler, clock and failures
 * ---------------------------------------------------------------------
 */

typedef struct IdleCount
{
	Repeater	repeater;		/* fires with delay 0, one per iteration */
	int			calls;
	bool		after_timers;	/* every call saw that iteration's firing */
} IdleCount;

static void
idle_count(Loop *loop, void *arg)
{
	IdleCount  *idle = arg;

	(void) loop;
	idle->calls++;
	if (idle->repeater.fires != idle->calls)
		idle->after_timers = false;
}

static void
test_idle_runs_once_per_iteration(void)
{
	Loop	   *loop = test_loop_create();
	bool		stopped;
	int			run_rc;
	IdleCount	idle = {.repeater = {.delay_ms = 0, .limit = 5}, .after_timers = true};

	loop_on_idle(loop, idle_count, &idle);
	loop_timer_init(&idle.repeater.timer, repeater_fire, &idle.repeater);
	loop_timer_start(loop, &idle.repeater.timer, 0);
	stopped = run_until_stopped(loop);
	UNIT_CHECK(stopped && idle.repeater.fires == 5 && idle.calls == 5,
			   "the idle handler runs once per iteration (5 iterations, 5 calls), "
			   "including the iteration that calls loop_stop");
	UNIT_CHECK(idle.after_timers,
			   "the idle handler runs after the iteration's timers have fired");
	loop_on_idle(loop, NULL, NULL);
	run_rc = run_one_iteration(loop);
	UNIT_CHECK(run_rc == 0 && idle.calls == 5,
			   "loop_on_idle with NULL removes the idle handler");
	loop_destroy(loop);
}

typedef struct ClockProbe
{
	LoopTimer	timer;
	uint64_t	fired_at;
	uint64_t	after_busy;
} ClockProbe;

static void
clock_probe_fire(Loop *loop, LoopTimer *timer, void *arg)
{
	ClockProbe *probe = arg;
	uint64_t	real_start = clock_ms();

	(void) timer;
	probe->fired_at = loop_now_ms(loop);
	while (clock_ms() < real_start + 2)
		;						/* let the real clock move on */
	probe->after_busy = loop_now_ms(loop);
	loop_stop(loop);
}

static void
test_now_is_monotonic_and_cached(void)
{
	uint64_t	real_before = clock_ms();	/* no later than the loop's first reading */
	Loop	   *loop = test_loop_create();
	bool		stopped;
	ClockProbe	probe = {.fired_at = 0};
	uint64_t	before = loop_now_ms(loop);

	loop_timer_init(&probe.timer, clock_probe_fire, &probe);
	loop_timer_start(loop, &probe.timer, 20);
	stopped = run_until_stopped(loop);
	UNIT_CHECK(stopped && probe.fired_at >= before + 20 &&
			   clock_ms() >= real_before + 20,
			   "a 20 ms timer fires once loop_now_ms has advanced by at least 20 ms");
	UNIT_CHECK(probe.after_busy == probe.fired_at,
			   "loop_now_ms is read once per iteration: it stays put within a callback");
	UNIT_CHECK(loop_now_ms(loop) >= probe.fired_at && probe.fired_at >= before,
			   "loop_now_ms never goes backwards");
	loop_destroy(loop);
}

/* The lowest free fd number: the one the next open, pipe or epoll gets. */
static int
lowest_free_fd(void)
{
	int			fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	if (fd >= 0)
		close(fd);
	return fd;
}

static void
test_create_reports_failure(void)
{
	struct rlimit saved;
	struct rlimit tight;
	char		err[256] = "";
	Loop	   *loop = NULL;
	int			next_fd = lowest_free_fd();

	if (next_fd < 0 || getrlimit(RLIMIT_NOFILE, &saved) < 0)
	{
		UNIT_CHECK(false, "set up: find the next fd and the fd limit");
		return;
	}
	tight = saved;
	tight.rlim_cur = (rlim_t) next_fd;	/* no new fd can be opened */
	if (setrlimit(RLIMIT_NOFILE, &tight) == 0)
	{
		loop = loop_create(err, sizeof(err));
		setrlimit(RLIMIT_NOFILE, &saved);
	}
	UNIT_CHECK(loop == NULL && strncmp(err, "epoll_create1: ", 15) == 0,
			   "loop_create with no fd to spare returns NULL and says why (\"%s\")", err);
	loop_destroy(loop);
}

/* From a timer, replace the loop's epoll fd with a file that is not epoll. */
typedef struct EpollSabotage
{
	LoopTimer	timer;
	int			epoll_fd;
	int			not_epoll_fd;
} EpollSabotage;

static void
epoll_sabotage(Loop *loop, LoopTimer *timer, void *arg)
{
	EpollSabotage *sabotage = arg;

	(void) loop;
	(void) timer;
	dup3(sabotage->not_epoll_fd, sabotage->epoll_fd, O_CLOEXEC);
}

static void
test_run_reports_epoll_failure(void)
{
	EpollSabotage sabotage;
	Guard		guard = {.expired = false};
	char		link[64] = "";
	char		path[64];
	Loop	   *loop;
	ssize_t		length;
	int			rc;

	sabotage.epoll_fd = lowest_free_fd();
	loop = test_loop_create();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", sabotage.epoll_fd);
	length = readlink(path, link, sizeof(link) - 1);
	if (length > 0)
		link[length] = '\0';
	if (strstr(link, "eventpoll") == NULL)
	{
		UNIT_CHECK(false, "set up: find the loop's epoll fd (fd %d is \"%s\")",
				   sabotage.epoll_fd, link);
		loop_destroy(loop);
		return;
	}

	sabotage.not_epoll_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	loop_timer_init(&sabotage.timer, epoll_sabotage, &sabotage);
	loop_timer_start(loop, &sabotage.timer, 0);
	loop_timer_init(&guard.timer, guard_expire, &guard);
	loop_timer_start(loop, &guard.timer, GUARD_MS);
	errno = 0;
	rc = loop_run(loop);
	UNIT_CHECK(rc == -1 && errno == EINVAL && !guard.expired,
			   "loop_run returns -1 with errno set when epoll_wait fails (errno %d)", errno);
	loop_timer_stop(loop, &guard.timer);
	close(sabotage.not_epoll_fd);
	loop_destroy(loop);			/* closes the /dev/null now on the epoll number */
}

int
main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);	/* keep what passed if alarm() ends us */
	alarm(10);					/* a hung loop kills the test rather than CI */

	test_readable_pipe_runs_handler();
	test_unwatch_stops_delivery();
	test_rewatch_after_close_without_unwatch();
	test_stale_events_not_dispatched();
	test_modify_events();

	test_timers_fire_in_deadline_then_start_order();
	test_stopped_timer_does_not_fire();
	test_restart_moves_timer();
	test_timer_restarted_from_own_handler();
	test_many_timers_keep_heap_order();
	test_zero_delay_timer_does_not_starve_fds();

	test_signals_arrive_through_loop();

	test_idle_runs_once_per_iteration();
	test_now_is_monotonic_and_cached();
	test_create_reports_failure();
	test_run_reports_epoll_failure();

	return unit_done();
}
