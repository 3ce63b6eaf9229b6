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
