/*
 * stitch_queue.h
 *	  Bulk loads stitched after their commit (stitch_queue.c).
 */
#ifndef CDP_STITCH_QUEUE_H
#define CDP_STITCH_QUEUE_H

#include "cdp.h"

#include "utils/jsonb.h"
#include "utils/timestamp.h"

/*
 * Queues a load's events (ids ascending, with their times and identifiers)
 * for stitching after its commit.
 */
extern void cdp_stitch_enqueue(int n, const int64 *ids, const TimestampTz *times,
							   Jsonb *const *docs);

/*
 * Stitches queued events, rows up to upto (0: all), whole rows up to
 * max_events (0: all), SPI connected; returns them and sets *more when
 * some remain.
 */
extern int64 cdp_stitch_queue_run(int64 upto, int64 max_events, bool *more);

/*
 * Makes sure the queue rows visible now, up to upto (0: all), are
 * stitched: waits for the worker, or stitches them (SPI connected).
 */
extern int64 cdp_stitch_queue_settle(int64 upto, bool *more);

/* Stitches what is queued when no worker serves the database. */
extern void cdp_stitch_queue_strays(void);

/* Whether queue rows are visible (SPI connected). */
extern bool cdp_stitch_queue_pending(void);

#endif							/* CDP_STITCH_QUEUE_H */
