-- Event store: registries, the entry points, and what lands in cdp.events.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

SELECT channel, online FROM cdp.channels ORDER BY channel;
SELECT category, count(*) FROM cdp.event_types GROUP BY category ORDER BY category;

-- cdp.track records one event and returns its id; properties default to {}.
SELECT cdp.track('2025-03-04 10:22:13+00', 'web', 'page_view', '{"cookie": "c-81f"}') > 0 AS tracked;
SELECT cdp.track('2025-03-04 10:25:00+00', 'web', 'purchase',
                 '{"cookie": "c-81f", "email": " Ann@X.org "}',
                 '{"order_id": "O-1", "items": ["P00042"]}', 129.90, 'web-sdk') > 0 AS tracked;
SELECT occurred_at, channel, type, identifiers, properties, amount, source, received_at BETWEEN now() - interval '1 minute' AND now() AS received_just_now
FROM cdp.events ORDER BY occurred_at;

-- INSERT and COPY go through the same checks as cdp.track.
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, amount)
VALUES ('2025-03-05 09:00:00+00', 'store', 'purchase', '{"loyalty_card": "L0000012345"}', 59.00),
       ('2025-03-05 09:30:00+00', 'call_center', 'call', '{"phone": "07700 900123"}', NULL);
COPY cdp.events (occurred_at, channel, type, identifiers, properties, amount, source) FROM stdin WITH (FORMAT csv);
2025-03-06 08:00:00+00,email,email_open,"{""email"": ""ann@x.org""}","{""campaign_id"": ""spring""}",,esp
2025-03-06 08:01:00+00,email,email_click,"{""email"": ""ann@x.org"", ""cookie"": ""c-81f""}",,,esp
\.
SELECT channel, type, properties, amount FROM cdp.events WHERE occurred_at >= '2025-03-05' ORDER BY occurred_at;

-- cdp.ingest takes a JSON array; amounts may be numbers or numeric strings.
SELECT * FROM cdp.ingest('[
  {"occurred_at": "2025-03-07T10:00:00Z", "channel": "app", "type": "product_view",
   "identifiers": {"device_id": "d-1"}, "properties": {"product_id": "P00042"}},
  {"occurred_at": "2025-03-07T10:05:00+01:00", "channel": "app", "type": "purchase",
   "identifiers": {"device_id": "d-1", "customer_id": "C1"}, "amount": "19.99", "source": "app-sdk"}
]');
SELECT occurred_at, channel, type, identifiers, properties, amount, source
FROM cdp.events WHERE channel = 'app' ORDER BY occurred_at;
SELECT * FROM cdp.ingest('[]');

-- The raw loader takes text; empty strings count as absent. (An empty
-- properties field in COPY is stored as NULL, which means no properties.)
INSERT INTO cdp.event_load VALUES ('2025-03-08 12:00', 'mail', 'email_sent', '{"email": "ann@x.org"}', '', '', 'crm');
SELECT occurred_at, channel, type, properties, amount, source FROM cdp.events WHERE channel = 'mail';

-- Event ids are unique.
SELECT count(*) = count(DISTINCT event_id) AS unique_ids FROM cdp.events;
SELECT count(*) AS events, count(*) FILTER (WHERE tableoid = 'cdp.events_default'::regclass) AS in_default
FROM cdp.events;
SELECT count(*) AS rejected FROM cdp.rejected_events;

-- Events are append-only: UPDATE is refused, on the table and on a partition.
UPDATE cdp.events SET amount = 0 WHERE channel = 'mail';
UPDATE cdp.events_default SET amount = 0 WHERE channel = 'mail';
