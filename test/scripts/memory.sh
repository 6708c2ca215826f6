#!/usr/bin/env bash
# No per-row leak: the cost aggregates run in bounded memory. The backend's
# peak resident memory (VmHWM) after aggregating 2M rows must not exceed the
# peak after 200k rows by more than a small margin, and grouped by 100,000
# conversations, openai_cost's hash table must stay within 2x that of sum().
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
db=billing_memory
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
trap 'dropdb --if-exists "$db"' EXIT
psql_q -d "$db" <<'SQL'
CREATE EXTENSION billing;
CREATE TABLE m AS
SELECT i AS id, (i % 100000) AS conversation_id,
       CASE WHEN i % 2 = 0 THEN '{}'::jsonb
            ELSE jsonb_build_object('prompt_tokens', 100 + i % 1000, 'completion_tokens', 50,
                                    'model', CASE WHEN i % 3 = 0 THEN 'gpt-4o' ELSE 'gpt-4o-mini-2024-07-18' END) END AS data,
       timestamptz '2026-01-01' + (i % 300) * interval '1 day' AS created_at
  FROM generate_series(1, 2000000) AS i;
VACUUM ANALYZE m;
SQL

# Peak memory of one backend after aggregating the first N rows, in kB.
peak_after() {
    local rows=$1
    psql_q -d "$db" <<SQL | tail -1
SET max_parallel_workers_per_gather = 0;
SELECT billing.openai_cost(data, created_at) IS NOT NULL FROM m WHERE id <= $rows;
SELECT billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint,
                           (data->>'completion_tokens')::bigint, created_at) IS NOT NULL FROM m WHERE id <= $rows;
SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmHWM:\s+(\d+)'))[1];
SQL
}
small=$(peak_after 200000)
large=$(peak_after 2000000)
echo "peak backend memory: ${small} kB after 200k rows, ${large} kB after 2M rows"
# 10x the rows: a per-row leak of even 8 bytes would add ~14 MB.
if (( large > small + 4096 )); then
    echo "FAIL: memory grows with the number of rows"; exit 1
fi

hash_kb() {
    psql_q -d "$db" <<SQL | grep -oE 'Memory Usage: [0-9]+kB' | grep -oE '[0-9]+' | head -1
SET max_parallel_workers_per_gather = 0;
SET work_mem = '1GB';
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT conversation_id, $1 FROM m GROUP BY conversation_id;
SQL
}
ours=$(hash_kb "billing.openai_cost(data, created_at)")
sums=$(hash_kb "sum((data->>'prompt_tokens')::bigint), sum((data->>'completion_tokens')::bigint)")
echo "grouped by 100,000 conversations: openai_cost ${ours} kB, sum() x2 ${sums} kB"
if (( ours > 2 * sums )); then
    echo "FAIL: openai_cost uses more than twice the memory of sum()"; exit 1
fi
echo "memory: bounded"
