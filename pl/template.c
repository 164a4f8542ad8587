/*
 * template.c — the plcomet template parser and renderer.
 *
 * A strict RFC 8259 JSON parser that keeps byte positions for error reports
 * and turns strings containing '$' into references (see template.h for the
 * syntax).  It must never call into the PostgreSQL backend: all memory comes
 * from the TmplAllocator and all values from the TmplSink callbacks, so that
 * the same code can be fuzzed in a plain process.
 */
#include "template.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct Parser
{
	const char *src;
	size_t		len;
	size_t		pos;
	const TmplAllocator *allocator;
	TmplError  *error;
	bool		failed;
	TmplRef   **refs;
	int			nrefs;
	int			refs_capacity;
} Parser;

static TmplNode *parse_value(Parser *p, int depth);
static void parser_fail(Parser *p, size_t position, const char *detail,
						const char *fmt,...) __attribute__((format(printf, 4, 5)));

/* Record the first error only; later ones are consequences of it. */
static void
parser_fail(Parser *p, size_t position, const char *detail,
			const char *fmt,...)
{
	va_list		args;

	if (p->failed)
		return;
	p->failed = true;
	p->error->position = position;
	va_start(args, fmt);
	vsnprintf(p->error->message, sizeof(p->error->message), fmt, args);
	va_end(args);
	snprintf(p->error->detail, sizeof(p->error->detail), "%s",
			 detail ? detail : "");
}

static void *
parser_alloc(Parser *p, size_t size)
{
	return p->allocator->alloc(p->allocator->ctx, size);
}

static TmplNode *
node_new(Parser *p, TmplNodeKind kind, size_t position)
{
	TmplNode   *node = parser_alloc(p, sizeof(TmplNode));

	node->kind = kind;
	node->position = position;
	return node;
}

/* Remember a reference so that the caller can bind every one of them. */
static TmplRef *
ref_new(Parser *p, const char *name, size_t name_len,
		const char *field, size_t field_len, size_t position)
{
	TmplRef    *ref = parser_alloc(p, sizeof(TmplRef));

	ref->name = name;
	ref->name_len = name_len;
	ref->field = field;
	ref->field_len = field_len;
	ref->position = position;
	ref->binding = -1;
	if (p->nrefs == p->refs_capacity)
	{
		int			capacity = p->refs_capacity ? p->refs_capacity * 2 : 8;
		TmplRef   **grown = parser_alloc(p, sizeof(TmplRef *) * capacity);

		if (p->nrefs > 0)
			memcpy(grown, p->refs, sizeof(TmplRef *) * p->nrefs);
		p->refs = grown;
		p->refs_capacity = capacity;
	}
	p->refs[p->nrefs++] = ref;
	return ref;
}

static void
skip_whitespace(Parser *p)
{
	while (p->pos < p->len)
	{
		char		c = p->src[p->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		p->pos++;
	}
}

static bool
is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool
is_ident_char(char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9');
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The value of the four hexadecimal digits at s (checked by the caller). */
static unsigned
hex4(const char *s)
{
	unsigned	v = 0;
	int			k;

	for (k = 0; k < 4; k++)
		v = v * 16 + (unsigned) (is_digit(s[k]) ? s[k] - '0' : (s[k] | 0x20) - 'a' + 10);
	return v;
}

/*
 * Length of a reference name at s (an identifier or a run of digits), or 0.
 * A name of digits must be all digits: "$1x" is not a name.
 */
static size_t
ref_name_length(const char *s, size_t avail)
{
	size_t		n = 0;

	if (avail == 0)
		return 0;
	if (is_digit(s[0]))
	{
		while (n < avail && is_digit(s[n]))
			n++;
		if (n < avail && is_ident_char(s[n]))
			return 0;
		return n;
	}
	if (!is_ident_start(s[0]))
		return 0;
	while (n < avail && is_ident_char(s[n]))
		n++;
	return n;
}

/*
 * Is the whole string content exactly "$name" or "$name.field"?  Then it is
 * a typed value reference.
 */
static TmplRef *
parse_exact_ref(Parser *p, const char *content, size_t len, size_t position)
{
	size_t		name_len;
	size_t		field_len = 0;

	if (len < 2 || content[0] != '$')
		return NULL;
	name_len = ref_name_length(content + 1, len - 1);
	if (name_len == 0)
		return NULL;
	if (1 + name_len < len)
	{
		const char *field = content + 1 + name_len + 1;

		if (content[1 + name_len] != '.')
			return NULL;
		while (1 + name_len + 1 + field_len < len && is_ident_char(field[field_len]))
			field_len++;
		if (field_len == 0 || 1 + name_len + 1 + field_len != len)
			return NULL;
		return ref_new(p, content + 1, name_len, field, field_len, position);
	}
	return ref_new(p, content + 1, name_len, NULL, 0, position);
}

static void
parts_append(Parser *p, TmplNode *node, int *capacity, TmplPart part)
{
	if (node->nparts == *capacity)
	{
		int			grown_capacity = *capacity ? *capacity * 2 : 4;
		TmplPart   *grown = parser_alloc(p, sizeof(TmplPart) * grown_capacity);

		if (node->nparts > 0)
			memcpy(grown, node->parts, sizeof(TmplPart) * node->nparts);
		node->parts = grown;
		*capacity = grown_capacity;
	}
	node->parts[node->nparts++] = part;
}

/*
 * Split string content (raw, between the quotes) into literal text, ${ref}
 * and $$ parts.  start is the byte offset of the content in the source.
 */
static TmplNode *
parse_interpolated(Parser *p, const char *content, size_t len, size_t start,
				   size_t node_position)
{
	TmplNode   *node = node_new(p, TMPL_STRING, node_position);
	int			capacity = 0;
	size_t		literal_start = 0;
	size_t		i = 0;

	while (i < len)
	{
		TmplPart	part = {0};
		size_t		dollar = i;

		if (content[i] != '$')
		{
			i++;
			continue;
		}
		if (i > literal_start)
		{
			part.text = content + literal_start;
			part.text_len = i - literal_start;
			parts_append(p, node, &capacity, part);
			part.text = NULL;
		}
		if (i + 1 < len && content[i + 1] == '$')
		{
			part.text = content + i + 1;
			part.text_len = 1;
			parts_append(p, node, &capacity, part);
			i += 2;
		}
		else if (i + 1 < len && content[i + 1] == '{')
		{
			const char *name = content + i + 2;
			size_t		avail = len - (i + 2);
			size_t		name_len = ref_name_length(name, avail);
			const char *field = NULL;
			size_t		field_len = 0;
			size_t		end = i + 2 + name_len;

			if (name_len == 0 && avail == 0)
			{
				parser_fail(p, start + dollar,
							"Write \"${name}\" to insert a value, or \"$$\" for a literal dollar sign.",
							"unterminated reference \"${\"");
				return NULL;
			}
			if (name_len == 0)
			{
				parser_fail(p, start + dollar,
							"A name is a letter or underscore followed by letters, digits and underscores, or a parameter number.",
							"invalid reference in \"${...}\"");
				return NULL;
			}
			if (end < len && content[end] == '.')
			{
				field = content + end + 1;
				while (end + 1 + field_len < len &&
					   field[field_len] != '}' && field[field_len] != '"' &&
					   field[field_len] != '\\' && field[field_len] != '$' &&
					   (unsigned char) field[field_len] >= 0x20)
					field_len++;
				end += 1 + field_len;
				if (field_len == 0)
				{
					parser_fail(p, start + dollar, NULL,
								"missing field name after \".\" in \"${...}\"");
					return NULL;
				}
			}
			if (end >= len || content[end] != '}')
			{
				parser_fail(p, start + dollar,
							"Write \"${name}\" to insert a value, or \"$$\" for a literal dollar sign.",
							"unterminated reference \"${\"");
				return NULL;
			}
			part.ref = ref_new(p, name, name_len, field, field_len, start + dollar);
			parts_append(p, node, &capacity, part);
			i = end + 1;
		}
		else
		{
			bool		looks_like_ref = ref_name_length(content + i + 1, len - i - 1) > 0;

			parser_fail(p, start + dollar,
						looks_like_ref
						? "A reference that is not the whole string must be written \"${name}\"; write \"$$\" for a literal dollar sign."
						: "Write \"$$\" for a literal dollar sign, or \"${name}\" to insert a value inside a string.",
						"unescaped \"$\" in string");
			return NULL;
		}
		literal_start = i;
	}
	if (len > literal_start)
	{
		TmplPart	part = {0};

		part.text = content + literal_start;
		part.text_len = len - literal_start;
		parts_append(p, node, &capacity, part);
	}
	return node;
}

/* Check a JSON string at p->pos (the opening quote) and move past it. */
static bool
scan_string(Parser *p, size_t *content_start, size_t *content_len)
{
	size_t		open = p->pos;

	p->pos++;
	*content_start = p->pos;
	while (p->pos < p->len)
	{
		unsigned char c = (unsigned char) p->src[p->pos];

		if (c == '"')
		{
			*content_len = p->pos - *content_start;
			p->pos++;
			return true;
		}
		if (c < 0x20)
		{
			parser_fail(p, p->pos, "Control characters must be escaped, for example \\n.",
						"invalid JSON: control character in string");
			return false;
		}
		if (c == '\\')
		{
			char		e;

			if (p->pos + 1 >= p->len)
				break;
			e = p->src[p->pos + 1];
			if (e == 'u')
			{
				int			k;

				for (k = 0; k < 4; k++)
				{
					if (p->pos + 2 + k >= p->len || !is_hex(p->src[p->pos + 2 + k]))
					{
						parser_fail(p, p->pos, "\"\\u\" must be followed by four hexadecimal digits.",
									"invalid JSON: bad escape in string");
						return false;
					}
				}
				{
					/* jsonb, where the packet ends up, refuses these */
					unsigned	v = hex4(p->src + p->pos + 2);

					if (v == 0)
					{
						parser_fail(p, p->pos, "PostgreSQL's jsonb cannot store \\u0000.",
									"unsupported Unicode escape \\u0000 in string");
						return false;
					}
					if (v >= 0xDC00 && v <= 0xDFFF)
					{
						parser_fail(p, p->pos, "A low surrogate must follow a high surrogate.",
									"lone Unicode low surrogate in string");
						return false;
					}
					if (v >= 0xD800 && v <= 0xDBFF)
					{
						const char *n = p->src + p->pos + 6;
						bool		low = p->pos + 12 <= p->len && n[0] == '\\' && n[1] == 'u' &&
							is_hex(n[2]) && is_hex(n[3]) && is_hex(n[4]) && is_hex(n[5]) &&
							hex4(n + 2) >= 0xDC00 && hex4(n + 2) <= 0xDFFF;

						if (!low)
						{
							parser_fail(p, p->pos, "A high surrogate must be followed by a low surrogate.",
										"lone Unicode high surrogate in string");
							return false;
						}
						p->pos += 6;	/* the pair together */
					}
				}
				p->pos += 6;
				continue;
			}
			if (strchr("\"\\/bfnrt", e) == NULL || e == '\0')
			{
				parser_fail(p, p->pos, "Valid escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX.",
							"invalid JSON: bad escape in string");
				return false;
			}
			p->pos += 2;
			continue;
		}
		p->pos++;
	}
	parser_fail(p, open, NULL, "invalid JSON: unterminated string");
	return false;
}

static TmplNode *
parse_string(Parser *p)
{
	size_t		open = p->pos;
	size_t		start;
	size_t		len;
	const char *content;
	TmplRef    *ref;
	TmplNode   *node;

	if (!scan_string(p, &start, &len))
		return NULL;
	content = p->src + start;
	if (memchr(content, '$', len) == NULL)
	{
		node = node_new(p, TMPL_LITERAL, open);
		node->text = p->src + open;
		node->text_len = len + 2;
		return node;
	}
	ref = parse_exact_ref(p, content, len, start);
	if (ref != NULL)
	{
		node = node_new(p, TMPL_VALUE, open);
		node->ref = ref;
		return node;
	}
	return parse_interpolated(p, content, len, start, open);
}

static TmplNode *
parse_number(Parser *p)
{
	size_t		start = p->pos;
	TmplNode   *node;

	if (p->pos < p->len && p->src[p->pos] == '-')
		p->pos++;
	if (p->pos < p->len && p->src[p->pos] == '0')
	{
		p->pos++;
		if (p->pos < p->len && is_digit(p->src[p->pos]))
			goto bad;			/* JSON has no leading zeros */
	}
	else if (p->pos < p->len && is_digit(p->src[p->pos]))
	{
		while (p->pos < p->len && is_digit(p->src[p->pos]))
			p->pos++;
	}
	else
		goto bad;
	if (p->pos < p->len && p->src[p->pos] == '.')
	{
		p->pos++;
		if (p->pos >= p->len || !is_digit(p->src[p->pos]))
			goto bad;
		while (p->pos < p->len && is_digit(p->src[p->pos]))
			p->pos++;
	}
	if (p->pos < p->len && (p->src[p->pos] == 'e' || p->src[p->pos] == 'E'))
	{
		p->pos++;
		if (p->pos < p->len && (p->src[p->pos] == '+' || p->src[p->pos] == '-'))
			p->pos++;
		if (p->pos >= p->len || !is_digit(p->src[p->pos]))
			goto bad;
		while (p->pos < p->len && is_digit(p->src[p->pos]))
			p->pos++;
	}
	node = node_new(p, TMPL_LITERAL, start);
	node->text = p->src + start;
	node->text_len = p->pos - start;
	return node;

bad:
	parser_fail(p, start, NULL, "invalid JSON: malformed number");
	return NULL;
}

static TmplNode *
parse_word(Parser *p, const char *word)
{
	size_t		n = strlen(word);
	TmplNode   *node;

	if (p->len - p->pos < n || memcmp(p->src + p->pos, word, n) != 0 ||
		(p->pos + n < p->len && is_ident_char(p->src[p->pos + n])))
	{
		parser_fail(p, p->pos, "A value is an object, array, string, number, true, false or null.",
					"invalid JSON: unexpected token");
		return NULL;
	}
	node = node_new(p, TMPL_LITERAL, p->pos);
	node->text = p->src + p->pos;
	node->text_len = n;
	p->pos += n;
	return node;
}

/* Grow the parallel key/item arrays of an array or object node. */
static void
container_append(Parser *p, TmplNode *node, int *capacity,
				 TmplNode *key, TmplNode *item)
{
	if (node->nitems == *capacity)
	{
		int			grown_capacity = *capacity ? *capacity * 2 : 4;
		TmplNode  **items = parser_alloc(p, sizeof(TmplNode *) * grown_capacity);
		TmplNode  **keys = parser_alloc(p, sizeof(TmplNode *) * grown_capacity);

		if (node->nitems > 0)
		{
			memcpy(items, node->items, sizeof(TmplNode *) * node->nitems);
			memcpy(keys, node->keys, sizeof(TmplNode *) * node->nitems);
		}
		node->items = items;
		node->keys = keys;
		*capacity = grown_capacity;
	}
	node->keys[node->nitems] = key;
	node->items[node->nitems] = item;
	node->nitems++;
}

static TmplNode *
parse_array(Parser *p, int depth)
{
	TmplNode   *node = node_new(p, TMPL_ARRAY, p->pos);
	int			capacity = 0;

	p->pos++;					/* '[' */
	skip_whitespace(p);
	if (p->pos < p->len && p->src[p->pos] == ']')
	{
		p->pos++;
		return node;
	}
	for (;;)
	{
		TmplNode   *item = parse_value(p, depth + 1);

		if (item == NULL)
			return NULL;
		container_append(p, node, &capacity, NULL, item);
		skip_whitespace(p);
		if (p->pos < p->len && p->src[p->pos] == ',')
		{
			p->pos++;
			continue;
		}
		if (p->pos < p->len && p->src[p->pos] == ']')
		{
			p->pos++;
			return node;
		}
		parser_fail(p, p->pos, NULL, "invalid JSON: expected \",\" or \"]\" in array");
		return NULL;
	}
}

static TmplNode *
parse_key(Parser *p)
{
	TmplNode   *key;

	skip_whitespace(p);
	if (p->pos >= p->len || p->src[p->pos] != '"')
	{
		parser_fail(p, p->pos, NULL, "invalid JSON: expected a string as object key");
		return NULL;
	}
	key = parse_string(p);
	if (key != NULL && key->kind == TMPL_VALUE)
	{
		/* keys are always strings: "$x" as a key means "${x}" */
		TmplPart   *part = parser_alloc(p, sizeof(TmplPart));

		part->ref = key->ref;
		key->kind = TMPL_STRING;
		key->ref = NULL;
		key->parts = part;
		key->nparts = 1;
	}
	return key;
}

static TmplNode *
parse_object(Parser *p, int depth)
{
	TmplNode   *node = node_new(p, TMPL_OBJECT, p->pos);
	int			capacity = 0;

	p->pos++;					/* '{' */
	skip_whitespace(p);
	if (p->pos < p->len && p->src[p->pos] == '}')
	{
		p->pos++;
		return node;
	}
	for (;;)
	{
		TmplNode   *key = parse_key(p);
		TmplNode   *item;

		if (key == NULL)
			return NULL;
		skip_whitespace(p);
		if (p->pos >= p->len || p->src[p->pos] != ':')
		{
			parser_fail(p, p->pos, NULL, "invalid JSON: expected \":\" after object key");
			return NULL;
		}
		p->pos++;
		item = parse_value(p, depth + 1);
		if (item == NULL)
			return NULL;
		container_append(p, node, &capacity, key, item);
		skip_whitespace(p);
		if (p->pos < p->len && p->src[p->pos] == ',')
		{
			p->pos++;
			continue;
		}
		if (p->pos < p->len && p->src[p->pos] == '}')
		{
			p->pos++;
			return node;
		}
		parser_fail(p, p->pos, NULL, "invalid JSON: expected \",\" or \"}\" in object");
		return NULL;
	}
}

static TmplNode *
parse_value(Parser *p, int depth)
{
	char		c;

	skip_whitespace(p);
	if (p->pos >= p->len)
	{
		parser_fail(p, p->pos, NULL, "invalid JSON: unexpected end of body");
		return NULL;
	}
	c = p->src[p->pos];
	/* depth counts containers: the root object is 1 */
	if ((c == '{' || c == '[') && depth > TMPL_MAX_DEPTH)
	{
		parser_fail(p, p->pos, NULL, "template nests more than %d levels deep",
					TMPL_MAX_DEPTH);
		return NULL;
	}
	switch (c)
	{
		case '{':
			return parse_object(p, depth);
		case '[':
			return parse_array(p, depth);
		case '"':
			return parse_string(p);
		case 't':
			return parse_word(p, "true");
		case 'f':
			return parse_word(p, "false");
		case 'n':
			return parse_word(p, "null");
		default:
			if (c == '-' || is_digit(c))
				return parse_number(p);
			parser_fail(p, p->pos, "A value is an object, array, string, number, true, false or null.",
						"invalid JSON: unexpected character");
			return NULL;
	}
}

/* Does the raw key text (with quotes) name the member `name`? */
static bool
key_is(const TmplNode *key, const char *name)
{
	size_t		n = strlen(name);

	return key->kind == TMPL_LITERAL && key->text_len == n + 2 &&
		memcmp(key->text + 1, name, n) == 0;
}

/* Check that the root is {"channel": ..., "data": ...} and pick them out. */
static bool
extract_members(Parser *p, const TmplNode *root, TmplPacket *packet)
{
	int			i;

	if (root->kind != TMPL_OBJECT)
	{
		parser_fail(p, root->position,
					"A plcomet body is a JSON object such as {\"channel\": \"news\", \"data\": {\"text\": \"$1\"}}.",
					"plcomet body must be a JSON object");
		return false;
	}
	for (i = 0; i < root->nitems; i++)
	{
		const TmplNode *key = root->keys[i];
		TmplNode  **slot;

		if (key_is(key, "channel"))
			slot = &packet->channel;
		else if (key_is(key, "data"))
			slot = &packet->data;
		else
		{
			parser_fail(p, key->position,
						"A plcomet body has exactly two members, \"channel\" and \"data\".",
						"unexpected member %.*s in plcomet body",
						key->kind == TMPL_LITERAL ? (int) key->text_len : 3,
						key->kind == TMPL_LITERAL ? key->text : "\"?\"");
			return false;
		}
		if (*slot != NULL)
		{
			parser_fail(p, key->position, NULL,
						"duplicate member %.*s in plcomet body",
						(int) key->text_len, key->text);
			return false;
		}
		*slot = root->items[i];
	}
	if (packet->channel == NULL)
	{
		parser_fail(p, root->position,
					"Add \"channel\": a channel name, or an array of them.",
					"plcomet body has no \"channel\" member");
		return false;
	}
	if (packet->data == NULL)
	{
		parser_fail(p, root->position,
					"Add \"data\": the JSON to send.",
					"plcomet body has no \"data\" member");
		return false;
	}
	return true;
}

bool
tmpl_parse_packet(const char *src, size_t len, const TmplAllocator *allocator,
				  TmplPacket *packet, TmplError *error)
{
	Parser		p = {0};
	TmplNode   *root;

	memset(packet, 0, sizeof(*packet));
	memset(error, 0, sizeof(*error));
	p.src = src;
	p.len = len;
	p.allocator = allocator;
	p.error = error;

	skip_whitespace(&p);
	if (p.pos >= p.len)
	{
		parser_fail(&p, 0, "A plcomet body is a JSON object such as {\"channel\": \"news\", \"data\": {\"text\": \"$1\"}}.",
					"plcomet body is empty");
		return false;
	}
	root = parse_value(&p, 1);
	if (root == NULL)
		return false;
	skip_whitespace(&p);
	if (p.pos < p.len)
	{
		parser_fail(&p, p.pos, NULL, "invalid JSON: unexpected text after the body");
		return false;
	}
	if (!extract_members(&p, root, packet))
		return false;
	packet->refs = p.refs;
	packet->nrefs = p.nrefs;
	return true;
}

void
tmpl_render(const TmplNode *node, const TmplSink *sink)
{
	int			i;

	switch (node->kind)
	{
		case TMPL_LITERAL:
			sink->append(sink->ctx, node->text, node->text_len);
			break;
		case TMPL_VALUE:
			sink->write_value(sink->ctx, node->ref);
			break;
		case TMPL_STRING:
			sink->append(sink->ctx, "\"", 1);
			for (i = 0; i < node->nparts; i++)
			{
				if (node->parts[i].text != NULL)
					sink->append(sink->ctx, node->parts[i].text,
								 node->parts[i].text_len);
				else
					sink->write_text(sink->ctx, node->parts[i].ref);
			}
			sink->append(sink->ctx, "\"", 1);
			break;
		case TMPL_ARRAY:
			sink->append(sink->ctx, "[", 1);
			for (i = 0; i < node->nitems; i++)
			{
				if (i > 0)
					sink->append(sink->ctx, ",", 1);
				tmpl_render(node->items[i], sink);
			}
			sink->append(sink->ctx, "]", 1);
			break;
		case TMPL_OBJECT:
			sink->append(sink->ctx, "{", 1);
			for (i = 0; i < node->nitems; i++)
			{
				if (i > 0)
					sink->append(sink->ctx, ",", 1);
				tmpl_render(node->keys[i], sink);
				sink->append(sink->ctx, ":", 1);
				tmpl_render(node->items[i], sink);
			}
			sink->append(sink->ctx, "}", 1);
			break;
	}
}

bool
tmpl_is_plain_string(const TmplNode *node)
{
	return node->kind == TMPL_LITERAL && node->text_len >= 2 &&
		node->text[0] == '"';
}
