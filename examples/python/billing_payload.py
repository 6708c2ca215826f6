"""billing's /api/billing payload for the app's Python agent (FastAPI), exact.

The same one query as the Next.js route (examples/nextjs/lib/billing-query.ts,
kept equal to BILLING_QUERY below by test/scripts/python_example.sh): it
returns the jsonb as text, and json.loads(..., parse_float=Decimal) reads
every amount as a decimal.Decimal with all the digits PostgreSQL wrote
(integers, such as token counts, come back as exact Python ints). Never let a
float in between: json.loads without parse_float, or psycopg's default jsonb
loader, gives 1.005 as the float 1.00499999999999989...

    from billing_payload import billing_payload, fastapi_router
    payload = await billing_payload(conn)          # psycopg.AsyncConnection
    payload["openai"]["cost"]                      # Decimal('1.896747523084')
    app.include_router(fastapi_router(DSN), prefix="/api")   # GET /api/billing

Run as a script, it prints the current period's figures of the database that
the PG* environment variables (or DATABASE_URL) name:

    python3 examples/python/billing_payload.py

Needs psycopg 3 (Debian: python3-psycopg; PyPI: psycopg). With asyncpg the
same holds: fetch the text (``await conn.fetchval(BILLING_QUERY)``) and parse
it with parse_float=Decimal.
"""

from __future__ import annotations

import json
import os
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from typing import Any

import psycopg

BILLING_QUERY = """
WITH d AS MATERIALIZED (SELECT billing.dashboard() AS d)
SELECT (d.d || jsonb_build_object(
          'conversations',
          (SELECT coalesce(jsonb_agg(c.value || jsonb_build_object('title', t.title) ORDER BY c.ord), '[]'::jsonb)
             FROM jsonb_array_elements(d.d -> 'conversations') WITH ORDINALITY AS c(value, ord)
             LEFT JOIN public.conversations AS t
                    ON t.id = CASE WHEN c.value ->> 'conversation_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                                   THEN (c.value ->> 'conversation_id')::uuid END),
          'forecast',
          (SELECT jsonb_object_agg(f.source, jsonb_build_object('spent', f.spent, 'forecast', f.forecast,
                                                                'past_daily', f.past_daily, 'method', f.method))
             FROM billing.forecast() AS f),
          'alerts',
          (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.fired_at DESC, a.id DESC), '[]'::jsonb)
             FROM (SELECT x.id, x.budget, x.threshold, x.period, x.spent, x.amount, x.fired_at
                     FROM billing.alerts AS x ORDER BY x.fired_at DESC, x.id DESC LIMIT 20) AS a),
          'customers',
          (SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'customer', k.customer, 'openai', coalesce(k.openai, 0), 'aws', coalesce(k.aws, 0),
                    'cost', coalesce(k.cost, 0),
                    'statements',
                    (SELECT coalesce(jsonb_agg(jsonb_build_object('number', s.number, 'month', s.month, 'total', s.total)
                                               ORDER BY s.month DESC, s.id DESC), '[]'::jsonb)
                       FROM billing.statements AS s WHERE s.customer = k.customer))
                    ORDER BY coalesce(k.cost, 0) DESC, k.customer), '[]'::jsonb)
             FROM (SELECT coalesce(c.customer, s.customer) AS customer, c.openai, c.aws, c.cost
                     FROM (SELECT x.customer, sum(x.openai_cost) AS openai, sum(x.aws_cost) AS aws,
                                  sum(x.total_cost) AS cost
                             FROM billing.costs((d.d -> 'period' ->> 'start')::timestamptz,
                                                (d.d -> 'period' ->> 'end')::timestamptz) AS x
                            WHERE x.customer IS NOT NULL
                            GROUP BY x.customer) AS c
                     FULL JOIN (SELECT DISTINCT y.customer FROM billing.statements AS y) AS s
                            ON s.customer = c.customer
                    WHERE d.d ? 'customers') AS k),
          'generated_at', now()))::text AS payload
  FROM d"""

#: json.loads that keeps every JSON number with a fraction or exponent exact.
loads = partial(json.loads, parse_float=Decimal)


def cents(amount: Decimal | None) -> str:
    """Dollars to the cent, half away from zero (PostgreSQL's round(x, 2))."""
    if amount is None:
        return "n/a"
    return f"${Decimal(amount).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


async def billing_payload(conn: psycopg.AsyncConnection) -> dict[str, Any]:
    """The /api/billing payload, numbers exact (Decimal / int)."""
    cur = await conn.execute(BILLING_QUERY)
    row = await cur.fetchone()
    return loads(row[0])


def billing_payload_sync(conn: psycopg.Connection) -> dict[str, Any]:
    """billing_payload() for a synchronous connection."""
    row = conn.execute(BILLING_QUERY).fetchone()
    return loads(row[0])


def fastapi_router(dsn: str):
    """A FastAPI router whose GET /billing answers like the Next.js route: the
    payload's text as PostgreSQL wrote it (no float on the way)."""
    from fastapi import APIRouter  # imported here: only the agent has FastAPI
    from fastapi.responses import Response

    router = APIRouter()

    @router.get("/billing")
    async def billing() -> Response:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            cur = await conn.execute(BILLING_QUERY)
            row = await cur.fetchone()
        return Response(content=row[0], media_type="application/json", headers={"cache-control": "no-store"})

    return router


def main() -> None:
    with psycopg.connect(os.environ.get("DATABASE_URL", "")) as conn:
        p = billing_payload_sync(conn)
    print(f"period       {p['period']['start'][:10]} to {p['period']['end'][:10]}")
    print(f"OpenAI       {cents(p['openai']['cost'])}  ({p['openai']['cost']} USD, {p['openai']['tokens']:,} tokens)")
    print(f"AWS          {cents(p['aws']['cost'])}  ({p['aws']['cost']} USD, {p['aws']['emails']:,} emails)")
    print(f"total        {cents(p['total_cost'])}  ({p['total_cost']} USD)")
    if p.get("forecast"):
        print(f"forecast     {cents(p['forecast']['total']['forecast'])}  ({p['forecast']['total']['method']})")
    for b in p.get("budgets") or []:
        print(f"budget       {b['budget']}: {cents(b['spent'])} of {cents(b['amount'])} ({b['state']})")
    for a in p.get("alerts") or []:
        print(f"alert        {a['budget']} reached {a['threshold']}% of {cents(a['amount'])} for {a['period'][:7]}")
    for c in p["conversations"][:5]:
        print(f"conversation {cents(c['cost']):>10}  {c['title'] or 'Untitled'}")
    for c in p.get("customers") or []:
        statements = ", ".join(f"{s['number']} {cents(s['total'])}" for s in c["statements"]) or "no statement"
        print(f"customer     {cents(c['cost']):>10}  {c['customer']} (OpenAI {cents(c['openai'])}, "
              f"AWS {cents(c['aws'])}; {statements})")


if __name__ == "__main__":
    main()
