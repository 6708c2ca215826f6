#!/usr/bin/env bash
# Regenerates bench/results/latest.md, the one file the documents quote
# benchmark figures from: the headline figures of the newest report of each
# kind and size in bench/results/, each naming the report it comes from, the
# targets checked against them, and an index of every report.
#
#   bench/summary.sh [DIR]    DIR: the reports (default bench/results); writes DIR/latest.md
#
# Every bench script runs it after saving its report (save_report in
# bench/lib.sh); run it by hand after adding or removing a report. Figures
# are copied from the reports, or computed from their medians (a ratio of
# two medians of the same report); a figure missing from the newest report
# of its size (a contender left out with --no-plain, a row added to the
# script later) comes from the newest report of that size that has it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

dir=${1:-bench/results}
out=$dir/latest.md
if [[ ! -d $dir ]]; then
    echo "summary.sh: no directory $dir" >&2
    exit 2
fi

# ---------------------------------------------------------------------------
# Reading a report
# ---------------------------------------------------------------------------

# cell FILE COLUMN PREFIX [PREFIX2]: cell COLUMN (1-based) of the first table
# row whose first cell starts with PREFIX (and second with PREFIX2).
cell() {
    awk -v col="$2" -v p1="$3" -v p2="${4:-}" '
        /^\| / && !/^\| -/ {
            n = split(substr($0, 3, length($0) - 4), c, / \| /)
            if (index(c[1], p1) == 1 && (p2 == "" || index(c[2], p2) == 1)) { print c[col]; exit }
        }' "$1"
}
# first_word: the first word of stdin ("0.87 (to sum of ...)" -> "0.87").
first_word() { awk '{ print $1; exit }'; }
# bullet FILE PREFIX: the rest of the first line that starts with PREFIX.
bullet() { awk -v p="$2" 'index($0, p) == 1 { print substr($0, length(p) + 1); exit }' "$1"; }
# thousands N: 1000000 -> 1,000,000.
thousands() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }
# last_run FILE: the last run of bench/row_cost.sh in FILE, from its heading
# ("## billing row cost: ...", or "###" in a report that compares runs) to
# the next heading; nothing when there is none.
last_run() {
    awk '/^#+ billing row cost: / { buf = ""; on = 1 }
         on && /^#/ && !/^#+ billing row cost: / { on = 0 }
         on { buf = buf $0 "\n" }
         END { printf "%s", buf }' "$1"
}

# The catalog: one line per report, newest first:
#   time  kind  key  file  billing-version  load-before  checks
catalog=$(mktemp)
tmp_out=""
trap 'rm -f -- "$catalog" ${tmp_out:+"$tmp_out"}' EXIT
for f in "$dir"/*.md; do
    [[ -e $f ]] || continue
    name=${f##*/}
    [[ $name != latest.md ]] || continue
    case $name in
        dashboard-states-*-*.md)
            # Keyed by the messages of its heading (C conversations x (M + 1)),
            # not by the file name's conversation count.
            kind=states
            key=$(sed -n '1s/^## dashboard() in the states of a live database: \([0-9,]*\) messages in .*/\1/p' "$f" | tr -d ,) ;;
        dashboard-*-*.md) kind=dashboard key=${name##*-} key=${key%.md} ;;
        row-cost-*-*.md) kind=row-cost key=${name##*-} key=${key%.md} ;;
        backfill-*-*.md) kind=backfill key=${name##*-} key=${key%.md} ;;
        budgets-*-*.md) kind=budgets key=${name##*-} key=${key%.md} ;;
        forecast-*-*.md) kind=forecast key=${name##*-} key=${key%.md} ;;
        insert-instructions-*.md)
            kind=instructions
            key=$(sed -n '1s/^## Inserts in instructions, tracked vs untracked, tables of \([0-9]*\) rows (.*/\1/p' "$f")
            # (a run of some workloads, or of other conversation sizes)
            [[ -n $key ]] || { kind=instructions-partial; key=$(sed -n '1s/^## Inserts in instructions, [^0-9]*\([0-9]*\) rows, \([0-9]*\) messages.*/\1 rows, \2/p' "$f"); } ;;
        inserts-*.md)
            # Since issue 15: preloaded tables, five workloads, the settings
            # kind; before: empty tables, single-row inserts only.
            key=$(sed -n '1s/^## Inserts, tracked vs untracked, into tables of \([0-9]*\) rows, \([a-z0-9]*\) settings: .*/\1 rows, \2 settings/p' "$f")
            if [[ -n $key ]]; then
                kind=writes
            else
                kind=inserts
                key=$(sed -n '1s/.*: \([0-9]* rounds* of [0-9]* s\) per client count.*/\1/p' "$f")
            fi ;;
        [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]-*.md) kind=aggregates key=${name##*-} key=${key%.md} ;;
        *) kind=other key="" ;;
    esac
    # The run the figures come from: the whole report, but for a row cost
    # report its last run (one report can hold several: before and after).
    run=""
    [[ $kind != row-cost ]] || run=$(last_run "$f")
    [[ -n $run ]] || run=$(<"$f")
    time=$(sed -n '1s/.*(\([0-9-]* [0-9:]*\) UTC)$/\1/p' <<<"$run")
    # (the forecast backtest's heading has no time: its "- made:" line has)
    [[ -n $time ]] || time=$(sed -n 's/^- made: \([0-9-]* [0-9:]*\) UTC.*/\1/p' <<<"$run" | head -n 1)
    version=$(grep -m 1 -o '; billing [0-9][0-9.]*' <<<"$run" | awk '{ print $3 }' || true)
    load=$(sed -n 's/^- machine: .*load average \([0-9.]*\) .*/\1/p' <<<"$run" | head -n 1)
    # (a target marked "**not met**" is a result, not a failed check)
    if sed 's/\*\*not met\*\*//g' "$f" | grep -q '\*\*'; then checks="**failed**"; else checks="passed"; fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${time:--}" "$kind" "${key:--}" "$name" "${version:--}" "${load:--}" "$checks"
done | sort -r >"$catalog"

# reports KIND KEY: the files of that kind and key, newest first.
reports() { awk -F '\t' -v k="$1" -v key="$2" '$2 == k && $3 == key { print $4 }' "$catalog"; }
# keys KIND: the keys of that kind, one a line, in numeric order.
keys() { awk -F '\t' -v k="$1" '$2 == k { print $3 }' "$catalog" | sort -u | sort -n; }
# source NAME: the report cell of a figure: link, time, version, load.
source_of() {
    awk -F '\t' -v n="$1" '$4 == n {
        printf "[%s](%s): %s UTC", n, n, $1
        if ($5 != "-") printf ", billing %s", $5
        if ($6 != "-") printf ", load %s", $6
        exit }' "$catalog"
}

# figure KIND KEY LABEL FUNCTION [ARGS...]: a table row: LABEL, the value
# FUNCTION FILE ARGS... prints for the newest report of KIND and KEY for
# which it prints one, and that report. No row when no report has it.
figure() {
    local kind=$1 key=$2 label=$3 fn=$4 f value
    shift 4
    for f in $(reports "$kind" "$key"); do
        value=$("$fn" "$dir/$f" "$@" || true)
        if [[ -n $value ]]; then
            md_row "$label" "$value" "$(source_of "$f")"
            return
        fi
    done
}

# ---------------------------------------------------------------------------
# The figures of each kind: FUNCTION FILE [ARGS...] prints a value, or
# nothing when the report does not have it.
# ---------------------------------------------------------------------------

# Cost aggregates (run.sh); MODE: "serial" or "2 workers".
agg_cost() {
    local med r ref
    med=$(cell "$1" 3 "b. cost of all messages, $2" "$3")
    r=$(cell "$1" 5 "b. cost of all messages, $2" "$3" | first_word)
    ref=$(cell "$1" 3 "a. physical floor, $2" "sum of the 2 token fields")
    [[ -n $med && -n $r && -n $ref ]] || return 0
    echo "$med ms: $r× the time of the \`sum()\` of the 2 token fields ($ref ms)"
}
agg_plain() {
    local plain jsonb
    plain=$(cell "$1" 3 "b. cost of all messages, $2" "plain SQL")
    jsonb=$(cell "$1" 3 "b. cost of all messages, $2" "openai_cost(data, created_at)")
    [[ -n $plain && -n $jsonb ]] || return 0
    echo "$plain ms: $(ratio "$plain" "$jsonb")× the time of \`openai_cost(data, created_at)\`"
}
agg_floor() {
    local created plain
    created=$(cell "$1" 3 "a. physical floor, $2" "count(created_at)")
    plain=$(cell "$1" 3 "b. cost of all messages, $2" "plain SQL")
    [[ -n $created && -n $plain ]] || return 0
    echo "$created ms, the least any aggregate that prices by date can take; plain SQL takes $(ratio "$plain" "$created")× as long"
}
agg_memory() {
    local cost sums
    cost=$(cell "$1" 6 "c. per conversation" "openai_cost(data, created_at)")
    sums=$(cell "$1" 6 "c. per conversation" "sum of the 2 token fields")
    [[ -n $cost && -n $sums ]] || return 0
    echo "$cost, against $sums for the two \`sum()\`s"
}
agg_equal() {
    local a b c
    a=$(bullet "$1" "- jsonb form = plain SQL, exactly: ")
    b=$(bullet "$1" "- text form = plain SQL with cached tokens billed as plain input, exactly: ")
    c=$(bullet "$1" "- jsonb form with 2 parallel workers = serial, exactly: ")
    [[ -n $a && -n $b && -n $c ]] || return 0
    echo "jsonb form = plain SQL: $a; text form = plain SQL with cached tokens billed as input: $b; 2 workers = serial: $c"
}
checks() { awk -F '\t' -v n="${1##*/}" '$4 == n { print $7 }' "$catalog"; }

# dashboard.sh; ROW: the start of a contender's label.
dash_time() {
    local med range r
    med=$(cell "$1" 2 "$2")
    range=$(cell "$1" 3 "$2")
    r=$(cell "$1" 4 "$2")
    [[ -n $med ]] || return 0
    if [[ $r == "1.00 (ref)" ]]; then r=""; else r=", $r the warm call's time"; fi
    echo "$med ms ($range)$r"
}
dash_unmerged() {
    local label
    label=$(cell "$1" 1 "$2")
    [[ -n $label ]] || return 0
    echo "$(dash_time "$1" "$2"); $(sed -n 's/.*with \([0-9]* unmerged writes\).*/\1/p' <<<"$label")"
}
dash_node() {
    local label mem heap=""
    label=$(cell "$1" 1 "seed route in Node.js")
    [[ -n $label ]] || return 0
    mem=$(cell "$1" 5 "seed route in Node.js" | sed 's/ (median of the runs)//')
    if grep -q "^With Node's default heap limit the route failed" "$1"; then
        heap="; with Node's default heap it ran out of memory, so it ran with $(sed -n 's/.*\(--max-old-space-size=[0-9]*\).*/\1/p' <<<"$label")"
    fi
    echo "$(dash_time "$1" "seed route in Node.js"), $mem$heap"
}
dash_months() {
    awk '/^\| [0-9]+ months( \(copy\))? \| / {
            split(substr($0, 3, length($0) - 4), c, / \| /)
            if (c[1] ~ /copy/) copy = c[1] ": " c[3] " ms"
            else all = c[1] ": " c[3] " ms (" c[5] ")"
        }
        END { if (copy != "" && all != "") print copy "; " all }' "$1"
}
dash_setup() {
    local secs rows
    secs=$(bullet "$1" "- set-up: " | sed -n "s/^SELECT billing.track_messages('public.messages') took \([0-9.]*\) s;.*/\1/p")
    rows=$(sed -n '1s/.*: \([0-9]*\) messages, .*/\1/p' "$1")
    [[ -n $secs && -n $rows ]] || return 0
    echo "$secs s (one run), $(thousands "$(awk -v r="$rows" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')") rows/s"
}
dash_equal() {
    # Per state: the cost column, and any other column of the table that is
    # not "yes" (cards, top 50, history).
    awk '
        /^\| state \| / { n = split(substr($0, 3, length($0) - 4), head, / \| /); on = 1; next }
        on && /^\| -/ { next }
        on && /^\| / {
            split(substr($0, 3, length($0) - 4), c, / \| /)
            state = c[1] ~ /^merged/ ? "merged" : c[1] ~ /^with / ? "with the unmerged writes" : c[1] ~ /^after / ? "after deleting them and merging" : c[1]
            line = state ": " c[4]
            for (i = 5; i <= n; i++) if (c[i] != "yes") line = line " (" head[i] ": " c[i] ")"
            out = out (out == "" ? "" : "; ") line
            next
        }
        on { on = 0 }
        END { if (out != "") print out }' "$1"
}

# dashboard_states.sh; STATE: the start of a state's label.
states_time() {
    local med range label detail=""
    med=$(cell "$1" 2 "$2")
    range=$(cell "$1" 3 "$2")
    label=$(cell "$1" 1 "$2")
    [[ -n $med ]] || return 0
    if [[ $label =~ ^after\ merging\ ([0-9,]+)\ current-month\ messages:.*,\ (.+)\ of\ dead\ ledger\ rows$ ]]; then
        detail="; $(thousands "${BASH_REMATCH[1]//,/}") current-month messages just merged, ${BASH_REMATCH[2]} of dead ledger rows"
    elif [[ $label =~ ^with\ ([0-9,]+)\ writes\ unmerged$ ]]; then
        detail="; $(thousands "${BASH_REMATCH[1]//,/}") writes unmerged"
    fi
    echo "$med ms ($range), under 20 ms: $(met "$(below "$med" 20)")$detail"
}

# row_cost.sh, its last run; QUERY: the start of a query's label.
rc_cell() { cell <(last_run "$1") "$2" "$3"; }
rc_ref() {
    local med range cpu
    med=$(rc_cell "$1" 2 "count(created_at)")
    range=$(rc_cell "$1" 3 "count(created_at)")
    cpu=$(rc_cell "$1" 5 "count(created_at)")
    [[ -n $med && -n $cpu ]] || return 0
    echo "$med ms ($range), on-CPU $cpu ms"
}
rc_query() {
    local label med range r cpu cr ns ref cref plan=""
    label=$(rc_cell "$1" 1 "$2")
    med=$(rc_cell "$1" 2 "$2")
    range=$(rc_cell "$1" 3 "$2")
    r=$(rc_cell "$1" 4 "$2")
    cpu=$(rc_cell "$1" 5 "$2")
    cr=$(rc_cell "$1" 6 "$2")
    ns=$(rc_cell "$1" 7 "$2")
    ref=$(rc_cell "$1" 2 "count(created_at)")
    cref=$(rc_cell "$1" 5 "count(created_at)")
    [[ -n $med && -n $r && -n $cpu && -n $cr && -n $ref && -n $cref ]] || return 0
    [[ $label != *"(parallel)"* ]] || plan="; **ran a parallel plan**"
    echo "$r× the time of \`count(created_at)\`: $med ms ($range) against $ref ms; on-CPU $cr×: $cpu against $cref ms, $ns ns per row more$plan"
}
rc_equal() { last_run "$1" | awk -v p="- openai_cost(data, created_at) = plain SQL, exactly: " 'index($0, p) == 1 { print substr($0, length(p) + 1); exit }'; }
rc_data() { last_run "$1" | awk -v p="- data: " 'index($0, p) == 1 { print substr($0, length(p) + 1); exit }'; }

# inserts.sh; CLIENTS: a client count.
ins_clients() {
    awk -v n="$2" '/^\| [0-9]+ \| / {
            split(substr($0, 3, length($0) - 4), c, / \| /)
            if (c[1] != n) next
            split(c[2], u, " "); split(c[3], t, " ")
            printf "%s (%s against %s tps), target ≥ 75%%: %s\n", c[4], t[1], u[1], c[8]
            exit
        }' "$1"
}
ins_check() { bullet "$1" "- after the runs: " | sed -n 's/.*: \(yes\|\*\*NO\*\*\)$/\1/p'; }
# The client counts of the newest report of a key.
ins_client_counts() {
    local f
    f=$(reports inserts "$1" | head -n 1)
    awk '/^\| [0-9]+ \| / { print $2 }' "$dir/$f"
}

# inserts.sh since issue 15 (kind "writes"). write_rows FILE: one line per
# table row: workload, clients, ratio, untracked rows/s, tracked rows/s,
# extra µs per row, WAL bytes per row, target, met.
write_rows() {
    awk '
        /^### [a-z]+: / { w = substr($2, 1, length($2) - 1); next }
        /^\| clients \| / { n = split(substr($0, 3, length($0) - 4), h, / \| /); target = h[n]; sub(/^target /, "", target); next }
        w != "" && /^\| [0-9]+ \| / {
            m = split(substr($0, 3, length($0) - 4), c, / \| /)
            split(c[2], u, " "); split(c[3], t, " ")
            # The verdict is the last column; since the server CPU columns
            # it reads "rows/s verdict, CPU verdict": the rows/s one decides.
            verdict = c[m]; sub(/, .*$/, "", verdict)
            printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", w, c[1], c[4], u[1], t[1], c[6], c[7], target, verdict
        }' "$1"
}
# write_figure FILE WORKLOAD CLIENTS: one row of a workload.
write_figure() {
    write_rows "$1" | awk -F '\t' -v w="$2" -v n="$3" '$1 == w && $2 == n {
        printf "%s: %s against %s rows/s; extra time per row %s µs; WAL bytes per row, untracked / tracked: %s; target %s: %s\n", $3, $5, $4, $6, $7, $8, $9
        exit }'
}
# write_counts KEY WORKLOAD: the client counts of a workload in the newest report of a key.
write_counts() {
    local f
    f=$(reports writes "$1" | head -n 1)
    write_rows "$dir/$f" | awk -F '\t' -v w="$2" '$1 == w { print $2 }'
}
write_check() { bullet "$1" "- after the runs: " | sed -n 's/.*: \(yes\|\*\*NO\*\*\)$/\1/p'; }
write_history() { sed -n 's/^That read alone (.*): median \(.*\)\.$/median \1/p' "$1"; }
write_estimated() {
    sed -n 's/^Estimated replies: .*\. At \([0-9]* clients*\) that adds \(-*[0-9]*\) µs to each row, where a reply with usage adds \(-*[0-9]*\) µs\.$/\2 µs per row at \1, against \3 µs for a reply with usage/p' "$1"
}

# backfill.sh
backfill_time() {
    local med range rate
    med=$(cell "$1" 2 "SELECT billing.track_messages(")
    range=$(cell "$1" 3 "SELECT billing.track_messages(")
    rate=$(cell "$1" 4 "SELECT billing.track_messages(")
    [[ -n $med ]] || return 0
    echo "$med s ($range s), $(thousands "$rate") rows/s"
}
backfill_counted() { bullet "$1" "- messages counted by billing after each backfill: "; }
backfill_warm() {
    local med range rate
    med=$(cell "$1" 2 "the same, in a connection that has just read")
    range=$(cell "$1" 3 "the same, in a connection that has just read")
    rate=$(cell "$1" 4 "the same, in a connection that has just read")
    [[ -n $med ]] || return 0
    echo "$med s ($range s), $(thousands "$rate") rows/s"
}
backfill_cpu() {
    local cold warm
    cold=$(cell "$1" 5 "SELECT billing.track_messages(")
    warm=$(cell "$1" 5 "the same, in a connection that has just read")
    [[ -n $cold && -n $warm ]] || return 0
    echo "$cold s; $warm s"
}

# forecast_backtest.sh; METHOD: the start of a method's label. Its mean
# error on each day scored, the worst month in parentheses.
fc_method() {
    local d5 d10 d15 d20
    d5=$(cell "$1" 2 "$2") d10=$(cell "$1" 3 "$2") d15=$(cell "$1" 4 "$2") d20=$(cell "$1" 5 "$2")
    [[ -n $d5 ]] || return 0
    echo "day 5 $d5; day 10 $d10; day 15 $d15; day 20 $d20"
}
# The method billing.forecast() had when the report was made, and its own
# errors (from the function's forecast column).
fc_itself() {
    local line method errors
    line=$(grep -m 1 "is billing.forecast()'s method" "$1" || true)
    [[ -n $line ]] || return 0
    method=$(sed -n 's/^"\([^"]*\)" is billing.forecast().s method.*/\1/p' <<<"$line")
    errors=$(sed -n 's/.*forecast column: \(.*\)\.$/\1/p' <<<"$line")
    echo "$method: $errors"
}
fc_now() { bullet "$1" "- \`billing.forecast()\` as of now (the current month read from the table up to now): "; }

# ---------------------------------------------------------------------------
# Targets: one row per target and report key, from the newest report that
# has the figures.
# ---------------------------------------------------------------------------

# target KIND KEY LABEL FUNCTION: a row of the targets table; FUNCTION FILE
# prints "result<TAB>met" or nothing.
target() {
    local kind=$1 key=$2 label=$3 fn=$4 f value
    for f in $(reports "$kind" "$key"); do
        value=$("$fn" "$dir/$f" || true)
        if [[ -n $value ]]; then
            md_row "$label" "$(data_of "$kind" "$key")" "${value%%$'\t'*}" "${value#*$'\t'}" "$(source_of "$f")"
            return
        fi
    done
    md_row "$label" "$(data_of "$kind" "$key")" "no report" "" ""
}
data_of() {
    case $1 in
        inserts) echo "$2 per client count" ;;
        writes) echo "$(thousands "${2%% *}") ${2#* }" ;;
        row-cost) echo "$(thousands "$2") short messages" ;;
        *) echo "$(thousands "$2") messages" ;;
    esac
}
met() { if [[ $1 == 1 ]]; then echo met; else echo "**not met**"; fi; }
# at_most A B, below A B: 1 when A <= B (A < B), else 0.
at_most() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? 1 : 0 }'; }
below() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? 1 : 0 }'; }

t_floor() {
    local s p
    s=$(cell "$1" 5 "b. cost of all messages, serial" "openai_cost(data, created_at)" | first_word)
    p=$(cell "$1" 5 "b. cost of all messages, 2 workers" "openai_cost(data, created_at)" | first_word)
    [[ -n $s && -n $p ]] || return 0
    printf '%s\t%s\n' "$s× serial, $p× with 2 workers" \
        "$(met "$(($(at_most "$s" 1) && $(at_most "$p" 1)))")"
}
t_plain() {
    local s p
    s=$(agg_plain "$1" serial | sed -n 's/.*: \([0-9.]*\)× .*/\1/p')
    p=$(agg_plain "$1" "2 workers" | sed -n 's/.*: \([0-9.]*\)× .*/\1/p')
    [[ -n $s && -n $p ]] || return 0
    local bound="" cs cp
    cs=$(agg_floor "$1" serial | sed -n 's/.*takes \([0-9.]*\)× .*/\1/p')
    cp=$(agg_floor "$1" "2 workers" | sed -n 's/.*takes \([0-9.]*\)× .*/\1/p')
    if [[ -n $cs && -n $cp ]]; then
        bound="; out of reach: \`count(created_at)\` alone is only $cs× (serial) and $cp× (2 workers) faster than plain SQL"
    fi
    printf '%s\t%s\n' "$s× serial, $p× with 2 workers$bound" \
        "$(met "$(($(at_most 5 "$s") && $(at_most 5 "$p")))")"
}
t_memory() {
    local r
    r=$(cell "$1" 6 "c. per conversation" "openai_cost(data, created_at)" | sed -n 's/.*(\([0-9.]*\)×)$/\1/p')
    [[ -n $r ]] || return 0
    printf '%s\t%s\n' "$r×" "$(met "$(at_most "$r" 2)")"
}
t_dash() {
    local med
    med=$(cell "$1" 2 "SELECT billing.dashboard(), merged, warm")
    [[ -n $med ]] || return 0
    printf '%s\t%s\n' "$med ms (median, merged, warm connection)" "$(met "$(below "$med" 50)")"
}
# Issue 15: with 10,000 (or more) writes left unmerged, under 20 ms; nothing
# for a report of fewer unmerged writes (dashboard.sh's default was 2,000).
t_dash_unmerged() {
    local label med n
    label=$(cell "$1" 1 "SELECT billing.dashboard() with ")
    med=$(cell "$1" 2 "SELECT billing.dashboard() with ")
    n=$(sed -n 's/.*with \([0-9]*\) unmerged writes.*/\1/p' <<<"$label")
    [[ -n $med && -n $n ]] && ((n >= 10000)) || return 0
    printf '%s\t%s\n' "$med ms (median, $n unmerged writes, warm connection)" "$(met "$(below "$med" 20)")"
}
t_faster() {
    local r
    r=$(cell "$1" 4 "$2")
    [[ -n $r ]] || return 0
    printf '%s\t%s\n' "$r" "$(met "$(at_most 100 "${r%×}")")"
}
t_plain_dash() { t_faster "$1" "plain SQL from"; }
# Every state of the table, each median under 20 ms; nothing unless the
# report has the four states.
t_states() {
    awk '
        function commas(v) { while (v ~ /[0-9][0-9][0-9][0-9]/ && sub(/[0-9][0-9][0-9]($|,)/, ",&", v)) ; return v }
        /^\| state \| median ms \| / { on = 1; next }
        on && /^\| -/ { next }
        on && /^\| / {
            split(substr($0, 3, length($0) - 4), c, / \| /)
            s = c[1]
            if (s ~ /^after merging /) { s = "stale statistics and dead ledger rows"; seen["stale"] = 1 }
            else if (s ~ /^the same after VACUUM/) { s = "after VACUUM"; seen["vacuumed"] = 1 }
            else if (s ~ /^the same after ANALYZE/) { s = "after ANALYZE"; seen["analyzed"] = 1 }
            else if (s ~ /^with [0-9,]+ writes unmerged$/) {
                s = substr(s, 6, length(s) - 21); gsub(/,/, "", s)
                s = "with " commas(s) " unmerged writes"; seen["unmerged"] = 1
            }
            list = list (n++ ? "; " : "") s " " c[2] " ms"
            if (!(c[2] + 0 < 20)) bad = 1
            next
        }
        on { on = 0 }
        END {
            if (!seen["stale"] || !seen["vacuumed"] || !seen["analyzed"] || !seen["unmerged"]) exit
            printf "%s (medians)\t%s\n", list, (bad ? "**not met**" : "met")
        }' "$1"
}
# openai_cost(data, created_at)'s wall and on-CPU ratios, both at most 1.5.
t_row_cost() {
    local w c plan="serial"
    w=$(rc_cell "$1" 4 "billing.openai_cost(data, created_at)")
    c=$(rc_cell "$1" 6 "billing.openai_cost(data, created_at)")
    [[ -n $w && -n $c ]] || return 0
    [[ $(rc_cell "$1" 1 "billing.openai_cost(data, created_at)") != *"(parallel)"* ]] || plan="**a parallel plan**, not serial"
    printf '%s\t%s\n' "$w× wall, $c× on-CPU time ($plan, medians)" \
        "$(met "$(($(at_most "$w" 1.5) && $(at_most "$c" 1.5)))")"
}
t_node_dash() { t_faster "$1" "seed route in Node.js"; }
t_inserts() {
    awk '/^\| [0-9]+ \| / {
            split(substr($0, 3, length($0) - 4), c, / \| /)
            list = list (n++ ? ", " : "") c[4] " at " c[1]
            if (c[8] != "met") bad = 1
        }
        END { if (n) printf "%s clients\t%s\n", list, (bad ? "**not met**" : "met") }' "$1"
}

# t_writes FILE WORKLOAD...: every row of these workloads, "reply 0.95× at 1,
# 0.93× at 4 clients; copy 0.85× at 1 client", met when every row is; nothing unless the
# report has every one of the workloads.
t_writes() {
    local f=$1
    shift
    write_rows "$f" | awk -F '\t' -v list="$*" '
        BEGIN { nw = split(list, want, " ") }
        {
            for (i = 1; i <= nw; i++) if ($1 == want[i]) break
            if (i > nw) next
            seen[$1] = 1; r[$1] = r[$1] (r[$1] == "" ? "" : ", ") $3 " at " $2; rows[$1]++
            if ($9 != "met") bad = 1
        }
        END {
            for (i = 1; i <= nw; i++) if (!seen[want[i]]) exit
            for (i = 1; i <= nw; i++) out = out (i > 1 ? "; " : "") want[i] " " r[want[i]] (rows[want[i]] > 1 || want[i] ~ /^(reply|user|estimated)$/ ? " clients" : " client")
            printf "%s\t%s\n", out, (bad ? "**not met**" : "met")
        }'
}
t_single() { t_writes "$1" reply user estimated; }
# The backfill's rate in a new connection (reports before the CPU column
# have only that row).
t_backfill() {
    local rate
    rate=$(cell "$1" 4 "SELECT billing.track_messages(")
    [[ -n $rate ]] || return 0
    printf '%s\t%s\n' "$(thousands "$rate") rows/s" "$(met "$(at_most 250000 "$rate")")"
}
t_batch() { t_writes "$1" multirow copy; }

# ---------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------

mapfile -t aggregates_keys < <(keys aggregates)
mapfile -t dashboard_keys < <(keys dashboard)
mapfile -t states_keys < <(keys states)
mapfile -t row_cost_keys < <(keys row-cost)
mapfile -t backfill_keys < <(keys backfill)
mapfile -t forecast_keys < <(keys forecast)
mapfile -t inserts_keys < <(keys inserts | sort -r)   # "3 rounds of 30 s" before "2 rounds of 5 s"
mapfile -t writes_keys < <(keys writes | sort -t ' ' -k 1,1nr -k 2,2)   # the largest tables first

tmp_out=$(mktemp "$dir/.latest.XXXXXX")
{
    cat <<'EOF'
# Benchmark results: the newest of each kind

<!-- Generated by bench/summary.sh from the reports in this directory. Do not edit: run a benchmark, or bash bench/summary.sh. -->

Generated by `bench/summary.sh` from the reports in `bench/results/`:
`bench/run.sh`, `row_cost.sh`, `dashboard.sh`, `dashboard_states.sh`,
`inserts.sh`, `backfill.sh` (and so `part2.sh`), `budgets.sh` and
`forecast_backtest.sh` regenerate it (`insert_instructions.sh`'s reports are read too) after
saving their report, and `bash bench/summary.sh` does it by hand. Each
figure is copied from the newest report of its size that has it, or
computed from that report's medians, and names that report, the time it was
made, the billing version it measured and the 1-minute load average before
its timed rounds (2 shared cores: above 1 the machine was busy). Quote
figures from here, with their report. What each figure measures and how:
`bench/README.md` (the cost aggregates, and the inserts since issue 15),
`bench/RESULTS-part2.md` (dashboard, backfill, the earlier inserts) and the
comments at the top of `bench/row_cost.sh` and `bench/dashboard_states.sh`.

## Targets

EOF
    md_row target data result met report
    md_row --- --- --- --- ---
    for key in "${aggregates_keys[@]}"; do
        target aggregates "$key" "\`openai_cost(data, created_at)\` no slower than the \`sum()\` of the 2 token fields" t_floor
    done
    for key in "${aggregates_keys[@]}"; do
        target aggregates "$key" "\`openai_cost(data, created_at)\` at least 5× faster than plain SQL" t_plain
    done
    for key in "${aggregates_keys[@]}"; do
        target aggregates "$key" "grouped by conversation, at most 2× the hash table memory of the two \`sum()\`s" t_memory
    done
    for key in "${row_cost_keys[@]}"; do
        target row-cost "$key" "\`openai_cost(data, created_at)\` within 1.5× of \`count(created_at)\` on short rows" t_row_cost
    done
    target dashboard 10000000 "\`billing.dashboard()\` under 50 ms at 10M messages" t_dash
    target dashboard 10000000 "\`billing.dashboard()\` under 20 ms at 10M messages with 10,000 unmerged writes" t_dash_unmerged
    target dashboard 10000000 "\`billing.dashboard()\` at least 100× faster than plain SQL at 10M" t_plain_dash
    target dashboard 10000000 "\`billing.dashboard()\` at least 100× faster than the seed's Node route at 10M" t_node_dash
    for key in "${states_keys[@]}"; do
        target states "$key" "\`dashboard()\` under 20 ms in each state of a live database (stale statistics, dead ledger rows, unmerged writes)" t_states
    done
    for key in "${writes_keys[@]}"; do
        target writes "$key" "tracked single-row inserts at least 0.9× untracked at every client count: replies with usage, user messages, estimated replies" t_single
    done
    for key in "${writes_keys[@]}"; do
        target writes "$key" "multi-row INSERTs and COPY into a tracked table at least 0.8× untracked" t_batch
    done
    for key in "${inserts_keys[@]}"; do
        target inserts "$key" "earlier target, empty tables: tracked single-row inserts at least 75% of untracked at every client count" t_inserts
    done
    for key in "${backfill_keys[@]}"; do
        target backfill "$key" "the backfill (\`billing.track_messages()\` on an existing table) at least 250,000 rows a second" t_backfill
    done

    echo
    echo "## Cost aggregates (\`bench/run.sh\`)"
    for key in "${aggregates_keys[@]}"; do
        echo
        echo "### $(thousands "$key") messages"
        echo
        md_row figure value report
        md_row --- --- ---
        for mode in serial "2 workers"; do
            figure aggregates "$key" "\`openai_cost(data, created_at)\`, $mode" agg_cost "$mode" "openai_cost(data, created_at)"
            figure aggregates "$key" "\`openai_cost(model, prompt, completion, created_at)\` (text form), $mode" agg_cost "$mode" "openai_cost(model,"
            figure aggregates "$key" "plain SQL (join to \`model_prices\`), $mode" agg_plain "$mode"
            figure aggregates "$key" "\`count(created_at)\`, $mode" agg_floor "$mode"
        done
        figure aggregates "$key" "grouped by conversation: \`HashAggregate\` memory of \`openai_cost\`" agg_memory
        figure aggregates "$key" "equal work, exactly" agg_equal
        figure aggregates "$key" "every check of the report (bad rows, equal work, plans)" checks
    done

    echo
    echo "## billing's own work per row, on short rows (\`bench/row_cost.sh\`)"
    echo
    echo "Serial, jit off, medians; wall: the server's execution time, on-CPU: the"
    echo "backend's. From the last run of each report (a report that compares runs,"
    echo "as before and after a change, ends with the newest)."
    for key in "${row_cost_keys[@]}"; do
        echo
        echo "### $(data_of row-cost "$key")"
        echo
        md_row figure value report
        md_row --- --- ---
        figure row-cost "$key" "\`count(created_at)\`, the reference: scan, row taken apart, one transition call" rc_ref
        figure row-cost "$key" "\`openai_cost(data, created_at)\`, each row at its date's prices" rc_query "billing.openai_cost(data, created_at)"
        figure row-cost "$key" "\`openai_cost(data)\`, each row at today's prices" rc_query "billing.openai_cost(data)"
        figure row-cost "$key" "\`count(data)\`, reading the jsonb column" rc_query "count(data)"
        figure row-cost "$key" "equal work: \`openai_cost(data, created_at)\` = plain SQL, exactly" rc_equal
        figure row-cost "$key" "data" rc_data
        figure row-cost "$key" "every check of the report (equal work, serial plans)" checks
    done

    echo
    echo "## The dashboard (\`bench/dashboard.sh\`)"
    for key in "${dashboard_keys[@]}"; do
        echo
        echo "### $(thousands "$key") messages"
        echo
        md_row figure value report
        md_row --- --- ---
        figure dashboard "$key" "\`billing.dashboard()\`, merged, warm connection" dash_time "SELECT billing.dashboard(), merged, warm"
        figure dashboard "$key" "\`billing.dashboard()\`, first call of a new connection" dash_time "SELECT billing.dashboard(), first call"
        figure dashboard "$key" "\`billing.dashboard()\` with unmerged writes" dash_unmerged "SELECT billing.dashboard() with "
        figure dashboard "$key" "\`billing.dashboard()\` as a reading role (row-level security), merged" dash_time "SELECT billing.dashboard() as a reading role"
        figure dashboard "$key" "the same as a reading role, with unmerged writes" dash_time "the same as a reading role, with"
        figure dashboard "$key" "plain SQL (\`bench/dashboard-plain.sql\`)" dash_time "plain SQL from"
        figure dashboard "$key" "the seed's route in Node.js (\`bench/node/route.js\`)" dash_node
        figure dashboard "$key" "\`billing.dashboard()\` with 3 months of data and with all of it" dash_months
        figure dashboard "$key" "equal work: \`dashboard()\`'s OpenAI cost = plain SQL's, exactly (and any other column of the check that differs)" dash_equal
        figure dashboard "$key" "set-up: \`billing.track_messages()\` on the existing rows (the backfill)" dash_setup
        figure dashboard "$key" "every check of the report" checks
    done

    echo
    echo "## \`dashboard()\` in the states of a live database (\`bench/dashboard_states.sh\`)"
    for key in "${states_keys[@]}"; do
        echo
        echo "### $(thousands "$key") messages"
        echo
        md_row figure value report
        md_row --- --- ---
        figure states "$key" "\`billing.dashboard()\` after a merge: statistics that believe the month empty, the merged ledger rows dead" states_time "after merging"
        figure states "$key" "the same after \`VACUUM billing.usage_ledger\`" states_time "the same after VACUUM"
        figure states "$key" "the same after \`ANALYZE\` of the rollups" states_time "the same after ANALYZE"
        figure states "$key" "with unmerged writes" states_time "with "
        figure states "$key" "every check of the report" checks
    done

    echo
    echo "## Tracked writes into preloaded tables (\`bench/inserts.sh\`)"
    if ((${#writes_keys[@]} == 0)); then
        echo
        echo "No report yet."
    fi
    for key in "${writes_keys[@]}"; do
        echo
        echo "### $(data_of writes "$key")"
        echo
        md_row "figure (tracked / untracked)" value report
        md_row --- --- ---
        for w in reply user estimated multirow copy; do
            for n in $(write_counts "$key" "$w"); do
                figure writes "$key" "$w, $n client$([[ $n == 1 ]] || echo s)" write_figure "$w" "$n"
            done
        done
        figure writes "$key" "extra time per row of an estimated reply (its trigger reads the conversation's earlier messages)" write_estimated
        figure writes "$key" "an estimated reply's read of its conversation's earlier messages, alone" write_history
        figure writes "$key" "billing's count, cost and estimates of the tracked rows = the table's" write_check
    done

    echo
    echo "## Tracked inserts into empty tables, before issue 15 (\`bench/inserts.sh\`)"
    for key in "${inserts_keys[@]}"; do
        echo
        echo "### $key per client count"
        echo
        md_row figure value report
        md_row --- --- ---
        for n in $(ins_client_counts "$key"); do
            figure inserts "$key" "tracked / untracked tps, $n client$([[ $n == 1 ]] || echo s)" ins_clients "$n"
        done
        figure inserts "$key" "billing's count and cost of the tracked rows = the table's" ins_check
    done

    echo
    echo "## Backfill (\`bench/backfill.sh\`)"
    for key in "${backfill_keys[@]}"; do
        echo
        echo "### $(thousands "$key") messages"
        echo
        md_row figure value report
        md_row --- --- ---
        figure backfill "$key" "\`billing.track_messages()\` on the existing rows" backfill_time
        figure backfill "$key" "the same in a connection that has just read the table" backfill_warm
        figure backfill "$key" "the backend's CPU time of the backfill (new connection; warm)" backfill_cpu
        figure backfill "$key" "messages counted by billing after each backfill" backfill_counted
    done

    echo
    echo "## Forecast backtest (\`bench/forecast_backtest.sh\`)"
    echo
    echo "Mean absolute percentage error of the month's end forecast made on day"
    echo "5, 10, 15 and 20 of each complete month, against its actual total (worst"
    echo "month in parentheses); what each method is: \`bench/README.md\`."
    for key in "${forecast_keys[@]}"; do
        echo
        echo "### $(thousands "$key") messages"
        echo
        md_row figure value report
        md_row --- --- ---
        figure forecast "$key" "run rate" fc_method "run rate"
        figure forecast "$key" "past daily average only" fc_method "past daily average only"
        figure forecast "$key" "rate blend" fc_method "rate blend"
        figure forecast "$key" "month so far + past daily average" fc_method "month so far + past daily average"
        figure forecast "$key" "\`billing.forecast()\` itself (its method when the report was made: its own errors on day 5 and 20)" fc_itself
        figure forecast "$key" "\`billing.forecast()\` as of now (the month so far read from the table)" fc_now
        figure forecast "$key" "every check of the report" checks
    done

    # bench/insert_instructions.sh: its newest report's table as it is (the
    # counts do not move with the machine's load).
    newest_instructions=$(awk -F '\t' '$2 == "instructions" { print $4; exit }' "$catalog")
    if [[ -n $newest_instructions ]]; then
        echo
        echo "## Inserts in instructions"
        echo
        echo "From [$newest_instructions]($newest_instructions) (\`bench/insert_instructions.sh\`: the same writes as \`inserts.sh\`, counted in CPU instructions by callgrind in a single-user backend, so that other work on the machine does not move them):"
        echo
        grep '^|' "$dir/$newest_instructions"
    fi

    echo
    echo "## Every report"
    echo
    echo "Newest first. \`checks\`: \"failed\" when the report marks a failed check in bold."
    echo
    md_row report what "made (UTC)" billing "load average before" checks
    md_row --- --- --- --- ---: ---
    while IFS=$'\t' read -r time kind key name version load checks; do
        case $kind in
            aggregates) what="cost aggregates, $(thousands "$key") messages" ;;
            dashboard) what="dashboard, $(thousands "$key") messages" ;;
            states) what="dashboard in the states of a live database, $(thousands "$key") messages" ;;
            row-cost) what="row cost, $(data_of row-cost "$key")" ;;
            backfill) what="backfill, $(thousands "$key") messages" ;;
            budgets) what="budgets (allowance, status, alerts), $(thousands "$key") messages" ;;
            forecast) what="forecast backtest, $(thousands "$key") messages" ;;
            inserts) what="inserts, $key per client count" ;;
            writes) what="inserts, $(data_of writes "$key")" ;;
            instructions) what="inserts in instructions, tables of $(thousands "$key") rows" ;;
            instructions-partial) what="inserts in instructions, some workloads, tables of $(thousands "${key%% *}") rows, ${key##* } messages per conversation" ;;
            *) what="?" ;;
        esac
        md_row "[$name]($name)" "$what" "$time" "$version" "$load" "$checks"
    done <"$catalog"
} >"$tmp_out"
chmod 644 -- "$tmp_out"
mv -f -- "$tmp_out" "$out"
