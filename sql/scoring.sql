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
                       jsonb_build_object('customer_id', 'v' || g), '{}', (5 + (g * 37) % 95) * (1 + ((g + day::int) % 7) / 10.0))) AS purchases
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

-- Every purchaser gets p_alive and a lifetime value, from its whole history,
-- even when its last purchase is older than the calibration window
SELECT rfm_profiles, clv_profiles FROM cdp.refresh_scores('2026-01-01', calibration => '4 months');
SELECT count(*) AS lapsed, count(c.p_alive) AS with_p_alive, count(c.clv) AS with_clv
FROM cdp.rfm r LEFT JOIN cdp.clv c USING (profile_id) WHERE r.last_purchase < '2025-09-01';
SELECT bool_and(abs(c.t - extract(epoch FROM r.as_of - date_trunc('day', r.first_purchase)) / 86400) < 1e-9) AS whole_history,
       max(c.t) > 365 * 4 / 12 AS older_than_calibration
FROM cdp.rfm r JOIN cdp.clv c USING (profile_id);

-- The model without dropout: Poisson purchases at gamma rates, BG/NBD's
-- limit as a runs to 0; everyone of the cohort above buys for ever here
WITH f AS (SELECT cdp.nbd_fit(x, t_x, t) AS p FROM cohort)
SELECT p->>'status' AS status, round((p->>'r')::numeric, 3) AS r, round((p->>'alpha')::numeric, 2) AS alpha,
       round(cdp.nbd_expected_purchases(p, 30, 4, 100, 200)::numeric, 6)
         = round((30 * ((p->>'r')::float8 + 4) / ((p->>'alpha')::float8 + 200))::numeric, 6) AS expected_formula,
       cdp.clv(p, '{"model": "gamma_gamma", "p": 6, "q": 4, "gamma": 15}', 4, 100, 200, 30, 12, 30, 0)
         > cdp.clv(p, '{"model": "gamma_gamma", "p": 6, "q": 4, "gamma": 15}', 4, 100, 200, 30, 6, 30, 0) AS clv_grows
FROM f;
SELECT cdp.nbd_expected_purchases('{"model": "bgnbd", "r": 1, "alpha": 1, "a": 1, "b": 1}', 30, 1, 1, 2);

-- Absurd amounts, at the ingest limit raised to its maximum (cdp.max_amount
-- 1e15): the spend model leaves out customers whose mean purchase is above
-- 10,000 times the median with a warning; they keep RFM and p_alive
SET cdp.max_amount = 1e15;
SELECT count(cdp.track(t, 'web', 'purchase', jsonb_build_object('customer_id', c), '{}', amt)) AS events FROM (VALUES
	('2025-10-01 10:00'::timestamptz, 'huge', 10::numeric), ('2025-11-01 10:00', 'huge', 1e15),
	('2025-10-02 10:00', 'large', 10), ('2025-11-02 10:00', 'large', 1e14), ('2025-12-02 10:00', 'large', 20)
) v(t, c, amt);
SELECT rfm_profiles, clv_profiles FROM cdp.refresh_scores('2026-01-01', calibration => '4 months');
SELECT spend_model->>'status' AS spend_status, spend_model->>'left_out' AS left_out FROM cdp.clv_models ORDER BY model_id DESC LIMIT 1;
SELECT i.value AS customer, c.avg_value, c.p_alive > 0 AS p_alive, c.expected_value, c.clv, r.monetary > 1e13 AS monetary
FROM cdp.clv c JOIN cdp.rfm r USING (profile_id) JOIN cdp.identifiers i ON i.profile_id = c.profile_id AND i.kind = 'customer_id'
WHERE i.value IN ('huge', 'large') ORDER BY 1;
SELECT count(*) - count(clv) AS without_clv FROM cdp.clv;
SELECT customers, params->>'status' AS status FROM cdp.validate_clv('2025-11-15', '2026-01-01', interval '10 months');
-- too little history to see dropout: the error says what to do
SELECT customers FROM cdp.validate_clv('2025-12-15', '2026-01-01', interval '4 months');
SELECT h.x, h.avg_value FROM cdp.purchase_history('2025-01-01', '2026-01-01') h
JOIN cdp.identifiers i ON i.profile_id = h.profile_id AND i.kind = 'customer_id' WHERE i.value = 'huge';
RESET cdp.max_amount;

-- Jobs analyze what they read when its statistics are missing or stale
BEGIN;
CREATE TABLE fresh AS SELECT g FROM generate_series(1, 1000) g;
CREATE TABLE fresh_parts (g int) PARTITION BY RANGE (g);
CREATE TABLE fresh_parts_1 PARTITION OF fresh_parts FOR VALUES FROM (0) TO (500);
CREATE TABLE fresh_parts_2 PARTITION OF fresh_parts FOR VALUES FROM (500) TO (1001);
INSERT INTO fresh_parts SELECT g FROM generate_series(1, 1000) g;
SELECT relname, reltuples FROM pg_class WHERE relname LIKE 'fresh%' ORDER BY 1;
SELECT cdp.analyze_stale(ARRAY['fresh', 'fresh_parts']::regclass[]) AS analyzed;
SELECT relname, reltuples FROM pg_class WHERE relname LIKE 'fresh%' ORDER BY 1;
SELECT cdp.analyze_stale(ARRAY['fresh', 'fresh_parts']::regclass[]) AS analyzed_again;
ROLLBACK;
