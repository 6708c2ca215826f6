#!/usr/bin/env bash
# Run all tests: C++ unit tests (ctest), the same unit tests under
# ASan+UBSan, a bounded libFuzzer run of every test/fuzz target, pg_regress
# and isolation (make installcheck) and every executable test/scripts/*.sh
# against a throwaway cluster, the Citus tests (test/citus/run.sh) on a
# throwaway Citus cluster, then pg_regress and isolation again against a
# second cluster whose server clock is faked (libfaketime) to a hard date.
# Ends with one "N passed, N failed" line; exit status is non-zero on failure.
#
#   tools/test.sh [--no-setup] [--regress-only] [--all-dates]
#   --regress-only  only pg_regress and isolation (today, then faked date)
#   --all-dates     the faked-date run once for every date of the list
#   BILLING_FAKETIME="2028-02-29 12:00:00"  the faked date (UTC) to use
#   FUZZ_SECONDS=N  fuzz each target N seconds (default 20; 0: seeds only)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

setup=1 regress_only=0 all_dates=0
while (($#)); do
    case $1 in
        --no-setup) setup=0 ;;  # quick local iterations: reuse the last build
        --regress-only) regress_only=1 ;;
        --all-dates) all_dates=1 ;;
        -h|--help) sed -n '2,15s/^# \{0,1\}//p' "$0"; exit 0 ;;
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

if ((!regress_only)); then
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

# --- unit tests under ASan+UBSan -------------------------------------------
# A separate Debug build (GCC, like build/cmake) with -fsanitize=address,
# undefined; any report aborts the test. -Werror is left to build/cmake,
# which compiles the same sources: sanitizer instrumentation makes GCC emit
# warnings of its own.
# (llvm-symbolizer, from llvm-14, gives the reports file:line stacks.)
if [[ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]]; then
    export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-/usr/lib/llvm-14/bin/llvm-symbolizer}
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
echo "==> ctest under ASan+UBSan (build/asan)"
rc=0
if [[ -f CMakeLists.txt ]]; then
    { cmake -S . -B build/asan -DBILLING_SANITIZE=ON -DBILLING_WERROR=OFF \
            -DCMAKE_BUILD_TYPE=Debug >/dev/null &&
      cmake --build build/asan -j"$(nproc)" &&
      ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1} \
          ctest --test-dir build/asan --output-on-failure --no-tests=error -j"$(nproc)"
    } || rc=$?
else
    echo "CMakeLists.txt missing"; rc=1
fi
report "unit tests under ASan+UBSan" "$rc"

# --- fuzz smoke ------------------------------------------------------------
# Every libFuzzer target of test/fuzz (clang, core instrumented, ASan+UBSan):
# first the saved crash inputs of test/fuzz/crashes/<target>/ (regression
# tests for fixed findings), then FUZZ_SECONDS of fuzzing (and at most
# FUZZ_RUNS inputs) from a copy of test/fuzz/corpus/<target>/ in a temp dir.
# Any crash, leak, timeout or invariant failure fails the suite; its input is
# kept in build/fuzz/artifacts/<target>/.
fuzz_seconds=${FUZZ_SECONDS:-20}
fuzz_runs=${FUZZ_RUNS:-10000000}
fuzz_smoke() {
    local tmp=$1 src target bin log rc what status=0
    local -a fargs limits crashes
    if ! command -v clang++ >/dev/null; then
        echo "clang++ missing (tools/setup.sh installs clang and libclang-rt-14-dev)"
        return 1
    fi
    # The compiler is cached per build dir: start over if it is not clang.
    if [[ -f build/fuzz/CMakeCache.txt ]] &&
            ! grep -q '^CMAKE_CXX_COMPILER:[A-Z]*=.*clang' build/fuzz/CMakeCache.txt; then
        rm -rf build/fuzz
    fi
    CC=clang CXX=clang++ cmake -S . -B build/fuzz -DBILLING_FUZZ=ON -DBILLING_WERROR=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || return 1
    cmake --build build/fuzz --target billing_fuzzers -j"$(nproc)" || return 1
    # -timeout: one input running 10 s is a hang, reported like a crash.
    fargs=(-timeout=10 -print_final_stats=1)
    if ((fuzz_seconds > 0)); then
        limits=(-max_total_time="$fuzz_seconds" -runs="$fuzz_runs")
    else
        limits=(-runs=0)  # just run the seed corpus
    fi
    for src in test/fuzz/*.cpp; do
        [[ -e $src ]] || { echo "no fuzz targets in test/fuzz"; return 1; }
        target=$(basename "$src" .cpp)
        bin=build/fuzz/$target
        log=$tmp/$target.log
        mkdir -p "$tmp/$target/corpus" "$tmp/$target/artifacts"
        if [[ -d test/fuzz/corpus/$target ]]; then
            cp -R test/fuzz/corpus/"$target"/. "$tmp/$target/corpus/"
        fi
        crashes=()
        if [[ -d test/fuzz/crashes/$target ]]; then
            mapfile -t crashes < <(find "test/fuzz/crashes/$target" -type f | sort)
        fi
        rc=0
        if ((${#crashes[@]})); then
            what="saved crash inputs"
            timeout 300 "$bin" "${fargs[@]}" -artifact_prefix="$tmp/$target/artifacts/" \
                "${crashes[@]}" >"$log" 2>&1 || rc=$?
        fi
        if ((rc == 0)); then
            what=fuzzing
            timeout $((fuzz_seconds + 300)) "$bin" "${fargs[@]}" "${limits[@]}" \
                -artifact_prefix="$tmp/$target/artifacts/" "$tmp/$target/corpus" >>"$log" 2>&1 || rc=$?
        fi
        if ((rc == 0)); then
            # stat:: lines come from -print_final_stats.
            echo "  $target: $(awk '/^stat::number_of_executed_units/ {n = $2}
                                   /^stat::average_exec_per_sec/ {e = $2}
                                   END {printf "%d inputs, %d exec/s", n, e}' "$log")," \
                 "$(find "$tmp/$target/corpus" -type f | wc -l) corpus files"
        else
            status=1
            echo "  $target: FAILED during $what (exit $rc); last lines of its log:"
            tail -n 60 "$log" | sed 's/^/    /'
            if compgen -G "$tmp/$target/artifacts/*" >/dev/null; then
                mkdir -p "build/fuzz/artifacts/$target"
                cp "$tmp/$target/artifacts/"* "build/fuzz/artifacts/$target/"
                echo "  input(s) kept in build/fuzz/artifacts/$target/:" \
                     "$(cd "$tmp/$target/artifacts" && echo *)"
            fi
        fi
    done
    return "$status"
}
echo "==> fuzz smoke (build/fuzz, ${fuzz_seconds}s per target)"
rc=0
if [[ -f CMakeLists.txt ]]; then
    fuzz_tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-fuzz.XXXXXX")
    trap 'rm -rf -- "$fuzz_tmp"' EXIT
    fuzz_smoke "$fuzz_tmp" || rc=$?
    rm -rf -- "$fuzz_tmp"
    trap - EXIT
else
    echo "CMakeLists.txt missing"; rc=1
fi
report "fuzz smoke" "$rc"
fi  # regress_only

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
# What "make installcheck" runs, as two makes so that a pg_regress failure
# does not skip the isolation tests; each failing suite's diffs are printed.
installcheck() {
    local rc=0 suite suite_rc diffs
    if [[ ! -f Makefile ]]; then
        echo "Makefile missing"; return 1
    fi
    for suite in regress isolation; do
        suite_rc=0
        if [[ $suite == regress ]]; then
            make installcheck PG_CONFIG="$PG_CONFIG" ISOLATION= || suite_rc=$?
            diffs=regression.diffs
        else
            make installcheck PG_CONFIG="$PG_CONFIG" REGRESS= || suite_rc=$?
            diffs=output_iso/regression.diffs
        fi
        if ((suite_rc)); then
            rc=$suite_rc
            if [[ -f $diffs ]]; then
                echo "---- $diffs ----"
                cat "$diffs"
            fi
        fi
    done
    return "$rc"
}
echo "==> make installcheck"
rc=0
installcheck || rc=$?
report installcheck "$rc"

# --- script tests --------------------------------------------------------
# Each script gets the cluster environment (PG*, BILLING_CLUSTER_DIR,
# BILLING_REPO_ROOT) and runs from the repo root; it may source
# tools/cluster.sh to crash/restart the shared cluster.
if ((!regress_only)) && [[ -d test/scripts ]]; then
    for script in test/scripts/*.sh; do
        [[ -e $script ]] || continue
        # A test that lost its run bit would silently stop running: fail it.
        if [[ ! -x $script ]]; then
            echo "$script is not executable (chmod +x it: every test/scripts/*.sh runs)"
            report "$script" 1
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

cluster_stop

# --- Citus -----------------------------------------------------------------
# billing on a throwaway Citus cluster, a coordinator and two workers
# (test/citus/run.sh). It builds Citus from ../shared/vendor/citus when it is
# missing (a few minutes, once); without Citus and its source it prints
# "Citus tests skipped: <why>", and the suite is listed as skipped.
if ((!regress_only)); then
    echo "==> test/citus/run.sh"
    citus_log=$(mktemp "${TMPDIR:-/tmp}/billing-citus.XXXXXX")
    rc=0
    timeout "${BILLING_CITUS_TIMEOUT:-3600}" test/citus/run.sh 2>&1 | tee "$citus_log" || rc=${PIPESTATUS[0]}
    if ((rc == 0)) && grep -q '^Citus tests skipped:' "$citus_log"; then
        echo "SKIP test/citus/run.sh"
    else
        report test/citus/run.sh "$rc"
    fi
    rm -f -- "$citus_log"
fi

# --- pg_regress and isolation at a faked date --------------------------------
# The same suites against a second throwaway cluster whose server (only the
# server: the build, psql and pg_regress keep the real clock) runs under
# libfaketime, started at a fixed instant from which its clock runs on, so
# that now() in the tests is that date. One date per run, rotating by day of
# the year; BILLING_FAKETIME picks one (any "YYYY-MM-DD HH:MM:SS", UTC), and
# --all-dates runs them all.
fake_dates=(
    "2027-04-30 23:59:55"   # a month's last seconds
    "2027-12-31 23:59:55"   # New Year's Eve's last seconds
    "2028-02-29 12:00:00"   # 29 February
    "2027-03-14 06:59:55"   # New York springs forward (02:00 EST = 07:00 UTC)
    "2027-11-07 05:59:55"   # New York falls back (02:00 EDT = 06:00 UTC)
    "2025-06-15 12:00:00"   # before the tests' data (2026)
)
# (found through its package, so any architecture's path works)
faketime_lib=$(dpkg -L libfaketime 2>/dev/null | grep -m1 '/libfaketime\.so\.1$' || true)
faketime_lib=${faketime_lib:-/usr/lib/$(uname -m)-linux-gnu/faketime/libfaketime.so.1}

# installcheck_at DATE: 0 when both suites pass with the server's clock
# started at DATE (UTC).
installcheck_at() (
    local date=$1 server_now
    if [[ ! -f $faketime_lib ]]; then
        echo "$faketime_lib missing (tools/setup.sh installs faketime)"
        return 1
    fi
    # TZ: libfaketime reads the date in the local time zone of the server
    # process; PostgreSQL's own time zone comes from postgresql.conf.
    export BILLING_SERVER_ENV="LD_PRELOAD=$faketime_lib
FAKETIME=@$date
TZ=UTC
FAKETIME_DONT_FAKE_MONOTONIC=1"
    trap cluster_stop EXIT
    # shellcheck disable=SC2119 # (no extra postgresql.conf lines needed)
    cluster_start || return 1
    echo "cluster: $BILLING_CLUSTER_DIR port $PGPORT"
    # A server that ignored the faked clock would test today's date again.
    server_now=$(psql -X -A -t -v ON_ERROR_STOP=1 -c \
        "SELECT now() AT TIME ZONE 'UTC',
                abs(extract(epoch FROM now() - timestamptz '$date+00')) < 120") || return 1
    echo "server clock: ${server_now%|*} UTC"
    if [[ ${server_now##*|} != t ]]; then
        echo "the server's clock is not the faked date $date UTC"
        return 1
    fi
    installcheck
)

if ((all_dates)); then
    dates=("${fake_dates[@]}")
elif [[ -n ${BILLING_FAKETIME:-} ]]; then
    dates=("${BILLING_FAKETIME#@}")
    echo "==> faked date from BILLING_FAKETIME"
else
    day=$((10#$(date -u +%j)))
    pick=$((day % ${#fake_dates[@]}))
    dates=("${fake_dates[$pick]}")
    echo "==> faked date ${dates[0]} UTC: date $((pick + 1)) of ${#fake_dates[@]}, picked by the day of the" \
         "year ($day); BILLING_FAKETIME=\"YYYY-MM-DD HH:MM:SS\" picks another, --all-dates runs them all"
fi
for date in "${dates[@]}"; do
    echo "==> make installcheck at faked date $date UTC"
    rc=0 started=$SECONDS
    if [[ ! $date =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}\ [0-9]{2}:[0-9]{2}:[0-9]{2}$ ]] ||
            ! date -u -d "$date" >/dev/null 2>&1; then
        echo "BILLING_FAKETIME must read YYYY-MM-DD HH:MM:SS, got '$date'"; rc=1
    else
        installcheck_at "$date" || rc=$?
    fi
    echo "(faked-date run: $((SECONDS - started)) s)"
    report "installcheck at faked date $date UTC" "$rc"
done

echo "$passed passed, $failed failed"
((failed == 0))
