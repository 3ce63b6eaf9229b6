/*
 * session.c
 *	  Sessionization by inactivity (see session.h): the incremental state
 *	  of one channel, and the one-call entry for all events of a profile.
 *
 * Constant work and no allocation per event.
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#include "session.h"

#include <stddef.h>
#include <string.h>

_Static_assert(sizeof(CdpSession) == 6 * 8 + 2 * 4, "CdpSession has padding");
_Static_assert(sizeof(CdpSessionState) == 2 * 4 + sizeof(CdpSession),
			   "CdpSessionState has padding");

/* Whether an event at time t comes too late for a session ended at last. */
static inline int
is_new_session(int64_t last, int64_t timeout, int64_t t)
{
	/* t - last >= timeout, without overflow (timeout > 0, t >= last) */
	return last > INT64_MAX - timeout ? 0 : t >= last + timeout;
}

/* Initializes the state of one channel, no session yet. */
void
cdp_session_init(CdpSessionState *st, int32_t channel)
{
	memset(st, 0, sizeof(*st));
	st->version = CDP_SESSION_STATE_VERSION;
	st->cur.channel = channel;
}

/* Opens session number no at an event. */
static void
open_session(CdpSession *s, int64_t no, int64_t time, int64_t event_id)
{
	s->session_no = no;
	s->started_at = time;
	s->ended_at = time;
	s->n_events = 1;
	s->first_event_id = event_id;
	s->last_event_id = event_id;
}

/* Feeds the next event of the channel; see session.h. */
int
cdp_session_feed(CdpSessionState *st, int64_t timeout, int64_t time,
				 int64_t event_id, CdpSession *closed)
{
	CdpSession *s = &st->cur;

	if (timeout <= 0)
		return CDP_SESSION_EBADARG;
	if (st->version != CDP_SESSION_STATE_VERSION || s->session_no < 0)
		return CDP_SESSION_EBADSTATE;
	if (s->session_no == 0)
	{
		open_session(s, 1, time, event_id);
		return 0;
	}
	if (time < s->ended_at)
		return CDP_SESSION_ELATE;
	if (is_new_session(s->ended_at, timeout, time))
	{
		if (closed != NULL)
			*closed = *s;
		open_session(s, s->session_no + 1, time, event_id);
		return 1;
	}
	s->ended_at = time;
	s->last_event_id = event_id;
	s->n_events++;
	return 0;
}

/* Copies the current session, if any. */
int
cdp_session_current(const CdpSessionState *st, CdpSession *out)
{
	if (st == NULL || st->cur.session_no <= 0)
		return 0;
	if (out != NULL)
		*out = st->cur;
	return 1;
}

/* Whether the current session is over at as_of. */
int
cdp_session_ended(const CdpSessionState *st, int64_t timeout, int64_t as_of)
{
	if (st == NULL || st->cur.session_no <= 0 || timeout <= 0 ||
		as_of < st->cur.ended_at)
		return 0;
	return is_new_session(st->cur.ended_at, timeout, as_of);
}

/* The sort order of events: (channel, time, event_id). */
static inline int
ev_less(const CdpSessionEvent *a, const CdpSessionEvent *b)
{
	if (a->channel != b->channel)
		return a->channel < b->channel;
	if (a->time != b->time)
		return a->time < b->time;
	return a->event_id < b->event_id;
}

/* Swaps two events. */
static inline void
ev_swap(CdpSessionEvent *a, CdpSessionEvent *b)
{
	CdpSessionEvent t = *a;

	*a = *b;
	*b = t;
}

/* Insertion sort, for short ranges. */
static void
ev_insertion_sort(CdpSessionEvent *a, int64_t n)
{
	int64_t		i;

	for (i = 1; i < n; i++)
	{
		CdpSessionEvent x = a[i];
		int64_t		k = i;

		while (k > 0 && ev_less(&x, &a[k - 1]))
		{
			a[k] = a[k - 1];
			k--;
		}
		a[k] = x;
	}
}

/* Restores the max-heap property below node i of a heap of n events. */
static void
ev_sift_down(CdpSessionEvent *a, int64_t i, int64_t n)
{
	CdpSessionEvent x = a[i];

	for (;;)
	{
		int64_t		c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && ev_less(&a[c], &a[c + 1]))
			c++;
		if (!ev_less(&x, &a[c]))
			break;
		a[i] = a[c];
		i = c;
	}
	a[i] = x;
}

/* Heapsort: the fallback that bounds the quicksort's worst case. */
static void
ev_heap_sort(CdpSessionEvent *a, int64_t n)
{
	int64_t		i;

	for (i = n / 2 - 1; i >= 0; i--)
		ev_sift_down(a, i, n);
	for (i = n - 1; i > 0; i--)
	{
		ev_swap(&a[0], &a[i]);
		ev_sift_down(a, 0, i);
	}
}

/*
 * Introsort: quicksort (median of three, Hoare partition), recursing into
 * the smaller part, heapsort past depth levels, insertion sort for short
 * ranges.  The same algorithm as in funnel.c, on another element type.
 */
static void
ev_intro_sort(CdpSessionEvent *a, int64_t n, int depth)
{
	while (n > 16)
	{
		int64_t		mid = n / 2;
		int64_t		i = -1;
		int64_t		k = n;
		CdpSessionEvent pivot;

		if (depth-- == 0)
		{
			ev_heap_sort(a, n);
			return;
		}
		if (ev_less(&a[mid], &a[0]))
			ev_swap(&a[mid], &a[0]);
		if (ev_less(&a[n - 1], &a[mid]))
		{
			ev_swap(&a[n - 1], &a[mid]);
			if (ev_less(&a[mid], &a[0]))
				ev_swap(&a[mid], &a[0]);
		}
		pivot = a[mid];
		/* a[0] <= pivot: the parts [0, k] and [k + 1, n) are both non-empty */
		for (;;)
		{
			do
				i++;
			while (ev_less(&a[i], &pivot));
			do
				k--;
			while (ev_less(&pivot, &a[k]));
			if (i >= k)
				break;
			ev_swap(&a[i], &a[k]);
		}
		k++;
		if (k < n - k)
		{
			ev_intro_sort(a, k, depth);
			a += k;
			n -= k;
		}
		else
		{
			ev_intro_sort(a + k, n - k, depth);
			n = k;
		}
	}
	ev_insertion_sort(a, n);
}

/* Sorts events by (channel, time, event_id); see session.h. */
void
cdp_session_sort_events(CdpSessionEvent *events, int64_t n)
{
	int64_t		i;
	int			depth = 0;

	for (i = 1; i < n; i++)
		if (ev_less(&events[i], &events[i - 1]))
			break;
	if (i >= n)
		return;					/* already sorted: the usual case */
	for (i = n; i > 1; i >>= 1)
		depth += 2;
	ev_intro_sort(events, n, depth);
}

/* Sessionizes the events of one profile; see session.h. */
int64_t
cdp_sessionize(CdpSessionEvent *events, int64_t n, int64_t timeout,
			   CdpSession *out, int64_t cap)
{
	CdpSessionState st;
	int64_t		n_sessions = 0;
	int64_t		i;

	if (timeout <= 0 || n < 0)
		return CDP_SESSION_EBADARG;
	if (out == NULL || cap < 0)
		cap = 0;
	cdp_session_sort_events(events, n);
	cdp_session_init(&st, 0);
	for (i = 0; i < n; i++)
	{
		CdpSessionEvent *ev = &events[i];

		if (i == 0 || ev->channel != st.cur.channel)
		{
			if (i > 0)
			{
				if (n_sessions < cap)
					out[n_sessions] = st.cur;
				n_sessions++;
			}
			cdp_session_init(&st, ev->channel);
		}
		/* sorted: cannot fail */
		if (cdp_session_feed(&st, timeout, ev->time, ev->event_id,
							 n_sessions < cap ? &out[n_sessions] : NULL) == 1)
			n_sessions++;
		ev->session_no = st.cur.session_no;
	}
	if (n > 0)
	{
		if (n_sessions < cap)
			out[n_sessions] = st.cur;
		n_sessions++;
	}
	return n_sessions;
}
