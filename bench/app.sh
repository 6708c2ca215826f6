#!/usr/bin/env bash
# Benchmark: time to the billing page's data, on a first load and on a
# refresh, for the example app's /api/billing (examples/nextjs: one query,
# billing.dashboard() and friends) against the seed's route ported to Node
# (bench/node/route.js, served over HTTP by bench/node/serve.js: every
# message of 6 months fetched and priced in JavaScript), on a throwaway
# cluster filled by bench/generate.sql. See bench/README.md "The app".
#
#   bench/app.sh [--messages N] [--runs R] [--no-setup] [--no-seed]
#
#   --messages N  rows in public.messages (default 1000000; the README's
#                 figures are for 1000000 and 10000000)
#   --runs R      refreshes timed after the first load (default 5)
#   --no-setup    reuse the installed extension and the built app (no
#                 tools/setup.sh, and next build only if .next is missing)
#   --no-seed     leave the seed's route out
#   --existing    the caller's cluster (PG* variables) and its
#                 public.messages instead of a throwaway one: tracks it,
#                 its profiles and a conversations table if not done yet
#
# Both servers run in production mode on 127.0.0.1 (next start; node), each
# started fresh, so "first" includes the pool's first connection and the
# query's first planning. Timed: the HTTP GET of /api/billing until its body
# is read (both), and in chromium (the example app only) the page's own
# fetch-and-parse time and navigation start (first) or the Refresh click
# (refresh) to the data shown. Medians of the refreshes. The report goes to
# stdout and bench/results/app-<date>-<messages>.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
# shellcheck source=bench/lib.sh
. bench/lib.sh

messages=1000000 runs=5 setup=1 seed=1 existing=0
while (($#)); do
    case $1 in
        --messages) messages=${2:-}; shift ;;
        --runs) runs=${2:-}; shift ;;
        --no-setup) setup=0 ;;
        --no-seed) seed=0 ;;
        --existing) existing=1 ;;
        -h | --help) sed -n '9,20s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "app.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
for n in "$messages" "$runs"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "app.sh: --messages and --runs take a positive integer, got '$n'" >&2; exit 2; }
done

((setup)) && bash tools/setup.sh >&2
load_before=$(load_average)

# shellcheck source=tools/cluster.sh
. tools/cluster.sh
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    ((existing)) || cluster_stop
}
trap cleanup EXIT

app=$root/examples/nextjs
if ((setup)) || [[ ! -d $app/node_modules ]]; then
    log "npm ci (examples/nextjs)"
    (cd "$app" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
if ((setup)) || [[ ! -f $app/.next/BUILD_ID ]]; then
    log "next build (examples/nextjs)"
    (cd "$app" && NEXT_TELEMETRY_DISABLED=1 node node_modules/next/dist/bin/next build >/dev/null)
fi
if ((seed)) && { ((setup)) || [[ ! -d bench/node/node_modules ]]; }; then
    log "npm ci (bench/node)"
    (cd bench/node && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# shellcheck source=bench/cluster-settings.sh
. bench/cluster-settings.sh
if ((existing)); then
    # The caller's cluster (PG* variables), its public.messages already
    # generated: what is missing of the rest is added below.
    messages=$(pg -At -c 'SELECT count(*) FROM public.messages')
    log "the existing cluster: $messages messages"
else
    log "starting a throwaway cluster (bench settings)"
    cluster_start "${bench_cluster_settings[@]}"
    pg -c 'CREATE EXTENSION billing'
    log "generating $messages messages (bench/generate.sql)"
    start=$SECONDS
    pg -v messages="$messages" -f bench/generate.sql
    log "generated in $((SECONDS - start)) s"
fi
log "tracking messages and profiles, merging; the app's conversations table"
start=$SECONDS
pg <<'SQL' >/dev/null
SET client_min_messages = warning;
SELECT FROM billing.track_messages('public.messages')
 WHERE NOT EXISTS (SELECT 1 FROM billing.tracked_tables WHERE relation = 'public.messages'::regclass);
SELECT FROM billing.track_profiles('public.profiles')
 WHERE NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'public.profiles'::regclass AND tgname = 'billing_track_profiles');
SELECT FROM billing.merge();
CREATE TABLE IF NOT EXISTS public.conversations (id uuid PRIMARY KEY, title text NOT NULL);
INSERT INTO public.conversations SELECT DISTINCT conversation_id, 'Conversation ' || left(conversation_id::text, 8)
  FROM public.messages
ON CONFLICT (id) DO NOTHING;
INSERT INTO billing.budgets (name, amount) VALUES ('monthly', 1000) ON CONFLICT (name) DO NOTHING;
VACUUM ANALYZE;
SQL
log "ready in $((SECONDS - start)) s"

free_port() {
    local p
    for ((p = $1; p < $1 + 100; p++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    return 1
}
wait_http() {  # wait_http URL PID
    local i
    for ((i = 0; i < 240; i++)); do
        curl_ok=$(node -e "fetch('$1', {method: 'HEAD'}).then(r => console.log(r.status), () => console.log(0))")
        [[ $curl_ok != 0 ]] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}
# start_app: a fresh next start; sets app_url.
start_app() {
    local port
    port=$(free_port 3300)
    (cd "$app" && NEXT_TELEMETRY_DISABLED=1 exec setsid node node_modules/next/dist/bin/next start -H 127.0.0.1 -p "$port") \
        >/dev/null 2>&1 &
    pids+=($!)
    app_url=http://127.0.0.1:$port
    wait_http "$app_url/billing" "$!" || { echo "app.sh: next start failed" >&2; exit 1; }
}
start_seed() {
    local port
    port=$(free_port 3400)
    # (the heap limit bench/dashboard.sh falls back to: 10M messages' rows
    # do not fit in Node's default heap)
    PORT=$port setsid node --max-old-space-size=16384 bench/node/serve.js >/dev/null 2>&1 &
    pids+=($!)
    seed_url=http://127.0.0.1:$port
    wait_http "$seed_url/" "$!" || { echo "app.sh: bench/node/serve.js failed" >&2; exit 1; }
}
stop_last() {
    local pid=${pids[-1]}
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset 'pids[-1]'
}
# median of a JSON array on stdin
median() { node -e 'const a = JSON.parse(require("fs").readFileSync(0, "utf8")).sort((x, y) => x - y);
                    const m = a.length >> 1; console.log((a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2).toFixed(1))'; }
field() { node -e "const o = JSON.parse(process.argv[1]); const v = o['$2']; console.log(Array.isArray(v) ? JSON.stringify(v) : v.toFixed(1))" "$1"; }

log "the example app: HTTP"
start_app
app_http=$(node bench/app-measure.mjs http "$app_url/api/billing" "$runs")
stop_last
log "the example app: chromium"
start_app
app_browser=$(APP_DIR=$app node bench/app-measure.mjs browser "$app_url/billing" "$runs")
stop_last
if ((seed)); then
    log "the seed's route (bench/node/serve.js): HTTP"
    start_seed
    seed_http=$(node bench/app-measure.mjs http "$seed_url/api/billing" "$runs" 2>&1) ||
        seed_http='{"error": true}'
    stop_last
fi

report=$(
    echo "## Time to the billing page's data, $messages messages"
    echo
    echo "$(utc_time); $(server_version | cut -d ' ' -f 1-2); billing $(billing_version); Node $(node --version); bench settings; $runs refreshes (median)."
    machine_line "$load_before" "$(load_average)"
    echo "Command: \`bash bench/app.sh --messages $messages --runs $runs\`"
    echo
    echo "| | first load (ms) | refresh, median (ms) | payload (bytes) |"
    echo "|---|---:|---:|---:|"
    echo "| example app, GET /api/billing (one query) | $(field "$app_http" first_ms) | $(field "$app_http" refresh_ms | median) | $(field "$app_http" bytes | cut -d . -f 1) |"
    echo "| example app in chromium: fetch + parse (page's own figure) | $(field "$app_browser" first_fetch_ms) | $(field "$app_browser" refresh_fetch_ms | median) | |"
    echo "| example app in chromium: navigation / click to data shown | $(field "$app_browser" first_shown_ms) | $(field "$app_browser" refresh_shown_ms | median) | |"
    if ((seed)); then
        if [[ $seed_http == *'"first_ms"'* ]]; then
            echo "| seed's route in Node (bench/node/serve.js), GET /api/billing | $(field "$seed_http" first_ms) | $(field "$seed_http" refresh_ms | median) | $(field "$seed_http" bytes | cut -d . -f 1) |"
            echo
            echo "Seed / example app, HTTP: first load $(node -e "console.log(($(field "$seed_http" first_ms) / $(field "$app_http" first_ms)).toFixed(1))")x, refresh $(node -e "console.log(($(field "$seed_http" refresh_ms | median) / $(field "$app_http" refresh_ms | median)).toFixed(1))")x."
        else
            echo "| seed's route in Node (bench/node/serve.js) | failed: ${seed_http:0:200} | | |"
        fi
    fi
)
echo "$report"
mkdir -p bench/results
echo "$report" >"bench/results/app-$(utc_day)-$messages.md"
log "report saved: bench/results/app-$(utc_day)-$messages.md"
