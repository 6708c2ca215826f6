-- Tracking a distributed table: billing.track_messages on a table
-- distributed by conversation_id makes no trigger (its rows are in shards
-- on the workers); every merge() reads it whole, by a distributed query
-- without row locks, and replaces its rollups, frozen estimates and
-- problem rows. Its figures are those of the last merge. Compared with
-- the same rows in a local table tracked by its trigger: every view and
-- dashboard(), exactly, after the backfill, after inserts (one through a
-- worker), updates and deletes (before the merge the distributed table's
-- figures are still the last merge's), after the merge, a price change
-- and its removal; a table merge() cannot read does not stop it for the
-- others; untrack_messages removes everything.
SET timezone = 'UTC';
SET client_min_messages = warning;
SET citus.shard_count = 8;
SET billing.citus_triggers = off;   -- (this test: the recomputation; distributed_triggers.sql: the triggers)

-- 4,000 of setup's messages (ids 1 to 4000, two of each odd kind: an
-- invalid token count, the unknown model gpt-9, a reply with a model
-- only), in a distributed table and in a local copy.
CREATE TABLE citus_test.dist_messages (
    id              bigint      NOT NULL,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL,
    content         text        NOT NULL DEFAULT '',
    data            jsonb,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, id)
);
SELECT create_distributed_table('citus_test.dist_messages', 'conversation_id');
CREATE TABLE citus_test.local_messages (LIKE citus_test.dist_messages INCLUDING ALL);
INSERT INTO citus_test.dist_messages (id, conversation_id, role, data, created_at)
SELECT id, conversation_id, role, data, created_at FROM messages_local WHERE id <= 4000;
INSERT INTO citus_test.local_messages SELECT * FROM citus_test.dist_messages;

SELECT tracked, backfilled, messages, problems, unpriced_models
  FROM billing.track_messages('citus_test.dist_messages');
SELECT tracked, backfilled, messages, problems, unpriced_models
  FROM billing.track_messages('citus_test.local_messages');
-- No trigger on the distributed table or its shards, no function anywhere.
SELECT count(*) AS triggers FROM pg_trigger
 WHERE tgrelid = 'citus_test.dist_messages'::regclass AND NOT tgisinternal;
SELECT nodeport > 0 AS worker, result AS billing_triggers
  FROM run_command_on_workers($$SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'billing%'$$);

-- Each table's figures as a role that may read that table only (a role
-- sees the costs of the tracked tables it may SELECT): every view and
-- three dashboards (a whole month, a period across months, a month by
-- date); the source table's name left out.
CREATE ROLE reads_dist LOGIN;   -- (Citus reads the shards as the role: it logs in on the workers)
CREATE ROLE reads_local LOGIN;
GRANT USAGE ON SCHEMA billing, citus_test TO reads_dist, reads_local;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO reads_dist, reads_local;
GRANT SELECT ON citus_test.dist_messages TO reads_dist;
GRANT SELECT ON citus_test.local_messages TO reads_local;
CREATE FUNCTION citus_test.figures() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'monthly_history', (SELECT jsonb_agg(to_jsonb(h) ORDER BY h.month, h.source) FROM billing.monthly_history AS h),
        'conversation_costs', (SELECT jsonb_agg(to_jsonb(c) - 'source_table' ORDER BY c.month, c.conversation_id)
                                 FROM billing.conversation_costs AS c),
        'usage_problems', (SELECT jsonb_agg(to_jsonb(p) - 'source_table'
                                            ORDER BY p.kind, p.month, p.message_id, p.detail)
                             FROM billing.usage_problems AS p),
        'budget_status', (SELECT jsonb_agg(to_jsonb(b)) FROM billing.budget_status AS b),
        'dashboard_month', billing.dashboard('2025-01-01', '2025-02-01', months => 12),
        'dashboard_period', billing.dashboard('2024-10-15', '2025-01-20', top_conversations => 20, months => 3),
        'dashboard_at', billing.dashboard(at => '2024-12-10'))
$$;
CREATE FUNCTION citus_test.figures_as(r name) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    f jsonb;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    f := citus_test.figures();
    RESET ROLE;
    RETURN f;
END
$$;
-- same: every figure equal; differing: the ones that are not; then the
-- conversation rows and the messages of each (not vacuous).
CREATE FUNCTION citus_test.compare(OUT same boolean, OUT differing text[], OUT conversations integer,
                                   OUT dist_messages numeric, OUT local_messages numeric)
LANGUAGE plpgsql AS $$
DECLARE
    d jsonb := citus_test.figures_as('reads_dist');
    l jsonb := citus_test.figures_as('reads_local');
BEGIN
    same := d = l;
    differing := ARRAY(SELECT a.key FROM jsonb_each(d) AS a JOIN jsonb_each(l) AS b USING (key)
                        WHERE a.value <> b.value ORDER BY 1);
    conversations := jsonb_array_length(d -> 'conversation_costs');
    dist_messages := (SELECT sum((x ->> 'messages')::numeric) FROM jsonb_array_elements(d -> 'conversation_costs') AS x);
    local_messages := (SELECT sum((x ->> 'messages')::numeric) FROM jsonb_array_elements(l -> 'conversation_costs') AS x);
END
$$;

SET client_min_messages = error;   -- (the aggregates' warnings: o1, gpt-9, "12a")
-- 4,000 messages in 800 (month, conversation) rows, as local_tracking.
SELECT * FROM citus_test.compare();

-- The same writes on both: 200 new replies (ids 1001 to 1400, odd: the
-- assistant's), 100 updated (2001 to 2200, odd, with usage), 100 deleted
-- (3001 to 3100), and 10 written through a worker (ids 200001 to 200010):
-- 4000 + 200 - 100 + 10 = 4110 messages; the worker's are in January
-- 2025 in conversation 1, a month none of the 4,000 is in (they end 36
-- days after 2024-09-01, 777 s apart): 800 + 1 conversation rows.
INSERT INTO citus_test.dist_messages (id, conversation_id, role, data, created_at)
SELECT id + 100000, conversation_id, role, data, created_at + interval '1 hour'
  FROM citus_test.dist_messages WHERE role = 'assistant' AND id BETWEEN 1001 AND 1400;
UPDATE citus_test.dist_messages SET data = data || '{"completion_tokens": 5}'
 WHERE role = 'assistant' AND id BETWEEN 2001 AND 2200 AND data ? 'prompt_tokens';
DELETE FROM citus_test.dist_messages WHERE id BETWEEN 3001 AND 3100;
INSERT INTO citus_test.local_messages (id, conversation_id, role, data, created_at)
SELECT id + 100000, conversation_id, role, data, created_at + interval '1 hour'
  FROM citus_test.local_messages WHERE role = 'assistant' AND id BETWEEN 1001 AND 1400;
UPDATE citus_test.local_messages SET data = data || '{"completion_tokens": 5}'
 WHERE role = 'assistant' AND id BETWEEN 2001 AND 2200 AND data ? 'prompt_tokens';
DELETE FROM citus_test.local_messages WHERE id BETWEEN 3001 AND 3100;
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('worker', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                      (SELECT min(nodeport) FROM pg_dist_node WHERE groupid > 0), current_database(), current_user));
SELECT dblink_exec('worker', $$
    INSERT INTO citus_test.dist_messages (id, conversation_id, role, data, created_at)
    SELECT 200000 + i, overlay(overlay(md5('conversation 1') PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid,
           'assistant', jsonb_build_object('model', 'gpt-4o', 'prompt_tokens', 1000 * i, 'completion_tokens', 10 * i),
           timestamptz '2025-01-10 00:00+00' + i * interval '1 hour'
      FROM generate_series(1, 10) AS i$$);
SELECT dblink_disconnect('worker');
INSERT INTO citus_test.local_messages SELECT * FROM citus_test.dist_messages WHERE id > 200000;
SELECT (SELECT count(*) FROM citus_test.dist_messages) AS dist_rows,
       (SELECT count(*) FROM citus_test.local_messages) AS local_rows;
-- Not merged: the distributed table's figures are still the last merge's.
SELECT * FROM citus_test.compare();
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.compare();

-- A price change: the months it touches are read from each table until
-- the next merge rebuilds them; then the price is removed again.
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('gpt-9', '2024-01-01', 1.00, 2.00);
SELECT * FROM citus_test.compare();
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.compare();
DELETE FROM billing.model_prices WHERE model = 'gpt-9';
SELECT * FROM citus_test.compare();
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.compare();
-- A settings change: every month of every table is read from the table
-- (the distributed one by a distributed query, its estimates from each
-- conversation's earlier messages) until the next merge takes them in
-- again; New York's months, then UTC's again. (Same messages, other
-- months: the conversation rows are not shown.)
UPDATE billing.settings SET value = 'America/New_York' WHERE name = 'month_time_zone';
SELECT same, differing, dist_messages, local_messages FROM citus_test.compare();
SELECT billing.merge() >= 0 AS merged;
SELECT same, differing, dist_messages, local_messages FROM citus_test.compare();
UPDATE billing.settings SET value = 'UTC' WHERE name = 'month_time_zone';
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.compare();
SET client_min_messages = warning;

-- A table merge() cannot read does not stop it for the others: the
-- distributed table locked by another session while merge() runs under a
-- lock_timeout; the local table's write is merged, the distributed one
-- keeps its figures (and the write made meanwhile waits for the next
-- merge).
INSERT INTO citus_test.dist_messages SELECT id + 300000, conversation_id, role, content, data, created_at
  FROM citus_test.local_messages WHERE id = 7;
INSERT INTO citus_test.local_messages SELECT id + 300000, conversation_id, role, content, data, created_at
  FROM citus_test.local_messages WHERE id = 7;
SELECT dblink_connect('locker', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                                      current_setting('port'), current_database(), current_user));
SELECT dblink_exec('locker', 'BEGIN');
SELECT dblink_exec('locker', 'LOCK TABLE citus_test.dist_messages IN ACCESS EXCLUSIVE MODE');
SET lock_timeout = '200ms';
SET client_min_messages = notice;
SELECT billing.merge() >= 0 AS merged;
SET client_min_messages = warning;
RESET lock_timeout;
SELECT dblink_exec('locker', 'ROLLBACK');
SELECT dblink_disconnect('locker');
DROP EXTENSION dblink;
SELECT count(*) AS local_ledger_rows FROM billing.usage_ledger;
SET client_min_messages = error;
SELECT * FROM citus_test.compare();
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.compare();
SET client_min_messages = warning;

-- untrack_messages removes everything billing kept for it.
SELECT billing.untrack_messages('citus_test.dist_messages');
SELECT (SELECT count(*) FROM billing.tracked_tables WHERE relation = 'citus_test.dist_messages'::regclass) AS tracked,
       (SELECT count(*) FROM billing.month_usage AS u JOIN billing.tracked_tables AS t ON t.id = u.source_id
         WHERE t.relation = 'citus_test.local_messages'::regclass) > 0 AS local_rollups_kept,
       (SELECT count(*) FROM billing.month_usage WHERE source_id NOT IN (SELECT id FROM billing.tracked_tables))
           + (SELECT count(*) FROM billing.conversation_usage WHERE source_id NOT IN (SELECT id FROM billing.tracked_tables))
           + (SELECT count(*) FROM billing.problem_messages WHERE source_id NOT IN (SELECT id FROM billing.tracked_tables))
           AS rows_left;
SELECT billing.untrack_messages('citus_test.local_messages');
DROP TABLE citus_test.dist_messages, citus_test.local_messages;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM reads_dist, reads_local;
REVOKE ALL ON SCHEMA billing, citus_test FROM reads_dist, reads_local;
DROP FUNCTION citus_test.compare(), citus_test.figures_as(name), citus_test.figures();
DROP ROLE reads_dist, reads_local;
