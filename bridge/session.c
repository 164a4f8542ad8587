/*
 * session.c — the session state machine, the rid window, the packet queue
 * and the session table.  See session.h for the table of transitions; each
 * cell is one function below named after its state and event.
 *
 * Invariants:
 *   state == SESSION_HAVE_REQUEST  <=>  held != NULL
 *   state == SESSION_HAVE_PACKET   <=>  queue_len > 0 (and held == NULL)
 *   in have_request, queue_len > 0  <=>  the session is due (on the
 *   table's due list (due_head), answered by session_flush)
 *   the wait timer runs exactly while a poll is held;
 *   the inactivity timer runs exactly while no poll is held and no work
 *   request is with the host.
 * Requests are taken in rid order: next_rid is the next rid to start;
 * parked[k] holds rid next_rid + k when it came early or while work is
 * in progress.  The last answer to a poll and the last answer to work are
 * kept (cache[CACHE_POLL], cache[CACHE_WORK]) so that a retransmitted rid
 * gets the very same answer.  A client sends its next poll only once it has
 * its last poll's answer, and its next work only once it has its last
 * work's answer, so each kept answer lasts until the client has it — however
 * many answers of the other kind go out meanwhile.
 * Clients hand out an answer's packets only after those of every earlier
 * rid, so packets go out in rid order too: once an answer carried packets
 * (carried_rid), no answer to an earlier rid takes any from the queue, and
 * a held poll is answered before a later rid's answer carries packets.
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hash.h"
#include "mem.h"

#define SESSION_MAX_WINDOW 8
/*
 * A client asks again for a resume cut short as soon as it has the answer;
 * a poll that comes this long after it, without asking, means the client
 * gave up (see session_release_cuts).
 */
#define SESSION_CUT_PATIENCE_MS 15000
#define CACHE_POLL 0
#define CACHE_WORK 1

typedef struct CachedAnswer
{
	uint64_t	rid;
	Answer	   *answer;			/* NULL: none kept */
} CachedAnswer;

/* A channel's live packets held back while the host settles where it starts. */
typedef struct HeldChannel
{
	char		channel[PROTO_CHANNEL_MAX + 1];
	Packet	  **packets;
	size_t		npackets;
	size_t		capacity;
	/* a resume was cut short: held until the client asks again, or gives up */
	bool		cut;
	int64_t		cut_position;
	uint64_t	cut_at_ms;		/* loop time of the answer that cut it */
} HeldChannel;

typedef struct ParkedRequest
{
	HttpRequest *req;
	ProtoRequest *request;
} ParkedRequest;

struct Session
{
	SessionTable *table;
	Session    *hash_next;
	uint64_t	hash;
	char		sid[PROTO_SID_MAX + 1];
	char	   *subject;		/* NULL: anonymous */
	int			wait_s;
	bool		announced;		/* its setup answer has gone out */
	char	   *auth_json;		/* what it authenticated with, or NULL */
	bool		auth_checking;	/* the host is checking it again */

	SessionState state;
	HttpRequest *held;			/* the held poll */
	uint64_t	held_rid;
	bool		orphaned;		/* held_rid's client left unanswered */
	bool		carried;		/* an answer has carried packets */
	uint64_t	carried_rid;	/* the highest rid whose answer did */
	Packet	  **queue;
	size_t		queue_len;
	size_t		queue_capacity;
	/* on the table's due list: held, with packets, not yet answered */
	Session    *due_prev;
	Session    *due_next;
	bool		due;

	uint64_t	next_rid;		/* the next rid to start */
	bool		starting;		/* session_start_next is running */
	bool		busy;			/* a work request is with the host */
	uint64_t	busy_rid;
	ParkedRequest parked[SESSION_MAX_WINDOW];
	CachedAnswer cache[2];		/* [CACHE_POLL], [CACHE_WORK] */

	LoopTimer	wait_timer;
	LoopTimer	inactivity_timer;

	Subscription **subscriptions;
	size_t		nsubscriptions;
	size_t		subscriptions_capacity;

	HeldChannel *held_channels;	/* usually none */
	size_t		nheld_channels;
	size_t		nheld_packets;	/* in all of them; counts against max_pending */
};

struct SessionTable
{
	Loop	   *loop;
	ChannelTable *channels;
	SessionHooks hooks;
	SessionLimits limits;
	Session   **buckets;
	size_t		nbuckets;		/* a power of two */
	size_t		nsessions;
	size_t		queued;			/* packets queued in all sessions */
	/* held polls that have packets to carry, oldest first (session_flush) */
	Session    *due_head;
	Session    *due_tail;
};

static bool session_start_next(Session *session);
static void session_release_held(Session *session, bool with_queue);
static bool request_has_work(const ProtoRequest *request);
static void session_due_remove(Session *session);
static void session_give_work(Session *session, HttpRequest *req, ProtoRequest *request);

const char *
session_end_name(SessionEnd why)
{
	switch (why)
	{
		case SESSION_END_TERMINATE:
			return "terminate";
		case SESSION_END_INACTIVITY:
			return "inactivity";
		case SESSION_END_OVERFLOW:
			return "overflow";
		case SESSION_END_SHUTDOWN:
			return "shutdown";
		case SESSION_END_PROTOCOL:
			return "item-not-found";
		case SESSION_END_REVOKED:
			return "revoked";
	}
	return "unknown";
}

/* ---- the session table ------------------------------------------------ */

SessionTable *
session_table_create(Loop *loop, ChannelTable *channels,
					 const SessionHooks *hooks, const SessionLimits *limits)
{
	SessionTable *table = mem_alloc(sizeof(SessionTable));

	table->loop = loop;
	table->channels = channels;
	table->hooks = *hooks;
	table->limits = *limits;
	if (table->limits.window < 1)
		table->limits.window = 1;
	if (table->limits.window > SESSION_MAX_WINDOW)
		table->limits.window = SESSION_MAX_WINDOW;
	table->nbuckets = 1024;
	table->buckets = mem_alloc(sizeof(Session *) * table->nbuckets);
	return table;
}

void
session_table_destroy(SessionTable *table, SessionEnd why)
{
	size_t		i;

	if (table == NULL)
		return;
	for (i = 0; i < table->nbuckets; i++)
		while (table->buckets[i] != NULL)
			session_end(table->buckets[i], why);
	free(table->buckets);
	free(table);
}

size_t
session_count(const SessionTable *table)
{
	return table->nsessions;
}

size_t
session_table_queued(const SessionTable *table)
{
	return table->queued;
}

Session *
session_find(SessionTable *table, const char *sid)
{
	uint64_t	hash = hash_name(sid);
	Session    *session = table->buckets[hash & (table->nbuckets - 1)];

	for (; session != NULL; session = session->hash_next)
		if (session->hash == hash && strcmp(session->sid, sid) == 0)
			return session;
	return NULL;
}

static void
session_table_grow(SessionTable *table)
{
	size_t		nbuckets = table->nbuckets * 2;
	Session   **buckets = mem_alloc(sizeof(Session *) * nbuckets);
	size_t		i;

	for (i = 0; i < table->nbuckets; i++)
	{
		Session    *session = table->buckets[i];

		while (session != NULL)
		{
			Session    *next = session->hash_next;
			size_t		b = session->hash & (nbuckets - 1);

			session->hash_next = buckets[b];
			buckets[b] = session;
			session = next;
		}
	}
	free(table->buckets);
	table->buckets = buckets;
	table->nbuckets = nbuckets;
}

/* ---- timers ------------------------------------------------------------ */

static void session_wait_expires(Loop *loop, LoopTimer *timer, void *arg);
static void session_inactivity_expires(Loop *loop, LoopTimer *timer, void *arg);

/* The inactivity timer runs exactly while the client has nothing with us. */
static void
session_update_inactivity(Session *session)
{
	Loop	   *loop = session->table->loop;

	if (session->held != NULL || session->busy)
		loop_timer_stop(loop, &session->inactivity_timer);
	else if (!loop_timer_active(&session->inactivity_timer))
		loop_timer_start(loop, &session->inactivity_timer,
						 session->table->limits.inactivity_ms);
}

Session *
session_create(SessionTable *table, const char *sid, const char *subject,
			   uint64_t rid, int wait_s)
{
	Session    *session;
	uint64_t	max_wait_s = table->limits.max_wait_ms / 1000;
	size_t		b;

	if (session_find(table, sid) != NULL)
		return NULL;
	if (table->nsessions + 1 > table->nbuckets)
		session_table_grow(table);

	session = mem_alloc(sizeof(Session));
	session->table = table;
	snprintf(session->sid, sizeof(session->sid), "%s", sid);
	session->hash = hash_name(session->sid);
	session->subject = subject ? mem_strdup(subject) : NULL;
	session->wait_s = (wait_s <= 0 || (uint64_t) wait_s > max_wait_s)
		? (int) max_wait_s : wait_s;
	if (session->wait_s < 1)
		session->wait_s = 1;
	session->state = SESSION_WAITING;
	session->next_rid = rid + 1;
	loop_timer_init(&session->wait_timer, session_wait_expires, session);
	loop_timer_init(&session->inactivity_timer, session_inactivity_expires, session);

	b = session->hash & (table->nbuckets - 1);
	session->hash_next = table->buckets[b];
	table->buckets[b] = session;
	table->nsessions++;
	session_update_inactivity(session);
	return session;
}

const char *
session_sid(const Session *session)
{
	return session->sid;
}

const char *
session_subject(const Session *session)
{
	return session->subject;
}

void
session_set_auth(Session *session, const char *auth_json)
{
	free(session->auth_json);
	session->auth_json = mem_strdup(auth_json);
}

void
session_set_auth_checking(Session *session, bool checking)
{
	session->auth_checking = checking;
}

bool
session_auth_checking(const Session *session)
{
	return session->auth_checking;
}

const char *
session_auth(const Session *session)
{
	return session->auth_json;
}

void
session_set_announced(Session *session)
{
	session->announced = true;
}

bool
session_announced(const Session *session)
{
	return session->announced;
}

SessionState
session_state(const Session *session)
{
	return session->state;
}

int
session_wait_s(const Session *session)
{
	return session->wait_s;
}

size_t
session_flush(SessionTable *table, size_t max)
{
	size_t		n = 0;

	while (table->due_head != NULL && n < max)
	{
		session_release_held(table->due_head, true);	/* takes it off the list */
		n++;
	}
	return n;
}

bool
session_flush_pending(const SessionTable *table)
{
	return table->due_head != NULL;
}

size_t
session_queue_length(const Session *session)
{
	return session->queue_len;
}

/* ---- answers and the cache -------------------------------------------- */

/*
 * Keep the answer to rid as the last of its kind (poll or work), then send
 * it; the caller's reference goes to the cache.
 */
static void
session_answer(Session *session, HttpRequest *req, uint64_t rid, Answer *answer, int kind)
{
	CachedAnswer *slot = &session->cache[kind];

	answer_unref(slot->answer);
	slot->rid = rid;
	slot->answer = answer;
	session->table->hooks.answer(session->table->hooks.ctx, req, answer);
}

/* Send an answer that is not kept. */
static void
session_answer_bytes(Session *session, HttpRequest *req, int status, const char *body, size_t len)
{
	Answer	   *answer = answer_from_bytes(status, body, len);

	session->table->hooks.answer(session->table->hooks.ctx, req, answer);
	answer_unref(answer);
}

/* The kept answer for rid, or NULL. */
static CachedAnswer *
session_cached(Session *session, uint64_t rid)
{
	int			kind;

	for (kind = CACHE_POLL; kind <= CACHE_WORK; kind++)
		if (session->cache[kind].answer != NULL && session->cache[kind].rid == rid)
			return &session->cache[kind];
	return NULL;
}

/* Answer an error that is not cached (the request was never taken). */
static void
session_answer_error(Session *session, HttpRequest *req, ProtoCondition condition,
					 const char *message)
{
	Buf			body = BUF_INIT;

	proto_encode_error(&body, condition, message);
	session_answer_bytes(session, req, proto_condition_status(condition), body.data, body.len);
	buf_free(&body);
}

/* An answer to rid carries packets. */
static void
session_carried(Session *session, uint64_t rid)
{
	if (!session->carried || rid > session->carried_rid)
	{
		session->carried = true;
		session->carried_rid = rid;
	}
}

/*
 * Work done again after a 503 may be answered after polls with later rids
 * carried packets, or while one is held: the queue is newer than its
 * answer's place in rid order, and waits for the next poll.
 */
static bool
session_behind(const Session *session, uint64_t rid)
{
	return (session->carried && session->carried_rid > rid) ||
		(session->held != NULL && session->held_rid > rid);
}

/*
 * A client hands out an answer's packets only after those of every earlier
 * rid (docs/protocol.md), so a poll left held would keep them from it until
 * something else came: answer it first.  With the queue, as it would have
 * had the flush come first; but a catch-up comes before anything live of
 * its channel, so then the held poll goes empty and the later answer
 * carries it all.
 */
void
session_answer_held_before(Session *session, uint64_t rid, bool with_queue)
{
	if (session->held != NULL && !session_behind(session, rid))
		session_release_held(session, with_queue);
}

void
session_take_packets_after(Session *session, uint64_t rid, Buf *out,
						   Packet *const *first, size_t nfirst)
{
	bool		behind = session_behind(session, rid);
	size_t		nqueue;
	size_t		i;

	if (nfirst > 0 || session->queue_len > 0)
		session_answer_held_before(session, rid, nfirst == 0);
	nqueue = behind ? 0 : session->queue_len;
	if (nfirst > 0 || nqueue > 0)
		session_carried(session, rid);
	buf_append_str(out, ",\"packets\":[");
	for (i = 0; i < nfirst; i++)
	{
		if (i > 0)
			buf_append_char(out, ',');
		buf_append(out, first[i]->json, first[i]->len);
	}
	for (i = 0; i < nqueue; i++)
	{
		if (i > 0 || nfirst > 0)
			buf_append_char(out, ',');
		buf_append(out, session->queue[i]->json, session->queue[i]->len);
		packet_unref(session->queue[i]);
	}
	buf_append_char(out, ']');
	if (nqueue == 0)
		return;
	session->table->queued -= nqueue;
	session->queue_len = 0;
	if (session->state == SESSION_HAVE_PACKET)
		session->state = SESSION_WAITING;
	session_due_remove(session);	/* a held poll has nothing to carry now */
}

/*
 * Answer a poll with rid and whatever is queued (possibly nothing): the
 * queue's packet references go to the answer.
 */
static void
session_answer_poll(Session *session, HttpRequest *req, uint64_t rid)
{
	Answer	   *answer = answer_poll(rid, session->queue, session->queue_len);

	if (session->queue_len > 0)
		session_carried(session, rid);

	session->table->queued -= session->queue_len;
	session->queue_len = 0;
	if (session->state == SESSION_HAVE_PACKET)
		session->state = SESSION_WAITING;
	session_answer(session, req, rid, answer, CACHE_POLL);
}

/* ---- the state machine ------------------------------------------------- */

/*
 * How long to hold a poll: the session's wait, or less while a cut resume
 * waits for the client to ask again — the poll after SESSION_CUT_PATIENCE_MS
 * lets the channel go (session_release_cuts), so it is not left waiting for
 * a whole wait with the channel's packets piling up.
 */
static uint64_t
session_hold_ms(const Session *session)
{
	uint64_t	ms = (uint64_t) session->wait_s * 1000;
	uint64_t	now = loop_now_ms(session->table->loop);
	size_t		i;

	for (i = 0; i < session->nheld_channels; i++)
	{
		const HeldChannel *held = &session->held_channels[i];
		uint64_t	left;

		if (!held->cut)
			continue;
		left = now - held->cut_at_ms >= SESSION_CUT_PATIENCE_MS
			? 0 : SESSION_CUT_PATIENCE_MS - (now - held->cut_at_ms);
		if (left + 10 < ms)
			ms = left + 10;
	}
	return ms;
}

static void
session_hold(Session *session, HttpRequest *req, uint64_t rid)
{
	session->held = req;
	session->held_rid = rid;
	session->orphaned = false;
	session->state = SESSION_HAVE_REQUEST;
	loop_timer_start(session->table->loop, &session->wait_timer, session_hold_ms(session));
	session->table->hooks.hold(session->table->hooks.ctx, req, session);
	session_update_inactivity(session);
}

/* ---- held polls due for an answer -------------------------------------- */

static void
session_due_add(Session *session)
{
	SessionTable *table = session->table;

	if (session->due)
		return;
	session->due = true;
	session->due_next = NULL;
	session->due_prev = table->due_tail;
	if (table->due_tail != NULL)
		table->due_tail->due_next = session;
	else
		table->due_head = session;
	table->due_tail = session;
}

static void
session_due_remove(Session *session)
{
	SessionTable *table = session->table;

	if (!session->due)
		return;
	if (session->due_prev != NULL)
		session->due_prev->due_next = session->due_next;
	else
		table->due_head = session->due_next;
	if (session->due_next != NULL)
		session->due_next->due_prev = session->due_prev;
	else
		table->due_tail = session->due_prev;
	session->due = false;
	session->due_prev = session->due_next = NULL;
}

/*
 * Answer the held poll, with what is queued or (with_queue false) with
 * nothing, the queue staying for the next request.
 */
static void
session_release_held(Session *session, bool with_queue)
{
	HttpRequest *req = session->held;
	uint64_t	rid = session->held_rid;

	session_due_remove(session);
	session->held = NULL;
	loop_timer_stop(session->table->loop, &session->wait_timer);
	if (with_queue)
	{
		session->state = SESSION_WAITING;
		session_answer_poll(session, req, rid);
	}
	else
	{
		session->state = session->queue_len > 0 ? SESSION_HAVE_PACKET : SESSION_WAITING;
		session_answer(session, req, rid, answer_poll(rid, NULL, 0), CACHE_POLL);
	}
	session_update_inactivity(session);
}

static void
waiting_poll_arrives(Session *session, HttpRequest *req, uint64_t rid)
{
	session_hold(session, req, rid);
}

static void
have_request_poll_arrives(Session *session, HttpRequest *req, uint64_t rid)
{
	session_release_held(session, true);	/* the old one, with what is queued (usually nothing) */
	session_hold(session, req, rid);
}

static void
have_packet_poll_arrives(Session *session, HttpRequest *req, uint64_t rid)
{
	session_answer_poll(session, req, rid);	/* -> waiting */
	session_update_inactivity(session);
}

/* Tell the host a poll was taken (it may check the credentials again). */
static void
session_polled(Session *session)
{
	if (session->table->hooks.polled != NULL)
		session->table->hooks.polled(session->table->hooks.ctx, session);
}

static void
session_poll_arrives(Session *session, HttpRequest *req, uint64_t rid)
{
	if (session->carried && rid < session->carried_rid)
	{
		/*
		 * A retried poll whose first copy's client left, after a later
		 * answer carried packets (a work answer took the queue meanwhile):
		 * the client hands out packets in rid order, so anything given to
		 * this rid would come before older packets.  It goes empty; the
		 * queue waits for the next poll.
		 */
		session_answer(session, req, rid, answer_poll(rid, NULL, 0), CACHE_POLL);
		session_update_inactivity(session);
		return;
	}
	switch (session->state)
	{
		case SESSION_WAITING:
			waiting_poll_arrives(session, req, rid);
			break;
		case SESSION_HAVE_REQUEST:
			have_request_poll_arrives(session, req, rid);
			break;
		case SESSION_HAVE_PACKET:
			have_packet_poll_arrives(session, req, rid);
			break;
	}
}

static void
session_enqueue(Session *session, Packet *packet)
{
	if (session->queue_len == session->queue_capacity)
	{
		size_t		capacity = session->queue_capacity ? session->queue_capacity * 2 : 4;
		Packet	  **grown = mem_realloc(session->queue, sizeof(Packet *) * capacity);
		session->queue = grown;
		session->queue_capacity = capacity;
	}
	session->queue[session->queue_len++] = packet_ref(packet);
	session->table->queued++;
}

static void
waiting_packet_arrives(Session *session, Packet *packet)
{
	session_enqueue(session, packet);
	session->state = SESSION_HAVE_PACKET;
}

/*
 * The held poll is answered by session_flush, soon: a packet for many
 * sessions is queued to all of them first, and their answers go out in
 * batches between which the HTTP layer writes (see session.h).
 */
static void
have_request_packet_arrives(Session *session, Packet *packet)
{
	if (session->queue_len >= session->table->limits.max_pending)
	{
		session_end(session, SESSION_END_OVERFLOW);
		return;
	}
	session_enqueue(session, packet);
	session_due_add(session);
}

static void
have_packet_packet_arrives(Session *session, Packet *packet)
{
	if (session->queue_len >= session->table->limits.max_pending)
	{
		session_end(session, SESSION_END_OVERFLOW);
		return;
	}
	session_enqueue(session, packet);
}

static HeldChannel *
session_find_held(const Session *session, const char *channel)
{
	size_t		i;

	for (i = 0; i < session->nheld_channels; i++)
		if (strcmp(session->held_channels[i].channel, channel) == 0)
			return &session->held_channels[i];
	return NULL;
}

size_t
session_held_after(const Session *session, const char *channel, int64_t floor)
{
	HeldChannel *held = session->nheld_channels > 0 ? session_find_held(session, channel) : NULL;
	size_t		n = 0;
	size_t		i;

	for (i = 0; held != NULL && i < held->npackets; i++)
		if (held->packets[i]->seq < 0 || held->packets[i]->seq > floor)
			n++;
	return n;
}

bool
session_give_up_cut(Session *session, const char *channel)
{
	HeldChannel *held = session->nheld_channels > 0 ? session_find_held(session, channel) : NULL;

	if (held == NULL || !held->cut)
		return true;
	return session_release_channel(session, channel, held->cut_position, false);
}

/* Free a held channel's packets and take it out of the list. */
static void
session_drop_held(Session *session, HeldChannel *held)
{
	size_t		i;

	for (i = 0; i < held->npackets; i++)
		packet_unref(held->packets[i]);
	session->nheld_packets -= held->npackets;
	free(held->packets);
	*held = session->held_channels[--session->nheld_channels];
	if (session->nheld_channels == 0)
	{
		free(session->held_channels);
		session->held_channels = NULL;
	}
}

bool
session_hold_channel(Session *session, const char *channel)
{
	HeldChannel *held;

	if (session_find_held(session, channel) != NULL)
		return false;
	session->held_channels = mem_realloc(session->held_channels,
										 sizeof(HeldChannel) * (session->nheld_channels + 1));
	held = &session->held_channels[session->nheld_channels++];
	memset(held, 0, sizeof(*held));
	snprintf(held->channel, sizeof(held->channel), "%s", channel);
	return true;
}

/* Make room for n more packets in a held channel. */
static void
held_reserve(HeldChannel *held, size_t n)
{
	if (held->npackets + n <= held->capacity)
		return;
	held->capacity = (held->npackets + n) * 2;
	held->packets = mem_realloc(held->packets, sizeof(Packet *) * held->capacity);
}

void
session_cut_channel(Session *session, const char *channel, int64_t last, int64_t position)
{
	HeldChannel *held = session_find_held(session, channel);
	size_t		nqueued = 0;
	size_t		kept = 0;
	size_t		i;

	if (held == NULL)
		return;
	session_set_floor(session, channel, last);
	/* what of the channel was queued before the hold goes ahead of it */
	for (i = 0; i < session->queue_len; i++)
		if (strcmp(session->queue[i]->channel, channel) == 0)
			nqueued++;
	if (nqueued > 0)
	{
		held_reserve(held, nqueued);
		memmove(held->packets + nqueued, held->packets, sizeof(Packet *) * held->npackets);
		for (i = 0; i < session->queue_len; i++)
		{
			Packet	   *packet = session->queue[i];

			if (strcmp(packet->channel, channel) == 0)
				held->packets[kept++] = packet;
			else
				session->queue[i - kept] = packet;
		}
		held->npackets += nqueued;
		session->queue_len -= nqueued;
		session->table->queued -= nqueued;
		session->nheld_packets += nqueued;
		if (session->queue_len == 0)
		{
			if (session->state == SESSION_HAVE_PACKET)
				session->state = SESSION_WAITING;
			session_due_remove(session);
		}
	}
	(void) session_release_channel(session, channel, last, true);
	held = session_find_held(session, channel);
	held->cut = true;
	held->cut_position = position;
	held->cut_at_ms = loop_now_ms(session->table->loop);
}

/*
 * A request arrives: a channel whose resume was cut short and that this
 * request does not resume again is let go from its position on (the
 * client gave up asking, or asks no more) — by a work request at once, by
 * a poll only SESSION_CUT_PATIENCE_MS after the cut: a client may poll
 * before it has read the answer that tells it to ask again (that answer
 * and its held poll's go out together).  False when that ended the
 * session.
 */
static bool
session_release_cuts(Session *session, const ProtoRequest *request)
{
	bool		work = request_has_work(request);
	uint64_t	now = loop_now_ms(session->table->loop);
	size_t		i = 0;

	while (i < session->nheld_channels)
	{
		HeldChannel *held = &session->held_channels[i];
		bool		again = false;
		int			r;

		/* (resume counts in work only: a poll carrying one asks nothing) */
		for (r = 0; work && r < request->nresume; r++)
			if (strcmp(request->resume[r].channel, held->channel) == 0)
				again = true;
		if (!held->cut || again ||
			(!work && now - held->cut_at_ms < SESSION_CUT_PATIENCE_MS))
		{
			i++;
			continue;
		}
		if (!session_release_channel(session, held->channel, held->cut_position, false))
			return false;
		i = 0;					/* the list changed */
	}
	return true;
}

static void session_packet_now(Session *session, Packet *packet);

bool
session_release_channel(Session *session, const char *channel, int64_t floor, bool keep_holding)
{
	HeldChannel *held = session_find_held(session, channel);
	SessionTable *table = session->table;
	char		sid[PROTO_SID_MAX + 1];
	bool		alive = true;
	Packet	  **packets;
	size_t		npackets;
	size_t		kept = 0;
	size_t		i;

	if (floor >= 0)
		session_set_floor(session, channel, floor);
	if (held == NULL)
		return true;
	for (i = 0; i < held->npackets; i++)
	{
		Packet	   *packet = held->packets[i];

		if (packet->seq >= 0 && packet->seq <= floor)
		{
			packet_unref(packet);
			session->nheld_packets--;
		}
		else
			held->packets[kept++] = packet;
	}
	held->npackets = kept;
	if (keep_holding)
		return true;
	/* let them go, in order, as if they arrived now (an overflow ends it) */
	snprintf(sid, sizeof(sid), "%s", session->sid);
	packets = held->packets;
	npackets = held->npackets;
	session->nheld_packets -= npackets;
	held->packets = NULL;
	held->npackets = 0;
	session_drop_held(session, held);
	for (i = 0; i < npackets; i++)
	{
		if (alive)
		{
			session_packet_now(session, packets[i]);
			alive = session_find(table, sid) == session;
		}
		packet_unref(packets[i]);
	}
	free(packets);
	return alive;
}

void
session_packet(Session *session, Packet *packet)
{
	HeldChannel *held = session->nheld_channels > 0
		? session_find_held(session, packet->channel) : NULL;

	if (held == NULL)
	{
		session_packet_now(session, packet);
		return;
	}
	if (session->queue_len + session->nheld_packets >= session->table->limits.max_pending)
	{
		session_end(session, SESSION_END_OVERFLOW);
		return;
	}
	if (held->npackets == held->capacity)
	{
		held->capacity = held->capacity ? held->capacity * 2 : 8;
		held->packets = mem_realloc(held->packets, sizeof(Packet *) * held->capacity);
	}
	held->packets[held->npackets++] = packet_ref(packet);
	session->nheld_packets++;
}

static void
session_packet_now(Session *session, Packet *packet)
{
	switch (session->state)
	{
		case SESSION_WAITING:
			waiting_packet_arrives(session, packet);
			break;
		case SESSION_HAVE_REQUEST:
			have_request_packet_arrives(session, packet);
			break;
		case SESSION_HAVE_PACKET:
			have_packet_packet_arrives(session, packet);
			break;
	}
}

static void
session_wait_expires(Loop *loop, LoopTimer *timer, void *arg)
{
	Session    *session = arg;

	(void) loop;
	(void) timer;
	if (session->state == SESSION_HAVE_REQUEST)
		session_release_held(session, true);
}

void
session_client_gone(Session *session, HttpRequest *req)
{
	if (session->state != SESSION_HAVE_REQUEST || session->held != req)
		return;
	/* packets queued for it, and those that arrive from now on, stay queued
	 * for the next request, which may be a retry of this very rid */
	session_due_remove(session);
	session->held = NULL;
	session->orphaned = true;
	session->state = session->queue_len > 0 ? SESSION_HAVE_PACKET : SESSION_WAITING;
	loop_timer_stop(session->table->loop, &session->wait_timer);
	session_update_inactivity(session);
}

static void
session_inactivity_expires(Loop *loop, LoopTimer *timer, void *arg)
{
	Session    *session = arg;

	(void) loop;
	(void) timer;
	if (session->state != SESSION_HAVE_REQUEST && !session->busy)
		session_end(session, SESSION_END_INACTIVITY);
}

/* ---- requests in rid order ---------------------------------------------- */

static bool
request_has_work(const ProtoRequest *request)
{
	return request->nsend > 0 || request->nsubscribe > 0 ||
		request->nunsubscribe > 0;
}

/*
 * Start rid next_rid now: end the session (terminate), give it to the host
 * (work), or treat it as a poll.  Returns false when the session is gone.
 */
static bool
session_start(Session *session, HttpRequest *req, ProtoRequest *request)
{
	uint64_t	rid = request->rid;
	bool		terminate = request->terminate;
	bool		work = request_has_work(request);

	session->next_rid = rid + 1;
	if (!terminate && session->nheld_channels > 0)
	{
		SessionTable *table = session->table;

		if (!session_release_cuts(session, request))
		{
			/* it ended (overflow) and is freed: this request learns it too */
			Buf			body = BUF_INIT;
			Answer	   *answer;

			proto_request_free(request);
			free(request);
			proto_encode_error(&body, PROTO_OVERFLOW, session_end_name(SESSION_END_OVERFLOW));
			answer = answer_from_bytes(proto_condition_status(PROTO_OVERFLOW), body.data, body.len);
			table->hooks.answer(table->hooks.ctx, req, answer);
			answer_unref(answer);
			buf_free(&body);
			return false;
		}
	}
	if (terminate)
	{
		/* anything else in a terminating request is ignored */
		proto_request_free(request);
		free(request);
		session_answer_poll(session, req, rid);
		session_end(session, SESSION_END_TERMINATE);
		return false;
	}
	if (work)
	{
		session_give_work(session, req, request);
		return true;
	}
	proto_request_free(request);
	free(request);
	session_poll_arrives(session, req, rid);
	session_polled(session);
	return true;
}

/* Hand a work request to the host (it answers with session_answer_work). */
static void
session_give_work(Session *session, HttpRequest *req, ProtoRequest *request)
{
	session->busy = true;
	session->busy_rid = request->rid;
	session_update_inactivity(session);
	session->table->hooks.work(session->table->hooks.ctx, session, req, request);
	proto_request_free(request);
	free(request);
}

/* Start parked requests whose turn has come; false when the session ended. */
static bool
session_start_next(Session *session)
{
	/*
	 * The host may answer work at once, from inside hooks.work: then this
	 * loop is already running further up the stack and picks up the next
	 * request itself (so a terminate it starts cannot free the session
	 * under an outer loop).
	 */
	if (session->starting)
		return true;
	session->starting = true;
	while (!session->busy && session->parked[0].req != NULL)
	{
		ParkedRequest next = session->parked[0];

		memmove(&session->parked[0], &session->parked[1],
				sizeof(ParkedRequest) * (SESSION_MAX_WINDOW - 1));
		memset(&session->parked[SESSION_MAX_WINDOW - 1], 0, sizeof(ParkedRequest));
		if (!session_start(session, next.req, next.request))
			return false;		/* ended and freed */
	}
	session->starting = false;
	return true;
}

static void
session_park(Session *session, HttpRequest *req, ProtoRequest *request,
			 uint64_t slot)
{
	ParkedRequest *parked = &session->parked[slot];

	if (parked->req != NULL)
	{
		/* the same rid again while the first is parked: keep the newer */
		session_answer_error(session, parked->req, PROTO_POLICY_VIOLATION,
							 "a retry of this rid replaced this request");
		proto_request_free(parked->request);
		free(parked->request);
	}
	parked->req = req;
	parked->request = request;
}

void
session_request(Session *session, HttpRequest *req, ProtoRequest *request)
{
	uint64_t	rid = request->rid;
	uint64_t	window = session->table->limits.window;
	CachedAnswer *cached = session_cached(session, rid);

	/* the client is active: a poll answered at once counts too */
	if (session->held == NULL && !session->busy)
		loop_timer_start(session->table->loop, &session->inactivity_timer,
						 session->table->limits.inactivity_ms);

	if (rid < session->next_rid)
	{
		if (cached != NULL && answer_status(cached->answer) == 503 &&
			request_has_work(request) && !session->busy)
		{
			/*
			 * The database was away when this rid's work ran, so none of it
			 * was done (503 service-unavailable): the client's retry does it.
			 */
			answer_unref(cached->answer);
			cached->answer = NULL;
			session_give_work(session, req, request);
			return;
		}
		proto_request_free(request);
		free(request);
		if (session->held != NULL && rid == session->held_rid)
		{
			/* the client re-sent its held poll: hold the new copy instead */
			HttpRequest *old = session->held;
			Answer	   *empty = answer_poll(rid, NULL, 0);

			session->held = req;
			session->table->hooks.answer(session->table->hooks.ctx, old, empty);
			answer_unref(empty);
			session->table->hooks.hold(session->table->hooks.ctx, req, session);
			return;
		}
		if (session->busy && rid == session->busy_rid)
		{
			session_answer_error(session, req, PROTO_POLICY_VIOLATION,
								 "this rid is still being processed; retry later");
			return;
		}
		if (session->orphaned && rid == session->held_rid && cached == NULL)
		{
			/* the held poll's client left before its answer: a retry */
			session->orphaned = false;
			session_update_inactivity(session);
			session_poll_arrives(session, req, rid);
			session_polled(session);
			return;
		}
		if (cached != NULL)
		{
			session->table->hooks.answer(session->table->hooks.ctx, req, cached->answer);
			return;
		}
		session_answer_error(session, req, PROTO_ITEM_NOT_FOUND,
							 "rid is older than the session's window");
		session_end(session, SESSION_END_PROTOCOL);
		return;
	}
	if (rid - session->next_rid >= window)
	{
		proto_request_free(request);
		free(request);
		session_answer_error(session, req, PROTO_ITEM_NOT_FOUND,
							 "rid is beyond the session's window");
		session_end(session, SESSION_END_PROTOCOL);
		return;
	}
	session_park(session, req, request, rid - session->next_rid);
	(void) session_start_next(session);
}

void
session_answer_work(Session *session, HttpRequest *req, uint64_t rid,
					int status, const char *body, size_t len)
{
	session_answer(session, req, rid, answer_from_bytes(status, body, len), CACHE_WORK);
	if (session->busy && rid == session->busy_rid)
	{
		session->busy = false;
		session_update_inactivity(session);
		(void) session_start_next(session);
	}
}

/* ---- subscriptions ------------------------------------------------------ */

static Subscription **
session_find_subscription(const Session *session, const char *channel)
{
	size_t		i;

	for (i = 0; i < session->nsubscriptions; i++)
		if (strcmp(channel_name(session->subscriptions[i]->channel), channel) == 0)
			return (Subscription **) &session->subscriptions[i];
	return NULL;
}

bool
session_subscribe(Session *session, const char *channel)
{
	if (session_find_subscription(session, channel) != NULL)
		return false;
	if (session->nsubscriptions == session->subscriptions_capacity)
	{
		size_t		capacity = session->subscriptions_capacity
			? session->subscriptions_capacity * 2 : 4;
		Subscription **grown = mem_realloc(session->subscriptions,
									   sizeof(Subscription *) * capacity);
		session->subscriptions = grown;
		session->subscriptions_capacity = capacity;
	}
	session->subscriptions[session->nsubscriptions++] =
		channel_subscribe(session->table->channels, channel, session);
	return true;
}

bool
session_unsubscribe(Session *session, const char *channel)
{
	Subscription **slot = session_find_subscription(session, channel);

	if (slot == NULL)
		return false;
	channel_unsubscribe(session->table->channels, *slot);
	*slot = session->subscriptions[--session->nsubscriptions];
	if (session_find_held(session, channel) != NULL)
		session_drop_held(session, session_find_held(session, channel));
	return true;
}

void
session_set_floor(Session *session, const char *channel, int64_t seq)
{
	Subscription **slot = session_find_subscription(session, channel);
	size_t		i;
	size_t		kept = 0;

	if (slot == NULL || seq < 0)
		return;
	if (seq > (*slot)->floor)
		(*slot)->floor = seq;
	for (i = 0; i < session->queue_len; i++)
	{
		Packet	   *packet = session->queue[i];

		if (packet->seq >= 0 && packet->seq <= seq && strcmp(packet->channel, channel) == 0)
		{
			packet_unref(packet);
			session->table->queued--;
			continue;
		}
		session->queue[kept++] = packet;
	}
	session->queue_len = kept;
	if (kept > 0)
		return;
	/* nothing left to carry */
	if (session->state == SESSION_HAVE_PACKET)
		session->state = SESSION_WAITING;
	session_due_remove(session);
}

void
session_foreach_channel(const Session *session,
						void (*fn) (void *arg, const char *channel), void *arg)
{
	size_t		i;

	for (i = 0; i < session->nsubscriptions; i++)
		fn(arg, channel_name(session->subscriptions[i]->channel));
}

/* ---- the end ------------------------------------------------------------ */

static ProtoCondition
session_end_condition(SessionEnd why)
{
	switch (why)
	{
		case SESSION_END_OVERFLOW:
			return PROTO_OVERFLOW;
		case SESSION_END_SHUTDOWN:
			return PROTO_SYSTEM_SHUTDOWN;
		case SESSION_END_REVOKED:
			return PROTO_FORBIDDEN;
		default:
			return PROTO_ITEM_NOT_FOUND;
	}
}

void
session_end(Session *session, SessionEnd why)
{
	SessionTable *table = session->table;
	Session   **link = &table->buckets[session->hash & (table->nbuckets - 1)];
	ProtoCondition condition = session_end_condition(why);
	size_t		i;

	/* out of the table first: nothing below can reach it again */
	while (*link != session)
		link = &(*link)->hash_next;
	*link = session->hash_next;
	table->nsessions--;

	loop_timer_stop(table->loop, &session->wait_timer);
	loop_timer_stop(table->loop, &session->inactivity_timer);
	session_due_remove(session);

	if (session->held != NULL)
	{
		HttpRequest *held = session->held;

		session->held = NULL;
		if (why == SESSION_END_TERMINATE)
			session_answer_poll(session, held, session->held_rid);
		else
			session_answer_error(session, held, condition, session_end_name(why));
	}
	for (i = 0; i < SESSION_MAX_WINDOW; i++)
	{
		if (session->parked[i].req == NULL)
			continue;
		session_answer_error(session, session->parked[i].req, condition,
							 session_end_name(why));
		proto_request_free(session->parked[i].request);
		free(session->parked[i].request);
	}

	table->hooks.ended(table->hooks.ctx, session, why);

	while (session->nsubscriptions > 0)
		channel_unsubscribe(table->channels,
							session->subscriptions[--session->nsubscriptions]);
	free(session->subscriptions);
	while (session->nheld_channels > 0)
		session_drop_held(session, &session->held_channels[0]);
	for (i = 0; i < session->queue_len; i++)
		packet_unref(session->queue[i]);
	table->queued -= session->queue_len;
	free(session->queue);
	answer_unref(session->cache[CACHE_POLL].answer);
	answer_unref(session->cache[CACHE_WORK].answer);
	free(session->subject);
	free(session->auth_json);
	free(session);
}
