#!/usr/bin/env bash
# Demo: install what is missing (only what the demo needs), build and
# install the extension, start a throwaway cluster, load tools/demo.sql's
# data (dated relative to today) and print the billing page's figures, the
# dashboard last. One line per step; apt and compiler output go to a log
# file, whose last lines are printed if a step fails. --keep leaves the
# cluster running and prints how to connect.
#
#   tools/demo.sh [--keep]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

keep=0
case ${1:-} in
    --keep) keep=1 ;;
    "") ;;
    -h|--help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "usage: tools/demo.sh [--keep]" >&2; exit 2 ;;
esac

log=$(mktemp --suffix=.log "${TMPDIR:-/tmp}/billing-demo.XXXXXX")
chmod 0644 "$log"

bash tools/setup.sh --demo --log "$log"

# shellcheck source=tools/cluster.sh
. tools/cluster.sh

# With --keep the connection hints are printed even if the demo fails, as
# the kept cluster is then most useful for debugging.
keep_hint() {
    [[ -n ${PGHOST:-} ]] || return 0
    cat <<HINT

==> the cluster keeps running in $BILLING_CLUSTER_DIR (server log: postgresql.log there)
    connect: psql -h $PGHOST -p $PGPORT -U postgres
    e.g.:    psql -h $PGHOST -p $PGPORT -U postgres -At -c 'SELECT jsonb_pretty(billing.dashboard(3, 3))'
    stop:    BILLING_CLUSTER_DIR=$BILLING_CLUSTER_DIR bash -c '. $PWD/tools/cluster.sh && cluster_stop'
HINT
}
removed_hint() {
    cluster_stop
    if [[ -n ${PGHOST:-} ]]; then
        echo
        echo "==> cluster removed; 'bash tools/demo.sh --keep' leaves it running to connect with psql"
    fi
}
if ((keep)); then trap keep_hint EXIT; else trap removed_hint EXIT; fi

echo "==> starting a throwaway PostgreSQL 15 cluster"
# shellcheck disable=SC2119 # (no extra postgresql.conf lines needed)
cluster_start

echo "==> CREATE EXTENSION billing; loading the demo data (tools/demo.sql)"
psql -X -v ON_ERROR_STOP=1 -f tools/demo.sql
