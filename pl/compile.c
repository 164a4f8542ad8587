/*
 * compile.c — turning a plcomet function into a PlcometFunction, and the
 * backend-lifetime cache of compiled functions.
 *
 * Compiling checks the signature (return type, argument types), parses the
 * body with template.c and binds every reference to an argument or a
 * trigger variable.  Errors point into the body: in CREATE FUNCTION and DO
 * the position is carried over to the command's text.
 *
 * The cache is keyed by function oid.  An entry is used only while the
 * pg_proc row it came from is still the current one (same xmin and tid), so
 * CREATE OR REPLACE in any session takes effect at the next call everywhere.
 * Each compiled function owns one memory context, freed when it is replaced.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "comet.h"

typedef struct CompileCacheEntry
{
	Oid			fn_oid;
	PlcometFunction *function;
} CompileCacheEntry;

static HTAB *compile_cache = NULL;

/* What is being compiled, for binding references and reporting errors. */
typedef struct CompileState
{
	PlcometFunction *function;
	char	  **argnames;		/* NULL entries for unnamed arguments */
	bool		is_inline;
	bool		for_validator;
} CompileState;

static void *
compile_alloc(void *ctx, size_t size)
{
	return MemoryContextAllocZero((MemoryContext) ctx, size);
}

/* errposition() for a byte offset into the body: 1-based characters. */
static int
body_errposition(const PlcometFunction *function, size_t byte_offset)
{
	return errposition(pg_mbstrlen_with_len(function->source,
											(int) byte_offset) + 1);
}

/*
 * Error context while compiling: move the position into the text of the
 * CREATE FUNCTION or DO command when that is what is running.
 */
static void
compile_error_callback(void *arg)
{
	CompileState *state = arg;
	int			position;

	if (state->for_validator || state->is_inline)
	{
		if (function_parse_error_transpose(state->function->source))
			return;
	}
	else if ((position = geterrposition()) > 0)
	{
		/* compiled at a call: the position is in the body, not the query */
		errposition(0);
		internalerrposition(position);
		internalerrquery(state->function->source);
	}
	if (state->is_inline)
		errcontext("plcomet DO block");
	else
		errcontext("compilation of plcomet function %s",
				   state->function->signature);
}

static PlcometReturn
compile_return_kind(Oid rettype, bool retset)
{
	if (retset)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("plcomet functions cannot return sets")));
	switch (rettype)
	{
		case VOIDOID:
			return PLCOMET_RETURNS_VOID;
		case JSONBOID:
			return PLCOMET_RETURNS_JSONB;
		case TRIGGEROID:
			return PLCOMET_RETURNS_TRIGGER;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("plcomet functions cannot return type %s",
							format_type_be(rettype)),
					 errhint("A plcomet function returns void, jsonb (the data it sent) or trigger.")));
	}
	pg_unreachable();
}

static void
compile_check_argtype(Oid argtype)
{
	if (argtype == RECORDOID)
		return;
	if (get_typtype(argtype) == TYPTYPE_PSEUDO)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("plcomet functions cannot accept type %s",
						format_type_be(argtype))));
}

/*
 * Check what can be checked without the body: return type, argument types
 * and argument modes.  The validator does this even when
 * check_function_bodies is off.
 */
void
plcomet_validate_signature(Oid fn_oid)
{
	HeapTuple	tuple;
	Form_pg_proc proc;
	Oid		   *argtypes;
	char	  **argnames;
	char	   *argmodes;
	int			nargs;
	int			i;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for function %u", fn_oid);
	proc = (Form_pg_proc) GETSTRUCT(tuple);

	(void) compile_return_kind(proc->prorettype, proc->proretset);
	nargs = get_func_arg_info(tuple, &argtypes, &argnames, &argmodes);
	for (i = 0; i < nargs; i++)
	{
		if (argmodes != NULL &&
			(argmodes[i] == PROARGMODE_OUT || argmodes[i] == PROARGMODE_TABLE))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("plcomet functions cannot have output parameters")));
		compile_check_argtype(argtypes[i]);
	}
	if (proc->prorettype == TRIGGEROID && proc->pronargs != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("trigger functions cannot have declared arguments"),
				 errhint("The trigger's arguments are available as $TG_ARGV.")));
	ReleaseSysCache(tuple);
}

/* A reference's name as a C string, for messages and comparisons. */
static char *
ref_name(const TmplRef *ref)
{
	return pnstrdup(ref->name, ref->name_len);
}

static const struct
{
	const char *name;
	PlcometBinding binding;
}			trigger_variables[] =
{
	{"NEW", PLCOMET_BIND_NEW},
	{"OLD", PLCOMET_BIND_OLD},
	{"TG_OP", PLCOMET_BIND_TG_OP},
	{"TG_NAME", PLCOMET_BIND_TG_NAME},
	{"TG_WHEN", PLCOMET_BIND_TG_WHEN},
	{"TG_LEVEL", PLCOMET_BIND_TG_LEVEL},
	{"TG_TABLE_NAME", PLCOMET_BIND_TG_TABLE_NAME},
	{"TG_TABLE_SCHEMA", PLCOMET_BIND_TG_TABLE_SCHEMA},
	{"TG_ARGV", PLCOMET_BIND_TG_ARGV},
};

static void
bind_trigger_ref(CompileState *state, TmplRef *ref)
{
	char	   *name = ref_name(ref);
	size_t		i;

	for (i = 0; i < lengthof(trigger_variables); i++)
	{
		if (pg_strcasecmp(name, trigger_variables[i].name) != 0)
			continue;
		ref->binding = trigger_variables[i].binding;
		if (ref->field != NULL && ref->binding != PLCOMET_BIND_NEW &&
			ref->binding != PLCOMET_BIND_OLD)
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("$%s has no fields", trigger_variables[i].name),
					 errhint("Only $NEW and $OLD have fields, as in $NEW.id."),
					 body_errposition(state->function, ref->position)));
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_PARAMETER),
			 errmsg("unknown trigger variable \"$%s\"", name),
			 errhint("Trigger functions can use $NEW, $OLD, $NEW.column, $OLD.column, $TG_OP, $TG_NAME, $TG_WHEN, $TG_LEVEL, $TG_TABLE_NAME, $TG_TABLE_SCHEMA and $TG_ARGV."),
			 body_errposition(state->function, ref->position)));
}

static int
find_argument(CompileState *state, const char *name)
{
	int			i;

	if (state->argnames == NULL)
		return -1;
	for (i = 0; i < state->function->nargs; i++)
		if (state->argnames[i] != NULL && strcmp(state->argnames[i], name) == 0)
			return i;
	/* unquoted identifiers are folded to lower case by the SQL parser */
	for (i = 0; i < state->function->nargs; i++)
		if (state->argnames[i] != NULL && pg_strcasecmp(state->argnames[i], name) == 0)
			return i;
	return -1;
}

static void
bind_argument_ref(CompileState *state, TmplRef *ref)
{
	char	   *name = ref_name(ref);
	int			index;

	if (isdigit((unsigned char) name[0]))
	{
		long		number = strtol(name, NULL, 10);

		if (ref->name_len > 6 || number < 1 || number > state->function->nargs)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_PARAMETER),
					 errmsg("there is no parameter $%s", name),
					 state->is_inline
					 ? errhint("DO blocks have no parameters.")
					 : errhint("The function has %d parameter%s.",
							   state->function->nargs,
							   state->function->nargs == 1 ? "" : "s"),
					 body_errposition(state->function, ref->position)));
		index = (int) number - 1;
	}
	else
	{
		index = find_argument(state, name);
		if (index < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_PARAMETER),
					 errmsg("unknown parameter \"$%s\"", name),
					 state->is_inline
					 ? errhint("DO blocks have no parameters.")
					 : errhint("A reference names one of the function's parameters, or gives its number as $1."),
					 body_errposition(state->function, ref->position)));
	}
	if (ref->field != NULL)
	{
		Oid			argtype = state->function->argtypes[index];

		if (argtype != RECORDOID && !type_is_rowtype(argtype))
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("parameter \"$%s\" has no fields", name),
					 errdetail("Its type %s is not a composite type.",
							   format_type_be(argtype)),
					 body_errposition(state->function, ref->position)));
	}
	ref->binding = PLCOMET_BIND_ARG;
	ref->binding_arg = index;
}

/* Decode a JSON string literal (with its quotes) into server-encoded text. */
static char *
decode_string_literal(const TmplNode *node)
{
	char	   *json = pnstrdup(node->text, node->text_len);
	Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														CStringGetDatum(json)));
	JsonbValue	value;

	if (!JsonbExtractScalar(&jb->root, &value) || value.type != jbvString)
		elog(ERROR, "string literal did not decode to a string");
	return pnstrdup(value.val.string.val, value.val.string.len);
}

/*
 * A channel given literally: its decoded name once checked, or NULL when the
 * node is not a literal (it is then rendered and checked at each call).
 */
static char *
check_literal_channel(CompileState *state, const TmplNode *node)
{
	char	   *name;
	const char *problem;

	if (node->kind == TMPL_ARRAY || node->kind == TMPL_OBJECT ||
		(node->kind == TMPL_LITERAL && !tmpl_is_plain_string(node)))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("channel must be a string or an array of strings"),
				 body_errposition(state->function, node->position)));
	if (node->kind != TMPL_LITERAL)
		return NULL;
	name = decode_string_literal(node);
	problem = comet_channel_problem(name, strlen(name));
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid channel name \"%s\"", name),
				 errdetail("The %s.", problem),
				 errhint("A channel name is 1 to 63 bytes without control characters."),
				 body_errposition(state->function, node->position)));
	return name;
}

/*
 * Check the channel member: literal names must be valid, and a fully
 * literal channel (a string, or an array of strings) is decoded once here.
 */
static void
compile_channels(CompileState *state)
{
	PlcometFunction *function = state->function;
	const TmplNode *channel = function->packet.channel;
	const TmplNode *const *items = &channel;
	int			nitems = 1;
	char	  **names;
	bool		all_literal = true;
	int			i;

	if (channel->kind == TMPL_ARRAY)
	{
		items = (const TmplNode *const *) channel->items;
		nitems = channel->nitems;
	}
	names = palloc0(sizeof(char *) * Max(nitems, 1));
	for (i = 0; i < nitems; i++)
	{
		names[i] = check_literal_channel(state, items[i]);
		if (names[i] == NULL)
			all_literal = false;
	}
	if (all_literal)
	{
		function->literal_channels = names;
		function->nliteral_channels = nitems;
		function->channels_are_literal = true;
	}
	else if (channel->kind == TMPL_STRING)
	{
		function->channel_is_plain_template = true;
		for (i = 0; i < channel->nparts; i++)
			if (channel->parts[i].text != NULL &&
				memchr(channel->parts[i].text, '\\', channel->parts[i].text_len))
				function->channel_is_plain_template = false;
	}
}

/* Parse the body and bind its references; errors point into the body. */
static void
compile_body(CompileState *state)
{
	PlcometFunction *function = state->function;
	TmplAllocator allocator = {compile_alloc, CurrentMemoryContext};
	TmplError	error;
	ErrorContextCallback errcallback;
	int			i;

	errcallback.callback = compile_error_callback;
	errcallback.arg = state;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	if (!tmpl_parse_packet(function->source, strlen(function->source),
						   &allocator, &function->packet, &error))
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s", error.message),
				 error.detail[0] ? errhint("%s", error.detail) : 0,
				 body_errposition(function, error.position)));

	for (i = 0; i < function->packet.nrefs; i++)
	{
		if (function->returns == PLCOMET_RETURNS_TRIGGER)
			bind_trigger_ref(state, function->packet.refs[i]);
		else
			bind_argument_ref(state, function->packet.refs[i]);
	}
	compile_channels(state);

	error_context_stack = errcallback.previous;
}

static PlcometFunction *
compile_new(HeapTuple tuple, Oid fn_oid, bool for_validator)
{
	Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(tuple);
	MemoryContext mcxt;
	MemoryContext oldcxt;
	PlcometFunction *function;
	CompileState state = {0};
	char	   *argmodes;
	Datum		prosrc;
	bool		isnull;

	/*
	 * Build under the caller's context, so that an error frees everything;
	 * only a finished function moves under CacheMemoryContext.
	 */
	mcxt = AllocSetContextCreate(CurrentMemoryContext, "plcomet function",
								 ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(mcxt);

	function = palloc0(sizeof(PlcometFunction));
	function->fn_oid = fn_oid;
	function->fn_xmin = HeapTupleHeaderGetRawXmin(tuple->t_data);
	function->fn_tid = tuple->t_self;
	function->mcxt = mcxt;
	function->signature = format_procedure(fn_oid);
	MemoryContextSetIdentifier(mcxt, function->signature);
	prosrc = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_prosrc, &isnull);
	if (isnull)
		elog(ERROR, "null prosrc for function %u", fn_oid);
	function->source = TextDatumGetCString(prosrc);
	function->returns = compile_return_kind(proc->prorettype, proc->proretset);
	function->nargs = get_func_arg_info(tuple, &function->argtypes,
										&state.argnames, &argmodes);

	state.function = function;
	state.for_validator = for_validator;
	compile_body(&state);

	MemoryContextSwitchTo(oldcxt);
	return function;
}

/*
 * The compiled form of a plcomet function, from the cache when the pg_proc
 * row is unchanged.  for_validator: report errors as CREATE FUNCTION would.
 */
PlcometFunction *
plcomet_compile(Oid fn_oid, bool for_validator)
{
	HeapTuple	tuple;
	CompileCacheEntry *entry;
	bool		found;
	PlcometFunction *function;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for function %u", fn_oid);

	if (compile_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CompileCacheEntry);
		ctl.hcxt = CacheMemoryContext;
		compile_cache = hash_create("plcomet functions", 64, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	entry = hash_search(compile_cache, &fn_oid, HASH_FIND, NULL);
	if (entry != NULL &&
		entry->function->fn_xmin == HeapTupleHeaderGetRawXmin(tuple->t_data) &&
		ItemPointerEquals(&entry->function->fn_tid, &tuple->t_self))
	{
		ReleaseSysCache(tuple);
		return entry->function;
	}

	function = compile_new(tuple, fn_oid, for_validator);
	ReleaseSysCache(tuple);

	MemoryContextSetParent(function->mcxt, CacheMemoryContext);
	entry = hash_search(compile_cache, &fn_oid, HASH_ENTER, &found);
	/*
	 * A call of the old version may still be running (a value's cast to
	 * json can run SQL that replaces the function): then its memory stays
	 * until the backend exits, as PL/pgSQL does.
	 */
	if (found && entry->function->use_count == 0)
		MemoryContextDelete(entry->function->mcxt);
	entry->function = function;
	return function;
}

/*
 * Compile the body of a DO block.  The result lives in the current memory
 * context and is not cached.
 */
PlcometFunction *
plcomet_compile_inline(const char *source)
{
	PlcometFunction *function = palloc0(sizeof(PlcometFunction));
	CompileState state = {0};

	function->fn_oid = InvalidOid;
	function->mcxt = CurrentMemoryContext;
	function->signature = "DO block";
	function->source = pstrdup(source);
	function->returns = PLCOMET_RETURNS_VOID;
	function->nargs = 0;

	state.function = function;
	state.is_inline = true;
	state.for_validator = true;
	compile_body(&state);
	return function;
}
