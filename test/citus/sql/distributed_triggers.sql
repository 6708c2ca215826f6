-- Tracking a distributed table by its shards' triggers (the default for a
-- table distributed by hash on its conversation column): a trigger on
-- every shard writes a ledger distributed like the messages and
-- co-located with them; the reads take that ledger in, so that a write is
-- in the figures at once, without a merge; merge() moves it into the
-- rollups. Compared with the same rows in a local table tracked by its
-- trigger: every view and dashboard(), exactly, after the backfill, after
-- inserts (some through a worker, some replies without usage whose prompt
-- is estimated from their conversation's earlier messages), updates and
-- deletes (before and after the merge), a price change and its removal,
-- and a settings change; a ledger merge() cannot take does not stop it for
-- the others; TRUNCATE is followed; a rename that would break the trigger is refused;
-- untrack_messages removes everything on every node; a table distributed
-- by another column is tracked by recomputation.
-- (no CONTEXT lines: a PL/pgSQL line number ties the output to the text of a function)
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SET client_min_messages = warning;
SET citus.shard_count = 8;

-- 4,000 of setup's messages (ids 1 to 4000), in a distributed table and in
-- a local copy.
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
-- The customers of both tables' conversations, from one lookup table on
-- the coordinator: every third of setup's conversations is alice's, the
-- rest bob's (the compare below reads alice's dashboard, and reads as alice).
CREATE TABLE citus_test.conversation_owners (id uuid PRIMARY KEY, user_id text NOT NULL);
INSERT INTO citus_test.conversation_owners
SELECT c, CASE WHEN row_number() OVER (ORDER BY c) % 3 = 0 THEN 'alice' ELSE 'bob' END
  FROM (SELECT DISTINCT conversation_id FROM messages_local) AS m(c);
SELECT user_id, count(*) AS conversations FROM citus_test.conversation_owners GROUP BY 1 ORDER BY 1;
SELECT billing.track_customers('citus_test.dist_messages', 'citus_test.conversation_owners');
SELECT billing.track_customers('citus_test.local_messages', 'citus_test.conversation_owners');
-- The distributed table's ledger, estimates and problems: distributed by
-- the conversation, co-located with the messages; its trigger on every one
-- of the 8 shards (and on the table, on every node), its functions on
-- every node; its two problem rows (setup's invalid usage and usage
-- without tokens among ids 1 to 4000: ids 2001 and 2005) beside their
-- messages, none on the coordinator.
SELECT t.id AS dist_id FROM billing.tracked_tables AS t
 WHERE t.relation = 'citus_test.dist_messages'::regclass \gset
SELECT regexp_replace(p.logicalrelid::text, '[0-9]+$', 'N') AS ledger_table, p.colocationid = m.colocationid AS colocated,
       pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) AS distributed_by
  FROM pg_dist_partition AS p, pg_dist_partition AS m
 WHERE m.logicalrelid = 'citus_test.dist_messages'::regclass
   AND p.logicalrelid::text LIKE 'billing.citus_%'
 ORDER BY 1;
SELECT count(*) AS coordinator_triggers   -- (billing_track and billing_track_truncate)
  FROM pg_trigger
 WHERE tgrelid = 'citus_test.dist_messages'::regclass AND NOT tgisinternal;
-- (on a shard, Citus names the trigger billing_track_<shard id>)
SELECT sum(result::int) AS worker_triggers   -- (8 shards + the table on each of the 2 workers)
  FROM run_command_on_workers($$SELECT count(*) FROM pg_trigger AS g JOIN pg_proc AS p ON p.oid = g.tgfoid
                                  WHERE g.tgname LIKE 'billing\_track%' AND p.proname LIKE 'citus\_track\_%'$$);
SELECT nodeport > 0 AS worker, result AS trigger_functions
  FROM run_command_on_workers($$SELECT count(*) FROM pg_proc WHERE proname LIKE 'citus\_track\_%'$$);
SELECT (SELECT count(*) FROM billing.problem_messages AS p WHERE p.source_id = :dist_id) AS coordinator_problems,
       (SELECT count(*) FROM billing._citus_problem_rows()) AS distributed_problems;

-- Each table's figures as a role that may read that table only: every
-- view, four dashboards and one customer's, and the dashboard read as that
-- customer (billing.customer: the distributed ledger read through the
-- customer's conversations); the source table's name left out.
CREATE ROLE reads_dist LOGIN;   -- (Citus reads the shards as the role: it logs in on the workers)
CREATE ROLE reads_local LOGIN;
GRANT USAGE ON SCHEMA billing, citus_test TO reads_dist, reads_local;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO reads_dist, reads_local;
GRANT SELECT ON citus_test.dist_messages TO reads_dist;
GRANT SELECT ON citus_test.local_messages TO reads_local;
GRANT SELECT ON citus_test.conversation_owners TO reads_dist, reads_local;
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
        'dashboard_march', billing.dashboard('2025-03-01', '2025-04-01', top_conversations => 5),
        'dashboard_at', billing.dashboard(at => '2024-12-10'),
        'dashboard_alice', billing.dashboard('2024-09-01', '2025-04-01', customer => 'alice', months => 7))
$$;
CREATE FUNCTION citus_test.figures_as(r name) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    f jsonb;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    f := citus_test.figures();
    PERFORM set_config('billing.customer', 'alice', true);
    f := f || jsonb_build_object('as_alice', billing.dashboard('2024-09-01', '2025-04-01', months => 7));
    PERFORM set_config('billing.customer', '', true);
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
-- The unmerged writes: rows of the distributed table's ledger no merge has
-- taken (merged_by: a merge's epoch, billing.ledger_merges), and of
-- billing.usage_ledger (the local table's).
CREATE FUNCTION citus_test.ledgers(OUT distributed bigint, OUT local bigint) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT count(*) FROM billing.%I WHERE merged_by IS NULL',
                   'citus_ledger_' || (SELECT t.id FROM billing.tracked_tables AS t
                                        WHERE t.relation = 'citus_test.dist_messages'::regclass)) INTO distributed;
    SELECT count(*) INTO local FROM billing.usage_ledger;
END
$$;

SET client_min_messages = error;   -- (the aggregates' warnings: o1, gpt-9, "12a")
-- 4,000 messages in 800 (month, conversation) rows.
SELECT * FROM citus_test.compare();
-- Alice's dashboards are not empty: her messages of September 2024 to March 2025,
-- as the table itself counts them.
SELECT (f -> 'dashboard_alice' -> 'openai' ->> 'messages')::int AS alice_messages,
       (f -> 'as_alice' -> 'openai' ->> 'messages')::int AS as_alice_messages,
       (SELECT count(*) FROM citus_test.local_messages AS m
          JOIN citus_test.conversation_owners AS o ON o.id = m.conversation_id AND o.user_id = 'alice'
         WHERE m.created_at >= '2024-09-01' AND m.created_at < '2025-04-01') AS in_the_table
  FROM citus_test.figures_as('reads_dist') AS f;
SELECT * FROM citus_test.ledgers();

-- The same writes on both, not merged: 200 new replies (ids 101001 to
-- 101399, odd), 100 updated (2001 to 2200, odd, with usage), 100 deleted
-- (3001 to 3100); in March 2025 (a month none of the others is in), in
-- conversation 7 (its key: md5('conversation 7') made a version-4 uuid),
-- a user message of 400 characters, a reply without usage (gpt-4o, 40
-- characters), a second user message of 800 characters and a second reply
-- without usage; then the first user message's content changed (the
-- replies keep the estimates frozen when they were written); 10 replies
-- written through a worker (ids 200001 to 200010) in January 2025.
-- 4000 + 200 - 100 + 4 + 10 = 4114 messages.
CREATE FUNCTION citus_test.writes(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    conv uuid := overlay(overlay(md5('conversation 7') PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid;
BEGIN
    EXECUTE format($q$INSERT INTO %s (id, conversation_id, role, data, created_at)
                      SELECT id + 100000, conversation_id, role, data, created_at + interval '1 hour'
                        FROM %s WHERE role = 'assistant' AND id BETWEEN 1001 AND 1400$q$, tbl, tbl);
    EXECUTE format($q$UPDATE %s SET data = data || '{"completion_tokens": 5}'
                       WHERE role = 'assistant' AND id BETWEEN 2001 AND 2200 AND data ? 'prompt_tokens'$q$, tbl);
    EXECUTE format('DELETE FROM %s WHERE id BETWEEN 3001 AND 3100', tbl);
    EXECUTE format($q$INSERT INTO %s (id, conversation_id, role, content, data, created_at) VALUES
        (150001, $1, 'user', repeat('a', 400), NULL, '2025-03-05 10:00+00'),
        (150002, $1, 'assistant', repeat('b', 40), '{"model": "gpt-4o"}', '2025-03-05 10:01+00')$q$, tbl) USING conv;
    EXECUTE format($q$INSERT INTO %s (id, conversation_id, role, content, data, created_at) VALUES
        (150003, $1, 'user', repeat('c', 800), NULL, '2025-03-05 10:02+00')$q$, tbl) USING conv;
    EXECUTE format($q$INSERT INTO %s (id, conversation_id, role, content, data, created_at) VALUES
        (150004, $1, 'assistant', repeat('d', 40), '{"model": "gpt-4o"}', '2025-03-05 10:03+00')$q$, tbl) USING conv;
    EXECUTE format($q$UPDATE %s SET content = 'short' WHERE id = 150001$q$, tbl);
END
$$;
SELECT citus_test.writes('citus_test.dist_messages');
SELECT citus_test.writes('citus_test.local_messages');
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('worker', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                      (SELECT min(nodeport) FROM pg_dist_node WHERE groupid > 0), current_database(), current_user));
SELECT dblink_exec('worker', $$
    INSERT INTO citus_test.dist_messages (id, conversation_id, role, data, created_at)
    SELECT 200000 + i, overlay(overlay(md5('conversation 1') PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid,
           'assistant', jsonb_build_object('model', 'gpt-4o', 'prompt_tokens', 1000 * i, 'completion_tokens', 10 * i),
           timestamptz '2025-01-10 00:00+00' + i * interval '1 hour'
      FROM generate_series(1, 10) AS i$$);
INSERT INTO citus_test.local_messages SELECT * FROM citus_test.dist_messages WHERE id > 200000;
SELECT (SELECT count(*) FROM citus_test.dist_messages) AS dist_rows,
       (SELECT count(*) FROM citus_test.local_messages) AS local_rows;
-- Not merged: each table's writes are in its ledger (the same rows), and
-- in every figure already.
SELECT * FROM citus_test.ledgers();
SELECT * FROM citus_test.compare();
-- March's conversation 7, by hand (one token per 4 characters): 4
-- messages; the first reply's prompt estimated from the 400 characters
-- before it (100 tokens), the second's from 400 + 40 + 800 (310 tokens:
-- the first message's later change touches neither), each reply's own 40
-- characters 10 tokens: estimated tokens 100 + 10 + 310 + 10 = 430.
SELECT c.messages, c.estimated_tokens, c.prompt_tokens, c.completion_tokens
  FROM billing.conversation_costs AS c
 WHERE c.month = '2025-03-01' AND c.source_table = 'citus_test.dist_messages'::regclass;
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.ledgers();
SELECT * FROM citus_test.compare();
-- Written after the merge, through a worker, on both: a delete and an
-- update of estimated replies (their frozen estimates taken back) and a
-- new reply with usage, in the figures at once.
SELECT dblink_exec('worker', $$DELETE FROM citus_test.dist_messages WHERE id = 150002$$);
SELECT dblink_exec('worker', $$UPDATE citus_test.dist_messages SET data = '{"model": "gpt-4o-mini"}' WHERE id = 150004$$);
SELECT dblink_exec('worker', $$INSERT INTO citus_test.dist_messages VALUES
    (150005, overlay(overlay(md5('conversation 7') PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid, 'assistant', '',
     '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 100}', '2025-03-06 00:00+00')$$);
SELECT dblink_disconnect('worker');
DELETE FROM citus_test.local_messages WHERE id = 150002;
UPDATE citus_test.local_messages SET data = '{"model": "gpt-4o-mini"}' WHERE id = 150004;
INSERT INTO citus_test.local_messages SELECT * FROM citus_test.dist_messages WHERE id = 150005;
SELECT * FROM citus_test.ledgers();
SELECT * FROM citus_test.compare();
-- By hand: 4 messages (150001, 150003, 150004, 150005); estimated 310 + 10
-- (the second reply, now gpt-4o-mini's, keeps its frozen estimate), prompt
-- 1000 and completion 100 (the new reply's).
SELECT c.messages, c.estimated_tokens, c.prompt_tokens, c.completion_tokens
  FROM billing.conversation_costs AS c
 WHERE c.month = '2025-03-01' AND c.source_table = 'citus_test.dist_messages'::regclass;
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.compare();

-- A price change: the months it touches are read from each table until
-- the next merge rebuilds them (the distributed table under a SHARE lock);
-- then the price is removed again.
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
-- (the distributed one with its frozen estimates) until the next merge
-- takes them in again; New York's months, then UTC's again.
UPDATE billing.settings SET value = 'America/New_York' WHERE name = 'month_time_zone';
SELECT same, differing, dist_messages, local_messages FROM citus_test.compare();
SELECT billing.merge() >= 0 AS merged;
SELECT same, differing, dist_messages, local_messages FROM citus_test.compare();
UPDATE billing.settings SET value = 'UTC' WHERE name = 'month_time_zone';
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.compare();
SET client_min_messages = warning;

-- A ledger merge() cannot take does not stop it for the others: the
-- distributed ledger locked by another session while merge() runs under a
-- lock_timeout; the local table's write is merged, the distributed one's
-- stays in its ledger (and in the figures) for the next merge.
INSERT INTO citus_test.dist_messages SELECT id + 300000, conversation_id, role, content, data, created_at
  FROM citus_test.local_messages WHERE id = 7;
INSERT INTO citus_test.local_messages SELECT id + 300000, conversation_id, role, content, data, created_at
  FROM citus_test.local_messages WHERE id = 7;
SELECT dblink_connect('locker', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                                      current_setting('port'), current_database(), current_user));
SELECT dblink_exec('locker', 'BEGIN');
SELECT dblink_exec('locker', format('LOCK TABLE billing.%I IN ACCESS EXCLUSIVE MODE', 'citus_ledger_' || :dist_id));
SET lock_timeout = '200ms';
SET client_min_messages = notice;
SELECT billing.merge() >= 0 AS merged;
SET client_min_messages = warning;
RESET lock_timeout;
SELECT dblink_exec('locker', 'ROLLBACK');
SELECT dblink_disconnect('locker');
SELECT * FROM citus_test.ledgers();
SET client_min_messages = error;
SELECT * FROM citus_test.compare();
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.ledgers();
SELECT * FROM citus_test.compare();
SET client_min_messages = warning;

-- A merge and Citus's two-phase commit (billing.ledger_merges). Citus
-- commits merge() on the coordinator first, then on each worker, and each
-- node reads with its own snapshot. merge() marks the rows it takes from
-- the distributed ledger with its epoch instead of deleting them, and a
-- read leaves out exactly the epochs its own snapshot on the coordinator
-- sees merged. 1. A REPEATABLE READ transaction whose coordinator snapshot
-- was taken before another session's merge, and whose workers' snapshots
-- after it (as a read in the window between the two commits): the 10
-- writes below are counted once, in every figure, as in the local copy
-- (with a DELETE the workers no longer had them, and the coordinator did
-- not see them yet: every figure was short of them).
INSERT INTO citus_test.dist_messages SELECT id + 310000, conversation_id, role, content, data, created_at
  FROM citus_test.local_messages WHERE id BETWEEN 11 AND 20;
INSERT INTO citus_test.local_messages SELECT id + 310000, conversation_id, role, content, data, created_at
  FROM citus_test.local_messages WHERE id BETWEEN 11 AND 20;
SELECT * FROM citus_test.ledgers();
SELECT dblink_connect('merger', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                                      current_setting('port'), current_database(), current_user));
SET client_min_messages = error;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) AS rollup_rows FROM billing.month_usage;   -- (the coordinator's snapshot, no worker's)
SELECT n >= 10 AS merged_meanwhile FROM dblink('merger', 'SELECT billing.merge()') AS m(n bigint);
SELECT * FROM citus_test.compare();
COMMIT;
SELECT * FROM citus_test.ledgers();
SELECT * FROM citus_test.compare();
-- 2. A row that a merge is committing on its worker (prepared there,
-- perhaps committed on the coordinator already): the read fails rather
-- than count it twice. Held open by hand: on the worker of one ledger
-- shard, a transaction that updates its rows, prepared. Once it is rolled
-- back, the same read gives the local copy's figures.
INSERT INTO citus_test.dist_messages SELECT id + 320000, conversation_id, role, content, data, created_at
  FROM citus_test.local_messages WHERE id = 21;
INSERT INTO citus_test.local_messages SELECT id + 320000, conversation_id, role, content, data, created_at
  FROM citus_test.local_messages WHERE id = 21;
SELECT n.nodeport AS ledger_port, shard_name(format('billing.%I', 'citus_ledger_' || :dist_id)::regclass, s.shardid) AS ledger_shard
  FROM pg_dist_shard AS s JOIN pg_dist_placement AS p USING (shardid) JOIN pg_dist_node AS n USING (groupid)
 WHERE s.shardid = get_shard_id_for_distribution_column(format('billing.%I', 'citus_ledger_' || :dist_id),
                                                        (SELECT conversation_id FROM citus_test.local_messages WHERE id = 21))
\gset
SELECT dblink_connect('worker', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                                      :ledger_port, current_database(), current_user));
SELECT dblink_exec('worker', 'BEGIN');
SELECT dblink_exec('worker', format('UPDATE %s SET merged_by = merged_by WHERE merged_by IS NULL', :'ledger_shard'));
SELECT dblink_exec('worker', $$PREPARE TRANSACTION 'billing_test_merge'$$);
\set VERBOSITY terse
SELECT * FROM citus_test.compare();
\set VERBOSITY default
SELECT dblink_exec('worker', $$ROLLBACK PREPARED 'billing_test_merge'$$);
SELECT dblink_disconnect('worker');
SELECT * FROM citus_test.compare();
-- 3. Later merges delete the rows of the epochs every snapshot on the
-- coordinator sees merged, then forget those epochs: merges, each in its
-- own transaction, until the ledger holds no merged row and
-- billing.ledger_merges no epoch (three, unless another backend's snapshot
-- holds the first back; at most 50).
SELECT dblink_disconnect('merger');
CREATE FUNCTION citus_test.merged_rows() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM billing.%I WHERE merged_by IS NOT NULL',
                   'citus_ledger_' || (SELECT t.id FROM billing.tracked_tables AS t
                                        WHERE t.relation = 'citus_test.dist_messages'::regclass))
       INTO n;
    RETURN n;
END
$$;
SELECT citus_test.merged_rows() AS merged_rows, count(*) AS epochs FROM billing.ledger_merges;
CREATE PROCEDURE citus_test.merge_until_purged() LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..50 LOOP
        PERFORM billing.merge();
        COMMIT;
        EXIT WHEN citus_test.merged_rows() = 0 AND NOT EXISTS (SELECT 1 FROM billing.ledger_merges);
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
CALL citus_test.merge_until_purged();
SELECT citus_test.merged_rows() AS merged_rows, count(*) AS epochs FROM billing.ledger_merges;
SELECT * FROM citus_test.ledgers();
SELECT * FROM citus_test.compare();
SET client_min_messages = warning;
DROP EXTENSION dblink;
DROP PROCEDURE citus_test.merge_until_purged();
DROP FUNCTION citus_test.merged_rows();

-- TRUNCATE is followed (a trigger on the coordinator's copy of the table
-- empties billing's rows of it, its distributed ledger, estimates and
-- problems); then ids 1 to 100 again in both: 100 messages 777 s apart
-- from 2024-09-01 (all in September 2024), each in its own conversation
-- (i % 400): 100 conversation rows.
TRUNCATE citus_test.dist_messages;
TRUNCATE citus_test.local_messages;
SELECT (SELECT count(*) FROM billing.conversation_costs
         WHERE source_table IN ('citus_test.dist_messages'::regclass, 'citus_test.local_messages'::regclass))
           AS conversation_rows,
       (SELECT count(*) FROM billing._citus_problem_rows()) AS problem_rows;
SELECT * FROM citus_test.ledgers();
INSERT INTO citus_test.dist_messages (id, conversation_id, role, data, created_at)
SELECT id, conversation_id, role, data, created_at FROM messages_local WHERE id <= 100;
INSERT INTO citus_test.local_messages SELECT * FROM citus_test.dist_messages;
SET client_min_messages = error;
SELECT * FROM citus_test.compare();
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.compare();
SET client_min_messages = warning;

-- A rename of a tracked column would break the shards' trigger: refused.
ALTER TABLE citus_test.dist_messages RENAME COLUMN content TO body;
-- (another ALTER is not)
ALTER TABLE citus_test.dist_messages ADD COLUMN note text;

-- untrack_messages removes everything billing kept for it, on every node.
SELECT billing.untrack_messages('citus_test.dist_messages');
SELECT (SELECT count(*) FROM billing.tracked_tables WHERE relation = 'citus_test.dist_messages'::regclass) AS tracked,
       (SELECT count(*) FROM pg_class WHERE relname LIKE 'citus\_%' AND relnamespace = 'billing'::regnamespace) AS tables,
       (SELECT count(*) FROM billing.month_usage WHERE source_id NOT IN (SELECT id FROM billing.tracked_tables))
           + (SELECT count(*) FROM billing.conversation_usage WHERE source_id NOT IN (SELECT id FROM billing.tracked_tables))
           + (SELECT count(*) FROM billing.problem_messages WHERE source_id NOT IN (SELECT id FROM billing.tracked_tables))
           AS rows_left;
SELECT nodeport > 0 AS worker, result AS left_on_worker
  FROM run_command_on_workers($$SELECT (SELECT count(*) FROM pg_proc WHERE proname LIKE 'citus\_track\_%')
                                       + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'billing\_track%')
                                       + (SELECT count(*) FROM pg_class WHERE relname LIKE 'citus\_%'
                                           AND relnamespace = 'billing'::regnamespace)$$);

-- A table distributed by another column than its conversation is tracked
-- by recomputation (docs/citus.md): no ledger, no trigger.
CREATE TABLE citus_test.by_id (LIKE citus_test.local_messages);
SELECT create_distributed_table('citus_test.by_id', 'id');
INSERT INTO citus_test.by_id SELECT * FROM citus_test.local_messages WHERE id <= 100;
SELECT messages FROM billing.track_messages('citus_test.by_id');
SELECT billing._citus_triggered(t.id) AS triggered, billing._citus_recomputed(t.id) AS recomputed
  FROM billing.tracked_tables AS t WHERE t.relation = 'citus_test.by_id'::regclass;
SELECT billing.untrack_messages('citus_test.by_id');
DROP TABLE citus_test.by_id;

-- Dropping a tracked distributed table drops its ledger, estimates,
-- problems and trigger function too.
SELECT billing.track_messages('citus_test.dist_messages') IS NOT NULL AS tracked;
SELECT count(*) AS ledger_tables FROM pg_class
 WHERE relname LIKE 'citus\_%' AND relnamespace = 'billing'::regnamespace AND relkind = 'r';
DROP TABLE citus_test.dist_messages;
SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE 'citus\_%' AND relnamespace = 'billing'::regnamespace)
       + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'citus\_track\_%') AS left_after_drop;
SELECT nodeport > 0 AS worker, result AS left_on_worker
  FROM run_command_on_workers($$SELECT (SELECT count(*) FROM pg_proc WHERE proname LIKE 'citus\_track\_%')
                                       + (SELECT count(*) FROM pg_class WHERE relname LIKE 'citus\_%'
                                           AND relnamespace = 'billing'::regnamespace)$$);

SELECT billing.untrack_messages('citus_test.local_messages');
DROP TABLE citus_test.local_messages, citus_test.conversation_owners;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM reads_dist, reads_local;
REVOKE ALL ON SCHEMA billing, citus_test FROM reads_dist, reads_local;
DROP FUNCTION citus_test.compare(), citus_test.figures_as(name), citus_test.figures(), citus_test.ledgers(),
    citus_test.writes(regclass);
DROP ROLE reads_dist, reads_local;
