#!/usr/bin/env bash
# The background worker, on the cluster of test/run.sh (PG* set; cdp is in
# shared_preload_libraries, cdp.worker_database = 'cdp', the worker off):
#  - it runs and says it waits while cdp.worker_enabled is off;
#  - on, it takes new events into the journeys without anyone running
#    cdp.detect_journey_breaks: a cart left two hours ago is an open break
#    within seconds, and a cart whose hour runs out a few seconds from now
#    becomes one within seconds of that time;
#  - its status counts its units and events, and its lag falls to zero;
#  - it keeps the profile store current: a purchase shows in cdp.profile,
#    read-only, within seconds;
#  - exactly once: killed (kill -9) while it stitches a bulk load or
#    updates the store, or the server stopped at once during a load, every
#    event is stitched once and the store's events equal the events;
#  - bulk loads are left to it: cdp.track and a small INSERT made while one
#    is open return at once and read their own writes; a load that commits
#    after a later one is not skipped; the partition equals a rebuild's;
#    cdp.profile and cdp.detect_journey_breaks stitch what the session
#    queued first; cdp.stitch_queued waits for the worker rather than
#    keep the stitching lock; a failed large statement in a subtransaction
#    does not make the next small one deferred; with
#    cdp.stitch_defer_rows = 0, or the worker off, a load stitches its own
#    events, and what was left queued when it was switched off first;
#  - a failing unit is recorded (errors, last error) and the worker comes
#    back by itself once the cause is gone;
#  - with cdp loaded on demand (a cluster without the preload) there is no
#    worker, cdp works, and the status says why.
# Prints "worker: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

db=cdp
passed=0
failed=0
cdp_psql -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS cdp" \
	-c "SELECT cdp.ensure_partitions(now() - interval '1 month', now() + interval '1 month')" >/dev/null
cdp_psql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS cdp_worker_other" \
	-c "CREATE DATABASE cdp_worker_other" >/dev/null
cdp_psql -d cdp_worker_other -c "CREATE EXTENSION cdp" >/dev/null

# Succeeds when two texts are equal, else prints both.
same_lines() {
	[ "$1" = "$2" ] && return 0
	echo "#   got:      $1"
	echo "#   expected: $2"
	return 1
}

# Waits up to $1 seconds for a query to answer t.
wait_for() {
	local seconds=$1 query=$2
	for _ in $(seq 1 $((seconds * 4))); do
		[ "$(cdp_psql -d "$db" -At -c "$query" 2>/dev/null)" = t ] && return 0
		sleep 0.25
	done
	return 1
}

# Whatever happens, the worker is left off and the journal table in place.
cleanup() {
	cdp_psql -d "$db" -c "ALTER SYSTEM RESET cdp.worker_enabled" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	cdp_psql -d "$db" -c "ALTER TABLE IF EXISTS cdp.journey_progress_away RENAME TO journey_progress" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Sets cdp.worker_enabled for the whole cluster.
set_enabled() {
	cdp_psql -d "$db" -c "ALTER SYSTEM SET cdp.worker_enabled = $1" -c "SELECT pg_reload_conf()" >/dev/null
}

cdp_check "the worker runs and waits while cdp.worker_enabled is off" \
	wait_for 20 "SELECT running AND state = 'waiting: cdp.worker_enabled is off' FROM cdp.worker_status"

set_enabled on
cdp_check "enabled, it does units of work" \
	wait_for 15 "SELECT units > 0 AND state = 'waiting for new events' FROM cdp.worker_status"

# a cart left two hours ago: an open break, without anyone running detection
cdp_psql -d "$db" -c "SET client_min_messages = warning" \
	-c "SELECT cdp.track(now() - interval '2 hours', 'web', 'add_to_cart', '{\"cookie\": \"w-1\"}', '{\"product_id\": \"P1\"}')" >/dev/null
cdp_check "a cart left two hours ago is an open break within seconds" \
	wait_for 10 "SELECT EXISTS (SELECT FROM cdp.journey_breaks WHERE profile_id = cdp.resolve('cookie', 'w-1')
	                            AND funnel_id = 'cart' AND status = 'open')"

# a cart whose hour runs out in 15 seconds: not yet a break once the worker
# has taken it in, then one
cdp_psql -d "$db" -c "SET client_min_messages = warning" \
	-c "SELECT cdp.track(now() - interval '1 hour' + interval '15 seconds', 'web', 'add_to_cart', '{\"cookie\": \"w-2\"}', '{\"product_id\": \"P2\"}')" >/dev/null
wait_for 10 "SELECT lag_events = 0 FROM cdp.worker_status" || true
cdp_expect "a cart still within its hour is not a break" "$db" \
	"SELECT count(*) FROM cdp.journey_breaks WHERE profile_id = cdp.resolve('cookie', 'w-2') AND funnel_id = 'cart'" 0
cdp_check "it becomes an open break within seconds of its hour running out" \
	wait_for 30 "SELECT EXISTS (SELECT FROM cdp.journey_breaks WHERE profile_id = cdp.resolve('cookie', 'w-2')
	                            AND funnel_id = 'cart' AND status = 'open')"
cdp_check "its status counts the events it took in, and its lag falls to zero" \
	wait_for 10 "SELECT events = (SELECT sum(events) FROM cdp.stitch_batches) AND events >= 2 AND lag_events = 0
	             AND lag_seconds = 0 AND last_unit_at IS NOT NULL FROM cdp.worker_status"

# the profile store: current within seconds, read by a read-only session
cdp_psql -d "$db" -c "SET client_min_messages = warning" \
	-c "SELECT cdp.track(now(), 'store', 'purchase', '{\"cookie\": \"w-3\"}', '{\"product_id\": \"P3\"}', 30)" >/dev/null
cdp_check "it keeps the profile store current: a purchase shows in a read-only cdp.profile within seconds" \
	wait_for 10 "BEGIN READ ONLY; SELECT coalesce((SELECT last_purchase_amount = 30 FROM cdp.profile('cookie', 'w-3')), false); COMMIT"

# exactly once: the worker killed in the middle of a unit, and the server
# stopped at once during a load; the store's events equal the events
store_counts="SELECT NOT EXISTS (SELECT FROM cdp.stitch_queue)
	AND (SELECT count(*) = count(DISTINCT event_id) FROM cdp.event_anchors)
	AND NOT EXISTS (SELECT event_id FROM cdp.events EXCEPT SELECT event_id FROM cdp.event_anchors
	                EXCEPT SELECT event_id FROM cdp.identifier_rejections)
	AND (SELECT coalesce(sum(events), 0) FROM cdp.anchor_activity) = (SELECT count(*) FROM cdp.event_anchors)
	AND (SELECT last_batch_id FROM cdp.profile_store_progress) = (SELECT max(batch_id) FROM cdp.stitch_batches)"
contrib/demo/cdp-demo-gen --events 100000 --seed 3 --start "$(date -u -d '-20 days' +%F)" --days 20 \
	--events-out "$CDP_CLUSTER_DIR/worker-events.csv" 2>/dev/null
chmod 644 "$CDP_CLUSTER_DIR/worker-events.csv"
copy="COPY cdp.events (occurred_at, channel, type, identifiers, properties, amount, source)
	FROM '$CDP_CLUSTER_DIR/worker-events.csv' WITH (FORMAT csv, HEADER true)"
# Loads the file, waits until the worker is in the state $1, kills it.
kill_during() {
	cdp_psql -d "$db" -c "$copy" >/dev/null
	wait_for 20 "SELECT state = '$1' FROM cdp.worker_status" || echo "# the worker was not seen $1"
	cdp_as_root kill -9 "$(cdp_psql -d "$db" -At -c "SELECT pid FROM cdp.worker_status")"
	sleep 2
}
set_setting() {
	cdp_psql -d "$db" -c "ALTER SYSTEM SET $1 = $2" -c "SELECT pg_reload_conf()" >/dev/null
}
kill_during "stitching bulk loads"
cdp_check "killed (kill -9) while it stitches a bulk load, it comes back and stitches each event once" \
	wait_for 60 "$store_counts"
kill_during "updating the profile store"
cdp_check "killed (kill -9) while it updates the store, it comes back and its store counts each event once" \
	wait_for 60 "$store_counts"
cdp_psql -d "$db" -c "$copy" >/dev/null 2>&1 &
sleep 1
cdp_as_server "$PGBIN/pg_ctl" -D "$CDP_CLUSTER_DIR/data" -m immediate -w -s stop
wait || true
cdp_as_server env ${CDP_SERVER_ENV:-} "$PGBIN/pg_ctl" -D "$CDP_CLUSTER_DIR/data" -l "$CDP_CLUSTER_DIR/server.log" -w -s start
cdp_check "after an immediate shutdown during a load, the store counts each committed event once" \
	wait_for 60 "$store_counts"

# Bulk loads are stitched by the worker after they commit; cdp.track and
# small loads do not wait for them.  Files of 20,000 events (more than
# cdp.stitch_defer_rows).
for f in a b c d e; do
	contrib/demo/cdp-demo-gen --events 20000 --seed "$(printf '%d' "'$f")" --start "$(date -u -d '-20 days' +%F)" --days 20 \
		--events-out "$CDP_CLUSTER_DIR/bulk-$f.csv" 2>/dev/null
	chmod 644 "$CDP_CLUSTER_DIR/bulk-$f.csv"
done
bulk() {
	echo "COPY cdp.events (occurred_at, channel, type, identifiers, properties, amount, source)
		FROM '$CDP_CLUSTER_DIR/bulk-$1.csv' WITH (FORMAT csv, HEADER true)"
}
cookie_of() {
	grep -m1 -o '"cookie"":""[^"]*' "$CDP_CLUSTER_DIR/bulk-$1.csv" | sed 's/.*""//'
}
wait_for 60 "$store_counts" || true

# a load that stays open after its COPY, and commits after later ones
cdp_psql -d "$db" -c "BEGIN" -c "$(bulk a)" -c "SELECT pg_sleep(8)" -c "COMMIT" >/dev/null &
loader=$!
sleep 3
tracked=$(cdp_psql -d "$db" -At -c "SET statement_timeout = '2s'" -c "SET client_min_messages = warning" \
	-c "SELECT cdp.track(now(), 'web', 'page_view', '{\"cookie\": \"w-during\"}') > 0" \
	-c "SELECT cdp.resolve('cookie', 'w-during') IS NOT NULL" \
	-c "INSERT INTO cdp.events (occurred_at, channel, type, identifiers) VALUES (now(), 'web', 'page_view', '{\"cookie\": \"w-insert\"}')" \
	-c "SELECT cdp.resolve('cookie', 'w-insert') IS NOT NULL" 2>&1 | tr '\n' ' ')
cdp_check "while a bulk load is open, cdp.track and a small INSERT return at once and read their own writes" \
	same_lines "$tracked" "t t t "
cdp_psql -d "$db" -c "$(bulk b)" >/dev/null
cdp_check "a later bulk load that commits first is stitched by the worker" \
	wait_for 20 "SELECT NOT EXISTS (SELECT FROM cdp.stitch_queue) AND cdp.resolve('cookie', '$(cookie_of b)') IS NOT NULL"
wait "$loader"
cdp_check "the earlier one, committed after it, is not skipped: every event is stitched once and in the store" \
	wait_for 30 "$store_counts AND cdp.resolve('cookie', '$(cookie_of a)') IS NOT NULL"
cdp_expect "incremental stitching and a rebuild give the same partition" "$db" \
	"SELECT changed FROM cdp.rebuild_identities()" 0

# a session reads what it loaded, before the worker has stitched it
cdp_expect "a bulk load is queued, and cdp.profile in the loading transaction stitches it first" "$db" \
	"BEGIN; $(bulk c); SELECT count(*) > 0 FROM cdp.stitch_queue;
	 SELECT events > 0 FROM cdp.profile('cookie', '$(cookie_of c)'); SELECT NOT EXISTS (SELECT FROM cdp.stitch_queue); COMMIT" "t
t
t"
cdp_expect "so does cdp.detect_journey_breaks" "$db" \
	"BEGIN; $(bulk d); SELECT (SELECT count(*) FROM cdp.stitch_queue) > 0; SELECT FROM cdp.detect_journey_breaks();
	 SELECT NOT EXISTS (SELECT FROM cdp.stitch_queue), cdp.resolve('cookie', '$(cookie_of d)') IS NOT NULL; ROLLBACK" "t
t|t"
# a session that needs the queue stitched waits for the worker instead of
# stitching it itself, which would hold the stitching lock (and make
# cdp.track wait) until its transaction ends; here the worker is held up by
# a transaction that holds that lock for 3 s
cdp_psql -d "$db" -c "BEGIN" -c "SELECT cdp.track(now(), 'web', 'page_view', '{\"cookie\": \"w-holder\"}')" \
	-c "SELECT pg_sleep(3)" -c "COMMIT" >/dev/null &
holder=$!
sleep 0.5
cdp_psql -d "$db" -c "$(bulk d)" >/dev/null
cdp_expect "cdp.stitch_queued waits for the worker and leaves its transaction without the stitching lock" "$db" \
	"BEGIN; SELECT cdp.stitch_queued() > 0; SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
	 AND pid = pg_backend_pid() AND objid = $((0x6964)) AND objsubid = 2;
	 SELECT NOT EXISTS (SELECT FROM cdp.stitch_queue), cdp.resolve('cookie', '$(cookie_of d)') IS NOT NULL; COMMIT" "t
0
t|t"
wait "$holder"
# a statement that failed inside a subtransaction leaves no count behind:
# a small INSERT after it still stitches its own row
cdp_expect "after a large INSERT fails in a subtransaction, a small one reads its own writes" "$db" \
	"BEGIN; DO \$\$ BEGIN INSERT INTO cdp.events (occurred_at, channel, type, identifiers)
	 SELECT now(), 'web', 'page_view', jsonb_build_object('cookie', 'w-sub-' || g / (15000 - g)) FROM generate_series(1, 20000) g;
	 EXCEPTION WHEN division_by_zero THEN NULL; END \$\$;
	 INSERT INTO cdp.events (occurred_at, channel, type, identifiers) VALUES (now(), 'web', 'page_view', '{\"cookie\": \"w-sub\"}');
	 SELECT cdp.resolve('cookie', 'w-sub') IS NOT NULL; ROLLBACK" t
cdp_expect "with cdp.stitch_defer_rows = 0 a bulk load stitches its own events" "$db" \
	"SET cdp.stitch_defer_rows = 0; BEGIN; $(bulk e); SELECT NOT EXISTS (SELECT FROM cdp.stitch_queue),
	 cdp.resolve('cookie', '$(cookie_of e)') IS NOT NULL; ROLLBACK" "t|t"

set_enabled off
cdp_check "switched off, it waits" \
	wait_for 10 "SELECT state = 'waiting: cdp.worker_enabled is off' FROM cdp.worker_status"
breaks="SELECT md5(string_agg(b::text, '|' ORDER BY b::text)) FROM (SELECT profile_id, funnel_id, status, first_event_id
	FROM cdp.journey_breaks) b"
before=$(cdp_psql -d "$db" -At -c "$breaks")
cdp_psql -d "$db" -c "SELECT cdp.detect_journey_breaks(now(), rebuild => true)" >/dev/null
cdp_expect "what it found is what a rebuild by hand finds" "$db" "$breaks" "$before"
cdp_expect "switched off, a bulk load stitches its own events" "$db" \
	"BEGIN; $(bulk e); SELECT NOT EXISTS (SELECT FROM cdp.stitch_queue), cdp.resolve('cookie', '$(cookie_of e)') IS NOT NULL; ROLLBACK" "t|t"
set_enabled on

# a load queued while the worker served, committed after it was switched
# off: the next statement that stitches takes the queue first
wait_for 10 "SELECT state = 'waiting for new events' FROM cdp.worker_status" || true
cdp_psql -d "$db" -c "BEGIN" -c "$(bulk e)" -c "SELECT pg_sleep(4)" -c "COMMIT" >/dev/null &
loader=$!
sleep 2
set_enabled off
wait_for 10 "SELECT state = 'waiting: cdp.worker_enabled is off' FROM cdp.worker_status" || true
wait "$loader"
cdp_expect "a load left queued when the worker is switched off is stitched by the next cdp.track" "$db" \
	"SELECT count(*) > 0 FROM cdp.stitch_queue; SELECT cdp.track(now(), 'web', 'page_view', '{\"cookie\": \"w-stray\"}') > 0;
	 SELECT NOT EXISTS (SELECT FROM cdp.stitch_queue), cdp.resolve('cookie', '$(cookie_of e)') IS NOT NULL" "t
t
t|t"
set_enabled on

# a failing unit: recorded, and the worker comes back once the cause is gone
errors=$(cdp_psql -d "$db" -At -c "SELECT errors FROM cdp.worker_status")
cdp_psql -d "$db" -c "ALTER TABLE cdp.journey_progress RENAME TO journey_progress_away" >/dev/null
cdp_check "a failing unit is counted, with its message" \
	wait_for 10 "SELECT errors > $errors AND last_error LIKE '%journey_progress%' FROM cdp.worker_status"
cdp_psql -d "$db" -c "ALTER TABLE cdp.journey_progress_away RENAME TO journey_progress" >/dev/null
units=$(cdp_psql -d "$db" -At -c "SELECT units FROM cdp.worker_status")
cdp_check "the worker comes back by itself and goes on" \
	wait_for 30 "SELECT running AND units > $units FROM cdp.worker_status"

set_enabled off
cdp_check "switched off, it waits again" \
	wait_for 10 "SELECT state = 'waiting: cdp.worker_enabled is off' FROM cdp.worker_status"
cdp_expect "in another database the status has no lag to show" cdp_worker_other \
	"SELECT database || ' ' || (lag_events IS NULL) FROM cdp.worker_status" "cdp true"

# cdp loaded on demand: a cluster without the preload
ondemand=$(
	trap 'cdp_stop_cluster worker-ondemand' EXIT
	cdp_start_cluster worker-ondemand $((PGPORT + 100)) "shared_preload_libraries = 'pg_cron'" >/dev/null
	cdp_psql -At -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp" \
		-c "SELECT cdp.track(now(), 'web', 'page_view', '{\"cookie\": \"o-1\"}') > 0" \
		-c "SELECT running || ' ' || state FROM cdp.worker_status" 2>&1
)
cdp_check "loaded on demand, cdp works and the status says there is no worker" \
	same_lines "$ondemand" "t
false not loaded: cdp is not in shared_preload_libraries"

echo "worker: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
