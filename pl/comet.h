/*
 * comet.h — what the C files of the comet extension share.
 *
 * One shared library holds the durable send path (send.c), channel name
 * rules (channel.c), settings (module.c), access tokens (token.c) and the
 * plcomet language (handler.c, compile.c, execute.c, template.c).
 */
#ifndef COMET_H
#define COMET_H

#include "postgres.h"

#include "fmgr.h"
#include "storage/itemptr.h"
#include "utils/jsonb.h"

#include "template.h"

/* Channel names are NOTIFY channel names: 1 to NAMEDATALEN - 1 bytes. */
#define COMET_CHANNEL_MAX_BYTES (NAMEDATALEN - 1)

/*
 * NOTIFY payloads must stay under 8000 bytes.  A packet whose wake-up would
 * be longer is announced without its data, and listeners fetch it with
 * comet.replay.
 */
#define COMET_NOTIFY_PAYLOAD_MAX 7999

/* Every durable wake-up starts with this; plain NOTIFY payloads must not. */
#define COMET_NOTIFY_PREFIX "comet/1 "

/* module.c */
extern char *comet_retention_setting;

/* channel.c */
extern const char *comet_channel_problem(const char *name, size_t len);
extern void comet_channel_check(const char *name, size_t len);

/* send.c */
extern void comet_send_enqueue(const char *channel, size_t channel_len,
							   Jsonb *data);
extern void comet_send_check_privilege(void);
extern void comet_send_register_callbacks(void);

/* compile.c: a plcomet function ready to run */
typedef enum PlcometReturn
{
	PLCOMET_RETURNS_VOID,
	PLCOMET_RETURNS_JSONB,
	PLCOMET_RETURNS_TRIGGER
} PlcometReturn;

/* What a template reference is bound to (TmplRef.binding). */
typedef enum PlcometBinding
{
	PLCOMET_BIND_ARG,			/* binding_arg = argument index, 0-based */
	PLCOMET_BIND_NEW,			/* NEW, or NEW.field */
	PLCOMET_BIND_OLD,
	PLCOMET_BIND_TG_OP,
	PLCOMET_BIND_TG_NAME,
	PLCOMET_BIND_TG_WHEN,
	PLCOMET_BIND_TG_LEVEL,
	PLCOMET_BIND_TG_TABLE_NAME,
	PLCOMET_BIND_TG_TABLE_SCHEMA,
	PLCOMET_BIND_TG_ARGV
} PlcometBinding;

typedef struct PlcometFunction
{
	Oid			fn_oid;			/* InvalidOid for a DO block */
	TransactionId fn_xmin;		/* pg_proc row this was compiled from */
	ItemPointerData fn_tid;
	MemoryContext mcxt;			/* owns this struct and all below */
	int			use_count;		/* calls running now: not freed while > 0 */
	char	   *signature;		/* "move(integer,text)", for messages */
	char	   *source;			/* the body; the template points into it */
	PlcometReturn returns;
	int			nargs;
	Oid		   *argtypes;
	TmplPacket	packet;
	/* channels given as literal strings: checked once, kept decoded */
	bool		channels_are_literal;
	char	  **literal_channels;
	int			nliteral_channels;
	/* channel is one "...${x}..." string whose literal text has no escapes:
	 * rendered straight to a name, without a JSON round trip */
	bool		channel_is_plain_template;
} PlcometFunction;

extern void plcomet_validate_signature(Oid fn_oid);
extern PlcometFunction *plcomet_compile(Oid fn_oid, bool for_validator);
extern PlcometFunction *plcomet_compile_inline(const char *source);

/* execute.c */
struct TriggerData;
extern Jsonb *plcomet_execute(PlcometFunction *function,
							  FunctionCallInfo fcinfo,
							  struct TriggerData *trigdata);

#endif							/* COMET_H */
