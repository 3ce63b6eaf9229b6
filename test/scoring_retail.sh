#!/usr/bin/env bash
# Lifetime value on the real Online Retail invoices (../shared/data/online_retail,
# see its SOURCE.md: 18,532 invoices of 4,338 customers, 2010-12-01..2011-12-09),
# on the cluster of test/run.sh (PG* set):
#  - the first cdp.refresh_scores after the COPY analyzes the event tables;
#  - BG/NBD's dropout is not identified on these data (a runs to 0): the
#    scores fall back to NBD, its limit, said in cdp.clv_models, and every
#    purchaser gets p_alive and a lifetime value;
#  - the NBD fit checked independently: its log-likelihood recomputed in SQL
#    (lnG(r + x) - lnG(r) as a sum of logs), equal to BG/NBD's last iterate
#    as a runs to 0, and lower at every nearby point;
#  - cdp.validate_clv on these data fails with a hint that says what to do.
# Prints "scoring_retail: N passed, N failed"; without the data (under
# CDP_SHARED_DATA, by default ../shared/data) it skips its checks and says how
# many: "scoring_retail: 0 passed, 0 failed, N skipped".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

data=${CDP_SHARED_DATA:-$CDP_ROOT/../shared/data}/online_retail/online_retail_invoices.csv
db=cdp_retail
passed=0
failed=0
# the checks below (a run that counts otherwise fails: keep it true)
checks=16
if [ ! -r "$data" ]; then
	echo "# SKIP scoring_retail: the Online Retail data is not in $(dirname "$data") (set CDP_SHARED_DATA to the data directory)"
	echo "scoring_retail: 0 passed, 0 failed, $checks skipped"
	exit 0
fi

# Checks a query of the test database (see cdp_expect in test/lib.sh).
expect() { cdp_expect "$1" "$db" "$2" "$3"; }

cdp_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
cdp_psql -d $db -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp" >/dev/null
# each invoice a web purchase of its customer, at noon of its day
tail -n +2 "$data" | tr -d '\r' | awk -F, '{
	printf "%s 12:00:00+00,web,purchase,\"{\"\"customer_id\"\": \"\"%s\"\"}\",{},%s\n", $2, $3, $4 }' |
	cdp_psql -d $db -c "\\copy cdp.events (occurred_at, channel, type, identifiers, properties, amount) FROM STDIN WITH (FORMAT csv)" >/dev/null
expect "every invoice is stored" "SELECT count(*) FROM cdp.events" 18532
expect "one profile per customer" "SELECT count(*) FROM cdp.profiles WHERE merged_into IS NULL" 4338
expect "the loaded events have no statistics yet" \
	"SELECT min(c.reltuples) FROM pg_partition_tree('cdp.events') p JOIN pg_class c ON c.oid = p.relid WHERE p.isleaf" -1

t0=$(date +%s.%N)
cdp_psql -d $db -c "SET client_min_messages = error" -c "CREATE TABLE scores AS SELECT * FROM cdp.refresh_scores('2011-12-10')" >/dev/null
t1=$(date +%s.%N)
echo "# first cdp.refresh_scores after the COPY: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
expect "the first run analyzed the events it read" \
	"SELECT bool_and(c.reltuples >= 0) AND sum(c.reltuples) > 0 FROM pg_partition_tree('cdp.events') p JOIN pg_class c ON c.oid = p.relid WHERE p.isleaf" t
expect "... and the anchors and identifiers" \
	"SELECT count(*) FROM pg_class WHERE oid IN ('cdp.event_anchors'::regclass, 'cdp.identifiers'::regclass) AND reltuples > 0" 2

cdp_psql -d $db -At -c "SELECT '# model: ' || (model - 'fallback_from')::text, '# failed: ' || (model->'fallback_from')::text
	FROM cdp.clv_models" | tr '|' '\n'
expect "BG/NBD is not identified here: a runs to 0" \
	"SELECT model->'fallback_from'->>'message' FROM cdp.clv_models" "the data do not identify the model: a runs to 0 (1e-06)"
expect "cdp.clv_models says the scores use NBD" "SELECT model->>'model' || ' ' || (model->>'status') FROM cdp.clv_models" "nbd ok"
expect "every purchaser gets p_alive and a lifetime value" \
	"SELECT s.rfm_profiles || ' ' || s.clv_profiles || ' ' || count(c.p_alive) || ' ' || count(c.clv) FROM scores s, cdp.clv c GROUP BY s.rfm_profiles, s.clv_profiles" \
	"4338 4338 4338 4338"
expect "lifetime values are positive and finite" "SELECT bool_and(clv > 0 AND clv < 'Infinity') FROM cdp.clv" t

# the fallback checked independently: NBD log-likelihood in plain SQL
cdp_psql -d $db -c "CREATE TABLE hist AS SELECT * FROM cdp.purchase_history('2010-12-10', '2011-12-10')" \
	-c "CREATE FUNCTION nbd_ll(r float8, al float8) RETURNS float8 LANGUAGE sql AS \$\$
		SELECT sum(coalesce((SELECT sum(ln(r + k)) FROM generate_series(0, h.x - 1) k), 0)
		           + r * ln(al) - (r + h.x) * ln(al + h.t)) FROM hist h \$\$" >/dev/null
expect "NBD fitted on the 4,264 customers of the calibration year" "SELECT model->>'customers' FROM cdp.clv_models" 4264
expect "NBD log-likelihood recomputed in SQL (within 1e-6)" \
	"SELECT abs(nbd_ll((model->>'r')::float8, (model->>'alpha')::float8) - (model->>'log_likelihood')::float8) < 1e-6 FROM cdp.clv_models" t
expect "NBD is a maximum: 1 % away in r or alpha the likelihood is lower" \
	"SELECT bool_and(nbd_ll(r * dr, al * da) < nbd_ll(r, al)) FROM (SELECT (model->>'r')::float8 r, (model->>'alpha')::float8 al FROM cdp.clv_models) m,
	 (VALUES (1.01, 1.0), (0.99, 1.0), (1.0, 1.01), (1.0, 0.99), (1.01, 1.01), (0.99, 0.99)) d(dr, da)" t
expect "BG/NBD's last iterate (a -> 0) is the NBD fit (r, alpha within 0.01 %)" \
	"SELECT abs((f->'last_iterate'->>'r')::float8 / (m->>'r')::float8 - 1) < 1e-4 AND abs((f->'last_iterate'->>'alpha')::float8 / (m->>'alpha')::float8 - 1) < 1e-4
	 FROM (SELECT model AS m, model->'fallback_from' AS f FROM cdp.clv_models) q" t
expect "expected purchases follow t (r + x) / (alpha + t)" \
	"SELECT bool_and(abs(c.expected_purchases - 365.25 * ((m.model->>'r')::float8 + c.x) / ((m.model->>'alpha')::float8 + c.t)) < 1e-9) FROM cdp.clv c JOIN cdp.clv_models m USING (model_id)" t

# validating BG/NBD on these data fails, with a hint
out=$(cdp_psql -d $db -c "SELECT * FROM cdp.validate_clv('2011-06-10', '2011-12-10')" 2>&1 || true)
echo "$out" | sed 's/^/# /'
cdp_check "cdp.validate_clv says what to do when dropout is not identified" \
	grep -q '^HINT:  The calibration period does not show how customers drop out' <<<"$out"
expect "... and validates the model without dropout it suggests" \
	"SELECT customers > 0 AND params->>'status' = 'ok' FROM cdp.validate_clv('2011-06-10', '2011-12-10', model => 'nbd')" t

if [ $((passed + failed)) -ne "$checks" ]; then
	echo "not ok - scoring_retail ran $((passed + failed)) checks but says $checks when it skips"
	failed=$((failed + 1))
fi
echo "scoring_retail: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
