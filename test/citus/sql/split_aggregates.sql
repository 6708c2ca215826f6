-- Every cost aggregate on the table distributed by conversation_id gives
-- exactly what it gives on the local copy: split into worker_partial_agg on
-- the workers and coord_combine_agg on the coordinator (grouped by anything
-- but the distribution column, or not grouped), or pushed down to the
-- workers (grouped by conversation_id). 'disabled': Citus never pulls the
-- rows to the coordinator to aggregate them there.
SET timezone = 'UTC';
SET citus.coordinator_aggregation_strategy = 'disabled';
-- (the warnings have a test of their own below)
SET client_min_messages = error;

-- The totals at each row's own time, against plain SQL on the local copy:
-- the catalog row in effect at created_at, by exact name; cached tokens at
-- the cached price (the input price when it has none).
CREATE VIEW citus_test.plain_usage AS
SELECT data->>'model' AS model,
       (data->>'prompt_tokens')::bigint AS prompt,
       (data->>'completion_tokens')::bigint AS completion,
       coalesce((data #>> '{prompt_tokens_details,cached_tokens}')::bigint, 0) AS cached,
       created_at
  FROM messages_local
 WHERE billing.usage_problem(data) IS NULL AND data ? 'prompt_tokens';
CREATE FUNCTION citus_test.plain_cost(with_cached boolean, at_now boolean) RETURNS numeric
LANGUAGE sql STABLE AS $$
SELECT sum(CASE WHEN with_cached THEN (u.prompt - u.cached) * p.input_per_1m
                                      + u.cached * coalesce(p.cached_input_per_1m, p.input_per_1m)
                ELSE u.prompt * p.input_per_1m END
           + u.completion * p.output_per_1m) / 1000000
  FROM citus_test.plain_usage AS u
 CROSS JOIN LATERAL (SELECT * FROM billing.model_prices AS m
                      WHERE m.model = u.model
                        AND m.effective_from <= CASE WHEN at_now THEN now() ELSE u.created_at END
                      ORDER BY m.effective_from DESC LIMIT 1) AS p
$$;

SELECT citus_test.plain_cost(true, false) AS plain_jsonb_at, citus_test.plain_cost(false, false) AS plain_text_at;

-- jsonb, at each row's time: split, and the same total as the local copy and plain SQL.
SELECT billing.openai_cost(data, created_at) AS distributed FROM messages;
SELECT (SELECT billing.openai_cost(data, created_at) FROM messages)
     = (SELECT billing.openai_cost(data, created_at) FROM messages_local) AS same_as_local,
       (SELECT billing.openai_cost(data, created_at) FROM messages_local) = citus_test.plain_cost(true, false) AS same_as_plain;
-- text, at each row's time (the casts need valid usage: usage_problem filters)
SELECT billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint, (data->>'completion_tokens')::bigint, created_at)
       AS distributed
  FROM messages WHERE billing.usage_problem(data) IS NULL;
SELECT (SELECT billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint,
                                   (data->>'completion_tokens')::bigint, created_at)
          FROM messages_local WHERE billing.usage_problem(data) IS NULL) = citus_test.plain_cost(false, false)
       AS local_same_as_plain;

-- Each form, each on both tables: the plan on the distributed table and
-- whether the rows are the same.
CREATE TABLE citus_test.split_forms (n serial, name text, query text, distributed text, local text);
INSERT INTO citus_test.split_forms (name, query, distributed, local)
SELECT q.name, q.query, 'messages', 'messages_local'
  FROM (VALUES
    ('jsonb', $q$SELECT billing.openai_cost(data) FROM %1$s$q$),
    ('jsonb at', $q$SELECT billing.openai_cost(data, created_at) FROM %1$s$q$),
    ('text', $q$SELECT billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint,
                                           (data->>'completion_tokens')::bigint)
                  FROM %1$s WHERE billing.usage_problem(data) IS NULL$q$),
    ('text at', $q$SELECT billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint,
                                              (data->>'completion_tokens')::bigint, created_at)
                     FROM %1$s WHERE billing.usage_problem(data) IS NULL$q$),
    ('FILTER', $q$SELECT billing.openai_cost(data, created_at) FILTER (WHERE data->>'model' = 'gpt-4o'),
                         billing.openai_cost(data) FILTER (WHERE created_at < '2024-12-01'),
                         billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint,
                                             (data->>'completion_tokens')::bigint)
                             FILTER (WHERE billing.usage_problem(data) IS NULL AND role = 'assistant')
                    FROM %1$s$q$),
    ('by model', $q$SELECT data->>'model', billing.openai_cost(data, created_at), billing.openai_cost(data)
                      FROM %1$s GROUP BY 1$q$),
    ('by month, HAVING', $q$SELECT date_trunc('month', created_at), billing.openai_cost(data, created_at)
                              FROM %1$s GROUP BY 1 HAVING billing.openai_cost(data, created_at) > 20$q$),
    ('by month and model, HAVING FILTER',
     $q$SELECT date_trunc('month', created_at), data->>'model',
               billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint,
                                   (data->>'completion_tokens')::bigint, created_at)
                   FILTER (WHERE billing.usage_problem(data) IS NULL)
          FROM %1$s GROUP BY 1, 2
        HAVING billing.openai_cost(data) FILTER (WHERE role = 'assistant') IS NOT NULL$q$),
    ('by conversation', $q$SELECT conversation_id, billing.openai_cost(data, created_at), billing.openai_cost(data)
                             FROM %1$s GROUP BY 1$q$),
    ('sum of message_cost', $q$SELECT sum(billing.message_cost(data, created_at)), sum(billing.message_cost(data))
                                FROM %1$s$q$)
  ) AS q(name, query);
SELECT q.name, c.plan, c.same, c.nrows
  FROM citus_test.split_forms AS q, LATERAL citus_test.compare(q.query) AS c
 ORDER BY q.n;

-- AWS: the same, on aws_rows distributed by account_id.
SELECT billing.aws_cost(service, quantity, at) AS distributed FROM aws_rows;
-- plain SQL: each quantity at the unit price in effect at its time
SELECT (SELECT billing.aws_cost(service, quantity, at) FROM aws_rows)
     = (SELECT sum(a.quantity * p.unit_price)
          FROM aws_rows_local AS a
         CROSS JOIN LATERAL (SELECT unit_price FROM billing.aws_prices AS ap
                              WHERE ap.service = a.service AND ap.effective_from <= a.at
                              ORDER BY ap.effective_from DESC LIMIT 1) AS p) AS same_as_plain;
INSERT INTO citus_test.split_forms (name, query, distributed, local)
SELECT q.name, q.query, 'aws_rows', 'aws_rows_local'
  FROM (VALUES
    ('aws', $q$SELECT billing.aws_cost(service, quantity) FROM %1$s$q$),
    ('aws at', $q$SELECT billing.aws_cost(service, quantity, at) FROM %1$s$q$),
    ('aws by service, FILTER', $q$SELECT service, billing.aws_cost(service, quantity, at),
                                         billing.aws_cost(service, quantity) FILTER (WHERE at >= '2025-01-01')
                                    FROM %1$s GROUP BY 1$q$),
    ('aws by month, HAVING', $q$SELECT date_trunc('month', at), billing.aws_cost(service, quantity, at)
                                  FROM %1$s GROUP BY 1 HAVING billing.aws_cost(service, quantity) > 2000$q$),
    ('aws by account', $q$SELECT account_id, billing.aws_cost(service, quantity, at) FROM %1$s GROUP BY 1$q$)
  ) AS q(name, query);
SELECT q.name, c.plan, c.same, c.nrows
  FROM citus_test.split_forms AS q, LATERAL citus_test.compare(q.query, 'aws_rows', 'aws_rows_local') AS c
 WHERE q.distributed = 'aws_rows'
 ORDER BY q.n;

-- billing's partial twins (src/pg/citus_partials.cpp). With billing loaded
-- in the workers' sessions (session_preload_libraries, as README "Citus"
-- says), a worker plans Citus's worker_partial_agg(<billing cost
-- aggregate>, ...) as billing._citus_partial_<aggregate>(...), which
-- computes the same state without Citus's per-row ROW() and look-ups: every
-- form above gives the local copy's rows. With
-- billing.citus_partial_aggregates = off on the workers, Citus's own
-- worker_partial_agg again, and the same rows. (Worker sessions that load
-- billing only when a query first calls it plan that first query through
-- Citus's worker_partial_agg.)
-- (what citus_share_catalog() checks, to say when they do not)
SELECT billing._citus_workers_load_billing() AS workers_load_billing;
SELECT bool_and(w.success) AS preloaded_on_every_worker
  FROM run_command_on_workers(format($$BEGIN; SET LOCAL citus.enable_ddl_propagation = off;
                                      ALTER DATABASE %I SET session_preload_libraries = 'billing'; COMMIT$$,
                                     current_database())) AS w;
\c
SET timezone = 'UTC';
SET citus.coordinator_aggregation_strategy = 'disabled';
SET client_min_messages = error;
SELECT billing._citus_workers_load_billing() AS workers_load_billing;
-- What the workers run for their shards (the one task EXPLAIN shows).
CREATE FUNCTION citus_test.worker_aggregate(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    plan text := citus_test.plan_text(query);
BEGIN
    -- (the task's query text names worker_partial_agg either way; its
    -- plan's output, the aggregate the worker runs)
    RETURN CASE WHEN plan LIKE '%billing._citus_partial_%' THEN 'billing''s partial twin'
                WHEN plan LIKE '%worker_partial_agg(''%''::oid%' THEN 'Citus''s worker_partial_agg'
                ELSE 'no worker_partial_agg' END
           || CASE WHEN plan LIKE '%Gather%' THEN ', in parallel' ELSE '' END;
END
$$;
SELECT q.name, citus_test.worker_aggregate(format(q.query, q.distributed)) AS workers_run, c.same, c.nrows
  FROM citus_test.split_forms AS q, LATERAL citus_test.compare(q.query, q.distributed, q.local) AS c
 ORDER BY q.n;
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL billing.citus_partial_aggregates = off;
SELECT q.name, citus_test.worker_aggregate(format(q.query, q.distributed)) AS workers_run, c.same, c.nrows
  FROM citus_test.split_forms AS q, LATERAL citus_test.compare(q.query, q.distributed, q.local) AS c
 ORDER BY q.n;
COMMIT;
-- In parallel on the workers (parallel plans made free there): the
-- twins' partial states, from each parallel worker, combined by
-- billing.cost_state_combine under a Gather; the same rows.
SELECT bool_and(w.success) AS parallel_on_every_worker
  FROM run_command_on_workers(format($$BEGIN; SET LOCAL citus.enable_ddl_propagation = off;
                                      ALTER DATABASE %1$I SET parallel_setup_cost = 0;
                                      ALTER DATABASE %1$I SET parallel_tuple_cost = 0;
                                      ALTER DATABASE %1$I SET min_parallel_table_scan_size = 0; COMMIT$$,
                                     current_database())) AS w;
\c
SET timezone = 'UTC';
SET citus.coordinator_aggregation_strategy = 'disabled';
SET client_min_messages = error;
SELECT q.name, citus_test.worker_aggregate(format(q.query, q.distributed)) AS workers_run, c.same, c.nrows
  FROM citus_test.split_forms AS q, LATERAL citus_test.compare(q.query, q.distributed, q.local) AS c
 WHERE q.name IN ('jsonb at', 'text at', 'FILTER', 'by model', 'aws at')
 ORDER BY q.n;
SELECT bool_and(w.success) AS reset_on_every_worker
  FROM run_command_on_workers(format($$BEGIN; SET LOCAL citus.enable_ddl_propagation = off;
                                      ALTER DATABASE %1$I RESET session_preload_libraries;
                                      ALTER DATABASE %1$I RESET parallel_setup_cost;
                                      ALTER DATABASE %1$I RESET parallel_tuple_cost;
                                      ALTER DATABASE %1$I RESET min_parallel_table_scan_size; COMMIT$$,
                                     current_database())) AS w;
DROP FUNCTION citus_test.worker_aggregate(text);
DROP TABLE citus_test.split_forms;
