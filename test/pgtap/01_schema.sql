-- The public contract of the event store exists, is documented for BI tools,
-- and is kept by pg_dump.
BEGIN;
SELECT plan(21);

SELECT has_schema('cdp');
SELECT has_table('cdp', 'events', 'event store');
SELECT has_table('cdp', 'channels', 'channel registry');
SELECT has_table('cdp', 'event_types', 'event type registry');
SELECT has_table('cdp', 'rejected_events', 'quarantine');
SELECT has_view('cdp', 'event_load', 'raw loader');
SELECT has_view('cdp', 'event_partitions', 'partition listing');
SELECT has_function('cdp', 'track', ARRAY['timestamp with time zone', 'text', 'text', 'jsonb', 'jsonb', 'numeric', 'text', 'text']);
SELECT has_function('cdp', 'ingest', ARRAY['jsonb']);
SELECT has_function('cdp', 'ensure_partitions', ARRAY['timestamp with time zone', 'timestamp with time zone']);
SELECT columns_are('cdp', 'events',
	ARRAY['event_id', 'occurred_at', 'received_at', 'channel', 'type', 'identifiers', 'properties', 'amount', 'source', 'message_id']);
SELECT is((SELECT relkind::text FROM pg_class WHERE oid = 'cdp.events'::regclass), 'p', 'cdp.events is partitioned');
SELECT is((SELECT pg_get_partkeydef('cdp.events'::regclass)), 'RANGE (occurred_at)', 'partitioned by occurred_at');

SELECT is_empty($$
	SELECT c.oid::regclass::text FROM pg_class c
	WHERE c.relnamespace = 'cdp'::regnamespace AND c.relkind IN ('r', 'p', 'v')
	  AND obj_description(c.oid, 'pg_class') IS NULL$$,
	'every table and view of cdp has a comment');
SELECT is_empty($$
	SELECT c.oid::regclass::text || '.' || a.attname FROM pg_class c
	JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	WHERE c.relnamespace = 'cdp'::regnamespace AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
	  AND col_description(c.oid, a.attnum) IS NULL$$,
	'every column of every cdp table and view has a comment');
SELECT is_empty($$
	SELECT c.oid::regclass::text FROM pg_class c
	WHERE c.relnamespace = 'cdp'::regnamespace AND c.relkind = 'S'
	  AND obj_description(c.oid, 'pg_class') IS NULL$$,
	'every sequence of cdp has a comment');
SELECT is_empty($$
	SELECT p.oid::regprocedure::text FROM pg_proc p
	WHERE p.pronamespace = 'cdp'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL$$,
	'every function of cdp has a comment');

SELECT set_eq($$SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'cdp'$$,
	ARRAY['cdp.channels', 'cdp.event_types', 'cdp.events_default', 'cdp.rejected_events', 'cdp.events_event_id_seq', 'cdp.event_messages',
	      'cdp.identity_rules', 'cdp.identifier_blocklist', 'cdp.identifier_blocklist_entry_id_seq',
	      'cdp.profiles', 'cdp.profiles_profile_id_seq', 'cdp.identifiers', 'cdp.identifiers_identifier_id_seq',
	      'cdp.identity_links', 'cdp.event_anchors', 'cdp.stitch_batches', 'cdp.stitch_batches_batch_id_seq',
	      'cdp.profile_merges', 'cdp.profile_merges_merge_id_seq',
	      'cdp.identity_conflicts', 'cdp.identity_conflicts_conflict_id_seq',
	      'cdp.identity_overrides', 'cdp.identity_overrides_override_id_seq',
	      'cdp.identifier_moves', 'cdp.identifier_moves_move_id_seq',
	      'cdp.identifier_rejections', 'cdp.identifier_rejections_rejection_id_seq', 'cdp.trait_rules',
	      'cdp.rfm_segments',
	      'cdp.funnels', 'cdp.journey_breaks', 'cdp.journey_events', 'cdp.journey_pending', 'cdp.journey_progress',
	      'cdp.anchor_activity', 'cdp.anchor_products', 'cdp.anchor_interest', 'cdp.anchor_traits',
	      'cdp.anchor_touches', 'cdp.anchor_recent_events', 'cdp.profile_store_progress',
	      'cdp.stitch_queue', 'cdp.stitch_queue_queue_id_seq',
	      'cdp.offers', 'cdp.offer_variants', 'cdp.offer_usage', 'cdp.contact_policies', 'cdp.consents',
	      'cdp.consents_consent_id_seq', 'cdp.contacts', 'cdp.contacts_contact_id_seq', 'cdp.offer_stats',
	      'cdp.campaigns', 'cdp.campaigns_campaign_id_seq',
	      'cdp.triggers', 'cdp.trigger_fires', 'cdp.trigger_fires_fire_id_seq', 'cdp.trigger_states', 'cdp.trigger_scans',
	      'cdp.trigger_progress', 'cdp.outbox', 'cdp.outbox_message_id_seq',
	      'cdp.erasure_key', 'cdp.erasures', 'cdp.erasures_erasure_id_seq', 'cdp.tombstones'],
	'user data and configuration are kept by pg_dump');
SELECT is((SELECT count(*)::int FROM cdp.channels WHERE builtin), 8, 'eight built-in channels');
SELECT ok((SELECT bool_and(builtin) FROM cdp.event_types), 'standard event types are marked built-in');
SELECT ok(NOT EXISTS (SELECT FROM cdp.event_types t WHERE t.type !~ '^[a-z_]+$'), 'standard type names are snake_case');

SELECT * FROM finish();
ROLLBACK;
