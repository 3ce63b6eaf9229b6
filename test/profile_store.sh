#!/usr/bin/env bash
# The profile store, on the cluster of test/run.sh (PG* set; the worker off,
# so that loads fold their events into the store themselves):
#  - the store is exact: after concurrent loads, late events, merges by
#    hand and an unmerge, and events removed by retention, every fact of
#    every profile equals the one computed from cdp.events
#    (test/store_truth.sql), and the incremental store equals
#    cdp.rebuild_profile_store() (test/store_digest.sql);
#  - nothing is skipped when a loading transaction commits after a sync
#    that ran while it was open;
#  - cdp.profile reads one customer by id or by identifier, follows a
#    merged-away id, reads its own writes (cdp.track then cdp.profile),
#    works in a read-only transaction, and gives no row for an unknown one;
#  - cdp.customer_360 has a row per live profile and reads no event;
#  - bad arguments get clear errors.
# Without the worker (as here) each loading statement folds its events into
# the store in its own transaction; test/worker.sh covers the worker's way.
# Prints "profile_store: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

db=cdp_profile_store
dir=$CDP_CLUSTER_DIR/profile_store
passed=0
failed=0
mkdir -p "$dir"
chmod 755 "$dir"
cdp_psql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" \
	-c "CREATE DATABASE $db" >/dev/null
cdp_psql -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp" \
	-c "SELECT cdp.ensure_partitions('2025-01-01', '2026-01-01')" >/dev/null

q() { cdp_psql -d "$db" -At -c "SET client_min_messages = warning" "$@"; }

# Succeeds when every fact of every profile equals the events' (else prints them).
store_exact() {
	local out
	out=$(cdp_psql -d "$db" -At -F ' ' -f test/store_truth.sql)
	[ -z "$(echo "$out" | awk '$NF != 0')" ] && return 0
	echo "$out" | awk '$NF != 0 {print "#   " $0}'
	return 1
}

# Succeeds when the store equals the one cdp.rebuild_profile_store() makes.
same_as_rebuild() {
	cdp_psql -d "$db" -At -f test/store_digest.sql >"$dir/incremental"
	q -c "SELECT * FROM cdp.rebuild_profile_store()" >/dev/null
	cdp_psql -d "$db" -At -f test/store_digest.sql >"$dir/rebuilt"
	diff "$dir/incremental" "$dir/rebuilt" >/dev/null && return 0
	diff "$dir/incremental" "$dir/rebuilt" | sed 's/^/#   /'
	return 1
}

# The demo file in four parts: two loaded at once, then two more, each
# followed by a sync (the last part's events are the oldest: late events).
contrib/demo/cdp-demo-gen --events 40000 --seed 5 --start 2025-01-01 --days 365 \
	--events-out "$dir/events.csv" 2>/dev/null
head -1 "$dir/events.csv" >"$dir/header"
tail -n +2 "$dir/events.csv" | sort -t, -k1,1 >"$dir/sorted"
split -n l/4 -d "$dir/sorted" "$dir/part"
for i in 0 1 2 3; do cat "$dir/header" "$dir/part0$i" >"$dir/p$i.csv"; done
chmod 644 "$dir"/*.csv
load() { q -c "COPY cdp.events (occurred_at, channel, type, identifiers, properties, amount, source) FROM '$dir/$1' WITH (FORMAT csv, HEADER true)" >/dev/null; }

cdp_expect "a new database's store needs no rebuild: the first sync has nothing to do" "$db" \
	"SELECT NOT rebuilt AND events = 0 FROM cdp.sync()" t
load p2.csv & load p1.csv & wait
cdp_expect "without the worker each load folds its events in: nothing is left pending" "$db" \
	"SELECT batches = 0 AND events = 0 AND pending_events = 0 FROM cdp.sync()" t
load p3.csv
load p0.csv
cdp_expect "the store's progress is the last batch" "$db" \
	"SELECT last_batch_id = (SELECT max(batch_id) FROM cdp.stitch_batches) FROM cdp.profile_store_progress" t
cdp_check "after concurrent and late loads every stored fact equals the events'" store_exact
cdp_check "the incremental store equals cdp.rebuild_profile_store()" same_as_rebuild

# merges by hand and an unmerge rewrite nothing in the store and show at once
read -r a b < <(q -c "SELECT min(profile_id), max(profile_id) FROM (SELECT profile_id FROM cdp.profile_store WHERE events > 3 ORDER BY profile_id LIMIT 2) p" -F ' ')
sum_before=$(q -c "SELECT sum(events) FROM cdp.profile_store WHERE profile_id IN ($a, $b)")
merge=$(q -c "SELECT cdp.merge_profiles($a, $b, 'test', true)")
cdp_expect "after a merge by hand the survivor has both profiles' events" "$db" \
	"SELECT events FROM cdp.profile($b)" "$sum_before"
cdp_expect "the absorbed id leads to the survivor" "$db" "SELECT profile_id FROM cdp.profile($b)" "$a"
cdp_check "after a merge every stored fact equals the events'" store_exact
q -c "SELECT cdp.unmerge($merge, 'test')" >/dev/null
cdp_check "after the unmerge each part has exactly the facts of its own events" store_exact

# a loading transaction still open while another commits and syncs
cdp_psql -d "$db" -c "SET client_min_messages = warning" -c "BEGIN" \
	-c "SELECT cdp.track('2025-06-01 10:00', 'web', 'page_view', '{\"cookie\": \"c-late-commit\"}')" \
	-c "SELECT pg_sleep(2)" -c "COMMIT" >/dev/null &
sleep 1
q -c "SELECT cdp.track('2025-06-01 10:00', 'web', 'page_view', '{\"cookie\": \"c-early-commit\"}')" \
	-c "SELECT * FROM cdp.sync()" >/dev/null
wait
cdp_expect "an event committed after another transaction's load and sync is in the store" "$db" \
	"SELECT (SELECT events FROM cdp.profile('cookie', 'c-late-commit')) = 1
	    AND (SELECT events FROM cdp.profile('cookie', 'c-early-commit')) = 1" t
cdp_check "and every stored fact equals the events'" store_exact

# cdp.profile
email=$(q -c "SELECT value FROM cdp.identifiers WHERE kind = 'email' ORDER BY identifier_id LIMIT 1")
cdp_expect "cdp.profile by e-mail (any case) is the profile that holds it, with its identifiers and 20 latest events" "$db" \
	"SELECT p.profile_id = cdp.resolve('email', '$email') AND p.identifiers -> 'email' ? '$email'
	        AND jsonb_array_length(p.recent_events) = LEAST(p.events, 20)
	 FROM cdp.profile('email', upper('$email')) p" t
cdp_expect "cdp.profile reads its own writes: the event tracked just before shows" "$db" \
	"SELECT cdp.track(now(), 'store', 'purchase', jsonb_build_object('email', '$email'), '{\"product_id\": \"P-own\"}', 42) IS NOT NULL;
	 SELECT p.last_purchase_amount = 42 AND p.last_purchase_channel = 'store'
	        AND p.products -> 'bought' -> 0 ->> 'product_id' = 'P-own'
	        AND p.recent_events -> 0 ->> 'type' = 'purchase'
	 FROM cdp.profile('email', '$email') p" "t
t"
cdp_expect "cdp.profile works in a read-only transaction (as of the last sync)" "$db" \
	"BEGIN READ ONLY; SELECT count(*) FROM cdp.profile('email', '$email'); COMMIT" 1
cdp_expect "an unknown identifier or id gives no row" "$db" \
	"SELECT (SELECT count(*) FROM cdp.profile('email', 'nobody@example.org')) + (SELECT count(*) FROM cdp.profile(-1))
	        + (SELECT count(*) FROM cdp.profile(NULL::bigint))" 0
cdp_expect "cdp.profile of an unknown kind is refused (22023)" "$db" \
	"DO \$\$ BEGIN PERFORM cdp.profile('shoe_size', '42'); EXCEPTION WHEN invalid_parameter_value THEN RAISE NOTICE 'refused'; END \$\$; SELECT 'refused'" refused
cdp_expect "cdp.sync refuses a max_events that is not positive (22023)" "$db" \
	"DO \$\$ BEGIN PERFORM cdp.sync(0); EXCEPTION WHEN invalid_parameter_value THEN NULL; END \$\$; SELECT 'refused'" refused

# cdp.customer_360
cdp_expect "cdp.customer_360 has one row per live profile with identifiers" "$db" \
	"SELECT (SELECT count(*) FROM cdp.customer_360) = (SELECT count(DISTINCT profile_id) FROM cdp.identifiers)" t
# Succeeds when the plan of the whole view touches no event table.
reads_no_event() {
	! q -c "EXPLAIN SELECT * FROM cdp.customer_360" | grep -E "(events_|event_anchors)"
}
cdp_check "cdp.customer_360 reads no event (no cdp.events or cdp.event_anchors in its plan)" reads_no_event

# retention: dropped events leave the store at the next sync (a rebuild)
q -c "SELECT count(*) FROM cdp.drop_partitions('2025-04-01', force => true)" >/dev/null
cdp_expect "after partitions are dropped the next sync rebuilds the store" "$db" \
	"SELECT rebuilt FROM cdp.sync()" t
cdp_check "after retention every stored fact equals the remaining events'" store_exact
q -c "DELETE FROM cdp.events WHERE event_id IN (SELECT event_id FROM cdp.events ORDER BY event_id LIMIT 100)" >/dev/null
cdp_expect "events deleted by hand mark the store for a rebuild" "$db" \
	"SELECT needs_full FROM cdp.profile_store_progress" t
load p1.csv
cdp_expect "a load does not rebuild the store: that is left to the worker or cdp.sync" "$db" \
	"SELECT needs_full FROM cdp.profile_store_progress" t
cdp_expect "cdp.sync rebuilds it" "$db" "SELECT rebuilt AND pending_events = 0 FROM cdp.sync()" t
cdp_check "after a delete by hand every stored fact equals the remaining events'" store_exact
cdp_check "and the store still equals cdp.rebuild_profile_store()" same_as_rebuild

echo "profile_store: $passed passed, $failed failed"
