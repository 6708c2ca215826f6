#!/usr/bin/env bash
# Benchmark: per-customer billing at scale. On the bench/generate.sql data
# (public.messages), its conversations shared among C customers through a
# conversations table (conversation id -> user, as the seed's):
#   1. billing.dashboard(customer => ...) for random customers, as the owner
#      and as the app's role reading as that customer (SET billing.customer);
#   2. billing.issue_statements() of the last whole month (in a transaction
#      that is rolled back, so that the database is left as it was);
#   3. tracked inserts (with a customer source) against untracked ones:
#      pgbench, single-row INSERTs of replies with usage, alternating.
#
#   bench/customers.sh [--customers C] [--runs R] [--duration S] [--clients N]
#
#   --customers C  customers (default 10000); conversation k goes to customer
#                  k mod C (in the order of its id)
#   --runs R       dashboard calls timed per form (default 50), after 5 untimed
#   --duration S   seconds per pgbench run (default 20); 3 rounds each
#   --clients N    pgbench clients (default 4; -j min(N, 2))
#
# Takes an existing cluster (PGHOST, PGPORT, PGDATABASE...) whose database has
# the bench/generate.sql data and CREATE EXTENSION billing. Tracks
# public.messages if it is not tracked yet, creates public.bench_conversations
# (kept), the role bench_customer_app (kept) and the tables
# bench_cust_tracked / bench_cust_untracked (dropped at the end).
#
# At 10M messages and 10,000 customers (the figures the README quotes):
#   psql -v messages=10000000 -f bench/generate.sql && bash bench/customers.sh
#
# Progress goes to stderr; the report goes to stdout and to
# bench/results/customers-<date>-<messages>.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

customers=10000
runs=50
duration=20
clients=4

while (($#)); do
    case $1 in
        --customers) customers=${2:-}; shift ;;
        --runs) runs=${2:-}; shift ;;
        --duration) duration=${2:-}; shift ;;
        --clients) clients=${2:-}; shift ;;
        -h | --help) sed -n '11,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "customers.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; pg -c "DROP TABLE IF EXISTS bench_cust_tracked, bench_cust_untracked" >/dev/null 2>&1 || true' EXIT

load_before=$(load_average)
messages=$(pg -At -c "SELECT count(*) FROM public.messages")
log "public.messages: $messages rows; $customers customers"

if [[ $(pg -At -c "SELECT count(*) FROM billing.tracked_tables WHERE relation = 'public.messages'::regclass") == 0 ]]; then
    log "tracking public.messages (backfill)"
    pg -c "SELECT billing.track_messages('public.messages')" >/dev/null
fi
log "merge"
pg -c "SELECT billing.merge()" >/dev/null

log "public.bench_conversations: conversations -> $customers customers"
pg <<SQL >/dev/null
DROP TABLE IF EXISTS public.bench_conversations;
CREATE TABLE public.bench_conversations (id uuid PRIMARY KEY, user_id text NOT NULL);
INSERT INTO public.bench_conversations
SELECT c, 'customer-' || ((row_number() OVER (ORDER BY c) - 1) % $customers)
  FROM (SELECT DISTINCT conversation_id AS c FROM public.messages) AS m;
CREATE INDEX ON public.bench_conversations (user_id);
ANALYZE public.bench_conversations;
SELECT billing.track_customers('public.messages', 'public.bench_conversations');
SQL
# The app's role: reads billing and its own tables.
pg <<'SQL' >/dev/null
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_customer_app') THEN
        CREATE ROLE bench_customer_app;
    END IF;
END $$;
GRANT USAGE ON SCHEMA billing TO bench_customer_app;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO bench_customer_app;
GRANT SELECT ON public.messages, public.bench_conversations TO bench_customer_app;
SQL

# 1. dashboard(customer => ...): R random customers per form.
log "dashboard(customer => ...): $runs calls per form"
{
    echo "SELECT setseed(0.5);"
    for i in $(seq 1 $((runs + 5))); do
        c="customer-$(((i * 7919) % customers))"
        [[ $i == 6 ]] && echo '\timing on'
        echo "SELECT billing.dashboard(customer => '$c');"
    done
} | psql_times >"$tmp/owner.txt"
{
    echo "SET ROLE bench_customer_app;"
    for i in $(seq 1 $((runs + 5))); do
        c="customer-$(((i * 7919) % customers))"
        [[ $i == 6 ]] && echo '\timing on'
        echo "BEGIN; SET LOCAL billing.customer = '$c'; SELECT billing.dashboard(); COMMIT;"
    done
} | psql_times >"$tmp/as_customer_all.txt"
# (BEGIN, SET, the dashboard, COMMIT: keep the dashboard's time, the 3rd of every 4)
awk 'NR % 4 == 3' "$tmp/as_customer_all.txt" >"$tmp/as_customer.txt"
read -r owner_med owner_min owner_max < <(sample_stats 2 1 "$tmp/owner.txt")
read -r cust_med cust_min cust_max < <(sample_stats 2 1 "$tmp/as_customer.txt")
owner_p95=$(sort -g "$tmp/owner.txt" | awk '{ v[n++] = $1 } END { printf "%.2f", v[int(n * 0.95)] }')
cust_p95=$(sort -g "$tmp/as_customer.txt" | awk '{ v[n++] = $1 } END { printf "%.2f", v[int(n * 0.95)] }')

# 2. Issuing the last whole month's statements, rolled back.
month=$(pg -At -c "SELECT (billing.month_of(now()) - interval '1 month')::date")
log "issue_statements('$month') in a transaction that is rolled back"
issue=$(pg -At <<SQL
BEGIN;
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) AS n FROM billing.issue_statements('$month') \gset
SELECT count(*) AS l FROM billing.statement_lines \gset
SELECT :n || ' statements, ' || :l || ' lines, '
       || round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric, 2) || ' s';
ROLLBACK;
SQL
)
log "issued: $issue"

# 3. Tracked (with a customer source) vs untracked inserts.
log "inserts: tracked with a customer source vs untracked, $clients clients, $duration s x 3 rounds each"
pg <<'SQL' >/dev/null
DROP TABLE IF EXISTS bench_cust_tracked, bench_cust_untracked;
CREATE TABLE bench_cust_tracked (LIKE public.messages INCLUDING DEFAULTS INCLUDING INDEXES);
CREATE TABLE bench_cust_untracked (LIKE public.messages INCLUDING DEFAULTS INCLUDING INDEXES);
CREATE INDEX ON bench_cust_tracked (created_at);
CREATE INDEX ON bench_cust_untracked (created_at);
SELECT billing.track_messages('bench_cust_tracked');
SELECT billing.track_customers('bench_cust_tracked', 'public.bench_conversations');
SQL
pg -At -c "SELECT id FROM public.bench_conversations ORDER BY id LIMIT 1000" >"$tmp/convs.txt"
for t in tracked untracked; do
    cat >"$tmp/insert_$t.sql" <<EOF
\set k random(1, 1000)
\set p random(100, 4000)
\set c random(10, 800)
INSERT INTO bench_cust_$t (conversation_id, role, content, data)
SELECT id, 'assistant', 'an answer of some length',
       jsonb_build_object('model', 'gpt-4o-mini', 'prompt_tokens', :p, 'completion_tokens', :c)
  FROM (SELECT id FROM public.bench_conversations ORDER BY id OFFSET :k - 1 LIMIT 1) AS x;
EOF
done
: >"$tmp/tps.txt"
for round in 1 2 3; do
    for t in tracked untracked; do
        pg -c "SELECT billing.merge()" -c "CHECKPOINT" >/dev/null
        tps=$(pgbench -n -c "$clients" -j "$((clients < 2 ? clients : 2))" -T "$duration" -f "$tmp/insert_$t.sql" \
              2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
        printf '%s\t%s\t%s\n' "$t" "$round" "$tps" >>"$tmp/tps.txt"
        log "round $round $t: $tps tps"
    done
done
read -r tr_med _ _ < <(sample_stats 0 3 "$tmp/tps.txt" tracked)
read -r un_med _ _ < <(sample_stats 0 3 "$tmp/tps.txt" untracked)
pg -c "SELECT billing.untrack_messages('bench_cust_tracked')" >/dev/null

report=$tmp/report.md
{
    echo "# Customers: $messages messages, $customers customers ($(utc_time))"
    echo
    machine_line "$load_before" "$(load_average)"
    echo "- server: $(server_version); billing $(billing_version); $(settings_line jit shared_buffers work_mem)"
    echo
    md_row "measure" "median" "min" "p95" "max" "target"
    md_row "---" "---:" "---:" "---:" "---:" "---"
    md_row "dashboard(customer => ...), owner, ms" "$owner_med" "$owner_min" "$owner_p95" "$owner_max" "< 10 ms"
    md_row "dashboard() as the customer (billing.customer), ms" "$cust_med" "$cust_min" "$cust_p95" "$cust_max" ""
    echo
    echo "- issue_statements('$month'): $issue (target < 30 s)"
    echo "- inserts (pgbench, $clients clients, median of 3 rounds of $duration s): tracked with a customer source" \
         "$tr_med tps, untracked $un_med tps: $(ratio "$tr_med" "$un_med") (target >= 0.75)"
} >"$report"
save_report "$report" "bench/results/customers-$(utc_day)-$messages.md"
