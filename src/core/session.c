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

#define CDP_SORT_NAME ev_sort
#define CDP_SORT_TYPE CdpSessionEvent
#define CDP_SORT_LESS(a, b) ev_less(a, b)
#include "sort_template.h"

/* Sorts events by (channel, time, event_id); see session.h. */
void
cdp_session_sort_events(CdpSessionEvent *events, int64_t n)
{
	ev_sort(events, n);
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
