-- Erasure (cdp.forget): a person known through three identifiers, with
-- events on several channels, a quarantined row, a consent, scores,
-- journeys, a decision and a trigger's message; after the erasure, a scan
-- of every text, json, jsonb and array column of every cdp table finds
-- none of their values, raw or normalized; cdp.resolve finds nothing;
-- another person is untouched; the audit row holds no personal data;
-- tombstones; the dry run changes nothing; errors.
BEGIN;
SELECT plan(26);
SET LOCAL timezone = 'UTC';
SET LOCAL client_min_messages = warning;

SELECT has_function('cdp', 'forget', ARRAY['text', 'text', 'text']);
SELECT has_function('cdp', 'forget_dry_run', ARRAY['text', 'text']);
SELECT has_table('cdp', 'erasures', 'the audit of erasures');
SELECT has_table('cdp', 'tombstones', 'the tombstones');

SELECT cdp.ensure_partitions(now() - interval '3 months', now() + interval '1 month');
SELECT cdp.run_triggers();
INSERT INTO cdp.offers (offer_id, name, channels, value) VALUES ('p_sorry', 'Sorry', '{sms}', 5);
INSERT INTO cdp.triggers (trigger_id, on_event, channel, offers) VALUES ('p_apology', 'complaint', 'sms', '{p_sorry}');
-- Ann: raw forms differ from the normalized ones
SELECT cdp.track(now() - interval '40 days', 'web', 'page_view', '{"cookie": "ann-cookie-77"}', '{"page": "/"}');
SELECT cdp.track(now() - interval '39 days', 'web', 'add_to_cart', '{"cookie": "ann-cookie-77", "email": " Ann.Privacy@Shop.FR "}', '{"product_id": "P1"}');
SELECT cdp.track(now() - interval '39 days', 'store', 'purchase', '{"email": "ann.privacy@shop.fr", "phone": "+33 6 12 34 56 78"}', '{"traits": {"first_name": "Ann"}}', 80);
SELECT cdp.track(now() - interval '10 days', 'store', 'purchase', '{"phone": "+33612345678"}', '{}', 40);
SELECT cdp.track(now() - interval '1 minute', 'call_center', 'complaint', '{"phone": "+33612345678"}', '{"severity": 3}');
SELECT cdp.track(now(), 'email', 'unsubscribe', '{"email": "ann.privacy@shop.fr"}');
SELECT * FROM cdp.ingest('[{"occurred_at": "2020-13-01", "channel": "web", "type": "page_view", "identifiers": {"email": "ANN.PRIVACY@shop.fr"}}]');
-- Bob
SELECT cdp.track(now() - interval '20 days', 'store', 'purchase', '{"email": "bob.kept@shop.fr"}', '{}', 30);
SELECT cdp.detect_journey_breaks();
SET LOCAL client_min_messages = error;
SELECT cdp.refresh_scores(now());
SET LOCAL client_min_messages = warning;
SELECT cdp.run_triggers();
SELECT cdp.decide(cdp.resolve('email', 'bob.kept@shop.fr'), 'email');

SELECT ok((SELECT count(*) FROM cdp.rejected_events WHERE raw::text ILIKE '%ann.privacy%') = 1, 'Ann has a quarantined row');
SELECT ok((SELECT count(*) FROM cdp.outbox o WHERE o.payload::text LIKE '%+33612345678%') = 1, 'and a text message in the outbox');

-- the dry run says what would go, and changes nothing
CREATE TEMP TABLE before_dry AS
SELECT (SELECT count(*) FROM cdp.events) AS events, (SELECT count(*) FROM cdp.identifiers) AS identifiers,
       (SELECT count(*) FROM cdp.contacts) AS contacts, (SELECT count(*) FROM cdp.rejected_events) AS rejected,
       (SELECT count(*) FROM cdp.erasures) AS erasures, (SELECT count(*) FROM cdp.tombstones) AS tombstones;
CREATE TEMP TABLE dry AS SELECT cdp.forget_dry_run('phone', '+33 6 12 34 56 78') AS r;
SELECT results_eq($$SELECT (r->>'profiles')::int >= 1, (r->>'identifiers')::int, (r #>> '{rows,events}')::int FROM dry$$,
	$$VALUES (true, 3, 6)$$, 'the dry run: 3 identifiers and 6 events would go');
SELECT results_eq($$SELECT (SELECT count(*) FROM cdp.events), (SELECT count(*) FROM cdp.identifiers), (SELECT count(*) FROM cdp.contacts),
	(SELECT count(*) FROM cdp.rejected_events), (SELECT count(*) FROM cdp.erasures), (SELECT count(*) FROM cdp.tombstones)$$,
	'SELECT * FROM before_dry', '... and nothing went: events, identifiers, contacts, quarantine, audit and tombstones as before');

SELECT throws_ok($$SELECT cdp.forget('email', 'ann.privacy@shop.fr', ' ')$$, '22023', 'an erasure needs a reason', 'a reason is required');
SELECT throws_ok($$SELECT cdp.forget('email', 'not an address', 'GDPR 1')$$, '22023', NULL, 'an invalid identifier is refused');
SELECT throws_ok($$SELECT cdp.forget('email', 'nobody@shop.fr', 'GDPR 1')$$, 'P0002', 'no profile holds identifier of kind "email"', 'an unknown one too');

CREATE TEMP TABLE erased AS SELECT cdp.forget('phone', '+33 6 12 34 56 78', 'GDPR request 2026-118') AS r;
SELECT is((SELECT (r->>'identifiers')::int FROM erased), 3, 'the whole person went: cookie, e-mail, phone');
SELECT is(cdp.resolve('email', 'ann.privacy@shop.fr'), NULL, 'cdp.resolve finds nothing');
SELECT is(cdp.resolve('cookie', 'ann-cookie-77'), NULL, '... by any identifier');

-- every text, json, jsonb and array column of every table of cdp
CREATE TEMP TABLE needles (v text);
INSERT INTO needles VALUES ('ann.privacy@shop.fr'), ('Ann.Privacy@Shop.FR'), ('ann-cookie-77'), ('+33612345678'), ('+33 6 12 34 56 78'), ('612345678');
CREATE TEMP TABLE found (tbl text, col text, hits bigint);
CREATE TEMP TABLE scanned (tbl text, col text);
DO $$
DECLARE
	c record;
	n bigint;
BEGIN
	FOR c IN SELECT cl.oid::regclass AS tbl, a.attname AS col
	         FROM pg_class cl JOIN pg_namespace ns ON ns.oid = cl.relnamespace
	         JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped
	         JOIN pg_type t ON t.oid = a.atttypid
	         WHERE ns.nspname = 'cdp' AND cl.relkind IN ('r', 'p') AND NOT cl.relispartition
	           AND (t.typcategory IN ('S', 'A') OR t.typname IN ('json', 'jsonb')) LOOP
		EXECUTE format('SELECT count(*) FROM %s x WHERE EXISTS (SELECT FROM needles WHERE strpos(lower(x.%I::text), lower(needles.v)) > 0)',
		               c.tbl, c.col) INTO n;
		INSERT INTO scanned VALUES (c.tbl::text, c.col);
		IF n > 0 THEN
			INSERT INTO found VALUES (c.tbl::text, c.col, n);
		END IF;
	END LOOP;
END
$$;
SELECT is((SELECT string_agg(tbl || '.' || col || ': ' || hits, ', ') FROM found), NULL,
	'no column of any cdp table holds one of the person''s values, raw or normalized');
SELECT ok((SELECT count(*) FROM scanned) >= 50 AND EXISTS (SELECT FROM scanned WHERE tbl = 'cdp.events' AND col = 'identifiers')
	AND EXISTS (SELECT FROM scanned WHERE tbl = 'cdp.outbox' AND col = 'payload'), '... (the scan read every such column: at least 50, events and outbox among them)');

SELECT results_eq($$SELECT reason, erased_by = current_user, identifiers, rows ? 'events' FROM cdp.erasures$$,
	$$VALUES ('GDPR request 2026-118'::text, true, 3, true)$$, 'the audit row: why, who, how many');
SELECT is((SELECT count(*) FROM cdp.tombstones WHERE hash = cdp.erasure_hash('email', 'ann.privacy@shop.fr')), 1::bigint,
	'a tombstone per identifier: its keyed hash');
SELECT throws_ok($$SELECT cdp.forget('email', 'ann.privacy@shop.fr', 'again')$$, 'P0002',
	'identifier of kind "email" was already erased', 'erasing again says it was done');
-- a later event carrying an erased identifier is refused, in any form
SELECT throws_like($$SELECT cdp.track(now(), 'web', 'page_view', '{"email": " ANN.privacy@shop.fr"}')$$,
	'%identifier "email" was erased on request%', 'cdp.track refuses an erased identifier, written in another form');
SELECT is((SELECT reason_code FROM cdp.check_event(now(), 'store', 'purchase', '{"cookie": "x-1", "phone": "+33 (0)6 12 34 56 78"}')),
	'erased', 'cdp.check_event says why');
SELECT results_eq($$SELECT accepted, rejected FROM cdp.ingest('[{"occurred_at": "2026-12-01T10:00:00Z", "channel": "web", "type": "page_view",
	"identifiers": {"cookie": "ann-cookie-77"}}, {"occurred_at": "2026-12-01T10:00:00Z", "channel": "web", "type": "page_view",
	"identifiers": {"cookie": "someone-else"}}]')$$, $$VALUES (1::bigint, 1::bigint)$$, 'a load quarantines the erased person''s event, and keeps the other');
SELECT results_eq($$SELECT count(*), bool_and(raw ? 'redacted' AND NOT raw ? 'identifiers' AND NOT raw ? 'properties') FROM cdp.rejected_events WHERE reason_code = 'erased'$$,
	$$VALUES (1::bigint, true)$$, '... with reason_code erased, its identifiers and properties not kept');
SELECT is((SELECT count(*) FROM cdp.rejected_events WHERE strpos(raw::text, 'ann-cookie-77') > 0 OR strpos(lower(raw::text), 'ann.privacy') > 0), 0::bigint,
	'the quarantine keeps none of the erased person''s values');
SET LOCAL cdp.refuse_erased = off;
SELECT isnt(cdp.track(now(), 'web', 'page_view', '{"email": "ann.privacy@shop.fr"}'), NULL,
	'with cdp.refuse_erased off (after new consent) the person is collected again');
RESET cdp.refuse_erased;
SELECT results_eq($$SELECT (SELECT count(*) FROM cdp.events e JOIN cdp.event_anchors a USING (event_id, occurred_at)
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id WHERE i.value = 'bob.kept@shop.fr'), (SELECT count(*) FROM cdp.contacts
	WHERE profile_id = cdp.resolve('email', 'bob.kept@shop.fr'))$$, $$VALUES (1::bigint, 1::bigint)$$, 'Bob keeps his event and his contact');

SELECT * FROM finish();
ROLLBACK;
