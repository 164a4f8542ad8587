/*
 * channel.c — the rules for channel names, in one place.
 *
 * A channel is also the NOTIFY channel the bridge LISTENs on, so its name is
 * 1 to 63 bytes.  Control characters are refused too: names end up in logs,
 * URLs and HTTP responses, where they would only cause harm.
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "comet.h"

/* NULL when the name is valid, else what is wrong with it. */
const char *
comet_channel_problem(const char *name, size_t len)
{
	size_t		i;

	if (len == 0)
		return "channel name is empty";
	if (len > COMET_CHANNEL_MAX_BYTES)
		return "channel name is longer than 63 bytes";
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) name[i];

		if (c < 0x20 || c == 0x7f)
			return "channel name contains a control character";
	}
	return NULL;
}

/* Raise invalid_parameter_value unless the name is valid. */
void
comet_channel_check(const char *name, size_t len)
{
	const char *problem = comet_channel_problem(name, len);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid channel name \"%s\"",
						pnstrdup(name, pg_mbcliplen(name, (int) len, 80))),
				 errdetail("The %s.", problem),
				 errhint("A channel name is 1 to 63 bytes without control characters.")));
}

/* comet._check_channel(channel text) returns void: raise if invalid. */
PG_FUNCTION_INFO_V1(comet_check_channel);
Datum
comet_check_channel(PG_FUNCTION_ARGS)
{
	text	   *channel;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("channel must not be null")));
	channel = PG_GETARG_TEXT_PP(0);
	comet_channel_check(VARDATA_ANY(channel), VARSIZE_ANY_EXHDR(channel));
	PG_RETURN_VOID();
}
