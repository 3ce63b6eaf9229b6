#!/usr/bin/env bash
# Triggers under load, with the background worker and the example sender
# (contrib/outbox/cdp-sender) running, on a cluster holding BASE demo
# events (default 200,000):
#  - 4 clients send 2,000 events a second for SECONDS (default 60) with
#    pgbench, in batches of 20 (cdp.ingest), among 50,000 people: 80 % page and product views, 10 %
#    add_to_cart, 5 % purchase, 5 % complaint; an event trigger on complaints
#    (no delay) and a cart trigger on a funnel whose carts break after 5 s
#    of inactivity, with a delay of 5 s;
#  - event triggers: from the event's commit to its outbox row (bounded
#    below by the row's created_at, the start of the worker's transaction,
#    and above by its delivery by the sender, woken by NOTIFY), median and
#    p95; the goal is a p95 under 1 s;
#  - delay triggers: lateness of the decision against the due time (same
#    two bounds), median and p95; the goal is a p95 under 1 s;
#  - the worker's lag every 10 s (events not yet in the store or journeys,
#    moments due but not yet decided);
#  - counting: every complaint has exactly one firing, every firing sent
#    exactly one message, no moment twice, every message delivered once;
#  - the plain-SQL way side by side: the same load into a plain table whose
#    row trigger writes an outbox row in the inserting transaction (no
#    identity, no decision, no caps): client latency against cdp.ingest's.
#
#   bash test/bench/triggers.sh [SECONDS [BASE [heavy|light]]]
#
# heavy (the default): 10 % carts and 5 % complaints (about 280 decisions
# a second); light: 3 % carts, 1 % complaints (about 60).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$CDP_ROOT"

seconds=${1:-60}
base=${2:-200000}
mix=${3:-heavy}
# event mix, thresholds on r in 1..100: page views up to a, product views
# up to b, carts up to c, purchases up to d, complaints above
case $mix in
	heavy) a=60 b=80 c=90 d=95 ;;	# 10 % carts, 5 % complaints: about 280 decisions a second
	light) a=70 b=95 c=98 d=99 ;;	# 3 % carts, 1 % complaints: about 60 decisions a second
	*) echo "usage: $0 [SECONDS [BASE [heavy|light]]]" >&2; exit 2 ;;
esac
port=${CDP_BENCH_PORT:-54337}

cdp_bench_start bench-triggers "$port"
make -s sender
dir=$CDP_CLUSTER_DIR
count() { cdp_psql -At -c "SET client_min_messages = warning" -c "$1"; }
contrib/demo/cdp-demo-gen --events "$base" --seed 42 --start 2025-01-01 --days 365 --events-out "$dir/base.csv" 2>/dev/null
chmod 644 "$dir/base.csv"
cdp_psql -c "SET client_min_messages = warning" \
	-c "COPY cdp.events ($cdp_event_cols) FROM '$dir/base.csv' WITH (FORMAT csv, HEADER true)" \
	-c "SELECT cdp.ensure_partitions(now() - interval '1 month', now() + interval '1 month')" >/dev/null
cdp_psql <<'SQL' >/dev/null
SET client_min_messages = warning;
INSERT INTO cdp.offers (offer_id, name, channels, value, payload) VALUES
	('sorry', 'Sorry: 10 % off', '{email}', 5, '{"code": "SORRY10"}'),
	('cart_back', 'Your cart is waiting', '{email}', 10, '{"template": "cart"}');
INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after) VALUES
	('quick_cart', '{add_to_cart,checkout_start,purchase}', '1 hour', '5 seconds');
INSERT INTO cdp.triggers (trigger_id, on_event, channel, offers) VALUES ('apology', 'complaint', 'email', '{sorry}');
INSERT INTO cdp.triggers (trigger_id, on_break, delay, channel, offers) VALUES ('cart_reminder', 'quick_cart', '5 seconds', 'email', '{cart_back}');
CREATE TABLE bench_phase (phase text);
INSERT INTO bench_phase VALUES ('run');
CREATE TABLE bench_poll (at timestamptz, lag_events bigint, lag_seconds float8, due_backlog bigint);
ANALYZE;
SQL
cdp_set_worker on

# 4 clients sending batches of 20 events (as an SDK batches them: one
# cdp.track per event tops out near 1,000 a second, see "Real time"), 100
# batches a second
rows="SELECT now() AS occurred_at, CASE WHEN r <= $d THEN 'web' ELSE 'call_center' END AS channel,
	CASE WHEN r <= $a THEN 'page_view' WHEN r <= $b THEN 'product_view' WHEN r <= $c THEN 'add_to_cart'
	     WHEN r <= $d THEN 'purchase' ELSE 'complaint' END AS type,
	jsonb_build_object('email', 'bench' || p || '@benchmail.com') AS identifiers,
	jsonb_build_object('product_id', 'P' || r, 'cart_value', r, 'severity', 3) AS properties,
	CASE WHEN r > $c AND r <= $d THEN 30 END AS amount
	FROM (SELECT 1 + floor(random() * 100)::int AS r, 1 + floor(random() * 50000)::int AS p FROM generate_series(1, 20)) g"
echo "SELECT cdp.ingest((SELECT jsonb_agg(to_jsonb(x)) FROM ($rows) x));" >"$dir/track.sql"
echo "INSERT INTO plain_events (occurred_at, channel, type, identifiers, properties, amount) $rows;" >"$dir/plain.sql"

contrib/outbox/cdp-sender --quiet --batch 200 &
sender=$!
cdp_psql <<'SQL' >/dev/null &
SET client_min_messages = warning;
DO $$
BEGIN
	LOOP
		INSERT INTO bench_poll SELECT clock_timestamp(), w.lag_events, w.lag_seconds,
		       (SELECT count(*) FROM cdp.trigger_fires f WHERE f.status = 'waiting' AND f.due_at < clock_timestamp() - interval '1 second')
		FROM cdp.worker_status w;
		COMMIT;
		EXIT WHEN (SELECT phase FROM bench_phase) = 'stop';
		PERFORM pg_sleep(0.25);
	END LOOP;
END
$$;
SQL
poller=$!
start=$(count "SELECT now()")
echo "== 4 clients sending 2,000 events a second (100 batches of 20, mix $mix) for $seconds s (worker and sender running)"
out=$("$PGBIN/pgbench" -n -c 4 -j 2 -R 100 -T "$seconds" -f "$dir/track.sql" 2>&1)
grep -E "^(number of transactions actually|latency average|rate limit schedule lag|tps)" <<<"$out" | sed 's/^/pgbench cdp: /'
lat_cdp=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
# let the carts of the last seconds break, fall due and be decided
sleep 15
count "UPDATE bench_phase SET phase = 'stop'" >/dev/null
wait "$poller"
kill "$sender" 2>/dev/null || true
wait "$sender" 2>/dev/null || true

echo "== event trigger (complaint): from the event's commit to its outbox row"
count "WITH m AS (SELECT extract(epoch FROM o.created_at - e.received_at) * 1000 AS lo,
                         extract(epoch FROM o.delivered_at - e.received_at) * 1000 AS hi
                  FROM cdp.trigger_fires f JOIN cdp.outbox o USING (fire_id)
                  JOIN cdp.events e ON e.event_id = substr(f.moment, 7)::bigint AND e.occurred_at = f.moment_at
                  WHERE f.trigger_id = 'apology' AND f.moment_at >= '$start')
	SELECT format('%s messages; at least (row''s transaction start): p50 %s ms, p95 %s ms; at most (delivered by the sender): p50 %s ms, p95 %s ms, max %s ms',
	       count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lo)::numeric), round(percentile_cont(0.95) WITHIN GROUP (ORDER BY lo)::numeric),
	       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY hi)::numeric), round(percentile_cont(0.95) WITHIN GROUP (ORDER BY hi)::numeric),
	       round(max(hi)::numeric)) FROM m"
echo "== delay trigger (cart left 5 s, delay 5 s): lateness against the due time"
count "WITH m AS (SELECT extract(epoch FROM f.fired_at - f.due_at) * 1000 AS lo,
                         extract(epoch FROM coalesce(o.delivered_at, f.fired_at) - f.due_at) * 1000 AS hi, f.status
                  FROM cdp.trigger_fires f LEFT JOIN cdp.outbox o USING (fire_id)
                  WHERE f.trigger_id = 'cart_reminder' AND f.status NOT IN ('waiting', 'exited', 'skipped'))
	SELECT format('%s decisions (%s sent); at least (decision''s transaction start): p50 %s ms, p95 %s ms; at most (delivered): p50 %s ms, p95 %s ms, max %s ms',
	       count(*), count(*) FILTER (WHERE status = 'sent'),
	       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lo)::numeric), round(percentile_cont(0.95) WITHIN GROUP (ORDER BY lo)::numeric),
	       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY hi)::numeric), round(percentile_cont(0.95) WITHIN GROUP (ORDER BY hi)::numeric),
	       round(max(hi)::numeric)) FROM m"
count "SELECT format('carts dropped during their delay (bought): %s', count(*)) FROM cdp.trigger_fires WHERE trigger_id = 'cart_reminder' AND status = 'exited'"
echo "the worker's lag, every 10 s (largest in each window; moments due over a second ago and not decided):"
count "SELECT format('  %s s: %s events, %s s, %s moments', w * 10, max(lag_events), round(max(lag_seconds)::numeric, 2), max(due_backlog))
	FROM (SELECT floor(extract(epoch FROM at - min(at) OVER ()) / 10)::int AS w, lag_events, lag_seconds, due_backlog FROM bench_poll) x
	GROUP BY w ORDER BY w"

echo "== counting: nothing lost, nothing twice"
count "SELECT format('complaints %s, their firings %s (distinct moments %s); firings sent %s, their messages %s (distinct %s); delivered %s, attempts > 1: %s; waiting past due: %s',
	(SELECT count(*) FROM cdp.events WHERE type = 'complaint' AND occurred_at >= '$start'),
	(SELECT count(*) FROM cdp.trigger_fires WHERE trigger_id = 'apology'),
	(SELECT count(DISTINCT moment) FROM cdp.trigger_fires WHERE trigger_id = 'apology'),
	(SELECT count(*) FROM cdp.trigger_fires WHERE status = 'sent'),
	(SELECT count(*) FROM cdp.outbox o JOIN cdp.trigger_fires f USING (fire_id)),
	(SELECT count(DISTINCT fire_id) FROM cdp.outbox),
	(SELECT count(*) FROM cdp.outbox WHERE status = 'delivered'),
	(SELECT count(*) FROM cdp.outbox WHERE attempts > 1),
	(SELECT count(*) FROM cdp.trigger_fires WHERE status = 'waiting' AND due_at < now()))"
count "SELECT CASE WHEN (SELECT count(*) FROM cdp.events WHERE type = 'complaint' AND occurred_at >= '$start')
	                 = (SELECT count(DISTINCT moment) FROM cdp.trigger_fires WHERE trigger_id = 'apology')
	            AND (SELECT count(*) FROM cdp.trigger_fires WHERE status = 'sent') = (SELECT count(DISTINCT fire_id) FROM cdp.outbox)
	            AND (SELECT count(*) FROM cdp.outbox) = (SELECT count(DISTINCT fire_id) FROM cdp.outbox)
	       THEN 'zero lost, zero duplicated' ELSE 'MISMATCH: see the counts above' END"
count "SELECT format('worker errors: %s', errors) FROM cdp.worker_status"

echo "== the plain-SQL way: the same load into a plain table with a row trigger writing an outbox row"
cdp_set_worker off
cdp_psql <<'SQL' >/dev/null
SET client_min_messages = warning;
CREATE TABLE plain_events (event_id bigserial PRIMARY KEY, occurred_at timestamptz, channel text, type text,
	identifiers jsonb, properties jsonb, amount numeric);
CREATE TABLE plain_outbox (message_id bigserial PRIMARY KEY, event_id bigint, payload jsonb, created_at timestamptz DEFAULT now());
CREATE FUNCTION plain_fire() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.type = 'complaint' THEN
		INSERT INTO plain_outbox (event_id, payload) VALUES (NEW.event_id, jsonb_build_object('to', NEW.identifiers->>'email'));
		PERFORM pg_notify('plain_outbox', NEW.event_id::text);
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER plain_fire AFTER INSERT ON plain_events FOR EACH ROW EXECUTE FUNCTION plain_fire();
SQL
out=$("$PGBIN/pgbench" -n -c 4 -j 2 -R 100 -T "$seconds" -f "$dir/plain.sql" 2>&1)
grep -E "^(number of transactions actually|latency average|tps)" <<<"$out" | sed 's/^/pgbench plain: /'
lat_plain=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
echo "client latency per batch of 20: cdp.ingest $lat_cdp ms, plain INSERT with its outbox trigger $lat_plain ms (ratio $(cdp_ratio "$lat_cdp" "$lat_plain"))"
