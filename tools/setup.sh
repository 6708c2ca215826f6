#!/usr/bin/env bash
# Install build/test dependencies (Debian 12) and build + install the
# extension.  Idempotent: a machine that has every package does no apt work,
# so tools/test.sh can call this on every run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# PGXS must use PostgreSQL 15 even if other versions are installed.
export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export DEBIAN_FRONTEND=noninteractive

# Root runs directly (CI); everyone else goes through sudo for apt/install.
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup.sh: need root or sudo" >&2; exit 1; }
    SUDO=(sudo)
fi

# postgresql-15 already ships the contrib modules; clang + libclang-rt
# (libFuzzer, ASan, UBSan runtimes) are for the fuzz build, llvm-14 for its
# llvm-symbolizer (file:line in sanitizer reports), googletest/benchmark for
# the C++ tests, faketime (libfaketime) for tools/test.sh's run of pg_regress
# and isolation with the server's clock at another date.
packages=(
    postgresql-15 postgresql-server-dev-15 postgresql-15-cron
    libfmt-dev cmake g++ make pkg-config
    googletest libgtest-dev libgmock-dev libbenchmark-dev
    clang libclang-rt-14-dev llvm-14 git ca-certificates faketime
)

missing=()
for pkg in "${packages[@]}"; do
    # dpkg-query fails for never-seen packages; treat that as "missing" too.
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
    echo "==> installing: ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "==> all packages present"
fi

# The build files are written in parallel with this script; skip (loudly)
# instead of failing so the tooling stays usable meanwhile.
if [[ -f CMakeLists.txt ]]; then
    echo "==> cmake build (build/cmake)"
    cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=RelWithDebInfo
    cmake --build build/cmake -j"$(nproc)"
else
    echo "==> CMakeLists.txt missing, skipping C++ unit-test build"
fi

if [[ -f Makefile ]]; then
    echo "==> PGXS build + install"
    make -j"$(nproc)" PG_CONFIG="$PG_CONFIG"
    # sudo resets the environment, hence PG_CONFIG as a make argument.
    "${SUDO[@]}" make install PG_CONFIG="$PG_CONFIG"
else
    echo "==> Makefile missing, skipping extension build"
fi

echo "==> setup done"
