-- The views: billing.history and monthly_history (per month and source),
-- conversation_costs, usage_problems, each defined once, with what reading
-- as one customer and customers named by messages add to them.
-- Relies on reads.sql, aws_usage.sql and customers.sql (loaded after them).

-- A range read by history() and savings(): both ends given, the start not
-- after the end (NULL or a reversed range read nothing, and returned no
-- rows, as if there were no usage).
CREATE FUNCTION billing._range_given(p_from timestamptz, p_to timestamptz) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_to < p_from THEN
        RAISE EXCEPTION 'billing: the range must have a start not after its end, got % to %',
                        coalesce(p_from::text, 'NULL'), coalesce(p_to::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN true;
END
$$;

-- One row per month and cost source ('openai', 'aws'), for every month with
-- usage; read as one customer (the setting billing.customer), that
-- customer's months (its conversations' usage, its recorded AWS usage).
CREATE FUNCTION billing.history(p_from timestamptz DEFAULT '-infinity', p_to timestamptz DEFAULT 'infinity')
RETURNS TABLE (month date, source text, cost numeric, basis text, messages bigint, prompt_tokens bigint,
               completion_tokens bigint, cached_tokens bigint, estimated_tokens bigint,
               unpriced_tokens bigint, emails numeric, services jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.month, 'openai', sum(m.cost + m.estimated_cost),
           CASE WHEN sum(m.estimated_prompt::numeric + m.estimated_completion) > 0 THEN 'partly estimated'
                ELSE 'actual usage' END,
           sum(m.messages)::bigint, billing._sat(sum(m.prompt_tokens)), billing._sat(sum(m.completion_tokens)),
           billing._sat(sum(m.cached_tokens)), billing._sat(sum(m.estimated_prompt::numeric + m.estimated_completion)),
           billing._sat(sum(m.unpriced_tokens)), NULL::numeric, NULL::jsonb
      FROM billing._usage_by_model(p_from, p_to) AS m
     WHERE billing._range_given(p_from, p_to) AND billing.current_customer() IS NULL
     GROUP BY m.month
    UNION ALL
    SELECT a.month, 'aws', sum(a.cost),
           CASE WHEN bool_and(a.basis = 'actual') THEN 'actual'
                WHEN bool_or(a.basis = 'actual') THEN 'mixed' ELSE 'estimate' END,
           NULL, NULL, NULL, NULL, NULL, NULL,
           coalesce(sum(a.quantity) FILTER (WHERE a.service = 'ses'), 0),
           jsonb_object_agg(a.service, billing._aws_service_entry(a.quantity, a.cost, a.unpriced_quantity, a.basis))
      FROM billing._aws_usage_by_service(p_from, p_to) AS a
     WHERE billing._range_given(p_from, p_to) AND billing.current_customer() IS NULL
     GROUP BY a.month
    UNION ALL
    SELECT c.month, 'openai', c.openai_cost,
           CASE WHEN c.estimated_tokens > 0 THEN 'partly estimated' ELSE 'actual usage' END,
           c.messages, billing._sat(c.prompt_tokens), billing._sat(c.completion_tokens), billing._sat(c.cached_tokens),
           billing._sat(c.estimated_tokens), billing._sat(c.unpriced_tokens), NULL::numeric, NULL::jsonb
      FROM billing._customer_months(p_from, p_to, billing.current_customer()) AS c
     WHERE billing._range_given(p_from, p_to) AND billing.current_customer() IS NOT NULL AND c.messages <> 0
    UNION ALL
    SELECT a.month, 'aws', sum(a.cost), 'estimate', NULL, NULL, NULL, NULL, NULL, NULL,
           coalesce(sum(a.quantity) FILTER (WHERE a.service = 'ses'), 0),
           jsonb_object_agg(a.service, billing._aws_service_entry(a.quantity, a.cost, a.unpriced_quantity, 'estimate'))
      FROM billing._aws_by_customer(p_from, p_to, billing.current_customer()) AS a
     WHERE billing._range_given(p_from, p_to) AND billing.current_customer() IS NOT NULL
     GROUP BY a.month
$$;
COMMENT ON FUNCTION billing.history(timestamptz, timestamptz) IS
    'Costs per month and source (openai, aws) for usage with p_from <= time < p_to.';

CREATE VIEW billing.monthly_history WITH (security_invoker = true) AS
SELECT h.*, sum(h.cost) OVER (PARTITION BY h.month) AS month_total
  FROM billing.history() AS h;
COMMENT ON VIEW billing.monthly_history IS
    'One row per month and cost source (openai, aws): cost, tokens, messages, e-mails, AWS services, and the month''s total.';

CREATE VIEW billing.conversation_costs WITH (security_invoker = true) AS
SELECT c.month, c.conversation_id, t.relation AS source_table, c.cost,
       billing._sat(c.prompt_tokens::numeric + c.completion_tokens + c.estimated_tokens) AS tokens,
       c.prompt_tokens, c.completion_tokens,
       c.cached_tokens, c.estimated_tokens, c.unpriced_tokens, c.messages,
       c.first_message_at, c.last_message_at
  FROM billing._usage_by_conversation('-infinity', 'infinity') AS c
  JOIN billing.tracked_tables AS t ON t.id = c.source_id;
COMMENT ON VIEW billing.conversation_costs IS 'Cost, tokens and messages per conversation and month.';

-- Messages billing cannot read, usage it cannot price, and the
-- conversations whose messages name different customers
-- (track_message_customers): one row each, the customers named, the one
-- billed, and in messages how many of its messages name another customer
-- (hidden when reading as one customer).
-- The tables whose problem rows usage_problems reads from the table, as
-- the caller, instead of from billing.problem_messages: those billing reads
-- itself until a merge takes them in (not backfilled: tracked with
-- backfill => false, or taken in anew after their trigger was disabled),
-- so that usage_problems lists what the dashboard's problems count, at
-- once, and nothing mended or deleted meanwhile. But for the tables the
-- caller may not read, and distributed ones (left to the merge, which reads
-- them each time); none when reading as one customer, as problem_messages'
-- policy hides its rows then (not from a superuser or billing's owner, to
-- whom row security does not apply).
CREATE FUNCTION billing._problems_read_from_tables() RETURNS SETOF smallint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tt.id
      FROM billing.tracked_tables AS tt
     WHERE NOT tt.backfilled AND billing._may_read_table(tt.id)
       AND billing._citus_companion(tt.id, 'problems') IS NULL AND NOT billing._citus_distributed(tt.relation)
       AND NOT (billing.current_customer() IS NOT NULL AND row_security_active('billing.problem_messages'::regclass))
$$;

-- The problem rows of those tables, read from each as
-- billing.problem_messages rows, the problem text as the trigger and the
-- merge write it. A table that cannot be read gives a WARNING and no rows.
CREATE FUNCTION billing._unfrozen_problem_rows()
RETURNS SETOF billing.problem_messages
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    m record;
    listed billing.problem_messages[];
BEGIN
    FOR t IN SELECT * FROM billing.tracked_tables AS tt
              WHERE tt.id IN (SELECT billing._problems_read_from_tables())
              ORDER BY tt.id LOOP
        BEGIN
            m := billing._row_reader(t, 'm');
            -- (the rows gathered first, so that a read that fails part-way
            -- returns none of them, as its WARNING says; one per id, the
            -- latest, as the merge keeps them)
            EXECUTE format(
                $q$SELECT array_agg(ROW(%1$s::smallint, d.message_id, CASE WHEN isfinite(d.at) THEN d.at END,
                                        d.problem)::billing.problem_messages)
                     FROM (SELECT DISTINCT ON (r.message_id) r.*
                             FROM (SELECT billing._key(%2$s) AS message_id, %3$s AS at,
                                          billing._row_problem(u.problem, %3$s) AS problem
                                     FROM %4$s AS m CROSS JOIN LATERAL %5$s AS u) AS r
                            WHERE r.problem IS NOT NULL
                            ORDER BY r.message_id, r.at DESC NULLS FIRST, r.problem) AS d$q$,
                t.id, m.id, m.at, t.relation, m.usage) INTO listed;
            RETURN QUERY SELECT * FROM unnest(listed);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'billing: could not read tracked table %: %; its problem rows are missing from billing.usage_problems',
                          t.relation, SQLERRM;
        END;
    END LOOP;
END
$$;

CREATE VIEW billing.usage_problems WITH (security_invoker = true) AS
SELECT t.relation AS source_table, p.message_id, p.created_at,
       CASE WHEN billing._countable(p.created_at) THEN billing.month_of(p.created_at) END AS month,
       'malformed data'::text AS kind, p.problem AS detail, 1::bigint AS messages, NULL::bigint AS tokens
  FROM (SELECT * FROM billing.problem_messages AS pm
         WHERE pm.source_id NOT IN (SELECT billing._problems_read_from_tables())
        UNION ALL
        SELECT * FROM billing._citus_problem_rows()
        UNION ALL
        SELECT * FROM billing._unfrozen_problem_rows()) AS p
  JOIN billing.tracked_tables AS t ON t.id = p.source_id
UNION ALL
SELECT t.relation, NULL, NULL, m.month,
       CASE WHEN m.model = '' THEN 'no model' ELSE 'unpriced model' END,
       CASE WHEN m.model = '' THEN 'usage without a model name'
            ELSE format('model "%s" has no price in billing.model_prices at that time',
                        CASE WHEN length(m.model) > 60 THEN left(m.model, 60) || '...' ELSE m.model END) END,
       NULL, billing._sat(m.unpriced_tokens::numeric - m.unsplit_tokens)
  FROM billing._usage_by_model('-infinity', 'infinity') AS m
  JOIN billing.tracked_tables AS t ON t.id = m.source_id
 WHERE m.unpriced_tokens <> m.unsplit_tokens
UNION ALL
SELECT t.relation, NULL, NULL, m.month, 'no token split',
       format('usage of model "%s" gives only a total token count: the split decides the price',
              CASE WHEN length(m.model) > 60 THEN left(m.model, 60) || '...' ELSE m.model END),
       NULL, m.unsplit_tokens
  FROM billing._usage_by_model('-infinity', 'infinity') AS m
  JOIN billing.tracked_tables AS t ON t.id = m.source_id
 WHERE m.unsplit_tokens <> 0
UNION ALL
SELECT NULL, NULL, NULL, a.month, 'unpriced AWS service',
       format('service "%s" has no price in billing.aws_prices', a.service), NULL, NULL
  FROM billing._aws_usage_by_service('-infinity', 'infinity') AS a
 WHERE a.unpriced_quantity <> 0
UNION ALL
SELECT t.relation, NULL, x.last_message_at, billing.month_of(x.last_message_at), 'several customers',
       format('conversation "%s": its messages name the customers %s; billed to %s, its latest message''s',
              CASE WHEN length(x.conversation_id) > 60 THEN left(x.conversation_id, 60) || '...' ELSE x.conversation_id END,
              array_to_string(x.customers, ', '), x.customer),
       x.messages, NULL
  FROM billing._customer_conflicts() AS x
  JOIN billing.tracked_tables AS t ON t.id = x.source_id
 WHERE billing.current_customer() IS NULL;
COMMENT ON VIEW billing.usage_problems IS
    'Messages whose data billing cannot read (one row each), per month the usage that could not be priced, and conversations whose messages name different customers.';
