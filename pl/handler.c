/*
 * handler.c — plcomet's three entry points: the call handler, the validator
 * and the inline (DO) handler.  They only sort out how they were called;
 * compile.c and execute.c do the work.
 */
#include "postgres.h"

#include "catalog/pg_proc.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "comet.h"

static void
call_error_callback(void *arg)
{
	const PlcometFunction *function = arg;

	errcontext("plcomet function %s", function->signature);
}

/* What a trigger function hands back: the row for BEFORE/INSTEAD OF rows. */
static Datum
trigger_result(const TriggerData *trigdata)
{
	TriggerEvent event = trigdata->tg_event;

	if (!TRIGGER_FIRED_FOR_ROW(event) || TRIGGER_FIRED_AFTER(event))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_UPDATE(event))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}

/*
 * Run the function, counting the call as a use so that a recompilation
 * while it runs does not free it underneath us.
 */
static Jsonb *
execute_counted(PlcometFunction *function, FunctionCallInfo fcinfo,
				TriggerData *trigdata)
{
	Jsonb	   *volatile data = NULL;

	function->use_count++;
	PG_TRY();
	{
		data = plcomet_execute(function, fcinfo, trigdata);
	}
	PG_FINALLY();
	{
		function->use_count--;
	}
	PG_END_TRY();
	return data;
}

PG_FUNCTION_INFO_V1(plcomet_call_handler);
Datum
plcomet_call_handler(PG_FUNCTION_ARGS)
{
	PlcometFunction *function;
	ErrorContextCallback errcallback;
	MemoryContext call_cxt;
	MemoryContext caller_cxt = CurrentMemoryContext;
	TriggerData *trigdata = NULL;
	Jsonb	   *data;
	PlcometReturn returns;
	Datum		result;

	if (CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("plcomet functions cannot be event triggers")));

	function = plcomet_compile(fcinfo->flinfo->fn_oid, false);

	if (CALLED_AS_TRIGGER(fcinfo))
		trigdata = (TriggerData *) fcinfo->context;
	else if (function->returns == PLCOMET_RETURNS_TRIGGER)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("trigger functions can only be called as triggers")));

	errcallback.callback = call_error_callback;
	errcallback.arg = function;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	/* everything a call allocates goes when it returns */
	call_cxt = AllocSetContextCreate(caller_cxt, "plcomet call",
									 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(call_cxt);
	returns = function->returns;
	data = execute_counted(function, fcinfo, trigdata);
	MemoryContextSwitchTo(caller_cxt);

	if (trigdata != NULL)
		result = trigger_result(trigdata);
	else if (returns == PLCOMET_RETURNS_JSONB)
	{
		Jsonb	   *copy = palloc(VARSIZE(data));

		memcpy(copy, data, VARSIZE(data));
		result = JsonbPGetDatum(copy);
	}
	else
		result = (Datum) 0;
	MemoryContextDelete(call_cxt);

	error_context_stack = errcallback.previous;
	return result;
}

PG_FUNCTION_INFO_V1(plcomet_validator);
Datum
plcomet_validator(PG_FUNCTION_ARGS)
{
	Oid			fn_oid = PG_GETARG_OID(0);

	if (!CheckFunctionValidatorAccess(fcinfo->flinfo->fn_oid, fn_oid))
		PG_RETURN_VOID();

	plcomet_validate_signature(fn_oid);
	if (check_function_bodies)
		(void) plcomet_compile(fn_oid, true);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(plcomet_inline_handler);
Datum
plcomet_inline_handler(PG_FUNCTION_ARGS)
{
	InlineCodeBlock *codeblock = castNode(InlineCodeBlock,
										  DatumGetPointer(PG_GETARG_DATUM(0)));
	MemoryContext call_cxt;
	MemoryContext caller_cxt = CurrentMemoryContext;
	PlcometFunction *function;
	ErrorContextCallback errcallback;

	call_cxt = AllocSetContextCreate(caller_cxt, "plcomet DO block",
									 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(call_cxt);
	function = plcomet_compile_inline(codeblock->source_text);

	errcallback.callback = call_error_callback;
	errcallback.arg = function;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	(void) plcomet_execute(function, NULL, NULL);
	error_context_stack = errcallback.previous;

	MemoryContextSwitchTo(caller_cxt);
	MemoryContextDelete(call_cxt);
	PG_RETURN_VOID();
}
