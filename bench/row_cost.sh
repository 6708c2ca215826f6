#!/usr/bin/env bash
# Benchmark: the cost aggregate's own work per row, on short rows
# (bench/short_rows.sql: 1M replies whose contents are 12-84 characters, so
# that taking a row apart costs little). Compares, serially, with jit off:
#
#   count(created_at)               the reference: scan, row taken apart up
#                                   to its last column, one transition call
#   count(data)                     the same, reading the jsonb column
#   openai_cost(data, created_at)   each row at the prices of its date
#   openai_cost(data)               each row at the prices of now()
#
# and prints a Markdown table of medians, ratios to count(created_at) and
# the time per row beyond it.
#
#   bench/row_cost.sh [--messages N] [--runs R] [--no-setup] [--here]
#
#   --messages N  rows in public.short_messages (default 1000000)
#   --runs R      timed rounds (default 7), after one untimed warm-up round
#   --no-setup    skip tools/setup.sh (reuse the installed build)
#   --here        no throwaway cluster: use the server and database that the
#                 PG* variables name, where CREATE EXTENSION billing has run;
#                 public.short_messages is built there only when missing
#
# The throwaway cluster comes from tools/cluster.sh, so PG_BINDIR chooses
# the PostgreSQL it runs (default /usr/lib/postgresql/15/bin). Progress goes
# to stderr, the report to stdout and to
# bench/results/row-cost-<UTC date and time>-<rows>.md (bench/lib.sh
# save_report). Exit status 1 when a check (the total against plain SQL, a
# serial plan) fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

messages=1000000
runs=7
setup=1
here=0

usage() { sed -n '15,22s/^# \{0,1\}//p' "$0"; }

value() {
    if (($# < 2)); then
        echo "row_cost.sh: $1 needs a value" >&2
        exit 2
    fi
    echo "$2"
}

while (($#)); do
    case $1 in
        --messages) messages=$(value "$@"); shift ;;
        --runs) runs=$(value "$@"); shift ;;
        --no-setup) setup=0 ;;
        --here) here=1; setup=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "row_cost.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for n in "$messages" "$runs"; do
    if [[ ! $n =~ ^[1-9][0-9]*$ ]]; then
        echo "row_cost.sh: --messages and --runs take a positive integer, got '$n'" >&2
        exit 2
    fi
done

# The measurements, in the order each round runs them (so that they
# alternate: a slow spell of a shared machine hits all of them).
ids=(created data cost_at cost_now)
declare -A label query
label[created]="count(created_at)"
query[created]="SELECT count(created_at) FROM short_messages"
label[data]="count(data)"
query[data]="SELECT count(data) FROM short_messages"
label[cost_at]="billing.openai_cost(data, created_at)"
query[cost_at]="SELECT billing.openai_cost(data, created_at) FROM short_messages"
label[cost_now]="billing.openai_cost(data)"
query[cost_now]="SELECT billing.openai_cost(data) FROM short_messages"
settings="SET max_parallel_workers_per_gather = 0; SET jit = off; SET enable_indexonlyscan = off;"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-row-cost.XXXXXX")
chmod 0755 "$tmp"
if ((here)); then
    trap 'rm -rf -- "$tmp"' EXIT
else
    if ((setup)); then
        log "tools/setup.sh"
        bash tools/setup.sh >&2
    fi
    # shellcheck source=tools/cluster.sh
    . tools/cluster.sh
    cleanup() {
        cluster_stop
        rm -rf -- "$tmp"
    }
    trap cleanup EXIT
    # shellcheck source=bench/cluster-settings.sh
    . bench/cluster-settings.sh
    log "starting a throwaway cluster ($PG_BINDIR)"
    cluster_start "${bench_cluster_settings[@]}"
fi

if ((!here)); then
    pg -c 'CREATE EXTENSION billing'
fi
if ((!here)) || [[ $(pg -At -c "SELECT to_regclass('public.short_messages') IS NULL") == t ]]; then
    log "generating $messages short messages (bench/short_rows.sql)"
    pg -v messages="$messages" -f bench/short_rows.sql >/dev/null
fi
rows=$(pg -At -c "SELECT count(*) FROM short_messages")

# Equal work: the aggregate's total against plain SQL joining the catalog
# (the exact name, else without its dated suffix; the price in effect at
# created_at), exactly.
log "checking the total against plain SQL"
totals=$(pg -At -F ' ' <<'SQL'
SET max_parallel_workers_per_gather = 0;
WITH prices AS (
    SELECT p.model, p.effective_from,
           coalesce(min(n.effective_from), 'infinity') AS effective_to,
           p.input_per_1m, p.output_per_1m
      FROM billing.model_prices AS p
      LEFT JOIN billing.model_prices AS n ON n.model = p.model AND n.effective_from > p.effective_from
     GROUP BY p.model, p.effective_from
), plain AS (
    SELECT sum((m.data->>'prompt_tokens')::bigint * coalesce(e.input_per_1m, s.input_per_1m)
               + (m.data->>'completion_tokens')::bigint * coalesce(e.output_per_1m, s.output_per_1m)) * 0.000001 AS total
      FROM short_messages AS m
      LEFT JOIN prices AS e
        ON e.model = m.data->>'model' AND m.created_at >= e.effective_from AND m.created_at < e.effective_to
      LEFT JOIN prices AS s
        ON s.model = CASE WHEN e.model IS NULL
                          THEN regexp_replace(m.data->>'model', '-(\d{4}-\d{2}-\d{2}|\d{4})$', '') END
       AND m.created_at >= s.effective_from AND m.created_at < s.effective_to
)
SELECT b.total, plain.total, b.total = plain.total
  FROM (SELECT billing.openai_cost(data, created_at) AS total FROM short_messages) AS b, plain;
SQL
)
read -r t_billing t_plain t_equal <<<"$totals"
failed=0
[[ $t_equal == t ]] || failed=1

# The server runs on this machine, so each query's on-CPU time is read from
# the backend's /proc/PID/schedstat (nanoseconds run) before and after it:
# on 2 shared cores, wall time also counts the moments the backend waited
# for a core, on-CPU time does not.
cpu_log=$tmp/cpu.tsv
: >"$cpu_log"
chmod 0666 "$cpu_log"
round_sql=$tmp/round.sql
{
    # Before the first timed query: load the extension and its price
    # catalog, and read every row of the table once, in this backend (so
    # serially: a parallel scan leaves most pages to its workers). A
    # backend's first touch of each 4 kB memory page of the shared buffers
    # takes a page fault (about 0.4 s more for the first query that reads
    # all the 1M short rows, whatever it computes; count(*), which reads no
    # tuple, is not enough).
    echo "SELECT billing.message_cost('gpt-4o', 1, 1) AS warm_up \\gset"
    echo "$settings"
    echo "SELECT count(created_at) AS warm_up FROM short_messages \\gset"
    echo "SELECT pg_backend_pid() AS backend \\gset"
    echo "\\setenv BILLING_BACKEND :backend"
    for id in "${ids[@]}"; do
        printf '\\echo @@ %s\n' "$id"
        printf 'RESET ALL;\nSET client_min_messages = error;\n%s\n' "$settings"
        printf '\\! printf "%%s\\tbefore\\t%%s\\n" %s "$(cut -d " " -f 1 /proc/$BILLING_BACKEND/schedstat)" >>%s\n' "$id" "$cpu_log"
        printf 'EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON)\n%s;\n' "${query[$id]}"
        printf '\\! printf "%%s\\tafter\\t%%s\\n" %s "$(cut -d " " -f 1 /proc/$BILLING_BACKEND/schedstat)" >>%s\n' "$id" "$cpu_log"
    done
} >"$round_sql"

# One line per query: id, execution ms, workers launched.
parse_explain() {
    awk '
        /^@@ / { id = $2; workers = 0; next }
        /Workers Launched:/ { w = $0; sub(/.*Workers Launched: */, "", w); workers += w }
        /Execution Time:/ {
            t = $0; sub(/.*Execution Time: */, "", t); sub(/ ms.*/, "", t)
            printf "%s\t%s\t%s\n", id, t, workers
        }'
}

samples=$tmp/samples.tsv
: >"$samples"
load_before=$(load_average)
for ((round = 0; round <= runs; round++)); do
    if ((round == 0)); then log "warm-up round"; else log "round $round/$runs"; fi
    pg -At -f "$round_sql" >"$tmp/round.out"
    if ((round > 0)); then parse_explain <"$tmp/round.out" >>"$samples"; else : >"$cpu_log"; fi
done
# id, on-CPU ms: each query's "after" minus its "before".
cpu_samples=$tmp/cpu_samples.tsv
awk -F '\t' '$2 == "before" { start[$1] = $3; next }
             $2 == "after" { printf "%s\t%.3f\n", $1, ($3 - start[$1]) / 1e6 }' "$cpu_log" >"$cpu_samples"
load_after=$(load_average)

# stats FILE ID: "median min max" in ms of the second column of FILE.
stats() { sample_stats 1 2 "$1" "$2"; }

read -r ref _ < <(stats "$samples" created)
read -r cpu_ref _ < <(stats "$cpu_samples" created)
report=$tmp/report.md
{
    echo "## billing row cost: $rows short messages, $runs runs ($(utc_time))"
    echo
    machine_line "$load_before" "$load_after" "the rounds"
    echo "- $(server_version); billing $(billing_version)"
    echo "- data: bench/short_rows.sql, table $(pg -At -c "SELECT pg_size_pretty(pg_table_size('short_messages'))")"
    echo "- openai_cost(data, created_at) = plain SQL, exactly: $(yes_no "$t_equal") ($t_billing and $t_plain USD)"
    echo
    echo "Serial (max_parallel_workers_per_gather = 0, jit = off), over $runs runs: *wall* is the server's execution time"
    echo "(EXPLAIN ANALYZE, TIMING OFF), *CPU* the backend's on-CPU time for the statement; ratios of medians to"
    echo "count(created_at)'s in the same rounds; ns/row: the median's excess over count(created_at)'s, per row."
    echo
    echo "| query | wall median ms | wall min–max ms | wall ratio | CPU median ms | CPU ratio | CPU ns/row beyond count(created_at) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for id in "${ids[@]}"; do
        read -r med lo hi < <(stats "$samples" "$id")
        read -r cmed _ < <(stats "$cpu_samples" "$id")
        if [[ $(awk -F '\t' -v id="$id" '$1 == id && $3 != 0' "$samples") ]]; then
            plan=" **(parallel)**"
            failed=1
        else
            plan=""
        fi
        awk -v q="${label[$id]}$plan" -v m="$med" -v lo="$lo" -v hi="$hi" -v r="$ref" -v c="$cmed" -v cr="$cpu_ref" -v n="$rows" \
            -v isref="$([[ $id == created ]] && echo 1 || echo 0)" \
            'BEGIN { printf "| %s | %.1f | %.1f–%.1f | %s | %.1f | %s | %s |\n", q, m, lo, hi,
                     isref ? "1.00 (ref)" : sprintf("%.2f", m / r), c,
                     isref ? "1.00 (ref)" : sprintf("%.2f", c / cr), isref ? "" : sprintf("%.0f", (c - cr) * 1e6 / n) }'
    done
} >"$report"
save_report "$report" "bench/results/row-cost-$(utc_stamp)-$rows.md"
exit "$failed"
