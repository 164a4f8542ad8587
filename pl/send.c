/*
 * send.c — comet.send and the durable send path.
 *
 * 1. comet.send (and every plcomet function) only queues the packet in
 *    memory, in the sending (sub)transaction.  Nothing is written and no
 *    lock is taken, so concurrent senders never wait for each other while
 *    their transactions run.  A rolled-back savepoint drops its packets.
 *
 * 2. At PRE_COMMIT (after all deferred triggers, so packets they send are
 *    included) the queue is sealed: for each channel, in a fixed order (its
 *    lock stripe, a hash of the name modulo 1024, then the name), we take a
 *    transaction-level advisory lock on the stripe, read the channel's last
 *    seq as committed right now (SnapshotSelf), and number the channel's
 *    packets after it.  The commit is forced to be synchronous, so that a
 *    seq listeners have seen can never be lost in a crash and reused.  The lock is held
 *    until the commit is visible, so a transaction that seals the same
 *    channel later waits, sees our rows and numbers after them: seqs follow
 *    commit order, have no gaps, and the fixed lock order means senders to
 *    several channels never deadlock.  Reading the latest committed state (not
 *    the transaction's snapshot) and only inserting rows (never updating a
 *    counter) keeps REPEATABLE READ and SERIALIZABLE senders working too.
 *
 * 3. Each packet is inserted into comet.packets and announced with NOTIFY on
 *    its channel: "comet/1 <seq> <json>", or "comet/1 <seq>" when that would
 *    not fit NOTIFY's 8000-byte limit (listeners then read the packet with
 *    comet.replay).  The seq makes every payload distinct, so NOTIFY's
 *    duplicate folding never swallows a packet, and the prefix tells these
 *    apart from plain NOTIFYs on the same channel.
 *
 * The last seq of a channel is the largest seq in comet.packets, or, when
 * comet.prune has removed them all, comet.channels.pruned_upto.
 *
 * The writes run as the owner of comet.packets (as SECURITY DEFINER
 * functions do), so callers need EXECUTE on comet.send and nothing else.
 *
 * The state below lives for one transaction at most; the insert plan lives
 * for the backend and is revalidated by the plan cache after any DDL.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/inval.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "comet.h"

/* field4 of comet's advisory lock tags, so they never meet user locks */
#define COMET_LOCK_CLASS 0x434D

/*
 * Channels are locked through this many stripes (the channel's hash modulo
 * the count), so that a transaction sending to thousands of channels takes
 * at most this many locks and cannot exhaust the shared lock table.  Two
 * channels in one stripe only share the short commit-time lock.
 */
#define COMET_LOCK_STRIPES 1024

/* Above this binary size the text form cannot fit a NOTIFY payload. */
#define COMET_INLINE_PROBE_MAX (64 * 1024)

typedef struct PendingPacket
{
	char		channel[NAMEDATALEN];
	uint32		lock_stripe;	/* which lock guards this channel */
	SubTransactionId subid;		/* subtransaction that sent it */
	Jsonb	   *data;			/* in that subtransaction's context */
	int64		seq;			/* assigned when sealed */
} PendingPacket;

typedef struct SendState
{
	PendingPacket *packets;		/* in TopTransactionContext, send order */
	int			count;
	int			capacity;
	bool		sealed;			/* sealing has begun: no more sends */
	SPIPlanPtr	insert_plan;	/* backend lifetime */
	Oid			send_oid;		/* comet.send, until pg_proc changes */
} SendState;

static SendState send_state;

/*
 * Queue a packet for commit.  The channel is checked here, so that a bad
 * name fails the statement that sent it, not the commit.
 */
void
comet_send_enqueue(const char *channel, size_t channel_len, Jsonb *data)
{
	PendingPacket *packet;

	comet_channel_check(channel, channel_len);
	if (send_state.sealed)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot send a comet packet while packets are being committed")));
	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot send a comet packet during a parallel operation")));
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot send a durable comet packet in a read-only transaction"),
				 errhint("Plain NOTIFY works in read-only transactions, without a seq.")));

	if (send_state.count == send_state.capacity)
	{
		int			capacity = send_state.capacity ? send_state.capacity * 2 : 16;

		if (send_state.packets == NULL)
			send_state.packets = MemoryContextAlloc(TopTransactionContext,
													sizeof(PendingPacket) * capacity);
		else
			send_state.packets = repalloc_huge(send_state.packets,
											   sizeof(PendingPacket) * capacity);
		send_state.capacity = capacity;
	}
	packet = &send_state.packets[send_state.count];
	memcpy(packet->channel, channel, channel_len);
	packet->channel[channel_len] = '\0';
	packet->lock_stripe = hash_bytes((const unsigned char *) channel,
									 (int) channel_len) % COMET_LOCK_STRIPES;
	packet->subid = GetCurrentSubTransactionId();
	packet->data = MemoryContextAlloc(CurTransactionContext, VARSIZE(data));
	memcpy(packet->data, data, VARSIZE(data));
	packet->seq = 0;
	send_state.count++;
}

/* Forget the cached oid of comet.send whenever pg_proc changes. */
static void
send_oid_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	(void) arg;
	(void) cacheid;
	(void) hashvalue;
	send_state.send_oid = InvalidOid;
}

/*
 * Raise insufficient_privilege unless the current user may execute
 * comet.send: plcomet functions send only what their caller could.
 */
void
comet_send_check_privilege(void)
{
	if (!OidIsValid(send_state.send_oid))
	{
		Oid			argtypes[2] = {TEXTOID, JSONBOID};
		List	   *name = stringToQualifiedNameList("comet.send");

		send_state.send_oid = LookupFuncName(name, 2, argtypes, false);
	}
	if (pg_proc_aclcheck(send_state.send_oid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function comet.send"),
				 errdetail("A plcomet function sends with its caller's privileges, and role \"%s\" may not execute comet.send(text, jsonb).",
						   GetUserNameFromId(GetUserId(), false))));
}

/* comet.send(channel text, data jsonb) returns void */
PG_FUNCTION_INFO_V1(comet_send);
Datum
comet_send(PG_FUNCTION_ARGS)
{
	text	   *channel;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("channel must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("data must not be null"),
				 errhint("Send 'null'::jsonb for a JSON null.")));
	channel = PG_GETARG_TEXT_PP(0);
	comet_send_enqueue(VARDATA_ANY(channel), VARSIZE_ANY_EXHDR(channel),
					   PG_GETARG_JSONB_P(1));
	PG_RETURN_VOID();
}

/* Order for sealing: lock stripe, then name, then send order. */
static int
seal_order_cmp(const void *a, const void *b, void *arg)
{
	const PendingPacket *packets = arg;
	const PendingPacket *pa = &packets[*(const int *) a];
	const PendingPacket *pb = &packets[*(const int *) b];
	int			cmp;

	if (pa->lock_stripe != pb->lock_stripe)
		return pa->lock_stripe < pb->lock_stripe ? -1 : 1;
	cmp = strcmp(pa->channel, pb->channel);
	if (cmp != 0)
		return cmp;
	return *(const int *) a - *(const int *) b;
}

/* The tables sealing reads and writes, opened once per seal. */
typedef struct SealRelations
{
	Relation	packets;
	Relation	packets_pkey;
	AttrNumber	packets_channel;
	AttrNumber	packets_seq;
	Relation	channels;
	Relation	channels_pkey;
	AttrNumber	channels_channel;
	AttrNumber	channels_pruned_upto;
} SealRelations;

static Relation
seal_open_table(Oid namespace_oid, const char *name, LOCKMODE mode)
{
	Oid			relid = get_relname_relid(name, namespace_oid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table comet.%s does not exist", name),
				 errhint("Is the comet extension installed in this database?")));
	return table_open(relid, mode);
}

static Relation
seal_open_pkey(Relation table)
{
	Oid			index_oid = RelationGetPrimaryKeyIndex(table);

	if (!OidIsValid(index_oid))
		elog(ERROR, "table \"%s\" has no primary key", RelationGetRelationName(table));
	return index_open(index_oid, AccessShareLock);
}

static void
seal_open(SealRelations *rels)
{
	Oid			namespace_oid = get_namespace_oid("comet", false);

	rels->packets = seal_open_table(namespace_oid, "packets", RowExclusiveLock);
	rels->packets_pkey = seal_open_pkey(rels->packets);
	rels->packets_channel = get_attnum(RelationGetRelid(rels->packets), "channel");
	rels->packets_seq = get_attnum(RelationGetRelid(rels->packets), "seq");
	rels->channels = seal_open_table(namespace_oid, "channels", AccessShareLock);
	rels->channels_pkey = seal_open_pkey(rels->channels);
	rels->channels_channel = get_attnum(RelationGetRelid(rels->channels), "channel");
	rels->channels_pruned_upto = get_attnum(RelationGetRelid(rels->channels),
											"pruned_upto");
	if (rels->packets_channel == InvalidAttrNumber ||
		rels->packets_seq == InvalidAttrNumber ||
		rels->channels_channel == InvalidAttrNumber ||
		rels->channels_pruned_upto == InvalidAttrNumber)
		elog(ERROR, "comet's tables lack their channel or seq columns");
}

static void
seal_close(SealRelations *rels)
{
	index_close(rels->channels_pkey, AccessShareLock);
	table_close(rels->channels, NoLock);
	index_close(rels->packets_pkey, AccessShareLock);
	table_close(rels->packets, NoLock);
}

static void
seal_prepare_plans(void)
{
	if (send_state.insert_plan == NULL)
	{
		Oid			types[4] = {TEXTOID, INT8OID, JSONBOID, TIMESTAMPTZOID};
		SPIPlanPtr	plan = SPI_prepare(
									   "INSERT INTO comet.packets (channel, seq, data, sent_at)"
									   " VALUES ($1, $2, $3, $4)",
									   4, types);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		send_state.insert_plan = plan;
	}
}

/*
 * Read a bigint column of the first (or last) row for a channel, by an
 * index scan with SnapshotSelf: rows committed as of now, so we see every
 * transaction that sealed this channel before we locked it, whatever our
 * isolation level.  SnapshotSelf is not an MVCC snapshot, so this read
 * takes no SSI predicate locks and cannot make a SERIALIZABLE sender fail.
 */
static bool
seal_scan_channel(Relation table, Relation index, AttrNumber channel_attnum,
				  const char *channel, bool last, AttrNumber attnum,
				  int64 *value)
{
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	/* a heap column number: the scan maps it to the index's column */
	ScanKeyInit(&key, channel_attnum, BTEqualStrategyNumber, F_TEXTEQ,
				CStringGetTextDatum(channel));
	scan = systable_beginscan_ordered(table, index, SnapshotSelf, 1, &key);
	tuple = systable_getnext_ordered(scan, last ? BackwardScanDirection
									 : ForwardScanDirection);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		datum = heap_getattr(tuple, attnum,
										 RelationGetDescr(table), &isnull);

		if (!isnull)
		{
			*value = DatumGetInt64(datum);
			found = true;
		}
	}
	systable_endscan_ordered(scan);
	return found;
}

/*
 * Lock a channel for the rest of the transaction and read its last seq:
 * the highest seq kept, else what comet.prune remembered, else 0.
 * comet.prune empties a channel and records pruned_upto in one
 * transaction, so reading packets first and channels second always finds
 * the last seq.
 */
static int64
seal_lock_channel(const SealRelations *rels, const PendingPacket *packet)
{
	LOCKTAG		tag;
	int64		last_seq = 0;

	/* taking a stripe we already hold only bumps its count */
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, packet->lock_stripe,
						 COMET_LOCK_CLASS);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);

	if (!seal_scan_channel(rels->packets, rels->packets_pkey,
						   rels->packets_channel, packet->channel,
						   true, rels->packets_seq, &last_seq))
		(void) seal_scan_channel(rels->channels, rels->channels_pkey,
								 rels->channels_channel, packet->channel, false,
								 rels->channels_pruned_upto, &last_seq);
	return last_seq;
}

/* The NOTIFY payload announcing a sealed packet. */
static char *
seal_wakeup_payload(const PendingPacket *packet)
{
	StringInfoData payload;
	int			header_len;

	initStringInfo(&payload);
	appendStringInfo(&payload, COMET_NOTIFY_PREFIX INT64_FORMAT, packet->seq);
	header_len = payload.len;
	if (VARSIZE(packet->data) <= COMET_INLINE_PROBE_MAX)
	{
		appendStringInfoChar(&payload, ' ');
		(void) JsonbToCString(&payload, &packet->data->root,
							  VARSIZE(packet->data));
		if (payload.len > COMET_NOTIFY_PAYLOAD_MAX)
		{
			payload.len = header_len;
			payload.data[header_len] = '\0';
		}
	}
	return payload.data;
}

/* Number, store and announce every queued packet.  Runs at PRE_COMMIT. */
static void
send_seal(void)
{
	int			n = send_state.count;
	int		   *order;
	int			i;
	Oid			save_userid;
	int			save_sec_context;
	TimestampTz sent_at;
	SealRelations rels;

	/* SET TRANSACTION READ ONLY may have come after the sends */
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot send a durable comet packet in a read-only transaction")));

	order = palloc(sizeof(int) * n);
	for (i = 0; i < n; i++)
		order[i] = i;
	qsort_arg(order, n, sizeof(int), seal_order_cmp, send_state.packets);

	send_state.sealed = true;
	seal_open(&rels);
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(rels.packets->rd_rel->relowner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	/* as for deferred triggers: the transaction snapshot is the outer one */
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	seal_prepare_plans();

	for (i = 0; i < n;)
	{
		PendingPacket *first = &send_state.packets[order[i]];
		int64		last_seq = seal_lock_channel(&rels, first);

		/* order[] keeps send order within one channel */
		while (i < n && strcmp(send_state.packets[order[i]].channel,
							   first->channel) == 0)
			send_state.packets[order[i++]].seq = ++last_seq;
	}

	/*
	 * Taken once every lock is held, so that within a channel sent_at never
	 * decreases as seq increases (unless the clock steps back): comet.prune
	 * relies on it only as far as it removes whole prefixes anyway.
	 */
	sent_at = GetCurrentTimestamp();

	/*
	 * A seq must never be handed out twice: once listeners have seen it, the
	 * commit must survive a crash, whatever synchronous_commit says.
	 */
	ForceSyncCommit();

	for (i = 0; i < n; i++)
	{
		PendingPacket *packet = &send_state.packets[i];
		Datum		values[4];
		int			rc;

		values[0] = CStringGetTextDatum(packet->channel);
		values[1] = Int64GetDatum(packet->seq);
		values[2] = JsonbPGetDatum(packet->data);
		values[3] = TimestampTzGetDatum(sent_at);
		rc = SPI_execute_plan(send_state.insert_plan, values, NULL, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "storing a packet of channel \"%s\" failed: %s",
				 packet->channel, SPI_result_code_string(rc));
		Async_Notify(packet->channel, seal_wakeup_payload(packet));
	}

	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	PopActiveSnapshot();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	seal_close(&rels);
	send_state.count = 0;
	pfree(order);
}

static void
send_reset(void)
{
	/* the memory itself goes with the transaction's contexts */
	send_state.packets = NULL;
	send_state.count = 0;
	send_state.capacity = 0;
	send_state.sealed = false;
}

static void
send_xact_callback(XactEvent event, void *arg)
{
	(void) arg;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (send_state.count > 0)
				send_seal();
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (send_state.count > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has sent comet packets")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			send_reset();
			break;
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			break;
	}
}

/*
 * The packets of a subtransaction are always a suffix of the queue: anything
 * sent after it began belongs to it or to a child that has already ended.
 */
static void
send_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	int			i;

	(void) arg;
	if (send_state.count == 0)
		return;
	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			while (send_state.count > 0 &&
				   send_state.packets[send_state.count - 1].subid == mySubid)
				send_state.count--;
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			for (i = send_state.count - 1;
				 i >= 0 && send_state.packets[i].subid == mySubid; i--)
				send_state.packets[i].subid = parentSubid;
			break;
		case SUBXACT_EVENT_START_SUB:
		case SUBXACT_EVENT_PRE_COMMIT_SUB:
			break;
	}
}

void
comet_send_register_callbacks(void)
{
	RegisterXactCallback(send_xact_callback, NULL);
	RegisterSubXactCallback(send_subxact_callback, NULL);
	CacheRegisterSyscacheCallback(PROCOID, send_oid_invalidate, (Datum) 0);
}
