-- The price catalog is edited with plain SQL and every change is seen at once
-- by the cost functions, whose C++ side caches the catalog.
SET timezone = 'UTC';

-- 1M prompt tokens of gpt-4o today: $2.50
SELECT billing.message_cost('gpt-4o', 1000000, 0) AS before_change;
-- A new price from yesterday (taken from the clock the cost functions read,
-- so that the test holds on any date): the same call now costs $2.00...
SELECT current_date - 1 AS change_from \gset
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, cached_input_per_1m, output_per_1m)
VALUES ('gpt-4o', :'change_from', 2.00, 1.00, 8.00);
SELECT billing.message_cost('gpt-4o', 1000000, 0) AS after_insert;
-- ...but a message from the second before keeps the price of its time.
SELECT billing.message_cost('gpt-4o', 1000000, 0, :'change_from'::timestamptz - interval '1 second') AS just_before;
-- Updating a price is seen too, inside a transaction, and undone by ROLLBACK.
BEGIN;
UPDATE billing.model_prices SET input_per_1m = 1.00 WHERE model = 'gpt-4o' AND effective_from = :'change_from';
SELECT billing.message_cost('gpt-4o', 1000000, 0) AS in_transaction;
ROLLBACK;
SELECT billing.message_cost('gpt-4o', 1000000, 0) AS after_rollback;

-- The aggregates keep their call state, catalog included, for one query
-- (src/pg/cost_call.cpp): the next query sees a change, in the transaction
-- and after ROLLBACK; a cursor keeps the prices of its snapshot.
CREATE TEMP TABLE usage_rows AS
SELECT 'gpt-4o'::text AS model, 1000000::bigint AS prompt, 0::bigint AS completion,
       '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}'::jsonb AS data
  FROM generate_series(1, 3);
-- 3 x 1M x $2.00
SELECT billing.openai_cost(model, prompt, completion) AS text_form, billing.openai_cost(data) AS jsonb_form
  FROM usage_rows;
BEGIN;
UPDATE billing.model_prices SET input_per_1m = 1.00 WHERE model = 'gpt-4o' AND effective_from = :'change_from';
-- 3 x 1M x $1.00
SELECT billing.openai_cost(model, prompt, completion) AS text_form, billing.openai_cost(data) AS jsonb_form
  FROM usage_rows;
DECLARE prices_then CURSOR FOR SELECT model, billing.openai_cost(data) AS cost FROM usage_rows GROUP BY model;
UPDATE billing.model_prices SET input_per_1m = 0.50 WHERE model = 'gpt-4o' AND effective_from = :'change_from';
-- 3 x 1M x $0.50, and the cursor's 3 x 1M x $1.00
SELECT model, billing.openai_cost(data) AS cost FROM usage_rows GROUP BY model;
FETCH prices_then;
ROLLBACK;
-- 3 x 1M x $2.00 again
SELECT billing.openai_cost(model, prompt, completion) AS text_form, billing.openai_cost(data) AS jsonb_form
  FROM usage_rows;
DROP TABLE usage_rows;

-- A new model is priced as soon as it is added.
SELECT billing.message_cost('my-finetune', 1000000, 1000000) IS NULL AS unknown_before;
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m, note)
VALUES ('my-finetune', '2020-01-01', 3.00, 12.00, 'fine-tuned gpt-4o-mini');
-- 1M x 3 + 1M x 12 = 15
SELECT billing.message_cost('my-finetune', 1000000, 1000000) AS known_after;

-- Origin: edited seed rows and new rows are the user's (kept by pg_dump)...
UPDATE billing.model_prices SET output_per_1m = 0.65 WHERE model = 'gpt-4o-mini';
SELECT model, CASE effective_from WHEN :'change_from' THEN 'change_from' ELSE effective_from::text END AS effective_from,
       output_per_1m, origin FROM billing.model_prices
 WHERE origin = 'user' ORDER BY model, billing.model_prices.effective_from;
-- ...and a deleted seed row is remembered, so that a restore deletes it again.
DELETE FROM billing.model_prices WHERE model = 'gpt-3.5-turbo-1106';
SELECT * FROM billing.removed_seed_prices;
-- A user row with a seed row's key replaces it (this is what a restore does).
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('gpt-4', '2023-03-14', 29.00, 59.00);
SELECT model, input_per_1m, output_per_1m, origin FROM billing.model_prices WHERE model = 'gpt-4';
-- pg_dump keeps exactly the user rows and the removals.
SELECT c.relname, x.cond
  FROM pg_extension e,
       unnest(e.extconfig, e.extcondition) AS x(oid, cond)
       JOIN pg_class c ON c.oid = x.oid
 WHERE e.extname = 'billing' ORDER BY c.relname;

-- Prices are exact decimals: more than 12 decimals per 1M, or negative, is refused.
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('too-precise', '2026-01-01', 0.0000000000001, 1);
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('negative', '2026-01-01', -1, 1);
INSERT INTO billing.aws_prices (service, unit, unit_price, effective_from)
VALUES ('sqs', 'request', 0.0000004, '2020-01-01');
-- 2.5M requests x $0.0000004 = 1.00
SELECT billing.aws_cost('sqs', 2500000) AS sqs_cost;

-- The state type round-trips through its text and binary (COPY BINARY) forms.
CREATE TEMP TABLE states (s billing.cost_state);
INSERT INTO states VALUES ('(12.000000000000000001,3,2,150,1,"gpt-\"9\"")'), ('(-0.5,0,0,0,0,"")');
SELECT s FROM states;
COPY states TO '/tmp/billing_regress_states.bin' (FORMAT binary);
CREATE TEMP TABLE states_back (s billing.cost_state);
COPY states_back FROM '/tmp/billing_regress_states.bin' (FORMAT binary);
SELECT s FROM states_back;
SELECT (SELECT array_agg(s::text) FROM states) = (SELECT array_agg(s::text) FROM states_back) AS binary_round_trip;

-- Leave a fresh catalog for the other tests.
DROP TABLE states, states_back;
DROP EXTENSION billing;
CREATE EXTENSION billing;
