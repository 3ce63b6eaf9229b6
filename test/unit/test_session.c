/*
 * test_session.c
 *	  Unit tests of src/core/session.c: the inactivity boundary, channels
 *	  kept apart, and the incremental state fed in chunks against the
 *	  array entry and a reference model.
 */
#include "unit.h"
#include "session.h"

#include <stdint.h>
#include <stdlib.h>

const char *unit_suite = "session";

#define MINUTE INT64_C(60000000)
#define TIMEOUT (30 * MINUTE)
#define T0 (INT64_C(800000000) * INT64_C(1000000))

enum
{
	WEB = 1, STORE, APP
};

/* An event at T0 + t. */
static CdpSessionEvent
E(int64_t t, int channel, int64_t id)
{
	CdpSessionEvent e;

	memset(&e, 0, sizeof(e));
	e.time = T0 + t;
	e.channel = channel;
	e.event_id = id;
	return e;
}

/* Session number given to the event with this id. */
static int64_t
session_of(const CdpSessionEvent *ev, int n, int64_t id)
{
	int			i;

	for (i = 0; i < n; i++)
		if (ev[i].event_id == id)
			return ev[i].session_no;
	return -1;
}

#define NEV(a) ((int) (sizeof(a) / sizeof((a)[0])))

UNIT_TEST(timeout_boundary)
{
	CdpSessionEvent ev[] = {
		E(0, WEB, 1),
		E(TIMEOUT - 1, WEB, 2),		/* just inside */
		E(2 * TIMEOUT - 1, WEB, 3),	/* exactly timeout later: new session */
		E(2 * TIMEOUT - 1, WEB, 4),	/* same instant: same session */
		E(3 * TIMEOUT - 2, WEB, 5)	/* timeout - 1 later: same session */
	};
	CdpSession	s[8];

	CHECK_EQ_INT(cdp_sessionize(ev, NEV(ev), TIMEOUT, s, 8), 2);
	CHECK_EQ_INT(session_of(ev, NEV(ev), 1), 1);
	CHECK_EQ_INT(session_of(ev, NEV(ev), 2), 1);
	CHECK_EQ_INT(session_of(ev, NEV(ev), 3), 2);
	CHECK_EQ_INT(session_of(ev, NEV(ev), 4), 2);
	CHECK_EQ_INT(session_of(ev, NEV(ev), 5), 2);
	CHECK_EQ_INT(s[0].session_no, 1);
	CHECK_EQ_INT(s[0].channel, WEB);
	CHECK_EQ_INT(s[0].started_at, T0);
	CHECK_EQ_INT(s[0].ended_at, T0 + TIMEOUT - 1);
	CHECK_EQ_INT(s[0].n_events, 2);
	CHECK_EQ_INT(s[0].first_event_id, 1);
	CHECK_EQ_INT(s[0].last_event_id, 2);
	CHECK_EQ_INT(s[1].session_no, 2);
	CHECK_EQ_INT(s[1].started_at, T0 + 2 * TIMEOUT - 1);
	CHECK_EQ_INT(s[1].ended_at, T0 + 3 * TIMEOUT - 2);
	CHECK_EQ_INT(s[1].n_events, 3);
	CHECK_EQ_INT(s[1].first_event_id, 3);
	CHECK_EQ_INT(s[1].last_event_id, 5);
}

UNIT_TEST(channels_interleaved)
{
	/* unsorted; each channel has its own sessions and numbering */
	CdpSessionEvent ev[] = {
		E(40 * MINUTE, WEB, 4), E(0, WEB, 1), E(5 * MINUTE, STORE, 2),
		E(10 * MINUTE, APP, 3), E(50 * MINUTE, STORE, 5), E(60 * MINUTE, APP, 6),
		E(69 * MINUTE, WEB, 7), E(99 * MINUTE, WEB, 8)
	};
	CdpSession	s[8];

	CHECK_EQ_INT(cdp_sessionize(ev, NEV(ev), TIMEOUT, s, 8), 7);
	/* web: 0 | 40, 69 | 99 (exactly 30 min after 69) */
	CHECK_EQ_INT(session_of(ev, NEV(ev), 1), 1);
	CHECK_EQ_INT(session_of(ev, NEV(ev), 4), 2);
	CHECK_EQ_INT(session_of(ev, NEV(ev), 7), 2);
	CHECK_EQ_INT(session_of(ev, NEV(ev), 8), 3);
	/* store: 5 | 50 */
	CHECK_EQ_INT(session_of(ev, NEV(ev), 2), 1);
	CHECK_EQ_INT(session_of(ev, NEV(ev), 5), 2);
	/* app: 10 | 60 */
	CHECK_EQ_INT(session_of(ev, NEV(ev), 3), 1);
	CHECK_EQ_INT(session_of(ev, NEV(ev), 6), 2);
	/* in (channel, session_no) order */
	CHECK_EQ_INT(s[0].channel, WEB);
	CHECK_EQ_INT(s[0].session_no, 1);
	CHECK_EQ_INT(s[1].channel, WEB);
	CHECK_EQ_INT(s[1].session_no, 2);
	CHECK_EQ_INT(s[1].first_event_id, 4);
	CHECK_EQ_INT(s[1].last_event_id, 7);
	CHECK_EQ_INT(s[1].n_events, 2);
	CHECK_EQ_INT(s[2].channel, WEB);
	CHECK_EQ_INT(s[2].session_no, 3);
	CHECK_EQ_INT(s[3].channel, STORE);
	CHECK_EQ_INT(s[3].session_no, 1);
	CHECK_EQ_INT(s[4].channel, STORE);
	CHECK_EQ_INT(s[4].session_no, 2);
	CHECK_EQ_INT(s[5].channel, APP);
	CHECK_EQ_INT(s[5].session_no, 1);
	CHECK_EQ_INT(s[6].channel, APP);
	CHECK_EQ_INT(s[6].started_at, T0 + 60 * MINUTE);
}

UNIT_TEST(capacity_and_arguments)
{
	CdpSessionEvent ev[] = {E(0, WEB, 1), E(TIMEOUT, WEB, 2), E(0, APP, 3)};
	CdpSession	s[1];

	CHECK_EQ_INT(cdp_sessionize(ev, NEV(ev), TIMEOUT, s, 1), 3);
	CHECK_EQ_INT(s[0].session_no, 1);
	CHECK_EQ_INT(s[0].channel, WEB);
	CHECK_EQ_INT(cdp_sessionize(ev, NEV(ev), TIMEOUT, NULL, 0), 3);
	CHECK_EQ_INT(session_of(ev, NEV(ev), 2), 2);
	CHECK_EQ_INT(cdp_sessionize(ev, 0, TIMEOUT, s, 1), 0);
	CHECK_EQ_INT(cdp_sessionize(ev, NEV(ev), 0, s, 1), CDP_SESSION_EBADARG);
	CHECK_EQ_INT(cdp_sessionize(ev, -1, TIMEOUT, s, 1), CDP_SESSION_EBADARG);
}

UNIT_TEST(incremental_state)
{
	CdpSessionState st;
	CdpSessionState copy;
	CdpSession	closed;
	CdpSession	cur;

	cdp_session_init(&st, STORE);
	CHECK_EQ_INT(cdp_session_current(&st, &cur), 0);
	CHECK_EQ_INT(cdp_session_ended(&st, TIMEOUT, T0), 0);
	CHECK_EQ_INT(cdp_session_feed(&st, TIMEOUT, T0, 1, &closed), 0);
	CHECK_EQ_INT(st.cur.session_no, 1);
	CHECK_EQ_INT(cdp_session_feed(&st, TIMEOUT, T0 + 10 * MINUTE, 2, &closed), 0);
	CHECK_EQ_INT(cdp_session_ended(&st, TIMEOUT, T0 + 40 * MINUTE - 1), 0);
	CHECK_EQ_INT(cdp_session_ended(&st, TIMEOUT, T0 + 40 * MINUTE), 1);
	CHECK_EQ_INT(cdp_session_ended(&st, TIMEOUT, T0), 0);
	CHECK_EQ_INT(cdp_session_current(&st, &cur), 1);
	CHECK_EQ_INT(cur.n_events, 2);
	CHECK_EQ_INT(cur.channel, STORE);

	/* errors leave the state alone */
	copy = st;
	CHECK_EQ_INT(cdp_session_feed(&st, TIMEOUT, T0 + 10 * MINUTE - 1, 3, &closed), CDP_SESSION_ELATE);
	CHECK_EQ_INT(cdp_session_feed(&st, 0, T0 + 11 * MINUTE, 3, &closed), CDP_SESSION_EBADARG);
	st.version = 7;
	CHECK_EQ_INT(cdp_session_feed(&st, TIMEOUT, T0 + 11 * MINUTE, 3, &closed), CDP_SESSION_EBADSTATE);
	st.version = CDP_SESSION_STATE_VERSION;
	CHECK(memcmp(&st, &copy, sizeof(st)) == 0);

	/* exactly timeout after the last event: the session closes */
	CHECK_EQ_INT(cdp_session_feed(&st, TIMEOUT, T0 + 40 * MINUTE, 4, &closed), 1);
	CHECK_EQ_INT(closed.session_no, 1);
	CHECK_EQ_INT(closed.ended_at, T0 + 10 * MINUTE);
	CHECK_EQ_INT(closed.last_event_id, 2);
	CHECK_EQ_INT(closed.channel, STORE);
	CHECK_EQ_INT(st.cur.session_no, 2);
	CHECK_EQ_INT(st.cur.first_event_id, 4);
	/* NULL is fine for the closed session */
	CHECK_EQ_INT(cdp_session_feed(&st, TIMEOUT, T0 + 80 * MINUTE, 5, NULL), 1);
	CHECK_EQ_INT(st.cur.session_no, 3);
	/* far future without overflow */
	CHECK_EQ_INT(cdp_session_feed(&st, INT64_MAX, INT64_MAX, 6, NULL), 0);
	CHECK_EQ_INT(cdp_session_ended(&st, INT64_MAX, INT64_MAX), 0);
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

UNIT_TEST(chunked_incremental_equals_array)
{
	enum
	{
		N = 300, N_CH = 4
	};
	int			round;

	rng_state = 0xD1B54A32D192ED03ULL;
	for (round = 0; round < 300; round++)
	{
		CdpSessionEvent ev[N];
		CdpSessionEvent by_time[N];
		CdpSession	all[N];
		CdpSession	inc[N];
		int64_t		ref_no[N];
		int64_t		last[N_CH];
		int64_t		no[N_CH];
		CdpSessionState st[N_CH];
		unsigned char saved[N_CH][sizeof(CdpSessionState)];
		int64_t		timeout = 1 + rng() % 50;
		int64_t		t = T0;
		int64_t		na;
		int64_t		ni = 0;
		int			n = 1 + (int) (rng() % N);
		int			i;
		int			c;

		/* events in time order, ids in that order */
		for (i = 0; i < n; i++)
		{
			t += rng() % 4 == 0 ? 0 : rng() % 60;
			by_time[i] = E(t - T0, (int) (rng() % N_CH), i + 1);
		}
		/* reference: per channel, a new session when the gap >= timeout */
		for (c = 0; c < N_CH; c++)
			no[c] = 0;
		for (i = 0; i < n; i++)
		{
			c = by_time[i].channel;
			if (no[c] == 0 || by_time[i].time - last[c] >= timeout)
				no[c]++;
			last[c] = by_time[i].time;
			ref_no[i] = no[c];
		}

		/* the array entry, from shuffled events */
		memcpy(ev, by_time, sizeof(CdpSessionEvent) * n);
		for (i = n - 1; i > 0; i--)
		{
			CdpSessionEvent x = ev[i];
			int			k = (int) (rng() % (i + 1));

			ev[i] = ev[k];
			ev[k] = x;
		}
		na = cdp_sessionize(ev, n, timeout, all, N);
		for (i = 0; i < n; i++)
			CHECK_EQ_INT(ev[i].session_no, ref_no[ev[i].event_id - 1]);
		for (i = 1; i < n; i++)
			CHECK(ev[i - 1].channel < ev[i].channel ||
				  (ev[i - 1].channel == ev[i].channel && ev[i - 1].time <= ev[i].time));

		/* incremental, in time order, states saved as bytes between chunks */
		for (c = 0; c < N_CH; c++)
		{
			cdp_session_init(&st[c], c);
			memcpy(saved[c], &st[c], sizeof(CdpSessionState));
		}
		for (i = 0; i < n;)
		{
			int			len = 1 + (int) (rng() % 20);

			for (c = 0; c < N_CH; c++)
				memcpy(&st[c], saved[c], sizeof(CdpSessionState));
			for (; len > 0 && i < n; len--, i++)
			{
				CdpSession	closed;

				c = by_time[i].channel;
				if (cdp_session_feed(&st[c], timeout, by_time[i].time, by_time[i].event_id,
									 &closed) == 1)
					inc[ni++] = closed;
				CHECK_EQ_INT(st[c].cur.session_no, ref_no[i]);
			}
			for (c = 0; c < N_CH; c++)
				memcpy(saved[c], &st[c], sizeof(CdpSessionState));
		}
		for (c = 0; c < N_CH; c++)
			if (cdp_session_current(&st[c], &inc[ni]))
				ni++;
		/* the same sessions, once put in (channel, session_no) order */
		CHECK_EQ_INT(ni, na);
		for (i = 0; i < na && ni == na; i++)
		{
			int			k;

			for (k = 0; k < ni; k++)
				if (inc[k].channel == all[i].channel && inc[k].session_no == all[i].session_no)
					break;
			CHECK(k < ni && memcmp(&inc[k], &all[i], sizeof(CdpSession)) == 0);
			if (i > 0)
				CHECK(all[i - 1].channel < all[i].channel ||
					  (all[i - 1].channel == all[i].channel &&
					   all[i - 1].session_no + 1 == all[i].session_no));
		}
		if (unit_failures)
		{
			fprintf(stderr, "  round %d\n", round);
			break;
		}
	}
}

/* Comparison of events for qsort, the order of cdp_session_sort_events. */
static int
cmp_event(const void *pa, const void *pb)
{
	const CdpSessionEvent *a = pa;
	const CdpSessionEvent *b = pb;

	if (a->channel != b->channel)
		return a->channel < b->channel ? -1 : 1;
	if (a->time != b->time)
		return a->time < b->time ? -1 : 1;
	if (a->event_id != b->event_id)
		return a->event_id < b->event_id ? -1 : 1;
	return 0;
}

UNIT_TEST(sort_matches_qsort)
{
	enum
	{
		N = 20000
	};
	CdpSessionEvent *a = calloc(N, sizeof(CdpSessionEvent));
	CdpSessionEvent *b = calloc(N, sizeof(CdpSessionEvent));
	int			pattern;

	rng_state = 0x243F6A8885A308D3ULL;
	for (pattern = 0; pattern < 4; pattern++)
	{
		int			i;

		for (i = 0; i < N; i++)
		{
			a[i].channel = (int32_t) (rng() % 5);
			a[i].time = pattern == 0 ? i : pattern == 1 ? N - i :
				pattern == 2 ? 3 : (int64_t) (rng() % 100);
			a[i].event_id = pattern == 2 ? (int64_t) (rng() % 50) : i;
		}
		memcpy(b, a, sizeof(CdpSessionEvent) * N);
		cdp_session_sort_events(a, N);
		qsort(b, N, sizeof(CdpSessionEvent), cmp_event);
		CHECK(memcmp(a, b, sizeof(CdpSessionEvent) * N) == 0);
	}
	free(a);
	free(b);
}

const unit_case unit_tests[] = {
	UNIT_CASE(timeout_boundary),
	UNIT_CASE(channels_interleaved),
	UNIT_CASE(capacity_and_arguments),
	UNIT_CASE(incremental_state),
	UNIT_CASE(chunked_incremental_equals_array),
	UNIT_CASE(sort_matches_qsort),
	UNIT_END
};
