#!/usr/bin/env bash
# Identity resolution on the demo retailer (junk values and shared devices
# included), on the cluster of test/run.sh (PG* set): graph invariants,
# quality against the generator's ground truth, the rebuild giving the same
# partition, and loading in many small statements giving the same partition
# as one COPY.  Prints "identity_demo: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

events=${1:-30000}
dir=$CDP_CLUSTER_DIR/identity
passed=0
failed=0
mkdir -p "$dir"
chmod 755 "$dir"
contrib/demo/cdp-demo-gen --events "$events" --seed 7 --events-out "$dir/events.csv" \
	--truth-out "$dir/truth.csv" 2>/dev/null
tail -n +2 "$dir/events.csv" | split -l $((events / 10 + 1)) - "$dir/part-"
chmod 644 "$dir"/*

for db in cdp_identity cdp_identity_parts cdp_identity_concurrent; do
	cdp_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
	cdp_psql -d "$db" -c "ALTER DATABASE $db SET cdp.default_country = 'GB'" >/dev/null
	cdp_psql -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp" \
		-c "SELECT cdp.ensure_partitions('2025-01-01', '2025-12-31')" >/dev/null
done
cols="occurred_at, channel, type, identifiers, properties, amount, source"
cdp_psql -d cdp_identity -c "COPY cdp.events ($cols) FROM '$dir/events.csv' WITH (FORMAT csv, HEADER true)"
for part in "$dir"/part-*; do
	cdp_psql -d cdp_identity_parts -c "COPY cdp.events ($cols) FROM '$part' WITH (FORMAT csv)" >/dev/null
done
# four sessions at once, each loading its share of the parts
pids=()
for s in 0 1 2 3; do
	(
		i=0
		for part in "$dir"/part-*; do
			if [ $((i % 4)) -eq "$s" ]; then
				cdp_psql -d cdp_identity_concurrent -c "COPY cdp.events ($cols) FROM '$part' WITH (FORMAT csv)" >/dev/null
			fi
			i=$((i + 1))
		done
	) &
	pids+=($!)
done
# ... while a fifth merges profiles by hand and undoes every other merge
hand_log=$(mktemp)
(
	for k in $(seq 1 16); do
		cdp_psql -d cdp_identity_concurrent -tAc "SELECT cdp.merge_profiles(min(profile_id), max(profile_id), 'concurrency test', force => true)
			FROM (SELECT profile_id FROM cdp.profiles WHERE merged_into IS NULL ORDER BY random() LIMIT 2) x HAVING count(*) = 2" \
			>>"$hand_log" 2>&1 || true
		if [ $((k % 2)) -eq 0 ]; then
			cdp_psql -d cdp_identity_concurrent -tAc "SELECT cdp.unmerge(m, 'concurrency test') FROM (SELECT max(merge_id) AS m
				FROM cdp.profile_merges WHERE method = 'hand' AND undone_at IS NULL) x WHERE m IS NOT NULL" >>"$hand_log" 2>&1 || true
		fi
	done
) &
hand_pid=$!
concurrent_ok=0
for pid in "${pids[@]}"; do wait "$pid" || concurrent_ok=1; done
wait "$hand_pid"

db=cdp_identity
cdp_expect "every event is stored" $db "SELECT count(*) FROM cdp.events" "$events"
cdp_expect "every identifier is in a live profile" $db \
	"SELECT count(*) FROM cdp.identifiers i LEFT JOIN cdp.profiles p USING (profile_id) WHERE p.profile_id IS NULL OR p.merged_into IS NOT NULL" 0
cdp_expect "every merged-away profile forwards to a live one" $db \
	"SELECT count(*) FROM cdp.profiles p LEFT JOIN cdp.profiles q ON q.profile_id = p.merged_into WHERE p.merged_into IS NOT NULL AND (q.profile_id IS NULL OR q.merged_into IS NOT NULL)" 0
cdp_expect "every absorbed profile of the journal forwards" $db \
	"SELECT count(*) FROM cdp.profile_merges m JOIN cdp.profiles p ON p.profile_id = m.absorbed WHERE p.merged_into IS NULL AND m.undone_at IS NULL" 0
cdp_expect "every live profile holds an identifier" $db \
	"SELECT count(*) FROM cdp.profiles p WHERE merged_into IS NULL AND NOT EXISTS (SELECT FROM cdp.identifiers i WHERE i.profile_id = p.profile_id)" 0
cdp_expect "every event has one anchor, or identifiers that were all left out" $db \
	"SELECT count(*) FROM cdp.events e WHERE (SELECT count(*) FROM cdp.event_anchors a WHERE a.event_id = e.event_id) <> 1
	 AND NOT (NOT EXISTS (SELECT FROM cdp.event_anchors a WHERE a.event_id = e.event_id)
	          AND (SELECT count(*) FROM cdp.identifier_rejections r WHERE r.event_id = e.event_id) = (SELECT count(*) FROM jsonb_object_keys(e.identifiers)))" 0
cdp_expect "junk values never enter the graph" $db \
	"SELECT count(*) FROM cdp.identifiers WHERE value IN ('test@test.com', 'noemail@none.com', 'a@a.com', 'undefined', 'null', '0000000000')" 0

quality=$(cdp_psql -d $db -At -F ' ' <<SQL
CREATE TEMP TABLE truth (kind text, value text, person_id bigint, flag text);
\copy truth FROM '$dir/truth.csv' WITH (FORMAT csv, HEADER true)
SET client_min_messages = warning;
\i test/bench/label_propagation.sql
\i test/bench/identity_quality.sql
SQL
)
read -r n_ids n_persons n_profiles precision recall linkable <<<"$(echo "$quality" | tail -1)"
echo "# $n_ids identifiers of $n_persons persons in $n_profiles profiles: precision $precision, recall $recall (linkable pairs: $linkable)"
cdp_expect "precision >= 0.99 against the ground truth" $db "SELECT $precision >= 0.99" t
cdp_expect "recall >= 0.98 of the pairs the events link" $db "SELECT $linkable >= 0.98" t

# concurrent loaders: no error or deadlock, nothing lost, and the invariants hold
cdp_expect "four concurrent loaders all succeed" cdp_identity_concurrent "SELECT $concurrent_ok" 0
cdp_expect "concurrent loaders store every event" cdp_identity_concurrent "SELECT count(*) FROM cdp.events" "$events"
cdp_expect "concurrent loaders: every identifier in one live profile" cdp_identity_concurrent \
	"SELECT count(*) FROM cdp.identifiers i LEFT JOIN cdp.profiles p USING (profile_id) WHERE p.profile_id IS NULL OR p.merged_into IS NOT NULL" 0
cdp_expect "concurrent loaders: journal consistent" cdp_identity_concurrent \
	"SELECT count(*) FROM cdp.profile_merges m JOIN cdp.profiles p ON p.profile_id = m.absorbed WHERE p.merged_into IS NULL AND m.undone_at IS NULL" 0
cdp_expect "concurrent loaders: every event anchored once at most" cdp_identity_concurrent \
	"SELECT count(*) FROM (SELECT event_id FROM cdp.event_anchors GROUP BY 1 HAVING count(*) > 1) x" 0
cdp_expect "merges by hand during the loads: none failed but on profiles merged meanwhile" cdp_identity_concurrent \
	"SELECT $(grep -c ERROR "$hand_log") - $(grep -c 'already one profile' "$hand_log")" 0
cdp_expect "merges by hand during the loads: some made, some undone" cdp_identity_concurrent \
	"SELECT count(*) FILTER (WHERE undone_at IS NULL) > 0 AND count(*) FILTER (WHERE undone_at IS NOT NULL) > 0 FROM cdp.profile_merges WHERE method = 'hand'" t
cdp_expect "merges by hand during the loads: none lost" cdp_identity_concurrent \
	"SELECT count(*) FROM cdp.profile_merges m JOIN cdp.profiles s ON s.profile_id = m.survivor JOIN cdp.profiles a ON a.profile_id = m.absorbed
	 WHERE m.method = 'hand' AND m.undone_at IS NULL AND coalesce(s.merged_into, s.profile_id) <> coalesce(a.merged_into, a.profile_id)" 0
cdp_expect "merges undone during the loads stay undone" cdp_identity_concurrent \
	"SELECT count(*) FROM cdp.identity_overrides o JOIN cdp.identifiers a ON a.identifier_id = o.identifier_a
	 JOIN cdp.identifiers b ON b.identifier_id = o.identifier_b WHERE o.action = 'unmerge' AND o.lifted_at IS NULL AND a.profile_id = b.profile_id" 0
rm -f "$hand_log"
cdp_expect "concurrent loaders: a rebuild agrees with what they built" cdp_identity_concurrent \
	"SELECT changed FROM cdp.rebuild_identities()" 0

# one COPY and ten smaller ones give the same partition
partition="SELECT md5(string_agg(members, '|' ORDER BY members)) FROM (
	SELECT string_agg(kind || '=' || value, ',' ORDER BY kind, value) AS members
	FROM cdp.identifiers GROUP BY profile_id) p"
one=$(cdp_psql -d cdp_identity -At -c "$partition")
cdp_expect "ten statements give the partition of one COPY" cdp_identity_parts "$partition" "$one"

# the rebuild gives the same partition and keeps every profile id
cdp_expect "rebuild changes no profile" $db "SELECT changed FROM cdp.rebuild_identities()" 0
cdp_expect "rebuild keeps the partition" $db "$partition" "$one"

# the acquisition view (one window per profile) gives each profile's first
# and last touch as found apart, ties broken by event id
cdp_expect "acquisition: first and last touch of every profile, as found apart" $db "
	WITH touch AS (
		SELECT i.profile_id, e.occurred_at, e.event_id, e.channel, e.properties ->> 'referrer' AS referrer
		FROM cdp.events e
		JOIN cdp.event_anchors a ON a.event_id = e.event_id AND a.occurred_at = e.occurred_at
		JOIN cdp.identifiers i ON i.identifier_id = a.anchor_id
		WHERE e.properties ?| ARRAY['utm_source', 'referrer']),
	first AS (SELECT DISTINCT ON (profile_id) * FROM touch ORDER BY profile_id, occurred_at, event_id),
	last AS (SELECT DISTINCT ON (profile_id) * FROM touch ORDER BY profile_id, occurred_at DESC, event_id DESC),
	counted AS (SELECT profile_id, count(*) AS n FROM touch GROUP BY profile_id),
	expected AS (
		SELECT f.profile_id, f.referrer AS fr, f.channel AS fc, f.occurred_at AS fa,
		       l.referrer AS lr, l.channel AS lc, l.occurred_at AS la, c.n
		FROM first f JOIN last l USING (profile_id) JOIN counted c USING (profile_id))
	SELECT (SELECT count(*) FROM expected) > 100 AND NOT EXISTS (
		SELECT profile_id, fr, fc, fa, lr, lc, la, n FROM expected
		EXCEPT SELECT profile_id, first_referrer, first_channel, first_at, last_referrer, last_channel, last_at, touches
		FROM cdp.profile_acquisition)
	AND (SELECT count(*) FROM expected) = (SELECT count(*) FROM cdp.profile_acquisition)" t

echo "identity_demo: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
