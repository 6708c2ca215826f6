#!/usr/bin/env bash
# Benchmark: budgets and alerts (README "Budgets and alerts"), on the
# bench's generated messages (bench/generate.sql, tracked):
#
#   1. B budgets (all, openai, aws, 4 models, the rest on conversations of
#      this month), W writes left unmerged in this month;
#   2. timed, R runs each after a warm-up, in one session, interleaved:
#      SELECT 1 (the round trip), billing.allowance() for a conversation
#      that has a budget and for one that has none (target: median under
#      1 ms), budget_status (target: under 10 ms), dashboard() (target:
#      under 50 ms) and check_alerts() (the part merge() adds); then the
#      two allowance() calls R times more as the server times them
#      (EXPLAIN ANALYZE's execution time);
#   3. merge() of W writes with the B budgets (3 times);
#   4. the alert latency with the documented schedule, billing.merge()
#      every minute from pg_cron: K times, at a random second, a write
#      crosses a budget's threshold; the latency is the alert's fired_at
#      minus the write's created_at (both the server's clock), and a
#      listener must receive its NOTIFY.
#
#   bench/budgets.sh [--messages N] [--budgets B] [--writes W] [--runs R] [--latency-samples K] [--no-setup]
#   bench/budgets.sh --existing [...]    (the cluster of the caller's PG* variables, data already there)
#
# Defaults: 1,000,000 messages, 100 budgets, 2,000 writes, 200 runs, 4
# latency samples (about 4 minutes). Without --existing it runs
# tools/setup.sh (not with --no-setup), starts a throwaway cluster with the
# bench's settings, generates the messages and tracks them. The report is
# saved in bench/results/budgets-<time>-<messages>.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

messages=1000000
budgets=100
writes=2000
runs=200
samples=4
setup=1
existing=0
usage() { sed -n '19,21s/^# \{0,1\}//p' "$0"; }
while (($#)); do
    case $1 in
        --messages) messages=${2:-}; shift ;;
        --budgets) budgets=${2:-}; shift ;;
        --writes) writes=${2:-}; shift ;;
        --runs) runs=${2:-}; shift ;;
        --latency-samples) samples=${2:-}; shift ;;
        --no-setup) setup=0 ;;
        --existing) existing=1 setup=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "budgets.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for n in "$messages" "$budgets" "$writes" "$runs"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "budgets.sh: options take positive integers, got '$n'" >&2; exit 2; }
done
[[ $samples =~ ^[0-9]+$ ]] || { echo "budgets.sh: --latency-samples takes an integer, got '$samples'" >&2; exit 2; }
((budgets >= 8)) || { echo "budgets.sh: --budgets must be at least 8" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-budgets.XXXXXX")
listener=""
cleanup() {
    [[ -n $listener ]] && kill "$listener" 2>/dev/null
    pg -c "SELECT cron.unschedule('billing-merge')" >/dev/null 2>&1 || true
    ((existing)) || cluster_stop
    rm -rf -- "$tmp"
}
# shellcheck source=tools/cluster.sh
. tools/cluster.sh
trap cleanup EXIT

if ((setup)); then
    log "tools/setup.sh"
    bash tools/setup.sh >&2
fi
load_before=$(load_average)
if ((existing)); then
    : "${PGHOST:?--existing: set PGHOST (and PGPORT) to the cluster to use}"
    messages=$(pg -At -c 'SELECT count(*) FROM messages')
else
    start_cluster_with_tracked_messages "$messages"
fi

log "$budgets budgets, $writes unmerged writes"
pg -v budgets="$budgets" >/dev/null <<'SQL'
SET timezone = 'UTC';
DELETE FROM billing.budgets;
DELETE FROM billing.alerts;
SELECT billing.merge();
VACUUM billing.usage_ledger;
-- Amounts far above the month's spend: the timed calls fire nothing.
INSERT INTO billing.budgets (name, scope, model, conversation_id, amount) VALUES
  ('all', 'all', NULL, NULL, 1000000), ('openai', 'openai', NULL, NULL, 1000000), ('aws', 'aws', NULL, NULL, 1000000),
  ('gpt-4o-mini', 'model', 'gpt-4o-mini', NULL, 1000000), ('gpt-4o', 'model', 'gpt-4o', NULL, 1000000),
  ('gpt-4o-2024-08-06', 'model', 'gpt-4o-2024-08-06', NULL, 1000000),
  ('gpt-4o-2024-05-13', 'model', 'gpt-4o-2024-05-13', NULL, 1000000);
-- The rest on conversations: those of this month first, then others.
INSERT INTO billing.budgets (name, scope, conversation_id, amount)
SELECT 'conversation ' || c, 'conversation', c, 1000000
  FROM (SELECT conversation_id::text AS c FROM messages GROUP BY 1
         ORDER BY max(created_at) >= billing.month_start(billing.month_of(now())) DESC, 1
         LIMIT :budgets - 7) AS x;
SQL
budgeted=$(pg -At -c "SELECT conversation_id FROM billing.budgets WHERE scope = 'conversation' ORDER BY name LIMIT 1")
pg -v writes="$writes" >/dev/null <<SQL
-- Writes of this month: replies with usage in 200 conversations (the
-- budgeted one among them), models mixed.
INSERT INTO messages (conversation_id, role, content, data, created_at)
SELECT CASE WHEN i % 200 = 0 THEN '$budgeted'::uuid ELSE md5('w' || (i % 200))::uuid END,
       'assistant', 'a reply', jsonb_build_object('model', (ARRAY['gpt-4o-mini', 'gpt-4o', 'gpt-4o-2024-08-06'])[1 + i % 3],
                                                  'prompt_tokens', 500 + i % 1000, 'completion_tokens', 100),
       now() - (i % 600) * interval '1 millisecond'
  FROM generate_series(1, :writes) AS i;
SQL
ledger=$(pg -At -c 'SELECT count(*) FROM billing.usage_ledger')

# --- 2. timed calls -------------------------------------------------------------
calls=(
    "SELECT 1"
    "SELECT * FROM billing.allowance('gpt-4o-mini', '$budgeted')"
    "SELECT * FROM billing.allowance('gpt-4o', '00000000-0000-0000-0000-000000000000')"
    "SELECT count(*) FROM billing.budget_status"
    "SELECT billing.dashboard()"
    "SELECT billing.check_alerts()"
)
labels=(
    "SELECT 1 (the round trip)"
    "billing.allowance(): a budgeted conversation and model (4 budgets apply)"
    "billing.allowance(): a conversation without a budget (3 budgets apply)"
    "billing.budget_status ($budgets budgets)"
    "billing.dashboard() (with the budgets)"
    "billing.check_alerts() (what merge() adds)"
)
targets=("" "< 1 ms" "< 1 ms" "< 10 ms" "< 50 ms" "")
log "timing: $runs runs of ${#calls[@]} calls, interleaved"
samples_file=$tmp/samples.tsv
{
    for c in "${calls[@]}"; do echo "$c;"; done   # the warm-up
    echo '\timing on'
    for ((r = 0; r < runs; r++)); do for c in "${calls[@]}"; do echo "$c;"; done; done
} | psql_times | awk -v k="${#calls[@]}" '{ printf "%d\t%s\n", (NR - 1) % k, $1 }' >"$samples_file"
[[ $(wc -l <"$samples_file") == $((runs * ${#calls[@]})) ]] || { echo "budgets.sh: missing timings" >&2; exit 1; }
# The same two allowance() calls timed by the server (EXPLAIN ANALYZE's
# execution time: no parsing, planning or round trip).
server_file=$tmp/server.tsv
{
    for k in 1 2; do echo "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) ${calls[$k]};"; done
    for ((r = 0; r < runs; r++)); do
        for k in 1 2; do echo "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) ${calls[$k]};"; done
    done
} | pg -At | awk '/^Execution Time: / { n++; if (n > 2) printf "%d\t%s\n", (n - 1) % 2 + 1, $3 }' >"$server_file"
[[ $(pg -At -c 'SELECT count(*) FROM billing.usage_ledger') == "$ledger" ]] || { echo "budgets.sh: the ledger changed" >&2; exit 1; }

# --- 3. merge() of W writes with the budgets ---------------------------------------
log "merge() of $writes writes with $budgets budgets, 3 times"
merge_file=$tmp/merge.tsv
: >"$merge_file"
for i in 1 2 3; do
    ((i == 1)) || pg -v writes="$writes" >/dev/null <<'SQL'
INSERT INTO messages (conversation_id, role, content, data, created_at)
SELECT md5('w' || (i % 200))::uuid, 'assistant', 'a reply',
       jsonb_build_object('model', 'gpt-4o-mini', 'prompt_tokens', 500, 'completion_tokens', 100), now()
  FROM generate_series(1, :writes) AS i;
SQL
    { echo '\timing on'; echo 'SELECT billing.merge();'; } | psql_times | awk '{ print "merge\t" $1 }' >>"$merge_file"
done

# --- 4. alert latency with pg_cron ---------------------------------------------------
latency_file=$tmp/latency.tsv
: >"$latency_file"
cron=""
if ((samples > 0)); then
    if pg -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' >/dev/null 2>&1; then
        cron=yes
    else
        log "pg_cron is not available here: no latency samples"
    fi
fi
if [[ -n $cron ]]; then
    pg -c "SELECT cron.schedule('billing-merge', '* * * * *', 'SELECT billing.merge()')" >/dev/null
    { echo 'LISTEN billing_alert;'; while sleep 0.2; do echo 'SELECT 1;'; done; } |
        psql -X -q -At >"$tmp/notify.out" 2>&1 &
    listener=$!
    log "alert latency: $samples crossing writes at random seconds, billing.merge() every minute from pg_cron"
    for ((i = 1; i <= samples; i++)); do
        sleep $((RANDOM % 45 + 5))
        # (the conversation as the views show it: its uuid's text)
        pg >/dev/null <<SQL
INSERT INTO billing.budgets (name, scope, conversation_id, amount, thresholds)
VALUES ('latency $i', 'conversation', md5('latency $i')::uuid::text, 0.0001, '{100}');
SQL
        created=$(pg -At -c "INSERT INTO messages (conversation_id, role, content, data)
                             VALUES (md5('latency $i')::uuid, 'assistant', 'x',
                                     '{\"model\": \"gpt-4o\", \"prompt_tokens\": 1000, \"completion_tokens\": 0}')
                             RETURNING created_at")
        for ((w = 0; w < 300; w++)); do
            got=$(pg -At -c "SELECT extract(epoch FROM a.fired_at - timestamptz '$created')
                               FROM billing.alerts AS a WHERE a.budget = 'latency $i'")
            [[ -n $got ]] && break
            sleep 0.5
        done
        [[ -n $got ]] || { echo "budgets.sh: no alert within 150 s for sample $i" >&2; exit 1; }
        printf 'latency\t%s\n' "$got" >>"$latency_file"
        log "sample $i: $got s"
    done
    sleep 1
    notified=$(grep -c 'Asynchronous notification "billing_alert" with payload "{"id": [0-9]*, "scope": "conversation".*"budget": "latency' "$tmp/notify.out" || true)
fi

# --- the report ------------------------------------------------------------------------
report=$tmp/report.md
{
    echo "## Budgets: allowance(), budget_status, alerts; $(printf "%'d" "$messages") messages, $budgets budgets, $(printf "%'d" "$ledger") unmerged writes, $runs runs ($(utc_time))"
    echo
    machine_line "$load_before" "$(load_average)"
    echo "- $(server_version); billing $(billing_version)"
    echo "- settings: $(settings_line shared_buffers work_mem jit autovacuum)"
    echo "- command: \`bash bench/budgets.sh --messages $messages --budgets $budgets --writes $writes --runs $runs --latency-samples $samples\`"
    echo
    md_row call "median ms" "min–max ms" "median / SELECT 1" target
    md_row --- ---: ---: ---: ---
    read -r base _ _ < <(sample_stats 3 2 "$samples_file" 0)
    for ((k = 0; k < ${#calls[@]}; k++)); do
        read -r med lo hi < <(sample_stats 3 2 "$samples_file" "$k")
        met=""
        if [[ -n ${targets[$k]} ]]; then
            limit=${targets[$k]#< }
            limit=${limit% ms}
            met="${targets[$k]}: $(awk -v m="$med" -v l="$limit" 'BEGIN { print (m < l ? "met" : "**not met**") }')"
        fi
        md_row "${labels[$k]}" "$med" "$lo–$hi" "$(ratio "$med" "$base" x)" "$met"
    done
    for k in 1 2; do
        read -r med lo hi < <(sample_stats 3 2 "$server_file" "$k")
        md_row "${labels[$k]}, server's execution time" "$med" "$lo–$hi" "" \
               "< 1 ms: $(awk -v m="$med" 'BEGIN { print (m < 1 ? "met" : "**not met**") }')"
    done
    echo
    read -r med lo hi < <(sample_stats 1 2 "$merge_file" merge)
    echo "- \`billing.merge()\` of $(printf "%'d" "$writes") writes with $budgets budgets: median $med ms ($lo–$hi, 3 runs)"
    if [[ -n $cron ]]; then
        read -r med lo hi < <(sample_stats 1 2 "$latency_file" latency)
        echo "- alert latency, \`billing.merge()\` every minute from pg_cron: median $med s, $lo–$hi s over $samples crossing writes (fired_at minus the write's created_at; bound: 60 s plus one merge); NOTIFY received for $notified of $samples"
    else
        echo "- alert latency: not measured (pg_cron unavailable or --latency-samples 0)"
    fi
} >"$report"
save_report "$report" "bench/results/budgets-$(utc_stamp)-$messages.md"
