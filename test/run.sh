#!/usr/bin/env bash
# The README's test command: installs what is missing, builds and installs
# cdp, runs the C unit tests of src/core under AddressSanitizer and UBSan,
# starts a throwaway cluster and runs pg_regress and pgTAP (pg_prove) on it.
# Checks that pg_dump keeps user data and that upgrading from the last
# release gives a fresh install. Prints the suites that failed or skipped
# checks (the real-data suites without their data, see CDP_SHARED_DATA), then one
# closing line: "tests: N passed, N failed, N skipped".
#
# SANITIZE=1 bash test/run.sh: cdp.so built with -fsanitize=address,undefined,
# the server started with sanitizer options, and pg_regress, pgTAP and the
# null sweep run on it; any sanitizer report (/tmp/cdp-NAME-sanitizer/) fails.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$CDP_ROOT"

port=${CDP_TEST_PORT:-54330}
cluster=${CDP_TEST_NAME:-test}
passed=0
failed=0
skipped=0
failures=()
skips=()

# Records the outcome of one suite from its counts (passed, failed and
# optionally skipped checks).
tally() {
	local suite=$1 p=$2 f=$3 s=${4:-0}
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	[ "$f" -eq 0 ] || failures+=("$suite")
	[ "$s" -eq 0 ] || skips+=("$suite ($s checks)")
}

# Runs a script whose last line is "NAME: N passed, N failed" or "NAME: N
# passed, N failed, N skipped" and tallies it; a script that fails or prints
# no such line counts one failure at least.
script_suite() {
	local name=$1 script=$2 log=test/$1.log ok p f s
	bash "$script" >"$log" 2>&1 && ok=1 || ok=0
	grep -E '^(ok|not ok|#)' "$log" || tail -20 "$log"
	read -r p f s < <(awk -v n="$name:" '$1 == n {p = $2; f = $4; s = ($7 == "skipped") ? $6 : 0; found = 1}
		END {if (found) print p, f, s; else print 0, 1, 0}' "$log")
	[ "$ok" -eq 1 ] || f=$((f > 0 ? f : 1))
	tally "$name" "$p" "$f" "$s"
}

sanitize=${SANITIZE:-0}
reports=/tmp/cdp-$cluster-sanitizer
if [ "$sanitize" = 1 ]; then
	# The ASan runtime comes in with cdp.so (its DT_NEEDED), loaded by the
	# postmaster through shared_preload_libraries before any fork: preloading
	# it with LD_PRELOAD hangs postgres at start (glibc's bindtextdomain lock,
	# Debian 12), hence verify_asan_link_order=0. PostgreSQL keeps memory
	# until exit (detect_leaks=0). Reports go to files read afterwards: a
	# server process that aborts on one shows up in the suites, the file
	# says why.
	rm -rf "$reports"
	mkdir -p "$reports"
	chmod 777 "$reports"
	CDP_SERVER_ENV="ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path=$reports/asan
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
	export CDP_SERVER_ENV
fi

cdp_setup
make -s demo-gen
trap 'cdp_stop_cluster "$cluster"' EXIT

if [ "$sanitize" != 1 ]; then
	echo "== C unit tests (src/core): each test compiled with the core under AddressSanitizer and UBSan"
	echo "   (about 15 s per test when sources changed), then all run"
	make -s unit 2>&1 | tee test/unit/build.log && unit_ok=1 || unit_ok=0
	read -r p f s < <(awk '/^[a-z_]+: [0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$/ {p += $2; f += $4; s += $6}
		END {print p+0, f+0, s+0}' test/unit/build.log)
	[ "$unit_ok" -eq 1 ] || f=$((f + 1))
	tally unit "$p" "$f" "$s"
fi

echo "== starting a throwaway cluster on port $port"
cdp_start_cluster "$cluster" "$port" "fsync = off" "synchronous_commit = off" "full_page_writes = off"

echo "== pg_regress"
make -s installcheck >test/regress.log 2>&1 && regress_ok=1 || regress_ok=0
cat test/regress.log
p=$(grep -cE '^(ok|test) .* ok ' test/regress.log || true)
f=$(grep -cE 'FAILED|failed \(ignored\)' test/regress.log || true)
[ "$regress_ok" -eq 1 ] || { f=$((f > 0 ? f : 1)); [ -f regression.diffs ] && head -300 regression.diffs; }
tally regress "$p" "$f"

echo "== pgTAP"
cdp_psql -d postgres -c "DROP DATABASE IF EXISTS cdp_tap" -c "CREATE DATABASE cdp_tap"
cdp_psql -d cdp_tap -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION cdp"
if pg_prove -d cdp_tap --ext .sql test/pgtap/ >test/pgtap.log 2>&1; then ok=1; else ok=0; fi
cat test/pgtap.log
t=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' test/pgtap.log)
f=$(awk '/^Failed [0-9]+\/[0-9]+ subtests/ {split($2, a, "/"); n += a[1]} END {print n + 0}' test/pgtap.log)
[ "$ok" -eq 1 ] || [ "$f" -gt 0 ] || f=1
tally pgtap $(( ${t:-0} - f > 0 ? ${t:-0} - f : 0 )) "$f"

echo "== NULL, empty and extreme arguments to every function (generated from pg_proc)"
script_suite null_sweep test/null_sweep.sh

echo "== search_path: planted built-ins never run by any cdp function (generated from pg_proc)"
script_suite search_path test/search_path.sh

if [ "$sanitize" = 1 ]; then
	echo "== sanitizer reports"
	cdp_stop_cluster "$cluster"
	n=0
	for r in "$reports"/*; do
		[ -s "$r" ] || continue
		n=$((n + 1))
		echo "# $r:"
		head -40 "$r"
	done
	n=$((n + $(grep -cE 'AddressSanitizer|runtime error:' "$CDP_CLUSTER_DIR/server.log" || true)))
	if [ "$n" -eq 0 ]; then echo "ok - no AddressSanitizer or UBSan report"; tally sanitizer 1 0
	else echo "not ok - $n sanitizer reports"; tally sanitizer 0 1; fi
	echo
	if [ ${#failures[@]} -gt 0 ]; then echo "failed suites: ${failures[*]}"; fi
	echo "tests: $passed passed, $failed failed, $skipped skipped"
	[ "$failed" -eq 0 ]
	exit
fi

echo "== roles: each cdp role does its work and is refused the rest"
script_suite roles test/roles.sh

echo "== pg_dump and restore"
script_suite dump_restore test/dump_restore.sh

echo "== identity resolution on the demo retailer"
script_suite identity_demo test/identity_demo.sh

echo "== pg_cron runs scheduled jobs"
script_suite cron test/cron.sh

echo "== the profile store is exact"
script_suite profile_store test/profile_store.sh

echo "== the background worker keeps the profile store and journeys current"
script_suite worker test/worker.sh

echo "== triggers fired by the worker: the outbox, exactly once, senders"
script_suite triggers test/triggers.sh

echo "== offers: caps and budgets under concurrency, learning"
script_suite offers test/offers.sh

echo "== offers evaluated offline on real logged recommendations (Open Bandit)"
script_suite offers_obd test/offers_obd.sh

echo "== retries under concurrency (message ids)"
script_suite retries test/retries.sh

echo "== journeys on real data (Taobao sample)"
script_suite journeys_real test/journeys_real.sh

echo "== lifetime-value models on the real CDNOW data"
script_suite scoring_cdnow test/scoring_cdnow.sh

echo "== lifetime value on the real Online Retail invoices"
script_suite scoring_retail test/scoring_retail.sh

echo "== upgrade from the last release"
script_suite upgrade test/upgrade.sh

echo
if [ ${#failures[@]} -gt 0 ]; then echo "failed suites: ${failures[*]}"; fi
if [ ${#skips[@]} -gt 0 ]; then
	echo "skipped suites: $(printf '%s, ' "${skips[@]}" | sed 's/, $//'): see their SKIP lines above"
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
