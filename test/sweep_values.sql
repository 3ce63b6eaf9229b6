-- test/sweep_values.sql: typical, empty and extreme argument values (SQL
-- text) for the generated calls of test/null_sweep.sql and
-- test/search_path.sql, as functions of pg_temp.

-- A typical value (SQL text) of argument ARG of type TYP of function FN.
CREATE FUNCTION pg_temp.typical(fn text, arg text, typ regtype) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE
	WHEN arg IN ('params', 'spend_params') AND (fn LIKE 'gamma_gamma%' OR arg = 'spend_params')
		THEN '''{"model": "gamma_gamma", "p": 6.25, "q": 3.74, "gamma": 15.44}'''
	WHEN arg = 'params' AND fn LIKE 'pareto%'
		THEN '''{"model": "pareto_nbd", "r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}'''
	WHEN arg = 'params' THEN '''{"model": "bgnbd", "r": 0.24, "alpha": 4.41, "a": 0.79, "b": 2.43}'''
	WHEN arg = 'identifiers' THEN '''{"email": "ann@example.com", "phone": "07700 900123"}'''
	WHEN arg = 'events' THEN '''[{"occurred_at": "2025-03-01T10:00:00Z", "channel": "web", "type": "product_view", "identifiers": {"email": "ann@example.com"}}]'''
	WHEN arg = 'kind' THEN '''email'''
	WHEN arg = 'value' THEN '''ann@example.com'''
	WHEN arg IN ('phone') THEN '''07700 900123'''
	WHEN arg IN ('email') THEN '''Ann@Example.com'''
	WHEN arg = 'country' THEN '''GB'''
	WHEN arg = 'channel' THEN '''web'''
	WHEN arg = 'type' THEN '''purchase'''
	WHEN arg IN ('funnel', 'funnel_id') THEN '''cart'''
	WHEN arg = 'path_of' THEN '''type'''
	WHEN arg = 'model' THEN '''bgnbd'''
	WHEN arg = 'days' THEN '''public.sweep_days'''
	WHEN arg = 'survivor' THEN '(SELECT min(profile_id) FROM cdp.profiles WHERE merged_into IS NULL)'
	WHEN arg = 'absorbed' THEN '(SELECT max(profile_id) FROM cdp.profiles WHERE merged_into IS NULL)'
	WHEN arg = 'merge_id' THEN '(SELECT max(merge_id) FROM cdp.profile_merges)'
	WHEN arg = 'event_id' THEN '(SELECT min(event_id) FROM cdp.events)'
	WHEN arg = 'profile_ids' THEN 'ARRAY(SELECT profile_id FROM cdp.profiles ORDER BY 1 LIMIT 5)'
	WHEN arg IN ('from_time', 'started_from', 'since') THEN '''2025-01-01'''
	WHEN arg IN ('to_time', 'started_to') THEN '''2025-12-31'''
	WHEN arg = 'older_than' THEN '''2025-02-01'''
	WHEN arg = 'calibration_end' THEN '''2025-09-30'''
	WHEN arg = 'holdout_end' THEN '''2025-12-31'''
	WHEN arg IN ('calibration') THEN '''270 days'''
	WHEN arg = 'horizon' AND typ = 'interval'::regtype THEN '''365 days'''
	WHEN arg = 'half_life' THEN '''30 days'''
	WHEN arg = 'timeout' THEN '''30 minutes'''
	WHEN arg = 'x' THEN '2'
	WHEN arg = 't_x' THEN '30'
	WHEN arg = 't' THEN '38'
	WHEN arg = 'avg_value' THEN '20'
	WHEN arg = 'periods' THEN '12'
	WHEN arg = 'period_length' THEN '4'
	WHEN arg IN ('discount_rate', 'annual_discount') THEN '0.01'
	WHEN arg = 'length' THEN '3'
	WHEN arg = 'n' THEN '10'
	WHEN typ = 'timestamptz'::regtype THEN '''2025-09-30 12:00:00+00'''
	WHEN typ = 'interval'::regtype THEN '''30 days'''
	WHEN typ = 'boolean'::regtype THEN 'false'
	WHEN typ = 'jsonb'::regtype THEN '''{"sku": "p1"}'''
	WHEN typ IN ('text'::regtype, 'character varying'::regtype) THEN '''sweep'''
	WHEN typ = 'bigint[]'::regtype THEN '''{1,2}'''
	WHEN typ = 'regclass'::regtype THEN '''cdp.events'''
	WHEN typ = 'bytea'::regtype THEN '''\x00'''
	ELSE '1'
END
$$;

-- Empty and extreme values (SQL text) of a type, with a label each.
CREATE FUNCTION pg_temp.unusual(typ regtype, OUT label text, OUT val text) RETURNS SETOF record
LANGUAGE sql IMMUTABLE AS $$
SELECT v.label, v.val FROM (VALUES
	('text'::regtype, 'empty string', ''''''),
	('text', 'blank string', '''   '''),
	('text', '1 MB string', 'repeat(''x'', 1000000)'),
	('text', 'control characters', 'E''\t\n\u00e9\x01'''),
	('jsonb', 'empty object', '''{}'''),
	('jsonb', 'empty array', '''[]'''),
	('jsonb', 'json null', '''null'''),
	('jsonb', 'json string', '''"x"'''),
	('jsonb', 'array nested 10000 deep', 'repeat(''['', 10000) || repeat('']'', 10000)'),
	('jsonb', 'object nested 1000 deep', 'repeat(''{"a": '', 1000) || ''1'' || repeat(''}'', 1000)'),
	('jsonb', 'object of 10000 long keys', '(SELECT jsonb_object_agg(repeat(''k'', 100) || g, repeat(''v'', 100)) FROM generate_series(1, 10000) g)'),
	('jsonb', 'object of odd values', '''{"model": "bgnbd", "email": [1], "phone": {"a": null}, "x": 1e300, "r": -1, "alpha": "NaN", "a": null, "b": true, "p": 0, "q": 1e-300, "gamma": -0.0}'''),
	('timestamptz', 'infinity', '''infinity'''),
	('timestamptz', '-infinity', '''-infinity'''),
	('timestamptz', 'year 294276', '''294276-12-31 23:59:59+00'''),
	('timestamptz', '4713 BC', '''4713-01-01 00:00:00+00 BC'''),
	('interval', 'zero', '''0'''),
	('interval', 'negative', '''-30 days'''),
	('interval', 'huge', '''178000000 years'''),
	('interval', 'huge negative', '''-178000000 years'''),
	('double precision', 'zero', '0'),
	('double precision', 'negative', '-1'),
	('double precision', 'huge', '1e308'),
	('double precision', 'huge negative', '-1e308'),
	('double precision', 'tiny', '1e-308'),
	('double precision', 'NaN', '''NaN'''),
	('double precision', 'Infinity', '''Infinity'''),
	('double precision', '-Infinity', '''-Infinity'''),
	('numeric', 'zero', '0'),
	('numeric', 'huge', '1e100'),
	('numeric', 'huge negative', '-1e100'),
	('numeric', 'NaN', '''NaN'''),
	('integer', 'zero', '0'),
	('integer', 'negative', '-1'),
	('integer', 'max', '2147483647'),
	('integer', 'min', '-2147483648'),
	('bigint', 'zero', '0'),
	('bigint', 'negative', '-1'),
	('bigint', 'max', '9223372036854775807'),
	('bigint', 'min', '-9223372036854775808'),
	('bigint[]', 'empty array', '''{}'''),
	('bigint[]', 'array of NULL', '''{NULL}'''),
	('bigint[]', 'extreme elements', '''{-9223372036854775808,9223372036854775807,0}'''),
	('bigint[]', '2-D array', '''{{1,2},{3,4}}'''),
	('bigint[]', '100000 elements', 'ARRAY(SELECT generate_series(1, 100000))::bigint[]'),
	('boolean', 'true', 'true'),
	('regclass', 'a table of the wrong shape', '''cdp.funnels'''),
	('regclass', 'a view', '''cdp.event_partitions''')
) v(t, label, val) WHERE t = typ
$$;
