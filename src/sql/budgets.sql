-- Budgets and alerts (README "Budgets and alerts"): billing.budgets (a
-- monthly amount per scope, checked when written), what a budget has spent
-- in each month of a range (_months_spend, _budget_spent_months: exactly
-- the dollars the views show), billing.budget_status and the dashboard's
-- "budgets" entry, billing.allowance() (the check the app runs before each
-- OpenAI request: rollups plus the unmerged ledger, no table scan), and
-- billing.alerts with check_alerts(), which billing.merge() runs last
-- (_merge_alerts): each threshold of each budget fires once per period, as
-- a row and a NOTIFY billing_alert sent on commit.
-- Relies on reads.sql, aws_usage.sql, views.sql and, when called,
-- customers.sql (loaded later); merge() (ledger_and_merge.sql) and
-- dashboard() (dashboard.sql) call in here.

CREATE TABLE billing.budgets (
    name            text      PRIMARY KEY,
    scope           text      NOT NULL DEFAULT 'all'
                              CHECK (scope IN ('all', 'openai', 'aws', 'model', 'conversation', 'customer')),
    model           text      CHECK ((model IS NOT NULL) = (scope = 'model')),
    conversation_id text      CHECK ((conversation_id IS NOT NULL) = (scope = 'conversation')),
    customer        text      CHECK ((customer IS NOT NULL) = (scope = 'customer')),
    amount          numeric   NOT NULL CHECK (amount > 0 AND amount < 'Infinity'),
    thresholds      numeric[] NOT NULL DEFAULT '{50,80,100}'
                              CHECK (cardinality(thresholds) BETWEEN 1 AND 20),
    blocks          boolean   NOT NULL DEFAULT false,
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE billing.budgets IS
    'Monthly budgets in USD: scope all, openai, aws, model (one catalog model), conversation or customer (billing.customer_costs''s customer); alert thresholds in percent of amount; blocks: billing.allowance() refuses requests once spent reaches amount.';
SELECT pg_catalog.pg_extension_config_dump('billing.budgets', '');

-- A budget row as written: every field checked, with an error that names
-- it (SQLSTATE 23502 for a missing value, 23514 for a wrong one); scope
-- trimmed and lower-cased, thresholds sorted. SECURITY DEFINER (see
-- permissions below): it reads the price catalog for the model warning.
CREATE FUNCTION billing._budget_checked() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t numeric;
    bad numeric;
BEGIN
    IF NEW.name IS NULL OR btrim(NEW.name) = '' THEN
        RAISE EXCEPTION 'billing.budgets: name must be given' USING ERRCODE = 'not_null_violation', COLUMN = 'name',
            SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF length(NEW.name) > 200 THEN
        RAISE EXCEPTION 'billing.budgets: name must be at most 200 characters, got %', length(NEW.name)
            USING ERRCODE = 'check_violation', COLUMN = 'name', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF NEW.scope IS NULL THEN
        RAISE EXCEPTION 'billing.budgets: scope must be given (all, openai, aws, model, conversation or customer)'
            USING ERRCODE = 'not_null_violation', COLUMN = 'scope', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    NEW.scope := lower(btrim(NEW.scope));
    IF NEW.scope NOT IN ('all', 'openai', 'aws', 'model', 'conversation', 'customer') THEN
        RAISE EXCEPTION 'billing.budgets: scope must be all, openai, aws, model, conversation or customer, got "%"', NEW.scope
            USING ERRCODE = 'check_violation', COLUMN = 'scope', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF NEW.scope = 'model' AND (NEW.model IS NULL OR btrim(NEW.model) = '') THEN
        RAISE EXCEPTION 'billing.budgets: model must be given when scope is model'
            USING ERRCODE = 'not_null_violation', COLUMN = 'model', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF NEW.scope <> 'model' AND NEW.model IS NOT NULL THEN
        RAISE EXCEPTION 'billing.budgets: model is only for scope model (this budget''s scope is %)', NEW.scope
            USING ERRCODE = 'check_violation', COLUMN = 'model', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF NEW.scope = 'conversation' AND NEW.conversation_id IS NULL THEN
        RAISE EXCEPTION 'billing.budgets: conversation_id must be given when scope is conversation'
            USING ERRCODE = 'not_null_violation', COLUMN = 'conversation_id', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF NEW.scope <> 'conversation' AND NEW.conversation_id IS NOT NULL THEN
        RAISE EXCEPTION 'billing.budgets: conversation_id is only for scope conversation (this budget''s scope is %)', NEW.scope
            USING ERRCODE = 'check_violation', COLUMN = 'conversation_id', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF NEW.scope = 'customer' AND (NEW.customer IS NULL OR btrim(NEW.customer) = '') THEN
        RAISE EXCEPTION 'billing.budgets: customer must be given when scope is customer'
            USING ERRCODE = 'not_null_violation', COLUMN = 'customer', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF NEW.scope <> 'customer' AND NEW.customer IS NOT NULL THEN
        RAISE EXCEPTION 'billing.budgets: customer is only for scope customer (this budget''s scope is %)', NEW.scope
            USING ERRCODE = 'check_violation', COLUMN = 'customer', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF NEW.amount IS NULL THEN
        RAISE EXCEPTION 'billing.budgets: amount must be given (USD per month)'
            USING ERRCODE = 'not_null_violation', COLUMN = 'amount', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF NEW.amount <= 0 OR NEW.amount = 'NaN' OR NEW.amount = 'Infinity' THEN
        RAISE EXCEPTION 'billing.budgets: amount must be a finite number of dollars above 0, got %', NEW.amount
            USING ERRCODE = 'check_violation', COLUMN = 'amount', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF NEW.thresholds IS NULL OR cardinality(NEW.thresholds) = 0 THEN
        RAISE EXCEPTION 'billing.budgets: thresholds must list at least one percentage (default {50,80,100})'
            USING ERRCODE = 'not_null_violation', COLUMN = 'thresholds', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    IF array_ndims(NEW.thresholds) > 1 OR cardinality(NEW.thresholds) > 20 THEN
        RAISE EXCEPTION 'billing.budgets: thresholds must be a list of at most 20 percentages, got %', NEW.thresholds
            USING ERRCODE = 'check_violation', COLUMN = 'thresholds', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    SELECT x INTO bad FROM unnest(NEW.thresholds) AS x
     WHERE x IS NULL OR x = 'NaN' OR x <= 0 OR x > 1000 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'billing.budgets: thresholds must be percentages above 0 and at most 1000, got %',
                        coalesce(bad::text, 'NULL')
            USING ERRCODE = 'check_violation', COLUMN = 'thresholds', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    SELECT x INTO t FROM unnest(NEW.thresholds) AS x GROUP BY x HAVING count(*) > 1 ORDER BY x LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'billing.budgets: thresholds must not repeat a percentage, got % more than once', t
            USING ERRCODE = 'check_violation', COLUMN = 'thresholds', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    NEW.thresholds := ARRAY(SELECT x FROM unnest(NEW.thresholds) AS x ORDER BY x);
    -- A model no price row names: the budget would cover nothing (a
    -- warning, not an error: a restore loads budgets before user prices;
    -- not said there at all, where it was false by the restore's end:
    -- pg_dump's scripts and pg_restore turn check_function_bodies off).
    IF NEW.scope = 'model' AND NOT EXISTS (SELECT 1 FROM billing.model_prices AS p WHERE p.model = NEW.model)
       AND current_setting('check_function_bodies') = 'on' THEN
        RAISE WARNING 'billing.budgets: no price in billing.model_prices names model "%": budget "%" covers no usage until one does',
                      NEW.model, NEW.name
            USING HINT = 'A model budget counts the usage of every stored model name the catalog resolves to this name, e.g. gpt-4o-mini-2024-07-18 for gpt-4o-mini.';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER budgets_checked BEFORE INSERT OR UPDATE ON billing.budgets
    FOR EACH ROW EXECUTE FUNCTION billing._budget_checked();

-- Fired alerts: one row per budget, period (month) and threshold, never
-- deleted or un-fired by billing. delivered_at, attempts, last_error,
-- claimed_by and next_attempt_at belong to the program that delivers them
-- (billing.claim_alerts() below; the id is its idempotency key).
CREATE TABLE billing.alerts (
    id           bigint      GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    budget       text        NOT NULL,
    threshold    numeric     NOT NULL,
    period       date        NOT NULL,
    spent        numeric     NOT NULL,
    amount       numeric     NOT NULL,
    fired_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    claimed_by   text,
    next_attempt_at timestamptz,
    customer     text,   -- the budget's customer when it fired (a customer budget's)
    -- (the amount too: a budget raised in a month fires its thresholds
    -- again, of the new amount; keyed without it, none fired any more)
    UNIQUE (budget, period, threshold, amount)
);
CREATE INDEX alerts_undelivered ON billing.alerts (id) WHERE delivered_at IS NULL;
COMMENT ON TABLE billing.alerts IS
    'Budget alerts, one per budget, period (the month''s first day), threshold (percent) and amount, fired once when spent first reached amount x threshold / 100; each also sent as NOTIFY billing_alert on commit.';
SELECT pg_catalog.pg_extension_config_dump('billing.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('billing.alerts_id_seq', '');

-- C body: src/pg/ledger_spend.cpp (ledger_spend)
CREATE FUNCTION billing._ledger_spend(p_from timestamptz, p_to timestamptz, p_estimate_model text,
                                      p_conversations text[])
RETURNS TABLE (source_id smallint, month date, model text, conversation_id text, cost numeric)
AS 'MODULE_PATHNAME', 'ledger_spend' LANGUAGE C STABLE ROWS 20;
COMMENT ON FUNCTION billing._ledger_spend(timestamptz, timestamptz, text, text[]) IS
    'Dollars (actual and estimated) of the unmerged ledger rows with p_from <= created_at < p_to, per tracked table, month and model key, and apart for the conversations (as billing._key keys them) of p_conversations.';

-- What each month of p_first .. p_last (first days of months) cost,
-- exactly as the views show it, in the pieces budgets need, per month:
-- ('model', a model key as stored, dollars), ('conversation', a
-- conversation of p_conversations as billing._key keys it, dollars) and
-- ('aws', NULL, dollars, one row per month); a key may come in several
-- rows (one per way it was read). The rules of billing._usage_by_model and
-- _usage_by_conversation: the rollups plus the unmerged ledger where they
-- are current, the tracked table itself for stale months and tables not
-- taken in yet. The whole range is read once (the ledger by
-- billing._ledger_spend, AWS by _aws_usage_by_service, each range of
-- _table_ranges scanned once), grouped by month; a budgeted
-- conversation's rollups by one probe of their unique index per table,
-- month and conversation, whatever the statistics say (OFFSET 0 keeps the
-- planner from turning the probes into a scan of the months' rows). PL/pgSQL, so that its plans are kept
-- for the session.
CREATE FUNCTION billing._months_spend(p_first date, p_last date, p_conversations text[])
RETURNS TABLE (month date, kind text, key text, spent numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    p_from timestamptz := billing.month_start(p_first);
    p_to timestamptz := billing.month_end(p_last);
    months date[] := ARRAY(SELECT g.m::date FROM generate_series(p_first, p_last, interval '1 month') AS g(m));
    keys text[] := ARRAY(SELECT DISTINCT billing._key(c) FROM unnest(p_conversations) AS c WHERE c IS NOT NULL);
BEGIN
    PERFORM billing._require_reader();
    RETURN QUERY
    WITH l AS MATERIALIZED (
        SELECT * FROM billing._ledger_spend(p_from, p_to, billing._estimate_model(), keys)
    )
    SELECT x.month, 'model', x.model, sum(x.cost)
      FROM (SELECT u.source_id, u.month, u.model, u.cost + u.estimated_cost AS cost
              FROM billing.month_usage AS u WHERE u.month >= p_first AND u.month <= p_last
            UNION ALL
            SELECT l.source_id, l.month, l.model, l.cost FROM l) AS x
     CROSS JOIN LATERAL billing._rollups_current(x.source_id, x.month) AS fresh
     GROUP BY x.month, x.model
    UNION ALL
    SELECT x.month, 'conversation', x.conversation_id, sum(x.cost)
      FROM (SELECT c.source_id, c.month, c.conversation_id, c.cost
              FROM billing.tracked_tables AS t
             CROSS JOIN unnest(months) AS mo(month)
             CROSS JOIN unnest(keys) AS k(id)
             CROSS JOIN LATERAL (SELECT r.source_id, r.month, r.conversation_id, r.cost
                                   FROM billing.conversation_usage AS r
                                  WHERE r.source_id = t.id AND r.month = mo.month AND r.conversation_id = k.id
                                 OFFSET 0) AS c
            UNION ALL
            SELECT l.source_id, l.month, l.conversation_id, l.cost FROM l WHERE l.conversation_id IS NOT NULL) AS x
     CROSS JOIN LATERAL billing._rollups_current(x.source_id, x.month) AS fresh
     GROUP BY x.month, x.conversation_id
    UNION ALL
    SELECT mo.month, 'aws', NULL, coalesce(sum(a.cost), 0)
      FROM unnest(months) AS mo(month)
      LEFT JOIN billing._aws_usage_by_service(p_from, p_to) AS a ON a.month = mo.month
     GROUP BY mo.month;
    FOR s IN SELECT * FROM billing._table_ranges(p_from, p_to) LOOP
        RETURN QUERY
        WITH r AS MATERIALIZED (
            SELECT * FROM billing._scan_table_safely(s.source_id, s.range_from, s.range_to)
        )
        SELECT r.month, 'model', coalesce(r.model, ''), sum(r.cost + r.estimated_cost) FROM r GROUP BY 1, 3
        UNION ALL
        SELECT r.month, 'conversation', r.conversation_id, sum(r.cost + r.estimated_cost)
          FROM r WHERE r.conversation_id = ANY (keys) GROUP BY 1, 3;
    END LOOP;
END
$$;

-- Each budget's dollars spent in each month of p_first .. p_last (first
-- days of months), the months read in one pass (_months_spend). A stored
-- model name is resolved at its month's last instant; the replies without
-- a model count for the estimate_model that priced them.
CREATE FUNCTION billing._budget_spent_months(p_first date, p_last date)
RETURNS TABLE (month date, budget text, spent numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH p AS MATERIALIZED (
        SELECT * FROM billing._months_spend(p_first, p_last, ARRAY(SELECT b.conversation_id FROM billing.budgets AS b
                                                                    WHERE b.scope = 'conversation'))
    ), m AS (
        SELECT p.month, p.key, sum(p.spent) AS spent FROM p WHERE p.kind = 'model' GROUP BY p.month, p.key
    ), r AS (
        SELECT m.month, rm.model, sum(m.spent) AS spent
          FROM m CROSS JOIN LATERAL billing.resolve_model_price(
                     CASE WHEN m.key = '' THEN billing._estimate_model() ELSE m.key END,
                     billing.month_end(m.month) - interval '1 microsecond') AS rm
         WHERE rm.model IS NOT NULL
         GROUP BY m.month, rm.model
    ), c AS (
        SELECT p.month, p.key, sum(p.spent) AS spent FROM p WHERE p.kind = 'conversation' GROUP BY p.month, p.key
    ), t AS (
        SELECT g.m::date AS month,
               (SELECT coalesce(sum(m.spent), 0) FROM m WHERE m.month = g.m::date) AS openai,
               (SELECT coalesce(sum(p.spent), 0) FROM p WHERE p.kind = 'aws' AND p.month = g.m::date) AS aws
          FROM generate_series(p_first, p_last, interval '1 month') AS g(m)
    ), k AS (
        -- A customer's months as billing.customer_costs shows them (OpenAI
        -- and AWS), read only when a customer budget exists.
        SELECT x.month, x.customer, sum(x.total_cost) AS spent
          FROM (SELECT DISTINCT b.customer FROM billing.budgets AS b WHERE b.scope = 'customer') AS w
         CROSS JOIN LATERAL billing._customer_months(billing.month_start(p_first), billing.month_end(p_last),
                                                     w.customer) AS x
         WHERE x.customer = w.customer
         GROUP BY x.month, x.customer
    )
    SELECT t.month, b.name,
           CASE b.scope WHEN 'all' THEN t.openai + t.aws WHEN 'openai' THEN t.openai WHEN 'aws' THEN t.aws
                        WHEN 'model' THEN coalesce(r.spent, 0) WHEN 'customer' THEN coalesce(k.spent, 0)
                        ELSE coalesce(c.spent, 0) END
      FROM billing.budgets AS b
     CROSS JOIN t
      LEFT JOIN r ON b.scope = 'model' AND r.month = t.month AND r.model = b.model
      LEFT JOIN c ON b.scope = 'conversation' AND c.month = t.month AND c.key = billing._key(b.conversation_id)
      LEFT JOIN k ON b.scope = 'customer' AND k.month = t.month AND k.customer = b.customer;
END
$$;

-- Each budget's dollars spent in a month (check_alerts()).
CREATE FUNCTION billing._budget_spent(p_month date)
RETURNS TABLE (budget text, spent numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT s.budget, s.spent FROM billing._budget_spent_months(p_month, p_month) AS s;
END
$$;

-- Every budget's status in a month, with `p_now` as the clock. The
-- forecast is billing.forecast()'s (forecast.sql), per budget: "rate
-- blend", spent + remaining days x (spent / days + (1 - f) x past daily),
-- f the elapsed fraction of the month and past daily the budget's daily
-- average over the history window (the up to 3 whole months before, those
-- before and equal to the first month with any cost left out; their spend
-- read from the rollups); "run rate" when the window is empty: spent x
-- month length / time elapsed, the elapsed time counted as at least one
-- day; "month over": the spent amount once the month is over.
CREATE FUNCTION billing._budget_status(p_month date, p_now timestamptz)
RETURNS TABLE (budget text, scope text, model text, conversation_id text, period date, amount numeric,
               spent numeric, remaining numeric, percent numeric, forecast numeric, state text, blocks boolean,
               thresholds numeric[], forecast_method text, customer text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_from timestamptz := billing.month_start(p_month);
    p_to timestamptz := billing.month_end(p_month);
    m_days numeric := extract(epoch FROM p_to - p_from) / 86400;
    m_elapsed numeric := least(greatest(extract(epoch FROM p_now - p_from) / 86400, 0), m_days);
    first_month date;
    w_days numeric;
    w_months integer := 0;
    w_first date;
BEGIN
    IF p_now < p_to THEN
        -- The first month billing.history shows before p_month: read from
        -- the two reads it unites (a plan kept for the session, where the
        -- SQL function would be planned again at each call), or from it
        -- when reading as one customer.
        IF billing.current_customer() IS NULL THEN
            first_month := least((SELECT min(u.month) FROM billing._usage_by_model('-infinity', p_from) AS u),
                                 (SELECT min(a.month) FROM billing._aws_usage_by_service('-infinity', p_from) AS a));
        ELSE
            first_month := (SELECT min(h.month) FROM billing.history('-infinity', p_from) AS h);
        END IF;
        SELECT sum(w.days), count(*), min(w.month) INTO w_days, w_months, w_first
          FROM billing._forecast_window(p_month, first_month) AS w;
    END IF;
    -- The month and its window (whole months just before it) read in one
    -- pass.
    RETURN QUERY
    WITH a AS MATERIALIZED (
        SELECT * FROM billing._budget_spent_months(coalesce(w_first, p_month), p_month)
    ), s AS (
        SELECT a.budget, a.spent FROM a WHERE a.month = p_month
    ), past AS (
        SELECT a.budget, sum(a.spent) AS spent
          FROM a
         WHERE w_months > 0 AND a.month < p_month
         GROUP BY a.budget
    )
    SELECT b.name, b.scope, b.model, b.conversation_id, p_month, b.amount, s.spent, b.amount - s.spent,
           round(s.spent / b.amount * 100, 2),
           CASE WHEN p_now >= p_to THEN s.spent
                WHEN w_months > 0
                THEN round(s.spent + (m_days - m_elapsed) * (s.spent / m_days
                                                              + (1 - m_elapsed / m_days) * coalesce(p.spent, 0) / w_days), 6)
                ELSE round(s.spent * extract(epoch FROM p_to - p_from)
                           / greatest(extract(epoch FROM p_now - p_from), 86400), 6) END,
           CASE WHEN s.spent >= b.amount THEN 'exceeded'
                WHEN s.spent >= b.amount * b.thresholds[1] / 100 THEN 'warning'
                ELSE 'ok' END,
           b.blocks, b.thresholds,
           CASE WHEN p_now >= p_to THEN 'month over' WHEN w_months > 0 THEN 'rate blend' ELSE 'run rate' END,
           b.customer
      FROM billing.budgets AS b
      JOIN s ON s.budget = b.name
      LEFT JOIN past AS p ON p.budget = b.name;
END
$$;

CREATE VIEW billing.budget_status WITH (security_invoker = true) AS
SELECT s.budget, s.scope, s.model, s.conversation_id, s.period, s.amount, s.spent, s.remaining, s.percent,
       s.forecast, s.state, s.blocks, s.forecast_method, s.customer
  FROM billing._budget_status(billing.month_of(now()), now()) AS s;
COMMENT ON VIEW billing.budget_status IS
    'Each budget this month: dollars spent (as the views show them), remaining, percent, forecast at the month''s end (forecast_method: rate blend, as billing.forecast(), or run rate without a whole month of history) and state (ok, warning: a threshold below 100% reached, exceeded).';

-- The dashboard's "budgets" entry: the status of the month `p_month`
-- (budget name order), or NULL for a role that may not read billing.budgets
-- (a dashboard role granted SELECT before budgets existed keeps working).
CREATE FUNCTION billing._dashboard_budgets(p_month date) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT has_table_privilege('billing.budgets', 'SELECT') THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM billing.budgets) THEN
        RETURN '[]';
    END IF;
    RETURN (SELECT jsonb_agg(jsonb_build_object(
                       'budget', s.budget, 'scope', s.scope, 'model', s.model, 'conversation_id', s.conversation_id,
                       'customer', s.customer,
                       'amount', s.amount, 'spent', s.spent, 'remaining', s.remaining, 'percent', s.percent,
                       'forecast', s.forecast, 'forecast_method', s.forecast_method, 'state', s.state,
                       'blocks', s.blocks)
                   ORDER BY s.budget)
              FROM billing._budget_status(p_month, now()) AS s);
END
$$;

-- AWS dollars of a month for billing.allowance(): the figure of
-- billing._aws_usage_by_service, read in one pass of the month's recorded
-- usage when no usage pattern is defined (patterns need that function's
-- message counts). PL/pgSQL, so that its plan is kept for the session.
CREATE FUNCTION billing._aws_month_cost(p_month date) RETURNS numeric
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET billing.unknown_service = 'ignore'
AS $$
DECLARE
    p_from timestamptz := billing.month_start(p_month);
    p_to timestamptz := billing.month_end(p_month);
BEGIN
    IF EXISTS (SELECT 1 FROM billing.aws_usage_patterns) THEN
        RETURN (SELECT coalesce(sum(a.cost), 0) FROM billing._aws_usage_by_service(p_from, p_to) AS a);
    END IF;
    RETURN (SELECT coalesce(sum(coalesce(a.cost, r.cost)), 0)
              FROM (SELECT u.service, coalesce(billing.aws_cost(u.service, u.quantity, u.at), 0) AS cost
                      FROM billing.aws_usage AS u
                     WHERE u.at >= p_from AND u.at < p_to
                     GROUP BY u.service) AS r
              FULL JOIN (SELECT x.service, x.cost FROM billing.aws_actuals AS x WHERE x.month = p_month) AS a
                     ON a.service = r.service);
END
$$;

-- What the app asks before each OpenAI request: may it go ahead, and how
-- many dollars are left under the tightest budget that applies (scope all,
-- openai, the model the request's model resolves to, its conversation)?
-- Spent is read from the rollups plus the unmerged ledger of this month
-- (no read of the app's tables): exact, except that a month a price change
-- made stale keeps its old prices here until billing.merge() rebuilds it.
-- SECURITY DEFINER: the app's role needs only EXECUTE (granted explicitly).
CREATE FUNCTION billing.allowance(model text DEFAULT NULL, conversation_id text DEFAULT NULL,
                                  customer text DEFAULT NULL, OUT allowed boolean, OUT remaining numeric, OUT budget text, OUT blocked_by text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m date := billing.month_of(now());
    p_to timestamptz := billing.month_end(m);
    resolve_at timestamptz := p_to - interval '1 microsecond';
    target text;
    conv text := billing._key(conversation_id);
    estimate_model text;
    names text[];
    scopes text[];
    amounts numeric[];
    blocking boolean[];
    openai numeric := 0;
    model_spent numeric := 0;
    conversation_spent numeric := 0;
    aws numeric := 0;
    customer_spent numeric := 0;
    left_over numeric;
BEGIN
    IF allowance.model IS NOT NULL THEN
        target := (billing.resolve_model_price(allowance.model, resolve_at)).model;
    END IF;
    -- The budgets that apply, read once.
    SELECT array_agg(b.name ORDER BY b.name), array_agg(b.scope ORDER BY b.name),
           array_agg(b.amount ORDER BY b.name), array_agg(b.blocks ORDER BY b.name)
      INTO names, scopes, amounts, blocking
      FROM billing.budgets AS b
     WHERE b.scope IN ('all', 'openai') OR (b.scope = 'model' AND b.model = target)
        OR (b.scope = 'conversation' AND billing._key(b.conversation_id) = conv)
        OR (b.scope = 'customer' AND b.customer = allowance.customer);
    allowed := true;
    IF names IS NULL THEN
        RETURN;
    END IF;
    -- (billing._estimate_model(), read here: a SQL function is planned at each call)
    SELECT coalesce(max(s.value), 'gpt-4o-mini') INTO estimate_model FROM billing.settings AS s
     WHERE s.name = 'estimate_model';
    SELECT coalesce(sum(x.cost), 0),
           coalesce(sum(x.cost) FILTER (WHERE target IS NOT NULL AND x.model IS NOT NULL
                                        AND (billing.resolve_model_price(CASE WHEN x.model = '' THEN estimate_model
                                                                              ELSE x.model END, resolve_at)).model = target), 0),
           coalesce(sum(x.conversation_cost), 0)
      INTO openai, model_spent, conversation_spent
      FROM (SELECT u.model, sum(u.cost + u.estimated_cost) AS cost, 0 AS conversation_cost
              FROM billing.month_usage AS u WHERE u.month = m GROUP BY u.model
            UNION ALL
            SELECT l.model, sum(l.cost), sum(l.cost) FILTER (WHERE l.conversation_id IS NOT NULL)
              FROM billing._ledger_spend(billing.month_start(m), p_to, estimate_model,
                                         CASE WHEN 'conversation' = ANY (scopes) THEN ARRAY[conv] END) AS l
             GROUP BY l.model
            UNION ALL
            SELECT NULL, 0, c.cost
              FROM billing.tracked_tables AS t
              JOIN billing.conversation_usage AS c ON c.source_id = t.id AND c.month = m AND c.conversation_id = conv
             WHERE 'conversation' = ANY (scopes)) AS x;
    IF 'all' = ANY (scopes) THEN
        aws := billing._aws_month_cost(m);
    END IF;
    -- The customer's month as billing.customer_costs shows it (its
    -- conversations found through the mapping, its recorded AWS usage).
    IF 'customer' = ANY (scopes) THEN
        -- (a gate fails closed: with a customer source billing cannot read,
        -- the customer's spend is not known, and the request gets the
        -- error, not an allowance)
        PERFORM billing._require_customer_sources();
        SELECT coalesce(sum(x.total_cost), 0) INTO customer_spent
          FROM billing._customer_months(billing.month_start(m), p_to, allowance.customer) AS x
         WHERE x.customer = allowance.customer;
    END IF;
    -- The tightest budget (the least remaining, then by name), and the
    -- first blocking one (by name) that has spent its amount. (The arrays
    -- are in name order.)
    FOR i IN 1 .. cardinality(names) LOOP
        left_over := amounts[i] - CASE scopes[i] WHEN 'all' THEN openai + aws WHEN 'openai' THEN openai
                                                 WHEN 'model' THEN model_spent WHEN 'customer' THEN customer_spent
                                                 ELSE conversation_spent END;
        IF remaining IS NULL OR left_over < remaining THEN
            remaining := left_over;
            budget := names[i];
        END IF;
        IF blocking[i] AND left_over <= 0 AND blocked_by IS NULL THEN
            blocked_by := names[i];
        END IF;
    END LOOP;
    allowed := blocked_by IS NULL;
END
$$;
COMMENT ON FUNCTION billing.allowance(text, text, text) IS
    'Before an OpenAI request: allowed (false once a blocking budget that applies has spent its amount), the dollars remaining under the tightest budget that applies, that budget, and the blocking budget that refuses. Reads the rollups and the unmerged ledger only.';

-- The JSON of an alert's NOTIFY billing_alert.
CREATE FUNCTION billing._alert_payload(a billing.alerts) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('id', a.id, 'budget', a.budget, 'threshold', a.threshold, 'period', a.period,
                              'spent', a.spent, 'amount', a.amount,
                              'scope', (SELECT b.scope FROM billing.budgets AS b WHERE b.name = a.budget))::text
$$;

-- Fires the alerts that are due: each threshold of each budget whose spend
-- in the month of `at` (or, for a budget that existed then, the month
-- before: actual figures and back-dated writes arrive late) has reached
-- amount x threshold / 100 and has not fired for that month yet. One row
-- each in billing.alerts and one NOTIFY billing_alert, sent when the
-- transaction commits; a concurrent call waits for the first to commit and
-- fires nothing twice (the unique key). Returns how many fired.
CREATE FUNCTION billing.check_alerts(at timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m date := billing.month_of(at);
    previous date := (billing.month_of(at) - interval '1 month')::date;
    periods date[] := ARRAY[m];
    p date;
    a billing.alerts;
    fired integer := 0;
BEGIN
    PERFORM billing._require_primary('billing.check_alerts()');
    -- (an infinite time has no month: its spend would be read month by
    -- month without end)
    IF at IS NULL OR NOT isfinite(at) THEN
        RAISE EXCEPTION 'billing.check_alerts: at must be a finite time, got %', coalesce(at::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM billing.budgets) THEN
        RETURN 0;
    END IF;
    IF EXISTS (SELECT 1 FROM billing.budgets AS b WHERE b.created_at < billing.month_end(previous)) THEN
        periods := ARRAY[previous, m];
    END IF;
    FOREACH p IN ARRAY periods LOOP
        FOR a IN
            INSERT INTO billing.alerts AS x (budget, threshold, period, spent, amount, customer)
            SELECT b.name, t.threshold, p, s.spent, b.amount, b.customer
              FROM billing.budgets AS b
              JOIN billing._budget_spent(p) AS s ON s.budget = b.name
             CROSS JOIN LATERAL unnest(b.thresholds) AS t(threshold)
             WHERE (p = m OR b.created_at < billing.month_end(p))
               AND s.spent >= b.amount * t.threshold / 100
               -- (a new amount fires again in the current month only: the
               -- month before was alerted at the amount it had, and an
               -- amount changed for this month fired its thresholds again)
               AND NOT EXISTS (SELECT 1 FROM billing.alerts AS f
                                WHERE f.budget = b.name AND f.period = p AND f.threshold = t.threshold
                                  AND (f.amount = b.amount OR p <> m))
             ORDER BY b.name, t.threshold
            ON CONFLICT (budget, period, threshold, amount) DO NOTHING
            RETURNING x.*
        LOOP
            PERFORM pg_notify('billing_alert', billing._alert_payload(a));
            fired := fired + 1;
        END LOOP;
    END LOOP;
    RETURN fired;
EXCEPTION WHEN query_canceled THEN
    PERFORM billing._raise_if_timed_out('billing.check_alerts()', SQLERRM);
    RAISE;
END
$$;
COMMENT ON FUNCTION billing.check_alerts(timestamptz) IS
    'Fires the budget alerts that are due (this month and, for budgets that existed then, last month): a row in billing.alerts and a NOTIFY billing_alert on commit, once per budget, month and threshold. billing.merge() runs it last.';

-- merge()'s last step: alerts are checked, and a failure to check them
-- (say a broken budget row) is a WARNING, never a failed merge.
CREATE FUNCTION billing._merge_alerts() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM billing.check_alerts();
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'billing: merge could not check budget alerts: %', SQLERRM
        USING HINT = 'The merge itself is done; alerts are checked again at the next merge (or SELECT billing.check_alerts()).';
END
$$;

-- The delivering program's name, as claim_alerts, alert_delivered and
-- alert_failed take it (the last two took NULL or blanks).
CREATE FUNCTION billing._check_worker(p_function text, p_worker text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_worker IS NULL OR btrim(p_worker) = '' OR length(p_worker) > 200 THEN
        RAISE EXCEPTION '%: worker must name the delivering program (1 to 200 characters)', p_function
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Delivering alerts (README "Delivering alerts", tools/alert-delivery): a
-- program claims undelivered alerts for a lease, delivers each, and marks
-- it delivered, or failed with the time of its next attempt. The claim
-- locks the rows it takes (FOR UPDATE SKIP LOCKED) only for its own short
-- statement and leaves a lease (claimed_by, next_attempt_at) behind, so
-- that two programs never deliver an alert at the same time, and an alert
-- whose program died is taken again once its lease is over. Delivery is at
-- least once: a program that delivered and died before it marked the
-- alert delivers it again; the alert's id is the idempotency key. The
-- three functions run as the extension's owner and are executable only by
-- the roles granted them, so the delivering role needs no table access.
CREATE FUNCTION billing.claim_alerts(worker text, max_alerts integer DEFAULT 10,
                                     lease interval DEFAULT '60 seconds')
RETURNS TABLE (id bigint, budget text, scope text, threshold numeric, period date, spent numeric,
               amount numeric, fired_at timestamptz, attempts integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM billing._check_worker('billing.claim_alerts', worker);
    IF max_alerts IS NULL OR max_alerts < 1 OR max_alerts > 1000 THEN
        RAISE EXCEPTION 'billing.claim_alerts: max_alerts must be between 1 and 1000, got %', coalesce(max_alerts::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF lease IS NULL OR lease < interval '1 second' OR lease > interval '1 day' THEN
        RAISE EXCEPTION 'billing.claim_alerts: lease must be between 1 second and 1 day, got %', coalesce(lease::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH c AS (
        SELECT a.id FROM billing.alerts AS a
         WHERE a.delivered_at IS NULL AND (a.next_attempt_at IS NULL OR a.next_attempt_at <= clock_timestamp())
         ORDER BY a.id
         LIMIT max_alerts
           FOR UPDATE SKIP LOCKED
    ), u AS (
        UPDATE billing.alerts AS a
           SET claimed_by = worker, next_attempt_at = clock_timestamp() + lease, attempts = a.attempts + 1
          FROM c
         WHERE a.id = c.id
        RETURNING a.id, a.budget, a.threshold, a.period, a.spent, a.amount, a.fired_at, a.attempts
    )
    SELECT u.id, u.budget, b.scope, u.threshold, u.period, u.spent, u.amount, u.fired_at, u.attempts
      FROM u LEFT JOIN billing.budgets AS b ON b.name = u.budget
     ORDER BY u.id;
END
$$;
COMMENT ON FUNCTION billing.claim_alerts(text, integer, interval) IS
    'For the program that delivers alerts: takes up to max_alerts undelivered alerts that are due (never claimed, lease over or retry time reached), oldest first, skipping those another program is claiming; each gets claimed_by = worker, a lease (next_attempt_at = now + lease) and one more attempt.';

CREATE FUNCTION billing.alert_delivered(alert_id bigint, worker text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM billing._check_worker('billing.alert_delivered', worker);
    UPDATE billing.alerts AS a
       SET delivered_at = clock_timestamp(), claimed_by = worker, next_attempt_at = NULL
     WHERE a.id = alert_id AND a.delivered_at IS NULL;
    IF FOUND THEN
        RETURN true;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM billing.alerts AS a WHERE a.id = alert_id) THEN
        RAISE EXCEPTION 'billing.alert_delivered: no alert has id %', coalesce(alert_id::text, 'NULL')
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION billing.alert_delivered(bigint, text) IS
    'For the program that delivers alerts: marks the alert delivered (delivered_at) by worker; false when it already was (another program delivered it too: delivery is at least once).';

CREATE FUNCTION billing.alert_failed(alert_id bigint, worker text, error text, retry_after interval)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM billing._check_worker('billing.alert_failed', worker);
    IF retry_after IS NULL OR retry_after < interval '0' OR retry_after > interval '1 day' THEN
        RAISE EXCEPTION 'billing.alert_failed: retry_after must be between 0 and 1 day, got %', coalesce(retry_after::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- (an alert id that names no alert is an error, as for alert_delivered)
    IF NOT EXISTS (SELECT 1 FROM billing.alerts AS a WHERE a.id = alert_id) THEN
        RAISE EXCEPTION 'billing.alert_failed: no alert has id %', coalesce(alert_id::text, 'NULL')
            USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE billing.alerts AS a
       SET last_error = left(coalesce(error, 'unknown error'), 2000),
           next_attempt_at = clock_timestamp() + retry_after
     WHERE a.id = alert_id AND a.delivered_at IS NULL AND a.claimed_by IS NOT DISTINCT FROM worker;
END
$$;
COMMENT ON FUNCTION billing.alert_failed(bigint, text, text, interval) IS
    'For the program that delivers alerts: records a failed attempt of worker (last_error, at most 2,000 characters) and when the alert is due again (now + retry_after), unless it was delivered or another program claimed it since.';

-- Who may do what (README "Permissions"): the app calls allowance() with
-- EXECUTE granted explicitly (it runs as the extension's owner and only
-- returns the budgets' figures); checking alerts writes and notifies, for
-- the extension's owner (merge()) only; the delivering program's role is
-- granted EXECUTE on claim_alerts(), alert_delivered() and alert_failed().
ALTER FUNCTION billing._budget_checked() SECURITY DEFINER;
REVOKE ALL ON FUNCTION billing._budget_checked() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.allowance(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.check_alerts(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._merge_alerts() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.claim_alerts(text, integer, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.alert_delivered(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.alert_failed(bigint, text, text, interval) FROM PUBLIC;
