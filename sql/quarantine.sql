-- Quarantine: bulk paths (COPY, INSERT ... SELECT, the raw loader, cdp.ingest)
-- keep the good rows and divert each bad one to cdp.rejected_events with its
-- raw form and reason.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
TRUNCATE cdp.rejected_events;

-- COPY into cdp.events: typed columns, one bad row per reason.
COPY cdp.events (occurred_at, channel, type, identifiers, properties, amount, source) FROM stdin WITH (FORMAT csv);
2025-04-01 10:00:00+00,web,page_view,"{""cookie"": ""c-1""}",,,web-sdk
,web,page_view,"{""cookie"": ""c-1""}",,,web-sdk
1970-01-01 00:00:00+00,web,page_view,"{""cookie"": ""c-1""}",,,web-sdk
2999-01-01 00:00:00+00,web,page_view,"{""cookie"": ""c-1""}",,,web-sdk
2025-04-01 10:01:00+00,,page_view,"{""cookie"": ""c-1""}",,,web-sdk
2025-04-01 10:02:00+00,fax,page_view,"{""cookie"": ""c-1""}",,,web-sdk
2025-04-01 10:03:00+00,web,,"{""cookie"": ""c-1""}",,,web-sdk
2025-04-01 10:04:00+00,web," page_view","{""cookie"": ""c-1""}",,,web-sdk
2025-04-01 10:05:00+00,web,page_view,,,,web-sdk
2025-04-01 10:06:00+00,web,page_view,{},,,web-sdk
2025-04-01 10:07:00+00,web,page_view,"{""Cookie"": ""c-1""}",,,web-sdk
2025-04-01 10:08:00+00,web,page_view,"{""cookie"": 17}",,,web-sdk
2025-04-01 10:09:00+00,web,page_view,"{""cookie"": ""c-1""}",[],,web-sdk
2025-04-01 10:10:00+00,store,purchase,"{""loyalty_card"": ""L1""}",,NaN,pos
2025-04-01 10:11:00+00,store,purchase,"{""loyalty_card"": ""L1""}",,12.50,"pos "
2025-04-01 10:12:00+00,store,purchase,"{""loyalty_card"": ""L1""}",,12.50,pos
\.
SELECT occurred_at, channel, type, amount FROM cdp.events WHERE occurred_at >= '2025-04-01' ORDER BY occurred_at;
SELECT reason_code, reason, source, raw FROM cdp.rejected_events ORDER BY reject_id;
TRUNCATE cdp.rejected_events;

-- INSERT ... SELECT keeps the good rows too.
INSERT INTO cdp.events (occurred_at, channel, type, identifiers)
SELECT '2025-04-02'::timestamptz + i * interval '1 minute',
       CASE WHEN i % 3 = 0 THEN 'teletext' ELSE 'web' END, 'page_view',
       jsonb_build_object('cookie', 'c-' || i)
FROM generate_series(1, 9) i;
SELECT count(*) AS loaded FROM cdp.events WHERE occurred_at >= '2025-04-02' AND occurred_at < '2025-04-03';
SELECT reason_code, reason, raw->>'occurred_at' AS occurred_at FROM cdp.rejected_events ORDER BY reject_id;
TRUNCATE cdp.rejected_events;

-- The raw loader turns malformed text into rejections instead of aborting.
COPY cdp.event_load FROM stdin WITH (FORMAT csv);
2025-04-03 10:00:00+00,web,page_view,"{""cookie"": ""c-9""}",,,web-sdk
2025-04-31 10:00:00,web,page_view,"{""cookie"": ""c-9""}",,,web-sdk
yesterday noon-ish,web,page_view,"{""cookie"": ""c-9""}",,,web-sdk
03/04/2025 10:00,web,page_view,"{""cookie"": ""c-9""}",,,web-sdk
2025-04-03 10:01:00+00,web,page_view,"{""cookie"": ""c-9""",,,web-sdk
2025-04-03 10:02:00+00,web,page_view,"{""cookie"": ""c-9""}",{'a': 1},,web-sdk
2025-04-03 10:03:00+00,store,purchase,"{""loyalty_card"": ""L1""}",,12;50,pos
2025-04-03 10:04:00+00,store,purchase,"{""loyalty_card"": ""L1""}",,"1,2",pos
2025-04-03 10:05:00+00,fax,page_view,"{""cookie"": ""c-9""}",,,web-sdk
2025-04-03 10:06:00+00,store,purchase,"{""loyalty_card"": ""L1""}","{""order_id"": ""O-7""}",-5.25,pos
\.
SELECT occurred_at, channel, type, properties, amount FROM cdp.events
WHERE occurred_at >= '2025-04-03' AND occurred_at < '2025-04-04' ORDER BY occurred_at;
SELECT reason_code, reason, raw FROM cdp.rejected_events ORDER BY reject_id;
TRUNCATE cdp.rejected_events;

-- cdp.ingest: the raw element is kept as sent.
SELECT * FROM cdp.ingest('[
  {"occurred_at": "2025-04-04 10:00:00+00", "channel": "sms", "type": "sms_click", "identifiers": {"phone": "+447700900123"}},
  "not an event",
  {"occurred_at": "2025-04-04 10:01:00+00", "channel": "sms", "type": "sms_click", "identifiers": {"phone": "+447700900123"}, "userId": "u1"},
  {"occurred_at": 1743760800, "channel": "sms", "type": "sms_click", "identifiers": {"phone": "+447700900123"}},
  {"occurred_at": "2025-04-04 25:00:00", "channel": "sms", "type": "sms_click", "identifiers": {"phone": "+447700900123"}},
  {"occurred_at": "now", "channel": "sms", "type": "sms_click", "identifiers": {"phone": "+447700900123"}},
  {"occurred_at": "2025-04-04 10:02:00+00", "channel": 7, "type": "sms_click", "identifiers": {"phone": "+447700900123"}},
  {"occurred_at": "2025-04-04 10:03:00+00", "channel": "sms", "type": ["sms_click"], "identifiers": {"phone": "+447700900123"}},
  {"occurred_at": "2025-04-04 10:04:00+00", "channel": "sms", "type": "sms_click", "identifiers": "+447700900123"},
  {"occurred_at": "2025-04-04 10:05:00+00", "channel": "sms", "type": "sms_click", "identifiers": {"phone": "+447700900123"}, "properties": "x"},
  {"occurred_at": "2025-04-04 10:06:00+00", "channel": "store", "type": "purchase", "identifiers": {"loyalty_card": "L1"}, "amount": true},
  {"occurred_at": "2025-04-04 10:07:00+00", "channel": "store", "type": "purchase", "identifiers": {"loyalty_card": "L1"}, "amount": "ten"},
  {"occurred_at": "2025-04-04 10:08:00+00", "channel": "store", "type": "purchase", "identifiers": {"loyalty_card": "L1"}, "amount": 10, "source": {"name": "pos"}},
  {"occurred_at": "2025-04-04 10:09:00+00", "channel": "sms", "type": "sms_click", "identifiers": {"phone": "+447700900123"}, "properties": null, "amount": null, "source": null}
]');
SELECT reason_code, reason, raw FROM cdp.rejected_events ORDER BY reject_id;
-- a batch that is not an array is an error, not a rejection
SELECT * FROM cdp.ingest('{"occurred_at": "2025-04-04"}');
SELECT * FROM cdp.ingest(NULL);

-- Nothing is lost: every row sent is either stored or quarantined.
SELECT count(*) AS events_on_2025_04_04 FROM cdp.events WHERE occurred_at::date = '2025-04-04';

-- A new channel is accepted as soon as it is registered (the cache follows).
SELECT (cdp.check_event('2025-04-05', 'kiosk', 'page_view', '{"cookie": "c-1"}')).reason_code;
INSERT INTO cdp.channels VALUES ('kiosk', false, 'In-store kiosk');
SELECT (cdp.check_event('2025-04-05', 'kiosk', 'page_view', '{"cookie": "c-1"}')).reason_code IS NULL AS kiosk_accepted;
DELETE FROM cdp.channels WHERE channel = 'kiosk';
SELECT (cdp.check_event('2025-04-05', 'kiosk', 'page_view', '{"cookie": "c-1"}')).reason_code;

-- A statement that fails after quarantining a row leaves nothing behind: the
-- quarantine row rolls back with it, and the next statement of the
-- transaction does not try to remove the rolled-back row.
TRUNCATE cdp.rejected_events;
BEGIN;
SAVEPOINT s;
INSERT INTO cdp.events (occurred_at, channel, type, identifiers)
SELECT '2025-04-06', c, 'page_view', jsonb_build_object('cookie', 'x' || (1 / (2 - i)))
FROM (VALUES (1, 'fax'), (2, 'web')) v(i, c);
ROLLBACK TO SAVEPOINT s;
INSERT INTO cdp.events (occurred_at, channel, type, identifiers)
VALUES ('2025-04-06', 'web', 'page_view', '{"cookie": "after"}');
COMMIT;
SELECT count(*) AS rejected FROM cdp.rejected_events;
SELECT identifiers FROM cdp.events WHERE occurred_at = '2025-04-06';

