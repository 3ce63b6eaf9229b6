#!/usr/bin/env bash
# Scoring benchmark, in one run on one cluster:
#  - on demo events of the given sizes (default 1000000 10000000):
#    cdp.refresh_scores (RFM, then BG/NBD and Gamma-Gamma fitted and applied
#    to every purchaser) against plain SQL doing RFM alone (GROUP BY and
#    ntile over the same purchases), each run twice, best time kept;
#  - the BG/NBD fit on 1,000,000 synthetic customers (goal: under 5 s),
#    with Gamma-Gamma and Pareto/NBD for comparison.
#
#   bash test/bench/scoring.sh [EVENTS ...]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$CDP_ROOT"

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
port=${CDP_BENCH_PORT:-54334}

cdp_bench_start bench-scoring "$port"
cols=$cdp_event_cols

# The smaller of two numbers.
best() {
	awk -v a="$1" -v b="$2" 'BEGIN { print (a < b ? a : b) }'
}

# RFM the plain-SQL way: purchases per profile, ntile scores.
plain_rfm="CREATE TEMP TABLE plain_rfm AS
	SELECT profile_id, recency, frequency, monetary,
	       ntile(5) OVER (ORDER BY recency DESC) AS r, ntile(5) OVER (ORDER BY frequency) AS f,
	       ntile(5) OVER (ORDER BY monetary) AS m
	FROM (SELECT i.profile_id, '2026-01-01'::timestamptz - max(e.occurred_at) FILTER (WHERE e.type = 'purchase') AS recency,
	             count(*) FILTER (WHERE e.type = 'purchase') AS frequency, coalesce(sum(e.amount), 0) AS monetary
	      FROM cdp.events e JOIN cdp.event_anchors a ON a.event_id = e.event_id
	      JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	      WHERE e.type IN ('purchase', 'return') AND e.occurred_at <= '2026-01-01'
	      GROUP BY 1 HAVING count(*) FILTER (WHERE e.type = 'purchase') > 0) p"
refresh="SELECT * FROM cdp.refresh_scores('2026-01-01', interval '1 year', interval '1 year')"

echo "| events | live profiles | purchasers | plain SQL RFM | cdp.refresh_scores (RFM + CLV) | ratio |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
for n in "${sizes[@]}"; do
	file=$CDP_CLUSTER_DIR/events-$n.csv
	contrib/demo/cdp-demo-gen --events "$n" --seed 42 --events-out "$file" 2>/dev/null
	chmod 644 "$file"
	cdp_psql -c "TRUNCATE cdp.events, cdp.identifiers, cdp.profiles, cdp.identity_links, cdp.event_anchors,
		cdp.profile_merges, cdp.identity_conflicts, cdp.identifier_rejections, cdp.stitch_batches" >/dev/null
	cdp_psql -c "COPY cdp.events ($cols) FROM '$file' WITH (FORMAT csv, HEADER true)" -c "VACUUM ANALYZE" >/dev/null
	rm -f "$file"
	p1=$(cdp_timed -c "$plain_rfm")
	r1=$(cdp_timed -c "$refresh")
	p2=$(cdp_timed -c "$plain_rfm")
	r2=$(cdp_timed -c "$refresh")
	p=$(best "$p1" "$p2")
	r=$(best "$r1" "$r2")
	counts=$(cdp_psql -At -F ' ' -c "SELECT (SELECT count(*) FROM cdp.profiles WHERE merged_into IS NULL), (SELECT count(*) FROM cdp.rfm)")
	read -r n_profiles n_rfm <<<"$counts"
	printf "| %'d | %'d | %'d | %s s | %s s | %s |\n" "$n" "$n_profiles" "$n_rfm" "$p" "$r" \
		"$(awk -v a="$p" -v b="$r" 'BEGIN { printf "%.2f", b / a }')"
done
echo "(ratio: refresh_scores time / plain RFM time; refresh_scores also fits and applies the lifetime-value models)"
echo

# 1,000,000 synthetic customers, days: each buys every iv days until it drops out
cdp_psql -c "CREATE TABLE customers AS
	SELECT g AS id, x, CASE WHEN x > 0 THEN x * iv ELSE 0 END::float8 AS t_x, t::float8 AS t,
	       CASE WHEN x > 0 THEN 10 + (g % 97) END::float8 AS avg_value
	FROM (SELECT g, iv, t, floor(least(d, t) / iv)::float8 AS x
	      FROM (SELECT g, 3 + (g * 37) % 90 AS iv, 30 + g % 700 AS t, (g * 7919) % 900 AS d
	            FROM generate_series(1::bigint, 1000000) g) a) s" -c "VACUUM ANALYZE customers" >/dev/null
echo "| fit on 1,000,000 customers | seconds | status |"
echo "| --- | ---: | --- |"
for agg in "bgnbd_fit(x, t_x, t)" "gamma_gamma_fit(x, avg_value)" "pareto_nbd_fit(x, t_x, t)"; do
	s=$(cdp_timed -c "DROP TABLE IF EXISTS fit" -c "CREATE TABLE fit AS SELECT cdp.$agg AS fit FROM customers")
	status=$(cdp_psql -At -c "SELECT fit->>'status' FROM fit")
	echo "| cdp.${agg%%(*} | $s | $status |"
done
