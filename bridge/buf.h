/*
 * buf.h — a growable byte buffer, the bridge's one way of building text.
 *
 * Every function keeps buf->data NUL-terminated (not counted in len), so
 * the contents can be passed where a C string is expected.  Allocation
 * failure aborts the process: the bridge bounds every input it buffers
 * (--max-body, --max-pending), so running out of memory is not a condition
 * it can answer sensibly.
 */
#ifndef COMET_BUF_H
#define COMET_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Buf
{
	char	   *data;			/* NULL until something is written */
	size_t		len;
	size_t		capacity;
} Buf;

#define BUF_INIT {NULL, 0, 0}

/* Make room for at least extra more bytes. */
void		buf_reserve(Buf *buf, size_t extra);
void		buf_append(Buf *buf, const void *data, size_t len);
void		buf_append_str(Buf *buf, const char *str);
void		buf_append_char(Buf *buf, char c);
void		buf_printf(Buf *buf, const char *fmt,...) __attribute__((format(printf, 2, 3)));
void		buf_append_int64(Buf *buf, int64_t value);
/* Append str as a JSON string, quotes included (str must be valid UTF-8). */
void		buf_append_json_string(Buf *buf, const char *str, size_t len);
/*
 * The length of the well-formed UTF-8 sequence at s (1 to 4 bytes, at most
 * avail), or 0 when there is none; then *invalid_len says how many bytes
 * the ill-formed part spans.  No overlongs, surrogates or code points
 * above U+10FFFF.
 */
size_t		buf_utf8_sequence_length(const unsigned char *s, size_t avail,
									 size_t *invalid_len);
void		buf_reset(Buf *buf);	/* empty, keeping the memory */
void		buf_free(Buf *buf);		/* release the memory */
/* Hand the memory over: returns data (never NULL) and leaves buf empty. */
char	   *buf_steal(Buf *buf, size_t *len);

#endif							/* COMET_BUF_H */
