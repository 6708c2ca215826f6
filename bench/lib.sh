# shellcheck shell=bash
# The helpers the bench scripts share: one definition of each. Source it
# from the repository's root (every bench script cd's there first):
#
#   . bench/lib.sh
#
# It only defines functions. Those that query the server (pg, psql_times,
# server_version, billing_version, settings_line) use the cluster of the
# caller's PG* variables.

# log MESSAGE...: a progress line, on stderr.
log() { echo "==> $*" >&2; }

# pg PSQL-ARGS...: psql as the benchmarks use it: no psqlrc, quiet, stop at
# the first error.
pg() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# yes_no t|f: "yes", or a bold "**NO**" (a failed check, in a report).
yes_no() { if [[ $1 == t ]]; then echo "yes"; else echo "**NO**"; fi; }

# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------

# sample_stats DECIMALS COLUMN FILE [KEY...]: "median min max" of column
# COLUMN (1-based) of the tab-separated FILE, over the lines whose first
# fields equal the KEYs (all lines without KEY), each printed with DECIMALS
# decimals. The median of an even number of values is the mean of the two
# middle ones: (v[(n-1)/2] + v[n/2]) / 2 of the sorted values v[0..n-1].
# Prints nothing and fails when no line matches.
sample_stats() {
    local decimals=$1 column=$2 file=$3 keys=""
    shift 3
    (($# == 0)) || keys=$(printf '%s\t' "$@")
    awk -F '\t' -v c="$column" -v keys="$keys" '
        BEGIN { nk = split(keys, k, "\t") - 1 }
        {
            for (i = 1; i <= nk; i++) if ($i != k[i]) next
            print $c
        }' "$file" |
        sort -g |
        awk -v d="$decimals" '
            { v[n++] = $1 }
            END {
                if (n == 0) exit 1
                f = "%." d "f"
                printf f " " f " " f "\n", (v[int((n - 1) / 2)] + v[int(n / 2)]) / 2, v[0], v[n - 1]
            }'
}

# ratio A B [STYLE]: A / B as a report prints it. STYLE "" (the default):
# two decimals, "0.87"; "x": "0.87×", or "472×" from 10 up; "%": a
# percentage without decimals, "83%".
ratio() {
    awk -v a="$1" -v b="$2" -v style="${3:-}" 'BEGIN {
        r = a / b
        if (style == "%") printf "%.0f%%", 100 * a / b
        else if (style == "x") printf (r >= 10 ? "%.0f×" : "%.2f×"), r
        else printf "%.2f", r
    }'
}

# ---------------------------------------------------------------------------
# The machine, the server, the time
# ---------------------------------------------------------------------------

# load_average: the 1-, 5- and 15-minute load averages, "0.73 0.93 1.16".
load_average() { cut -d ' ' -f 1-3 /proc/loadavg; }

# machine_line LOAD-BEFORE LOAD-AFTER [WHAT]: a report's machine line,
#   - machine: 2 CPUs (AMD EPYC), 23.5 GiB RAM; load average L before[ WHAT], L after
machine_line() {
    local cpu ram
    cpu=$(grep -m 1 '^model name' /proc/cpuinfo | cut -d : -f 2- | sed 's/^ *//') || cpu="unknown CPU"
    ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    echo "- machine: $(nproc) CPUs ($cpu), $ram RAM; load average $1 before${3:+ $3}, $2 after"
}

# server_version: the server's version() string.
server_version() { pg -At -c 'SELECT version()'; }

# billing_version: the installed version of the extension billing.
billing_version() { pg -At -c "SELECT extversion FROM pg_extension WHERE extname = 'billing'"; }

# settings_line NAME...: "name = value, ..." of these server settings, by name.
settings_line() {
    local names
    names=$(printf "'%s', " "$@")
    pg -At -c "SELECT string_agg(name || ' = ' || current_setting(name), ', ' ORDER BY name)
                 FROM pg_settings WHERE name IN (${names%, })"
}

# utc_time: the time a report was made, "2026-11-25 18:15 UTC".
utc_time() { date -u '+%Y-%m-%d %H:%M UTC'; }
# utc_stamp: the same for a file name, "2026-11-25T1815".
utc_stamp() { date -u +%FT%H%M; }
# utc_day: the UTC date, "2026-11-25".
utc_day() { date -u +%F; }

# ---------------------------------------------------------------------------
# Timing with psql
# ---------------------------------------------------------------------------

# psql_times [PSQL-ARGS...]: runs the SQL read on stdin in one new psql
# session, its output discarded, and prints the client-side time of every
# statement that psql timed (sent, executed, result received), in ms, one a
# line: the statements after a "\timing on" line of the input.
psql_times() {
    { echo '\o /dev/null'; cat; } | pg -At "$@" | awk '/^Time: / { print $2 }'
}

# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------

# md_row CELL...: one Markdown table row, "| a | b | c |" (an empty cell
# stays empty; "---" and "---:" cells make the separator row).
md_row() {
    printf '|'
    printf ' %s |' "$@"
    printf '\n'
}

# save_report REPORT FILE: saves the report REPORT as FILE (under
# bench/results/), prints it on stdout, and regenerates the summary of the
# newest results, bench/results/latest.md (bench/summary.sh). A summary that
# cannot be regenerated is logged, not fatal: the report is saved.
save_report() {
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2"
    cat "$1"
    log "report saved to $2"
    if bash bench/summary.sh "$(dirname "$2")" >&2; then
        log "summary regenerated: $(dirname "$2")/latest.md"
    else
        log "could not regenerate $(dirname "$2")/latest.md (bash bench/summary.sh)"
    fi
}

# The server's CPU time, for benches whose wall-clock figures a shared
# machine makes noisy: CPU time is what a run cost the server whatever else
# the CPUs were doing.
#
# postmaster_pid: the PID of the cluster's postmaster (the parent of its
# checkpointer), or nothing when the server is not on this machine.
postmaster_pid() {
    local ckpt
    ckpt=$(pg -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'") || return 0
    [[ -n $ckpt && -r /proc/$ckpt/stat ]] || return 0
    server_stat_fields "$ckpt" | cut -d ' ' -f 2
}
# server_stat_fields PID: the fields of /proc/PID/stat after the command
# name (state ppid ... utime stime cutime cstime ...), or fails.
server_stat_fields() {
    local line
    { read -r line </proc/"$1"/stat; } 2>/dev/null || return 1
    echo "${line##*) }"
}
# server_cpu_ticks POSTMASTER: clock ticks of CPU the server has used: the
# postmaster's own, its exited children's (cutime, cstime: a backend's
# time is added there when the postmaster reaps it) and its live children's.
server_cpu_ticks() {
    local pm=$1 f ticks=0 pid
    local -a v
    read -ra v <<<"$(server_stat_fields "$pm")"
    ticks=$((v[11] + v[12] + v[13] + v[14]))
    for f in /proc/[0-9]*/stat; do
        pid=${f#/proc/}
        pid=${pid%/stat}
        [[ $pid == "$pm" ]] && continue
        read -ra v <<<"$(server_stat_fields "$pid")" || continue
        ((${#v[@]} > 12)) && [[ ${v[1]} == "$pm" ]] && ticks=$((ticks + v[11] + v[12]))
    done
    echo "$ticks"
}
# server_children POSTMASTER: how many processes the postmaster has now.
server_children() {
    local f n=0
    local -a v
    for f in /proc/[0-9]*/stat; do
        read -ra v <<<"$(server_stat_fields "${f//[^0-9]/}")" || continue
        [[ ${v[1]:-} == "$1" ]] && n=$((n + 1))
    done
    echo "$n"
}
# server_settle POSTMASTER COUNT: wait (up to 5 s) until the postmaster has
# at most COUNT children again, so that the sessions of a run have exited
# and their CPU time is in the postmaster's cutime.
server_settle() {
    local i
    for ((i = 0; i < 50; i++)); do
        (($(server_children "$1") <= $2)) && return 0
        sleep 0.1
    done
}

# SQL that makes table $1 a copy of public.messages' shape (columns, primary
# key, the two indexes an app has) holding the rows of public.messages that
# match the condition $2 (default: all), with its id sequence past every id of
# public.messages. The insert benches (inserts.sh, insert_instructions.sh)
# compare a tracked and an untracked table made by it, so the two are always
# the same shape. One transaction: with wal_level = minimal the rows skip the
# WAL; the keys are built after the rows, which is faster. With $3 =
# partitioned, the table is partitioned by month of created_at (UTC), a
# partition for each month from public.messages' first to the one after
# now(), and its primary key is (id, created_at), as a partitioned table's
# must hold the partition key.
messages_copy_sql() {
    local t=$1 where=${2:-true} layout=${3:-plain}
    local partition_by="" key="id"
    if [[ $layout == partitioned ]]; then
        partition_by="PARTITION BY RANGE (created_at)"
        key="id, created_at"
    fi
    cat <<SQL
SET maintenance_work_mem = '1GB';
BEGIN;
CREATE TABLE $t (
    id              bigserial,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content         text        NOT NULL,
    data            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
) $partition_by;
SQL
    if [[ $layout == partitioned ]]; then
        cat <<SQL
DO \$\$
DECLARE
    m timestamp;
BEGIN
    FOR m IN SELECT generate_series(date_trunc('month', (SELECT min(created_at) FROM public.messages) AT TIME ZONE 'UTC'),
                                    date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month', interval '1 month')
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', '${t}_' || to_char(m, 'YYYY_MM'), '$t',
                       m AT TIME ZONE 'UTC', (m + interval '1 month') AT TIME ZONE 'UTC');
    END LOOP;
END
\$\$;
SQL
    fi
    cat <<SQL
INSERT INTO $t (id, conversation_id, role, content, data, created_at)
SELECT m.id, m.conversation_id, m.role, m.content, m.data, m.created_at
  FROM public.messages AS m
 WHERE $where
 ORDER BY m.id;
SELECT setval(pg_get_serial_sequence('$t', 'id'), (SELECT max(id) FROM public.messages));
ALTER TABLE $t ADD PRIMARY KEY ($key);
CREATE INDEX ${t}_created_at_idx ON $t (created_at);
CREATE INDEX ${t}_conversation_id_idx ON $t (conversation_id);
COMMIT;
VACUUM ANALYZE $t;
SQL
}

# A throwaway cluster with the bench's settings (bench/cluster-settings.sh)
# holding $1 messages of bench/generate.sql, tracked and analyzed: what a
# bench measures on when it is not given an existing cluster. Needs
# tools/cluster.sh sourced (the caller owns the trap that calls cluster_stop).
start_cluster_with_tracked_messages() {
    local messages=$1
    # shellcheck source=bench/cluster-settings.sh
    . bench/cluster-settings.sh
    log "starting a throwaway cluster"
    cluster_start "${bench_cluster_settings[@]}"
    pg -c 'CREATE EXTENSION billing'
    log "generating $messages messages (bench/generate.sql)"
    pg -v messages="$messages" -f bench/generate.sql >/dev/null
    log "tracking them"
    pg -c "SELECT * FROM billing.track_messages('messages')" >/dev/null
    pg -c 'VACUUM ANALYZE' >/dev/null
}

# The conversation numbered $1 by bench/generate.sql (its bench_uuid()), as
# an SQL expression.
conversation_of() { echo "overlay(overlay(md5('conversation ' || $1) PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid"; }

# SQL that defines $2 budgets named $1<k>, as the insert benches define them
# (issue 11 measures writes with 20): over everything, OpenAI, AWS, then per
# model and per conversation of bench/generate.sql; amounts far above any
# bench table's spend, so that no alert fires.
bench_budgets_sql() {
    local prefix=$1 n=$2
    cat <<SQL
INSERT INTO billing.budgets (name, scope, model, conversation_id, amount)
SELECT '$prefix' || k,
       CASE WHEN k = 1 THEN 'all' WHEN k = 2 THEN 'openai' WHEN k = 3 THEN 'aws'
            WHEN k % 2 = 0 THEN 'model' ELSE 'conversation' END,
       CASE WHEN k > 3 AND k % 2 = 0 THEN (ARRAY['gpt-4o', 'gpt-4o-mini'])[1 + k / 2 % 2] END,
       CASE WHEN k > 3 AND k % 2 = 1 THEN ($(conversation_of k))::text END,
       1000000000
  FROM generate_series(1, $n) AS k;
SQL
}
