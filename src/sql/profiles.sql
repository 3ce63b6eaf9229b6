-- ---------------------------------------------------------------------------
-- The profile store (src/profile_store.c): facts about each customer kept
-- from the stitched events, so that one customer is read in milliseconds
-- and cdp.customer_360 never scans the event store.
--
-- Facts are kept per anchor identifier (cdp.event_anchors), not per
-- profile: an event never changes anchor, so merges, unmerges and rebuilds
-- of the identity graph rewrite nothing here, and a profile's facts are its
-- anchors' facts combined when read (cdp.profile_store).  Every fact
-- combines exactly: counts and sums add, first and last take the earliest
-- and latest by (occurred_at, event_id), bounded lists keep the latest
-- entries of each anchor, which hold the latest entries of any set of
-- anchors.  cdp.sync() (or the background worker) folds in the batches
-- stitched since the last run; cdp.rebuild_profile_store() recomputes
-- everything from the events and gives the same store.
-- ---------------------------------------------------------------------------

CREATE TABLE cdp.anchor_activity (
	anchor_id     bigint      NOT NULL,
	channel       text        NOT NULL,
	type          text        NOT NULL,
	events        bigint      NOT NULL,
	amount        numeric     NOT NULL,
	first_at      timestamptz NOT NULL,
	last_at       timestamptz NOT NULL,
	last_event_id bigint      NOT NULL,
	last_amount   numeric,
	PRIMARY KEY (anchor_id, channel, type)
);
COMMENT ON TABLE cdp.anchor_activity IS 'Profile store: per anchor identifier, channel and event type, its events (internal; read cdp.profile_store)';
COMMENT ON COLUMN cdp.anchor_activity.anchor_id IS 'Anchor identifier (cdp.identifiers); its profile is the identifier''s';
COMMENT ON COLUMN cdp.anchor_activity.channel IS 'Channel';
COMMENT ON COLUMN cdp.anchor_activity.type IS 'Event type';
COMMENT ON COLUMN cdp.anchor_activity.events IS 'Events';
COMMENT ON COLUMN cdp.anchor_activity.amount IS 'Sum of their amounts (none: 0)';
COMMENT ON COLUMN cdp.anchor_activity.first_at IS 'occurred_at of the first';
COMMENT ON COLUMN cdp.anchor_activity.last_at IS 'occurred_at of the last (latest by occurred_at, then event_id)';
COMMENT ON COLUMN cdp.anchor_activity.last_event_id IS 'event_id of the last';
COMMENT ON COLUMN cdp.anchor_activity.last_amount IS 'amount of the last';

CREATE TABLE cdp.anchor_products (
	anchor_id     bigint      NOT NULL,
	action        text        NOT NULL CHECK (action IN ('viewed', 'carted', 'bought')),
	product_id    text        NOT NULL,
	last_at       timestamptz NOT NULL,
	last_event_id bigint      NOT NULL,
	PRIMARY KEY (anchor_id, action, product_id)
);
COMMENT ON TABLE cdp.anchor_products IS 'Profile store: per anchor identifier, the 20 products last viewed (product_view), carted (add_to_cart) and bought (purchase) (internal; read cdp.profile_store)';
COMMENT ON COLUMN cdp.anchor_products.anchor_id IS 'Anchor identifier';
COMMENT ON COLUMN cdp.anchor_products.action IS 'viewed, carted or bought';
COMMENT ON COLUMN cdp.anchor_products.product_id IS 'properties.product_id';
COMMENT ON COLUMN cdp.anchor_products.last_at IS 'When it last happened';
COMMENT ON COLUMN cdp.anchor_products.last_event_id IS 'The event';

CREATE TABLE cdp.anchor_interest (
	anchor_id bigint           NOT NULL,
	category  text             NOT NULL,
	log2_mass double precision NOT NULL,
	events    bigint           NOT NULL,
	last_at   timestamptz      NOT NULL,
	PRIMARY KEY (anchor_id, category)
);
COMMENT ON TABLE cdp.anchor_interest IS 'Profile store: per anchor identifier and product category (properties.category), its interest as in cdp.interest with a 30-day half-life (internal; read cdp.profile_store)';
COMMENT ON COLUMN cdp.anchor_interest.anchor_id IS 'Anchor identifier';
COMMENT ON COLUMN cdp.anchor_interest.category IS 'Product category';
COMMENT ON COLUMN cdp.anchor_interest.log2_mass IS 'log2 of the sum over its views (weight 1), wish-list additions (2) and cart additions (3) of weight * 2^(epoch of occurred_at / 30 days); the interest at time T is 2^(log2_mass - epoch of T / 30 days)';
COMMENT ON COLUMN cdp.anchor_interest.events IS 'Events counted';
COMMENT ON COLUMN cdp.anchor_interest.last_at IS 'Last of them';

CREATE TABLE cdp.anchor_traits (
	anchor_id     bigint      NOT NULL,
	trait         text        NOT NULL,
	value         jsonb       NOT NULL,
	source        text,
	times_seen    bigint      NOT NULL,
	last_at       timestamptz NOT NULL,
	last_event_id bigint      NOT NULL,
	UNIQUE NULLS NOT DISTINCT (anchor_id, trait, value, source)
);
COMMENT ON TABLE cdp.anchor_traits IS 'Profile store: per anchor identifier, each trait value sent in properties.traits by each source; cdp.trait_rules choose among them when read (internal; read cdp.profile_store)';
COMMENT ON COLUMN cdp.anchor_traits.anchor_id IS 'Anchor identifier';
COMMENT ON COLUMN cdp.anchor_traits.trait IS 'Trait name';
COMMENT ON COLUMN cdp.anchor_traits.value IS 'Value sent (JSON)';
COMMENT ON COLUMN cdp.anchor_traits.source IS 'Source that sent it';
COMMENT ON COLUMN cdp.anchor_traits.times_seen IS 'Events that sent it';
COMMENT ON COLUMN cdp.anchor_traits.last_at IS 'When it was last sent';
COMMENT ON COLUMN cdp.anchor_traits.last_event_id IS 'The event';

CREATE TABLE cdp.anchor_touches (
	anchor_id      bigint      PRIMARY KEY,
	touches        bigint      NOT NULL,
	first_at       timestamptz NOT NULL,
	first_event_id bigint      NOT NULL,
	first_channel  text        NOT NULL,
	first_source   text,
	first_medium   text,
	first_campaign text,
	first_referrer text,
	last_at        timestamptz NOT NULL,
	last_event_id  bigint      NOT NULL,
	last_channel   text        NOT NULL,
	last_source    text,
	last_medium    text,
	last_campaign  text,
	last_referrer  text
);
COMMENT ON TABLE cdp.anchor_touches IS 'Profile store: per anchor identifier, its first and last events with a utm_source or a referrer, as in cdp.profile_acquisition (internal; read cdp.profile_store)';
COMMENT ON COLUMN cdp.anchor_touches.anchor_id IS 'Anchor identifier';
COMMENT ON COLUMN cdp.anchor_touches.touches IS 'Events with a utm_source or a referrer';
COMMENT ON COLUMN cdp.anchor_touches.first_at IS 'When the first touch happened';
COMMENT ON COLUMN cdp.anchor_touches.first_event_id IS 'Its event';
COMMENT ON COLUMN cdp.anchor_touches.first_channel IS 'Its channel';
COMMENT ON COLUMN cdp.anchor_touches.first_source IS 'Its utm_source, or its referrer''s host';
COMMENT ON COLUMN cdp.anchor_touches.first_medium IS 'Its utm_medium, or referral';
COMMENT ON COLUMN cdp.anchor_touches.first_campaign IS 'Its utm_campaign';
COMMENT ON COLUMN cdp.anchor_touches.first_referrer IS 'Its referrer';
COMMENT ON COLUMN cdp.anchor_touches.last_at IS 'When the last touch happened';
COMMENT ON COLUMN cdp.anchor_touches.last_event_id IS 'Its event';
COMMENT ON COLUMN cdp.anchor_touches.last_channel IS 'Its channel';
COMMENT ON COLUMN cdp.anchor_touches.last_source IS 'Its utm_source, or its referrer''s host';
COMMENT ON COLUMN cdp.anchor_touches.last_medium IS 'Its utm_medium, or referral';
COMMENT ON COLUMN cdp.anchor_touches.last_campaign IS 'Its utm_campaign';
COMMENT ON COLUMN cdp.anchor_touches.last_referrer IS 'Its referrer';

CREATE TABLE cdp.anchor_recent_events (
	anchor_id   bigint      NOT NULL,
	occurred_at timestamptz NOT NULL,
	event_id    bigint      NOT NULL,
	channel     text        NOT NULL,
	type        text        NOT NULL,
	amount      numeric,
	source      text,
	properties  jsonb,
	PRIMARY KEY (anchor_id, occurred_at, event_id)
);
COMMENT ON TABLE cdp.anchor_recent_events IS 'Profile store: per anchor identifier, a copy of its 20 latest events (internal; cdp.profile reads it)';
COMMENT ON COLUMN cdp.anchor_recent_events.anchor_id IS 'Anchor identifier';
COMMENT ON COLUMN cdp.anchor_recent_events.occurred_at IS 'When the event occurred';
COMMENT ON COLUMN cdp.anchor_recent_events.event_id IS 'Event';
COMMENT ON COLUMN cdp.anchor_recent_events.channel IS 'Its channel';
COMMENT ON COLUMN cdp.anchor_recent_events.type IS 'Its type';
COMMENT ON COLUMN cdp.anchor_recent_events.amount IS 'Its amount';
COMMENT ON COLUMN cdp.anchor_recent_events.source IS 'Its source';
COMMENT ON COLUMN cdp.anchor_recent_events.properties IS 'Its properties';

CREATE TABLE cdp.profile_store_progress (
	singleton     boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
	last_batch_id bigint      NOT NULL,
	needs_full    boolean     NOT NULL DEFAULT false,
	synced_at     timestamptz,
	rebuilt_at    timestamptz
);
COMMENT ON TABLE cdp.profile_store_progress IS 'How far the profile store is (one row, written in the same transaction as the facts; none yet: nothing folded in)';
COMMENT ON COLUMN cdp.profile_store_progress.singleton IS 'Always true: there is one row';
COMMENT ON COLUMN cdp.profile_store_progress.last_batch_id IS 'Last cdp.stitch_batches batch whose events are in the store';
COMMENT ON COLUMN cdp.profile_store_progress.needs_full IS 'Events were deleted (or partitions dropped): the next cdp.sync() rebuilds the store';
COMMENT ON COLUMN cdp.profile_store_progress.synced_at IS 'When the store last took in new events (transaction time; NULL: never)';
COMMENT ON COLUMN cdp.profile_store_progress.rebuilt_at IS 'When it was last recomputed from every event';

SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_activity', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_products', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_interest', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_traits', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_touches', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.anchor_recent_events', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_store_progress', '');

CREATE FUNCTION cdp.sync(max_events bigint DEFAULT NULL,
	OUT batches bigint, OUT events bigint, OUT rebuilt boolean, OUT pending_events bigint)
	AS 'MODULE_PATHNAME', 'cdp_sync' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cdp.sync(bigint) IS 'Stitches the events that bulk loads left queued for the background worker (cdp.stitch_queued), then folds the events stitched since the last run into the profile store, in the calling transaction (waits for a run in progress); with max_events, stops after the batches that hold that many events; rebuilds the store when events were deleted; returns what it did and the events still pending';

CREATE FUNCTION cdp.rebuild_profile_store(OUT anchors bigint, OUT events bigint)
	AS 'MODULE_PATHNAME', 'cdp_rebuild_profile_store' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.rebuild_profile_store() IS 'Recomputes the profile store from every stitched event; gives the store that incremental runs keep';
