-- Tracking an app's messages table: the views equal a recomputation from the
-- table (written here in plain SQL, independently of the C++ code) after
-- every kind of write, merged or not, and after price changes.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

CREATE TABLE messages (
    id bigserial PRIMARY KEY,
    conversation_id text,
    role text,
    content text,
    data jsonb,
    created_at timestamptz DEFAULT now()
);

-- The reference: billing's views recomputed in plain SQL from the table with
-- the documented rules, independently of the extension's code
-- (test/lib/reference.sql, shared with the soak and crash tests; it also
-- checks e-mails counted by track_profiles against public.profile_log, none
-- here). views_match_reference() lists every difference; 'exact' when none.
CREATE TABLE profile_log (delta bigint);
\set ECHO none
\i test/lib/reference.sql
\set ECHO all
RESET client_min_messages;
CREATE FUNCTION views_match_reference() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(format('%s, %s: %s', m.check_name, m.side, m.row_text), E'\n'
                               ORDER BY m.check_name, m.side, m.row_text), 'exact')
      FROM ref.mismatches() AS m
$$;

-- Rows that exist before tracking starts: two conversations in October and November 2026.
-- c1: 2026-10-05 gpt-4o 1000 prompt + 100 completion = 1000 x 2.5/1M + 100 x 10/1M = 0.0025 + 0.001 = 0.0035
--     2026-11-02 gpt-4o-mini-2024-07-18 (priced as gpt-4o-mini) 2000 + 500 = 0.0003 + 0.0003 = 0.0006
-- c2: 2026-11-03 a question (no usage), then a reply of 12 characters without usage:
--     completion 3 tokens; its prompt is the question, 16 characters = 4 tokens;
--     priced as gpt-4o-mini: 4 x 0.15/1M + 3 x 0.6/1M = 0.0000006 + 0.0000018 = 0.0000024
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c1', 'assistant', 'answer one', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 100}', '2026-10-05 10:00'),
  ('c1', 'assistant', 'answer two', '{"model": "gpt-4o-mini-2024-07-18", "prompt_tokens": 2000, "completion_tokens": 500}', '2026-11-02 10:00'),
  ('c2', 'user', 'what is the time', '{}', '2026-11-03 09:00'),
  ('c2', 'assistant', 'twelve chars', '{}', '2026-11-03 09:01');

SELECT tracked, backfilled, messages, problems, unpriced_models FROM billing.track_messages('messages');
SELECT relation, backfilled FROM billing.tracked_tables;

-- November: 0.0006 + 0.0000024 = 0.0006024, October 0.0035.
SELECT month, source, cost, messages, prompt_tokens, completion_tokens, estimated_tokens
  FROM billing.monthly_history ORDER BY month;
SELECT views_match_reference();

-- The dashboard for November 2026.
SELECT jsonb_pretty(billing.dashboard(3, 50, '2026-11-15'));

-- Writes after tracking go through the ledger; the views stay exact before
-- and after billing.merge().
-- c3 in November: cached tokens 400 of 1000, gpt-4o:
--   600 x 2.5/1M + 400 x 1.25/1M + 0 = 0.0015 + 0.0005 = 0.002
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c3', 'assistant', 'cached', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0,
                                   "prompt_tokens_details": {"cached_tokens": 400}}', '2026-11-10');
SELECT count(*) AS ledger_rows FROM billing.usage_ledger;
SELECT views_match_reference();
SELECT (billing.dashboard(3, 50, '2026-11-15')->'openai'->>'cost')::numeric = 0.0026024 AS november_ok;
-- billing.merge_status: the one write waits for the merge, which then takes
-- it in as one rollup (c3, November) and records when it ran.
SELECT unmerged_writes, stale_months, tables_to_take_in FROM billing.merge_status;
BEGIN;
SELECT billing.merge() AS merged;
SELECT last_merge_at = now() AS at_this_merge, last_merge_rollups, unmerged_writes FROM billing.merge_status;
COMMIT;
SELECT count(*) AS ledger_rows FROM billing.usage_ledger;
SELECT views_match_reference();
-- The check can fail: a cent more in one rollup row is seen (then undone).
BEGIN;
UPDATE billing.conversation_usage SET cost = cost + 0.01 WHERE conversation_id = 'c1' AND month = '2026-10-01';
SELECT views_match_reference();
ROLLBACK;

-- A back-dated insert, an update of data, of created_at (moving a message to
-- another month), of conversation_id, and a delete.
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c4', 'assistant', 'old', '{"model": "gpt-4o", "prompt_tokens": 10, "completion_tokens": 10}', '2026-08-20');
UPDATE messages SET data = '{"model": "gpt-4o", "prompt_tokens": 2000, "completion_tokens": 100}'
 WHERE conversation_id = 'c1' AND created_at = '2026-10-05 10:00';
UPDATE messages SET created_at = '2026-09-30 23:59:59' WHERE conversation_id = 'c3';
UPDATE messages SET conversation_id = 'c5' WHERE content = 'answer two';
DELETE FROM messages WHERE conversation_id = 'c4';
SELECT views_match_reference();
SELECT billing.merge() > 0 AS merged;
SELECT views_match_reference();
SELECT month, conversation_id, cost, messages, first_message_at, last_message_at
  FROM billing.conversation_costs ORDER BY month, conversation_id;

-- Deleting the first message of a conversation moves its first_message_at.
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c6', 'assistant', 'a', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '2026-11-20'),
  ('c6', 'assistant', 'b', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', '2026-11-21');
SELECT billing.merge() > 0 AS merged;
DELETE FROM messages WHERE conversation_id = 'c6' AND content = 'a';
SELECT first_message_at FROM billing.conversation_costs WHERE conversation_id = 'c6';
SELECT views_match_reference();
-- An empty reply without usage still has a prompt: its conversation, now
-- only 'b' (1 character: 1 token), no completion, priced as gpt-4o-mini:
-- 1 x 0.15/1M = 0.00000015. With 'b' (1 x 2.5/1M + 1 x 10/1M = 0.0000125)
-- c6 costs 0.00001265, 1 token of it estimated.
INSERT INTO messages (conversation_id, role, content, data, created_at)
VALUES ('c6', 'assistant', '', '{}', '2026-11-22');
SELECT cost, estimated_tokens FROM billing.conversation_costs WHERE conversation_id = 'c6';
SELECT views_match_reference();
-- A reply whose content is NULL is estimated as an empty one: no
-- completion, its conversation ('b' and '': 1 token) as its prompt:
-- 1 x 0.15/1M = 0.00000015 more, 2 estimated tokens in all.
INSERT INTO messages (conversation_id, role, content, data, created_at)
VALUES ('c6', 'assistant', NULL, '{}', '2026-11-23');
SELECT cost, estimated_tokens FROM billing.conversation_costs WHERE conversation_id = 'c6';
SELECT views_match_reference();
SELECT billing.merge() > 0 AS merged;
SELECT first_message_at FROM billing.conversation_costs WHERE conversation_id = 'c6';

-- A price change applies at once to the months it covers (they are read from
-- the source until the next merge rebuilds them), and history before it keeps
-- its prices. gpt-4o from 2026-11-01 at $5/$20.
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, cached_input_per_1m, output_per_1m)
VALUES ('gpt-4o', '2026-11-01', 5.00, 2.50, 20.00);
-- Stale: November (the change's month, which has data) and every month up
-- to the one after today, data or not, so that writes this snapshot cannot
-- see yet are covered too. Computed from the same clock as the marking.
SELECT (SELECT array_agg(month ORDER BY month) FROM billing.stale_months)
     = ARRAY(SELECT DATE '2026-11-01'
             UNION
             SELECT g::date FROM generate_series(TIMESTAMP '2026-11-01', billing.month_of(now()) + interval '1 month',
                                                 interval '1 month') AS g
             ORDER BY 1) AS stale_months_as_documented;
SELECT views_match_reference();
SELECT billing.merge() >= 0 AS merged;
SELECT count(*) AS stale FROM billing.stale_months;
SELECT views_match_reference();
DELETE FROM billing.model_prices WHERE model = 'gpt-4o' AND effective_from = '2026-11-01';
SELECT views_match_reference();

-- Malformed data is written as usual and listed in billing.usage_problems.
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c7', 'assistant', 'bad', '{"model": "gpt-4o", "prompt_tokens": "lots"}', '2026-11-05'),
  ('c7', 'assistant', 'neg', '{"model": "gpt-4o", "prompt_tokens": -5}', '2026-11-05'),
  ('c7', 'assistant', 'unknown', '{"model": "gpt-9", "prompt_tokens": 5, "completion_tokens": 5}', '2026-11-05'),
  ('c7', 'assistant', 'no time', '{"model": "gpt-4o", "prompt_tokens": 5, "completion_tokens": 5}', NULL);
SELECT kind, detail, messages, tokens FROM billing.usage_problems ORDER BY kind, detail;
SELECT (billing.dashboard(3, 50, '2026-11-15')->'openai'->>'unpriced_tokens')::bigint AS unpriced_tokens;

-- TRUNCATE empties the views; untrack_messages removes the trigger and data.
TRUNCATE messages;
SELECT count(*) AS rows_after_truncate FROM billing.conversation_costs;
SELECT billing.untrack_messages('messages');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'messages'::regclass AND NOT tgisinternal;
SELECT count(*) AS tracked FROM billing.tracked_tables;

-- The reference goes too (it depends on billing's objects).
DROP FUNCTION views_match_reference();
SET client_min_messages = warning;
DROP SCHEMA ref CASCADE;
RESET client_min_messages;
DROP TABLE messages, profile_log;
