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
