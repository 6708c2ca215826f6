-- Under the split, Citus calls the final function through an FmgrInfo of its
-- own for every group (coord_combine_agg_ffunc), yet a query with many
-- groups raises each warning once, as on the local copy: the invalid usage
-- (10 rows with "12a"), then the unpriced model gpt-9 (10 rows), whatever
-- the number of groups that hold such rows. (Terse: the DETAIL counts the
-- rows of whichever group came first.)
SET timezone = 'UTC';
SET citus.coordinator_aggregation_strategy = 'disabled';
\set VERBOSITY terse

-- 6 months, each with rows of both kinds.
SELECT count(*) FILTER (WHERE billing.usage_problem(data) IS NOT NULL) AS invalid,
       count(*) FILTER (WHERE data->>'model' = 'gpt-9') AS unknown_model,
       count(DISTINCT date_trunc('month', created_at)) FILTER (WHERE data->>'model' = 'gpt-9') AS months_with_gpt_9
  FROM messages_local;

SELECT citus_test.plan_of($$SELECT date_trunc('month', created_at), billing.openai_cost(data) FROM messages GROUP BY 1$$);
SELECT date_trunc('month', created_at) AS month, billing.openai_cost(data) IS NOT NULL AS priced
  FROM messages GROUP BY 1 ORDER BY 1;
-- the same on the local copy
SELECT date_trunc('month', created_at) AS month, billing.openai_cost(data) IS NOT NULL AS priced
  FROM messages_local GROUP BY 1 ORDER BY 1;

-- Two aggregates in one query: each warns once.
SELECT date_trunc('month', created_at) AS month,
       billing.openai_cost(data) IS NOT NULL AS jsonb_priced,
       billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint, (data->>'completion_tokens')::bigint)
           FILTER (WHERE billing.usage_problem(data) IS NULL) IS NOT NULL AS text_priced
  FROM messages GROUP BY 1 ORDER BY 1;

-- aws_cost: the unknown service sqs-fifo, in 6 months.
SELECT citus_test.plan_of($$SELECT date_trunc('month', at), billing.aws_cost(service, quantity) FROM aws_rows GROUP BY 1$$);
SELECT date_trunc('month', at) AS month, billing.aws_cost(service, quantity) IS NOT NULL AS priced
  FROM aws_rows GROUP BY 1 ORDER BY 1;

-- Policies on the coordinator. 'error': the workers read the rows under
-- their own setting ('warn': a session's SET does not reach them), and the
-- coordinator's final function raises the error the first such row would
-- have raised (without its time), as on the local copy.
\set VERBOSITY default
SET billing.unknown_model = 'error';
-- (at now(): gpt-9 is the only model without a price)
SELECT billing.openai_cost(data) FROM messages WHERE billing.usage_problem(data) IS NULL;
SELECT billing.openai_cost(data) FROM messages_local WHERE billing.usage_problem(data) IS NULL;
-- (no unpriced row: no error)
SELECT billing.openai_cost(data) IS NOT NULL AS priced
  FROM messages WHERE billing.usage_problem(data) IS NULL AND data->>'model' <> 'gpt-9';
RESET billing.unknown_model;
SET billing.invalid_usage = 'error';
SELECT billing.openai_cost(data) FROM messages;
SELECT billing.openai_cost(data) FROM messages_local;
RESET billing.invalid_usage;
SET billing.unknown_service = 'error';
SELECT billing.aws_cost(service, quantity) FROM aws_rows;
SELECT billing.aws_cost(service, quantity) FROM aws_rows_local;
RESET billing.unknown_service;
\set VERBOSITY terse

-- 'ignore' silences the final function's warnings, as on one node.
SET billing.unknown_model = 'ignore';
SET billing.invalid_usage = 'ignore';
SELECT date_trunc('month', created_at) AS month, billing.openai_cost(data) IS NOT NULL AS priced
  FROM messages GROUP BY 1 ORDER BY 1;
RESET billing.unknown_model;
RESET billing.invalid_usage;

-- Pushed down (grouped by the distribution column), the final function runs
-- on the workers, once per shard, and Citus relays each shard's warning;
-- billing's emit_log_hook on the coordinator (src/pg/worker_warnings.cpp)
-- lets each warning through once per statement. Here one gpt-9 row in each
-- of 4 conversations on 4 different shards, one "12a" row in 2 more shards,
-- and 40 conversations with a gpt-4o reply of 100 prompt and 50 completion
-- tokens: 40 * (100 * 2.50 + 50 * 10.00) / 1M = 40 * 0.00075 = 0.03.
-- Without the hook: 4 gpt-9 and 2 "12a" warnings (each DETAIL: 1 row).
SET citus.shard_count = 8;
CREATE TABLE citus_test.warn_pushed (conversation_id int, data jsonb);
SELECT create_distributed_table('citus_test.warn_pushed', 'conversation_id');
INSERT INTO citus_test.warn_pushed
SELECT c, '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}' FROM generate_series(1, 40) AS c;
-- (the first conversation of each shard, in shard order: gpt-9 in the first
-- four shards, "12a" in the next two)
INSERT INTO citus_test.warn_pushed
SELECT c, CASE WHEN n <= 4 THEN '{"model": "gpt-9", "prompt_tokens": 10, "completion_tokens": 1}'
                ELSE '{"model": "gpt-4o", "prompt_tokens": "12a", "completion_tokens": 1}' END::jsonb
  FROM (SELECT c, row_number() OVER (ORDER BY s) AS n
          FROM (SELECT DISTINCT ON (s) s, c
                  FROM (SELECT get_shard_id_for_distribution_column('citus_test.warn_pushed', c) AS s, c
                          FROM generate_series(1, 40) AS c) AS x
                 ORDER BY s, c) AS y) AS z
 WHERE n <= 6;
SELECT count(DISTINCT get_shard_id_for_distribution_column('citus_test.warn_pushed', conversation_id))
           FILTER (WHERE data->>'model' = 'gpt-9') AS gpt_9_shards,
       count(DISTINCT get_shard_id_for_distribution_column('citus_test.warn_pushed', conversation_id))
           FILTER (WHERE data->>'prompt_tokens' = '12a') AS invalid_shards
  FROM citus_test.warn_pushed;
SELECT citus_test.plan_of($$SELECT conversation_id, billing.openai_cost(data) FROM citus_test.warn_pushed GROUP BY 1$$);
SELECT sum(c) AS total
  FROM (SELECT conversation_id, billing.openai_cost(data) AS c FROM citus_test.warn_pushed GROUP BY 1) AS s;
-- once per statement: the next statement warns again
SELECT sum(c) AS total
  FROM (SELECT conversation_id, billing.openai_cost(data) AS c FROM citus_test.warn_pushed GROUP BY 1) AS s;
-- In a new session whose first statement is the pushed-down query (planning
-- it loads billing on the coordinator), and in one that preloads billing
-- (session_preload_libraries, as docs/citus.md recommends): once each.
\c
\set VERBOSITY terse
SELECT sum(c) AS total
  FROM (SELECT conversation_id, billing.openai_cost(data) AS c FROM citus_test.warn_pushed GROUP BY 1) AS s;
SET client_min_messages = warning;
ALTER ROLE CURRENT_USER IN DATABASE citus_test SET session_preload_libraries = 'billing';
RESET client_min_messages;
\c
\set VERBOSITY terse
SHOW session_preload_libraries;
SELECT sum(c) AS total
  FROM (SELECT conversation_id, billing.openai_cost(data) AS c FROM citus_test.warn_pushed GROUP BY 1) AS s;
SET client_min_messages = warning;
ALTER ROLE CURRENT_USER IN DATABASE citus_test RESET session_preload_libraries;
RESET client_min_messages;
DROP TABLE citus_test.warn_pushed;
