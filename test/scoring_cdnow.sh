#!/usr/bin/env bash
# Lifetime-value models on the real CDNOW data (../shared/data/cdnow, see its
# SOURCE.md), on the cluster of test/run.sh (PG* set):
#  - the published fits of BG/NBD, Pareto/NBD and Gamma-Gamma on the 2,357
#    customer calibration summary, each parameter within 0.5 %;
#  - the whole CDNOW cohort (69,659 purchases of 23,570 customers) loaded as
#    purchase events, and cdp.validate_clv on the papers' split (39 weeks of
#    calibration, 39 of hold-out), the first job after the COPY (timed; it
#    analyzes what it reads);
#  - cdp.refresh_scores at 1998-07-01 scores every purchaser, including
#    those whose last purchase is older than the one-year calibration window.
# Prints "scoring_cdnow: N passed, N failed"; without the data (under
# CDP_SHARED_DATA, by default ../shared/data) it skips its checks and says how many:
# "scoring_cdnow: 0 passed, 0 failed, N skipped".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

data=${CDP_SHARED_DATA:-$CDP_ROOT/../shared/data}/cdnow
db=cdp_cdnow
passed=0
failed=0
# the checks below (a run that counts otherwise fails: keep it true)
checks=24
if [ ! -r "$data/cdnow_customers_summary_with_transactions.csv" ] || [ ! -r "$data/CDNOW_master.txt" ]; then
	echo "# SKIP scoring_cdnow: the CDNOW data is not in $data (set CDP_SHARED_DATA to the data directory)"
	echo "scoring_cdnow: 0 passed, 0 failed, $checks skipped"
	exit 0
fi

# Checks a query of the test database (see cdp_expect in test/lib.sh).
expect() { cdp_expect "$1" "$db" "$2" "$3"; }

cdp_psql -d postgres -c "DROP DATABASE IF EXISTS cdp_cdnow" -c "CREATE DATABASE cdp_cdnow" >/dev/null
cdp_psql -d cdp_cdnow -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp" >/dev/null
cdp_psql -d cdp_cdnow -c "CREATE TABLE summary (id int, x float8, t_x float8, t float8, zbar float8)" \
	-c "\\copy summary FROM '$data/cdnow_customers_summary_with_transactions.csv' WITH (FORMAT csv, HEADER true)" >/dev/null
cdp_psql -d cdp_cdnow -c "CREATE TABLE fits AS SELECT cdp.bgnbd_fit(x, t_x, t) AS bgnbd, cdp.pareto_nbd_fit(x, t_x, t) AS pareto,
	cdp.gamma_gamma_fit(x, zbar) AS gg FROM summary" >/dev/null
cdp_psql -d cdp_cdnow -At -c "SELECT '# BG/NBD ' || bgnbd::text, '# Pareto/NBD ' || pareto::text, '# Gamma-Gamma ' || gg::text FROM fits" \
	| tr '|' '\n'

# within 0.5 % of each published parameter (Fader, Hardie and Lee 2005; see SOURCE.md)
within() {
	local fit=$1 param=$2 published=$3
	expect "$fit $param within 0.5 % of $published" \
		"SELECT abs(($fit->>'$param')::float8 / $published - 1) < 0.005 FROM fits" t
}
within bgnbd r 0.2426
within bgnbd alpha 4.4136
within bgnbd a 0.7929
within bgnbd b 2.4259
expect "BG/NBD log-likelihood -9582.43 (within 0.05)" "SELECT abs((bgnbd->>'log_likelihood')::float8 + 9582.43) < 0.05 FROM fits" t
within pareto r 0.5532
within pareto alpha 10.5763
within pareto s 0.6063
within pareto beta 11.6715
expect "Pareto/NBD log-likelihood -9594.98 (within 0.05)" "SELECT abs((pareto->>'log_likelihood')::float8 + 9594.98) < 0.05 FROM fits" t
within gg p 6.25
within gg q 3.74
within gg gamma 15.44
expect "Gamma-Gamma fitted on the 946 repeat customers" "SELECT gg->>'customers' FROM fits" 946
expect "BG/NBD expected purchases in 39 weeks for (2, 30.43, 38.86) is 1.226" \
	"SELECT round(cdp.bgnbd_expected_purchases(bgnbd, 39, 2, 30.43, 38.86)::numeric, 3) FROM fits" 1.226

# the whole cohort as purchase events: one customer id each, in stores
tr -d '\r' <"$data/CDNOW_master.txt" | awk 'NR > 1 {
	printf "%s-%s-%s 12:00:00+00,store,purchase,\"{\"\"customer_id\"\": \"\"cd%s\"\"}\",{},%s\n",
		substr($2, 1, 4), substr($2, 5, 2), substr($2, 7, 2), $1, $4 }' |
	cdp_psql -d cdp_cdnow -c "\\copy cdp.events (occurred_at, channel, type, identifiers, properties, amount) FROM STDIN WITH (FORMAT csv)" >/dev/null
expect "every CDNOW purchase is stored" "SELECT count(*) FROM cdp.events" 69659
expect "one profile per CDNOW customer" "SELECT count(*) FROM cdp.profiles WHERE merged_into IS NULL" 23570

# the papers' split: calibration 1997-01-01 .. 1997-09-30, hold-out to 1998-06-30
# (the first job after the COPY: it analyzes the tables it reads)
t0=$(date +%s.%N)
cdp_psql -d cdp_cdnow -c "CREATE TABLE validation AS SELECT * FROM cdp.validate_clv('1997-09-30 23:59:59+00', '1998-06-30 23:59:59+00', interval '1 year')" >/dev/null
t1=$(date +%s.%N)
echo "# first job after the COPY (cdp.validate_clv): $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
expect "the first job analyzed the events" "SELECT count(*) FROM pg_class WHERE oid IN ('cdp.event_anchors'::regclass, 'cdp.identifiers'::regclass) AND reltuples > 0" 2
cdp_psql -d cdp_cdnow -At -F ' ' -c "SELECT '# hold-out: ' || customers || ' customers, ' || actual || ' repeat purchase days, predicted '
	|| round(predicted::numeric, 1) || ' (aggregate error ' || round(100 * aggregate_error::numeric, 1) || ' %), MAE '
	|| round(mae::numeric, 3) || ', RMSE ' || round(rmse::numeric, 3) || ', correlation ' || round(correlation::numeric, 3) FROM validation"
expect "validation covers the whole cohort" "SELECT customers FROM validation" 23570
# BG/NBD is known to under-predict this hold-out: with the published fit the
# 2,357-customer sample is predicted 1,653 repeat purchase days against 1,882
# (-12 %); the whole cohort is checked against a bound of 20 %
expect "BG/NBD predicts the hold-out total within 20 %" "SELECT abs(aggregate_error) < 0.20 FROM validation" t
expect "per-customer predictions correlate with what happened" "SELECT correlation > 0.5 FROM validation" t
expect "RFM scores every CDNOW customer" "SELECT rfm_profiles FROM cdp.refresh_scores('1998-07-01', interval '1 year', interval '39 weeks')" 23570
# customers lapsed for more than the one-year calibration window are scored too
expect "every CDNOW purchaser gets p_alive and a lifetime value at 1998-07-01" \
	"SELECT count(*) || ' ' || count(p_alive) || ' ' || count(clv) FROM cdp.clv" "23570 23570 23570"
expect "... 15,238 of them lapsed before the calibration window" \
	"SELECT count(*) FROM cdp.clv c JOIN cdp.rfm r USING (profile_id) WHERE r.last_purchase < '1997-07-01' AND c.p_alive IS NOT NULL" 15238

if [ $((passed + failed)) -ne "$checks" ]; then
	echo "not ok - scoring_cdnow ran $((passed + failed)) checks but says $checks when it skips"
	failed=$((failed + 1))
fi
echo "scoring_cdnow: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
