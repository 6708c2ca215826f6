#!/usr/bin/env bash
# The example app end to end, in a real browser (README "The example app"):
# examples/nextjs installed with npm ci (the committed package-lock.json),
# built for production (next build) and served (next start) against a
# database of known data (examples/nextjs/e2e/data.sql); then
# examples/nextjs/e2e/billing.e2e.mjs drives Debian's chromium headless with
# playwright-core: every number on the page against SQL, a budget crossed
# and its alerts shown after a refresh, the loading and error states, and a
# screenshot (its path is printed; kept in build/app-e2e/).
#
#   test/scripts/app_e2e.sh
#
# Needs Node.js >= 20.9 (Next.js 16), npm and /usr/bin/chromium (tools/setup.sh
# installs chromium). Runs against the cluster of tools/test.sh (PG* in the
# environment), in a database of its own; without one it starts its own.
set -euo pipefail

root=${BILLING_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$root"
# shellcheck source=tools/cluster.sh
. tools/cluster.sh
cluster_use_or_start

app=$root/examples/nextjs
out=$root/build/app-e2e
db=billing_app_e2e
chromium=${CHROMIUM:-/usr/bin/chromium}
log=$(mktemp "${TMPDIR:-/tmp}/billing-app-e2e.XXXXXX")
server_pid=

cleanup() {
    local rc=$?
    if [[ -n $server_pid ]]; then
        kill -- "-$server_pid" 2>/dev/null || kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if ((rc == 0)); then
        dropdb --if-exists "$db" >/dev/null 2>&1 || true
        rm -f -- "$log"
    else
        echo "(database $db kept; log: $log)"
    fi
    ((CLUSTER_OWNED)) && cluster_stop
    exit "$rc"
}
trap cleanup EXIT

# step NAME CMD...: run CMD quietly, its output's last lines if it fails.
step() {
    local name=$1 started=$SECONDS
    shift
    echo "==> $name"
    if ! "$@" >>"$log" 2>&1; then
        echo "FAIL: $name; last lines of $log:"
        tail -n 40 "$log"
        exit 1
    fi
    echo "    ($((SECONDS - started)) s)"
}

# What the app needs.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "FAIL: node and npm are needed (Node.js >= 20.9 for Next.js 16)"
    exit 1
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 9) ? 0 : 1)'; then
    echo "FAIL: Next.js 16 needs Node.js >= 20.9, this is $(node --version)"
    exit 1
fi
if [[ ! -x $chromium ]]; then
    echo "FAIL: $chromium missing (tools/setup.sh installs Debian's chromium)"
    exit 1
fi
echo "node $(node --version), npm $(npm --version), $("$chromium" --version 2>/dev/null || echo chromium)"

cd "$app"
step "npm ci (examples/nextjs)" npm ci --no-audit --no-fund --loglevel=error
step "next build" env NEXT_TELEMETRY_DISABLED=1 node node_modules/next/dist/bin/next build

# The data is dated in the current (UTC) month and the checks take about
# half a minute: within 2 minutes of the month's end, wait for the next.
left=$(( $(date -u -d "$(date -u +%Y-%m-01) +1 month" +%s) - $(date -u +%s) ))
if ((left < 120)); then
    echo "==> the month ends in $left s: waiting for the next one"
    sleep $((left + 2))
fi
dropdb --if-exists "$db" >/dev/null 2>&1 || true
createdb "$db"
step "loading the known data (e2e/data.sql) into database $db" \
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f e2e/data.sql

# A free port on 127.0.0.1.
port=
for ((p = 3100; p < 3200; p++)); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[[ -n $port ]] || { echo "FAIL: no free port in 3100-3199"; exit 1; }

echo "==> next start on http://127.0.0.1:$port"
# (setsid: its own process group, so that cleanup stops it and its children)
PGDATABASE=$db NEXT_TELEMETRY_DISABLED=1 setsid node node_modules/next/dist/bin/next start -H 127.0.0.1 -p "$port" \
    >>"$log" 2>&1 &
server_pid=$!
ready=0
for ((i = 0; i < 120; i++)); do
    if node -e "fetch('http://127.0.0.1:$port/api/billing').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"; then
        ready=1
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.5
done
if ((!ready)); then
    echo "FAIL: the server did not answer /api/billing; last lines of $log:"
    tail -n 40 "$log"
    exit 1
fi

echo "==> e2e/billing.e2e.mjs (chromium headless, playwright-core)"
rm -rf -- "$out"
rc=0
PGDATABASE=$db BASE_URL="http://127.0.0.1:$port" OUT_DIR="$out" CHROMIUM=$chromium \
    timeout 300 node e2e/billing.e2e.mjs || rc=$?
exit "$rc"
