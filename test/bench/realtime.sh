#!/usr/bin/env bash
# Real time: ingest that never waits, stitching throughput, and freshness
# under load, with the background worker, on a cluster loaded with demo
# events (default 1,000,000), each beside its reference in the same run:
#  - ingest: a COPY of LOAD demo events (default 1,000,000) while one
#    client tracks an event every 10 ms (cdp.track, each its own
#    transaction): the track latency before, during and after the COPY
#    (p50, p99, max), the COPY's time against plain COPY of the same file
#    into a table without cdp (during which the client makes a plain
#    INSERT every 10 ms: the reference latency, commit included), and the time until the worker has stitched
#    it and taken it into the profile store; then the same with the worker
#    off, as before this release (the load stitches in its own transaction
#    and holds the stitching lock until it commits);
#  - stitching throughput, in events the worker stitches a second
#    (cdp.worker_status: stitched / stitch_seconds), on that demo load and
#    on a thin one (1 M events interleaved in time, 300,000 cookies, an
#    e-mail of 200,000 on every fifth event), its COPY against plain COPY;
#  - capacity: cdp.track from 4 clients as fast as they go, against plain
#    INSERT of the same rows into a table without cdp;
#  - freshness: 4 clients tracking 2,000 events a second for SECONDS
#    (default 60) with pgbench, then 500 a second (below the capacity); the delay from each event's commit to its
#    effect in the profile store (p50, p95, max, from a poll every 50 ms of
#    the store's last batch) and the worker's lag, every 10 s.
#
#   bash test/bench/realtime.sh [EVENTS [LOAD [SECONDS]]]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$CDP_ROOT"

events=${1:-1000000}
load=${2:-1000000}
seconds=${3:-60}
port=${CDP_BENCH_PORT:-54336}

cdp_bench_start bench-realtime "$port"
dir=$CDP_CLUSTER_DIR
gen() { contrib/demo/cdp-demo-gen --events "$1" --seed "$2" --start 2025-01-01 --days 365 --events-out "$dir/$3" 2>/dev/null; }
gen "$events" 42 base.csv
gen "$load" 43 load.csv
gen "$load" 44 load2.csv
chmod 644 "$dir"/*.csv
count() { cdp_psql -At -c "$1"; }
now_s() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.2f", b - a }'; }
copy_into() { echo "COPY $1 ($cdp_event_cols) FROM '$dir/$2' WITH (FORMAT csv, HEADER true)"; }
# Waits until nothing committed so far is queued, and the store and the
# journeys have taken in every batch stitched by then (a client that keeps
# tracking does not hold it up).
drained() {
	until [ "$(count "SELECT NOT EXISTS (SELECT FROM cdp.stitch_queue)")" = t ]; do sleep 0.05; done
	local target
	target=$(count "SELECT coalesce(max(batch_id), 0) FROM cdp.stitch_batches")
	until [ "$(count "SELECT (SELECT last_batch_id FROM cdp.profile_store_progress) >= $target
	                     AND (SELECT last_batch_id FROM cdp.journey_progress) >= $target")" = t ]; do sleep 0.05; done
}
# The worker's stitched events and stitching seconds, and the rate between two such.
stitch_counts() { count "SELECT stitched, stitch_seconds FROM cdp.worker_status" | tr '|' ' '; }
stitch_rate() {
	echo "$(($3 - $1)) events stitched in $(awk -v a="$2" -v b="$4" 'BEGIN { printf "%.2f", b - a }') s of stitching units: $(awk -v n="$(($3 - $1))" -v a="$2" -v b="$4" 'BEGIN { printf "%.0f", n / (b - a) }') events/s"
}
plain_copy() {
	cdp_psql -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS plain_events" -c "CREATE TABLE plain_events (occurred_at timestamptz, channel text,
		type text, identifiers jsonb, properties jsonb, amount numeric, source text)" >/dev/null
	cdp_timed -c "$(copy_into plain_events "$1")"
}

cdp_psql -c "SET client_min_messages = warning" -c "$(copy_into cdp.events base.csv)" \
	-c "VACUUM ANALYZE" -c "SELECT cdp.detect_journey_breaks('2026-01-01')" -c "SELECT cdp.sync()" >/dev/null
cdp_set_worker on
drained
base=$(count "SELECT count(*) FROM cdp.events")

# The tracking client: an event every 10 ms, each its own transaction, its
# start and latency (commit included) recorded, until bench_phase says stop.
cdp_psql -c "CREATE TABLE bench_phase (phase text)" -c "INSERT INTO bench_phase VALUES ('run')" \
	-c "CREATE TABLE bench_track (started timestamptz, ms double precision)" \
	-c "CREATE TABLE plain_track (occurred_at timestamptz, channel text, type text, identifiers jsonb)" >/dev/null
# With bench.mode = plain, a plain INSERT into a table without cdp instead.
tracker() {
	PGOPTIONS="-c bench.mode=${1:-cdp}" cdp_psql <<'SQL' >/dev/null
SET client_min_messages = warning;
DO $$
DECLARE
	t0 timestamptz;
	ph text;
	i int := 0;
BEGIN
	LOOP
		SELECT phase INTO ph FROM bench_phase;
		EXIT WHEN ph = 'stop';
		i := i + 1;
		t0 := clock_timestamp();
		IF current_setting('bench.mode') = 'plain' THEN
			INSERT INTO plain_track VALUES (now(), 'web', 'page_view', jsonb_build_object('cookie', 'rt-' || pg_backend_pid() || '-' || i));
		ELSE
			PERFORM cdp.track(now(), 'web', 'page_view', jsonb_build_object('cookie', 'rt-' || pg_backend_pid() || '-' || i));
		END IF;
		COMMIT;
		INSERT INTO bench_track VALUES (t0, extract(epoch FROM clock_timestamp() - t0) * 1000);
		COMMIT;
		PERFORM pg_sleep(0.01);
	END LOOP;
END
$$;
SQL
}
phase() { cdp_psql -c "UPDATE bench_phase SET phase = '$1'" >/dev/null; }
# The latency of the calls started from $1 to $2 (times of the server).
latency() {
	count "SELECT format('p50 %s ms, p99 %s ms, max %s ms (%s calls)',
	       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
	       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1), round(max(ms)::numeric, 1), count(*))
	       FROM bench_track WHERE started >= '$1' AND started < '$2'"
}
stamp() { count "SELECT clock_timestamp()"; }

# One load while the tracker runs: prints the COPY's seconds, with the
# worker the seconds until it has taken it in (stitched, stored, journeys),
# and the server's times at the tracker's start, the COPY's start and end,
# and the end of the worker's work.
load_tracked() {
	local file=$1 tag=$2 t0 t_copy s0 s1 s2 s3
	tracker &
	local tr=$!
	s0=$(stamp)
	sleep 2
	s1=$(stamp)
	t0=$(now_s)
	cdp_psql -c "SET client_min_messages = warning" -c "$(copy_into cdp.events "$file")" >/dev/null
	t_copy=$(since "$t0")
	s2=$(stamp)
	if [ "$tag" = worker ]; then drained; fi
	s3=$(stamp)
	echo "$t_copy $(since "$t0") ${s0// /T} ${s1// /T} ${s2// /T} ${s3// /T}"
	sleep 1
	phase stop
	wait "$tr"
	phase run
}

# The plain-SQL reference: plain INSERTs every 10 ms during a plain COPY;
# prints the COPY's seconds and the server's times at its start and end.
plain_tracked() {
	local s1 s2 t
	tracker plain &
	local tr=$!
	sleep 1
	s1=$(stamp)
	t=$(plain_copy "$1")
	s2=$(stamp)
	sleep 0.5
	phase stop
	wait "$tr"
	phase run
	echo "$t ${s1// /T} ${s2// /T}"
}

echo "== ingest: a COPY of $load demo events onto $base, while a client tracks an event every 10 ms"
read -r t_plain p1 p2 < <(plain_tracked load.csv)
read -r n0 x0 < <(stitch_counts)
read -r t_copy t_done s0 s1 s2 s3 < <(load_tracked load.csv worker)
read -r n1 x1 < <(stitch_counts)
echo "plain COPY into a table without cdp: ${t_plain} s; meanwhile a plain INSERT every 10 ms into another: $(latency "$p1" "$p2")"
echo "with the worker: COPY ${t_copy} s (ratio plain/COPY $(cdp_ratio "$t_plain" "$t_copy")); stitched, in the store and through journeys ${t_done} s after its start (ratio plain/that $(cdp_ratio "$t_plain" "$t_done"))"
echo "the worker's stitching of this demo load: $(stitch_rate "$n0" "$x0" "$n1" "$x1")"
echo "cdp.track before the COPY: $(latency "$s0" "$s1")"
echo "cdp.track during the COPY: $(latency "$s1" "$s2")"
echo "cdp.track after it, while the worker stitches it: $(latency "$s2" "$s3")"
cdp_set_worker off
t_plain2=$(plain_copy load2.csv)
read -r t_copy2 _ s0 s1 s2 s3 < <(load_tracked load2.csv inline)
cdp_psql -c "SELECT cdp.sync()" >/dev/null
echo "without the worker (the load stitches in its own transaction): plain COPY ${t_plain2} s, COPY ${t_copy2} s (ratio $(cdp_ratio "$t_plain2" "$t_copy2"))"
echo "cdp.track during that COPY: $(latency "$s1" "$s2")"

echo "== a thin load, stitched by the worker"
cdp_set_worker on
cdp_psql -c "COPY ($(cdp_thin_events)) TO '$dir/thin.csv' WITH (FORMAT csv, HEADER true)" >/dev/null
t_plain=$(plain_copy thin.csv)
read -r n0 x0 < <(stitch_counts)
t0=$(now_s)
t_copy=$(cdp_timed -c "$(copy_into cdp.events thin.csv)")
drained
t_done=$(since "$t0")
read -r n1 x1 < <(stitch_counts)
echo "thin load (1 M events interleaved in time, 300,000 cookies, an e-mail of 200,000 on every fifth): $(stitch_rate "$n0" "$x0" "$n1" "$x1");"
echo "  COPY ${t_copy} s against plain COPY ${t_plain} s (ratio $(cdp_ratio "$t_plain" "$t_copy")); stitched, in the store and through journeys ${t_done} s after its start"

cat >"$dir/track.sql" <<'SQL'
\set c random(1, 300000)
SELECT cdp.track(now(), 'web', 'page_view', jsonb_build_object('cookie', 'fr-' || :c));
SQL
cat >"$dir/insert.sql" <<'SQL'
\set c random(1, 300000)
INSERT INTO plain_events (occurred_at, channel, type, identifiers) VALUES (now(), 'web', 'page_view', jsonb_build_object('cookie', 'fr-' || :c));
SQL
tps() { "$PGBIN/pgbench" -n -c 4 -j 2 -T 10 -f "$dir/$1" 2>&1 | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'; }
echo "== capacity: 4 clients as fast as they can for 10 s, one event per transaction"
t_track=$(tps track.sql)
t_insert=$(tps insert.sql)
echo "cdp.track: $t_track events/s; plain INSERT into a table without cdp: $t_insert rows/s (ratio $(cdp_ratio "$t_track" "$t_insert"))"

# Freshness at $1 events a second from 4 clients for $seconds s.
freshness() {
	local rate=$1 first_batch poller
	echo "== freshness: 4 clients tracking $rate events a second for $seconds s"
	cdp_psql -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS bench_poll" -c "CREATE TABLE bench_poll (at timestamptz, last_batch bigint, lag_events bigint,
		lag_seconds double precision)" >/dev/null
	phase run
	first_batch=$(count "SELECT coalesce(max(batch_id), 0) FROM cdp.stitch_batches")
	cdp_psql <<'SQL' >/dev/null &
SET client_min_messages = warning;
DO $$
BEGIN
	LOOP
		INSERT INTO bench_poll SELECT clock_timestamp(), (SELECT last_batch_id FROM cdp.profile_store_progress), w.lag_events, w.lag_seconds
		FROM cdp.worker_status w;
		COMMIT;
		EXIT WHEN (SELECT phase FROM bench_phase) = 'stop';
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
SQL
	poller=$!
	"$PGBIN/pgbench" -n -c 4 -j 2 -R "$rate" -T "$seconds" -f "$dir/track.sql" 2>&1 |
		grep -E "^(number of transactions actually|latency average|rate limit schedule lag|tps)" | sed 's/^/pgbench: /'
	sleep 3
	phase stop
	wait "$poller"
	count "WITH b AS (SELECT batch_id, stitched_at FROM cdp.stitch_batches WHERE batch_id > $first_batch),
		d AS (SELECT extract(epoch FROM (SELECT min(p.at) FROM bench_poll p WHERE p.last_batch >= b.batch_id) - b.stitched_at) * 1000 AS ms FROM b)
		SELECT format('commit to the profile store: p50 %s ms, p95 %s ms, max %s ms over %s transactions (poll every 50 ms)',
		       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric), round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric),
		       round(max(ms)::numeric), count(ms)) FROM d"
	echo "the worker's lag, every 10 s (largest in each window):"
	count "SELECT format('  %s s: %s events, %s s', w * 10, max(lag_events), round(max(lag_seconds)::numeric, 2))
		FROM (SELECT floor(extract(epoch FROM at - min(at) OVER ()) / 10)::int AS w, lag_events, lag_seconds FROM bench_poll) x
		GROUP BY w ORDER BY w"
}
freshness 2000
freshness 500
