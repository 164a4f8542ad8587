/*
 * template.h — plcomet packet templates: parse a function body into a tree
 * and render it back to JSON text with argument values filled in.
 *
 * This module never calls into the PostgreSQL backend: memory comes from a
 * caller-supplied allocator and values come from caller-supplied callbacks,
 * so that it can be built and fuzzed outside the server.
 *
 * A body is a JSON object {"channel": C, "data": D}.  Inside C and D:
 *   "$name" / "$N"      a string that is exactly a reference: the value, typed
 *   "$NEW.col"          the same with a field access (trigger rows)
 *   "...${name}..."     interpolation of the value's text inside a string;
 *                       "${NEW.any name}" reaches columns with odd names
 *   "$$"                a literal dollar sign
 * Any other '$' in a string is an error, so that "hello $name" (which would
 * silently stay literal in a looser language) is caught at CREATE time.
 * Literal JSON is kept as the exact source text and copied out verbatim.
 */
#ifndef COMET_TEMPLATE_H
#define COMET_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Containers (objects, arrays) nested deeper than this are refused, so
 * parsing never exhausts the stack.  The body's own object is level 1.
 */
#define TMPL_MAX_DEPTH 64

/*
 * Memory for a template.  alloc must return zeroed memory or not return at
 * all (the backend's palloc0 raises an error; a test harness may abort).
 * Nothing is freed piecemeal: the owner frees everything at once.
 */
typedef struct TmplAllocator
{
	void	   *(*alloc) (void *ctx, size_t size);
	void	   *ctx;
} TmplAllocator;

/* A reference to a value: "$name", "$3", "${NEW.col}". */
typedef struct TmplRef
{
	const char *name;			/* points into the source; not terminated */
	size_t		name_len;
	const char *field;			/* after the '.', or NULL */
	size_t		field_len;
	size_t		position;		/* byte offset of the '$' in the source */
	int			binding;		/* free for the caller: what the name means */
	int			binding_arg;	/* free for the caller */
} TmplRef;

typedef enum TmplNodeKind
{
	TMPL_LITERAL,				/* number, true, false, null, plain string */
	TMPL_VALUE,					/* "$ref": the value rendered as JSON */
	TMPL_STRING,				/* string with ${ref} parts and/or $$ */
	TMPL_ARRAY,
	TMPL_OBJECT
} TmplNodeKind;

/* One piece of an interpolated string: literal source text or a reference. */
typedef struct TmplPart
{
	const char *text;			/* raw (still JSON-escaped) source, or NULL */
	size_t		text_len;
	TmplRef    *ref;			/* when text is NULL */
} TmplPart;

typedef struct TmplNode TmplNode;

struct TmplNode
{
	TmplNodeKind kind;
	size_t		position;		/* byte offset of the node in the source */
	/* TMPL_LITERAL: the exact source text (strings with their quotes) */
	const char *text;
	size_t		text_len;
	/* TMPL_VALUE */
	TmplRef    *ref;
	/* TMPL_STRING */
	TmplPart   *parts;
	int			nparts;
	/* TMPL_ARRAY: items; TMPL_OBJECT: keys[i] -> items[i] */
	TmplNode  **keys;			/* keys are TMPL_LITERAL or TMPL_STRING */
	TmplNode  **items;
	int			nitems;
};

/* A parsed body: its two members and every reference, in source order. */
typedef struct TmplPacket
{
	TmplNode   *channel;
	TmplNode   *data;
	TmplRef   **refs;
	int			nrefs;
} TmplPacket;

/* Why parsing failed, and where (a byte offset into the source). */
typedef struct TmplError
{
	size_t		position;
	char		message[160];
	char		detail[200];
} TmplError;

/*
 * Parse a plcomet body.  Returns true and fills *packet, or returns false
 * and fills *error.  The packet points into src, which must outlive it.
 */
extern bool tmpl_parse_packet(const char *src, size_t len,
							  const TmplAllocator *allocator,
							  TmplPacket *packet, TmplError *error);

/*
 * Where rendered text goes, and how references become text.
 * write_value appends the referenced value as a JSON value;
 * write_text appends the value's text JSON-escaped, without quotes.
 */
typedef struct TmplSink
{
	void		(*append) (void *ctx, const char *data, size_t len);
	void		(*write_value) (void *ctx, const TmplRef *ref);
	void		(*write_text) (void *ctx, const TmplRef *ref);
	void	   *ctx;
} TmplSink;

/* Render a node as JSON text into the sink. */
extern void tmpl_render(const TmplNode *node, const TmplSink *sink);

/* True when the node is a plain string literal (no references). */
extern bool tmpl_is_plain_string(const TmplNode *node);

#endif							/* COMET_TEMPLATE_H */
