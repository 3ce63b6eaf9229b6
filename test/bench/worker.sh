#!/usr/bin/env bash
# Freshness with the background worker: on a cluster loaded with demo
# events (default 1,000,000), N carts left two hours ago are tracked
# one at a time (cdp.track, each its own transaction) for new visitors, and
# the time from each commit to its open break in cdp.journey_breaks is
# measured (p50, p95, max), with nobody running cdp.detect_journey_breaks;
# then N purchases, and the time from each commit to its effect in the
# profile store (p50, p95, max).
# The reference is a schedule: pg_cron runs jobs at most once a minute, so
# a break found by a scheduled run is on average 30 s old, at worst 60 s.
#
#   bash test/bench/worker.sh [EVENTS [N]]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$CDP_ROOT"

events=${1:-1000000}
n=${2:-200}
port=${CDP_BENCH_PORT:-54334}

cdp_bench_start bench-worker "$port"
file=$CDP_CLUSTER_DIR/events.csv
contrib/demo/cdp-demo-gen --events "$events" --seed 42 --start 2025-01-01 --days 365 --events-out "$file" 2>/dev/null
chmod 644 "$file"
cdp_psql -c "SET client_min_messages = warning" \
	-c "COPY cdp.events ($cdp_event_cols) FROM '$file' WITH (FORMAT csv, HEADER true)" \
	-c "SELECT cdp.ensure_partitions(now() - interval '1 month', now() + interval '1 month')" \
	-c "SELECT cdp.detect_journey_breaks(now())" >/dev/null
cdp_psql -c "ALTER SYSTEM SET cdp.worker_enabled = on" -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 120); do
	[ "$(cdp_psql -At -c "SELECT units > 0 AND lag_events = 0 FROM cdp.worker_status")" = t ] && break
	sleep 0.5
done

# Delays from commit to effect, one psql session: for i in 1..N, tracks
# (the SQL of $2, with c the visitor's cookie) and polls until the query of
# $3 holds; prints "p50 p95 max count" in ms.  $1 names the visitors.
measure() {
	local prefix=$1 track=$2 effect=$3
	cdp_psql -At <<SQL | tr '|' ' ' | tail -1
SET client_min_messages = warning;
CREATE TEMP TABLE delays (ms double precision);
DO \$\$
DECLARE
	t0 timestamptz;
	c text;
BEGIN
	FOR i IN 1..$n LOOP
		c := '$prefix-' || i;
		PERFORM $track;
		COMMIT;
		t0 := clock_timestamp();
		LOOP
			EXIT WHEN $effect;
			PERFORM pg_sleep(0.005);
			COMMIT;
		END LOOP;
		INSERT INTO delays VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
		COMMIT;
	END LOOP;
END
\$\$;
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(max(ms)::numeric, 1), count(*)
FROM delays;
SQL
}

read -r p50 p95 max count < <(measure bench-w \
	"cdp.track(now() - interval '2 hours', 'web', 'add_to_cart', jsonb_build_object('cookie', c), '{\"product_id\": \"P1\"}')" \
	"EXISTS (SELECT FROM cdp.journey_breaks WHERE profile_id = cdp.resolve('cookie', c) AND funnel_id = 'cart' AND status = 'open')")
cdp_psql -At -c "SELECT units, events, errors FROM cdp.worker_status" | tr '|' ' ' | {
	read -r units took errors
	echo
	echo "== $events demo events, $count carts tracked one at a time"
	echo "commit to open break: p50 $p50 ms, p95 $p95 ms, max $max ms (worker: $units units, $took events, $errors errors)"
	echo "a schedule (pg_cron, once a minute): on average 30000 ms, at worst 60000 ms"
}

# the profile store: purchases tracked one at a time, and the time from each
# commit to the purchase in cdp.profile_store (what a read-only cdp.profile
# sees: nobody folds it in but the worker)
read -r p50 p95 max count < <(measure bench-s \
	"cdp.track(now(), 'store', 'purchase', jsonb_build_object('cookie', c), '{\"product_id\": \"P1\"}', 10)" \
	"EXISTS (SELECT FROM cdp.profile_store WHERE profile_id = cdp.resolve('cookie', c) AND orders = 1)")
echo "commit to the purchase in the profile store: p50 $p50 ms, p95 $p95 ms, max $max ms ($count purchases)"
