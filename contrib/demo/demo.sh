#!/usr/bin/env bash
# The README's main command: installs what is missing, builds and installs
# cdp, starts a throwaway PostgreSQL cluster with pg_cron and cdp preloaded,
# loads the demo retailer and prints what the platform knows.
#
#   bash contrib/demo/demo.sh [EVENTS]     default 200000; the cluster keeps
#                                          running for you to explore
#   bash contrib/demo/demo.sh stop         stops it
set -euo pipefail
. "$(dirname "$0")/../../test/lib.sh"
cd "$CDP_ROOT"

port=${CDP_DEMO_PORT:-54329}
if [ "${1:-}" = stop ]; then
	cdp_stop_cluster demo
	echo "demo cluster stopped"
	exit 0
fi
events=${1:-200000}
case $events in
	'' | *[!0-9]*) echo "usage: $0 [EVENTS | stop]" >&2; exit 2 ;;
esac

cdp_setup
make -s demo-gen
echo "== starting a throwaway cluster on port $port"
cdp_start_cluster demo "$port" "shared_buffers = 512MB" "max_wal_size = 4GB" \
	"cdp.default_country = 'GB'" \
	"cdp.worker_enabled = on"	# the demo retailer is British: 07700 900123 is +447700900123
cdp_psql -c "CREATE EXTENSION pg_cron" -c "CREATE EXTENSION cdp"

echo "== generating $events demo events"
data=$CDP_CLUSTER_DIR/demo-events.csv
contrib/demo/cdp-demo-gen --events "$events" --seed 42 --start 2025-01-01 --days 365 \
	--events-out "$data" --truth-out "$CDP_CLUSTER_DIR/demo-truth.csv" \
	--persons-out "$CDP_CLUSTER_DIR/demo-persons.csv"
chmod 644 "$CDP_CLUSTER_DIR"/demo-*.csv

echo "== loading"
cdp_psql <<SQL
\set QUIET off
SET client_min_messages = warning;
-- monthly partitions for the demo year, then the file with COPY
SELECT cdp.ensure_partitions('2025-01-01', '2025-12-31') AS partitions_created;
\timing on
COPY cdp.events (occurred_at, channel, type, identifiers, properties, amount, source)
	FROM '$data' WITH (FORMAT csv, HEADER true);
\timing off
-- a real feed also sends broken events: they are quarantined, not lost
SELECT * FROM cdp.ingest('[
  {"occurred_at": "2025-06-01 10:00:00+00", "channel": "web", "type": "page_view", "identifiers": {"cookie": "c-demo"}},
  {"occurred_at": "2025-06-01 10:00:00+00", "channel": "Web", "type": "page_view", "identifiers": {"cookie": "c-demo"}},
  {"occurred_at": "2099-01-01 00:00:00+00", "channel": "web", "type": "page_view", "identifiers": {"cookie": "c-demo"}},
  {"occurred_at": "2025-06-01 10:00:00+00", "channel": "store", "type": "purchase", "identifiers": {}, "amount": 12},
  {"occurred_at": "01/06/2025", "channel": "store", "type": "purchase", "identifiers": {"loyalty_card": "L1"}, "amount": "12,50"}
]');
-- cdp's jobs with pg_cron (partitions, scores, retention, quarantine, outbox);
-- two of them every minute, so that the demo shows them run
SELECT job_name, schedule, command FROM cdp.schedule_jobs('{"cdp-partitions": "* * * * *", "cdp-outbox": "* * * * *"}');
ANALYZE;  -- statistics for every table after a bulk load (the views need them)
SQL

echo
echo "== what cdp knows"
cdp_psql <<'SQL'
\pset footer off
\echo 'Events by channel'
SELECT e.channel, c.online, count(*) AS events, count(*) FILTER (WHERE e.type = 'purchase') AS purchases,
       round(sum(e.amount) FILTER (WHERE e.type IN ('purchase', 'return')), 2) AS net_revenue
FROM cdp.events e JOIN cdp.channels c USING (channel)
GROUP BY e.channel, c.online ORDER BY events DESC;
\echo 'Events by type'
SELECT e.type, t.category, count(*) AS events, count(DISTINCT e.channel) AS channels
FROM cdp.events e LEFT JOIN cdp.event_types t USING (type)
GROUP BY e.type, t.category ORDER BY events DESC;
\echo 'Partitions'
SELECT partition, range_from::date AS month, estimated_rows, pg_size_pretty(total_bytes) AS size
FROM cdp.event_partitions WHERE estimated_rows > 0 OR is_default ORDER BY range_from NULLS FIRST;
\echo 'Quarantine'
SELECT reason_code, reason, raw FROM cdp.rejected_events ORDER BY reject_id;

\echo 'Identity: identifiers stitched into profiles at ingest'
SELECT kind, count(*) AS identifiers, count(DISTINCT profile_id) AS profiles
FROM cdp.identifiers GROUP BY kind ORDER BY min((SELECT priority FROM cdp.identity_rules r WHERE r.kind = identifiers.kind));
SELECT (SELECT count(*) FROM cdp.profiles WHERE merged_into IS NULL) AS live_profiles,
       (SELECT count(*) FROM cdp.profile_merges) AS merges,
       (SELECT count(*) FROM cdp.identity_conflicts) AS conflicts_refused,
       (SELECT count(*) FROM cdp.identifier_rejections) AS identifiers_left_out;
\echo 'Identifiers left out of the graph, and why'
SELECT kind, reason, count(*) AS occurrences, min(value) AS example
FROM cdp.identifier_rejections GROUP BY kind, reason ORDER BY occurrences DESC LIMIT 8;
\echo 'Links refused (shared devices, two accounts on one card, ...)'
SELECT c.reason, c.kind AS over_limit, i.kind AS kept_apart, count(*) AS conflicts
FROM cdp.identity_conflicts c JOIN cdp.identifiers i ON i.identifier_id = c.identifier_id
GROUP BY 1, 2, 3 ORDER BY conflicts DESC;
\echo 'Scoring: RFM and lifetime value, as of the last event (a year of calibration, a year of horizon)'
SELECT * FROM cdp.refresh_scores((SELECT max(occurred_at) FROM cdp.events));
SELECT segment, count(*) AS profiles, round(avg(recency_days)) AS avg_recency_days,
       round(avg(frequency), 1) AS avg_purchases, round(avg(monetary), 2) AS avg_value
FROM cdp.rfm GROUP BY segment ORDER BY min((SELECT priority FROM cdp.rfm_segments g WHERE g.segment = rfm.segment));
SELECT round((model->>'r')::numeric, 3) AS r, round((model->>'alpha')::numeric, 2) AS alpha,
       round((model->>'a')::numeric, 3) AS a, round((model->>'b')::numeric, 3) AS b,
       model->>'customers' AS customers, spend_model->>'status' AS spend_model
FROM cdp.clv_models ORDER BY model_id DESC LIMIT 1;
\echo 'Highest lifetime values'
SELECT profile_id, x AS repeat_days, round(p_alive::numeric, 3) AS p_alive,
       round(expected_purchases::numeric, 2) AS expected_purchases, round(clv::numeric, 2) AS clv
FROM cdp.clv ORDER BY clv DESC NULLS LAST LIMIT 5;
\echo 'Journeys: broken carts and browsing, as of the last event'
SELECT * FROM cdp.detect_journey_breaks((SELECT max(occurred_at) FROM cdp.events));
SELECT funnel_id, status, count(*) AS breaks, count(DISTINCT profile_id) AS profiles,
       round(avg((context->>'cart_value')::numeric), 2) AS avg_cart_value
FROM cdp.journey_breaks GROUP BY 1, 2 ORDER BY 1, 2;
\echo 'Carts abandoned on one channel and bought on another'
SELECT channel AS broken_on, resolved_channel AS bought_on, count(*) AS journeys
FROM cdp.journey_breaks WHERE funnel_id = 'cart' AND status = 'converted_elsewhere'
GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5;
\echo 'The cart funnel'
SELECT step, type, journeys, to_next, conversion, drop_off, median_to_next
FROM cdp.funnel_stats('cart', as_of => (SELECT max(occurred_at) FROM cdp.events));
\echo 'The single customer view: the customer seen on the most channels'
\x on
SELECT * FROM cdp.customer_360 ORDER BY cardinality(channels) DESC, events DESC, profile_id LIMIT 1;
\x off
SQL

echo
echo "== pg_cron: waiting for the first scheduled runs (jobs start on the minute)"
for _ in $(seq 1 90); do
	[ "$(cdp_psql -At -c "SELECT count(*) FILTER (WHERE runs > 0) = 2 FROM cdp.job_status WHERE schedule = '* * * * *'")" = t ] && break
	sleep 1
done
cdp_psql <<'SQL'
\pset footer off
\echo 'The scheduled jobs and their last runs (cdp.job_status)'
SELECT job_name, schedule, runs, failures, last_start::timestamp(0) AS last_start, last_status, last_message
FROM cdp.job_status;
\echo 'The background worker (it keeps the profile store and the journeys current as events arrive)'
SELECT running, state, units, events, lag_events, lag_seconds, errors FROM cdp.worker_status;
SQL
echo
echo "== one customer, now: a purchase in a store, then cdp.profile by e-mail"
email=$(cdp_psql -At -c "SELECT value FROM cdp.identifiers i WHERE kind = 'email'
	ORDER BY (SELECT count(*) FROM cdp.identifiers j WHERE j.profile_id = i.profile_id) DESC, value LIMIT 1")
cdp_psql -v email="$email" <<'SQL'
\pset footer off
SELECT cdp.track(now(), 'store', 'purchase', jsonb_build_object('email', :'email'),
                 '{"product_id": "P00042", "store_id": "S-12"}', 59.90) AS tracked_event;
SELECT pg_sleep(0.5);
\x on
SELECT profile_id, identifiers, traits, first_seen, last_seen, events, by_channel, orders, revenue,
       last_purchase_at, last_purchase_channel, last_purchase_amount, products -> 'bought' -> 0 AS last_bought,
       interest, rfm_segment, round(clv::numeric, 2) AS clv, open_breaks, first_source, last_source,
       jsonb_array_length(recent_events) AS recent_events, recent_events -> 0 AS latest_event, as_of
FROM cdp.profile('email', :'email');
\x off
SQL

echo
echo "== next best offers: from the catalogue to an outcome (contrib/demo/offers.sql)"
cdp_psql -f contrib/demo/offers.sql

echo
echo "== triggers: carts left, relaunched after a delay, recovered (contrib/demo/triggers.sql)"
make -s sender
cdp_psql -f contrib/demo/triggers.sql

cat <<EOF

The demo cluster is still running. Explore it with:
  $PGBIN/psql -h $PGHOST -p $PGPORT -U $PGUSER cdp
Stop it with:
  bash contrib/demo/demo.sh stop
EOF
