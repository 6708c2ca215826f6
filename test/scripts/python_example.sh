#!/usr/bin/env bash
# The Python example (examples/python/billing_payload.py, README "The example
# app") reads the same payload as the Next.js route, exactly:
#  - its query is the route's, character for character (lib/billing-query.ts);
#  - on examples/nextjs/e2e/data.sql's known data, amounts are Decimals with
#    every digit: OpenAI 1.005 + 0.881697523084 + 0.01005 = 1.896747523084,
#    total + 0.1234 (1234 e-mails x 0.0001) = 2.020147523084, the top
#    conversation 1.005 (cents: $1.01, where a float would give $1.00);
#    per customer, globex 1.005097523084 and acme 1.005 with its statement;
#  - run as a script, it prints the period's figures.
#
#   test/scripts/python_example.sh
#
# Needs Debian's python3 with python3-psycopg (tools/setup.sh installs it).
# Runs against the cluster of tools/test.sh, in a database of its own.
set -euo pipefail

root=${BILLING_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$root"
# shellcheck source=tools/cluster.sh
. tools/cluster.sh
cluster_use_or_start
db=billing_python_example
cleanup() {
    dropdb --if-exists "$db" >/dev/null 2>&1 || true
    if ((CLUSTER_OWNED)); then cluster_stop; fi
}
trap cleanup EXIT

python=/usr/bin/python3
if ! "$python" -c 'import psycopg' 2>/dev/null; then
    echo "FAIL: $python has no psycopg (tools/setup.sh installs python3-psycopg)"
    exit 1
fi

dropdb --if-exists "$db" >/dev/null 2>&1 || true
createdb "$db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f examples/nextjs/e2e/data.sql >/dev/null

PGDATABASE=$db "$python" - <<'PY'
import asyncio, re, sys
from decimal import Decimal
sys.path.insert(0, "examples/python")
import psycopg
from billing_payload import BILLING_QUERY, billing_payload, cents

failed = 0
def check(what, got, want):
    global failed
    if got == want:
        print(f"ok: {what}")
    else:
        failed = 1
        print(f"FAIL: {what}: got {got!r}, want {want!r}")

ts = open("examples/nextjs/lib/billing-query.ts").read()
check("the query is the Next.js route's", re.search(r"BILLING_QUERY = `(.*?)`;", ts, re.S).group(1), BILLING_QUERY)

async def run():
    async with await psycopg.AsyncConnection.connect("") as conn:
        return await billing_payload(conn)
p = asyncio.run(run())
check("OpenAI cost, exact", p["openai"]["cost"], Decimal("1.896747523084"))
check("total, exact", p["total_cost"], Decimal("2.020147523084"))
check("tokens, an exact int", (p["openai"]["tokens"], type(p["openai"]["tokens"])), (7008010, int))
check("top conversation, exact, with its title",
      (p["conversations"][0]["title"], p["conversations"][0]["cost"]), ("Quarterly report", Decimal("1.005")))
check("to the cent: 1.005 -> $1.01", cents(p["conversations"][0]["cost"]), "$1.01")
check("budget state", [(b["budget"], b["state"]) for b in p["budgets"]], [("monthly", "ok")])
check("forecast sources", sorted(p["forecast"]), ["aws", "openai", "total"])
# e2e/data.sql: globex 0.881697523084 + 0.1234 = 1.005097523084, acme 1.005
# (and last month's statement, 2000 x 0.001005 + 500 x 0.0001 = 2.06)
check("customers, exact, by total",
      [(c["customer"], c["openai"], c["aws"], c["cost"], [s["total"] for s in c["statements"]]) for c in p["customers"]],
      [("globex", Decimal("0.881697523084"), Decimal("0.1234"), Decimal("1.005097523084"), []),
       ("acme", Decimal("1.005"), 0, Decimal("1.005"), [Decimal("2.06")])])
sys.exit(failed)
PY
echo "==> python3 examples/python/billing_payload.py"
PGDATABASE=$db "$python" examples/python/billing_payload.py
