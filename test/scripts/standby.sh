#!/usr/bin/env bash
# billing on a hot standby (pg_basebackup -R of the test cluster): every
# read gives the primary's figures, unmerged writes included, since the
# reads add the ledger themselves; billing's periodic work (merge,
# check_alerts, issue_statements), which writes billing's tables, stops at
# once with billing's own error naming the primary (SQLSTATE 25006); a
# merge on the primary reaches the standby with the same figures.
# Every reply: 100 prompt + 50 completion tokens of gpt-4o = 100 x 2.5/1M +
# 50 x 10/1M = $0.00075.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/cluster.sh
cluster_use_or_start
standby_dir=
cleanup() {
    if [[ -n $standby_dir ]]; then
        (BILLING_CLUSTER_DIR=$standby_dir; cluster_pg_ctl -m fast stop >/dev/null 2>&1) || true
        rm -rf -- "$standby_dir"
    fi
    if [[ ${CLUSTER_OWNED:-0} == 1 ]]; then cluster_stop; fi
}
trap cleanup EXIT

db=billing_standby
fail=0
primary() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }
standby() { psql -X -q -v ON_ERROR_STOP=1 -At -h "$standby_dir" -p "$standby_port" -d "$db" "$@"; }
check() { # what, got, expected
    if [[ $2 == "$3" ]]; then echo "ok: $1"; else echo "FAIL: $1: got '$2', expected '$3'"; fail=1; fi
}
# Waits until the standby has replayed everything the primary wrote so far.
caught_up() {
    local lsn
    lsn=$(primary -c 'SELECT pg_current_wal_lsn()')
    for _ in $(seq 1 300); do
        [[ $(standby -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn") == t ]] && return 0
        sleep 0.1
    done
    echo "FAIL: the standby did not replay up to $lsn in 30 s"; exit 1
}

dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
primary >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION billing;
CREATE TABLE public.messages (id bigserial PRIMARY KEY, conversation_id text NOT NULL, role text NOT NULL,
                              content text, data jsonb, created_at timestamptz NOT NULL);
INSERT INTO public.messages (conversation_id, role, content, data, created_at) VALUES
  ('c1', 'assistant', 'a', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-03-10 10:00+00');
SELECT billing.track_messages('public.messages');
SELECT billing.merge();
-- One write after the merge: in the ledger, unmerged.
INSERT INTO public.messages (conversation_id, role, content, data, created_at) VALUES
  ('c2', 'assistant', 'b', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-03-11 10:00+00');
SQL

# The standby: a base backup of the test cluster, on the next free port.
standby_dir=$(mktemp -d /tmp/billing-standby.XXXXXX)
chmod 0755 "$standby_dir"
if [[ $(id -u) -eq 0 ]]; then chown "$(_cluster_owner):" "$standby_dir"; fi
(cd "$standby_dir" && as_owner "$PG_BINDIR/pg_basebackup" -h "$PGHOST" -p "$PGPORT" -U postgres \
    -D "$standby_dir/data" -R -X stream -c fast)
for ((standby_port = PGPORT + 1; standby_port < PGPORT + 100; standby_port++)); do
    _cluster_port_busy "$standby_port" || break
done
echo "port = $standby_port" | as_owner tee "$standby_dir/data/port.conf" >/dev/null
echo "unix_socket_directories = '$standby_dir'" | as_owner tee -a "$standby_dir/data/postgresql.conf" >/dev/null
(BILLING_CLUSTER_DIR=$standby_dir; cluster_pg_ctl -w -t 60 -l "$standby_dir/postgresql.log" start >/dev/null)
caught_up
check "the standby is in recovery" "$(standby -c 'SELECT pg_is_in_recovery()')" t

# Reads: the merged reply and the unmerged one, $0.0015 in March.
march="SELECT sum(cost) || ' ' || count(*) FROM billing.conversation_costs WHERE month = '2026-03-01'"
check "March on the standby, unmerged write included" "$(standby -c "$march")" "0.00150 2"
dash="SELECT billing.dashboard(1, 5, '2026-03-15')::text"
check "dashboard() on the standby is the primary's" "$(standby -c "$dash")" "$(primary -c "$dash")"
check "merge_status on the standby: 1 unmerged write" "$(standby -c 'SELECT unmerged_writes FROM billing.merge_status')" 1

# The periodic work: billing's error, not PostgreSQL's first read-only one.
for call in 'billing.merge()' 'billing.check_alerts()' "billing.issue_statements('2026-02-01')"; do
    name=${call%%(*}
    out=$(standby -c '\set VERBOSITY verbose' -c "SELECT $call" 2>&1 || true)
    if [[ $out == *"ERROR:  25006: billing: $name() writes billing's tables, so it cannot run on a standby"* ]]; then
        echo "ok: $call on the standby: $(grep -o 'billing: .*' <<<"$out" | head -1)"
    else
        echo "FAIL: $call on the standby: $out"; fail=1
    fi
done

# A merge on the primary reaches the standby: nothing unmerged, the same
# figures, and when it ran.
primary -c 'SELECT billing.merge()' >/dev/null
caught_up
check "after the primary's merge: March on the standby" "$(standby -c "$march")" "0.00150 2"
check "after the primary's merge: merge_status on the standby" \
    "$(standby -c "SELECT unmerged_writes || ' ' || (last_merge_at IS NOT NULL) FROM billing.merge_status")" "0 true"
check "after the primary's merge: dashboard() is the primary's" "$(standby -c "$dash")" "$(primary -c "$dash")"

dropdb "$db"
exit $fail
