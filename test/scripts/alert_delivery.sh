#!/usr/bin/env bash
# The alert delivery program (tools/alert-delivery, README "Delivering
# alerts") end to end, against a local HTTP server standing in for a Slack
# incoming webhook (test/scripts/lib/webhook_server.js) and an e-mail
# command that writes to a file, running as a role that is granted only
# what the README grants:
#
#  1. normal delivery: alerts fired while the program listens are posted
#     and mailed once each, marked delivered, one attempt each;
#  2. alerts fired while the program was down are delivered when it starts;
#  3. the webhook server down for a while: the program retries with
#     backoff (attempts and last_error recorded, nothing marked delivered),
#     and once the server is up again the alert is delivered, once;
#  4. two programs at once on 40 alerts: each alert is posted once, by one
#     of them, and both took a share.
# Every alert is then delivered, and the server received each id once.
#
#   test/scripts/alert_delivery.sh
#
# Needs node and npm (tools/setup.sh installs them); runs npm ci in
# tools/alert-delivery. Runs against the cluster of tools/test.sh (PG* and
# BILLING_CLUSTER_DIR in the environment); without one it starts its own.
set -euo pipefail

root=${BILLING_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$root"
# shellcheck source=tools/cluster.sh
. tools/cluster.sh
cluster_use_or_start

db=billing_alert_delivery
role=billing_alert_delivery
tool=tools/alert-delivery
tmp=$(mktemp -d)
server_pid='' server_port=0
declare -A program_pids=()
q() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }

cleanup() {
    local rc=$? name
    for name in "${!program_pids[@]}"; do
        kill "${program_pids[$name]}" 2>/dev/null || true
        wait "${program_pids[$name]}" 2>/dev/null || true
    done
    if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    if ((rc != 0)); then
        for f in "$tmp"/*.log; do
            [[ -e $f ]] || continue
            echo "---- last lines of $(basename "$f") ----"
            tail -n 15 "$f"
        done
        echo "(database $db kept)"
    else
        dropdb --if-exists "$db" >/dev/null 2>&1 || true
        psql -X -q -d postgres -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1 || true
    fi
    rm -rf -- "$tmp"
    ((CLUSTER_OWNED)) && cluster_stop
    exit "$rc"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

# wait_for SECONDS SQL: until SQL returns t (every 0.1 s), else fail.
wait_for() {
    local deadline=$((SECONDS + $1))
    until [[ $(q -c "$2") == t ]]; do
        ((SECONDS < deadline)) || fail "not within $1 s: $2"
        sleep 0.1
    done
}

for cmd in node npm; do
    command -v "$cmd" >/dev/null || fail "$cmd missing (tools/setup.sh installs nodejs and npm)"
done
echo "node $(node --version), npm $(npm --version)"
(cd "$tool" && npm ci --no-audit --no-fund --loglevel=error >"$tmp/npm.log" 2>&1) ||
    { cat "$tmp/npm.log"; fail "npm ci in $tool"; }

dropdb --if-exists "$db" >/dev/null 2>&1 || true
psql -X -q -d postgres -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1
createdb "$db"
# The role of README "Delivering alerts": EXECUTE on three functions, no
# table access.
q >/dev/null <<SQL
CREATE EXTENSION billing;
CREATE ROLE $role LOGIN;
GRANT USAGE ON SCHEMA billing TO $role;
GRANT EXECUTE ON FUNCTION billing.claim_alerts(text, integer, interval), billing.alert_delivered(bigint, text),
                          billing.alert_failed(bigint, text, text, interval) TO $role;
-- 100 e-mails: 0.01 USD this month, over every threshold of the budgets below.
SELECT billing.record_usage('ses', 100);
SQL
[[ $(q -c "SELECT has_table_privilege('$role', 'billing.alerts', 'SELECT')") == f ]] ||
    fail "the delivering role can read billing.alerts"
# fire NAME N: a budget of 0.001 USD with N thresholds (1% to N%), all
# reached; check_alerts() fires its N alerts (and their NOTIFY).
fire() {
    [[ $(q -c "INSERT INTO billing.budgets (name, scope, amount, thresholds)
               VALUES ('$1', 'aws', 0.001, ARRAY(SELECT generate_series(1, $2)::numeric));
               SELECT billing.check_alerts();") == "$2" ]] || fail "budget $1 did not fire $2 alerts"
}

# The webhook server: start_server [DELAY_MS] (on the same port once it has one).
start_server() {
    : >"$tmp/server.out"
    node test/scripts/lib/webhook_server.js "$server_port" "$tmp/posts.jsonl" "${1:-0}" >"$tmp/server.out" 2>"$tmp/server.log" &
    server_pid=$!
    local deadline=$((SECONDS + 10))
    until grep -q '^listening' "$tmp/server.out"; do
        ((SECONDS < deadline)) || fail "the webhook server did not start"
        sleep 0.05
    done
    server_port=$(awk '/^listening/ {print $2}' "$tmp/server.out")
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }

# spawn_program NAME [OPTION...]: a delivery program as $role, worker NAME,
# quick retries (0.2 s doubling up to 1 s); listening NAME waits until it
# listens; start_program does both.
spawn_program() {
    local name=$1; shift
    PGUSER=$role PGDATABASE=$db ALERT_WEBHOOK_URL="http://127.0.0.1:$server_port/hook" \
        ALERT_EMAIL_COMMAND="cat >>'$tmp/mail.txt'; echo \"\$ALERT_ID\" >>'$tmp/mail_ids'" \
        ALERT_RETRY_BASE_MS=200 ALERT_RETRY_MAX_MS=1000 ALERT_TIMEOUT_MS=2000 ALERT_LEASE_SECONDS=10 \
        node "$tool/deliver.js" --worker "$name" "$@" >"$tmp/$name.log" 2>&1 &
    program_pids[$name]=$!
}
listening() {
    local deadline=$((SECONDS + 15))
    until grep -q 'listening on billing_alert' "$tmp/$1.log"; do
        kill -0 "${program_pids[$1]}" 2>/dev/null || fail "program $1 exited: $(cat "$tmp/$1.log")"
        ((SECONDS < deadline)) || fail "program $1 does not listen"
        sleep 0.05
    done
}
start_program() { spawn_program "$@"; listening "$1"; }
stop_program() {
    kill -TERM "${program_pids[$1]}"
    wait "${program_pids[$1]}" || fail "program $1 did not stop cleanly"
    unset "program_pids[$1]"
}
# posts_of ID: how many times the server received alert ID.
posts_of() { grep -c "\"key\":\"billing-alert-$1\"" "$tmp/posts.jsonl" || true; }

start_server

# 1. Normal delivery.
start_program a
fire one 3
wait_for 10 "SELECT count(*) = 3 FROM billing.alerts WHERE budget = 'one' AND delivered_at IS NOT NULL"
[[ $(q -c "SELECT string_agg(DISTINCT claimed_by || ':' || attempts, ',') FROM billing.alerts WHERE budget = 'one'") == a:1 ]] ||
    fail "budget one's alerts: not delivered by a in one attempt each"
for id in $(q -c "SELECT id FROM billing.alerts WHERE budget = 'one'"); do
    [[ $(posts_of "$id") == 1 ]] || fail "alert $id posted $(posts_of "$id") times"
    [[ $(grep -cx "$id" "$tmp/mail_ids") == 1 ]] || fail "alert $id mailed other than once"
done
# shellcheck disable=SC2016 # (literal dollars)
grep -Eq 'Budget \\"one\\" reached 3% in [0-9]{4}-[0-9]{2}: \$0.01 spent of \$0.001 \(scope aws; alert [0-9]+\)' "$tmp/posts.jsonl" ||
    fail "the Slack text of budget one's 3% alert: $(head -c 300 "$tmp/posts.jsonl")"
ok "1. 3 alerts fired while listening: posted and mailed once each, one attempt each" \
   "(fired to delivered: max $(q -c "SELECT round(max(extract(epoch FROM delivered_at - fired_at)) * 1000)
                                       FROM billing.alerts WHERE budget = 'one'") ms)"

# 2. Fired while the program was down: delivered when it starts.
stop_program a
fire two 2
sleep 0.5
[[ $(q -c "SELECT count(*) FROM billing.alerts WHERE delivered_at IS NULL") == 2 ]] || fail "alerts delivered with no program running"
start_program a2
wait_for 10 "SELECT bool_and(delivered_at IS NOT NULL AND claimed_by = 'a2') FROM billing.alerts WHERE budget = 'two'"
ok "2. 2 alerts fired while no program ran: delivered by the next one when it started"

# 3. The server down for a while, then up.
stop_server
fire three 1
id3=$(q -c "SELECT id FROM billing.alerts WHERE budget = 'three'")
wait_for 10 "SELECT attempts >= 3 FROM billing.alerts WHERE id = $id3"
[[ $(q -c "SELECT delivered_at IS NULL AND last_error LIKE 'webhook: %' FROM billing.alerts WHERE id = $id3") == t ]] ||
    fail "alert $id3 while the server is down: $(q -c "SELECT delivered_at, last_error FROM billing.alerts WHERE id = $id3")"
echo "   while down: $(q -c "SELECT attempts || ' attempts, last_error: ' || last_error FROM billing.alerts WHERE id = $id3")"
start_server
wait_for 10 "SELECT delivered_at IS NOT NULL FROM billing.alerts WHERE id = $id3"
[[ $(posts_of "$id3") == 1 ]] || fail "alert $id3 posted $(posts_of "$id3") times after the server came back"
[[ $(grep -cx "$id3" "$tmp/mail_ids") == 1 ]] || fail "alert $id3 mailed other than once"
ok "3. server down: $(q -c "SELECT attempts FROM billing.alerts WHERE id = $id3") attempts with backoff, then one delivery"

# 4. Two programs at once, on 40 alerts fired while neither ran (the server
# takes 20 ms per post so that their work overlaps).
stop_program a2
stop_server
start_server 20
fire four 20
fire five 20
spawn_program b --batch 3
spawn_program c --batch 3
listening b
listening c
wait_for 20 "SELECT count(*) = 40 FROM billing.alerts WHERE budget IN ('four', 'five') AND delivered_at IS NOT NULL"
for id in $(q -c "SELECT id FROM billing.alerts WHERE budget IN ('four', 'five')"); do
    [[ $(posts_of "$id") == 1 ]] || fail "alert $id posted $(posts_of "$id") times by two programs"
    [[ $(grep -cx "$id" "$tmp/mail_ids") == 1 ]] || fail "alert $id mailed other than once by two programs"
done
shares=$(q -c "SELECT string_agg(claimed_by || ' ' || n, ', ' ORDER BY claimed_by)
                 FROM (SELECT claimed_by, count(*) AS n FROM billing.alerts
                        WHERE budget IN ('four', 'five') GROUP BY claimed_by) AS s")
[[ $shares =~ ^b\ [0-9]+,\ c\ [0-9]+$ ]] || fail "the two programs' shares: $shares"
grep -q 'already marked delivered' "$tmp/b.log" "$tmp/c.log" && fail "an alert was delivered by both programs"
ok "4. two programs at once: 40 alerts posted once each ($shares)"

stop_program b
stop_program c
total=$(q -c "SELECT count(*) FROM billing.alerts")
[[ $(q -c "SELECT count(*) FROM billing.alerts WHERE delivered_at IS NOT NULL") == "$total" ]] || fail "undelivered alerts left"
[[ $(wc -l <"$tmp/posts.jsonl") == "$total" ]] || fail "$total alerts, $(wc -l <"$tmp/posts.jsonl") posts"
[[ $(sort "$tmp/mail_ids" | uniq | wc -l) == "$total" && $(wc -l <"$tmp/mail_ids") == "$total" ]] || fail "e-mails: not one per alert"
ok "all $total alerts delivered; the server received each id once, and one e-mail each"
