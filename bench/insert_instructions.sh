#!/usr/bin/env bash
# Benchmark: what tracking adds to the app's writes, counted in CPU
# instructions instead of seconds. bench/inserts.sh times the writes with
# pgbench; on a machine shared with other work its ratios scatter (0.4x to
# 2x between rounds). Instructions do not: valgrind's callgrind counts
# those a process executes, the same for the same work whatever else the
# CPUs are doing. This script runs the same writes as bench/inserts.sh in a
# single-user backend (postgres --single) under callgrind, once into a
# tracked table and once into an untracked copy, and reports instructions
# per row and their ratio: the throughput ratio a CPU-bound server would
# show. What it leaves out, and inserts.sh measures: the kernel's work (WAL
# fsync), waits for locks and I/O, and the client. See bench/README.md
# ("Inserts in instructions").
#
#   bench/insert_instructions.sh [--rows N] [--preload N] [--per-conversation P]
#                                [--workloads LIST] [--budgets N] [--partitioned]
#                                [--no-setup]
#
#   --rows N      rows per single-row workload (default 2000; multirow: N
#                 rows in statements of 100, copy: 10,000 rows in one COPY)
#   --preload N   messages of bench/generate.sql in each table (default
#                 100000: 1,000 conversations of 100 messages on average)
#   --per-conversation P  messages per conversation on average (default 100;
#                 generate.sql's per_conversation): what an estimated
#                 reply reads grows with it
#   --workloads LIST  space-separated, among reply user estimated multirow
#                 copy (default: all five)
#   --budgets N   N budgets defined (default 0; issue 11 asks for writes with
#                 20), as bench/inserts.sh --budgets defines them
#   --partitioned both tables partitioned by month of created_at (bench/lib.sh's
#                 messages_copy_sql): an estimated reply reads its
#                 conversation in each month's partition
#   --no-setup    skip tools/setup.sh (reuse the installed build)
#   --profiles DIR  keep each run's callgrind profile in DIR
#                 (<workload>-<table>-<part>.callgrind, for callgrind_annotate)
#
# Makes its own throwaway cluster (tools/cluster.sh, PostgreSQL's default
# settings), stops it, and runs each workload as a script of prepared
# INSERTs (EXECUTE, one per transaction, as pgbench -M prepared sends them)
# in `postgres --single` under valgrind --tool=callgrind, twice: with
# warm-up rows only, and with the warm-up rows and the measured ones; the
# difference is the measured rows' instructions. The report goes to stdout and to
# bench/results/insert-instructions-<date>.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

rows=2000
preload=100000
setup=1
budgets=0
per_conversation=100
profiles=""
layout=plain
workloads="reply user estimated multirow copy"
usage() { sed -n '15,36s/^# \{0,1\}//p' "$0"; }
while (($#)); do
    case $1 in
        --rows) rows=${2:-}; shift ;;
        --preload) preload=${2:-}; shift ;;
        --budgets) budgets=${2:-}; shift ;;
        --per-conversation) per_conversation=${2:-}; shift ;;
        --workloads) workloads=${2:-}; shift ;;
        --profiles) profiles=${2:-}; shift ;;
        --partitioned) layout=partitioned ;;
        --no-setup) setup=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "insert_instructions.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for n in "$rows" "$preload"; do
    if [[ ! $n =~ ^[1-9][0-9]*$ ]] || ((n < 100)); then
        echo "insert_instructions.sh: --rows and --preload take an integer of at least 100, got '$n'" >&2
        exit 2
    fi
done
[[ $per_conversation =~ ^[1-9][0-9]*$ ]] || { echo "insert_instructions.sh: --per-conversation takes a positive integer, got '$per_conversation'" >&2; exit 2; }
for w in $workloads; do
    [[ " reply user estimated multirow copy " == *" $w "* ]] || { echo "insert_instructions.sh: unknown workload '$w'" >&2; exit 2; }
done
[[ -n ${workloads// /} ]] || { echo "insert_instructions.sh: --workloads names none" >&2; exit 2; }
# A partial run (other conversation sizes, some workloads) is titled and
# named apart: bench/summary.sh shows the newest full run.
partial=0
[[ $per_conversation == 100 && $workloads == "reply user estimated multirow copy" && $layout == plain ]] || partial=1
command -v valgrind >/dev/null || { echo "insert_instructions.sh: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
if ((setup)); then
    log "tools/setup.sh"
    bash tools/setup.sh >&2
fi

# shellcheck source=tools/cluster.sh
. tools/cluster.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-instr.XXXXXX")
chmod 0755 "$tmp"
cleanup() {
    cluster_stop
    rm -rf -- "$tmp"
}
trap cleanup EXIT

log "starting a throwaway cluster (PostgreSQL's default settings)"
cluster_start
pg -c 'CREATE EXTENSION billing' >/dev/null
log "generating $preload messages (bench/generate.sql)"
pg -v messages="$preload" -v per_conversation="$per_conversation" -f bench/generate.sql >/dev/null

# The two tables: public.messages' shape and rows (bench/lib.sh's
# messages_copy_sql, as inserts.sh makes them); one tracked.
for t in ins_untracked ins_tracked; do
    messages_copy_sql "$t" true "$layout" | pg >/dev/null
done
pg -c "SELECT billing.track_messages('ins_tracked')" >/dev/null
[[ $budgets =~ ^[0-9]+$ ]] || { echo "insert_instructions.sh: --budgets takes a non-negative integer, got '$budgets'" >&2; exit 2; }
((budgets == 0)) || bench_budgets_sql bench_ins_ "$budgets" | pg >/dev/null
pg -c 'SELECT billing.merge()' -c 'VACUUM ANALYZE' >/dev/null

# The workloads' rows, drawn once (the same for both tables), as inserts.sh
# draws them: random conversations of the table; a reply's content 100 to
# 1,500 characters and its usage, a user message's 20 to 400, an estimated
# reply's 100 to 1,500 without usage. One EXECUTE per line.
draw() { # draw KIND COUNT: the arguments of the prepared INSERT, one row a line
    pg -At -c "SELECT setseed(0.42)" -c "
        WITH c AS (SELECT array_agg(DISTINCT conversation_id) AS ids FROM ins_untracked)
        SELECT format('(%L, %L, %L, %L)', c.ids[1 + floor(random() * cardinality(c.ids))::int],
                      CASE '$1' WHEN 'user' THEN 'user' ELSE 'assistant' END,
                      left(repeat('lorem ipsum dolor sit amet ', 60),
                           CASE '$1' WHEN 'user' THEN 20 + floor(random() * 381)::int
                                     ELSE 100 + floor(random() * 1401)::int END),
                      CASE '$1' WHEN 'reply'
                           THEN jsonb_build_object('tokens', p + q, 'prompt_tokens', p, 'completion_tokens', q,
                                                   'model', (ARRAY['gpt-4o-mini', 'gpt-4o', 'gpt-4o-2024-08-06'])[1 + k % 3])
                           ELSE '{}'::jsonb END)
          FROM c, generate_series(1, $2) AS k,
               LATERAL (SELECT 200 + floor(random() * 9500)::int AS p, 20 + floor(random() * 1200)::int AS q) AS u"
}
draw reply $((rows + 200)) >"$tmp/reply.rows"
draw user $((rows + 200)) >"$tmp/user.rows"
draw estimated $((rows + 200)) >"$tmp/estimated.rows"
# multirow and copy: half replies with usage, half user messages.
paste -d '\n' <(head -n $((rows / 2 + 100)) "$tmp/reply.rows") <(head -n $((rows / 2 + 100)) "$tmp/user.rows") >"$tmp/mixed.rows"
copy_rows=10000
for f in copy-warm:1000 copy:$copy_rows; do
    pg -c "\\copy (SELECT conversation_id, role, content, data FROM ins_untracked
                    WHERE role = 'user' OR data ? 'prompt_tokens' ORDER BY random() LIMIT ${f#*:}) TO '$tmp/${f%%:*}.data'" >/dev/null
done
chmod 0644 "$tmp"/*

# One script per workload, table and part, in postgres --single's syntax
# (a statement per line): part "warm" writes the first $warm rows (the
# first row a backend sends through the trigger's full body, plans and
# caches are made: costs paid once, not per row); part "all" the same,
# then the measured rows. Instructions per row: (all − warm) ÷ measured
# rows, which leaves out every cost paid once.
warm=200
script() { # script WORKLOAD TABLE PART
    local w=$1 t=$2 part=$3 last
    case $w in
        reply | user | estimated)
            if [[ $part == warm ]]; then last=$warm; else last=$((warm + rows)); fi
            echo "PREPARE ins(uuid, text, text, jsonb) AS INSERT INTO $t (conversation_id, role, content, data) VALUES (\$1, \$2, \$3, \$4)"
            head -n "$last" "$tmp/$w.rows" | sed 's/^/EXECUTE ins/' ;;
        multirow)
            if [[ $part == warm ]]; then last=$warm; else last=$((warm + rows)); fi
            # statements of 100 rows, one transaction each
            head -n "$last" "$tmp/mixed.rows" | awk -v t="$t" '{ row[n++] = $0 }
                END { for (i = 0; i < n; i += 100) {
                          s = "INSERT INTO " t " (conversation_id, role, content, data) VALUES " row[i]
                          for (j = i + 1; j < i + 100 && j < n; j++) s = s ", " row[j]
                          print s } }' ;;
        copy)
            echo "COPY $t (conversation_id, role, content, data) FROM '$tmp/copy-warm.data'"
            [[ $part == warm ]] || echo "COPY $t (conversation_id, role, content, data) FROM '$tmp/copy.data'" ;;
    esac
}

versions="$(server_version); billing $(billing_version)"
data_dir=$BILLING_CLUSTER_DIR/data
cluster_pg_ctl -m fast -w stop >/dev/null

# instructions WORKLOAD TABLE PART: the instructions callgrind counted for
# the whole single-user run.
instructions() {
    local out=$tmp/$1-$2-$3
    script "$1" "$2" "$3" >"$out.sql"
    chmod 0644 "$out.sql"
    local keep=/dev/null
    if [[ -n $profiles ]]; then
        mkdir -p "$tmp/profiles" && chmod 0777 "$tmp/profiles"   # (written by the cluster's owner)
        keep=$tmp/profiles/$1-$2-$3.callgrind
    fi
    as_owner valgrind --tool=callgrind --callgrind-out-file="$keep" \
        "$PG_BINDIR/postgres" --single -D "$data_dir" -c shared_preload_libraries= postgres \
        <"$out.sql" >"$out.out" 2>"$out.err" || { cat "$out.err" >&2; return 1; }
    if grep -q 'ERROR' "$out.out"; then
        grep -m 3 'ERROR' "$out.out" >&2
        return 1
    fi
    [[ -z $profiles ]] || { mkdir -p "$profiles" && cp "$keep" "$profiles/"; }
    sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$out.err"
}

load_before=$(load_average)
started=$SECONDS
declare -A count
for w in $workloads; do
    for t in ins_untracked ins_tracked; do
        for part in warm all; do
            log "callgrind: $w into $t ($part)"
            count[$w,$t,$part]=$(instructions "$w" "$t" "$part")
        done
    done
done
load_after=$(load_average)

rows_of() { case $1 in copy) echo "$copy_rows" ;; *) echo "$rows" ;; esac; }
per_row() { echo $(((count[$1,$2,all] - count[$1,$2,warm]) / $(rows_of "$1"))); }
declare -A title=(
    [reply]="reply: assistant replies with usage, one prepared INSERT per transaction"
    [user]="user: user messages (data '{}'), one prepared INSERT per transaction"
    [estimated]="estimated: replies without usage (data '{}'), one prepared INSERT per transaction"
    [multirow]="multirow: INSERTs of 100 rows (half replies with usage, half user messages)"
    [copy]="copy: one COPY of $copy_rows rows (replies with usage and user messages)"
)
report=$tmp/report.md
{
    if ((!partial)); then
        echo "## Inserts in instructions, tracked vs untracked, tables of $preload rows ($(utc_time))"
    else
        # (a partial run: bench/summary.sh lists it, and shows the newest full one)
        echo "## Inserts in instructions, tracked vs untracked, $([[ $layout == partitioned ]] && echo "monthly partitioned ")tables of $preload rows, $per_conversation messages per conversation on average: ${workloads// /, } ($(utc_time))"
    fi
    echo
    machine_line "$load_before" "$load_after" "the runs ($(((SECONDS - started + 30) / 60)) min; instructions do not depend on it)"
    echo "- $versions; $(valgrind --version)"
    echo "- budgets defined: $budgets$( ((budgets == 0)) || echo " (bench_ins_1 to bench_ins_$budgets: over everything, OpenAI, AWS, then per model and per conversation; no trigger reads them)")"
    echo "- each workload a script run by \`postgres --single\` under \`valgrind --tool=callgrind\` (PostgreSQL's default settings, no preloaded library); each twice: the first $warm rows (1,000 for copy), then the same and the measured rows; instructions per row: the difference ÷ the measured rows, so that what a backend pays once (the first row through the trigger's full body, plans, caches) is left out; the tracked table's trigger and its ledger row are in its count, merges are not (none runs)"
    echo "- ratio: untracked ÷ tracked instructions per row, the throughput a CPU-bound server would keep; targets (issue 15): 0.9 for single-row inserts, 0.8 for multi-row INSERTs and COPY. Not counted: the kernel (WAL writes and fsync, the same for both but for the ledger's WAL), lock and I/O waits, the client"
    echo
    md_row workload rows "instructions per row, untracked" "instructions per row, tracked" "added per row" "untracked / tracked" target
    md_row --- ---: ---: ---: ---: ---: ---
    for w in $workloads; do
        n=$(rows_of "$w")
        u=$(per_row "$w" ins_untracked)
        tr=$(per_row "$w" ins_tracked)
        case $w in multirow | copy) goal=0.8 ;; *) goal=0.9 ;; esac
        met=$(awk -v a="$u" -v b="$tr" -v g="$goal" 'BEGIN { print (a / b >= g ? "met" : "**not met**") }')
        md_row "${title[$w]}" "$n" "$u" "$tr" "$((tr - u))" "$(awk -v a="$u" -v b="$tr" 'BEGIN { printf "%.3f", a / b }')" "≥ $goal: $met"
    done
} >"$report"
cat "$report"
mkdir -p bench/results
# (a partial run's file names what it ran, so that a full run of the same
# minute keeps its own)
name=insert-instructions-$(utc_stamp)
((!partial)) || name+=-p$per_conversation-${workloads// /-}
[[ $layout == plain ]] || name+=-$layout
cp "$report" "bench/results/$name.md"
chmod 0644 "bench/results/$name.md"
log "report saved to bench/results/$name.md"
