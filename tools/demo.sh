#!/usr/bin/env bash
# Demo: set up, start a throwaway cluster, install the extension and run
# tools/demo.sql.  --keep leaves the cluster running for poking at it.
#
#   tools/demo.sh [--keep]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

keep=0
case ${1:-} in
    --keep) keep=1 ;;
    "") ;;
    *) echo "usage: tools/demo.sh [--keep]" >&2; exit 2 ;;
esac

bash tools/setup.sh

# shellcheck source=tools/cluster.sh
. tools/cluster.sh

# With --keep the connection hints are printed even if the demo fails, as
# the kept cluster is then most useful for debugging.
keep_hint() {
    [[ -n ${PGHOST:-} ]] || return 0
    cat <<HINT

==> cluster kept running in $BILLING_CLUSTER_DIR (log: postgresql.log)
    connect: PGHOST=$PGHOST PGPORT=$PGPORT psql -U postgres postgres
    stop:    BILLING_CLUSTER_DIR=$BILLING_CLUSTER_DIR bash -c '. $PWD/tools/cluster.sh && cluster_stop'
HINT
}
if ((keep)); then trap keep_hint EXIT; else trap cluster_stop EXIT; fi

echo "==> starting cluster"
# shellcheck disable=SC2119 # (no extra postgresql.conf lines needed)
cluster_start

# CASCADE also creates required extensions (e.g. pg_cron) if the control
# file lists them.
psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION billing CASCADE;'
echo "==> running tools/demo.sql"
psql -X -v ON_ERROR_STOP=1 -f tools/demo.sql
