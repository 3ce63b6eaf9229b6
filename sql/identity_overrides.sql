-- Decisions by hand: cdp.unmerge splits a merge and keeps the two apart,
-- cdp.merge_profiles merges (within the limits, or forced), both journaled,
-- honoured by later stitching and by every rebuild; cdp.profile_at reads
-- the journals back in time.
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET client_min_messages = warning;	-- the rebuild's progress notices
-- a graph of its own, with ids from 1
DROP EXTENSION cdp CASCADE;
CREATE EXTENSION cdp;

CREATE TEMP VIEW graph AS
SELECT string_agg(i.kind || '=' || i.value, ', ' ORDER BY i.kind, i.value) AS identifiers
FROM cdp.identifiers i JOIN cdp.profiles p USING (profile_id)
WHERE p.merged_into IS NULL GROUP BY p.profile_id ORDER BY 1;
-- every identifier on a live profile, no live profile forwarding
CREATE TEMP VIEW invariants AS
SELECT (SELECT count(*) FROM cdp.identifiers i JOIN cdp.profiles p USING (profile_id) WHERE p.merged_into IS NOT NULL) AS on_dead_profiles,
       (SELECT count(*) FROM cdp.profiles p JOIN cdp.profiles q ON q.profile_id = p.merged_into WHERE q.merged_into IS NOT NULL) AS chains;

-- Two customers, and an app user known by device and e-mail
SELECT cdp.track('2025-05-01 10:00', 'web', 'login', '{"cookie": "c-1", "customer_id": "A-1"}') > 0 AS ok;
SELECT cdp.track('2025-05-01 11:00', 'web', 'login', '{"cookie": "c-2", "customer_id": "B-2"}') > 0 AS ok;
SELECT cdp.track('2025-05-01 12:00', 'app', 'login', '{"device_id": "d-9", "email": "eve@x.org"}') > 0 AS ok;
-- Eve reads her mail on B's computer: the e-mail joins B's cookie, and the profiles merge
SELECT cdp.track('2025-05-02 09:00', 'web', 'email_click', '{"cookie": "c-2", "email": "eve@x.org"}') > 0 AS ok;
SELECT * FROM graph;
SELECT merge_id, survivor = cdp.resolve('customer_id', 'B-2') AS into_b, method FROM cdp.profile_merges;

-- Undo it: Eve's identifiers go back to her own profile (the one that was absorbed)
CREATE TEMP TABLE undone AS SELECT * FROM cdp.unmerge(1, 'shared computer');
SELECT survivor = cdp.resolve('customer_id', 'B-2') AS b_kept,
       restored = cdp.resolve('device_id', 'd-9') AS eve_back,
       restored = (SELECT absorbed FROM cdp.profile_merges WHERE merge_id = 1) AS same_id_as_before,
       moved
FROM undone;
SELECT * FROM graph;
SELECT undone_at IS NOT NULL AS undone FROM cdp.profile_merges WHERE merge_id = 1;
SELECT action, merge_id, reason, made_by = current_user AS by_me, lifted_at IS NULL AS in_force FROM cdp.identity_overrides;
SELECT i.kind, i.value, m.cause FROM cdp.identifier_moves m JOIN cdp.identifiers i USING (identifier_id) ORDER BY m.move_id;
SELECT * FROM invariants;

-- Bad calls (the first one's detail says when: not shown)
\set VERBOSITY terse
SELECT * FROM cdp.unmerge(1);
\set VERBOSITY default
SELECT * FROM cdp.unmerge(999);
SELECT * FROM cdp.unmerge(NULL);

-- New evidence does not merge them again: the link is refused and recorded
SELECT cdp.track('2025-05-03 09:00', 'web', 'page_view', '{"device_id": "d-9", "cookie": "c-2"}') > 0 AS ok;
SELECT cdp.resolve('cookie', 'c-2') <> cdp.resolve('device_id', 'd-9') AS still_apart;
SELECT c.reason, i.kind, i.value FROM cdp.identity_conflicts c JOIN cdp.identifiers i USING (identifier_id);
-- and a rebuild gives the same profiles
SELECT identifiers, profiles, changed FROM cdp.rebuild_identities();

-- Merges by hand: checked, journaled
SELECT cdp.merge_profiles(cdp.resolve('customer_id', 'B-2'), cdp.resolve('device_id', 'd-9'), NULL);
SELECT cdp.merge_profiles(cdp.resolve('customer_id', 'B-2'), cdp.resolve('cookie', 'c-2'), 'same');
SELECT cdp.merge_profiles(cdp.resolve('customer_id', 'B-2'), 424242, 'unknown');
-- force must not be NULL: a clear error, not a constraint of an internal table
DO $$
DECLARE
	st text;
	msg text;
	hint text;
BEGIN
	PERFORM cdp.merge_profiles(cdp.resolve('customer_id', 'A-1'), cdp.resolve('customer_id', 'B-2'), 'household', force => NULL);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RAISE WARNING '%: % (%)', st, msg, hint;
END
$$;
SELECT cdp.merge_profiles(cdp.resolve('customer_id', 'A-1'), cdp.resolve('customer_id', 'B-2'), 'household');
-- Eve calls and confirms she is B's partner using B's account: merge by hand (overrules the unmerge)
SELECT cdp.merge_profiles(cdp.resolve('customer_id', 'B-2'), cdp.resolve('device_id', 'd-9'), 'confirmed by phone') AS hand_merge;
SELECT * FROM graph;
SELECT action, merge_id, lifted_at IS NULL AS in_force FROM cdp.identity_overrides ORDER BY override_id;
SELECT survivor = cdp.resolve('customer_id', 'B-2') AS into_b, method, reason FROM cdp.profile_merges WHERE merge_id = 2;
SELECT identifiers, profiles, changed FROM cdp.rebuild_identities();

-- Forced past the limit: one profile with two customer ids, which then takes no third
SELECT cdp.merge_profiles(cdp.resolve('customer_id', 'A-1'), cdp.resolve('customer_id', 'B-2'), 'household', force => true) AS forced;
SELECT cdp.track('2025-05-04 09:00', 'web', 'login', '{"customer_id": "C-3", "cookie": "c-1"}') > 0 AS ok;
SELECT * FROM graph;
SELECT identifiers, profiles, changed FROM cdp.rebuild_identities();
SELECT * FROM invariants;

-- Undoing the forced merge restores A's profile as it was
TRUNCATE undone;
INSERT INTO undone SELECT * FROM cdp.unmerge(3, 'not one household after all');
SELECT survivor = cdp.resolve('customer_id', 'A-1') AS a_kept,
       restored = cdp.resolve('customer_id', 'B-2') AS b_back,
       restored = (SELECT absorbed FROM cdp.profile_merges WHERE merge_id = 3) AS same_id_as_before, moved
FROM undone;
-- every merged-away profile forwards to where its first identifier is
SELECT p.profile_id, p.merged_into = (SELECT i.profile_id FROM cdp.identifiers i WHERE i.initial_profile_id = p.profile_id
                                      ORDER BY i.identifier_id LIMIT 1) AS forwards_right
FROM cdp.profiles p WHERE p.merged_into IS NOT NULL ORDER BY 1;
SELECT * FROM graph;
SELECT identifiers, profiles, changed FROM cdp.rebuild_identities();
SELECT * FROM invariants;

-- Where was Eve's e-mail? Born in her profile, merged into B's, back, merged by hand, ...
SELECT (SELECT cdp.profile_at('email', 'EVE@x.org', stitched_at - interval '1 second') FROM cdp.identifiers WHERE value = 'eve@x.org') IS NULL AS unknown_before,
       cdp.profile_at('email', 'eve@x.org', (SELECT stitched_at FROM cdp.identifiers WHERE value = 'eve@x.org'))
         = (SELECT absorbed FROM cdp.profile_merges WHERE merge_id = 1) AS own_profile_first,
       cdp.profile_at('email', 'eve@x.org', (SELECT merged_at FROM cdp.profile_merges WHERE merge_id = 1))
         = (SELECT survivor FROM cdp.profile_merges WHERE merge_id = 1) AS then_b,
       cdp.profile_at('email', 'eve@x.org', (SELECT moved_at FROM cdp.identifier_moves WHERE cause = 'unmerge 1' LIMIT 1))
         = (SELECT absorbed FROM cdp.profile_merges WHERE merge_id = 1) AS back_after_unmerge,
       cdp.profile_at('email', 'eve@x.org', clock_timestamp()) = cdp.resolve('email', 'eve@x.org') AS now_current,
       cdp.profile_at('email', 'nobody@x.org', clock_timestamp()) IS NULL AS unknown_value;
