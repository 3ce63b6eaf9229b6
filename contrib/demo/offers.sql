-- The worked example of the README's "Offers" section, on the demo
-- retailer (contrib/demo/demo.sh runs it after scoring and journeys):
-- contact pressure, a catalogue with rules, variants, a budget and a
-- holdout, then one customer from explanation to outcome, and a campaign.
\pset footer off
SET cdp.offer_seed = 42;   -- reproducible draws
\echo 'Contact pressure: at most 2 marketing e-mails a week, a day apart, none at night; 3 contacts a week in all'
INSERT INTO cdp.contact_policies (channel, max_contacts, per, min_gap, quiet_start, quiet_end, contact_cost) VALUES
	('email', 2, '7 days', '1 day', '21:00', '08:00', 0.01),
	('sms', 1, '7 days', NULL, '20:00', '09:00', 0.05),
	('call_center', NULL, NULL, NULL, '19:00', '09:00', 4),
	('*', 3, '7 days', NULL, NULL, NULL, 0);
\echo 'The catalogue: who may get what, where, how often, how many'
INSERT INTO cdp.offers (offer_id, name, channels, value, eligibility, max_per_profile, cap_period, budget, holdout, fallback, payload) VALUES
	('cart_rescue', 'Finish your order: free delivery', '{email,sms}', 12,
	 '{"fact": "open_break", "key": "cart", "eq": true}', 1, '14 days', NULL, 0.1, false, '{"template": "cart-rescue"}'),
	('vip_preview', 'Early access for our best customers', '{email,call_center}', 40,
	 '{"all": [{"fact": "rfm_segment", "in": ["Champions", "Loyal"]}, {"fact": "clv", "gte": 100}]}', NULL, NULL, 500, 0.1, false, '{"template": "vip"}'),
	('winback', 'We miss you', '{email}', 20,
	 '{"all": [{"fact": "days_since_last_purchase", "gt": 120}, {"not": {"fact": "rfm_segment", "eq": "Lost"}}]}', 1, '30 days', NULL, 0.1, false, '{"template": "winback"}'),
	('newsletter', 'Newsletter', NULL, 0.5, NULL, NULL, NULL, NULL, 0, true, '{"template": "news"}');
\echo 'The right price: three discount levels of the win-back offer, each with its margin'
INSERT INTO cdp.offer_variants (offer_id, variant, value, payload) VALUES
	('winback', '10pct', 22, '{"discount": 10}'), ('winback', '20pct', 18, '{"discount": 20}'), ('winback', '30pct', 14, '{"discount": 30}');

-- a customer with an e-mail address and a phone, of the best lifetime value
SELECT c.profile_id AS who FROM cdp.clv c
WHERE EXISTS (SELECT FROM cdp.identifiers i WHERE i.profile_id = c.profile_id AND i.kind = 'email')
  AND EXISTS (SELECT FROM cdp.identifiers i WHERE i.profile_id = c.profile_id AND i.kind = 'phone')
ORDER BY c.clv DESC NULLS LAST, c.profile_id
LIMIT 1 \gset
-- 10:00 UTC today
SELECT date_trunc('day', now()) + interval '10 hours' AS at \gset
\echo 'Why each offer may or may not go to this customer by e-mail'
SELECT offer_id, variant, eligible, reason FROM cdp.explain_offers(:who, 'email', :'at');
\echo 'The best offers on any channel, by expected margin (propensity x value - contact cost)'
SELECT offer_id, variant, channel, round(score::numeric, 2) AS score, round(propensity::numeric, 3) AS propensity, value
FROM cdp.next_best_offers(:who, NULL, 3, :'at');
\echo 'Decide and record the contact (one transaction, under the person''s lock)'
SELECT contact_id AS decided FROM cdp.decide(:who, 'email', :'at') \gset
SELECT contact_id, offer_id, variant, channel, status, reason FROM cdp.contacts WHERE contact_id = :decided;
\echo 'An hour later the same customer is protected by the minimum gap'
SELECT status, reason, next_allowed_at FROM cdp.decide(:who, 'email', (:'at'::timestamptz + interval '1 hour'));
\echo 'The customer clicked and bought: the offer''s posterior for the segment learns'
SELECT contact_id, outcome, success FROM cdp.record_outcome(:decided, 'converted', 54.90, (:'at'::timestamptz + interval '2 hours'));
\echo 'A campaign to every Champion and Loyal customer, by e-mail, tomorrow at 09:00'
SELECT campaign_id, profiles, chosen, holdouts, suppressed, without_offer
FROM cdp.plan_campaign('email', '{"segments": ["Champions", "Loyal"]}', date_trunc('day', now()) + interval '1 day 9 hours');
\echo 'What the campaign sent'
SELECT offer_id, variant, count(*) FILTER (WHERE status = 'sent') AS sent, count(*) FILTER (WHERE status = 'holdout') AS held_out
FROM cdp.contacts WHERE campaign_id IS NOT NULL AND offer_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2;
\echo 'Outcomes come back from the channel (simulated here: about 5 % of e-mails convert, 2 % of the holdout buy anyway)'
SELECT count(*) AS outcomes FROM (
	SELECT cdp.record_outcome(contact_id, 'converted', 40, decided_at + interval '2 days') FROM cdp.contacts
	WHERE campaign_id IS NOT NULL AND offer_id IS NOT NULL
	  AND abs(hashint8(contact_id)) % 100 < CASE status WHEN 'sent' THEN 5 ELSE 2 END) x;
\echo 'Performance per offer and segment: conversion rate with its 95 % interval, uplift against the holdout'
SELECT offer_id, segment, decisions, conversions, round(conversion_rate::numeric, 3) AS rate,
       round(rate_low::numeric, 3) AS low, round(rate_high::numeric, 3) AS high, holdouts,
       holdout_conversions AS holdout_conv, round(uplift::numeric, 3) AS uplift
FROM cdp.offer_performance ORDER BY offer_id, segment;
