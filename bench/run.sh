#!/usr/bin/env bash
# Benchmark: the billing extension's cost aggregates against the physical
# floor (reading the token fields) and against plain SQL, on a throwaway
# cluster filled by bench/generate.sql. See bench/README.md.
#
#   bench/run.sh [--messages N] [--runs R] [--quick] [--no-setup] [--aggregates-only]
#
#   --messages N       rows in public.messages (default 1000000)
#   --runs R           timed rounds (default 7), after one untimed warm-up round
#   --quick            a try-out in a few minutes: 100,000 messages and 3
#                      rounds (unless --messages / --runs say otherwise),
#                      inserts timed for 5 s per run in 2 rounds; noisier
#   --no-setup         skip tools/setup.sh (reuse the installed build)
#   --aggregates-only  skip the second part (backfill, dashboard vs plain SQL
#                      vs the Node route, tracked inserts), run by default on
#                      the same cluster and data: bench/backfill.sh,
#                      bench/dashboard.sh, bench/inserts.sh
#
# Progress goes to stderr; the report (machine, checks, one Markdown table)
# goes to stdout and to bench/results/<date>-<messages>.md, and
# bench/results/latest.md is regenerated (bench/summary.sh). Exit status 1
# when a check (bad rows, equal work, plan shape) fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

messages=1000000
runs=7
setup=1
part2=1
quick=0
messages_given=0
runs_given=0

usage() { sed -n '6,17s/^# \{0,1\}//p' "$0"; }

# value OPTION VALUE...: the value of an option that takes one.
value() {
    if (($# < 2)); then
        echo "run.sh: $1 needs a value" >&2
        exit 2
    fi
    echo "$2"
}

while (($#)); do
    case $1 in
        --messages) messages=$(value "$@"); messages_given=1; shift ;;
        --runs) runs=$(value "$@"); runs_given=1; shift ;;
        --no-setup) setup=0 ;;
        --quick) quick=1 ;;
        --aggregates-only) part2=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
inserts_opts=()
if ((quick)); then
    ((messages_given)) || messages=100000
    ((runs_given)) || runs=3
    inserts_opts=(--duration 5 --rounds 2)
fi
for n in "$messages" "$runs"; do
    if [[ ! $n =~ ^[1-9][0-9]*$ ]]; then
        echo "run.sh: --messages and --runs take a positive integer, got '$n'" >&2
        exit 2
    fi
done

# ---------------------------------------------------------------------------
# The measurements. Each has an id, the comparison it belongs to, a contender
# label, the id of the reference its ratio is taken to, the settings it runs
# under and its query. Within a round they run in the order of `order`, so
# the contenders of a comparison alternate: A B C, A B C, ...
# ---------------------------------------------------------------------------

declare -A comparison contender reference settings query
order=()

# measure ID COMPARISON CONTENDER REFERENCE-ID SETTINGS QUERY
measure() {
    order+=("$1")
    comparison[$1]=$2 contender[$1]=$3 reference[$1]=$4 settings[$1]=$5 query[$1]=$6
}

serial="SET max_parallel_workers_per_gather = 0;"
# parallel_setup_cost = 0 so that even a small table gets a parallel plan,
# min_parallel_table_scan_size = 0 so that it gets both workers (else a
# table under 24 MB gets one); the report checks every run's plan.
parallel="SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET min_parallel_table_scan_size = 0;"
# 1GB: every group of the per-conversation aggregates fits in memory, so
# both hash in one batch and the memory reported is the whole hash table.
hashagg="SET max_parallel_workers_per_gather = 0; SET work_mem = '1GB';"

count_sql="SELECT count(*) FROM messages"
created_sql="SELECT count(created_at) FROM messages"
tokens_sql="SELECT sum((data->>'prompt_tokens')::bigint), sum((data->>'completion_tokens')::bigint) FROM messages"
jsonb_sql="SELECT billing.openai_cost(data, created_at) FROM messages"
text_sql="SELECT billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint,
                            (data->>'completion_tokens')::bigint, created_at) FROM messages"

# The plain-SQL cost, as fast as we could make it while staying exact:
# * each price row gets its validity range [effective_from, next row's) from
#   a self-join (not lead(): a window function in the subquery rules out a
#   parallel plan in PostgreSQL 15);
# * a message takes the price of its exact model name in effect at its time,
#   else that of the name without a dated suffix (-YYYY-MM-DD or -MMDD): two
#   hash joins, the range as join filter; the regexp only runs for rows the
#   exact name did not price;
# * numeric arithmetic, scaled by * 0.000001 once at the end: numeric
#   multiplication is exact, where a division rounds to a computed scale.
# It does not do the extension's last resort (lower-case, trim, strip an
# "openai/" prefix): the generated data never needs it. Alternatives that
# were no faster or slower are in bench/README.md.
# $1: the SQL for a message's cached tokens (0 gives what the text form of
# billing.openai_cost computes: it has no cached-token argument).
plain_sql() {
    cat <<SQL
WITH prices AS NOT MATERIALIZED (
    SELECT p.model, p.effective_from,
           coalesce(min(n.effective_from), 'infinity') AS effective_to,
           p.input_per_1m,
           coalesce(p.cached_input_per_1m, p.input_per_1m) AS cached_input_per_1m,
           p.output_per_1m
      FROM billing.model_prices AS p
      LEFT JOIN billing.model_prices AS n
        ON n.model = p.model AND n.effective_from > p.effective_from
     GROUP BY p.model, p.effective_from
)
SELECT sum((u.prompt - u.cached) * coalesce(e.input_per_1m, s.input_per_1m)
           + u.cached * coalesce(e.cached_input_per_1m, s.cached_input_per_1m)
           + u.completion * coalesce(e.output_per_1m, s.output_per_1m)) * 0.000001
  FROM messages AS m
 CROSS JOIN LATERAL (
       SELECT m.data->>'model' AS model,
              (m.data->>'prompt_tokens')::bigint AS prompt,
              $1 AS cached,
              (m.data->>'completion_tokens')::bigint AS completion) AS u
  LEFT JOIN prices AS e
    ON e.model = u.model
   AND m.created_at >= e.effective_from AND m.created_at < e.effective_to
  LEFT JOIN prices AS s
    ON s.model = CASE WHEN e.model IS NULL
                      THEN regexp_replace(u.model, '-(\d{4}-\d{2}-\d{2}|\d{4})\$', '') END
   AND m.created_at >= s.effective_from AND m.created_at < s.effective_to
SQL
}
cached_sql="coalesce((m.data->'prompt_tokens_details'->>'cached_tokens')::bigint, 0)"
plain_cost_sql=$(plain_sql "$cached_sql")

for mode in serial parallel; do
    if [[ $mode == serial ]]; then
        set_mode=$serial p="" label="serial"
    else
        set_mode=$parallel p="p" label="2 workers"
    fi
    # (without an index-only scan, which would skip the table: a floor for
    # reading the rows the cost aggregates have to read)
    measure "a${p}_count" "a. physical floor, $label" "count(*), seq scan" "a${p}_count" \
        "$set_mode SET enable_indexonlyscan = off;" "$count_sql"
    measure "a${p}_tokens" "a. physical floor, $label" "sum of the 2 token fields" "a${p}_count" "$set_mode" "$tokens_sql"
    # The least any aggregate that reads created_at costs (the cost functions
    # need it for the prices in effect): the scan, the tuple deformed up to
    # that last column, and one transition call per row.
    measure "a${p}_created" "a. physical floor, $label" "count(created_at), seq scan" "a${p}_count" \
        "$set_mode SET enable_indexonlyscan = off;" "$created_sql"
    measure "b${p}_jsonb" "b. cost of all messages, $label" "openai_cost(data, created_at)" "a${p}_tokens" "$set_mode" "$jsonb_sql"
    measure "b${p}_text" "b. cost of all messages, $label" "openai_cost(model, prompt, completion, created_at)" "a${p}_tokens" "$set_mode" "$text_sql"
    measure "b${p}_plain" "b. cost of all messages, $label" "plain SQL (join to model_prices)" "a${p}_tokens" "$set_mode" "$plain_cost_sql"
done
measure c_tokens "c. per conversation, serial HashAggregate" "sum of the 2 token fields" c_tokens "$hashagg" \
    "SELECT conversation_id, sum((data->>'prompt_tokens')::bigint), sum((data->>'completion_tokens')::bigint)
       FROM messages GROUP BY conversation_id"
measure c_cost "c. per conversation, serial HashAggregate" "openai_cost(data, created_at)" c_tokens "$hashagg" \
    "SELECT conversation_id, billing.openai_cost(data, created_at) FROM messages GROUP BY conversation_id"

# ---------------------------------------------------------------------------
# Build, cluster, data
# ---------------------------------------------------------------------------

if ((setup)); then
    log "tools/setup.sh"
    bash tools/setup.sh >&2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-bench.XXXXXX")
# shellcheck source=tools/cluster.sh
. tools/cluster.sh
cleanup() {
    cluster_stop
    rm -rf -- "$tmp"
}
trap cleanup EXIT

# Benchmark settings: the first four are those the numbers are quoted for;
# wal_level = minimal lets generate.sql skip WAL (it creates and fills its
# tables in one transaction); no checkpoint and no autovacuum during the
# timings (generate.sql runs VACUUM ANALYZE itself).
# shellcheck source=bench/cluster-settings.sh
. bench/cluster-settings.sh
conf=("${bench_cluster_settings[@]}")
log "starting a throwaway cluster"
cluster_start "${conf[@]}"

pg -c 'CREATE EXTENSION billing'

log "generating $messages messages (bench/generate.sql)"
start=$SECONDS
pg -v messages="$messages" -f bench/generate.sql
generate_seconds=$((SECONDS - start))

# ---------------------------------------------------------------------------
# Checks: the bad rows, and equal work (the contenders return the same dollars)
# ---------------------------------------------------------------------------

failed=0

log "checking the data and the contenders' totals"
data_shape=$(pg -At -F ' ' <<'SQL'
SELECT format('%s messages (%s user, %s assistant) in %s conversations, %s to %s; table %s with indexes',
              to_char(count(*), 'FM999,999,999'),
              to_char(count(*) FILTER (WHERE role = 'user'), 'FM999,999,999'),
              to_char(count(*) FILTER (WHERE role = 'assistant'), 'FM999,999,999'),
              to_char(count(DISTINCT conversation_id), 'FM999,999,999'),
              min(created_at)::date, max(created_at)::date,
              pg_size_pretty(pg_total_relation_size('messages')))
  FROM messages;
SQL
)

# Every row of messages_bad must be flagged, none of messages.
bad_check=$(pg -At -F ' ' <<'SQL'
SELECT (SELECT count(*) FROM messages_bad),
       (SELECT count(*) FROM messages_bad WHERE billing.usage_problem(data) IS NOT NULL),
       (SELECT count(*) FROM messages WHERE billing.usage_problem(data) IS NOT NULL),
       (SELECT count(*) FROM messages WHERE data->>'model' = 'gpt-9');
SQL
)
read -r bad_rows bad_flagged good_flagged unknown_rows <<<"$bad_check"
bad_problems=$(pg -At -c "SELECT '  - ' || billing.usage_problem(data) FROM messages_bad ORDER BY id")
# The jsonb form must refuse these rows (with an error naming the problem).
# (billing.invalid_usage = 'error': the default since 0.4, 'warn', leaves
# such rows out with a WARNING; the check wants the rows refused)
bad_error=$(pg -c "SET billing.invalid_usage = 'error'; SELECT billing.openai_cost(data, created_at) FROM messages_bad" 2>&1 >/dev/null || true)
bad_error=$(head -n 1 <<<"$bad_error")
if ((bad_rows != bad_flagged || good_flagged != 0)) || [[ $bad_error != *ERROR* ]]; then
    failed=1
fi

totals=$(pg -At -F ' ' <<SQL
SET client_min_messages = error;
SET max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE totals AS
SELECT ($jsonb_sql) AS jsonb_form,
       ($text_sql) AS text_form,
       ($plain_cost_sql) AS plain_sql,
       ($(plain_sql 0)) AS plain_sql_no_cache;
$parallel
SELECT jsonb_form, text_form, plain_sql, plain_sql_no_cache,
       jsonb_form = plain_sql, text_form = plain_sql_no_cache,
       ($jsonb_sql) = jsonb_form AS parallel_equal
  FROM totals;
SQL
)
read -r t_jsonb t_text t_plain t_plain_no_cache eq_jsonb eq_text eq_parallel <<<"$totals"
for ok in "$eq_jsonb" "$eq_text" "$eq_parallel"; do
    [[ $ok == t ]] || failed=1
done

# ---------------------------------------------------------------------------
# Timed rounds: one psql session per round, each query under EXPLAIN
# (ANALYZE, TIMING OFF, SUMMARY ON); round 0 is a warm-up and not counted.
# ---------------------------------------------------------------------------

round_sql=$tmp/round.sql
{
    # Each backend loads the extension and reads the price catalog once:
    # do it before the first timed query of the round.
    echo "SELECT billing.message_cost('gpt-4o', 1, 1) AS warm_up \\gset"
    for id in "${order[@]}"; do
        printf '\\echo @@ %s\n' "$id"
        printf 'RESET ALL;\nSET client_min_messages = error;\n%s\n' "${settings[$id]}"
        printf 'EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON)\n%s;\n' "${query[$id]}"
    done
} >"$round_sql"

# Reads EXPLAIN output; prints one line per query:
#   id  execution-ms  workers-launched  partial-agg(0/1)  hashagg-kB  hashagg-batches
# The HashAggregate figures are those of the first HashAggregate node (its
# "Batches: B  Memory Usage: NkB" line comes before its first child "->").
parse_explain() {
    awk '
        /^@@ / { id = $2; workers = 0; partial = 0; mem = ""; batches = ""; inhash = 0; seen = 0; next }
        /Partial (Hash)?Aggregate/ { partial = 1 }
        /Workers Launched:/ { w = $0; sub(/.*Workers Launched: */, "", w); workers += w }
        /HashAggregate/ && !seen { inhash = 1; seen = 1; next }
        inhash && /->/ { inhash = 0 }
        inhash && /Memory Usage:/ {
            b = $0; sub(/.*Batches: */, "", b); sub(/ .*/, "", b)
            m = $0; sub(/.*Memory Usage: */, "", m); sub(/kB.*/, "", m)
            batches = b; mem = m; inhash = 0
        }
        /Execution Time:/ {
            t = $0; sub(/.*Execution Time: */, "", t); sub(/ ms.*/, "", t)
            printf "%s\t%s\t%s\t%s\t%s\t%s\n", id, t, workers, partial, (mem == "" ? "-" : mem), (batches == "" ? "-" : batches)
        }'
}

samples=$tmp/samples.tsv
: >"$samples"
load_before=$(load_average)
for ((round = 0; round <= runs; round++)); do
    if ((round == 0)); then log "warm-up round"; else log "round $round/$runs"; fi
    pg -At -f "$round_sql" >"$tmp/round.out"
    if ((round > 0)); then parse_explain <"$tmp/round.out" >>"$samples"; fi
done
load_after=$(load_average)

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

# stats ID: "median min max" of the execution times, in ms.
stats() { sample_stats 1 2 "$samples" "$1"; }

# distinct_values ID N: the distinct values of column N over the runs of ID, "/"-joined.
distinct_values() {
    awk -F '\t' -v id="$1" -v n="$2" '$1 == id { print $n }' "$samples" | sort -u | paste -sd /
}

declare -A median
for id in "${order[@]}"; do
    read -r med _ < <(stats "$id")
    median[$id]=$med
done

pg_version=$(server_version)
billing_version=$(billing_version)

report=$tmp/report.md
{
    echo "## billing benchmark: $messages messages, $runs runs ($(utc_time))"
    echo
    machine_line "$load_before" "$load_after" "the rounds"
    echo "- $pg_version; billing $billing_version"
    echo "- cluster: $(printf '%s, ' "${conf[@]}" | sed 's/, $//')"
    echo "- data: $data_shape; generated in ${generate_seconds} s"
    echo "- bad rows: messages_bad has $bad_rows rows (kept out of messages so that the jsonb form can run on all of it), $bad_flagged flagged by billing.usage_problem():"
    echo "$bad_problems"
    echo "  - openai_cost(data, created_at) on messages_bad: \`$bad_error\`"
    echo "  - messages: $good_flagged rows flagged; $unknown_rows rows name the unknown model gpt-9 (left out of every total)"
    echo
    echo "Equal work (serial, all of messages, in USD):"
    echo
    echo "| total | USD |"
    echo "| --- | ---: |"
    echo "| openai_cost(data, created_at) (jsonb form) | $t_jsonb |"
    echo "| plain SQL | $t_plain |"
    echo "| openai_cost(model, prompt, completion, created_at) (text form) | $t_text |"
    echo "| plain SQL with cached tokens billed as plain input | $t_plain_no_cache |"
    echo
    echo "- jsonb form = plain SQL, exactly: $(yes_no "$eq_jsonb")"
    echo "- text form = plain SQL with cached tokens billed as plain input, exactly: $(yes_no "$eq_text")"
    echo "  (the text form takes no cached-token count, so it cannot apply the cached-input price)"
    echo "- jsonb form with 2 parallel workers = serial, exactly: $(yes_no "$eq_parallel")"
    echo
    echo "Server-side execution time (EXPLAIN ANALYZE, TIMING OFF) over $runs runs; ratio = median / median of the reference."
    echo
    md_row comparison contender "median ms" "min–max ms" ratio "HashAgg memory" plan
    md_row --- --- ---: ---: ---: ---: ---
    for id in "${order[@]}"; do
        read -r med lo hi < <(stats "$id")
        ref=${reference[$id]}
        ratio=$(ratio "$med" "${median[$ref]}")
        if [[ $ref == "$id" ]]; then
            ratio="1.00 (ref)"
        elif [[ ${comparison[$ref]} != "${comparison[$id]}" ]]; then
            ratio="$ratio (to ${contender[$ref]})"
        fi
        mem=$(distinct_values "$id" 5)
        memcell=""
        plan=""
        if [[ $id == c_* ]]; then
            memcell="$mem kB"
            if [[ $ref != "$id" ]]; then
                memcell+=" ($(ratio "$mem" "$(distinct_values "$ref" 5)")×)"
            fi
            plan="HashAggregate, batches: $(distinct_values "$id" 6)"
            [[ $(distinct_values "$id" 6) == 1 ]] || { plan+=" **spilled**"; failed=1; }
        elif [[ $id == ?p_* ]]; then
            if [[ $(distinct_values "$id" 4) == 1 && $(distinct_values "$id" 3) == 2 ]]; then
                plan="Partial Aggregate, 2 workers"
            else
                plan="**not parallel in every run** (partial: $(distinct_values "$id" 4), workers: $(distinct_values "$id" 3))"
                failed=1
            fi
        elif [[ $(distinct_values "$id" 3) == 0 ]]; then
            plan="serial"
        else
            plan="**parallel**"
            failed=1
        fi
        md_row "${comparison[$id]}" "${contender[$id]}" "$med" "$lo–$hi" "$ratio" "$memcell" "$plan"
    done
} >"$report"

save_report "$report" "bench/results/$(utc_day)-$messages.md"

# Second part, on the same cluster and data (each script saves its own report).
if ((part2)); then
    if [[ ! -d bench/node/node_modules/pg ]]; then
        log "npm ci (bench/node)"
        (cd bench/node && npm ci --no-audit --no-fund >&2)
    fi
    bash bench/backfill.sh --runs 1 || failed=1
    bash bench/dashboard.sh --runs "$(( runs < 5 ? runs : 5 ))" || failed=1
    bash bench/inserts.sh "${inserts_opts[@]}" || failed=1
fi
if ((failed)); then
    log "a check FAILED (see the report)"
    exit 1
fi
