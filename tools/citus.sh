# shellcheck shell=bash
# Helpers for a throwaway Citus cluster (a coordinator and two workers, three
# PostgreSQL 15 servers on this machine), used by test/citus/run.sh and
# bench/citus_row_cost.sh. Source this file after tools/cluster.sh; it only
# defines functions:
#
#   . tools/cluster.sh; . tools/citus.sh
#   citus_available || exit 0          # says why when it is not
#   trap citus_cluster_stop EXIT
#   citus_cluster_start                # exports CITUS_NODE_HOSTS/PORTS, PG* = the coordinator
#   citus_psql 1 -c 'SELECT 1'         # 0: coordinator, 1 and 2: the workers
#   citus_spare_node_start             # node 3: Citus ready, not in the cluster
#
# Citus is not packaged by Debian: its source and a build script are kept
# beside the repository, in ../shared/vendor/citus/ (relative to the
# repository's parent directory; BILLING_CITUS_VENDOR names another
# folder). citus_available builds and installs it into the PostgreSQL of
# PG_BINDIR when it is missing and that source is there (as root, or with
# sudo). Without Citus and without its source the Citus tests are skipped,
# with a line that says so; under CI=true a build that fails is a failure.

# The folder of Citus's source and build script, or nothing.
citus_vendor_dir() {
    local root=${BILLING_REPO_ROOT:-$PWD} common candidate
    local -a candidates=()
    [[ -n ${BILLING_CITUS_VENDOR:-} ]] && candidates+=("$BILLING_CITUS_VENDOR")
    candidates+=("$root/../shared/vendor/citus")
    # A git worktree may live elsewhere than its repository: try beside the
    # main checkout too (the parent of the common .git directory's parent).
    if common=$(git -C "$root" rev-parse --path-format=absolute --git-common-dir 2>/dev/null); then
        candidates+=("$(dirname "$(dirname "$common")")/shared/vendor/citus")
    fi
    for candidate in "${candidates[@]}"; do
        if [[ -f $candidate/build.sh ]] && compgen -G "$candidate/citus-*.tar.gz" >/dev/null; then
            (cd "$candidate" && pwd)
            return 0
        fi
    done
    return 1
}

_citus_pg_config() { echo "${PG_BINDIR:-/usr/lib/postgresql/15/bin}/pg_config"; }

citus_installed() {
    local libdir
    libdir=$("$(_citus_pg_config)" --pkglibdir) || return 1
    [[ -f $libdir/citus.so ]]
}

# 0 when Citus is installed (building it first if need be), 1 when the
# Citus tests must be skipped (the reason is printed), 2 when building it
# failed.
citus_available() {
    local vendor
    citus_installed && return 0
    if ! vendor=$(citus_vendor_dir); then
        echo "Citus tests skipped: Citus is not installed in $("$(_citus_pg_config)" --pkglibdir)" \
             "and its source (../shared/vendor/citus beside the repository, or BILLING_CITUS_VENDOR) was not found"
        return 1
    fi
    local -a sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        elif [[ ${CI:-} == true ]]; then
            echo "Citus is not installed and building it needs root or sudo"; return 2
        else
            echo "Citus tests skipped: Citus is not installed and building it ($vendor/build.sh) needs root or sudo"
            return 1
        fi
    fi
    echo "==> building Citus from $vendor (once; a few minutes)"
    if ! "${sudo[@]}" env PG_CONFIG="$(_citus_pg_config)" bash "$vendor/build.sh" \
            "$(mktemp -d "${TMPDIR:-/tmp}/citus-build.XXXXXX")"; then
        echo "building Citus failed"; return 2
    fi
    citus_installed || { echo "Citus was built but citus.so is not in $("$(_citus_pg_config)" --pkglibdir)"; return 2; }
}

# psql on node N (0: coordinator, 1..: workers), as the cluster's superuser.
citus_psql() {
    local n=$1; shift
    PGHOST=${CITUS_NODE_HOSTS[$n]} PGPORT=${CITUS_NODE_PORTS[$n]} PGUSER=postgres \
        psql -X -q -v ON_ERROR_STOP=1 "$@"
}

# Starts node N (tools/cluster.sh's cluster_start: a temporary directory
# and a free port) with Citus preloaded, records it in CITUS_NODE_DIRS,
# _HOSTS and _PORTS, and creates the database $CITUS_DB (default
# citus_test) with citus in it. Extra postgresql.conf lines: the arguments
# after N. cluster_start leaves PG* naming that node.
_citus_node_start() {
    local n=$1 db=${CITUS_DB:-citus_test}
    shift
    # shared_preload_libraries last: it replaces cluster_start's pg_cron.
    cluster_start "max_prepared_transactions = 100" "max_connections = 150" \
        "citus.node_conninfo = 'sslmode=disable'" "$@" "shared_preload_libraries = 'citus'" || return 1
    CITUS_NODE_DIRS[n]=$BILLING_CLUSTER_DIR
    CITUS_NODE_HOSTS[n]=$PGHOST
    CITUS_NODE_PORTS[n]=$PGPORT
    export CITUS_NODE_DIRS CITUS_NODE_HOSTS CITUS_NODE_PORTS
    citus_psql "$n" -d postgres -c "CREATE DATABASE $db" && citus_psql "$n" -d "$db" -c "CREATE EXTENSION citus"
}

# Starts the coordinator and two workers (_citus_node_start three times),
# makes them one Citus cluster, and leaves PG* naming the coordinator's
# database $CITUS_DB. Extra postgresql.conf lines: the arguments.
citus_cluster_start() {
    local n db=${CITUS_DB:-citus_test}
    CITUS_NODE_DIRS=() CITUS_NODE_HOSTS=() CITUS_NODE_PORTS=()
    for n in 0 1 2; do
        _citus_node_start "$n" "$@" || { citus_cluster_stop; return 1; }
    done
    citus_psql 0 -d "$db" -At \
        -c "SELECT citus_set_coordinator_host('127.0.0.1', ${CITUS_NODE_PORTS[0]})" \
        -c "SELECT citus_add_node('127.0.0.1', ${CITUS_NODE_PORTS[1]})" \
        -c "SELECT citus_add_node('127.0.0.1', ${CITUS_NODE_PORTS[2]})" >/dev/null || { citus_cluster_stop; return 1; }
    export BILLING_CLUSTER_DIR=${CITUS_NODE_DIRS[0]} PGHOST=${CITUS_NODE_HOSTS[0]} PGPORT=${CITUS_NODE_PORTS[0]}
    export PGUSER=postgres PGDATABASE=$db
    echo "citus cluster: coordinator port ${CITUS_NODE_PORTS[0]}, workers ${CITUS_NODE_PORTS[1]} and ${CITUS_NODE_PORTS[2]}"
}

# Starts one more server (node 3) as the others, with the database and
# Citus, but does not add it to the cluster: a test adds it, as a DBA
# grows a cluster (test/citus/sql/add_node.sql). Its port is
# CITUS_NODE_PORTS[3]; citus_cluster_stop stops it too. PG* keep naming
# the coordinator.
citus_spare_node_start() {
    local keep_host=$PGHOST keep_port=$PGPORT keep_db=$PGDATABASE keep_dir=$BILLING_CLUSTER_DIR rc=0
    _citus_node_start 3 "$@" || rc=$?
    export BILLING_CLUSTER_DIR=$keep_dir PGHOST=$keep_host PGPORT=$keep_port PGDATABASE=$keep_db
    return "$rc"
}

# Stops every node started (safe as an EXIT trap, a no-op without nodes).
citus_cluster_stop() {
    local dir
    for dir in "${CITUS_NODE_DIRS[@]:-}"; do
        [[ -n $dir ]] || continue
        BILLING_CLUSTER_DIR=$dir cluster_stop
    done
    CITUS_NODE_DIRS=()
    return 0
}
