#!/usr/bin/env bash
# Journeys on real data: the Taobao UserBehavior sample (814 users, 84,287
# events: pv, cart, fav, buy; see ../shared/data/clickstream/SOURCE.md),
# loaded as product_view, add_to_cart, wishlist_add and purchase on the app.
# Detection (loaded in two halves, run day by day) is checked against a
# rebuild and against the plain-SQL computation of the same definitions
# (test/bench/journeys_plain.sql), at the end of the data and in the middle
# (open breaks); so are cdp.journeys, cdp.funnel_stats, cdp.sessions and
# cdp.who_viewed.  Runs on the cluster of test/run.sh (PG* set).  Prints
# "journeys_real: N passed, N failed"; without the data file (CDP_TAOBAO, or
# under CDP_SHARED_DATA, by default ../shared/data) it skips its checks and says how
# many: "journeys_real: 0 passed, 0 failed, N skipped".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

# the checks below (a run that counts otherwise fails: keep it true)
checks=15
data=${CDP_TAOBAO:-${CDP_SHARED_DATA:-$CDP_ROOT/../shared/data}/clickstream/taobao_userbehavior_first814users.csv}
if [ ! -r "$data" ]; then
	echo "# SKIP journeys_real: the Taobao sample is not at $data (set CDP_TAOBAO to its path)"
	echo "journeys_real: 0 passed, 0 failed, $checks skipped"
	exit 0
fi
db=cdp_journeys_real
passed=0
failed=0

# Checks a query of the test database (see cdp_expect in test/lib.sh).
expect() { cdp_expect "$1" "$db" "$2" "$3"; }

# Checks that two queries give the same rows (and some rows).
same() {
	local what=$1 a=$2 b=$3 got
	got=$(cdp_psql -d $db -At -c "SET client_min_messages = warning" -c "SELECT
		(SELECT count(*) FROM ($a) x), (SELECT count(*) FROM ($b) y),
		(SELECT count(*) FROM (($a) EXCEPT ($b)) x), (SELECT count(*) FROM (($b) EXCEPT ($a)) y)")
	IFS='|' read -r na nb ab ba <<<"$got"
	if [ "$na" = "$nb" ] && [ "$na" -gt 0 ] && [ "$ab" = 0 ] && [ "$ba" = 0 ]; then
		echo "ok - $what ($na rows)"
		passed=$((passed + 1))
	else
		echo "not ok - $what: $na and $nb rows, $ab only in the first, $ba only in the second"
		failed=$((failed + 1))
	fi
}

cdp_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
cdp_psql -d $db <<SQL >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION cdp;
SELECT cdp.ensure_partitions('2017-09-01', '2017-12-31');
CREATE TABLE taobao (user_id bigint, item_id bigint, category_id bigint, behavior text, ts bigint);
\copy taobao FROM '$data' WITH (FORMAT csv, HEADER true)
CREATE VIEW taobao_events AS
SELECT to_timestamp(ts) AS occurred_at, 'app'::text AS channel,
       CASE behavior WHEN 'pv' THEN 'product_view' WHEN 'cart' THEN 'add_to_cart'
                     WHEN 'fav' THEN 'wishlist_add' WHEN 'buy' THEN 'purchase' END AS type,
       jsonb_build_object('customer_id', 'T' || user_id) AS identifiers,
       jsonb_build_object('product_id', item_id::text, 'category', category_id::text) AS properties,
       user_id
FROM taobao;
-- the first half of the users, detection, the other half, detection
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties, source)
SELECT occurred_at, channel, type, identifiers, properties, 'taobao' FROM taobao_events WHERE user_id < 500000;
SELECT cdp.detect_journey_breaks('2017-11-28 00:00+00');
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties, source)
SELECT occurred_at, channel, type, identifiers, properties, 'taobao' FROM taobao_events WHERE user_id >= 500000;
SELECT cdp.detect_journey_breaks('2017-11-29 00:00+00');
-- then every day up to the end of the data
SELECT cdp.detect_journey_breaks(t) FROM generate_series('2017-11-30 00:00+00'::timestamptz, '2017-12-04 00:00+00', '1 day') t;
ANALYZE;
SQL

expect "every event stored, none rejected" \
	"SELECT (SELECT count(*) FROM cdp.events) || '/' || (SELECT count(*) FROM cdp.rejected_events)" "84287/0"
expect "one profile per user" \
	"SELECT count(*) FROM cdp.profiles WHERE merged_into IS NULL" "814"
expect "the day-by-day runs were incremental" \
	"SELECT mode FROM cdp.detect_journey_breaks('2017-12-04 00:00+00')" "incremental"

cols="profile_id, funnel_id, first_event_id, journey_no, started_at, reached_step, break_step, last_event_at,
	last_event_id, broken_at, channel, status, resolved_at, resolved_channel, resolved_event_id, context"
cdp_psql -d $db -c "CREATE TABLE day_by_day AS SELECT $cols FROM cdp.journey_breaks" >/dev/null
cdp_psql -d $db -c "SELECT cdp.detect_journey_breaks('2017-12-04 00:00+00', rebuild => true)" >/dev/null
same "two loads and daily runs give the breaks of one rebuild" \
	"SELECT * FROM day_by_day" "SELECT $cols FROM cdp.journey_breaks"

# the plain-SQL computation of the same definitions, at the end of the data
plain() {
	cdp_psql -d $db -v as_of="'$1'" <<SQL >/dev/null
SET client_min_messages = warning;
DROP TABLE IF EXISTS p_journeys, p_breaks, p_step_at;
\i test/bench/journeys_plain.sql
CREATE TABLE p_journeys AS SELECT * FROM plain_journeys;
CREATE TABLE p_breaks AS SELECT * FROM plain_breaks;
-- when each journey first reached each step (or a later one)
CREATE TABLE p_step_at AS
SELECT g.funnel_id, g.profile_id, g.start_of, k.k, min(g.t) FILTER (WHERE g.reached >= k.k) AS at
FROM plain_gaps g JOIN (SELECT funnel_id, generate_series(1, cardinality(steps)) AS k FROM cdp.funnels) k USING (funnel_id)
GROUP BY 1, 2, 3, 4;
SQL
}
bcols="profile_id, funnel_id, started_at, journey_no, reached_step, break_step, last_event_at, last_event_id,
	broken_at, channel, status, resolved_at, resolved_channel"
plain '2017-12-04 00:00+00'
same "breaks: cdp.detect_journey_breaks equals plain SQL" \
	"SELECT $bcols FROM p_breaks" "SELECT $bcols FROM cdp.journey_breaks"
jcols="profile_id, funnel_id, journey_no, status, broken, started_at, last_event_at, reached_step, events,
	broken_at, break_step, break_channel, resolved_at, resolved_channel"
same "journeys: cdp.journeys equals plain SQL" \
	"SELECT $jcols FROM p_journeys" "SELECT $jcols FROM cdp.journeys(NULL, '2017-12-04 00:00+00')"
same "journeys: the aggregate cdp.funnel_journeys equals cdp.journeys" \
	"SELECT x.profile_id, x.funnel_id, (x.j).journey_no, (x.j).status, (x.j).started_at, (x.j).broken_at,
	        (x.j).resolved_at, (x.j).reached_step, (x.j).events
	 FROM (SELECT i.profile_id, f.funnel_id,
	              unnest(cdp.funnel_journeys(f.funnel_id, e.type, e.occurred_at, e.channel, e.event_id, '2017-12-04 00:00+00')) AS j
	       FROM cdp.events e JOIN cdp.event_anchors a USING (event_id, occurred_at)
	       JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id CROSS JOIN cdp.funnels f
	       GROUP BY i.profile_id, f.funnel_id) x" \
	"SELECT profile_id, funnel_id, journey_no, status, started_at, broken_at, resolved_at, reached_step, events
	 FROM cdp.journeys(NULL, '2017-12-04 00:00+00')"
for f in browse cart; do
	same "funnel_stats('$f') equals plain SQL" \
		"SELECT s.k::integer, count(*) FILTER (WHERE j.reached_step >= s.k),
		        CASE WHEN s.k < 3 THEN count(*) FILTER (WHERE j.reached_step > s.k) END,
		        CASE WHEN s.k < 3 THEN count(*) FILTER (WHERE j.reached_step = s.k) END,
		        CASE WHEN s.k < 3 THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY n.at - s.at)
		                               FILTER (WHERE j.reached_step > s.k) END
		 FROM p_journeys j
		 JOIN p_step_at s ON s.funnel_id = j.funnel_id AND s.profile_id = j.profile_id AND s.start_of = j.start_pos
		 LEFT JOIN p_step_at n ON n.funnel_id = s.funnel_id AND n.profile_id = s.profile_id
		                      AND n.start_of = s.start_of AND n.k = s.k + 1
		 WHERE j.funnel_id = '$f' GROUP BY s.k" \
		"SELECT step, journeys, to_next, drop_off, median_to_next FROM cdp.funnel_stats('$f', as_of => '2017-12-04 00:00+00')"
done

# in the middle of the data: open breaks and journeys in progress
expect "an earlier as_of replays every profile" \
	"SELECT mode FROM cdp.detect_journey_breaks('2017-12-01 12:00+00')" "full"
plain '2017-12-01 12:00+00'
same "breaks on 2017-12-01 12:00, open ones included, equal plain SQL" \
	"SELECT $bcols FROM p_breaks" "SELECT $bcols FROM cdp.journey_breaks"
same "journeys on 2017-12-01 12:00, in progress included, equal plain SQL" \
	"SELECT $jcols FROM p_journeys" "SELECT $jcols FROM cdp.journeys(NULL, '2017-12-01 12:00+00')"
# (all the sample's events are on one channel: nothing converts elsewhere)
expect "every status but converted_elsewhere occurs on real data" \
	"SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM p_journeys" \
	"completed,expired,in_progress,open,recovered"
echo "# journeys on 2017-12-01 12:00 by funnel and status:"
cdp_psql -d $db -At -F ' ' -c "SELECT '#  ', funnel_id, status, broken, count(*) FROM p_journeys GROUP BY 2, 3, 4 ORDER BY 2, 3, 4"

# sessions: the window function against a gap computed with lag()
same "sessions equal a plain-SQL sessionization (30 minutes)" \
	"SELECT profile_id, channel, session_no, started_at, ended_at, events FROM cdp.sessions" \
	"SELECT profile_id, channel, sno, min(occurred_at), max(occurred_at), count(*) FROM (
	   SELECT *, sum(new) OVER (PARTITION BY profile_id, channel ORDER BY occurred_at, event_id) AS sno FROM (
	     SELECT i.profile_id, e.channel, e.occurred_at, e.event_id,
	            CASE WHEN e.occurred_at - lag(e.occurred_at) OVER w < interval '30 minutes' THEN 0 ELSE 1 END AS new
	     FROM cdp.events e JOIN cdp.event_anchors a USING (event_id, occurred_at)
	     JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
	     WINDOW w AS (PARTITION BY i.profile_id, e.channel ORDER BY e.occurred_at, e.event_id)) g) s
	 GROUP BY 1, 2, 3"

# who viewed the most viewed item
top=$(cdp_psql -d $db -At -c "SELECT item_id FROM taobao WHERE behavior = 'pv' GROUP BY 1 ORDER BY count(DISTINCT user_id) DESC, 1 LIMIT 1")
same "who_viewed('$top') equals the users who viewed it" \
	"SELECT i.value, w.views FROM cdp.who_viewed('$top', '2017-01-01') w JOIN cdp.identifiers i USING (profile_id)" \
	"SELECT 'T' || user_id, count(*) FROM taobao WHERE behavior = 'pv' AND item_id = $top GROUP BY 1"

if [ $((passed + failed)) -ne "$checks" ]; then
	echo "not ok - journeys_real ran $((passed + failed)) checks but says $checks when it skips"
	failed=$((failed + 1))
fi
echo "journeys_real: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
