\echo Use "ALTER EXTENSION cdp UPDATE TO '0.2.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Integrity of the event store: event ids only from cdp.next_event_id, the
-- row check with message ids (NOT VALID: stored events are never judged
-- again), idempotency keys, one stitching batch per statement of the text
-- entry points, moves out of the default partition that do not re-judge.
-- ---------------------------------------------------------------------------
CREATE FUNCTION cdp.next_event_id() RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_next_event_id' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.next_event_id() IS 'Default of cdp.events.event_id: the next value of cdp.events_event_id_seq, remembered so that the row check can refuse ids supplied by the caller';

ALTER TABLE cdp.events ADD COLUMN message_id text;
COMMENT ON COLUMN cdp.events.message_id IS 'Idempotency key given by the sender (as Segment''s messageId): a later event with the same key is a retry, quarantined as duplicate_message_id';
ALTER TABLE cdp.events ALTER COLUMN event_id SET DEFAULT cdp.next_event_id();
COMMENT ON COLUMN cdp.events.event_id IS 'Unique id, assigned at load from cdp.events_event_id_seq (do not supply it)';

ALTER TABLE cdp.events DROP CONSTRAINT events_accept;
DROP FUNCTION cdp.accept_event(bigint, timestamptz, text, text, jsonb, jsonb, numeric, text);
CREATE FUNCTION cdp.accept_event(
	event_id bigint, occurred_at timestamptz, channel text, type text,
	identifiers jsonb, properties jsonb, amount numeric, source text, message_id text)
RETURNS boolean
	AS 'MODULE_PATHNAME', 'cdp_accept_event' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.accept_event(bigint, timestamptz, text, text, jsonb, jsonb, numeric, text, text) IS 'Row check of cdp.events: quarantines an invalid row and marks it for removal at the end of the statement, refuses an event_id not issued by cdp.next_event_id; always true';
ALTER TABLE cdp.events ADD CONSTRAINT events_accept
	CHECK (cdp.accept_event(event_id, occurred_at, channel, type, identifiers, properties,
	                        amount, source, message_id)) NOT VALID;

COMMENT ON COLUMN cdp.rejected_events.reason_code IS 'Machine-readable reason: missing_occurred_at, invalid_occurred_at, future_occurred_at, ancient_occurred_at, missing_channel, unknown_channel, missing_type, invalid_type, unknown_type, missing_identifiers, invalid_identifiers, invalid_identifier_kind, invalid_identifier_value, invalid_properties, invalid_amount, amount_out_of_range, invalid_source, invalid_message_id, duplicate_message_id, invalid_event, unknown_field';
COMMENT ON COLUMN cdp.rejected_events.raw IS 'The row as it was received; one of more than 64 kB keeps its first 64 kB as {"truncated": true, "bytes": N, "head": text}';

CREATE TABLE cdp.event_messages (
	message_id  text        PRIMARY KEY,
	event_id    bigint      NOT NULL,
	occurred_at timestamptz NOT NULL,
	claimed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdp.event_messages IS 'Message ids (idempotency keys) of stored events: a load whose message id is here is a retry and is not stored again; rows go with their events'' partitions (cdp.drop_partitions)';
COMMENT ON COLUMN cdp.event_messages.message_id IS 'The key the sender gave (cdp.events.message_id)';
COMMENT ON COLUMN cdp.event_messages.event_id IS 'The event stored under it';
COMMENT ON COLUMN cdp.event_messages.occurred_at IS 'When that event occurred (finds its partition)';
COMMENT ON COLUMN cdp.event_messages.claimed_at IS 'When it was stored';
CREATE INDEX ON cdp.event_messages (occurred_at);
SELECT pg_catalog.pg_extension_config_dump('cdp.event_messages', '');

COMMENT ON COLUMN cdp.event_load.occurred_at IS 'Time of the event in ISO 8601, such as 2025-03-04 10:22:13+00';
COMMENT ON COLUMN cdp.event_load.channel IS 'Channel, a key of cdp.channels';
COMMENT ON COLUMN cdp.event_load.type IS 'Event type';
COMMENT ON COLUMN cdp.event_load.identifiers IS 'JSON object of identifier kind and value';
COMMENT ON COLUMN cdp.event_load.properties IS 'JSON object of properties, or empty';
COMMENT ON COLUMN cdp.event_load.amount IS 'Amount as a plain number, or empty';
COMMENT ON COLUMN cdp.event_load.source IS 'System that sent the event, or empty';
COMMENT ON FUNCTION cdp.events_after_insert() IS 'Trigger: at the end of an INSERT or COPY, removes from cdp.events the rows that cdp.accept_event quarantined and the retries of stored message ids, and stitches the identities of the others';
CREATE TRIGGER event_load_done AFTER INSERT ON cdp.event_load
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_after_insert();
CREATE TRIGGER event_types_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp.event_types
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_changed();

DROP FUNCTION cdp.track(timestamptz, text, text, jsonb, jsonb, numeric, text);
CREATE FUNCTION cdp.track(
	occurred_at timestamptz,
	channel     text,
	type        text,
	identifiers jsonb,
	properties  jsonb   DEFAULT '{}',
	amount      numeric DEFAULT NULL,
	source      text    DEFAULT NULL,
	message_id  text    DEFAULT NULL)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_track' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.track(timestamptz, text, text, jsonb, jsonb, numeric, text, text) IS 'Records one event and returns its event_id; raises an error naming the field when the event is invalid; a retry of a stored message_id returns the stored event''s id and stores nothing';
COMMENT ON FUNCTION cdp.ingest(jsonb) IS 'Records a JSON array of events as one statement (one stitching batch); invalid ones and retries of stored message ids go to cdp.rejected_events; returns how many were accepted and rejected';

CREATE FUNCTION cdp.move_default_events(part regclass, from_time timestamptz, to_time timestamptz)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_move_default_events' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.move_default_events(regclass, timestamptz, timestamptz) IS 'Used by cdp.ensure_partitions: moves the events of [from_time, to_time) from cdp.events_default to part, a new partition not yet attached, without judging, quarantining or stitching them again; returns how many';

CREATE OR REPLACE FUNCTION cdp.ensure_partitions(from_time timestamptz, to_time timestamptz)
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

CREATE OR REPLACE FUNCTION cdp.drop_partitions(older_than timestamptz)
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

-- ---------------------------------------------------------------------------
-- Comments that complete the catalogue: the partition listing's columns and
-- the sequences behind the journals' ids.
-- ---------------------------------------------------------------------------
COMMENT ON COLUMN cdp.event_partitions.partition IS 'The partition table';
COMMENT ON COLUMN cdp.event_partitions.range_from IS 'First instant it holds (NULL for the default partition)';
COMMENT ON COLUMN cdp.event_partitions.range_to IS 'First instant after it (NULL for the default partition)';
COMMENT ON COLUMN cdp.event_partitions.is_default IS 'True for cdp.events_default, which holds events of months without a partition';
COMMENT ON COLUMN cdp.event_partitions.estimated_rows IS 'Rows, as estimated by the last ANALYZE or VACUUM';
COMMENT ON COLUMN cdp.event_partitions.total_bytes IS 'Size on disk with indexes and TOAST';
COMMENT ON SEQUENCE cdp.identifier_blocklist_entry_id_seq IS 'Ids of cdp.identifier_blocklist entries';
COMMENT ON SEQUENCE cdp.stitch_batches_batch_id_seq IS 'Batch numbers of cdp.stitch_batches, taken under the stitching lock';
COMMENT ON SEQUENCE cdp.profile_merges_merge_id_seq IS 'Ids of cdp.profile_merges';
COMMENT ON SEQUENCE cdp.identity_conflicts_conflict_id_seq IS 'Ids of cdp.identity_conflicts';
COMMENT ON SEQUENCE cdp.identity_overrides_override_id_seq IS 'Ids of cdp.identity_overrides';
COMMENT ON SEQUENCE cdp.identifier_moves_move_id_seq IS 'Ids of cdp.identifier_moves';
COMMENT ON SEQUENCE cdp.identifier_rejections_rejection_id_seq IS 'Ids of cdp.identifier_rejections';
COMMENT ON SEQUENCE cdp.clv_models_model_id_seq IS 'Ids of cdp.clv_models';
