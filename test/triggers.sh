#!/usr/bin/env bash
# Triggers run by the background worker, on the cluster of test/run.sh (PG*
# set; cdp preloaded, cdp.worker_database = 'cdp', the worker off):
#  - an event trigger writes its message to cdp.outbox within seconds of the
#    event's commit, without anyone running cdp.run_triggers, and the
#    example sender, woken by NOTIFY cdp_outbox, delivers it;
#  - a cart trigger fires after its delay; a cart bought during the delay is
#    dropped before its due time;
#  - ordering: the complaints of a bulk load that commits after a later
#    event are not skipped;
#  - exactly once: the worker killed (kill -9) in the middle of its triggers'
#    unit, and the server stopped at once (immediate) while it fires, leave
#    exactly one message per matching event;
#  - two senders at once deliver each message once (SKIP LOCKED);
#  - the worker records no error.
# Prints "triggers: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

db=cdp
passed=0
failed=0
make -s sender
cdp_psql -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS cdp" \
	-c "SELECT cdp.ensure_partitions(now() - interval '1 month', now() + interval '1 month')" >/dev/null

# Waits up to $1 seconds for a query to answer t.
wait_for() {
	local seconds=$1 query=$2
	for _ in $(seq 1 $((seconds * 4))); do
		[ "$(cdp_psql -d "$db" -At -c "$query" 2>/dev/null)" = t ] && return 0
		sleep 0.25
	done
	return 1
}
q() { cdp_psql -d "$db" -At -c "SET client_min_messages = warning" -c "$1"; }
set_enabled() {
	cdp_psql -d "$db" -c "ALTER SYSTEM SET cdp.worker_enabled = $1" -c "SELECT pg_reload_conf()" >/dev/null
}
# Whatever happens: the worker off, the test's triggers gone.
cleanup() {
	cdp_psql -d "$db" -c "ALTER SYSTEM RESET cdp.worker_enabled" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	cdp_psql -d "$db" -c "DELETE FROM cdp.triggers WHERE trigger_id LIKE 'rt\_%'" >/dev/null 2>&1 || true
	jobs -p | xargs -r kill 2>/dev/null || true
}
trap cleanup EXIT

q "INSERT INTO cdp.offers (offer_id, name, channels, value, payload) VALUES
	('rt_sorry', 'Sorry', '{email}', 5, '{\"code\": \"SORRY\"}'), ('rt_cart', 'Your cart', '{email}', 10, '{\"template\": \"cart\"}')
	ON CONFLICT DO NOTHING;
INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after) VALUES
	('rt_cart', '{add_to_cart,checkout_start,purchase}', '1 hour', '2 seconds') ON CONFLICT DO NOTHING;
INSERT INTO cdp.triggers (trigger_id, on_event, channel, offers, condition) VALUES
	('rt_apology', 'complaint', 'email', '{rt_sorry}', '{\"fact\": \"event\", \"key\": \"severity\", \"gte\": 2}');
INSERT INTO cdp.triggers (trigger_id, on_break, delay, channel, offers) VALUES
	('rt_cart_reminder', 'rt_cart', '3 seconds', 'email', '{rt_cart}')" >/dev/null
set_enabled on
wait_for 15 "SELECT units > 0 AND state = 'waiting for new events' FROM cdp.worker_status" || echo "# the worker did not start"

# ---------------------------------------------------------------------------
# A complaint: the message within seconds, sent by the example sender.
# ---------------------------------------------------------------------------
sent_log=$CDP_CLUSTER_DIR/sender.log
contrib/outbox/cdp-sender --max 1 >"$sent_log" 2>&1 &
sender=$!
sleep 0.5
q "SELECT cdp.track(now(), 'call_center', 'complaint', '{\"email\": \"rt-ann@x.org\"}', '{\"severity\": 3}')" >/dev/null
q "SELECT cdp.track(now(), 'call_center', 'complaint', '{\"email\": \"rt-bob@x.org\"}', '{\"severity\": 1}')" >/dev/null
cdp_check "an event trigger writes its message to the outbox within seconds of the commit, by the worker alone" \
	wait_for 10 "SELECT EXISTS (SELECT FROM cdp.outbox WHERE trigger_id = 'rt_apology' AND payload #>> '{to,value}' = 'rt-ann@x.org')"
st=0
for _ in $(seq 1 40); do kill -0 $sender 2>/dev/null || break; sleep 0.25; done
if kill -0 $sender 2>/dev/null; then st=1; kill $sender; fi
wait $sender 2>/dev/null || true
grep -q $'\temail\tdelivered\t.*rt-ann@x.org' "$sent_log" || st=1
cdp_tally $st "the example sender, woken by NOTIFY cdp_outbox, claims and delivers it" "$(cat "$sent_log")"
cdp_expect "the complaint of severity 1 sends nothing" "$db" \
	"SELECT count(*) FROM cdp.outbox WHERE payload #>> '{to,value}' = 'rt-bob@x.org'" 0
cdp_expect "the message is marked delivered" "$db" \
	"SELECT status FROM cdp.outbox WHERE payload #>> '{to,value}' = 'rt-ann@x.org'" delivered

# ---------------------------------------------------------------------------
# Carts: one left (fires after its delay), one bought during the delay.
# ---------------------------------------------------------------------------
q "SELECT cdp.track(now(), 'web', 'add_to_cart', '{\"email\": \"rt-cat@x.org\"}', '{\"product_id\": \"P1\", \"cart_value\": 40}')" >/dev/null
q "SELECT cdp.track(now(), 'web', 'add_to_cart', '{\"email\": \"rt-dan@x.org\"}', '{\"product_id\": \"P2\", \"cart_value\": 70}')" >/dev/null
wait_for 10 "SELECT count(*) = 2 FROM cdp.trigger_fires WHERE trigger_id = 'rt_cart_reminder' AND status = 'waiting'" ||
	echo "# the breaks were not seen waiting"
q "SELECT cdp.track(now(), 'web', 'purchase', '{\"email\": \"rt-dan@x.org\"}', '{}', 70)" >/dev/null
cdp_check "a cart bought during the delay is dropped before its due time" \
	wait_for 10 "SELECT status = 'exited' AND fired_at < due_at FROM cdp.trigger_fires f
	             WHERE trigger_id = 'rt_cart_reminder' AND profile_id = cdp.resolve('email', 'rt-dan@x.org')"
cdp_check "the cart left fires after its delay, with the cart in the message" \
	wait_for 15 "SELECT payload #>> '{context,products,0}' = 'P1' AND f.fired_at >= f.due_at
	             FROM cdp.outbox o JOIN cdp.trigger_fires f USING (fire_id)
	             WHERE o.trigger_id = 'rt_cart_reminder' AND o.profile_id = cdp.resolve('email', 'rt-cat@x.org')"

# ---------------------------------------------------------------------------
# Ordering: a bulk load holding lower event ids commits after a later event.
# ---------------------------------------------------------------------------
complaints() {	# $1 people from $2, severity 2
	echo "SELECT now(), 'call_center', 'complaint', jsonb_build_object('email', 'rt-' || $2 + i % $1 || '@y.org'), '{\"severity\": 2}'"
}
cdp_psql -d "$db" >/dev/null 2>&1 <<SQL &
SET client_min_messages = warning;
SET cdp.stitch_defer_rows = 100;
BEGIN;
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties) $(complaints 50 1000) FROM generate_series(1, 200) i;
SELECT pg_sleep(4);
COMMIT;
SQL
bulk=$!
sleep 1
q "SELECT cdp.track(now(), 'call_center', 'complaint', '{\"email\": \"rt-late@x.org\"}', '{\"severity\": 2}')" >/dev/null
wait_for 10 "SELECT EXISTS (SELECT FROM cdp.outbox WHERE payload #>> '{to,value}' = 'rt-late@x.org')" ||
	echo "# the later event's message did not come"
wait $bulk
cdp_check "the 200 complaints of a load that commits after a later event are not skipped" \
	wait_for 30 "SELECT count(*) = 200 FROM cdp.outbox WHERE payload #>> '{to,value}' LIKE 'rt-1%@y.org'"

# ---------------------------------------------------------------------------
# Exactly once across crashes.
# ---------------------------------------------------------------------------
# $1 complaints of 100 people from $2, loaded with the worker off, then the
# worker on; once it runs its triggers' unit, $3 (a command) crashes it
crash_during_fire() {
	set_enabled off
	wait_for 10 "SELECT state = 'waiting: cdp.worker_enabled is off' FROM cdp.worker_status" || true
	q "INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties) $(complaints 100 "$2") FROM generate_series(1, $1) i" >/dev/null
	set_enabled on
	wait_for 20 "SELECT state = 'running triggers' FROM cdp.worker_status" || echo "# the worker was not seen running triggers"
	sleep 0.3
	"$3"
}
kill_worker() { cdp_as_root kill -9 "$(q "SELECT pid FROM cdp.worker_status")"; sleep 2; }
stop_immediate() {
	cdp_as_server "$PGBIN/pg_ctl" -D "$CDP_CLUSTER_DIR/data" -m immediate -w -s stop
	# shellcheck disable=SC2086
	cdp_as_server env ${CDP_SERVER_ENV:-} "$PGBIN/pg_ctl" -D "$CDP_CLUSTER_DIR/data" -l "$CDP_CLUSTER_DIR/server.log" -w -s start
}
once="SELECT count(*) = %s AND count(DISTINCT f.moment) = %s
	AND (SELECT count(*) FROM cdp.trigger_fires x WHERE x.trigger_id = 'rt_apology' AND x.status = 'waiting') = 0
	FROM cdp.outbox o JOIN cdp.trigger_fires f USING (fire_id) WHERE o.payload #>> '{to,value}' LIKE 'rt-%s%%@y.org'"
crash_during_fire 800 2000 kill_worker
# shellcheck disable=SC2059
cdp_check "killed (kill -9) while it fires, the worker comes back and writes exactly one message per event" \
	wait_for 60 "$(printf "$once" 800 800 2)"
crash_during_fire 800 3000 stop_immediate
# shellcheck disable=SC2059
cdp_check "after an immediate shutdown while it fires, exactly one message per committed event" \
	wait_for 60 "$(printf "$once" 800 800 3)"
cdp_expect "no moment was taken twice (every firing has its own event)" "$db" \
	"SELECT count(*) FROM (SELECT moment FROM cdp.trigger_fires WHERE trigger_id = 'rt_apology' GROUP BY moment HAVING count(*) > 1) x" 0

# ---------------------------------------------------------------------------
# Two senders at once.
# ---------------------------------------------------------------------------
pending=$(q "SELECT count(*) FROM cdp.outbox WHERE status = 'pending' AND not_before <= now()")
contrib/outbox/cdp-sender --once --batch 20 >"$CDP_CLUSTER_DIR/sender1.log" &
s1=$!
contrib/outbox/cdp-sender --once --batch 20 >"$CDP_CLUSTER_DIR/sender2.log" &
s2=$!
wait $s1 $s2
got=$(cat "$CDP_CLUSTER_DIR"/sender[12].log | cut -f1 | sort | uniq | wc -l)
lines=$(cat "$CDP_CLUSTER_DIR"/sender[12].log | wc -l)
st=0
[ "$pending" -ge 1000 ] && [ "$got" -eq "$pending" ] && [ "$lines" -eq "$pending" ] || st=1
cdp_tally $st "two senders at once deliver each of the $pending pending messages once" \
	"$lines lines, $got distinct messages, $pending pending"
cdp_expect "every message delivered at the first attempt" "$db" \
	"SELECT count(*) FROM cdp.outbox WHERE trigger_id = 'rt_apology' AND (status <> 'delivered' OR attempts <> 1)" 0
cdp_expect "the worker recorded no error since the last restart" "$db" "SELECT errors FROM cdp.worker_status" 0

# ---------------------------------------------------------------------------
# No deadlock with an application's decision: a unit that decides person X
# (taking a budgeted offer's counter) and then person P, while a session
# holds P's lock and then decides P with the same offer.
# ---------------------------------------------------------------------------
set_enabled off
wait_for 10 "SELECT state = 'waiting: cdp.worker_enabled is off' FROM cdp.worker_status" || true
q "INSERT INTO cdp.offers (offer_id, name, channels, value, budget) VALUES ('rt_budget', 'Budgeted', '{email}', 1000, 100000);
   INSERT INTO cdp.triggers (trigger_id, on_event, channel, offers) VALUES ('rt_wish', 'wishlist_add', 'email', '{rt_budget}')" >/dev/null
for i in $(seq 1 12); do
	q "SELECT cdp.track(now(), 'web', 'page_view', '{\"email\": \"rt-dl-$i@z.org\"}')" >/dev/null
done
read -r x p < <(q "SELECT min(profile_id) FILTER (WHERE r = 1), min(profile_id) FILTER (WHERE r = n)
	FROM (SELECT profile_id, rank() OVER (ORDER BY cdp.person_stripe(profile_id), profile_id) AS r, count(*) OVER () AS n
	      FROM cdp.identifiers WHERE value LIKE 'rt-dl-%@z.org') s" | tr '|' ' ')
q "SELECT cdp.run_triggers()" >/dev/null
for who in "$x" "$p"; do
	q "SELECT cdp.track(now(), 'web', 'wishlist_add', jsonb_build_object('email', (SELECT value FROM cdp.identifiers WHERE profile_id = $who LIMIT 1)))" >/dev/null
done
cdp_psql -d "$db" -c "SET client_min_messages = warning" -c "BEGIN" -c "SELECT cdp.lock_person($p)" -c "SELECT pg_sleep(2)" \
	-c "SELECT cdp.decide($p, 'email')" -c "COMMIT" >"$CDP_CLUSTER_DIR/app.log" 2>&1 &
app=$!
sleep 0.5
st=0
unit=$(q "SELECT fired FROM cdp.run_triggers()" 2>&1) || st=1
wait $app || st=1
[ "$unit" = 2 ] || st=1
cdp_tally $st "a unit deciding two people and an application deciding one of them with the same budgeted offer do not deadlock" \
	"unit: $unit; application: $(tr '\n' ' ' <"$CDP_CLUSTER_DIR/app.log")"

echo "triggers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
