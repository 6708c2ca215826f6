// The whole /api/billing payload in one query: billing.dashboard() (the
// current month's OpenAI and AWS cards, the top 50 conversations, the
// 6-month history and the budgets' state), with
//  - each conversation's title from the app's own conversations table,
//  - billing.forecast(): the month's cost at its end, per source,
//  - the 20 latest budget alerts (billing.alerts),
//  - customers (once billing knows customers, as the dashboard's own
//    `customers` entry, which this replaces): every customer with costs in
//    the period (billing.costs over the dashboard's period) or with issued
//    statements, its OpenAI, AWS and total cost, and its statements, newest
//    first. Usage of no customer is not listed.
// It returns jsonb as text, which the route sends on unchanged: numbers keep
// every digit PostgreSQL wrote (no JSON.parse / JSON.stringify in between).
//
// The app's conversations table is public.conversations (id uuid, title
// text), as in the seed app; a conversation id that is not a uuid (or has no
// row there) gets a null title.
export const BILLING_QUERY = `
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
  FROM d`;
