-- test/search_path.sql: the calls of test/search_path.sh, generated from
-- pg_proc: every function of schema cdp (aggregates, window functions and
-- procedures included; trigger functions are fired by the data load, those
-- of type internal through their aggregates) once, with the typical values
-- of test/sweep_values.sql.  The values are computed here, under the normal
-- search_path, and written as literals: the call itself then runs nothing
-- but the cdp function.  One row per call: function, statement (one line).
SET client_min_messages = warning;

\ir sweep_values.sql

-- The typical value of an argument as a literal of its type (for an array
-- type without one, an array of the element's; NULL when neither fits).
CREATE FUNCTION pg_temp.literal(fn text, arg text, typ regtype) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v text;
	elem regtype := (SELECT nullif(t.typelem, 0) FROM pg_type t WHERE t.oid = typ AND t.typcategory = 'A');
BEGIN
	BEGIN
		EXECUTE format('SELECT (%s)::%s::text', pg_temp.typical(fn, arg, typ), format_type(typ, NULL)) INTO v;
	EXCEPTION WHEN OTHERS THEN
		IF elem IS NULL THEN
			RETURN 'NULL::' || format_type(typ, NULL);
		END IF;
		BEGIN
			EXECUTE format('SELECT ARRAY[(%s)::%s]::text', pg_temp.typical(fn, arg, elem), format_type(elem, NULL)) INTO v;
		EXCEPTION WHEN OTHERS THEN
			RETURN 'NULL::' || format_type(typ, NULL);
		END;
	END;
	RETURN quote_nullable(v) || '::' || format_type(typ, NULL);
END
$$;

WITH fns AS (
	SELECT p.oid, p.proname, p.prokind, p.oid::regprocedure::text AS sig, p.oid::regproc::text AS fname,
		ARRAY(SELECT unnest(p.proargtypes::oid[])::regtype) AS types, p.pronargs,
		coalesce((SELECT array_agg(n ORDER BY i) FROM unnest(p.proargnames, p.proargmodes) WITH ORDINALITY u(n, m, i)
			WHERE m IS NULL OR m IN ('i', 'b', 'v')), p.proargnames) AS names
	FROM pg_proc p
	WHERE p.pronamespace = 'cdp'::regnamespace
	  AND p.prorettype <> 'trigger'::regtype
	  AND NOT 'internal'::regtype = ANY (p.proargtypes::regtype[])
),
args AS (
	SELECT f.oid, string_agg(pg_temp.literal(f.proname, coalesce(f.names[i], ''), f.types[i]),
		', ' ORDER BY i) AS arglist
	FROM fns f, generate_series(1, f.pronargs) i
	GROUP BY f.oid
)
SELECT f.sig,
	CASE f.prokind
		WHEN 'a' THEN 'SELECT ' || f.fname || '(' || coalesce(a.arglist, '') || ') FROM (VALUES (1), (2), (3), (4)) g(g)'
		WHEN 'w' THEN 'SELECT ' || f.fname || '(' || coalesce(a.arglist, '') || ') OVER (ORDER BY g) FROM (VALUES (1), (2), (3), (4)) g(g)'
		WHEN 'p' THEN 'CALL ' || f.fname || '(' || coalesce(a.arglist, '') || ')'
		ELSE 'SELECT ' || f.fname || '(' || coalesce(a.arglist, '') || ')'
	END
FROM fns f LEFT JOIN args a ON a.oid = f.oid
ORDER BY f.sig;
