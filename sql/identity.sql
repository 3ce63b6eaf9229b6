-- Identity resolution on hand-made journeys: normalizers, the blocklist,
-- stitching at ingest (merges, limits, conflicts), resolve, and a rebuild
-- that gives the same profiles.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET cdp.default_country = 'GB';

-- Normalizers
SELECT v, cdp.normalize_email(v) FROM (VALUES (' Ann.Smith@Example.COM '), ('ann@x'), ('no-at-sign'), ('a..b@x.org')) t(v);
SELECT v, cdp.normalize_phone(v) FROM (VALUES ('07700 900123'), ('+44 7700 900123'), ('0044 7700-900-123'),
                                          ('(07700) 900123'), ('+44 (0)7700 900123'), ('7700'), ('call me')) t(v);
SELECT cdp.normalize_phone('06 12 34 56 78', 'FR'), cdp.normalize_phone('(415) 555-0123', 'US');
SELECT cdp.normalize_phone('0612345678', 'XX');
-- NULL in, NULL out (a NULL phone used to crash the backend); a NULL country is the default one
SELECT cdp.normalize_phone(NULL) IS NULL AS null_phone, cdp.normalize_phone(NULL, 'FR') IS NULL AS null_phone_fr,
       cdp.normalize_phone('07700 900123', NULL) AS default_country;
SELECT * FROM cdp.check_identifier('email', 'TEST@test.com');
SELECT * FROM cdp.check_identifier('phone', '0000000000');
SELECT * FROM cdp.check_identifier('cookie', 'undefined');
SELECT * FROM cdp.check_identifier('cookie', ' c-1 ');
SELECT * FROM cdp.check_identifier('fax_number', '123');

-- Anna browses anonymously, then logs in: her cookie profile absorbs the account.
SELECT cdp.track('2025-05-01 10:00', 'web', 'page_view', '{"cookie": "c-anna"}') > 0 AS ok;
SELECT cdp.track('2025-05-01 10:05', 'web', 'login', '{"cookie": "c-anna", "customer_id": "A-1001", "email": "Anna.Berg@Fjord.no"}') > 0 AS ok;
-- ... and buys in a store with her loyalty card and e-mail (messy form)
SELECT cdp.track('2025-05-03 15:00', 'store', 'purchase', '{"loyalty_card": "L-555", "email": " ANNA.BERG@fjord.NO"}', '{}', 80) > 0 AS ok;
-- ... which joins the card to her profile through the e-mail
SELECT cdp.resolve('cookie', 'c-anna') = cdp.resolve('loyalty_card', 'L-555') AS same_person,
       cdp.resolve('email', 'anna.berg@FJORD.no') = cdp.resolve('customer_id', 'A-1001') AS same_person_too;

-- Bob shares the family tablet with Anna: two customer ids never merge.
SELECT cdp.track('2025-05-04 20:00', 'web', 'login', '{"cookie": "c-tablet", "customer_id": "A-1001"}') > 0 AS ok;
SELECT cdp.track('2025-05-05 20:00', 'web', 'login', '{"cookie": "c-tablet", "customer_id": "A-1002", "email": "bob.berg@fjord.no"}') > 0 AS ok;
SELECT cdp.resolve('customer_id', 'A-1001') <> cdp.resolve('customer_id', 'A-1002') AS kept_apart;
SELECT c.reason, c.kind, i.kind AS kept_apart_kind, i.value
FROM cdp.identity_conflicts c JOIN cdp.identifiers i ON i.identifier_id = c.identifier_id
WHERE c.event_id IN (SELECT event_id FROM cdp.events WHERE occurred_at >= '2025-05-01');

-- Junk values and unknown kinds never link anything; the events are kept.
SELECT cdp.track('2025-05-06 09:00', 'call_center', 'call', '{"phone": "0000000000", "customer_id": "A-1002"}') > 0 AS ok;
SELECT cdp.track('2025-05-06 09:30', 'web', 'page_view', '{"cookie": "undefined", "fax": "123"}') > 0 AS ok;
SELECT kind, value, reason FROM cdp.identifier_rejections
WHERE event_id IN (SELECT event_id FROM cdp.events WHERE occurred_at >= '2025-05-01') ORDER BY rejection_id;

-- The profiles, as identifiers by kind
SELECT string_agg(i.kind || '=' || i.value, ', ' ORDER BY i.kind, i.value) AS identifiers
FROM cdp.profiles p JOIN cdp.identifiers i USING (profile_id)
WHERE p.merged_into IS NULL AND p.profile_id IN (cdp.resolve('customer_id', 'A-1001'), cdp.resolve('customer_id', 'A-1002'))
GROUP BY p.profile_id ORDER BY 1;

-- The journal: one merge (the login), and the absorbed profile forwards.
SELECT m.method, ia.kind || '=' || ia.value AS anchor, io.kind || '=' || io.value AS through,
       m.survivor = cdp.resolve('customer_id', 'A-1001') AS into_anna,
       (SELECT merged_into FROM cdp.profiles WHERE profile_id = m.absorbed) = m.survivor AS forwards
FROM cdp.profile_merges m
JOIN cdp.identifiers ia ON ia.identifier_id = m.anchor_id
JOIN cdp.identifiers io ON io.identifier_id = m.identifier_id
WHERE m.event_id IN (SELECT event_id FROM cdp.events WHERE occurred_at >= '2025-05-01');

-- Every stored event with a valid identifier has an anchor.
SELECT e.type, i.kind AS anchor_kind FROM cdp.events e
JOIN cdp.event_anchors a USING (event_id) JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
WHERE e.occurred_at >= '2025-05-01' ORDER BY e.occurred_at;

-- A subtransaction that aborts inside a statement (an exception block in a
-- function) does not make the statement forget the events stored before it.
CREATE FUNCTION pg_temp.flaky(i int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		PERFORM 1 / (i - 2);
	EXCEPTION WHEN division_by_zero THEN NULL;
	END;
	RETURN 'c-flaky-' || i;
END $$;
INSERT INTO cdp.events (occurred_at, channel, type, identifiers)
SELECT '2025-05-07', 'web', 'page_view', jsonb_build_object('cookie', pg_temp.flaky(i)) FROM generate_series(1, 3) i;
SELECT value FROM cdp.identifiers WHERE value LIKE 'c-flaky-%' ORDER BY value;

-- With no rule at all, identifiers are recorded as left out and events still load.
BEGIN;
DELETE FROM cdp.identity_rules;
SELECT cdp.track('2025-05-08', 'web', 'page_view', '{"cookie": "c-norule"}') > 0 AS stored;
SELECT reason FROM cdp.identifier_rejections WHERE value = 'c-norule';
ROLLBACK;

-- A rebuild counts in its notices: one identifier, one link.
BEGIN;
TRUNCATE cdp.identity_links, cdp.event_anchors, cdp.identifiers, cdp.profiles, cdp.profile_merges,
	cdp.identifier_moves, cdp.identity_conflicts, cdp.identity_overrides;
SELECT cdp.track('2025-05-08', 'web', 'login', '{"cookie": "c-solo", "customer_id": "A-solo"}') > 0 AS stored;
SELECT identifiers, links, profiles, changed FROM cdp.rebuild_identities();
DELETE FROM cdp.identity_links;
DELETE FROM cdp.identifiers WHERE value = 'c-solo';
SELECT identifiers, links, profiles, changed FROM cdp.rebuild_identities();
ROLLBACK;

-- The golden record: the most recent city, the most trusted birth date.
SELECT cdp.track('2025-05-09', 'web', 'profile_update', '{"customer_id": "A-1001"}',
                 '{"traits": {"city": "Bergen", "birth_date": "1990-01-02", "first_name": "Anna"}}', NULL, 'web-sdk') > 0 AS ok;
SELECT cdp.track('2025-05-10', 'store', 'profile_update', '{"loyalty_card": "L-555"}',
                 '{"traits": {"city": "Oslo", "birth_date": "1990-02-01"}}', NULL, 'pos') > 0 AS ok;
SELECT cdp.track('2025-05-11', 'web', 'profile_update', '{"cookie": "c-anna"}',
                 '{"traits": {"birth_date": "1999-09-09", "first_name": null}}', NULL, 'web-sdk') > 0 AS ok;
SELECT trait, value, source, method, times_seen FROM cdp.profile_traits
WHERE profile_id = cdp.resolve('customer_id', 'A-1001') ORDER BY trait;
-- Bergen was sent twice, Oslo once and last: most_frequent keeps Bergen
SELECT cdp.track('2025-05-09 12:00', 'app', 'profile_update', '{"customer_id": "A-1001"}',
                 '{"traits": {"city": "Bergen"}}', NULL, 'app-sdk') > 0 AS ok;
INSERT INTO cdp.trait_rules VALUES ('city', 'most_frequent', NULL);
SELECT value FROM cdp.profile_traits WHERE profile_id = cdp.resolve('customer_id', 'A-1001') AND trait = 'city';
INSERT INTO cdp.trait_rules VALUES ('nickname', 'source_priority', '{}');

-- The single customer view: Anna across web and store, and Bob. (Events deleted by earlier
-- tests leave the profile store to be rebuilt by the worker or cdp.sync.)
SELECT pending_events FROM cdp.sync();
SELECT identifiers, traits, first_seen, last_seen, events, channels, orders, revenue
FROM cdp.customer_360
WHERE profile_id IN (cdp.resolve('customer_id', 'A-1001'), cdp.resolve('customer_id', 'A-1002'))
ORDER BY first_seen;

-- A rebuild from the links gives the same profiles, with the same ids.
CREATE TEMP TABLE before AS SELECT identifier_id, profile_id FROM cdp.identifiers;
SELECT identifiers, links, profiles, changed FROM cdp.rebuild_identities();
SELECT count(*) AS moved FROM before b JOIN cdp.identifiers i USING (identifier_id) WHERE i.profile_id <> b.profile_id;

-- Lowering a limit and rebuilding splits what the new rule forbids: with one
-- cookie per profile, the shared tablet leaves Anna; raising it back rejoins.
UPDATE cdp.identity_rules SET max_per_profile = 1 WHERE kind = 'cookie';
SELECT changed FROM cdp.rebuild_identities();
SELECT cdp.resolve('cookie', 'c-tablet') <> cdp.resolve('customer_id', 'A-1001') AS tablet_apart,
       cdp.resolve('cookie', 'c-anna') = cdp.resolve('customer_id', 'A-1001') AS first_cookie_stays;
UPDATE cdp.identity_rules SET max_per_profile = 50 WHERE kind = 'cookie';
SELECT changed FROM cdp.rebuild_identities();
SELECT cdp.resolve('cookie', 'c-tablet') = cdp.resolve('customer_id', 'A-1001') AS tablet_back;
-- the same partition as before the split
SELECT count(DISTINCT (b.profile_id, i.profile_id)) = count(DISTINCT b.profile_id)
   AND count(DISTINCT b.profile_id) = count(DISTINCT i.profile_id) AS same_partition
FROM before b JOIN cdp.identifiers i USING (identifier_id);
