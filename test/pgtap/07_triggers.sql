-- Triggers and the outbox, run by hand (cdp.run_triggers; the worker's
-- runs are in test/triggers.sh): validation when written; an event trigger
-- with a condition on the event; exactly once across runs; old moments
-- ignored (max_age); re-entry (every_time, once_per_period, once); a break
-- trigger after its delay with the cart in the payload; a break completed
-- during the delay and a disabled trigger drop the moment at once; an exit
-- condition; the recovery of a cart attributed to the contact (and to the
-- holdout's); quiet hours hold the message (not_before); fact triggers
-- fire on a crossing, not on the baseline; the sender's functions (claim,
-- delivered, failed with retry and dead-letter, purge).
BEGIN;
SELECT plan(82);
SET LOCAL timezone = 'UTC';
SET LOCAL client_min_messages = warning;
SET LOCAL cdp.offer_seed = 7;
SET LOCAL cdp.default_timezone = 'UTC';

SELECT has_table('cdp', 'triggers', 'triggers');
SELECT has_table('cdp', 'trigger_fires', 'the firings');
SELECT has_table('cdp', 'outbox', 'the outbox');
SELECT has_view('cdp', 'trigger_stats', 'trigger statistics');
SELECT has_function('cdp', 'claim_messages', ARRAY['integer', 'interval', 'text']);
SELECT has_function('cdp', 'mark_delivered', ARRAY['bigint', 'integer']);
SELECT has_function('cdp', 'mark_failed', ARRAY['bigint', 'text', 'boolean', 'integer']);

-- ---------------------------------------------------------------------------
-- Validation when written.
-- ---------------------------------------------------------------------------
INSERT INTO cdp.offers (offer_id, name, channels, value, payload) VALUES
	('sorry10', 'Sorry: 10 % off', '{email}', 5, '{"code": "SORRY10"}'),
	('cart_back', 'Your cart is waiting', '{email}', 10, '{"template": "cart"}'),
	('welcome', 'Welcome back', '{email}', 3, '{"template": "welcome"}');
INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after) VALUES
	('fast_cart', '{add_to_cart,checkout_start,purchase}', '1 day', '10 minutes');

SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event) VALUES ('Bad-Id', 'complaint')$$,
	'22023', 'invalid trigger id "Bad-Id"', 'a trigger id is a lower-case word');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id) VALUES ('t')$$,
	'22023', 'trigger "t" must fire on exactly one of on_event, on_break and on_fact', 'a trigger fires on something');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event, on_break) VALUES ('t', 'complaint', 'cart')$$,
	'22023', 'trigger "t" must fire on exactly one of on_event, on_break and on_fact', '... on one thing only');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event) VALUES ('t', 'complain')$$,
	'22023', 'trigger "t": unknown event type "complain"', 'an unknown event type');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_break) VALUES ('t', 'kart')$$,
	'22023', 'trigger "t": unknown funnel "kart"', 'an unknown funnel');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_fact, condition) VALUES ('t', 'p_alive', '{"fact": "clv", "gt": 1}')$$,
	'22023', 'trigger "t": condition must test fact "p_alive"', 'a fact trigger''s condition tests its fact');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event, condition) VALUES ('t', 'complaint', '{"all": [{"fact": "event", "gte": 2}]}')$$,
	'22023', 'invalid eligibility rule: eligibility.all[0]: fact "event" needs a "key"', 'a rule is checked, with its path');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_fact, condition) VALUES ('t', 'clv', '{"all": [{"fact": "clv", "gt": 1}, {"fact": "event", "key": "x", "eq": 1}]}')$$,
	'22023', 'trigger "t": fact "event" has no value for a fact trigger', 'a fact trigger has no event');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event, channel) VALUES ('t', 'complaint', 'fax')$$,
	'22023', 'unknown channel "fax"', 'an unknown channel');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event, offers) VALUES ('t', 'complaint', '{sorry10,nope}')$$,
	'22023', 'trigger "t": unknown offer "nope"', 'an unknown offer');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event, delay) VALUES ('t', 'complaint', '-1 hour')$$,
	'22023', 'trigger "t": invalid delay -01:00:00', 'a negative delay');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event, delay, max_age) VALUES ('t', 'complaint', '1 mon', '1 year')$$,
	'22023', 'trigger "t": invalid delay 1 mon', 'a delay in months');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event, delay) VALUES ('t', 'complaint', '2 days')$$,
	'22023', 'trigger "t": max_age 1 day must be positive and at least the delay', 'max_age covers the delay');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event, reentry) VALUES ('t', 'complaint', 'once_per_break')$$,
	'22023', 'trigger "t": invalid reentry "once_per_break"', 'once_per_break is for break triggers');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_break, reentry) VALUES ('t', 'cart', 'every_time')$$,
	'22023', 'trigger "t": invalid reentry "every_time"', 'a break trigger fires once per break');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event, reentry) VALUES ('t', 'complaint', 'once_per_period')$$,
	'22023', 'trigger "t": reentry_period NULL does not go with reentry once_per_period', 'once_per_period needs its period');
SELECT throws_ok($$INSERT INTO cdp.triggers (trigger_id, on_event, reentry_period) VALUES ('t', 'complaint', '1 day')$$,
	'22023', 'trigger "t": reentry_period 1 day does not go with reentry every_time', 'a period only with once_per_period');

-- ---------------------------------------------------------------------------
-- An event trigger.
-- ---------------------------------------------------------------------------
SELECT cdp.ensure_partitions(now() - interval '1 month', now() + interval '1 month');
SELECT is((SELECT entered + fired FROM cdp.run_triggers()), 0, 'the first run starts from now');
INSERT INTO cdp.triggers (trigger_id, on_event, channel, offers, condition) VALUES
	('apology', 'complaint', 'email', '{sorry10}', '{"fact": "event", "key": "severity", "gte": 2}');
SELECT is((SELECT reentry FROM cdp.triggers WHERE trigger_id = 'apology'), 'every_time', 'an event trigger re-enters every time by default');
SELECT cdp.track(now() - interval '1 minute', 'call_center', 'complaint', '{"email": "ann@x.org"}', '{"severity": 3}');
SELECT cdp.track(now() - interval '1 minute', 'call_center', 'complaint', '{"email": "bob@x.org"}', '{"severity": 1}');
SELECT cdp.track(now() - interval '3 days', 'call_center', 'complaint', '{"email": "old@x.org"}', '{"severity": 5}');
SELECT results_eq('SELECT entered, fired FROM cdp.run_triggers()', 'VALUES (1, 1)',
	'the complaint of severity 3 fires, not the one of severity 1 nor the one of three days ago (max_age)');
SELECT is((SELECT payload #>> '{to,value}' FROM cdp.outbox), 'ann@x.org', 'the message goes to the contact point of the channel');
SELECT is((SELECT payload #>> '{context,severity}' FROM cdp.outbox), '3', 'with the event''s properties');
SELECT is((SELECT payload->'offer' FROM cdp.outbox), '{"code": "SORRY10"}'::jsonb, 'and the offer''s payload');
SELECT results_eq($$SELECT f.status, c.offer_id, f.message_id IS NOT NULL FROM cdp.trigger_fires f JOIN cdp.contacts c USING (contact_id) WHERE f.trigger_id = 'apology'$$,
	$$VALUES ('sent', 'sorry10', true)$$, 'the firing records the decision and the message');
SELECT is((SELECT c.status FROM cdp.contacts c JOIN cdp.outbox o USING (contact_id)), 'sent', 'the contact is in the contact history');
SELECT results_eq('SELECT entered, fired FROM cdp.run_triggers()', 'VALUES (0, 0)', 'a second run fires nothing again');
SELECT is((SELECT count(*) FROM cdp.outbox), 1::bigint, 'exactly one message');
SELECT cdp.track(now(), 'call_center', 'complaint', '{"email": "ann@x.org"}', '{"severity": 2}');
SELECT is((SELECT fired FROM cdp.run_triggers()), 1, 'every_time: a second complaint fires again');

-- re-entry once per period, and once
INSERT INTO cdp.triggers (trigger_id, on_event, channel, offers, reentry, reentry_period) VALUES
	('thanks', 'purchase', 'email', '{welcome}', 'once_per_period', '7 days');
INSERT INTO cdp.triggers (trigger_id, on_event, channel, offers, reentry) VALUES
	('first_visit', 'store_visit', 'email', '{welcome}', 'once');
SELECT cdp.track(now() - interval '2 minutes', 'store', 'purchase', '{"email": "cat@x.org"}', '{}', 20);
SELECT cdp.track(now() - interval '1 minute', 'store', 'purchase', '{"email": "cat@x.org"}', '{}', 30);
SELECT cdp.track(now() - interval '2 minutes', 'store', 'store_visit', '{"email": "cat@x.org"}');
SELECT cdp.track(now() - interval '1 minute', 'store', 'store_visit', '{"email": "cat@x.org"}');
SELECT is((SELECT entered FROM cdp.run_triggers()), 2, 'two of the four moments enter');
SELECT results_eq($$SELECT status, coalesce(reason LIKE 're-entry once per 7 days: entered at %', false) FROM cdp.trigger_fires
	WHERE trigger_id = 'thanks' ORDER BY moment_at$$, $$VALUES ('sent', false), ('skipped', true)$$,
	'once_per_period: the second purchase within 7 days is skipped, with the reason');
SELECT results_eq($$SELECT status FROM cdp.trigger_fires WHERE trigger_id = 'first_visit' ORDER BY moment_at$$,
	$$VALUES ('sent'), ('skipped')$$, 'once: never again');

-- ---------------------------------------------------------------------------
-- A break trigger: a cart left, a delay, an exit at once.
-- ---------------------------------------------------------------------------
INSERT INTO cdp.triggers (trigger_id, on_break, delay, channel, offers) VALUES
	('cart_reminder', 'fast_cart', '15 minutes', 'email', '{cart_back}');
SELECT is((SELECT reentry FROM cdp.triggers WHERE trigger_id = 'cart_reminder'), 'once_per_break', 'a break trigger fires once per break');
-- dan left his cart 40 minutes ago: broken 30 minutes ago, due 15 minutes ago
SELECT cdp.track(now() - interval '40 minutes', 'web', 'add_to_cart', '{"email": "dan@x.org"}', '{"product_id": "p1", "cart_value": 70}');
-- eve 20 minutes ago: broken 10 minutes ago, due in 5; fay too
SELECT cdp.track(now() - interval '20 minutes', 'web', 'add_to_cart', '{"email": "eve@x.org"}', '{"product_id": "p2", "cart_value": 30}');
SELECT cdp.track(now() - interval '20 minutes', 'web', 'add_to_cart', '{"email": "fay@x.org"}', '{"product_id": "p3", "cart_value": 15}');
SELECT is((SELECT fired FROM cdp.run_triggers()), 0, 'nothing before the journeys see the breaks');
SELECT cdp.detect_journey_breaks();
SELECT results_eq('SELECT entered, fired FROM cdp.run_triggers()', 'VALUES (3, 1)', 'three breaks enter; the one past its delay fires');
SELECT results_eq($$SELECT payload #>> '{to,value}', payload #>> '{context,products,0}', payload #>> '{context,cart_value}' FROM cdp.outbox WHERE trigger_id = 'cart_reminder'$$,
	$$VALUES ('dan@x.org', 'p1', '70')$$, 'the message carries the products left in the cart and their value');
SELECT is((SELECT count(*) FROM cdp.trigger_fires WHERE trigger_id = 'cart_reminder' AND status = 'waiting'), 2::bigint,
	'the other two wait out their delay');
-- eve buys during the delay: dropped at once, not when the delay ends
SELECT cdp.track(now() - interval '1 minute', 'web', 'purchase', '{"email": "eve@x.org"}', '{}', 30);
SELECT cdp.detect_journey_breaks();
SELECT is((SELECT dropped FROM cdp.run_triggers()), 1, 'a break completed during the delay drops its moment');
SELECT results_eq($$SELECT status, reason LIKE 'journey completed on web at %', due_at > now() FROM cdp.trigger_fires f
	JOIN cdp.identifiers i ON i.profile_id = f.profile_id WHERE i.value = 'eve@x.org' AND f.trigger_id = 'cart_reminder'$$,
	$$VALUES ('exited', true, true)$$, '... at once, before its due time, with the reason');
-- dan comes back and buys after the message: the contact converted
SELECT cdp.track(now(), 'store', 'purchase', '{"email": "dan@x.org"}', '{}', 70);
SELECT cdp.detect_journey_breaks();
SELECT is((SELECT converted FROM cdp.run_triggers()), 1, 'a cart recovered after the message is attributed');
SELECT results_eq($$SELECT c.outcome, c.reward FROM cdp.contacts c JOIN cdp.outbox o USING (contact_id) WHERE o.trigger_id = 'cart_reminder'$$,
	$$VALUES ('converted'::text, 70::numeric)$$, '... to the contact, with the order''s amount as reward');
SELECT is((SELECT converted FROM cdp.run_triggers()), 0, '... once');
-- a merge during the delay keeps the moment: flo's cart was anonymous,
-- then she logs in (her cookie's profile merges into her e-mail's)
SELECT cdp.track(now() - interval '40 minutes', 'web', 'page_view', '{"email": "flo@x.org"}');
SELECT cdp.track(now() - interval '20 minutes', 'web', 'add_to_cart', '{"cookie": "flo-c"}', '{"product_id": "p4", "cart_value": 25}');
SELECT cdp.detect_journey_breaks();
SELECT is((SELECT entered FROM cdp.run_triggers()), 1, 'an anonymous cart enters');
SELECT cdp.track(now() - interval '1 minute', 'web', 'page_view', '{"cookie": "flo-c", "email": "flo@x.org"}');
SELECT is((SELECT dropped FROM cdp.run_triggers()), 0, 'a merge during the delay does not drop the moment');
-- its delay ends before the journeys have moved the break to the survivor
UPDATE cdp.trigger_fires SET due_at = now() - interval '1 second'
WHERE moment = 'break:' || (SELECT min(event_id) FROM cdp.events WHERE identifiers->>'cookie' = 'flo-c');
SELECT results_eq('SELECT fired, dropped FROM cdp.run_triggers()', 'VALUES (1, 0)',
	'... and it fires when due, though the journeys have not yet moved the break to the survivor');
SELECT is((SELECT payload #>> '{to,value}' FROM cdp.outbox WHERE payload #>> '{context,products,0}' = 'p4'), 'flo@x.org',
	'... to the e-mail address she logged in with');
-- disabling a trigger drops its waiting moments at once
UPDATE cdp.triggers SET enabled = false WHERE trigger_id = 'cart_reminder';
SELECT is((SELECT reason FROM cdp.trigger_fires f JOIN cdp.identifiers i ON i.profile_id = f.profile_id
	WHERE i.value = 'fay@x.org'), 'trigger disabled', 'disabling a trigger drops what waits, at once, with the reason');

-- an exit condition
INSERT INTO cdp.triggers (trigger_id, on_event, delay, channel, offers, exit_condition) VALUES
	('view_nudge', 'product_view', '1 hour', 'email', '{welcome}', '{"fact": "events", "key": "purchase", "gte": 1}');
SELECT cdp.track(now() - interval '5 minutes', 'web', 'product_view', '{"email": "gil@x.org"}', '{"product_id": "p9"}');
SELECT results_eq('SELECT entered, fired, dropped FROM cdp.run_triggers()', 'VALUES (1, 0, 0)', 'a view waits an hour');
SELECT cdp.track(now() - interval '1 minute', 'web', 'purchase', '{"email": "gil@x.org"}', '{}', 12);
SELECT is((SELECT dropped FROM cdp.run_triggers()), 1, 'the exit condition met during the delay drops it at once');
SELECT is((SELECT reason FROM cdp.trigger_fires WHERE trigger_id = 'view_nudge'), 'exit condition holds', '... with the reason');

-- ---------------------------------------------------------------------------
-- Holdouts, quiet hours, fact triggers.
-- ---------------------------------------------------------------------------
INSERT INTO cdp.offers (offer_id, name, channels, holdout) VALUES ('held', 'Always held out', '{email}', 0.99999);
INSERT INTO cdp.triggers (trigger_id, on_event, channel, offers) VALUES ('held_out', 'wishlist_add', 'email', '{held}');
SELECT cdp.track(now(), 'web', 'wishlist_add', '{"email": "hal@x.org"}', '{"product_id": "p5"}');
SELECT results_eq('SELECT fired FROM cdp.run_triggers()', 'VALUES (0)', 'a holdout writes no message');
SELECT is((SELECT status FROM cdp.trigger_fires WHERE trigger_id = 'held_out'), 'holdout', '... and is recorded as such');

INSERT INTO cdp.contact_policies (channel, quiet_start, quiet_end)
VALUES ('email', (now() - interval '1 hour')::time, (now() + interval '2 hours')::time);
SELECT cdp.track(now(), 'call_center', 'complaint', '{"email": "ivy@x.org"}', '{"severity": 4}');
SELECT is((SELECT fired FROM cdp.run_triggers()), 1, 'in quiet hours the message is still written');
SELECT is((SELECT date_trunc('minute', not_before) FROM cdp.outbox o JOIN cdp.identifiers i ON i.profile_id = o.profile_id WHERE i.value = 'ivy@x.org'),
	date_trunc('minute', now() + interval '2 hours'), '... to be sent when they end (not_before)');
SELECT results_eq($$SELECT c.status, date_trunc('minute', c.decided_at) FROM cdp.contacts c JOIN cdp.identifiers i ON i.profile_id = c.profile_id WHERE i.value = 'ivy@x.org'$$,
	$$VALUES ('sent'::text, date_trunc('minute', now() + interval '2 hours'))$$, '... one contact, decided for then (no suppressed one beside it)');
DELETE FROM cdp.contact_policies WHERE channel = 'email';

SELECT cdp.track(now() - interval '1 minute', 'web', 'purchase', '{"email": "joe@x.org"}', '{}', 10);
SELECT cdp.track(now() - interval '1 minute', 'web', 'purchase', '{"email": "joe@x.org"}', '{}', 10);
UPDATE cdp.triggers SET enabled = false WHERE trigger_id IN ('thanks', 'apology');
SELECT cdp.run_triggers();
INSERT INTO cdp.triggers (trigger_id, on_fact, channel, offers, condition) VALUES
	('second_order', 'orders', 'email', '{welcome}', '{"fact": "orders", "gte": 2}');
SELECT is((SELECT entered FROM cdp.run_triggers()), 0, 'the first pass of a fact trigger fires for nobody (cat and joe already had two orders)');
SELECT is((SELECT count(*) FROM cdp.trigger_states WHERE trigger_id = 'second_order'), 2::bigint, '... it records who meets the condition');
SELECT cdp.track(now(), 'web', 'purchase', '{"email": "kim@x.org"}', '{}', 10);
SELECT is((SELECT entered FROM cdp.run_triggers()), 0, 'one order: no crossing');
SELECT cdp.track(now(), 'web', 'purchase', '{"email": "kim@x.org"}', '{}', 10);
SELECT cdp.track(now(), 'web', 'purchase', '{"email": "joe@x.org"}', '{}', 10);
SELECT results_eq('SELECT entered, fired FROM cdp.run_triggers()', 'VALUES (1, 1)', 'kim''s second order crosses the threshold; joe''s third does not');
SELECT is((SELECT payload->'context' FROM cdp.outbox WHERE trigger_id = 'second_order'), '{"fact": "orders", "value": 2}'::jsonb,
	'the message says which fact crossed, and its value');
UPDATE cdp.triggers SET condition = '{"fact": "orders", "gte": 3}' WHERE trigger_id = 'second_order';
SELECT is((SELECT count(*) FROM cdp.trigger_states WHERE trigger_id = 'second_order'), 0::bigint, 'a changed condition forgets who met the old one');
SELECT is((SELECT entered FROM cdp.run_triggers()), 0, '... and starts from a new baseline: joe, with three orders, does not fire');

-- ---------------------------------------------------------------------------
-- The sender side.
-- ---------------------------------------------------------------------------
SELECT throws_ok('SELECT * FROM cdp.claim_messages(0)', '22023', 'n must be at least 1 and lease positive', 'a claim of nothing');
CREATE TEMP TABLE claimed AS SELECT * FROM cdp.claim_messages(3);
SELECT is((SELECT count(*) FROM claimed WHERE status = 'claimed' AND attempts = 1), 3::bigint, 'three messages claimed, first attempt');
SELECT is((SELECT count(*) FROM cdp.claim_messages(100) c JOIN claimed USING (message_id)), 0::bigint, 'a claimed message is not handed out twice');
SELECT is((SELECT status FROM cdp.mark_delivered((SELECT min(message_id) FROM claimed))), 'delivered', 'delivered');
SELECT is((SELECT status FROM cdp.mark_delivered((SELECT min(message_id) FROM claimed))), 'delivered', '... twice is harmless');
SELECT throws_ok($$SELECT cdp.mark_failed((SELECT min(message_id) FROM claimed), 'late bounce')$$, '55000',
	NULL, 'a failure after delivery is refused');
SELECT results_eq($$SELECT status, not_before > now() + interval '59 seconds', last_error FROM cdp.mark_failed((SELECT max(message_id) FROM claimed), 'smtp 451')$$,
	$$VALUES ('pending', true, 'smtp 451')$$, 'a failure makes it pending again after the retry delay');
SELECT throws_ok($$SELECT cdp.mark_failed((SELECT max(message_id) FROM claimed), 'again')$$, '55000',
	NULL, 'a pending message cannot fail (it is not claimed)');
SELECT throws_ok($$SELECT cdp.mark_delivered((SELECT m FROM (SELECT min(message_id) AS m FROM claimed WHERE message_id > (SELECT min(message_id) FROM claimed)) x), attempt => 2)$$,
	'55000', NULL, 'a result for an attempt that is not the current one is refused (the claim was handed out again)');
SELECT is((SELECT status FROM cdp.mark_failed((SELECT m FROM (SELECT min(message_id) AS m FROM claimed WHERE message_id > (SELECT min(message_id) FROM claimed)) x),
	'mailbox gone', false, attempt => 1)), 'dead', 'without retry it is dead');
SELECT throws_ok('SELECT cdp.mark_delivered(-1)', 'P0002', 'message -1 is not in the outbox', 'an unknown message');
SELECT is((SELECT count(*) FROM cdp.claim_messages(100) WHERE payload #>> '{to,value}' = 'ivy@x.org'), 0::bigint,
	'a message held for the end of quiet hours is handed out to no sender before');
SELECT is(cdp.purge_outbox(), 0::bigint, 'nothing settled long enough ago to purge');
SELECT results_eq($$SELECT sent, exited, sent_converted FROM cdp.trigger_stats WHERE trigger_id = 'cart_reminder'$$,
	$$VALUES (2::bigint, 2::bigint, 1::bigint)$$, 'trigger_stats counts the firings');

SELECT * FROM finish();
ROLLBACK;
