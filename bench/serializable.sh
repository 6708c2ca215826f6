#!/usr/bin/env bash
# Benchmark: what tracking costs a SERIALIZABLE app in failed transactions.
# A reply stored without usage reads its conversation's earlier messages in
# the app's transaction, to freeze its prompt estimate; an ordinary read
# there takes predicate locks, and two transactions writing two
# conversations can then fail each other (SQLSTATE 40001) through billing's
# read alone. Each layout gets a tracked and an untracked copy of the same
# table, in a database whose default isolation is SERIALIZABLE; each
# transaction stores a user message and a reply without usage in one of
# --conversations conversations (pgbench -M prepared, 3 clients,
# --failures-detailed), alternating tracked / untracked from round to round.
# The report gives the medians of committed and failed transactions and the
# failure rate. See bench/README.md ("Serializable apps").
#
#   bench/serializable.sh [--conversations N] [--rounds R] [--duration S] [--no-setup]
#
#   --conversations N  conversations the writes spread over (default 100)
#   --rounds R         rounds (default 3); each runs every table once
#   --duration S       seconds per pgbench run (default 8)
#   --no-setup         skip tools/setup.sh (reuse the installed build)
#
# Layouts: plain (an index on the conversation column), and partitioned (7
# monthly partitions, row-level security enabled with a policy, as a
# Supabase-style app has). Makes its own throwaway cluster (PostgreSQL's
# default settings). The report goes to stdout and to
# bench/results/serializable-<date>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

conversations=100 rounds=3 duration=8 setup=1
while (($#)); do
    case $1 in
        --conversations) conversations=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --no-setup) setup=0; shift ;;
        *) echo "usage: bench/serializable.sh [--conversations N] [--rounds R] [--duration S] [--no-setup]" >&2; exit 2 ;;
    esac
done
((setup)) && bash tools/setup.sh

# shellcheck source=tools/cluster.sh
. tools/cluster.sh
cluster_start >/dev/null
trap cluster_stop EXIT
work=$(mktemp -d)
samples=$work/samples.tsv

log "tables of $conversations conversations, 10 messages each"
pg -c "CREATE EXTENSION billing" \
   -c "ALTER DATABASE $PGDATABASE SET default_transaction_isolation = 'serializable'" >/dev/null
tables="plain_tracked plain_untracked parted_tracked parted_untracked"
for t in $tables; do
    if [[ $t == parted_* ]]; then
        pg >/dev/null <<SQL
CREATE TABLE $t (id bigserial, conversation_id int, role text, content text, data jsonb,
                 created_at timestamptz NOT NULL DEFAULT now()) PARTITION BY RANGE (created_at);
DO \$\$
DECLARE
    m timestamptz;
BEGIN
    FOR m IN SELECT generate_series(date_trunc('month', now()) - interval '5 months',
                                    date_trunc('month', now()) + interval '1 month', interval '1 month') LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       '${t}_' || to_char(m, 'YYYY_MM'), '$t', m, m + interval '1 month');
    END LOOP;
END
\$\$;
ALTER TABLE $t ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON $t USING (conversation_id IS NOT NULL);
SQL
    else
        pg -c "CREATE TABLE $t (id bigserial PRIMARY KEY, conversation_id int, role text, content text, data jsonb,
                                created_at timestamptz NOT NULL DEFAULT now())" >/dev/null
    fi
    pg >/dev/null <<SQL
CREATE INDEX ON $t (conversation_id);
INSERT INTO $t (conversation_id, role, content, data, created_at)
SELECT c, 'user', repeat('x', 40), '{}', now() - k * interval '3 days'
  FROM generate_series(1, $conversations) AS c, generate_series(1, 10) AS k;
VACUUM ANALYZE $t;
SQL
    [[ $t == *_untracked ]] || pg -c "SELECT tracked FROM billing.track_messages('$t')" >/dev/null
    cat >"$work/$t.sql" <<SQL
\set c random(1, $conversations)
BEGIN;
INSERT INTO $t (conversation_id, role, content, data) VALUES (:c, 'user', 'a question of some length', '{}');
INSERT INTO $t (conversation_id, role, content, data) VALUES (:c, 'assistant', 'an answer of some length', '{}');
COMMIT;
SQL
done

load_before=$(load_average)
for ((round = 1; round <= rounds; round++)); do
    order=$tables
    ((round % 2 == 0)) && order="plain_untracked plain_tracked parted_untracked parted_tracked"
    for t in $order; do
        out=$(pgbench -n -M prepared -c 3 -T "$duration" --failures-detailed -f "$work/$t.sql" 2>/dev/null)
        committed=$(awk '/^number of transactions actually processed:/ { print $NF; exit }' <<<"$out")
        failed=$(awk '/^number of failed transactions:/ { print $5; exit }' <<<"$out")
        printf '%s\t%s\t%s\n' "$t" "$committed" "${failed:-0}" >>"$samples"
        log "round $round, $t: $committed committed, ${failed:-0} failed"
    done
done
load_after=$(load_average)

# Check: every reply of the tracked tables has its frozen estimate.
estimated=$(pg -At -c "SELECT (SELECT count(*) FROM plain_tracked WHERE role = 'assistant')
                              + (SELECT count(*) FROM parted_tracked WHERE role = 'assistant')
                              = (SELECT count(*) FROM billing.estimated_prompts)")

median() { # median TABLE FIELD (2: committed, 3: failed)
    awk -F '\t' -v t="$1" -v f="$2" '$1 == t { print $f }' "$samples" | sort -n |
        awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
stamp=$(utc_stamp)
report=$work/report.md
{
    echo "## SERIALIZABLE apps: failed transactions, tracked vs untracked ($(utc_time))"
    echo
    echo "Command: \`bash bench/serializable.sh --conversations $conversations --rounds $rounds --duration $duration\`"
    echo
    machine_line "$load_before" "$load_after" "the runs"
    echo "- $(server_version | cut -d ' ' -f 1-2), PostgreSQL's default settings, default_transaction_isolation = serializable; billing $(billing_version)"
    echo "- each transaction: a user message and a reply without usage in one of $conversations conversations (10 messages each before the runs); pgbench -M prepared, 3 clients, $duration s a run, $rounds rounds"
    echo "- every reply of the tracked tables has its frozen prompt estimate: $(yes_no "$estimated")"
    echo
    md_row table "committed (median)" "failed, SQLSTATE 40001 (median)" "failed ÷ all"
    md_row --- ---: ---: ---:
    for t in $tables; do
        c=$(median "$t" 2)
        f=$(median "$t" 3)
        md_row "$t" "$c" "$f" "$(awk -v c="$c" -v f="$f" 'BEGIN { if (c + f > 0) printf "%.1f%%", 100 * f / (c + f); else print "-" }')"
    done
} >"$report"
save_report "$report" "bench/results/serializable-$stamp.md"
rm -rf "$work"
[[ $estimated == t ]]
