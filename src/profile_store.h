/*
 * profile_store.h
 *	  The profile store (profile_store.c): per-anchor facts kept from the
 *	  stitched batches, for the worker and the functions that read it.
 */
#ifndef CDP_PROFILE_STORE_H
#define CDP_PROFILE_STORE_H

#include "cdp.h"

/* What a sync did. */
typedef struct CdpSyncResult
{
	int64		batches;		/* batches folded in */
	int64		events;			/* their events (or all events, rebuilt) */
	bool		rebuilt;		/* the store was recomputed instead */
	int64		pending;		/* events of later batches, still to fold in */
	int64		last_batch;		/* the last batch now in the store */
} CdpSyncResult;

/* Folds pending batches in (SPI connected), taking the store's lock first. */
extern CdpSyncResult cdp_store_sync_locked(int64 max_events);

/* Whether this transaction holds the store's lock. */
extern bool cdp_profile_store_lock_held(void);

/* Whether the store's tables exist (not under the 0.1.0 schema). */
extern bool cdp_store_installed(void);

/* At the end of a statement that stitched: folds in unless the worker will. */
extern void cdp_store_after_stitching(void);

/* Marks the store for a rebuild at the next sync (SPI connected). */
extern void cdp_store_needs_rebuild(void);

#endif							/* CDP_PROFILE_STORE_H */
