#!/usr/bin/env bash
# Run all tests: C++ unit tests (ctest), pg_regress (make installcheck) and
# every executable test/scripts/*.sh against a throwaway cluster.
# Ends with one "N passed, N failed" line; exit status is non-zero on failure.
#
#   tools/test.sh [--no-setup] [--sanitize]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

setup=1
while (($#)); do
    case $1 in
        --no-setup) setup=0 ;;  # quick local iterations: reuse the last build
        --sanitize) export BILLING_SANITIZE=1 ;;  # reserved for sanitizer builds
        -h|--help) sed -n '2,6s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "test.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export BILLING_REPO_ROOT=$root

if ((setup)); then
    bash tools/setup.sh
fi

passed=0 failed=0
report() {  # report NAME STATUS
    if (($2 == 0)); then
        echo "PASS $1"; passed=$((passed + 1))
    else
        echo "FAIL $1"; failed=$((failed + 1))
    fi
}

# --- C++ unit tests ------------------------------------------------------
# --no-tests=error: an empty or missing build must not count as a pass.
echo "==> ctest"
rc=0
if [[ -f CMakeLists.txt ]]; then
    ctest --test-dir build/cmake --output-on-failure --no-tests=error || rc=$?
else
    echo "CMakeLists.txt missing"; rc=1
fi
report ctest "$rc"

# --- throwaway cluster ---------------------------------------------------
# shellcheck source=tools/cluster.sh
. tools/cluster.sh
trap cluster_stop EXIT
echo "==> starting cluster"
# shellcheck disable=SC2119 # (no extra postgresql.conf lines needed)
cluster_start
echo "cluster: $BILLING_CLUSTER_DIR port $PGPORT"

# --- pg_regress ----------------------------------------------------------
# pg_regress picks up PGHOST/PGPORT/PGUSER exported by cluster_start.
echo "==> make installcheck"
rc=0
if [[ -f Makefile ]]; then
    make installcheck PG_CONFIG="$PG_CONFIG" || rc=$?
    if ((rc)) && [[ -f regression.diffs ]]; then
        echo "---- regression.diffs ----"
        cat regression.diffs
    fi
else
    echo "Makefile missing"; rc=1
fi
report installcheck "$rc"

# --- script tests --------------------------------------------------------
# Each script gets the cluster environment (PG*, BILLING_CLUSTER_DIR,
# BILLING_REPO_ROOT) and runs from the repo root; it may source
# tools/cluster.sh to crash/restart the shared cluster.
if [[ -d test/scripts ]]; then
    for script in test/scripts/*.sh; do
        [[ -e $script ]] || continue
        if [[ ! -x $script ]]; then
            echo "SKIP $script (not executable - chmod +x to enable)"
            continue
        fi
        echo "==> $script"
        rc=0
        timeout "${BILLING_SCRIPT_TIMEOUT:-600}" "$script" || rc=$?
        report "$script" "$rc"
        # A script that crashed the server and failed before restarting it
        # must not make every later script fail too.
        if ! cluster_pg_ctl status >/dev/null; then
            echo "cluster down after $script, restarting"
            cluster_restart
        fi
    done
fi

echo "$passed passed, $failed failed"
((failed == 0))
