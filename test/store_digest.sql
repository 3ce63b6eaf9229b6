-- A digest of every table of the profile store, for test/profile_store.sh:
-- equal digests, equal stores (log2 masses rounded to 6 decimals).
SELECT 'activity', md5(string_agg(t::text, ',' ORDER BY anchor_id, channel, type)) FROM cdp.anchor_activity t
UNION ALL SELECT 'products', md5(string_agg(t::text, ',' ORDER BY anchor_id, action, product_id)) FROM cdp.anchor_products t
UNION ALL SELECT 'interest', md5(string_agg(format('%s %s %s %s %s', anchor_id, category, round(log2_mass::numeric, 6), events, last_at), ',' ORDER BY anchor_id, category)) FROM cdp.anchor_interest t
UNION ALL SELECT 'traits', md5(string_agg(t::text, ',' ORDER BY anchor_id, trait, value, source)) FROM cdp.anchor_traits t
UNION ALL SELECT 'touches', md5(string_agg(t::text, ',' ORDER BY anchor_id)) FROM cdp.anchor_touches t
UNION ALL SELECT 'recent', md5(string_agg(t::text, ',' ORDER BY anchor_id, occurred_at, event_id)) FROM cdp.anchor_recent_events t ORDER BY 1;
