\echo Use "ALTER EXTENSION cdp UPDATE TO '0.2.0'" to load this file. \quit

-- Identity (null sweep): cdp.merge_profiles refuses a NULL force with a clear error
CREATE OR REPLACE FUNCTION cdp.merge_profiles(survivor bigint, absorbed bigint, reason text, force boolean DEFAULT false)
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
	INSERT INTO cdp.profile_merges (survivor, absorbed, anchor_id, identifier_id, method, reason)
	VALUES (s, a, rep_s, rep_a, 'hand', reason) RETURNING merge_id INTO mid;
	INSERT INTO cdp.identity_overrides (action, merge_id, identifier_a, identifier_b, after_event_id, force, reason)
	VALUES ('merge', mid, rep_s, rep_a, last_id, force, reason);

	UPDATE cdp.profiles SET merged_into = s, merged_at = now() WHERE profile_id = a;
	UPDATE cdp.profiles SET merged_into = s WHERE merged_into = a;
	UPDATE cdp.identifiers SET profile_id = s WHERE profile_id = a;
	RETURN mid;
END
$$;
