-- Partitions: monthly (UTC) partitions created ahead of need; what arrived
-- before its partition existed is moved out of the default partition.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET client_min_messages = notice;

CREATE TEMP TABLE before AS SELECT count(*) AS n, sum(amount) AS amount FROM cdp.events;

SELECT cdp.ensure_partitions('2025-02-15', '2025-04-30');
SELECT partition, range_from, range_to, is_default FROM cdp.event_partitions ORDER BY range_from NULLS FIRST;
-- nothing was lost or changed by the move
SELECT (SELECT n FROM before) = count(*) AS same_count, (SELECT amount FROM before) = sum(amount) AS same_amount
FROM cdp.events;
SELECT tableoid::regclass AS partition, count(*) FROM cdp.events GROUP BY 1 ORDER BY 1;

-- idempotent
SELECT cdp.ensure_partitions('2025-03-01', '2025-03-31');

-- new rows are routed to their month and still validated
SELECT cdp.track('2025-03-31 23:59:59.999999+00', 'web', 'page_view', '{"cookie": "edge"}') > 0 AS tracked;
SELECT cdp.track('2025-04-01 00:00:00+00', 'web', 'page_view', '{"cookie": "edge"}') > 0 AS tracked;
SELECT tableoid::regclass AS partition, occurred_at FROM cdp.events WHERE identifiers->>'cookie' = 'edge' ORDER BY 2;
-- a direct insert into a partition is checked too
TRUNCATE cdp.rejected_events;
INSERT INTO cdp.events_202503 (occurred_at, channel, type, identifiers) VALUES ('2025-03-10', 'fax', 'page_view', '{"cookie": "x"}');
SELECT reason_code FROM cdp.rejected_events;

-- queries on a time range read only the partitions concerned
EXPLAIN (COSTS OFF) SELECT count(*) FROM cdp.events WHERE occurred_at >= '2025-03-01' AND occurred_at < '2025-03-15';

-- bad ranges
SELECT cdp.ensure_partitions('2025-05-01', '2025-04-01');
SELECT cdp.ensure_partitions(NULL, '2025-04-01');
SELECT cdp.ensure_partitions('1990-01-01', '2045-01-01');

-- retention drops whole months only
SELECT * FROM cdp.drop_partitions('2025-03-15');
SELECT partition FROM cdp.event_partitions ORDER BY range_from NULLS FIRST;
SELECT count(*) AS events_before_march FROM cdp.events WHERE occurred_at < '2025-03-01';
SELECT cdp.drop_partitions(NULL);

-- dry run: lists what would be dropped, drops nothing
SELECT * FROM cdp.drop_partitions('2025-04-15', dry_run => true);
SELECT partition FROM cdp.event_partitions ORDER BY range_from NULLS FIRST;

-- the guard: a call that would drop a partition that may hold events of
-- the last month (here older_than => now(), a mistake for now() minus the
-- retention period) is refused unless forced
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; hint text;
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RETURN regexp_replace(regexp_replace(st || ': ' || msg || coalesce(E'\n  hint: ' || nullif(hint, ''), ''),
	                                     '\d{4}-\d\d-\d\d [0-9:.+]+', '<now>', 'g'),
	                      'events_\d{6}', 'events_<last month>', 'g');
END $$;
BEGIN;
SELECT cdp.ensure_partitions(now() - interval '1 month', now()) AS created;
SELECT pg_temp.try($$SELECT cdp.drop_partitions(now())$$);
SELECT count(*) AS partitions FROM cdp.event_partitions;
SET client_min_messages = error;
SELECT count(*) AS would_drop FROM cdp.drop_partitions(now(), dry_run => true);
SELECT count(*) AS dropped FROM cdp.drop_partitions(now(), force => true);
RESET client_min_messages;
SELECT partition = format('cdp.events_%s', to_char(now(), 'YYYYMM'))::regclass AS only_this_month_left
FROM cdp.event_partitions WHERE NOT is_default;
ROLLBACK;
-- a retention period of a month or more needs no force: with partitions
-- up to this month, every one that ends before a month ago goes, unforced,
-- and the ones that may hold the last month's events stay
BEGIN;
SELECT cdp.ensure_partitions(now() - interval '3 months', now()) > 0 AS created;
SET client_min_messages = error;
SELECT count(*) > 0 AS dropped FROM cdp.drop_partitions(now() - interval '1 month');
RESET client_min_messages;
SELECT bool_and(range_to > now() - interval '1 month') AS only_recent_left,
       count(*) >= 1 AS some_left
FROM cdp.event_partitions WHERE NOT is_default;
ROLLBACK;
SELECT cdp.drop_partitions('2025-04-01', dry_run => NULL);
