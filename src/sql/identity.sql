
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
	anchor_id   bigint      NOT NULL,
	batch_id    bigint
);
COMMENT ON TABLE cdp.event_anchors IS 'Anchor identifier of every stored event that has one; its profile is the anchor''s (cdp.identifiers.profile_id), so merges never touch this table';
COMMENT ON COLUMN cdp.event_anchors.event_id IS 'Event';
COMMENT ON COLUMN cdp.event_anchors.occurred_at IS 'When the event occurred (copied for time-range joins)';
COMMENT ON COLUMN cdp.event_anchors.anchor_id IS 'Its anchor identifier: the one of highest priority among its valid identifiers';
COMMENT ON COLUMN cdp.event_anchors.batch_id IS 'The cdp.stitch_batches batch that stitched it (NULL: stitched before 0.2.0), so that the work that follows stitching takes each event once';
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

-- Configuration is checked when it is written: a bad row would otherwise
-- make every later load or rebuild fail.

CREATE FUNCTION cdp.identifier_blocklist_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	msg text;
BEGIN
	IF NEW.is_pattern THEN
		BEGIN
			-- compiled as identity resolution uses it: lower-cased, C collation
			PERFORM '' COLLATE "C" ~ lower(NEW.value);
		EXCEPTION WHEN invalid_regular_expression THEN
			GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
			RAISE EXCEPTION 'blocklist pattern "%" for % is not a valid regular expression',
				NEW.value, coalesce('kind ' || NEW.kind, 'every kind')
				USING ERRCODE = 'invalid_regular_expression',
				      DETAIL = format('Lower-cased, as it is matched, it gives: %s.', msg),
				      HINT = 'Write a PostgreSQL regular expression that stays valid in lower case, or set is_pattern to false for an exact value.';
		END;
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION cdp.identifier_blocklist_check() IS 'Trigger: refuses a blocklist pattern that is not a valid regular expression once lower-cased';
CREATE TRIGGER identifier_blocklist_check BEFORE INSERT OR UPDATE ON cdp.identifier_blocklist
	FOR EACH ROW EXECUTE FUNCTION cdp.identifier_blocklist_check();

-- At most CDP_IDGRAPH_MAX_KINDS (src/core/idgraph.h) kinds have a rule.
CREATE FUNCTION cdp.identity_rules_limit() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	SELECT count(*) INTO n FROM cdp.identity_rules;
	IF n > 64 THEN
		RAISE EXCEPTION 'identity rule "%" would make % kinds in cdp.identity_rules, more than 64', NEW.kind, n
			USING ERRCODE = 'program_limit_exceeded',
			      HINT = 'Identity resolution handles at most 64 identifier kinds: delete the rules of kinds you no longer use, or leave rare kinds without a rule (they are then ignored).';
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION cdp.identity_rules_limit() IS 'Constraint trigger: refuses a rule that makes cdp.identity_rules hold more than 64 kinds';
CREATE CONSTRAINT TRIGGER identity_rules_limit AFTER INSERT ON cdp.identity_rules
	DEFERRABLE INITIALLY IMMEDIATE FOR EACH ROW EXECUTE FUNCTION cdp.identity_rules_limit();

CREATE CONSTRAINT TRIGGER identity_rules_not_empty AFTER DELETE ON cdp.identity_rules
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cdp.config_not_empty('kind', 'identity rule');
CREATE TRIGGER identity_rules_no_truncate BEFORE TRUNCATE ON cdp.identity_rules
	FOR EACH STATEMENT EXECUTE FUNCTION cdp.config_not_empty('kind', 'identity rule');

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

CREATE FUNCTION cdp.store_hand_merge(survivor bigint, absorbed bigint, anchor_id bigint,
                                     identifier_id bigint, reason text)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_store_hand_merge' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.store_hand_merge(bigint, bigint, bigint, bigint, text) IS 'Internal, called by cdp.merge_profiles once it has checked the merge: the identity store journals a merge by hand in cdp.profile_merges and forwards profile absorbed (its identifiers and the profiles that forwarded to it) to survivor; returns the merge_id';

CREATE FUNCTION cdp.store_forget_anchors(from_time timestamptz, to_time timestamptz)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'cdp_store_forget_anchors' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION cdp.store_forget_anchors(timestamptz, timestamptz) IS 'Internal, called by cdp.drop_partitions after it dropped a partition: the identity store deletes the anchors of the events of [from_time, to_time); returns how many';

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
	IF force IS NULL THEN
		RAISE EXCEPTION 'force must not be null'
			USING ERRCODE = 'null_value_not_allowed',
			      HINT = 'Pass force => false to keep the limits of cdp.identity_rules, or force => true to merge past them.';
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
	-- the identity store journals the merge and forwards absorbed to survivor
	mid := cdp.store_hand_merge(s, a, rep_s, rep_a, reason);
	INSERT INTO cdp.identity_overrides (action, merge_id, identifier_a, identifier_b, after_event_id, force, reason)
	VALUES ('merge', mid, rep_s, rep_a, last_id, force, reason);
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
