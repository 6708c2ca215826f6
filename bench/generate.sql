-- Benchmark data shaped like the app's: public.messages (chat messages whose
-- `data` carries the OpenAI usage of assistant replies), public.profiles (one
-- owner profile counting SES e-mails) and public.messages_bad (the few rows
-- the app should never have written).
--
--   psql -v messages=1000000 [-v per_conversation=100] -f bench/generate.sql
--
-- Shape, for :messages = M (default 1,000,000):
-- * M messages in M/100 conversations (100,000 conversations for 10M); the
--   conversation sizes vary (exponential-ish, about 10 to 1,000 messages,
--   100 on average) and add up to exactly M (:per_conversation = P makes it
--   M/P conversations of P messages on average, from about P/10 to 10P);
-- * every conversation lives 1 to 5 days somewhere in the 12 months ending
--   now, its messages alternating user / assistant;
-- * user messages: data = '{}';
-- * assistant replies: {"tokens": p+c, "prompt_tokens": p,
--   "completion_tokens": c, "model": m}, the model fixed per conversation:
--   gpt-4o-mini 60%, gpt-4o-mini-2024-07-18 12%, gpt-4o 15%,
--   gpt-4o-2024-08-06 8%, gpt-4o-2024-05-13 5%; prompts grow with the
--   conversation; ~10% also carry prompt_tokens_details.cached_tokens;
-- * ~0.5% of assistant replies carry no usage ({"model": m} only), and about
--   five name an unknown model "gpt-9" (the cost aggregates leave them out of
--   the total with a warning; no error);
-- * rows on which billing.openai_cost(jsonb) raises an error (a string token
--   count, a negative one) are NOT in messages: they are in messages_bad, so
--   that the cost comparisons can run on the whole table. The benchmark
--   checks that billing.usage_problem() flags every one of them.
--
-- Deterministic: setseed() fixes every random draw, and rows are inserted in
-- a total order, so the same M gives the same rows (times are relative to
-- now()). Set-based (generate_series, one INSERT ... SELECT): 10M rows take
-- a few minutes. The tables are created and filled in one transaction, which
-- skips WAL on a cluster with wal_level = minimal (bench/run.sh sets that).

\set ON_ERROR_STOP on
\if :{?messages}
\else
\set messages 1000000
\endif
\if :{?per_conversation}
\else
\set per_conversation 100
\endif

SET client_min_messages = warning;
SET timezone = 'UTC';
-- Room for the sort below (times x conversation order, narrow tuples).
SET work_mem = '256MB';
SET maintenance_work_mem = '1GB';

SELECT setseed(0.2025) AS seed \gset

BEGIN;

DROP TABLE IF EXISTS public.messages, public.messages_bad, public.profiles;

CREATE TABLE public.messages (
    id              bigserial   PRIMARY KEY,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content         text        NOT NULL,
    data            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.profiles (
    id   uuid PRIMARY KEY,
    type text,
    data jsonb
);

-- A deterministic version-4-looking uuid from a text key.
CREATE FUNCTION pg_temp.bench_uuid(key text) RETURNS uuid
LANGUAGE sql IMMUTABLE
AS $$ SELECT overlay(overlay(md5(key) PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid $$;

-- Conversations: id, model, start, lifespan and the slice [first_msg,
-- last_msg) of 0..M-1 they own. The slices are cut from the cumulated random
-- weights so that they cover exactly M messages.
CREATE TEMP TABLE bench_conversations AS
WITH drawn AS (
    SELECT k,
           -- weight: 0.1 + 0.9 * Exp(1), mean 1
           0.1 + 0.9 * -ln(1.0 - random()) AS weight,
           random() AS model_draw,
           interval '1 day' + random() * interval '4 days' AS lifespan,
           random() AS start_draw
      FROM generate_series(1, greatest(1, :messages / :per_conversation)) AS k
), cut AS (
    SELECT *,
           CASE WHEN k = greatest(1, :messages / :per_conversation) THEN :messages::bigint
                ELSE floor(sum(weight) OVER (ORDER BY k) * :messages / sum(weight) OVER ())::bigint
           END AS last_msg
      FROM drawn
)
SELECT k,
       pg_temp.bench_uuid('conversation ' || k) AS id,
       CASE WHEN model_draw < 0.60 THEN 'gpt-4o-mini'
            WHEN model_draw < 0.72 THEN 'gpt-4o-mini-2024-07-18'
            WHEN model_draw < 0.87 THEN 'gpt-4o'
            WHEN model_draw < 0.95 THEN 'gpt-4o-2024-08-06'
            ELSE 'gpt-4o-2024-05-13'
       END AS model,
       now() - interval '365 days' + start_draw * (interval '365 days' - lifespan) AS started,
       lifespan,
       coalesce(lag(last_msg) OVER (ORDER BY k), 0) AS first_msg,
       last_msg
  FROM cut;

-- Text to cut message contents from: 8 kB of hex "words". Kept small because
-- substr() on text walks characters from the start of the string.
CREATE TEMP TABLE bench_text AS
SELECT string_agg(substr(md5(i::text), 1, 3 + i % 9), ' ' ORDER BY i) AS block
  FROM generate_series(1, 1200) AS i;

-- The messages, inserted in time order (so id grows with created_at, as in
-- the app). The inner query draws only what the sort needs; contents and
-- usage are drawn after the sort, in its (total) order.
INSERT INTO public.messages (conversation_id, role, content, data, created_at)
SELECT m.conversation_id,
       CASE WHEN m.assistant THEN 'assistant' ELSE 'user' END,
       substr(t.block, 1 + floor(random() * 6000)::int,
              CASE WHEN m.assistant THEN 100 + floor(random() * 1400)::int
                   ELSE 20 + floor(random() * 380)::int END),
       CASE
           WHEN NOT m.assistant THEN '{}'::jsonb
           ELSE (SELECT CASE
                     WHEN u.draw < 0.005 THEN jsonb_build_object('model', m.model)
                     ELSE jsonb_build_object(
                              'tokens', u.p + u.c,
                              'prompt_tokens', u.p,
                              'completion_tokens', u.c,
                              'model', CASE WHEN u.draw < 0.005 + 10.0 / :messages THEN 'gpt-9'
                                            ELSE m.model END)
                          || CASE WHEN u.cached_draw < 0.10
                                  THEN jsonb_build_object('prompt_tokens_details', jsonb_build_object(
                                           'cached_tokens',
                                           128 * greatest(1, floor(u.p * (0.3 + 0.6 * random()) / 128)::bigint)))
                                  ELSE '{}'::jsonb END
                     END
                   FROM (SELECT m.draw AS draw,
                                -- context grows with the conversation, up to 80 turns back
                                200 + floor(random() * 1500)::bigint + 100 * least(m.seq, 80) AS p,
                                20 + floor(random() ^ 2 * 1200)::bigint AS c,
                                random() AS cached_draw) AS u)
       END,
       m.created_at
  FROM (SELECT c.id AS conversation_id, c.k, s.seq, c.model,
               s.seq % 2 = 1 AS assistant,
               c.started + c.lifespan * ((s.seq + 0.9 * random()) / (c.last_msg - c.first_msg)) AS created_at,
               random() AS draw
          FROM bench_conversations AS c,
               generate_series(0, c.last_msg - c.first_msg - 1) AS s(seq)
         ORDER BY created_at, c.k, s.seq) AS m,
       bench_text AS t
 ORDER BY m.created_at, m.k, m.seq;

-- The rows billing.openai_cost(jsonb) rejects with an error.
CREATE TABLE public.messages_bad (LIKE public.messages INCLUDING ALL);
INSERT INTO public.messages_bad (conversation_id, role, content, data, created_at)
VALUES
    (pg_temp.bench_uuid('bad 1'), 'assistant', 'token count as a string',
     '{"tokens": 1250, "prompt_tokens": "1200", "completion_tokens": 50, "model": "gpt-4o-mini"}',
     now() - interval '40 days'),
    (pg_temp.bench_uuid('bad 2'), 'assistant', 'negative token count',
     '{"tokens": 995, "prompt_tokens": 1000, "completion_tokens": -5, "model": "gpt-4o"}',
     now() - interval '20 days'),
    (pg_temp.bench_uuid('bad 3'), 'assistant', 'token count as a non-numeric string',
     '{"tokens": 0, "prompt_tokens": "n/a", "completion_tokens": 0, "model": "gpt-4o-mini"}',
     now() - interval '3 days');

INSERT INTO public.profiles (id, type, data)
VALUES (pg_temp.bench_uuid('owner'), 'owner',
        jsonb_build_object('emails_sent_this_month', floor(random() * 5000)::int));

CREATE INDEX messages_created_at_idx ON public.messages (created_at);
CREATE INDEX messages_conversation_id_idx ON public.messages (conversation_id);

COMMIT;

VACUUM ANALYZE public.messages;
VACUUM ANALYZE public.messages_bad;
VACUUM ANALYZE public.profiles;
