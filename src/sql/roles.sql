-- ---------------------------------------------------------------------------
-- Roles (issue 14): least privilege.  This file runs last (SQL_LAST in the
-- Makefile), when every object of schema cdp exists, and is appended as it
-- is to the upgrade script, so it must also run on an upgraded database.
--
--   cdp_tracker  loads events: cdp.track, cdp.ingest, INSERT and COPY into
--                cdp.events and cdp.event_load; reads nothing personal
--   cdp_analyst  reads the BI views and functions, contact points masked
--                unless cdp.mask_contact_points is off
--   cdp_app      application code: profile look-ups, decisions, outcomes,
--                consent, the outbox's sender functions
--   cdp_admin    configuration, merges by hand, erasure, refreshes and
--                rebuilds, jobs; reads every table
--
-- Entry points that write internal tables for a weaker caller are SECURITY
-- DEFINER with search_path pinned (pg_catalog, pg_temp: cdp's objects are
-- always written cdp.x).  The per-row functions of a load (the CHECK
-- cdp.accept_event and the default cdp.issue_event_id) run as the loader,
-- for speed, which is given what they read and write instead; the
-- statement-level trigger that ends a load (message ids, stitching, the
-- profile store) runs as the owner.
-- ---------------------------------------------------------------------------

-- Roles are cluster-wide: another database's CREATE EXTENSION cdp may have
-- made them already.
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['cdp_tracker', 'cdp_analyst', 'cdp_app', 'cdp_admin'] LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$$;

-- Who is who in the audit: a SECURITY DEFINER function runs as the owner,
-- so the decisions by hand and the erasures record the session's login.
ALTER TABLE cdp.identity_overrides ALTER COLUMN made_by SET DEFAULT session_user;
ALTER TABLE cdp.erasures ALTER COLUMN erased_by SET DEFAULT session_user;

-- ---------------------------------------------------------------------------
-- Grants.  No function of schema cdp runs for PUBLIC; each role gets its
-- own.  (A function called by another cdp function needs no grant: the
-- entry point is SECURITY DEFINER, or the caller is trusted.)
-- ---------------------------------------------------------------------------
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA cdp FROM PUBLIC;
GRANT USAGE ON SCHEMA cdp TO cdp_tracker, cdp_analyst, cdp_app, cdp_admin;

-- Grants EXECUTE on every function of schema cdp with one of these names
-- (all their overloads) to a role; definer: makes them SECURITY DEFINER,
-- with the pinned search_path.
CREATE FUNCTION cdp.grant_functions(role name, names text[], definer boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	f regprocedure;
	missing text;
BEGIN
	SELECT string_agg(n, ', ') INTO missing FROM unnest(names) n
	WHERE NOT EXISTS (SELECT FROM pg_proc p WHERE p.pronamespace = 'cdp'::regnamespace AND p.proname = n);
	IF missing IS NOT NULL THEN
		RAISE EXCEPTION 'no function cdp.% to grant', missing;
	END IF;
	FOR f IN SELECT p.oid FROM pg_proc p
	         WHERE p.pronamespace = 'cdp'::regnamespace AND p.proname = ANY (names) ORDER BY p.oid LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, role);
		IF definer THEN
			EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', f);
		END IF;
	END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION cdp.grant_functions(name, text[], boolean) FROM PUBLIC;
COMMENT ON FUNCTION cdp.grant_functions(name, text[], boolean) IS 'Internal, used by the extension script: grants EXECUTE on the functions of schema cdp with the given names to a role, and makes them SECURITY DEFINER with search_path pinned';

-- The end of a load (message ids, stitching, the profile store, consent
-- events) writes internal tables: it runs as the owner, once per statement.
ALTER FUNCTION cdp.events_after_insert() SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
-- Configuration triggers that write other tables than their own.
ALTER FUNCTION cdp.offer_usage_open() SECURITY DEFINER;
ALTER FUNCTION cdp.triggers_changed() SECURITY DEFINER;

-- cdp_tracker: loads events.  The per-row check and default run as the
-- loader: they read the configuration (channels, event types, identity
-- rules, blocklist), take ids from the sequence and quarantine bad rows.
SELECT cdp.grant_functions('cdp_tracker', ARRAY['track', 'ingest'], true);
SELECT cdp.grant_functions('cdp_tracker', ARRAY['accept_event', 'issue_event_id', 'check_event'], false);
GRANT INSERT ON cdp.events, cdp.event_load TO cdp_tracker;
-- cdp.event_load stores each row with INSERT ... RETURNING event_id
GRANT SELECT (event_id) ON cdp.events TO cdp_tracker;
-- (the columns a quarantine writes: not reject_id, so that a loader cannot
-- take ids ahead of the sequence and make later quarantines fail)
GRANT INSERT (reason_code, reason, source, raw) ON cdp.rejected_events TO cdp_tracker;
GRANT USAGE ON SEQUENCE cdp.events_event_id_seq TO cdp_tracker;
GRANT SELECT ON cdp.channels, cdp.event_types, cdp.identity_rules, cdp.identifier_blocklist TO cdp_tracker;

-- cdp_analyst: the BI views (which read their tables as their owner),
-- scores, journeys and statistics; identifiers masked.
GRANT SELECT ON cdp.customer_360, cdp.profile_store, cdp.profile_traits, cdp.profile_acquisition,
	cdp.sessions, cdp.offer_performance, cdp.trigger_stats, cdp.worker_status, cdp.job_status,
	cdp.event_partitions,
	cdp.rfm, cdp.rfm_segments, cdp.clv, cdp.clv_models, cdp.clv_validation, cdp.journey_breaks,
	cdp.funnels, cdp.offers, cdp.offer_variants, cdp.offer_stats, cdp.campaigns, cdp.contact_policies,
	cdp.triggers, cdp.channels, cdp.event_types, cdp.trait_rules
	TO cdp_analyst;
SELECT cdp.grant_functions('cdp_analyst', ARRAY['funnel_stats', 'top_paths', 'journeys', 'who_viewed', 'interest',
	'job_runs'], true);
SELECT cdp.grant_functions('cdp_analyst', ARRAY['contact_points_visible', 'mask_identifier', 'session_no',
	'rate_interval', 'worker_state', 'clv', 'bgnbd_p_alive', 'bgnbd_expected_purchases', 'pareto_nbd_p_alive',
	'pareto_nbd_expected_purchases', 'nbd_expected_purchases', 'gamma_gamma_expected_value'], false);

-- cdp_app: application code, through functions only.
SELECT cdp.grant_functions('cdp_app', ARRAY['profile', 'resolve', 'decide', 'next_best_offers', 'explain_offers',
	'record_outcome', 'set_consent', 'consent_state', 'claim_messages', 'mark_delivered', 'mark_failed'], true);
SELECT cdp.grant_functions('cdp_app', ARRAY['contact_points_visible', 'mask_identifier'], false);

-- cdp_admin: configuration, merges by hand, erasure, refreshes, rebuilds
-- and jobs; reads every table; can do what the other roles can.
GRANT cdp_tracker, cdp_analyst, cdp_app TO cdp_admin;
-- every table but the partitions of cdp.events (read through cdp.events;
-- those made before an upgrade would otherwise differ from later ones)
DO $$
DECLARE
	t regclass;
BEGIN
	FOR t IN SELECT c.oid FROM pg_catalog.pg_class c
	         WHERE c.relnamespace = 'cdp'::regnamespace AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
	         ORDER BY c.oid LOOP
		EXECUTE pg_catalog.format('GRANT SELECT ON %s TO cdp_admin', t);
	END LOOP;
END
$$;
GRANT INSERT, UPDATE, DELETE ON cdp.channels, cdp.event_types, cdp.identity_rules, cdp.identifier_blocklist,
	cdp.trait_rules, cdp.funnels, cdp.offers, cdp.offer_variants, cdp.contact_policies, cdp.triggers,
	cdp.rfm_segments, cdp.campaigns
	TO cdp_admin;
GRANT USAGE ON SEQUENCE cdp.identifier_blocklist_entry_id_seq, cdp.campaigns_campaign_id_seq TO cdp_admin;
SELECT cdp.grant_functions('cdp_admin', ARRAY['merge_profiles', 'unmerge', 'forget', 'forget_dry_run',
	'rebuild_identities', 'rebuild_profile_store', 'sync', 'stitch_queued', 'refresh_scores', 'validate_clv',
	'detect_journey_breaks', 'ensure_partitions', 'drop_partitions', 'schedule_jobs', 'unschedule_jobs',
	'run_triggers', 'purge_outbox', 'learn', 'plan_campaign', 'profile_at'], true);
-- (check_eligibility, channel_check and trigger_fact_names: the checks of
-- the configuration tables, which run as the writer)
SELECT cdp.grant_functions('cdp_admin', ARRAY['default_jobs', 'check_identifier', 'normalize_email',
	'normalize_phone', 'evaluate_policy', 'consent_flags', 'check_eligibility', 'channel_check',
	'trigger_fact_names'], false);

DROP FUNCTION cdp.grant_functions(name, text[], boolean);
