/*
 * broker.c — the bridge's request logic and delivery path.
 *
 * Setup (a request without sid), in stages, each a query on the pool:
 *   1. authenticate the "auth" object -> subject (or 403);
 *   2. authorize "subscribe" for every channel asked for (or 403);
 *   3. create the session, subscribe (LISTEN where new), and wait until
 *      every LISTEN has taken effect;
 *   4. read each channel's position (comet.last_seq) — every later packet
 *      will be delivered, because the LISTEN came first;
 *   5. for "resume", replay what the client missed up to the position,
 *      with a gap notice for what is no longer kept (a work request that
 *      subscribes may resume too);
 *   6. answer {"sid", "rid", "wait", "hold", "requests", "inactivity",
 *      "subscribed", "positions", "packets"}.
 * Work (subscribe, unsubscribe, send on an existing session) runs the same
 * way and is answered with "results", one per item (subscribe items first,
 * then unsubscribe, then send), new "positions" and any queued packets.
 * Async steps find their session again by sid: it may have ended meanwhile.
 *
 * Delivery: a NOTIFY that carries its packet is published at once.  A
 * wake-up without data ("comet/1 <seq>"), a catch-up after a reconnect and
 * a range of missed seqs wait for comet.replay in their channel's delivery
 * queue (delivery.h), and that channel's later packets wait behind them:
 * each channel's packets reach sessions in order, and a channel waiting for
 * the database holds up no other channel.
 */
#include "broker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "channel.h"
#include "delivery.h"
#include "log.h"
#include "packet.h"
#include "pg.h"
#include "protocol.h"
#include "mem.h"

#define BROKER_SQL_MAX 600
/*
 * A resume answer carries at most max(--max-pending, this) packets a
 * channel, the oldest first; the client resumes again for the rest.
 */
#define BROKER_RESUME_MIN 1000
/* Ended sessions remembered, so that their client learns why (overflow). */
#define BROKER_TOMBSTONES 1024

typedef struct Tombstone
{
	char		sid[PROTO_SID_MAX + 1];
	SessionEnd	why;
	uint64_t	until_ms;
} Tombstone;

typedef struct BrokerStats
{
	unsigned long sessions_created;
	unsigned long packets_delivered;
	unsigned long notifications;
} BrokerStats;

struct Broker
{
	Loop	   *loop;
	Pg		   *pg;
	Http	   *http;
	ChannelTable *channels;
	SessionTable *sessions;
	BrokerOptions options;
	char		node_id[40];
	char		sql_auth[BROKER_SQL_MAX];
	char		sql_authorize[BROKER_SQL_MAX];
	char		sql_receive[BROKER_SQL_MAX];
	char		sql_session[BROKER_SQL_MAX];	/* empty: no presence calls */
	DeliveryQueues *deliveries;
	struct Waiter *waiters;		/* setups and work waiting for LISTENs */
	bool		shutting_down;
	bool		was_connected;
	BrokerStats stats;
	Tombstone	tombstones[BROKER_TOMBSTONES];	/* a ring */
	size_t		next_tombstone;
	LoopTimer	waiter_timer;	/* re-checks waiters after channels went */
};

/* A setup or work request between its async steps. */
typedef struct Step
{
	Broker	   *broker;
	HttpRequest *req;
	bool		setup;
	char		sid[PROTO_SID_MAX + 1];
	uint64_t	rid;
	int			wait;
	char	   *subject;
	char	   *auth_json;
	/* the request's items, copied */
	int			nsubscribe;
	char		(*subscribe)[PROTO_CHANNEL_MAX + 1];
	bool	   *allowed;		/* per subscribe item, then per send item */
	int			nunsubscribe;
	char		(*unsubscribe)[PROTO_CHANNEL_MAX + 1];
	int			nsend;
	ProtoSendItem *send;
	bool	   *send_allowed;
	int			next_send;
	int			nresume;
	ProtoResumeItem *resume;
	int64_t    *resume_limit;	/* per resume item: most packets to read, 0 none */
	int64_t    *resume_last;	/* per resume item: the last seq read, when cut short */
	bool	   *resume_cut;		/* per resume item: the client must ask again */
	/* what the answer will say */
	Buf			results;		/* ,{...},{...} */
	Buf			positions;		/* ,"ch":57 */
	int64_t    *position_of;	/* per subscribe item, -1 if none */
	bool	   *fresh;			/* per subscribe item: subscribed by this step */
	bool	   *holding;		/* per subscribe item: its live packets held back */
	bool	   *held_before;	/* ... since an earlier resume was cut short */
	Packet	  **extra;			/* resume packets and gaps, before the queue */
	size_t		nextra;
} Step;

typedef struct Waiter
{
	struct Waiter *next;
	Step	   *step;
} Waiter;

static void step_positions(Step *step);
static void step_unhold(Step *step, Session *session, bool retried);
static void step_send_next(Step *step);
static void broker_release_waiters(Broker *broker);

static void
broker_waiter_timer(Loop *loop, LoopTimer *timer, void *arg)
{
	(void) loop;
	(void) timer;
	broker_release_waiters(arg);
}
static Tombstone *broker_tombstone(Broker *broker, const char *sid);
static void broker_presence(Broker *broker, Session *session, const char *event);

/* ---- answers ------------------------------------------------------------ */

/* A session by sid; none once the bridge is shutting down. */
static Session *
broker_find_session(const Broker *broker, const char *sid)
{
	return broker->sessions ? session_find(broker->sessions, sid) : NULL;
}

static void
broker_error(Broker *broker, HttpRequest *req, ProtoCondition condition,
			 const char *message)
{
	Buf			body = BUF_INIT;

	if (condition == PROTO_INTERNAL_ERROR || condition == PROTO_SERVICE_UNAVAILABLE)
		log_warn("answered %s: %s", proto_condition_name(condition), message);
	else
		log_debug("answered %s: %s", proto_condition_name(condition), message);
	proto_encode_error(&body, condition, message);
	http_answer_bytes(broker->http, req, proto_condition_status(condition), body.data, body.len);
	buf_free(&body);
}

/*
 * What an SQL failure means for the client: RAISE's message passes (P0001),
 * authorization failures are forbidden, anything else is an internal error
 * whose details go to the log only.  result NULL: the database is gone.
 */
static ProtoCondition
broker_sql_error(PGresult *result, bool authenticating, char *message, size_t len)
{
	const char *sqlstate;

	if (result == NULL)
	{
		snprintf(message, len, "the database is unreachable; retry shortly");
		return PROTO_SERVICE_UNAVAILABLE;
	}
	sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
	if (sqlstate != NULL && (strcmp(sqlstate, "P0001") == 0 || strncmp(sqlstate, "28", 2) == 0))
	{
		const char *primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);

		snprintf(message, len, "%s", primary ? primary : "refused");
		return authenticating || strncmp(sqlstate, "28", 2) == 0
			? PROTO_FORBIDDEN : PROTO_BAD_REQUEST;
	}
	log_error("SQL error %s: %s", sqlstate ? sqlstate : "?",
			PQresultErrorMessage(result));
	snprintf(message, len, "internal error");
	return PROTO_INTERNAL_ERROR;
}

static bool
result_ok(PGresult *result)
{
	return result != NULL && PQresultStatus(result) == PGRES_TUPLES_OK;
}

static void
step_free(Step *step)
{
	size_t		i;
	int			k;

	for (i = 0; i < step->nextra; i++)
		packet_unref(step->extra[i]);
	free(step->extra);
	for (k = 0; k < step->nsend; k++)
		free(step->send[k].data_json);
	free(step->send);
	free(step->send_allowed);
	free(step->subscribe);
	free(step->unsubscribe);
	free(step->allowed);
	free(step->position_of);
	free(step->fresh);
	free(step->holding);
	free(step->held_before);
	free(step->resume_last);
	free(step->resume_cut);
	free(step->resume);
	free(step->resume_limit);
	free(step->subject);
	free(step->auth_json);
	buf_free(&step->results);
	buf_free(&step->positions);
	free(step);
}

/* Fail a step: answer with the condition, end a new session, free it. */
static void
step_fail(Step *step, ProtoCondition condition, const char *message)
{
	Broker	   *broker = step->broker;
	Session    *session = broker_find_session(broker, step->sid);

	if (step->setup && session != NULL)
		session_end(session, SESSION_END_TERMINATE);
	if (!step->setup && session != NULL)
	{
		step_unhold(step, session, condition == PROTO_SERVICE_UNAVAILABLE);
		session = broker_find_session(broker, step->sid);
		if (session == NULL)
		{
			/* letting held packets go overflowed it: that is what ended it */
			condition = PROTO_OVERFLOW;
			message = "the session fell too far behind and was ended; set up again with resume";
		}
	}
	if (!step->setup && session != NULL)
	{
		Buf			body = BUF_INIT;

		proto_encode_error(&body, condition, message);
		session_answer_work(session, step->req, step->rid,
							proto_condition_status(condition), body.data, body.len);
		buf_free(&body);
	}
	else
		broker_error(broker, step->req, condition, message);
	step_free(step);
}

/* The session of a work step, or answer item-not-found and free. */
static Session *
step_session(Step *step)
{
	Session    *session = broker_find_session(step->broker, step->sid);

	if (session == NULL)
	{
		broker_error(step->broker, step->req, PROTO_ITEM_NOT_FOUND, "the session has ended");
		step_free(step);
	}
	return session;
}

static void
append_result_ok(Step *step)
{
	buf_append_str(&step->results, step->results.len ? ",{\"ok\":true}" : "{\"ok\":true}");
}

/*
 * A send's result: {"ok":true}, with "data" when the receive function
 * returned a non-null json or jsonb value (its answer to the client).
 */
static void
append_result_ok_data(Step *step, PGresult *result)
{
	/* the type oids of json and jsonb are fixed in every PostgreSQL */
	const Oid	json_oid = 114,
				jsonb_oid = 3802;
	Oid			type;

	if (PQntuples(result) != 1 || PQnfields(result) != 1 || PQgetisnull(result, 0, 0) ||
		((type = PQftype(result, 0)) != json_oid && type != jsonb_oid))
	{
		append_result_ok(step);
		return;
	}
	buf_append_str(&step->results, step->results.len ? ",{\"ok\":true,\"data\":" : "{\"ok\":true,\"data\":");
	buf_append(&step->results, PQgetvalue(result, 0, 0), (size_t) PQgetlength(result, 0, 0));
	buf_append_char(&step->results, '}');
}

static void
append_result_error(Step *step, ProtoCondition condition, const char *message)
{
	if (step->results.len)
		buf_append_char(&step->results, ',');
	proto_encode_error(&step->results, condition, message);
}

/* The step's resume item for channel, or -1. */
static int
step_resumes(const Step *step, const char *channel)
{
	int			r;

	for (r = 0; r < step->nresume; r++)
		if (strcmp(step->resume[r].channel, channel) == 0)
			return r;
	return -1;
}

/*
 * Let go of the live packets the step held back (see step_answer), with
 * nothing dropped: the step failed.  A channel held since an earlier resume
 * was cut short stays held when the client will ask again (retried: 503
 * service-unavailable, which clients retry); after any other failure it
 * will not, and the channel goes from its position on (the client reports
 * the rest as a gap).
 */
static void
step_unhold(Step *step, Session *session, bool retried)
{
	int			k;
	int			r;

	for (k = 0; k < step->nsubscribe; k++)
	{
		if (!step->holding[k] || step->held_before[k])
			continue;
		step->holding[k] = false;
		if (!session_release_channel(session, step->subscribe[k], -1, false))
			return;				/* it ended (overflow) */
	}
	/* however early the step failed: every channel it asked again for */
	for (r = 0; r < step->nresume && !retried; r++)
		if (!session_give_up_cut(session, step->resume[r].channel))
			return;				/* it ended (overflow) */
}

/* Every item is done: answer the setup or work request. */
static void
step_answer(Step *step)
{
	Broker	   *broker = step->broker;
	Session    *session = broker_find_session(broker, step->sid);
	Buf			body = BUF_INIT;
	size_t		own;			/* packets the answer carries of its own */
	size_t		i;
	int			k;

	if (session == NULL)
	{
		broker_error(broker, step->req, PROTO_ITEM_NOT_FOUND, "the session has ended");
		step_free(step);
		return;
	}
	buf_append_str(&body, "{");
	if (step->setup)
	{
		buf_append_str(&body, "\"sid\":");
		buf_append_json_string(&body, step->sid, strlen(step->sid));
		buf_append_str(&body, ",");
	}
	buf_printf(&body, "\"rid\":%llu", (unsigned long long) step->rid);
	if (step->setup)
	{
		buf_printf(&body, ",\"wait\":%d,\"hold\":1,\"requests\":%llu,\"inactivity\":%llu",
				   session_wait_s(session),
				   (unsigned long long) broker->options.limits.window,
				   (unsigned long long) (broker->options.limits.inactivity_ms / 1000));
		buf_append_str(&body, ",\"subscribed\":[");
		for (k = 0, i = 0; k < step->nsubscribe; k++)
		{
			if (i++ > 0)
				buf_append_char(&body, ',');
			buf_append_json_string(&body, step->subscribe[k], strlen(step->subscribe[k]));
		}
		buf_append_char(&body, ']');
	}
	else
	{
		buf_append_str(&body, ",\"results\":[");
		if (step->results.len)
			buf_append(&body, step->results.data, step->results.len);
		buf_append_char(&body, ']');
	}
	if (step->setup || step->positions.len)
	{
		buf_append_str(&body, ",\"positions\":{");
		if (step->positions.len)
			buf_append(&body, step->positions.data + 1, step->positions.len - 1);
		buf_append_char(&body, '}');
	}
	/*
	 * A channel subscribed or resumed by this step held its live packets
	 * back from the subscription on (step_subscribe): those up to its
	 * position are the resume's, or precede where the client starts, and
	 * are dropped (and so are later copies: the floor); the rest follow the
	 * resume packets.  When the resume was cut short, the client asks again
	 * from the last packet given: the channel goes on holding its live
	 * packets until then.  (A channel the session had already, without a
	 * resume, keeps its queue: the client has not seen those packets yet.)
	 * Resume packets are not queued, so a long catch-up does not count
	 * against --max-pending.
	 */
	/*
	 * What this answer carries of its own (the catch-up, live packets of the
	 * channels it subscribed) must not reach a held poll first: that poll
	 * (an earlier rid) is answered now, with the queue, or with nothing
	 * when a catch-up comes first.
	 */
	own = step->nextra;
	for (k = 0; k < step->nsubscribe && own == 0; k++)
		if (step->holding[k])
			own = session_held_after(session, step->subscribe[k], step->position_of[k]);
	if (own > 0)
		session_answer_held_before(session, step->rid, step->nextra == 0);
	for (k = 0; k < step->nsubscribe; k++)
	{
		int			r = step_resumes(step, step->subscribe[k]);
		bool		cut = r >= 0 && step->resume_cut[r];

		if (!step->allowed[k] && r >= 0 && !step->setup &&
			!session_give_up_cut(session, step->subscribe[k]))
		{
			/* refused: the client cannot ask again for the rest of a cut resume */
			buf_free(&body);
			broker_error(broker, step->req, PROTO_OVERFLOW,
						 "the session fell too far behind and was ended; set up again with resume");
			step_free(step);
			return;
		}
		if (!step->holding[k])
			continue;
		step->holding[k] = false;
		if (cut)
		{
			session_cut_channel(session, step->subscribe[k], step->resume_last[r],
								step->position_of[k]);
			continue;
		}
		if (!session_release_channel(session, step->subscribe[k], step->position_of[k], false))
		{
			buf_free(&body);
			broker_error(broker, step->req, PROTO_OVERFLOW,
						 "the session fell too far behind and was ended; set up again with resume");
			step_free(step);
			return;
		}
	}
	session_take_packets_after(session, step->rid, &body, step->extra, step->nextra);
	buf_append_char(&body, '}');
	if (step->setup)
	{
		session_set_announced(session);
		broker_presence(broker, session, "open");
	}
	session_answer_work(session, step->req, step->rid, 200, body.data, body.len);
	buf_free(&body);
	step_free(step);
}

/* ---- sends -------------------------------------------------------------- */

static void
step_send_done(void *arg, PGresult *result)
{
	Step	   *step = arg;

	if (result != NULL && PQresultStatus(result) == PGRES_TUPLES_OK)
		append_result_ok_data(step, result);
	else
	{
		char		message[256];
		ProtoCondition condition = broker_sql_error(result, false, message, sizeof(message));

		append_result_error(step, condition, message);
	}
	step->next_send++;
	step_send_next(step);
}

/* Run the receive function for each allowed send item, one at a time. */
static void
step_send_next(Step *step)
{
	Broker	   *broker = step->broker;

	while (step->next_send < step->nsend)
	{
		ProtoSendItem *item = &step->send[step->next_send];
		const char *params[4];

		if (!step->send_allowed[step->next_send])
		{
			append_result_error(step, PROTO_FORBIDDEN, "not allowed to publish on this channel");
			step->next_send++;
			continue;
		}
		params[0] = step->subject;
		params[1] = step->sid;
		params[2] = item->channel;
		params[3] = item->data_json;
		pg_query(broker->pg, broker->sql_receive, 4, params, step_send_done, step);
		return;
	}
	step_answer(step);
}

static void
step_publish_authorized(void *arg, PGresult *result)
{
	Step	   *step = arg;
	int			k;

	if (!result_ok(result) || PQntuples(result) != step->nsend)
	{
		char		message[256];
		ProtoCondition condition = broker_sql_error(result_ok(result) ? NULL : result,
													false, message, sizeof(message));

		step_fail(step, condition, message);
		return;
	}
	for (k = 0; k < step->nsend; k++)
		step->send_allowed[k] = strcmp(PQgetvalue(result, k, 1), "t") == 0;
	step_send_next(step);
}

/* Ask the authorize function about a list of channels for one action. */
static void
broker_authorize(Broker *broker, Step *step, const char *action,
				 const char *const *channels, int nchannels, PgResultHandler handler)
{
	Buf			list = BUF_INIT;
	const char *params[3];
	int			k;

	buf_append_char(&list, '[');
	for (k = 0; k < nchannels; k++)
	{
		const char *name = channels[k];

		if (k > 0)
			buf_append_char(&list, ',');
		buf_append_json_string(&list, name, strlen(name));
	}
	buf_append_char(&list, ']');
	params[0] = step->subject;
	params[1] = list.data;
	params[2] = action;
	pg_query(broker->pg, broker->sql_authorize, 3, params, handler, step);
	buf_free(&list);
}

static void
step_sends(Step *step)
{
	const char **names;
	int			k;

	if (step->nsend == 0)
	{
		step_answer(step);
		return;
	}
	names = mem_alloc(sizeof(char *) * step->nsend);
	for (k = 0; k < step->nsend; k++)
		names[k] = step->send[k].channel;
	broker_authorize(step->broker, step, "publish", names, step->nsend,
					 step_publish_authorized);
	free(names);
}

/* ---- resume ------------------------------------------------------------- */

static void
step_add_extra(Step *step, Packet *packet)
{
	Packet	  **grown = mem_realloc(step->extra, sizeof(Packet *) * (step->nextra + 1));
	step->extra = grown;
	step->extra[step->nextra++] = packet;
}

static int64_t
step_position(const Step *step, const char *channel)
{
	int			k;

	for (k = 0; k < step->nsubscribe; k++)
		if (strcmp(step->subscribe[k], channel) == 0)
			return step->position_of[k];
	return -1;
}

static void
step_resumed(void *arg, PGresult *result)
{
	Step	   *step = arg;
	int			r;

	if (!result_ok(result))
	{
		char		message[256];
		ProtoCondition condition = broker_sql_error(result, false, message, sizeof(message));

		step_fail(step, condition, message);
		return;
	}
	/* rows are ordered by channel, then seq; walk resume items the same way */
	for (r = 0; r < step->nresume; r++)
	{
		const char *channel = step->resume[r].channel;
		int64_t		upto = step_position(step, channel);
		int64_t		expected = step->resume[r].seq + 1;
		int64_t		rows = 0;
		int			i;

		if (upto < 0 || step->resume_limit[r] == 0)
			continue;
		for (i = 0; i < PQntuples(result); i++)
		{
			int64_t		seq;

			if (strcmp(PQgetvalue(result, i, 0), channel) != 0)
				continue;
			seq = strtoll(PQgetvalue(result, i, 1), NULL, 10);
			if (seq > upto)
				continue;		/* committed after the position: it comes live */
			/* what prune took: the only packets ever reported as a gap */
			if (seq > expected)
				step_add_extra(step, packet_new_gap(channel, expected, seq - 1));
			step_add_extra(step, packet_new(channel, seq, PQgetvalue(result, i, 2),
											(size_t) PQgetlength(result, i, 2)));
			expected = seq + 1;
			rows++;
		}
		/*
		 * A full chunk leaves the rest to the client, which asks again from
		 * its last seq (positions say how far it has to go); fewer rows
		 * mean nothing later than them is kept.
		 */
		if (expected <= upto && rows < step->resume_limit[r])
			step_add_extra(step, packet_new_gap(channel, expected, upto));
		else if (expected <= upto)
		{
			/* cut short: the client asks again from expected - 1 */
			step->resume_cut[r] = true;
			step->resume_last[r] = expected - 1;
		}
	}
	step_sends(step);
}

static void
step_resume(Step *step)
{
	Buf			spec = BUF_INIT;
	const char *params[1];
	int			r;
	int			n = 0;

	buf_append_char(&spec, '{');
	for (r = 0; r < step->nresume; r++)
	{
		int64_t		upto = step_position(step, step->resume[r].channel);
		int64_t		most = (int64_t) step->broker->options.limits.max_pending;

		if (most < BROKER_RESUME_MIN)
			most = BROKER_RESUME_MIN;

		step->resume_limit[r] = 0;
		if (upto < 0 || step->resume[r].seq >= upto)
			continue;
		/* one answer carries the oldest `most` packets; the client asks for more */
		step->resume_limit[r] = upto - step->resume[r].seq > most ? most : upto - step->resume[r].seq;
		if (n++ > 0)
			buf_append_char(&spec, ',');
		buf_append_json_string(&spec, step->resume[r].channel, strlen(step->resume[r].channel));
		buf_printf(&spec, ":{\"after\":%lld,\"count\":%lld}",
				   (long long) step->resume[r].seq, (long long) step->resume_limit[r]);
	}
	buf_append_char(&spec, '}');
	if (n == 0)
	{
		buf_free(&spec);
		step_sends(step);
		return;
	}
	params[0] = spec.data;
	pg_query(step->broker->pg,
			 "SELECT r.key, p.seq, p.data::text"
			 " FROM jsonb_each($1::jsonb) r,"
			 " LATERAL comet.replay(r.key, (r.value->>'after')::bigint,"
			 "   (r.value->>'count')::int) p"
			 " ORDER BY r.key, p.seq",
			 1, params, step_resumed, step);
	buf_free(&spec);
}

/* ---- subscriptions and positions ----------------------------------------- */

static void
step_positions_read(void *arg, PGresult *result)
{
	Step	   *step = arg;
	Broker	   *broker = step->broker;
	int			i;

	if (!result_ok(result))
	{
		char		message[256];
		ProtoCondition condition = broker_sql_error(result, false, message, sizeof(message));

		step_fail(step, condition, message);
		return;
	}
	for (i = 0; i < PQntuples(result); i++)
	{
		const char *channel = PQgetvalue(result, i, 0);
		int64_t		position = strtoll(PQgetvalue(result, i, 1), NULL, 10);
		int			k;

		for (k = 0; k < step->nsubscribe; k++)
			if (step->allowed[k] && strcmp(step->subscribe[k], channel) == 0)
				step->position_of[k] = position;
		/* a channel's first position is where its numbering starts for us */
		channel_set_last_seq(broker->channels, channel, position);
		buf_append_char(&step->positions, ',');
		buf_append_json_string(&step->positions, channel, strlen(channel));
		buf_printf(&step->positions, ":%lld", (long long) position);
	}
	step_resume(step);
}

/*
 * True when every channel the step subscribed to is being listened on, or
 * is gone again (unsubscribed, or its session ended): nothing to wait for.
 */
static bool
step_all_listening(const Step *step)
{
	int			k;

	for (k = 0; k < step->nsubscribe; k++)
		if (step->allowed[k] &&
			channel_subscribers(step->broker->channels, step->subscribe[k]) > 0 &&
			!channel_is_listening(step->broker->channels, step->subscribe[k]))
			return false;
	return true;
}

static void
broker_wait_listening(Broker *broker, Step *step)
{
	Waiter	   *waiter = mem_alloc(sizeof(Waiter));

	waiter->step = step;
	waiter->next = broker->waiters;
	broker->waiters = waiter;
}

/* Read positions once every LISTEN has taken effect. */
static void
step_positions(Step *step)
{
	Buf			list = BUF_INIT;
	const char *params[1];
	int			k;
	int			n = 0;

	if (!step_all_listening(step))
	{
		broker_wait_listening(step->broker, step);
		return;
	}
	buf_append_char(&list, '[');
	for (k = 0; k < step->nsubscribe; k++)
	{
		if (!step->allowed[k])
			continue;
		if (n++ > 0)
			buf_append_char(&list, ',');
		buf_append_json_string(&list, step->subscribe[k], strlen(step->subscribe[k]));
	}
	buf_append_char(&list, ']');
	if (n == 0)
	{
		buf_free(&list);
		step_resume(step);
		return;
	}
	params[0] = list.data;
	pg_query(step->broker->pg,
			 "SELECT c, comet.last_seq(c)"
			 " FROM jsonb_array_elements_text($1::jsonb) WITH ORDINALITY AS t(c, n)"
			 " ORDER BY n",
			 1, params, step_positions_read, step);
	buf_free(&list);
}

/* Subscribe the session to every allowed channel; unsubscribe items. */
static void
step_subscribe(Step *step, Session *session)
{
	int			k;

	for (k = 0; k < step->nsubscribe; k++)
	{
		if (step->allowed[k])
		{
			step->fresh[k] = session_subscribe(session, step->subscribe[k]);
			/* until the answer says where the client starts: see step_answer */
			if (step->fresh[k] || step_resumes(step, step->subscribe[k]) >= 0)
			{
				step->held_before[k] = !session_hold_channel(session, step->subscribe[k]);
				step->holding[k] = true;
			}
			if (!step->setup)
				append_result_ok(step);
		}
		else if (!step->setup)
			append_result_error(step, PROTO_FORBIDDEN, "not allowed to subscribe to this channel");
	}
	for (k = 0; k < step->nunsubscribe; k++)
	{
		session_unsubscribe(session, step->unsubscribe[k]);
		append_result_ok(step);
	}
	step_positions(step);
}

/* A random sid: node prefix, then 144 bits as 24 URL-safe characters. */
static bool
broker_new_sid(Broker *broker, char *sid, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char bytes[18];
	char		random_part[25];
	size_t		i;

	if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t) sizeof(bytes))
		return false;
	for (i = 0; i < 24; i++)
	{
		size_t		bit = i * 6;
		unsigned	value = ((unsigned) bytes[bit / 8] << 8 |
							 (bit / 8 + 1 < sizeof(bytes) ? bytes[bit / 8 + 1] : 0));

		random_part[i] = alphabet[(value >> (10 - bit % 8)) & 63];
	}
	random_part[24] = '\0';
	if (broker->node_id[0])
		snprintf(sid, len, "%s.%s", broker->node_id, random_part);
	else
		snprintf(sid, len, "%s", random_part);
	return true;
}

static void
step_subscribe_authorized(void *arg, PGresult *result)
{
	Step	   *step = arg;
	Broker	   *broker = step->broker;
	Session    *session;
	int			k;

	/* result is NULL for a setup that subscribes to nothing */
	if (step->nsubscribe > 0 &&
		(!result_ok(result) || PQntuples(result) != step->nsubscribe))
	{
		char		message[256];
		ProtoCondition condition = broker_sql_error(result_ok(result) ? NULL : result,
													false, message, sizeof(message));

		step_fail(step, condition, message);
		return;
	}
	for (k = 0; k < step->nsubscribe; k++)
		step->allowed[k] = strcmp(PQgetvalue(result, k, 1), "t") == 0;
	if (step->setup)
	{
		for (k = 0; k < step->nsubscribe; k++)
			if (!step->allowed[k])
			{
				char		message[128];

				snprintf(message, sizeof(message), "not allowed to subscribe to %s",
						 step->subscribe[k]);
				step_fail(step, PROTO_FORBIDDEN, message);
				return;
			}
		if (broker->sessions == NULL)
		{
			step_fail(step, PROTO_SYSTEM_SHUTDOWN, "the bridge is shutting down");
			return;
		}
		/* checked again: other setups may have finished while this one waited */
		if (session_count(broker->sessions) >= broker->options.max_sessions)
		{
			step_fail(step, PROTO_SERVICE_UNAVAILABLE, "too many sessions; retry later");
			return;
		}
		if (!broker_new_sid(broker, step->sid, sizeof(step->sid)) ||
			(session = session_create(broker->sessions, step->sid, step->subject,
									  step->rid, step->wait)) == NULL)
		{
			step_fail(step, PROTO_INTERNAL_ERROR, "could not create a session");
			return;
		}
		broker->stats.sessions_created++;
		if (step->subject != NULL)
			session_set_auth(session, step->auth_json);
	}
	else if ((session = step_session(step)) == NULL)
		return;
	step_subscribe(step, session);
}

static void
step_subscriptions(Step *step)
{
	Session    *session;

	if (step->nsubscribe > 0)
	{
		const char **names = mem_alloc(sizeof(char *) * step->nsubscribe);
		int			k;

		for (k = 0; k < step->nsubscribe; k++)
			names[k] = step->subscribe[k];
		broker_authorize(step->broker, step, "subscribe", names, step->nsubscribe,
						 step_subscribe_authorized);
		free(names);
		return;
	}
	if (!step->setup)
	{
		if ((session = step_session(step)) == NULL)
			return;
		step_subscribe(step, session);
		return;
	}
	step_subscribe_authorized(step, NULL);
}

static void
step_authenticated(void *arg, PGresult *result)
{
	Step	   *step = arg;

	if (!result_ok(result))
	{
		char		message[256];
		ProtoCondition condition = broker_sql_error(result, true, message, sizeof(message));

		step_fail(step, condition, message);
		return;
	}
	if (PQntuples(result) != 1)
	{
		/* a set-returning function that gave no row (or several): its fault */
		log_error("the authentication function returned %d rows, not 1", PQntuples(result));
		step_fail(step, PROTO_INTERNAL_ERROR, "internal error");
		return;
	}
	if (!PQgetisnull(result, 0, 0))
		step->subject = mem_strdup(PQgetvalue(result, 0, 0));
	step_subscriptions(step);
}

/*
 * A work request's credentials, checked again: the same subject may go on;
 * a refused, revoked or expired token ends the session (403 forbidden).
 */
static void
step_reauthenticated(void *arg, PGresult *result)
{
	Step	   *step = arg;
	Session    *session;

	if (result == NULL)
	{
		step_fail(step, PROTO_SERVICE_UNAVAILABLE, "the database is unreachable; retry shortly");
		return;
	}
	if (result_ok(result) && PQntuples(result) == 1 && !PQgetisnull(result, 0, 0) &&
		step->subject != NULL && strcmp(PQgetvalue(result, 0, 0), step->subject) == 0)
	{
		step_subscriptions(step);
		return;
	}
	if (!result_ok(result))
	{
		char		message[256];
		ProtoCondition condition = broker_sql_error(result, true, message, sizeof(message));

		if (condition != PROTO_FORBIDDEN)
		{
			step_fail(step, condition, message);
			return;
		}
	}
	/*
	 * The session ends first (its held poll and parked requests get 403):
	 * answering this request first would let the session start its next
	 * request, which may end it.  step_fail then finds no session and
	 * answers this request 403 too.
	 */
	session = broker_find_session(step->broker, step->sid);
	log_info("session %s: its credentials are no longer valid", step->sid);
	if (session != NULL)
		session_end(session, SESSION_END_REVOKED);
	step_fail(step, PROTO_FORBIDDEN, "the session's credentials are no longer valid");
}

/* Copy what the steps need from a decoded request. */
static Step *
step_new(Broker *broker, HttpRequest *req, const ProtoRequest *request, bool setup)
{
	Step	   *step = mem_alloc(sizeof(Step));
	int			k;

	step->broker = broker;
	step->req = req;
	step->setup = setup;
	step->rid = request->rid;
	step->wait = request->has_wait ? request->wait : 0;
	if (request->has_sid)
		snprintf(step->sid, sizeof(step->sid), "%s", request->sid);
	step->auth_json = mem_strdup(request->auth_json);
	step->nsubscribe = request->nsubscribe;
	step->subscribe = mem_alloc(sizeof(*step->subscribe) * (request->nsubscribe + 1));
	if (request->nsubscribe > 0)
		memcpy(step->subscribe, request->subscribe,
			   sizeof(*step->subscribe) * request->nsubscribe);
	step->allowed = mem_alloc(sizeof(bool) * (request->nsubscribe + 1));
	step->position_of = mem_alloc(sizeof(int64_t) * (request->nsubscribe + 1));
	step->fresh = mem_alloc(sizeof(bool) * (request->nsubscribe + 1));
	step->holding = mem_alloc(sizeof(bool) * (request->nsubscribe + 1));
	step->held_before = mem_alloc(sizeof(bool) * (request->nsubscribe + 1));
	for (k = 0; k < request->nsubscribe; k++)
		step->position_of[k] = -1;
	step->nunsubscribe = request->nunsubscribe;
	step->unsubscribe = mem_alloc(sizeof(*step->unsubscribe) * (request->nunsubscribe + 1));
	if (request->nunsubscribe > 0)
		memcpy(step->unsubscribe, request->unsubscribe,
			   sizeof(*step->unsubscribe) * request->nunsubscribe);
	step->nsend = request->nsend;
	step->send = mem_alloc(sizeof(ProtoSendItem) * (request->nsend + 1));
	step->send_allowed = mem_alloc(sizeof(bool) * (request->nsend + 1));
	for (k = 0; k < request->nsend; k++)
	{
		memcpy(step->send[k].channel, request->send[k].channel, sizeof(step->send[k].channel));
		step->send[k].data_json = mem_strdup(request->send[k].data_json);
	}
	step->nresume = request->nresume;
	step->resume = mem_alloc(sizeof(ProtoResumeItem) * (request->nresume + 1));
	step->resume_limit = mem_alloc(sizeof(int64_t) * (request->nresume + 1));
	step->resume_last = mem_alloc(sizeof(int64_t) * (request->nresume + 1));
	step->resume_cut = mem_alloc(sizeof(bool) * (request->nresume + 1));
	if (request->nresume > 0)
		memcpy(step->resume, request->resume, sizeof(ProtoResumeItem) * request->nresume);
	return step;
}

/* ---- tombstones ------------------------------------------------------------ */

static void
broker_bury(Broker *broker, const char *sid, SessionEnd why)
{
	Tombstone  *tombstone = &broker->tombstones[broker->next_tombstone++ % BROKER_TOMBSTONES];

	snprintf(tombstone->sid, sizeof(tombstone->sid), "%s", sid);
	tombstone->why = why;
	tombstone->until_ms = loop_now_ms(broker->loop) + broker->options.limits.inactivity_ms;
}

static Tombstone *
broker_tombstone(Broker *broker, const char *sid)
{
	size_t		i;

	for (i = 0; i < BROKER_TOMBSTONES; i++)
	{
		Tombstone  *tombstone = &broker->tombstones[i];

		if (tombstone->sid[0] && strcmp(tombstone->sid, sid) == 0 &&
			tombstone->until_ms > loop_now_ms(broker->loop))
			return tombstone;
	}
	return NULL;
}

/* ---- HTTP hooks ----------------------------------------------------------- */

static void
broker_setup(Broker *broker, HttpRequest *req, ProtoRequest *request)
{
	Step	   *step;
	const char *params[1];

	if (broker->sessions == NULL)
	{
		broker_error(broker, req, PROTO_SYSTEM_SHUTDOWN, "the bridge is shutting down");
		return;
	}
	if (session_count(broker->sessions) >= broker->options.max_sessions)
	{
		broker_error(broker, req, PROTO_SERVICE_UNAVAILABLE, "too many sessions; retry later");
		return;
	}
	if (request->nsend > 0 || request->nunsubscribe > 0 || request->terminate)
	{
		broker_error(broker, req, PROTO_BAD_REQUEST,
					 "a setup request (without sid) may only subscribe");
		return;
	}
	step = step_new(broker, req, request, true);
	params[0] = step->auth_json;
	pg_query(broker->pg, broker->sql_auth, 1, params, step_authenticated, step);
}

static void
broker_http_comet(void *ctx, HttpRequest *req, const char *url_sid,
				  const char *body, size_t len)
{
	Broker	   *broker = ctx;
	ProtoRequest *request = mem_alloc(sizeof(ProtoRequest));
	char		message[256];
	Session    *session;

	if (broker->shutting_down)
	{
		free(request);
		broker_error(broker, req, PROTO_SYSTEM_SHUTDOWN, "the bridge is shutting down");
		return;
	}
	if (proto_decode_request(body, len, request, message, sizeof(message)) != PROTO_OK)
	{
		free(request);
		broker_error(broker, req, PROTO_BAD_REQUEST, message);
		return;
	}
	if (url_sid != NULL && (!request->has_sid || strcmp(url_sid, request->sid) != 0))
	{
		proto_request_free(request);
		free(request);
		broker_error(broker, req, PROTO_BAD_REQUEST, "the sid in the URL and in the body differ");
		return;
	}
	if (!request->has_sid)
	{
		broker_setup(broker, req, request);
		proto_request_free(request);
		free(request);
		return;
	}
	session = broker_find_session(broker, request->sid);
	if (session == NULL)
	{
		Tombstone  *tombstone = broker_tombstone(broker, request->sid);
		SessionEnd	why = tombstone != NULL ? tombstone->why : SESSION_END_PROTOCOL;

		/* said once; after that the session is simply gone */
		if (tombstone != NULL)
			tombstone->sid[0] = '\0';
		proto_request_free(request);
		free(request);
		if (why == SESSION_END_OVERFLOW)
			broker_error(broker, req, PROTO_OVERFLOW,
						 "the session fell too far behind and was ended; set up again with resume");
		else if (why == SESSION_END_REVOKED)
			broker_error(broker, req, PROTO_FORBIDDEN,
						 "the session's credentials are no longer valid");
		else
			broker_error(broker, req, PROTO_ITEM_NOT_FOUND, "no such session");
		return;
	}
	session_request(session, req, request);
}

static void
broker_http_client_gone(void *ctx, HttpRequest *req, void *owner)
{
	(void) ctx;
	session_client_gone(owner, req);
}

static int
broker_http_healthz(void *ctx, Buf *body)
{
	Broker	   *broker = ctx;
	bool		up = pg_listen_connected(broker->pg);

	buf_printf(body, "{\"status\":\"%s\",\"database\":%s,\"sessions\":%zu}",
			   up ? "ok" : "unavailable", up ? "true" : "false",
			   broker->sessions ? session_count(broker->sessions) : 0);
	return up ? 200 : 503;
}

static void
broker_http_metrics(void *ctx, Buf *body)
{
	Broker	   *broker = ctx;
	int			c;

	buf_printf(body,
			   "# HELP comet_sessions Sessions open now.\n# TYPE comet_sessions gauge\n"
			   "comet_sessions %zu\n"
			   "# HELP comet_sessions_created_total Sessions set up.\n# TYPE comet_sessions_created_total counter\n"
			   "comet_sessions_created_total %lu\n"
			   "# HELP comet_requests_pending HTTP requests held or waiting for the database.\n# TYPE comet_requests_pending gauge\n"
			   "comet_requests_pending %zu\n"
			   "# HELP comet_channels_listened Channels the bridge LISTENs on.\n# TYPE comet_channels_listened gauge\n"
			   "comet_channels_listened %zu\n"
			   "# HELP comet_notifications_total NOTIFYs received.\n# TYPE comet_notifications_total counter\n"
			   "comet_notifications_total %lu\n"
			   "# HELP comet_packets_delivered_total Packets handed to sessions.\n# TYPE comet_packets_delivered_total counter\n"
			   "comet_packets_delivered_total %lu\n"
			   "# HELP comet_database_reconnects_total Database connections reopened.\n# TYPE comet_database_reconnects_total counter\n"
			   "comet_database_reconnects_total %lu\n"
			   "# HELP comet_database_up Whether the LISTEN connection is up.\n# TYPE comet_database_up gauge\n"
			   "comet_database_up %d\n"
			   "# HELP comet_packets_queued Packets waiting in sessions for a request.\n# TYPE comet_packets_queued gauge\n"
			   "comet_packets_queued %zu\n"
			   "# HELP comet_channels_catching_up Channels whose delivery waits for comet.replay.\n# TYPE comet_channels_catching_up gauge\n"
			   "comet_channels_catching_up %zu\n"
			   "# HELP comet_errors_total Error answers by condition.\n# TYPE comet_errors_total counter\n",
			   broker->sessions ? session_count(broker->sessions) : 0,
			   broker->stats.sessions_created,
			   broker->http ? http_pending(broker->http) : 0,
			   pg_listen_count(broker->pg), broker->stats.notifications,
			   broker->stats.packets_delivered, pg_reconnects(broker->pg),
			   pg_listen_connected(broker->pg) ? 1 : 0,
			   broker->sessions ? session_table_queued(broker->sessions) : 0,
			   delivery_channels_waiting(broker->deliveries));
	for (c = PROTO_BAD_REQUEST; c < PROTO_CONDITION_COUNT; c++)
		buf_printf(body, "comet_errors_total{condition=\"%s\"} %lu\n",
				   proto_condition_name((ProtoCondition) c),
				   broker->http ? http_error_count(broker->http, (ProtoCondition) c) : 0UL);
}

static size_t
broker_http_flush(void *ctx, size_t max)
{
	Broker	   *broker = ctx;

	return broker->sessions ? session_flush(broker->sessions, max) : 0;
}

HttpHooks
broker_http_hooks(Broker *broker)
{
	HttpHooks	hooks = {broker_http_comet, broker_http_client_gone,
	broker_http_healthz, broker_http_metrics, broker_http_flush, broker};

	return hooks;
}

/* ---- session hooks ------------------------------------------------------- */

static void
broker_session_answer(void *ctx, HttpRequest *req, Answer *answer)
{
	Broker	   *broker = ctx;

	http_answer(broker->http, req, answer);
}

static void
broker_session_hold(void *ctx, HttpRequest *req, Session *session)
{
	Broker	   *broker = ctx;

	http_hold(broker->http, req, session);
}

static void
broker_session_work(void *ctx, Session *session, HttpRequest *req, const ProtoRequest *request)
{
	Broker	   *broker = ctx;
	Step	   *step = step_new(broker, req, request, false);
	const char *params[1];

	step->subject = mem_strdup(session_subject(session));
	if (session_auth(session) == NULL)
	{
		step_subscriptions(step);
		return;
	}
	/* a token may have been revoked or expired since: check it again */
	params[0] = session_auth(session);
	pg_query(broker->pg, broker->sql_auth, 1, params, step_reauthenticated, step);
}

/*
 * A poll of an authenticated session: its credentials are checked again,
 * one check at a time per session, while the poll is held (delivery does
 * not wait for it).  A refused, revoked or expired token ends the session:
 * the held poll gets 403 forbidden, and so does the next request.  When
 * the database cannot answer, the session goes on (it is checked again
 * with its next request).
 */
typedef struct AuthCheck
{
	Broker	   *broker;
	char		sid[PROTO_SID_MAX + 1];
	char	   *subject;
} AuthCheck;

static void
broker_poll_reauthenticated(void *arg, PGresult *result)
{
	AuthCheck  *check = arg;
	Session    *session = broker_find_session(check->broker, check->sid);
	bool		refused = false;

	if (session != NULL)
		session_set_auth_checking(session, false);
	if (result != NULL)
	{
		if (result_ok(result))
			refused = PQntuples(result) != 1 || PQgetisnull(result, 0, 0) ||
				check->subject == NULL || strcmp(PQgetvalue(result, 0, 0), check->subject) != 0;
		else
		{
			char		message[256];

			refused = broker_sql_error(result, true, message, sizeof(message)) == PROTO_FORBIDDEN;
			if (!refused)
				log_warn("session %s: checking its credentials failed: %s", check->sid, message);
		}
	}
	if (refused && session != NULL)
	{
		log_info("session %s: its credentials are no longer valid", check->sid);
		session_end(session, SESSION_END_REVOKED);
	}
	free(check->subject);
	free(check);
}

static void
broker_session_polled(void *ctx, Session *session)
{
	Broker	   *broker = ctx;
	AuthCheck  *check;
	const char *params[1];

	if (session_auth(session) == NULL || session_auth_checking(session))
		return;
	check = mem_alloc(sizeof(AuthCheck));
	check->broker = broker;
	snprintf(check->sid, sizeof(check->sid), "%s", session_sid(session));
	check->subject = mem_strdup(session_subject(session));
	session_set_auth_checking(session, true);
	params[0] = session_auth(session);
	pg_query(broker->pg, broker->sql_auth, 1, params, broker_poll_reauthenticated, check);
}

/* ---- presence ------------------------------------------------------------- */

static void
broker_presence_done(void *arg, PGresult *result)
{
	(void) arg;
	if (result != NULL && PQresultStatus(result) != PGRES_TUPLES_OK)
		log_error("the session function failed: %s",
				PQresultErrorMessage(result));
}

static void
append_array_element(void *arg, const char *channel)
{
	Buf		   *array = arg;
	const char *p;

	if (array->len > 1)
		buf_append_char(array, ',');
	buf_append_char(array, '"');
	for (p = channel; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			buf_append_char(array, '\\');
		buf_append_char(array, *p);
	}
	buf_append_char(array, '"');
}

/* Tell the session function (if any) that a session opened or ended. */
static void
broker_presence(Broker *broker, Session *session, const char *event)
{
	Buf			channels = BUF_INIT;
	const char *params[4];

	if (broker->sql_session[0] == '\0')
		return;
	buf_append_char(&channels, '{');
	session_foreach_channel(session, append_array_element, &channels);
	buf_append_char(&channels, '}');
	params[0] = session_subject(session);
	params[1] = session_sid(session);
	params[2] = event;
	params[3] = channels.data;
	pg_query(broker->pg, broker->sql_session, 4, params, broker_presence_done, NULL);
	buf_free(&channels);
}

/* Steps still waiting on a session's behalf find it gone when they resume. */
static void
broker_session_ended(void *ctx, Session *session, SessionEnd why)
{
	Broker	   *broker = ctx;

	if (why != SESSION_END_SHUTDOWN)
		log_info("session %s ended: %s", session_sid(session),
				session_end_name(why));
	if (why == SESSION_END_OVERFLOW || why == SESSION_END_REVOKED)
		broker_bury(broker, session_sid(session), why);
	/* the session function hears of an end only after it heard of the open */
	if (session_announced(session))
		broker_presence(broker, session, session_end_name(why));
}

/* ---- channel hooks ---------------------------------------------------------- */

static void
broker_channel_first(void *ctx, const char *channel)
{
	Broker	   *broker = ctx;

	pg_listen(broker->pg, channel);
}

static void
broker_channel_last(void *ctx, const char *channel)
{
	Broker	   *broker = ctx;

	pg_unlisten(broker->pg, channel);
	/* steps waiting for this channel's LISTEN need not wait any more;
	 * from a timer, as the channel is still being removed */
	if (broker->waiters != NULL)
		loop_timer_start(broker->loop, &broker->waiter_timer, 0);
}

static void
broker_channel_deliver(void *ctx, void *subscriber, Packet *packet)
{
	Broker	   *broker = ctx;

	broker->stats.packets_delivered++;
	session_packet(subscriber, packet);
}

/* ---- delivery ------------------------------------------------------------ */

/* The delivery queues hand each packet to the channel table. */
static void
broker_publish(void *ctx, Packet *packet)
{
	Broker	   *broker = ctx;

	channel_publish(broker->channels, packet);
}

/* A comet.replay for a waiting delivery, retried while the database is away. */
typedef struct ReplayCall
{
	Broker	   *broker;
	Delivery   *delivery;
	int64_t		after;
	int64_t		count;			/* 0: everything after */
	LoopTimer	retry;
} ReplayCall;

#define BROKER_REPLAY_RETRY_MS 500

static void broker_replay_send(ReplayCall *call);

static void
broker_replay_retry(Loop *loop, LoopTimer *timer, void *arg)
{
	(void) loop;
	(void) timer;
	broker_replay_send(arg);
}

/*
 * Whether a failed catch-up is worth trying again: no database, or an
 * error that passes (SQLSTATE classes 08 connection, 40 rollback, 53
 * resources, 57 operator intervention such as a statement timeout; 55P03
 * lock not available; 42501 a grant taken away, which an administrator
 * gives back).  Anything else would fail for ever: it is logged and the
 * channel goes on.
 */
static bool
replay_may_retry(const PGresult *result)
{
	const char *state;

	if (result == NULL)
		return true;
	state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
	if (state == NULL)
		return true;
	return strncmp(state, "08", 2) == 0 || strncmp(state, "40", 2) == 0 ||
		strncmp(state, "53", 2) == 0 || strncmp(state, "57", 2) == 0 ||
		strcmp(state, "55P03") == 0 || strcmp(state, "42501") == 0;
}

static void
broker_replay_done(void *arg, PGresult *result)
{
	ReplayCall *call = arg;
	Delivery   *delivery = call->delivery;
	Broker	   *broker = call->broker;
	const char *channel = delivery_channel(delivery);
	int			i;

	if (!result_ok(result) && !broker->shutting_down && replay_may_retry(result))
	{
		/*
		 * No database, or the query failed for a reason that passes (a
		 * statement timeout, a grant taken away): the packets are in the
		 * table, and later deliveries must wait for them, so try again until
		 * it answers.  The channel counts in comet_channels_catching_up
		 * meanwhile.
		 */
		if (result != NULL)
			log_error("catching up channel \"%s\" failed (trying again): %s",
					  channel, PQresultErrorMessage(result));
		loop_timer_start(broker->loop, &call->retry, BROKER_REPLAY_RETRY_MS);
		return;
	}
	if (!result_ok(result) && result != NULL)
		log_error("catching up channel \"%s\" failed: %s", channel, PQresultErrorMessage(result));
	if (result_ok(result))
	{
		int64_t		expected = call->after + 1;

		for (i = 0; i < PQntuples(result); i++)
		{
			int64_t		seq = strtoll(PQgetvalue(result, i, 0), NULL, 10);

			/* pruned while we could not read them: say so, never skip silently */
			if (call->count == 0 && seq > expected && call->after >= 0)
				delivery_add(delivery, packet_new_gap(channel, expected, seq - 1));
			delivery_add(delivery,
						 packet_new(channel, seq,
									PQgetvalue(result, i, 1), (size_t) PQgetlength(result, i, 1)));
			expected = seq + 1;
		}
	}
	free(call);
	delivery_ready(broker->deliveries, delivery);
}

static void
broker_replay_send(ReplayCall *call)
{
	char		after_text[24];
	char		count_text[24];
	const char *params[3];

	snprintf(after_text, sizeof(after_text), "%lld", (long long) call->after);
	snprintf(count_text, sizeof(count_text), "%lld", (long long) call->count);
	params[0] = delivery_channel(call->delivery);
	params[1] = after_text;
	params[2] = call->count > 0 ? count_text : NULL;
	pg_query(call->broker->pg,
			 "SELECT seq, data::text FROM comet.replay($1, $2::bigint, least($3::bigint, 2147483647)::int)",
			 3, params, broker_replay_done, call);
}

/* Queue a replay of channel after seq (at most count packets; 0: all). */
static void
broker_replay(Broker *broker, const char *channel, int64_t after, int64_t count)
{
	ReplayCall *call = mem_alloc(sizeof(ReplayCall));

	call->broker = broker;
	call->delivery = delivery_wait(broker->deliveries, channel, after + count);
	call->delivery->owner = call;
	call->after = after;
	call->count = count;
	loop_timer_init(&call->retry, broker_replay_retry, call);
	broker_replay_send(call);
}

static void
broker_pg_notify(void *ctx, const char *channel, const char *payload)
{
	Broker	   *broker = ctx;
	ProtoNotify notify;
	int64_t		last = channel_last_seq(broker->channels, channel);
	int64_t		queued = delivery_upto(broker->deliveries, channel);
	/* the highest seq delivered, queued or being read from the table */
	int64_t		known = queued > last ? queued : last;

	broker->stats.notifications++;
	proto_parse_notify(payload, &notify);
	if (notify.kind == PROTO_NOTIFY_PLAIN)
		delivery_publish(broker->deliveries,
						 packet_new(channel, -1, notify.data_json, notify.data_len));
	else if (last >= 0 && notify.seq <= last)
		;						/* delivered already */
	else if (known >= 0 && notify.seq > known + 1)
	{
		/*
		 * Seqs were skipped: NOTIFYs were lost, or the wake-up is forged (any
		 * role may NOTIFY).  Trust only the packet table: fetch the range
		 * nobody is reading yet (one replay per NOTIFY would read the same
		 * rows again and again while the channel waits).
		 */
		broker_replay(broker, channel, known, notify.seq - known);
	}
	else if (notify.kind == PROTO_NOTIFY_REFERENCE || known < 0)
	{
		/* no data, or no starting point yet to judge the seq by: ask the table */
		broker_replay(broker, channel, notify.seq - 1, 1);
	}
	else
	{
		/* the next seq, or one a replay in flight reads too: in order behind it */
		delivery_publish(broker->deliveries,
						 packet_new(channel, notify.seq, notify.data_json, notify.data_len));
	}
	proto_notify_free(&notify);
}

/* Let every step whose channels are all listening (or gone) go on. */
static void
broker_release_waiters(Broker *broker)
{
	Waiter	  **link = &broker->waiters;

	while (*link != NULL)
	{
		Waiter	   *waiter = *link;

		if (step_all_listening(waiter->step))
		{
			*link = waiter->next;
			step_positions(waiter->step);
			free(waiter);
			link = &broker->waiters;	/* the list may have changed */
		}
		else
			link = &waiter->next;
	}
}

static void
broker_pg_listening(void *ctx, const char *channel)
{
	Broker	   *broker = ctx;

	channel_set_listening(broker->channels, channel, true);
	broker_release_waiters(broker);
}

static void
broker_catch_up_channel(void *arg, const char *channel, int64_t last_seq)
{
	if (last_seq >= 0)
		broker_replay(arg, channel, last_seq, 0);
}

static void
broker_pg_connected(void *ctx)
{
	Broker	   *broker = ctx;

	if (broker->was_connected)
	{
		log_info("database connection restored; catching up");
		channel_foreach(broker->channels, broker_catch_up_channel, broker);
	}
	broker->was_connected = true;
}

static void
broker_pg_disconnected(void *ctx, const char *why)
{
	Broker	   *broker = ctx;

	log_warn("lost the database connection: %s", why);
	channel_clear_listening(broker->channels);
}

/* A delivery still waiting at shutdown: its replay waits to be retried. */
static void
broker_drop_delivery(void *ctx, Delivery *delivery)
{
	Broker	   *broker = ctx;
	ReplayCall *call = delivery->owner;

	if (call != NULL)
	{
		loop_timer_stop(broker->loop, &call->retry);
		free(call);
	}
}

/* ---- life -------------------------------------------------------------------- */

Broker *
broker_create(Loop *loop, const BrokerOptions *options, char *err, size_t errlen)
{
	Broker	   *broker = mem_alloc(sizeof(Broker));
	ChannelHooks channel_hooks = {broker_channel_first, broker_channel_last,
	broker_channel_deliver, broker};
	SessionHooks session_hooks = {broker_session_answer, broker_session_hold,
	broker_session_work, broker_session_ended, broker_session_polled, broker};
	PgHooks		pg_hooks = {broker_pg_notify, broker_pg_listening, broker_pg_connected,
	broker_pg_disconnected, broker};

	broker->loop = loop;
	broker->options = *options;
	loop_timer_init(&broker->waiter_timer, broker_waiter_timer, broker);
	if (options->node_id)
		snprintf(broker->node_id, sizeof(broker->node_id), "%s", options->node_id);
	snprintf(broker->sql_auth, sizeof(broker->sql_auth), "SELECT %s($1::jsonb)",
			 options->auth_function);
	snprintf(broker->sql_authorize, sizeof(broker->sql_authorize),
			 "SELECT c, %s($1, c, $3)"
			 " FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS t(c, n)"
			 " ORDER BY n", options->authorize_function);
	snprintf(broker->sql_receive, sizeof(broker->sql_receive),
			 "SELECT %s($1, $2, $3, $4::jsonb)", options->receive_function);
	if (options->session_function)
		snprintf(broker->sql_session, sizeof(broker->sql_session),
				 "SELECT %s($1, $2, $3, $4::text[])", options->session_function);
	broker->channels = channel_table_create(&channel_hooks);
	broker->deliveries = delivery_queues_create(broker_publish, broker);
	broker->sessions = session_table_create(loop, broker->channels, &session_hooks,
											&options->limits);
	broker->pg = pg_create(loop, options->conninfo, options->pool_size, &pg_hooks, err, errlen);
	if (broker->pg == NULL)
	{
		session_table_destroy(broker->sessions, SESSION_END_SHUTDOWN);
		channel_table_destroy(broker->channels);
		free(broker);
		return NULL;
	}
	return broker;
}

void
broker_attach_http(Broker *broker, Http *http)
{
	broker->http = http;
}

void
broker_shutdown(Broker *broker)
{
	broker->shutting_down = true;
	session_table_destroy(broker->sessions, SESSION_END_SHUTDOWN);
	broker->sessions = NULL;
}

void
broker_destroy(Broker *broker)
{
	if (broker == NULL)
		return;
	broker->shutting_down = true;
	loop_timer_stop(broker->loop, &broker->waiter_timer);
	if (broker->sessions)
		session_table_destroy(broker->sessions, SESSION_END_SHUTDOWN);
	broker->sessions = NULL;
	while (broker->waiters)
	{
		Waiter	   *waiter = broker->waiters;

		broker->waiters = waiter->next;
		step_fail(waiter->step, PROTO_SYSTEM_SHUTDOWN, "the bridge is shutting down");
		free(waiter);
	}
	/* queries still queued answer their requests with service-unavailable */
	pg_destroy(broker->pg);
	delivery_queues_destroy(broker->deliveries, broker_drop_delivery, broker);
	channel_table_destroy(broker->channels);
	free(broker);
}
