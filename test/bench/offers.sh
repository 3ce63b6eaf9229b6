#!/usr/bin/env bash
# Offers: the next best offer at the speed of a web request, on PROFILES
# customers (default 1,000,000), each with 2 to 5 events of 2025 (views with
# a category, carts, half of them purchases, some traits tier and timezone,
# a phone for one in four, an e-mail opt-out for one in fifty), the profile
# store synced, RFM and CLV scored and the journeys' breaks detected as of
# 2026-01-01, and 100 offers with realistic eligibility rules (segments,
# CLV, interest, open carts, tier, days since purchase, not/any/all), channel
# sets, per-person caps, budgets (one of 500), fallbacks, transactional
# offers, holdouts; contact policies: e-mail 3 a week, a day apart, not
# 21:00-08:00; 5 a week on all channels; SMS and call centre with a cost.
#  - latency: one client, 2,000 sequential calls each (pgbench -c 1 and its
#    per-transaction log, so client-observed): cdp.decide(p, 'email', at),
#    cdp.next_best_offers(p, 'email', 3, at), cdp.decide(p, NULL, at)
#    (channel chosen); p50 and p99 (goal: decide p99 under 2 ms);
#  - throughput: pgbench -c CLIENTS -j 2 -T SECONDS of cdp.decide on random
#    people (goal: 3,000 a second on 2 cores; Adobe documents 500 requests a
#    second for its hub decisioning API), then the caps checked in SQL over
#    every contact recorded: e-mail 3 in any 7 days and a day apart, no
#    marketing e-mail in quiet hours, 5 in any 7 days on all channels, each
#    offer's own cap, every budget (sent <= budget, cdp.offer_usage.used =
#    sent); "caps held: no" makes the script fail;
#  - the reference, side by side with the same clients and duration: the
#    plain way, one INSERT into a plain table of the highest-value offer
#    whose channel matches (no rule, cap, consent, learning);
#  - cdp.plan_campaign over CAMPAIGN profiles (default 100,000; the first
#    ids, {"profiles": [...]}; CAMPAIGN >= PROFILES: {"all": true}): seconds,
#    ms per profile, what it reports, and the time extrapolated to 1 M
#    (goal: 1 M under 60 s).
# Decision times advance by one second per call (a sequence), so that gaps,
# caps and quiet hours play: latency on 2026-03-02 from 12:00 UTC, the
# channel-chosen run on 2026-03-03, the throughput run from 2026-03-16
# 08:00 UTC (at 3,000 a second for 30 s it spans 25 hours, a night
# included), the campaign at noon the day after the last decision.
#
#   bash test/bench/offers.sh [PROFILES [CLIENTS [SECONDS [CAMPAIGN]]]]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$CDP_ROOT"

profiles=${1:-1000000}
clients=${2:-4}
seconds=${3:-30}
campaign=${4:-100000}
port=${CDP_BENCH_PORT:-54336}
[ "$campaign" -gt "$profiles" ] && campaign=$profiles

cdp_bench_start bench-offers "$port"
dir=$CDP_CLUSTER_DIR/bench
mkdir -p "$dir"
sql() { cdp_psql -At -c "SET client_min_messages = warning" -c "$1"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
now() { date +%s.%N; }

# ---------------------------------------------------------------------------
# The customers: one INSERT ... SELECT per chunk of ~170,000 customers
# (~500,000 events), stitched in the statement (the worker is off).
# ---------------------------------------------------------------------------
events_sql() {
	local lo=$1 hi=$2
	cat <<SQL
INSERT INTO cdp.events ($cdp_event_cols)
SELECT coalesce(e.at, timestamptz '2025-01-01 14:00+00' + (hashint4(g * 8 + j) & 1023) % 355 * interval '1 day'), e.channel, e.type,
       jsonb_build_object('customer_id', 'c' || g, 'email', 'c' || g || '@shop.fr')
         || CASE WHEN g % 4 = 0 THEN jsonb_build_object('phone', '+3361' || lpad(g::text, 7, '0')) ELSE '{}' END,
       e.props, round(CASE WHEN e.k = 5 THEN b.spend * (0.7 + (hashint4(g * 8 + j) & 255) / 425.0) ELSE e.amount END, 2), e.source
FROM generate_series($lo, $hi) g
CROSS JOIN LATERAL (
	SELECT timestamptz '2025-01-01 09:00+00'
	         + CASE WHEN g % 20 = 1 THEN 357 + g % 7 ELSE (g::bigint * 7919) % 350 END * interval '1 day'
	         + (g % 600) * interval '1 minute' AS t0,
	       (ARRAY['shoes', 'bags', 'dresses', 'jeans', 'shirts', 'watches', 'jewellery', 'sport', 'beauty', 'home'])[1 + (g::bigint * 31) % 10] AS cat,
	       (ARRAY['shoes', 'bags', 'dresses', 'jeans', 'shirts', 'watches', 'jewellery', 'sport', 'beauty', 'home'])[1 + (g::bigint * 17) % 10] AS cat2,
	       'P' || (g::bigint * 13) % 2000 AS product,
	       (10 * power(1.6, (hashint4(-g) & 1023) % 9))::numeric AS spend
) b
CROSS JOIN LATERAL (VALUES
	(1, b.t0, 'web', 'product_view',
	    jsonb_build_object('product_id', b.product, 'category', b.cat)
	    || CASE WHEN g % 3 = 0 THEN jsonb_build_object('traits', jsonb_build_object(
	           'tier', CASE WHEN g % 2 = 0 THEN 'gold' ELSE 'silver' END, 'timezone', 'Europe/Paris')) ELSE '{}' END,
	    NULL::numeric, 'web-sdk'),
	(2, b.t0 + interval '10 minutes', 'web', 'add_to_cart',
	    jsonb_build_object('product_id', b.product, 'category', b.cat), NULL, 'web-sdk'),
	(3, b.t0 + interval '25 minutes', 'web', 'purchase',
	    jsonb_build_object('product_id', b.product, 'category', b.cat), b.spend, 'shop'),
	(4, b.t0 - interval '2 days', 'app', 'product_view',
	    jsonb_build_object('product_id', 'P' || (g::bigint * 29) % 2000, 'category', b.cat2), NULL, 'app-sdk'),
	(5, NULL, 'store', 'purchase', jsonb_build_object('product_id', 'P' || (g::bigint * 7) % 2000, 'category', b.cat2), NULL, 'pos')
) e(k, at, channel, type, props, amount, source)
CROSS JOIN LATERAL generate_series(1, CASE WHEN e.k = 5 THEN (hashint4(g) & 7) / 2 ELSE 1 END) j
WHERE e.k = 1 OR (e.k = 2 AND g % 5 <> 4) OR (e.k = 3 AND g % 2 = 0)
   OR (e.k = 4 AND (g % 3 = 1 OR g % 5 = 4) AND b.t0 > '2025-01-03') OR (e.k = 5 AND g % 3 = 0)
SQL
}

echo "== $profiles customers"
chunk=170000
t0=$(now)
lo=1
while [ "$lo" -le "$profiles" ]; do
	hi=$((lo + chunk - 1))
	[ "$hi" -gt "$profiles" ] && hi=$profiles
	sql "$(events_sql "$lo" "$hi")" >/dev/null
	lo=$((hi + 1))
done
t_load=$(secs "$t0" "$(now)")
n_events=$(sql "SELECT count(*) FROM cdp.events")
echo "events: $n_events loaded (INSERT ... SELECT, stitched in the statement) in $t_load s"
# opt-outs of e-mail marketing for one in fifty
sql "INSERT INTO cdp.consents (kind, value, channel, purpose, granted, recorded_at, source)
     SELECT 'email', 'c' || g || '@shop.fr', 'email', 'marketing', false, '2025-06-01', 'unsubscribe link'
     FROM generate_series(7, $profiles, 50) g" >/dev/null
t_sync=$(cdp_timed -c "SELECT cdp.sync()")
echo "cdp.sync (profile store): $t_sync s"
t_scores=$(cdp_timed -c "SELECT cdp.refresh_scores('2026-01-01')")
echo "cdp.refresh_scores('2026-01-01'): $t_scores s"
t_breaks=$(cdp_timed -c "SELECT cdp.detect_journey_breaks('2026-01-01')")
echo "cdp.detect_journey_breaks('2026-01-01'): $t_breaks s"
t_vacuum=$(cdp_timed -c "VACUUM ANALYZE")
echo "VACUUM ANALYZE: $t_vacuum s"
sql "SELECT format('profiles %s, scored (cdp.rfm) %s in %s segments, cdp.clv %s, open breaks: %s, traits: %s',
            (SELECT count(*) FROM cdp.profiles WHERE merged_into IS NULL),
            (SELECT count(*) FROM cdp.rfm), (SELECT count(DISTINCT segment) FROM cdp.rfm),
            (SELECT count(*) FROM cdp.clv),
            (SELECT coalesce(string_agg(funnel_id || ' ' || n, ', '), 'none') FROM (SELECT funnel_id, count(*) AS n
               FROM cdp.journey_breaks WHERE status = 'open' GROUP BY 1 ORDER BY 1) x),
            (SELECT count(*) FROM cdp.profile_store WHERE traits <> '{}'))"

# The people are drawn as random ids: the live profiles' ids when they run
# without a gap (one profile per customer, made in order), else through a
# numbered table (one more index look-up per call).
read -r pmin pmax pcount < <(sql "SELECT min(profile_id), max(profile_id), count(*) FROM cdp.profiles WHERE merged_into IS NULL" | tr '|' ' ')
if [ $((pmax - pmin + 1)) -eq "$pcount" ]; then
	pick="\\set p random($pmin, $pmax)"
	person=":p"
else
	echo "note: profile ids $pmin..$pmax are not contiguous ($pcount live profiles): drawn through bench_offers.ids"
	sql "CREATE SCHEMA IF NOT EXISTS bench_offers;
	     CREATE TABLE bench_offers.ids AS SELECT row_number() OVER (ORDER BY profile_id) AS n, profile_id
	     FROM cdp.profiles WHERE merged_into IS NULL;
	     ALTER TABLE bench_offers.ids ADD PRIMARY KEY (n); ANALYZE bench_offers.ids" >/dev/null
	pick="\\set p random(1, $pcount)"
	person="(SELECT profile_id FROM bench_offers.ids WHERE n = :p)"
fi

# ---------------------------------------------------------------------------
# The catalogue: 100 offers, rules of ten kinds, and the contact policies.
# ---------------------------------------------------------------------------
sql "CREATE SCHEMA IF NOT EXISTS bench_offers;
CREATE SEQUENCE bench_offers.tick;
INSERT INTO cdp.contact_policies (channel, max_contacts, per, min_gap, quiet_start, quiet_end, contact_cost) VALUES
	('email', 3, '7 days', '1 day', '21:00', '08:00', 0),
	('*', 5, '7 days', NULL, NULL, NULL, 0),
	('sms', NULL, NULL, NULL, NULL, NULL, 0.05),
	('call_center', NULL, NULL, NULL, NULL, NULL, 2);
INSERT INTO cdp.offers (offer_id, name, channels, value, max_per_profile, cap_period, budget, fallback,
                        message_class, holdout, eligibility, payload)
SELECT 'o' || lpad(g::text, 3, '0'), 'Offer ' || g || ' (' || r.kind || ')',
       CASE WHEN g = 95 OR g >= 99 THEN NULL
            ELSE (ARRAY['{email}', '{sms}', '{web,app}', NULL])[1 + g % 4]::text[] END,
       CASE WHEN g = 95 THEN 100 WHEN g >= 99 THEN 1 ELSE 1 + (g * 37) % 100 END,
       CASE WHEN g % 5 = 0 AND g < 95 THEN 1 WHEN g % 7 = 3 THEN 2 END,
       CASE WHEN g % 5 = 0 AND g < 95 THEN interval '30 days' END,
       CASE WHEN g = 95 THEN 500 WHEN g % 10 = 1 THEN 100000 END,
       g >= 99,
       CASE WHEN g BETWEEN 96 AND 98 THEN 'transactional' ELSE 'marketing' END,
       CASE WHEN g % 10 = 7 THEN 0.1 ELSE 0 END,
       CASE WHEN g = 95 OR g >= 99 THEN NULL ELSE r.rule END,
       jsonb_build_object('template', 'tpl-' || g, 'discount', 5 + g % 4 * 5)
FROM generate_series(1, 100) g
CROSS JOIN LATERAL (SELECT (ARRAY['shoes', 'bags', 'dresses', 'jeans', 'shirts', 'watches', 'jewellery', 'sport', 'beauty', 'home'])[1 + g % 10] AS cat) c
CROSS JOIN LATERAL (SELECT * FROM (VALUES
	(0, 'segments', jsonb_build_object('fact', 'rfm_segment', 'in', CASE WHEN g % 20 = 0 THEN '[\"Champions\", \"Loyal\"]'::jsonb
	                                                                 ELSE '[\"New\", \"Promising\", \"Potential Loyalists\"]' END)),
	(1, 'clv', jsonb_build_object('all', jsonb_build_array(jsonb_build_object('fact', 'clv', 'gte', 20 + g % 7 * 10),
	                                                       jsonb_build_object('fact', 'consent', 'key', 'email', 'eq', true)))),
	(2, 'interest', jsonb_build_object('fact', 'interest', 'key', c.cat, 'gt', 0.001)),
	(3, 'open cart', jsonb_build_object('fact', 'open_break', 'key', 'cart', 'eq', true)),
	(4, 'gold', jsonb_build_object('fact', 'trait', 'key', 'tier', 'eq', 'gold')),
	(5, 'win-back', jsonb_build_object('all', jsonb_build_array(jsonb_build_object('fact', 'days_since_last_purchase', 'gt', 30),
	                                                            jsonb_build_object('not', jsonb_build_object('fact', 'rfm_segment', 'in', '[\"Lost\", \"Hibernating\"]'::jsonb))))),
	(6, 'at risk', jsonb_build_object('any', jsonb_build_array(jsonb_build_object('fact', 'rfm_segment', 'in', '[\"At Risk\", \"Can''t Lose Them\", \"About to Sleep\"]'::jsonb),
	                                                           jsonb_build_object('fact', 'p_alive', 'lt', 0.3)))),
	(7, 'browsers', jsonb_build_object('all', jsonb_build_array(jsonb_build_object('fact', 'events', 'key', 'product_view', 'gte', 1),
	                                                            jsonb_build_object('fact', 'orders', 'eq', 0)))),
	(8, 'browse break', jsonb_build_object('all', jsonb_build_array(jsonb_build_object('fact', 'break_products', 'key', 'browse', 'exists', true),
	                                                                jsonb_build_object('any', jsonb_build_array(
	                                                                    jsonb_build_object('not', jsonb_build_object('fact', 'days_since_last_contact', 'exists', true)),
	                                                                    jsonb_build_object('fact', 'days_since_last_contact', 'gt', 3)))))),
	(9, 'big spenders', jsonb_build_object('all', jsonb_build_array(jsonb_build_object('fact', 'revenue', 'gte', 150),
	                                                                jsonb_build_object('fact', 'trait', 'key', 'tier', 'in', '[\"gold\", \"silver\"]'::jsonb),
	                                                                jsonb_build_object('fact', 'last_channel', 'ne', 'call_center'))))
) v(k, kind, rule) WHERE v.k = g % 10) r;
ANALYZE cdp.offers; ANALYZE cdp.contact_policies; ANALYZE cdp.consents" >/dev/null
sql "SELECT format('offers: %s (%s with a rule, %s capped per person, %s with a budget, %s fallback, %s transactional, %s with a holdout)',
            count(*), count(eligibility), count(max_per_profile), count(budget), count(*) FILTER (WHERE fallback),
            count(*) FILTER (WHERE message_class = 'transactional'), count(*) FILTER (WHERE holdout > 0)) FROM cdp.offers"

# ---------------------------------------------------------------------------
# Latency: pgbench -c 1, per-transaction log; prints "p50 p99 mean" in ms.
# ---------------------------------------------------------------------------
run_pgbench() {
	local out
	out=$("$PGBIN/pgbench" "$@" 2>&1) || { echo "$out" >&2; return 1; }
	if echo "$out" | grep -q "aborted\|number of failed transactions: [1-9]"; then echo "$out" >&2; return 1; fi
	echo "$out"
}
latency() {
	local name=$1 call=$2
	printf '%s\n%s\n' "$pick" "SELECT * FROM $call;" >"$dir/$name.sql"
	sql "SELECT setval('bench_offers.tick', 1, false)" >/dev/null
	rm -f "$dir/$name".log*
	run_pgbench -n -f "$dir/$name.sql" -c 1 -t 2000 --log --log-prefix="$dir/$name.log" >/dev/null
	cat "$dir/$name".log* | awk '{ print $3 / 1000 }' | sort -n | awk '
		{ v[NR] = $1; s += $1 }
		END { i50 = int(NR * 0.5 + 0.999999); i99 = int(NR * 0.99 + 0.999999);
		      printf "%.2f %.2f %.2f\n", v[i50], v[i99], s / NR }'
}
at_of() { echo "'$1'::timestamptz + nextval('bench_offers.tick') * interval '1 second'"; }

echo "== latency: one client, 2,000 calls each (pgbench log)"
read -r d50 d99 davg < <(latency decide "cdp.decide($person, 'email', $(at_of '2026-03-02 12:00+00'))")
echo "cdp.decide(p, 'email'): p50 $d50 ms, p99 $d99 ms, mean $davg ms"
read -r n50 n99 navg < <(latency nbo "cdp.next_best_offers($person, 'email', 3, $(at_of '2026-03-02 12:00+00'))")
echo "cdp.next_best_offers(p, 'email', 3): p50 $n50 ms, p99 $n99 ms, mean $navg ms"
read -r a50 a99 aavg < <(latency any "cdp.decide($person, NULL, $(at_of '2026-03-03 12:00+00'))")
echo "cdp.decide(p, NULL) (channel chosen): p50 $a50 ms, p99 $a99 ms, mean $aavg ms"
# what the commit's WAL flush costs a decision: the same calls without
# waiting for it (a crash could lose the last contacts, under a second)
read -r s50 s99 savg < <(PGOPTIONS="-c synchronous_commit=off" latency async "cdp.decide($person, 'email', $(at_of '2026-03-04 12:00+00'))")
echo "cdp.decide(p, 'email') with synchronous_commit off: p50 $s50 ms, p99 $s99 ms, mean $savg ms"
# the plain way, one client: one INSERT and its commit
sql "CREATE TABLE bench_offers.plain_one (profile_id bigint, decided_at timestamptz)" >/dev/null
read -r i50 i99 iavg < <(latency plain1 "(SELECT 1) x; INSERT INTO bench_offers.plain_one VALUES ($person, now())")
echo "plain one-row INSERT and commit, one client: p50 $i50 ms, p99 $i99 ms, mean $iavg ms"
sql "SELECT 'decisions so far: ' || string_agg(status || ' ' || n, ', ' ORDER BY status) FROM (SELECT status, count(*) AS n FROM cdp.contacts GROUP BY 1) x"

# ---------------------------------------------------------------------------
# Throughput, then the caps.
# ---------------------------------------------------------------------------
echo "== throughput: $clients clients, $seconds s"
cdp_psql -c "VACUUM ANALYZE cdp.contacts" -c "VACUUM ANALYZE cdp.offer_stats" -c "VACUUM ANALYZE cdp.offer_usage" >/dev/null
sql "SELECT setval('bench_offers.tick', 1, false)" >/dev/null
before=$(sql "SELECT coalesce(max(contact_id), 0) FROM cdp.contacts")
printf '%s\n%s\n' "$pick" "SELECT * FROM cdp.decide($person, 'email', $(at_of '2026-03-16 08:00+00'));" >"$dir/throughput.sql"
out=$(run_pgbench -n -f "$dir/throughput.sql" -c "$clients" -j 2 -T "$seconds")
tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1)
tlat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
echo "cdp.decide: $(printf '%.0f' "$tps") decisions/s, latency average $tlat ms"
sql "SELECT 'their outcomes: ' || string_agg(k || ' ' || n, ', ' ORDER BY n DESC) || format(' (decided_at %s to %s)', min(lo), max(hi))
     FROM (SELECT coalesce(split_part(reason, ':', 1) || ' (' || status || ')', status) AS k, count(*) AS n, min(decided_at) AS lo, max(decided_at) AS hi
           FROM (SELECT status, CASE WHEN status = 'suppressed' THEN reason END AS reason, decided_at FROM cdp.contacts WHERE contact_id > $before) c
           GROUP BY 1) x"

# Every contact pressure rule, offer cap and budget over all contacts
# recorded; prints the violations, "caps held: yes/no".
check_caps() {
	cdp_psql -At <<'SQL'
SET client_min_messages = warning;
WITH m AS (SELECT c.*, count(*) OVER (PARTITION BY c.profile_id ORDER BY c.decided_at
                                      RANGE BETWEEN interval '7 days' - interval '1 microsecond' PRECEDING AND CURRENT ROW) AS in_week
           FROM cdp.contacts c WHERE c.status = 'sent' AND c.message_class = 'marketing' AND c.channel = 'email'),
g AS (SELECT c.*, count(*) OVER (PARTITION BY c.profile_id ORDER BY c.decided_at
                                 RANGE BETWEEN interval '7 days' - interval '1 microsecond' PRECEDING AND CURRENT ROW) AS in_week
      FROM cdp.contacts c WHERE c.status = 'sent' AND c.message_class = 'marketing'),
gap AS (SELECT c.decided_at - lag(c.decided_at) OVER (PARTITION BY c.profile_id ORDER BY c.decided_at) AS gap
        FROM cdp.contacts c WHERE c.status = 'sent' AND c.message_class = 'marketing' AND c.channel = 'email'),
quiet AS (SELECT (c.decided_at AT TIME ZONE CASE WHEN cdp.known_time_zone(s.traits->>'timezone') THEN s.traits->>'timezone'
                                                   ELSE current_setting('cdp.default_timezone') END)::time AS t
          FROM cdp.contacts c LEFT JOIN cdp.profile_store s ON s.profile_id = c.profile_id
          WHERE c.status = 'sent' AND c.message_class = 'marketing' AND c.channel = 'email'),
s AS (SELECT c.contact_id, c.profile_id, c.offer_id, c.decided_at FROM cdp.contacts c
      WHERE c.status = 'sent' AND c.offer_id IN (SELECT offer_id FROM cdp.offers WHERE max_per_profile IS NOT NULL)),
oc AS (SELECT c.contact_id, o.max_per_profile, count(*) AS n
       FROM s c JOIN cdp.offers o USING (offer_id)
       JOIN s c2 ON c2.profile_id = c.profile_id AND c2.offer_id = c.offer_id AND c2.decided_at <= c.decided_at
                AND (o.cap_period IS NULL OR c2.decided_at > c.decided_at - o.cap_period)
       GROUP BY 1, 2),
b AS (SELECT o.offer_id, o.budget, u.used, (SELECT count(*) FROM cdp.contacts c WHERE c.offer_id = o.offer_id AND c.status = 'sent') AS sent
      FROM cdp.offers o LEFT JOIN cdp.offer_usage u USING (offer_id) WHERE o.budget IS NOT NULL),
v AS (
	SELECT 'e-mail cap: people with more than 3 marketing e-mails in 7 days' AS what, count(DISTINCT profile_id) AS n FROM m WHERE in_week > 3
	UNION ALL SELECT 'global cap: people with more than 5 marketing contacts in 7 days', count(DISTINCT profile_id) FROM g WHERE in_week > 5
	UNION ALL SELECT 'minimum gap: marketing e-mails less than a day after the previous one', count(*) FROM gap WHERE gap < interval '1 day'
	UNION ALL SELECT 'quiet hours: marketing e-mails sent 21:00-08:00 local time', count(*) FROM quiet WHERE t >= '21:00' OR t < '08:00'
	UNION ALL SELECT 'offer caps: sends beyond an offer''s max_per_profile', count(*) FROM oc WHERE n > max_per_profile
	UNION ALL SELECT 'budgets: offers sent more than their budget', count(*) FROM b WHERE sent > budget
	UNION ALL SELECT 'budgets: offer_usage.used <> sent', count(*) FROM b WHERE used IS DISTINCT FROM sent)
SELECT what || ': ' || n FROM v WHERE n > 0
UNION ALL
SELECT format('budgets: %s', string_agg(format('%s sent %s of %s (used %s)', offer_id, sent, budget, used), ', ' ORDER BY budget, offer_id)
                             FILTER (WHERE budget < 100000 OR sent > 0))
FROM b
UNION ALL
SELECT format('checked %s contacts (%s sent, %s marketing e-mails)', count(*), count(*) FILTER (WHERE status = 'sent'),
              count(*) FILTER (WHERE status = 'sent' AND message_class = 'marketing' AND channel = 'email'))
FROM cdp.contacts
UNION ALL
SELECT 'caps held: ' || CASE WHEN (SELECT sum(n) FROM v) = 0 THEN 'yes' ELSE 'no' END;
SQL
}
caps=$(check_caps)
echo "$caps"
caps_held=$(echo "$caps" | sed -n 's/^caps held: //p')

echo "== the plain way: one INSERT of the highest-value offer of the channel, $clients clients, $seconds s"
sql "CREATE TABLE bench_offers.plain_offers AS SELECT offer_id, channels, value FROM cdp.offers WHERE active;
     ALTER TABLE bench_offers.plain_offers ADD PRIMARY KEY (offer_id);
     CREATE TABLE bench_offers.plain_contacts (contact_id bigserial PRIMARY KEY, profile_id bigint NOT NULL, offer_id text,
                                               channel text NOT NULL, decided_at timestamptz NOT NULL);
     CREATE INDEX ON bench_offers.plain_contacts (profile_id, decided_at);
     ANALYZE bench_offers.plain_offers" >/dev/null
sql "SELECT setval('bench_offers.tick', 1, false)" >/dev/null
printf '%s\n%s\n' "$pick" "INSERT INTO bench_offers.plain_contacts (profile_id, offer_id, channel, decided_at)
SELECT $person, o.offer_id, 'email', $(at_of '2026-03-16 08:00+00')
FROM bench_offers.plain_offers o WHERE o.channels IS NULL OR 'email' = ANY (o.channels)
ORDER BY o.value DESC, o.offer_id LIMIT 1;" >"$dir/plain.sql"
out=$(run_pgbench -n -f "$dir/plain.sql" -c "$clients" -j 2 -T "$seconds")
ptps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1)
plat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
echo "plain INSERT ... SELECT: $(printf '%.0f' "$ptps") decisions/s, latency average $plat ms; ratio cdp/plain $(cdp_ratio "$tps" "$ptps")"

# ---------------------------------------------------------------------------
# A campaign.
# ---------------------------------------------------------------------------
echo "== cdp.plan_campaign('email') over $campaign profiles"
cat_at=$(sql "SELECT date_trunc('day', max(decided_at)) + interval '1 day 12 hours' FROM cdp.contacts")
if [ "$campaign" -ge "$pcount" ]; then
	audience="'{\"all\": true}'::jsonb"
else
	audience="(SELECT jsonb_build_object('profiles', jsonb_agg(profile_id ORDER BY profile_id))
	           FROM (SELECT profile_id FROM cdp.profiles WHERE merged_into IS NULL ORDER BY profile_id LIMIT $campaign) x)"
fi
t0=$(now)
res=$(sql "SELECT format('%s profiles, %s chosen, %s held out, suppressed %s, %s without an offer', profiles, chosen, holdouts, suppressed, without_offer)
           FROM cdp.plan_campaign('email', $audience, '$cat_at')")
t_camp=$(secs "$t0" "$(now)")
per_ms=$(awk -v s="$t_camp" -v n="$campaign" 'BEGIN { printf "%.3f", s * 1000 / n }')
extra=$(awk -v s="$t_camp" -v n="$campaign" 'BEGIN { printf "%.0f", s * 1000000 / n }')
echo "at $cat_at: $res"
echo "plan_campaign: $t_camp s, $per_ms ms per profile; extrapolated to 1 M profiles: $extra s"
caps2=$(check_caps)
echo "after the campaign: $caps2" | tr '\n' ';' | sed 's/;/; /g; s/; $/\n/'
[ "$(echo "$caps2" | sed -n 's/^caps held: //p')" = yes ] || caps_held=no

echo
echo "== summary: $profiles profiles, 100 offers, $clients clients, $seconds s, campaign of $campaign"
echo "offers: decide p50 $d50 ms, p99 $d99 ms (goal p99 < 2 ms)"
echo "offers: next_best_offers(3) p50 $n50 ms, p99 $n99 ms; decide with the channel chosen p50 $a50 ms, p99 $a99 ms"
echo "offers: decide with synchronous_commit off p50 $s50 ms, p99 $s99 ms; plain one-row INSERT and commit p50 $i50 ms, p99 $i99 ms"
echo "offers: throughput $(printf '%.0f' "$tps") decisions/s with $clients clients, latency average $tlat ms (goal >= 3000/s; Adobe hub decisioning: 500 requests/s)"
echo "offers: plain INSERT of the best offer $(printf '%.0f' "$ptps")/s; ratio cdp/plain $(cdp_ratio "$tps" "$ptps")"
echo "offers: caps held: $caps_held"
echo "offers: plan_campaign $campaign profiles in $t_camp s ($per_ms ms each); extrapolated to 1 M: $extra s (goal < 60 s)"
echo "setup: load $t_load s ($n_events events), sync $t_sync s, refresh_scores $t_scores s, detect_journey_breaks $t_breaks s"
[ "$caps_held" = yes ]
