/*
 * execute.c — running a compiled plcomet function: render its data and
 * channel templates with the call's values, and queue the packet.
 *
 * A "$ref" becomes the value as to_jsonb would render it (numbers stay
 * numbers, rows become objects, json is embedded); "${ref}" becomes the
 * value's text inside a string.  A null "${ref}" is the empty string in
 * data, and an error in a channel (a packet must not silently go to
 * "grid:" instead of "grid:7").
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/typcache.h"

#include "comet.h"

/* The values one call renders with. */
typedef struct RenderContext
{
	PlcometFunction *function;
	FunctionCallInfo fcinfo;	/* NULL for DO blocks and triggers */
	TriggerData *trigdata;		/* NULL unless called as a trigger */
	StringInfo	out;
	bool		in_channel;		/* a null ${x} is an error */
	bool		raw_text;		/* ${x} unescaped: rendering a channel name */
} RenderContext;

/* A resolved reference. */
typedef struct RefValue
{
	Datum		value;
	Oid			type;
	bool		isnull;
} RefValue;

static void
sink_append(void *ctx, const char *data, size_t len)
{
	RenderContext *render = ctx;

	appendBinaryStringInfo(render->out, data, (int) len);
}

/* Append a datum as a JSON value, as to_json renders it. */
static void
append_datum_as_json(StringInfo out, Datum value, Oid type)
{
	switch (type)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
			{
				Oid			typoutput;
				bool		typisvarlena;

				getTypeOutputInfo(type, &typoutput, &typisvarlena);
				appendStringInfoString(out, OidOutputFunctionCall(typoutput, value));
				return;
			}
		case BOOLOID:
			appendStringInfoString(out, DatumGetBool(value) ? "true" : "false");
			return;
		case TEXTOID:
		case VARCHAROID:
			escape_json(out, TextDatumGetCString(value));
			return;
		case JSONBOID:
			{
				Jsonb	   *jb = DatumGetJsonbP(value);

				(void) JsonbToCString(out, &jb->root, VARSIZE(jb));
				return;
			}
		case JSONOID:
			appendStringInfoString(out, TextDatumGetCString(value));
			return;
		default:
			{
				/* to_json(anyelement) learns the type from its call expression */
				FmgrInfo	flinfo;
				FuncExpr   *expr;
				text	   *json;

				fmgr_info(F_TO_JSON, &flinfo);
				expr = makeFuncExpr(F_TO_JSON, JSONOID,
									list_make1(makeNullConst(type, -1, InvalidOid)),
									InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
				fmgr_info_set_expr((Node *) expr, &flinfo);
				json = DatumGetTextPP(FunctionCall1(&flinfo, value));
				appendBinaryStringInfo(out, VARDATA_ANY(json), VARSIZE_ANY_EXHDR(json));
				return;
			}
	}
}

/* Find a column by name: exactly, then folded as an unquoted identifier. */
static int
find_attribute(TupleDesc tupdesc, const char *name)
{
	int			i;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);

		if (!attr->attisdropped && strcmp(NameStr(attr->attname), name) == 0)
			return i;
	}
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);

		if (!attr->attisdropped && pg_strcasecmp(NameStr(attr->attname), name) == 0)
			return i;
	}
	return -1;
}

/* The field of a row value named by ref->field. */
static RefValue
row_field(const TmplRef *ref, HeapTupleHeader row)
{
	RefValue	result = {0};
	TupleDesc	tupdesc;
	HeapTupleData tuple;
	char	   *field = pnstrdup(ref->field, ref->field_len);
	int			attno;

	tupdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(row),
									 HeapTupleHeaderGetTypMod(row));
	attno = find_attribute(tupdesc, field);
	if (attno < 0)
	{
		ReleaseTupleDesc(tupdesc);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("record \"$%.*s\" has no field \"%s\"",
						(int) ref->name_len, ref->name, field)));
	}
	tuple.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = row;
	result.type = TupleDescAttr(tupdesc, attno)->atttypid;
	result.value = heap_getattr(&tuple, attno + 1, tupdesc, &result.isnull);
	ReleaseTupleDesc(tupdesc);
	return result;
}

static RefValue
text_value(const char *text)
{
	RefValue	result = {0};

	result.type = TEXTOID;
	result.value = CStringGetTextDatum(text);
	return result;
}

/* NEW or OLD as a row value, or a null one where the trigger has none. */
static RefValue
trigger_row(const TriggerData *trigdata, bool new_row)
{
	RefValue	result = {0};
	HeapTuple	tuple = NULL;
	TriggerEvent event = trigdata->tg_event;

	result.type = RelationGetDescr(trigdata->tg_relation)->tdtypeid;
	result.isnull = true;
	if (!TRIGGER_FIRED_FOR_ROW(event))
		return result;
	if (new_row)
	{
		if (TRIGGER_FIRED_BY_INSERT(event))
			tuple = trigdata->tg_trigtuple;
		else if (TRIGGER_FIRED_BY_UPDATE(event))
			tuple = trigdata->tg_newtuple;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(event) || TRIGGER_FIRED_BY_DELETE(event))
		tuple = trigdata->tg_trigtuple;
	if (tuple == NULL)
		return result;
	result.value = heap_copy_tuple_as_datum(tuple,
											RelationGetDescr(trigdata->tg_relation));
	result.isnull = false;
	return result;
}

static RefValue
trigger_argv(const TriggerData *trigdata)
{
	RefValue	result = {0};
	int			nargs = trigdata->tg_trigger->tgnargs;
	Datum	   *elems = palloc(sizeof(Datum) * Max(nargs, 1));
	int			i;

	for (i = 0; i < nargs; i++)
		elems[i] = CStringGetTextDatum(trigdata->tg_trigger->tgargs[i]);
	result.type = TEXTARRAYOID;
	result.value = PointerGetDatum(construct_array(elems, nargs, TEXTOID,
												   -1, false, TYPALIGN_INT));
	return result;
}

static const char *
trigger_op_name(TriggerEvent event)
{
	if (TRIGGER_FIRED_BY_INSERT(event))
		return "INSERT";
	if (TRIGGER_FIRED_BY_UPDATE(event))
		return "UPDATE";
	if (TRIGGER_FIRED_BY_DELETE(event))
		return "DELETE";
	return "TRUNCATE";
}

static const char *
trigger_when_name(TriggerEvent event)
{
	if (TRIGGER_FIRED_BEFORE(event))
		return "BEFORE";
	if (TRIGGER_FIRED_AFTER(event))
		return "AFTER";
	return "INSTEAD OF";
}

static RefValue
resolve_trigger_ref(const RenderContext *render, const TmplRef *ref)
{
	const TriggerData *trigdata = render->trigdata;
	RefValue	row;

	switch ((PlcometBinding) ref->binding)
	{
		case PLCOMET_BIND_NEW:
		case PLCOMET_BIND_OLD:
			row = trigger_row(trigdata, ref->binding == PLCOMET_BIND_NEW);
			if (ref->field == NULL || row.isnull)
			{
				if (ref->field != NULL)
					row.type = UNKNOWNOID;
				return row;
			}
			return row_field(ref, DatumGetHeapTupleHeader(row.value));
		case PLCOMET_BIND_TG_OP:
			return text_value(trigger_op_name(trigdata->tg_event));
		case PLCOMET_BIND_TG_NAME:
			return text_value(trigdata->tg_trigger->tgname);
		case PLCOMET_BIND_TG_WHEN:
			return text_value(trigger_when_name(trigdata->tg_event));
		case PLCOMET_BIND_TG_LEVEL:
			return text_value(TRIGGER_FIRED_FOR_ROW(trigdata->tg_event)
							  ? "ROW" : "STATEMENT");
		case PLCOMET_BIND_TG_TABLE_NAME:
			return text_value(RelationGetRelationName(trigdata->tg_relation));
		case PLCOMET_BIND_TG_TABLE_SCHEMA:
			return text_value(get_namespace_name(
												 RelationGetNamespace(trigdata->tg_relation)));
		case PLCOMET_BIND_TG_ARGV:
			return trigger_argv(trigdata);
		case PLCOMET_BIND_ARG:
			break;
	}
	elog(ERROR, "unexpected binding %d in a trigger function", ref->binding);
	pg_unreachable();
}

static RefValue
resolve_ref(const RenderContext *render, const TmplRef *ref)
{
	RefValue	result = {0};
	int			index = ref->binding_arg;

	if (render->trigdata != NULL)
		return resolve_trigger_ref(render, ref);
	if (ref->binding != PLCOMET_BIND_ARG || render->fcinfo == NULL ||
		index < 0 || index >= render->function->nargs)
		elog(ERROR, "unbound reference in plcomet function");

	result.isnull = render->fcinfo->args[index].isnull;
	result.value = render->fcinfo->args[index].value;
	result.type = render->function->argtypes[index];
	if (ref->field != NULL)
	{
		if (result.isnull)
		{
			result.type = UNKNOWNOID;
			return result;
		}
		return row_field(ref, DatumGetHeapTupleHeader(result.value));
	}
	return result;
}

static void
sink_write_value(void *ctx, const TmplRef *ref)
{
	RenderContext *render = ctx;
	RefValue	value = resolve_ref(render, ref);

	if (value.isnull)
		appendStringInfoString(render->out, "null");
	else
		append_datum_as_json(render->out, value.value, value.type);
}

static void
sink_write_text(void *ctx, const TmplRef *ref)
{
	RenderContext *render = ctx;
	RefValue	value = resolve_ref(render, ref);
	StringInfoData escaped;
	Oid			typoutput;
	bool		typisvarlena;

	if (value.isnull)
	{
		if (render->in_channel)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("channel name refers to \"$%.*s%s%.*s\", which is null",
							(int) ref->name_len, ref->name,
							ref->field ? "." : "",
							(int) ref->field_len, ref->field ? ref->field : "")));
		return;
	}
	getTypeOutputInfo(value.type, &typoutput, &typisvarlena);
	if (render->raw_text)
	{
		appendStringInfoString(render->out,
							   OidOutputFunctionCall(typoutput, value.value));
		return;
	}
	initStringInfo(&escaped);
	escape_json(&escaped, OidOutputFunctionCall(typoutput, value.value));
	/* drop the quotes escape_json puts around the text */
	appendBinaryStringInfo(render->out, escaped.data + 1, escaped.len - 2);
	pfree(escaped.data);
}

static Jsonb *
render_to_jsonb(RenderContext *render, const TmplNode *node, bool in_channel)
{
	StringInfo	out = makeStringInfo();
	TmplSink	sink = {sink_append, sink_write_value, sink_write_text, render};
	Jsonb	   *result;

	render->out = out;
	render->in_channel = in_channel;
	tmpl_render(node, &sink);
	render->out = NULL;
	result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(out->data)));
	pfree(out->data);
	pfree(out);
	return result;
}

/* A rendered channel element as a name, or an error. */
static void
enqueue_channel_value(const JsonbValue *value, Jsonb *data)
{
	switch (value->type)
	{
		case jbvString:
			comet_send_enqueue(value->val.string.val, value->val.string.len, data);
			return;
		case jbvNumeric:
			{
				char	   *name = DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(value->val.numeric)));

				comet_send_enqueue(name, strlen(name), data);
				return;
			}
		case jbvNull:
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("channel is null")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("channel must be a string or an array of strings")));
	}
}

/*
 * A channel like "grid:${grid}" whose literal parts hold no JSON escapes:
 * the rendered text between the quotes is the name itself.
 */
static void
enqueue_plain_template_channel(RenderContext *render, Jsonb *data)
{
	StringInfo	out = makeStringInfo();
	TmplSink	sink = {sink_append, sink_write_value, sink_write_text, render};

	render->out = out;
	render->in_channel = true;
	render->raw_text = true;
	tmpl_render(render->function->packet.channel, &sink);
	render->raw_text = false;
	render->out = NULL;
	/* drop the quotes the renderer put around the string */
	comet_send_enqueue(out->data + 1, out->len - 2, data);
	pfree(out->data);
	pfree(out);
}

/* Render the channel member and queue the packet on each channel. */
static void
enqueue_rendered_channels(RenderContext *render, Jsonb *data)
{
	Jsonb	   *channels = render_to_jsonb(render, render->function->packet.channel,
										   true);
	JsonbValue	value;
	JsonbIterator *it;
	JsonbIteratorToken token;

	if (JsonbExtractScalar(&channels->root, &value))
	{
		enqueue_channel_value(&value, data);
		return;
	}
	if (!JB_ROOT_IS_ARRAY(channels))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("channel must be a string or an array of strings")));
	it = JsonbIteratorInit(&channels->root);
	while ((token = JsonbIteratorNext(&it, &value, true)) != WJB_DONE)
	{
		if (token == WJB_ELEM)
			enqueue_channel_value(&value, data);
	}
}

/*
 * Render the function's packet for this call and queue it on its channels.
 * Returns the data as sent.  Allocates in the current memory context.
 */
Jsonb *
plcomet_execute(PlcometFunction *function, FunctionCallInfo fcinfo,
				TriggerData *trigdata)
{
	RenderContext render = {0};
	Jsonb	   *data;
	int			i;

	comet_send_check_privilege();

	render.function = function;
	render.fcinfo = fcinfo;
	render.trigdata = trigdata;
	data = render_to_jsonb(&render, function->packet.data, false);

	if (function->channels_are_literal)
	{
		for (i = 0; i < function->nliteral_channels; i++)
			comet_send_enqueue(function->literal_channels[i],
							   strlen(function->literal_channels[i]), data);
	}
	else if (function->channel_is_plain_template)
		enqueue_plain_template_channel(&render, data);
	else
		enqueue_rendered_channels(&render, data);
	return data;
}
