-- What tools/demo.sh --app adds to tools/demo.sql's database for the example
-- app: the app's own conversations table (the page shows its titles) and two
-- budgets, one near its limit.
\set QUIET on
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS public.conversations (id uuid PRIMARY KEY, title text NOT NULL);
INSERT INTO public.conversations (id, title)
SELECT c.conversation_id,
       (ARRAY['Quarterly report draft', 'Trip to Lisbon', 'Invoice follow-up', 'Onboarding questions',
              'Refactor the billing page', 'Weekly summary', 'Support ticket #4711', 'Product launch e-mails',
              'Interview prep', 'Recipe ideas'])[1 + (row_number() OVER (ORDER BY c.first_at) - 1) % 10]
       || ' (' || to_char(c.first_at, 'Mon DD') || ')'
  FROM (SELECT conversation_id, min(created_at) AS first_at FROM public.messages GROUP BY 1) AS c
ON CONFLICT (id) DO NOTHING;
-- A monthly budget 25 % above this month's cost so far, and one for gpt-4o
-- that this month's gpt-4o replies have passed 80 % of.
INSERT INTO billing.budgets (name, scope, amount, thresholds)
SELECT 'monthly', 'all', greatest(round(s.total * 1.25, 2), 0.01), '{50,80,100}'
  FROM (SELECT (billing.dashboard(1, 0) ->> 'total_cost')::numeric AS total) AS s
ON CONFLICT (name) DO NOTHING;
INSERT INTO billing.budgets (name, scope, model, amount, thresholds)
SELECT 'gpt-4o', 'model', 'gpt-4o', greatest(round(coalesce(s.cost, 0) / 0.9, 2), 0.01), '{80,100}'
  FROM (SELECT (billing.dashboard(1, 0) -> 'openai' -> 'by_model' -> 'gpt-4o' ->> 'cost')::numeric AS cost) AS s
ON CONFLICT (name) DO NOTHING;
SELECT billing.merge() AS merged \gset
