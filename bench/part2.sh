#!/usr/bin/env bash
# The second part of the benchmark suite in one command: a throwaway cluster
# (tools/cluster.sh, the settings of bench/run.sh), the data of
# bench/generate.sql, CREATE EXTENSION billing, then bench/backfill.sh,
# bench/dashboard.sh and bench/inserts.sh on it. See bench/RESULTS-part2.md.
#
#   bench/part2.sh [--messages N] [--runs R] [--backfill-runs R] [--skip LIST] [--no-setup]
#                  [--default-settings] [--rounds N] [--duration S] [--budgets N]
#
#   --messages N        rows in public.messages (default 1000000)
#   --runs R            dashboard.sh rounds (default 5)
#   --backfill-runs R   backfill.sh runs (default 3)
#   --skip LIST         comma-separated scripts to leave out: backfill,dashboard,inserts
#   --no-setup          skip tools/setup.sh (reuse the installed build)
#   --default-settings  start the cluster with PostgreSQL's default settings
#                       instead of bench/cluster-settings.sh's (nothing added:
#                       the bench runs on them as they are); runs inserts.sh
#                       only: backfill.sh's and dashboard.sh's reports are
#                       named and summarised by size alone, so theirs would
#                       replace the bench settings' figures in latest.md
#   --rounds N          inserts.sh rounds (its default: 3)
#   --duration S        inserts.sh seconds per run (its default: 30)
#   --budgets N         budgets defined during inserts.sh's runs (its default: 0)
#
# Each script's report goes to stdout and to bench/results/, and each
# regenerates bench/results/latest.md (bench/summary.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

messages=1000000
runs=5
backfill_runs=3
skip=""
setup=1
default_settings=0
inserts_opts=()

usage() { sed -n '7,24s/^# \{0,1\}//p' "$0"; }

while (($#)); do
    case $1 in
        --messages) messages=${2:-}; shift ;;
        --runs) runs=${2:-}; shift ;;
        --backfill-runs) backfill_runs=${2:-}; shift ;;
        --skip) skip=${2:-}; shift ;;
        --no-setup) setup=0 ;;
        --default-settings) default_settings=1 ;;
        --rounds | --duration | --budgets)
            if [[ ! ${2:-} =~ ^[0-9]+$ || ( $1 != --budgets && ${2:-} == 0 ) ]]; then
                echo "part2.sh: $1 takes a positive integer (--budgets: 0 or more), got '${2:-}'" >&2
                exit 2
            fi
            inserts_opts+=("$1" "$2"); shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "part2.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for n in "$messages" "$runs" "$backfill_runs"; do
    if [[ ! $n =~ ^[1-9][0-9]*$ ]]; then
        echo "part2.sh: --messages, --runs and --backfill-runs take a positive integer, got '$n'" >&2
        exit 2
    fi
done
skipped() { [[ ,$skip, == *,$1,* ]]; }
if ((default_settings)); then
    for script in backfill dashboard; do
        skipped "$script" || log "--default-settings: leaving out $script.sh (its report is summarised by size alone)"
    done
    skip+=,backfill,dashboard
fi

if ((setup)); then
    log "tools/setup.sh"
    bash tools/setup.sh >&2
fi
if [[ ! -d bench/node/node_modules/pg ]]; then
    log "npm ci (bench/node)"
    (cd bench/node && npm ci --no-audit --no-fund >&2)
fi

# shellcheck source=tools/cluster.sh
. tools/cluster.sh
trap cluster_stop EXIT

# The settings of bench/run.sh: fsync and synchronous_commit stay on (the
# defaults); wal_level = minimal only lets generate.sql skip WAL for the
# tables it creates, single-row inserts write the same WAL as with replica.
# With --default-settings: none, so PostgreSQL's defaults (those initdb
# writes, e.g. shared_buffers = 128MB, max_wal_size = 1GB, wal_level =
# replica, autovacuum on); tools/cluster.sh's own lines (connections,
# logging, max_worker_processes, pg_cron when installed) apply either way.
conf=()
if ((default_settings)); then
    settings_kind=default
else
    # shellcheck source=bench/cluster-settings.sh
    . bench/cluster-settings.sh
    conf=("${bench_cluster_settings[@]}")
    settings_kind=bench
fi
log "starting a throwaway cluster ($settings_kind settings)"
cluster_start "${conf[@]}"
pg -c 'CREATE EXTENSION billing'

log "generating $messages messages (bench/generate.sql)"
start=$SECONDS
pg -v messages="$messages" -f bench/generate.sql
log "generated in $((SECONDS - start)) s"

status=0
skipped backfill || bash bench/backfill.sh --runs "$backfill_runs" || status=1
skipped dashboard || bash bench/dashboard.sh --runs "$runs" || status=1
skipped inserts || bash bench/inserts.sh --settings-kind "$settings_kind" "${inserts_opts[@]}" || status=1
exit $status
