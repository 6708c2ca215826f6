-- The rest of the bad-input catalogue (README "Bad input"): odd JSON, absurd
-- times, wrong argument types, text PostgreSQL itself refuses; and every
-- kind of bad row written to a tracked table, which must never fail.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

-- Empty and deeply nested JSON: no usage, no error.
SELECT billing.message_cost('{}'::jsonb) IS NULL AS empty_object,
       billing.usage_problem('{}'::jsonb) IS NULL AS no_problem;
SELECT billing.message_cost(d) IS NULL AS deeply_nested, billing.usage_problem(d) AS problem
  FROM (SELECT (repeat('{"usage": ', 500) || '{}' || repeat('}', 500))::jsonb AS d) AS x;
SELECT billing.message_cost(('{"model": "gpt-4o", "prompt_tokens_details": ' || repeat('{"a": ', 300) || '1'
                             || repeat('}', 300) || ', "prompt_tokens": 100, "completion_tokens": 50}')::jsonb)
       = 0.00075 AS nested_details_ignored;
-- Absurd times: each row priced at the prices of its time; infinity is the
-- latest price, -infinity has none.
SELECT billing.message_cost('gpt-4o', 100, 50, 'infinity') = 0.00075 AS at_infinity,
       billing.message_cost('gpt-4o', 100, 50, '294276-12-31 23:59:59+00') = 0.00075 AS far_future;
SELECT billing.message_cost('gpt-4o', 100, 50, '-infinity') IS NULL AS at_minus_infinity;
SELECT billing.month_of('infinity') AS month_of_infinity;
-- Wrong argument types are refused by PostgreSQL's function resolution.
SELECT billing.openai_cost(123, 'a', 'b');
SELECT billing.openai_cost('gpt-4o', 1.5, 2);
SELECT billing.record_usage('ses', 'many');
SELECT billing.openai_cost('not json'::jsonb);
-- Invalid UTF-8 never reaches the C++ code: PostgreSQL rejects it first.
SELECT billing.message_cost(convert_from('\x6770742dff'::bytea, 'UTF8'), 1, 1);
-- A client whose encoding lacks a character a WARNING would quote (an
-- emoji in a model name, a euro sign in a token count): PostgreSQL fails
-- a query whose message it cannot convert, so billing writes such
-- characters as \uXXXX for that client (\u00E9 too: é is in LATIN1, but
-- every character past ASCII is written so), and the query answers:
-- {"model": "gpt😀", "prompt_tokens": "1€"} is invalid usage, no priced
-- row (NULL); {"model": "gpt😀", ...} and {"model": "gpt é", ...} have no
-- price (NULL); with unknown_model = 'error', the error reads alike.
SET client_encoding = 'LATIN1';
SELECT billing.openai_cost(convert_from('\x7b226d6f64656c223a22677074f09f9880222c2270726f6d70745f746f6b656e73223a2231e282ac227d'::bytea, 'UTF8')::jsonb);
SELECT billing.message_cost(convert_from('\x7b226d6f64656c223a22677074f09f9880222c2270726f6d70745f746f6b656e73223a3130302c22636f6d706c6574696f6e5f746f6b656e73223a317d'::bytea, 'UTF8')::jsonb);
SELECT billing.message_cost(convert_from('\x7b226d6f64656c223a2267707420c3a9222c2270726f6d70745f746f6b656e73223a3130302c22636f6d706c6574696f6e5f746f6b656e73223a317d'::bytea, 'UTF8')::jsonb);
SET billing.unknown_model = 'error';
SELECT billing.message_cost(convert_from('\x7b226d6f64656c223a22677074f09f9880222c2270726f6d70745f746f6b656e73223a3130302c22636f6d706c6574696f6e5f746f6b656e73223a317d'::bytea, 'UTF8')::jsonb);
RESET billing.unknown_model;
RESET client_encoding;

-- A tracked table takes every kind of bad row as usual.
CREATE TABLE odd_messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text,
                           data jsonb, created_at timestamptz);
SELECT tracked, backfilled, messages, problems, unpriced_models FROM billing.track_messages('odd_messages');
INSERT INTO odd_messages (conversation_id, role, content, data, created_at) VALUES
  (NULL, 'assistant', 'no conversation', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-02'),
  ('c', NULL, NULL, NULL, '2026-11-02'),
  ('c', 'assistant', NULL, '{}', '2026-11-02'),
  ('c', 'assistant', 'array', '[1, 2, 3]', '2026-11-02'),
  ('c', 'assistant', 'string', '"text"', '2026-11-02'),
  ('c', 'assistant', 'float', '{"model": "gpt-4o", "prompt_tokens": 1.5}', '2026-11-02'),
  ('c', 'assistant', 'huge', '{"model": "gpt-4o", "prompt_tokens": 1e40}', '2026-11-02'),
  ('c', 'assistant', 'cached', '{"model": "gpt-4o", "prompt_tokens": 1, "cached_tokens": 5}', '2026-11-02'),
  ('c', 'assistant', 'long model', jsonb_build_object('model', repeat('m', 10000), 'prompt_tokens', 1, 'completion_tokens', 1), '2026-11-02'),
  ('c', 'assistant', 'total only', '{"model": "gpt-4o", "tokens": 150}', '2026-11-02'),
  ('c', 'assistant', 'infinite time', '{"model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}', 'infinity'),
  ('c', 'assistant', 'nested', (repeat('{"usage": ', 200) || '{}' || repeat('}', 200))::jsonb, '2026-11-02');
SELECT count(*) AS rows_written FROM odd_messages;
SELECT kind, detail, messages, tokens FROM billing.usage_problems ORDER BY kind, detail, tokens;
-- The one good row (100 x 2.5/1M + 50 x 10/1M = 0.00075) is counted under a NULL conversation.
SELECT conversation_id, cost, messages FROM billing.conversation_costs ORDER BY conversation_id NULLS FIRST;
SELECT billing.merge() >= 0 AS merged;
SELECT conversation_id, cost, messages FROM billing.conversation_costs ORDER BY conversation_id NULLS FIRST;
SELECT billing.untrack_messages('odd_messages');
DROP TABLE odd_messages;
