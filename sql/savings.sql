-- Savings (README "Savings"): billing.savings_pairs and billing.savings().
-- Prices (per 1M tokens: input / cached input / output):
--   gpt-4o from 2024-05-13: $5.00 / none / $15.00; from 2024-10-02: $2.50 / $1.25 / $10.00
--   gpt-4o-2024-08-06: $2.50 / $1.25 / $10.00
--   gpt-4o-mini: $0.15 / $0.075 / $0.60
--   gpt-4.1 and gpt-4.1-mini: only from 2025-04-14 (unpriced in 2024)
-- Fixed dates: October and November 2024.
SET timezone = 'UTC';

-- === The pairs ============================================================
SELECT model, cheaper_model, origin FROM billing.savings_pairs ORDER BY model;
-- Each bad field is refused by name.
INSERT INTO billing.savings_pairs (model, cheaper_model) VALUES ('gpt-99', 'gpt-4o-mini');
INSERT INTO billing.savings_pairs (model, cheaper_model) VALUES ('gpt-4-turbo', 'gpt-99');
INSERT INTO billing.savings_pairs (model, cheaper_model) VALUES ('gpt-4-turbo', 'gpt-4-turbo');
INSERT INTO billing.savings_pairs (model, cheaper_model) VALUES (NULL, 'gpt-4o-mini');
INSERT INTO billing.savings_pairs (model, cheaper_model) VALUES ('  ', 'gpt-4o-mini');
UPDATE billing.savings_pairs SET cheaper_model = 'gpt-99' WHERE model = 'gpt-4o';
-- A restore loads the pairs with check_function_bodies off (pg_dump's
-- scripts set it), maybe before the user's own prices (pg_restore -j): a
-- pair on a model without a price is taken then.
BEGIN;
SET LOCAL check_function_bodies = off;
INSERT INTO billing.savings_pairs (model, cheaper_model) VALUES ('gpt-99', 'gpt-98');
SELECT model, cheaper_model, origin FROM billing.savings_pairs WHERE model = 'gpt-99';
ROLLBACK;
-- A default pair is not deleted (a restore would bring it back); the hint says what to do.
\set VERBOSITY default
DELETE FROM billing.savings_pairs WHERE model = 'gpt-4o';
\set VERBOSITY terse
-- A user row replaces the default of the same model, and is the user's.
BEGIN;
INSERT INTO billing.savings_pairs (model, cheaper_model) VALUES ('gpt-4o', 'gpt-4.1-mini');
SELECT model, cheaper_model, origin FROM billing.savings_pairs WHERE model = 'gpt-4o' ORDER BY model;
ROLLBACK;
BEGIN;
UPDATE billing.savings_pairs SET cheaper_model = NULL WHERE model = 'gpt-4o';
SELECT model, cheaper_model, origin FROM billing.savings_pairs WHERE model = 'gpt-4o' ORDER BY model;
ROLLBACK;
-- The checks' settings.
SELECT p.proname, p.provolatile, p.proparallel, p.prosecdef, p.proconfig
  FROM pg_proc AS p
 WHERE p.pronamespace = 'billing'::regnamespace AND p.proname IN ('savings', '_savings_pair_checked')
 ORDER BY p.proname;

-- === Usage: October and November 2024 =====================================
CREATE TABLE sav_messages (id bigint PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                           created_at timestamptz);
CREATE INDEX ON sav_messages (created_at);
INSERT INTO sav_messages VALUES
  -- gpt-4o: 1M x 2.50/1M + 1M x 10/1M = 12.50; on gpt-4o-mini 1M x 0.15/1M + 1M x 0.60/1M = 0.75
  (1, 'a', 'assistant', 'one', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 1000000}', '2024-11-01 10:00+00'),
  -- gpt-4o, 1M prompt of which 400k cached: 600k x 2.50/1M + 400k x 1.25/1M = 1.50 + 0.50 = 2.00;
  -- on gpt-4o-mini 600k x 0.15/1M + 400k x 0.075/1M = 0.09 + 0.03 = 0.12;
  -- caching saved 400k x (2.50 - 1.25)/1M = 0.50
  (2, 'a', 'assistant', 'two', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": 400000}}', '2024-11-03 10:00+00'),
  -- priced as gpt-4o-mini (no pair): 500k x 0.15/1M + 500k x 0.075/1M = 0.075 + 0.0375 = 0.1125;
  -- caching saved 500k x (0.15 - 0.075)/1M = 0.0375
  (3, 'b', 'assistant', 'three', '{"model": "gpt-4o-mini-2024-07-18", "prompt_tokens": 1000000, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": 500000}}', '2024-11-04 10:00+00'),
  -- gpt-4.1 has no price in 2024: cost 0, nothing to compare
  (4, 'b', 'assistant', 'four', '{"model": "gpt-4.1", "prompt_tokens": 1000, "completion_tokens": 1000}', '2024-11-05 10:00+00'),
  -- October, before gpt-4o's price cut of 2024-10-02: 1M x 5.00/1M = 5.00;
  -- on gpt-4o-mini (price at October's last instant) 1M x 0.15/1M = 0.15: saving 4.85, price_changed
  (5, 'c', 'assistant', 'five', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}', '2024-10-01 12:00+00'),
  -- a reply without usage (estimated): not in savings
  (7, 'c', 'assistant', 'seven words of text here', NULL, '2024-11-06 10:00+00');
SELECT tracked, messages FROM billing.track_messages('sav_messages');

-- November, from the rollups.
-- gpt-4o: prompt 2M, completion 1M, cached 400k; cost 12.50 + 2.00 = 14.50;
-- on gpt-4o-mini 0.75 + 0.12 = 0.87; saving 14.50 - 0.87 = 13.63; caching saved 0.50.
SELECT * FROM billing.savings('2024-11-01', '2024-12-01') ORDER BY model;

-- An unmerged write (the ledger): gpt-4o-2024-08-06, its own price row, paired with gpt-4o-mini:
-- 2M x 2.50/1M = 5.00; on gpt-4o-mini 2M x 0.15/1M = 0.30; saving 4.70.
INSERT INTO sav_messages VALUES
  (6, 'a', 'assistant', 'six', '{"model": "gpt-4o-2024-08-06", "prompt_tokens": 2000000, "completion_tokens": 0}', '2024-11-10 10:00+00');
SELECT count(*) AS ledger_rows FROM billing.usage_ledger;
SELECT * FROM billing.savings('2024-11-01', '2024-12-01') ORDER BY model;
-- cost is the views' OpenAI cost less the estimated reply: 12.50 + 2.00 + 0.1125 + 0 + 5.00 = 19.6125.
SELECT s.cost AS savings_cost, s.cost + e.cost = h.cost AS plus_estimated_is_history
  FROM (SELECT sum(cost) AS cost FROM billing.savings('2024-11-01', '2024-12-01')) AS s,
       (SELECT sum(cost) AS cost FROM billing.history('2024-11-01', '2024-12-01') WHERE source = 'openai') AS h,
       (SELECT sum(estimated_cost) AS cost FROM billing._usage_by_model('2024-11-01', '2024-12-01')) AS e;
-- The same after the merge.
SELECT billing.merge() > 0 AS merged;
SELECT * FROM billing.savings('2024-11-01', '2024-12-01') ORDER BY model;

-- October: the price of gpt-4o changed on 2024-10-02, inside the month.
SELECT * FROM billing.savings('2024-10-01', '2024-11-01') ORDER BY model;
-- October and November: gpt-4o cost 5.00 + 14.50 = 19.50; on gpt-4o-mini 0.15 + 0.87 = 1.02; saving 18.48.
SELECT * FROM billing.savings('2024-10-01', '2024-12-01') ORDER BY model;
-- A partial month, read from the table: from 2024-11-02 gpt-4o has only message 2
-- (2.00; on gpt-4o-mini 0.12; saving 1.88; caching saved 0.50).
SELECT * FROM billing.savings('2024-11-02', '2024-12-01') ORDER BY model;

-- A user pair changes the comparison: gpt-4o on gpt-4.1-mini, unpriced in 2024, gives no figure;
-- cheaper_model NULL turns it off.
BEGIN;
INSERT INTO billing.savings_pairs (model, cheaper_model) VALUES ('gpt-4o', 'gpt-4.1-mini');
UPDATE billing.savings_pairs SET cheaper_model = NULL WHERE model = 'gpt-4o-2024-08-06';
SELECT model, cheaper_model, cheaper_cost, saving, caching_saved
  FROM billing.savings('2024-11-01', '2024-12-01') ORDER BY model;
ROLLBACK;

-- A model with no price: its cost is NULL, not 0 (10 + 5 tokens of gpt-9).
BEGIN;
INSERT INTO sav_messages VALUES
  (90, 'z', 'assistant', 'x', '{"model": "gpt-9", "prompt_tokens": 10, "completion_tokens": 5}', '2024-11-10 10:00+00');
SELECT model, priced_as, prompt_tokens, completion_tokens, cost, saving
  FROM billing.savings('2024-11-01', '2024-12-01') WHERE model = 'gpt-9';
ROLLBACK;

-- The default period is the current month: none of this usage is in it.
SELECT count(*) AS rows_now FROM billing.savings();

-- A role that may not read billing's figures gets the readers' error.
CREATE ROLE regress_savings_reader;
GRANT USAGE ON SCHEMA billing TO regress_savings_reader;
SET ROLE regress_savings_reader;
SELECT * FROM billing.savings('2024-11-01', '2024-12-01') ORDER BY model;
SELECT count(*) > 0 AS reads_pairs FROM billing.savings_pairs;
RESET ROLE;
REVOKE USAGE ON SCHEMA billing FROM regress_savings_reader;
DROP ROLE regress_savings_reader;

SELECT billing.untrack_messages('sav_messages');
DROP TABLE sav_messages;
