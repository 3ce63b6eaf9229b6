-- cdp: customer data platform inside PostgreSQL.
-- This file is built from src/sql/*.sql by the Makefile; edit the parts.
\echo Use "CREATE EXTENSION cdp" to load this file. \quit

COMMENT ON SCHEMA cdp IS 'cdp customer data platform: events, identities, scores, journeys and offers';

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
	('profile_update',   'account',   'The customer changed personal data (properties.traits)', true);

CREATE SEQUENCE cdp.events_event_id_seq AS bigint;
COMMENT ON SEQUENCE cdp.events_event_id_seq IS 'Event ids; also numbers cdp.rejected_events';

-- The row check of cdp.events.  It is a CHECK constraint rather than a
-- BEFORE ROW trigger because any row trigger makes COPY insert row by row,
-- which halves its speed; a CHECK keeps COPY's multi-row inserts.  The
-- function accepts every row: an invalid one is written to the quarantine
-- at once and removed from cdp.events by the statement trigger below, so
-- a bad row never stops a bulk load and never outlives its statement.
CREATE FUNCTION cdp.accept_event(
	event_id bigint, occurred_at timestamptz, channel text, type text,
	identifiers jsonb, properties jsonb, amount numeric, source text)
RETURNS boolean
	AS 'MODULE_PATHNAME', 'cdp_accept_event' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.accept_event(bigint, timestamptz, text, text, jsonb, jsonb, numeric, text) IS 'Row check of cdp.events: quarantines an invalid row and marks it for removal at the end of the statement; always true';

CREATE TABLE cdp.events (
	event_id    bigint      NOT NULL DEFAULT nextval('cdp.events_event_id_seq'),
	occurred_at timestamptz,
	received_at timestamptz NOT NULL DEFAULT now(),
	channel     text,
	type        text,
	identifiers jsonb,
	properties  jsonb       DEFAULT '{}',
	amount      numeric,
	source      text,
	CONSTRAINT events_accept CHECK (cdp.accept_event(event_id, occurred_at, channel, type,
	                                                 identifiers, properties, amount, source))
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

CREATE TABLE cdp.events_default PARTITION OF cdp.events DEFAULT;
COMMENT ON TABLE cdp.events_default IS 'Events outside every monthly partition; cdp.ensure_partitions moves them out';
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
COMMENT ON COLUMN cdp.rejected_events.reason_code IS 'Machine-readable reason: missing_occurred_at, invalid_occurred_at, future_occurred_at, ancient_occurred_at, missing_channel, unknown_channel, missing_type, invalid_type, missing_identifiers, invalid_identifiers, invalid_identifier_kind, invalid_identifier_value, invalid_properties, invalid_amount, invalid_source, invalid_event, unknown_field';
COMMENT ON COLUMN cdp.rejected_events.reason IS 'Human-readable reason naming the field and the value';
COMMENT ON COLUMN cdp.rejected_events.source IS 'Source of the row when it was readable';
COMMENT ON COLUMN cdp.rejected_events.raw IS 'The row as it was received';
CREATE INDEX ON cdp.rejected_events (received_at);

-- Raw loader: every column is text, so that a malformed timestamp, number or
-- JSON document in a file is quarantined instead of aborting the whole COPY.
CREATE VIEW cdp.event_load AS
	SELECT NULL::text AS occurred_at, NULL::text AS channel, NULL::text AS type,
	       NULL::text AS identifiers, NULL::text AS properties, NULL::text AS amount,
	       NULL::text AS source
	WHERE false;
COMMENT ON VIEW cdp.event_load IS 'Write-only loader with text columns: COPY or INSERT raw rows here; good rows go to cdp.events, malformed ones to cdp.rejected_events';

-- C entry points ------------------------------------------------------------

CREATE FUNCTION cdp.events_after_insert() RETURNS trigger
	AS 'MODULE_PATHNAME', 'cdp_events_after_insert' LANGUAGE C;
COMMENT ON FUNCTION cdp.events_after_insert() IS 'Trigger: at the end of an INSERT or COPY, removes from cdp.events the rows that cdp.accept_event quarantined, and stitches the identities of the others';

-- Statement triggers are not inherited: each partition gets its own
-- (cdp.ensure_partitions adds it), for inserts aimed at a partition.
CREATE TRIGGER events_after_insert AFTER INSERT ON cdp.events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_after_insert();
CREATE TRIGGER events_after_insert AFTER INSERT ON cdp.events_default
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_after_insert();

CREATE FUNCTION cdp.events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE FUNCTION cdp.config_changed() RETURNS trigger
	AS 'MODULE_PATHNAME', 'cdp_config_changed' LANGUAGE C;
COMMENT ON FUNCTION cdp.config_changed() IS 'Trigger: tells every session that a configuration table (channels, identity rules, blocklist, decisions by hand) changed';

CREATE TRIGGER channels_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp.channels
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_changed();

CREATE FUNCTION cdp.track(
	occurred_at timestamptz,
	channel     text,
	type        text,
	identifiers jsonb,
	properties  jsonb   DEFAULT '{}',
	amount      numeric DEFAULT NULL,
	source      text    DEFAULT NULL)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_track' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.track(timestamptz, text, text, jsonb, jsonb, numeric, text) IS 'Records one event and returns its event_id; raises an error naming the field when the event is invalid';

CREATE FUNCTION cdp.ingest(events jsonb, OUT accepted bigint, OUT rejected bigint)
	AS 'MODULE_PATHNAME', 'cdp_ingest' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.ingest(jsonb) IS 'Records a JSON array of events; invalid ones go to cdp.rejected_events; returns how many were accepted and rejected';

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
SELECT pg_catalog.pg_extension_config_dump('cdp.events_event_id_seq', '');

-- ---------------------------------------------------------------------------
-- Partitions of cdp.events: one per calendar month (UTC), created ahead of
-- need by cdp.ensure_partitions (run it from pg_cron), plus the default
-- partition that catches whatever has no month partition yet.
-- ---------------------------------------------------------------------------

CREATE VIEW cdp.event_partitions AS
	SELECT c.oid::regclass AS partition,
	       b.m[1]::timestamptz AS range_from,
	       b.m[2]::timestamptz AS range_to,
	       p.is_default,
	       greatest(c.reltuples, 0)::bigint AS estimated_rows,
	       pg_catalog.pg_total_relation_size(c.oid) AS total_bytes
	FROM pg_catalog.pg_inherits i
	JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
	CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound) e
	CROSS JOIN LATERAL (SELECT e.bound = 'DEFAULT' AS is_default) p
	LEFT JOIN LATERAL (SELECT pg_catalog.regexp_match(e.bound,
	                   'FROM \(''([^'']*)''\) TO \(''([^'']*)''\)') AS m) b ON true
	WHERE i.inhparent = 'cdp.events'::regclass;
COMMENT ON VIEW cdp.event_partitions IS 'Partitions of cdp.events with their time range (NULL for the default partition), estimated rows and size';

CREATE FUNCTION cdp.ensure_partitions(from_time timestamptz, to_time timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m       timestamp;	-- first day of a month, UTC
	lo      timestamptz;
	hi      timestamptz;
	part    text;
	moved   bigint;
	created integer := 0;
BEGIN
	IF from_time IS NULL OR to_time IS NULL THEN
		RAISE EXCEPTION 'partition range bounds must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF to_time < from_time THEN
		RAISE EXCEPTION 'partition range ends (%) before it starts (%)', to_time, from_time
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Pass the earlier time first.';
	END IF;
	IF to_time - from_time > interval '50 years' THEN
		RAISE EXCEPTION 'partition range from % to % is longer than 50 years', from_time, to_time
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Create partitions for the period the data covers, a few months ahead of now.';
	END IF;

	-- One creator at a time; loads go on meanwhile.
	PERFORM pg_advisory_xact_lock(hashtext('cdp.ensure_partitions'));

	m := date_trunc('month', from_time AT TIME ZONE 'UTC');
	WHILE (m AT TIME ZONE 'UTC') <= to_time LOOP
		lo := m AT TIME ZONE 'UTC';
		hi := (m + interval '1 month') AT TIME ZONE 'UTC';
		part := 'events_' || to_char(m, 'YYYYMM');
		IF to_regclass(format('cdp.%I', part)) IS NULL THEN
			EXECUTE format('CREATE TABLE cdp.%I (LIKE cdp.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
			-- The check lets ATTACH skip scanning the new table.
			EXECUTE format('ALTER TABLE cdp.%I ADD CONSTRAINT %I CHECK (occurred_at >= %L AND occurred_at < %L)',
			               part, part || '_range', lo, hi);
			EXECUTE format($q$WITH moved AS (
			                     DELETE FROM cdp.events_default
			                     WHERE occurred_at >= %L AND occurred_at < %L
			                     RETURNING event_id, occurred_at, received_at, channel, type,
			                               identifiers, properties, amount, source)
			                   INSERT INTO cdp.%I (event_id, occurred_at, received_at, channel, type,
			                                       identifiers, properties, amount, source)
			                   SELECT * FROM moved$q$, lo, hi, part);
			GET DIAGNOSTICS moved = ROW_COUNT;
			EXECUTE format('ALTER TABLE cdp.events ATTACH PARTITION cdp.%I FOR VALUES FROM (%L) TO (%L)',
			               part, lo, hi);
			EXECUTE format('ALTER TABLE cdp.%I DROP CONSTRAINT %I', part, part || '_range');
			EXECUTE format('CREATE INDEX %I ON cdp.%I USING brin (event_id)',
			               part || '_event_id_idx', part);
			EXECUTE format('CREATE TRIGGER events_after_insert AFTER INSERT ON cdp.%I '
			               'FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_after_insert()', part);
			EXECUTE format('CREATE TRIGGER events_deleted AFTER DELETE OR TRUNCATE ON cdp.%I '
			               'FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_deleted()', part);
			EXECUTE format('COMMENT ON TABLE cdp.%I IS %L', part,
			               'Events of ' || to_char(m, 'YYYY-MM') || ' (UTC)');
			created := created + 1;
			IF moved > 0 THEN
				RAISE NOTICE 'moved % events from cdp.events_default to cdp.%', moved, part;
			END IF;
		END IF;
		m := m + interval '1 month';
	END LOOP;
	RETURN created;
END
$$;
COMMENT ON FUNCTION cdp.ensure_partitions(timestamptz, timestamptz) IS 'Creates the monthly partitions (UTC) covering the range, moving any of their events out of the default partition; returns how many it created';

CREATE FUNCTION cdp.drop_partitions(older_than timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p       record;
	dropped integer := 0;
BEGIN
	IF older_than IS NULL THEN
		RAISE EXCEPTION 'older_than must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM pg_advisory_xact_lock(hashtext('cdp.ensure_partitions'));
	FOR p IN SELECT partition::text AS name, range_from, range_to FROM cdp.event_partitions
	         WHERE NOT is_default AND range_to <= older_than ORDER BY range_from
	LOOP
		EXECUTE format('DROP TABLE %s', p.name);
		DELETE FROM cdp.event_anchors WHERE occurred_at >= p.range_from AND occurred_at < p.range_to;
		-- journeys forget the dropped events at the next detection
		UPDATE cdp.journey_progress SET needs_full = true WHERE NOT needs_full;
		RAISE NOTICE 'dropped % (events from % to %)', p.name, p.range_from, p.range_to;
		dropped := dropped + 1;
	END LOOP;
	RETURN dropped;
END
$$;
COMMENT ON FUNCTION cdp.drop_partitions(timestamptz) IS 'Retention: drops the monthly partitions whose whole range is before older_than, and the anchors of their events; returns how many it dropped';

-- ---------------------------------------------------------------------------
-- Identity: identifiers stitched into profiles (see src/core/idgraph.h for
-- the linking rules).  Events reference identifiers, never profiles: the
-- identifier -> profile map below is the only thing merges change.
-- ---------------------------------------------------------------------------

CREATE TABLE cdp.identity_rules (
	kind            text    PRIMARY KEY CHECK (kind ~ '^[a-z][a-z0-9_]{0,31}$'),
	priority        integer NOT NULL UNIQUE CHECK (priority > 0),
	max_per_profile integer NOT NULL CHECK (max_per_profile BETWEEN 0 AND 10000),
	normalizer      text    NOT NULL DEFAULT 'trim' CHECK (normalizer IN ('email', 'phone', 'trim', 'lower')),
	merges          boolean NOT NULL DEFAULT true,
	builtin         boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE cdp.identity_rules IS 'How each identifier kind takes part in identity resolution; kinds without a rule are ignored (and recorded in cdp.identifier_rejections)';
COMMENT ON COLUMN cdp.identity_rules.kind IS 'Identifier kind, as a key of cdp.events.identifiers';
COMMENT ON COLUMN cdp.identity_rules.priority IS 'Anchor priority: the identifier of the smallest priority in an event is its anchor, to which the others are linked';
COMMENT ON COLUMN cdp.identity_rules.max_per_profile IS 'Most distinct values of this kind one profile may hold (0: no limit); a link that would exceed it is refused and recorded as a conflict';
COMMENT ON COLUMN cdp.identity_rules.normalizer IS 'email, phone (E.164 with cdp.default_country), trim or lower';
COMMENT ON COLUMN cdp.identity_rules.merges IS 'Whether a link through this kind may merge two existing profiles (if not, it may only join a new identifier to a profile)';
COMMENT ON COLUMN cdp.identity_rules.builtin IS 'Shipped with cdp (pg_dump keeps only the rows users added or changed)';

INSERT INTO cdp.identity_rules (kind, priority, max_per_profile, normalizer, builtin) VALUES
	('customer_id',  10,  1, 'trim',  true),
	('loyalty_card', 20,  1, 'trim',  true),
	('email',        30,  5, 'email', true),
	('phone',        40,  3, 'phone', true),
	('device_id',    50, 10, 'trim',  true),
	('cookie',       60, 50, 'trim',  true);

CREATE TABLE cdp.identifier_blocklist (
	entry_id   serial  PRIMARY KEY,
	kind       text,
	value      text    NOT NULL,
	is_pattern boolean NOT NULL DEFAULT false,
	reason     text    NOT NULL,
	builtin    boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE cdp.identifier_blocklist IS 'Junk identifier values that must never link anything: exact values or regular expressions, matched against the normalized value and the trimmed lower-case raw value';
COMMENT ON COLUMN cdp.identifier_blocklist.entry_id IS 'Entry number';
COMMENT ON COLUMN cdp.identifier_blocklist.kind IS 'Kind the entry applies to; NULL for every kind';
COMMENT ON COLUMN cdp.identifier_blocklist.value IS 'Exact value (lower case), or a regular expression when is_pattern';
COMMENT ON COLUMN cdp.identifier_blocklist.is_pattern IS 'True if value is a regular expression (PostgreSQL ~ syntax)';
COMMENT ON COLUMN cdp.identifier_blocklist.reason IS 'Why the value is junk';
COMMENT ON COLUMN cdp.identifier_blocklist.builtin IS 'Shipped with cdp (pg_dump keeps only the rows users added)';

INSERT INTO cdp.identifier_blocklist (kind, value, is_pattern, reason, builtin) VALUES
	(NULL, '^[0\s._/-]*$', true, 'only zeros and separators', true),
	(NULL, '^(null|undefined|none|nil|nan|n/a|na|unknown|anonymous|anon|test|tbd|-|\?+)$', true, 'placeholder word', true),
	('email', '^(test|tests|noemail|no-email|no_email|nomail|none|noreply|no-reply|fake|null|a|aa|abc|asdf|x|xx|xxx)@', true, 'placeholder mailbox', true),
	('email', '@(test|example|none|noemail|nomail|fake|email|mail|domain)\.(com|org|net|co\.uk)$', true, 'placeholder domain', true),
	('email', 'a@a.com', false, 'placeholder address', true),
	('phone', '(\d)\1{7,}', true, 'a digit repeated eight times or more', true),
	('phone', '(0123456789|1234567890|9876543210)', true, 'a run of consecutive digits', true),
	('loyalty_card', '^[a-z]?0+$', true, 'a card number of zeros', true);

CREATE SEQUENCE cdp.profiles_profile_id_seq AS bigint;
COMMENT ON SEQUENCE cdp.profiles_profile_id_seq IS 'Profile ids';

CREATE TABLE cdp.profiles (
	profile_id     bigint      PRIMARY KEY DEFAULT nextval('cdp.profiles_profile_id_seq'),
	created_at     timestamptz NOT NULL DEFAULT now(),
	first_event_id bigint,
	merged_into    bigint,
	merged_at      timestamptz
);
COMMENT ON TABLE cdp.profiles IS 'Every profile ever made; a merged-away profile keeps a forwarding pointer to the one that absorbed it';
COMMENT ON COLUMN cdp.profiles.profile_id IS 'Stable profile id';
COMMENT ON COLUMN cdp.profiles.created_at IS 'When the profile was made';
COMMENT ON COLUMN cdp.profiles.first_event_id IS 'Event that made it';
COMMENT ON COLUMN cdp.profiles.merged_into IS 'Live profile that absorbed this one (NULL for a live profile); always points at a live profile';
COMMENT ON COLUMN cdp.profiles.merged_at IS 'When it was merged away';
CREATE INDEX ON cdp.profiles (merged_into) WHERE merged_into IS NOT NULL;

CREATE SEQUENCE cdp.identifiers_identifier_id_seq AS bigint;
COMMENT ON SEQUENCE cdp.identifiers_identifier_id_seq IS 'Identifier ids';

CREATE TABLE cdp.identifiers (
	identifier_id         bigint      PRIMARY KEY DEFAULT nextval('cdp.identifiers_identifier_id_seq'),
	kind                  text        NOT NULL,
	value                 text        NOT NULL,
	profile_id            bigint      NOT NULL,
	first_seen            timestamptz NOT NULL,
	first_event_id        bigint      NOT NULL,
	first_anchor_event_id bigint,
	initial_profile_id    bigint      NOT NULL,
	stitched_at           timestamptz NOT NULL DEFAULT now(),
	UNIQUE (kind, value)
);
COMMENT ON TABLE cdp.identifiers IS 'Every valid identifier seen in events (normalized) and the live profile it belongs to';
COMMENT ON COLUMN cdp.identifiers.identifier_id IS 'Identifier id';
COMMENT ON COLUMN cdp.identifiers.kind IS 'Identifier kind (a key of cdp.identity_rules)';
COMMENT ON COLUMN cdp.identifiers.value IS 'Normalized value';
COMMENT ON COLUMN cdp.identifiers.profile_id IS 'Live profile holding it';
COMMENT ON COLUMN cdp.identifiers.first_seen IS 'occurred_at of the first event that carried it';
COMMENT ON COLUMN cdp.identifiers.first_event_id IS 'First event that carried it';
COMMENT ON COLUMN cdp.identifiers.first_anchor_event_id IS 'First event in which it was the anchor (NULL if never); the rebuild replays from it';
COMMENT ON COLUMN cdp.identifiers.initial_profile_id IS 'Profile it was given when it entered the graph; cdp.profile_at follows the journal from there';
COMMENT ON COLUMN cdp.identifiers.stitched_at IS 'When it entered the graph (transaction time)';
CREATE INDEX ON cdp.identifiers (profile_id);

CREATE TABLE cdp.identity_links (
	anchor_id     bigint NOT NULL,
	identifier_id bigint NOT NULL,
	event_id      bigint NOT NULL,
	position      smallint NOT NULL,
	PRIMARY KEY (anchor_id, identifier_id)
);
COMMENT ON TABLE cdp.identity_links IS 'The identity graph: the first event in which two identifiers were seen together (anchor and other); refused links are kept too';
COMMENT ON COLUMN cdp.identity_links.anchor_id IS 'The event''s anchor identifier';
COMMENT ON COLUMN cdp.identity_links.identifier_id IS 'The other identifier';
COMMENT ON COLUMN cdp.identity_links.event_id IS 'First event that carried both';
COMMENT ON COLUMN cdp.identity_links.position IS 'Order of the link within its event (by priority, kind, value)';
CREATE INDEX ON cdp.identity_links (event_id);
CREATE INDEX ON cdp.identity_links (identifier_id);

CREATE TABLE cdp.event_anchors (
	event_id    bigint      NOT NULL,
	occurred_at timestamptz NOT NULL,
	anchor_id   bigint      NOT NULL
);
COMMENT ON TABLE cdp.event_anchors IS 'Anchor identifier of every stored event that has one; its profile is the anchor''s (cdp.identifiers.profile_id), so merges never touch this table';
COMMENT ON COLUMN cdp.event_anchors.event_id IS 'Event';
COMMENT ON COLUMN cdp.event_anchors.occurred_at IS 'When the event occurred (copied for time-range joins)';
COMMENT ON COLUMN cdp.event_anchors.anchor_id IS 'Its anchor identifier: the one of highest priority among its valid identifiers';
-- BRIN on event_id only: a B-tree on anchor_id costs 40 % of stitching at
-- ingest.  Applications that often fetch the events of one profile add it:
--   CREATE INDEX ON cdp.event_anchors (anchor_id);
CREATE INDEX event_anchors_event_id_idx ON cdp.event_anchors USING brin (event_id);

CREATE TABLE cdp.stitch_batches (
	batch_id       bigserial   PRIMARY KEY,
	first_event_id bigint      NOT NULL,
	last_event_id  bigint      NOT NULL,
	events         integer     NOT NULL,
	stitched_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdp.stitch_batches IS 'One row per batch of events stitched; batch ids are taken under the stitching lock, which is held until commit, so they become visible in order: work that follows stitching (journeys, the real-time worker) resumes after the last batch it saw';
COMMENT ON COLUMN cdp.stitch_batches.batch_id IS 'Batch number, committed in order';
COMMENT ON COLUMN cdp.stitch_batches.first_event_id IS 'Smallest event id anchored in the batch';
COMMENT ON COLUMN cdp.stitch_batches.last_event_id IS 'Largest event id anchored in the batch (the range may hold events of other batches too)';
COMMENT ON COLUMN cdp.stitch_batches.events IS 'Events anchored in the batch';
COMMENT ON COLUMN cdp.stitch_batches.stitched_at IS 'When';

CREATE TABLE cdp.profile_merges (
	merge_id      bigserial   PRIMARY KEY,
	survivor      bigint      NOT NULL,
	absorbed      bigint      NOT NULL,
	anchor_id     bigint,
	identifier_id bigint,
	event_id      bigint,
	merged_at     timestamptz NOT NULL DEFAULT now(),
	method        text        NOT NULL CHECK (method IN ('rule', 'hand')),
	reason        text,
	undone_at     timestamptz
);
COMMENT ON TABLE cdp.profile_merges IS 'Journal of merges: which profile absorbed which, through which link or by whose hand';
COMMENT ON COLUMN cdp.profile_merges.merge_id IS 'Merge number';
COMMENT ON COLUMN cdp.profile_merges.survivor IS 'Profile that was kept';
COMMENT ON COLUMN cdp.profile_merges.absorbed IS 'Profile merged into it';
COMMENT ON COLUMN cdp.profile_merges.anchor_id IS 'Anchor identifier of the link that caused it (rule merges)';
COMMENT ON COLUMN cdp.profile_merges.identifier_id IS 'Other identifier of that link';
COMMENT ON COLUMN cdp.profile_merges.event_id IS 'Event that carried the link';
COMMENT ON COLUMN cdp.profile_merges.merged_at IS 'When the merge was made';
COMMENT ON COLUMN cdp.profile_merges.method IS 'rule (stitching) or hand (cdp.merge_profiles)';
COMMENT ON COLUMN cdp.profile_merges.reason IS 'Reason given for a merge by hand';
COMMENT ON COLUMN cdp.profile_merges.undone_at IS 'When the merge was undone, if it was';
CREATE INDEX ON cdp.profile_merges (absorbed);
CREATE INDEX ON cdp.profile_merges (survivor);

CREATE TABLE cdp.identity_conflicts (
	conflict_id   bigserial   PRIMARY KEY,
	event_id      bigint      NOT NULL,
	anchor_id     bigint      NOT NULL,
	identifier_id bigint      NOT NULL,
	profile_id    bigint      NOT NULL,
	other_profile bigint      NOT NULL,
	kind          text,
	reason        text        NOT NULL CHECK (reason IN ('limit', 'no_merge', 'kept_apart')),
	detected_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdp.identity_conflicts IS 'Links that were refused because a rule would be broken: the two profiles stay apart';
COMMENT ON COLUMN cdp.identity_conflicts.conflict_id IS 'Conflict number';
COMMENT ON COLUMN cdp.identity_conflicts.event_id IS 'Event that carried the link';
COMMENT ON COLUMN cdp.identity_conflicts.anchor_id IS 'The event''s anchor identifier';
COMMENT ON COLUMN cdp.identity_conflicts.identifier_id IS 'The identifier kept apart';
COMMENT ON COLUMN cdp.identity_conflicts.profile_id IS 'The anchor''s profile';
COMMENT ON COLUMN cdp.identity_conflicts.other_profile IS 'The profile of the identifier kept apart';
COMMENT ON COLUMN cdp.identity_conflicts.kind IS 'limit: the kind that would exceed max_per_profile';
COMMENT ON COLUMN cdp.identity_conflicts.reason IS 'limit (max_per_profile), no_merge (a kind that may not merge profiles) or kept_apart (the two profiles were split by cdp.unmerge)';
COMMENT ON COLUMN cdp.identity_conflicts.detected_at IS 'When it was found';

CREATE TABLE cdp.identity_overrides (
	override_id    bigserial   PRIMARY KEY,
	action         text        NOT NULL CHECK (action IN ('merge', 'unmerge')),
	merge_id       bigint      NOT NULL,
	identifier_a   bigint      NOT NULL,
	identifier_b   bigint      NOT NULL,
	after_event_id bigint      NOT NULL,
	force          boolean     NOT NULL DEFAULT false,
	reason         text,
	made_by        text        NOT NULL DEFAULT current_user,
	made_at        timestamptz NOT NULL DEFAULT now(),
	lifted_at      timestamptz
);
COMMENT ON TABLE cdp.identity_overrides IS 'Decisions made by hand (cdp.merge_profiles, cdp.unmerge); stitching and every rebuild honour those in force';
COMMENT ON COLUMN cdp.identity_overrides.override_id IS 'Decision number';
COMMENT ON COLUMN cdp.identity_overrides.action IS 'merge: the profiles of the two identifiers are one person; unmerge: they are two people, never to be merged again';
COMMENT ON COLUMN cdp.identity_overrides.merge_id IS 'The merge made (merge) or undone (unmerge), in cdp.profile_merges';
COMMENT ON COLUMN cdp.identity_overrides.identifier_a IS 'An identifier of the first profile (merge: the survivor''s first; unmerge: the link''s anchor)';
COMMENT ON COLUMN cdp.identity_overrides.identifier_b IS 'An identifier of the second profile';
COMMENT ON COLUMN cdp.identity_overrides.after_event_id IS 'Last event id assigned when the decision was made; a rebuild replays a merge after the links of the events up to it';
COMMENT ON COLUMN cdp.identity_overrides.force IS 'merge: made past the limits of cdp.identity_rules';
COMMENT ON COLUMN cdp.identity_overrides.reason IS 'Reason given';
COMMENT ON COLUMN cdp.identity_overrides.made_by IS 'Database user who made it';
COMMENT ON COLUMN cdp.identity_overrides.made_at IS 'When';
COMMENT ON COLUMN cdp.identity_overrides.lifted_at IS 'When it stopped being in force (a merge undone, or an unmerge overruled by a later merge by hand)';

CREATE TABLE cdp.identifier_moves (
	move_id       bigserial   PRIMARY KEY,
	identifier_id bigint      NOT NULL,
	from_profile  bigint      NOT NULL,
	to_profile    bigint      NOT NULL,
	moved_at      timestamptz NOT NULL DEFAULT now(),
	cause         text        NOT NULL
);
COMMENT ON TABLE cdp.identifier_moves IS 'Journal of identifiers moved between profiles other than by a merge (by cdp.unmerge or cdp.rebuild_identities); with cdp.profile_merges it tells where an identifier was at any time';
COMMENT ON COLUMN cdp.identifier_moves.move_id IS 'Move number';
COMMENT ON COLUMN cdp.identifier_moves.identifier_id IS 'Identifier moved';
COMMENT ON COLUMN cdp.identifier_moves.from_profile IS 'Profile it left';
COMMENT ON COLUMN cdp.identifier_moves.to_profile IS 'Profile it went to';
COMMENT ON COLUMN cdp.identifier_moves.moved_at IS 'When';
COMMENT ON COLUMN cdp.identifier_moves.cause IS 'rebuild, or unmerge <merge_id>';
CREATE INDEX ON cdp.identifier_moves (identifier_id);

CREATE TABLE cdp.identifier_rejections (
	rejection_id bigserial   PRIMARY KEY,
	event_id     bigint      NOT NULL,
	kind         text        NOT NULL,
	value        text        NOT NULL,
	reason       text        NOT NULL,
	detected_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdp.identifier_rejections IS 'Identifiers of stored events that did not enter the graph (invalid, blocked, or of a kind without a rule); the events themselves are kept';
COMMENT ON COLUMN cdp.identifier_rejections.rejection_id IS 'Rejection number';
COMMENT ON COLUMN cdp.identifier_rejections.event_id IS 'Event that carried it';
COMMENT ON COLUMN cdp.identifier_rejections.kind IS 'Identifier kind';
COMMENT ON COLUMN cdp.identifier_rejections.value IS 'Value as sent';
COMMENT ON COLUMN cdp.identifier_rejections.reason IS 'Why it was left out';
COMMENT ON COLUMN cdp.identifier_rejections.detected_at IS 'When';
CREATE INDEX ON cdp.identifier_rejections (event_id);

SELECT pg_catalog.pg_extension_config_dump('cdp.identity_rules', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('cdp.identifier_blocklist', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('cdp.identifier_blocklist_entry_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.profiles', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.profiles_profile_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identifiers', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identifiers_identifier_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_links', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.event_anchors', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.stitch_batches', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.stitch_batches_batch_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_merges', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_merges_merge_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_conflicts', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_conflicts_conflict_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_overrides', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_overrides_override_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identifier_moves', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identifier_moves_move_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identifier_rejections', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identifier_rejections_rejection_id_seq', '');

CREATE TRIGGER identity_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp.identity_rules
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_changed();
CREATE TRIGGER identifier_blocklist_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp.identifier_blocklist
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_changed();
CREATE TRIGGER identity_overrides_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp.identity_overrides
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_changed();

CREATE FUNCTION cdp.normalize_email(email text) RETURNS text
	AS 'MODULE_PATHNAME', 'cdp_email_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.normalize_email(text) IS 'E-mail address trimmed and lower-cased, or NULL if it is not a valid address';

CREATE FUNCTION cdp.normalize_phone(phone text, country text DEFAULT NULL) RETURNS text
	AS 'MODULE_PATHNAME', 'cdp_phone_sql' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.normalize_phone(text, text) IS 'Phone number in E.164 (+447700900123), national numbers read for country (default cdp.default_country); NULL if invalid';

CREATE FUNCTION cdp.check_identifier(kind text, value text, OUT normalized text, OUT reason text)
	AS 'MODULE_PATHNAME', 'cdp_check_identifier' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION cdp.check_identifier(text, text) IS 'The value identity resolution would use for an identifier (normalized, not blocked), or why it would leave it out';

CREATE FUNCTION cdp.resolve(kind text, value text) RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_resolve' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION cdp.resolve(text, text) IS 'Live profile holding an identifier (normalized first), or NULL if unknown';

CREATE FUNCTION cdp.rebuild_identities(OUT identifiers bigint, OUT links bigint, OUT profiles bigint, OUT changed bigint)
	AS 'MODULE_PATHNAME', 'cdp_rebuild_identities' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.rebuild_identities() IS 'Recomputes every profile in one pass over the stored links with the current limits and merge rules; keeps profile ids where it can; returns the identifiers, the links replayed, the live profiles and how many identifiers changed profile';

CREATE FUNCTION cdp.merge_profiles(survivor bigint, absorbed bigint, reason text, force boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s        bigint;
	a        bigint;
	rep_s    bigint;
	rep_a    bigint;
	over     record;
	mid      bigint;
	last_id  bigint;
BEGIN
	IF survivor IS NULL OR absorbed IS NULL THEN
		RAISE EXCEPTION 'profile ids must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF reason IS NULL OR btrim(reason) = '' THEN
		RAISE EXCEPTION 'a merge by hand needs a reason'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Say why the two profiles are one person; the reason is kept in cdp.profile_merges.';
	END IF;
	-- the stitching lock (STITCH_LOCK_KEY1, STITCH_LOCK_KEY2 in src/identity.h)
	PERFORM pg_advisory_xact_lock(6513776, 26980);

	SELECT coalesce(p.merged_into, p.profile_id) INTO s FROM cdp.profiles p WHERE p.profile_id = survivor;
	IF s IS NULL THEN
		RAISE EXCEPTION 'profile % does not exist', survivor USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT coalesce(p.merged_into, p.profile_id) INTO a FROM cdp.profiles p WHERE p.profile_id = absorbed;
	IF a IS NULL THEN
		RAISE EXCEPTION 'profile % does not exist', absorbed USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF s = a THEN
		RAISE EXCEPTION 'profiles % and % are already one profile', survivor, absorbed
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Both resolve to live profile %s.', s);
	END IF;
	SELECT min(i.identifier_id) INTO rep_s FROM cdp.identifiers i WHERE i.profile_id = s;
	SELECT min(i.identifier_id) INTO rep_a FROM cdp.identifiers i WHERE i.profile_id = a;
	IF rep_s IS NULL OR rep_a IS NULL THEN
		RAISE EXCEPTION 'profile % has no identifiers', CASE WHEN rep_s IS NULL THEN s ELSE a END
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Only profiles that hold identifiers can be merged.';
	END IF;

	IF NOT force THEN
		SELECT r.kind, r.max_per_profile, c.ns + c.na AS n INTO over
		FROM (SELECT i.kind, count(*) FILTER (WHERE i.profile_id = s) AS ns,
		             count(*) FILTER (WHERE i.profile_id = a) AS na
		      FROM cdp.identifiers i WHERE i.profile_id IN (s, a) GROUP BY i.kind) c
		JOIN cdp.identity_rules r ON r.kind = c.kind
		WHERE r.max_per_profile > 0 AND c.ns > 0 AND c.na > 0 AND c.ns + c.na > r.max_per_profile
		ORDER BY r.priority LIMIT 1;
		IF FOUND THEN
			RAISE EXCEPTION 'merging profiles % and % would break the limit of kind "%"', s, a, over.kind
				USING ERRCODE = 'check_violation',
				      DETAIL = format('The merged profile would hold %s values of kind "%s"; cdp.identity_rules allows %s.',
				                      over.n, over.kind, over.max_per_profile),
				      HINT = 'Pass force => true to merge anyway; the merged profile then takes no further value of that kind.';
		END IF;
	END IF;

	-- a merge by hand overrules earlier unmerges between the two
	UPDATE cdp.identity_overrides o SET lifted_at = now()
	FROM cdp.identifiers x, cdp.identifiers y
	WHERE o.action = 'unmerge' AND o.lifted_at IS NULL
	  AND x.identifier_id = o.identifier_a AND y.identifier_id = o.identifier_b
	  AND ((x.profile_id = s AND y.profile_id = a) OR (x.profile_id = a AND y.profile_id = s));

	SELECT CASE WHEN q.is_called THEN q.last_value ELSE 0 END INTO last_id FROM cdp.events_event_id_seq q;
	INSERT INTO cdp.profile_merges (survivor, absorbed, anchor_id, identifier_id, method, reason)
	VALUES (s, a, rep_s, rep_a, 'hand', reason) RETURNING merge_id INTO mid;
	INSERT INTO cdp.identity_overrides (action, merge_id, identifier_a, identifier_b, after_event_id, force, reason)
	VALUES ('merge', mid, rep_s, rep_a, last_id, force, reason);

	UPDATE cdp.profiles SET merged_into = s, merged_at = now() WHERE profile_id = a;
	UPDATE cdp.profiles SET merged_into = s WHERE merged_into = a;
	UPDATE cdp.identifiers SET profile_id = s WHERE profile_id = a;
	RETURN mid;
END
$$;
COMMENT ON FUNCTION cdp.merge_profiles(bigint, bigint, text, boolean) IS 'Merges profile absorbed into profile survivor by hand (journaled, honoured by every rebuild); refuses what would break a limit of cdp.identity_rules unless force; returns the merge_id';

CREATE FUNCTION cdp.unmerge(merge_id bigint, reason text DEFAULT NULL,
                            OUT survivor bigint, OUT restored bigint, OUT moved bigint)
	AS 'MODULE_PATHNAME', 'cdp_unmerge' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.unmerge(bigint, text) IS 'Undoes a merge: the two identifiers of its link are declared two people, and the graph is recomputed from its links without joining them (journaled in cdp.identity_overrides and cdp.identifier_moves); returns the two profiles and how many identifiers moved';

CREATE FUNCTION cdp.profile_at(kind text, value text, at timestamptz) RETURNS bigint
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v      text;
	id     bigint;
	cur    bigint;
	t      timestamptz;
	last_m bigint := 0;
	last_v bigint := 0;
	m      record;
	mv     record;
BEGIN
	v := (cdp.check_identifier(kind, value)).normalized;
	SELECT i.identifier_id, i.initial_profile_id, i.stitched_at INTO id, cur, t
	FROM cdp.identifiers i WHERE i.kind = profile_at.kind AND i.value = v;
	IF id IS NULL OR t > at THEN
		RETURN NULL;	-- not in the graph at that time
	END IF;
	-- follow the journal forward: merges of its profile, moves of it
	LOOP
		SELECT pm.merge_id, pm.survivor, pm.merged_at INTO m
		FROM cdp.profile_merges pm
		WHERE pm.absorbed = cur AND pm.merged_at >= t AND pm.merged_at <= at AND pm.merge_id > last_m
		ORDER BY pm.merged_at, pm.merge_id LIMIT 1;
		SELECT im.move_id, im.to_profile, im.moved_at INTO mv
		FROM cdp.identifier_moves im
		WHERE im.identifier_id = id AND im.moved_at >= t AND im.moved_at <= at AND im.move_id > last_v
		ORDER BY im.moved_at, im.move_id LIMIT 1;
		IF m.merge_id IS NOT NULL AND (mv.move_id IS NULL OR m.merged_at <= mv.moved_at) THEN
			cur := m.survivor; t := m.merged_at; last_m := m.merge_id;
		ELSIF mv.move_id IS NOT NULL THEN
			cur := mv.to_profile; t := mv.moved_at; last_v := mv.move_id;
		ELSE
			RETURN cur;
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION cdp.profile_at(text, text, timestamptz) IS 'Profile that held an identifier at a time (as the graph stood then, by the merge and move journals), or NULL if it was not in the graph yet';

-- The golden record: traits (first_name, birth_date, postal_code, ...) sent
-- in events' properties.traits, one value per profile and trait chosen by
-- the trait's survivorship rule.
CREATE TABLE cdp.trait_rules (
	trait   text    PRIMARY KEY,
	method  text    NOT NULL DEFAULT 'most_recent'
	                CHECK (method IN ('most_recent', 'most_frequent', 'source_priority')),
	sources text[]  CONSTRAINT source_priority_needs_sources
	                CHECK (method <> 'source_priority' OR cardinality(sources) > 0),
	builtin boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE cdp.trait_rules IS 'Survivorship of each trait in the golden record; traits without a rule take the most recent value';
COMMENT ON COLUMN cdp.trait_rules.trait IS 'Key in properties.traits';
COMMENT ON COLUMN cdp.trait_rules.method IS 'most_recent, most_frequent (ties: most recent) or source_priority (the first source of sources that sent it, then most recent)';
COMMENT ON COLUMN cdp.trait_rules.sources IS 'For source_priority: sources from most to least trusted, e.g. {crm,pos,web-sdk}';
COMMENT ON COLUMN cdp.trait_rules.builtin IS 'Shipped with cdp (pg_dump keeps only the rows users added)';
INSERT INTO cdp.trait_rules (trait, method, sources, builtin) VALUES
	('birth_date', 'source_priority', '{crm,pos,app-sdk,web-sdk}', true);
SELECT pg_catalog.pg_extension_config_dump('cdp.trait_rules', 'WHERE NOT builtin');

CREATE VIEW cdp.profile_traits AS
WITH observed AS (
	SELECT i.profile_id, t.key AS trait, t.value, e.occurred_at, e.event_id, e.source
	FROM cdp.events e
	JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	CROSS JOIN LATERAL jsonb_each(e.properties -> 'traits') t
	WHERE jsonb_typeof(e.properties -> 'traits') = 'object' AND t.value <> 'null'),
ranked AS (
	SELECT o.*, coalesce(r.method, 'most_recent') AS method,
	       count(*) OVER (PARTITION BY o.profile_id, o.trait, o.value) AS frequency,
	       coalesce(array_position(r.sources, o.source), 2147483647) AS source_rank
	FROM observed o LEFT JOIN cdp.trait_rules r ON r.trait = o.trait)
SELECT DISTINCT ON (profile_id, trait)
       profile_id, trait, value, occurred_at AS observed_at, source, method, frequency AS times_seen
FROM ranked
ORDER BY profile_id, trait,
         CASE method WHEN 'most_frequent' THEN -frequency WHEN 'source_priority' THEN source_rank ELSE 0 END,
         occurred_at DESC, event_id DESC;
COMMENT ON VIEW cdp.profile_traits IS 'Golden record: for each live profile and trait, the value its survivorship rule (cdp.trait_rules) keeps';
COMMENT ON COLUMN cdp.profile_traits.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.profile_traits.trait IS 'Trait name';
COMMENT ON COLUMN cdp.profile_traits.value IS 'Value kept (JSON)';
COMMENT ON COLUMN cdp.profile_traits.observed_at IS 'When the kept value was sent';
COMMENT ON COLUMN cdp.profile_traits.source IS 'Source that sent it';
COMMENT ON COLUMN cdp.profile_traits.method IS 'Survivorship rule applied';
COMMENT ON COLUMN cdp.profile_traits.times_seen IS 'How many events sent this value for this profile';

-- ---------------------------------------------------------------------------
-- Journeys: funnels, broken journeys (abandonment) and how they end,
-- sessions, and the analyses BI tools read.  The state machine is in
-- src/core/funnel.c (its header states the rules), sessionization in
-- src/core/session.c; the glue is src/journey.c, src/journey_detect.c and
-- src/journey_agg.c.
-- ---------------------------------------------------------------------------

CREATE TABLE cdp.funnels (
	funnel_id         text     PRIMARY KEY CHECK (funnel_id ~ '^[a-z][a-z0-9_]{0,31}$'),
	steps             text[]   NOT NULL,
	conversion_window interval NOT NULL,
	abandon_after     interval NOT NULL,
	min_step          integer  NOT NULL DEFAULT 1,
	description       text     NOT NULL DEFAULT '',
	builtin           boolean  NOT NULL DEFAULT false
);
COMMENT ON TABLE cdp.funnels IS 'Funnels: ordered event types a journey goes through, how long it may take and when a pause is an abandonment (rules: src/core/funnel.h, README "Journeys")';
COMMENT ON COLUMN cdp.funnels.funnel_id IS 'Funnel key (lower case)';
COMMENT ON COLUMN cdp.funnels.steps IS 'Event types of the steps, in order, each once: a journey starts at the first and completes at the last';
COMMENT ON COLUMN cdp.funnels.conversion_window IS 'How long after its first step a journey may complete; it expires then (a fixed duration: a day is 24 hours; months are not allowed)';
COMMENT ON COLUMN cdp.funnels.abandon_after IS 'Inactivity after which a journey that reached min_step breaks (is abandoned); shorter than conversion_window';
COMMENT ON COLUMN cdp.funnels.min_step IS 'Step a journey must have reached for a pause to count as a break (1 to the number of steps)';
COMMENT ON COLUMN cdp.funnels.description IS 'What the funnel follows';
COMMENT ON COLUMN cdp.funnels.builtin IS 'Shipped with cdp (pg_dump keeps only the rows users added)';

CREATE FUNCTION cdp.funnels_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n   integer := cardinality(NEW.steps);
	bad text;
BEGIN
	IF NEW.funnel_id IS NULL OR NEW.funnel_id !~ '^[a-z][a-z0-9_]{0,31}$' THEN
		RAISE EXCEPTION 'invalid funnel id "%"', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A funnel id is a lower-case word of up to 32 letters, digits and underscores, such as cart.';
	END IF;
	IF NEW.steps IS NULL OR n < 2 OR array_ndims(NEW.steps) <> 1 THEN
		RAISE EXCEPTION 'funnel "%" needs at least two steps', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'List the event types of its steps in order, such as ''{add_to_cart,checkout_start,purchase}''.';
	END IF;
	IF array_position(NEW.steps, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'funnel "%" has a null step', NEW.funnel_id
			USING ERRCODE = 'null_value_not_allowed',
			      HINT = 'Every step is an event type of cdp.event_types.';
	END IF;
	SELECT s INTO bad FROM unnest(NEW.steps) s GROUP BY s HAVING count(*) > 1 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'funnel "%" lists step "%" twice', NEW.funnel_id, bad
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Each step is a distinct event type: a journey moves forward through them.';
	END IF;
	SELECT s INTO bad FROM unnest(NEW.steps) WITH ORDINALITY u(s, k)
	WHERE NOT EXISTS (SELECT FROM cdp.event_types t WHERE t.type = u.s) ORDER BY k LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'unknown event type "%" in funnel "%"', bad, NEW.funnel_id
			USING ERRCODE = 'foreign_key_violation',
			      HINT = 'Steps are types of cdp.event_types; register a new type there first.';
	END IF;
	IF NEW.conversion_window IS NULL OR NEW.conversion_window <= interval '0' THEN
		RAISE EXCEPTION 'conversion_window of funnel "%" must be positive', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'It is how long a journey may take to complete, such as ''7 days''.';
	END IF;
	IF NEW.abandon_after IS NULL OR NEW.abandon_after <= interval '0' THEN
		RAISE EXCEPTION 'abandon_after of funnel "%" must be positive', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'It is the inactivity after which a journey breaks, such as ''1 hour''.';
	END IF;
	IF extract(year FROM NEW.conversion_window) <> 0 OR extract(month FROM NEW.conversion_window) <> 0
	   OR extract(year FROM NEW.abandon_after) <> 0 OR extract(month FROM NEW.abandon_after) <> 0 THEN
		RAISE EXCEPTION 'windows of funnel "%" must not be written in months or years', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A month has no fixed length; write it in days, such as ''30 days''.';
	END IF;
	IF NEW.conversion_window > interval '3650 days' THEN
		RAISE EXCEPTION 'conversion_window of funnel "%" is too long', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('It is %s; at most 3650 days are allowed.', NEW.conversion_window),
			      HINT = 'A journey is meant to last days or weeks: use a shorter window.';
	END IF;
	IF NEW.abandon_after >= NEW.conversion_window THEN
		RAISE EXCEPTION 'abandon_after of funnel "%" must be shorter than its conversion_window', NEW.funnel_id
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('abandon_after is %s, conversion_window %s.', NEW.abandon_after, NEW.conversion_window),
			      HINT = 'A journey can only break inside its window; with a longer delay it would simply expire.';
	END IF;
	IF NEW.min_step IS NULL OR NEW.min_step < 1 OR NEW.min_step > n THEN
		RAISE EXCEPTION 'min_step of funnel "%" must be between 1 and %', NEW.funnel_id, n
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'It is the step a journey must have reached for a pause to count as a break.';
	END IF;
	IF NEW.description IS NULL THEN
		NEW.description := '';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION cdp.funnels_check() IS 'Trigger: refuses a funnel whose steps, windows or min_step are invalid, with a message saying why';

CREATE TRIGGER funnels_check BEFORE INSERT OR UPDATE ON cdp.funnels
	FOR EACH ROW EXECUTE FUNCTION cdp.funnels_check();

INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after, min_step, description, builtin) VALUES
	('cart',   '{add_to_cart,checkout_start,purchase}', '7 days', '1 hour', 1,
	 'Cart abandonment: a cart left for an hour without an order', true),
	('browse', '{product_view,add_to_cart,purchase}',   '7 days', '1 day',  1,
	 'Browse abandonment: products looked at, then a day without coming back', true);

CREATE TABLE cdp.journey_breaks (
	profile_id        bigint      NOT NULL,
	funnel_id         text        NOT NULL,
	first_event_id    bigint      NOT NULL,
	journey_no        bigint      NOT NULL,
	started_at        timestamptz NOT NULL,
	reached_step      integer     NOT NULL,
	break_step        integer     NOT NULL,
	last_event_at     timestamptz NOT NULL,
	last_event_id     bigint      NOT NULL,
	broken_at         timestamptz NOT NULL,
	channel           text        NOT NULL,
	status            text        NOT NULL CHECK (status IN ('open', 'recovered', 'converted_elsewhere', 'expired')),
	resolved_at       timestamptz,
	resolved_channel  text,
	resolved_event_id bigint,
	context           jsonb       NOT NULL,
	detected_at       timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (profile_id, funnel_id, first_event_id)
);
COMMENT ON TABLE cdp.journey_breaks IS 'Broken journeys (abandonments) and how they ended, as of the last cdp.detect_journey_breaks (its as_of is in cdp.journey_progress); derived from events, rebuilt by cdp.detect_journey_breaks(rebuild => true)';
COMMENT ON COLUMN cdp.journey_breaks.profile_id IS 'Live profile whose journey broke';
COMMENT ON COLUMN cdp.journey_breaks.funnel_id IS 'Funnel (cdp.funnels)';
COMMENT ON COLUMN cdp.journey_breaks.first_event_id IS 'Event that started the journey (its step 1); with funnel_id it identifies the journey across merges';
COMMENT ON COLUMN cdp.journey_breaks.journey_no IS 'Number of the journey among the profile''s journeys in this funnel (1, 2, ...)';
COMMENT ON COLUMN cdp.journey_breaks.started_at IS 'Time of the journey''s first step';
COMMENT ON COLUMN cdp.journey_breaks.reached_step IS 'Furthest step the journey has reached (so far, or when it ended)';
COMMENT ON COLUMN cdp.journey_breaks.break_step IS 'Furthest step reached when it broke';
COMMENT ON COLUMN cdp.journey_breaks.last_event_at IS 'Time of the last funnel event before the pause (the break is abandon_after later)';
COMMENT ON COLUMN cdp.journey_breaks.last_event_id IS 'That last event';
COMMENT ON COLUMN cdp.journey_breaks.broken_at IS 'When the journey broke: last_event_at + abandon_after';
COMMENT ON COLUMN cdp.journey_breaks.channel IS 'Channel of the last funnel event before the pause';
COMMENT ON COLUMN cdp.journey_breaks.status IS 'open (not over), recovered (completed later on the same channel), converted_elsewhere (completed on another channel), expired (the window ended without completion)';
COMMENT ON COLUMN cdp.journey_breaks.resolved_at IS 'When it was completed, or when its window ended (expired); NULL while open';
COMMENT ON COLUMN cdp.journey_breaks.resolved_channel IS 'Channel of the completing event (recovered, converted_elsewhere)';
COMMENT ON COLUMN cdp.journey_breaks.resolved_event_id IS 'The completing event (recovered, converted_elsewhere)';
COMMENT ON COLUMN cdp.journey_breaks.context IS 'The journey up to the break: {"products": [product_id, ...], "cart_value": last cart_value seen, "channel": ..., "last_page": last page property seen}';
COMMENT ON COLUMN cdp.journey_breaks.detected_at IS 'When a detection run first found the break (kept when it is found again)';
-- the breaks to act on; the others are read by scans
CREATE INDEX ON cdp.journey_breaks (funnel_id, broken_at) WHERE status = 'open';

CREATE TABLE cdp.journey_events (
	anchor_id bigint PRIMARY KEY,
	events    bytea  NOT NULL
);
COMMENT ON TABLE cdp.journey_events IS 'The funnel event log: per anchor identifier, its events of the funnels'' step types with what journeys need of them, packed; kept by cdp.detect_journey_breaks so that its incremental runs read the history of the profiles they replay by index instead of scanning cdp.events (internal)';
COMMENT ON COLUMN cdp.journey_events.anchor_id IS 'Anchor identifier (cdp.event_anchors); its profile is the identifier''s';
COMMENT ON COLUMN cdp.journey_events.events IS 'Its funnel events, one record each (event_id, occurred_at, cart_value, error, type, channel, product_id, page), appended as they are stitched; the format is in src/journey.c';

CREATE TABLE cdp.journey_pending (
	profile_id bigint      PRIMARY KEY,
	due_at     timestamptz NOT NULL
);
COMMENT ON TABLE cdp.journey_pending IS 'Profiles whose journeys change without any new event (a break or an expiry falls due, or an event lies after the last as_of): detection replays them once its as_of reaches due_at';
COMMENT ON COLUMN cdp.journey_pending.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.journey_pending.due_at IS 'Earliest time at which one of its journeys changes';
CREATE INDEX ON cdp.journey_pending (due_at);

CREATE TABLE cdp.journey_progress (
	singleton     boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
	as_of         timestamptz NOT NULL,
	last_batch_id bigint      NOT NULL,
	last_merge_id bigint      NOT NULL,
	last_move_id  bigint      NOT NULL,
	funnels       jsonb       NOT NULL,
	ran_at        timestamptz NOT NULL,
	needs_full    boolean     NOT NULL DEFAULT false
);
COMMENT ON TABLE cdp.journey_progress IS 'Where the last cdp.detect_journey_breaks stopped (one row, written in the same transaction as the breaks)';
COMMENT ON COLUMN cdp.journey_progress.singleton IS 'Always true: there is one row';
COMMENT ON COLUMN cdp.journey_progress.as_of IS 'Time the breaks are as of: events up to it count';
COMMENT ON COLUMN cdp.journey_progress.last_batch_id IS 'Last cdp.stitch_batches batch whose events were taken into account';
COMMENT ON COLUMN cdp.journey_progress.last_merge_id IS 'Last cdp.profile_merges merge taken into account';
COMMENT ON COLUMN cdp.journey_progress.last_move_id IS 'Last cdp.identifier_moves move taken into account';
COMMENT ON COLUMN cdp.journey_progress.funnels IS 'The funnel definitions used; a change makes the next run replay every profile';
COMMENT ON COLUMN cdp.journey_progress.ran_at IS 'When the last run committed its work (transaction time)';
COMMENT ON COLUMN cdp.journey_progress.needs_full IS 'Events were deleted (or partitions dropped) since the last run: the next one replays every profile';

-- Deleted events must leave the journeys and the funnel event log: the
-- next run replays everything (deletes are rare: corrections, erasure).
CREATE FUNCTION cdp.events_deleted() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE cdp.journey_progress SET needs_full = true WHERE NOT needs_full;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.events_deleted() IS 'Trigger: after events are deleted, makes the next cdp.detect_journey_breaks replay every profile';
CREATE TRIGGER events_deleted AFTER DELETE OR TRUNCATE ON cdp.events
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_deleted();
CREATE TRIGGER events_deleted AFTER DELETE OR TRUNCATE ON cdp.events_default
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.events_deleted();

SELECT pg_catalog.pg_extension_config_dump('cdp.funnels', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('cdp.journey_breaks', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.journey_events', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.journey_pending', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.journey_progress', '');

CREATE FUNCTION cdp.detect_journey_breaks(as_of timestamptz DEFAULT now(), rebuild boolean DEFAULT false,
	OUT mode text, OUT profiles bigint, OUT journeys bigint, OUT breaks bigint, OUT open_breaks bigint)
	AS 'MODULE_PATHNAME', 'cdp_detect_journey_breaks' LANGUAGE C VOLATILE
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION cdp.detect_journey_breaks(timestamptz, boolean) IS 'Brings cdp.journey_breaks up to as_of: replays the journeys of the profiles with new events, merges or moves since the last run and of those with a transition due (incremental), or of every profile (first run, changed funnels, an earlier as_of, or rebuild); returns the mode, the profiles replayed, their journeys, the breaks written and how many are open';

CREATE TYPE cdp.journey AS (
	journey_no       bigint,
	status           text,
	broken           boolean,
	started_at       timestamptz,
	last_event_at    timestamptz,
	reached_step     integer,
	events           bigint,
	start_channel    text,
	broken_at        timestamptz,
	break_step       integer,
	break_channel    text,
	resolved_at      timestamptz,
	resolved_channel text,
	first_event_id   bigint,
	last_event_id    bigint,
	break_event_id   bigint
);
COMMENT ON TYPE cdp.journey IS 'One journey through a funnel, as cdp.funnel_journeys returns them';
COMMENT ON COLUMN cdp.journey.journey_no IS 'Number of the journey in its group (1, 2, ...)';
COMMENT ON COLUMN cdp.journey.status IS 'in_progress, open, completed, recovered, converted_elsewhere or expired';
COMMENT ON COLUMN cdp.journey.broken IS 'Whether it broke (open, recovered, converted_elsewhere, or expired after a break)';
COMMENT ON COLUMN cdp.journey.started_at IS 'Time of its first step';
COMMENT ON COLUMN cdp.journey.last_event_at IS 'Time of its last funnel event';
COMMENT ON COLUMN cdp.journey.reached_step IS 'Furthest step reached';
COMMENT ON COLUMN cdp.journey.events IS 'Funnel events in the journey';
COMMENT ON COLUMN cdp.journey.start_channel IS 'Channel of its first step';
COMMENT ON COLUMN cdp.journey.broken_at IS 'When it broke';
COMMENT ON COLUMN cdp.journey.break_step IS 'Furthest step reached when it broke';
COMMENT ON COLUMN cdp.journey.break_channel IS 'Channel of the last event before the break';
COMMENT ON COLUMN cdp.journey.resolved_at IS 'When it completed, or when its window ended';
COMMENT ON COLUMN cdp.journey.resolved_channel IS 'Channel of the completing event';
COMMENT ON COLUMN cdp.journey.first_event_id IS 'Its first event';
COMMENT ON COLUMN cdp.journey.last_event_id IS 'Its last funnel event';
COMMENT ON COLUMN cdp.journey.break_event_id IS 'The last event before the break';

CREATE FUNCTION cdp.funnel_journeys_trans(internal, text, text, timestamptz, text, bigint, timestamptz)
	RETURNS internal AS 'MODULE_PATHNAME', 'cdp_funnel_journeys_trans' LANGUAGE C PARALLEL SAFE;
COMMENT ON FUNCTION cdp.funnel_journeys_trans(internal, text, text, timestamptz, text, bigint, timestamptz) IS 'Internal: transition function of cdp.funnel_journeys';
CREATE FUNCTION cdp.funnel_journeys_final(internal) RETURNS cdp.journey[]
	AS 'MODULE_PATHNAME', 'cdp_funnel_journeys_final' LANGUAGE C PARALLEL SAFE;
COMMENT ON FUNCTION cdp.funnel_journeys_final(internal) IS 'Internal: final function of cdp.funnel_journeys';
CREATE FUNCTION cdp.funnel_journeys_combine(internal, internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_funnel_journeys_combine' LANGUAGE C PARALLEL SAFE;
COMMENT ON FUNCTION cdp.funnel_journeys_combine(internal, internal) IS 'Internal: combines two partial states of cdp.funnel_journeys';
CREATE FUNCTION cdp.funnel_journeys_serial(internal) RETURNS bytea
	AS 'MODULE_PATHNAME', 'cdp_funnel_journeys_serial' LANGUAGE C STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.funnel_journeys_serial(internal) IS 'Internal: serial form of a cdp.funnel_journeys state';
CREATE FUNCTION cdp.funnel_journeys_deserial(bytea, internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_funnel_journeys_deserial' LANGUAGE C STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.funnel_journeys_deserial(bytea, internal) IS 'Internal: reads the serial form of a cdp.funnel_journeys state, checking it';

CREATE AGGREGATE cdp.funnel_journeys(funnel_id text, type text, occurred_at timestamptz, channel text,
                                     event_id bigint, as_of timestamptz) (
	SFUNC = cdp.funnel_journeys_trans,
	STYPE = internal,
	FINALFUNC = cdp.funnel_journeys_final,
	COMBINEFUNC = cdp.funnel_journeys_combine,
	SERIALFUNC = cdp.funnel_journeys_serial,
	DESERIALFUNC = cdp.funnel_journeys_deserial,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.funnel_journeys(text, text, timestamptz, text, bigint, timestamptz) IS 'The journeys through a funnel of a group of events (any order; the same funnel and as_of on every row), with their status at as_of: the state machine of cdp.detect_journey_breaks in plain SQL';

CREATE FUNCTION cdp.journeys(funnel text DEFAULT NULL, as_of timestamptz DEFAULT now(),
                             started_from timestamptz DEFAULT NULL, started_to timestamptz DEFAULT NULL,
                             profile_ids bigint[] DEFAULT NULL)
RETURNS TABLE (profile_id bigint, funnel_id text, journey_no bigint, status text, broken boolean,
               started_at timestamptz, last_event_at timestamptz, reached_step integer, events bigint,
               start_channel text, broken_at timestamptz, break_step integer, break_channel text,
               resolved_at timestamptz, resolved_channel text, first_event_id bigint, last_event_id bigint,
               break_event_id bigint, step_reached_at timestamptz[], step_errors integer[])
	AS 'MODULE_PATHNAME', 'cdp_journeys' LANGUAGE C STABLE
	SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION cdp.journeys(text, timestamptz, timestamptz, timestamptz, bigint[]) IS 'Every journey of a funnel (NULL: of every funnel) started in [started_from, started_to), with its status at as_of, when each step was first reached and how many events with an error property each step had; replayed from the events of every profile (or of profile_ids)';

CREATE FUNCTION cdp.funnel_stats(funnel_id text, started_from timestamptz DEFAULT NULL,
                                 started_to timestamptz DEFAULT NULL, as_of timestamptz DEFAULT now())
RETURNS TABLE (step integer, type text, journeys bigint, of_started numeric, to_next bigint,
               conversion numeric, drop_off bigint, median_to_next interval, error_events bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s text[];
BEGIN
	IF funnel_stats.funnel_id IS NULL THEN
		RAISE EXCEPTION 'funnel_id must not be null'
			USING ERRCODE = 'null_value_not_allowed', HINT = 'Name one of cdp.funnels, such as cart.';
	END IF;
	SELECT f.steps INTO s FROM cdp.funnels f WHERE f.funnel_id = funnel_stats.funnel_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'funnel "%" does not exist', funnel_stats.funnel_id
			USING ERRCODE = 'undefined_object', HINT = 'Funnels are listed in cdp.funnels.';
	END IF;
	RETURN QUERY
	WITH j AS (
		SELECT x.reached_step, x.step_reached_at AS at, x.step_errors AS errors
		FROM cdp.journeys(funnel_stats.funnel_id, funnel_stats.as_of, started_from, started_to) x),
	per AS (
		SELECT k.step::integer AS step, k.type,
		       count(*) FILTER (WHERE j.reached_step >= k.step) AS reached,
		       count(*) FILTER (WHERE j.reached_step > k.step) AS next,
		       percentile_cont(0.5) WITHIN GROUP (ORDER BY j.at[k.step + 1] - j.at[k.step])
		           FILTER (WHERE j.reached_step > k.step) AS median,
		       coalesce(sum(j.errors[k.step]), 0) AS errors
		FROM unnest(s) WITH ORDINALITY k(type, step) LEFT JOIN j ON true
		GROUP BY k.step, k.type)
	SELECT per.step, per.type, per.reached,
	       round(per.reached::numeric / nullif(first_value(per.reached) OVER (ORDER BY per.step), 0), 4),
	       CASE WHEN per.step < cardinality(s) THEN per.next END,
	       CASE WHEN per.step < cardinality(s) THEN round(per.next::numeric / nullif(per.reached, 0), 4) END,
	       CASE WHEN per.step < cardinality(s) THEN per.reached - per.next END,
	       CASE WHEN per.step < cardinality(s) THEN per.median END,
	       per.errors
	FROM per ORDER BY per.step;
END
$$;
COMMENT ON FUNCTION cdp.funnel_stats(text, timestamptz, timestamptz, timestamptz) IS 'Per step of a funnel, over the journeys started in [started_from, started_to) with their status at as_of: journeys that reached it (or a later step), their share of those started, how many reached the next step, the conversion, the drop-off, the median time to the next step and the events with an error property at that step';

CREATE FUNCTION cdp.top_paths(funnel text DEFAULT 'cart', path_of text DEFAULT 'type', length integer DEFAULT 3,
                              started_from timestamptz DEFAULT NULL, started_to timestamptz DEFAULT NULL,
                              n integer DEFAULT 10, as_of timestamptz DEFAULT now())
RETURNS TABLE (outcome text, rank integer, path text, journeys bigint, share numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF funnel IS NULL THEN
		RAISE EXCEPTION 'funnel must not be null'
			USING ERRCODE = 'null_value_not_allowed',
			      HINT = 'Paths are of one funnel''s journeys: name one of cdp.funnels, such as cart.';
	END IF;
	IF path_of IS NULL OR path_of NOT IN ('type', 'page') THEN
		RAISE EXCEPTION 'path_of must be type or page, not %', coalesce('"' || path_of || '"', 'null')
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'type: the sequence of event types; page: of pages (a product''s id where an event has no page).';
	END IF;
	IF length IS NULL OR length < 1 OR length > 50 THEN
		RAISE EXCEPTION 'length must be between 1 and 50'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'It is how many events of the session each path shows, ending with the purchase or the last event before the break.';
	END IF;
	IF n IS NULL OR n < 1 THEN
		RAISE EXCEPTION 'n must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN QUERY
	WITH j AS (
		SELECT x.profile_id, x.status, x.broken, x.last_event_id, x.break_event_id
		FROM cdp.journeys(top_paths.funnel, top_paths.as_of, started_from, started_to) x),
	targets AS (
		SELECT j.profile_id, j.last_event_id AS event_id, 'converted'::text AS outcome
		FROM j WHERE j.status IN ('completed', 'recovered', 'converted_elsewhere')
		UNION ALL
		SELECT j.profile_id, j.break_event_id, 'dropped'::text FROM j WHERE j.broken),
	ev AS (
		SELECT i.profile_id, e.event_id, e.occurred_at, e.channel,
		       CASE WHEN path_of = 'type' THEN e.type
		            ELSE coalesce(e.properties ->> 'page', e.properties ->> 'product_id', e.type) END AS label
		FROM cdp.events e
		JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
		JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
		WHERE i.profile_id IN (SELECT profile_id FROM targets) AND e.occurred_at <= top_paths.as_of),
	sess AS (
		SELECT ev.*, cdp.session_no(ev.occurred_at, ev.event_id)
		             OVER (PARTITION BY ev.profile_id, ev.channel ORDER BY ev.occurred_at, ev.event_id) AS session_no
		FROM ev),
	paths AS (
		SELECT sess.event_id,
		       array_agg(sess.label) OVER (PARTITION BY sess.profile_id, sess.channel, sess.session_no
		                                   ORDER BY sess.occurred_at, sess.event_id
		                                   ROWS BETWEEN top_paths.length - 1 PRECEDING AND CURRENT ROW) AS steps
		FROM sess),
	counted AS (
		SELECT t.outcome, array_to_string(p.steps, ' > ') AS path, count(*) AS journeys
		FROM targets t JOIN paths p USING (event_id)
		GROUP BY 1, 2),
	ranked AS (
		SELECT c.*, row_number() OVER (PARTITION BY c.outcome ORDER BY c.journeys DESC, c.path)::integer AS rank,
		       round(c.journeys::numeric / sum(c.journeys) OVER (PARTITION BY c.outcome), 4) AS share
		FROM counted c)
	SELECT r.outcome, r.rank, r.path, r.journeys, r.share
	FROM ranked r WHERE r.rank <= n ORDER BY r.outcome, r.rank;
END
$$;
COMMENT ON FUNCTION cdp.top_paths(text, text, integer, timestamptz, timestamptz, integer, timestamptz) IS 'The most frequent paths (the last length events of the session, as event types or pages) that led to the completion of a journey of the funnel (converted) and to its break (dropped), over journeys started in [started_from, started_to); top n of each';

CREATE FUNCTION cdp.session_no(occurred_at timestamptz, event_id bigint) RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_session_no' LANGUAGE C WINDOW STABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.session_no(timestamptz, bigint) IS 'Window function: the session of each row, a new one after cdp.session_timeout of inactivity; use OVER (PARTITION BY profile_id, channel ORDER BY occurred_at, event_id)';
CREATE FUNCTION cdp.session_no(occurred_at timestamptz, event_id bigint, timeout interval) RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_session_no' LANGUAGE C WINDOW IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.session_no(timestamptz, bigint, interval) IS 'Window function: the session of each row, a new one after timeout of inactivity; use OVER (PARTITION BY profile_id, channel ORDER BY occurred_at, event_id)';

CREATE VIEW cdp.sessions AS
WITH ev AS (
	SELECT i.profile_id, e.channel, e.occurred_at, e.event_id, e.type, e.amount,
	       coalesce(e.properties ->> 'page', e.properties ->> 'product_id') AS place,
	       e.properties ->> 'utm_source' AS utm_source,
	       cdp.session_no(e.occurred_at, e.event_id)
	           OVER (PARTITION BY i.profile_id, e.channel ORDER BY e.occurred_at, e.event_id) AS session_no
	FROM cdp.events e
	JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id)
SELECT profile_id, channel, session_no,
       min(occurred_at) AS started_at, max(occurred_at) AS ended_at,
       count(*) AS events,
       (array_agg(place ORDER BY occurred_at, event_id) FILTER (WHERE place IS NOT NULL))[1] AS landing,
       (array_agg(place ORDER BY occurred_at DESC, event_id DESC) FILTER (WHERE place IS NOT NULL))[1] AS exit,
       (array_agg(utm_source ORDER BY occurred_at, event_id))[1] AS source,
       count(*) FILTER (WHERE type = 'purchase') > 0 AS converted,
       coalesce(sum(amount) FILTER (WHERE type = 'purchase'), 0) AS revenue,
       min(event_id) AS first_event_id
FROM ev
GROUP BY profile_id, channel, session_no;
COMMENT ON VIEW cdp.sessions IS 'Sessions: the events of a profile on one channel with no pause of cdp.session_timeout (default 30 minutes) or more; computed from the events when read';
COMMENT ON COLUMN cdp.sessions.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.sessions.channel IS 'Channel (sessions never span channels)';
COMMENT ON COLUMN cdp.sessions.session_no IS 'Number of the session for the profile and channel (1, 2, ...)';
COMMENT ON COLUMN cdp.sessions.started_at IS 'Time of its first event';
COMMENT ON COLUMN cdp.sessions.ended_at IS 'Time of its last event';
COMMENT ON COLUMN cdp.sessions.events IS 'Number of events';
COMMENT ON COLUMN cdp.sessions.landing IS 'Landing page: the page (or, for a product event, the product id) of its first event that has one';
COMMENT ON COLUMN cdp.sessions.exit IS 'Exit page: the page or product id of its last event that has one';
COMMENT ON COLUMN cdp.sessions.source IS 'utm_source of its first event, if any';
COMMENT ON COLUMN cdp.sessions.converted IS 'Whether it has a purchase';
COMMENT ON COLUMN cdp.sessions.revenue IS 'Sum of its purchases';
COMMENT ON COLUMN cdp.sessions.first_event_id IS 'Smallest event id of the session';

CREATE FUNCTION cdp.who_viewed(product_id text, since timestamptz DEFAULT now() - interval '30 days')
RETURNS TABLE (profile_id bigint, views bigint, first_viewed_at timestamptz, last_viewed_at timestamptz,
               channels text[], wishlisted boolean, added_to_cart boolean, purchased boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT i.profile_id,
	       count(*) FILTER (WHERE e.type = 'product_view'),
	       min(e.occurred_at) FILTER (WHERE e.type = 'product_view'),
	       max(e.occurred_at) FILTER (WHERE e.type = 'product_view'),
	       array_agg(DISTINCT e.channel ORDER BY e.channel),
	       count(*) FILTER (WHERE e.type = 'wishlist_add') > 0,
	       count(*) FILTER (WHERE e.type = 'add_to_cart') > 0,
	       count(*) FILTER (WHERE e.type = 'purchase') > 0
	FROM cdp.events e
	JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	WHERE e.occurred_at >= coalesce(who_viewed.since, '-infinity')
	  AND e.type IN ('product_view', 'wishlist_add', 'add_to_cart', 'purchase')
	  AND (e.properties ->> 'product_id' = who_viewed.product_id
	       OR (e.type = 'purchase' AND e.properties -> 'items' ? who_viewed.product_id))
	GROUP BY i.profile_id
	HAVING count(*) FILTER (WHERE e.type = 'product_view') > 0
	ORDER BY 4 DESC, 1
$$;
COMMENT ON FUNCTION cdp.who_viewed(text, timestamptz) IS 'Profiles that viewed a product since a time (default: the last 30 days), most recent first: how often, when, on which channels, and whether they wish-listed it, put it in a cart or bought it (in the same period)';

CREATE FUNCTION cdp.interest(only_category text DEFAULT NULL, half_life interval DEFAULT '30 days',
                             as_of timestamptz DEFAULT now(), horizon interval DEFAULT '365 days')
RETURNS TABLE (profile_id bigint, category text, score double precision, events bigint, last_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF half_life IS NULL OR half_life <= interval '0' THEN
		RAISE EXCEPTION 'half_life must be a positive interval'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'An event counts half as much when it is half_life old, such as ''30 days''.';
	END IF;
	IF horizon IS NULL OR horizon <= interval '0' THEN
		RAISE EXCEPTION 'horizon must be a positive interval'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Events older than horizon are not read; a few half-lives are enough.';
	END IF;
	RETURN QUERY
	SELECT i.profile_id, e.properties ->> 'category',
	       sum(w.weight * power(0.5, extract(epoch FROM interest.as_of - e.occurred_at)
	                                 / extract(epoch FROM interest.half_life)))::double precision,
	       count(*), max(e.occurred_at)
	FROM cdp.events e
	JOIN (VALUES ('product_view', 1.0), ('wishlist_add', 2.0), ('add_to_cart', 3.0)) w(type, weight)
	  ON w.type = e.type
	JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	WHERE e.occurred_at <= interest.as_of AND e.occurred_at > interest.as_of - interest.horizon
	  AND e.properties ? 'category'
	  AND (only_category IS NULL OR e.properties ->> 'category' = only_category)
	GROUP BY 1, 2
	ORDER BY 3 DESC, 1, 2;
END
$$;
COMMENT ON FUNCTION cdp.interest(text, interval, timestamptz, interval) IS 'Interest of each profile in each product category (or only in only_category): the sum over its product views (weight 1), wish-list additions (2) and cart additions (3) of the category within horizon, each halved every half_life of age at as_of; highest first: who is interested in a category';

CREATE VIEW cdp.profile_acquisition AS
WITH touch AS (
	SELECT i.profile_id, e.occurred_at, e.event_id, e.channel,
	       coalesce(e.properties ->> 'utm_source',
	                substring(e.properties ->> 'referrer' FROM '^[A-Za-z][A-Za-z0-9+.-]*://(?:www\.)?([^/:?#]+)')) AS source,
	       coalesce(e.properties ->> 'utm_medium',
	                CASE WHEN e.properties ? 'referrer' THEN 'referral' END) AS medium,
	       e.properties ->> 'utm_campaign' AS campaign,
	       e.properties ->> 'referrer' AS referrer
	FROM cdp.events e
	JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	WHERE e.properties ?| ARRAY['utm_source', 'referrer']),
ranked AS (
	SELECT t.*,
	       row_number() OVER (PARTITION BY t.profile_id ORDER BY t.occurred_at, t.event_id) AS from_first,
	       row_number() OVER (PARTITION BY t.profile_id ORDER BY t.occurred_at DESC, t.event_id DESC) AS from_last,
	       count(*) OVER (PARTITION BY t.profile_id) AS touches
	FROM touch t)
SELECT f.profile_id,
       f.source AS first_source, f.medium AS first_medium, f.campaign AS first_campaign,
       f.referrer AS first_referrer, f.channel AS first_channel, f.occurred_at AS first_at,
       l.source AS last_source, l.medium AS last_medium, l.campaign AS last_campaign,
       l.referrer AS last_referrer, l.channel AS last_channel, l.occurred_at AS last_at,
       f.touches
FROM ranked f JOIN ranked l ON l.profile_id = f.profile_id AND l.from_last = 1
WHERE f.from_first = 1;
COMMENT ON VIEW cdp.profile_acquisition IS 'First-touch and last-touch acquisition source of each profile: its first and last events that carry a utm_source or a referrer (a referrer alone gives its host as source and referral as medium)';
COMMENT ON COLUMN cdp.profile_acquisition.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.profile_acquisition.first_source IS 'utm_source of the first touch, or its referrer''s host';
COMMENT ON COLUMN cdp.profile_acquisition.first_medium IS 'utm_medium of the first touch, or referral';
COMMENT ON COLUMN cdp.profile_acquisition.first_campaign IS 'utm_campaign of the first touch';
COMMENT ON COLUMN cdp.profile_acquisition.first_referrer IS 'Referrer of the first touch';
COMMENT ON COLUMN cdp.profile_acquisition.first_channel IS 'Channel of the first touch';
COMMENT ON COLUMN cdp.profile_acquisition.first_at IS 'When the first touch happened';
COMMENT ON COLUMN cdp.profile_acquisition.last_source IS 'utm_source of the last touch, or its referrer''s host';
COMMENT ON COLUMN cdp.profile_acquisition.last_medium IS 'utm_medium of the last touch, or referral';
COMMENT ON COLUMN cdp.profile_acquisition.last_campaign IS 'utm_campaign of the last touch';
COMMENT ON COLUMN cdp.profile_acquisition.last_referrer IS 'Referrer of the last touch';
COMMENT ON COLUMN cdp.profile_acquisition.last_channel IS 'Channel of the last touch';
COMMENT ON COLUMN cdp.profile_acquisition.last_at IS 'When the last touch happened';
COMMENT ON COLUMN cdp.profile_acquisition.touches IS 'Events with a utm_source or a referrer';

-- ---------------------------------------------------------------------------
-- Scoring: recency / frequency / monetary segments, and lifetime-value
-- models (BG/NBD, Pareto/NBD, Gamma-Gamma; src/core/btyd.c) as aggregates.
-- Purchases are events of type purchase on any channel (returns, type
-- return with a negative amount, reduce the monetary value), attributed to
-- profiles through identity resolution.
-- ---------------------------------------------------------------------------

-- The models, as aggregates and functions
CREATE FUNCTION cdp.btyd_accum3(internal, double precision, double precision, double precision) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_btyd_accum3' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.btyd_accum3(internal, double precision, double precision, double precision) IS 'Internal: transition of the BG/NBD and Pareto/NBD fits';
CREATE FUNCTION cdp.btyd_accum2(internal, double precision, double precision) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_btyd_accum2' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.btyd_accum2(internal, double precision, double precision) IS 'Internal: transition of the Gamma-Gamma fit';
CREATE FUNCTION cdp.btyd_combine(internal, internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_btyd_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.btyd_combine(internal, internal) IS 'Internal: combines partial lifetime-value fits';
CREATE FUNCTION cdp.btyd_serialize(internal) RETURNS bytea
	AS 'MODULE_PATHNAME', 'cdp_btyd_serialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.btyd_serialize(internal) IS 'Internal: serializes a partial lifetime-value fit';
CREATE FUNCTION cdp.btyd_deserialize(bytea, internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_btyd_deserialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.btyd_deserialize(bytea, internal) IS 'Internal: reads a serialized partial lifetime-value fit';
CREATE FUNCTION cdp.bgnbd_fit_final(internal) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'cdp_bgnbd_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.bgnbd_fit_final(internal) IS 'Internal: fits BG/NBD';
CREATE FUNCTION cdp.pareto_nbd_fit_final(internal) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'cdp_pareto_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.pareto_nbd_fit_final(internal) IS 'Internal: fits Pareto/NBD';
CREATE FUNCTION cdp.gamma_gamma_fit_final(internal) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'cdp_gg_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.gamma_gamma_fit_final(internal) IS 'Internal: fits Gamma-Gamma';

CREATE AGGREGATE cdp.bgnbd_fit(x double precision, t_x double precision, t double precision) (
	SFUNC = cdp.btyd_accum3, STYPE = internal, FINALFUNC = cdp.bgnbd_fit_final,
	COMBINEFUNC = cdp.btyd_combine, SERIALFUNC = cdp.btyd_serialize, DESERIALFUNC = cdp.btyd_deserialize,
	PARALLEL = SAFE);
COMMENT ON AGGREGATE cdp.bgnbd_fit(double precision, double precision, double precision) IS 'Fits the BG/NBD model (Fader, Hardie and Lee 2005) to customers'' repeat purchases x, time of last purchase t_x and age t (any one time unit); jsonb with r, alpha, a, b, log_likelihood, customers, iterations, converged, status, message and standard errors';
CREATE AGGREGATE cdp.pareto_nbd_fit(x double precision, t_x double precision, t double precision) (
	SFUNC = cdp.btyd_accum3, STYPE = internal, FINALFUNC = cdp.pareto_nbd_fit_final,
	COMBINEFUNC = cdp.btyd_combine, SERIALFUNC = cdp.btyd_serialize, DESERIALFUNC = cdp.btyd_deserialize,
	PARALLEL = SAFE);
COMMENT ON AGGREGATE cdp.pareto_nbd_fit(double precision, double precision, double precision) IS 'Fits the Pareto/NBD model (Schmittlein, Morrison and Colombo 1987) to (x, t_x, t); jsonb with r, alpha, s, beta and the fit''s diagnostics';
CREATE AGGREGATE cdp.gamma_gamma_fit(x double precision, avg_value double precision) (
	SFUNC = cdp.btyd_accum2, STYPE = internal, FINALFUNC = cdp.gamma_gamma_fit_final,
	COMBINEFUNC = cdp.btyd_combine, SERIALFUNC = cdp.btyd_serialize, DESERIALFUNC = cdp.btyd_deserialize,
	PARALLEL = SAFE);
COMMENT ON AGGREGATE cdp.gamma_gamma_fit(double precision, double precision) IS 'Fits the Gamma-Gamma spend model (Fader, Hardie and Lee 2005) to customers with repeat purchases: x and the mean value of those purchases; jsonb with p, q, gamma and the fit''s diagnostics';

CREATE FUNCTION cdp.bgnbd_p_alive(params jsonb, x double precision, t_x double precision, t double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_bgnbd_p_alive' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.bgnbd_p_alive(jsonb, double precision, double precision, double precision) IS 'BG/NBD: probability that a customer with history (x, t_x, t) is still active';
CREATE FUNCTION cdp.bgnbd_expected_purchases(params jsonb, horizon double precision, x double precision, t_x double precision, t double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_bgnbd_expected_purchases' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.bgnbd_expected_purchases(jsonb, double precision, double precision, double precision, double precision) IS 'BG/NBD: expected purchases in the next horizon (same time unit) of a customer with history (x, t_x, t)';
CREATE FUNCTION cdp.pareto_nbd_p_alive(params jsonb, x double precision, t_x double precision, t double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_pareto_p_alive' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.pareto_nbd_p_alive(jsonb, double precision, double precision, double precision) IS 'Pareto/NBD: probability that a customer with history (x, t_x, t) is still active';
CREATE FUNCTION cdp.pareto_nbd_expected_purchases(params jsonb, horizon double precision, x double precision, t_x double precision, t double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_pareto_expected_purchases' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.pareto_nbd_expected_purchases(jsonb, double precision, double precision, double precision, double precision) IS 'Pareto/NBD: expected purchases in the next horizon of a customer with history (x, t_x, t)';
CREATE FUNCTION cdp.gamma_gamma_expected_value(params jsonb, x double precision, avg_value double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_gg_expected_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.gamma_gamma_expected_value(jsonb, double precision, double precision) IS 'Gamma-Gamma: expected value of a future purchase of a customer with x repeat purchases of mean value avg_value (the population mean when x = 0)';
CREATE FUNCTION cdp.clv(params jsonb, spend_params jsonb, x double precision, t_x double precision, t double precision,
                        avg_value double precision, periods integer, period_length double precision,
                        discount_rate double precision, margin double precision DEFAULT 1)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_clv_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.clv(jsonb, jsonb, double precision, double precision, double precision, double precision, integer, double precision, double precision, double precision) IS 'Customer lifetime value: margin times the expected value of a purchase (Gamma-Gamma) times the purchases expected in each of the next periods (BG/NBD or Pareto/NBD, periods of period_length time units), discounted at discount_rate per period';

-- RFM
CREATE TABLE cdp.rfm_segments (
	segment     text    PRIMARY KEY,
	priority    integer NOT NULL UNIQUE,
	r_min       integer NOT NULL CHECK (r_min BETWEEN 1 AND 5),
	r_max       integer NOT NULL CHECK (r_max BETWEEN 1 AND 5),
	fm_min      numeric NOT NULL CHECK (fm_min BETWEEN 1 AND 5),
	fm_max      numeric NOT NULL CHECK (fm_max BETWEEN 1 AND 5),
	description text    NOT NULL,
	builtin     boolean NOT NULL DEFAULT false,
	CHECK (r_min <= r_max AND fm_min <= fm_max)
);
COMMENT ON TABLE cdp.rfm_segments IS 'Segments of the RFM scores: a profile gets the first segment, by priority, whose ranges hold its recency score r and the mean fm of its frequency and monetary scores';
COMMENT ON COLUMN cdp.rfm_segments.segment IS 'Segment name';
COMMENT ON COLUMN cdp.rfm_segments.priority IS 'Order of matching (smallest first)';
COMMENT ON COLUMN cdp.rfm_segments.r_min IS 'Lowest recency score (1-5)';
COMMENT ON COLUMN cdp.rfm_segments.r_max IS 'Highest recency score';
COMMENT ON COLUMN cdp.rfm_segments.fm_min IS 'Lowest (f + m) / 2';
COMMENT ON COLUMN cdp.rfm_segments.fm_max IS 'Highest (f + m) / 2';
COMMENT ON COLUMN cdp.rfm_segments.description IS 'What the segment means and what to do';
COMMENT ON COLUMN cdp.rfm_segments.builtin IS 'Shipped with cdp (pg_dump keeps only the rows users added)';
INSERT INTO cdp.rfm_segments VALUES
	('Champions',           1, 4, 5, 4,   5,   'Bought recently, buy often and spend the most: reward them', true),
	('Loyal',               2, 3, 5, 3,   5,   'Buy regularly and spend well: upsell, ask for reviews', true),
	('Can''t Lose Them',    3, 1, 1, 4,   5,   'Were among the best, gone for long: win them back', true),
	('At Risk',             4, 1, 2, 3,   5,   'Spent well and often, not lately: reach out before they go', true),
	('New',                 5, 5, 5, 1,   1.5, 'First purchase very recently: onboard them', true),
	('Promising',           6, 4, 4, 1,   1.5, 'Recent first purchase: build the relationship', true),
	('Potential Loyalists', 7, 4, 5, 1.5, 3,   'Recent, with some repeat purchases: offer membership', true),
	('Need Attention',      8, 3, 3, 2,   3,   'Average on every count, not lately: limited-time offers', true),
	('About to Sleep',      9, 3, 3, 1,   2,   'Below average and fading: reactivate with popular products', true),
	('Hibernating',        10, 2, 2, 1,   3,   'Few, small, long-ago purchases: low-cost reminders', true),
	('Lost',               11, 1, 1, 1,   5,   'Lowest recency: only a strong offer, or let go', true);

CREATE TABLE cdp.rfm (
	profile_id     bigint      PRIMARY KEY,
	as_of          timestamptz NOT NULL,
	first_purchase timestamptz NOT NULL,
	last_purchase  timestamptz NOT NULL,
	recency_days   numeric     NOT NULL,
	frequency      integer     NOT NULL,
	monetary       numeric     NOT NULL,
	r              smallint    NOT NULL,
	f              smallint    NOT NULL,
	m              smallint    NOT NULL,
	rfm_code       text        NOT NULL,
	segment        text
);
COMMENT ON TABLE cdp.rfm IS 'Recency, frequency and monetary value of every live profile with a purchase, scored 1-5 (5 best) against the other profiles, and its segment; filled by cdp.refresh_scores';
COMMENT ON COLUMN cdp.rfm.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.rfm.as_of IS 'Time the scores describe';
COMMENT ON COLUMN cdp.rfm.first_purchase IS 'First purchase, any channel';
COMMENT ON COLUMN cdp.rfm.last_purchase IS 'Last purchase';
COMMENT ON COLUMN cdp.rfm.recency_days IS 'Days from the last purchase to as_of';
COMMENT ON COLUMN cdp.rfm.frequency IS 'Number of purchases';
COMMENT ON COLUMN cdp.rfm.monetary IS 'Value of the purchases less returns';
COMMENT ON COLUMN cdp.rfm.r IS 'Recency score 1-5: 1 + the fifths of profiles whose last purchase is older (ties share a score)';
COMMENT ON COLUMN cdp.rfm.f IS 'Frequency score 1-5, likewise';
COMMENT ON COLUMN cdp.rfm.m IS 'Monetary score 1-5, likewise';
COMMENT ON COLUMN cdp.rfm.rfm_code IS 'r, f and m as three digits, e.g. 545';
COMMENT ON COLUMN cdp.rfm.segment IS 'First matching segment of cdp.rfm_segments (NULL if none matches)';
CREATE INDEX ON cdp.rfm (segment);

CREATE TABLE cdp.clv_models (
	model_id         bigserial   PRIMARY KEY,
	fitted_at        timestamptz NOT NULL DEFAULT now(),
	as_of            timestamptz NOT NULL,
	calibration_from timestamptz NOT NULL,
	model            jsonb       NOT NULL,
	spend_model      jsonb,
	horizon_days     integer     NOT NULL,
	annual_discount  double precision NOT NULL,
	margin           double precision NOT NULL
);
COMMENT ON TABLE cdp.clv_models IS 'Every lifetime-value model fitted by cdp.refresh_scores (time unit: days)';
COMMENT ON COLUMN cdp.clv_models.model_id IS 'Model number';
COMMENT ON COLUMN cdp.clv_models.fitted_at IS 'When it was fitted';
COMMENT ON COLUMN cdp.clv_models.as_of IS 'End of the calibration window';
COMMENT ON COLUMN cdp.clv_models.calibration_from IS 'Start of the calibration window: purchases from then to as_of were used';
COMMENT ON COLUMN cdp.clv_models.model IS 'The purchase model (cdp.bgnbd_fit or cdp.pareto_nbd_fit result)';
COMMENT ON COLUMN cdp.clv_models.spend_model IS 'The spend model (cdp.gamma_gamma_fit result)';
COMMENT ON COLUMN cdp.clv_models.horizon_days IS 'Horizon of the lifetime value';
COMMENT ON COLUMN cdp.clv_models.annual_discount IS 'Yearly discount rate';
COMMENT ON COLUMN cdp.clv_models.margin IS 'Share of revenue counted as value';

CREATE TABLE cdp.clv (
	profile_id         bigint           PRIMARY KEY,
	model_id           bigint           NOT NULL,
	x                  integer          NOT NULL,
	t_x                double precision NOT NULL,
	t                  double precision NOT NULL,
	avg_value          double precision,
	p_alive            double precision,
	expected_purchases double precision,
	expected_value     double precision,
	clv                double precision
);
COMMENT ON TABLE cdp.clv IS 'Lifetime value of every live profile that purchased in the calibration window, from the latest model of cdp.clv_models; filled by cdp.refresh_scores';
COMMENT ON COLUMN cdp.clv.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.clv.model_id IS 'Model used (cdp.clv_models)';
COMMENT ON COLUMN cdp.clv.x IS 'Repeat purchase days in the window (purchase days after the first)';
COMMENT ON COLUMN cdp.clv.t_x IS 'Days from the first to the last purchase';
COMMENT ON COLUMN cdp.clv.t IS 'Days from the first purchase to as_of';
COMMENT ON COLUMN cdp.clv.avg_value IS 'Mean value of the repeat purchase days';
COMMENT ON COLUMN cdp.clv.p_alive IS 'Probability that the customer is still active';
COMMENT ON COLUMN cdp.clv.expected_purchases IS 'Purchase days expected over the horizon';
COMMENT ON COLUMN cdp.clv.expected_value IS 'Expected value of a future purchase day (Gamma-Gamma)';
COMMENT ON COLUMN cdp.clv.clv IS 'Discounted margin expected over the horizon';

CREATE TABLE cdp.clv_validation (
	profile_id bigint           PRIMARY KEY,
	x          integer          NOT NULL,
	t_x        double precision NOT NULL,
	t          double precision NOT NULL,
	predicted  double precision NOT NULL,
	actual     integer          NOT NULL
);
COMMENT ON TABLE cdp.clv_validation IS 'Per-customer comparison of the last cdp.validate_clv run: purchase days predicted for the hold-out period against those that happened';
COMMENT ON COLUMN cdp.clv_validation.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.clv_validation.x IS 'Repeat purchase days in the calibration period';
COMMENT ON COLUMN cdp.clv_validation.t_x IS 'Days from the first to the last purchase, in calibration';
COMMENT ON COLUMN cdp.clv_validation.t IS 'Days from the first purchase to the end of calibration';
COMMENT ON COLUMN cdp.clv_validation.predicted IS 'Purchase days the model expected in the hold-out period';
COMMENT ON COLUMN cdp.clv_validation.actual IS 'Purchase days in the hold-out period';

SELECT pg_catalog.pg_extension_config_dump('cdp.rfm_segments', 'WHERE NOT builtin');

-- Purchase days of every live profile in [from_time, to_time]: one row per
-- profile and day with the day's net value (purchases less returns).
CREATE FUNCTION cdp.purchase_days(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (profile_id bigint, day date, purchases integer, value numeric, first_at timestamptz, last_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT i.profile_id, (e.occurred_at AT TIME ZONE 'UTC')::date,
	       count(*) FILTER (WHERE e.type = 'purchase')::integer, coalesce(sum(e.amount), 0),
	       min(e.occurred_at) FILTER (WHERE e.type = 'purchase'), max(e.occurred_at) FILTER (WHERE e.type = 'purchase')
	FROM cdp.events e
	JOIN cdp.event_anchors a ON a.event_id = e.event_id
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	WHERE e.type IN ('purchase', 'return') AND e.occurred_at >= from_time AND e.occurred_at <= to_time
	  AND a.occurred_at >= from_time AND a.occurred_at <= to_time
	GROUP BY 1, 2
$$;
COMMENT ON FUNCTION cdp.purchase_days(timestamptz, timestamptz) IS 'Purchases and returns of every live profile between two times, one row per profile and day (UTC): purchase count, net value, first and last purchase';

-- (x, t_x, t, avg_value) of every profile with a purchase day in a window
CREATE FUNCTION cdp.purchase_history(from_time timestamptz, to_time timestamptz, days regclass DEFAULT NULL)
RETURNS TABLE (profile_id bigint, x integer, t_x double precision, t double precision, avg_value double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	first_day date := (from_time AT TIME ZONE 'UTC')::date;
	last_day  date := (to_time AT TIME ZONE 'UTC')::date;
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT d.profile_id, (count(*) - 1)::integer,
		        (max(d.day) - min(d.day))::double precision,
		        (extract(epoch FROM $2 - (min(d.day)::timestamp AT TIME ZONE ''UTC'')) / 86400.0)::double precision,
		        CASE WHEN count(*) > 1
		             THEN greatest(0, (sum(d.value) - (array_agg(d.value ORDER BY d.day))[1]) / (count(*) - 1))::double precision END
		 FROM %s d
		 WHERE d.purchases > 0 AND d.day BETWEEN $3 AND $4
		 GROUP BY 1',
		coalesce(days::text, 'cdp.purchase_days($1, $2)'))
	USING first_day::timestamp AT TIME ZONE 'UTC', to_time, first_day, last_day;
END
$$;
COMMENT ON FUNCTION cdp.purchase_history(timestamptz, timestamptz, regclass) IS 'The lifetime-value models'' view of each profile with a purchase day in a window (days from that of from_time to to_time), in days: x repeat purchase days, t_x days from the first to the last, t days from the first to to_time, and the mean value of the repeat days; read from a table of cdp.purchase_days rows when days is given';

CREATE FUNCTION cdp.refresh_scores(as_of timestamptz DEFAULT now(),
                                   calibration interval DEFAULT '1 year',
                                   horizon interval DEFAULT '1 year',
                                   model text DEFAULT 'bgnbd',
                                   annual_discount double precision DEFAULT 0.1,
                                   margin double precision DEFAULT 1,
                                   OUT rfm_profiles bigint, OUT clv_profiles bigint, OUT model_id bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fit       jsonb;
	spend     jsonb;
	from_time timestamptz := as_of - calibration;
	months    integer;
BEGIN
	IF as_of IS NULL OR calibration IS NULL OR horizon IS NULL THEN
		RAISE EXCEPTION 'as_of, calibration and horizon must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF model IS NULL OR model NOT IN ('bgnbd', 'pareto_nbd') THEN
		RAISE EXCEPTION 'unknown lifetime-value model "%"', model
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use bgnbd or pareto_nbd.';
	END IF;
	IF calibration <= interval '0' OR horizon < interval '0' THEN
		RAISE EXCEPTION 'calibration must be positive and horizon not negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF annual_discount IS NULL OR annual_discount <= -1 OR margin IS NULL OR margin < 0 THEN
		RAISE EXCEPTION 'annual_discount must be above -1 and margin at least 0'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- one pass over the purchases up to as_of, for RFM and the models
	CREATE TEMP TABLE cdp_days ON COMMIT DROP AS
		SELECT * FROM cdp.purchase_days('-infinity', refresh_scores.as_of);

	-- RFM over every purchase up to as_of
	TRUNCATE cdp.rfm;
	INSERT INTO cdp.rfm (profile_id, as_of, first_purchase, last_purchase, recency_days, frequency, monetary, r, f, m, rfm_code, segment)
	WITH p AS (
		SELECT d.profile_id, min(d.first_at) AS first_purchase, max(d.last_at) AS last_purchase,
		       sum(d.purchases) AS frequency, sum(d.value) AS monetary
		FROM pg_temp.cdp_days d
		GROUP BY 1 HAVING sum(d.purchases) > 0
	), s AS (
		SELECT p.profile_id, p.first_purchase, p.last_purchase,
		       round((extract(epoch FROM refresh_scores.as_of - p.last_purchase) / 86400.0)::numeric, 2) AS recency_days,
		       p.frequency::integer AS frequency, p.monetary,
		       count(*) OVER () AS n,
		       rank() OVER (ORDER BY p.last_purchase) AS rr,
		       rank() OVER (ORDER BY p.frequency) AS fr,
		       rank() OVER (ORDER BY p.monetary) AS mr
		FROM p
	), sc AS (
		SELECT s.*, (1 + (5 * (rr - 1)) / n)::smallint AS r, (1 + (5 * (fr - 1)) / n)::smallint AS f,
		       (1 + (5 * (mr - 1)) / n)::smallint AS m
		FROM s
	)
	SELECT sc.profile_id, refresh_scores.as_of, sc.first_purchase, sc.last_purchase, sc.recency_days, sc.frequency,
	       sc.monetary, sc.r, sc.f, sc.m, sc.r::text || sc.f::text || sc.m::text,
	       (SELECT g.segment FROM cdp.rfm_segments g
	        WHERE sc.r BETWEEN g.r_min AND g.r_max AND (sc.f + sc.m) / 2.0 BETWEEN g.fm_min AND g.fm_max
	        ORDER BY g.priority LIMIT 1)
	FROM sc;
	GET DIAGNOSTICS rfm_profiles = ROW_COUNT;

	-- lifetime value: fit on the calibration window, apply to its customers
	TRUNCATE cdp.clv;
	clv_profiles := 0;
	CREATE TEMP TABLE cdp_history ON COMMIT DROP AS
		SELECT * FROM cdp.purchase_history(from_time, refresh_scores.as_of, 'pg_temp.cdp_days');
	DROP TABLE cdp_days;
	IF model = 'bgnbd' THEN
		SELECT cdp.bgnbd_fit(h.x, h.t_x, h.t) INTO fit FROM cdp_history h;
	ELSE
		SELECT cdp.pareto_nbd_fit(h.x, h.t_x, h.t) INTO fit FROM cdp_history h;
	END IF;
	SELECT cdp.gamma_gamma_fit(h.x, h.avg_value) INTO spend FROM cdp_history h;
	-- the horizon in periods of about a month, discounted monthly
	months := ceil(extract(epoch FROM horizon) / 86400.0 / 30.0)::integer;
	INSERT INTO cdp.clv_models (as_of, calibration_from, model, spend_model, horizon_days, annual_discount, margin)
	VALUES (refresh_scores.as_of, from_time, coalesce(fit, '{"status": "no customers"}'), spend,
	        round(extract(epoch FROM horizon) / 86400.0)::integer, annual_discount, margin)
	RETURNING clv_models.model_id INTO refresh_scores.model_id;
	IF fit IS NULL OR fit->>'status' <> 'ok' THEN
		RAISE WARNING 'lifetime values not computed: the % model could not be fitted', model
			USING DETAIL = coalesce(fit->>'message', 'No profile purchased in the calibration window.'),
			      HINT = 'See cdp.clv_models; a longer calibration window gives the model more to learn from.';
		DROP TABLE cdp_history;
		RETURN;
	END IF;
	INSERT INTO cdp.clv (profile_id, model_id, x, t_x, t, avg_value, p_alive, expected_purchases, expected_value, clv)
	SELECT h.profile_id, refresh_scores.model_id, h.x, h.t_x, h.t, h.avg_value,
	       CASE WHEN model = 'bgnbd' THEN cdp.bgnbd_p_alive(fit, h.x, h.t_x, h.t)
	            ELSE cdp.pareto_nbd_p_alive(fit, h.x, h.t_x, h.t) END,
	       CASE WHEN model = 'bgnbd' THEN cdp.bgnbd_expected_purchases(fit, extract(epoch FROM horizon) / 86400.0, h.x, h.t_x, h.t)
	            ELSE cdp.pareto_nbd_expected_purchases(fit, extract(epoch FROM horizon) / 86400.0, h.x, h.t_x, h.t) END,
	       CASE WHEN spend->>'status' = 'ok' THEN cdp.gamma_gamma_expected_value(spend, h.x, coalesce(h.avg_value, 0)) END,
	       CASE WHEN spend->>'status' = 'ok'
	            THEN cdp.clv(fit, spend, h.x, h.t_x, h.t, coalesce(h.avg_value, 0), months,
	                         extract(epoch FROM horizon) / 86400.0 / greatest(months, 1),
	                         power(1 + annual_discount, 1.0 / 12) - 1, margin) END
	FROM cdp_history h;
	GET DIAGNOSTICS clv_profiles = ROW_COUNT;
	IF spend IS NULL OR spend->>'status' <> 'ok' THEN
		RAISE WARNING 'expected values and lifetime values not computed: the Gamma-Gamma model could not be fitted'
			USING DETAIL = coalesce(spend->>'message', 'No profile made a repeat purchase in the calibration window.');
	END IF;
	DROP TABLE cdp_history;
END
$$;
COMMENT ON FUNCTION cdp.refresh_scores(timestamptz, interval, interval, text, double precision, double precision) IS 'Recomputes cdp.rfm (every purchase up to as_of) and cdp.clv (a BG/NBD or Pareto/NBD model and a Gamma-Gamma model fitted on the calibration window before as_of, stored in cdp.clv_models, applied over the horizon); returns the profiles scored and the model id';

CREATE FUNCTION cdp.validate_clv(calibration_end timestamptz, holdout_end timestamptz,
                                 calibration interval DEFAULT '1 year', model text DEFAULT 'bgnbd',
                                 OUT customers bigint, OUT actual bigint, OUT predicted double precision,
                                 OUT aggregate_error double precision, OUT mae double precision,
                                 OUT rmse double precision, OUT correlation double precision, OUT params jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	horizon double precision;
BEGIN
	IF calibration_end IS NULL OR holdout_end IS NULL OR holdout_end <= calibration_end THEN
		RAISE EXCEPTION 'the hold-out period must end after the calibration period'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Call cdp.validate_clv(calibration_end, holdout_end) with holdout_end > calibration_end.';
	END IF;
	IF model IS NULL OR model NOT IN ('bgnbd', 'pareto_nbd') THEN
		RAISE EXCEPTION 'unknown lifetime-value model "%"', model
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use bgnbd or pareto_nbd.';
	END IF;
	horizon := extract(epoch FROM holdout_end - calibration_end) / 86400.0;
	CREATE TEMP TABLE cdp_history ON COMMIT DROP AS
		SELECT * FROM cdp.purchase_history(calibration_end - calibration, calibration_end);
	IF model = 'bgnbd' THEN
		SELECT cdp.bgnbd_fit(h.x, h.t_x, h.t) INTO params FROM cdp_history h;
	ELSE
		SELECT cdp.pareto_nbd_fit(h.x, h.t_x, h.t) INTO params FROM cdp_history h;
	END IF;
	IF params IS NULL OR params->>'status' <> 'ok' THEN
		DROP TABLE cdp_history;
		RAISE EXCEPTION 'the % model could not be fitted on the calibration period', model
			USING ERRCODE = 'data_exception',
			      DETAIL = coalesce(params->>'message', 'No profile purchased in the calibration period.');
	END IF;
	TRUNCATE cdp.clv_validation;
	INSERT INTO cdp.clv_validation (profile_id, x, t_x, t, predicted, actual)
	SELECT h.profile_id, h.x, h.t_x, h.t,
	       CASE WHEN model = 'bgnbd' THEN cdp.bgnbd_expected_purchases(params, horizon, h.x, h.t_x, h.t)
	            ELSE cdp.pareto_nbd_expected_purchases(params, horizon, h.x, h.t_x, h.t) END,
	       coalesce(a.days, 0)
	FROM cdp_history h
	LEFT JOIN (SELECT d.profile_id, count(*)::integer AS days
	           FROM cdp.purchase_days(calibration_end + interval '1 microsecond', holdout_end) d
	           WHERE d.purchases > 0 GROUP BY 1) a USING (profile_id);
	DROP TABLE cdp_history;
	SELECT count(*), sum(v.actual), sum(v.predicted),
	       (sum(v.predicted) - sum(v.actual)) / nullif(sum(v.actual), 0),
	       avg(abs(v.predicted - v.actual)), sqrt(avg((v.predicted - v.actual) ^ 2)), corr(v.predicted, v.actual)
	INTO customers, actual, predicted, aggregate_error, mae, rmse, correlation
	FROM cdp.clv_validation v;
END
$$;
COMMENT ON FUNCTION cdp.validate_clv(timestamptz, timestamptz, interval, text) IS 'Fits a purchase model on the calibration period ending at calibration_end and compares, for its customers, the purchase days it predicts up to holdout_end with those that happened: totals, aggregate error (relative), mean absolute error, RMSE and correlation per customer (details in cdp.clv_validation)';

-- ---------------------------------------------------------------------------
-- Views across areas, defined last: the single customer view.
-- ---------------------------------------------------------------------------

-- The single customer view.  Set-based (hash joins over the whole tables),
-- as BI tools read it; an application that looks up one profile's activity
-- often should add the index on cdp.event_anchors (anchor_id).
CREATE VIEW cdp.customer_360 AS
WITH ids AS (
	SELECT profile_id, jsonb_object_agg(kind, vals ORDER BY kind) AS identifiers
	FROM (SELECT profile_id, kind, jsonb_agg(value ORDER BY value) AS vals
	      FROM cdp.identifiers GROUP BY profile_id, kind) k
	GROUP BY profile_id),
act AS (
	SELECT i.profile_id,
	       min(e.occurred_at) AS first_seen,
	       max(e.occurred_at) AS last_seen,
	       count(*) AS events,
	       array_agg(DISTINCT e.channel ORDER BY e.channel) AS channels,
	       count(*) FILTER (WHERE e.type = 'purchase') AS orders,
	       coalesce(sum(e.amount) FILTER (WHERE e.type IN ('purchase', 'return')), 0) AS revenue
	FROM cdp.event_anchors a
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	JOIN cdp.events e ON e.event_id = a.event_id AND e.occurred_at = a.occurred_at
	GROUP BY i.profile_id),
traits AS (
	SELECT profile_id, jsonb_object_agg(trait, value ORDER BY trait) AS traits
	FROM cdp.profile_traits GROUP BY profile_id),
breaks AS (
	SELECT profile_id, count(*) AS open_breaks,
	       jsonb_agg(jsonb_build_object('funnel', funnel_id, 'step', break_step, 'channel', channel,
	                                    'broken_at', broken_at, 'context', context) ORDER BY broken_at) AS breaks
	FROM cdp.journey_breaks WHERE status = 'open' GROUP BY profile_id)
SELECT p.profile_id, p.created_at, ids.identifiers, traits.traits,
       act.first_seen, act.last_seen,
       coalesce(act.events, 0) AS events, coalesce(act.channels, '{}') AS channels,
       coalesce(act.orders, 0) AS orders, coalesce(act.revenue, 0) AS revenue,
       rfm.segment AS rfm_segment, rfm.rfm_code, clv.p_alive, clv.expected_purchases, clv.clv,
       coalesce(breaks.open_breaks, 0) AS open_breaks, breaks.breaks AS open_journey_breaks,
       acq.first_source, acq.first_medium, acq.last_source, acq.last_medium
FROM cdp.profiles p
JOIN ids USING (profile_id)
LEFT JOIN act USING (profile_id)
LEFT JOIN traits USING (profile_id)
LEFT JOIN cdp.rfm rfm USING (profile_id)
LEFT JOIN cdp.clv clv USING (profile_id)
LEFT JOIN breaks USING (profile_id)
LEFT JOIN cdp.profile_acquisition acq USING (profile_id)
WHERE p.merged_into IS NULL;
COMMENT ON VIEW cdp.customer_360 IS 'The single customer view: one row per live profile with its identifiers, traits, activity, orders and revenue across every channel, its scores, open journey breaks and acquisition source';
COMMENT ON COLUMN cdp.customer_360.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.customer_360.created_at IS 'When the profile was made';
COMMENT ON COLUMN cdp.customer_360.identifiers IS 'Its identifiers by kind: {"email": ["ann@x.org"], "cookie": [...], ...}';
COMMENT ON COLUMN cdp.customer_360.traits IS 'Golden record: its traits as kept by cdp.trait_rules';
COMMENT ON COLUMN cdp.customer_360.first_seen IS 'First event of the profile';
COMMENT ON COLUMN cdp.customer_360.last_seen IS 'Last event of the profile';
COMMENT ON COLUMN cdp.customer_360.events IS 'Number of events';
COMMENT ON COLUMN cdp.customer_360.channels IS 'Channels it used';
COMMENT ON COLUMN cdp.customer_360.orders IS 'Number of purchases, on any channel';
COMMENT ON COLUMN cdp.customer_360.revenue IS 'Purchases less returns';
COMMENT ON COLUMN cdp.customer_360.rfm_segment IS 'RFM segment at the last cdp.refresh_scores (NULL: no purchase then)';
COMMENT ON COLUMN cdp.customer_360.rfm_code IS 'Recency, frequency and monetary scores (1-5 each) at the last refresh';
COMMENT ON COLUMN cdp.customer_360.p_alive IS 'Probability that the customer is still active (lifetime-value model of the last refresh)';
COMMENT ON COLUMN cdp.customer_360.expected_purchases IS 'Purchase days expected over the horizon of the last refresh';
COMMENT ON COLUMN cdp.customer_360.clv IS 'Lifetime value over the horizon of the last refresh';
COMMENT ON COLUMN cdp.customer_360.open_breaks IS 'Journeys broken and still open at the last cdp.detect_journey_breaks';
COMMENT ON COLUMN cdp.customer_360.open_journey_breaks IS 'Those breaks: funnel, step reached, channel, when, and their context (products, cart value)';
COMMENT ON COLUMN cdp.customer_360.first_source IS 'First-touch acquisition source (utm_source or referrer host; cdp.profile_acquisition)';
COMMENT ON COLUMN cdp.customer_360.first_medium IS 'First-touch medium';
COMMENT ON COLUMN cdp.customer_360.last_source IS 'Last-touch acquisition source';
COMMENT ON COLUMN cdp.customer_360.last_medium IS 'Last-touch medium';
