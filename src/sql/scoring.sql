
-- ---------------------------------------------------------------------------
-- Scoring: recency / frequency / monetary segments, and lifetime-value
-- models (BG/NBD, Pareto/NBD, Gamma-Gamma; src/core/btyd.c) as aggregates.
-- Purchases are events of type purchase on any channel (returns, type
-- return with a negative amount, reduce the monetary value), attributed to
-- profiles through identity resolution.
-- ---------------------------------------------------------------------------

-- The models, as aggregates and functions
CREATE FUNCTION cdp.btyd_accum3(internal, double precision, double precision, double precision) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_btyd_accum3' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.btyd_accum3(internal, double precision, double precision, double precision) IS 'Internal: transition of the BG/NBD and Pareto/NBD fits';
CREATE FUNCTION cdp.btyd_accum2(internal, double precision, double precision) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_btyd_accum2' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.btyd_accum2(internal, double precision, double precision) IS 'Internal: transition of the Gamma-Gamma fit';
CREATE FUNCTION cdp.btyd_combine(internal, internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_btyd_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.btyd_combine(internal, internal) IS 'Internal: combines partial lifetime-value fits';
CREATE FUNCTION cdp.btyd_serialize(internal) RETURNS bytea
	AS 'MODULE_PATHNAME', 'cdp_btyd_serialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.btyd_serialize(internal) IS 'Internal: serializes a partial lifetime-value fit';
CREATE FUNCTION cdp.btyd_deserialize(bytea, internal) RETURNS internal
	AS 'MODULE_PATHNAME', 'cdp_btyd_deserialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.btyd_deserialize(bytea, internal) IS 'Internal: reads a serialized partial lifetime-value fit';
CREATE FUNCTION cdp.bgnbd_fit_final(internal) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'cdp_bgnbd_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.bgnbd_fit_final(internal) IS 'Internal: fits BG/NBD';
CREATE FUNCTION cdp.pareto_nbd_fit_final(internal) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'cdp_pareto_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.pareto_nbd_fit_final(internal) IS 'Internal: fits Pareto/NBD';
CREATE FUNCTION cdp.gamma_gamma_fit_final(internal) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'cdp_gg_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.gamma_gamma_fit_final(internal) IS 'Internal: fits Gamma-Gamma';

CREATE FUNCTION cdp.nbd_fit_final(internal) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'cdp_nbd_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.nbd_fit_final(internal) IS 'Internal: fits NBD';

CREATE AGGREGATE cdp.bgnbd_fit(x double precision, t_x double precision, t double precision) (
	SFUNC = cdp.btyd_accum3, STYPE = internal, FINALFUNC = cdp.bgnbd_fit_final,
	COMBINEFUNC = cdp.btyd_combine, SERIALFUNC = cdp.btyd_serialize, DESERIALFUNC = cdp.btyd_deserialize,
	PARALLEL = SAFE);
COMMENT ON AGGREGATE cdp.bgnbd_fit(double precision, double precision, double precision) IS 'Fits the BG/NBD model (Fader, Hardie and Lee 2005) to customers'' repeat purchases x, time of last purchase t_x and age t (any one time unit); jsonb with r, alpha, a, b, log_likelihood, customers, iterations, converged, status, message and standard errors';
CREATE AGGREGATE cdp.pareto_nbd_fit(x double precision, t_x double precision, t double precision) (
	SFUNC = cdp.btyd_accum3, STYPE = internal, FINALFUNC = cdp.pareto_nbd_fit_final,
	COMBINEFUNC = cdp.btyd_combine, SERIALFUNC = cdp.btyd_serialize, DESERIALFUNC = cdp.btyd_deserialize,
	PARALLEL = SAFE);
COMMENT ON AGGREGATE cdp.pareto_nbd_fit(double precision, double precision, double precision) IS 'Fits the Pareto/NBD model (Schmittlein, Morrison and Colombo 1987) to (x, t_x, t); jsonb with r, alpha, s, beta and the fit''s diagnostics';
CREATE AGGREGATE cdp.nbd_fit(x double precision, t_x double precision, t double precision) (
	SFUNC = cdp.btyd_accum3, STYPE = internal, FINALFUNC = cdp.nbd_fit_final,
	COMBINEFUNC = cdp.btyd_combine, SERIALFUNC = cdp.btyd_serialize, DESERIALFUNC = cdp.btyd_deserialize,
	PARALLEL = SAFE);
COMMENT ON AGGREGATE cdp.nbd_fit(double precision, double precision, double precision) IS 'Fits the NBD model (Ehrenberg 1959: purchases at gamma-distributed rates, nobody drops out; the limit of BG/NBD as a runs to 0 and of Pareto/NBD as s runs to 0) to (x, t_x, t); jsonb with r, alpha and the fit''s diagnostics';
CREATE AGGREGATE cdp.gamma_gamma_fit(x double precision, avg_value double precision) (
	SFUNC = cdp.btyd_accum2, STYPE = internal, FINALFUNC = cdp.gamma_gamma_fit_final,
	COMBINEFUNC = cdp.btyd_combine, SERIALFUNC = cdp.btyd_serialize, DESERIALFUNC = cdp.btyd_deserialize,
	PARALLEL = SAFE);
COMMENT ON AGGREGATE cdp.gamma_gamma_fit(double precision, double precision) IS 'Fits the Gamma-Gamma spend model (Fader, Hardie and Lee 2005) to customers with repeat purchases: x and the mean value of those purchases; jsonb with p, q, gamma and the fit''s diagnostics';

CREATE FUNCTION cdp.bgnbd_p_alive(params jsonb, x double precision, t_x double precision, t double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_bgnbd_p_alive' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.bgnbd_p_alive(jsonb, double precision, double precision, double precision) IS 'BG/NBD: probability that a customer with history (x, t_x, t) is still active';
CREATE FUNCTION cdp.bgnbd_expected_purchases(params jsonb, horizon double precision, x double precision, t_x double precision, t double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_bgnbd_expected_purchases' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.bgnbd_expected_purchases(jsonb, double precision, double precision, double precision, double precision) IS 'BG/NBD: expected purchases in the next horizon (same time unit) of a customer with history (x, t_x, t)';
CREATE FUNCTION cdp.pareto_nbd_p_alive(params jsonb, x double precision, t_x double precision, t double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_pareto_p_alive' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.pareto_nbd_p_alive(jsonb, double precision, double precision, double precision) IS 'Pareto/NBD: probability that a customer with history (x, t_x, t) is still active';
CREATE FUNCTION cdp.pareto_nbd_expected_purchases(params jsonb, horizon double precision, x double precision, t_x double precision, t double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_pareto_expected_purchases' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.pareto_nbd_expected_purchases(jsonb, double precision, double precision, double precision, double precision) IS 'Pareto/NBD: expected purchases in the next horizon of a customer with history (x, t_x, t)';
CREATE FUNCTION cdp.nbd_expected_purchases(params jsonb, horizon double precision, x double precision, t_x double precision, t double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_nbd_expected_purchases' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.nbd_expected_purchases(jsonb, double precision, double precision, double precision, double precision) IS 'NBD: expected purchases in the next horizon of a customer with history (x, t_x, t), horizon (r + x) / (alpha + t); nobody drops out, so P(alive) is 1';
CREATE FUNCTION cdp.gamma_gamma_expected_value(params jsonb, x double precision, avg_value double precision)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_gg_expected_value' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.gamma_gamma_expected_value(jsonb, double precision, double precision) IS 'Gamma-Gamma: expected value of a future purchase of a customer with x repeat purchases of mean value avg_value (the population mean when x = 0)';
CREATE FUNCTION cdp.clv(params jsonb, spend_params jsonb, x double precision, t_x double precision, t double precision,
                        avg_value double precision, periods integer, period_length double precision,
                        discount_rate double precision, margin double precision DEFAULT 1)
	RETURNS double precision AS 'MODULE_PATHNAME', 'cdp_clv_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.clv(jsonb, jsonb, double precision, double precision, double precision, double precision, integer, double precision, double precision, double precision) IS 'Customer lifetime value: margin times the expected value of a purchase (Gamma-Gamma) times the purchases expected in each of the next periods (BG/NBD, Pareto/NBD or NBD, periods of period_length time units), discounted at discount_rate per period';

-- RFM
CREATE TABLE cdp.rfm_segments (
	segment     text    PRIMARY KEY,
	priority    integer NOT NULL UNIQUE,
	r_min       integer NOT NULL CHECK (r_min BETWEEN 1 AND 5),
	r_max       integer NOT NULL CHECK (r_max BETWEEN 1 AND 5),
	fm_min      numeric NOT NULL CHECK (fm_min BETWEEN 1 AND 5),
	fm_max      numeric NOT NULL CHECK (fm_max BETWEEN 1 AND 5),
	description text    NOT NULL,
	builtin     boolean NOT NULL DEFAULT false,
	CHECK (r_min <= r_max AND fm_min <= fm_max)
);
COMMENT ON TABLE cdp.rfm_segments IS 'Segments of the RFM scores: a profile gets the first segment, by priority, whose ranges hold its recency score r and the mean fm of its frequency and monetary scores';
COMMENT ON COLUMN cdp.rfm_segments.segment IS 'Segment name';
COMMENT ON COLUMN cdp.rfm_segments.priority IS 'Order of matching (smallest first)';
COMMENT ON COLUMN cdp.rfm_segments.r_min IS 'Lowest recency score (1-5)';
COMMENT ON COLUMN cdp.rfm_segments.r_max IS 'Highest recency score';
COMMENT ON COLUMN cdp.rfm_segments.fm_min IS 'Lowest (f + m) / 2';
COMMENT ON COLUMN cdp.rfm_segments.fm_max IS 'Highest (f + m) / 2';
COMMENT ON COLUMN cdp.rfm_segments.description IS 'What the segment means and what to do';
COMMENT ON COLUMN cdp.rfm_segments.builtin IS 'Shipped with cdp (pg_dump keeps only the rows users added)';
INSERT INTO cdp.rfm_segments VALUES
	('Champions',           1, 4, 5, 4,   5,   'Bought recently, buy often and spend the most: reward them', true),
	('Loyal',               2, 3, 5, 3,   5,   'Buy regularly and spend well: upsell, ask for reviews', true),
	('Can''t Lose Them',    3, 1, 1, 4,   5,   'Were among the best, gone for long: win them back', true),
	('At Risk',             4, 1, 2, 3,   5,   'Spent well and often, not lately: reach out before they go', true),
	('New',                 5, 5, 5, 1,   1.5, 'First purchase very recently: onboard them', true),
	('Promising',           6, 4, 4, 1,   1.5, 'Recent first purchase: build the relationship', true),
	('Potential Loyalists', 7, 4, 5, 1.5, 3,   'Recent, with some repeat purchases: offer membership', true),
	('Need Attention',      8, 3, 3, 2,   3,   'Average on every count, not lately: limited-time offers', true),
	('About to Sleep',      9, 3, 3, 1,   2,   'Below average and fading: reactivate with popular products', true),
	('Hibernating',        10, 2, 2, 1,   3,   'Few, small, long-ago purchases: low-cost reminders', true),
	('Lost',               11, 1, 1, 1,   5,   'Lowest recency: only a strong offer, or let go', true);

CREATE TABLE cdp.rfm (
	profile_id     bigint      PRIMARY KEY,
	as_of          timestamptz NOT NULL,
	first_purchase timestamptz NOT NULL,
	last_purchase  timestamptz NOT NULL,
	recency_days   numeric     NOT NULL,
	frequency      integer     NOT NULL,
	monetary       numeric     NOT NULL,
	r              smallint    NOT NULL,
	f              smallint    NOT NULL,
	m              smallint    NOT NULL,
	rfm_code       text        NOT NULL,
	segment        text
);
COMMENT ON TABLE cdp.rfm IS 'Recency, frequency and monetary value of every live profile with a purchase, scored 1-5 (5 best) against the other profiles, and its segment; filled by cdp.refresh_scores';
COMMENT ON COLUMN cdp.rfm.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.rfm.as_of IS 'Time the scores describe';
COMMENT ON COLUMN cdp.rfm.first_purchase IS 'First purchase, any channel';
COMMENT ON COLUMN cdp.rfm.last_purchase IS 'Last purchase';
COMMENT ON COLUMN cdp.rfm.recency_days IS 'Days from the last purchase to as_of';
COMMENT ON COLUMN cdp.rfm.frequency IS 'Number of purchases';
COMMENT ON COLUMN cdp.rfm.monetary IS 'Value of the purchases less returns';
COMMENT ON COLUMN cdp.rfm.r IS 'Recency score 1-5: 1 + the fifths of profiles whose last purchase is older (ties share a score)';
COMMENT ON COLUMN cdp.rfm.f IS 'Frequency score 1-5, likewise';
COMMENT ON COLUMN cdp.rfm.m IS 'Monetary score 1-5, likewise';
COMMENT ON COLUMN cdp.rfm.rfm_code IS 'r, f and m as three digits, e.g. 545';
COMMENT ON COLUMN cdp.rfm.segment IS 'First matching segment of cdp.rfm_segments (NULL if none matches)';
CREATE INDEX ON cdp.rfm (segment);

CREATE TABLE cdp.clv_models (
	model_id         bigserial   PRIMARY KEY,
	fitted_at        timestamptz NOT NULL DEFAULT now(),
	as_of            timestamptz NOT NULL,
	calibration_from timestamptz NOT NULL,
	model            jsonb       NOT NULL,
	spend_model      jsonb,
	horizon_days     integer     NOT NULL,
	annual_discount  double precision NOT NULL,
	margin           double precision NOT NULL
);
COMMENT ON TABLE cdp.clv_models IS 'Every lifetime-value model fitted by cdp.refresh_scores (time unit: days)';
COMMENT ON COLUMN cdp.clv_models.model_id IS 'Model number';
COMMENT ON COLUMN cdp.clv_models.fitted_at IS 'When it was fitted';
COMMENT ON COLUMN cdp.clv_models.as_of IS 'End of the calibration window';
COMMENT ON COLUMN cdp.clv_models.calibration_from IS 'Start of the calibration window: purchases from then to as_of were used';
COMMENT ON COLUMN cdp.clv_models.model IS 'The purchase model (cdp.bgnbd_fit, cdp.pareto_nbd_fit or cdp.nbd_fit result); when the requested model could not be identified, the NBD fit it fell back to, with the failed fit in its "fallback_from" field';
COMMENT ON COLUMN cdp.clv_models.spend_model IS 'The spend model (cdp.gamma_gamma_fit result), with "left_out": the customers whose mean purchase value was not a finite number or above "left_out_above" (10,000 times the median), left out of it';
COMMENT ON COLUMN cdp.clv_models.horizon_days IS 'Horizon of the lifetime value';
COMMENT ON COLUMN cdp.clv_models.annual_discount IS 'Yearly discount rate';
COMMENT ON COLUMN cdp.clv_models.margin IS 'Share of revenue counted as value';

CREATE TABLE cdp.clv (
	profile_id         bigint           PRIMARY KEY,
	model_id           bigint           NOT NULL,
	x                  integer          NOT NULL,
	t_x                double precision NOT NULL,
	t                  double precision NOT NULL,
	avg_value          double precision,
	p_alive            double precision,
	expected_purchases double precision,
	expected_value     double precision,
	clv                double precision
);
COMMENT ON TABLE cdp.clv IS 'Lifetime value of every live profile with a purchase up to as_of, from its whole history and the latest model of cdp.clv_models (fitted on the calibration window); filled by cdp.refresh_scores';
COMMENT ON COLUMN cdp.clv.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.clv.model_id IS 'Model used (cdp.clv_models)';
COMMENT ON COLUMN cdp.clv.x IS 'Repeat purchase days up to as_of (purchase days after the first)';
COMMENT ON COLUMN cdp.clv.t_x IS 'Days from the first to the last purchase';
COMMENT ON COLUMN cdp.clv.t IS 'Days from the first purchase to as_of';
COMMENT ON COLUMN cdp.clv.avg_value IS 'Mean value of the repeat purchase days (Infinity beyond double precision)';
COMMENT ON COLUMN cdp.clv.p_alive IS 'Probability that the customer is still active (1 under the NBD model)';
COMMENT ON COLUMN cdp.clv.expected_purchases IS 'Purchase days expected over the horizon';
COMMENT ON COLUMN cdp.clv.expected_value IS 'Expected value of a future purchase day (Gamma-Gamma); NULL for a customer left out of the spend model';
COMMENT ON COLUMN cdp.clv.clv IS 'Discounted margin expected over the horizon; NULL for a customer left out of the spend model';

CREATE TABLE cdp.clv_validation (
	profile_id bigint           PRIMARY KEY,
	x          integer          NOT NULL,
	t_x        double precision NOT NULL,
	t          double precision NOT NULL,
	predicted  double precision NOT NULL,
	actual     integer          NOT NULL
);
COMMENT ON TABLE cdp.clv_validation IS 'Per-customer comparison of the last cdp.validate_clv run: purchase days predicted for the hold-out period against those that happened';
COMMENT ON COLUMN cdp.clv_validation.profile_id IS 'Live profile';
COMMENT ON COLUMN cdp.clv_validation.x IS 'Repeat purchase days in the calibration period';
COMMENT ON COLUMN cdp.clv_validation.t_x IS 'Days from the first to the last purchase, in calibration';
COMMENT ON COLUMN cdp.clv_validation.t IS 'Days from the first purchase to the end of calibration';
COMMENT ON COLUMN cdp.clv_validation.predicted IS 'Purchase days the model expected in the hold-out period';
COMMENT ON COLUMN cdp.clv_validation.actual IS 'Purchase days in the hold-out period';

SELECT pg_catalog.pg_extension_config_dump('cdp.rfm_segments', 'WHERE NOT builtin');

-- Purchase days of every live profile in [from_time, to_time]: one row per
-- profile and day with the day's net value (purchases less returns).
CREATE FUNCTION cdp.purchase_days(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (profile_id bigint, day date, purchases integer, value numeric, first_at timestamptz, last_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT i.profile_id, (e.occurred_at AT TIME ZONE 'UTC')::date,
	       count(*) FILTER (WHERE e.type = 'purchase')::integer, coalesce(sum(e.amount), 0),
	       min(e.occurred_at) FILTER (WHERE e.type = 'purchase'), max(e.occurred_at) FILTER (WHERE e.type = 'purchase')
	FROM cdp.events e
	JOIN cdp.event_anchors a ON a.event_id = e.event_id
	JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	WHERE e.type IN ('purchase', 'return') AND e.occurred_at >= from_time AND e.occurred_at <= to_time
	  AND a.occurred_at >= from_time AND a.occurred_at <= to_time
	GROUP BY 1, 2
$$;
COMMENT ON FUNCTION cdp.purchase_days(timestamptz, timestamptz) IS 'Purchases and returns of every live profile between two times, one row per profile and day (UTC): purchase count, net value, first and last purchase';

-- (x, t_x, t, avg_value) of every profile with a purchase day in a window
CREATE FUNCTION cdp.purchase_history(from_time timestamptz, to_time timestamptz, days regclass DEFAULT NULL)
RETURNS TABLE (profile_id bigint, x integer, t_x double precision, t double precision, avg_value double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	first_day date := (from_time AT TIME ZONE 'UTC')::date;
	last_day  date := (to_time AT TIME ZONE 'UTC')::date;
BEGIN
	-- the mean is computed in numeric; one beyond double precision is Infinity
	RETURN QUERY EXECUTE format(
		'SELECT h.profile_id, h.x, h.t_x, h.t,
		        CASE WHEN h.m IS NULL THEN NULL WHEN h.m = ''NaN'' THEN ''NaN''::double precision
		             WHEN h.m >= 1e308 THEN ''Infinity''::double precision ELSE h.m::double precision END
		 FROM (SELECT d.profile_id, (count(*) - 1)::integer AS x,
		              (max(d.day) - min(d.day))::double precision AS t_x,
		              (extract(epoch FROM $2 - (min(d.day)::timestamp AT TIME ZONE ''UTC'')) / 86400.0)::double precision AS t,
		              CASE WHEN count(*) > 1
		                   THEN greatest(0, (sum(d.value) - (array_agg(d.value ORDER BY d.day))[1]) / (count(*) - 1)) END AS m
		       FROM %s d
		       WHERE d.purchases > 0 AND d.day BETWEEN $3 AND $4
		       GROUP BY 1) h',
		coalesce(days::text, 'cdp.purchase_days($1, $2)'))
	USING first_day::timestamp AT TIME ZONE 'UTC', to_time, first_day, last_day;
END
$$;
COMMENT ON FUNCTION cdp.purchase_history(timestamptz, timestamptz, regclass) IS 'The lifetime-value models'' view of each profile with a purchase day in a window (days from that of from_time to to_time), in days: x repeat purchase days, t_x days from the first to the last, t days from the first to to_time, and the mean value of the repeat days (Infinity when beyond double precision); read from a table of cdp.purchase_days rows when days is given';

-- ANALYZE of the tables (each partition of a partitioned one) whose
-- statistics are missing or stale, so that a job run right after a bulk load
-- does not plan without them
CREATE FUNCTION cdp.analyze_stale(tables regclass[]) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rel      regclass;
	analyzed integer := 0;
BEGIN
	FOR rel IN
		SELECT c.oid::regclass
		FROM unnest(tables) AS t(rel)
		CROSS JOIN LATERAL (SELECT p.relid FROM pg_catalog.pg_partition_tree(t.rel) AS p WHERE p.isleaf
		                    UNION SELECT t.rel) AS l(relid)
		JOIN pg_catalog.pg_class c ON c.oid = l.relid
		LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = c.oid
		WHERE c.relkind IN ('r', 'm')
		  AND (c.reltuples < 0 OR coalesce(s.n_mod_since_analyze, 0) > 50 + 0.1 * c.reltuples)
		ORDER BY 1
	LOOP
		EXECUTE pg_catalog.format('ANALYZE %s', rel);
		analyzed := analyzed + 1;
	END LOOP;
	IF analyzed > 0 THEN
		RAISE DEBUG 'analyzed % tables whose statistics were missing or stale', analyzed;
	END IF;
	RETURN analyzed;
END
$$;
COMMENT ON FUNCTION cdp.analyze_stale(regclass[]) IS 'Internal: analyzes those of the tables (the partitions of a partitioned one) never analyzed, or with more rows changed since their last analyze than autovacuum''s default threshold (50 + 10 %); returns how many; called by the scoring jobs before they read events';

CREATE FUNCTION cdp.refresh_scores(as_of timestamptz DEFAULT now(),
                                   calibration interval DEFAULT '1 year',
                                   horizon interval DEFAULT '1 year',
                                   model text DEFAULT 'bgnbd',
                                   annual_discount double precision DEFAULT 0.1,
                                   margin double precision DEFAULT 1,
                                   OUT rfm_profiles bigint, OUT clv_profiles bigint, OUT model_id bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	fit       jsonb;
	nbd       jsonb;
	spend     jsonb;
	spend_cap double precision;
	left_out  bigint;
	from_time timestamptz := as_of - calibration;
	days      double precision := extract(epoch FROM horizon) / 86400.0;
	months    integer;
BEGIN
	IF as_of IS NULL OR calibration IS NULL OR horizon IS NULL THEN
		RAISE EXCEPTION 'as_of, calibration and horizon must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF model IS NULL OR model NOT IN ('bgnbd', 'pareto_nbd', 'nbd') THEN
		RAISE EXCEPTION 'unknown lifetime-value model "%"', model
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use bgnbd, pareto_nbd or nbd.';
	END IF;
	IF calibration <= interval '0' OR horizon < interval '0' THEN
		RAISE EXCEPTION 'calibration must be positive and horizon not negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF annual_discount IS NULL OR annual_discount <= -1 OR margin IS NULL OR margin < 0 THEN
		RAISE EXCEPTION 'annual_discount must be above -1 and margin at least 0'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- statistics of what is read, if a bulk load left them missing or stale
	PERFORM cdp.stitch_queued();	-- bulk loads' events, if the worker has not stitched them yet
	PERFORM cdp.analyze_stale(ARRAY['cdp.events', 'cdp.event_anchors', 'cdp.identifiers']::regclass[]);

	-- one pass over the purchases up to as_of, for RFM and the models
	CREATE TEMP TABLE cdp_days ON COMMIT DROP AS
		SELECT * FROM cdp.purchase_days('-infinity', refresh_scores.as_of);
	ANALYZE cdp_days;

	-- RFM over every purchase up to as_of
	TRUNCATE cdp.rfm;
	INSERT INTO cdp.rfm (profile_id, as_of, first_purchase, last_purchase, recency_days, frequency, monetary, r, f, m, rfm_code, segment)
	WITH p AS (
		SELECT d.profile_id, min(d.first_at) AS first_purchase, max(d.last_at) AS last_purchase,
		       sum(d.purchases) AS frequency, sum(d.value) AS monetary
		FROM pg_temp.cdp_days d
		GROUP BY 1 HAVING sum(d.purchases) > 0
	), s AS (
		SELECT p.profile_id, p.first_purchase, p.last_purchase,
		       round((extract(epoch FROM refresh_scores.as_of - p.last_purchase) / 86400.0)::numeric, 2) AS recency_days,
		       p.frequency::integer AS frequency, p.monetary,
		       count(*) OVER () AS n,
		       rank() OVER (ORDER BY p.last_purchase) AS rr,
		       rank() OVER (ORDER BY p.frequency) AS fr,
		       rank() OVER (ORDER BY p.monetary) AS mr
		FROM p
	), sc AS (
		SELECT s.*, (1 + (5 * (rr - 1)) / n)::smallint AS r, (1 + (5 * (fr - 1)) / n)::smallint AS f,
		       (1 + (5 * (mr - 1)) / n)::smallint AS m
		FROM s
	)
	SELECT sc.profile_id, refresh_scores.as_of, sc.first_purchase, sc.last_purchase, sc.recency_days, sc.frequency,
	       sc.monetary, sc.r, sc.f, sc.m, sc.r::text || sc.f::text || sc.m::text,
	       (SELECT g.segment FROM cdp.rfm_segments g
	        WHERE sc.r BETWEEN g.r_min AND g.r_max AND (sc.f + sc.m) / 2.0 BETWEEN g.fm_min AND g.fm_max
	        ORDER BY g.priority LIMIT 1)
	FROM sc;
	GET DIAGNOSTICS rfm_profiles = ROW_COUNT;

	-- lifetime value: the models learn from the calibration window ...
	TRUNCATE cdp.clv;
	clv_profiles := 0;
	CREATE TEMP TABLE cdp_history ON COMMIT DROP AS
		SELECT * FROM cdp.purchase_history(from_time, refresh_scores.as_of, 'pg_temp.cdp_days');
	-- ... and apply to every purchaser, with the whole history up to as_of
	CREATE TEMP TABLE cdp_whole ON COMMIT DROP AS
		SELECT * FROM cdp.purchase_history('-infinity', refresh_scores.as_of, 'pg_temp.cdp_days');
	DROP TABLE cdp_days;
	IF model = 'bgnbd' THEN
		SELECT cdp.bgnbd_fit(h.x, h.t_x, h.t) INTO fit FROM cdp_history h;
	ELSIF model = 'pareto_nbd' THEN
		SELECT cdp.pareto_nbd_fit(h.x, h.t_x, h.t) INTO fit FROM cdp_history h;
	ELSE
		SELECT cdp.nbd_fit(h.x, h.t_x, h.t) INTO fit FROM cdp_history h;
	END IF;
	-- when the data do not show dropout, the model without it (its limit)
	IF fit IS NOT NULL AND fit->>'status' = 'the data do not identify the model' AND model <> 'nbd' THEN
		SELECT cdp.nbd_fit(h.x, h.t_x, h.t) INTO nbd FROM cdp_history h;
		IF nbd->>'status' = 'ok' THEN
			RAISE WARNING 'the % model could not be fitted: lifetime values use the nbd model, without dropout', model
				USING DETAIL = upper(left(fit->>'message', 1)) || substr(fit->>'message', 2) || '.',
				      HINT = 'Nobody is predicted to drop out (p_alive is 1); a longer calibration window may show dropout. The failed fit is in the "fallback_from" field of cdp.clv_models.model.';
			fit := nbd || jsonb_build_object('fallback_from', fit);
		END IF;
	END IF;

	-- spend: customers whose mean repeat value is not a finite number or
	-- above 10,000 times the median are left out of the Gamma-Gamma model
	SELECT 10000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY h.avg_value) INTO spend_cap
	FROM cdp_history h WHERE h.x > 0 AND h.avg_value > 0 AND h.avg_value < 'Infinity';
	SELECT count(*) INTO left_out FROM cdp_whole h WHERE h.x > 0 AND h.avg_value > 0 AND NOT (h.avg_value <= spend_cap);
	SELECT cdp.gamma_gamma_fit(h.x, h.avg_value) INTO spend
	FROM cdp_history h WHERE h.avg_value <= spend_cap OR h.avg_value = 0;
	IF left_out > 0 THEN
		RAISE WARNING '% customers left out of the spend model: their mean purchase value is not a finite number or is above % (10,000 times the median)',
			left_out, coalesce(spend_cap::text, 'any bound')
			USING DETAIL = 'They keep their RFM scores, p_alive and expected purchases, but get no expected value and no lifetime value.',
			      HINT = 'Check their purchases (cdp.rfm.monetary, cdp.clv rows where avg_value is large); fix or remove the wrong amounts.';
	END IF;
	IF spend IS NOT NULL THEN
		spend := spend || jsonb_build_object('left_out', left_out, 'left_out_above', spend_cap);
	END IF;
	-- the expected value of a purchase is defined for q > 1 only
	IF spend->>'status' = 'ok' AND NOT (spend->>'q')::float8 > 1 THEN
		spend := spend || jsonb_build_object('status', 'unusable',
			'message', format('q is %s: the Gamma-Gamma expected value needs q > 1 (spend too dispersed)', spend->>'q'));
	END IF;

	-- the horizon in periods of about a month, discounted monthly
	months := ceil(days / 30.0)::integer;
	INSERT INTO cdp.clv_models (as_of, calibration_from, model, spend_model, horizon_days, annual_discount, margin)
	VALUES (refresh_scores.as_of, from_time, coalesce(fit, '{"status": "no customers"}'), spend,
	        round(days)::integer, annual_discount, margin)
	RETURNING clv_models.model_id INTO refresh_scores.model_id;
	IF fit IS NULL OR fit->>'status' <> 'ok' THEN
		RAISE WARNING 'lifetime values not computed: the % model could not be fitted', model
			USING DETAIL = coalesce(fit->>'message', 'No profile purchased in the calibration window.'),
			      HINT = 'See cdp.clv_models; a longer calibration window gives the model more to learn from.';
		DROP TABLE cdp_history;
		DROP TABLE cdp_whole;
		RETURN;
	END IF;
	INSERT INTO cdp.clv (profile_id, model_id, x, t_x, t, avg_value, p_alive, expected_purchases, expected_value, clv)
	SELECT h.profile_id, refresh_scores.model_id, h.x, h.t_x, h.t, h.avg_value,
	       CASE fit->>'model' WHEN 'bgnbd' THEN cdp.bgnbd_p_alive(fit, h.x, h.t_x, h.t)
	            WHEN 'pareto_nbd' THEN cdp.pareto_nbd_p_alive(fit, h.x, h.t_x, h.t) ELSE 1 END,
	       CASE fit->>'model' WHEN 'bgnbd' THEN cdp.bgnbd_expected_purchases(fit, days, h.x, h.t_x, h.t)
	            WHEN 'pareto_nbd' THEN cdp.pareto_nbd_expected_purchases(fit, days, h.x, h.t_x, h.t)
	            ELSE cdp.nbd_expected_purchases(fit, days, h.x, h.t_x, h.t) END,
	       CASE WHEN spend->>'status' = 'ok' AND s.usable THEN cdp.gamma_gamma_expected_value(spend, h.x, coalesce(h.avg_value, 0)) END,
	       CASE WHEN spend->>'status' = 'ok' AND s.usable
	            THEN cdp.clv(fit, spend, h.x, h.t_x, h.t, coalesce(h.avg_value, 0), months,
	                         days / greatest(months, 1), power(1 + annual_discount, 1.0 / 12) - 1, margin) END
	FROM cdp_whole h
	CROSS JOIN LATERAL (SELECT h.x = 0 OR h.avg_value = 0 OR h.avg_value <= spend_cap AS usable) s;
	GET DIAGNOSTICS clv_profiles = ROW_COUNT;
	IF spend IS NULL OR spend->>'status' <> 'ok' THEN
		RAISE WARNING 'expected values and lifetime values not computed: the Gamma-Gamma model could not be fitted'
			USING DETAIL = coalesce(spend->>'message', 'No profile made a repeat purchase in the calibration window.');
	END IF;
	DROP TABLE cdp_history;
	DROP TABLE cdp_whole;
END
$$;
COMMENT ON FUNCTION cdp.refresh_scores(timestamptz, interval, interval, text, double precision, double precision) IS 'Recomputes cdp.rfm (every purchase up to as_of) and cdp.clv (a BG/NBD, Pareto/NBD or NBD model and a Gamma-Gamma model fitted on the calibration window before as_of, stored in cdp.clv_models, applied over the horizon to every purchaser''s whole history; NBD when the data do not identify dropout; spend outliers left out); returns the profiles scored and the model id';

CREATE FUNCTION cdp.validate_clv(calibration_end timestamptz, holdout_end timestamptz,
                                 calibration interval DEFAULT '1 year', model text DEFAULT 'bgnbd',
                                 OUT customers bigint, OUT actual bigint, OUT predicted double precision,
                                 OUT aggregate_error double precision, OUT mae double precision,
                                 OUT rmse double precision, OUT correlation double precision, OUT params jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	horizon double precision;
BEGIN
	IF calibration_end IS NULL OR holdout_end IS NULL OR holdout_end <= calibration_end THEN
		RAISE EXCEPTION 'the hold-out period must end after the calibration period'
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Call cdp.validate_clv(calibration_end, holdout_end) with holdout_end > calibration_end.';
	END IF;
	IF model IS NULL OR model NOT IN ('bgnbd', 'pareto_nbd', 'nbd') THEN
		RAISE EXCEPTION 'unknown lifetime-value model "%"', model
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Use bgnbd, pareto_nbd or nbd.';
	END IF;
	PERFORM cdp.stitch_queued();	-- bulk loads' events, if the worker has not stitched them yet
	PERFORM cdp.analyze_stale(ARRAY['cdp.events', 'cdp.event_anchors', 'cdp.identifiers']::regclass[]);
	horizon := extract(epoch FROM holdout_end - calibration_end) / 86400.0;
	CREATE TEMP TABLE cdp_history ON COMMIT DROP AS
		SELECT * FROM cdp.purchase_history(calibration_end - calibration, calibration_end);
	IF model = 'bgnbd' THEN
		SELECT cdp.bgnbd_fit(h.x, h.t_x, h.t) INTO params FROM cdp_history h;
	ELSIF model = 'pareto_nbd' THEN
		SELECT cdp.pareto_nbd_fit(h.x, h.t_x, h.t) INTO params FROM cdp_history h;
	ELSE
		SELECT cdp.nbd_fit(h.x, h.t_x, h.t) INTO params FROM cdp_history h;
	END IF;
	IF params IS NULL OR params->>'status' <> 'ok' THEN
		DROP TABLE cdp_history;
		RAISE EXCEPTION 'the % model could not be fitted on the calibration period', model
			USING ERRCODE = 'data_exception',
			      DETAIL = coalesce(upper(left(params->>'message', 1)) || substr(params->>'message', 2) || '.',
			                        'No profile purchased in the calibration period.'),
			      HINT = CASE WHEN params->>'status' = 'the data do not identify the model'
			                  THEN 'The calibration period does not show how customers drop out: give it more history (calibration => ''2 years''), or validate another model (model => ''pareto_nbd'', or ''nbd'', the model without dropout that cdp.refresh_scores falls back to).'
			                  ELSE 'Give the calibration period more customers with repeat purchases (an earlier calibration_end or a longer calibration).' END;
	END IF;
	TRUNCATE cdp.clv_validation;
	INSERT INTO cdp.clv_validation (profile_id, x, t_x, t, predicted, actual)
	SELECT h.profile_id, h.x, h.t_x, h.t,
	       CASE model WHEN 'bgnbd' THEN cdp.bgnbd_expected_purchases(params, horizon, h.x, h.t_x, h.t)
	            WHEN 'pareto_nbd' THEN cdp.pareto_nbd_expected_purchases(params, horizon, h.x, h.t_x, h.t)
	            ELSE cdp.nbd_expected_purchases(params, horizon, h.x, h.t_x, h.t) END,
	       coalesce(a.days, 0)
	FROM cdp_history h
	LEFT JOIN (SELECT d.profile_id, count(*)::integer AS days
	           FROM cdp.purchase_days(calibration_end + interval '1 microsecond', holdout_end) d
	           WHERE d.purchases > 0 GROUP BY 1) a USING (profile_id);
	DROP TABLE cdp_history;
	SELECT count(*), sum(v.actual), sum(v.predicted),
	       (sum(v.predicted) - sum(v.actual)) / nullif(sum(v.actual), 0),
	       avg(abs(v.predicted - v.actual)), sqrt(avg((v.predicted - v.actual) ^ 2)), corr(v.predicted, v.actual)
	INTO customers, actual, predicted, aggregate_error, mae, rmse, correlation
	FROM cdp.clv_validation v;
END
$$;
COMMENT ON FUNCTION cdp.validate_clv(timestamptz, timestamptz, interval, text) IS 'Fits a purchase model (bgnbd, pareto_nbd or nbd) on the calibration period ending at calibration_end and compares, for its customers, the purchase days it predicts up to holdout_end with those that happened: totals, aggregate error (relative), mean absolute error, RMSE and correlation per customer (details in cdp.clv_validation)';
