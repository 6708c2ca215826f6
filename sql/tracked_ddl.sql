-- DDL on a tracked table: renaming the table or a tracked column keeps its
-- writes flowing and counted; dropping it forgets its costs and functions.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

CREATE TABLE ddl_messages (
    id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
    created_at timestamptz DEFAULT now()
);
-- gpt-4o: $2.50 per 1M input tokens, $10.00 per 1M output tokens.
INSERT INTO ddl_messages (conversation_id, role, content, data, created_at) VALUES
    ('a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}', '2026-03-05');
SELECT tracked, backfilled, messages, problems, unpriced_models FROM billing.track_messages('ddl_messages');

-- Renames: the trigger function follows them (the app's next insert would
-- fail otherwise). Other ALTER TABLEs change nothing.
ALTER TABLE ddl_messages RENAME COLUMN data TO usage;
ALTER TABLE ddl_messages RENAME COLUMN created_at TO sent_at;
ALTER TABLE ddl_messages RENAME TO chat_turns;
ALTER TABLE chat_turns ADD COLUMN note text;
SELECT relation, id_column, conversation_column, role_column, content_column, data_column, created_at_column
  FROM billing.tracked_tables;

-- +$10.00; and a reply without usage, estimated: 'estimate me' is 11
-- characters = 3 completion tokens, its prompt the 2 earlier one-character
-- messages = 2 tokens, priced as gpt-4o-mini ($0.15 / $0.60 per 1M):
-- 2 x 0.15 / 1M + 3 x 0.60 / 1M = $0.0000021.
INSERT INTO chat_turns (conversation_id, role, content, usage, sent_at) VALUES
    ('a', 'assistant', 'y', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 1000000}', '2026-03-06'),
    ('a', 'assistant', 'estimate me', '{}', '2026-03-07');
UPDATE chat_turns SET usage = '{"model": "gpt-4o", "prompt_tokens": 2000000, "completion_tokens": 0}'
 WHERE content = 'x';   -- $2.50 -> $5.00
SELECT month, source, cost, estimated_tokens FROM billing.monthly_history;
SELECT billing.merge() >= 0 AS merged;
SELECT month, source, cost, estimated_tokens FROM billing.monthly_history;
SELECT conversation_id, cost, messages FROM billing.conversation_costs;

-- The renamed function still goes away with the extension.
SELECT count(*) AS marked FROM pg_depend
 WHERE classid = 'pg_proc'::regclass AND refclassid = 'pg_extension'::regclass AND deptype = 'x'
   AND objid = (SELECT g.tgfoid FROM pg_trigger AS g
                 WHERE g.tgrelid = 'chat_turns'::regclass AND g.tgname = 'billing_track');

-- A tracked column cannot be dropped from under the trigger: PostgreSQL
-- refuses, and with CASCADE (which would drop billing's trigger and leave
-- the table's writes unbilled) billing refuses. So does a DROP of billing's
-- triggers by hand, or of their function; the writes stay billed.
ALTER TABLE chat_turns DROP COLUMN usage;
ALTER TABLE chat_turns DROP COLUMN usage CASCADE;
DROP TRIGGER billing_track ON chat_turns;
DROP TRIGGER billing_track_truncate ON chat_turns;
SELECT format('billing.track_%s()', id) AS track_fn FROM billing.tracked_tables
 WHERE relation = 'chat_turns'::regclass \gset
DROP FUNCTION :track_fn CASCADE;
-- ($10.00 more: the trigger is still there)
INSERT INTO chat_turns (conversation_id, role, content, usage, sent_at) VALUES
    ('b', 'assistant', 'z', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 1000000}', '2026-03-08');
SELECT conversation_id, cost, messages FROM billing.conversation_costs WHERE conversation_id = 'b';
-- A column billing does not read goes, CASCADE or not.
ALTER TABLE chat_turns DROP COLUMN note CASCADE;

-- The e-mail counter's column can be renamed too: 2 e-mails, then 3 more.
CREATE TABLE ddl_profiles (id int PRIMARY KEY, data jsonb);
SELECT * FROM billing.track_profiles('ddl_profiles');
INSERT INTO ddl_profiles VALUES (1, '{"emails_sent_this_month": 2}');
ALTER TABLE ddl_profiles RENAME COLUMN data TO prefs;
UPDATE ddl_profiles SET prefs = '{"emails_sent_this_month": 5}';
SELECT sum(quantity) AS emails FROM billing.aws_usage WHERE origin = 'track_profiles';
DELETE FROM billing.aws_usage;
-- Its trigger is not dropped behind billing's back, by DROP TRIGGER or with
-- the counter's column: the e-mails would go unrecorded.
DROP TRIGGER billing_track_profiles ON ddl_profiles;
ALTER TABLE ddl_profiles DROP COLUMN prefs CASCADE;
UPDATE ddl_profiles SET prefs = '{"emails_sent_this_month": 6}';
SELECT sum(quantity) AS emails FROM billing.aws_usage WHERE origin = 'track_profiles';   -- 1
DELETE FROM billing.aws_usage;

-- Dropping tracked tables forgets them; dropping other tables is silent.
CREATE TABLE ddl_unrelated (x int);
DROP TABLE chat_turns, ddl_profiles, ddl_unrelated;
SELECT count(*) AS profiles_registered FROM billing.tracked_profiles;
SELECT (SELECT count(*) FROM billing.tracked_tables) AS tracked,
       (SELECT count(*) FROM billing.month_usage) + (SELECT count(*) FROM billing.conversation_usage)
       + (SELECT count(*) FROM billing.usage_ledger) + (SELECT count(*) FROM billing.estimated_prompts) AS rows_kept,
       (SELECT count(*) FROM pg_proc WHERE pronamespace = 'billing'::regnamespace
                                      AND proname ~ '^track_(profiles_)?[0-9]+$') AS functions_left;
SELECT count(*) AS months FROM billing.monthly_history WHERE source = 'openai';

-- Relations whose writes billing's triggers would not all see are refused,
-- each with a message that says why: a view, a materialized view, a
-- temporary table (it goes with its session, and no event says so), a
-- table with inheritance children (its reads would include their rows), a
-- partition of a tracked table, a partitioned table one of whose partitions
-- is tracked.
CREATE TABLE shape_base (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
CREATE VIEW shape_view AS SELECT * FROM shape_base;
CREATE MATERIALIZED VIEW shape_matview AS SELECT * FROM shape_base;
CREATE TEMP TABLE shape_temp (LIKE shape_base);
CREATE TABLE shape_heir () INHERITS (shape_base);
SELECT billing.track_messages('shape_view');
SELECT billing.track_messages('shape_matview');
SELECT billing.track_messages('shape_temp');
SELECT billing.track_messages('shape_base');
-- (a child with no children of its own is a table like any other)
SELECT tracked FROM billing.track_messages('shape_heir');
SELECT billing.untrack_messages('shape_heir');
DROP TABLE shape_heir;
CREATE TABLE shape_parted (LIKE shape_base) PARTITION BY RANGE (created_at);
CREATE TABLE shape_parted_2026 PARTITION OF shape_parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT tracked FROM billing.track_messages('shape_parted_2026');
SELECT billing.track_messages('shape_parted');
SELECT billing.untrack_messages('shape_parted_2026');
SELECT tracked FROM billing.track_messages('shape_parted');
SELECT billing.track_messages('shape_parted_2026');
-- The app's BEFORE trigger sets data on an UPDATE whose SET list names
-- none of the columns billing reads (a streamed reply's usage filled in
-- from the raw response): billing_track_update sees it. 1M prompt tokens of
-- gpt-4o = $2.50; an UPDATE that names data is counted once, not twice
-- (1M more prompt tokens: $5.00), and one that changes nothing billing
-- reads adds nothing.
CREATE TABLE shape_streamed (id int PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                             created_at timestamptz, response jsonb);
CREATE FUNCTION shape_fill_data() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.data := (NEW.response -> 'usage') || jsonb_build_object('model', NEW.response ->> 'model');
    RETURN NEW;
END $$;
CREATE TRIGGER fill_data BEFORE INSERT OR UPDATE ON shape_streamed
    FOR EACH ROW WHEN (NEW.response IS NOT NULL) EXECUTE FUNCTION shape_fill_data();
SELECT tracked FROM billing.track_messages('shape_streamed');
INSERT INTO shape_streamed VALUES (1, 'st', 'assistant', '', NULL, '2026-06-01', NULL);
UPDATE shape_streamed SET response = '{"model": "gpt-4o", "usage": {"prompt_tokens": 1000000, "completion_tokens": 0}}';
SELECT cost, messages FROM billing.conversation_costs WHERE conversation_id = 'st';
UPDATE shape_streamed SET data = '{"model": "gpt-4o", "prompt_tokens": 2000000, "completion_tokens": 0}', response = NULL;
SELECT cost, messages FROM billing.conversation_costs WHERE conversation_id = 'st';
UPDATE shape_streamed SET response = NULL;
SELECT billing.merge() IS NOT NULL AS merged;
SELECT cost, messages FROM billing.conversation_costs WHERE conversation_id = 'st';
SET billing.trigger_fast_path = off;
UPDATE shape_streamed SET response = '{"model": "gpt-4o", "usage": {"prompt_tokens": 1000000, "completion_tokens": 0}}';
RESET billing.trigger_fast_path;
SELECT cost, messages FROM billing.conversation_costs WHERE conversation_id = 'st';
SELECT billing.untrack_messages('shape_streamed');
DROP TABLE shape_streamed;
DROP FUNCTION shape_fill_data();

-- A column that is not there: the error names the parameter to use.
CREATE TABLE shape_nocol (id int, conversation_id text, role text, content text, usage jsonb, created_at timestamptz);
SELECT billing.track_messages('shape_nocol');
SELECT tracked FROM billing.track_messages('shape_nocol', data_column => 'usage');
SELECT billing.untrack_messages('shape_nocol');
DROP TABLE shape_nocol;
-- A tracked table cannot gain an inheritance child afterwards.
SELECT tracked FROM billing.track_messages('shape_base');
CREATE TABLE shape_late_heir () INHERITS (shape_base);
CREATE TABLE shape_late_heir (LIKE shape_base);
ALTER TABLE shape_late_heir INHERIT shape_base;
SELECT count(*) AS heirs FROM pg_inherits WHERE inhparent = 'shape_base'::regclass;

-- A trigger of billing's disabled (ALTER TABLE ... DISABLE TRIGGER ALL, as
-- some ORMs' fixture loaders do): billing says so, and reads the table
-- itself, so the rows written meanwhile are billed all the same; merge()
-- leaves it so until the trigger is enabled again, then takes it in.
-- gpt-4o 100 + 50 tokens = $0.00075 a row.
INSERT INTO shape_base VALUES (1, 's', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-05-04');
SELECT billing.merge() IS NOT NULL AS merged;
ALTER TABLE shape_base DISABLE TRIGGER ALL;
INSERT INTO shape_base VALUES (2, 's', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-05-05');
SELECT billing.merge() IS NOT NULL AS merged;
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'shape_base'::regclass;
SELECT cost, messages FROM billing.monthly_history WHERE source = 'openai' AND month = '2026-05-01';
ALTER TABLE shape_base ENABLE TRIGGER ALL;
INSERT INTO shape_base VALUES (3, 's', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-05-06');
SELECT billing.merge() IS NOT NULL AS merged;
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'shape_base'::regclass;
SELECT cost, messages FROM billing.monthly_history WHERE source = 'openai' AND month = '2026-05-01';

-- Rows loaded where no trigger fires (session_replication_role = replica,
-- as logical replication and pg_restore --disable-triggers load them):
-- billing.rebuild_messages() takes the table in anew.
SET session_replication_role = replica;
INSERT INTO shape_base VALUES (4, 's', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-05-07');
RESET session_replication_role;
SELECT cost, messages FROM billing.monthly_history WHERE source = 'openai' AND month = '2026-05-01';
SELECT billing.rebuild_messages('shape_base');
SELECT cost, messages FROM billing.monthly_history WHERE source = 'openai' AND month = '2026-05-01';
SELECT billing.merge() IS NOT NULL AS merged;
SELECT cost, messages FROM billing.monthly_history WHERE source = 'openai' AND month = '2026-05-01';
SELECT billing.rebuild_messages('shape_view');
SELECT billing.untrack_messages('shape_base'), billing.untrack_messages('shape_parted');
DROP TABLE shape_base, shape_parted, shape_late_heir CASCADE;
DROP TABLE shape_temp;

-- A column swapped in (the usual way to change a column's type without a
-- long lock: add the new column, copy, rename the old one away and the new
-- one into its name): at the first rename billing follows the old column
-- and says so, with what to do once the swap is done. Done as the hint
-- says, the new json column is billed: a reply of gpt-4o 100 + 50 tokens,
-- 100 x 2.5/1M + 50 x 10/1M = 0.00075, June 2026; one before the swap,
-- 0.0015 in all.
CREATE TABLE swap_messages (id bigint PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                            created_at timestamptz);
SELECT tracked FROM billing.track_messages('swap_messages');
INSERT INTO swap_messages VALUES (1, 'w', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-06-01');
ALTER TABLE swap_messages ADD COLUMN data_new json;
UPDATE swap_messages SET data_new = data::json;
BEGIN;
ALTER TABLE swap_messages RENAME COLUMN data TO data_old;
ALTER TABLE swap_messages RENAME COLUMN data_new TO data;
COMMIT;
SELECT data_column FROM billing.tracked_tables WHERE relation = 'swap_messages'::regclass;
SELECT billing.untrack_messages('swap_messages');
SELECT tracked FROM billing.track_messages('swap_messages');
ALTER TABLE swap_messages DROP COLUMN data_old;
INSERT INTO swap_messages (id, conversation_id, role, content, data, created_at)
VALUES (2, 'w', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-06-02');
SELECT cost, messages FROM billing.monthly_history WHERE source = 'openai' AND month = '2026-06-01';
SELECT billing.merge() IS NOT NULL AS merged;
SELECT cost, messages FROM billing.monthly_history WHERE source = 'openai' AND month = '2026-06-01';
SELECT billing.untrack_messages('swap_messages');
DROP TABLE swap_messages;

-- A table swapped in (a new table renamed into the old one's name): at the
-- first rename billing follows the old table and says so, with what to do
-- once the swap is done. Done as the hint says, the new table's replies are
-- billed: gpt-4o 100 + 50 tokens = 0.00075 in July 2026, beside the old
-- table's 0.00075 (it stays tracked, under its new name): 0.0015.
CREATE TABLE swap_table (id bigint PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                         created_at timestamptz);
SELECT tracked FROM billing.track_messages('swap_table');
INSERT INTO swap_table VALUES (1, 'v', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-07-01');
CREATE TABLE swap_table_new (LIKE swap_table INCLUDING ALL);
BEGIN;
ALTER TABLE swap_table RENAME TO swap_table_old;
ALTER TABLE swap_table_new RENAME TO swap_table;
COMMIT;
SELECT tracked FROM billing.track_messages('swap_table');
INSERT INTO swap_table VALUES (2, 'v', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-07-02');
SELECT cost, messages FROM billing.monthly_history WHERE source = 'openai' AND month = '2026-07-01';
SELECT billing.untrack_messages('swap_table'), billing.untrack_messages('swap_table_old');
DROP TABLE swap_table, swap_table_old;

-- An old month's partition detached (archived) keeps billing's TRUNCATE
-- trigger while its former table is tracked; once that table is untracked
-- or dropped, billing drops the trigger too, and merge() says nothing of it
-- (it warned at every run that the archive carried billing's trigger
-- untracked).
CREATE TABLE archived (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamptz)
    PARTITION BY RANGE (created_at);
CREATE TABLE archived_2026_09 PARTITION OF archived FOR VALUES FROM ('2026-09-01') TO ('2026-10-01');
CREATE TABLE archived_2026_10 PARTITION OF archived FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
SELECT tracked FROM billing.track_messages('archived');
ALTER TABLE archived DETACH PARTITION archived_2026_09;
ALTER TABLE archived DETACH PARTITION archived_2026_10;
SELECT tgrelid::regclass AS detached, tgname FROM pg_trigger
 WHERE tgrelid IN ('archived_2026_09'::regclass, 'archived_2026_10'::regclass) ORDER BY 1;
SELECT billing.merge() >= 0 AS merged;
SELECT billing.untrack_messages('archived');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'archived_2026_09'::regclass;
SELECT billing.merge() >= 0 AS merged;
-- The same when the table is dropped.
SELECT tracked FROM billing.track_messages('archived');
CREATE TABLE archived_2026_11 PARTITION OF archived FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
ALTER TABLE archived DETACH PARTITION archived_2026_11;
DROP TABLE archived;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'archived_2026_11'::regclass;
SELECT billing.merge() >= 0 AS merged;
DROP TABLE archived_2026_09, archived_2026_10, archived_2026_11;

-- A column billing reads changes type (ALTER TABLE ... ALTER COLUMN ...
-- TYPE): PostgreSQL refuses that for a column a trigger lists, so billing
-- drops its row triggers at the command's start and makes them again at
-- its end, for the new types, and takes the table in anew. The migrations
-- of Rails (change_column emits TYPE even to the same type), Django
-- (AlterField of max_length) and Prisma (@db.VarChar) failed on a tracked
-- table before. By hand: gpt-4o 100 + 50 tokens = 0.00075 a reply;
-- reply 1 updated to 200 prompt tokens after the changes = 0.001.
CREATE TABLE typed (id bigserial PRIMARY KEY, conversation_id varchar(20), role varchar(10), content varchar(100),
                    data jsonb, created_at timestamp NOT NULL);
CREATE INDEX ON typed (conversation_id);
SELECT tracked FROM billing.track_messages('typed');
INSERT INTO typed (conversation_id, role, content, data, created_at)
VALUES ('t', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-05'),
       ('t', 'assistant', 'y', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-30 23:30');
SELECT billing.merge() >= 0 AS merged;
ALTER TABLE typed ALTER COLUMN content TYPE varchar(100), ALTER COLUMN content SET NOT NULL;   -- Rails
ALTER TABLE typed ALTER COLUMN role TYPE varchar(32);                                           -- Django
ALTER TABLE typed ALTER COLUMN content TYPE varchar(4000);                                      -- Prisma
ALTER TABLE typed ALTER COLUMN conversation_id TYPE text;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'typed'::regclass AND NOT tgisinternal ORDER BY 1;
INSERT INTO typed (conversation_id, role, content, data, created_at)
VALUES ('t', 'assistant', 'z', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-06');
UPDATE typed SET data = '{"model": "gpt-4o", "prompt_tokens": 200, "completion_tokens": 50}' WHERE id = 1;
-- 0.001 + 0.00075 + 0.00075 = 0.0025 in November
SELECT month, cost, messages FROM billing.monthly_history WHERE source = 'openai' AND cost > 0 ORDER BY month;
-- A USING clause that moves the times: 2026-11-30 23:30 read as New York
-- time is 1 December 04:30 UTC. The table is taken in anew: 0.00175 in
-- November, 0.00075 in December, before and after a merge.
ALTER TABLE typed ALTER COLUMN created_at TYPE timestamptz USING created_at AT TIME ZONE 'America/New_York';
SELECT month, cost, messages FROM billing.monthly_history WHERE source = 'openai' AND cost > 0 ORDER BY month;
SELECT billing.merge() >= 0 AS merged;
SELECT month, cost, messages FROM billing.monthly_history WHERE source = 'openai' AND cost > 0 ORDER BY month;
-- A type billing does not read is refused, and the ALTER with it: the
-- triggers stay.
ALTER TABLE typed ALTER COLUMN content TYPE point USING point(1, 1);
SELECT count(*) AS billing_triggers FROM pg_trigger WHERE tgrelid = 'typed'::regclass AND tgname LIKE 'billing%';
-- A subscriber's ENABLE ALWAYS triggers stay ALWAYS.
ALTER TABLE typed ENABLE ALWAYS TRIGGER billing_track, ENABLE ALWAYS TRIGGER billing_track_update,
                  ENABLE ALWAYS TRIGGER billing_track_truncate;
ALTER TABLE typed ALTER COLUMN role TYPE text;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'typed'::regclass AND NOT tgisinternal ORDER BY 1;
-- Each trigger keeps its own mode, as the owner left it: billing_track and
-- billing_track_update ALWAYS beside an ORIGIN TRUNCATE trigger (the table
-- read by billing meanwhile, as before the ALTER), and a DISABLEd one.
ALTER TABLE typed ENABLE TRIGGER billing_track_truncate;
ALTER TABLE typed ALTER COLUMN role TYPE varchar(40);
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'typed'::regclass AND NOT tgisinternal ORDER BY 1;
ALTER TABLE typed ENABLE TRIGGER billing_track, ENABLE TRIGGER billing_track_update;
ALTER TABLE typed DISABLE TRIGGER billing_track_update;
ALTER TABLE typed ALTER COLUMN role TYPE text;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'typed'::regclass AND NOT tgisinternal ORDER BY 1;
ALTER TABLE typed ENABLE TRIGGER billing_track_update;
-- A statement that also names billing's triggers, or drops a column billing
-- reads, gets PostgreSQL's refusal, as before.
ALTER TABLE typed ALTER COLUMN content TYPE varchar(5000), ENABLE ALWAYS TRIGGER billing_track;
ALTER TABLE typed ALTER COLUMN content TYPE varchar(5000), DROP COLUMN data;
-- A USING that changes the ids' text would leave the frozen prompt
-- estimates behind (keyed by it): refused. One that keeps it passes.
INSERT INTO typed (id, conversation_id, role, content, data, created_at)
VALUES (10, 'e', 'user', 'abcdefgh', '{}', '2026-11-08'), (11, 'e', 'assistant', 'abcd', '{}', '2026-11-09');
SELECT message_id, prompt_tokens FROM billing.estimated_prompts
 WHERE source_id = (SELECT id FROM billing.tracked_tables WHERE relation = 'typed'::regclass);
ALTER TABLE typed ALTER COLUMN id DROP DEFAULT;
ALTER TABLE typed ALTER COLUMN id TYPE text USING 'm' || id;
ALTER TABLE typed ALTER COLUMN id TYPE text USING id::text;
SELECT billing.untrack_messages('typed');
DROP TABLE typed;
-- A role without USAGE on schema billing changes a column's type on a
-- table of its own, and replaces a trigger of its own: billing's event
-- triggers look their functions up without that right (both failed with
-- "permission denied for schema billing").
CREATE ROLE regress_migrator;
CREATE SCHEMA migrations AUTHORIZATION regress_migrator;
SET ROLE regress_migrator;
CREATE TABLE migrations.t (a int, b text);
ALTER TABLE migrations.t ALTER COLUMN b TYPE varchar(5);
CREATE TRIGGER x BEFORE UPDATE ON migrations.t FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
CREATE OR REPLACE TRIGGER x BEFORE UPDATE ON migrations.t FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
RESET ROLE;
DROP SCHEMA migrations CASCADE;
DROP ROLE regress_migrator;
-- A partitioned table: the partitions' copies of the trigger are made
-- again with it, each in its own mode (one partition replicated by a
-- subscriber: ENABLE ALWAYS there alone), and replies stored in each
-- partition afterwards are billed, the replicated one too (0.00075 each).
CREATE TABLE typed_parts (id bigint, conversation_id text, role varchar(10), content text, data jsonb, created_at timestamptz)
    PARTITION BY RANGE (created_at);
CREATE TABLE typed_parts_2026_11 PARTITION OF typed_parts FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE TABLE typed_parts_2026_12 PARTITION OF typed_parts FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');
SELECT tracked FROM billing.track_messages('typed_parts');
ALTER TABLE typed_parts_2026_12 ENABLE ALWAYS TRIGGER billing_track, ENABLE ALWAYS TRIGGER billing_track_update;
ALTER TABLE typed_parts ALTER COLUMN role TYPE varchar(32);
SELECT tgrelid::regclass AS relation, tgname, tgenabled FROM pg_trigger
 WHERE tgrelid IN ('typed_parts'::regclass, 'typed_parts_2026_11'::regclass, 'typed_parts_2026_12'::regclass)
   AND NOT tgisinternal ORDER BY 1, 2;
SELECT count(*) AS lifted_left FROM billing.lifted_triggers;
INSERT INTO typed_parts VALUES (1, 'p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-07');
SET session_replication_role = replica;
INSERT INTO typed_parts VALUES (2, 'p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-12-07');
RESET session_replication_role;
SELECT month, cost, messages FROM billing.conversation_costs WHERE source_table = 'typed_parts'::regclass ORDER BY month;
SELECT billing.untrack_messages('typed_parts');
DROP TABLE typed_parts;

-- A tracked table moved to another schema (ALTER TABLE ... SET SCHEMA, the
-- other way to swap a table out of the app's way) warns as a rename does.
CREATE SCHEMA chat;
CREATE SCHEMA archive;
CREATE TABLE chat.turns (id bigserial PRIMARY KEY, thread_id text, role text, content text, usage jsonb, created_at timestamptz);
SELECT tracked FROM billing.track_messages('chat.turns', conversation_column => 'thread_id', data_column => 'usage');
ALTER TABLE chat.turns SET SCHEMA archive;
SELECT relation FROM billing.tracked_tables WHERE relation = 'archive.turns'::regclass;
SELECT billing.untrack_messages('archive.turns');
DROP SCHEMA chat, archive CASCADE;

-- A schema of tracked tables renamed (ALTER SCHEMA ... RENAME TO): the
-- PL/pgSQL body, which estimates the replies of a table without an index
-- on its conversation column, reads the table by its new name at once.
-- 'aaaa...' (40 characters) is 10 tokens; the second reply's prompt is
-- 10 + 1 ('abcd') + 10 = 21.
CREATE SCHEMA s1;
CREATE TABLE s1.ni (id int PRIMARY KEY, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
SELECT tracked FROM billing.track_messages('s1.ni');
INSERT INTO s1.ni VALUES (1, 'c', 'user', repeat('a', 40), '{}', '2026-11-01 10:00'),
                         (2, 'c', 'assistant', 'abcd', '{}', '2026-11-01 10:01');
ALTER SCHEMA s1 RENAME TO s2;
INSERT INTO s2.ni VALUES (3, 'c', 'user', repeat('a', 40), '{}', '2026-11-01 10:02'),
                         (4, 'c', 'assistant', 'abcd', '{}', '2026-11-01 10:03');
SELECT message_id, prompt_tokens FROM billing.estimated_prompts
 WHERE source_id = (SELECT id FROM billing.tracked_tables WHERE relation = 's2.ni'::regclass) ORDER BY 1;
SELECT count(*) AS problems FROM billing.usage_problems WHERE source_table = 's2.ni'::regclass;
SELECT billing.untrack_messages('s2.ni');
DROP SCHEMA s2 CASCADE;

-- A partitioned table with a foreign partition (an archive on another
-- server, here this one through postgres_fdw) can be tracked: PostgreSQL
-- lets a foreign table have no TRUNCATE trigger, and billing puts none on
-- it (tracking failed). Its rows are billed; a reply stored later in the
-- local partition is estimated from both: 'abcdefgh' (2) in the archive +
-- 'abcd' (1) = 3 tokens.
CREATE EXTENSION postgres_fdw;
DO $$
BEGIN
    EXECUTE format('CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host %L, dbname %L, port %L)',
                   split_part(current_setting('unix_socket_directories'), ',', 1), current_database(),
                   current_setting('port'));
END
$$;
CREATE USER MAPPING FOR CURRENT_USER SERVER loopback;
CREATE TABLE fdw_remote (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
INSERT INTO fdw_remote VALUES (1, 'f', 'user', 'abcdefgh', '{}', '2025-06-01');
CREATE TABLE fdw_parted (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamptz)
    PARTITION BY RANGE (created_at);
CREATE FOREIGN TABLE fdw_parted_old PARTITION OF fdw_parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
    SERVER loopback OPTIONS (table_name 'fdw_remote');
CREATE TABLE fdw_parted_new PARTITION OF fdw_parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX ON fdw_parted_new (conversation_id);
SELECT tracked FROM billing.track_messages('fdw_parted');
INSERT INTO fdw_parted VALUES (2, 'f', 'user', 'abcd', '{}', '2026-11-01'),
                              (3, 'f', 'assistant', 'x', '{}', '2026-11-02');
SELECT message_id, prompt_tokens FROM billing.estimated_prompts
 WHERE source_id = (SELECT id FROM billing.tracked_tables WHERE relation = 'fdw_parted'::regclass);
SELECT billing.untrack_messages('fdw_parted');
DROP TABLE fdw_parted, fdw_remote;
DROP EXTENSION postgres_fdw CASCADE;

-- DDL in a session under session_replication_role = replica (a migration
-- tool's, or what a replication system applies on a subscriber): billing's
-- event triggers fire all the same. A renamed data column is followed (the
-- reply after it is billed, 0.00075), a DISABLE TRIGGER ALL warns and has
-- billing read the table (the reply written meanwhile is billed too,
-- 0.0015 in all), and a DROP TRIGGER of billing's trigger is refused.
CREATE TABLE replica_ddl (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, conversation_id text, role text,
                          content text, data jsonb, created_at timestamptz);
SELECT tracked FROM billing.track_messages('replica_ddl');
SET session_replication_role = replica;
ALTER TABLE replica_ddl RENAME COLUMN data TO usage;
RESET session_replication_role;
INSERT INTO replica_ddl (conversation_id, role, content, usage, created_at)
VALUES ('q', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-05');
SELECT data_column FROM billing.tracked_tables WHERE relation = 'replica_ddl'::regclass;
SET session_replication_role = replica;
ALTER TABLE replica_ddl DISABLE TRIGGER ALL;
RESET session_replication_role;
INSERT INTO replica_ddl (conversation_id, role, content, usage, created_at)
VALUES ('q', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-06');
SELECT cost, messages FROM billing.conversation_costs WHERE source_table = 'replica_ddl'::regclass;
ALTER TABLE replica_ddl ENABLE TRIGGER ALL;
SET session_replication_role = replica;
DROP TRIGGER billing_track ON replica_ddl;
RESET session_replication_role;
SELECT billing.untrack_messages('replica_ddl');
DROP TABLE replica_ddl;
