#!/usr/bin/env bash
# Benchmark: what a cost aggregate costs per row when Citus splits it
# (worker_partial_agg on the workers, coord_combine_agg on the coordinator)
# against the same aggregate run natively, on a throwaway Citus cluster (a
# coordinator and two workers, tools/citus.sh).
#
#   bench/citus_row_cost.sh [--rows N] [--messages M] [--runs R] [--label TEXT]
#
#   --rows N      rows of the one shard-sized table (default 100000)
#   --messages M  rows of the distributed table, 32 shards (default 500000;
#                 0 skips that part)
#   --runs R      timed rounds (default 7), after one untimed warm-up round
#   --label TEXT  what is measured, for the report's title (e.g. the build)
#
# 1. One shard-sized table, on a worker, serially (jit off): bench/short_rows.sql's
#    short replies, N of them, in a plain table on worker 1 (shard_rows), and the
#    queries a worker runs for its shard:
#      max(created_at)                    a built-in aggregate, native
#      worker_partial_agg(max, ...)       the same, as Citus runs it split
#      openai_cost(data, created_at)      native
#      worker_partial_agg(openai_cost, ROW(data, created_at))   split, as
#        billing's planner hook runs it (billing's partial twin,
#        src/pg/citus_partials.cpp) and with billing.citus_partial_aggregates
#        = off (Citus's worker_partial_agg)
#      openai_cost(data), and split both ways: one argument, no ROW()
#    Time: the server's execution time (EXPLAIN ANALYZE, TIMING OFF).
# 2. The distributed table: M short replies distributed by conversation_id
#    over 32 shards, and a local copy on the coordinator;
#    SELECT openai_cost(data, created_at) FROM each, as the client sees it
#    (psql's \timing), citus.coordinator_aggregation_strategy = 'disabled';
#    billing in the workers' session_preload_libraries (README "Citus"), and
#    the distributed query again with billing.citus_partial_aggregates = off
#    on the workers.
#
# Reports medians, min-max and ratios of medians. Uses the PostgreSQL of
# PG_BINDIR (default /usr/lib/postgresql/15/bin), where billing and Citus
# must be installed (the script builds Citus from ../shared/vendor/citus when
# it is missing, as test/citus/run.sh does). The report goes to stdout and to
# bench/results/citus-row-cost-<UTC date and time>-<rows>.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export BILLING_REPO_ROOT=$PWD
# shellcheck source=bench/lib.sh
. bench/lib.sh

rows=100000 messages=500000 runs=7 label=""
value() {
    if (($# < 2)); then echo "citus_row_cost.sh: $1 needs a value" >&2; exit 2; fi
    echo "$2"
}
while (($#)); do
    case $1 in
        --rows) rows=$(value "$@"); shift ;;
        --messages) messages=$(value "$@"); shift ;;
        --runs) runs=$(value "$@"); shift ;;
        --label) label=$(value "$@"); shift ;;
        -h | --help) sed -n '2,30s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "citus_row_cost.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
for n in "$rows" "$runs"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "citus_row_cost.sh: --rows and --runs take a positive integer" >&2; exit 2; }
done
[[ $messages =~ ^[0-9]+$ ]] || { echo "citus_row_cost.sh: --messages takes an integer" >&2; exit 2; }

export PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
# shellcheck source=tools/cluster.sh
. tools/cluster.sh
# shellcheck source=tools/citus.sh
. tools/citus.sh
# shellcheck source=bench/cluster-settings.sh
. bench/cluster-settings.sh

rc=0
citus_available || rc=$?
((rc == 0)) || exit 1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-citus-bench.XXXXXX")
chmod 0755 "$tmp"
cleanup() {
    citus_cluster_stop
    rm -rf -- "$tmp"
}
trap cleanup EXIT
export CITUS_DB=bench
# (shared_buffers smaller than the bench's 2GB: three servers on one machine)
citus_cluster_start "${bench_cluster_settings[@]}" "shared_buffers = '512MB'" >&2
citus_psql 0 -c 'CREATE EXTENSION billing'

# --- 1. one shard-sized table on worker 1 --------------------------------
log "generating $rows short messages on worker 1 (bench/short_rows.sql)"
citus_psql 1 -v messages="$rows" -f bench/short_rows.sql >/dev/null
# (renamed: the distributed table of part 2 is short_messages, and Citus
# puts its shell on the workers too)
citus_psql 1 -c 'ALTER TABLE short_messages RENAME TO shard_rows' -c 'VACUUM ANALYZE shard_rows' >/dev/null

ids=(max_native max_split cost_native cost_split cost_split_citus cost1_native cost1_split cost1_split_citus)
declare -A label_of query_of
label_of[max_native]="max(created_at), native"
query_of[max_native]="SELECT max(created_at) FROM shard_rows"
label_of[max_split]="max(created_at), split"
query_of[max_split]="SELECT pg_catalog.worker_partial_agg('pg_catalog.max(timestamp with time zone)'::regprocedure, created_at) FROM shard_rows"
label_of[cost_native]="billing.openai_cost(data, created_at), native"
query_of[cost_native]="SELECT billing.openai_cost(data, created_at) FROM shard_rows"
label_of[cost_split]="billing.openai_cost(data, created_at), split: billing's partial twin"
query_of[cost_split]="SELECT pg_catalog.worker_partial_agg('billing.openai_cost(jsonb,timestamp with time zone)'::regprocedure, ROW(data, created_at)) FROM shard_rows"
label_of[cost_split_citus]="billing.openai_cost(data, created_at), split: Citus's worker_partial_agg"
query_of[cost_split_citus]=${query_of[cost_split]}
label_of[cost1_native]="billing.openai_cost(data), native"
query_of[cost1_native]="SELECT billing.openai_cost(data) FROM shard_rows"
label_of[cost1_split]="billing.openai_cost(data), split: billing's partial twin"
query_of[cost1_split]="SELECT pg_catalog.worker_partial_agg('billing.openai_cost(jsonb)'::regprocedure, data) FROM shard_rows"
label_of[cost1_split_citus]="billing.openai_cost(data), split: Citus's worker_partial_agg"
query_of[cost1_split_citus]=${query_of[cost1_split]}
# The *_citus queries run with billing.citus_partial_aggregates = off: as
# a worker runs them without billing's planner hook (src/pg/citus_partials.cpp).
partials_setting() {  # ID
    case $1 in *_citus) echo "SET billing.citus_partial_aggregates = off;" ;; *) echo "SET billing.citus_partial_aggregates = on;" ;; esac
}
settings="SET max_parallel_workers_per_gather = 0; SET jit = off; SET client_min_messages = error;"

# Equal work: the split state, combined and finished as the coordinator
# would, gives the native total.
# Through Citus's worker_partial_agg, then (billing loaded first: its
# planner hook) through billing's partial twin.
same_check="SELECT billing.openai_cost_final(s::text::billing.cost_state) = (SELECT billing.openai_cost(data, created_at) FROM shard_rows)
      FROM (${query_of[cost_split]}) AS t(s)"
same=$(citus_psql 1 -At -c "$settings" -c "SET billing.citus_partial_aggregates = off" -c "$same_check")
same_twin=$(citus_psql 1 -At -c "$settings" -c "SELECT billing.message_cost('gpt-4o', 1, 1) IS NOT NULL AS loaded" \
    -c "$same_check" | tail -1)
[[ $same_twin == t ]] || same=f

# All rounds in one session (the first rounds's first calls load billing and
# its catalog: the untimed warm-up round takes those).
round_sql=$tmp/rounds.sql
{
    echo "$settings"
    echo "SELECT billing.message_cost('gpt-4o', 1, 1) AS warm_up \\gset"
    echo "SELECT count(created_at) AS warm_up FROM shard_rows \\gset"
    for ((round = 0; round <= runs; round++)); do
        for id in "${ids[@]}"; do
            partials_setting "$id"
            printf '\\echo @@ %s %s\nEXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) %s;\n' "$round" "$id" "${query_of[$id]}"
        done
    done
} >"$round_sql"
samples=$tmp/samples.tsv
load_before=$(load_average)
log "part 1: $runs rounds and a warm-up round, in one session"
citus_psql 1 -At -f "$round_sql" >"$tmp/rounds.out"
awk '/^@@ / { round = $2; id = $3; next }
     /Execution Time:/ && round > 0 { t = $0; sub(/.*Execution Time: */, "", t); sub(/ ms.*/, "", t); printf "%s\t%s\n", id, t }' \
    "$tmp/rounds.out" >"$samples"

# --- 2. the distributed table ----------------------------------------------
dist_samples=$tmp/dist.tsv
: >"$dist_samples"
dist_same=""
if ((messages > 0)); then
    log "generating $messages short messages on the coordinator, distributing a copy over 32 shards"
    citus_psql 0 -v messages="$messages" -f bench/short_rows.sql >/dev/null
    citus_psql 0 -c "ALTER TABLE short_messages RENAME TO short_local" \
        -c "CREATE TABLE short_messages (LIKE short_local)" \
        -c "SET citus.shard_count = 32" \
        -c "SELECT create_distributed_table('short_messages', 'conversation_id')" \
        -c "INSERT INTO short_messages SELECT * FROM short_local" \
        -c "VACUUM ANALYZE short_messages" -c "VACUUM ANALYZE short_local" >/dev/null
    dist_settings="SET citus.coordinator_aggregation_strategy = 'disabled'; SET max_parallel_workers_per_gather = 0; SET jit = off; SET client_min_messages = error;"
    dist_same=$(citus_psql 0 -At -c "$dist_settings" -c "
        SELECT (SELECT billing.openai_cost(data, created_at) FROM short_messages)
             = (SELECT billing.openai_cost(data, created_at) FROM short_local)")
    # billing loaded in every worker session, as README "Citus" says.
    for node in 1 2; do
        citus_psql "$node" -c "BEGIN" -c "SET LOCAL citus.enable_ddl_propagation = off" \
            -c "ALTER DATABASE $CITUS_DB SET session_preload_libraries = 'billing'" -c "COMMIT" >/dev/null
    done
    # One session; each round: the distributed table (billing's partial
    # twins on the workers), the same with billing.citus_partial_aggregates
    # = off on the workers (Citus's worker_partial_agg), the local copy.
    log "part 2: $runs rounds and a warm-up round, in one session"
    times=$({
        echo "$dist_settings"
        echo '\timing on'
        for ((round = 0; round <= runs; round++)); do
            echo "SELECT billing.openai_cost(data, created_at) FROM short_messages;"
            echo "BEGIN;"
            echo "SET LOCAL citus.propagate_set_commands = 'local';"
            echo "SET LOCAL billing.citus_partial_aggregates = off;"
            echo "SELECT billing.openai_cost(data, created_at) FROM short_messages;"
            echo "COMMIT;"
            echo "SELECT billing.openai_cost(data, created_at) FROM short_local;"
        done
    } | PGHOST=${CITUS_NODE_HOSTS[0]} PGPORT=${CITUS_NODE_PORTS[0]} PGDATABASE=$CITUS_DB psql_times)
    # (7 times a round; the first 7 are the warm-up round's)
    echo "$times" | awk 'NR > 7 { k = (NR - 1) % 7
        if (k == 0) printf "distributed\t%s\n", $1
        else if (k == 4) printf "distributed_citus\t%s\n", $1
        else if (k == 6) printf "local\t%s\n", $1 }' >"$dist_samples"
fi
load_after=$(load_average)

stats() { sample_stats 2 2 "$1" "$2"; }
report=$tmp/report.md
{
    echo "## Citus: the split aggregate's cost per row${label:+, $label} ($(utc_time))"
    echo
    machine_line "$load_before" "$load_after" "the rounds"
    echo "- $(PGHOST=${CITUS_NODE_HOSTS[1]} PGPORT=${CITUS_NODE_PORTS[1]} PGDATABASE=$CITUS_DB server_version);" \
         "Citus $(citus_psql 1 -At -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'");" \
         "billing $(citus_psql 1 -At -c "SELECT extversion FROM pg_extension WHERE extname = 'billing'")"
    echo "- split total, combined and finished = native total: $(yes_no "$same")"
    echo
    echo "### 1. One shard-sized table: $rows short replies (bench/short_rows.sql) on a worker, serial, $runs runs"
    echo
    echo "Execution time (EXPLAIN ANALYZE, TIMING OFF); *split*: the query a worker runs for its shard when Citus"
    echo "splits the aggregate, \`worker_partial_agg('<aggregate>'::regprocedure, <arguments>)\`."
    echo
    md_row "query" "median ms" "min–max ms" "ns/row" "split / native"
    md_row "---" "---:" "---:" "---:" "---:"
    for id in "${ids[@]}"; do
        read -r med lo hi < <(stats "$samples" "$id")
        case $id in
            max_split) read -r base _ < <(stats "$samples" max_native); r=$(ratio "$med" "$base" x) ;;
            cost_split | cost_split_citus) read -r base _ < <(stats "$samples" cost_native); r=$(ratio "$med" "$base" x) ;;
            cost1_split | cost1_split_citus) read -r base _ < <(stats "$samples" cost1_native); r=$(ratio "$med" "$base" x) ;;
            *) r="" ;;
        esac
        md_row "${label_of[$id]}" "$med" "$lo–$hi" "$(awk -v m="$med" -v n="$rows" 'BEGIN { printf "%.0f", m * 1e6 / n }')" "$r"
    done
    if ((messages > 0)); then
        echo
        echo "### 2. The whole distributed table: $messages short replies, 32 shards on 2 workers, $runs runs"
        echo
        echo "\`SELECT billing.openai_cost(data, created_at) FROM t\` as the client sees it (psql \\timing):"
        echo "split on the distributed table, native on a local copy on the coordinator (serial)."
        echo "Same total: $(yes_no "$dist_same")."
        echo
        md_row "table" "median ms" "min–max ms" "ratio"
        md_row "---" "---:" "---:" "---:"
        read -r local_med _ < <(stats "$dist_samples" local)
        declare -A dist_label=([distributed]="distributed: billing's partial twins on the workers"
                               [distributed_citus]="distributed: Citus's worker_partial_agg (billing.citus_partial_aggregates = off)"
                               [local]="local copy")
        for id in distributed distributed_citus local; do
            read -r med lo hi < <(stats "$dist_samples" "$id")
            md_row "${dist_label[$id]}" "$med" "$lo–$hi" "$(ratio "$med" "$local_med" x)"
        done
    fi
} >"$report"
mkdir -p bench/results
out=bench/results/citus-row-cost-$(utc_stamp)-$rows.md
cp "$report" "$out"
cat "$report"
log "report saved to $out"
[[ $same == t && ${dist_same:-t} == t ]]
