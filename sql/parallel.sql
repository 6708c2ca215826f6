-- The aggregates are PARALLEL SAFE with a combine function over a real state
-- type: a parallel plan gives exactly the serial result.
SET timezone = 'UTC';
CREATE TABLE par_messages (id bigint, conversation_id int, data jsonb);
-- 200000 rows cycling through 4 kinds of row (each run of 4 rows in one of
-- 1000 conversations, so each conversation has 50 rows of each kind):
--   gpt-4o      100 prompt + 50 completion          = 0.00075 each
--   gpt-4o-mini 1000 prompt (200 cached) + 100 out  = 800 x 0.15/1M + 200 x 0.075/1M + 100 x 0.6/1M
--                                                   = 0.00012 + 0.000015 + 0.00006 = 0.000195 each
--   a user message without usage                     = nothing
--   gpt-4o-2024-05-13 1000 prompt + 0 completion    = 1000 x 5/1M = 0.005 each
-- 50000 of each: 50000 x (0.00075 + 0.000195 + 0.005) = 50000 x 0.005945 = 297.25
INSERT INTO par_messages
SELECT i, ((i - 1) / 4) % 1000,
       CASE i % 4
         WHEN 0 THEN '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}'
         WHEN 1 THEN '{"model": "gpt-4o-mini", "prompt_tokens": 1000, "completion_tokens": 100,
                       "prompt_tokens_details": {"cached_tokens": 200}}'
         WHEN 2 THEN '{"role": "user"}'
         ELSE '{"model": "gpt-4o-2024-05-13", "prompt_tokens": 1000, "completion_tokens": 0}'
       END::jsonb
  FROM generate_series(1, 200000) AS i;
ANALYZE par_messages;

SET max_parallel_workers_per_gather = 0;
SELECT billing.openai_cost(data) AS serial_cost, billing.openai_cost(data) = 297.25 AS ok FROM par_messages;
CREATE TEMP TABLE serial_by_conv AS
  SELECT conversation_id, billing.openai_cost(data) AS cost FROM par_messages GROUP BY conversation_id;

SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT billing.openai_cost(data) FROM par_messages;
SELECT billing.openai_cost(data) AS parallel_cost, billing.openai_cost(data) = 297.25 AS ok FROM par_messages;
EXPLAIN (COSTS OFF)
  SELECT billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint,
                             (data->>'completion_tokens')::bigint) FROM par_messages;
-- The text form sees no cached tokens: the mini rows cost 1000 x 0.15/1M + 100 x 0.6/1M
-- = 0.00021 each, so 50000 x (0.00075 + 0.00021 + 0.005) = 50000 x 0.00596 = 298
SELECT billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint,
                           (data->>'completion_tokens')::bigint) = 298 AS ok FROM par_messages;

-- Grouped and parallel: every group equals its serial value. Each conversation
-- has 200 rows, 50 of each kind: 50 x 0.005945 = 0.29725.
SELECT count(*) AS groups,
       count(*) FILTER (WHERE p.cost = s.cost) AS equal_to_serial,
       count(*) FILTER (WHERE p.cost = 0.29725) AS equal_to_hand_value
  FROM (SELECT conversation_id, billing.openai_cost(data) AS cost FROM par_messages GROUP BY conversation_id) AS p
  JOIN serial_by_conv AS s USING (conversation_id);

-- AWS too: 100000 rows of 3 e-mails = 300000 x 0.0001 = 30
EXPLAIN (COSTS OFF) SELECT billing.aws_cost('ses', 3) FROM par_messages WHERE id <= 100000;
SELECT billing.aws_cost('ses', 3) = 30 AS ok FROM par_messages WHERE id <= 100000;
