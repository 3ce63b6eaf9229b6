# test/lib.sh: set-up shared by the README's two commands (contrib/demo/demo.sh
# and test/run.sh) and the benchmarks. Source it; it defines functions only.
#
#   cdp_setup                 install missing Debian packages, build, install
#   cdp_start_cluster NAME PORT [conf lines...]
#                             throwaway cluster in /tmp/cdp-NAME (data, socket,
#                             log), run by an unprivileged account, with
#                             shared_preload_libraries = 'pg_cron,cdp' and the
#                             VAR=value words of $CDP_SERVER_ENV in its
#                             environment;
#                             exports PGHOST PGPORT PGUSER PGDATABASE=cdp
#   cdp_stop_cluster NAME     stop it (data directory kept until next start)
#   cdp_psql ...              psql on that cluster, stopping on the first error
#   cdp_bench_start, cdp_thin_events, cdp_set_worker, cdp_ratio
#                             for the benchmarks (below)
#
# CDP_PG_ROOT=DIR makes everything use a private copy of the PostgreSQL
# installation under DIR (made on first use; PostgreSQL finds its files
# relative to its binaries), so that several work trees can build, install
# and test at once; give each its own CDP_TEST_NAME and CDP_TEST_PORT too.

CDP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
if [ -n "${CDP_PG_ROOT:-}" ]; then
	PGBIN=$CDP_PG_ROOT/usr/lib/postgresql/15/bin
fi
export PG_CONFIG=$PGBIN/pg_config
CDP_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl make gcc)

# Runs a command as root: directly when root, else through sudo.
cdp_as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The account that runs the server: PostgreSQL refuses to run as root.
cdp_server_user() {
	if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# Runs a command as the server account.
cdp_as_server() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Installs the Debian packages that are missing.
cdp_install_packages() {
	local p missing=()
	for p in "${CDP_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
		echo "error: packages missing (${missing[*]}) and no sudo to install them" >&2
		echo "hint: run as root, or install them: apt-get install ${missing[*]}" >&2
		return 1
	fi
	echo "== installing ${missing[*]}"
	cdp_as_root apt-get update -qq
	cdp_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
}

# Makes the private copy of the installation named by CDP_PG_ROOT.
cdp_private_install() {
	local d
	[ -n "${CDP_PG_ROOT:-}" ] && [ ! -x "$PGBIN/postgres" ] || return 0
	echo "== copying the PostgreSQL installation to $CDP_PG_ROOT"
	for d in /usr/lib/postgresql/15 /usr/share/postgresql/15 /usr/include/postgresql; do
		mkdir -p "$CDP_PG_ROOT$(dirname "$d")"
		cp -a "$d" "$CDP_PG_ROOT$(dirname "$d")/"
	done
	chmod 755 "$CDP_PG_ROOT"
}

# Installs what is missing, then builds and installs the extension (under
# AddressSanitizer and UBSan when SANITIZE=1; objects of the other flavour
# are cleaned first).
cdp_setup() {
	local flavour=plain
	[ "${SANITIZE:-0}" = 1 ] && flavour=sanitize
	cdp_install_packages
	cdp_private_install
	if [ "$(cat "$CDP_ROOT/.build-flavour" 2>/dev/null)" != "$flavour" ]; then
		make -C "$CDP_ROOT" -s clean >/dev/null
		echo "$flavour" >"$CDP_ROOT/.build-flavour"
	fi
	echo "== building and installing cdp ($flavour)"
	if [ "$flavour" = sanitize ]; then export SANITIZE=1; else unset SANITIZE; fi
	make -C "$CDP_ROOT" -s >/dev/null
	cdp_as_root make -C "$CDP_ROOT" -s install >/dev/null
}

# Starts a fresh throwaway cluster; extra arguments are postgresql.conf lines.
cdp_start_cluster() {
	local name=$1 port=$2
	shift 2
	export CDP_CLUSTER_DIR=/tmp/cdp-$name
	cdp_stop_cluster "$name"
	cdp_as_root rm -rf "$CDP_CLUSTER_DIR"
	mkdir -p "$CDP_CLUSTER_DIR/socket"
	[ "$(id -u)" -eq 0 ] && chown -R postgres: "$CDP_CLUSTER_DIR"
	chmod 755 "$CDP_CLUSTER_DIR"
	local user
	user=$(cdp_server_user)
	cdp_as_server "$PGBIN/initdb" -D "$CDP_CLUSTER_DIR/data" -U "$user" -A trust -E UTF8 \
		--locale=C >"$CDP_CLUSTER_DIR/initdb.log" 2>&1 ||
		{ cat "$CDP_CLUSTER_DIR/initdb.log" >&2; return 1; }
	{
		echo "port = $port"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$CDP_CLUSTER_DIR/socket'"
		echo "shared_preload_libraries = 'pg_cron,cdp'"
		echo "cron.database_name = 'cdp'"
		# pg_cron runs each job over a libpq connection, by default to
		# localhost, where this cluster does not listen: its socket instead
		echo "cron.host = '$CDP_CLUSTER_DIR/socket'"
		echo "cdp.worker_database = 'cdp'"
		echo "timezone = 'UTC'"
		echo "max_worker_processes = 16"
		local line
		for line in "$@"; do echo "$line"; done
	} | cdp_as_server tee -a "$CDP_CLUSTER_DIR/data/postgresql.conf" >/dev/null
	# shellcheck disable=SC2086
	cdp_as_server env ${CDP_SERVER_ENV:-} "$PGBIN/pg_ctl" -D "$CDP_CLUSTER_DIR/data" -l "$CDP_CLUSTER_DIR/server.log" -w -s start ||
		{ tail -20 "$CDP_CLUSTER_DIR/server.log" >&2; return 1; }
	export PGHOST=$CDP_CLUSTER_DIR/socket PGPORT=$port PGUSER=$user PGDATABASE=cdp
	"$PGBIN/createdb" cdp
}

# Stops a cluster started by cdp_start_cluster, if it runs.
cdp_stop_cluster() {
	local dir=/tmp/cdp-$1
	if [ -f "$dir/data/postmaster.pid" ]; then
		cdp_as_server "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -s stop || true
	fi
}

# psql on the current cluster: quiet, stops at the first error.
cdp_psql() {
	"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"
}

# Records one check of a test script: STATUS 0 prints "ok - WHAT", another
# "not ok - WHAT" (": DETAIL" if given); counts into $passed and $failed.
cdp_tally() {
	local status=$1 what=$2 detail=${3:-}
	if [ "$status" -eq 0 ]; then
		echo "ok - $what"
		passed=$((passed + 1))
	else
		echo "not ok - $what${detail:+: $detail}"
		failed=$((failed + 1))
	fi
}

# Records a check that holds when the command after WHAT succeeds.
cdp_check() {
	local what=$1
	shift
	if "$@"; then cdp_tally 0 "$what"; else cdp_tally 1 "$what"; fi
}

# Checks that a query in a database answers what is expected.
cdp_expect() {
	local what=$1 db=$2 query=$3 want=$4 got st=0
	got=$(cdp_psql -d "$db" -At -c "SET client_min_messages = warning" -c "$query")
	[ "$got" = "$want" ] || st=1
	cdp_tally $st "$what" "got '$got', expected '$want'"
}

# Seconds a psql script on the current cluster takes (its output dropped).
cdp_timed() {
	local t0 t1
	t0=$(date +%s.%N)
	cdp_psql -c "SET client_min_messages = warning" "$@" >/dev/null
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}

# The thin load of the benchmarks, as a SELECT of the demo files' columns:
# 1 M web events interleaved in time (80 ms apart), 300,000 cookies, an
# e-mail address of 200,000 on every fifth event.
cdp_thin_events() {
	echo "SELECT timestamptz '2025-06-01' + g * interval '80 ms' AS occurred_at, 'web' AS channel,
	       CASE WHEN g % 7 = 0 THEN 'product_view' ELSE 'page_view' END AS type,
	       CASE WHEN g % 5 = 0 THEN jsonb_build_object('cookie', 'tc-' || (g::bigint * 7919) % 300000,
	                                                   'email', 'thin' || (g::bigint * 104729) % 200000 || '@example.org')
	            ELSE jsonb_build_object('cookie', 'tc-' || (g::bigint * 7919) % 300000) END AS identifiers,
	       jsonb_build_object('product_id', 'P' || g % 500, 'category', 'c' || g % 20) AS properties,
	       NULL AS amount, 'web-sdk' AS source
	FROM generate_series(1, 1000000) g"
}

# Switches the background worker on or off and waits until it says so.
cdp_set_worker() {
	local want="waiting for new events"
	[ "$1" = on ] || want="waiting: cdp.worker_enabled is off"
	cdp_psql -c "ALTER SYSTEM SET cdp.worker_enabled = $1" -c "SELECT pg_reload_conf()" >/dev/null
	until [ "$(cdp_psql -At -c "SELECT state = '$want' FROM cdp.worker_status")" = t ]; do sleep 0.2; done
}

# a / b with two decimals.
cdp_ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}

# Set-up of a benchmark: installs and builds (extension and demo generator),
# starts cluster NAME on PORT with bulk-load settings (stopped on exit),
# creates the extension with the partitions of 2025, the demo's year, and
# sets $cdp_event_cols, the columns of the demo files.
cdp_bench_start() {
	local name=$1 port=$2
	cdp_setup
	make -s -C "$CDP_ROOT" demo-gen
	# shellcheck disable=SC2064
	trap "cdp_stop_cluster $name" EXIT
	cdp_start_cluster "$name" "$port" "shared_buffers = 2GB" "max_wal_size = 16GB" \
		"checkpoint_timeout = 30min" "maintenance_work_mem = 1GB" "work_mem = 256MB" \
		"cdp.default_country = 'GB'"
	cdp_psql -c "SET client_min_messages = warning" -c "CREATE EXTENSION cdp" \
		-c "SELECT cdp.ensure_partitions('2025-01-01', '2025-12-31')" >/dev/null
	cdp_event_cols="occurred_at, channel, type, identifiers, properties, amount, source"
}
