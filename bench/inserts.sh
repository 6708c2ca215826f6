#!/usr/bin/env bash
# Benchmark: what tracking costs the app's writes. Single-row inserts of
# seed-shaped messages with pgbench into two copies of public.messages, same
# columns and indexes, one tracked by billing.track_messages() and one not,
# at several client counts, alternating tracked / untracked. See
# bench/RESULTS-part2.md.
#
#   bench/inserts.sh [--rounds N] [--duration S] [--clients "1 4 8"]
#
#   --rounds N     rounds (default 3); each runs every client count on both tables
#   --duration S   seconds per pgbench run (default 30)
#   --clients L    client counts (default "1 4 8"); pgbench -c N -j min(N, 2)
#
# Takes an existing cluster (PGHOST, PGPORT, PGDATABASE...) with CREATE
# EXTENSION billing; it creates (and drops at the end) the tables
# bench_ins_tracked and bench_ins_untracked. The cluster's durability
# settings are used as they are and printed in the report.
#
# Before every run (untimed): billing.merge() (pg_cron would run it every
# minute), VACUUM of both tables and the ledger, and CHECKPOINT, so that each
# run starts from the same state.
#
# Progress goes to stderr; the report goes to stdout and to
# bench/results/inserts-<date>.md, and bench/results/latest.md is regenerated
# (bench/summary.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

rounds=3
duration=30
clients="1 4 8"

usage() { sed -n '8,14s/^# \{0,1\}//p' "$0"; }

while (($#)); do
    case $1 in
        --rounds) rounds=${2:-}; shift ;;
        --duration) duration=${2:-}; shift ;;
        --clients) clients=${2:-}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "inserts.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for n in "$rounds" "$duration" $clients; do
    if [[ ! $n =~ ^[1-9][0-9]*$ ]]; then
        echo "inserts.sh: --rounds, --duration and --clients take positive integers, got '$n'" >&2
        exit 2
    fi
done
: "${PGHOST:?set PGHOST (and PGPORT) to the cluster to use}"
: "${PGPORT:?set PGPORT}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-inserts.XXXXXX")
drop_tables() {
    pg >/dev/null 2>&1 <<'SQL' || true
SELECT billing.untrack_messages('bench_ins_tracked')
  FROM billing.tracked_tables WHERE relation = to_regclass('bench_ins_tracked');
DROP TABLE IF EXISTS bench_ins_tracked, bench_ins_untracked;
SQL
}
cleanup() {
    drop_tables
    rm -rf -- "$tmp"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# The two tables: the columns and indexes of public.messages
# (bench/generate.sql, the seed's table), each with its own sequence.
# ---------------------------------------------------------------------------

drop_tables
for t in bench_ins_tracked bench_ins_untracked; do
    pg >/dev/null <<SQL
CREATE TABLE $t (
    id              bigserial   PRIMARY KEY,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content         text        NOT NULL,
    data            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ${t}_created_at_idx ON $t (created_at);
CREATE INDEX ${t}_conversation_id_idx ON $t (conversation_id);
SQL
    # One seed-shaped message: an assistant reply with usage half the time, a
    # user message without usage otherwise; a random conversation among
    # 100,000; the model mix and sizes of bench/generate.sql.
    cat >"$tmp/$t.sql" <<SQL
\\set conv random(1, 100000)
\\set assistant random(0, 1)
\\set p random(200, 9700)
\\set c random(20, 1220)
\\set m random(0, 99)
\\set len random(20, 1500)
INSERT INTO $t (conversation_id, role, content, data)
VALUES (md5('conversation ' || :conv::text)::uuid,
        CASE WHEN :assistant::int = 1 THEN 'assistant' ELSE 'user' END,
        left(repeat('lorem ipsum dolor sit amet ', 60), :len::int),
        CASE WHEN :assistant::int = 1
             THEN jsonb_build_object('tokens', :p::bigint + :c::bigint, 'prompt_tokens', :p::bigint,
                                     'completion_tokens', :c::bigint,
                                     'model', CASE WHEN :m::int < 60 THEN 'gpt-4o-mini'
                                                   WHEN :m::int < 72 THEN 'gpt-4o-mini-2024-07-18'
                                                   WHEN :m::int < 87 THEN 'gpt-4o'
                                                   WHEN :m::int < 95 THEN 'gpt-4o-2024-08-06'
                                                   ELSE 'gpt-4o-2024-05-13' END)
             ELSE '{}'::jsonb END);
SQL
done
pg -c "SELECT billing.track_messages('bench_ins_tracked')" >/dev/null

# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

samples=$tmp/samples.tsv
: >"$samples"
wal_bytes() { pg -At -c 'SELECT wal_bytes FROM pg_stat_wal'; }
rows_of() { pg -At -c "SELECT count(*) FROM $1"; }

load_before=$(load_average)
for ((round = 1; round <= rounds; round++)); do
    for n in $clients; do
        # Alternate which table goes first from one round to the next.
        if ((round % 2)); then order="bench_ins_untracked bench_ins_tracked"; else order="bench_ins_tracked bench_ins_untracked"; fi
        for t in $order; do
            pg >/dev/null <<'SQL'
SELECT billing.merge();
VACUUM bench_ins_tracked, bench_ins_untracked, billing.usage_ledger, billing.month_usage, billing.conversation_usage;
CHECKPOINT;
SQL
            log "round $round/$rounds: $t, $n clients, $duration s"
            rows0=$(rows_of "$t")
            wal0=$(wal_bytes)
            pgbench -n -M prepared -f "$tmp/$t.sql" -c "$n" -j "$((n < 2 ? n : 2))" -T "$duration" >"$tmp/pgbench.out" 2>&1 || {
                cat "$tmp/pgbench.out" >&2
                exit 1
            }
            wal1=$(wal_bytes)
            rows1=$(rows_of "$t")
            tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$tmp/pgbench.out")
            lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$tmp/pgbench.out")
            failed_tx=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$tmp/pgbench.out")
            if [[ -z $tps || -z $lat ]]; then
                cat "$tmp/pgbench.out" >&2
                exit 1
            fi
            wal_per_row=$(awk -v a="$wal0" -v b="$wal1" -v r0="$rows0" -v r1="$rows1" 'BEGIN { printf "%.0f", (b - a) / (r1 - r0) }')
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$n" "$tps" "$lat" "$wal_per_row" "${failed_tx:-0}" >>"$samples"
        done
    done
done
load_after=$(load_average)

# The tracked table's figures must match what was inserted.
check=$(pg -At -F ' ' <<'SQL'
SELECT billing.merge();
SELECT (SELECT count(*) FROM bench_ins_tracked),
       (SELECT sum(messages) FROM billing.month_usage
         WHERE source_id = (SELECT id FROM billing.tracked_tables WHERE relation = 'bench_ins_tracked'::regclass)),
       (SELECT billing.openai_cost(data, created_at) FROM bench_ins_tracked),
       (SELECT sum(cost + estimated_cost) FROM billing.month_usage
         WHERE source_id = (SELECT id FROM billing.tracked_tables WHERE relation = 'bench_ins_tracked'::regclass));
SQL
)
read -r _ ins_rows tracked_messages direct_cost tracked_cost <<<"$(tr '\n' ' ' <<<"$check")"
check_ok=f
[[ $ins_rows == "$tracked_messages" && $(pg -At -c "SELECT $direct_cost::numeric = $tracked_cost::numeric") == t ]] && check_ok=t

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

# stats TABLE CLIENTS COLUMN: "median min max"
stats() { sample_stats 3 "$3" "$samples" "$1" "$2"; }

settings=$(settings_line fsync synchronous_commit full_page_writes wal_level wal_sync_method commit_delay \
                        shared_buffers max_wal_size checkpoint_timeout autovacuum)
pg_version=$(server_version)
billing_version=$(billing_version)

report=$tmp/report.md
{
    echo "## Single-row inserts, tracked vs untracked: $rounds rounds of ${duration} s per client count ($(utc_time))"
    echo
    machine_line "$load_before" "$load_after"
    echo "- $pg_version; billing $billing_version; $(pgbench --version)"
    echo "- durability and WAL settings: $settings"
    echo "- pgbench -n -M prepared -c N -j min(N, 2) -T $duration, one INSERT per transaction (autocommit); the pgbench client runs on the same 2 CPUs"
    echo "- after the runs: $ins_rows rows in bench_ins_tracked, $tracked_messages counted by billing after merge(); their cost from billing.month_usage = billing.openai_cost(data, created_at) over the table ($direct_cost): $(yes_no "$check_ok")"
    echo
    md_row clients "untracked tps (median, min–max)" "tracked tps (median, min–max)" "tracked / untracked" \
        "untracked latency ms" "tracked latency ms" "WAL bytes per insert, untracked / tracked" "target ≥ 75%"
    md_row ---: ---: ---: ---: ---: ---: ---: ---
    for n in $clients; do
        read -r ut ulo uhi < <(stats bench_ins_untracked "$n" 3)
        read -r tt tlo thi < <(stats bench_ins_tracked "$n" 3)
        read -r ul _ < <(stats bench_ins_untracked "$n" 4)
        read -r tl _ < <(stats bench_ins_tracked "$n" 4)
        read -r uw _ < <(stats bench_ins_untracked "$n" 5)
        read -r tw _ < <(stats bench_ins_tracked "$n" 5)
        met=$(awk -v a="$tt" -v b="$ut" 'BEGIN { print (a / b >= 0.75 ? "met" : "**not met**") }')
        md_row "$n" "$(printf '%.0f (%.0f–%.0f)' "$ut" "$ulo" "$uhi")" "$(printf '%.0f (%.0f–%.0f)' "$tt" "$tlo" "$thi")" \
            "$(ratio "$tt" "$ut" %)" "$(printf '%.3f' "$ul")" "$(printf '%.3f' "$tl")" "$(printf '%.0f / %.0f' "$uw" "$tw")" "$met"
    done
} >"$report"

save_report "$report" "bench/results/inserts-$(utc_stamp).md"
[[ $check_ok == t ]] || exit 1
