-- Scoring: RFM segments and lifetime-value models on hand-made purchases
-- (the published CDNOW figures are checked by test/scoring_cdnow.sh).
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET extra_float_digits = 0;
DROP EXTENSION cdp CASCADE;
CREATE EXTENSION cdp;

-- Five customers over a year, on several channels; Dan returns a purchase
SELECT count(cdp.track(t, ch, ty, ids::jsonb, '{}', amt)) AS events FROM (VALUES
	('2025-01-10 10:00'::timestamptz, 'web',   'purchase', '{"customer_id": "ann"}', 120),
	('2025-04-02 10:00', 'store', 'purchase', '{"loyalty_card": "L-ann", "customer_id": "ann"}', 80),
	('2025-09-20 10:00', 'app',   'purchase', '{"customer_id": "ann"}', 200),
	('2025-12-20 10:00', 'web',   'purchase', '{"customer_id": "ann"}', 150),
	('2025-12-28 10:00', 'store', 'purchase', '{"loyalty_card": "L-ann"}', 60),
	('2025-02-01 10:00', 'web',   'purchase', '{"customer_id": "bob"}', 30),
	('2025-12-15 10:00', 'web',   'purchase', '{"customer_id": "cat"}', 45),
	('2025-03-01 10:00', 'store', 'purchase', '{"customer_id": "dan"}', 900),
	('2025-03-15 10:00', 'store', 'purchase', '{"customer_id": "dan"}', 700),
	('2025-03-20 10:00', 'store', 'return',   '{"customer_id": "dan"}', -700),
	('2025-06-01 10:00', 'web',   'page_view', '{"customer_id": "eve"}', NULL)
) v(t, ch, ty, ids, amt);

SELECT rfm_profiles FROM cdp.refresh_scores('2026-01-01', calibration => '1 year', horizon => '6 months');
SELECT i.value AS customer, r.recency_days, r.frequency, r.monetary, r.r, r.f, r.m, r.rfm_code, r.segment
FROM cdp.rfm r JOIN cdp.identifiers i ON i.profile_id = r.profile_id AND i.kind = 'customer_id' ORDER BY 1;
-- too few customers for a lifetime-value model: a warning, and the fit's reason is kept
SELECT model->>'status' AS status, model->>'message' AS message FROM cdp.clv_models;
SELECT count(*) AS clv_rows FROM cdp.clv;

-- The segments are a table: a new rule applies at the next refresh
INSERT INTO cdp.rfm_segments VALUES ('Big Spenders', 0, 1, 5, 3.5, 5, 'High frequency and monetary, whatever the recency', false);
SELECT rfm_profiles FROM cdp.refresh_scores('2026-01-01');
SELECT segment, count(*) FROM cdp.rfm GROUP BY 1 ORDER BY 1;
DELETE FROM cdp.rfm_segments WHERE NOT builtin;

-- Lifetime-value models on a synthetic cohort of 2,000 customers (days)
-- (each buys every iv days until it drops out at day d or is observed at day t)
CREATE TEMP TABLE cohort AS
SELECT g AS id, x, CASE WHEN x > 0 THEN x * iv ELSE 0 END::float8 AS t_x, t::float8 AS t,
       CASE WHEN x > 0 THEN 5 + ((g * 7919) % 97) * (1 + 1.0 / (x + 1)) END::float8 AS avg_value
FROM (SELECT g, iv, t, floor(least(d, t) / iv)::float8 AS x
      FROM (SELECT g, 5 + (g * 37) % 60 AS iv, 200 + g % 165 AS t, (g * 7919) % 400 AS d
            FROM generate_series(1, 2000) g) a) s;
SELECT f->>'status' AS status, (f->>'converged')::boolean AS converged, (f->>'customers')::int AS customers,
       round((f->>'r')::numeric, 2) AS r, round((f->>'alpha')::numeric, 1) AS alpha,
       round((f->>'a')::numeric, 2) AS a, round((f->>'b')::numeric, 1) AS b
FROM (SELECT cdp.bgnbd_fit(x, t_x, t) AS f FROM cohort) q;
-- the same fit, forced through a parallel plan (partial states combined)
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
ANALYZE cohort;
CREATE TABLE cohort_p AS SELECT * FROM cohort;
ANALYZE cohort_p;
EXPLAIN (COSTS OFF) SELECT cdp.bgnbd_fit(x, t_x, t) FROM cohort_p;
SELECT (SELECT cdp.bgnbd_fit(x, t_x, t) FROM cohort_p) - 'iterations' - 'se'
     = (SELECT cdp.bgnbd_fit(x, t_x, t) FROM cohort) - 'iterations' - 'se' AS parallel_same_fit;
SELECT round((cdp.gamma_gamma_fit(x, avg_value)->>'customers')::numeric) AS spenders FROM cohort_p;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;
DROP TABLE cohort_p;

-- Applying a fit: the more recent the last purchase, the likelier alive
WITH f AS (SELECT cdp.bgnbd_fit(x, t_x, t) AS p FROM cohort)
SELECT round(cdp.bgnbd_p_alive(p, 5, 300, 310)::numeric, 3) > round(cdp.bgnbd_p_alive(p, 5, 30, 310)::numeric, 3) AS recent_alive,
       cdp.bgnbd_p_alive(p, 0, 0, 310) = 1 AS no_repeat_is_alive,
       cdp.bgnbd_expected_purchases(p, 90, 5, 300, 310) > cdp.bgnbd_expected_purchases(p, 30, 5, 300, 310) AS grows_with_horizon
FROM f;
-- every customer buys at a fixed pace here, which Pareto/NBD's dropout
-- cannot be identified from: it says so instead of returning garbage
SELECT p->>'status' AS status, p->>'message' LIKE 'the data do not identify the model%' AS explained, p->'s' AS s
FROM (SELECT cdp.pareto_nbd_fit(x, t_x, t) AS p FROM cohort) f;
WITH g AS (SELECT cdp.gamma_gamma_fit(x, avg_value) AS p FROM cohort), f AS (SELECT cdp.bgnbd_fit(x, t_x, t) AS p FROM cohort)
SELECT cdp.gamma_gamma_expected_value(g.p, 10, 50) BETWEEN 40 AND 55 AS shrinks_towards_mean,
       cdp.clv(f.p, g.p, 5, 300, 310, 40, 12, 30, 0.01) > cdp.clv(f.p, g.p, 5, 300, 310, 40, 12, 30, 0.05) AS discount_lowers,
       cdp.clv(f.p, g.p, 5, 300, 310, 40, 12, 30, 0.01, 0.3) < cdp.clv(f.p, g.p, 5, 300, 310, 40, 12, 30, 0.01) AS margin_lowers,
       cdp.clv(f.p, g.p, 5, 300, 310, 40, 0, 30, 0.01) = 0 AS no_periods_no_value
FROM f, g;

-- Data that cannot identify a model are reported, not fitted
SELECT f->>'status' AS status, f->>'message' AS message, f->'r' AS r
FROM (SELECT cdp.bgnbd_fit(0, 0, 100 + g) AS f FROM generate_series(1, 50) g) q;
SELECT cdp.bgnbd_fit(x, t_x, t) IS NULL AS no_rows FROM cohort WHERE false;
SELECT cdp.gamma_gamma_fit(0, 10) IS NULL AS no_repeat_spend_no_fit;

-- Bad input: clear errors
SELECT cdp.bgnbd_fit(2, 50, 40);
SELECT cdp.bgnbd_fit(1.5, 10, 40);
SELECT cdp.gamma_gamma_fit(2, -5);
SELECT cdp.bgnbd_p_alive('{"model": "pareto_nbd", "r": 1, "alpha": 1, "s": 1, "beta": 1}', 1, 1, 2);
SELECT cdp.bgnbd_p_alive('{"model": "bgnbd", "r": 1, "alpha": 1, "a": 1}', 1, 1, 2);
SELECT cdp.bgnbd_p_alive('{"model": "bgnbd", "r": 1, "alpha": 1, "a": 1, "b": 1}', 1, 5, 2);
SELECT cdp.gamma_gamma_expected_value('{"model": "gamma_gamma", "p": 1, "q": 0.5, "gamma": 1}', 0, 10);
SELECT cdp.refresh_scores('2026-01-01', model => 'weibull');
SELECT cdp.validate_clv('2026-01-01', '2025-06-01');

-- Validation: 600 customers as purchase events from 2025-01-01, each
-- starting on its own day, with gaps drawn around its own mean and a chance
-- to drop out after each purchase (deterministic pseudo-random numbers);
-- fitted on the first eight months, checked on the last four
SELECT count(cdp.track(timestamptz '2025-01-01' + day * interval '1 day', 'web', 'purchase',
                       jsonb_build_object('customer_id', 'v' || g), '{}', 30)) AS purchases
FROM (WITH RECURSIVE p(g, k, day) AS (
        SELECT g, 0, ((g * 13) % 240)::float8 FROM generate_series(1, 600) g
        UNION ALL
        SELECT g, k + 1, day - ln(((g * 7919 + k * 104729) % 10007 + 1) / 10008.0) * (10 + (g * 37) % 60)
        FROM p
        WHERE k < 60 AND ((g * 104723 + k * 7907) % 9973 + 0.5) / 9973.0 > 0.04 + (g % 5) * 0.03)
      SELECT g, day FROM p WHERE day < 365) e;
SELECT customers, actual, round(predicted::numeric) AS predicted, round(aggregate_error::numeric, 3) AS aggregate_error,
       round(mae::numeric, 3) AS mae, correlation > 0.3 AS correlated, params->>'status' AS status
FROM cdp.validate_clv('2025-09-01', '2026-01-01', interval '8 months');
-- per customer, in cdp.clv_validation
SELECT count(*) AS customers, sum(actual) AS actual, round(sum(predicted)::numeric) AS predicted FROM cdp.clv_validation;
