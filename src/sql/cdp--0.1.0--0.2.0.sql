\echo Use "ALTER EXTENSION cdp UPDATE TO '0.2.0'" to load this file. \quit

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
	FOR p IN SELECT ep.partition::text AS name, ep.range_from, ep.range_to, ep.estimated_rows
	         FROM cdp.event_partitions ep
	         WHERE NOT ep.is_default AND ep.range_to <= older_than ORDER BY ep.range_from
	LOOP
		IF NOT dry_run THEN
			EXECUTE format('DROP TABLE %s', p.name);
			DELETE FROM cdp.event_anchors a WHERE a.occurred_at >= p.range_from AND a.occurred_at < p.range_to;
			-- journeys forget the dropped events at the next detection
			UPDATE cdp.journey_progress SET needs_full = true WHERE NOT needs_full;
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
COMMENT ON FUNCTION cdp.drop_partitions(timestamptz, boolean, boolean) IS 'Retention: drops the monthly partitions whose whole range is before older_than, and the anchors of their events, and lists them; dry_run only lists them; refuses to drop a partition that may hold events of the last month unless force';

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
