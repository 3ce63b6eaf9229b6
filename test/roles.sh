#!/usr/bin/env bash
# Least privilege, on the cluster of test/run.sh (PG* set): a login role
# member of each cdp role (cdp_tracker, cdp_analyst, cdp_app, cdp_admin)
# connects and does what its role is for, and is refused (42501) what it is
# not.  Prints "roles: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

db=cdp_roles
dir=$CDP_CLUSTER_DIR/roles
passed=0
failed=0
mkdir -p "$dir"
chmod 755 "$dir"
su=$PGUSER

cdp_psql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
cdp_psql -d $db -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp" \
	-c "SELECT cdp.ensure_partitions('2025-01-01', '2025-12-31')" >/dev/null
for r in tracker analyst app admin; do
	cdp_psql -d $db -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS roles_$r" \
		-c "CREATE ROLE roles_$r LOGIN IN ROLE cdp_$r" >/dev/null
done
contrib/demo/cdp-demo-gen --events 2000 --seed 5 --events-out "$dir/events.csv" 2>/dev/null
# a long load: past 50,000 rows the row check claims message ids and
# stitches (or queues) inside the statement, as the owner
contrib/demo/cdp-demo-gen --events 60000 --seed 6 --events-out "$dir/long.csv" 2>/dev/null
awk 'NR == 1 { print $0 ",message_id"; next } { print $0 ",long-" NR }' "$dir/long.csv" >"$dir/long-keyed.csv"
chmod 644 "$dir"/*

# Runs SQL as a login role; prints the output (errors included).
as() {
	local who=$1
	shift
	cdp_psql -d $db -U "roles_$who" -At "$@" 2>&1
}

# Checks that SQL run as a role succeeds.
allowed() {
	local who=$1 what=$2 sql=$3 out st=0
	out=$(as "$who" -o /dev/null <<<"$sql") || st=1
	cdp_tally $st "$who may $what" "$out"
}

# Checks that SQL run as a role fails with SQLSTATE 42501.
refused() {
	local who=$1 what=$2 sql=$3 out st=1
	out=$(cdp_psql -d $db -U "roles_$who" -At -v VERBOSITY=verbose -c "$sql" 2>&1) && st=1 || {
		grep -q '42501' <<<"$out" && st=0; }
	cdp_tally $st "$who may not $what (42501)" "$(head -2 <<<"$out")"
}

su_q() { cdp_psql -d $db -At -c "$1"; }

# --- cdp_tracker ---------------------------------------------------------
allowed tracker "track an event" \
	"SELECT cdp.track('2025-06-01 10:00+00', 'web', 'page_view', '{\"cookie\": \"c-ann\", \"email\": \"Ann.Doe@orange.fr\"}')"
allowed tracker "ingest events" \
	"SELECT cdp.ingest('[{\"occurred_at\": \"2025-06-01T11:00:00Z\", \"channel\": \"app\", \"type\": \"login\", \"identifiers\": {\"email\": \"ann.doe@orange.fr\", \"phone\": \"+33 6 12 34 56 78\"}}, {\"channel\": \"web\"}]')"
allowed tracker "INSERT into cdp.events" \
	"INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties, amount)
	 VALUES ('2025-06-02 09:00+00', 'store', 'purchase', '{\"phone\": \"+33 6 12 34 56 78\", \"loyalty_card\": \"LC-99123\"}', '{}', 42),
	        ('2025-06-02 09:00+00', 'fax', 'purchase', '{\"phone\": \"06 12 34 56 78\"}', '{}', 1)"
allowed tracker "INSERT into cdp.event_load" \
	"INSERT INTO cdp.event_load (occurred_at, channel, type, identifiers) VALUES ('2025-06-03 09:00+00', 'web', 'page_view', '{\"cookie\": \"c-ann\"}')"
allowed tracker "COPY into cdp.events" \
	"\\copy cdp.events (occurred_at, channel, type, identifiers, properties, amount, source) FROM '$dir/events.csv' WITH (FORMAT csv, HEADER true)"
allowed tracker "COPY into cdp.event_load" \
	"\\copy cdp.event_load (occurred_at, channel, type, identifiers, properties, amount, source) FROM '$dir/events.csv' WITH (FORMAT csv, HEADER true)"
allowed tracker "COPY 60,000 events with message ids into cdp.events in one statement" \
	"\\copy cdp.events (occurred_at, channel, type, identifiers, properties, amount, source, message_id) FROM '$dir/long-keyed.csv' WITH (FORMAT csv, HEADER true)"
cdp_psql -d $db -c "SELECT cdp.stitch_queued()" >/dev/null
got=$(su_q "SELECT (SELECT count(*) FROM cdp.events WHERE message_id LIKE 'long-%'), (SELECT count(*) FROM cdp.event_messages WHERE message_id LIKE 'long-%'),
	(SELECT count(*) FROM cdp.events e WHERE e.message_id LIKE 'long-%' AND NOT EXISTS (SELECT FROM cdp.event_anchors a WHERE a.event_id = e.event_id))")
IFS='|' read -r stored claimed unanchored <<<"$got"
[ "$stored" -gt 55000 ] && [ "$claimed" = "$stored" ] && [ "$unanchored" -lt $((stored / 50)) ] && st=0 || st=1
cdp_tally $st "the long load's message ids are claimed and its events stitched" "$got"
got=$(su_q "SELECT count(DISTINCT i.profile_id) FILTER (WHERE i.kind IN ('email', 'phone', 'loyalty_card') AND i.value IN ('ann.doe@orange.fr', '+33612345678', 'LC-99123') OR i.value = 'c-ann'),
	(SELECT count(*) FROM cdp.events), (SELECT count(*) FROM cdp.rejected_events WHERE reason_code = 'unknown_channel'),
	(SELECT count(*) FROM cdp.events e WHERE NOT EXISTS (SELECT FROM cdp.event_anchors a WHERE a.event_id = e.event_id)
	   AND NOT EXISTS (SELECT FROM jsonb_each_text(e.identifiers) j JOIN cdp.identifier_blocklist b
	                   ON coalesce(b.kind, j.key) = j.key AND CASE WHEN b.is_pattern THEN j.value ~* b.value ELSE j.value = b.value END))
	FROM cdp.identifiers i")
IFS='|' read -r ann events quarantined unanchored <<<"$got"
[ "$ann" = 1 ] && [ "$events" -gt 60000 ] && [ "$quarantined" -ge 1 ] && [ "$unanchored" -lt $((events / 50)) ] && st=0 || st=1
cdp_tally $st "the tracker's events are stored and stitched (ann's cookie, e-mail, phone and card on one profile; bad rows quarantined; all but a few events with only junk or unparseable identifiers anchored)" "$got"

refused tracker "read cdp.identifiers" "SELECT count(*) FROM cdp.identifiers"
refused tracker "read cdp.events" "SELECT identifiers FROM cdp.events"
refused tracker "read cdp.customer_360" "SELECT count(*) FROM cdp.customer_360"
refused tracker "read cdp.rejected_events" "SELECT count(*) FROM cdp.rejected_events"
refused tracker "update cdp.identifiers" "UPDATE cdp.identifiers SET profile_id = 1"
refused tracker "insert into cdp.profile_merges" "INSERT INTO cdp.profile_merges (survivor, absorbed) VALUES (1, 2)"
refused tracker "delete from cdp.events" "DELETE FROM cdp.events"
refused tracker "call cdp.merge_profiles" "SELECT cdp.merge_profiles(1, 2, 'x')"
refused tracker "call cdp.forget" "SELECT cdp.forget('email', 'ann.doe@orange.fr', 'x')"
refused tracker "call cdp.rebuild_identities" "SELECT cdp.rebuild_identities()"
refused tracker "call cdp.resolve" "SELECT cdp.resolve('email', 'ann.doe@orange.fr')"

# --- cdp_analyst ---------------------------------------------------------
cdp_psql -d $db -c "SET client_min_messages = warning" -c "SELECT cdp.sync()" -c "SELECT cdp.refresh_scores('2026-01-01')" >/dev/null
ann=$(su_q "SELECT cdp.resolve('email', 'ann.doe@orange.fr')")
got=$(as analyst -c "SELECT identifiers->'email'->>0, identifiers->'phone'->>0 FROM cdp.customer_360 WHERE profile_id = $ann")
[ "$got" = 'a***@orange.fr|+33*******78' ] && st=0 || st=1
cdp_tally $st "the analyst reads customer_360 with masked contact points (a***@orange.fr, +33*******78)" "$got"
# every relation of schema cdp the analyst may read, scanned whole as text
rels=$(su_q "SELECT string_agg(c.oid::regclass::text, ' ') FROM pg_class c
	WHERE c.relnamespace = 'cdp'::regnamespace AND c.relkind IN ('r', 'v', 'p', 'm') AND NOT c.relispartition
	  AND has_table_privilege('roles_analyst', c.oid, 'SELECT')")
st=0
found=
for r in $rels; do
	hit=$(as analyst -c "SELECT count(*) FROM $r t WHERE t::text ~* '(ann\\.doe@orange|\\+33612345678|612345678|LC-99123|c-ann)'") ||
		{ st=1; found+=" $r(unreadable: $hit)"; continue; }
	[ "$hit" = 0 ] || { st=1; found+=" $r($hit rows)"; }
done
n=$(wc -w <<<"$rels")
[ "$n" -ge 10 ] || st=1
cdp_tally $st "no raw identifier of ann in any of the $n relations the analyst can read" "$found"
allowed analyst "read the BI views and functions" \
	"SELECT (SELECT count(*) FROM cdp.rfm), (SELECT count(*) FROM cdp.sessions), (SELECT count(*) FROM cdp.offer_performance),
	        (SELECT count(*) FROM cdp.trigger_stats), (SELECT count(*) FROM cdp.worker_status), (SELECT count(*) FROM cdp.job_status),
	        (SELECT count(*) FROM cdp.event_partitions), (SELECT count(*) FROM cdp.profile_acquisition),
	        (SELECT count(*) FROM cdp.funnel_stats('cart')), (SELECT count(*) FROM cdp.top_paths())"
refused analyst "read cdp.identifiers" "SELECT count(*) FROM cdp.identifiers"
refused analyst "read cdp.events" "SELECT count(*) FROM cdp.events"
refused analyst "call cdp.profile" "SELECT count(*) FROM cdp.profile($ann)"
refused analyst "set cdp.mask_contact_points" "SET cdp.mask_contact_points = off"
su_q "ALTER ROLE roles_analyst IN DATABASE $db SET cdp.mask_contact_points = off" >/dev/null
got=$(as analyst -c "SELECT identifiers->'email'->>0, identifiers->'phone'->>0 FROM cdp.customer_360 WHERE profile_id = $ann")
[ "$got" = 'ann.doe@orange.fr|+33612345678' ] && st=0 || st=1
cdp_tally $st "the analyst sees raw contact points when the administrator sets cdp.mask_contact_points off for it" "$got"
su_q "ALTER ROLE roles_analyst IN DATABASE $db RESET cdp.mask_contact_points" >/dev/null

# --- cdp_app -------------------------------------------------------------
su_q "INSERT INTO cdp.offers (offer_id, name, channels, value, message_class) VALUES ('news', 'Newsletter', '{email,web}', 1, 'transactional')" >/dev/null
allowed app "resolve an identifier and read cdp.profile (raw)" \
	"SELECT p.identifiers->'email'->>0 FROM cdp.profile(cdp.resolve('email', 'Ann.Doe@orange.fr')) p WHERE p.identifiers->'email'->>0 = 'ann.doe@orange.fr'
	 UNION ALL SELECT 'none' WHERE NOT EXISTS (SELECT FROM cdp.profile('email', 'ann.doe@orange.fr'))"
got=$(as app -c "SELECT p.identifiers->'email'->>0 FROM cdp.profile('email', 'Ann.Doe@orange.fr') p")
[ "$got" = 'ann.doe@orange.fr' ] && st=0 || st=1
cdp_tally $st "the app reads cdp.profile with raw contact points" "$got"
allowed app "decide, explain and read consent" \
	"SELECT count(*) FROM cdp.next_best_offers($ann, 'web', 2); SELECT count(*) FROM cdp.explain_offers($ann, 'web');
	 SELECT count(*) FROM cdp.consent_state($ann); SELECT cdp.set_consent($ann, 'email', true, 'marketing', 'test')"
contact=$(as app -c "SELECT contact_id FROM cdp.decide($ann, 'email') WHERE contact_id IS NOT NULL LIMIT 1")
[[ "$contact" =~ ^[0-9]+$ ]] && st=0 || st=1
cdp_tally $st "the app decides (a contact is recorded)" "$contact"
allowed app "record an outcome" "SELECT cdp.record_outcome($contact, 'clicked')"
su_q "INSERT INTO cdp.outbox (contact_id, profile_id, channel, offer_id, payload, not_before) VALUES ($contact, $ann, 'email', 'news', '{}', now() - interval '1 minute')" >/dev/null
got=$(as app -c "SELECT (cdp.mark_delivered(m.message_id, m.attempts)).status FROM cdp.claim_messages(10) m")
[ "$got" = delivered ] && st=0 || st=1
cdp_tally $st "the app claims an outbox message and settles it" "$got"
refused app "read cdp.identifiers" "SELECT count(*) FROM cdp.identifiers"
refused app "merge profiles" "SELECT cdp.merge_profiles(1, 2, 'x')"
refused app "edit an offer" "UPDATE cdp.offers SET value = 2"

# --- cdp_admin -----------------------------------------------------------
allowed admin "edit an offer and a channel" \
	"UPDATE cdp.offers SET value = 3 WHERE offer_id = 'news'; INSERT INTO cdp.channels (channel, online, description) VALUES ('kiosk', false, 'Kiosk')"
other=$(su_q "SELECT min(profile_id) FROM cdp.profiles WHERE merged_into IS NULL AND profile_id <> $ann")
allowed admin "merge two profiles by hand" "SELECT cdp.merge_profiles($ann, $other, 'same person, checked by hand')"
got=$(su_q "SELECT made_by FROM cdp.identity_overrides ORDER BY override_id DESC LIMIT 1")
[ "$got" = roles_admin ] && st=0 || st=1
cdp_tally $st "the merge records the admin's login as made_by" "$got"
allowed admin "dry-run and erase a person" \
	"SELECT cdp.forget_dry_run('email', 'ann.doe@orange.fr');
	 SELECT cdp.forget('email', 'ann.doe@orange.fr', 'request 1')"
got=$(su_q "SELECT (SELECT erased_by FROM cdp.erasures), cdp.resolve('email', 'ann.doe@orange.fr') IS NULL")
[ "$got" = 'roles_admin|t' ] && st=0 || st=1
cdp_tally $st "the erasure is done and audited under the admin's login" "$got"
out=$(as tracker -v VERBOSITY=verbose -c "SELECT cdp.track('2025-06-02 10:00+00', 'web', 'page_view', '{\"email\": \" ANN.Doe@orange.fr\"}')") || true
grep -q 'was erased on request' <<<"$out" && st=0 || st=1
cdp_tally $st "the tracker's later event with the erased address is refused (the tombstones read as the owner)" "$(head -2 <<<"$out")"
out=$(as tracker -c "SET check_function_bodies = off" -c "SELECT rejected FROM cdp.ingest('[{\"occurred_at\": \"2025-06-02T11:00:00Z\", \"channel\": \"Web\", \"type\": \"page_view\", \"identifiers\": {\"cookie\": \"c-x\"}}]')") || true
[ "$(tail -1 <<<"$out")" = 1 ] && st=0 || st=1
cdp_tally $st "the tracker cannot switch the row check off (check_function_bodies off, through cdp.ingest)" "$out"
refused tracker "choose the id of a quarantined row" "INSERT INTO cdp.rejected_events (reject_id, reason_code, reason, raw) VALUES (999999999, 'x', 'x', '{}')"
refused tracker "read the tombstones" "SELECT count(*) FROM cdp.tombstones"
refused tracker "read the tombstones' key" "SELECT count(*) FROM cdp.erasure_key"
allowed admin "refresh, rebuild and detect" \
	"SELECT cdp.sync();
	 SELECT cdp.refresh_scores('2026-01-01');
	 SELECT cdp.detect_journey_breaks();
	 SELECT cdp.rebuild_identities()"
refused admin "update cdp.identifiers directly" "UPDATE cdp.identifiers SET profile_id = 1"
refused admin "delete events directly" "DELETE FROM cdp.events"

echo "roles: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
