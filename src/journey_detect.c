/*
 * journey_detect.c
 *	  cdp.detect_journey_breaks: keeps cdp.journey_breaks up to date by
 *	  replaying (journey.c) the profiles that changed since the last run.
 *
 * Detection replays, for each profile it revisits, the profile's whole
 * funnel history with the core and rewrites the profile's breaks.  It does
 * not keep CdpFunnelState bytes per (profile, funnel) between runs: a merge
 * interleaves two histories, an unmerge or rebuild splits one, and events
 * arrive late (a file of yesterday's events loaded after a run at now()),
 * and each of those needs the whole history again.  Replay makes every run
 * give exactly the journeys of one pass over the events, whatever happened
 * in between, and makes the output independent of how often detection runs.
 *
 * Which profiles a run revisits (see cdp_detect_journey_breaks below): the
 * profiles of the anchors of events stitched in batches after the last one
 * processed (cdp.stitch_batches), both profiles of merges and identifier
 * moves after the last ones processed (cdp.profile_merges,
 * cdp.identifier_moves), and the profiles whose next time-based transition
 * (a break, an expiry) or next event lies at or before the new as_of
 * (cdp.journey_pending).  Batch, merge and move numbers are all taken
 * under the stitching lock, held until commit, so they become visible in
 * order: reading the three maxima in one statement is a consistent cut,
 * and everything committed later is seen by the next run.  The watermarks
 * commit in the same transaction as the breaks they produced.  A first
 * run, a changed funnel definition, an earlier as_of than the last run's
 * or rebuild => true replay every profile.
 *
 * Reading: a full run reads every funnel event from cdp.events (journey.c)
 * and writes them, per anchor identifier, to the funnel event log
 * cdp.journey_events.  An incremental run appends to the log the funnel
 * events of the new batches (found by their event id ranges, BRIN) and
 * reads the history of the profiles it replays from the log, by index:
 * its cost follows the changes, not the size of the event store.
 *
 * Output: the breaks of the replayed profiles are deleted (remembering
 * when each was first detected, by funnel and first event, so that a break
 * found again keeps its detected_at, even after a merge) and written again
 * set-based (INSERT ... SELECT unnest of column arrays) every WRITE_CHUNK
 * rows, during the replay (the reads are over by then).
 *
 * Locking: detection takes its own transaction-level advisory lock, so two
 * runs never interleave.  Before it, a run by hand stitches what bulk
 * loads left queued (stitch_queue.c), under the stitching lock, so that it
 * sees every committed event; the worker's run leaves that to its own
 * stitching units.
 */
#include "journey.h"
#include "events.h"
#include "stitch_queue.h"
#include "identity.h"
#include "profile_store.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(cdp_detect_journey_breaks);
PG_FUNCTION_INFO_V1(cdp_events_deleted);


/* Rows written per INSERT. */
#define WRITE_CHUNK 10000

/* ----------------------------------------------------------------------
 * Output rows: column arrays written set-based (INSERT ... SELECT FROM
 * unnest) every WRITE_CHUNK rows, during the replay (the reads are over)
 * ----------------------------------------------------------------------
 */

/* Rows of one table on their way to it. */
typedef struct RowBuffer
{
	int			ncol;
	Oid		   *types;
	int16	   *lens;
	bool	   *byvals;
	char	   *aligns;
	Datum	  **vals;
	bool	  **nulls;
	int			n;
	int64		total;
	MemoryContext cxt;			/* the values of the rows not yet written */
	const char *sql;
	SPIPlanPtr	plan;
	double		ms;
} RowBuffer;

/* A buffer for rows of the given column types, written with sql. */
static void
rowbuf_init(RowBuffer *b, int ncol, const Oid *types, const char *sql)
{
	Oid		   *argtypes = palloc(sizeof(Oid) * ncol);
	int			c;

	memset(b, 0, sizeof(*b));
	b->ncol = ncol;
	b->types = palloc(sizeof(Oid) * ncol);
	b->lens = palloc(sizeof(int16) * ncol);
	b->byvals = palloc(sizeof(bool) * ncol);
	b->aligns = palloc(ncol);
	b->vals = palloc(sizeof(Datum *) * ncol);
	b->nulls = palloc(sizeof(bool *) * ncol);
	for (c = 0; c < ncol; c++)
	{
		b->types[c] = types[c];
		argtypes[c] = get_array_type(types[c]);
		get_typlenbyvalalign(types[c], &b->lens[c], &b->byvals[c], &b->aligns[c]);
		b->vals[c] = palloc(sizeof(Datum) * WRITE_CHUNK);
		b->nulls[c] = palloc(sizeof(bool) * WRITE_CHUNK);
	}
	/* one block kept across chunks: no memory given back and faulted in again */
	b->cxt = AllocSetContextCreate(CurrentMemoryContext, "cdp journeys rows",
								   16 * 1024 * 1024, 16 * 1024 * 1024, 16 * 1024 * 1024);
	b->sql = sql;
	b->plan = SPI_prepare(sql, ncol, argtypes);
	if (b->plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
}

/* Writes the rows of the buffer. */
static void
rowbuf_flush(RowBuffer *b)
{
	Datum	   *args;
	int			dims[1];
	int			lbs[1] = {1};
	instr_time	t0,
				t1;
	int			c;
	int			ret;
	MemoryContext old;

	if (b->n == 0)
		return;
	INSTR_TIME_SET_CURRENT(t0);
	old = MemoryContextSwitchTo(b->cxt);
	args = palloc(sizeof(Datum) * b->ncol);
	dims[0] = b->n;
	for (c = 0; c < b->ncol; c++)
		args[c] = PointerGetDatum(construct_md_array(b->vals[c], b->nulls[c], 1, dims, lbs, b->types[c],
													 b->lens[c], b->byvals[c], b->aligns[c]));
	MemoryContextSwitchTo(old);
	ret = SPI_execute_plan(b->plan, args, NULL, false, 0);
	if (ret < 0)
		elog(ERROR, "could not write journeys: %s", SPI_result_code_string(ret));
	b->total += b->n;
	b->n = 0;
	MemoryContextReset(b->cxt);
	INSTR_TIME_SET_CURRENT(t1);
	INSTR_TIME_SUBTRACT(t1, t0);
	b->ms += INSTR_TIME_GET_MILLISEC(t1);
}

/*
 * Adds a row whose values were made in b->cxt (or are passed by value);
 * writes the buffer when it is full.
 */
static void
rowbuf_add(RowBuffer *b, const Datum *v, const bool *nulls)
{
	int			c;

	for (c = 0; c < b->ncol; c++)
	{
		b->vals[c][b->n] = v[c];
		b->nulls[c][b->n] = nulls[c];
	}
	if (++b->n == WRITE_CHUNK)
		rowbuf_flush(b);
}

/* Writes what is left and forgets the buffer. */
static void
rowbuf_end(RowBuffer *b)
{
	rowbuf_flush(b);
	SPI_freeplan(b->plan);
	MemoryContextDelete(b->cxt);
	elog(DEBUG1, "cdp journeys: wrote " INT64_FORMAT " rows in %.1f ms: %.40s", b->total, b->ms, b->sql);
}

/* ----------------------------------------------------------------------
 * Detection
 * ----------------------------------------------------------------------
 */

/* What a detection run carries to its sinks. */
typedef struct Detection
{
	RowBuffer	breaks;
	RowBuffer	pending;
	RowBuffer	log;			/* rows of cdp.journey_events */
	HTAB	   *detected;		/* (funnel, first_event_id) -> detected_at */
	int64		n_breaks;
	int64		n_open;
	TimestampTz now;
} Detection;

/* Key and entry of Detection.detected. */
typedef struct DetectedKey
{
	int64		first_event_id;
	int32		funnel;
	int32		pad;
} DetectedKey;

typedef struct DetectedEntry
{
	DetectedKey key;
	TimestampTz detected_at;
} DetectedEntry;

#define N_BREAK_COLS 17
static const Oid break_types[N_BREAK_COLS] = {
	INT8OID,					/* profile_id */
	TEXTOID,					/* funnel_id */
	INT8OID,					/* journey_no */
	INT8OID,					/* first_event_id */
	TIMESTAMPTZOID,				/* started_at */
	INT4OID,					/* reached_step */
	INT4OID,					/* break_step */
	TIMESTAMPTZOID,				/* last_event_at */
	INT8OID,					/* last_event_id */
	TIMESTAMPTZOID,				/* broken_at */
	TEXTOID,					/* channel */
	TEXTOID,					/* status */
	TIMESTAMPTZOID,				/* resolved_at */
	TEXTOID,					/* resolved_channel */
	INT8OID,					/* resolved_event_id */
	JSONBOID,					/* context */
	TIMESTAMPTZOID				/* detected_at */
};

#define N_LOG_COLS 2
static const Oid log_types[N_LOG_COLS] = {
	INT8OID,					/* anchor_id */
	BYTEAOID					/* events */
};

/* Orders events by anchor, then time and id. */
static int
anchor_cmp(const void *a, const void *b)
{
	const JEvent *x = (const JEvent *) a;
	const JEvent *y = (const JEvent *) b;

	if (x->anchor_id != y->anchor_id)
		return x->anchor_id < y->anchor_id ? -1 : 1;
	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	return x->event_id < y->event_id ? -1 : x->event_id > y->event_id;
}

/*
 * Adds funnel events to the log cdp.journey_events: one row per anchor,
 * its events packed (journey.c).  Reorders ev.
 */
static void
log_add(Detection *d, Replay *rp, JEvent *ev, int n)
{
	StringInfoData buf;
	int			a;
	int			b;

	qsort(ev, n, sizeof(JEvent), anchor_cmp);
	for (a = 0; a < n; a = b)
	{
		Datum		v[N_LOG_COLS];
		bool		nulls[N_LOG_COLS] = {false, false};
		MemoryContext old = MemoryContextSwitchTo(d->log.cxt);
		bytea	   *packed;

		initStringInfo(&buf);
		for (b = a; b < n && ev[b].anchor_id == ev[a].anchor_id; b++)
			cdp_journey_pack_event(&buf, rp, &ev[b]);
		packed = palloc(VARHDRSZ + buf.len);
		SET_VARSIZE(packed, VARHDRSZ + buf.len);
		memcpy(VARDATA(packed), buf.data, buf.len);
		pfree(buf.data);
		v[0] = Int64GetDatum(ev[a].anchor_id);
		v[1] = PointerGetDatum(packed);
		MemoryContextSwitchTo(old);
		rowbuf_add(&d->log, v, nulls);
	}
}

/* The event sink of a full run: each replayed profile's events go to the log. */
static void
log_profile_events(Replay *rp, JEvent *ev, int n)
{
	log_add((Detection *) rp->sink_arg, rp, ev, n);
}

/*
 * Adds the funnel events of new batches to the log; returns their distinct
 * anchors as a bigint[].
 */
static Datum
log_events(Detection *d, Replay *rp, JEvent *ev, int n)
{
	int64	   *anchors = palloc(sizeof(int64) * (n + 1));
	int			m = 0;
	int			i;

	log_add(d, rp, ev, n);
	for (i = 0; i < n; i++)
		anchors[i] = ev[i].anchor_id;
	qsort(anchors, n, sizeof(int64), cdp_compare_int64);
	for (i = 0; i < n; i++)
		if (m == 0 || anchors[m - 1] != anchors[i])
			anchors[m++] = anchors[i];
	return cdp_int64_array(anchors, m, INT8OID);
}

/* Pushes a string member of a jsonb object under construction. */
static void
push_key_string(JsonbParseState **st, const char *key, const char *val)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
	if (val == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) val;
		v.val.string.len = strlen(val);
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

/*
 * The context of a break: the products and cart value of the journey up
 * to the break, its channel and last page.
 */
static Datum
break_context(Replay *rp, const CdpJourney *j, const Tracker *t)
{
	JsonbParseState *st = NULL;
	JsonbValue	k;
	JsonbValue	v;
	JsonbValue *res;
	int			i;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = "products";
	k.val.string.len = 8;
	pushJsonbValue(&st, WJB_KEY, &k);
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < t->n_break_products; i++)
	{
		v.type = jbvString;
		v.val.string.val = rp->products.names[t->break_products[i]];
		v.val.string.len = rp->products.lens[t->break_products[i]];
		pushJsonbValue(&st, WJB_ELEM, &v);
	}
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	k.val.string.val = "cart_value";
	k.val.string.len = 10;
	pushJsonbValue(&st, WJB_KEY, &k);
	if (isnan(t->break_cart_value) || isinf(t->break_cart_value))
		v.type = jbvNull;
	else
	{
		v.type = jbvNumeric;
		v.val.numeric = DatumGetNumeric(DirectFunctionCall1(float8_numeric,
															Float8GetDatum(t->break_cart_value)));
	}
	pushJsonbValue(&st, WJB_VALUE, &v);
	push_key_string(&st, "channel", rp->channels.names[j->break_channel]);
	push_key_string(&st, "last_page", t->break_page >= 0 ? rp->pages.names[t->break_page] : NULL);
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/* Detection's journey sink: keeps the journeys that broke. */
static void
detect_journey(Replay *rp, int64 profile, int funnel, const CdpJourney *j, const Tracker *t)
{
	Detection  *d = (Detection *) rp->sink_arg;
	const Funnel *f = &rp->setup->funnels[funnel];
	Datum		v[N_BREAK_COLS];
	bool		nulls[N_BREAK_COLS];
	DetectedKey key;
	DetectedEntry *found = NULL;
	bool		resolved = j->status == CDP_JOURNEY_RECOVERED ||
		j->status == CDP_JOURNEY_CONVERTED_ELSEWHERE ||
		j->status == CDP_JOURNEY_EXPIRED;
	MemoryContext old;

	if (!j->broken)
		return;
	old = MemoryContextSwitchTo(d->breaks.cxt);
	memset(nulls, 0, sizeof(nulls));
	v[0] = Int64GetDatum(profile);
	v[1] = CStringGetTextDatum(f->id);
	v[2] = Int64GetDatum(j->journey_no);
	v[3] = Int64GetDatum(j->first_event_id);
	v[4] = cdp_journey_time_datum(j->started_at);
	v[5] = Int32GetDatum(j->reached_step);
	v[6] = Int32GetDatum(j->break_step);
	v[7] = cdp_journey_time_datum(j->broken_at - f->def.abandon_after);
	v[8] = Int64GetDatum(j->break_event_id);
	v[9] = cdp_journey_time_datum(j->broken_at);
	v[10] = CStringGetTextDatum(rp->channels.names[j->break_channel]);
	v[11] = CStringGetTextDatum(cdp_journey_status_name(j->status));
	if (resolved)
		v[12] = cdp_journey_time_datum(j->resolved_at);
	else
		nulls[12] = true;
	if (resolved && j->status != CDP_JOURNEY_EXPIRED)
	{
		v[13] = CStringGetTextDatum(rp->channels.names[j->resolved_channel]);
		v[14] = Int64GetDatum(j->resolved_event_id);
	}
	else
		nulls[13] = nulls[14] = true;
	v[15] = break_context(rp, j, t);
	memset(&key, 0, sizeof(key));
	key.first_event_id = j->first_event_id;
	key.funnel = funnel;
	if (d->detected != NULL)
		found = hash_search(d->detected, &key, HASH_FIND, NULL);
	v[16] = TimestampTzGetDatum(found ? found->detected_at : d->now);
	MemoryContextSwitchTo(old);
	rowbuf_add(&d->breaks, v, nulls);
	d->n_breaks++;
	if (j->status == CDP_JOURNEY_OPEN)
		d->n_open++;
}

/* Detection's wake sink: when the profile must be replayed again. */
static void
detect_wake(Replay *rp, int64 profile, int64 wake_at)
{
	Detection  *d = (Detection *) rp->sink_arg;
	Datum		v[2];
	bool		nulls[2] = {false, false};

	v[0] = Int64GetDatum(profile);
	v[1] = cdp_journey_time_datum(wake_at);
	rowbuf_add(&d->pending, v, nulls);
}

/*
 * Deletes the breaks and pending wake-ups of the given profiles (all when
 * profiles is NULL), remembering when each deleted break was first
 * detected, so that a break found again keeps its detected_at (after a
 * merge too: journeys are known by their funnel and first event).
 */
static void
delete_previous(Detection *d, Setup *setup, Datum profiles)
{
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1] = {profiles};
	char		nulls[1] = {profiles == (Datum) 0 ? 'n' : ' '};
	HASHCTL		ctl;
	uint64		r;

	cdp_spi_exec("DELETE FROM cdp.journey_breaks WHERE $1 IS NULL OR profile_id = ANY ($1) "
				 "RETURNING funnel_id, first_event_id, detected_at",
				 1, types, values, nulls, SPI_OK_DELETE_RETURNING);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(DetectedKey);
	ctl.entrysize = sizeof(DetectedEntry);
	ctl.hcxt = CurrentMemoryContext;
	d->detected = hash_create("cdp journeys detected_at", Max(SPI_processed, 64), &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *funnel = SPI_getvalue(t, desc, 1);
		DetectedKey key;
		DetectedEntry *e;
		bool		found;

		memset(&key, 0, sizeof(key));
		key.funnel = cdp_journey_setup_funnel(setup, funnel);
		key.first_event_id = DatumGetInt64(SPI_getbinval(t, desc, 2, &isnull));
		if (key.funnel < 0)
			continue;
		e = hash_search(d->detected, &key, HASH_ENTER, &found);
		e->detected_at = DatumGetTimestampTz(SPI_getbinval(t, desc, 3, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	cdp_spi_exec("DELETE FROM cdp.journey_pending WHERE $1 IS NULL OR profile_id = ANY ($1)",
				 1, types, values, nulls, SPI_OK_DELETE);
}

/* Where the last run stopped and where this one goes (see the header). */
typedef struct Watermarks
{
	bool		first_run;
	bool		full;			/* replay every profile */
	int64		old_batch;
	int64		old_merge;
	int64		old_move;
	int64		new_batch;
	int64		new_merge;
	int64		new_move;
	Datum		funnels;		/* text: the funnel definitions now */
} Watermarks;

/* The arguments of cdp.detect_journey_breaks, checked; returns as_of. */
static TimestampTz
detect_args(FunctionCallInfo fcinfo, bool *full)
{
	TimestampTz as_of;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("as_of must not be null"),
				 errhint("Pass the time up to which events count, usually now().")));
	as_of = PG_GETARG_TIMESTAMPTZ(0);
	if (TIMESTAMP_NOT_FINITE(as_of))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("as_of must be a finite time"),
				 errhint("Pass the time up to which events count, usually now().")));
	*full = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cdp.detect_journey_breaks cannot run in a repeatable read or serializable transaction"),
				 errhint("Run it in a read committed transaction: it must see what was committed while it waited for a previous run.")));
	return as_of;
}

/*
 * The last run, and a consistent cut of the journals (see the header):
 * sets w; a run is full when asked, the first, after a change of the
 * funnels or a deletion of events, or for an earlier as_of.
 */
static void
read_watermarks(TimestampTz as_of, bool full, Watermarks *w)
{
	HeapTuple	t;
	TupleDesc	td;
	bool		isnull;
	Datum		last_as_of;

	cdp_spi_read("SELECT p.as_of, p.last_batch_id, p.last_merge_id, p.last_move_id, "
				 "p.funnels IS NOT DISTINCT FROM f.defs AND NOT p.needs_full, "
				 "(SELECT coalesce(max(batch_id), 0) FROM cdp.stitch_batches), "
				 "(SELECT coalesce(max(merge_id), 0) FROM cdp.profile_merges), "
				 "(SELECT coalesce(max(move_id), 0) FROM cdp.identifier_moves), "
				 "f.defs::text "
				 "FROM (SELECT coalesce(jsonb_object_agg(funnel_id, jsonb_build_array(steps, "
				 "extract(epoch FROM conversion_window), extract(epoch FROM abandon_after), min_step)), '{}') AS defs "
				 "FROM cdp.funnels) f "
				 "LEFT JOIN cdp.journey_progress p ON true",
				 0, NULL, NULL, NULL);
	t = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	memset(w, 0, sizeof(Watermarks));
	last_as_of = SPI_getbinval(t, td, 1, &isnull);
	w->first_run = isnull;
	w->full = full || w->first_run;
	if (!w->first_run)
	{
		w->old_batch = DatumGetInt64(SPI_getbinval(t, td, 2, &isnull));
		w->old_merge = DatumGetInt64(SPI_getbinval(t, td, 3, &isnull));
		w->old_move = DatumGetInt64(SPI_getbinval(t, td, 4, &isnull));
		if (!DatumGetBool(SPI_getbinval(t, td, 5, &isnull)))
			w->full = true;		/* a funnel was added, changed or removed, or events deleted */
		if (as_of < DatumGetTimestampTz(last_as_of))
			w->full = true;		/* statuses at an earlier time */
	}
	w->new_batch = DatumGetInt64(SPI_getbinval(t, td, 6, &isnull));
	w->new_merge = DatumGetInt64(SPI_getbinval(t, td, 7, &isnull));
	w->new_move = DatumGetInt64(SPI_getbinval(t, td, 8, &isnull));
	w->funnels = CStringGetTextDatum(SPI_getvalue(t, td, 9));
}

/*
 * An incremental run: logs the funnel events of the new batches, then
 * returns the profiles to replay (0 if none, *n gets their number): those
 * of the anchors of new funnel events, both sides of new merges and moves
 * (and where they live now), and those due for a transition or a later
 * event.
 */
static Datum
profiles_to_replay(Detection *d, Replay *rp, const Watermarks *w, TimestampTz as_of, int64 *n)
{
	Oid			types[6] = {INT8OID, INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID, INT8ARRAYOID};
	Datum		values[6];
	Datum		profiles;
	bool		isnull;

	cdp_journey_read_batches(rp, w->old_batch, w->new_batch);
	values[5] = log_events(d, rp, rp->all, (int) Min(rp->n_all, PG_INT32_MAX));
	rowbuf_flush(&d->log);		/* the replay reads them */
	MemoryContextReset(rp->pass_cxt);

	values[0] = Int64GetDatum(w->old_merge);
	values[1] = Int64GetDatum(w->new_merge);
	values[2] = Int64GetDatum(w->old_move);
	values[3] = Int64GetDatum(w->new_move);
	values[4] = TimestampTzGetDatum(as_of);
	cdp_spi_run("SELECT array_agg(DISTINCT p), count(DISTINCT p) FROM ("
				"SELECT i.profile_id AS p FROM cdp.identifiers i "
				"WHERE i.identifier_id = ANY ($6) "
				"UNION ALL SELECT unnest(ARRAY[m.survivor, m.absorbed, s.merged_into, x.merged_into]) "
				"FROM cdp.profile_merges m "
				"LEFT JOIN cdp.profiles s ON s.profile_id = m.survivor "
				"LEFT JOIN cdp.profiles x ON x.profile_id = m.absorbed "
				"WHERE m.merge_id > $1 AND m.merge_id <= $2 "
				"UNION ALL SELECT unnest(ARRAY[v.from_profile, v.to_profile, i.profile_id]) "
				"FROM cdp.identifier_moves v "
				"LEFT JOIN cdp.identifiers i ON i.identifier_id = v.identifier_id "
				"WHERE v.move_id > $3 AND v.move_id <= $4 "
				"UNION ALL SELECT profile_id FROM cdp.journey_pending WHERE due_at <= $5"
				") r WHERE p IS NOT NULL",
				6, types, values, SPI_OK_SELECT);
	profiles = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*n = cdp_spi_int64(0, 2);
	return *n == 0 ? (Datum) 0 : PointerGetDatum(DatumGetArrayTypePCopy(profiles));
}

/*
 * Replays the profiles (all when profiles is 0 and the run is full) and
 * writes their breaks and wake-ups in place of the previous ones.
 */
static void
replay_profiles(Detection *d, Setup *setup, Replay *rp, Datum profiles, bool full)
{
	Oid			pending_types[2] = {INT8OID, TIMESTAMPTZOID};

	delete_previous(d, setup, profiles);
	rowbuf_init(&d->breaks, N_BREAK_COLS, break_types,
				"INSERT INTO cdp.journey_breaks (profile_id, funnel_id, journey_no, first_event_id, "
				"started_at, reached_step, break_step, last_event_at, last_event_id, broken_at, channel, "
				"status, resolved_at, resolved_channel, resolved_event_id, context, detected_at) "
				"SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5), unnest($6), "
				"unnest($7), unnest($8), unnest($9), unnest($10), unnest($11), unnest($12), unnest($13), "
				"unnest($14), unnest($15), unnest($16), unnest($17)");
	rowbuf_init(&d->pending, 2, pending_types,
				"INSERT INTO cdp.journey_pending (profile_id, due_at) SELECT unnest($1), unnest($2)");
	cdp_journey_replay_read(rp, profiles, !full);
	rowbuf_end(&d->breaks);
	rowbuf_end(&d->pending);
}

/* The watermarks, in the same transaction as the breaks. */
static void
write_watermarks(TimestampTz as_of, const Watermarks *w)
{
	Oid			types[5] = {TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID, TEXTOID};
	Datum		values[5];

	values[0] = TimestampTzGetDatum(as_of);
	values[1] = Int64GetDatum(w->new_batch);
	values[2] = Int64GetDatum(w->new_merge);
	values[3] = Int64GetDatum(w->new_move);
	values[4] = w->funnels;
	cdp_spi_run("INSERT INTO cdp.journey_progress AS p (as_of, last_batch_id, last_merge_id, "
				"last_move_id, funnels, ran_at, needs_full) VALUES ($1, $2, $3, $4, $5::jsonb, now(), false) "
				"ON CONFLICT (singleton) DO UPDATE SET as_of = excluded.as_of, "
				"last_batch_id = excluded.last_batch_id, last_merge_id = excluded.last_merge_id, "
				"last_move_id = excluded.last_move_id, funnels = excluded.funnels, ran_at = now(), "
				"needs_full = false",
				5, types, values, SPI_OK_INSERT);
}

/*
 * cdp.detect_journey_breaks(as_of, full): brings cdp.journey_breaks up to
 * as_of, replaying the profiles that changed since the last run (or every
 * profile); returns what it did.
 */
Datum
cdp_detect_journey_breaks(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	TimestampTz as_of;
	bool		full;
	Setup	   *setup;
	Replay		rp;
	Detection	d;
	Watermarks	w;
	Datum		profiles = (Datum) 0;
	int64		n_revisit = -1;
	bool		more;
	Datum		result[5];
	bool		rnulls[5] = {false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	as_of = detect_args(fcinfo, &full);
	cdp_spi_connect();
	(void) cdp_stitch_queue_settle(0, &more);	/* bulk loads' events first */
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(JOURNEY_LOCK_KEY1),
						Int32GetDatum(JOURNEY_LOCK_KEY2));

	/*
	 * The funnels and the watermarks are read on one snapshot taken after
	 * the lock: a funnel changed while this run waited is seen by both.
	 */
	PushActiveSnapshot(GetTransactionSnapshot());
	setup = cdp_journey_load_setup(NULL, CurrentMemoryContext);
	read_watermarks(as_of, full, &w);
	PopActiveSnapshot();

	memset(&d, 0, sizeof(d));
	d.now = GetCurrentTransactionStartTimestamp();
	cdp_journey_replay_init(&rp, setup, as_of, true, false, detect_journey, detect_wake, &d);
	rp.notices = w.full;
	rowbuf_init(&d.log, N_LOG_COLS, log_types,
				"INSERT INTO cdp.journey_events AS j (anchor_id, events) SELECT unnest($1), unnest($2) "
				"ON CONFLICT (anchor_id) DO UPDATE SET events = j.events || excluded.events");
	if (!w.full)
		profiles = profiles_to_replay(&d, &rp, &w, as_of, &n_revisit);
	else
	{
		/* the log is rebuilt with the replay */
		cdp_spi_run("DELETE FROM cdp.journey_events", 0, NULL, NULL, SPI_OK_DELETE);
		rp.event_sink = log_profile_events;
	}
	if (w.full || n_revisit > 0)
		replay_profiles(&d, setup, &rp, profiles, w.full);
	rowbuf_end(&d.log);
	write_watermarks(as_of, &w);

	result[1] = Int64GetDatum(rp.n_profiles);
	result[2] = Int64GetDatum(rp.n_journeys);
	result[3] = Int64GetDatum(d.n_breaks);
	result[4] = Int64GetDatum(d.n_open);
	cdp_spi_finish();
	/* after SPI_finish: in the caller's memory */
	result[0] = CStringGetTextDatum(w.full ? "full" : "incremental");
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), result, rnulls)));
}

/*
 * AFTER DELETE OR TRUNCATE statement trigger of cdp.events and its
 * partitions: deleted events must leave the journeys and the funnel event
 * log, so the next run replays every profile, and the profile store, so
 * the next sync rebuilds it.  Not for the rows a loading statement removes
 * at its end (quarantined rows, retries): they were never stitched; nor for
 * the rows cdp.move_default_events moves: they are still stored.
 */
Datum
cdp_events_deleted(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!(TRIGGER_FIRED_BY_DELETE(td->tg_event) || TRIGGER_FIRED_BY_TRUNCATE(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdp.events_deleted() must be fired AFTER DELETE OR TRUNCATE FOR EACH STATEMENT")));
	if (cdp_batch_purging() || cdp_events_moving())
		return PointerGetDatum(NULL);
	cdp_spi_connect();
	cdp_spi_run("UPDATE cdp.journey_progress SET needs_full = true WHERE NOT needs_full",
				0, NULL, NULL, SPI_OK_UPDATE);
	cdp_store_needs_rebuild();
	cdp_spi_finish();
	return PointerGetDatum(NULL);
}
