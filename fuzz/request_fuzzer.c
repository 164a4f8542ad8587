/*
 * request_fuzzer.c — libFuzzer harness for everything in bridge/protocol.c
 * that strangers feed: request bodies (proto_decode_request), NOTIFY
 * payloads (proto_parse_notify), channel names (proto_channel_problem), and
 * the encoders that turn their text back into JSON for a browser.
 *
 * Every input is used five ways:
 *   1. as a request body: decoded, checked, freed;
 *   2. as the same body with an ignored member "_" put first, which must
 *      decode to the same request (this sets the fast path for plain polls
 *      against the full json-c path);
 *   3. as a NOTIFY payload (up to its first NUL, as PostgreSQL delivers it);
 *   4. as a channel name;
 *   5. as text for buf_append_json_string and proto_encode_error.
 * What each must satisfy is checked against fuzz/oracle.c, written apart
 * from protocol.c and buf.c.  Built with ASan, UBSan and LeakSanitizer, so
 * an allocation a path forgets to free fails the run too.
 *
 * It must never weaken a check to make a finding go away: a broken
 * invariant is a bug report (fuzz/README.md).
 */
#include "protocol.h"

#include <json-c/json.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oracle.h"

/* The message buffer the bridge's broker gives the decoder. */
#define MESSAGE_SIZE 256

/* The ignored member the differential check puts first. */
#define IGNORED_MEMBER "\"_\":0,"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A malloc'd copy of data[0..size) with a NUL after it. */
static char *
copy_terminated(const uint8_t *data, size_t size)
{
	char	   *copy = malloc(size + 1);

	if (copy == NULL)
		abort();
	memcpy(copy, data, size);
	copy[size] = '\0';
	return copy;
}

/* Whether text[0..len) is one valid JSON text, in UTF-8, per the oracle. */
static bool
is_valid_json(const char *text, size_t len)
{
	return oracle_utf8_valid(text, len) &&
		oracle_json_check(text, len, NULL) == ORACLE_JSON_VALID;
}

/* Whether name is a channel name by protocol.h's rule, per the oracle. */
static bool
oracle_channel_ok(const char *name, size_t len)
{
	size_t		i;

	if (len == 0 || len > PROTO_CHANNEL_MAX || !oracle_utf8_valid(name, len))
		return false;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) name[i];

		if (c < 0x20 || c == 0x7F)
			return false;
	}
	return true;
}

/* A decoded channel name: terminated in its array, a valid name. */
static void
check_channel(const char *channel, const char *member)
{
	size_t		len = strnlen(channel, PROTO_CHANNEL_MAX + 1);

	FUZZ_ASSERT(len <= PROTO_CHANNEL_MAX, "%s: channel name not terminated", member);
	FUZZ_ASSERT(proto_channel_problem(channel, len) == NULL,
				"%s: accepted channel \"%s\" fails proto_channel_problem", member, channel);
	FUZZ_ASSERT(oracle_channel_ok(channel, len),
				"%s: accepted channel \"%s\" is not a valid name", member, channel);
}

/* Encoder output must be JSON that json-c reads too. */
static void
check_encoded(Buf *out, const char *what)
{
	int			depth = 0;

	FUZZ_ASSERT(out->data != NULL && strlen(out->data) == out->len,
				"%s: output has a NUL or is not terminated", what);
	FUZZ_ASSERT(oracle_utf8_valid(out->data, out->len) &&
				oracle_json_check(out->data, out->len, &depth) == ORACLE_JSON_VALID,
				"%s wrote invalid JSON: %s", what, out->data);
	FUZZ_ASSERT(oracle_jsonc_parse(out->data, out->len, depth + 2, NULL),
				"%s wrote JSON json-c refuses: %s", what, out->data);
}

/* What an accepted request holds must be what protocol.h promises. */
static void
check_accepted(const ProtoRequest *request)
{
	int			i;
	Buf			out = BUF_INIT;

	FUZZ_ASSERT(request->rid < PROTO_RID_LIMIT, "rid %" PRIu64 " is not below 2^53",
				request->rid);
	if (request->has_sid)
	{
		size_t		len = strnlen(request->sid, PROTO_SID_MAX + 1);

		FUZZ_ASSERT(len >= 1 && len <= PROTO_SID_MAX, "sid of length %zu", len);
		FUZZ_ASSERT(strspn(request->sid, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
						   "abcdefghijklmnopqrstuvwxyz0123456789._-") == len,
					"sid \"%s\" has a character outside [A-Za-z0-9._-]", request->sid);
	}
	else
		FUZZ_ASSERT(request->sid[0] == '\0', "no sid, yet sid is \"%s\"", request->sid);
	FUZZ_ASSERT(!request->has_wait || request->wait >= 1, "wait %d", request->wait);
	FUZZ_ASSERT(request->has_wait || request->wait == 0, "wait without has_wait");
	if (request->auth_json != NULL)
	{
		FUZZ_ASSERT(is_valid_json(request->auth_json, strlen(request->auth_json)) &&
					request->auth_json[0] == '{',
					"auth is not a JSON object: %s", request->auth_json);
	}

	FUZZ_ASSERT(request->nsubscribe >= 0 && request->nsubscribe <= PROTO_MAX_ITEMS &&
				(request->nsubscribe == 0 || request->subscribe != NULL),
				"subscribe count %d", request->nsubscribe);
	for (i = 0; i < request->nsubscribe; i++)
		check_channel(request->subscribe[i], "subscribe");
	FUZZ_ASSERT(request->nunsubscribe >= 0 && request->nunsubscribe <= PROTO_MAX_ITEMS &&
				(request->nunsubscribe == 0 || request->unsubscribe != NULL),
				"unsubscribe count %d", request->nunsubscribe);
	for (i = 0; i < request->nunsubscribe; i++)
		check_channel(request->unsubscribe[i], "unsubscribe");
	FUZZ_ASSERT(request->nsend >= 0 && request->nsend <= PROTO_MAX_ITEMS &&
				(request->nsend == 0 || request->send != NULL),
				"send count %d", request->nsend);
	for (i = 0; i < request->nsend; i++)
	{
		const ProtoSendItem *item = &request->send[i];

		check_channel(item->channel, "send");
		FUZZ_ASSERT(item->data_json != NULL &&
					is_valid_json(item->data_json, strlen(item->data_json)),
					"send[%d].data is not JSON: %s", i,
					item->data_json ? item->data_json : "(NULL)");
		/* what the bridge does with it: a packet for a browser */
		buf_reset(&out);
		proto_encode_packet(&out, item->channel, (int64_t) request->rid,
							item->data_json, strlen(item->data_json));
		check_encoded(&out, "proto_encode_packet");
	}
	FUZZ_ASSERT(request->nresume >= 0 && request->nresume <= PROTO_MAX_ITEMS &&
				(request->nresume == 0 || request->resume != NULL),
				"resume count %d", request->nresume);
	for (i = 0; i < request->nresume; i++)
	{
		check_channel(request->resume[i].channel, "resume");
		FUZZ_ASSERT(request->resume[i].seq >= 0, "resume seq %" PRId64,
					request->resume[i].seq);
		buf_reset(&out);
		proto_encode_gap(&out, request->resume[i].channel, request->resume[i].seq,
						 -request->resume[i].seq);
		check_encoded(&out, "proto_encode_gap");
	}
	buf_free(&out);
}

/* Whether a refused decode left the request as empty as protocol.h says. */
static bool
request_is_empty(const ProtoRequest *request)
{
	static const ProtoRequest empty;

	return memcmp(request, &empty, sizeof(empty)) == 0;
}

/* Whether two decoded requests say the same thing. */
static bool
requests_equal(const ProtoRequest *a, const ProtoRequest *b)
{
	int			i;

	if (a->has_sid != b->has_sid || strcmp(a->sid, b->sid) != 0 || a->rid != b->rid ||
		a->has_wait != b->has_wait || a->wait != b->wait ||
		a->terminate != b->terminate || (a->auth_json == NULL) != (b->auth_json == NULL) ||
		(a->auth_json != NULL && strcmp(a->auth_json, b->auth_json) != 0) ||
		a->nsubscribe != b->nsubscribe || a->nunsubscribe != b->nunsubscribe ||
		a->nsend != b->nsend || a->nresume != b->nresume)
		return false;
	for (i = 0; i < a->nsubscribe; i++)
		if (strcmp(a->subscribe[i], b->subscribe[i]) != 0)
			return false;
	for (i = 0; i < a->nunsubscribe; i++)
		if (strcmp(a->unsubscribe[i], b->unsubscribe[i]) != 0)
			return false;
	for (i = 0; i < a->nsend; i++)
		if (strcmp(a->send[i].channel, b->send[i].channel) != 0 ||
			strcmp(a->send[i].data_json, b->send[i].data_json) != 0)
			return false;
	for (i = 0; i < a->nresume; i++)
		if (strcmp(a->resume[i].channel, b->resume[i].channel) != 0 ||
			a->resume[i].seq != b->resume[i].seq)
			return false;
	return true;
}

/*
 * Decode body[0..len) and check what came out.  Returns the condition; an
 * accepted request is left in *request for the caller to free.
 */
static ProtoCondition
decode_and_check(const char *body, size_t len, ProtoRequest *request,
				 char message[MESSAGE_SIZE])
{
	ProtoCondition condition;
	int			depth = 0;
	OracleJsonResult json;
	bool		utf8;
	Buf			out = BUF_INIT;

	condition = proto_decode_request(body, len, request, message, MESSAGE_SIZE);
	FUZZ_ASSERT(condition == PROTO_OK || condition == PROTO_BAD_REQUEST,
				"decode returned condition %d", (int) condition);
	FUZZ_ASSERT(strnlen(message, MESSAGE_SIZE) < MESSAGE_SIZE, "message not terminated");

	utf8 = oracle_utf8_valid(body, len);
	json = oracle_json_check(body, len, &depth);
	if (condition == PROTO_OK)
	{
		FUZZ_ASSERT(message[0] == '\0', "accepted with a message: %s", message);
		FUZZ_ASSERT(utf8 && json == ORACLE_JSON_VALID,
					"accepted a body that is not UTF-8 JSON");
		FUZZ_ASSERT(depth <= 64, "accepted a body nested %d deep", depth);
		check_accepted(request);
		return condition;
	}

	FUZZ_ASSERT(request_is_empty(request), "a refused decode left the request filled");
	FUZZ_ASSERT(message[0] != '\0', "refused without a message");
	/* the decoder's own checks decide every syntax error, never json-c */
	if (strncmp(message, "body is not valid JSON: ", 24) == 0)
	{
		FUZZ_ASSERT(strstr(message, " at byte ") != NULL,
					"json-c refused a body the decoder's checker accepted: %s", message);
		FUZZ_ASSERT(json == ORACLE_JSON_INVALID, "valid JSON refused as invalid: %s", message);
	}
	if (strcmp(message, "body is not valid UTF-8") == 0)
		FUZZ_ASSERT(!utf8, "valid UTF-8 refused as invalid");
	if (strncmp(message, "body is nested deeper than", 26) == 0)
		FUZZ_ASSERT(depth > 64, "a body %d deep refused as too deep", depth);
	if (strncmp(message, "body has data after the JSON object", 35) == 0)
		FUZZ_ASSERT(json != ORACLE_JSON_VALID, "valid JSON refused for trailing data");
	/* a well-formed object within the limit is never refused for its syntax */
	if (utf8 && json == ORACLE_JSON_VALID && depth <= 64)
		FUZZ_ASSERT(strncmp(message, "body is not", 11) != 0 &&
					strncmp(message, "body is nested", 14) != 0 &&
					strncmp(message, "body has data after", 19) != 0,
					"valid JSON %d deep refused: %s", depth, message);

	/* what the bridge does with the message: an error body */
	proto_encode_error(&out, condition, message);
	check_encoded(&out, "proto_encode_error");
	buf_free(&out);
	return condition;
}

/*
 * body with IGNORED_MEMBER put right after its opening brace, malloc'd in
 * *copy, or false when the body does not start with a non-empty object.
 */
static bool
with_ignored_member(const uint8_t *data, size_t size, char **copy, size_t *copy_len)
{
	size_t		brace = 0;
	size_t		next;
	size_t		extra = strlen(IGNORED_MEMBER);

	while (brace < size && strchr(" \t\n\r", data[brace]) != NULL && data[brace] != '\0')
		brace++;
	if (brace >= size || data[brace] != '{')
		return false;
	next = brace + 1;
	while (next < size && strchr(" \t\n\r", data[next]) != NULL && data[next] != '\0')
		next++;
	if (next >= size || data[next] == '}')
		return false;
	*copy_len = size + extra;
	*copy = malloc(*copy_len);
	if (*copy == NULL)
		abort();
	memcpy(*copy, data, brace + 1);
	memcpy(*copy + brace + 1, IGNORED_MEMBER, extra);
	memcpy(*copy + brace + 1 + extra, data + brace + 1, size - brace - 1);
	return true;
}

/* 1 and 2: the body as it is, and with an ignored member added. */
static void
fuzz_request(const uint8_t *data, size_t size)
{
	ProtoRequest request;
	ProtoRequest widened;
	char		message[MESSAGE_SIZE];
	char		widened_message[MESSAGE_SIZE];
	ProtoCondition condition;
	char	   *body;
	char	   *widened_body;
	size_t		widened_len;

	/* its own allocation, so that ASan sees a read past the end */
	body = malloc(size > 0 ? size : 1);
	if (body == NULL)
		abort();
	memcpy(body, data, size);
	condition = decode_and_check(body, size, &request, message);

	if (with_ignored_member(data, size, &widened_body, &widened_len))
	{
		ProtoCondition widened_condition =
			decode_and_check(widened_body, widened_len, &widened, widened_message);

		FUZZ_ASSERT(widened_condition == condition,
					"adding an ignored member changed the outcome: %s / %s",
					condition == PROTO_OK ? "accepted" : message,
					widened_condition == PROTO_OK ? "accepted" : widened_message);
		FUZZ_ASSERT(condition != PROTO_OK || requests_equal(&request, &widened),
					"adding an ignored member changed the decoded request");
		proto_request_free(&widened);
		FUZZ_ASSERT(request_is_empty(&widened), "proto_request_free left data");
		free(widened_body);
	}
	proto_request_free(&request);
	proto_request_free(&request);	/* documented as safe */
	free(body);
}

/* The decimal digits of a NOTIFY seq, as proto_parse_notify must have read them. */
static bool
payload_has_seq_prefix(const char *payload, int64_t seq, const char **rest)
{
	char		prefix[48];
	int			n = snprintf(prefix, sizeof(prefix), "comet/1 %" PRId64, seq);

	if (strncmp(payload, prefix, (size_t) n) != 0)
		return false;
	*rest = payload + n;
	return true;
}

/* 3: the input up to its first NUL as a NOTIFY payload. */
static void
fuzz_notify(const uint8_t *data, size_t size)
{
	char	   *payload = copy_terminated(data, strnlen((const char *) data, size));
	size_t		payload_len = strlen(payload);
	ProtoNotify notify;
	const char *rest = NULL;

	proto_parse_notify(payload, &notify);
	switch (notify.kind)
	{
		case PROTO_NOTIFY_REFERENCE:
			FUZZ_ASSERT(notify.seq >= 1 && notify.data_json == NULL &&
						payload_has_seq_prefix(payload, notify.seq, &rest) && *rest == '\0',
						"a reference that is not \"comet/1 <seq>\"");
			break;
		case PROTO_NOTIFY_DURABLE:
			FUZZ_ASSERT(notify.seq >= 1 && notify.data_json != NULL &&
						payload_has_seq_prefix(payload, notify.seq, &rest) && *rest == ' ' &&
						strcmp(rest + 1, notify.data_json) == 0 &&
						notify.data_len == strlen(notify.data_json),
						"a durable packet whose data is not the payload's JSON");
			FUZZ_ASSERT(is_valid_json(notify.data_json, notify.data_len),
						"durable data is not JSON: %s", notify.data_json);
			break;
		case PROTO_NOTIFY_PLAIN:
			{
				struct json_object *payload_value = NULL;
				struct json_object *data_value = NULL;
				int			depth = 0;
				bool		payload_is_json;

				FUZZ_ASSERT(notify.seq == -1 && notify.data_json != NULL &&
							notify.data_len == strlen(notify.data_json),
							"plain payload without data or with a seq");
				FUZZ_ASSERT(is_valid_json(notify.data_json, notify.data_len),
							"plain payload became invalid JSON: %s", notify.data_json);
				payload_is_json = oracle_utf8_valid(payload, payload_len) &&
					oracle_json_check(payload, payload_len, &depth) == ORACLE_JSON_VALID;
				if (!payload_is_json)
				{
					/* a JSON string of the payload, ill-formed UTF-8 replaced */
					FUZZ_ASSERT(notify.data_json[0] == '"',
								"a payload that is not JSON was not made a string");
					if (oracle_utf8_valid(payload, payload_len))
					{
						FUZZ_ASSERT(oracle_jsonc_parse(notify.data_json, notify.data_len, 4,
													   &data_value) &&
									json_object_is_type(data_value, json_type_string) &&
									(size_t) json_object_get_string_len(data_value) == payload_len &&
									memcmp(json_object_get_string(data_value), payload,
										   payload_len) == 0,
									"a text payload did not survive as a JSON string");
					}
				}
				else if (depth <= 512 &&
						 oracle_jsonc_parse(payload, payload_len, depth + 2, &payload_value))
				{
					/* JSON kept as JSON: the same value, whatever the spelling */
					FUZZ_ASSERT(oracle_jsonc_parse(notify.data_json, notify.data_len,
												   depth + 2, &data_value) &&
								json_object_equal(payload_value, data_value),
								"a JSON payload changed value: %s", notify.data_json);
				}
				json_object_put(payload_value);
				json_object_put(data_value);
				break;
			}
		default:
			FUZZ_ASSERT(false, "unknown NOTIFY kind %d", (int) notify.kind);
	}
	proto_notify_free(&notify);
	free(payload);
}

/* 4 and 5: the input as a channel name and as text for a JSON string. */
static void
fuzz_text(const uint8_t *data, size_t size)
{
	const char *text = (const char *) data;
	const char *problem = proto_channel_problem(text, size);
	Buf			out = BUF_INIT;
	char	   *message;

	FUZZ_ASSERT((problem == NULL) == oracle_channel_ok(text, size),
				"proto_channel_problem says %s", problem ? problem : "valid");

	buf_append_json_string(&out, text, size);
	check_encoded(&out, "buf_append_json_string");
	FUZZ_ASSERT(strstr(out.data, "\xE2\x80\xA8") == NULL &&
				strstr(out.data, "\xE2\x80\xA9") == NULL,
				"buf_append_json_string left a raw U+2028 or U+2029");
	if (oracle_utf8_valid(text, size))
	{
		struct json_object *value = NULL;

		FUZZ_ASSERT(oracle_jsonc_parse(out.data, out.len, 4, &value) &&
					(size_t) json_object_get_string_len(value) == size &&
					memcmp(json_object_get_string(value), text, size) == 0,
					"buf_append_json_string did not round-trip valid UTF-8");
		json_object_put(value);
	}
	buf_free(&out);

	message = copy_terminated(data, strnlen(text, size));
	proto_encode_error(&out, PROTO_BAD_REQUEST, message);
	check_encoded(&out, "proto_encode_error");
	buf_free(&out);
	free(message);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	oracle_set_input(data, size);
	fuzz_request(data, size);
	fuzz_notify(data, size);
	fuzz_text(data, size);
	return 0;
}
