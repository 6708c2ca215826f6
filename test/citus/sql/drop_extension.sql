-- DROP EXTENSION billing while a distributed table is tracked by its
-- shards' triggers and the catalog is shared: the event trigger untracks
-- the table first, on every node, and leaves it as the app had it (every
-- row, writable, no billing trigger on any shard); billing can then be
-- created again and track it anew. Runs last: it drops the extension.
SET timezone = 'UTC';
CREATE TABLE citus_test.drop_messages (id bigint, conversation_id text, role text, content text,
                                       data jsonb, created_at timestamptz);
SELECT create_distributed_table('citus_test.drop_messages', 'conversation_id', shard_count => 4);
-- 20 replies of gpt-4o, 100 prompt and 50 completion tokens each: 20 x 0.00075 = 0.015
INSERT INTO citus_test.drop_messages
SELECT g, 'c' || (g % 5), 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}',
       '2026-11-10'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 20) AS g;
SELECT tracked FROM billing.track_messages('citus_test.drop_messages');
SELECT billing._citus_triggered(t.id) AS triggered FROM billing.tracked_tables AS t
 WHERE t.relation = 'citus_test.drop_messages'::regclass;
SELECT billing.citus_share_catalog() AS nodes;
-- Written after tracking: through the shards' trigger. 5 x 0.00075 more.
INSERT INTO citus_test.drop_messages
SELECT g, 'c' || (g % 5), 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}',
       '2026-11-11'
  FROM generate_series(21, 25) AS g;
SELECT sum(cost) AS cost, sum(messages) AS messages FROM billing.conversation_costs
 WHERE source_table = 'citus_test.drop_messages'::regclass;

-- billing's objects for the table on each worker: the trigger function,
-- the trigger on each of its shards there, the co-located tables' shards.
SELECT result::int > 0 AS billing_objects_on_worker
  FROM run_command_on_workers($$SELECT (SELECT count(*) FROM pg_proc WHERE proname LIKE 'citus\_track\_%')
                                       + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'billing\_track%')$$);

-- (local_tracking's refused create_distributed_table of a tracked local
-- table left a copy of its trigger function on each worker: Citus copies
-- it before it refuses the table)
SELECT result AS leftover_trigger_functions
  FROM run_command_on_workers($$SELECT count(*) FROM pg_proc WHERE proname ~ '^track_[0-9]+(_full)?$'$$);

-- The shared catalog is not the extension's (Citus cannot drop a
-- reference table that belongs to one): unshared first, as documented.
-- (and setup's view on billing.usage_problem goes first: without CASCADE
-- the drop is refused, and its untracking rolled back with it)
SELECT billing.citus_unshare_catalog();
DROP VIEW citus_test.plain_usage;
DROP EXTENSION billing;

-- Nothing of billing's is left on any node but the empty schema billing
-- (PostgreSQL leaves it, as without Citus), and the table is the app's.
SELECT count(*) AS billing_schemas FROM pg_namespace WHERE nspname = 'billing';
SELECT result AS left_on_worker
  FROM run_command_on_workers($$SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'billing')
                                       + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'citus\_track\_%'
                                                                        OR proname LIKE 'track\_%')
                                       + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'billing\_%')$$);
INSERT INTO citus_test.drop_messages VALUES
    (26, 'c1', 'user', 'still writable', '{}', '2026-11-12');
UPDATE citus_test.drop_messages SET content = 'edited' WHERE id = 1;
DELETE FROM citus_test.drop_messages WHERE id = 2;
SELECT count(*) AS rows_kept FROM citus_test.drop_messages;

-- Created again: the table is tracked anew, from its rows as they are now:
-- 24 replies (25 less the one deleted) x 0.00075 = 0.018, 25 messages.
CREATE EXTENSION billing;
SELECT tracked FROM billing.track_messages('citus_test.drop_messages');
SELECT sum(cost) AS cost, sum(messages) AS messages FROM billing.conversation_costs
 WHERE source_table = 'citus_test.drop_messages'::regclass;
SELECT billing.untrack_messages('citus_test.drop_messages');
DROP TABLE citus_test.drop_messages;
