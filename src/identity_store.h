/*
 * identity_store.h
 *	  The identity store (identity_store.c): the one writer of the identity
 *	  graph.  Stitching (stitch.c), the rebuild and cdp.unmerge (rebuild.c)
 *	  and cdp.merge_profiles describe what they decided as CdpIdentityChanges
 *	  and hand it here; the store writes it with one set-based statement per
 *	  table and alone keeps the forwarding pointers of merged profiles.
 *
 * Tables it alone writes: cdp.profiles, cdp.identifiers, cdp.identity_links,
 * cdp.profile_merges, cdp.identifier_moves, cdp.identity_conflicts,
 * cdp.identifier_rejections, and what stitching leaves for the work that
 * follows it: cdp.event_anchors and cdp.stitch_batches.
 *
 * Locking: every writer holds the stitching lock (cdp_store_lock) until its
 * transaction ends.
 */
#ifndef CDP_IDENTITY_STORE_H
#define CDP_IDENTITY_STORE_H

#include "cdp.h"

#include "utils/timestamp.h"

/* A growable array of rows of one type (palloc'd in the current context). */
#define CDP_ROWS(T) struct { T *v; int n; int max; }

/* Appends a row to a CDP_ROWS and returns it (uninitialized). */
#define CDP_PUSH(l) \
	(((l).n == (l).max ? cdp_rows_grow((void **) &(l).v, &(l).max, sizeof(*(l).v)) : (void) 0), \
	 &(l).v[(l).n++])

extern void cdp_rows_grow(void **v, int *max, Size size);

/*
 * The work that follows stitching reads the events of the batches
 * ($1, $2] of cdp.stitch_batches: these CTEs give r (f, l), the batches'
 * ranges of event ids merged where they overlap or touch, so that the cost
 * depends on the events, not on how they were batched (ten thousand
 * one-event batches are one range).  A range may hold events of other
 * batches too (concurrent loads).
 */
#define CDP_BATCH_RANGES \
	"WITH b AS (SELECT first_event_id AS f, last_event_id AS l FROM cdp.stitch_batches " \
	"WHERE batch_id > $1 AND batch_id <= $2), " \
	"s AS (SELECT f, l, CASE WHEN f <= pg_catalog.max(l) OVER (ORDER BY f, l ROWS BETWEEN " \
	"UNBOUNDED PRECEDING AND 1 PRECEDING) + 1 THEN 0 ELSE 1 END AS starts FROM b), " \
	"g AS (SELECT f, l, pg_catalog.sum(starts) OVER (ORDER BY f, l) AS grp FROM s), " \
	"r AS (SELECT pg_catalog.min(f) AS f, pg_catalog.max(l) AS l FROM g GROUP BY grp) "

/* A new profile; first_event_id and merged_into 0 when none. */
typedef struct CdpNewProfile
{
	int64		profile_id;
	int64		first_event_id;
	int64		merged_into;	/* merged in the same batch */
} CdpNewProfile;

/* A stored profile merged away into another. */
typedef struct CdpForward
{
	int64		from;
	int64		to;
} CdpForward;

/* A new identifier; first_anchor_event_id 0 when it anchored no event. */
typedef struct CdpNewIdentifier
{
	int64		identifier_id;
	const char *kind;
	const char *value;
	int64		profile_id;
	TimestampTz first_seen;
	int64		first_event_id;
	int64		first_anchor_event_id;
} CdpNewIdentifier;

/* The first event a stored identifier anchored. */
typedef struct CdpFirstAnchor
{
	int64		identifier_id;
	int64		event_id;
} CdpFirstAnchor;

/* An identifier that changes profile (a rebuild or an unmerge). */
typedef struct CdpMove
{
	int64		identifier_id;
	int64		from_profile;
	int64		to_profile;
} CdpMove;

/* A pair of identifiers seen together, at its first event. */
typedef struct CdpLinkRow
{
	int64		anchor_id;
	int64		identifier_id;
	int64		event_id;
	int64		position;
} CdpLinkRow;

/* A merge by the rules (cdp.profile_merges, method 'rule'). */
typedef struct CdpMergeRow
{
	int64		survivor;
	int64		absorbed;
	int64		anchor_id;
	int64		identifier_id;
	int64		event_id;
} CdpMergeRow;

/* A link the rules refused (cdp.identity_conflicts); kind NULL if none. */
typedef struct CdpConflictRow
{
	int64		event_id;
	int64		anchor_id;
	int64		identifier_id;
	int64		profile_id;
	int64		other_profile;
	const char *kind;
	const char *reason;
} CdpConflictRow;

/* An identifier of an event left out (cdp.identifier_rejections). */
typedef struct CdpRejectionRow
{
	int64		event_id;
	const char *kind;
	const char *value;
	const char *reason;
} CdpRejectionRow;

/* An event's anchor (cdp.event_anchors). */
typedef struct CdpEventAnchor
{
	int64		event_id;
	TimestampTz occurred_at;
	int64		anchor_id;
} CdpEventAnchor;

/*
 * What a stitching batch, a rebuild or an unmerge changed in the graph.
 * Anchors are in event_id order; they make one cdp.stitch_batches row.
 */
typedef struct CdpIdentityChanges
{
	CDP_ROWS(CdpNewProfile) profiles;
	CDP_ROWS(CdpForward) forwards;
	CDP_ROWS(CdpNewIdentifier) identifiers;
	CDP_ROWS(CdpFirstAnchor) first_anchors;
	CDP_ROWS(CdpMove) moves;
	const char *move_cause;		/* cdp.identifier_moves.cause */
	CDP_ROWS(CdpConflictRow) conflicts;
	CDP_ROWS(CdpMergeRow) merges;
	CDP_ROWS(CdpLinkRow) links;
	CDP_ROWS(CdpEventAnchor) anchors;
	CDP_ROWS(CdpRejectionRow) rejections;
} CdpIdentityChanges;

/* Takes the stitching lock (held until the transaction ends). */
extern void cdp_store_lock(void);

/* n new profile ids, ascending. */
extern int64 *cdp_store_profile_ids(int n);

/* n new identifier ids, ascending. */
extern int64 *cdp_store_identifier_ids(int n);

/* Writes the changes, inside an SPI connection, under the stitching lock. */
extern void cdp_store_write(const CdpIdentityChanges *c);

/* Marks a merge of the journal undone (cdp.unmerge). */
extern void cdp_store_undo_merge(int64 merge_id);

#endif							/* CDP_IDENTITY_STORE_H */
