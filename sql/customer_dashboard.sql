-- One customer's dashboard is the owner's payload for that customer:
-- by_model (per model, exact: merged, unmerged, estimated, unpriced,
-- total-only and problem rows), budgets (the customer's own and its
-- conversations'), the same for the owner and for the customer reading as
-- itself; the owner's top customers and customer_costs with AWS usage of
-- many customers.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

CREATE TABLE cd_conversations (id text PRIMARY KEY, user_id text);
INSERT INTO cd_conversations VALUES ('c1', 'alice'), ('c2', 'alice'), ('c3', 'bob'), ('c4', NULL);
CREATE TABLE cd_messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                       created_at timestamptz);
CREATE INDEX ON cd_messages (created_at);
-- Prices (catalog): gpt-4o $2.50 in / $10.00 out per 1M tokens,
-- gpt-4o-mini $0.15 / $0.60 (also the estimate model); gpt-9 has none.
INSERT INTO cd_messages (conversation_id, role, content, data, created_at) VALUES
  -- alice, c1: 1000 x 2.5/1M + 100 x 10/1M = 0.0025 + 0.001 = 0.0035
  ('c1', 'assistant', 'a', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 100}', '2025-10-05 12:00'),
  -- alice, c1: 2000 x 0.15/1M + 1000 x 0.6/1M = 0.0003 + 0.0006 = 0.0009
  ('c1', 'assistant', 'b', '{"model": "gpt-4o-mini", "prompt_tokens": 2000, "completion_tokens": 1000}', '2025-10-06 12:00'),
  -- alice, c2: an unknown model, 500 + 50 tokens unpriced
  ('c2', 'assistant', 'zzzz', '{"model": "gpt-9", "prompt_tokens": 500, "completion_tokens": 50}', '2025-10-07 12:00'),
  -- alice, c2: a user message
  ('c2', 'user', 'hello world!', '{}', '2025-10-08 12:00'),
  -- alice, c2: a reply without usage, estimated: completion ceil(8 / 4) = 2,
  -- prompt its conversation so far: ceil(4 / 4) + ceil(12 / 4) = 1 + 3 = 4;
  -- 4 x 0.15/1M + 2 x 0.6/1M = 0.0000006 + 0.0000012 = 0.0000018
  ('c2', 'assistant', 'abcdefgh', '{"model": "gpt-4o-mini"}', '2025-10-09 12:00'),
  -- alice, c2: usage billing cannot read (a problem row, under "(none)")
  ('c2', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": "x"}', '2025-10-10 12:00'),
  -- alice, c2: a total only: 300 tokens counted, never priced
  ('c2', 'assistant', 'x', '{"model": "gpt-4o", "tokens": 300}', '2025-10-11 12:00'),
  -- bob, c3: 4000 x 2.5/1M = 0.01
  ('c3', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 4000, "completion_tokens": 0}', '2025-10-12 12:00'),
  -- no one's, c4: 8000 x 2.5/1M = 0.02
  ('c4', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 8000, "completion_tokens": 0}', '2025-10-13 12:00');
SELECT backfilled FROM billing.track_messages('cd_messages');
SELECT billing.track_customers('cd_messages', 'cd_conversations');
-- Unmerged writes: October (alice, c1: 400 x 2.5/1M = 0.001) and
-- November (alice, c1: 2000 x 2.5/1M + 200 x 10/1M = 0.005 + 0.002 = 0.007;
-- bob, c3: 1000 x 0.15/1M = 0.00015).
INSERT INTO cd_messages (conversation_id, role, content, data, created_at) VALUES
  ('c1', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 400, "completion_tokens": 0}', '2025-10-20 12:00'),
  ('c1', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 2000, "completion_tokens": 200}', '2025-11-03 12:00'),
  ('c3', 'assistant', 'x', '{"model": "gpt-4o-mini", "prompt_tokens": 1000, "completion_tokens": 0}', '2025-11-04 12:00');
SELECT count(*) AS unmerged FROM billing.usage_ledger;
-- AWS: alice 1000 e-mails in October (1000 x $0.0001 = 0.10), 500 of no one (0.05).
SELECT billing.record_customer_usage('alice', 'ses', 1000, '2025-10-15') > 0 AS recorded;
SELECT billing.record_usage('ses', 500, '2025-10-15') > 0 AS recorded;
-- Budgets: alice's and bob's own, conversations c1 (alice's) and c3 (bob's), and all.
INSERT INTO billing.budgets (name, scope, customer, conversation_id, amount) VALUES
  ('alice-month', 'customer', 'alice', NULL, 1), ('bob-month', 'customer', 'bob', NULL, 1),
  ('c1-month', 'conversation', NULL, 'c1', 0.01), ('c3-month', 'conversation', NULL, 'c3', 0.01),
  ('everything', 'all', NULL, NULL, 10);

-- alice's October, by model:
--   gpt-4o: 0.0035 + 0 (total only) + 0.001 (unmerged) = 0.0045 in 3 messages;
--           tokens 1100 + 300 + 400 = 1800, of which 300 unpriced
--   gpt-4o-mini: 0.0009 + 0.0000018 = 0.0009018 in 2 messages; tokens 3000 + 6 = 3006
--   gpt-9: cost null (no price at all), 550 tokens, all unpriced, 1 message
--   (none): the user message and the problem row: 2 messages, 0 tokens
-- The card: cost 0.0045 + 0.0009018 = 0.0054018, estimated 0.0000018;
-- tokens 1800 + 3006 + 550 = 5356 = prompt 1000 + 2000 + 500 + 400 = 3900
-- + completion 100 + 1000 + 50 = 1150 + estimated 6 + total-only 300;
-- unpriced 300 + 550 = 850; 8 messages, 1 problem.
SELECT jsonb_pretty(billing.dashboard(customer => 'alice', months => 1, at => '2025-10-15') -> 'openai') AS alice_october;
-- The priced part per model is billing.openai_cost over alice's October
-- messages that billing can read and price (the estimate apart: 0.0000018
-- of gpt-4o-mini).
SELECT m.data ->> 'model' AS model, billing.openai_cost(m.data, m.created_at) AS openai_cost
  FROM cd_messages AS m JOIN cd_conversations AS c ON c.id = m.conversation_id
 WHERE c.user_id = 'alice' AND m.created_at >= '2025-10-01' AND m.created_at < '2025-11-01'
   AND billing.usage_problem(m.data) IS NULL AND m.data ->> 'model' <> 'gpt-9' AND m.data ? 'prompt_tokens'
 GROUP BY 1 ORDER BY 1;
-- The same payload keys as the owner's (plus "customer").
SELECT array(SELECT jsonb_object_keys(billing.dashboard(customer => 'alice', at => '2025-10-15')) ORDER BY 1) AS customer_keys,
       array(SELECT jsonb_object_keys(billing.dashboard(6, 50, '2025-10-15')) ORDER BY 1) AS owner_keys;
-- Budgets: alice's own (0.0054018 + 0.10 of AWS = 0.1054018) and c1's
-- (0.0035 + 0.0009 + 0.001 = 0.0054); not bob's, c3's nor "everything".
SELECT b ->> 'budget' AS budget, b ->> 'scope' AS scope, (b ->> 'spent')::numeric AS spent, (b ->> 'amount')::numeric AS amount
  FROM jsonb_array_elements(billing.dashboard(customer => 'alice', at => '2025-10-15') -> 'budgets') AS b;
-- bob's November: gpt-4o-mini 0.00015 (unmerged); his budgets: his own and c3's.
SELECT billing.dashboard(customer => 'bob', months => 1, at => '2025-11-15') -> 'openai' -> 'by_model' AS bob_november;
SELECT b ->> 'budget' AS budget, (b ->> 'spent')::numeric AS spent
  FROM jsonb_array_elements(billing.dashboard(customer => 'bob', at => '2025-11-15') -> 'budgets') AS b;
-- A customer no budget names (neither it nor one of its conversations):
-- no budgets, while five exist.
SELECT billing.dashboard(customer => 'nobody', at => '2025-10-15') -> 'budgets' AS nobody_budgets;
-- Without her own budget, alice still has c1's (0.0054, as above).
BEGIN;
DELETE FROM billing.budgets WHERE name = 'alice-month';
SELECT b ->> 'budget' AS budget, (b ->> 'spent')::numeric AS spent
  FROM jsonb_array_elements(billing.dashboard(customer => 'alice', at => '2025-10-15') -> 'budgets') AS b;
ROLLBACK;
-- A period that is not whole months (read from the table): alice's
-- October 6th to 9th: gpt-4o-mini 0.0009 + 0.0000018, gpt-9, the user message.
SELECT billing.dashboard('2025-10-06', '2025-10-10', 'alice', 0, 1) -> 'openai' -> 'by_model' AS alice_days;
-- The history: alice's October 0.0054018 + 0.10, November 0.007.
SELECT billing.dashboard(customer => 'alice', months => 2, at => '2025-11-15') -> 'history' AS alice_history;

-- After a merge (the per-model rollups of conversations hold it all): the
-- same payloads.
CREATE TEMP TABLE before_merge AS
SELECT c, billing.dashboard(customer => c, months => 2, at => '2025-11-15') - 'budgets' AS d
  FROM unnest(ARRAY['alice', 'bob', 'nobody']) AS c;
SELECT billing.merge() > 0 AS merged;
SELECT count(*) AS unmerged FROM billing.usage_ledger;
SELECT c, d = billing.dashboard(customer => c, months => 2, at => '2025-11-15') - 'budgets' AS same
  FROM before_merge ORDER BY c;
-- alice's October by model from the rollups themselves.
SELECT r.model, sum(r.messages) AS messages, sum(r.cost + r.estimated_cost) AS cost, sum(r.unpriced_tokens) AS unpriced
  FROM billing.conversation_model_usage AS r WHERE r.month = '2025-10-01' AND r.conversation_id IN ('c1', 'c2')
 GROUP BY r.model ORDER BY r.model;

-- The owner's top customers of October (rollups probed per table):
-- alice 0.0054018 + 0.10 = 0.1054018, bob 0.01; tokens there are prompt +
-- completion + estimated: alice 3900 + 1150 + 6 = 5056.
SELECT jsonb_pretty(billing.dashboard(1, 0, '2025-10-15') -> 'customers') AS top_customers;
-- customer_costs (OpenAI and AWS joined per customer and month):
-- alice October 0.0054018 + 0.10, November 0.007; bob 0.01, 0.00015;
-- no one's October 0.02 + 0.05.
SELECT customer, month, openai_cost, aws_cost, total_cost FROM billing.customer_costs
 WHERE month IN ('2025-10-01', '2025-11-01') ORDER BY month, customer NULLS FIRST;

-- Reading as alice (the app's role, billing.customer): the same payload as
-- the owner's billing.dashboard(customer => 'alice'), budgets included;
-- bob's asked for: nothing of his.
CREATE ROLE regress_cd_app;
GRANT USAGE ON SCHEMA billing TO regress_cd_app;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO regress_cd_app;
GRANT SELECT ON cd_messages, cd_conversations TO regress_cd_app;
BEGIN;
CREATE TEMP TABLE owner_view AS SELECT billing.dashboard(customer => 'alice', months => 2, at => '2025-10-15') AS d;
GRANT SELECT ON owner_view TO regress_cd_app;
SET LOCAL ROLE regress_cd_app;
SET LOCAL billing.customer = 'alice';
SELECT d = billing.dashboard(2, 50, '2025-10-15') AS same_as_owner FROM owner_view;
SELECT DISTINCT conversation_id FROM billing.conversation_model_usage ORDER BY 1;
SELECT billing.dashboard(customer => 'bob', months => 1, at => '2025-11-15') -> 'openai' -> 'by_model' AS bob_by_model,
       billing.dashboard(customer => 'bob', months => 1, at => '2025-11-15') -> 'budgets' AS bob_budgets;
COMMIT;

DROP TABLE owner_view;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM regress_cd_app;
REVOKE ALL ON SCHEMA billing FROM regress_cd_app;
REVOKE ALL ON cd_messages, cd_conversations FROM regress_cd_app;
DROP ROLE regress_cd_app;
DELETE FROM billing.budgets;
SELECT billing.untrack_messages('cd_messages');
DELETE FROM billing.aws_usage WHERE at >= '2025-10-01' AND at < '2025-12-01';
DROP TABLE cd_messages, cd_conversations;
