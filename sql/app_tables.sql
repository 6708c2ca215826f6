-- The tables real apps have: the column types ORMs create by default,
-- schemas and quoted names, partitioned tables, and rows written by a
-- hostile or buggy app. Every write succeeds; merge() and the reads keep
-- working for every table; expected values are worked out by hand.
-- Prices: gpt-4o $2.50 / $10.00 per 1M prompt / completion tokens,
-- gpt-4o-mini $0.15 / $0.60.
\set SHOW_CONTEXT never
-- The session's time zone must play no part in which month a row is in.
SET timezone = 'America/New_York';

-- Prisma: quoted camelCase names in their own schema, text (cuid) ids,
-- DateTime as timestamp(3) without time zone, holding UTC.
CREATE SCHEMA app;
CREATE TABLE app."Message" (
    id text PRIMARY KEY,
    "conversationId" text NOT NULL,
    role text NOT NULL,
    content text NOT NULL,
    data jsonb,
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
-- 2026-11-30 23:30 UTC is November (in New York it is 18:30 on the 30th;
-- read in the session's zone it would be 04:30 UTC on 1 December).
INSERT INTO app."Message" VALUES
  ('ckx1', 'conv-a', 'assistant', 'hello', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}',
   '2026-11-30 23:30:00');
SELECT tracked, backfilled, messages, problems FROM billing.track_messages('app."Message"',
    conversation_column => 'conversationId', created_at_column => 'createdAt');
-- 100 x 2.50/1M + 50 x 10/1M = 0.00025 + 0.0005 = 0.00075, in November.
SELECT month, cost, messages FROM billing.monthly_history WHERE source = 'openai' ORDER BY month;
-- A write after tracking, 2026-12-01 00:10 UTC: December.
INSERT INTO app."Message" VALUES
  ('ckx2', 'conv-a', 'assistant', 'again', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0}',
   '2026-12-01 00:10:00');
-- 1000 x 2.50/1M = 0.0025, in December; the same after merge.
SELECT month, cost FROM billing.monthly_history WHERE source = 'openai' ORDER BY month;
SELECT billing.merge() > 0 AS merged;
SELECT month, cost FROM billing.monthly_history WHERE source = 'openai' ORDER BY month;
SELECT conversation_id, first_message_at AT TIME ZONE 'UTC' AS first_utc, last_message_at AT TIME ZONE 'UTC' AS last_utc
  FROM billing.conversation_costs ORDER BY month;
SELECT billing.untrack_messages('app."Message"');

-- Prisma's enum labels are upper case: a reply whose role is ASSISTANT and
-- that has no usage is estimated as an assistant's is. The question (39
-- characters: 10 tokens) is its prompt and its own 39 characters are 10
-- completion tokens, as gpt-4o-mini: 10 x 0.15/1M + 10 x 0.60/1M =
-- 0.0000075 a conversation; read by the backfill (c1, written before
-- tracking) and by the trigger (c2, after), before and after merge.
CREATE TYPE app."Role" AS ENUM ('USER', 'ASSISTANT');
CREATE TABLE app."EnumMessage" (id text PRIMARY KEY, "conversationId" text NOT NULL, role app."Role" NOT NULL,
                                content text NOT NULL, data jsonb, "createdAt" timestamp(3) NOT NULL);
CREATE INDEX ON app."EnumMessage" ("conversationId");
INSERT INTO app."EnumMessage" VALUES
  ('m1', 'c1', 'USER', 'Summarise the attached forty-char text.', NULL, '2026-11-05 10:00'),
  ('m2', 'c1', 'ASSISTANT', 'Here is a summary that is forty chars!!', '{"model": "gpt-4o-mini"}', '2026-11-05 10:00:01');
SELECT tracked, backfilled FROM billing.track_messages('app."EnumMessage"',
    conversation_column => 'conversationId', created_at_column => 'createdAt');
INSERT INTO app."EnumMessage" VALUES
  ('m3', 'c2', 'USER', 'Summarise the attached forty-char text.', NULL, '2026-11-06 10:00'),
  ('m4', 'c2', 'ASSISTANT', 'Here is a summary that is forty chars!!', '{"model": "gpt-4o-mini"}', '2026-11-06 10:00:01');
SELECT conversation_id, cost, estimated_tokens FROM billing.conversation_costs
 WHERE source_table = 'app."EnumMessage"'::regclass ORDER BY conversation_id;
SELECT billing.merge() > 0 AS merged;
SELECT conversation_id, cost, estimated_tokens FROM billing.conversation_costs
 WHERE source_table = 'app."EnumMessage"'::regclass ORDER BY conversation_id;
SELECT billing.untrack_messages('app."EnumMessage"');

-- A nondeterministic collation (case-insensitive here) on the text data
-- column: an UPDATE its collation calls no change is still one to billing.
-- "PROMPT_TOKENS" is no token count (0 tokens, $0); "prompt_tokens" of
-- 1,000,000 is 1M x $2.50/1M = $2.50, before and after merge.
CREATE COLLATION app.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE app.ci_messages (id text PRIMARY KEY, conversation_id text, role text,
                              content text COLLATE app.ci, data text COLLATE app.ci, created_at timestamptz);
SELECT tracked FROM billing.track_messages('app.ci_messages');
INSERT INTO app.ci_messages VALUES
  ('m1', 'c1', 'assistant', 'hi', '{"model": "gpt-4o", "PROMPT_TOKENS": 1000000, "completion_tokens": 0}', '2026-03-01');
SELECT conversation_id, cost FROM billing.conversation_costs WHERE source_table = 'app.ci_messages'::regclass;
UPDATE app.ci_messages SET data = '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}';
SELECT conversation_id, cost FROM billing.conversation_costs WHERE source_table = 'app.ci_messages'::regclass;
SELECT billing.merge() > 0 AS merged;
SELECT conversation_id, cost FROM billing.conversation_costs WHERE source_table = 'app.ci_messages'::regclass;
SELECT billing.untrack_messages('app.ci_messages');

-- An enum label renamed (ALTER TYPE ... RENAME VALUE): no row is written,
-- yet every "bot" message is now an assistant's reply. The table is taken
-- in anew: the 40-character reply without usage is estimated, 10
-- completion tokens of gpt-4o = 10 x $10/1M = $0.0001 (it was a user's
-- message, $0), before and after merge.
CREATE TYPE app.msg_role AS ENUM ('user', 'bot');
CREATE TABLE app.enum_messages (id text PRIMARY KEY, conversation_id text, role app.msg_role, content text,
                                data jsonb, created_at timestamptz);
SELECT tracked FROM billing.track_messages('app.enum_messages');
INSERT INTO app.enum_messages VALUES ('e1', 'c1', 'bot', repeat('x', 40), '{"model": "gpt-4o"}', '2026-03-01');
SELECT conversation_id, cost FROM billing.conversation_costs WHERE source_table = 'app.enum_messages'::regclass;
ALTER TYPE app.msg_role RENAME VALUE 'bot' TO 'assistant';
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'app.enum_messages'::regclass;
SELECT conversation_id, cost FROM billing.conversation_costs WHERE source_table = 'app.enum_messages'::regclass;
SELECT billing.merge() IS NOT NULL AS merged;
SELECT conversation_id, cost FROM billing.conversation_costs WHERE source_table = 'app.enum_messages'::regclass;
SELECT billing.untrack_messages('app.enum_messages');

-- Drizzle: serial ids, uuid conversations, an enum role, varchar content,
-- json data, timestamp without time zone.
CREATE TYPE chat_role AS ENUM ('user', 'assistant');
CREATE TABLE drizzle_messages (
    id serial PRIMARY KEY,
    conversation_id uuid,
    role chat_role NOT NULL,
    content varchar(4000),
    data json,
    created_at timestamp DEFAULT now()
);
SELECT tracked, backfilled FROM billing.track_messages('drizzle_messages');
-- A question of 16 characters (4 tokens), then a reply of 12 characters
-- without usage: 3 completion tokens, its prompt the question's 4, priced
-- as gpt-4o-mini: 4 x 0.15/1M + 3 x 0.60/1M = 0.0000006 + 0.0000018 = 0.0000024.
INSERT INTO drizzle_messages (conversation_id, role, content, data, created_at) VALUES
  ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'user', 'what is the time', NULL, '2026-11-03 09:00'),
  ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'assistant', 'twelve chars', '{}', '2026-11-03 09:01');
-- json keeps a \u0000 escape that jsonb cannot store: the usage is read all
-- the same, 100 x 2.5/1M + 50 x 10/1M = 0.00075.
INSERT INTO drizzle_messages (conversation_id, role, content, data, created_at) VALUES
  ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', 'assistant', 'x',
   '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50, "note": "\u0000"}', '2026-11-03 09:02');
SELECT conversation_id, cost, estimated_tokens, messages FROM billing.conversation_costs ORDER BY conversation_id;
SELECT billing.merge() > 0 AS merged;
SELECT conversation_id, cost, estimated_tokens, messages FROM billing.conversation_costs ORDER BY conversation_id;
-- An UPDATE of the json usage (json has no equality: billing compares its
-- text): 200 x 2.5/1M + 50 x 10/1M = 0.0005 + 0.0005 = 0.001.
UPDATE drizzle_messages SET data = '{"model": "gpt-4o", "prompt_tokens": 200, "completion_tokens": 50}'
 WHERE conversation_id = 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12';
SELECT conversation_id, cost FROM billing.conversation_costs
 WHERE conversation_id = 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12';
SELECT billing.untrack_messages('drizzle_messages');

-- Django: bigint ids, a TextField holding JSON, timestamptz. Text that is
-- not JSON is stored as the app wrote it and listed as a problem.
CREATE TABLE django_messages (
    id bigserial PRIMARY KEY,
    conversation_id bigint,
    role varchar(20),
    content text,
    data text,
    created_at timestamptz
);
SELECT tracked, backfilled FROM billing.track_messages('django_messages');
INSERT INTO django_messages (conversation_id, role, content, data, created_at) VALUES
  (7, 'assistant', 'ok', '{"model": "gpt-4o-mini", "prompt_tokens": 1000000, "completion_tokens": 0}', '2026-11-04'),
  (7, 'assistant', 'bad', 'not json {', '2026-11-04'),
  (7, 'assistant', 'nul', '{"model": "gpt-4o", "x": "\u0000", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-04');
-- 1M x 0.15/1M = 0.15; the row that is not JSON is a problem, not a cost;
-- the one with a \u0000 escape (valid JSON, which jsonb cannot store) is
-- read with U+FFFD in its place: 100 x 2.5/1M + 50 x 10/1M = 0.00075,
-- 0.15075 in all.
SELECT conversation_id, cost, messages FROM billing.conversation_costs;
SELECT kind, detail, messages FROM billing.usage_problems ORDER BY detail;
SELECT billing.merge() > 0 AS merged;
SELECT conversation_id, cost, messages FROM billing.conversation_costs;
-- The same row from a session with standard_conforming_strings off (an old
-- driver's setting, under which '\u' is a plain "u"): read alike, 0.15075 +
-- 0.00075 = 0.1515, before and after merge. (A new session: PL/pgSQL
-- reads a function's literals once per session.)
\c -
SET timezone = 'America/New_York';
SET standard_conforming_strings = off;
SET escape_string_warning = off;
INSERT INTO django_messages (conversation_id, role, content, data, created_at) VALUES
  (7, 'assistant', 'nul', E'{"model": "gpt-4o", "x": "\\u0000", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-04');
SELECT conversation_id, cost, messages FROM billing.conversation_costs;
SELECT billing.merge() > 0 AS merged;
SELECT conversation_id, cost, messages FROM billing.conversation_costs;
-- An UPDATE and a DELETE there (the row not JSON deleted, then the first
-- one's 1M prompt tokens made 2M: 0.15 more), and a merge that takes the
-- table in anew: 0.3015.
DELETE FROM django_messages WHERE data = 'not json {';
UPDATE django_messages SET data = '{"model": "gpt-4o-mini", "prompt_tokens": 2000000, "completion_tokens": 0}'
 WHERE content = 'ok';
SELECT count(*) FROM billing.rebuild_messages('django_messages');
SELECT billing.merge() >= 0 AS merged;
SELECT conversation_id, cost, messages FROM billing.conversation_costs;
RESET standard_conforming_strings;
RESET escape_string_warning;
SELECT billing.untrack_messages('django_messages');

-- Django's TextField(blank=True) stores '' for no value: a reply with data
-- '' (or only white space) has no usage and is estimated, as one with NULL
-- data is, not listed as a problem. Prompt 'what is the time' (16
-- characters, 4 tokens), completion 'it is late' (10, 3), at the estimate
-- model gpt-4o-mini: 4 x 0.15/1M + 3 x 0.60/1M = 0.0000024; the second
-- reply's prompt 4 + 3, its completion 'and now' (7, 2): 7 x 0.15/1M + 2 x
-- 0.60/1M = 0.00000225; 0.00000465 and 16 estimated tokens in all.
CREATE TABLE django_blank (id bigserial PRIMARY KEY, conversation_id bigint, role varchar(20), content text,
                           data text NOT NULL DEFAULT '', created_at timestamptz);
SELECT tracked FROM billing.track_messages('django_blank');
INSERT INTO django_blank (conversation_id, role, content, created_at) VALUES
  (8, 'user', 'what is the time', '2026-11-04 10:00'), (8, 'assistant', 'it is late', '2026-11-04 10:01');
INSERT INTO django_blank (conversation_id, role, content, data, created_at) VALUES
  (8, 'assistant', 'and now', E' \n', '2026-11-04 10:02');
SELECT cost, estimated_tokens, messages FROM billing.conversation_costs WHERE source_table = 'django_blank'::regclass;
SELECT count(*) AS problems FROM billing.usage_problems WHERE source_table = 'django_blank'::regclass;
SELECT billing.untrack_messages('django_blank');
DROP TABLE django_blank;

-- Rails (bigint ids and foreign keys, string as varchar, jsonb,
-- timestamp(6) without time zone holding UTC) and SQLAlchemy (Integer ids,
-- String(36) uuids, JSON as json, DateTime as timestamp): each reply
-- 1000 prompt + 100 completion tokens of gpt-4o-mini =
-- 1000 x 0.15/1M + 100 x 0.60/1M = 0.00015 + 0.00006 = 0.00021.
CREATE TABLE rails_messages (id bigserial PRIMARY KEY, conversation_id bigint, role varchar, content text,
                             data jsonb, created_at timestamp(6) NOT NULL, updated_at timestamp(6) NOT NULL);
CREATE TABLE sqlalchemy_messages (id serial PRIMARY KEY, conversation_id varchar(36), role varchar(16),
                                  content text, data json, created_at timestamp);
SELECT tracked, backfilled FROM billing.track_messages('rails_messages');
SELECT tracked, backfilled FROM billing.track_messages('sqlalchemy_messages');
INSERT INTO rails_messages (conversation_id, role, content, data, created_at, updated_at) VALUES
  (42, 'assistant', 'hi', '{"model": "gpt-4o-mini", "prompt_tokens": 1000, "completion_tokens": 100}',
   '2026-11-09 08:00:00.123456', '2026-11-09 08:00:00.123456');
INSERT INTO sqlalchemy_messages (conversation_id, role, content, data, created_at) VALUES
  ('8c9d2b4e-1f3a-4b5c-9d8e-7f6a5b4c3d2e', 'assistant', 'hi',
   '{"model": "gpt-4o-mini", "prompt_tokens": 1000, "completion_tokens": 100}', '2026-11-09 08:00:00');
SELECT source_table, conversation_id, cost FROM billing.conversation_costs ORDER BY source_table::text;
SELECT billing.merge() > 0 AS merged;
SELECT source_table, conversation_id, cost FROM billing.conversation_costs ORDER BY source_table::text;
SELECT billing.untrack_messages('rails_messages');
SELECT billing.untrack_messages('sqlalchemy_messages');

-- A partitioned table (by month), Rails-style timestamp(6).
CREATE TABLE part_messages (
    id bigint NOT NULL,
    conversation_id text,
    role text,
    content text,
    data jsonb,
    created_at timestamp(6) NOT NULL,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE part_messages_2026_11 PARTITION OF part_messages FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE TABLE part_messages_2026_12 PARTITION OF part_messages FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');
-- (an index on created_at: the backfill then goes month by month)
CREATE INDEX ON part_messages (created_at);
INSERT INTO part_messages VALUES
  (1, 'p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-10'),
  (3, 'p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-12-31 23:59:59');
SELECT tracked, backfilled, messages FROM billing.track_messages('part_messages');
INSERT INTO part_messages VALUES
  (2, 'p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-12-10');
-- 0.00075 in November, 0.0015 in December, before and after merge.
SELECT month, cost FROM billing.monthly_history WHERE source = 'openai' ORDER BY month;
SELECT billing.merge() > 0 AS merged;
SELECT month, cost FROM billing.monthly_history WHERE source = 'openai' ORDER BY month;

-- Rows that come or go with a whole partition, which no row trigger sees:
-- each time the figures must be the table's own (what a recomputation from
-- it gives), before and after merge(). gpt-4o 100 + 50 tokens = $0.00075 a
-- row; the table holds 3 rows: $0.00225.
CREATE TABLE part_messages_2026_10 (LIKE part_messages INCLUDING ALL);
INSERT INTO part_messages_2026_10 VALUES
  (10, 'q', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-10-05'),
  (11, 'q', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-10-06');
CREATE FUNCTION pg_temp.part_figures() RETURNS TABLE (month date, cost numeric, messages bigint, stale boolean)
LANGUAGE sql AS $$
    SELECT h.month, h.cost, h.messages, NOT t.backfilled
      FROM billing.monthly_history AS h, billing.tracked_tables AS t
     WHERE h.source = 'openai' AND h.month >= '2026-10-01' AND h.month < '2027-02-01'
       AND t.relation = 'part_messages'::regclass
     ORDER BY h.month
$$;
-- Attached with 2 rows: October $0.0015, 2 messages; the table is taken in
-- anew (read from the table until the merge).
ALTER TABLE part_messages ATTACH PARTITION part_messages_2026_10 FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
SELECT * FROM pg_temp.part_figures();
SELECT billing.merge() > 0 AS merged;
SELECT * FROM pg_temp.part_figures();
-- Its rows deleted after the merge: October back to nothing, never negative.
DELETE FROM part_messages WHERE conversation_id = 'q' AND id = 11;
SELECT billing.merge() > 0 AS merged;
SELECT * FROM pg_temp.part_figures();
-- A partition created afterwards gets the TRUNCATE trigger too.
CREATE TABLE part_messages_2027_01 PARTITION OF part_messages FOR VALUES FROM ('2027-01-01') TO ('2027-02-01');
INSERT INTO part_messages VALUES
  (20, 'r', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2027-01-02');
SELECT billing.merge() > 0 AS merged;
SELECT relid, (SELECT count(*) FROM pg_trigger AS g
                WHERE g.tgrelid = p.relid AND g.tgname = 'billing_track_truncate') AS truncate_triggers
  FROM pg_partition_tree('part_messages') AS p ORDER BY relid::text;
-- January's partition truncated alone: January goes, the rest stays.
TRUNCATE part_messages_2027_01;
SELECT * FROM pg_temp.part_figures();
SELECT billing.merge() > 0 AS merged;
SELECT * FROM pg_temp.part_figures();
-- October detached (its row leaves the table) and November dropped.
ALTER TABLE part_messages DETACH PARTITION part_messages_2026_10;
SELECT * FROM pg_temp.part_figures();
SELECT billing.merge() > 0 AS merged;
DROP TABLE part_messages_2026_11;
SELECT * FROM pg_temp.part_figures();
SELECT billing.merge() > 0 AS merged;
SELECT * FROM pg_temp.part_figures();
-- What the table holds, by the cost aggregate: December's $0.0015.
SELECT billing.openai_cost(data, created_at) AS table_cost FROM part_messages;
-- An unlogged table is emptied by a crash, and billing would keep its
-- costs: refused for a tracked table's partitions, new or old, and by
-- track_messages.
ALTER TABLE part_messages_2026_12 SET UNLOGGED;
CREATE UNLOGGED TABLE part_messages_2027_02 PARTITION OF part_messages FOR VALUES FROM ('2027-02-01') TO ('2027-03-01');
CREATE UNLOGGED TABLE unlogged_messages (LIKE part_messages);
SELECT billing.track_messages('unlogged_messages');
ALTER TABLE part_messages ATTACH PARTITION unlogged_messages FOR VALUES FROM ('2027-02-01') TO ('2027-03-01');
-- (any other ALTER of a tracked table goes on as before)
ALTER TABLE part_messages_2026_12 SET (fillfactor = 90);
DROP TABLE unlogged_messages;
-- The detached October partition (its one row, id 10: $0.00075) moves to
-- another tracked partitioned table: the TRUNCATE trigger it kept from
-- part_messages gives way to part_other's, and part_other takes it in.
CREATE TABLE part_other (LIKE part_messages) PARTITION BY RANGE (created_at);
SELECT tracked FROM billing.track_messages('part_other');
ALTER TABLE part_other ATTACH PARTITION part_messages_2026_10 FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
SELECT billing.merge() IS NOT NULL AS merged;
SELECT source_table, month, cost, messages FROM billing.conversation_costs WHERE conversation_id = 'q';
SELECT count(*) AS truncate_triggers,
       bool_and(encode(g.tgargs, 'escape') = (SELECT id FROM billing.tracked_tables
                                              WHERE relation = 'part_other'::regclass) || '\000') AS part_others
  FROM pg_trigger AS g
 WHERE g.tgrelid = 'part_messages_2026_10'::regclass AND g.tgname = 'billing_track_truncate';
-- Detached again, it can be tracked on its own.
ALTER TABLE part_other DETACH PARTITION part_messages_2026_10;
SELECT tracked, messages FROM billing.track_messages('part_messages_2026_10');
SELECT source_table, month, cost, messages FROM billing.conversation_costs WHERE conversation_id = 'q';
-- Tracked on its own, it cannot be attached under a tracked table (its
-- triggers and the copies of part_other's would clash): refused, the way
-- out in the hint. Done that way, part_other bills its row: $0.00075.
ALTER TABLE part_other ATTACH PARTITION part_messages_2026_10 FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
SELECT billing.untrack_messages('part_messages_2026_10');
ALTER TABLE part_other ATTACH PARTITION part_messages_2026_10 FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
SELECT billing.merge() IS NOT NULL AS merged;
SELECT source_table, month, cost, messages FROM billing.conversation_costs WHERE conversation_id = 'q';
ALTER TABLE part_other DETACH PARTITION part_messages_2026_10;
SELECT billing.untrack_messages('part_other');
DROP TABLE part_other;
SELECT billing.untrack_messages('part_messages');
-- Untracking leaves no trigger on any partition (the detached one keeps
-- its TRUNCATE trigger, which does nothing there, until DROP EXTENSION).
SELECT count(*) AS triggers_left FROM pg_trigger
 WHERE tgrelid IN (SELECT relid FROM pg_partition_tree('part_messages')) AND NOT tgisinternal;
TRUNCATE part_messages_2026_10;
DROP TABLE part_messages_2026_10;

-- Types billing cannot read are refused, naming the column and its type,
-- and nothing is kept.
CREATE TABLE odd_types (id jsonb, conversation_id text, role text, content text, data xml,
                        created_at text, at2 bigint);
SELECT billing.track_messages('odd_types');
SELECT billing.track_messages('odd_types', id_column => 'conversation_id');
SELECT billing.track_messages('odd_types', id_column => 'conversation_id', data_column => 'content');
SELECT billing.track_messages('odd_types', id_column => 'conversation_id', data_column => 'content',
                              created_at_column => 'at2');
SELECT count(*) AS tracked FROM billing.tracked_tables;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'odd_types'::regclass;

-- Hostile rows: none fails the app's write, merge() or a read.
CREATE TABLE hostile (
    id text PRIMARY KEY, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
SELECT tracked, backfilled FROM billing.track_messages('hostile', backfill => false);
INSERT INTO hostile VALUES
  -- token counts at the bigint limit, twice: their sum is beyond bigint
  ('big1', 'h', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 9223372036854775807, "completion_tokens": 0}', '2026-11-05'),
  ('big2', 'h', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 9223372036854775807, "completion_tokens": 0}', '2026-11-05'),
  -- times at the far ends of timestamptz's range
  ('far1', 'h', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '294276-12-31 23:59:59+00'),
  ('far2', 'h', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '4713-11-24 00:00:00+00 BC'),
  ('far3', 'h', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '-infinity'),
  -- a model name, a conversation id and a message id of 3,000 characters
  ('long1', 'h', 'assistant', 'x', format('{"model": "%s", "prompt_tokens": 1, "completion_tokens": 1}', repeat('m', 3000))::jsonb, '2026-11-06'),
  ('long2', repeat('c', 3000), 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}', '2026-11-06'),
  (repeat('i', 3000), 'h', 'assistant', 'x', '{"prompt_tokens": "oops"}', '2026-11-06');
SELECT billing.merge() >= 0 AS merged;
SELECT billing.merge() >= 0 AS merged_again;
-- Costs stay exact: 9223372036854775807 x 2.50/1M = 23058430092136.9395175,
-- twice = 46116860184273.879035, plus 1M x 2.50/1M = 2.50 for the long
-- conversation: 46116860184276.379035. Token figures saturate at the bigint
-- limit per model and month (9223372036854775807 for gpt-4o, plus 1 token of
-- the long model name in the card).
SELECT month, cost, prompt_tokens, messages FROM billing.monthly_history WHERE source = 'openai' ORDER BY month;
SELECT (d -> 'openai' ->> 'cost')::numeric AS cost, d -> 'openai' -> 'prompt_tokens' AS prompt_tokens,
       d -> 'openai' -> 'messages' AS messages
  FROM billing.dashboard('2026-11-01', '2026-12-01', 10, 1) AS d;
SELECT length(conversation_id) AS key_length, right(conversation_id, 42) = '... (md5 ' || md5(repeat('c', 3000)) || ')' AS keyed,
       cost FROM billing.conversation_costs WHERE conversation_id LIKE 'ccc%';
SELECT kind, left(detail, 60) AS detail, messages, tokens FROM billing.usage_problems ORDER BY kind, detail;
-- Deleting the hostile rows takes them back.
DELETE FROM hostile;
SELECT billing.merge() >= 0 AS merged;
SELECT count(*) AS months FROM billing.monthly_history WHERE source = 'openai';
SELECT count(*) AS problems FROM billing.usage_problems;
SELECT billing.untrack_messages('hostile');

-- backfill => false: before the first merge the views read the table, and
-- replies stored before tracking have their prompt estimated there, as the
-- backfill then freezes it. Conversation e: a 40-character question (10
-- tokens), a reply of 8 characters (2 tokens) without usage.
-- gpt-4o-mini: 10 x 0.15/1M + 2 x 0.60/1M = 0.0000015 + 0.0000012 = 0.0000027.
CREATE TABLE late (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                   created_at timestamptz);
INSERT INTO late (conversation_id, role, content, data, created_at) VALUES
  ('e', 'user', repeat('q', 40), NULL, '2026-11-08 10:00'),
  ('e', 'assistant', 'answered', '{}', '2026-11-08 10:01');
SELECT tracked, backfilled FROM billing.track_messages('late', backfill => false);
SELECT conversation_id, cost, estimated_tokens FROM billing.conversation_costs;
SELECT billing.merge() >= 0 AS merged;
SELECT conversation_id, cost, estimated_tokens FROM billing.conversation_costs;

-- The obvious call, with untyped literals.
SELECT (billing.dashboard('2026-11-01 00:00+00', '2026-12-01 00:00+00') -> 'openai' ->> 'cost')::numeric AS cost;
-- by_model adds up to the card.
SELECT (d -> 'openai' ->> 'cost')::numeric = (SELECT sum((v ->> 'cost')::numeric) FROM jsonb_each(d -> 'openai' -> 'by_model') AS e(k, v)) AS costs_add_up,
       (d -> 'openai' ->> 'tokens')::numeric = (SELECT sum((v ->> 'tokens')::numeric) FROM jsonb_each(d -> 'openai' -> 'by_model') AS e(k, v)) AS tokens_add_up,
       (d -> 'openai' ->> 'messages')::numeric = (SELECT sum((v ->> 'messages')::numeric) FROM jsonb_each(d -> 'openai' -> 'by_model') AS e(k, v)) AS messages_add_up
  FROM billing.dashboard('2026-11-01 00:00+00', '2026-12-01 00:00+00') AS d;
SELECT billing.untrack_messages('late');

-- Before that first merge, usage_problems lists the problem rows read from
-- the table too, not only those the trigger saw, once each: rows 1 (a
-- string for a count) and 2 (no time) stored before tracking, row 3 (a
-- negative count) after. The merge then lists the same 3.
CREATE TABLE late_problems (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                            created_at timestamptz);
INSERT INTO late_problems (conversation_id, role, content, data, created_at) VALUES
  ('p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": "oops"}', '2026-11-08 10:00'),
  ('p', 'user', 'when?', NULL, NULL);
SELECT tracked, backfilled FROM billing.track_messages('late_problems', backfill => false);
INSERT INTO late_problems (conversation_id, role, content, data, created_at) VALUES
  ('p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": -5, "completion_tokens": 1}', '2026-11-08 10:02');
SELECT message_id, created_at, left(detail, 50) AS detail FROM billing.usage_problems
 WHERE source_table = 'late_problems'::regclass ORDER BY message_id;
-- Reading as one customer hides them all from a role row security applies
-- to, as it hides problem_messages; a superuser, to whom it does not apply,
-- sees the 3 rows either way (before, the 1 the trigger saw).
CREATE ROLE regress_late_reader;
GRANT USAGE ON SCHEMA billing TO regress_late_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO regress_late_reader;
GRANT SELECT ON late_problems TO regress_late_reader;
BEGIN;
SET LOCAL billing.customer = 'someone';
SELECT count(*) AS superuser_sees FROM billing.usage_problems WHERE source_table = 'late_problems'::regclass;
SET LOCAL ROLE regress_late_reader;
SELECT count(*) AS customer_sees FROM billing.usage_problems WHERE source_table = 'late_problems'::regclass;
RESET billing.customer;
SELECT count(*) AS reader_sees FROM billing.usage_problems WHERE source_table = 'late_problems'::regclass;
ROLLBACK;
SELECT billing.merge() >= 0 AS merged;
SELECT message_id, created_at, left(detail, 50) AS detail FROM billing.usage_problems
 WHERE source_table = 'late_problems'::regclass ORDER BY message_id;
SELECT billing.untrack_messages('late_problems');
REVOKE ALL ON late_problems FROM regress_late_reader;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM regress_late_reader;
REVOKE ALL ON SCHEMA billing FROM regress_late_reader;
DROP ROLE regress_late_reader;

-- A problem row goes when its message does, whether or not a row trigger
-- sees it: a partition dropped (its month is rebuilt), a row mended while
-- billing's triggers were disabled (the merge takes the table in anew).
CREATE TABLE gone_problems (id bigint, conversation_id text, role text, content text, data jsonb,
                            created_at timestamptz NOT NULL, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
CREATE TABLE gone_problems_09 PARTITION OF gone_problems FOR VALUES FROM ('2026-09-01') TO ('2026-10-01');
CREATE TABLE gone_problems_10 PARTITION OF gone_problems FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
SELECT tracked FROM billing.track_messages('gone_problems');
INSERT INTO gone_problems VALUES (1, 'g', 'assistant', 'x', '{"prompt_tokens": "x"}', '2026-09-15'),
                                 (2, 'g', 'assistant', 'x', '{"prompt_tokens": "x"}', '2026-10-15'),
                                 (3, 'g', 'assistant', 'x', '{"prompt_tokens": "x"}', '2026-10-16');
SELECT billing.merge() >= 0 AS merged;
DROP TABLE gone_problems_09;
SELECT billing.merge() >= 0 AS merged;
SELECT message_id FROM billing.usage_problems WHERE source_table = 'gone_problems'::regclass ORDER BY 1;
ALTER TABLE gone_problems DISABLE TRIGGER USER;
UPDATE gone_problems SET data = '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}' WHERE id = 2;
ALTER TABLE gone_problems ENABLE TRIGGER USER;
SELECT billing.merge() >= 0 AS merged;
SELECT message_id FROM billing.usage_problems WHERE source_table = 'gone_problems'::regclass ORDER BY 1;
SELECT billing.untrack_messages('gone_problems');

-- An id in two partitions (a primary key (id, created_at)) is listed once
-- while billing reads the table itself, as the merge then keeps it: the
-- latest row's (November's negative count), before and after that merge.
CREATE TABLE twin_problems (id bigint, conversation_id text, role text, content text, data jsonb,
                            created_at timestamptz, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
CREATE TABLE twin_problems_10 PARTITION OF twin_problems FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
CREATE TABLE twin_problems_11 PARTITION OF twin_problems FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
INSERT INTO twin_problems VALUES (1, 'c', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": "12a"}', '2026-10-05 00:00+00'),
                                 (1, 'c', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": -5}', '2026-11-05 00:00+00');
SELECT tracked, backfilled FROM billing.track_messages('twin_problems', backfill => false);
SELECT message_id, month, detail FROM billing.usage_problems WHERE source_table = 'twin_problems'::regclass;
SELECT billing.merge() >= 0 AS merged;
SELECT message_id, month, detail FROM billing.usage_problems WHERE source_table = 'twin_problems'::regclass;
SELECT billing.untrack_messages('twin_problems');

-- A message's listing follows it while billing does not see its writes,
-- as the dashboard's problems count does:
-- (1) created_at's type changed (the local times become UTC): row 1 moves
-- from October 31 22:00 to November 1 02:00 UTC, and is listed there (it
-- was listed nowhere, its old listing pruned by November's rebuild);
CREATE TABLE moved_problems (id bigint PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                             created_at timestamp);
CREATE INDEX ON moved_problems (created_at);
SELECT tracked FROM billing.track_messages('moved_problems');
INSERT INTO moved_problems VALUES
  (1, 'c', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": "12a"}', '2026-10-31 22:00'),
  (2, 'c', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-10 12:00');
SELECT billing.merge() >= 0 AS merged;
ALTER TABLE moved_problems ALTER COLUMN created_at TYPE timestamptz USING created_at AT TIME ZONE 'America/New_York';
SELECT billing.merge() >= 0 AS merged;
SELECT message_id, created_at AT TIME ZONE 'UTC' AS created_utc, month, detail FROM billing.usage_problems
 WHERE source_table = 'moved_problems'::regclass;
-- (2) while its triggers are disabled, row 1 moved to an infinite time
-- and row 3 mended: usage_problems reads the table then, so row 3 is no
-- longer listed and row 1 is, with both of its problems and no time (it
-- listed both rows, row 1 with its old problem only); the merge after the
-- triggers are enabled again keeps the same listing (it kept row 1's old
-- listing, which a rebuild of November then dropped).
INSERT INTO moved_problems VALUES (3, 'c', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": -1}', '2026-11-11 12:00');
SELECT billing.merge() >= 0 AS merged;
ALTER TABLE moved_problems DISABLE TRIGGER USER;
UPDATE moved_problems SET created_at = 'infinity' WHERE id = 1;
UPDATE moved_problems SET data = '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}' WHERE id = 3;
SELECT message_id, created_at, month, detail FROM billing.usage_problems
 WHERE source_table = 'moved_problems'::regclass;
SELECT billing.dashboard(at => '2026-11-20')->'openai'->'problems' AS dashboard_problems;
ALTER TABLE moved_problems ENABLE TRIGGER USER;
SELECT billing.merge() >= 0 AS merged;
SELECT message_id, created_at, month, detail FROM billing.usage_problems
 WHERE source_table = 'moved_problems'::regclass;
SELECT billing.untrack_messages('moved_problems');

-- A date past the last timestamp (the year 294276) fails no write, no
-- tracking and no merge: it is a time counted in no month, listed. So are
-- the finite dates outside the years 1 to 9999, listed with their time and
-- no month. The other row: 100 x 2.5/1M + 50 x 10/1M = 0.00075 in November.
CREATE TABLE far_dates (id int PRIMARY KEY, conversation_id text, role text, content text, data jsonb, created_at date);
INSERT INTO far_dates VALUES (1, 'f', 'user', 'x', NULL, '300000-01-01');
SELECT tracked FROM billing.track_messages('far_dates');
INSERT INTO far_dates VALUES (2, 'f', 'user', 'x', NULL, '5874897-12-31'),
                             (3, 'f', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-02'),
                             (4, 'f', 'user', 'x', NULL, '10000-06-01'), (5, 'f', 'user', 'x', NULL, '0044-03-15 BC');
SELECT message_id, created_at AT TIME ZONE 'UTC' AS created_utc, month, left(detail, 40) AS detail FROM billing.usage_problems
 WHERE source_table = 'far_dates'::regclass ORDER BY 1;
SELECT month, cost FROM billing.conversation_costs WHERE source_table = 'far_dates'::regclass;
DELETE FROM far_dates WHERE id IN (1, 2, 4, 5);
SELECT billing.merge() >= 0 AS merged;
SELECT count(*) AS problems FROM billing.usage_problems WHERE source_table = 'far_dates'::regclass;
SELECT billing.untrack_messages('far_dates');
RESET timezone;

-- A timestamp column (without time zone) whose default is the current time
-- holds the writing session's local time, which billing reads as UTC:
-- tracking it from a session whose TimeZone is not UTC says so (New York
-- here, as set above); a default that stores UTC does not.
SET timezone = 'America/New_York';
CREATE TABLE local_default (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                            created_at timestamp(3) DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE utc_default (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                          created_at timestamp DEFAULT (now() AT TIME ZONE 'UTC'));
CREATE DOMAIN local_stamp AS timestamp(6);
CREATE TABLE domain_default (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                             created_at local_stamp DEFAULT LOCALTIMESTAMP);
SELECT tracked FROM billing.track_messages('local_default');
SELECT tracked FROM billing.track_messages('utc_default');
SELECT tracked FROM billing.track_messages('domain_default');
SELECT billing.untrack_messages('local_default'), billing.untrack_messages('utc_default'),
       billing.untrack_messages('domain_default');
DROP TABLE local_default, utc_default, domain_default;
DROP DOMAIN local_stamp;
