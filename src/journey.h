/*
 * journey.h
 *	  What the journey glue files share: the funnels of cdp.funnels, and
 *	  the replay of profiles' funnel events (journey.c) whose journeys go
 *	  to a caller's sinks: the detection (journey_detect.c) and the listing
 *	  cdp.journeys (journey.c); the aggregate and the window function of
 *	  journey_agg.c use the funnels.
 */
#ifndef CDP_JOURNEY_H
#define CDP_JOURNEY_H

#include "cdp.h"
#include "funnel.h"
#include "session.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "tcop/dest.h"
#include "utils/memutils.h"

/* One funnel of cdp.funnels. */
typedef struct Funnel
{
	char	   *id;
	CdpFunnelDef def;
	char	  **steps;			/* step types, steps[0] is step 1 */
	int16	   *step_of;		/* per type of the setup: its step, 0 if none */
} Funnel;

/* The funnels, and the event types that are steps of any of them. */
typedef struct Setup
{
	int			n_funnels;
	Funnel	   *funnels;
	int			n_types;
	char	  **types;
	int		   *type_lens;
} Setup;

/* Products listed in a break's context, at most. */
#define MAX_CONTEXT_PRODUCTS 20

/* Strings numbered in order of first sight (channels, products, pages). */
typedef struct Dict
{
	MemoryContext cxt;
	char	  **names;
	int		   *lens;
	int		   *next;			/* hash chain */
	int		   *buckets;
	int			n;
	int			cap;
	int			n_buckets;
} Dict;

/* One funnel event read. */
typedef struct JEvent
{
	int64		time;
	int64		event_id;
	int64		anchor_id;		/* its anchor identifier */
	double		cart_value;		/* NaN: none */
	int32		product;		/* products index, -1: none */
	int32		page;			/* pages index, -1: none */
	int32		profile;		/* dense number of its profile in the pass */
	int16		type;			/* index into Setup.types */
	int16		channel;		/* channels index */
	int32		error;			/* 1 if its properties have "error" */
	int32		pad;
} JEvent;

/* A slot of an IdMap: key and values in one cache line. */
typedef struct IdSlot
{
	int64		key;			/* PG_INT64_MIN: empty */
	int32		val;
	int32		aux;
} IdSlot;

/* Open addressing from int64 keys (ids, never PG_INT64_MIN) to two int32. */
typedef struct IdMap
{
	IdSlot	   *slots;
	uint64		mask;
	uint64		n;
} IdMap;

/* What the replay knows about the journey in progress of one funnel. */
typedef struct Tracker
{
	int			n_products;
	int32		products[MAX_CONTEXT_PRODUCTS];
	int32		page;
	double		cart_value;
	/* the same, frozen at the break */
	bool		has_break;
	int			n_break_products;
	int32		break_products[MAX_CONTEXT_PRODUCTS];
	int32		break_page;
	double		break_cart_value;
	/* per step: first time a step >= k was reached, and errors at step k */
	bool	   *reached;
	int64	   *reached_at;
	int32	   *errors;
} Tracker;

typedef struct Replay Replay;

/* Receives every journey of a replayed profile, and its next wake-up. */
typedef void (*JourneySink) (Replay *rp, int64 profile, int funnel,
							 const CdpJourney *j, const Tracker *t);
typedef void (*WakeSink) (Replay *rp, int64 profile, int64 wake_at);

/* Receives the funnel events of each replayed profile (may reorder them). */
typedef void (*EventSink) (Replay *rp, JEvent *ev, int n);

/* A replay of profiles' funnel events at one as_of. */
struct Replay
{
	DestReceiver pub;			/* first: receives the rows of the reads */
	Setup	   *setup;
	int64		as_of;
	bool		want_context;
	JourneySink journey_sink;
	WakeSink	wake_sink;
	EventSink	event_sink;		/* may be NULL */
	void	   *sink_arg;
	MemoryContext cxt;			/* dictionaries, buffers */
	MemoryContext row_cxt;		/* reset per row */
	MemoryContext sink_cxt;		/* reset per journey handed to a sink */
	Dict		channels;
	Dict		products;
	Dict		pages;
	bool		read_only;		/* SPI reads for a STABLE caller */
	/* one pass of the read: its profiles, their anchors and events */
	MemoryContext pass_cxt;
	int			pass;
	int			n_passes;
	IdMap		profile_dense;	/* profile_id -> dense profile */
	IdMap		anchor_profile; /* identifier -> dense profile, dense anchor */
	IdMap		event_profile;	/* event -> dense profile, dense anchor */
	int64	   *profile_ids;	/* dense profile -> profile_id */
	int32		n_pass_profiles;
	int32		cap_pass_profiles;
	int64	   *anchor_ids;		/* dense anchor -> identifier_id */
	int32		n_anchors;
	int32		cap_anchors;
	JEvent	   *all;			/* the pass's funnel events */
	int64		n_all;
	int64		cap_all;
	int			reading;		/* READ_* */
	double		est_identifiers;	/* statistics, per pass */
	double		est_anchors;
	double		est_events;
	/* events of the current profile */
	int64		profile;
	JEvent	   *ev;
	int			n_ev;
	int			cap_ev;
	/* work arrays, cap_ev long */
	CdpFunnelEvent *fe;
	int		   *fe_idx;
	Tracker		tracker;
	/* journeys emitted by the core during one feed */
	CdpJourney	emitted[4];
	int			n_emitted;
	/* counts */
	int64		n_profiles;
	int64		n_journeys;
	bool		notices;
};

/*
 * Reads cdp.funnels (only that funnel if only is not NULL; an unknown one
 * is an error) into cxt; SPI must be connected.
 */
extern Setup *cdp_journey_load_setup(const char *only, MemoryContext cxt);

/* Index of an event type among the setup's step types (len bytes), or -1. */
extern int	cdp_journey_setup_type(const Setup *s, const char *type, int len);

/* Index of a funnel in the setup, or -1. */
extern int	cdp_journey_setup_funnel(const Setup *s, const char *id);

/* Microseconds of an interval (a month counts 30 days). */
extern int64 cdp_interval_usecs(const Interval *iv);

/* A timestamptz Datum of a core time (INT64_MAX is infinity); never NULL. */
extern Datum cdp_journey_time_datum(int64 t);

/*
 * Prepares a replay at as_of: want_context reads the products, pages and
 * cart values of events; read_only for a STABLE caller; the sinks get
 * every journey (js) and each profile's next wake-up (ws, may be NULL).
 */
extern void cdp_journey_replay_init(Replay *rp, Setup *setup, int64 as_of, bool want_context,
									bool read_only, JourneySink js, WakeSink ws, void *arg);

/*
 * Reads the funnel events of the profiles (all when profiles is 0, else a
 * bigint[]) and replays each profile; SPI must be connected.  From
 * cdp.events, or from the funnel event log cdp.journey_events (from_log,
 * profiles given).
 */
extern void cdp_journey_replay_read(Replay *rp, Datum profiles, bool from_log);

/* Appends the packed record of an event (the form of cdp.journey_events). */
extern void cdp_journey_pack_event(StringInfo buf, const Replay *rp, const JEvent *e);

/*
 * Reads into rp->all (rp->n_all events, no profile) the funnel events of
 * the stitch batches after after_batch up to last_batch, with their
 * anchors; SPI must be connected.
 */
extern void cdp_journey_read_batches(Replay *rp, int64 after_batch, int64 last_batch);

/* Key of the advisory lock that serializes detection runs ("cdp", "jo"). */
#define JOURNEY_LOCK_KEY1 0x636470
#define JOURNEY_LOCK_KEY2 0x6a6f

#endif							/* CDP_JOURNEY_H */
