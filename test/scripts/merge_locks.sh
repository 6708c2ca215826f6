#!/usr/bin/env bash
# A transaction that holds a lock on a tracked table's rows (an app's
# transaction left open, or any role with UPDATE on the table) cannot stall
# billing.merge() for everyone. The backfill of a table locks the rows it
# records FOR SHARE; here a row lock held by another session makes it wait
# billing.merge_lock_timeout (500 ms here), then that table is left for the
# next merge with a WARNING, its figures read from the table meanwhile, and
# the other tracked table is merged. Once the lock goes, the next merge
# takes the table in. Runs against the cluster tools/test.sh started
# (PGHOST/PGPORT/PGUSER in the environment).
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
db=billing_merge_locks
holder=
trap '[[ -n $holder ]] && kill "$holder" 2>/dev/null; dropdb --if-exists "$db"' EXIT
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
# By hand (gpt-4o $2.50 / $10.00 per 1M tokens, gpt-4o-mini $0.15 / $0.60):
#   held, November 2026: 'sixteen chars!!!' (user, 4 tokens); a reply
#   without usage 'twelve chars' (3 completion tokens, prompt 4, priced as
#   gpt-4o-mini: 4 x 0.15/1M + 3 x 0.60/1M = 0.0000024); gpt-4o 1000 + 100
#   (0.0025 + 0.001 = 0.0035): 0.0035024, 3 messages.
#   other, October 2026: gpt-4o 100 + 50 (0.00025 + 0.0005 = 0.00075).
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION billing;
CREATE TABLE held (id bigint PRIMARY KEY, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
INSERT INTO held VALUES
  (1, 'a', 'user', 'sixteen chars!!!', '{}', '2026-11-03 10:00+00'),
  (2, 'a', 'assistant', 'twelve chars', '{}', '2026-11-03 10:01+00'),
  (3, 'a', 'assistant', 'an answer', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 100}', '2026-11-03 10:02+00');
CREATE TABLE other (id bigint PRIMARY KEY, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
SELECT billing.track_messages('other');
INSERT INTO other VALUES (1, 'o', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-10-05 00:00+00');
SELECT billing.track_messages('held', backfill => false);
SQL
figures="SELECT string_agg(format('%s|%s|%s', month, cost, messages), ',' ORDER BY month) FROM billing.monthly_history WHERE source = 'openai'"
want='2026-10-01|0.00075|1,2026-11-01|0.0035024|3'
fail=0

# Another session holds a lock on the reply without usage, which the backfill records.
psql -X -q -d "$db" -c "BEGIN; UPDATE held SET content = content WHERE id = 2; SELECT pg_sleep(30); COMMIT;" >/dev/null &
holder=$!
for _ in $(seq 100); do
    [[ $(psql_q -d "$db" -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db' AND query LIKE '%pg_sleep(30)%' AND wait_event = 'PgSleep'") == 1 ]] && break
    sleep 0.1
done
start=$(date +%s%N)
out=$(psql_q -d "$db" -c "SET lock_timeout = '1min'" -c "SET billing.merge_lock_timeout = '500ms'" \
             -c "SELECT billing.merge()" -c "SHOW lock_timeout" 2>&1)
ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [[ $out != *"WARNING:  billing: merge could not take in tracked table public.held: canceling statement due to lock timeout"* ]]; then
    echo "FAIL: the merge against a held row lock said: $out"; fail=1
fi
((ms < 10000)) || { echo "FAIL: the merge waited ${ms} ms for the held lock"; fail=1; }
# (the session's own lock_timeout, longer, is its own again after the merge)
[[ $(tail -n 1 <<<"$out") == 1min ]] || { echo "FAIL: lock_timeout after the merge: $(tail -n 1 <<<"$out") (want 1min)"; fail=1; }
state=$(psql_q -d "$db" -c "SELECT string_agg(format('%s:%s', relation, backfilled), ',' ORDER BY id) FROM billing.tracked_tables")
ledger=$(psql_q -d "$db" -c "SELECT count(*) FROM billing.usage_ledger")
got=$(psql_q -d "$db" -c "$figures")
[[ $state == 'other:t,held:f' ]] || { echo "FAIL: after the merge that timed out: $state (want other:t,held:f)"; fail=1; }
[[ $ledger == 0 ]] || { echo "FAIL: the other table's ledger was not merged: $ledger rows left"; fail=1; }
[[ $got == "$want" ]] || { echo "FAIL: figures while the table waits: $got (want $want)"; fail=1; }
echo "a held row lock: merge returned in ${ms} ms, the table left for the next merge, the other merged; figures $got"

# The lock gone, the next merge takes the table in.
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
holder=
psql_q -d "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$db' AND pid <> pg_backend_pid()" >/dev/null
psql_q -d "$db" -c "SELECT billing.merge()" >/dev/null
state=$(psql_q -d "$db" -c "SELECT string_agg(format('%s:%s', relation, backfilled), ',' ORDER BY id) FROM billing.tracked_tables")
got=$(psql_q -d "$db" -c "$figures")
[[ $state == 'other:t,held:t' ]] || { echo "FAIL: after the lock went: $state (want other:t,held:t)"; fail=1; }
[[ $got == "$want" ]] || { echo "FAIL: figures after the table was taken in: $got (want $want)"; fail=1; }
echo "the lock gone: the next merge took the table in; figures $got"

# A DETACH PARTITION ... CONCURRENTLY that waits on an old snapshot and is
# cancelled leaves the partition "detach pending". Writes to it must still
# work (billing's trigger, copied onto it, still counts them with the
# table), and once the detach is finished (FINALIZE) the table is taken in
# anew without the partition. By hand: October's partition holds
# gpt-4o 1M prompt tokens ($2.50), November's 100 + 50 tokens ($0.00075).
psql_q -d "$db" >/dev/null <<'SQL'
CREATE TABLE pm (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamptz NOT NULL,
                 PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
-- (October's partition is itself partitioned: the pending link is then an
-- ancestor's of the table a row is written to)
CREATE TABLE pm_2026_10 PARTITION OF pm FOR VALUES FROM ('2026-10-01') TO ('2026-11-01') PARTITION BY RANGE (created_at);
CREATE TABLE pm_2026_10a PARTITION OF pm_2026_10 FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
CREATE TABLE pm_2026_11 PARTITION OF pm FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
INSERT INTO pm VALUES
  (1, 'p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}', '2026-10-02 00:00+00'),
  (2, 'p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-02 00:00+00');
SELECT billing.untrack_messages('held');
SELECT billing.untrack_messages('other');
SELECT billing.track_messages('pm');
SQL
psql -X -q -d "$db" -c "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pm; SELECT pg_sleep(30); COMMIT;" >/dev/null &
holder=$!
for _ in $(seq 100); do
    [[ $(psql_q -d "$db" -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$db' AND query LIKE '%pg_sleep(30)%' AND wait_event = 'PgSleep'") == 1 ]] && break
    sleep 0.1
done
psql_q -d "$db" -c "SET statement_timeout = '1s'" -c "ALTER TABLE pm DETACH PARTITION pm_2026_10 CONCURRENTLY" >/dev/null 2>&1 || true
pending=$(psql_q -d "$db" -c "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'pm_2026_10'::regclass AND inhdetachpending")
writes=$(psql_q -d "$db" -c "INSERT INTO pm_2026_10 VALUES (3, 'p', 'user', 'hi', '{}', '2026-10-03 00:00+00')" \
                          -c "DELETE FROM pm_2026_10 WHERE id = 3" -c "SELECT 'ok'" 2>&1)
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
holder=
# (a merge meanwhile says so, with the statement that ends it)
said=$(psql_q -d "$db" -c "SELECT billing.merge()" 2>&1 >/dev/null)
psql_q -d "$db" -c "ALTER TABLE pm DETACH PARTITION pm_2026_10 FINALIZE" -c "SELECT billing.merge()" >/dev/null
got=$(psql_q -d "$db" -c "$figures")
[[ $pending == 1 ]] || { echo "FAIL: the cancelled DETACH CONCURRENTLY left no pending detach ($pending)"; fail=1; }
[[ $writes == ok ]] || { echo "FAIL: writes to a partition whose detach is pending: $writes"; fail=1; }
[[ $said == *"WARNING:  billing: a partition of a tracked table is still being detached"*"HINT:  ALTER TABLE public.pm DETACH PARTITION public.pm_2026_10 FINALIZE;" ]] ||
    { echo "FAIL: a merge while a detach is pending said: $said"; fail=1; }
[[ $got == '2026-11-01|0.00075|1' ]] || { echo "FAIL: figures after DETACH ... FINALIZE: $got (want 2026-11-01|0.00075|1)"; fail=1; }
echo "a pending DETACH CONCURRENTLY: writes to the partition work, merge() warns with the FINALIZE to run; after FINALIZE, figures $got"

# A statement_timeout shorter than one merge cancels it every time: the
# error says so in one line, with the way out, and the next merge without
# it does the work. 100,000 replies of gpt-4o 100 + 50 tokens in November
# make a merge of seconds (the timeout, 200 ms, fires inside it): November
# 0.00075 + 100,000 x 0.00075 = 75.00075, 100,001 messages.
psql_q -d "$db" -c "INSERT INTO pm SELECT 1000 + g, 'q' || (g % 100), 'assistant', 'x',
                           '{\"model\": \"gpt-4o\", \"prompt_tokens\": 100, \"completion_tokens\": 50}',
                           timestamptz '2026-11-05 00:00+00' + g * interval '1 second'
                      FROM generate_series(1, 100000) AS g" >/dev/null
said=$(psql_q -d "$db" -c "SET statement_timeout = '200ms'" -c "SELECT billing.merge()" 2>&1 >/dev/null || true)
[[ $said == "ERROR:  billing: billing.merge() was cancelled by statement_timeout (200ms)"*"HINT:  Run it without a time limit: ALTER ROLE"* ]] ||
    { echo "FAIL: a merge cancelled by statement_timeout said: $said"; fail=1; }
lines=$(wc -l <<<"$said")
((lines <= 5)) || { echo "FAIL: the cancelled merge's error took $lines lines"; fail=1; }
psql_q -d "$db" -c "SELECT billing.merge()" >/dev/null
got=$(psql_q -d "$db" -c "$figures")
[[ $got == '2026-11-01|75.00075|100001' ]] || { echo "FAIL: figures after a merge without the timeout: $got (want 2026-11-01|75.00075|100001)"; fail=1; }
echo "a merge cancelled by statement_timeout says so in $lines lines; the next one merged, figures $got"

# At SERIALIZABLE a merge warns: its reads would make the app's serializable
# transactions fail.
said=$(psql_q -d "$db" -c "BEGIN ISOLATION LEVEL SERIALIZABLE" -c "SELECT billing.merge()" -c "COMMIT" 2>&1 >/dev/null)
[[ $said == "WARNING:  billing: merge() runs at SERIALIZABLE isolation"*"HINT:  Run it at READ COMMITTED"* ]] ||
    { echo "FAIL: a merge at SERIALIZABLE said: $said"; fail=1; }
said=$(psql_q -d "$db" -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT billing.merge()" -c "COMMIT" 2>&1 >/dev/null)
[[ -z $said ]] || { echo "FAIL: a merge at REPEATABLE READ said: $said"; fail=1; }
echo "a merge at SERIALIZABLE warns, at REPEATABLE READ not"
exit $fail
