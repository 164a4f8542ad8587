/*
 * template_fuzzer.c — libFuzzer harness for the plcomet template parser
 * and renderer (pl/template.c), built outside the server as template.h
 * intends: memory from a malloc arena through TmplAllocator, values from
 * this file's TmplSink callbacks.
 *
 * An input is a body, then optionally a NUL and the values:
 *
 *     BODY [ 0x00 VALUES ]
 *
 * A body never holds a NUL (PostgreSQL text cannot), so the first NUL ends
 * it.  VALUES is read as one value per reference, in the packet's refs
 * order: a kind byte, then what that kind needs (see value_read).  Once
 * VALUES runs out, references get a text value naming them, so a corpus of
 * bare bodies renders too.
 *
 * Checked for every input: the parser agrees with fuzz/oracle.c about
 * what is JSON; a parsed tree is well formed and lists every reference,
 * in source order, in packet.refs; an error's position is inside the body;
 * the rendered channel and data are JSON (the oracle and json-c) whenever
 * the body was UTF-8.  The sink writes values as pl/execute.c does: a
 * "$ref" as to_json would render it, a "${ref}" as its text, JSON-escaped
 * without quotes, NULL as the empty string.  Leaks are LeakSanitizer's.
 */
#include "template.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oracle.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---------------------------------------------------------------------
 * Arena: the TmplAllocator, every block freed when the input is done
 * ------------------------------------------------------------------- */

typedef struct Arena
{
	void	  **blocks;
	size_t		nblocks;
	size_t		capacity;
} Arena;

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
			abort();
		arena->blocks = grown;
		arena->capacity = capacity;
	}
	block = calloc(1, size > 0 ? size : 1);
	if (block == NULL)
		abort();
	arena->blocks[arena->nblocks++] = block;
	return block;
}

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
 * Values: what a reference stands for
 * ------------------------------------------------------------------- */

typedef enum ValueKind
{
	VALUE_NULL,
	VALUE_INTEGER,				/* int2/int4/int8: digits */
	VALUE_FLOAT,				/* float8: a number, or "NaN" and the like quoted */
	VALUE_BOOLEAN,				/* true/false as JSON; "t"/"f" as text */
	VALUE_TEXT,					/* text: a JSON string; as text, escaped */
	VALUE_JSON,					/* json: embedded as it is */
	VALUE_KIND_COUNT
} ValueKind;

/* JSON values a json argument may hold, picked by index. */
static const char *const sample_json[] = {
	"null", "0", "-1.5e-300", "true", "\"\"", "\"x \\\"y\\\" \\u00e9\"", "[]", "{}",
	"[1,[2,[3]],{\"a\":null}]", "{\"k\":\"$1\",\"${x}\":\"$$\"}", "\"\\ud83d\\ude00\"",
	" [ \"\xE2\x80\xA8\" ] ", "123456789012345678901234567890",
};

typedef struct Value
{
	ValueKind	kind;
	char	   *text;			/* malloc'd: JSON for VALUE_JSON, else the
								 * type's output (valid UTF-8, no NUL) */
} Value;

/* The VALUES bytes and how far they have been read. */
typedef struct ValueReader
{
	const uint8_t *data;
	size_t		size;
	size_t		pos;
} ValueReader;

static bool
reader_byte(ValueReader *reader, uint8_t *byte)
{
	if (reader->pos >= reader->size)
		return false;
	*byte = reader->data[reader->pos++];
	return true;
}

/* Up to want bytes from the reader; *len is how many there were. */
static const uint8_t *
reader_bytes(ValueReader *reader, size_t want, size_t *len)
{
	const uint8_t *start = reader->data + reader->pos;

	*len = reader->size - reader->pos < want ? reader->size - reader->pos : want;
	reader->pos += *len;
	return start;
}

static char *
text_printf(const char *fmt,...) __attribute__((format(printf, 1, 2)));

static char *
text_printf(const char *fmt,...)
{
	va_list		args;
	char	   *text = malloc(64);

	if (text == NULL)
		abort();
	va_start(args, fmt);
	vsnprintf(text, 64, fmt, args);
	va_end(args);
	return text;
}

/* bytes as text a PostgreSQL text value could hold: NUL and bad UTF-8 become '?' */
static char *
text_from_bytes(const uint8_t *bytes, size_t len)
{
	char	   *text = malloc(len + 1);
	size_t		i;

	if (text == NULL)
		abort();
	memcpy(text, bytes, len);
	text[len] = '\0';
	for (i = 0; i < len;)
	{
		size_t		n = 1;

		while (n <= 4 && i + n <= len && !oracle_utf8_valid(text + i, n))
			n++;
		if (n > 4 || i + n > len || text[i] == '\0')
		{
			text[i++] = '?';
			continue;
		}
		i += n;
	}
	return text;
}

/*
 * Read one value: a kind byte (mod VALUE_KIND_COUNT), then for integers 8
 * bytes, floats 8 bytes, booleans 1, text a length byte and that many
 * bytes, JSON a byte that picks a sample_json entry or, when it is 0xFF, a
 * length byte and bytes used as JSON when they are JSON (else as text).
 * With nothing left to read: text "v<index>".
 */
static void
value_read(ValueReader *reader, int index, Value *value)
{
	uint8_t		byte;
	size_t		len;
	const uint8_t *bytes;

	if (!reader_byte(reader, &byte))
	{
		value->kind = VALUE_TEXT;
		value->text = text_printf("v%d", index);
		return;
	}
	value->kind = (ValueKind) (byte % VALUE_KIND_COUNT);
	switch (value->kind)
	{
		case VALUE_NULL:
			value->text = NULL;
			break;
		case VALUE_INTEGER:
			{
				int64_t		number = 0;

				bytes = reader_bytes(reader, sizeof(number), &len);
				memcpy(&number, bytes, len);
				value->text = text_printf("%" PRId64, number);
				break;
			}
		case VALUE_FLOAT:
			{
				double		number = 0;

				bytes = reader_bytes(reader, sizeof(number), &len);
				memcpy(&number, bytes, len);
				if (isnan(number))
					value->text = text_printf("NaN");
				else if (isinf(number))
					value->text = text_printf(number > 0 ? "Infinity" : "-Infinity");
				else
					value->text = text_printf("%.17g", number);
				break;
			}
		case VALUE_BOOLEAN:
			value->text = text_printf("%s", reader_byte(reader, &byte) && (byte & 1) ? "t" : "f");
			break;
		case VALUE_TEXT:
			len = reader_byte(reader, &byte) ? byte : 0;
			bytes = reader_bytes(reader, len, &len);
			value->text = text_from_bytes(bytes, len);
			break;
		case VALUE_JSON:
		default:
			if (!reader_byte(reader, &byte))
				byte = 0;
			if (byte != 0xFF)
			{
				value->text = text_printf("%s", sample_json[byte % (sizeof(sample_json) / sizeof(sample_json[0]))]);
				break;
			}
			len = reader_byte(reader, &byte) ? byte : 0;
			bytes = reader_bytes(reader, len, &len);
			value->text = text_from_bytes(bytes, len);
			if (oracle_json_check(value->text, len, NULL) != ORACLE_JSON_VALID)
				value->kind = VALUE_TEXT;	/* json_in would have refused it */
			break;
	}
}

/* ---------------------------------------------------------------------
 * The sink: rendered text, values written as pl/execute.c writes them
 * ------------------------------------------------------------------- */

typedef struct Render
{
	char	   *text;
	size_t		len;
	size_t		capacity;
	const Value *values;
	int			nvalues;
} Render;

static void
render_append(void *ctx, const char *data, size_t len)
{
	Render	   *render = ctx;

	if (render->len + len + 1 > render->capacity)
	{
		size_t		capacity = render->capacity ? render->capacity : 256;
		char	   *grown;

		while (capacity < render->len + len + 1)
			capacity *= 2;
		grown = realloc(render->text, capacity);
		if (grown == NULL)
			abort();
		render->text = grown;
		render->capacity = capacity;
	}
	memcpy(render->text + render->len, data, len);
	render->len += len;
	render->text[render->len] = '\0';
}

static void
render_append_str(Render *render, const char *s)
{
	render_append(render, s, strlen(s));
}

/* text JSON-escaped as PostgreSQL's escape_json does, without the quotes */
static void
render_escaped(Render *render, const char *text)
{
	const unsigned char *s = (const unsigned char *) text;

	for (; *s != '\0'; s++)
	{
		char		escape[8];

		switch (*s)
		{
			case '"':
				render_append_str(render, "\\\"");
				break;
			case '\\':
				render_append_str(render, "\\\\");
				break;
			case '\b':
				render_append_str(render, "\\b");
				break;
			case '\f':
				render_append_str(render, "\\f");
				break;
			case '\n':
				render_append_str(render, "\\n");
				break;
			case '\r':
				render_append_str(render, "\\r");
				break;
			case '\t':
				render_append_str(render, "\\t");
				break;
			default:
				if (*s < 0x20)
				{
					snprintf(escape, sizeof(escape), "\\u%04x", *s);
					render_append_str(render, escape);
				}
				else
					render_append(render, (const char *) s, 1);
		}
	}
}

/* The value a reference is bound to: binding is its index in refs. */
static const Value *
render_value(const Render *render, const TmplRef *ref)
{
	FUZZ_ASSERT(ref->binding >= 0 && ref->binding < render->nvalues,
				"the renderer passed a reference the parser did not list");
	return &render->values[ref->binding];
}

/* TmplSink.write_value: the value as to_json renders it. */
static void
sink_write_value(void *ctx, const TmplRef *ref)
{
	Render	   *render = ctx;
	const Value *value = render_value(render, ref);

	switch (value->kind)
	{
		case VALUE_NULL:
			render_append_str(render, "null");
			break;
		case VALUE_INTEGER:
		case VALUE_JSON:
			render_append_str(render, value->text);
			break;
		case VALUE_FLOAT:
			if (isalpha((unsigned char) value->text[value->text[0] == '-']))
			{
				render_append_str(render, "\"");
				render_append_str(render, value->text);
				render_append_str(render, "\"");
			}
			else
				render_append_str(render, value->text);
			break;
		case VALUE_BOOLEAN:
			render_append_str(render, value->text[0] == 't' ? "true" : "false");
			break;
		case VALUE_TEXT:
		default:
			render_append_str(render, "\"");
			render_escaped(render, value->text);
			render_append_str(render, "\"");
			break;
	}
}

/* TmplSink.write_text: the value's text, escaped; NULL is empty. */
static void
sink_write_text(void *ctx, const TmplRef *ref)
{
	Render	   *render = ctx;
	const Value *value = render_value(render, ref);

	if (value->kind != VALUE_NULL)
		render_escaped(render, value->text);
}

/* ---------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------- */

/* The body and what walking the tree has met so far. */
typedef struct Walk
{
	const char *src;
	size_t		len;
	const TmplPacket *packet;
	int			next_ref;		/* refs[next_ref] is the next one expected */
} Walk;

static bool
inside(const Walk *walk, const char *p, size_t n)
{
	return p >= walk->src && n <= walk->len && (size_t) (p - walk->src) <= walk->len - n;
}

/* A reference points into the body at a '$' and is the next one listed. */
static void
check_ref(Walk *walk, const TmplRef *ref)
{
	size_t		i;
	bool		digits = true;
	bool		identifier = true;

	FUZZ_ASSERT(walk->next_ref < walk->packet->nrefs &&
				walk->packet->refs[walk->next_ref] == ref,
				"reference %d in the tree is not refs[%d]", walk->next_ref, walk->next_ref);
	walk->next_ref++;
	FUZZ_ASSERT(ref->position < walk->len && walk->src[ref->position] == '$',
				"a reference's position %zu is not at a '$'", ref->position);
	FUZZ_ASSERT(ref->name_len > 0 && inside(walk, ref->name, ref->name_len) &&
				ref->name > walk->src + ref->position,
				"a reference's name is outside the body");
	for (i = 0; i < ref->name_len; i++)
	{
		char		c = ref->name[i];
		bool		digit = c >= '0' && c <= '9';

		digits = digits && digit;
		identifier = identifier && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
									c == '_' || (digit && i > 0));
	}
	FUZZ_ASSERT(digits || identifier,
				"reference name \"%.*s\" is neither digits nor an identifier",
				(int) ref->name_len, ref->name);
	if (ref->field != NULL)
		FUZZ_ASSERT(ref->field_len > 0 && inside(walk, ref->field, ref->field_len) &&
					ref->field[-1] == '.' && ref->field == ref->name + ref->name_len + 1,
					"a reference's field is not after \"name.\"");
	else
		FUZZ_ASSERT(ref->field_len == 0, "a field length without a field");
}

/* A node and what is under it are well formed; depth counts containers. */
static void
check_node(Walk *walk, const TmplNode *node, int depth, bool is_key)
{
	int			i;

	FUZZ_ASSERT(node != NULL, "a NULL node in the tree");
	FUZZ_ASSERT(node->position < walk->len, "node position %zu past the body", node->position);
	switch (node->kind)
	{
		case TMPL_LITERAL:
			FUZZ_ASSERT(node->text_len > 0 && inside(walk, node->text, node->text_len),
						"a literal's text is outside the body");
			FUZZ_ASSERT(!is_key || (node->text_len >= 2 && node->text[0] == '"' &&
									node->text[node->text_len - 1] == '"'),
						"a literal key that is not a string");
			FUZZ_ASSERT(!tmpl_is_plain_string(node) ||
						memchr(node->text, '$', node->text_len) == NULL,
						"a plain string with a '$' in it");
			break;
		case TMPL_VALUE:
			FUZZ_ASSERT(!is_key, "a typed reference as a key");
			check_ref(walk, node->ref);
			break;
		case TMPL_STRING:
			FUZZ_ASSERT(node->nparts > 0 && node->parts != NULL, "a string of no parts");
			FUZZ_ASSERT(!tmpl_is_plain_string(node), "an interpolated string called plain");
			for (i = 0; i < node->nparts; i++)
			{
				const TmplPart *part = &node->parts[i];

				if (part->text != NULL)
					FUZZ_ASSERT(part->text_len > 0 && inside(walk, part->text, part->text_len),
								"a string part outside the body");
				else
					check_ref(walk, part->ref);
			}
			break;
		case TMPL_ARRAY:
		case TMPL_OBJECT:
			FUZZ_ASSERT(!is_key, "a container as a key");
			FUZZ_ASSERT(depth <= TMPL_MAX_DEPTH, "a container %d deep", depth);
			FUZZ_ASSERT(node->nitems >= 0 && (node->nitems == 0 || node->items != NULL),
						"container item count %d", node->nitems);
			for (i = 0; i < node->nitems; i++)
			{
				if (node->kind == TMPL_OBJECT)
					check_node(walk, node->keys[i], depth, true);
				check_node(walk, node->items[i], depth + 1, false);
			}
			break;
		default:
			FUZZ_ASSERT(false, "node kind %d", (int) node->kind);
	}
}

/* A rendered member is JSON, by the oracle and by json-c. */
static void
check_rendered(const Render *render, const char *member)
{
	int			depth = 0;
	OracleJsonResult result = oracle_json_check(render->text, render->len, &depth);

	FUZZ_ASSERT(strlen(render->text) == render->len, "rendered %s holds a NUL", member);
	FUZZ_ASSERT(oracle_utf8_valid(render->text, render->len),
				"rendered %s is not UTF-8: %s", member, render->text);
	FUZZ_ASSERT(result == ORACLE_JSON_VALID, "rendered %s is not JSON: %s", member, render->text);
	FUZZ_ASSERT(oracle_jsonc_parse(render->text, render->len, depth + 2, NULL),
				"json-c refuses the rendered %s: %s", member, render->text);
}

/* Render node with the values into a fresh buffer and check it. */
static void
render_and_check(const TmplNode *node, const Value *values, int nvalues,
				 const char *member, bool check_json)
{
	Render		render = {NULL, 0, 0, values, nvalues};
	TmplSink	sink = {render_append, sink_write_value, sink_write_text, &render};

	render_append(&render, "", 0);
	tmpl_render(node, &sink);
	if (check_json)
		check_rendered(&render, member);
	free(render.text);
}

/* The parser and the oracle must agree about what is JSON. */
static void
check_against_oracle(const char *src, size_t len, bool parsed, const TmplError *error)
{
	int			depth = 0;
	OracleJsonResult json = oracle_json_check(src, len, &depth);

	if (json == ORACLE_JSON_TOO_DEEP)
		return;
	if (parsed)
		FUZZ_ASSERT(json == ORACLE_JSON_VALID && depth <= TMPL_MAX_DEPTH,
					"parsed a body the oracle calls %s, %d deep",
					json == ORACLE_JSON_VALID ? "JSON" : "not JSON", depth);
	else if (json == ORACLE_JSON_INVALID)
		return;					/* any message: the first problem may not be JSON's */
	else
	{
		FUZZ_ASSERT(strncmp(error->message, "invalid JSON", 12) != 0,
					"refused JSON as \"%s\" at %zu", error->message, error->position);
		FUZZ_ASSERT(strncmp(error->message, "template nests more than", 24) != 0 ||
					depth > TMPL_MAX_DEPTH,
					"refused a body %d deep as too deep", depth);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		body_len = strnlen((const char *) data, size);
	const uint8_t *values_data = data + body_len + (body_len < size ? 1 : 0);
	ValueReader reader = {values_data, (size_t) (data + size - values_data), 0};
	Arena		arena = {0};
	TmplAllocator allocator = {arena_alloc, &arena};
	TmplPacket	packet;
	TmplError	error;
	char	   *body;
	bool		parsed;

	oracle_set_input(data, size);
	/* its own allocation, so that ASan sees a read past the end */
	body = malloc(body_len > 0 ? body_len : 1);
	if (body == NULL)
		abort();
	memcpy(body, data, body_len);

	parsed = tmpl_parse_packet(body, body_len, &allocator, &packet, &error);
	check_against_oracle(body, body_len, parsed, &error);
	if (!parsed)
	{
		FUZZ_ASSERT(error.position <= body_len, "error position %zu past the body's %zu bytes",
					error.position, body_len);
		FUZZ_ASSERT(error.message[0] != '\0' &&
					memchr(error.message, '\0', sizeof(error.message)) != NULL &&
					memchr(error.detail, '\0', sizeof(error.detail)) != NULL,
					"an error without a terminated message");
	}
	else
	{
		Walk		walk = {body, body_len, &packet, 0};
		Value	   *values;
		int			i;
		bool		utf8 = oracle_utf8_valid(body, body_len);

		FUZZ_ASSERT(packet.channel != NULL && packet.data != NULL, "a packet lacks a member");
		FUZZ_ASSERT(packet.nrefs >= 0 && (packet.nrefs == 0 || packet.refs != NULL),
					"ref count %d", packet.nrefs);
		for (i = 1; i < packet.nrefs; i++)
			FUZZ_ASSERT(packet.refs[i - 1]->position < packet.refs[i]->position,
						"refs out of source order");
		/* the body's members in either order: walk them in source order */
		if (packet.channel->position < packet.data->position)
		{
			check_node(&walk, packet.channel, 2, false);
			check_node(&walk, packet.data, 2, false);
		}
		else
		{
			check_node(&walk, packet.data, 2, false);
			check_node(&walk, packet.channel, 2, false);
		}
		FUZZ_ASSERT(walk.next_ref == packet.nrefs, "refs lists %d references, the tree has %d",
					packet.nrefs, walk.next_ref);

		values = calloc(packet.nrefs > 0 ? (size_t) packet.nrefs : 1, sizeof(Value));
		if (values == NULL)
			abort();
		for (i = 0; i < packet.nrefs; i++)
		{
			packet.refs[i]->binding = i;
			value_read(&reader, i, &values[i]);
		}
		render_and_check(packet.channel, values, packet.nrefs, "channel", utf8);
		render_and_check(packet.data, values, packet.nrefs, "data", utf8);
		for (i = 0; i < packet.nrefs; i++)
			free(values[i].text);
		free(values);
	}
	free(body);
	arena_free_all(&arena);
	return 0;
}
