-- Demo data shaped like the app's: a messages table whose `data` holds
-- OpenAI usage, and an owner profile counting SES e-mails, dated relative to
-- today (the last 6 months). Then the billing page's figures, computed in the
-- database by the billing extension, the dashboard last.
-- Run in a database without the extension: tools/demo.sh runs it in its
-- throwaway cluster, test/scripts/readme_examples.sh in a database of its own
-- to run README's examples in.
\set QUIET on
\pset footer off
CREATE EXTENSION billing;
SET timezone = 'UTC';
SELECT setseed(0.42) AS seed \gset

CREATE TABLE public.messages (
    id              bigserial PRIMARY KEY,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL,
    content         text        NOT NULL,
    data            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON public.messages (created_at);
CREATE INDEX ON public.messages (conversation_id);

CREATE TABLE public.profiles (id uuid PRIMARY KEY, type text, data jsonb);
INSERT INTO public.profiles
VALUES (gen_random_uuid(), 'owner',
        jsonb_build_object('emails_sent_this_month', 25,
                           'last_billing_reset', to_char(date_trunc('month', now()), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')));

-- 40 conversations over the last 6 months, 6 to 20 messages each; replies
-- mostly by gpt-4o-mini (sometimes a dated snapshot), some by gpt-4o.
INSERT INTO public.messages (conversation_id, role, content, data, created_at)
SELECT c.id,
       CASE WHEN n % 2 = 0 THEN 'user' ELSE 'assistant' END,
       CASE WHEN n % 2 = 0 THEN 'question ' || n ELSE 'answer ' || n END,
       CASE WHEN n % 2 = 0 THEN '{}'::jsonb
            ELSE jsonb_build_object(
                   'tokens', p + q, 'prompt_tokens', p, 'completion_tokens', q,
                   'model', CASE WHEN c.k % 5 = 0 THEN 'gpt-4o'
                                 WHEN c.k % 7 = 0 THEN 'gpt-4o-mini-2024-07-18'
                                 ELSE 'gpt-4o-mini' END)
       END,
       c.started + n * interval '3 minutes'
  FROM (SELECT gen_random_uuid() AS id, k,
               date_trunc('hour', now()) - (k * interval '109 hours') AS started,
               6 + (k * 7) % 15 AS len
          FROM generate_series(1, 40) AS k) AS c,
       generate_series(0, c.len - 1) AS n,
       -- (n * 0 ties the random draws to each row, so each message gets its own.)
       LATERAL (SELECT 200 + (random() * 3000 + n * 0)::int AS p, 50 + (random() * 600 + n * 0)::int AS q) AS t;

-- A few rows the app should not have written, which billing must not choke on.
INSERT INTO public.messages (conversation_id, role, content, data)
VALUES (gen_random_uuid(), 'assistant', 'bad count', '{"model": "gpt-4o-mini", "prompt_tokens": "12a"}'),
       (gen_random_uuid(), 'assistant', 'unknown model', '{"model": "gpt-9", "prompt_tokens": 10, "completion_tokens": 5}');


-- Start tracking: existing rows are taken in, later writes followed.
SELECT billing.track_messages('public.messages') \gset
SELECT billing.track_profiles('public.profiles') \gset
-- Writes after tracking: a reply, e-mails sent by the agent, S3 storage.
INSERT INTO public.messages (conversation_id, role, content, data)
SELECT conversation_id, 'assistant', 'one more answer',
       '{"model": "gpt-4o-mini", "prompt_tokens": 1800, "completion_tokens": 240,
         "prompt_tokens_details": {"cached_tokens": 1024}}'
  FROM public.messages ORDER BY created_at DESC LIMIT 1;
-- A reply stored without usage: estimated from its text and its conversation.
INSERT INTO public.messages (conversation_id, role, content, data)
SELECT conversation_id, 'assistant', 'An answer whose usage the agent did not record.', '{"model": "gpt-4o-mini"}'
  FROM public.messages ORDER BY created_at DESC LIMIT 1;
UPDATE public.profiles SET data = jsonb_set(data, '{emails_sent_this_month}', '27');
SELECT billing.record_usage('s3', 2.5, date_trunc('month', now()), 'GB-months stored this month') AS s3_usage_id \gset
\set QUIET off

\echo
\echo '== billing.monthly_history'
SELECT month, source, cost, basis, messages, prompt_tokens + completion_tokens AS tokens, emails, month_total
  FROM billing.monthly_history ORDER BY month DESC, source LIMIT 8;

\echo '== billing.usage_problems: written as usual, kept visible'
SELECT kind, detail, month, messages, tokens FROM billing.usage_problems;

\echo '== Where a price comes from: the row that priced a snapshot name'
SELECT model, effective_from, input_per_1m, cached_input_per_1m, output_per_1m
  FROM billing.model_price('gpt-4o-mini-2024-07-18');

\echo '== SELECT billing.dashboard();   -- the whole /api/billing payload, this month'
\set QUIET on
\pset format unaligned
\pset tuples_only on
\set QUIET off
SELECT jsonb_pretty(billing.dashboard());
