\echo Use "ALTER EXTENSION cdp UPDATE TO '0.2.0'" to load this file. \quit
-- cdp upgrade from 0.1.0 to 0.2.0.
--
-- Every change to the SQL surface (src/sql/*.sql) between the two releases,
-- written so that it runs on a 0.1.0 database: CREATE OR REPLACE FUNCTION for
-- a changed body, DROP and CREATE when a signature changes, ALTER TABLE for
-- columns, COMMENT ON again for a changed comment, pg_extension_config_dump
-- for a new table that keeps user data.  One section per area, headed by a
-- comment naming it.  test/upgrade.sh checks that a 0.1.0 database updated
-- with this script has exactly the schema of a fresh CREATE EXTENSION cdp.

-- Release: the bump to 0.2.0 itself changes no object.


-- ---------------------------------------------------------------------------
-- Integrity of the event store: event ids only from the sequence, through
-- cdp.issue_event_id; the row check with message ids (NOT VALID: stored
-- events are never judged again), idempotency keys, one stitching batch per
-- statement of the text entry points, moves out of the default partition
-- that do not re-judge.
-- ---------------------------------------------------------------------------
-- STABLE, though it remembers its argument: COPY inserts row by row when a
-- default holds a volatile function other than nextval (src/events.c).
CREATE FUNCTION cdp.issue_event_id(id bigint) RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_issue_event_id' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION cdp.issue_event_id(bigint) IS 'In the default of cdp.events.event_id: returns the next value of cdp.events_event_id_seq it is given, remembered so that the row check can refuse ids supplied by the caller';

ALTER TABLE cdp.events ADD COLUMN message_id text;
COMMENT ON COLUMN cdp.events.message_id IS 'Idempotency key given by the sender (as Segment''s messageId): a later event with the same key is a retry, quarantined as duplicate_message_id';
ALTER TABLE cdp.events ALTER COLUMN event_id SET DEFAULT cdp.issue_event_id(nextval('cdp.events_event_id_seq'));
COMMENT ON COLUMN cdp.events.event_id IS 'Unique id, assigned at load from cdp.events_event_id_seq (do not supply it)';

ALTER TABLE cdp.events DROP CONSTRAINT events_accept;
DROP FUNCTION cdp.accept_event(bigint, timestamptz, text, text, jsonb, jsonb, numeric, text);
CREATE FUNCTION cdp.accept_event(
	event_id bigint, occurred_at timestamptz, channel text, type text,
	identifiers jsonb, properties jsonb, amount numeric, source text, message_id text)
RETURNS boolean
	AS 'MODULE_PATHNAME', 'cdp_accept_event' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.accept_event(bigint, timestamptz, text, text, jsonb, jsonb, numeric, text, text) IS 'Row check of cdp.events: quarantines an invalid row and marks it for removal at the end of the statement, refuses an event_id not issued by cdp.issue_event_id; always true';
ALTER TABLE cdp.events ADD CONSTRAINT events_accept
	CHECK (cdp.accept_event(event_id, occurred_at, channel, type, identifiers, properties,
	                        amount, source, message_id)) NOT VALID;

COMMENT ON COLUMN cdp.rejected_events.reason_code IS 'Machine-readable reason: missing_occurred_at, invalid_occurred_at, future_occurred_at, ancient_occurred_at, missing_channel, unknown_channel, missing_type, invalid_type, unknown_type, missing_identifiers, invalid_identifiers, invalid_identifier_kind, invalid_identifier_value, invalid_properties, invalid_amount, amount_out_of_range, invalid_source, invalid_message_id, duplicate_message_id, invalid_event, unknown_field, erased (an identifier erased by cdp.forget)';
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

-- The rows a load removes at its end (quarantined, retries) leave journeys alone.
CREATE OR REPLACE FUNCTION cdp.events_deleted() RETURNS trigger
	AS 'MODULE_PATHNAME', 'cdp_events_deleted' LANGUAGE C;
COMMENT ON FUNCTION cdp.events_deleted() IS 'Trigger: after events are deleted, makes the next cdp.detect_journey_breaks replay every profile (not for the quarantined rows and retries a load removes)';

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

-- ---------------------------------------------------------------------------
-- Configuration: validated when written (issue 9, item 6), and retention
-- with a dry run and a guard (cdp.drop_partitions).
-- ---------------------------------------------------------------------------

-- events: cdp.channels is never empty
-- A configuration table that must never be empty: TRUNCATE is refused, and
-- a DELETE is checked at commit, so that a transaction may replace every row.
-- Arguments: the key column and what a row is called.
CREATE FUNCTION cdp.config_not_empty() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl   text := format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
	empty boolean;
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		RAISE EXCEPTION 'truncating % would leave it empty', tbl
			USING ERRCODE = 'check_violation',
			      HINT = 'The table must never be empty: DELETE its rows and insert the new ones in the same transaction (it is checked at commit).';
	END IF;
	EXECUTE format('SELECT NOT EXISTS (SELECT FROM %s)', tbl) INTO empty;
	IF empty THEN
		RAISE EXCEPTION 'deleting % "%" leaves % empty', TG_ARGV[1], to_jsonb(OLD) ->> TG_ARGV[0], tbl
			USING ERRCODE = 'check_violation',
			      HINT = format('The table must never be empty: keep one %s, or insert the new ones in the same transaction (it is checked at commit).', TG_ARGV[1]);
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.config_not_empty() IS 'Trigger: refuses to truncate a configuration table that must never be empty, and a transaction that deletes its last row (checked at commit)';
CREATE CONSTRAINT TRIGGER channels_not_empty AFTER DELETE ON cdp.channels
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cdp.config_not_empty('channel', 'channel');
CREATE TRIGGER channels_no_truncate BEFORE TRUNCATE ON cdp.channels
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_not_empty('channel', 'channel');

-- partitions: drop_partitions lists what it drops, has a dry run and a guard
DROP FUNCTION cdp.drop_partitions(timestamptz);
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

-- identity: blocklist patterns compile; 1 to 64 identity rules
-- Configuration is checked when it is written: a bad row would otherwise
-- make every later load or rebuild fail.

CREATE FUNCTION cdp.identifier_blocklist_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	msg text;
BEGIN
	IF NEW.is_pattern THEN
		BEGIN
			-- compiled as identity resolution uses it: lower-cased, C collation
			PERFORM '' COLLATE "C" ~ lower(NEW.value);
		EXCEPTION WHEN invalid_regular_expression THEN
			GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
			RAISE EXCEPTION 'blocklist pattern "%" for % is not a valid regular expression',
				NEW.value, coalesce('kind ' || NEW.kind, 'every kind')
				USING ERRCODE = 'invalid_regular_expression',
				      DETAIL = format('Lower-cased, as it is matched, it gives: %s.', msg),
				      HINT = 'Write a PostgreSQL regular expression that stays valid in lower case, or set is_pattern to false for an exact value.';
		END;
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION cdp.identifier_blocklist_check() IS 'Trigger: refuses a blocklist pattern that is not a valid regular expression once lower-cased';
CREATE TRIGGER identifier_blocklist_check BEFORE INSERT OR UPDATE ON cdp.identifier_blocklist
	FOR EACH ROW EXECUTE FUNCTION cdp.identifier_blocklist_check();

-- At most CDP_IDGRAPH_MAX_KINDS (src/core/idgraph.h) kinds have a rule.
CREATE FUNCTION cdp.identity_rules_limit() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	SELECT count(*) INTO n FROM cdp.identity_rules;
	IF n > 64 THEN
		RAISE EXCEPTION 'identity rule "%" would make % kinds in cdp.identity_rules, more than 64', NEW.kind, n
			USING ERRCODE = 'program_limit_exceeded',
			      HINT = 'Identity resolution handles at most 64 identifier kinds: delete the rules of kinds you no longer use, or leave rare kinds without a rule (they are then ignored).';
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.identity_rules_limit() IS 'Constraint trigger: refuses a rule that makes cdp.identity_rules hold more than 64 kinds';
CREATE CONSTRAINT TRIGGER identity_rules_limit AFTER INSERT ON cdp.identity_rules
	DEFERRABLE INITIALLY IMMEDIATE FOR EACH ROW EXECUTE FUNCTION cdp.identity_rules_limit();

CREATE CONSTRAINT TRIGGER identity_rules_not_empty AFTER DELETE ON cdp.identity_rules
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cdp.config_not_empty('kind', 'identity rule');
CREATE TRIGGER identity_rules_no_truncate BEFORE TRUNCATE ON cdp.identity_rules
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_not_empty('kind', 'identity rule');

-- journeys: at most 64 step types in a funnel and over all funnels
CREATE OR REPLACE FUNCTION cdp.funnels_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n   integer := cardinality(NEW.steps);
	bad text;
BEGIN
	IF NEW.funnel_id IS NULL OR NEW.funnel_id !~ '^[a-z][a-z0-9_]{0,31}$' THEN
		RAISE EXCEPTION 'invalid funnel id "%"', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A funnel id is a lower-case word of up to 32 letters, digits and underscores, such as cart.';
	END IF;
	IF NEW.steps IS NULL OR n < 2 OR array_ndims(NEW.steps) <> 1 THEN
		RAISE EXCEPTION 'funnel "%" needs at least two steps', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'List the event types of its steps in order, such as ''{add_to_cart,checkout_start,purchase}''.';
	END IF;
	IF n > 64 THEN
		RAISE EXCEPTION 'funnel "%" has % steps, more than 64', NEW.funnel_id, n
			USING ERRCODE = 'program_limit_exceeded',
			      HINT = 'Journey detection follows at most 64 distinct step types over all funnels together.';
	END IF;
	IF array_position(NEW.steps, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'funnel "%" has a null step', NEW.funnel_id
			USING ERRCODE = 'null_value_not_allowed',
			      HINT = 'Every step is an event type of cdp.event_types.';
	END IF;
	SELECT s INTO bad FROM unnest(NEW.steps) s GROUP BY s HAVING count(*) > 1 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'funnel "%" lists step "%" twice', NEW.funnel_id, bad
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Each step is a distinct event type: a journey moves forward through them.';
	END IF;
	SELECT s INTO bad FROM unnest(NEW.steps) WITH ORDINALITY u(s, k)
	WHERE NOT EXISTS (SELECT FROM cdp.event_types t WHERE t.type = u.s) ORDER BY k LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'unknown event type "%" in funnel "%"', bad, NEW.funnel_id
			USING ERRCODE = 'foreign_key_violation',
			      HINT = 'Steps are types of cdp.event_types; register a new type there first.';
	END IF;
	IF NEW.conversion_window IS NULL OR NEW.conversion_window <= interval '0' THEN
		RAISE EXCEPTION 'conversion_window of funnel "%" must be positive', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'It is how long a journey may take to complete, such as ''7 days''.';
	END IF;
	IF NEW.abandon_after IS NULL OR NEW.abandon_after <= interval '0' THEN
		RAISE EXCEPTION 'abandon_after of funnel "%" must be positive', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'It is the inactivity after which a journey breaks, such as ''1 hour''.';
	END IF;
	IF extract(year FROM NEW.conversion_window) <> 0 OR extract(month FROM NEW.conversion_window) <> 0
	   OR extract(year FROM NEW.abandon_after) <> 0 OR extract(month FROM NEW.abandon_after) <> 0 THEN
		RAISE EXCEPTION 'windows of funnel "%" must not be written in months or years', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A month has no fixed length; write it in days, such as ''30 days''.';
	END IF;
	IF NEW.conversion_window > interval '3650 days' THEN
		RAISE EXCEPTION 'conversion_window of funnel "%" is too long', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('It is %s; at most 3650 days are allowed.', NEW.conversion_window),
			      HINT = 'A journey is meant to last days or weeks: use a shorter window.';
	END IF;
	IF NEW.abandon_after >= NEW.conversion_window THEN
		RAISE EXCEPTION 'abandon_after of funnel "%" must be shorter than its conversion_window', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('abandon_after is %s, conversion_window %s.', NEW.abandon_after, NEW.conversion_window),
			      HINT = 'A journey can only break inside its window; with a longer delay it would simply expire.';
	END IF;
	IF NEW.min_step IS NULL OR NEW.min_step < 1 OR NEW.min_step > n THEN
		RAISE EXCEPTION 'min_step of funnel "%" must be between 1 and %', NEW.funnel_id, n
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'It is the step a journey must have reached for a pause to count as a break.';
	END IF;
	IF NEW.description IS NULL THEN
		NEW.description := '';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION cdp.funnels_check() IS 'Trigger: refuses a funnel whose steps, windows or min_step are invalid, with a message saying why';

-- Detection follows at most 64 distinct step types over every funnel
-- together (the setup of src/journey.c): checked on the table as it is
-- after the statement (or at commit, when deferred).
CREATE FUNCTION cdp.funnels_limit() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	SELECT count(DISTINCT s) INTO n FROM cdp.funnels f CROSS JOIN LATERAL unnest(f.steps) s;
	IF n > 64 THEN
		RAISE EXCEPTION 'funnel "%" would bring the step types of cdp.funnels to %, more than 64', NEW.funnel_id, n
			USING ERRCODE = 'program_limit_exceeded',
			      DETAIL = 'Journey detection follows at most 64 distinct step types over all funnels together.',
			      HINT = 'Reuse the step types of other funnels, or delete the funnels you no longer use.';
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.funnels_limit() IS 'Constraint trigger: refuses a funnel that brings the distinct step types of all funnels above 64';
CREATE CONSTRAINT TRIGGER funnels_limit AFTER INSERT OR UPDATE ON cdp.funnels
	DEFERRABLE INITIALLY IMMEDIATE FOR EACH ROW EXECUTE FUNCTION cdp.funnels_limit();

-- ---------------------------------------------------------------------------
-- Scoring: the NBD model (fallback when dropout is not identified), every
-- purchaser scored from its whole history, spend outliers left out, amounts
-- beyond double precision, stale statistics analyzed, validate_clv hint.
-- ---------------------------------------------------------------------------
CREATE FUNCTION cdp.nbd_fit_final(internal) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'cdp_nbd_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.nbd_fit_final(internal) IS 'Internal: fits NBD';
CREATE AGGREGATE cdp.nbd_fit(x double precision, t_x double precision, t double precision) (
	SFUNC = cdp.btyd_accum3, STYPE = internal, FINALFUNC = cdp.nbd_fit_final,
	COMBINEFUNC = cdp.btyd_combine, SERIALFUNC = cdp.btyd_serialize, DESERIALFUNC = cdp.btyd_deserialize,
	PARALLEL = SAFE);
COMMENT ON AGGREGATE cdp.nbd_fit(double precision, double precision, double precision) IS 'Fits the NBD model (Ehrenberg 1959: purchases at gamma-distributed rates, nobody drops out; the limit of BG/NBD as a runs to 0 and of Pareto/NBD as s runs to 0) to (x, t_x, t); jsonb with r, alpha and the fit''s diagnostics';
CREATE FUNCTION cdp.nbd_expected_purchases(params jsonb, horizon double precision, x double precision, t_x double precision, t double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_nbd_expected_purchases' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.nbd_expected_purchases(jsonb, double precision, double precision, double precision, double precision) IS 'NBD: expected purchases in the next horizon of a customer with history (x, t_x, t), horizon (r + x) / (alpha + t); nobody drops out, so P(alive) is 1';
COMMENT ON FUNCTION cdp.clv(jsonb, jsonb, double precision, double precision, double precision, double precision, integer, double precision, double precision, double precision) IS 'Customer lifetime value: margin times the expected value of a purchase (Gamma-Gamma) times the purchases expected in each of the next periods (BG/NBD, Pareto/NBD or NBD, periods of period_length time units), discounted at discount_rate per period';
COMMENT ON COLUMN cdp.clv_models.model IS 'The purchase model (cdp.bgnbd_fit, cdp.pareto_nbd_fit or cdp.nbd_fit result); when the requested model could not be identified, the NBD fit it fell back to, with the failed fit in its "fallback_from" field';
COMMENT ON COLUMN cdp.clv_models.spend_model IS 'The spend model (cdp.gamma_gamma_fit result), with "left_out": the customers whose mean purchase value was not a finite number or above "left_out_above" (10,000 times the median), left out of it';
COMMENT ON TABLE cdp.clv IS 'Lifetime value of every live profile with a purchase up to as_of, from its whole history and the latest model of cdp.clv_models (fitted on the calibration window); filled by cdp.refresh_scores';
COMMENT ON COLUMN cdp.clv.x IS 'Repeat purchase days up to as_of (purchase days after the first)';
COMMENT ON COLUMN cdp.clv.avg_value IS 'Mean value of the repeat purchase days (Infinity beyond double precision)';
COMMENT ON COLUMN cdp.clv.p_alive IS 'Probability that the customer is still active (1 under the NBD model)';
COMMENT ON COLUMN cdp.clv.expected_value IS 'Expected value of a future purchase day (Gamma-Gamma); NULL for a customer left out of the spend model';
COMMENT ON COLUMN cdp.clv.clv IS 'Discounted margin expected over the horizon; NULL for a customer left out of the spend model';

CREATE OR REPLACE FUNCTION cdp.purchase_history(from_time timestamptz, to_time timestamptz, days regclass DEFAULT NULL)
RETURNS TABLE (profile_id bigint, x integer, t_x double precision, t double precision, avg_value double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	first_day date := (from_time AT TIME ZONE 'UTC')::date;
	last_day  date := (to_time AT TIME ZONE 'UTC')::date;
BEGIN
	-- the mean is computed in numeric; one beyond double precision is Infinity
	RETURN QUERY EXECUTE format(
		'SELECT h.profile_id, h.x, h.t_x, h.t,
		        CASE WHEN h.m IS NULL THEN NULL WHEN h.m = ''NaN'' THEN ''NaN''::double precision
		             WHEN h.m >= 1e308 THEN ''Infinity''::double precision ELSE h.m::double precision END
		 FROM (SELECT d.profile_id, (count(*) - 1)::integer AS x,
		              (max(d.day) - min(d.day))::double precision AS t_x,
		              (extract(epoch FROM $2 - (min(d.day)::timestamp AT TIME ZONE ''UTC'')) / 86400.0)::double precision AS t,
		              CASE WHEN count(*) > 1
		                   THEN greatest(0, (sum(d.value) - (array_agg(d.value ORDER BY d.day))[1]) / (count(*) - 1)) END AS m
		       FROM %s d
		       WHERE d.purchases > 0 AND d.day BETWEEN $3 AND $4
		       GROUP BY 1) h',
		coalesce(days::text, 'cdp.purchase_days($1, $2)'))
	USING first_day::timestamp AT TIME ZONE 'UTC', to_time, first_day, last_day;
END
$$;
COMMENT ON FUNCTION cdp.purchase_history(timestamptz, timestamptz, regclass) IS 'The lifetime-value models'' view of each profile with a purchase day in a window (days from that of from_time to to_time), in days: x repeat purchase days, t_x days from the first to the last, t days from the first to to_time, and the mean value of the repeat days (Infinity when beyond double precision); read from a table of cdp.purchase_days rows when days is given';

CREATE FUNCTION cdp.analyze_stale(tables regclass[]) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rel      regclass;
	analyzed integer := 0;
BEGIN
	FOR rel IN
		SELECT c.oid::regclass
		FROM unnest(tables) AS t(rel)
		CROSS JOIN LATERAL (SELECT p.relid FROM pg_catalog.pg_partition_tree(t.rel) AS p WHERE p.isleaf
		                    UNION SELECT t.rel) AS l(relid)
		JOIN pg_catalog.pg_class c ON c.oid = l.relid
		LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
		WHERE c.relkind IN ('r', 'm')
		  AND (c.reltuples < 0 OR coalesce(s.n_mod_since_analyze, 0) > 50 + 0.1 * c.reltuples)
		ORDER BY 1
	LOOP
		EXECUTE pg_catalog.format('ANALYZE %s', rel);
		analyzed := analyzed + 1;
	END LOOP;
	IF analyzed > 0 THEN
		RAISE DEBUG 'analyzed % tables whose statistics were missing or stale', analyzed;
	END IF;
	RETURN analyzed;
END
$$;
COMMENT ON FUNCTION cdp.analyze_stale(regclass[]) IS 'Internal: analyzes those of the tables (the partitions of a partitioned one) never analyzed, or with more rows changed since their last analyze than autovacuum''s default threshold (50 + 10 %); returns how many; called by the scoring jobs before they read events';

CREATE OR REPLACE FUNCTION cdp.refresh_scores(as_of timestamptz DEFAULT now(),
                                   calibration interval DEFAULT '1 year',
                                   horizon interval DEFAULT '1 year',
                                   model text DEFAULT 'bgnbd',
                                   annual_discount double precision DEFAULT 0.1,
                                   margin double precision DEFAULT 1,
                                   OUT rfm_profiles bigint, OUT clv_profiles bigint, OUT model_id bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fit       jsonb;
	nbd       jsonb;
	spend     jsonb;
	spend_cap double precision;
	left_out  bigint;
	from_time timestamptz := as_of - calibration;
	days      double precision := extract(epoch FROM horizon) / 86400.0;
	months    integer;
BEGIN
	IF as_of IS NULL OR calibration IS NULL OR horizon IS NULL THEN
		RAISE EXCEPTION 'as_of, calibration and horizon must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF model IS NULL OR model NOT IN ('bgnbd', 'pareto_nbd', 'nbd') THEN
		RAISE EXCEPTION 'unknown lifetime-value model "%"', model
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use bgnbd, pareto_nbd or nbd.';
	END IF;
	IF calibration <= interval '0' OR horizon < interval '0' THEN
		RAISE EXCEPTION 'calibration must be positive and horizon not negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF annual_discount IS NULL OR annual_discount <= -1 OR margin IS NULL OR margin < 0 THEN
		RAISE EXCEPTION 'annual_discount must be above -1 and margin at least 0'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- statistics of what is read, if a bulk load left them missing or stale
	PERFORM cdp.stitch_queued();	-- bulk loads' events, if the worker has not stitched them yet
	PERFORM cdp.analyze_stale(ARRAY['cdp.events', 'cdp.event_anchors', 'cdp.identifiers']::regclass[]);

	-- one pass over the purchases up to as_of, for RFM and the models
	CREATE TEMP TABLE cdp_days ON COMMIT DROP AS
		SELECT * FROM cdp.purchase_days('-infinity', refresh_scores.as_of);
	ANALYZE cdp_days;

	-- RFM over every purchase up to as_of
	TRUNCATE cdp.rfm;
	INSERT INTO cdp.rfm (profile_id, as_of, first_purchase, last_purchase, recency_days, frequency, monetary, r, f, m, rfm_code, segment)
	WITH p AS (
		SELECT d.profile_id, min(d.first_at) AS first_purchase, max(d.last_at) AS last_purchase,
		       sum(d.purchases) AS frequency, sum(d.value) AS monetary
		FROM pg_temp.cdp_days d
		GROUP BY 1 HAVING sum(d.purchases) > 0
	), s AS (
		SELECT p.profile_id, p.first_purchase, p.last_purchase,
		       round((extract(epoch FROM refresh_scores.as_of - p.last_purchase) / 86400.0)::numeric, 2) AS recency_days,
		       p.frequency::integer AS frequency, p.monetary,
		       count(*) OVER () AS n,
		       rank() OVER (ORDER BY p.last_purchase) AS rr,
		       rank() OVER (ORDER BY p.frequency) AS fr,
		       rank() OVER (ORDER BY p.monetary) AS mr
		FROM p
	), sc AS (
		SELECT s.*, (1 + (5 * (rr - 1)) / n)::smallint AS r, (1 + (5 * (fr - 1)) / n)::smallint AS f,
		       (1 + (5 * (mr - 1)) / n)::smallint AS m
		FROM s
	)
	SELECT sc.profile_id, refresh_scores.as_of, sc.first_purchase, sc.last_purchase, sc.recency_days, sc.frequency,
	       sc.monetary, sc.r, sc.f, sc.m, sc.r::text || sc.f::text || sc.m::text,
	       (SELECT g.segment FROM cdp.rfm_segments g
	        WHERE sc.r BETWEEN g.r_min AND g.r_max AND (sc.f + sc.m) / 2.0 BETWEEN g.fm_min AND g.fm_max
	        ORDER BY g.priority LIMIT 1)
	FROM sc;
	GET DIAGNOSTICS rfm_profiles = ROW_COUNT;

	-- lifetime value: the models learn from the calibration window ...
	TRUNCATE cdp.clv;
	clv_profiles := 0;
	CREATE TEMP TABLE cdp_history ON COMMIT DROP AS
		SELECT * FROM cdp.purchase_history(from_time, refresh_scores.as_of, 'pg_temp.cdp_days');
	-- ... and apply to every purchaser, with the whole history up to as_of
	CREATE TEMP TABLE cdp_whole ON COMMIT DROP AS
		SELECT * FROM cdp.purchase_history('-infinity', refresh_scores.as_of, 'pg_temp.cdp_days');
	DROP TABLE cdp_days;
	IF model = 'bgnbd' THEN
		SELECT cdp.bgnbd_fit(h.x, h.t_x, h.t) INTO fit FROM cdp_history h;
	ELSIF model = 'pareto_nbd' THEN
		SELECT cdp.pareto_nbd_fit(h.x, h.t_x, h.t) INTO fit FROM cdp_history h;
	ELSE
		SELECT cdp.nbd_fit(h.x, h.t_x, h.t) INTO fit FROM cdp_history h;
	END IF;
	-- when the data do not show dropout, the model without it (its limit)
	IF fit IS NOT NULL AND fit->>'status' = 'the data do not identify the model' AND model <> 'nbd' THEN
		SELECT cdp.nbd_fit(h.x, h.t_x, h.t) INTO nbd FROM cdp_history h;
		IF nbd->>'status' = 'ok' THEN
			RAISE WARNING 'the % model could not be fitted: lifetime values use the nbd model, without dropout', model
				USING DETAIL = upper(left(fit->>'message', 1)) || substr(fit->>'message', 2) || '.',
				      HINT = 'Nobody is predicted to drop out (p_alive is 1); a longer calibration window may show dropout. The failed fit is in the "fallback_from" field of cdp.clv_models.model.';
			fit := nbd || jsonb_build_object('fallback_from', fit);
		END IF;
	END IF;

	-- spend: customers whose mean repeat value is not a finite number or
	-- above 10,000 times the median are left out of the Gamma-Gamma model
	SELECT 10000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY h.avg_value) INTO spend_cap
	FROM cdp_history h WHERE h.x > 0 AND h.avg_value > 0 AND h.avg_value < 'Infinity';
	SELECT count(*) INTO left_out FROM cdp_whole h WHERE h.x > 0 AND h.avg_value > 0 AND NOT (h.avg_value <= spend_cap);
	SELECT cdp.gamma_gamma_fit(h.x, h.avg_value) INTO spend
	FROM cdp_history h WHERE h.avg_value <= spend_cap OR h.avg_value = 0;
	IF left_out > 0 THEN
		RAISE WARNING '% customers left out of the spend model: their mean purchase value is not a finite number or is above % (10,000 times the median)',
			left_out, coalesce(spend_cap::text, 'any bound')
			USING DETAIL = 'They keep their RFM scores, p_alive and expected purchases, but get no expected value and no lifetime value.',
			      HINT = 'Check their purchases (cdp.rfm.monetary, cdp.clv rows where avg_value is large); fix or remove the wrong amounts.';
	END IF;
	IF spend IS NOT NULL THEN
		spend := spend || jsonb_build_object('left_out', left_out, 'left_out_above', spend_cap);
	END IF;
	-- the expected value of a purchase is defined for q > 1 only
	IF spend->>'status' = 'ok' AND NOT (spend->>'q')::float8 > 1 THEN
		spend := spend || jsonb_build_object('status', 'unusable',
			'message', format('q is %s: the Gamma-Gamma expected value needs q > 1 (spend too dispersed)', spend->>'q'));
	END IF;

	-- the horizon in periods of about a month, discounted monthly
	months := ceil(days / 30.0)::integer;
	INSERT INTO cdp.clv_models (as_of, calibration_from, model, spend_model, horizon_days, annual_discount, margin)
	VALUES (refresh_scores.as_of, from_time, coalesce(fit, '{"status": "no customers"}'), spend,
	        round(days)::integer, annual_discount, margin)
	RETURNING clv_models.model_id INTO refresh_scores.model_id;
	IF fit IS NULL OR fit->>'status' <> 'ok' THEN
		RAISE WARNING 'lifetime values not computed: the % model could not be fitted', model
			USING DETAIL = coalesce(fit->>'message', 'No profile purchased in the calibration window.'),
			      HINT = 'See cdp.clv_models; a longer calibration window gives the model more to learn from.';
		DROP TABLE cdp_history;
		DROP TABLE cdp_whole;
		RETURN;
	END IF;
	INSERT INTO cdp.clv (profile_id, model_id, x, t_x, t, avg_value, p_alive, expected_purchases, expected_value, clv)
	SELECT h.profile_id, refresh_scores.model_id, h.x, h.t_x, h.t, h.avg_value,
	       CASE fit->>'model' WHEN 'bgnbd' THEN cdp.bgnbd_p_alive(fit, h.x, h.t_x, h.t)
	            WHEN 'pareto_nbd' THEN cdp.pareto_nbd_p_alive(fit, h.x, h.t_x, h.t) ELSE 1 END,
	       CASE fit->>'model' WHEN 'bgnbd' THEN cdp.bgnbd_expected_purchases(fit, days, h.x, h.t_x, h.t)
	            WHEN 'pareto_nbd' THEN cdp.pareto_nbd_expected_purchases(fit, days, h.x, h.t_x, h.t)
	            ELSE cdp.nbd_expected_purchases(fit, days, h.x, h.t_x, h.t) END,
	       CASE WHEN spend->>'status' = 'ok' AND s.usable THEN cdp.gamma_gamma_expected_value(spend, h.x, coalesce(h.avg_value, 0)) END,
	       CASE WHEN spend->>'status' = 'ok' AND s.usable
	            THEN cdp.clv(fit, spend, h.x, h.t_x, h.t, coalesce(h.avg_value, 0), months,
	                         days / greatest(months, 1), power(1 + annual_discount, 1.0 / 12) - 1, margin) END
	FROM cdp_whole h
	CROSS JOIN LATERAL (SELECT h.x = 0 OR h.avg_value = 0 OR h.avg_value <= spend_cap AS usable) s;
	GET DIAGNOSTICS clv_profiles = ROW_COUNT;
	IF spend IS NULL OR spend->>'status' <> 'ok' THEN
		RAISE WARNING 'expected values and lifetime values not computed: the Gamma-Gamma model could not be fitted'
			USING DETAIL = coalesce(spend->>'message', 'No profile made a repeat purchase in the calibration window.');
	END IF;
	DROP TABLE cdp_history;
	DROP TABLE cdp_whole;
END
$$;
COMMENT ON FUNCTION cdp.refresh_scores(timestamptz, interval, interval, text, double precision, double precision) IS 'Recomputes cdp.rfm (every purchase up to as_of) and cdp.clv (a BG/NBD, Pareto/NBD or NBD model and a Gamma-Gamma model fitted on the calibration window before as_of, stored in cdp.clv_models, applied over the horizon to every purchaser''s whole history; NBD when the data do not identify dropout; spend outliers left out); returns the profiles scored and the model id';

CREATE OR REPLACE FUNCTION cdp.validate_clv(calibration_end timestamptz, holdout_end timestamptz,
                                 calibration interval DEFAULT '1 year', model text DEFAULT 'bgnbd',
                                 OUT customers bigint, OUT actual bigint, OUT predicted double precision,
                                 OUT aggregate_error double precision, OUT mae double precision,
                                 OUT rmse double precision, OUT correlation double precision, OUT params jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	horizon double precision;
BEGIN
	IF calibration_end IS NULL OR holdout_end IS NULL OR holdout_end <= calibration_end THEN
		RAISE EXCEPTION 'the hold-out period must end after the calibration period'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Call cdp.validate_clv(calibration_end, holdout_end) with holdout_end > calibration_end.';
	END IF;
	IF model IS NULL OR model NOT IN ('bgnbd', 'pareto_nbd', 'nbd') THEN
		RAISE EXCEPTION 'unknown lifetime-value model "%"', model
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use bgnbd, pareto_nbd or nbd.';
	END IF;
	PERFORM cdp.stitch_queued();	-- bulk loads' events, if the worker has not stitched them yet
	PERFORM cdp.analyze_stale(ARRAY['cdp.events', 'cdp.event_anchors', 'cdp.identifiers']::regclass[]);
	horizon := extract(epoch FROM holdout_end - calibration_end) / 86400.0;
	CREATE TEMP TABLE cdp_history ON COMMIT DROP AS
		SELECT * FROM cdp.purchase_history(calibration_end - calibration, calibration_end);
	IF model = 'bgnbd' THEN
		SELECT cdp.bgnbd_fit(h.x, h.t_x, h.t) INTO params FROM cdp_history h;
	ELSIF model = 'pareto_nbd' THEN
		SELECT cdp.pareto_nbd_fit(h.x, h.t_x, h.t) INTO params FROM cdp_history h;
	ELSE
		SELECT cdp.nbd_fit(h.x, h.t_x, h.t) INTO params FROM cdp_history h;
	END IF;
	IF params IS NULL OR params->>'status' <> 'ok' THEN
		DROP TABLE cdp_history;
		RAISE EXCEPTION 'the % model could not be fitted on the calibration period', model
			USING ERRCODE = 'data_exception',
			      DETAIL = coalesce(upper(left(params->>'message', 1)) || substr(params->>'message', 2) || '.',
			                        'No profile purchased in the calibration period.'),
			      HINT = CASE WHEN params->>'status' = 'the data do not identify the model'
			                  THEN 'The calibration period does not show how customers drop out: give it more history (calibration => ''2 years''), or validate another model (model => ''pareto_nbd'', or ''nbd'', the model without dropout that cdp.refresh_scores falls back to).'
			                  ELSE 'Give the calibration period more customers with repeat purchases (an earlier calibration_end or a longer calibration).' END;
	END IF;
	TRUNCATE cdp.clv_validation;
	INSERT INTO cdp.clv_validation (profile_id, x, t_x, t, predicted, actual)
	SELECT h.profile_id, h.x, h.t_x, h.t,
	       CASE model WHEN 'bgnbd' THEN cdp.bgnbd_expected_purchases(params, horizon, h.x, h.t_x, h.t)
	            WHEN 'pareto_nbd' THEN cdp.pareto_nbd_expected_purchases(params, horizon, h.x, h.t_x, h.t)
	            ELSE cdp.nbd_expected_purchases(params, horizon, h.x, h.t_x, h.t) END,
	       coalesce(a.days, 0)
	FROM cdp_history h
	LEFT JOIN (SELECT d.profile_id, count(*)::integer AS days
	           FROM cdp.purchase_days(calibration_end + interval '1 microsecond', holdout_end) d
	           WHERE d.purchases > 0 GROUP BY 1) a USING (profile_id);
	DROP TABLE cdp_history;
	SELECT count(*), sum(v.actual), sum(v.predicted),
	       (sum(v.predicted) - sum(v.actual)) / nullif(sum(v.actual), 0),
	       avg(abs(v.predicted - v.actual)), sqrt(avg((v.predicted - v.actual) ^ 2)), corr(v.predicted, v.actual)
	INTO customers, actual, predicted, aggregate_error, mae, rmse, correlation
	FROM cdp.clv_validation v;
END
$$;
COMMENT ON FUNCTION cdp.validate_clv(timestamptz, timestamptz, interval, text) IS 'Fits a purchase model (bgnbd, pareto_nbd or nbd) on the calibration period ending at calibration_end and compares, for its customers, the purchase days it predicts up to holdout_end with those that happened: totals, aggregate error (relative), mean absolute error, RMSE and correlation per customer (details in cdp.clv_validation)';

-- ---------------------------------------------------------------------------
-- Identity store (issue 10): one module writes the identity graph.
-- cdp.merge_profiles hands its writes (the journal and the forwarding
-- pointers) to the store through cdp.store_hand_merge (cdp.drop_partitions
-- its anchors through cdp.store_forget_anchors), and refuses a NULL
-- force with a clear error (22004; the null sweep).
-- ---------------------------------------------------------------------------
CREATE FUNCTION cdp.store_forget_anchors(from_time timestamptz, to_time timestamptz)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_store_forget_anchors' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.store_forget_anchors(timestamptz, timestamptz) IS 'Internal, called by cdp.drop_partitions after it dropped a partition: the identity store deletes the anchors of the events of [from_time, to_time); returns how many';

CREATE FUNCTION cdp.store_hand_merge(survivor bigint, absorbed bigint, anchor_id bigint,
                                     identifier_id bigint, reason text)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_store_hand_merge' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.store_hand_merge(bigint, bigint, bigint, bigint, text) IS 'Internal, called by cdp.merge_profiles once it has checked the merge: the identity store journals a merge by hand in cdp.profile_merges and forwards profile absorbed (its identifiers and the profiles that forwarded to it) to survivor; returns the merge_id';

CREATE OR REPLACE FUNCTION cdp.merge_profiles(survivor bigint, absorbed bigint, reason text, force boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s        bigint;
	a        bigint;
	rep_s    bigint;
	rep_a    bigint;
	over     record;
	mid      bigint;
	last_id  bigint;
BEGIN
	IF survivor IS NULL OR absorbed IS NULL THEN
		RAISE EXCEPTION 'profile ids must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF force IS NULL THEN
		RAISE EXCEPTION 'force must not be null'
			USING ERRCODE = 'null_value_not_allowed',
			      HINT = 'Pass force => false to keep the limits of cdp.identity_rules, or force => true to merge past them.';
	END IF;
	IF reason IS NULL OR btrim(reason) = '' THEN
		RAISE EXCEPTION 'a merge by hand needs a reason'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Say why the two profiles are one person; the reason is kept in cdp.profile_merges.';
	END IF;
	-- the stitching lock (STITCH_LOCK_KEY1, STITCH_LOCK_KEY2 in src/identity.h)
	PERFORM pg_advisory_xact_lock(6513776, 26980);

	SELECT coalesce(p.merged_into, p.profile_id) INTO s FROM cdp.profiles p WHERE p.profile_id = survivor;
	IF s IS NULL THEN
		RAISE EXCEPTION 'profile % does not exist', survivor USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT coalesce(p.merged_into, p.profile_id) INTO a FROM cdp.profiles p WHERE p.profile_id = absorbed;
	IF a IS NULL THEN
		RAISE EXCEPTION 'profile % does not exist', absorbed USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF s = a THEN
		RAISE EXCEPTION 'profiles % and % are already one profile', survivor, absorbed
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Both resolve to live profile %s.', s);
	END IF;
	SELECT min(i.identifier_id) INTO rep_s FROM cdp.identifiers i WHERE i.profile_id = s;
	SELECT min(i.identifier_id) INTO rep_a FROM cdp.identifiers i WHERE i.profile_id = a;
	IF rep_s IS NULL OR rep_a IS NULL THEN
		RAISE EXCEPTION 'profile % has no identifiers', CASE WHEN rep_s IS NULL THEN s ELSE a END
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Only profiles that hold identifiers can be merged.';
	END IF;

	IF NOT force THEN
		SELECT r.kind, r.max_per_profile, c.ns + c.na AS n INTO over
		FROM (SELECT i.kind, count(*) FILTER (WHERE i.profile_id = s) AS ns,
		             count(*) FILTER (WHERE i.profile_id = a) AS na
		      FROM cdp.identifiers i WHERE i.profile_id IN (s, a) GROUP BY i.kind) c
		JOIN cdp.identity_rules r ON r.kind = c.kind
		WHERE r.max_per_profile > 0 AND c.ns > 0 AND c.na > 0 AND c.ns + c.na > r.max_per_profile
		ORDER BY r.priority LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'merging profiles % and % would break the limit of kind "%"', s, a, over.kind
				USING ERRCODE = 'check_violation',
				      DETAIL = format('The merged profile would hold %s values of kind "%s"; cdp.identity_rules allows %s.',
				                      over.n, over.kind, over.max_per_profile),
				      HINT = 'Pass force => true to merge anyway; the merged profile then takes no further value of that kind.';
		END IF;
	END IF;

	-- a merge by hand overrules earlier unmerges between the two
	UPDATE cdp.identity_overrides o SET lifted_at = now()
	FROM cdp.identifiers x, cdp.identifiers y
	WHERE o.action = 'unmerge' AND o.lifted_at IS NULL
	  AND x.identifier_id = o.identifier_a AND y.identifier_id = o.identifier_b
	  AND ((x.profile_id = s AND y.profile_id = a) OR (x.profile_id = a AND y.profile_id = s));

	SELECT CASE WHEN q.is_called THEN q.last_value ELSE 0 END INTO last_id FROM cdp.events_event_id_seq q;
	-- the identity store journals the merge and forwards absorbed to survivor
	mid := cdp.store_hand_merge(s, a, rep_s, rep_a, reason);
	INSERT INTO cdp.identity_overrides (action, merge_id, identifier_a, identifier_b, after_event_id, force, reason)
	VALUES ('merge', mid, rep_s, rep_a, last_id, force, reason);
	RETURN mid;
END
$$;


-- ---------------------------------------------------------------------------
-- Journeys: cdp.profile_acquisition takes a profile's first and last touch
-- from one window (it joined its ranked touches to themselves, a nested
-- loop that grew with the square of the touches).
-- ---------------------------------------------------------------------------
CREATE OR REPLACE VIEW cdp.profile_acquisition AS
WITH touch AS (
	SELECT i.profile_id, e.occurred_at, e.event_id, e.channel,
	       coalesce(e.properties ->> 'utm_source',
	                substring(e.properties ->> 'referrer' FROM '^[A-Za-z][A-Za-z0-9+.-]*://(?:www\.)?([^/:?#]+)')) AS source,
	       coalesce(e.properties ->> 'utm_medium',
	                CASE WHEN e.properties ? 'referrer' THEN 'referral' END) AS medium,
	       e.properties ->> 'utm_campaign' AS campaign,
	       e.properties ->> 'referrer' AS referrer
	FROM cdp.events e
	JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	WHERE e.properties ?| ARRAY['utm_source', 'referrer']),
ranked AS (
	-- one sort per profile: the first and last touch from one window
	SELECT t.profile_id,
	       first_value(t.source) OVER w AS first_source, first_value(t.medium) OVER w AS first_medium,
	       first_value(t.campaign) OVER w AS first_campaign, first_value(t.referrer) OVER w AS first_referrer,
	       first_value(t.channel) OVER w AS first_channel, first_value(t.occurred_at) OVER w AS first_at,
	       last_value(t.source) OVER w AS last_source, last_value(t.medium) OVER w AS last_medium,
	       last_value(t.campaign) OVER w AS last_campaign, last_value(t.referrer) OVER w AS last_referrer,
	       last_value(t.channel) OVER w AS last_channel, last_value(t.occurred_at) OVER w AS last_at,
	       count(*) OVER w AS touches,
	       row_number() OVER w AS n
	FROM touch t
	WINDOW w AS (PARTITION BY t.profile_id ORDER BY t.occurred_at, t.event_id
	             ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))
SELECT profile_id, first_source, first_medium, first_campaign, first_referrer, first_channel, first_at,
       last_source, last_medium, last_campaign, last_referrer, last_channel, last_at, touches
FROM ranked
WHERE n = 1;


-- ---------------------------------------------------------------------------
-- The profile store (issue 11): stitching writes each anchor's batch, the
-- store's tables and progress (rebuilt at the first cdp.sync), its reads
-- (cdp.profile_store, cdp.customer_360 over it, cdp.profile), and the
-- retention that marks it for a rebuild.
-- ---------------------------------------------------------------------------
ALTER TABLE cdp.event_anchors ADD COLUMN batch_id bigint;
COMMENT ON COLUMN cdp.event_anchors.batch_id IS 'The cdp.stitch_batches batch that stitched it (NULL: stitched before 0.2.0), so that the work that follows stitching takes each event once';

CREATE TABLE cdp.anchor_activity (
	anchor_id     bigint      NOT NULL,
	channel       text        NOT NULL,
	type          text        NOT NULL,
	events        bigint      NOT NULL,
	amount        numeric     NOT NULL,
	first_at      timestamptz NOT NULL,
	last_at       timestamptz NOT NULL,
	last_event_id bigint      NOT NULL,
	last_amount   numeric,
	PRIMARY KEY (anchor_id, channel, type)
);
COMMENT ON TABLE cdp.anchor_activity IS 'Profile store: per anchor identifier, channel and event type, its events (internal; read cdp.profile_store)';
COMMENT ON COLUMN cdp.anchor_activity.anchor_id IS 'Anchor identifier (cdp.identifiers); its profile is the identifier''s';
COMMENT ON COLUMN cdp.anchor_activity.channel IS 'Channel';
COMMENT ON COLUMN cdp.anchor_activity.type IS 'Event type';
COMMENT ON COLUMN cdp.anchor_activity.events IS 'Events';
COMMENT ON COLUMN cdp.anchor_activity.amount IS 'Sum of their amounts (none: 0)';
COMMENT ON COLUMN cdp.anchor_activity.first_at IS 'occurred_at of the first';
COMMENT ON COLUMN cdp.anchor_activity.last_at IS 'occurred_at of the last (latest by occurred_at, then event_id)';
COMMENT ON COLUMN cdp.anchor_activity.last_event_id IS 'event_id of the last';
COMMENT ON COLUMN cdp.anchor_activity.last_amount IS 'amount of the last';

CREATE TABLE cdp.anchor_products (
	anchor_id     bigint      NOT NULL,
	action        text        NOT NULL CHECK (action IN ('viewed', 'carted', 'bought')),
	product_id    text        NOT NULL,
	last_at       timestamptz NOT NULL,
	last_event_id bigint      NOT NULL,
	PRIMARY KEY (anchor_id, action, product_id)
);
COMMENT ON TABLE cdp.anchor_products IS 'Profile store: per anchor identifier, the 20 products last viewed (product_view), carted (add_to_cart) and bought (purchase) (internal; read cdp.profile_store)';
COMMENT ON COLUMN cdp.anchor_products.anchor_id IS 'Anchor identifier';
COMMENT ON COLUMN cdp.anchor_products.action IS 'viewed, carted or bought';
COMMENT ON COLUMN cdp.anchor_products.product_id IS 'properties.product_id';
COMMENT ON COLUMN cdp.anchor_products.last_at IS 'When it last happened';
COMMENT ON COLUMN cdp.anchor_products.last_event_id IS 'The event';

CREATE TABLE cdp.anchor_interest (
	anchor_id bigint           NOT NULL,
	category  text             NOT NULL,
	log2_mass double precision NOT NULL,
	events    bigint           NOT NULL,
	last_at   timestamptz      NOT NULL,
	PRIMARY KEY (anchor_id, category)
);
COMMENT ON TABLE cdp.anchor_interest IS 'Profile store: per anchor identifier and product category (properties.category), its interest as in cdp.interest with a 30-day half-life (internal; read cdp.profile_store)';
COMMENT ON COLUMN cdp.anchor_interest.anchor_id IS 'Anchor identifier';
COMMENT ON COLUMN cdp.anchor_interest.category IS 'Product category';
COMMENT ON COLUMN cdp.anchor_interest.log2_mass IS 'log2 of the sum over its views (weight 1), wish-list additions (2) and cart additions (3) of weight * 2^(epoch of occurred_at / 30 days); the interest at time T is 2^(log2_mass - epoch of T / 30 days)';
COMMENT ON COLUMN cdp.anchor_interest.events IS 'Events counted';
COMMENT ON COLUMN cdp.anchor_interest.last_at IS 'Last of them';

CREATE TABLE cdp.anchor_traits (
	anchor_id     bigint      NOT NULL,
	trait         text        NOT NULL,
	value         jsonb       NOT NULL,
	source        text,
	times_seen    bigint      NOT NULL,
	last_at       timestamptz NOT NULL,
	last_event_id bigint      NOT NULL,
	UNIQUE NULLS NOT DISTINCT (anchor_id, trait, value, source)
);
COMMENT ON TABLE cdp.anchor_traits IS 'Profile store: per anchor identifier, each trait value sent in properties.traits by each source; cdp.trait_rules choose among them when read (internal; read cdp.profile_store)';
COMMENT ON COLUMN cdp.anchor_traits.anchor_id IS 'Anchor identifier';
COMMENT ON COLUMN cdp.anchor_traits.trait IS 'Trait name';
COMMENT ON COLUMN cdp.anchor_traits.value IS 'Value sent (JSON)';
COMMENT ON COLUMN cdp.anchor_traits.source IS 'Source that sent it';
COMMENT ON COLUMN cdp.anchor_traits.times_seen IS 'Events that sent it';
COMMENT ON COLUMN cdp.anchor_traits.last_at IS 'When it was last sent';
COMMENT ON COLUMN cdp.anchor_traits.last_event_id IS 'The event';

CREATE TABLE cdp.anchor_touches (
	anchor_id      bigint      PRIMARY KEY,
	touches        bigint      NOT NULL,
	first_at       timestamptz NOT NULL,
	first_event_id bigint      NOT NULL,
	first_channel  text        NOT NULL,
	first_source   text,
	first_medium   text,
	first_campaign text,
	first_referrer text,
	last_at        timestamptz NOT NULL,
	last_event_id  bigint      NOT NULL,
	last_channel   text        NOT NULL,
	last_source    text,
	last_medium    text,
	last_campaign  text,
	last_referrer  text
);
COMMENT ON TABLE cdp.anchor_touches IS 'Profile store: per anchor identifier, its first and last events with a utm_source or a referrer, as in cdp.profile_acquisition (internal; read cdp.profile_store)';
COMMENT ON COLUMN cdp.anchor_touches.anchor_id IS 'Anchor identifier';
COMMENT ON COLUMN cdp.anchor_touches.touches IS 'Events with a utm_source or a referrer';
COMMENT ON COLUMN cdp.anchor_touches.first_at IS 'When the first touch happened';
COMMENT ON COLUMN cdp.anchor_touches.first_event_id IS 'Its event';
COMMENT ON COLUMN cdp.anchor_touches.first_channel IS 'Its channel';
COMMENT ON COLUMN cdp.anchor_touches.first_source IS 'Its utm_source, or its referrer''s host';
COMMENT ON COLUMN cdp.anchor_touches.first_medium IS 'Its utm_medium, or referral';
COMMENT ON COLUMN cdp.anchor_touches.first_campaign IS 'Its utm_campaign';
COMMENT ON COLUMN cdp.anchor_touches.first_referrer IS 'Its referrer';
COMMENT ON COLUMN cdp.anchor_touches.last_at IS 'When the last touch happened';
COMMENT ON COLUMN cdp.anchor_touches.last_event_id IS 'Its event';
COMMENT ON COLUMN cdp.anchor_touches.last_channel IS 'Its channel';
COMMENT ON COLUMN cdp.anchor_touches.last_source IS 'Its utm_source, or its referrer''s host';
COMMENT ON COLUMN cdp.anchor_touches.last_medium IS 'Its utm_medium, or referral';
COMMENT ON COLUMN cdp.anchor_touches.last_campaign IS 'Its utm_campaign';
COMMENT ON COLUMN cdp.anchor_touches.last_referrer IS 'Its referrer';

CREATE TABLE cdp.anchor_recent_events (
	anchor_id   bigint      NOT NULL,
	occurred_at timestamptz NOT NULL,
	event_id    bigint      NOT NULL,
	channel     text        NOT NULL,
	type        text        NOT NULL,
	amount      numeric,
	source      text,
	properties  jsonb,
	PRIMARY KEY (anchor_id, occurred_at, event_id)
);
COMMENT ON TABLE cdp.anchor_recent_events IS 'Profile store: per anchor identifier, a copy of its 20 latest events (internal; cdp.profile reads it)';
COMMENT ON COLUMN cdp.anchor_recent_events.anchor_id IS 'Anchor identifier';
COMMENT ON COLUMN cdp.anchor_recent_events.occurred_at IS 'When the event occurred';
COMMENT ON COLUMN cdp.anchor_recent_events.event_id IS 'Event';
COMMENT ON COLUMN cdp.anchor_recent_events.channel IS 'Its channel';
COMMENT ON COLUMN cdp.anchor_recent_events.type IS 'Its type';
COMMENT ON COLUMN cdp.anchor_recent_events.amount IS 'Its amount';
COMMENT ON COLUMN cdp.anchor_recent_events.source IS 'Its source';
COMMENT ON COLUMN cdp.anchor_recent_events.properties IS 'Its properties';

CREATE TABLE cdp.profile_store_progress (
	singleton     boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
	last_batch_id bigint      NOT NULL,
	needs_full    boolean     NOT NULL DEFAULT false,
	synced_at     timestamptz,
	rebuilt_at    timestamptz
);
COMMENT ON TABLE cdp.profile_store_progress IS 'How far the profile store is (one row, written in the same transaction as the facts; none yet: nothing folded in)';
COMMENT ON COLUMN cdp.profile_store_progress.singleton IS 'Always true: there is one row';
COMMENT ON COLUMN cdp.profile_store_progress.last_batch_id IS 'Last cdp.stitch_batches batch whose events are in the store';
COMMENT ON COLUMN cdp.profile_store_progress.needs_full IS 'Events were deleted (or partitions dropped): the next cdp.sync() rebuilds the store';
COMMENT ON COLUMN cdp.profile_store_progress.synced_at IS 'When the store last took in new events (transaction time; NULL: never)';
COMMENT ON COLUMN cdp.profile_store_progress.rebuilt_at IS 'When it was last recomputed from every event';

-- events of 0.1.0: the first cdp.sync (or the worker) builds the store
INSERT INTO cdp.profile_store_progress (last_batch_id, needs_full)
SELECT 0, true WHERE EXISTS (SELECT FROM cdp.event_anchors);
SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_activity', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_products', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_interest', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_traits', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_touches', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_recent_events', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_store_progress', '');

CREATE FUNCTION cdp.sync(max_events bigint DEFAULT NULL,
	OUT batches bigint, OUT events bigint, OUT rebuilt boolean, OUT pending_events bigint)
	AS 'MODULE_PATHNAME', 'cdp_sync' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.sync(bigint) IS 'Stitches the events that bulk loads left queued for the background worker (cdp.stitch_queued), then folds the events stitched since the last run into the profile store, in the calling transaction (waits for a run in progress); with max_events, stops after the batches that hold that many events; rebuilds the store when events were deleted; returns what it did and the events still pending';

CREATE FUNCTION cdp.rebuild_profile_store(OUT anchors bigint, OUT events bigint)
	AS 'MODULE_PATHNAME', 'cdp_rebuild_profile_store' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.rebuild_profile_store() IS 'Recomputes the profile store from every stitched event; gives the store that incremental runs keep';

-- The profile store as read: one row per live profile, its anchors' facts
-- (src/sql/profiles.sql) combined.  Each part is a subquery grouped by
-- profile, so that a filter on profile_id reaches the store's indexes (one
-- customer in milliseconds) and a query that needs no fact skips it.
CREATE VIEW cdp.profile_store AS
SELECT p.profile_id, p.created_at, tot.first_seen, tot.last_seen, coalesce(tot.events, 0) AS events,
       coalesce(ch.channels, '{}') AS channels, ch.by_channel, cat.by_category,
       coalesce(tot.orders, 0) AS orders, coalesce(tot.revenue, 0) AS revenue,
       tot.last_purchase_at, tot.last_purchase_channel, tot.last_purchase_amount,
       prod.products, intr.interest, tr.traits,
       ft.first_source, ft.first_medium, ft.first_campaign, ft.first_channel, ft.first_touch_at,
       lt.last_source, lt.last_medium, lt.last_campaign, lt.last_channel, lt.last_touch_at, ft.touches
FROM cdp.profiles p
LEFT JOIN (
	SELECT profile_id, pg_catalog.min(first_at) AS first_seen, pg_catalog.max(last_at) AS last_seen,
	       pg_catalog.sum(events)::bigint AS events,
	       pg_catalog.sum(events) FILTER (WHERE type = 'purchase')::bigint AS orders,
	       pg_catalog.sum(amount) FILTER (WHERE type IN ('purchase', 'return')) AS revenue,
	       (pg_catalog.array_agg(last_at ORDER BY last_at DESC, last_event_id DESC) FILTER (WHERE type = 'purchase'))[1] AS last_purchase_at,
	       (pg_catalog.array_agg(channel ORDER BY last_at DESC, last_event_id DESC) FILTER (WHERE type = 'purchase'))[1] AS last_purchase_channel,
	       (pg_catalog.array_agg(last_amount ORDER BY last_at DESC, last_event_id DESC) FILTER (WHERE type = 'purchase'))[1] AS last_purchase_amount
	FROM (SELECT i.profile_id, x.* FROM cdp.identifiers i JOIN cdp.anchor_activity x ON x.anchor_id = i.identifier_id) a
	GROUP BY profile_id) tot USING (profile_id)
LEFT JOIN (
	SELECT profile_id, pg_catalog.array_agg(channel ORDER BY channel) AS channels,
	       pg_catalog.jsonb_object_agg(channel, pg_catalog.jsonb_build_object('events', events, 'last_at', last_at)) AS by_channel
	FROM (SELECT i.profile_id, x.channel, pg_catalog.sum(x.events) AS events, pg_catalog.max(x.last_at) AS last_at
	      FROM cdp.identifiers i JOIN cdp.anchor_activity x ON x.anchor_id = i.identifier_id
	      GROUP BY i.profile_id, x.channel) c
	GROUP BY profile_id) ch USING (profile_id)
LEFT JOIN (
	SELECT profile_id,
	       pg_catalog.jsonb_object_agg(category, pg_catalog.jsonb_build_object('events', events, 'last_at', last_at)) AS by_category
	FROM (SELECT i.profile_id, coalesce(t.category, 'other') AS category, pg_catalog.sum(x.events) AS events,
	             pg_catalog.max(x.last_at) AS last_at
	      FROM cdp.identifiers i JOIN cdp.anchor_activity x ON x.anchor_id = i.identifier_id
	      LEFT JOIN cdp.event_types t ON t.type = x.type
	      GROUP BY 1, 2) c
	GROUP BY profile_id) cat USING (profile_id)
LEFT JOIN (
	SELECT profile_id, pg_catalog.jsonb_object_agg(action, items) AS products
	FROM (SELECT profile_id, action,
	             pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('product_id', product_id, 'at', last_at)
	                                  ORDER BY last_at DESC, last_event_id DESC) AS items
	      FROM (SELECT d.*, pg_catalog.row_number() OVER (PARTITION BY profile_id, action
	                                                      ORDER BY last_at DESC, last_event_id DESC) AS rk
	            FROM (SELECT DISTINCT ON (i.profile_id, x.action, x.product_id)
	                         i.profile_id, x.action, x.product_id, x.last_at, x.last_event_id
	                  FROM cdp.identifiers i JOIN cdp.anchor_products x ON x.anchor_id = i.identifier_id
	                  ORDER BY i.profile_id, x.action, x.product_id, x.last_at DESC, x.last_event_id DESC) d) k
	      WHERE rk <= 20
	      GROUP BY profile_id, action) a
	GROUP BY profile_id) prod USING (profile_id)
LEFT JOIN (
	SELECT profile_id, pg_catalog.jsonb_object_agg(category, score) AS interest
	FROM (SELECT i.profile_id, x.category,
	             pg_catalog.round(pg_catalog.sum(pg_catalog.power(2::float8, GREATEST(x.log2_mass
	                 - EXTRACT(epoch FROM pg_catalog.now())::float8 / 2592000, -1000)))::numeric, 6) AS score
	      FROM cdp.identifiers i JOIN cdp.anchor_interest x ON x.anchor_id = i.identifier_id
	      GROUP BY i.profile_id, x.category) c
	GROUP BY profile_id) intr USING (profile_id)
LEFT JOIN (
	SELECT profile_id, pg_catalog.jsonb_object_agg(trait, value ORDER BY trait) AS traits
	FROM (SELECT DISTINCT ON (profile_id, trait) profile_id, trait, value
	      FROM (SELECT i.profile_id, x.trait, x.value, x.last_at, x.last_event_id,
	                   coalesce(r.method, 'most_recent') AS method,
	                   pg_catalog.sum(x.times_seen) OVER (PARTITION BY i.profile_id, x.trait, x.value) AS frequency,
	                   coalesce(pg_catalog.array_position(r.sources, x.source), 2147483647) AS source_rank
	            FROM cdp.identifiers i
	            JOIN cdp.anchor_traits x ON x.anchor_id = i.identifier_id
	            LEFT JOIN cdp.trait_rules r ON r.trait = x.trait) o
	      ORDER BY profile_id, trait,
	               CASE method WHEN 'most_frequent' THEN -frequency WHEN 'source_priority' THEN source_rank ELSE 0 END,
	               last_at DESC, last_event_id DESC) k
	GROUP BY profile_id) tr USING (profile_id)
LEFT JOIN (
	SELECT DISTINCT ON (i.profile_id) i.profile_id, x.first_source, x.first_medium, x.first_campaign,
	       x.first_channel, x.first_at AS first_touch_at,
	       pg_catalog.sum(x.touches) OVER (PARTITION BY i.profile_id)::bigint AS touches
	FROM cdp.identifiers i JOIN cdp.anchor_touches x ON x.anchor_id = i.identifier_id
	ORDER BY i.profile_id, x.first_at, x.first_event_id) ft USING (profile_id)
LEFT JOIN (
	SELECT DISTINCT ON (i.profile_id) i.profile_id, x.last_source, x.last_medium, x.last_campaign,
	       x.last_channel, x.last_at AS last_touch_at
	FROM cdp.identifiers i JOIN cdp.anchor_touches x ON x.anchor_id = i.identifier_id
	ORDER BY i.profile_id, x.last_at DESC, x.last_event_id DESC) lt USING (profile_id)
WHERE p.merged_into IS NULL;
COMMENT ON VIEW cdp.profile_store IS 'The profile store: per live profile, the facts of its events as of the last cdp.sync (the background worker keeps it within a second): activity per channel and category, orders and revenue, last purchase, recent products, interest, golden-record traits, acquisition';
COMMENT ON COLUMN cdp.profile_store.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.profile_store.created_at IS 'When the profile was made';
COMMENT ON COLUMN cdp.profile_store.first_seen IS 'First event of the profile';
COMMENT ON COLUMN cdp.profile_store.last_seen IS 'Last event of the profile';
COMMENT ON COLUMN cdp.profile_store.events IS 'Number of events';
COMMENT ON COLUMN cdp.profile_store.channels IS 'Channels it used';
COMMENT ON COLUMN cdp.profile_store.by_channel IS 'Per channel, its events and the time of the last: {"web": {"events": 12, "last_at": "..."}}';
COMMENT ON COLUMN cdp.profile_store.by_category IS 'The same per event type category (cdp.event_types.category; other for types not listed)';
COMMENT ON COLUMN cdp.profile_store.orders IS 'Number of purchases, on any channel';
COMMENT ON COLUMN cdp.profile_store.revenue IS 'Purchases less returns';
COMMENT ON COLUMN cdp.profile_store.last_purchase_at IS 'When it last bought';
COMMENT ON COLUMN cdp.profile_store.last_purchase_channel IS 'On which channel';
COMMENT ON COLUMN cdp.profile_store.last_purchase_amount IS 'For how much';
COMMENT ON COLUMN cdp.profile_store.products IS 'The 20 products last viewed, carted and bought, latest first: {"viewed": [{"product_id": "p1", "at": "..."}], "carted": [...], "bought": [...]}';
COMMENT ON COLUMN cdp.profile_store.interest IS 'Interest now per product category, as cdp.interest with a 30-day half-life over all events: {"shoes": 2.5, ...}';
COMMENT ON COLUMN cdp.profile_store.traits IS 'Golden record: its traits as kept by cdp.trait_rules';
COMMENT ON COLUMN cdp.profile_store.first_source IS 'First-touch acquisition source (as cdp.profile_acquisition)';
COMMENT ON COLUMN cdp.profile_store.first_medium IS 'First-touch medium';
COMMENT ON COLUMN cdp.profile_store.first_campaign IS 'First-touch campaign';
COMMENT ON COLUMN cdp.profile_store.first_channel IS 'First-touch channel';
COMMENT ON COLUMN cdp.profile_store.first_touch_at IS 'When the first touch happened';
COMMENT ON COLUMN cdp.profile_store.last_source IS 'Last-touch acquisition source';
COMMENT ON COLUMN cdp.profile_store.last_medium IS 'Last-touch medium';
COMMENT ON COLUMN cdp.profile_store.last_campaign IS 'Last-touch campaign';
COMMENT ON COLUMN cdp.profile_store.last_channel IS 'Last-touch channel';
COMMENT ON COLUMN cdp.profile_store.last_touch_at IS 'When the last touch happened';
COMMENT ON COLUMN cdp.profile_store.touches IS 'Events with a utm_source or a referrer';

-- The single customer view: the profile store, the identifiers, the scores
-- and the open breaks; it never reads the event store.  Every live profile
-- holds an identifier, so the identifiers join LEFT, like the rest: a
-- query that reads few columns (count(*), a GROUP BY rfm_segment) skips
-- what it does not read.
CREATE OR REPLACE VIEW cdp.customer_360 AS
WITH ids AS (
	SELECT profile_id, pg_catalog.jsonb_object_agg(kind, vals ORDER BY kind) AS identifiers
	FROM (SELECT profile_id, kind, pg_catalog.jsonb_agg(value ORDER BY value) AS vals
	      FROM cdp.identifiers GROUP BY profile_id, kind) k
	GROUP BY profile_id),
breaks AS (
	SELECT profile_id, pg_catalog.count(*) AS open_breaks,
	       pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('funnel', funnel_id, 'step', break_step, 'channel', channel,
	                                    'broken_at', broken_at, 'context', context) ORDER BY broken_at) AS breaks
	FROM cdp.journey_breaks WHERE status = 'open' GROUP BY profile_id)
SELECT s.profile_id, s.created_at, ids.identifiers, s.traits,
       s.first_seen, s.last_seen, s.events, s.channels, s.orders, s.revenue,
       rfm.segment AS rfm_segment, rfm.rfm_code, clv.p_alive, clv.expected_purchases, clv.clv,
       coalesce(breaks.open_breaks, 0) AS open_breaks, breaks.breaks AS open_journey_breaks,
       s.first_source, s.first_medium, s.last_source, s.last_medium,
       s.by_channel, s.by_category, s.last_purchase_at, s.last_purchase_channel, s.last_purchase_amount,
       s.products, s.interest, s.first_campaign, s.first_channel, s.first_touch_at,
       s.last_campaign, s.last_channel, s.last_touch_at, s.touches
FROM cdp.profile_store s
LEFT JOIN ids USING (profile_id)
LEFT JOIN cdp.rfm rfm USING (profile_id)
LEFT JOIN cdp.clv clv USING (profile_id)
LEFT JOIN breaks USING (profile_id);
COMMENT ON VIEW cdp.customer_360 IS 'The single customer view: one row per live profile with its identifiers, its facts from the profile store (traits, activity, orders and revenue across every channel, last purchase, recent products, interest, acquisition; as of the last cdp.sync), its scores and open journey breaks';
COMMENT ON COLUMN cdp.customer_360.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.customer_360.created_at IS 'When the profile was made';
COMMENT ON COLUMN cdp.customer_360.identifiers IS 'Its identifiers by kind: {"email": ["ann@x.org"], "cookie": [...], ...}';
COMMENT ON COLUMN cdp.customer_360.traits IS 'Golden record: its traits as kept by cdp.trait_rules';
COMMENT ON COLUMN cdp.customer_360.first_seen IS 'First event of the profile';
COMMENT ON COLUMN cdp.customer_360.last_seen IS 'Last event of the profile';
COMMENT ON COLUMN cdp.customer_360.events IS 'Number of events';
COMMENT ON COLUMN cdp.customer_360.channels IS 'Channels it used';
COMMENT ON COLUMN cdp.customer_360.orders IS 'Number of purchases, on any channel';
COMMENT ON COLUMN cdp.customer_360.revenue IS 'Purchases less returns';
COMMENT ON COLUMN cdp.customer_360.rfm_segment IS 'RFM segment at the last cdp.refresh_scores (NULL: no purchase then)';
COMMENT ON COLUMN cdp.customer_360.rfm_code IS 'Recency, frequency and monetary scores (1-5 each) at the last refresh';
COMMENT ON COLUMN cdp.customer_360.p_alive IS 'Probability that the customer is still active (lifetime-value model of the last refresh)';
COMMENT ON COLUMN cdp.customer_360.expected_purchases IS 'Purchase days expected over the horizon of the last refresh';
COMMENT ON COLUMN cdp.customer_360.clv IS 'Lifetime value over the horizon of the last refresh';
COMMENT ON COLUMN cdp.customer_360.open_breaks IS 'Journeys broken and still open at the last cdp.detect_journey_breaks';
COMMENT ON COLUMN cdp.customer_360.open_journey_breaks IS 'Those breaks: funnel, step reached, channel, when, and their context (products, cart value)';
COMMENT ON COLUMN cdp.customer_360.first_source IS 'First-touch acquisition source (utm_source or referrer host, as cdp.profile_acquisition)';
COMMENT ON COLUMN cdp.customer_360.first_medium IS 'First-touch medium';
COMMENT ON COLUMN cdp.customer_360.last_source IS 'Last-touch acquisition source';
COMMENT ON COLUMN cdp.customer_360.last_medium IS 'Last-touch medium';
COMMENT ON COLUMN cdp.customer_360.by_channel IS 'Per channel, its events and the time of the last';
COMMENT ON COLUMN cdp.customer_360.by_category IS 'Per event type category, its events and the time of the last';
COMMENT ON COLUMN cdp.customer_360.last_purchase_at IS 'When it last bought';
COMMENT ON COLUMN cdp.customer_360.last_purchase_channel IS 'On which channel';
COMMENT ON COLUMN cdp.customer_360.last_purchase_amount IS 'For how much';
COMMENT ON COLUMN cdp.customer_360.products IS 'The 20 products last viewed, carted and bought';
COMMENT ON COLUMN cdp.customer_360.interest IS 'Interest now per product category (30-day half-life)';
COMMENT ON COLUMN cdp.customer_360.first_campaign IS 'First-touch campaign';
COMMENT ON COLUMN cdp.customer_360.first_channel IS 'First-touch channel';
COMMENT ON COLUMN cdp.customer_360.first_touch_at IS 'When the first touch happened';
COMMENT ON COLUMN cdp.customer_360.last_campaign IS 'Last-touch campaign';
COMMENT ON COLUMN cdp.customer_360.last_channel IS 'Last-touch channel';
COMMENT ON COLUMN cdp.customer_360.last_touch_at IS 'When the last touch happened';
COMMENT ON COLUMN cdp.customer_360.touches IS 'Events with a utm_source or a referrer';

-- One customer.  Reads the profile store by index; folds in first what was
-- stitched and not yet taken in (unless the transaction is read-only, the
-- store awaits a rebuild, or another transaction is folding), so that a
-- session reads its own writes.
CREATE TYPE cdp.customer_profile AS (profile_id bigint, created_at timestamptz, identifiers jsonb, traits jsonb,
	first_seen timestamptz, last_seen timestamptz, events bigint, channels text[], orders bigint,
	revenue numeric, rfm_segment text, rfm_code text, p_alive double precision,
	expected_purchases double precision, clv double precision, open_breaks bigint,
	open_journey_breaks jsonb, first_source text, first_medium text, last_source text,
	last_medium text, by_channel jsonb, by_category jsonb, last_purchase_at timestamptz,
	last_purchase_channel text, last_purchase_amount numeric, products jsonb, interest jsonb,
	first_campaign text, first_channel text, first_touch_at timestamptz, last_campaign text,
	last_channel text, last_touch_at timestamptz, touches bigint, recent_events jsonb,
	as_of timestamptz);
COMMENT ON TYPE cdp.customer_profile IS 'A row of cdp.profile: the columns of cdp.customer_360, then recent_events (the 20 latest events across every channel, latest first) and as_of (when the profile store last took in new events)';

CREATE FUNCTION cdp.profile(profile_id bigint)
RETURNS SETOF cdp.customer_profile
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	live bigint;
BEGIN
	IF $1 IS NULL THEN
		RETURN;
	END IF;
	IF NOT current_setting('transaction_read_only')::boolean THEN
		-- this session's bulk loads, if the worker has not stitched them
		-- yet (nothing to do, and no query, after none)
		PERFORM cdp.stitch_queued(true);
		-- the store's lock only if free (the worker folds within a second
		-- anyway): a look-up never waits, nor takes the lock while another
		-- transaction could wait for it in the other order
		IF NOT EXISTS (SELECT FROM cdp.profile_store_progress s WHERE s.needs_full)
		   AND EXISTS (SELECT FROM cdp.stitch_batches b
		               WHERE b.batch_id > coalesce((SELECT s.last_batch_id FROM cdp.profile_store_progress s), 0))
		   AND pg_try_advisory_xact_lock(x'636470'::integer, x'7073'::integer) THEN
			PERFORM cdp.sync();
		END IF;
	END IF;
	SELECT coalesce(p.merged_into, p.profile_id) INTO live FROM cdp.profiles p WHERE p.profile_id = $1;
	RETURN QUERY
	SELECT c.*,
	       (SELECT jsonb_agg(jsonb_build_object('event_id', r.event_id, 'occurred_at', r.occurred_at,
	                                            'channel', r.channel, 'type', r.type, 'amount', r.amount,
	                                            'source', r.source, 'properties', r.properties)
	                         ORDER BY r.occurred_at DESC, r.event_id DESC)
	        FROM (SELECT r.* FROM cdp.identifiers i
	              JOIN cdp.anchor_recent_events r ON r.anchor_id = i.identifier_id
	              WHERE i.profile_id = live
	              ORDER BY r.occurred_at DESC, r.event_id DESC LIMIT 20) r),
	       (SELECT s.synced_at FROM cdp.profile_store_progress s)
	FROM cdp.customer_360 c
	WHERE c.profile_id = live;
END
$$;
COMMENT ON FUNCTION cdp.profile(bigint) IS 'One customer as one row: the cdp.customer_360 row of the live profile (a merged-away id leads to the profile that absorbed it), its 20 latest events across every channel, and the time of the store''s last sync; no row for an unknown id';

CREATE FUNCTION cdp.profile(kind text, value text)
RETURNS SETOF cdp.customer_profile
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
-- this session's bulk loads first, so that the identifier is found
SELECT cdp.stitch_queued(true) WHERE NOT current_setting('transaction_read_only')::boolean;
SELECT * FROM cdp.profile(cdp.resolve(kind, value));
$$;
COMMENT ON FUNCTION cdp.profile(text, text) IS 'One customer found by an identifier (normalized as at ingest): cdp.profile of the profile that holds it; no row when none does';


-- ---------------------------------------------------------------------------
-- The background worker (issue 11, first part): the queue of bulk loads it
-- stitches, its state and status.
-- ---------------------------------------------------------------------------
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


-- ---------------------------------------------------------------------------
-- search_path (issue 14): no cdp function can be hijacked through the
-- caller's search_path.  The C functions pin it themselves (every statement
-- they run through SPI runs with search_path = pg_catalog, pg_temp: src/spi.c);
-- every SQL and PL/pgSQL function pins it with a SET clause, or, when it must
-- stay inlinable, qualifies every function and operator with pg_catalog.  The
-- functions of 0.1.0 that had no SET clause get it here; those of
-- src/sql/offers.sql, triggers.sql and jobs.sql come with their sections below.
-- ---------------------------------------------------------------------------

ALTER FUNCTION cdp.events_append_only() SET search_path = pg_catalog, pg_temp;

-- ---------------------------------------------------------------------------
-- Masking (issue 14): cdp.customer_360 shows identifiers masked to a role
-- that may not see them raw (cdp.mask_contact_points,
-- cdp.contact_points_visible, cdp.mask_identifier; src/sql/views.sql).
-- ---------------------------------------------------------------------------
CREATE FUNCTION cdp.contact_points_visible() RETURNS boolean
	AS 'MODULE_PATHNAME', 'cdp_contact_points_visible' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.contact_points_visible() IS 'Whether the views that show identifiers show them raw to the current role: cdp.mask_contact_points is off, or the role is a superuser or has the privileges of cdp_admin or cdp_app';

-- No SET search_path, so that the planner inlines it: every function and
-- operator is written with its schema.
CREATE FUNCTION cdp.mask_identifier(kind text, value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT CASE
	WHEN kind OPERATOR(pg_catalog.=) 'email' AND pg_catalog.strpos(value, '@') OPERATOR(pg_catalog.>) 1
		THEN pg_catalog.left(value, 1) OPERATOR(pg_catalog.||) '***'
		     OPERATOR(pg_catalog.||) pg_catalog.substr(value, pg_catalog.strpos(value, '@'))
	WHEN kind OPERATOR(pg_catalog.=) 'phone' AND pg_catalog.length(value) OPERATOR(pg_catalog.>) 5
		THEN pg_catalog.left(value, 3) OPERATOR(pg_catalog.||) pg_catalog.repeat('*', pg_catalog.length(value) OPERATOR(pg_catalog.-) 5)
		     OPERATOR(pg_catalog.||) pg_catalog.right(value, 2)
	WHEN pg_catalog.length(value) OPERATOR(pg_catalog.>) 4
		THEN pg_catalog.left(value, 2) OPERATOR(pg_catalog.||) pg_catalog.repeat('*', pg_catalog.length(value) OPERATOR(pg_catalog.-) 4)
		     OPERATOR(pg_catalog.||) pg_catalog.right(value, 2)
	ELSE pg_catalog.repeat('*', pg_catalog.length(value))
END
$$;
COMMENT ON FUNCTION cdp.mask_identifier(text, text) IS 'An identifier as an analyst sees it: ann.doe@orange.fr as a***@orange.fr, +33612345678 as +33*******78, other kinds with their first and last two characters (all stars up to 4 characters)';

CREATE OR REPLACE VIEW cdp.customer_360 AS
WITH ids AS (
	SELECT profile_id, pg_catalog.jsonb_object_agg(kind, vals ORDER BY kind) AS identifiers
	FROM (SELECT profile_id, kind,
	             pg_catalog.jsonb_agg(CASE WHEN (SELECT cdp.contact_points_visible()) THEN value
	                                       ELSE cdp.mask_identifier(kind, value) END ORDER BY value) AS vals
	      FROM cdp.identifiers GROUP BY profile_id, kind) k
	GROUP BY profile_id),
breaks AS (
	SELECT profile_id, pg_catalog.count(*) AS open_breaks,
	       pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('funnel', funnel_id, 'step', break_step, 'channel', channel,
	                                    'broken_at', broken_at, 'context', context) ORDER BY broken_at) AS breaks
	FROM cdp.journey_breaks WHERE status = 'open' GROUP BY profile_id)
SELECT s.profile_id, s.created_at, ids.identifiers, s.traits,
       s.first_seen, s.last_seen, s.events, s.channels, s.orders, s.revenue,
       rfm.segment AS rfm_segment, rfm.rfm_code, clv.p_alive, clv.expected_purchases, clv.clv,
       coalesce(breaks.open_breaks, 0) AS open_breaks, breaks.breaks AS open_journey_breaks,
       s.first_source, s.first_medium, s.last_source, s.last_medium,
       s.by_channel, s.by_category, s.last_purchase_at, s.last_purchase_channel, s.last_purchase_amount,
       s.products, s.interest, s.first_campaign, s.first_channel, s.first_touch_at,
       s.last_campaign, s.last_channel, s.last_touch_at, s.touches
FROM cdp.profile_store s
LEFT JOIN ids USING (profile_id)
LEFT JOIN cdp.rfm rfm USING (profile_id)
LEFT JOIN cdp.clv clv USING (profile_id)
LEFT JOIN breaks USING (profile_id);
COMMENT ON COLUMN cdp.customer_360.identifiers IS 'Its identifiers by kind: {"email": ["ann@x.org"], "cookie": [...], ...}; masked ({"email": ["a***@x.org"]}) for a role that may not see them raw (cdp.contact_points_visible)';



-- ---------------------------------------------------------------------------
-- Offers (issue 12): the catalogue, contact policies, consents (subscribe and
-- unsubscribe events record them), the contact history, decisions, outcomes,
-- measurement and campaigns: src/sql/offers.sql as a whole, new in 0.2.0.
-- ---------------------------------------------------------------------------
INSERT INTO cdp.event_types (type, category, description, builtin) VALUES
	('subscribe',        'account',   'The customer opted in (records consent: properties.channel, else the event''s channel; properties.purpose marketing or all)', true),
	('unsubscribe',      'account',   'The customer opted out (revokes consent in the same transaction: properties.channel, else the event''s channel; properties.purpose marketing or all)', true)
ON CONFLICT (type) DO UPDATE SET category = EXCLUDED.category, description = EXCLUDED.description, builtin = true;

CREATE FUNCTION cdp.check_eligibility(rule jsonb) RETURNS boolean
	AS 'MODULE_PATHNAME', 'cdp_check_eligibility' LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION cdp.check_eligibility(jsonb) IS 'Checks an eligibility rule: true, or an error naming the path within the rule and what is wrong';

CREATE TABLE cdp.offers (
	offer_id        text        PRIMARY KEY CHECK (offer_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
	name            text        NOT NULL,
	channels        text[],
	value           numeric     NOT NULL DEFAULT 1 CHECK (value >= 0 AND value < 1e300),
	weight          float8      NOT NULL DEFAULT 1 CHECK (weight >= 0 AND weight < 'infinity'),
	valid_from      timestamptz,
	valid_until     timestamptz,
	max_per_profile integer     CHECK (max_per_profile > 0),
	cap_period      interval    CHECK (cap_period > '0'),
	budget          bigint      CHECK (budget >= 0),
	fallback        boolean     NOT NULL DEFAULT false,
	message_class   text        NOT NULL DEFAULT 'marketing' CHECK (message_class IN ('marketing', 'transactional', 'mandatory')),
	holdout         float8      NOT NULL DEFAULT 0 CHECK (holdout >= 0 AND holdout < 1),
	eligibility     jsonb       CHECK (cdp.check_eligibility(eligibility)),
	payload         jsonb,
	active          boolean     NOT NULL DEFAULT true,
	created_at      timestamptz NOT NULL DEFAULT now(),
	CHECK (valid_until > valid_from),
	CHECK (cap_period IS NULL OR max_per_profile IS NOT NULL)
);
COMMENT ON TABLE cdp.offers IS 'The offer catalogue: what may be proposed, to whom (eligibility), on which channels, when, how often and how many';
COMMENT ON COLUMN cdp.offers.offer_id IS 'Offer key (letters, digits, _ . : -)';
COMMENT ON COLUMN cdp.offers.name IS 'What the offer is';
COMMENT ON COLUMN cdp.offers.channels IS 'Channels it may be sent on (keys of cdp.channels); NULL for every channel';
COMMENT ON COLUMN cdp.offers.value IS 'Value of a conversion (the margin it brings); variants (cdp.offer_variants) have their own';
COMMENT ON COLUMN cdp.offers.weight IS 'Business weight multiplying its score (1: neutral)';
COMMENT ON COLUMN cdp.offers.valid_from IS 'First moment it may be chosen (NULL: always)';
COMMENT ON COLUMN cdp.offers.valid_until IS 'Moment from which it may no longer be chosen (NULL: never ends)';
COMMENT ON COLUMN cdp.offers.max_per_profile IS 'Most times one person may be sent it (within cap_period, or ever); NULL: no limit';
COMMENT ON COLUMN cdp.offers.cap_period IS 'Rolling period of max_per_profile (NULL: ever)';
COMMENT ON COLUMN cdp.offers.budget IS 'Total quantity available (sent offers); NULL: unlimited. cdp.offer_usage counts what is used';
COMMENT ON COLUMN cdp.offers.fallback IS 'Chosen only when no other offer is eligible';
COMMENT ON COLUMN cdp.offers.message_class IS 'marketing (counted and capped, needs consent), transactional (neither counted nor capped; stopped only by an opt-out of purpose all), mandatory (bypasses caps and quiet hours, never an opt-out)';
COMMENT ON COLUMN cdp.offers.holdout IS 'Share of the decisions that choose it which deliberately send nothing (control group for uplift)';
COMMENT ON COLUMN cdp.offers.eligibility IS 'Who may get it: a rule of the JSON language described in the README (validated when written); NULL: everyone';
COMMENT ON COLUMN cdp.offers.payload IS 'What the channel needs to render it (free JSON, returned by cdp.decide)';
COMMENT ON COLUMN cdp.offers.active IS 'False to withdraw it without deleting its history';
COMMENT ON COLUMN cdp.offers.created_at IS 'When it was added';

CREATE TABLE cdp.offer_variants (
	offer_id text    NOT NULL REFERENCES cdp.offers ON UPDATE CASCADE ON DELETE CASCADE,
	variant  text    NOT NULL CHECK (variant ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
	value    numeric NOT NULL CHECK (value >= 0 AND value < 1e300),
	payload  jsonb,
	PRIMARY KEY (offer_id, variant)
);
COMMENT ON TABLE cdp.offer_variants IS 'Variants of an offer, e.g. discount levels, each with its own value (the margin after the discount); learning finds the one that pays best per segment';
COMMENT ON COLUMN cdp.offer_variants.offer_id IS 'Offer';
COMMENT ON COLUMN cdp.offer_variants.variant IS 'Variant key, e.g. 10pct';
COMMENT ON COLUMN cdp.offer_variants.value IS 'Value of a conversion of this variant';
COMMENT ON COLUMN cdp.offer_variants.payload IS 'What the channel needs to render it (merged over the offer''s payload)';

CREATE TABLE cdp.offer_usage (
	offer_id text   PRIMARY KEY REFERENCES cdp.offers ON UPDATE CASCADE ON DELETE CASCADE,
	used     bigint NOT NULL DEFAULT 0 CHECK (used >= 0)
);
COMMENT ON TABLE cdp.offer_usage IS 'Quantity of each budgeted offer used (sent); a decision takes one unit only while used < budget, under the row''s lock';
COMMENT ON COLUMN cdp.offer_usage.offer_id IS 'Offer';
COMMENT ON COLUMN cdp.offer_usage.used IS 'Units used';

CREATE TABLE cdp.contact_policies (
	channel        text     PRIMARY KEY,
	max_contacts   integer  CHECK (max_contacts >= 0),
	per            interval CHECK (per > '0'),
	min_gap        interval CHECK (min_gap > '0'),
	quiet_start    time,
	quiet_end      time,
	max_ignored    integer  CHECK (max_ignored > 0),
	ignored_window interval CHECK (ignored_window > '0'),
	contact_cost   numeric  NOT NULL DEFAULT 0 CHECK (contact_cost >= 0 AND contact_cost < 1e300),
	contact_kinds  text[],
	CHECK ((max_contacts IS NULL) = (per IS NULL)),
	CHECK ((quiet_start IS NULL) = (quiet_end IS NULL) AND quiet_start IS DISTINCT FROM quiet_end OR quiet_start IS NULL),
	CHECK ((max_ignored IS NULL) = (ignored_window IS NULL)),
	CHECK (channel <> '*' OR (contact_cost = 0 AND contact_kinds IS NULL))
);
COMMENT ON TABLE cdp.contact_policies IS 'Contact pressure per channel (channel * for all channels together): caps, minimum gap, quiet hours, suppression after ignored contacts; and the cost of a contact and the identifier kinds that reach a person on the channel';
COMMENT ON COLUMN cdp.contact_policies.channel IS 'A key of cdp.channels, or * for the global policy across all channels';
COMMENT ON COLUMN cdp.contact_policies.max_contacts IS 'Most marketing contacts in any rolling period per (NULL: no cap)';
COMMENT ON COLUMN cdp.contact_policies.per IS 'The rolling period of max_contacts';
COMMENT ON COLUMN cdp.contact_policies.min_gap IS 'Least time between two marketing contacts';
COMMENT ON COLUMN cdp.contact_policies.quiet_start IS 'Start of the quiet hours, in the person''s time zone (trait timezone, else cdp.default_timezone); may wrap midnight';
COMMENT ON COLUMN cdp.contact_policies.quiet_end IS 'End of the quiet hours';
COMMENT ON COLUMN cdp.contact_policies.max_ignored IS 'Marketing is suppressed once this many contacts were ignored within ignored_window';
COMMENT ON COLUMN cdp.contact_policies.ignored_window IS 'The window of max_ignored';
COMMENT ON COLUMN cdp.contact_policies.contact_cost IS 'Cost of one contact on the channel, subtracted from an offer''s expected value (a call or a letter costs far more than an e-mail)';
COMMENT ON COLUMN cdp.contact_policies.contact_kinds IS 'Identifier kinds that reach a person on the channel, in order of preference; NULL: e-mail for email, phone for sms and call_center, device_id for push, any identifier elsewhere';

CREATE SEQUENCE cdp.consents_consent_id_seq AS bigint;
COMMENT ON SEQUENCE cdp.consents_consent_id_seq IS 'Consent record numbers';
CREATE TABLE cdp.consents (
	consent_id  bigint      PRIMARY KEY DEFAULT nextval('cdp.consents_consent_id_seq'),
	kind        text,
	value       text,
	profile_id  bigint,
	channel     text        NOT NULL,
	purpose     text        NOT NULL DEFAULT 'marketing' CHECK (purpose IN ('marketing', 'all')),
	granted     boolean     NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT now(),
	source      text,
	event_id    bigint,
	CHECK ((kind IS NULL) = (value IS NULL) AND (kind IS NULL) <> (profile_id IS NULL))
);
ALTER SEQUENCE cdp.consents_consent_id_seq OWNED BY cdp.consents.consent_id;
CREATE INDEX ON cdp.consents (kind, value);
CREATE INDEX ON cdp.consents (profile_id) WHERE profile_id IS NOT NULL;
COMMENT ON TABLE cdp.consents IS 'Consent (granted) or opt-out (not granted) per contact point (an identifier) or per profile, channel and purpose, with time and source; the latest record of each contact point or profile counts, and across a person the most restrictive wins';
COMMENT ON COLUMN cdp.consents.consent_id IS 'Record number';
COMMENT ON COLUMN cdp.consents.kind IS 'Identifier kind of the contact point (with value), or NULL for a profile-wide record';
COMMENT ON COLUMN cdp.consents.value IS 'Its normalized value';
COMMENT ON COLUMN cdp.consents.profile_id IS 'Profile of a profile-wide record (it follows merges)';
COMMENT ON COLUMN cdp.consents.channel IS 'A key of cdp.channels, or * for every channel';
COMMENT ON COLUMN cdp.consents.purpose IS 'marketing, or all (transactional messages too)';
COMMENT ON COLUMN cdp.consents.granted IS 'True: opt-in; false: opt-out';
COMMENT ON COLUMN cdp.consents.recorded_at IS 'When it was given or withdrawn';
COMMENT ON COLUMN cdp.consents.source IS 'Where it came from (preference centre, unsubscribe link, call, ...)';
COMMENT ON COLUMN cdp.consents.event_id IS 'The subscribe or unsubscribe event that recorded it, if any';

CREATE SEQUENCE cdp.contacts_contact_id_seq AS bigint;
COMMENT ON SEQUENCE cdp.contacts_contact_id_seq IS 'Contact ids';
CREATE TABLE cdp.contacts (
	contact_id    bigint      PRIMARY KEY DEFAULT nextval('cdp.contacts_contact_id_seq'),
	profile_id    bigint      NOT NULL,
	identifier_id bigint,
	offer_id      text,
	variant       text,
	channel       text        NOT NULL,
	decided_at    timestamptz NOT NULL,
	message_class text,
	status        text        NOT NULL CHECK (status IN ('sent', 'holdout', 'suppressed', 'no_offer')),
	reason        text,
	segment       text        NOT NULL DEFAULT '',
	score         float8,
	propensity    float8,
	action_prob   float8,
	value         numeric,
	campaign_id   bigint,
	outcome       text        CHECK (outcome IN ('shown', 'opened', 'clicked', 'converted', 'ignored', 'complained')),
	outcome_at    timestamptz,
	reward        numeric,
	success       boolean     NOT NULL DEFAULT false
);
ALTER SEQUENCE cdp.contacts_contact_id_seq OWNED BY cdp.contacts.contact_id;
CREATE INDEX ON cdp.contacts (identifier_id, decided_at);
CREATE INDEX ON cdp.contacts (campaign_id) WHERE campaign_id IS NOT NULL;
COMMENT ON TABLE cdp.contacts IS 'Every decision of cdp.decide and cdp.plan_campaign, holdouts and refusals included, and its outcome: the contact history that caps count and learning reads';
COMMENT ON COLUMN cdp.contacts.contact_id IS 'Contact id (pass it to cdp.record_outcome)';
COMMENT ON COLUMN cdp.contacts.profile_id IS 'Live profile decided for';
COMMENT ON COLUMN cdp.contacts.identifier_id IS 'Contact point reached (cdp.identifiers); caps count the contacts of the identifiers a person holds now';
COMMENT ON COLUMN cdp.contacts.offer_id IS 'Offer chosen (NULL when nothing may be sent)';
COMMENT ON COLUMN cdp.contacts.variant IS 'Its variant, if it has variants';
COMMENT ON COLUMN cdp.contacts.channel IS 'Channel';
COMMENT ON COLUMN cdp.contacts.decided_at IS 'Moment of the decision (the at argument)';
COMMENT ON COLUMN cdp.contacts.message_class IS 'The offer''s message class';
COMMENT ON COLUMN cdp.contacts.status IS 'sent; holdout (chosen, deliberately not sent: the control group); suppressed (a pressure rule or consent forbade every offer); no_offer (no offer eligible)';
COMMENT ON COLUMN cdp.contacts.reason IS 'Why this offer, or why nothing';
COMMENT ON COLUMN cdp.contacts.segment IS 'The person''s RFM segment at the decision (the learning context; empty when unscored)';
COMMENT ON COLUMN cdp.contacts.score IS 'propensity x value x weight - contact cost';
COMMENT ON COLUMN cdp.contacts.propensity IS 'Conversion propensity drawn from the offer''s Beta posterior for the segment';
COMMENT ON COLUMN cdp.contacts.action_prob IS 'Probability that the policy chose this offer (Monte Carlo over the posteriors, times 1 - holdout or holdout), for off-policy evaluation';
COMMENT ON COLUMN cdp.contacts.value IS 'Value of a conversion of the offer or variant';
COMMENT ON COLUMN cdp.contacts.campaign_id IS 'The cdp.plan_campaign run that made it';
COMMENT ON COLUMN cdp.contacts.outcome IS 'Last outcome recorded: shown, opened, clicked, converted, ignored or complained';
COMMENT ON COLUMN cdp.contacts.outcome_at IS 'When';
COMMENT ON COLUMN cdp.contacts.reward IS 'Value of the conversion, if given';
COMMENT ON COLUMN cdp.contacts.success IS 'Whether an outcome reached cdp.offer_success (counted once in the offer''s learning)';

CREATE TABLE cdp.offer_stats (
	offer_id  text    NOT NULL,
	variant   text    NOT NULL DEFAULT '',
	segment   text    NOT NULL DEFAULT '',
	shard     integer NOT NULL DEFAULT 0,
	trials    bigint  NOT NULL DEFAULT 0,
	successes bigint  NOT NULL DEFAULT 0,
	PRIMARY KEY (offer_id, variant, segment, shard)
);
COMMENT ON TABLE cdp.offer_stats IS 'What learning knows: per offer, variant and segment, offers sent (trials) and successes; the Beta posterior is (cdp.offer_prior_alpha + successes, cdp.offer_prior_beta + trials - successes). A decision adds to a row no other transaction holds, or to a new shard: concurrent decisions never queue on one row (sum the shards)';
COMMENT ON COLUMN cdp.offer_stats.offer_id IS 'Offer';
COMMENT ON COLUMN cdp.offer_stats.variant IS 'Variant (empty: none)';
COMMENT ON COLUMN cdp.offer_stats.segment IS 'RFM segment (empty: unscored)';
COMMENT ON COLUMN cdp.offer_stats.shard IS 'Shard: the backend id that opened the row (sum over shards)';
COMMENT ON COLUMN cdp.offer_stats.trials IS 'Offers sent';
COMMENT ON COLUMN cdp.offer_stats.successes IS 'Of which reached cdp.offer_success';

CREATE SEQUENCE cdp.campaigns_campaign_id_seq AS bigint;
COMMENT ON SEQUENCE cdp.campaigns_campaign_id_seq IS 'Campaign run numbers';
CREATE TABLE cdp.campaigns (
	campaign_id  bigint      PRIMARY KEY DEFAULT nextval('cdp.campaigns_campaign_id_seq'),
	channel      text,
	audience     jsonb       NOT NULL,
	planned_at   timestamptz NOT NULL,
	started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
	finished_at  timestamptz,
	profiles     bigint,
	chosen       bigint,
	holdouts     bigint,
	suppressed   jsonb,
	without_offer bigint
);
ALTER SEQUENCE cdp.campaigns_campaign_id_seq OWNED BY cdp.campaigns.campaign_id;
COMMENT ON TABLE cdp.campaigns IS 'Runs of cdp.plan_campaign and what they decided';
COMMENT ON COLUMN cdp.campaigns.campaign_id IS 'Run';
COMMENT ON COLUMN cdp.campaigns.channel IS 'Channel (NULL: the best per person)';
COMMENT ON COLUMN cdp.campaigns.audience IS 'The audience as given';
COMMENT ON COLUMN cdp.campaigns.planned_at IS 'The moment decided for (at)';
COMMENT ON COLUMN cdp.campaigns.started_at IS 'When the run started';
COMMENT ON COLUMN cdp.campaigns.finished_at IS 'When it finished';
COMMENT ON COLUMN cdp.campaigns.profiles IS 'People in the audience';
COMMENT ON COLUMN cdp.campaigns.chosen IS 'People sent an offer';
COMMENT ON COLUMN cdp.campaigns.holdouts IS 'People held out (control group)';
COMMENT ON COLUMN cdp.campaigns.suppressed IS 'People suppressed, by reason: {"quiet hours": 12, ...}';
COMMENT ON COLUMN cdp.campaigns.without_offer IS 'People with no eligible offer';

SELECT pg_catalog.pg_extension_config_dump('cdp.offers', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.offer_variants', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.offer_usage', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.contact_policies', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.consents', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.consents_consent_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.contacts', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.contacts_contact_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.offer_stats', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.campaigns', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.campaigns_campaign_id_seq', '');

-- Configuration is checked when written: channels of offers and policies,
-- identifier kinds of policies, the rules (CHECK above, in C).
CREATE FUNCTION cdp.offers_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bad text;
BEGIN
	IF TG_TABLE_NAME = 'offers' THEN
		SELECT c INTO bad FROM unnest(NEW.channels) c
		WHERE c IS NULL OR NOT EXISTS (SELECT FROM cdp.channels k WHERE k.channel = c) LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'offer "%": unknown channel "%"', NEW.offer_id, bad
				USING ERRCODE = 'foreign_key_violation', HINT = 'Channels are the keys of cdp.channels.';
		END IF;
		RETURN NEW;
	END IF;
	-- a contact policy or a consent: a channel, or * for all
	IF NEW.channel <> '*' AND NOT EXISTS (SELECT FROM cdp.channels k WHERE k.channel = NEW.channel) THEN
		RAISE EXCEPTION '%: unknown channel "%"', CASE TG_TABLE_NAME WHEN 'consents' THEN 'consent' ELSE 'contact policy' END, NEW.channel
			USING ERRCODE = 'foreign_key_violation', HINT = 'A key of cdp.channels, or * for all channels.';
	END IF;
	IF TG_TABLE_NAME = 'contact_policies' THEN
		SELECT c INTO bad FROM unnest(NEW.contact_kinds) c
		WHERE c IS NULL OR NOT EXISTS (SELECT FROM cdp.identity_rules r WHERE r.kind = c) LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'contact policy of "%": unknown identifier kind "%"', NEW.channel, bad
				USING ERRCODE = 'foreign_key_violation', HINT = 'Kinds are the keys of cdp.identity_rules.';
		END IF;
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION cdp.offers_check() IS 'Trigger: refuses an offer, a contact policy or a consent naming an unknown channel, or a policy naming an unknown identifier kind';
CREATE TRIGGER offers_check BEFORE INSERT OR UPDATE ON cdp.offers
	FOR EACH ROW EXECUTE FUNCTION cdp.offers_check();
CREATE TRIGGER contact_policies_check BEFORE INSERT OR UPDATE ON cdp.contact_policies
	FOR EACH ROW EXECUTE FUNCTION cdp.offers_check();

-- usage rows need their offer first: after the row is in
CREATE FUNCTION cdp.offer_usage_open() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.budget IS NOT NULL THEN
		INSERT INTO cdp.offer_usage (offer_id) VALUES (NEW.offer_id) ON CONFLICT DO NOTHING;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.offer_usage_open() IS 'Trigger: opens the usage counter of a budgeted offer';
CREATE TRIGGER offer_usage_open AFTER INSERT OR UPDATE OF budget ON cdp.offers
	FOR EACH ROW EXECUTE FUNCTION cdp.offer_usage_open();

CREATE TRIGGER consents_check BEFORE INSERT OR UPDATE ON cdp.consents
	FOR EACH ROW EXECUTE FUNCTION cdp.offers_check();

-- ---------------------------------------------------------------------------
-- Consent.
-- ---------------------------------------------------------------------------

CREATE FUNCTION cdp.set_consent(kind text, value text, channel text, granted boolean,
	purpose text DEFAULT 'marketing', source text DEFAULT NULL, at timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	norm text;
	why text;
	id bigint;
BEGIN
	SELECT c.normalized, c.reason INTO norm, why FROM cdp.check_identifier(kind, value) c;
	IF norm IS NULL THEN
		RAISE EXCEPTION 'consent: identifier % "%" is not usable: %', kind, value, coalesce(why, 'invalid')
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Give a contact point of a kind in cdp.identity_rules, e.g. (''email'', ''ann@example.org'').';
	END IF;
	IF granted IS NULL OR channel IS NULL THEN
		RAISE EXCEPTION 'consent: channel and granted must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	INSERT INTO cdp.consents (kind, value, channel, purpose, granted, recorded_at, source)
	VALUES (set_consent.kind, norm, set_consent.channel, set_consent.purpose, set_consent.granted,
	        coalesce(at, now()), set_consent.source)
	RETURNING consent_id INTO id;
	RETURN id;
END
$$;
COMMENT ON FUNCTION cdp.set_consent(text, text, text, boolean, text, text, timestamptz) IS 'Records consent (granted) or an opt-out for a contact point (identifier kind and value, normalized as at ingest) on a channel (* for all) and purpose (marketing or all); returns the record id';

CREATE FUNCTION cdp.set_consent(profile_id bigint, channel text, granted boolean,
	purpose text DEFAULT 'marketing', source text DEFAULT NULL, at timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	IF NOT EXISTS (SELECT FROM cdp.profiles p WHERE p.profile_id = set_consent.profile_id) THEN
		RAISE EXCEPTION 'consent: profile % does not exist', profile_id
			USING ERRCODE = 'no_data_found', HINT = 'Find the profile with cdp.resolve(kind, value).';
	END IF;
	IF granted IS NULL OR channel IS NULL THEN
		RAISE EXCEPTION 'consent: channel and granted must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	INSERT INTO cdp.consents (profile_id, channel, purpose, granted, recorded_at, source)
	VALUES (set_consent.profile_id, set_consent.channel, set_consent.purpose, set_consent.granted,
	        coalesce(at, now()), set_consent.source)
	RETURNING consent_id INTO id;
	RETURN id;
END
$$;
COMMENT ON FUNCTION cdp.set_consent(bigint, text, boolean, text, text, timestamptz) IS 'Records consent or an opt-out for a whole profile on a channel (* for all) and purpose';

-- Subscribe and unsubscribe events record consent in the transaction that
-- stores them (called at the end of the loading statement, src/event_batch.c):
-- every contact point of the event, on properties.channel or the event's
-- channel, for properties.purpose or marketing.
CREATE FUNCTION cdp.consent_events(event_ids bigint[], occurred_at timestamptz[]) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	INSERT INTO cdp.consents (kind, value, channel, purpose, granted, recorded_at, source, event_id)
	SELECT i.key, c.normalized,
	       CASE WHEN e.properties->>'channel' = '*' OR EXISTS (SELECT FROM cdp.channels k WHERE k.channel = e.properties->>'channel')
	            THEN e.properties->>'channel' ELSE e.channel END,
	       CASE WHEN e.properties->>'purpose' = 'all' THEN 'all' ELSE 'marketing' END,
	       e.type = 'subscribe', e.occurred_at, coalesce(e.source, e.type), e.event_id
	FROM cdp.events e
	CROSS JOIN LATERAL jsonb_each_text(e.identifiers) i
	CROSS JOIN LATERAL cdp.check_identifier(i.key, i.value) c
	-- ids are unique; the times let the scan skip the other partitions
	WHERE e.event_id = ANY (consent_events.event_ids) AND e.occurred_at = ANY (consent_events.occurred_at)
	  AND e.type IN ('subscribe', 'unsubscribe') AND c.normalized IS NOT NULL;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdp.consent_events(bigint[], timestamptz[]) IS 'Internal, called at the end of a loading statement: records the consents of its subscribe and unsubscribe events';

-- The person's subjects: its identifiers, itself and the profiles merged
-- into it.  Per subject, channel and purpose the latest record counts;
-- then an opt-out anywhere wins.
CREATE FUNCTION cdp.consent_state(profile_id bigint, at timestamptz DEFAULT now())
RETURNS TABLE (channel text, purpose text, granted boolean, recorded_at timestamptz, source text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
RETURN QUERY
SELECT l.channel, l.purpose, bool_and(l.granted), max(l.recorded_at), (array_agg(l.source ORDER BY l.granted, l.recorded_at DESC))[1]
FROM (SELECT DISTINCT ON (coalesce(c.kind || ':' || c.value, c.profile_id::text), c.channel, c.purpose)
             c.channel, c.purpose, c.granted, c.recorded_at, c.source
      FROM (SELECT s.* FROM cdp.identifiers i JOIN cdp.consents s ON (s.kind, s.value) = (i.kind, i.value)
            WHERE i.profile_id = consent_state.profile_id
            UNION ALL
            SELECT s.* FROM cdp.consents s
            WHERE s.profile_id IN (SELECT p.profile_id FROM cdp.profiles p
                                   WHERE p.profile_id = consent_state.profile_id OR p.merged_into = consent_state.profile_id)) c
      WHERE c.recorded_at <= at OR NOT c.granted   -- an opt-out binds once known, whatever its time
      ORDER BY coalesce(c.kind || ':' || c.value, c.profile_id::text), c.channel, c.purpose, c.recorded_at DESC, c.consent_id DESC) l
GROUP BY l.channel, l.purpose;
END
$$;
COMMENT ON FUNCTION cdp.consent_state(bigint, timestamptz) IS 'A live profile''s consent per channel (* for all) and purpose at a time: its contact points'' and its merged profiles'' latest records combined, an opt-out anywhere winning (granted false)';

-- What consent allows per channel and message class, the one place that
-- says it: marketing stops at any opt-out on the channel or on * (and
-- needs an opt-in there under cdp.consent_required), mandatory at any
-- opt-out, transactional only at an opt-out of purpose all.
CREATE FUNCTION cdp.consent_flags(profile_id bigint, at timestamptz DEFAULT now(), only_channel text DEFAULT NULL,
	OUT channel text, OUT marketing boolean, OUT transactional boolean, OUT mandatory boolean, OUT revoked boolean)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
	RETURN QUERY
	WITH s AS MATERIALIZED (SELECT * FROM cdp.consent_state(consent_flags.profile_id, consent_flags.at))
	SELECT k.channel,
	       NOT f.revoked AND (f.opted_in OR NOT current_setting('cdp.consent_required')::boolean),
	       NOT f.revoked_all, NOT f.revoked, f.revoked
	FROM cdp.channels k,
	     LATERAL (SELECT coalesce(bool_or(NOT s.granted), false) AS revoked,
	                     coalesce(bool_or(NOT s.granted AND s.purpose = 'all'), false) AS revoked_all,
	                     coalesce(bool_or(s.granted), false) AS opted_in
	              FROM s WHERE s.channel IN (k.channel, '*')) f
	WHERE consent_flags.only_channel IS NULL OR k.channel = consent_flags.only_channel;
END
$$;
COMMENT ON FUNCTION cdp.consent_flags(bigint, timestamptz, text) IS 'Per channel (every one, or only_channel), whether consent allows a live profile marketing (no opt-out there or on *; an opt-in under cdp.consent_required), transactional (no opt-out of purpose all) and mandatory messages (no opt-out), and whether any opt-out applies';

-- ---------------------------------------------------------------------------
-- Decisions (src/offers.c does the C parts).
-- ---------------------------------------------------------------------------


CREATE FUNCTION cdp.eligible(rule jsonb, facts jsonb, OUT eligible boolean, OUT reason text)
	AS 'MODULE_PATHNAME', 'cdp_eligible' LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION cdp.eligible(jsonb, jsonb) IS 'Evaluates an eligibility rule against a facts document (as cdp.offer_facts gives): whether it holds, and if not which condition failed';

CREATE FUNCTION cdp.rank_offers(facts jsonb, seed bigint, draws integer, rules jsonb[], blocked text[],
	fallback boolean[], alpha float8[], beta float8[], value float8[], cost float8[],
	OUT i integer, OUT eligible boolean, OUT reason text, OUT propensity float8, OUT score float8,
	OUT rank integer, OUT action_prob float8)
RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'cdp_rank_offers' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.rank_offers(jsonb, bigint, integer, jsonb[], text[], boolean[], float8[], float8[], float8[], float8[]) IS 'Internal: for each candidate (arrays in the same order), whether it may be chosen (not blocked, its rule holds) and why not; a Thompson draw of its propensity from Beta(alpha, beta), its score propensity x value - cost, its rank among the competing candidates (the fallbacks compete only when nothing else may be chosen), and for rank 1 the probability that the policy picks it';

CREATE FUNCTION cdp.evaluate_thompson(arms integer[], contexts integer[], rewards float8[], propensities float8[],
	prior_alpha float8, prior_beta float8, draws integer, seed bigint,
	OUT method text, OUT value float8, OUT low float8, OUT high float8, OUT used bigint)
RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'cdp_evaluate_thompson_sql' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION cdp.evaluate_thompson(integer[], integer[], float8[], float8[], float8, float8, integer, bigint) IS 'Internal: off-policy estimates (replay, IPW, self-normalized IPW) of Bernoulli Thompson sampling on logged decisions in order';

-- The lock of a person's decisions: one of 1,024 stripes (a two-key
-- advisory lock), so that a campaign over millions of people holds at most
-- 1,024 locks (PostgreSQL's lock table holds a few thousand) while it
-- takes them in stripe order; two decisions for people of one stripe wait
-- for each other, which is rare and short.
--
-- No SET search_path: it would stop the planner from inlining the function
-- (it orders campaigns and the triggers' locks by stripe).  An inlined body
-- is parsed under the caller's search_path, so every function and operator
-- in it is qualified with pg_catalog: none can be shadowed.
CREATE FUNCTION cdp.person_stripe(profile_id bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (pg_catalog.hashint8(profile_id) OPERATOR(pg_catalog.&) 1023)::integer $$;
COMMENT ON FUNCTION cdp.person_stripe(bigint) IS 'Internal: the lock stripe (0 to 1023) of a live profile''s decisions';

CREATE FUNCTION cdp.lock_person(profile_id bigint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pg_advisory_xact_lock(6513775, cdp.person_stripe(profile_id));
END
$$;
COMMENT ON FUNCTION cdp.lock_person(bigint) IS 'Internal: takes the transaction-level lock of a live profile''s decisions (its stripe)';

-- The facts eligibility rules read (the keys are the fact names of the
-- rule language; see the README), only those asked for: a decision asks
-- for what the active offers' rules use (cdp.offer_fact_names).
CREATE FUNCTION cdp.offer_facts(profile_id bigint, at timestamptz DEFAULT now(), needed text[] DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	f jsonb;
	x jsonb;
BEGIN
	-- the segment always: it is the learning's context
	f := jsonb_build_object('rfm_segment', (SELECT r.segment FROM cdp.rfm r WHERE r.profile_id = offer_facts.profile_id));
	IF needed IS NULL OR needed && '{clv,p_alive}' THEN
		SELECT jsonb_build_object('clv', c.clv, 'p_alive', c.p_alive) INTO x FROM cdp.clv c WHERE c.profile_id = offer_facts.profile_id;
		f := f || coalesce(x, '{}');
	END IF;
	IF needed IS NULL OR needed && '{orders,revenue,days_since_last_purchase,last_channel,events}' THEN
		SELECT jsonb_build_object(
		           'orders', coalesce(sum(a.events) FILTER (WHERE a.type = 'purchase'), 0),
		           'revenue', coalesce(sum(a.amount) FILTER (WHERE a.type IN ('purchase', 'return')), 0),
		           'days_since_last_purchase', extract(epoch FROM at - max(a.last_at) FILTER (WHERE a.type = 'purchase')) / 86400,
		           'last_channel', (array_agg(a.channel ORDER BY a.last_at DESC, a.last_event_id DESC))[1],
		           'events', coalesce(jsonb_object_agg(a.type, a.events), '{}'))
		INTO x
		FROM (SELECT y.type, sum(y.events) AS events, sum(y.amount) AS amount, max(y.last_at) AS last_at,
		             (array_agg(y.channel ORDER BY y.last_at DESC, y.last_event_id DESC))[1] AS channel,
		             (array_agg(y.last_event_id ORDER BY y.last_at DESC, y.last_event_id DESC))[1] AS last_event_id
		      FROM cdp.identifiers i JOIN cdp.anchor_activity y ON y.anchor_id = i.identifier_id
		      WHERE i.profile_id = offer_facts.profile_id
		      GROUP BY y.type) a;
		f := f || x;
	END IF;
	IF needed IS NULL OR 'interest' = ANY (needed) THEN
		f := f || jsonb_build_object('interest', coalesce((SELECT jsonb_object_agg(z.category, z.score) FROM (
		              SELECT y.category, round(sum(power(2::float8, GREATEST(y.log2_mass - extract(epoch FROM at)::float8 / 2592000, -1000)))::numeric, 6) AS score
		              FROM cdp.identifiers j JOIN cdp.anchor_interest y ON y.anchor_id = j.identifier_id
		              WHERE j.profile_id = offer_facts.profile_id GROUP BY y.category) z), '{}'));
	END IF;
	IF needed IS NULL OR 'trait' = ANY (needed) THEN
		-- scalar traits only, numbers within double precision: what rules compare
		f := f || jsonb_build_object('traits', coalesce((
			SELECT jsonb_object_agg(t.key, t.value)
			FROM cdp.profile_store s, jsonb_each(s.traits) t
			WHERE s.profile_id = offer_facts.profile_id
			  AND (jsonb_typeof(t.value) IN ('string', 'boolean')
			       OR jsonb_typeof(t.value) = 'number' AND abs(t.value::numeric) < 1e300)), '{}'));
	END IF;
	IF needed IS NULL OR needed && '{open_break,break_products}' THEN
		f := f || jsonb_build_object('open_breaks', coalesce((
		              SELECT jsonb_object_agg(b.funnel_id, b.products)
		              FROM (SELECT jb.funnel_id, coalesce(jsonb_agg(DISTINCT p.value) FILTER (WHERE p.value IS NOT NULL), '[]') AS products
		                    FROM cdp.journey_breaks jb
		                    LEFT JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(jb.context->'products') = 'array'
		                                                                THEN jb.context->'products' END) p ON true
		                    WHERE jb.profile_id = offer_facts.profile_id AND jb.status = 'open'
		                    GROUP BY jb.funnel_id) b), '{}'));
	END IF;
	IF needed IS NULL OR 'days_since_last_contact' = ANY (needed) THEN
		SELECT jsonb_build_object('days_since_last_contact', extract(epoch FROM at - max(m.last_at)) / 86400,
		                          'days_since_last_contact_by_channel', jsonb_object_agg(m.channel, extract(epoch FROM at - m.last_at) / 86400))
		INTO x
		FROM (SELECT t.channel, max(t.decided_at) AS last_at
		      FROM cdp.identifiers i JOIN cdp.contacts t ON t.identifier_id = i.identifier_id
		      WHERE i.profile_id = offer_facts.profile_id AND t.status = 'sent' AND t.decided_at <= at
		      GROUP BY t.channel) m;
		f := f || x;
	END IF;
	IF needed IS NULL OR 'consent' = ANY (needed) THEN
		f := f || jsonb_build_object('consent', (
			SELECT jsonb_object_agg(c.channel, c.marketing) FROM cdp.consent_flags(offer_facts.profile_id, at) c));
	END IF;
	RETURN jsonb_strip_nulls(f);
END
$$;
COMMENT ON FUNCTION cdp.offer_facts(bigint, timestamptz, text[]) IS 'The facts about a live profile that eligibility rules read (all, or the fact names needed): rfm_segment, clv, p_alive, orders, revenue, days_since_last_purchase, last_channel, events per type, interest per category at that time (30-day half-life), traits, open_breaks (funnel -> products), days_since_last_contact (overall and per channel), consent per channel (marketing)';

-- The fact names the active offers' rules use, and trait when a policy has
-- quiet hours (the person's time zone is a trait).
CREATE FUNCTION cdp.offer_fact_names() RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT coalesce(array_agg(DISTINCT n), '{}')
FROM (SELECT jsonb_path_query(o.eligibility, 'strict $.**.fact') #>> '{}' AS n FROM cdp.offers o WHERE o.active
      UNION ALL
      SELECT 'trait' FROM cdp.contact_policies p WHERE p.quiet_start IS NOT NULL) x
$$;
COMMENT ON FUNCTION cdp.offer_fact_names() IS 'Internal: the facts the active offers'' eligibility rules read, and trait when a contact policy has quiet hours';

-- The identifier that reaches a person on a channel (NULL: unreachable).
CREATE FUNCTION cdp.contact_point(profile_id bigint, channel text) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
RETURN (SELECT i.identifier_id
FROM cdp.identifiers i,
     (SELECT coalesce((SELECT p.contact_kinds FROM cdp.contact_policies p WHERE p.channel = contact_point.channel),
                      CASE channel WHEN 'email' THEN '{email}'::text[] WHEN 'sms' THEN '{phone}' WHEN 'call_center' THEN '{phone}'
                                   WHEN 'push' THEN '{device_id}' END) AS kinds) k
WHERE i.profile_id = contact_point.profile_id AND (k.kinds IS NULL OR i.kind = ANY (k.kinds))
ORDER BY array_position(k.kinds, i.kind), i.identifier_id
LIMIT 1);
END
$$;
COMMENT ON FUNCTION cdp.contact_point(bigint, text) IS 'The identifier through which a live profile is reached on a channel (the first of the channel''s contact_kinds it holds; any identifier when the channel names none), or NULL when it cannot be reached there';

-- When quiet hours (start to end, local time, possibly across midnight)
-- hold a time in a time zone: the end of those quiet hours, else NULL.
CREATE FUNCTION cdp.quiet_until(t timestamptz, time_zone text, quiet_start time, quiet_end time) RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	local_t time := (t AT TIME ZONE time_zone)::time;
	local_d date := (t AT TIME ZONE time_zone)::date;
BEGIN
	IF t IS NULL OR quiet_start IS NULL OR quiet_end IS NULL THEN
		RETURN NULL;
	END IF;
	IF (quiet_start < quiet_end AND local_t >= quiet_start AND local_t < quiet_end)
	   OR (quiet_start > quiet_end AND (local_t >= quiet_start OR local_t < quiet_end)) THEN
		RETURN ((local_d + CASE WHEN local_t >= quiet_end THEN 1 ELSE 0 END) + quiet_end) AT TIME ZONE time_zone;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.quiet_until(timestamptz, text, time, time) IS 'Internal: the end of the quiet hours (local start and end, possibly across midnight) that hold a time in a time zone, or NULL when they do not hold it';

-- Contact pressure on marketing for a person on a channel at a time: the
-- first rule that forbids a contact, and when every rule that forbids it
-- allows it again.  Counts the marketing contacts sent to every identifier
-- the person holds now.
CREATE FUNCTION cdp.contact_pressure(profile_id bigint, channel text, at timestamptz, time_zone text,
	OUT reason text, OUT next_allowed_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p record;
	h record;
	k integer;
	quiet_end timestamptz;
	until timestamptz;
	why text;
BEGIN
	FOR p IN SELECT * FROM cdp.contact_policies c WHERE c.channel IN (contact_pressure.channel, '*')
	         ORDER BY c.channel = '*' LOOP
		-- contacts after at count too (a campaign planned for later, a
		-- decision made for an earlier time): a window of per around at
		SELECT count(*) FILTER (WHERE t.decided_at > at - p.per AND t.decided_at < at + p.per) AS n_per,
		       min(t.decided_at) FILTER (WHERE t.decided_at > at - p.per AND t.decided_at < at + p.per) AS first_per,
		       max(t.decided_at) FILTER (WHERE t.decided_at > at - p.min_gap AND t.decided_at < at + p.min_gap) AS near_at,
		       count(*) FILTER (WHERE t.outcome IN ('ignored', 'complained') AND t.decided_at <= at AND t.decided_at > at - p.ignored_window) AS n_ignored,
		       min(t.decided_at) FILTER (WHERE t.outcome IN ('ignored', 'complained') AND t.decided_at <= at AND t.decided_at > at - p.ignored_window) AS first_ignored
		INTO h
		FROM cdp.identifiers i JOIN cdp.contacts t ON t.identifier_id = i.identifier_id
		WHERE i.profile_id = contact_pressure.profile_id AND t.status = 'sent' AND t.message_class = 'marketing'
		  AND (p.channel = '*' OR t.channel = p.channel)
		  AND t.decided_at > at - GREATEST(p.per, p.min_gap, p.ignored_window, interval '0')
		  AND t.decided_at < at + GREATEST(p.per, p.min_gap, interval '0');
		why := NULL;
		until := NULL;
		IF p.max_contacts IS NOT NULL AND h.n_per >= p.max_contacts THEN
			why := format('cap: %s marketing contacts%s within %s (at most %s)', h.n_per,
			              CASE WHEN p.channel = '*' THEN ' on all channels' ELSE ' on ' || p.channel END, p.per, p.max_contacts);
			until := h.first_per + p.per;
		END IF;
		IF p.min_gap IS NOT NULL AND h.near_at IS NOT NULL THEN
			why := coalesce(why, format('minimum gap: a marketing contact%s at %s, gap %s',
			                            CASE WHEN p.channel = '*' THEN '' ELSE ' on ' || p.channel END, h.near_at, p.min_gap));
			until := GREATEST(until, h.near_at + p.min_gap);
		END IF;
		IF p.max_ignored IS NOT NULL AND h.n_ignored >= p.max_ignored THEN
			why := coalesce(why, format('suppressed: %s contacts%s ignored within %s (at most %s)', h.n_ignored,
			                            CASE WHEN p.channel = '*' THEN '' ELSE ' on ' || p.channel END, p.ignored_window, p.max_ignored));
			until := GREATEST(until, h.first_ignored + p.ignored_window);
		END IF;
		quiet_end := cdp.quiet_until(at, time_zone, p.quiet_start, p.quiet_end);
		IF quiet_end IS NOT NULL THEN
			why := coalesce(why, format('quiet hours: %s to %s in %s%s', p.quiet_start, p.quiet_end, time_zone,
			                            CASE WHEN p.channel = '*' THEN '' ELSE ' on ' || p.channel END));
			until := GREATEST(until, quiet_end);
		END IF;
		IF why IS NOT NULL THEN
			reason := coalesce(reason, why);
			next_allowed_at := GREATEST(next_allowed_at, until);
		END IF;
	END LOOP;
	-- the time allowed again is never in quiet hours (twice: the end of
	-- one policy's may lie in the other's)
	FOR k IN 1..2 LOOP
		FOR p IN SELECT * FROM cdp.contact_policies c
		         WHERE c.channel IN (contact_pressure.channel, '*') AND c.quiet_start IS NOT NULL LOOP
			next_allowed_at := coalesce(cdp.quiet_until(next_allowed_at, time_zone, p.quiet_start, p.quiet_end), next_allowed_at);
		END LOOP;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdp.contact_pressure(bigint, text, timestamptz, text) IS 'Internal: the first contact-pressure rule (cap, minimum gap, ignored contacts, quiet hours in the time zone) of a channel''s policy or the global one that forbids marketing to a live profile at a time, and when all that forbid it allow it again; NULL when nothing forbids. Caps and gaps count the contacts on both sides of the time (within per or min_gap), so that decisions made for other times never add up past a cap';

CREATE FUNCTION cdp.known_time_zone(name text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'cdp_known_time_zone' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION cdp.known_time_zone(text) IS 'Whether PostgreSQL knows a time zone name (as AT TIME ZONE takes it)';

-- The time zone of a person: its timezone trait when PostgreSQL knows it,
-- else cdp.default_timezone.
CREATE FUNCTION cdp.person_time_zone(facts jsonb) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
RETURN CASE WHEN cdp.known_time_zone(facts->'traits'->>'timezone') THEN facts->'traits'->>'timezone'
            ELSE current_setting('cdp.default_timezone') END;
END
$$;
COMMENT ON FUNCTION cdp.person_time_zone(jsonb) IS 'Internal: the timezone trait of a facts document if it names a time zone PostgreSQL knows, else cdp.default_timezone';

-- Every offer (and variant) a channel could carry for a person at a time,
-- with what forbids it besides its rule, its posterior and its value.
CREATE FUNCTION cdp.offer_arms(profile_id bigint, channel text, at timestamptz, facts jsonb, only_offers text[],
	OUT offer_id text, OUT variant text, OUT fallback boolean, OUT eligibility jsonb, OUT blocked text,
	OUT next_allowed_at timestamptz, OUT alpha float8, OUT beta float8, OUT value float8, OUT cost float8,
	OUT message_class text, OUT holdout float8, OUT budget bigint, OUT payload jsonb, OUT identifier_id bigint)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	point bigint := cdp.contact_point(profile_id, channel);
	pressure record;
	revoked boolean;
	ok_marketing boolean;
	ok_transactional boolean;
	ok_mandatory boolean;
	seg text := coalesce(facts->>'rfm_segment', '');
	a0 float8 := current_setting('cdp.offer_prior_alpha')::float8;
	b0 float8 := current_setting('cdp.offer_prior_beta')::float8;
	chan_cost float8 := coalesce((SELECT p.contact_cost FROM cdp.contact_policies p WHERE p.channel = offer_arms.channel), 0);
BEGIN
	SELECT * INTO pressure FROM cdp.contact_pressure(profile_id, channel, at, cdp.person_time_zone(facts));
	SELECT c.marketing, c.transactional, c.mandatory, c.revoked
	INTO ok_marketing, ok_transactional, ok_mandatory, revoked
	FROM cdp.consent_flags(profile_id, at, offer_arms.channel) c;
	RETURN QUERY
	SELECT o.offer_id, v.variant, o.fallback, o.eligibility,
	       CASE WHEN point IS NULL THEN format('unreachable: no identifier reaches the person on %s', channel)
	            WHEN NOT CASE o.message_class WHEN 'marketing' THEN ok_marketing
	                                          WHEN 'transactional' THEN ok_transactional ELSE ok_mandatory END
	                 THEN CASE WHEN o.message_class = 'marketing' AND NOT revoked
	                           THEN format('consent: no opt-in for %s on %s (cdp.consent_required)', o.message_class, channel)
	                           ELSE format('consent: opted out of %s on %s', o.message_class, channel) END
	            WHEN o.message_class = 'marketing' AND pressure.reason IS NOT NULL THEN pressure.reason
	            WHEN o.max_per_profile IS NOT NULL AND coalesce(u.sent, 0) >= o.max_per_profile
	                 THEN format('offer cap: sent %s times%s (at most %s)', u.sent,
	                             coalesce(' within ' || o.cap_period::text, ''), o.max_per_profile)
	            WHEN o.budget IS NOT NULL AND coalesce(b.used, 0) >= o.budget
	                 THEN format('budget: all %s used', o.budget)
	       END,
	       CASE WHEN point IS NULL OR NOT CASE o.message_class WHEN 'marketing' THEN ok_marketing
	                                          WHEN 'transactional' THEN ok_transactional ELSE ok_mandatory END THEN NULL
	            WHEN o.message_class = 'marketing' AND pressure.reason IS NOT NULL THEN pressure.next_allowed_at
	            WHEN o.max_per_profile IS NOT NULL AND coalesce(u.sent, 0) >= o.max_per_profile AND o.cap_period IS NOT NULL
	                 THEN u.first_sent + o.cap_period END,
	       a0 + coalesce(st.successes, 0), b0 + GREATEST(coalesce(st.trials, 0) - coalesce(st.successes, 0), 0),
	       coalesce(v.value, o.value)::float8 * o.weight, chan_cost,
	       o.message_class, o.holdout, o.budget,
	       CASE WHEN v.payload IS NULL THEN o.payload ELSE coalesce(o.payload, '{}') || v.payload END, point
	FROM cdp.offers o
	LEFT JOIN cdp.offer_variants v ON v.offer_id = o.offer_id
	LEFT JOIN cdp.offer_usage b ON b.offer_id = o.offer_id
	LEFT JOIN (SELECT t.offer_id, count(*) AS sent, min(t.decided_at) AS first_sent
	           FROM cdp.identifiers i JOIN cdp.contacts t ON t.identifier_id = i.identifier_id
	           JOIN cdp.offers x ON x.offer_id = t.offer_id
	           WHERE i.profile_id = offer_arms.profile_id AND t.status = 'sent' AND x.max_per_profile IS NOT NULL
	             AND (x.cap_period IS NULL OR t.decided_at > at - x.cap_period AND t.decided_at < at + x.cap_period)
	           GROUP BY t.offer_id) u ON u.offer_id = o.offer_id
	LEFT JOIN (SELECT s.offer_id, s.variant, sum(s.trials) AS trials, sum(s.successes) AS successes
	           FROM cdp.offer_stats s WHERE s.segment = seg GROUP BY s.offer_id, s.variant) st
	       ON st.offer_id = o.offer_id AND st.variant = coalesce(v.variant, '')
	WHERE o.active AND (o.channels IS NULL OR channel = ANY (o.channels))
	  AND (only_offers IS NULL OR o.offer_id = ANY (only_offers))
	  AND (o.valid_from IS NULL OR o.valid_from <= at) AND (o.valid_until IS NULL OR o.valid_until > at)
	ORDER BY o.offer_id, v.variant;
END
$$;
COMMENT ON FUNCTION cdp.offer_arms(bigint, text, timestamptz, jsonb, text[]) IS 'Internal: the active offers (one row per variant; only those of only_offers unless it is NULL) a channel may carry at a time, with what forbids them for a live profile besides their rule (reach, consent, contact pressure, offer cap, budget), their Beta posterior for its segment, value x weight and the contact cost';

-- Ranks the arms of one channel (cdp.offer_arms with cdp.rank_offers).
CREATE FUNCTION cdp.offer_ranking(profile_id bigint, channel text, at timestamptz, facts jsonb, seed bigint, only_offers text[],
	OUT offer_id text, OUT variant text, OUT eligible boolean, OUT reason text, OUT rank integer,
	OUT score float8, OUT propensity float8, OUT value float8, OUT action_prob float8, OUT fallback boolean,
	OUT message_class text, OUT holdout float8, OUT budget bigint, OUT payload jsonb, OUT identifier_id bigint,
	OUT next_allowed_at timestamptz, OUT rule_holds boolean, OUT cost float8, OUT worth boolean)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
RETURN QUERY
WITH arms AS (SELECT row_number() OVER () AS n, a.* FROM cdp.offer_arms(profile_id, channel, at, facts, only_offers) a),
r AS (SELECT r.*
      FROM (SELECT array_agg(eligibility ORDER BY n) AS rules, array_agg(blocked ORDER BY n) AS blocked,
                   array_agg(fallback ORDER BY n) AS fallbacks, array_agg(alpha ORDER BY n) AS alphas,
                   array_agg(beta ORDER BY n) AS betas, array_agg(value ORDER BY n) AS vals,
                   array_agg(cost ORDER BY n) AS costs FROM arms) x,
           cdp.rank_offers(facts, seed, current_setting('cdp.propensity_draws')::integer,
                           x.rules, x.blocked, x.fallbacks, x.alphas, x.betas, x.vals, x.costs) r)
SELECT a.offer_id, a.variant, r.eligible, r.reason, r.rank, r.score, r.propensity, a.value, r.action_prob,
       a.fallback, a.message_class, a.holdout, a.budget, a.payload, a.identifier_id,
       CASE WHEN NOT r.eligible THEN a.next_allowed_at END, r.eligible OR a.blocked IS NOT NULL AND r.reason = a.blocked,
       a.cost, r.score > 0 OR a.cost = 0
FROM arms a JOIN r ON r.i = a.n
ORDER BY r.rank NULLS LAST, a.offer_id, a.variant;
END
$$;
COMMENT ON FUNCTION cdp.offer_ranking(bigint, text, timestamptz, jsonb, bigint, text[]) IS 'Internal: every arm (of only_offers, unless NULL) of a channel for a live profile, ranked by a Thompson draw (rank 1 is what the policy picks), with why the others may not be chosen, the contact cost, and whether the expected margin pays for it (worth: a positive score, or a free channel)';

-- The live profile of an id, or an error.
CREATE FUNCTION cdp.live_profile(profile_id bigint) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	live bigint;
BEGIN
	SELECT coalesce(p.merged_into, p.profile_id) INTO live FROM cdp.profiles p WHERE p.profile_id = live_profile.profile_id;
	IF live IS NULL THEN
		RAISE EXCEPTION 'profile % does not exist', profile_id
			USING ERRCODE = 'no_data_found', HINT = 'Find the profile with cdp.resolve(kind, value).';
	END IF;
	RETURN live;
END
$$;
COMMENT ON FUNCTION cdp.live_profile(bigint) IS 'Internal: the live profile of a profile id (a merged-away id leads to its survivor), or an error when it does not exist';

-- The seed of one decision: reproducible when cdp.offer_seed is set.
CREATE FUNCTION cdp.decision_seed(profile_id bigint, channel text, at timestamptz) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
RETURN CASE WHEN current_setting('cdp.offer_seed')::bigint >= 0
            THEN hashtextextended(concat_ws(':', profile_id, channel, extract(epoch FROM at)), current_setting('cdp.offer_seed')::bigint) END;
END
$$;
COMMENT ON FUNCTION cdp.decision_seed(bigint, text, timestamptz) IS 'Internal: the seed of a decision''s draws, from cdp.offer_seed, the profile, the channel and the time (NULL, random draws, when cdp.offer_seed is -1)';

CREATE FUNCTION cdp.channel_check(channel text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF channel IS NOT NULL AND NOT EXISTS (SELECT FROM cdp.channels c WHERE c.channel = channel_check.channel) THEN
		RAISE EXCEPTION 'unknown channel "%"', channel
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Channels are the keys of cdp.channels.';
	END IF;
END
$$;
COMMENT ON FUNCTION cdp.channel_check(text) IS 'Internal: an error unless the channel is NULL or a key of cdp.channels';

-- The channels a decision for a live profile considers: the one given, or
-- (NULL) those where an active offer may go and the person can be reached.
CREATE FUNCTION cdp.decision_channels(profile_id bigint, channel text) RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY
	SELECT k.channel FROM cdp.channels k
	WHERE k.channel = decision_channels.channel
	   OR decision_channels.channel IS NULL
	      AND EXISTS (SELECT FROM cdp.offers o WHERE o.active AND (o.channels IS NULL OR k.channel = ANY (o.channels)))
	      AND cdp.contact_point(decision_channels.profile_id, k.channel) IS NOT NULL
	ORDER BY k.channel;
END
$$;
COMMENT ON FUNCTION cdp.decision_channels(bigint, text) IS 'Internal: the channels a decision considers: the one given, or those where an active offer may go and the person can be reached';

CREATE TYPE cdp.offer_choice AS (offer_id text, score float8, propensity float8, value float8, reason text,
	variant text, channel text, payload jsonb);
COMMENT ON TYPE cdp.offer_choice IS 'An offer cdp.next_best_offers proposes: its score (propensity x value x weight - contact cost), the propensity drawn, value, why, variant, channel and payload';

CREATE FUNCTION cdp.next_best_offers(profile_id bigint, channel text, n integer DEFAULT 1, at timestamptz DEFAULT now())
RETURNS SETOF cdp.offer_choice
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	live bigint := cdp.live_profile(profile_id);
	facts jsonb;
BEGIN
	PERFORM cdp.channel_check(next_best_offers.channel);
	IF n IS NULL OR n < 1 THEN
		RAISE EXCEPTION 'n must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	facts := cdp.offer_facts(live, at, cdp.offer_fact_names());
	RETURN QUERY
	SELECT r.offer_id, r.score, r.propensity, r.value,
	       CASE WHEN r.fallback THEN 'fallback: no other offer eligible' ELSE 'eligible' END
	       || format(', propensity %s x value %s', round(r.propensity::numeric, 4), round(r.value::numeric, 2)),
	       r.variant, c.channel, r.payload
	FROM cdp.decision_channels(live, next_best_offers.channel) c(channel),
	     cdp.offer_ranking(live, c.channel, at, facts, cdp.decision_seed(live, c.channel, at), NULL) r
	WHERE r.eligible AND r.rank IS NOT NULL AND (next_best_offers.channel IS NOT NULL OR r.worth)
	ORDER BY r.score DESC, r.offer_id, r.variant
	LIMIT n;
END
$$;
COMMENT ON FUNCTION cdp.next_best_offers(bigint, text, integer, timestamptz) IS 'The n best offers for a person on a channel at a time, ranked by one Thompson draw of score = propensity x value x weight - contact cost, without recording anything; with channel NULL, across every channel where the expected margin pays for the contact';

CREATE FUNCTION cdp.explain_offers(profile_id bigint, channel text, at timestamptz DEFAULT now())
RETURNS TABLE (offer_id text, eligible boolean, reason text, variant text, rule_holds boolean, score float8,
               propensity float8, value float8, rank integer, next_allowed_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	live bigint := cdp.live_profile(profile_id);
BEGIN
	IF channel IS NULL THEN
		RAISE EXCEPTION 'explain_offers needs a channel' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM cdp.channel_check(explain_offers.channel);
	RETURN QUERY
	SELECT o.offer_id, coalesce(r.eligible, false),
	       CASE WHEN r.offer_id IS NOT NULL THEN coalesce(r.reason, 'eligible')
	            ELSE CASE WHEN NOT o.active THEN 'withdrawn (active is false)'
	                               WHEN o.channels IS NOT NULL AND NOT channel = ANY (o.channels)
	                                    THEN format('channel: not offered on %s (channels %s)', channel, o.channels)
	                               WHEN o.valid_from > at THEN format('validity: starts at %s', o.valid_from)
	                               ELSE format('validity: ended at %s', o.valid_until) END END,
	       r.variant, r.rule_holds, r.score, r.propensity, r.value, r.rank, r.next_allowed_at
	FROM cdp.offers o
	LEFT JOIN cdp.offer_ranking(live, channel, at, cdp.offer_facts(live, at, cdp.offer_fact_names()), cdp.decision_seed(live, channel, at), NULL) r
	       ON r.offer_id = o.offer_id
	ORDER BY r.rank NULLS LAST, o.offer_id, r.variant;
END
$$;
COMMENT ON FUNCTION cdp.explain_offers(bigint, text, timestamptz) IS 'Every offer for a person on a channel at a time: whether it may be chosen, and if not the exact rule condition, consent, contact-pressure rule, cap, budget, validity or channel that removed it (with when it is allowed again)';

CREATE TYPE cdp.decision AS (contact_id bigint, offer_id text, variant text, channel text, status text, reason text,
	score float8, propensity float8, value float8, payload jsonb, next_allowed_at timestamptz);
COMMENT ON TYPE cdp.decision IS 'What cdp.decide decided: the contact recorded, the offer (NULL when nothing may be sent), channel, status (sent, holdout, suppressed, no_offer), reason, score, propensity, value, payload to send, and for a suppression when contact is allowed again';

-- Counts trials and successes into a row of the offer's statistics that
-- no other transaction holds (SKIP LOCKED), or a new one: concurrent
-- decisions never wait for each other here, so no cycle of waits can go
-- through these rows.  Shards are the backend ids that found every row
-- taken; readers sum them.
CREATE FUNCTION cdp.learn(offer_id text, variant text, segment text, trials bigint, successes bigint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	row_id tid;
BEGIN
	LOOP
		SELECT s.ctid INTO row_id FROM cdp.offer_stats s
		WHERE s.offer_id = learn.offer_id AND s.variant = coalesce(learn.variant, '') AND s.segment = learn.segment
		LIMIT 1 FOR UPDATE SKIP LOCKED;
		IF FOUND THEN
			UPDATE cdp.offer_stats s SET trials = s.trials + learn.trials, successes = s.successes + learn.successes
			WHERE s.ctid = row_id;
			RETURN;
		END IF;
		INSERT INTO cdp.offer_stats (offer_id, variant, segment, shard, trials, successes)
		VALUES (learn.offer_id, coalesce(learn.variant, ''), learn.segment, pg_backend_pid(), learn.trials, learn.successes)
		ON CONFLICT DO NOTHING;
		IF FOUND THEN
			RETURN;
		END IF;
		-- this backend's own row exists but another transaction holds it
		-- (a backend id reused): take any row again
		PERFORM pg_sleep(0.001);
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdp.learn(text, text, text, bigint, bigint) IS 'Internal: adds trials and successes to an offer''s statistics for a segment, in a row no other transaction holds (or a new one), so that concurrent decisions never wait for each other there';

-- A decision reads the contacts committed before it under the person's
-- lock: READ COMMITTED (each statement sees them) or SERIALIZABLE (a
-- conflict aborts with 40001); REPEATABLE READ would read a snapshot taken
-- before the lock and could break a cap.
CREATE FUNCTION cdp.decision_isolation_check() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF current_setting('transaction_isolation') = 'repeatable read' THEN
		RAISE EXCEPTION 'cdp.decide and cdp.plan_campaign cannot run under REPEATABLE READ'
			USING ERRCODE = 'active_sql_transaction',
			      DETAIL = 'The transaction''s snapshot may predate another decision for the same person, whose contact it would not count against the caps.',
			      HINT = 'Decide under READ COMMITTED, or under SERIALIZABLE and retry on 40001.';
	END IF;
END
$$;
COMMENT ON FUNCTION cdp.decision_isolation_check() IS 'Internal: refuses a decision under REPEATABLE READ, whose snapshot could miss a concurrent decision''s contact';

-- One decision for a live profile, its lock held: the best offer over the
-- channel (or every channel), then the holdout draw, the budget, the
-- contact row and the learning's trial.
CREATE FUNCTION cdp.decide_locked(live bigint, channel text, at timestamptz, facts jsonb, campaign_id bigint DEFAULT NULL,
	only_offers text[] DEFAULT NULL)
RETURNS cdp.decision
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	best record;
	other record;
	block record;
	have_best boolean := false;
	have_block boolean := false;
	ch text;
	st text;
	why text;
	next_at timestamptz;
	u float8;
	tries integer := 0;
	cid bigint;
	seg text := coalesce(facts->>'rfm_segment', '');
BEGIN
	LOOP
		tries := tries + 1;
		have_best := false;
		have_block := false;
		FOR ch IN SELECT * FROM cdp.decision_channels(live, decide_locked.channel) LOOP
			-- the best of the channel, and the offers only pressure,
			-- consent, a cap or a budget forbids (why nothing, if so)
			FOR other IN SELECT r.*, ch AS chan, s.seed
			             FROM (SELECT cdp.decision_seed(live, ch, at) AS seed) s,
			                  cdp.offer_ranking(live, ch, at, facts, s.seed, only_offers) r
			             WHERE r.rank = 1 OR r.rule_holds AND NOT r.eligible LOOP
				IF other.rank IS NULL THEN
					IF NOT have_block THEN
						block := other;
						have_block := true;
					ELSIF other.next_allowed_at < block.next_allowed_at
					      OR other.next_allowed_at IS NOT NULL AND block.next_allowed_at IS NULL THEN
						block := other;	-- the earliest allowed again, else the first
					END IF;
					CONTINUE;
				END IF;
				CONTINUE WHEN decide_locked.channel IS NULL AND NOT other.worth;
				IF NOT have_best THEN
					best := other;
					have_best := true;
				ELSIF other.score > best.score THEN
					best := other;
				END IF;
			END LOOP;
		END LOOP;
		EXIT WHEN NOT have_best;
		u := CASE WHEN best.seed IS NULL THEN random()
		          ELSE ((hashtextextended('holdout', best.seed) & 2147483647)::float8 + 0.5) / 2147483648 END;
		IF u < best.holdout THEN
			st := 'holdout';
			EXIT;
		END IF;
		st := 'sent';
		EXIT WHEN best.budget IS NULL;
		UPDATE cdp.offer_usage b SET used = b.used + 1
		WHERE b.offer_id = best.offer_id AND b.used < best.budget;
		EXIT WHEN FOUND;
		-- another decision took the last unit: rank again (it is committed)
		IF tries >= 5 THEN
			have_best := false;
			EXIT;
		END IF;
	END LOOP;

	IF NOT have_best THEN
		-- why nothing: a rule-eligible offer that pressure, consent, a cap
		-- or a budget forbids (suppressed), else none eligible
		IF have_block THEN
			st := 'suppressed';
			why := block.reason;
			next_at := block.next_allowed_at;
			cid := block.identifier_id;
			ch := block.chan;
		ELSE
			st := 'no_offer';
			why := 'no eligible offer' || coalesce(' on ' || decide_locked.channel, '');
			ch := decide_locked.channel;
			cid := NULL;
			next_at := NULL;
		END IF;
		INSERT INTO cdp.contacts (profile_id, identifier_id, channel, decided_at, status, reason, segment, campaign_id)
		VALUES (live, coalesce(cid, cdp.contact_point(live, coalesce(ch, 'web')), (SELECT min(i.identifier_id) FROM cdp.identifiers i WHERE i.profile_id = live)),
		        coalesce(ch, '*'), at, st, why, seg, campaign_id)
		RETURNING contacts.contact_id INTO cid;
		RETURN ROW(cid, NULL::text, NULL::text, ch, st, why, NULL::float8, NULL::float8, NULL::float8, NULL::jsonb, next_at)::cdp.decision;
	END IF;

	why := CASE WHEN st = 'holdout' THEN format('holdout: chosen, not sent (control group of %s%%)', round(best.holdout::numeric * 100, 1))
	            WHEN best.fallback THEN 'fallback: no other offer eligible'
	            ELSE 'best score' END
	       || format(' (propensity %s x value %s - cost %s)', round(best.propensity::numeric, 4), round(best.value::numeric, 2), best.cost);
	INSERT INTO cdp.contacts (profile_id, identifier_id, offer_id, variant, channel, decided_at, message_class, status,
	                          reason, segment, score, propensity, action_prob, value, campaign_id)
	VALUES (live, best.identifier_id, best.offer_id, best.variant, best.chan, at, best.message_class, st, why, seg,
	        best.score, best.propensity,
	        best.action_prob * CASE WHEN st = 'holdout' THEN best.holdout ELSE 1 - best.holdout END,
	        best.value, campaign_id)
	RETURNING contacts.contact_id INTO cid;
	IF st = 'sent' THEN
		PERFORM cdp.learn(best.offer_id, best.variant, seg, 1, 0);
	END IF;
	RETURN ROW(cid, best.offer_id, best.variant, best.chan, st, why, best.score, best.propensity, best.value,
	           CASE WHEN st = 'sent' THEN best.payload END, NULL::timestamptz)::cdp.decision;
END
$$;
COMMENT ON FUNCTION cdp.decide_locked(bigint, text, timestamptz, jsonb, bigint, text[]) IS 'Internal: cdp.decide once the person''s lock is held (among only_offers, unless NULL: what a trigger may send)';

CREATE FUNCTION cdp.decide(profile_id bigint, channel text DEFAULT NULL, at timestamptz DEFAULT now())
RETURNS cdp.decision
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	live bigint := cdp.live_profile(profile_id);
	locked bigint;
BEGIN
	PERFORM cdp.channel_check(decide.channel);
	IF at IS NULL THEN
		RAISE EXCEPTION 'at must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM cdp.decision_isolation_check();
	-- the lock, then the live profile again: a merge may have moved it
	WHILE live IS DISTINCT FROM locked LOOP
		PERFORM cdp.lock_person(live);
		locked := live;
		live := cdp.live_profile(profile_id);
	END LOOP;
	RETURN cdp.decide_locked(live, decide.channel, at, cdp.offer_facts(live, at, cdp.offer_fact_names()));
END
$$;
COMMENT ON FUNCTION cdp.decide(bigint, text, timestamptz) IS 'Chooses the next best offer for a person on a channel (NULL: the channel with the best expected margin) at a time and records it in cdp.contacts, in one transaction under the person''s lock, so that concurrent decisions never break a cap or a budget; status sent, holdout (chosen, not sent), suppressed (reason and next_allowed_at say what forbids a contact) or no_offer';

CREATE FUNCTION cdp.record_outcome(contact_id bigint, outcome text, reward numeric DEFAULT NULL, at timestamptz DEFAULT now())
RETURNS cdp.contacts
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	c cdp.contacts;
	goal text := current_setting('cdp.offer_success');
	hit boolean;
BEGIN
	IF outcome IS NULL OR outcome NOT IN ('shown', 'opened', 'clicked', 'converted', 'ignored', 'complained') THEN
		RAISE EXCEPTION 'unknown outcome "%"', outcome
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'An outcome is shown, opened, clicked, converted, ignored or complained.';
	END IF;
	SELECT * INTO c FROM cdp.contacts t WHERE t.contact_id = record_outcome.contact_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'contact % does not exist', contact_id
			USING ERRCODE = 'no_data_found', HINT = 'Pass a contact_id returned by cdp.decide.';
	END IF;
	IF c.offer_id IS NULL THEN
		RAISE EXCEPTION 'contact % sent no offer (status %)', contact_id, c.status
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Outcomes are recorded for sent offers and holdouts.';
	END IF;
	hit := outcome = 'converted' OR (goal = 'clicked' AND outcome = 'clicked');
	IF hit AND NOT c.success AND c.status = 'sent' THEN
		-- counted once in the offer's learning
		PERFORM cdp.learn(c.offer_id, c.variant, c.segment, 0, 1);
	END IF;
	-- a conversion is final: a later shown, opened or complaint does not undo it
	UPDATE cdp.contacts t SET outcome = CASE WHEN t.outcome = 'converted' THEN t.outcome ELSE record_outcome.outcome END,
	       outcome_at = CASE WHEN t.outcome = 'converted' THEN t.outcome_at ELSE coalesce(at, now()) END,
	       reward = coalesce(record_outcome.reward, t.reward), success = t.success OR hit
	WHERE t.contact_id = c.contact_id
	RETURNING * INTO c;
	RETURN c;
END
$$;
COMMENT ON FUNCTION cdp.record_outcome(bigint, text, numeric, timestamptz) IS 'Records what a contact led to (shown, opened, clicked, converted, ignored, complained) and its reward; the first outcome that reaches cdp.offer_success teaches the offer''s posterior for the segment; ignored and complained contacts count toward suppression (max_ignored)';

-- ---------------------------------------------------------------------------
-- Measurement.
-- ---------------------------------------------------------------------------

-- The 95 % Wilson score interval of a rate (src/core/bandit.c).
CREATE FUNCTION cdp.rate_interval(successes bigint, trials bigint, OUT low float8, OUT high float8)
	AS 'MODULE_PATHNAME', 'cdp_rate_interval' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION cdp.rate_interval(bigint, bigint) IS 'The 95 % Wilson score interval of a rate of successes among trials (NULL bounds without trials)';

CREATE VIEW cdp.offer_performance AS
SELECT x.offer_id, x.channel, x.segment, x.decisions, x.conversions, r.r1 AS conversion_rate,
       w.low AS rate_low, w.high AS rate_high, x.holdouts, x.holdout_conversions, r.r0 AS holdout_rate,
       r.r1 - r.r0 AS uplift,
       r.r1 - r.r0 - 1.959964 * sqrt(r.r1 * (1 - r.r1) / x.decisions + r.r0 * (1 - r.r0) / x.holdouts) AS uplift_low,
       r.r1 - r.r0 + 1.959964 * sqrt(r.r1 * (1 - r.r1) / x.decisions + r.r0 * (1 - r.r0) / x.holdouts) AS uplift_high,
       x.reward
FROM (SELECT c.offer_id, c.channel, c.segment,
             count(*) FILTER (WHERE c.status = 'sent') AS decisions,
             count(*) FILTER (WHERE c.status = 'sent' AND c.outcome = 'converted') AS conversions,
             count(*) FILTER (WHERE c.status = 'holdout') AS holdouts,
             count(*) FILTER (WHERE c.status = 'holdout' AND c.outcome = 'converted') AS holdout_conversions,
             sum(c.reward) FILTER (WHERE c.status = 'sent') AS reward
      FROM cdp.contacts c
      WHERE c.offer_id IS NOT NULL
      GROUP BY c.offer_id, c.channel, c.segment) x
CROSS JOIN LATERAL (SELECT x.conversions::float8 / NULLIF(x.decisions, 0) AS r1,
                           x.holdout_conversions::float8 / NULLIF(x.holdouts, 0) AS r0) r
CROSS JOIN LATERAL cdp.rate_interval(x.conversions, x.decisions) w;
COMMENT ON VIEW cdp.offer_performance IS 'Per offer, channel and segment: offers sent, conversions, conversion rate with its 95 % Wilson interval, the holdout''s decisions and conversions, and the uplift against the holdout with a 95 % normal interval';
COMMENT ON COLUMN cdp.offer_performance.offer_id IS 'Offer';
COMMENT ON COLUMN cdp.offer_performance.channel IS 'Channel';
COMMENT ON COLUMN cdp.offer_performance.segment IS 'RFM segment at the decision (empty: unscored)';
COMMENT ON COLUMN cdp.offer_performance.decisions IS 'Offers sent';
COMMENT ON COLUMN cdp.offer_performance.conversions IS 'Of which converted';
COMMENT ON COLUMN cdp.offer_performance.conversion_rate IS 'conversions / decisions';
COMMENT ON COLUMN cdp.offer_performance.rate_low IS 'Its 95 % interval (Wilson), low end';
COMMENT ON COLUMN cdp.offer_performance.rate_high IS 'High end';
COMMENT ON COLUMN cdp.offer_performance.holdouts IS 'Decisions held out (sent nothing)';
COMMENT ON COLUMN cdp.offer_performance.holdout_conversions IS 'Of which converted anyway (outcomes recorded on holdout contacts)';
COMMENT ON COLUMN cdp.offer_performance.holdout_rate IS 'holdout_conversions / holdouts';
COMMENT ON COLUMN cdp.offer_performance.uplift IS 'conversion_rate - holdout_rate: what sending the offer adds';
COMMENT ON COLUMN cdp.offer_performance.uplift_low IS 'Its 95 % interval (normal approximation), low end';
COMMENT ON COLUMN cdp.offer_performance.uplift_high IS 'High end';
COMMENT ON COLUMN cdp.offer_performance.reward IS 'Sum of the rewards recorded for offers sent';

CREATE VIEW cdp.contact_log AS
SELECT c.contact_id, c.decided_at, c.offer_id || coalesce(':' || c.variant, '') AS arm, c.segment AS context,
       CASE WHEN c.success THEN 1 ELSE 0 END::float8 AS reward, c.action_prob AS propensity
FROM cdp.contacts c
WHERE c.status = 'sent' AND c.action_prob > 0;
COMMENT ON VIEW cdp.contact_log IS 'The logged decisions as cdp.evaluate_policy reads them: arm (offer:variant), context (segment), reward (1 on success) and the logging policy''s probability of the arm';
COMMENT ON COLUMN cdp.contact_log.contact_id IS 'Contact';
COMMENT ON COLUMN cdp.contact_log.decided_at IS 'Its time (the log''s order)';
COMMENT ON COLUMN cdp.contact_log.arm IS 'Offer, and variant after a colon';
COMMENT ON COLUMN cdp.contact_log.context IS 'Segment';
COMMENT ON COLUMN cdp.contact_log.reward IS '1 when the contact reached cdp.offer_success, else 0';
COMMENT ON COLUMN cdp.contact_log.propensity IS 'Probability that the logging policy chose the arm (cdp.contacts.action_prob)';

CREATE FUNCTION cdp.evaluate_policy(logged regclass DEFAULT 'cdp.contact_log', prior_alpha float8 DEFAULT 1,
	prior_beta float8 DEFAULT 1, draws integer DEFAULT 200, seed bigint DEFAULT 1)
RETURNS TABLE (method text, value float8, low float8, high float8, used bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	arms integer[];
	ctxs integer[];
	rewards float8[];
	props float8[];
	n bigint;
	s float8;
BEGIN
	IF draws IS NULL OR draws < 1 OR draws > 100000 THEN
		RAISE EXCEPTION 'draws must be between 1 and 100000' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT (prior_alpha > 0 AND prior_beta > 0) THEN
		RAISE EXCEPTION 'the prior must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	BEGIN
		EXECUTE format($q$
			SELECT array_agg(dense_rank ORDER BY decided_at, ord), array_agg(ctx ORDER BY decided_at, ord),
			       array_agg(reward ORDER BY decided_at, ord), array_agg(propensity ORDER BY decided_at, ord),
			       count(*), sum(reward)
			FROM (SELECT l.decided_at, row_number() OVER () AS ord, l.reward::float8 AS reward, l.propensity::float8 AS propensity,
			             (dense_rank() OVER (ORDER BY l.arm::text) - 1)::integer AS dense_rank,
			             (dense_rank() OVER (ORDER BY coalesce(l.context::text, '')) - 1)::integer AS ctx
			      FROM %s l) x$q$, logged)
		INTO arms, ctxs, rewards, props, n, s;
	EXCEPTION WHEN undefined_column THEN
		RAISE EXCEPTION 'evaluate_policy: % lacks a column of the log: %', logged, SQLERRM
			USING ERRCODE = 'undefined_column',
			      HINT = 'The log needs decided_at, arm, context, reward (0 to 1) and propensity (the logging policy''s probability of the arm), as cdp.contact_log has.';
	END;
	IF n IS NULL OR n = 0 THEN
		RAISE EXCEPTION 'evaluate_policy: % holds no logged decision', logged USING ERRCODE = 'no_data_found';
	END IF;
	IF EXISTS (SELECT FROM unnest(props) p WHERE p IS NULL OR NOT (p > 0 AND p <= 1))
	   OR EXISTS (SELECT FROM unnest(rewards) r WHERE r IS NULL OR r < 0 OR r > 1) THEN
		RAISE EXCEPTION 'evaluate_policy: every propensity must be in (0, 1] and every reward in [0, 1]'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN QUERY SELECT 'logged'::text, s / n, (cdp.rate_interval(round(s)::bigint, n)).low,
	                    (cdp.rate_interval(round(s)::bigint, n)).high, n;
	RETURN QUERY SELECT e.method, e.value, e.low, e.high, e.used
	             FROM cdp.evaluate_thompson(arms, ctxs, rewards, props, prior_alpha, prior_beta, draws, seed) e;
END
$$;
COMMENT ON FUNCTION cdp.evaluate_policy(regclass, float8, float8, integer, bigint) IS 'Estimates offline, on logged decisions in time order (decided_at, arm, context, reward, propensity; cdp.contact_log by default), the reward per decision of Bernoulli Thompson sampling per arm and context with the given prior: replay (unbiased on uniform random logs), inverse propensity weighting and its self-normalized form, each with a 95 % interval, beside the logged policy''s own rate; touches no cap, budget or learning';

-- ---------------------------------------------------------------------------
-- Campaigns.
-- ---------------------------------------------------------------------------

CREATE FUNCTION cdp.campaign_audience(audience jsonb, at timestamptz DEFAULT now()) RETURNS SETOF bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	names text[];
BEGIN
	IF jsonb_typeof(audience) IS DISTINCT FROM 'object' OR (SELECT count(*) FROM jsonb_object_keys(audience)) <> 1 THEN
		RAISE EXCEPTION 'audience: one of {"all": true}, {"segment": "..."}, {"segments": [...]}, {"profiles": [...]} or {"rule": ...} expected'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	k := (SELECT jsonb_object_keys(audience));
	IF k = 'all' AND audience->'all' = 'true' THEN
		RETURN QUERY SELECT p.profile_id FROM cdp.profiles p WHERE p.merged_into IS NULL ORDER BY 1;
	ELSIF k = 'segment' AND jsonb_typeof(audience->'segment') = 'string' THEN
		RETURN QUERY SELECT r.profile_id FROM cdp.rfm r JOIN cdp.profiles p USING (profile_id)
		             WHERE r.segment = audience->>'segment' AND p.merged_into IS NULL ORDER BY 1;
	ELSIF k = 'segments' AND jsonb_typeof(audience->'segments') = 'array' THEN
		RETURN QUERY SELECT r.profile_id FROM cdp.rfm r JOIN cdp.profiles p USING (profile_id)
		             WHERE r.segment IN (SELECT jsonb_array_elements_text(audience->'segments')) AND p.merged_into IS NULL ORDER BY 1;
	ELSIF k = 'profiles' AND jsonb_typeof(audience->'profiles') = 'array' THEN
		IF EXISTS (SELECT FROM jsonb_array_elements(audience->'profiles') e WHERE jsonb_typeof(e) <> 'number') THEN
			RAISE EXCEPTION 'audience.profiles: profile ids expected' USING ERRCODE = 'invalid_parameter_value';
		END IF;
		RETURN QUERY SELECT DISTINCT coalesce(p.merged_into, p.profile_id)
		             FROM jsonb_array_elements_text(audience->'profiles') e JOIN cdp.profiles p ON p.profile_id = e::bigint ORDER BY 1;
	ELSIF k = 'rule' THEN
		PERFORM cdp.check_eligibility(audience->'rule');
		names := ARRAY(SELECT DISTINCT x #>> '{}' FROM jsonb_path_query(audience->'rule', 'strict $.**.fact') x);
		RETURN QUERY SELECT p.profile_id FROM cdp.profiles p
		             WHERE p.merged_into IS NULL
		               AND (cdp.eligible(audience->'rule', cdp.offer_facts(p.profile_id, at, names))).eligible
		             ORDER BY 1;
	ELSE
		RAISE EXCEPTION 'audience: unknown or malformed "%"', k
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'One of {"all": true}, {"segment": "..."}, {"segments": [...]}, {"profiles": [...]} or {"rule": ...}.';
	END IF;
END
$$;
COMMENT ON FUNCTION cdp.campaign_audience(jsonb, timestamptz) IS 'The live profiles of a campaign audience: {"all": true}, {"segment": s}, {"segments": [...]}, {"profiles": [ids]} or {"rule": an eligibility rule, on the facts at that time}';

CREATE FUNCTION cdp.plan_campaign(channel text, audience jsonb, at timestamptz DEFAULT now())
RETURNS TABLE (campaign_id bigint, profiles bigint, chosen bigint, holdouts bigint, suppressed jsonb, without_offer bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	cid bigint;
	p bigint;
	d record;
	n bigint := 0;
	n_chosen bigint := 0;
	n_hold bigint := 0;
	n_none bigint := 0;
	supp jsonb := '{}';
	k text;
	needed text[] := cdp.offer_fact_names();
BEGIN
	PERFORM cdp.channel_check(plan_campaign.channel);
	INSERT INTO cdp.campaigns (channel, audience, planned_at) VALUES (plan_campaign.channel, coalesce(audience, 'null'), at)
	RETURNING campaigns.campaign_id INTO cid;
	PERFORM cdp.decision_isolation_check();
	CREATE TEMP TABLE cdp_audience ON COMMIT DROP AS
	SELECT a.p AS profile_id, cdp.person_stripe(a.p) AS stripe FROM cdp.campaign_audience(audience, at) a(p);
	-- every stripe of the audience locked first, in order (at most 1,024
	-- locks), before any budget row: the order cdp.decide takes them in,
	-- so that a campaign and decisions never wait for each other in a cycle
	FOR p IN SELECT DISTINCT ON (a.stripe) a.profile_id FROM cdp_audience a ORDER BY a.stripe LOOP
		PERFORM cdp.lock_person(p);
	END LOOP;
	FOR p IN SELECT a.profile_id FROM cdp_audience a ORDER BY a.stripe, a.profile_id LOOP
		SELECT * INTO d FROM cdp.decide_locked(p, plan_campaign.channel, at, cdp.offer_facts(p, at, needed), cid);
		n := n + 1;
		IF d.status = 'sent' THEN
			n_chosen := n_chosen + 1;
		ELSIF d.status = 'holdout' THEN
			n_hold := n_hold + 1;
		ELSIF d.status = 'suppressed' THEN
			k := split_part(d.reason, ':', 1);
			supp := jsonb_set(supp, ARRAY[k], to_jsonb(coalesce((supp->>k)::bigint, 0) + 1));
		ELSE
			n_none := n_none + 1;
		END IF;
	END LOOP;
	UPDATE cdp.campaigns c SET finished_at = clock_timestamp(), profiles = n, chosen = n_chosen, holdouts = n_hold,
	       suppressed = supp, without_offer = n_none
	WHERE c.campaign_id = cid;
	DROP TABLE cdp_audience;
	RETURN QUERY SELECT cid, n, n_chosen, n_hold, supp, n_none;
END
$$;
COMMENT ON FUNCTION cdp.plan_campaign(text, jsonb, timestamptz) IS 'Decides for a whole audience in one transaction, as cdp.decide does for each person (caps, budgets, consent, quiet hours, holdouts; contacts recorded with the campaign id): reports how many people were chosen, held out, suppressed by reason (cap, minimum gap, quiet hours, consent, ...) or left without an offer';


-- ---------------------------------------------------------------------------
-- Triggers and the outbox: acting on a moment within a second.
--
-- A trigger fires on a moment of one person: an event of a type (with
-- conditions on its properties and the person's facts), a journey break
-- left open for a delay (a cart left for an hour), or a profile fact that
-- crosses a threshold (p_alive falling below 0.3 for a valuable customer).
-- The background worker runs cdp.run_triggers after each unit of the
-- profile store and journeys: it takes the moments of the stitched batches
-- after its progress marker, waits out each trigger's delay (an exit during
-- the delay takes effect at once), then decides with the offers' decision
-- (caps, quiet hours, consent, holdouts) and writes what is to be sent to
-- cdp.outbox, with NOTIFY cdp_outbox.  The moments, the decisions, the
-- contacts, the outbox rows and the progress marker commit together, and a
-- moment fires a trigger at most once (UNIQUE (trigger_id, moment)), so a
-- crash or a restart never sends twice nor skips anything: batch ids
-- become visible in order (cdp.stitch_batches).
--
-- Tables this module alone writes: cdp.triggers (through the users),
-- cdp.trigger_fires, cdp.trigger_states, cdp.trigger_scans,
-- cdp.trigger_progress and cdp.outbox.
-- ---------------------------------------------------------------------------

CREATE TABLE cdp.triggers (
	trigger_id     text        PRIMARY KEY,
	on_event       text,
	on_break       text,
	on_fact        text,
	delay          interval    NOT NULL DEFAULT '0',
	channel        text,
	offers         text[],
	condition      jsonb,
	exit_condition jsonb,
	reentry        text,
	reentry_period interval,
	max_age        interval    NOT NULL DEFAULT '1 day',
	enabled        boolean     NOT NULL DEFAULT true,
	description    text        NOT NULL DEFAULT '',
	created_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdp.triggers IS 'Triggers: what moment of a person (an event, a journey break left open for a delay, a fact crossing a threshold) makes the background worker decide an offer for the person and write it to cdp.outbox; checked when written (README "Triggers")';
COMMENT ON COLUMN cdp.triggers.trigger_id IS 'Trigger key (lower case, as cart_reminder)';
COMMENT ON COLUMN cdp.triggers.on_event IS 'Fires on each event of this type (cdp.event_types) whose condition holds';
COMMENT ON COLUMN cdp.triggers.on_break IS 'Fires on each break of this funnel (cdp.funnels) still open delay after it broke';
COMMENT ON COLUMN cdp.triggers.on_fact IS 'Fires when the condition, on this fact, starts to hold for a person (a crossing: it did not hold before); checked for the people each new batch touches and for everyone after each cdp.refresh_scores';
COMMENT ON COLUMN cdp.triggers.delay IS 'Wait between the moment and the decision (a fixed duration); the moment is dropped if it ends meanwhile (the break completes, exit_condition holds, the trigger is disabled)';
COMMENT ON COLUMN cdp.triggers.channel IS 'Channel of the message (cdp.channels), or NULL for the person''s best channel (the one with the best expected margin)';
COMMENT ON COLUMN cdp.triggers.offers IS 'The offers the trigger may send (cdp.offers), or NULL for any eligible one';
COMMENT ON COLUMN cdp.triggers.condition IS 'A rule in the offers'' language (cdp.check_eligibility) that must hold at the moment; fact event[key] reads the event''s properties (and type, channel, amount) or the break''s context (products, cart_value, channel, last_page); required for on_fact';
COMMENT ON COLUMN cdp.triggers.exit_condition IS 'A rule that, once it holds during the delay, drops the moment at once';
COMMENT ON COLUMN cdp.triggers.reentry IS 'Whether a person fires again on a later moment: once_per_break (break triggers: each break once; their default), every_time (each event or crossing; the default of the others), once_per_period (not within reentry_period of the last firing), once (never again)';
COMMENT ON COLUMN cdp.triggers.reentry_period IS 'For once_per_period: the period';
COMMENT ON COLUMN cdp.triggers.max_age IS 'Moments older than this when the worker sees them are not acted on (a backfill of old events sends nothing)';
COMMENT ON COLUMN cdp.triggers.enabled IS 'Whether it fires; disabling it drops its waiting moments';
COMMENT ON COLUMN cdp.triggers.description IS 'What it is for';
COMMENT ON COLUMN cdp.triggers.created_at IS 'When it was created';
SELECT pg_catalog.pg_extension_config_dump('cdp.triggers', '');

-- The facts a trigger's rules may test (the offers' facts, and event).
CREATE FUNCTION cdp.trigger_fact_names(rule jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY(SELECT DISTINCT x #>> '{}' FROM jsonb_path_query(coalesce(rule, '{}'), 'strict $.**.fact') x ORDER BY 1) $$;
COMMENT ON FUNCTION cdp.trigger_fact_names(jsonb) IS 'Internal: the facts a rule tests';

CREATE FUNCTION cdp.triggers_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bad text;
BEGIN
	IF NEW.trigger_id IS NULL OR NEW.trigger_id !~ '^[a-z][a-z0-9_]{0,62}$' THEN
		RAISE EXCEPTION 'invalid trigger id "%"', NEW.trigger_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A trigger id is a lower-case word of up to 63 letters, digits and underscores, such as cart_reminder.';
	END IF;
	IF num_nonnulls(NEW.on_event, NEW.on_break, NEW.on_fact) <> 1 THEN
		RAISE EXCEPTION 'trigger "%" must fire on exactly one of on_event, on_break and on_fact', NEW.trigger_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'on_event names an event type, on_break a funnel, on_fact a fact whose condition is a threshold.';
	END IF;
	IF NEW.on_event IS NOT NULL AND NOT EXISTS (SELECT FROM cdp.event_types t WHERE t.type = NEW.on_event) THEN
		RAISE EXCEPTION 'trigger "%": unknown event type "%"', NEW.trigger_id, NEW.on_event
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Event types are the keys of cdp.event_types.';
	END IF;
	IF NEW.on_break IS NOT NULL AND NOT EXISTS (SELECT FROM cdp.funnels f WHERE f.funnel_id = NEW.on_break) THEN
		RAISE EXCEPTION 'trigger "%": unknown funnel "%"', NEW.trigger_id, NEW.on_break
			USING ERRCODE = 'invalid_parameter_value', HINT = 'on_break names a funnel of cdp.funnels, such as cart.';
	END IF;
	IF NEW.on_fact IS NOT NULL AND (NEW.condition IS NULL OR NOT NEW.on_fact = ANY (cdp.trigger_fact_names(NEW.condition))) THEN
		RAISE EXCEPTION 'trigger "%": condition must test fact "%"', NEW.trigger_id, NEW.on_fact
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A fact trigger fires when its condition starts to hold, e.g. {"all": [{"fact": "p_alive", "lt": 0.3}, {"fact": "clv", "gte": 500}]}.';
	END IF;
	IF NEW.on_fact IS NOT NULL AND 'event' = ANY (cdp.trigger_fact_names(NEW.condition) || cdp.trigger_fact_names(NEW.exit_condition)) THEN
		RAISE EXCEPTION 'trigger "%": fact "event" has no value for a fact trigger', NEW.trigger_id
			USING ERRCODE = 'invalid_parameter_value', HINT = 'event[key] reads the event of an on_event trigger or the break of an on_break trigger.';
	END IF;
	PERFORM cdp.check_eligibility(NEW.condition);
	PERFORM cdp.check_eligibility(NEW.exit_condition);
	PERFORM cdp.channel_check(NEW.channel);
	SELECT o INTO bad FROM unnest(NEW.offers) o WHERE NOT EXISTS (SELECT FROM cdp.offers x WHERE x.offer_id = o) LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'trigger "%": unknown offer "%"', NEW.trigger_id, bad
			USING ERRCODE = 'invalid_parameter_value', HINT = 'offers lists keys of cdp.offers, or is NULL for any eligible offer.';
	END IF;
	IF NEW.delay < interval '0' OR date_part('month', NEW.delay) <> 0 OR date_part('year', NEW.delay) <> 0 THEN
		RAISE EXCEPTION 'trigger "%": invalid delay %', NEW.trigger_id, NEW.delay
			USING ERRCODE = 'invalid_parameter_value', HINT = 'A delay is a fixed duration of zero or more, such as ''1 hour'' or ''2 days'' (no months).';
	END IF;
	IF NEW.max_age <= interval '0' OR NEW.max_age < NEW.delay THEN
		RAISE EXCEPTION 'trigger "%": max_age % must be positive and at least the delay', NEW.trigger_id, NEW.max_age
			USING ERRCODE = 'invalid_parameter_value', HINT = 'max_age bounds how old a moment may be when it is seen, such as ''1 day''.';
	END IF;
	NEW.reentry := coalesce(NEW.reentry, CASE WHEN NEW.on_break IS NOT NULL THEN 'once_per_break' ELSE 'every_time' END);
	IF NEW.reentry NOT IN ('once_per_break', 'every_time', 'once_per_period', 'once')
	   OR (NEW.reentry = 'once_per_break') <> (NEW.on_break IS NOT NULL AND NEW.reentry IN ('once_per_break', 'every_time')) THEN
		RAISE EXCEPTION 'trigger "%": invalid reentry "%"', NEW.trigger_id, NEW.reentry
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'reentry is once_per_break (break triggers), every_time (event and fact triggers), once_per_period (with reentry_period) or once.';
	END IF;
	IF (NEW.reentry = 'once_per_period') <> (NEW.reentry_period IS NOT NULL) OR NEW.reentry_period <= interval '0' THEN
		RAISE EXCEPTION 'trigger "%": reentry_period % does not go with reentry %', NEW.trigger_id, coalesce(NEW.reentry_period::text, 'NULL'), NEW.reentry
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Set a positive reentry_period with reentry once_per_period, and only then.';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION cdp.triggers_check() IS 'Internal: checks a trigger when it is written (what it fires on, its rules, channel, offers, delay, re-entry) and fills its default re-entry';
CREATE TRIGGER triggers_check BEFORE INSERT OR UPDATE ON cdp.triggers
	FOR EACH ROW EXECUTE FUNCTION cdp.triggers_check();

-- A trigger disabled or deleted drops its waiting moments at once; a fact
-- trigger whose fact or condition changes starts again from a baseline.
CREATE FUNCTION cdp.triggers_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'DELETE' OR NOT NEW.enabled THEN
		UPDATE cdp.trigger_fires f SET status = 'exited', fired_at = now(),
		       reason = CASE TG_OP WHEN 'DELETE' THEN 'trigger deleted' ELSE 'trigger disabled' END
		WHERE f.trigger_id = OLD.trigger_id AND f.status = 'waiting';
	END IF;
	IF TG_OP = 'DELETE' OR NEW.on_fact IS DISTINCT FROM OLD.on_fact OR NEW.condition IS DISTINCT FROM OLD.condition
	   OR NEW.enabled IS DISTINCT FROM OLD.enabled THEN
		DELETE FROM cdp.trigger_states s WHERE s.trigger_id = OLD.trigger_id;
		DELETE FROM cdp.trigger_scans s WHERE s.trigger_id = OLD.trigger_id;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.triggers_changed() IS 'Internal: when a trigger is disabled or deleted, drops its waiting moments; when a fact trigger''s fact, condition or enabled state changes, forgets who met it, so that it starts from a new baseline';
CREATE TRIGGER triggers_changed AFTER UPDATE OR DELETE ON cdp.triggers
	FOR EACH ROW EXECUTE FUNCTION cdp.triggers_changed();

CREATE SEQUENCE cdp.trigger_fires_fire_id_seq;
CREATE TABLE cdp.trigger_fires (
	fire_id     bigint      PRIMARY KEY DEFAULT nextval('cdp.trigger_fires_fire_id_seq'),
	trigger_id  text        NOT NULL,
	profile_id  bigint      NOT NULL,
	moment      text        NOT NULL,
	moment_at   timestamptz NOT NULL,
	seen_at     timestamptz NOT NULL DEFAULT now(),
	due_at      timestamptz NOT NULL,
	status      text        NOT NULL CHECK (status IN ('waiting', 'sent', 'holdout', 'suppressed', 'no_offer', 'exited', 'skipped')),
	reason      text,
	fired_at    timestamptz,
	contact_id  bigint,
	message_id  bigint,
	break_event bigint,
	context     jsonb       NOT NULL DEFAULT '{}',
	converted_at timestamptz,
	UNIQUE (trigger_id, moment)
);
ALTER SEQUENCE cdp.trigger_fires_fire_id_seq OWNED BY cdp.trigger_fires.fire_id;
COMMENT ON SEQUENCE cdp.trigger_fires_fire_id_seq IS 'Firing ids';
CREATE INDEX ON cdp.trigger_fires (due_at) WHERE status = 'waiting';
CREATE INDEX ON cdp.trigger_fires (profile_id, trigger_id);
COMMENT ON TABLE cdp.trigger_fires IS 'Every moment a trigger acted on (one row per trigger and moment: never twice): waiting out its delay, then what the decision was, or why it was dropped';
COMMENT ON COLUMN cdp.trigger_fires.fire_id IS 'Firing id';
COMMENT ON COLUMN cdp.trigger_fires.trigger_id IS 'Trigger (cdp.triggers)';
COMMENT ON COLUMN cdp.trigger_fires.profile_id IS 'Live profile when the moment was seen';
COMMENT ON COLUMN cdp.trigger_fires.moment IS 'The moment: event:<event_id>, break:<first event of the journey>, or fact:<profile>:<time it started to hold>';
COMMENT ON COLUMN cdp.trigger_fires.moment_at IS 'When it happened: the event''s occurred_at, the break''s broken_at, the time the condition was found to hold';
COMMENT ON COLUMN cdp.trigger_fires.seen_at IS 'When the worker saw it';
COMMENT ON COLUMN cdp.trigger_fires.due_at IS 'moment_at + the delay: when the decision is due';
COMMENT ON COLUMN cdp.trigger_fires.status IS 'waiting (its delay runs), sent (an offer is in cdp.outbox), holdout (chosen, not sent: the control group), suppressed (contact pressure, consent), no_offer, exited (dropped during the delay: reason), skipped (re-entry forbade it: reason)';
COMMENT ON COLUMN cdp.trigger_fires.reason IS 'Why: the decision''s reason, or what dropped or skipped it';
COMMENT ON COLUMN cdp.trigger_fires.fired_at IS 'When it was decided or dropped';
COMMENT ON COLUMN cdp.trigger_fires.contact_id IS 'The decision (cdp.contacts)';
COMMENT ON COLUMN cdp.trigger_fires.message_id IS 'The message (cdp.outbox) when sent';
COMMENT ON COLUMN cdp.trigger_fires.break_event IS 'For a break trigger: the first event of the broken journey (with the funnel and the profile it identifies the break in cdp.journey_breaks)';
COMMENT ON COLUMN cdp.trigger_fires.context IS 'What the message is about: the event (type, properties, amount) or the break''s context (products, cart_value, ...) or the fact''s value';
COMMENT ON COLUMN cdp.trigger_fires.converted_at IS 'For a break trigger sent or held out: when the journey completed afterwards (recorded as a converted outcome of the contact, with the order''s amount as reward)';
SELECT pg_catalog.pg_extension_config_dump('cdp.trigger_fires', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.trigger_fires_fire_id_seq', '');

CREATE TABLE cdp.trigger_states (
	trigger_id text        NOT NULL,
	profile_id bigint      NOT NULL,
	since      timestamptz NOT NULL,
	PRIMARY KEY (trigger_id, profile_id)
);
COMMENT ON TABLE cdp.trigger_states IS 'The people for whom a fact trigger''s condition holds (so that a crossing is found: it holds now and had not)';
COMMENT ON COLUMN cdp.trigger_states.trigger_id IS 'Fact trigger';
COMMENT ON COLUMN cdp.trigger_states.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.trigger_states.since IS 'When the condition was found to hold';
SELECT pg_catalog.pg_extension_config_dump('cdp.trigger_states', '');

CREATE TABLE cdp.trigger_scans (
	trigger_id   text    PRIMARY KEY,
	model_id     bigint  NOT NULL,
	next_profile bigint,
	baseline     boolean NOT NULL
);
COMMENT ON TABLE cdp.trigger_scans IS 'The pass of a fact trigger over every profile after a scores refresh (or its creation: the baseline, which records who already meets the condition without firing)';
COMMENT ON COLUMN cdp.trigger_scans.trigger_id IS 'Fact trigger';
COMMENT ON COLUMN cdp.trigger_scans.model_id IS 'The cdp.clv_models model the pass is for';
COMMENT ON COLUMN cdp.trigger_scans.next_profile IS 'Profiles above this id remain (NULL: the pass is done)';
COMMENT ON COLUMN cdp.trigger_scans.baseline IS 'The first pass: states recorded, nothing fired';
SELECT pg_catalog.pg_extension_config_dump('cdp.trigger_scans', '');

CREATE TABLE cdp.trigger_progress (
	singleton     boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
	last_batch_id bigint      NOT NULL,
	breaks_seen   timestamptz NOT NULL,
	journeys_batch bigint     NOT NULL,
	ran_at        timestamptz NOT NULL
);
COMMENT ON TABLE cdp.trigger_progress IS 'How far cdp.run_triggers is (one row, written in the same transaction as the firings)';
COMMENT ON COLUMN cdp.trigger_progress.singleton IS 'Always true: there is one row';
COMMENT ON COLUMN cdp.trigger_progress.last_batch_id IS 'Last cdp.stitch_batches batch whose events were taken (at most the profile store''s: conditions read its facts)';
COMMENT ON COLUMN cdp.trigger_progress.breaks_seen IS 'Breaks detected from about then on are looked at for break triggers';
COMMENT ON COLUMN cdp.trigger_progress.journeys_batch IS 'Last batch the journeys had taken at the last run: the people of later batches the journeys took are checked for completed breaks';
COMMENT ON COLUMN cdp.trigger_progress.ran_at IS 'When the last run that took or did anything committed';
SELECT pg_catalog.pg_extension_config_dump('cdp.trigger_progress', '');

-- new breaks are found by when they were detected, a moment's break by its
-- journey (whatever profile holds it: a merge moves it at the next detection)
CREATE INDEX journey_breaks_detected_at_idx ON cdp.journey_breaks (detected_at);
CREATE INDEX journey_breaks_journey_idx ON cdp.journey_breaks (funnel_id, first_event_id);

CREATE SEQUENCE cdp.outbox_message_id_seq;
CREATE TABLE cdp.outbox (
	message_id    bigint      PRIMARY KEY DEFAULT nextval('cdp.outbox_message_id_seq'),
	contact_id    bigint      NOT NULL UNIQUE,
	fire_id       bigint      UNIQUE,
	trigger_id    text,
	profile_id    bigint      NOT NULL,
	channel       text        NOT NULL,
	offer_id      text        NOT NULL,
	variant       text,
	payload       jsonb       NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now(),
	not_before    timestamptz NOT NULL,
	status        text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'claimed', 'delivered', 'dead')),
	attempts      integer     NOT NULL DEFAULT 0,
	claimed_until timestamptz,
	delivered_at  timestamptz,
	last_error    text,
	last_error_at timestamptz
);
ALTER SEQUENCE cdp.outbox_message_id_seq OWNED BY cdp.outbox.message_id;
COMMENT ON SEQUENCE cdp.outbox_message_id_seq IS 'Message ids of the outbox';
CREATE INDEX ON cdp.outbox (not_before) WHERE status IN ('pending', 'claimed');
COMMENT ON TABLE cdp.outbox IS 'Messages for the sending systems, one per contact decided by a trigger: claimed with cdp.claim_messages, settled with cdp.mark_delivered or cdp.mark_failed; NOTIFY cdp_outbox when new ones commit';
COMMENT ON COLUMN cdp.outbox.message_id IS 'Message id (the sender''s idempotency key)';
COMMENT ON COLUMN cdp.outbox.contact_id IS 'The contact (cdp.contacts): pass it to cdp.record_outcome';
COMMENT ON COLUMN cdp.outbox.fire_id IS 'The firing (cdp.trigger_fires)';
COMMENT ON COLUMN cdp.outbox.trigger_id IS 'The trigger';
COMMENT ON COLUMN cdp.outbox.profile_id IS 'Live profile when decided';
COMMENT ON COLUMN cdp.outbox.channel IS 'Channel to send on';
COMMENT ON COLUMN cdp.outbox.offer_id IS 'Offer';
COMMENT ON COLUMN cdp.outbox.variant IS 'Its variant';
COMMENT ON COLUMN cdp.outbox.payload IS '{"to": {"kind", "value"} the contact point, "offer": the offer''s payload, "context": what the moment was (the products left in the cart and their value, the event), "trigger", "contact_id"}';
COMMENT ON COLUMN cdp.outbox.created_at IS 'When it was written';
COMMENT ON COLUMN cdp.outbox.not_before IS 'Not to be sent before (the end of quiet hours; the next retry after a failure)';
COMMENT ON COLUMN cdp.outbox.status IS 'pending, claimed (a sender holds it until claimed_until), delivered, dead (failed cdp.outbox_max_attempts times, or for good)';
COMMENT ON COLUMN cdp.outbox.attempts IS 'Times it was claimed';
COMMENT ON COLUMN cdp.outbox.claimed_until IS 'End of the current claim: a message still claimed then is handed out again (its sender died)';
COMMENT ON COLUMN cdp.outbox.delivered_at IS 'When it was marked delivered';
COMMENT ON COLUMN cdp.outbox.last_error IS 'The last failure reported';
COMMENT ON COLUMN cdp.outbox.last_error_at IS 'When';
SELECT pg_catalog.pg_extension_config_dump('cdp.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.outbox_message_id_seq', '');

-- ---------------------------------------------------------------------------
-- Firing.
-- ---------------------------------------------------------------------------

-- The events of types of batches (from_batch, to_batch], with their live
-- profile (events are found through their anchors' batch ids, as the
-- profile store finds them).
--
-- No SET search_path, so that the planner can inline it into its callers'
-- queries; an inlined body is parsed under the caller's search_path, so
-- every function and operator in it is qualified with pg_catalog.
CREATE FUNCTION cdp.batch_events(from_batch bigint, to_batch bigint, types text[])
RETURNS TABLE (event_id bigint, occurred_at timestamptz, profile_id bigint, type text, channel text,
               amount numeric, properties jsonb, stitched_at timestamptz)
LANGUAGE sql STABLE
AS $$
WITH b AS (SELECT s.batch_id, s.first_event_id AS f, s.last_event_id AS l, s.stitched_at FROM cdp.stitch_batches s
           WHERE s.batch_id OPERATOR(pg_catalog.>) from_batch AND s.batch_id OPERATOR(pg_catalog.<=) to_batch)
SELECT e.event_id, e.occurred_at, coalesce(p.merged_into, p.profile_id), e.type, e.channel, e.amount, e.properties,
       (SELECT b.stitched_at FROM b WHERE b.batch_id OPERATOR(pg_catalog.=) a.batch_id)
FROM (SELECT pg_catalog.min(b.f) AS f, pg_catalog.max(b.l) AS l FROM b) r
JOIN cdp.event_anchors a ON a.event_id OPERATOR(pg_catalog.>=) r.f AND a.event_id OPERATOR(pg_catalog.<=) r.l
JOIN cdp.events e ON e.event_id OPERATOR(pg_catalog.=) a.event_id AND e.occurred_at OPERATOR(pg_catalog.=) a.occurred_at
JOIN cdp.identifiers i ON i.identifier_id OPERATOR(pg_catalog.=) a.anchor_id
JOIN cdp.profiles p ON p.profile_id OPERATOR(pg_catalog.=) i.profile_id
WHERE a.batch_id OPERATOR(pg_catalog.>) from_batch AND a.batch_id OPERATOR(pg_catalog.<=) to_batch
  AND (types IS NULL OR e.type OPERATOR(pg_catalog.=) ANY (types))
$$;
COMMENT ON FUNCTION cdp.batch_events(bigint, bigint, text[]) IS 'Internal: the events stitched in batches (from_batch, to_batch] (of the given types, or all when NULL), with their live profile and when their batch was stitched';

-- Why a person may not enter a trigger again now (re-entry), or NULL.
CREATE FUNCTION cdp.trigger_reentry(t cdp.triggers, live bigint, at timestamptz) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	last_at timestamptz;
BEGIN
	IF t.reentry IN ('once_per_break', 'every_time') THEN
		RETURN NULL;
	END IF;
	SELECT max(coalesce(f.fired_at, f.seen_at)) INTO last_at
	FROM cdp.profiles p JOIN cdp.trigger_fires f ON f.profile_id = p.profile_id AND f.trigger_id = t.trigger_id
	WHERE coalesce(p.merged_into, p.profile_id) = live AND f.status IN ('waiting', 'sent', 'holdout');
	IF last_at IS NULL THEN
		RETURN NULL;
	ELSIF t.reentry = 'once' THEN
		RETURN format('re-entry once: entered at %s', last_at);
	ELSIF last_at > at - t.reentry_period THEN
		RETURN format('re-entry once per %s: entered at %s', t.reentry_period, last_at);
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.trigger_reentry(cdp.triggers, bigint, timestamptz) IS 'Internal: why a trigger''s re-entry policy keeps a person out at a time (it is waiting, was sent or held out within the period, or ever for once), or NULL';

-- A moment of a person for a trigger whose condition holds: waiting out
-- the delay, or skipped.
CREATE FUNCTION cdp.trigger_enter(t cdp.triggers, live bigint, moment text, moment_at timestamptz,
	context jsonb, break_event bigint DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	why text;
BEGIN
	-- (a fact trigger's condition is its crossing, found by the caller)
	IF t.condition IS NOT NULL AND t.on_fact IS NULL
	   AND NOT (cdp.eligible(t.condition, cdp.trigger_facts(live, t.condition, context))).eligible THEN
		RETURN false;
	END IF;
	why := cdp.trigger_reentry(t, live, now());
	INSERT INTO cdp.trigger_fires (trigger_id, profile_id, moment, moment_at, due_at, status, reason, fired_at, break_event, context)
	VALUES (t.trigger_id, live, moment, moment_at, moment_at + t.delay, CASE WHEN why IS NULL THEN 'waiting' ELSE 'skipped' END,
	        why, CASE WHEN why IS NOT NULL THEN now() END, break_event, coalesce(context, '{}'))
	ON CONFLICT ON CONSTRAINT trigger_fires_trigger_id_moment_key DO NOTHING;
	RETURN FOUND AND why IS NULL;
END
$$;
COMMENT ON FUNCTION cdp.trigger_enter(cdp.triggers, bigint, text, timestamptz, jsonb, bigint) IS 'Internal: when the trigger''s condition holds for the moment, records it for the person, waiting until moment_at + delay, or skipped when re-entry forbids it; a moment already recorded is left as it is (never twice)';

-- The facts a rule of a trigger reads for a person, with the moment's.
-- No SET search_path, so that it can be inlined: qualified throughout.
CREATE FUNCTION cdp.trigger_facts(live bigint, rule jsonb, context jsonb) RETURNS jsonb
LANGUAGE sql STABLE
AS $$ SELECT cdp.offer_facts(live, pg_catalog.now(), cdp.trigger_fact_names(rule))
             OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('event', context) $$;
COMMENT ON FUNCTION cdp.trigger_facts(bigint, jsonb, jsonb) IS 'Internal: the facts a rule reads for a live profile now, with event set to the moment''s context';

-- Why a waiting moment must be dropped now, or NULL.
CREATE FUNCTION cdp.trigger_exit(f cdp.trigger_fires, t cdp.triggers, live bigint) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b record;
	r record;
BEGIN
	IF t.trigger_id IS NULL OR NOT t.enabled THEN
		RETURN 'trigger disabled or deleted';
	END IF;
	IF t.on_break IS NOT NULL THEN
		SELECT j.status, j.resolved_at, j.resolved_channel INTO b FROM cdp.journey_breaks j
		WHERE j.funnel_id = t.on_break AND j.first_event_id = f.break_event
		ORDER BY j.profile_id = live DESC LIMIT 1;
		IF NOT FOUND THEN
			-- gone only once the journeys have taken in every merge and move
			-- (a merge moves the break to the survivor at the next detection)
			IF EXISTS (SELECT FROM cdp.journey_progress p
			           WHERE p.last_merge_id >= coalesce((SELECT max(m.merge_id) FROM cdp.profile_merges m), 0)
			             AND p.last_move_id >= coalesce((SELECT max(v.move_id) FROM cdp.identifier_moves v), 0)) THEN
				RETURN 'journey no longer broken';
			END IF;
		ELSIF b.status IN ('recovered', 'converted_elsewhere') THEN
			RETURN format('journey completed on %s at %s', b.resolved_channel, b.resolved_at);
		ELSIF b.status <> 'open' THEN
			RETURN format('journey %s', b.status);
		END IF;
	END IF;
	IF t.on_fact IS NOT NULL THEN
		SELECT * INTO r FROM cdp.eligible(t.condition, cdp.trigger_facts(live, t.condition, f.context));
		IF NOT r.eligible THEN
			RETURN 'condition no longer holds: ' || r.reason;
		END IF;
	END IF;
	IF t.exit_condition IS NOT NULL THEN
		SELECT * INTO r FROM cdp.eligible(t.exit_condition, cdp.trigger_facts(live, t.exit_condition, f.context));
		IF r.eligible THEN
			RETURN 'exit condition holds';
		END IF;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.trigger_exit(cdp.trigger_fires, cdp.triggers, bigint) IS 'Internal: why a waiting moment is dropped now (the trigger is disabled, the break completed or expired, a fact trigger''s condition no longer holds, the exit condition holds), or NULL';

-- Drops a waiting moment.
CREATE FUNCTION cdp.trigger_drop(fire_id bigint, why text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ UPDATE cdp.trigger_fires f SET status = 'exited', reason = why, fired_at = now() WHERE f.fire_id = trigger_drop.fire_id $$;
COMMENT ON FUNCTION cdp.trigger_drop(bigint, text) IS 'Internal: drops a waiting moment with the reason';

-- Decides for a due moment (the person's lock held) and writes the message.
CREATE FUNCTION cdp.trigger_fire(f cdp.trigger_fires, t cdp.triggers, live bigint) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	facts jsonb := cdp.offer_facts(live, now(), cdp.offer_fact_names()) || jsonb_build_object('event', f.context);
	d cdp.decision;
	at timestamptz := now();
	mid bigint;
	who record;
BEGIN
	IF t.channel IS NOT NULL THEN
		-- in the quiet hours of the channel: decided for their end, and
		-- sent then (not_before)
		SELECT coalesce(max(cdp.quiet_until(now(), cdp.person_time_zone(facts), p.quiet_start, p.quiet_end)), now())
		INTO at FROM cdp.contact_policies p WHERE p.channel IN (t.channel, '*') AND p.quiet_start IS NOT NULL;
	END IF;
	d := cdp.decide_locked(live, t.channel, at, facts, NULL, t.offers);
	IF d.status = 'sent' THEN
		SELECT i.kind, i.value INTO who FROM cdp.contacts c JOIN cdp.identifiers i ON i.identifier_id = c.identifier_id
		WHERE c.contact_id = d.contact_id;
		INSERT INTO cdp.outbox (contact_id, fire_id, trigger_id, profile_id, channel, offer_id, variant, payload, not_before)
		VALUES (d.contact_id, f.fire_id, t.trigger_id, live, d.channel, d.offer_id, d.variant,
		        jsonb_build_object('to', jsonb_build_object('kind', who.kind, 'value', who.value), 'offer', d.payload,
		                           'context', f.context, 'trigger', t.trigger_id, 'contact_id', d.contact_id),
		        GREATEST(at, now()))
		RETURNING message_id INTO mid;
	END IF;
	UPDATE cdp.trigger_fires x SET status = d.status, reason = d.reason, fired_at = now(), contact_id = d.contact_id,
	       message_id = mid, profile_id = live
	WHERE x.fire_id = f.fire_id;
	RETURN mid IS NOT NULL;
END
$$;
COMMENT ON FUNCTION cdp.trigger_fire(cdp.trigger_fires, cdp.triggers, bigint) IS 'Internal: decides the offer of a due moment with cdp.decide''s rules (the trigger''s channel and offers; in the quiet hours of the trigger''s channel, decided for their end and sent then) and writes the message to cdp.outbox when one is sent';

-- The moments of new events.
CREATE FUNCTION cdp.trigger_events(from_batch bigint, to_batch bigint) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t cdp.triggers;
	e record;
	ctx jsonb;
	n integer := 0;
BEGIN
	FOR e IN SELECT * FROM cdp.batch_events(from_batch, to_batch,
	                       ARRAY(SELECT DISTINCT x.on_event FROM cdp.triggers x WHERE x.enabled AND x.on_event IS NOT NULL))
	         ORDER BY event_id LOOP
		ctx := coalesce(e.properties, '{}') || jsonb_build_object('event_id', e.event_id, 'type', e.type,
		                                                         'channel', e.channel, 'amount', e.amount);
		FOR t IN SELECT * FROM cdp.triggers x WHERE x.enabled AND x.on_event = e.type AND e.stitched_at >= x.created_at
		                                        AND e.occurred_at > now() - x.max_age ORDER BY x.trigger_id LOOP
			IF cdp.trigger_enter(t, e.profile_id, 'event:' || e.event_id, e.occurred_at, ctx) THEN
				n := n + 1;
			END IF;
		END LOOP;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdp.trigger_events(bigint, bigint) IS 'Internal: the moments of the events of batches (from_batch, to_batch] for the enabled event triggers created before the batch was stitched whose condition holds';

-- The moments of breaks detected since about a time.
CREATE FUNCTION cdp.trigger_breaks(since timestamptz) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t cdp.triggers;
	b record;
	n integer := 0;
BEGIN
	FOR t IN SELECT * FROM cdp.triggers x WHERE x.enabled AND x.on_break IS NOT NULL ORDER BY x.trigger_id LOOP
		FOR b IN SELECT j.* FROM cdp.journey_breaks j
		         WHERE j.detected_at >= GREATEST(since, t.created_at) AND j.funnel_id = t.on_break AND j.status = 'open'
		           AND j.broken_at > now() - t.max_age
		           AND NOT EXISTS (SELECT FROM cdp.trigger_fires f
		                           WHERE f.trigger_id = t.trigger_id AND f.moment = 'break:' || j.first_event_id)
		         ORDER BY j.broken_at, j.first_event_id LOOP
			IF cdp.trigger_enter(t, b.profile_id, 'break:' || b.first_event_id, b.broken_at,
			                     b.context || jsonb_build_object('funnel', b.funnel_id, 'broken_at', b.broken_at,
			                                                     'journey_started_at', b.started_at),
			                     b.first_event_id) THEN
				n := n + 1;
			END IF;
		END LOOP;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdp.trigger_breaks(timestamptz) IS 'Internal: the moments of the open breaks detected since about a time, and since the trigger was created (each once), for the enabled break triggers whose condition holds';

-- Fact triggers: the crossings among some people.
CREATE FUNCTION cdp.trigger_crossings(t cdp.triggers, people bigint[], fire boolean) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p bigint;
	holds boolean;
	was boolean;
	f jsonb;
	n integer := 0;
BEGIN
	FOR p IN SELECT DISTINCT u.x FROM unnest(people) u(x) JOIN cdp.profiles l ON l.profile_id = u.x AND l.merged_into IS NULL
	         ORDER BY 1 LOOP
		f := cdp.trigger_facts(p, t.condition, NULL);
		holds := (cdp.eligible(t.condition, f)).eligible;
		was := EXISTS (SELECT FROM cdp.trigger_states s WHERE s.trigger_id = t.trigger_id AND s.profile_id = p);
		IF holds AND NOT was THEN
			INSERT INTO cdp.trigger_states VALUES (t.trigger_id, p, clock_timestamp());
			IF fire AND cdp.trigger_enter(t, p, format('fact:%s:%s', p, (extract(epoch FROM clock_timestamp()) * 1e6)::bigint),
			                              now(), jsonb_build_object('fact', t.on_fact, 'value', f->t.on_fact)) THEN
				n := n + 1;
			END IF;
		ELSIF was AND NOT holds THEN
			DELETE FROM cdp.trigger_states s WHERE s.trigger_id = t.trigger_id AND s.profile_id = p;
		END IF;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdp.trigger_crossings(cdp.triggers, bigint[], boolean) IS 'Internal: for a fact trigger and some live profiles, records who meets the condition now and, when fire, the moments of those who did not before';

-- Fact triggers: the people new batches touched, and a slice of the pass
-- over everyone after a scores refresh (the first pass only records).
CREATE FUNCTION cdp.trigger_facts_run(touched bigint[], slice integer) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t cdp.triggers;
	s cdp.trigger_scans;
	model bigint := coalesce((SELECT max(m.model_id) FROM cdp.clv_models m), 0);
	people bigint[];
	n integer := 0;
BEGIN
	FOR t IN SELECT * FROM cdp.triggers x WHERE x.enabled AND x.on_fact IS NOT NULL ORDER BY x.trigger_id LOOP
		INSERT INTO cdp.trigger_scans VALUES (t.trigger_id, model, 0, true) ON CONFLICT (trigger_id) DO NOTHING;
		UPDATE cdp.trigger_scans x SET model_id = model, next_profile = 0
		WHERE x.trigger_id = t.trigger_id AND x.model_id <> model AND x.next_profile IS NULL;
		SELECT * INTO s FROM cdp.trigger_scans x WHERE x.trigger_id = t.trigger_id;
		IF s.next_profile IS NOT NULL THEN
			people := ARRAY(SELECT p.profile_id FROM cdp.profiles p
			                WHERE p.profile_id > s.next_profile AND p.merged_into IS NULL ORDER BY 1 LIMIT slice);
			n := n + cdp.trigger_crossings(t, people, NOT s.baseline);
			UPDATE cdp.trigger_scans x
			SET next_profile = CASE WHEN cardinality(people) < slice THEN NULL ELSE people[cardinality(people)] END,
			    baseline = x.baseline AND cardinality(people) = slice
			WHERE x.trigger_id = t.trigger_id;
		END IF;
		n := n + cdp.trigger_crossings(t, touched, NOT s.baseline);
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdp.trigger_facts_run(bigint[], integer) IS 'Internal: the crossings of the enabled fact triggers among the people new batches touched and a slice of the pass over every live profile that follows each scores refresh (the first pass after a trigger is created records who meets the condition without firing)';

-- The live profiles of the batches (from_batch, to_batch], with the
-- profiles merged into them (moments keep the profile they were seen with).
CREATE FUNCTION cdp.batch_people(from_batch bigint, to_batch bigint) RETURNS bigint[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
WITH live AS (SELECT DISTINCT e.profile_id FROM cdp.batch_events(from_batch, to_batch, NULL) e)
SELECT ARRAY(SELECT profile_id FROM live
             UNION SELECT p.profile_id FROM cdp.profiles p WHERE p.merged_into IN (SELECT profile_id FROM live))
$$;
COMMENT ON FUNCTION cdp.batch_people(bigint, bigint) IS 'Internal: the live profiles of the events of batches (from_batch, to_batch], and the profiles merged into them';

-- Drops the waiting moments of some people that must end now.
CREATE FUNCTION cdp.trigger_exits(touched bigint[], journeyed bigint[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	x record;
	why text;
	n integer := 0;
BEGIN
	FOR x IN SELECT f AS f, t AS t, cdp.live_profile(f.profile_id) AS live
	         FROM cdp.trigger_fires f JOIN cdp.triggers t ON t.trigger_id = f.trigger_id
	         WHERE f.status = 'waiting' AND f.due_at > now() AND f.profile_id = ANY (touched || journeyed)
	           AND (t.on_break IS NOT NULL AND f.profile_id = ANY (journeyed)
	                OR (t.exit_condition IS NOT NULL OR t.on_fact IS NOT NULL) AND f.profile_id = ANY (touched))
	         ORDER BY f.fire_id LOOP
		why := cdp.trigger_exit(x.f, x.t, x.live);
		IF why IS NOT NULL THEN
			PERFORM cdp.trigger_drop((x.f).fire_id, why);
			n := n + 1;
		END IF;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdp.trigger_exits(bigint[], bigint[]) IS 'Internal: drops at once the waiting moments whose exit condition (or fact trigger''s condition) no longer lets them through for the people new events touched, and those whose break completed for the people of the batches the journeys took';

-- Records the conversions of journeys completed after a message or a
-- holdout (the people's locks held).
CREATE FUNCTION cdp.trigger_conversions(fires bigint[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	x record;
	n integer := 0;
BEGIN
	FOR x IN SELECT f.fire_id, f.contact_id, j.resolved_at, j.resolved_event_id
	         FROM cdp.trigger_fires f
	         JOIN cdp.triggers t ON t.trigger_id = f.trigger_id
	         JOIN cdp.journey_breaks j ON j.funnel_id = t.on_break AND j.first_event_id = f.break_event
	         WHERE f.fire_id = ANY (fires) AND j.status IN ('recovered', 'converted_elsewhere') AND j.resolved_at >= f.fired_at
	         ORDER BY f.fire_id LOOP
		PERFORM cdp.record_outcome(x.contact_id, 'converted',
		                           (SELECT e.amount FROM cdp.events e WHERE e.event_id = x.resolved_event_id AND e.occurred_at = x.resolved_at),
		                           x.resolved_at);
		UPDATE cdp.trigger_fires f SET converted_at = x.resolved_at WHERE f.fire_id = x.fire_id;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdp.trigger_conversions(bigint[]) IS 'Internal: records as a converted outcome of their contact (with the order''s amount as reward) the journeys of these firings completed since the message or holdout';

-- The unit of work.
CREATE FUNCTION cdp.run_triggers(max_fires integer DEFAULT 500, OUT entered integer, OUT fired integer,
	OUT dropped integer, OUT converted integer, OUT next_due timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	prog cdp.trigger_progress;
	jp record;
	upto bigint;
	touched bigint[] := '{}';
	journeyed bigint[] := '{}';
	due bigint[];
	won bigint[];
	x record;
	why text;
BEGIN
	entered := 0; fired := 0; dropped := 0; converted := 0;
	IF max_fires IS NULL OR max_fires < 1 THEN
		RAISE EXCEPTION 'max_fires must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- one run at a time; no journey detection commits meanwhile
	PERFORM pg_advisory_xact_lock(6513776, 29810);	-- 'cdp', 'tr'
	PERFORM pg_advisory_xact_lock(6513776, 27247);	-- the journeys' (src/journey.h)
	SELECT p.as_of, p.ran_at, p.last_batch_id INTO jp FROM cdp.journey_progress p;
	SELECT * INTO prog FROM cdp.trigger_progress FOR UPDATE;
	upto := coalesce((SELECT s.last_batch_id FROM cdp.profile_store_progress s), 0);
	IF prog.singleton IS NULL THEN
		-- the first run starts from now: earlier moments are history
		INSERT INTO cdp.trigger_progress VALUES (true, upto, coalesce(jp.ran_at, now()), coalesce(jp.last_batch_id, 0), now());
		RETURN;
	END IF;

	-- new moments, and the people whose waiting moments may have to end
	IF EXISTS (SELECT FROM cdp.triggers t WHERE t.enabled) THEN
		IF upto > prog.last_batch_id THEN
			entered := entered + cdp.trigger_events(prog.last_batch_id, upto);
			IF EXISTS (SELECT FROM cdp.triggers t WHERE t.enabled AND (t.on_fact IS NOT NULL OR t.exit_condition IS NOT NULL)) THEN
				touched := cdp.batch_people(prog.last_batch_id, upto);
			END IF;
		END IF;
		IF jp.ran_at > prog.breaks_seen OR jp.last_batch_id > prog.journeys_batch THEN	-- the journeys ran since
			entered := entered + cdp.trigger_breaks(prog.breaks_seen - interval '1 minute');
			IF jp.last_batch_id > prog.journeys_batch
			   AND EXISTS (SELECT FROM cdp.triggers t WHERE t.enabled AND t.on_break IS NOT NULL) THEN
				journeyed := cdp.batch_people(prog.journeys_batch, jp.last_batch_id);
			END IF;
		END IF;
		entered := entered + cdp.trigger_facts_run(touched, 200);
	END IF;
	dropped := dropped + cdp.trigger_exits(touched, journeyed);

	-- due moments, and moments sent or held out whose journey completed
	-- since: the people's locks first, all in stripe order (no decision
	-- waits for a lock while this unit holds a row another decision needs)
	due := ARRAY(SELECT f.fire_id FROM cdp.trigger_fires f JOIN cdp.triggers t ON t.trigger_id = f.trigger_id
	             WHERE f.status = 'waiting' AND f.due_at <= now() AND (t.on_break IS NULL OR f.due_at <= jp.as_of)
	             ORDER BY f.due_at, f.fire_id LIMIT max_fires);
	due := due || ARRAY(SELECT f.fire_id FROM cdp.trigger_fires f LEFT JOIN cdp.triggers t ON t.trigger_id = f.trigger_id
	                    WHERE f.status = 'waiting' AND f.due_at <= now() AND t.trigger_id IS NULL LIMIT max_fires);
	IF cardinality(journeyed) > 0 THEN
		won := ARRAY(SELECT f.fire_id FROM cdp.trigger_fires f
		             WHERE f.profile_id = ANY (journeyed) AND f.converted_at IS NULL AND f.break_event IS NOT NULL
		               AND f.status IN ('sent', 'holdout'));
	END IF;
	PERFORM cdp.lock_person(s.stripe_live)
	FROM (SELECT DISTINCT ON (cdp.person_stripe(l.live)) l.live AS stripe_live
	      FROM (SELECT cdp.live_profile(f.profile_id) AS live FROM cdp.trigger_fires f
	            WHERE f.fire_id = ANY (due || coalesce(won, '{}'))) l
	      ORDER BY cdp.person_stripe(l.live)) s;
	converted := cdp.trigger_conversions(won);
	FOR x IN SELECT f AS f, t AS t, cdp.live_profile(f.profile_id) AS live
	         FROM cdp.trigger_fires f LEFT JOIN cdp.triggers t ON t.trigger_id = f.trigger_id
	         WHERE f.fire_id = ANY (due) ORDER BY f.due_at, f.fire_id LOOP
		why := cdp.trigger_exit(x.f, x.t, x.live);
		IF why IS NOT NULL THEN
			PERFORM cdp.trigger_drop((x.f).fire_id, why);
			dropped := dropped + 1;
		ELSIF cdp.trigger_fire(x.f, x.t, x.live) THEN
			fired := fired + 1;
		END IF;
	END LOOP;

	IF fired > 0 THEN
		PERFORM pg_notify('cdp_outbox', fired::text);
	END IF;
	-- (an idle unit writes nothing: the worker runs one on every wake-up)
	IF upto > prog.last_batch_id OR jp.ran_at > prog.breaks_seen OR jp.last_batch_id > prog.journeys_batch
	   OR entered + fired + dropped + converted > 0 THEN
		UPDATE cdp.trigger_progress SET last_batch_id = GREATEST(upto, last_batch_id),
		       breaks_seen = GREATEST(coalesce(jp.ran_at, breaks_seen), breaks_seen),
		       journeys_batch = GREATEST(coalesce(jp.last_batch_id, journeys_batch), journeys_batch), ran_at = now();
	END IF;
	-- the next moment due; now when due ones are left (beyond max_fires)
	-- or a fact trigger's pass over every profile goes on
	next_due := CASE WHEN EXISTS (SELECT FROM cdp.trigger_fires f JOIN cdp.triggers t ON t.trigger_id = f.trigger_id
	                              WHERE f.status = 'waiting' AND f.due_at <= now()
	                                AND (t.on_break IS NULL OR f.due_at <= jp.as_of))
	                      OR EXISTS (SELECT FROM cdp.trigger_scans s JOIN cdp.triggers t ON t.trigger_id = s.trigger_id
	                                 WHERE t.enabled AND s.next_profile IS NOT NULL)
	                 THEN now()
	                 ELSE (SELECT min(f.due_at) FROM cdp.trigger_fires f WHERE f.status = 'waiting' AND f.due_at > now()) END;
END
$$;
COMMENT ON FUNCTION cdp.run_triggers(integer) IS 'One unit of the triggers (the background worker runs it after the profile store and journeys; by hand when no worker runs): takes the moments of the batches the profile store has folded in since the last run, of the breaks detected since, and the crossings of fact triggers; drops at once the waiting moments whose break completed or whose exit condition holds; locks the people concerned in stripe order, records the conversions of journeys completed after a message or holdout, decides for up to max_fires due moments and writes their messages to cdp.outbox (NOTIFY cdp_outbox); all in one transaction with its progress marker. Returns what it did and when the next waiting moment is due';

-- ---------------------------------------------------------------------------
-- The sender side.
-- ---------------------------------------------------------------------------

CREATE FUNCTION cdp.claim_messages(n integer DEFAULT 100, lease interval DEFAULT '5 minutes', channel text DEFAULT NULL)
RETURNS SETOF cdp.outbox
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF n IS NULL OR n < 1 OR lease IS NULL OR lease <= interval '0' THEN
		RAISE EXCEPTION 'n must be at least 1 and lease positive' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'cdp.claim_messages(100, ''5 minutes'') hands out up to 100 messages for 5 minutes each.';
	END IF;
	PERFORM cdp.channel_check(claim_messages.channel);
	-- claims that ran out after the last attempt: dead, not handed out again
	UPDATE cdp.outbox o SET status = 'dead', last_error = coalesce(o.last_error, 'claim expired without a result'),
	       last_error_at = now()
	WHERE o.message_id IN (SELECT x.message_id FROM cdp.outbox x
	                       WHERE x.status = 'claimed' AND x.not_before <= now() AND x.claimed_until <= now()
	                         AND x.attempts >= current_setting('cdp.outbox_max_attempts')::integer
	                       FOR UPDATE SKIP LOCKED);
	RETURN QUERY
	UPDATE cdp.outbox o SET status = 'claimed', attempts = o.attempts + 1, claimed_until = now() + lease
	WHERE o.message_id IN (SELECT x.message_id FROM cdp.outbox x
	                       WHERE x.status IN ('pending', 'claimed') AND x.not_before <= now()
	                         AND (x.status = 'pending' OR x.claimed_until <= now())
	                         AND (claim_messages.channel IS NULL OR x.channel = claim_messages.channel)
	                       ORDER BY x.not_before, x.message_id LIMIT n
	                       FOR UPDATE SKIP LOCKED)
	RETURNING o.*;
END
$$;
COMMENT ON FUNCTION cdp.claim_messages(integer, interval, text) IS 'Hands out up to n messages due now (of one channel, or all), oldest first, each to one sender for the lease (FOR UPDATE SKIP LOCKED: senders never wait for each other); a message whose claim runs out without a result is handed out again, or is dead after cdp.outbox_max_attempts attempts';

CREATE FUNCTION cdp.outbox_message(message_id bigint) RETURNS cdp.outbox
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m cdp.outbox;
BEGIN
	SELECT * INTO m FROM cdp.outbox o WHERE o.message_id = outbox_message.message_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'message % is not in the outbox', message_id
			USING ERRCODE = 'no_data_found', HINT = 'Pass a message_id handed out by cdp.claim_messages (delivered and dead ones are purged after cdp.outbox_retention).';
	END IF;
	RETURN m;
END
$$;
COMMENT ON FUNCTION cdp.outbox_message(bigint) IS 'Internal: an outbox message, locked, or an error';

-- The message a sender settles: its claim must be the sender's (attempt,
-- when given, is the attempts that cdp.claim_messages returned).
CREATE FUNCTION cdp.outbox_claim_check(m cdp.outbox, attempt integer) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF attempt IS NOT NULL AND attempt <> m.attempts THEN
		RAISE EXCEPTION 'message % was handed out again after attempt % (now attempt %, %)', m.message_id, attempt, m.attempts, m.status
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'The claim ran out before the result came: another sender has it now; give a longer lease to cdp.claim_messages.';
	END IF;
END
$$;
COMMENT ON FUNCTION cdp.outbox_claim_check(cdp.outbox, integer) IS 'Internal: an error unless attempt (if given) is still the message''s current attempt';

CREATE FUNCTION cdp.mark_delivered(message_id bigint, attempt integer DEFAULT NULL) RETURNS cdp.outbox
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m cdp.outbox := cdp.outbox_message(message_id);
BEGIN
	IF m.status = 'delivered' THEN
		RETURN m;		-- said twice: once is enough
	END IF;
	PERFORM cdp.outbox_claim_check(m, attempt);
	UPDATE cdp.outbox o SET status = 'delivered', delivered_at = now(), claimed_until = NULL
	WHERE o.message_id = m.message_id RETURNING * INTO m;
	RETURN m;
END
$$;
COMMENT ON FUNCTION cdp.mark_delivered(bigint, integer) IS 'Records that a message was delivered (idempotent: a second call changes nothing; a message declared dead that was delivered after all becomes delivered); with attempt (the attempts cdp.claim_messages returned), refuses with 55000 a claim that ran out and was handed out again';

CREATE FUNCTION cdp.mark_failed(message_id bigint, error text, retry boolean DEFAULT true, attempt integer DEFAULT NULL)
RETURNS cdp.outbox
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m cdp.outbox := cdp.outbox_message(message_id);
	wait float8;
BEGIN
	PERFORM cdp.outbox_claim_check(m, attempt);
	IF m.status <> 'claimed' THEN
		RAISE EXCEPTION 'message % is %, not claimed', message_id, m.status
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Only a message handed out by cdp.claim_messages and not yet settled can fail.';
	END IF;
	wait := LEAST(extract(epoch FROM current_setting('cdp.outbox_retry_delay')::interval)
	              * power(2, GREATEST(m.attempts - 1, 0)), 86400);
	UPDATE cdp.outbox o
	SET status = CASE WHEN NOT coalesce(retry, true) OR o.attempts >= current_setting('cdp.outbox_max_attempts')::integer
	                  THEN 'dead' ELSE 'pending' END,
	    not_before = CASE WHEN coalesce(retry, true) THEN now() + make_interval(secs => wait) ELSE o.not_before END,
	    claimed_until = NULL, last_error = coalesce(error, 'unknown error'), last_error_at = now()
	WHERE o.message_id = m.message_id RETURNING * INTO m;
	RETURN m;
END
$$;
COMMENT ON FUNCTION cdp.mark_failed(bigint, text, boolean, integer) IS 'Records a failed delivery of a claimed message: pending again after cdp.outbox_retry_delay (doubled at each attempt, at most a day), or dead (dead-letter) after cdp.outbox_max_attempts attempts or when retry is false; 55000 for a message not claimed (pending, delivered, dead) or, with attempt, claimed again since';

CREATE FUNCTION cdp.purge_outbox() RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
WITH d AS (DELETE FROM cdp.outbox o
           WHERE o.status IN ('delivered', 'dead')
             AND coalesce(o.delivered_at, o.last_error_at, o.created_at) < now() - current_setting('cdp.outbox_retention')::interval
           RETURNING 1)
SELECT count(*) FROM d
$$;
COMMENT ON FUNCTION cdp.purge_outbox() IS 'Deletes the delivered and dead messages settled more than cdp.outbox_retention ago; returns how many (the cdp-outbox job of cdp.schedule_jobs runs it)';

CREATE VIEW cdp.trigger_stats AS
SELECT t.trigger_id, t.enabled,
       count(f.fire_id) FILTER (WHERE f.status = 'waiting') AS waiting,
       count(f.fire_id) FILTER (WHERE f.status = 'sent') AS sent,
       count(f.fire_id) FILTER (WHERE f.status = 'holdout') AS holdout,
       count(f.fire_id) FILTER (WHERE f.status = 'suppressed') AS suppressed,
       count(f.fire_id) FILTER (WHERE f.status = 'no_offer') AS no_offer,
       count(f.fire_id) FILTER (WHERE f.status = 'exited') AS exited,
       count(f.fire_id) FILTER (WHERE f.status = 'skipped') AS skipped,
       count(f.fire_id) FILTER (WHERE f.status = 'sent' AND f.converted_at IS NOT NULL) AS sent_converted,
       count(f.fire_id) FILTER (WHERE f.status = 'holdout' AND f.converted_at IS NOT NULL) AS holdout_converted,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM f.fired_at - f.due_at))
           FILTER (WHERE f.status IN ('sent', 'holdout', 'suppressed', 'no_offer')) AS median_lateness_s,
       max(f.fired_at) AS last_fired_at
FROM cdp.triggers t LEFT JOIN cdp.trigger_fires f ON f.trigger_id = t.trigger_id
GROUP BY t.trigger_id, t.enabled;
COMMENT ON VIEW cdp.trigger_stats IS 'Per trigger: moments waiting, decided by status, dropped (exited), skipped by re-entry, conversions after a message and in the holdout (break triggers), the median lateness of decisions against their due time, the last decision';
COMMENT ON COLUMN cdp.trigger_stats.trigger_id IS 'Trigger';
COMMENT ON COLUMN cdp.trigger_stats.enabled IS 'Whether it fires';
COMMENT ON COLUMN cdp.trigger_stats.waiting IS 'Moments waiting out the delay';
COMMENT ON COLUMN cdp.trigger_stats.sent IS 'Messages written to cdp.outbox';
COMMENT ON COLUMN cdp.trigger_stats.holdout IS 'Decisions held out (the control group)';
COMMENT ON COLUMN cdp.trigger_stats.suppressed IS 'Decisions that contact pressure or consent forbade';
COMMENT ON COLUMN cdp.trigger_stats.no_offer IS 'Decisions without an eligible offer';
COMMENT ON COLUMN cdp.trigger_stats.exited IS 'Moments dropped during the delay';
COMMENT ON COLUMN cdp.trigger_stats.skipped IS 'Moments re-entry kept out';
COMMENT ON COLUMN cdp.trigger_stats.sent_converted IS 'Journeys completed after the message (break triggers)';
COMMENT ON COLUMN cdp.trigger_stats.holdout_converted IS 'Journeys completed in the holdout (break triggers)';
COMMENT ON COLUMN cdp.trigger_stats.median_lateness_s IS 'Median seconds from due time to decision';
COMMENT ON COLUMN cdp.trigger_stats.last_fired_at IS 'Last decision or drop';



-- ---------------------------------------------------------------------------
-- Scheduled jobs: cdp's batch work (partitions, scores, journeys, retention,
-- quarantine, outbox) registered with pg_cron in one call, removed in one,
-- and watched through cdp.job_status.  pg_cron is optional: cdp installs
-- without it, since its objects are reached only through dynamic SQL after
-- cdp.cron_require has checked that it is there.
-- ---------------------------------------------------------------------------

-- The list of jobs, said once: schedule_jobs registers it, unschedule_jobs
-- and job_runs find the jobs by its names.  IntervalStyle is pinned so that
-- the retention is written into the command in a form any session reads.
CREATE FUNCTION cdp.default_jobs(retention interval DEFAULT '3 years',
	OUT job_name text, OUT schedule text, OUT command text, OUT description text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
BEGIN
	IF retention IS NULL THEN
		RAISE EXCEPTION 'retention must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF retention < interval '2 months' THEN
		RAISE EXCEPTION 'retention must be %at least 2 months: got %',
			CASE WHEN retention <= interval '0' THEN 'positive and ' ELSE '' END, retention
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'cdp.drop_partitions refuses to drop a partition that may hold events of the last month.',
			      HINT = 'Give the time events are kept, such as interval ''13 months'' or ''3 years''.';
	END IF;
	RETURN QUERY VALUES
		('cdp-partitions', '0 3 * * *',
		 'SELECT cdp.ensure_partitions(now(), now() + interval ''3 months'')',
		 'Creates the monthly partitions of cdp.events three months ahead and moves early events out of the default partition'),
		('cdp-scores', '0 2 * * *', 'SELECT cdp.refresh_scores(now())',
		 'Refits the lifetime-value models and refills cdp.rfm and cdp.clv'),
		('cdp-journeys', '*/5 * * * *', 'SELECT cdp.detect_journey_breaks()',
		 'Brings cdp.journey_breaks up to now; only useful when the background worker does not run (it detects breaks within a second), harmless otherwise'),
		('cdp-retention', '0 4 1 * *',
		 format('SELECT count(*) FROM cdp.drop_partitions(now() - interval %L)', retention),
		 format('Drops the monthly partitions of events older than %s (retention)', retention)),
		('cdp-quarantine', '30 4 * * 0',
		 'DELETE FROM cdp.rejected_events WHERE received_at < now() - interval ''90 days''',
		 'Empties the quarantine (cdp.rejected_events) of rows older than 90 days'),
		('cdp-outbox', '*/10 * * * *', 'SELECT cdp.purge_outbox()',
		 'Deletes delivered and dead outbox messages older than cdp.outbox_retention');
END
$$;
COMMENT ON FUNCTION cdp.default_jobs(interval) IS 'cdp''s scheduled jobs: name, default cron schedule, SQL command and what it does, with events kept for retention (at least 2 months). cdp.schedule_jobs registers them with pg_cron; without pg_cron, run these commands from another scheduler';

-- Raises the error that says what is missing when pg_cron cannot run this
-- database's jobs: not loaded, loaded for another database, not installed.
-- pg_settings, not current_setting: postgresql.conf may set cron.* without
-- pg_cron loaded, and such a placeholder is not in pg_settings.  Warns when
-- the launcher is not running (not yet after a start, or it exited, as it
-- does when its database is dropped).
CREATE FUNCTION cdp.cron_require() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cron_db text := (SELECT s.setting FROM pg_settings s WHERE s.name = 'cron.database_name');
	db      text := current_database();
	problem text;
BEGIN
	IF cron_db IS NULL THEN
		problem := 'pg_cron is not loaded (not in shared_preload_libraries)';
	ELSIF cron_db <> db THEN
		problem := format('pg_cron runs the jobs of database %I only (cron.database_name)', cron_db);
	ELSIF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
		problem := 'extension pg_cron is not created in it';
	ELSE
		IF NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.backend_type = 'pg_cron launcher') THEN
			RAISE WARNING 'pg_cron''s launcher is not running (yet): no job runs until it does'
				USING HINT = 'It starts a moment after the server; if it stopped (as when its database is dropped), the server log says why, and it starts again when the server restarts.';
		END IF;
		RETURN;
	END IF;
	RAISE EXCEPTION 'pg_cron cannot run cdp''s jobs in database %: %', quote_ident(db), problem
		USING ERRCODE = 'object_not_in_prerequisite_state',
		      HINT = format('To schedule them with pg_cron, set shared_preload_libraries = ''pg_cron,cdp'' and cron.database_name = %L in postgresql.conf, '
		                    'restart the server, run CREATE EXTENSION pg_cron in database %I, then call cdp.schedule_jobs() again. '
		                    'Without pg_cron, run the commands of SELECT * FROM cdp.default_jobs() from another scheduler.', db, db);
END
$$;
COMMENT ON FUNCTION cdp.cron_require() IS 'Internal: raises an error (55000) naming what is missing when pg_cron cannot run the jobs of this database (not in shared_preload_libraries, cron.database_name naming another database, or extension pg_cron not created here), with the steps to set it up; warns when pg_cron''s launcher is not running';

-- Checks the overrides of cdp.schedule_jobs: an object of known job names
-- and string values (pg_cron judges the schedules themselves).
CREATE FUNCTION cdp.check_job_schedules(schedules jsonb) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	names text := (SELECT string_agg(j.job_name, ', ') FROM cdp.default_jobs() j);
	o     record;
BEGIN
	IF schedules IS NULL THEN
		RAISE EXCEPTION 'schedules must not be null' USING ERRCODE = 'null_value_not_allowed',
			HINT = 'Pass ''{}'' to register every job with its default schedule.';
	ELSIF jsonb_typeof(schedules) <> 'object' THEN
		RAISE EXCEPTION 'schedules must be a JSON object of job names and cron schedules: got %', left(schedules::text, 200)
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = format('Such as ''{"cdp-partitions": "0 1 * * *"}''; the jobs are %s.', names);
	END IF;
	FOR o IN SELECT e.key, e.value FROM jsonb_each(schedules) e LOOP
		IF o.key NOT IN (SELECT j.job_name FROM cdp.default_jobs() j) THEN
			RAISE EXCEPTION 'unknown job "%" in schedules (given %)', left(o.key, 200), left(o.value::text, 200)
				USING ERRCODE = 'invalid_parameter_value', HINT = format('The jobs are %s.', names);
		ELSIF jsonb_typeof(o.value) <> 'string' THEN
			RAISE EXCEPTION 'the schedule of job "%" must be a string: got %', o.key, left(o.value::text, 200)
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'Give a cron schedule as a string, such as "0 3 * * *" (minute, hour, day of month, month, day of week).';
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdp.check_job_schedules(jsonb) IS 'Internal: refuses (22023) overrides of cdp.schedule_jobs that are not a JSON object, name an unknown job or give a schedule that is not a string';

-- Registers one job, or updates it in place: pg_cron 1.4's cron.schedule
-- upserts by job name (and user).  A schedule pg_cron refuses is reported
-- with the job's name.
CREATE FUNCTION cdp.cron_schedule(job_name text, schedule text, command text) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	id bigint;
BEGIN
	EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO id USING job_name, schedule, command;
	RETURN id;
EXCEPTION WHEN invalid_parameter_value THEN
	RAISE EXCEPTION 'invalid schedule "%" for job "%"', left(schedule, 200), job_name
		USING ERRCODE = 'invalid_parameter_value', DETAIL = format('pg_cron says: %s.', SQLERRM),
		      HINT = 'Give a cron schedule: five fields, minute (0-59), hour (0-23), day of month (1-31), month (1-12), day of week (0-6, 0 is Sunday), such as "*/10 * * * *" or "0 3 * * *"; pg_cron 1.4 runs a job at most once a minute.';
END
$$;
COMMENT ON FUNCTION cdp.cron_schedule(text, text, text) IS 'Internal: registers or updates one pg_cron job by name (cron.schedule, through dynamic SQL) and returns its jobid; a schedule pg_cron refuses raises 22023 naming the job';

CREATE FUNCTION cdp.schedule_jobs(schedules jsonb DEFAULT '{}', retention interval DEFAULT '3 years')
RETURNS TABLE (job_name text, schedule text, command text, jobid bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM cdp.check_job_schedules(schedules);
	PERFORM cdp.default_jobs(retention);
	PERFORM cdp.cron_require();
	RETURN QUERY
	SELECT j.job_name, s.schedule, j.command, cdp.cron_schedule(j.job_name, s.schedule, j.command)
	FROM cdp.default_jobs(retention) j
	CROSS JOIN LATERAL (SELECT coalesce(schedules ->> j.job_name, j.schedule) AS schedule) s;
END
$$;
COMMENT ON FUNCTION cdp.schedule_jobs(jsonb, interval) IS 'Registers cdp''s jobs (cdp.default_jobs) with pg_cron, or updates them in place when they exist, and returns each with its pg_cron jobid. schedules overrides the cron schedule of named jobs, such as ''{"cdp-partitions": "* * * * *"}''; retention is how long events are kept (cdp-retention, at least 2 months). An unknown job, a schedule that is not a string or that pg_cron refuses raise 22023; without pg_cron usable in this database, 55000 says what to set up';

CREATE FUNCTION cdp.unschedule_jobs() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	removed integer;
BEGIN
	PERFORM cdp.cron_require();
	EXECUTE 'SELECT count(*) FILTER (WHERE cron.unschedule(j.jobid)) FROM cron.job j
	         WHERE j.jobname = ANY ($1) AND j.database = pg_catalog.current_database()
	           AND j.username = CURRENT_USER'
		INTO removed USING ARRAY(SELECT d.job_name FROM cdp.default_jobs() d);
	RETURN removed;
END
$$;
COMMENT ON FUNCTION cdp.unschedule_jobs() IS 'Removes cdp''s jobs (the names of cdp.default_jobs) of the current user from pg_cron and returns how many it removed (0 when none was scheduled); their past runs stay in cron.job_run_details. Without pg_cron usable in this database, raises 55000 saying what to set up';

-- The rows of cdp.job_status; none when pg_cron is not installed here, so
-- that the view exists (and answers) without it.
CREATE FUNCTION cdp.job_runs()
RETURNS TABLE (job_name text, jobid bigint, schedule text, command text, active boolean,
               runs bigint, failures bigint, last_start timestamptz, last_end timestamptz,
               last_status text, last_message text, last_failure_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
		RETURN;
	END IF;
	RETURN QUERY EXECUTE
	'SELECT j.jobname::text, j.jobid, j.schedule, j.command, j.active, r.runs, r.failures,
	        l.start_time, l.end_time, l.status, l.return_message, r.last_failure_at
	 FROM cron.job j
	 CROSS JOIN LATERAL (
		SELECT count(*) AS runs, count(*) FILTER (WHERE d.status = ''failed'') AS failures,
		       max(coalesce(d.end_time, d.start_time)) FILTER (WHERE d.status = ''failed'') AS last_failure_at
		FROM cron.job_run_details d WHERE d.jobid = j.jobid) r
	 LEFT JOIN LATERAL (
		SELECT d.start_time, d.end_time, d.status, d.return_message
		FROM cron.job_run_details d WHERE d.jobid = j.jobid ORDER BY d.runid DESC LIMIT 1) l ON true
	 WHERE j.jobname = ANY ($1) AND j.database = pg_catalog.current_database()
	 ORDER BY pg_catalog.array_position($1, j.jobname::text)'
	USING ARRAY(SELECT d.job_name FROM cdp.default_jobs() d);
END
$$;
COMMENT ON FUNCTION cdp.job_runs() IS 'Internal: the rows of cdp.job_status, read from cron.job and cron.job_run_details through dynamic SQL; no rows when extension pg_cron is not installed in this database';

CREATE VIEW cdp.job_status AS
SELECT r.job_name, r.jobid, r.schedule, r.command, r.active, r.runs, r.failures,
       r.last_start, r.last_end, r.last_status, r.last_message, r.last_failure_at
FROM cdp.job_runs() r;
COMMENT ON VIEW cdp.job_status IS 'cdp''s jobs registered with pg_cron for this database (by cdp.schedule_jobs) and how their runs went, from cron.job and cron.job_run_details; pg_cron''s row security shows a role its own jobs only (a superuser sees every role''s). Empty without pg_cron';
COMMENT ON COLUMN cdp.job_status.job_name IS 'Name of the job (cdp-partitions, cdp-scores, cdp-journeys, cdp-retention, cdp-quarantine, cdp-outbox)';
COMMENT ON COLUMN cdp.job_status.jobid IS 'pg_cron''s id of the job (cron.job.jobid), as returned by cdp.schedule_jobs; its runs are in cron.job_run_details';
COMMENT ON COLUMN cdp.job_status.schedule IS 'Cron schedule: minute, hour, day of month, month, day of week (UTC unless cron.timezone says otherwise)';
COMMENT ON COLUMN cdp.job_status.command IS 'The SQL the job runs';
COMMENT ON COLUMN cdp.job_status.active IS 'Whether pg_cron runs it (cron.alter_job(jobid, active => false) pauses it)';
COMMENT ON COLUMN cdp.job_status.runs IS 'Runs recorded in cron.job_run_details, the one in progress included';
COMMENT ON COLUMN cdp.job_status.failures IS 'Runs that failed';
COMMENT ON COLUMN cdp.job_status.last_start IS 'When the latest run started; NULL if it never ran';
COMMENT ON COLUMN cdp.job_status.last_end IS 'When the latest run ended; NULL while it runs or if it never ran';
COMMENT ON COLUMN cdp.job_status.last_status IS 'Status of the latest run: starting, running, sending, connecting, succeeded or failed';
COMMENT ON COLUMN cdp.job_status.last_message IS 'What pg_cron recorded for the latest run: such as ''1 row'' for a command that returned one row, or the error message';
COMMENT ON COLUMN cdp.job_status.last_failure_at IS 'When the latest failed run ended (or started, if it has no end); NULL if none failed';


-- ---------------------------------------------------------------------------
-- Privacy: erasure of a person (cdp.forget), with an audit row without
-- personal data and keyed-hash tombstones of the erased identifiers.
--
-- Erasure is the one place that deletes across every module's tables: the
-- identity graph through its store (cdp.store_forget_profiles), the rest
-- here, in one transaction, under the locks of the triggers, the journeys,
-- stitching and the profile store, taken in that order (the order of the
-- units that take several of them).
-- ---------------------------------------------------------------------------

CREATE TABLE cdp.erasure_key (
	singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	key       bytea   NOT NULL
);
COMMENT ON TABLE cdp.erasure_key IS 'The secret key of the tombstones'' hashes (one row, random, made at the first erasure; kept by pg_dump, so that a restored database recognizes erased identifiers)';
COMMENT ON COLUMN cdp.erasure_key.singleton IS 'Always true: there is one row';
COMMENT ON COLUMN cdp.erasure_key.key IS '32 random bytes';
SELECT pg_catalog.pg_extension_config_dump('cdp.erasure_key', '');

CREATE TABLE cdp.erasures (
	erasure_id  bigserial   PRIMARY KEY,
	erased_at   timestamptz NOT NULL DEFAULT now(),
	erased_by   text        NOT NULL DEFAULT current_user,
	reason      text        NOT NULL,
	profiles    integer     NOT NULL,
	identifiers integer     NOT NULL,
	rows        jsonb       NOT NULL
);
COMMENT ON TABLE cdp.erasures IS 'The audit of erasures (cdp.forget): who, when, why and how many rows of each table went; no personal data';
COMMENT ON COLUMN cdp.erasures.erasure_id IS 'Erasure number';
COMMENT ON COLUMN cdp.erasures.erased_at IS 'When';
COMMENT ON COLUMN cdp.erasures.erased_by IS 'The role that erased';
COMMENT ON COLUMN cdp.erasures.reason IS 'Why, as given (a request number, not the person''s name)';
COMMENT ON COLUMN cdp.erasures.profiles IS 'Profiles erased (the live one and those merged into it)';
COMMENT ON COLUMN cdp.erasures.identifiers IS 'Identifiers erased (their keyed hashes are in cdp.tombstones)';
COMMENT ON COLUMN cdp.erasures.rows IS 'Rows deleted per table, {"events": 12, "identifiers": 3, ...}';
COMMENT ON SEQUENCE cdp.erasures_erasure_id_seq IS 'Erasure numbers';
SELECT pg_catalog.pg_extension_config_dump('cdp.erasures', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.erasures_erasure_id_seq', '');

CREATE TABLE cdp.tombstones (
	hash       text        PRIMARY KEY,
	quick      bigint      NOT NULL,
	kind       text        NOT NULL,
	erasure_id bigint      NOT NULL,
	erased_at  timestamptz NOT NULL
);
COMMENT ON TABLE cdp.tombstones IS 'The erased identifiers, as keyed hashes (cdp.erasure_hash): which identifier was erased can be checked, not read; an event that carries one is quarantined as erased (cdp.refuse_erased)';
COMMENT ON COLUMN cdp.tombstones.hash IS 'Keyed SHA-256 of the kind and the normalized value, hex';
COMMENT ON COLUMN cdp.tombstones.quick IS 'A 64-bit hash of the same, seeded by the key: the row check of each event tests it first, and computes the SHA-256 only when it matches';
COMMENT ON COLUMN cdp.tombstones.kind IS 'Identifier kind';
COMMENT ON COLUMN cdp.tombstones.erasure_id IS 'The erasure (cdp.erasures)';
COMMENT ON COLUMN cdp.tombstones.erased_at IS 'When';
SELECT pg_catalog.pg_extension_config_dump('cdp.tombstones', '');
-- every session's cached copy (the row check of cdp.events) is dropped at commit
CREATE TRIGGER tombstones_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp.tombstones
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_changed();

CREATE FUNCTION cdp.erasure_key() RETURNS bytea
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k bytea := (SELECT e.key FROM cdp.erasure_key e);
BEGIN
	IF k IS NULL THEN
		-- the first erasure makes the key
		INSERT INTO cdp.erasure_key (key)
		VALUES (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')))
		ON CONFLICT (singleton) DO NOTHING;
		k := (SELECT e.key FROM cdp.erasure_key e);
	END IF;
	RETURN k;
END
$$;
COMMENT ON FUNCTION cdp.erasure_key() IS 'Internal: the tombstones'' key, made at the first call';

CREATE FUNCTION cdp.erasure_hash(kind text, value text) RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT encode(sha256(cdp.erasure_key() || convert_to(kind || ':' || value, 'UTF8')), 'hex') $$;
COMMENT ON FUNCTION cdp.erasure_hash(text, text) IS 'Internal: the keyed SHA-256 of an identifier (kind and normalized value), as the tombstones keep it';

-- The seed of the 64-bit hash: the key's first 8 bytes (the C row check
-- reads it with the tombstones and hashes the same bytes with
-- hash_any_extended, src/identity.c).
CREATE FUNCTION cdp.erasure_seed(key bytea) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ('x' || encode(substr(key, 1, 8), 'hex'))::bit(64)::bigint $$;
COMMENT ON FUNCTION cdp.erasure_seed(bytea) IS 'Internal: the seed of the tombstones'' 64-bit hash, from their key';

CREATE FUNCTION cdp.erasure_quick_hash(kind text, value text) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT hashtextextended(kind || ':' || value, cdp.erasure_seed(cdp.erasure_key())) $$;
COMMENT ON FUNCTION cdp.erasure_quick_hash(text, text) IS 'Internal: the 64-bit keyed hash of an identifier that the row check tests before the SHA-256';

CREATE FUNCTION cdp.store_forget_profiles(profiles bigint[], events bigint[]) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'cdp_store_forget_profiles' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.store_forget_profiles(bigint[], bigint[]) IS 'Internal, called by cdp.forget: the identity store deletes the identifiers of these profiles, the profiles, and every row of the graph that names them (links, anchors, conflicts, overrides, moves, merges), and the rejected identifiers of these events or of those values; returns the rows deleted per table';

-- The rows of the person that are not in the identity graph: per table,
-- the condition on its row r ($1 the profiles, $2 the identifiers, $3 the
-- events, $4 the identifiers' kinds and values).
CREATE FUNCTION cdp.forget_rows(profiles bigint[], ids bigint[], events bigint[], who jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n jsonb := '{}';
	c bigint;
	t record;
BEGIN
	FOR t IN SELECT * FROM (VALUES
		(1, 'events', 'r.event_id = ANY ($3)'),
		(2, 'event_messages', 'r.event_id = ANY ($3)'),
		-- quarantined rows that carry one of the identifiers, raw or normalized
		(3, 'rejected_events', 'EXISTS (SELECT FROM jsonb_each_text(CASE WHEN jsonb_typeof(r.raw->''identifiers'') = ''object'' '
		                       'THEN r.raw->''identifiers'' END) x, jsonb_to_recordset($4) AS p(kind text, value text) '
		                       'WHERE x.key = p.kind AND (cdp.check_identifier(x.key, x.value)).normalized = p.value) '
		                       'OR EXISTS (SELECT FROM jsonb_to_recordset($4) AS p(kind text, value text) '
		                       'WHERE strpos(lower(r.raw::text), lower(p.value)) > 0)'),
		(4, 'anchor_activity', 'r.anchor_id = ANY ($2)'),
		(5, 'anchor_products', 'r.anchor_id = ANY ($2)'),
		(6, 'anchor_interest', 'r.anchor_id = ANY ($2)'),
		(7, 'anchor_traits', 'r.anchor_id = ANY ($2)'),
		(8, 'anchor_touches', 'r.anchor_id = ANY ($2)'),
		(9, 'anchor_recent_events', 'r.anchor_id = ANY ($2)'),
		(10, 'journey_events', 'r.anchor_id = ANY ($2)'),
		(11, 'journey_breaks', 'r.profile_id = ANY ($1)'),
		(12, 'journey_pending', 'r.profile_id = ANY ($1)'),
		(13, 'rfm', 'r.profile_id = ANY ($1)'),
		(14, 'clv', 'r.profile_id = ANY ($1)'),
		(15, 'clv_validation', 'r.profile_id = ANY ($1)'),
		(16, 'consents', 'r.profile_id = ANY ($1) OR (r.kind, r.value) IN (SELECT p.kind, p.value FROM jsonb_to_recordset($4) AS p(kind text, value text))'),
		(17, 'outbox', 'r.profile_id = ANY ($1) OR r.contact_id IN (SELECT t.contact_id FROM cdp.contacts t '
		               'WHERE t.profile_id = ANY ($1) OR t.identifier_id = ANY ($2))'),
		(18, 'trigger_fires', 'r.profile_id = ANY ($1)'),
		(19, 'trigger_states', 'r.profile_id = ANY ($1)'),
		(20, 'contacts', 'r.profile_id = ANY ($1) OR r.identifier_id = ANY ($2)')) x(step, tbl, cond) ORDER BY step LOOP
		EXECUTE format('DELETE FROM cdp.%I r WHERE %s', t.tbl, t.cond) USING profiles, ids, events, who;
		GET DIAGNOSTICS c = ROW_COUNT;
		n := n || jsonb_build_object(t.tbl, c);
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdp.forget_rows(bigint[], bigint[], bigint[], jsonb) IS 'Internal, called by cdp.forget: deletes a person''s events and message ids, quarantined rows carrying one of their identifiers, profile-store facts, journeys, scores, consents, outbox messages, trigger firings and contacts; returns the rows deleted per table';

CREATE FUNCTION cdp.forget(kind text, value text, reason text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	norm text;
	why text;
	live bigint;
	profiles bigint[];
	ids bigint[];
	who jsonb;
	events bigint[];
	counts jsonb;
	eid bigint;
BEGIN
	IF reason IS NULL OR btrim(reason) = '' THEN
		RAISE EXCEPTION 'an erasure needs a reason' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Give the request it answers, such as ''GDPR request 2026-118'' (no personal data: it is kept in cdp.erasures).';
	END IF;
	SELECT c.normalized, c.reason INTO norm, why FROM cdp.check_identifier(kind, value) c;
	IF norm IS NULL THEN
		RAISE EXCEPTION 'cannot erase identifier of kind "%": %', kind, coalesce(why, 'invalid')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Give an identifier kind of cdp.identity_rules and a value of that kind.';
	END IF;
	-- what bulk loads left queued is stitched first: the person is whole
	PERFORM cdp.stitch_queued();
	PERFORM pg_advisory_xact_lock(6513776, 29810);	-- the triggers'
	PERFORM pg_advisory_xact_lock(6513776, 27247);	-- the journeys'
	PERFORM pg_advisory_xact_lock(6513776, 26980);	-- stitching (src/identity.h)
	PERFORM pg_advisory_xact_lock(6513776, 28787);	-- the profile store's
	SELECT coalesce(p.merged_into, p.profile_id) INTO live
	FROM cdp.identifiers i JOIN cdp.profiles p ON p.profile_id = i.profile_id
	WHERE i.kind = kind AND i.value = norm;
	IF live IS NULL THEN
		IF EXISTS (SELECT FROM cdp.tombstones t WHERE t.hash = cdp.erasure_hash(kind, norm)) THEN
			RAISE EXCEPTION 'identifier of kind "%" was already erased', kind USING ERRCODE = 'no_data_found',
				HINT = 'cdp.tombstones keeps its keyed hash; cdp.erasures says when and why.';
		END IF;
		RAISE EXCEPTION 'no profile holds identifier of kind "%"', kind USING ERRCODE = 'no_data_found',
			HINT = 'Nothing to erase: cdp.resolve(kind, value) finds no profile.';
	END IF;
	profiles := ARRAY(SELECT p.profile_id FROM cdp.profiles p WHERE p.profile_id = live OR p.merged_into = live ORDER BY 1);
	ids := ARRAY(SELECT i.identifier_id FROM cdp.identifiers i WHERE i.profile_id = ANY (profiles) ORDER BY 1);
	who := (SELECT jsonb_agg(jsonb_build_object('kind', i.kind, 'value', i.value)) FROM cdp.identifiers i WHERE i.identifier_id = ANY (ids));
	-- their events: anchored to their identifiers, or linking or conflicting with them
	events := ARRAY(SELECT a.event_id FROM cdp.event_anchors a WHERE a.anchor_id = ANY (ids)
	                UNION SELECT l.event_id FROM cdp.identity_links l WHERE l.identifier_id = ANY (ids) OR l.anchor_id = ANY (ids)
	                UNION SELECT c.event_id FROM cdp.identity_conflicts c WHERE c.identifier_id = ANY (ids) OR c.profile_id = ANY (profiles));
	counts := cdp.forget_rows(profiles, ids, events, who);
	counts := counts || cdp.store_forget_profiles(profiles, events);
	INSERT INTO cdp.erasures (reason, profiles, identifiers, rows)
	VALUES (reason, cardinality(profiles), cardinality(ids), counts) RETURNING erasure_id INTO eid;
	INSERT INTO cdp.tombstones (hash, quick, kind, erasure_id, erased_at)
	SELECT cdp.erasure_hash(p.kind, p.value), cdp.erasure_quick_hash(p.kind, p.value), p.kind, eid, now()
	FROM jsonb_to_recordset(who) AS p(kind text, value text)
	ON CONFLICT (hash) DO NOTHING;
	RETURN jsonb_build_object('erasure_id', eid, 'profiles', cardinality(profiles), 'identifiers', cardinality(ids), 'rows', counts);
END
$$;
COMMENT ON FUNCTION cdp.forget(text, text, text) IS 'Erases the person who holds an identifier (the live profile and every profile merged into it), in one transaction: their events, identity graph, profile-store facts, journeys, scores, consents, contacts, outbox messages, trigger firings, and the quarantined rows and rejected identifiers carrying their identifiers; records an audit row without personal data (cdp.erasures) and keyed-hash tombstones of their identifiers (cdp.tombstones); returns what went';

CREATE FUNCTION cdp.forget_dry_run(kind text, value text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r jsonb;
	d text;
BEGIN
	BEGIN
		r := cdp.forget(kind, value, 'dry run');
		RAISE EXCEPTION 'cdp dry run' USING ERRCODE = 'P0001', DETAIL = r::text;
	EXCEPTION WHEN raise_exception THEN
		GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
		IF SQLERRM <> 'cdp dry run' THEN
			RAISE;
		END IF;
	END;
	RETURN (d::jsonb - 'erasure_id');
END
$$;
COMMENT ON FUNCTION cdp.forget_dry_run(text, text) IS 'What cdp.forget would erase for an identifier: the profiles, identifiers and rows per table, computed by erasing and rolling back (nothing changes)';


-- ---------------------------------------------------------------------------
-- Roles (issue 14): least privilege.  This file runs last (SQL_LAST in the
-- Makefile), when every object of schema cdp exists, and is appended as it
-- is to the upgrade script, so it must also run on an upgraded database.
--
--   cdp_tracker  loads events: cdp.track, cdp.ingest, INSERT and COPY into
--                cdp.events and cdp.event_load; reads nothing personal
--   cdp_analyst  reads the BI views and functions, contact points masked
--                unless cdp.mask_contact_points is off
--   cdp_app      application code: profile look-ups, decisions, outcomes,
--                consent, the outbox's sender functions
--   cdp_admin    configuration, merges by hand, erasure, refreshes and
--                rebuilds, jobs; reads every table
--
-- Entry points that write internal tables for a weaker caller are SECURITY
-- DEFINER with search_path pinned (pg_catalog, pg_temp: cdp's objects are
-- always written cdp.x).  The per-row functions of a load (the CHECK
-- cdp.accept_event and the default cdp.issue_event_id) run as the loader,
-- for speed, which is given what they read and write instead; the
-- statement-level trigger that ends a load (message ids, stitching, the
-- profile store) runs as the owner.
-- ---------------------------------------------------------------------------

-- Roles are cluster-wide: another database's CREATE EXTENSION cdp may have
-- made them already.
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['cdp_tracker', 'cdp_analyst', 'cdp_app', 'cdp_admin'] LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$$;

-- Who is who in the audit: a SECURITY DEFINER function runs as the owner,
-- so the decisions by hand and the erasures record the session's login.
ALTER TABLE cdp.identity_overrides ALTER COLUMN made_by SET DEFAULT session_user;
ALTER TABLE cdp.erasures ALTER COLUMN erased_by SET DEFAULT session_user;

-- ---------------------------------------------------------------------------
-- Grants.  No function of schema cdp runs for PUBLIC; each role gets its
-- own.  (A function called by another cdp function needs no grant: the
-- entry point is SECURITY DEFINER, or the caller is trusted.)
-- ---------------------------------------------------------------------------
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA cdp FROM PUBLIC;
GRANT USAGE ON SCHEMA cdp TO cdp_tracker, cdp_analyst, cdp_app, cdp_admin;

-- Grants EXECUTE on every function of schema cdp with one of these names
-- (all their overloads) to a role; definer: makes them SECURITY DEFINER,
-- with the pinned search_path.
CREATE FUNCTION cdp.grant_functions(role name, names text[], definer boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	f regprocedure;
	missing text;
BEGIN
	SELECT string_agg(n, ', ') INTO missing FROM unnest(names) n
	WHERE NOT EXISTS (SELECT FROM pg_proc p WHERE p.pronamespace = 'cdp'::regnamespace AND p.proname = n);
	IF missing IS NOT NULL THEN
		RAISE EXCEPTION 'no function cdp.% to grant', missing;
	END IF;
	FOR f IN SELECT p.oid FROM pg_proc p
	         WHERE p.pronamespace = 'cdp'::regnamespace AND p.proname = ANY (names) ORDER BY p.oid LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, role);
		IF definer THEN
			EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', f);
		END IF;
	END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION cdp.grant_functions(name, text[], boolean) FROM PUBLIC;
COMMENT ON FUNCTION cdp.grant_functions(name, text[], boolean) IS 'Internal, used by the extension script: grants EXECUTE on the functions of schema cdp with the given names to a role, and makes them SECURITY DEFINER with search_path pinned';

-- The end of a load (message ids, stitching, the profile store, consent
-- events) writes internal tables: it runs as the owner, once per statement.
ALTER FUNCTION cdp.events_after_insert() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
-- Configuration triggers that write other tables than their own.
ALTER FUNCTION cdp.offer_usage_open() SECURITY DEFINER;
ALTER FUNCTION cdp.triggers_changed() SECURITY DEFINER;

-- cdp_tracker: loads events.  The per-row check and default run as the
-- loader: they read the configuration (channels, event types, identity
-- rules, blocklist), take ids from the sequence and quarantine bad rows.
SELECT cdp.grant_functions('cdp_tracker', ARRAY['track', 'ingest'], true);
SELECT cdp.grant_functions('cdp_tracker', ARRAY['accept_event', 'issue_event_id', 'check_event'], false);
GRANT INSERT ON cdp.events, cdp.event_load TO cdp_tracker;
-- cdp.event_load stores each row with INSERT ... RETURNING event_id
GRANT SELECT (event_id) ON cdp.events TO cdp_tracker;
-- (the columns a quarantine writes: not reject_id, so that a loader cannot
-- take ids ahead of the sequence and make later quarantines fail)
GRANT INSERT (reason_code, reason, source, raw) ON cdp.rejected_events TO cdp_tracker;
GRANT USAGE ON SEQUENCE cdp.events_event_id_seq TO cdp_tracker;
GRANT SELECT ON cdp.channels, cdp.event_types, cdp.identity_rules, cdp.identifier_blocklist TO cdp_tracker;

-- cdp_analyst: the BI views (which read their tables as their owner),
-- scores, journeys and statistics; identifiers masked.
GRANT SELECT ON cdp.customer_360, cdp.profile_store, cdp.profile_traits, cdp.profile_acquisition,
	cdp.sessions, cdp.offer_performance, cdp.trigger_stats, cdp.worker_status, cdp.job_status,
	cdp.event_partitions,
	cdp.rfm, cdp.rfm_segments, cdp.clv, cdp.clv_models, cdp.clv_validation, cdp.journey_breaks,
	cdp.funnels, cdp.offers, cdp.offer_variants, cdp.offer_stats, cdp.campaigns, cdp.contact_policies,
	cdp.triggers, cdp.channels, cdp.event_types, cdp.trait_rules
	TO cdp_analyst;
SELECT cdp.grant_functions('cdp_analyst', ARRAY['funnel_stats', 'top_paths', 'journeys', 'who_viewed', 'interest',
	'job_runs'], true);
SELECT cdp.grant_functions('cdp_analyst', ARRAY['contact_points_visible', 'mask_identifier', 'session_no',
	'rate_interval', 'worker_state', 'clv', 'bgnbd_p_alive', 'bgnbd_expected_purchases', 'pareto_nbd_p_alive',
	'pareto_nbd_expected_purchases', 'nbd_expected_purchases', 'gamma_gamma_expected_value'], false);

-- cdp_app: application code, through functions only.
SELECT cdp.grant_functions('cdp_app', ARRAY['profile', 'resolve', 'decide', 'next_best_offers', 'explain_offers',
	'record_outcome', 'set_consent', 'consent_state', 'claim_messages', 'mark_delivered', 'mark_failed'], true);
SELECT cdp.grant_functions('cdp_app', ARRAY['contact_points_visible', 'mask_identifier'], false);

-- cdp_admin: configuration, merges by hand, erasure, refreshes, rebuilds
-- and jobs; reads every table; can do what the other roles can.
GRANT cdp_tracker, cdp_analyst, cdp_app TO cdp_admin;
-- every table but the partitions of cdp.events (read through cdp.events;
-- those made before an upgrade would otherwise differ from later ones)
DO $$
DECLARE
	t regclass;
BEGIN
	FOR t IN SELECT c.oid FROM pg_catalog.pg_class c
	         WHERE c.relnamespace = 'cdp'::regnamespace AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
	         ORDER BY c.oid LOOP
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_admin', t);
	END LOOP;
END
$$;
GRANT INSERT, UPDATE, DELETE ON cdp.channels, cdp.event_types, cdp.identity_rules, cdp.identifier_blocklist,
	cdp.trait_rules, cdp.funnels, cdp.offers, cdp.offer_variants, cdp.contact_policies, cdp.triggers,
	cdp.rfm_segments, cdp.campaigns
	TO cdp_admin;
GRANT USAGE ON SEQUENCE cdp.identifier_blocklist_entry_id_seq, cdp.campaigns_campaign_id_seq TO cdp_admin;
SELECT cdp.grant_functions('cdp_admin', ARRAY['merge_profiles', 'unmerge', 'forget', 'forget_dry_run',
	'rebuild_identities', 'rebuild_profile_store', 'sync', 'stitch_queued', 'refresh_scores', 'validate_clv',
	'detect_journey_breaks', 'ensure_partitions', 'drop_partitions', 'schedule_jobs', 'unschedule_jobs',
	'run_triggers', 'purge_outbox', 'learn', 'plan_campaign', 'profile_at'], true);
-- (check_eligibility, channel_check and trigger_fact_names: the checks of
-- the configuration tables, which run as the writer)
SELECT cdp.grant_functions('cdp_admin', ARRAY['default_jobs', 'check_identifier', 'normalize_email',
	'normalize_phone', 'evaluate_policy', 'consent_flags', 'check_eligibility', 'channel_check',
	'trigger_fact_names'], false);

DROP FUNCTION cdp.grant_functions(name, text[], boolean);
