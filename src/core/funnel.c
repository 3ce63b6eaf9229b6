/*
 * funnel.c
 *	  The journey state machine of one profile in one funnel (see funnel.h
 *	  for the rules): feeding events, settling time-based transitions,
 *	  sorting events, and the one-call list of journeys at a time.
 *
 * Constant work and no allocation per event.
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#include "funnel.h"

#include <stddef.h>
#include <string.h>

_Static_assert(sizeof(CdpJourney) == 11 * 8 + 8 * 4, "CdpJourney has padding");
_Static_assert(sizeof(CdpFunnelState) == 4 * 4 + 5 * 8 + 2 * 4 + sizeof(CdpJourney),
			   "CdpFunnelState has padding");

/* a + b for b >= 0, saturating at INT64_MAX. */
static inline int64_t
sat_add(int64_t a, int64_t b)
{
	return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* Whether the definition is valid. */
int
cdp_funnel_check_def(const CdpFunnelDef *def)
{
	if (def == NULL || def->n_steps < 2 || def->min_step < 1 ||
		def->min_step > def->n_steps || def->conversion_window <= 0 ||
		def->abandon_after <= 0)
		return CDP_FUNNEL_EBADDEF;
	return CDP_FUNNEL_OK;
}

/* Initializes a state for a funnel, no journey yet. */
int
cdp_funnel_init(const CdpFunnelDef *def, CdpFunnelState *st)
{
	if (cdp_funnel_check_def(def) != CDP_FUNNEL_OK)
		return CDP_FUNNEL_EBADDEF;
	memset(st, 0, sizeof(*st));
	st->version = CDP_FUNNEL_STATE_VERSION;
	st->n_steps = def->n_steps;
	st->min_step = def->min_step;
	st->conversion_window = def->conversion_window;
	st->abandon_after = def->abandon_after;
	st->as_of = INT64_MIN;
	st->last_time = INT64_MIN;
	return CDP_FUNNEL_OK;
}

/* Whether a loaded state belongs to this version and funnel. */
int
cdp_funnel_check_state(const CdpFunnelDef *def, const CdpFunnelState *st)
{
	if (cdp_funnel_check_def(def) != CDP_FUNNEL_OK)
		return CDP_FUNNEL_EBADDEF;
	if (st == NULL || st->version != CDP_FUNNEL_STATE_VERSION ||
		st->n_steps != def->n_steps || st->min_step != def->min_step ||
		st->conversion_window != def->conversion_window ||
		st->abandon_after != def->abandon_after ||
		(st->active != 0 && st->active != 1) ||
		st->last_time > st->as_of)
		return CDP_FUNNEL_EBADSTATE;
	return CDP_FUNNEL_OK;
}

/* Passes the current journey to emit, if any; returns 1. */
static inline int
emit_cur(const CdpFunnelState *st, CdpJourneyEmit emit, void *arg)
{
	if (emit != NULL)
		emit(&st->cur, arg);
	return 1;
}

/*
 * Applies the break and expiry of the journey in progress that happen at
 * or before t; returns the number of journeys emitted.  Every pending
 * transition is later than st->as_of, so settling is idempotent.
 */
static int
settle(CdpFunnelState *st, int64_t t, CdpJourneyEmit emit, void *arg)
{
	CdpJourney *j = &st->cur;
	int			emitted = 0;
	int64_t		end;

	if (t <= st->as_of)
		return 0;
	st->as_of = t;
	if (!st->active)
		return 0;

	end = sat_add(j->started_at, st->conversion_window);
	if (!j->broken && j->reached_step >= st->min_step)
	{
		int64_t		b = sat_add(j->last_event_at, st->abandon_after);

		if (b < end && b <= t)
		{
			j->broken = 1;
			j->broken_at = b;
			j->break_step = j->reached_step;
			j->break_channel = j->last_channel;
			j->break_event_id = j->last_event_id;
			j->status = CDP_JOURNEY_OPEN;
			emitted += emit_cur(st, emit, arg);
		}
	}
	if (end <= t)
	{
		j->status = CDP_JOURNEY_EXPIRED;
		j->resolved_at = end;
		st->active = 0;
		emitted += emit_cur(st, emit, arg);
	}
	return emitted;
}

/* Starts a journey at a step-1 event. */
static void
start_journey(CdpFunnelState *st, const CdpFunnelEvent *ev)
{
	CdpJourney *j = &st->cur;

	memset(j, 0, sizeof(*j));
	j->journey_no = ++st->n_journeys;
	j->started_at = ev->time;
	j->last_event_at = ev->time;
	j->first_event_id = ev->event_id;
	j->last_event_id = ev->event_id;
	j->n_events = 1;
	j->status = CDP_JOURNEY_IN_PROGRESS;
	j->reached_step = 1;
	j->start_channel = ev->channel;
	j->last_channel = ev->channel;
	st->active = 1;
}

/* Feeds one event, already checked, to a state already checked. */
static int
feed_one(CdpFunnelState *st, const CdpFunnelEvent *ev, CdpJourneyEmit emit, void *arg)
{
	CdpJourney *j = &st->cur;
	int			emitted;

	if (ev->time < st->as_of)
		return CDP_FUNNEL_ELATE;
	if (ev->time == st->last_time && ev->step < st->last_step)
		return CDP_FUNNEL_EORDER;

	emitted = settle(st, ev->time, emit, arg);
	st->last_time = ev->time;
	st->last_step = ev->step;

	if (!st->active)
	{
		if (ev->step == 1)
			start_journey(st, ev);
		return emitted;
	}

	j->last_event_at = ev->time;
	j->last_event_id = ev->event_id;
	j->last_channel = ev->channel;
	j->n_events++;
	if (ev->step == st->n_steps)
	{
		j->reached_step = ev->step;
		j->completed_at = ev->time;
		j->resolved_at = ev->time;
		j->resolved_event_id = ev->event_id;
		j->resolved_channel = ev->channel;
		if (!j->broken)
			j->status = CDP_JOURNEY_COMPLETED;
		else if (ev->channel == j->break_channel)
			j->status = CDP_JOURNEY_RECOVERED;
		else
			j->status = CDP_JOURNEY_CONVERTED_ELSEWHERE;
		st->active = 0;
		emitted += emit_cur(st, emit, arg);
	}
	else if (ev->step > j->reached_step)
		j->reached_step = ev->step;
	return emitted;
}

/* Feeds one event; see funnel.h. */
int
cdp_funnel_feed(const CdpFunnelDef *def, CdpFunnelState *st,
				const CdpFunnelEvent *ev, CdpJourneyEmit emit, void *arg)
{
	int			rc = cdp_funnel_check_state(def, st);

	if (rc != CDP_FUNNEL_OK)
		return rc;
	if (ev->step < 0 || ev->step > def->n_steps)
		return CDP_FUNNEL_ESTEP;
	if (ev->step == 0)
		return 0;
	return feed_one(st, ev, emit, arg);
}

/* Feeds events in order; see funnel.h. */
int64_t
cdp_funnel_feed_all(const CdpFunnelDef *def, CdpFunnelState *st,
					const CdpFunnelEvent *events, int64_t n,
					CdpJourneyEmit emit, void *arg)
{
	int64_t		emitted = 0;
	int64_t		i;
	int			rc = cdp_funnel_check_state(def, st);

	if (rc != CDP_FUNNEL_OK)
		return rc;
	for (i = 0; i < n; i++)
	{
		const CdpFunnelEvent *ev = &events[i];

		if (ev->step < 0 || ev->step > def->n_steps)
			return CDP_FUNNEL_ESTEP;
		if (ev->step == 0)
			continue;
		rc = feed_one(st, ev, emit, arg);
		if (rc < 0)
			return rc;
		emitted += rc;
	}
	return emitted;
}

/* Settles time-based transitions up to as_of; see funnel.h. */
int
cdp_funnel_advance(const CdpFunnelDef *def, CdpFunnelState *st, int64_t as_of,
				   CdpJourneyEmit emit, void *arg)
{
	int			rc = cdp_funnel_check_state(def, st);

	if (rc != CDP_FUNNEL_OK)
		return rc;
	return settle(st, as_of, emit, arg);
}

/* Copies the journey in progress, if any. */
int
cdp_funnel_current(const CdpFunnelState *st, CdpJourney *out)
{
	if (st == NULL || !st->active)
		return 0;
	if (out != NULL)
		*out = st->cur;
	return 1;
}

/* The sort order of events: (time, step, event_id, channel). */
static inline int
ev_less(const CdpFunnelEvent *a, const CdpFunnelEvent *b)
{
	if (a->time != b->time)
		return a->time < b->time;
	if (a->step != b->step)
		return a->step < b->step;
	if (a->event_id != b->event_id)
		return a->event_id < b->event_id;
	return a->channel < b->channel;
}

#define CDP_SORT_NAME ev_sort
#define CDP_SORT_TYPE CdpFunnelEvent
#define CDP_SORT_LESS(a, b) ev_less(a, b)
#include "sort_template.h"

/* Sorts events by (time, step, event_id, channel); see funnel.h. */
void
cdp_funnel_sort_events(CdpFunnelEvent *events, int64_t n)
{
	ev_sort(events, n);
}

/* Where cdp_funnel_journeys collects finished journeys. */
typedef struct JourneyList
{
	CdpJourney *out;
	int64_t		cap;
	int64_t		n;
} JourneyList;

/* Collects a finished journey (breaks of ongoing ones are not listed). */
static void
collect(const CdpJourney *j, void *arg)
{
	JourneyList *l = (JourneyList *) arg;

	if (j->status == CDP_JOURNEY_OPEN)
		return;
	if (l->n < l->cap)
		l->out[l->n] = *j;
	l->n++;
}

/* The journeys of one profile at as_of; see funnel.h. */
int64_t
cdp_funnel_journeys(const CdpFunnelDef *def, CdpFunnelEvent *events, int64_t n,
					int64_t as_of, CdpJourney *out, int64_t cap)
{
	CdpFunnelState st;
	JourneyList l;
	int64_t		i;
	int64_t		rc;

	if (cdp_funnel_init(def, &st) != CDP_FUNNEL_OK)
		return CDP_FUNNEL_EBADDEF;
	for (i = 0; i < n; i++)
		if (events[i].step < 0 || events[i].step > def->n_steps)
			return CDP_FUNNEL_ESTEP;
	cdp_funnel_sort_events(events, n);
	while (n > 0 && events[n - 1].time > as_of)
		n--;
	l.out = out;
	l.cap = out != NULL && cap > 0 ? cap : 0;
	l.n = 0;
	rc = cdp_funnel_feed_all(def, &st, events, n, collect, &l);
	if (rc < 0)
		return rc;
	rc = cdp_funnel_advance(def, &st, as_of, collect, &l);
	if (rc < 0)
		return rc;
	if (st.active)
	{
		if (l.n < l.cap)
			l.out[l.n] = st.cur;
		l.n++;
	}
	return l.n;
}

/* Name of a journey status, as the SQL side spells it. */
const char *
cdp_journey_status_name(int status)
{
	switch (status)
	{
		case CDP_JOURNEY_IN_PROGRESS:
			return "in_progress";
		case CDP_JOURNEY_OPEN:
			return "open";
		case CDP_JOURNEY_COMPLETED:
			return "completed";
		case CDP_JOURNEY_RECOVERED:
			return "recovered";
		case CDP_JOURNEY_CONVERTED_ELSEWHERE:
			return "converted_elsewhere";
		case CDP_JOURNEY_EXPIRED:
			return "expired";
	}
	return "unknown";
}

/* Message of an error result. */
const char *
cdp_funnel_error_message(int err)
{
	switch (err)
	{
		case CDP_FUNNEL_OK:
			return "no error";
		case CDP_FUNNEL_EBADDEF:
			return "invalid funnel definition";
		case CDP_FUNNEL_EBADSTATE:
			return "funnel state of another version or funnel definition";
		case CDP_FUNNEL_ESTEP:
			return "funnel step out of range";
		case CDP_FUNNEL_ELATE:
			return "event earlier than the time the funnel state was settled to";
		case CDP_FUNNEL_EORDER:
			return "events at the same instant not in step order";
	}
	return "unknown funnel error";
}
