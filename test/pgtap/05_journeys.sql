-- Journeys: the contract (tables, views, functions), and on random
-- shoppers: detection gives the same breaks however often it runs and
-- however the events arrive (in several loads, late, with detection in
-- between), the same as a rebuild, as the aggregate cdp.funnel_journeys
-- and as cdp.journeys.
BEGIN;
SELECT plan(21);
SET LOCAL timezone = 'UTC';
SET LOCAL client_min_messages = warning;

SELECT has_table('cdp', 'funnels', 'funnel definitions');
SELECT has_table('cdp', 'journey_breaks', 'broken journeys');
SELECT has_table('cdp', 'journey_events', 'the funnel event log');
SELECT has_table('cdp', 'journey_pending', 'profiles with a transition due');
SELECT has_table('cdp', 'journey_progress', 'where detection stopped');
SELECT has_view('cdp', 'sessions', 'sessions');
SELECT has_view('cdp', 'profile_acquisition', 'first and last touch');
SELECT has_function('cdp', 'detect_journey_breaks', ARRAY['timestamp with time zone', 'boolean']);
SELECT has_function('cdp', 'funnel_stats', ARRAY['text', 'timestamp with time zone', 'timestamp with time zone', 'timestamp with time zone']);
SELECT columns_are('cdp', 'journey_breaks',
	ARRAY['profile_id', 'funnel_id', 'first_event_id', 'journey_no', 'started_at', 'reached_step', 'break_step',
	      'last_event_at', 'last_event_id', 'broken_at', 'channel', 'status', 'resolved_at', 'resolved_channel',
	      'resolved_event_id', 'context', 'detected_at']);
SELECT set_eq($$SELECT funnel_id FROM cdp.funnels WHERE builtin$$, ARRAY['browse', 'cart'], 'two built-in funnels');

-- 300 shoppers, each with 5 visits on random days of March 2025, about 8
-- events a visit a few minutes apart, on the web, the app or in a store
SELECT setseed(0.42);
CREATE TEMP TABLE shop AS
SELECT 'S' || s AS who, v,
       '2025-03-01'::timestamptz + (random() * 30) * interval '1 day' AS visit_at,
       (ARRAY['web', 'web', 'app', 'store'])[1 + floor(random() * 4)::int] AS channel
FROM generate_series(1, 300) s, generate_series(1, 5) v;
CREATE TEMP TABLE shop_events AS
SELECT row_number() OVER () AS n, who,
       visit_at + k * (random() * 15) * interval '1 minute' AS occurred_at,
       CASE WHEN random() < 0.1 THEN (ARRAY['web', 'app', 'store'])[1 + floor(random() * 3)::int] ELSE channel END AS channel,
       (ARRAY['page_view', 'product_view', 'product_view', 'product_view', 'add_to_cart', 'add_to_cart',
              'checkout_start', 'purchase', 'wishlist_add'])[1 + floor(random() * 9)::int] AS type,
       jsonb_build_object('product_id', 'P' || floor(random() * 50)::int) AS props
FROM shop, generate_series(0, 7) k;
SELECT cdp.ensure_partitions('2025-03-01', '2025-04-30');

-- loaded in three statements, the last one's events older than the others
-- (late events), with detection runs in between
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties)
SELECT occurred_at, channel, type, jsonb_build_object('customer_id', who), props FROM shop_events
WHERE occurred_at >= '2025-03-10' AND n % 2 = 0;
SELECT cdp.detect_journey_breaks('2025-03-20');
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties)
SELECT occurred_at, channel, type, jsonb_build_object('customer_id', who), props FROM shop_events
WHERE occurred_at >= '2025-03-10' AND n % 2 = 1;
SELECT cdp.detect_journey_breaks('2025-03-25');
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties)
SELECT occurred_at, channel, type, jsonb_build_object('customer_id', who), props FROM shop_events
WHERE occurred_at < '2025-03-10';
-- then detection every 3 hours up to April 10
SELECT count(*) FROM (SELECT cdp.detect_journey_breaks(t)
                      FROM generate_series('2025-03-25 03:00'::timestamptz, '2025-04-10', '3 hours') t) x;
SELECT ok((SELECT count(*) FROM cdp.journey_breaks) > 300, 'a few hundred breaks');
SELECT ok((SELECT count(DISTINCT status) FROM cdp.journey_breaks) = 3, 'breaks recovered, converted elsewhere and expired');
CREATE TEMP TABLE often AS SELECT * FROM cdp.journey_breaks;

SELECT is((SELECT mode FROM cdp.detect_journey_breaks('2025-04-10', rebuild => true)), 'full', 'rebuild');
CREATE TEMP VIEW cols AS
SELECT profile_id, funnel_id, first_event_id, journey_no, started_at, reached_step, break_step, last_event_at,
       last_event_id, broken_at, channel, status, resolved_at, resolved_channel, resolved_event_id, context
FROM cdp.journey_breaks;
SELECT set_eq($$SELECT * FROM cols$$,
	$$SELECT profile_id, funnel_id, first_event_id, journey_no, started_at, reached_step, break_step, last_event_at,
	         last_event_id, broken_at, channel, status, resolved_at, resolved_channel, resolved_event_id, context FROM often$$,
	'loads in pieces, late events and detection every 3 hours give the breaks of one rebuild');
SELECT ok((SELECT bool_and(o.detected_at = b.detected_at) FROM often o JOIN cdp.journey_breaks b
           USING (profile_id, funnel_id, first_event_id)), 'a rebuild keeps when each break was first detected');

-- the aggregate in plain SQL agrees, journey by journey (statistics first:
-- autovacuum may have left those of an earlier test's rolled-back load,
-- reltuples 0, and a plan for empty tables takes minutes here)
ANALYZE cdp.events, cdp.event_anchors, cdp.identifiers;
CREATE TEMP TABLE agg AS
SELECT x.profile_id, x.funnel_id, (x.j).*
FROM (SELECT i.profile_id, f.funnel_id,
             unnest(cdp.funnel_journeys(f.funnel_id, e.type, e.occurred_at, e.channel, e.event_id, '2025-04-10')) AS j
      FROM cdp.events e JOIN cdp.event_anchors a USING (event_id, occurred_at)
      JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
      CROSS JOIN cdp.funnels f
      GROUP BY i.profile_id, f.funnel_id) x;
SELECT set_eq($$SELECT profile_id, funnel_id, first_event_id, journey_no, started_at, break_step, broken_at,
                       break_channel, status, resolved_at, resolved_channel FROM agg WHERE broken$$,
	$$SELECT profile_id, funnel_id, first_event_id, journey_no, started_at, break_step, broken_at,
	         channel, status, resolved_at, resolved_channel FROM cdp.journey_breaks$$,
	'the broken journeys of cdp.funnel_journeys are cdp.journey_breaks');
SELECT set_eq($$SELECT profile_id, funnel_id, journey_no, status, broken, started_at, last_event_at, reached_step,
                       events, start_channel, broken_at, break_step, break_channel, resolved_at, resolved_channel,
                       first_event_id, last_event_id, break_event_id FROM agg$$,
	$$SELECT profile_id, funnel_id, journey_no, status, broken, started_at, last_event_at, reached_step, events,
	         start_channel, broken_at, break_step, break_channel, resolved_at, resolved_channel, first_event_id,
	         last_event_id, break_event_id FROM cdp.journeys(NULL, '2025-04-10')$$,
	'cdp.journeys lists the journeys of cdp.funnel_journeys');
SELECT set_eq($$SELECT DISTINCT status FROM agg$$, ARRAY['completed', 'recovered', 'converted_elsewhere', 'expired'],
	'journeys of every final status at the end (none in progress)');

-- an earlier as_of recomputes the statuses of then
SELECT is((SELECT mode FROM cdp.detect_journey_breaks('2025-03-15')), 'full', 'an earlier as_of replays everything');
SELECT set_eq($$SELECT profile_id, funnel_id, first_event_id, status, broken_at FROM cdp.journey_breaks$$,
	$$SELECT x.profile_id, x.funnel_id, (x.j).first_event_id, (x.j).status, (x.j).broken_at
	  FROM (SELECT i.profile_id, f.funnel_id,
	               unnest(cdp.funnel_journeys(f.funnel_id, e.type, e.occurred_at, e.channel, e.event_id, '2025-03-15')) AS j
	        FROM cdp.events e JOIN cdp.event_anchors a USING (event_id, occurred_at)
	        JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	        CROSS JOIN cdp.funnels f GROUP BY i.profile_id, f.funnel_id) x WHERE (x.j).broken$$,
	'breaks as of March 15, open ones included');

SELECT * FROM finish();
ROLLBACK;
