#!/usr/bin/env bash
# No cdp function can be hijacked through the search_path (issue 14), on the
# cluster of test/run.sh (PG* set).  A schema evil holds shadows of the
# pg_catalog functions, aggregates and operators that cdp uses (the function
# names found in src/*.c and src/sql/*.sql; = and || on text, LIKE's ~~ and
# the other operators by name: test/search_path_evil.sql).  Each shadow
# records its call in evil.calls, which anyone can write, raises a WARNING
# and returns the real result.  With search_path = evil, pg_catalog, public:
#  - every function of schema cdp is called once, generated from pg_proc
#    (test/search_path.sql), each in a transaction rolled back;
#  - the paths that run the heavy SQL run and commit: configuration written
#    (offers, policies, funnels, triggers: their check triggers), cdp.track,
#    cdp.ingest, COPY into cdp.events, the loader view, an UPDATE refused,
#    cdp.rebuild_identities, cdp.detect_journey_breaks, cdp.refresh_scores,
#    cdp.sync, cdp.decide, cdp.run_triggers, merges;
# and no shadow ever ran: evil.calls stays empty and no WARNING names one.
# Prints "search_path: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

db=cdp_search_path
dir=$CDP_CLUSTER_DIR/search_path
evil_path="evil, pg_catalog, public"
passed=0
failed=0
mkdir -p "$dir"
chmod 755 "$dir"

q() { cdp_psql -d $db -At -c "SET client_min_messages = warning" "$@"; }

# The names of the functions cdp's sources call: every identifier before a
# parenthesis, kept when pg_catalog has a function of that name.
names=$(cat src/*.c $(ls src/sql/*.sql | grep -v '/cdp--') |
	grep -oE '\b[A-Za-z_][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | tr 'A-Z' 'a-z' | sort -u | paste -sd, -)

contrib/demo/cdp-demo-gen --events 2000 --seed 14 --events-out "$dir/events.csv" 2>/dev/null
chmod 644 "$dir/events.csv"
cdp_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
cdp_psql -d $db -c "ALTER DATABASE $db SET cdp.default_country = 'GB'" >/dev/null
q -c "CREATE EXTENSION cdp" -c "SELECT cdp.ensure_partitions('2025-01-01', '2026-12-31')" >/dev/null
cdp_psql -d $db -v names="$names" -f test/search_path_evil.sql >"$dir/evil.log" 2>&1
q -c "SELECT kind || 's: ' || count(*) FROM evil.shadows GROUP BY kind ORDER BY kind" | sed 's/^/# shadows of /'
for s in "lower(text)" "upper(text)" "btrim(text)" "substr(text,integer,integer)" "now()" "count(*)" \
	"max(bigint)" "min(timestamp with time zone)" "sum(numeric)" "array_agg(bigint)" "jsonb_agg(jsonb)" \
	"jsonb_build_object(VARIADIC a text[])" "format(fmt text, VARIADIC a text[])" "hashtextextended(text,bigint)" \
	"hashint8(bigint)" "nextval(regclass)" "=(text,text)" "||(text,text)" "~~(text,text)"; do
	cdp_tally "$(q -c "SELECT count(*) FROM evil.shadows WHERE shadowed = '$s'" | grep -qx 0 && echo 1 || echo 0)" "evil shadows $s"
done

# the shadows work: one of them, called as cdp's code would be before the fix
got=$(cdp_psql -d $db -At -c "SET search_path = $evil_path" -c "SELECT lower('A') || 'b'" 2>&1 | tr '\n' ' ')
cdp_tally "$(echo "$got" | grep -q 'WARNING:  evil.lower(text) ran' && echo "$got" | grep -q ' ab ' && echo 0 || echo 1)" \
	"a shadow runs when evil comes first, and returns the real result" "$got"
q -c "TRUNCATE evil.calls"

# ---------------------------------------------------------------------------
# The heavy paths, committed, under the planted search_path.  Their own
# arguments are literals (computed beforehand under the normal path): the
# statements call nothing but cdp.
# ---------------------------------------------------------------------------
now=$(q -c "SELECT quote_literal(now()) || '::timestamptz'")
hour_ago=$(q -c "SELECT quote_literal(now() - interval '1 hour') || '::timestamptz'")
tomorrow=$(q -c "SELECT quote_literal(now() + interval '1 day') || '::timestamptz'")
ev() {
	local what=$1 sql=$2 out st=0
	out=$(cdp_psql -d $db -At -c "SET search_path = $evil_path" -c "$sql" 2>&1) || st=1
	echo "$out" >>"$dir/heavy.log"
	if echo "$out" | grep -q 'evil\.'; then st=1; fi
	cdp_tally $st "$what, with evil first on the search_path" "$(echo "$out" | grep -m3 -E 'evil\.|ERROR' | tr '\n' ' ' | cut -c1-300)"
}
: >"$dir/heavy.log"
ev "configuration written (offers, policies, funnels, triggers and their checks)" "
	INSERT INTO cdp.contact_policies (channel, max_contacts, per) VALUES ('email', 3, '7 days'), ('*', 4, '7 days');
	INSERT INTO cdp.offers (offer_id, name, channels, value, payload) VALUES
		('sp_sorry', 'Sorry', '{email}', 5, '{\"code\": \"SORRY\"}'), ('sp_cart', 'Your cart', '{email,web}', 10, '{}');
	INSERT INTO cdp.funnels (funnel_id, steps, conversion_window, abandon_after) VALUES
		('sp_cart', '{add_to_cart,checkout_start,purchase}', '1 hour', '2 seconds');
	INSERT INTO cdp.triggers (trigger_id, on_event, channel, offers, condition) VALUES
		('sp_apology', 'complaint', 'email', '{sp_sorry}', '{\"fact\": \"event\", \"key\": \"severity\", \"gte\": 2}');
	INSERT INTO cdp.triggers (trigger_id, on_break, delay, channel, offers) VALUES
		('sp_cart_reminder', 'sp_cart', '0 seconds', 'email', '{sp_cart}')"
ev "cdp.run_triggers (the first run: where the triggers start)" "SELECT * FROM cdp.run_triggers()"
ev "COPY into cdp.events" "COPY cdp.events (occurred_at, channel, type, identifiers, properties, amount, source)
	FROM '$dir/events.csv' WITH (FORMAT csv, HEADER true)"
ev "cdp.track (a complaint, a cart, a subscription, a retried message id)" "
	SELECT cdp.track($now, 'call_center', 'complaint', '{\"email\": \"Sp-Ann@Acme.fr\", \"phone\": \"07700 900123\"}', '{\"severity\": 3}');
	SELECT cdp.track($hour_ago, 'web', 'add_to_cart', '{\"email\": \"sp-bob@acme.fr\", \"cookie\": \"c-bob\"}', '{\"product_id\": \"P1\", \"cart_value\": 40}');
	SELECT cdp.track($now, 'web', 'subscribe', '{\"email\": \"sp-bob@acme.fr\"}', '{\"channel\": \"email\"}');
	SELECT cdp.track($now, 'web', 'page_view', '{\"cookie\": \"c-bob\"}', NULL, NULL, 'web-sdk', 'sp-m1');
	SELECT cdp.track($now, 'web', 'page_view', '{\"cookie\": \"c-bob\"}', NULL, NULL, 'web-sdk', 'sp-m1')"
ev "cdp.ingest (good, bad and retried events)" "SELECT * FROM cdp.ingest('[
	{\"occurred_at\": \"2025-06-01T10:00:00Z\", \"channel\": \"web\", \"type\": \"page_view\", \"identifiers\": {\"email\": \"SP-CAT@acme.fr\", \"cookie\": \"c-cat\"}},
	{\"occurred_at\": \"2025-06-01T10:01:00Z\", \"channel\": \"nowhere\", \"type\": \"page_view\", \"identifiers\": {\"cookie\": \"c-cat\"}},
	{\"occurred_at\": \"2025-06-01T10:02:00Z\", \"channel\": \"web\", \"type\": \"page_view\", \"identifiers\": {\"cookie\": \"c-cat\"}, \"message_id\": \"sp-m1\"}]')"
ev "the loader view (a good and a malformed row)" "INSERT INTO cdp.event_load (occurred_at, channel, type, identifiers, properties, amount, source)
	VALUES ('2025-06-02 10:00:00+00', 'web', 'page_view', '{\"cookie\": \"c-dan\"}', '{}', NULL, 'loader'),
	       ('not a time', 'web', 'page_view', '{\"cookie\": \"c-dan\"}', '{}', NULL, 'loader')"
ev "an UPDATE of cdp.events refused by its trigger" "DO \$\$ BEGIN UPDATE cdp.events SET type = type;
	EXCEPTION WHEN feature_not_supported THEN NULL; END \$\$"
ev "cdp.rebuild_identities" "SELECT * FROM cdp.rebuild_identities()"
ev "cdp.detect_journey_breaks (first run, then incremental)" "SELECT * FROM cdp.detect_journey_breaks('2025-12-31');
	SELECT * FROM cdp.detect_journey_breaks($tomorrow)"
ev "cdp.refresh_scores" "SELECT * FROM cdp.refresh_scores('2025-12-31')"
ev "cdp.sync" "SELECT * FROM cdp.sync()"
bob=$(q -c "SELECT profile_id FROM cdp.identifiers WHERE kind = 'email' AND value = 'sp-bob@acme.fr'")
ev "cdp.decide" "SELECT * FROM cdp.decide($bob, 'email'); SELECT * FROM cdp.decide($bob)"
contact=$(q -c "SELECT max(contact_id) FROM cdp.contacts")
ev "cdp.record_outcome" "SELECT * FROM cdp.record_outcome(${contact:-0}, 'converted', 10)"
ev "cdp.run_triggers (moments, decisions, the outbox)" "SELECT * FROM cdp.run_triggers(); SELECT * FROM cdp.run_triggers()"
ev "the outbox claimed and settled" "SELECT cdp.mark_delivered(m.message_id, m.attempts) FROM cdp.claim_messages(10) m"
pair=$(q -c "SELECT min(profile_id) || ', ' || max(profile_id) FROM cdp.profiles WHERE merged_into IS NULL")
ev "a merge by hand and its unmerge" "SELECT cdp.unmerge(cdp.merge_profiles($pair, 'sp', force => true), 'sp')"
ev "cdp.sync and cdp.run_triggers after the merge" "SELECT * FROM cdp.sync(); SELECT * FROM cdp.run_triggers()"
cdp_expect "the heavy paths left no call in evil.calls" $db "SELECT count(*) FROM evil.calls" 0
q -c "SELECT '# ' || fn || ': ' || count(*) || ' calls, as in: ' || left(min(query), 150) FROM evil.calls GROUP BY fn ORDER BY 1" | head -30
q -c "CREATE TABLE public.sweep_days AS SELECT * FROM cdp.purchase_days('2025-01-01', '2025-12-31')" -c "ANALYZE" >/dev/null

# ---------------------------------------------------------------------------
# Every function of schema cdp, each in a transaction rolled back.
# ---------------------------------------------------------------------------
q -F $'\t' -f test/search_path.sql >"$dir/calls.tsv"
echo "# $(wc -l <"$dir/calls.tsv") calls of the functions of schema cdp"
awk -F '\t' -v p="$evil_path" '{print "BEGIN; SET LOCAL search_path = " p "; SET LOCAL statement_timeout = '\''20s'\''; " $2 "; ROLLBACK;"}' \
	"$dir/calls.tsv" >"$dir/calls.sql"
"$PGBIN/psql" -X -q -d $db -o /dev/null -f "$dir/calls.sql" >/dev/null 2>"$dir/calls.err" || true
# psql:FILE:LINE: WARNING:  evil.lower(text) ran as ...
awk 'match($0, /^psql:[^:]*:[0-9]+: WARNING:  evil\./) {split($0, a, ":"); print a[3] "\t" substr($0, index($0, "evil."))}' \
	"$dir/calls.err" | sort -t $'\t' -k1,1n -u >"$dir/hijacked"
n_err=$(grep -c 'ERROR:' "$dir/calls.err" || true)
echo "# $n_err calls raised an error (rolled back: what ran before it counts)"
awk -F '\t' 'FILENAME == ARGV[1] {if (!($1 in bad)) bad[$1] = $2; next} {st = (FNR in bad) ? 1 : 0; print st "\t" $1 "\t" bad[FNR]}' \
	"$dir/hijacked" "$dir/calls.tsv" >"$dir/results"
while IFS=$'\t' read -r st fn why; do
	cdp_tally "$st" "$fn runs no planted function" "$why"
done <"$dir/results"
cdp_expect "no shadow recorded a call" $db "SELECT count(*) FROM evil.calls" 0

echo "search_path: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
