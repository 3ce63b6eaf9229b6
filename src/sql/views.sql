
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
