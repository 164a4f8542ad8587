/*
 * template_test.c — unit tests for the plcomet template parser and renderer
 * (pl/template.c), run as a plain process outside the server.
 *
 * `make unit-test` builds it with AddressSanitizer and UBSan and links only
 * template.c and libc: nothing here may include a PostgreSQL header.  Each
 * case gets a fresh arena, freed when the case ends, so the leak checker
 * stays quiet.
 *
 * Output is TAP: "1..N", one "ok N - ..." or "not ok N - ..." line per case
 * (a failure is followed by "# " lines saying what was expected and what
 * came out), and "# all passed" only when every case passed; the exit
 * status is 0 only then.
 *
 * The cases come from three tables, in this order:
 *   structure_cases  bodies that parse, with the tree and refs they give
 *   error_cases      bodies that must be refused: message and byte position
 *   render_cases     bodies rendered through a test sink, exact output
 */
#include "template.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A body with a fixed channel around the given "data" JSON text. */
#define DATA(json) "{\"channel\":\"c\",\"data\":" json "}"
#define DATA_PREFIX "{\"channel\":\"c\",\"data\":"

/*
 * A JSON string using every escape, as source text.  It must come out of the
 * parser and the renderer byte for byte as it went in.
 */
#define ALL_ESCAPES "\"\\u00e9\\uD83D\\uDE00 \\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t\""


/* ---------------------------------------------------------------------
 * Arena: the TmplAllocator of a test case
 * ------------------------------------------------------------------- */

/* Every block one case allocated, all freed together when the case ends. */
typedef struct Arena
{
	void	  **blocks;
	size_t		nblocks;
	size_t		capacity;
} Arena;

/*
 * TmplAllocator.alloc: zeroed memory that the arena remembers.  Aborts when
 * out of memory, as the allocator contract allows.
 */
static void *
arena_alloc(void *ctx, size_t size)
{
	Arena	   *arena = ctx;
	void	   *block;

	if (arena->nblocks == arena->capacity)
	{
		size_t		capacity = arena->capacity ? arena->capacity * 2 : 64;
		void	  **grown = realloc(arena->blocks, capacity * sizeof(void *));

		if (grown == NULL)
		{
			fputs("template_test: out of memory\n", stderr);
			abort();
		}
		arena->blocks = grown;
		arena->capacity = capacity;
	}
	block = calloc(1, size > 0 ? size : 1);
	if (block == NULL)
	{
		fputs("template_test: out of memory\n", stderr);
		abort();
	}
	arena->blocks[arena->nblocks++] = block;
	return block;
}

/* Free every block the arena handed out, and the arena's own list. */
static void
arena_free_all(Arena *arena)
{
	size_t		i;

	for (i = 0; i < arena->nblocks; i++)
		free(arena->blocks[i]);
	free(arena->blocks);
	memset(arena, 0, sizeof(*arena));
}


/* ---------------------------------------------------------------------
 * A running test case and its diagnostics
 * ------------------------------------------------------------------- */

/* One running case: its memory and the first thing that went wrong. */
typedef struct Test
{
	Arena		arena;
	TmplAllocator allocator;
	bool		failed;
	char		diagnostic[2048];
} Test;

static void
test_begin(Test *t)
{
	memset(t, 0, sizeof(*t));
	t->allocator.alloc = arena_alloc;
	t->allocator.ctx = &t->arena;
}

/*
 * Mark the case failed with a message (lines separated by '\n').  Only the
 * first failure is kept: later ones are usually its consequences.
 */
static void test_fail(Test *t, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
test_fail(Test *t, const char *fmt,...)
{
	va_list		args;

	if (t->failed)
		return;
	t->failed = true;
	va_start(args, fmt);
	vsnprintf(t->diagnostic, sizeof(t->diagnostic), fmt, args);
	va_end(args);
}

/*
 * Print the case's TAP line (and its diagnostics, each line prefixed "# "),
 * then free its memory.  Returns 1 if the case failed, else 0.
 */
static int
test_report(Test *t, int number, const char *description)
{
	const char *line = t->diagnostic;

	printf("%s %d - %s\n", t->failed ? "not ok" : "ok", number, description);
	while (t->failed && *line != '\0')
	{
		size_t		n = strcspn(line, "\n");

		printf("# %.*s\n", (int) n, line);
		line += n;
		if (*line == '\n')
			line++;
	}
	arena_free_all(&t->arena);
	return t->failed ? 1 : 0;
}

/*
 * A printable, double-quoted copy of len bytes at s for diagnostics: quotes,
 * backslashes and control characters are escaped so that a TAP line is
 * never broken.  Returns one of a few rotating static buffers, enough for
 * the arguments of one message.
 */
static const char *
show(const char *s, size_t len)
{
	static char buffers[6][400];
	static int	next;
	char	   *out = buffers[next];
	size_t		o = 0;
	size_t		i;

	next = (next + 1) % 6;
	if (s == NULL)
		return "NULL";
	out[o++] = '"';
	for (i = 0; i < len && o < sizeof(buffers[0]) - 8; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\')
			o += sprintf(out + o, "\\%c", c);
		else if (c == '\n')
			o += sprintf(out + o, "\\n");
		else if (c == '\t')
			o += sprintf(out + o, "\\t");
		else if (c < 0x20 || c == 0x7f)
			o += sprintf(out + o, "\\x%02x", c);
		else
			out[o++] = (char) c;
	}
	if (i < len)
		o += sprintf(out + o, "...");
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

static const char *
show_str(const char *s)
{
	return s ? show(s, strlen(s)) : "NULL";
}

/*
 * Byte offset of the first occurrence of marker in body.  A missing marker
 * is a mistake in the test itself, so it stops the program.
 */
static size_t
offset_of(const char *body, const char *marker)
{
	const char *found = strstr(body, marker);

	if (found == NULL)
	{
		fprintf(stderr, "template_test: marker %s not in body %s\n",
				show_str(marker), show_str(body));
		abort();
	}
	return (size_t) (found - body);
}


/* ---------------------------------------------------------------------
 * Expectations: each records a failure and returns false on mismatch
 * ------------------------------------------------------------------- */

static const char *const kind_names[] = {
	"TMPL_LITERAL", "TMPL_VALUE", "TMPL_STRING", "TMPL_ARRAY", "TMPL_OBJECT"
};

/* Parse body with the case's arena; on failure record why. */
static bool
parse_ok(Test *t, const char *body, TmplPacket *packet)
{
	TmplError	error;

	if (tmpl_parse_packet(body, strlen(body), &t->allocator, packet, &error))
		return true;
	test_fail(t, "expected the body to parse: %s\n"
			  "got error at %zu: %s%s%s",
			  show_str(body), error.position, error.message,
			  error.detail[0] != '\0' ? " -- " : "", error.detail);
	return false;
}

static bool
expect_equal(Test *t, const char *what, long long actual, long long expected)
{
	if (actual == expected)
		return true;
	test_fail(t, "%s: expected %lld, got %lld", what, expected, actual);
	return false;
}

static bool
expect_true(Test *t, const char *what, bool actual)
{
	if (actual)
		return true;
	test_fail(t, "expected %s", what);
	return false;
}

static bool
expect_kind(Test *t, const char *what, const TmplNode *node, TmplNodeKind kind)
{
	if (node == NULL)
	{
		test_fail(t, "%s: expected a %s node, got NULL", what, kind_names[kind]);
		return false;
	}
	if (node->kind == kind)
		return true;
	test_fail(t, "%s: expected a %s node, got %s",
			  what, kind_names[kind], kind_names[node->kind]);
	return false;
}

/* Is the (unterminated) slice text[0..len) the C string expected? */
static bool
slice_equals(const char *text, size_t len, const char *expected)
{
	return text != NULL && strlen(expected) == len &&
		memcmp(text, expected, len) == 0;
}

static bool
expect_slice(Test *t, const char *what, const char *text, size_t len,
			 const char *expected)
{
	if (slice_equals(text, len, expected))
		return true;
	test_fail(t, "%s: expected %s, got %s", what, show_str(expected),
			  show(text, len));
	return false;
}

/* node is a TMPL_LITERAL whose source text is exactly text. */
static bool
expect_literal(Test *t, const char *what, const TmplNode *node, const char *text)
{
	return expect_kind(t, what, node, TMPL_LITERAL) &&
		expect_slice(t, what, node->text, node->text_len, text);
}

/* ref names name (and field, or no field when NULL) at byte position. */
static bool
expect_ref(Test *t, const char *what, const TmplRef *ref,
		   const char *name, const char *field, size_t position)
{
	if (ref == NULL)
	{
		test_fail(t, "%s: expected a reference to %s, got NULL", what, name);
		return false;
	}
	if (!expect_slice(t, what, ref->name, ref->name_len, name))
		return false;
	if (field == NULL && ref->field != NULL)
	{
		test_fail(t, "%s: expected no field, got %s", what,
				  show(ref->field, ref->field_len));
		return false;
	}
	if (field != NULL && !expect_slice(t, what, ref->field, ref->field_len, field))
		return false;
	if (ref->position != position)
	{
		test_fail(t, "%s: expected the reference at byte %zu, got %zu",
				  what, position, ref->position);
		return false;
	}
	return true;
}

/* node is a TMPL_VALUE for name/field at position. */
static bool
expect_value(Test *t, const char *what, const TmplNode *node,
			 const char *name, const char *field, size_t position)
{
	return expect_kind(t, what, node, TMPL_VALUE) &&
		expect_ref(t, what, node->ref, name, field, position);
}

/* Part i of the TMPL_STRING node is literal text. */
static bool
expect_text_part(Test *t, const TmplNode *node, int i, const char *text)
{
	char		what[64];

	snprintf(what, sizeof(what), "part %d", i);
	if (i >= node->nparts)
	{
		test_fail(t, "%s: expected text %s, but there are only %d parts",
				  what, show_str(text), node->nparts);
		return false;
	}
	if (node->parts[i].text == NULL)
	{
		test_fail(t, "%s: expected text %s, got a reference", what, show_str(text));
		return false;
	}
	return expect_slice(t, what, node->parts[i].text, node->parts[i].text_len, text);
}

/* Part i of the TMPL_STRING node is a reference to name/field at position. */
static bool
expect_ref_part(Test *t, const TmplNode *node, int i,
				const char *name, const char *field, size_t position)
{
	char		what[64];

	snprintf(what, sizeof(what), "part %d", i);
	if (i >= node->nparts)
	{
		test_fail(t, "%s: expected a reference to %s, but there are only %d parts",
				  what, name, node->nparts);
		return false;
	}
	if (node->parts[i].text != NULL)
	{
		test_fail(t, "%s: expected a reference to %s, got text %s", what, name,
				  show(node->parts[i].text, node->parts[i].text_len));
		return false;
	}
	return expect_ref(t, what, node->parts[i].ref, name, field, position);
}


/* ---------------------------------------------------------------------
 * Structure cases: bodies that parse
 * ------------------------------------------------------------------- */

static void
case_literal_channel_and_data(Test *t)
{
	const char *body = "{\"channel\":\"news\",\"data\":\"hello\"}";
	TmplPacket	packet;

	if (!parse_ok(t, body, &packet) ||
		!expect_literal(t, "channel", packet.channel, "\"news\"") ||
		!expect_literal(t, "data", packet.data, "\"hello\""))
		return;
	expect_equal(t, "channel position", (long long) packet.channel->position,
				 (long long) offset_of(body, "\"news\""));
	expect_equal(t, "data position", (long long) packet.data->position,
				 (long long) offset_of(body, "\"hello\""));
	expect_equal(t, "nrefs", packet.nrefs, 0);
}

static void
case_members_in_any_order(Test *t)
{
	TmplPacket	packet;

	if (!parse_ok(t, "{\"data\":1,\"channel\":\"c\"}", &packet))
		return;
	expect_literal(t, "channel", packet.channel, "\"c\"");
	expect_literal(t, "data", packet.data, "1");
}

static void
case_nested_objects_and_arrays(Test *t)
{
	const char *body = DATA("{\"a\":[1,{\"b\":[]}],\"c\":{}}");
	TmplPacket	packet;
	const TmplNode *data;
	const TmplNode *array;
	const TmplNode *inner;

	if (!parse_ok(t, body, &packet) ||
		!expect_kind(t, "data", packet.data, TMPL_OBJECT))
		return;
	data = packet.data;
	if (!expect_equal(t, "data members", data->nitems, 2) ||
		!expect_literal(t, "first key", data->keys[0], "\"a\"") ||
		!expect_literal(t, "second key", data->keys[1], "\"c\"") ||
		!expect_kind(t, "data.a", data->items[0], TMPL_ARRAY) ||
		!expect_kind(t, "data.c", data->items[1], TMPL_OBJECT) ||
		!expect_equal(t, "data.c members", data->items[1]->nitems, 0))
		return;
	array = data->items[0];
	if (!expect_equal(t, "data.a position", (long long) array->position,
					  (long long) offset_of(body, "[1,")) ||
		!expect_equal(t, "data.a items", array->nitems, 2) ||
		!expect_literal(t, "data.a[0]", array->items[0], "1") ||
		!expect_kind(t, "data.a[1]", array->items[1], TMPL_OBJECT))
		return;
	inner = array->items[1];
	if (!expect_equal(t, "data.a[1] members", inner->nitems, 1) ||
		!expect_literal(t, "data.a[1] key", inner->keys[0], "\"b\"") ||
		!expect_kind(t, "data.a[1].b", inner->items[0], TMPL_ARRAY))
		return;
	expect_equal(t, "data.a[1].b items", inner->items[0]->nitems, 0);
}

static void
case_numbers_keep_source_text(Test *t)
{
	static const char *const numbers[] = {
		"0", "-1", "12.50", "-0.5e-3", "6E+2", "1e10", "-0", "123456789012345678901234567890"
	};
	TmplPacket	packet;
	int			i;

	if (!parse_ok(t, DATA("[0, -1, 12.50, -0.5e-3, 6E+2, 1e10, -0, 123456789012345678901234567890]"),
				  &packet) ||
		!expect_kind(t, "data", packet.data, TMPL_ARRAY) ||
		!expect_equal(t, "items", packet.data->nitems, 8))
		return;
	for (i = 0; i < 8; i++)
		if (!expect_literal(t, "number", packet.data->items[i], numbers[i]))
			return;
}

static void
case_true_false_null(Test *t)
{
	TmplPacket	packet;

	if (!parse_ok(t, DATA("[true,false,null]"), &packet) ||
		!expect_kind(t, "data", packet.data, TMPL_ARRAY) ||
		!expect_equal(t, "items", packet.data->nitems, 3))
		return;
	expect_literal(t, "true", packet.data->items[0], "true");
	expect_literal(t, "false", packet.data->items[1], "false");
	expect_literal(t, "null", packet.data->items[2], "null");
}

static void
case_escapes_kept_verbatim(Test *t)
{
	TmplPacket	packet;

	if (!parse_ok(t, DATA(ALL_ESCAPES), &packet) ||
		!expect_literal(t, "data", packet.data, ALL_ESCAPES))
		return;
	expect_true(t, "an escaped string to be a plain string",
				tmpl_is_plain_string(packet.data));
}

static void
case_escaped_dollar_is_plain(Test *t)
{
	TmplPacket	packet;

	if (!parse_ok(t, DATA("\"\\u0024name\""), &packet))
		return;
	expect_literal(t, "data", packet.data, "\"\\u0024name\"");
	expect_equal(t, "nrefs", packet.nrefs, 0);
}

static void
case_whitespace_around_tokens(Test *t)
{
	const char *body = " \t\r\n{ \"channel\" : \"c\" ,\n \"data\" : [ 1 , 2 ] } \r\n";
	TmplPacket	packet;

	if (!parse_ok(t, body, &packet) ||
		!expect_literal(t, "channel", packet.channel, "\"c\"") ||
		!expect_kind(t, "data", packet.data, TMPL_ARRAY))
		return;
	expect_equal(t, "data position", (long long) packet.data->position,
				 (long long) offset_of(body, "["));
	expect_equal(t, "items", packet.data->nitems, 2);
}

static void
case_exact_name_reference(Test *t)
{
	const char *body = DATA("\"$name\"");
	TmplPacket	packet;

	if (!parse_ok(t, body, &packet) ||
		!expect_value(t, "data", packet.data, "name", NULL, offset_of(body, "$name")))
		return;
	expect_equal(t, "data position", (long long) packet.data->position,
				 (long long) offset_of(body, "\"$name\""));
	if (expect_equal(t, "nrefs", packet.nrefs, 1))
		expect_true(t, "refs[0] to be the data's reference",
					packet.refs[0] == packet.data->ref);
}

static void
case_exact_positional_reference(Test *t)
{
	const char *body = "{\"channel\":\"$10\",\"data\":\"$1\"}";
	TmplPacket	packet;

	if (!parse_ok(t, body, &packet))
		return;
	expect_value(t, "channel", packet.channel, "10", NULL, offset_of(body, "$10"));
	expect_value(t, "data", packet.data, "1", NULL, offset_of(body, "$1\""));
	expect_equal(t, "nrefs", packet.nrefs, 2);
}

static void
case_exact_field_reference(Test *t)
{
	const char *body = DATA("\"$NEW.col_1\"");
	TmplPacket	packet;

	if (!parse_ok(t, body, &packet))
		return;
	expect_value(t, "data", packet.data, "NEW", "col_1", offset_of(body, "$NEW"));
}

static void
case_interpolated_name(Test *t)
{
	const char *body = DATA("\"Hi ${name}!\"");
	TmplPacket	packet;
	const TmplNode *data;

	if (!parse_ok(t, body, &packet) ||
		!expect_kind(t, "data", packet.data, TMPL_STRING))
		return;
	data = packet.data;
	if (expect_equal(t, "parts", data->nparts, 3) &&
		expect_text_part(t, data, 0, "Hi ") &&
		expect_ref_part(t, data, 1, "name", NULL, offset_of(body, "${name}")) &&
		expect_text_part(t, data, 2, "!"))
		expect_true(t, "an interpolated string not to be a plain string",
					!tmpl_is_plain_string(data));
}

static void
case_interpolated_field(Test *t)
{
	const char *body = DATA("\"id=${NEW.id};\"");
	TmplPacket	packet;
	const TmplNode *data;

	if (!parse_ok(t, body, &packet) ||
		!expect_kind(t, "data", packet.data, TMPL_STRING))
		return;
	data = packet.data;
	if (expect_equal(t, "parts", data->nparts, 3) &&
		expect_text_part(t, data, 0, "id=") &&
		expect_ref_part(t, data, 1, "NEW", "id", offset_of(body, "${NEW.id}")))
		expect_text_part(t, data, 2, ";");
}

static void
case_interpolation_alone_is_text(Test *t)
{
	const char *body = DATA("\"${x}\"");
	TmplPacket	packet;

	if (!parse_ok(t, body, &packet) ||
		!expect_kind(t, "data", packet.data, TMPL_STRING))
		return;
	if (expect_equal(t, "parts", packet.data->nparts, 1))
		expect_ref_part(t, packet.data, 0, "x", NULL, offset_of(body, "${x}"));
}

static void
case_adjacent_interpolations(Test *t)
{
	const char *body = DATA("\"${a}${1}\"");
	TmplPacket	packet;

	if (!parse_ok(t, body, &packet) ||
		!expect_kind(t, "data", packet.data, TMPL_STRING))
		return;
	if (expect_equal(t, "parts", packet.data->nparts, 2) &&
		expect_ref_part(t, packet.data, 0, "a", NULL, offset_of(body, "${a}")))
		expect_ref_part(t, packet.data, 1, "1", NULL, offset_of(body, "${1}"));
}

static void
case_double_dollar_alone(Test *t)
{
	TmplPacket	packet;

	if (!parse_ok(t, DATA("\"$$\""), &packet) ||
		!expect_kind(t, "data", packet.data, TMPL_STRING))
		return;
	if (expect_equal(t, "parts", packet.data->nparts, 1))
		expect_text_part(t, packet.data, 0, "$");
	expect_equal(t, "nrefs", packet.nrefs, 0);
}

static void
case_double_dollar_in_text(Test *t)
{
	const char *body = DATA("\"costs 5$$ or $$${n}\"");
	TmplPacket	packet;
	const TmplNode *data;

	if (!parse_ok(t, body, &packet) ||
		!expect_kind(t, "data", packet.data, TMPL_STRING))
		return;
	data = packet.data;
	if (expect_equal(t, "parts", data->nparts, 5) &&
		expect_text_part(t, data, 0, "costs 5") &&
		expect_text_part(t, data, 1, "$") &&
		expect_text_part(t, data, 2, " or ") &&
		expect_text_part(t, data, 3, "$") &&
		expect_ref_part(t, data, 4, "n", NULL, offset_of(body, "${n}")))
		expect_equal(t, "nrefs", packet.nrefs, 1);
}

static void
case_key_with_interpolation(Test *t)
{
	const char *body = DATA("{\"k_${x}\":1}");
	TmplPacket	packet;
	const TmplNode *key;

	if (!parse_ok(t, body, &packet) ||
		!expect_kind(t, "data", packet.data, TMPL_OBJECT) ||
		!expect_equal(t, "members", packet.data->nitems, 1) ||
		!expect_kind(t, "key", packet.data->keys[0], TMPL_STRING))
		return;
	key = packet.data->keys[0];
	if (expect_equal(t, "key parts", key->nparts, 2) &&
		expect_text_part(t, key, 0, "k_") &&
		expect_ref_part(t, key, 1, "x", NULL, offset_of(body, "${x}")))
		expect_literal(t, "value", packet.data->items[0], "1");
}

static void
case_key_exactly_a_reference(Test *t)
{
	const char *body = DATA("{\"$x\":\"$y\"}");
	TmplPacket	packet;
	const TmplNode *key;

	if (!parse_ok(t, body, &packet) ||
		!expect_kind(t, "data", packet.data, TMPL_OBJECT) ||
		!expect_equal(t, "members", packet.data->nitems, 1) ||
		!expect_kind(t, "key", packet.data->keys[0], TMPL_STRING))
		return;
	key = packet.data->keys[0];
	if (expect_equal(t, "key parts", key->nparts, 1) &&
		expect_ref_part(t, key, 0, "x", NULL, offset_of(body, "$x")) &&
		expect_value(t, "value", packet.data->items[0], "y", NULL, offset_of(body, "$y")) &&
		expect_equal(t, "nrefs", packet.nrefs, 2))
		expect_true(t, "refs to be the key's then the value's",
					packet.refs[0] == key->parts[0].ref &&
					packet.refs[1] == packet.data->items[0]->ref);
}

static void
case_refs_in_source_order(Test *t)
{
	static const struct
	{
		const char *marker;		/* where the reference is in the body */
		const char *name;
		const char *field;
	}			expected[] = {
		{"${1}", "1", NULL},
		{"$k", "k", NULL},
		{"$2", "2", NULL},
		{"${NEW.a}", "NEW", "a"},
		{"${b}", "b", NULL},
		{"$NEW.c", "NEW", "c"},
	};
	const char *body = "{\"channel\":\"room_${1}\",\"data\":"
		"{\"$k\":\"$2\",\"t\":\"${NEW.a} and ${b}\",\"n\":[\"$NEW.c\"]}}";
	TmplPacket	packet;
	int			i;

	if (!parse_ok(t, body, &packet) ||
		!expect_equal(t, "nrefs", packet.nrefs, 6))
		return;
	for (i = 0; i < 6; i++)
	{
		char		what[32];

		snprintf(what, sizeof(what), "refs[%d]", i);
		if (!expect_ref(t, what, packet.refs[i], expected[i].name,
						expected[i].field, offset_of(body, expected[i].marker)))
			return;
	}
}

static void
case_plain_string_predicate(Test *t)
{
	static const bool plain[] = {false, false, false, false, false, true};
	TmplPacket	packet;
	int			i;

	if (!parse_ok(t, "{\"channel\":\"news\",\"data\":[\"$1\",\"a${x}\",\"$$\",5,null,\"plain\"]}",
				  &packet) ||
		!expect_true(t, "channel \"news\" to be a plain string",
					 tmpl_is_plain_string(packet.channel)) ||
		!expect_kind(t, "data", packet.data, TMPL_ARRAY) ||
		!expect_equal(t, "items", packet.data->nitems, 6))
		return;
	for (i = 0; i < 6; i++)
	{
		char		what[64];

		snprintf(what, sizeof(what), "tmpl_is_plain_string(data[%d])", i);
		if (!expect_equal(t, what, tmpl_is_plain_string(packet.data->items[i]), plain[i]))
			return;
	}
}

/*
 * A body levels containers deep: the root object, then levels - 1 nested
 * containers in "data", each written as open ... close, around innermost.
 * The text lives in the case's arena.
 */
static char *
nested_body(Test *t, int levels, const char *open, const char *innermost,
			const char *close)
{
	size_t		size = strlen(DATA_PREFIX) + strlen(innermost) + 2 +
		(size_t) (levels - 1) * (strlen(open) + strlen(close));
	char	   *body = arena_alloc(&t->arena, size);
	int			i;

	strcpy(body, DATA_PREFIX);
	for (i = 1; i < levels; i++)
		strcat(body, open);
	strcat(body, innermost);
	for (i = 1; i < levels; i++)
		strcat(body, close);
	strcat(body, "}");
	return body;
}

static void
case_depth_at_limit_empty(Test *t)
{
	TmplPacket	packet;

	parse_ok(t, nested_body(t, TMPL_MAX_DEPTH, "[", "", "]"), &packet);
}

static void
case_depth_at_limit_with_value(Test *t)
{
	TmplPacket	packet;

	parse_ok(t, nested_body(t, TMPL_MAX_DEPTH, "[", "1", "]"), &packet);
}

/*
 * A body one container too deep (see nested_body) must be refused, and the
 * error must point at the first byte of the container that is too deep.
 */
static void
expect_too_deep(Test *t, const char *open, const char *innermost, const char *close)
{
	const char *body = nested_body(t, TMPL_MAX_DEPTH + 1, open, innermost, close);
	size_t		expected = strlen(DATA_PREFIX) + (TMPL_MAX_DEPTH - 1) * strlen(open);
	TmplPacket	packet;
	TmplError	error;

	if (tmpl_parse_packet(body, strlen(body), &t->allocator, &packet, &error))
	{
		test_fail(t, "expected a body %d levels deep to be refused, but it parsed",
				  TMPL_MAX_DEPTH + 1);
		return;
	}
	if (strstr(error.message, "nests more than") == NULL ||
		error.position != expected)
		test_fail(t, "expected error at %zu (%s) containing \"nests more than\"\n"
				  "got error at %zu (%s): %s",
				  expected, show(body + expected, 6),
				  error.position, show(body + error.position, 6), error.message);
}

static void
case_depth_over_limit_arrays(Test *t)
{
	expect_too_deep(t, "[", "", "]");
}

static void
case_depth_over_limit_after_colon(Test *t)
{
	expect_too_deep(t, "{\"k\": ", "1", "}");
}

typedef struct StructureCase
{
	const char *description;
	void		(*run) (Test *t);
} StructureCase;

static const StructureCase structure_cases[] = {
	{"literal channel and data parse as literals at their positions", case_literal_channel_and_data},
	{"members may come in either order", case_members_in_any_order},
	{"nested objects and arrays keep their shape", case_nested_objects_and_arrays},
	{"numbers (negative, fraction, exponent, long) keep their source text", case_numbers_keep_source_text},
	{"true, false and null are literals", case_true_false_null},
	{"escapes incl. unicode and surrogate pairs are kept verbatim", case_escapes_kept_verbatim},
	{"a dollar written as \\u0024 is plain text, not a reference", case_escaped_dollar_is_plain},
	{"whitespace around and between tokens is allowed", case_whitespace_around_tokens},
	{"\"$name\" is a TMPL_VALUE reference at the '$'", case_exact_name_reference},
	{"\"$1\" and \"$10\" are positional TMPL_VALUE references", case_exact_positional_reference},
	{"\"$NEW.col_1\" is a TMPL_VALUE reference with a field", case_exact_field_reference},
	{"\"${name}\" interpolates between literal parts", case_interpolated_name},
	{"\"${NEW.id}\" interpolates a field between literal parts", case_interpolated_field},
	{"a string that is exactly \"${x}\" is interpolation, not a typed value", case_interpolation_alone_is_text},
	{"adjacent interpolations \"${a}${1}\" are two parts", case_adjacent_interpolations},
	{"\"$$\" alone is a literal dollar", case_double_dollar_alone},
	{"\"$$\" inside text is a literal dollar, also right before ${n}", case_double_dollar_in_text},
	{"a key containing ${x} is an interpolated string", case_key_with_interpolation},
	{"a key that is exactly \"$x\" is interpolated, its value stays typed", case_key_exactly_a_reference},
	{"refs lists every reference in source order, keys included", case_refs_in_source_order},
	{"tmpl_is_plain_string is true only for reference-free strings", case_plain_string_predicate},
	{"nesting exactly TMPL_MAX_DEPTH containers deep parses", case_depth_at_limit_empty},
	{"nesting exactly TMPL_MAX_DEPTH containers deep with a value innermost parses", case_depth_at_limit_with_value},
	{"nesting TMPL_MAX_DEPTH + 1 deep is refused at the extra container", case_depth_over_limit_arrays},
	{"the too-deep error after \": \" points at the container, not the space", case_depth_over_limit_after_colon},
};


/* ---------------------------------------------------------------------
 * Error cases: bodies that must be refused
 * ------------------------------------------------------------------- */

typedef struct ErrorCase
{
	const char *description;
	const char *body;
	const char *message;		/* a substring of TmplError.message */
	const char *at;				/* error at its first occurrence in body;
								 * NULL: at the end of the body */
	const char *detail;			/* a substring of TmplError.detail, or NULL */
} ErrorCase;

static const ErrorCase error_cases[] = {
	/* the shape of a body */
	{"empty body is refused", "", "plcomet body is empty", "", NULL},
	{"whitespace-only body is refused", " \n\t\r ", "plcomet body is empty", "", NULL},
	{"an array body is not an object", " [1]", "plcomet body must be a JSON object", "[", NULL},
	{"a string body is not an object", "\"news\"", "plcomet body must be a JSON object", "\"", NULL},
	{"a body without \"channel\" is refused", "{\"data\":1}", "no \"channel\" member", "{", NULL},
	{"a body without \"data\" is refused", "{\"channel\":\"c\"}", "no \"data\" member", "{", NULL},
	{"an empty object body is refused for its missing channel", " {}", "no \"channel\" member", "{", NULL},
	{"an unknown member is refused at its key", "{\"channel\":\"c\",\"data\":1,\"extra\":2}",
	"unexpected member \"extra\"", "\"extra\"", NULL},
	{"a duplicate member is refused at the second key", "{\"channel\":\"a\",\"data\":1,\"channel\":\"b\"}",
	"duplicate member \"channel\"", "\"channel\":\"b\"", NULL},
	{"text after the object is refused", DATA("1") " x", "unexpected text after the body", "x", NULL},
	{"a second object after the body is refused", DATA("1") "{}", "unexpected text after the body", "{}", NULL},
	{"a body cut off after a colon is refused at its end", DATA_PREFIX, "unexpected end of body", NULL, NULL},

	/* strings */
	{"an unterminated string is refused at its opening quote", DATA("\"abc"), "unterminated string", "\"abc", NULL},
	{"a string ending in a backslash is unterminated", "{\"channel\":\"c\",\"data\":\"abc\\",
	"unterminated string", "\"abc", NULL},
	{"an unknown escape \\x is refused at the backslash", DATA("\"a\\xb\""), "bad escape", "\\x", NULL},
	{"\\u with a non-hex digit is refused at the backslash", DATA("\"a\\u12g4\""), "bad escape", "\\u", NULL},
	{"\\u with too few digits is refused at the backslash", DATA("\"a\\u12\""), "bad escape", "\\u", NULL},
	{"\\u0000 is refused (jsonb cannot store it)", DATA("\"a\\u0000b\""), "\\u0000", "\\u0000", "jsonb"},
	{"a lone high surrogate is refused", DATA("\"a\\ud800b\""), "lone Unicode high surrogate", "\\ud800", NULL},
	{"a high surrogate before another high one is refused", DATA("\"\\uD83D\\uD83D\""),
	"lone Unicode high surrogate", "\\uD83D", NULL},
	{"a lone low surrogate is refused", DATA("\"\\udc00\""), "lone Unicode low surrogate", "\\udc00", NULL},
	{"a raw tab in a string is refused at the tab", DATA("\"a\tb\""), "control character", "\t", NULL},
	{"a raw newline in a string is refused at the newline", DATA("\"a\nb\""), "control character", "\n", NULL},

	/* numbers and words */
	{"a number with a leading zero (01) is malformed", DATA("01"), "malformed number", "01", NULL},
	{"a number ending in a point (1.) is malformed", DATA("1."), "malformed number", "1.", NULL},
	{"a lone minus sign is a malformed number", DATA("[-]"), "malformed number", "-]", NULL},
	{"an exponent without digits (1e) is malformed", DATA("1e"), "malformed number", "1e", NULL},
	{"an exponent with only a sign (1e+) is malformed", DATA("1e+"), "malformed number", "1e+", NULL},
	{"a number with a plus sign is refused", DATA("+1"), "unexpected character", "+1", NULL},
	{"a number starting with a point is refused", DATA(".5"), "unexpected character", ".5", NULL},
	{"the bare word tru is refused", DATA("tru"), "unexpected token", "tru", NULL},
	{"the bare word nul is refused", DATA("[nul]"), "unexpected token", "nul", NULL},
	{"truex is not true", DATA("truex"), "unexpected token", "truex", NULL},
	{"True is not true", DATA("True"), "unexpected character", "True", NULL},

	/* punctuation */
	{"a trailing comma in an object is refused at the brace", DATA("{\"a\":1,}"),
	"expected a string as object key", "}", NULL},
	{"a trailing comma in the body object is refused", "{\"channel\":\"c\",\"data\":1,}",
	"expected a string as object key", "}", NULL},
	{"a trailing comma in an array is refused at the bracket", DATA("[1,]"), "unexpected character", "]", NULL},
	{"a missing colon is refused at the value", "{\"channel\" \"c\",\"data\":1}",
	"expected \":\" after object key", "\"c\"", NULL},
	{"a missing comma between members is refused", "{\"channel\":\"c\" \"data\":1}",
	"expected \",\" or \"}\"", "\"data\"", NULL},
	{"a missing comma between items is refused", DATA("[1 2]"), "expected \",\" or \"]\"", "2]", NULL},
	{"an unquoted key is refused", "{channel:\"c\",\"data\":1}", "expected a string as object key", "channel", NULL},

	/* dollars and references */
	{"an unescaped trailing $ (\"costs 5$\") is refused", DATA("\"costs 5$\""),
	"unescaped \"$\" in string", "$", "Write \"$$\" for a literal dollar sign"},
	{"\"hello $name\" is refused and told to use ${name}", DATA("\"hello $name\""),
	"unescaped \"$\" in string", "$", "must be written \"${name}\""},
	{"a lone \"$\" is refused", DATA("\"$\""), "unescaped \"$\" in string", "$", NULL},
	{"\"$1x\" is not a reference and is refused", DATA("\"$1x\""), "unescaped \"$\" in string", "$", NULL},
	{"\"$a.b.c\" is not a reference and is refused", DATA("\"$a.b.c\""), "unescaped \"$\" in string", "$", NULL},
	{"an unescaped $ in a key is refused", DATA("{\"a$\":1}"), "unescaped \"$\" in string", "$", NULL},
	{"\"${name\" without a closing brace is unterminated", DATA("\"x ${name\""),
	"unterminated reference", "$", NULL},
	{"\"${NEW.col\" without a closing brace is unterminated", DATA("\"${NEW.col\""),
	"unterminated reference", "$", NULL},
	{"\"${\" at the end of a string is unterminated", DATA("\"price ${\""),
	"unterminated reference", "$", NULL},
	{"an empty reference \"${}\" is refused", DATA("\"a${}b\""), "invalid reference", "$", NULL},
	{"\"${1x}\" is an invalid reference", DATA("\"${1x}\""), "invalid reference", "$", NULL},
	{"\"${ name}\" with a space is an invalid reference", DATA("\"${ name}\""), "invalid reference", "$", NULL},
	{"\"${NEW.}\" is missing its field name", DATA("\"${NEW.}\""), "missing field name", "$", NULL},
};


/* ---------------------------------------------------------------------
 * Render cases: a sink that shows how references were written
 * ------------------------------------------------------------------- */

typedef enum SinkStyle
{
	SINK_MARKERS,				/* <V:name> for values, <T:name> for text */
	SINK_VALUES					/* JSON and text from sample_values */
} SinkStyle;

/* A value a reference may stand for in SINK_VALUES style. */
typedef struct SampleValue
{
	const char *name;			/* "name" or "name.field" */
	const char *json;			/* what write_value appends */
	const char *text;			/* what write_text appends: escaped, no quotes */
} SampleValue;

static const SampleValue sample_values[] = {
	{"1", "42", "42"},
	{"name", "\"Ann \\\"Smith\\\"\"", "Ann \\\"Smith\\\""},
	{"NEW.id", "7", "7"},
	{"tags", "[\"a\",\"b\"]", "[\\\"a\\\",\\\"b\\\"]"},
};

/* The TmplSink's context: rendered text so far. */
typedef struct RenderBuffer
{
	SinkStyle	style;
	char		text[2048];
	size_t		len;
	bool		overflowed;
} RenderBuffer;

/* TmplSink.append: add bytes, remembering (not crashing) on overflow. */
static void
buffer_append(void *ctx, const char *data, size_t len)
{
	RenderBuffer *buffer = ctx;

	if (buffer->len + len >= sizeof(buffer->text))
	{
		buffer->overflowed = true;
		return;
	}
	memcpy(buffer->text + buffer->len, data, len);
	buffer->len += len;
	buffer->text[buffer->len] = '\0';
}

static void
buffer_append_str(RenderBuffer *buffer, const char *s)
{
	buffer_append(buffer, s, strlen(s));
}

/* "name" or "name.field" for ref, into out. */
static void
ref_full_name(const TmplRef *ref, char *out, size_t size)
{
	if (ref->field != NULL)
		snprintf(out, size, "%.*s.%.*s", (int) ref->name_len, ref->name,
				 (int) ref->field_len, ref->field);
	else
		snprintf(out, size, "%.*s", (int) ref->name_len, ref->name);
}

/*
 * Write ref in the buffer's style: a marker "<prefix:name>", or the sample
 * value's JSON (as_json) or text.  An unknown name writes "<unknown:name>",
 * which no expected output contains.
 */
static void
buffer_write_ref(RenderBuffer *buffer, const TmplRef *ref, const char *prefix,
				 bool as_json)
{
	char		name[128];
	size_t		i;

	ref_full_name(ref, name, sizeof(name));
	if (buffer->style == SINK_MARKERS)
	{
		buffer_append_str(buffer, "<");
		buffer_append_str(buffer, prefix);
		buffer_append_str(buffer, ":");
		buffer_append_str(buffer, name);
		buffer_append_str(buffer, ">");
		return;
	}
	for (i = 0; i < sizeof(sample_values) / sizeof(sample_values[0]); i++)
	{
		if (strcmp(sample_values[i].name, name) == 0)
		{
			buffer_append_str(buffer, as_json ? sample_values[i].json : sample_values[i].text);
			return;
		}
	}
	buffer_append_str(buffer, "<unknown:");
	buffer_append_str(buffer, name);
	buffer_append_str(buffer, ">");
}

/* TmplSink.write_value */
static void
sink_write_value(void *ctx, const TmplRef *ref)
{
	buffer_write_ref(ctx, ref, "V", true);
}

/* TmplSink.write_text */
static void
sink_write_text(void *ctx, const TmplRef *ref)
{
	buffer_write_ref(ctx, ref, "T", false);
}

typedef struct RenderCase
{
	const char *description;
	const char *body;
	const char *member;			/* "channel" or "data": the node rendered */
	SinkStyle	style;
	const char *expected;		/* the exact rendered text */
} RenderCase;

static const RenderCase render_cases[] = {
	{"literal data renders without insignificant whitespace",
		DATA("{ \"a\" : [ 1 , -2.5e+3 ] , \"b\" : { } , \"c\" : [ ] , \"d\" : true , \"e\" : null }"),
		"data", SINK_MARKERS,
	"{\"a\":[1,-2.5e+3],\"b\":{},\"c\":[],\"d\":true,\"e\":null}"},
	{"escapes in a literal string are copied verbatim",
		DATA(ALL_ESCAPES), "data", SINK_MARKERS, ALL_ESCAPES},
	{"escapes in a literal key are copied verbatim",
		DATA("{\"a\\\"b\\u0041\":\"\\/\"}"), "data", SINK_MARKERS,
	"{\"a\\\"b\\u0041\":\"\\/\"}"},
	{"typed references are written with write_value",
		DATA("{\"text\":\"$1\",\"row\":\"$NEW.id\",\"list\":[\"$name\", 2]}"), "data", SINK_MARKERS,
	"{\"text\":<V:1>,\"row\":<V:NEW.id>,\"list\":[<V:name>,2]}"},
	{"interpolations are written with write_text between quotes",
		DATA("\"Hi ${name}, #${NEW.id}!\""), "data", SINK_MARKERS,
	"\"Hi <T:name>, #<T:NEW.id>!\""},
	{"\"$$\" renders as one dollar, \"$$$$\" as two, also next to ${1}",
		DATA("\"costs $$5, $$$$ and $$${1}\""), "data", SINK_MARKERS,
	"\"costs $5, $$ and $<T:1>\""},
	{"keys with references render as interpolated strings",
		DATA("{\"$name\":1,\"id_${1}\":\"$1\"}"), "data", SINK_MARKERS,
	"{\"<T:name>\":1,\"id_<T:1>\":<V:1>}"},
	{"a channel array with an interpolated name renders",
		"{\"channel\":[\"news\",\"room_${NEW.id}\"],\"data\":null}", "channel", SINK_MARKERS,
	"[\"news\",\"room_<T:NEW.id>\"]"},
	{"real values: typed references become JSON, interpolations text",
		DATA("{\"who\":\"$name\",\"greeting\":\"Hello ${name}!\",\"n\":\"$1\",\"tags\":\"$tags\",\"row\":\"${NEW.id}\"}"),
		"data", SINK_VALUES,
	"{\"who\":\"Ann \\\"Smith\\\"\",\"greeting\":\"Hello Ann \\\"Smith\\\"!\",\"n\":42,\"tags\":[\"a\",\"b\"],\"row\":\"7\"}"},
	{"real values: escapes around interpolations stay verbatim",
		DATA("\"line\\n${name}\\t\\\"${1}\\\"\""), "data", SINK_VALUES,
	"\"line\\nAnn \\\"Smith\\\"\\t\\\"42\\\"\""},
	{"real values: a channel that is \"$1\" renders as the value",
		"{\"channel\":\"$1\",\"data\":{}}", "channel", SINK_VALUES, "42"},
};

static void
run_render_case(Test *t, const RenderCase *c)
{
	TmplPacket	packet;
	RenderBuffer buffer = {0};
	TmplSink	sink;

	if (!parse_ok(t, c->body, &packet))
		return;
	buffer.style = c->style;
	sink.append = buffer_append;
	sink.write_value = sink_write_value;
	sink.write_text = sink_write_text;
	sink.ctx = &buffer;
	tmpl_render(strcmp(c->member, "channel") == 0 ? packet.channel : packet.data, &sink);
	if (buffer.overflowed)
		test_fail(t, "the rendered text overflowed the test buffer");
	else if (strcmp(buffer.text, c->expected) != 0)
		test_fail(t, "expected %s\ngot      %s", show_str(c->expected),
				  show(buffer.text, buffer.len));
}

static void
run_error_case(Test *t, const ErrorCase *c)
{
	size_t		expected = c->at ? offset_of(c->body, c->at) : strlen(c->body);
	size_t		len = strlen(c->body);
	TmplPacket	packet;
	TmplError	error;

	if (tmpl_parse_packet(c->body, len, &t->allocator, &packet, &error))
	{
		test_fail(t, "expected the body to be refused, but it parsed: %s",
				  show_str(c->body));
		return;
	}
	if (strstr(error.message, c->message) == NULL || error.position != expected)
		test_fail(t, "body: %s\n"
				  "expected error at %zu (%s) containing %s\n"
				  "got error at %zu (%s): %s",
				  show_str(c->body),
				  expected, show(c->body + expected, len - expected < 8 ? len - expected : 8),
				  show_str(c->message),
				  error.position,
				  error.position <= len
				  ? show(c->body + error.position, len - error.position < 8 ? len - error.position : 8)
				  : "past the end",
				  error.message);
	else if (c->detail != NULL && strstr(error.detail, c->detail) == NULL)
		test_fail(t, "expected the detail to contain %s\ngot %s",
				  show_str(c->detail), show_str(error.detail));
}


#define LENGTH(array) ((int) (sizeof(array) / sizeof((array)[0])))

int
main(void)
{
	int			total = LENGTH(structure_cases) + LENGTH(error_cases) + LENGTH(render_cases);
	int			number = 0;
	int			failures = 0;
	int			i;
	Test		t;

	printf("1..%d\n", total);
	for (i = 0; i < LENGTH(structure_cases); i++)
	{
		test_begin(&t);
		structure_cases[i].run(&t);
		failures += test_report(&t, ++number, structure_cases[i].description);
	}
	for (i = 0; i < LENGTH(error_cases); i++)
	{
		test_begin(&t);
		run_error_case(&t, &error_cases[i]);
		failures += test_report(&t, ++number, error_cases[i].description);
	}
	for (i = 0; i < LENGTH(render_cases); i++)
	{
		test_begin(&t);
		run_render_case(&t, &render_cases[i]);
		failures += test_report(&t, ++number, render_cases[i].description);
	}
	if (failures == 0)
		printf("# all passed\n");
	else
		printf("# %d of %d failed\n", failures, total);
	return failures == 0 ? 0 : 1;
}
