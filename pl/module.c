/*
 * module.c — the comet shared library's entry: module magic, settings and
 * the callbacks that must be in place before anything is sent.
 *
 * Settings:
 *   comet.retention  how long durable packets are kept (an interval; the
 *                    default for comet.prune).  Checked when it is set.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "comet.h"

PG_MODULE_MAGIC;

char	   *comet_retention_setting = NULL;

void		_PG_init(void);

/*
 * Parse an interval without raising errors (check hooks must not).
 * Returns false when the text is not an interval.
 */
static bool
retention_parse(const char *text, Interval *result)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nfields;
	int			dtype;
	struct pg_itm_in itm_in;

	if (text == NULL || strlen(text) >= sizeof(workbuf))
		return false;
	if (ParseDateTime(text, workbuf, sizeof(workbuf), field, ftype,
					  MAXDATEFIELDS, &nfields) != 0)
		return false;
	if (DecodeInterval(field, ftype, nfields, INTERVAL_FULL_RANGE,
					   &dtype, &itm_in) != 0)
	{
		char		isobuf[256];

		/* ISO 8601 form ("PT1H") as interval_in accepts it too */
		strlcpy(isobuf, text, sizeof(isobuf));
		if (DecodeISO8601Interval(isobuf, &dtype, &itm_in) != 0)
			return false;
	}
	if (dtype != DTK_DELTA)
		return false;
	return itmin2interval(&itm_in, result) == 0;
}

static bool
retention_check_hook(char **newval, void **extra, GucSource source)
{
	Interval	value;

	(void) extra;
	(void) source;
	if (!retention_parse(*newval, &value))
	{
		GUC_check_errdetail("\"%s\" is not an interval.", *newval);
		GUC_check_errhint("Use an interval such as '1 hour' or '30 min'.");
		return false;
	}
	if (value.month < 0 || value.day < 0 || value.time < 0)
	{
		GUC_check_errdetail("The retention period must not be negative.");
		return false;
	}
	return true;
}

void
_PG_init(void)
{
	DefineCustomStringVariable("comet.retention",
							   "How long durable packets are kept for catch-up.",
							   "comet.prune() removes packets older than this.",
							   &comet_retention_setting,
							   "1 hour",
							   PGC_USERSET,
							   0,
							   retention_check_hook,
							   NULL,
							   NULL);
	MarkGUCPrefixReserved("comet");
	comet_send_register_callbacks();
}

/*
 * comet._retention() returns interval: the comet.retention setting.
 * Loading this library is what makes the setting known, so SQL asks here.
 */
PG_FUNCTION_INFO_V1(comet_retention);
Datum
comet_retention(PG_FUNCTION_ARGS)
{
	Interval   *result = palloc(sizeof(Interval));

	if (!retention_parse(comet_retention_setting, result))
		elog(ERROR, "comet.retention holds an unparsable value");
	PG_RETURN_INTERVAL_P(result);
}
