-- billing.dashboard(): the /api/billing payload in one call, for a month or
-- a period (and with untyped literals), and the current_period view.
-- Relies on reads.sql and aws_usage.sql (billing.history, views.sql, is read
-- when it runs).

-- The OpenAI card of the dashboard payload (README "The dashboard
-- payload"), from per-model rows: a jsonb array of objects with the columns
-- of billing._usage_by_model or billing._customer_usage_by_model (model,
-- messages, the token counts, problems, cost, estimated_cost,
-- unpriced_tokens; others are ignored). The one definition of the card's
-- figures, for billing.dashboard() and billing.dashboard(customer => ...):
-- tokens = prompt + completion + estimated + total-only tokens; by_model
-- adds up to the card, at most 100 models by cost, the rest in "(other
-- models)", a model without any price with a null cost (unknown, not
-- zero). STABLE, as jsonb_to_recordset and jsonb_build_object are.
CREATE FUNCTION billing._openai_card(p_rows jsonb) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH m AS (
        SELECT * FROM jsonb_to_recordset(coalesce(p_rows, '[]')) AS r(
            model text, messages numeric, prompt_tokens numeric, completion_tokens numeric, cached_tokens numeric,
            estimated_prompt numeric, estimated_completion numeric, unsplit_tokens numeric, problems numeric,
            cost numeric, estimated_cost numeric, unpriced_tokens numeric)
    ), per_model AS (
        SELECT CASE WHEN m.model = '' THEN '(none)' ELSE m.model END AS model,
               sum(m.cost + m.estimated_cost) AS cost,
               sum(m.prompt_tokens + m.completion_tokens + m.estimated_prompt + m.estimated_completion
                   + m.unsplit_tokens) AS tokens,
               sum(m.unpriced_tokens) AS unpriced_tokens,
               sum(m.messages) AS messages,
               -- no price at all: the cost is unknown, not zero
               bool_and(m.unpriced_tokens = m.prompt_tokens + m.completion_tokens + m.estimated_prompt
                        + m.estimated_completion + m.unsplit_tokens AND m.unpriced_tokens <> 0) AS unpriced
          FROM m GROUP BY 1
    ),
    -- At most 100 models by name; the rest (a payload must stay small
    -- whatever names the app writes) in one "(other models)" entry.
    ranked AS (
        SELECT p.*, row_number() OVER (ORDER BY p.cost DESC, p.tokens DESC, p.model) AS rank FROM per_model AS p
    ), shown AS (
        SELECT r.model, r.cost, r.tokens, r.unpriced_tokens, r.messages, r.unpriced FROM ranked AS r WHERE r.rank <= 100
        UNION ALL
        SELECT '(other models)', sum(r.cost), sum(r.tokens), sum(r.unpriced_tokens), sum(r.messages), bool_and(r.unpriced)
          FROM ranked AS r WHERE r.rank > 100 HAVING count(*) > 0
    )
    SELECT jsonb_build_object(
               'cost', coalesce(sum(m.cost + m.estimated_cost), 0),
               'estimated_cost', coalesce(sum(m.estimated_cost), 0),
               'tokens', coalesce(sum(m.prompt_tokens + m.completion_tokens + m.estimated_prompt
                                      + m.estimated_completion + m.unsplit_tokens), 0),
               'prompt_tokens', coalesce(sum(m.prompt_tokens), 0),
               'completion_tokens', coalesce(sum(m.completion_tokens), 0),
               'cached_tokens', coalesce(sum(m.cached_tokens), 0),
               'estimated_tokens', coalesce(sum(m.estimated_prompt + m.estimated_completion), 0),
               'unsplit_tokens', coalesce(sum(m.unsplit_tokens), 0),
               'unpriced_tokens', coalesce(sum(m.unpriced_tokens), 0),
               'messages', coalesce(sum(m.messages), 0),
               'problems', coalesce(sum(m.problems), 0),
               'by_model', coalesce((
                   SELECT jsonb_object_agg(b.model, jsonb_build_object(
                              'cost', CASE WHEN b.unpriced THEN NULL ELSE b.cost END,
                              'tokens', b.tokens, 'unpriced_tokens', b.unpriced_tokens,
                              'messages', b.messages))
                     FROM shown AS b), '{}'::jsonb))
      FROM m
$$;

-- The limits of dashboard()'s arguments (also of its customer form,
-- customers.sql): at most 10,000 conversations and 1,200 months.
CREATE FUNCTION billing._check_dashboard_limits(top_conversations integer, months integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- (NULL too: an app passing an unset query parameter got a page of
    -- zeros, or every conversation, instead of an error)
    IF top_conversations IS NULL OR top_conversations < 0 OR top_conversations > 10000 THEN
        RAISE EXCEPTION 'billing: top_conversations must be between 0 and 10000, got %', coalesce(top_conversations::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Leave it out for the default, 50.';
    END IF;
    IF months IS NULL OR months < 1 OR months > 1200 THEN
        RAISE EXCEPTION 'billing: months must be between 1 and 1200, got %', coalesce(months::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Leave it out for the default, 6.';
    END IF;
END
$$;

-- The month forms' `at` (NULL has no month: the period form refused it,
-- saying the period must have a start before its end).
CREATE FUNCTION billing._check_dashboard_at(at timestamptz) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF at IS NULL OR NOT isfinite(at) THEN
        RAISE EXCEPTION 'billing: at must be a finite time, got %', coalesce(at::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Leave it out for the current month.';
    END IF;
END
$$;

CREATE FUNCTION billing.dashboard(period_start timestamptz, period_end timestamptz,
                                             top_conversations integer DEFAULT 50, months integer DEFAULT 6)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    openai jsonb;
    aws jsonb;
    conversations jsonb;
    hist jsonb;
    history_from date;
    last_month date;
    whole_month boolean;       -- the period is one whole month: the last of the history
    openai_by_month jsonb;     -- then the history's OpenAI figures, from the same read
    unmerged billing._ledger_group[];  -- then the unmerged ledger of the history's months
BEGIN
    IF period_start IS NULL OR period_end IS NULL THEN
        RAISE EXCEPTION 'billing: the period must be given, got % to %', coalesce(period_start::text, 'NULL'),
                        coalesce(period_end::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF period_end <= period_start THEN
        RAISE EXCEPTION 'billing: the period must have a start before its end' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The work is bounded whatever the arguments: a finite period within
    -- the years billing counts, at most 1,200 months of history.
    IF NOT billing._countable(period_start) OR NOT billing._countable(period_end - interval '1 microsecond') THEN
        RAISE EXCEPTION 'billing: the period must lie within the years 1 to 9999, got % to %', period_start, period_end
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM billing._check_dashboard_limits(top_conversations, months);
    PERFORM billing._require_reader();
    -- Read as one customer (the setting billing.customer, customers.sql):
    -- that customer's page, nothing of anyone else's.
    IF billing.current_customer() IS NOT NULL THEN
        RETURN billing.dashboard(period_start, period_end, billing.current_customer(), top_conversations, months);
    END IF;
    -- (not where billing serves AWS alone: no messages table tracked at
    -- all, which a role that may read none cannot see in tracked_tables but
    -- can in their trigger functions, and AWS usage recorded or followed;
    -- there it came at every read)
    IF NOT EXISTS (SELECT 1 FROM billing.tracked_tables)
       AND (EXISTS (SELECT 1 FROM pg_proc AS p
                     WHERE p.pronamespace = 'billing'::regnamespace AND p.proname ~ '^(citus_)?track_[0-9]+$')
            OR NOT (EXISTS (SELECT 1 FROM billing.tracked_profiles) OR EXISTS (SELECT 1 FROM billing.aws_usage))) THEN
        RAISE NOTICE 'billing: no tracked table that role "%" may read, so OpenAI figures are zero', current_user
            USING HINT = 'SELECT billing.track_messages(''messages''); starts tracking the app''s messages table; '
                         'a role sees the costs of the tracked tables it may SELECT.';
    END IF;

    -- History: the `months` months that end with the period's last month.
    last_month := billing.month_of(period_end - interval '1 microsecond');
    history_from := (last_month - (months - 1) * interval '1 month')::date;
    whole_month := period_start = billing.month_start(last_month) AND period_end = billing.month_end(last_month);

    -- Every figure is defined once (README "The dashboard payload"), by
    -- billing._openai_card. For a whole month (the usual call) one read of
    -- the history's months serves the card and the history, and one read of
    -- the unmerged ledger serves them and the top conversations: each
    -- unmerged write is read and priced once (on Citus, one distributed
    -- query of the ledger instead of two).
    IF whole_month THEN
        unmerged := ARRAY(SELECT l FROM billing._ledger_usage(billing.month_start(history_from), period_end,
                                                              billing._estimate_model()) AS l);
    END IF;
    WITH m_all AS MATERIALIZED (
        SELECT * FROM billing._usage_by_model(
            CASE WHEN whole_month THEN billing.month_start(history_from) ELSE period_start END,
            period_end, unmerged)
    )
    SELECT billing._openai_card((SELECT jsonb_agg(to_jsonb(m)) FROM m_all AS m
                                  WHERE NOT whole_month OR m.month = last_month)),
           CASE WHEN whole_month THEN
               (SELECT coalesce(jsonb_object_agg(to_char(a.month, 'YYYY-MM'), a.cost), '{}'::jsonb)
                  FROM (SELECT x.month, sum(x.cost + x.estimated_cost) AS cost FROM m_all AS x GROUP BY x.month) AS a)
           END
      INTO openai, openai_by_month;

    SELECT jsonb_build_object(
               'cost', coalesce(sum(a.cost), 0),
               'emails', coalesce(sum(a.quantity) FILTER (WHERE a.service = 'ses'), 0),
               'breakdown', coalesce(jsonb_object_agg(a.service, billing._aws_service_entry(
                                a.quantity, a.cost, a.unpriced_quantity, a.basis))
                                FILTER (WHERE a.service IS NOT NULL), '{}'::jsonb),
               'source', CASE WHEN count(*) = 0 THEN 'estimate'
                              WHEN bool_and(a.basis = 'actual') THEN 'actual'
                              WHEN bool_or(a.basis = 'actual') THEN 'mixed' ELSE 'estimate' END)
      INTO aws
      FROM billing._aws_usage_by_service(period_start, period_end) AS a;

    SELECT coalesce(jsonb_agg(jsonb_build_object('conversation_id', c.conversation_id, 'cost', c.cost,
                                                 'tokens', c.tokens, 'messages', c.messages)
                              ORDER BY c.cost DESC, c.conversation_id), '[]'::jsonb)
      INTO conversations
      FROM billing._top_conversations(period_start, period_end, top_conversations, unmerged) AS c;

    WITH h AS (
        SELECT h.month, h.source, h.cost
          FROM billing.history(billing.month_start(history_from),
                               billing.month_end(last_month)) AS h
         WHERE NOT whole_month
        UNION ALL
        SELECT to_date(o.key, 'YYYY-MM'), 'openai', o.value::numeric
          FROM jsonb_each_text(openai_by_month) AS o
         WHERE whole_month
        UNION ALL
        SELECT a.month, 'aws', sum(a.cost)
          FROM billing._aws_usage_by_service(billing.month_start(history_from), billing.month_end(last_month)) AS a
         WHERE whole_month
         GROUP BY a.month
    )
    SELECT jsonb_agg(jsonb_build_object(
               -- (a month before the year 1 says so: 0001-12 BC comes before 0001-01)
               'month', to_char(g.m, 'YYYY-MM') || CASE WHEN g.m < '0001-01-01' THEN ' BC' ELSE '' END,
               'openai', coalesce((SELECT sum(h.cost) FROM h WHERE h.month = g.m AND h.source = 'openai'), 0),
               'aws', coalesce((SELECT sum(h.cost) FROM h WHERE h.month = g.m AND h.source = 'aws'), 0),
               'total', coalesce((SELECT sum(h.cost) FROM h WHERE h.month = g.m), 0))
             ORDER BY g.m)
      INTO hist
      FROM generate_series(history_from, last_month, interval '1 month') AS g(m);

    RETURN jsonb_build_object(
        -- (in the month zone: the bounds read the same in every session)
        'period', jsonb_build_object('start', billing._month_zone_text(period_start),
                                     'end', billing._month_zone_text(period_end)),
        'openai', openai,
        'aws', aws,
        'total_cost', (openai ->> 'cost')::numeric + (aws ->> 'cost')::numeric,
        'conversations', conversations,
        'history', hist,
        'budgets', billing._dashboard_budgets(last_month))
        -- The top customers, once customers are known (customers.sql).
        || billing._dashboard_customers(period_start, period_end);
END
$$;
COMMENT ON FUNCTION billing.dashboard(timestamptz, timestamptz, integer, integer) IS
    'The billing page for usage with period_start <= time < period_end: OpenAI and AWS cards, top conversations, and the history of the months ending with the period.';

-- The month form checks the reader's grants before month_of reads a setting.
CREATE FUNCTION billing.dashboard(months integer DEFAULT 6, top_conversations integer DEFAULT 50,
                                             at timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM billing._require_reader();
    PERFORM billing._check_dashboard_at(at);
    RETURN billing.dashboard(billing.month_start(billing.month_of(at)), billing.month_end(billing.month_of(at)),
                             top_conversations, months);
END
$$;
COMMENT ON FUNCTION billing.dashboard(integer, integer, timestamptz) IS
    'The billing page for the month that contains `at`: SELECT billing.dashboard(); is the whole /api/billing payload.';

CREATE VIEW billing.current_period WITH (security_invoker = true) AS
SELECT (d -> 'period' ->> 'start')::timestamptz AS period_start,
       (d -> 'period' ->> 'end')::timestamptz AS period_end,
       (d -> 'openai' ->> 'cost')::numeric AS openai_cost,
       billing._sat((d -> 'openai' ->> 'tokens')::numeric) AS openai_tokens,
       billing._sat((d -> 'openai' ->> 'prompt_tokens')::numeric) AS prompt_tokens,
       billing._sat((d -> 'openai' ->> 'completion_tokens')::numeric) AS completion_tokens,
       billing._sat((d -> 'openai' ->> 'cached_tokens')::numeric) AS cached_tokens,
       (d -> 'openai' ->> 'messages')::bigint AS messages,
       billing._sat((d -> 'openai' ->> 'estimated_tokens')::numeric) AS estimated_tokens,
       billing._sat((d -> 'openai' ->> 'unpriced_tokens')::numeric) AS unpriced_tokens,
       (d -> 'aws' ->> 'cost')::numeric AS aws_cost,
       (d -> 'aws' ->> 'emails')::numeric AS emails,
       d -> 'aws' -> 'breakdown' AS aws_breakdown,
       d -> 'aws' ->> 'source' AS aws_source,
       (d ->> 'total_cost')::numeric AS total_cost
  FROM billing.dashboard(1, 0) AS d;
COMMENT ON VIEW billing.current_period IS 'The current month''s cards: OpenAI, AWS and total.';

-- billing.dashboard('2026-11-01', '2026-12-01'): with two untyped literals
-- the (timestamptz, timestamptz) and (integer, integer, timestamptz) forms
-- both match; a text form is what PostgreSQL picks for unknown literals.
CREATE FUNCTION billing.dashboard(period_start text, period_end text,
                                  top_conversations integer DEFAULT 50, months integer DEFAULT 6)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT billing.dashboard(period_start::timestamptz, period_end::timestamptz, top_conversations, months)
$$;
COMMENT ON FUNCTION billing.dashboard(text, text, integer, integer) IS
    'billing.dashboard(period_start, period_end, ...) called with untyped literals, such as billing.dashboard(''2026-11-01'', ''2026-12-01'').';
