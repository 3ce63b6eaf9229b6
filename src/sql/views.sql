
-- ---------------------------------------------------------------------------
-- Views across areas, defined last: the single customer view.
-- ---------------------------------------------------------------------------

-- The profile store as read: one row per live profile, its anchors' facts
-- (src/sql/profiles.sql) combined.  Each part is a subquery grouped by
-- profile, so that a filter on profile_id reaches the store's indexes (one
-- customer in milliseconds) and a query that needs no fact skips it.
CREATE VIEW cdp.profile_store AS
SELECT p.profile_id, p.created_at, tot.first_seen, tot.last_seen, coalesce(tot.events, 0) AS events,
       coalesce(ch.channels, '{}') AS channels, ch.by_channel, cat.by_category,
       coalesce(tot.orders, 0) AS orders, coalesce(tot.revenue, 0) AS revenue,
       tot.last_purchase_at, tot.last_purchase_channel, tot.last_purchase_amount,
       prod.products, intr.interest, tr.traits,
       ft.first_source, ft.first_medium, ft.first_campaign, ft.first_channel, ft.first_touch_at,
       lt.last_source, lt.last_medium, lt.last_campaign, lt.last_channel, lt.last_touch_at, ft.touches
FROM cdp.profiles p
LEFT JOIN (
	SELECT profile_id, pg_catalog.min(first_at) AS first_seen, pg_catalog.max(last_at) AS last_seen,
	       pg_catalog.sum(events)::bigint AS events,
	       pg_catalog.sum(events) FILTER (WHERE type = 'purchase')::bigint AS orders,
	       pg_catalog.sum(amount) FILTER (WHERE type IN ('purchase', 'return')) AS revenue,
	       (pg_catalog.array_agg(last_at ORDER BY last_at DESC, last_event_id DESC) FILTER (WHERE type = 'purchase'))[1] AS last_purchase_at,
	       (pg_catalog.array_agg(channel ORDER BY last_at DESC, last_event_id DESC) FILTER (WHERE type = 'purchase'))[1] AS last_purchase_channel,
	       (pg_catalog.array_agg(last_amount ORDER BY last_at DESC, last_event_id DESC) FILTER (WHERE type = 'purchase'))[1] AS last_purchase_amount
	FROM (SELECT i.profile_id, x.* FROM cdp.identifiers i JOIN cdp.anchor_activity x ON x.anchor_id = i.identifier_id) a
	GROUP BY profile_id) tot USING (profile_id)
LEFT JOIN (
	SELECT profile_id, pg_catalog.array_agg(channel ORDER BY channel) AS channels,
	       pg_catalog.jsonb_object_agg(channel, pg_catalog.jsonb_build_object('events', events, 'last_at', last_at)) AS by_channel
	FROM (SELECT i.profile_id, x.channel, pg_catalog.sum(x.events) AS events, pg_catalog.max(x.last_at) AS last_at
	      FROM cdp.identifiers i JOIN cdp.anchor_activity x ON x.anchor_id = i.identifier_id
	      GROUP BY i.profile_id, x.channel) c
	GROUP BY profile_id) ch USING (profile_id)
LEFT JOIN (
	SELECT profile_id,
	       pg_catalog.jsonb_object_agg(category, pg_catalog.jsonb_build_object('events', events, 'last_at', last_at)) AS by_category
	FROM (SELECT i.profile_id, coalesce(t.category, 'other') AS category, pg_catalog.sum(x.events) AS events,
	             pg_catalog.max(x.last_at) AS last_at
	      FROM cdp.identifiers i JOIN cdp.anchor_activity x ON x.anchor_id = i.identifier_id
	      LEFT JOIN cdp.event_types t ON t.type = x.type
	      GROUP BY 1, 2) c
	GROUP BY profile_id) cat USING (profile_id)
LEFT JOIN (
	SELECT profile_id, pg_catalog.jsonb_object_agg(action, items) AS products
	FROM (SELECT profile_id, action,
	             pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('product_id', product_id, 'at', last_at)
	                                  ORDER BY last_at DESC, last_event_id DESC) AS items
	      FROM (SELECT d.*, pg_catalog.row_number() OVER (PARTITION BY profile_id, action
	                                                      ORDER BY last_at DESC, last_event_id DESC) AS rk
	            FROM (SELECT DISTINCT ON (i.profile_id, x.action, x.product_id)
	                         i.profile_id, x.action, x.product_id, x.last_at, x.last_event_id
	                  FROM cdp.identifiers i JOIN cdp.anchor_products x ON x.anchor_id = i.identifier_id
	                  ORDER BY i.profile_id, x.action, x.product_id, x.last_at DESC, x.last_event_id DESC) d) k
	      WHERE rk <= 20
	      GROUP BY profile_id, action) a
	GROUP BY profile_id) prod USING (profile_id)
LEFT JOIN (
	SELECT profile_id, pg_catalog.jsonb_object_agg(category, score) AS interest
	FROM (SELECT i.profile_id, x.category,
	             pg_catalog.round(pg_catalog.sum(pg_catalog.power(2::float8, GREATEST(x.log2_mass
	                 - EXTRACT(epoch FROM pg_catalog.now())::float8 / 2592000, -1000)))::numeric, 6) AS score
	      FROM cdp.identifiers i JOIN cdp.anchor_interest x ON x.anchor_id = i.identifier_id
	      GROUP BY i.profile_id, x.category) c
	GROUP BY profile_id) intr USING (profile_id)
LEFT JOIN (
	SELECT profile_id, pg_catalog.jsonb_object_agg(trait, value ORDER BY trait) AS traits
	FROM (SELECT DISTINCT ON (profile_id, trait) profile_id, trait, value
	      FROM (SELECT i.profile_id, x.trait, x.value, x.last_at, x.last_event_id,
	                   coalesce(r.method, 'most_recent') AS method,
	                   pg_catalog.sum(x.times_seen) OVER (PARTITION BY i.profile_id, x.trait, x.value) AS frequency,
	                   coalesce(pg_catalog.array_position(r.sources, x.source), 2147483647) AS source_rank
	            FROM cdp.identifiers i
	            JOIN cdp.anchor_traits x ON x.anchor_id = i.identifier_id
	            LEFT JOIN cdp.trait_rules r ON r.trait = x.trait) o
	      ORDER BY profile_id, trait,
	               CASE method WHEN 'most_frequent' THEN -frequency WHEN 'source_priority' THEN source_rank ELSE 0 END,
	               last_at DESC, last_event_id DESC) k
	GROUP BY profile_id) tr USING (profile_id)
LEFT JOIN (
	SELECT DISTINCT ON (i.profile_id) i.profile_id, x.first_source, x.first_medium, x.first_campaign,
	       x.first_channel, x.first_at AS first_touch_at,
	       pg_catalog.sum(x.touches) OVER (PARTITION BY i.profile_id)::bigint AS touches
	FROM cdp.identifiers i JOIN cdp.anchor_touches x ON x.anchor_id = i.identifier_id
	ORDER BY i.profile_id, x.first_at, x.first_event_id) ft USING (profile_id)
LEFT JOIN (
	SELECT DISTINCT ON (i.profile_id) i.profile_id, x.last_source, x.last_medium, x.last_campaign,
	       x.last_channel, x.last_at AS last_touch_at
	FROM cdp.identifiers i JOIN cdp.anchor_touches x ON x.anchor_id = i.identifier_id
	ORDER BY i.profile_id, x.last_at DESC, x.last_event_id DESC) lt USING (profile_id)
WHERE p.merged_into IS NULL;
COMMENT ON VIEW cdp.profile_store IS 'The profile store: per live profile, the facts of its events as of the last cdp.sync (the background worker keeps it within a second): activity per channel and category, orders and revenue, last purchase, recent products, interest, golden-record traits, acquisition';
COMMENT ON COLUMN cdp.profile_store.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.profile_store.created_at IS 'When the profile was made';
COMMENT ON COLUMN cdp.profile_store.first_seen IS 'First event of the profile';
COMMENT ON COLUMN cdp.profile_store.last_seen IS 'Last event of the profile';
COMMENT ON COLUMN cdp.profile_store.events IS 'Number of events';
COMMENT ON COLUMN cdp.profile_store.channels IS 'Channels it used';
COMMENT ON COLUMN cdp.profile_store.by_channel IS 'Per channel, its events and the time of the last: {"web": {"events": 12, "last_at": "..."}}';
COMMENT ON COLUMN cdp.profile_store.by_category IS 'The same per event type category (cdp.event_types.category; other for types not listed)';
COMMENT ON COLUMN cdp.profile_store.orders IS 'Number of purchases, on any channel';
COMMENT ON COLUMN cdp.profile_store.revenue IS 'Purchases less returns';
COMMENT ON COLUMN cdp.profile_store.last_purchase_at IS 'When it last bought';
COMMENT ON COLUMN cdp.profile_store.last_purchase_channel IS 'On which channel';
COMMENT ON COLUMN cdp.profile_store.last_purchase_amount IS 'For how much';
COMMENT ON COLUMN cdp.profile_store.products IS 'The 20 products last viewed, carted and bought, latest first: {"viewed": [{"product_id": "p1", "at": "..."}], "carted": [...], "bought": [...]}';
COMMENT ON COLUMN cdp.profile_store.interest IS 'Interest now per product category, as cdp.interest with a 30-day half-life over all events: {"shoes": 2.5, ...}';
COMMENT ON COLUMN cdp.profile_store.traits IS 'Golden record: its traits as kept by cdp.trait_rules';
COMMENT ON COLUMN cdp.profile_store.first_source IS 'First-touch acquisition source (as cdp.profile_acquisition)';
COMMENT ON COLUMN cdp.profile_store.first_medium IS 'First-touch medium';
COMMENT ON COLUMN cdp.profile_store.first_campaign IS 'First-touch campaign';
COMMENT ON COLUMN cdp.profile_store.first_channel IS 'First-touch channel';
COMMENT ON COLUMN cdp.profile_store.first_touch_at IS 'When the first touch happened';
COMMENT ON COLUMN cdp.profile_store.last_source IS 'Last-touch acquisition source';
COMMENT ON COLUMN cdp.profile_store.last_medium IS 'Last-touch medium';
COMMENT ON COLUMN cdp.profile_store.last_campaign IS 'Last-touch campaign';
COMMENT ON COLUMN cdp.profile_store.last_channel IS 'Last-touch channel';
COMMENT ON COLUMN cdp.profile_store.last_touch_at IS 'When the last touch happened';
COMMENT ON COLUMN cdp.profile_store.touches IS 'Events with a utm_source or a referrer';

-- Masking of identifiers in the views that show them.
CREATE FUNCTION cdp.contact_points_visible() RETURNS boolean
	AS 'MODULE_PATHNAME', 'cdp_contact_points_visible' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.contact_points_visible() IS 'Whether the views that show identifiers show them raw to the current role: cdp.mask_contact_points is off, or the role is a superuser or has the privileges of cdp_admin or cdp_app';

-- No SET search_path, so that the planner inlines it: every function and
-- operator is written with its schema.
CREATE FUNCTION cdp.mask_identifier(kind text, value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT CASE
	WHEN kind OPERATOR(pg_catalog.=) 'email' AND pg_catalog.strpos(value, '@') OPERATOR(pg_catalog.>) 1
		THEN pg_catalog.left(value, 1) OPERATOR(pg_catalog.||) '***'
		     OPERATOR(pg_catalog.||) pg_catalog.substr(value, pg_catalog.strpos(value, '@'))
	WHEN kind OPERATOR(pg_catalog.=) 'phone' AND pg_catalog.length(value) OPERATOR(pg_catalog.>) 5
		THEN pg_catalog.left(value, 3) OPERATOR(pg_catalog.||) pg_catalog.repeat('*', pg_catalog.length(value) OPERATOR(pg_catalog.-) 5)
		     OPERATOR(pg_catalog.||) pg_catalog.right(value, 2)
	WHEN pg_catalog.length(value) OPERATOR(pg_catalog.>) 4
		THEN pg_catalog.left(value, 2) OPERATOR(pg_catalog.||) pg_catalog.repeat('*', pg_catalog.length(value) OPERATOR(pg_catalog.-) 4)
		     OPERATOR(pg_catalog.||) pg_catalog.right(value, 2)
	ELSE pg_catalog.repeat('*', pg_catalog.length(value))
END
$$;
COMMENT ON FUNCTION cdp.mask_identifier(text, text) IS 'An identifier as an analyst sees it: ann.doe@orange.fr as a***@orange.fr, +33612345678 as +33*******78, other kinds with their first and last two characters (all stars up to 4 characters)';

-- The single customer view: the profile store, the identifiers, the scores
-- and the open breaks; it never reads the event store.  Every live profile
-- holds an identifier, so the identifiers join LEFT, like the rest: a
-- query that reads few columns (count(*), a GROUP BY rfm_segment) skips
-- what it does not read.
CREATE VIEW cdp.customer_360 AS
WITH ids AS (
	SELECT profile_id, pg_catalog.jsonb_object_agg(kind, vals ORDER BY kind) AS identifiers
	FROM (SELECT profile_id, kind,
	             pg_catalog.jsonb_agg(CASE WHEN (SELECT cdp.contact_points_visible()) THEN value
	                                       ELSE cdp.mask_identifier(kind, value) END ORDER BY value) AS vals
	      FROM cdp.identifiers GROUP BY profile_id, kind) k
	GROUP BY profile_id),
breaks AS (
	SELECT profile_id, pg_catalog.count(*) AS open_breaks,
	       pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('funnel', funnel_id, 'step', break_step, 'channel', channel,
	                                    'broken_at', broken_at, 'context', context) ORDER BY broken_at) AS breaks
	FROM cdp.journey_breaks WHERE status = 'open' GROUP BY profile_id)
SELECT s.profile_id, s.created_at, ids.identifiers, s.traits,
       s.first_seen, s.last_seen, s.events, s.channels, s.orders, s.revenue,
       rfm.segment AS rfm_segment, rfm.rfm_code, clv.p_alive, clv.expected_purchases, clv.clv,
       coalesce(breaks.open_breaks, 0) AS open_breaks, breaks.breaks AS open_journey_breaks,
       s.first_source, s.first_medium, s.last_source, s.last_medium,
       s.by_channel, s.by_category, s.last_purchase_at, s.last_purchase_channel, s.last_purchase_amount,
       s.products, s.interest, s.first_campaign, s.first_channel, s.first_touch_at,
       s.last_campaign, s.last_channel, s.last_touch_at, s.touches
FROM cdp.profile_store s
LEFT JOIN ids USING (profile_id)
LEFT JOIN cdp.rfm rfm USING (profile_id)
LEFT JOIN cdp.clv clv USING (profile_id)
LEFT JOIN breaks USING (profile_id);
COMMENT ON VIEW cdp.customer_360 IS 'The single customer view: one row per live profile with its identifiers, its facts from the profile store (traits, activity, orders and revenue across every channel, last purchase, recent products, interest, acquisition; as of the last cdp.sync), its scores and open journey breaks';
COMMENT ON COLUMN cdp.customer_360.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.customer_360.created_at IS 'When the profile was made';
COMMENT ON COLUMN cdp.customer_360.identifiers IS 'Its identifiers by kind: {"email": ["ann@x.org"], "cookie": [...], ...}; masked ({"email": ["a***@x.org"]}) for a role that may not see them raw (cdp.contact_points_visible)';
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
COMMENT ON COLUMN cdp.customer_360.first_source IS 'First-touch acquisition source (utm_source or referrer host, as cdp.profile_acquisition)';
COMMENT ON COLUMN cdp.customer_360.first_medium IS 'First-touch medium';
COMMENT ON COLUMN cdp.customer_360.last_source IS 'Last-touch acquisition source';
COMMENT ON COLUMN cdp.customer_360.last_medium IS 'Last-touch medium';
COMMENT ON COLUMN cdp.customer_360.by_channel IS 'Per channel, its events and the time of the last';
COMMENT ON COLUMN cdp.customer_360.by_category IS 'Per event type category, its events and the time of the last';
COMMENT ON COLUMN cdp.customer_360.last_purchase_at IS 'When it last bought';
COMMENT ON COLUMN cdp.customer_360.last_purchase_channel IS 'On which channel';
COMMENT ON COLUMN cdp.customer_360.last_purchase_amount IS 'For how much';
COMMENT ON COLUMN cdp.customer_360.products IS 'The 20 products last viewed, carted and bought';
COMMENT ON COLUMN cdp.customer_360.interest IS 'Interest now per product category (30-day half-life)';
COMMENT ON COLUMN cdp.customer_360.first_campaign IS 'First-touch campaign';
COMMENT ON COLUMN cdp.customer_360.first_channel IS 'First-touch channel';
COMMENT ON COLUMN cdp.customer_360.first_touch_at IS 'When the first touch happened';
COMMENT ON COLUMN cdp.customer_360.last_campaign IS 'Last-touch campaign';
COMMENT ON COLUMN cdp.customer_360.last_channel IS 'Last-touch channel';
COMMENT ON COLUMN cdp.customer_360.last_touch_at IS 'When the last touch happened';
COMMENT ON COLUMN cdp.customer_360.touches IS 'Events with a utm_source or a referrer';

-- ---------------------------------------------------------------------------
-- Comments that complete the catalogue: the partition listing's columns and
-- the sequences behind the journals' ids.
-- ---------------------------------------------------------------------------
COMMENT ON COLUMN cdp.event_partitions.partition IS 'The partition table';
COMMENT ON COLUMN cdp.event_partitions.range_from IS 'First instant it holds (NULL for the default partition)';
COMMENT ON COLUMN cdp.event_partitions.range_to IS 'First instant after it (NULL for the default partition)';
COMMENT ON COLUMN cdp.event_partitions.is_default IS 'True for cdp.events_default, which holds events of months without a partition';
COMMENT ON COLUMN cdp.event_partitions.estimated_rows IS 'Rows, as estimated by the last ANALYZE or VACUUM';
COMMENT ON COLUMN cdp.event_partitions.total_bytes IS 'Size on disk with indexes and TOAST';
COMMENT ON SEQUENCE cdp.identifier_blocklist_entry_id_seq IS 'Ids of cdp.identifier_blocklist entries';
COMMENT ON SEQUENCE cdp.stitch_batches_batch_id_seq IS 'Batch numbers of cdp.stitch_batches, taken under the stitching lock';
COMMENT ON SEQUENCE cdp.profile_merges_merge_id_seq IS 'Ids of cdp.profile_merges';
COMMENT ON SEQUENCE cdp.identity_conflicts_conflict_id_seq IS 'Ids of cdp.identity_conflicts';
COMMENT ON SEQUENCE cdp.identity_overrides_override_id_seq IS 'Ids of cdp.identity_overrides';
COMMENT ON SEQUENCE cdp.identifier_moves_move_id_seq IS 'Ids of cdp.identifier_moves';
COMMENT ON SEQUENCE cdp.identifier_rejections_rejection_id_seq IS 'Ids of cdp.identifier_rejections';
COMMENT ON SEQUENCE cdp.clv_models_model_id_seq IS 'Ids of cdp.clv_models';

-- One customer.  Reads the profile store by index; folds in first what was
-- stitched and not yet taken in (unless the transaction is read-only, the
-- store awaits a rebuild, or another transaction is folding), so that a
-- session reads its own writes.
CREATE TYPE cdp.customer_profile AS (profile_id bigint, created_at timestamptz, identifiers jsonb, traits jsonb,
	first_seen timestamptz, last_seen timestamptz, events bigint, channels text[], orders bigint,
	revenue numeric, rfm_segment text, rfm_code text, p_alive double precision,
	expected_purchases double precision, clv double precision, open_breaks bigint,
	open_journey_breaks jsonb, first_source text, first_medium text, last_source text,
	last_medium text, by_channel jsonb, by_category jsonb, last_purchase_at timestamptz,
	last_purchase_channel text, last_purchase_amount numeric, products jsonb, interest jsonb,
	first_campaign text, first_channel text, first_touch_at timestamptz, last_campaign text,
	last_channel text, last_touch_at timestamptz, touches bigint, recent_events jsonb,
	as_of timestamptz);
COMMENT ON TYPE cdp.customer_profile IS 'A row of cdp.profile: the columns of cdp.customer_360, then recent_events (the 20 latest events across every channel, latest first) and as_of (when the profile store last took in new events)';

CREATE FUNCTION cdp.profile(profile_id bigint)
RETURNS SETOF cdp.customer_profile
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	live bigint;
BEGIN
	IF $1 IS NULL THEN
		RETURN;
	END IF;
	IF NOT current_setting('transaction_read_only')::boolean THEN
		-- this session's bulk loads, if the worker has not stitched them
		-- yet (nothing to do, and no query, after none)
		PERFORM cdp.stitch_queued(true);
		-- the store's lock only if free (the worker folds within a second
		-- anyway): a look-up never waits, nor takes the lock while another
		-- transaction could wait for it in the other order
		IF NOT EXISTS (SELECT FROM cdp.profile_store_progress s WHERE s.needs_full)
		   AND EXISTS (SELECT FROM cdp.stitch_batches b
		               WHERE b.batch_id > coalesce((SELECT s.last_batch_id FROM cdp.profile_store_progress s), 0))
		   AND pg_try_advisory_xact_lock(x'636470'::integer, x'7073'::integer) THEN
			PERFORM cdp.sync();
		END IF;
	END IF;
	SELECT coalesce(p.merged_into, p.profile_id) INTO live FROM cdp.profiles p WHERE p.profile_id = $1;
	RETURN QUERY
	SELECT c.*,
	       (SELECT jsonb_agg(jsonb_build_object('event_id', r.event_id, 'occurred_at', r.occurred_at,
	                                            'channel', r.channel, 'type', r.type, 'amount', r.amount,
	                                            'source', r.source, 'properties', r.properties)
	                         ORDER BY r.occurred_at DESC, r.event_id DESC)
	        FROM (SELECT r.* FROM cdp.identifiers i
	              JOIN cdp.anchor_recent_events r ON r.anchor_id = i.identifier_id
	              WHERE i.profile_id = live
	              ORDER BY r.occurred_at DESC, r.event_id DESC LIMIT 20) r),
	       (SELECT s.synced_at FROM cdp.profile_store_progress s)
	FROM cdp.customer_360 c
	WHERE c.profile_id = live;
END
$$;
COMMENT ON FUNCTION cdp.profile(bigint) IS 'One customer as one row: the cdp.customer_360 row of the live profile (a merged-away id leads to the profile that absorbed it), its 20 latest events across every channel, and the time of the store''s last sync; no row for an unknown id';

CREATE FUNCTION cdp.profile(kind text, value text)
RETURNS SETOF cdp.customer_profile
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
-- this session's bulk loads first, so that the identifier is found
SELECT cdp.stitch_queued(true) WHERE NOT current_setting('transaction_read_only')::boolean;
SELECT * FROM cdp.profile(cdp.resolve(kind, value));
$$;
COMMENT ON FUNCTION cdp.profile(text, text) IS 'One customer found by an identifier (normalized as at ingest): cdp.profile of the profile that holds it; no row when none does';
