-- billing 0.2 -> 0.3: months in a time zone of the user's choice, tracking
-- that survives DROP EXTENSION and DDL on the tracked tables, faster reads.
--
-- * billing.settings gains month_time_zone (default UTC): the zone whose
--   calendar months the rollups, views and dashboard group by. month_of()
--   becomes a C function that reads it, and every month boundary is now
--   billing.month_start() / billing.month_end() instead of a UTC cast.
-- * The per-table trigger functions (billing.track_N) and the triggers on
--   tracked tables are created at run time, so they are not members of the
--   extension (pg_dump must keep dumping them). They are now marked as
--   depending on it, so that DROP EXTENSION billing drops them instead of
--   leaving the app's table with a trigger that fails every write.
-- * Event triggers follow renames of tracked tables and columns (the trigger
--   function is made anew) and drops (billing forgets the table).
-- * track_profiles: one shared trigger function instead of one per table.
-- * Reads: stale months anti-joined, row-level security once per query.

------------------------------------------------------------------------------
-- The month time zone
------------------------------------------------------------------------------

ALTER TABLE billing.settings DROP CONSTRAINT settings_name_check;
ALTER TABLE billing.settings ADD CONSTRAINT settings_name_check
    CHECK (name IN ('estimate_model', 'month_time_zone'));
COMMENT ON TABLE billing.settings IS
    'Settings that change stored figures. estimate_model: the model that prices estimated replies that name none. month_time_zone: the time zone of billing''s calendar months (a name from pg_timezone_names; UTC when absent).';

CREATE FUNCTION billing._check_time_zone(name text) RETURNS text
    AS 'MODULE_PATHNAME', 'check_time_zone' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing._check_time_zone(text) IS
    'The canonical name of a time zone, or an error when PostgreSQL does not know it.';

-- A bad zone name is refused when it is written, not when a read needs it.
CREATE FUNCTION billing._setting_checked() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.name = 'month_time_zone' THEN
        NEW.value := billing._check_time_zone(NEW.value);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER settings_checked BEFORE INSERT OR UPDATE ON billing.settings
    FOR EACH ROW EXECUTE FUNCTION billing._setting_checked();

-- UTC is what 0.2 used: adding the row changes no figure, so it must not
-- send every tracked table back to a full rebuild.
ALTER TABLE billing.settings DISABLE TRIGGER settings_changed;
INSERT INTO billing.settings VALUES ('month_time_zone', 'UTC');
ALTER TABLE billing.settings ENABLE TRIGGER settings_changed;

-- STABLE now (it reads the setting): each call site reads it once per
-- statement and keeps the zone, so a row costs one time conversion.
CREATE OR REPLACE FUNCTION billing.month_of(at timestamptz) RETURNS date
    AS 'MODULE_PATHNAME', 'month_of' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing.month_of(timestamptz) IS
    'The month (its first day) that contains a time, in the month_time_zone setting''s zone.';

CREATE FUNCTION billing.month_start(month date) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'month_start' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing.month_start(date) IS
    'When the month that contains a date begins, in the month_time_zone setting''s zone.';

CREATE FUNCTION billing.month_end(month date) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'month_end' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing.month_end(date) IS
    'When the month after the one that contains a date begins: a month is [month_start, month_end).';

COMMENT ON TABLE billing.month_usage IS 'Merged usage per tracked table, month and model as stored.';
COMMENT ON TABLE billing.conversation_usage IS 'Merged usage per tracked table, month and conversation.';
COMMENT ON FUNCTION billing.history(timestamptz, timestamptz) IS
    'Costs per month and source (openai, aws) for usage with p_from <= time < p_to.';
COMMENT ON VIEW billing.monthly_history IS
    'One row per month and cost source (openai, aws): cost, tokens, messages, e-mails, AWS services, and the month''s total.';
COMMENT ON VIEW billing.conversation_costs IS 'Cost, tokens and messages per conversation and month.';
COMMENT ON VIEW billing.current_period IS 'The current month''s cards: OpenAI, AWS and total.';

------------------------------------------------------------------------------
-- Month boundaries in the month time zone (unchanged otherwise)
------------------------------------------------------------------------------

-- First and last message time of a conversation in a month, from the source.
CREATE OR REPLACE FUNCTION billing._conversation_bounds(p_source smallint, p_month date, p_conversation text,
                                             OUT first_at timestamptz, OUT last_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
BEGIN
    SELECT * INTO STRICT t FROM billing.tracked_tables WHERE id = p_source;
    EXECUTE format('SELECT min(%2$I), max(%2$I) FROM %1$s
                     WHERE %3$I::text IS NOT DISTINCT FROM $1 AND %2$I >= $2 AND %2$I < $3',
                   t.relation, t.created_at_column, t.conversation_column)
       INTO first_at, last_at
      USING p_conversation, billing.month_start(p_month),
            billing.month_end(p_month);
END
$$;


CREATE OR REPLACE FUNCTION billing.merge() RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    merged bigint;
BEGIN
    -- One merge at a time; a second caller has nothing to do.
    IF NOT pg_try_advisory_xact_lock(hashtext('billing.merge')) THEN
        RETURN 0;
    END IF;
    FOR s IN SELECT id FROM billing.tracked_tables WHERE NOT backfilled ORDER BY id LOOP
        PERFORM billing._backfill(s.id);
    END LOOP;
    FOR s IN SELECT source_id, month FROM billing.stale_months ORDER BY 1, 2 LOOP
        PERFORM billing._rebuild(s.source_id, billing.month_start(s.month),
                                 billing.month_end(s.month));
    END LOOP;

    WITH moved AS (
        DELETE FROM billing.usage_ledger AS l
         -- billing._is_stale() spelled out, so that the planner anti-joins.
         WHERE NOT EXISTS (SELECT 1 FROM billing.stale_months AS sm
                            WHERE sm.source_id = l.source_id AND sm.month = billing.month_of(l.created_at))
           AND NOT EXISTS (SELECT 1 FROM billing.tracked_tables AS tt
                            WHERE tt.id = l.source_id AND NOT tt.backfilled)
        RETURNING l.*
    ), priced AS MATERIALIZED (
        SELECT m.*, billing.month_of(m.created_at) AS month,
               billing.usage_cost(m.model, m.prompt_tokens, m.completion_tokens, m.cached_tokens, m.created_at) AS c,
               billing.usage_cost(coalesce(m.model, cfg.estimate_model), m.estimated_prompt,
                                  m.estimated_completion, 0, m.created_at) AS e
          FROM moved AS m
         CROSS JOIN (SELECT value AS estimate_model FROM billing.settings WHERE name = 'estimate_model') AS cfg
    ), rows AS MATERIALIZED (
        SELECT p.*, coalesce(p.c, 0) AS cost, coalesce(p.e, 0) AS estimated_cost,
               (CASE WHEN p.c IS NULL THEN p.prompt_tokens + p.completion_tokens ELSE 0 END
                + CASE WHEN p.e IS NULL THEN p.estimated_prompt + p.estimated_completion ELSE 0 END
                + p.unsplit_tokens) AS unpriced_tokens
          FROM priced AS p
    ), months AS (
        INSERT INTO billing.month_usage AS u
        SELECT r.source_id, r.month, coalesce(r.model, ''), sum(r.messages), sum(r.prompt_tokens),
               sum(r.completion_tokens), sum(r.cached_tokens), sum(r.estimated_prompt),
               sum(r.estimated_completion), sum(r.unsplit_tokens), sum(r.problems), sum(r.cost),
               sum(r.estimated_cost), sum(r.unpriced_tokens)
          FROM rows AS r GROUP BY 1, 2, 3
        ON CONFLICT (source_id, month, model) DO UPDATE SET
            messages = u.messages + excluded.messages,
            prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
            completion_tokens = u.completion_tokens + excluded.completion_tokens,
            cached_tokens = u.cached_tokens + excluded.cached_tokens,
            estimated_prompt = u.estimated_prompt + excluded.estimated_prompt,
            estimated_completion = u.estimated_completion + excluded.estimated_completion,
            unsplit_tokens = u.unsplit_tokens + excluded.unsplit_tokens,
            problems = u.problems + excluded.problems,
            cost = u.cost + excluded.cost,
            estimated_cost = u.estimated_cost + excluded.estimated_cost,
            unpriced_tokens = u.unpriced_tokens + excluded.unpriced_tokens
    )
    INSERT INTO billing.conversation_usage AS u
    SELECT r.source_id, r.month, r.conversation_id, sum(r.messages), sum(r.prompt_tokens),
           sum(r.completion_tokens), sum(r.cached_tokens), sum(r.estimated_prompt + r.estimated_completion),
           sum(r.cost + r.estimated_cost), sum(r.unpriced_tokens),
           min(r.created_at) FILTER (WHERE r.messages > 0), max(r.created_at) FILTER (WHERE r.messages > 0),
           bool_or(r.messages < 0)
      FROM rows AS r GROUP BY 1, 2, 3
    ON CONFLICT (source_id, month, conversation_id) DO UPDATE SET
        messages = u.messages + excluded.messages,
        prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = u.completion_tokens + excluded.completion_tokens,
        cached_tokens = u.cached_tokens + excluded.cached_tokens,
        estimated_tokens = u.estimated_tokens + excluded.estimated_tokens,
        cost = u.cost + excluded.cost,
        unpriced_tokens = u.unpriced_tokens + excluded.unpriced_tokens,
        first_message_at = least(u.first_message_at, excluded.first_message_at),
        last_message_at = greatest(u.last_message_at, excluded.last_message_at),
        bounds_stale = u.bounds_stale OR excluded.bounds_stale;
    GET DIAGNOSTICS merged = ROW_COUNT;

    -- Rows whose messages were all taken back disappear; bounds a removal may
    -- have moved are read again from the source.
    DELETE FROM billing.month_usage WHERE messages = 0;
    DELETE FROM billing.conversation_usage WHERE messages = 0;
    UPDATE billing.conversation_usage AS c
       SET first_message_at = b.first_at, last_message_at = b.last_at, bounds_stale = false
      FROM (SELECT source_id, month, conversation_id FROM billing.conversation_usage WHERE bounds_stale) AS k,
           LATERAL billing._conversation_bounds(k.source_id, k.month, k.conversation_id) AS b
     WHERE c.source_id = k.source_id AND c.month = k.month
       AND c.conversation_id IS NOT DISTINCT FROM k.conversation_id;
    RETURN merged;
END
$$;


-- OpenAI usage with p_from <= time < p_to, per table, month and model.
CREATE OR REPLACE FUNCTION billing._model_usage(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (source_id smallint, month date, model text, messages bigint, prompt_tokens bigint,
               completion_tokens bigint, cached_tokens bigint, estimated_prompt bigint,
               estimated_completion bigint, unsplit_tokens bigint, problems bigint, cost numeric,
               estimated_cost numeric, unpriced_tokens bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
BEGIN
    -- Whole fresh months come from the rollups plus the ledger.
    RETURN QUERY
    SELECT x.source_id, x.month, x.model, sum(x.messages)::bigint, sum(x.prompt_tokens)::bigint,
           sum(x.completion_tokens)::bigint, sum(x.cached_tokens)::bigint, sum(x.estimated_prompt)::bigint,
           sum(x.estimated_completion)::bigint, sum(x.unsplit_tokens)::bigint, sum(x.problems)::bigint,
           sum(x.cost), sum(x.estimated_cost), sum(x.unpriced_tokens)::bigint
      FROM (SELECT u.source_id, u.month, u.model, u.messages, u.prompt_tokens, u.completion_tokens,
                   u.cached_tokens, u.estimated_prompt, u.estimated_completion, u.unsplit_tokens,
                   u.problems, u.cost, u.estimated_cost, u.unpriced_tokens
              FROM billing.month_usage AS u
             WHERE u.month >= billing.month_of(p_from)
               AND billing.month_start(u.month) >= p_from
               AND billing.month_end(u.month) <= p_to
            UNION ALL
            SELECT l.source_id, l.month, l.model, l.messages, l.prompt_tokens, l.completion_tokens,
                   l.cached_tokens, l.estimated_prompt, l.estimated_completion, l.unsplit_tokens,
                   l.problems, l.cost, l.estimated_cost, l.unpriced_tokens
              FROM billing._ledger_priced AS l
             WHERE billing.month_start(l.month) >= p_from
               AND billing.month_end(l.month) <= p_to) AS x
     -- billing._is_stale() spelled out, so that the planner anti-joins.
     WHERE NOT EXISTS (SELECT 1 FROM billing.stale_months AS sm
                        WHERE sm.source_id = x.source_id AND sm.month = x.month)
       AND NOT EXISTS (SELECT 1 FROM billing.tracked_tables AS tt
                        WHERE tt.id = x.source_id AND NOT tt.backfilled)
     GROUP BY x.source_id, x.month, x.model
    HAVING sum(x.messages) <> 0;

    -- Stale months, and the partial months at the ends of the range, come
    -- from the source.
    FOR s IN SELECT * FROM billing._source_ranges(p_from, p_to) LOOP
        RETURN QUERY
        SELECT s.source_id, r.month, coalesce(r.model, ''), sum(r.messages)::bigint,
               sum(r.prompt_tokens)::bigint, sum(r.completion_tokens)::bigint, sum(r.cached_tokens)::bigint,
               sum(r.estimated_prompt)::bigint, sum(r.estimated_completion)::bigint,
               sum(r.unsplit_tokens)::bigint, sum(r.problems)::bigint, sum(r.cost), sum(r.estimated_cost),
               sum(r.unpriced_tokens)::bigint
          FROM billing._scan_source(s.source_id, s.range_from, s.range_to) AS r
         GROUP BY r.month, coalesce(r.model, '');
    END LOOP;
END
$$;

-- The parts of [p_from, p_to) that must be read from each tracked table:
-- all of it when the table is not backfilled yet; else its stale months and
-- the partial months at the ends of the range.
CREATE OR REPLACE FUNCTION billing._source_ranges(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (source_id smallint, range_from timestamptz, range_to timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH months AS (
        SELECT s.source_id, s.month FROM billing.stale_months AS s
        UNION
        SELECT t.id, billing.month_of(p_from) FROM billing.tracked_tables AS t
         WHERE isfinite(p_from) AND p_from <> billing.month_start(billing.month_of(p_from))
        UNION
        SELECT t.id, billing.month_of(p_to - interval '1 microsecond') FROM billing.tracked_tables AS t
         WHERE isfinite(p_to) AND p_to <> billing.month_start(billing.month_of(p_to))
    )
    SELECT t.id, p_from, p_to FROM billing.tracked_tables AS t
     WHERE NOT t.backfilled AND billing._may_read_source(t.id)
    UNION ALL
    SELECT m.source_id, greatest(p_from, billing.month_start(m.month)),
           least(p_to, billing.month_end(m.month))
      FROM months AS m
      JOIN billing.tracked_tables AS t ON t.id = m.source_id AND t.backfilled
     WHERE billing._may_read_source(t.id)
       AND billing.month_end(m.month) > p_from
       AND billing.month_start(m.month) < p_to
$$;

-- OpenAI usage with p_from <= time < p_to, per table, month and conversation.
CREATE OR REPLACE FUNCTION billing._conversation_usage(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (source_id smallint, month date, conversation_id text, messages bigint,
               prompt_tokens bigint, completion_tokens bigint, cached_tokens bigint,
               estimated_tokens bigint, cost numeric, unpriced_tokens bigint,
               first_message_at timestamptz, last_message_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
BEGIN
    RETURN QUERY
    WITH x AS (
        SELECT u.source_id, u.month, u.conversation_id, u.messages, u.prompt_tokens, u.completion_tokens,
               u.cached_tokens, u.estimated_tokens, u.cost, u.unpriced_tokens,
               u.first_message_at AS first_add, u.last_message_at AS last_add,
               NULL::timestamptz AS first_removed, NULL::timestamptz AS last_removed, u.bounds_stale
          FROM billing.conversation_usage AS u
         WHERE u.month >= billing.month_of(p_from)
           AND billing.month_start(u.month) >= p_from
           AND billing.month_end(u.month) <= p_to
        UNION ALL
        SELECT l.source_id, l.month, l.conversation_id, l.messages, l.prompt_tokens, l.completion_tokens,
               l.cached_tokens, l.estimated_prompt + l.estimated_completion, l.cost + l.estimated_cost,
               l.unpriced_tokens,
               CASE WHEN l.messages > 0 THEN l.created_at END, CASE WHEN l.messages > 0 THEN l.created_at END,
               CASE WHEN l.messages < 0 THEN l.created_at END, CASE WHEN l.messages < 0 THEN l.created_at END,
               false
          FROM billing._ledger_priced AS l
         WHERE billing.month_start(l.month) >= p_from
           AND billing.month_end(l.month) <= p_to
    ), g AS (
        SELECT x.source_id, x.month, x.conversation_id, sum(x.messages)::bigint AS messages,
               sum(x.prompt_tokens)::bigint AS prompt_tokens, sum(x.completion_tokens)::bigint AS completion_tokens,
               sum(x.cached_tokens)::bigint AS cached_tokens, sum(x.estimated_tokens)::bigint AS estimated_tokens,
               sum(x.cost) AS cost, sum(x.unpriced_tokens)::bigint AS unpriced_tokens,
               min(x.first_add) AS first_add, max(x.last_add) AS last_add,
               min(x.first_removed) AS first_removed, max(x.last_removed) AS last_removed,
               bool_or(x.bounds_stale) AS bounds_stale
          FROM x
         -- billing._is_stale() spelled out, so that the planner anti-joins.
         WHERE NOT EXISTS (SELECT 1 FROM billing.stale_months AS sm
                            WHERE sm.source_id = x.source_id AND sm.month = x.month)
           AND NOT EXISTS (SELECT 1 FROM billing.tracked_tables AS tt
                            WHERE tt.id = x.source_id AND NOT tt.backfilled)
         GROUP BY x.source_id, x.month, x.conversation_id
        HAVING sum(x.messages) <> 0
    )
    SELECT g.source_id, g.month, g.conversation_id, g.messages, g.prompt_tokens, g.completion_tokens,
           g.cached_tokens, g.estimated_tokens, g.cost, g.unpriced_tokens,
           -- A removal at (or past) a bound moves it: read that one from the source.
           CASE WHEN g.bounds_stale OR g.first_removed <= g.first_add OR g.last_removed >= g.last_add
                     OR g.first_add IS NULL
                THEN (SELECT b.first_at FROM billing._conversation_bounds(g.source_id, g.month, g.conversation_id) AS b)
                ELSE g.first_add END,
           CASE WHEN g.bounds_stale OR g.first_removed <= g.first_add OR g.last_removed >= g.last_add
                     OR g.last_add IS NULL
                THEN (SELECT b.last_at FROM billing._conversation_bounds(g.source_id, g.month, g.conversation_id) AS b)
                ELSE g.last_add END
      FROM g;

    FOR s IN SELECT * FROM billing._source_ranges(p_from, p_to) LOOP
        RETURN QUERY
        SELECT s.source_id, r.month, r.conversation_id, sum(r.messages)::bigint,
               sum(r.prompt_tokens)::bigint, sum(r.completion_tokens)::bigint, sum(r.cached_tokens)::bigint,
               sum(r.estimated_prompt + r.estimated_completion)::bigint, sum(r.cost + r.estimated_cost),
               sum(r.unpriced_tokens)::bigint, min(r.first_message_at), max(r.last_message_at)
          FROM billing._scan_source(s.source_id, s.range_from, s.range_to) AS r
         GROUP BY r.month, r.conversation_id;
    END LOOP;
END
$$;


-- AWS per month and service with p_from <= at < p_to: the estimate from
-- recorded usage, replaced by actual figures where a month has them.
CREATE OR REPLACE FUNCTION billing._aws_usage(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (month date, service text, quantity numeric, cost numeric, unpriced_quantity numeric, basis text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET billing.unknown_service = 'ignore'
AS $$
    WITH est AS (
        SELECT billing.month_of(u.at) AS month, u.service, sum(u.quantity) AS quantity,
               coalesce(billing.aws_cost(u.service, u.quantity, u.at), 0) AS cost,
               coalesce(sum(u.quantity) FILTER (WHERE billing.resolve_aws_price(u.service, u.at) IS NULL), 0)
                   AS unpriced_quantity
          FROM billing.aws_usage AS u
         WHERE u.at >= p_from AND u.at < p_to
         GROUP BY 1, 2
    ), act AS (
        SELECT a.month, a.service, a.cost FROM billing.aws_actuals AS a
         WHERE billing.month_start(a.month) >= p_from AND billing.month_start(a.month) < p_to
    )
    SELECT coalesce(e.month, a.month), coalesce(e.service, a.service), coalesce(e.quantity, 0),
           coalesce(a.cost, e.cost), CASE WHEN a.cost IS NULL THEN e.unpriced_quantity ELSE 0 END,
           CASE WHEN a.cost IS NULL THEN 'estimate' ELSE 'actual' END
      FROM est AS e FULL JOIN act AS a ON a.month = e.month AND a.service = e.service
$$;

-- The dashboard: the /api/billing payload in one call
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION billing.dashboard(period_start timestamptz, period_end timestamptz,
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
BEGIN
    IF period_start IS NULL OR period_end IS NULL OR period_end <= period_start THEN
        RAISE EXCEPTION 'billing: the period must have a start before its end' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF top_conversations < 0 OR months < 1 OR months > 1200 THEN
        RAISE EXCEPTION 'billing: top_conversations must be >= 0 and months between 1 and 1200'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    WITH m AS (SELECT * FROM billing._model_usage(period_start, period_end))
    SELECT jsonb_build_object(
               'cost', coalesce(sum(m.cost + m.estimated_cost), 0),
               'estimated_cost', coalesce(sum(m.estimated_cost), 0),
               'tokens', coalesce(sum(m.prompt_tokens + m.completion_tokens), 0),
               'prompt_tokens', coalesce(sum(m.prompt_tokens), 0),
               'completion_tokens', coalesce(sum(m.completion_tokens), 0),
               'cached_tokens', coalesce(sum(m.cached_tokens), 0),
               'messages', coalesce(sum(m.messages), 0),
               'estimated_tokens', coalesce(sum(m.estimated_prompt + m.estimated_completion), 0),
               'unpriced_tokens', coalesce(sum(m.unpriced_tokens), 0),
               'by_model', coalesce((
                   SELECT jsonb_object_agg(b.model, jsonb_build_object('cost', b.cost, 'tokens', b.tokens,
                                                                        'messages', b.messages))
                     FROM (SELECT CASE WHEN m2.model = '' THEN '(none)' ELSE m2.model END AS model,
                                  sum(m2.cost + m2.estimated_cost) AS cost,
                                  sum(m2.prompt_tokens + m2.completion_tokens + m2.estimated_prompt
                                      + m2.estimated_completion + m2.unsplit_tokens) AS tokens,
                                  sum(m2.messages) AS messages
                             FROM m AS m2
                            WHERE m2.prompt_tokens + m2.completion_tokens + m2.estimated_prompt
                                  + m2.estimated_completion + m2.unsplit_tokens <> 0
                            GROUP BY 1) AS b), '{}'::jsonb))
      INTO openai
      FROM m;

    SELECT jsonb_build_object(
               'cost', coalesce(sum(a.cost), 0),
               'emails', coalesce(sum(a.quantity) FILTER (WHERE a.service = 'ses'), 0),
               'breakdown', coalesce(jsonb_object_agg(a.service, jsonb_build_object(
                                'quantity', a.quantity, 'cost', a.cost, 'basis', a.basis))
                                FILTER (WHERE a.service IS NOT NULL), '{}'::jsonb),
               'source', CASE WHEN count(*) = 0 THEN 'estimate'
                              WHEN bool_and(a.basis = 'actual') THEN 'actual'
                              WHEN bool_or(a.basis = 'actual') THEN 'mixed' ELSE 'estimate' END)
      INTO aws
      FROM billing._aws_usage(period_start, period_end) AS a;

    SELECT coalesce(jsonb_agg(jsonb_build_object('conversation_id', c.conversation_id, 'cost', c.cost,
                                                 'tokens', c.tokens, 'messages', c.messages)
                              ORDER BY c.cost DESC, c.conversation_id), '[]'::jsonb)
      INTO conversations
      FROM billing._top_conversations(period_start, period_end, top_conversations) AS c;

    -- History: the `months` months that end with the period's last month.
    last_month := billing.month_of(period_end - interval '1 microsecond');
    history_from := (last_month - (months - 1) * interval '1 month')::date;
    WITH h AS (
        SELECT h.month, h.source, h.cost
          FROM billing.history(billing.month_start(history_from),
                               billing.month_end(last_month)) AS h
    )
    SELECT jsonb_agg(jsonb_build_object(
               'month', to_char(g.m, 'YYYY-MM'),
               'openai', coalesce((SELECT sum(h.cost) FROM h WHERE h.month = g.m AND h.source = 'openai'), 0),
               'aws', coalesce((SELECT sum(h.cost) FROM h WHERE h.month = g.m AND h.source = 'aws'), 0),
               'total', coalesce((SELECT sum(h.cost) FROM h WHERE h.month = g.m), 0))
             ORDER BY g.m)
      INTO hist
      FROM generate_series(history_from, last_month, interval '1 month') AS g(m);

    RETURN jsonb_build_object(
        'period', jsonb_build_object('start', period_start, 'end', period_end),
        'openai', openai,
        'aws', aws,
        'total_cost', (openai ->> 'cost')::numeric + (aws ->> 'cost')::numeric,
        'conversations', conversations,
        'history', hist);
END
$$;
COMMENT ON FUNCTION billing.dashboard(timestamptz, timestamptz, integer, integer) IS
    'The billing page for usage with period_start <= time < period_end: OpenAI and AWS cards, top conversations, and the history of the months ending with the period.';

CREATE OR REPLACE FUNCTION billing.dashboard(months integer DEFAULT 6, top_conversations integer DEFAULT 50,
                                  at timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT billing.dashboard(billing.month_start(billing.month_of(at)),
                             billing.month_end(billing.month_of(at)),
                             top_conversations, months)
$$;
COMMENT ON FUNCTION billing.dashboard(integer, integer, timestamptz) IS
    'The billing page for the month that contains `at`: SELECT billing.dashboard(); is the whole /api/billing payload.';

-- The top conversations of a period. For one whole fresh month (the usual
-- dashboard) it reads the rollup's (month, cost) index: the first N + K rows,
-- K being the conversations with unmerged ledger rows, are enough to be exact.
CREATE OR REPLACE FUNCTION billing._top_conversations(p_from timestamptz, p_to timestamptz, p_limit integer)
RETURNS TABLE (conversation_id text, cost numeric, tokens bigint, messages bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m date := billing.month_of(p_from);
    whole_month boolean;
    k bigint;
BEGIN
    whole_month := p_from = billing.month_start(m)
                   AND p_to = billing.month_end(m)
                   AND NOT EXISTS (SELECT 1 FROM billing.tracked_tables t WHERE billing._is_stale(t.id, m));
    IF NOT whole_month THEN
        RETURN QUERY
        SELECT c.conversation_id, sum(c.cost), sum(c.prompt_tokens + c.completion_tokens)::bigint,
               sum(c.messages)::bigint
          FROM billing._conversation_usage(p_from, p_to) AS c
         GROUP BY c.conversation_id
         ORDER BY 2 DESC, 1
         LIMIT p_limit;
        RETURN;
    END IF;

    SELECT count(*) INTO k
      FROM (SELECT DISTINCT l.source_id, l.conversation_id FROM billing.usage_ledger AS l
             WHERE l.created_at >= p_from AND l.created_at < p_to) AS d;
    RETURN QUERY
    WITH candidates AS (
        (SELECT u.source_id, u.conversation_id FROM billing.conversation_usage AS u
          WHERE u.month = m ORDER BY u.cost DESC, u.conversation_id LIMIT p_limit + k)
        UNION
        SELECT DISTINCT l.source_id, l.conversation_id FROM billing.usage_ledger AS l
         WHERE l.created_at >= p_from AND l.created_at < p_to
    ), totals AS (
        SELECT x.conversation_id, sum(x.cost) AS cost, sum(x.tokens)::bigint AS tokens,
               sum(x.messages)::bigint AS messages
          FROM (-- Plain equality, so that each candidate is one probe of the
                -- rollup's unique index; the NULL conversation apart.
                SELECT u.conversation_id, u.cost, u.prompt_tokens + u.completion_tokens AS tokens, u.messages
                  FROM candidates AS c
                  JOIN billing.conversation_usage AS u
                    ON u.source_id = c.source_id AND u.month = m AND u.conversation_id = c.conversation_id
                UNION ALL
                SELECT u.conversation_id, u.cost, u.prompt_tokens + u.completion_tokens, u.messages
                  FROM billing.conversation_usage AS u
                 WHERE u.month = m AND u.conversation_id IS NULL
                   AND EXISTS (SELECT 1 FROM candidates AS c
                                WHERE c.source_id = u.source_id AND c.conversation_id IS NULL)
                UNION ALL
                SELECT l.conversation_id, l.cost + l.estimated_cost, l.prompt_tokens + l.completion_tokens,
                       l.messages
                  FROM billing._ledger_priced AS l
                 WHERE l.created_at >= p_from AND l.created_at < p_to) AS x
         GROUP BY x.conversation_id
        HAVING sum(x.messages) <> 0
    )
    SELECT t.conversation_id, t.cost, t.tokens, t.messages FROM totals AS t
     ORDER BY t.cost DESC, t.conversation_id
     LIMIT p_limit;
END
$$;


------------------------------------------------------------------------------
-- Row-level security: the readable tables once per query
------------------------------------------------------------------------------

-- The tracked tables the current role may read: the one statement of the
-- rule "a role sees a table's costs only if it may SELECT the table".
-- security_invoker: it reads billing.tracked_tables with the reader's own
-- privileges, as 0.2's billing._may_read_source() did. PUBLIC may select
-- from it (what it returns depends on the caller), so that roles granted
-- SELECT on billing's tables before this view existed keep reading.
CREATE VIEW billing._readable_sources WITH (security_invoker = true) AS
SELECT t.id FROM billing.tracked_tables AS t WHERE pg_catalog.has_table_privilege(t.relation, 'SELECT');
GRANT SELECT ON billing._readable_sources TO PUBLIC;

CREATE OR REPLACE FUNCTION billing._may_read_source(p_source smallint) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT p_source OPERATOR(pg_catalog.=) ANY (SELECT r.id FROM billing._readable_sources AS r)
$$;

-- 0.2's policies called billing._may_read_source() for every row (a SQL
-- function with a sub-select is never inlined: about 2.5 times the
-- dashboard's time for a reader that is not the tables' owner). An
-- uncorrelated IN over the view is computed once per query, as a hashed
-- sub-plan.
ALTER POLICY source_readers ON billing.month_usage
    USING (source_id IN (SELECT r.id FROM billing._readable_sources AS r));
ALTER POLICY source_readers ON billing.conversation_usage
    USING (source_id IN (SELECT r.id FROM billing._readable_sources AS r));
ALTER POLICY source_readers ON billing.usage_ledger
    USING (source_id IN (SELECT r.id FROM billing._readable_sources AS r));
ALTER POLICY source_readers ON billing.stale_months
    USING (source_id IN (SELECT r.id FROM billing._readable_sources AS r));
ALTER POLICY source_readers ON billing.estimated_prompts
    USING (source_id IN (SELECT r.id FROM billing._readable_sources AS r));
ALTER POLICY source_readers ON billing.problem_messages
    USING (source_id IN (SELECT r.id FROM billing._readable_sources AS r));

------------------------------------------------------------------------------
-- Tracking triggers depend on the extension
------------------------------------------------------------------------------

-- Marks the objects that track_messages / track_profiles create on a table
-- as depending on the extension: DROP EXTENSION billing then drops them too,
-- while pg_dump still dumps them (with these marks) because they are not
-- members.
CREATE FUNCTION billing._depend_on_extension(fn regprocedure, relation regclass, triggers name[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tg name;
BEGIN
    IF fn IS NOT NULL THEN
        EXECUTE format('ALTER FUNCTION %s DEPENDS ON EXTENSION billing', fn);
    END IF;
    FOREACH tg IN ARRAY triggers LOOP
        IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = relation AND tgname = tg) THEN
            EXECUTE format('ALTER TRIGGER %I ON %s DEPENDS ON EXTENSION billing', tg, relation);
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION billing._depend_on_extension(regprocedure, regclass, name[]) FROM PUBLIC;

-- The trigger function of one tracked table, made from its row of
-- billing.tracked_tables (the column names, and the table's name for the
-- estimate of replies without usage). Also run again when the table or one
-- of its columns is renamed (billing._tracked_table_altered).
CREATE FUNCTION billing._create_trigger_function(t billing.tracked_tables) RETURNS regprocedure
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn text := format('billing.%I', 'track_' || t.id);
BEGIN
    -- SECURITY DEFINER: the app's role writes its own table and needs no
    -- privilege on billing's tables for the trigger to keep them up to date.
    EXECUTE format('CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
                    SET search_path = pg_catalog, pg_temp AS %L', fn, billing._trigger_source(t));
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fn);
    -- (again after a replace: CREATE OR REPLACE drops the mark)
    PERFORM billing._depend_on_extension(format('%s()', fn)::regprocedure, t.relation, ARRAY[]::name[]);
    RETURN format('%s()', fn)::regprocedure;
END
$$;
REVOKE ALL ON FUNCTION billing._create_trigger_function(billing.tracked_tables) FROM PUBLIC;

CREATE OR REPLACE FUNCTION billing._create_trigger(t billing.tracked_tables) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn regprocedure := billing._create_trigger_function(t);
BEGIN
    -- The column list is kept by attribute number: it also tells
    -- billing._tracked_table_altered which columns a rename touched.
    EXECUTE format('CREATE TRIGGER billing_track AFTER INSERT OR DELETE OR UPDATE OF %I, %I, %I, %I, %I, %I ON %s
                    FOR EACH ROW EXECUTE FUNCTION %s',
                   t.id_column, t.conversation_column, t.role_column, t.content_column, t.data_column,
                   t.created_at_column, t.relation, fn);
    EXECUTE format('CREATE TRIGGER billing_track_truncate AFTER TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION billing._tracked_truncated(%s)', t.relation, t.id);
    PERFORM billing._depend_on_extension(NULL, t.relation,
                                         ARRAY['billing_track', 'billing_track_truncate']::name[]);
END
$$;

-- One trigger function for every table whose e-mail counter is followed. Its
-- arguments: the counter's key and the service. The column is the one in
-- the trigger's UPDATE OF list, which PostgreSQL keeps by attribute number
-- (a rename follows) and pg_dump writes by name (a restore follows). A
-- profile row is written rarely, so reading the column through
-- to_jsonb(NEW) costs nothing that matters.
CREATE FUNCTION billing._profiles_counter_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col name;
    counter text := TG_ARGV[0];
    service text := TG_ARGV[1];
    new_value jsonb;
    old_value jsonb;
    before numeric := 0;
    after numeric;
BEGIN
    SELECT a.attname INTO col
      FROM pg_trigger AS g
      JOIN pg_attribute AS a ON a.attrelid = g.tgrelid AND a.attnum = g.tgattr[0]
     WHERE g.tgrelid = TG_RELID AND g.tgname = TG_NAME;
    new_value := to_jsonb(NEW) -> col -> counter;
    -- Counters that are not plain numbers are ignored (nothing to count).
    IF jsonb_typeof(new_value) = 'number' THEN
        after := new_value::text::numeric;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        old_value := to_jsonb(OLD) -> col -> counter;
        IF jsonb_typeof(old_value) = 'number' THEN
            before := old_value::text::numeric;
        END IF;
    END IF;
    -- Only increases are usage; a decrease is the monthly reset.
    IF after > before AND after = round(after) THEN
        INSERT INTO billing.aws_usage (service, quantity, at, note, origin)
        VALUES (service, after - before, now(), NULL, 'track_profiles');
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION billing._profiles_counter_changed() FROM PUBLIC;

CREATE OR REPLACE FUNCTION billing.track_profiles(relation regclass, counter text DEFAULT 'emails_sent_this_month',
                                                  data_column name DEFAULT 'data', service text DEFAULT 'ses')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute AS a
                    WHERE a.attrelid = relation AND a.attname = data_column AND a.attnum > 0
                      AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'billing: table % has no column %', relation, data_column USING ERRCODE = 'undefined_column';
    END IF;
    PERFORM billing._create_profiles_trigger(relation, data_column, counter, service);
    -- What the counters already hold was sent this month before tracking began.
    EXECUTE format($q$INSERT INTO billing.aws_usage (service, quantity, at, note, origin)
        SELECT %3$L, sum((p.%1$I ->> %2$L)::numeric), now(), 'counter value when tracking began', 'track_profiles'
          FROM %4$s AS p
         WHERE jsonb_typeof(p.%1$I -> %2$L) = 'number' AND (p.%1$I ->> %2$L)::numeric > 0
        HAVING sum((p.%1$I ->> %2$L)::numeric) > 0 $q$, data_column, counter, service, relation);
END
$$;

CREATE FUNCTION billing._create_profiles_trigger(relation regclass, data_column name, counter text, service text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER billing_track_profiles AFTER INSERT OR UPDATE OF %I ON %s
                    FOR EACH ROW EXECUTE FUNCTION billing._profiles_counter_changed(%L, %L)',
                   data_column, relation, counter, service);
    PERFORM billing._depend_on_extension(NULL, relation, ARRAY['billing_track_profiles']::name[]);
END
$$;
REVOKE ALL ON FUNCTION billing._create_profiles_trigger(regclass, name, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION billing.untrack_profiles(relation regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    legacy regprocedure := to_regprocedure(format('billing.%I()', 'track_profiles_' || relation::oid));
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS billing_track_profiles ON %s', relation);
    -- The per-table function of a table tracked before 0.3 (see the end of
    -- this script), if one was left.
    IF legacy IS NOT NULL THEN
        EXECUTE format('DROP FUNCTION %s', legacy);
    END IF;
END
$$;

-- Tables tracked under 0.2.
SELECT billing._depend_on_extension(to_regprocedure(format('billing.%I()', 'track_' || t.id)), t.relation,
                                    ARRAY['billing_track', 'billing_track_truncate']::name[])
  FROM billing.tracked_tables AS t;

-- Counters followed under 0.2 had a function per table, with the counter's
-- key and the service written into its body: read them back (0.2 wrote them
-- as quoted literals), move the table to the shared function, drop the old
-- one. A body that does not read as 0.2 wrote it is left as it is, marked
-- as depending on the extension.
DO $$
DECLARE
    g record;
    counter_lit text[];
    service_lit text[];
    counter text;
    service text;
BEGIN
    FOR g IN SELECT t.tgrelid::regclass AS relation, a.attname AS data_column, p.oid::regprocedure AS fn,
                    p.prosrc
               FROM pg_catalog.pg_trigger AS t
               JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
               JOIN pg_catalog.pg_attribute AS a ON a.attrelid = t.tgrelid AND a.attnum = t.tgattr[0]
              WHERE t.tgname = 'billing_track_profiles' AND p.pronamespace = 'billing'::regnamespace
                AND p.proname = 'track_profiles_' || t.tgrelid::oid
    LOOP
        counter_lit := regexp_match(g.prosrc,
            $re$IF jsonb_typeof\(NEW\..*? -> (E?'(?:[^'\\]|''|\\.)*')\) = 'number' THEN$re$);
        service_lit := regexp_match(g.prosrc, $re$VALUES \((E?'(?:[^'\\]|''|\\.)*'), after - before,$re$);
        IF counter_lit IS NULL OR service_lit IS NULL THEN
            PERFORM billing._depend_on_extension(g.fn, g.relation, ARRAY['billing_track_profiles']::name[]);
            CONTINUE;
        END IF;
        -- The matches are single string literals: evaluating them runs nothing else.
        EXECUTE 'SELECT ' || counter_lit[1] || '::text, ' || service_lit[1] || '::text' INTO counter, service;
        EXECUTE format('DROP TRIGGER billing_track_profiles ON %s', g.relation);
        EXECUTE format('DROP FUNCTION %s', g.fn);
        PERFORM billing._create_profiles_trigger(g.relation, g.data_column, counter, service);
    END LOOP;
END
$$;

------------------------------------------------------------------------------
-- DDL on tracked tables
------------------------------------------------------------------------------

-- A rename of a tracked table or of one of its tracked columns would leave
-- the trigger function naming what no longer exists, and every write to the
-- table would fail. After each ALTER TABLE of a tracked table, the column
-- names are read again from the trigger's column list (kept by attribute
-- number, so renames follow) and the function is made anew. Never fails the
-- command: a problem is a warning.
CREATE FUNCTION billing._tracked_table_altered() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    cols name[];
BEGIN
    FOR t IN SELECT DISTINCT ON (tt.id) tt.*
               FROM billing.tracked_tables AS tt
               JOIN pg_event_trigger_ddl_commands() AS c
                 ON c.classid = 'pg_class'::regclass AND c.objid = tt.relation::oid
              ORDER BY tt.id
    LOOP
        BEGIN
            SELECT array_agg(a.attname ORDER BY k.ord) INTO cols
              FROM pg_trigger AS g
             CROSS JOIN LATERAL unnest(g.tgattr::int2[]) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute AS a ON a.attrelid = g.tgrelid AND a.attnum = k.attnum
             WHERE g.tgrelid = t.relation AND g.tgname = 'billing_track';
            IF cardinality(cols) = 6 THEN
                UPDATE billing.tracked_tables
                   SET id_column = cols[1], conversation_column = cols[2], role_column = cols[3],
                       content_column = cols[4], data_column = cols[5], created_at_column = cols[6]
                 WHERE id = t.id
                RETURNING * INTO t;
                PERFORM billing._create_trigger_function(t);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'billing: could not follow ALTER TABLE of tracked table %: %', t.relation, SQLERRM
                USING HINT = 'Run billing.untrack_messages() and billing.track_messages() on it again.';
        END;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION billing._tracked_table_altered() FROM PUBLIC;
CREATE EVENT TRIGGER billing_tracked_table_altered ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION billing._tracked_table_altered();

-- A dropped tracked table takes its costs with it, as a recomputation from
-- the (now missing) table would; its trigger function goes too, and so does
-- the e-mail counter's function of a dropped profiles table.
CREATE FUNCTION billing._tracked_table_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
BEGIN
    FOR d IN SELECT o.objid, t.id AS source_id,
                    CASE WHEN t.id IS NOT NULL
                         THEN to_regprocedure(format('billing.%I()', 'track_' || t.id)) END AS track_fn,
                    to_regprocedure(format('billing.%I()', 'track_profiles_' || o.objid)) AS profiles_fn
               FROM pg_event_trigger_dropped_objects() AS o
               LEFT JOIN billing.tracked_tables AS t ON t.relation::oid = o.objid
              WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0 AND o.object_type = 'table'
    LOOP
        CONTINUE WHEN d.source_id IS NULL AND d.profiles_fn IS NULL;
        BEGIN
            IF d.source_id IS NOT NULL THEN
                PERFORM billing._forget_rows(d.source_id);
                DELETE FROM billing.tracked_tables WHERE id = d.source_id;
            END IF;
            IF d.track_fn IS NOT NULL THEN
                EXECUTE format('DROP FUNCTION %s', d.track_fn);
            END IF;
            IF d.profiles_fn IS NOT NULL THEN
                EXECUTE format('DROP FUNCTION %s', d.profiles_fn);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'billing: could not forget dropped table %: %', d.objid, SQLERRM;
        END;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION billing._tracked_table_dropped() FROM PUBLIC;
CREATE EVENT TRIGGER billing_tracked_table_dropped ON sql_drop
    EXECUTE FUNCTION billing._tracked_table_dropped();
