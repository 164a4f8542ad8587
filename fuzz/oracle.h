/*
 * oracle.h — what the fuzz harnesses check the product code against: an
 * RFC 8259 JSON checker and a UTF-8 checker written independently of the
 * ones in bridge/ and pl/, json-c as a second opinion, and FUZZ_ASSERT,
 * which reports a broken invariant and aborts so that libFuzzer keeps the
 * input.
 *
 * Nothing here may share code with the modules under test: an oracle that
 * calls json_check_text or buf_utf8_sequence_length would agree with their
 * bugs.
 */
#ifndef COMET_FUZZ_ORACLE_H
#define COMET_FUZZ_ORACLE_H

#include <stdbool.h>
#include <stddef.h>

struct json_object;

/* Containers deeper than this stop the checker (it recurses). */
#define ORACLE_DEPTH_CAP 10000

typedef enum OracleJsonResult
{
	ORACLE_JSON_VALID,			/* exactly one JSON value, whitespace around */
	ORACLE_JSON_INVALID,		/* not JSON (RFC 8259 grammar) */
	ORACLE_JSON_TOO_DEEP		/* nested past ORACLE_DEPTH_CAP: undecided */
} OracleJsonResult;

/*
 * Check text[0..len) against RFC 8259's grammar.  Bytes >= 0x80 are taken
 * as they are inside strings (check the encoding with oracle_utf8_valid);
 * unpaired surrogate escapes are grammatical.  *depth_seen (may be NULL)
 * is the deepest container nesting met, the outermost container being 1.
 */
OracleJsonResult oracle_json_check(const char *text, size_t len, int *depth_seen);

/* Whether text[0..len) is well-formed UTF-8 (no overlongs, surrogates or
 * code points above U+10FFFF). */
bool		oracle_utf8_valid(const char *text, size_t len);

/*
 * json-c's reading of text[0..len) in strict mode, nested at most
 * max_depth levels.  Returns whether json-c accepted it; *value (may be
 * NULL) gets the tree, which the caller puts, NULL for JSON null.
 */
bool		oracle_jsonc_parse(const char *text, size_t len, int max_depth,
							   struct json_object **value);

/* Print "fuzz invariant broken: ..." and the input's hex, then abort. */
void		oracle_fail(const char *file, int line, const char *fmt,...)
			__attribute__((format(printf, 3, 4), noreturn));

/* The input being run, printed by oracle_fail; set by each harness. */
void		oracle_set_input(const unsigned char *data, size_t size);

#define FUZZ_ASSERT(cond, ...) \
	do { \
		if (!(cond)) \
			oracle_fail(__FILE__, __LINE__, __VA_ARGS__); \
	} while (0)

#endif							/* COMET_FUZZ_ORACLE_H */
