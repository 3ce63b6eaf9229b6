#!/usr/bin/env bash
# Offers under concurrency and learning, on the cluster of test/run.sh (PG*
# set):
#  - 8 sessions call cdp.decide on one person at the same moment, 10 times
#    each: the e-mail cap (3 a week), the global cap, the offer's own cap
#    and a budget of 3 are never exceeded, and every refusal is recorded;
#  - 8 sessions decide for 80 people at once against an offer with a
#    budget of 7: exactly 7 are sent, and the usage counter says 7;
#  - learning: three offers with known conversion rates (3 %, 6 % and
#    12 %), 3,000 decisions each followed by its simulated outcome: the
#    best offer takes 80 % or more of the last 1,000 decisions;
#  - a campaign over everyone runs while 8 sessions decide for the same
#    people against a budgeted offer: no deadlock, the budget holds;
#  - a decision under REPEATABLE READ is refused;
#  - the draws are reproducible with cdp.offer_seed.
# Prints "offers: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

db=cdp_offers
passed=0
failed=0
cdp_psql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
cdp_psql -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp" >/dev/null
q() { cdp_psql -d "$db" -At -c "SET client_min_messages = warning" -c "$1"; }

q "SELECT cdp.ensure_partitions('2026-01-01', '2026-12-31')" >/dev/null
q "INSERT INTO cdp.events (occurred_at, channel, type, identifiers)
   SELECT '2026-02-01', 'web', 'page_view', jsonb_build_object('customer_id', 'u' || g, 'email', 'u' || g || '@acme.fr')
   FROM generate_series(0, 300) g" >/dev/null
q "INSERT INTO cdp.contact_policies (channel, max_contacts, per) VALUES ('email', 3, '7 days'), ('*', 4, '7 days');
   INSERT INTO cdp.offers (offer_id, name, channels, value, max_per_profile, cap_period) VALUES
	('a', 'A', '{email,web}', 10, 2, '30 days'), ('b', 'B', '{email,web}', 5, NULL, NULL);
   UPDATE cdp.offers SET budget = 3 WHERE offer_id = 'b'" >/dev/null
racer=$(q "SELECT profile_id FROM cdp.identifiers WHERE kind = 'customer_id' AND value = 'u0'")

# Runs SQL in 8 sessions that start together: each waits on a shared
# advisory lock held by this shell's session until all 8 wait.
together() {
	local sql=$1 dir pids=() s st=0
	dir=$(mktemp -d)
	cdp_psql -d "$db" -At -c "SELECT pg_advisory_lock(4242)" -c "SELECT pg_sleep(600)" >/dev/null 2>&1 &
	local holder=$!
	until [ "$(q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted")" = 1 ]; do sleep 0.1; done
	for s in $(seq 1 8); do
		echo "$sql" | sed "s/SESSION/$s/g" >"$dir/$s.sql"
		cdp_psql -d "$db" -At -c "SET client_min_messages = warning" -c "SELECT pg_advisory_lock_shared(4242)" \
			-f "$dir/$s.sql" >"$dir/$s.log" 2>&1 &
		pids+=($!)
	done
	until [ "$(q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted")" = 8 ]; do sleep 0.1; done
	kill "$holder" 2>/dev/null || true
	q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%' AND pid <> pg_backend_pid()" >/dev/null
	for s in "${pids[@]}"; do wait "$s" || st=1; done
	[ "$st" -eq 0 ] || cat "$dir"/*.log
	rm -rf "$dir"
	return $st
}

# 8 sessions x 10 decisions on one person, each at its own minute of one day
cdp_check "8 concurrent sessions decide for one person without error" together "
	SELECT count(*) FROM generate_series(1, 10) k,
	       LATERAL cdp.decide($racer, CASE WHEN k % 3 = 0 THEN 'web' ELSE 'email' END,
	                          '2026-03-02 12:00'::timestamptz + (SESSION * 10 + k) * interval '1 minute') d"
cdp_expect "80 decisions recorded" "$db" "SELECT count(*) FROM cdp.contacts WHERE profile_id = $racer" 80
cdp_expect "the e-mail cap held: 3 sent" "$db" \
	"SELECT count(*) FROM cdp.contacts WHERE profile_id = $racer AND channel = 'email' AND status = 'sent'" 3
cdp_expect "the global cap held: 4 sent on all channels" "$db" \
	"SELECT count(*) FROM cdp.contacts WHERE profile_id = $racer AND status = 'sent'" 4
cdp_expect "the offer's own cap held: a sent at most twice" "$db" \
	"SELECT count(*) <= 2 FROM cdp.contacts WHERE profile_id = $racer AND offer_id = 'a' AND status = 'sent'" t
cdp_expect "the budget of b (3) held" "$db" \
	"SELECT count(*) <= 3 AND (SELECT used FROM cdp.offer_usage WHERE offer_id = 'b') = count(*) FROM cdp.contacts WHERE profile_id = $racer AND offer_id = 'b' AND status = 'sent'" t
cdp_expect "every other decision was refused by a cap" "$db" \
	"SELECT count(*) FROM cdp.contacts WHERE profile_id = $racer AND status = 'suppressed' AND reason LIKE 'cap:%'" 76

# a budget of 7 under 8 sessions deciding for 80 people
q "UPDATE cdp.offers SET active = false; DELETE FROM cdp.contact_policies;
   INSERT INTO cdp.offers (offer_id, name, value, budget) VALUES ('rare', 'Rare', 100, 7)" >/dev/null
cdp_check "8 concurrent sessions decide for 80 people (a transaction per decision)" together "$(
	for k in $(seq 1 10); do
		echo "SELECT status FROM cdp.decide((SELECT profile_id FROM cdp.identifiers WHERE kind = 'customer_id' AND value = 'u' || (SESSION * 10 + $k)), 'web', '2026-03-03 12:00');"
	done)"
cdp_expect "the budget held: 7 sent" "$db" "SELECT count(*) FROM cdp.contacts WHERE offer_id = 'rare' AND status = 'sent'" 7
cdp_expect "the usage counter says 7" "$db" "SELECT used FROM cdp.offer_usage WHERE offer_id = 'rare'" 7
cdp_expect "the 73 others were told the budget is used up" "$db" \
	"SELECT count(*) FROM cdp.contacts WHERE decided_at = '2026-03-03 12:00' AND status = 'suppressed' AND reason = 'budget: all 7 used'" 73

# a campaign over everyone while 8 sessions decide for the same people,
# with a budgeted offer: nobody waits for anybody in a cycle (the campaign
# takes its people's locks first, in the order decisions take them)
q "UPDATE cdp.offers SET active = false;
   INSERT INTO cdp.offers (offer_id, name, value, budget) VALUES ('stock', 'Stock', 50, 150), ('plenty', 'Plenty', 1, NULL)" >/dev/null
dir=$(mktemp -d)
cdp_psql -d "$db" -At -c "SET client_min_messages = warning" \
	-c "SELECT chosen || ' ' || profiles FROM cdp.plan_campaign('web', '{\"all\": true}', '2026-03-05 12:00')" >"$dir/campaign.log" 2>&1 &
campaign=$!
cdp_check "8 sessions decide while a campaign runs over the same people (a transaction per decision)" together "$(
	for k in $(seq 1 30); do
		echo "SELECT status FROM cdp.decide((SELECT profile_id FROM cdp.identifiers WHERE kind = 'customer_id' AND value = 'u' || ((SESSION * 37 + $k * 11) % 300)), 'web', '2026-03-05 12:00');"
	done)"
st=0; wait $campaign || st=1
cdp_tally $st "... and the campaign completes without a deadlock" "$(cat "$dir/campaign.log")"
rm -rf "$dir"
cdp_expect "the budget held across the campaign and the decisions" "$db" \
	"SELECT count(*) = 150 AND max(u.used) = 150 FROM cdp.contacts c, cdp.offer_usage u WHERE c.offer_id = 'stock' AND c.status = 'sent' AND u.offer_id = 'stock'" t

# REPEATABLE READ could read a snapshot taken before another decision's
# commit: refused
got=$(cdp_psql -d "$db" -At -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT cdp.decide($racer, 'web')" 2>&1 || true)
cdp_check "a decision under REPEATABLE READ is refused, saying why" grep -q "cannot run under REPEATABLE READ" <<<"$got"

# learning: known conversion rates, outcomes simulated as they come
q "UPDATE cdp.offers SET active = false;
   INSERT INTO cdp.offers (offer_id, name, channels, value) VALUES
	('low', 'Low', '{app}', 1), ('mid', 'Mid', '{app}', 1), ('top', 'Top', '{app}', 1)" >/dev/null
learn() {
	q "SET cdp.offer_seed = $1; SELECT setseed(0.25);
	   DO \$\$
	   DECLARE d cdp.decision; k integer;
	   BEGIN
		FOR k IN 1..3000 LOOP
			d := cdp.decide((SELECT profile_id FROM cdp.identifiers WHERE kind = 'customer_id' AND value = 'u' || (k % 300 + 1)),
			                'app', '2026-04-01'::timestamptz + k * interval '1 minute');
			IF random() < (CASE d.offer_id WHEN 'low' THEN 0.03 WHEN 'mid' THEN 0.06 ELSE 0.12 END) THEN
				PERFORM cdp.record_outcome(d.contact_id, 'converted', 1, '2026-04-01'::timestamptz + k * interval '1 minute');
			END IF;
		END LOOP;
	   END \$\$;
	   SELECT string_agg(offer_id, '' ORDER BY contact_id) FROM cdp.contacts WHERE channel = 'app'"
}
first=$(learn 11 | tail -1)
share=$(q "SELECT round(100.0 * count(*) FILTER (WHERE offer_id = 'top') / count(*), 1)
           FROM (SELECT offer_id FROM cdp.contacts WHERE channel = 'app' ORDER BY contact_id DESC LIMIT 1000) x")
echo "# best offer's share of the last 1,000 decisions: $share %"
echo "# choices per offer: $(q "SELECT string_agg(offer_id || ' ' || n, ', ' ORDER BY offer_id) FROM (SELECT offer_id, count(*) AS n FROM cdp.contacts WHERE channel = 'app' GROUP BY 1) x")"
cdp_check "learning moves the choices to the best offer: 80 % or more of the last 1,000 (got $share %)" \
	awk -v s="$share" 'BEGIN { exit !(s >= 80) }'
cdp_expect "the posterior counts every decision and conversion" "$db" \
	"SELECT (SELECT sum(trials) FROM cdp.offer_stats WHERE offer_id IN ('low', 'mid', 'top')) = 3000
	    AND (SELECT sum(successes) FROM cdp.offer_stats WHERE offer_id IN ('low', 'mid', 'top'))
	        = (SELECT count(*) FROM cdp.contacts WHERE channel = 'app' AND success)" t

# the same seed, the same knowledge: the same draws
q "DELETE FROM cdp.contacts WHERE channel = 'app'; DELETE FROM cdp.offer_stats WHERE offer_id IN ('low', 'mid', 'top')" >/dev/null
second=$(learn 11 | tail -1)
cdp_check "with cdp.offer_seed the decisions are reproducible" test "$first" = "$second"

echo "offers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
