-- Attacks on billing by roles with fewer rights than it has: the owner of
-- a tracked table (an app that runs its own migrations), a reader with the
-- README's grants, and any role that can connect. Each runs as the
-- attacking role; a canary function records who it was run as. Nothing may
-- ever run it with more rights than the attacker's, and billing must keep
-- answering for everyone.
\set SHOW_CONTEXT never
SET timezone = 'UTC';
CREATE ROLE regress_mallory;
CREATE SCHEMA mallory AUTHORIZATION regress_mallory;
GRANT USAGE ON SCHEMA billing TO regress_mallory;
CREATE TABLE mallory.calls (run_as name, superuser boolean);
GRANT ALL ON mallory.calls TO PUBLIC;
-- The canary: harmless, but it records the role it runs as.
CREATE FUNCTION mallory.canary(x text) RETURNS text LANGUAGE sql VOLATILE
AS $$ INSERT INTO mallory.calls SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
      SELECT x $$;
ALTER FUNCTION mallory.canary(text) OWNER TO regress_mallory;
CREATE VIEW escalations AS SELECT count(*) AS ran_with_more_rights FROM mallory.calls WHERE run_as <> 'regress_mallory';

-- The app's tables belong to mallory; a superuser tracks them (as the README
-- says: tracking is for the extension's owner).
CREATE TABLE mallory.messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text,
                               data jsonb, created_at timestamptz);
CREATE TABLE mallory.profiles (id int PRIMARY KEY, data jsonb);
ALTER TABLE mallory.messages OWNER TO regress_mallory;
ALTER TABLE mallory.profiles OWNER TO regress_mallory;
SELECT tracked FROM billing.track_messages('mallory.messages');
SELECT * FROM billing.track_profiles('mallory.profiles');

-- 1. A cast to json on a type of another column of the profiles table: the
--    counter trigger must not convert the whole row.
SET ROLE regress_mallory;
CREATE TYPE mallory.pwn AS ENUM ('x');
CREATE FUNCTION mallory.pwn_to_json(mallory.pwn) RETURNS json LANGUAGE sql
AS $$ SELECT to_json(mallory.canary('cast to json')) $$;
CREATE CAST (mallory.pwn AS json) WITH FUNCTION mallory.pwn_to_json(mallory.pwn);
ALTER TABLE mallory.profiles ADD COLUMN pwn mallory.pwn DEFAULT 'x';
INSERT INTO mallory.profiles (id, data) VALUES (1, '{"emails_sent_this_month": 1}');
UPDATE mallory.profiles SET data = '{"emails_sent_this_month": 3}';
RESET ROLE;
SELECT * FROM escalations;
SELECT sum(quantity) AS emails FROM billing.aws_usage WHERE service = 'ses';   -- 1 + 2

-- 2. The same type as a tracked column's type: the owner may change the
--    column to it (billing makes its triggers again for the new type), and
--    billing reads the enum's label with its built-in output function,
--    never the cast, in C and in the PL/pgSQL body alike: nothing runs
--    with more rights. (Rolled back: the steps below write 'assistant'.)
SET ROLE regress_mallory;
CREATE FUNCTION mallory.pwn_to_text(mallory.pwn) RETURNS text LANGUAGE sql
AS $$ SELECT mallory.canary('cast to text') $$;
CREATE CAST (mallory.pwn AS text) WITH FUNCTION mallory.pwn_to_text(mallory.pwn);
BEGIN;
ALTER TABLE mallory.messages ALTER COLUMN role TYPE mallory.pwn USING 'x';
INSERT INTO mallory.messages (conversation_id, role, content, data, created_at)
VALUES ('a', 'x', 'hello', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-02');
UPDATE mallory.messages SET content = 'hello again' WHERE content = 'hello';
RESET ROLE;
SELECT * FROM escalations;
SELECT count(*) AS billing_triggers FROM pg_trigger WHERE tgrelid = 'mallory.messages'::regclass AND tgname LIKE 'billing%';
ROLLBACK;   -- (and back to regress_mallory)
INSERT INTO mallory.messages (conversation_id, role, content, data, created_at)
VALUES ('a', 'assistant', 'hello', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-02');
-- 3. A decoy trigger named like billing's, listing a column of that type:
--    billing's trigger cannot be renamed out of the way, nor replaced
--    under its name by another function (either would also let the owner
--    drop billing's trigger unseen), nor called by a trigger of another
--    name; and billing finds its trigger by its function, not by name.
ALTER TABLE mallory.messages ADD COLUMN decoy mallory.pwn DEFAULT 'x';
ALTER TRIGGER billing_track ON mallory.messages RENAME TO billing_track_moved;
CREATE FUNCTION mallory.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER billing_track AFTER UPDATE OF decoy, id, conversation_id, role, data, created_at
    ON mallory.messages FOR EACH ROW EXECUTE FUNCTION mallory.noop();
SELECT tgfoid::regprocedure AS mallory_fn FROM pg_trigger
 WHERE tgrelid = 'mallory.messages'::regclass AND tgname = 'billing_track' \gset
CREATE TRIGGER twice AFTER INSERT ON mallory.messages FOR EACH ROW EXECUTE FUNCTION :mallory_fn;
CREATE TRIGGER billing_track_profiles AFTER UPDATE OF decoy ON mallory.messages
    FOR EACH ROW EXECUTE FUNCTION mallory.noop();
-- Nor replaced by itself made to fire never, nor called under another of
-- billing's names (each write billed twice), nor made to fire only on a
-- replica (its writes would pass unseen: billing reads the table itself,
-- with a warning), nor cut from the extension (DROP EXTENSION would fail).
CREATE OR REPLACE TRIGGER billing_track AFTER INSERT ON mallory.messages FOR EACH ROW WHEN (false)
    EXECUTE FUNCTION :mallory_fn;
CREATE OR REPLACE TRIGGER billing_track_profiles AFTER INSERT OR UPDATE OF data ON mallory.profiles
    FOR EACH ROW WHEN (false) EXECUTE FUNCTION billing._profiles_counter_changed();
CREATE TRIGGER billing_track_profiles AFTER INSERT OR UPDATE OR DELETE ON mallory.messages
    FOR EACH ROW EXECUTE FUNCTION :mallory_fn;
CREATE TRIGGER billing_track AFTER UPDATE OF data ON mallory.profiles
    FOR EACH ROW EXECUTE FUNCTION billing._profiles_counter_changed();
ALTER TRIGGER billing_track ON mallory.messages NO DEPENDS ON EXTENSION billing;
ALTER TABLE mallory.messages ENABLE REPLICA TRIGGER billing_track;
ALTER TABLE mallory.messages ENABLE TRIGGER billing_track;
SELECT tgname, tgfoid = :'mallory_fn'::regprocedure AS billings
  FROM pg_trigger WHERE tgrelid = 'mallory.messages'::regclass AND NOT tgisinternal ORDER BY tgname;
ALTER TABLE mallory.messages RENAME COLUMN content TO body;
INSERT INTO mallory.messages (conversation_id, role, body, data, created_at)
VALUES ('a', 'assistant', 'answered', '{}', '2026-11-03');
RESET ROLE;
SELECT * FROM escalations;
SELECT content_column FROM billing.tracked_tables;

-- 4. The table renamed with a command billing's event trigger did not use
--    to follow (ALTER INDEX ... RENAME), and a view put in its place whose
--    content column calls the canary: the estimate of the next reply
--    without usage must not read the view.
SET ROLE regress_mallory;
ALTER INDEX mallory.messages RENAME TO messages_real;
CREATE VIEW mallory.messages AS
SELECT id, conversation_id, role, mallory.canary(body) AS body, data, created_at FROM mallory.messages_real;
INSERT INTO mallory.messages_real (conversation_id, role, body, data, created_at)
VALUES ('a', 'assistant', 'again', '{}', '2026-11-04');
RESET ROLE;
SELECT * FROM escalations;
SELECT relation FROM billing.tracked_tables;
-- gpt-4o 100 x 2.50/1M + 50 x 10/1M = 0.00075, plus two estimated replies.
SELECT billing.merge() >= 0 AS merged;
SELECT count(*) AS messages, sum(cost) > 0.00075 AS estimates_priced FROM billing.conversation_costs;

-- 5. After a restore without privileges the trigger functions are
--    executable by PUBLIC: attached to another table they bill nothing,
--    so no ledger row can be forged and no hostile type read.
SELECT format('billing.%I()', 'track_' || id) AS track_fn FROM billing.tracked_tables \gset
GRANT EXECUTE ON FUNCTION :track_fn TO PUBLIC;
SET ROLE regress_mallory;
CREATE TABLE mallory.forge (id bigint, conversation_id text, role text, body text, data jsonb, created_at timestamptz);
CREATE TRIGGER forge AFTER INSERT ON mallory.forge FOR EACH ROW EXECUTE FUNCTION :track_fn;
INSERT INTO mallory.forge VALUES (1, 'forged', 'assistant', 'x',
    '{"model": "gpt-4o", "prompt_tokens": 1000000000, "completion_tokens": 0}', '2026-11-05');
RESET ROLE;
SELECT count(*) AS forged_rows FROM billing.usage_ledger WHERE conversation_id = 'forged';
SELECT count(*) AS forged_conversations FROM billing.conversation_costs WHERE conversation_id = 'forged';
REVOKE EXECUTE ON FUNCTION :track_fn FROM PUBLIC;

-- 6. Any role that can connect tried to stall merging with the advisory
--    lock 0.3 used; the merge lock is a row only billing's writers can lock.
SET ROLE regress_mallory;
SELECT pg_advisory_lock(hashtext('billing.merge')) IS NOT NULL AS holds_the_old_lock;
SELECT 1 FROM billing.merge_lock FOR UPDATE;
RESET ROLE;
INSERT INTO mallory.messages_real (conversation_id, role, body, data, created_at)
VALUES ('b', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '2026-11-06');
SELECT billing.merge() > 0 AS merged_despite_the_lock;
SELECT pg_advisory_unlock_all();

-- 7. An operator of its own before pg_catalog in search_path: billing's C
--    functions and SQL qualify every operator they use.
SET ROLE regress_mallory;
CREATE FUNCTION mallory.text_eq(text, text) RETURNS boolean LANGUAGE sql
AS $$ SELECT mallory.canary($1) IS NOT NULL AND $1 OPERATOR(pg_catalog.=) $2 $$;
CREATE OPERATOR mallory.= (LEFTARG = text, RIGHTARG = text, FUNCTION = mallory.text_eq);
RESET ROLE;
SET search_path = mallory, pg_catalog, public;
SELECT billing.month_of('2026-11-05 12:00+00') AS month, billing.month_end('2026-11-01') AS month_end;
SELECT billing.merge() >= 0 AS merged;
SELECT (billing.dashboard('2026-11-01', '2026-12-01', 5, 2) -> 'openai' ->> 'messages')::int AS messages;
RESET search_path;
SELECT * FROM escalations;

-- 8. Whatever the app writes, every reader's dashboard keeps working: AWS
--    quantities that would overflow are refused or left out.
SELECT billing.record_usage('ses', 1e13);
SET ROLE regress_mallory;
UPDATE mallory.profiles SET data = '{"emails_sent_this_month": 10000000000003}';
RESET ROLE;
SELECT (billing.dashboard('2026-11-01', '2026-12-01') -> 'aws' ->> 'emails') IS NOT NULL AS dashboard_answers;

-- 9. A reader with the README's grants sees only the tracked tables it may
--    read, not their names; and 2,000 model names make no payload past 100 models.
CREATE ROLE regress_reader;
GRANT USAGE ON SCHEMA billing TO regress_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO regress_reader;
SELECT count(*) AS profiles_tracked FROM billing.tracked_profiles;
SET ROLE regress_reader;
SELECT count(*) AS tracked_tables_seen FROM billing.tracked_tables;
SELECT count(*) AS profiles_tables_seen FROM billing.tracked_profiles;
RESET ROLE;
INSERT INTO mallory.messages_real (conversation_id, role, body, data, created_at)
SELECT 'many', 'assistant', 'x', jsonb_build_object('model', 'm-' || g, 'prompt_tokens', 1, 'completion_tokens', 1),
       '2026-11-07'
  FROM generate_series(1, 2000) AS g;
SELECT (SELECT count(*) FROM jsonb_object_keys(d -> 'openai' -> 'by_model')) = 101 AS by_model_bounded,
       (d -> 'openai' -> 'by_model' -> '(other models)' ->> 'messages')::int >= 1900 AS rest_in_one_entry,
       length(d::text) < 20000 AS payload_small
  FROM billing.dashboard('2026-11-01', '2026-12-01') AS d;

-- 10. Any role's own table with a trigger named like billing's, dropped in
--     a transaction it keeps open: no tracked table is taken in anew, and
--     billing's merge lock is not taken in that transaction (held, it
--     would stall every merge and block other roles' DDL).
CREATE TABLE atk_parted (id bigint, conversation_id text, role text, content text, data jsonb,
                         created_at timestamptz) PARTITION BY RANGE (created_at);
CREATE TABLE atk_parted_2026 PARTITION OF atk_parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT tracked FROM billing.track_messages('atk_parted');
SELECT billing.merge() IS NOT NULL AS merged;
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'atk_parted'::regclass;
SET ROLE regress_mallory;
BEGIN;
CREATE TEMP TABLE decoy (a int);
CREATE TRIGGER billing_track AFTER INSERT ON decoy FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
CREATE TRIGGER billing_track_truncate AFTER TRUNCATE ON decoy EXECUTE FUNCTION suppress_redundant_updates_trigger();
DROP TABLE decoy;
SELECT count(*) AS merge_lock_taken FROM pg_locks
 WHERE relation = 'billing.merge_lock'::regclass AND pid = pg_backend_pid();
COMMIT;
RESET ROLE;
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'atk_parted'::regclass;
-- A partition of the tracked table dropped still takes it in anew.
DROP TABLE atk_parted_2026;
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'atk_parted'::regclass;
SELECT billing.untrack_messages('atk_parted');
DROP TABLE atk_parted;

-- 11. billing's trigger on a profiles table cannot be renamed and then
--     dropped, nor dropped from a function whose name mentions billing; the
--     setting billing's own functions use for that is a superuser's.
SET ROLE regress_mallory;
ALTER TRIGGER billing_track_profiles ON mallory.profiles RENAME TO gone;
CREATE FUNCTION mallory."function billing.x"() RETURNS void LANGUAGE plpgsql
AS $$ BEGIN DROP TRIGGER billing_track_profiles ON mallory.profiles; END $$;
SELECT mallory."function billing.x"();
SET billing.internal_ddl = on;
CREATE FUNCTION mallory.with_setting() RETURNS void LANGUAGE plpgsql SET billing.internal_ddl = on
AS $$ BEGIN DROP TRIGGER billing_track_profiles ON mallory.profiles; END $$;
RESET ROLE;
SELECT count(*) AS profiles_trigger_kept FROM pg_trigger
 WHERE tgrelid = 'mallory.profiles'::regclass AND tgname = 'billing_track_profiles';

-- A reader without SELECT on a tracked table cannot read its frozen
-- estimates through a scan given a made-up tracked_tables row (that
-- table's id, a table of the reader's own holding guessed ids): the scans
-- read frozen estimates as billing's owner only for the table tracked
-- under that id, and only for a caller that may read it. The secret reply
-- is frozen at 100 tokens (400 characters before it); the made-up scan
-- gets 0 (a taken-in table's reply with no estimate it may see).
CREATE TABLE public.secret_messages (id bigint PRIMARY KEY, conversation_id text, role text, content text,
                                     data jsonb, created_at timestamptz);
SELECT tracked FROM billing.track_messages('public.secret_messages');
INSERT INTO public.secret_messages VALUES
  (1, 'secret', 'user', repeat('s', 400), '{}', '2026-08-10 10:00'),
  (2, 'secret', 'assistant', 'twelve chars', '{}', '2026-08-10 10:01');
SELECT message_id, prompt_tokens FROM billing.estimated_prompts
 WHERE source_id = (SELECT id FROM billing.tracked_tables WHERE relation = 'public.secret_messages'::regclass);
SELECT id AS secret_id FROM billing.tracked_tables WHERE relation = 'public.secret_messages'::regclass \gset
SET ROLE regress_reader;
CREATE TEMP TABLE mine (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
INSERT INTO mine VALUES (2, 'probe', 'assistant', 'x', '{}', '2026-08-10 10:01');
SELECT s.conversation_id, s.estimated_prompt
  FROM billing._scan_table_grouped(ROW(:secret_id, 'mine'::regclass, 'id', 'conversation_id', 'role', 'content', 'data',
                                       'created_at', now(), true)::billing.tracked_tables,
                                   '2026-01-01', '2027-01-01', 'gpt-4o-mini') AS s;
DROP TABLE mine;
RESET ROLE;
SELECT billing.untrack_messages('public.secret_messages');
DROP TABLE public.secret_messages;

-- Clean up.
SELECT billing.untrack_messages('mallory.messages_real');
SELECT billing.untrack_profiles('mallory.profiles');
DELETE FROM billing.aws_usage;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'mallory.messages_real'::regclass
   AND tgfoid::regproc::text LIKE 'billing.%';
DROP SCHEMA mallory CASCADE;
REVOKE ALL ON SCHEMA billing FROM regress_mallory, regress_reader;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM regress_reader;
DROP ROLE regress_mallory;
DROP ROLE regress_reader;
