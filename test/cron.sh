#!/usr/bin/env bash
# pg_cron on the cluster of test/run.sh (PG* set): a job scheduled for every
# minute in the database named by cron.database_name really runs and
# succeeds (cdp's own clusters set cron.host to their socket directory, since
# they do not listen on localhost).  Waits for the next minute at most.
# Prints "cron: N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

db=$(cdp_psql -d postgres -At -c "SHOW cron.database_name")
passed=0
failed=0
cdp_psql -d postgres -c "SET client_min_messages = warning" -c "CREATE DATABASE $db" >/dev/null 2>&1 || true
cdp_psql -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_cron" \
	-c "CREATE EXTENSION IF NOT EXISTS cdp" >/dev/null
job=$(cdp_psql -d "$db" -At -c "SELECT cron.schedule('cdp-test-journeys', '* * * * *', 'SELECT cdp.detect_journey_breaks()')")
status=
for _ in $(seq 1 80); do
	status=$(cdp_psql -d "$db" -At -c "SELECT status || coalesce(': ' || nullif(return_message, ''), '')
		FROM cron.job_run_details WHERE jobid = $job AND status IN ('succeeded', 'failed') ORDER BY runid LIMIT 1")
	[ -n "$status" ] && break
	sleep 1
done
cdp_psql -d "$db" -c "SELECT cron.unschedule($job)" >/dev/null
st=0
case $status in succeeded*) ;; *) st=1 ;; esac
cdp_tally $st "a job scheduled with pg_cron runs within a minute and succeeds" "got '${status:-no run}'"
echo "cron: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
