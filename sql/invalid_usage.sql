-- billing.invalid_usage: what the OpenAI cost functions do with a row whose
-- usage JSON cannot be read (README "Bad input", "Settings"). By default
-- ('warn') the row is skipped and one WARNING per call names the first such
-- row's problem and how many rows had one; 'error' raises as before 0.4;
-- 'ignore' skips silently.
SET timezone = 'UTC';
\set VERBOSITY default
\set SHOW_CONTEXT never

-- 3 valid gpt-4o replies, 2 with invalid usage and a user message without
-- usage. gpt-4o costs $2.50 per 1M prompt tokens and $10.00 per 1M completion
-- tokens, so each valid row costs 100 x 2.50/1M + 50 x 10.00/1M
-- = 0.00025 + 0.0005 = 0.00075, and the three 3 x 0.00075 = 0.00225.
CREATE TABLE iu_messages (id int PRIMARY KEY, data jsonb, created_at timestamptz);
INSERT INTO iu_messages VALUES
  (1, '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-02'),
  (2, '{"model": "gpt-4o", "prompt_tokens": "12a", "completion_tokens": 50}', '2026-11-02'),
  (3, '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-03'),
  (4, '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": -3}', '2026-11-03'),
  (5, '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-04'),
  (6, '{"role": "user"}', '2026-11-04');

-- The README's first example: the valid rows' sum, and one WARNING naming the
-- first invalid row's problem (row 2) and the 2 rows left out.
SELECT billing.openai_cost(data, created_at) AS cost FROM iu_messages;
SHOW billing.invalid_usage;
SELECT billing.openai_cost(data) AS cost FROM iu_messages;
-- The same sentence as billing.usage_problem(data), which finds the rows;
-- leaving them out by hand gives the same sum, without a warning.
SELECT id, billing.usage_problem(data) AS problem FROM iu_messages
 WHERE billing.usage_problem(data) IS NOT NULL ORDER BY id;
SELECT billing.openai_cost(data, created_at) = 0.00225 AS same_sum
  FROM iu_messages WHERE billing.usage_problem(data) IS NULL;

-- Only invalid rows: NULL (nothing was priced), never 0.
SELECT billing.openai_cost(data) AS cost FROM iu_messages WHERE id IN (2, 4);

-- Grouped: one warning for the whole call. Group b has 2 rows with invalid
-- usage and 1 valid row (0.00075); group a has 2 valid rows (0.0015).
SELECT g, billing.openai_cost(d) AS cost
  FROM (VALUES ('a', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}'::jsonb),
               ('b', '{"model": "gpt-4o", "prompt_tokens": 1.5}'),
               ('a', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}'),
               ('b', '{"model": "gpt-4o", "prompt_tokens": 2.5}'),
               ('b', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}')) AS v(g, d)
 GROUP BY g ORDER BY g;

-- Invalid usage and an unknown model in one call: two warnings, invalid usage
-- first. 3 x 0.00075 = 0.00225 again.
SELECT billing.openai_cost(d) AS cost
  FROM (SELECT data FROM iu_messages
        UNION ALL SELECT '{"model": "gpt-9", "prompt_tokens": 100, "completion_tokens": 50}') AS v(d);

-- Long strings are quoted in part; usage_problem gives the whole sentence.
SELECT billing.openai_cost(d) AS cost
  FROM (VALUES ('{"model": "gpt-4o", "prompt_tokens": "one hundred and twelve"}'::jsonb)) AS v(d);
SELECT billing.usage_problem('{"model": "gpt-4o", "prompt_tokens": "one hundred and twelve"}');

-- 'error': today's errors, unchanged (SQLSTATE 22023, or 22003 out of range).
SET billing.invalid_usage = 'error';
SELECT billing.openai_cost(data, created_at) FROM iu_messages;
\echo :LAST_ERROR_SQLSTATE
SELECT billing.openai_cost('{"model": "gpt-4o", "prompt_tokens": 1e30}'::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.message_cost(data) FROM iu_messages WHERE id = 4;
\echo :LAST_ERROR_SQLSTATE
-- usage_problem never raises, whatever the setting.
SELECT billing.usage_problem(data) AS problem FROM iu_messages WHERE id = 2;

-- 'ignore': the same sum, silently.
SET billing.invalid_usage = 'ignore';
SELECT billing.openai_cost(data, created_at) AS cost FROM iu_messages;
SELECT id, billing.message_cost(data, created_at) AS cost FROM iu_messages ORDER BY id;

-- message_cost under 'warn': NULL for an invalid row, one WARNING per call
-- site (here two call sites, each warning once about its first invalid row).
RESET billing.invalid_usage;
SELECT id, billing.message_cost(data, created_at) AS cost FROM iu_messages ORDER BY id;
SELECT id, billing.message_cost(data) AS a, billing.message_cost(data, created_at) AS b
  FROM iu_messages WHERE id IN (2, 3, 4) ORDER BY id;

-- Arguments of the text forms are the caller's, not app data: a negative
-- count still raises, whatever the setting.
SELECT billing.openai_cost('gpt-4o', -1, 50);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.message_cost('gpt-4o', 100, -5);
\echo :LAST_ERROR_SQLSTATE

SET billing.invalid_usage = 'sometimes';

-- A parallel plan (see parallel.sql) gives the serial result and one warning:
-- 100000 rows, every fourth with "prompt_tokens": "12a" (25000 rows), the
-- others valid gpt-4o rows: 75000 x 0.00075 = 56.25.
CREATE TABLE iu_par (id bigint, data jsonb);
INSERT INTO iu_par
SELECT i, CASE WHEN i % 4 = 0 THEN '{"model": "gpt-4o", "prompt_tokens": "12a", "completion_tokens": 50}'
               ELSE '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}' END::jsonb
  FROM generate_series(1, 100000) AS i;
ANALYZE iu_par;
SET max_parallel_workers_per_gather = 0;
SELECT billing.openai_cost(data) AS serial_cost FROM iu_par;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT billing.openai_cost(data) FROM iu_par;
SELECT billing.openai_cost(data) AS parallel_cost FROM iu_par;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- The state carries the invalid rows in five more fields of its text form
-- (invalid_rows, problem, field, kind, "value"), and through its binary form.
SELECT billing.openai_cost_trans('(0.00075,1,0,0,0,"")', data) AS state FROM iu_messages WHERE id = 2;
SELECT billing.cost_state_combine('(0.00075,1,0,0,0,"",1,2,0,2,"12a")',
                                  '(0,0,1,150,1,"gpt-9",1,5,1,3,"-3")') AS combined;
CREATE TEMP TABLE iu_states (s billing.cost_state);
INSERT INTO iu_states VALUES ('(0.00225,3,0,0,0,"",2,2,0,2,"12a")'), ('(0,0,1,1,1,"gpt-9",1,6,4,0,"11 10")'),
                             ('(0.00075,1,0,0,0,"")');
COPY iu_states TO '/tmp/billing_regress_iu_states.bin' (FORMAT binary);
CREATE TEMP TABLE iu_states_back (s billing.cost_state);
COPY iu_states_back FROM '/tmp/billing_regress_iu_states.bin' (FORMAT binary);
SELECT s FROM iu_states_back;
SELECT (SELECT array_agg(s::text) FROM iu_states) = (SELECT array_agg(s::text) FROM iu_states_back)
       AS binary_round_trip;
-- The six-field form of earlier versions still reads; its names of up to 23
-- bytes are cut to the 12 the state keeps now.
SELECT '(0,0,1,1,1,"gpt-4o-mini-2024-07-18")'::billing.cost_state AS old_state;
SELECT '(0,0,0,0,0,"",1,3,0,3,"x")'::billing.cost_state;

-- A problem names the member as the data spelled it: the Responses API's
-- input_tokens / output_tokens / input_tokens_details, and members of a
-- nested "usage" object (the whole response stored), as the app wrote them.
RESET billing.invalid_usage;
SELECT billing.usage_problem(d) AS problem
  FROM (VALUES (1, '{"model": "gpt-4.1", "input_tokens": "12a", "output_tokens": 5}'::jsonb),
               (2, '{"model": "gpt-4.1", "input_tokens": 10, "output_tokens": -3}'),
               (3, '{"model": "gpt-4.1", "input_tokens": 10, "output_tokens": 1, "input_tokens_details": {"cached_tokens": 11}}'),
               (4, '{"model": "gpt-4o", "usage": {"prompt_tokens": 1.5, "completion_tokens": 2}}'),
               (5, '{"model": "gpt-4.1", "usage": {"input_tokens": 10, "output_tokens": 1, "input_tokens_details": {"cached_tokens": 12}}}'),
               (6, '{"model": "gpt-4o", "total_tokens": "many"}'),
               -- both spellings: the Chat Completions one is read, and named
               (7, '{"model": "gpt-4o", "input_tokens": 10, "prompt_tokens": "x"}'),
               -- no prompt count, or a null one (0): named as the cached count's object spells it
               (8, '{"model": "gpt-4.1", "output_tokens": 1, "input_tokens_details": {"cached_tokens": 5}}'),
               (9, '{"usage": {"input_tokens": null, "output_tokens": 1, "input_tokens_details": {"cached_tokens": 5}}}'),
               -- a model that is not a string, where it is
               (10, '{"usage": {"model": 5, "input_tokens": 1}}'),
               (11, '{"model": [], "input_tokens": 1}')) AS v(i, d)
 ORDER BY i;
-- The aggregate's WARNING names the first one the same way (its state keeps
-- the spelling): gpt-4.1, 100 input and 50 output tokens at $2.00 and $8.00
-- per 1M = 0.0002 + 0.0004 = 0.0006, and the row of cached 11 > input 10 left out.
SELECT billing.openai_cost(d) AS cost
  FROM (VALUES ('{"model": "gpt-4.1", "input_tokens": 100, "output_tokens": 50}'::jsonb),
               ('{"model": "gpt-4.1", "input_tokens": 10, "output_tokens": 1, "input_tokens_details": {"cached_tokens": 11}}')) AS v(d);

DROP TABLE iu_messages, iu_par, iu_states, iu_states_back;
