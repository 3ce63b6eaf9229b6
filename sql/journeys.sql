-- Journeys: funnels and their validation, every status of the state
-- machine on hand-made journeys (cart funnel: add_to_cart, checkout_start,
-- purchase; 7 days; a break after 1 hour), across channels, detection
-- that is idempotent, incremental (new events, a merge) and independent of
-- how often it runs, the aggregate form (also in a parallel plan),
-- sessions, funnel statistics, paths, who viewed, interest, acquisition.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';
SET client_min_messages = warning;
-- a graph of its own, with ids from 1
DROP EXTENSION cdp CASCADE;
CREATE EXTENSION cdp;
SELECT cdp.ensure_partitions('2025-01-01', '2025-12-31') > 0 AS partitions;

-- Errors as "SQLSTATE: message (hint)", for the bad-input checks.
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; hint text;
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg || CASE WHEN hint <> '' THEN ' (' || hint || ')' ELSE '' END;
END
$$;
-- One event of a customer known by customer_id (or other identifiers).
CREATE FUNCTION pg_temp.ev(at text, channel text, type text, who text, props jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE sql AS $$
	SELECT cdp.track(at::timestamptz, channel, type,
	                 CASE WHEN who LIKE '{%' THEN who::jsonb ELSE jsonb_build_object('customer_id', who) END,
	                 props)
$$;
-- The breaks, readably.
CREATE TEMP VIEW breaks AS
SELECT i.value AS who, b.funnel_id, b.journey_no AS j, b.status, b.started_at, b.reached_step AS reached,
       b.break_step AS at_step, b.last_event_at, b.broken_at, b.channel, b.resolved_at, b.resolved_channel,
       b.context
FROM cdp.journey_breaks b
JOIN cdp.identifiers i ON i.profile_id = b.profile_id AND i.kind = 'customer_id'
ORDER BY b.funnel_id, who, b.started_at;

-- 1. Funnels -------------------------------------------------------------
SELECT funnel_id, steps, conversion_window, abandon_after, min_step, builtin FROM cdp.funnels ORDER BY funnel_id;
-- a funnel of one's own: views do not count as a break (min_step 2)
INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after, min_step, description)
VALUES ('deep', '{product_view,add_to_cart,checkout_start,purchase}', '2 days', '2 hours', 2, 'test funnel');
-- bad definitions, each refused with its reason
SELECT pg_temp.try($$INSERT INTO cdp.funnels VALUES ('one', '{purchase}', '1 day', '1 hour')$$);
SELECT pg_temp.try($$INSERT INTO cdp.funnels VALUES ('dup', '{add_to_cart,purchase,add_to_cart}', '1 day', '1 hour')$$);
SELECT pg_temp.try($$INSERT INTO cdp.funnels VALUES ('typo', '{add_to_cart,purchse}', '1 day', '1 hour')$$);
SELECT pg_temp.try($$INSERT INTO cdp.funnels VALUES ('nul', ARRAY['add_to_cart', NULL], '1 day', '1 hour')$$);
SELECT pg_temp.try($$INSERT INTO cdp.funnels VALUES ('zero', '{add_to_cart,purchase}', '0', '1 hour')$$);
SELECT pg_temp.try($$INSERT INTO cdp.funnels VALUES ('neg', '{add_to_cart,purchase}', '1 day', '-1 hour')$$);
SELECT pg_temp.try($$INSERT INTO cdp.funnels VALUES ('month', '{add_to_cart,purchase}', '1 month', '1 hour')$$);
SELECT pg_temp.try($$INSERT INTO cdp.funnels VALUES ('slow', '{add_to_cart,purchase}', '1 day', '1 day')$$);
SELECT pg_temp.try($$INSERT INTO cdp.funnels VALUES ('long', '{add_to_cart,purchase}', '200000000 days', '1 hour')$$);
SELECT pg_temp.try($$INSERT INTO cdp.funnels VALUES ('far', '{add_to_cart,purchase}', '1 day', '1 hour', 3)$$);
SELECT pg_temp.try($$INSERT INTO cdp.funnels VALUES ('Bad Id', '{add_to_cart,purchase}', '1 day', '1 hour')$$);
SELECT pg_temp.try($$UPDATE cdp.funnels SET min_step = 0 WHERE funnel_id = 'cart'$$);

-- 2. Hand-made journeys ----------------------------------------------------
-- completed: cart, checkout and order within minutes
SELECT pg_temp.ev('2025-03-01 10:00', 'web', 'add_to_cart', 'C-DONE', '{"product_id": "P1", "cart_value": 20}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-01 10:10', 'web', 'checkout_start', 'C-DONE', '{"cart_value": 20}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-01 10:20', 'web', 'purchase', 'C-DONE', '{"items": ["P1"]}') > 0 AS ok;
-- recovered: left the cart 4 hours, then ordered on the same channel
SELECT pg_temp.ev('2025-03-01 10:00', 'web', 'page_view', 'C-BACK', '{"page": "/p/P2"}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-01 10:01', 'web', 'add_to_cart', 'C-BACK', '{"product_id": "P2", "cart_value": 35.5, "page": "/p/P2"}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-01 14:00', 'web', 'purchase', 'C-BACK', '{"items": ["P2"]}') > 0 AS ok;
-- converted elsewhere: a cart on the web, the order in a store the next day
SELECT pg_temp.ev('2025-03-02 10:00', 'web', 'add_to_cart', 'C-STORE', '{"product_id": "P1", "cart_value": 20}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-02 10:05', 'web', 'add_to_cart', 'C-STORE', '{"product_id": "P3", "cart_value": 70}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-03 15:00', 'store', 'purchase', 'C-STORE', '{"items": ["P1", "P3"]}') > 0 AS ok;
-- expired after a break: a cart and nothing for 7 days
SELECT pg_temp.ev('2025-03-05 10:00', 'app', 'add_to_cart', 'C-GONE', '{"product_id": "P4", "cart_value": 15}') > 0 AS ok;
-- a pause of exactly one hour is a break; the order 30 minutes later recovers it
SELECT pg_temp.ev('2025-03-06 10:00', 'web', 'add_to_cart', 'C-EXACT', '{"product_id": "P5"}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-06 11:00', 'web', 'checkout_start', 'C-EXACT') > 0 AS ok;
SELECT pg_temp.ev('2025-03-06 11:30', 'web', 'purchase', 'C-EXACT') > 0 AS ok;
-- a cart exactly 7 days after another: the first has expired, the second starts a journey
SELECT pg_temp.ev('2025-03-07 09:00', 'web', 'add_to_cart', 'C-TWICE', '{"product_id": "P6"}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-14 09:00', 'app', 'add_to_cart', 'C-TWICE', '{"product_id": "P7"}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-14 09:20', 'app', 'purchase', 'C-TWICE') > 0 AS ok;
-- open: a cart on the app the evening before as_of
SELECT pg_temp.ev('2025-03-18 20:00', 'app', 'add_to_cart', 'C-OPEN', '{"product_id": "P8", "cart_value": 99.9}') > 0 AS ok;
-- in progress: a cart 30 minutes before as_of, and a view the next day (after as_of)
SELECT pg_temp.ev('2025-03-19 23:30', 'web', 'add_to_cart', 'C-NOW', '{"product_id": "P9"}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-20 12:00', 'web', 'product_view', 'C-NOW', '{"product_id": "P9"}') > 0 AS ok;
-- deep funnel (min_step 2): views only expire without a break; a cart breaks
SELECT pg_temp.ev('2025-03-10 08:00', 'web', 'product_view', 'C-LOOK', '{"product_id": "P1"}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-10 12:00', 'web', 'product_view', 'C-LOOK', '{"product_id": "P3"}') > 0 AS ok;
-- after the deep window: the deep journey has expired (no break), the
-- browse journey broke and is converted in the store, and no cart journey
-- starts at a purchase
SELECT pg_temp.ev('2025-03-13 08:00', 'store', 'purchase', 'C-LOOK') > 0 AS ok;

-- every status, from the aggregate in plain SQL (the same state machine)
SELECT i.value AS who, (j).journey_no, (j).status, (j).broken, (j).started_at, (j).reached_step,
       (j).broken_at, (j).break_channel, (j).resolved_at, (j).resolved_channel, (j).events
FROM (SELECT a.anchor_id,
             unnest(cdp.funnel_journeys('cart', e.type, e.occurred_at, e.channel, e.event_id,
                                        '2025-03-20 00:00')) AS j
      FROM cdp.events e JOIN cdp.event_anchors a USING (event_id, occurred_at)
      GROUP BY a.anchor_id) x
JOIN cdp.identifiers i ON i.identifier_id = x.anchor_id
ORDER BY who, (j).journey_no;
SELECT i.value AS who, (j).journey_no, (j).status, (j).broken, (j).reached_step, (j).resolved_at
FROM (SELECT a.anchor_id,
             unnest(cdp.funnel_journeys('deep', e.type, e.occurred_at, e.channel, e.event_id,
                                        '2025-03-20 00:00')) AS j
      FROM cdp.events e JOIN cdp.event_anchors a USING (event_id, occurred_at)
      GROUP BY a.anchor_id) x
JOIN cdp.identifiers i ON i.identifier_id = x.anchor_id
ORDER BY who, (j).journey_no;

-- 3. Detection --------------------------------------------------------------
SELECT * FROM cdp.detect_journey_breaks('2025-03-20 00:00');
SELECT who, j, status, started_at, reached, at_step, last_event_at, broken_at, channel, resolved_at,
       resolved_channel, context FROM breaks WHERE funnel_id = 'cart';
SELECT who, funnel_id, j, status, reached, at_step, broken_at FROM breaks WHERE funnel_id <> 'cart';
SELECT as_of, last_batch_id > 0 AS batches_seen FROM cdp.journey_progress;
-- the in-progress cart breaks at 00:30, the later view wakes the profile too
SELECT i.value AS who, p.due_at FROM cdp.journey_pending p
JOIN cdp.identifiers i ON i.profile_id = p.profile_id AND i.kind = 'customer_id' ORDER BY who;

-- idempotent: the same as_of again replays nothing and changes nothing
CREATE TEMP TABLE before AS SELECT * FROM cdp.journey_breaks;
SELECT * FROM cdp.detect_journey_breaks('2025-03-20 00:00');
SELECT (SELECT count(*) FROM (SELECT * FROM cdp.journey_breaks EXCEPT SELECT * FROM before) x) AS changed,
       (SELECT count(*) FROM (SELECT * FROM before EXCEPT SELECT * FROM cdp.journey_breaks) x) AS gone;

-- as_of moves forward without new events: the cart of 23:30 breaks (open),
-- the open cart of 03-18 expires on 03-25 20:00
SELECT * FROM cdp.detect_journey_breaks('2025-03-21 00:00');
SELECT who, j, status, broken_at, resolved_at FROM breaks WHERE who IN ('C-OPEN', 'C-NOW') AND funnel_id = 'cart';
SELECT * FROM cdp.detect_journey_breaks('2025-03-26 00:00');
SELECT who, j, status, broken_at, resolved_at FROM breaks WHERE who IN ('C-OPEN', 'C-NOW') AND funnel_id = 'cart';
-- kept since its first detection
SELECT b.detected_at = o.detected_at AS detected_at_kept
FROM cdp.journey_breaks b JOIN before o USING (profile_id, funnel_id, first_event_id)
JOIN cdp.identifiers i ON i.profile_id = b.profile_id AND i.value = 'C-OPEN';

-- new events: only that profile is replayed; the open break recovers on the web
SELECT pg_temp.ev('2025-03-26 09:00', 'web', 'purchase', 'C-NOW', '{"items": ["P9"]}') > 0 AS ok;
SELECT * FROM cdp.detect_journey_breaks('2025-03-27 00:00');
SELECT who, j, status, broken_at, resolved_at, resolved_channel FROM breaks WHERE who = 'C-NOW' AND funnel_id = 'cart';

-- a late event (it occurred before the last as_of) is taken into account too
SELECT pg_temp.ev('2025-03-05 10:30', 'store', 'purchase', 'C-GONE') > 0 AS ok;
SELECT * FROM cdp.detect_journey_breaks('2025-03-27 00:00');
SELECT who, j, status, broken_at, resolved_at, resolved_channel FROM breaks WHERE who = 'C-GONE' AND funnel_id = 'cart';

-- a merge: an anonymous cart on the web (cookie only) and a known customer
-- who buys in a store; the login that joins them makes one journey,
-- converted elsewhere, and the absorbed profile's break goes
SELECT pg_temp.ev('2025-03-27 10:00', 'store', 'store_visit', 'C-MERGE') > 0 AS ok;
SELECT pg_temp.ev('2025-03-27 10:00', 'web', 'add_to_cart', '{"cookie": "c-anon"}', '{"product_id": "P2", "cart_value": 35.5}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-27 15:00', 'store', 'purchase', 'C-MERGE', '{"items": ["P2"]}') > 0 AS ok;
SELECT * FROM cdp.detect_journey_breaks('2025-03-28 00:00');
SELECT b.status, b.channel, b.context FROM cdp.journey_breaks b
JOIN cdp.identifiers i ON i.profile_id = b.profile_id AND i.value = 'c-anon';
CREATE TEMP TABLE anon_break AS
SELECT b.* FROM cdp.journey_breaks b JOIN cdp.identifiers i ON i.profile_id = b.profile_id AND i.value = 'c-anon';
SELECT pg_temp.ev('2025-03-28 09:00', 'web', 'login', '{"cookie": "c-anon", "customer_id": "C-MERGE"}') > 0 AS ok;
SELECT m.survivor = (SELECT profile_id FROM cdp.identifiers WHERE value = 'C-MERGE') AS into_the_customer,
       m.absorbed = (SELECT profile_id FROM anon_break) AS the_cart_profile_absorbed
FROM cdp.profile_merges m;
SELECT * FROM cdp.detect_journey_breaks('2025-03-29 00:00');
SELECT who, j, status, started_at, broken_at, channel, resolved_at, resolved_channel FROM breaks WHERE who = 'C-MERGE';
SELECT count(*) AS breaks_of_dead_profiles FROM cdp.journey_breaks b
JOIN cdp.profiles p USING (profile_id) WHERE p.merged_into IS NOT NULL;
SELECT b.detected_at = a.detected_at AS detected_at_kept_across_the_merge, b.profile_id <> a.profile_id AS moved
FROM cdp.journey_breaks b JOIN anon_break a USING (funnel_id, first_event_id);

-- the result does not depend on how often detection runs: a rebuild from
-- scratch at the same as_of gives the same breaks
CREATE TEMP TABLE incremental AS SELECT * FROM cdp.journey_breaks;
SELECT mode, profiles, breaks FROM cdp.detect_journey_breaks('2025-03-29 00:00', rebuild => true);
SELECT (SELECT count(*) FROM (SELECT profile_id, funnel_id, first_event_id, journey_no, started_at, reached_step,
                                     break_step, last_event_at, last_event_id, broken_at, channel, status,
                                     resolved_at, resolved_channel, resolved_event_id, context FROM incremental
                              EXCEPT SELECT profile_id, funnel_id, first_event_id, journey_no, started_at, reached_step,
                                     break_step, last_event_at, last_event_id, broken_at, channel, status,
                                     resolved_at, resolved_channel, resolved_event_id, context FROM cdp.journey_breaks) x) AS differ,
       (SELECT count(*) FROM incremental) = (SELECT count(*) FROM cdp.journey_breaks) AS same_count;
-- an earlier as_of recomputes everything as of then
SELECT mode FROM cdp.detect_journey_breaks('2025-03-20 00:00');
SELECT who, status FROM breaks WHERE who IN ('C-OPEN', 'C-NOW') AND funnel_id = 'cart';
-- a changed funnel replays every profile
UPDATE cdp.funnels SET abandon_after = '5 hours' WHERE funnel_id = 'cart';
SELECT mode FROM cdp.detect_journey_breaks('2025-03-29 00:00');
SELECT who, status, broken_at FROM breaks WHERE funnel_id = 'cart' AND who IN ('C-BACK', 'C-EXACT', 'C-STORE');
UPDATE cdp.funnels SET abandon_after = '1 hour' WHERE funnel_id = 'cart';
SELECT mode FROM cdp.detect_journey_breaks('2025-03-29 00:00');
SELECT pg_temp.try($$SELECT cdp.detect_journey_breaks(NULL)$$);
SELECT pg_temp.try($$SELECT cdp.detect_journey_breaks('infinity')$$);
-- a deleted event leaves the journeys: the next run replays everything
SELECT pg_temp.ev('2025-03-28 09:00', 'web', 'add_to_cart', 'C-ERASED', '{"product_id": "P9"}') > 0 AS ok;
SELECT mode FROM cdp.detect_journey_breaks('2025-03-29 00:00');
SELECT who, status FROM breaks WHERE who = 'C-ERASED';
DELETE FROM cdp.events WHERE identifiers->>'customer_id' = 'C-ERASED';
SELECT needs_full FROM cdp.journey_progress;
SELECT mode FROM cdp.detect_journey_breaks('2025-03-29 00:00');
SELECT count(*) AS erased_breaks FROM breaks WHERE who = 'C-ERASED';
SELECT needs_full FROM cdp.journey_progress;
-- detection needs read committed (it must see what committed while it waited)
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.try($$SELECT cdp.detect_journey_breaks('2025-03-29 00:00')$$);
ROLLBACK;

-- 4. Every journey, for BI: statuses, step times, errors -------------------
SELECT pg_temp.ev('2025-03-29 10:00', 'web', 'add_to_cart', 'C-ERR', '{"product_id": "P1"}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-29 10:05', 'web', 'checkout_start', 'C-ERR', '{"error": "payment_declined"}') > 0 AS ok;
SELECT pg_temp.ev('2025-03-29 10:06', 'web', 'checkout_start', 'C-ERR') > 0 AS ok;
SELECT pg_temp.ev('2025-03-29 10:09', 'web', 'purchase', 'C-ERR') > 0 AS ok;
SELECT i.value AS who, j.journey_no, j.status, j.reached_step, j.events, j.step_reached_at, j.step_errors
FROM cdp.journeys('cart', '2025-03-30 00:00') j
JOIN cdp.identifiers i ON i.profile_id = j.profile_id AND i.kind = 'customer_id'
ORDER BY who, j.journey_no;
SELECT * FROM cdp.funnel_stats('cart', '2025-03-01', '2025-04-01', '2025-04-30');
SELECT step, type, journeys, to_next, drop_off FROM cdp.funnel_stats('deep', as_of => '2025-04-30');
SELECT pg_temp.try($$SELECT * FROM cdp.funnel_stats('nope')$$);
SELECT pg_temp.try($$SELECT * FROM cdp.funnel_stats(NULL)$$);
SELECT pg_temp.try($$SELECT * FROM cdp.journeys('nope')$$);
SELECT pg_temp.try($$SELECT * FROM cdp.journeys('cart', '2025-03-30', '2025-04-01', '2025-03-01')$$);
SELECT * FROM cdp.top_paths('cart', 'type', 2, as_of => '2025-04-30');
SELECT outcome, rank, path FROM cdp.top_paths('cart', 'page', 3, n => 2, as_of => '2025-04-30');
SELECT pg_temp.try($$SELECT * FROM cdp.top_paths('cart', 'url')$$);
SELECT pg_temp.try($$SELECT * FROM cdp.top_paths('cart', 'type', 0)$$);
SELECT pg_temp.try($$SELECT * FROM cdp.top_paths(NULL)$$);

-- 5. The aggregate: any grouping, the same in a parallel plan ---------------
CREATE TABLE journey_input AS
SELECT i.profile_id, e.type, e.occurred_at, e.channel, e.event_id
FROM cdp.events e JOIN cdp.event_anchors a USING (event_id, occurred_at)
JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id;
ANALYZE journey_input;
SELECT count(*) AS journeys FROM (SELECT unnest(cdp.funnel_journeys('cart', type, occurred_at, channel, event_id, '2025-04-30'))
                                  FROM journey_input GROUP BY profile_id) x;
-- one group of every row (as if one person): partial states of two
-- workers, serialized and combined
CREATE TEMP TABLE serial_all AS
SELECT cdp.funnel_journeys('cart', type, occurred_at, channel, event_id, '2025-04-30')::text AS j FROM journey_input;
ALTER TABLE journey_input SET (parallel_workers = 2);
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT cdp.funnel_journeys('cart', type, occurred_at, channel, event_id, '2025-04-30') FROM journey_input;
WITH par AS MATERIALIZED (
	SELECT cdp.funnel_journeys('cart', type, occurred_at, channel, event_id, '2025-04-30') AS j FROM journey_input)
SELECT par.j::text = serial_all.j AS same_in_parallel, cardinality(par.j) AS journeys FROM par, serial_all;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
SELECT cardinality(cdp.funnel_journeys('cart', type, occurred_at, channel, event_id, '2025-04-30')) AS none
FROM journey_input WHERE false;
SELECT pg_temp.try($$SELECT cdp.funnel_journeys(f, 'purchase', now(), 'web', 1, now()) FROM (VALUES ('cart'), ('browse')) v(f)$$);
SELECT pg_temp.try($$SELECT cdp.funnel_journeys('cart', 'purchase', now(), 'web', 1, t) FROM (VALUES (now()), ('2025-01-01')) v(t)$$);
SELECT pg_temp.try($$SELECT cdp.funnel_journeys('nope', 'purchase', now(), 'web', 1, now())$$);
DROP TABLE journey_input;

-- 6. Sessions ------------------------------------------------------------------
SELECT pg_temp.ev('2025-04-01 09:00', 'web', 'page_view', 'C-SESS', '{"page": "/", "utm_source": "google", "utm_medium": "cpc", "referrer": "https://www.google.com/"}') > 0 AS ok;
SELECT pg_temp.ev('2025-04-01 09:10', 'web', 'product_view', 'C-SESS', '{"product_id": "P1", "category": "kitchen"}') > 0 AS ok;
SELECT pg_temp.ev('2025-04-01 09:39', 'web', 'page_view', 'C-SESS', '{"page": "/c/kitchen"}') > 0 AS ok;
-- exactly 30 minutes later: a new session
SELECT pg_temp.ev('2025-04-01 10:09', 'web', 'product_view', 'C-SESS', '{"product_id": "P3", "category": "garden"}') > 0 AS ok;
SELECT pg_temp.ev('2025-04-01 10:12', 'web', 'add_to_cart', 'C-SESS', '{"product_id": "P3", "category": "garden"}') > 0 AS ok;
SELECT pg_temp.ev('2025-04-01 10:15', 'web', 'purchase', 'C-SESS', '{"items": ["P3"]}') > 0 AS ok;
-- meanwhile on the app: its own session
SELECT pg_temp.ev('2025-04-01 09:20', 'app', 'product_view', 'C-SESS', '{"product_id": "P1", "category": "kitchen"}') > 0 AS ok;
SELECT pg_temp.ev('2025-04-20 18:00', 'web', 'page_view', 'C-SESS', '{"page": "/deals", "referrer": "https://www.hotukdeals.com/x"}') > 0 AS ok;
SELECT s.channel, s.session_no, s.started_at, s.ended_at, s.events, s.landing, s.exit, s.source, s.converted
FROM cdp.sessions s JOIN cdp.identifiers i ON i.profile_id = s.profile_id AND i.value = 'C-SESS'
ORDER BY s.channel, s.session_no;
-- the window function, with a timeout of one's own
SELECT occurred_at, cdp.session_no(occurred_at, event_id) OVER w AS default_timeout,
       cdp.session_no(occurred_at, event_id, '10 minutes') OVER w AS ten_minutes
FROM cdp.events e JOIN cdp.event_anchors a USING (event_id, occurred_at)
JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id AND i.value = 'C-SESS'
WHERE e.channel = 'web'
WINDOW w AS (PARTITION BY a.anchor_id ORDER BY occurred_at, event_id)
ORDER BY occurred_at;
SELECT pg_temp.try($$SELECT cdp.session_no(t, 1) OVER (ORDER BY t DESC) FROM (VALUES ('2025-01-01'::timestamptz), ('2025-01-02')) v(t)$$);
SELECT pg_temp.try($$SELECT cdp.session_no(t, 1, '0') OVER (ORDER BY t) FROM (VALUES ('2025-01-01'::timestamptz)) v(t)$$);

-- 7. Who viewed, interest, acquisition -------------------------------------------
SELECT i.value AS who, w.views, w.first_viewed_at, w.last_viewed_at, w.channels, w.wishlisted, w.added_to_cart, w.purchased
FROM cdp.who_viewed('P1', '2025-01-01') w JOIN cdp.identifiers i ON i.profile_id = w.profile_id AND i.kind = 'customer_id'
ORDER BY who;
SELECT i.value AS who, x.category, round(x.score::numeric, 4) AS score, x.events, x.last_at
FROM cdp.interest(as_of => '2025-04-02 00:00', half_life => '1 day') x
JOIN cdp.identifiers i ON i.profile_id = x.profile_id AND i.kind = 'customer_id'
ORDER BY x.score DESC, who, x.category;
SELECT i.value AS who, round(x.score::numeric, 4) AS score
FROM cdp.interest('garden', '1 day', '2025-04-02 00:00') x
JOIN cdp.identifiers i ON i.profile_id = x.profile_id AND i.kind = 'customer_id';
SELECT pg_temp.try($$SELECT * FROM cdp.interest(half_life => '0')$$);
SELECT first_source, first_medium, first_campaign, first_referrer, first_channel, first_at,
       last_source, last_medium, last_campaign, last_referrer, last_channel, last_at, touches
FROM cdp.profile_acquisition a JOIN cdp.identifiers i ON i.profile_id = a.profile_id AND i.value = 'C-SESS';
