#!/usr/bin/env bash
# Benchmark: what tracking costs the app's writes. Two copies of
# public.messages (same columns and indexes), each first filled with the same
# rows of public.messages, one then tracked by billing.track_messages() (with
# its backfill) and one not; then the app's writes into each, alternating
# tracked / untracked: single-row INSERTs of replies with usage, of user
# messages and of estimated replies (whose prompt the trigger estimates from
# the conversation's earlier messages), at several client counts with
# pgbench; multi-row INSERTs; COPY. See bench/README.md ("Inserts").
#
#   bench/inserts.sh [--rounds N] [--duration S] [--clients "1 4 8"] [--preload N]
#                    [--workloads "reply user estimated multirow copy"] [--copies K]
#                    [--settings-kind NAME] [--budgets N] [--waits]
#
#   --rounds N         rounds (default 3); each runs every workload on both tables
#   --duration S       seconds per pgbench run (default 30)
#   --clients L        client counts of the single-row workloads (default "1 4 8");
#                      pgbench -c N -j min(N, 2)
#   --preload N        about N rows in each table before the runs: the N/100
#                      conversations of public.messages that bench/generate.sql
#                      numbered 1 to N/100 (all of them when it holds N rows);
#                      default 1000000, or all of public.messages if fewer
#   --workloads L      any of: reply (assistant reply with usage), user (user
#                      message, data '{}'), estimated (assistant reply with
#                      data '{}'), multirow (one INSERT of 100 rows per
#                      transaction, 1 client), copy (COPY of 10,000 rows per
#                      transaction, 1 client); default all five
#   --copies K         COPY statements per copy run (default 10)
#   --budgets N        N budgets defined during the runs (default 0; issue
#                      11 measures 20): a budget over everything, one for
#                      OpenAI, one for AWS, the others per model and per
#                      conversation; removed at the end
#   --waits            during each pgbench run, sample what the clients'
#                      backends wait on (pg_stat_activity, every 10 ms) and
#                      report the shares: CPU, WAL, locks, the client... Where
#                      rows/s scatter with the machine's load, this shows
#                      whether tracking adds waits of its own at 4 and 8 clients
#   --settings-kind N  the cluster's settings, for the report and its name:
#                      "bench" (bench/cluster-settings.sh), "default"
#                      (PostgreSQL's), ...; default "bench" when the server runs
#                      with bench/cluster-settings.sh's values, else "custom"
#
# Takes an existing cluster (PGHOST, PGPORT, PGDATABASE...) with CREATE
# EXTENSION billing and the data of bench/generate.sql; it creates (and drops
# at the end) the tables bench_ins_tracked and bench_ins_untracked. The
# cluster's settings are used as they are and printed in the report.
#
# Before every run (untimed): the rows of the previous run deleted (so every
# run starts from the preloaded rows; the tracked table's trigger takes the
# deletes in), billing.merge() (pg_cron would run it every minute), VACUUM of
# both tables and of billing's tables, and CHECKPOINT.
#
# Progress goes to stderr; the report goes to stdout and to
# bench/results/inserts-<date>-<settings kind>.md, and
# bench/results/latest.md is regenerated (bench/summary.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

rounds=3
duration=30
clients="1 4 8"
preload=1000000
workloads="reply user estimated multirow copy"
copies=10
settings_kind=""
budgets=0
waits=0

# Rows per transaction of the multirow and copy workloads; the targets
# (issue 15): tracked throughput at least this fraction of untracked.
multirow_rows=100
copy_rows=10000
single_target=0.9
batch_target=0.8

usage() { sed -n '11,41s/^# \{0,1\}//p' "$0"; }

while (($#)); do
    case $1 in
        --rounds) rounds=${2:-}; shift ;;
        --duration) duration=${2:-}; shift ;;
        --clients) clients=${2:-}; shift ;;
        --preload) preload=${2:-}; shift ;;
        --workloads) workloads=${2:-}; shift ;;
        --copies) copies=${2:-}; shift ;;
        --settings-kind) settings_kind=${2:-}; shift ;;
        --budgets) budgets=${2:-}; shift ;;
        --waits) waits=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "inserts.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for n in "$rounds" "$duration" "$copies" $clients; do
    if [[ ! $n =~ ^[1-9][0-9]*$ ]]; then
        echo "inserts.sh: --rounds, --duration, --copies and --clients take positive integers, got '$n'" >&2
        exit 2
    fi
done
if [[ ! $budgets =~ ^[0-9]+$ ]]; then
    echo "inserts.sh: --budgets takes a non-negative integer, got '$budgets'" >&2
    exit 2
fi
if [[ ! $preload =~ ^[1-9][0-9]*$ ]] || ((preload < 100)); then
    echo "inserts.sh: --preload takes an integer of at least 100 (one conversation), got '$preload'" >&2
    exit 2
fi
for w in $workloads; do
    case $w in
        reply | user | estimated | multirow | copy) ;;
        *) echo "inserts.sh: unknown workload '$w' (reply, user, estimated, multirow, copy)" >&2; exit 2 ;;
    esac
done
if [[ -n $settings_kind && ! $settings_kind =~ ^[a-z][a-z0-9]*$ ]]; then
    echo "inserts.sh: --settings-kind takes a lower-case word, got '$settings_kind'" >&2
    exit 2
fi
[[ -n $clients && -n $workloads ]] || { echo "inserts.sh: --clients and --workloads must not be empty" >&2; exit 2; }
: "${PGHOST:?set PGHOST (and PGPORT) to the cluster to use}"
: "${PGPORT:?set PGPORT}"

# The kind of the cluster's settings, when not given: "bench" when every
# setting of bench/cluster-settings.sh is in effect, else "custom".
if [[ -z $settings_kind ]]; then
    # shellcheck source=bench/cluster-settings.sh
    . bench/cluster-settings.sh
    settings_kind=bench
    for line in "${bench_cluster_settings[@]}"; do
        name=${line%% = *}
        value=${line#* = }
        value=${value//\'/}
        if [[ $(pg -At -c "SELECT current_setting('$name')") != "$value" ]]; then
            settings_kind=custom
            break
        fi
    done
fi
case $settings_kind in
    bench) settings_said="bench/cluster-settings.sh" ;;
    default) settings_said="PostgreSQL's defaults (initdb's postgresql.conf; nothing added for the bench)" ;;
    *) settings_said="as the cluster was started (neither bench/cluster-settings.sh nor the defaults)" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-inserts.XXXXXX")
# The COPY file is read by psql (\copy), as the caller.
chmod 0755 "$tmp"
drop_tables() {
    pg >/dev/null 2>&1 <<'SQL' || true
DELETE FROM billing.alerts WHERE budget LIKE 'bench_ins_%';
DELETE FROM billing.budgets WHERE name LIKE 'bench_ins_%';
SELECT billing.untrack_messages('bench_ins_tracked')
  FROM billing.tracked_tables WHERE relation = to_regclass('bench_ins_tracked');
DROP TABLE IF EXISTS bench_ins_tracked, bench_ins_untracked, bench_ins_waits;
SQL
}
cleanup() {
    drop_tables
    rm -rf -- "$tmp"
}
trap cleanup EXIT

is_single() { [[ $1 == reply || $1 == user || $1 == estimated ]]; }

# ---------------------------------------------------------------------------
# The two tables: the columns and indexes of public.messages
# (bench/generate.sql, the seed's table), each with its own sequence, each
# filled with the same preloaded rows: whole conversations of
# public.messages, those generate.sql numbered 1 to N/100, with their ids.
# ---------------------------------------------------------------------------

available=$(pg -At -c 'SELECT count(*) FROM public.messages')
if ((available < 100)); then
    echo "inserts.sh: public.messages holds $available rows; run bench/generate.sql first" >&2
    exit 1
fi
if ((preload > available)); then
    log "public.messages holds $available rows: preloading all of them (not $preload)"
    preload=$available
fi
conversations=$((preload / 100))

drop_tables
((waits == 0)) || pg -c "CREATE UNLOGGED TABLE bench_ins_waits (run text NOT NULL, state text NOT NULL)" >/dev/null
log "preloading both tables: the $conversations conversations numbered 1 to $conversations of public.messages"
start=$SECONDS
for t in bench_ins_untracked bench_ins_tracked; do
    messages_copy_sql "$t" "m.conversation_id IN (SELECT $(conversation_of k) FROM generate_series(1, $conversations) AS k)" | pg >/dev/null
done
# New rows get ids above every preloaded one: a run's rows are those above.
base_id=$(pg -At -c 'SELECT max(id) FROM public.messages')
read -r preloaded conv_avg conv_min conv_max table_size < <(pg -At -F ' ' <<'SQL'
SELECT sum(n), round(avg(n)), min(n), max(n), pg_size_pretty(pg_total_relation_size('bench_ins_untracked'))
  FROM (SELECT count(*) AS n FROM bench_ins_untracked GROUP BY conversation_id) AS c;
SQL
)
log "preloaded $preloaded rows into each table in $((SECONDS - start)) s"
log "tracking bench_ins_tracked (backfill)"
backfill_seconds=$(pg -At -c "SELECT seconds FROM billing.track_messages('bench_ins_tracked')")
pg -c 'VACUUM ANALYZE bench_ins_tracked' >/dev/null

# The budgets of --budgets (merge() still checks every one in prepare,
# untimed).
((budgets == 0)) || bench_budgets_sql bench_ins_ "$budgets" | pg >/dev/null

# What an estimated reply's trigger reads, alone: the query of its full body
# (billing._trigger_function_body in src/sql/tracking.sql) for a new reply in
# 100 random preloaded conversations, under EXPLAIN ANALYZE: "median ms,
# median rows, median heap pages".
history_read=""
if [[ " $workloads " == *" estimated "* ]]; then
    history_read=$(pg -At -F ' ' <<SQL
CREATE TEMP TABLE reads (ms float8, rows_read float8, pages float8);
DO \$\$
DECLARE
    plan jsonb;
BEGIN
    FOR k IN 1..100 LOOP
        EXECUTE format('EXPLAIN (ANALYZE, TIMING OFF, BUFFERS, FORMAT JSON)
                        SELECT coalesce(sum(billing._estimated_tokens(m.content)), 0)::bigint
                          FROM bench_ins_tracked AS m
                         WHERE m.conversation_id = %L AND (m.created_at, m.id) < (now(), %s)',
                       $(conversation_of "(1 + floor(random() * $conversations))::int"), $base_id + 1) INTO plan;
        INSERT INTO reads VALUES ((plan->0->>'Execution Time')::float8,
                                  (plan->0->'Plan'->'Plans'->0->>'Actual Rows')::float8,
                                  (plan->0->'Plan'->>'Shared Hit Blocks')::float8
                                  + (plan->0->'Plan'->>'Shared Read Blocks')::float8);
    END LOOP;
END
\$\$;
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY rows_read),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY pages)
  FROM reads;
SQL
)
fi

# ---------------------------------------------------------------------------
# The workloads: one pgbench script per single-row workload and table; the
# rows of multirow and copy drawn once from the preloaded replies with usage
# and user messages (seed-shaped, in random preloaded conversations).
# ---------------------------------------------------------------------------

models="CASE WHEN :m::int < 60 THEN 'gpt-4o-mini'
             WHEN :m::int < 72 THEN 'gpt-4o-mini-2024-07-18'
             WHEN :m::int < 87 THEN 'gpt-4o'
             WHEN :m::int < 95 THEN 'gpt-4o-2024-08-06'
             ELSE 'gpt-4o-2024-05-13' END"
# Contents: 100-1,500 characters for a reply, 20-400 for a user's message
# (generate.sql's sizes).
for t in bench_ins_tracked bench_ins_untracked; do
    cat >"$tmp/reply-$t.sql" <<SQL
\\set k random(1, $conversations)
\\set p random(200, 9700)
\\set c random(20, 1220)
\\set m random(0, 99)
\\set len random(100, 1500)
INSERT INTO $t (conversation_id, role, content, data)
VALUES ($(conversation_of :k), 'assistant', left(repeat('lorem ipsum dolor sit amet ', 60), :len),
        jsonb_build_object('tokens', :p::bigint + :c::bigint, 'prompt_tokens', :p::bigint,
                           'completion_tokens', :c::bigint, 'model', $models));
SQL
    cat >"$tmp/user-$t.sql" <<SQL
\\set k random(1, $conversations)
\\set len random(20, 400)
INSERT INTO $t (conversation_id, role, content, data)
VALUES ($(conversation_of :k), 'user', left(repeat('lorem ipsum dolor sit amet ', 60), :len), '{}');
SQL
    cat >"$tmp/estimated-$t.sql" <<SQL
\\set k random(1, $conversations)
\\set len random(100, 1500)
INSERT INTO $t (conversation_id, role, content, data)
VALUES ($(conversation_of :k), 'assistant', left(repeat('lorem ipsum dolor sit amet ', 60), :len), '{}');
SQL
done
# Rows for multirow (10 statements of 100 rows; pgbench picks one at random
# per transaction) and copy (one file of 10,000 rows), drawn once.
pg -At -c "SELECT format('(%L, %L, %L, %L)', conversation_id, role, content, data)
             FROM bench_ins_untracked
            WHERE role = 'user' OR data ? 'prompt_tokens'
            ORDER BY random() LIMIT $((10 * multirow_rows))" >"$tmp/multirow.rows"
pg -c "\\copy (SELECT conversation_id, role, content, data FROM bench_ins_untracked
                WHERE role = 'user' OR data ? 'prompt_tokens'
                ORDER BY random() LIMIT $copy_rows) TO '$tmp/copy.data'" >/dev/null
if grep -q ':[A-Za-z_]' "$tmp/multirow.rows"; then
    echo "inserts.sh: a drawn row contains ':name', which pgbench would take for a variable" >&2
    exit 1
fi
multirow_mix=$(grep -c "^('[^']*', 'user'" "$tmp/multirow.rows" || true)
copy_mix=$(awk -F '\t' '$2 == "user"' "$tmp/copy.data" | wc -l)
for t in bench_ins_tracked bench_ins_untracked; do
    for ((i = 0; i < 10; i++)); do
        {
            echo "INSERT INTO $t (conversation_id, role, content, data) VALUES"
            sed -n "$((i * multirow_rows + 1)),$(((i + 1) * multirow_rows))p" "$tmp/multirow.rows" | sed '$!s/$/,/;$s/$/;/'
        } >"$tmp/multirow-$t-$i.sql"
    done
done

# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

# Samples, one line per run:
#   workload  table  clients  rows/s  ms per transaction  WAL bytes per row  failed transactions
#   server CPU µs per row
# The server's CPU time per row (bench/lib.sh, server_cpu_ticks): every
# process of the cluster, from just before a run to just after it, over the
# run's rows; NaN when the server is not on this machine.
pm=$(postmaster_pid)
clock_ticks=$(getconf CLK_TCK)
idle_children=0
[[ -z $pm ]] || idle_children=$(server_children "$pm")
samples=$tmp/samples.tsv
: >"$samples"
wal_lsn() { pg -At -c "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')"; }
rows_of() { pg -At -c "SELECT count(*) FROM $1 WHERE id > $base_id"; }

# prepare: the untimed reset before every run.
prepare() {
    pg >/dev/null <<SQL
DELETE FROM bench_ins_tracked WHERE id > $base_id;
DELETE FROM bench_ins_untracked WHERE id > $base_id;
SELECT billing.merge();
VACUUM bench_ins_tracked, bench_ins_untracked, billing.usage_ledger, billing.month_usage,
       billing.conversation_usage, billing.estimated_prompts;
CHECKPOINT;
SQL
}

# sample_waits WORKLOAD TABLE CLIENTS: while a pgbench run lasts, every
# 10 ms, what each of pgbench's backends waits on (no wait event: on a CPU,
# or waiting for one), into the unlogged table bench_ins_waits. One DO block
# in one session; pg_stat_clear_snapshot() makes each look a fresh one.
sample_waits() {
    pg -v w="$1" -v t="$2" -v n="$3" -v secs="$duration" >/dev/null <<'SQL'
SELECT set_config('bench.run', :'w' || ' ' || :'t' || ' ' || :'n', false),
       set_config('bench.secs', :'secs', false);
DO $$
DECLARE
    stop timestamptz := clock_timestamp() + make_interval(secs => current_setting('bench.secs')::int);
BEGIN
    -- Wait for pgbench's backends to exist (a second at most).
    FOR i IN 1..100 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'pgbench');
        PERFORM pg_sleep(0.01);
    END LOOP;
    WHILE clock_timestamp() < stop LOOP
        PERFORM pg_stat_clear_snapshot();
        INSERT INTO bench_ins_waits
        SELECT current_setting('bench.run'),
               CASE WHEN a.wait_event IS NULL THEN 'CPU'
                    WHEN a.wait_event_type = 'Client' THEN 'client'
                    WHEN a.wait_event LIKE 'WAL%' THEN 'WAL'
                    WHEN a.wait_event_type = 'Lock' THEN 'lock'
                    ELSE a.wait_event_type || ':' || a.wait_event END
          FROM pg_stat_activity AS a
         WHERE a.application_name = 'pgbench' AND a.backend_type = 'client backend';
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
SQL
}

# run WORKLOAD TABLE CLIENTS: one timed run; appends its sample line.
run() {
    local w=$1 t=$2 n=$3 wal0 wal1 rows tps lat failed=0 rate i cpu0=0 cpu1=0 cpu_us=NaN
    prepare
    log "round $round/$rounds: $w, $t, $n client$( ((n == 1)) || echo s)"
    wal0=$(wal_lsn)
    if [[ -n $pm ]]; then
        server_settle "$pm" "$idle_children"
        cpu0=$(server_cpu_ticks "$pm")
    fi
    if [[ $w == copy ]]; then
        # shellcheck disable=SC2119 # psql_times takes no arguments here
        {
            printf '%s\n' '\timing on'
            for ((i = 0; i < copies; i++)); do
                echo "\\copy $t (conversation_id, role, content, data) FROM '$tmp/copy.data'"
            done
        } | psql_times >"$tmp/copy.times"
        [[ $(wc -l <"$tmp/copy.times") == "$copies" ]] || { echo "inserts.sh: COPY timing failed" >&2; exit 1; }
        lat=$(awk '{ s += $1 } END { printf "%.3f", s / NR }' "$tmp/copy.times")
        tps=$(awk -v l="$lat" 'BEGIN { printf "%.3f", 1000 / l }')
    else
        local -a scripts=()
        if [[ $w == multirow ]]; then
            for ((i = 0; i < 10; i++)); do scripts+=(-f "$tmp/multirow-$t-$i.sql@1"); done
        else
            scripts=(-f "$tmp/$w-$t.sql")
        fi
        local sampler=""
        if ((waits)); then
            sample_waits "$w" "$t" "$n" &
            sampler=$!
        fi
        pgbench -n -M prepared "${scripts[@]}" -c "$n" -j "$((n < 2 ? n : 2))" -T "$duration" >"$tmp/pgbench.out" 2>&1 || {
            cat "$tmp/pgbench.out" >&2
            exit 1
        }
        [[ -z $sampler ]] || wait "$sampler"
        tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$tmp/pgbench.out")
        lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$tmp/pgbench.out")
        failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$tmp/pgbench.out")
        if [[ -z $tps || -z $lat ]]; then
            cat "$tmp/pgbench.out" >&2
            exit 1
        fi
    fi
    if [[ -n $pm ]]; then
        server_settle "$pm" "$idle_children"
        cpu1=$(server_cpu_ticks "$pm")
    fi
    wal1=$(wal_lsn)
    rows=$(rows_of "$t")
    [[ -z $pm ]] || cpu_us=$(awk -v a="$cpu0" -v b="$cpu1" -v r="$rows" -v hz="$clock_ticks" 'BEGIN { printf "%.2f", (b - a) * 1e6 / hz / r }')
    case $w in
        multirow) rate=$(awk -v t="$tps" -v r="$multirow_rows" 'BEGIN { printf "%.1f", t * r }') ;;
        copy) rate=$(awk -v t="$tps" -v r="$copy_rows" 'BEGIN { printf "%.1f", t * r }') ;;
        *) rate=$tps ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$t" "$n" "$rate" "$lat" \
        "$(awk -v a="$wal0" -v b="$wal1" -v r="$rows" 'BEGIN { printf "%.0f", (b - a) / r }')" "${failed:-0}" "$cpu_us" >>"$samples"
}

load_before=$(load_average)
started=$SECONDS
for ((round = 1; round <= rounds; round++)); do
    for w in $workloads; do
        if is_single "$w"; then counts=$clients; else counts=1; fi
        for n in $counts; do
            # Alternate which table goes first from one round to the next.
            if ((round % 2)); then order="bench_ins_untracked bench_ins_tracked"; else order="bench_ins_tracked bench_ins_untracked"; fi
            for t in $order; do
                run "$w" "$t" "$n"
            done
        done
    done
done
load_after=$(load_average)
minutes=$(( (SECONDS - started + 30) / 60 ))

# The tracked table's figures must match what is in it (the preloaded rows
# and the last run's): as many messages; the cost of the usage the rows
# carry = billing.openai_cost(data, created_at) over the table, exactly;
# and one frozen prompt estimate per reply without usage.
check=$(pg -At -F ' ' <<'SQL'
SET client_min_messages = error;   -- openai_cost's warning about gpt-9
SELECT billing.merge();
WITH src AS (SELECT id FROM billing.tracked_tables WHERE relation = 'bench_ins_tracked'::regclass)
SELECT (SELECT count(*) FROM bench_ins_tracked),
       (SELECT sum(messages) FROM billing.month_usage WHERE source_id = (TABLE src)),
       (SELECT billing.openai_cost(data, created_at) FROM bench_ins_tracked),
       (SELECT sum(cost) FROM billing.month_usage WHERE source_id = (TABLE src)),
       (SELECT count(*) FROM bench_ins_tracked
         WHERE role = 'assistant'
           AND NOT data ?| ARRAY['prompt_tokens', 'completion_tokens', 'input_tokens', 'output_tokens',
                                 'tokens', 'total_tokens', 'usage']),
       (SELECT count(*) FROM billing.estimated_prompts WHERE source_id = (TABLE src));
SQL
)
read -r _ ins_rows tracked_messages direct_cost tracked_cost no_usage estimates <<<"$(tr '\n' ' ' <<<"$check")"
check_ok=f
[[ $ins_rows == "$tracked_messages" && $no_usage == "$estimates" &&
    $(pg -At -c "SELECT $direct_cost::numeric = $tracked_cost::numeric") == t ]] && check_ok=t
failed_total=$(awk -F '\t' '{ s += $7 } END { print s + 0 }' "$samples")

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

# stats WORKLOAD TABLE CLIENTS COLUMN: "median min max"
stats() { sample_stats 3 "$4" "$samples" "$1" "$2" "$3"; }
# extra_us TRACKED UNTRACKED: the time a tracked row takes beyond an
# untracked one, from two rates in rows/s, in µs.
extra_us() { awk -v t="$1" -v u="$2" 'BEGIN { printf "%.0f", 1e6 / t - 1e6 / u }'; }

settings=$(settings_line fsync synchronous_commit full_page_writes wal_level wal_sync_method commit_delay \
                        shared_buffers work_mem max_wal_size checkpoint_timeout autovacuum)
pg_version=$(server_version)
billing_version=$(billing_version)

declare -A title=(
    [reply]="reply: assistant replies with usage, one INSERT per transaction"
    [user]="user: user messages (data '{}'), one INSERT per transaction"
    [estimated]="estimated: assistant replies without usage (data '{}'), one INSERT per transaction"
    [multirow]="multirow: one INSERT of $multirow_rows rows per transaction ($multirow_mix of the $((10 * multirow_rows)) drawn rows are user messages, the others replies with usage)"
    [copy]="copy: COPY of $copy_rows rows per transaction ($copy_mix user messages, the others replies with usage)"
)

report=$tmp/report.md
{
    echo "## Inserts, tracked vs untracked, into tables of $preloaded rows, $settings_kind settings: $rounds rounds of ${duration} s ($(utc_time))"
    echo
    machine_line "$load_before" "$load_after" "the runs ($minutes min)"
    echo "- $pg_version; billing $billing_version; $(pgbench --version)"
    echo "- cluster settings: $settings_kind, $settings_said"
    echo "- budgets defined during the runs: $budgets$( ((budgets == 0)) || echo " (bench_ins_1 to bench_ins_$budgets: over everything, OpenAI, AWS, then per model and per conversation)")"
    echo "- durability, WAL and memory settings: $settings"
    echo "- tables: bench_ins_tracked and bench_ins_untracked, the columns and indexes of public.messages, each preloaded with the same $preloaded rows of public.messages ($conversations conversations of $conv_avg messages on average, $conv_min to $conv_max; $table_size with indexes); bench_ins_tracked then tracked by billing.track_messages() (its backfill: $backfill_seconds s)"
    echo "- before every run, untimed: the previous run's rows deleted, billing.merge(), VACUUM of both tables and billing's, CHECKPOINT; tracked and untracked alternate, which goes first flips each round"
    echo "- single-row workloads: pgbench -n -M prepared -c N -j min(N, 2) -T $duration, one INSERT per transaction (autocommit) into a random preloaded conversation; multirow: the same at 1 client; copy: one psql session per run, $copies \\copy FROM a file of $copy_rows rows, each its own transaction, timed by psql's \\timing; the clients run on the same CPUs as the server"
    echo "- server CPU µs per row: the CPU time of every process of the cluster (backends, WAL writer, checkpointer, autovacuum; from /proc: the postmaster's own, its exited children's and its live children's) from just before a run to just after it, over the run's rows, median of the rounds; it leaves out pgbench and psql, which share the CPUs. \"server CPU, untracked / tracked\" is the throughput ratio a server-bound run would show, and is not moved by other work on the machine as rows/s are"
    echo "- rows/s: transactions per second times rows per transaction; extra µs per row: 1/tracked − 1/untracked rows/s (at 1 client, what the trigger adds to each row); WAL bytes per row: the WAL the run wrote (pg_current_wal_insert_lsn(), whole cluster) over its rows"
    echo "- after the runs: $ins_rows rows in bench_ins_tracked, $tracked_messages counted by billing after merge(); the cost of their usage from billing.month_usage = billing.openai_cost(data, created_at) over the table ($direct_cost); $estimates frozen prompt estimates for the $no_usage replies without usage: $(yes_no "$check_ok")"
    if ((failed_total > 0)); then
        echo "- **$failed_total failed transactions** in pgbench runs"
    fi
    for w in $workloads; do
        if is_single "$w"; then target=$single_target counts=$clients; else target=$batch_target counts=1; fi
        echo
        echo "### ${title[$w]}"
        echo
        md_row clients "untracked rows/s (median, min–max)" "tracked rows/s (median, min–max)" "tracked / untracked" \
            "ms per transaction, untracked / tracked" "extra µs per row" "WAL bytes per row, untracked / tracked" \
            "server CPU µs per row, untracked / tracked" "server CPU, untracked / tracked" "target ≥ ${target}×: rows/s, CPU"
        md_row ---: ---: ---: ---: ---: ---: ---: ---: ---: ---
        for n in $counts; do
            read -r ur ulo uhi < <(stats "$w" bench_ins_untracked "$n" 4)
            read -r tr tlo thi < <(stats "$w" bench_ins_tracked "$n" 4)
            read -r ul _ < <(stats "$w" bench_ins_untracked "$n" 5)
            read -r tl _ < <(stats "$w" bench_ins_tracked "$n" 5)
            read -r uw _ < <(stats "$w" bench_ins_untracked "$n" 6)
            read -r tw _ < <(stats "$w" bench_ins_tracked "$n" 6)
            read -r uc _ < <(stats "$w" bench_ins_untracked "$n" 8)
            read -r tc _ < <(stats "$w" bench_ins_tracked "$n" 8)
            # Three decimals: a ratio just under its target must not print as the target.
            met=$(awk -v a="$tr" -v b="$ur" -v g="$target" 'BEGIN { print (a / b >= g ? "met" : "**not met**") }')
            if [[ -n $pm ]]; then
                cpu_ratio=$(awk -v a="$uc" -v b="$tc" 'BEGIN { printf "%.3f×", a / b }')
                met="$met, $(awk -v a="$uc" -v b="$tc" -v g="$target" 'BEGIN { print (a / b >= g ? "met" : "**not met**") }')"
            else
                cpu_ratio=n/a
            fi
            md_row "$n" "$(printf '%.0f (%.0f–%.0f)' "$ur" "$ulo" "$uhi")" "$(printf '%.0f (%.0f–%.0f)' "$tr" "$tlo" "$thi")" \
                "$(awk -v a="$tr" -v b="$ur" 'BEGIN { printf "%.3f×", a / b }')" "$(printf '%.3f / %.3f' "$ul" "$tl")" "$(extra_us "$tr" "$ur")" \
                "$(printf '%.0f / %.0f' "$uw" "$tw")" "$(printf '%s / %s' "$uc" "$tc")" "$cpu_ratio" "$met"
        done
    done
    if ((waits)); then
        echo
        echo "### Where pgbench's backends were (--waits)"
        echo
        echo "Every 10 ms of each pgbench run (single-row and multirow workloads), the wait event of each of pgbench's backends (pg_stat_activity), all rounds together: CPU is no wait event (running, or ready to run on these 2 CPUs), client is waiting for pgbench (ClientRead), WAL is any WAL wait (the commit's flush: WALWrite, WALSync, WALInsert...), lock is a heavyweight lock; the rest is named. What tracking adds of its own shows as a larger share of CPU or of waits that are not the WAL's."
        echo
        md_row workload clients table samples "CPU %" "client %" "WAL %" "lock %" "other (samples)"
        md_row --- ---: --- ---: ---: ---: ---: ---: ---
        pg -At -F '|' <<'SQL' | while IFS='|' read -r w n t total cpu client wal lock other; do md_row "$w" "$n" "$t" "$total" "$cpu" "$client" "$wal" "$lock" "$other"; done
WITH r AS (
    SELECT split_part(run, ' ', 1) AS w, split_part(run, ' ', 3)::int AS n, split_part(run, ' ', 2) AS t, state
      FROM bench_ins_waits
)
SELECT w, n, t, count(*),
       round(100.0 * count(*) FILTER (WHERE state = 'CPU') / count(*), 1),
       round(100.0 * count(*) FILTER (WHERE state = 'client') / count(*), 1),
       round(100.0 * count(*) FILTER (WHERE state = 'WAL') / count(*), 1),
       round(100.0 * count(*) FILTER (WHERE state = 'lock') / count(*), 1),
       coalesce((SELECT string_agg(o.state || ' ' || o.c, ', ' ORDER BY o.c DESC, o.state)
                   FROM (SELECT x.state, count(*) AS c FROM r AS x
                          WHERE x.w = r.w AND x.n = r.n AND x.t = r.t
                            AND x.state NOT IN ('CPU', 'client', 'WAL', 'lock')
                          GROUP BY x.state) AS o), '')
  FROM r
 GROUP BY w, n, t
 ORDER BY w, n, t DESC;
SQL
    fi
    if [[ " $workloads " == *" estimated "* ]]; then
        n1=${clients%% *}
        read -r er _ < <(stats estimated bench_ins_tracked "$n1" 4)
        read -r eu _ < <(stats estimated bench_ins_untracked "$n1" 4)
        echo
        echo -n "Estimated replies: the trigger reads the conversation's earlier messages (the preloaded ones, $conv_avg on average, and those the run itself added), sums their estimated tokens and stores the sum in billing.estimated_prompts. At $n1 client$( ((n1 == 1)) || echo s) that adds $(extra_us "$er" "$eu") µs to each row"
        if [[ " $workloads " == *" reply "* ]]; then
            read -r rr _ < <(stats reply bench_ins_tracked "$n1" 4)
            read -r ru _ < <(stats reply bench_ins_untracked "$n1" 4)
            echo -n ", where a reply with usage adds $(extra_us "$rr" "$ru") µs"
        fi
        echo "."
        if [[ -n $history_read ]]; then
            read -r hr_ms hr_rows hr_pages <<<"$history_read"
            echo "That read alone (its query under EXPLAIN (ANALYZE, TIMING OFF), for a new reply in 100 random preloaded conversations, before the runs): median $hr_ms ms, reading $hr_rows rows from $hr_pages buffer pages."
        fi
    fi
} >"$report"

save_report "$report" "bench/results/inserts-$(utc_stamp)-$settings_kind.md"
[[ $check_ok == t ]] || exit 1
