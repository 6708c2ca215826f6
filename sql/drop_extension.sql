-- DROP EXTENSION billing takes the triggers it put on the app's tables with
-- it: the app keeps writing as if billing had never been there.
\set SHOW_CONTEXT never
CREATE TABLE drop_messages (
    id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
    created_at timestamptz DEFAULT now()
);
CREATE TABLE drop_profiles (id int PRIMARY KEY, data jsonb);
SELECT tracked, backfilled, messages, problems, unpriced_models FROM billing.track_messages('drop_messages');
SELECT * FROM billing.track_profiles('drop_profiles');
SELECT tgrelid::regclass AS app_table, tgname FROM pg_trigger
 WHERE tgrelid IN ('drop_messages'::regclass, 'drop_profiles'::regclass) ORDER BY 1, 2;

-- No CASCADE needed, and nothing of billing is left behind.
DROP EXTENSION billing;
SELECT count(*) AS triggers_left FROM pg_trigger
 WHERE tgrelid IN ('drop_messages'::regclass, 'drop_profiles'::regclass);
SELECT count(*) AS functions_left FROM pg_proc WHERE pronamespace = 'billing'::regnamespace;

-- The app's writes go through.
INSERT INTO drop_messages (conversation_id, role, content, data)
VALUES ('c', 'assistant', 'hi', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}');
UPDATE drop_messages SET data = '{}';
INSERT INTO drop_profiles VALUES (1, '{"emails_sent_this_month": 3}');
UPDATE drop_profiles SET data = '{"emails_sent_this_month": 4}';
TRUNCATE drop_messages;
SELECT (SELECT count(*) FROM drop_messages) AS messages, (SELECT count(*) FROM drop_profiles) AS profiles;

DROP TABLE drop_messages, drop_profiles;
CREATE EXTENSION billing;

-- A connection that drops and re-creates the extension (a migration run
-- through a pool) prices with the new catalog: the cached catalog is keyed
-- on more than the generation, which restarts with the extension.
-- x-model at $1 per 1M input tokens: 1M tokens cost 1.00.
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('x-model', '2020-01-01', 1, 1);
SELECT billing.message_cost('x-model', 1000000, 0) AS first_catalog;
SELECT generation AS generation_before FROM billing.catalog_state \gset
DROP EXTENSION billing;
CREATE EXTENSION billing;
-- Now at $5: 5.00, with the same generation number as before.
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('x-model', '2020-01-01', 5, 5);
SELECT generation = :generation_before AS same_generation_number FROM billing.catalog_state;
SELECT billing.message_cost('x-model', 1000000, 0) AS second_catalog;
DELETE FROM billing.model_prices WHERE model = 'x-model';
