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
