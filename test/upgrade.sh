#!/usr/bin/env bash
# Upgrading: a database made with the last release (CREATE EXTENSION cdp
# VERSION '0.1.0', the frozen src/sql/cdp--0.1.0.sql) is loaded through
# every entry point (COPY, INSERT, cdp.track, the loader view, cdp.ingest, a
# rejected row, stitching, a merge by hand, journey detection, scores, a
# channel of the user's) by this release's library, then
# brought up to date with ALTER EXTENSION cdp UPDATE:
#  - every user row of every cdp table is as before (each table checked on
#    the columns it had; in configuration tables the rows pg_dump keeps, as
#    rows shipped with cdp may change), and no sequence went back;
#  - stitching, merges, rejection, detection and scoring still work;
#  - the upgraded schema equals a fresh CREATE EXTENSION cdp, object by
#    object (test/upgrade_schema.sql), on an empty database and on the
#    loaded one; a difference is printed as a diff naming the object;
#  - the comparison itself sees a column, an index, a volatility and a
#    comment changed on a copy of the fresh database.
# Runs on the cluster of test/run.sh (PG* set).  Prints "upgrade: N passed,
# N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

from=0.1.0
to=$(sed -n "s/^default_version = '\(.*\)'/\1/p" cdp.control)
db=cdp_upgrade
empty=cdp_upgrade_empty
fresh=cdp_upgrade_fresh
fresh_parts=cdp_upgrade_fresh_parts
altered=cdp_upgrade_altered
dir=$CDP_CLUSTER_DIR/upgrade
passed=0
failed=0
mkdir -p "$dir"

# Checks a query of the loaded database (see cdp_expect in test/lib.sh).
expect() { cdp_expect "$1" "$db" "$2" "$3"; }

# Succeeds when two files are equal, else prints their diff.
same_file() {
	diff "$1" "$2" >"$dir/diff" && return 0
	sed 's/^/#   /' "$dir/diff" | head -60
	return 1
}

# Succeeds when two strings are equal, else prints both.
same_text() {
	[ "$1" = "$2" ] && return 0
	echo "#   got:      $1"
	echo "#   expected: $2"
	return 1
}

for d in $db $empty $fresh $fresh_parts $altered; do
	cdp_psql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $d"
done
for d in $db $empty $fresh $fresh_parts; do
	cdp_psql -d postgres -c "CREATE DATABASE $d" >/dev/null
done

# (a) the last release, loaded through every entry point
cdp_psql -d $db <<SQL >/dev/null
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION cdp VERSION '$from';
SELECT cdp.ensure_partitions('2025-01-01', '2025-12-31');
-- COPY: a visitor who views and leaves a cart, a bad channel set aside
COPY cdp.events (occurred_at, channel, type, identifiers, properties, amount, source) FROM STDIN WITH (FORMAT csv);
2025-03-01 10:00:00+00,web,product_view,"{""cookie"": ""c1""}","{""product_id"": ""p1""}",,copy
2025-03-01 10:05:00+00,web,add_to_cart,"{""cookie"": ""c1""}","{""product_id"": ""p1""}",,copy
2025-03-01 10:07:00+00,web,login,"{""cookie"": ""c1"", ""email"": ""Ann.Lee@Mailbox.org""}",{},,copy
2025-03-02 09:00:00+00,fax,product_view,"{""cookie"": ""c1""}",{},,copy
2025-03-03 12:00:00+00,web,product_view,"{""cookie"": ""c2""}","{""product_id"": ""p2""}",,copy
2025-03-03 12:01:00+00,web,add_to_cart,"{""cookie"": ""c2""}","{""product_id"": ""p2""}",,copy
\.
-- a channel of the user's, and an event on it
INSERT INTO cdp.channels VALUES ('kiosk', false, 'In-store kiosk');
INSERT INTO cdp.events (occurred_at, channel, type, identifiers) VALUES ('2025-03-04 11:00+00', 'kiosk', 'store_visit', '{"loyalty_card": "L9"}');
-- INSERT: the same person in a store, by e-mail and loyalty card
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties, amount, source) VALUES
	('2025-03-05 15:00+00', 'store', 'purchase', '{"email": "ann.lee@mailbox.org", "loyalty_card": "L1"}', '{"product_id": "p1"}', 49.90, 'pos'),
	('2025-03-06 15:00+00', 'store', 'store_visit', '{"loyalty_card": "L2"}', '{}', NULL, 'pos');
-- cdp.track: one event at a time
SELECT cdp.track('2025-03-07 08:00+00', 'app', 'product_view', '{"device_id": "d3"}', '{"product_id": "p3"}');
-- the loader view and cdp.ingest: a visitor who logs in on the app later
INSERT INTO cdp.event_load (occurred_at, channel, type, identifiers, source)
VALUES ('2025-03-08 10:00+00', 'web', 'product_view', '{"cookie": "c8", "device_id": "d8"}', 'loader');
SELECT * FROM cdp.ingest('[{"occurred_at": "2025-03-08 11:00+00", "channel": "app", "type": "login",
                            "identifiers": {"device_id": "d8", "email": "dee.roe@mailbox.org"}}]');
-- a cohort of 1,000 buyers for the scores: customer g first buys t days
-- before the end of 2025, then every iv days until day d
INSERT INTO cdp.events (occurred_at, channel, type, identifiers, properties, amount, source)
SELECT '2025-12-31 12:00+00'::timestamptz - (t - k * iv) * interval '1 day', 'web', 'purchase',
       jsonb_build_object('customer_id', 'C' || g), '{}', 5 + (g * 7919) % 97, 'cohort'
FROM (SELECT g, 5 + (g * 37) % 60 AS iv, 200 + g % 165 AS t, (g * 7919) % 400 AS d
      FROM generate_series(1, 1000) g) c, generate_series(0, 80) k
WHERE k * iv <= least(d, t);
-- a merge by hand: the loyalty card L2 and the device d3 are one person
SELECT cdp.merge_profiles(cdp.resolve('loyalty_card', 'L2'), cdp.resolve('device_id', 'd3'), 'same household', force => true);
SELECT cdp.detect_journey_breaks('2025-03-10 00:00+00');
SELECT cdp.refresh_scores('2026-01-01 00:00+00');
-- what the check after the upgrade needs: each table's columns, the rows
-- that are the user's (those pg_dump keeps: rows shipped with cdp may change
-- with a release, and are compared with a fresh install below), their count
-- and checksum; each sequence's position
CREATE TABLE public.upgrade_before AS
SELECT c.oid::regclass::text AS tbl, c.relkind::text AS relkind,
       array_agg(quote_ident(a.attname) ORDER BY a.attnum) FILTER (WHERE a.attnum > 0) AS cols,
       coalesce((SELECT x.cond FROM pg_extension e, unnest(e.extconfig, e.extcondition) x(relid, cond)
                 WHERE e.extname = 'cdp' AND x.relid = c.oid), '') AS cond
FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relnamespace = 'cdp'::regnamespace AND c.relkind IN ('r', 'S')
GROUP BY c.oid;
CREATE FUNCTION public.upgrade_fingerprint(tbl text, relkind text, cols text[], cond text) RETURNS text
LANGUAGE plpgsql AS \$\$
DECLARE
	result text;
BEGIN
	IF relkind = 'S' THEN
		EXECUTE format('SELECT last_value FROM %s', tbl) INTO result;
	ELSE
		EXECUTE format('SELECT count(*) || '' rows, md5 '' || md5(coalesce(string_agg(r, E''\n'' ORDER BY r), ''''))
		                FROM (SELECT ROW(%s)::text AS r FROM ONLY %s %s) x', array_to_string(cols, ', '), tbl, cond) INTO result;
	END IF;
	RETURN result;
EXCEPTION WHEN OTHERS THEN
	RETURN 'error: ' || SQLERRM;
END
\$\$;
ALTER TABLE public.upgrade_before ADD before text;
UPDATE public.upgrade_before SET before = public.upgrade_fingerprint(tbl, relkind, cols, cond);
SQL

expect "the database starts at $from" "SELECT extversion FROM pg_extension WHERE extname = 'cdp'" "$from"
expect "loaded under $from: events, rejected, live profiles, merges by hand, breaks, scored" \
	"SELECT (SELECT count(*) FROM cdp.events) || '/' || (SELECT count(*) FROM cdp.rejected_events) || '/' ||
	        (SELECT count(*) FROM cdp.profiles WHERE merged_into IS NULL) || '/' ||
	        (SELECT count(*) FROM cdp.profile_merges WHERE method = 'hand') || '/' ||
	        (SELECT count(*) FROM cdp.journey_breaks) || '/' || (SELECT count(*) FROM cdp.rfm)" \
	"$(cdp_psql -d $db -At -c "SELECT 11 + count(*) FROM cdp.events WHERE source = 'cohort'")/1/1005/1/6/1001"
expect "under $from every stored event is stitched, through the loader view and cdp.ingest too" \
	"SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT FROM cdp.event_anchors a WHERE a.event_id = e.event_id))
	        || ' ' || (cdp.resolve('cookie', 'c8') = cdp.resolve('email', 'dee.roe@mailbox.org'))
	 FROM cdp.events e" "0 true"

cdp_psql -d $db -c "SET client_min_messages = warning" -c "ALTER EXTENSION cdp UPDATE" >/dev/null
expect "ALTER EXTENSION cdp UPDATE brings it to $to" "SELECT extversion FROM pg_extension WHERE extname = 'cdp'" "$to"

# every table's user rows as before, on the columns it had; no sequence back
cdp_psql -d $db -At -F ' ' -c "SELECT tbl, before FROM public.upgrade_before WHERE relkind = 'r' ORDER BY 1" >"$dir/before.txt"
cdp_psql -d $db -At -F ' ' -c "SELECT tbl, public.upgrade_fingerprint(tbl, relkind, cols, cond) FROM public.upgrade_before
	WHERE relkind = 'r' ORDER BY 1" >"$dir/after.txt"
ntables=$(wc -l <"$dir/before.txt")
cdp_check "every user row of the $ntables cdp tables is intact (before <, after >)" \
	same_file "$dir/before.txt" "$dir/after.txt"
expect "no sequence went back" \
	"SELECT string_agg(tbl || ' ' || before || ' -> ' || after, ', ') FROM (SELECT tbl, before,
	        public.upgrade_fingerprint(tbl, relkind, cols, cond) AS after FROM public.upgrade_before WHERE relkind = 'S') s
	 WHERE CASE WHEN after ~ '^[0-9]+\$' THEN after::bigint < before::bigint ELSE true END" ""
cdp_check "the checksums cover a channel added by the user, the events, the identity graph, the breaks and the scores" \
	same_text "$(grep -oE '^cdp\.(channels|events_202503|rejected_events|identifiers|identity_links|profile_merges|journey_breaks|rfm|clv) [1-9][0-9]* rows' "$dir/before.txt" | cut -d' ' -f1 | paste -sd ' ')" \
	"cdp.channels cdp.clv cdp.events_202503 cdp.identifiers cdp.identity_links cdp.journey_breaks cdp.profile_merges cdp.rejected_events cdp.rfm"

# behaviour after the upgrade
expect "a cookie seen before the upgrade still resolves to its e-mail's profile" \
	"SELECT cdp.resolve('cookie', 'c1') = cdp.resolve('email', 'ann.lee@mailbox.org')" t
cdp_psql -d $db -c "SET client_min_messages = warning" \
	-c "SELECT cdp.track('2025-03-12 09:00+00', 'app', 'login', '{\"device_id\": \"d9\", \"loyalty_card\": \"L1\"}')" >/dev/null
expect "a new event is stitched to the profile made before the upgrade" \
	"SELECT cdp.resolve('device_id', 'd9') = cdp.resolve('email', 'ann.lee@mailbox.org')" t
expect "the merge by hand made before the upgrade holds" \
	"SELECT cdp.resolve('loyalty_card', 'L2') = cdp.resolve('device_id', 'd3')" t
cdp_psql -d $db -c "SET client_min_messages = warning" \
	-c "SELECT cdp.track('2025-03-13 10:00+00', 'web', 'product_view', '{\"cookie\": \"c7\"}', '{\"product_id\": \"p7\"}')" \
	-c "SELECT cdp.track('2025-03-13 10:02+00', 'web', 'add_to_cart', '{\"cookie\": \"c7\"}', '{\"product_id\": \"p7\"}')" >/dev/null
expect "detection after the upgrade is incremental" \
	"SELECT mode FROM cdp.detect_journey_breaks('2025-03-15 00:00+00')" incremental
expect "and finds the new cart left behind" \
	"SELECT status FROM cdp.journey_breaks WHERE profile_id = cdp.resolve('cookie', 'c7') AND funnel_id = 'cart'" open
cdp_psql -d $db -c "CREATE TABLE public.breaks_incremental AS SELECT * FROM cdp.journey_breaks" \
	-c "SELECT cdp.detect_journey_breaks('2025-03-15 00:00+00', rebuild => true)" >/dev/null
expect "the breaks kept across the upgrade equal a rebuild" \
	"SELECT count(*) FROM ((TABLE public.breaks_incremental EXCEPT TABLE cdp.journey_breaks)
	 UNION ALL (TABLE cdp.journey_breaks EXCEPT TABLE public.breaks_incremental)) x" 0
expect "scores after the upgrade: RFM for every buyer, a lifetime-value model fitted" \
	"SELECT rfm_profiles || ' ' || (clv_profiles > 0) FROM cdp.refresh_scores('2026-01-01 00:00+00')" \
	"1001 true"
expect "a bad event is still set aside" \
	"INSERT INTO cdp.events (occurred_at, channel, type, identifiers) VALUES ('2025-03-12', 'fax', 'x', '{\"cookie\": \"c1\"}');
	 SELECT count(*) FROM cdp.rejected_events WHERE reason_code = 'unknown_channel'" 2
expect "the update marks the store of a database with events for a rebuild; cdp.sync builds it" \
	"SELECT (SELECT needs_full FROM cdp.profile_store_progress) AND (SELECT rebuilt FROM cdp.sync())
	        AND (SELECT events > 0 FROM cdp.profile('email', 'ann.lee@mailbox.org'))" t
expect "the single customer view reads the upgraded profile" \
	"SELECT count(*) FROM cdp.customer_360 WHERE profile_id = cdp.resolve('email', 'ann.lee@mailbox.org')" 1

# (b) the upgraded schema against a fresh install, object by object
cdp_psql -d $empty -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp VERSION '$from'" \
	-c "SELECT cdp.ensure_partitions('2025-01-01', '2025-02-28')" -c "ALTER EXTENSION cdp UPDATE" >/dev/null
cdp_psql -d $fresh -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp" \
	-c "SELECT cdp.ensure_partitions('2025-01-01', '2025-02-28')" >/dev/null
cdp_psql -d $fresh_parts -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp" \
	-c "SELECT cdp.ensure_partitions('2025-01-01', '2025-12-31')" >/dev/null
for d in $db $empty $fresh $fresh_parts; do
	cdp_psql -d $d -At -f test/upgrade_schema.sql >"$dir/$d.txt"
done

# Compares one category of two descriptions; prints the diff, "<" lines
# from the upgraded database, ">" lines from the fresh one.
same_category() {
	local a=$1 b=$2 category=$3
	diff <(grep -P "^$category\t" "$dir/$a.txt" | cut -f2-) <(grep -P "^$category\t" "$dir/$b.txt" | cut -f2-) \
		>"$dir/diff" && return 0
	echo "# $category differ ($a <, $b >):"
	sed 's/^/#   /' "$dir/diff" | head -60
	return 1
}
categories="schema tables columns constraints indexes views sequences functions triggers types policies members config_dump"
for category in $categories data; do
	cdp_check "upgraded equals fresh: $category ($(grep -cP "^$category\t" "$dir/$fresh.txt") lines)" \
		same_category $empty $fresh $category
done
for category in $categories; do
	cdp_check "upgraded with data equals fresh: $category" same_category $db $fresh_parts $category
done

# the comparison sees what changed, and names it
cdp_psql -d postgres -c "CREATE DATABASE $altered TEMPLATE $fresh" >/dev/null
cdp_psql -d $altered -c "SET client_min_messages = warning" \
	-c "ALTER TABLE cdp.clv ADD COLUMN note text" \
	-c "DROP INDEX cdp.rfm_segment_idx" \
	-c "ALTER FUNCTION cdp.normalize_email(text) STABLE" \
	-c "COMMENT ON FUNCTION cdp.resolve(text, text) IS 'changed'" >/dev/null
cdp_psql -d $altered -At -f test/upgrade_schema.sql >"$dir/$altered.txt"
named=$(diff "$dir/$fresh.txt" "$dir/$altered.txt" | sed -n 's/^[<>] [a-z_]*\t\([^:]*\):.*/\1/p' | sort -u | paste -sd ';' || true)
want="column cdp.clv.note;function cdp.normalize_email(email text);function cdp.resolve(kind text, value text);index cdp.rfm_segment_idx"
cdp_check "the comparison names each changed object (a column, an index, a volatility, a comment)" \
	same_text "$named" "$want"

echo "upgrade: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
