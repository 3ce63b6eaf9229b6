-- test/null_sweep.sql: the calls of test/null_sweep.sh, generated from
-- pg_proc. One row per call: function, what is tried, statement (one line).
SET client_min_messages = warning;

\ir sweep_values.sql

WITH fns AS (
	SELECT p.oid, p.proname, p.prokind, p.oid::regprocedure::text AS sig,
		ARRAY(SELECT unnest(p.proargtypes::oid[])::regtype) AS types, p.pronargs,
		coalesce((SELECT array_agg(n ORDER BY i) FROM unnest(p.proargnames, p.proargmodes) WITH ORDINALITY u(n, m, i)
			WHERE m IS NULL OR m IN ('i', 'b', 'v')), p.proargnames) AS names
	FROM pg_proc p
	WHERE p.pronamespace = 'cdp'::regnamespace
	  AND p.prorettype <> 'trigger'::regtype
	  AND NOT 'internal'::regtype = ANY (p.proargtypes::regtype[])
),
args AS (
	SELECT f.*, i, f.types[i] AS typ, coalesce(f.names[i], '') AS arg,
		pg_temp.typical(f.proname, coalesce(f.names[i], ''), f.types[i]) AS typical
	FROM fns f, generate_series(1, f.pronargs) i
),
variants AS (
	-- position i NULL, then each unusual value of its type; for aggregates also
	-- NULL in every other row, and no row at all
	SELECT a.oid, a.i, 'NULL' AS label, 'NULL' AS val, 'all' AS rows FROM args a
	UNION ALL
	SELECT a.oid, a.i, u.label, u.val, 'all' FROM args a, pg_temp.unusual(a.typ) u
	UNION ALL
	SELECT a.oid, a.i, 'NULL in every other row', 'NULL', 'alternate' FROM args a WHERE a.prokind = 'a'
	UNION ALL
	SELECT f.oid, 0, 'no row', NULL, 'none' FROM fns f WHERE f.prokind = 'a'
	UNION ALL
	SELECT f.oid, 0, 'typical values', NULL, 'all' FROM fns f
),
calls AS (
	SELECT f.sig, f.prokind, v.i, v.label, v.rows,
		(SELECT string_agg(
			'(' || CASE
				WHEN a.i = v.i AND v.rows = 'alternate' THEN 'CASE WHEN g % 2 = 0 THEN NULL ELSE ' || a.typical || ' END'
				WHEN a.i = v.i THEN v.val
				ELSE a.typical END || ')::' || format_type(a.typ, NULL), ', ' ORDER BY a.i)
		 FROM args a WHERE a.oid = f.oid) AS arglist,
		(SELECT a.arg FROM args a WHERE a.oid = f.oid AND a.i = v.i) AS arg,
		f.oid::regproc::text AS fname
	FROM fns f JOIN variants v ON v.oid = f.oid
)
SELECT sig,
	CASE WHEN i = 0 THEN sig || ' with ' || label
		ELSE sig || ' with ' || coalesce(nullif(arg, ''), '$' || i) || ' ' || label END,
	CASE prokind
		WHEN 'a' THEN 'SELECT ' || fname || '(' || coalesce(arglist, '') || ') FROM generate_series(1, '
			|| CASE rows WHEN 'none' THEN '0' ELSE '4' END || ') g'
		WHEN 'w' THEN 'SELECT max(s) FROM (SELECT ' || fname || '(' || coalesce(arglist, '') || ') OVER (ORDER BY g) AS s FROM generate_series(1, 4) g) w'
		WHEN 'p' THEN 'CALL ' || fname || '(' || coalesce(arglist, '') || ')'
		ELSE 'SELECT count(*) FROM ' || fname || '(' || coalesce(arglist, '') || ')'
	END
FROM calls
ORDER BY sig, i, label;
