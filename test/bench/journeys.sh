#!/usr/bin/env bash
# Journeys benchmark, on demo events of the given sizes (default 1000000
# 10000000), in one run on one cluster:
#  - detection: cdp.detect_journey_breaks on every profile (a first run)
#    against the plain-SQL way, window functions over the events of each
#    profile and a recursive query (test/bench/journeys_plain.sql),
#    computing the same breaks of the same funnels at the same as_of; the
#    two results are compared and the script says whether they are
#    identical.  Goal: 5x or more;
#  - incremental: after loading 1 % more events, the next run;
#  - batching: the same events again, sent as 1,000 statements of
#    cdp.ingest (1,000 stitch batches), then the next run: its time should
#    not depend on how the work was batched (0.1.0 read batch by batch).
#
#   bash test/bench/journeys.sh [EVENTS ...]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$CDP_ROOT"

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
port=${CDP_BENCH_PORT:-54334}
as_of='2025-12-31 00:00+00'

cdp_bench_start bench-journeys "$port"
cols=$cdp_event_cols
reset_sql="TRUNCATE cdp.events, cdp.rejected_events, cdp.identifiers, cdp.profiles, cdp.identity_links,
	cdp.event_anchors, cdp.profile_merges, cdp.identity_conflicts, cdp.identifier_rejections, cdp.stitch_batches,
	cdp.journey_breaks, cdp.journey_pending, cdp.journey_progress"
bcols="profile_id, funnel_id, started_at, journey_no, reached_step, break_step, last_event_at, last_event_id,
	broken_at, channel, status, resolved_at, resolved_channel"

for n in "${sizes[@]}"; do
	extra=$((n / 100))
	file=$CDP_CLUSTER_DIR/events-$n.csv
	contrib/demo/cdp-demo-gen --events $((n + extra)) --seed 42 --events-out "$file.all" 2>/dev/null
	head -n $((n + 1)) "$file.all" >"$file"
	{ head -1 "$file.all"; tail -n "$extra" "$file.all"; } >"$file.more"
	rm -f "$file.all"
	chmod 644 "$file" "$file.more"

	cdp_psql -c "$reset_sql" >/dev/null
	cdp_psql -c "SET client_min_messages = warning" \
		-c "COPY cdp.events ($cols) FROM '$file' WITH (FORMAT csv, HEADER true)" -c "VACUUM ANALYZE" >/dev/null
	# the same warm start for both: the tables read once, a checkpoint
	cdp_psql -c "SELECT count(*) FROM cdp.events" -c "SELECT count(*) FROM cdp.event_anchors" -c "CHECKPOINT" >/dev/null

	detect=$(cdp_timed -c "SELECT * FROM cdp.detect_journey_breaks('$as_of')")
	cdp_psql -c "CHECKPOINT" >/dev/null
	plain=$(cdp_timed -v as_of="'$as_of'" -c "SET work_mem = '256MB'" -f test/bench/journeys_plain.sql \
		-c "CREATE TABLE plain_breaks_kept AS SELECT * FROM plain_breaks" \
		-c "CREATE TABLE plain_journeys_kept AS SELECT * FROM plain_journeys")
	figures=$(cdp_psql -At -F ' ' -c "SELECT
		(SELECT count(*) FROM cdp.events e WHERE e.type IN (SELECT unnest(steps) FROM cdp.funnels)),
		(SELECT count(*) FROM cdp.profiles WHERE merged_into IS NULL),
		(SELECT count(*) FROM plain_journeys_kept),
		(SELECT count(*) FROM cdp.journey_breaks),
		(SELECT count(*) FROM cdp.journey_breaks WHERE status = 'open'),
		(SELECT count(*) FROM plain_breaks_kept),
		(SELECT count(*) FROM (SELECT $bcols FROM plain_breaks_kept EXCEPT SELECT $bcols FROM cdp.journey_breaks) x),
		(SELECT count(*) FROM (SELECT $bcols FROM cdp.journey_breaks EXCEPT SELECT $bcols FROM plain_breaks_kept) x)")
	read -r n_funnel n_profiles n_journeys n_breaks n_open n_plain only_plain only_cdp <<<"$figures"
	if [ "$n_breaks" = "$n_plain" ] && [ "$only_plain" = 0 ] && [ "$only_cdp" = 0 ]; then
		identical="identical"
	else
		identical="NOT identical ($only_plain breaks only in plain SQL, $only_cdp only in cdp)"
	fi
	cdp_psql -c "DROP TABLE plain_breaks_kept, plain_journeys_kept" >/dev/null

	# incremental: 1 % more events, then the next run
	cdp_psql -c "SET client_min_messages = warning" \
		-c "COPY cdp.events ($cols) FROM '$file.more' WITH (FORMAT csv, HEADER true)" >/dev/null
	incremental=$(cdp_timed -c "CREATE TABLE incremental_run AS SELECT * FROM cdp.detect_journey_breaks('$as_of')")
	replayed=$(cdp_psql -At -F ' ' -c "SELECT mode, profiles, breaks FROM incremental_run" -c "DROP TABLE incremental_run")

	# batching: the same events in 1,000 statements of cdp.ingest
	cdp_psql -c "CREATE TABLE more_events (occurred_at timestamptz, channel text, type text, identifiers jsonb,
		properties jsonb, amount numeric, source text)" \
		-c "COPY more_events FROM '$file.more' WITH (FORMAT csv, HEADER true)" >/dev/null
	batches_before=$(cdp_psql -At -c "SELECT count(*) FROM cdp.stitch_batches")
	for g in $(seq 0 999); do
		echo "SELECT cdp.ingest((SELECT jsonb_agg(to_jsonb(m) - 'g') FROM (SELECT *, row_number() OVER () % 1000 AS g FROM more_events) m WHERE g = $g));"
	done >"$file.ingest.sql"
	cdp_psql -c "SET client_min_messages = warning" -f "$file.ingest.sql" >/dev/null
	batches=$(cdp_psql -At -c "SELECT count(*) - $batches_before FROM cdp.stitch_batches")
	batched=$(cdp_timed -c "CREATE TABLE batched_run AS SELECT * FROM cdp.detect_journey_breaks('$as_of')")
	batched_replayed=$(cdp_psql -At -F ' ' -c "SELECT mode, profiles FROM batched_run" -c "DROP TABLE batched_run, more_events")
	rm -f "$file" "$file.more" "$file.ingest.sql"

	echo
	echo "== $n demo events, as_of $as_of"
	echo "data: $n_funnel funnel events (cart, browse), $n_profiles live profiles, $n_journeys journeys, $n_breaks breaks ($n_open open)"
	awk -v d="$detect" -v p="$plain" -v id="$identical" 'BEGIN {
		printf "detection: cdp.detect_journey_breaks %.2f s; plain SQL (window functions) %.2f s; speed-up %.1fx; results %s\n",
			d, p, p / d, id }'
	read -r inc_mode inc_profiles inc_breaks <<<"$replayed"
	echo "incremental: $extra more events loaded, the next run ($inc_mode) $incremental s: $inc_profiles profiles replayed, $inc_breaks breaks written"
	read -r bat_mode bat_profiles <<<"$batched_replayed"
	awk -v b="$batched" -v i="$incremental" -v n="$batches" -v m="$bat_mode" -v p="$bat_profiles" -v e="$extra" 'BEGIN {
		printf "batching: the same %d events again in 1,000 cdp.ingest statements (%d stitch batches), the next run (%s) %.2f s for %d profiles: %.2fx the run after one COPY\n",
			e, n, m, b, p, b / i }'
done
