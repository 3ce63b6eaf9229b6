
-- ---------------------------------------------------------------------------
-- Journeys: funnels, broken journeys (abandonment) and how they end,
-- sessions, and the analyses BI tools read.  The state machine is in
-- src/core/funnel.c (its header states the rules), sessionization in
-- src/core/session.c; the glue is src/journey.c, src/journey_detect.c and
-- src/journey_agg.c.
-- ---------------------------------------------------------------------------

CREATE TABLE cdp.funnels (
	funnel_id         text     PRIMARY KEY CHECK (funnel_id ~ '^[a-z][a-z0-9_]{0,31}$'),
	steps             text[]   NOT NULL,
	conversion_window interval NOT NULL,
	abandon_after     interval NOT NULL,
	min_step          integer  NOT NULL DEFAULT 1,
	description       text     NOT NULL DEFAULT '',
	builtin           boolean  NOT NULL DEFAULT false
);
COMMENT ON TABLE cdp.funnels IS 'Funnels: ordered event types a journey goes through, how long it may take and when a pause is an abandonment (rules: src/core/funnel.h, README "Journeys")';
COMMENT ON COLUMN cdp.funnels.funnel_id IS 'Funnel key (lower case)';
COMMENT ON COLUMN cdp.funnels.steps IS 'Event types of the steps, in order, each once: a journey starts at the first and completes at the last';
COMMENT ON COLUMN cdp.funnels.conversion_window IS 'How long after its first step a journey may complete; it expires then (a fixed duration: a day is 24 hours; months are not allowed)';
COMMENT ON COLUMN cdp.funnels.abandon_after IS 'Inactivity after which a journey that reached min_step breaks (is abandoned); shorter than conversion_window';
COMMENT ON COLUMN cdp.funnels.min_step IS 'Step a journey must have reached for a pause to count as a break (1 to the number of steps)';
COMMENT ON COLUMN cdp.funnels.description IS 'What the funnel follows';
COMMENT ON COLUMN cdp.funnels.builtin IS 'Shipped with cdp (pg_dump keeps only the rows users added)';

CREATE FUNCTION cdp.funnels_check() RETURNS trigger
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

CREATE TRIGGER funnels_check BEFORE INSERT OR UPDATE ON cdp.funnels
	FOR EACH ROW EXECUTE FUNCTION cdp.funnels_check();

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

INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after, min_step, description, builtin) VALUES
	('cart',   '{add_to_cart,checkout_start,purchase}', '7 days', '1 hour', 1,
	 'Cart abandonment: a cart left for an hour without an order', true),
	('browse', '{product_view,add_to_cart,purchase}',   '7 days', '1 day',  1,
	 'Browse abandonment: products looked at, then a day without coming back', true);

CREATE TABLE cdp.journey_breaks (
	profile_id        bigint      NOT NULL,
	funnel_id         text        NOT NULL,
	first_event_id    bigint      NOT NULL,
	journey_no        bigint      NOT NULL,
	started_at        timestamptz NOT NULL,
	reached_step      integer     NOT NULL,
	break_step        integer     NOT NULL,
	last_event_at     timestamptz NOT NULL,
	last_event_id     bigint      NOT NULL,
	broken_at         timestamptz NOT NULL,
	channel           text        NOT NULL,
	status            text        NOT NULL CHECK (status IN ('open', 'recovered', 'converted_elsewhere', 'expired')),
	resolved_at       timestamptz,
	resolved_channel  text,
	resolved_event_id bigint,
	context           jsonb       NOT NULL,
	detected_at       timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (profile_id, funnel_id, first_event_id)
);
COMMENT ON TABLE cdp.journey_breaks IS 'Broken journeys (abandonments) and how they ended, as of the last cdp.detect_journey_breaks (its as_of is in cdp.journey_progress); derived from events, rebuilt by cdp.detect_journey_breaks(rebuild => true)';
COMMENT ON COLUMN cdp.journey_breaks.profile_id IS 'Live profile whose journey broke';
COMMENT ON COLUMN cdp.journey_breaks.funnel_id IS 'Funnel (cdp.funnels)';
COMMENT ON COLUMN cdp.journey_breaks.first_event_id IS 'Event that started the journey (its step 1); with funnel_id it identifies the journey across merges';
COMMENT ON COLUMN cdp.journey_breaks.journey_no IS 'Number of the journey among the profile''s journeys in this funnel (1, 2, ...)';
COMMENT ON COLUMN cdp.journey_breaks.started_at IS 'Time of the journey''s first step';
COMMENT ON COLUMN cdp.journey_breaks.reached_step IS 'Furthest step the journey has reached (so far, or when it ended)';
COMMENT ON COLUMN cdp.journey_breaks.break_step IS 'Furthest step reached when it broke';
COMMENT ON COLUMN cdp.journey_breaks.last_event_at IS 'Time of the last funnel event before the pause (the break is abandon_after later)';
COMMENT ON COLUMN cdp.journey_breaks.last_event_id IS 'That last event';
COMMENT ON COLUMN cdp.journey_breaks.broken_at IS 'When the journey broke: last_event_at + abandon_after';
COMMENT ON COLUMN cdp.journey_breaks.channel IS 'Channel of the last funnel event before the pause';
COMMENT ON COLUMN cdp.journey_breaks.status IS 'open (not over), recovered (completed later on the same channel), converted_elsewhere (completed on another channel), expired (the window ended without completion)';
COMMENT ON COLUMN cdp.journey_breaks.resolved_at IS 'When it was completed, or when its window ended (expired); NULL while open';
COMMENT ON COLUMN cdp.journey_breaks.resolved_channel IS 'Channel of the completing event (recovered, converted_elsewhere)';
COMMENT ON COLUMN cdp.journey_breaks.resolved_event_id IS 'The completing event (recovered, converted_elsewhere)';
COMMENT ON COLUMN cdp.journey_breaks.context IS 'The journey up to the break: {"products": [product_id, ...], "cart_value": last cart_value seen, "channel": ..., "last_page": last page property seen}';
COMMENT ON COLUMN cdp.journey_breaks.detected_at IS 'When a detection run first found the break (kept when it is found again)';
-- the breaks to act on; the others are read by scans
CREATE INDEX ON cdp.journey_breaks (funnel_id, broken_at) WHERE status = 'open';

CREATE TABLE cdp.journey_events (
	anchor_id bigint PRIMARY KEY,
	events    bytea  NOT NULL
);
COMMENT ON TABLE cdp.journey_events IS 'The funnel event log: per anchor identifier, its events of the funnels'' step types with what journeys need of them, packed; kept by cdp.detect_journey_breaks so that its incremental runs read the history of the profiles they replay by index instead of scanning cdp.events (internal)';
COMMENT ON COLUMN cdp.journey_events.anchor_id IS 'Anchor identifier (cdp.event_anchors); its profile is the identifier''s';
COMMENT ON COLUMN cdp.journey_events.events IS 'Its funnel events, one record each (event_id, occurred_at, cart_value, error, type, channel, product_id, page), appended as they are stitched; the format is in src/journey.c';

CREATE TABLE cdp.journey_pending (
	profile_id bigint      PRIMARY KEY,
	due_at     timestamptz NOT NULL
);
COMMENT ON TABLE cdp.journey_pending IS 'Profiles whose journeys change without any new event (a break or an expiry falls due, or an event lies after the last as_of): detection replays them once its as_of reaches due_at';
COMMENT ON COLUMN cdp.journey_pending.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.journey_pending.due_at IS 'Earliest time at which one of its journeys changes';
CREATE INDEX ON cdp.journey_pending (due_at);

CREATE TABLE cdp.journey_progress (
	singleton     boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
	as_of         timestamptz NOT NULL,
	last_batch_id bigint      NOT NULL,
	last_merge_id bigint      NOT NULL,
	last_move_id  bigint      NOT NULL,
	funnels       jsonb       NOT NULL,
	ran_at        timestamptz NOT NULL,
	needs_full    boolean     NOT NULL DEFAULT false
);
COMMENT ON TABLE cdp.journey_progress IS 'Where the last cdp.detect_journey_breaks stopped (one row, written in the same transaction as the breaks)';
COMMENT ON COLUMN cdp.journey_progress.singleton IS 'Always true: there is one row';
COMMENT ON COLUMN cdp.journey_progress.as_of IS 'Time the breaks are as of: events up to it count';
COMMENT ON COLUMN cdp.journey_progress.last_batch_id IS 'Last cdp.stitch_batches batch whose events were taken into account';
COMMENT ON COLUMN cdp.journey_progress.last_merge_id IS 'Last cdp.profile_merges merge taken into account';
COMMENT ON COLUMN cdp.journey_progress.last_move_id IS 'Last cdp.identifier_moves move taken into account';
COMMENT ON COLUMN cdp.journey_progress.funnels IS 'The funnel definitions used; a change makes the next run replay every profile';
COMMENT ON COLUMN cdp.journey_progress.ran_at IS 'When the last run committed its work (transaction time)';
COMMENT ON COLUMN cdp.journey_progress.needs_full IS 'Events were deleted (or partitions dropped) since the last run: the next one replays every profile';

-- Deleted events must leave the journeys and the funnel event log: the
-- next run replays everything (deletes are rare: corrections, erasure).
-- Rows a load removes at its end (quarantined, retries) were never seen.
CREATE FUNCTION cdp.events_deleted() RETURNS trigger
	AS 'MODULE_PATHNAME', 'cdp_events_deleted' LANGUAGE C;
COMMENT ON FUNCTION cdp.events_deleted() IS 'Trigger: after events are deleted, makes the next cdp.detect_journey_breaks replay every profile (not for the quarantined rows and retries a load removes)';
CREATE TRIGGER events_deleted AFTER DELETE OR TRUNCATE ON cdp.events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_deleted();
CREATE TRIGGER events_deleted AFTER DELETE OR TRUNCATE ON cdp.events_default
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_deleted();

SELECT pg_catalog.pg_extension_config_dump('cdp.funnels', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('cdp.journey_breaks', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.journey_events', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.journey_pending', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.journey_progress', '');

CREATE FUNCTION cdp.detect_journey_breaks(as_of timestamptz DEFAULT now(), rebuild boolean DEFAULT false,
	OUT mode text, OUT profiles bigint, OUT journeys bigint, OUT breaks bigint, OUT open_breaks bigint)
	AS 'MODULE_PATHNAME', 'cdp_detect_journey_breaks' LANGUAGE C VOLATILE
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION cdp.detect_journey_breaks(timestamptz, boolean) IS 'Brings cdp.journey_breaks up to as_of: replays the journeys of the profiles with new events, merges or moves since the last run and of those with a transition due (incremental), or of every profile (first run, changed funnels, an earlier as_of, or rebuild); returns the mode, the profiles replayed, their journeys, the breaks written and how many are open';

CREATE TYPE cdp.journey AS (
	journey_no       bigint,
	status           text,
	broken           boolean,
	started_at       timestamptz,
	last_event_at    timestamptz,
	reached_step     integer,
	events           bigint,
	start_channel    text,
	broken_at        timestamptz,
	break_step       integer,
	break_channel    text,
	resolved_at      timestamptz,
	resolved_channel text,
	first_event_id   bigint,
	last_event_id    bigint,
	break_event_id   bigint
);
COMMENT ON TYPE cdp.journey IS 'One journey through a funnel, as cdp.funnel_journeys returns them';
COMMENT ON COLUMN cdp.journey.journey_no IS 'Number of the journey in its group (1, 2, ...)';
COMMENT ON COLUMN cdp.journey.status IS 'in_progress, open, completed, recovered, converted_elsewhere or expired';
COMMENT ON COLUMN cdp.journey.broken IS 'Whether it broke (open, recovered, converted_elsewhere, or expired after a break)';
COMMENT ON COLUMN cdp.journey.started_at IS 'Time of its first step';
COMMENT ON COLUMN cdp.journey.last_event_at IS 'Time of its last funnel event';
COMMENT ON COLUMN cdp.journey.reached_step IS 'Furthest step reached';
COMMENT ON COLUMN cdp.journey.events IS 'Funnel events in the journey';
COMMENT ON COLUMN cdp.journey.start_channel IS 'Channel of its first step';
COMMENT ON COLUMN cdp.journey.broken_at IS 'When it broke';
COMMENT ON COLUMN cdp.journey.break_step IS 'Furthest step reached when it broke';
COMMENT ON COLUMN cdp.journey.break_channel IS 'Channel of the last event before the break';
COMMENT ON COLUMN cdp.journey.resolved_at IS 'When it completed, or when its window ended';
COMMENT ON COLUMN cdp.journey.resolved_channel IS 'Channel of the completing event';
COMMENT ON COLUMN cdp.journey.first_event_id IS 'Its first event';
COMMENT ON COLUMN cdp.journey.last_event_id IS 'Its last funnel event';
COMMENT ON COLUMN cdp.journey.break_event_id IS 'The last event before the break';

CREATE FUNCTION cdp.funnel_journeys_trans(internal, text, text, timestamptz, text, bigint, timestamptz)
	RETURNS internal AS 'MODULE_PATHNAME', 'cdp_funnel_journeys_trans' LANGUAGE C PARALLEL SAFE;
COMMENT ON FUNCTION cdp.funnel_journeys_trans(internal, text, text, timestamptz, text, bigint, timestamptz) IS 'Internal: transition function of cdp.funnel_journeys';
CREATE FUNCTION cdp.funnel_journeys_final(internal) RETURNS cdp.journey[]
	AS 'MODULE_PATHNAME', 'cdp_funnel_journeys_final' LANGUAGE C PARALLEL SAFE;
COMMENT ON FUNCTION cdp.funnel_journeys_final(internal) IS 'Internal: final function of cdp.funnel_journeys';
CREATE FUNCTION cdp.funnel_journeys_combine(internal, internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_funnel_journeys_combine' LANGUAGE C PARALLEL SAFE;
COMMENT ON FUNCTION cdp.funnel_journeys_combine(internal, internal) IS 'Internal: combines two partial states of cdp.funnel_journeys';
CREATE FUNCTION cdp.funnel_journeys_serial(internal) RETURNS bytea
	AS 'MODULE_PATHNAME', 'cdp_funnel_journeys_serial' LANGUAGE C STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.funnel_journeys_serial(internal) IS 'Internal: serial form of a cdp.funnel_journeys state';
CREATE FUNCTION cdp.funnel_journeys_deserial(bytea, internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_funnel_journeys_deserial' LANGUAGE C STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.funnel_journeys_deserial(bytea, internal) IS 'Internal: reads the serial form of a cdp.funnel_journeys state, checking it';

CREATE AGGREGATE cdp.funnel_journeys(funnel_id text, type text, occurred_at timestamptz, channel text,
                                     event_id bigint, as_of timestamptz) (
	SFUNC = cdp.funnel_journeys_trans,
	STYPE = internal,
	FINALFUNC = cdp.funnel_journeys_final,
	COMBINEFUNC = cdp.funnel_journeys_combine,
	SERIALFUNC = cdp.funnel_journeys_serial,
	DESERIALFUNC = cdp.funnel_journeys_deserial,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.funnel_journeys(text, text, timestamptz, text, bigint, timestamptz) IS 'The journeys through a funnel of a group of events (any order; the same funnel and as_of on every row), with their status at as_of: the state machine of cdp.detect_journey_breaks in plain SQL';

CREATE FUNCTION cdp.journeys(funnel text DEFAULT NULL, as_of timestamptz DEFAULT now(),
                             started_from timestamptz DEFAULT NULL, started_to timestamptz DEFAULT NULL,
                             profile_ids bigint[] DEFAULT NULL)
RETURNS TABLE (profile_id bigint, funnel_id text, journey_no bigint, status text, broken boolean,
               started_at timestamptz, last_event_at timestamptz, reached_step integer, events bigint,
               start_channel text, broken_at timestamptz, break_step integer, break_channel text,
               resolved_at timestamptz, resolved_channel text, first_event_id bigint, last_event_id bigint,
               break_event_id bigint, step_reached_at timestamptz[], step_errors integer[])
	AS 'MODULE_PATHNAME', 'cdp_journeys' LANGUAGE C STABLE
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION cdp.journeys(text, timestamptz, timestamptz, timestamptz, bigint[]) IS 'Every journey of a funnel (NULL: of every funnel) started in [started_from, started_to), with its status at as_of, when each step was first reached and how many events with an error property each step had; replayed from the events of every profile (or of profile_ids)';

CREATE FUNCTION cdp.funnel_stats(funnel_id text, started_from timestamptz DEFAULT NULL,
                                 started_to timestamptz DEFAULT NULL, as_of timestamptz DEFAULT now())
RETURNS TABLE (step integer, type text, journeys bigint, of_started numeric, to_next bigint,
               conversion numeric, drop_off bigint, median_to_next interval, error_events bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s text[];
BEGIN
	IF funnel_stats.funnel_id IS NULL THEN
		RAISE EXCEPTION 'funnel_id must not be null'
			USING ERRCODE = 'null_value_not_allowed', HINT = 'Name one of cdp.funnels, such as cart.';
	END IF;
	SELECT f.steps INTO s FROM cdp.funnels f WHERE f.funnel_id = funnel_stats.funnel_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'funnel "%" does not exist', funnel_stats.funnel_id
			USING ERRCODE = 'undefined_object', HINT = 'Funnels are listed in cdp.funnels.';
	END IF;
	RETURN QUERY
	WITH j AS (
		SELECT x.reached_step, x.step_reached_at AS at, x.step_errors AS errors
		FROM cdp.journeys(funnel_stats.funnel_id, funnel_stats.as_of, started_from, started_to) x),
	per AS (
		SELECT k.step::integer AS step, k.type,
		       count(*) FILTER (WHERE j.reached_step >= k.step) AS reached,
		       count(*) FILTER (WHERE j.reached_step > k.step) AS next,
		       percentile_cont(0.5) WITHIN GROUP (ORDER BY j.at[k.step + 1] - j.at[k.step])
		           FILTER (WHERE j.reached_step > k.step) AS median,
		       coalesce(sum(j.errors[k.step]), 0) AS errors
		FROM unnest(s) WITH ORDINALITY k(type, step) LEFT JOIN j ON true
		GROUP BY k.step, k.type)
	SELECT per.step, per.type, per.reached,
	       round(per.reached::numeric / nullif(first_value(per.reached) OVER (ORDER BY per.step), 0), 4),
	       CASE WHEN per.step < cardinality(s) THEN per.next END,
	       CASE WHEN per.step < cardinality(s) THEN round(per.next::numeric / nullif(per.reached, 0), 4) END,
	       CASE WHEN per.step < cardinality(s) THEN per.reached - per.next END,
	       CASE WHEN per.step < cardinality(s) THEN per.median END,
	       per.errors
	FROM per ORDER BY per.step;
END
$$;
COMMENT ON FUNCTION cdp.funnel_stats(text, timestamptz, timestamptz, timestamptz) IS 'Per step of a funnel, over the journeys started in [started_from, started_to) with their status at as_of: journeys that reached it (or a later step), their share of those started, how many reached the next step, the conversion, the drop-off, the median time to the next step and the events with an error property at that step';

CREATE FUNCTION cdp.top_paths(funnel text DEFAULT 'cart', path_of text DEFAULT 'type', length integer DEFAULT 3,
                              started_from timestamptz DEFAULT NULL, started_to timestamptz DEFAULT NULL,
                              n integer DEFAULT 10, as_of timestamptz DEFAULT now())
RETURNS TABLE (outcome text, rank integer, path text, journeys bigint, share numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF funnel IS NULL THEN
		RAISE EXCEPTION 'funnel must not be null'
			USING ERRCODE = 'null_value_not_allowed',
			      HINT = 'Paths are of one funnel''s journeys: name one of cdp.funnels, such as cart.';
	END IF;
	IF path_of IS NULL OR path_of NOT IN ('type', 'page') THEN
		RAISE EXCEPTION 'path_of must be type or page, not %', coalesce('"' || path_of || '"', 'null')
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'type: the sequence of event types; page: of pages (a product''s id where an event has no page).';
	END IF;
	IF length IS NULL OR length < 1 OR length > 50 THEN
		RAISE EXCEPTION 'length must be between 1 and 50'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'It is how many events of the session each path shows, ending with the purchase or the last event before the break.';
	END IF;
	IF n IS NULL OR n < 1 THEN
		RAISE EXCEPTION 'n must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN QUERY
	WITH j AS (
		SELECT x.profile_id, x.status, x.broken, x.last_event_id, x.break_event_id
		FROM cdp.journeys(top_paths.funnel, top_paths.as_of, started_from, started_to) x),
	targets AS (
		SELECT j.profile_id, j.last_event_id AS event_id, 'converted'::text AS outcome
		FROM j WHERE j.status IN ('completed', 'recovered', 'converted_elsewhere')
		UNION ALL
		SELECT j.profile_id, j.break_event_id, 'dropped'::text FROM j WHERE j.broken),
	ev AS (
		SELECT i.profile_id, e.event_id, e.occurred_at, e.channel,
		       CASE WHEN path_of = 'type' THEN e.type
		            ELSE coalesce(e.properties ->> 'page', e.properties ->> 'product_id', e.type) END AS label
		FROM cdp.events e
		JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
		JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
		WHERE i.profile_id IN (SELECT profile_id FROM targets) AND e.occurred_at <= top_paths.as_of),
	sess AS (
		SELECT ev.*, cdp.session_no(ev.occurred_at, ev.event_id)
		             OVER (PARTITION BY ev.profile_id, ev.channel ORDER BY ev.occurred_at, ev.event_id) AS session_no
		FROM ev),
	paths AS (
		SELECT sess.event_id,
		       array_agg(sess.label) OVER (PARTITION BY sess.profile_id, sess.channel, sess.session_no
		                                   ORDER BY sess.occurred_at, sess.event_id
		                                   ROWS BETWEEN top_paths.length - 1 PRECEDING AND CURRENT ROW) AS steps
		FROM sess),
	counted AS (
		SELECT t.outcome, array_to_string(p.steps, ' > ') AS path, count(*) AS journeys
		FROM targets t JOIN paths p USING (event_id)
		GROUP BY 1, 2),
	ranked AS (
		SELECT c.*, row_number() OVER (PARTITION BY c.outcome ORDER BY c.journeys DESC, c.path)::integer AS rank,
		       round(c.journeys::numeric / sum(c.journeys) OVER (PARTITION BY c.outcome), 4) AS share
		FROM counted c)
	SELECT r.outcome, r.rank, r.path, r.journeys, r.share
	FROM ranked r WHERE r.rank <= n ORDER BY r.outcome, r.rank;
END
$$;
COMMENT ON FUNCTION cdp.top_paths(text, text, integer, timestamptz, timestamptz, integer, timestamptz) IS 'The most frequent paths (the last length events of the session, as event types or pages) that led to the completion of a journey of the funnel (converted) and to its break (dropped), over journeys started in [started_from, started_to); top n of each';

CREATE FUNCTION cdp.session_no(occurred_at timestamptz, event_id bigint) RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_session_no' LANGUAGE C WINDOW STABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.session_no(timestamptz, bigint) IS 'Window function: the session of each row, a new one after cdp.session_timeout of inactivity; use OVER (PARTITION BY profile_id, channel ORDER BY occurred_at, event_id)';
CREATE FUNCTION cdp.session_no(occurred_at timestamptz, event_id bigint, timeout interval) RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_session_no' LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.session_no(timestamptz, bigint, interval) IS 'Window function: the session of each row, a new one after timeout of inactivity; use OVER (PARTITION BY profile_id, channel ORDER BY occurred_at, event_id)';

CREATE VIEW cdp.sessions AS
WITH ev AS (
	SELECT i.profile_id, e.channel, e.occurred_at, e.event_id, e.type, e.amount,
	       coalesce(e.properties ->> 'page', e.properties ->> 'product_id') AS place,
	       e.properties ->> 'utm_source' AS utm_source,
	       cdp.session_no(e.occurred_at, e.event_id)
	           OVER (PARTITION BY i.profile_id, e.channel ORDER BY e.occurred_at, e.event_id) AS session_no
	FROM cdp.events e
	JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id)
SELECT profile_id, channel, session_no,
       min(occurred_at) AS started_at, max(occurred_at) AS ended_at,
       count(*) AS events,
       (array_agg(place ORDER BY occurred_at, event_id) FILTER (WHERE place IS NOT NULL))[1] AS landing,
       (array_agg(place ORDER BY occurred_at DESC, event_id DESC) FILTER (WHERE place IS NOT NULL))[1] AS exit,
       (array_agg(utm_source ORDER BY occurred_at, event_id))[1] AS source,
       count(*) FILTER (WHERE type = 'purchase') > 0 AS converted,
       coalesce(sum(amount) FILTER (WHERE type = 'purchase'), 0) AS revenue,
       min(event_id) AS first_event_id
FROM ev
GROUP BY profile_id, channel, session_no;
COMMENT ON VIEW cdp.sessions IS 'Sessions: the events of a profile on one channel with no pause of cdp.session_timeout (default 30 minutes) or more; computed from the events when read';
COMMENT ON COLUMN cdp.sessions.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.sessions.channel IS 'Channel (sessions never span channels)';
COMMENT ON COLUMN cdp.sessions.session_no IS 'Number of the session for the profile and channel (1, 2, ...)';
COMMENT ON COLUMN cdp.sessions.started_at IS 'Time of its first event';
COMMENT ON COLUMN cdp.sessions.ended_at IS 'Time of its last event';
COMMENT ON COLUMN cdp.sessions.events IS 'Number of events';
COMMENT ON COLUMN cdp.sessions.landing IS 'Landing page: the page (or, for a product event, the product id) of its first event that has one';
COMMENT ON COLUMN cdp.sessions.exit IS 'Exit page: the page or product id of its last event that has one';
COMMENT ON COLUMN cdp.sessions.source IS 'utm_source of its first event, if any';
COMMENT ON COLUMN cdp.sessions.converted IS 'Whether it has a purchase';
COMMENT ON COLUMN cdp.sessions.revenue IS 'Sum of its purchases';
COMMENT ON COLUMN cdp.sessions.first_event_id IS 'Smallest event id of the session';

CREATE FUNCTION cdp.who_viewed(product_id text, since timestamptz DEFAULT now() - interval '30 days')
RETURNS TABLE (profile_id bigint, views bigint, first_viewed_at timestamptz, last_viewed_at timestamptz,
               channels text[], wishlisted boolean, added_to_cart boolean, purchased boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT i.profile_id,
	       count(*) FILTER (WHERE e.type = 'product_view'),
	       min(e.occurred_at) FILTER (WHERE e.type = 'product_view'),
	       max(e.occurred_at) FILTER (WHERE e.type = 'product_view'),
	       array_agg(DISTINCT e.channel ORDER BY e.channel),
	       count(*) FILTER (WHERE e.type = 'wishlist_add') > 0,
	       count(*) FILTER (WHERE e.type = 'add_to_cart') > 0,
	       count(*) FILTER (WHERE e.type = 'purchase') > 0
	FROM cdp.events e
	JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	WHERE e.occurred_at >= coalesce(who_viewed.since, '-infinity')
	  AND e.type IN ('product_view', 'wishlist_add', 'add_to_cart', 'purchase')
	  AND (e.properties ->> 'product_id' = who_viewed.product_id
	       OR (e.type = 'purchase' AND e.properties -> 'items' ? who_viewed.product_id))
	GROUP BY i.profile_id
	HAVING count(*) FILTER (WHERE e.type = 'product_view') > 0
	ORDER BY 4 DESC, 1
$$;
COMMENT ON FUNCTION cdp.who_viewed(text, timestamptz) IS 'Profiles that viewed a product since a time (default: the last 30 days), most recent first: how often, when, on which channels, and whether they wish-listed it, put it in a cart or bought it (in the same period)';

CREATE FUNCTION cdp.interest(only_category text DEFAULT NULL, half_life interval DEFAULT '30 days',
                             as_of timestamptz DEFAULT now(), horizon interval DEFAULT '365 days')
RETURNS TABLE (profile_id bigint, category text, score double precision, events bigint, last_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF half_life IS NULL OR half_life <= interval '0' THEN
		RAISE EXCEPTION 'half_life must be a positive interval'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'An event counts half as much when it is half_life old, such as ''30 days''.';
	END IF;
	IF horizon IS NULL OR horizon <= interval '0' THEN
		RAISE EXCEPTION 'horizon must be a positive interval'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Events older than horizon are not read; a few half-lives are enough.';
	END IF;
	RETURN QUERY
	SELECT i.profile_id, e.properties ->> 'category',
	       sum(w.weight * power(0.5, extract(epoch FROM interest.as_of - e.occurred_at)
	                                 / extract(epoch FROM interest.half_life)))::double precision,
	       count(*), max(e.occurred_at)
	FROM cdp.events e
	JOIN (VALUES ('product_view', 1.0), ('wishlist_add', 2.0), ('add_to_cart', 3.0)) w(type, weight)
	  ON w.type = e.type
	JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	WHERE e.occurred_at <= interest.as_of AND e.occurred_at > interest.as_of - interest.horizon
	  AND e.properties ? 'category'
	  AND (only_category IS NULL OR e.properties ->> 'category' = only_category)
	GROUP BY 1, 2
	ORDER BY 3 DESC, 1, 2;
END
$$;
COMMENT ON FUNCTION cdp.interest(text, interval, timestamptz, interval) IS 'Interest of each profile in each product category (or only in only_category): the sum over its product views (weight 1), wish-list additions (2) and cart additions (3) of the category within horizon, each halved every half_life of age at as_of; highest first: who is interested in a category';

CREATE VIEW cdp.profile_acquisition AS
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
COMMENT ON VIEW cdp.profile_acquisition IS 'First-touch and last-touch acquisition source of each profile: its first and last events that carry a utm_source or a referrer (a referrer alone gives its host as source and referral as medium)';
COMMENT ON COLUMN cdp.profile_acquisition.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.profile_acquisition.first_source IS 'utm_source of the first touch, or its referrer''s host';
COMMENT ON COLUMN cdp.profile_acquisition.first_medium IS 'utm_medium of the first touch, or referral';
COMMENT ON COLUMN cdp.profile_acquisition.first_campaign IS 'utm_campaign of the first touch';
COMMENT ON COLUMN cdp.profile_acquisition.first_referrer IS 'Referrer of the first touch';
COMMENT ON COLUMN cdp.profile_acquisition.first_channel IS 'Channel of the first touch';
COMMENT ON COLUMN cdp.profile_acquisition.first_at IS 'When the first touch happened';
COMMENT ON COLUMN cdp.profile_acquisition.last_source IS 'utm_source of the last touch, or its referrer''s host';
COMMENT ON COLUMN cdp.profile_acquisition.last_medium IS 'utm_medium of the last touch, or referral';
COMMENT ON COLUMN cdp.profile_acquisition.last_campaign IS 'utm_campaign of the last touch';
COMMENT ON COLUMN cdp.profile_acquisition.last_referrer IS 'Referrer of the last touch';
COMMENT ON COLUMN cdp.profile_acquisition.last_channel IS 'Channel of the last touch';
COMMENT ON COLUMN cdp.profile_acquisition.last_at IS 'When the last touch happened';
COMMENT ON COLUMN cdp.profile_acquisition.touches IS 'Events with a utm_source or a referrer';
