#!/usr/bin/env bash
# Identity benchmark, on demo events of the given sizes (default 1000000
# 10000000), in one run on one cluster:
#  - ingest: COPY into cdp.events with identity stitching against the same
#    COPY with stitching off (the foundation's path); goal 0.5 or more;
#  - quality: pairwise precision and recall of the profiles against the
#    generator's ground truth (test/bench/identity_quality.sql);
#  - rebuild: cdp.rebuild_identities() against label propagation in plain
#    SQL on the same links (test/bench/label_propagation.sql); goal 20x.
#
#   bash test/bench/identity.sh [EVENTS ...]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$CDP_ROOT"

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
port=${CDP_BENCH_PORT:-54333}

cdp_bench_start bench-identity "$port"
cols=$cdp_event_cols
reset_sql="TRUNCATE cdp.events, cdp.rejected_events, cdp.identifiers, cdp.profiles, cdp.identity_links,
	cdp.event_anchors, cdp.profile_merges, cdp.identity_conflicts, cdp.identifier_rejections"

for n in "${sizes[@]}"; do
	file=$CDP_CLUSTER_DIR/events-$n.csv
	truth=$CDP_CLUSTER_DIR/truth-$n.csv
	contrib/demo/cdp-demo-gen --events "$n" --seed 42 --events-out "$file" --truth-out "$truth" 2>/dev/null
	chmod 644 "$file" "$truth"

	cdp_psql -c "$reset_sql" -c "CHECKPOINT" >/dev/null
	plain=$(cdp_timed -c "SET cdp.stitch_on_ingest = off" \
		-c "COPY cdp.events ($cols) FROM '$file' WITH (FORMAT csv, HEADER true)")
	cdp_psql -c "$reset_sql" -c "CHECKPOINT" >/dev/null
	stitched=$(cdp_timed -c "COPY cdp.events ($cols) FROM '$file' WITH (FORMAT csv, HEADER true)")
	cdp_psql -c "ANALYZE" >/dev/null
	counts=$(cdp_psql -At -F ' ' -c "SELECT (SELECT count(*) FROM cdp.identifiers),
		(SELECT count(*) FROM cdp.profiles WHERE merged_into IS NULL), (SELECT count(*) FROM cdp.identity_links),
		(SELECT count(*) FROM cdp.profile_merges), (SELECT count(*) FROM cdp.identity_conflicts)")
	read -r n_ids n_profiles n_links n_merges n_conflicts <<<"$counts"

	lp=$(cdp_timed -f test/bench/label_propagation.sql)
	rounds=$(cdp_psql -f test/bench/label_propagation.sql 2>&1 | sed -n 's/.*label propagation: \([0-9]*\) rounds.*/\1/p')
	rebuild=$(cdp_timed -c "SELECT * FROM cdp.rebuild_identities()")
	changed=$(cdp_psql -At -c "SET client_min_messages = warning" -c "SELECT changed FROM cdp.rebuild_identities()")
	quality=$(cdp_psql -At -F ' ' <<SQL | tail -1
SET client_min_messages = warning;
CREATE TEMP TABLE truth (kind text, value text, person_id bigint, flag text);
\copy truth FROM '$truth' WITH (FORMAT csv, HEADER true)
\i test/bench/identity_quality.sql
SQL
)
	read -r q_ids q_persons q_profiles precision recall linkable <<<"$quality"

	echo
	echo "== $n demo events"
	echo "graph: $n_ids identifiers, $n_profiles live profiles, $n_links links, $n_merges merges, $n_conflicts conflicts"
	awk -v n="$n" -v p="$plain" -v s="$stitched" 'BEGIN {
		printf "ingest: COPY without stitching %.2f s (%.0f rows/s), with stitching %.2f s (%.0f rows/s), ratio %.2f\n",
			p, n / p, s, n / s, p / s }'
	echo "quality: $q_ids identifiers of $q_persons true persons in $q_profiles profiles: precision $precision, recall $recall, recall of linkable pairs $linkable"
	awk -v l="$lp" -v r="$rebuild" -v k="$rounds" -v c="$changed" 'BEGIN {
		printf "rebuild: cdp.rebuild_identities %.2f s (then %d changed on a second run); label propagation %.2f s (%d rounds); speed-up %.1fx\n",
			r, c, l, k, l / r }'
	rm -f "$file" "$truth"
done
