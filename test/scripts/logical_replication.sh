#!/usr/bin/env bash
# billing on a logical replication subscriber (the test cluster), fed by a
# publisher of its own (a throwaway cluster with wal_level = logical):
#  1. track_messages on a table a subscription writes gives a NOTICE, and
#     the initial copy is billed by the backfill;
#  2. with billing's three triggers ENABLE ALWAYS (README "Tracking"), the
#     apply worker's inserts, updates and deletes are billed, before and
#     after merge;
#  3. one trigger set back to the ordinary mode: a WARNING whose hint says
#     ENABLE ALWAYS, and billing reads the table itself, exactly;
#  4. a subscription that writes billing's own tables (a publication FOR ALL
#     TABLES of a billing database): merge() warns.
# Replies: 100 prompt + 50 completion tokens of gpt-4o = 100 x 2.5/1M +
# 50 x 10/1M = $0.00075; 200 + 100 tokens = $0.0015.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/cluster.sh
cluster_use_or_start
pub_dir=
sub_db=billing_logical_sub
all_db=billing_logical_all
cleanup() {
    psql -X -q -d "$sub_db" -c 'DROP SUBSCRIPTION IF EXISTS app_sub' >/dev/null 2>&1 || true
    psql -X -q -d "$all_db" -c 'DROP SUBSCRIPTION IF EXISTS all_sub' >/dev/null 2>&1 || true
    dropdb --if-exists "$sub_db" >/dev/null 2>&1 || true
    dropdb --if-exists "$all_db" >/dev/null 2>&1 || true
    if [[ -n $pub_dir ]]; then (BILLING_CLUSTER_DIR=$pub_dir; cluster_stop); fi
    if [[ ${CLUSTER_OWNED:-0} == 1 ]]; then cluster_stop; fi
}
trap cleanup EXIT

fail=0
sub() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$sub_db" "$@"; }
check() { # what, got, expected
    if [[ $2 == "$3" ]]; then echo "ok: $1"; else echo "FAIL: $1: got '$2', expected '$3'"; fail=1; fi
}

# The publisher: a cluster of its own, wal_level = logical.
read -r pub_dir pub_port < <(
    cluster_start "wal_level = logical" >/dev/null && echo "$BILLING_CLUSTER_DIR $PGPORT")
pub() { psql -X -q -v ON_ERROR_STOP=1 -At -h "$pub_dir" -p "$pub_port" "$@"; }
# Waits until the subscriber's table reads as the query says.
wait_for() { # query, expected
    for _ in $(seq 1 300); do
        [[ $(sub -c "$1") == "$2" ]] && return 0
        sleep 0.1
    done
    echo "FAIL: the subscriber did not get to '$2' for: $1 (got '$(sub -c "$1")')"; exit 1
}
pub -d postgres -c 'CREATE DATABASE app' >/dev/null
pub -d app >/dev/null <<'SQL'
CREATE TABLE public.messages (id bigint PRIMARY KEY, conversation_id text NOT NULL, role text NOT NULL,
                              content text, data jsonb, created_at timestamptz NOT NULL);
INSERT INTO public.messages VALUES
  (1, 'c1', 'assistant', 'a', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-03-10 10:00+00'),
  (2, 'c2', 'assistant', 'b', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-03-10 10:00+00');
CREATE PUBLICATION app_pub FOR TABLE public.messages;
SQL

# 1. The subscriber: the initial copy of 2 replies, then tracking.
dropdb --if-exists "$sub_db" 2>/dev/null
createdb "$sub_db"
sub >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION billing;
CREATE TABLE public.messages (id bigint PRIMARY KEY, conversation_id text NOT NULL, role text NOT NULL,
                              content text, data jsonb, created_at timestamptz NOT NULL);
CREATE SUBSCRIPTION app_sub CONNECTION 'host=$pub_dir port=$pub_port dbname=app user=postgres' PUBLICATION app_pub;
SQL
wait_for "SELECT count(*) FROM public.messages" 2
said=$(sub -c "SELECT billing.track_messages('public.messages')" 2>&1 >/dev/null || true)
if [[ $said == *"NOTICE:  billing: table public.messages is written by a logical replication subscription"* ]]; then
    echo "ok: track_messages says the table is written by a subscription"
else
    echo "FAIL: track_messages on a subscribed table said: $said"; fail=1
fi
march="SELECT round(coalesce(sum(cost), 0), 5) FROM billing.conversation_costs WHERE month = '2026-03-01'"
check "the initial copy: 2 x 0.00075" "$(sub -c "$march")" "0.00150"

# 2. All three ENABLE ALWAYS: reply 1 becomes 200 + 100 tokens (0.0015),
# reply 2 is deleted, reply 3 arrives: 0.0015 + 0.00075 = 0.00225.
sub -c "ALTER TABLE public.messages ENABLE ALWAYS TRIGGER billing_track, ENABLE ALWAYS TRIGGER billing_track_update,
                                    ENABLE ALWAYS TRIGGER billing_track_truncate" >/dev/null
pub -d app >/dev/null <<'SQL'
UPDATE public.messages SET data = '{"model": "gpt-4o", "prompt_tokens": 200, "completion_tokens": 100}' WHERE id = 1;
DELETE FROM public.messages WHERE id = 2;
INSERT INTO public.messages VALUES
  (3, 'c3', 'assistant', 'c', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-03-11 10:00+00');
SQL
wait_for "SELECT string_agg(id || ':' || (data ->> 'prompt_tokens'), ',' ORDER BY id) FROM public.messages" "1:200,3:100"
check "replicated writes, through the ledger (unmerged)" \
    "$(sub -c "SELECT (SELECT count(*) FROM billing.usage_ledger) > 0 AND NOT billing._trigger_disabled(1::smallint)")" t
check "replicated writes: 0.0015 + 0.00075, before merge" "$(sub -c "$march")" "0.00225"
sub -c 'SELECT billing.merge()' >/dev/null
check "replicated writes: 0.0015 + 0.00075, after merge" "$(sub -c "$march")" "0.00225"

# 3. billing_track_update back to the ordinary mode: the apply worker's
# UPDATEs would pass it. A WARNING whose hint says ENABLE ALWAYS; the table
# is read itself: reply 3 becomes 200 + 100 tokens, 0.0015 + 0.0015 = 0.003.
said=$(sub -c "ALTER TABLE public.messages ENABLE TRIGGER billing_track_update" 2>&1 >/dev/null || true)
if [[ $said == *"does not fire as billing's other triggers do"* && $said == *"ENABLE ALWAYS TRIGGER billing_track_update"* ]]; then
    echo "ok: mixed modes: a WARNING that hints ENABLE ALWAYS"
else
    echo "FAIL: mixed modes said: $said"; fail=1
fi
pub -d app -c "UPDATE public.messages SET data = '{\"model\": \"gpt-4o\", \"prompt_tokens\": 200, \"completion_tokens\": 100}' WHERE id = 3" >/dev/null
wait_for "SELECT data ->> 'prompt_tokens' FROM public.messages WHERE id = 3" 200
check "mixed modes: read from the table, 0.0015 + 0.0015" "$(sub -c "$march")" "0.00300"
sub -c "ALTER TABLE public.messages ENABLE ALWAYS TRIGGER billing_track_update" >/dev/null
sub -c 'SELECT billing.merge()' >/dev/null
check "all ALWAYS again, merged: 0.003" "$(sub -c "$march")" "0.00300"

# 4. A publication FOR ALL TABLES of a billing database: it publishes
# billing's tables too. A subscriber that takes them (copy_data off here, so
# that the seed prices do not conflict) gets a WARNING from every merge.
pub -d postgres -c 'CREATE DATABASE app_all' >/dev/null
pub -d app_all -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION billing' \
    -c 'CREATE PUBLICATION all_pub FOR ALL TABLES' >/dev/null
dropdb --if-exists "$all_db" 2>/dev/null
createdb "$all_db"
psql -X -q -v ON_ERROR_STOP=1 -d "$all_db" -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION billing' \
    -c "CREATE SUBSCRIPTION all_sub CONNECTION 'host=$pub_dir port=$pub_port dbname=app_all user=postgres'
        PUBLICATION all_pub WITH (copy_data = false)" >/dev/null
said=$(psql -X -q -v ON_ERROR_STOP=1 -d "$all_db" -c 'SELECT billing.merge()' 2>&1 >/dev/null || true)
if [[ $said == *"WARNING:  billing: a logical replication subscription writes billing's own tables (all_sub)"* ]]; then
    echo "ok: merge() warns of a subscription that writes billing's tables"
else
    echo "FAIL: merge() beside a subscription of billing's tables said: $said"; fail=1
fi
said=$(sub -c 'SELECT billing.merge()' 2>&1 >/dev/null || true)
check "no such warning where the subscription writes the app's table only" "$said" ""
exit $fail
