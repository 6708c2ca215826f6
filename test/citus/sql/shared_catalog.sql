-- One catalog for the cluster: billing.citus_share_catalog() makes the
-- coordinator's prices and settings every node's, changed in the same
-- transaction (visible everywhere on commit, nowhere on rollback); a shard
-- query that would price with another catalog than the coordinator's fails.
SET timezone = 'UTC';
SET citus.coordinator_aggregation_strategy = 'disabled';
SET client_min_messages = error;   -- (the aggregates' warnings: o1, gpt-9, "12a")

-- Whether every worker's prices and settings are the coordinator's. (Times
-- as epochs: run_command_on_workers's sessions do not have this session's
-- TimeZone and DateStyle, which pg_regress sets, so a time's text would
-- differ between the nodes even when the rows are equal.)
CREATE FUNCTION citus_test.catalog_agrees() RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    q text := $q$SELECT md5(concat_ws('|',
                  (SELECT string_agg((to_jsonb(p) || jsonb_build_object('effective_from', extract(epoch FROM p.effective_from)))::text,
                                     ',' ORDER BY p.model, p.effective_from) FROM billing.model_prices AS p),
                  (SELECT string_agg((to_jsonb(p) || jsonb_build_object('effective_from', extract(epoch FROM p.effective_from)))::text,
                                     ',' ORDER BY p.service, p.effective_from) FROM billing.aws_prices AS p),
                  (SELECT string_agg(s::text, ',' ORDER BY s.name) FROM billing.settings AS s)))$q$;
    mine text;
BEGIN
    EXECUTE q INTO mine;
    RETURN (SELECT bool_and(w.success AND w.result = mine) FROM run_command_on_workers(q) AS w);
END
$$;
-- The total of the distributed table and of its local copy.
CREATE FUNCTION citus_test.totals(OUT distributed numeric, OUT local numeric)
LANGUAGE sql AS $$
    SELECT (SELECT billing.openai_cost(data, created_at) FROM messages),
           (SELECT billing.openai_cost(data, created_at) FROM messages_local)
$$;
CREATE TABLE citus_test.before AS SELECT * FROM citus_test.totals();   -- (kept across \c below)
SELECT distributed = local AS same FROM citus_test.before;

-- Not shared: a price added on the coordinator is not seen by the workers.
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('gpt-9', '2020-01-01', 1.00, 2.00);
SELECT citus_test.catalog_agrees() AS agrees, distributed = local AS same FROM citus_test.totals();
DELETE FROM billing.model_prices WHERE model = 'gpt-9';

SELECT billing.citus_share_catalog() AS nodes;
SELECT citus_test.catalog_agrees() AS agrees;
-- again: nothing changes; it says that the workers' sessions do not load
-- billing (README "Citus"; split_aggregates loads it there)
SET client_min_messages = notice;
SELECT billing.citus_share_catalog() AS nodes;
SET client_min_messages = error;

-- A price added and committed: every node has it. The 10 gpt-9 replies of
-- setup (ids 3, 2003, ..., 18003) have 1000 + id % 7 prompt tokens (id % 7:
-- 3, 1, 6, 4, 2, 0, 5, 3, 1, 6, sum 31) and 20 completion tokens each:
-- 10,031 x $1.00/1M + 200 x $2.00/1M = 0.010031 + 0.0004 = 0.010431 more.
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('gpt-9', '2020-01-01', 1.00, 2.00);
SELECT citus_test.catalog_agrees() AS agrees;
SELECT t.distributed - b.distributed AS added, t.local - b.local AS added_local
  FROM citus_test.totals() AS t, citus_test.before AS b;

-- Rolled back: seen nowhere.
BEGIN;
UPDATE billing.model_prices SET input_per_1m = 101 WHERE model = 'gpt-9';
ROLLBACK;
SELECT citus_test.catalog_agrees() AS agrees;
SELECT t.distributed - b.distributed AS added FROM citus_test.totals() AS t, citus_test.before AS b;

-- In the transaction that makes the change, the shard queries go over the
-- connections that made it: 10,031 x $101/1M + 0.0004 = 1.013531 more.
BEGIN;
UPDATE billing.model_prices SET input_per_1m = 101 WHERE model = 'gpt-9';
SELECT t.distributed - b.distributed AS added, t.local - b.local AS added_local
  FROM citus_test.totals() AS t, citus_test.before AS b;
ROLLBACK;
-- ... unless the query opens more connections to a node, which do not see
-- the change: the query fails (it would have priced gpt-9 at $1.00 on some
-- shards); under citus.multi_shard_modify_mode = 'sequential' it does not.
\set VERBOSITY terse
BEGIN;
SET LOCAL citus.force_max_query_parallelization = on;
UPDATE billing.model_prices SET input_per_1m = 101 WHERE model = 'gpt-9';
SELECT billing.openai_cost(data, created_at) FROM messages;
ROLLBACK;
BEGIN;
SET LOCAL citus.force_max_query_parallelization = on;
UPDATE billing.model_prices SET input_per_1m = 101 WHERE model = 'gpt-9';
SELECT count(*), sum(c) FROM (SELECT conversation_id, billing.openai_cost(data, created_at) AS c FROM messages GROUP BY 1) AS s;
ROLLBACK;
\set VERBOSITY default
BEGIN;
SET LOCAL citus.multi_shard_modify_mode = 'sequential';
UPDATE billing.model_prices SET input_per_1m = 101 WHERE model = 'gpt-9';
SELECT t.distributed - b.distributed AS added, t.local - b.local AS added_local
  FROM citus_test.totals() AS t, citus_test.before AS b;
ROLLBACK;

-- Another session's change, not committed: this one prices with the
-- committed catalog everywhere, without an error.
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('changer', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                                        current_setting('port'), current_database(), current_user));
SELECT dblink_exec('changer', 'BEGIN');
SELECT dblink_exec('changer', $$UPDATE billing.model_prices SET input_per_1m = 101 WHERE model = 'gpt-9'$$);
SELECT t.distributed - b.distributed AS added FROM citus_test.totals() AS t, citus_test.before AS b;
SELECT dblink_exec('changer', 'ROLLBACK');
SELECT dblink_disconnect('changer');
DROP EXTENSION dblink;

-- A node whose prices were changed on it alone (as one restored from an
-- older backup, or added without citus_share_catalog()): every query that
-- prices there fails and says what differs, instead of adding up shards
-- priced with two catalogs; citus_share_catalog() makes the coordinator's
-- catalog every node's again. Checked whenever a node loads its prices
-- (after any change to them), AWS prices and settings included.
\set VERBOSITY terse
SELECT result FROM run_command_on_workers($$UPDATE billing.model_prices SET input_per_1m = 5 WHERE model = 'gpt-4o'$$);
SELECT billing.openai_cost(data, created_at) FROM messages;
SELECT billing.citus_share_catalog() AS nodes;
SELECT citus_test.catalog_agrees() AS agrees;
SELECT t.distributed - b.distributed AS added FROM citus_test.totals() AS t, citus_test.before AS b;
SELECT result FROM run_command_on_workers($$UPDATE billing.aws_prices SET note = 'changed here'
                                             WHERE service = (SELECT min(service) FROM billing.aws_prices)$$);
SELECT billing.openai_cost(data, created_at) FROM messages;
-- (a settings change alone is seen when the node next loads its prices:
-- here its catalog generation is renewed as a price change renews it)
SELECT billing.citus_share_catalog() AS nodes;
SELECT result FROM run_command_on_workers($$INSERT INTO billing.settings VALUES ('month_time_zone', 'Europe/Paris')$$);
SELECT result FROM run_command_on_workers($$UPDATE billing.catalog_state SET generation = nextval('billing.catalog_generation')$$);
SELECT billing.openai_cost(data, created_at) FROM messages;
SELECT billing.citus_share_catalog() AS nodes;
SELECT citus_test.catalog_agrees() AS agrees;
SELECT t.distributed - b.distributed AS added FROM citus_test.totals() AS t, citus_test.before AS b;
\set VERBOSITY default

-- Settings too: month_time_zone groups the distributed table's months as
-- the coordinator's.
UPDATE billing.settings SET value = 'America/New_York' WHERE name = 'month_time_zone';
SELECT citus_test.catalog_agrees() AS agrees;
SELECT plan, same, nrows FROM citus_test.compare(
    'SELECT billing.month_of(created_at), count(*), billing.openai_cost(data, created_at) FROM %s GROUP BY 1');
UPDATE billing.settings SET value = 'UTC' WHERE name = 'month_time_zone';

-- A query across a price change. Citus commits the change on the
-- coordinator, then on each worker, and each node reads with its own
-- snapshot, so a query can meet workers that price with another catalog
-- than the coordinator's snapshot sees. Where the workers' sessions load
-- billing, its partial twins stamp each worker's state with the version of
-- the shared catalog that priced it, and the coordinator fails the query
-- when a version is not the one its snapshot sees, rather than add up
-- totals of two catalogs.
SELECT bool_and(w.success) AS preloaded_on_every_worker
  FROM run_command_on_workers(format($$BEGIN; SET LOCAL citus.enable_ddl_propagation = off;
                                      ALTER DATABASE %I SET session_preload_libraries = 'billing'; COMMIT$$,
                                     current_database())) AS w;
\c
SET timezone = 'UTC';
SET citus.coordinator_aggregation_strategy = 'disabled';
SET client_min_messages = error;
-- Every node holds the version the coordinator sent.
SELECT bool_and(w.result = (SELECT cluster_version::text FROM billing.catalog_state)) AS same_version
  FROM run_command_on_workers('SELECT cluster_version FROM billing.catalog_state') AS w;
SELECT t.distributed - b.distributed AS added, t.local - b.local AS added_local
  FROM citus_test.totals() AS t, citus_test.before AS b;
-- The window, held open: a REPEATABLE READ transaction whose snapshots on
-- the coordinator and on the worker of the first conversation's shard
-- were taken before another session changed gpt-9's input price to $3.00
-- and committed it everywhere; its other snapshots come after. Priced at
-- $3.00 there and at $1.00 as the coordinator sees it, the total would
-- have been neither catalog's; the query fails instead.
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('changer', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                                        current_setting('port'), current_database(), current_user));
SELECT conversation_id AS first_conversation FROM messages_local ORDER BY id LIMIT 1 \gset
\set VERBOSITY terse
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) AS gpt9_prices FROM billing.model_prices WHERE model = 'gpt-9';
SELECT count(*) > 0 AS first_conversation FROM messages WHERE conversation_id = :'first_conversation';
SELECT dblink_exec('changer', $$UPDATE billing.model_prices SET input_per_1m = 3.00 WHERE model = 'gpt-9'$$);
SELECT billing.openai_cost(data, created_at) FROM messages;
ROLLBACK;
-- The aggregates the stamp does not travel with fail too, once they have
-- run: one Citus pushes down whole (grouped by the distribution column:
-- each worker sends its final figures) and one split through Citus's
-- worker_partial_agg (billing.citus_partial_aggregates off on the
-- workers). The node that ran the query sees that a newer version of the
-- catalog committed after its snapshot (src/pg/citus_catalog_check.cpp).
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) AS gpt9_prices FROM billing.model_prices WHERE model = 'gpt-9';
SELECT dblink_exec('changer', $$UPDATE billing.model_prices SET input_per_1m = 4.00 WHERE model = 'gpt-9'$$);
SELECT count(*), sum(c) FROM (SELECT conversation_id, billing.openai_cost(data, created_at) AS c
                                FROM messages GROUP BY 1) AS s;
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL billing.citus_partial_aggregates = off;
SELECT count(*) AS gpt9_prices FROM billing.model_prices WHERE model = 'gpt-9';
SELECT dblink_exec('changer', $$UPDATE billing.model_prices SET input_per_1m = 3.00 WHERE model = 'gpt-9'$$);
SELECT billing.openai_cost(data, created_at) FROM messages;
ROLLBACK;
\set VERBOSITY default
-- A query that starts after the change: $3.00 everywhere, as on the local
-- copy: 10,031 x $3.00/1M + 0.0004 = 0.030493 more than before gpt-9.
SELECT t.distributed - b.distributed AS added, t.local - b.local AS added_local
  FROM citus_test.totals() AS t, citus_test.before AS b;
SELECT dblink_exec('changer', $$UPDATE billing.model_prices SET input_per_1m = 1.00 WHERE model = 'gpt-9'$$);
SELECT dblink_disconnect('changer');
DROP EXTENSION dblink;
SELECT bool_and(w.success) AS reset_on_every_worker
  FROM run_command_on_workers(format($$BEGIN; SET LOCAL citus.enable_ddl_propagation = off;
                                      ALTER DATABASE %I RESET session_preload_libraries; COMMIT$$,
                                     current_database())) AS w;
\c
SET timezone = 'UTC';
SET citus.coordinator_aggregation_strategy = 'disabled';
SET client_min_messages = error;

DELETE FROM billing.model_prices WHERE model = 'gpt-9';
SELECT citus_test.catalog_agrees() AS agrees;
SELECT t.distributed = b.distributed AS as_before FROM citus_test.totals() AS t, citus_test.before AS b;

-- Unshared: every node keeps its tables; the next change stays on the
-- coordinator.
SELECT billing.citus_unshare_catalog();
SELECT count(*) AS cluster_catalog FROM pg_dist_partition WHERE logicalrelid::text = 'billing.cluster_catalog';
-- (and no node keeps a version of it)
SELECT (SELECT cluster_version FROM billing.catalog_state) IS NULL
       AND bool_and(w.success AND coalesce(w.result, '') = '') AS no_version_anywhere
  FROM run_command_on_workers('SELECT cluster_version FROM billing.catalog_state') AS w;
SELECT citus_test.catalog_agrees() AS agrees;
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('gpt-9', '2020-01-01', 1.00, 2.00);
SELECT citus_test.catalog_agrees() AS agrees;
DELETE FROM billing.model_prices WHERE model = 'gpt-9';
SELECT citus_test.catalog_agrees() AS agrees;

-- Not on a worker.
\set VERBOSITY terse
SELECT result FROM run_command_on_workers($$SELECT billing.citus_share_catalog()$$);
DROP TABLE citus_test.before;
