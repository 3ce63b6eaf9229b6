-- The background worker (src/worker.c): registered when cdp is in
-- shared_preload_libraries, it stitches the bulk loads of
-- cdp.worker_database after they commit, and keeps its profile store and
-- journeys current; its state is in shared memory.

-- Bulk loads left to the worker (src/stitch_queue.c): a loading statement
-- of at least cdp.stitch_defer_rows rows, while the worker serves the
-- database, queues its events here instead of stitching them.  A queue row
-- commits with its events, so the worker sees them exactly when they are
-- visible, in whatever order loads commit.
CREATE TABLE cdp.stitch_queue (
	queue_id    bigserial     PRIMARY KEY,
	event_ids   bigint[]      NOT NULL,
	occurred_at timestamptz[] NOT NULL,
	identifiers jsonb[]       NOT NULL,
	events      integer       NOT NULL CHECK (events > 0),
	queued_at   timestamptz   NOT NULL DEFAULT now()
);
-- stored uncompressed: compressing 5,000 identifiers per row costs a
-- load more than writing them (the rows are deleted once stitched)
ALTER TABLE cdp.stitch_queue ALTER event_ids SET STORAGE EXTERNAL,
	ALTER occurred_at SET STORAGE EXTERNAL, ALTER identifiers SET STORAGE EXTERNAL;
COMMENT ON TABLE cdp.stitch_queue IS 'Events of bulk loads waiting to be stitched by the background worker; a row commits with its events. cdp.sync, cdp.profile, cdp.detect_journey_breaks, cdp.refresh_scores, cdp.validate_clv and cdp.rebuild_identities make sure it is stitched first (cdp.stitch_queued)';
COMMENT ON COLUMN cdp.stitch_queue.queue_id IS 'Queue order: the worker takes the oldest row first';
COMMENT ON COLUMN cdp.stitch_queue.event_ids IS 'The ids of events stored by the load, ascending (at most 5,000 per row)';
COMMENT ON COLUMN cdp.stitch_queue.occurred_at IS 'Their occurred_at, in the same order';
COMMENT ON COLUMN cdp.stitch_queue.identifiers IS 'Their identifiers, in the same order';
COMMENT ON COLUMN cdp.stitch_queue.events IS 'How many';
COMMENT ON COLUMN cdp.stitch_queue.queued_at IS 'Start of the loading transaction';
COMMENT ON SEQUENCE cdp.stitch_queue_queue_id_seq IS 'Queue order of cdp.stitch_queue';
SELECT pg_catalog.pg_extension_config_dump('cdp.stitch_queue', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.stitch_queue_queue_id_seq', '');

CREATE FUNCTION cdp.stitch_queued(own_only boolean DEFAULT false) RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_stitch_queued' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.stitch_queued(boolean) IS 'Makes sure the events that bulk loads left queued for the background worker are stitched: all of them, or with own_only those queued up to the last load of this session (what cdp.profile does). While the worker serves the database, waits for it; else (or if this transaction queued rows itself, holds a lock the worker needs, or runs under REPEATABLE READ) stitches them in the calling transaction. Returns how many were queued';

CREATE FUNCTION cdp.worker_state(OUT running boolean, OUT pid integer, OUT state text,
	OUT enabled boolean, OUT units bigint, OUT events bigint, OUT stitched bigint,
	OUT stitch_seconds double precision, OUT last_unit_at timestamptz, OUT last_unit_ms double precision, OUT errors bigint,
	OUT last_error text, OUT last_error_at timestamptz, OUT database text)
	AS 'MODULE_PATHNAME', 'cdp_worker_state' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.worker_state() IS 'The background worker''s state in shared memory (cdp.worker_status adds its lag)';

CREATE VIEW cdp.worker_status AS
SELECT w.running, w.pid, w.database, w.state, w.enabled, w.units, w.events, w.stitched,
       w.stitch_seconds, w.last_unit_at, w.last_unit_ms, lag.events + queue.events AS lag_events,
       extract(epoch FROM now() - LEAST(lag.oldest, queue.oldest))::double precision AS lag_seconds,
       queue.events AS queued_events, w.errors, w.last_error, w.last_error_at
FROM cdp.worker_state() w
LEFT JOIN LATERAL (
	SELECT coalesce(sum(b.events), 0)::bigint AS events, coalesce(min(b.stitched_at), now()) AS oldest
	FROM cdp.stitch_batches b
	WHERE b.batch_id > LEAST(coalesce((SELECT p.last_batch_id FROM cdp.journey_progress p), 0),
	                         coalesce((SELECT s.last_batch_id FROM cdp.profile_store_progress s), 0))) lag
	ON w.database = pg_catalog.current_database()
LEFT JOIN LATERAL (
	SELECT coalesce(sum(q.events), 0)::bigint AS events, coalesce(min(q.queued_at), now()) AS oldest
	FROM cdp.stitch_queue q) queue
	ON w.database = pg_catalog.current_database();
COMMENT ON VIEW cdp.worker_status IS 'The background worker: running or not, what it does, its units of work, the events not yet stitched or not yet taken into the profile store or the journeys (lag), its errors';
COMMENT ON COLUMN cdp.worker_status.running IS 'Whether the worker process is running';
COMMENT ON COLUMN cdp.worker_status.pid IS 'Its process id';
COMMENT ON COLUMN cdp.worker_status.database IS 'The database it works in (cdp.worker_database), once connected';
COMMENT ON COLUMN cdp.worker_status.state IS 'What it is doing or waiting for (not loaded, disabled, cdp not installed in its database, waiting for new events, ...)';
COMMENT ON COLUMN cdp.worker_status.enabled IS 'cdp.worker_enabled';
COMMENT ON COLUMN cdp.worker_status.units IS 'Units of work done since the server started (each a transaction: bulk-load events stitched, the profile store folding in new batches, or journey detection at now())';
COMMENT ON COLUMN cdp.worker_status.events IS 'Stitched events those units folded into the profile store';
COMMENT ON COLUMN cdp.worker_status.stitched IS 'Events of bulk loads those units stitched (cdp.stitch_queue)';
COMMENT ON COLUMN cdp.worker_status.stitch_seconds IS 'Time those stitching units took, in seconds (stitched / stitch_seconds: its stitching rate)';
COMMENT ON COLUMN cdp.worker_status.last_unit_at IS 'When the last unit committed';
COMMENT ON COLUMN cdp.worker_status.last_unit_ms IS 'How long it took, in milliseconds';
COMMENT ON COLUMN cdp.worker_status.lag_events IS 'Events not yet stitched (queued_events) or not yet taken into the profile store or the journeys (NULL in a database the worker does not work in)';
COMMENT ON COLUMN cdp.worker_status.lag_seconds IS 'Age of the oldest of them, in seconds (0 when none; NULL in a database the worker does not work in)';
COMMENT ON COLUMN cdp.worker_status.queued_events IS 'Events of committed bulk loads waiting to be stitched (cdp.stitch_queue)';
COMMENT ON COLUMN cdp.worker_status.errors IS 'Units that failed since the server started (the worker restarts after each)';
COMMENT ON COLUMN cdp.worker_status.last_error IS 'The last failure''s message and SQLSTATE';
COMMENT ON COLUMN cdp.worker_status.last_error_at IS 'When it happened';
