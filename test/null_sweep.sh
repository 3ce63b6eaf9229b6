#!/usr/bin/env bash
# NULL, empty and extreme arguments to every function of schema cdp, on the
# cluster of test/run.sh (PG* set). The calls are generated from pg_proc: for
# each function (aggregates and window functions included) and each argument
# position, the argument is NULL, then each empty value of its type ('', '{}',
# '[]', empty arrays, zero), then each extreme value (huge and negative
# numbers, NaN, infinite times, a 1 MB string, JSON nested 10,000 deep...),
# with typical values elsewhere. Each call runs in a transaction that is rolled
# back, on a database holding demo events, journeys, scores and a merge. A call
# may raise an error, but never crash the backend (the server log and the
# checkpointer's pid are checked), never raise an internal error (class XX)
# and never run past the statement timeout. Trigger functions are skipped (they
# cannot be called directly; the data load fires them) and functions of type
# internal are exercised through their aggregates.
# Also checks that every C function of schema cdp is STRICT or is listed below
# as checking its NULLs (the sweep then verifies it does).
# Prints "null_sweep: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

db=cdp_sweep
dir=$CDP_CLUSTER_DIR/null_sweep
timeout=${CDP_SWEEP_TIMEOUT:-10s}
passed=0
failed=0
mkdir -p "$dir"
chmod 755 "$dir"

# C functions that are not STRICT because they give NULL arguments a meaning
# (or are trigger functions, called by the trigger manager only).
null_checking="cdp.accept_event(bigint,timestamp with time zone,text,text,jsonb,jsonb,numeric,text,text)
cdp.check_eligibility(jsonb)
cdp.eligible(jsonb,jsonb)
cdp.rank_offers(jsonb,bigint,integer,jsonb[],text[],boolean[],double precision[],double precision[],double precision[],double precision[])
cdp.bgnbd_fit_final(internal)
cdp.btyd_accum2(internal,double precision,double precision)
cdp.btyd_accum3(internal,double precision,double precision,double precision)
cdp.btyd_combine(internal,internal)
cdp.check_event(timestamp with time zone,text,text,jsonb,jsonb,numeric,text)
cdp.config_changed()
cdp.detect_journey_breaks(timestamp with time zone,boolean)
cdp.event_load_row()
cdp.events_after_insert()
cdp.events_deleted()
cdp.funnel_journeys_combine(internal,internal)
cdp.funnel_journeys_final(internal)
cdp.funnel_journeys_trans(internal,text,text,timestamp with time zone,text,bigint,timestamp with time zone)
cdp.gamma_gamma_fit_final(internal)
cdp.journeys(text,timestamp with time zone,timestamp with time zone,timestamp with time zone,bigint[])
cdp.nbd_fit_final(internal)
cdp.normalize_phone(text,text)
cdp.pareto_nbd_fit_final(internal)
cdp.rebuild_identities()
cdp.session_no(timestamp with time zone,bigint)
cdp.session_no(timestamp with time zone,bigint,interval)
cdp.sync(bigint)
cdp.track(timestamp with time zone,text,text,jsonb,jsonb,numeric,text,text)
cdp.unmerge(bigint,text)"

# The pid of the checkpointer: a crash of any backend restarts it.
checkpointer() {
	cdp_psql -d postgres -At -c "SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = 'checkpointer'"
}

# Waits until the server accepts connections again (after a crash).
wait_server() {
	local i
	for i in $(seq 1 60); do
		"$PGBIN/pg_isready" -q -d postgres && return 0
		sleep 1
	done
	return 1
}

# a database with data: demo events, journeys, scores, a merge by hand
contrib/demo/cdp-demo-gen --events 3000 --seed 11 --events-out "$dir/events.csv" 2>/dev/null
chmod 644 "$dir/events.csv"
cdp_psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
cdp_psql -d $db -c "ALTER DATABASE $db SET cdp.default_country = 'GB'" >/dev/null
cdp_psql -d $db -c "SET client_min_messages = error" -c "CREATE EXTENSION cdp" \
	-c "SELECT cdp.ensure_partitions('2025-01-01', '2025-12-31')" \
	-c "COPY cdp.events (occurred_at, channel, type, identifiers, properties, amount, source) FROM '$dir/events.csv' WITH (FORMAT csv, HEADER true)" \
	-c "SELECT cdp.detect_journey_breaks('2025-12-31')" \
	-c "SELECT cdp.refresh_scores('2025-12-31')" \
	-c "SELECT cdp.merge_profiles(min(profile_id), max(profile_id), 'sweep', force => true) FROM cdp.profiles WHERE merged_into IS NULL" \
	-c "CREATE TABLE public.sweep_days AS SELECT * FROM cdp.purchase_days('2025-01-01', '2025-12-31')" \
	-c "ANALYZE" >/dev/null

fingerprint="SELECT (SELECT count(*) FROM cdp.events) || ' ' || (SELECT count(*) FROM cdp.profiles)
	|| ' ' || (SELECT count(*) FROM cdp.profile_merges) || ' ' || (SELECT count(*) FROM cdp.journey_breaks)
	|| ' ' || (SELECT count(*) FROM cdp.rfm) || ' ' || (SELECT count(*) FROM cdp.event_partitions)"
before=$(cdp_psql -d $db -At -c "$fingerprint")

# the strictness contract of the C functions
stale=$(cdp_psql -d $db -At -c "SELECT p.oid::pg_catalog.regprocedure FROM pg_catalog.pg_proc p
	JOIN pg_catalog.pg_language l ON l.oid = p.prolang
	WHERE p.pronamespace = 'cdp'::pg_catalog.regnamespace AND l.lanname = 'c' AND NOT p.proisstrict" |
	sort | comm -3 - <(echo "$null_checking" | sort))
[ -z "$stale" ] || echo "$stale" | sed 's/^/# not STRICT and not listed, or listed and STRICT: /'
cdp_tally "$([ -z "$stale" ] && echo 0 || echo 1)" "every C function of cdp is STRICT or listed as checking its NULLs"

# the calls: one line each, "function<TAB>what<TAB>statement"
cdp_psql -d $db -At -F $'\t' -f test/null_sweep.sql >"$dir/calls.tsv"
cut -f1 "$dir/calls.tsv" | sort -u >"$dir/functions"
cdp_psql -d $db -At -c "SELECT '# skipped (trigger function, fired by the data load): ' || p.oid::pg_catalog.regprocedure
	FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'cdp'::pg_catalog.regnamespace
	AND p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype ORDER BY 1"
cdp_psql -d $db -At -c "SELECT '# through its aggregate: ' || p.oid::pg_catalog.regprocedure
	FROM pg_catalog.pg_proc p WHERE p.pronamespace = 'cdp'::pg_catalog.regnamespace
	AND 'pg_catalog.internal'::pg_catalog.regtype = ANY (p.proargtypes) ORDER BY 1"
echo "# $(wc -l <"$dir/calls.tsv") calls of $(wc -l <"$dir/functions") functions"

# runs the statements from line $1 on; prints the errors with their line
awk -F '\t' -v t="$timeout" '{print "BEGIN; SET LOCAL statement_timeout = '\''" t "'\''; " $3 "; ROLLBACK;"}' \
	"$dir/calls.tsv" >"$dir/calls.sql"
: >"$dir/errors"
log_start=$(wc -c <"$CDP_CLUSTER_DIR/server.log")
ckpt=$(checkpointer)
crashes=()
start=1
total=$(wc -l <"$dir/calls.sql")
while [ "$start" -le "$total" ]; do
	tail -n +"$start" "$dir/calls.sql" |
		"$PGBIN/psql" -X -q -d $db -v VERBOSITY=verbose -o /dev/null -f - 2>&1 >/dev/null |
		awk -v off=$((start - 1)) 'match($0, /^psql:<stdin>:[0-9]+: /) {
			split(substr($0, 7), a, ":"); print a[2] + off "\t" substr($0, RLENGTH + 1) }' >"$dir/part" || true
	cat "$dir/part" >>"$dir/errors"
	crash=$(awk -F '\t' '$2 ~ /server closed the connection|connection to server was lost|terminating connection because of crash/ {print $1; exit}' "$dir/part")
	[ -n "$crash" ] || break
	crashes+=("$crash")
	wait_server || { echo "not ok - the server came back after a crash"; failed=$((failed + 1)); break; }
	ckpt=$(checkpointer)
	start=$((crash + 1))
done

# one test per function: no crash, no internal error, no time-out
declare -A bad=()
for l in "${crashes[@]}"; do
	bad[$l]="crashed the backend"
done
while IFS=$'\t' read -r l msg; do
	case "$msg" in
	*"ERROR:  XX"* | *"ERROR:  57014:"* | *"ERROR:  42883:"* | *"ERROR:  42725:"*) bad[$l]=$msg ;;
	esac
done <"$dir/errors"
while read -r fn; do
	n=0
	nbad=0
	while IFS=$'\t' read -r l what; do
		n=$((n + 1))
		if [ -n "${bad[$l]:-}" ]; then
			nbad=$((nbad + 1))
			echo "# $what: ${bad[$l]}" | cut -c1-300
		fi
	done < <(awk -F '\t' -v f="$fn" '$1 == f {print NR "\t" $2}' "$dir/calls.tsv")
	cdp_tally "$nbad" "$fn: $n calls, no crash, internal error or time-out"
done <"$dir/functions"

# the server itself: no backend died, it never restarted
died=$(tail -c +$((log_start + 1)) "$CDP_CLUSTER_DIR/server.log" |
	grep -cE 'terminated by signal|terminated by exception|all server processes terminated' || true)
cdp_tally "$died" "the server log shows no backend killed during the sweep ($died)"
cdp_tally "$([ "$(checkpointer)" = "$ckpt" ] && [ ${#crashes[@]} -eq 0 ] && echo 0 || echo 1)" \
	"the server never restarted (checkpointer pid unchanged)"
cdp_tally "$([ "$(cdp_psql -d $db -At -c "$fingerprint")" = "$before" ] && echo 0 || echo 1)" \
	"the rolled-back calls left the data as it was"

echo "null_sweep: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
