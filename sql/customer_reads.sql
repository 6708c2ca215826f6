-- Reading as one customer: with the setting billing.customer, a role that
-- reads billing's figures sees that customer's costs only, object by
-- object, including stale months and unmerged writes; without it, all.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

CREATE TABLE conversations (id text PRIMARY KEY, user_id text);
CREATE TABLE messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                       created_at timestamptz);
CREATE INDEX ON messages (created_at);
INSERT INTO conversations VALUES ('ca', 'alice'), ('cb', 'bob');
-- September 2026 (merged), October 2026 (made stale below), November 2026
-- (unmerged writes):
-- alice: ca 1000 prompt tokens of gpt-4o each month: 1000 x 2.5/1M = 0.0025
-- bob:   cb 3000 prompt tokens each month: 0.0075, and a reply with bad
--        usage in October (a problem row)
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('ca', 'assistant', 'a9', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0}', '2026-09-10'),
  ('cb', 'assistant', 'b9', '{"model": "gpt-4o", "prompt_tokens": 3000, "completion_tokens": 0}', '2026-09-11'),
  ('ca', 'assistant', 'a10', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0}', '2026-10-10'),
  ('cb', 'assistant', 'b10', '{"model": "gpt-4o", "prompt_tokens": 3000, "completion_tokens": 0}', '2026-10-11'),
  ('cb', 'assistant', 'bad', '{"prompt_tokens": "x"}', '2026-10-12');
SELECT backfilled FROM billing.track_messages('messages');
SELECT billing.track_customers('messages', 'conversations');
-- AWS: alice 100 e-mails (0.01), bob 300 (0.03), 50 of no one (0.005), in
-- October; an actual figure for S3 in September (owner's only).
SELECT billing.record_customer_usage('alice', 'ses', 100, '2026-10-05') > 0 AS recorded;
SELECT billing.record_customer_usage('bob', 'ses', 300, '2026-10-05') > 0 AS recorded;
SELECT billing.record_usage('ses', 50, '2026-10-05') > 0 AS recorded;
INSERT INTO billing.aws_actuals (month, service, cost) VALUES ('2026-09-01', 's3', 7.77);
-- Statements of September: alice 0.0025, bob 0.0075.
SELECT number, customer, total FROM billing.issue_statements('2026-09-01', true);
-- October stale (a price row from October 1st at the same price), November unmerged.
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('gpt-4o', '2026-10-01', 2.50, 10.00);
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('ca', 'assistant', 'a11', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0}', '2026-11-10'),
  ('cb', 'assistant', 'b11', '{"model": "gpt-4o", "prompt_tokens": 3000, "completion_tokens": 0}', '2026-11-11');
SELECT (SELECT count(*) FROM billing.stale_months WHERE month = '2026-10-01') > 0 AS october_stale,
       (SELECT count(*) FROM billing.usage_ledger) AS unmerged;

-- The app's role: reads billing's figures and its own tables.
CREATE ROLE regress_customer_app;
GRANT USAGE ON SCHEMA billing TO regress_customer_app;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO regress_customer_app;
GRANT SELECT ON messages, conversations TO regress_customer_app;
SET ROLE regress_customer_app;

-- Without the setting: every customer (and no one's usage).
SELECT customer, month, openai_cost, aws_cost FROM billing.customer_costs ORDER BY month, customer NULLS FIRST;

-- As alice. Every object below must show alice's figures (0.0025 a month,
-- 100 e-mails: 0.01) and nothing of bob's (cb, 0.0075, 300 e-mails, the
-- bad row) nor the owner's (the 50 e-mails, the S3 actual figure).
SET billing.customer = 'alice';
SELECT billing.current_customer();
-- customer_costs: September 0.0025, October 0.0025 + 0.01, November 0.0025.
SELECT customer, month, openai_cost, aws_cost, total_cost FROM billing.customer_costs ORDER BY month;
-- costs(): by month, by day, and asking for bob (nothing).
SELECT period, customer, openai_cost, aws_cost FROM billing.costs('2026-09-01', '2026-12-01');
SELECT period, customer, openai_cost, aws_cost FROM billing.costs('2026-09-01', '2026-12-01', 'day');
SELECT count(*) AS bob_rows FROM billing.costs('2026-09-01', '2026-12-01', customer => 'bob');
SELECT count(*) AS bob_rows FROM billing.costs('2026-09-01', '2026-12-01', 'day', customer => 'bob');
-- dashboard: its own; bob's is empty; the owner's form gives alice's.
SELECT billing.dashboard(customer => 'alice', months => 3, at => '2026-11-15') - 'period' AS alice;
SELECT billing.dashboard(customer => 'bob', months => 3, at => '2026-11-15') - 'period' AS bob;
SELECT billing.dashboard(3, 50, '2026-11-15') - 'period' AS owner_form;
SELECT billing.dashboard('2026-10-01', '2026-11-01') ->> 'total_cost' AS october;   -- 0.0025 + 0.01
-- current_period: alice's current month, whatever the date.
SELECT p.total_cost = coalesce((SELECT c.total_cost FROM billing.customer_costs AS c
                                 WHERE c.month = billing.month_of(now())), 0) AS current_period_is_alices
  FROM billing.current_period AS p;
-- history and monthly_history: alice's months.
SELECT month, source, cost, messages, emails FROM billing.history() ORDER BY month, source;
SELECT month, source, cost, month_total FROM billing.monthly_history ORDER BY month, source;
SELECT month, source, cost FROM billing.history('2026-10-01', '2026-11-01') ORDER BY source;
-- conversation_costs: ca only, in all three months.
SELECT month, conversation_id, cost FROM billing.conversation_costs ORDER BY month;
-- usage_problems: bob's bad row is not shown.
SELECT count(*) AS problems FROM billing.usage_problems;
-- statements, their lines, pending adjustments, the exports: alice's.
SELECT number, customer, total FROM billing.statements;
SELECT count(*) AS lines, sum(amount) AS amount FROM billing.statement_lines;
SELECT customer, month, amount FROM billing.pending_adjustments;
SELECT number, customer, total FROM billing.export_statements();
SELECT number, customer, line, amount FROM billing.export_statement_lines();
SELECT period, customer, total_cost FROM billing.export_costs('2026-09-01', '2026-12-01');
-- forecast reads history (alice's). savings reads the per-model rollups,
-- which are not kept per customer: as a customer it sees only that
-- customer's stale and unmerged months (October and November: 2000 tokens).
SELECT count(*) > 0 AS forecast_runs FROM billing.forecast('2026-11-15');
SELECT * FROM billing.savings('2026-09-01', '2026-12-01');
-- billing's tables: the rollups and ledger of alice's conversation only;
-- month_usage, problem rows and actual figures hidden.
SELECT DISTINCT conversation_id FROM billing.conversation_usage;
SELECT DISTINCT conversation_id FROM billing.conversation_model_usage;
SELECT DISTINCT conversation_id FROM billing.usage_ledger;
SELECT count(*) AS month_rows FROM billing.month_usage;
SELECT count(*) AS problem_rows FROM billing.problem_messages;
SELECT customer, quantity FROM billing.aws_usage;
SELECT count(*) AS actual_rows FROM billing.aws_actuals;
-- billing's inner reads: the same (_usage_by_model, like savings, gives
-- alice's October and November only: its month rollups are hidden).
SELECT DISTINCT conversation_id FROM billing._ledger_usage('-infinity', 'infinity', 'gpt-4o-mini');
SELECT DISTINCT conversation_id FROM billing._usage_by_conversation('-infinity', 'infinity');
SELECT month, sum(cost) FROM billing._usage_by_model('-infinity', 'infinity') GROUP BY month ORDER BY month;
SELECT DISTINCT conversation_id
  FROM billing.tracked_tables AS t, billing._scan_table_safely(t.id, '2026-09-01', '2026-12-01') AS s;
SELECT month, service, quantity, cost FROM billing._aws_usage_by_service('-infinity', 'infinity') ORDER BY month;
SELECT conversation_id, cost FROM billing._top_conversations('2026-10-01', '2026-11-01', 10);
SELECT DISTINCT customer FROM billing._customer_months('-infinity', 'infinity', 'bob');
SELECT DISTINCT customer FROM billing._usage_by_customer('-infinity', 'infinity', 'bob');
SELECT DISTINCT customer FROM billing._aws_by_customer('-infinity', 'infinity', NULL);
-- Budgets and alerts: alice's own only. The whole app's budget and bob's
-- ($0.001 each) fired alerts for November (0.0025 + 0.0075 = 0.01 spent,
-- and bob's 0.0075); alice's ($1) fired none: as alice, nothing of those.
RESET ROLE;
RESET billing.customer;
INSERT INTO billing.budgets (name, amount) VALUES ('everything', 0.001);
INSERT INTO billing.budgets (name, scope, customer, amount) VALUES ('alice-budget', 'customer', 'alice', 1),
                                                                 ('bob-budget', 'customer', 'bob', 0.001);
SELECT billing.check_alerts('2026-11-15') > 0 AS fired;
SELECT DISTINCT budget FROM billing.alerts ORDER BY 1;
SET ROLE regress_customer_app;
SET billing.customer = 'alice';
SELECT name, customer FROM billing.budgets;
SELECT count(*) AS alerts FROM billing.alerts;
SELECT budget, spent FROM billing._budget_status('2026-11-01', '2026-11-15');
RESET ROLE;
DELETE FROM billing.alerts;
DELETE FROM billing.budgets;
-- Statements are not issued as a customer.
RESET ROLE;
SET billing.customer = 'alice';
SELECT * FROM billing.issue_statements('2026-10-01', true);

-- As bob: his own (3000 tokens a month: 0.0075; 300 e-mails: 0.03).
SET ROLE regress_customer_app;
SET billing.customer = 'bob';
SELECT customer, month, openai_cost, aws_cost, total_cost FROM billing.customer_costs ORDER BY month;
SELECT billing.dashboard(3, 0, '2026-11-15') -> 'history' AS bob_history;
SELECT number, customer, total FROM billing.statements;
-- As a customer no conversation belongs to: nothing at all.
SET billing.customer = 'nobody';
SELECT count(*) AS rows FROM billing.customer_costs;
SELECT billing.dashboard(1, 0, '2026-11-15') ->> 'total_cost' AS total;
SELECT count(*) AS rows FROM billing.conversation_costs;
SELECT count(*) AS rows FROM billing.statements;
-- The setting reset: everything again.
RESET billing.customer;
SELECT customer, month, total_cost FROM billing.customer_costs ORDER BY month, customer NULLS FIRST;
RESET ROLE;

-- Frozen prompt estimates (estimated_prompts, by message id) are hidden
-- from a customer's reader, whose scans of the table still read those of
-- its own replies. In August alice and bob each ask 8 characters (2
-- tokens) and get a 12-character reply without usage (3 tokens), its prompt
-- frozen at 2; alice's question is then edited to 40 characters (10
-- tokens), and her frozen 2 stays. At gpt-4o-mini, the estimate model:
-- 2 x 0.15/1M + 3 x 0.6/1M = 0.0000003 + 0.0000018 = 0.0000021 (0.0000033
-- if estimated again).
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('ca', 'user', 'abcdefgh', '{}', '2026-08-10 10:00'),
  ('ca', 'assistant', 'twelve chars', '{}', '2026-08-10 10:01'),
  ('cb', 'user', 'abcdefgh', '{}', '2026-08-11 10:00'),
  ('cb', 'assistant', 'twelve chars', '{}', '2026-08-11 10:01');
UPDATE messages SET content = repeat('x', 40) WHERE conversation_id = 'ca' AND created_at = '2026-08-10 10:00';
SELECT count(*) AS estimate_rows FROM billing.estimated_prompts;
SET ROLE regress_customer_app;
SET billing.customer = 'alice';
SELECT count(*) AS estimate_rows FROM billing.estimated_prompts;
SELECT s.conversation_id, s.estimated_prompt, s.estimated_completion, s.estimated_cost
  FROM billing.tracked_tables AS t, billing._scan_table_safely(t.id, '2026-08-01', '2026-09-01') AS s;
RESET billing.customer;
SELECT count(*) AS estimate_rows FROM billing.estimated_prompts;
RESET ROLE;

REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM regress_customer_app;
REVOKE ALL ON SCHEMA billing FROM regress_customer_app;
REVOKE ALL ON messages, conversations FROM regress_customer_app;
DROP ROLE regress_customer_app;
SELECT billing.untrack_messages('messages');
DROP TABLE messages, conversations;
DELETE FROM billing.aws_usage;
DELETE FROM billing.aws_actuals;
DELETE FROM billing.model_prices WHERE model = 'gpt-4o' AND effective_from = '2026-10-01';
-- Issued statements cannot be deleted: the next tests start from a new install.
DROP EXTENSION billing;
CREATE EXTENSION billing;
