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

-- Dropping tracked tables forgets them; dropping other tables is silent.
CREATE TABLE ddl_unrelated (x int);
DROP TABLE chat_turns, ddl_profiles, ddl_unrelated;
SELECT (SELECT count(*) FROM billing.tracked_tables) AS tracked,
       (SELECT count(*) FROM billing.month_usage) + (SELECT count(*) FROM billing.conversation_usage)
       + (SELECT count(*) FROM billing.usage_ledger) + (SELECT count(*) FROM billing.estimated_prompts) AS rows_kept,
       (SELECT count(*) FROM pg_proc WHERE pronamespace = 'billing'::regnamespace
                                      AND proname ~ '^track_(profiles_)?[0-9]+$') AS functions_left;
SELECT count(*) AS months FROM billing.monthly_history WHERE source = 'openai';
