#!/usr/bin/env bash
# Benchmark: the dashboard's figures for a distributed messages table, on a
# throwaway Citus cluster (a coordinator and two workers, tools/citus.sh).
#
#   bench/citus_dashboard.sh [--messages M] [--runs R] [--label TEXT]
#
#   --messages M  messages of bench/generate.sql (default 1000000)
#   --runs R      timed rounds (default 5), after one untimed warm-up round
#   --label TEXT  what is measured, for the report's title
#
# The script generates M messages (bench/generate.sql) on the coordinator,
# distributes a copy by conversation_id over 32 shards (messages_dist), shares
# the catalog (billing.citus_share_catalog()), tracks the local table, then
# the distributed one (by triggers on its shards, docs/citus.md: the time of
# its track_messages, whose backfill reads the whole table, is reported),
# and times, as the client sees them (psql's \timing, one session):
#   period   the current month's cost and messages
#   models   the current month's cost per model
#   top      the current month's 50 costliest conversations
#   history  cost and messages per month, the current one and the 5 before
# on the distributed table and on the local copy (the same figures: checked),
# and billing.dashboard() as a role that may read the distributed table only
# and as one that may read the local copy only (the same payload: checked).
# Then, once each: 10,000 rows inserted into each table (through their
# triggers), both dashboards again (the writes unmerged: still the same
# payload), and the billing.merge() that folds both ledgers. Last, 2,000
# replies stored without usage (generate.sql's first 2,000 replies, their
# usage taken out: each estimated from its conversation's earlier messages)
# into each table, 3 times each by the trigger's C path and by its PL/pgSQL body
# (billing.trigger_fast_path = off, which SET LOCAL with
# citus.propagate_set_commands = 'local' takes to the workers), then a merge
# (the same payload: checked).
# citus.coordinator_aggregation_strategy = 'disabled'.
#
# Reports medians, min-max and ratios of medians; the report goes to stdout
# and to bench/results/citus-dashboard-<UTC date and time>-<M>.md. Uses the
# PostgreSQL of PG_BINDIR (default /usr/lib/postgresql/15/bin), where billing
# and Citus must be installed. At 1M messages it takes about 5 minutes on
# 2 cores: bench/citus_dashboard.sh --messages 1000000
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export BILLING_REPO_ROOT=$PWD
# shellcheck source=bench/lib.sh
. bench/lib.sh

messages=1000000 runs=5 label=""
value() {
    if (($# < 2)); then echo "citus_dashboard.sh: $1 needs a value" >&2; exit 2; fi
    echo "$2"
}
while (($#)); do
    case $1 in
        --messages) messages=$(value "$@"); shift ;;
        --runs) runs=$(value "$@"); shift ;;
        --label) label=$(value "$@"); shift ;;
        -h | --help) sed -n '2,30s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "citus_dashboard.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
for n in "$messages" "$runs"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "citus_dashboard.sh: --messages and --runs take a positive integer" >&2; exit 2; }
done

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
citus_psql 0 -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION billing' -c 'SELECT billing.citus_share_catalog()' >/dev/null

log "generating $messages messages on the coordinator (bench/generate.sql)"
citus_psql 0 -v messages="$messages" -f bench/generate.sql >/dev/null
log "distributing a copy over 32 shards; tracking the local table"
citus_psql 0 -c "CREATE TABLE messages_dist (LIKE messages INCLUDING DEFAULTS)" \
    -c "SET citus.shard_count = 32" \
    -c "SELECT create_distributed_table('messages_dist', 'conversation_id')" \
    -c "INSERT INTO messages_dist SELECT * FROM messages" \
    -c "CREATE INDEX ON messages_dist (created_at)" \
    -c "CREATE INDEX ON messages_dist (conversation_id)" \
    -c "VACUUM ANALYZE messages_dist" -c "VACUUM ANALYZE messages" \
    -c "SET client_min_messages = error" \
    -c "SELECT billing.track_messages('messages')" >/dev/null
log "tracking the distributed table (by triggers on its shards)"
track_dist=$(citus_psql 0 -At -c "SET client_min_messages = error" \
    -c "SELECT seconds FROM billing.track_messages('messages_dist')")
triggered=$(citus_psql 0 -At -c "SELECT billing._citus_triggered(id) FROM billing.tracked_tables
                                   WHERE relation = 'messages_dist'::regclass")
# billing.dashboard() as a role that may read one of the two tables only.
citus_psql 0 -c "CREATE ROLE bench_dist LOGIN" -c "CREATE ROLE bench_local LOGIN" \
    -c "GRANT USAGE ON SCHEMA billing TO bench_dist, bench_local" \
    -c "GRANT SELECT ON ALL TABLES IN SCHEMA billing TO bench_dist, bench_local" \
    -c "GRANT SELECT ON messages_dist TO bench_dist" -c "GRANT SELECT ON messages TO bench_local" \
    -c "CREATE FUNCTION dashboard_as(r name) RETURNS jsonb LANGUAGE plpgsql AS \$\$
        DECLARE d jsonb;
        BEGIN EXECUTE format('SET LOCAL ROLE %I', r); d := billing.dashboard(); RESET ROLE; RETURN d; END \$\$" \
    >/dev/null

# The dashboard's figures from table %s (bounds: the current month in
# month_time_zone, and the 5 months before it).
ids=(period models top history)
declare -A query_of
query_of[period]="SELECT billing.openai_cost(data, created_at), count(*) FROM %s
   WHERE created_at >= billing.month_start(billing.month_of(now()))"
query_of[models]="SELECT data ->> 'model', billing.openai_cost(data, created_at), count(*) FROM %s
   WHERE created_at >= billing.month_start(billing.month_of(now())) GROUP BY 1 ORDER BY 2 DESC NULLS LAST, 1"
query_of[top]="SELECT conversation_id, billing.openai_cost(data, created_at) FROM %s
   WHERE created_at >= billing.month_start(billing.month_of(now()))
   GROUP BY 1 ORDER BY 2 DESC NULLS LAST, 1 LIMIT 50"
query_of[history]="SELECT billing.month_of(created_at), billing.openai_cost(data, created_at), count(*) FROM %s
   WHERE created_at >= billing.month_start((billing.month_of(now()) - interval '5 months')::date)
   GROUP BY 1 ORDER BY 1"
q() { printf "${query_of[$1]}" "$2"; }
settings="SET citus.coordinator_aggregation_strategy = 'disabled'; SET client_min_messages = error;"

# The same figures on both tables.
same=t
for id in "${ids[@]}"; do
    d=$(citus_psql 0 -At -c "$settings" -c "$(q "$id" messages_dist)" | md5sum)
    l=$(citus_psql 0 -At -c "$settings" -c "$(q "$id" messages)" | md5sum)
    [[ $d == "$l" ]] || { same=f; log "$id: the distributed table's figures differ from the local copy's"; }
done
# (in one statement: one now() for both)
same_dashboard() {
    citus_psql 0 -At -c "SET client_min_messages = error" \
        -c "SELECT dashboard_as('bench_dist') = dashboard_as('bench_local')"
}
same_dash=$(same_dashboard)

log "$runs rounds and a warm-up round, in one session"
load_before=$(load_average)
times=$({
    echo "$settings"
    echo '\timing on'
    for ((round = 0; round <= runs; round++)); do
        for id in "${ids[@]}"; do
            echo "$(q "$id" messages_dist);"
            echo "$(q "$id" messages);"
        done
        echo "SELECT dashboard_as('bench_dist');"
        echo "SELECT dashboard_as('bench_local');"
    done
} | PGHOST=${CITUS_NODE_HOSTS[0]} PGPORT=${CITUS_NODE_PORTS[0]} PGDATABASE=$CITUS_DB PGUSER=postgres psql_times)
load_after=$(load_average)
per_round=$((2 * ${#ids[@]} + 2))
samples=$tmp/samples.tsv
echo "$times" | awk -v n="$per_round" -v ids="${ids[*]}" '
    BEGIN { split(ids, id, " ") }
    { i = (NR - 1) % n; round = int((NR - 1) / n) }
    round == 0 { next }
    i == n - 2 { printf "dashboard\tdistributed\t%s\n", $1; next }
    i == n - 1 { printf "dashboard\tlocal\t%s\n", $1; next }
    { printf "%s\t%s\t%s\n", id[int(i / 2) + 1], (i % 2 == 0 ? "distributed" : "local"), $1 }' >"$samples"
# per round: the sum of the four queries
awk -F '\t' -v n="$per_round" '
    $1 != "dashboard" { k = c[$2]++; sum[$2, int(k / 4)] += $3 }
    END { for (k in sum) { split(k, p, SUBSEP); printf "all four\t%s\t%s\n", p[1], sum[k] } }' "$samples" >>"$samples"

# Writes through the triggers, the dashboards before the merge, the merge.
log "10,000 inserts into each table, the dashboards unmerged, the merge"
timed() { PGHOST=${CITUS_NODE_HOSTS[0]} PGPORT=${CITUS_NODE_PORTS[0]} PGDATABASE=$CITUS_DB PGUSER=postgres psql_times | tr '\n' ' '; }
writes=$({
    echo "SET client_min_messages = error;"
    echo '\timing on'
    for t in messages_dist messages; do
        echo "INSERT INTO $t SELECT id + 100000000, conversation_id, role, content, data, created_at + interval '1 second'
                FROM messages WHERE id <= 10000;"
    done
    # (one untimed call each first, as in the rounds above: a warm-up)
    for ((round = 0; round <= runs; round++)); do
        echo "SELECT dashboard_as('bench_dist');"
        echo "SELECT dashboard_as('bench_local');"
    done
} | timed)
read -r w_dist w_local unmerged_times <<<"$writes"
unmerged_samples=$tmp/unmerged.tsv
echo "$unmerged_times" | tr ' ' '\n' | awk 'NF { if (n >= 2) printf "%s\t%s\n", (n % 2 == 0 ? "distributed" : "local"), $1; n++ }' \
    >"$unmerged_samples"
read -r d_dist_unmerged d_dist_unmerged_lo d_dist_unmerged_hi < <(sample_stats 1 2 "$unmerged_samples" distributed)
read -r d_local_unmerged d_local_unmerged_lo d_local_unmerged_hi < <(sample_stats 1 2 "$unmerged_samples" local)
same_unmerged=$(same_dashboard)   # (no merge has run since the inserts)
merge_ms=$({ echo "SET client_min_messages = error;"; echo '\timing on'; echo "SELECT billing.merge();"; } | timed)
same_merged=$(same_dashboard)

# Replies without usage: each INSERT in a transaction of its own, whose
# statements' times are summed (the commit included); the two paths and the
# two tables alternate, round after round (the first round reads the
# conversations' pages into the caches for both).
log "2,000 replies without usage into each table, by the C path and by the PL/pgSQL body"
estimated_insert() {  # TABLE ID-OFFSET FAST-PATH(on|off)
    echo "BEGIN;"
    echo "SET LOCAL citus.propagate_set_commands = 'local';"
    echo "SET LOCAL billing.trigger_fast_path = $3;"
    echo "INSERT INTO $1 SELECT id + $2, conversation_id, role, content,
                data - 'tokens' - 'prompt_tokens' - 'completion_tokens' - 'prompt_tokens_details',
                created_at + interval '2 seconds'
            FROM (SELECT * FROM messages WHERE role = 'assistant' AND id < 100000000 ORDER BY id LIMIT 2000) AS m;"
    echo "COMMIT;"
}
est_rounds=3
est_times=$({
    echo "SET client_min_messages = error;"
    echo '\timing on'
    for ((r = 1; r <= est_rounds; r++)); do
        estimated_insert messages_dist $((200000000 + r * 1000000)) on
        estimated_insert messages_dist $((300000000 + r * 1000000)) off
        estimated_insert messages $((200000000 + r * 1000000)) on
        estimated_insert messages $((300000000 + r * 1000000)) off
    done
} | timed)
# Per transaction the sum of its 5 statements' times, as "kind<TAB>ms"
# lines (the kinds in the order above); per kind the median of the rounds.
est_samples=$tmp/estimated.tsv
echo "$est_times" | tr ' ' '\n' | awk 'NF { t[int(n / 5)] += $1; n++ }
    END { for (i = 0; i < n / 5; i++) printf "%d\t%s\n", i % 4, t[i] }' >"$est_samples"
est_median() { sample_stats 0 2 "$est_samples" "$1" | cut -d ' ' -f 1; }
e_dist_c=$(est_median 0) e_dist_full=$(est_median 1) e_local_c=$(est_median 2) e_local_full=$(est_median 3)
est_merge_ms=$({ echo "SET client_min_messages = error;"; echo '\timing on'; echo "SELECT billing.merge();"; } | timed)
same_estimated=$(same_dashboard)

stats() { sample_stats 1 3 "$samples" "$1" "$2"; }
report=$tmp/report.md
{
    echo "## Citus: the dashboard's figures on a distributed table${label:+, $label} ($(utc_time))"
    echo
    machine_line "$load_before" "$load_after" "the rounds"
    echo "- $(PGHOST=${CITUS_NODE_HOSTS[0]} PGPORT=${CITUS_NODE_PORTS[0]} PGDATABASE=$CITUS_DB PGUSER=postgres server_version);" \
         "Citus $(citus_psql 0 -At -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'");" \
         "billing $(citus_psql 0 -At -c "SELECT extversion FROM pg_extension WHERE extname = 'billing'")"
    echo "- $messages messages (bench/generate.sql), distributed by conversation_id over 32 shards on 2 workers;"
    echo "  the same rows in a local table on the coordinator; both tracked; catalog shared (citus_share_catalog())"
    echo "- the same figures on the distributed table and on the local copy: $(yes_no "$same")"
    echo
    echo "Client-side time (psql \\timing), $runs runs; the figures priced from the table by"
    echo "\`billing.openai_cost(data, created_at)\`, and \`billing.dashboard()\` as a reader of each tracked table."
    echo
    md_row "figures" "distributed, median ms" "min–max ms" "local copy, median ms" "min–max ms" "distributed / local"
    md_row "---" "---:" "---:" "---:" "---:" "---:"
    for id in "${ids[@]}" "all four"; do
        read -r dm dlo dhi < <(stats "$id" distributed)
        read -r lm llo lhi < <(stats "$id" local)
        md_row "$id" "$dm" "$dlo–$dhi" "$lm" "$llo–$lhi" "$(ratio "$dm" "$lm" x)"
    done
    read -r dm dlo dhi < <(stats dashboard distributed)
    read -r lm llo lhi < <(stats dashboard local)
    md_row "\`billing.dashboard()\`, tracked" "$dm" "$dlo–$dhi" "$lm" "$llo–$lhi" "$(ratio "$dm" "$lm" x)"
    echo
    echo "- the distributed table tracked by triggers on its shards: $(yes_no "$triggered");" \
         "its \`track_messages\` (backfill of every row) took $track_dist s"
    echo "- \`billing.dashboard()\` as a role that may read only the distributed table, and only the"
    echo "  local copy: the same payload $(yes_no "$same_dash") (after 10,000 unmerged inserts into each:" \
         "$(yes_no "$same_unmerged"); after the merge: $(yes_no "$same_merged"))"
    echo "- once: 10,000 rows inserted by one \`INSERT ... SELECT\` into the distributed table $w_dist ms," \
         "into the local copy $w_local ms (each through its trigger); \`billing.dashboard()\` with"
    echo "  them unmerged, medians of $runs calls after a warm-up: distributed $d_dist_unmerged ms" \
         "($d_dist_unmerged_lo–$d_dist_unmerged_hi), local $d_local_unmerged ms ($d_local_unmerged_lo–$d_local_unmerged_hi)," \
         "$(ratio "$d_dist_unmerged" "$d_local_unmerged" x); the \`billing.merge()\` that folds both ledgers $merge_ms ms"
    echo "- 2,000 replies without usage (each estimated from its conversation's earlier messages), medians of $est_rounds"
    echo "  alternating rounds, into the distributed table by the trigger's C path $e_dist_c ms, by its PL/pgSQL body $e_dist_full ms"
    echo "  ($(ratio "$e_dist_full" "$e_dist_c" x)); into the local copy $e_local_c ms and $e_local_full ms;" \
         "after the merge ($est_merge_ms ms) the same payload $(yes_no "$same_estimated")"
} >"$report"
mkdir -p bench/results
out=bench/results/citus-dashboard-$(utc_stamp)-$messages.md
cp "$report" "$out"
cat "$report"
log "report saved to $out"
[[ $same == t && $same_dash == t && $same_unmerged == t && $same_merged == t && $same_estimated == t ]]
