/*
 * oracle.c — the fuzz harnesses' independent checks (oracle.h).
 *
 * The JSON checker is a plain recursive descent over RFC 8259's grammar,
 * deliberately shaped unlike bridge/protocol.c's iterative json_check_text
 * and pl/template.c's tree builder; the UTF-8 checker decodes code points
 * and range-checks them instead of using per-lead byte tables as buf.c
 * does.  Agreement between differently written code is the point.
 */
#include "oracle.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The text being checked and how far the checker got. */
typedef struct OracleScan
{
	const char *text;
	size_t		len;
	size_t		pos;
	int			depth_seen;
	bool		too_deep;
} OracleScan;

static bool scan_value(OracleScan *scan, int depth);

static void
scan_space(OracleScan *scan)
{
	while (scan->pos < scan->len &&
		   (scan->text[scan->pos] == ' ' || scan->text[scan->pos] == '\t' ||
			scan->text[scan->pos] == '\n' || scan->text[scan->pos] == '\r'))
		scan->pos++;
}

/* Whether the next byte is c; consumes it if so. */
static bool
scan_take(OracleScan *scan, char c)
{
	if (scan->pos < scan->len && scan->text[scan->pos] == c)
	{
		scan->pos++;
		return true;
	}
	return false;
}

static bool
scan_digit_run(OracleScan *scan)
{
	size_t		start = scan->pos;

	while (scan->pos < scan->len && scan->text[scan->pos] >= '0' &&
		   scan->text[scan->pos] <= '9')
		scan->pos++;
	return scan->pos > start;
}

/* number = [ minus ] int [ frac ] [ exp ] */
static bool
scan_number(OracleScan *scan)
{
	scan_take(scan, '-');
	if (scan_take(scan, '0'))
	{
		/* a leading zero stands alone; a digit after it ends the number */
	}
	else if (scan->pos < scan->len && scan->text[scan->pos] >= '1' &&
			 scan->text[scan->pos] <= '9')
		scan_digit_run(scan);
	else
		return false;
	if (scan_take(scan, '.') && !scan_digit_run(scan))
		return false;
	if (scan_take(scan, 'e') || scan_take(scan, 'E'))
	{
		if (!scan_take(scan, '+'))
			scan_take(scan, '-');
		if (!scan_digit_run(scan))
			return false;
	}
	return true;
}

/* string = quotation-mark *char quotation-mark */
static bool
scan_string(OracleScan *scan)
{
	if (!scan_take(scan, '"'))
		return false;
	while (scan->pos < scan->len)
	{
		unsigned char c = (unsigned char) scan->text[scan->pos++];

		if (c == '"')
			return true;
		if (c < 0x20)
			return false;
		if (c != '\\')
			continue;
		if (scan->pos >= scan->len)
			return false;
		c = (unsigned char) scan->text[scan->pos++];
		if (c == 'u')
		{
			int			k;

			for (k = 0; k < 4; k++, scan->pos++)
			{
				if (scan->pos >= scan->len ||
					strchr("0123456789abcdefABCDEF", scan->text[scan->pos]) == NULL ||
					scan->text[scan->pos] == '\0')
					return false;
			}
		}
		else if (c == '\0' || strchr("\"\\/bfnrt", c) == NULL)
			return false;
	}
	return false;
}

static bool
scan_literal(OracleScan *scan, const char *word)
{
	size_t		n = strlen(word);

	if (scan->len - scan->pos < n || memcmp(scan->text + scan->pos, word, n) != 0)
		return false;
	scan->pos += n;
	return true;
}

/* array or object; depth is the container's own level */
static bool
scan_container(OracleScan *scan, int depth, bool is_object)
{
	char		close = is_object ? '}' : ']';

	if (depth > scan->depth_seen)
		scan->depth_seen = depth;
	if (depth > ORACLE_DEPTH_CAP)
	{
		scan->too_deep = true;
		return false;
	}
	scan->pos++;				/* '{' or '[' */
	scan_space(scan);
	if (scan_take(scan, close))
		return true;
	for (;;)
	{
		if (is_object)
		{
			scan_space(scan);
			if (!scan_string(scan))
				return false;
			scan_space(scan);
			if (!scan_take(scan, ':'))
				return false;
		}
		if (!scan_value(scan, depth))
			return false;
		scan_space(scan);
		if (scan_take(scan, close))
			return true;
		if (!scan_take(scan, ','))
			return false;
	}
}

/* value, with whitespace before it; depth is the enclosing level */
static bool
scan_value(OracleScan *scan, int depth)
{
	scan_space(scan);
	if (scan->pos >= scan->len)
		return false;
	switch (scan->text[scan->pos])
	{
		case '{':
			return scan_container(scan, depth + 1, true);
		case '[':
			return scan_container(scan, depth + 1, false);
		case '"':
			return scan_string(scan);
		case 't':
			return scan_literal(scan, "true");
		case 'f':
			return scan_literal(scan, "false");
		case 'n':
			return scan_literal(scan, "null");
		default:
			return scan_number(scan);
	}
}

OracleJsonResult
oracle_json_check(const char *text, size_t len, int *depth_seen)
{
	OracleScan	scan = {text, len, 0, 0, false};
	bool		valid;

	valid = scan_value(&scan, 0);
	if (valid)
	{
		scan_space(&scan);
		valid = scan.pos == scan.len;
	}
	if (depth_seen != NULL)
		*depth_seen = scan.depth_seen;
	if (scan.too_deep)
		return ORACLE_JSON_TOO_DEEP;
	return valid ? ORACLE_JSON_VALID : ORACLE_JSON_INVALID;
}

bool
oracle_utf8_valid(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *) text;
	size_t		i = 0;

	while (i < len)
	{
		unsigned	code;
		unsigned	minimum;
		size_t		continuation;
		size_t		k;

		if (s[i] < 0x80)
		{
			i++;
			continue;
		}
		if ((s[i] & 0xE0) == 0xC0)
		{
			code = s[i] & 0x1Fu;
			continuation = 1;
			minimum = 0x80;
		}
		else if ((s[i] & 0xF0) == 0xE0)
		{
			code = s[i] & 0x0Fu;
			continuation = 2;
			minimum = 0x800;
		}
		else if ((s[i] & 0xF8) == 0xF0)
		{
			code = s[i] & 0x07u;
			continuation = 3;
			minimum = 0x10000;
		}
		else
			return false;
		for (k = 1; k <= continuation; k++)
		{
			if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
				return false;
			code = (code << 6) | (s[i + k] & 0x3Fu);
		}
		if (code < minimum || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
			return false;
		i += continuation + 1;
	}
	return true;
}

bool
oracle_jsonc_parse(const char *text, size_t len, int max_depth,
				   struct json_object **value)
{
	struct json_tokener *tokener;
	struct json_object *parsed;
	char	   *terminated;
	bool		accepted;

	if (value != NULL)
		*value = NULL;
	if (len >= INT_MAX)
		return false;
	tokener = json_tokener_new_ex(max_depth);
	terminated = malloc(len + 1);
	if (tokener == NULL || terminated == NULL)
	{
		fputs("fuzz: out of memory\n", stderr);
		abort();
	}
	json_tokener_set_flags(tokener, JSON_TOKENER_STRICT);
	memcpy(terminated, text, len);
	terminated[len] = '\0';
	/* with the NUL, so that a bare number at the end is complete */
	parsed = json_tokener_parse_ex(tokener, terminated, (int) len + 1);
	accepted = json_tokener_get_error(tokener) == json_tokener_success;
	if (accepted && value != NULL)
		*value = parsed;
	else
		json_object_put(parsed);
	free(terminated);
	json_tokener_free(tokener);
	return accepted;
}

static const unsigned char *oracle_input;
static size_t oracle_input_size;

void
oracle_set_input(const unsigned char *data, size_t size)
{
	oracle_input = data;
	oracle_input_size = size;
}

void
oracle_fail(const char *file, int line, const char *fmt,...)
{
	va_list		args;
	size_t		i;

	fprintf(stderr, "fuzz invariant broken at %s:%d: ", file, line);
	va_start(args, fmt);
	vfprintf(stderr, fmt, args);
	va_end(args);
	fprintf(stderr, "\ninput (%zu bytes, hex):", oracle_input_size);
	for (i = 0; i < oracle_input_size && i < 512; i++)
		fprintf(stderr, "%s%02x", i % 32 == 0 ? "\n  " : "", oracle_input[i]);
	fprintf(stderr, "%s\n", i < oracle_input_size ? " ..." : "");
	abort();
}
