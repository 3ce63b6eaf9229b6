#!/usr/bin/env bash
# Checks that pg_dump keeps what users put in cdp: events in monthly and
# default partitions, channels and event types they added, the quarantine,
# and the event id sequence.  Runs on the cluster of test/run.sh (PG* set).
# Prints "dump_restore: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"

src=cdp_dump_src
dst=cdp_dump_dst
passed=0
failed=0
cdp_psql -d postgres -c "DROP DATABASE IF EXISTS $src" -c "DROP DATABASE IF EXISTS $dst" \
	-c "CREATE DATABASE $src" -c "CREATE DATABASE $dst"
cdp_psql -d "$src" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION cdp;
SELECT cdp.ensure_partitions('2025-01-01', '2025-02-28');
INSERT INTO cdp.channels VALUES ('kiosk', false, 'In-store kiosk');
INSERT INTO cdp.event_types VALUES ('kiosk_scan', 'store', 'A product was scanned at a kiosk');
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties, amount)
SELECT '2025-01-01'::timestamptz + i * interval '7 hours', (ARRAY['web', 'store', 'kiosk', 'fax'])[1 + i % 4],
       'kiosk_scan', jsonb_build_object('loyalty_card', 'L' || i, 'cookie', 'c' || (i % 50)), jsonb_build_object('n', i), i / 10.0
FROM generate_series(1, 400) i;
SELECT cdp.track('2024-06-01', 'web', 'page_view', '{"cookie": "old"}');
SQL
"$PGBIN/pg_dump" -d "$src" -Fc -f "$CDP_CLUSTER_DIR/cdp.dump"
"$PGBIN/pg_restore" -d "$dst" --exit-on-error "$CDP_CLUSTER_DIR/cdp.dump"

# Compares one query's answer in both databases.
same() {
	local what=$1 query=$2 a b st=0
	a=$(cdp_psql -d "$src" -At -c "$query")
	b=$(cdp_psql -d "$dst" -At -c "$query")
	[ "$a" = "$b" ] && [ -n "$a" ] || st=1
	cdp_tally $st "$what" "'$a' before, '$b' after"
}
same "events and their partitions" \
	"SELECT string_agg(t || ':' || n || ':' || s, ',' ORDER BY t) FROM (SELECT tableoid::regclass::text t, count(*) n, sum(amount) s FROM cdp.events GROUP BY 1) x"
same "every event column" "SELECT md5(string_agg(e::text, ',' ORDER BY event_id)) FROM cdp.events e"
same "channels added by users" "SELECT string_agg(channel, ',' ORDER BY channel) FROM cdp.channels"
same "event types added by users" "SELECT count(*) FROM cdp.event_types"
same "quarantine" "SELECT string_agg(reason_code || ':' || raw::text, ',' ORDER BY reject_id) FROM cdp.rejected_events"
same "event id sequence" "SELECT last_value FROM cdp.events_event_id_seq"
same "identifiers and their profiles" "SELECT md5(string_agg(identifier_id || kind || value || profile_id, ',' ORDER BY identifier_id)) FROM cdp.identifiers"
same "profiles, links and anchors" "SELECT (SELECT count(*) FROM cdp.profiles) || '/' || (SELECT count(*) FROM cdp.identity_links) || '/' || (SELECT count(*) FROM cdp.event_anchors)"
same "row check and statement trigger on every partition" \
	"SELECT string_agg(c.relname || ':' || (SELECT count(*) FROM pg_constraint WHERE conrelid = c.oid AND conname = 'events_accept')
	        || ':' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = c.oid AND tgname = 'events_after_insert'), ',' ORDER BY c.relname)
	 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'cdp.events'::regclass"
echo "dump_restore: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
