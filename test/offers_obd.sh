#!/usr/bin/env bash
# Offline evaluation of Thompson sampling on the real Open Bandit Dataset
# (ZOZOTOWN; the 10,000-row samples of ../shared/data/open_bandit, see its
# SOURCE.md), on the cluster of test/run.sh (PG* set):
#  - the uniform-random logs of the Men's and Women's campaigns, one row per
#    shown item: arm = item_id, context = position (1..3; the logging policy
#    picked the item of each position with probability 1/#items, the
#    propensity_score), reward = click;
#  - cdp.evaluate_policy on men and women, beside the Bernoulli TS logs' own
#    CTR (their 'logged' row: the production Thompson sampling); "both" is
#    the two campaigns pooled (weighted by rows).  evaluate_policy on the
#    union (context campaign:position, arms campaign:item) is printed too:
#    it offers every arm in every context, and the other campaign's items,
#    never logged there, keep their prior and win the draws (no overlap with
#    the logging policy), so its IPW is about 0 -- not a figure to quote;
#  - checks of sanity only: the logged CTR is clicks / rows, the intervals
#    hold their values within [0, 1], IPW uses every row and replay about
#    1 in #items, the same seed gives the same figures, and a log with a
#    propensity of 0 or without a column fails with 22023 or 42703.  With
#    46 clicks a campaign, whether Thompson sampling beats random is printed,
#    not asserted.
# Prints "offers_obd: N passed, N failed"; without the data (under
# CDP_SHARED_DATA, by default ../shared/data) it skips its checks and says how many:
# "offers_obd: 0 passed, 0 failed, N skipped".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

data=${CDP_SHARED_DATA:-$CDP_ROOT/../shared/data}/open_bandit
db=cdp_obd
passed=0
failed=0
# the checks below (a run that counts otherwise fails: keep it true)
checks=17
for f in random/men.csv random/women.csv bts/men.csv bts/women.csv; do
	if [ ! -r "$data/$f" ]; then
		echo "# SKIP offers_obd: the Open Bandit sample is not in $data (set CDP_SHARED_DATA to the data directory)"
		echo "offers_obd: 0 passed, 0 failed, $checks skipped"
		exit 0
	fi
done

# Checks a query of the test database (see cdp_expect in test/lib.sh).
expect() { cdp_expect "$1" "$db" "$2" "$3"; }
q() { cdp_psql -d $db -At -F ' ' -c "SET client_min_messages = warning" -c "$1"; }

cdp_psql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
cdp_psql -d $db <<'SQL' >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION cdp;
CREATE TABLE obd (policy text, campaign text, idx integer, ts timestamptz, item_id integer,
	"position" integer, click integer, propensity_score float8);
CREATE TABLE stage (idx integer, ts timestamptz, item_id integer, "position" integer, click integer,
	propensity_score float8);
-- the SQLSTATE of a statement, or 'no error'
CREATE FUNCTION sqlstate_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;
SQL

# the first six columns (index, timestamp, item_id, position, click,
# propensity_score) of each file; the files have no quoted field
for policy in random bts; do
	for campaign in men women; do
		f=$data/$policy/$campaign.csv
		if grep -q '"' "$f"; then
			echo "not ok - $f has quoted fields: cut cannot split it" >&2
			exit 1
		fi
		tr -d '\r' <"$f" | cut -d, -f1-6 | cdp_psql -d $db -c "TRUNCATE stage" \
			-c "\\copy stage FROM STDIN WITH (FORMAT csv, HEADER true)" \
			-c "INSERT INTO obd SELECT '$policy', '$campaign', * FROM stage" >/dev/null
	done
done
expect "the four samples are loaded (rows, clicks, items, positions)" \
	"SELECT string_agg(policy || '/' || campaign || ' ' || n || ' ' || clicks || ' ' || items || ' ' || positions, ', ' ORDER BY policy, campaign)
	 FROM (SELECT policy, campaign, count(*) n, sum(click) clicks, count(DISTINCT item_id) items, count(DISTINCT position) positions
	       FROM obd GROUP BY 1, 2) x" \
	"bts/men 10000 69 34 3, bts/women 10000 46 46 3, random/men 10000 46 34 3, random/women 10000 46 46 3"

# the logs as cdp.evaluate_policy reads them; decided_at is the timestamp,
# rows of equal timestamps a microsecond apart in file order
cdp_psql -d $db <<'SQL' >/dev/null
CREATE TABLE log AS
SELECT policy, campaign, idx,
       ts + (idx - min(idx) OVER (PARTITION BY policy, campaign, ts)) * interval '1 microsecond' AS decided_at,
       item_id::text AS arm, "position"::text AS context, click::float8 AS reward, propensity_score AS propensity,
       campaign || ':' || item_id AS campaign_arm, campaign || ':' || "position" AS campaign_context
FROM obd;
CREATE VIEW random_men AS SELECT decided_at, arm, context, reward, propensity FROM log WHERE policy = 'random' AND campaign = 'men';
CREATE VIEW random_women AS SELECT decided_at, arm, context, reward, propensity FROM log WHERE policy = 'random' AND campaign = 'women';
CREATE VIEW random_both AS SELECT decided_at, campaign_arm AS arm, campaign_context AS context, reward, propensity FROM log WHERE policy = 'random';
CREATE VIEW bts_men AS SELECT decided_at, arm, context, reward, propensity FROM log WHERE policy = 'bts' AND campaign = 'men';
CREATE VIEW bts_women AS SELECT decided_at, arm, context, reward, propensity FROM log WHERE policy = 'bts' AND campaign = 'women';
-- the alternative: one bandit per campaign that ignores the position
CREATE VIEW random_men_noctx AS SELECT decided_at, arm, NULL::text AS context, reward, propensity FROM log WHERE policy = 'random' AND campaign = 'men';
CREATE VIEW random_women_noctx AS SELECT decided_at, arm, NULL::text AS context, reward, propensity FROM log WHERE policy = 'random' AND campaign = 'women';
CREATE TABLE runs (run text, seed bigint, method text, value float8, low float8, high float8, used bigint,
	rows bigint, arms bigint, seconds float8);
SQL
expect "decided_at orders each log as its file does, without ties" \
	"SELECT count(*) FILTER (WHERE decided_at <= prev) || ' ' || count(DISTINCT (policy, campaign, decided_at))
	 FROM (SELECT *, lag(decided_at) OVER (PARTITION BY policy, campaign ORDER BY idx) prev FROM log) x" "0 40000"

# Evaluates Thompson sampling (prior Beta(1, 1), 200 draws) on log view $1 with seed $2 into runs.
evaluate() {
	local run=$1 seed=$2
	cdp_psql -d $db -c "SET client_min_messages = warning" -c "
		CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS t;
		INSERT INTO runs SELECT '$run', $seed, e.*, (SELECT count(*) FROM $run), (SELECT count(DISTINCT arm) FROM $run),
		       extract(epoch FROM clock_timestamp() - (SELECT t FROM t0))
		FROM cdp.evaluate_policy('$run', 1, 1, 200, $seed) e" >/dev/null
}
for run in random_men random_women random_both bts_men bts_women random_men_noctx random_women_noctx; do
	evaluate $run 1
done
cdp_psql -d $db -c "ALTER TABLE runs RENAME TO first_runs" -c "CREATE TABLE runs (LIKE first_runs)" >/dev/null
evaluate random_men 1
evaluate random_men 2
evaluate random_women 2
cdp_psql -d $db -c "ALTER TABLE runs RENAME TO again_runs" -c "ALTER TABLE first_runs RENAME TO runs" >/dev/null

echo "# cdp.evaluate_policy, prior Beta(1, 1), 200 draws, seed 1 (CTR in %, 95 % interval):"
cdp_psql -d $db -c "SELECT run, method, round(100 * value::numeric, 3) AS ctr_pct,
	'[' || round(100 * low::numeric, 3) || ', ' || round(100 * high::numeric, 3) || ']' AS interval_pct,
	used, rows, arms, round(seconds::numeric, 1) AS seconds
	FROM runs ORDER BY array_position(array['random_men', 'random_women', 'random_both', 'random_men_noctx',
	'random_women_noctx', 'bts_men', 'bts_women'], run),
	array_position(array['logged', 'thompson_replay', 'thompson_ipw', 'thompson_snipw'], method)" | sed 's/^/# /'

expect "the logged CTR of random/men is its clicks / rows, 46 / 10000" \
	"SELECT value = (SELECT sum(click)::float8 / count(*) FROM obd WHERE policy = 'random' AND campaign = 'men')
	        AND value = 46 / 10000.0 AND used = 10000 FROM runs WHERE run = 'random_men' AND method = 'logged'" t
expect "every logged CTR is clicks / rows with the Wilson interval of cdp.rate_interval" \
	"SELECT count(*) FILTER (WHERE r.value = d.ctr AND r.used = d.n AND (r.low, r.high) = (SELECT * FROM cdp.rate_interval(d.clicks, d.n)))
	        || '/' || count(*)
	 FROM runs r JOIN (SELECT policy || '_' || campaign AS run, sum(click) clicks, count(*) n, sum(click)::float8 / count(*) ctr
	                   FROM obd GROUP BY 1
	                   UNION ALL SELECT 'random_both', sum(click), count(*), sum(click)::float8 / count(*) FROM obd WHERE policy = 'random') d
	 USING (run) WHERE r.method = 'logged'" 5/5
expect "every run gives the four methods, none NaN or NULL" \
	"SELECT count(*) FILTER (WHERE ms = array['logged', 'thompson_ipw', 'thompson_replay', 'thompson_snipw'] AND ok) || '/' || count(*)
	 FROM (SELECT run, array_agg(method ORDER BY method) ms,
	              bool_and(value IS NOT NULL AND low IS NOT NULL AND high IS NOT NULL AND used IS NOT NULL
	                       AND value <> 'NaN' AND low <> 'NaN' AND high <> 'NaN') ok
	       FROM runs GROUP BY run) x" 7/7
expect "on the random logs every interval holds its value and lies within [0, 1]" \
	"SELECT string_agg(run || ' ' || method, ', ') FILTER (WHERE NOT (0 <= low AND low <= value AND value <= high AND high <= 1))
	 IS NULL FROM runs WHERE run LIKE 'random%'" t
expect "IPW uses every row" \
	"SELECT bool_and(used = rows) FROM runs WHERE method = 'thompson_ipw'" t
expect "SNIPW uses some rows, at most all" \
	"SELECT bool_and(used > 0 AND used <= rows) FROM runs WHERE method = 'thompson_snipw'" t
# replay keeps a row when the policy draws its logged arm: about 1 in #items
# on a uniform log (more as the policy learns; "both" offers all 80 arms in
# every context, only 34 or 46 of which are ever logged in it)
expect "replay on the random logs uses between rows / (4 #arms) and 4 rows / #arms" \
	"SELECT string_agg(run || ' ' || used || ' of ' || rows, ', ') FILTER (WHERE NOT (used BETWEEN rows / arms / 4 AND 4 * rows / arms))
	 IS NULL FROM runs WHERE method = 'thompson_replay' AND run LIKE 'random%'" t
expect "the same seed gives the same four figures (random/men, seed 1, twice)" \
	"SELECT count(*) FROM runs a JOIN again_runs b USING (run, seed, method)
	 WHERE (a.value, a.low, a.high, a.used) IS NOT DISTINCT FROM (b.value, b.low, b.high, b.used)" 4
expect "another seed changes no logged figure" \
	"SELECT bool_and((a.value, a.low, a.high, a.used) = (b.value, b.low, b.high, b.used))
	 FROM runs a JOIN again_runs b USING (run, method) WHERE b.seed = 2 AND method = 'logged'" t
echo "# seed 2 against seed 1 (CTR in %):"
cdp_psql -d $db -At -F ' ' -c "SELECT '#   ' || run || ' ' || method || ': ' || round(100 * a.value::numeric, 3) || ' (used ' || a.used
	|| ') -> ' || round(100 * b.value::numeric, 3) || ' (used ' || b.used || ')'
	|| CASE WHEN a.value = b.value AND a.used = b.used THEN ', unchanged' ELSE '' END
	FROM runs a JOIN again_runs b USING (run, method) WHERE b.seed = 2 AND method <> 'logged' ORDER BY run, method"
# sanity of the estimates: Thompson sampling, learning, should neither be
# far below the random policy nor above the best item (IPW: its interval);
# the best item's CTR at its best position is at most a few %
expect "Thompson IPW and SNIPW on the random logs lie between 0 and 3 %" \
	"SELECT bool_and(value BETWEEN 0 AND 0.03) FROM runs WHERE run LIKE 'random%' AND method IN ('thompson_ipw', 'thompson_snipw')" t

# bad logs
cdp_psql -d $db <<'SQL' >/dev/null
CREATE TABLE bad_propensity AS SELECT * FROM random_men;
UPDATE bad_propensity SET propensity = 0 WHERE decided_at = (SELECT min(decided_at) FROM bad_propensity);
CREATE TABLE bad_reward AS SELECT * FROM random_men;
UPDATE bad_reward SET reward = 2 WHERE decided_at = (SELECT min(decided_at) FROM bad_reward);
CREATE TABLE no_propensity AS SELECT decided_at, arm, context, reward FROM random_men;
CREATE TABLE empty_log AS SELECT * FROM random_men LIMIT 0;
SQL
expect "a log with a propensity of 0 fails with 22023" \
	"SELECT sqlstate_of('SELECT * FROM cdp.evaluate_policy(''bad_propensity'')')" 22023
expect "a log with a reward of 2 fails with 22023" \
	"SELECT sqlstate_of('SELECT * FROM cdp.evaluate_policy(''bad_reward'')')" 22023
expect "a log without propensity fails with 42703" \
	"SELECT sqlstate_of('SELECT * FROM cdp.evaluate_policy(''no_propensity'')')" 42703
expect "an empty log fails with P0002" \
	"SELECT sqlstate_of('SELECT * FROM cdp.evaluate_policy(''empty_log'')')" P0002
expect "draws of 0 fail with 22023" \
	"SELECT sqlstate_of('SELECT * FROM cdp.evaluate_policy(''random_men'', draws => 0)')" 22023
echo "# the messages:"
for t in bad_propensity no_propensity; do
	cdp_psql -d $db -c "SELECT * FROM cdp.evaluate_policy('$t')" 2>&1 | sed 's/^/#   /' || true
done

# "both": the two campaigns' estimates pooled, weighted by rows (replay by
# the rows it used, with the Wilson interval of the pooled counts)
cdp_psql -d $db <<'SQL' >/dev/null
INSERT INTO runs
SELECT 'pooled_both', 1, method,
       CASE WHEN method = 'thompson_replay' THEN sum(value * used) / sum(used) ELSE sum(value * rows) / sum(rows) END,
       CASE WHEN method IN ('thompson_ipw', 'thompson_snipw')
            THEN sum(value * rows) / sum(rows) - sqrt(sum((rows * (high - low) / 2) ^ 2)) / sum(rows)
            ELSE (cdp.rate_interval(round(sum(value * used))::bigint, sum(used)::bigint)).low END,
       CASE WHEN method IN ('thompson_ipw', 'thompson_snipw')
            THEN sum(value * rows) / sum(rows) + sqrt(sum((rows * (high - low) / 2) ^ 2)) / sum(rows)
            ELSE (cdp.rate_interval(round(sum(value * used))::bigint, sum(used)::bigint)).high END,
       sum(used), sum(rows), sum(arms), sum(seconds)
FROM runs WHERE run IN ('random_men', 'random_women') GROUP BY method;
INSERT INTO runs (run, seed, method, value, low, high, used, rows)
SELECT 'bts_both', 1, 'logged', sum(click)::float8 / count(*), (cdp.rate_interval(sum(click), count(*))).*, count(*), count(*)
FROM obd WHERE policy = 'bts';
SQL

# the summary the README can quote
pct() { echo "round(100 * $1::numeric, 2)"; }
summary() {
	local run=$1 method=$2 label=$3
	q "SELECT '$label ' || $(pct value) || ' % [' || $(pct low) || ', ' || $(pct high) || ']'
	   || CASE WHEN method = 'thompson_replay' THEN ' (' || used || ' rows replayed)' ELSE '' END
	   FROM runs WHERE run = '$run' AND method = '$method'"
}
echo "# summary (Open Bandit, 10,000-row samples; CTR, 95 % interval; Thompson sampling per item and position, prior Beta(1, 1), 200 draws, seed 1):"
for c in men women both; do
	run=random_$c
	[ "$c" = both ] && run=pooled_both
	rows=$(q "SELECT rows FROM runs WHERE run = '$run' AND method = 'logged'")
	line="#   $c, random logs ($rows rows): $(summary $run logged random)"
	line="$line; $(summary $run thompson_ipw 'Thompson IPW'); $(summary $run thompson_snipw SNIPW)"
	line="$line; $(summary $run thompson_replay replay)"
	line="$line; BTS logged $(summary bts_$c logged '' | sed 's/^ //')"
	echo "$line"
done
echo "#   paper (full data): random men 0.51 %, BTS men 0.67 %; random women 0.48 %, BTS women 0.64 %; ALL 0.35 % vs 0.50 %"
echo "# Thompson (IPW) against the random policy's own CTR, honestly:"
q "SELECT '#   ' || t.run || ': IPW ' || $(pct t.value) || ' % vs random ' || $(pct l.value) || ' % ('
	|| CASE WHEN t.low > l.high THEN 'above its interval'
	        WHEN t.high < l.low THEN 'below its interval'
	        ELSE 'intervals overlap: not significant' END || ')'
	|| CASE WHEN run = 'random_both' THEN ' -- one log of both campaigns (item ids of the two catalogues overlap): see pooled_both' ELSE '' END
	FROM runs t JOIN runs l USING (run) WHERE t.method = 'thompson_ipw' AND l.method = 'logged'
	AND (run LIKE 'random%' OR run = 'pooled_both') ORDER BY run"
q "SELECT '#   BTS logs (production Thompson sampling) against random: men ' || $(pct b.value) || ' % vs ' || $(pct r.value)
	|| ' %, women ' || $(pct bw.value) || ' % vs ' || $(pct rw.value) || ' %, both '
	|| round(100 * (b.value + bw.value)::numeric / 2, 2) || ' % vs ' || round(100 * (r.value + rw.value)::numeric / 2, 2) || ' %'
	FROM runs b, runs r, runs bw, runs rw
	WHERE (b.run, r.run, bw.run, rw.run) = ('bts_men', 'random_men', 'bts_women', 'random_women')
	  AND b.method = 'logged' AND r.method = 'logged' AND bw.method = 'logged' AND rw.method = 'logged'"

if [ $((passed + failed)) -ne "$checks" ]; then
	echo "not ok - offers_obd ran $((passed + failed)) checks but says $checks when it skips"
	failed=$((failed + 1))
fi
echo "offers_obd: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
