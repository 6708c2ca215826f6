-- The data of the Citus tests: messages distributed by conversation_id (8
-- shards over the two workers) and the same rows in a local table on the
-- coordinator, messages_local; AWS usage likewise (aws_rows, aws_rows_local).
-- Deterministic, with fixed dates (2024-09-01 to 2025-02-27 UTC, in id
-- order, so that the few rows of each odd kind fall in every month; across
-- gpt-4o's price change of 2024-10-02 and before o1's first price of
-- 2024-12-17), so that the totals do not depend on today's date.
SET timezone = 'UTC';
SET citus.shard_count = 8;
SET citus.shard_replication_factor = 1;

CREATE SCHEMA citus_test;

-- (A distributed table's unique keys must include its distribution column.)
CREATE TABLE messages_local (
    id              bigint      NOT NULL,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL,
    data            jsonb,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, id)
);
-- 20,000 messages in 400 conversations: every other one a user's (no usage);
-- the replies name gpt-4o, gpt-4o-mini or o1 (a third of them with cached
-- tokens), 10 name the unknown model gpt-9, 10 have a token count "12a"
-- (invalid usage), 10 have no usage at all (a model only).
INSERT INTO messages_local (id, conversation_id, role, data, created_at)
SELECT i,
       overlay(overlay(md5('conversation ' || i % 400) PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid,
       CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,
       CASE
           WHEN i % 2 = 0 THEN jsonb_build_object('content_length', i % 50)
           WHEN i % 2000 = 1 THEN '{"model": "gpt-4o", "prompt_tokens": "12a", "completion_tokens": 3}'
           WHEN i % 2000 = 3 THEN jsonb_build_object('model', 'gpt-9', 'prompt_tokens', 1000 + i % 7, 'completion_tokens', 20)
           WHEN i % 2000 = 5 THEN '{"model": "gpt-4o-mini"}'
           ELSE jsonb_build_object('model', (ARRAY['gpt-4o', 'gpt-4o-mini', 'o1', 'gpt-4o-mini'])[1 + (i / 2) % 4],
                                   'prompt_tokens', 100 + (i * 37) % 9000,
                                   'completion_tokens', 10 + (i * 13) % 700)
                || CASE WHEN i % 3 = 0
                        THEN jsonb_build_object('prompt_tokens_details',
                                                jsonb_build_object('cached_tokens', (100 + (i * 37) % 9000) / 2))
                        ELSE '{}' END
       END,
       timestamptz '2024-09-01 00:00+00' + i * interval '777 seconds'
  FROM generate_series(1, 20000) AS i;

CREATE TABLE messages (LIKE messages_local INCLUDING ALL);
SELECT create_distributed_table('messages', 'conversation_id');
INSERT INTO messages SELECT * FROM messages_local;

CREATE TABLE aws_rows_local (
    account_id bigint      NOT NULL,
    service    text,
    quantity   numeric,
    at         timestamptz NOT NULL
);
-- 3,000 rows: ses, s3, lambda, and an unknown service "sqs-fifo" every 500th row.
INSERT INTO aws_rows_local
SELECT i % 37,
       CASE WHEN i % 500 = 7 THEN 'sqs-fifo' ELSE (ARRAY['ses', 's3', 'lambda'])[1 + i % 3] END,
       round((i * 7) % 1000 + (i % 13) / 8.0, 6),
       timestamptz '2024-09-01 00:00+00' + i * interval '5180 seconds'
  FROM generate_series(1, 3000) AS i;
CREATE TABLE aws_rows (LIKE aws_rows_local INCLUDING ALL);
SELECT create_distributed_table('aws_rows', 'account_id');
INSERT INTO aws_rows SELECT * FROM aws_rows_local;

SELECT (SELECT count(*) FROM messages) AS messages, (SELECT count(*) FROM messages_local) AS messages_local,
       (SELECT count(*) FROM aws_rows) AS aws_rows,
       (SELECT count(DISTINCT nodeport) FROM pg_dist_shard_placement) AS nodes_with_shards;

-- The rows of a query, as sorted text: the same query on the distributed
-- table and on the local copy must give the same array.
CREATE FUNCTION citus_test.rows_of(query text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    a text[] := '{}';
BEGIN
    FOR r IN EXECUTE query LOOP
        a := a || r::text;
    END LOOP;
    RETURN (SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM unnest(a) AS x);
END
$$;

-- A query's plan as one text (EXPLAIN VERBOSE: with the one task Citus
-- shows, what a worker runs).
CREATE FUNCTION citus_test.plan_text(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    line text;
    plan text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || query LOOP
        plan := plan || line || E'\n';
    END LOOP;
    RETURN plan;
END
$$;

-- How Citus runs a query on the distributed table: 'split' when the workers
-- run worker_partial_agg and the coordinator coord_combine_agg, 'on workers'
-- when the workers run the whole aggregate.
CREATE FUNCTION citus_test.plan_of(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    plan text := citus_test.plan_text(query);
BEGIN
    RETURN CASE WHEN plan LIKE '%worker_partial_agg%' AND plan LIKE '%coord_combine_agg%' THEN 'split'
                WHEN plan LIKE '%worker_partial_agg%' OR plan LIKE '%coord_combine_agg%' THEN 'half split?'
                ELSE 'on workers' END;
END
$$;

-- The query %1$s on the distributed table and on its local copy: its plan
-- on the distributed table and whether both give the same rows.
CREATE FUNCTION citus_test.compare(query text, distributed text DEFAULT 'messages',
                                   local text DEFAULT 'messages_local',
                                   OUT plan text, OUT same boolean, OUT nrows int)
LANGUAGE plpgsql AS $$
DECLARE
    d text[];
    l text[];
BEGIN
    plan := citus_test.plan_of(format(query, distributed));
    d := citus_test.rows_of(format(query, distributed));
    l := citus_test.rows_of(format(query, local));
    same := d = l;
    nrows := cardinality(d);
END
$$;
