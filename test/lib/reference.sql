-- Plain-SQL reference recomputation of billing's tracked views: the tests'
-- one independent reference, used by sql/tracking.sql (pg_regress) and by
-- test/scripts/soak.sh and test/scripts/crash.sh (not a test by itself).
--
-- Load it with psql into a database that has CREATE EXTENSION billing, a
-- tracked table public.messages (id, conversation_id, role, content, data,
-- created_at) and the fixture tables public.profiles / public.profile_log of
-- those scripts. It creates schema `ref`; the entry point is
--
--     BEGIN ISOLATION LEVEL REPEATABLE READ;
--     SELECT * FROM ref.mismatches();   -- no row: every view is exact
--     COMMIT;
--
-- All reads of one call share one snapshot, so the views and the source
-- tables are compared at the same instant, even while writers run.
--
-- The rules are the documented ones (README "Estimated usage", "Usage JSON",
-- "The price catalog", "AWS usage"), written independently of the
-- extension's SQL and C++. The only extension-side state it reads besides the price
-- tables and settings is billing.estimated_prompts: the prompt estimate of a
-- reply stored without usage is, by design, taken once when the reply is
-- stored ("editing an earlier message later does not change what the reply
-- cost"), so it cannot be recomputed from the table afterwards. Its key set
-- is checked instead (one row per estimated reply, no other row).
--
-- Usage shapes covered: prompt_tokens / completion_tokens /
-- prompt_tokens_details.cached_tokens, a bare `tokens` total, replies
-- without usage, and data that billing.usage_problem() rejects. Model names
-- must already be normalised (lower case, no provider prefix): only the
-- exact name and the name without a dated suffix are tried.

SET client_min_messages = warning;
DROP SCHEMA IF EXISTS ref CASCADE;
CREATE SCHEMA ref;

-- The model_prices row pricing a name at a time (candidates 1 and 2 of README
-- "How model names resolve").
-- (SETOF, so that the planner inlines it into the per-message query.)
CREATE FUNCTION ref.price(m text, at timestamptz) RETURNS SETOF billing.model_prices
LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT p.*
      FROM (VALUES (1, m), (2, regexp_replace(m, '-([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4})$', ''))) AS c(rank, name)
      CROSS JOIN LATERAL (SELECT * FROM billing.model_prices AS p
                           WHERE p.model = c.name AND p.effective_from <= at
                           ORDER BY p.effective_from DESC LIMIT 1) AS p
     ORDER BY c.rank LIMIT 1
$$;

-- USD per unit of an AWS service at a time; NULL when unpriced.
CREATE FUNCTION ref.aws_unit_price(s text, at timestamptz) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT p.unit_price FROM billing.aws_prices AS p
          WHERE p.service = s AND p.effective_from <= at ORDER BY p.effective_from DESC LIMIT 1),
        (SELECT p.unit_price FROM billing.aws_prices AS p
          WHERE p.service = lower(btrim(s)) AND p.effective_from <= at ORDER BY p.effective_from DESC LIMIT 1))
$$;

CREATE FUNCTION ref.source_id() RETURNS smallint LANGUAGE sql STABLE AS $$
    SELECT id FROM billing.tracked_tables WHERE relation = 'public.messages'::regclass
$$;

-- What each message contributes.
CREATE VIEW ref.messages AS
WITH m AS (
    SELECT m.*,
           CASE WHEN m.created_at IS NOT NULL AND isfinite(m.created_at)
                THEN date_trunc('month', m.created_at AT TIME ZONE 'UTC')::date END AS month,
           billing.usage_problem(m.data) AS problem,
           CASE WHEN jsonb_typeof(m.data->'model') = 'string' THEN m.data->>'model' END AS model
      FROM public.messages AS m
), u AS (
    SELECT m.*,
           m.problem IS NULL AND (m.data ? 'prompt_tokens' OR m.data ? 'completion_tokens') AS split,
           -- (a reply with NULL content is estimated like an empty one:
           -- no completion, its conversation as the prompt)
           m.problem IS NULL AND m.role = 'assistant'
             AND NOT coalesce(m.data ?| ARRAY['prompt_tokens', 'completion_tokens', 'tokens', 'total_tokens',
                                               'input_tokens', 'output_tokens', 'usage'], false) AS estimated
      FROM m
)
SELECT u.id, u.conversation_id, u.role, u.content, u.data, u.created_at, u.month, u.problem, u.model,
       u.estimated,
       CASE WHEN u.split AND jsonb_typeof(u.data->'prompt_tokens') = 'number'
            THEN (u.data->>'prompt_tokens')::numeric::bigint ELSE 0 END AS p,
       CASE WHEN u.split AND jsonb_typeof(u.data->'completion_tokens') = 'number'
            THEN (u.data->>'completion_tokens')::numeric::bigint ELSE 0 END AS c,
       CASE WHEN u.split AND jsonb_typeof(u.data->'prompt_tokens_details'->'cached_tokens') = 'number'
            THEN (u.data->'prompt_tokens_details'->>'cached_tokens')::numeric::bigint ELSE 0 END AS k,
       CASE WHEN u.problem IS NULL AND NOT u.split AND jsonb_typeof(u.data->'tokens') = 'number'
            THEN (u.data->>'tokens')::numeric::bigint ELSE 0 END AS unsplit,
       CASE WHEN u.estimated THEN coalesce(ceil(char_length(u.content) / 4.0)::bigint, 0) ELSE 0 END AS ec,
       -- Taken when the reply was stored (see the header). An empty reply
       -- still had its history sent as the prompt; should billing keep no
       -- estimate for it, the check of the estimated_prompts keys reports it
       -- and the costs use the estimate the reply would have now.
       CASE WHEN u.estimated
            THEN coalesce(e.prompt_tokens,
                          CASE WHEN coalesce(char_length(u.content), 0) = 0 THEN
                              (SELECT sum(ceil(char_length(h.content) / 4.0))::bigint FROM public.messages AS h
                                WHERE h.conversation_id = u.conversation_id
                                  AND (h.created_at, h.id) < (u.created_at, u.id)) END,
                          0)
            ELSE 0 END AS ep
  FROM u
  LEFT JOIN billing.estimated_prompts AS e
         ON e.source_id = (SELECT t.id FROM billing.tracked_tables AS t WHERE t.relation = 'public.messages'::regclass)
        AND e.message_id = u.id::text;

-- Their cost, priced with the catalog of the caller's snapshot.
CREATE VIEW ref.costs AS
SELECT r.*,
       CASE WHEN r.p = 0 AND r.c = 0 THEN 0
            ELSE ((r.p - r.k) * pr.input_per_1m + r.k * coalesce(pr.cached_input_per_1m, pr.input_per_1m)
                  + r.c * pr.output_per_1m) / 1000000 END AS cost,
       CASE WHEN r.ep = 0 AND r.ec = 0 THEN 0
            ELSE (r.ep * pe.input_per_1m + r.ec * pe.output_per_1m) / 1000000 END AS est_cost
  FROM ref.messages AS r
  LEFT JOIN LATERAL ref.price(r.model, r.created_at) AS pr ON r.p <> 0 OR r.c <> 0
  LEFT JOIN LATERAL ref.price(coalesce(r.model, (SELECT value FROM billing.settings WHERE name = 'estimate_model')),
                              r.created_at) AS pe ON r.ep <> 0 OR r.ec <> 0;

CREATE VIEW ref.priced_now AS
SELECT c.*, coalesce(c.cost, 0) + coalesce(c.est_cost, 0) AS total_cost,
       CASE WHEN c.cost IS NULL THEN c.p + c.c ELSE 0 END
       + CASE WHEN c.est_cost IS NULL THEN c.ep + c.ec ELSE 0 END + c.unsplit AS unpriced
  FROM ref.costs AS c;

-- ref.priced_now computed once per check (ref.mismatches() refills it in the
-- caller's snapshot); everything below reads this copy.
CREATE TABLE ref.priced AS SELECT * FROM ref.priced_now WITH NO DATA;

-- billing.conversation_costs, recomputed.
CREATE VIEW ref.conversations AS
SELECT month, conversation_id, sum(total_cost) AS cost, sum(p + c + ep + ec)::bigint AS tokens,
       sum(p)::bigint AS prompt_tokens, sum(c)::bigint AS completion_tokens, sum(k)::bigint AS cached_tokens,
       sum(ep + ec)::bigint AS estimated_tokens, sum(unpriced)::bigint AS unpriced_tokens,
       count(*)::bigint AS messages, min(created_at) AS first_message_at, max(created_at) AS last_message_at
  FROM ref.priced WHERE month IS NOT NULL GROUP BY month, conversation_id;

-- The openai rows of billing.monthly_history, recomputed.
CREATE VIEW ref.openai_months AS
SELECT month, sum(total_cost) AS cost,
       CASE WHEN sum(ep + ec) > 0 THEN 'partly estimated' ELSE 'actual usage' END AS basis,
       count(*)::bigint AS messages, sum(p)::bigint AS prompt_tokens, sum(c)::bigint AS completion_tokens,
       sum(k)::bigint AS cached_tokens, sum(ep + ec)::bigint AS estimated_tokens,
       sum(unpriced)::bigint AS unpriced_tokens
  FROM ref.priced WHERE month IS NOT NULL GROUP BY month;

-- AWS per month and service: recorded usage priced by effective date (no
-- cost, NULL, for a service none of whose usage has a price), replaced by
-- billing.aws_actuals where a month has them.
CREATE VIEW ref.aws_services AS
WITH est AS (
    SELECT date_trunc('month', u.at AT TIME ZONE 'UTC')::date AS month, u.service,
           sum(u.quantity) AS quantity,
           CASE WHEN sum(u.quantity) <> 0
                     AND sum(u.quantity) FILTER (WHERE ref.aws_unit_price(u.service, u.at) IS NULL) = sum(u.quantity)
                THEN NULL
                ELSE coalesce(sum(u.quantity * ref.aws_unit_price(u.service, u.at)), 0) END AS cost
      FROM billing.aws_usage AS u GROUP BY 1, 2
)
SELECT coalesce(e.month, a.month) AS month, coalesce(e.service, a.service) AS service,
       coalesce(e.quantity, 0) AS quantity, coalesce(a.cost, e.cost) AS cost,
       CASE WHEN a.cost IS NULL THEN 'estimate' ELSE 'actual' END AS basis
  FROM est AS e FULL JOIN billing.aws_actuals AS a ON a.month = e.month AND a.service = e.service;

CREATE VIEW ref.aws_months AS
SELECT month, coalesce(sum(cost), 0) AS cost,   -- (a month of unpriced services alone costs 0)
       CASE WHEN bool_and(basis = 'actual') THEN 'actual'
            WHEN bool_or(basis = 'actual') THEN 'mixed' ELSE 'estimate' END AS basis,
       coalesce(sum(quantity) FILTER (WHERE service = 'ses'), 0) AS emails
  FROM ref.aws_services GROUP BY month;

CREATE VIEW ref.month_totals AS
SELECT month, sum(cost) AS month_total
  FROM (SELECT month, cost FROM ref.openai_months UNION ALL SELECT month, cost FROM ref.aws_months) AS x
 GROUP BY month;

-- A dashboard period [p_from, p_to): OpenAI and AWS totals and the top conversations.
CREATE FUNCTION ref.period_openai(p_from timestamptz, p_to timestamptz,
    OUT cost numeric, OUT tokens bigint, OUT messages bigint, OUT estimated_tokens bigint,
    OUT unpriced_tokens bigint, OUT cached_tokens bigint)
LANGUAGE sql STABLE AS $$
    -- tokens: reported, estimated and total-only (README "The dashboard payload")
    SELECT coalesce(sum(total_cost), 0), coalesce(sum(p + c + ep + ec + unsplit), 0)::bigint, count(*)::bigint,
           coalesce(sum(ep + ec), 0)::bigint, coalesce(sum(unpriced), 0)::bigint, coalesce(sum(k), 0)::bigint
      FROM ref.priced WHERE created_at >= p_from AND created_at < p_to
$$;

CREATE FUNCTION ref.period_aws(p_from timestamptz, p_to timestamptz) RETURNS numeric
LANGUAGE sql STABLE AS $$
    -- usage with p_from <= at < p_to; actuals of the months that start in the period
    WITH est AS (
        SELECT date_trunc('month', u.at AT TIME ZONE 'UTC')::date AS month, u.service,
               coalesce(sum(u.quantity * ref.aws_unit_price(u.service, u.at)), 0) AS cost
          FROM billing.aws_usage AS u WHERE u.at >= p_from AND u.at < p_to GROUP BY 1, 2
    ), act AS (
        SELECT a.month, a.service, a.cost FROM billing.aws_actuals AS a
         WHERE (a.month::timestamp AT TIME ZONE 'UTC') >= p_from AND (a.month::timestamp AT TIME ZONE 'UTC') < p_to
    )
    SELECT coalesce(sum(coalesce(a.cost, e.cost)), 0)
      FROM est AS e FULL JOIN act AS a ON a.month = e.month AND a.service = e.service
$$;

CREATE FUNCTION ref.period_top(p_from timestamptz, p_to timestamptz, n integer)
RETURNS TABLE (rank bigint, conversation_id text, cost numeric, tokens bigint, messages bigint)
LANGUAGE sql STABLE AS $$
    SELECT row_number() OVER (ORDER BY t.cost DESC, t.conversation_id), t.*
      FROM (SELECT conversation_id, sum(total_cost) AS cost, sum(p + c + ep + ec)::bigint AS tokens, count(*)::bigint AS messages
              FROM ref.priced WHERE created_at >= p_from AND created_at < p_to
             GROUP BY conversation_id
             ORDER BY 2 DESC, 1 LIMIT n) AS t
$$;

-- Every difference between a dashboard payload and the reference.
CREATE FUNCTION ref.dashboard_mismatches(label text, d jsonb, p_from timestamptz, p_to timestamptz,
                                         n integer, months integer)
RETURNS TABLE (check_name text, side text, row_text text)
LANGUAGE sql STABLE AS $$
    WITH o AS (SELECT * FROM ref.period_openai(p_from, p_to)),
    got_cards AS (
        SELECT 'openai.cost' AS k, (d->'openai'->>'cost')::numeric AS v
        UNION ALL SELECT 'openai.tokens', (d->'openai'->>'tokens')::numeric
        UNION ALL SELECT 'openai.messages', (d->'openai'->>'messages')::numeric
        UNION ALL SELECT 'openai.estimated_tokens', (d->'openai'->>'estimated_tokens')::numeric
        UNION ALL SELECT 'openai.unpriced_tokens', (d->'openai'->>'unpriced_tokens')::numeric
        UNION ALL SELECT 'openai.cached_tokens', (d->'openai'->>'cached_tokens')::numeric
        UNION ALL SELECT 'aws.cost', (d->'aws'->>'cost')::numeric
        UNION ALL SELECT 'total_cost', (d->>'total_cost')::numeric
    ), ref_cards AS (
        SELECT 'openai.cost' AS k, o.cost AS v FROM o
        UNION ALL SELECT 'openai.tokens', o.tokens FROM o
        UNION ALL SELECT 'openai.messages', o.messages FROM o
        UNION ALL SELECT 'openai.estimated_tokens', o.estimated_tokens FROM o
        UNION ALL SELECT 'openai.unpriced_tokens', o.unpriced_tokens FROM o
        UNION ALL SELECT 'openai.cached_tokens', o.cached_tokens FROM o
        UNION ALL SELECT 'aws.cost', ref.period_aws(p_from, p_to)
        UNION ALL SELECT 'total_cost', o.cost + ref.period_aws(p_from, p_to) FROM o
    ), got_top AS (
        SELECT e.i AS rank, e.v->>'conversation_id' AS conversation_id, (e.v->>'cost')::numeric AS cost,
               (e.v->>'tokens')::bigint AS tokens, (e.v->>'messages')::bigint AS messages
          FROM jsonb_array_elements(d->'conversations') WITH ORDINALITY AS e(v, i)
    ), ref_top AS (
        SELECT * FROM ref.period_top(p_from, p_to, n)
    ), ref_all AS (
        SELECT conversation_id, sum(total_cost) AS cost, sum(p + c + ep + ec)::bigint AS tokens, count(*)::bigint AS messages
          FROM ref.priced WHERE created_at >= p_from AND created_at < p_to GROUP BY conversation_id
    ), strict_ties AS (
        SELECT coalesce(current_setting('ref.strict_ties', true), '') <> 'off' AS on
    ), last_month AS (
        SELECT date_trunc('month', (p_to - interval '1 microsecond') AT TIME ZONE 'UTC')::date AS m
    ), got_hist AS (
        SELECT h->>'month' AS month, (h->>'openai')::numeric AS openai, (h->>'aws')::numeric AS aws,
               (h->>'total')::numeric AS total
          FROM jsonb_array_elements(d->'history') AS h
    ), ref_hist AS (
        SELECT to_char(g.m, 'YYYY-MM') AS month,
               coalesce((SELECT o.cost FROM ref.openai_months AS o WHERE o.month = g.m), 0) AS openai,
               coalesce((SELECT a.cost FROM ref.aws_months AS a WHERE a.month = g.m), 0) AS aws,
               coalesce((SELECT t.month_total FROM ref.month_totals AS t WHERE t.month = g.m), 0) AS total
          FROM last_month AS l,
               generate_series(l.m - (months - 1) * interval '1 month', l.m, interval '1 month') AS g(m)
    )
    SELECT label || ' card', s, r FROM (
        SELECT 'expected' AS s, x::text AS r FROM (SELECT * FROM ref_cards EXCEPT SELECT * FROM got_cards) AS x
        UNION ALL
        SELECT 'got', x::text FROM (SELECT * FROM got_cards EXCEPT SELECT * FROM ref_cards) AS x) AS y
    UNION ALL
    -- The top list: the same costs at each rank, and each listed
    -- conversation's figures right.
    SELECT label || ' conversations', s, r FROM (
        SELECT 'expected' AS s, x::text AS r
          FROM (SELECT rank, cost FROM ref_top EXCEPT SELECT rank, cost FROM got_top) AS x
        UNION ALL
        SELECT 'got', x::text FROM (SELECT rank, cost FROM got_top EXCEPT SELECT rank, cost FROM ref_top) AS x
        UNION ALL
        SELECT 'got', x::text
          FROM (SELECT conversation_id, cost, tokens, messages FROM got_top EXCEPT SELECT * FROM ref_all) AS x) AS y
    UNION ALL
    -- Ties on cost ordered by conversation_id, as the payload is ordered
    -- (SET ref.strict_ties = off to leave this out).
    SELECT label || ' conversations, ties by conversation_id', s, r FROM (
        SELECT 'expected' AS s, x::text AS r FROM (SELECT * FROM ref_top EXCEPT SELECT * FROM got_top) AS x
        UNION ALL
        SELECT 'got', x::text FROM (SELECT * FROM got_top EXCEPT SELECT * FROM ref_top) AS x) AS y
     WHERE (SELECT strict_ties.on FROM strict_ties)
    UNION ALL
    SELECT label || ' history', s, r FROM (
        SELECT 'expected' AS s, x::text AS r FROM (SELECT * FROM ref_hist EXCEPT SELECT * FROM got_hist) AS x
        UNION ALL
        SELECT 'got', x::text FROM (SELECT * FROM got_hist EXCEPT SELECT * FROM ref_hist) AS x) AS y
$$;

-- What each budget (but model budgets: the reference does not resolve
-- names) has spent in the UTC month p_month, recomputed.
CREATE FUNCTION ref.budget_spent_in(p_month date) RETURNS TABLE (budget text, spent numeric)
LANGUAGE sql STABLE AS $$
SELECT b.name,
       CASE b.scope
           WHEN 'all' THEN coalesce((SELECT t.month_total FROM ref.month_totals AS t WHERE t.month = p_month), 0)
           WHEN 'openai' THEN coalesce((SELECT o.cost FROM ref.openai_months AS o WHERE o.month = p_month), 0)
           WHEN 'aws' THEN coalesce((SELECT a.cost FROM ref.aws_months AS a WHERE a.month = p_month), 0)
           ELSE coalesce((SELECT sum(c.cost) FROM ref.conversations AS c
                           WHERE c.month = p_month AND c.conversation_id = b.conversation_id), 0) END
  FROM billing.budgets AS b
 WHERE b.scope <> 'model'
$$;

-- ... in the current and the previous UTC month.
CREATE VIEW ref.budget_spend AS
SELECT s.budget, p.m AS period, s.spent
  FROM (VALUES (date_trunc('month', now() AT TIME ZONE 'UTC')::date),
               ((date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month')::date)) AS p(m)
 CROSS JOIN LATERAL ref.budget_spent_in(p.m) AS s;

-- Each budget's forecast of the current UTC month at now(), as
-- budget_status makes it (README "billing.budget_status"), from the
-- recomputed spend: the rate blend, spent + days left x (spent / days +
-- (1 - f) x past daily), f the elapsed fraction of the month and past
-- daily the budget's spend over the history window (the up to 3 whole
-- months before, the first month with any cost and those before it left
-- out) divided by its days; the run rate (elapsed counted as at least one
-- day) when the window is empty.
CREATE VIEW ref.budget_forecast AS
WITH m AS (
    SELECT x.m, (x.m + interval '1 month')::date - x.m AS days,
           extract(epoch FROM now() - (x.m::timestamp AT TIME ZONE 'UTC')) / 86400 AS elapsed
      FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date AS m) AS x
), win AS (
    SELECT g::date AS month, (g + interval '1 month')::date - g::date AS days
      FROM m, (SELECT min(t.month) AS first_month FROM ref.month_totals AS t WHERE t.month < (SELECT m FROM m)) AS f,
           generate_series(greatest(m.m - interval '3 months', f.first_month + interval '1 month'),
                           m.m - interval '1 month', interval '1 month') AS g
     WHERE f.first_month IS NOT NULL
), past AS (
    SELECT s.budget, sum(s.spent) AS spent FROM win CROSS JOIN LATERAL ref.budget_spent_in(win.month) AS s GROUP BY s.budget
), w AS (
    SELECT count(*) AS months, sum(win.days) AS days FROM win
)
SELECT s.budget,
       CASE WHEN w.months > 0
            THEN round(s.spent + (m.days - m.elapsed) * (s.spent / m.days + (1 - m.elapsed / m.days) * p.spent / w.days), 6)
            ELSE round(s.spent * m.days / greatest(m.elapsed, 1), 6) END AS forecast,
       CASE WHEN w.months > 0 THEN 'rate blend' ELSE 'run rate' END AS forecast_method
  FROM m CROSS JOIN w CROSS JOIN LATERAL ref.budget_spent_in(m.m) AS s
  LEFT JOIN past AS p ON p.budget = s.budget;

-- The comparisons of ref.mismatches(), over the current ref.priced.
-- (jit = off: the planner's estimates for this many set-returning calls
-- are large enough to JIT-compile the query, which then takes seconds
-- instead of milliseconds on a few rows.)
CREATE FUNCTION ref.compare() RETURNS TABLE (check_name text, side text, row_text text)
LANGUAGE sql STABLE SET jit = off AS $$
    WITH got_conv AS MATERIALIZED (
        SELECT month, conversation_id, cost, tokens, prompt_tokens, completion_tokens, cached_tokens,
               estimated_tokens, unpriced_tokens, messages, first_message_at, last_message_at
          FROM billing.conversation_costs WHERE source_table = 'public.messages'::regclass
    ), ref_conv AS MATERIALIZED (
        SELECT * FROM ref.conversations
    ), hist AS MATERIALIZED (
        SELECT * FROM billing.monthly_history
    ), got_openai AS (
        SELECT month, cost, basis, messages, prompt_tokens, completion_tokens, cached_tokens,
               estimated_tokens, unpriced_tokens, month_total
          FROM hist WHERE source = 'openai'
    ), ref_openai AS (
        SELECT o.*, t.month_total FROM ref.openai_months AS o JOIN ref.month_totals AS t USING (month)
    ), got_aws AS (
        SELECT month, cost, basis, emails, month_total FROM hist WHERE source = 'aws'
    ), ref_aws AS (
        SELECT a.*, t.month_total FROM ref.aws_months AS a JOIN ref.month_totals AS t USING (month)
    ), got_services AS (
        SELECT h.month, s.key AS service, (s.value->>'quantity')::numeric AS quantity,
               (s.value->>'cost')::numeric AS cost, s.value->>'basis' AS basis
          FROM hist AS h CROSS JOIN LATERAL jsonb_each(h.services) AS s
         WHERE h.source = 'aws'
    ), ref_services AS (
        SELECT * FROM ref.aws_services
    ), got_estimated AS (
        SELECT message_id FROM billing.estimated_prompts WHERE source_id = ref.source_id()
    ), ref_estimated AS (
        SELECT id::text FROM ref.priced WHERE estimated
    ), got_problems AS (
        SELECT message_id FROM billing.problem_messages WHERE source_id = ref.source_id()
    ), ref_problems AS (
        SELECT id::text FROM ref.priced WHERE problem IS NOT NULL OR month IS NULL
    ), got_emails AS (
        SELECT coalesce(sum(quantity), 0) AS emails FROM billing.aws_usage WHERE origin = 'track_profiles'
    ), ref_emails AS (
        -- counters before tracking began, plus every committed increase
        SELECT coalesce(sum(delta), 0) AS emails FROM public.profile_log
    ), ref_budgets AS MATERIALIZED (
        SELECT * FROM ref.budget_spend
    ), got_budgets AS MATERIALIZED (
        SELECT s.budget, s.period, s.spent
          FROM (SELECT DISTINCT r.period FROM ref_budgets AS r) AS p
         CROSS JOIN LATERAL billing._budget_status(p.period, now()) AS s
         WHERE s.scope <> 'model'
    ), ref_forecast AS MATERIALIZED (
        SELECT * FROM ref.budget_forecast
    ), got_forecast AS MATERIALIZED (
        SELECT s.budget, s.forecast, s.forecast_method
          FROM billing._budget_status(date_trunc('month', now() AT TIME ZONE 'UTC')::date, now()) AS s
         WHERE s.scope <> 'model'
    ), d AS MATERIALIZED (
        SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS m_from,
               (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC' AS m_to,
               billing.dashboard() AS current,
               billing.dashboard(now() - interval '40 days', now() - interval '3 days', 20, 4) AS ragged
    )
    SELECT 'conversation_costs', 'expected', x::text FROM (SELECT * FROM ref_conv EXCEPT SELECT * FROM got_conv) AS x
    UNION ALL
    SELECT 'conversation_costs', 'got', x::text FROM (SELECT * FROM got_conv EXCEPT SELECT * FROM ref_conv) AS x
    UNION ALL
    SELECT 'monthly_history openai', 'expected', x::text FROM (SELECT * FROM ref_openai EXCEPT SELECT * FROM got_openai) AS x
    UNION ALL
    SELECT 'monthly_history openai', 'got', x::text FROM (SELECT * FROM got_openai EXCEPT SELECT * FROM ref_openai) AS x
    UNION ALL
    SELECT 'monthly_history aws', 'expected', x::text FROM (SELECT * FROM ref_aws EXCEPT SELECT * FROM got_aws) AS x
    UNION ALL
    SELECT 'monthly_history aws', 'got', x::text FROM (SELECT * FROM got_aws EXCEPT SELECT * FROM ref_aws) AS x
    UNION ALL
    SELECT 'monthly_history aws services', 'expected', x::text FROM (SELECT * FROM ref_services EXCEPT SELECT * FROM got_services) AS x
    UNION ALL
    SELECT 'monthly_history aws services', 'got', x::text FROM (SELECT * FROM got_services EXCEPT SELECT * FROM ref_services) AS x
    UNION ALL
    SELECT 'estimated_prompts keys', 'expected', x::text FROM (SELECT * FROM ref_estimated EXCEPT SELECT * FROM got_estimated) AS x
    UNION ALL
    SELECT 'estimated_prompts keys', 'got', x::text FROM (SELECT * FROM got_estimated EXCEPT SELECT * FROM ref_estimated) AS x
    UNION ALL
    SELECT 'problem_messages keys', 'expected', x::text FROM (SELECT * FROM ref_problems EXCEPT SELECT * FROM got_problems) AS x
    UNION ALL
    SELECT 'problem_messages keys', 'got', x::text FROM (SELECT * FROM got_problems EXCEPT SELECT * FROM ref_problems) AS x
    UNION ALL
    SELECT 'profile e-mails (track_profiles)', 'expected', x::text FROM (SELECT * FROM ref_emails EXCEPT SELECT * FROM got_emails) AS x
    UNION ALL
    SELECT 'profile e-mails (track_profiles)', 'got', x::text FROM (SELECT * FROM got_emails EXCEPT SELECT * FROM ref_emails) AS x
    UNION ALL
    SELECT 'budget_status spent', 'expected', x::text FROM (SELECT * FROM ref_budgets EXCEPT SELECT * FROM got_budgets) AS x
    UNION ALL
    SELECT 'budget_status spent', 'got', x::text FROM (SELECT * FROM got_budgets EXCEPT SELECT * FROM ref_budgets) AS x
    UNION ALL
    SELECT 'budget_status forecast', 'expected', x::text FROM (SELECT * FROM ref_forecast EXCEPT SELECT * FROM got_forecast) AS x
    UNION ALL
    SELECT 'budget_status forecast', 'got', x::text FROM (SELECT * FROM got_forecast EXCEPT SELECT * FROM ref_forecast) AS x
    UNION ALL
    SELECT m.* FROM d CROSS JOIN LATERAL ref.dashboard_mismatches('dashboard()', d.current, d.m_from, d.m_to, 50, 6) AS m
    UNION ALL
    SELECT m.* FROM d CROSS JOIN LATERAL ref.dashboard_mismatches('dashboard(-40 days, -3 days)', d.ragged,
                                                                   now() - interval '40 days', now() - interval '3 days', 20, 4) AS m
$$;

-- Every difference between billing's views (and bookkeeping) and the
-- reference, as (check, side, row): side 'expected' is a reference row the
-- view lacks or has with other values, 'got' a view row the reference lacks.
-- No row at all: exact. Run it inside one REPEATABLE READ transaction (it
-- writes only ref.priced, its own copy of the per-message reference).
CREATE FUNCTION ref.mismatches() RETURNS TABLE (check_name text, side text, row_text text)
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ref.priced;
    INSERT INTO ref.priced SELECT * FROM ref.priced_now;
    ANALYZE ref.priced;
    RETURN QUERY SELECT * FROM ref.compare();
END
$$;

-- Budget alerts after a billing.merge() (which checks them last): every
-- threshold that the recomputed spend of the current or previous month
-- reaches has fired (for the previous month, for budgets that existed
-- then), and none fired below its threshold. (An alert whose spend has
-- since fallen back stays: alerts are never un-fired.) No row: exact.
CREATE FUNCTION ref.alert_mismatches() RETURNS TABLE (check_name text, side text, row_text text)
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ref.priced;
    INSERT INTO ref.priced SELECT * FROM ref.priced_now;
    ANALYZE ref.priced;
    RETURN QUERY
    WITH due AS (
        SELECT s.budget, t.threshold, s.period
          FROM ref.budget_spend AS s
          JOIN billing.budgets AS b ON b.name = s.budget
         CROSS JOIN LATERAL unnest(b.thresholds) AS t(threshold)
         WHERE s.spent >= b.amount * t.threshold / 100
           AND (s.period = date_trunc('month', now() AT TIME ZONE 'UTC')::date
                OR b.created_at < date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
    )
    SELECT 'alerts due, not fired', 'expected', x::text
      FROM (SELECT * FROM due EXCEPT SELECT a.budget, a.threshold, a.period FROM billing.alerts AS a) AS x
    UNION ALL
    SELECT 'alerts fired below their threshold', 'got', a::text
      FROM billing.alerts AS a WHERE a.spent < a.amount * a.threshold / 100;
END
$$;

-- Sizes, for the progress lines of the scripts (after ref.mismatches()).
CREATE FUNCTION ref.summary() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT format('%s messages, %s conversation-months, %s months, %s ledger rows, %s stale months, %s aws rows',
                  (SELECT count(*) FROM public.messages), (SELECT count(*) FROM ref.conversations),
                  (SELECT count(*) FROM ref.openai_months), (SELECT count(*) FROM billing.usage_ledger),
                  (SELECT count(*) FROM billing.stale_months), (SELECT count(*) FROM billing.aws_usage))
$$;
