-- Demo data shaped like the app's: a messages table whose `data` holds
-- OpenAI usage, and an owner profile counting SES e-mails. Then the billing
-- page's figures, computed in the database by the billing extension.
\set QUIET on
\pset footer off
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
VALUES (gen_random_uuid(), 'owner', '{"emails_sent_this_month": 25, "last_billing_reset": "2026-11-01T00:00:00Z"}');

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
\set QUIET off

\echo
\echo '== Rows the cost functions cannot read (billing.usage_problem):'
SELECT id, data, billing.usage_problem(data) AS problem
  FROM public.messages WHERE billing.usage_problem(data) IS NOT NULL;

\echo '== This month: OpenAI (each message at the prices of its own time) and AWS SES'
SELECT billing.openai_cost(data, created_at) AS openai_cost,
       sum((data->>'tokens')::bigint) FILTER (WHERE billing.usage_problem(data) IS NULL) AS tokens,
       (SELECT billing.aws_cost('ses', (data->>'emails_sent_this_month')::numeric)
          FROM public.profiles WHERE type = 'owner') AS aws_ses_cost
  FROM public.messages
 WHERE created_at >= date_trunc('month', now()) AND billing.usage_problem(data) IS NULL;

\echo '== Top 5 conversations by cost'
SELECT conversation_id, billing.openai_cost(data, created_at) AS cost,
       count(*) AS messages, sum((data->>'tokens')::bigint) AS tokens
  FROM public.messages
 WHERE billing.usage_problem(data) IS NULL
 GROUP BY conversation_id
 ORDER BY cost DESC NULLS LAST
 LIMIT 5;

\echo '== Last 6 months'
SELECT to_char(date_trunc('month', created_at), 'YYYY-MM') AS month,
       billing.openai_cost(data, created_at) AS openai_cost,
       count(*) AS messages
  FROM public.messages
 WHERE created_at >= date_trunc('month', now()) - interval '5 months'
   AND billing.usage_problem(data) IS NULL
 GROUP BY 1 ORDER BY 1;

\echo '== Where a price comes from: the row that priced a snapshot name'
SELECT * FROM billing.model_price('gpt-4o-mini-2024-07-18');
