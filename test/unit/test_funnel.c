/*
 * test_funnel.c
 *	  Unit tests of src/core/funnel.c: every journey status and edge case on
 *	  hand-made journeys, results independent of how often detection runs,
 *	  and random streams fed in chunks through saved states against one
 *	  pass and against a reference model written the other way round.
 */
#include "unit.h"
#include "funnel.h"

#include <stdint.h>
#include <stdlib.h>

const char *unit_suite = "funnel";

#define MINUTE INT64_C(60000000)
#define HOUR (60 * MINUTE)
#define T0 (INT64_C(800000000) * INT64_C(1000000))	/* some time in 2025 */
#define MAX_EV 64
#define MAX_J 64

enum
{
	VIEW = 1, CART, CHECKOUT, PURCHASE
};

enum
{
	WEB = 1, STORE, APP
};

/* view, cart, checkout, purchase; 48 h window; break after 2 h from cart. */
static const CdpFunnelDef shop = {4, CART, 48 * HOUR, 2 * HOUR};

/* An event at T0 + t. */
static CdpFunnelEvent
E(int64_t t, int step, int channel, int64_t id)
{
	CdpFunnelEvent e;

	e.time = T0 + t;
	e.event_id = id;
	e.step = step;
	e.channel = channel;
	return e;
}

/* Where the emitted journeys of a run are collected. */
typedef struct Emitted
{
	CdpJourney	j[4 * MAX_J];
	int			n;
} Emitted;

/* Collects every emitted journey, breaks of ongoing journeys included. */
static void
collect_all(const CdpJourney *j, void *arg)
{
	Emitted    *e = (Emitted *) arg;

	if (e->n < 4 * MAX_J)
		e->j[e->n] = *j;
	e->n++;
}

/* Whether two lists of journeys are identical. */
static int
same_journeys(const CdpJourney *a, int64_t na, const CdpJourney *b, int64_t nb)
{
	return na == nb && (na == 0 || memcmp(a, b, sizeof(CdpJourney) * na) == 0);
}

/*
 * Feeds sorted events one at a time, the state saved to bytes and loaded
 * back between events, advancing every `every` microseconds in between
 * (0: never), then advances to as_of.  Lists the journeys as
 * cdp_funnel_journeys does and returns their number; all emissions go to
 * em.
 */
static int64_t
incremental(const CdpFunnelDef *def, const CdpFunnelEvent *ev, int n, int64_t as_of,
			int64_t every, CdpJourney *out, Emitted *em)
{
	CdpFunnelState st;
	unsigned char bytes[sizeof(CdpFunnelState)];
	int64_t		nj = 0;
	int64_t		t = n > 0 ? ev[0].time : as_of;
	int			i;
	int			k;

	em->n = 0;
	CHECK_EQ_INT(cdp_funnel_init(def, &st), CDP_FUNNEL_OK);
	for (i = 0; i < n && ev[i].time <= as_of; i++)
	{
		while (every > 0 && t + every <= ev[i].time)
		{
			t += every;
			CHECK(cdp_funnel_advance(def, &st, t, collect_all, em) >= 0);
		}
		memcpy(bytes, &st, sizeof(st));
		memset(&st, 0x7f, sizeof(st));
		memcpy(&st, bytes, sizeof(st));
		CHECK_EQ_INT(cdp_funnel_check_state(def, &st), CDP_FUNNEL_OK);
		CHECK(cdp_funnel_feed(def, &st, &ev[i], collect_all, em) >= 0);
	}
	while (every > 0 && t + every <= as_of)
	{
		t += every;
		CHECK(cdp_funnel_advance(def, &st, t, collect_all, em) >= 0);
	}
	CHECK(cdp_funnel_advance(def, &st, as_of, collect_all, em) >= 0);
	for (k = 0; k < em->n && k < 4 * MAX_J; k++)
		if (em->j[k].status != CDP_JOURNEY_OPEN)
			out[nj++] = em->j[k];
	if (cdp_funnel_current(&st, &out[nj]))
		nj++;
	return nj;
}

/*
 * The journeys at as_of of the shop funnel's events (in any order), by
 * cdp_funnel_journeys; checks that feeding them incrementally, with or
 * without detection runs every few minutes, gives the same.
 */
static int64_t
journeys_def(const CdpFunnelDef *def, const CdpFunnelEvent *events, int n, int64_t as_of,
			 CdpJourney *out)
{
	CdpFunnelEvent ev[MAX_EV];
	CdpJourney	inc[MAX_J];
	Emitted		once;
	Emitted		often;
	int64_t		nj;
	int64_t		ni;

	memcpy(ev, events, sizeof(CdpFunnelEvent) * n);
	nj = cdp_funnel_journeys(def, ev, n, as_of, out, MAX_J);
	CHECK(nj >= 0 && nj <= MAX_J);
	ni = incremental(def, ev, n, as_of, 0, inc, &once);
	CHECK(same_journeys(out, nj, inc, ni));
	ni = incremental(def, ev, n, as_of, 7 * MINUTE, inc, &often);
	CHECK(same_journeys(out, nj, inc, ni));
	CHECK(once.n == often.n && memcmp(once.j, often.j, sizeof(CdpJourney) * once.n) == 0);
	return nj;
}

/* journeys_def for the shop funnel. */
static int64_t
journeys(const CdpFunnelEvent *events, int n, int64_t as_of, CdpJourney *out)
{
	return journeys_def(&shop, events, n, as_of, out);
}

#define NEV(a) ((int) (sizeof(a) / sizeof((a)[0])))

UNIT_TEST(definition_is_checked)
{
	CdpFunnelDef d = shop;
	CdpFunnelState st;
	CdpFunnelEvent ev[1] = {E(0, VIEW, WEB, 1)};
	CdpJourney	j[1];

	CHECK_EQ_INT(cdp_funnel_check_def(&shop), CDP_FUNNEL_OK);
	CHECK_EQ_INT(cdp_funnel_check_def(NULL), CDP_FUNNEL_EBADDEF);
	d.n_steps = 1;
	d.min_step = 1;
	CHECK_EQ_INT(cdp_funnel_init(&d, &st), CDP_FUNNEL_EBADDEF);
	d = shop;
	d.min_step = 0;
	CHECK_EQ_INT(cdp_funnel_check_def(&d), CDP_FUNNEL_EBADDEF);
	d.min_step = 5;
	CHECK_EQ_INT(cdp_funnel_check_def(&d), CDP_FUNNEL_EBADDEF);
	d = shop;
	d.conversion_window = 0;
	CHECK_EQ_INT(cdp_funnel_check_def(&d), CDP_FUNNEL_EBADDEF);
	d = shop;
	d.abandon_after = -1;
	CHECK_EQ_INT(cdp_funnel_check_def(&d), CDP_FUNNEL_EBADDEF);
	CHECK_EQ_INT(cdp_funnel_journeys(&d, ev, 1, T0, j, 1), CDP_FUNNEL_EBADDEF);
	d = shop;
	d.min_step = 4;
	CHECK_EQ_INT(cdp_funnel_check_def(&d), CDP_FUNNEL_OK);
}

UNIT_TEST(completed_without_break)
{
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 10), E(5 * MINUTE, CART, WEB, 11),
		E(20 * MINUTE, CHECKOUT, WEB, 12), E(30 * MINUTE, PURCHASE, WEB, 13)
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 100 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_COMPLETED);
	CHECK_EQ_INT(j[0].journey_no, 1);
	CHECK_EQ_INT(j[0].broken, 0);
	CHECK_EQ_INT(j[0].broken_at, 0);
	CHECK_EQ_INT(j[0].reached_step, PURCHASE);
	CHECK_EQ_INT(j[0].started_at, T0);
	CHECK_EQ_INT(j[0].last_event_at, T0 + 30 * MINUTE);
	CHECK_EQ_INT(j[0].completed_at, T0 + 30 * MINUTE);
	CHECK_EQ_INT(j[0].resolved_at, T0 + 30 * MINUTE);
	CHECK_EQ_INT(j[0].first_event_id, 10);
	CHECK_EQ_INT(j[0].last_event_id, 13);
	CHECK_EQ_INT(j[0].resolved_event_id, 13);
	CHECK_EQ_INT(j[0].resolved_channel, WEB);
	CHECK_EQ_INT(j[0].start_channel, WEB);
	CHECK_EQ_INT(j[0].n_events, 4);
	CHECK_EQ_STR(cdp_journey_status_name(j[0].status), "completed");
}

UNIT_TEST(steps_may_be_skipped)
{
	CdpFunnelEvent ev[] = {E(0, VIEW, WEB, 1), E(MINUTE, CHECKOUT, WEB, 2)};
	CdpFunnelEvent ev2[] = {E(0, VIEW, WEB, 1), E(MINUTE, PURCHASE, APP, 2)};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 2 * MINUTE, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_IN_PROGRESS);
	CHECK_EQ_INT(j[0].reached_step, CHECKOUT);
	CHECK_EQ_STR(cdp_journey_status_name(j[0].status), "in_progress");

	CHECK_EQ_INT(journeys(ev2, NEV(ev2), T0 + 2 * MINUTE, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_COMPLETED);
	CHECK_EQ_INT(j[0].reached_step, PURCHASE);
	CHECK_EQ_INT(j[0].resolved_channel, APP);
}

UNIT_TEST(furthest_step_is_kept)
{
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(MINUTE, CHECKOUT, WEB, 2), E(2 * MINUTE, CART, WEB, 3)
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 3 * MINUTE, j), 1);
	CHECK_EQ_INT(j[0].reached_step, CHECKOUT);
	CHECK_EQ_INT(j[0].last_event_id, 3);
	CHECK_EQ_INT(j[0].n_events, 3);
}

UNIT_TEST(only_the_first_step_starts_a_journey)
{
	CdpFunnelEvent ev[] = {
		E(0, CART, WEB, 1), E(MINUTE, PURCHASE, WEB, 2), E(2 * MINUTE, CHECKOUT, WEB, 3)
	};
	CdpFunnelEvent ev2[] = {E(0, 0, WEB, 1), E(MINUTE, 0, WEB, 2)};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 100 * HOUR, j), 0);
	CHECK_EQ_INT(journeys(ev2, NEV(ev2), T0 + 100 * HOUR, j), 0);
	CHECK_EQ_INT(journeys(ev, 0, T0, j), 0);
}

UNIT_TEST(open_break_and_its_boundary)
{
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(10 * MINUTE, CART, WEB, 2), E(11 * MINUTE, VIEW, APP, 3)
	};
	CdpJourney	j[MAX_J];
	int64_t		last = T0 + 11 * MINUTE;

	/* one microsecond before the delay has passed */
	CHECK_EQ_INT(journeys(ev, NEV(ev), last + 2 * HOUR - 1, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_IN_PROGRESS);
	CHECK_EQ_INT(j[0].broken, 0);

	/* exactly abandon_after of inactivity: broken */
	CHECK_EQ_INT(journeys(ev, NEV(ev), last + 2 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_OPEN);
	CHECK_EQ_INT(j[0].broken, 1);
	CHECK_EQ_INT(j[0].broken_at, last + 2 * HOUR);
	CHECK_EQ_INT(j[0].break_step, CART);
	/* the channel and id of the last funnel event before the gap */
	CHECK_EQ_INT(j[0].break_channel, APP);
	CHECK_EQ_INT(j[0].break_event_id, 3);
	CHECK_EQ_INT(j[0].last_event_at, last);
	CHECK_EQ_INT(j[0].completed_at, 0);
	CHECK_EQ_INT(j[0].resolved_at, 0);
	CHECK_EQ_STR(cdp_journey_status_name(j[0].status), "open");

	/* still open at the end of the window's last microsecond */
	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 48 * HOUR - 1, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_OPEN);
	CHECK_EQ_INT(j[0].broken_at, last + 2 * HOUR);
}

UNIT_TEST(recovered_on_the_channel_of_the_break)
{
	CdpFunnelEvent ev[] = {
		E(0, VIEW, APP, 1), E(10 * MINUTE, CART, WEB, 2),
		E(5 * HOUR, CHECKOUT, WEB, 3), E(6 * HOUR, PURCHASE, WEB, 4)
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 100 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_RECOVERED);
	CHECK_EQ_INT(j[0].broken, 1);
	CHECK_EQ_INT(j[0].broken_at, T0 + 10 * MINUTE + 2 * HOUR);
	CHECK_EQ_INT(j[0].break_step, CART);
	CHECK_EQ_INT(j[0].break_channel, WEB);
	CHECK_EQ_INT(j[0].break_event_id, 2);
	CHECK_EQ_INT(j[0].reached_step, PURCHASE);
	CHECK_EQ_INT(j[0].resolved_at, T0 + 6 * HOUR);
	CHECK_EQ_INT(j[0].completed_at, T0 + 6 * HOUR);
	CHECK_EQ_INT(j[0].resolved_channel, WEB);
	CHECK_EQ_INT(j[0].resolved_event_id, 4);
	CHECK_EQ_INT(j[0].start_channel, APP);
	CHECK_EQ_STR(cdp_journey_status_name(j[0].status), "recovered");
}

UNIT_TEST(converted_elsewhere_on_another_channel)
{
	/* research online, buy in the store */
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(10 * MINUTE, CART, WEB, 2), E(26 * HOUR, PURCHASE, STORE, 3)
	};
	/* and the reverse */
	CdpFunnelEvent ev2[] = {
		E(0, VIEW, STORE, 1), E(10 * MINUTE, CHECKOUT, STORE, 2), E(3 * HOUR, PURCHASE, WEB, 3)
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 100 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_CONVERTED_ELSEWHERE);
	CHECK_EQ_INT(j[0].break_channel, WEB);
	CHECK_EQ_INT(j[0].resolved_channel, STORE);
	CHECK_EQ_INT(j[0].resolved_event_id, 3);
	CHECK_EQ_STR(cdp_journey_status_name(j[0].status), "converted_elsewhere");

	CHECK_EQ_INT(journeys(ev2, NEV(ev2), T0 + 100 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_CONVERTED_ELSEWHERE);
	CHECK_EQ_INT(j[0].break_channel, STORE);
	CHECK_EQ_INT(j[0].break_step, CHECKOUT);
	CHECK_EQ_INT(j[0].resolved_channel, WEB);
}

UNIT_TEST(completion_at_the_breaking_instant_is_a_recovery)
{
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(0, CART, WEB, 2), E(2 * HOUR, PURCHASE, WEB, 3)
	};
	CdpFunnelEvent ev2[] = {
		E(0, VIEW, WEB, 1), E(0, CART, WEB, 2), E(2 * HOUR - 1, PURCHASE, WEB, 3)
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 100 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_RECOVERED);
	CHECK_EQ_INT(j[0].broken_at, T0 + 2 * HOUR);
	CHECK_EQ_INT(journeys(ev2, NEV(ev2), T0 + 100 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_COMPLETED);
}

UNIT_TEST(below_min_step_no_break)
{
	/* only views: a long gap is no break */
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(5 * HOUR, VIEW, WEB, 2), E(10 * HOUR, PURCHASE, STORE, 3)
	};
	/* the gap before the cart does not count; the one after it does */
	CdpFunnelEvent ev2[] = {
		E(0, VIEW, WEB, 1), E(5 * HOUR, CART, WEB, 2), E(8 * HOUR, PURCHASE, STORE, 3)
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, 2, T0 + 9 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_IN_PROGRESS);
	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 100 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_COMPLETED);
	CHECK_EQ_INT(j[0].broken, 0);

	CHECK_EQ_INT(journeys(ev2, 2, T0 + 6 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_IN_PROGRESS);
	CHECK_EQ_INT(journeys(ev2, NEV(ev2), T0 + 100 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_CONVERTED_ELSEWHERE);
	CHECK_EQ_INT(j[0].broken_at, T0 + 7 * HOUR);
}

UNIT_TEST(min_step_one_breaks_on_views)
{
	CdpFunnelDef d = shop;
	CdpFunnelEvent ev[] = {E(0, VIEW, WEB, 1)};
	CdpJourney	j[MAX_J];

	d.min_step = 1;
	CHECK_EQ_INT(journeys_def(&d, ev, NEV(ev), T0 + 2 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_OPEN);
	CHECK_EQ_INT(j[0].break_step, VIEW);
	/* min_step = n: it can never break */
	d.min_step = 4;
	CHECK_EQ_INT(journeys_def(&d, ev, NEV(ev), T0 + 47 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_IN_PROGRESS);
}

UNIT_TEST(expired_without_break)
{
	CdpFunnelDef d = shop;
	CdpFunnelEvent ev[] = {E(0, VIEW, WEB, 1), E(HOUR, CART, WEB, 2)};
	CdpJourney	j[MAX_J];

	d.min_step = CHECKOUT;
	CHECK_EQ_INT(journeys_def(&d, ev, NEV(ev), T0 + 48 * HOUR - 1, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_IN_PROGRESS);
	CHECK_EQ_INT(journeys_def(&d, ev, NEV(ev), T0 + 48 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_EXPIRED);
	CHECK_EQ_INT(j[0].broken, 0);
	CHECK_EQ_INT(j[0].resolved_at, T0 + 48 * HOUR);
	CHECK_EQ_INT(j[0].completed_at, 0);
	CHECK_EQ_STR(cdp_journey_status_name(j[0].status), "expired");
}

UNIT_TEST(expired_after_break)
{
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(HOUR, CART, WEB, 2), E(10 * HOUR, CHECKOUT, APP, 3)
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 48 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_EXPIRED);
	CHECK_EQ_INT(j[0].broken, 1);
	/* the first gap is the break; activity after it changes nothing */
	CHECK_EQ_INT(j[0].broken_at, T0 + 3 * HOUR);
	CHECK_EQ_INT(j[0].break_channel, WEB);
	CHECK_EQ_INT(j[0].break_step, CART);
	CHECK_EQ_INT(j[0].reached_step, CHECKOUT);
	CHECK_EQ_INT(j[0].last_channel, APP);
	CHECK_EQ_INT(j[0].resolved_at, T0 + 48 * HOUR);
}

UNIT_TEST(break_at_window_end_is_only_expiry)
{
	CdpFunnelEvent ev[] = {E(0, VIEW, WEB, 1), E(46 * HOUR, CART, WEB, 2)};
	CdpFunnelEvent ev2[] = {E(0, VIEW, WEB, 1), E(46 * HOUR - 1, CART, WEB, 2)};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 48 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_EXPIRED);
	CHECK_EQ_INT(j[0].broken, 0);
	CHECK_EQ_INT(journeys(ev2, NEV(ev2), T0 + 48 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_EXPIRED);
	CHECK_EQ_INT(j[0].broken, 1);
	CHECK_EQ_INT(j[0].broken_at, T0 + 48 * HOUR - 1);
}

UNIT_TEST(completion_after_the_window_does_not_count)
{
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(47 * HOUR, CART, WEB, 2), E(48 * HOUR, PURCHASE, WEB, 3)
	};
	CdpFunnelEvent ev2[] = {
		E(0, VIEW, WEB, 1), E(47 * HOUR, CART, WEB, 2), E(48 * HOUR - 1, PURCHASE, WEB, 3)
	};
	CdpJourney	j[MAX_J];

	/* the purchase at S + W neither completes the journey nor starts one */
	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 100 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_EXPIRED);
	CHECK_EQ_INT(j[0].last_event_id, 2);
	CHECK_EQ_INT(j[0].n_events, 2);
	CHECK_EQ_INT(journeys(ev2, NEV(ev2), T0 + 100 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_COMPLETED);
}

UNIT_TEST(expiry_then_new_journey)
{
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(HOUR, CART, WEB, 2),
		E(48 * HOUR, VIEW, APP, 3),		/* at S + W: starts journey 2 */
		E(49 * HOUR, PURCHASE, APP, 4),
		E(50 * HOUR, CART, WEB, 5),		/* no journey: ignored */
		E(51 * HOUR, VIEW, WEB, 6)		/* journey 3 */
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 52 * HOUR, j), 3);
	CHECK_EQ_INT(j[0].journey_no, 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_EXPIRED);
	CHECK_EQ_INT(j[0].broken, 1);
	CHECK_EQ_INT(j[1].journey_no, 2);
	CHECK_EQ_INT(j[1].status, CDP_JOURNEY_COMPLETED);
	CHECK_EQ_INT(j[1].started_at, T0 + 48 * HOUR);
	CHECK_EQ_INT(j[1].first_event_id, 3);
	CHECK_EQ_INT(j[1].start_channel, APP);
	CHECK_EQ_INT(j[2].journey_no, 3);
	CHECK_EQ_INT(j[2].status, CDP_JOURNEY_IN_PROGRESS);
	CHECK_EQ_INT(j[2].first_event_id, 6);
	CHECK_EQ_INT(j[2].n_events, 1);
}

UNIT_TEST(completion_then_new_journey)
{
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(HOUR, PURCHASE, WEB, 2),
		E(HOUR, VIEW, WEB, 3),	/* same instant, smaller step: in journey 1 */
		E(HOUR + 1, VIEW, WEB, 4), E(HOUR + 2, CART, WEB, 5)
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 10 * HOUR, j), 2);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_COMPLETED);
	CHECK_EQ_INT(j[0].n_events, 3);
	CHECK_EQ_INT(j[0].last_event_id, 2);
	CHECK_EQ_INT(j[1].status, CDP_JOURNEY_OPEN);
	CHECK_EQ_INT(j[1].first_event_id, 4);
	CHECK_EQ_INT(j[1].broken_at, T0 + 3 * HOUR + 2);
}

UNIT_TEST(same_instant_in_step_order)
{
	/* given in the reverse order: taken as view, cart, purchase */
	CdpFunnelEvent ev[] = {
		E(0, PURCHASE, STORE, 3), E(0, CART, STORE, 2), E(0, VIEW, STORE, 1)
	};
	CdpFunnelEvent sorted[3];
	CdpFunnelState st;
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_COMPLETED);
	CHECK_EQ_INT(j[0].started_at, T0);
	CHECK_EQ_INT(j[0].completed_at, T0);
	CHECK_EQ_INT(j[0].first_event_id, 1);
	CHECK_EQ_INT(j[0].n_events, 3);

	memcpy(sorted, ev, sizeof(ev));
	cdp_funnel_sort_events(sorted, 3);
	CHECK_EQ_INT(sorted[0].step, VIEW);
	CHECK_EQ_INT(sorted[1].step, CART);
	CHECK_EQ_INT(sorted[2].step, PURCHASE);

	/* fed as given, the order is refused */
	cdp_funnel_init(&shop, &st);
	CHECK_EQ_INT(cdp_funnel_feed(&shop, &st, &ev[0], NULL, NULL), 0);
	CHECK_EQ_INT(cdp_funnel_feed(&shop, &st, &ev[1], NULL, NULL), CDP_FUNNEL_EORDER);
}

UNIT_TEST(same_instant_same_step_by_event_id)
{
	/* two purchases at one instant: the smaller event id completes */
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(0, CART, WEB, 2),
		E(3 * HOUR, PURCHASE, WEB, 9), E(3 * HOUR, PURCHASE, STORE, 8)
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 4 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_CONVERTED_ELSEWHERE);
	CHECK_EQ_INT(j[0].resolved_event_id, 8);
}

UNIT_TEST(first_step_events_keep_it_alive)
{
	CdpFunnelEvent ev[8];
	CdpJourney	j[MAX_J];
	int			i;

	ev[0] = E(0, VIEW, WEB, 1);
	ev[1] = E(MINUTE, CART, WEB, 2);
	for (i = 2; i < 7; i++)		/* a view every 2 h - 1 us: never a gap */
		ev[i] = E(MINUTE + (i - 1) * (2 * HOUR - 1), VIEW, i % 2 ? APP : WEB, i + 1);
	ev[7] = E(13 * HOUR, PURCHASE, STORE, 8);

	CHECK_EQ_INT(journeys(ev, 7, ev[6].time + 2 * HOUR - 1, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_IN_PROGRESS);
	CHECK_EQ_INT(j[0].started_at, T0);
	CHECK_EQ_INT(j[0].first_event_id, 1);
	CHECK_EQ_INT(j[0].n_events, 7);
	CHECK_EQ_INT(j[0].reached_step, CART);

	CHECK_EQ_INT(journeys(ev, 8, T0 + 100 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_CONVERTED_ELSEWHERE);
	/* the break comes after the last view, on its channel */
	CHECK_EQ_INT(j[0].broken_at, ev[6].time + 2 * HOUR);
	CHECK_EQ_INT(j[0].break_event_id, 7);
	CHECK_EQ_INT(j[0].break_channel, WEB);
}

UNIT_TEST(statuses_move_forward_with_as_of)
{
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(HOUR, CART, WEB, 2), E(30 * HOUR, PURCHASE, WEB, 3)
	};
	CdpFunnelEvent ev2[] = {E(0, VIEW, WEB, 1), E(HOUR, CART, WEB, 2)};
	static const struct
	{
		int64_t		as_of;
		int			status;
		int			status2;
	}			steps[] = {
		{0, CDP_JOURNEY_IN_PROGRESS, CDP_JOURNEY_IN_PROGRESS},
		{3 * HOUR - 1, CDP_JOURNEY_IN_PROGRESS, CDP_JOURNEY_IN_PROGRESS},
		{3 * HOUR, CDP_JOURNEY_OPEN, CDP_JOURNEY_OPEN},
		{30 * HOUR - 1, CDP_JOURNEY_OPEN, CDP_JOURNEY_OPEN},
		{30 * HOUR, CDP_JOURNEY_RECOVERED, CDP_JOURNEY_OPEN},
		{48 * HOUR, CDP_JOURNEY_RECOVERED, CDP_JOURNEY_EXPIRED},
	};
	CdpFunnelState st;
	CdpJourney	j[MAX_J];
	CdpJourney	cur;
	Emitted		em;
	int			i;
	int			fed = 0;

	for (i = 0; i < NEV(steps); i++)
	{
		CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + steps[i].as_of, j), 1);
		CHECK_EQ_INT(j[0].status, steps[i].status);
		CHECK_EQ_INT(journeys(ev2, NEV(ev2), T0 + steps[i].as_of, j), 1);
		CHECK_EQ_INT(j[0].status, steps[i].status2);
	}

	/* the same with one state, advanced step by step */
	em.n = 0;
	cdp_funnel_init(&shop, &st);
	for (i = 0; i < NEV(steps); i++)
	{
		int64_t		as_of = T0 + steps[i].as_of;

		while (fed < NEV(ev) && ev[fed].time <= as_of)
			CHECK(cdp_funnel_feed(&shop, &st, &ev[fed++], collect_all, &em) >= 0);
		CHECK(cdp_funnel_advance(&shop, &st, as_of, collect_all, &em) >= 0);
		if (cdp_funnel_current(&st, &cur))
			CHECK_EQ_INT(cur.status, steps[i].status);
		else
			CHECK_EQ_INT(em.j[em.n - 1].status, steps[i].status);
	}
	/* one break notice, then the end */
	CHECK_EQ_INT(em.n, 2);
	CHECK_EQ_INT(em.j[0].status, CDP_JOURNEY_OPEN);
	CHECK_EQ_INT(em.j[0].broken_at, T0 + 3 * HOUR);
	CHECK_EQ_INT(em.j[1].status, CDP_JOURNEY_RECOVERED);
	/* an earlier as_of changes nothing */
	CHECK_EQ_INT(cdp_funnel_advance(&shop, &st, T0, collect_all, &em), 0);
	CHECK_EQ_INT(st.as_of, T0 + 48 * HOUR);
}

UNIT_TEST(detection_frequency_does_not_matter)
{
	/* a gap nobody looked at, then a purchase elsewhere: still a break */
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(HOUR, CHECKOUT, WEB, 2), E(20 * HOUR, PURCHASE, STORE, 3),
		E(21 * HOUR, VIEW, APP, 4), E(21 * HOUR + MINUTE, CART, APP, 5)
	};
	CdpFunnelState st;
	Emitted		once;
	Emitted		often;
	int64_t		t;
	int			i;

	once.n = 0;
	cdp_funnel_init(&shop, &st);
	CHECK_EQ_INT(cdp_funnel_feed_all(&shop, &st, ev, NEV(ev), collect_all, &once), 2);
	CHECK_EQ_INT(cdp_funnel_advance(&shop, &st, T0 + 200 * HOUR, collect_all, &once), 2);

	often.n = 0;
	cdp_funnel_init(&shop, &st);
	for (t = T0 - HOUR, i = 0; t <= T0 + 200 * HOUR; t += 13 * MINUTE + 17)
	{
		while (i < NEV(ev) && ev[i].time <= t)
			CHECK(cdp_funnel_feed(&shop, &st, &ev[i++], collect_all, &often) >= 0);
		CHECK(cdp_funnel_advance(&shop, &st, t, collect_all, &often) >= 0);
	}
	CHECK(cdp_funnel_advance(&shop, &st, T0 + 200 * HOUR, collect_all, &often) >= 0);

	CHECK_EQ_INT(once.n, 4);
	CHECK(once.n == often.n && memcmp(once.j, often.j, sizeof(CdpJourney) * once.n) == 0);
	CHECK_EQ_INT(once.j[0].status, CDP_JOURNEY_OPEN);
	CHECK_EQ_INT(once.j[1].status, CDP_JOURNEY_CONVERTED_ELSEWHERE);
	CHECK_EQ_INT(once.j[1].broken_at, T0 + 3 * HOUR);
	CHECK_EQ_INT(once.j[2].status, CDP_JOURNEY_OPEN);
	CHECK_EQ_INT(once.j[2].journey_no, 2);
	CHECK_EQ_INT(once.j[3].status, CDP_JOURNEY_EXPIRED);
	CHECK_EQ_INT(once.j[3].broken, 1);
}

UNIT_TEST(events_after_as_of_are_left_out)
{
	CdpFunnelEvent ev[] = {
		E(5 * HOUR, PURCHASE, WEB, 3), E(0, VIEW, WEB, 1), E(HOUR, CART, WEB, 2)
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 4 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_OPEN);
	CHECK_EQ_INT(j[0].last_event_id, 2);
	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 + 5 * HOUR, j), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_RECOVERED);
	CHECK_EQ_INT(journeys(ev, NEV(ev), T0 - 1, j), 0);
}

UNIT_TEST(journey_list_capacity)
{
	CdpFunnelEvent ev[] = {
		E(0, VIEW, WEB, 1), E(1, PURCHASE, WEB, 2), E(2, VIEW, WEB, 3),
		E(3, PURCHASE, WEB, 4), E(4, VIEW, WEB, 5)
	};
	CdpJourney	j[2];

	CHECK_EQ_INT(cdp_funnel_journeys(&shop, ev, NEV(ev), T0 + 10, j, 2), 3);
	CHECK_EQ_INT(j[1].journey_no, 2);
	CHECK_EQ_INT(cdp_funnel_journeys(&shop, ev, NEV(ev), T0 + 10, NULL, 0), 3);
	ev[2].step = 5;
	CHECK_EQ_INT(cdp_funnel_journeys(&shop, ev, NEV(ev), T0 + 10, j, 2), CDP_FUNNEL_ESTEP);
}

UNIT_TEST(feeding_errors_leave_the_state_alone)
{
	CdpFunnelState st;
	CdpFunnelState copy;
	CdpFunnelDef other = shop;
	CdpFunnelEvent e1 = E(HOUR, VIEW, WEB, 1);
	CdpFunnelEvent e2 = E(2 * HOUR, CART, WEB, 2);
	CdpFunnelEvent late = E(4 * HOUR - 1, VIEW, WEB, 3);
	CdpFunnelEvent bad = E(4 * HOUR, 7, WEB, 4);
	CdpFunnelEvent same = E(4 * HOUR, CHECKOUT, WEB, 5);
	CdpFunnelEvent none = E(0, 0, WEB, 6);

	CHECK_EQ_INT(cdp_funnel_init(&shop, &st), CDP_FUNNEL_OK);
	CHECK_EQ_INT(cdp_funnel_feed(&shop, &st, &e1, NULL, NULL), 0);
	CHECK_EQ_INT(cdp_funnel_feed(&shop, &st, &e2, NULL, NULL), 0);
	CHECK_EQ_INT(cdp_funnel_advance(&shop, &st, T0 + 4 * HOUR, NULL, NULL), 1);
	copy = st;
	/* earlier than as_of */
	CHECK_EQ_INT(cdp_funnel_feed(&shop, &st, &late, NULL, NULL), CDP_FUNNEL_ELATE);
	CHECK_EQ_INT(cdp_funnel_feed(&shop, &st, &bad, NULL, NULL), CDP_FUNNEL_ESTEP);
	bad.step = -1;
	CHECK_EQ_INT(cdp_funnel_feed(&shop, &st, &bad, NULL, NULL), CDP_FUNNEL_ESTEP);
	/* other funnel numbers, other version */
	other.abandon_after = HOUR;
	CHECK_EQ_INT(cdp_funnel_check_state(&other, &st), CDP_FUNNEL_EBADSTATE);
	CHECK_EQ_INT(cdp_funnel_feed(&other, &st, &same, NULL, NULL), CDP_FUNNEL_EBADSTATE);
	CHECK_EQ_INT(cdp_funnel_advance(&other, &st, T0 + 5 * HOUR, NULL, NULL), CDP_FUNNEL_EBADSTATE);
	CHECK_EQ_INT(cdp_funnel_feed_all(&other, &st, &same, 1, NULL, NULL), CDP_FUNNEL_EBADSTATE);
	st.version = 99;
	CHECK_EQ_INT(cdp_funnel_feed(&shop, &st, &same, NULL, NULL), CDP_FUNNEL_EBADSTATE);
	st.version = CDP_FUNNEL_STATE_VERSION;
	/* non-funnel events are ignored, even late ones */
	CHECK_EQ_INT(cdp_funnel_feed(&shop, &st, &none, NULL, NULL), 0);
	CHECK(memcmp(&st, &copy, sizeof(st)) == 0);
	/* an event at exactly as_of is still welcome, and finds the break */
	CHECK_EQ_INT(cdp_funnel_feed(&shop, &st, &same, NULL, NULL), 0);
	CHECK_EQ_INT(st.cur.status, CDP_JOURNEY_OPEN);
	CHECK_EQ_INT(st.cur.reached_step, CHECKOUT);
	/* feed_all stops at the first bad event */
	bad.step = 9;
	CHECK_EQ_INT(cdp_funnel_feed_all(&shop, &st, &bad, 1, NULL, NULL), CDP_FUNNEL_ESTEP);
	CHECK_EQ_STR(cdp_funnel_error_message(CDP_FUNNEL_ELATE),
				 "event earlier than the time the funnel state was settled to");
	CHECK_EQ_STR(cdp_journey_status_name(42), "unknown");
}

UNIT_TEST(infinite_times_saturate)
{
	CdpFunnelEvent ev[] = {
		{INT64_MAX - HOUR, 1, VIEW, WEB}, {INT64_MAX - HOUR + 1, 2, CART, WEB}
	};
	CdpJourney	j[MAX_J];

	CHECK_EQ_INT(cdp_funnel_journeys(&shop, ev, 2, INT64_MAX - 1, j, MAX_J), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_IN_PROGRESS);
	CHECK_EQ_INT(cdp_funnel_journeys(&shop, ev, 2, INT64_MAX, j, MAX_J), 1);
	CHECK_EQ_INT(j[0].status, CDP_JOURNEY_EXPIRED);
	CHECK_EQ_INT(j[0].resolved_at, INT64_MAX);
}

/* Comparison of events for qsort, the order of cdp_funnel_sort_events. */
static int
cmp_event(const void *pa, const void *pb)
{
	const CdpFunnelEvent *a = pa;
	const CdpFunnelEvent *b = pb;

	if (a->time != b->time)
		return a->time < b->time ? -1 : 1;
	if (a->step != b->step)
		return a->step < b->step ? -1 : 1;
	if (a->event_id != b->event_id)
		return a->event_id < b->event_id ? -1 : 1;
	if (a->channel != b->channel)
		return a->channel < b->channel ? -1 : 1;
	return 0;
}

static uint64_t rng_state;

/* xorshift64: random numbers from a fixed seed. */
static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t) (rng_state >> 16);
}

UNIT_TEST(sort_matches_qsort)
{
	enum
	{
		N = 20000
	};
	CdpFunnelEvent *a = malloc(sizeof(CdpFunnelEvent) * N);
	CdpFunnelEvent *b = malloc(sizeof(CdpFunnelEvent) * N);
	int			pattern;

	rng_state = 0x243F6A8885A308D3ULL;
	for (pattern = 0; pattern < 6; pattern++)
	{
		int			n = pattern == 5 ? 17 : N;
		int			i;

		for (i = 0; i < n; i++)
		{
			int64_t		t;

			switch (pattern)
			{
				case 0:
					t = rng() % 1000;	/* many ties */
					break;
				case 1:
					t = n - i;	/* reversed */
					break;
				case 2:
					t = i < n / 2 ? i : n - i;	/* organ pipe */
					break;
				case 3:
					t = 7;		/* all the same time */
					break;
				default:
					t = (int64_t) rng() << 20;
					break;
			}
			a[i].time = t;
			a[i].step = (int32_t) (rng() % 4);
			a[i].event_id = rng() % 50;
			a[i].channel = (int32_t) (rng() % 3);
		}
		memcpy(b, a, sizeof(CdpFunnelEvent) * n);
		cdp_funnel_sort_events(a, n);
		qsort(b, n, sizeof(CdpFunnelEvent), cmp_event);
		CHECK(memcmp(a, b, sizeof(CdpFunnelEvent) * n) == 0);
		/* sorted input stays as it is */
		cdp_funnel_sort_events(a, n);
		CHECK(memcmp(a, b, sizeof(CdpFunnelEvent) * n) == 0);
	}
	cdp_funnel_sort_events(a, 0);
	free(a);
	free(b);
}

/*
 * Reference model, written the other way round: find a journey's start,
 * then scan its window forward for gaps and the completion.  Events sorted,
 * all at or before as_of, no saturation needed.
 */
static int64_t
reference(const CdpFunnelDef *d, const CdpFunnelEvent *ev, int n, int64_t as_of, CdpJourney *out)
{
	int64_t		nj = 0;
	int			pos = 0;

	while (pos < n)
	{
		CdpJourney *j;
		int			k = pos;
		int			i;
		int64_t		end;
		int			done = 0;

		while (k < n && ev[k].step != 1)
			k++;
		if (k == n)
			break;
		j = &out[nj++];
		memset(j, 0, sizeof(*j));
		j->journey_no = nj;
		j->started_at = j->last_event_at = ev[k].time;
		j->first_event_id = j->last_event_id = ev[k].event_id;
		j->start_channel = j->last_channel = ev[k].channel;
		j->n_events = 1;
		j->reached_step = 1;
		end = ev[k].time + d->conversion_window;
		for (i = k + 1; i < n && ev[i].time < end && !done; i++)
		{
			if (ev[i].step == 0)
				continue;
			if (!j->broken && j->reached_step >= d->min_step &&
				ev[i].time - j->last_event_at >= d->abandon_after)
			{
				j->broken = 1;
				j->broken_at = j->last_event_at + d->abandon_after;
				j->break_step = j->reached_step;
				j->break_channel = j->last_channel;
				j->break_event_id = j->last_event_id;
			}
			j->n_events++;
			j->last_event_at = ev[i].time;
			j->last_event_id = ev[i].event_id;
			j->last_channel = ev[i].channel;
			if (ev[i].step > j->reached_step)
				j->reached_step = ev[i].step;
			if (ev[i].step == d->n_steps)
			{
				j->completed_at = j->resolved_at = ev[i].time;
				j->resolved_event_id = ev[i].event_id;
				j->resolved_channel = ev[i].channel;
				j->status = !j->broken ? CDP_JOURNEY_COMPLETED :
					ev[i].channel == j->break_channel ? CDP_JOURNEY_RECOVERED :
					CDP_JOURNEY_CONVERTED_ELSEWHERE;
				done = 1;
			}
		}
		pos = i;
		if (done)
			continue;
		/* no completion: the break and the end, as of as_of */
		if (!j->broken && j->reached_step >= d->min_step &&
			j->last_event_at + d->abandon_after < end &&
			j->last_event_at + d->abandon_after <= as_of)
		{
			j->broken = 1;
			j->broken_at = j->last_event_at + d->abandon_after;
			j->break_step = j->reached_step;
			j->break_channel = j->last_channel;
			j->break_event_id = j->last_event_id;
		}
		if (end <= as_of)
		{
			j->status = CDP_JOURNEY_EXPIRED;
			j->resolved_at = end;
		}
		else
			j->status = j->broken ? CDP_JOURNEY_OPEN : CDP_JOURNEY_IN_PROGRESS;
	}
	return nj;
}

/* Random events (sorted) of a random funnel, with ties and long gaps. */
static int
random_stream(CdpFunnelDef *d, CdpFunnelEvent *ev, int64_t *as_of)
{
	int			n = 1 + (int) (rng() % MAX_EV);
	int64_t		t = T0;
	int			i;

	d->n_steps = 2 + (int) (rng() % 4);
	d->min_step = 1 + (int) (rng() % d->n_steps);
	d->conversion_window = 1 + rng() % 400;
	d->abandon_after = 1 + rng() % 120;
	for (i = 0; i < n; i++)
	{
		uint32_t	r = rng();

		t += r % 5 == 0 ? 0 : (int64_t) (rng() % (r % 3 == 0 ? 150 : 40));
		ev[i].time = t;
		/* first steps often, the last one rarely */
		ev[i].step = (int32_t) (rng() % 3 == 0 ? 1 : rng() % (d->n_steps + 1));
		if (ev[i].step == d->n_steps && rng() % 3 != 0)
			ev[i].step = 2;
		ev[i].channel = 1 + (int32_t) (rng() % 3);
		ev[i].event_id = i + 1;
	}
	cdp_funnel_sort_events(ev, n);
	*as_of = ev[rng() % n].time + (int64_t) (rng() % 500) - 50;
	return n;
}

UNIT_TEST(chunked_incremental_equals_one_pass)
{
	int			round;
	long		statuses[6] = {0};
	long		breaks = 0;

	rng_state = 0x9E3779B97F4A7C15ULL;
	for (round = 0; round < 10000; round++)
	{
		CdpFunnelDef d;
		CdpFunnelEvent ev[MAX_EV];
		CdpFunnelEvent shuffled[MAX_EV];
		CdpJourney	ref[MAX_J];
		CdpJourney	all[MAX_J];
		CdpJourney	inc[MAX_J];
		Emitted		one;
		Emitted		chunked;
		CdpFunnelState st;
		unsigned char saved[sizeof(CdpFunnelState)];
		int64_t		as_of;
		int64_t		nr;
		int64_t		na;
		int64_t		ni = 0;
		int			n = random_stream(&d, ev, &as_of);
		int			m;
		int			i;
		int			k;

		/* events up to as_of */
		for (m = 0; m < n && ev[m].time <= as_of; m++)
			;
		nr = reference(&d, ev, m, as_of, ref);

		/* the aggregate entry, from shuffled events */
		memcpy(shuffled, ev, sizeof(CdpFunnelEvent) * n);
		for (i = n - 1; i > 0; i--)
		{
			CdpFunnelEvent x = shuffled[i];

			k = (int) (rng() % (i + 1));
			shuffled[i] = shuffled[k];
			shuffled[k] = x;
		}
		na = cdp_funnel_journeys(&d, shuffled, n, as_of, all, MAX_J);
		CHECK(same_journeys(ref, nr, all, na));

		/* one pass */
		one.n = 0;
		cdp_funnel_init(&d, &st);
		CHECK(cdp_funnel_feed_all(&d, &st, ev, m, collect_all, &one) >= 0);
		CHECK(cdp_funnel_advance(&d, &st, as_of, collect_all, &one) >= 0);

		/* random chunks, saved and loaded, advanced to random times between */
		chunked.n = 0;
		cdp_funnel_init(&d, &st);
		for (i = 0; i < m;)
		{
			int			len = 1 + (int) (rng() % 8);
			int64_t		lo = i > 0 ? ev[i - 1].time : T0 - 100;
			int64_t		hi = ev[i].time;

			if (len > m - i)
				len = m - i;
			if (rng() % 2)
				CHECK(cdp_funnel_advance(&d, &st, lo + (int64_t) (rng() % (hi - lo + 1)),
										 collect_all, &chunked) >= 0);
			if (rng() % 4 == 0)
				CHECK(cdp_funnel_advance(&d, &st, lo - 5, collect_all, &chunked) >= 0);
			CHECK(cdp_funnel_feed_all(&d, &st, ev + i, len, collect_all, &chunked) >= 0);
			i += len;
			memcpy(saved, &st, sizeof(st));
			memset(&st, 0, sizeof(st));
			memcpy(&st, saved, sizeof(st));
		}
		CHECK(cdp_funnel_advance(&d, &st, as_of, collect_all, &chunked) >= 0);
		CHECK(one.n == chunked.n &&
			  memcmp(one.j, chunked.j, sizeof(CdpJourney) * one.n) == 0);
		for (k = 0; k < chunked.n; k++)
			if (chunked.j[k].status != CDP_JOURNEY_OPEN)
				inc[ni++] = chunked.j[k];
		if (cdp_funnel_current(&st, &inc[ni]))
			ni++;
		CHECK(same_journeys(ref, nr, inc, ni));
		if (unit_failures)
		{
			fprintf(stderr, "  round %d: n=%d m=%d journeys %lld/%lld/%lld\n",
					round, n, m, (long long) nr, (long long) na, (long long) ni);
			break;
		}
		for (k = 0; k < nr; k++)
		{
			statuses[ref[k].status]++;
			breaks += ref[k].broken;
		}
	}
	/* the streams exercise every status */
	for (round = 0; round < 6; round++)
		CHECK(statuses[round] > 300);
	CHECK(breaks > 3000);
}

UNIT_TEST(status_names_and_messages)
{
	CHECK_EQ_STR(cdp_journey_status_name(CDP_JOURNEY_IN_PROGRESS), "in_progress");
	CHECK_EQ_STR(cdp_journey_status_name(CDP_JOURNEY_OPEN), "open");
	CHECK_EQ_STR(cdp_journey_status_name(CDP_JOURNEY_COMPLETED), "completed");
	CHECK_EQ_STR(cdp_journey_status_name(CDP_JOURNEY_RECOVERED), "recovered");
	CHECK_EQ_STR(cdp_journey_status_name(CDP_JOURNEY_CONVERTED_ELSEWHERE), "converted_elsewhere");
	CHECK_EQ_STR(cdp_journey_status_name(CDP_JOURNEY_EXPIRED), "expired");
	CHECK_EQ_STR(cdp_funnel_error_message(CDP_FUNNEL_EORDER),
				 "events at the same instant not in step order");
	CHECK_EQ_STR(cdp_funnel_error_message(-42), "unknown funnel error");
}

const unit_case unit_tests[] = {
	UNIT_CASE(definition_is_checked),
	UNIT_CASE(completed_without_break),
	UNIT_CASE(steps_may_be_skipped),
	UNIT_CASE(furthest_step_is_kept),
	UNIT_CASE(only_the_first_step_starts_a_journey),
	UNIT_CASE(open_break_and_its_boundary),
	UNIT_CASE(recovered_on_the_channel_of_the_break),
	UNIT_CASE(converted_elsewhere_on_another_channel),
	UNIT_CASE(completion_at_the_breaking_instant_is_a_recovery),
	UNIT_CASE(below_min_step_no_break),
	UNIT_CASE(min_step_one_breaks_on_views),
	UNIT_CASE(expired_without_break),
	UNIT_CASE(expired_after_break),
	UNIT_CASE(break_at_window_end_is_only_expiry),
	UNIT_CASE(completion_after_the_window_does_not_count),
	UNIT_CASE(expiry_then_new_journey),
	UNIT_CASE(completion_then_new_journey),
	UNIT_CASE(same_instant_in_step_order),
	UNIT_CASE(same_instant_same_step_by_event_id),
	UNIT_CASE(first_step_events_keep_it_alive),
	UNIT_CASE(statuses_move_forward_with_as_of),
	UNIT_CASE(detection_frequency_does_not_matter),
	UNIT_CASE(events_after_as_of_are_left_out),
	UNIT_CASE(journey_list_capacity),
	UNIT_CASE(feeding_errors_leave_the_state_alone),
	UNIT_CASE(infinite_times_saturate),
	UNIT_CASE(sort_matches_qsort),
	UNIT_CASE(chunked_incremental_equals_one_pass),
	UNIT_CASE(status_names_and_messages),
	UNIT_END
};
