/*
 * journey.c
 *	  Glue of journeys: the funnels of cdp.funnels, the funnel events of
 *	  profiles read and replayed through the state machine of
 *	  src/core/funnel.c, and cdp.journeys (every journey, for BI).
 *	  cdp.detect_journey_breaks (which keeps cdp.journey_breaks) is in
 *	  journey_detect.c; the aggregate and the session window function are
 *	  in journey_agg.c.
 *
 * Reading (see "Reading the funnel events of profiles" below): from
 * cdp.events, three plain scans of cdp.identifiers, cdp.event_anchors and
 * cdp.events joined in C with open-addressing maps; or, for detection's
 * incremental runs, the given profiles' events from the funnel event log
 * cdp.journey_events.  Then a counting sort of the events by profile; each
 * profile is replayed with the core and its journeys go to the caller's
 * sinks.  Memory stays within maintenance_work_mem by splitting the
 * profiles into passes when needed.
 */
#include "journey.h"
#include "identity.h"
#include "identity_store.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(cdp_journeys);

/* Profiles between two progress notices. */
#define PROGRESS_EVERY 200000

/* Microseconds of an interval (a month counts 30 days). */
int64
cdp_interval_usecs(const Interval *iv)
{
	return iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/* A timestamptz Datum of a core time (INT64_MAX is infinity). */
Datum
cdp_journey_time_datum(int64 t)
{
	return TimestampTzGetDatum(t == PG_INT64_MAX ? DT_NOEND : t);
}

/* ----------------------------------------------------------------------
 * Dictionaries
 * ----------------------------------------------------------------------
 */

/* Initializes an empty dictionary in cxt. */
static void
dict_init(Dict *d, MemoryContext cxt)
{
	memset(d, 0, sizeof(*d));
	d->cxt = cxt;
	d->cap = 16;
	d->n_buckets = 64;
	d->names = MemoryContextAlloc(cxt, sizeof(char *) * d->cap);
	d->lens = MemoryContextAlloc(cxt, sizeof(int) * d->cap);
	d->next = MemoryContextAlloc(cxt, sizeof(int) * d->cap);
	d->buckets = MemoryContextAlloc(cxt, sizeof(int) * d->n_buckets);
	memset(d->buckets, -1, sizeof(int) * d->n_buckets);
}

/* Number of a string (len bytes), added if new. */
static int
dict_intern(Dict *d, const char *s, int len)
{
	uint32		h = hash_bytes((const unsigned char *) s, len);
	int			i;

	for (i = d->buckets[h & (d->n_buckets - 1)]; i >= 0; i = d->next[i])
		if (d->lens[i] == len && memcmp(d->names[i], s, len) == 0)
			return i;
	if (d->n == d->cap)
	{
		d->cap *= 2;
		d->names = repalloc(d->names, sizeof(char *) * d->cap);
		d->lens = repalloc(d->lens, sizeof(int) * d->cap);
		d->next = repalloc(d->next, sizeof(int) * d->cap);
	}
	if (d->n * 2 >= d->n_buckets)
	{
		int			k;

		d->n_buckets *= 4;
		d->buckets = repalloc(d->buckets, sizeof(int) * d->n_buckets);
		memset(d->buckets, -1, sizeof(int) * d->n_buckets);
		for (k = 0; k < d->n; k++)
		{
			uint32		hk = hash_bytes((const unsigned char *) d->names[k], d->lens[k]);

			d->next[k] = d->buckets[hk & (d->n_buckets - 1)];
			d->buckets[hk & (d->n_buckets - 1)] = k;
		}
	}
	i = d->n++;
	d->names[i] = MemoryContextAlloc(d->cxt, len + 1);
	memcpy(d->names[i], s, len);
	d->names[i][len] = '\0';
	d->lens[i] = len;
	d->next[i] = d->buckets[h & (d->n_buckets - 1)];
	d->buckets[h & (d->n_buckets - 1)] = i;
	return i;
}

/* ----------------------------------------------------------------------
 * Funnels
 * ----------------------------------------------------------------------
 */

/* Index of a type among the setup's step types (len bytes), or -1. */
int
cdp_journey_setup_type(const Setup *s, const char *type, int len)
{
	int			i;

	for (i = 0; i < s->n_types; i++)
		if (s->type_lens[i] == len && memcmp(s->types[i], type, len) == 0)
			return i;
	return -1;
}

/*
 * Reads cdp.funnels (one funnel if only is not NULL) into cxt; SPI must be
 * connected.  A definition the core refuses is an error.
 */
Setup *
cdp_journey_load_setup(const char *only, MemoryContext cxt)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char		nulls[1];
	Setup	   *s;
	uint64		r;
	int			k;
	MemoryContext old;

	values[0] = only ? CStringGetTextDatum(only) : (Datum) 0;
	nulls[0] = only ? ' ' : 'n';
	cdp_spi_read("SELECT funnel_id, steps, conversion_window, abandon_after, min_step "
				 "FROM cdp.funnels WHERE $1 IS NULL OR funnel_id = $1 "
				 "ORDER BY funnel_id COLLATE \"C\"",
				 1, types, values, nulls);
	if (only != NULL && SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("funnel \"%s\" does not exist", only),
				 errhint("Funnels are listed in cdp.funnels.")));

	old = MemoryContextSwitchTo(cxt);
	s = palloc0(sizeof(Setup));
	s->n_funnels = (int) SPI_processed;
	s->funnels = palloc0(sizeof(Funnel) * (s->n_funnels + 1));
	s->types = palloc(sizeof(char *) * 64);
	s->type_lens = palloc(sizeof(int) * 64);
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		Funnel	   *f = &s->funnels[r];
		bool		isnull[5];
		Datum		v[5];
		Datum	   *elems;
		bool	   *enulls;
		int			n;
		int			i;

		for (i = 0; i < 5; i++)
			v[i] = SPI_getbinval(t, d, i + 1, &isnull[i]);
		f->id = TextDatumGetCString(v[0]);
		if (isnull[1] || isnull[2] || isnull[3] || isnull[4])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("funnel \"%s\" is incomplete", f->id),
					 errhint("Every column of cdp.funnels must be set.")));
		deconstruct_array(DatumGetArrayTypeP(v[1]), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &enulls, &n);
		f->def.n_steps = n;
		f->def.min_step = DatumGetInt32(v[4]);
		f->def.conversion_window = cdp_interval_usecs(DatumGetIntervalP(v[2]));
		f->def.abandon_after = cdp_interval_usecs(DatumGetIntervalP(v[3]));
		if (cdp_funnel_check_def(&f->def) != CDP_FUNNEL_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("funnel \"%s\" has an invalid definition", f->id),
					 errhint("A funnel needs two steps or more, positive windows and min_step between 1 and its number of steps.")));
		f->steps = palloc(sizeof(char *) * n);
		for (i = 0; i < n; i++)
		{
			if (enulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("funnel \"%s\" has a null step", f->id)));
			f->steps[i] = TextDatumGetCString(elems[i]);
			if (cdp_journey_setup_type(s, f->steps[i], strlen(f->steps[i])) < 0)
			{
				if (s->n_types == 64)
					ereport(ERROR,
							(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
							 errmsg("funnels use more than 64 event types")));
				s->types[s->n_types] = f->steps[i];
				s->type_lens[s->n_types] = strlen(f->steps[i]);
				s->n_types++;
			}
		}
	}
	for (k = 0; k < s->n_funnels; k++)
	{
		Funnel	   *f = &s->funnels[k];
		int			i;

		f->step_of = palloc0(sizeof(int16) * (s->n_types + 1));
		for (i = 0; i < f->def.n_steps; i++)
		{
			int			ti = cdp_journey_setup_type(s, f->steps[i], strlen(f->steps[i]));

			if (f->step_of[ti] != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("funnel \"%s\" lists step \"%s\" twice", f->id, f->steps[i])));
			f->step_of[ti] = i + 1;
		}
	}
	MemoryContextSwitchTo(old);
	return s;
}

/* Index of a funnel in the setup, or -1. */
int
cdp_journey_setup_funnel(const Setup *s, const char *id)
{
	int			k;

	for (k = 0; k < s->n_funnels; k++)
		if (strcmp(s->funnels[k].id, id) == 0)
			return k;
	return -1;
}

/* The step types as a text[] datum for the event query. */
static Datum
setup_types_array(const Setup *s)
{
	return cdp_text_array(s->types, s->n_types);
}

/* ----------------------------------------------------------------------
 * Replay of one profile
 * ----------------------------------------------------------------------
 */

/* Forgets the journey in progress of the tracker. */
static void
tracker_reset(Tracker *t, int n_steps)
{
	t->n_products = 0;
	t->page = -1;
	t->cart_value = NAN;
	t->has_break = false;
	t->n_break_products = 0;
	t->break_page = -1;
	t->break_cart_value = NAN;
	memset(t->reached, 0, sizeof(bool) * (n_steps + 1));
	memset(t->reached_at, 0, sizeof(int64) * (n_steps + 1));
	memset(t->errors, 0, sizeof(int32) * (n_steps + 1));
}

/* Adds an event of the journey in progress (at step step) to the tracker. */
static void
tracker_add(Tracker *t, const JEvent *e, int step)
{
	int			k;

	for (k = 1; k <= step; k++)
		if (!t->reached[k])
		{
			t->reached[k] = true;
			t->reached_at[k] = e->time;
		}
	if (e->error)
		t->errors[step]++;
	if (e->product >= 0 && t->n_products < MAX_CONTEXT_PRODUCTS)
	{
		for (k = 0; k < t->n_products; k++)
			if (t->products[k] == e->product)
				break;
		if (k == t->n_products)
			t->products[t->n_products++] = e->product;
	}
	if (e->page >= 0)
		t->page = e->page;
	if (!isnan(e->cart_value))
		t->cart_value = e->cart_value;
}

/* Freezes the context of the journey in progress at its break. */
static void
tracker_break(Tracker *t)
{
	t->has_break = true;
	t->n_break_products = t->n_products;
	memcpy(t->break_products, t->products, sizeof(int32) * t->n_products);
	t->break_page = t->page;
	t->break_cart_value = t->cart_value;
}

/* Collects a journey the core emits during one call. */
static void
collect_emitted(const CdpJourney *j, void *arg)
{
	Replay	   *rp = (Replay *) arg;

	if (rp->n_emitted < lengthof(rp->emitted))
		rp->emitted[rp->n_emitted] = *j;
	rp->n_emitted++;
}

/*
 * Handles the journeys emitted by the core's settling (a break, an
 * expiry), or by an event that completed the journey when completions is
 * set: a break freezes the context, an end hands the journey to the sink.
 */
static void
handle_emitted(Replay *rp, int funnel, bool completions)
{
	int			i;

	if (rp->n_emitted > lengthof(rp->emitted))
		elog(ERROR, "funnel state machine emitted %d journeys for one event", rp->n_emitted);
	for (i = 0; i < rp->n_emitted; i++)
	{
		const CdpJourney *j = &rp->emitted[i];
		bool		completion = j->status == CDP_JOURNEY_COMPLETED ||
			j->status == CDP_JOURNEY_RECOVERED ||
			j->status == CDP_JOURNEY_CONVERTED_ELSEWHERE;

		if (completion != completions)
			continue;
		if (j->status == CDP_JOURNEY_OPEN)
			tracker_break(&rp->tracker);
		else
		{
			rp->n_journeys++;
			rp->journey_sink(rp, rp->profile, funnel, j, &rp->tracker);
		}
	}
}

/* Records the time of the first transition a settling emits. */
static void
first_transition(const CdpJourney *j, void *arg)
{
	int64	   *t = (int64 *) arg;
	int64		at = j->status == CDP_JOURNEY_OPEN ? j->broken_at : j->resolved_at;

	if (at < *t)
		*t = at;
}

/* Orders events by (time, event_id). */
static int
jevent_cmp(const void *a, const void *b)
{
	const JEvent *x = (const JEvent *) a;
	const JEvent *y = (const JEvent *) b;

	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	if (x->event_id != y->event_id)
		return x->event_id < y->event_id ? -1 : 1;
	return 0;
}

/* A funnel event and the index of its event in the profile's events. */
typedef struct FunnelEventAt
{
	CdpFunnelEvent fe;
	int			idx;
} FunnelEventAt;

/* Orders funnel events of one instant as the core does: step, id, channel. */
static int
funnel_event_at_cmp(const void *pa, const void *pb)
{
	const CdpFunnelEvent *a = &((const FunnelEventAt *) pa)->fe;
	const CdpFunnelEvent *b = &((const FunnelEventAt *) pb)->fe;

	if (a->step != b->step)
		return a->step < b->step ? -1 : 1;
	if (a->event_id != b->event_id)
		return a->event_id < b->event_id ? -1 : 1;
	return (a->channel > b->channel) - (a->channel < b->channel);
}

/*
 * Replays the events of the current profile through every funnel and hands
 * its journeys and next wake-up to the sinks.
 */
static void
replay_profile(Replay *rp)
{
	Setup	   *s = rp->setup;
	int64		wake = PG_INT64_MAX;
	int			n = rp->n_ev;
	int			k;
	int			i;

	if (n == 0)
		return;
	for (i = 1; i < n; i++)
		if (jevent_cmp(&rp->ev[i - 1], &rp->ev[i]) >= 0)
			break;
	if (i < n)
	{
		int			m = 1;

		qsort(rp->ev, n, sizeof(JEvent), jevent_cmp);
		/* the log may hold an event twice (overlapping batches): once counts */
		for (i = 1; i < n; i++)
			if (jevent_cmp(&rp->ev[m - 1], &rp->ev[i]) != 0)
				rp->ev[m++] = rp->ev[i];
		n = rp->n_ev = m;
	}

	for (k = 0; k < s->n_funnels; k++)
	{
		Funnel	   *f = &s->funnels[k];
		CdpFunnelState st;
		int			nf = 0;
		int			a;
		int			b;
		int			rc;

		/* this funnel's events up to as_of; the first later one wakes it */
		for (i = 0; i < n; i++)
		{
			int			step = f->step_of[rp->ev[i].type];

			if (step == 0)
				continue;
			if (rp->ev[i].time > rp->as_of)
			{
				if (rp->ev[i].time < wake)
					wake = rp->ev[i].time;
				break;
			}
			rp->fe[nf].time = rp->ev[i].time;
			rp->fe[nf].event_id = rp->ev[i].event_id;
			rp->fe[nf].step = step;
			rp->fe[nf].channel = rp->ev[i].channel;
			rp->fe_idx[nf] = i;
			nf++;
		}
		if (nf == 0)
			continue;

		/*
		 * The core's order puts events of one instant in step order; the
		 * events are in time order already, so only runs of one instant are
		 * sorted, each funnel event with the index of its event.
		 */
		for (a = 0; a < nf; a = b)
		{
			for (b = a + 1; b < nf && rp->fe[b].time == rp->fe[a].time; b++)
				;
			if (b - a > 1)
			{
				FunnelEventAt *run = palloc(sizeof(FunnelEventAt) * (b - a));
				int			x;

				for (x = a; x < b; x++)
				{
					run[x - a].fe = rp->fe[x];
					run[x - a].idx = rp->fe_idx[x];
				}
				qsort(run, b - a, sizeof(FunnelEventAt), funnel_event_at_cmp);
				for (x = a; x < b; x++)
				{
					rp->fe[x] = run[x - a].fe;
					rp->fe_idx[x] = run[x - a].idx;
				}
				pfree(run);
			}
		}

		if (cdp_funnel_init(&f->def, &st) != CDP_FUNNEL_OK)
			elog(ERROR, "invalid funnel definition");
		tracker_reset(&rp->tracker, f->def.n_steps);
		for (i = 0; i < nf; i++)
		{
			int64		jno = st.cur.journey_no;
			int64		nev = st.cur.n_events;

			rp->n_emitted = 0;
			rc = cdp_funnel_feed(&f->def, &st, &rp->fe[i], collect_emitted, rp);
			if (rc < 0)
				elog(ERROR, "funnel state machine: %s", cdp_funnel_error_message(rc));
			/* the journey before this event: its break, its expiry */
			handle_emitted(rp, k, false);
			/* this event: starts a journey, joins it, or completes it */
			if (st.active && st.cur.journey_no != jno)
			{
				tracker_reset(&rp->tracker, f->def.n_steps);
				tracker_add(&rp->tracker, &rp->ev[rp->fe_idx[i]], rp->fe[i].step);
			}
			else if (st.active && st.cur.n_events > nev)
				tracker_add(&rp->tracker, &rp->ev[rp->fe_idx[i]], rp->fe[i].step);
			else if (rp->n_emitted > 0)
			{
				int			e;

				for (e = 0; e < rp->n_emitted && e < lengthof(rp->emitted); e++)
					if (rp->emitted[e].resolved_event_id == rp->fe[i].event_id &&
						rp->emitted[e].journey_no == jno &&
						rp->emitted[e].status != CDP_JOURNEY_EXPIRED &&
						rp->emitted[e].status != CDP_JOURNEY_OPEN)
						tracker_add(&rp->tracker, &rp->ev[rp->fe_idx[i]], rp->fe[i].step);
			}
			handle_emitted(rp, k, true);
		}
		rp->n_emitted = 0;
		rc = cdp_funnel_advance(&f->def, &st, rp->as_of, collect_emitted, rp);
		if (rc < 0)
			elog(ERROR, "funnel state machine: %s", cdp_funnel_error_message(rc));
		handle_emitted(rp, k, false);
		if (st.active)
		{
			CdpJourney	cur;
			CdpFunnelState copy = st;
			int64		next = PG_INT64_MAX;

			cdp_funnel_current(&st, &cur);
			rp->n_journeys++;
			rp->journey_sink(rp, rp->profile, k, &cur, &rp->tracker);
			/* when it will next change without any new event */
			cdp_funnel_advance(&f->def, &copy, PG_INT64_MAX, first_transition, &next);
			if (next < wake)
				wake = next;
		}
	}
	if (wake != PG_INT64_MAX && rp->wake_sink != NULL)
		rp->wake_sink(rp, rp->profile, wake);
	rp->n_profiles++;
	if (rp->notices && rp->n_profiles % PROGRESS_EVERY == 0)
		ereport(NOTICE,
				(errmsg("journeys: " INT64_FORMAT " profiles replayed, " INT64_FORMAT " journeys",
						rp->n_profiles, rp->n_journeys)));
	CHECK_FOR_INTERRUPTS();
}

/* ----------------------------------------------------------------------
 * Reading the funnel events of profiles
 *
 * From cdp.events: three plain scans, joined in C: the identifiers of the
 * profiles (identifier -> profile), the anchors of events (event ->
 * identifier), the funnel events.  cdp.event_anchors has no index by
 * anchor and cdp.events none by id (both by design, for ingest speed), so
 * a database join of the three is two large hash joins and a sort by
 * profile; the maps here take a fraction of that memory and time.  Memory
 * is bounded by maintenance_work_mem: past it, profiles are split into
 * passes by a hash of their id, each pass reading the tables again.
 *
 * From the funnel event log cdp.journey_events (detection's incremental
 * runs): the events of the given profiles, by the index on anchor_id.
 * ----------------------------------------------------------------------
 */

#define READ_IDENTIFIERS 0
#define READ_ANCHORS 1
#define READ_EVENTS 2
#define READ_BATCHES 3
#define READ_LOG 4

/* Bytes the maps and events need per anchored event and per funnel event. */
#define BYTES_PER_ANCHOR 32
#define BYTES_PER_EVENT ((int) sizeof(JEvent) + 8)

/* A map for about n keys, in cxt. */
static void
idmap_init(IdMap *m, uint64 n, MemoryContext cxt)
{
	uint64		size = 1024;
	uint64		i;

	while (size < n + n / 2)
		size *= 2;
	m->slots = MemoryContextAllocHuge(cxt, sizeof(IdSlot) * size);
	for (i = 0; i < size; i++)
		m->slots[i].key = PG_INT64_MIN;
	m->mask = size - 1;
	m->n = 0;
}

/* Slot of a key: where it is, or where it would go. */
static inline uint64
idmap_slot(const IdMap *m, int64 key)
{
	uint64		h = (uint64) key * UINT64CONST(0x9E3779B97F4A7C15);
	uint64		i = (h ^ (h >> 29)) & m->mask;

	while (m->slots[i].key != key && m->slots[i].key != PG_INT64_MIN)
		i = (i + 1) & m->mask;
	return i;
}

/* The slot of a key, or NULL. */
static inline const IdSlot *
idmap_get(const IdMap *m, int64 key)
{
	uint64		i = idmap_slot(m, key);

	return m->slots[i].key == key ? &m->slots[i] : NULL;
}

/* Sets the values of a key, growing the map when it fills. */
static void
idmap_put(IdMap *m, int64 key, int32 val, int32 aux, MemoryContext cxt)
{
	uint64		i;

	if (key == PG_INT64_MIN)
		return;
	if ((m->n + 1) * 4 > (m->mask + 1) * 3)
	{
		IdMap		big;
		uint64		k;

		idmap_init(&big, m->mask + 1, cxt);	/* idmap_init adds its headroom */
		for (k = 0; k <= m->mask; k++)
			if (m->slots[k].key != PG_INT64_MIN)
			{
				uint64		j = idmap_slot(&big, m->slots[k].key);

				big.slots[j] = m->slots[k];
				big.n++;
			}
		pfree(m->slots);
		*m = big;
	}
	i = idmap_slot(m, key);
	if (m->slots[i].key != key)
	{
		m->slots[i].key = key;
		m->n++;
	}
	m->slots[i].val = val;
	m->slots[i].aux = aux;
}

/* Forgets a map's memory. */
static void
idmap_free(IdMap *m)
{
	if (m->slots != NULL)
		pfree(m->slots);
	m->slots = NULL;
}

/* Pass of a profile: a hash of its id modulo the number of passes. */
static inline int
profile_pass(int64 profile, int n_passes)
{
	uint64		h = (uint64) profile * UINT64CONST(0x9E3779B97F4A7C15);

	return n_passes == 1 ? 0 : (int) ((h >> 32) % (uint64) n_passes);
}

/* Dense number of a profile of the pass, given one if new. */
static int32
pass_profile(Replay *rp, int64 profile)
{
	const IdSlot *slot = idmap_get(&rp->profile_dense, profile);
	int32		dense;

	if (slot != NULL)
		return slot->val;
	if (rp->n_pass_profiles == rp->cap_pass_profiles)
	{
		rp->cap_pass_profiles *= 2;
		rp->profile_ids = repalloc_huge(rp->profile_ids, sizeof(int64) * rp->cap_pass_profiles);
	}
	dense = rp->n_pass_profiles++;
	rp->profile_ids[dense] = profile;
	idmap_put(&rp->profile_dense, profile, dense, 0, rp->pass_cxt);
	return dense;
}

/* A string or number of a jsonb object's key (a number as text, and *num). */
static bool
jsonb_key_text(Jsonb *jb, const char *key, char **out, int *len, double *num)
{
	JsonbValue	v;

	if (!getKeyJsonValueFromContainer(&jb->root, key, strlen(key), &v))
		return false;
	if (v.type == jbvString)
	{
		*out = v.val.string.val;
		*len = v.val.string.len;
		if (num)
		{
			char	   *str = pnstrdup(v.val.string.val, v.val.string.len);
			char	   *end;

			*num = strtod(str, &end);
			if (end == str || *end != '\0')
				*num = NAN;
		}
		return true;
	}
	if (v.type == jbvNumeric)
	{
		*out = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
		*len = strlen(*out);
		if (num)
			*num = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
													  NumericGetDatum(v.val.numeric)));
		return true;
	}
	return false;
}

/* Nothing to do when a read starts. */
static void
reader_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

/* Nothing to do when a read ends. */
static void
reader_shutdown(DestReceiver *self)
{
}

/* The reader is part of the replay, not freed separately. */
static void
reader_destroy(DestReceiver *self)
{
}

/*
 * A new funnel event in rp->all, with its type, time, id, channel,
 * profile and anchor, and no context yet.  NULL if its type is no step.
 */
static JEvent *
jevent_add_str(Replay *rp, const char *type, int type_len, int64 time, int64 event_id,
			   const char *channel, int channel_len, int32 profile, int64 anchor_id)
{
	int			ti = cdp_journey_setup_type(rp->setup, type, type_len);
	JEvent	   *e;

	if (ti < 0)
		return NULL;
	if (rp->n_all == rp->cap_all)
	{
		rp->cap_all *= 2;
		rp->all = repalloc_huge(rp->all, sizeof(JEvent) * rp->cap_all);
	}
	e = &rp->all[rp->n_all++];
	e->time = time;
	e->event_id = event_id;
	e->anchor_id = anchor_id;
	e->profile = profile;
	e->type = ti;
	e->channel = dict_intern(&rp->channels, channel, channel_len);
	e->product = -1;
	e->page = -1;
	e->cart_value = NAN;
	e->error = 0;
	e->pad = 0;
	return e;
}

/* jevent_add_str for text datums. */
static JEvent *
jevent_add(Replay *rp, Datum type, int64 time, int64 event_id, Datum channel,
		   int32 profile, int64 anchor_id)
{
	text	   *t = DatumGetTextPP(type);
	text	   *c = DatumGetTextPP(channel);

	return jevent_add_str(rp, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), time, event_id,
						  VARDATA_ANY(c), VARSIZE_ANY_EXHDR(c), profile, anchor_id);
}

/* ----------------------------------------------------------------------
 * The packed form of an anchor's funnel events in cdp.journey_events: a
 * concatenation of records, so that appending is concatenating.  Numbers
 * big-endian (portable through pg_dump):
 *
 *	record := version u8 (1), event_id i64, time i64, cart_value f64 (NaN:
 *			  none), error u8, type str, channel str, product str, page str
 *	str    := length u16 (0xFFFF: null), bytes
 * ----------------------------------------------------------------------
 */

#define LOG_RECORD_VERSION 1
#define LOG_NULL_STRING 0xFFFF

/* Appends a big-endian unsigned integer of n bytes. */
static void
put_be(StringInfo buf, uint64 v, int n)
{
	char		b[8];
	int			i;

	for (i = n - 1; i >= 0; i--)
	{
		b[i] = (char) (v & 0xFF);
		v >>= 8;
	}
	appendBinaryStringInfo(buf, b, n);
}

/* Appends a string of the packed form (NULL, or too long: null). */
static void
put_str(StringInfo buf, const char *s, int len)
{
	if (s == NULL || len >= LOG_NULL_STRING)
		put_be(buf, LOG_NULL_STRING, 2);
	else
	{
		put_be(buf, (uint64) len, 2);
		appendBinaryStringInfo(buf, s, len);
	}
}

/* Appends the packed record of an event. */
void
cdp_journey_pack_event(StringInfo buf, const Replay *rp, const JEvent *e)
{
	uint64		bits;
	double		cart = e->cart_value;
	const Dict *pr = &rp->products;
	const Dict *pg = &rp->pages;

	put_be(buf, LOG_RECORD_VERSION, 1);
	put_be(buf, (uint64) e->event_id, 8);
	put_be(buf, (uint64) e->time, 8);
	memcpy(&bits, &cart, 8);
	put_be(buf, bits, 8);
	put_be(buf, e->error ? 1 : 0, 1);
	put_str(buf, rp->setup->types[e->type], rp->setup->type_lens[e->type]);
	put_str(buf, rp->channels.names[e->channel], rp->channels.lens[e->channel]);
	put_str(buf, e->product >= 0 ? pr->names[e->product] : NULL, e->product >= 0 ? pr->lens[e->product] : 0);
	put_str(buf, e->page >= 0 ? pg->names[e->page] : NULL, e->page >= 0 ? pg->lens[e->page] : 0);
}

/* Reads a big-endian unsigned integer of n bytes at *p, if there are. */
static bool
get_be(const unsigned char **p, const unsigned char *end, int n, uint64 *v)
{
	int			i;

	if (end - *p < n)
		return false;
	*v = 0;
	for (i = 0; i < n; i++)
		*v = (*v << 8) | (*p)[i];
	*p += n;
	return true;
}

/* Reads a string of the packed form: *s is NULL for null. */
static bool
get_str(const unsigned char **p, const unsigned char *end, const char **s, int *len)
{
	uint64		n;

	if (!get_be(p, end, 2, &n))
		return false;
	if (n == LOG_NULL_STRING)
	{
		*s = NULL;
		*len = 0;
		return true;
	}
	if (end - *p < (int64) n)
		return false;
	*s = (const char *) *p;
	*len = (int) n;
	*p += n;
	return true;
}

/* Unpacks an anchor's funnel events into rp->all, checking every byte. */
static void
unpack_events(Replay *rp, int64 anchor_id, int32 profile, bytea *packed)
{
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(packed);
	const unsigned char *end = p + VARSIZE_ANY_EXHDR(packed);

	while (p < end)
	{
		uint64		version,
					event_id,
					time,
					cart,
					error;
		const char *type,
				   *channel,
				   *product,
				   *page;
		int			type_len,
					channel_len,
					product_len,
					page_len;
		double		cart_value;
		JEvent	   *e;

		if (!get_be(&p, end, 1, &version) || version != LOG_RECORD_VERSION ||
			!get_be(&p, end, 8, &event_id) || !get_be(&p, end, 8, &time) ||
			!get_be(&p, end, 8, &cart) || !get_be(&p, end, 1, &error) || error > 1 ||
			!get_str(&p, end, &type, &type_len) || type == NULL ||
			!get_str(&p, end, &channel, &channel_len) || channel == NULL ||
			!get_str(&p, end, &product, &product_len) || !get_str(&p, end, &page, &page_len))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("invalid funnel events of anchor " INT64_FORMAT " in cdp.journey_events", anchor_id),
					 errhint("Run cdp.detect_journey_breaks(rebuild => true) to rebuild them from cdp.events.")));
		e = jevent_add_str(rp, type, type_len, (int64) time, (int64) event_id, channel, channel_len,
						   profile, anchor_id);
		if (e == NULL)
			continue;
		memcpy(&cart_value, &cart, 8);
		e->error = (int32) error;
		if (rp->want_context)
		{
			if (product != NULL)
				e->product = dict_intern(&rp->products, product, product_len);
			if (page != NULL)
				e->page = dict_intern(&rp->pages, page, page_len);
			e->cart_value = cart_value;
		}
	}
}

/* The context of an event from its properties (error; product, page, cart value). */
static void
jevent_properties(Replay *rp, JEvent *e, Datum properties)
{
	Jsonb	   *props = DatumGetJsonbP(properties);
	char	   *str;
	int			len;
	double		num;
	JsonbValue	v;

	if (!JB_ROOT_IS_OBJECT(props))
		return;
	if (getKeyJsonValueFromContainer(&props->root, "error", 5, &v) && v.type != jbvNull)
		e->error = 1;
	if (!rp->want_context)
		return;
	if (jsonb_key_text(props, "product_id", &str, &len, NULL))
		e->product = dict_intern(&rp->products, str, len);
	if (jsonb_key_text(props, "page", &str, &len, NULL))
		e->page = dict_intern(&rp->pages, str, len);
	if (jsonb_key_text(props, "cart_value", &str, &len, &num))
		e->cart_value = num;
}

/* Receives a row of the current read. */
static bool
reader_receive(TupleTableSlot *slot, DestReceiver *self)
{
	Replay	   *rp = (Replay *) self;
	MemoryContext old = MemoryContextSwitchTo(rp->row_cxt);
	Datum	   *v = slot->tts_values;
	bool	   *n = slot->tts_isnull;
	JEvent	   *e;

	slot_getallattrs(slot);
	switch (rp->reading)
	{
		case READ_IDENTIFIERS:
			/* (identifier_id, profile_id): numbers for the pass's profiles and anchors */
			if (!n[0] && !n[1] && profile_pass(DatumGetInt64(v[1]), rp->n_passes) == rp->pass)
			{
				int32		dense = pass_profile(rp, DatumGetInt64(v[1]));

				if (rp->n_anchors == rp->cap_anchors)
				{
					rp->cap_anchors *= 2;
					rp->anchor_ids = repalloc_huge(rp->anchor_ids, sizeof(int64) * rp->cap_anchors);
				}
				rp->anchor_ids[rp->n_anchors] = DatumGetInt64(v[0]);
				idmap_put(&rp->anchor_profile, DatumGetInt64(v[0]), dense, rp->n_anchors, rp->pass_cxt);
				rp->n_anchors++;
			}
			break;
		case READ_ANCHORS:
			/* (event_id, anchor_id): events of the pass's anchors */
			if (!n[0] && !n[1])
			{
				const IdSlot *a = idmap_get(&rp->anchor_profile, DatumGetInt64(v[1]));

				if (a != NULL)
					idmap_put(&rp->event_profile, DatumGetInt64(v[0]), a->val, a->aux, rp->pass_cxt);
			}
			break;
		case READ_EVENTS:
			/* (occurred_at, event_id, type, channel, properties) */
			if (!n[0] && !n[1] && !n[2] && !n[3])
			{
				const IdSlot *ep = idmap_get(&rp->event_profile, DatumGetInt64(v[1]));

				if (ep != NULL &&
					(e = jevent_add(rp, v[2], DatumGetTimestampTz(v[0]), DatumGetInt64(v[1]), v[3],
									ep->val, rp->anchor_ids[ep->aux])) != NULL && !n[4])
					jevent_properties(rp, e, v[4]);
			}
			break;
		case READ_BATCHES:
			/* (anchor_id, occurred_at, event_id, type, channel, properties) */
			if (!n[0] && !n[1] && !n[2] && !n[3] && !n[4] &&
				(e = jevent_add(rp, v[3], DatumGetTimestampTz(v[1]), DatumGetInt64(v[2]), v[4],
								-1, DatumGetInt64(v[0]))) != NULL && !n[5])
				jevent_properties(rp, e, v[5]);
			break;
		case READ_LOG:
			/* (profile_id, anchor_id, events) */
			if (!n[0] && !n[1] && !n[2])
				unpack_events(rp, DatumGetInt64(v[1]), pass_profile(rp, DatumGetInt64(v[0])),
							  DatumGetByteaPP(v[2]));
			break;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(rp->row_cxt);
	return true;
}

/* Prepares a replay at as_of with the given sinks. */
void
cdp_journey_replay_init(Replay *rp, Setup *setup, int64 as_of, bool want_context, bool read_only,
						JourneySink js, WakeSink ws, void *arg)
{
	int			max_steps = 2;
	int			k;

	memset(rp, 0, sizeof(*rp));
	rp->pub.receiveSlot = reader_receive;
	rp->pub.rStartup = reader_startup;
	rp->pub.rShutdown = reader_shutdown;
	rp->pub.rDestroy = reader_destroy;
	rp->pub.mydest = DestNone;
	rp->setup = setup;
	rp->as_of = as_of;
	rp->want_context = want_context;
	rp->read_only = read_only;
	rp->journey_sink = js;
	rp->wake_sink = ws;
	rp->sink_arg = arg;
	rp->cxt = AllocSetContextCreate(CurrentMemoryContext, "cdp journeys replay",
									ALLOCSET_DEFAULT_SIZES);
	rp->row_cxt = AllocSetContextCreate(rp->cxt, "cdp journeys row",
										ALLOCSET_SMALL_SIZES);
	rp->sink_cxt = AllocSetContextCreate(rp->cxt, "cdp journeys sink",
										 ALLOCSET_SMALL_SIZES);
	rp->pass_cxt = AllocSetContextCreate(rp->cxt, "cdp journeys pass",
										 ALLOCSET_DEFAULT_SIZES);
	dict_init(&rp->channels, rp->cxt);
	dict_init(&rp->products, rp->cxt);
	dict_init(&rp->pages, rp->cxt);
	rp->cap_ev = 1024;
	rp->ev = MemoryContextAllocHuge(rp->cxt, sizeof(JEvent) * rp->cap_ev);
	rp->fe = MemoryContextAllocHuge(rp->cxt, sizeof(CdpFunnelEvent) * rp->cap_ev);
	rp->fe_idx = MemoryContextAllocHuge(rp->cxt, sizeof(int) * rp->cap_ev);
	rp->profile = PG_INT64_MIN;
	rp->n_passes = 1;
	for (k = 0; k < setup->n_funnels; k++)
		max_steps = Max(max_steps, setup->funnels[k].def.n_steps);
	rp->tracker.reached = MemoryContextAlloc(rp->cxt, sizeof(bool) * (max_steps + 1));
	rp->tracker.reached_at = MemoryContextAlloc(rp->cxt, sizeof(int64) * (max_steps + 1));
	rp->tracker.errors = MemoryContextAlloc(rp->cxt, sizeof(int32) * (max_steps + 1));
}

/* Runs a read whose rows go to the replay's receiver. */
static void
run_read(Replay *rp, int reading, const char *sql, int nargs, Oid *types, Datum *values)
{
	SPIExecuteOptions opt;
	ParamListInfo params = NULL;
	SPIPlanPtr	plan;
	int			ret;
	int			i;
	instr_time	t0,
				t1;

	if (nargs > 0)
	{
		params = makeParamList(nargs);
		params->numParams = nargs;
		for (i = 0; i < nargs; i++)
		{
			params->params[i].ptype = types[i];
			params->params[i].value = values[i];
			params->params[i].isnull = false;
			params->params[i].pflags = PARAM_FLAG_CONST;
		}
	}
	plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_PARALLEL_OK);
	if (plan == NULL)
		elog(ERROR, "could not prepare a journey read: %s", SPI_result_code_string(SPI_result));
	memset(&opt, 0, sizeof(opt));
	opt.params = params;
	opt.read_only = rp->read_only;
	opt.dest = (DestReceiver *) rp;
	rp->reading = reading;
	INSTR_TIME_SET_CURRENT(t0);
	ret = SPI_execute_plan_extended(plan, &opt);
	INSTR_TIME_SET_CURRENT(t1);
	INSTR_TIME_SUBTRACT(t1, t0);
	elog(DEBUG1, "cdp journeys: read %d in %.1f ms", reading, INSTR_TIME_GET_MILLISEC(t1));
	/* SPI_OK_UTILITY: SPI's word for a SELECT whose rows went to a DestNone receiver */
	if (ret != SPI_OK_SELECT && ret != SPI_OK_UTILITY)
		elog(ERROR, "could not read for journeys: %s", SPI_result_code_string(ret));
	SPI_freeplan(plan);
}

/*
 * How many passes a read of every profile needs to stay within
 * maintenance_work_mem, from the statistics of the tables.
 */
static int
read_passes(Replay *rp)
{
	Oid			types[1] = {TEXTARRAYOID};
	Datum		values[1] = {setup_types_array(rp->setup)};
	double		anchors;
	double		identifiers;
	double		funnel_share;
	double		bytes;
	bool		isnull;
	int			passes;

	cdp_spi_read("SELECT greatest((SELECT reltuples FROM pg_class WHERE oid = 'cdp.event_anchors'::regclass), 0)::float8, "
				 "greatest((SELECT reltuples FROM pg_class WHERE oid = 'cdp.identifiers'::regclass), 0)::float8, "
				 "coalesce((SELECT sum(x.f) FROM pg_stats s, "
				 "unnest(s.most_common_vals::text::text[], s.most_common_freqs) x(v, f) "
				 "WHERE s.schemaname = 'cdp' AND s.tablename = 'events' AND s.attname = 'type' "
				 "AND s.inherited AND x.v = ANY ($1)), 1)::float8",
				 1, types, values, NULL);
	anchors = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	identifiers = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	funnel_share = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	bytes = anchors * (BYTES_PER_ANCHOR + funnel_share * BYTES_PER_EVENT);
	passes = (int) Min(Max(ceil(bytes / ((double) maintenance_work_mem * 1024.0)), 1.0), 1024.0);
	rp->est_identifiers = identifiers / passes;
	rp->est_anchors = anchors / passes;
	rp->est_events = anchors * funnel_share / passes;
	return passes;
}

/* Orders the pass's events by profile (counting sort) and replays each profile. */
static void
replay_pass(Replay *rp)
{
	int64	   *start = palloc0(sizeof(int64) * (rp->n_pass_profiles + 1));
	int64	   *order = MemoryContextAllocHuge(rp->pass_cxt, sizeof(int64) * (rp->n_all + 1));
	int64		i;
	int32		p;
	instr_time	t0,
				t1;

	INSTR_TIME_SET_CURRENT(t0);
	for (i = 0; i < rp->n_all; i++)
		start[rp->all[i].profile + 1]++;
	for (p = 0; p < rp->n_pass_profiles; p++)
		start[p + 1] += start[p];
	{
		int64	   *next = palloc(sizeof(int64) * (rp->n_pass_profiles + 1));

		memcpy(next, start, sizeof(int64) * (rp->n_pass_profiles + 1));
		for (i = 0; i < rp->n_all; i++)
			order[next[rp->all[i].profile]++] = i;
		pfree(next);
	}
	for (p = 0; p < rp->n_pass_profiles; p++)
	{
		int64		n = start[p + 1] - start[p];

		if (n == 0)
			continue;
		if (n > PG_INT32_MAX / 2)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("profile " INT64_FORMAT " has more than %d funnel events",
							rp->profile_ids[p], PG_INT32_MAX / 2)));
		if (n > rp->cap_ev)
		{
			while (rp->cap_ev < n)
				rp->cap_ev *= 2;
			rp->ev = repalloc_huge(rp->ev, sizeof(JEvent) * rp->cap_ev);
			rp->fe = repalloc_huge(rp->fe, sizeof(CdpFunnelEvent) * rp->cap_ev);
			rp->fe_idx = repalloc_huge(rp->fe_idx, sizeof(int) * rp->cap_ev);
		}
		for (i = 0; i < n; i++)
			rp->ev[i] = rp->all[order[start[p] + i]];
		rp->n_ev = (int) n;
		rp->profile = rp->profile_ids[p];
		replay_profile(rp);
		if (rp->event_sink != NULL)
			rp->event_sink(rp, rp->ev, rp->n_ev);
	}
	pfree(start);
	INSTR_TIME_SET_CURRENT(t1);
	INSTR_TIME_SUBTRACT(t1, t0);
	elog(DEBUG1, "cdp journeys: replayed " INT64_FORMAT " events of %d profiles in %.1f ms",
		 rp->n_all, rp->n_pass_profiles, INSTR_TIME_GET_MILLISEC(t1));
}

/* Starts a pass: empty maps and arrays in the pass's memory. */
static void
pass_begin(Replay *rp, double est_identifiers, double est_events)
{
	MemoryContext old = MemoryContextSwitchTo(rp->pass_cxt);

	idmap_init(&rp->profile_dense, 1024, rp->pass_cxt);
	idmap_init(&rp->anchor_profile, (uint64) Min(est_identifiers * 1.1, 1e9), rp->pass_cxt);
	rp->event_profile.slots = NULL;
	rp->cap_pass_profiles = 1024;
	rp->n_pass_profiles = 0;
	rp->profile_ids = MemoryContextAllocHuge(rp->pass_cxt, sizeof(int64) * rp->cap_pass_profiles);
	rp->cap_anchors = 1024;
	rp->n_anchors = 0;
	rp->anchor_ids = MemoryContextAllocHuge(rp->pass_cxt, sizeof(int64) * rp->cap_anchors);
	rp->cap_all = (int64) Min(Max(est_events * 1.1, 1024), 1e9);
	rp->n_all = 0;
	rp->all = MemoryContextAllocHuge(rp->pass_cxt, sizeof(JEvent) * rp->cap_all);
	MemoryContextSwitchTo(old);
}

/* Replays the pass's events, then forgets the pass. */
static void
pass_end(Replay *rp)
{
	MemoryContext old = MemoryContextSwitchTo(rp->cxt);

	replay_pass(rp);
	MemoryContextSwitchTo(old);
	MemoryContextReset(rp->pass_cxt);
}

/* Reads and replays every profile, or those of a bigint[], from cdp.events. */
static void
replay_from_events(Replay *rp, Datum profiles)
{
	Oid			types[1];
	Datum		values[1];

	rp->n_passes = profiles == (Datum) 0 ? read_passes(rp) : 1;
	if (profiles != (Datum) 0)
		rp->est_identifiers = rp->est_anchors = rp->est_events = 1024;
	if (rp->n_passes > 1)
		ereport(NOTICE,
				(errmsg("journeys: reading in %d passes to stay within maintenance_work_mem", rp->n_passes),
				 errhint("Raise maintenance_work_mem for fewer passes.")));
	for (rp->pass = 0; rp->pass < rp->n_passes; rp->pass++)
	{
		pass_begin(rp, rp->est_identifiers, rp->est_events);
		/* 1. identifiers -> profiles */
		if (profiles == (Datum) 0)
			run_read(rp, READ_IDENTIFIERS, "SELECT identifier_id, profile_id FROM cdp.identifiers", 0, NULL, NULL);
		else
		{
			types[0] = INT8ARRAYOID;
			values[0] = profiles;
			run_read(rp, READ_IDENTIFIERS, "SELECT identifier_id, profile_id FROM cdp.identifiers "
					 "WHERE profile_id = ANY ($1)", 1, types, values);
		}
		/* 2. events -> profiles through their anchors */
		idmap_init(&rp->event_profile, (uint64) Min(rp->est_anchors * 1.1, 1e9), rp->pass_cxt);
		run_read(rp, READ_ANCHORS, "SELECT event_id, anchor_id FROM cdp.event_anchors", 0, NULL, NULL);
		idmap_free(&rp->anchor_profile);
		/* 3. the funnel events */
		types[0] = TEXTARRAYOID;
		values[0] = setup_types_array(rp->setup);
		run_read(rp, READ_EVENTS, "SELECT occurred_at, event_id, type, channel, properties "
				 "FROM cdp.events WHERE type = ANY ($1)", 1, types, values);
		idmap_free(&rp->event_profile);
		/* 4. each profile */
		pass_end(rp);
	}
}

/*
 * Reads and replays the profiles of a bigint[] from the funnel event log,
 * in passes of at most PROFILES_PER_LOG_PASS profiles.
 */
#define PROFILES_PER_LOG_PASS 100000
static void
replay_from_log(Replay *rp, Datum profiles)
{
	ArrayType  *arr = DatumGetArrayTypeP(profiles);
	Datum	   *ids;
	bool	   *nulls;
	int			n;
	int			done;
	Oid			types[1] = {INT8ARRAYOID};

	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &ids, &nulls, &n);
	for (done = 0; done < n; done += PROFILES_PER_LOG_PASS)
	{
		int			m = Min(n - done, PROFILES_PER_LOG_PASS);
		int64	   *chunk = palloc(sizeof(int64) * m);
		Datum		values[1];
		int			i;

		for (i = 0; i < m; i++)
			chunk[i] = DatumGetInt64(ids[done + i]);
		values[0] = cdp_int64_array(chunk, m, INT8OID);
		pass_begin(rp, m * 2.0, m * 20.0);
		run_read(rp, READ_LOG,
				 "SELECT i.profile_id, j.anchor_id, j.events "
				 "FROM cdp.identifiers i JOIN cdp.journey_events j ON j.anchor_id = i.identifier_id "
				 "WHERE i.profile_id = ANY ($1)", 1, types, values);
		pass_end(rp);
		pfree(chunk);
	}
}

/*
 * Reads the funnel events of the profiles (all when profiles is 0, else a
 * bigint[]) and replays each profile; see journey.h.
 */
void
cdp_journey_replay_read(Replay *rp, Datum profiles, bool from_log)
{
	if (rp->setup->n_types == 0)
		return;
	if (from_log && profiles != (Datum) 0)
		replay_from_log(rp, profiles);
	else
		replay_from_events(rp, profiles);
}

/* Reads the funnel events of new stitch batches into rp->all; see journey.h. */
void
cdp_journey_read_batches(Replay *rp, int64 after_batch, int64 last_batch)
{
	Oid			types[3] = {INT8OID, INT8OID, TEXTARRAYOID};
	Datum		values[3] = {Int64GetDatum(after_batch), Int64GetDatum(last_batch), setup_types_array(rp->setup)};

	pass_begin(rp, 1024, 1024);
	if (rp->setup->n_types == 0 || last_batch <= after_batch)
		return;

	/*
	 * Per range of the batches (CDP_BATCH_RANGES), its events in
	 * cdp.event_anchors and in every partition of cdp.events, both found by
	 * their BRIN indexes (OFFSET 0 keeps the planner from flattening the
	 * subquery into a scan of all anchors).
	 */
	run_read(rp, READ_BATCHES,
			 CDP_BATCH_RANGES
			 "SELECT x.* FROM r CROSS JOIN LATERAL ("
			 "SELECT a.anchor_id, e.occurred_at, e.event_id, e.type, e.channel, e.properties "
			 "FROM cdp.event_anchors a "
			 "JOIN cdp.events e ON e.event_id = a.event_id AND e.occurred_at = a.occurred_at "
			 "WHERE a.event_id BETWEEN r.f AND r.l "
			 "AND e.event_id BETWEEN r.f AND r.l AND e.type = ANY ($3) "
			 "OFFSET 0) x",
			 3, types, values);
}

/* ----------------------------------------------------------------------
 * cdp.journeys: every journey, for BI
 * ----------------------------------------------------------------------
 */

/* What cdp.journeys carries to its sink. */
typedef struct Listing
{
	Tuplestorestate *store;
	TupleDesc	desc;
	int64		from;
	int64		to;
} Listing;

#define N_JOURNEY_COLS 20

/* cdp.journeys' sink: a row per journey started in [from, to). */
static void
list_journey(Replay *rp, int64 profile, int funnel, const CdpJourney *j, const Tracker *t)
{
	Listing    *l = (Listing *) rp->sink_arg;
	const Funnel *f = &rp->setup->funnels[funnel];
	Datum		v[N_JOURNEY_COLS];
	bool		nulls[N_JOURNEY_COLS];
	Datum	   *at;
	bool	   *at_nulls;
	Datum	   *errors;
	int			dims[1];
	int			lbs[1] = {1};
	bool		over = j->status != CDP_JOURNEY_IN_PROGRESS && j->status != CDP_JOURNEY_OPEN;
	bool		completed = j->status == CDP_JOURNEY_COMPLETED ||
		j->status == CDP_JOURNEY_RECOVERED || j->status == CDP_JOURNEY_CONVERTED_ELSEWHERE;
	MemoryContext old;
	int			k;

	if (j->started_at < l->from || j->started_at >= l->to)
		return;
	old = MemoryContextSwitchTo(rp->sink_cxt);
	memset(nulls, 0, sizeof(nulls));
	v[0] = Int64GetDatum(profile);
	v[1] = CStringGetTextDatum(f->id);
	v[2] = Int64GetDatum(j->journey_no);
	v[3] = CStringGetTextDatum(cdp_journey_status_name(j->status));
	v[4] = BoolGetDatum(j->broken != 0);
	v[5] = cdp_journey_time_datum(j->started_at);
	v[6] = cdp_journey_time_datum(j->last_event_at);
	v[7] = Int32GetDatum(j->reached_step);
	v[8] = Int64GetDatum(j->n_events);
	v[9] = CStringGetTextDatum(rp->channels.names[j->start_channel]);
	if (j->broken)
	{
		v[10] = cdp_journey_time_datum(j->broken_at);
		v[11] = Int32GetDatum(j->break_step);
		v[12] = CStringGetTextDatum(rp->channels.names[j->break_channel]);
	}
	else
		nulls[10] = nulls[11] = nulls[12] = true;
	if (over)
		v[13] = cdp_journey_time_datum(j->resolved_at);
	else
		nulls[13] = true;
	if (completed)
		v[14] = CStringGetTextDatum(rp->channels.names[j->resolved_channel]);
	else
		nulls[14] = true;
	v[15] = Int64GetDatum(j->first_event_id);
	v[16] = Int64GetDatum(j->last_event_id);
	at = palloc(sizeof(Datum) * f->def.n_steps);
	at_nulls = palloc(sizeof(bool) * f->def.n_steps);
	errors = palloc(sizeof(Datum) * f->def.n_steps);
	for (k = 1; k <= f->def.n_steps; k++)
	{
		at_nulls[k - 1] = !t->reached[k];
		at[k - 1] = t->reached[k] ? TimestampTzGetDatum(t->reached_at[k]) : (Datum) 0;
		errors[k - 1] = Int32GetDatum(t->errors[k]);
	}
	dims[0] = f->def.n_steps;
	v[17] = Int64GetDatum(j->break_event_id);
	nulls[17] = !j->broken;
	v[18] = PointerGetDatum(construct_md_array(at, at_nulls, 1, dims, lbs, TIMESTAMPTZOID,
											   8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	v[19] = PointerGetDatum(construct_array(errors, f->def.n_steps, INT4OID, 4, true, TYPALIGN_INT));
	tuplestore_putvalues(l->store, l->desc, v, nulls);
	MemoryContextSwitchTo(old);
	MemoryContextReset(rp->sink_cxt);
}

/*
 * cdp.journeys(funnel_id, as_of, started_from, started_to, profile_ids):
 * every journey of the funnel (or of every funnel) started in the range,
 * with its status at as_of, replayed from the events.
 */
Datum
cdp_journeys(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *funnel = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	Setup	   *setup;
	Replay		rp;
	Listing		l;
	Datum		profiles = (Datum) 0;
	int64		as_of;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("as_of must not be null"),
				 errhint("Pass the time up to which events count, usually now().")));
	as_of = PG_GETARG_TIMESTAMPTZ(1);
	l.from = PG_ARGISNULL(2) ? PG_INT64_MIN : PG_GETARG_TIMESTAMPTZ(2);
	l.to = PG_ARGISNULL(3) ? PG_INT64_MAX : PG_GETARG_TIMESTAMPTZ(3);
	if (l.from > l.to)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("started_from must not be later than started_to")));
	if (!PG_ARGISNULL(4))
		profiles = PG_GETARG_DATUM(4);

	InitMaterializedSRF(fcinfo, 0);
	l.store = rsinfo->setResult;
	l.desc = rsinfo->setDesc;
	cdp_spi_connect();
	setup = cdp_journey_load_setup(funnel, CurrentMemoryContext);
	cdp_journey_replay_init(&rp, setup, as_of, false, true, list_journey, NULL, &l);
	cdp_journey_replay_read(&rp, profiles, false);
	cdp_spi_finish();
	return (Datum) 0;
}
