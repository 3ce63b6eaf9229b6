/*
 * funnel.h
 *	  The journey state machine of one profile in one funnel: journeys
 *	  through the funnel's ordered steps, broken journeys (abandonment) and
 *	  how they end (recovered, converted elsewhere, expired).
 *
 * A funnel has steps 1..n (n >= 2), a conversion window W, an abandon delay
 * A (both microseconds, > 0) and a minimum step M (1..n).  The caller maps
 * event types to step numbers; an event whose step is 0 is not a funnel
 * event and is ignored.  Times are int64 microseconds (TimestampTz).
 *
 * Rules, for the funnel events of one profile taken in (time, step) order
 * across all channels (events at the same instant are taken in step order):
 *
 *	- A journey starts at a step-1 event when none is in progress, at time
 *	  S.  Its window is the half-open interval [S, S + W): an event at
 *	  S + W or later is outside it.
 *	- Each funnel event inside the window belongs to the journey and keeps
 *	  it alive (its time becomes the journey's last_event_at).  A step-1
 *	  event does not restart it; a step k > 1 raises reached_step to k if
 *	  k is further (steps may be skipped).
 *	- The journey completes at the first step-n event inside the window,
 *	  whatever its channel.
 *	- It breaks at B = last_event_at + A when no further funnel event
 *	  comes before B (one at exactly B is too late: a gap of exactly A
 *	  breaks), provided it has reached at least step M and B < S + W.  The
 *	  break records broken_at = B, the step reached (break_step), and the
 *	  channel and id of the journey's last funnel event before the gap.
 *	  Only the first break is recorded: later events keep the journey going
 *	  (it stays broken) and later gaps change nothing.  A gap while
 *	  reached_step < M is no break.
 *	- A break resolves when the journey completes inside the window:
 *	  RECOVERED if the completing event is on the channel of the break,
 *	  else CONVERTED_ELSEWHERE (research online, buy offline, or the
 *	  reverse); resolved_channel records the completing channel.
 *	- At S + W a journey that has not completed is EXPIRED (resolved_at =
 *	  S + W), broken or not.  A journey whose break would fall at or after
 *	  S + W never breaks: it simply expires.
 *	- A journey that completes without having broken is COMPLETED.
 *	- After completion or expiry the journey is over.  The next step-1
 *	  event starts a new journey: one at exactly S + W does; one at the
 *	  instant of the completion does not (it comes before the step-n event
 *	  and belongs to the completed journey).  Events of other steps when no
 *	  journey is in progress are ignored: a later step after the window
 *	  does not complete the expired journey nor start one.
 *	- Events at the same instant and step are taken in (event_id, channel)
 *	  order by cdp_funnel_sort_events, so the first of two step-n events at
 *	  one instant completes the journey; feed takes them as given.
 *
 * Status of a journey at a time as_of (only events with time <= as_of
 * count; time-based transitions at exactly as_of have happened):
 *
 *	IN_PROGRESS			not over, never broken
 *	OPEN				not over, broken (an open break)
 *	COMPLETED			completed, never broken
 *	RECOVERED			broken, then completed on the channel of the break
 *	CONVERTED_ELSEWHERE broken, then completed on another channel
 *	EXPIRED				window ended without completion; broken says
 *						whether it had broken first
 *
 * The breaks (rows of journey_breaks) are the journeys with broken set:
 * OPEN, RECOVERED, CONVERTED_ELSEWHERE and the EXPIRED ones with broken.
 *
 * At one instant, time-based transitions come before events: an event at
 * exactly B finds the journey broken, an event at exactly S + W finds it
 * expired.  So every transition depends only on the events, never on when
 * or how often detection runs: a journey inactive for A that completes
 * later is a break (recovered or converted elsewhere) even when nothing
 * ran during the gap, and advancing to many intermediate times gives the
 * same journeys as advancing once.
 *
 * Incremental use: a CdpFunnelState per (profile, funnel) is a plain
 * fixed-size struct of fixed-width integers (no pointers, no padding),
 * stored as bytes (memcpy; native byte order) and resumed later.  Feeding
 * a stream in any number of chunks, saving and loading the state between
 * them, and advancing it to any times between them, gives exactly the
 * journeys of one pass.  Events must be fed in (time, step) order, none
 * earlier than the last time the state was advanced to (feed rejects
 * them with CDP_FUNNEL_ELATE or CDP_FUNNEL_EORDER and changes nothing).
 * Each break is emitted once (status OPEN) by the call that first settles
 * past B, and each journey once more when it ends, so the glue can insert a
 * journey_breaks row at the first and update it at the second.
 * The state keeps a copy of the funnel's numbers: a state made under other
 * numbers is refused (CDP_FUNNEL_EBADSTATE) and must be rebuilt by replay.
 * Which event types are the steps is the caller's business.
 *
 * Times near the int64 limits (infinite timestamps) are handled with
 * saturating arithmetic: a window or delay that would pass INT64_MAX ends
 * at INT64_MAX.
 *
 * Pure C, no PostgreSQL headers: unit-tested in test/unit.
 */
#ifndef CDP_FUNNEL_H
#define CDP_FUNNEL_H

#include <stdint.h>

#define CDP_FUNNEL_STATE_VERSION 1

/* Results of the functions below; negative values are errors. */
#define CDP_FUNNEL_OK 0
#define CDP_FUNNEL_EBADDEF (-1)		/* invalid funnel definition */
#define CDP_FUNNEL_EBADSTATE (-2)	/* state of another version or funnel */
#define CDP_FUNNEL_ESTEP (-3)		/* step outside 0..n_steps */
#define CDP_FUNNEL_ELATE (-4)		/* event earlier than the state's as_of */
#define CDP_FUNNEL_EORDER (-5)		/* same instant as the last event, smaller step */

typedef enum CdpJourneyStatus
{
	CDP_JOURNEY_IN_PROGRESS = 0,
	CDP_JOURNEY_OPEN,
	CDP_JOURNEY_COMPLETED,
	CDP_JOURNEY_RECOVERED,
	CDP_JOURNEY_CONVERTED_ELSEWHERE,
	CDP_JOURNEY_EXPIRED
} CdpJourneyStatus;

typedef struct CdpFunnelDef
{
	int32_t		n_steps;		/* n >= 2 */
	int32_t		min_step;		/* M, 1..n: a break needs this step reached */
	int64_t		conversion_window;	/* W > 0 */
	int64_t		abandon_after;	/* A > 0 */
} CdpFunnelDef;

typedef struct CdpFunnelEvent
{
	int64_t		time;
	int64_t		event_id;
	int32_t		step;			/* 1..n, 0: not a funnel event */
	int32_t		channel;
} CdpFunnelEvent;

/*
 * One journey.  Times and ids of things that have not happened are 0;
 * status and broken say which fields hold something.
 */
typedef struct CdpJourney
{
	int64_t		journey_no;		/* 1, 2, ... per profile and funnel */
	int64_t		started_at;		/* S: time of the starting step-1 event */
	int64_t		last_event_at;	/* last funnel event of the journey */
	int64_t		first_event_id;
	int64_t		last_event_id;
	int64_t		n_events;		/* funnel events in the journey */
	int64_t		broken_at;		/* B (broken set) */
	int64_t		break_event_id; /* last funnel event before the gap */
	int64_t		completed_at;	/* time of the step-n event */
	int64_t		resolved_at;	/* completed_at, or S + W when expired */
	int64_t		resolved_event_id;	/* the step-n event */
	int32_t		status;			/* a CdpJourneyStatus */
	int32_t		reached_step;	/* furthest step reached */
	int32_t		broken;			/* 1 if it broke (a journey_breaks row) */
	int32_t		break_step;		/* reached_step at the break */
	int32_t		start_channel;	/* channel of the starting event */
	int32_t		last_channel;	/* channel of the last funnel event */
	int32_t		break_channel;	/* channel of the break */
	int32_t		resolved_channel;	/* channel of the step-n event */
} CdpJourney;

/* Saved per (profile, funnel); treat as opaque, copy as bytes. */
typedef struct CdpFunnelState
{
	uint32_t	version;		/* CDP_FUNNEL_STATE_VERSION */
	int32_t		active;			/* 1 if cur is a journey in progress */
	int32_t		n_steps;		/* copy of the definition */
	int32_t		min_step;
	int64_t		conversion_window;
	int64_t		abandon_after;
	int64_t		as_of;			/* settled up to this time */
	int64_t		last_time;		/* time of the last funnel event fed */
	int64_t		n_journeys;		/* journeys started */
	int32_t		last_step;		/* step of the last funnel event fed */
	int32_t		reserved;		/* zero */
	CdpJourney	cur;
} CdpFunnelState;

/*
 * Receives a journey when it breaks (status OPEN: it goes on and will be
 * reported again when it ends) and when it ends (COMPLETED, RECOVERED,
 * CONVERTED_ELSEWHERE, EXPIRED).  j is valid during the call only.
 */
typedef void (*CdpJourneyEmit) (const CdpJourney *j, void *arg);

/* CDP_FUNNEL_OK or CDP_FUNNEL_EBADDEF. */
extern int	cdp_funnel_check_def(const CdpFunnelDef *def);

/* Initializes a state for a funnel; CDP_FUNNEL_OK or CDP_FUNNEL_EBADDEF. */
extern int	cdp_funnel_init(const CdpFunnelDef *def, CdpFunnelState *st);

/*
 * Checks that a loaded state belongs to this version and funnel:
 * CDP_FUNNEL_OK, CDP_FUNNEL_EBADDEF or CDP_FUNNEL_EBADSTATE.
 */
extern int	cdp_funnel_check_state(const CdpFunnelDef *def, const CdpFunnelState *st);

/*
 * Feeds one event: settles time up to its time, then applies it.  Returns
 * the number of journeys passed to emit (may be NULL), or a negative error
 * with the state unchanged.  Events of step 0 are ignored (return 0).
 */
extern int	cdp_funnel_feed(const CdpFunnelDef *def, CdpFunnelState *st,
							const CdpFunnelEvent *ev, CdpJourneyEmit emit, void *arg);

/*
 * Feeds n events in (time, step) order.  Returns the number of journeys
 * emitted, or a negative error; on error the events before the bad one
 * have been applied.
 */
extern int64_t cdp_funnel_feed_all(const CdpFunnelDef *def, CdpFunnelState *st,
								   const CdpFunnelEvent *events, int64_t n,
								   CdpJourneyEmit emit, void *arg);

/*
 * Settles the time-based transitions (break, expiry) up to as_of, which
 * declares that every event with time < as_of has been fed (events at
 * as_of may still come).  An as_of earlier than the state's is a no-op:
 * statuses never move back.  Returns the number of journeys emitted, or a
 * negative error.
 */
extern int	cdp_funnel_advance(const CdpFunnelDef *def, CdpFunnelState *st, int64_t as_of,
							   CdpJourneyEmit emit, void *arg);

/*
 * Copies the journey in progress (IN_PROGRESS or OPEN as of the state's
 * last settled time) into *out and returns 1, or returns 0 when there is
 * none.
 */
extern int	cdp_funnel_current(const CdpFunnelState *st, CdpJourney *out);

/*
 * Sorts events by (time, step, event_id, channel), in place, without
 * allocating: one pass when they already are, else an introsort.
 */
extern void cdp_funnel_sort_events(CdpFunnelEvent *events, int64_t n);

/*
 * The journeys of one profile at as_of, from its events in any order
 * (reordered in place; events after as_of are left out): the finished
 * ones, then the one in progress if any, in order of start.  Writes at
 * most cap journeys to out and returns how many there are (at most the
 * number of step-1 events, so cap = n always suffices), or a negative
 * error.
 */
extern int64_t cdp_funnel_journeys(const CdpFunnelDef *def, CdpFunnelEvent *events, int64_t n,
								   int64_t as_of, CdpJourney *out, int64_t cap);

/* "in_progress", "open", "completed", "recovered", "converted_elsewhere", "expired". */
extern const char *cdp_journey_status_name(int status);

/* Message of an error result. */
extern const char *cdp_funnel_error_message(int err);

#endif							/* CDP_FUNNEL_H */
