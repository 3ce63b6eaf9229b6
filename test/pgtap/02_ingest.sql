-- Ingest: every path stores the same row, nothing is lost in a bulk load,
-- and what is rejected is rejected for the reason cdp.check_event gives.
BEGIN;
SELECT plan(11);
SET LOCAL timezone = 'UTC';
SET LOCAL client_min_messages = warning;

-- One event through the four entry points gives four identical rows.
SELECT cdp.track('2025-06-01 12:00:00+00', 'web', 'add_to_cart', '{"cookie": "same"}', '{"product_id": "P1"}', 12.5, 'web-sdk');
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties, amount, source)
VALUES ('2025-06-01 12:00:00+00', 'web', 'add_to_cart', '{"cookie": "same"}', '{"product_id": "P1"}', 12.5, 'web-sdk');
SELECT cdp.ingest('[{"occurred_at": "2025-06-01T14:00:00+02:00", "channel": "web", "type": "add_to_cart",
                     "identifiers": {"cookie": "same"}, "properties": {"product_id": "P1"}, "amount": 12.50, "source": "web-sdk"}]');
INSERT INTO cdp.event_load VALUES ('2025-06-01 12:00:00Z', 'web', 'add_to_cart', '{"cookie":"same"}', '{"product_id":"P1"}', '12.5', 'web-sdk');
SELECT is((SELECT count(DISTINCT (occurred_at, channel, type, identifiers, properties, amount, source))::int
           FROM cdp.events WHERE identifiers->>'cookie' = 'same'), 1, 'track, INSERT, ingest and the loader store the same row');
SELECT is((SELECT count(*)::int FROM cdp.events WHERE identifiers->>'cookie' = 'same'), 4, 'four rows stored');

-- A bulk load of a random mix: every row is stored or quarantined, once.
CREATE TEMP TABLE mix AS
SELECT i,
       CASE WHEN i % 17 = 0 THEN NULL ELSE '2025-06-02'::timestamptz + i * interval '1 second' END AS occurred_at,
       CASE WHEN i % 13 = 0 THEN 'fax' ELSE 'app' END AS channel,
       CASE WHEN i % 11 = 0 THEN '' ELSE 'product_view' END AS type,
       CASE WHEN i % 7 = 0 THEN '{}'::jsonb ELSE jsonb_build_object('device_id', 'd-' || i) END AS identifiers,
       CASE WHEN i % 19 = 0 THEN 'NaN'::numeric ELSE NULL END AS amount
FROM generate_series(1, 2000) i;
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, amount)
SELECT occurred_at, channel, type, identifiers, amount FROM mix ORDER BY i;

CREATE TEMP TABLE expected AS
SELECT m.i, (cdp.check_event(m.occurred_at, m.channel, m.type, m.identifiers, NULL, m.amount)).reason_code FROM mix m;
SELECT is((SELECT count(*)::int FROM cdp.events WHERE identifiers->>'device_id' LIKE 'd-%'),
          (SELECT count(*)::int FROM expected WHERE reason_code IS NULL), 'every valid row is stored');
SELECT is((SELECT count(*)::int FROM cdp.rejected_events WHERE raw->'identifiers' IS NOT NULL AND raw->>'channel' IN ('app', 'fax')),
          (SELECT count(*)::int FROM expected WHERE reason_code IS NOT NULL), 'every invalid row is quarantined');
SELECT bag_eq($$SELECT reason_code FROM cdp.rejected_events WHERE raw->>'channel' IN ('app', 'fax')$$,
              $$SELECT reason_code FROM expected WHERE reason_code IS NOT NULL$$,
              'each row is rejected for the reason check_event gives');
SELECT is_empty($$SELECT FROM cdp.events WHERE occurred_at IS NULL OR channel IS NULL OR type IS NULL
                  OR identifiers IS NULL OR identifiers = '{}' OR amount = 'NaN'$$,
                'no invalid row is left in cdp.events');
SELECT ok((SELECT count(*) FROM expected WHERE reason_code IS NOT NULL) > 500, 'the mix had invalid rows of every kind');

-- Rejections keep the raw row, the reason and the source.
SELECT is((SELECT raw->>'channel' FROM cdp.rejected_events WHERE reason_code = 'unknown_channel' LIMIT 1), 'fax', 'raw row kept');

-- The channel registry is read once per session and follows changes made
-- and committed by other sessions.
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('other', format('host=%s port=%s dbname=%s user=%s',
	current_setting('unix_socket_directories'), current_setting('port'), current_database(), current_user));
SELECT is((SELECT reason FROM dblink('other', $$SELECT (cdp.check_event('2025-06-03', 'kiosk', 'store_visit', '{"loyalty_card": "L9"}')).reason_code$$) AS t(reason text)),
          'unknown_channel', 'another session does not know channel kiosk');
SELECT dblink_exec(format('host=%s port=%s dbname=%s user=%s', current_setting('unix_socket_directories'),
	current_setting('port'), current_database(), current_user),
	$$INSERT INTO cdp.channels VALUES ('kiosk', false, 'In-store kiosk')$$);
SELECT is((SELECT reason FROM dblink('other', $$SELECT (cdp.check_event('2025-06-03', 'kiosk', 'store_visit', '{"loyalty_card": "L9"}')).reason_code$$) AS t(reason text)),
          NULL, 'it accepts kiosk once another session registered it');
SELECT dblink_exec(format('host=%s port=%s dbname=%s user=%s', current_setting('unix_socket_directories'),
	current_setting('port'), current_database(), current_user),
	$$DELETE FROM cdp.channels WHERE channel = 'kiosk'$$);
SELECT is((SELECT reason FROM dblink('other', $$SELECT (cdp.check_event('2025-06-03', 'kiosk', 'store_visit', '{"loyalty_card": "L9"}')).reason_code$$) AS t(reason text)),
          'unknown_channel', 'and refuses it again once it is removed');
SELECT dblink_disconnect('other');

SELECT * FROM finish();
ROLLBACK;
