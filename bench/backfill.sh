#!/usr/bin/env bash
# Benchmark: how fast billing takes in an existing table. Times
# SELECT billing.track_messages('public.messages') (the backfill: the
# estimates of replies stored without usage, the malformed rows, and every
# month's rollups, read from the table), then untracks it, R times; then one
# more, untimed, run with auto_explain to show where the time goes, statement
# by statement. See bench/RESULTS-part2.md.
#
# Each run times the call twice: in a new connection, as an app's migration
# would make it (the figure of the target, 250,000 rows a second), and in a
# connection that has just read the table (an untimed SELECT count(data)).
# The difference is what a new backend pays to touch the table's pages in
# shared_buffers for the first time (its page tables: about 1.5 s of CPU per
# 650 MB on this VM's 4 kB pages). Both give the backend's CPU time too
# (log_statement_stats: user + system), which another load on the 2 shared
# cores does not stretch as much as the elapsed time.
#
#   bench/backfill.sh [--runs R] [--no-breakdown]
#
#   --runs R          timed runs (default 3)
#   --no-breakdown    skip the auto_explain run
#
# Takes an existing cluster (PGHOST, PGPORT, PGDATABASE...) whose database
# has the bench/generate.sql data and CREATE EXTENSION billing. If
# public.messages is tracked it is untracked first, and it is left untracked.
#
# Progress goes to stderr; the report goes to stdout and to
# bench/results/backfill-<date>-<messages>.md, and bench/results/latest.md
# is regenerated (bench/summary.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

runs=3
breakdown=1

usage() { sed -n '9,13s/^# \{0,1\}//p' "$0"; }

while (($#)); do
    case $1 in
        --runs) runs=${2:-}; shift ;;
        --no-breakdown) breakdown=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "backfill.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [[ ! $runs =~ ^[1-9][0-9]*$ ]]; then
    echo "backfill.sh: --runs takes a positive integer, got '$runs'" >&2
    exit 2
fi
: "${PGHOST:?set PGHOST (and PGPORT) to the cluster to use}"
: "${PGPORT:?set PGPORT}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-backfill.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

untrack() {
    pg -c "SELECT billing.untrack_messages('public.messages')
             FROM billing.tracked_tables WHERE relation = 'public.messages'::regclass" >/dev/null
    pg -c 'VACUUM billing.usage_ledger, billing.month_usage, billing.conversation_usage, billing.estimated_prompts, billing.problem_messages' >/dev/null
}
# elapsed SQL...: runs the statements in one session under \timing; prints
# the time of each, in ms, one a line.
elapsed() {
    { echo '\timing on'; printf '%s;\n' "$@"; } | psql_times
}
# timed_backfill [warm]: one track_messages() in a new session (after an
# untimed read of the table with "warm"); prints its elapsed ms, a tab, and
# the backend's CPU seconds (user + system) for the statement.
timed_backfill() {
    local out
    out=$({ echo 'SET client_min_messages = log;'
            [[ ${1:-} == warm ]] && echo 'SELECT count(data) FROM messages;'
            echo 'SET log_statement_stats = on;'
            echo '\timing on'
            echo "SELECT billing.track_messages('public.messages');"; } |
          pg -At -o /dev/null 2>&1)
    # (psql prints the statement's time after its LOG lines)
    awk '/s user, .* s system, .* s elapsed/ { sub(/^[^0-9]*/, ""); cpu = $1 + $4 }
         /^Time: / { ms = $2 }
         END { printf "%s\t%.3f\n", ms, cpu }' <<<"$out"
}

untrack
rows=$(pg -At -c 'SELECT count(*) FROM messages')
shape=$(pg -At <<'SQL'
SELECT format('%s messages (%s replies, %s of them without usage, estimated) in %s conversations over %s UTC months; table %s with indexes',
              to_char(count(*), 'FM999,999,999'),
              to_char(count(*) FILTER (WHERE role = 'assistant'), 'FM999,999,999'),
              to_char(count(*) FILTER (WHERE role = 'assistant' AND NOT data ? 'prompt_tokens'), 'FM999,999,999'),
              to_char(count(DISTINCT conversation_id), 'FM999,999,999'),
              count(DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')),
              pg_size_pretty(pg_total_relation_size('messages')))
  FROM messages;
SQL
)

samples=$tmp/samples.tsv
: >"$samples"
load_before=$(load_average)
for ((run = 1; run <= runs; run++)); do
    log "run $run/$runs: track_messages in a new connection"
    pg -c CHECKPOINT >/dev/null
    IFS=$'\t' read -r cold_ms cold_cpu < <(timed_backfill)
    counted=$(pg -At -c "SELECT sum(messages) FROM billing.month_usage")
    log "run $run/$runs: untrack_messages"
    mapfile -t u < <(elapsed "SELECT billing.untrack_messages('public.messages')")
    pg -c 'VACUUM billing.usage_ledger, billing.month_usage, billing.conversation_usage, billing.estimated_prompts, billing.problem_messages' >/dev/null
    log "run $run/$runs: track_messages in a connection that has read the table"
    pg -c CHECKPOINT >/dev/null
    IFS=$'\t' read -r warm_ms warm_cpu < <(timed_backfill warm)
    warm_counted=$(pg -At -c "SELECT sum(messages) FROM billing.month_usage")
    untrack
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cold_ms" "${u[0]}" "$counted" "$cold_cpu" "$warm_ms" "$warm_cpu" \
        "$warm_counted" >>"$samples"
done
load_after=$(load_average)

# The statements the backfill runs, each with its duration (auto_explain,
# nested statements, no ANALYZE: only the total time of each is measured).
if ((breakdown)); then
    log "breakdown run (auto_explain)"
    pg -At >"$tmp/explain.out" 2>&1 <<'SQL'
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SET auto_explain.log_format = json;
SET client_min_messages = notice;
\o /dev/null
SELECT billing.track_messages('public.messages');
SQL
    # One line per statement: ms, its first line, its top plan node.
    node -e '
        const text = require("fs").readFileSync(process.argv[1], "utf8");
        const parts = text.split(/^NOTICE:  duration: ([0-9.]+) ms  plan:$/m);
        for (let i = 1; i < parts.length; i += 2) {
            const json = parts[i + 1].slice(0, parts[i + 1].lastIndexOf("}") + 1);
            const e = JSON.parse(json);
            const q = e["Query Text"].split("\n").map((l) => l.trim()).filter((l) => l)[0] || "";
            const p = e.Plan;
            const node = p["Node Type"] + (p.Operation ? " (" + p.Operation + ")" : "") +
                (p["Relation Name"] ? " on " + (p.Schema ? p.Schema + "." : "") + p["Relation Name"] : "");
            console.log([parts[i], q.replace(/\s+/g, " ").slice(0, 110), node].join("\t"));
        }' "$tmp/explain.out" >"$tmp/breakdown.tsv"
    untrack
fi

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

# stats COLUMN: "median min max" of a sample column (1: track_messages ms,
# 2: untrack_messages ms, 5: track_messages ms in a warm connection), in
# whole ms; cpu COLUMN: the same for CPU seconds (4: new connection, 6: warm).
stats() { sample_stats 0 "$1" "$samples"; }
cpu() { sample_stats 2 "$1" "$samples"; }
pg_version=$(server_version)
settings=$(settings_line shared_buffers work_mem maintenance_work_mem max_parallel_workers_per_gather jit wal_level)
counted=$(cut -f 3,7 "$samples" | tr '\t' '\n' | sort -u | paste -sd /)

report=$tmp/report.md
{
    echo "## Backfill: billing.track_messages('public.messages') on $(printf '%d' "$rows") existing messages, $runs runs ($(utc_time))"
    echo
    machine_line "$load_before" "$load_after"
    echo "- $pg_version; billing $(billing_version); settings: $settings"
    echo "- data: $shape"
    echo "- messages counted by billing after each backfill: $counted (of $rows): $([[ $counted == "$rows" ]] && echo yes || echo '**NO**')"
    echo
    md_row step "median s" "min–max s" "rows per second (median)" "backend CPU s (median, min–max)" "rows per CPU second"
    md_row --- ---: ---: ---: ---: ---:
    for pair in "1 4 SELECT billing.track_messages('public.messages')" \
                "5 6 the same, in a connection that has just read the table"; do
        read -r col cpu_col label <<<"$pair"
        read -r med lo hi < <(stats "$col")
        read -r cmed clo chi < <(cpu "$cpu_col")
        awk -v m="$med" -v lo="$lo" -v hi="$hi" -v r="$rows" -v c="$cmed" -v clo="$clo" -v chi="$chi" -v l="$label" \
            'BEGIN { printf "| %s | %.1f | %.1f–%.1f | %.0f | %.1f (%.1f–%.1f) | %.0f |\n", l, m / 1000, lo / 1000, hi / 1000, r / (m / 1000), c, clo, chi, r / c }'
    done
    read -r med lo hi < <(stats 2)
    awk -v m="$med" -v lo="$lo" -v hi="$hi" \
        'BEGIN { printf "| SELECT billing.untrack_messages('"'"'public.messages'"'"') | %.1f | %.1f–%.1f | | | |\n", m / 1000, lo / 1000, hi / 1000 }'
    if ((breakdown)) && [[ -s $tmp/breakdown.tsv ]]; then
        echo
        echo "Where the time goes (one more run under auto_explain, nested statements, durations only; statements of 1% or more of the top-level one):"
        echo
        md_row ms statement "top plan node"
        md_row ---: --- ---
        total=$(sort -g "$tmp/breakdown.tsv" | tail -n 1 | cut -f 1)
        awk -F '\t' -v total="$total" '$1 >= total / 100 {
                q = $2; gsub(/\|/, "\\|", q); p = $3; gsub(/\|/, "\\|", p)
                printf "| %.0f | `%s` | %s |\n", $1, q, p }' "$tmp/breakdown.tsv"
    fi
} >"$report"

save_report "$report" "bench/results/backfill-$(utc_stamp)-$rows.md"
[[ $counted == "$rows" ]]
