/*
 * loop.c — the bridge's one event loop: an epoll instance for file
 * descriptors, a binary min-heap of millisecond timers, and a signalfd that
 * turns signals into ordinary events.
 *
 * One iteration of loop_run:
 *
 *   1. epoll_wait, for no longer than until the earliest timer deadline;
 *   2. read CLOCK_MONOTONIC once; loop_now_ms returns that value until the
 *      next iteration, so every callback of an iteration sees the same time;
 *   3. dispatch the fd events of that wait (the signalfd is one of them);
 *   4. fire the timers that were due when the firing pass began;
 *   5. call the idle handler.
 *
 * Stale events.  epoll_wait returns a batch, and a callback for one event
 * may unwatch, close, reopen and even watch again the fd of a later event
 * in the same batch.  Each watch is therefore identified by its fd and a
 * per-fd generation, both packed into epoll's 64-bit user data, and an
 * event is dispatched only when the table still holds a watch on that fd
 * with the same generation.  The generation advances whenever a watch ends.
 *
 * Timers.  A timer lives in its owner; the loop keeps only a pointer to it
 * in an array-backed heap ordered by (deadline, sequence), and the timer
 * records its own heap position so that stopping or restarting it costs
 * O(log n).  The sequence number, taken from a loop-wide counter at every
 * start, makes timers with equal deadlines fire in the order they were
 * started, and bounds a firing pass: a timer (re)started during the pass
 * waits for the next iteration even if it is already due, so a handler that
 * restarts itself with delay 0 cannot keep the loop away from epoll.
 *
 * This file never blocks (apart from epoll_wait itself), never starts a
 * thread and keeps no global state: everything lives in struct Loop.  It
 * never holds a pointer into the watch table or the heap across a callback,
 * because a callback may grow either.
 */
#include "loop.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* Most fd events taken from one epoll_wait; the rest wait one iteration. */
#define LOOP_EVENTS_PER_WAIT 256

/*
 * The longest epoll_wait sleeps while a timer is pending.  Deadlines are
 * re-examined at least this often, which bounds the cost of any surprise in
 * the deadline arithmetic; with no timer at all the loop sleeps until an
 * event arrives.
 */
#define LOOP_MAX_WAIT_MS 60000

/* First sizes of the two growable tables; both double when full. */
#define LOOP_WATCH_SLOTS_INITIAL 64
#define LOOP_TIMER_HEAP_INITIAL 64

/* Signal numbers 1 .. LOOP_SIGNAL_SLOTS - 1 (on Linux, all 64 signals). */
#define LOOP_SIGNAL_SLOTS NSIG

/* signalfd records read per read(2). */
#define LOOP_SIGNALS_PER_READ 16

/* Event flags that would break the level-triggered, one-watch-per-fd model. */
#ifdef EPOLLEXCLUSIVE
#define LOOP_UNSUPPORTED_EVENTS (EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE)
#else
#define LOOP_UNSUPPORTED_EVENTS (EPOLLET | EPOLLONESHOT)
#endif

/* One slot of the watch table, indexed by fd. */
typedef struct LoopWatch
{
	bool		watched;		/* registered with epoll by loop_watch */
	uint32_t	generation;		/* identifies this watch among all on the fd */
	uint32_t	events;			/* what the caller asked for */
	LoopFdHandler handler;
	void	   *arg;
} LoopWatch;

/* What to call when a signal arrives through the signalfd. */
typedef struct LoopSignal
{
	LoopSignalHandler handler;	/* NULL: signal not taken over by the loop */
	void	   *arg;
} LoopSignal;

struct Loop
{
	int			epoll_fd;

	LoopWatch  *watches;		/* indexed by fd */
	size_t		watch_slots;	/* length of watches */
	struct epoll_event ready[LOOP_EVENTS_PER_WAIT];

	LoopTimer **timer_heap;		/* min-heap by (deadline_ms, sequence) */
	size_t		timer_count;
	size_t		timer_capacity;
	uint64_t	next_timer_sequence;	/* starts at 1; 0 means never started */

	uint64_t	now_ms;			/* CLOCK_MONOTONIC, read once per iteration */

	int			signal_fd;		/* -1 until the first loop_on_signal */
	sigset_t	signal_mask;	/* the signals signal_fd reports */
	LoopSignal	signals[LOOP_SIGNAL_SLOTS];

	void		(*idle_handler) (Loop *loop, void *arg);
	void	   *idle_arg;

	bool		stop_requested;
};

static void loop_read_signals(Loop *loop, int fd, uint32_t events, void *arg);

/* Write "what: strerror(errnum)" into err, when the caller gave a buffer. */
static void
loop_report_error(char *err, size_t errlen, const char *what, int errnum)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s: %s", what, strerror(errnum));
}

/*
 * Read CLOCK_MONOTONIC into loop->now_ms.  Returns 0, or -1 with errno set
 * (and now_ms unchanged), which does not happen on Linux.
 */
static int
loop_update_now(Loop *loop)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		return -1;
	loop->now_ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
	return 0;
}

Loop *
loop_create(char *err, size_t errlen)
{
	Loop	   *loop;

	loop = calloc(1, sizeof(*loop));
	if (loop == NULL)
	{
		loop_report_error(err, errlen, "allocating the event loop", ENOMEM);
		return NULL;
	}
	loop->signal_fd = -1;
	sigemptyset(&loop->signal_mask);
	loop->next_timer_sequence = 1;

	if (loop_update_now(loop) < 0)
	{
		loop_report_error(err, errlen, "clock_gettime(CLOCK_MONOTONIC)", errno);
		goto fail_free;
	}

	loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epoll_fd < 0)
	{
		loop_report_error(err, errlen, "epoll_create1", errno);
		goto fail_free;
	}
	return loop;

fail_free:
	free(loop);
	return NULL;
}

/*
 * Close the epoll and signal descriptors and free the loop's tables.  Timers
 * still in the heap belong to their owners and are not freed; they are left
 * idle (loop_timer_active false) so that no owner is left holding a heap
 * position in a loop that no longer exists.  Signals blocked by
 * loop_on_signal stay blocked: one arriving during shutdown stays pending
 * instead of killing the process half-way through its cleanup.  Must not be
 * called from inside loop_run.
 */
void
loop_destroy(Loop *loop)
{
	if (loop == NULL)
		return;
	for (size_t i = 0; i < loop->timer_count; i++)
		loop->timer_heap[i]->heap_index = SIZE_MAX;
	if (loop->signal_fd >= 0)
		close(loop->signal_fd);
	close(loop->epoll_fd);
	free(loop->timer_heap);
	free(loop->watches);
	free(loop);
}

/* ---------------------------------------------------------------------
 * File descriptors
 * ---------------------------------------------------------------------
 */

/* epoll user data naming one watch: generation in the high half, fd low. */
static uint64_t
watch_token(int fd, uint32_t generation)
{
	return ((uint64_t) generation << 32) | (uint32_t) fd;
}

/*
 * Make the watch table long enough to index fd, zeroing new slots.  Returns
 * 0, or -1 with errno ENOMEM (the table is then unchanged).
 */
static int
watch_table_reserve(Loop *loop, int fd)
{
	size_t		needed = (size_t) fd + 1;
	size_t		slots;
	LoopWatch  *grown;

	if (needed <= loop->watch_slots)
		return 0;
	slots = loop->watch_slots > 0 ? loop->watch_slots : LOOP_WATCH_SLOTS_INITIAL;
	while (slots < needed)
		slots *= 2;
	grown = realloc(loop->watches, slots * sizeof(*grown));
	if (grown == NULL)
	{
		errno = ENOMEM;
		return -1;
	}
	memset(grown + loop->watch_slots, 0,
		   (slots - loop->watch_slots) * sizeof(*grown));
	loop->watches = grown;
	loop->watch_slots = slots;
	return 0;
}

/*
 * Watch fd, level-triggered; on an fd already watched, replace its events,
 * handler and arg.  EPOLLERR and EPOLLHUP are always reported.  An fd that
 * was closed while watched (and perhaps reopened) may be watched again
 * without unwatching it first.  Returns 0, or -1 with errno set: EBADF for a
 * negative fd, EINVAL for a NULL handler or for EPOLLET/EPOLLONESHOT/
 * EPOLLEXCLUSIVE, or whatever epoll_ctl reports.
 */
int
loop_watch(Loop *loop, int fd, uint32_t events, LoopFdHandler handler, void *arg)
{
	struct epoll_event request;
	LoopWatch  *watch;

	if (fd < 0)
	{
		errno = EBADF;
		return -1;
	}
	if (handler == NULL || (events & (uint32_t) LOOP_UNSUPPORTED_EVENTS) != 0)
	{
		errno = EINVAL;
		return -1;
	}
	if (watch_table_reserve(loop, fd) < 0)
		return -1;
	watch = &loop->watches[fd];

	memset(&request, 0, sizeof(request));
	request.events = events;
	if (watch->watched)
	{
		request.data.u64 = watch_token(fd, watch->generation);
		if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, fd, &request) == 0)
			goto watched;
		if (errno != ENOENT)
			return -1;

		/*
		 * The fd was closed since it was watched, which removed it from
		 * epoll, and has been reopened: the old watch is over.
		 */
		watch->watched = false;
		watch->generation++;
	}
	request.data.u64 = watch_token(fd, watch->generation);
	if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &request) < 0)
		return -1;

watched:
	watch->watched = true;
	watch->events = events;
	watch->handler = handler;
	watch->arg = arg;
	return 0;
}

/*
 * Stop watching fd; events for it still pending in the current batch are
 * dropped.  Callers may close fd before unwatching it: closing removes it
 * from epoll, so the ENOENT or EBADF that epoll_ctl then reports is not an
 * error.  Harmless when fd is not watched.  Returns 0, or -1 with errno set
 * if epoll_ctl fails otherwise (the watch is forgotten all the same).
 */
int
loop_unwatch(Loop *loop, int fd)
{
	struct epoll_event unused;
	LoopWatch  *watch;
	int			result = 0;

	if (fd < 0 || (size_t) fd >= loop->watch_slots || !loop->watches[fd].watched)
		return 0;

	/* Kernels before 2.6.9 wanted a non-NULL event even for DEL. */
	memset(&unused, 0, sizeof(unused));
	if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, fd, &unused) < 0 &&
		errno != ENOENT && errno != EBADF)
		result = -1;

	watch = &loop->watches[fd];
	watch->watched = false;
	watch->generation++;
	watch->events = 0;
	watch->handler = NULL;
	watch->arg = NULL;
	return result;
}

/*
 * Call the handler of each event of the last epoll_wait whose watch still
 * exists, with the events it asked for (plus EPOLLERR and EPOLLHUP).
 */
static void
loop_dispatch_fd_events(Loop *loop, int nready)
{
	for (int i = 0; i < nready; i++)
	{
		uint64_t	token = loop->ready[i].data.u64;
		int			fd = (int) (token & UINT32_MAX);
		uint32_t	generation = (uint32_t) (token >> 32);
		LoopWatch  *watch;
		uint32_t	events;

		if ((size_t) fd >= loop->watch_slots)
			continue;
		watch = &loop->watches[fd];
		if (!watch->watched || watch->generation != generation)
			continue;			/* unwatched earlier in this batch */

		/* A callback may have changed the events since the wait. */
		events = loop->ready[i].events & (watch->events | EPOLLERR | EPOLLHUP);
		if (events == 0)
			continue;
		watch->handler(loop, fd, events, watch->arg);
	}
}

/* ---------------------------------------------------------------------
 * Timers
 * ---------------------------------------------------------------------
 */

void
loop_timer_init(LoopTimer *timer, LoopTimerHandler handler, void *arg)
{
	timer->deadline_ms = 0;
	timer->heap_index = SIZE_MAX;
	timer->handler = handler;
	timer->arg = arg;
	timer->sequence = 0;
}

/* Whether a fires before b: earlier deadline, or equal and started first. */
static bool
timer_fires_before(const LoopTimer *a, const LoopTimer *b)
{
	if (a->deadline_ms != b->deadline_ms)
		return a->deadline_ms < b->deadline_ms;
	return a->sequence < b->sequence;
}

/* Put timer at index of the heap and tell it where it is. */
static void
timer_heap_place(Loop *loop, size_t index, LoopTimer *timer)
{
	loop->timer_heap[index] = timer;
	timer->heap_index = index;
}

/* Move the timer at index towards the root until its parent fires first. */
static void
timer_heap_sift_up(Loop *loop, size_t index)
{
	LoopTimer  *timer = loop->timer_heap[index];

	while (index > 0)
	{
		size_t		parent = (index - 1) / 2;

		if (!timer_fires_before(timer, loop->timer_heap[parent]))
			break;
		timer_heap_place(loop, index, loop->timer_heap[parent]);
		index = parent;
	}
	timer_heap_place(loop, index, timer);
}

/* Move the timer at index towards the leaves until it fires before both children. */
static void
timer_heap_sift_down(Loop *loop, size_t index)
{
	LoopTimer  *timer = loop->timer_heap[index];
	size_t		count = loop->timer_count;

	for (;;)
	{
		size_t		child = 2 * index + 1;

		if (child >= count)
			break;
		if (child + 1 < count &&
			timer_fires_before(loop->timer_heap[child + 1], loop->timer_heap[child]))
			child++;
		if (!timer_fires_before(loop->timer_heap[child], timer))
			break;
		timer_heap_place(loop, index, loop->timer_heap[child]);
		index = child;
	}
	timer_heap_place(loop, index, timer);
}

/* Restore heap order around index after the key of the timer there changed. */
static void
timer_heap_fix(Loop *loop, size_t index)
{
	if (index > 0 &&
		timer_fires_before(loop->timer_heap[index], loop->timer_heap[(index - 1) / 2]))
		timer_heap_sift_up(loop, index);
	else
		timer_heap_sift_down(loop, index);
}

/* Whether timer is in this loop's heap (robust against zeroed timers). */
static bool
timer_is_queued(const Loop *loop, const LoopTimer *timer)
{
	return timer->heap_index < loop->timer_count &&
		loop->timer_heap[timer->heap_index] == timer;
}

/* Take a queued timer out of the heap and mark it idle. */
static void
timer_heap_remove(Loop *loop, LoopTimer *timer)
{
	size_t		index = timer->heap_index;
	LoopTimer  *last;

	loop->timer_count--;
	last = loop->timer_heap[loop->timer_count];
	loop->timer_heap[loop->timer_count] = NULL;
	timer->heap_index = SIZE_MAX;
	if (last != timer)
	{
		timer_heap_place(loop, index, last);
		timer_heap_fix(loop, index);
	}
}

/*
 * Make room for one more timer.  loop_timer_start cannot report failure, so
 * running out of memory here ends the process with a message; the heap
 * holds one pointer per running timer and never shrinks, so this happens
 * only when the number of timers reaches a new high.
 */
static void
timer_heap_reserve_one(Loop *loop)
{
	size_t		capacity;
	LoopTimer **grown;

	if (loop->timer_count < loop->timer_capacity)
		return;
	capacity = loop->timer_capacity > 0 ? loop->timer_capacity * 2 : LOOP_TIMER_HEAP_INITIAL;
	grown = realloc(loop->timer_heap, capacity * sizeof(*grown));
	if (grown == NULL)
	{
		fprintf(stderr, "comet-bridge: out of memory growing the timer heap to %zu timers\n",
				capacity);
		abort();
	}
	loop->timer_heap = grown;
	loop->timer_capacity = capacity;
}

/*
 * Start timer to fire once, delay_ms after loop_now_ms; a running timer is
 * rescheduled, and then fires after timers started before it with the same
 * deadline.  The timer must have a handler.  Safe from any callback,
 * including the timer's own handler.
 */
void
loop_timer_start(Loop *loop, LoopTimer *timer, uint64_t delay_ms)
{
	assert(timer->handler != NULL);

	if (delay_ms > UINT64_MAX - loop->now_ms)
		timer->deadline_ms = UINT64_MAX;
	else
		timer->deadline_ms = loop->now_ms + delay_ms;
	timer->sequence = loop->next_timer_sequence++;

	if (timer_is_queued(loop, timer))
	{
		timer_heap_fix(loop, timer->heap_index);
		return;
	}
	timer_heap_reserve_one(loop);
	loop->timer_count++;
	timer_heap_place(loop, loop->timer_count - 1, timer);
	timer_heap_sift_up(loop, loop->timer_count - 1);
}

/* Stop timer so it does not fire; harmless if it is idle.  O(log n). */
void
loop_timer_stop(Loop *loop, LoopTimer *timer)
{
	if (timer_is_queued(loop, timer))
		timer_heap_remove(loop, timer);
	else
		timer->heap_index = SIZE_MAX;
}

/*
 * Whether timer is waiting to fire.  A zero-initialised timer (heap_index 0,
 * sequence 0) is idle: every start gives a timer a sequence of at least 1.
 */
bool
loop_timer_active(const LoopTimer *timer)
{
	return timer->heap_index != SIZE_MAX && timer->sequence != 0;
}

/*
 * Fire, in (deadline, sequence) order, every timer that was already started
 * when this pass began and is due at loop->now_ms.  Each timer leaves the
 * heap before its handler runs, so the handler may restart or stop it, or
 * free its owner.  A timer started during the pass has a deadline of at
 * least now_ms and a sequence of at least pass_start, so it sorts after
 * every timer this pass may fire; meeting it at the top ends the pass.
 */
static void
loop_fire_due_timers(Loop *loop)
{
	uint64_t	pass_start = loop->next_timer_sequence;

	while (loop->timer_count > 0)
	{
		LoopTimer  *timer = loop->timer_heap[0];

		if (timer->deadline_ms > loop->now_ms || timer->sequence >= pass_start)
			break;
		timer_heap_remove(loop, timer);
		timer->handler(loop, timer, timer->arg);
	}
}

/* epoll_wait's timeout: until the earliest deadline, 0 if due, -1 if none. */
static int
loop_wait_timeout_ms(const Loop *loop)
{
	uint64_t	deadline;
	uint64_t	wait_ms;

	if (loop->timer_count == 0)
		return -1;
	deadline = loop->timer_heap[0]->deadline_ms;
	if (deadline <= loop->now_ms)
		return 0;
	wait_ms = deadline - loop->now_ms;
	return wait_ms > LOOP_MAX_WAIT_MS ? LOOP_MAX_WAIT_MS : (int) wait_ms;
}

uint64_t
loop_now_ms(const Loop *loop)
{
	return loop->now_ms;
}

/* ---------------------------------------------------------------------
 * Signals
 * ---------------------------------------------------------------------
 */

/*
 * Block signo for the process and have the loop's signalfd report it to
 * handler; registering a signal again replaces its handler.  SIGKILL and
 * SIGSTOP cannot be taken over.  Returns 0, or -1 with errno set (EINVAL for
 * a bad signal number or NULL handler) and the signal mask as it was.
 */
int
loop_on_signal(Loop *loop, int signo, LoopSignalHandler handler, void *arg)
{
	sigset_t	just_this;
	sigset_t	blocked_before;
	sigset_t	mask;
	int			fd;
	int			saved_errno;

	if (signo <= 0 || signo >= LOOP_SIGNAL_SLOTS ||
		signo == SIGKILL || signo == SIGSTOP || handler == NULL)
	{
		errno = EINVAL;
		return -1;
	}

	sigemptyset(&just_this);
	sigaddset(&just_this, signo);
	if (sigprocmask(SIG_BLOCK, &just_this, &blocked_before) < 0)
		return -1;

	mask = loop->signal_mask;
	sigaddset(&mask, signo);
	fd = signalfd(loop->signal_fd, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		goto fail_unblock;
	if (loop->signal_fd < 0)
	{
		if (loop_watch(loop, fd, EPOLLIN, loop_read_signals, NULL) < 0)
		{
			saved_errno = errno;
			close(fd);
			errno = saved_errno;
			goto fail_unblock;
		}
		loop->signal_fd = fd;
	}

	loop->signal_mask = mask;
	loop->signals[signo].handler = handler;
	loop->signals[signo].arg = arg;
	return 0;

fail_unblock:
	saved_errno = errno;
	if (!sigismember(&blocked_before, signo))
		sigprocmask(SIG_UNBLOCK, &just_this, NULL);
	errno = saved_errno;
	return -1;
}

/*
 * The signalfd's fd handler: read every pending signal and call its
 * handler, in the order the kernel reports them.
 */
static void
loop_read_signals(Loop *loop, int fd, uint32_t events, void *arg)
{
	struct signalfd_siginfo records[LOOP_SIGNALS_PER_READ];

	(void) events;
	(void) arg;
	for (;;)
	{
		ssize_t		nread = read(fd, records, sizeof(records));
		size_t		count;

		if (nread < 0 && errno == EINTR)
			continue;
		if (nread <= 0)
			break;				/* EAGAIN: all read */
		count = (size_t) nread / sizeof(records[0]);
		for (size_t i = 0; i < count; i++)
		{
			uint32_t	signo = records[i].ssi_signo;

			if (signo < LOOP_SIGNAL_SLOTS && loop->signals[signo].handler != NULL)
				loop->signals[signo].handler(loop, (int) signo,
											 loop->signals[signo].arg);
		}
		if (count < LOOP_SIGNALS_PER_READ)
			break;
	}
}

/* ---------------------------------------------------------------------
 * Running
 * ---------------------------------------------------------------------
 */

/* Set (or with NULL, clear) the one handler called at the end of each iteration. */
void
loop_on_idle(Loop *loop, void (*handler) (Loop *loop, void *arg), void *arg)
{
	loop->idle_handler = handler;
	loop->idle_arg = arg;
}

/*
 * Run iterations until a callback calls loop_stop; the iteration in which it
 * does is completed.  A loop_stop made before loop_run is forgotten.  The
 * clock is read on entry too, so timers started before loop_run are measured
 * against the real time when it begins waiting.  Returns 0, or -1 with errno
 * set when epoll_wait fails (EINTR is not a failure).  Not reentrant:
 * callbacks must not call loop_run or loop_destroy.
 */
int
loop_run(Loop *loop)
{
	loop->stop_requested = false;
	loop_update_now(loop);

	while (!loop->stop_requested)
	{
		int			nready;

		nready = epoll_wait(loop->epoll_fd, loop->ready, LOOP_EVENTS_PER_WAIT,
							loop_wait_timeout_ms(loop));
		if (nready < 0)
		{
			if (errno != EINTR)
				return -1;
			nready = 0;
		}
		loop_update_now(loop);

		loop_dispatch_fd_events(loop, nready);
		loop_fire_due_timers(loop);
		if (loop->idle_handler != NULL)
			loop->idle_handler(loop, loop->idle_arg);
	}
	return 0;
}

/* Make loop_run return 0 once the current iteration is complete. */
void
loop_stop(Loop *loop)
{
	loop->stop_requested = true;
}
