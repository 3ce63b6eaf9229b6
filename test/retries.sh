#!/usr/bin/env bash
# Retries under concurrency, on the cluster of test/run.sh (PG* set): loads
# of one keyed file (every event with a message id) run at once in several
# sessions, and a load waits for another that holds the same ids until it
# commits (then every row is a retry) or rolls back (then every row is
# stored).  Each message id ends up stored once and its other copies in the
# quarantine; no load fails.  Prints "retries: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

db=cdp_retries
dir=$CDP_CLUSTER_DIR/retries
rows=20000
passed=0
failed=0
mkdir -p "$dir"
chmod 755 "$dir"
cols="occurred_at, channel, type, identifiers, properties, amount, source, message_id"

cdp_psql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
cdp_psql -d $db -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp" \
	-c "SELECT cdp.ensure_partitions('2025-01-01', '2025-12-31')" >/dev/null
contrib/demo/cdp-demo-gen --events $rows --seed 11 --events-out "$dir/events.csv" 2>/dev/null
awk 'NR == 1 { print $0 ",message_id"; next } { print $0 ",r-" NR }' "$dir/events.csv" >"$dir/keyed.csv"
chmod 644 "$dir"/*

# Loads the keyed file in one session; extra arguments run after the COPY,
# in the same transaction.
load() {
	local log=$1
	shift
	{
		echo "SET client_min_messages = warning;"
		echo "BEGIN;"
		echo "COPY cdp.events ($cols) FROM '$dir/keyed.csv' WITH (FORMAT csv, HEADER true);"
		printf '%s\n' "$@"
		echo "COMMIT;"
	} | cdp_psql -d $db >"$log" 2>&1
}

# Counts what the database holds for the keyed file: stored rows, distinct
# ids stored, retries quarantined.
holds() {
	cdp_psql -d $db -At -F ' ' -c "SELECT (SELECT count(*) FROM cdp.events WHERE message_id LIKE 'r-%'),
		(SELECT count(DISTINCT message_id) FROM cdp.events WHERE message_id LIKE 'r-%'),
		(SELECT count(*) FROM cdp.rejected_events WHERE reason_code = 'duplicate_message_id')"
}

# (a) four sessions load the same file at once
pids=()
for s in 1 2 3 4; do
	load "$dir/at-once-$s.log" &
	pids+=($!)
done
st=0
for pid in "${pids[@]}"; do wait "$pid" || st=1; done
cdp_tally $st "four sessions loading one keyed file at once all succeed" "$(cat "$dir"/at-once-*.log | head -5)"
got=$(holds)
st=0
[ "$got" = "$rows $rows $((3 * rows))" ] || st=1
cdp_tally $st "each message id is stored once, the three other copies quarantined" \
	"got '$got', expected '$rows $rows $((3 * rows))'"

# (b) a load waits for one holding its ids: the holder commits, so every
# row of the waiting load is a retry
cdp_psql -d $db -c "TRUNCATE cdp.events, cdp.event_messages, cdp.rejected_events" >/dev/null
load "$dir/holder.log" "SELECT pg_sleep(3);" &
holder=$!
sleep 1
load "$dir/waiter.log"
st=0
wait $holder || st=1
got=$(holds)
[ "$got" = "$rows $rows $rows" ] || st=1
cdp_tally $st "a load waits for a concurrent one with the same ids; after its commit every row is a retry" \
	"got '$got', expected '$rows $rows $rows'"

# (c) the holder rolls back: the waiting load stores every row
cdp_psql -d $db -c "TRUNCATE cdp.events, cdp.event_messages, cdp.rejected_events" >/dev/null
load "$dir/holder.log" "SELECT pg_sleep(3);" "ROLLBACK;" &
holder=$!
sleep 1
load "$dir/waiter.log"
st=0
wait $holder || st=1
got=$(holds)
[ "$got" = "$rows $rows 0" ] || st=1
cdp_tally $st "after the concurrent load rolls back, the waiting one stores every row" \
	"got '$got', expected '$rows $rows 0'"

echo "retries: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
