/*
 * profile_store.c
 *	  The profile store: per-anchor facts folded in from each stitched
 *	  batch (cdp.sync, the background worker) or recomputed from every
 *	  event (cdp.rebuild_profile_store).  See src/sql/profiles.sql for the
 *	  tables and why facts are kept per anchor identifier.
 *
 * Tables it alone writes: cdp.anchor_activity, cdp.anchor_products,
 * cdp.anchor_interest, cdp.anchor_traits, cdp.anchor_touches,
 * cdp.anchor_recent_events and cdp.profile_store_progress.
 *
 * Exactly once: a unit takes the batches after the store's last_batch_id
 * up to a bound, reads their events by the batch id that stitching wrote
 * beside each anchor (cdp.event_anchors.batch_id; a batch's id range may
 * hold events of other batches), folds them in with one statement, and
 * moves last_batch_id in the same transaction.  Batch ids are taken under
 * the stitching lock, held until commit, so they become visible in order:
 * no batch at or below a visible one can still commit later.
 *
 * Locking: the store's own transaction-level advisory lock, so two runs
 * never interleave.  A load, which holds the stitching lock, only tries the
 * store's (cdp_store_after_stitching); cdp.sync makes sure the stitch
 * queue is stitched (waiting for the worker, or under the stitching lock)
 * before it takes the store's, and the queue never waits for the stitching
 * lock while this transaction holds the store's (stitch_queue.c): so the
 * two are never waited for in both orders.
 */
#include "cdp.h"
#include "profile_store.h"
#include "identity_store.h"
#include "stitch_queue.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "catalog/namespace.h"
#include "utils/guc.h"

PG_FUNCTION_INFO_V1(cdp_sync);
PG_FUNCTION_INFO_V1(cdp_rebuild_profile_store);

/* The store's advisory lock (cdp.profile tries it too: src/sql/views.sql). */
#define STORE_LOCK_KEY1 0x636470
#define STORE_LOCK_KEY2 0x7073

/* Events a unit folds in at most when the caller sets no bound (memory). */
#define UNIT_EVENTS 1000000

/* Event ids per statement of a rebuild. */
#define REBUILD_CHUNK 2000000

/* Batches a unit considers at most (a string: it is written in a query). */
#define BATCHES_PER_READ "100000"

/* Entries kept per anchor in the bounded lists. */
#define KEEP "20"

/*
 * The new events of batches ($1, $2]: per range of the batches
 * (CDP_BATCH_RANGES), its anchors and events by their BRIN indexes, kept
 * when their batch is one of these (after the join: a filter on batch_id
 * in the scan, with statistics taken before the batch, is estimated at one
 * row and turns the join into a nested loop).
 */
#define NEW_EVENTS \
	CDP_BATCH_RANGES ", " \
	"ev AS MATERIALIZED (SELECT x.* FROM r CROSS JOIN LATERAL (" \
	"SELECT a.anchor_id, e.event_id, e.occurred_at, e.channel, e.type, e.amount, e.source, e.properties " \
	"FROM (SELECT * FROM cdp.event_anchors WHERE event_id BETWEEN r.f AND r.l OFFSET 0) a " \
	"JOIN cdp.events e ON e.event_id = a.event_id AND e.occurred_at = a.occurred_at " \
	"WHERE e.event_id BETWEEN r.f AND r.l AND a.batch_id > $1 AND a.batch_id <= $2 OFFSET 0) x) "

/*
 * Every event of ids [$1, $3) stitched in batch $2 or before (anchors
 * stitched before 0.2.0 have no batch id), for the rebuild.
 */
#define ALL_EVENTS \
	"WITH ev AS MATERIALIZED (" \
	"SELECT a.anchor_id, e.event_id, e.occurred_at, e.channel, e.type, e.amount, e.source, e.properties " \
	"FROM (SELECT * FROM cdp.event_anchors WHERE event_id >= $1 AND event_id < $3 OFFSET 0) a " \
	"JOIN cdp.events e ON e.event_id = a.event_id AND e.occurred_at = a.occurred_at " \
	"WHERE e.event_id >= $1 AND e.event_id < $3 AND coalesce(a.batch_id, 0) <= $2) "

/* (excluded.col if excluded is later than t, else t.col), by last_at, last_event_id */
#define LATER(col) \
	col " = CASE WHEN (excluded.last_at, excluded.last_event_id) > (t.last_at, t.last_event_id) " \
	"THEN excluded." col " ELSE t." col " END"
#define EARLIER(col) \
	col " = CASE WHEN (excluded.first_at, excluded.first_event_id) < (t.first_at, t.first_event_id) " \
	"THEN excluded." col " ELSE t." col " END"

/*
 * Folds the events ev (NEW_EVENTS or ALL_EVENTS) into every table of the
 * store, in one statement; returns the events, and the anchors whose
 * bounded lists grew (to trim).
 */
#define FOLD \
	/* per anchor, channel and type: counts, sums, first and last */ \
	", act AS (INSERT INTO cdp.anchor_activity AS t (anchor_id, channel, type, events, amount, " \
	"first_at, last_at, last_event_id, last_amount) " \
	"SELECT anchor_id, channel, type, pg_catalog.count(*), coalesce(pg_catalog.sum(amount), 0), " \
	"pg_catalog.min(occurred_at), pg_catalog.max(occurred_at) FILTER (WHERE rn = 1), " \
	"pg_catalog.max(event_id) FILTER (WHERE rn = 1), pg_catalog.max(amount) FILTER (WHERE rn = 1) " \
	"FROM (SELECT anchor_id, channel, type, amount, occurred_at, event_id, pg_catalog.row_number() OVER " \
	"(PARTITION BY anchor_id, channel, type ORDER BY occurred_at DESC, event_id DESC) AS rn FROM ev) s " \
	"GROUP BY anchor_id, channel, type " \
	"ON CONFLICT (anchor_id, channel, type) DO UPDATE SET events = t.events + excluded.events, " \
	"amount = t.amount + excluded.amount, first_at = LEAST(t.first_at, excluded.first_at), " \
	LATER("last_at") ", " LATER("last_event_id") ", " LATER("last_amount") " RETURNING 1), " \
	/* products: the latest event of each, the latest " KEEP " per anchor and action */ \
	"prod AS (INSERT INTO cdp.anchor_products AS t (anchor_id, action, product_id, last_at, last_event_id) " \
	"SELECT anchor_id, action, product_id, occurred_at, event_id FROM (" \
	"SELECT d.*, pg_catalog.row_number() OVER (PARTITION BY anchor_id, action " \
	"ORDER BY occurred_at DESC, event_id DESC) AS rk FROM (" \
	"SELECT DISTINCT ON (anchor_id, action, product_id) anchor_id, action, product_id, occurred_at, event_id " \
	"FROM (SELECT anchor_id, CASE type WHEN 'product_view' THEN 'viewed' WHEN 'add_to_cart' THEN 'carted' " \
	"ELSE 'bought' END AS action, properties ->> 'product_id' AS product_id, occurred_at, event_id FROM ev " \
	"WHERE type IN ('product_view', 'add_to_cart', 'purchase') AND properties ->> 'product_id' IS NOT NULL) p " \
	"ORDER BY anchor_id, action, product_id, occurred_at DESC, event_id DESC) d) k WHERE rk <= " KEEP " " \
	"ON CONFLICT (anchor_id, action, product_id) DO UPDATE SET " \
	LATER("last_at") ", " LATER("last_event_id") " RETURNING anchor_id), " \
	/* interest: log2 of the decayed mass, added with log-sum-exp */ \
	"intr AS (INSERT INTO cdp.anchor_interest AS t (anchor_id, category, log2_mass, events, last_at) " \
	"SELECT anchor_id, category, pg_catalog.max(m) + pg_catalog.ln(pg_catalog.sum(pg_catalog.power(2::float8, " \
	"GREATEST(x - m, -1000)))) / pg_catalog.ln(2::float8), pg_catalog.count(*), pg_catalog.max(occurred_at) " \
	"FROM (SELECT c.*, pg_catalog.max(x) OVER (PARTITION BY anchor_id, category) AS m FROM (" \
	"SELECT anchor_id, properties ->> 'category' AS category, occurred_at, " \
	"pg_catalog.ln(CASE type WHEN 'product_view' THEN 1 WHEN 'wishlist_add' THEN 2 ELSE 3 END::float8) " \
	"/ pg_catalog.ln(2::float8) + EXTRACT(epoch FROM occurred_at)::float8 / 2592000 AS x FROM ev " \
	"WHERE type IN ('product_view', 'wishlist_add', 'add_to_cart') AND properties ->> 'category' IS NOT NULL) c) s " \
	"GROUP BY anchor_id, category " \
	"ON CONFLICT (anchor_id, category) DO UPDATE SET " \
	"log2_mass = GREATEST(t.log2_mass, excluded.log2_mass) + pg_catalog.ln(1 + pg_catalog.power(2::float8, " \
	"GREATEST(LEAST(t.log2_mass, excluded.log2_mass) - GREATEST(t.log2_mass, excluded.log2_mass), -1000))) " \
	"/ pg_catalog.ln(2::float8), events = t.events + excluded.events, " \
	"last_at = GREATEST(t.last_at, excluded.last_at) RETURNING 1), " \
	/* traits: each value of each source */ \
	"tr AS (INSERT INTO cdp.anchor_traits AS t (anchor_id, trait, value, source, times_seen, last_at, last_event_id) " \
	"SELECT anchor_id, trait, value, source, pg_catalog.count(*), pg_catalog.max(occurred_at) FILTER (WHERE rn = 1), " \
	"pg_catalog.max(event_id) FILTER (WHERE rn = 1) " \
	"FROM (SELECT ev.anchor_id, kv.key AS trait, kv.value, ev.source, ev.occurred_at, ev.event_id, " \
	"pg_catalog.row_number() OVER (PARTITION BY ev.anchor_id, kv.key, kv.value, ev.source " \
	"ORDER BY ev.occurred_at DESC, ev.event_id DESC) AS rn " \
	"FROM ev CROSS JOIN LATERAL pg_catalog.jsonb_each(ev.properties -> 'traits') kv " \
	"WHERE pg_catalog.jsonb_typeof(ev.properties -> 'traits') = 'object' AND kv.value <> 'null') s " \
	"GROUP BY anchor_id, trait, value, source " \
	"ON CONFLICT (anchor_id, trait, value, source) DO UPDATE SET times_seen = t.times_seen + excluded.times_seen, " \
	LATER("last_at") ", " LATER("last_event_id") " RETURNING 1), " \
	/* acquisition: first and last touch */ \
	"tc AS (INSERT INTO cdp.anchor_touches AS t (anchor_id, touches, first_at, first_event_id, first_channel, " \
	"first_source, first_medium, first_campaign, first_referrer, last_at, last_event_id, last_channel, " \
	"last_source, last_medium, last_campaign, last_referrer) " \
	"SELECT anchor_id, pg_catalog.count(*), " \
	"pg_catalog.max(occurred_at) FILTER (WHERE rf = 1), pg_catalog.max(event_id) FILTER (WHERE rf = 1), " \
	"pg_catalog.max(channel) FILTER (WHERE rf = 1), pg_catalog.max(src) FILTER (WHERE rf = 1), " \
	"pg_catalog.max(med) FILTER (WHERE rf = 1), pg_catalog.max(campaign) FILTER (WHERE rf = 1), " \
	"pg_catalog.max(referrer) FILTER (WHERE rf = 1), " \
	"pg_catalog.max(occurred_at) FILTER (WHERE rl = 1), pg_catalog.max(event_id) FILTER (WHERE rl = 1), " \
	"pg_catalog.max(channel) FILTER (WHERE rl = 1), pg_catalog.max(src) FILTER (WHERE rl = 1), " \
	"pg_catalog.max(med) FILTER (WHERE rl = 1), pg_catalog.max(campaign) FILTER (WHERE rl = 1), " \
	"pg_catalog.max(referrer) FILTER (WHERE rl = 1) " \
	"FROM (SELECT anchor_id, occurred_at, event_id, channel, " \
	"coalesce(properties ->> 'utm_source', substring(properties ->> 'referrer' " \
	"FROM '^[A-Za-z][A-Za-z0-9+.-]*://(?:www\\.)?([^/:?#]+)')) AS src, " \
	"coalesce(properties ->> 'utm_medium', CASE WHEN properties ? 'referrer' THEN 'referral' END) AS med, " \
	"properties ->> 'utm_campaign' AS campaign, properties ->> 'referrer' AS referrer, " \
	"pg_catalog.row_number() OVER (PARTITION BY anchor_id ORDER BY occurred_at, event_id) AS rf, " \
	"pg_catalog.row_number() OVER (PARTITION BY anchor_id ORDER BY occurred_at DESC, event_id DESC) AS rl " \
	"FROM ev WHERE properties ?| ARRAY['utm_source', 'referrer']) s GROUP BY anchor_id " \
	"ON CONFLICT (anchor_id) DO UPDATE SET touches = t.touches + excluded.touches, " \
	EARLIER("first_at") ", " EARLIER("first_event_id") ", " EARLIER("first_channel") ", " \
	EARLIER("first_source") ", " EARLIER("first_medium") ", " EARLIER("first_campaign") ", " \
	EARLIER("first_referrer") ", " LATER("last_at") ", " LATER("last_event_id") ", " \
	LATER("last_channel") ", " LATER("last_source") ", " LATER("last_medium") ", " \
	LATER("last_campaign") ", " LATER("last_referrer") " RETURNING 1), " \
	/* the latest events, copied */ \
	"re AS (INSERT INTO cdp.anchor_recent_events (anchor_id, occurred_at, event_id, channel, type, amount, " \
	"source, properties) SELECT anchor_id, occurred_at, event_id, channel, type, amount, source, properties " \
	"FROM (SELECT ev.*, pg_catalog.row_number() OVER (PARTITION BY anchor_id " \
	"ORDER BY occurred_at DESC, event_id DESC) AS rn FROM ev) s WHERE rn <= " KEEP " RETURNING anchor_id) " \
	"SELECT (SELECT pg_catalog.count(*) FROM ev), " \
	"(SELECT pg_catalog.array_agg(DISTINCT anchor_id) FROM (SELECT anchor_id FROM prod " \
	"UNION ALL SELECT anchor_id FROM re) g)"

/* Keeps the latest KEEP entries of the bounded lists of anchors $1. */
static void
trim_lists(Datum anchors)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {anchors};

	cdp_spi_run_kept("DELETE FROM cdp.anchor_recent_events r USING (SELECT anchor_id, occurred_at, event_id, "
				"pg_catalog.row_number() OVER (PARTITION BY anchor_id ORDER BY occurred_at DESC, event_id DESC) AS rn "
				"FROM cdp.anchor_recent_events WHERE anchor_id = ANY ($1)) x "
				"WHERE x.rn > " KEEP " AND r.anchor_id = ANY ($1) AND r.anchor_id = x.anchor_id "
				"AND r.occurred_at = x.occurred_at AND r.event_id = x.event_id",
				1, types, values, SPI_OK_DELETE);
	cdp_spi_run_kept("DELETE FROM cdp.anchor_products p USING (SELECT anchor_id, action, product_id, "
				"pg_catalog.row_number() OVER (PARTITION BY anchor_id, action ORDER BY last_at DESC, last_event_id DESC) AS rn "
				"FROM cdp.anchor_products WHERE anchor_id = ANY ($1)) x "
				"WHERE x.rn > " KEEP " AND p.anchor_id = ANY ($1) AND p.anchor_id = x.anchor_id "
				"AND p.action = x.action AND p.product_id = x.product_id",
				1, types, values, SPI_OK_DELETE);
}

/*
 * Runs FOLD over the events of sql (NEW_EVENTS or ALL_EVENTS FOLD) with
 * arguments a, b, c and trims the lists it grew; returns the events.
 */
static int64
fold(const char *sql, int64 a, int64 b, int64 c)
{
	Oid			types[3] = {INT8OID, INT8OID, INT8OID};
	Datum		values[3] = {Int64GetDatum(a), Int64GetDatum(b), Int64GetDatum(c)};
	bool		isnull;
	Datum		anchors;
	int64		events;
	int			nest = NewGUCNestLevel();

	/*
	 * Hash joins only: the new events are a batch the statistics have not
	 * seen yet (often in partitions never analyzed), estimated at a few
	 * rows, which makes the planner pick nested loops over the batch.  No
	 * JIT: the cost of a disabled plan type passes its thresholds, and
	 * compiling the statement takes longer than running it.
	 */
	(void) set_config_option("enable_nestloop", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/*
	 * One plan for every batch (planning the statement costs milliseconds,
	 * more than folding in a cdp.track): its scans take their ranges at run
	 * time from the batches, and hash joins suit every size.
	 */
	(void) set_config_option("plan_cache_mode", "force_generic_plan", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* the statement sorts the batch six ways: in memory if it can */
	(void) set_config_option("work_mem", "65536", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	cdp_spi_run_kept(sql, 3, types, values, SPI_OK_SELECT);
	events = cdp_spi_int64(0, 1);
	anchors = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
	{
		anchors = PointerGetDatum(PG_DETOAST_DATUM_COPY(anchors));
		trim_lists(anchors);
	}
	AtEOXact_GUC(true, nest);
	return events;
}

/* Takes the store's lock (until the transaction ends). */
static void
store_lock(void)
{
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(STORE_LOCK_KEY1),
						Int32GetDatum(STORE_LOCK_KEY2));
}

/* Whether this transaction holds the store's lock. */
bool
cdp_profile_store_lock_held(void)
{
	return cdp_advisory_lock_held(STORE_LOCK_KEY1, STORE_LOCK_KEY2);
}

/* The last visible batch (SPI connected). */
static int64
last_batch(void)
{
	cdp_spi_run("SELECT coalesce(pg_catalog.max(batch_id), 0) FROM cdp.stitch_batches",
				0, NULL, NULL, SPI_OK_SELECT);
	return cdp_spi_int64(0, 1);
}

/*
 * Recomputes the store from every event stitched up to the last visible
 * batch (lock held, SPI connected), which it sets in *upto; returns the
 * events.
 */
static int64
rebuild(int64 *upto_out)
{
	int64		upto = *upto_out = last_batch();
	int64		lo,
				hi,
				events = 0;
	Oid			types[1] = {INT8OID};
	Datum		values[1];

	cdp_spi_run("TRUNCATE cdp.anchor_activity, cdp.anchor_products, cdp.anchor_interest, "
				"cdp.anchor_traits, cdp.anchor_touches, cdp.anchor_recent_events",
				0, NULL, NULL, SPI_OK_UTILITY);
	values[0] = Int64GetDatum(upto);
	cdp_spi_run("SELECT coalesce(pg_catalog.min(first_event_id), 0), coalesce(pg_catalog.max(last_event_id), -1) "
				"FROM cdp.stitch_batches WHERE batch_id <= $1", 1, types, values, SPI_OK_SELECT);
	lo = cdp_spi_int64(0, 1);
	hi = cdp_spi_int64(0, 2);
	for (; lo <= hi; lo += REBUILD_CHUNK)
	{
		CHECK_FOR_INTERRUPTS();
		events += fold(ALL_EVENTS FOLD, lo, upto, lo + REBUILD_CHUNK);
	}
	cdp_spi_run("INSERT INTO cdp.profile_store_progress AS p (last_batch_id, synced_at, rebuilt_at) "
				"VALUES ($1, pg_catalog.now(), pg_catalog.now()) ON CONFLICT (singleton) DO UPDATE SET "
				"last_batch_id = excluded.last_batch_id, needs_full = false, synced_at = excluded.synced_at, "
				"rebuilt_at = excluded.rebuilt_at",
				1, types, values, SPI_OK_INSERT);
	return events;
}

/*
 * Folds in the batches after the store's last one, in order, until they
 * hold max_events events (at least one batch; max_events <= 0: all), in
 * units of at most UNIT_EVENTS events (lock held, SPI connected).  A store
 * that needs a rebuild is rebuilt instead, if rebuild_allowed.  Sets all
 * but pending in the result.
 */
static CdpSyncResult
store_sync(int64 max_events, bool rebuild_allowed)
{
	CdpSyncResult r = {0};
	int64		done;
	bool		isnull,
				more = true;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];

	/*
	 * The progress row, locked: a delete that commits meanwhile marks the
	 * store for a rebuild after this run, not before it.  No row: nothing
	 * folded yet (a new database; an upgraded one with events gets a row
	 * that asks for a rebuild).
	 */
	if (cdp_spi_run_kept("SELECT last_batch_id, needs_full FROM cdp.profile_store_progress FOR UPDATE",
						 0, NULL, NULL, SPI_OK_SELECT) == 0)
		done = 0;
	else if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
	{
		if (!rebuild_allowed)
			return r;			/* left to the worker or cdp.sync */
		done = -1;
	}
	else
		done = cdp_spi_int64(0, 1);
	if (done < 0)
	{
		r.events = rebuild(&done);
		r.rebuilt = true;
	}
	else
		while (more)
		{
			int64		budget = max_events > 0 ? Min(max_events - r.events, UNIT_EVENTS) : UNIT_EVENTS;
			int64		upto,
						n;

			if (max_events > 0 && r.events >= max_events)
				break;

			/*
			 * The batches up to the one that reaches the budget, and whether
			 * any are left after them (so that the last unit needs no query
			 * that finds nothing: a load without the worker runs one unit)
			 */
			values[0] = Int64GetDatum(done);
			values[1] = Int64GetDatum(budget);
			cdp_spi_run_kept("SELECT coalesce(pg_catalog.max(batch_id) FILTER (WHERE before < $2), 0), "
							 "pg_catalog.count(*) FILTER (WHERE before < $2), "
							 "pg_catalog.count(*) FILTER (WHERE before >= $2) > 0 OR pg_catalog.count(*) = "
							 BATCHES_PER_READ " FROM ("
							 "SELECT batch_id, pg_catalog.sum(events) OVER (ORDER BY batch_id) - events AS before "
							 "FROM (SELECT batch_id, events FROM cdp.stitch_batches WHERE batch_id > $1 "
							 "ORDER BY batch_id LIMIT " BATCHES_PER_READ ") b) c",
							 2, types, values, SPI_OK_SELECT);
			upto = cdp_spi_int64(0, 1);
			n = cdp_spi_int64(0, 2);
			more = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
			if (n == 0)
				break;
			CHECK_FOR_INTERRUPTS();
			r.events += fold(NEW_EVENTS FOLD, done, upto, 0);
			r.batches += n;
			done = upto;
		}
	values[0] = Int64GetDatum(done);
	if (!r.rebuilt && r.batches > 0)
		cdp_spi_run_kept("INSERT INTO cdp.profile_store_progress AS p (last_batch_id, synced_at) "
						 "VALUES ($1, pg_catalog.now()) ON CONFLICT (singleton) DO UPDATE SET "
						 "last_batch_id = excluded.last_batch_id, synced_at = excluded.synced_at",
						 1, types, values, SPI_OK_INSERT);
	r.last_batch = done;
	return r;
}

/* Whether the store's tables exist (not under the 0.1.0 schema). */
bool
cdp_store_installed(void)
{
	return OidIsValid(get_relname_relid("profile_store_progress", get_namespace_oid("cdp", false)));
}

/*
 * At the end of a loading statement that stitched events: without a
 * worker serving this database, the store folds them in at once, in the
 * loading transaction, so that it is as current as the identity graph
 * (not before the statement's end: COPY buffers rows, and the store reads
 * the events from the table); with one, the worker does it after the
 * commit and the load does not wait.  A load never waits for the store:
 * if another transaction holds its lock (a cdp.sync, a cdp.profile that
 * folds), the events stay pending for the next fold, which keeps the two
 * locks from ever being taken in both orders; nor does it rebuild the
 * store (after deletes), which is left to the worker or cdp.sync.
 */
void
cdp_store_after_stitching(void)
{
	if (cdp_worker_serves_here() || !cdp_store_installed())
		return;
	if (!DatumGetBool(DirectFunctionCall2(pg_try_advisory_xact_lock_int4, Int32GetDatum(STORE_LOCK_KEY1),
										  Int32GetDatum(STORE_LOCK_KEY2))))
		return;
	cdp_spi_connect();
	(void) store_sync(0, false);
	cdp_spi_finish();
}

/*
 * Takes the store's lock, then syncs (SPI connected); see store_sync.  Also
 * counts the events still pending, for cdp.sync and the worker.
 */
CdpSyncResult
cdp_store_sync_locked(int64 max_events)
{
	CdpSyncResult r;
	Oid			types[1] = {INT8OID};
	Datum		values[1];

	store_lock();
	r = store_sync(max_events, true);
	values[0] = Int64GetDatum(r.last_batch);
	cdp_spi_run_kept("SELECT coalesce(pg_catalog.sum(events), 0)::bigint FROM cdp.stitch_batches WHERE batch_id > $1",
					 1, types, values, SPI_OK_SELECT);
	r.pending = cdp_spi_int64(0, 1);
	return r;
}

/* cdp.sync(max_events): folds pending batches into the store. */
Datum
cdp_sync(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		v[4];
	bool		nulls[4] = {false, false, false, false};
	CdpSyncResult r;
	bool		more;

	if (!PG_ARGISNULL(0) && PG_GETARG_INT64(0) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be positive, not " INT64_FORMAT, PG_GETARG_INT64(0)),
				 errhint("Pass NULL (the default) to fold in every pending event.")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "cdp.sync must return a row");
	cdp_spi_connect();
	/* bulk loads' events first: what the session committed is in the store */
	(void) cdp_stitch_queue_settle(0, &more);
	r = cdp_store_sync_locked(PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0));
	cdp_spi_finish();
	v[0] = Int64GetDatum(r.batches);
	v[1] = Int64GetDatum(r.events);
	v[2] = BoolGetDatum(r.rebuilt);
	v[3] = Int64GetDatum(r.pending);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), v, nulls)));
}

/* cdp.rebuild_profile_store(): recomputes the store from the events. */
Datum
cdp_rebuild_profile_store(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		v[2];
	bool		nulls[2] = {false, false};
	int64		events,
				upto;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "cdp.rebuild_profile_store must return a row");
	cdp_spi_connect();
	store_lock();
	events = rebuild(&upto);
	cdp_spi_run("SELECT pg_catalog.count(DISTINCT anchor_id) FROM cdp.anchor_activity",
				0, NULL, NULL, SPI_OK_SELECT);
	v[0] = Int64GetDatum(cdp_spi_int64(0, 1));
	v[1] = Int64GetDatum(events);
	cdp_spi_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), v, nulls)));
}

/*
 * Marks the store for a rebuild at the next sync (events were deleted);
 * nothing under the 0.1.0 schema, which has no store.
 */
void
cdp_store_needs_rebuild(void)
{
	if (!cdp_store_installed())
		return;
	cdp_spi_run("UPDATE cdp.profile_store_progress SET needs_full = true WHERE NOT needs_full",
				0, NULL, NULL, SPI_OK_UPDATE);
}
