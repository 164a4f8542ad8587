/*
 * buf.c — the growable byte buffer of buf.h.
 *
 * The buffer always keeps a NUL after its contents once anything has been
 * written, so data can be used as a C string.  Running out of memory (or
 * asking for more than size_t can count) aborts with a message on stderr:
 * every input the bridge buffers is bounded, so there is nothing sensible
 * to answer instead.
 *
 * buf_append_json_string is the one place the bridge turns text into a JSON
 * string; it must never emit anything a browser's JSON.parse would refuse,
 * nor raw U+2028/U+2029 (which break JSON embedded in a script).
 */
#include "buf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first allocation; later ones double. */
#define BUF_INITIAL_CAPACITY 64

/* Report an allocation we cannot make and stop. */
static void
buf_out_of_memory(size_t wanted)
{
	fprintf(stderr, "comet-bridge: out of memory (buffer of %zu bytes)\n", wanted);
	abort();
}

/*
 * Make room for extra more bytes plus the terminating NUL.  Capacity grows
 * by doubling, so n appends cost O(n) copying in all.
 */
void
buf_reserve(Buf *buf, size_t extra)
{
	size_t		needed;
	size_t		capacity;
	char	   *data;

	if (extra > SIZE_MAX - buf->len - 1)
		buf_out_of_memory(SIZE_MAX);
	needed = buf->len + extra + 1;
	if (needed <= buf->capacity)
		return;

	capacity = buf->capacity > 0 ? buf->capacity : BUF_INITIAL_CAPACITY;
	while (capacity < needed)
	{
		if (capacity > SIZE_MAX / 2)
		{
			capacity = needed;
			break;
		}
		capacity *= 2;
	}

	data = realloc(buf->data, capacity);
	if (data == NULL)
		buf_out_of_memory(capacity);
	if (buf->data == NULL)
		data[0] = '\0';
	buf->data = data;
	buf->capacity = capacity;
}

/* Append len bytes (data may be NULL when len is 0). */
void
buf_append(Buf *buf, const void *data, size_t len)
{
	buf_reserve(buf, len);
	if (len > 0)
		memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
}

void
buf_append_str(Buf *buf, const char *str)
{
	buf_append(buf, str, strlen(str));
}

void
buf_append_char(Buf *buf, char c)
{
	buf_reserve(buf, 1);
	buf->data[buf->len++] = c;
	buf->data[buf->len] = '\0';
}

/*
 * Append printf-style output.  Formats into the free space first and, when
 * that is too small, grows the buffer to the exact size and formats again.
 */
void
buf_printf(Buf *buf, const char *fmt,...)
{
	va_list		args;
	int			written;
	size_t		room;

	buf_reserve(buf, 0);
	room = buf->capacity - buf->len;
	va_start(args, fmt);
	written = vsnprintf(buf->data + buf->len, room, fmt, args);
	va_end(args);
	if (written < 0)
	{
		fprintf(stderr, "comet-bridge: buf_printf cannot format \"%s\"\n", fmt);
		abort();
	}

	if ((size_t) written >= room)
	{
		buf_reserve(buf, (size_t) written);
		va_start(args, fmt);
		written = vsnprintf(buf->data + buf->len, (size_t) written + 1, fmt, args);
		va_end(args);
		if (written < 0)
		{
			fprintf(stderr, "comet-bridge: buf_printf cannot format \"%s\"\n", fmt);
			abort();
		}
	}
	buf->len += (size_t) written;
}

/* Append value in decimal, INT64_MIN included. */
void
buf_append_int64(Buf *buf, int64_t value)
{
	char		digits[24];
	size_t		start = sizeof(digits);
	uint64_t	magnitude;

	magnitude = value < 0 ? (uint64_t) 0 - (uint64_t) value : (uint64_t) value;
	do
	{
		digits[--start] = (char) ('0' + magnitude % 10);
		magnitude /= 10;
	} while (magnitude > 0);
	if (value < 0)
		digits[--start] = '-';
	buf_append(buf, digits + start, sizeof(digits) - start);
}

/*
 * The length of the well-formed UTF-8 sequence at s (1 to 4 bytes), or 0
 * when there is none; then *invalid_len is the length of the maximal
 * ill-formed subpart, which counts as one U+FFFD (as the WHATWG decoder
 * does).  No overlongs, no surrogates, nothing above U+10FFFF.
 */
size_t
buf_utf8_sequence_length(const unsigned char *s, size_t avail, size_t *invalid_len)
{
	unsigned char lead = s[0];
	unsigned char second_min = 0x80;
	unsigned char second_max = 0xBF;
	size_t		length;
	size_t		i;

	*invalid_len = 1;
	if (lead < 0x80)
		return 1;
	if (lead >= 0xC2 && lead <= 0xDF)
		length = 2;
	else if (lead >= 0xE0 && lead <= 0xEF)
	{
		length = 3;
		if (lead == 0xE0)
			second_min = 0xA0;	/* no overlongs */
		else if (lead == 0xED)
			second_max = 0x9F;	/* no surrogates */
	}
	else if (lead >= 0xF0 && lead <= 0xF4)
	{
		length = 4;
		if (lead == 0xF0)
			second_min = 0x90;	/* no overlongs */
		else if (lead == 0xF4)
			second_max = 0x8F;	/* nothing above U+10FFFF */
	}
	else
		return 0;

	for (i = 1; i < length; i++)
	{
		unsigned char min = i == 1 ? second_min : 0x80;
		unsigned char max = i == 1 ? second_max : 0xBF;

		if (i >= avail || s[i] < min || s[i] > max)
		{
			*invalid_len = i;
			return 0;
		}
	}
	return length;
}

/*
 * Append str[0..len) as a JSON string with its quotes.  Escapes '"', '\',
 * every control character (C0 and DEL) and U+2028/U+2029; other valid UTF-8
 * is copied as it is.  str should be valid UTF-8; if it is not, each
 * ill-formed sequence becomes U+FFFD, so the output is always valid JSON.
 */
void
buf_append_json_string(Buf *buf, const char *str, size_t len)
{
	static const char hex_digits[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *) str;
	size_t		pos = 0;
	size_t		run_start = 0;	/* start of bytes copied unchanged */

	buf_reserve(buf, len + 2);
	buf_append_char(buf, '"');
	while (pos < len)
	{
		unsigned char c = s[pos];
		const char *escape = NULL;
		char		unicode_escape[7];
		size_t		sequence_len;
		size_t		invalid_len;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7F)
		{
			pos++;
			continue;
		}

		sequence_len = 1;
		if (c == '"')
			escape = "\\\"";
		else if (c == '\\')
			escape = "\\\\";
		else if (c == '\n')
			escape = "\\n";
		else if (c == '\r')
			escape = "\\r";
		else if (c == '\t')
			escape = "\\t";
		else if (c == '\b')
			escape = "\\b";
		else if (c == '\f')
			escape = "\\f";
		else if (c < 0x80)
		{
			/* the other C0 controls and DEL */
			unicode_escape[0] = '\\';
			unicode_escape[1] = 'u';
			unicode_escape[2] = '0';
			unicode_escape[3] = '0';
			unicode_escape[4] = hex_digits[c >> 4];
			unicode_escape[5] = hex_digits[c & 0xF];
			unicode_escape[6] = '\0';
			escape = unicode_escape;
		}
		else
		{
			sequence_len = buf_utf8_sequence_length(s + pos, len - pos, &invalid_len);
			if (sequence_len == 0)
			{
				escape = "\xEF\xBF\xBD";	/* U+FFFD */
				sequence_len = invalid_len;
			}
			else if (sequence_len == 3 && c == 0xE2 && s[pos + 1] == 0x80 &&
					 (s[pos + 2] == 0xA8 || s[pos + 2] == 0xA9))
				escape = s[pos + 2] == 0xA8 ? "\\u2028" : "\\u2029";
			else
			{
				pos += sequence_len;
				continue;
			}
		}

		buf_append(buf, s + run_start, pos - run_start);
		buf_append_str(buf, escape);
		pos += sequence_len;
		run_start = pos;
	}
	buf_append(buf, s + run_start, pos - run_start);
	buf_append_char(buf, '"');
}

/* Empty the buffer but keep its memory for reuse. */
void
buf_reset(Buf *buf)
{
	buf->len = 0;
	if (buf->data != NULL)
		buf->data[0] = '\0';
}

/* Release the memory; the buffer is then as BUF_INIT left it. */
void
buf_free(Buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = 0;
	buf->capacity = 0;
}

/*
 * Hand the contents over to the caller, who frees them; an empty buffer
 * yields an allocated "".  len may be NULL.  The buffer is left empty.
 */
char *
buf_steal(Buf *buf, size_t *len)
{
	char	   *data;

	buf_reserve(buf, 0);
	data = buf->data;
	if (len != NULL)
		*len = buf->len;
	buf->data = NULL;
	buf->len = 0;
	buf->capacity = 0;
	return data;
}
