-- Validation: cdp.track raises a clear error for each reason; cdp.check_event
-- tells the reason without raising.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- Runs a statement and shows SQLSTATE, message and hint of its error.
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; hint text;
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg || coalesce(E'\n  hint: ' || nullif(hint, ''), '');
END $$;

-- occurred_at
SELECT pg_temp.try($$SELECT cdp.track(NULL, 'web', 'page_view', '{"cookie": "c1"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('1970-01-01 00:00:00+00', 'web', 'page_view', '{"cookie": "c1"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('1969-07-20 20:17:40+00', 'web', 'page_view', '{"cookie": "c1"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('-infinity', 'web', 'page_view', '{"cookie": "c1"}')$$);
SELECT regexp_replace(pg_temp.try($$SELECT cdp.track(now() + interval '2 days', 'web', 'page_view', '{"cookie": "c1"}')$$),
                      '\d{4}-\d\d-\d\d [0-9:.+]+', '<time>');
SELECT pg_temp.try($$SELECT cdp.track('infinity', 'web', 'page_view', '{"cookie": "c1"}')$$) LIKE '22008: occurred_at infinity is in the future%' AS infinity_is_future;
-- within the allowed clock skew, and the skew is a setting
SELECT (cdp.check_event(now() + interval '1 hour', 'web', 'page_view', '{"cookie": "c1"}')).reason_code IS NULL AS accepted;
SET cdp.max_clock_skew = '10min';
SELECT (cdp.check_event(now() + interval '1 hour', 'web', 'page_view', '{"cookie": "c1"}')).reason_code;
RESET cdp.max_clock_skew;
SHOW cdp.max_clock_skew;

-- channel
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', NULL, 'page_view', '{"cookie": "c1"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'Web', 'page_view', '{"cookie": "c1"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'fax', 'page_view', '{"cookie": "c1"}')$$);

-- type
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', NULL, '{"cookie": "c1"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', '', '{"cookie": "c1"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', '   ', '{"cookie": "c1"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view ', '{"cookie": "c1"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', repeat('x', 101), '{"cookie": "c1"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'Order Completed', '{"cookie": "c1"}')$$) AS custom_type;

-- identifiers
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', NULL)$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '{}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '["c1"]')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '"c1"')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '{"Email": "a@b.c"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '{"e-mail": "a@b.c"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '{"": "a@b.c"}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '{"email": ""}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '{"email": "  "}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '{"email": null}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '{"phone": 7700900123}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '{"cookie": ["a", "b"]}')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', jsonb_build_object('cookie', E'a\nb'))$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', jsonb_build_object('cookie', repeat('x', 300)))$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view',
                     (SELECT jsonb_object_agg('k' || i, 'v') FROM generate_series(1, 51) i))$$);

-- properties, amount, source
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '{"cookie": "c1"}', '[1, 2]')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'web', 'page_view', '{"cookie": "c1"}', '42')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'store', 'purchase', '{"loyalty_card": "L1"}', '{}', 'NaN')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'store', 'purchase', '{"loyalty_card": "L1"}', '{}', 'Infinity')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'store', 'purchase', '{"loyalty_card": "L1"}', '{}', 10, '')$$);
SELECT pg_temp.try($$SELECT cdp.track('2025-01-01', 'store', 'purchase', '{"loyalty_card": "L1"}', '{}', 10, E'pos\n')$$);

-- values in messages are cut at 80 bytes, on a character boundary
SELECT pg_temp.try(format($$SELECT cdp.track('2025-01-01', %L, 'page_view', '{"cookie": "c1"}')$$, repeat('é', 50)));

-- NULL properties become {}; a valid event gives NULLs from check_event
SELECT * FROM cdp.check_event('2025-01-01', 'web', 'page_view', '{"cookie": "c1"}', NULL);
SELECT * FROM cdp.check_event(NULL, NULL, NULL, NULL);

-- only the event with a custom type was stored; track never quarantines
SELECT type FROM cdp.events WHERE occurred_at < '2025-01-02' OR occurred_at > now();
SELECT count(*) AS rejected FROM cdp.rejected_events;

-- Configuration is checked when it is written: each bad write below is
-- refused (it would make every later load or run fail), and loads and runs
-- still work afterwards.
SET client_min_messages = warning;

-- a blocklist pattern must compile, as it is matched: lower-cased
SELECT pg_temp.try($$INSERT INTO cdp.identifier_blocklist (kind, value, is_pattern, reason)
                     VALUES ('email', '(unclosed', true, 'typo')$$);
SELECT pg_temp.try($$INSERT INTO cdp.identifier_blocklist (kind, value, is_pattern, reason)
                     VALUES (NULL, 'a\Zb', true, '\Z becomes \z, which is no escape')$$);
SELECT pg_temp.try($$UPDATE cdp.identifier_blocklist SET is_pattern = true, value = '[a-'
                     WHERE value = 'a@a.com'$$);
SELECT pg_temp.try($$INSERT INTO cdp.identifier_blocklist (kind, value, is_pattern, reason)
                     VALUES ('email', '(unclosed', false, 'an exact value need not compile')$$);
BEGIN;
SELECT cdp.track('2025-01-02', 'web', 'page_view', '{"email": "ann@x.org"}') > 0 AS loads;
ROLLBACK;
SELECT (cdp.check_identifier('email', '(unclosed')).reason IS NOT NULL AS exact_value_blocked;
DELETE FROM cdp.identifier_blocklist WHERE value = '(unclosed';

-- at most 64 identity rules
SELECT pg_temp.try($$INSERT INTO cdp.identity_rules (kind, priority, max_per_profile)
                     SELECT 'k' || g, 1000 + g, 0 FROM generate_series(1, 60) g$$);
SELECT count(*) AS rules FROM cdp.identity_rules;
BEGIN;
INSERT INTO cdp.identity_rules (kind, priority, max_per_profile)
SELECT 'k' || g, 1000 + g, 0 FROM generate_series(1, 58) g;
SELECT pg_temp.try($$INSERT INTO cdp.identity_rules (kind, priority, max_per_profile) VALUES ('k59', 1059, 0)$$);
SELECT cdp.track('2025-01-02', 'web', 'page_view', '{"k58": "x", "email": "ann@x.org"}') > 0 AS loads_with_64;
ROLLBACK;

-- cdp.identity_rules is never empty: no TRUNCATE, no DELETE of every rule
-- (checked at commit, so that a transaction may replace the rules)
SELECT pg_temp.try($$TRUNCATE cdp.identity_rules$$);
BEGIN;
DELETE FROM cdp.identity_rules;
COMMIT;
BEGIN;
DELETE FROM cdp.identity_rules WHERE kind <> 'cookie';
SELECT pg_temp.try($$DELETE FROM cdp.identity_rules WHERE kind = 'cookie'$$);
SELECT pg_temp.try($$SET CONSTRAINTS cdp.identity_rules_not_empty IMMEDIATE$$);
ROLLBACK;
CREATE TEMP TABLE saved_rules AS SELECT * FROM cdp.identity_rules;
BEGIN;
DELETE FROM cdp.identity_rules;
INSERT INTO cdp.identity_rules SELECT * FROM saved_rules;
COMMIT;
SELECT count(*) AS rules FROM cdp.identity_rules;
BEGIN;
SELECT cdp.track('2025-01-02', 'web', 'page_view', '{"email": "ann@x.org"}') > 0 AS loads;
SELECT (cdp.rebuild_identities()).identifiers > 0 AS rebuilds;
ROLLBACK;

-- cdp.channels is never empty either
SELECT pg_temp.try($$TRUNCATE cdp.channels$$);
BEGIN;
DELETE FROM cdp.channels;
COMMIT;
SELECT count(*) AS channels FROM cdp.channels;

-- funnels: at most 64 step types, in one funnel and over all of them
INSERT INTO cdp.event_types (type, category, description)
SELECT 'step_' || g, 'test', 'a step type of the tests' FROM generate_series(1, 1000) g;
SELECT pg_temp.try($$INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after)
                     SELECT 'huge', array_agg('step_' || g ORDER BY g), '7 days', '1 hour'
                     FROM generate_series(1, 1000) g$$);
SELECT count(DISTINCT s) AS step_types FROM cdp.funnels, unnest(steps) s;
BEGIN;
INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after)
SELECT 'long', array_agg('step_' || g ORDER BY g), '7 days', '1 hour' FROM generate_series(1, 60) g;
SELECT pg_temp.try($$INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after)
                     VALUES ('one_more', '{step_1,step_61}', '7 days', '1 hour')$$);
SELECT pg_temp.try($$UPDATE cdp.funnels SET steps = '{product_view,add_to_cart,step_61,purchase}'
                     WHERE funnel_id = 'browse'$$);
INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after)
VALUES ('reuse', '{step_1,step_60,purchase}', '7 days', '1 hour');
SELECT mode FROM cdp.detect_journey_breaks('2025-02-01');
ROLLBACK;
DELETE FROM cdp.event_types WHERE category = 'test';
RESET client_min_messages;
