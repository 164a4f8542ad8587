/*
 * session_test.c — the session state machine, the rid window and the
 * channel table, driven event by event with a real event loop and a host
 * that records what the session asks of it (answers, holds, work, ends).
 * No network here: that is the black-box suite's job.
 */
#include "../session.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

/* The HTTP layer's request, as far as these tests need one. */
struct HttpRequest
{
	int			id;
};

#define MAX_EVENTS 64

typedef struct Sent
{
	int			req;
	int			status;
	size_t		pieces;			/* of the answer's body */
	size_t		len;			/* of the whole body */
	char		body[512];		/* its beginning */
} Sent;

typedef struct Host
{
	Sent		answers[MAX_EVENTS];
	int			nanswers;
	int			held[MAX_EVENTS];
	int			nheld;
	int			work[MAX_EVENTS];	/* request ids given as work */
	uint64_t	work_rid[MAX_EVENTS];
	int			nwork;
	SessionEnd	ended[MAX_EVENTS];
	int			nended;
	char		listens[MAX_EVENTS][64];
	int			nlistens;
	char		unlistens[MAX_EVENTS][64];
	int			nunlistens;
} Host;

static Host host;
static Loop *loop;
static ChannelTable *channels;
static SessionTable *sessions;
static HttpRequest requests[256];

static void
host_answer(void *ctx, HttpRequest *req, Answer *answer)
{
	Sent	   *a = &host.answers[host.nanswers++ % MAX_EVENTS];
	Buf			body = BUF_INIT;

	(void) ctx;
	answer_flatten(answer, &body);
	a->req = req->id;
	a->status = answer_status(answer);
	a->pieces = answer_npieces(answer);
	a->len = body.len;
	snprintf(a->body, sizeof(a->body), "%.*s", (int) body.len, body.data ? body.data : "");
	buf_free(&body);
}

static void
host_hold(void *ctx, HttpRequest *req, Session *session)
{
	(void) ctx;
	(void) session;
	host.held[host.nheld++ % MAX_EVENTS] = req->id;
}

static void
host_work(void *ctx, Session *session, HttpRequest *req, const ProtoRequest *request)
{
	(void) ctx;
	(void) session;
	host.work[host.nwork % MAX_EVENTS] = req->id;
	host.work_rid[host.nwork % MAX_EVENTS] = request->rid;
	host.nwork++;
}

static void
host_ended(void *ctx, Session *session, SessionEnd why)
{
	(void) ctx;
	(void) session;
	host.ended[host.nended++ % MAX_EVENTS] = why;
}

static void
host_listen(void *ctx, const char *channel)
{
	(void) ctx;
	snprintf(host.listens[host.nlistens++ % MAX_EVENTS], 64, "%s", channel);
}

static void
host_unlisten(void *ctx, const char *channel)
{
	(void) ctx;
	snprintf(host.unlistens[host.nunlistens++ % MAX_EVENTS], 64, "%s", channel);
}

static void
host_deliver(void *ctx, void *subscriber, Packet *packet)
{
	(void) ctx;
	session_packet(subscriber, packet);
}

static void
setup(size_t max_pending, uint64_t inactivity_ms)
{
	SessionHooks hooks = {host_answer, host_hold, host_work, host_ended, NULL, NULL};
	ChannelHooks channel_hooks = {host_listen, host_unlisten, host_deliver, NULL};
	SessionLimits limits = {1000, inactivity_ms, max_pending, 2};
	char		err[128];

	memset(&host, 0, sizeof(host));
	loop = loop_create(err, sizeof(err));
	channels = channel_table_create(&channel_hooks);
	sessions = session_table_create(loop, channels, &hooks, &limits);
}

static void
teardown(void)
{
	session_table_destroy(sessions, SESSION_END_SHUTDOWN);
	channel_table_destroy(channels);
	loop_destroy(loop);
}

/* A decoded request: a poll, or with one send item when send is set. */
static ProtoRequest *
make_request(const char *sid, uint64_t rid, bool send, bool terminate)
{
	ProtoRequest *request = calloc(1, sizeof(ProtoRequest));

	request->has_sid = true;
	snprintf(request->sid, sizeof(request->sid), "%s", sid);
	request->rid = rid;
	request->terminate = terminate;
	if (send)
	{
		request->nsend = 1;
		request->send = calloc(1, sizeof(ProtoSendItem));
		snprintf(request->send[0].channel, sizeof(request->send[0].channel), "c");
		request->send[0].data_json = strdup("1");
	}
	return request;
}

static HttpRequest *
req(int id)
{
	requests[id].id = id;
	return &requests[id];
}

static void
poll_rid(Session *s, int id, uint64_t rid)
{
	session_request(s, req(id), make_request(session_sid(s), rid, false, false));
}

static void
stop_loop(Loop *l, LoopTimer *timer, void *arg)
{
	(void) timer;
	(void) arg;
	loop_stop(l);
}

/* Run the loop for about ms milliseconds. */
static void
run_for(uint64_t ms)
{
	LoopTimer	stop;

	loop_timer_init(&stop, stop_loop, NULL);
	loop_timer_start(loop, &stop, ms);
	loop_run(loop);
	loop_timer_stop(loop, &stop);
}

static Sent *
last_answer(void)
{
	return host.nanswers ? &host.answers[(host.nanswers - 1) % MAX_EVENTS] : NULL;
}

static Packet *
publish(const char *channel, int64_t seq, const char *data)
{
	Packet	   *packet = packet_new(channel, seq, data, strlen(data));

	channel_publish(channels, packet);
	session_flush(sessions, SIZE_MAX);	/* as the HTTP layer does after each event */
	return packet;
}

/* Published without the flush: the answers stay due. */
static Packet *
publish_only(const char *channel, int64_t seq, const char *data)
{
	Packet	   *packet = packet_new(channel, seq, data, strlen(data));

	channel_publish(channels, packet);
	return packet;
}

static void
test_answers_due(void)
{
	Session    *s[3];
	char		sid[16];
	int			i;

	setup(3, 10000);
	for (i = 0; i < 3; i++)
	{
		snprintf(sid, sizeof(sid), "d%d", i);
		s[i] = session_create(sessions, sid, NULL, 10, 0);
		session_subscribe(s[i], "fan");
		poll_rid(s[i], 1 + i, 11);
	}
	packet_unref(publish_only("fan", 1, "\"one\""));
	UNIT_CHECK(host.nanswers == 0 && session_flush_pending(sessions) &&
			   session_state(s[0]) == SESSION_HAVE_REQUEST && session_queue_length(s[0]) == 1,
			   "a packet for held polls makes their answers due, not sent");
	packet_unref(publish_only("fan", 2, "\"two\""));
	UNIT_CHECK(host.nanswers == 0 && session_queue_length(s[2]) == 2,
			   "a second packet joins the first in the due answer");
	/* s[2] is first: the channel serves its subscribers from the last */
	UNIT_CHECK(session_flush(sessions, 1) == 1 && host.nanswers == 1 &&
			   last_answer()->req == 3 && strstr(last_answer()->body, "\"one\"") != NULL &&
			   strstr(last_answer()->body, "\"two\"") != NULL &&
			   session_flush_pending(sessions),
			   "session_flush answers no more than asked, with every queued packet");

	/* of the two still due: one's client leaves, the other polls again */
	session_client_gone(s[1], req(2));
	UNIT_CHECK(session_state(s[1]) == SESSION_HAVE_PACKET && session_queue_length(s[1]) == 2,
			   "a due poll whose client left keeps its packets (have_packet)");
	poll_rid(s[0], 10, 12);
	UNIT_CHECK(host.nanswers == 2 && last_answer()->req == 1 &&
			   strstr(last_answer()->body, "\"two\"") != NULL &&
			   session_state(s[0]) == SESSION_HAVE_REQUEST,
			   "a new poll answers the due one with its packets and is held");
	UNIT_CHECK(session_flush(sessions, 10) == 0 && !session_flush_pending(sessions),
			   "nothing is due any more");

	/* ending a session whose answer is due takes it off the list */
	packet_unref(publish_only("fan", 3, "\"three\""));
	session_end(s[0], SESSION_END_SHUTDOWN);
	UNIT_CHECK(!session_flush_pending(sessions) && session_flush(sessions, 10) == 0,
			   "an ended session is no longer due");
	teardown();
}

static void
test_poll_and_packets(void)
{
	Session    *s;
	Packet	   *p;

	setup(100, 10000);
	s = session_create(sessions, "s1", NULL, 10, 0);
	UNIT_CHECK(s != NULL && session_state(s) == SESSION_WAITING,
			   "a new session is waiting");
	UNIT_CHECK(session_create(sessions, "s1", NULL, 1, 0) == NULL,
			   "a sid cannot be used twice");
	UNIT_CHECK(session_wait_s(s) == 1, "wait 0 asks for the maximum (1 s here)");
	UNIT_CHECK(session_subscribe(s, "grid:1") && host.nlistens == 1 &&
			   strcmp(host.listens[0], "grid:1") == 0,
			   "the first subscription to a channel asks for LISTEN");
	UNIT_CHECK(!session_subscribe(s, "grid:1") && host.nlistens == 1,
			   "subscribing twice changes nothing");

	poll_rid(s, 1, 11);
	UNIT_CHECK(session_state(s) == SESSION_HAVE_REQUEST && host.nheld == 1 &&
			   host.nanswers == 0,
			   "waiting + poll: the poll is held, nothing answered");

	p = publish("grid:1", 5, "{\"x\":1}");
	UNIT_CHECK(host.nanswers == 1 && last_answer()->req == 1 &&
			   strcmp(last_answer()->body,
					  "{\"rid\":11,\"packets\":[{\"channel\":\"grid:1\",\"seq\":5,\"data\":{\"x\":1}}]}") == 0,
			   "have_request + packet: the held poll carries it (%s)",
			   last_answer() ? last_answer()->body : "");
	UNIT_CHECK(session_state(s) == SESSION_WAITING, "... and the session waits again");
	packet_unref(p);

	packet_unref(publish("grid:1", 5, "\"again\""));
	UNIT_CHECK(session_state(s) == SESSION_WAITING && session_queue_length(s) == 0,
			   "a durable seq already published is dropped as a duplicate");
	packet_unref(publish("grid:1", 6, "\"six\""));
	packet_unref(publish("grid:1", -1, "\"plain\""));
	UNIT_CHECK(session_state(s) == SESSION_HAVE_PACKET && session_queue_length(s) == 2,
			   "waiting + packets: they are queued (have_packet)");

	poll_rid(s, 2, 12);
	UNIT_CHECK(host.nanswers == 2 && last_answer()->req == 2 &&
			   strstr(last_answer()->body, "\"seq\":6") != NULL &&
			   strstr(last_answer()->body, "\"plain\"") != NULL,
			   "have_packet + poll: answered at once with the queue");
	UNIT_CHECK(session_state(s) == SESSION_WAITING && session_queue_length(s) == 0,
			   "... and the queue is empty again");

	poll_rid(s, 3, 12);
	UNIT_CHECK(host.nanswers == 3 && last_answer()->req == 3 &&
			   strcmp(last_answer()->body, host.answers[1].body) == 0,
			   "a rid already answered gets the same answer again");

	poll_rid(s, 4, 13);
	poll_rid(s, 5, 14);
	UNIT_CHECK(host.nanswers == 4 && last_answer()->req == 4 &&
			   strcmp(last_answer()->body, "{\"rid\":13,\"packets\":[]}") == 0 &&
			   session_state(s) == SESSION_HAVE_REQUEST,
			   "have_request + poll: the old poll is answered empty, the new one held");

	poll_rid(s, 6, 14);
	UNIT_CHECK(host.nanswers == 5 && last_answer()->req == 5 &&
			   session_state(s) == SESSION_HAVE_REQUEST,
			   "a retry of the held poll replaces it; the old copy is answered");

	run_for(1200);
	UNIT_CHECK(host.nanswers == 6 && last_answer()->req == 6 &&
			   strcmp(last_answer()->body, "{\"rid\":14,\"packets\":[]}") == 0 &&
			   session_state(s) == SESSION_WAITING,
			   "have_request + wait expires: answered empty, waiting");

	UNIT_CHECK(session_unsubscribe(s, "grid:1") && host.nunlistens == 1,
			   "the last unsubscription asks for UNLISTEN");
	teardown();
}

/* A large packet is shared by the answers, not copied into each. */
static void
test_large_packets_shared(void)
{
	Session    *s[2];
	char	   *data = malloc(ANSWER_SHARE_MIN + 3);
	Packet	   *big;
	int			i;

	setup(100, 10000);
	data[0] = '"';
	memset(data + 1, 'x', ANSWER_SHARE_MIN);
	data[ANSWER_SHARE_MIN + 1] = '"';
	data[ANSWER_SHARE_MIN + 2] = '\0';
	for (i = 0; i < 2; i++)
	{
		s[i] = session_create(sessions, i ? "L1" : "L0", NULL, 10, 0);
		session_subscribe(s[i], "big");
		poll_rid(s[i], 1 + i, 11);
	}
	big = publish_only("big", 1, data);
	session_flush(sessions, SIZE_MAX);
	UNIT_CHECK(host.nanswers == 2 && host.answers[0].pieces == 3 && host.answers[1].pieces == 3,
			   "a poll's answer with a large packet is in pieces (head, packet, tail)");
	UNIT_CHECK(big->refs == 1 + 2,
			   "the packet is referenced, not copied: by each session's kept answer (refs %d)",
			   big->refs);
	UNIT_CHECK(host.answers[0].len == strlen("{\"rid\":11,\"packets\":[") + big->len + 2 &&
			   strncmp(host.answers[0].body, "{\"rid\":11,\"packets\":[{\"channel\":\"big\",\"seq\":1,", 40) == 0,
			   "and the pieces make the whole answer");
	packet_unref(publish("big", 2, "\"small\""));
	poll_rid(s[0], 3, 12);
	poll_rid(s[0], 4, 13);
	UNIT_CHECK(host.answers[(host.nanswers - 1) % MAX_EVENTS].pieces == 1,
			   "a poll's answer with small packets is one buffer");
	UNIT_CHECK(big->refs == 1 + 1,
			   "an answer no longer kept lets go of the packet (refs %d)", big->refs);
	{
		/* many packets that add up to more than ANSWER_SHARE_MIN: one buffer */
		Packet	   *many[40];
		Answer	   *answer;

		char		piece[602];

		memset(piece, 'y', sizeof(piece));
		piece[0] = piece[600] = '"';
		piece[601] = '\0';
		for (i = 0; i < 40; i++)
			many[i] = packet_new("many", i + 1, piece, strlen(piece));
		answer = answer_poll(7, many, 40);
		UNIT_CHECK(answer_npieces(answer) == 1 && answer_length(answer) > ANSWER_SHARE_MIN,
				   "an answer of many packets is one buffer, however large (at most %d pieces)",
				   ANSWER_PIECES_MAX);
		answer_unref(answer);
	}
	teardown();
	UNIT_CHECK(big->refs == 1, "ended sessions let go of it too");
	packet_unref(big);
	free(data);
}

/*
 * A work answer goes out while a poll with an earlier rid is held: the
 * client hands out packets in rid order, so the held poll is answered
 * first whenever the work answer would carry packets.
 */
static void
test_work_answers_held_first(void)
{
	Session    *s;
	Buf			body = BUF_INIT;
	Packet	   *catch_up[1];

	setup(100, 10000);
	s = session_create(sessions, "t1", NULL, 10, 0);
	session_subscribe(s, "c");
	poll_rid(s, 1, 11);
	session_take_packets_after(s, 12, &body, NULL, 0);
	UNIT_CHECK(host.nanswers == 0 && session_state(s) == SESSION_HAVE_REQUEST &&
			   strstr(body.data, "\"packets\":[]") != NULL,
			   "nothing queued: the work answer carries nothing and the poll stays held");
	buf_reset(&body);

	packet_unref(publish_only("c", 1, "\"one\""));
	UNIT_CHECK(session_flush_pending(sessions) && host.nanswers == 0, "the held poll is due");
	session_take_packets_after(s, 12, &body, NULL, 0);
	UNIT_CHECK(host.nanswers == 1 && last_answer()->req == 1 &&
			   strstr(last_answer()->body, "\"one\"") != NULL,
			   "the held poll (the earlier rid) is answered first, with the queued packet");
	UNIT_CHECK(strstr(body.data, "\"packets\":[]") != NULL,
			   "and the work answer carries nothing (%s)", body.data);
	UNIT_CHECK(!session_flush_pending(sessions) && session_state(s) == SESSION_WAITING,
			   "nothing is due, nothing held");
	buf_reset(&body);

	/* a catch-up comes before the live packets: the held poll goes empty */
	poll_rid(s, 2, 12);
	packet_unref(publish_only("c", 3, "\"three\""));
	catch_up[0] = packet_new("c", 2, "\"two\"", 5);
	session_take_packets_after(s, 13, &body, catch_up, 1);
	UNIT_CHECK(host.nanswers == 2 && last_answer()->req == 2 &&
			   strstr(last_answer()->body, "\"packets\":[]") != NULL,
			   "a catch-up answer: the held poll is answered first, empty (%s)", last_answer()->body);
	UNIT_CHECK(strstr(body.data, "\"two\"") != NULL && strstr(body.data, "\"three\"") != NULL &&
			   strstr(body.data, "\"two\"") < strstr(body.data, "\"three\""),
			   "and the work answer carries the catch-up, then the live packet (%s)", body.data);
	UNIT_CHECK(!session_flush_pending(sessions) && session_state(s) == SESSION_WAITING &&
			   session_queue_length(s) == 0, "nothing is left queued or held");
	packet_unref(catch_up[0]);
	buf_free(&body);
	teardown();
}

/*
 * The held poll's client leaves; a later rid's answer takes the queue; then
 * the poll's retry comes.  Packets given to it now would reach a client
 * that hands out in rid order before the older ones it already has.
 */
static void
test_retry_after_later_answer(void)
{
	Session    *s;
	Buf			body = BUF_INIT;

	setup(100, 10000);
	s = session_create(sessions, "r1", NULL, 10, 10);
	session_subscribe(s, "c");
	poll_rid(s, 1, 11);
	session_client_gone(s, req(1));
	packet_unref(publish("c", 1, "\"one\""));
	session_take_packets_after(s, 12, &body, NULL, 0);
	UNIT_CHECK(strstr(body.data, "\"one\"") != NULL, "the work answer (rid 12) takes the queued packet");
	packet_unref(publish("c", 2, "\"two\""));
	poll_rid(s, 2, 11);
	UNIT_CHECK(host.nanswers == 1 && last_answer()->req == 2 &&
			   strstr(last_answer()->body, "\"packets\":[]") != NULL,
			   "the retried poll (rid 11) is answered at once, empty (%s)", last_answer()->body);
	UNIT_CHECK(session_queue_length(s) == 1, "the newer packet stays queued");
	poll_rid(s, 3, 12);
	UNIT_CHECK(host.nanswers == 2 && last_answer()->req == 3 &&
			   strstr(last_answer()->body, "\"two\"") != NULL,
			   "the next poll carries it");
	buf_free(&body);
	teardown();
}

/*
 * A send answered 503 is done again when the client retries it, while its
 * polls went on: a later rid carried packets.  The client hands out the
 * redone answer's packets before that poll's, so the redone answer must
 * not take the queue (newer than what the poll carried).
 */
static void
test_redo_behind_polls(void)
{
	const char *unavailable = "{\"error\":\"service-unavailable\",\"message\":\"x\"}";
	Session    *s;
	Buf			body = BUF_INIT;

	setup(100, 10000);
	s = session_create(sessions, "w1", NULL, 10, 10);
	session_subscribe(s, "c");
	session_request(s, req(1), make_request("w1", 11, true, false));
	session_answer_work(s, req(1), 11, 503, unavailable, strlen(unavailable));
	poll_rid(s, 2, 12);
	packet_unref(publish("c", 1, "\"one\""));
	UNIT_CHECK(host.nanswers == 2 && last_answer()->req == 2 && strstr(last_answer()->body, "\"one\"") != NULL,
			   "poll 12 carries the first packet");
	session_request(s, req(4), make_request("w1", 11, true, false));
	UNIT_CHECK(host.work[host.nwork - 1] == 4, "the send's retry (rid 11) is done again");
	packet_unref(publish("c", 2, "\"two\""));
	session_take_packets_after(s, 11, &body, NULL, 0);
	UNIT_CHECK(strstr(body.data, "\"packets\":[]") != NULL,
			   "its answer takes nothing of the queue (%s)", body.data);
	session_answer_work(s, req(4), 11, 200, "{}", 2);
	poll_rid(s, 3, 13);
	UNIT_CHECK(host.nanswers == 4 && last_answer()->req == 3 && strstr(last_answer()->body, "\"two\"") != NULL,
			   "poll 13 carries the second packet");
	buf_free(&body);
	teardown();
}

static int
answers_to(int id)
{
	int			i;
	int			n = 0;

	for (i = 0; i < host.nanswers && i < MAX_EVENTS; i++)
		if (host.answers[i].req == id)
			n++;
	return n;
}

/*
 * A resume cut short (the client has 1000 of 2500) while poll 11 is held:
 * poll 11 is answered, empty, with the cut answer (rid 12).  The client may
 * poll again (rid 13) before it has read that it must ask again: that poll
 * does not let the channel go, or live 2501 would reach it first.
 */
static void
test_poll_after_cut(void)
{
	Session    *s;
	Buf			body = BUF_INIT;
	Packet	   *catch_up[1];

	setup(100, 10000);
	s = session_create(sessions, "k1", NULL, 10, 10);
	session_subscribe(s, "small");
	poll_rid(s, 1, 11);
	session_request(s, req(2), make_request("k1", 12, true, false));
	session_subscribe(s, "big");
	session_hold_channel(s, "big");
	packet_unref(publish("big", 2501, "\"live\""));
	session_cut_channel(s, "big", 1000, 2500);
	catch_up[0] = packet_new("big", 1000, "\"c1000\"", 7);
	session_take_packets_after(s, 12, &body, catch_up, 1);
	session_answer_work(s, req(2), 12, 200, body.data, body.len);
	UNIT_CHECK(answers_to(1) == 1 && strstr(host.answers[0].body, "\"packets\":[]") != NULL,
			   "the held poll is answered, empty, with the cut catch-up");
	poll_rid(s, 3, 13);
	session_flush(sessions, SIZE_MAX);
	UNIT_CHECK(answers_to(3) == 0 && session_state(s) == SESSION_HAVE_REQUEST,
			   "a poll right after the cut does not let the channel go: it is held, live 2501 stays back");
	UNIT_CHECK(session_held_after(s, "big", 2500) == 1, "2501 is still held for the ask-again");
	packet_unref(catch_up[0]);
	buf_free(&body);
	teardown();
}

/*
 * A subscribe (rid 12) while poll 11 is held, with a live packet of the new
 * channel held back during the step: as the broker does, the held poll is
 * answered before the channel is let go, so the packet goes with the
 * answer that subscribes its channel, never before it.
 */
static void
test_subscribe_packets_after_answer(void)
{
	Session    *s;
	Buf			body = BUF_INIT;

	setup(100, 10000);
	s = session_create(sessions, "k2", NULL, 10, 10);
	session_subscribe(s, "a");
	poll_rid(s, 1, 11);
	session_request(s, req(2), make_request("k2", 12, true, false));
	session_subscribe(s, "x");
	session_hold_channel(s, "x");
	packet_unref(publish("x", 5, "\"x5\""));
	UNIT_CHECK(host.nanswers == 0 && session_held_after(s, "x", 4) == 1,
			   "one packet of x is held above its position (4); poll 11 is still held");
	session_answer_held_before(s, 12, true);
	UNIT_CHECK(answers_to(1) == 1 && strstr(last_answer()->body, "\"packets\":[]") != NULL,
			   "the held poll (11) is answered first, before x is let go");
	UNIT_CHECK(session_release_channel(s, "x", 4, false), "x is let go from its position");
	session_take_packets_after(s, 12, &body, NULL, 0);
	UNIT_CHECK(strstr(body.data, "x5") != NULL, "the subscribe answer carries x's packet (%s)", body.data);
	session_answer_work(s, req(2), 12, 200, "{}", 2);
	buf_free(&body);
	teardown();
}

/* A work request that lets a cut channel go and so overflows the session is answered (410). */
static void
test_release_cuts_overflow(void)
{
	Session    *s;

	setup(3, 10000);
	s = session_create(sessions, "k3", NULL, 10, 10);
	session_subscribe(s, "c");
	session_subscribe(s, "h");
	packet_unref(publish("c", 1, "\"c1\""));
	packet_unref(publish("c", 2, "\"c2\""));
	session_hold_channel(s, "h");
	packet_unref(publish("h", 10, "\"h10\""));
	session_cut_channel(s, "h", 5, 9);
	packet_unref(publish("c", 3, "\"c3\""));
	session_request(s, req(7), make_request("k3", 11, true, false));
	UNIT_CHECK(host.nended == 1 && host.ended[0] == SESSION_END_OVERFLOW &&
			   session_find(sessions, "k3") == NULL, "letting the cut channel go overflows the session");
	UNIT_CHECK(answers_to(7) == 1 && last_answer()->req == 7 && last_answer()->status == 410,
			   "the request that did it is answered 410 (answers to it: %d)", answers_to(7));
	teardown();
}

/* Live packets held back while the host settles where a client starts. */
static void
test_hold_and_release(void)
{
	Session    *s;

	setup(5, 10000);
	s = session_create(sessions, "h1", NULL, 10, 0);
	session_subscribe(s, "h");
	session_hold_channel(s, "h");
	poll_rid(s, 1, 11);
	packet_unref(publish("h", 4, "\"four\""));
	packet_unref(publish("h", 5, "\"five\""));
	packet_unref(publish("h", 6, "\"six\""));
	UNIT_CHECK(host.nanswers == 0 && session_queue_length(s) == 0,
			   "held back: nothing reaches the held poll");
	UNIT_CHECK(session_release_channel(s, "h", 4, true) && host.nanswers == 0,
			   "a release that keeps holding (a resume cut short) lets nothing go");
	UNIT_CHECK(session_release_channel(s, "h", 5, false) && session_flush(sessions, SIZE_MAX) == 1 &&
			   host.nanswers == 1 &&
			   strstr(last_answer()->body, "\"six\"") != NULL &&
			   strstr(last_answer()->body, "\"five\"") == NULL &&
			   strstr(last_answer()->body, "\"four\"") == NULL,
			   "the release drops what the client has (up to 5) and lets the rest go (%s)",
			   host.nanswers ? last_answer()->body : "-");
	packet_unref(publish("h", 7, "\"seven\""));
	UNIT_CHECK(session_queue_length(s) == 1, "afterwards the channel's packets flow again");
	session_hold_channel(s, "h");
	packet_unref(publish("h", 8, "8"));
	packet_unref(publish("h", 9, "9"));
	packet_unref(publish("h", 10, "10"));
	packet_unref(publish("h", 11, "11"));
	UNIT_CHECK(session_find(sessions, "h1") != NULL, "one queued and four held: within max_pending (5)");
	packet_unref(publish("h", 12, "12"));
	UNIT_CHECK(session_find(sessions, "h1") == NULL && host.ended[host.nended - 1] == SESSION_END_OVERFLOW,
			   "held packets count against max_pending: more end the session (overflow)");
	teardown();
}

static void
test_floor(void)
{
	Session    *s;

	setup(100, 10000);
	s = session_create(sessions, "f1", NULL, 10, 0);
	session_subscribe(s, "f");
	session_subscribe(s, "g");
	/* live packets queued between the subscription and the position */
	packet_unref(publish("f", 7, "\"seven\""));
	packet_unref(publish("g", 3, "\"g3\""));
	packet_unref(publish("f", 8, "\"eight\""));
	session_set_floor(s, "f", 7);
	UNIT_CHECK(session_queue_length(s) == 2 && session_table_queued(sessions) == 2,
			   "the floor drops the channel's queued packets up to it, and only those");
	session_set_floor(s, "f", 10);
	UNIT_CHECK(session_queue_length(s) == 1, "a higher floor drops more");
	packet_unref(publish("f", 9, "\"late\""));
	UNIT_CHECK(session_queue_length(s) == 1,
			   "a packet new to the channel but at or below the floor is not queued");
	session_set_floor(s, "f", 3);
	packet_unref(publish("f", 11, "\"eleven\""));
	UNIT_CHECK(session_queue_length(s) == 2, "a lower floor does not lower it; later seqs pass");
	session_set_floor(s, "g", 3);
	session_set_floor(s, "f", 11);
	UNIT_CHECK(session_queue_length(s) == 0 && session_state(s) == SESSION_WAITING,
			   "a queue emptied by the floor leaves have_packet");
	teardown();
}

static void
test_client_gone(void)
{
	Session    *s;

	setup(100, 10000);
	s = session_create(sessions, "s2", "alice", 0, 1);
	UNIT_CHECK(strcmp(session_subject(s), "alice") == 0, "the subject is kept");
	session_subscribe(s, "c");
	poll_rid(s, 1, 1);
	session_client_gone(s, req(1));
	UNIT_CHECK(session_state(s) == SESSION_WAITING && host.nanswers == 0,
			   "have_request + client gone: the request is dropped unanswered");
	packet_unref(publish("c", 1, "\"kept\""));
	UNIT_CHECK(session_state(s) == SESSION_HAVE_PACKET && host.nanswers == 0,
			   "a packet after the client left is queued, not written to the dead request");
	poll_rid(s, 2, 2);
	UNIT_CHECK(host.nanswers == 1 && last_answer()->req == 2 &&
			   strstr(last_answer()->body, "\"kept\"") != NULL,
			   "the next request carries it");
	teardown();
}

static void
test_rid_window(void)
{
	const char *work_answer = "{\"rid\":102,\"results\":[{\"ok\":true}]}";
	Session    *s;

	setup(100, 10000);
	s = session_create(sessions, "s3", NULL, 100, 0);
	session_request(s, req(1), make_request("s3", 102, true, false));
	UNIT_CHECK(host.nwork == 0 && host.nanswers == 0,
			   "a rid one ahead is parked until its turn");
	poll_rid(s, 2, 101);
	UNIT_CHECK(host.nheld == 1 && host.nwork == 1 && host.work[0] == 1 &&
			   host.work_rid[0] == 102,
			   "when the missing rid comes, both run in rid order (poll held, send to the host)");

	poll_rid(s, 3, 102);
	UNIT_CHECK(last_answer() && last_answer()->req == 3 && last_answer()->status == 429,
			   "a retry of a rid still being worked on is refused with 429");

	session_request(s, req(4), make_request("s3", 103, false, false));
	UNIT_CHECK(host.nheld == 1, "a request behind busy work waits its turn");
	session_answer_work(s, req(1), 102, 200, work_answer, strlen(work_answer));
	UNIT_CHECK(host.answers[host.nanswers - 2].req == 1 &&
			   host.answers[host.nanswers - 1].req == 2 && host.nheld == 2,
			   "the work answer goes out, then the parked poll replaces the held one");

	poll_rid(s, 5, 102);
	UNIT_CHECK(last_answer()->req == 5 &&
			   strcmp(last_answer()->body, work_answer) == 0,
			   "a work answer is resent as it was for its rid");

	{
		const char *unavailable = "{\"error\":\"service-unavailable\",\"message\":\"x\"}";
		int			nwork = host.nwork;

		session_request(s, req(11), make_request("s3", 104, true, false));
		UNIT_CHECK(host.nwork == nwork + 1 && host.work_rid[nwork % MAX_EVENTS] == 104,
				   "a send goes to the host");
		session_answer_work(s, req(11), 104, 503, unavailable, strlen(unavailable));
		session_request(s, req(12), make_request("s3", 104, true, false));
		UNIT_CHECK(host.nwork == nwork + 2 && host.work[(nwork + 1) % MAX_EVENTS] == 12 &&
				   host.work_rid[(nwork + 1) % MAX_EVENTS] == 104,
				   "answered 503 (the database was away), its retry is done again, not replayed");
		session_answer_work(s, req(12), 104, 200, work_answer, strlen(work_answer));
		session_request(s, req(13), make_request("s3", 104, true, false));
		UNIT_CHECK(host.nwork == nwork + 2 && last_answer()->req == 13 &&
				   last_answer()->status == 200,
				   "once done, a further retry gets the answer again");
	}

	poll_rid(s, 6, 107);
	UNIT_CHECK(host.answers[host.nanswers - 2].req == 6 &&
			   host.answers[host.nanswers - 2].status == 404 &&
			   strstr(host.answers[host.nanswers - 2].body, "item-not-found") != NULL &&
			   host.nended == 1 && host.ended[0] == SESSION_END_PROTOCOL,
			   "a rid beyond the window ends the session with item-not-found");
	UNIT_CHECK(session_find(sessions, "s3") == NULL, "... and the session is gone");
	UNIT_CHECK(last_answer()->req == 4 && last_answer()->status == 404,
			   "its held poll is answered with the same condition");

	s = session_create(sessions, "s4", NULL, 100, 0);
	poll_rid(s, 7, 101);
	poll_rid(s, 8, 102);
	poll_rid(s, 9, 103);
	poll_rid(s, 10, 50);
	UNIT_CHECK(host.answers[host.nanswers - 2].req == 10 &&
			   host.answers[host.nanswers - 2].status == 404 &&
			   host.ended[host.nended - 1] == SESSION_END_PROTOCOL,
			   "a rid older than the window ends the session too");
	teardown();
}

static void
test_overflow_inactivity_terminate(void)
{
	Session    *s;
	Session    *t;
	int			i;

	setup(3, 100);
	s = session_create(sessions, "s5", NULL, 0, 0);
	t = session_create(sessions, "s6", NULL, 0, 0);
	session_subscribe(s, "busy");
	session_subscribe(t, "busy");
	poll_rid(t, 1, 1);
	for (i = 1; i <= 4; i++)
	{
		packet_unref(publish("busy", i, "0"));
		if (session_find(sessions, "s6") != NULL && session_state(t) == SESSION_WAITING)
			poll_rid(t, 10 + i, 1 + i);
	}
	UNIT_CHECK(session_find(sessions, "s5") == NULL && host.nended == 1 &&
			   host.ended[0] == SESSION_END_OVERFLOW,
			   "a queue past max_pending ends the session (overflow)");
	UNIT_CHECK(session_find(sessions, "s6") != NULL &&
			   channel_subscribers(channels, "busy") == 1,
			   "other subscribers of the channel keep going");

	run_for(250);
	UNIT_CHECK(session_find(sessions, "s6") != NULL,
			   "a session with a held poll is not inactive");

	s = session_create(sessions, "s7", NULL, 0, 0);
	run_for(250);
	UNIT_CHECK(session_find(sessions, "s7") == NULL &&
			   host.ended[host.nended - 1] == SESSION_END_INACTIVITY,
			   "a session without a request for the inactivity period ends");

	packet_unref(publish("busy", 9, "\"last\""));
	session_request(t, req(30), make_request("s6", 6, false, true));
	UNIT_CHECK(session_find(sessions, "s6") == NULL &&
			   host.ended[host.nended - 1] == SESSION_END_TERMINATE,
			   "terminate ends the session");
	UNIT_CHECK(channel_count(channels) == 0 && host.nunlistens == 1,
			   "the channel nobody needs any more is released");
	teardown();
}

static void
test_shutdown(void)
{
	Session    *s;

	setup(100, 10000);
	s = session_create(sessions, "s8", NULL, 0, 0);
	poll_rid(s, 1, 1);
	teardown();
	UNIT_CHECK(host.nanswers == 1 && host.answers[0].status == 503 &&
			   strstr(host.answers[0].body, "system-shutdown") != NULL &&
			   host.ended[0] == SESSION_END_SHUTDOWN,
			   "shutting down answers held polls with system-shutdown");
}

/* The answer of rid, as the host sent it last for req, has body text. */
static bool
answered_with(int req_id, const char *text)
{
	Sent	   *a = last_answer();

	return a != NULL && a->req == req_id && a->status == 200 && strstr(a->body, text) != NULL;
}

static void
work_rid(Session *s, int id, uint64_t rid, const char *answer)
{
	session_request(s, req(id), make_request(session_sid(s), rid, true, false));
	if (answer != NULL)
		session_answer_work(s, req(id), rid, 200, answer, strlen(answer));
}

/*
 * The client sends its next poll only once it has its last poll's answer,
 * and its next work only once it has its last work's answer: each kept
 * answer must outlive any number of answers of the other kind.
 */
static void
test_answer_cache(void)
{
	Session    *s;

	setup(100, 10000);
	s = session_create(sessions, "s9", NULL, 100, 0);
	poll_rid(s, 1, 101);
	work_rid(s, 2, 102, "{\"rid\":102,\"results\":[]}");
	work_rid(s, 3, 103, "{\"rid\":103,\"results\":[]}");
	work_rid(s, 4, 104, "{\"rid\":104,\"results\":[]}");
	UNIT_CHECK(host.nheld == 1 && answered_with(4, "\"rid\":104"),
			   "three sends are answered one after another while a poll is held");
	poll_rid(s, 5, 105);
	UNIT_CHECK(host.answers[host.nanswers - 1].req == 1, "a new poll answers the held one");
	poll_rid(s, 6, 101);
	UNIT_CHECK(answered_with(6, "\"rid\":101"),
			   "the held poll's answer is kept though three work answers came after its rid");
	poll_rid(s, 7, 106);
	poll_rid(s, 8, 107);
	poll_rid(s, 9, 108);
	work_rid(s, 10, 104, NULL);
	UNIT_CHECK(answered_with(10, "\"rid\":104") && host.nwork == 3,
			   "the last work answer is kept (not redone) though more polls were answered since");
	work_rid(s, 11, 103, NULL);
	UNIT_CHECK(host.answers[host.nanswers - 2].req == 11 &&
			   host.answers[host.nanswers - 2].status == 404 && session_find(sessions, "s9") == NULL,
			   "an older work answer is not: its client had it (404, session ended)");
	teardown();
}

int
main(void)
{
	test_poll_and_packets();
	test_answers_due();
	test_floor();
	test_hold_and_release();
	test_work_answers_held_first();
	test_retry_after_later_answer();
	test_redo_behind_polls();
	test_poll_after_cut();
	test_subscribe_packets_after_answer();
	test_release_cuts_overflow();
	test_large_packets_shared();
	test_client_gone();
	test_rid_window();
	test_answer_cache();
	test_overflow_inactivity_terminate();
	test_shutdown();
	return unit_done();
}
