/*
 * protocol_test.c — the wire protocol as protocol.h states it: which
 * request bodies are accepted and what they decode to, the exact message
 * for each way a body is refused, the exact bytes of errors, packets and
 * gaps, and how each kind of NOTIFY payload is read.
 *
 * Refused bodies are decoded after something has already been allocated
 * (auth, channel lists, send data), so LeakSanitizer, which runs at exit
 * in the ASan build, shows that a failed decode leaves nothing behind.
 */
#include "protocol.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

/*
 * unit.h's UNIT_CHECK evaluates its condition twice (once to count, once to
 * explain a failure); the conditions here decode, allocate and print, so
 * CHECK evaluates each exactly once and hands UNIT_CHECK the result.
 */
#define CHECK(cond, ...) \
	do { \
		bool		check_passed_ = (cond); \
		if (!check_passed_) \
			printf("#   check: %s\n", #cond); \
		UNIT_CHECK(check_passed_, __VA_ARGS__); \
	} while (0)

static char message[256];

/* Whether the request holds nothing: what a failed decode must leave. */
static bool
request_is_empty(const ProtoRequest *request)
{
	return !request->has_sid && request->rid == 0 && !request->has_wait &&
		request->auth_json == NULL && !request->terminate &&
		request->nsubscribe == 0 && request->subscribe == NULL &&
		request->nunsubscribe == 0 && request->unsubscribe == NULL &&
		request->nsend == 0 && request->send == NULL &&
		request->nresume == 0 && request->resume == NULL;
}

/* Decode body[0..len) into *request, the message into message. */
static ProtoCondition
decode(const char *body, size_t len, ProtoRequest *request)
{
	message[0] = '\0';
	return proto_decode_request(body, len, request, message, sizeof(message));
}

/* Whether body is accepted; the decoded request is freed. */
static bool
accepted(const char *body, size_t len)
{
	ProtoRequest request;
	ProtoCondition condition = decode(body, len, &request);

	if (condition != PROTO_OK)
		printf("#   refused: %s\n", message);
	proto_request_free(&request);
	return condition == PROTO_OK;
}

/*
 * Whether body is refused as bad-request with exactly expected as message
 * and an empty request left behind.
 */
static bool
refused(const char *body, size_t len, const char *expected)
{
	ProtoRequest request;
	ProtoCondition condition = decode(body, len, &request);
	bool		as_expected;

	as_expected = condition == PROTO_BAD_REQUEST && strcmp(message, expected) == 0 &&
		request_is_empty(&request);
	if (!as_expected)
		printf("#   condition %s, message \"%s\"\n", proto_condition_name(condition), message);
	if (condition == PROTO_OK)
		proto_request_free(&request);
	return as_expected;
}

/* The same for string literals, their length (NULs included) counted for us. */
#define ACCEPTED(body) accepted(body, sizeof(body) - 1)
#define REFUSED(body, expected) refused(body, sizeof(body) - 1, expected)
#define DECODE(body, request) decode(body, sizeof(body) - 1, request)

/* A body built in buf; the checks take buf.data, buf.len. */
static void
build_list_body(Buf *body, const char *member, int nitems, const char *item)
{
	int			i;

	buf_reset(body);
	buf_printf(body, "{\"rid\":1,\"%s\":[", member);
	for (i = 0; i < nitems; i++)
		buf_printf(body, "%s%s", i > 0 ? "," : "", item);
	buf_append_str(body, "]}");
}

/* {"rid":1,"x":[[...]]}: the object is one level, the arrays the rest. */
static void
build_nested_body(Buf *body, int depth)
{
	int			i;

	buf_reset(body);
	buf_append_str(body, "{\"rid\":1,\"x\":");
	for (i = 1; i < depth; i++)
		buf_append_char(body, '[');
	for (i = 1; i < depth; i++)
		buf_append_char(body, ']');
	buf_append_char(body, '}');
}

static void
test_valid_requests(void)
{
	ProtoRequest request;
	static const char setup[] =
		"{\"rid\": 0, \"subscribe\": [\"grid:1\", \"chat\"],"
		" \"auth\": {\"token\": \"abc\", \"n\": [1, 2.5]}, \"wait\": 60,"
		" \"resume\": {\"grid:1\": 41, \"chat\": 0}}";
	static const char sending[] =
		"{\"sid\": \"node1.AbC_-9\", \"rid\": 7,"
		" \"send\": [{\"channel\": \"grid:1\", \"data\": {\"x\": 1, \"y\": [true, false, 1.5e3]}},"
		"          {\"channel\": \"chat\", \"data\": null},"
		"          {\"data\": \"text\", \"channel\": \"c\", \"extra\": 1}],"
		" \"unsubscribe\": [\"old\"]}";
	static const char terminate[] = "{\"sid\": \"s1\", \"rid\": 9, \"terminate\": true}";

	CHECK(decode(setup, sizeof(setup) - 1, &request) == PROTO_OK,
			   "a setup request (subscribe, auth, wait, resume) is accepted");
	CHECK(!request.has_sid && request.rid == 0, "setup: no sid, rid 0");
	CHECK(request.nsubscribe == 2 && strcmp(request.subscribe[0], "grid:1") == 0 &&
			   strcmp(request.subscribe[1], "chat") == 0,
			   "setup: subscribe holds both channels in order");
	CHECK(request.auth_json != NULL &&
			   strcmp(request.auth_json, "{\"token\":\"abc\",\"n\":[1,2.5]}") == 0,
			   "setup: auth is kept as compact JSON");
	CHECK(request.has_wait && request.wait == 60, "setup: wait is 60");
	CHECK(request.nresume == 2 &&
			   strcmp(request.resume[0].channel, "grid:1") == 0 && request.resume[0].seq == 41 &&
			   strcmp(request.resume[1].channel, "chat") == 0 && request.resume[1].seq == 0,
			   "setup: resume maps each channel to its seq, in the body's order");
	CHECK(!request.terminate && request.nsend == 0 && request.nunsubscribe == 0,
			   "setup: nothing else is set");
	proto_request_free(&request);
	CHECK(request_is_empty(&request), "proto_request_free leaves the request empty");
	proto_request_free(&request);
	CHECK(request_is_empty(&request), "proto_request_free twice is harmless");

	CHECK(decode(sending, sizeof(sending) - 1, &request) == PROTO_OK,
			   "a request that sends and unsubscribes is accepted");
	CHECK(request.has_sid && strcmp(request.sid, "node1.AbC_-9") == 0 && request.rid == 7,
			   "send: sid and rid are read");
	CHECK(request.nsend == 3 &&
			   strcmp(request.send[0].channel, "grid:1") == 0 &&
			   strcmp(request.send[0].data_json, "{\"x\":1,\"y\":[true,false,1.5e3]}") == 0,
			   "send[0]: channel and data, the data re-serialized compactly");
	CHECK(request.nsend == 3 && strcmp(request.send[1].data_json, "null") == 0,
			   "send[1]: JSON null data is the text null");
	CHECK(request.nsend == 3 && strcmp(request.send[2].channel, "c") == 0 &&
			   strcmp(request.send[2].data_json, "\"text\"") == 0,
			   "send[2]: member order and unknown members do not matter");
	CHECK(request.nunsubscribe == 1 && strcmp(request.unsubscribe[0], "old") == 0,
			   "send: unsubscribe is read too");
	CHECK(!request.has_wait && request.auth_json == NULL && request.nsubscribe == 0,
			   "send: members not given are unset");
	proto_request_free(&request);

	CHECK(decode(terminate, sizeof(terminate) - 1, &request) == PROTO_OK &&
			   request.terminate && request.rid == 9,
			   "a terminate request is accepted");
	proto_request_free(&request);

	CHECK(ACCEPTED("{\"rid\":1,\"terminate\":false}"), "terminate may be false");
	CHECK(DECODE("{\"rid\":1,\"auth\":null}", &request) == PROTO_OK &&
			   request.auth_json == NULL,
			   "auth null is accepted and means no auth");
	proto_request_free(&request);
	CHECK(ACCEPTED("{\"rid\":1,\"auth\":{}}"), "an empty auth object is accepted");
	CHECK(ACCEPTED("{\"rid\":1,\"foo\":[1,{\"bar\":null}],\"x\":\"y\",\"sid2\":5}"),
			   "unknown members are ignored whatever their type");
	CHECK(DECODE("{\"rid\":1,\"subscribe\":[\"a\",\"a\"]}", &request) == PROTO_OK &&
			   request.nsubscribe == 2,
			   "duplicate channels in subscribe are kept for the caller to fold");
	proto_request_free(&request);
	CHECK(DECODE("{\"rid\":1,\"subscribe\":[],\"send\":[],\"resume\":{},\"unsubscribe\":[]}", &request) == PROTO_OK &&
			   request.nsubscribe == 0 && request.subscribe == NULL && request.nsend == 0 &&
			   request.nresume == 0 && request.nunsubscribe == 0,
			   "empty lists are accepted and allocate nothing");
	proto_request_free(&request);
	CHECK(DECODE("{\"rid\":1,\"wait\":99999999999}", &request) == PROTO_OK &&
			   request.wait == INT_MAX,
			   "a huge wait is accepted (the caller caps it) and held as INT_MAX");
	proto_request_free(&request);
	CHECK(DECODE("{\"rid\":1,\"wait\":1}", &request) == PROTO_OK && request.wait == 1,
			   "wait 1 is accepted");
	proto_request_free(&request);
	CHECK(ACCEPTED(" \r\n\t{\"rid\":1}\n "), "whitespace around the object is allowed");
	CHECK(DECODE("{\"rid\":1,\"subscribe\":[\"caf\\u00e9\",\"caf\xc3\xa9\"]}", &request) == PROTO_OK &&
			   request.nsubscribe == 2 &&
			   strcmp(request.subscribe[0], "caf\xc3\xa9") == 0 &&
			   strcmp(request.subscribe[1], "caf\xc3\xa9") == 0,
			   "channel names may be non-ASCII, escaped or not");
	proto_request_free(&request);
	CHECK(DECODE("{\"rid\":1,\"subscribe\":[\"\\ud83d\\ude00\"]}", &request) == PROTO_OK &&
			   request.nsubscribe == 1 && strcmp(request.subscribe[0], "\xf0\x9f\x98\x80") == 0,
			   "a surrogate pair escape decodes to its character");
	proto_request_free(&request);
	CHECK(DECODE("{\"rid\":1,\"rid\":2}", &request) == PROTO_OK && request.rid == 2,
			   "a repeated member: the last one counts (as in JavaScript)");
	proto_request_free(&request);
}

static void
test_rid(void)
{
	ProtoRequest request;
	const char *rid_message = "rid must be an integer between 0 and 2^53 - 1";

	CHECK(DECODE("{\"rid\":0}", &request) == PROTO_OK && request.rid == 0,
			   "rid 0 is accepted");
	proto_request_free(&request);
	CHECK(DECODE("{\"rid\":9007199254740991}", &request) == PROTO_OK &&
			   request.rid == 9007199254740991u,
			   "rid 2^53 - 1 is accepted");
	proto_request_free(&request);
	CHECK(REFUSED("{\"rid\":9007199254740992}", rid_message), "rid 2^53 is refused");
	CHECK(REFUSED("{\"rid\":-1}", rid_message), "rid -1 is refused");
	CHECK(REFUSED("{\"rid\":1.5}", rid_message), "rid 1.5 is refused");
	CHECK(REFUSED("{\"rid\":1.0}", rid_message), "rid 1.0 is refused: not an integer");
	CHECK(REFUSED("{\"rid\":1e3}", rid_message), "rid 1e3 is refused: not an integer");
	CHECK(REFUSED("{\"rid\":\"1\"}", rid_message), "rid \"1\" (a string) is refused");
	CHECK(REFUSED("{\"rid\":true}", rid_message), "rid true is refused");
	CHECK(REFUSED("{\"rid\":null}", rid_message), "rid null is refused");
	CHECK(REFUSED("{\"rid\":[1]}", rid_message), "rid [1] is refused");
	CHECK(REFUSED("{\"rid\":9223372036854775808}", rid_message),
			   "rid 2^63 (beyond int64) is refused");
	CHECK(REFUSED("{\"sid\":\"s\"}", "rid is missing"), "a request without rid is refused");
	CHECK(REFUSED("{\"rid\":18446744073709551616}",
					   "body has an integer that does not fit in 64 bits at byte 7, "
					   "which is not supported"),
			   "rid 2^64 is refused before json-c can clamp it");
}

static void
test_member_types(void)
{
	Buf			body = BUF_INIT;
	char		sid[PROTO_SID_MAX + 2];

	CHECK(REFUSED("{\"rid\":1,\"sid\":5}", "sid must be a string"), "sid 5 is refused");
	CHECK(REFUSED("{\"rid\":1,\"sid\":null}", "sid must be a string"), "sid null is refused");
	CHECK(REFUSED("{\"rid\":1,\"sid\":\"\"}", "sid must be 1 to 96 characters long"),
			   "an empty sid is refused");
	CHECK(REFUSED("{\"rid\":1,\"sid\":\"a b\"}",
					   "sid may contain only letters, digits, '.', '_' and '-'"),
			   "a sid with a space is refused");
	CHECK(REFUSED("{\"rid\":1,\"sid\":\"a/b\"}",
					   "sid may contain only letters, digits, '.', '_' and '-'"),
			   "a sid with a slash is refused");
	CHECK(REFUSED("{\"rid\":1,\"sid\":\"a\\u0000b\"}",
					   "sid may contain only letters, digits, '.', '_' and '-'"),
			   "a sid with an escaped NUL is refused");
	memset(sid, 'x', sizeof(sid));
	sid[PROTO_SID_MAX] = '\0';
	buf_printf(&body, "{\"rid\":1,\"sid\":\"%s\"}", sid);
	CHECK(accepted(body.data, body.len), "a sid of %d characters is accepted", PROTO_SID_MAX);
	sid[PROTO_SID_MAX] = 'x';
	sid[PROTO_SID_MAX + 1] = '\0';
	buf_reset(&body);
	buf_printf(&body, "{\"rid\":1,\"sid\":\"%s\"}", sid);
	CHECK(refused(body.data, body.len, "sid must be 1 to 96 characters long"),
			   "a sid of %d characters is refused", PROTO_SID_MAX + 1);

	CHECK(REFUSED("{\"rid\":1,\"wait\":0}",
					   "wait must be an integer number of seconds, at least 1"),
			   "wait 0 is refused");
	CHECK(REFUSED("{\"rid\":1,\"wait\":-5}",
					   "wait must be an integer number of seconds, at least 1"),
			   "a negative wait is refused");
	CHECK(REFUSED("{\"rid\":1,\"wait\":1.5}",
					   "wait must be an integer number of seconds, at least 1"),
			   "wait 1.5 is refused");
	CHECK(REFUSED("{\"rid\":1,\"wait\":\"60\"}",
					   "wait must be an integer number of seconds, at least 1"),
			   "wait \"60\" is refused");
	CHECK(REFUSED("{\"rid\":1,\"wait\":null}",
					   "wait must be an integer number of seconds, at least 1"),
			   "wait null is refused");

	CHECK(REFUSED("{\"rid\":1,\"auth\":\"token\"}", "auth must be an object or null"),
			   "auth as a string is refused");
	CHECK(REFUSED("{\"rid\":1,\"auth\":[1]}", "auth must be an object or null"),
			   "auth as an array is refused");
	CHECK(REFUSED("{\"rid\":1,\"auth\":5}", "auth must be an object or null"),
			   "auth as a number is refused");
	CHECK(REFUSED("{\"rid\":1,\"auth\":true}", "auth must be an object or null"),
			   "auth true is refused");

	CHECK(REFUSED("{\"rid\":1,\"terminate\":1}", "terminate must be true or false"),
			   "terminate 1 is refused");
	CHECK(REFUSED("{\"rid\":1,\"terminate\":\"true\"}", "terminate must be true or false"),
			   "terminate \"true\" is refused");
	CHECK(REFUSED("{\"rid\":1,\"terminate\":null}", "terminate must be true or false"),
			   "terminate null is refused");

	CHECK(REFUSED("{\"rid\":1,\"subscribe\":\"grid\"}",
					   "subscribe must be an array of channel names"),
			   "subscribe as a string is refused");
	CHECK(REFUSED("{\"rid\":1,\"subscribe\":{}}",
					   "subscribe must be an array of channel names"),
			   "subscribe as an object is refused");
	CHECK(REFUSED("{\"rid\":1,\"subscribe\":null}",
					   "subscribe must be an array of channel names"),
			   "subscribe null is refused");
	CHECK(REFUSED("{\"rid\":1,\"subscribe\":[\"ok\",1]}",
					   "subscribe[1] must be a string (a channel name)"),
			   "a number in subscribe is refused, naming its index");
	CHECK(REFUSED("{\"rid\":1,\"unsubscribe\":5}",
					   "unsubscribe must be an array of channel names"),
			   "unsubscribe as a number is refused");
	CHECK(REFUSED("{\"rid\":1,\"unsubscribe\":[null]}",
					   "unsubscribe[0] must be a string (a channel name)"),
			   "null in unsubscribe is refused");

	CHECK(REFUSED("{\"rid\":1,\"send\":{}}",
					   "send must be an array of {\"channel\", \"data\"} objects"),
			   "send as an object is refused");
	CHECK(REFUSED("{\"rid\":1,\"send\":[5]}",
					   "send[0] must be an object with \"channel\" and \"data\""),
			   "a number in send is refused");
	CHECK(REFUSED("{\"rid\":1,\"send\":[{\"data\":1}]}", "send[0].channel is missing"),
			   "a send item without channel is refused");
	CHECK(REFUSED("{\"rid\":1,\"send\":[{\"channel\":5,\"data\":1}]}",
					   "send[0].channel must be a string (a channel name)"),
			   "a send item whose channel is a number is refused");
	CHECK(REFUSED("{\"rid\":1,\"send\":[{\"channel\":\"\",\"data\":1}]}",
					   "send[0].channel: channel name is empty"),
			   "a send item with an empty channel is refused");
	CHECK(REFUSED("{\"rid\":1,\"send\":[{\"channel\":\"c\"}]}", "send[0].data is missing"),
			   "a send item without data is refused");

	CHECK(REFUSED("{\"rid\":1,\"resume\":[]}",
					   "resume must be an object mapping channel names to seqs"),
			   "resume as an array is refused");
	CHECK(REFUSED("{\"rid\":1,\"resume\":{\"c\":-1}}",
					   "resume[\"c\"] must be an integer seq between 0 and 2^63 - 1"),
			   "a negative resume seq is refused");
	CHECK(REFUSED("{\"rid\":1,\"resume\":{\"c\":1.5}}",
					   "resume[\"c\"] must be an integer seq between 0 and 2^63 - 1"),
			   "a resume seq of 1.5 is refused");
	CHECK(REFUSED("{\"rid\":1,\"resume\":{\"c\":\"1\"}}",
					   "resume[\"c\"] must be an integer seq between 0 and 2^63 - 1"),
			   "a resume seq given as a string is refused");
	CHECK(REFUSED("{\"rid\":1,\"resume\":{\"c\":9223372036854775808}}",
					   "resume[\"c\"] must be an integer seq between 0 and 2^63 - 1"),
			   "a resume seq of 2^63 is refused");
	CHECK(ACCEPTED("{\"rid\":1,\"resume\":{\"c\":9223372036854775807}}"),
			   "a resume seq of 2^63 - 1 is accepted");
	CHECK(REFUSED("{\"rid\":1,\"resume\":{\"ok\":1,\"\":2}}",
					   "resume member 1: channel name is empty"),
			   "an empty channel name in resume is refused, naming its position");
	CHECK(REFUSED("{\"rid\":1,\"resume\":{\"a\\u0000b\":1}}",
					   "body has a member name containing \\u0000 at byte 21, which is not supported"),
			   "a member name with \\u0000 is refused (json-c would cut it short)");
	buf_free(&body);
}

static void
test_channel_names(void)
{
	Buf			body = BUF_INIT;
	char		name[PROTO_CHANNEL_MAX + 2];

	CHECK(proto_channel_problem("grid:1", 6) == NULL, "grid:1 is a valid channel name");
	CHECK(proto_channel_problem("caf\xc3\xa9 \xf0\x9f\x98\x80", 10) == NULL,
			   "non-ASCII UTF-8 is valid in channel names");
	CHECK(proto_channel_problem("", 0) != NULL &&
			   strcmp(proto_channel_problem("", 0), "channel name is empty") == 0,
			   "the empty name is refused");
	memset(name, 'c', sizeof(name));
	CHECK(proto_channel_problem(name, PROTO_CHANNEL_MAX) == NULL,
			   "a 63-byte name is valid");
	CHECK(proto_channel_problem(name, PROTO_CHANNEL_MAX + 1) != NULL &&
			   strcmp(proto_channel_problem(name, PROTO_CHANNEL_MAX + 1),
					  "channel name is longer than 63 bytes") == 0,
			   "a 64-byte name is refused");
	CHECK(proto_channel_problem("a\x1f" "b", 3) != NULL &&
			   strcmp(proto_channel_problem("a\x1f" "b", 3),
					  "channel name contains a control character") == 0,
			   "a control character is refused");
	CHECK(proto_channel_problem("a\x7f", 2) != NULL, "DEL is refused");
	CHECK(proto_channel_problem("a\0b", 3) != NULL, "an embedded NUL is refused");
	CHECK(proto_channel_problem("a\xff", 2) != NULL &&
			   strcmp(proto_channel_problem("a\xff", 2), "channel name is not valid UTF-8") == 0,
			   "an invalid UTF-8 byte is refused");
	CHECK(proto_channel_problem("a\xc3", 2) != NULL, "a truncated UTF-8 sequence is refused");
	CHECK(proto_channel_problem("\xc0\xaf", 2) != NULL, "an overlong encoding is refused");
	CHECK(proto_channel_problem("\xed\xa0\x80", 3) != NULL,
			   "an encoded surrogate is refused");

	CHECK(REFUSED("{\"rid\":1,\"subscribe\":[\"a\",\"b\",\"\"]}",
					   "subscribe[2]: channel name is empty"),
			   "an empty channel in subscribe is refused, naming its index");
	name[PROTO_CHANNEL_MAX] = '\0';
	buf_printf(&body, "{\"rid\":1,\"subscribe\":[\"%s\"]}", name);
	CHECK(accepted(body.data, body.len), "a 63-byte channel in subscribe is accepted");
	name[PROTO_CHANNEL_MAX] = 'c';
	name[PROTO_CHANNEL_MAX + 1] = '\0';
	buf_reset(&body);
	buf_printf(&body, "{\"rid\":1,\"subscribe\":[\"a\",\"b\",\"%s\"]}", name);
	CHECK(refused(body.data, body.len,
					   "subscribe[2]: channel name is longer than 63 bytes"),
			   "a 64-byte channel in subscribe is refused");
	CHECK(REFUSED("{\"rid\":1,\"subscribe\":[\"a\\tb\"]}",
					   "subscribe[0]: channel name contains a control character"),
			   "an escaped tab in a channel name is refused");
	CHECK(REFUSED("{\"rid\":1,\"unsubscribe\":[\"a\\u0000b\"]}",
					   "unsubscribe[0]: channel name contains a control character"),
			   "an escaped NUL in a channel name is refused, not cut short");
	CHECK(REFUSED("{\"rid\":1,\"subscribe\":[\"a\\u007f\"]}",
					   "subscribe[0]: channel name contains a control character"),
			   "an escaped DEL in a channel name is refused");
	CHECK(REFUSED("{\"rid\":1,\"subscribe\":[\"a\xff\"]}", "body is not valid UTF-8"),
			   "a channel name with an invalid UTF-8 byte makes the body invalid UTF-8");
	CHECK(REFUSED("{\"rid\":1,\"subscribe\":[\"\\ud800\"]}",
					   "body has an unpaired surrogate escape at byte 23, which is not supported"),
			   "an unpaired surrogate escape is refused (json-c would make it U+FFFD)");
	CHECK(REFUSED("{\"rid\":1,\"send\":[{\"channel\":\"ok\",\"data\":1},"
					   "{\"channel\":\"a\\nb\",\"data\":2}]}",
					   "send[1].channel: channel name contains a control character"),
			   "a bad channel in send is refused, naming the item");
	CHECK(REFUSED("{\"rid\":1,\"resume\":{\"a\\u0001\":1}}",
					   "resume member 0: channel name contains a control character"),
			   "a bad channel in resume is refused");
	buf_reset(&body);
	buf_printf(&body, "{\"rid\":1,\"resume\":{\"%s\":1}}", name);
	CHECK(refused(body.data, body.len,
					   "resume member 0: channel name is longer than 63 bytes"),
			   "a 64-byte channel in resume is refused");
	buf_free(&body);
}

static void
test_item_limits(void)
{
	Buf			body = BUF_INIT;
	int			i;

	build_list_body(&body, "subscribe", PROTO_MAX_ITEMS, "\"c\"");
	CHECK(accepted(body.data, body.len), "subscribe with 256 items is accepted");
	build_list_body(&body, "subscribe", PROTO_MAX_ITEMS + 1, "\"c\"");
	CHECK(refused(body.data, body.len, "subscribe has more than 256 items"),
			   "subscribe with 257 items is refused");
	build_list_body(&body, "unsubscribe", PROTO_MAX_ITEMS + 1, "\"c\"");
	CHECK(refused(body.data, body.len, "unsubscribe has more than 256 items"),
			   "unsubscribe with 257 items is refused");
	build_list_body(&body, "send", PROTO_MAX_ITEMS, "{\"channel\":\"c\",\"data\":[1]}");
	CHECK(accepted(body.data, body.len), "send with 256 items is accepted");
	build_list_body(&body, "send", PROTO_MAX_ITEMS + 1, "{\"channel\":\"c\",\"data\":[1]}");
	CHECK(refused(body.data, body.len, "send has more than 256 items"),
			   "send with 257 items is refused");

	buf_reset(&body);
	buf_append_str(&body, "{\"rid\":1,\"resume\":{");
	for (i = 0; i < PROTO_MAX_ITEMS; i++)
		buf_printf(&body, "%s\"c%d\":%d", i > 0 ? "," : "", i, i);
	buf_append_str(&body, "}}");
	CHECK(accepted(body.data, body.len), "resume with 256 channels is accepted");
	body.len -= 2;
	buf_append_str(&body, ",\"one-more\":1}}");
	CHECK(refused(body.data, body.len, "resume has more than 256 channels"),
			   "resume with 257 channels is refused");
	buf_free(&body);
}

static void
test_malformed_bodies(void)
{
	Buf			body = BUF_INIT;

	build_nested_body(&body, 64);
	CHECK(accepted(body.data, body.len), "a body nested 64 levels deep is accepted");
	build_nested_body(&body, 65);
	CHECK(refused(body.data, body.len, "body is nested deeper than 64 levels"),
			   "a body nested 65 levels deep is refused");
	build_nested_body(&body, 100000);
	CHECK(refused(body.data, body.len, "body is nested deeper than 64 levels"),
			   "a body nested 100000 levels deep is refused without trouble");

	CHECK(REFUSED("{\"rid\":1} x", "body has data after the JSON object at byte 10"),
			   "trailing garbage is refused");
	CHECK(REFUSED("{\"rid\":1}{\"rid\":2}", "body has data after the JSON object at byte 9"),
			   "two objects are refused");
	CHECK(REFUSED("{\"rid\":1}\0", "body has data after the JSON object at byte 9"),
			   "a NUL byte after the object is refused");
	CHECK(REFUSED("[1]", "body must be a JSON object"), "an array body is refused");
	CHECK(REFUSED("42", "body must be a JSON object"), "a number body is refused");
	CHECK(REFUSED("\"rid\"", "body must be a JSON object"), "a string body is refused");
	CHECK(REFUSED("null", "body must be a JSON object"), "a null body is refused");
	CHECK(REFUSED("rid=1", "body must be a JSON object"), "a form body is refused");
	CHECK(REFUSED("", "body is empty"), "an empty body is refused");
	CHECK(REFUSED(" \r\n", "body is empty"), "a body of whitespace is refused as empty");
	CHECK(REFUSED("{\"rid\":1,\"x\":\"\xc3\"}", "body is not valid UTF-8"),
			   "a truncated UTF-8 sequence is refused");
	CHECK(REFUSED("\xef\xbb\xbf{\"rid\":1}", "body must be a JSON object"),
			   "a byte order mark is not JSON whitespace");

	CHECK(REFUSED("{\"rid\":1,}",
					   "body is not valid JSON: expected a member name in double quotes at byte 9"),
			   "a trailing comma is refused");
	CHECK(REFUSED("{\"rid\":1", "body is not valid JSON: unexpected end of data at byte 8"),
			   "a body cut short is refused");
	CHECK(REFUSED("{'rid':1}",
					   "body is not valid JSON: expected a member name in double quotes at byte 1"),
			   "single quotes are refused (json-c would take them)");
	CHECK(REFUSED("{rid:1}",
					   "body is not valid JSON: expected a member name in double quotes at byte 1"),
			   "unquoted member names are refused");
	CHECK(REFUSED("{\"rid\":NaN}", "body is not valid JSON: unexpected character at byte 7"),
			   "NaN is refused (json-c would take it)");
	CHECK(REFUSED("{\"rid\":1,\"x\":Infinity}",
					   "body is not valid JSON: unexpected character at byte 13"),
			   "Infinity is refused");
	CHECK(REFUSED("{\"rid\":01}",
					   "body is not valid JSON: invalid number (leading zero) at byte 7"),
			   "a leading zero is refused");
	CHECK(REFUSED("{\"rid\":1.}",
					   "body is not valid JSON: invalid number (no digit after '.') at byte 7"),
			   "1. is refused (json-c would take it)");
	CHECK(REFUSED("{\"rid\":1,\"x\":1e}",
					   "body is not valid JSON: invalid number (no digit in the exponent) at byte 13"),
			   "an exponent without digits is refused");
	CHECK(REFUSED("{\"rid\":+1}", "body is not valid JSON: unexpected character at byte 7"),
			   "a leading + is refused");
	CHECK(REFUSED("{\"rid\":1,\"x\":\"a\tb\"}",
					   "body is not valid JSON: control character in a string at byte 15"),
			   "a raw tab inside a string is refused (json-c would take it)");
	CHECK(REFUSED("{\"rid\":1,\"x\":\"a\\qb\"}",
					   "body is not valid JSON: invalid escape in a string at byte 15"),
			   "an unknown escape is refused");
	CHECK(REFUSED("{\"rid\":1,\"x\":\"\\u12\"}",
					   "body is not valid JSON: invalid \\u escape in a string at byte 14"),
			   "a short \\u escape is refused");
	CHECK(REFUSED("{\"rid\":1,\"x\":\"abc}", "body is not valid JSON: unterminated string at byte 13"),
			   "an unterminated string is refused");
	CHECK(REFUSED("{\"rid\" 1}", "body is not valid JSON: expected ':' after a member name at byte 7"),
			   "a missing colon is refused");
	CHECK(REFUSED("{\"rid\":1 \"x\":2}", "body is not valid JSON: expected ',' or '}' at byte 9"),
			   "a missing comma between members is refused");
	CHECK(REFUSED("{\"rid\":1,\"x\":[1 2]}", "body is not valid JSON: expected ',' or ']' at byte 16"),
			   "a missing comma in an array is refused");
	CHECK(REFUSED("{\"rid\":1,\"x\":[1,]}", "body is not valid JSON: unexpected character at byte 16"),
			   "a trailing comma in an array is refused");
	CHECK(REFUSED("{\"rid\":tru}", "body is not valid JSON: unexpected character at byte 7"),
			   "a misspelt literal is refused");
	CHECK(REFUSED("{\"rid\":1,\"x\":true1}", "body is not valid JSON: expected ',' or '}' at byte 17"),
			   "a literal run into a number is refused");
	CHECK(REFUSED("{\"rid\":1,/*c*/\"x\":1}",
					   "body is not valid JSON: expected a member name in double quotes at byte 9"),
			   "comments are refused");
	CHECK(REFUSED("{\"rid\":1,\"x\":[1e400, -0, 0.5E-3, \"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00Ff\"],"
					   "\"y\":\"\\ud83d\"}",
					   "body has an unpaired surrogate escape at byte 64, which is not supported"),
			   "every valid number and escape form is scanned up to a lone surrogate");
	CHECK(REFUSED("{\"rid\":1,\"x\":\"\\udc00\\ud800\"}",
					   "body has an unpaired surrogate escape at byte 14, which is not supported"),
			   "a low surrogate before a high one is not a pair");
	CHECK(REFUSED("{\"rid\":1,\"send\":[{\"channel\":\"c\",\"data\":-9223372036854775809}]}",
					   "body has an integer that does not fit in 64 bits at byte 39, "
					   "which is not supported"),
			   "send data with an integer json-c would clamp is refused, not altered");

	{
		ProtoRequest request;

		CHECK(DECODE("{\"rid\":1,\"send\":[{\"channel\":\"c\",\"data\":"
						  "[1e400,-0,18446744073709551615,-9223372036854775808]}]}", &request) == PROTO_OK && request.nsend == 1 &&
				   strcmp(request.send[0].data_json,
						  "[1e400,0,18446744073709551615,-9223372036854775808]") == 0,
				   "numbers at the 64-bit limits and huge floats keep their value");
		proto_request_free(&request);
	}
	buf_free(&body);
}

/* Failures after earlier members were decoded: LeakSanitizer checks these. */
static void
test_failures_free_everything(void)
{
	ProtoRequest request;
	char		small_message[12];

	CHECK(REFUSED("{\"sid\":\"s\",\"rid\":1,\"wait\":5,\"auth\":{\"a\":[1,2]},"
					   "\"subscribe\":[\"a\",\"b\"],\"unsubscribe\":[\"c\"],"
					   "\"send\":[{\"channel\":\"c\",\"data\":{\"big\":[1,2,3]}}],"
					   "\"resume\":{\"ok\":1,\"bad\":-2}}",
					   "resume[\"bad\"] must be an integer seq between 0 and 2^63 - 1"),
			   "a failure in the last member frees auth, lists and send data");
	CHECK(REFUSED("{\"rid\":1,\"auth\":{\"a\":1},\"send\":["
					   "{\"channel\":\"c\",\"data\":\"one\"},{\"channel\":\"c\",\"data\":\"two\"},"
					   "{\"channel\":\"c\"}]}",
					   "send[2].data is missing"),
			   "a failure in send[2] frees the data of send[0] and send[1]");
	CHECK(REFUSED("{\"rid\":1,\"subscribe\":[\"a\",\"b\"],\"unsubscribe\":[\"x\",7]}",
					   "unsubscribe[1] must be a string (a channel name)"),
			   "a failure in unsubscribe frees subscribe");

	CHECK(proto_decode_request("{\"rid\":-1}", 10, &request, small_message,
									sizeof(small_message)) == PROTO_BAD_REQUEST &&
			   strcmp(small_message, "rid must be") == 0,
			   "a short message buffer gets a truncated, terminated message");
	CHECK(proto_decode_request("{\"rid\":-1}", 10, &request, NULL, 0) == PROTO_BAD_REQUEST &&
			   request_is_empty(&request),
			   "a NULL message buffer is allowed");
	CHECK(proto_decode_request("{\"rid\":1}", 9, &request, message, sizeof(message)) ==
			   PROTO_OK && message[0] == '\0',
			   "success leaves an empty message");
	proto_request_free(&request);
}

static void
test_conditions(void)
{
	static const struct
	{
		ProtoCondition condition;
		const char *name;
		int			status;
	}			cases[] = {
		{PROTO_OK, "ok", 200},
		{PROTO_BAD_REQUEST, "bad-request", 400},
		{PROTO_FORBIDDEN, "forbidden", 403},
		{PROTO_ITEM_NOT_FOUND, "item-not-found", 404},
		{PROTO_METHOD_NOT_ALLOWED, "method-not-allowed", 405},
		{PROTO_OVERFLOW, "overflow", 410},
		{PROTO_REQUEST_TOO_LARGE, "request-too-large", 413},
		{PROTO_POLICY_VIOLATION, "policy-violation", 429},
		{PROTO_INTERNAL_ERROR, "internal-error", 500},
		{PROTO_SERVICE_UNAVAILABLE, "service-unavailable", 503},
		{PROTO_SYSTEM_SHUTDOWN, "system-shutdown", 503},
	};
	size_t		i;

	CHECK(sizeof(cases) / sizeof(cases[0]) == PROTO_CONDITION_COUNT,
			   "every condition is listed here");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(strcmp(proto_condition_name(cases[i].condition), cases[i].name) == 0 &&
				   proto_condition_status(cases[i].condition) == cases[i].status,
				   "%s is HTTP %d", cases[i].name, cases[i].status);
	CHECK(strcmp(proto_condition_name(PROTO_CONDITION_COUNT), "internal-error") == 0 &&
			   proto_condition_status(PROTO_CONDITION_COUNT) == 500,
			   "an out-of-range condition reads as internal-error, 500");
}

/* Whether out holds exactly expected; out is emptied. */
static bool
encoded_as(Buf *out, const char *expected)
{
	bool		equal = out->data != NULL && strcmp(out->data, expected) == 0 &&
		out->len == strlen(expected);

	if (!equal)
		printf("#   got: %s\n", out->data != NULL ? out->data : "(nothing)");
	buf_reset(out);
	return equal;
}

static void
test_encoders(void)
{
	Buf			out = BUF_INIT;

	proto_encode_error(&out, PROTO_BAD_REQUEST, "rid must be an integer between 0 and 2^53 - 1");
	CHECK(encoded_as(&out, "{\"error\":\"bad-request\","
						  "\"message\":\"rid must be an integer between 0 and 2^53 - 1\"}"),
			   "an error is {\"error\":...,\"message\":...}");
	proto_encode_error(&out, PROTO_FORBIDDEN,
					   "say \"no\" \\ now\nthen\x01 \xe2\x80\xa8 caf\xc3\xa9");
	CHECK(encoded_as(&out, "{\"error\":\"forbidden\",\"message\":"
						  "\"say \\\"no\\\" \\\\ now\\nthen\\u0001 \\u2028 caf\xc3\xa9\"}"),
			   "an error message has quotes, backslashes, controls and U+2028 escaped");
	proto_encode_error(&out, PROTO_SYSTEM_SHUTDOWN, NULL);
	CHECK(encoded_as(&out, "{\"error\":\"system-shutdown\",\"message\":\"\"}"),
			   "a NULL message is written as \"\"");

	proto_encode_packet(&out, "grid:1", 42, "{\"a\":1}", 7);
	CHECK(encoded_as(&out, "{\"channel\":\"grid:1\",\"seq\":42,\"data\":{\"a\":1}}"),
			   "a durable packet is {\"channel\":...,\"seq\":...,\"data\":...}");
	proto_encode_packet(&out, "grid:1", -1, "\"hello\"", 7);
	CHECK(encoded_as(&out, "{\"channel\":\"grid:1\",\"data\":\"hello\"}"),
			   "a plain packet (seq < 0) has no seq");
	proto_encode_packet(&out, "c", 0, "[1]", 3);
	CHECK(encoded_as(&out, "{\"channel\":\"c\",\"seq\":0,\"data\":[1]}"),
			   "seq 0 is written");
	proto_encode_packet(&out, "c", INT64_MAX, "1", 1);
	CHECK(encoded_as(&out, "{\"channel\":\"c\",\"seq\":9223372036854775807,\"data\":1}"),
			   "the largest seq is written in full");
	proto_encode_packet(&out, "c", 1, "[1,2]xyz", 5);
	CHECK(encoded_as(&out, "{\"channel\":\"c\",\"seq\":1,\"data\":[1,2]}"),
			   "exactly data_len bytes of data are copied");
	proto_encode_packet(&out, "c", 1, NULL, 0);
	CHECK(encoded_as(&out, "{\"channel\":\"c\",\"seq\":1,\"data\":null}"),
			   "NULL data is written as null");
	proto_encode_packet(&out, "a\"b\\c\xe2\x80\xa9", 3, "true", 4);
	CHECK(encoded_as(&out, "{\"channel\":\"a\\\"b\\\\c\\u2029\",\"seq\":3,\"data\":true}"),
			   "a packet's channel is escaped");

	proto_encode_gap(&out, "grid:1", 7, 19);
	CHECK(encoded_as(&out, "{\"channel\":\"grid:1\",\"gap\":{\"from\":7,\"to\":19}}"),
			   "a gap is {\"channel\":...,\"gap\":{\"from\":...,\"to\":...}}");
	proto_encode_gap(&out, "x\"y", 1, 1);
	CHECK(encoded_as(&out, "{\"channel\":\"x\\\"y\",\"gap\":{\"from\":1,\"to\":1}}"),
			   "a gap's channel is escaped");

	buf_append_str(&out, "[");
	proto_encode_gap(&out, "a", 1, 2);
	buf_append_str(&out, ",");
	proto_encode_packet(&out, "a", 3, "{}", 2);
	buf_append_str(&out, "]");
	CHECK(encoded_as(&out, "[{\"channel\":\"a\",\"gap\":{\"from\":1,\"to\":2}},"
						  "{\"channel\":\"a\",\"seq\":3,\"data\":{}}]"),
			   "encoders append to what the buffer holds");
	buf_free(&out);
}

/* Parse payload; check kind, seq and data (NULL: none); free it. */
static bool
notify_reads_as(const char *payload, ProtoNotifyKind kind, int64_t seq, const char *data)
{
	ProtoNotify notify;
	bool		as_expected;

	proto_parse_notify(payload, &notify);
	as_expected = notify.kind == kind && notify.seq == seq &&
		(data == NULL ? notify.data_json == NULL && notify.data_len == 0
		 : notify.data_json != NULL && strcmp(notify.data_json, data) == 0 &&
		 notify.data_len == strlen(data));
	if (!as_expected)
		printf("#   got kind %d, seq %lld, data %s (%zu bytes)\n", (int) notify.kind,
			   (long long) notify.seq, notify.data_json ? notify.data_json : "NULL",
			   notify.data_len);
	proto_notify_free(&notify);
	return as_expected && notify.data_json == NULL;
}

static void
test_notify(void)
{
	Buf			payload = BUF_INIT;
	Buf			expected = BUF_INIT;
	int			i;

	CHECK(notify_reads_as("comet/1 12 {\"a\": 1, \"b\": [true]}", PROTO_NOTIFY_DURABLE, 12,
							   "{\"a\": 1, \"b\": [true]}"),
			   "a durable wake-up keeps its JSON exactly as sent");
	CHECK(notify_reads_as("comet/1 1 \"x\"", PROTO_NOTIFY_DURABLE, 1, "\"x\""),
			   "durable data may be a string");
	CHECK(notify_reads_as("comet/1 3 null", PROTO_NOTIFY_DURABLE, 3, "null"),
			   "durable data may be null");
	CHECK(notify_reads_as("comet/1 9223372036854775807 [18446744073709551616]",
							   PROTO_NOTIFY_DURABLE, INT64_MAX, "[18446744073709551616]"),
			   "the largest seq is read, and durable numbers are never clamped");
	CHECK(notify_reads_as("comet/1 4 \"\\ud800\"", PROTO_NOTIFY_DURABLE, 4, "\"\\ud800\""),
			   "durable data is not rewritten even where json-c would");
	CHECK(notify_reads_as("comet/1 12", PROTO_NOTIFY_REFERENCE, 12, NULL),
			   "a reference wake-up has a seq and no data");
	CHECK(notify_reads_as("comet/1 9223372036854775807", PROTO_NOTIFY_REFERENCE, INT64_MAX,
							   NULL),
			   "a reference may carry the largest seq");

	CHECK(notify_reads_as("{\"a\": 1,\n \"b\": \"x\"}", PROTO_NOTIFY_PLAIN, -1,
							   "{\"a\":1,\"b\":\"x\"}"),
			   "a plain JSON payload is re-serialized compactly");
	CHECK(notify_reads_as(" 42 ", PROTO_NOTIFY_PLAIN, -1, "42"),
			   "a plain JSON number is kept as a number");
	CHECK(notify_reads_as("null", PROTO_NOTIFY_PLAIN, -1, "null"),
			   "a plain JSON null is null");
	CHECK(notify_reads_as("hello world", PROTO_NOTIFY_PLAIN, -1, "\"hello world\""),
			   "a plain text payload becomes a JSON string");
	CHECK(notify_reads_as("", PROTO_NOTIFY_PLAIN, -1, "\"\""),
			   "an empty payload becomes the empty string");
	CHECK(notify_reads_as("say \"hi\"\\\n", PROTO_NOTIFY_PLAIN, -1,
							   "\"say \\\"hi\\\"\\\\\\n\""),
			   "a plain text payload is escaped");
	CHECK(notify_reads_as("line\xe2\x80\xa8" "end", PROTO_NOTIFY_PLAIN, -1,
							   "\"line\\u2028end\""),
			   "U+2028 in plain text is escaped");
	CHECK(notify_reads_as("caf\xe9!", PROTO_NOTIFY_PLAIN, -1, "\"caf\xef\xbf\xbd!\""),
			   "invalid UTF-8 in plain text becomes U+FFFD");
	CHECK(notify_reads_as("{\"a\": \"\xff\"}", PROTO_NOTIFY_PLAIN, -1,
							   "\"{\\\"a\\\": \\\"\xef\xbf\xbd\\\"}\""),
			   "JSON with invalid UTF-8 is not JSON: it becomes a string, U+FFFD in it");
	CHECK(notify_reads_as("[1, NaN]", PROTO_NOTIFY_PLAIN, -1, "\"[1, NaN]\""),
			   "a payload json-c would take but JSON forbids is text");
	CHECK(notify_reads_as("[1, 2", PROTO_NOTIFY_PLAIN, -1, "\"[1, 2\""),
			   "truncated JSON is text");
	CHECK(notify_reads_as("[99999999999999999999, 1]", PROTO_NOTIFY_PLAIN, -1,
							   "[99999999999999999999, 1]"),
			   "plain JSON json-c would clamp is passed on as it is");
	CHECK(notify_reads_as("{\"a\\u0000\": 1}", PROTO_NOTIFY_PLAIN, -1, "{\"a\\u0000\": 1}"),
			   "plain JSON json-c would cut short is passed on as it is");

	CHECK(notify_reads_as("comet/1 x", PROTO_NOTIFY_PLAIN, -1, "\"comet/1 x\""),
			   "\"comet/1 x\" is malformed, so plain text");
	CHECK(notify_reads_as("comet/1 12 {bad", PROTO_NOTIFY_PLAIN, -1,
							   "\"comet/1 12 {bad\""),
			   "\"comet/1 12 {bad\" is malformed, so plain text");
	CHECK(notify_reads_as("comet/1 -3", PROTO_NOTIFY_PLAIN, -1, "\"comet/1 -3\""),
			   "a negative seq is malformed");
	CHECK(notify_reads_as("comet/1 +3", PROTO_NOTIFY_PLAIN, -1, "\"comet/1 +3\""),
			   "a seq with '+' is malformed");
	CHECK(notify_reads_as("comet/1 0", PROTO_NOTIFY_PLAIN, -1, "\"comet/1 0\""),
			   "seq 0 is malformed (seqs start at 1)");
	CHECK(notify_reads_as("comet/1 012", PROTO_NOTIFY_PLAIN, -1, "\"comet/1 012\""),
			   "a seq with a leading zero is malformed");
	CHECK(notify_reads_as("comet/1 9223372036854775808", PROTO_NOTIFY_PLAIN, -1,
							   "\"comet/1 9223372036854775808\""),
			   "a seq of 2^63 is malformed");
	CHECK(notify_reads_as("comet/1 12x", PROTO_NOTIFY_PLAIN, -1, "\"comet/1 12x\""),
			   "a seq followed by a letter is malformed");
	CHECK(notify_reads_as("comet/1 12 ", PROTO_NOTIFY_PLAIN, -1, "\"comet/1 12 \""),
			   "a seq followed by a space and nothing is malformed");
	CHECK(notify_reads_as("comet/1 12\t{}", PROTO_NOTIFY_PLAIN, -1, "\"comet/1 12\\t{}\""),
			   "a seq followed by a tab is malformed");
	CHECK(notify_reads_as("comet/1 12 {} {}", PROTO_NOTIFY_PLAIN, -1,
							   "\"comet/1 12 {} {}\""),
			   "two JSON values after the seq are malformed");
	CHECK(notify_reads_as("comet/1 12 NaN", PROTO_NOTIFY_PLAIN, -1, "\"comet/1 12 NaN\""),
			   "durable data that is not strict JSON is malformed");
	CHECK(notify_reads_as("comet/1 5 \"\xff\"", PROTO_NOTIFY_PLAIN, -1,
							   "\"comet/1 5 \\\"\xef\xbf\xbd\\\"\""),
			   "durable data with invalid UTF-8 is malformed, and its text made valid");
	CHECK(notify_reads_as("comet/1", PROTO_NOTIFY_PLAIN, -1, "\"comet/1\""),
			   "the bare prefix is plain text");
	CHECK(notify_reads_as("comet/2 12 {}", PROTO_NOTIFY_PLAIN, -1, "\"comet/2 12 {}\""),
			   "another protocol version is plain text");

	buf_append_str(&payload, "comet/1 7 ");
	for (i = 0; i < 3000; i++)
		buf_append_char(&payload, '[');
	for (i = 0; i < 3000; i++)
		buf_append_char(&payload, ']');
	CHECK(notify_reads_as(payload.data, PROTO_NOTIFY_DURABLE, 7, payload.data + 10),
			   "durable data nested 3000 deep (within NOTIFY's 8000 bytes) is kept");
	CHECK(notify_reads_as(payload.data + 10, PROTO_NOTIFY_PLAIN, -1, payload.data + 10),
			   "plain JSON nested 3000 deep is passed on as it is");
	buf_reset(&payload);
	for (i = 0; i < 100; i++)
		buf_append_str(&payload, "[ ");
	for (i = 0; i < 100; i++)
		buf_append_str(&payload, "] ");
	for (i = 0; i < 100; i++)
		buf_append_char(&expected, '[');
	for (i = 0; i < 100; i++)
		buf_append_char(&expected, ']');
	CHECK(notify_reads_as(payload.data, PROTO_NOTIFY_PLAIN, -1, expected.data),
			   "plain JSON nested 100 deep is re-serialized");

	buf_free(&payload);
	buf_free(&expected);
}

/* Whether body decodes as exactly the poll {sid, rid} and nothing else. */
static bool
decodes_as_poll(const char *body, const char *sid, uint64_t rid)
{
	ProtoRequest request;
	bool		ok;

	if (decode(body, strlen(body), &request) != PROTO_OK)
		return false;
	ok = request.has_sid && strcmp(request.sid, sid) == 0 && request.rid == rid &&
		!request.has_wait && request.auth_json == NULL && !request.terminate &&
		request.nsubscribe == 0 && request.nunsubscribe == 0 && request.nsend == 0 &&
		request.nresume == 0;
	proto_request_free(&request);
	return ok;
}

/*
 * A pure poll is read without json-c (decode_plain_poll); whatever it does
 * not take goes the full way, so the two must agree on every body.
 */
static void
test_plain_polls(void)
{
	static const char *const refused[] = {
		"{\"sid\":\"abc\",\"rid\":01}",		/* leading zero: not JSON */
		"{\"sid\":\"abc\",\"rid\":-1}",
		"{\"sid\":\"abc\",\"rid\":1.0}",
		"{\"sid\":\"abc\",\"rid\":1e3}",
		"{\"sid\":\"abc\",\"rid\":9007199254740992}",	/* 2^53 */
		"{\"sid\":\"abc\",\"rid\":90071992547409920}",
		"{\"sid\":\"\",\"rid\":1}",
		"{\"sid\":\"a b\",\"rid\":1}",
		"{\"sid\":\"abc\",\"rid\":1,}",
		"{\"sid\":\"abc\",\"rid\":1} x",
		"{\"sid\":\"abc\" \"rid\":1}",
		"{\"sid\":\"abc\",\"rid\":\"1\"}",
		"{\"sid\":\"abc\",\"rid\":1",
	};
	char		long_sid[PROTO_SID_MAX + 2];
	char		body[256];
	size_t		i;
	ProtoRequest request;

	CHECK(decodes_as_poll("{\"sid\":\"n1.Ab_c-9\",\"rid\":42}", "n1.Ab_c-9", 42),
		  "a plain poll decodes");
	CHECK(decodes_as_poll(" {\t\"rid\" : 0 ,\r\n \"sid\" :\"x\" } \n", "x", 0),
		  "in either order, with whitespace, rid 0");
	CHECK(decodes_as_poll("{\"sid\":\"x\",\"rid\":9007199254740991}", "x",
						  UINT64_C(9007199254740991)), "rid 2^53 - 1");
	CHECK(decodes_as_poll("{\"sid\":\"x\",\"rid\":1,\"rid\":2}", "x", 2),
		  "a repeated member goes the full way (the last one counts)");
	CHECK(decodes_as_poll("{\"sid\":\"\\u0078\",\"rid\":1}", "x", 1),
		  "an escaped sid goes the full way");
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		CHECK(decode(refused[i], strlen(refused[i]), &request) == PROTO_BAD_REQUEST &&
			  request_is_empty(&request), "refused: %s (%s)", refused[i], message);

	memset(long_sid, 'a', sizeof(long_sid));
	long_sid[PROTO_SID_MAX] = '\0';
	snprintf(body, sizeof(body), "{\"sid\":\"%s\",\"rid\":7}", long_sid);
	CHECK(decodes_as_poll(body, long_sid, 7), "a sid of PROTO_SID_MAX characters");
	long_sid[PROTO_SID_MAX] = 'a';
	long_sid[PROTO_SID_MAX + 1] = '\0';
	snprintf(body, sizeof(body), "{\"sid\":\"%s\",\"rid\":7}", long_sid);
	CHECK(decode(body, strlen(body), &request) == PROTO_BAD_REQUEST,
		  "a sid one longer is refused (%s)", message);
}

/*
 * Inputs fuzz/request_fuzzer found or pinned down (fuzz/README.md): each is
 * a behaviour that once broke, named by what it must do now.
 */

/* {"rid":1,"x":[[...[innermost]...]]}: depth levels, the object counted. */
static void
build_nested_body_around(Buf *body, int depth, const char *innermost)
{
	int			i;

	buf_reset(body);
	buf_append_str(body, "{\"rid\":1,\"x\":");
	for (i = 2; i < depth; i++)
		buf_append_char(body, '[');
	buf_append_str(body, innermost);
	for (i = 2; i < depth; i++)
		buf_append_char(body, ']');
	buf_append_char(body, '}');
}

static void
test_fuzz_regressions(void)
{
	Buf			body = BUF_INIT;

	/* json-c's depth counted the value inside the deepest container too */
	build_nested_body_around(&body, 64, "[1]");
	CHECK(accepted(body.data, body.len),
		  "a body nested 64 levels deep with a value innermost is accepted");
	build_nested_body_around(&body, 64, "{\"a\":1}");
	CHECK(accepted(body.data, body.len),
		  "a body nested 64 levels deep with a member innermost is accepted");
	build_nested_body_around(&body, 65, "[1]");
	CHECK(refused(body.data, body.len, "body is nested deeper than 64 levels"),
		  "a body nested 65 levels deep with a value innermost is refused for its depth");
	buf_free(&body);
}

/* jsonb cannot store \u0000: the decoder refuses it where SQL would get it. */
static void
test_nul_escapes(void)
{
	static const char *const refused[] = {
		"{\"sid\":\"s\",\"rid\":1,\"send\":[{\"channel\":\"c\",\"data\":\"a\\u0000b\"}]}",
		"{\"sid\":\"s\",\"rid\":1,\"send\":[{\"channel\":\"c\",\"data\":{\"k\\u0000\":1}}]}",
		"{\"rid\":1,\"auth\":{\"token\":\"\\u0000\"}}",
	};
	const char *literal = "{\"sid\":\"s\",\"rid\":1,\"send\":[{\"channel\":\"c\",\"data\":\"\\\\u0000\"}]}";
	ProtoRequest request;
	size_t		i;

	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		CHECK(decode(refused[i], strlen(refused[i]), &request) == PROTO_BAD_REQUEST &&
			  strstr(message, "\\u0000") != NULL && request_is_empty(&request),
			  "\\u0000 is refused: %s (%s)", refused[i], message);
	CHECK(decode(literal, strlen(literal), &request) == PROTO_OK &&
		  strcmp(request.send[0].data_json, "\"\\\\u0000\"") == 0,
		  "a backslash followed by u0000 is only text, and passes (%s)",
		  request.nsend ? request.send[0].data_json : message);
	proto_request_free(&request);
}

int
main(void)
{
	test_nul_escapes();
	test_plain_polls();
	test_valid_requests();
	test_rid();
	test_member_types();
	test_channel_names();
	test_item_limits();
	test_malformed_bodies();
	test_failures_free_everything();
	test_conditions();
	test_encoders();
	test_notify();
	test_fuzz_regressions();
	return unit_done();
}
