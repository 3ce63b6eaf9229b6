
-- ---------------------------------------------------------------------------
-- Events: registries, the event store, quarantine and the entry points.
-- ---------------------------------------------------------------------------

CREATE TABLE cdp.channels (
	channel     text PRIMARY KEY CHECK (channel ~ '^[a-z][a-z0-9_]{0,31}$'),
	online      boolean NOT NULL,
	description text NOT NULL,
	builtin     boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE cdp.channels IS 'Registry of the channels an event may come from; an event naming another channel is rejected';
COMMENT ON COLUMN cdp.channels.channel IS 'Channel key as written in cdp.events.channel (lower case)';
COMMENT ON COLUMN cdp.channels.online IS 'True for digital channels, false for physical ones (store, call centre, post)';
COMMENT ON COLUMN cdp.channels.description IS 'What the channel is';
COMMENT ON COLUMN cdp.channels.builtin IS 'Shipped with cdp (pg_dump keeps only the rows users added)';

INSERT INTO cdp.channels (channel, online, description, builtin) VALUES
	('web',         true,  'Web site, tracked by cookie', true),
	('app',         true,  'Mobile application, tracked by device id', true),
	('store',       false, 'Physical store: point of sale, loyalty card', true),
	('call_center', false, 'Call centre: inbound and outbound calls', true),
	('email',       true,  'E-mail campaigns and transactional e-mail', true),
	('sms',         true,  'Text messages', true),
	('push',        true,  'Mobile push notifications', true),
	('mail',        false, 'Postal mail', true);

CREATE TABLE cdp.event_types (
	type        text PRIMARY KEY,
	category    text NOT NULL,
	description text NOT NULL,
	builtin     boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE cdp.event_types IS 'Standard event types and what they mean; events may use other types too';
COMMENT ON COLUMN cdp.event_types.type IS 'Event type as written in cdp.events.type';
COMMENT ON COLUMN cdp.event_types.category IS 'Group of the type: browse, cart, order, store, service, messaging, offer, account';
COMMENT ON COLUMN cdp.event_types.description IS 'What the event records';
COMMENT ON COLUMN cdp.event_types.builtin IS 'Shipped with cdp (pg_dump keeps only the rows users added)';

INSERT INTO cdp.event_types (type, category, description, builtin) VALUES
	('page_view',        'browse',    'A page or screen was shown', true),
	('product_view',     'browse',    'A product page was shown (properties.product_id)', true),
	('search',           'browse',    'A search was run (properties.query)', true),
	('wishlist_add',     'browse',    'A product was added to a wish list', true),
	('add_to_cart',      'cart',      'A product was added to the cart', true),
	('remove_from_cart', 'cart',      'A product was removed from the cart', true),
	('checkout_start',   'cart',      'Checkout was started', true),
	('purchase',         'order',     'An order was paid; amount is its value (positive)', true),
	('return',           'order',     'Goods were returned; amount is the refund (negative)', true),
	('store_visit',      'store',     'The customer was identified in a store', true),
	('call',             'service',   'A call with the call centre', true),
	('complaint',        'service',   'A complaint was registered', true),
	('email_sent',       'messaging', 'An e-mail was sent to the customer', true),
	('email_open',       'messaging', 'An e-mail was opened', true),
	('email_click',      'messaging', 'A link in an e-mail was clicked', true),
	('sms_sent',         'messaging', 'A text message was sent', true),
	('sms_click',        'messaging', 'A link in a text message was clicked', true),
	('push_open',        'messaging', 'A push notification was opened', true),
	('offer_shown',      'offer',     'An offer was shown to the customer', true),
	('offer_clicked',    'offer',     'An offer was clicked', true),
	('offer_accepted',   'offer',     'An offer was taken up', true),
	('login',            'account',   'The customer logged in', true),
	('signup',           'account',   'An account was created', true),
	('subscribe',        'account',   'The customer opted in (records consent: properties.channel, else the event''s channel; properties.purpose marketing or all)', true),
	('unsubscribe',      'account',   'The customer opted out (revokes consent in the same transaction: properties.channel, else the event''s channel; properties.purpose marketing or all)', true),
	('profile_update',   'account',   'The customer changed personal data (properties.traits)', true);

CREATE SEQUENCE cdp.events_event_id_seq AS bigint;
COMMENT ON SEQUENCE cdp.events_event_id_seq IS 'Event ids; also numbers cdp.rejected_events';

-- The row check of cdp.events.  It is a CHECK constraint rather than a
-- BEFORE ROW trigger because any row trigger makes COPY insert row by row,
-- which halves its speed; a CHECK keeps COPY's multi-row inserts.  The
-- function accepts every row: an invalid one is written to the quarantine
-- at once and removed from cdp.events at the end of the statement (see
-- src/event_batch.c), so a bad row never stops a bulk load and never
-- outlives its statement.  It is added NOT VALID (below): stored events are
-- facts, never judged again.
CREATE FUNCTION cdp.accept_event(
	event_id bigint, occurred_at timestamptz, channel text, type text,
	identifiers jsonb, properties jsonb, amount numeric, source text, message_id text)
RETURNS boolean
	AS 'MODULE_PATHNAME', 'cdp_accept_event' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.accept_event(bigint, timestamptz, text, text, jsonb, jsonb, numeric, text, text) IS 'Row check of cdp.events: quarantines an invalid row and marks it for removal at the end of the statement, refuses an event_id not issued by cdp.issue_event_id; always true';

-- STABLE, though it remembers its argument: COPY inserts row by row when a
-- default holds a volatile function other than nextval (src/events.c).
CREATE FUNCTION cdp.issue_event_id(id bigint) RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_issue_event_id' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION cdp.issue_event_id(bigint) IS 'In the default of cdp.events.event_id: returns the next value of cdp.events_event_id_seq it is given, remembered so that the row check can refuse ids supplied by the caller';

CREATE TABLE cdp.events (
	event_id    bigint      NOT NULL DEFAULT cdp.issue_event_id(nextval('cdp.events_event_id_seq')),
	occurred_at timestamptz,
	received_at timestamptz NOT NULL DEFAULT now(),
	channel     text,
	type        text,
	identifiers jsonb,
	properties  jsonb       DEFAULT '{}',
	amount      numeric,
	source      text,
	message_id  text
) PARTITION BY RANGE (occurred_at);
ALTER SEQUENCE cdp.events_event_id_seq OWNED BY cdp.events.event_id;

COMMENT ON TABLE cdp.events IS 'Every interaction of every customer, append-only, partitioned by month of occurred_at; every stored row passed the checks of cdp.check_event';
COMMENT ON COLUMN cdp.events.event_id IS 'Unique id, assigned at load from cdp.events_event_id_seq (do not supply it)';
COMMENT ON COLUMN cdp.events.occurred_at IS 'When the interaction happened (never null in a stored row)';
COMMENT ON COLUMN cdp.events.received_at IS 'When cdp received it (start of the loading transaction)';
COMMENT ON COLUMN cdp.events.channel IS 'Channel, a key of cdp.channels (never null in a stored row)';
COMMENT ON COLUMN cdp.events.type IS 'Event type, usually a key of cdp.event_types (never null in a stored row)';
COMMENT ON COLUMN cdp.events.identifiers IS 'Identifiers seen with the event, kind -> value, e.g. {"cookie":"c-81f","email":"ann@x.org"} (never null in a stored row)';
COMMENT ON COLUMN cdp.events.properties IS 'Free-form details: product_id, order_id, page, utm_source, traits, ...; a JSON object, or null for none';
COMMENT ON COLUMN cdp.events.amount IS 'Money: order value of a purchase (positive), refund of a return (negative)';
COMMENT ON COLUMN cdp.events.source IS 'System that sent the event (web-sdk, pos, crm, ...)';
COMMENT ON COLUMN cdp.events.message_id IS 'Idempotency key given by the sender (as Segment''s messageId): a later event with the same key is a retry, quarantined as duplicate_message_id';

CREATE TABLE cdp.events_default PARTITION OF cdp.events DEFAULT;
COMMENT ON TABLE cdp.events_default IS 'Events outside every monthly partition; cdp.ensure_partitions moves them out';
ALTER TABLE cdp.events ADD CONSTRAINT events_accept
	CHECK (cdp.accept_event(event_id, occurred_at, channel, type, identifiers, properties,
	                        amount, source, message_id)) NOT VALID;
-- Each partition has its own BRIN index on event_id (cheap to keep up at
-- load, finds recent ids); not a partitioned index, which pg_dump cannot
-- restore for the partitions of an extension's table.
CREATE INDEX events_default_event_id_idx ON cdp.events_default USING brin (event_id);

CREATE TABLE cdp.rejected_events (
	reject_id   bigint      PRIMARY KEY DEFAULT nextval('cdp.events_event_id_seq'),
	received_at timestamptz NOT NULL DEFAULT now(),
	reason_code text        NOT NULL,
	reason      text        NOT NULL,
	source      text,
	raw         jsonb       NOT NULL
);
COMMENT ON TABLE cdp.rejected_events IS 'Quarantine: events refused by a bulk load, with the raw row and the reason';
COMMENT ON COLUMN cdp.rejected_events.reject_id IS 'Unique id of the rejected row';
COMMENT ON COLUMN cdp.rejected_events.received_at IS 'When the row was refused';
COMMENT ON COLUMN cdp.rejected_events.reason_code IS 'Machine-readable reason: missing_occurred_at, invalid_occurred_at, future_occurred_at, ancient_occurred_at, missing_channel, unknown_channel, missing_type, invalid_type, unknown_type, missing_identifiers, invalid_identifiers, invalid_identifier_kind, invalid_identifier_value, invalid_properties, invalid_amount, amount_out_of_range, invalid_source, invalid_message_id, duplicate_message_id, invalid_event, unknown_field, erased (an identifier erased by cdp.forget)';
COMMENT ON COLUMN cdp.rejected_events.reason IS 'Human-readable reason naming the field and the value';
COMMENT ON COLUMN cdp.rejected_events.source IS 'Source of the row when it was readable';
COMMENT ON COLUMN cdp.rejected_events.raw IS 'The row as it was received; one of more than 64 kB keeps its first 64 kB as {"truncated": true, "bytes": N, "head": text}';
CREATE INDEX ON cdp.rejected_events (received_at);

CREATE TABLE cdp.event_messages (
	message_id  text        PRIMARY KEY,
	event_id    bigint      NOT NULL,
	occurred_at timestamptz NOT NULL,
	claimed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdp.event_messages IS 'Message ids (idempotency keys) of stored events: a load whose message id is here is a retry and is not stored again; rows go with their events'' partitions (cdp.drop_partitions)';
COMMENT ON COLUMN cdp.event_messages.message_id IS 'The key the sender gave (cdp.events.message_id)';
COMMENT ON COLUMN cdp.event_messages.event_id IS 'The event stored under it';
COMMENT ON COLUMN cdp.event_messages.occurred_at IS 'When that event occurred (finds its partition)';
COMMENT ON COLUMN cdp.event_messages.claimed_at IS 'When it was stored';
CREATE INDEX ON cdp.event_messages (occurred_at);

-- Raw loader: every column is text, so that a malformed timestamp, number or
-- JSON document in a file is quarantined instead of aborting the whole COPY.
CREATE VIEW cdp.event_load AS
	SELECT NULL::text AS occurred_at, NULL::text AS channel, NULL::text AS type,
	       NULL::text AS identifiers, NULL::text AS properties, NULL::text AS amount,
	       NULL::text AS source
	WHERE false;
COMMENT ON VIEW cdp.event_load IS 'Write-only loader with text columns: COPY or INSERT raw rows here; good rows go to cdp.events, malformed ones to cdp.rejected_events';
COMMENT ON COLUMN cdp.event_load.occurred_at IS 'Time of the event in ISO 8601, such as 2025-03-04 10:22:13+00';
COMMENT ON COLUMN cdp.event_load.channel IS 'Channel, a key of cdp.channels';
COMMENT ON COLUMN cdp.event_load.type IS 'Event type';
COMMENT ON COLUMN cdp.event_load.identifiers IS 'JSON object of identifier kind and value';
COMMENT ON COLUMN cdp.event_load.properties IS 'JSON object of properties, or empty';
COMMENT ON COLUMN cdp.event_load.amount IS 'Amount as a plain number, or empty';
COMMENT ON COLUMN cdp.event_load.source IS 'System that sent the event, or empty';


-- C entry points ------------------------------------------------------------

CREATE FUNCTION cdp.events_after_insert() RETURNS trigger
	AS 'MODULE_PATHNAME', 'cdp_events_after_insert' LANGUAGE C;
COMMENT ON FUNCTION cdp.events_after_insert() IS 'Trigger: at the end of an INSERT or COPY, removes from cdp.events the rows that cdp.accept_event quarantined and the retries of stored message ids, and stitches the identities of the others';

-- Statement triggers are not inherited: each partition gets its own
-- (cdp.ensure_partitions adds it), for inserts aimed at a partition.
CREATE TRIGGER events_after_insert AFTER INSERT ON cdp.events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_after_insert();
CREATE TRIGGER events_after_insert AFTER INSERT ON cdp.events_default
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_after_insert();

CREATE FUNCTION cdp.events_append_only() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'cdp.events is append-only'
		USING ERRCODE = 'feature_not_supported',
		      DETAIL = 'Events are immutable facts; everything cdp derives from them can be rebuilt.',
		      HINT = 'Insert a correcting event, or delete the event (retention, erasure) and insert it again.';
END
$$;
COMMENT ON FUNCTION cdp.events_append_only() IS 'Trigger: refuses UPDATE of cdp.events';

CREATE TRIGGER events_append_only BEFORE UPDATE ON cdp.events
	FOR EACH ROW EXECUTE FUNCTION cdp.events_append_only();

CREATE FUNCTION cdp.event_load_row() RETURNS trigger
	AS 'MODULE_PATHNAME', 'cdp_event_load_row' LANGUAGE C;
COMMENT ON FUNCTION cdp.event_load_row() IS 'Trigger: parses a raw text row written to cdp.event_load and stores or quarantines it';

CREATE TRIGGER event_load_row INSTEAD OF INSERT ON cdp.event_load
	FOR EACH ROW EXECUTE FUNCTION cdp.event_load_row();
-- The rows of one statement on the view are stitched as one batch at its end.
CREATE TRIGGER event_load_done AFTER INSERT ON cdp.event_load
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_after_insert();

CREATE FUNCTION cdp.config_changed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'cdp_config_changed' LANGUAGE C;
COMMENT ON FUNCTION cdp.config_changed() IS 'Trigger: tells every session that a configuration table (channels, identity rules, blocklist, decisions by hand) changed';

CREATE TRIGGER channels_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp.channels
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_changed();
CREATE TRIGGER event_types_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp.event_types
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_changed();

-- A configuration table that must never be empty: TRUNCATE is refused, and
-- a DELETE is checked at commit, so that a transaction may replace every row.
-- Arguments: the key column and what a row is called.
CREATE FUNCTION cdp.config_not_empty() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tbl   text := format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
	empty boolean;
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		RAISE EXCEPTION 'truncating % would leave it empty', tbl
			USING ERRCODE = 'check_violation',
			      HINT = 'The table must never be empty: DELETE its rows and insert the new ones in the same transaction (it is checked at commit).';
	END IF;
	EXECUTE format('SELECT NOT EXISTS (SELECT FROM %s)', tbl) INTO empty;
	IF empty THEN
		RAISE EXCEPTION 'deleting % "%" leaves % empty', TG_ARGV[1], to_jsonb(OLD) ->> TG_ARGV[0], tbl
			USING ERRCODE = 'check_violation',
			      HINT = format('The table must never be empty: keep one %s, or insert the new ones in the same transaction (it is checked at commit).', TG_ARGV[1]);
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.config_not_empty() IS 'Trigger: refuses to truncate a configuration table that must never be empty, and a transaction that deletes its last row (checked at commit)';
CREATE CONSTRAINT TRIGGER channels_not_empty AFTER DELETE ON cdp.channels
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cdp.config_not_empty('channel', 'channel');
CREATE TRIGGER channels_no_truncate BEFORE TRUNCATE ON cdp.channels
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_not_empty('channel', 'channel');

CREATE FUNCTION cdp.track(
	occurred_at timestamptz,
	channel     text,
	type        text,
	identifiers jsonb,
	properties  jsonb   DEFAULT '{}',
	amount      numeric DEFAULT NULL,
	source      text    DEFAULT NULL,
	message_id  text    DEFAULT NULL)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_track' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.track(timestamptz, text, text, jsonb, jsonb, numeric, text, text) IS 'Records one event and returns its event_id; raises an error naming the field when the event is invalid; a retry of a stored message_id returns the stored event''s id and stores nothing';

CREATE FUNCTION cdp.ingest(events jsonb, OUT accepted bigint, OUT rejected bigint)
	AS 'MODULE_PATHNAME', 'cdp_ingest' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.ingest(jsonb) IS 'Records a JSON array of events as one statement (one stitching batch); invalid ones and retries of stored message ids go to cdp.rejected_events; returns how many were accepted and rejected';

CREATE FUNCTION cdp.check_event(
	occurred_at timestamptz,
	channel     text,
	type        text,
	identifiers jsonb,
	properties  jsonb   DEFAULT '{}',
	amount      numeric DEFAULT NULL,
	source      text    DEFAULT NULL,
	OUT reason_code text, OUT reason text)
	AS 'MODULE_PATHNAME', 'cdp_check_event' LANGUAGE C STABLE;
COMMENT ON FUNCTION cdp.check_event(timestamptz, text, text, jsonb, jsonb, numeric, text) IS 'Tells why an event would be rejected (reason_code and reason), or NULLs when it would be accepted';

SELECT pg_catalog.pg_extension_config_dump('cdp.channels', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('cdp.event_types', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('cdp.events_default', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.rejected_events', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.event_messages', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.events_event_id_seq', '');
