#!/usr/bin/env bash
# Budget alerts fire exactly once (README "Budgets and alerts"):
#
#  1. under load: 8 pgbench clients insert replies (one in five inside a
#     transaction that rolls back) while billing.merge() and
#     billing.check_alerts() run in loops of their own; then a last merge.
#     The alerts must be exactly the thresholds that the final spend
#     reaches (recomputed here: every reply costs 0.00045 USD), each once,
#     each fired at or above its threshold, and a listener must have
#     received exactly one NOTIFY billing_alert per alert;
#  2. through an immediate-mode crash: a merge that fired alerts but had not
#     committed leaves none (and every committed reply is there); the next
#     merge fires them, once. Alerts committed before a crash are there
#     after it and do not fire again.
#
#   test/scripts/budget_alerts.sh
#
# Environment: BUDGET_CLIENTS (8), BUDGET_TRANSACTIONS (per client, 300).
# Runs against the cluster of tools/test.sh (PG* and BILLING_CLUSTER_DIR in
# the environment; it crashes and restarts it and leaves it running);
# without one it starts its own.
set -euo pipefail

root=${BILLING_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$root"
# shellcheck source=tools/cluster.sh
. tools/cluster.sh
cluster_use_or_start

db=billing_budget_alerts
clients=${BUDGET_CLIENTS:-8}
transactions=${BUDGET_TRANSACTIONS:-300}
tmp=$(mktemp -d)
chmod 0755 "$tmp"
bg_pids=()
q() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }

cleanup() {
    local rc=$? pid
    for pid in "${bg_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n ${BILLING_CLUSTER_DIR:-} ]] && ! cluster_pg_ctl status >/dev/null 2>&1; then
        echo "cluster down at exit: restarting it"
        cluster_restart || true
    fi
    if ((rc == 0)); then
        dropdb --if-exists "$db" >/dev/null 2>&1 || true
    else
        echo "(database $db kept)"
    fi
    rm -rf -- "$tmp"
    ((CLUSTER_OWNED)) && cluster_stop
    exit "$rc"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; exit 1; }

dropdb --if-exists "$db" >/dev/null 2>&1 || true
createdb "$db"
q >/dev/null <<'SQL'
CREATE EXTENSION billing;
CREATE TABLE messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                       created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON messages (created_at);
SELECT billing.track_messages('messages');
-- Budgets that exist since the previous month (so that a run across a
-- month's end checks both months). Each reply costs 1000 x 0.15/1M + 500 x
-- 0.60/1M = 0.00045; about 1,900 replies (0.86 USD) commit, a quarter of
-- them in conversation "hot".
INSERT INTO billing.budgets (name, scope, model, conversation_id, amount, thresholds, created_at)
SELECT b.name, b.scope, b.model, b.conversation_id, b.amount, b.thresholds,
       billing.month_start((billing.month_of(now()) - interval '1 month')::date)
  FROM (VALUES ('all',  'all',          NULL,          NULL,  1.0, '{50,80,100}'::numeric[]),
               ('pair', 'openai',       NULL,          NULL,  1.0, '{50,51}'),
               ('mini', 'model',        'gpt-4o-mini', NULL,  1.2, '{10,20,30,40,50,60,70,80,90,100}'),
               ('hot',  'conversation', NULL,          'hot', 0.2, '{50,80,100}'),
               ('aws',  'aws',          NULL,          NULL,  1.0, '{50,80,100}')) AS b(name, scope, model, conversation_id, amount, thresholds);
SQL

cat >"$tmp/insert.sql" <<'SQL'
\set c random(1, 4)
INSERT INTO messages (conversation_id, role, content, data)
VALUES (CASE WHEN :c = 1 THEN 'hot' ELSE 'c' || :c END, 'assistant', 'x',
        '{"model": "gpt-4o-mini", "prompt_tokens": 1000, "completion_tokens": 500}');
SQL
cat >"$tmp/rollback.sql" <<'SQL'
\set c random(1, 4)
BEGIN;
INSERT INTO messages (conversation_id, role, content, data)
VALUES (CASE WHEN :c = 1 THEN 'hot' ELSE 'c' || :c END, 'assistant', 'rolled back',
        '{"model": "gpt-4o-mini", "prompt_tokens": 1000, "completion_tokens": 500}');
ROLLBACK;
SQL

# --- 1. under load ------------------------------------------------------------
# The listener: a psql session that LISTENs and runs a statement every
# 0.1 s (psql prints the notifications it received after each).
{ echo 'LISTEN billing_alert;'; while sleep 0.1; do echo 'SELECT 1;'; done; } |
    psql -X -q -At -d "$db" >"$tmp/notify.out" 2>&1 &
listener=$!
bg_pids+=("$listener")
echo "==> $clients clients x $transactions transactions (one in five rolled back), with merge() and check_alerts() in loops"
pgbench -n -c "$clients" -j 2 -t "$transactions" -f "$tmp/insert.sql@4" -f "$tmp/rollback.sql@1" "$db" \
    >"$tmp/pgbench.out" 2>&1 &
load=$!
bg_pids+=("$load")
( while kill -0 "$load" 2>/dev/null; do q -c 'SELECT billing.merge()' >/dev/null; sleep 0.3; done ) &
bg_pids+=($!)
merger=$!
( while kill -0 "$load" 2>/dev/null; do q -c 'SELECT billing.check_alerts()' >/dev/null; sleep 0.2; done ) &
bg_pids+=($!)
checker=$!
wait "$load" || { cat "$tmp/pgbench.out"; fail "pgbench failed"; }
wait "$merger" || fail "a merge failed"
wait "$checker" || fail "a check failed"
grep -E '^number of (transactions actually processed|failed transactions)' "$tmp/pgbench.out" || true
echo "alerts fired during the load: $(q -c 'SELECT count(*) FROM billing.alerts')"
q -c 'SELECT billing.merge()' >/dev/null

# Expected: per month of the replies, each reply 0.00045 USD (recomputed
# from the table, not from billing's figures); a threshold is due when the
# spend reaches amount x threshold / 100. ("aws" has no spend.)
q >"$tmp/check.out" <<'SQL'
CREATE TEMP TABLE spend AS
SELECT billing.month_of(created_at) AS period, count(*) * 0.00045 AS openai,
       count(*) FILTER (WHERE conversation_id = 'hot') * 0.00045 AS hot
  FROM messages GROUP BY 1;
CREATE TEMP TABLE due AS
SELECT b.name AS budget, t AS threshold, s.period
  FROM billing.budgets AS b CROSS JOIN unnest(b.thresholds) AS t CROSS JOIN spend AS s
 WHERE CASE b.scope WHEN 'conversation' THEN s.hot WHEN 'aws' THEN 0 ELSE s.openai END >= b.amount * t / 100;
SELECT 'spend ' || string_agg(to_char(period, 'YYYY-MM') || ': ' || openai || ' (hot ' || hot || ')', ', ') FROM spend;
SELECT 'due ' || count(*) FROM due;
SELECT 'missing ' || coalesce(string_agg(format('%s %s%% %s', budget, threshold, period), ', '), '') FROM
  (SELECT budget, threshold, period FROM due EXCEPT SELECT budget, threshold, period FROM billing.alerts) AS x;
SELECT 'extra ' || coalesce(string_agg(format('%s %s%% %s', budget, threshold, period), ', '), '') FROM
  (SELECT budget, threshold, period FROM billing.alerts EXCEPT SELECT budget, threshold, period FROM due) AS x;
-- Fired when reached: at or above the threshold, at most the final spend.
SELECT 'early ' || count(*) FROM billing.alerts AS a JOIN spend AS s ON s.period = a.period
 WHERE a.spent < a.amount * a.threshold / 100
    OR a.spent > CASE WHEN a.budget = 'hot' THEN s.hot ELSE s.openai END;
SELECT 'alerts ' || count(*) FROM billing.alerts;
SQL
cat "$tmp/check.out"
grep -qx 'missing ' "$tmp/check.out" || fail "due alerts missing"
grep -qx 'extra ' "$tmp/check.out" || fail "alerts that are not due"
grep -qx 'early 0' "$tmp/check.out" || fail "alerts fired below their threshold or above the final spend"
due=$(sed -n 's/^due //p' "$tmp/check.out")
((due > 10)) || fail "only $due alerts due: the load did not cross enough thresholds"

# Every alert notified once: wait (up to 10 s) for the listener.
alerts=$(q -c 'SELECT string_agg(id::text, chr(10) ORDER BY id) FROM billing.alerts')
for ((i = 0; i < 100; i++)); do
    got=$(grep -c 'Asynchronous notification "billing_alert"' "$tmp/notify.out" || true)
    ((got >= due)) && break
    sleep 0.1
done
sleep 0.5
kill "$listener" 2>/dev/null || true
notified=$(sed -n 's/^Asynchronous notification "billing_alert" with payload "{"id": \([0-9]*\),.*/\1/p' "$tmp/notify.out" | sort -n)
if [[ "$notified" != "$alerts" ]]; then
    echo "alerts: $(echo "$alerts" | wc -l), notifications: $(echo "$notified" | grep -c . || true)"
    diff <(echo "$alerts") <(echo "$notified") | head -20
    fail "the notifications are not one per alert"
fi
echo "load: $due alerts due, each fired once and notified once"

# --- 2. an immediate-mode crash ------------------------------------------------
echo "==> a merge that fired alerts is cut by a crash before it commits"
q >/dev/null <<'SQL'
INSERT INTO billing.budgets (name, scope, conversation_id, amount, created_at)
VALUES ('crash', 'conversation', 'crash', 0.001, now());
-- 3 x 0.00045 = 0.00135: past 50%, 80% and 100% of 0.001.
INSERT INTO messages (conversation_id, role, content, data)
SELECT 'crash', 'assistant', 'x', '{"model": "gpt-4o-mini", "prompt_tokens": 1000, "completion_tokens": 500}'
  FROM generate_series(1, 3);
SQL
committed=$(q -c 'SELECT count(*) FROM messages')
q -c "BEGIN" -c "SELECT billing.merge()" -c "SELECT pg_sleep(300)" >/dev/null 2>&1 &
bg_pids+=($!)
for ((i = 0; i < 100; i++)); do
    [[ $(q -c "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = 'SELECT pg_sleep(300)'") == 1 ]] && break
    sleep 0.1
done
((i < 100)) || fail "the merge did not get to its sleep"
seen=$(q -c "SELECT count(*) FROM billing.alerts WHERE budget = 'crash'")
[[ $seen == 0 ]] || fail "alerts of an uncommitted merge are visible ($seen)"
cluster_crash
echo "$(date +%T) server crashed (pg_ctl stop -m immediate)"
cluster_restart
echo "$(date +%T) server restarted"
after=$(q -c "SELECT count(*) FROM billing.alerts WHERE budget = 'crash'")
[[ $after == 0 ]] || fail "$after alerts of the cut merge survived the crash"
[[ $(q -c 'SELECT count(*) FROM messages') == "$committed" ]] || fail "committed replies lost in the crash"
fired=$(q -c "SELECT billing.check_alerts()")
again=$(q -c "SELECT billing.merge() >= 0" -c "SELECT count(*) FROM billing.alerts WHERE budget = 'crash'")
[[ $fired == 3 && $again == $'t\n3' ]] || fail "after the crash: fired $fired, then $again (want 3, then t and 3)"
echo "after the crash: no alert of the cut merge; the next check fired its 3 alerts, once"

echo "==> alerts committed just before a crash"
q >/dev/null <<'SQL'
INSERT INTO billing.budgets (name, scope, conversation_id, amount, created_at)
VALUES ('crash2', 'conversation', 'crash2', 0.0004, now());
INSERT INTO messages (conversation_id, role, content, data)
VALUES ('crash2', 'assistant', 'x', '{"model": "gpt-4o-mini", "prompt_tokens": 1000, "completion_tokens": 500}');
SQL
before=$(q -c "SELECT billing.merge() >= 0" -c "SELECT string_agg(id || ' ' || threshold, ',' ORDER BY id) FROM billing.alerts WHERE budget = 'crash2'")
cluster_crash
cluster_restart
after=$(q -c "SELECT billing.merge() >= 0" -c "SELECT string_agg(id || ' ' || threshold, ',' ORDER BY id) FROM billing.alerts WHERE budget = 'crash2'")
[[ $before == "$after" && $before == t$'\n'*','*','* ]] || fail "alerts before the crash '$before', after '$after'"
undelivered=$(q -c "SELECT count(*) FROM billing.alerts WHERE delivered_at IS NULL")
echo "committed alerts kept, not fired again ($undelivered undelivered alerts wait for delivery)"
echo "budget_alerts: OK"
