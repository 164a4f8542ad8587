/*
 * protocol.c — comet's wire protocol as data (protocol.h): decoding request
 * bodies, encoding errors, packets and gaps, reading NOTIFY payloads.
 *
 * No I/O and no session state.  Everything here is fed by strangers (a
 * browser's body, any role's NOTIFY), so the rules are:
 *
 *  1. Check before trusting json-c.  Even with JSON_TOKENER_STRICT, json-c
 *     0.16 accepts NaN, Infinity, single-quoted strings, "1." and raw
 *     control characters in strings; it clamps integers beyond 64 bits,
 *     cuts member names at "\u0000" and turns unpaired surrogate escapes
 *     into U+FFFD.  So every text first goes through json_check_text, a
 *     small RFC 8259 checker that also notes what json-c would silently
 *     change.  Only then does json-c build the tree the request is read
 *     from; a request json-c would alter is refused, a plain NOTIFY
 *     payload json-c would alter is passed on as it is.
 *  2. Whatever reaches a browser is valid JSON: JSON text passed on as it
 *     is has been checked, strings are written by buf_append_json_string.
 *  3. A failed decode leaves nothing allocated and says precisely what is
 *     wrong, naming the member and item ("subscribe[2]: ...").
 */
#include "protocol.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Request bodies nested deeper than this are refused (protocol.h). */
#define PROTO_REQUEST_MAX_DEPTH 64

/*
 * NOTIFY payloads are under 8000 bytes, so this only bounds the checker's
 * stack; a durable packet's JSON is passed on as it is at any depth.
 */
#define PROTO_NOTIFY_MAX_DEPTH 8192

/*
 * A plain payload nested deeper than this is passed on as it is instead
 * of being re-serialized, so json-c's recursive writer stays shallow.
 */
#define PROTO_NOTIFY_REWRITE_MAX_DEPTH 512

/* The prefix of the extension's wake-ups (docs/sql.md, The NOTIFY wake-up). */
#define PROTO_NOTIFY_PREFIX "comet/1 "

/* The most levels json_check_text can track. */
#define JSON_CHECK_DEPTH_LIMIT PROTO_NOTIFY_MAX_DEPTH

/* ---------------------------------------------------------------------
 * Conditions
 * --------------------------------------------------------------------- */

static const struct
{
	const char *name;
	int			status;
}			proto_conditions[PROTO_CONDITION_COUNT] = {
	[PROTO_OK] = {"ok", 200},
	[PROTO_BAD_REQUEST] = {"bad-request", 400},
	[PROTO_FORBIDDEN] = {"forbidden", 403},
	[PROTO_ITEM_NOT_FOUND] = {"item-not-found", 404},
	[PROTO_METHOD_NOT_ALLOWED] = {"method-not-allowed", 405},
	[PROTO_OVERFLOW] = {"overflow", 410},
	[PROTO_REQUEST_TOO_LARGE] = {"request-too-large", 413},
	[PROTO_POLICY_VIOLATION] = {"policy-violation", 429},
	[PROTO_INTERNAL_ERROR] = {"internal-error", 500},
	[PROTO_SERVICE_UNAVAILABLE] = {"service-unavailable", 503},
	[PROTO_SYSTEM_SHUTDOWN] = {"system-shutdown", 503},
};

/* The condition's name on the wire; a value out of range is internal-error. */
const char *
proto_condition_name(ProtoCondition condition)
{
	if ((unsigned) condition >= PROTO_CONDITION_COUNT)
		condition = PROTO_INTERNAL_ERROR;
	return proto_conditions[condition].name;
}

/* The HTTP status that carries the condition; out of range is 500. */
int
proto_condition_status(ProtoCondition condition)
{
	if ((unsigned) condition >= PROTO_CONDITION_COUNT)
		condition = PROTO_INTERNAL_ERROR;
	return proto_conditions[condition].status;
}

/* ---------------------------------------------------------------------
 * Small helpers: memory, UTF-8
 * --------------------------------------------------------------------- */

/* malloc that aborts with a message, as buf.c does. */
static void *
proto_alloc(size_t count, size_t size)
{
	void	   *memory = calloc(count > 0 ? count : 1, size);

	if (memory == NULL)
	{
		fprintf(stderr, "comet-bridge: out of memory (%zu items of %zu bytes)\n",
				count, size);
		abort();
	}
	return memory;
}

/* A malloc'd, NUL-terminated copy of text[0..len). */
static char *
proto_copy_text(const char *text, size_t len)
{
	char	   *copy = proto_alloc(len + 1, 1);

	memcpy(copy, text, len);
	copy[len] = '\0';
	return copy;
}

/* The well-formed UTF-8 sequence at s: its length, or 0 (see buf.h). */
static size_t
utf8_sequence_length(const unsigned char *s, size_t avail)
{
	size_t		invalid_len;

	return buf_utf8_sequence_length(s, avail, &invalid_len);
}

/* Whether text[0..len) is entirely well-formed UTF-8. */
static bool
utf8_is_valid(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *) text;
	size_t		pos = 0;

	while (pos < len)
	{
		size_t		sequence_len;

		if (s[pos] < 0x80)
		{
			pos++;
			continue;
		}
		sequence_len = utf8_sequence_length(s + pos, len - pos);
		if (sequence_len == 0)
			return false;
		pos += sequence_len;
	}
	return true;
}

/* ---------------------------------------------------------------------
 * json_check_text: a strict RFC 8259 checker
 * --------------------------------------------------------------------- */

typedef enum JsonCheckResult
{
	JSON_CHECK_OK,
	JSON_CHECK_SYNTAX,			/* not JSON; see problem and offset */
	JSON_CHECK_TOO_DEEP,		/* nested deeper than allowed */
	JSON_CHECK_TRAILING			/* a value followed by more than whitespace */
} JsonCheckResult;

typedef struct JsonCheck
{
	JsonCheckResult result;
	const char *problem;		/* for JSON_CHECK_SYNTAX: what is wrong */
	size_t		offset;			/* where the problem is */
	int			max_depth_seen; /* deepest nesting met */
	/* the first thing json-c would change in valid JSON, or NULL */
	const char *alteration;
	size_t		alteration_offset;
} JsonCheck;

static bool
json_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool
json_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
json_is_hex_digit(char c)
{
	return json_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static size_t
json_skip_space(const char *text, size_t len, size_t pos)
{
	while (pos < len && json_is_space(text[pos]))
		pos++;
	return pos;
}

/* Note the first thing in the text json-c would not keep as it is. */
static void
json_note_alteration(JsonCheck *check, size_t offset, const char *alteration)
{
	if (check->alteration != NULL)
		return;
	check->alteration = alteration;
	check->alteration_offset = offset;
}

/* The value of the four hex digits at text (already checked). */
static unsigned
json_hex4_value(const char *text)
{
	unsigned	value = 0;
	int			i;

	for (i = 0; i < 4; i++)
	{
		char		c = text[i];

		value <<= 4;
		if (c >= '0' && c <= '9')
			value |= (unsigned) (c - '0');
		else if (c >= 'a' && c <= 'f')
			value |= (unsigned) (c - 'a' + 10);
		else
			value |= (unsigned) (c - 'A' + 10);
	}
	return value;
}

/* Whether text[pos..len) starts with a complete \uXXXX escape. */
static bool
json_is_unicode_escape(const char *text, size_t len, size_t pos)
{
	return pos + 6 <= len && text[pos] == '\\' && text[pos + 1] == 'u' &&
		json_is_hex_digit(text[pos + 2]) && json_is_hex_digit(text[pos + 3]) &&
		json_is_hex_digit(text[pos + 4]) && json_is_hex_digit(text[pos + 5]);
}

/* Record a failure in check and return false, for "return json_fail(...)". */
static bool
json_fail(JsonCheck *check, JsonCheckResult result, size_t offset, const char *problem)
{
	check->result = result;
	check->offset = offset;
	check->problem = problem;
	return false;
}

/*
 * Scan the string whose opening quote is at *pos; on success *pos is just
 * past the closing quote.  Notes unpaired surrogate escapes and, in a
 * member name (is_member_name), \u0000, which json-c would not keep.
 */
static bool
json_scan_string(const char *text, size_t len, size_t *pos, bool is_member_name,
				 JsonCheck *check)
{
	size_t		p = *pos + 1;

	for (;;)
	{
		unsigned char c;

		if (p >= len)
			return json_fail(check, JSON_CHECK_SYNTAX, *pos, "unterminated string");
		c = (unsigned char) text[p];
		if (c == '"')
			break;
		if (c < 0x20)
			return json_fail(check, JSON_CHECK_SYNTAX, p,
							 "control character in a string");
		if (c != '\\')
		{
			p++;
			continue;
		}
		if (p + 1 >= len)
			return json_fail(check, JSON_CHECK_SYNTAX, *pos, "unterminated string");
		switch (text[p + 1])
		{
			case '"':
			case '\\':
			case '/':
			case 'b':
			case 'f':
			case 'n':
			case 'r':
			case 't':
				p += 2;
				break;
			case 'u':
				{
					unsigned	code;

					if (!json_is_unicode_escape(text, len, p))
						return json_fail(check, JSON_CHECK_SYNTAX, p,
										 "invalid \\u escape in a string");
					code = json_hex4_value(text + p + 2);
					if (code == 0 && is_member_name)
						json_note_alteration(check, p, "a member name containing \\u0000");
					if (code >= 0xD800 && code <= 0xDBFF &&
						json_is_unicode_escape(text, len, p + 6) &&
						json_hex4_value(text + p + 8) >= 0xDC00 &&
						json_hex4_value(text + p + 8) <= 0xDFFF)
						p += 6; /* a surrogate pair: one character */
					else if (code >= 0xD800 && code <= 0xDFFF)
						json_note_alteration(check, p, "an unpaired surrogate escape");
					p += 6;
					break;
				}
			default:
				return json_fail(check, JSON_CHECK_SYNTAX, p, "invalid escape in a string");
		}
	}
	*pos = p + 1;
	return true;
}

/*
 * Scan the number starting at *pos (a '-' or a digit).  Notes an integer
 * json-c cannot hold (below -2^63 or above 2^64 - 1): it would clamp it.
 */
static bool
json_scan_number(const char *text, size_t len, size_t *pos, JsonCheck *check)
{
	static const char int64_min_digits[] = "9223372036854775808";
	static const char uint64_max_digits[] = "18446744073709551615";
	size_t		start = *pos;
	size_t		p = start;
	size_t		digits_start;
	size_t		digits_len;
	bool		negative = false;
	bool		integer = true;

	if (text[p] == '-')
	{
		negative = true;
		p++;
	}
	digits_start = p;
	if (p >= len || !json_is_digit(text[p]))
		return json_fail(check, JSON_CHECK_SYNTAX, start, "invalid number");
	if (text[p] == '0')
	{
		p++;
		if (p < len && json_is_digit(text[p]))
			return json_fail(check, JSON_CHECK_SYNTAX, start,
							 "invalid number (leading zero)");
	}
	else
	{
		while (p < len && json_is_digit(text[p]))
			p++;
	}
	digits_len = p - digits_start;

	if (p < len && text[p] == '.')
	{
		integer = false;
		p++;
		if (p >= len || !json_is_digit(text[p]))
			return json_fail(check, JSON_CHECK_SYNTAX, start,
							 "invalid number (no digit after '.')");
		while (p < len && json_is_digit(text[p]))
			p++;
	}
	if (p < len && (text[p] == 'e' || text[p] == 'E'))
	{
		integer = false;
		p++;
		if (p < len && (text[p] == '+' || text[p] == '-'))
			p++;
		if (p >= len || !json_is_digit(text[p]))
			return json_fail(check, JSON_CHECK_SYNTAX, start,
							 "invalid number (no digit in the exponent)");
		while (p < len && json_is_digit(text[p]))
			p++;
	}

	if (integer)
	{
		const char *limit = negative ? int64_min_digits : uint64_max_digits;
		size_t		limit_len = strlen(limit);

		if (digits_len > limit_len ||
			(digits_len == limit_len && memcmp(text + digits_start, limit, limit_len) > 0))
			json_note_alteration(check, start, "an integer that does not fit in 64 bits");
	}
	*pos = p;
	return true;
}

/*
 * Scan an object member's name and the ':' after it, starting at *pos;
 * on success *pos is where the member's value starts.
 */
static bool
json_scan_member_name(const char *text, size_t len, size_t *pos, JsonCheck *check)
{
	size_t		name_start = *pos;

	if (name_start >= len || text[name_start] != '"')
		return json_fail(check, JSON_CHECK_SYNTAX, name_start,
						 name_start >= len ? "unexpected end of data"
						 : "expected a member name in double quotes");
	if (!json_scan_string(text, len, pos, true, check))
		return false;
	*pos = json_skip_space(text, len, *pos);
	if (*pos >= len || text[*pos] != ':')
		return json_fail(check, JSON_CHECK_SYNTAX, *pos,
						 *pos >= len ? "unexpected end of data"
						 : "expected ':' after a member name");
	*pos = json_skip_space(text, len, *pos + 1);
	return true;
}

/*
 * Check that text[0..len) is exactly one JSON value (RFC 8259), with only
 * whitespace around it, nested at most max_depth levels (at most
 * JSON_CHECK_DEPTH_LIMIT).  text must already be valid UTF-8.  Fills
 * *check either way; returns whether the text is JSON.
 */
static bool
json_check_text(const char *text, size_t len, int max_depth, JsonCheck *check)
{
	unsigned char in_object[JSON_CHECK_DEPTH_LIMIT / 8];	/* a bit per level */
	int			depth = 0;
	size_t		pos;

	memset(check, 0, sizeof(*check));
	if (max_depth > JSON_CHECK_DEPTH_LIMIT)
		max_depth = JSON_CHECK_DEPTH_LIMIT;

	pos = json_skip_space(text, len, 0);
	for (;;)
	{
		bool		value_done = true;
		char		c;

		/* a value starts at pos */
		if (pos >= len)
			return json_fail(check, JSON_CHECK_SYNTAX, pos, "unexpected end of data");
		c = text[pos];
		if (c == '{' || c == '[')
		{
			bool		is_object = c == '{';

			if (depth >= max_depth)
				return json_fail(check, JSON_CHECK_TOO_DEEP, pos, "nested too deep");
			if (depth % 8 == 0)
				in_object[depth / 8] = 0;	/* a fresh byte of levels */
			if (is_object)
				in_object[depth / 8] |= (unsigned char) (1u << (depth % 8));
			else
				in_object[depth / 8] &= (unsigned char) ~(1u << (depth % 8));
			depth++;
			if (depth > check->max_depth_seen)
				check->max_depth_seen = depth;
			pos = json_skip_space(text, len, pos + 1);
			if (pos < len && text[pos] == (is_object ? '}' : ']'))
			{
				depth--;
				pos++;
			}
			else
			{
				if (is_object && !json_scan_member_name(text, len, &pos, check))
					return false;
				value_done = false;
			}
		}
		else if (c == '"')
		{
			if (!json_scan_string(text, len, &pos, false, check))
				return false;
		}
		else if (c == '-' || json_is_digit(c))
		{
			if (!json_scan_number(text, len, &pos, check))
				return false;
		}
		else if (len - pos >= 4 && memcmp(text + pos, "true", 4) == 0)
			pos += 4;
		else if (len - pos >= 5 && memcmp(text + pos, "false", 5) == 0)
			pos += 5;
		else if (len - pos >= 4 && memcmp(text + pos, "null", 4) == 0)
			pos += 4;
		else
			return json_fail(check, JSON_CHECK_SYNTAX, pos, "unexpected character");

		if (!value_done)
			continue;

		/* a value ended: close containers until one has a next member */
		for (;;)
		{
			bool		is_object;

			pos = json_skip_space(text, len, pos);
			if (depth == 0)
			{
				if (pos < len)
					return json_fail(check, JSON_CHECK_TRAILING, pos,
									 "data after the value");
				return true;
			}
			is_object = (in_object[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1;
			if (pos >= len)
				return json_fail(check, JSON_CHECK_SYNTAX, pos, "unexpected end of data");
			if (text[pos] == ',')
			{
				pos = json_skip_space(text, len, pos + 1);
				if (is_object && !json_scan_member_name(text, len, &pos, check))
					return false;
				break;
			}
			if (text[pos] == (is_object ? '}' : ']'))
			{
				depth--;
				pos++;
				continue;
			}
			return json_fail(check, JSON_CHECK_SYNTAX, pos,
							 is_object ? "expected ',' or '}'" : "expected ',' or ']'");
		}
	}
}

/*
 * Parse text[0..len), already accepted by json_check_text, into a json-c
 * tree.  NULL when json-c refuses it anyway (*error says why).  A JSON null
 * also comes back as NULL, with *error json_tokener_success.
 */
static struct json_object *
json_parse_checked(const char *text, size_t len, int max_depth,
				   enum json_tokener_error *error)
{
	struct json_tokener *tokener;
	struct json_object *value;
	char	   *terminated;

	if (len >= INT_MAX)
	{
		*error = json_tokener_error_size;
		return NULL;
	}
	/* json-c counts the value inside the deepest container as a level too */
	tokener = json_tokener_new_ex(max_depth + 1);
	if (tokener == NULL)
	{
		fprintf(stderr, "comet-bridge: out of memory (json tokener)\n");
		abort();
	}
	json_tokener_set_flags(tokener, JSON_TOKENER_STRICT);

	/* json-c needs the terminating NUL to know a bare number has ended */
	terminated = proto_copy_text(text, len);
	value = json_tokener_parse_ex(tokener, terminated, (int) len + 1);
	*error = json_tokener_get_error(tokener);
	if (*error != json_tokener_success)
	{
		json_object_put(value);
		value = NULL;
	}
	free(terminated);
	json_tokener_free(tokener);
	return value;
}

/* value (NULL is JSON null) as compact JSON text, malloc'd. */
static char *
json_serialize(struct json_object *value, size_t *len)
{
	size_t		text_len;
	const char *text;

	text = json_object_to_json_string_length(value, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &text_len);
	if (text == NULL)
	{
		fprintf(stderr, "comet-bridge: out of memory (serializing JSON)\n");
		abort();
	}
	if (len != NULL)
		*len = text_len;
	return proto_copy_text(text, text_len);
}

/* ---------------------------------------------------------------------
 * Channel names
 * --------------------------------------------------------------------- */

/*
 * NULL when name[0..len) is a valid channel name: 1 to 63 bytes of valid
 * UTF-8 with no control character (below 0x20, or 0x7F).  Otherwise what
 * is wrong, as a phrase ("channel name is empty").
 */
const char *
proto_channel_problem(const char *name, size_t len)
{
	const unsigned char *s = (const unsigned char *) name;
	size_t		pos = 0;

	if (len == 0)
		return "channel name is empty";
	if (len > PROTO_CHANNEL_MAX)
		return "channel name is longer than 63 bytes";
	while (pos < len)
	{
		size_t		sequence_len;

		if (s[pos] < 0x20 || s[pos] == 0x7F)
			return "channel name contains a control character";
		if (s[pos] < 0x80)
		{
			pos++;
			continue;
		}
		sequence_len = utf8_sequence_length(s + pos, len - pos);
		if (sequence_len == 0)
			return "channel name is not valid UTF-8";
		pos += sequence_len;
	}
	return NULL;
}

/* ---------------------------------------------------------------------
 * Decoding requests
 * --------------------------------------------------------------------- */

/* What one proto_decode_request call works on. */
typedef struct RequestDecoder
{
	ProtoRequest *request;
	char	   *message;		/* where the failure is described */
	size_t		message_len;
} RequestDecoder;

/* Describe a failure for the client; returns false for "return ...". */
static bool decoder_fail(RequestDecoder *decoder, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

static bool
decoder_fail(RequestDecoder *decoder, const char *fmt,...)
{
	va_list		args;

	if (decoder->message == NULL || decoder->message_len == 0)
		return false;
	va_start(args, fmt);
	vsnprintf(decoder->message, decoder->message_len, fmt, args);
	va_end(args);
	return false;
}

/*
 * Check a JSON string as a channel name and copy it to channel; where
 * names the item in messages ("subscribe[2]").
 */
static bool
decode_channel_name(RequestDecoder *decoder, struct json_object *value,
					char channel[PROTO_CHANNEL_MAX + 1], const char *where)
{
	const char *name;
	size_t		name_len;
	const char *problem;

	if (!json_object_is_type(value, json_type_string))
		return decoder_fail(decoder, "%s must be a string (a channel name)", where);
	name = json_object_get_string(value);
	name_len = (size_t) json_object_get_string_len(value);
	problem = proto_channel_problem(name, name_len);
	if (problem != NULL)
		return decoder_fail(decoder, "%s: %s", where, problem);
	memcpy(channel, name, name_len);
	channel[name_len] = '\0';
	return true;
}

/* "sid": a string of 1 to PROTO_SID_MAX letters, digits, '.', '_', '-'. */
static bool
decode_sid(RequestDecoder *decoder, struct json_object *value)
{
	const char *sid;
	size_t		sid_len;
	size_t		i;

	if (!json_object_is_type(value, json_type_string))
		return decoder_fail(decoder, "sid must be a string");
	sid = json_object_get_string(value);
	sid_len = (size_t) json_object_get_string_len(value);
	if (sid_len == 0 || sid_len > PROTO_SID_MAX)
		return decoder_fail(decoder, "sid must be 1 to %d characters long", PROTO_SID_MAX);
	for (i = 0; i < sid_len; i++)
	{
		char		c = sid[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || json_is_digit(c) ||
			  c == '.' || c == '_' || c == '-'))
			return decoder_fail(decoder,
								"sid may contain only letters, digits, '.', '_' and '-'");
	}
	memcpy(decoder->request->sid, sid, sid_len);
	decoder->request->sid[sid_len] = '\0';
	decoder->request->has_sid = true;
	return true;
}

/*
 * Read an integer member between min and max (max <= INT64_MAX); false,
 * without a message, when value is not such an integer.  Floats such as
 * 1.0 are not integers here.
 */
static bool
json_get_integer_in_range(struct json_object *value, int64_t min, int64_t max,
						  int64_t *result)
{
	int64_t		number;

	if (!json_object_is_type(value, json_type_int))
		return false;
	number = json_object_get_int64(value);
	/* json-c reports integers above INT64_MAX as INT64_MAX */
	if (number == INT64_MAX && json_object_get_uint64(value) > (uint64_t) INT64_MAX)
		return false;
	if (number < min || number > max)
		return false;
	*result = number;
	return true;
}

/* "rid": an integer in [0, 2^53). */
static bool
decode_rid(RequestDecoder *decoder, struct json_object *value)
{
	int64_t		rid;

	if (!json_get_integer_in_range(value, 0, (int64_t) (PROTO_RID_LIMIT - 1), &rid))
		return decoder_fail(decoder, "rid must be an integer between 0 and 2^53 - 1");
	decoder->request->rid = (uint64_t) rid;
	return true;
}

/* "wait": an integer >= 1; the caller caps it, so huge values become INT_MAX. */
static bool
decode_wait(RequestDecoder *decoder, struct json_object *value)
{
	int64_t		wait;

	if (!json_get_integer_in_range(value, 1, INT64_MAX, &wait))
		return decoder_fail(decoder, "wait must be an integer number of seconds, at least 1");
	decoder->request->wait = wait > INT_MAX ? INT_MAX : (int) wait;
	decoder->request->has_wait = true;
	return true;
}

/*
 * Whether serialized JSON text has the escape \u0000 in a string: jsonb,
 * which the bridge's SQL functions take, cannot store it (22P05), so such a
 * value is refused here, with a message, instead of failing in the database.
 */
static bool
json_text_has_nul(const char *text)
{
	const char *p;

	for (p = text; *p; p++)
	{
		if (*p != '\\')
			continue;
		if (p[1] == 'u' && strncmp(p + 2, "0000", 4) == 0)
			return true;
		if (p[1] != '\0')
			p++;				/* skip the escaped character ("\\\\" too) */
	}
	return false;
}

/* "auth": any object, kept as compact JSON text; null means none. */
static bool
decode_auth(RequestDecoder *decoder, struct json_object *value)
{
	if (value == NULL)
		return true;
	if (!json_object_is_type(value, json_type_object))
		return decoder_fail(decoder, "auth must be an object or null");
	decoder->request->auth_json = json_serialize(value, NULL);
	if (json_text_has_nul(decoder->request->auth_json))
		return decoder_fail(decoder, "auth may not contain \\u0000");
	return true;
}

/* "terminate": true or false. */
static bool
decode_terminate(RequestDecoder *decoder, struct json_object *value)
{
	if (!json_object_is_type(value, json_type_boolean))
		return decoder_fail(decoder, "terminate must be true or false");
	decoder->request->terminate = json_object_get_boolean(value);
	return true;
}

/*
 * "subscribe" or "unsubscribe" (member): an array of at most
 * PROTO_MAX_ITEMS channel names, stored in *channels / *count.
 */
static bool
decode_channel_list(RequestDecoder *decoder, struct json_object *value,
					const char *member, char (**channels)[PROTO_CHANNEL_MAX + 1],
					int *count)
{
	size_t		nitems;
	size_t		i;

	if (!json_object_is_type(value, json_type_array))
		return decoder_fail(decoder, "%s must be an array of channel names", member);
	nitems = json_object_array_length(value);
	if (nitems > PROTO_MAX_ITEMS)
		return decoder_fail(decoder, "%s has more than %d items", member, PROTO_MAX_ITEMS);
	if (nitems == 0)
		return true;

	*channels = proto_alloc(nitems, sizeof(**channels));
	for (i = 0; i < nitems; i++)
	{
		char		where[32];

		snprintf(where, sizeof(where), "%s[%zu]", member, i);
		if (!decode_channel_name(decoder, json_object_array_get_idx(value, i),
								 (*channels)[i], where))
			return false;
		*count = (int) i + 1;
	}
	return true;
}

/* "send": an array of {"channel": name, "data": any JSON}. */
static bool
decode_send(RequestDecoder *decoder, struct json_object *value)
{
	ProtoRequest *request = decoder->request;
	size_t		nitems;
	size_t		i;

	if (!json_object_is_type(value, json_type_array))
		return decoder_fail(decoder, "send must be an array of {\"channel\", \"data\"} objects");
	nitems = json_object_array_length(value);
	if (nitems > PROTO_MAX_ITEMS)
		return decoder_fail(decoder, "send has more than %d items", PROTO_MAX_ITEMS);
	if (nitems == 0)
		return true;

	request->send = proto_alloc(nitems, sizeof(ProtoSendItem));
	for (i = 0; i < nitems; i++)
	{
		struct json_object *item = json_object_array_get_idx(value, i);
		ProtoSendItem *send_item = &request->send[i];
		struct json_object *channel;
		struct json_object *data;
		char		where[32];

		if (!json_object_is_type(item, json_type_object))
			return decoder_fail(decoder,
								"send[%zu] must be an object with \"channel\" and \"data\"", i);
		if (!json_object_object_get_ex(item, "channel", &channel))
			return decoder_fail(decoder, "send[%zu].channel is missing", i);
		snprintf(where, sizeof(where), "send[%zu].channel", i);
		if (!decode_channel_name(decoder, channel, send_item->channel, where))
			return false;
		if (!json_object_object_get_ex(item, "data", &data))
			return decoder_fail(decoder, "send[%zu].data is missing", i);
		send_item->data_json = json_serialize(data, NULL);
		request->nsend = (int) i + 1;
		if (json_text_has_nul(send_item->data_json))
			return decoder_fail(decoder, "send[%zu].data may not contain \\u0000", i);
	}
	return true;
}

/* "resume": an object mapping channel names to seqs (integers >= 0). */
static bool
decode_resume(RequestDecoder *decoder, struct json_object *value)
{
	ProtoRequest *request = decoder->request;
	struct json_object_iterator member;
	struct json_object_iterator end;
	size_t		nmembers;
	size_t		i = 0;

	if (!json_object_is_type(value, json_type_object))
		return decoder_fail(decoder, "resume must be an object mapping channel names to seqs");
	nmembers = (size_t) json_object_object_length(value);
	if (nmembers > PROTO_MAX_ITEMS)
		return decoder_fail(decoder, "resume has more than %d channels", PROTO_MAX_ITEMS);
	if (nmembers == 0)
		return true;

	request->resume = proto_alloc(nmembers, sizeof(ProtoResumeItem));
	member = json_object_iter_begin(value);
	end = json_object_iter_end(value);
	for (; !json_object_iter_equal(&member, &end) && i < nmembers;
		 json_object_iter_next(&member), i++)
	{
		const char *name = json_object_iter_peek_name(&member);
		struct json_object *seq_value = json_object_iter_peek_value(&member);
		ProtoResumeItem *resume_item = &request->resume[i];
		size_t		name_len = strlen(name);
		const char *problem = proto_channel_problem(name, name_len);

		if (problem != NULL)
			return decoder_fail(decoder, "resume member %zu: %s", i, problem);
		if (!json_get_integer_in_range(seq_value, 0, INT64_MAX, &resume_item->seq))
			return decoder_fail(decoder,
								"resume[\"%s\"] must be an integer seq between 0 and 2^63 - 1",
								name);
		memcpy(resume_item->channel, name, name_len + 1);
		request->nresume = (int) i + 1;
	}
	return true;
}

/*
 * Check the body's text before json-c sees it: not empty, valid UTF-8, an
 * object, strict JSON, not too deep, nothing json-c would alter.
 */
static bool
decode_check_body(RequestDecoder *decoder, const char *body, size_t len)
{
	JsonCheck	check;
	size_t		start = json_skip_space(body, len, 0);

	if (start == len)
		return decoder_fail(decoder, "body is empty");
	if (!utf8_is_valid(body, len))
		return decoder_fail(decoder, "body is not valid UTF-8");
	if (body[start] != '{')
		return decoder_fail(decoder, "body must be a JSON object");
	if (json_check_text(body, len, PROTO_REQUEST_MAX_DEPTH, &check))
	{
		if (check.alteration != NULL)
			return decoder_fail(decoder, "body has %s at byte %zu, which is not supported",
								check.alteration, check.alteration_offset);
		return true;
	}
	switch (check.result)
	{
		case JSON_CHECK_TOO_DEEP:
			return decoder_fail(decoder, "body is nested deeper than %d levels",
								PROTO_REQUEST_MAX_DEPTH);
		case JSON_CHECK_TRAILING:
			return decoder_fail(decoder, "body has data after the JSON object at byte %zu",
								check.offset);
		default:
			return decoder_fail(decoder, "body is not valid JSON: %s at byte %zu",
								check.problem, check.offset);
	}
}

/* Read every member the protocol knows from the body's root object. */
static bool
decode_members(RequestDecoder *decoder, struct json_object *root)
{
	ProtoRequest *request = decoder->request;
	struct json_object *value;

	if (json_object_object_get_ex(root, "sid", &value) && !decode_sid(decoder, value))
		return false;
	if (!json_object_object_get_ex(root, "rid", &value))
		return decoder_fail(decoder, "rid is missing");
	if (!decode_rid(decoder, value))
		return false;
	if (json_object_object_get_ex(root, "wait", &value) && !decode_wait(decoder, value))
		return false;
	if (json_object_object_get_ex(root, "auth", &value) && !decode_auth(decoder, value))
		return false;
	if (json_object_object_get_ex(root, "terminate", &value) &&
		!decode_terminate(decoder, value))
		return false;
	if (json_object_object_get_ex(root, "subscribe", &value) &&
		!decode_channel_list(decoder, value, "subscribe",
							 &request->subscribe, &request->nsubscribe))
		return false;
	if (json_object_object_get_ex(root, "unsubscribe", &value) &&
		!decode_channel_list(decoder, value, "unsubscribe",
							 &request->unsubscribe, &request->nunsubscribe))
		return false;
	if (json_object_object_get_ex(root, "send", &value) && !decode_send(decoder, value))
		return false;
	if (json_object_object_get_ex(root, "resume", &value) && !decode_resume(decoder, value))
		return false;
	return true;
}

/*
 * Decode a request body (protocol.h).  PROTO_OK fills *request, to be
 * freed with proto_request_free; PROTO_BAD_REQUEST leaves *request empty
 * with nothing to free and describes the problem in message.
 */
/*
 * The request almost every exchange is, a poll {"sid":"S","rid":N}, read
 * without building a JSON tree: members "sid" and "rid" once each, in
 * either order, JSON whitespace between tokens, a sid of the characters
 * decode_sid allows, a rid of plain digits (no sign, fraction, exponent or
 * leading zero) below 2^53.  Anything else returns false and takes the full
 * way, which also decides every error.
 */
static bool
decode_plain_poll(const char *body, size_t len, ProtoRequest *request)
{
	size_t		pos = json_skip_space(body, len, 0);
	bool		seen_sid = false;
	bool		seen_rid = false;

	if (pos >= len || body[pos] != '{')
		return false;
	while (!(seen_sid && seen_rid))
	{
		pos = json_skip_space(body, len, pos + 1);	/* after '{' or ',' */
		if (len - pos >= 5 && memcmp(body + pos, "\"sid\"", 5) == 0 && !seen_sid)
		{
			size_t		start;

			pos = json_skip_space(body, len, pos + 5);
			if (pos >= len || body[pos] != ':')
				return false;
			pos = json_skip_space(body, len, pos + 1);
			if (pos >= len || body[pos] != '"')
				return false;
			start = ++pos;
			while (pos < len && pos - start <= PROTO_SID_MAX &&
				   ((body[pos] >= 'A' && body[pos] <= 'Z') || (body[pos] >= 'a' && body[pos] <= 'z') ||
					json_is_digit(body[pos]) || body[pos] == '.' || body[pos] == '_' || body[pos] == '-'))
				pos++;
			if (pos >= len || body[pos] != '"' || pos == start || pos - start > PROTO_SID_MAX)
				return false;
			memcpy(request->sid, body + start, pos - start);
			request->sid[pos - start] = '\0';
			pos++;
			seen_sid = true;
		}
		else if (len - pos >= 5 && memcmp(body + pos, "\"rid\"", 5) == 0 && !seen_rid)
		{
			uint64_t	rid = 0;
			size_t		start;

			pos = json_skip_space(body, len, pos + 5);
			if (pos >= len || body[pos] != ':')
				return false;
			start = pos = json_skip_space(body, len, pos + 1);
			while (pos < len && json_is_digit(body[pos]) && pos - start < 17)
				rid = rid * 10 + (uint64_t) (body[pos++] - '0');
			if (pos == start || pos - start > 16 || (body[start] == '0' && pos - start > 1) ||
				rid >= PROTO_RID_LIMIT || (pos < len && (body[pos] == '.' || body[pos] == 'e' ||
														 body[pos] == 'E')))
				return false;
			request->rid = rid;
			seen_rid = true;
		}
		else
			return false;
		pos = json_skip_space(body, len, pos);
		if (pos >= len || body[pos] != (seen_sid && seen_rid ? '}' : ','))
			return false;
	}
	if (json_skip_space(body, len, pos + 1) != len)
		return false;
	request->has_sid = true;
	return true;
}

ProtoCondition
proto_decode_request(const char *body, size_t len, ProtoRequest *request,
					 char *message, size_t message_len)
{
	RequestDecoder decoder;
	struct json_object *root;
	enum json_tokener_error parse_error;
	bool		decoded;

	memset(request, 0, sizeof(*request));
	decoder.request = request;
	decoder.message = message;
	decoder.message_len = message_len;
	if (message != NULL && message_len > 0)
		message[0] = '\0';
	if (decode_plain_poll(body, len, request))
		return PROTO_OK;
	memset(request, 0, sizeof(*request));

	if (!decode_check_body(&decoder, body, len))
		return PROTO_BAD_REQUEST;

	root = json_parse_checked(body, len, PROTO_REQUEST_MAX_DEPTH, &parse_error);
	if (root == NULL)
	{
		/* json_check_text accepted what json-c refuses: should not happen */
		decoder_fail(&decoder, "body is not valid JSON: %s",
					 json_tokener_error_desc(parse_error));
		return PROTO_BAD_REQUEST;
	}

	decoded = decode_members(&decoder, root);
	json_object_put(root);
	if (!decoded)
	{
		proto_request_free(request);
		return PROTO_BAD_REQUEST;
	}
	return PROTO_OK;
}

/* Free what a decoded request holds; it is left empty, safe to free again. */
void
proto_request_free(ProtoRequest *request)
{
	int			i;

	free(request->auth_json);
	free(request->subscribe);
	free(request->unsubscribe);
	for (i = 0; i < request->nsend; i++)
		free(request->send[i].data_json);
	free(request->send);
	free(request->resume);
	memset(request, 0, sizeof(*request));
}

/* ---------------------------------------------------------------------
 * Encoding responses
 * --------------------------------------------------------------------- */

/* Append {"error":"<condition>","message":"<message>"}; NULL message is "". */
void
proto_encode_error(Buf *out, ProtoCondition condition, const char *message)
{
	if (message == NULL)
		message = "";
	buf_append_str(out, "{\"error\":\"");
	buf_append_str(out, proto_condition_name(condition));
	buf_append_str(out, "\",\"message\":");
	buf_append_json_string(out, message, strlen(message));
	buf_append_char(out, '}');
}

/*
 * Append {"channel":C,"seq":N,"data":D}, without "seq" when seq < 0.
 * data_json is copied as it is (NULL is written as null).
 */
void
proto_encode_packet(Buf *out, const char *channel, int64_t seq,
					const char *data_json, size_t data_len)
{
	buf_append_str(out, "{\"channel\":");
	buf_append_json_string(out, channel, strlen(channel));
	if (seq >= 0)
	{
		buf_append_str(out, ",\"seq\":");
		buf_append_int64(out, seq);
	}
	buf_append_str(out, ",\"data\":");
	if (data_json == NULL)
		buf_append_str(out, "null");
	else
		buf_append(out, data_json, data_len);
	buf_append_char(out, '}');
}

/* Append {"channel":C,"gap":{"from":F,"to":T}}. */
void
proto_encode_gap(Buf *out, const char *channel, int64_t from, int64_t to)
{
	buf_append_str(out, "{\"channel\":");
	buf_append_json_string(out, channel, strlen(channel));
	buf_append_str(out, ",\"gap\":{\"from\":");
	buf_append_int64(out, from);
	buf_append_str(out, ",\"to\":");
	buf_append_int64(out, to);
	buf_append_str(out, "}}");
}

/* ---------------------------------------------------------------------
 * NOTIFY payloads
 * --------------------------------------------------------------------- */

/*
 * Read the seq of a wake-up: 1 to 2^63 - 1 in plain decimal (no sign, no
 * leading zero).  On success *end is the first byte after the digits.
 */
static bool
notify_parse_seq(const char *text, int64_t *seq, const char **end)
{
	const char *p = text;
	int64_t		value = 0;

	if (!json_is_digit(*p) || *p == '0')
		return false;
	while (json_is_digit(*p))
	{
		int			digit = *p - '0';

		if (value > (INT64_MAX - digit) / 10)
			return false;
		value = value * 10 + digit;
		p++;
	}
	*seq = value;
	*end = p;
	return true;
}

/*
 * A plain payload as packet data: the payload's JSON re-serialized when it
 * is one JSON value (as it is, should json-c be unable to keep it exactly),
 * else the payload as a JSON string, ill-formed UTF-8 replaced by U+FFFD.
 */
static void
notify_read_plain(const char *payload, ProtoNotify *notify)
{
	size_t		len = strlen(payload);
	JsonCheck	check;

	notify->kind = PROTO_NOTIFY_PLAIN;
	notify->seq = -1;

	if (utf8_is_valid(payload, len) &&
		json_check_text(payload, len, PROTO_NOTIFY_MAX_DEPTH, &check))
	{
		struct json_object *value = NULL;
		enum json_tokener_error parse_error = json_tokener_error_parse_unexpected;

		if (check.alteration == NULL &&
			check.max_depth_seen <= PROTO_NOTIFY_REWRITE_MAX_DEPTH)
			value = json_parse_checked(payload, len, PROTO_NOTIFY_REWRITE_MAX_DEPTH + 1,
									   &parse_error);
		if (parse_error == json_tokener_success)
			notify->data_json = json_serialize(value, &notify->data_len);
		else
		{
			notify->data_json = proto_copy_text(payload, len);
			notify->data_len = len;
		}
		json_object_put(value);
		return;
	}

	{
		Buf			text = BUF_INIT;

		buf_append_json_string(&text, payload, len);
		notify->data_json = buf_steal(&text, &notify->data_len);
	}
}

/*
 * Read a NOTIFY payload (protocol.h): "comet/1 <seq>" is a reference,
 * "comet/1 <seq> <json>" durable with the JSON kept exactly as sent,
 * anything else (malformed wake-ups included) plain.
 */
void
proto_parse_notify(const char *payload, ProtoNotify *notify)
{
	size_t		prefix_len = strlen(PROTO_NOTIFY_PREFIX);
	int64_t		seq;
	const char *after_seq;

	memset(notify, 0, sizeof(*notify));
	if (strncmp(payload, PROTO_NOTIFY_PREFIX, prefix_len) == 0 &&
		notify_parse_seq(payload + prefix_len, &seq, &after_seq))
	{
		if (*after_seq == '\0')
		{
			notify->kind = PROTO_NOTIFY_REFERENCE;
			notify->seq = seq;
			return;
		}
		if (*after_seq == ' ')
		{
			const char *json_text = after_seq + 1;
			size_t		json_len = strlen(json_text);
			JsonCheck	check;

			if (utf8_is_valid(json_text, json_len) &&
				json_check_text(json_text, json_len, PROTO_NOTIFY_MAX_DEPTH, &check))
			{
				notify->kind = PROTO_NOTIFY_DURABLE;
				notify->seq = seq;
				notify->data_json = proto_copy_text(json_text, json_len);
				notify->data_len = json_len;
				return;
			}
		}
	}
	notify_read_plain(payload, notify);
}

/* Free a parsed payload's data; the struct is left empty. */
void
proto_notify_free(ProtoNotify *notify)
{
	free(notify->data_json);
	memset(notify, 0, sizeof(*notify));
	notify->seq = -1;
}
