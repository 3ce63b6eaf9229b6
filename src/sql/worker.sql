-- The background worker (src/worker.c): registered when cdp is in
-- shared_preload_libraries, it keeps the profile store and the journeys of
-- cdp.worker_database current; its state is in shared memory.

CREATE FUNCTION cdp.worker_state(OUT running boolean, OUT pid integer, OUT state text,
	OUT enabled boolean, OUT units bigint, OUT events bigint, OUT last_unit_at timestamptz,
	OUT last_unit_ms double precision, OUT errors bigint, OUT last_error text,
	OUT last_error_at timestamptz, OUT database text)
	AS 'MODULE_PATHNAME', 'cdp_worker_state' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.worker_state() IS 'The background worker''s state in shared memory (cdp.worker_status adds its lag)';

CREATE VIEW cdp.worker_status AS
SELECT w.running, w.pid, w.database, w.state, w.enabled, w.units, w.events, w.last_unit_at,
       w.last_unit_ms, lag.events AS lag_events,
       extract(epoch FROM now() - lag.oldest)::double precision AS lag_seconds,
       w.errors, w.last_error, w.last_error_at
FROM cdp.worker_state() w
LEFT JOIN LATERAL (
	SELECT coalesce(sum(b.events), 0)::bigint AS events, coalesce(min(b.stitched_at), now()) AS oldest
	FROM cdp.stitch_batches b
	WHERE b.batch_id > LEAST(coalesce((SELECT p.last_batch_id FROM cdp.journey_progress p), 0),
	                         coalesce((SELECT s.last_batch_id FROM cdp.profile_store_progress s), 0))) lag
	ON w.database = pg_catalog.current_database();
COMMENT ON VIEW cdp.worker_status IS 'The background worker: running or not, what it does, its units of work, the stitched events not yet taken into the profile store or the journeys (lag), its errors';
COMMENT ON COLUMN cdp.worker_status.running IS 'Whether the worker process is running';
COMMENT ON COLUMN cdp.worker_status.pid IS 'Its process id';
COMMENT ON COLUMN cdp.worker_status.database IS 'The database it works in (cdp.worker_database), once connected';
COMMENT ON COLUMN cdp.worker_status.state IS 'What it is doing or waiting for (not loaded, disabled, cdp not installed in its database, waiting for new events, ...)';
COMMENT ON COLUMN cdp.worker_status.enabled IS 'cdp.worker_enabled';
COMMENT ON COLUMN cdp.worker_status.units IS 'Units of work done since the server started (each a transaction: the profile store folds in new batches, or journey detection at now())';
COMMENT ON COLUMN cdp.worker_status.events IS 'Stitched events those units folded into the profile store';
COMMENT ON COLUMN cdp.worker_status.last_unit_at IS 'When the last unit committed';
COMMENT ON COLUMN cdp.worker_status.last_unit_ms IS 'How long it took, in milliseconds';
COMMENT ON COLUMN cdp.worker_status.lag_events IS 'Stitched events not yet taken into the profile store or the journeys (NULL in a database the worker does not work in)';
COMMENT ON COLUMN cdp.worker_status.lag_seconds IS 'Age of the oldest of them, in seconds (0 when none; NULL in a database the worker does not work in)';
COMMENT ON COLUMN cdp.worker_status.errors IS 'Units that failed since the server started (the worker restarts after each)';
COMMENT ON COLUMN cdp.worker_status.last_error IS 'The last failure''s message and SQLSTATE';
COMMENT ON COLUMN cdp.worker_status.last_error_at IS 'When it happened';
