/*
 * event_batch.c
 *	  What a loading statement leaves for its end.
 *
 * The row check of cdp.events (events.c) judges each row as it is stored;
 * what needs the whole statement is done here when it ends, from the AFTER
 * STATEMENT trigger of cdp.events, of its partitions and of the loader view,
 * or at the end of cdp.ingest:
 *	- rows that were quarantined are deleted from cdp.events;
 *	- message ids (idempotency keys) are claimed in cdp.event_messages, one
 *	  statement per batch; a row whose id is already claimed (by an earlier
 *	  load, or earlier in this one) is a retry: it is deleted and quarantined
 *	  as duplicate_message_id, so it is neither stored nor stitched twice;
 *	- one warning names the event types missing from cdp.event_types
 *	  (setting cdp.unknown_event_types = warn);
 *	- the rows stored are stitched (stitch.c): one batch per statement, or
 *	  every STITCH_BATCH rows inside a long COPY; a statement of at least
 *	  cdp.stitch_defer_rows rows, while the background worker serves the
 *	  database, queues them for it instead (stitch_queue.c).
 * Entry points that store events one statement at a time (cdp.ingest, the
 * loader view) defer the end until their own statement is done.
 *
 * Claims can be made in the middle of a long COPY (every CLAIM_BATCH rows,
 * and before each stitch batch), but rows are deleted only at the end: a row judged by the row check may
 * still sit in COPY's buffer, not yet in the table.
 *
 * Rows are kept per (sub)transaction nest level: a subtransaction that
 * aborts takes its rows with it, one that commits hands them to its parent,
 * and everything is forgotten at transaction end.  Each list has its own
 * memory, freed whenever the list is emptied, so a long COPY does not grow
 * the backend's memory.
 */
#include "events.h"
#include "profile_store.h"
#include "stitch_queue.h"
#include "identity.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#define CLAIM_BATCH 50000
#define STITCH_BATCH 50000
#define CLAIM_PLAIN_MIN 1000		/* fewer claims go straight to ON CONFLICT */
#define PURGE_CHUNK 10000		/* retried rows deleted and quarantined at a time */
#define MAX_TYPES_NAMED 5

/* A stored or refused row waiting for the end of its statement. */
typedef struct Row
{
	int64		event_id;		/* first: sorted with cdp_compare_int64 */
	TimestampTz occurred_at;
	bool		has_occurred_at;
	char	   *message_id;		/* for rows to claim */
	Jsonb	   *identifiers;	/* for rows to claim or to stitch */
	int			nest_level;
} Row;

/* A growing list of rows, in a memory context of its own. */
typedef struct RowList
{
	Row		   *rows;
	int			n;
	int			max;
	MemoryContext cxt;
} RowList;

/* What a row keeps besides its id and time (list_push). */
#define KEEP_MESSAGE_ID		1
#define KEEP_IDENTIFIERS	2

static MemoryContext batch_cxt = NULL;
static RowList rejected;		/* quarantined by the row check: delete */
static RowList to_claim;		/* stored with a message id: claim */
static RowList duplicates;		/* lost their claim: delete and quarantine */
static RowList to_stitch;		/* stored: stitch */
static RowList consenting;		/* subscribe and unsubscribe events: record consent */
static int	defer_depth = 0;
static int64 n_unknown = 0;		/* rows of unregistered types */
static int64 loader_rows[2];	/* loader view rows quarantined, stored */
static int	loader_level = 0;	/* nest level those rows were counted at */
static bool purging = false;	/* delete_rows is at work */
static char *unknown_names[MAX_TYPES_NAMED];
static int	n_unknown_names = 0;

/* Empties a list and frees its memory. */
static void
list_forget(RowList *l)
{
	MemoryContextReset(l->cxt);
	l->rows = NULL;
	l->n = 0;
	l->max = 0;
}

/* Rows were stitched in this statement (the profile store follows at its end). */
static bool stitched = false;

/*
 * Rows kept for stitching in this statement, and whether it leaves them
 * to the worker (a bulk load while the worker serves: stitch_queue.c).
 */
static int64 statement_rows = 0;
static bool deferring = false;

/* Forgets everything at transaction end. */
static void
batch_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		MemoryContextReset(batch_cxt);
		list_forget(&rejected);
		list_forget(&to_claim);
		list_forget(&duplicates);
		list_forget(&to_stitch);
		list_forget(&consenting);
		defer_depth = 0;
		stitched = false;
		statement_rows = 0;
		deferring = false;
		loader_rows[0] = loader_rows[1] = 0;
		n_unknown = 0;
		n_unknown_names = 0;
	}
}

/* Drops (abort) or hands to the parent (commit) the rows of a level. */
static void
list_end_level(RowList *l, int level, bool commit)
{
	while (l->n > 0 && l->rows[l->n - 1].nest_level >= level && !commit)
		l->n--;
	if (commit)
	{
		int			i;

		for (i = l->n - 1; i >= 0 && l->rows[i].nest_level >= level; i--)
			l->rows[i].nest_level = level - 1;
	}
}

/* Subtransaction end: its rows go with it or to its parent. */
static void
batch_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	list_end_level(&rejected, level, event == SUBXACT_EVENT_COMMIT_SUB);
	list_end_level(&to_claim, level, event == SUBXACT_EVENT_COMMIT_SUB);
	list_end_level(&duplicates, level, event == SUBXACT_EVENT_COMMIT_SUB);
	list_end_level(&to_stitch, level, event == SUBXACT_EVENT_COMMIT_SUB);
	list_end_level(&consenting, level, event == SUBXACT_EVENT_COMMIT_SUB);
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* a statement that failed never reached its end: the next starts afresh */
		statement_rows = 0;
		deferring = false;
	}
	if (loader_rows[0] + loader_rows[1] > 0 && loader_level >= level)
	{
		if (event == SUBXACT_EVENT_ABORT_SUB)
			loader_rows[0] = loader_rows[1] = 0;
		else
			loader_level = level - 1;
	}
}

/* Sets up the memory and the callbacks on first use. */
static void
batch_setup(void)
{
	if (batch_cxt != NULL)
		return;
	batch_cxt = AllocSetContextCreate(TopMemoryContext, "cdp statement",
									  ALLOCSET_SMALL_SIZES);
	rejected.cxt = AllocSetContextCreate(TopMemoryContext, "cdp rows to purge",
										 ALLOCSET_DEFAULT_SIZES);
	to_claim.cxt = AllocSetContextCreate(TopMemoryContext, "cdp rows to claim",
										 ALLOCSET_DEFAULT_SIZES);
	duplicates.cxt = AllocSetContextCreate(TopMemoryContext, "cdp retried rows",
										   ALLOCSET_DEFAULT_SIZES);
	to_stitch.cxt = AllocSetContextCreate(TopMemoryContext, "cdp rows to stitch",
										  ALLOCSET_DEFAULT_SIZES);
	consenting.cxt = AllocSetContextCreate(TopMemoryContext, "cdp consent rows",
										   ALLOCSET_SMALL_SIZES);
	RegisterXactCallback(batch_xact_callback, NULL);
	RegisterSubXactCallback(batch_subxact_callback, NULL);
}

/*
 * Appends a row of the current nest level to a list (in its memory),
 * keeping its message id or identifiers as asked.
 */
static Row *
list_push(RowList *l, int64 event_id, const Event *ev, int keep)
{
	MemoryContext old;
	Row		   *r;

	batch_setup();
	old = MemoryContextSwitchTo(l->cxt);
	if (l->n == l->max)
	{
		l->max = l->max == 0 ? 64 : l->max * 2;
		l->rows = l->rows == NULL ? palloc(sizeof(Row) * l->max)
			: repalloc(l->rows, sizeof(Row) * l->max);
	}
	r = &l->rows[l->n++];
	r->event_id = event_id;
	r->has_occurred_at = ev->has_occurred_at;
	r->occurred_at = ev->occurred_at;
	r->message_id = (keep & KEEP_MESSAGE_ID) ? text_to_cstring(ev->message_id) : NULL;
	r->identifiers = (keep & KEEP_IDENTIFIERS)
		? (Jsonb *) PG_DETOAST_DATUM_COPY(JsonbPGetDatum(ev->identifiers)) : NULL;
	r->nest_level = GetCurrentTransactionNestLevel();
	MemoryContextSwitchTo(old);
	return r;
}

/* Index of the first row of the current level or deeper (this statement). */
static int
list_statement_start(const RowList *l)
{
	int			level = GetCurrentTransactionNestLevel();
	int			start = l->n;

	while (start > 0 && l->rows[start - 1].nest_level >= level)
		start--;
	return start;
}

/* Remembers a row the row check quarantined, for deletion. */
void
cdp_batch_reject(int64 event_id, const Event *ev)
{
	(void) list_push(&rejected, event_id, ev, 0);
}

/* Notes a stored row of an unregistered type, for the warning. */
static void
note_unknown_type(text *type)
{
	char	   *name = text_to_cstring(type);
	int			i;

	batch_setup();
	n_unknown++;
	for (i = 0; i < n_unknown_names; i++)
		if (strcmp(unknown_names[i], name) == 0)
			return;
	if (n_unknown_names < MAX_TYPES_NAMED)
		unknown_names[n_unknown_names++] = MemoryContextStrdup(batch_cxt, name);
}

static void claim_messages(void);

/*
 * Whether the statement's rows go to the stitch queue: once it has kept
 * cdp.stitch_defer_rows rows, while the worker serves this database (and
 * the schema has the queue); decided once per statement.
 */
static bool
defer_stitching(void)
{
	if (!deferring && cdp_stitch_defer_rows > 0 && statement_rows >= cdp_stitch_defer_rows &&
		cdp_worker_serves_here() && cdp_store_installed())
		deferring = true;
	return deferring;
}

/*
 * Stitches the stored rows kept, in event id order, or queues them for
 * the worker; forgets them.
 */
static void
stitch_rows(void)
{
	int			n = to_stitch.n;
	int64	   *ids;
	TimestampTz *times;
	Jsonb	  **docs;
	int			i;

	if (n == 0)
		return;
	qsort(to_stitch.rows, n, sizeof(Row), cdp_compare_int64);	/* by event_id */
	ids = palloc(sizeof(int64) * n);
	times = palloc(sizeof(TimestampTz) * n);
	docs = palloc(sizeof(Jsonb *) * n);
	for (i = 0; i < n; i++)
	{
		ids[i] = to_stitch.rows[i].event_id;
		times[i] = to_stitch.rows[i].occurred_at;
		docs[i] = to_stitch.rows[i].identifiers;
	}
	to_stitch.n = 0;			/* taken, even if stitching fails */
	if (defer_stitching())
		cdp_stitch_enqueue(n, ids, times, docs);
	else
	{
		stitched = true;
		cdp_stitch_queue_strays();
		cdp_stitch_events(n, ids, times, docs);
	}
	list_forget(&to_stitch);
	pfree(ids);
	pfree(times);
	pfree(docs);
}

/* Keeps a stored row for stitching (when on) at nest level. */
static void
keep_for_stitching(int64 event_id, const Event *ev, int nest_level)
{
	if (!cdp_stitch_on_ingest)
		return;
	statement_rows++;
	list_push(&to_stitch, event_id, ev, KEEP_IDENTIFIERS)->nest_level = nest_level;
}

/*
 * The owner of cdp.events (the extension's owner), who owns the internal
 * tables a load writes.
 */
static Oid
events_owner(void)
{
	Oid			relid = get_relname_relid("events", get_namespace_oid("cdp", false));
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Runs work for the whole statement (claims of message ids, stitching or
 * queueing) as the owner of cdp.events, as a SECURITY DEFINER function
 * runs: a loader (cdp_tracker) may insert events but not write the
 * identity graph or the queues.  The row check, which calls this inside a
 * long load, runs as the loader; the trigger at the end of the statement
 * is SECURITY DEFINER already.  Statements run through SPI with the pinned
 * search_path (cdp_spi_connect).
 */
void
cdp_as_events_owner(void (*work) (void))
{
	Oid			save_userid;
	int			save_sec;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(events_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		work();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
}

/* Claims the message ids waiting, then stitches (or queues) the rows kept. */
static void
claim_and_stitch(void)
{
	claim_messages();
	stitch_rows();
}

/*
 * Inside a long load, every STITCH_BATCH rows: claims the message ids
 * waiting, so that earlier rows are not left behind, then stitches.
 */
static void
stitch_if_full(void)
{
	if (to_stitch.n < STITCH_BATCH)
		return;
	cdp_as_events_owner(claim_and_stitch);
}

/* Whether an event type records consent (subscribe, unsubscribe). */
static bool
is_consent_type(text *type)
{
	size_t		len = VARSIZE_ANY_EXHDR(type);
	const char *s = VARDATA_ANY(type);

	return (len == 9 && memcmp(s, "subscribe", 9) == 0) ||
		(len == 11 && memcmp(s, "unsubscribe", 11) == 0);
}

/*
 * Records the consents of the statement's subscribe and unsubscribe events
 * that were stored (retries were deleted by now), in its transaction.
 */
static void
record_consents(void)
{
	int			start = list_statement_start(&consenting);
	int			n = consenting.n - start;
	int64	   *ids;
	int64	   *times;
	Oid			types[2] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		values[2];
	int			i;

	if (n == 0)
		return;
	ids = palloc(sizeof(int64) * n);
	times = palloc(sizeof(int64) * n);
	for (i = 0; i < n; i++)
	{
		ids[i] = consenting.rows[start + i].event_id;
		times[i] = consenting.rows[start + i].occurred_at;
	}
	values[0] = cdp_int64_array(ids, n, INT8OID);
	values[1] = cdp_int64_array(times, n, TIMESTAMPTZOID);
	cdp_spi_connect();
	(void) cdp_spi_run("SELECT cdp.consent_events($1, $2)", 2, types, values, SPI_OK_SELECT);
	cdp_spi_finish();
	consenting.n = start;
}

/*
 * Takes a row the row check accepted: one with a message id waits for its
 * claim, the others go to stitching (when on).
 */
void
cdp_batch_accept(int64 event_id, const Event *ev)
{
	if (ev->message_id != NULL)
	{
		(void) list_push(&to_claim, event_id, ev, KEEP_MESSAGE_ID | KEEP_IDENTIFIERS);
		if (to_claim.n >= CLAIM_BATCH)
			cdp_as_events_owner(claim_messages);
	}
	else
		keep_for_stitching(event_id, ev, GetCurrentTransactionNestLevel());
	stitch_if_full();
	if (cdp_unknown_event_types == CDP_UNKNOWN_TYPES_WARN && !cdp_event_type_known(ev->type))
		note_unknown_type(ev->type);
	if (is_consent_type(ev->type))
		(void) list_push(&consenting, event_id, ev, 0);
}

/* Orders rows to claim by message id, then event id (the first one wins). */
static int
compare_claims(const void *a, const void *b)
{
	const Row  *x = a;
	const Row  *y = b;
	int			c = strcmp(x->message_id, y->message_id);

	if (c != 0)
		return c;
	return x->event_id < y->event_id ? -1 : x->event_id > y->event_id;
}

#define CLAIM_INSERT "INSERT INTO cdp.event_messages (message_id, event_id, occurred_at) " \
	"SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))"

/*
 * Inserts n claims (message ids, event ids, times), RETURNING the event ids
 * of those that won.  Many claims go first as a plain insert, in a
 * subtransaction: when no id is taken (the usual case), that is half the
 * cost of ON CONFLICT, which is what runs when one is (a retry, or a
 * concurrent load of the same id, which ON CONFLICT waits for).  A few (a
 * cdp.track, a small cdp.ingest) go straight to ON CONFLICT: a
 * subtransaction each would spend a transaction id per call.  (A plain
 * insert that fails inside a COPY ends the COPY's pg_stat_progress_copy
 * row: aborting a subtransaction ends the command's progress report.)
 */
static void
insert_claims(int n, Oid *types, Datum *values)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool inserted = false;

	if (n < CLAIM_PLAIN_MIN)
	{
		cdp_spi_run(CLAIM_INSERT " ON CONFLICT (message_id) DO NOTHING RETURNING event_id",
					3, types, values, SPI_OK_INSERT_RETURNING);
		return;
	}
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		cdp_spi_run(CLAIM_INSERT " RETURNING event_id", 3, types, values, SPI_OK_INSERT_RETURNING);
		ReleaseCurrentSubTransaction();
		inserted = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (!inserted)
		cdp_spi_run(CLAIM_INSERT " ON CONFLICT (message_id) DO NOTHING RETURNING event_id",
					3, types, values, SPI_OK_INSERT_RETURNING);
}

/*
 * Claims the message ids of the rows waiting: the first row of each id
 * inserts it into cdp.event_messages unless a committed or concurrent load
 * holds it (ON CONFLICT waits for that load to end); a row that wins is
 * stitched, one that loses becomes a duplicate.
 */
static void
claim_messages(void)
{
	int			n = to_claim.n;
	int			n_first = 0;
	int64	   *ids;
	char	  **msgs;
	TimestampTz *times;
	int64	   *won;
	int			n_won;
	int			i;
	Datum		values[3];
	Oid			types[3] = {TEXTARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID};

	if (n == 0)
		return;
	qsort(to_claim.rows, n, sizeof(Row), compare_claims);
	ids = palloc(sizeof(int64) * n);
	msgs = palloc(sizeof(char *) * n);
	times = palloc(sizeof(TimestampTz) * n);
	for (i = 0; i < n; i++)
	{
		const Row  *r = &to_claim.rows[i];

		if (i > 0 && strcmp(r->message_id, to_claim.rows[i - 1].message_id) == 0)
			continue;
		ids[n_first] = r->event_id;
		msgs[n_first] = r->message_id;
		times[n_first] = r->occurred_at;
		n_first++;
	}
	values[0] = cdp_text_array(msgs, n_first);
	values[1] = cdp_int64_array(ids, n_first, INT8OID);
	values[2] = cdp_int64_array(times, n_first, TIMESTAMPTZOID);
	won = palloc(sizeof(int64) * n_first);	/* outside SPI's memory */

	cdp_spi_connect();
	insert_claims(n_first, types, values);
	n_won = (int) SPI_processed;
	for (i = 0; i < n_won; i++)
	{
		bool		isnull;

		won[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	cdp_spi_finish();
	qsort(won, n_won, sizeof(int64), cdp_compare_int64);

	to_claim.n = 0;				/* taken, even if what follows fails */
	for (i = 0; i < n; i++)
	{
		Row		   *r = &to_claim.rows[i];
		Event		ev = {0};

		ev.has_occurred_at = r->has_occurred_at;
		ev.occurred_at = r->occurred_at;
		ev.identifiers = r->identifiers;
		if (bsearch(&r->event_id, won, n_won, sizeof(int64), cdp_compare_int64) != NULL)
			keep_for_stitching(r->event_id, &ev, r->nest_level);
		else
			list_push(&duplicates, r->event_id, &ev, 0)->nest_level = r->nest_level;
	}
	list_forget(&to_claim);
	pfree(ids);
	pfree(msgs);
	pfree(times);
	pfree(won);
}

/*
 * Deletes rows [start, end of list) from cdp.events and drops them from the
 * list; RETURNING the deleted rows when asked (for the duplicates'
 * quarantine).  The rows never reached detection (they were not stitched),
 * so the delete does not make journeys replay (cdp_batch_purging).  Returns
 * the count.
 */
static int64
delete_rows(RowList *l, int start, bool returning)
{
	int			n = l->n - start;
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *times = palloc(sizeof(Datum) * n);
	int			n_times = 0;
	int64		min_id = PG_INT64_MAX;
	int64		max_id = PG_INT64_MIN;
	Datum		values[4];
	Oid			types[4] = {INT8ARRAYOID, INT8OID, INT8OID, TIMESTAMPTZARRAYOID};
	int			i;
	uint64		deleted = 0;

	for (i = 0; i < n; i++)
	{
		const Row  *r = &l->rows[start + i];

		ids[i] = Int64GetDatum(r->event_id);
		min_id = Min(min_id, r->event_id);
		max_id = Max(max_id, r->event_id);
		if (r->has_occurred_at)
			times[n_times++] = TimestampTzGetDatum(r->occurred_at);
	}
	l->n = start;
	if (start == 0)
		list_forget(l);
	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = Int64GetDatum(min_id);
	values[2] = Int64GetDatum(max_id);
	values[3] = PointerGetDatum(construct_array(times, n_times, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	purging = true;
	PG_TRY();
	{
		/* occurred_at prunes partitions, the id range uses the BRIN indexes */
		deleted = cdp_spi_run(returning
							  ? "DELETE FROM cdp.events WHERE event_id BETWEEN $2 AND $3 AND event_id = ANY ($1) "
							  "AND (occurred_at = ANY ($4) OR occurred_at IS NULL) "
							  "RETURNING occurred_at, channel, type, identifiers, properties, amount, source, message_id, "
							  "(SELECT m.event_id FROM cdp.event_messages m WHERE m.message_id = events.message_id)"
							  : "DELETE FROM cdp.events WHERE event_id BETWEEN $2 AND $3 AND event_id = ANY ($1) "
							  "AND (occurred_at = ANY ($4) OR occurred_at IS NULL)",
							  4, types, values, returning ? SPI_OK_DELETE_RETURNING : SPI_OK_DELETE);
	}
	PG_FINALLY();
	{
		purging = false;
	}
	PG_END_TRY();
	return (int64) deleted;
}

/*
 * Whether the rows being deleted are a statement's own quarantined rows or
 * retries (for cdp.events_deleted, which then leaves journeys alone).
 */
bool
cdp_batch_purging(void)
{
	return purging;
}

/* Deletes the rows quarantined during the statement, and says how many. */
static void
purge_rejected(void)
{
	int			start = list_statement_start(&rejected);
	int			n = rejected.n - start;
	int64		deleted;

	if (n == 0)
		return;
	cdp_spi_connect();
	deleted = delete_rows(&rejected, start, false);
	cdp_spi_finish();
	ereport(NOTICE,
			(errmsg_plural("%d event was rejected and moved to cdp.rejected_events",
						   "%d events were rejected and moved to cdp.rejected_events", n, n),
			 errhint("SELECT reason_code, reason, raw FROM cdp.rejected_events ORDER BY reject_id DESC LIMIT %d;", n)));
	if (deleted != n)
		elog(WARNING, "%d events were rejected but " INT64_FORMAT " were removed from cdp.events",
			 n, deleted);
}

/* The value of varlena column col of a deleted row, detoasted, or NULL. */
static void *
returned(HeapTuple tuple, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);

	return isnull ? NULL : PG_DETOAST_DATUM(d);
}

/* Quarantines the retried rows a delete_rows(..., true) returned. */
static void
quarantine_retries(void)
{
	uint64		i;

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Event		ev;
		Problem		p;
		bool		isnull;
		int64		original = DatumGetInt64(SPI_getbinval(t, desc, 9, &isnull));

		ev.occurred_at = DatumGetTimestampTz(SPI_getbinval(t, desc, 1, &isnull));
		ev.has_occurred_at = !isnull;
		ev.channel = returned(t, desc, 2);
		ev.type = returned(t, desc, 3);
		ev.identifiers = returned(t, desc, 4);
		ev.properties = returned(t, desc, 5);
		ev.amount = returned(t, desc, 6);
		ev.source = returned(t, desc, 7);
		ev.message_id = returned(t, desc, 8);
		cdp_fail(&p, CDP_DUPLICATE_MESSAGE_ID,
			 "A retried load is not stored twice; the original event keeps its id.",
			 "message_id \"%s\" was already stored as event " INT64_FORMAT,
			 cdp_shown(VARDATA_ANY(ev.message_id), VARSIZE_ANY_EXHDR(ev.message_id)), original);
		cdp_quarantine(&p, ev.source, cdp_event_to_jsonb(&ev));
	}
}

/*
 * Deletes the retried rows of the statement and quarantines them, a chunk at
 * a time (a retried load of millions of rows comes back whole); counts them.
 */
static int64
purge_duplicates(void)
{
	int			start = list_statement_start(&duplicates);
	int			n = duplicates.n - start;
	int64		deleted = 0;

	if (n == 0)
		return 0;
	while (duplicates.n > start)
	{
		cdp_spi_connect();
		deleted += delete_rows(&duplicates, Max(start, duplicates.n - PURGE_CHUNK), true);
		quarantine_retries();
		cdp_spi_finish();
		CHECK_FOR_INTERRUPTS();
	}
	ereport(NOTICE,
			(errmsg_plural("%d event was a retry of a stored message and moved to cdp.rejected_events",
						   "%d events were retries of stored messages and moved to cdp.rejected_events",
						   n, n),
			 errhint("SELECT reason, raw FROM cdp.rejected_events WHERE reason_code = 'duplicate_message_id' ORDER BY reject_id DESC LIMIT %d;", n)));
	if (deleted != n)
		elog(WARNING, "%d retried events were found but " INT64_FORMAT " were removed from cdp.events",
			 n, deleted);
	return deleted;
}

/* One warning for the rows of unregistered types stored by the statement. */
static void
warn_unknown_types(void)
{
	StringInfoData names;
	int			i;

	if (n_unknown == 0)
		return;
	initStringInfo(&names);
	for (i = 0; i < n_unknown_names; i++)
		appendStringInfo(&names, "%s\"%s\"", i > 0 ? ", " : "", unknown_names[i]);
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg_plural(INT64_FORMAT " event of a type not in cdp.event_types was stored: %s%s",
						   INT64_FORMAT " events of types not in cdp.event_types were stored: %s%s",
						   n_unknown, n_unknown, names.data,
						   n_unknown_names == MAX_TYPES_NAMED ? ", ..." : ""),
			 errhint("Register the types in cdp.event_types, correct the source, or set cdp.unknown_event_types to quarantine or accept.")));
	n_unknown = 0;
	n_unknown_names = 0;
}

/* Counts a row of the loader view, stored or not, for the statement's report. */
void
cdp_batch_count_loader_row(bool stored)
{
	batch_setup();
	if (loader_rows[0] + loader_rows[1] == 0)
		loader_level = GetCurrentTransactionNestLevel();
	loader_rows[stored ? 1 : 0]++;
}

/*
 * Says how many rows a statement on the loader view stored when it
 * quarantined some: COPY into a view counts every row it read.  Retries
 * (stored, then removed) count as quarantined.
 */
static void
report_loader_rows(int64 retries)
{
	int64		stored = loader_rows[1] - retries;
	int64		refused = loader_rows[0] + retries;

	if (loader_rows[0] + loader_rows[1] == 0)
		return;					/* not the loader view */
	loader_rows[0] = loader_rows[1] = 0;
	if (refused == 0)
		return;
	ereport(NOTICE,
			(errmsg_plural(INT64_FORMAT " row stored in cdp.events, " INT64_FORMAT " quarantined",
						   INT64_FORMAT " rows stored in cdp.events, " INT64_FORMAT " quarantined",
						   stored, stored, refused),
			 errdetail("COPY into cdp.event_load counts every row it reads."),
			 errhint("SELECT reason_code, reason, raw FROM cdp.rejected_events ORDER BY reject_id DESC LIMIT " INT64_FORMAT ";",
					 refused)));
}

/* Defers the statement's end (cdp.ingest, the loader view's rows). */
void
cdp_batch_defer(void)
{
	defer_depth++;
}

/* Ends a deferral. */
void
cdp_batch_undefer(void)
{
	Assert(defer_depth > 0);
	defer_depth--;
}

/*
 * The end of a loading statement: claims, purges, warns, stitches.  Returns
 * how many stored rows were retries, removed.
 */
int64
cdp_batch_end(void)
{
	int64		retries;

	if (defer_depth > 0)
		return 0;
	claim_messages();
	purge_rejected();
	retries = purge_duplicates();
	record_consents();
	report_loader_rows(retries);
	warn_unknown_types();
	stitch_rows();
	statement_rows = 0;
	deferring = false;
	if (stitched)
	{
		/* every row of the statement is in the table now: the store may read them */
		stitched = false;
		cdp_store_after_stitching();
	}
	return retries;
}
