/*
 * protocol.h — comet's wire protocol as data: decoding a client's request
 * body, encoding responses, errors and packets, and reading the NOTIFY
 * payloads the extension sends.  No I/O and no session state here.
 *
 * A request body is a JSON object (docs/protocol.md):
 *   {"sid": S, "rid": R, "subscribe": [..], "unsubscribe": [..],
 *    "send": [{"channel": c, "data": d}], "terminate": true,
 *    "auth": {..}, "wait": 60, "resume": {"ch": 41}}
 * Members not listed are ignored; listed members of the wrong type, bad
 * channel names, a missing or out-of-range rid are bad-request.
 */
#ifndef COMET_PROTOCOL_H
#define COMET_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Channel names: 1 to 63 bytes, no control characters (as in SQL). */
#define PROTO_CHANNEL_MAX 63
/* At most this many items in subscribe, unsubscribe, send or resume. */
#define PROTO_MAX_ITEMS 256
/* rids are integers in [0, 2^53). */
#define PROTO_RID_LIMIT (UINT64_C(1) << 53)
/* sids are at most this long (node prefix, '.', random part). */
#define PROTO_SID_MAX 96

/* Every way a request can fail, as a protocol condition. */
typedef enum ProtoCondition
{
	PROTO_OK = 0,
	PROTO_BAD_REQUEST,			/* 400 bad-request */
	PROTO_FORBIDDEN,			/* 403 forbidden */
	PROTO_ITEM_NOT_FOUND,		/* 404 item-not-found */
	PROTO_METHOD_NOT_ALLOWED,	/* 405 method-not-allowed */
	PROTO_OVERFLOW,				/* 410 overflow: session ended, resume */
	PROTO_REQUEST_TOO_LARGE,	/* 413 request-too-large */
	PROTO_POLICY_VIOLATION,		/* 429 policy-violation */
	PROTO_INTERNAL_ERROR,		/* 500 internal-error */
	PROTO_SERVICE_UNAVAILABLE,	/* 503 service-unavailable */
	PROTO_SYSTEM_SHUTDOWN,		/* 503 system-shutdown */
	PROTO_CONDITION_COUNT
} ProtoCondition;

const char *proto_condition_name(ProtoCondition condition);	/* "bad-request" */
int			proto_condition_status(ProtoCondition condition);	/* 400 */

typedef struct ProtoSendItem
{
	char		channel[PROTO_CHANNEL_MAX + 1];
	char	   *data_json;		/* the item's "data", re-serialized, malloc'd */
} ProtoSendItem;

typedef struct ProtoResumeItem
{
	char		channel[PROTO_CHANNEL_MAX + 1];
	int64_t		seq;			/* the last seq the client has, >= 0 */
} ProtoResumeItem;

typedef struct ProtoRequest
{
	bool		has_sid;
	char		sid[PROTO_SID_MAX + 1];
	uint64_t	rid;
	bool		has_wait;
	int			wait;			/* seconds, >= 1 (the caller caps it) */
	char	   *auth_json;		/* "auth" re-serialized, or NULL; malloc'd */
	bool		terminate;
	int			nsubscribe;
	char		(*subscribe)[PROTO_CHANNEL_MAX + 1];
	int			nunsubscribe;
	char		(*unsubscribe)[PROTO_CHANNEL_MAX + 1];
	int			nsend;
	ProtoSendItem *send;
	int			nresume;
	ProtoResumeItem *resume;
} ProtoRequest;

/*
 * Decode a request body.  On success returns PROTO_OK and fills *request
 * (free it with proto_request_free).  Otherwise returns PROTO_BAD_REQUEST
 * with a human message in message (for the client) and leaves nothing to
 * free.  Bodies nested deeper than 64 levels are refused.
 */
ProtoCondition proto_decode_request(const char *body, size_t len,
									ProtoRequest *request,
									char *message, size_t message_len);
void		proto_request_free(ProtoRequest *request);

/* NULL when name is a valid channel name, else what is wrong with it. */
const char *proto_channel_problem(const char *name, size_t len);

/* {"error": "<condition>", "message": "<message>"} */
void		proto_encode_error(Buf *out, ProtoCondition condition, const char *message);

/*
 * {"channel": C, "seq": N, "data": D} (no "seq" when seq < 0); data_json
 * must be valid JSON text and is copied as it is.
 */
void		proto_encode_packet(Buf *out, const char *channel, int64_t seq,
								const char *data_json, size_t data_len);

/* {"channel": C, "gap": {"from": F, "to": T}} */
void		proto_encode_gap(Buf *out, const char *channel, int64_t from, int64_t to);

/* What a NOTIFY on a channel carries. */
typedef enum ProtoNotifyKind
{
	PROTO_NOTIFY_PLAIN,			/* any payload from any application */
	PROTO_NOTIFY_DURABLE,		/* "comet/1 <seq> <json>" */
	PROTO_NOTIFY_REFERENCE		/* "comet/1 <seq>": fetch with comet.replay */
} ProtoNotifyKind;

typedef struct ProtoNotify
{
	ProtoNotifyKind kind;
	int64_t		seq;			/* durable and reference; -1 for plain */
	char	   *data_json;		/* malloc'd JSON text; NULL for reference */
	size_t		data_len;
} ProtoNotify;

/*
 * Read a NOTIFY payload.  A plain payload that parses as JSON is kept as
 * that JSON (re-serialized); any other plain payload becomes a JSON string.
 * A payload that starts with "comet/1 " but is malformed is treated as
 * plain.  Free with proto_notify_free.
 */
void		proto_parse_notify(const char *payload, ProtoNotify *notify);
void		proto_notify_free(ProtoNotify *notify);

#endif							/* COMET_PROTOCOL_H */
