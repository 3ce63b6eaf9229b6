/*
 * session.h
 *	  Sessionization: the events of one profile on one channel grouped into
 *	  sessions separated by inactivity.
 *
 * Per profile and channel, events in time order: the first event opens
 * session 1; an event that comes timeout microseconds or more after the
 * previous event of the channel opens the next session (a gap of exactly
 * timeout is a new session), else it joins the current one.  Events at the
 * same instant always share a session.  Session numbers count from 1 per
 * (profile, channel), without holes.  Channels never share a session.
 * The caller chooses the timeout (30 minutes usually).
 *
 * Incremental use: a CdpSessionState per (profile, channel), a plain
 * fixed-size struct of fixed-width integers stored as bytes, resumed with
 * later events; feeding in chunks gives the sessions of one pass.  The
 * array entry sessionizes all the events of one profile at once.
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#ifndef CDP_SESSION_H
#define CDP_SESSION_H

#include <stdint.h>

#define CDP_SESSION_STATE_VERSION 1

/* Results; negative values are errors. */
#define CDP_SESSION_OK 0
#define CDP_SESSION_EBADARG (-1)	/* timeout <= 0, or n < 0 */
#define CDP_SESSION_EBADSTATE (-2)	/* state of another version */
#define CDP_SESSION_ELATE (-3)		/* event earlier than the last one */

typedef struct CdpSession
{
	int64_t		session_no;		/* 1, 2, ... per profile and channel */
	int64_t		started_at;		/* time of the first event */
	int64_t		ended_at;		/* time of the last event */
	int64_t		n_events;
	int64_t		first_event_id;
	int64_t		last_event_id;
	int32_t		channel;
	int32_t		reserved;		/* zero */
} CdpSession;

/* Saved per (profile, channel); treat as opaque, copy as bytes. */
typedef struct CdpSessionState
{
	uint32_t	version;		/* CDP_SESSION_STATE_VERSION */
	int32_t		reserved;		/* zero */
	CdpSession	cur;			/* cur.session_no == 0: no event yet */
} CdpSessionState;

/* One event of the array entry. */
typedef struct CdpSessionEvent
{
	int64_t		time;
	int64_t		event_id;
	int64_t		session_no;		/* output */
	int32_t		channel;
	int32_t		reserved;
} CdpSessionEvent;

/* Initializes the state of one channel, no session yet. */
extern void cdp_session_init(CdpSessionState *st, int32_t channel);

/*
 * Feeds the next event of the state's channel (times never decreasing).
 * Returns 1 when it opens a new session after an earlier one, which is
 * then copied to *closed (if not NULL); 0 when it joins the current
 * session or opens the first one; or a negative error, the state
 * unchanged.  The event's session is then st->cur.session_no.
 */
extern int	cdp_session_feed(CdpSessionState *st, int64_t timeout, int64_t time,
							 int64_t event_id, CdpSession *closed);

/* Copies the current session into *out and returns 1, or returns 0 if none. */
extern int	cdp_session_current(const CdpSessionState *st, CdpSession *out);

/*
 * Whether the current session is over at as_of: an event at as_of would
 * open a new one.  0 when there is no session.
 */
extern int	cdp_session_ended(const CdpSessionState *st, int64_t timeout, int64_t as_of);

/*
 * Sorts events by (channel, time, event_id), in place, without allocating:
 * one pass when they already are, else an introsort.
 */
extern void cdp_session_sort_events(CdpSessionEvent *events, int64_t n);

/*
 * Sessionizes the events of one profile, in any order (reordered in place
 * by (channel, time, event_id)): sets each event's session_no and writes
 * at most cap sessions to out, in (channel, session_no) order.  Returns the
 * number of sessions (at most n, so cap = n always suffices) or a negative
 * error.
 */
extern int64_t cdp_sessionize(CdpSessionEvent *events, int64_t n, int64_t timeout,
							  CdpSession *out, int64_t cap);

#endif							/* CDP_SESSION_H */
