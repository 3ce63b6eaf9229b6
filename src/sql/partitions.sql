
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

-- Retention.  A guard keeps a mistaken older_than (now() instead of now()
-- minus the retention period) from dropping recent months: partitions that
-- may hold events of the last month are dropped only with force.
CREATE FUNCTION cdp.drop_partitions(older_than timestamptz, dry_run boolean DEFAULT false,
                                    force boolean DEFAULT false)
RETURNS TABLE (partition text, range_from timestamptz, range_to timestamptz, estimated_rows bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p      record;
	recent text[];
	bound  timestamptz := now() - interval '1 month';
BEGIN
	IF older_than IS NULL OR dry_run IS NULL OR force IS NULL THEN
		RAISE EXCEPTION 'older_than, dry_run and force must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT dry_run THEN
		PERFORM pg_advisory_xact_lock(hashtext('cdp.ensure_partitions'));
	END IF;
	SELECT array_agg(ep.partition::text ORDER BY ep.range_from) INTO recent
	FROM cdp.event_partitions ep
	WHERE NOT ep.is_default AND ep.range_to <= older_than AND ep.range_to > bound;
	IF recent IS NOT NULL AND NOT force THEN
		IF dry_run THEN
			RAISE WARNING 'drop_partitions(%) would refuse to drop recent partitions: %',
				older_than, array_to_string(recent, ', ')
				USING DETAIL = format('A partition that ends after %s may hold events of the last month; it is dropped only with force.', bound),
				      HINT = 'Without dry_run the call fails unless force => true is passed.';
		ELSE
			RAISE EXCEPTION 'drop_partitions(%) would drop recent partitions: %',
				older_than, array_to_string(recent, ', ')
				USING ERRCODE = 'invalid_parameter_value',
				      DETAIL = format('A partition that ends after %s may hold events of the last month; it is dropped only with force.', bound),
				      HINT = 'Pass the start of the retention period, such as now() - interval ''13 months''; list what would go with dry_run => true, or pass force => true to drop them anyway.';
		END IF;
	END IF;
	IF NOT dry_run THEN
		-- bulk loads' queued events are anchored before their partitions go
		PERFORM cdp.stitch_queued();
	END IF;
	FOR p IN SELECT ep.partition::text AS name, ep.range_from, ep.range_to, ep.estimated_rows
	         FROM cdp.event_partitions ep
	         WHERE NOT ep.is_default AND ep.range_to <= older_than ORDER BY ep.range_from
	LOOP
		IF NOT dry_run THEN
			EXECUTE format('DROP TABLE %s', p.name);
			PERFORM cdp.store_forget_anchors(p.range_from, p.range_to);
			DELETE FROM cdp.event_messages m WHERE m.occurred_at >= p.range_from AND m.occurred_at < p.range_to;
			-- journeys forget the dropped events at the next detection
			UPDATE cdp.journey_progress SET needs_full = true WHERE NOT needs_full;
			-- and the profile store at the next cdp.sync
			UPDATE cdp.profile_store_progress SET needs_full = true WHERE NOT needs_full;
			RAISE NOTICE 'dropped % (events from % to %)', p.name, p.range_from, p.range_to;
		END IF;
		partition := p.name;
		range_from := p.range_from;
		range_to := p.range_to;
		estimated_rows := p.estimated_rows;
		RETURN NEXT;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdp.drop_partitions(timestamptz, boolean, boolean) IS 'Retention: drops the monthly partitions whose whole range is before older_than, and the anchors and message ids of their events, and lists them; dry_run only lists them; refuses to drop a partition that may hold events of the last month unless force';
