#!/usr/bin/env bash
# The Citus tests: billing on a throwaway Citus cluster (a coordinator and
# two workers on this machine, tools/citus.sh), pg_regress with the tests
# of test/citus/sql/ against test/citus/expected/, in the order of
# test/citus/schedule.
#
#   test/citus/run.sh [--keep] [--known-problems]
#   --keep            leave the cluster running and print how to reach it
#   --known-problems  run test/citus/known_problems.sql instead and print
#                     its output (what does not work on Citus yet; not a test)
#
# Needs billing installed (make install) into the PostgreSQL of PG_BINDIR
# (default /usr/lib/postgresql/15/bin). Builds Citus from
# ../shared/vendor/citus when it is missing (tools/citus.sh); without Citus
# and its source, prints "Citus tests skipped: <why>" and exits 0.
# tools/test.sh runs it as one suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export BILLING_REPO_ROOT=$PWD

keep=0 known=0
while (($#)); do
    case $1 in
        --keep) keep=1 ;;
        --known-problems) known=1 ;;
        -h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

export PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
# shellcheck source=tools/cluster.sh
. tools/cluster.sh
# shellcheck source=tools/citus.sh
. tools/citus.sh

rc=0
citus_available || rc=$?
case $rc in
    0) ;;
    1) exit 0 ;;   # skipped; citus_available said why
    *) exit 1 ;;
esac
sharedir=$("$PG_BINDIR/pg_config" --sharedir)
if [[ ! -f $sharedir/extension/billing.control ]]; then
    echo "billing is not installed in $sharedir/extension (make install, with this PostgreSQL's pg_config)"
    exit 1
fi

export CITUS_DB=citus_test
if ((keep)); then
    KEEP_CLUSTER=1
else
    trap citus_cluster_stop EXIT
fi
citus_cluster_start
# A node for add_node.sql to add (its port in a database setting the test reads).
citus_spare_node_start >/dev/null
citus_psql 0 -c "ALTER DATABASE $CITUS_DB SET citus_test.spare_port = '${CITUS_NODE_PORTS[3]}'"
citus_psql 0 -c "CREATE EXTENSION billing"

if ((known)); then
    citus_psql 0 -v ON_ERROR_STOP=0 -a -f test/citus/known_problems.sql 2>&1 |
        sed -E 's/localhost:[0-9]+|127\.0\.0\.1:[0-9]+/NODE/g'
    exit 0
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/billing-citus-regress.XXXXXX")
pg_regress=$("$PG_BINDIR/pg_config" --pkglibdir)/pgxs/src/test/regress/pg_regress
mapfile -t tests < <(grep -v -E '^\s*(#|$)' test/citus/schedule)
status=0
"$pg_regress" --use-existing --dbname="$CITUS_DB" --bindir="$PG_BINDIR" \
    --inputdir=test/citus --outputdir="$out" "${tests[@]}" || status=$?
if ((status)) && [[ -f $out/regression.diffs ]]; then
    echo "---- $out/regression.diffs ----"
    cat "$out/regression.diffs"
fi
if ((status)); then
    echo "pg_regress output kept in $out"
elif ((!keep)); then
    rm -rf -- "$out"
fi
if ((keep)); then
    echo "cluster left running: PGHOST=${CITUS_NODE_HOSTS[0]} PGPORT=${CITUS_NODE_PORTS[0]} PGDATABASE=$CITUS_DB;" \
         "workers on ports ${CITUS_NODE_PORTS[1]} and ${CITUS_NODE_PORTS[2]}; stop each with" \
         "pg_ctl -D DIR/data stop, DIR in: ${CITUS_NODE_DIRS[*]}"
fi
exit "$status"
