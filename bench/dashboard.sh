#!/usr/bin/env bash
# Benchmark: the whole /api/billing payload (current month's cards, top-50
# conversations, 6-month history) from billing.dashboard(), against the ways
# users would get it without billing: plain SQL over public.messages
# (bench/dashboard-plain.sql) and the seed's route in Node.js
# (bench/node/route.js). dashboard() is also timed as a reading role that
# owns nothing (row-level security applies, as for an app's own role). See
# bench/RESULTS-part2.md.
#
#   bench/dashboard.sh [--runs R] [--inserts N] [--node-heap MB] [--no-node] [--no-plain] [--no-months]
#
#   --runs R        timed rounds (default 5), after one untimed warm-up round
#   --inserts N     messages inserted (and left unmerged) for the "unmerged
#                   writes" measurement (default 10000, the
#                   figure of issue 15's target)
#   --node-heap MB  run Node with --max-old-space-size=MB (default: Node's own
#                   limit; if the route then runs out of heap, the report says
#                   so and the timed runs use 16384)
#   --no-node       leave the Node contender out
#   --no-plain      leave plain SQL out of the timed rounds (the equal-work
#                   checks still run it)
#   --no-months     skip the "3 vs 12 months of data" measurement
#
# Takes an existing cluster (PGHOST, PGPORT, PGDATABASE...) whose database
# has the bench/generate.sql data and CREATE EXTENSION billing. It tracks
# public.messages (timing the backfill) and public.profiles if they are not
# tracked yet, merges, and leaves them tracked. The months measurement
# creates the database bench_months (dropped at the end).
#
# Progress goes to stderr; the report goes to stdout and to
# bench/results/dashboard-<date>-<messages>.md, and bench/results/latest.md
# is regenerated (bench/summary.sh). Exit status 1 when an equal-work check
# fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

runs=5
inserts=10000
node_heap=""
do_node=1
do_plain=1
do_months=1

usage() { sed -n '8,19s/^# \{0,1\}//p' "$0"; }

while (($#)); do
    case $1 in
        --runs) runs=${2:-}; shift ;;
        --inserts) inserts=${2:-}; shift ;;
        --node-heap) node_heap=${2:-}; shift ;;
        --no-node) do_node=0 ;;
        --no-plain) do_plain=0 ;;
        --no-months) do_months=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "dashboard.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for n in "$runs" "$inserts" ${node_heap:+"$node_heap"}; do
    if [[ ! $n =~ ^[1-9][0-9]*$ ]]; then
        echo "dashboard.sh: --runs, --inserts and --node-heap take a positive integer, got '$n'" >&2
        exit 2
    fi
done
: "${PGHOST:?set PGHOST (and PGPORT) to the cluster to use}"
: "${PGPORT:?set PGPORT}"
db=${PGDATABASE:-$(id -un)}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-dashboard.XXXXXX")
cleanup() {
    if ((do_months)); then
        psql -X -q -d "$db" -c 'DROP DATABASE IF EXISTS bench_months' >/dev/null 2>&1 || true
    fi
    rm -rf -- "$tmp"
}
trap cleanup EXIT

if [[ $(pg -At -c "SELECT count(*) FROM pg_extension WHERE extname = 'billing'") != 1 ]]; then
    echo "dashboard.sh: CREATE EXTENSION billing first (database $db)" >&2
    exit 1
fi
if [[ -z $(pg -At -c "SELECT to_regclass('public.messages')") ]]; then
    echo "dashboard.sh: no public.messages: psql -v messages=N -f bench/generate.sql" >&2
    exit 1
fi

failed=0

# ---------------------------------------------------------------------------
# Set-up: track the tables (backfill), merge
# ---------------------------------------------------------------------------

backfill_note="public.messages was already tracked"
if [[ $(pg -At -c "SELECT count(*) FROM billing.tracked_tables WHERE relation = 'public.messages'::regclass") == 0 ]]; then
    log "SELECT billing.track_messages('public.messages') (the backfill)"
    t0=$(date +%s.%N)
    pg -c "SELECT billing.track_messages('public.messages')" >/dev/null
    t1=$(date +%s.%N)
    backfill_note=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "SELECT billing.track_messages('"'"'public.messages'"'"') took %.1f s", b - a }')
fi
# The counter's value is recorded as this month's e-mails (SES) when tracking
# starts. (Re)track unless that happened: a trigger left over from a dropped
# and re-created extension has recorded nothing in the new one.
if [[ $(pg -At -c "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.profiles'::regclass AND tgname = 'billing_track_profiles'") == 0 ||
      $(pg -At -c "SELECT count(*) FROM billing.aws_usage WHERE origin = 'track_profiles'") == 0 ]]; then
    pg -c "SELECT billing.untrack_profiles('public.profiles')" -c "SELECT billing.track_profiles('public.profiles')" >/dev/null
fi
log "SELECT billing.merge()"
pg -c 'SELECT billing.merge()' >/dev/null
pg -c 'VACUUM ANALYZE billing.usage_ledger, billing.month_usage, billing.conversation_usage, billing.aws_usage, billing.estimated_prompts'

# ---------------------------------------------------------------------------
# The contenders
# ---------------------------------------------------------------------------

echo 'SELECT billing.dashboard();' >"$tmp/dashboard.sql"

# The app's dashboard usually runs as a role that owns none of billing's
# tables, so row-level security applies: README "Permissions" grants for a
# dashboard-only role.
reader=bench_dashboard_reader
pg >/dev/null <<SQL
DO \$\$ BEGIN CREATE ROLE $reader; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$;
GRANT USAGE ON SCHEMA billing TO $reader;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO $reader;
GRANT SELECT ON public.messages TO $reader;
SQL
as_reader="SET ROLE $reader"
plain_file=bench/dashboard-plain.sql
# The plain query as an expression (without its final semicolon).
plain_expr=$(grep -v '^--' "$plain_file" | sed 's/;[[:space:]]*$//')

# sql_time WARMUP FILE [DB]: one new psql session that runs WARMUP (if not
# empty, untimed), then FILE under \timing; prints the client-side time of
# FILE's statement in ms (sent, executed, result received).
sql_time() {
    {
        [[ -z $1 ]] || echo "$1;"
        echo '\timing on'
        cat "$2"
    } | psql_times -d "${3:-$db}" | awk '{ t = $1 } END { if (t == "") exit 1; print t }'
}

node_opts=()
[[ -z $node_heap ]] || node_opts=("--max-old-space-size=$node_heap")
# node_run [ARGS]: one run of the seed's route; prints its JSON line.
# shellcheck disable=SC2120  # (ARGS: route.js options, for running it by hand)
node_run() {
    node "${node_opts[@]}" bench/node/route.js "$@"
}
json_field() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"; }

# The messages the "unmerged writes" measurement inserts: N seed-shaped
# messages, now, in 200 conversations of the current month (10 each on
# average), alternating user / assistant; replies carry usage, except one in
# 200 that is estimated from its text.
insert_sql() {
    cat <<SQL
WITH conv AS (
    SELECT conversation_id, row_number() OVER (ORDER BY conversation_id) - 1 AS k
      FROM (SELECT DISTINCT conversation_id FROM messages
             WHERE created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
             ORDER BY 1 LIMIT 200) AS c
)
INSERT INTO messages (conversation_id, role, content, data, created_at)
SELECT c.conversation_id,
       CASE WHEN i % 2 = 1 THEN 'assistant' ELSE 'user' END,
       repeat('lorem ', 5 + (i * 37) % 200),
       CASE WHEN i % 2 = 0 THEN '{}'::jsonb
            WHEN i % 400 = 1 THEN jsonb_build_object('model', 'gpt-4o-mini')
            ELSE jsonb_build_object('tokens', u.p + u.c, 'prompt_tokens', u.p, 'completion_tokens', u.c,
                                    'model', (ARRAY['gpt-4o-mini', 'gpt-4o', 'gpt-4o-mini-2024-07-18',
                                                    'gpt-4o-2024-08-06'])[1 + i % 4])
                 || CASE WHEN i % 10 = 3 THEN jsonb_build_object('prompt_tokens_details',
                                                  jsonb_build_object('cached_tokens', 128 * (u.p / 256)))
                         ELSE '{}'::jsonb END
       END,
       now()
  FROM generate_series(1, $inserts) AS i
  JOIN conv AS c ON c.k = i % (SELECT count(*) FROM conv)
 CROSS JOIN LATERAL (SELECT 200 + (i * 7919) % 1500 AS p, 20 + (i * 104729) % 1200 AS c) AS u;
SQL
}
max_id=$(pg -At -c 'SELECT max(id) FROM messages')
cleanup_inserts() {
    pg <<SQL >/dev/null
DELETE FROM messages WHERE id > $max_id;
SELECT billing.merge();
VACUUM messages;
VACUUM billing.usage_ledger, billing.month_usage, billing.conversation_usage, billing.estimated_prompts;
SQL
}

# ---------------------------------------------------------------------------
# Equal work: dashboard() = plain SQL exactly (merged, and with unmerged
# writes); the Node figure and where its difference comes from
# ---------------------------------------------------------------------------

# compare: one statement (one snapshot, one now()) computing both payloads.
compare_sql() {
    cat <<SQL
WITH d AS MATERIALIZED (SELECT billing.dashboard() AS j),
     p AS MATERIALIZED (SELECT ($plain_expr) AS j),
     conv AS (
         SELECT (SELECT array_agg(format('%s %s %s %s', e->>'conversation_id', trim_scale((e->>'cost')::numeric),
                                         e->>'tokens', e->>'messages') ORDER BY o)
                   FROM jsonb_array_elements(d.j->'conversations') WITH ORDINALITY AS x(e, o)) AS d,
                (SELECT array_agg(format('%s %s %s %s', e->>'conversation_id', trim_scale((e->>'cost')::numeric),
                                         e->>'tokens', e->>'messages') ORDER BY o)
                   FROM jsonb_array_elements(p.j->'conversations') WITH ORDINALITY AS x(e, o)) AS p
           FROM d, p),
     hist AS (
         SELECT (SELECT array_agg(format('%s %s %s', e->>'month', trim_scale((e->>'openai')::numeric),
                                         trim_scale((e->>'aws')::numeric)) ORDER BY o)
                   FROM jsonb_array_elements(d.j->'history') WITH ORDINALITY AS x(e, o)) AS d,
                (SELECT array_agg(format('%s %s %s', e->>'month', trim_scale((e->>'openai')::numeric),
                                         trim_scale((e->>'aws')::numeric)) ORDER BY o)
                   FROM jsonb_array_elements(p.j->'history') WITH ORDINALITY AS x(e, o)) AS p
           FROM d, p)
SELECT (d.j->'openai'->>'cost')::numeric AS dashboard_cost,
       (p.j->'openai'->>'cost')::numeric AS plain_cost,
       (d.j->'openai'->>'cost')::numeric = (p.j->'openai'->>'cost')::numeric AS cost_equal,
       (d.j->'openai'->>'tokens')::numeric = (p.j->'openai'->>'tokens')::numeric
           AND (d.j->'openai'->>'messages')::numeric = (p.j->'openai'->>'messages')::numeric AS cards_equal,
       (d.j->'aws'->>'cost')::numeric = (p.j->'aws'->>'cost')::numeric AS aws_equal,
       (d.j->>'total_cost')::numeric = (p.j->>'total_cost')::numeric AS total_equal,
       conv.d = conv.p AND cardinality(conv.d) > 0 AS conversations_equal,
       hist.d = hist.p AND cardinality(hist.d) = 6 AS history_equal,
       (SELECT sum((e->>'openai')::numeric) FROM jsonb_array_elements(d.j->'history') AS e) AS dashboard_6_months,
       (d.j->'openai'->>'messages') AS messages,
       (d.j->'aws'->>'cost')::numeric AS aws_cost
  FROM d, p, conv, hist;
SQL
}
# compare LABEL: runs the comparison, appends a line to $tmp/checks.
compare() {
    local out
    out=$(compare_sql | pg -At -F ' ')
    read -r c_dash c_plain c_cost c_cards c_aws c_total c_conv c_hist c_six _ c_aws_cost <<<"$out"
    for ok in "$c_cost" "$c_cards" "$c_aws" "$c_total" "$c_conv" "$c_hist"; do
        [[ $ok == t ]] || failed=1
    done
    md_row "$1" "$c_dash" "$c_plain" "$(yes_no "$c_cost")" \
        "$(yes_no "$c_cards")" "$(yes_no "$c_conv")" "$(yes_no "$c_hist")" >>"$tmp/checks"
}
: >"$tmp/checks"
log "equal-work check (merged)"
compare "merged"
merged_cost=$c_dash merged_six=$c_six aws_cost=$c_aws_cost
log "equal-work check ($inserts unmerged writes)"
pg -c "$(insert_sql)" >/dev/null
ledger_rows=$(pg -At -c 'SELECT count(*) FROM billing.usage_ledger')
ledger_conversations=$(pg -At -c 'SELECT count(DISTINCT conversation_id) FROM billing.usage_ledger')
compare "with $ledger_rows unmerged ledger rows"
cleanup_inserts
compare "after deleting them and merging"
# The reading role gets the same payload (one session, one snapshot each,
# no write in between).
reader_same=$(pg -At <<SQL
SELECT billing.dashboard() AS owner_payload \\gset
$as_reader;
SELECT billing.dashboard()::text = :'owner_payload';
SQL
)
[[ $reader_same == t ]] || failed=1

# What the seed's rules give, exactly (numeric): the seed's two prices, every
# other name priced as gpt-4o-mini, no cached-input price, no effective
# dates. Node's figure minus this is its floating-point error; this minus
# dashboard() is what the seed's pricing rules change.
seed_rules_sql=$(cat <<'SQL'
SELECT sum(CASE WHEN u.model = 'gpt-4o' THEN 2.50 ELSE 0.15 END * u.prompt
           + CASE WHEN u.model = 'gpt-4o' THEN 10.00 ELSE 0.60 END * u.completion) * 0.000001,
       sum(CASE WHEN u.model NOT IN ('gpt-4o', 'gpt-4o-mini') OR u.model IS NULL THEN u.prompt + u.completion END),
       sum(u.cached)
  FROM (SELECT m.data->>'model' AS model,
               CASE WHEN e.estimated
                    THEN (SELECT coalesce(sum(ceil(char_length(p.content) / 4.0)), 0)::bigint
                            FROM messages AS p
                           WHERE p.conversation_id = m.conversation_id
                             AND (p.created_at, p.id) < (m.created_at, m.id))
                    ELSE coalesce((m.data->>'prompt_tokens')::bigint, 0) END AS prompt,
               CASE WHEN e.estimated THEN ceil(char_length(m.content) / 4.0)::bigint
                    ELSE coalesce((m.data->>'completion_tokens')::bigint, 0) END AS completion,
               coalesce((m.data->'prompt_tokens_details'->>'cached_tokens')::bigint, 0) AS cached
          FROM messages AS m
         CROSS JOIN LATERAL (
               SELECT m.role = 'assistant'
                      AND NOT coalesce(m.data ?| array['prompt_tokens', 'completion_tokens', 'tokens'], false)
                      AS estimated) AS e
         WHERE m.created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS u
SQL
)
read -r seed_exact other_name_tokens cached_tokens <<<"$(pg -At -F ' ' -c "$seed_rules_sql")"

node_note=""
if ((do_node)); then
    log "equal-work check (Node)"
    if ! node_run >"$tmp/node-check.json" 2>"$tmp/node-check.err"; then
        if grep -q 'heap out of memory' "$tmp/node-check.err" && [[ -z $node_heap ]]; then
            node_note="With Node's default heap limit the route failed: \`$(grep -m 1 'heap out of memory' "$tmp/node-check.err" | sed 's/^ *//')\`; the runs below use \`--max-old-space-size=16384\`."
            node_heap=16384
            node_opts=("--max-old-space-size=$node_heap")
            node_run >"$tmp/node-check.json"
        else
            cat "$tmp/node-check.err" >&2
            exit 1
        fi
    fi
    node_cost=$(json_field openai_cost <"$tmp/node-check.json")
    node_rows=$(json_field rows <"$tmp/node-check.json")
    node_six=$(node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        console.log(r.history.reduce((s, h) => s + h[1], 0))' "$tmp/node-check.json")
    node_aws=$(json_field aws_cost <"$tmp/node-check.json")
fi

# ---------------------------------------------------------------------------
# Timed rounds. Each round, in this order: dashboard() on a warm connection,
# dashboard() as the first call of a new connection, plain SQL, Node; then N
# messages are inserted and dashboard() is timed with them unmerged; then
# they are deleted and merged away (untimed), so every round sees the same
# data.
# ---------------------------------------------------------------------------

samples=$tmp/samples.tsv
: >"$samples"
load_before=$(load_average)
for ((round = 0; round <= runs; round++)); do
    if ((round == 0)); then log "warm-up round"; else log "round $round/$runs"; fi
    declare -A t=()
    t[dash]=$(sql_time 'SELECT billing.dashboard()' "$tmp/dashboard.sql")
    t[first]=$(sql_time '' "$tmp/dashboard.sql")
    t[reader]=$(sql_time "$as_reader; SELECT billing.dashboard()" "$tmp/dashboard.sql")
    ((do_plain)) && t[plain]=$(sql_time '' "$plain_file")
    if ((do_node)); then
        node_run >"$tmp/node.json"
        t[node]=$(json_field elapsed_ms <"$tmp/node.json")
        node_rss=$(json_field max_rss_kb <"$tmp/node.json")
    fi
    pg -c "$(insert_sql)" >/dev/null
    t[unmerged]=$(sql_time 'SELECT billing.dashboard()' "$tmp/dashboard.sql")
    t[reader_unmerged]=$(sql_time "$as_reader; SELECT billing.dashboard()" "$tmp/dashboard.sql")
    cleanup_inserts
    if ((round > 0)); then
        for id in "${!t[@]}"; do
            printf '%s\t%s\t%s\n' "$id" "${t[$id]}" "$([[ $id == node ]] && echo "$node_rss" || echo -)" >>"$samples"
        done
    fi
    unset t
done
load_after=$(load_average)

# ---------------------------------------------------------------------------
# dashboard() with 3 vs 12 months of data at the same monthly activity: the
# database bench_months holds a copy of the last 3 months (the current one and
# the 2 before) of public.messages, tracked the same way.
# ---------------------------------------------------------------------------

if ((do_months)); then
    log "months: copying the last 3 months into database bench_months"
    pg -c 'DROP DATABASE IF EXISTS bench_months' -c 'CREATE DATABASE bench_months' >/dev/null
    pg -d bench_months -c 'CREATE EXTENSION billing' >/dev/null
    # The tables of bench/generate.sql.
    pg -d bench_months >/dev/null <<'SQL'
CREATE TABLE public.messages (
    id              bigserial   PRIMARY KEY,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content         text        NOT NULL,
    data            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.profiles (id uuid PRIMARY KEY, type text, data jsonb);
CREATE INDEX messages_created_at_idx ON public.messages (created_at);
CREATE INDEX messages_conversation_id_idx ON public.messages (conversation_id);
SQL
    months_from="(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '2 months') AT TIME ZONE 'UTC'"
    pg -c "COPY (SELECT * FROM messages WHERE created_at >= $months_from) TO STDOUT" |
        pg -d bench_months -c 'COPY messages FROM STDIN'
    pg -c 'COPY profiles TO STDOUT' | pg -d bench_months -c 'COPY profiles FROM STDIN'
    pg -d bench_months >/dev/null <<'SQL'
SELECT setval(pg_get_serial_sequence('messages', 'id'), (SELECT max(id) FROM messages));
VACUUM ANALYZE messages;
VACUUM ANALYZE profiles;
SELECT billing.track_messages('public.messages');
SELECT billing.track_profiles('public.profiles');
SELECT billing.merge();
VACUUM ANALYZE billing.usage_ledger, billing.month_usage, billing.conversation_usage, billing.aws_usage;
SQL
    months_sql="SELECT count(DISTINCT month), (SELECT count(*) FROM billing.conversation_usage),
                       (SELECT sum(messages) FROM billing.month_usage
                         WHERE month < date_trunc('month', now() AT TIME ZONE 'UTC')::date
                           AND month >= date_trunc('month', now() AT TIME ZONE 'UTC')::date - 2 * interval '1 month')
                  FROM billing.month_usage"
    read -r months_12 conv_rows_12 prev2_12 <<<"$(pg -At -F ' ' -c "$months_sql")"
    read -r months_3 conv_rows_3 prev2_3 <<<"$(pg -At -F ' ' -d bench_months -c "$months_sql")"
    # The two databases must give the same payload but for the history months
    # the copy has no data for.
    # (numbers compared as values: a rollup's numeric scale depends on the
    # order its rows were added in, 0.582130 or 0.5821300)
    normalise() { sed -E 's/(\.[0-9]*[1-9])0+(,?)$/\1\2/; s/\.0+(,?)$/\1/' | md5sum | cut -c 1-32; }
    same_current=$(pg -At -c "SELECT jsonb_pretty(billing.dashboard() - 'history')" | normalise)
    same_copy=$(pg -At -d bench_months -c "SELECT jsonb_pretty(billing.dashboard() - 'history')" | normalise)
    months_equal=$([[ $same_current == "$same_copy" ]] && echo t || echo f)
    [[ $months_equal == t ]] || failed=1
    for ((round = 0; round <= runs; round++)); do
        log "months round $round/$runs"
        a=$(sql_time 'SELECT billing.dashboard()' "$tmp/dashboard.sql" "$db")
        b=$(sql_time 'SELECT billing.dashboard()' "$tmp/dashboard.sql" bench_months)
        if ((round > 0)); then
            printf 'm12\t%s\t-\nm3\t%s\t-\n' "$a" "$b" >>"$samples"
        fi
    done
    pg -c 'DROP DATABASE bench_months' >/dev/null
fi

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

# stats ID [COLUMN]: "median min max" of a sample column (2: ms, 3: kB).
stats() { sample_stats 1 "${2:-2}" "$samples" "$1"; }

messages_total=$(pg -At -c 'SELECT count(*) FROM messages')
data_shape=$(pg -At <<'SQL'
SELECT format('%s messages in %s conversations, %s to %s; %s this month (UTC); table %s with indexes',
              to_char(count(*), 'FM999,999,999'), to_char(count(DISTINCT conversation_id), 'FM999,999,999'),
              min(created_at)::date, max(created_at)::date,
              to_char(count(*) FILTER (WHERE created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
                      'FM999,999,999'),
              pg_size_pretty(pg_total_relation_size('messages')))
  FROM messages;
SQL
)
settings=$(settings_line shared_buffers work_mem max_parallel_workers_per_gather jit fsync synchronous_commit \
                        wal_level autovacuum)
pg_version=$(server_version)
billing_version=$(billing_version)

read -r ref_med _ < <(stats dash)
report=$tmp/report.md
{
    echo "## billing.dashboard() vs plain SQL vs the seed's Node route: $(printf "%'d" "$messages_total") messages, $runs runs ($(utc_time))"
    echo
    machine_line "$load_before" "$load_after" "the rounds"
    if ((do_node)); then
        echo "- $pg_version; billing $billing_version; Node $(node --version), pg $(node -p 'require("./bench/node/node_modules/pg/package.json").version')"
    else
        echo "- $pg_version; billing $billing_version; Node left out (--no-node)"
    fi
    echo "- settings: $settings"
    echo "- data: $data_shape"
    echo "- set-up: $backfill_note; billing.track_profiles('public.profiles'); billing.merge()"
    echo
    echo "Equal work (one statement computes both payloads, so one snapshot and one now()):"
    echo
    md_row state "dashboard() OpenAI cost, this month" "plain SQL" "equal, exactly" "cards (tokens, messages) equal" \
        "top 50 equal" "6-month history equal"
    md_row --- ---: ---: --- --- --- ---
    cat "$tmp/checks"
    echo
    echo "- dashboard() as a reading role (no ownership, row-level security applies) = as the owner: $(yes_no "$reader_same")"
    echo
    if ((do_node)); then
        awk -v node="$node_cost" -v dash="$merged_cost" -v seed="$seed_exact" -v n6="$node_six" -v d6="$merged_six" \
            -v rows="$node_rows" -v other="$other_name_tokens" -v cached="$cached_tokens" -v naws="$node_aws" -v aws="$aws_cost" '
            BEGIN {
                printf "The Node route (%s messages fetched) differs, as expected:\n\n", rows
                printf "| figure | dashboard() (exact) | Node (float) | Node − dashboard() |\n"
                printf "| --- | ---: | ---: | ---: |\n"
                printf "| OpenAI cost, this month | %s | %.6f | %+.2f cents |\n", dash, node, (node - dash) * 100
                printf "| OpenAI cost, 6-month history | %s | %.6f | %+.2f cents |\n", d6, n6, (n6 - d6) * 100
                printf "| AWS cost, this month | %s | %.6f | %+.4f cents |\n\n", aws, naws, (naws - aws) * 100
                printf "Of the %+.2f cents this month, %+.2f come from the seed'"'"'s pricing rules (the same rules in exact numeric give %s: %s tokens of names outside its table, dated snapshots and gpt-9, priced as gpt-4o-mini; %s cached prompt tokens at the full input price; no effective dates) and %+.2g cents from floating point.\n",
                       (node - dash) * 100, (seed - dash) * 100, seed, other, cached, (node - seed) * 100
            }'
        [[ -z $node_note ]] || { echo; echo "$node_note"; }
        echo
    fi
    echo "Client-side time of the whole payload (psql \\timing: sent, executed, received; Node: from its query to the serialised response, connection already open), over $runs runs alternating the contenders; ratio = median / median of dashboard() on a warm connection."
    echo
    md_row contender "median ms" "min–max ms" ratio "peak memory"
    md_row --- ---: ---: ---: ---:
    row() {
        local id=$1 label=$2 med lo hi mem=""
        read -r med lo hi < <(stats "$id")
        if [[ $id == node ]]; then
            read -r m _ < <(stats node 3)
            mem=$(awk -v k="$m" 'BEGIN { printf "%.0f MB RSS (median of the runs)", k / 1024 }')
        fi
        if [[ $id == dash ]]; then r="1.00 (ref)"; else r=$(ratio "$med" "$ref_med" x); fi
        md_row "$label" "$med" "$lo–$hi" "$r" "$mem"
    }
    row dash "SELECT billing.dashboard(), merged, warm connection"
    row first "SELECT billing.dashboard(), first call of a new connection"
    row unmerged "SELECT billing.dashboard() with $inserts unmerged writes ($ledger_conversations conversations)"
    row reader "SELECT billing.dashboard() as a reading role (row-level security), merged, warm connection"
    row reader_unmerged "the same as a reading role, with $inserts unmerged writes"
    ((do_plain)) && row plain "plain SQL from public.messages (bench/dashboard-plain.sql)"
    ((do_node)) && row node "seed route in Node.js + pg (bench/node/route.js$([[ -n $node_heap ]] && echo ", --max-old-space-size=$node_heap"))"
    if ((do_months)); then
        echo
        echo "dashboard() (merged, warm connection) at the same monthly activity with 3 and with $months_12 months of data ($runs runs alternating the databases; the copy holds the same last 3 months: $prev2_3 messages in its 2 full months, $prev2_12 in the original's; payload equal but for history: $(yes_no "$months_equal")):"
        echo
        md_row data "rollup rows (conversation_usage)" "median ms" "min–max ms" ratio
        md_row --- ---: ---: ---: ---:
        read -r m3 lo3 hi3 < <(stats m3)
        read -r m12 lo12 hi12 < <(stats m12)
        md_row "$months_3 months (copy)" "$conv_rows_3" "$m3" "$lo3–$hi3" "1.00 (ref)"
        md_row "$months_12 months" "$conv_rows_12" "$m12" "$lo12–$hi12" "$(ratio "$m12" "$m3" x)"
    fi
} >"$report"

save_report "$report" "bench/results/dashboard-$(utc_stamp)-$messages_total.md"
if ((failed)); then
    log "a check FAILED (see the report)"
    exit 1
fi
