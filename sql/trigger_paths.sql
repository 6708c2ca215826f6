-- The tracking trigger has two paths: billing.track_N (C) writes a plain
-- INSERT's ledger row itself, and passes every other write to
-- billing.track_N_full (PL/pgSQL). Both must store exactly the same rows.
-- Each table shape below is tracked twice; the same writes go to one copy
-- with billing.trigger_fast_path on and to the other with it off, and
-- billing's rows for the two copies are compared.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

CREATE TYPE speaker_role AS ENUM ('system', 'user', 'assistant');

-- Makes table `name` with the given column types, tracks it, and returns its id.
CREATE FUNCTION make_tracked(name text, id_type text, conv_type text, role_type text, data_type text, at_type text)
RETURNS smallint LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (id %s PRIMARY KEY, conversation_id %s, role %s, content varchar,
                                     data %s, created_at %s)', name, id_type, conv_type, role_type, data_type, at_type);
    -- (as apps have: the C path reads a reply's earlier messages by it)
    EXECUTE format('CREATE INDEX ON %I (conversation_id)', name);
    PERFORM billing.track_messages(name::regclass);
    RETURN (SELECT id FROM billing.tracked_tables WHERE relation = name::regclass);
END
$$;

-- The same writes into `name`: every shape of message, then an update and a delete.
CREATE FUNCTION write_messages(name text, conv_type text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    c text := CASE WHEN conv_type = 'bigint' THEN '' ELSE 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1' END;
BEGIN
    EXECUTE format($q$
      INSERT INTO %1$I VALUES
        -- replies with usage, a user's message, a total only, no data: written in C
        (1, (%2$L || '1')::%3$s, 'assistant', 'hi', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-10 10:00'),
        (2, (%2$L || '2')::%3$s, 'user', 'what is the time', '{}', '2026-11-10 10:01'),
        (3, (%2$L || '3')::%3$s, 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0,
                                            "prompt_tokens_details": {"cached_tokens": 400}}', '2026-11-10 10:02'),
        (4, (%2$L || '3')::%3$s, 'assistant', 'x', '{"model": "gpt-4o", "tokens": 150}', '2026-11-10 10:03'),
        (5, (%2$L || '4')::%3$s, 'user', 'no data', NULL, '2026-11-10 10:04'),
        (6, NULL, 'assistant', 'x', '{"model": "gpt-9", "prompt_tokens": 5, "completion_tokens": 5}', '2026-11-10 10:05'),
        (7, (%2$L || '1')::%3$s, 'system', 'be brief', '{"model": "gpt-4o-mini"}', '2026-12-31 23:59:59.999999'),
        -- a reply to estimate, problems, a time billing does not count: the PL/pgSQL body
        (8, (%2$L || '2')::%3$s, 'assistant', 'twelve chars', '{}', '2026-11-10 10:06'),
        (9, (%2$L || '1')::%3$s, 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": "12a"}', '2026-11-10 10:07'),
        (10, (%2$L || '1')::%3$s, 'assistant', 'x', '[1]', '2026-11-10 10:08'),
        (11, (%2$L || '1')::%3$s, 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', NULL)
    $q$, name, c, conv_type);
    EXECUTE format('UPDATE %I SET data = ''{"model": "gpt-4o", "prompt_tokens": 200, "completion_tokens": 50}'' WHERE id = 1', name);
    EXECUTE format('DELETE FROM %I WHERE id = 6', name);
END
$$;

-- billing's rows for table `sid`, as text, without the table's id.
CREATE FUNCTION stored_rows(sid integer) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT 'ledger ' || (l.conversation_id, l.created_at, l.model, l.messages, l.prompt_tokens, l.completion_tokens,
                         l.cached_tokens, l.estimated_prompt, l.estimated_completion, l.unsplit_tokens, l.problems)::text
      FROM billing.usage_ledger AS l WHERE l.source_id = sid
    UNION ALL
    SELECT 'problem ' || (p.message_id, p.created_at, p.problem)::text FROM billing.problem_messages AS p WHERE p.source_id = sid
    UNION ALL
    SELECT 'estimate ' || (e.message_id, e.prompt_tokens)::text FROM billing.estimated_prompts AS e WHERE e.source_id = sid
$$;

-- Rows one copy has and the other lacks (none: the paths agree), and how many rows each has.
CREATE FUNCTION compare_paths(fast integer, full_path integer) RETURNS TABLE (side text, row_text text) LANGUAGE sql AS $$
    (SELECT 'fast only', r FROM (SELECT stored_rows(fast) EXCEPT ALL SELECT stored_rows(full_path)) AS x(r)
     UNION ALL
     SELECT 'full only', r FROM (SELECT stored_rows(full_path) EXCEPT ALL SELECT stored_rows(fast)) AS x(r))
    UNION ALL
    SELECT 'rows in each', count(*)::text FROM stored_rows(fast)
$$;

-- The shapes: what ORMs create, and the seed's.
SELECT make_tracked('seed_fast', 'bigint', 'text', 'text', 'jsonb', 'timestamptz') AS seed_fast,
       make_tracked('seed_full', 'bigint', 'text', 'text', 'jsonb', 'timestamptz') AS seed_full,
       make_tracked('orm_fast', 'bigint', 'uuid', 'speaker_role', 'jsonb', 'timestamp(3)') AS orm_fast,
       make_tracked('orm_full', 'bigint', 'uuid', 'speaker_role', 'jsonb', 'timestamp(3)') AS orm_full,
       make_tracked('ints_fast', 'integer', 'bigint', 'varchar(20)', 'jsonb', 'date') AS ints_fast,
       make_tracked('ints_full', 'integer', 'bigint', 'varchar(20)', 'jsonb', 'date') AS ints_full
\gset

SET billing.trigger_fast_path = on;
SELECT write_messages('seed_fast', 'text'), write_messages('orm_fast', 'uuid'), write_messages('ints_fast', 'bigint');
SET billing.trigger_fast_path = off;
SELECT write_messages('seed_full', 'text'), write_messages('orm_full', 'uuid'), write_messages('ints_full', 'bigint');
RESET billing.trigger_fast_path;

SELECT * FROM compare_paths(:seed_fast, :seed_full) ORDER BY 1, 2;
SELECT * FROM compare_paths(:orm_fast, :orm_full) ORDER BY 1, 2;
SELECT * FROM compare_paths(:ints_fast, :ints_full) ORDER BY 1, 2;

-- The comparison can fail: one changed ledger row is seen.
BEGIN;
UPDATE billing.usage_ledger SET prompt_tokens = 101 WHERE source_id = :seed_fast AND prompt_tokens = 100;
SELECT * FROM compare_paths(:seed_fast, :seed_full) ORDER BY 1, 2;
ROLLBACK;

-- The reads sum the unmerged ledger in C (billing._ledger_usage); the view
-- billing._ledger_priced states the same rules in SQL. Grouped alike, the
-- two agree on every table, month, conversation and model, including
-- removals, a model without a price, no model, and a name long enough to
-- be keyed by its md5.
INSERT INTO seed_fast VALUES
  (20, 'long', 'assistant', 'x', jsonb_build_object('model', repeat('gpt-4o-', 40), 'prompt_tokens', 7, 'completion_tokens', 3),
   '2026-11-12'),
  (21, 'long', 'assistant', 'x', '{"model": "gpt-4o-2024-08-06", "prompt_tokens": 10, "completion_tokens": 10}', '2026-10-31 23:59:59');
DELETE FROM seed_fast WHERE id = 21;
CREATE FUNCTION ledger_in_sql() RETURNS TABLE (r text) LANGUAGE sql AS $$
    SELECT (l.source_id, l.month, l.conversation_id, l.model, sum(l.messages), sum(l.prompt_tokens),
            sum(l.completion_tokens), sum(l.cached_tokens), sum(l.estimated_prompt), sum(l.estimated_completion),
            sum(l.unsplit_tokens), sum(l.problems), sum(l.cost), sum(l.estimated_cost), sum(l.unpriced_tokens),
            min(l.created_at) FILTER (WHERE l.messages > 0), max(l.created_at) FILTER (WHERE l.messages > 0),
            min(l.created_at) FILTER (WHERE l.messages < 0), max(l.created_at) FILTER (WHERE l.messages < 0))::text
      FROM billing._ledger_priced AS l GROUP BY l.source_id, l.month, l.conversation_id, l.model
$$;
CREATE FUNCTION ledger_in_c() RETURNS TABLE (r text) LANGUAGE sql AS $$
    SELECT (u.source_id, u.month, u.conversation_id, u.model, u.messages, u.prompt_tokens, u.completion_tokens,
            u.cached_tokens, u.estimated_prompt, u.estimated_completion, u.unsplit_tokens, u.problems,
            u.cost, u.estimated_cost, u.unpriced_tokens, u.first_added, u.last_added, u.first_removed,
            u.last_removed)::text
      FROM billing._ledger_usage('-infinity', 'infinity', billing._estimate_model()) AS u
$$;
-- (numbers as text with trailing zeros trimmed: the two sum at different scales)
CREATE FUNCTION trimmed(r text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(regexp_replace(r, '(\.[0-9]*[1-9])0+([,)])', '\1\2', 'g'), '\.0+([,)])', '\1', 'g')
$$;
SELECT (SELECT count(*) FROM ledger_in_sql()) AS groups,
       (SELECT count(*) FROM (SELECT trimmed(r) FROM ledger_in_sql() EXCEPT SELECT trimmed(r) FROM ledger_in_c()) AS x) AS only_in_sql,
       (SELECT count(*) FROM (SELECT trimmed(r) FROM ledger_in_c() EXCEPT SELECT trimmed(r) FROM ledger_in_sql()) AS x) AS only_in_c;
SELECT model, unpriced_tokens FROM billing._ledger_usage('-infinity', 'infinity', billing._estimate_model())
 WHERE conversation_id = 'long' ORDER BY model;
-- Whole months only: [2026-11-01, 2026-11-15) holds no whole month of
-- ledger rows, [2026-11-01, 2026-12-01) holds November's.
SELECT (SELECT count(*) FROM billing._ledger_usage('2026-11-01', '2026-11-15', 'gpt-4o-mini')) AS partial_month,
       (SELECT count(*) FROM billing._ledger_usage('2026-11-01', '2026-12-01', 'gpt-4o-mini'))
       = (SELECT count(*) FROM ledger_in_sql() AS g WHERE r LIKE '%,11-01-2026,%') AS november;
DROP FUNCTION ledger_in_sql, ledger_in_c, trimmed;
DELETE FROM seed_fast WHERE id = 20;

-- November 2026 of the seed shape, by hand (gpt-4o $2.50 / $1.25 cached /
-- $10 per 1M; gpt-4o-mini $0.15 / $0.60):
--   id 1 after its update: 200 x 2.50/1M + 50 x 10/1M       = 0.0010
--   id 3: 600 x 2.50/1M + 400 x 1.25/1M                      = 0.0020
--   id 8, estimated: its prompt is id 2 ('what is the time', 16 characters:
--     4 tokens), its completion 'twelve chars' (3 tokens), as gpt-4o-mini:
--     4 x 0.15/1M + 3 x 0.60/1M                              = 0.0000024
--   id 4 (a total only) and id 6 (gpt-9, then deleted) are not priced; 9, 10
--   and 11 are problems. Total 0.0030024. id 7 is in December.
SELECT month, sum(cost) AS cost, sum(messages) AS messages, sum(unpriced_tokens) AS unpriced_tokens
  FROM billing.conversation_costs WHERE source_table = 'seed_fast'::regclass GROUP BY month ORDER BY month;

-- Which path ran: after a table's first row in a session (the full body,
-- which also checks that the function serves this table), a plain INSERT
-- is written in C, and so is a reply to estimate while the table has an
-- index on its conversation column; without one, the full body reads the
-- conversation.
BEGIN;
SET LOCAL track_functions = 'all';
INSERT INTO seed_fast VALUES (100, 'c9', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '2026-11-11'),
                             (101, 'c9', 'user', 'y', '{}', '2026-11-11');
INSERT INTO seed_fast VALUES (102, 'c9', 'assistant', 'z', '{}', '2026-11-11');
SELECT replace(funcname, :seed_fast::text, 'N') AS function, calls FROM pg_stat_xact_user_functions
 WHERE funcname IN (format('track_%s', :seed_fast), format('track_%s_full', :seed_fast)) ORDER BY funcname;
DROP INDEX seed_fast_conversation_id_idx;
INSERT INTO seed_fast VALUES (103, 'c9', 'assistant', 'z', '{}', '2026-11-11');
SELECT replace(funcname, :seed_fast::text, 'N') AS function, calls FROM pg_stat_xact_user_functions
 WHERE funcname IN (format('track_%s', :seed_fast), format('track_%s_full', :seed_fast)) ORDER BY funcname;
-- 'x' and 'y' (1 token each) before 102, in C; 'x', 'y' and 'z' before 103, by the full body
SELECT message_id, prompt_tokens FROM billing.estimated_prompts WHERE source_id = :seed_fast AND message_id IN ('102', '103')
 ORDER BY message_id;
ROLLBACK;

-- Replies estimated in C, case by case, against the full body and by hand.
-- The prompt of a reply is every message of its conversation before it by
-- (created_at, id), one token per 4 characters (rounded up), as SQL
-- compares rows: a NULL time or id decides nothing and is not counted.
CREATE TABLE est_fast (id text, conversation_id uuid, role text, content text, data jsonb, created_at timestamp);
CREATE INDEX ON est_fast (conversation_id, created_at);
CREATE TABLE est_full (LIKE est_fast INCLUDING INDEXES);
SELECT f.tracked, p.tracked FROM billing.track_messages('est_fast') AS f, billing.track_messages('est_full') AS p;
CREATE FUNCTION write_estimates(name text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a text := 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
    b text := 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12';
BEGIN
    EXECUTE format($q$
      INSERT INTO %1$I VALUES
        ('m01', %2$L, 'user', 'hello there', '{}', '2026-11-10 10:00'),          -- 11 chars: 3
        ('m03', %2$L, 'user', 'déjà vu', '{}', '2026-11-10 10:01'),              -- 7 characters (9 bytes): 2
        ('m02', %2$L, 'user', NULL, '{}', '2026-11-10 10:01'),                   -- no content: nothing
        ('m04', %2$L, 'user', 'not timed', '{}', NULL),                          -- not counted
        ('m05', %3$L, 'user', 'other conversation', '{}', '2026-11-10 09:00')
    $q$, name, a, b);
    -- One statement: the reply sees the messages stored with it, whose
    -- time ties with its own: a question counts whether its id sorts first
    -- ('m06' < 'm07') or not ('m13'), as an app's question and reply stored
    -- in one transaction at the same now() are.
    EXECUTE format($q$
      INSERT INTO %1$I VALUES
        ('m07', %2$L, 'assistant', 'abcdefghi', '{"model": "gpt-4o-mini"}', '2026-11-10 10:02'),
        ('m06', %2$L, 'user', 'four', '{}', '2026-11-10 10:02'),
        ('m13', %2$L, 'user', 'tied', '{}', '2026-11-10 10:02'),
        ('m08', %2$L, 'user', 'after', '{}', '2026-11-10 10:03')
    $q$, name, a);
    -- A reply stored later but timed earlier, an empty reply, and one whose
    -- id is stored again (its estimate replaced, as ON CONFLICT does).
    EXECUTE format($q$INSERT INTO %1$I VALUES ('m09', %2$L, 'assistant', '', '{}', '2026-11-10 10:00:30')$q$, name, a);
    EXECUTE format($q$INSERT INTO %1$I VALUES ('m10', %2$L, 'assistant', NULL, NULL, '2026-11-10 10:05')$q$, name, a);
    EXECUTE format($q$INSERT INTO %1$I VALUES ('m12', %2$L, 'user', 'more text', '{}', '2026-11-10 10:05:30')$q$, name, a);
    EXECUTE format($q$INSERT INTO %1$I VALUES ('m10', %2$L, 'assistant', 'again', NULL, '2026-11-10 10:06')$q$, name, a);
    EXECUTE format($q$INSERT INTO %1$I VALUES ('m11', NULL, 'assistant', 'no conversation', '{}', '2026-11-10 10:07')$q$, name);
END
$$;
-- (under REPEATABLE READ, as in a transaction of the app's: each reply
-- still sees the messages this transaction stored before it)
SET billing.trigger_fast_path = on;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SET LOCAL track_functions = 'all';
SELECT write_estimates('est_fast');
-- 14 rows; 3 in the full body: the table's first row in this session
-- (m01), a row without a time (m04) and m10 stored again (the full body's
-- INSERT ... ON CONFLICT replaces its estimate).
SELECT regexp_replace(funcname, '[0-9]+', 'N') AS function, calls FROM pg_stat_xact_user_functions
 WHERE funcname ~ format('^track_%s(_full)?$', (SELECT id FROM billing.tracked_tables WHERE relation = 'est_fast'::regclass))
 ORDER BY funcname;
COMMIT;
SET billing.trigger_fast_path = off;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT write_estimates('est_full');
COMMIT;
RESET billing.trigger_fast_path;
SELECT * FROM compare_paths((SELECT id FROM billing.tracked_tables WHERE relation = 'est_fast'::regclass),
                            (SELECT id FROM billing.tracked_tables WHERE relation = 'est_full'::regclass)) ORDER BY 1, 2;
-- By hand:
--   m07 (10:02): m01 3 + m03 2 + m06 ('four', tied time, smaller id) 1
--     + m13 ('tied', tied time, larger id) 1 = 7
--   m09 (10:00:30): m01 3 = 3
--   m10 (10:05): m01 3 + m03 2 + m06 1 + m13 1 + m07 ('abcdefghi') 3
--     + m08 ('after') 2 + m09 ('') 0 = 12; stored again at 10:06, after
--     m12 ('more text', 3) and the first m10 (no content): 15 replaces 12
--   m11: no conversation, 0
SELECT message_id, prompt_tokens FROM billing.estimated_prompts
 WHERE source_id = (SELECT id FROM billing.tracked_tables WHERE relation = 'est_fast'::regclass) ORDER BY message_id;
-- Each backend remembers a table's conversation index. Dropped, a reply
-- goes to the full body (still estimated, by a query); made anew, under
-- another name, the C path finds it. 'abcd' and 'r' are 1 token each:
--   x02: x01 = 1;  x03: x01 + x02 = 2;  x04: x01 + x02 + x03 = 3
SET billing.trigger_fast_path = on;
BEGIN;
SET LOCAL track_functions = 'all';
-- (the counts so far: the view also holds calls of earlier transactions not yet reported)
SELECT coalesce(sum(calls) FILTER (WHERE funcname !~ '_full$'), 0) AS c_calls,
       coalesce(sum(calls) FILTER (WHERE funcname ~ '_full$'), 0) AS full_calls
  FROM pg_stat_xact_user_functions
 WHERE funcname ~ format('^track_%s(_full)?$', (SELECT id FROM billing.tracked_tables WHERE relation = 'est_fast'::regclass)) \gset
INSERT INTO est_fast VALUES ('x01', '00000000-0000-0000-0000-0000000000aa', 'user', 'abcd', '{}', '2026-11-11 10:00'),
                            ('x02', '00000000-0000-0000-0000-0000000000aa', 'assistant', 'r', '{}', '2026-11-11 10:01');
DROP INDEX est_fast_conversation_id_created_at_idx;
INSERT INTO est_fast VALUES ('x03', '00000000-0000-0000-0000-0000000000aa', 'assistant', 'r', '{}', '2026-11-11 10:02');
CREATE INDEX est_fast_by_conversation ON est_fast (conversation_id);
INSERT INTO est_fast VALUES ('x04', '00000000-0000-0000-0000-0000000000aa', 'assistant', 'r', '{}', '2026-11-11 10:03');
-- (4 rows; 1 in the full body: x03)
SELECT coalesce(sum(calls) FILTER (WHERE funcname !~ '_full$'), 0) - :c_calls AS track_n,
       coalesce(sum(calls) FILTER (WHERE funcname ~ '_full$'), 0) - :full_calls AS track_n_full
  FROM pg_stat_xact_user_functions
 WHERE funcname ~ format('^track_%s(_full)?$', (SELECT id FROM billing.tracked_tables WHERE relation = 'est_fast'::regclass));
COMMIT;
RESET billing.trigger_fast_path;
SELECT message_id, prompt_tokens FROM billing.estimated_prompts
 WHERE source_id = (SELECT id FROM billing.tracked_tables WHERE relation = 'est_fast'::regclass)
   AND message_id LIKE 'x%' ORDER BY message_id;
SELECT billing.untrack_messages('est_fast'), billing.untrack_messages('est_full');
DROP TABLE est_fast, est_full;
DROP FUNCTION write_estimates;

-- The C function bills no table it was not made for, even once it has
-- written rows for its own table in this session: the app's writes there
-- pass, unbilled, with one WARNING per transaction (the second row and the
-- second statement say nothing), and none takes the fast path afterwards.
CREATE TABLE other_messages (LIKE seed_fast);
DO $$
BEGIN
    EXECUTE format('CREATE TRIGGER stolen AFTER INSERT OR DELETE OR UPDATE OF id, conversation_id, role, content, data, created_at
                    ON other_messages FOR EACH ROW EXECUTE FUNCTION billing.track_%s()',
                   (SELECT id FROM billing.tracked_tables WHERE relation = 'seed_fast'::regclass));
END
$$;
BEGIN;
INSERT INTO other_messages VALUES (1, 'c1', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '2026-11-11'),
                                  (2, 'c1', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '2026-11-11');
INSERT INTO other_messages VALUES (3, 'c1', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '2026-11-11');
COMMIT;
INSERT INTO other_messages VALUES (4, 'c1', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '2026-11-11');
SELECT count(*) AS rows_written FROM other_messages;
SELECT count(*) AS ledger_rows_for_other FROM billing.usage_ledger
 WHERE source_id = :seed_fast AND created_at = '2026-11-11';
DROP TABLE other_messages;

-- A partition of a tracked table is written in C too, as its own table.
CREATE TABLE parted (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamptz)
    PARTITION BY RANGE (created_at);
CREATE TABLE parted_2026_11 PARTITION OF parted FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
SELECT tracked FROM billing.track_messages('parted');
INSERT INTO parted VALUES (1, 'p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-05'),
                          (2, 'p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-06');
-- 2 x 0.00075
SELECT cost, messages FROM billing.conversation_costs WHERE source_table = 'parted'::regclass;

-- A reply without usage on a partitioned table or a table with row
-- security is estimated in C as well, from every table the
-- full body's query reads (it reads the tracked table as the extension's
-- owner, whom no policy restricts): a conversation across monthly
-- partitions, one of them attached with its columns in another order; rows
-- the app's role may not see. Each shape twice, as
-- above: the C path against the full body, and both against a hand count.
CREATE ROLE est_app;
CREATE FUNCTION make_estimated(suffix text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamp)
                    PARTITION BY RANGE (created_at)', 'est_parted' || suffix);
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                   'est_parted_10' || suffix, 'est_parted' || suffix, '2026-10-01', '2026-11-01');
    EXECUTE format('CREATE TABLE %I (junk int, created_at timestamp, content text, data jsonb, role text, conversation_id text, id bigint)',
                   'est_parted_11' || suffix);
    EXECUTE format('ALTER TABLE %I DROP COLUMN junk', 'est_parted_11' || suffix);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   'est_parted' || suffix, 'est_parted_11' || suffix, '2026-11-01', '2026-12-01');
    -- (an index of each partition's own, so that one can be dropped below)
    EXECUTE format('CREATE INDEX ON %I (conversation_id)', 'est_parted_10' || suffix);
    EXECUTE format('CREATE INDEX ON %I (conversation_id)', 'est_parted_11' || suffix);
    EXECUTE format('CREATE TABLE %I (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamp)',
                   'est_rls' || suffix);
    EXECUTE format('CREATE INDEX ON %I (conversation_id)', 'est_rls' || suffix);
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', 'est_rls' || suffix);
    EXECUTE format('CREATE POLICY writes ON %I FOR INSERT TO est_app WITH CHECK (true)', 'est_rls' || suffix);
    EXECUTE format('CREATE POLICY reads ON %I FOR SELECT TO est_app USING (role <> %L)', 'est_rls' || suffix, 'system');
    EXECUTE format('GRANT INSERT ON %I TO est_app', 'est_rls' || suffix);
    PERFORM billing.track_messages(('est_parted' || suffix)::regclass),
            billing.track_messages(('est_rls' || suffix)::regclass);
END
$$;
-- The earlier messages: each table's (and partition's) first row of the
-- session takes the full body, as above; the replies come after.
CREATE FUNCTION write_context(suffix text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$INSERT INTO %I VALUES (1, 'c', 'user', 'abcd', '{}', '2026-10-31 23:00'),        -- 1 token
                                            (2, 'c', 'user', 'abcdefgh', '{}', '2026-11-01 01:00'),    -- 2
                                            (3, 'd', 'user', 'abcdefghijkl', '{}', '2026-11-01 01:00') -- another conversation
                   $q$, 'est_parted' || suffix);
    SET LOCAL ROLE est_app;
    EXECUTE format($q$INSERT INTO %I VALUES (1, 'c', 'system', 'abcdefghijklmnop', '{}', '2026-11-01'),  -- 4, hidden from est_app
                                            (2, 'c', 'user', 'abcd', '{}', '2026-11-01 00:01')          -- 1
                   $q$, 'est_rls' || suffix);
    RESET ROLE;
END
$$;
CREATE FUNCTION write_replies(suffix text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$INSERT INTO %I VALUES (4, 'c', 'assistant', 'x', '{}', '2026-11-02')$q$, 'est_parted' || suffix);
    EXECUTE format($q$INSERT INTO %I VALUES (5, 'c', 'assistant', 'x', '{}', '2026-10-31 23:30')$q$, 'est_parted' || suffix);
    SET LOCAL ROLE est_app;
    EXECUTE format($q$INSERT INTO %I VALUES (3, 'c', 'assistant', 'x', '{}', '2026-11-02')$q$, 'est_rls' || suffix);
    RESET ROLE;
END
$$;
SELECT make_estimated(''), make_estimated('_f');
SET billing.trigger_fast_path = on;
BEGIN;
SELECT write_context('');
COMMIT;
BEGIN;
SET LOCAL track_functions = 'all';
SELECT write_replies('');
-- (3 replies, none in the full body)
SELECT coalesce(sum(calls) FILTER (WHERE funcname !~ '_full$'), 0) AS track_n,
       coalesce(sum(calls) FILTER (WHERE funcname ~ '_full$'), 0) AS track_n_full
  FROM pg_stat_xact_user_functions
 WHERE funcname IN (SELECT format('track_%s', t.id) FROM billing.tracked_tables AS t WHERE t.relation::text !~ '_f$'
                    UNION ALL
                    SELECT format('track_%s_full', t.id) FROM billing.tracked_tables AS t WHERE t.relation::text !~ '_f$');
COMMIT;
SET billing.trigger_fast_path = off;
BEGIN;
SELECT write_context('_f');
COMMIT;
BEGIN;
SELECT write_replies('_f');
COMMIT;
RESET billing.trigger_fast_path;
-- By hand (one token per 4 characters):
--   est_parted 4 (11-02): 1 ('abcd', October's partition) + 2 ('abcdefgh', November's) = 3
--   est_parted 5 (10-31 23:30): 1 (only 'abcd' is earlier)
--   est_rls 3: 4 (the system message est_app may not read) + 1 = 5
SELECT t.relation, e.message_id, e.prompt_tokens
  FROM billing.estimated_prompts AS e JOIN billing.tracked_tables AS t ON t.id = e.source_id
 WHERE t.relation::text ~ '^est_(parted|rls)' ORDER BY 1, 2;
-- A partition without an index on the conversation column: its replies take
-- the full body, with the same figure (5: 1 + 2 + replies 4 and 5, 'x' each).
DROP INDEX est_parted_10_conversation_id_idx;
BEGIN;
SET LOCAL track_functions = 'all';
SELECT coalesce(sum(calls), 0) AS full_calls FROM pg_stat_xact_user_functions
 WHERE funcname = format('track_%s_full', (SELECT id FROM billing.tracked_tables WHERE relation = 'est_parted'::regclass)) \gset
INSERT INTO est_parted VALUES (6, 'c', 'assistant', 'x', '{}', '2026-11-03');
SELECT coalesce(sum(calls), 0) - :full_calls AS track_n_full FROM pg_stat_xact_user_functions
 WHERE funcname = format('track_%s_full', (SELECT id FROM billing.tracked_tables WHERE relation = 'est_parted'::regclass));
COMMIT;
SELECT message_id, prompt_tokens FROM billing.estimated_prompts
 WHERE source_id = (SELECT id FROM billing.tracked_tables WHERE relation = 'est_parted'::regclass) AND message_id = '6';
DROP FUNCTION make_estimated, write_context, write_replies;

SELECT billing.untrack_messages(t.relation) FROM billing.tracked_tables AS t ORDER BY t.id;
SELECT count(*) AS trigger_functions_left FROM pg_proc WHERE proname ~ '^track_[0-9]+(_full)?$' AND pronamespace = 'billing'::regnamespace;
DROP TABLE seed_fast, seed_full, orm_fast, orm_full, ints_fast, ints_full, parted,
    est_parted, est_parted_f, est_rls, est_rls_f;
DROP ROLE est_app;
DROP FUNCTION make_tracked, write_messages, compare_paths, stored_rows;
DROP TYPE speaker_role;

-- Integer ids (a sequence's) are given in the order rows are stored: at a
-- tie in time the id alone decides. An agent's turn stored in one statement
-- at one now(): a question (40 characters, 10 tokens), a tool call (8, 2),
-- the tool's result (400, 100), the answer. The tool call's prompt is the
-- question alone, 10, though the result is no reply; the answer's 10 + 2 +
-- 100 = 112. The same through the C trigger, the PL/pgSQL body and a
-- backfill of the rows.
CREATE TABLE turns_fast (id bigint GENERATED ALWAYS AS IDENTITY, conversation_id bigint, role text, content text,
                         data jsonb, created_at timestamp DEFAULT now());
CREATE INDEX ON turns_fast (conversation_id);
CREATE TABLE turns_full (LIKE turns_fast INCLUDING ALL);
SELECT f.tracked, p.tracked FROM billing.track_messages('turns_fast') AS f, billing.track_messages('turns_full') AS p;
CREATE FUNCTION write_turn(name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$INSERT INTO %I (conversation_id, role, content, data) VALUES
        (1, 'user', repeat('q', 40), '{}'), (1, 'assistant', repeat('c', 8), '{}'),
        (1, 'tool', repeat('r', 400), '{}'), (1, 'assistant', repeat('a', 20), '{}')$q$, name);
END
$$;
SET billing.trigger_fast_path = on;
SELECT write_turn('turns_fast');
SET billing.trigger_fast_path = off;
SELECT write_turn('turns_full');
RESET billing.trigger_fast_path;
CREATE TABLE turns_backfilled AS SELECT * FROM turns_fast;
CREATE INDEX ON turns_backfilled (conversation_id);
SELECT tracked FROM billing.track_messages('turns_backfilled');
SELECT t.relation AS source_table, e.message_id, e.prompt_tokens
  FROM billing.estimated_prompts AS e JOIN billing.tracked_tables AS t ON t.id = e.source_id
 WHERE t.relation IN ('turns_fast'::regclass, 'turns_full'::regclass, 'turns_backfilled'::regclass)
 ORDER BY 1, 2;
SELECT billing.untrack_messages('turns_fast'), billing.untrack_messages('turns_full'),
       billing.untrack_messages('turns_backfilled');
DROP TABLE turns_fast, turns_full, turns_backfilled;
DROP FUNCTION write_turn(text);

-- A reply's estimate stays frozen when it moves (README "Keeping billed
-- history"): the archive recipe's DELETE hands it to the INSERT in the same
-- statement, through the C trigger and the PL/pgSQL body alike. By hand
-- (one token per 4 characters): question 'q' x 8 = 2 tokens when the reply
-- was stored, then edited to 'q' x 40 = 10. Moved, the reply keeps 2;
-- estimated again it would be 10.
CREATE TABLE chats_fast (id bigint PRIMARY KEY, conversation_id uuid, role text, content text, data jsonb,
                         created_at timestamp);
CREATE INDEX ON chats_fast (conversation_id);
CREATE TABLE chats_full (LIKE chats_fast INCLUDING ALL);
CREATE TABLE chats_fast_archive (LIKE chats_fast INCLUDING ALL);
CREATE TABLE chats_full_archive (LIKE chats_fast INCLUDING ALL);
SELECT count(tracked) AS tracked FROM (VALUES ('chats_fast'), ('chats_full'), ('chats_fast_archive'), ('chats_full_archive')) AS v(t),
       LATERAL billing.track_messages(t::regclass);
CREATE FUNCTION chat_then_archive(name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- (a first row into each table: the C trigger takes a backend's first row to the full body)
    EXECUTE format($q$INSERT INTO %1$I VALUES (100, NULL, 'user', 'first', '{}', '2026-01-01');
                      INSERT INTO %1$I_archive VALUES (101, NULL, 'user', 'first', '{}', '2026-01-01');
                      INSERT INTO %1$I VALUES
                        (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'user', repeat('q', 8), '{}', '2026-01-05 10:00'),
                        (2, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'assistant', repeat('a', 12), '{}', '2026-01-05 10:01');
                      UPDATE %1$I SET content = repeat('q', 40) WHERE id = 1$q$, name);
    EXECUTE format($q$WITH moved AS (DELETE FROM %1$I WHERE created_at < '2026-02-01' RETURNING *)
                      INSERT INTO %1$I_archive SELECT * FROM moved$q$, name);
END
$$;
SET billing.trigger_fast_path = on;
BEGIN;
SET LOCAL track_functions = 'all';
SELECT coalesce(sum(calls) FILTER (WHERE funcname ~ '_full$'), 0) AS full_calls
  FROM pg_stat_xact_user_functions WHERE schemaname = 'billing' AND funcname ~ '^track_[0-9]+' \gset
SELECT chat_then_archive('chats_fast');
-- (the full body: each table's first row, the UPDATE and the 3 DELETEs; the 3 moved rows took the C path)
SELECT coalesce(sum(calls) FILTER (WHERE funcname ~ '_full$'), 0) - :full_calls AS full_calls_after_moves
  FROM pg_stat_xact_user_functions WHERE schemaname = 'billing' AND funcname ~ '^track_[0-9]+';
COMMIT;
SET billing.trigger_fast_path = off;
SELECT chat_then_archive('chats_full');
RESET billing.trigger_fast_path;
SELECT t.relation AS source_table, e.message_id, e.prompt_tokens, l.estimated_prompt, l.estimated_completion
  FROM billing.estimated_prompts AS e JOIN billing.tracked_tables AS t ON t.id = e.source_id
  JOIN billing.usage_ledger AS l ON l.source_id = t.id AND l.estimated_prompt <> 0
 WHERE t.relation IN ('chats_fast_archive'::regclass, 'chats_full_archive'::regclass)
 ORDER BY 1, 2;
-- Moved back and forth in one transaction, the estimate is handed over each time.
BEGIN;
WITH moved AS (DELETE FROM chats_fast_archive WHERE id = 2 RETURNING *) INSERT INTO chats_fast SELECT * FROM moved;
WITH moved AS (DELETE FROM chats_fast WHERE id = 2 RETURNING *) INSERT INTO chats_fast_archive SELECT * FROM moved;
COMMIT;
-- A hand-over lasts only its statement: a reply deleted, then stored again
-- under its id by a later statement (an app regenerating a reply), even in
-- the same transaction, is estimated anew from what is there now (the
-- question, moved too, is 10 tokens; the other message is in no conversation).
BEGIN;
DELETE FROM chats_full_archive WHERE id = 2;
INSERT INTO chats_full_archive VALUES (2, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'assistant', repeat('a', 12), '{}', '2026-01-05 10:01');
COMMIT;
SELECT t.relation AS source_table, e.message_id, e.prompt_tokens
  FROM billing.estimated_prompts AS e JOIN billing.tracked_tables AS t ON t.id = e.source_id
 WHERE t.relation::text ~ '^chats_' ORDER BY 1, 2;
-- The same reply moved by an UPDATE of its time into another partition (a
-- DELETE and an INSERT to the triggers) keeps its estimate too: 2, not 10.
CREATE TABLE chats_by_month (id bigint, conversation_id uuid, role text, content text, data jsonb, created_at timestamp,
                             PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
CREATE TABLE chats_2026_01 PARTITION OF chats_by_month FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE chats_2026_02 PARTITION OF chats_by_month FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE INDEX ON chats_by_month (conversation_id);
SELECT tracked FROM billing.track_messages('chats_by_month');
INSERT INTO chats_by_month VALUES
    (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'user', repeat('q', 8), '{}', '2026-01-05 10:00'),
    (2, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'assistant', repeat('a', 12), '{}', '2026-01-05 10:01');
UPDATE chats_by_month SET content = repeat('q', 40) WHERE id = 1;
UPDATE chats_by_month SET created_at = '2026-02-05 10:01' WHERE id = 2;
SELECT e.message_id, e.prompt_tokens FROM billing.estimated_prompts AS e
  JOIN billing.tracked_tables AS t ON t.id = e.source_id WHERE t.relation = 'chats_by_month'::regclass;
-- A reply of a table billing reads itself (tracked without a backfill, not
-- merged yet) has no frozen estimate to hand over: moved, it is estimated
-- where it arrives, from the question moved before it (10 tokens), not 0.
-- Moved across partitions, from its conversation: 10 as well.
CREATE TABLE chats_late (LIKE chats_fast INCLUDING ALL);
CREATE TABLE chats_late_archive (LIKE chats_fast INCLUDING ALL);
INSERT INTO chats_late VALUES
    (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'user', repeat('q', 40), '{}', '2026-01-05 10:00'),
    (2, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'assistant', repeat('a', 12), '{}', '2026-01-05 10:01');
INSERT INTO chats_by_month VALUES
    (3, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13', 'user', repeat('q', 40), '{}', '2026-01-06 10:00'),
    (4, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13', 'assistant', repeat('a', 12), '{}', '2026-01-06 10:01');
SELECT tracked FROM billing.track_messages('chats_late', backfill => false);
SELECT tracked FROM billing.track_messages('chats_late_archive');
SELECT billing.untrack_messages('chats_by_month');
SELECT tracked FROM billing.track_messages('chats_by_month', backfill => false);
WITH moved AS (DELETE FROM chats_late RETURNING *) INSERT INTO chats_late_archive SELECT * FROM moved;
UPDATE chats_by_month SET created_at = '2026-02-06 10:01' WHERE id = 4;
SELECT t.relation AS source_table, e.message_id, e.prompt_tokens
  FROM billing.estimated_prompts AS e JOIN billing.tracked_tables AS t ON t.id = e.source_id
 WHERE t.relation IN ('chats_late_archive'::regclass, 'chats_by_month'::regclass) ORDER BY 1, 2;
SELECT billing.untrack_messages(t::regclass)
  FROM (VALUES ('chats_fast'), ('chats_full'), ('chats_fast_archive'), ('chats_full_archive'), ('chats_by_month'),
               ('chats_late'), ('chats_late_archive')) AS v(t);
DROP TABLE chats_fast, chats_full, chats_fast_archive, chats_full_archive, chats_by_month, chats_late, chats_late_archive;
DROP FUNCTION chat_then_archive(text);
