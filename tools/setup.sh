#!/usr/bin/env bash
# Install build/test dependencies (Debian 12) and build + install the
# extension.  Idempotent: a machine that has every package does no apt work,
# so tools/test.sh can call this on every run.
#
#   tools/setup.sh [--demo] [--app] [--log FILE]
#   --demo      only what tools/demo.sh needs: PostgreSQL 15 and its server
#               headers, libfmt-dev, g++ and make; the extension is built and
#               installed, the C++ unit tests are not built
#   --app       with --demo: also Node.js and npm if missing (tools/demo.sh --app)
#   --log FILE  apt and compiler output go to FILE (appended), the terminal
#               gets one line per step, and the log's tail if a step fails
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

demo=0 app=0 log=
while (($#)); do
    case $1 in
        --demo) demo=1 ;;
        --app) app=1 ;;
        --log) log=${2:?--log needs a file}; shift ;;
        -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

# PGXS must use PostgreSQL 15 even if other versions are installed.
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export DEBIAN_FRONTEND=noninteractive

# Root runs directly (CI); everyone else goes through sudo for apt/install.
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup.sh: need root or sudo" >&2; exit 1; }
    SUDO=(sudo)
fi

exec 3>&1  # the terminal's stdout, for messages from inside run
# step "what": one progress line. run CMD...: CMD's output to the log when
# there is one (its last lines on the terminal if it fails), else as is.
step() {
    if [[ -n $log ]]; then echo "==> $1 (log: $log)"; else echo "==> $1"; fi
}
run() {
    local rc=0
    if [[ -z $log ]]; then
        "$@"
        return
    fi
    "$@" >>"$log" 2>&1 || rc=$?
    if ((rc)); then
        echo "setup.sh: failed (exit $rc): $*" >&2
        echo "---- last lines of $log ----" >&2
        tail -n 40 "$log" >&2
        exit "$rc"
    fi
}

# What the extension needs to build and run: the demo installs only these.
# (postgresql-server-dev-15 itself depends on clang-14 and llvm-14-dev.)
packages=(postgresql-15 postgresql-server-dev-15 libfmt-dev g++ make)
# What the tests add: pg_cron (preloaded by tools/cluster.sh when present),
# CMake, googletest/benchmark for the C++ tests, clang + libclang-rt
# (libFuzzer, ASan, UBSan runtimes) for the fuzz build, llvm-14 for its
# llvm-symbolizer (file:line in sanitizer reports), faketime (libfaketime)
# for tools/test.sh's run of pg_regress and isolation with the server's
# clock at another date; chromium for the example app's browser test
# (test/scripts/app_e2e.sh, playwright-core drives it), python3-psycopg for
# the Python example's (test/scripts/python_example.sh).
if ((!demo)); then
    packages+=(
        postgresql-15-cron cmake pkg-config
        googletest libgtest-dev libgmock-dev libbenchmark-dev
        clang libclang-rt-14-dev llvm-14 git ca-certificates faketime
        chromium python3-psycopg
    )
fi
# Node.js and npm, for the example app (examples/nextjs, tools/demo.sh --app
# and the browser test), tools/alert-delivery and bench/node: Debian's only
# when the machine has none (a Node.js from elsewhere, such as NodeSource's,
# brings its own npm, and its nodejs package conflicts with Debian's npm).
# Next.js 16 needs Node.js >= 20.9; Debian 12's is 18, with which the app's
# test says so and fails.
if ((!demo || app)); then
    command -v node >/dev/null || packages+=(nodejs)
    command -v npm >/dev/null || packages+=(npm)
fi

missing=()
for pkg in "${packages[@]}"; do
    # dpkg-query fails for never-seen packages; treat that as "missing" too.
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

# Another apt or dpkg (unattended-upgrades, a second terminal) holds its
# locks: wait for it, up to 10 minutes, rather than fail. apt-get install
# does that with DPkg::Lock::Timeout; apt-get update ignores that option for
# the lock of its package lists, hence the retries.
apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
apt_update() {
    local out waited=0 rc
    out=$(mktemp "${TMPDIR:-/tmp}/billing-apt.XXXXXX")
    while :; do
        rc=0
        "${apt[@]}" update >"$out" 2>&1 || rc=$?
        cat "$out"
        if ((rc == 0)); then break; fi
        if ((waited >= 600)) || ! grep -q 'Could not get lock' "$out"; then break; fi
        if ((waited == 0)); then
            echo "==> waiting for another apt to finish (up to 10 minutes)" >&3
        fi
        sleep 5
        waited=$((waited + 5))
    done
    rm -f -- "$out"
    return "$rc"
}

# apt-get install waits quietly (its "Waiting for cache lock" lines go to the
# log): say so on the terminal.
apt_install() {
    local pid logpos said=0
    if [[ -z $log ]]; then
        "${apt[@]}" install -y --no-install-recommends "$@"
        return
    fi
    logpos=$(( $(stat -c %s "$log") + 1 ))
    "${apt[@]}" install -y --no-install-recommends "$@" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if ((!said)) && grep -q 'Waiting for cache lock' < <(tail -c "+$logpos" "$log"); then
            echo "==> waiting for another apt to finish (up to 10 minutes)" >&3
            said=1
        fi
        sleep 1
    done
    wait "$pid"
}

if ((${#missing[@]})); then
    step "installing packages: ${missing[*]}"
    run apt_update
    run apt_install "${missing[@]}"
else
    step "all packages present"
fi

# The build files are written in parallel with this script; skip (loudly)
# instead of failing so the tooling stays usable meanwhile.
if ((!demo)); then
    if [[ -f CMakeLists.txt ]]; then
        step "cmake build (build/cmake)"
        run cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=RelWithDebInfo
        run cmake --build build/cmake -j"$(nproc)"
    else
        echo "==> CMakeLists.txt missing, skipping C++ unit-test build"
    fi
fi

if [[ -f Makefile ]]; then
    step "building and installing the extension: make && make install"
    run make -j"$(nproc)" PG_CONFIG="$PG_CONFIG"
    # sudo resets the environment, hence PG_CONFIG as a make argument.
    run "${SUDO[@]}" make install PG_CONFIG="$PG_CONFIG"
else
    echo "==> Makefile missing, skipping extension build"
fi

if [[ -z $log ]]; then echo "==> setup done"; fi
