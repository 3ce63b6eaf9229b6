-- The triggers story of the README's "Triggers and the outbox" section, on
-- the demo retailer (contrib/demo/demo.sh runs it after the offers, with the
-- background worker on): carts are left, the cart trigger fires after its
-- delay, messages go to the outbox and the example sender delivers them,
-- some customers come back and buy, and the recovery rate of relaunched
-- carts is compared with the holdout's.  Times are shortened for the
-- demo: a cart is left after 3 seconds without activity, and relaunched 4
-- seconds later (in production: 'cart' breaks after an hour).
\pset footer off
\echo 'A funnel whose carts break after 3 s (the demo''s clock), a relaunch offer with a 20 % holdout, and the trigger'
INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after, description) VALUES
	('demo_cart', '{add_to_cart,checkout_start,purchase}', '1 hour', '3 seconds', 'Carts of the demo, on a fast clock');
INSERT INTO cdp.offers (offer_id, name, channels, value, holdout, payload) VALUES
	('cart_relaunch', 'Your cart is waiting: free delivery today', '{email}', 15, 0.2, '{"template": "cart-relaunch"}');
INSERT INTO cdp.triggers (trigger_id, on_break, delay, channel, offers, description) VALUES
	('cart_relaunch', 'demo_cart', '4 seconds', 'email', '{cart_relaunch}', 'Relaunch a cart left on the site');
-- the demo runs at any hour: without this, a cart left at night is relaunched at 08:00 (not_before)
UPDATE cdp.contact_policies SET quiet_start = NULL, quiet_end = NULL WHERE channel = 'email';

\echo '400 customers with an e-mail address put something in their cart now; 60 of them check out at once'
CREATE TEMP TABLE shoppers AS
SELECT i.value AS email, row_number() OVER (ORDER BY i.identifier_id) AS n
FROM cdp.identifiers i
WHERE i.kind = 'email'
  AND NOT EXISTS (SELECT FROM cdp.contacts c JOIN cdp.identifiers j ON j.identifier_id = c.identifier_id
                  WHERE j.profile_id = i.profile_id)
ORDER BY i.identifier_id LIMIT 400;
SELECT count(*) AS carts FROM (
	SELECT cdp.track(now(), 'web', 'add_to_cart', jsonb_build_object('email', email),
	                 jsonb_build_object('product_id', 'P' || lpad((n % 97)::text, 5, '0'), 'cart_value', 20 + n % 80)) FROM shoppers) x;
SELECT count(*) AS bought_at_once FROM (
	SELECT cdp.track(now(), 'web', 'purchase', jsonb_build_object('email', email), '{}', 20 + n % 80)
	FROM shoppers WHERE n % 20 IN (1, 7, 13)) x;
\o /dev/null
SELECT pg_sleep(5);   -- 3 s to break, and the worker
\o
\echo '40 others buy during the delay: their relaunch is dropped at once'
SELECT count(*) AS bought_during_delay FROM (
	SELECT cdp.track(now(), 'web', 'purchase', jsonb_build_object('email', email), '{}', 20 + n % 80)
	FROM shoppers WHERE n % 20 IN (3, 9)) x;
\o /dev/null
SELECT pg_sleep(1);
\o
SELECT status, count(*), min(reason) AS a_reason FROM cdp.trigger_fires WHERE trigger_id = 'cart_relaunch' GROUP BY status;
\o /dev/null
SELECT pg_sleep(3);   -- the rest of the delay, and the worker
\o

\echo 'What the trigger did (cdp.trigger_stats)'
SELECT trigger_id, waiting, sent, holdout, suppressed, exited, median_lateness_s FROM cdp.trigger_stats
WHERE trigger_id = 'cart_relaunch';
\echo 'A message in the outbox'
SELECT message_id, channel, offer_id, status, jsonb_pretty(payload) AS payload FROM cdp.outbox
WHERE trigger_id = 'cart_relaunch' ORDER BY message_id LIMIT 1;
\echo 'The example sender (contrib/outbox/cdp-sender --once) claims and delivers them'
\! contrib/outbox/cdp-sender --once > "$CDP_CLUSTER_DIR/sent.log"; cut -c1-100 "$CDP_CLUSTER_DIR/sent.log" | head -3; echo "... $(wc -l < "$CDP_CLUSTER_DIR/sent.log") messages"
SELECT status, count(*) FROM cdp.outbox WHERE trigger_id = 'cart_relaunch' GROUP BY status;

\echo 'Some come back and buy: more of those relaunched than of the holdout'
SELECT count(*) AS came_back FROM (
	SELECT cdp.track(now(), CASE WHEN s.n % 3 = 0 THEN 'store' ELSE 'web' END, 'purchase',
	                 jsonb_build_object('email', s.email), '{}', 20 + s.n % 80)
	FROM shoppers s
	JOIN cdp.trigger_fires f ON f.profile_id = cdp.resolve('email', s.email) AND f.trigger_id = 'cart_relaunch'
	WHERE (f.status = 'sent' AND s.n % 10 < 4) OR (f.status = 'holdout' AND s.n % 10 < 2)) x;
\o /dev/null
SELECT pg_sleep(2);
\o
\echo 'Recovery of relaunched carts against the holdout (cdp.offer_performance)'
SELECT offer_id, channel, decisions AS relaunched, conversions AS recovered, round(conversion_rate::numeric, 3) AS rate,
       holdouts, holdout_conversions AS recovered_anyway, round(holdout_rate::numeric, 3) AS holdout_rate,
       round(uplift::numeric, 3) AS uplift, round(uplift_low::numeric, 3) AS uplift_low, reward
FROM (SELECT offer_id, channel, sum(decisions) AS decisions, sum(conversions) AS conversions, sum(holdouts) AS holdouts,
             sum(holdout_conversions) AS holdout_conversions, sum(reward) AS reward,
             sum(conversions)::float8 / nullif(sum(decisions), 0) AS conversion_rate,
             sum(holdout_conversions)::float8 / nullif(sum(holdouts), 0) AS holdout_rate
      FROM cdp.offer_performance WHERE offer_id = 'cart_relaunch' GROUP BY offer_id, channel) p
CROSS JOIN LATERAL (SELECT conversion_rate - holdout_rate AS uplift,
       conversion_rate - holdout_rate - 1.959964 * sqrt(conversion_rate * (1 - conversion_rate) / decisions
                                                       + holdout_rate * (1 - holdout_rate) / nullif(holdouts, 0)) AS uplift_low) u;
