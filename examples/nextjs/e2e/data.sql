-- Known data for the end-to-end test (e2e/billing.e2e.mjs), in a database of
-- its own with CREATE EXTENSION billing. Dated relative to the current month
-- (billing's month is UTC unless billing.settings says otherwise), so the
-- page's current month always has these rows; prices are the test's own, so
-- the figures do not depend on the seeded catalog:
--   e2e-tie   1005 USD per 1M prompt tokens, 0 per 1M completion
--   e2e-fine  0.123456789012 per 1M prompt, 2.5 per 1M completion
-- Conversations this month (cost = prompt x input / 1e6 + completion x output / 1e6):
--   ...0001 "Quarterly report"   e2e-tie  1000 prompt             = 1.005 USD  (page: $1.01, not $1.00)
--   ...0002 "Travel plans"       e2e-fine 7 replies x (1,000,000 prompt, 1,000 completion)
--                                = 7 x (0.123456789012 + 0.0025) = 0.881697523084 USD   (page: $0.88)
--   ...0003 (no row in conversations: "Untitled")  e2e-tie 10 prompt = 0.01005 USD (page: $0.01)
-- OpenAI this month: 1.005 + 0.881697523084 + 0.01005 = 1.896747523084 USD (page: $1.90)
-- AWS this month: 1234 SES e-mails x 0.0001 = 0.1234 USD (page: $0.12)
-- Total: 2.020147523084 (page: $2.02)
-- Earlier months: one e2e-tie reply of 2000 prompt tokens (2.01 USD) in each
-- of the 5 months before, 2 months ago also 10 e-mails (0.001 USD), last
-- month also 500 e-mails of acme (0.05 USD).
-- Customers (public.conversations.user_id, billing.track_customers):
--   acme    ...0001 (and its earlier months), last month's 500 e-mails
--   globex  ...0002, and this month's 1234 e-mails
--   ...0003 has no row: no customer (not listed in the customers table)
-- This month per customer (page: OpenAI, AWS, total):
--   acme    1.005 + 0                                    -> $1.01, $0.00, $1.01
--   globex  0.881697523084 + 0.1234 = 1.005097523084     -> $0.88, $0.12, $1.01
-- Last month's statement, issued (the only customer with usage then): acme,
--   2000 x 1005 / 1e6 = 2.01 (e2e-tie input tokens) + 500 x 0.0001 = 0.05
--   (ses) = 2.06 USD, number <last month as YYYYMM>-000001.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION IF NOT EXISTS billing;

INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m, note)
VALUES ('e2e-tie', '2000-01-01', 1005, 0, 'e2e test'),
       ('e2e-fine', '2000-01-01', 0.123456789012, 2.5, 'e2e test');

CREATE TABLE public.conversations (id uuid PRIMARY KEY, title text NOT NULL, user_id text);
INSERT INTO public.conversations
VALUES ('00000000-0000-0000-0000-000000000001', 'Quarterly report', 'acme'),
       ('00000000-0000-0000-0000-000000000002', 'Travel plans', 'globex');

CREATE TABLE public.messages (
    id              bigserial PRIMARY KEY,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL,
    content         text        NOT NULL,
    data            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON public.messages (created_at);
CREATE TABLE public.profiles (id uuid PRIMARY KEY, type text, data jsonb);

-- This month: 1 hour after its start onwards.
INSERT INTO public.messages (conversation_id, role, content, data, created_at)
SELECT v.c::uuid, v.role, v.content, v.data::jsonb, billing.month_start(billing.month_of(now())) + v.after
  FROM (VALUES
    ('00000000-0000-0000-0000-000000000001', 'user', 'numbers please', NULL, interval '1 hour'),
    ('00000000-0000-0000-0000-000000000001', 'assistant', 'the report',
     '{"model": "e2e-tie", "prompt_tokens": 1000, "completion_tokens": 0}', interval '61 minutes'),
    ('00000000-0000-0000-0000-000000000003', 'assistant', 'short',
     '{"model": "e2e-tie", "prompt_tokens": 10, "completion_tokens": 0}', interval '2 hours')
  ) AS v(c, role, content, data, after);
INSERT INTO public.messages (conversation_id, role, content, data, created_at)
SELECT '00000000-0000-0000-0000-000000000002', 'assistant', 'trip ' || k,
       '{"model": "e2e-fine", "prompt_tokens": 1000000, "completion_tokens": 1000}',
       billing.month_start(billing.month_of(now())) + interval '3 hours' + k * interval '1 minute'
  FROM generate_series(1, 7) AS k;
-- The 5 months before.
INSERT INTO public.messages (conversation_id, role, content, data, created_at)
SELECT '00000000-0000-0000-0000-000000000001', 'assistant', 'older ' || k,
       '{"model": "e2e-tie", "prompt_tokens": 2000, "completion_tokens": 0}',
       billing.month_start(billing.month_of(now())) - k * interval '1 month' + interval '2 days'
  FROM generate_series(1, 5) AS k;

SELECT FROM billing.track_messages('public.messages');
SELECT FROM billing.track_customers('public.messages', 'public.conversations');
SELECT FROM billing.record_customer_usage('globex', 'ses', 1234, billing.month_start(billing.month_of(now())) + interval '1 hour', 'e2e');
SELECT FROM billing.record_customer_usage('acme', 'ses', 500, billing.month_start(billing.month_of(now())) - interval '1 month' + interval '3 days', 'e2e');
SELECT FROM billing.record_usage('ses', 10, billing.month_start(billing.month_of(now())) - interval '2 months' + interval '1 day', 'e2e');
-- A budget of 5 USD for everything: ok now (2.02 spent), crossed by the
-- test's insert (a 1000-prompt e2e-tie reply ... x 4 = 4.02 USD more).
INSERT INTO billing.budgets (name, scope, amount, thresholds) VALUES ('monthly', 'all', 5, '{80,100}');
SELECT billing.merge();
SELECT FROM billing.issue_statements((billing.month_of(now()) - interval '1 month')::date);
