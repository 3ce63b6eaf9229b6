-- Partitions: created ahead, each one validated like the parent, rows moved
-- out of the default partition, and time-range queries pruned.
BEGIN;
SELECT plan(10);
SET LOCAL timezone = 'UTC';
SET LOCAL client_min_messages = warning;

-- An event that arrives before its month has a partition waits in the default one.
SELECT cdp.track('2019-02-10 08:00:00+00', 'web', 'page_view', '{"cookie": "early"}');
SELECT is((SELECT tableoid::regclass::text FROM cdp.events WHERE identifiers->>'cookie' = 'early'),
          'cdp.events_default', 'waits in the default partition');
SELECT is(cdp.ensure_partitions('2019-01-20', '2019-03-05'), 3, 'three months created');
SELECT is((SELECT tableoid::regclass::text FROM cdp.events WHERE identifiers->>'cookie' = 'early'),
          'cdp.events_201902', 'moved to its month');
SELECT is(cdp.ensure_partitions('2019-01-01', '2019-03-31'), 0, 'creating again is a no-op');

-- A new partition carries the row check and the purge trigger.
SELECT ok(EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'cdp.events_201901'::regclass AND conname = 'events_accept'),
          'new partition has the row check');
SELECT ok(EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'cdp.events_201901'::regclass AND tgname = 'events_after_insert'),
          'new partition has the purge trigger');
INSERT INTO cdp.events_201901 (occurred_at, channel, type, identifiers)
VALUES ('2019-01-05', 'fax', 'page_view', '{"cookie": "direct"}'), ('2019-01-05', 'web', 'page_view', '{"cookie": "direct"}');
SELECT results_eq($$SELECT channel FROM cdp.events_201901 WHERE identifiers->>'cookie' = 'direct'$$,
                  ARRAY['web'], 'a direct insert into a partition is checked and purged too');

-- Queries on a time range only read the months concerned.
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE line text; plan text := '';
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP plan := plan || line || E'\n'; END LOOP;
	RETURN plan;
END $$;
SELECT matches(pg_temp.plan_of($$SELECT count(*) FROM cdp.events WHERE occurred_at >= '2019-02-01' AND occurred_at < '2019-02-15'$$),
               '^(?!.*(events_201901|events_201903|events_default)).*events_201902', 'only February is read');

-- Retention drops whole months before the given time, and nothing else.
SELECT is((SELECT count(*)::int FROM cdp.drop_partitions('2019-03-01')), 2, 'January and February dropped');
SELECT set_eq($$SELECT partition::text FROM cdp.event_partitions WHERE range_from >= '2019-01-01'$$,
              ARRAY['cdp.events_201903'], 'March is kept');

SELECT * FROM finish();
ROLLBACK;
