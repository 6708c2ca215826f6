-- The cost engine: the examples the extension promises, each checked against
-- a value computed by hand in the comment next to it.
SET timezone = 'UTC';

-- 100 prompt x $2.50/1M + 50 completion x $10.00/1M = 0.00025 + 0.0005 = 0.00075
SELECT billing.openai_cost('gpt-4o', 100, 50) AS cost,
       billing.openai_cost('gpt-4o', 100, 50) = 0.00075 AS ok;

-- 1M x $0.15/1M + 1M x $0.60/1M = 0.15 + 0.60 = 0.75
SELECT billing.openai_cost('gpt-4o-mini', 1000000, 1000000) = 0.75 AS ok;

-- Cached: 1M prompt of which 400k cached, gpt-4o:
-- 600k x $2.50/1M + 400k x $1.25/1M = 1.50 + 0.50 = 2.00
SELECT billing.openai_cost('{"model": "gpt-4o", "prompt_tokens": 1000000,
                             "prompt_tokens_details": {"cached_tokens": 400000},
                             "completion_tokens": 0}'::jsonb) AS cost;
-- the same with the top-level cached_tokens the app may store
SELECT billing.openai_cost('{"model": "gpt-4o", "prompt_tokens": 1000000,
                             "cached_tokens": 400000, "completion_tokens": 0}'::jsonb) = 2.00 AS ok;

-- SES: 25 e-mails x $0.10/1000 = 0.0025
SELECT billing.aws_cost('ses', 25) AS cost, billing.aws_cost('ses', 25) = 0.0025 AS ok;
-- S3: 12.5 GB-month x $0.023 = 0.2875; Lambda: 3M requests x $0.20/1M = 0.60
SELECT billing.aws_cost(s, q) = 0.8875 AS ok
  FROM (VALUES ('s3', 12.5), ('lambda', 3000000)) AS v(s, q);

-- Aggregating rows: the seed's two example messages.
-- gpt-4o-mini: 100 x 0.15/1M + 50 x 0.60/1M = 0.000015 + 0.00003 = 0.000045
-- gpt-4o:      100 x 2.50/1M + 50 x 10/1M   = 0.00075
-- total 0.000795
CREATE TABLE messages (id serial, conversation_id int, data jsonb, created_at timestamptz);
INSERT INTO messages (conversation_id, data, created_at) VALUES
  (1, '{"tokens": 150, "prompt_tokens": 100, "completion_tokens": 50, "model": "gpt-4o-mini"}', '2026-11-02'),
  (1, '{"content_only": true}', '2026-11-02'),
  (2, '{"tokens": 150, "prompt_tokens": 100, "completion_tokens": 50, "model": "gpt-4o"}', '2026-11-03');
SELECT billing.openai_cost(data) AS cost, billing.openai_cost(data) = 0.000795 AS ok FROM messages;
SELECT billing.openai_cost(data->>'model', (data->>'prompt_tokens')::bigint,
                           (data->>'completion_tokens')::bigint) = 0.000795 AS ok
  FROM messages;
SELECT conversation_id, billing.openai_cost(data) AS cost
  FROM messages GROUP BY conversation_id ORDER BY conversation_id;

-- message_cost prices one row; a row without usage gives NULL.
SELECT id, billing.message_cost(data) AS cost FROM messages ORDER BY id;
SELECT billing.message_cost('gpt-4o', 100, 50) = 0.00075 AS ok;

-- Effective dates: gpt-4o cost $5/$15 before 2024-10-02, $2.50/$10 after.
-- 1M prompt + 1M completion on 2024-09-01: 5 + 15 = 20; on 2024-11-01: 2.5 + 10 = 12.5
SELECT billing.message_cost('gpt-4o', 1000000, 1000000, '2024-09-01') AS before_cut,
       billing.message_cost('gpt-4o', 1000000, 1000000, '2024-11-01') AS after_cut;
-- A row at exactly effective_from takes the new price.
SELECT billing.message_cost('gpt-4o', 1000000, 0, '2024-10-02 00:00:00+00') = 2.50 AS ok;
-- Each row at its own time: 20 + 12.5 = 32.5
SELECT billing.openai_cost(m, p, c, t) = 32.5 AS ok
  FROM (VALUES ('gpt-4o', 1000000, 1000000, '2024-09-01'::timestamptz),
               ('gpt-4o', 1000000, 1000000, '2024-11-01')) AS v(m, p, c, t);
SELECT billing.openai_cost(d, t) AS cost
  FROM (VALUES ('{"model":"gpt-4o","prompt_tokens":1000000,"completion_tokens":1000000}'::jsonb,
                '2024-09-01'::timestamptz)) AS v(d, t);

-- Name resolution: exact, then without the dated suffix, then normalised.
-- gpt-4o-2024-05-13 has its own row ($5 input) and is priced by it, although
-- gpt-4o itself costs $2.50 today: 1M x 5 = 5.
SELECT billing.message_cost('gpt-4o-2024-05-13', 1000000, 0) = 5 AS own_row,
       billing.message_cost('gpt-4o-mini-2024-07-18', 1000000, 0) = 0.15 AS suffix_stripped,
       billing.message_cost('gpt-4-0613', 1000000, 0) = 30 AS short_suffix_stripped,
       billing.message_cost(' OpenAI/GPT-4o-Mini ', 1000000, 0) = 0.15 AS normalised,
       -- (not a real date: no snapshot, no price)
       billing.message_cost('gpt-4o-2023-02-29', 1000000, 0) IS NULL AS not_a_date;
SELECT model, effective_from, input_per_1m, output_per_1m
  FROM billing.model_price('gpt-4o-mini-2024-07-18', '2026-11-01');
SELECT * FROM billing.resolve_model_price('gpt-4o', '2024-09-01');
SELECT service, unit, unit_price FROM billing.aws_price('ses');

-- Embeddings have only input: 2M x $0.02/1M = 0.04
SELECT billing.openai_cost('{"model": "text-embedding-3-small", "prompt_tokens": 2000000,
                             "total_tokens": 2000000}'::jsonb) = 0.04 AS ok;
-- Responses API names: 1000 input (200 cached) + 500 output of gpt-4.1:
-- 800 x 2/1M + 200 x 0.5/1M + 500 x 8/1M = 0.0016 + 0.0001 + 0.004 = 0.0057
SELECT billing.message_cost('{"model": "gpt-4.1", "input_tokens": 1000, "output_tokens": 500,
                              "input_tokens_details": {"cached_tokens": 200}}'::jsonb) = 0.0057 AS ok;
-- A nested usage object, as some clients store it: same 0.00075 as above.
SELECT billing.message_cost('{"model": "gpt-4o", "usage": {"prompt_tokens": 100,
                              "completion_tokens": 50}}'::jsonb) = 0.00075 AS ok;
-- Beside a total of the app's own, the nested split prices it: 1M prompt +
-- 0.5M completion of gpt-4o = 1M x 2.50/1M + 0.5M x 10/1M = 2.50 + 5.00 =
-- 7.50 (the total alone would leave it unpriced); the aggregate agrees.
SELECT billing.message_cost('{"model": "gpt-4o", "total_tokens": 1500000,
                              "usage": {"prompt_tokens": 1000000, "completion_tokens": 500000}}'::jsonb) AS cost;
SELECT billing.openai_cost(d) AS cost
  FROM (VALUES ('{"model": "gpt-4o", "tokens": 1500000,
                  "usage": {"prompt_tokens": 1000000, "completion_tokens": 500000}}'::jsonb)) AS v(d);

-- usage_cost, the rule of the ledger's rows: a take-back (every count
-- negative) costs minus the row, -0.00075; cached tokens beside no prompt
-- are refused as beside any smaller prompt; the smallest bigint has no
-- negation (out of range, not of the wrong sign).
SELECT billing.usage_cost('gpt-4o', -100, -50, 0, '2026-11-01') AS take_back;
SELECT billing.usage_cost('gpt-4o', 0, 0, 5, '2026-11-01');
SELECT billing.usage_cost('gpt-4o', -9223372036854775808, -1, 0, '2026-11-01');

-- Counts near the bigint limit stay exact:
-- 9223372036854775807 x $2.50/1M = 23058430092136.9394... exactly 23058430092136.9395175
SELECT billing.openai_cost('gpt-4o', 9223372036854775807, 0) AS cost;
-- two such rows: 46116860184273.879035
SELECT billing.openai_cost(m, p, 0) = 46116860184273.879035 AS ok
  FROM (VALUES ('gpt-4o', 9223372036854775807), ('gpt-4o', 9223372036854775807)) AS v(m, p);
SELECT billing.message_cost('{"model":"gpt-4o","prompt_tokens":9223372036854775807,
                              "completion_tokens":9223372036854775807}'::jsonb) AS cost;

-- No rows, or only rows without usage: NULL, like sum().
SELECT billing.openai_cost(data) IS NULL AS is_null FROM messages WHERE false;
SELECT billing.openai_cost(data) IS NULL AS is_null FROM messages WHERE data ? 'content_only';

DROP TABLE messages;
