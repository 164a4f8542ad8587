/*
 * session.h — one client's long-poll session.
 *
 * A session is an explicit state machine (docs/protocol.md):
 *
 *   state \ event | poll arrives        | packet arrives      | wait expires  | client gone  | inactivity
 *   --------------+---------------------+---------------------+---------------+--------------+-----------
 *   waiting       | hold -> have_request| queue -> have_packet| -             | -            | end
 *   have_request  | answer old, hold new| answer -> waiting * | answer empty  | drop request | -
 *                 |                     |                     |   -> waiting  |   -> waiting |
 *   have_packet   | answer -> waiting   | queue (or overflow) | -             | -            | end
 *
 * (*) Not at once: the session goes on the table's list of held polls due
 * for an answer, and session_flush answers them, oldest first, in batches.
 * A packet for 10,000 sessions is thus queued to all of them in one pass,
 * and the HTTP layer writes the first answers while later ones are still
 * being built.  Until its turn the session stays in have_request with
 * packets queued; every other event treats it as above (a poll, the wait
 * or the end answers the held poll with them; a client gone leaves them
 * queued, -> have_packet; more packets are queued, or overflow).
 *
 * Around it: the rid window (requests are processed in rid order; a rid
 * already answered gets the same answer again; a rid beyond the window
 * ends the session), and "work" requests (send, subscribe, unsubscribe)
 * that the host carries out against the database and answers through
 * session_answer_work while the held poll stays held.
 *
 * The session never does I/O itself: answers go out through SessionHooks.
 */
#ifndef COMET_SESSION_H
#define COMET_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "answer.h"
#include "buf.h"
#include "channel.h"
#include "loop.h"
#include "packet.h"
#include "protocol.h"

typedef struct Session Session;
typedef struct SessionTable SessionTable;
typedef struct HttpRequest HttpRequest;	/* owned by the HTTP layer */

typedef enum SessionState
{
	SESSION_WAITING,			/* no request held, nothing queued */
	SESSION_HAVE_REQUEST,		/* a poll held, nothing to send */
	SESSION_HAVE_PACKET			/* packets queued, no request to carry them */
} SessionState;

typedef enum SessionEnd
{
	SESSION_END_TERMINATE,		/* the client said so */
	SESSION_END_INACTIVITY,		/* no request for the inactivity period */
	SESSION_END_OVERFLOW,		/* the queue passed max_pending */
	SESSION_END_SHUTDOWN,		/* the bridge is stopping */
	SESSION_END_PROTOCOL,		/* a rid outside the window */
	SESSION_END_REVOKED			/* its credentials are no longer valid */
} SessionEnd;

/*
 * "terminate", "inactivity", "overflow", "shutdown", "item-not-found",
 * "revoked"
 */
const char *session_end_name(SessionEnd why);

typedef struct SessionHooks
{
	/*
	 * Send answer (its status and body) to req; req is done afterwards.
	 * The hook takes its own reference if it keeps the answer.
	 */
	void		(*answer) (void *ctx, HttpRequest *req, Answer *answer);
	/* req is now held: watch its socket for hang-up until answered. */
	void		(*hold) (void *ctx, HttpRequest *req, Session *session);
	/*
	 * Carry out a request that sends, subscribes or unsubscribes, and
	 * answer it with session_answer_work, now or later.  request is only
	 * valid during the call.  The hook must not end the session itself.
	 */
	void		(*work) (void *ctx, Session *session, HttpRequest *req,
						 const ProtoRequest *request);
	/* The session ends; it is freed when this returns. */
	void		(*ended) (void *ctx, Session *session, SessionEnd why);
	/*
	 * A poll arrived (and is held or answered).  The hook must not end the
	 * session itself; it may start something that ends it later.  NULL:
	 * nothing to do.
	 */
	void		(*polled) (void *ctx, Session *session);
	void	   *ctx;
} SessionHooks;

typedef struct SessionLimits
{
	uint64_t	max_wait_ms;	/* longest a poll is held (--wait) */
	uint64_t	inactivity_ms;	/* --inactivity */
	size_t		max_pending;	/* packets queued before overflow */
	uint64_t	window;			/* rids processed ahead ("requests"), 2 */
} SessionLimits;

SessionTable *session_table_create(Loop *loop, ChannelTable *channels,
								   const SessionHooks *hooks,
								   const SessionLimits *limits);
/* Ends every session with why, then frees the table. */
void		session_table_destroy(SessionTable *table, SessionEnd why);
size_t		session_count(const SessionTable *table);
/* Packets queued in all sessions together (for /metrics). */
size_t		session_table_queued(const SessionTable *table);
Session    *session_find(SessionTable *table, const char *sid);

/*
 * A new session after a successful setup request with rid: its next rid is
 * rid + 1.  wait_s is what the client asked for (0: the maximum).  subject
 * may be NULL (anonymous).  Returns NULL when sid is already taken.
 */
Session    *session_create(SessionTable *table, const char *sid,
						   const char *subject, uint64_t rid, int wait_s);

const char *session_sid(const Session *session);
const char *session_subject(const Session *session);
/*
 * Whether the session's setup has been answered (the host marks it): a
 * setup that fails after the session was made ends a session its client
 * never learnt of.
 */
void		session_set_announced(Session *session);
/*
 * The auth object an authenticated session was set up with (copied), so
 * that its credentials can be checked again on later requests; NULL for
 * an anonymous session.
 */
void		session_set_auth(Session *session, const char *auth_json);
const char *session_auth(const Session *session);
/* Whether the host is checking the session's credentials again right now. */
void		session_set_auth_checking(Session *session, bool checking);
bool		session_auth_checking(const Session *session);
bool		session_announced(const Session *session);
SessionState session_state(const Session *session);
int			session_wait_s(const Session *session);
size_t		session_queue_length(const Session *session);

/*
 * Answer up to max held polls that have packets (oldest first); how many
 * were answered.  session_flush_pending: some are still due.
 */
size_t		session_flush(SessionTable *table, size_t max);
bool		session_flush_pending(const SessionTable *table);

/* Subscriptions (the host has authorized them). */
bool		session_subscribe(Session *session, const char *channel);
/*
 * The client has channel's durable packets up to seq (from a replay, or
 * they precede its position): drop those queued, and deliver none of them
 * later (a NOTIFY still in flight).
 */
void		session_set_floor(Session *session, const char *channel, int64_t seq);
/*
 * Hold back channel's live packets (they are kept, not queued) from now
 * until session_release_channel: while the host reads where the client
 * starts (its position, a resume), nothing of the channel may reach a held
 * poll.  They count against max_pending: more ends the session (overflow).
 * False when the channel was held already (a resume cut short earlier).
 */
bool		session_hold_channel(Session *session, const char *channel);
/*
 * The client has channel up to floor (-1: nothing new): set the floor and
 * drop what is held up to it; then hand the rest on in order, or, with
 * keep_holding (a resume cut short: the client asks again), keep holding
 * it.  False when the session ended meanwhile (overflow).
 */
bool		session_release_channel(Session *session, const char *channel,
									int64_t floor, bool keep_holding);
/*
 * A resume of channel was cut short at last (below position): what is
 * queued of the channel joins the hold, up to last is dropped, and the
 * channel stays held until a later request resumes it again (the host
 * then releases it) or a request that does not resume it arrives (then it
 * is let go from position on).
 */
void		session_cut_channel(Session *session, const char *channel, int64_t last,
								int64_t position);
bool		session_unsubscribe(Session *session, const char *channel);
/* Calls fn for each subscribed channel. */
void		session_foreach_channel(const Session *session,
									void (*fn) (void *arg, const char *channel),
									void *arg);

/*
 * Events.  session_request takes a decoded request for this session
 * (request->sid matches), malloc'd; it is answered at once, held, parked
 * until its turn, or handed to the host as work.  The session takes
 * ownership of request.  A request with "terminate" ends the session (its
 * other items are ignored); it is answered with the packets still queued.
 * The session may have ended when this returns.
 */
void		session_request(Session *session, HttpRequest *req, ProtoRequest *request);
/* A packet for a channel the session subscribes to (ChannelHooks.deliver). */
void		session_packet(Session *session, Packet *packet);
/* The client of the held request hung up: forget the request. */
void		session_client_gone(Session *session, HttpRequest *req);
/* End the session now (terminate, shutdown). */
void		session_end(Session *session, SessionEnd why);

/*
 * For the answer to rid: append ,"packets":[...] with first[0..nfirst)
 * (a resume's catch-up) and then everything queued to out, and empty the
 * queue (have_packet -> waiting).  For answers the host composes.  A held
 * poll (an earlier rid) is answered first when there would be packets:
 * with the queue, which then leaves out (nfirst == 0), or empty (a
 * catch-up comes first).  Clients hand out packets in rid order, so once
 * an answer carried packets, an earlier rid's poll (a retry) goes empty.
 */
void		session_take_packets_after(Session *session, uint64_t rid, Buf *out,
									   Packet *const *first, size_t nfirst);

/*
 * The answer to work rid will carry packets of its own (a catch-up, or
 * live packets of a channel it subscribed): answer a held poll (an earlier
 * rid) now, with the queue (with_queue) or with nothing (the answer's own
 * packets come first), so that they cannot reach it before this answer.
 */
void		session_answer_held_before(Session *session, uint64_t rid, bool with_queue);

/* Packets of channel held back with a seq above floor (or without a seq). */
size_t		session_held_after(const Session *session, const char *channel, int64_t floor);

/*
 * The client may no longer ask again for channel's resume cut short (its
 * subscribe was refused): let the channel go from its position on.  False
 * when that ended the session (overflow).
 */
bool		session_give_up_cut(Session *session, const char *channel);

/*
 * The host's answer to a work request or to the setup request: send it,
 * remember it for retransmission, and process the next parked request.
 * body is the complete JSON answer.
 */
void		session_answer_work(Session *session, HttpRequest *req, uint64_t rid,
								int status, const char *body, size_t len);

#endif							/* COMET_SESSION_H */
