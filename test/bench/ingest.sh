#!/usr/bin/env bash
# Ingest benchmark: COPY of demo events into cdp.events (partitioned, every
# row checked, bad rows quarantined) against COPY of the same file into a
# plain unindexed table with the same columns, side by side in one run.
#
#   bash test/bench/ingest.sh [EVENTS ...]        default: 1000000 10000000
#
# Each size is loaded in two orders: as generated (grouped by person, so
# consecutive rows fall in any of the 12 months: the worst case for partition
# routing) and sorted by occurred_at (as a daily file or a stream arrives).
# A third load, "keyed", is the time-sorted file with a message id (the
# idempotency key) on every row: cdp claims each id in cdp.event_messages,
# plain COPY just stores the column.
# Each file is loaded ROUNDS times (default 2) into each table, alternating,
# after a CHECKPOINT; the best time of each is reported.  Prints rows/s for
# both and the ratio cdp / plain (goal: 0.5 or more).  Identity stitching
# is off here: this measures the event store; test/bench/identity.sh
# measures stitching.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$CDP_ROOT"

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
rounds=${ROUNDS:-2}
port=${CDP_BENCH_PORT:-54332}

cdp_bench_start bench "$port"
cdp_psql -c "CREATE TABLE plain_events (event_id bigint, occurred_at timestamptz,
	received_at timestamptz DEFAULT now(), channel text, type text, identifiers jsonb,
	properties jsonb, amount numeric, source text, message_id text)"

cols=$cdp_event_cols

# Loads a file into a table after a checkpoint; prints the seconds it took.
load() {
	local table=$1 file=$2 columns=$3 t0 t1
	cdp_psql -c "TRUNCATE $table" -c "TRUNCATE cdp.event_messages" -c "CHECKPOINT" >/dev/null
	t0=$(date +%s.%N)
	cdp_psql -c "SET client_min_messages = warning" -c "SET cdp.stitch_on_ingest = off" \
		-c "COPY $table ($columns) FROM '$file' WITH (FORMAT csv, HEADER true)" >/dev/null
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | awk '{ split($0, a, " - "); printf "%.3f\n", a[1] - a[2] }'
}

printf '\n%-10s %-10s %10s %10s %14s %14s %7s\n' events order "plain s" "cdp s" "plain rows/s" "cdp rows/s" ratio
for n in "${sizes[@]}"; do
	file=$CDP_CLUSTER_DIR/events-$n.csv
	contrib/demo/cdp-demo-gen --events "$n" --seed 42 --start 2025-01-01 --days 365 \
		--events-out "$file" 2>/dev/null
	{ head -1 "$file"; tail -n +2 "$file" | LC_ALL=C sort -t, -k1,1 -S 1G; } >"$file.sorted"
	awk 'NR == 1 { print $0 ",message_id"; next } { print $0 ",m-" NR }' "$file.sorted" >"$file.keyed"
	chmod 644 "$file" "$file.sorted" "$file.keyed"
	for order in generated time keyed; do
		f=$file
		c_cols=$cols
		[ "$order" = time ] && f=$file.sorted
		[ "$order" = keyed ] && f=$file.keyed && c_cols="$cols, message_id"
		best_plain=
		best_cdp=
		for ((r = 1; r <= rounds; r++)); do
			p=$(load plain_events "$f" "$c_cols")
			c=$(load cdp.events "$f" "$c_cols")
			best_plain=$(printf '%s\n%s\n' "${best_plain:-$p}" "$p" | sort -g | head -1)
			best_cdp=$(printf '%s\n%s\n' "${best_cdp:-$c}" "$c" | sort -g | head -1)
		done
		stored=$(cdp_psql -At -c "SELECT count(*) FROM cdp.events")
		rejected=$(cdp_psql -At -c "SELECT count(*) FROM cdp.rejected_events")
		[ "$stored" -eq "$n" ] && [ "$rejected" -eq 0 ] ||
			echo "warning: cdp.events holds $stored rows, $rejected quarantined, expected $n and 0"
		awk -v n="$n" -v o="$order" -v p="$best_plain" -v c="$best_cdp" 'BEGIN {
			printf "%-10d %-10s %10.2f %10.2f %14.0f %14.0f %7.2f\n", n, o, p, c, n / p, n / c, p / c }'
	done
	rm -f "$file" "$file.sorted" "$file.keyed"
done
echo
echo "ratio = cdp rows/s / plain rows/s (best of $rounds rounds each, same file, same cluster)"
