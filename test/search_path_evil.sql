-- test/search_path_evil.sql: the schema evil of test/search_path.sh, a
-- planted copy of the built-ins cdp uses.  Each shadow has the signature of
-- a pg_catalog function, aggregate or operator, so that it wins over it
-- when evil comes first on the search_path; it records its call in
-- evil.calls (writable by anyone), raises a WARNING (seen even when the
-- caller's transaction is rolled back), then returns the real result.
-- psql variable names: the pg_catalog function names found in cdp's sources.
SET client_min_messages = warning;
SELECT pg_catalog.set_config('evil.names', :'names', false);

CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE TABLE evil.calls (fn text, query text, at timestamptz DEFAULT pg_catalog.clock_timestamp());
GRANT ALL ON evil.calls TO PUBLIC;
CREATE TABLE evil.shadows (kind text, shadowed text);

CREATE FUNCTION evil.ran(fn text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RAISE WARNING 'evil.% ran as %', fn, current_user;
	INSERT INTO evil.calls (fn, query) VALUES (fn, current_query());
END
$$;

-- Functions: every pg_catalog function of those names whose types are not
-- pseudo-types (record and void allowed), as a SQL function with the same
-- arguments, defaults and result.
DO $$
DECLARE
	r record;
	args text;
	call text;
BEGIN
	FOR r IN
		SELECT p.oid, p.proname, p.pronargs, p.provariadic <> 0 AS variadic,
			p.proretset OR p.proallargtypes IS NOT NULL AS tabular,
			pg_catalog.pg_get_function_arguments(p.oid) AS a, pg_catalog.pg_get_function_result(p.oid) AS res,
			p.oid::pg_catalog.regprocedure::text AS sig
		FROM pg_catalog.pg_proc p
		WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND p.prokind = 'f'
		  AND p.proname = ANY (pg_catalog.string_to_array(pg_catalog.current_setting('evil.names'), ','))
		  AND NOT EXISTS (SELECT FROM pg_catalog.unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]) || p.prorettype) u(t)
		                  JOIN pg_catalog.pg_type y ON y.oid = u.t
		                  WHERE y.typtype = 'p' AND y.typname NOT IN ('record', 'void'))
		  AND (p.prorettype <> 'pg_catalog.record'::pg_catalog.regtype OR p.proallargtypes IS NOT NULL)
	LOOP
		SELECT pg_catalog.string_agg(CASE WHEN r.variadic AND i = r.pronargs THEN 'VARIADIC ' ELSE '' END || '$' || i, ', ' ORDER BY i)
			INTO args FROM pg_catalog.generate_series(1, r.pronargs) i;
		call := CASE WHEN r.tabular THEN 'SELECT * FROM ' ELSE 'SELECT ' END
			|| 'pg_catalog.' || pg_catalog.quote_ident(r.proname) || '(' || coalesce(args, '') || ')';
		BEGIN
			EXECUTE pg_catalog.format('CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE sql VOLATILE '
				'SET search_path = pg_catalog, pg_temp AS %L',
				r.proname, r.a, r.res, 'SELECT evil.ran(' || pg_catalog.quote_literal(r.sig) || '); ' || call);
			INSERT INTO evil.shadows VALUES ('function', r.sig);
		EXCEPTION WHEN OTHERS THEN
			RAISE NOTICE 'no shadow of %: %', r.sig, SQLERRM;
		END;
	END LOOP;
END
$$;

-- The variadic "any" functions, through a text[] that wins over "any" when
-- every argument is text (or a literal).
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT * FROM (VALUES
		('jsonb_build_object', 'VARIADIC a text[]', 'jsonb', 'VARIADIC $1'),
		('jsonb_build_array', 'VARIADIC a text[]', 'jsonb', 'VARIADIC $1'),
		('json_build_object', 'VARIADIC a text[]', 'json', 'VARIADIC $1'),
		('concat', 'VARIADIC a text[]', 'text', 'VARIADIC $1'),
		('concat_ws', 'sep text, VARIADIC a text[]', 'text', '$1, VARIADIC $2'),
		('format', 'fmt text, VARIADIC a text[]', 'text', '$1, VARIADIC $2')) v(name, a, res, args)
		WHERE v.name = ANY (pg_catalog.string_to_array(pg_catalog.current_setting('evil.names'), ','))
	LOOP
		EXECUTE pg_catalog.format('CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE sql VOLATILE '
			'SET search_path = pg_catalog, pg_temp AS %L', r.name, r.a, r.res,
			pg_catalog.format('SELECT evil.ran(%L); SELECT pg_catalog.%I(%s)', r.name || '(' || r.a || ')', r.name, r.args));
		INSERT INTO evil.shadows VALUES ('function', r.name || '(' || r.a || ')');
	END LOOP;
END
$$;

-- Aggregates of one argument (count(*) too): each collects its input in an
-- array and hands it to the real aggregate; a polymorphic one (and count)
-- is shadowed for each of the usual types, an exact match winning over it.
CREATE FUNCTION evil.count_final(n bigint) RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$ SELECT evil.ran('count(*)'); SELECT n $$;
CREATE AGGREGATE evil.count(*) (sfunc = pg_catalog.int8inc, stype = bigint, initcond = '0', finalfunc = evil.count_final);
INSERT INTO evil.shadows VALUES ('aggregate', 'count(*)');
DO $$
DECLARE
	r record;
	res text;
	fin text;
BEGIN
	FOR r IN
		SELECT DISTINCT p.proname, t.typ
		FROM pg_catalog.pg_proc p
		JOIN pg_catalog.pg_aggregate g ON g.aggfnoid = p.oid AND g.aggkind = 'n'
		JOIN pg_catalog.pg_type y ON y.oid = p.proargtypes[0]
		CROSS JOIN LATERAL (SELECT CASE WHEN y.typtype <> 'p' THEN p.proargtypes[0]::pg_catalog.regtype::text END
		                    UNION SELECT u FROM pg_catalog.unnest('{bigint,integer,text,jsonb,"timestamp with time zone",numeric,boolean,"double precision",date,interval}'::text[]) u
		                    WHERE y.typtype = 'p') t(typ)
		WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace AND p.pronargs = 1 AND t.typ IS NOT NULL
		  AND p.proname = ANY (pg_catalog.string_to_array(pg_catalog.current_setting('evil.names'), ','))
		  AND (y.typtype <> 'p' OR y.typname IN ('anyelement', 'anynonarray', 'anycompatible', 'anycompatiblenonarray', 'any'))
		ORDER BY 1, 2
	LOOP
		BEGIN
			EXECUTE pg_catalog.format('SELECT pg_catalog.pg_typeof(pg_catalog.%I(NULL::%s))::text', r.proname, r.typ) INTO res;
			fin := 'agg_' || r.proname || '_' || pg_catalog.replace(r.typ, ' ', '_');
			EXECUTE pg_catalog.format('CREATE FUNCTION evil.%I(a %s[]) RETURNS %s LANGUAGE sql VOLATILE '
				'SET search_path = pg_catalog, pg_temp AS %L', fin, r.typ, res,
				pg_catalog.format('SELECT evil.ran(%L); SELECT pg_catalog.%I(x) FROM pg_catalog.unnest(a) x',
				                  r.proname || '(' || r.typ || ')', r.proname));
			EXECUTE pg_catalog.format('CREATE AGGREGATE evil.%I(%s) (sfunc = pg_catalog.array_append, stype = %s[], '
				'initcond = ''{}'', finalfunc = evil.%I)', r.proname, r.typ, r.typ, fin);
			INSERT INTO evil.shadows VALUES ('aggregate', r.proname || '(' || r.typ || ')');
		EXCEPTION WHEN OTHERS THEN
			RAISE NOTICE 'no shadow of aggregate %(%): %', r.proname, r.typ, SQLERRM;
		END;
	END LOOP;
END
$$;

-- string_agg(text, text): pairs of value and delimiter in one array.
CREATE FUNCTION evil.string_agg_step(s text[], v text, d text) RETURNS text[]
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT s || ARRAY[v, d] $$;
CREATE FUNCTION evil.string_agg_final(s text[]) RETURNS text
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
SELECT evil.ran('string_agg(text,text)');
SELECT pg_catalog.string_agg(s[2 * i - 1], s[2 * i] ORDER BY i) FROM pg_catalog.generate_series(1, pg_catalog.array_length(s, 1) / 2) i
$$;
CREATE AGGREGATE evil.string_agg(text, text) (sfunc = evil.string_agg_step, stype = text[], initcond = '{}',
	finalfunc = evil.string_agg_final);
INSERT INTO evil.shadows VALUES ('aggregate', 'string_agg(text,text)');

-- Operators: every pg_catalog operator of these names whose operand and
-- result types are not pseudo-types (= and || on text among them; LIKE,
-- IN, BETWEEN and CASE find theirs by name too).
DO $$
DECLARE
	r record;
	fn text;
BEGIN
	FOR r IN
		SELECT o.oid, o.oprname, o.oprleft, o.oprright, o.oprresult
		FROM pg_catalog.pg_operator o
		WHERE o.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace
		  AND o.oprname IN ('=', '<>', '<', '<=', '>', '>=', '||', '->', '->>', '#>', '#>>', '@>', '<@', '?', '?|', '?&',
		                    '+', '-', '*', '/', '%', '&', '|', '~~', '~~*', '!~~', '~', '~*', '!~', '&&', '#-')
		  AND NOT EXISTS (SELECT FROM pg_catalog.pg_type y WHERE y.oid IN (o.oprleft, o.oprright, o.oprresult) AND y.typtype = 'p')
	LOOP
		fn := 'op_' || r.oid;
		BEGIN
			IF r.oprleft = 0 THEN
				EXECUTE pg_catalog.format('CREATE FUNCTION evil.%I(b %s) RETURNS %s LANGUAGE sql VOLATILE '
					'SET search_path = pg_catalog, pg_temp AS %L', fn, r.oprright::pg_catalog.regtype, r.oprresult::pg_catalog.regtype,
					pg_catalog.format('SELECT evil.ran(%L); SELECT OPERATOR(pg_catalog.%s) b',
					                  r.oprname || ' ' || r.oprright::pg_catalog.regtype, r.oprname));
				EXECUTE pg_catalog.format('CREATE OPERATOR evil.%s (RIGHTARG = %s, FUNCTION = evil.%I)',
					r.oprname, r.oprright::pg_catalog.regtype, fn);
			ELSE
				EXECUTE pg_catalog.format('CREATE FUNCTION evil.%I(a %s, b %s) RETURNS %s LANGUAGE sql VOLATILE '
					'SET search_path = pg_catalog, pg_temp AS %L', fn, r.oprleft::pg_catalog.regtype,
					r.oprright::pg_catalog.regtype, r.oprresult::pg_catalog.regtype,
					pg_catalog.format('SELECT evil.ran(%L); SELECT a OPERATOR(pg_catalog.%s) b',
					                  r.oprleft::pg_catalog.regtype || ' ' || r.oprname || ' ' || r.oprright::pg_catalog.regtype, r.oprname));
				EXECUTE pg_catalog.format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.%I)',
					r.oprname, r.oprleft::pg_catalog.regtype, r.oprright::pg_catalog.regtype, fn);
			END IF;
			INSERT INTO evil.shadows VALUES ('operator', r.oid::pg_catalog.regoperator::text);
		EXCEPTION WHEN OTHERS THEN
			RAISE NOTICE 'no shadow of operator %: %', r.oid::pg_catalog.regoperator, SQLERRM;
		END;
	END LOOP;
END
$$;

GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA evil TO PUBLIC;
