-- Offers: the rule language (facts, operators, validation with paths),
-- contact pressure (channel and global caps, minimum gap, quiet hours in
-- the person's time zone with the next allowed time, suppression after
-- ignored contacts), message classes, consent (opt-out, unsubscribe events
-- in the same transaction, cdp.consent_required, the most restrictive
-- across a merge), per-offer caps and budgets, holdouts, fallbacks,
-- variants, the channel chosen by expected margin, outcomes and learning,
-- a merge that must not let a capped person be contacted again and an
-- unmerge that gives each part its own contacts, explain_offers,
-- offer_performance, plan_campaign and evaluate_policy.
BEGIN;
SELECT plan(119);
SET LOCAL timezone = 'UTC';
SET LOCAL client_min_messages = warning;
SET LOCAL cdp.offer_seed = 7;

SELECT has_table('cdp', 'offers', 'the catalogue');
SELECT has_table('cdp', 'contact_policies', 'contact policies');
SELECT has_table('cdp', 'consents', 'consents');
SELECT has_table('cdp', 'contacts', 'the contact history');
SELECT has_view('cdp', 'offer_performance', 'performance view');
SELECT has_function('cdp', 'decide', ARRAY['bigint', 'text', 'timestamp with time zone']);
SELECT has_function('cdp', 'next_best_offers', ARRAY['bigint', 'text', 'integer', 'timestamp with time zone']);
SELECT has_function('cdp', 'record_outcome', ARRAY['bigint', 'text', 'numeric', 'timestamp with time zone']);
SELECT has_function('cdp', 'explain_offers', ARRAY['bigint', 'text', 'timestamp with time zone']);
SELECT columns_are('cdp', 'offers',
	ARRAY['offer_id', 'name', 'channels', 'value', 'weight', 'valid_from', 'valid_until', 'max_per_profile',
	      'cap_period', 'budget', 'fallback', 'message_class', 'holdout', 'eligibility', 'payload', 'active', 'created_at']);

-- ---------------------------------------------------------------------------
-- The rule language, on facts documents written by hand.
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE f AS SELECT '{"rfm_segment": "Champions", "clv": 250.5, "p_alive": 0.9, "orders": 4,
	"days_since_last_purchase": 12, "days_since_last_contact": 2, "days_since_last_contact_by_channel": {"email": 2},
	"events": {"purchase": 4}, "interest": {"shoes": 3.5}, "traits": {"tier": "gold", "age": 41},
	"open_breaks": {"cart": ["p1", "p2"]}, "consent": {"email": true, "sms": false}, "last_channel": "app"}'::jsonb AS facts;
SELECT is((cdp.eligible('{"fact": "rfm_segment", "in": ["Champions", "Loyal"]}', facts)).eligible, true, 'rfm_segment in') FROM f;
SELECT is((cdp.eligible('{"fact": "clv", "gte": 300}', facts)).reason, 'eligibility: clv is 250.5, needs gte 300', 'clv gte fails with the value') FROM f;
SELECT is((cdp.eligible('{"fact": "p_alive", "gt": 0.5}', facts)).eligible, true, 'p_alive gt') FROM f;
SELECT is((cdp.eligible('{"fact": "open_break", "key": "cart", "eq": true}', facts)).eligible, true, 'open break of a funnel') FROM f;
SELECT is((cdp.eligible('{"fact": "open_break", "key": "browse", "eq": true}', facts)).eligible, false, 'no open break of another funnel') FROM f;
SELECT is((cdp.eligible('{"fact": "break_products", "key": "cart", "contains": "p2"}', facts)).eligible, true, 'a product of the break') FROM f;
SELECT is((cdp.eligible('{"fact": "interest", "key": "shoes", "gt": 1}', facts)).eligible, true, 'interest in a category') FROM f;
SELECT is((cdp.eligible('{"fact": "interest", "key": "bags", "gt": 0}', facts)).eligible, false, 'no interest counts as 0') FROM f;
SELECT is((cdp.eligible('{"fact": "days_since_last_purchase", "lt": 30}', facts)).eligible, true, 'days since the last purchase') FROM f;
SELECT is((cdp.eligible('{"not": {"fact": "days_since_last_contact", "key": "email", "lt": 7}}', facts)).reason,
	'eligibility.not: days_since_last_contact "email" holds lt 7 (is 2)', 'days since the last contact on a channel, under not') FROM f;
SELECT is((cdp.eligible('{"fact": "trait", "key": "tier", "eq": "gold"}', facts)).eligible, true, 'a trait') FROM f;
SELECT is((cdp.eligible('{"fact": "trait", "key": "missing", "eq": "x"}', facts)).eligible, false, 'a missing trait holds nothing') FROM f;
SELECT is((cdp.eligible('{"fact": "trait", "key": "missing", "exists": false}', facts)).eligible, true, '... but exists false') FROM f;
SELECT is((cdp.eligible('{"fact": "consent", "key": "sms", "eq": true}', facts)).eligible, false, 'consent fact') FROM f;
SELECT is((cdp.eligible('{"fact": "last_channel", "in": ["web", "app"]}', facts)).eligible, true, 'the channel used last') FROM f;
SELECT is((cdp.eligible('{"any": [{"fact": "orders", "eq": 0}, {"fact": "events", "key": "purchase", "gte": 5}]}', facts)).eligible, false, 'any: none holds') FROM f;
SELECT is((cdp.eligible('{"all": [{"fact": "orders", "gt": 0}, {"fact": "clv", "lt": 100}]}', facts)).reason,
	'eligibility.all[1]: clv is 250.5, needs lt 100', 'all: the failing child is named') FROM f;
SELECT is((cdp.eligible(NULL, facts)).eligible, true, 'no rule: everyone') FROM f;
SELECT throws_ok($$SELECT cdp.check_eligibility('{"all": [{"fact": "clv", "gt": 1}, {"fact": "orders", "gt": 0}, {"fact": "foo", "eq": 1}]}')$$,
	'22023', 'invalid eligibility rule: eligibility.all[2]: unknown fact "foo"', 'an unknown fact is named with its path');
SELECT throws_like($$INSERT INTO cdp.offers (offer_id, name, eligibility) VALUES ('bad', 'bad', '{"fact": "clv", "gte": "a lot"}')$$,
	'%eligibility: "gte" needs a number%', 'a rule is validated when written');
SELECT throws_like($$INSERT INTO cdp.offers (offer_id, name, eligibility) VALUES ('bad', 'bad', '{"any": [{"fact": "trait", "eq": 1}]}')$$,
	'%eligibility.any[0]: fact "trait" needs a "key"%', 'a keyed fact needs its key');
SELECT throws_ok($$INSERT INTO cdp.offers (offer_id, name, channels) VALUES ('bad', 'bad', '{fax}')$$,
	'23503', 'offer "bad": unknown channel "fax"', 'an unknown channel is refused');
SELECT throws_ok($$INSERT INTO cdp.contact_policies (channel, contact_kinds) VALUES ('sms', '{fax_number}')$$,
	'23503', 'contact policy of "sms": unknown identifier kind "fax_number"', 'an unknown identifier kind is refused');
SELECT throws_ok($$SET cdp.default_timezone = 'Mars/Olympus'$$, '22023', NULL, 'an unknown default time zone is refused');

-- ---------------------------------------------------------------------------
-- People and a catalogue.
-- ---------------------------------------------------------------------------
SELECT cdp.ensure_partitions('2026-01-01', '2026-12-31');
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties, amount) VALUES
	('2026-03-01 10:00', 'web', 'product_view', '{"customer_id": "ann", "email": "ann@acme.fr", "phone": "+33612345678"}', '{"product_id": "p1", "category": "shoes"}', NULL),
	('2026-03-01 10:05', 'web', 'product_view', '{"customer_id": "ann"}', '{"product_id": "p2", "category": "shoes"}', NULL),
	('2026-03-01 10:00', 'web', 'page_view', '{"customer_id": "bob", "email": "bob@acme.fr"}', '{}', NULL),
	('2026-03-01 10:00', 'store', 'purchase', '{"customer_id": "cat", "email": "cat@acme.fr"}', '{"traits": {"timezone": "America/New_York", "tier": "gold"}}', 80),
	('2026-03-01 10:00', 'web', 'page_view', '{"customer_id": "dan", "email": "dan@acme.fr"}', '{}', NULL),
	('2026-03-01 10:00', 'web', 'page_view', '{"customer_id": "eve", "email": "eve@acme.fr"}', '{}', NULL),
	('2026-03-01 10:00', 'web', 'page_view', '{"customer_id": "fay", "cookie": "fay-c"}', '{}', NULL);
SELECT cdp.sync();
CREATE TEMP TABLE who AS SELECT i.value AS name, i.profile_id AS p FROM cdp.identifiers i WHERE i.kind = 'customer_id';
CREATE FUNCTION pg_temp.p(n text) RETURNS bigint LANGUAGE sql AS $$ SELECT p FROM who WHERE name = n $$;

INSERT INTO cdp.contact_policies (channel, max_contacts, per, min_gap, quiet_start, quiet_end, max_ignored, ignored_window, contact_cost) VALUES
	('email', 2, '7 days', '1 hour', '21:00', '08:00', 2, '30 days', 0.01),
	('*', 3, '7 days', NULL, NULL, NULL, NULL, NULL, 0),
	('call_center', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 5);
INSERT INTO cdp.offers (offer_id, name, channels, value, eligibility, message_class) VALUES
	('shoes', 'Shoes 10 %', '{email,sms,web,call_center}', 20, '{"fact": "interest", "key": "shoes", "gt": 0.5}', 'marketing'),
	('gold', 'Gold members', '{email}', 50, '{"fact": "trait", "key": "tier", "eq": "gold"}', 'marketing'),
	('receipt', 'Receipt', '{email}', 0.5, '{"fact": "orders", "gt": 0}', 'transactional'),
	('news', 'Newsletter', NULL, 1, NULL, 'marketing');
UPDATE cdp.offers SET fallback = true WHERE offer_id = 'news';

-- ann: interest in shoes; the newsletter is only a fallback
SELECT is((SELECT offer_id FROM cdp.next_best_offers(pg_temp.p('ann'), 'email', 3, '2026-03-02 12:00')),
	'shoes', 'next_best_offers: the eligible offer, not the fallback');
SELECT is((SELECT reason FROM cdp.explain_offers(pg_temp.p('ann'), 'email', '2026-03-02 12:00') WHERE offer_id = 'gold'),
	'eligibility: trait "tier" is missing, needs eq "gold"', 'explain_offers names the rule condition');
SELECT is((SELECT reason FROM cdp.explain_offers(pg_temp.p('ann'), 'email', '2026-03-02 12:00') WHERE offer_id = 'receipt'),
	'eligibility: orders is 0, needs gt 0', 'explain_offers: the transactional offer''s rule');
SELECT is((SELECT count(*) FROM cdp.contacts), 0::bigint, 'next_best_offers and explain_offers record nothing');

-- caps, gap and quiet hours on email (ann, UTC)
CREATE TEMP TABLE d AS SELECT 1 AS n, * FROM cdp.decide(pg_temp.p('ann'), 'email', '2026-03-02 12:00');
SELECT is((SELECT offer_id || '/' || status FROM d WHERE n = 1), 'shoes/sent', 'decide: sent');
INSERT INTO d SELECT 2, * FROM cdp.decide(pg_temp.p('ann'), 'email', '2026-03-02 12:30');
SELECT is((SELECT status || ' ' || left(reason, 11) || ' ' || next_allowed_at FROM d WHERE n = 2),
	'suppressed minimum gap 2026-03-02 13:00:00+00', 'minimum gap, with the next allowed time');
INSERT INTO d SELECT 3, * FROM cdp.decide(pg_temp.p('ann'), 'email', '2026-03-02 22:00');
SELECT is((SELECT status || ' ' || reason || ' ' || next_allowed_at FROM d WHERE n = 3),
	'suppressed quiet hours: 21:00:00 to 08:00:00 in UTC on email 2026-03-03 08:00:00+00', 'quiet hours, until they end');
INSERT INTO d SELECT 4, * FROM cdp.decide(pg_temp.p('ann'), 'email', '2026-03-03 09:00');
INSERT INTO d SELECT 5, * FROM cdp.decide(pg_temp.p('ann'), 'email', '2026-03-04 09:00');
SELECT is((SELECT status FROM d WHERE n = 4), 'sent', 'second e-mail of the week');
SELECT is((SELECT status || ' ' || reason || ' ' || next_allowed_at FROM d WHERE n = 5),
	'suppressed cap: 2 marketing contacts on email within 7 days (at most 2) 2026-03-09 12:00:00+00', 'the channel cap, until the first contact leaves the window');
SELECT is((SELECT count(*) FROM cdp.contacts WHERE status = 'suppressed'), 3::bigint, 'refusals are recorded too');
-- the global cap: one more on the web reaches 3 in the week, then sms is refused
INSERT INTO d SELECT 6, * FROM cdp.decide(pg_temp.p('ann'), 'web', '2026-03-04 10:00');
INSERT INTO d SELECT 7, * FROM cdp.decide(pg_temp.p('ann'), 'sms', '2026-03-04 11:00');
SELECT is((SELECT status FROM d WHERE n = 6), 'sent', 'web');
SELECT is((SELECT status || ' ' || reason FROM d WHERE n = 7),
	'suppressed cap: 3 marketing contacts on all channels within 7 days (at most 3)', 'the global cap across channels');
-- a week later the window has moved on
INSERT INTO d SELECT 8, * FROM cdp.decide(pg_temp.p('ann'), 'email', '2026-03-10 09:00');
SELECT is((SELECT status FROM d WHERE n = 8), 'sent', 'allowed again once the window moved on');

-- quiet hours in the person's time zone (cat: America/New_York): 22:00 UTC is 17:00 there
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('cat'), 'email', '2026-03-02 22:00')), 'sent', 'quiet hours are local: 17:00 in New York');
SELECT is((SELECT reason || ' ' || next_allowed_at FROM cdp.explain_offers(pg_temp.p('cat'), 'email', '2026-03-04 03:00') WHERE offer_id = 'gold'),
	'quiet hours: 21:00:00 to 08:00:00 in America/New_York on email 2026-03-04 13:00:00+00', '22:00 in New York: quiet until 08:00 there');
-- message classes: transactional is neither counted nor capped (nor quiet)
SELECT is((SELECT offer_id || '/' || status FROM cdp.decide(pg_temp.p('cat'), 'email', '2026-03-04 03:00')), 'receipt/sent',
	'a transactional message goes out in quiet hours');

-- message classes: transactional neither counted nor capped; mandatory bypasses caps
SELECT is((SELECT count(*) FROM cdp.decide(pg_temp.p('cat'), 'email', '2026-03-04 13:01') WHERE status = 'sent'), 1::bigint,
	'... and is not counted: marketing still goes out after it');
-- mandatory bypasses caps and quiet hours, never an opt-out
UPDATE cdp.offers SET message_class = 'mandatory', eligibility = NULL, channels = '{sms}' WHERE offer_id = 'receipt';
SELECT is((SELECT offer_id || '/' || status FROM cdp.decide(pg_temp.p('ann'), 'sms', '2026-03-05 23:00')), 'receipt/sent',
	'mandatory: past the global cap, at night');
SELECT cdp.set_consent('phone', '+33 6 12 34 56 78', 'sms', false, 'marketing', 'call centre', '2026-03-05 23:30');
SELECT is((SELECT reason FROM cdp.explain_offers(pg_temp.p('ann'), 'sms', '2026-03-06 12:00') WHERE offer_id = 'receipt'),
	'consent: opted out of mandatory on sms', 'mandatory never passes an opt-out');
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('ann'), 'sms', '2026-03-06 12:00')), 'suppressed', '... nothing is sent');
UPDATE cdp.offers SET message_class = 'transactional' WHERE offer_id = 'receipt';
SELECT is((SELECT offer_id || '/' || status FROM cdp.decide(pg_temp.p('ann'), 'sms', '2026-03-06 12:00')), 'receipt/sent',
	'a marketing opt-out does not stop a transactional message');
SELECT cdp.set_consent(pg_temp.p('ann'), 'sms', false, 'all', 'preference centre', '2026-03-06 12:30');
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('ann'), 'sms', '2026-03-06 13:00')), 'suppressed',
	'an opt-out of purpose all stops it');
SELECT is((SELECT (cdp.offer_facts(pg_temp.p('ann'), '2026-03-06 13:00'))->'consent'->>'sms'), 'false', 'the consent fact');

-- consent: an unsubscribe event revokes in the transaction that stores it
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('bob'), 'email', '2026-03-02 12:00')), 'sent', 'bob may be e-mailed');
SELECT cdp.track('2026-03-02 12:10', 'email', 'unsubscribe', '{"email": "BOB@acme.fr"}');
SELECT is((SELECT status || ' ' || reason FROM cdp.decide(pg_temp.p('bob'), 'email', '2026-03-03 12:00')),
	'suppressed consent: opted out of marketing on email', 'an unsubscribe event revokes at once');
SELECT is((SELECT count(*) FROM cdp.consents WHERE kind = 'email' AND value = 'bob@acme.fr' AND NOT granted AND event_id IS NOT NULL),
	1::bigint, 'the consent row points at its event');
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('bob'), 'web', '2026-03-03 12:00')), 'sent', 'other channels stay open');
SELECT cdp.track(now() + interval '10 minutes', 'app', 'unsubscribe', '{"customer_id": "bob"}', '{"channel": "app"}');
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('bob'), 'app', '2026-03-03 13:00')), 'suppressed',
	'an opt-out stamped in the future (within the allowed clock skew) binds at once');
SELECT cdp.track('2026-03-04 12:10', 'web', 'subscribe', '{"email": "bob@acme.fr"}', '{"channel": "email"}');
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('bob'), 'email', '2026-03-05 12:00')), 'sent', 'a later subscribe restores it');
-- cdp.consent_required: marketing needs an opt-in
SET LOCAL cdp.consent_required = on;
SELECT is((SELECT status || ' ' || reason FROM cdp.decide(pg_temp.p('eve'), 'email', '2026-03-05 12:00')),
	'suppressed consent: no opt-in for marketing on email (cdp.consent_required)', 'consent required: no opt-in, no marketing');
SELECT cdp.set_consent('email', 'eve@acme.fr', '*', true, 'marketing', 'sign-up form', '2026-03-05 12:30');
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('eve'), 'email', '2026-03-05 13:00')), 'sent', '... an opt-in on all channels opens it');
RESET cdp.consent_required;

-- ---------------------------------------------------------------------------
-- Identity is no loophole: a capped person merged with another stays capped;
-- consent follows the merge, the most restrictive winning; an unmerge gives
-- each part its own contacts back.
-- ---------------------------------------------------------------------------
SELECT is((SELECT count(*) FROM (SELECT * FROM cdp.decide(pg_temp.p('dan'), 'email', '2026-03-02 09:00')
                                 UNION ALL SELECT * FROM cdp.decide(pg_temp.p('dan'), 'email', '2026-03-02 11:00')) x
           WHERE status = 'sent'), 2::bigint, 'dan reaches the e-mail cap');
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('fay'), 'web', '2026-03-02 10:00')), 'sent', 'fay, another profile, is not capped');
SELECT cdp.set_consent('cookie', 'fay-c', 'web', false, 'marketing', NULL, '2026-03-02 10:30');
SELECT lives_ok($$SELECT cdp.merge_profiles(pg_temp.p('dan'), pg_temp.p('fay'), 'same person', true)$$, 'dan and fay merged');
SELECT is((SELECT status || ' ' || left(reason, 4) FROM cdp.decide(pg_temp.p('fay'), 'email', '2026-03-03 12:00')),
	'suppressed cap:', 'the merged person is still capped on e-mail (decided through the absorbed id)');
SELECT is((SELECT status || ' ' || reason FROM cdp.decide(pg_temp.p('dan'), 'web', '2026-03-03 12:00')),
	'suppressed consent: opted out of marketing on web', 'fay''s opt-out binds the merged person');
SELECT is((SELECT status || ' ' || reason FROM cdp.decide(pg_temp.p('dan'), 'app', '2026-03-03 12:00')),
	'suppressed cap: 3 marketing contacts on all channels within 7 days (at most 3)',
	'the global cap counts fay''s contact with dan''s two: the merged person is capped');
SELECT is((SELECT count(*) FROM cdp.contacts c JOIN cdp.identifiers i USING (identifier_id)
           WHERE i.profile_id = pg_temp.p('dan') AND c.status = 'sent'), 3::bigint, 'caps count the contacts of both');
SELECT lives_ok($$SELECT cdp.unmerge((SELECT max(merge_id) FROM cdp.profile_merges), 'not the same person')$$, 'unmerged');
SELECT is((SELECT status FROM cdp.decide((SELECT profile_id FROM cdp.identifiers WHERE kind = 'cookie' AND value = 'fay-c'), 'email', '2026-03-03 13:00')),
	'suppressed', 'fay alone has no e-mail address: unreachable on email');
SELECT is((SELECT count(*) FROM cdp.contacts c JOIN cdp.identifiers i USING (identifier_id)
           WHERE c.status = 'sent' AND i.profile_id = pg_temp.p('dan')), 2::bigint,
	'dan keeps the contacts made through his own identifiers');

-- ---------------------------------------------------------------------------
-- Offer caps, budgets, holdouts, variants, fallbacks, the channel.
-- ---------------------------------------------------------------------------
DELETE FROM cdp.contact_policies;
CREATE TEMP TABLE crowd AS
SELECT 'crowd' || g AS name FROM generate_series(1, 40) g;
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties)
SELECT '2026-04-01', 'web', 'product_view', jsonb_build_object('customer_id', name, 'email', name || '@acme.fr'),
       '{"product_id": "p9", "category": "bags"}' FROM crowd;
SELECT cdp.sync();
INSERT INTO who SELECT i.value, i.profile_id FROM cdp.identifiers i WHERE i.kind = 'customer_id' AND i.value LIKE 'crowd%';
UPDATE cdp.offers SET active = false;
INSERT INTO cdp.offers (offer_id, name, value, max_per_profile, cap_period, budget, holdout, eligibility) VALUES
	('bags', 'Bags', 10, 2, '30 days', 60, 0.2, '{"fact": "interest", "key": "bags", "gt": 0}');
CREATE TEMP TABLE runs AS
SELECT c.name, k, d.* FROM crowd c, generate_series(1, 3) k,
     LATERAL cdp.decide(pg_temp.p(c.name), 'email', '2026-04-02'::timestamptz + k * interval '1 day') d;
SELECT is((SELECT count(*) FROM runs WHERE status = 'sent'), 60::bigint, 'the budget is used up, never exceeded');
SELECT is((SELECT used FROM cdp.offer_usage WHERE offer_id = 'bags'), 60::bigint, 'usage counts the offers sent');
SELECT ok((SELECT count(*) FROM runs WHERE status = 'holdout') BETWEEN 5 AND 40, 'holdouts are recorded');
SELECT is((SELECT max(n) FROM (SELECT count(*) AS n FROM runs WHERE status = 'sent' GROUP BY name) x), 2::bigint,
	'nobody gets the offer more than max_per_profile times');
SELECT ok((SELECT bool_and(reason LIKE 'budget: all 60 used' OR reason LIKE 'offer cap:%') FROM runs WHERE status = 'suppressed'),
	'refusals say budget or offer cap');
SELECT ok((SELECT bool_and(payload IS NULL AND offer_id = 'bags') FROM runs WHERE status = 'holdout'), 'a holdout sends nothing');
SELECT ok((SELECT bool_and(action_prob > 0 AND action_prob <= 1) FROM cdp.contacts WHERE offer_id = 'bags'), 'every decision logs its probability');

-- variants: the price is learnt per segment
UPDATE cdp.offers SET active = false;
INSERT INTO cdp.offers (offer_id, name, value, eligibility) VALUES ('coat', 'Coat', 30, '{"fact": "orders", "gte": 0}');
INSERT INTO cdp.offer_variants VALUES ('coat', '10pct', 27, '{"discount": 10}'), ('coat', '30pct', 21, '{"discount": 30}');
UPDATE cdp.offers SET payload = '{"page": "/coats"}' WHERE offer_id = 'coat';
CREATE TEMP TABLE v AS SELECT * FROM cdp.decide(pg_temp.p('crowd1'), 'web', '2026-05-01');
SELECT ok((SELECT variant IN ('10pct', '30pct') AND payload->>'page' = '/coats' AND payload ? 'discount' FROM v), 'a variant is chosen, its payload merged');
SELECT is((SELECT count(*) FROM cdp.explain_offers(pg_temp.p('crowd1'), 'web', '2026-05-01') WHERE offer_id = 'coat'), 2::bigint, 'explain_offers lists each variant');
-- outcomes teach the variant's posterior
SELECT is((cdp.record_outcome((SELECT contact_id FROM v), 'converted', 27)).success, true, 'a conversion is a success');
SELECT is((SELECT sum(successes) FROM cdp.offer_stats WHERE offer_id = 'coat' AND variant = (SELECT variant FROM v)), 1::numeric, 'learnt once');
SELECT lives_ok($$SELECT cdp.record_outcome((SELECT contact_id FROM v), 'converted')$$, 'a repeated outcome');
SELECT is((SELECT sum(successes) FROM cdp.offer_stats WHERE offer_id = 'coat'), 1::numeric, '... is not learnt twice');
SELECT throws_ok($$SELECT cdp.record_outcome((SELECT contact_id FROM v), 'liked')$$, '22023', 'unknown outcome "liked"', 'an unknown outcome');
SELECT throws_ok($$SELECT cdp.record_outcome(-1, 'opened')$$, 'P0002', 'contact -1 does not exist', 'an unknown contact');
SELECT throws_ok($$SELECT cdp.decide(-1, 'web')$$, 'P0002', 'profile -1 does not exist', 'an unknown profile');
SELECT throws_ok($$SELECT cdp.decide(pg_temp.p('ann'), 'fax')$$, '22023', 'unknown channel "fax"', 'an unknown channel');

-- the fallback, only when nothing else is eligible
UPDATE cdp.offers SET active = (offer_id = 'news');
SELECT is((SELECT offer_id || ' ' || left(reason, 8) FROM cdp.decide(pg_temp.p('crowd2'), 'web', '2026-05-01')), 'news fallback', 'the fallback when nothing else is eligible');
UPDATE cdp.offers SET active = false;
SELECT is((SELECT status || ' ' || reason FROM cdp.decide(pg_temp.p('crowd2'), 'web', '2026-05-02')), 'no_offer no eligible offer on web', 'nothing at all: no_offer');

-- the channel: an expensive channel only where the expected value pays for it
INSERT INTO cdp.contact_policies (channel, contact_cost) VALUES ('call_center', 5), ('email', 0.01);
INSERT INTO cdp.offers (offer_id, name, channels, value, eligibility) VALUES
	('small', 'Small', '{email,call_center}', 2, NULL),
	('big', 'Big', '{call_center}', 5000, '{"fact": "interest", "key": "shoes", "gt": 0}');
SELECT is((SELECT channel FROM cdp.decide(pg_temp.p('crowd3'), NULL, '2026-05-01 12:00')), 'email', 'a small offer goes by e-mail');
SELECT is((SELECT array_agg(channel || ' ' || offer_id ORDER BY score DESC) FROM cdp.next_best_offers(pg_temp.p('ann'), NULL, 5, '2026-05-01 12:00')),
	'{"call_center big","email small"}', 'a big offer pays for a call; a small one is not worth one');
SELECT is((SELECT channel || ' ' || offer_id FROM cdp.decide(pg_temp.p('ann'), NULL, '2026-05-01 12:00')), 'call_center big', 'decide picks the channel');
SELECT is((SELECT offer_id FROM cdp.decide(pg_temp.p('ann'), 'call_center', '2026-05-01 12:00')), 'big', 'with the channel given, only its offers');

-- ignored contacts suppress marketing (max_ignored within ignored_window)
UPDATE cdp.contact_policies SET max_ignored = 2, ignored_window = '30 days' WHERE channel = 'email';
SELECT cdp.record_outcome(contact_id, 'ignored', NULL, '2026-05-03')
FROM (SELECT * FROM cdp.decide(pg_temp.p('crowd4'), 'email', '2026-05-01 12:00')
      UNION ALL SELECT * FROM cdp.decide(pg_temp.p('crowd4'), 'email', '2026-05-02 12:00')) x;
SELECT is((SELECT status || ' ' || reason FROM cdp.decide(pg_temp.p('crowd4'), 'email', '2026-05-04 12:00')),
	'suppressed suppressed: 2 contacts on email ignored within 30 days (at most 2)', 'suppressed after ignored contacts');
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('crowd4'), 'email', '2026-06-02 12:00')), 'sent', '... until they leave the window');

-- ---------------------------------------------------------------------------
-- Measurement and campaigns.
-- ---------------------------------------------------------------------------
SELECT cdp.record_outcome(contact_id, 'converted', 10) FROM runs WHERE status = 'sent' AND name IN ('crowd1', 'crowd2', 'crowd3', 'crowd5', 'crowd6');
SELECT cdp.record_outcome(contact_id, 'converted', 10) FROM runs WHERE status = 'holdout' LIMIT 1;
SELECT is((SELECT decisions FROM cdp.offer_performance WHERE offer_id = 'bags'), 60::bigint, 'offer_performance: decisions');
SELECT ok((SELECT conversions > 0 AND conversion_rate = conversions::float8 / decisions AND rate_low < conversion_rate AND rate_high > conversion_rate
           AND holdouts > 0 AND holdout_conversions = 1 AND uplift > 0 AND uplift_low < uplift AND uplift < uplift_high
           FROM cdp.offer_performance WHERE offer_id = 'bags'), 'offer_performance: rate, interval, holdout and uplift');
SELECT is((SELECT round(low::numeric, 4) || ' ' || round(high::numeric, 4) FROM cdp.rate_interval(5, 100)), '0.0215 0.1118', 'the Wilson interval');

UPDATE cdp.offers SET active = (offer_id IN ('small', 'news'));
UPDATE cdp.contact_policies SET max_contacts = 1, per = '1 day' WHERE channel = 'email';
CREATE TEMP TABLE camp AS SELECT * FROM cdp.plan_campaign('email', jsonb_build_object('profiles', (SELECT jsonb_agg(p) FROM who WHERE name LIKE 'crowd%')), '2026-06-10 12:00');
SELECT is((SELECT profiles || ' ' || chosen FROM camp), '40 40', 'plan_campaign decides for the audience');
CREATE TEMP TABLE camp2 AS SELECT * FROM cdp.plan_campaign('email', jsonb_build_object('profiles', (SELECT jsonb_agg(p) FROM who WHERE name LIKE 'crowd%')), '2026-06-10 15:00');
SELECT is((SELECT chosen || ' ' || (suppressed->>'cap') FROM camp2), '0 40', '... a second run the same day is suppressed by the cap, by reason');
SELECT is((SELECT count(*) FROM cdp.contacts WHERE campaign_id = (SELECT campaign_id FROM camp)), 40::bigint, 'contacts carry the campaign');
SELECT throws_like($$SELECT cdp.plan_campaign('email', '{"everyone": 1}')$$, '%audience: unknown or malformed "everyone"%', 'a bad audience');

-- off-policy evaluation on a uniform random log: 3 arms, the best converts 30 %
CREATE TEMP TABLE obd AS
SELECT timestamptz '2026-01-01' + g * interval '1 minute' AS decided_at, 'a' || (g % 3) AS arm, NULL::text AS context,
       CASE WHEN random() < (ARRAY[0.05, 0.1, 0.3])[g % 3 + 1] THEN 1 ELSE 0 END AS reward, 1.0 / 3 AS propensity
FROM generate_series(1, 6000) g;
SELECT setseed(0.5);
CREATE TEMP TABLE ev AS SELECT * FROM cdp.evaluate_policy('obd', 1, 1, 50, 3);
SELECT ok((SELECT value BETWEEN 0.13 AND 0.17 FROM ev WHERE method = 'logged'), 'the logged policy''s rate');
SELECT ok((SELECT value > 0.22 AND low <= value AND value <= high FROM ev WHERE method = 'thompson_ipw'), 'Thompson sampling estimated near the best arm (IPW)');
SELECT ok((SELECT value > 0.22 FROM ev WHERE method = 'thompson_replay'), '... and by replay');
SELECT is((SELECT count(*) FROM cdp.contacts c WHERE c.decided_at >= '2026-01-01' AND c.decided_at < '2026-01-06'), 0::bigint, 'evaluation records nothing');
SELECT throws_ok($$SELECT cdp.evaluate_policy('pg_class')$$, '42703', NULL, 'a relation that is not a log');

-- the time allowed again is never inside quiet hours: a gap that ends at
-- 21:30 in quiet hours from 21:00 allows contact at 08:00 the next day
UPDATE cdp.contact_policies SET max_contacts = NULL, per = NULL, min_gap = '1 hour', quiet_start = '21:00', quiet_end = '08:00'
WHERE channel = 'email';
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('crowd9'), 'email', '2026-06-20 20:30')), 'sent', 'an e-mail at 20:30');
SELECT is((SELECT left(reason, 12) || ' ' || next_allowed_at FROM cdp.decide(pg_temp.p('crowd9'), 'email', '2026-06-20 20:45')),
	'minimum gap: 2026-06-21 08:00:00+00', 'the gap would end at 21:30, in quiet hours: allowed again at 08:00');

-- configuration and data that must not break decisions
SELECT throws_ok($$UPDATE cdp.offers SET value = 'NaN' WHERE offer_id = 'small'$$, '23514', NULL, 'a NaN value is refused');
SELECT throws_ok($$INSERT INTO cdp.contact_policies (channel, contact_cost) VALUES ('push', 'Infinity')$$, '23514', NULL, 'an infinite contact cost is refused');
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties)
VALUES ('2026-04-01', 'web', 'profile_update', '{"customer_id": "crowd7"}', '{"traits": {"huge": 1e400, "deep": {"a": {"b": 1}}, "tier": "gold"}}');
SELECT cdp.sync();
INSERT INTO cdp.contact_policies (channel, quiet_start, quiet_end) VALUES ('web', '23:00', '06:00')
	ON CONFLICT (channel) DO UPDATE SET quiet_start = '23:00', quiet_end = '06:00';
SELECT is((SELECT status FROM cdp.decide(pg_temp.p('crowd7'), 'web', '2026-06-12 12:00')), 'sent', 'a trait beyond double precision does not break a decision');
SELECT is((cdp.offer_facts(pg_temp.p('crowd7'), '2026-06-12 12:00'))->'traits', '{"tier": "gold"}', '... the facts keep the scalar traits rules compare');
SELECT is((SELECT outcome FROM cdp.record_outcome((SELECT max(contact_id) FROM cdp.contacts WHERE outcome = 'converted'), 'opened')), 'converted',
	'a conversion is final: a later outcome does not undo it');

SELECT * FROM finish();
ROLLBACK;

