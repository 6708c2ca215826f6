#!/usr/bin/env bash
# Demo: install what is missing (only what the demo needs), build and
# install the extension, start a throwaway cluster, load tools/demo.sql's
# data (dated relative to today) and print the billing page's figures, the
# dashboard last. One line per step; apt and compiler output go to a log
# file, whose last lines are printed if a step fails. --keep leaves the
# cluster running and prints how to connect. --app also builds the example
# app (examples/nextjs: Next.js, npm ci and next build) and serves it against
# the demo database, with billing's periodic work scheduled on pg_cron when
# the server has it; it prints the page's URL and runs until Ctrl-C.
#
#   tools/demo.sh [--keep] [--app]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

keep=0 app=0
while (($#)); do
    case $1 in
        --keep) keep=1 ;;
        --app) app=1 ;;
        -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "usage: tools/demo.sh [--keep] [--app]" >&2; exit 2 ;;
    esac
    shift
done

log=$(mktemp --suffix=.log "${TMPDIR:-/tmp}/billing-demo.XXXXXX")
chmod 0644 "$log"

if ((app)); then
    bash tools/setup.sh --demo --app --log "$log"
else
    bash tools/setup.sh --demo --log "$log"
fi

# shellcheck source=tools/cluster.sh
. tools/cluster.sh

# With --keep the connection hints are printed even if the demo fails, as
# the kept cluster is then most useful for debugging.
keep_hint() {
    [[ -n ${PGHOST:-} ]] || return 0
    cat <<HINT

==> the cluster keeps running in $BILLING_CLUSTER_DIR (server log: postgresql.log there)
    connect: psql -h $PGHOST -p $PGPORT -U postgres
    e.g.:    psql -h $PGHOST -p $PGPORT -U postgres -At -c 'SELECT jsonb_pretty(billing.dashboard(3, 3))'
    stop:    BILLING_CLUSTER_DIR=$BILLING_CLUSTER_DIR bash -c '. $PWD/tools/cluster.sh && cluster_stop'
HINT
}
removed_hint() {
    cluster_stop
    if [[ -n ${PGHOST:-} ]]; then
        echo
        echo "==> cluster removed; 'bash tools/demo.sh --keep' leaves it running to connect with psql"
    fi
}
app_pid=
app_stop() {
    if [[ -n $app_pid ]]; then
        kill -- "-$app_pid" 2>/dev/null || kill "$app_pid" 2>/dev/null || true
        wait "$app_pid" 2>/dev/null || true
        app_pid=
    fi
}
if ((keep)); then trap 'app_stop; keep_hint' EXIT; else trap 'app_stop; removed_hint' EXIT; fi

echo "==> starting a throwaway PostgreSQL 15 cluster"
# shellcheck disable=SC2119 # (no extra postgresql.conf lines needed)
cluster_start

echo "==> CREATE EXTENSION billing; loading the demo data (tools/demo.sql)"
psql -X -v ON_ERROR_STOP=1 -f tools/demo.sql

((app)) || exit 0

# --- the example app (examples/nextjs) ---------------------------------------
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 9) ? 0 : 1)'; then
    echo "demo.sh: the example app (Next.js 16) needs Node.js >= 20.9, this is $(node --version)" >&2
    exit 1
fi
echo
echo "==> the app's own table of conversation titles, a budget (examples/nextjs/demo.sql)"
psql -X -q -v ON_ERROR_STOP=1 -f examples/nextjs/demo.sql
if psql -X -q -At -c "SELECT 1 FROM pg_settings WHERE name = 'cron.database_name'" | grep -q 1; then
    echo "==> pg_cron: SELECT billing.schedule_maintenance();  (the merge every minute, alert checks)"
    psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' \
        -c 'SELECT job, schedule, command FROM billing.schedule_maintenance()'
else
    echo "==> no pg_cron on this server: the page's figures include unmerged writes all the same;"
    echo "    SELECT billing.merge(); (every minute, from the app) folds them in and fires the alerts"
fi
echo "==> npm ci (examples/nextjs) (log: $log)"
(cd examples/nextjs && npm ci --no-audit --no-fund --loglevel=error) >>"$log" 2>&1 ||
    { echo "demo.sh: npm ci failed; last lines of $log:" >&2; tail -n 40 "$log" >&2; exit 1; }
echo "==> next build (log: $log)"
(cd examples/nextjs && NEXT_TELEMETRY_DISABLED=1 node node_modules/next/dist/bin/next build) >>"$log" 2>&1 ||
    { echo "demo.sh: next build failed; last lines of $log:" >&2; tail -n 40 "$log" >&2; exit 1; }
app_port=${BILLING_APP_PORT:-}
if [[ -z $app_port ]]; then
    for ((p = 3000; p < 3100; p++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then app_port=$p; break; fi
    done
fi
(cd examples/nextjs && NEXT_TELEMETRY_DISABLED=1 exec setsid node node_modules/next/dist/bin/next start \
    -H 127.0.0.1 -p "$app_port") >>"$log" 2>&1 &
app_pid=$!
for ((i = 0; i < 120; i++)); do
    node -e "fetch('http://127.0.0.1:$app_port/api/billing').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))" &&
        break
    kill -0 "$app_pid" 2>/dev/null || { echo "demo.sh: next start failed; last lines of $log:" >&2; tail -n 40 "$log" >&2; exit 1; }
    sleep 0.5
done
echo
echo "==> the billing page: http://127.0.0.1:$app_port/billing"
echo "    its data:         http://127.0.0.1:$app_port/api/billing   (one query: examples/nextjs/lib/billing-query.ts)"
echo "    Ctrl-C stops the app$( ((keep)) && echo '' || echo ' and removes the cluster')"
# Ctrl-C while the app runs ends the demo normally (the EXIT trap cleans up).
trap 'exit 0' INT TERM
wait "$app_pid" || true
