/*
 * loop.h — the bridge's one event loop: epoll for file descriptors, a heap
 * of millisecond timers, and signals delivered through a signalfd.
 *
 * Everything the bridge does happens in a callback called from loop_run:
 * no threads, no blocking calls.  Callbacks may add and remove watches and
 * timers, including their own, at any time.
 */
#ifndef COMET_LOOP_H
#define COMET_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Loop Loop;

/* Called with the epoll events (EPOLLIN, EPOLLOUT, EPOLLRDHUP, ...) seen. */
typedef void (*LoopFdHandler) (Loop *loop, int fd, uint32_t events, void *arg);

typedef struct LoopTimer LoopTimer;
typedef void (*LoopTimerHandler) (Loop *loop, LoopTimer *timer, void *arg);

/*
 * A timer is embedded in whatever owns it (a session, a connection) and
 * must be stopped before its owner is freed.  Call loop_timer_init before
 * first use (a zeroed timer is also idle, but has no handler yet).
 */
struct LoopTimer
{
	uint64_t	deadline_ms;
	size_t		heap_index;		/* position in the heap; SIZE_MAX when idle */
	LoopTimerHandler handler;
	void	   *arg;
	uint64_t	sequence;		/* orders timers with equal deadlines */
};

typedef void (*LoopSignalHandler) (Loop *loop, int signo, void *arg);

/* A new loop, or NULL with a reason in err. */
Loop	   *loop_create(char *err, size_t errlen);
void		loop_destroy(Loop *loop);

/*
 * Watch fd for events (EPOLLIN, EPOLLOUT, EPOLLRDHUP, level-triggered);
 * watching an fd again changes its events and handler.  Returns 0, or -1
 * with errno set.
 */
int			loop_watch(Loop *loop, int fd, uint32_t events,
					   LoopFdHandler handler, void *arg);
/* Stop watching fd (harmless if it is not watched).  Returns 0 or -1. */
int			loop_unwatch(Loop *loop, int fd);

void		loop_timer_init(LoopTimer *timer, LoopTimerHandler handler, void *arg);
/* (Re)start a timer to fire once, delay_ms from now. */
void		loop_timer_start(Loop *loop, LoopTimer *timer, uint64_t delay_ms);
/* Stop a timer; harmless if it is not running. */
void		loop_timer_stop(Loop *loop, LoopTimer *timer);
bool		loop_timer_active(const LoopTimer *timer);

/*
 * Deliver signo (SIGTERM, SIGINT, SIGHUP, ...) to handler from the loop
 * instead of asynchronously.  The signal is blocked for the process.
 * Returns 0, or -1 with errno set.
 */
int			loop_on_signal(Loop *loop, int signo, LoopSignalHandler handler, void *arg);

/* A monotonic clock in milliseconds, read once per loop iteration. */
uint64_t	loop_now_ms(const Loop *loop);

/*
 * Called once per iteration after the events of that iteration have been
 * handled (the HTTP library needs this to process resumed connections).
 */
void		loop_on_idle(Loop *loop, void (*handler) (Loop *loop, void *arg), void *arg);

/* Run until loop_stop.  Returns 0, or -1 when epoll fails. */
int			loop_run(Loop *loop);
void		loop_stop(Loop *loop);

#endif							/* COMET_LOOP_H */
