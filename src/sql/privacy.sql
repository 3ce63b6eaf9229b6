-- ---------------------------------------------------------------------------
-- Privacy: erasure of a person (cdp.forget), with an audit row without
-- personal data and keyed-hash tombstones of the erased identifiers.
--
-- Erasure is the one place that deletes across every module's tables: the
-- identity graph through its store (cdp.store_forget_profiles), the rest
-- here, in one transaction, under the locks of the triggers, the journeys,
-- stitching and the profile store, taken in that order (the order of the
-- units that take several of them).
-- ---------------------------------------------------------------------------

CREATE TABLE cdp.erasure_key (
	singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	key       bytea   NOT NULL
);
COMMENT ON TABLE cdp.erasure_key IS 'The secret key of the tombstones'' hashes (one row, random, made at the first erasure; kept by pg_dump, so that a restored database recognizes erased identifiers)';
COMMENT ON COLUMN cdp.erasure_key.singleton IS 'Always true: there is one row';
COMMENT ON COLUMN cdp.erasure_key.key IS '32 random bytes';
SELECT pg_catalog.pg_extension_config_dump('cdp.erasure_key', '');

CREATE TABLE cdp.erasures (
	erasure_id  bigserial   PRIMARY KEY,
	erased_at   timestamptz NOT NULL DEFAULT now(),
	erased_by   text        NOT NULL DEFAULT current_user,
	reason      text        NOT NULL,
	profiles    integer     NOT NULL,
	identifiers integer     NOT NULL,
	rows        jsonb       NOT NULL
);
COMMENT ON TABLE cdp.erasures IS 'The audit of erasures (cdp.forget): who, when, why and how many rows of each table went; no personal data';
COMMENT ON COLUMN cdp.erasures.erasure_id IS 'Erasure number';
COMMENT ON COLUMN cdp.erasures.erased_at IS 'When';
COMMENT ON COLUMN cdp.erasures.erased_by IS 'The role that erased';
COMMENT ON COLUMN cdp.erasures.reason IS 'Why, as given (a request number, not the person''s name)';
COMMENT ON COLUMN cdp.erasures.profiles IS 'Profiles erased (the live one and those merged into it)';
COMMENT ON COLUMN cdp.erasures.identifiers IS 'Identifiers erased (their keyed hashes are in cdp.tombstones)';
COMMENT ON COLUMN cdp.erasures.rows IS 'Rows deleted per table, {"events": 12, "identifiers": 3, ...}';
COMMENT ON SEQUENCE cdp.erasures_erasure_id_seq IS 'Erasure numbers';
SELECT pg_catalog.pg_extension_config_dump('cdp.erasures', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.erasures_erasure_id_seq', '');

CREATE TABLE cdp.tombstones (
	hash       text        PRIMARY KEY,
	quick      bigint      NOT NULL,
	kind       text        NOT NULL,
	erasure_id bigint      NOT NULL,
	erased_at  timestamptz NOT NULL
);
COMMENT ON TABLE cdp.tombstones IS 'The erased identifiers, as keyed hashes (cdp.erasure_hash): which identifier was erased can be checked, not read; an event that carries one is quarantined as erased (cdp.refuse_erased)';
COMMENT ON COLUMN cdp.tombstones.hash IS 'Keyed SHA-256 of the kind and the normalized value, hex';
COMMENT ON COLUMN cdp.tombstones.quick IS 'A 64-bit hash of the same, seeded by the key: the row check of each event tests it first, and computes the SHA-256 only when it matches';
COMMENT ON COLUMN cdp.tombstones.kind IS 'Identifier kind';
COMMENT ON COLUMN cdp.tombstones.erasure_id IS 'The erasure (cdp.erasures)';
COMMENT ON COLUMN cdp.tombstones.erased_at IS 'When';
SELECT pg_catalog.pg_extension_config_dump('cdp.tombstones', '');
-- every session's cached copy (the row check of cdp.events) is dropped at commit
CREATE TRIGGER tombstones_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON cdp.tombstones
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_changed();

CREATE FUNCTION cdp.erasure_key() RETURNS bytea
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k bytea := (SELECT e.key FROM cdp.erasure_key e);
BEGIN
	IF k IS NULL THEN
		-- the first erasure makes the key
		INSERT INTO cdp.erasure_key (key)
		VALUES (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')))
		ON CONFLICT (singleton) DO NOTHING;
		k := (SELECT e.key FROM cdp.erasure_key e);
	END IF;
	RETURN k;
END
$$;
COMMENT ON FUNCTION cdp.erasure_key() IS 'Internal: the tombstones'' key, made at the first call';

CREATE FUNCTION cdp.erasure_hash(kind text, value text) RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT encode(sha256(cdp.erasure_key() || convert_to(kind || ':' || value, 'UTF8')), 'hex') $$;
COMMENT ON FUNCTION cdp.erasure_hash(text, text) IS 'Internal: the keyed SHA-256 of an identifier (kind and normalized value), as the tombstones keep it';

-- The seed of the 64-bit hash: the key's first 8 bytes (the C row check
-- reads it with the tombstones and hashes the same bytes with
-- hash_any_extended, src/identity.c).
CREATE FUNCTION cdp.erasure_seed(key bytea) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ('x' || encode(substr(key, 1, 8), 'hex'))::bit(64)::bigint $$;
COMMENT ON FUNCTION cdp.erasure_seed(bytea) IS 'Internal: the seed of the tombstones'' 64-bit hash, from their key';

CREATE FUNCTION cdp.erasure_quick_hash(kind text, value text) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT hashtextextended(kind || ':' || value, cdp.erasure_seed(cdp.erasure_key())) $$;
COMMENT ON FUNCTION cdp.erasure_quick_hash(text, text) IS 'Internal: the 64-bit keyed hash of an identifier that the row check tests before the SHA-256';

CREATE FUNCTION cdp.store_forget_profiles(profiles bigint[], events bigint[]) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'cdp_store_forget_profiles' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.store_forget_profiles(bigint[], bigint[]) IS 'Internal, called by cdp.forget: the identity store deletes the identifiers of these profiles, the profiles, and every row of the graph that names them (links, anchors, conflicts, overrides, moves, merges), and the rejected identifiers of these events or of those values; returns the rows deleted per table';

-- The rows of the person that are not in the identity graph: per table,
-- the condition on its row r ($1 the profiles, $2 the identifiers, $3 the
-- events, $4 the identifiers' kinds and values).
CREATE FUNCTION cdp.forget_rows(profiles bigint[], ids bigint[], events bigint[], who jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n jsonb := '{}';
	c bigint;
	t record;
BEGIN
	FOR t IN SELECT * FROM (VALUES
		(1, 'events', 'r.event_id = ANY ($3)'),
		(2, 'event_messages', 'r.event_id = ANY ($3)'),
		-- quarantined rows that carry one of the identifiers, raw or normalized
		(3, 'rejected_events', 'EXISTS (SELECT FROM jsonb_each_text(CASE WHEN jsonb_typeof(r.raw->''identifiers'') = ''object'' '
		                       'THEN r.raw->''identifiers'' END) x, jsonb_to_recordset($4) AS p(kind text, value text) '
		                       'WHERE x.key = p.kind AND (cdp.check_identifier(x.key, x.value)).normalized = p.value) '
		                       'OR EXISTS (SELECT FROM jsonb_to_recordset($4) AS p(kind text, value text) '
		                       'WHERE strpos(lower(r.raw::text), lower(p.value)) > 0)'),
		(4, 'anchor_activity', 'r.anchor_id = ANY ($2)'),
		(5, 'anchor_products', 'r.anchor_id = ANY ($2)'),
		(6, 'anchor_interest', 'r.anchor_id = ANY ($2)'),
		(7, 'anchor_traits', 'r.anchor_id = ANY ($2)'),
		(8, 'anchor_touches', 'r.anchor_id = ANY ($2)'),
		(9, 'anchor_recent_events', 'r.anchor_id = ANY ($2)'),
		(10, 'journey_events', 'r.anchor_id = ANY ($2)'),
		(11, 'journey_breaks', 'r.profile_id = ANY ($1)'),
		(12, 'journey_pending', 'r.profile_id = ANY ($1)'),
		(13, 'rfm', 'r.profile_id = ANY ($1)'),
		(14, 'clv', 'r.profile_id = ANY ($1)'),
		(15, 'clv_validation', 'r.profile_id = ANY ($1)'),
		(16, 'consents', 'r.profile_id = ANY ($1) OR (r.kind, r.value) IN (SELECT p.kind, p.value FROM jsonb_to_recordset($4) AS p(kind text, value text))'),
		(17, 'outbox', 'r.profile_id = ANY ($1) OR r.contact_id IN (SELECT t.contact_id FROM cdp.contacts t '
		               'WHERE t.profile_id = ANY ($1) OR t.identifier_id = ANY ($2))'),
		(18, 'trigger_fires', 'r.profile_id = ANY ($1)'),
		(19, 'trigger_states', 'r.profile_id = ANY ($1)'),
		(20, 'contacts', 'r.profile_id = ANY ($1) OR r.identifier_id = ANY ($2)')) x(step, tbl, cond) ORDER BY step LOOP
		EXECUTE format('DELETE FROM cdp.%I r WHERE %s', t.tbl, t.cond) USING profiles, ids, events, who;
		GET DIAGNOSTICS c = ROW_COUNT;
		n := n || jsonb_build_object(t.tbl, c);
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION cdp.forget_rows(bigint[], bigint[], bigint[], jsonb) IS 'Internal, called by cdp.forget: deletes a person''s events and message ids, quarantined rows carrying one of their identifiers, profile-store facts, journeys, scores, consents, outbox messages, trigger firings and contacts; returns the rows deleted per table';

CREATE FUNCTION cdp.forget(kind text, value text, reason text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
	norm text;
	why text;
	live bigint;
	profiles bigint[];
	ids bigint[];
	who jsonb;
	events bigint[];
	counts jsonb;
	eid bigint;
BEGIN
	IF reason IS NULL OR btrim(reason) = '' THEN
		RAISE EXCEPTION 'an erasure needs a reason' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Give the request it answers, such as ''GDPR request 2026-118'' (no personal data: it is kept in cdp.erasures).';
	END IF;
	SELECT c.normalized, c.reason INTO norm, why FROM cdp.check_identifier(kind, value) c;
	IF norm IS NULL THEN
		RAISE EXCEPTION 'cannot erase identifier of kind "%": %', kind, coalesce(why, 'invalid')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Give an identifier kind of cdp.identity_rules and a value of that kind.';
	END IF;
	-- what bulk loads left queued is stitched first: the person is whole
	PERFORM cdp.stitch_queued();
	PERFORM pg_advisory_xact_lock(6513776, 29810);	-- the triggers'
	PERFORM pg_advisory_xact_lock(6513776, 27247);	-- the journeys'
	PERFORM pg_advisory_xact_lock(6513776, 26980);	-- stitching (src/identity.h)
	PERFORM pg_advisory_xact_lock(6513776, 28787);	-- the profile store's
	SELECT coalesce(p.merged_into, p.profile_id) INTO live
	FROM cdp.identifiers i JOIN cdp.profiles p ON p.profile_id = i.profile_id
	WHERE i.kind = kind AND i.value = norm;
	IF live IS NULL THEN
		IF EXISTS (SELECT FROM cdp.tombstones t WHERE t.hash = cdp.erasure_hash(kind, norm)) THEN
			RAISE EXCEPTION 'identifier of kind "%" was already erased', kind USING ERRCODE = 'no_data_found',
				HINT = 'cdp.tombstones keeps its keyed hash; cdp.erasures says when and why.';
		END IF;
		RAISE EXCEPTION 'no profile holds identifier of kind "%"', kind USING ERRCODE = 'no_data_found',
			HINT = 'Nothing to erase: cdp.resolve(kind, value) finds no profile.';
	END IF;
	profiles := ARRAY(SELECT p.profile_id FROM cdp.profiles p WHERE p.profile_id = live OR p.merged_into = live ORDER BY 1);
	ids := ARRAY(SELECT i.identifier_id FROM cdp.identifiers i WHERE i.profile_id = ANY (profiles) ORDER BY 1);
	who := (SELECT jsonb_agg(jsonb_build_object('kind', i.kind, 'value', i.value)) FROM cdp.identifiers i WHERE i.identifier_id = ANY (ids));
	-- their events: anchored to their identifiers, or linking or conflicting with them
	events := ARRAY(SELECT a.event_id FROM cdp.event_anchors a WHERE a.anchor_id = ANY (ids)
	                UNION SELECT l.event_id FROM cdp.identity_links l WHERE l.identifier_id = ANY (ids) OR l.anchor_id = ANY (ids)
	                UNION SELECT c.event_id FROM cdp.identity_conflicts c WHERE c.identifier_id = ANY (ids) OR c.profile_id = ANY (profiles));
	counts := cdp.forget_rows(profiles, ids, events, who);
	counts := counts || cdp.store_forget_profiles(profiles, events);
	INSERT INTO cdp.erasures (reason, profiles, identifiers, rows)
	VALUES (reason, cardinality(profiles), cardinality(ids), counts) RETURNING erasure_id INTO eid;
	INSERT INTO cdp.tombstones (hash, quick, kind, erasure_id, erased_at)
	SELECT cdp.erasure_hash(p.kind, p.value), cdp.erasure_quick_hash(p.kind, p.value), p.kind, eid, now()
	FROM jsonb_to_recordset(who) AS p(kind text, value text)
	ON CONFLICT (hash) DO NOTHING;
	RETURN jsonb_build_object('erasure_id', eid, 'profiles', cardinality(profiles), 'identifiers', cardinality(ids), 'rows', counts);
END
$$;
COMMENT ON FUNCTION cdp.forget(text, text, text) IS 'Erases the person who holds an identifier (the live profile and every profile merged into it), in one transaction: their events, identity graph, profile-store facts, journeys, scores, consents, contacts, outbox messages, trigger firings, and the quarantined rows and rejected identifiers carrying their identifiers; records an audit row without personal data (cdp.erasures) and keyed-hash tombstones of their identifiers (cdp.tombstones); returns what went';

CREATE FUNCTION cdp.forget_dry_run(kind text, value text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r jsonb;
	d text;
BEGIN
	BEGIN
		r := cdp.forget(kind, value, 'dry run');
		RAISE EXCEPTION 'cdp dry run' USING ERRCODE = 'P0001', DETAIL = r::text;
	EXCEPTION WHEN raise_exception THEN
		GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
		IF SQLERRM <> 'cdp dry run' THEN
			RAISE;
		END IF;
	END;
	RETURN (d::jsonb - 'erasure_id');
END
$$;
COMMENT ON FUNCTION cdp.forget_dry_run(text, text) IS 'What cdp.forget would erase for an identifier: the profiles, identifiers and rows per table, computed by erasing and rolling back (nothing changes)';
