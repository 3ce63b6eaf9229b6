
-- ---------------------------------------------------------------------------
-- Partitions of cdp.events: one per calendar month (UTC), created ahead of
-- need by cdp.ensure_partitions (run it from pg_cron), plus the default
-- partition that catches whatever has no month partition yet.
-- ---------------------------------------------------------------------------

CREATE VIEW cdp.event_partitions AS
	SELECT c.oid::regclass AS partition,
	       b.m[1]::timestamptz AS range_from,
	       b.m[2]::timestamptz AS range_to,
	       p.is_default,
	       greatest(c.reltuples, 0)::bigint AS estimated_rows,
	       pg_catalog.pg_total_relation_size(c.oid) AS total_bytes
	FROM pg_catalog.pg_inherits i
	JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
	CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound) e
	CROSS JOIN LATERAL (SELECT e.bound = 'DEFAULT' AS is_default) p
	LEFT JOIN LATERAL (SELECT pg_catalog.regexp_match(e.bound,
	                   'FROM \(''([^'']*)''\) TO \(''([^'']*)''\)') AS m) b ON true
	WHERE i.inhparent = 'cdp.events'::regclass;
COMMENT ON VIEW cdp.event_partitions IS 'Partitions of cdp.events with their time range (NULL for the default partition), estimated rows and size';

CREATE FUNCTION cdp.move_default_events(part regclass, from_time timestamptz, to_time timestamptz)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_move_default_events' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.move_default_events(regclass, timestamptz, timestamptz) IS 'Used by cdp.ensure_partitions: moves the events of [from_time, to_time) from cdp.events_default to part, a new partition not yet attached, without judging, quarantining or stitching them again; returns how many';

CREATE FUNCTION cdp.ensure_partitions(from_time timestamptz, to_time timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m       timestamp;	-- first day of a month, UTC
	lo      timestamptz;
	hi      timestamptz;
	part    text;
	moved   bigint;
	created integer := 0;
BEGIN
	IF from_time IS NULL OR to_time IS NULL THEN
		RAISE EXCEPTION 'partition range bounds must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF to_time < from_time THEN
		RAISE EXCEPTION 'partition range ends (%) before it starts (%)', to_time, from_time
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Pass the earlier time first.';
	END IF;
	IF to_time - from_time > interval '50 years' THEN
		RAISE EXCEPTION 'partition range from % to % is longer than 50 years', from_time, to_time
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Create partitions for the period the data covers, a few months ahead of now.';
	END IF;

	-- One creator at a time; loads go on meanwhile.
	PERFORM pg_advisory_xact_lock(hashtext('cdp.ensure_partitions'));

	m := date_trunc('month', from_time AT TIME ZONE 'UTC');
	WHILE (m AT TIME ZONE 'UTC') <= to_time LOOP
		lo := m AT TIME ZONE 'UTC';
		hi := (m + interval '1 month') AT TIME ZONE 'UTC';
		part := 'events_' || to_char(m, 'YYYYMM');
		IF to_regclass(format('cdp.%I', part)) IS NULL THEN
			EXECUTE format('CREATE TABLE cdp.%I (LIKE cdp.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
			-- The check lets ATTACH skip scanning the new table.
			EXECUTE format('ALTER TABLE cdp.%I ADD CONSTRAINT %I CHECK (occurred_at >= %L AND occurred_at < %L)',
			               part, part || '_range', lo, hi);
			-- a move, not a load: the rows are not judged again
			moved := cdp.move_default_events(format('cdp.%I', part)::regclass, lo, hi);
			EXECUTE format('ALTER TABLE cdp.events ATTACH PARTITION cdp.%I FOR VALUES FROM (%L) TO (%L)',
			               part, lo, hi);
			EXECUTE format('ALTER TABLE cdp.%I DROP CONSTRAINT %I', part, part || '_range');
			EXECUTE format('CREATE INDEX %I ON cdp.%I USING brin (event_id)',
			               part || '_event_id_idx', part);
			EXECUTE format('CREATE TRIGGER events_after_insert AFTER INSERT ON cdp.%I '
			               'FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_after_insert()', part);
			EXECUTE format('CREATE TRIGGER events_deleted AFTER DELETE OR TRUNCATE ON cdp.%I '
			               'FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_deleted()', part);
			EXECUTE format('COMMENT ON TABLE cdp.%I IS %L', part,
			               'Events of ' || to_char(m, 'YYYY-MM') || ' (UTC)');
			created := created + 1;
			IF moved > 0 THEN
				RAISE NOTICE 'moved % events from cdp.events_default to cdp.%', moved, part;
			END IF;
		END IF;
		m := m + interval '1 month';
	END LOOP;
	RETURN created;
END
$$;
COMMENT ON FUNCTION cdp.ensure_partitions(timestamptz, timestamptz) IS 'Creates the monthly partitions (UTC) covering the range, moving any of their events out of the default partition; returns how many it created';

CREATE FUNCTION cdp.drop_partitions(older_than timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p       record;
	dropped integer := 0;
BEGIN
	IF older_than IS NULL THEN
		RAISE EXCEPTION 'older_than must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM pg_advisory_xact_lock(hashtext('cdp.ensure_partitions'));
	FOR p IN SELECT partition::text AS name, range_from, range_to FROM cdp.event_partitions
	         WHERE NOT is_default AND range_to <= older_than ORDER BY range_from
	LOOP
		EXECUTE format('DROP TABLE %s', p.name);
		DELETE FROM cdp.event_anchors WHERE occurred_at >= p.range_from AND occurred_at < p.range_to;
		DELETE FROM cdp.event_messages WHERE occurred_at >= p.range_from AND occurred_at < p.range_to;
		-- journeys forget the dropped events at the next detection
		UPDATE cdp.journey_progress SET needs_full = true WHERE NOT needs_full;
		RAISE NOTICE 'dropped % (events from % to %)', p.name, p.range_from, p.range_to;
		dropped := dropped + 1;
	END LOOP;
	RETURN dropped;
END
$$;
COMMENT ON FUNCTION cdp.drop_partitions(timestamptz) IS 'Retention: drops the monthly partitions whose whole range is before older_than, and the anchors of their events; returns how many it dropped';
