-- billing._scan_table and the backfill read a tracked table in C
-- (src/pg/table_scan.cpp). Here they are compared with the SQL they
-- replaced, kept below as the reference: the same rows, text for text
-- (numeric scales included), on table shapes of every column type billing
-- reads and on hostile rows, before the first backfill (estimates computed
-- from the table) and after it (estimates frozen), in UTC months and in
-- New York's.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

-- The SQL of billing._scan_table before it was written in C, verbatim but
-- for the order of a conversation's messages at a tie in time, which is
-- now the id's for integer ids and otherwise puts a message that is not a
-- reply before a reply, written here on its own.
CREATE FUNCTION reference_scan(p_source smallint, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (month date, conversation_id text, model text, messages bigint, prompt_tokens numeric,
               completion_tokens numeric, cached_tokens numeric, estimated_prompt numeric,
               estimated_completion numeric, unsplit_tokens numeric, problems bigint, cost numeric,
               estimated_cost numeric, unpriced_tokens numeric,
               first_message_at timestamptz, last_message_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    m record;
    earlier_content text;
    earlier_role text;
BEGIN
    SELECT * INTO STRICT t FROM billing.tracked_tables WHERE id = p_source;
    m := billing._row_reader(t, 'm');
    earlier_content := billing._column_reader(t.relation, t.content_column, 'content', 'earlier');
    earlier_role := billing._column_reader(t.relation, t.role_column, 'role', 'earlier');
    IF (SELECT a.atttypid FROM pg_attribute AS a WHERE a.attrelid = t.relation AND a.attname = t.id_column)
       IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
        earlier_role := '''assistant''';   -- (integer ids: the id alone decides a tie)
    END IF;
    p_from := greatest(p_from, '0001-01-01 00:00:00+00');
    p_to := least(p_to, '10000-01-01 00:00:00+00');
    IF p_from >= p_to THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT billing.month_of(r.at), r.conv, billing._key(r.model), count(*)::bigint,
               sum(r.p), sum(r.c), sum(r.k), sum(r.ep), sum(r.ec), sum(r.unsplit), count(r.problem)::bigint,
               coalesce(sum(r.cost), 0), coalesce(sum(r.est_cost), 0),
               sum(billing._unpriced_tokens(r.cost, r.est_cost, r.p, r.c, r.ep, r.ec, r.unsplit)),
               min(r.at), max(r.at)
          FROM (SELECT q.*,
                       billing.usage_cost(q.model, q.p, q.c, q.k, q.at) AS cost,
                       billing.usage_cost(coalesce(q.model, $4), q.ep, q.ec, 0, q.at) AS est_cost
                  FROM (SELECT %1$s AS at, billing._key(%2$s) AS conv, u.model,
                               u.prompt_tokens AS p, u.completion_tokens AS c, u.cached_tokens AS k,
                               CASE WHEN u.estimated THEN coalesce(e.prompt_tokens, %8$s) ELSE 0 END AS ep,
                               u.estimated_completion AS ec, u.unsplit_tokens AS unsplit, u.problem
                          FROM %5$s AS m
                         CROSS JOIN LATERAL %4$s AS u
                          LEFT JOIN billing.estimated_prompts AS e
                                 ON u.estimated AND e.source_id = $1 AND e.message_id = billing._key(%3$s)
                         WHERE %6$s AND %7$s
                        OFFSET 0) AS q) AS r
         WHERE billing._countable(r.at)
         GROUP BY 1, 2, 3 $q$,
        m.at, m.conversation, m.id, m.usage, t.relation,
        billing._at_compare(t, 'm', '>=', '$2'), billing._at_compare(t, 'm', '<', '$3'),
        CASE WHEN t.backfilled THEN '0'
             ELSE format('(SELECT coalesce(sum(billing._estimated_tokens(%s)), 0)::bigint FROM %s AS earlier
                            WHERE earlier.%I = m.%I
                              AND (earlier.%I, CASE WHEN lower(%s) = ''assistant'' THEN 1 ELSE 0 END, earlier.%I) < (m.%I, 1, m.%I))',
                         earlier_content, t.relation, t.conversation_column, t.conversation_column,
                         t.created_at_column, earlier_role, t.id_column, t.created_at_column, t.id_column) END)
    USING p_source, p_from, p_to, billing._estimate_model();
END
$$;

-- The rows the backfill's SQL recorded (its lock, estimates and problems
-- statements): every estimated reply, problem or time billing does not
-- count, with the estimate of the reply's prompt from its conversation's
-- earlier messages and the usage's problem.
CREATE FUNCTION reference_recorded(p_source smallint)
RETURNS TABLE (message_id text, created_at timestamptz, estimated boolean, estimated_prompt bigint, problem text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    r record;
    earlier_content text;
    earlier_role text;
BEGIN
    SELECT * INTO STRICT t FROM billing.tracked_tables WHERE id = p_source;
    r := billing._row_reader(t, 'r');
    earlier_content := billing._column_reader(t.relation, t.content_column, 'content', 'm');
    earlier_role := billing._column_reader(t.relation, t.role_column, 'role', 'm');
    IF (SELECT a.atttypid FROM pg_attribute AS a WHERE a.attrelid = t.relation AND a.attname = t.id_column)
       IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
        earlier_role := '''assistant''';   -- (integer ids: the id alone decides a tie)
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT billing._key(%2$s), %3$s, u.estimated,
               CASE WHEN u.estimated
                    THEN (SELECT coalesce(sum(billing._estimated_tokens(%4$s)), 0)::bigint FROM %1$s AS m
                           WHERE m.%5$I = r.%5$I
                             AND (m.%6$I, CASE WHEN lower(%9$s) = 'assistant' THEN 1 ELSE 0 END, m.%7$I) < (r.%6$I, 1, r.%7$I)) END,
               u.problem
          FROM %1$s AS r CROSS JOIN LATERAL %8$s AS u
         WHERE u.estimated OR u.problem IS NOT NULL OR NOT coalesce(billing._countable(%3$s), false) $q$,
        t.relation, r.id, r.at, earlier_content, t.conversation_column, t.created_at_column, t.id_column, r.usage,
        earlier_role);
END
$$;

-- Rows one side has and the other lacks, as text, for a table and a range.
CREATE FUNCTION compare_scans(tbl regclass, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (groups bigint, only_c bigint, only_sql bigint) LANGUAGE sql AS $$
    WITH t AS (SELECT id FROM billing.tracked_tables WHERE relation = tbl),
         c AS (SELECT s::text AS r FROM t, billing._scan_table(t.id, p_from, p_to) AS s),
         q AS (SELECT s::text AS r FROM t, reference_scan(t.id, p_from, p_to) AS s)
    SELECT (SELECT count(*) FROM c),
           (SELECT count(*) FROM (SELECT r FROM c EXCEPT ALL SELECT r FROM q) AS x),
           (SELECT count(*) FROM (SELECT r FROM q EXCEPT ALL SELECT r FROM c) AS x)
$$;
CREATE FUNCTION compare_recorded(tbl regclass)
RETURNS TABLE (recorded bigint, estimated bigint, problems bigint, only_c bigint, only_sql bigint) LANGUAGE sql AS $$
    WITH t AS (SELECT * FROM billing.tracked_tables WHERE relation = tbl),
         c AS (SELECT s::text AS r, s.estimated, s.problem FROM t, billing._backfill_rows(t) AS s),
         q AS (SELECT s::text AS r FROM t, reference_recorded(t.id) AS s)
    SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM c WHERE estimated),
           (SELECT count(*) FROM c WHERE problem IS NOT NULL),
           (SELECT count(*) FROM (SELECT r FROM c EXCEPT ALL SELECT r FROM q) AS x),
           (SELECT count(*) FROM (SELECT r FROM q EXCEPT ALL SELECT r FROM c) AS x)
$$;
-- Each table over every range: the whole table, one month, a range cut
-- inside months (New York's month boundaries fall at 04:00 or 05:00 UTC),
-- and an empty one.
CREATE FUNCTION compare_all(tbl regclass)
RETURNS TABLE (range text, groups bigint, only_c bigint, only_sql bigint) LANGUAGE sql AS $$
    SELECT r.label, c.*
      FROM (VALUES ('all', '-infinity'::timestamptz, 'infinity'::timestamptz),
                   ('2026-11', '2026-11-01 00:00+00', '2026-12-01 00:00+00'),
                   ('cut', '2026-10-31 12:00+00', '2026-12-01 04:30+00'),
                   ('empty', '2026-12-01 00:00+00', '2026-12-01 00:00+00')) AS r(label, f, t)
     CROSS JOIN LATERAL compare_scans(tbl, r.f, r.t) AS c
$$;

-- The hostile rows every table gets (its columns cast from these texts):
-- replies with usage of several models (dated, unknown, empty, 3,000
-- characters), cached tokens, a total only, counts at the bigint limit,
-- user messages, no data, replies without usage (estimated from earlier
-- messages: multibyte text, no text, two replies at one time ordered by
-- their ids, a question at their time (before both, whatever its id), no
-- conversation), problems, times billing does not count, a conversation id
-- of 300 characters, over three months.
CREATE FUNCTION fill(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    long_conv text := repeat('c', 300);
    long_model text := repeat('m', 3000);
BEGIN
    EXECUTE format($q$
    INSERT INTO %s (id, conversation_id, role, content, data, created_at)
    SELECT v.id::text::%s, v.conv::text::%s, v.role::text::%s, v.content::text::%s, v.data::text::%s, v.at::%s
      FROM (VALUES
        (1, 'a', 'user', 'what is the time?', '{}', '2026-10-31 23:00:00+00'),
        (2, 'a', 'assistant', 'it is late', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-10-31 23:30:00+00'),
        (3, 'a', 'user', 'et là, l''heure ? 時間は？ 😀', NULL, '2026-11-01 03:59:59+00'),
        (4, 'a', 'assistant', 'réponse estimée 😀', '{}', '2026-11-01 04:00:00+00'),
        (5, 'a', 'assistant', 'tied, earlier by id', '{"model": "gpt-4o-mini"}', '2026-11-01 04:00:00+00'),
        (37, 'a', 'user', 'and a tie', '{}', '2026-11-01 04:00:00+00'),
        (6, 'a', 'user', NULL, '{}', '2026-11-01 04:10:00+00'),
        (7, 'a', 'assistant', '', NULL, '2026-11-01 04:20:00+00'),
        (8, 'b', 'assistant', 'cached', '{"model": "gpt-4o-2024-08-06", "prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 400}}', '2026-11-02'),
        (9, 'b', 'assistant', 'mini dated', '{"model": "gpt-4o-mini-2024-07-18", "input_tokens": 123456, "output_tokens": 7}', '2026-11-02 01:00'),
        (10, 'b', 'assistant', 'total only', '{"model": "gpt-4o", "tokens": 150}', '2026-11-02 02:00'),
        (11, 'b', 'assistant', 'unknown model', '{"model": "gpt-9", "prompt_tokens": 5, "completion_tokens": 5}', '2026-11-02 03:00'),
        (12, 'b', 'assistant', 'empty model', '{"model": "", "prompt_tokens": 5, "completion_tokens": 5}', '2026-11-02 04:00'),
        (13, 'b', 'assistant', 'no model', '{"prompt_tokens": 7, "completion_tokens": 3}', '2026-11-02 05:00'),
        (14, 'b', 'assistant', 'long model', %L, '2026-11-02 06:00'),
        (15, 'b', 'assistant', 'bigint max', '{"model": "gpt-4o", "prompt_tokens": 9223372036854775807, "completion_tokens": 9223372036854775807}', '2026-11-02 07:00'),
        (16, 'b', 'assistant', 'bigint max', '{"model": "gpt-4o", "prompt_tokens": 9223372036854775807, "completion_tokens": 0}', '2026-11-02 08:00'),
        (17, 'b', 'assistant', 'zero', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 0}', '2026-11-02 09:00'),
        (18, 'b', 'assistant', 'string count', '{"model": "gpt-4o", "prompt_tokens": "12a", "completion_tokens": 1}', '2026-11-02 10:00'),
        (19, 'b', 'assistant', 'negative', '{"model": "gpt-4o", "prompt_tokens": -5, "completion_tokens": 1}', '2026-11-02 11:00'),
        (20, 'b', 'assistant', 'array', '[1, 2]', '2026-11-02 12:00'),
        (21, 'b', 'assistant', 'model number', '{"model": 4, "prompt_tokens": 1, "completion_tokens": 1}', '2026-11-02 13:00'),
        (22, 'b', 'assistant', 'cached over prompt', '{"model": "gpt-4o", "prompt_tokens": 10, "completion_tokens": 1, "cached_tokens": 11}', '2026-11-02 14:00'),
        (23, 'b', 'assistant', 'no time', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', NULL),
        (24, 'b', 'assistant', 'no time, estimated', '{}', NULL),
        (25, 'b', 'assistant', 'far future', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '12000-01-01 00:00:00+00'),
        (26, 'b', 'assistant', 'far past, estimated', '{}', '0400-01-01 00:00:00+00 BC'),
        (27, NULL, 'assistant', 'no conversation, estimated', '{"model": "gpt-4o"}', '2026-11-03'),
        (28, NULL, 'assistant', 'no conversation', '{"model": "gpt-4o", "prompt_tokens": 3, "completion_tokens": 3}', '2026-11-03'),
        (29, %L, 'user', 'a question in the long conversation', '{}', '2026-11-20'),
        (30, %L, 'assistant', 'an estimated reply in it', '{"model": "gpt-4o-2024-05-13"}', '2026-11-21'),
        (31, %L, 'assistant', 'a priced reply in it', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 1}', '2026-11-22'),
        (32, 'c', 'system', 'be brief', '{"model": "gpt-4o-mini"}', '2026-12-31 23:59:59.999999+00'),
        (33, 'c', 'assistant', 'new year', '{"model": "gpt-4o", "prompt_tokens": 33, "completion_tokens": 33}', '2027-01-01 00:00:00+00'),
        (34, 'c', 'assistant', 'estimated in January', '{}', '2027-01-01 00:00:01+00'),
        (35, 'a', 'assistant', 'priced at 0.00025 and 0.00075', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 0}', '2026-11-01 05:00+00')
      ) AS v(id, conv, role, content, data, at) $q$,
      tbl,
      (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = 'id'),
      (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = 'conversation_id'),
      (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = 'role'),
      (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = 'content'),
      (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = 'data'),
      (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = 'created_at'),
      format('{"model": "%s", "prompt_tokens": 1, "completion_tokens": 1}', long_model),
      long_conv, long_conv, long_conv);
END
$$;

CREATE TYPE scan_role AS ENUM ('system', 'user', 'assistant');
CREATE DOMAIN conv_text AS text;
-- The seed's shape (text everywhere, jsonb, timestamptz, text ids), an ORM's
-- (bigint ids, uuid conversations, an enum role, timestamp without time
-- zone, an index on it: the backfill then goes month by month), and shapes
-- with data stored as json or text (read through billing._usage_of_text),
-- uuid ids, integer conversations, character(n) keys (trailing spaces
-- dropped, as their cast to text does), dates and a domain.
CREATE TABLE scan_seed (id text, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
CREATE TABLE scan_orm (id bigint, conversation_id uuid, role scan_role, content varchar(2000), data jsonb,
                       created_at timestamp(6));
CREATE INDEX ON scan_orm (created_at);
CREATE TABLE scan_json (id uuid, conversation_id bigint, role varchar(20), content text, data json, created_at date);
CREATE TABLE scan_chars (id character(40), conversation_id conv_text, role character(12), content character(300),
                         data text, created_at timestamptz);
SELECT fill('scan_seed');
-- (the ORM's conversations as uuids, its ids as numbers; the json table's
-- conversations as numbers, its ids as uuids)
CREATE TEMP TABLE v AS SELECT * FROM scan_seed;
INSERT INTO scan_orm SELECT id::bigint, CASE WHEN conversation_id IS NOT NULL THEN md5(conversation_id)::uuid END,
                            role::scan_role, content, data, created_at AT TIME ZONE 'UTC' FROM v;
INSERT INTO scan_orm VALUES (36, md5('a')::uuid, 'assistant', 'infinite', '{}', 'infinity');
INSERT INTO scan_json SELECT md5(id)::uuid, ascii(conversation_id), role, content, data::json,
                             (created_at AT TIME ZONE 'UTC')::date FROM v;
INSERT INTO scan_json VALUES (md5('x')::uuid, 7, 'assistant', 'not json', 'not json {', '2026-11-05'),
                             (md5('y')::uuid, 7, 'assistant', 'nul', '{"model": "gpt-4o", "x": "\u0000"}', '2026-11-05');
INSERT INTO scan_chars SELECT id, conversation_id || '  ', role, content, data, created_at FROM v;
INSERT INTO scan_chars VALUES (NULL, 'a', 'assistant', 'no id', '{"model": "gpt-4o", "prompt_tokens": 2, "completion_tokens": 2}', '2026-11-04');
DROP TABLE v;

SELECT tracked, backfilled FROM billing.track_messages('scan_seed', backfill => false);
SELECT tracked, backfilled FROM billing.track_messages('scan_orm', backfill => false);
SELECT tracked, backfilled FROM billing.track_messages('scan_json', backfill => false);
SELECT tracked, backfilled FROM billing.track_messages('scan_chars', backfill => false);

-- Before the first backfill: estimates computed from the tables.
SELECT * FROM compare_all('scan_seed');
SELECT * FROM compare_all('scan_orm');
SELECT * FROM compare_all('scan_json');
SELECT * FROM compare_all('scan_chars');
-- What the backfill records (read here outside a backfill: the locks are
-- released at the end of the statement's transaction).
SELECT * FROM compare_recorded('scan_seed');
SELECT * FROM compare_recorded('scan_orm');
SELECT * FROM compare_recorded('scan_json');
SELECT * FROM compare_recorded('scan_chars');

-- The comparison is of text, so a numeric's scale shows (0.00100 is not
-- 0.001), and it sees a group the reference lacks.
SELECT 0.00100::numeric::text = 0.001::numeric::text AS same_text;
BEGIN;
CREATE OR REPLACE FUNCTION reference_scan(p_source smallint, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (month date, conversation_id text, model text, messages bigint, prompt_tokens numeric,
               completion_tokens numeric, cached_tokens numeric, estimated_prompt numeric,
               estimated_completion numeric, unsplit_tokens numeric, problems bigint, cost numeric,
               estimated_cost numeric, unpriced_tokens numeric,
               first_message_at timestamptz, last_message_at timestamptz)
LANGUAGE sql AS $$ SELECT * FROM billing._scan_table(p_source, p_from, p_to) WHERE conversation_id <> 'b' $$;
SELECT groups, only_c, only_sql FROM compare_scans('scan_seed', '2026-11-01', '2026-12-01');
ROLLBACK;

-- The backfill: the frozen estimates and listed problems are the
-- reference's; then the scans agree with estimates read from
-- estimated_prompts, and the rollups hold what the reference scan sums.
SELECT billing.merge() >= 0 AS merged;
SELECT t.relation, t.backfilled,
       (SELECT count(*) FROM billing.estimated_prompts AS e WHERE e.source_id = t.id) AS estimates,
       (SELECT count(*) FROM billing.problem_messages AS p WHERE p.source_id = t.id) AS problems
  FROM billing.tracked_tables AS t ORDER BY t.id;
SELECT t.relation,
       (SELECT count(*) FROM (SELECT e.message_id, e.prompt_tokens FROM billing.estimated_prompts AS e WHERE e.source_id = t.id
                              EXCEPT SELECT r.message_id, r.estimated_prompt FROM reference_recorded(t.id) AS r WHERE r.estimated) AS x)
         AS estimates_not_in_reference,
       (SELECT count(*) FROM (SELECT p.message_id, p.created_at, p.problem FROM billing.problem_messages AS p WHERE p.source_id = t.id
                              EXCEPT
                              SELECT r.message_id, CASE WHEN isfinite(r.created_at) THEN r.created_at END,
                                     concat_ws('; ', r.problem,
                                               CASE WHEN NOT coalesce(billing._countable(r.created_at), false)
                                                    THEN 'created_at is NULL, infinite or outside the years 1 to 9999: not counted in any month' END)
                                FROM reference_recorded(t.id) AS r
                               WHERE r.problem IS NOT NULL OR NOT coalesce(billing._countable(r.created_at), false)) AS x)
         AS problems_not_in_reference
  FROM billing.tracked_tables AS t ORDER BY t.id;
SELECT * FROM compare_all('scan_seed');
SELECT * FROM compare_all('scan_orm');
SELECT * FROM compare_all('scan_json');
SELECT * FROM compare_all('scan_chars');
CREATE FUNCTION compare_rollups(tbl regclass) RETURNS TABLE (months bigint, conversations bigint, differences bigint)
LANGUAGE sql AS $$
    WITH t AS (SELECT id FROM billing.tracked_tables WHERE relation = tbl),
         s AS (SELECT r.* FROM t, reference_scan(t.id, '-infinity', 'infinity') AS r),
         ref_months AS (
            SELECT (s.month, coalesce(s.model, ''), sum(s.messages), sum(s.prompt_tokens), sum(s.completion_tokens),
                    sum(s.cached_tokens), sum(s.estimated_prompt), sum(s.estimated_completion), sum(s.unsplit_tokens),
                    sum(s.problems), sum(s.cost), sum(s.estimated_cost), sum(s.unpriced_tokens))::text AS r
              FROM s GROUP BY s.month, coalesce(s.model, '')),
         months AS (
            SELECT (u.month, u.model, u.messages, u.prompt_tokens, u.completion_tokens, u.cached_tokens,
                    u.estimated_prompt, u.estimated_completion, u.unsplit_tokens, u.problems, u.cost,
                    u.estimated_cost, u.unpriced_tokens)::text AS r
              FROM t, billing.month_usage AS u WHERE u.source_id = t.id),
         ref_conversations AS (
            SELECT (s.month, s.conversation_id, sum(s.messages), sum(s.prompt_tokens), sum(s.completion_tokens),
                    sum(s.cached_tokens), sum(s.estimated_prompt + s.estimated_completion), sum(s.cost + s.estimated_cost),
                    sum(s.unpriced_tokens), min(s.first_message_at), max(s.last_message_at))::text AS r
              FROM s GROUP BY s.month, s.conversation_id),
         conversations AS (
            SELECT (u.month, u.conversation_id, u.messages, u.prompt_tokens, u.completion_tokens, u.cached_tokens,
                    u.estimated_tokens, u.cost, u.unpriced_tokens, u.first_message_at, u.last_message_at)::text AS r
              FROM t, billing.conversation_usage AS u WHERE u.source_id = t.id)
    SELECT (SELECT count(*) FROM months), (SELECT count(*) FROM conversations),
           (SELECT count(*) FROM (SELECT r FROM months EXCEPT ALL SELECT r FROM ref_months) AS x)
           + (SELECT count(*) FROM (SELECT r FROM ref_months EXCEPT ALL SELECT r FROM months) AS x)
           + (SELECT count(*) FROM (SELECT r FROM conversations EXCEPT ALL SELECT r FROM ref_conversations) AS x)
           + (SELECT count(*) FROM (SELECT r FROM ref_conversations EXCEPT ALL SELECT r FROM conversations) AS x)
$$;
SELECT 'scan_seed' AS tbl, * FROM compare_rollups('scan_seed')
UNION ALL SELECT 'scan_orm', * FROM compare_rollups('scan_orm')
UNION ALL SELECT 'scan_json', * FROM compare_rollups('scan_json')
UNION ALL SELECT 'scan_chars', * FROM compare_rollups('scan_chars');

-- The backfill of track_messages holds the lock CREATE TRIGGER takes, so no
-- writer can reach the table: there one read gives the rows to record and
-- every month's rollups (billing._backfill_scan). On copies of the tables
-- (same rows, same order), it stores what the merge's backfill above
-- stored (its locks, estimates, problems, then month by month).
CREATE FUNCTION stored_rows(tbl regclass) RETURNS SETOF text LANGUAGE sql AS $$
    WITH t AS (SELECT id FROM billing.tracked_tables WHERE relation = tbl)
    SELECT 'month ' || (u.month, u.model, u.messages, u.prompt_tokens, u.completion_tokens, u.cached_tokens,
                        u.estimated_prompt, u.estimated_completion, u.unsplit_tokens, u.problems, u.cost,
                        u.estimated_cost, u.unpriced_tokens)::text
      FROM t, billing.month_usage AS u WHERE u.source_id = t.id
    UNION ALL
    SELECT 'conversation ' || (u.month, u.conversation_id, u.messages, u.prompt_tokens, u.completion_tokens,
                               u.cached_tokens, u.estimated_tokens, u.cost, u.unpriced_tokens, u.first_message_at,
                               u.last_message_at, u.bounds_stale)::text
      FROM t, billing.conversation_usage AS u WHERE u.source_id = t.id
    UNION ALL
    SELECT 'estimate ' || (e.message_id, e.prompt_tokens)::text FROM t, billing.estimated_prompts AS e WHERE e.source_id = t.id
    UNION ALL
    SELECT 'problem ' || (p.message_id, p.created_at, p.problem)::text FROM t, billing.problem_messages AS p WHERE p.source_id = t.id
    UNION ALL
    SELECT 'ledger ' || count(*) FROM t, billing.usage_ledger AS l WHERE l.source_id = t.id
$$;
CREATE FUNCTION compare_stored(a regclass, b regclass) RETURNS TABLE (stored bigint, only_a bigint, only_b bigint)
LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM stored_rows(a)),
           (SELECT count(*) FROM (SELECT stored_rows(a) EXCEPT ALL SELECT stored_rows(b)) AS x),
           (SELECT count(*) FROM (SELECT stored_rows(b) EXCEPT ALL SELECT stored_rows(a)) AS x)
$$;
CREATE TABLE copy_seed (LIKE scan_seed INCLUDING ALL);
CREATE TABLE copy_orm (LIKE scan_orm INCLUDING ALL);
CREATE TABLE copy_json (LIKE scan_json INCLUDING ALL);
CREATE TABLE copy_chars (LIKE scan_chars INCLUDING ALL);
INSERT INTO copy_seed SELECT * FROM scan_seed;
INSERT INTO copy_orm SELECT * FROM scan_orm;
INSERT INTO copy_json SELECT * FROM scan_json;
INSERT INTO copy_chars SELECT * FROM scan_chars;
-- (read in created_at order where an index gives it: the ORM's, as its
-- original, and two copies indexed here; the seed's copy as stored)
CREATE INDEX ON copy_json (created_at);
CREATE INDEX ON copy_chars (created_at DESC);
BEGIN;
LOCK TABLE copy_seed IN SHARE ROW EXCLUSIVE MODE;   -- (the mode of CREATE TRIGGER)
SELECT billing._writers_locked_out('copy_seed') AS locked_out, billing._writers_locked_out('scan_seed') AS other_table;
ROLLBACK;
SELECT tracked, backfilled, messages, problems FROM billing.track_messages('copy_seed');
SELECT tracked, backfilled, messages, problems FROM billing.track_messages('copy_orm');
SELECT tracked, backfilled, messages, problems FROM billing.track_messages('copy_json');
SELECT tracked, backfilled, messages, problems FROM billing.track_messages('copy_chars');
SELECT 'seed' AS shape, * FROM compare_stored('scan_seed', 'copy_seed')
UNION ALL SELECT 'orm', * FROM compare_stored('scan_orm', 'copy_orm')
UNION ALL SELECT 'json', * FROM compare_stored('scan_json', 'copy_json')
UNION ALL SELECT 'chars', * FROM compare_stored('scan_chars', 'copy_chars');
-- That one read estimates the replies' prompts itself while each
-- conversation's rows come in (created_at, id) order, and leaves the others
-- to a query of their conversations: compared again on the seed's rows
-- read in another order (ids by their md5), plus a conversation whose reply
-- is read in order but an earlier message after it (the reply's estimate
-- takes it in), then a reply read out of order; and two questions stored
-- at their replies' time, one read before its reply (in order: the
-- question comes first at a tie), one after it (taken in all the same).
CREATE TABLE mixed_merge (LIKE scan_seed INCLUDING ALL);
INSERT INTO mixed_merge SELECT * FROM scan_seed ORDER BY md5(coalesce(id, ''));
INSERT INTO mixed_merge VALUES
  ('z1', 'z', 'user', 'a question of 25 letters', '{}', '2026-11-09 10:00'),
  ('z2', 'z', 'assistant', 'estimated', '{}', '2026-11-09 10:05'),
  ('z0', 'z', 'user', 'read after, written before', '{}', '2026-11-09 09:00'),
  ('z3', 'z', 'assistant', 'estimated after the disorder', '{}', '2026-11-09 10:10'),
  ('y9', 'y', 'user', 'tied question', '{}', '2026-11-09 11:00'),
  ('y1', 'y', 'assistant', 'tied reply', '{}', '2026-11-09 11:00'),
  ('x1', 'x', 'assistant', 'read first', '{}', '2026-11-09 12:00'),
  ('x9', 'x', 'user', 'its question', '{}', '2026-11-09 12:00');
CREATE TABLE mixed_pass (LIKE scan_seed INCLUDING ALL);
INSERT INTO mixed_pass SELECT * FROM mixed_merge;
SELECT tracked, backfilled FROM billing.track_messages('mixed_merge', backfill => false);
SELECT billing.merge() >= 0 AS merged;
SELECT tracked, backfilled FROM billing.track_messages('mixed_pass');
SELECT * FROM compare_stored('mixed_merge', 'mixed_pass');
-- z2: 'a question of 25 letters' (24 characters, 6 tokens) and 'read after,
-- written before' (26, 7 tokens); z3: those and z2 (9, 3 tokens). y1:
-- 'tied question' (13, 4 tokens), though 'y9' sorts after 'y1'; x1: 'its
-- question' (12, 3 tokens). Both tables' estimates are compared above.
SELECT e.message_id, e.prompt_tokens FROM billing.estimated_prompts AS e
  JOIN billing.tracked_tables AS t ON t.id = e.source_id AND t.relation = 'mixed_pass'::regclass
 WHERE e.message_id ~ '^[xyz]' ORDER BY 1;
SELECT billing.untrack_messages('mixed_merge'), billing.untrack_messages('mixed_pass');
DROP TABLE mixed_merge, mixed_pass;

-- A frozen estimate is kept (estimated_prompts' INSERT ... ON CONFLICT DO
-- NOTHING), and the month's rollup counts it: a copy whose reply 4 has one
-- of 1000 tokens before the backfill.
CREATE TABLE copy_frozen (LIKE scan_seed INCLUDING ALL);
INSERT INTO copy_frozen SELECT * FROM scan_seed;
BEGIN;
SELECT tracked FROM billing.track_messages('copy_frozen', backfill => false);
INSERT INTO billing.estimated_prompts
SELECT id, '4', 1000 FROM billing.tracked_tables WHERE relation = 'copy_frozen'::regclass;
UPDATE billing.tracked_tables SET backfilled = false WHERE relation = 'copy_frozen'::regclass;
LOCK TABLE copy_frozen IN SHARE ROW EXCLUSIVE MODE;
SELECT billing._backfill(id) FROM billing.tracked_tables WHERE relation = 'copy_frozen'::regclass;
SELECT e.prompt_tokens AS frozen, u.estimated_prompt AS november_estimated_prompt_of_no_model
  FROM billing.tracked_tables AS t
  JOIN billing.estimated_prompts AS e ON e.source_id = t.id AND e.message_id = '4'
  JOIN billing.month_usage AS u ON u.source_id = t.id AND u.month = '2026-11-01' AND u.model = ''
 WHERE t.relation = 'copy_frozen'::regclass;
ROLLBACK;
DROP TABLE copy_frozen;

-- Some figures by hand: conversation a of the seed in November (UTC
-- months; ids 1 and 2 are in October). Estimated replies: id 4 (no usage),
-- its prompt ids 1 to 3 and 37, the user's question of its time (17, 10,
-- 23 and 9 characters: 5 + 3 + 6 + 3 = 17 tokens), its completion 17
-- characters (5 tokens); id 5 (a model, no usage), its prompt ids 1 to 4
-- and 37 (id 4, a reply of the same time, is earlier by its id: 17 + 5 =
-- 22 tokens), its completion 19 characters (5 tokens); id 7 (no data, no
-- text), its prompt ids 1 to 6 and 37 (id 6 has no text: 22 + 5 = 27
-- tokens). Ids 3, 6 and 37 are a user's. Priced at gpt-4o-mini's $0.15 /
-- $0.60 per 1M (the estimate model, and id 5's): ids 4 and 7, 44 x 0.15/1M
-- + 5 x 0.60/1M = 0.0000096; id 5, 22 x 0.15/1M + 5 x 0.60/1M = 0.0000063.
-- Id 35: 100 x
-- 2.50/1M = 0.00025. A reply with a model but no tokens costs 0.00, one
-- without a model nothing: coalesce(NULL, 0) is 0.
SELECT conversation_id, model, messages, estimated_prompt, estimated_completion, cost, estimated_cost
  FROM billing._scan_table((SELECT id FROM billing.tracked_tables WHERE relation = 'scan_seed'::regclass),
                           '2026-11-01', '2026-12-01')
 WHERE conversation_id = 'a' ORDER BY model NULLS FIRST;

-- In New York's months: every month is stale, read from the tables until a
-- merge rebuilds them; both sides then agree again, and after the merge.
UPDATE billing.settings SET value = 'America/New_York' WHERE name = 'month_time_zone';
SELECT * FROM compare_all('scan_seed');
SELECT * FROM compare_all('scan_orm');
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM compare_all('scan_json');
SELECT * FROM compare_all('scan_chars');
SELECT 'scan_seed' AS tbl, * FROM compare_rollups('scan_seed')
UNION ALL SELECT 'scan_orm', * FROM compare_rollups('scan_orm')
UNION ALL SELECT 'scan_json', * FROM compare_rollups('scan_json')
UNION ALL SELECT 'scan_chars', * FROM compare_rollups('scan_chars');
UPDATE billing.settings SET value = 'UTC' WHERE name = 'month_time_zone';

-- Row-level security of the tracked table applies to the scan: it runs as
-- the caller.
CREATE ROLE scan_reader;
GRANT USAGE ON SCHEMA billing TO scan_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO scan_reader;
GRANT SELECT ON scan_seed TO scan_reader;
ALTER TABLE scan_seed ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_b ON scan_seed FOR SELECT TO scan_reader USING (conversation_id = 'b');
SET ROLE scan_reader;
SELECT count(*) AS groups, count(*) FILTER (WHERE conversation_id = 'b') AS groups_of_b
  FROM billing._scan_table((SELECT id FROM billing.tracked_tables WHERE relation = 'scan_seed'::regclass),
                           '-infinity', 'infinity');
RESET ROLE;
DROP POLICY only_b ON scan_seed;
ALTER TABLE scan_seed DISABLE ROW LEVEL SECURITY;
REVOKE ALL ON scan_seed FROM scan_reader;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM scan_reader;
REVOKE USAGE ON SCHEMA billing FROM scan_reader;
DROP ROLE scan_reader;

SELECT billing.untrack_messages(t.relation) FROM billing.tracked_tables AS t ORDER BY t.id;
DROP TABLE scan_seed, scan_orm, scan_json, scan_chars, copy_seed, copy_orm, copy_json, copy_chars;
DROP FUNCTION compare_all, compare_scans, compare_recorded, compare_rollups, compare_stored, stored_rows, fill,
              reference_scan, reference_recorded;
DROP TYPE scan_role;
DROP DOMAIN conv_text;
