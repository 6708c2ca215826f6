#!/usr/bin/env bash
# Benchmark: dashboard() in the states a real database passes through, not
# only right after VACUUM ANALYZE. On a throwaway cluster (bench settings,
# autovacuum off, as in the other benchmarks):
#
#   1. C conversations with M messages each in the past months, tracked
#      (backfill), then ANALYZE: the statistics know those months only;
#   2. one new message per conversation in the current month, merged: the
#      rollup's statistics believe the month empty (as at the start of
#      every month, until autovacuum analyzes) and the ledger holds the
#      merged rows as dead tuples (until vacuum);
#   3. the same after VACUUM of the ledger;
#   4. the same after ANALYZE of the rollups;
#   5. with W more writes left unmerged.
#
# In each state SELECT billing.dashboard() runs R times (one warm-up
# first); the report gives the median, min and max, and the target (under
# 20 ms) met or not.
#
#   bench/dashboard_states.sh [--conversations C] [--messages-each M] [--writes W] [--runs R] [--no-setup]
#
# Defaults: 100,000 conversations x 10 messages (1M), 10,000 writes, 15 runs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

conversations=100000
each=10
writes=10000
runs=15
setup=1
usage() { sed -n '20,22s/^# \{0,1\}//p' "$0"; }
while (($#)); do
    case $1 in
        --conversations) conversations=${2:-}; shift ;;
        --messages-each) each=${2:-}; shift ;;
        --writes) writes=${2:-}; shift ;;
        --runs) runs=${2:-}; shift ;;
        --no-setup) setup=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "dashboard_states.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for n in "$conversations" "$each" "$writes" "$runs"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "dashboard_states.sh: options take positive integers, got '$n'" >&2; exit 2; }
done

if ((setup)); then
    log "tools/setup.sh"
    bash tools/setup.sh >&2
fi
# shellcheck source=tools/cluster.sh
. tools/cluster.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-states.XXXXXX")
cleanup() { cluster_stop; rm -rf -- "$tmp"; }
trap cleanup EXIT
# shellcheck source=bench/cluster-settings.sh
. bench/cluster-settings.sh
log "starting a throwaway cluster"
cluster_start "${bench_cluster_settings[@]}"
pg -c 'CREATE EXTENSION billing'

log "state 1: $conversations conversations x $each messages in the past months, tracked, analyzed"
pg -v c="$conversations" -v e="$each" <<'SQL'
CREATE TABLE messages (id bigserial PRIMARY KEY, conversation_id uuid NOT NULL, role text NOT NULL,
                       content text NOT NULL, data jsonb, created_at timestamptz NOT NULL);
INSERT INTO messages (conversation_id, role, content, data, created_at)
SELECT md5('c' || c)::uuid,
       CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, 'lorem ipsum',
       CASE WHEN i % 2 = 0 THEN '{}'::jsonb
            ELSE jsonb_build_object('model', 'gpt-4o-mini', 'prompt_tokens', 100 + c % 900, 'completion_tokens', 50) END,
       date_trunc('month', now()) - interval '1 hour' - i * interval '9 days' - (c % 3600) * interval '1 second'
  FROM generate_series(1, :c) AS c, generate_series(1, :e) AS i;
CREATE INDEX ON messages (conversation_id);
CREATE INDEX ON messages (created_at);
SELECT tracked FROM billing.track_messages('messages');
VACUUM ANALYZE;
SQL

# time LABEL: R timed dashboards (after one warm-up), appended to the samples.
samples=$tmp/samples.tsv
: >"$samples"
time_state() {
    local t
    { echo 'SELECT billing.dashboard();'; echo '\timing on'; for ((r = 0; r < runs; r++)); do echo 'SELECT billing.dashboard();'; done; } |
        psql_times | while read -r t; do printf '%s\t%s\n' "$1" "$t"; done >>"$samples"
}

load_before=$(load_average)
log "state 2: one message per conversation this month, merged"
pg -v c="$conversations" <<'SQL'
INSERT INTO messages (conversation_id, role, content, data, created_at)
SELECT md5('c' || c)::uuid, 'assistant', 'lorem',
       jsonb_build_object('model', 'gpt-4o', 'prompt_tokens', 100 + c % 1000, 'completion_tokens', 50),
       date_trunc('month', now()) + (c % 3600) * interval '1 second'
  FROM generate_series(1, :c) AS c;
SELECT billing.merge();
SQL
ledger_size=$(pg -At -c "SELECT pg_size_pretty(pg_relation_size('billing.usage_ledger'))")
time_state stale
log "state 3: ledger vacuumed"
pg -c 'VACUUM billing.usage_ledger'
time_state vacuumed
log "state 4: rollups analyzed"
pg -c 'ANALYZE billing.month_usage, billing.conversation_usage'
time_state analyzed
log "state 5: $writes writes left unmerged"
pg -v w="$writes" -v c="$conversations" <<'SQL'
INSERT INTO messages (conversation_id, role, content, data, created_at)
SELECT md5('c' || (i % 200))::uuid, CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, 'lorem',
       CASE WHEN i % 2 = 0 THEN '{}'::jsonb
            ELSE jsonb_build_object('model', 'gpt-4o', 'prompt_tokens', 100, 'completion_tokens', 50) END,
       date_trunc('month', now()) + interval '1 hour' + i * interval '1 millisecond'
  FROM generate_series(1, :w) AS i;
SQL
time_state unmerged

report=$tmp/report.md
{
    echo "## dashboard() in the states of a live database: $(printf "%'d" "$((conversations * (each + 1)))") messages in $(printf "%'d" "$conversations") conversations, $runs runs per state ($(utc_time))"
    echo
    machine_line "$load_before" "$(load_average)"
    echo "- $(server_version); billing $(billing_version)"
    echo "- settings: $(settings_line shared_buffers work_mem jit autovacuum)"
    echo
    md_row state "median ms" "min–max ms" "target < 20 ms"
    md_row --- ---: ---: ---
    for s in stale vacuumed analyzed unmerged; do
        read -r med lo hi < <(sample_stats 1 2 "$samples" "$s")
        case $s in
            stale) label="after merging $(printf "%'d" "$conversations") current-month messages: statistics that believe the month empty, $ledger_size of dead ledger rows" ;;
            vacuumed) label="the same after VACUUM billing.usage_ledger" ;;
            analyzed) label="the same after ANALYZE of the rollups" ;;
            unmerged) label="with $(printf "%'d" "$writes") writes unmerged" ;;
        esac
        md_row "$label" "$med" "$lo–$hi" "$(awk -v m="$med" 'BEGIN { print (m < 20 ? "met" : "**not met**") }')"
    done
} >"$report"
save_report "$report" "bench/results/dashboard-states-$(utc_stamp)-$conversations.md"
