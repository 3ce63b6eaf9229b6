/*
 * stitch_queue.c
 *	  Bulk loads stitched after their commit, in short transactions.
 *
 * While the background worker serves the database, a loading statement
 * that stores at least cdp.stitch_defer_rows rows does not stitch them:
 * every STITCH_BATCH rows, and at its end, it writes rows of
 * cdp.stitch_queue holding what stitching needs of the events it stored
 * (ids, times, identifiers: the worker then never searches the event
 * store, whose BRIN indexes do not yet summarize what was just loaded).
 * A queue row commits with the events, so it becomes visible exactly when
 * they do, whatever the order in which loads commit, and a load rolled
 * back takes it away.  The load
 * never takes the stitching lock, so cdp.track and small statements, which
 * still stitch in their own transaction, do not wait for it.
 *
 * The worker takes the queue oldest row first, whole rows of at most
 * QUEUE_ROW events until cdp.worker_stitch_batch events per transaction:
 * under the stitching lock it stitches their events
 * (stitch.c) and deletes the rows in the same transaction, so each event
 * is stitched exactly once whatever stops it, and cdp.track waits for the
 * lock at most one short unit.  Functions whose answer depends on the
 * identity graph (cdp.sync, cdp.detect_journey_breaks, cdp.refresh_scores,
 * cdp.validate_clv, cdp.rebuild_identities; cdp.profile for the session's
 * own loads) first make sure that what is queued is stitched, so a session
 * never gets an answer older than what it committed: while the worker
 * serves, they wait for it (asking it to stitch without pause), since
 * stitching themselves would hold the stitching lock until their own
 * transaction ends; without it, or when it cannot help (see
 * worker_can_stitch), they stitch in their own transaction.  A statement
 * that stitches its own events while no worker serves first stitches what
 * was left queued, so nothing stays queued when the worker is turned off.
 * Stitching order: queue rows oldest first, each in event id order; a load
 * that commits after later ones is stitched after them, which may differ
 * from cdp.rebuild_identities (event id order) only where a profile
 * reaches a max_per_profile of cdp.identity_rules.
 *
 * This module owns the writes to cdp.stitch_queue.
 */
#include "identity.h"
#include "identity_store.h"
#include "journey.h"
#include "profile_store.h"
#include "stitch_queue.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(cdp_stitch_queued);

/* Events per queue row: a load's events are queued in rows of this many. */
#define QUEUE_ROW 5000

/*
 * The last queue row this session wrote: in the open transaction, and in
 * one it committed (cdp.profile stitches up to it, no further).
 */
static int64 xact_last_row = 0;
static int64 session_last_row = 0;

/*
 * Queue rows up to this one were stitched in the open transaction (by a
 * cdp.stitch_queued(true)): at commit, the session has none left if its
 * last row is among them (not before: a rollback undoes the stitching).
 */
static int64 xact_settled_upto = 0;

/* A session waiting for the worker gives up if the queue does not move for this long. */
#define WAIT_STALL_MS 30000

/* Keeps the transaction's last row for the session when it commits. */
static void
queue_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && xact_last_row > session_last_row)
		session_last_row = xact_last_row;
	if (event == XACT_EVENT_COMMIT && xact_settled_upto >= session_last_row)
		session_last_row = 0;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		xact_last_row = xact_settled_upto = 0;
}

/* Registers queue_xact_callback once. */
static void
queue_setup(void)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(queue_xact_callback, NULL);
		registered = true;
	}
}

/* Queues one row: n events, ids ascending, with their times and identifiers. */
static void
enqueue_row(int n, const int64 *ids, const TimestampTz *times, Jsonb *const *docs)
{
	Oid			types[4] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, JSONBARRAYOID, INT4OID};
	Datum		values[4];
	Datum	   *d = palloc(sizeof(Datum) * n);
	int			i;

	for (i = 0; i < n; i++)
		d[i] = JsonbPGetDatum(docs[i]);
	values[0] = cdp_int64_array(ids, n, INT8OID);
	values[1] = cdp_int64_array(times, n, TIMESTAMPTZOID);
	values[2] = PointerGetDatum(construct_array(d, n, JSONBOID, -1, false, TYPALIGN_INT));
	values[3] = Int32GetDatum(n);
	cdp_spi_run_kept("INSERT INTO cdp.stitch_queue (event_ids, occurred_at, identifiers, events) "
					 "VALUES ($1, $2, $3, $4) RETURNING queue_id",
					 4, types, values, SPI_OK_INSERT_RETURNING);
	xact_last_row = cdp_spi_int64(0, 1);
	pfree(d);
}

/*
 * Queues the events of a load (ids ascending) for stitching after commit,
 * in rows of QUEUE_ROW events (a unit of the worker takes whole rows).
 * Wakes the worker at commit.
 */
void
cdp_stitch_enqueue(int n, const int64 *ids, const TimestampTz *times, Jsonb *const *docs)
{
	int			i;

	queue_setup();
	cdp_spi_connect();
	for (i = 0; i < n; i += QUEUE_ROW)
		enqueue_row(Min(QUEUE_ROW, n - i), ids + i, times + i, docs + i);
	cdp_spi_finish();
	cdp_worker_wake_at_commit();
}

/*
 * Stitches the events of the oldest queue row, if its id is at most upto
 * (under the stitching lock), and deletes it; returns how many there were,
 * -1 when there is no such row.  With max_events > 0, leaves the row if it
 * would bring done past max_events (unless done is 0) and returns -2.  Runs
 * in an SPI connection of its own, whose memory (the row's arrays, what
 * stitching allocates) goes when it returns.
 */
static int64
stitch_oldest(int64 upto, int64 done, int64 max_events)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(upto)};
	Datum	   *ids;
	Datum	   *times;
	Datum	   *docs;
	int			n,
				nt,
				nd,
				i;
	bool		isnull;
	int64	   *event_ids;
	TimestampTz *occurred;
	Jsonb	  **identifiers;

	cdp_spi_connect();
	if (cdp_spi_run_kept("SELECT queue_id, events FROM cdp.stitch_queue WHERE queue_id <= $1 "
						 "ORDER BY queue_id LIMIT 1", 1, types, values, SPI_OK_SELECT) == 0)
	{
		cdp_spi_finish();
		return -1;
	}
	if (max_events > 0 && done > 0 && done + cdp_spi_int64(0, 2) > max_events)
	{
		cdp_spi_finish();
		return -2;
	}
	values[0] = Int64GetDatum(cdp_spi_int64(0, 1));
	cdp_spi_run_kept("SELECT event_ids, occurred_at, identifiers FROM cdp.stitch_queue WHERE queue_id = $1",
					 1, types, values, SPI_OK_SELECT);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)),
					  INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &ids, NULL, &n);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)),
					  TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &times, NULL, &nt);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)),
					  JSONBOID, -1, false, TYPALIGN_INT, &docs, NULL, &nd);
	if (nt != n || nd != n)
		elog(ERROR, "cdp.stitch_queue row " INT64_FORMAT " is inconsistent", DatumGetInt64(values[0]));
	event_ids = palloc(sizeof(int64) * (n > 0 ? n : 1));
	occurred = palloc(sizeof(TimestampTz) * (n > 0 ? n : 1));
	identifiers = palloc(sizeof(Jsonb *) * (n > 0 ? n : 1));
	for (i = 0; i < n; i++)
	{
		event_ids[i] = DatumGetInt64(ids[i]);
		occurred[i] = DatumGetTimestampTz(times[i]);
		identifiers[i] = DatumGetJsonbP(docs[i]);
	}
	cdp_stitch_events(n, event_ids, occurred, identifiers);
	cdp_spi_run_kept("DELETE FROM cdp.stitch_queue WHERE queue_id = $1",
					 1, types, values, SPI_OK_DELETE);
	cdp_spi_finish();
	return n;
}

/*
 * The newest queue row up to upto, and the events of the rows up to it
 * (SPI connected); 0 when none is visible.
 */
static int64
last_queued(int64 upto, int64 *events)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(upto)};

	cdp_spi_run_kept("SELECT coalesce(pg_catalog.max(queue_id), 0), coalesce(pg_catalog.sum(events), 0)::bigint "
					 "FROM cdp.stitch_queue WHERE queue_id <= $1", 1, types, values, SPI_OK_SELECT);
	*events = cdp_spi_int64(0, 2);
	return cdp_spi_int64(0, 1);
}

/* The oldest queue row up to upto, 0 when none is visible (SPI connected). */
static int64
oldest_queued(int64 upto)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(upto)};

	cdp_spi_run_kept("SELECT coalesce(pg_catalog.min(queue_id), 0) FROM cdp.stitch_queue WHERE queue_id <= $1",
					 1, types, values, SPI_OK_SELECT);
	return cdp_spi_int64(0, 1);
}

/* Whether the worker has a unit to run for the queue (SPI connected). */
bool
cdp_stitch_queue_pending(void)
{
	return cdp_store_installed() && oldest_queued(PG_INT64_MAX) > 0;
}

/*
 * Takes the stitching lock, unless this transaction holds the profile
 * store's lock: every wait for both locks is for the stitching lock first,
 * so that two transactions never wait for each other (cdp.profile, which
 * takes the store's lock when it is free, stitches its session's loads
 * before).  Returns whether it is held.
 */
static bool
stitch_lock(void)
{
	if (cdp_profile_store_lock_held())
		return false;
	cdp_store_lock();
	return true;
}

/*
 * Stitches queued events, oldest queue row first, up to the row upto
 * (0: every row), whole rows until they hold max_events (0: no limit); SPI
 * connected.  Takes the stitching lock: callers that must not take it for
 * nothing know that rows are queued (cdp_stitch_queue_pending).  Returns
 * the events stitched; *more tells whether some remain.
 */
int64
cdp_stitch_queue_run(int64 upto, int64 max_events, bool *more)
{
	int64		done = 0;

	if (upto <= 0)
		upto = PG_INT64_MAX;
	*more = false;
	if (!cdp_store_installed())
		return 0;
	if (!stitch_lock())
	{
		*more = true;
		return 0;
	}
	for (;;)
	{
		int64		n = stitch_oldest(upto, done, max_events);

		if (n < 0)
		{
			*more = n == -2;
			break;
		}
		done += n;
		CHECK_FOR_INTERRUPTS();
	}
	return done;
}

/*
 * Before a statement stitches its own events while no worker serves the
 * database: stitches first what loads queued while one did (it has been
 * disabled or stopped since), so that nothing stays queued for good.
 */
void
cdp_stitch_queue_strays(void)
{
	bool		more;

	if (cdp_worker_serves_here())
		return;
	cdp_spi_connect();
	if (cdp_stitch_queue_pending())
		(void) cdp_stitch_queue_run(0, 0, &more);
	cdp_spi_finish();
}

/*
 * Whether the worker can stitch the queue for this transaction: it serves
 * the database, the transaction queued no rows of
 * its own (invisible to the worker), holds none of the locks the worker's
 * units take (it would wait for this transaction, which waits for it), and
 * takes a new snapshot for each statement (else it would never see the
 * worker's progress).
 */
static bool
worker_can_stitch(void)
{
	return cdp_worker_serves_here() && xact_last_row == 0 &&
		!IsolationUsesXactSnapshot() &&
		!cdp_advisory_lock_held(STITCH_LOCK_KEY1, STITCH_LOCK_KEY2) &&
		!cdp_advisory_lock_held(JOURNEY_LOCK_KEY1, JOURNEY_LOCK_KEY2) &&
		!cdp_profile_store_lock_held();
}

/*
 * Waits until the worker has stitched the queue rows up to last, asking it
 * to keep stitching; false when it stops serving, fails, or the queue does
 * not move for WAIT_STALL_MS (SPI connected).
 */
static bool
wait_for_worker(int64 last)
{
	int64		errors = cdp_worker_errors();
	int64		oldest = 0;
	int64		now_oldest;
	TimestampTz moved = GetCurrentTimestamp();

	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	while ((now_oldest = oldest_queued(last)) != 0)
	{
		if (now_oldest != oldest)
		{
			oldest = now_oldest;
			moved = GetCurrentTimestamp();
		}
		else if (TimestampDifferenceExceeds(moved, GetCurrentTimestamp(), WAIT_STALL_MS))
			break;
		if (!cdp_worker_serves_here() || cdp_worker_errors() != errors)
			break;
		cdp_worker_want_stitching();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	pgstat_report_wait_end();
	return now_oldest == 0;
}

/*
 * Makes sure that the queue rows visible now, up to upto (0: all), are
 * stitched before the caller reads the identity graph (SPI connected).
 * While the worker serves the database it waits for the worker, whose
 * units are short, rather than holding the stitching lock until its own
 * transaction ends (cdp.track would wait for that); else, or when the
 * worker cannot or does not (worker_can_stitch, wait_for_worker), it
 * stitches them itself.  The worker never does: its stitching units take
 * the queue.  Returns the events of those rows; sets *more when some could
 * not be stitched (this transaction holds the store's lock).
 */
int64
cdp_stitch_queue_settle(int64 upto, bool *more)
{
	int64		events;
	int64		last;

	*more = false;
	if (cdp_worker_is_me() || !cdp_store_installed())
		return 0;
	last = last_queued(upto > 0 ? upto : PG_INT64_MAX, &events);
	if (last == 0)
		return 0;
	if (!worker_can_stitch() || !wait_for_worker(last))
		(void) cdp_stitch_queue_run(last, 0, more);
	return events;
}

/*
 * cdp.stitch_queued(own_only): makes sure every queued event is stitched,
 * or with own_only those up to the last queue row this session wrote
 * (nothing to do, and no query, when it wrote none); returns how many
 * were queued.
 */
Datum
cdp_stitch_queued(PG_FUNCTION_ARGS)
{
	bool		own_only = PG_GETARG_BOOL(0);
	int64		upto = Max(xact_last_row, session_last_row);
	int64		events;
	bool		more;

	if (own_only && upto == 0)
		PG_RETURN_INT64(0);
	queue_setup();
	cdp_spi_connect();
	events = cdp_stitch_queue_settle(own_only ? upto : 0, &more);
	cdp_spi_finish();
	if (own_only && !more)
		xact_settled_upto = Max(xact_settled_upto, upto);
	PG_RETURN_INT64(events);
}
