-- Budgets, their status, billing.allowance() and alerts (README "Budgets
-- and alerts"). Prices: gpt-4o and gpt-4o-2024-08-06 $2.50 / $10.00 per 1M
-- prompt / completion tokens, gpt-4o-mini $0.15 / $0.60 (estimate_model),
-- SES $0.0001 per e-mail. The fixed-date part uses November 2024, a month
-- that is neither the current nor the previous month at any date the
-- tests run at (so billing.merge(), which checks those, fires nothing of it).
SET timezone = 'UTC';
-- Nothing left by earlier tests that budgets would count.
SELECT (SELECT count(*) FROM billing.tracked_tables) AS tracked, (SELECT count(*) FROM billing.aws_usage) AS aws,
       (SELECT count(*) FROM billing.aws_actuals) AS actuals, (SELECT count(*) FROM billing.aws_usage_patterns) AS patterns;

-- === Budgets as written ===================================================
-- A budget over everything, with the default thresholds.
INSERT INTO billing.budgets (name, amount) VALUES ('everything', 100);
SELECT name, scope, model, conversation_id, amount, thresholds, blocks FROM billing.budgets;
-- Scope is trimmed and lower-cased, thresholds sorted.
INSERT INTO billing.budgets (name, scope, amount, thresholds) VALUES ('tidy', ' OpenAI ', 5, '{100, 25.5}');
SELECT name, scope, thresholds FROM billing.budgets WHERE name = 'tidy';
-- Each bad field is refused by name.
INSERT INTO billing.budgets (name, amount) VALUES ('zero', 0);
INSERT INTO billing.budgets (name, amount) VALUES ('negative', -5);
INSERT INTO billing.budgets (name, amount) VALUES ('nan', 'NaN');
INSERT INTO billing.budgets (name, amount) VALUES ('infinite', 'Infinity');
INSERT INTO billing.budgets (name) VALUES ('no amount');
INSERT INTO billing.budgets (name, amount) VALUES ('  ', 1);
INSERT INTO billing.budgets (name, amount) VALUES (repeat('x', 201), 1);
INSERT INTO billing.budgets (name, scope, amount) VALUES ('odd', 'everything', 1);
INSERT INTO billing.budgets (name, scope, amount) VALUES ('who', 'customer', 1);
INSERT INTO billing.budgets (name, scope, customer, amount) VALUES ('customer of all', 'all', 'u1', 1);
INSERT INTO billing.budgets (name, scope, amount) VALUES ('null scope', NULL, 1);
INSERT INTO billing.budgets (name, amount, thresholds) VALUES ('twice', 1, '{50,80,50}');
INSERT INTO billing.budgets (name, amount, thresholds) VALUES ('low', 1, '{0,50}');
INSERT INTO billing.budgets (name, amount, thresholds) VALUES ('high', 1, '{50,1001}');
INSERT INTO billing.budgets (name, amount, thresholds) VALUES ('hole', 1, '{50,NULL}');
INSERT INTO billing.budgets (name, amount, thresholds) VALUES ('empty', 1, '{}');
INSERT INTO billing.budgets (name, amount, thresholds) VALUES ('none', 1, NULL);
INSERT INTO billing.budgets (name, amount, thresholds) VALUES ('square', 1, '{{50,80},{90,100}}');
INSERT INTO billing.budgets (name, scope, amount) VALUES ('which model', 'model', 1);
INSERT INTO billing.budgets (name, model, amount) VALUES ('model of all', 'gpt-4o', 1);
INSERT INTO billing.budgets (name, scope, amount) VALUES ('which conversation', 'conversation', 1);
INSERT INTO billing.budgets (name, scope, conversation_id, amount) VALUES ('conv of openai', 'openai', 'a', 1);
-- Updates are checked too.
UPDATE billing.budgets SET amount = 0 WHERE name = 'everything';
UPDATE billing.budgets SET thresholds = '{80,80}' WHERE name = 'everything';
-- A model no price names is kept, with a warning (it covers nothing).
INSERT INTO billing.budgets (name, scope, model, amount) VALUES ('unknown model', 'model', 'gpt-99', 1);
-- Not in a restore (pg_dump's scripts and pg_restore set
-- check_function_bodies off), which loads budgets before the user's
-- prices: the warning would be false by its end.
SET check_function_bodies = off;
INSERT INTO billing.budgets (name, scope, model, amount) VALUES ('restored model', 'model', 'ft:gpt-4o-mini:acme', 1);
RESET check_function_bodies;
DELETE FROM billing.budgets;

-- === What a budget has spent: November 2024 ==============================
CREATE TABLE bud_messages (id bigint PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                           created_at timestamptz);
CREATE INDEX ON bud_messages (created_at);
-- Before tracking (taken in by the backfill, so read from the rollups):
INSERT INTO bud_messages VALUES
  -- 100 x 2.50/1M + 50 x 10/1M = 0.00025 + 0.0005 = 0.00075
  (1, 'a', 'assistant', 'one', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2024-11-02 10:00+00'),
  -- priced (and budgeted) as gpt-4o-mini: 1M x 0.15/1M + 1M x 0.60/1M = 0.75
  (2, 'a', 'assistant', 'two', '{"model": "gpt-4o-mini-2024-07-18", "prompt_tokens": 1000000, "completion_tokens": 1000000}', '2024-11-03 10:00+00'),
  -- October, the month's last microsecond: 1M x 2.50/1M = 2.50
  (5, 'z', 'assistant', 'five', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}', '2024-10-31 23:59:59.999999+00');
SELECT tracked, messages FROM billing.track_messages('bud_messages');
-- After tracking (in the ledger until a merge):
INSERT INTO bud_messages VALUES
  -- gpt-4o-2024-08-06 has prices of its own: 1000 x 2.50/1M = 0.0025
  (3, 'b', 'assistant', 'three', '{"model": "gpt-4o-2024-08-06", "prompt_tokens": 1000, "completion_tokens": 0}', '2024-11-04 10:00+00'),
  -- no usage: estimated as gpt-4o-mini, ceil(12 / 4) = 3 completion tokens x 0.60/1M = 0.0000018
  (4, 'c', 'assistant', 'twelve chars', '{}', '2024-11-05 10:00+00'),
  -- December: 1000 x 10/1M = 0.01
  (6, 'z', 'assistant', 'six', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 1000}', '2024-12-01 00:00+00');
-- AWS: 1000 e-mails x 0.0001 = 0.10, S3's actual figure 0.42 (November);
-- 500 e-mails in December = 0.05.
SELECT billing.record_usage('ses', 1000, '2024-11-05') > 0 AS recorded, billing.record_usage('ses', 500, '2024-12-03') > 0 AS recorded;
INSERT INTO billing.aws_actuals (month, service, cost) VALUES ('2024-11-01', 's3', 0.42);
-- November: OpenAI 0.00075 + 0.75 + 0.0025 + 0.0000018 = 0.7532518; AWS
-- 0.10 + 0.42 = 0.52; all 1.2732518. Models: gpt-4o 0.00075, gpt-4o-mini
-- 0.7500018 (the estimate included), gpt-4o-2024-08-06 0.0025.
-- Conversations: a 0.75075, c 0.0000018.
INSERT INTO billing.budgets (name, scope, model, conversation_id, amount, thresholds, blocks, created_at) VALUES
  ('all',    'all',          NULL,          NULL,  2,     '{50,80,100}', false, '2024-11-01'),
  ('openai', 'openai',       NULL,          NULL,  0.75,  '{100}',       false, '2024-11-01'),
  ('aws',    'aws',          NULL,          NULL,  1,     '{50,80,100}', false, '2024-11-01'),
  ('mini',   'model',        'gpt-4o-mini', NULL,  10,    '{50,80,100}', false, '2024-11-01'),
  ('4o',     'model',        'gpt-4o',      NULL,  0.001, '{50,80,100}', false, '2024-11-01'),
  ('conv-a', 'conversation', NULL,          'a',   0.75,  '{50,80,100}', true,  '2024-11-01'),
  ('conv-z', 'conversation', NULL,          'zzz', 1,     '{50,80,100}', false, '2024-11-01');
-- The status on 16 November 00:00 (15 of 30 days gone: the forecast is
-- twice the spend, to 6 decimals). State: warning from the lowest
-- threshold, exceeded from 100%.
CREATE TEMP TABLE bud_expected (budget text, spent numeric, remaining numeric, percent numeric, forecast numeric, state text);
INSERT INTO bud_expected VALUES
  ('all',    1.2732518, 0.7267482,  63.66,  2.546504, 'warning'),   -- 1.2732518 / 2 = 63.66%
  ('openai', 0.7532518, -0.0032518, 100.43, 1.506504, 'exceeded'),  -- 0.7532518 / 0.75 = 100.4336%
  ('aws',    0.52,      0.48,       52.00,  1.04,     'warning'),
  ('mini',   0.7500018, 9.2499982,  7.50,   1.500004, 'ok'),        -- 1.5000036 rounds to 1.500004
  ('4o',     0.00075,   0.00025,    75.00,  0.0015,   'warning'),
  ('conv-a', 0.75075,   -0.00075,   100.10, 1.5015,   'exceeded'),
  ('conv-z', 0,         1,          0.00,   0,        'ok');
SELECT budget, scope, period, amount, spent, remaining, percent, forecast, state, blocks
  FROM billing._budget_status('2024-11-01', '2024-11-16 00:00+00') ORDER BY budget;
-- (the check: one row per budget that differs from the hand-computed figures; none)
CREATE TEMP VIEW bud_differences AS
SELECT 'status' AS side, s.budget, s.spent, s.remaining, s.percent, s.forecast, s.state
  FROM billing._budget_status('2024-11-01', '2024-11-16 00:00+00') AS s
EXCEPT SELECT 'status', * FROM bud_expected
UNION ALL
SELECT 'expected', * FROM bud_expected
EXCEPT SELECT 'expected', s.budget, s.spent, s.remaining, s.percent, s.forecast, s.state
  FROM billing._budget_status('2024-11-01', '2024-11-16 00:00+00') AS s;
SELECT * FROM bud_differences;
-- The spent figures are the views' own: the month's total in the history.
SELECT (SELECT sum(cost) FROM billing.monthly_history WHERE month = '2024-11-01') = 1.2732518 AS history_total,
       (SELECT sum(cost) FROM billing.conversation_costs WHERE month = '2024-11-01' AND conversation_id = 'a') = 0.75075 AS conversation_a;
-- The same after a merge (the rollups hold everything; the month read
-- from the table while stale is shown with the price change below).
SELECT billing.merge() > 0 AS merged;
SELECT count(*) AS ledger_rows FROM billing.usage_ledger;
SELECT * FROM bud_differences;
-- Once the month is over, the forecast is what was spent.
SELECT budget, spent = forecast AS final FROM billing._budget_status('2024-11-01', '2024-12-05') ORDER BY budget;
-- December is another period: 0.01 of gpt-4o, 0.05 of SES (all 0.06).
SELECT budget, spent, state FROM billing._budget_status('2024-12-01', '2024-12-10') ORDER BY budget;
-- November had no whole month of history (October, the first month with
-- any cost, is left out): its forecast was the run rate (above).
SELECT DISTINCT forecast_method FROM billing._budget_status('2024-11-01', '2024-11-16 00:00+00');
-- December's forecast on the 16th 00:00 is the rate blend (billing.forecast's
-- method) over November (30 days): 15 of 31 days gone, f = 15/31, 16 days
-- left: spent + 16 x (spent / 31 + (16/31) x november / 30)
--      = spent x 47/31 + november x 256/930:
--   4o      0.01 x 47/31 + 0.00075   x 256/930 = 0.015161290 + 0.000206452 = 0.015368
--   all     0.06 x 47/31 + 1.2732518 x 256/930 = 0.090967742 + 0.350486517 = 0.441454
--   aws     0.05 x 47/31 + 0.52      x 256/930 = 0.075806452 + 0.143139785 = 0.218946
--   conv-a  0            + 0.75075   x 256/930 = 0.206658
--   conv-z  0            + 0                   = 0
--   mini    0            + 0.7500018 x 256/930 = 0.206452
--   openai  0.01 x 47/31 + 0.7532518 x 256/930 = 0.015161290 + 0.207346732 = 0.222508
SELECT budget, spent, forecast, forecast_method FROM billing._budget_status('2024-12-01', '2024-12-16 00:00+00') ORDER BY budget;

-- === Alerts ===============================================================
-- On 20 November: all 1.27 of 2 reaches 50% (1.00); openai 100%; aws 50%;
-- 4o 0.00075 of 0.001 reaches 50% (0.0005), not 80% (0.0008); conv-a all
-- three. 7 alerts.
-- A role granted SELECT on billing.alerts alone reads it (its policy for
-- readers as one customer needs no other table).
CREATE ROLE regress_alerts_reader;
GRANT USAGE ON SCHEMA billing TO regress_alerts_reader;
GRANT SELECT ON billing.alerts TO regress_alerts_reader;
SET ROLE regress_alerts_reader;
SELECT count(*) >= 0 AS reads_alerts FROM billing.alerts;
RESET ROLE;
REVOKE ALL ON billing.alerts FROM regress_alerts_reader;
REVOKE ALL ON SCHEMA billing FROM regress_alerts_reader;
DROP ROLE regress_alerts_reader;
-- An infinite time has no month: refused, as forecast() refuses it.
SELECT billing.check_alerts('infinity');
SELECT billing.check_alerts('2024-11-20');
SELECT budget, threshold, period, spent, amount, delivered_at, attempts, last_error
  FROM billing.alerts ORDER BY budget, threshold;
-- Exactly once: checking again fires nothing.
SELECT billing.check_alerts('2024-11-20');
-- The NOTIFY payload of an alert (its id apart).
SELECT billing._alert_payload(a)::jsonb - 'id' AS payload FROM billing.alerts AS a WHERE budget = 'conv-a' AND threshold = 80;
-- Spend that falls back un-fires nothing: without message 2 (0.75) every
-- figure drops, the alerts stay; putting it back fires nothing again.
DELETE FROM bud_messages WHERE id = 2;
SELECT budget, spent FROM billing._budget_status('2024-11-01', '2024-11-16') WHERE budget IN ('all', 'conv-a') ORDER BY budget;
SELECT billing.check_alerts('2024-11-20') AS fired, (SELECT count(*) FROM billing.alerts) AS alerts;
INSERT INTO bud_messages VALUES
  (2, 'a', 'assistant', 'two', '{"model": "gpt-4o-mini-2024-07-18", "prompt_tokens": 1000000, "completion_tokens": 1000000}', '2024-11-03 10:00+00');
SELECT billing.check_alerts('2024-11-20') AS fired, (SELECT count(*) FROM billing.alerts) AS alerts;
-- A price change moves spend: gpt-4o-mini at 0.30 / 1.20 from 1 November
-- doubles message 2 (1.50) and the estimate (0.0000036): all = 0.00075 +
-- 1.50 + 0.0025 + 0.0000036 + 0.52 = 2.0232536, past 80% (1.60) and 100%.
-- Read from the table (the month is stale) before any merge.
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m, note)
VALUES ('gpt-4o-mini', '2024-11-01', 0.30, 1.20, 'budget test');
SELECT count(*) > 0 AS stale FROM billing.stale_months;
SELECT budget, spent FROM billing._budget_status('2024-11-01', '2024-11-16') WHERE budget = 'all';
SELECT billing.check_alerts('2024-11-20');
SELECT budget, threshold, spent FROM billing.alerts WHERE budget = 'all' ORDER BY threshold;
-- A rolled-back check fires nothing; the next one fires, once. Message 7:
-- 1M gpt-4o completion tokens = 10.00 takes 4o past 80% and 100%.
INSERT INTO bud_messages VALUES
  (7, 'd', 'assistant', 'seven', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 1000000}', '2024-11-06 10:00+00');
BEGIN;
SELECT billing.check_alerts('2024-11-20');
ROLLBACK;
SELECT count(*) AS alerts_of_4o FROM billing.alerts WHERE budget = '4o';
SELECT billing.check_alerts('2024-11-20');
SELECT billing.check_alerts('2024-11-20');
SELECT budget, threshold, spent FROM billing.alerts WHERE budget = '4o' ORDER BY threshold;
-- A write rolled back never fires: a 2 USD reply in conversation zzz.
BEGIN;
INSERT INTO bud_messages VALUES
  (8, 'zzz', 'assistant', 'eight', '{"model": "gpt-4o", "prompt_tokens": 800000, "completion_tokens": 0}', '2024-11-07 10:00+00');
ROLLBACK;
SELECT billing.check_alerts('2024-11-20') AS fired, (SELECT count(*) FROM billing.alerts WHERE budget = 'conv-z') AS conv_z;
-- A new period starts afresh: on 10 December, 4o's 0.01 of December passes
-- all three thresholds again, for period 2024-12-01 (November is checked
-- too, as the previous month, and has nothing left to fire).
SELECT billing.check_alerts('2024-12-10');
SELECT budget, threshold, period, spent FROM billing.alerts WHERE period = '2024-12-01' ORDER BY budget, threshold;
-- Late figures for the previous month fire there, for a budget that
-- existed then: October's actual SES figure 0.60 takes budget "late"
-- (AWS, 0.50, created 15 October) past all three thresholds for October;
-- its November (0.52) too.
INSERT INTO billing.budgets (name, scope, amount, created_at) VALUES ('late', 'aws', 0.5, '2024-10-15');
INSERT INTO billing.aws_actuals (month, service, cost) VALUES ('2024-10-01', 'ses', 0.60);
SELECT billing.check_alerts('2024-11-20');
SELECT budget, threshold, period, spent FROM billing.alerts WHERE budget = 'late' ORDER BY period, threshold;
-- A budget whose amount changes fires its thresholds again, of the new
-- amount. Conversation d holds message 7 (10.00): at 10, all three fire;
-- raised to 16, 50% (8) fires at once, 80% (12.8) once message 9 (gpt-4o
-- 500k completion = 5.00) takes d to 15.00, 100% (16) not; back at 10,
-- nothing fires twice.
INSERT INTO billing.budgets (name, scope, conversation_id, amount, thresholds)
VALUES ('conv-d', 'conversation', 'd', 10, '{50,80,100}');
SELECT billing.check_alerts('2024-11-20') AS fired;
UPDATE billing.budgets SET amount = 16 WHERE name = 'conv-d';
SELECT billing.check_alerts('2024-11-20') AS fired;
INSERT INTO bud_messages VALUES
  (9, 'd', 'assistant', 'nine', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 500000}', '2024-11-07 10:00+00');
SELECT billing.check_alerts('2024-11-20') AS fired;
UPDATE billing.budgets SET amount = 10 WHERE name = 'conv-d';
SELECT billing.check_alerts('2024-11-20') AS fired;
-- In December, November is checked as the month before: conv-d raised to
-- 20 (and existing since October) does not fire November's 50% again at
-- the new amount (10 <= 15 spent): November was alerted at the amounts it
-- had. (Before, 1 fired.)
UPDATE billing.budgets SET amount = 20, created_at = '2024-10-01' WHERE name = 'conv-d';
SELECT billing.check_alerts('2024-12-02') AS fired;
SELECT threshold, amount, spent FROM billing.alerts WHERE budget = 'conv-d' ORDER BY amount, threshold;
DELETE FROM billing.budgets WHERE name = 'conv-d';
DELETE FROM billing.alerts WHERE budget = 'conv-d';
DELETE FROM bud_messages WHERE id = 9;
-- merge() checks alerts last (this month and the last: nothing there).
SELECT billing.merge() >= 0 AS merged, (SELECT count(*) FROM billing.alerts) AS alerts;
-- Alerts that cannot be checked (here a function gone missing) make
-- merge() warn, not fail.
ALTER FUNCTION billing._budget_spent(date) RENAME TO _budget_spent_away;
SELECT billing.merge() >= 0 AS merged;
ALTER FUNCTION billing._budget_spent_away(date) RENAME TO _budget_spent;
DELETE FROM billing.budgets WHERE name = 'late';

-- === The dashboard ========================================================
SELECT jsonb_pretty(d -> 'budgets' -> 0) AS first_budget, jsonb_array_length(d -> 'budgets') AS budgets
  FROM billing.dashboard('2024-11-01', '2024-12-01', 0, 1) AS d;

DELETE FROM billing.model_prices WHERE note = 'budget test';
DELETE FROM billing.budgets;
DELETE FROM billing.alerts;
DELETE FROM billing.aws_actuals;
DELETE FROM billing.aws_usage;
SELECT billing.untrack_messages('bud_messages');
DROP TABLE bud_messages;
SELECT jsonb_array_length(billing.dashboard() -> 'budgets') AS no_budgets;

-- === billing.allowance(): this month, in one transaction (one now()) =====
BEGIN;
CREATE TABLE now_messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                           created_at timestamptz DEFAULT now());
SELECT tracked FROM billing.track_messages('now_messages');
-- x: gpt-4o 100 + 50 = 0.00075; y: gpt-4o-mini 1000 + 1000 = 0.00015 + 0.0006 = 0.00075.
INSERT INTO now_messages (conversation_id, role, content, data) VALUES
  ('x', 'assistant', 'x1', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}'),
  ('y', 'assistant', 'y1', '{"model": "gpt-4o-mini", "prompt_tokens": 1000, "completion_tokens": 1000}');
-- OpenAI 0.0015 this month, no AWS.
INSERT INTO billing.budgets (name, scope, model, conversation_id, amount, blocks) VALUES
  ('all',    'all',          NULL,     NULL, 1,     false),
  ('openai', 'openai',       NULL,     NULL, 0.002, true),
  ('x',      'conversation', NULL,     'x',  0.0005, true),
  ('4o',     'model',        'gpt-4o', NULL, 0.01,  false),
  ('aws',    'aws',          NULL,     NULL, 0.0001, true);
-- For conversation x on gpt-4o: all 1 - 0.0015 = 0.9985, openai 0.002 -
-- 0.0015 = 0.0005, x 0.0005 - 0.00075 = -0.00025 (blocking: refused), 4o
-- 0.01 - 0.00075 = 0.00925; the AWS budget does not apply to OpenAI.
SELECT allowed, remaining, budget, blocked_by, remaining = -0.00025 AS exact FROM billing.allowance('gpt-4o', 'x');
-- gpt-4o-2024-08-06 resolves to its own prices, not gpt-4o: only all and openai apply.
SELECT allowed, remaining, budget, blocked_by, remaining = 0.0005 AS exact FROM billing.allowance('gpt-4o-2024-08-06', 'y');
-- Names resolve as the catalog resolves them: " OpenAI/GPT-4o " is gpt-4o.
SELECT allowed, remaining, budget FROM billing.allowance(' OpenAI/GPT-4o ');
SELECT allowed, remaining, budget FROM billing.allowance();
-- A reply stored after a budget was crossed is stored and counted: 1M
-- gpt-4o-mini prompt tokens in x (0.15) take openai to 0.1515.
INSERT INTO now_messages (conversation_id, role, content, data) VALUES
  ('x', 'assistant', 'x2', '{"model": "gpt-4o-mini", "prompt_tokens": 1000000, "completion_tokens": 0}');
SELECT allowed, remaining, budget, blocked_by, remaining = 0.002 - 0.1515 AS exact FROM billing.allowance(NULL, 'y');
-- The same figures from the rollups after a merge, and as budget_status shows them.
SELECT billing.merge() > 0 AS merged;
SELECT allowed, remaining, budget, blocked_by FROM billing.allowance(NULL, 'y');
SELECT a.remaining = s.remaining AS same FROM billing.allowance('gpt-4o', 'x') AS a
  JOIN billing.budget_status AS s ON s.budget = a.budget;
SELECT budget, spent, remaining, state FROM billing.budget_status ORDER BY budget;
-- AWS counts in all: 10 e-mails = 0.001 (openai raised to 10, so that all
-- is the tightest: 1 - 0.1515 - 0.001 = 0.8475); then an actual SES figure
-- of 0.5 replaces them: 1 - 0.1515 - 0.5 = 0.3485.
UPDATE billing.budgets SET amount = 10 WHERE name = 'openai';
SELECT billing.record_usage('ses', 10, now()) > 0 AS recorded;
SELECT allowed, budget, remaining = 0.8475 AS exact FROM billing.allowance();
SELECT billing._aws_month_cost(billing.month_of(now())) AS aws_month;
INSERT INTO billing.aws_actuals (month, service, cost) VALUES (billing.month_of(now()), 'ses', 0.5);
SELECT billing._aws_month_cost(billing.month_of(now())) AS aws_month,
       billing._aws_month_cost(billing.month_of(now())) = (SELECT sum(cost) FROM billing._aws_usage_by_service(
           billing.month_start(billing.month_of(now())), billing.month_end(billing.month_of(now())))) AS as_the_views;
SELECT allowed, budget, remaining = 0.3485 AS exact FROM billing.allowance();
SELECT spent FROM billing.budget_status WHERE budget = 'all';
-- With no budget that applies: allowed, nothing remaining to report.
DELETE FROM billing.budgets WHERE scope <> 'aws';
SELECT * FROM billing.allowance('gpt-4o', 'x');
ROLLBACK;

-- === A customer's budget (scope customer) ================================
-- The customer of a conversation is found through the app's mapping table
-- (billing.track_customers); a customer budget spends what
-- billing.customer_costs shows for that customer: its conversations'
-- OpenAI cost and its recorded AWS usage.
BEGIN;
CREATE TABLE cust_messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                            created_at timestamptz DEFAULT now());
CREATE TABLE cust_conversations (id text PRIMARY KEY, user_id text);
INSERT INTO cust_conversations VALUES ('p', 'u1'), ('q', 'u1'), ('r', 'u2');
SELECT tracked FROM billing.track_messages('cust_messages');
SELECT billing.track_customers('cust_messages', 'cust_conversations', 'id', 'user_id');
-- November 2024: p 100 x 2.50/1M + 50 x 10/1M = 0.00075 (u1); q 1M
-- gpt-4o-mini prompt tokens x 0.15/1M = 0.15 (u1); r 1000 gpt-4o completion
-- tokens x 10/1M = 0.01 (u2); u1's 100 e-mails x 0.0001 = 0.01.
INSERT INTO cust_messages (conversation_id, role, content, data, created_at) VALUES
  ('p', 'assistant', 'p1', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2024-11-02 10:00+00'),
  ('q', 'assistant', 'q1', '{"model": "gpt-4o-mini", "prompt_tokens": 1000000, "completion_tokens": 0}', '2024-11-03 10:00+00'),
  ('r', 'assistant', 'r1', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 1000}', '2024-11-04 10:00+00');
SELECT billing.record_customer_usage('u1', 'ses', 100, '2024-11-05') > 0 AS recorded;
INSERT INTO billing.budgets (name, scope, customer, amount, blocks, created_at) VALUES
  ('u1', 'customer', 'u1', 0.2,  true,  '2024-11-01'),
  ('u2', 'customer', 'u2', 0.01, true,  '2024-11-01'),
  ('u3', 'customer', 'u3', 1,    false, '2024-11-01');
-- u1: 0.00075 + 0.15 + 0.01 = 0.16075 of 0.2 = 80.375% (warning); u2:
-- 0.01 of 0.01 = 100% (exceeded); u3: nothing.
SELECT budget, scope, customer, spent, remaining, percent, state
  FROM billing._budget_status('2024-11-01', '2024-12-05') ORDER BY budget;
-- Conversation q moves to u2, and its 0.15 with it: u1 0.00075 + 0.01 =
-- 0.01075, u2 0.15 + 0.01 = 0.16. Each equals customer_costs' total.
UPDATE cust_conversations SET user_id = 'u2' WHERE id = 'q';
SELECT s.budget, s.spent, s.spent = c.total_cost AS as_customer_costs
  FROM billing._budget_status('2024-11-01', '2024-12-05') AS s
  LEFT JOIN billing.customer_costs AS c ON c.customer = s.customer AND c.month = '2024-11-01'
 ORDER BY s.budget;
-- Alerts: u2's 0.16 of 0.01 passes 50, 80 and 100%; u1's 5.375% nothing.
SELECT billing.check_alerts('2024-11-20');
SELECT budget, threshold, period, spent FROM billing.alerts ORDER BY budget, threshold;
-- This month: p 0.00075 (u1), r 0.01 (u2). allowance(model, conversation,
-- customer): u1 has 0.2 - 0.00075 = 0.19925 left; u2 0.01 - 0.01 = 0, a
-- blocking budget spent: refused. Without a customer, no customer budget
-- applies (and here no other budget exists).
INSERT INTO cust_messages (conversation_id, role, content, data) VALUES
  ('p', 'assistant', 'p2', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}'),
  ('r', 'assistant', 'r2', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 1000}');
SELECT allowed, remaining, budget, blocked_by FROM billing.allowance('gpt-4o', 'p', 'u1');
SELECT allowed, remaining, budget, blocked_by FROM billing.allowance('gpt-4o', 'r', 'u2');
SELECT allowed, remaining, budget, blocked_by FROM billing.allowance('gpt-4o', 'p');
SELECT budget, customer, spent, state FROM billing.budget_status ORDER BY budget;
ROLLBACK;

-- === The forecast window, read in one pass ================================
-- budget_status reads the month and its window (the whole months before
-- it) at once and splits the figures by month. Months in New York here,
-- and the zone set after the table was taken in, so that the window is
-- first read from the table itself (the zone change sends it back there),
-- then from the rollups, then with an unmerged write. Five months, as New
-- York counts them:
--   December 2024: 0.15, the first month with any cost (left out of the
--     window: taken as partial);
--   January 2025: nothing at all (an empty month in the window);
--   February: only AWS, 1,000 e-mails at 0.0001 = 0.10, sent 2025-03-01
--     03:00 UTC = February 28, 22:00 EST (March in UTC);
--   March (31 days less the hour that daylight saving time takes on the
--     9th: 2025-03-01 05:00 UTC to 2025-04-01 04:00 UTC): y 1M completion
--     tokens of gpt-4o = 10.00, x 1M prompt tokens of gpt-4o = 2.50 at
--     2025-04-01 03:00 UTC = March 31, 23:00 EDT (April in UTC);
--   April (30 days, 2025-04-01 04:00 UTC to 2025-05-01 04:00 UTC): x
--     2.50 (gpt-4o), then x 0.15 (gpt-4o-mini, 1M prompt tokens) unmerged.
BEGIN;
CREATE TABLE win_messages (id bigint PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                           created_at timestamptz);
INSERT INTO win_messages VALUES
  (1, 'x', 'assistant', 'dec', '{"model": "gpt-4o-mini", "prompt_tokens": 1000000, "completion_tokens": 0}', '2024-12-15 12:00+00'),
  (2, 'y', 'assistant', 'mar', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 1000000}', '2025-03-01 06:00+00'),
  (3, 'x', 'assistant', 'mar', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}', '2025-04-01 03:00+00'),
  (4, 'x', 'assistant', 'apr', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}', '2025-04-10 12:00+00');
SELECT tracked, messages FROM billing.track_messages('win_messages');
SELECT billing.record_usage('ses', 1000, '2025-03-01 03:00+00') IS NOT NULL AS recorded;
INSERT INTO billing.budgets (name, scope, model, conversation_id, amount) VALUES
  ('w-all', 'all', NULL, NULL, 100), ('w-openai', 'openai', NULL, NULL, 100), ('w-aws', 'aws', NULL, NULL, 1),
  ('w-4o', 'model', 'gpt-4o', NULL, 4), ('w-x', 'conversation', NULL, 'x', 10);
UPDATE billing.settings SET value = 'America/New_York' WHERE name = 'month_time_zone';
INSERT INTO win_messages VALUES
  (5, 'x', 'assistant', 'apr', '{"model": "gpt-4o-mini", "prompt_tokens": 1000000, "completion_tokens": 0}', '2025-04-12 12:00+00');
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'win_messages'::regclass;
-- Each month of the window and April, the empty January included:
-- all: 0, 0.10, 12.50, 2.65; openai: 0, 0, 12.50, 2.65; aws: 0, 0.10, 0,
-- 0; gpt-4o: 0, 0, 12.50, 2.50; x: 0, 0, 2.50, 2.65.
SELECT month, budget, spent FROM billing._budget_spent_months('2025-01-01', '2025-04-01') ORDER BY budget, month;
-- At 2025-04-16 04:00 UTC (April 16, 00:00 EDT): 15 of April's 30 days
-- gone, f = 1/2; the window is January to March (December is the first
-- month with a cost), w_days = 31 + 28 + (31 - 1/24) = 2159/24.
-- forecast = spent + 15 x (spent / 30 + 1/2 x past / w_days)
--          = 1.5 x spent + 180 x past / 2159, rounded to 6 decimals:
--   w-all    1.5 x 2.65 + 180 x 12.60 / 2159 = 3.975 + 1.0504863... = 5.025486
--   w-openai 1.5 x 2.65 + 180 x 12.50 / 2159 = 3.975 + 1.0421491... = 5.017149
--   w-aws    1.5 x 0    + 180 x  0.10 / 2159 = 0.0083371...           = 0.008337
--   w-4o     1.5 x 2.50 + 180 x 12.50 / 2159 = 3.75  + 1.0421491... = 4.792149
--   w-x      1.5 x 2.65 + 180 x  2.50 / 2159 = 3.975 + 0.2084298... = 4.183430
-- w-4o: 2.50 of 4 = 62.50%, past its 50% threshold: warning.
SELECT budget, spent, percent, forecast, state, forecast_method
  FROM billing._budget_status('2025-04-01', '2025-04-16 04:00+00') ORDER BY budget;
-- The same from the rollups, once merged in New York months.
SELECT billing.merge() >= 0 AS merged;
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'win_messages'::regclass;
SELECT budget, spent, percent, forecast, state, forecast_method
  FROM billing._budget_status('2025-04-01', '2025-04-16 04:00+00') ORDER BY budget;
-- An unmerged write back-dated into March: x 0.15 (gpt-4o-mini) at
-- 2025-04-01 03:30 UTC = March 31, 23:30 EDT. March becomes all 12.65,
-- openai 12.65, x 2.65 (the window's past: all 12.75, openai 12.65, x
-- 2.65); April is unchanged:
--   w-all    3.975 + 180 x 12.75 / 2159 = 3.975 + 1.0629921... = 5.037992
--   w-openai 3.975 + 180 x 12.65 / 2159 = 3.975 + 1.0546549... = 5.029655
--   w-x      3.975 + 180 x  2.65 / 2159 = 3.975 + 0.2209356... = 4.195936
INSERT INTO win_messages VALUES
  (6, 'x', 'assistant', 'mar', '{"model": "gpt-4o-mini", "prompt_tokens": 1000000, "completion_tokens": 0}', '2025-04-01 03:30+00');
SELECT month, budget, spent FROM billing._budget_spent_months('2025-03-01', '2025-04-01')
 WHERE budget IN ('w-all', 'w-openai', 'w-x') ORDER BY budget, month;
SELECT budget, spent, forecast FROM billing._budget_status('2025-04-01', '2025-04-16 04:00+00') ORDER BY budget;
ROLLBACK;

-- === Who may call what ====================================================
CREATE ROLE regress_budget_app;
GRANT USAGE ON SCHEMA billing TO regress_budget_app;
SET ROLE regress_budget_app;
SELECT * FROM billing.allowance();
SELECT billing.check_alerts();
RESET ROLE;
GRANT EXECUTE ON FUNCTION billing.allowance(text, text, text) TO regress_budget_app;
SET ROLE regress_budget_app;
SELECT allowed FROM billing.allowance('gpt-4o');
SELECT count(*) FROM billing.budgets;
RESET ROLE;
REVOKE ALL ON FUNCTION billing.allowance(text, text, text) FROM regress_budget_app;
REVOKE USAGE ON SCHEMA billing FROM regress_budget_app;
DROP ROLE regress_budget_app;
