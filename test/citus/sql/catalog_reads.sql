-- The split aggregate reads billing.catalog_state once per query on each
-- shard (one worker_partial_agg call site, one shard query), not once per
-- row: Citus's worker_partial_agg_sfunc calls billing's transition function
-- through a fresh FmgrInfo for every row, and billing finds its call state
-- by the query instead (src/pg/cost_call.cpp, call_site_memory).
--
-- Counted with the workers' table statistics of billing.catalog_state
-- (every read is a scan of its one row). A backend reports its statistics
-- when it exits: without cached connections, the workers' backends of a
-- query exit at the end of its transaction, and catalog_reads_since waits
-- for the count to settle.
SET timezone = 'UTC';
SET citus.coordinator_aggregation_strategy = 'disabled';
SET client_min_messages = error;
SET citus.max_cached_conns_per_worker = 0;

CREATE FUNCTION citus_test.catalog_reads() RETURNS bigint
LANGUAGE sql AS $$
SELECT sum(result::bigint)::bigint
  FROM run_command_on_workers($w$SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0)
                                   FROM pg_stat_user_tables
                                  WHERE relid = 'billing.catalog_state'::regclass$w$)
$$;
-- The reads since `before`, once the count has not moved for a second (at
-- most 30 s).
CREATE FUNCTION citus_test.catalog_reads_since(before bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    last bigint := citus_test.catalog_reads();
    now_ bigint;
    still int := 0;
BEGIN
    FOR i IN 1..300 LOOP
        PERFORM pg_sleep(0.1);
        now_ := citus_test.catalog_reads();
        IF now_ = last AND now_ > before THEN
            still := still + 1;
            EXIT WHEN still >= 10;
        ELSE
            still := 0;
        END IF;
        last := now_;
    END LOOP;
    RETURN last - before;
END
$$;

-- Shards holding messages (a shard query runs on each), and the rows.
SELECT count(DISTINCT get_shard_id_for_distribution_column('messages', conversation_id)) AS shards,
       count(*) AS rows_
  FROM messages_local;

-- One aggregate, split: one read per shard query.
SELECT citus_test.plan_of('SELECT billing.openai_cost(data, created_at) FROM messages') AS plan;
SELECT citus_test.catalog_reads() AS before \gset
SELECT billing.openai_cost(data, created_at) FROM messages;
SELECT citus_test.catalog_reads_since(:before) AS catalog_reads;

-- Grouped by month (split): still one per shard query, whatever the groups.
SELECT citus_test.catalog_reads() AS before \gset
SELECT date_trunc('month', created_at) AS month, billing.openai_cost(data, created_at)
  FROM messages GROUP BY 1 ORDER BY 1;
SELECT citus_test.catalog_reads_since(:before) AS catalog_reads;

-- Two aggregates (jsonb and text form): one read per aggregate and shard query.
SELECT citus_test.catalog_reads() AS before \gset
SELECT billing.openai_cost(data) IS NOT NULL AS jsonb_priced,
       billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint, (data->>'completion_tokens')::bigint)
           FILTER (WHERE billing.usage_problem(data) IS NULL) IS NOT NULL AS text_priced
  FROM messages;
SELECT citus_test.catalog_reads_since(:before) AS catalog_reads;

-- aws_cost on aws_rows (8 shards, 3,000 rows).
SELECT citus_test.catalog_reads() AS before \gset
SELECT billing.aws_cost(service, quantity, at) FROM aws_rows;
SELECT citus_test.catalog_reads_since(:before) AS catalog_reads;

-- On the coordinator's local copy (plain PostgreSQL's executor): one read
-- per aggregate and query, as before; counted in this transaction.
BEGIN;
SELECT billing.openai_cost(data, created_at) AS at_created, billing.openai_cost(data) IS NOT NULL AS now_priced
  FROM messages_local;
SELECT seq_scan + coalesce(idx_scan, 0) AS local_catalog_reads
  FROM pg_stat_xact_user_tables WHERE relid = 'billing.catalog_state'::regclass;
COMMIT;
