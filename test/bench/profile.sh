#!/usr/bin/env bash
# The profile store: one customer, the whole view, and how fast the store
# takes events in, on a cluster loaded with demo events (default 1,000,000),
# each beside the plain-SQL way over the event store (what cdp.customer_360
# did before the store):
#  - store: with the worker on, the time from each load's commit until the
#    worker has stitched it and the store has taken it in (events a second),
#    beside the load's own time:
#    the demo file (the store is built), a second load of 10 % more
#    (incremental), a thin load (1 M events interleaved in time, 300,000
#    cookies, an e-mail of 200,000 on every fifth event); then, worker off,
#    the same 10 % load folding in itself against its time with the worker;
#  - one customer: median and p99 of cdp.profile(kind, value) over N
#    (default 10,000) random identifiers, against 20 look-ups of the same
#    facts computed from the events for one profile;
#  - the whole view: SELECT count(*), a GROUP BY rfm_segment, and a full
#    read of every column of cdp.customer_360, against the plain-SQL
#    aggregate of every profile's activity over the events.
#
#   bash test/bench/profile.sh [EVENTS [N]]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$CDP_ROOT"

events=${1:-1000000}
n=${2:-10000}
port=${CDP_BENCH_PORT:-54335}

cdp_bench_start bench-profile "$port"
dir=$CDP_CLUSTER_DIR
contrib/demo/cdp-demo-gen --events "$events" --seed 42 --start 2025-01-01 --days 365 --events-out "$dir/events.csv" 2>/dev/null
contrib/demo/cdp-demo-gen --events $((events / 10)) --seed 43 --start 2025-01-01 --days 365 --events-out "$dir/more.csv" 2>/dev/null
chmod 644 "$dir"/*.csv
copy() { echo "COPY cdp.events ($cdp_event_cols) FROM '$dir/$1' WITH (FORMAT csv, HEADER true)"; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
count() { cdp_psql -At -c "$1"; }

# Waits until the worker has stitched every queued load and the store has
# taken in every stitched batch; prints seconds waited.
folded() {
	local t0 t1
	t0=$(date +%s.%N)
	until [ "$(count "SELECT NOT EXISTS (SELECT FROM cdp.stitch_queue) AND coalesce((SELECT last_batch_id FROM cdp.profile_store_progress), -1)
	                    = (SELECT coalesce(max(batch_id), 0) FROM cdp.stitch_batches)")" = t ]; do sleep 0.05; done
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
anchored() { count "SELECT count(*) FROM cdp.event_anchors"; }

echo "== the store, kept by the worker after each load commits"
cdp_set_worker on
t_copy=$(cdp_timed -c "$(copy events.csv)")
t_fold=$(folded)
n_events=$(anchored)
echo "demo file: COPY ${t_copy} s ($(rate "$n_events" "$t_copy") rows/s); the worker then stitched it and built the store in ${t_fold} s more ($(rate "$n_events" "$t_fold") events/s); ratio fold/COPY $(cdp_ratio "$t_fold" "$t_copy")"
t_copy=$(cdp_timed -c "$(copy more.csv)")
t_fold=$(folded)
n_more=$(( $(anchored) - n_events ))
echo "incremental: $n_more more events, COPY ${t_copy} s, stitched and folded in ${t_fold} s more ($(rate "$n_more" "$t_fold") events/s); ratio $(cdp_ratio "$t_fold" "$t_copy")"
t_worker=$t_copy
before=$(anchored)
t_copy=$(cdp_timed -c "INSERT INTO cdp.events ($cdp_event_cols) $(cdp_thin_events)")
t_fold=$(folded)
n_thin=$(( $(anchored) - before ))
echo "thin load: $n_thin events, INSERT ${t_copy} s, stitched and folded in ${t_fold} s more ($(rate "$n_thin" "$t_fold") events/s); ratio $(cdp_ratio "$t_fold" "$t_copy")"
cdp_set_worker off
t_inline=$(cdp_timed -c "$(copy more.csv)")
echo "without the worker the load stitches and folds in itself: the same $n_more-row COPY ${t_inline} s, against ${t_worker} s with the worker; ratio $(cdp_ratio "$t_worker" "$t_inline")"
cdp_psql -c "SELECT * FROM cdp.sync()" >/dev/null
cdp_psql -c "SET client_min_messages = warning" -c "VACUUM ANALYZE" -c "SELECT cdp.refresh_scores('2026-01-01')" >/dev/null

echo "== one customer: cdp.profile(kind, value) over $n random identifiers"
cdp_psql -At <<SQL
SET client_min_messages = warning;
CREATE TEMP TABLE pick AS SELECT kind, value, profile_id FROM cdp.identifiers ORDER BY random() LIMIT $n;
CREATE TEMP TABLE ms (kind text, ms double precision);
DO \$\$
DECLARE
	r record;
	t0 timestamptz;
BEGIN
	FOR r IN SELECT * FROM pick LOOP
		t0 := clock_timestamp();
		PERFORM * FROM cdp.profile(r.kind, r.value);
		INSERT INTO ms VALUES ('store', extract(epoch FROM clock_timestamp() - t0) * 1000);
	END LOOP;
	-- the plain way: the same activity and traits from the events, 20 times
	FOR r IN SELECT * FROM pick LIMIT 20 LOOP
		t0 := clock_timestamp();
		PERFORM i.profile_id, min(e.occurred_at), max(e.occurred_at), count(*),
		        array_agg(DISTINCT e.channel), count(*) FILTER (WHERE e.type = 'purchase'),
		        sum(e.amount) FILTER (WHERE e.type IN ('purchase', 'return'))
		FROM cdp.event_anchors a JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
		JOIN cdp.events e ON e.event_id = a.event_id AND e.occurred_at = a.occurred_at
		WHERE i.profile_id = r.profile_id GROUP BY i.profile_id;
		PERFORM * FROM cdp.profile_traits t WHERE t.profile_id = r.profile_id;
		INSERT INTO ms VALUES ('plain', extract(epoch FROM clock_timestamp() - t0) * 1000);
	END LOOP;
END
\$\$;
SELECT format('cdp.profile: p50 %s ms, p99 %s ms, max %s ms over %s look-ups; plain SQL over the events: p50 %s ms over 20; ratio (plain p50 / store p50) %s',
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE kind = 'store')::numeric, 2),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) FILTER (WHERE kind = 'store')::numeric, 2),
       round(max(ms) FILTER (WHERE kind = 'store')::numeric, 2), count(*) FILTER (WHERE kind = 'store'),
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE kind = 'plain')::numeric, 1),
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE kind = 'plain')
              / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE kind = 'store'))::numeric, 0))
FROM ms;
SQL

echo "== the whole view"
t_count=$(cdp_timed -c "SELECT count(*) FROM cdp.customer_360")
t_group=$(cdp_timed -c "SELECT rfm_segment, count(*) FROM cdp.customer_360 GROUP BY 1")
t_full=$(cdp_timed -c "SELECT count(*), sum(events), count(traits), count(products), count(interest), count(first_source)
	FROM cdp.customer_360 c")
t_plain=$(cdp_timed -c "SELECT count(*), sum(events) FROM (SELECT i.profile_id, min(e.occurred_at), max(e.occurred_at), count(*) AS events,
	       array_agg(DISTINCT e.channel), count(*) FILTER (WHERE e.type = 'purchase'),
	       sum(e.amount) FILTER (WHERE e.type IN ('purchase', 'return'))
	FROM cdp.event_anchors a JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	JOIN cdp.events e ON e.event_id = a.event_id AND e.occurred_at = a.occurred_at GROUP BY 1) x")
echo "customer_360 ($(count "SELECT count(*) FROM cdp.customer_360") profiles): count(*) ${t_count} s, GROUP BY rfm_segment ${t_group} s, every column ${t_full} s; plain SQL activity alone over the events ${t_plain} s; ratio (plain / every column) $(cdp_ratio "$t_plain" "$t_full")"
