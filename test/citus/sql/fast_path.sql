-- The C fast path of a distributed table's shard trigger
-- (billing.citus_track_N, src/pg/track_row.cpp): the common INSERT (a
-- reply with usage, a user's message, a total-only usage, at a countable
-- time) is written straight into the co-located shard of the table's
-- ledger; every other write, and the first row each backend sees on each
-- shard, runs the PL/pgSQL body billing.citus_track_N_full. Proved with the
-- workers' pg_stat_user_functions (track_functions = 'all'): the trigger
-- runs once per row, the PL/pgSQL body once per shard and backend only.
-- The figures equal a local copy's exactly, before and after the merge.
-- Then the trigger functions are made anew by merge() on every node when
-- they are not what this version writes (as after ALTER EXTENSION billing
-- UPDATE): here, a table whose citus_track_N is still the PL/pgSQL body of
-- a build without the fast path. Last, a shard moved to the other worker
-- keeps the figures equal.
SET timezone = 'UTC';
SET client_min_messages = warning;
SET citus.shard_count = 8;
-- Without cached connections the workers' backends of each statement exit
-- at the end of its transaction, and report their function calls then.
SET citus.max_cached_conns_per_worker = 0;
ALTER DATABASE citus_test SET track_functions = 'all';   -- (Citus propagates it to the workers)
SELECT nodeport > 0 AS worker, result AS track_functions
  FROM run_command_on_workers('SHOW track_functions');

CREATE TABLE citus_test.fast_messages (
    id              bigint      NOT NULL,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL,
    content         text        NOT NULL DEFAULT '',
    data            jsonb,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, id)
);
SELECT create_distributed_table('citus_test.fast_messages', 'conversation_id');
CREATE TABLE citus_test.fast_local (LIKE citus_test.fast_messages INCLUDING ALL);
SELECT tracked FROM billing.track_messages('citus_test.fast_messages');
SELECT tracked FROM billing.track_messages('citus_test.fast_local');
SELECT t.id AS fast_id FROM billing.tracked_tables AS t
 WHERE t.relation = 'citus_test.fast_messages'::regclass \gset
-- On every node: the trigger function in C, its PL/pgSQL body beside it.
SELECT nodeport > 0 AS worker, result AS trigger_functions
  FROM run_command_on_workers(format($$SELECT string_agg(regexp_replace(p.proname, '[0-9]+', 'N') || ' ' || l.lanname, ', ' ORDER BY p.proname)
                                         FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
                                        WHERE p.proname IN (%L, %L)$$,
                                     'citus_track_' || :fast_id, 'citus_track_' || :fast_id || '_full'));

-- Message k: conversation k % 40; k % 4 = 0 a user's message (no data),
-- 1 and 2 a gpt-4o reply with 100 k prompt and k completion tokens, 3 a
-- gpt-4o-mini reply with 10 k total tokens only; every 3 hours from
-- 2025-01-20 (k = 1 to 440: to 2025-03-16). All take the fast path.
CREATE FUNCTION citus_test.fast_rows(first int, last int)
RETURNS TABLE (id bigint, conversation_id uuid, role text, content text, data jsonb, created_at timestamptz)
LANGUAGE sql IMMUTABLE AS $$
    SELECT k::bigint, overlay(overlay(md5('fast ' || k % 40) PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid,
           CASE WHEN k % 4 = 0 THEN 'user' ELSE 'assistant' END, '',
           CASE k % 4 WHEN 0 THEN NULL
                      WHEN 3 THEN jsonb_build_object('model', 'gpt-4o-mini', 'total_tokens', 10 * k)
                      ELSE jsonb_build_object('model', 'gpt-4o', 'prompt_tokens', 100 * k, 'completion_tokens', k) END,
           timestamptz '2025-01-20 00:00+00' + k * interval '3 hours'
      FROM generate_series(first, last) AS k
$$;
-- The calls of the trigger (citus_track_N) and of its PL/pgSQL body
-- (citus_track_N_full) on the workers.
CREATE FUNCTION citus_test.trigger_calls(OUT c_calls bigint, OUT full_calls bigint) LANGUAGE sql AS $$
    SELECT sum(split_part(result, ' ', 1)::bigint), sum(split_part(result, ' ', 2)::bigint)
      FROM run_command_on_workers(format(
               $w$SELECT coalesce(sum(calls) FILTER (WHERE funcname = %L), 0) || ' '
                         || coalesce(sum(calls) FILTER (WHERE funcname = %L), 0)
                    FROM pg_stat_user_functions WHERE schemaname = 'billing'$w$,
               'citus_track_' || (SELECT id FROM billing.tracked_tables
                                   WHERE relation = 'citus_test.fast_messages'::regclass),
               'citus_track_' || (SELECT id FROM billing.tracked_tables
                                   WHERE relation = 'citus_test.fast_messages'::regclass) || '_full'))
$$;
-- The calls since (c_before, full_before), once the trigger's calls have
-- reached c_before + rows (every backend that ran it has exited and
-- reported; at most 30 s).
CREATE FUNCTION citus_test.trigger_calls_since(c_before bigint, full_before bigint, rows_ bigint,
                                               OUT trigger_calls bigint, OUT full_body_calls bigint)
LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    FOR i IN 1..300 LOOP
        c := citus_test.trigger_calls();
        EXIT WHEN c.c_calls >= c_before + rows_;
        PERFORM pg_sleep(0.1);
    END LOOP;
    trigger_calls := c.c_calls - c_before;
    full_body_calls := c.full_calls - full_before;
END
$$;
-- The shards that hold messages first to last.
CREATE FUNCTION citus_test.fast_shards(first int, last int) RETURNS bigint LANGUAGE sql AS $$
    SELECT count(DISTINCT get_shard_id_for_distribution_column('citus_test.fast_messages', r.conversation_id))
      FROM citus_test.fast_rows(first, last) AS r
$$;

-- Each table's figures as a role that may read that table only.
CREATE ROLE reads_fast_dist LOGIN;
CREATE ROLE reads_fast_local LOGIN;
GRANT USAGE ON SCHEMA billing, citus_test TO reads_fast_dist, reads_fast_local;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO reads_fast_dist, reads_fast_local;
GRANT SELECT ON citus_test.fast_messages TO reads_fast_dist;
GRANT SELECT ON citus_test.fast_local TO reads_fast_local;
CREATE FUNCTION citus_test.fast_figures_as(r name) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    f jsonb;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    f := jsonb_build_object(
        'monthly_history', (SELECT jsonb_agg(to_jsonb(h) ORDER BY h.month, h.source) FROM billing.monthly_history AS h),
        'conversation_costs', (SELECT jsonb_agg(to_jsonb(c) - 'source_table' ORDER BY c.month, c.conversation_id)
                                 FROM billing.conversation_costs AS c),
        'usage_problems', (SELECT jsonb_agg(to_jsonb(p) - 'source_table'
                                            ORDER BY p.kind, p.month, p.message_id, p.detail)
                             FROM billing.usage_problems AS p),
        'dashboard_quarter', billing.dashboard('2025-01-01', '2025-04-01', top_conversations => 50, months => 3),
        'dashboard_february', billing.dashboard('2025-02-01', '2025-03-01', top_conversations => 5));
    RESET ROLE;
    RETURN f;
END
$$;
-- same: every figure equal (and which differ); the messages and tokens of
-- the distributed table's conversation rows.
CREATE FUNCTION citus_test.fast_compare(OUT same boolean, OUT differing text[], OUT messages numeric,
                                        OUT prompt_tokens numeric, OUT completion_tokens numeric,
                                        OUT unpriced_tokens numeric)
LANGUAGE plpgsql AS $$
DECLARE
    d jsonb := citus_test.fast_figures_as('reads_fast_dist');
    l jsonb := citus_test.fast_figures_as('reads_fast_local');
BEGIN
    same := d = l;
    differing := ARRAY(SELECT a.key FROM jsonb_each(d) AS a JOIN jsonb_each(l) AS b USING (key)
                        WHERE a.value IS DISTINCT FROM b.value ORDER BY 1);
    SELECT sum((x ->> 'messages')::numeric), sum((x ->> 'prompt_tokens')::numeric),
           sum((x ->> 'completion_tokens')::numeric), sum((x ->> 'unpriced_tokens')::numeric)
      INTO messages, prompt_tokens, completion_tokens, unpriced_tokens
      FROM jsonb_array_elements(d -> 'conversation_costs') AS x;
END
$$;
-- The unmerged rows: the distributed ledger's and the local table's in
-- billing.usage_ledger, equal (but for source_id) as lists sorted by their
-- whole content (an update's two rows share conversation and time).
CREATE FUNCTION citus_test.fast_ledgers(OUT distributed bigint, OUT local bigint, OUT same_rows boolean)
LANGUAGE plpgsql AS $$
DECLARE
    d jsonb;
    l jsonb;
BEGIN
    EXECUTE format('SELECT count(*), coalesce(jsonb_agg(to_jsonb(x) - ''source_id'' - ''conversation'' - ''merged_by''
                                                        ORDER BY (to_jsonb(x) - ''source_id'' - ''conversation''
                                                                  - ''merged_by'')::text),
                                              ''[]'')
                      FROM billing.%I AS x WHERE x.merged_by IS NULL',
                   'citus_ledger_' || (SELECT id FROM billing.tracked_tables
                                        WHERE relation = 'citus_test.fast_messages'::regclass))
       INTO distributed, d;
    SELECT count(*), coalesce(jsonb_agg(to_jsonb(x) - 'source_id' ORDER BY (to_jsonb(x) - 'source_id')::text), '[]')
      INTO local, l
      FROM billing.usage_ledger AS x
     WHERE x.source_id = (SELECT id FROM billing.tracked_tables WHERE relation = 'citus_test.fast_local'::regclass);
    same_rows := d = l;
END
$$;

-- 400 messages written on the coordinator, in one statement: the trigger
-- runs 400 times, its PL/pgSQL body once per shard (the first row each
-- worker backend sees there), 8 shards: 392 rows by the fast path.
SELECT citus_test.fast_shards(1, 400) AS shards;
SELECT c_calls AS c_before, full_calls AS full_before FROM citus_test.trigger_calls() \gset
INSERT INTO citus_test.fast_messages SELECT * FROM citus_test.fast_rows(1, 400);
SELECT * FROM citus_test.trigger_calls_since(:c_before, :full_before, 400);
INSERT INTO citus_test.fast_local SELECT * FROM citus_test.fast_rows(1, 400);

-- 40 more through a worker (k = 401 to 440), in one statement, in a new
-- session there: once per row, the body once per shard written.
SELECT citus_test.fast_shards(401, 440) AS shards;
SELECT c_calls AS c_before, full_calls AS full_before FROM citus_test.trigger_calls() \gset
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('fast_worker', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                      (SELECT min(nodeport) FROM pg_dist_node WHERE groupid > 0), current_database(), current_user));
SELECT dblink_exec('fast_worker', 'SET citus.max_cached_conns_per_worker = 0');
SELECT dblink_exec('fast_worker', 'INSERT INTO citus_test.fast_messages SELECT * FROM citus_test.fast_rows(401, 440)');
SELECT dblink_disconnect('fast_worker');
SELECT * FROM citus_test.trigger_calls_since(:c_before, :full_before, 40);
INSERT INTO citus_test.fast_local SELECT * FROM citus_test.fast_rows(401, 440);

-- Not merged: the same ledger rows, the same figures. By hand, k = 1 to
-- 440: 440 messages; prompt tokens 100 * (sum of k = 1, 5, ..., 437 and
-- 2, 6, ..., 438) = 100 * (110 * 219 + 110 * 220) = 100 * 48290 =
-- 4,829,000; completion tokens 48,290; unpriced (total-only) tokens
-- 10 * (3 + 7 + ... + 439) = 10 * 110 * 221 = 243,100.
SELECT * FROM citus_test.fast_ledgers();
SELECT * FROM citus_test.fast_compare();
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.fast_ledgers();
SELECT * FROM citus_test.fast_compare();

-- The other writes still take the PL/pgSQL body, and agree: a reply
-- without usage (its prompt estimated from its conversation), a problem
-- (usage that cannot be read), an update and a delete.
CREATE FUNCTION citus_test.fast_others(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$INSERT INTO %s (id, conversation_id, role, content, data, created_at)
                      SELECT 1001, conversation_id, 'assistant', repeat('x', 40), '{"model": "gpt-4o"}', created_at + interval '1 minute'
                        FROM %s WHERE id = 4$q$, tbl, tbl);
    EXECUTE format($q$INSERT INTO %s (id, conversation_id, role, data, created_at)
                      SELECT 1002, conversation_id, 'assistant', '{"model": "gpt-4o", "prompt_tokens": "many"}', created_at
                        FROM %s WHERE id = 5$q$, tbl, tbl);
    EXECUTE format($q$UPDATE %s SET data = data || '{"completion_tokens": 7}' WHERE id = 6$q$, tbl);
    EXECUTE format('DELETE FROM %s WHERE id = 9', tbl);
END
$$;
SELECT citus_test.fast_others('citus_test.fast_messages');
SELECT citus_test.fast_others('citus_test.fast_local');
SELECT * FROM citus_test.fast_ledgers();
SELECT same, differing FROM citus_test.fast_compare();

-- billing.trigger_fast_path = off (here for the workers' new sessions):
-- every row through the PL/pgSQL body, the same figures.
ALTER DATABASE citus_test SET billing.trigger_fast_path = off;
SELECT c_calls AS c_before, full_calls AS full_before FROM citus_test.trigger_calls() \gset
INSERT INTO citus_test.fast_messages SELECT * FROM citus_test.fast_rows(441, 480);
SELECT * FROM citus_test.trigger_calls_since(:c_before, :full_before, 40);
INSERT INTO citus_test.fast_local SELECT * FROM citus_test.fast_rows(441, 480);
ALTER DATABASE citus_test RESET billing.trigger_fast_path;
SELECT * FROM citus_test.fast_ledgers();
SELECT same, differing FROM citus_test.fast_compare();

-- The trigger functions made anew by merge(), on every node, when they are
-- not what this version writes (ALTER EXTENSION billing UPDATE cannot make
-- them: they belong to no extension, as Citus requires of a distributed
-- function). Here as a build without the fast path left them:
-- citus_track_N the PL/pgSQL body itself, no citus_track_N_full.
DO $$
DECLARE
    t billing.tracked_tables;
BEGIN
    SELECT * INTO t FROM billing.tracked_tables WHERE relation = 'citus_test.fast_messages'::regclass;
    EXECUTE format('CREATE OR REPLACE FUNCTION billing.%I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
                    SET search_path = pg_catalog, pg_temp AS %L', 'citus_track_' || t.id, billing._citus_trigger_body(t));
    EXECUTE format('DROP FUNCTION billing.%I()', 'citus_track_' || t.id || '_full');
END
$$;
SELECT nodeport > 0 AS worker, result AS trigger_functions
  FROM run_command_on_workers(format($$SELECT string_agg(regexp_replace(p.proname, '[0-9]+', 'N') || ' ' || l.lanname, ', ' ORDER BY p.proname)
                                         FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
                                        WHERE p.proname IN (%L, %L)$$,
                                     'citus_track_' || :fast_id, 'citus_track_' || :fast_id || '_full'));
-- (the old function still tracks: every row by its PL/pgSQL body)
INSERT INTO citus_test.fast_messages SELECT * FROM citus_test.fast_rows(481, 500);
INSERT INTO citus_test.fast_local SELECT * FROM citus_test.fast_rows(481, 500);
SELECT billing.merge() >= 0 AS merged;
-- Made anew on every node: C, and the body this version writes.
SELECT nodeport > 0 AS worker, result AS trigger_functions
  FROM run_command_on_workers(format($$SELECT string_agg(regexp_replace(p.proname, '[0-9]+', 'N') || ' ' || l.lanname, ', ' ORDER BY p.proname)
                                         FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
                                        WHERE p.proname IN (%L, %L)$$,
                                     'citus_track_' || :fast_id, 'citus_track_' || :fast_id || '_full'));
SELECT nodeport > 0 AS worker,
       result = (SELECT md5(billing._citus_trigger_body(t)) FROM billing.tracked_tables AS t WHERE t.id = :fast_id)
           AS current_body
  FROM run_command_on_workers(format($$SELECT md5(prosrc) FROM pg_proc WHERE proname = %L$$,
                                     'citus_track_' || :fast_id || '_full'));
-- ... and the fast path taken again (k = 501 to 540, from the coordinator).
SELECT citus_test.fast_shards(501, 540) AS shards;
SELECT c_calls AS c_before, full_calls AS full_before FROM citus_test.trigger_calls() \gset
INSERT INTO citus_test.fast_messages SELECT * FROM citus_test.fast_rows(501, 540);
SELECT * FROM citus_test.trigger_calls_since(:c_before, :full_before, 40);
INSERT INTO citus_test.fast_local SELECT * FROM citus_test.fast_rows(501, 540);
SELECT * FROM citus_test.fast_ledgers();
SELECT same, differing FROM citus_test.fast_compare();
SELECT billing.merge() >= 0 AS merged;
SELECT same, differing FROM citus_test.fast_compare();

-- A shard moved to the other worker (Citus moves the colocation group: the
-- messages', ledger's, estimates' and problems' shards together). Writes
-- before and after it through one session on a worker (whose backend
-- looked the ledger shards up before the move, and sees Citus's metadata
-- change): the ledger rows move with their shard, writes after the move
-- are followed on the new node, and the figures still equal the local
-- copy's.
SELECT dblink_connect('fast_worker', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                      (SELECT min(nodeport) FROM pg_dist_node WHERE groupid > 0), current_database(), current_user));
SELECT dblink_exec('fast_worker', 'INSERT INTO citus_test.fast_messages SELECT * FROM citus_test.fast_rows(541, 580)');
INSERT INTO citus_test.fast_local SELECT * FROM citus_test.fast_rows(541, 580);
SELECT s.shardid AS moved_shard, p.nodeport AS from_port, o.nodeport AS to_port
  FROM pg_dist_shard AS s JOIN pg_dist_shard_placement AS p USING (shardid)
  JOIN pg_dist_node AS o ON o.groupid > 0 AND o.nodeport <> p.nodeport
 WHERE s.shardid = get_shard_id_for_distribution_column('citus_test.fast_messages',
                       (SELECT conversation_id FROM citus_test.fast_rows(1, 1))) \gset
SELECT citus_move_shard_placement(:moved_shard, '127.0.0.1', :from_port, '127.0.0.1', :to_port,
                                  shard_transfer_mode => 'block_writes') IS NOT NULL AS moved;
CALL citus_cleanup_orphaned_resources();
SELECT nodeport = :to_port AS on_the_other_worker FROM pg_dist_shard_placement WHERE shardid = :moved_shard;
SELECT same, differing FROM citus_test.fast_compare();
SELECT dblink_exec('fast_worker', 'INSERT INTO citus_test.fast_messages SELECT * FROM citus_test.fast_rows(581, 620)');
SELECT dblink_disconnect('fast_worker');
INSERT INTO citus_test.fast_local SELECT * FROM citus_test.fast_rows(581, 620);
SELECT * FROM citus_test.fast_ledgers();
SELECT same, differing FROM citus_test.fast_compare();
SELECT billing.merge() >= 0 AS merged;
SELECT same, differing FROM citus_test.fast_compare();

-- Replies without usage by the fast path: each estimated from its
-- conversation's earlier messages on its own shard, its estimate stored in
-- the estimates' shard beside it (no statement through Citus). Reply A_j
-- (id 10000 + j, j = 1 to 40, conversation j % 40, on 2025-05-01, after
-- every message so far) has 4 j characters: j completion tokens; its
-- prompt is its conversation's earlier messages, all empty but message
-- 1001 (40 characters, 10 tokens, in conversation 4). Then reply B_j (id
-- 20000 + j, on 2025-05-02), 8 characters: 2 tokens, prompt j (A_j), +10
-- for j = 4. By hand: prompts 10 + (820 + 10) = 840, completions
-- (1 + ... + 40) + 40 * 2 = 820 + 80 = 900. Each statement: 40 calls of
-- the trigger, the PL/pgSQL body once per shard written (the first row a
-- new worker backend sees there).
CREATE FUNCTION citus_test.fast_replies(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$INSERT INTO %s (id, conversation_id, role, content, data, created_at)
                      SELECT 10000 + j, r.conversation_id, 'assistant', repeat('y', 4 * j), '{"model": "gpt-4o"}',
                             timestamptz '2025-05-01 00:00+00' + j * interval '1 minute'
                        FROM generate_series(1, 40) AS j, citus_test.fast_rows(j, j) AS r$q$, tbl);
    EXECUTE format($q$INSERT INTO %s (id, conversation_id, role, content, data, created_at)
                      SELECT 20000 + j, r.conversation_id, 'assistant', repeat('z', 8), '{"model": "gpt-4o"}',
                             timestamptz '2025-05-02 00:00+00' + j * interval '1 minute'
                        FROM generate_series(1, 40) AS j, citus_test.fast_rows(j, j) AS r$q$, tbl);
END
$$;
SELECT citus_test.fast_shards(1, 40) AS shards_each_statement;
SELECT c_calls AS c_before, full_calls AS full_before FROM citus_test.trigger_calls() \gset
SELECT citus_test.fast_replies('citus_test.fast_messages');
SELECT * FROM citus_test.trigger_calls_since(:c_before, :full_before, 80);
SELECT citus_test.fast_replies('citus_test.fast_local');
SELECT format('billing.%I', 'citus_ledger_' || :fast_id) AS fast_ledger,
       format('billing.%I', 'citus_estimates_' || :fast_id) AS fast_estimates \gset
SELECT count(*) AS rows, sum(estimated_prompt) AS estimated_prompt, sum(estimated_completion) AS estimated_completion
  FROM :fast_ledger WHERE merged_by IS NULL;
-- The stored estimates: the distributed table's equal the local copy's.
CREATE FUNCTION citus_test.fast_estimates(OUT estimates bigint, OUT prompt_tokens numeric, OUT same_as_local boolean)
LANGUAGE plpgsql AS $$
DECLARE
    d jsonb;
BEGIN
    EXECUTE format('SELECT count(*), sum(prompt_tokens), jsonb_object_agg(message_id, prompt_tokens)
                      FROM billing.%I WHERE message_id::bigint >= 10000',
                   'citus_estimates_' || (SELECT id FROM billing.tracked_tables
                                           WHERE relation = 'citus_test.fast_messages'::regclass))
       INTO estimates, prompt_tokens, d;
    same_as_local := d = (SELECT jsonb_object_agg(e.message_id, e.prompt_tokens)
                            FROM billing.estimated_prompts AS e
                           WHERE e.source_id = (SELECT id FROM billing.tracked_tables
                                                 WHERE relation = 'citus_test.fast_local'::regclass)
                             AND e.message_id::bigint >= 10000);
END
$$;
SELECT * FROM citus_test.fast_estimates();
SELECT * FROM citus_test.fast_ledgers();
SELECT same, differing FROM citus_test.fast_compare();
-- The full body finds an estimate the fast path stored: deleting B_1
-- (prompt 1, completion 2) takes back exactly that (ledger: 839 and 898).
DELETE FROM citus_test.fast_messages WHERE id = 20001;
DELETE FROM citus_test.fast_local WHERE id = 20001;
SELECT count(*) AS rows, sum(estimated_prompt) AS estimated_prompt, sum(estimated_completion) AS estimated_completion
  FROM :fast_ledger WHERE merged_by IS NULL;
SELECT * FROM citus_test.fast_estimates();
SELECT same, differing FROM citus_test.fast_compare();
SELECT billing.merge() >= 0 AS merged;
SELECT same, differing FROM citus_test.fast_compare();

-- A shard split in two (citus_split_shard_by_split_points, block_writes:
-- Citus splits the co-located ledger, estimates and problems shards with
-- it, one half on each worker). Writes through one worker session before
-- and after it (whose backend looked the ledger shards up before the
-- split): the figures still equal the local copy's, before and after the
-- merge.
SELECT s.shardid AS split_shard,
       ((s.shardminvalue::bigint + s.shardmaxvalue::bigint) / 2)::text AS split_point
  FROM pg_dist_shard AS s
 WHERE s.shardid = get_shard_id_for_distribution_column('citus_test.fast_messages',
                       (SELECT conversation_id FROM citus_test.fast_rows(2, 2))) \gset
SELECT dblink_connect('fast_worker', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                      (SELECT min(nodeport) FROM pg_dist_node WHERE groupid > 0), current_database(), current_user));
SELECT dblink_exec('fast_worker', 'INSERT INTO citus_test.fast_messages SELECT * FROM citus_test.fast_rows(621, 640)');
INSERT INTO citus_test.fast_local SELECT * FROM citus_test.fast_rows(621, 640);
SELECT citus_split_shard_by_split_points(:split_shard, ARRAY[:'split_point'],
           ARRAY(SELECT nodeid FROM pg_dist_node WHERE groupid > 0 ORDER BY nodeport), 'block_writes') IS NOT NULL AS split;
CALL citus_cleanup_orphaned_resources();
SELECT count(*) AS messages_shards,
       count(*) FILTER (WHERE s.shardid = :split_shard) AS old_shard_left
  FROM pg_dist_shard AS s WHERE s.logicalrelid = 'citus_test.fast_messages'::regclass;
SELECT count(*) AS ledger_shards FROM pg_dist_shard WHERE logicalrelid = :'fast_ledger'::regclass;
SELECT dblink_exec('fast_worker', 'INSERT INTO citus_test.fast_messages SELECT * FROM citus_test.fast_rows(641, 660)');
SELECT dblink_disconnect('fast_worker');
INSERT INTO citus_test.fast_local SELECT * FROM citus_test.fast_rows(641, 660);
SELECT * FROM citus_test.fast_ledgers();
SELECT same, differing FROM citus_test.fast_compare();
SELECT billing.merge() >= 0 AS merged;
SELECT same, differing FROM citus_test.fast_compare();

SELECT billing.untrack_messages('citus_test.fast_messages');
SELECT billing.untrack_messages('citus_test.fast_local');
SELECT nodeport > 0 AS worker, result AS left_on_worker
  FROM run_command_on_workers($$SELECT (SELECT count(*) FROM pg_proc WHERE proname LIKE 'citus\_track\_%')
                                       + (SELECT count(*) FROM pg_class WHERE relname LIKE 'citus\_%'
                                           AND relnamespace = 'billing'::regnamespace)$$);
DROP EXTENSION dblink;
DROP TABLE citus_test.fast_messages, citus_test.fast_local;
ALTER DATABASE citus_test RESET track_functions;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM reads_fast_dist, reads_fast_local;
REVOKE ALL ON SCHEMA billing, citus_test FROM reads_fast_dist, reads_fast_local;
DROP FUNCTION citus_test.fast_compare(), citus_test.fast_figures_as(name), citus_test.fast_ledgers(),
    citus_test.fast_others(regclass), citus_test.fast_replies(regclass), citus_test.fast_estimates(),
    citus_test.trigger_calls_since(bigint, bigint, bigint),
    citus_test.trigger_calls(), citus_test.fast_shards(int, int), citus_test.fast_rows(int, int);
DROP ROLE reads_fast_dist, reads_fast_local;
