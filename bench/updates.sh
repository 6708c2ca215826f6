#!/usr/bin/env bash
# Benchmark: what tracking costs the app's UPDATEs. Every UPDATE of a
# tracked table evaluates billing_track_update's WHEN clause (is one of the
# six columns billing reads changed, compared as text?); one that changes
# one of them also runs the trigger, which writes two ledger rows (the old
# usage taken back, the new one counted). Two copies of the same table, one
# tracked and one not, take the same single-row UPDATEs by primary key
# (pgbench, prepared, 1 client), alternating tracked / untracked:
#   other: UPDATE ... SET title = ...   (a column billing does not read)
#   data:  UPDATE ... SET data = ...    (the usage: the trigger runs)
# and the report gives the medians of the rounds and their ratio. See
# bench/README.md ("Updates").
#
#   bench/updates.sh [--rows N] [--rounds R] [--duration S] [--no-setup]
#
#   --rows N       rows in each table (default 100000: 1,000 conversations)
#   --rounds R     rounds (default 3); each runs both workloads on both tables
#   --duration S   seconds per pgbench run (default 10)
#   --no-setup     skip tools/setup.sh (reuse the installed build)
#
# Makes its own throwaway cluster (tools/cluster.sh, PostgreSQL's default
# settings). A merge() and a VACUUM of both tables run between runs,
# untimed. The report goes to stdout and to bench/results/updates-<date>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

rows=100000 rounds=3 duration=10 setup=1
while (($#)); do
    case $1 in
        --rows) rows=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --no-setup) setup=0; shift ;;
        *) echo "usage: bench/updates.sh [--rows N] [--rounds R] [--duration S] [--no-setup]" >&2; exit 2 ;;
    esac
done
((setup)) && bash tools/setup.sh

# shellcheck source=tools/cluster.sh
. tools/cluster.sh
cluster_start >/dev/null
trap cluster_stop EXIT
work=$(mktemp -d)
samples=$work/samples.tsv

log "tables of $rows rows"
pg -c "CREATE EXTENSION billing" >/dev/null
for t in upd_tracked upd_untracked; do
    pg >/dev/null <<SQL
CREATE TABLE $t (id bigint PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                 created_at timestamptz, title text);
INSERT INTO $t
SELECT i, 'c' || (i / 100), CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, repeat('x', 200),
       CASE WHEN i % 2 = 0 THEN '{}'::jsonb
            ELSE jsonb_build_object('model', 'gpt-4o', 'prompt_tokens', 1000, 'completion_tokens', 100) END,
       timestamptz '2026-11-01 00:00+00' + i * interval '1 second', 'title ' || i
  FROM generate_series(1, $rows) AS i;
CREATE INDEX ON $t (conversation_id);
CREATE INDEX ON $t (created_at);
VACUUM ANALYZE $t;
SQL
done
pg -c "SELECT tracked FROM billing.track_messages('upd_tracked')" >/dev/null

for t in upd_tracked upd_untracked; do
    cat >"$work/other-$t.sql" <<SQL
\set id random(1, $rows)
UPDATE $t SET title = 'title ' || :id || ' again' WHERE id = :id;
SQL
    cat >"$work/data-$t.sql" <<SQL
\set id random(1, $rows)
\set n random(1, 1000)
UPDATE $t SET data = '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0}'::jsonb
                     || jsonb_build_object('completion_tokens', (:n)::int) WHERE id = :id;
SQL
done

load_before=$(load_average)
for ((round = 1; round <= rounds; round++)); do
    # (the order of the two tables alternates from round to round)
    order="upd_tracked upd_untracked"
    ((round % 2 == 0)) && order="upd_untracked upd_tracked"
    for workload in other data; do
        for t in $order; do
            pg -c "SELECT billing.merge()" -c "VACUUM $t" >/dev/null
            tps=$(pgbench -n -M prepared -c 1 -T "$duration" -f "$work/$workload-$t.sql" 2>/dev/null |
                  awk '/^tps = / { print $3; exit }')
            printf '%s\t%s\t%s\n' "$workload" "$t" "$tps" >>"$samples"
            log "round $round, $workload, $t: $tps tps"
        done
    done
done
load_after=$(load_average)

# Check: the tracked table's figures are its own, after all those UPDATEs.
exact=$(pg -At -c "SELECT billing.merge() IS NOT NULL" \
             -c "SELECT (SELECT sum(cost) FROM billing.monthly_history WHERE source = 'openai')
                        = (SELECT billing.openai_cost(data, created_at) FROM upd_tracked)" | tail -n 1)

stamp=$(date -u +%Y-%m-%dT%H%M)
report=bench/results/updates-$stamp.md
{
    echo "# UPDATEs of a tracked table ($stamp UTC)"
    echo
    echo "Command: \`bash bench/updates.sh --rows $rows --rounds $rounds --duration $duration\`"
    echo
    machine_line "${load_before%% *}" "${load_after%% *}" "the runs"
    echo "- server: $(server_version | cut -d ' ' -f 1-2), PostgreSQL's default settings; billing $(pg -At -c "SELECT extversion FROM pg_extension WHERE extname = 'billing'")"
    echo "- tables of $rows rows, single-row UPDATEs by primary key, pgbench -M prepared, 1 client, $duration s a run, $rounds rounds"
    echo "- figures: the tracked table's monthly_history equals openai_cost over it afterwards: $(yes_no "$exact")"
    echo
    echo "| UPDATE of | untracked tps (median, min–max) | tracked tps (median, min–max) | tracked ÷ untracked |"
    echo "| --- | ---: | ---: | ---: |"
    for workload in other data; do
        read -r u umin umax < <(sample_stats 0 3 "$samples" "$workload" upd_untracked)
        read -r k kmin kmax < <(sample_stats 0 3 "$samples" "$workload" upd_tracked)
        label=$([[ $workload == other ]] && echo "a column billing does not read (title)" || echo "data (the trigger runs)")
        echo "| $label | $u ($umin–$umax) | $k ($kmin–$kmax) | $(ratio "$k" "$u") |"
    done
} | tee "$report"
log "report saved to $report"
rm -rf "$work"
[[ $exact == t ]]
