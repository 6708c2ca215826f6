-- A node added to the cluster while a distributed table is tracked by its
-- shards' triggers, as a DBA grows a cluster; the table was distributed
-- before billing was created (the usual order for an app that already
-- runs on Citus). When Citus activates the node, it creates the table's
-- trigger functions in schema billing there before it creates the
-- extension, and it copies the table's triggers, billing's TRUNCATE
-- trigger too (which billing keeps on the coordinator's copy only), to the
-- node and to the shards it places there. Before: citus_add_node failed
-- ("billing: schema billing already exists and holds objects"); once a
-- shard was on the new node, TRUNCATE of the table failed ("cannot
-- execute a distributed query from a query on a shard"); and after the
-- table was untracked, DROP EXTENSION billing failed on that node (the
-- trigger copies depended on it). Runs last: it adds a node for good.
SET timezone = 'UTC';
SET client_min_messages = warning;
DROP EXTENSION billing;
CREATE TABLE citus_test.grown (id bigint, conversation_id text, role text, content text,
                               data jsonb, created_at timestamptz, PRIMARY KEY (conversation_id, id));
SELECT create_distributed_table('citus_test.grown', 'conversation_id', shard_count => 4);
-- An empty table like it in schema public, co-located (its shards move
-- with grown's): Citus names a shard there without its schema.
CREATE TABLE public.grown_public (LIKE citus_test.grown INCLUDING ALL);
SELECT create_distributed_table('public.grown_public', 'conversation_id', colocate_with => 'citus_test.grown');
CREATE EXTENSION billing;
SELECT billing.citus_share_catalog() AS nodes;
-- 20 replies of gpt-4o, 100 prompt and 50 completion tokens each, in 5
-- conversations: 20 x (100 x 2.50 + 50 x 10.00) / 1M = 20 x 0.00075 = 0.015.
CREATE FUNCTION citus_test.grown_rows(first int, last int) RETURNS SETOF citus_test.grown
LANGUAGE sql IMMUTABLE AS $$
    SELECT g::bigint, 'c' || (g % 5), 'assistant', 'x',
           '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}'::jsonb,
           timestamptz '2026-11-10' + g * interval '1 minute'
      FROM generate_series(first, last) AS g
$$;
INSERT INTO citus_test.grown SELECT * FROM citus_test.grown_rows(1, 20);
SELECT tracked FROM billing.track_messages('citus_test.grown');
SELECT tracked FROM billing.track_messages('public.grown_public');
SELECT billing._citus_triggered(t.id) AS triggered FROM billing.tracked_tables AS t
 WHERE t.relation = 'citus_test.grown'::regclass;

-- Citus creates the objects of pg_dist_object on the new node in the order
-- it reads them (its heap's), dependencies first; billing's Citus tables
-- (the ledger, estimates and problems of each tracked table) do not depend
-- on the extension, so when they are read first (as they may be once
-- earlier changes have left free space in pg_dist_object: a run of this
-- test failed so), they are made before the extension, and CREATE
-- EXTENSION there must accept them. Here every other row is taken out,
-- the table compacted, and those rows put back after billing's tables.
CREATE TABLE citus_test.other_dist_objects AS
SELECT * FROM pg_catalog.pg_dist_object
 WHERE NOT (classid = 'pg_class'::regclass AND objid::regclass::text LIKE 'billing.citus\_%');
DELETE FROM pg_catalog.pg_dist_object
 WHERE NOT (classid = 'pg_class'::regclass AND objid::regclass::text LIKE 'billing.citus\_%');
VACUUM FULL pg_catalog.pg_dist_object;
INSERT INTO pg_catalog.pg_dist_object SELECT * FROM citus_test.other_dist_objects;
DROP TABLE citus_test.other_dist_objects;
SELECT max(o.ctid) FILTER (WHERE o.classid = 'pg_class'::regclass AND o.objid::regclass::text LIKE 'billing.citus\_%')
     < min(o.ctid) FILTER (WHERE NOT (o.classid = 'pg_class'::regclass AND o.objid::regclass::text LIKE 'billing.citus\_%'))
       AS billing_tables_read_first
  FROM pg_catalog.pg_dist_object AS o;
-- The node is added, the catalog shared with it again (as documented), and
-- the shard of conversation c1 moved there.
SELECT citus_add_node('127.0.0.1', current_setting('citus_test.spare_port')::int) > 0 AS added;
SELECT billing.citus_share_catalog() AS nodes;
SELECT s.shardid AS moved_shard, p.nodeport AS from_port
  FROM pg_dist_shard AS s JOIN pg_dist_shard_placement AS p USING (shardid)
 WHERE s.shardid = get_shard_id_for_distribution_column('citus_test.grown', 'c1') \gset
SELECT citus_move_shard_placement(:moved_shard, '127.0.0.1', :from_port,
                                  '127.0.0.1', current_setting('citus_test.spare_port')::int,
                                  shard_transfer_mode => 'block_writes') IS NOT NULL AS moved;
CALL citus_cleanup_orphaned_resources();
-- On the new node: billing's row trigger on each table's copy and on its
-- moved shard, and the copies of the TRUNCATE trigger there (2 for each
-- of the two tables: 4).
SELECT w.nodeport = current_setting('citus_test.spare_port')::int AS new_node,
       w.result AS truncate_trigger_copies
  FROM run_command_on_workers($$SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'billing\_track\_truncate%'$$) AS w
 ORDER BY w.nodeport;

-- Writes after it, also into the moved shard (conversations c0 to c4): 5
-- more replies. 25 x 0.00075 = 0.01875, c1's 5 x 0.00075 = 0.00375.
INSERT INTO citus_test.grown SELECT * FROM citus_test.grown_rows(21, 25);
SELECT sum(cost) AS cost, sum(messages) AS messages,
       sum(cost) FILTER (WHERE conversation_id = 'c1') AS c1_cost
  FROM billing.conversation_costs WHERE source_table = 'citus_test.grown'::regclass;
SELECT billing.merge() >= 0 AS merged;
SELECT sum(cost) AS cost, sum(messages) AS messages FROM billing.conversation_costs
 WHERE source_table = 'citus_test.grown'::regclass;

-- A role that reads the figures, set up as the README says ("Citus"),
-- after the node was added: on the coordinator (the schema's USAGE and
-- the table's SELECT reach the workers), then billing's tables on every
-- worker, where Citus refuses such a GRANT unless DDL propagation is off
-- (billing.cluster_catalog and the ledger are Citus tables there).
CREATE ROLE grown_reader LOGIN;   -- (Citus connects to the workers as the role)
GRANT USAGE ON SCHEMA billing, citus_test TO grown_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO grown_reader;
GRANT SELECT ON citus_test.grown TO grown_reader;
SELECT bool_and(w.success) AS granted_on_every_worker, count(*) AS workers
  FROM run_command_on_workers($$BEGIN; SET LOCAL citus.enable_ddl_propagation = off;
                                GRANT SELECT ON ALL TABLES IN SCHEMA billing TO grown_reader; COMMIT$$) AS w;
-- (one reply more, unmerged: 26 x 0.00075 = 0.0195)
INSERT INTO citus_test.grown SELECT * FROM citus_test.grown_rows(100, 100);
SET ROLE grown_reader;
SELECT sum(cost) AS cost, sum(messages) AS messages FROM billing.conversation_costs
 WHERE source_table = 'citus_test.grown'::regclass;
SELECT billing.dashboard('2026-11-01', '2026-12-01') -> 'openai' ->> 'cost' AS dashboard_cost;
SELECT billing.openai_cost(data, created_at) AS aggregate_cost FROM citus_test.grown;
RESET ROLE;

-- TRUNCATE: billing's figures of the table go with its rows (the copies on
-- the new node do nothing), then 4 new replies: 4 x 0.00075 = 0.003.
TRUNCATE citus_test.grown;
SELECT count(*) AS rows_left FROM citus_test.grown;
SELECT count(*) AS cost_rows FROM billing.conversation_costs WHERE source_table = 'citus_test.grown'::regclass;
INSERT INTO citus_test.grown SELECT * FROM citus_test.grown_rows(26, 29);
SELECT sum(cost) AS cost, sum(messages) AS messages FROM billing.conversation_costs
 WHERE source_table = 'citus_test.grown'::regclass;

-- Untracked: no billing trigger is left on any node, the new one included
-- (the shard of the table in schema public too).
SELECT billing.untrack_messages('citus_test.grown');
SELECT billing.untrack_messages('public.grown_public');
SELECT w.nodeport = current_setting('citus_test.spare_port')::int AS new_node, w.result AS billing_triggers
  FROM run_command_on_workers($$SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'billing\_%'$$) AS w
 ORDER BY w.nodeport;
-- And billing can be dropped from the grown cluster, nothing of it left.
SELECT billing.citus_unshare_catalog();
DROP EXTENSION billing;
SELECT w.nodeport = current_setting('citus_test.spare_port')::int AS new_node, w.result AS left_on_worker
  FROM run_command_on_workers($$SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'billing')
                                       + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'citus\_track\_%')
                                       + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'billing\_%')$$) AS w
 ORDER BY w.nodeport;
INSERT INTO citus_test.grown SELECT * FROM citus_test.grown_rows(30, 31);
SELECT count(*) AS rows_kept FROM citus_test.grown;
CREATE EXTENSION billing;
DROP FUNCTION citus_test.grown_rows(int, int);
DROP TABLE citus_test.grown, public.grown_public;
REVOKE USAGE ON SCHEMA billing, citus_test FROM grown_reader;
DROP ROLE grown_reader;
