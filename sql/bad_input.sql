-- Every kind of bad input has a documented outcome: a clear error with its
-- SQLSTATE, or a visible one (NULL, WARNING). Never a crash, never a silent 0.
SET timezone = 'UTC';
\set VERBOSITY default
\set SHOW_CONTEXT never

-- NULL token counts: the row carries no usage and is skipped, as by sum().
SELECT billing.openai_cost(m, p, c) IS NULL AS is_null
  FROM (VALUES ('gpt-4o', NULL::bigint, 50::bigint)) AS v(m, p, c);
-- ...and does not change the sum of the other rows: 0.00075 (see cost_engine).
SELECT billing.openai_cost(m, p, c) = 0.00075 AS ok
  FROM (VALUES ('gpt-4o', 100::bigint, 50::bigint), ('gpt-4o', NULL, 50)) AS v(m, p, c);
SELECT billing.message_cost('gpt-4o', NULL, 50) IS NULL AS is_null;

-- NULL model with tokens: unpriced, with a warning (never a silent zero).
SELECT billing.openai_cost(m, p, c) AS cost
  FROM (VALUES (NULL::text, 100::bigint, 50::bigint)) AS v(m, p, c);

-- Negative tokens: an error with SQLSTATE 22023 (invalid_parameter_value).
SELECT billing.openai_cost('gpt-4o', -1, 50);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.message_cost('gpt-4o', 100, -5);
\echo :LAST_ERROR_SQLSTATE

-- JSON values that are not token counts: with billing.invalid_usage = 'error',
-- errors naming the field...
SET billing.invalid_usage = 'error';
SELECT billing.openai_cost('{"model": "gpt-4o", "prompt_tokens": "100"}'::jsonb);
SELECT billing.openai_cost('{"model": "gpt-4o", "prompt_tokens": 1.5}'::jsonb);
SELECT billing.openai_cost('{"model": "gpt-4o", "completion_tokens": -3}'::jsonb);
SELECT billing.openai_cost('{"model": "gpt-4o", "prompt_tokens": true}'::jsonb);
SELECT billing.openai_cost('{"model": "gpt-4o", "prompt_tokens": 1e30}'::jsonb);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.openai_cost('{"model": 4, "prompt_tokens": 1}'::jsonb);
SELECT billing.openai_cost('[1, 2]'::jsonb);
SELECT billing.openai_cost('{"model": "gpt-4o", "prompt_tokens": 10,
                             "prompt_tokens_details": {"cached_tokens": 11}}'::jsonb);
RESET billing.invalid_usage;
-- ...and by default ('warn') the row is left out with one warning naming the
-- same problem: NULL here, as no row was priced (more in invalid_usage.sql).
SELECT billing.openai_cost('{"model": "gpt-4o", "prompt_tokens": "100"}'::jsonb) AS cost;
SELECT billing.message_cost('[1, 2]'::jsonb) AS cost;
-- ...except an integral value written with a decimal point, which is an integer:
-- 100 x 2.5/1M + 50 x 10/1M = 0.00075
SELECT billing.message_cost('{"model": "gpt-4o", "prompt_tokens": 100.0,
                              "completion_tokens": 5e1}'::jsonb) = 0.00075 AS ok;
-- ...and billing.usage_problem names each problem without raising one.
SELECT d AS data, billing.usage_problem(d) AS problem
  FROM (VALUES ('{"model": "gpt-4o", "prompt_tokens": "100"}'::jsonb),
               ('{"prompt_tokens": 1.5}'),
               ('{"prompt_tokens": -3}'),
               ('{"completion_tokens": 99999999999999999999}'),
               ('{"prompt_tokens": 5, "cached_tokens": 6}'),
               ('"just a string"'),
               ('null'),
               ('{}'),
               ('{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}')) AS v(d);

-- Usage with only a total (no split) or no model cannot be priced: warning, NULL.
SELECT billing.openai_cost('{"model": "gpt-4o", "tokens": 150}'::jsonb) AS total_only;
SELECT billing.openai_cost('{"prompt_tokens": 100, "completion_tokens": 50}'::jsonb) AS no_model;

-- Unknown model: by default a WARNING naming it, once per aggregate call, and
-- the row left unpriced. The known rows are still priced: 0.00075.
SELECT billing.openai_cost(m, 100, 50) AS cost
  FROM (VALUES ('gpt-4o'), ('gpt-9'), ('gpt-9'), ('claude-x')) AS v(m);
-- Grouped: still one warning for the whole call; groups with no priced row are NULL.
SELECT m, billing.openai_cost(m, 100, 50) AS cost
  FROM (VALUES ('gpt-4o'), ('gpt-9'), ('claude-x')) AS v(m) GROUP BY m ORDER BY m;
-- A known model before its first price: unpriced too.
SELECT billing.message_cost('gpt-5', 100, 50, '2020-01-01') IS NULL AS is_null;
SELECT billing.message_cost('gpt-4o', 100, 50, NULL) IS NULL AS null_time;

SET billing.unknown_model = 'error';
SELECT billing.openai_cost(m, 100, 50) FROM (VALUES ('gpt-4o'), ('gpt-9')) AS v(m);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.message_cost('gpt-5', 100, 50, '2020-01-01');
SET billing.unknown_model = 'ignore';
SELECT billing.openai_cost(m, 100, 50) = 0.00075 AS ok FROM (VALUES ('gpt-4o'), ('gpt-9')) AS v(m);
SET billing.unknown_model = 'bogus';
RESET billing.unknown_model;

-- AWS: unknown service, bad quantities.
SELECT billing.aws_cost(s, 10) AS cost FROM (VALUES ('ses'), ('sqs')) AS v(s);
SELECT billing.aws_cost('ses', -1);
SELECT billing.aws_cost('ses', 'NaN');
SELECT billing.aws_cost('ses', 0.0000001);
SELECT billing.aws_cost('ses', NULL) IS NULL AS is_null;
SET billing.unknown_service = 'error';
SELECT billing.aws_cost('sqs', 1);
RESET billing.unknown_service;
-- Case and spaces in service names are forgiven: 1000 x $0.0001 = 0.10
SELECT billing.aws_cost(' SES ', 1000) = 0.10 AS ok;

-- Very long and odd model names are unknown, not a crash.
SELECT billing.message_cost(repeat('x', 100000), 1, 1) IS NULL AS long_name;
SELECT billing.message_cost(E'gpt-4o\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9-2024', 1, 1) IS NULL AS utf8_name;
SELECT billing.message_cost('', 1, 1) IS NULL AS empty_name;

-- The state type rejects malformed text.
SELECT '(1,2)'::billing.cost_state;
SELECT '(0.00075,1,0,0,0,"")'::billing.cost_state;
-- A state stamped with a version of a Citus cluster's shared catalog (what
-- billing's partial twins send from a worker) is taken in only where the
-- query's snapshot sees that version: never without a shared catalog
-- (test/citus/sql/shared_catalog.sql has the rest). A stamp that is not a
-- version is malformed.
SELECT '(0.00075,1,0,0,0,"")@42'::billing.cost_state;
SELECT '(0.00075,1,0,0,0,"")@4x'::billing.cost_state;
