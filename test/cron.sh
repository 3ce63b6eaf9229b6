#!/usr/bin/env bash
# pg_cron on the cluster of test/run.sh (PG* set), in the database named by
# cron.database_name (cdp's own clusters set cron.host to their socket
# directory, since they do not listen on localhost):
#  - a job scheduled for every minute really runs and succeeds;
#  - cdp.schedule_jobs registers cdp's 6 jobs, and a second call updates
#    them in place (6 jobs, same ids); its override of cdp-partitions to
#    every minute really runs that job, and cdp.job_status shows the run;
#  - an unknown job and a schedule pg_cron refuses give 22023;
#  - cdp.unschedule_jobs removes them all, and cdp.job_status is then empty;
#  - in a database without pg_cron, cdp.schedule_jobs gives 55000 with the
#    steps to set it up, and cdp.job_status has no rows.
# The checks that need no run go while the jobs wait for the next minute:
# one wait, 80 s at most.  Prints "cron: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

db=$(cdp_psql -d postgres -At -c "SHOW cron.database_name")
nocron=cdp_cron_none
passed=0
failed=0
jobs="'cdp-partitions', 'cdp-scores', 'cdp-journeys', 'cdp-retention', 'cdp-quarantine', 'cdp-outbox'"

# The SQLSTATE and hint a statement raises in database $1 ("none" if it
# succeeds), as "CODE: HINT".
sqlstate() {
	local out
	out=$("$PGBIN/psql" -X -q -d "$1" -v VERBOSITY=verbose -c "$2" 2>&1 >/dev/null) && { echo none; return; }
	printf '%s: %s\n' "$(sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\):.*/\1/p' <<<"$out" | head -1)" \
		"$(sed -n 's/^HINT:  //p' <<<"$out" | head -1)"
}

# Checks that a statement raises the expected SQLSTATE.
expect_state() {
	local what=$1 d=$2 query=$3 want=$4 got st=0
	got=$(sqlstate "$d" "$query")
	[ "${got%%:*}" = "$want" ] || st=1
	cdp_tally $st "$what" "got '$got', expected $want"
}

for d in "$db" $nocron; do
	cdp_psql -d postgres -c "SET client_min_messages = warning" -c "CREATE DATABASE $d" >/dev/null 2>&1 || true
done
cdp_psql -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_cron" \
	-c "CREATE EXTENSION IF NOT EXISTS cdp" -c "SELECT cdp.unschedule_jobs()" >/dev/null
cdp_psql -d $nocron -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS cdp" >/dev/null

# the jobs that run at the next minute: pg_cron's own, and cdp-partitions
job=$(cdp_psql -d "$db" -At -c "SELECT cron.schedule('cdp-test-journeys', '* * * * *', 'SELECT cdp.detect_journey_breaks()')")
first=$(cdp_psql -d "$db" -At -c "SELECT string_agg(job_name || '=' || jobid, ' ' ORDER BY jobid) FROM cdp.schedule_jobs()")
second=$(cdp_psql -d "$db" -At -c "SELECT string_agg(job_name || '=' || jobid, ' ' ORDER BY jobid)
	FROM cdp.schedule_jobs('{\"cdp-partitions\": \"* * * * *\"}')")
st=0
[ "$(wc -w <<<"$first")" -eq 6 ] && [ "$first" = "$second" ] || st=1
cdp_tally $st "cdp.schedule_jobs registers 6 jobs; a second call updates them in place" \
	"first '$first', second '$second'"
cdp_expect "pg_cron holds 6 cdp jobs after two calls, cdp-partitions every minute" "$db" \
	"SELECT count(*) || ' ' || string_agg(schedule, ',') FILTER (WHERE jobname = 'cdp-partitions')
	 FROM cron.job WHERE jobname IN ($jobs)" "6 * * * * *"
cdp_expect "cdp.job_status lists the 6 jobs with their commands" "$db" \
	"SELECT string_agg(job_name, ',' ORDER BY job_name) || ' ' || bool_and(active AND command LIKE '% cdp.%')
	 FROM cdp.job_status" "cdp-journeys,cdp-outbox,cdp-partitions,cdp-quarantine,cdp-retention,cdp-scores true"

expect_state "an unknown job in the overrides gives 22023" "$db" \
	"SELECT cdp.schedule_jobs('{\"cdp-nope\": \"0 1 * * *\"}')" 22023
expect_state "a schedule pg_cron refuses gives 22023" "$db" \
	"SELECT cdp.schedule_jobs('{\"cdp-partitions\": \"* * * * *\", \"cdp-scores\": \"61 * * * *\"}')" 22023
expect_state "a schedule that is not a string gives 22023" "$db" \
	"SELECT cdp.schedule_jobs('{\"cdp-scores\": 5}')" 22023
expect_state "a retention under 2 months gives 22023" "$db" \
	"SELECT cdp.schedule_jobs(retention => '1 month')" 22023
cdp_expect "the refused calls changed no job" "$db" \
	"SELECT count(*) || ' ' || string_agg(schedule, ',' ORDER BY jobname) FROM cron.job WHERE jobname IN ('cdp-partitions', 'cdp-scores')" \
	"2 * * * * *,0 2 * * *"

got=$(sqlstate $nocron "SELECT cdp.schedule_jobs()")
st=0
case $got in "55000: "*"shared_preload_libraries"*"cron.database_name = '$nocron'"*"CREATE EXTENSION pg_cron"*"cdp.default_jobs()"*) ;; *) st=1 ;; esac
cdp_tally $st "without pg_cron in the database, cdp.schedule_jobs gives 55000 and the steps to set it up" "got '$got'"
expect_state "without pg_cron, cdp.unschedule_jobs gives 55000" $nocron "SELECT cdp.unschedule_jobs()" 55000
cdp_expect "without pg_cron, cdp.job_status has no rows" $nocron "SELECT count(*) FROM cdp.job_status" 0

# the one wait: both every-minute jobs have finished a run
status=
part=
deadline=$((SECONDS + 75))
while [ $SECONDS -lt $deadline ]; do
	status=$(cdp_psql -d "$db" -At -c "SELECT status || coalesce(': ' || nullif(return_message, ''), '')
		FROM cron.job_run_details WHERE jobid = $job AND status IN ('succeeded', 'failed') ORDER BY runid LIMIT 1")
	part=$(cdp_psql -d "$db" -At -c "SELECT last_status FROM cdp.job_status
		WHERE job_name = 'cdp-partitions' AND last_status IN ('succeeded', 'failed')")
	[ -n "$status" ] && [ -n "$part" ] && break
	sleep 1
done
cdp_psql -d "$db" -c "SELECT cron.unschedule($job)" >/dev/null
st=0
case $status in succeeded*) ;; *) st=1 ;; esac
cdp_tally $st "a job scheduled with pg_cron runs within a minute and succeeds" "got '${status:-no run}'"
cdp_expect "cdp-partitions, overridden to every minute, ran and succeeded (cdp.job_status)" "$db" \
	"SELECT (runs >= 1 AND failures = 0 AND last_start <= last_end AND last_failure_at IS NULL)
	        || ' ' || last_status || ': ' || last_message
	 FROM cdp.job_status WHERE job_name = 'cdp-partitions'" "true succeeded: 1 row"

cdp_expect "cdp.unschedule_jobs removes the 6 jobs, then none" "$db" \
	"SELECT cdp.unschedule_jobs() || ' ' || cdp.unschedule_jobs()" "6 0"
cdp_expect "after cdp.unschedule_jobs, pg_cron holds no cdp job and cdp.job_status is empty" "$db" \
	"SELECT (SELECT count(*) FROM cron.job WHERE jobname IN ($jobs)) || ' ' || (SELECT count(*) FROM cdp.job_status)" "0 0"

echo "cron: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
