-- The profile store against the events, for test/profile_store.sh: per fact,
-- the live profiles whose stored fact differs from the one computed from
-- cdp.events (the views of 0.1.0 and cdp.interest); 0 each when exact.
WITH truth AS (
	SELECT i.profile_id, min(e.occurred_at) AS first_seen, max(e.occurred_at) AS last_seen, count(*) AS events,
	       array_agg(DISTINCT e.channel ORDER BY e.channel) AS channels,
	       count(*) FILTER (WHERE e.type = 'purchase') AS orders,
	       coalesce(sum(e.amount) FILTER (WHERE e.type IN ('purchase', 'return')), 0) AS revenue
	FROM cdp.event_anchors a JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	JOIN cdp.events e ON e.event_id = a.event_id AND e.occurred_at = a.occurred_at
	GROUP BY i.profile_id)
SELECT 'activity' AS what, count(*) AS differ FROM truth t FULL JOIN cdp.profile_store s USING (profile_id)
WHERE (s.events > 0 OR t.profile_id IS NOT NULL)
  AND (t.first_seen, t.last_seen, t.events, t.channels, t.orders, t.revenue)
      IS DISTINCT FROM (s.first_seen, s.last_seen, s.events, s.channels, s.orders, s.revenue)
UNION ALL
SELECT 'traits', count(*) FROM (SELECT profile_id, jsonb_object_agg(trait, value) AS traits FROM cdp.profile_traits GROUP BY 1) t
FULL JOIN (SELECT profile_id, traits FROM cdp.profile_store WHERE traits IS NOT NULL) s USING (profile_id)
WHERE t.traits IS DISTINCT FROM s.traits
UNION ALL
SELECT 'acquisition', count(*) FROM cdp.profile_acquisition t
FULL JOIN (SELECT * FROM cdp.profile_store WHERE touches IS NOT NULL) s USING (profile_id)
WHERE (t.first_source, t.first_medium, t.first_campaign, t.first_channel, t.first_at, t.last_source, t.last_medium, t.last_campaign, t.last_channel, t.last_at, t.touches)
      IS DISTINCT FROM (s.first_source, s.first_medium, s.first_campaign, s.first_channel, s.first_touch_at, s.last_source, s.last_medium, s.last_campaign, s.last_channel, s.last_touch_at, s.touches)
UNION ALL
SELECT 'interest', count(*) FROM (SELECT profile_id, category, score FROM cdp.interest(horizon => '100 years')) t
FULL JOIN (SELECT profile_id, k AS category, v::float8 AS score FROM cdp.profile_store, jsonb_each_text(interest) AS x(k, v)) s
USING (profile_id, category)
WHERE t.score IS NULL OR s.score IS NULL OR abs(t.score - s.score) > 1e-6 + 1e-6 * t.score
UNION ALL
SELECT 'recent events', count(*) FROM (
	SELECT profile_id, array_agg(event_id ORDER BY occurred_at DESC, event_id DESC) AS ids
	FROM (SELECT i.profile_id, e.event_id, e.occurred_at,
	             row_number() OVER (PARTITION BY i.profile_id ORDER BY e.occurred_at DESC, e.event_id DESC) AS rn
	      FROM cdp.event_anchors a JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	      JOIN cdp.events e ON e.event_id = a.event_id AND e.occurred_at = a.occurred_at) x
	WHERE rn <= 20 GROUP BY 1) t
FULL JOIN (
	SELECT profile_id, array_agg(event_id ORDER BY occurred_at DESC, event_id DESC) AS ids
	FROM (SELECT i.profile_id, r.event_id, r.occurred_at,
	             row_number() OVER (PARTITION BY i.profile_id ORDER BY r.occurred_at DESC, r.event_id DESC) AS rn
	      FROM cdp.anchor_recent_events r JOIN cdp.identifiers i ON i.identifier_id = r.anchor_id) x
	WHERE rn <= 20 GROUP BY 1) s USING (profile_id)
WHERE t.ids IS DISTINCT FROM s.ids
UNION ALL
SELECT 'products', count(*) FROM (
	SELECT profile_id, jsonb_object_agg(action, items) AS products
	FROM (SELECT profile_id, action, jsonb_agg(jsonb_build_object('product_id', product_id, 'at', occurred_at)
	                                          ORDER BY occurred_at DESC, event_id DESC) AS items
	      FROM (SELECT d.*, row_number() OVER (PARTITION BY profile_id, action ORDER BY occurred_at DESC, event_id DESC) AS rk
	            FROM (SELECT DISTINCT ON (i.profile_id, 2, 3) i.profile_id,
	                         CASE e.type WHEN 'product_view' THEN 'viewed' WHEN 'add_to_cart' THEN 'carted' ELSE 'bought' END AS action,
	                         e.properties ->> 'product_id' AS product_id, e.occurred_at, e.event_id
	                  FROM cdp.event_anchors a JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	                  JOIN cdp.events e ON e.event_id = a.event_id AND e.occurred_at = a.occurred_at
	                  WHERE e.type IN ('product_view', 'add_to_cart', 'purchase') AND e.properties ->> 'product_id' IS NOT NULL
	                  ORDER BY i.profile_id, 2, 3, e.occurred_at DESC, e.event_id DESC) d) k
	      WHERE rk <= 20 GROUP BY 1, 2) a
	GROUP BY 1) t
FULL JOIN (SELECT profile_id, products FROM cdp.profile_store WHERE products IS NOT NULL) s USING (profile_id)
WHERE t.products IS DISTINCT FROM s.products;
