-- Budgets and alerts (README "Budgets and alerts"): billing.budgets (a
-- monthly amount per scope, checked when written), what a budget has spent
-- in a month (_period_spend, _budget_spent: exactly the dollars the views
-- show), billing.budget_status and the dashboard's "budgets" entry,
-- billing.allowance() (the check the app runs before each OpenAI request:
-- rollups plus the unmerged ledger, no table scan), and billing.alerts
-- with check_alerts(), which billing.merge() runs last (_merge_alerts):
-- each threshold of each budget fires once per period, as a row and a
-- NOTIFY billing_alert sent on commit.
-- Relies on reads.sql, aws_usage.sql and views.sql; merge()
-- (ledger_and_merge.sql) and dashboard() (dashboard.sql) call in here.

CREATE TABLE billing.budgets (
    name            text      PRIMARY KEY,
    scope           text      NOT NULL DEFAULT 'all'
                              CHECK (scope IN ('all', 'openai', 'aws', 'model', 'conversation')),
    model           text      CHECK ((model IS NOT NULL) = (scope = 'model')),
    conversation_id text      CHECK ((conversation_id IS NOT NULL) = (scope = 'conversation')),
    amount          numeric   NOT NULL CHECK (amount > 0 AND amount < 'Infinity'),
    thresholds      numeric[] NOT NULL DEFAULT '{50,80,100}'
                              CHECK (cardinality(thresholds) BETWEEN 1 AND 20),
    blocks          boolean   NOT NULL DEFAULT false,
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE billing.budgets IS
    'Monthly budgets in USD: scope all, openai, aws, model (one catalog model) or conversation; alert thresholds in percent of amount; blocks: billing.allowance() refuses requests once spent reaches amount.';
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
        RAISE EXCEPTION 'billing.budgets: scope must be given (all, openai, aws, model or conversation)'
            USING ERRCODE = 'not_null_violation', COLUMN = 'scope', SCHEMA = 'billing', TABLE = 'budgets';
    END IF;
    NEW.scope := lower(btrim(NEW.scope));
    IF NEW.scope = 'customer' THEN
        RAISE EXCEPTION 'billing.budgets: scope "customer" is not available yet: billing knows no customers'
            USING ERRCODE = 'check_violation', COLUMN = 'scope', SCHEMA = 'billing', TABLE = 'budgets',
                  HINT = 'The scopes are all, openai, aws, model and conversation.';
    END IF;
    IF NEW.scope NOT IN ('all', 'openai', 'aws', 'model', 'conversation') THEN
        RAISE EXCEPTION 'billing.budgets: scope must be all, openai, aws, model or conversation, got "%"', NEW.scope
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
    -- warning, not an error: a restore loads budgets before user prices).
    IF NEW.scope = 'model' AND NOT EXISTS (SELECT 1 FROM billing.model_prices AS p WHERE p.model = NEW.model) THEN
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
-- deleted or un-fired by billing. delivered_at, attempts and last_error
-- belong to the program that delivers them (the id is its idempotency key).
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
    UNIQUE (budget, period, threshold)
);
CREATE INDEX alerts_undelivered ON billing.alerts (id) WHERE delivered_at IS NULL;
COMMENT ON TABLE billing.alerts IS
    'Budget alerts, one per budget, period (the month''s first day) and threshold (percent), fired once when spent first reached amount x threshold / 100; each also sent as NOTIFY billing_alert on commit.';
SELECT pg_catalog.pg_extension_config_dump('billing.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('billing.alerts_id_seq', '');

-- C body: src/pg/ledger_spend.cpp (ledger_spend)
CREATE FUNCTION billing._ledger_spend(p_from timestamptz, p_to timestamptz, p_estimate_model text,
                                      p_conversations text[])
RETURNS TABLE (source_id smallint, month date, model text, conversation_id text, cost numeric)
AS 'MODULE_PATHNAME', 'ledger_spend' LANGUAGE C STABLE ROWS 20;
COMMENT ON FUNCTION billing._ledger_spend(timestamptz, timestamptz, text, text[]) IS
    'Dollars (actual and estimated) of the unmerged ledger rows with p_from <= created_at < p_to, per tracked table, month and model key, and apart for the conversations (as billing._key keys them) of p_conversations.';

-- Exact dollars of some conversations (as billing._key keys them) in a
-- month, by the rules of billing._usage_by_conversation: the rollups plus
-- the unmerged ledger where they are current, the table itself elsewhere.
-- A conversation may come in several rows (one per way it was read).
CREATE FUNCTION billing._conversation_spend(p_month date, p_conversations text[])
RETURNS TABLE (conversation_id text, cost numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    p_from timestamptz := billing.month_start(p_month);
    p_to timestamptz := billing.month_end(p_month);
    keys text[] := ARRAY(SELECT DISTINCT billing._key(c) FROM unnest(p_conversations) AS c WHERE c IS NOT NULL);
BEGIN
    RETURN QUERY
    SELECT x.conversation_id, sum(x.cost)
      FROM (SELECT c.source_id, c.conversation_id, c.cost
              FROM billing.tracked_tables AS t
             CROSS JOIN unnest(keys) AS k(id)
              JOIN billing.conversation_usage AS c
                ON c.source_id = t.id AND c.month = p_month AND c.conversation_id = k.id
            UNION ALL
            SELECT l.source_id, l.conversation_id, l.cost
              FROM billing._ledger_spend(p_from, p_to, billing._estimate_model(), keys) AS l
             WHERE l.conversation_id IS NOT NULL) AS x
     CROSS JOIN LATERAL billing._rollups_current(x.source_id, p_month) AS fresh
     GROUP BY x.conversation_id;
    FOR s IN SELECT * FROM billing._table_ranges(p_from, p_to) LOOP
        RETURN QUERY
        SELECT r.conversation_id, sum(r.cost + r.estimated_cost)
          FROM billing._scan_table_safely(s.source_id, s.range_from, s.range_to) AS r
         WHERE r.conversation_id = ANY (keys)
         GROUP BY r.conversation_id;
    END LOOP;
END
$$;

-- What a month cost, as the views show it, in the pieces budgets need:
-- ('openai', NULL, dollars), ('aws', NULL, dollars), ('model', a catalog
-- model name, dollars of the stored names that resolve to it) and
-- ('conversation', its key, dollars) for the conversations asked for. A
-- stored name is resolved at the month's last instant; the replies
-- without a model count for the estimate_model that priced them.
CREATE FUNCTION billing._period_spend(p_month date, p_conversations text[])
RETURNS TABLE (kind text, key text, spent numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_from timestamptz := billing.month_start(p_month);
    p_to timestamptz := billing.month_end(p_month);
BEGIN
    RETURN QUERY
    WITH m AS MATERIALIZED (
        SELECT CASE WHEN u.model = '' THEN billing._estimate_model() ELSE u.model END AS name,
               sum(u.cost + u.estimated_cost) AS cost
          FROM billing._usage_by_model(p_from, p_to) AS u
         GROUP BY 1
    )
    SELECT 'openai', NULL::text, coalesce(sum(m.cost), 0) FROM m
    UNION ALL
    SELECT 'model', r.model, sum(m.cost)
      FROM m CROSS JOIN LATERAL billing.resolve_model_price(m.name, p_to - interval '1 microsecond') AS r
     WHERE r.model IS NOT NULL
     GROUP BY r.model
    UNION ALL
    SELECT 'aws', NULL, coalesce(sum(a.cost), 0) FROM billing._aws_usage_by_service(p_from, p_to) AS a;
    IF cardinality(p_conversations) > 0 THEN
        RETURN QUERY
        SELECT 'conversation', c.conversation_id, sum(c.cost)
          FROM billing._conversation_spend(p_month, p_conversations) AS c
         GROUP BY c.conversation_id;
    END IF;
END
$$;

-- Each budget's dollars spent in a month.
CREATE FUNCTION billing._budget_spent(p_month date)
RETURNS TABLE (budget text, spent numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH s AS MATERIALIZED (
        SELECT * FROM billing._period_spend(p_month, ARRAY(SELECT b.conversation_id FROM billing.budgets AS b
                                                             WHERE b.scope = 'conversation'))
    )
    SELECT b.name,
           coalesce(CASE b.scope
                        WHEN 'all' THEN (SELECT sum(s.spent) FROM s WHERE s.kind IN ('openai', 'aws'))
                        WHEN 'openai' THEN (SELECT sum(s.spent) FROM s WHERE s.kind = 'openai')
                        WHEN 'aws' THEN (SELECT sum(s.spent) FROM s WHERE s.kind = 'aws')
                        WHEN 'model' THEN (SELECT sum(s.spent) FROM s WHERE s.kind = 'model' AND s.key = b.model)
                        ELSE (SELECT sum(s.spent) FROM s
                               WHERE s.kind = 'conversation' AND s.key = billing._key(b.conversation_id))
                    END, 0)
      FROM billing.budgets AS b
$$;

-- Every budget's status in a month, with `p_now` as the clock: the
-- forecast extrapolates the dollars spent so far over the whole month
-- (linear run rate: spent x month length / time elapsed, the elapsed time
-- counted as at least one day), and is the spent amount once the month is over.
CREATE FUNCTION billing._budget_status(p_month date, p_now timestamptz)
RETURNS TABLE (budget text, scope text, model text, conversation_id text, period date, amount numeric,
               spent numeric, remaining numeric, percent numeric, forecast numeric, state text, blocks boolean,
               thresholds numeric[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.name, b.scope, b.model, b.conversation_id, p_month, b.amount, s.spent, b.amount - s.spent,
           round(s.spent / b.amount * 100, 2),
           CASE WHEN p_now >= billing.month_end(p_month) THEN s.spent
                ELSE round(s.spent * extract(epoch FROM billing.month_end(p_month) - billing.month_start(p_month))
                           / greatest(extract(epoch FROM p_now - billing.month_start(p_month)), 86400), 6) END,
           CASE WHEN s.spent >= b.amount THEN 'exceeded'
                WHEN s.spent >= b.amount * b.thresholds[1] / 100 THEN 'warning'
                ELSE 'ok' END,
           b.blocks, b.thresholds
      FROM billing.budgets AS b
      JOIN billing._budget_spent(p_month) AS s ON s.budget = b.name
$$;

CREATE VIEW billing.budget_status WITH (security_invoker = true) AS
SELECT s.budget, s.scope, s.model, s.conversation_id, s.period, s.amount, s.spent, s.remaining, s.percent,
       s.forecast, s.state, s.blocks
  FROM billing._budget_status(billing.month_of(now()), now()) AS s;
COMMENT ON VIEW billing.budget_status IS
    'Each budget this month: dollars spent (as the views show them), remaining, percent, forecast at the month''s end (linear run rate) and state (ok, warning: a threshold below 100% reached, exceeded).';

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
                       'amount', s.amount, 'spent', s.spent, 'remaining', s.remaining, 'percent', s.percent,
                       'forecast', s.forecast, 'state', s.state, 'blocks', s.blocks)
                   ORDER BY s.budget)
              FROM billing._budget_status(p_month, now()) AS s);
END
$$;

-- AWS dollars of a month for billing.allowance(): the figure of
-- billing._aws_usage_by_service, read in one pass of the month's recorded
-- usage when no usage pattern is defined (patterns need that function's
-- message counts).
CREATE FUNCTION billing._aws_month_cost(p_month date) RETURNS numeric
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET billing.unknown_service = 'ignore'
AS $$
    SELECT CASE WHEN EXISTS (SELECT 1 FROM billing.aws_usage_patterns)
                THEN (SELECT coalesce(sum(a.cost), 0)
                        FROM billing._aws_usage_by_service(billing.month_start(p_month), billing.month_end(p_month)) AS a)
                ELSE (SELECT coalesce(sum(coalesce(a.cost, r.cost)), 0)
                        FROM (SELECT u.service, coalesce(billing.aws_cost(u.service, u.quantity, u.at), 0) AS cost
                                FROM billing.aws_usage AS u
                               WHERE u.at >= billing.month_start(p_month) AND u.at < billing.month_end(p_month)
                               GROUP BY u.service) AS r
                        FULL JOIN (SELECT x.service, x.cost FROM billing.aws_actuals AS x WHERE x.month = p_month) AS a
                               ON a.service = r.service) END
$$;

-- What the app asks before each OpenAI request: may it go ahead, and how
-- many dollars are left under the tightest budget that applies (scope all,
-- openai, the model the request's model resolves to, its conversation)?
-- Spent is read from the rollups plus the unmerged ledger of this month
-- (no read of the app's tables): exact, except that a month a price change
-- made stale keeps its old prices here until billing.merge() rebuilds it.
-- SECURITY DEFINER: the app's role needs only EXECUTE (granted explicitly).
CREATE FUNCTION billing.allowance(model text DEFAULT NULL, conversation_id text DEFAULT NULL,
                                  OUT allowed boolean, OUT remaining numeric, OUT budget text, OUT blocked_by text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m date := billing.month_of(now());
    p_from timestamptz;
    p_to timestamptz;
    resolve_at timestamptz;
    target text;
    conv text := billing._key(conversation_id);
    applies record;
    openai numeric := 0;
    model_spent numeric := 0;
    conversation_spent numeric := 0;
    aws numeric := 0;
BEGIN
    p_from := billing.month_start(m);
    p_to := billing.month_end(m);
    resolve_at := p_to - interval '1 microsecond';
    IF allowance.model IS NOT NULL THEN
        target := (billing.resolve_model_price(allowance.model, resolve_at)).model;
    END IF;
    SELECT count(*) AS n, bool_or(b.scope IN ('all', 'openai')) AS openai, bool_or(b.scope = 'all') AS aws,
           bool_or(b.scope = 'model') AS model, bool_or(b.scope = 'conversation') AS conversation
      INTO applies
      FROM billing.budgets AS b
     WHERE b.scope IN ('all', 'openai') OR (b.scope = 'model' AND b.model = target)
        OR (b.scope = 'conversation' AND billing._key(b.conversation_id) = conv);
    allowed := true;
    IF applies.n = 0 THEN
        RETURN;
    END IF;
    SELECT coalesce(sum(x.cost), 0),
           coalesce(sum(x.cost) FILTER (WHERE applies.model AND x.model IS NOT NULL
                                        AND (billing.resolve_model_price(CASE WHEN x.model = '' THEN billing._estimate_model()
                                                                              ELSE x.model END, resolve_at)).model = target), 0),
           coalesce(sum(x.conversation_cost), 0)
      INTO openai, model_spent, conversation_spent
      FROM (SELECT u.model, sum(u.cost + u.estimated_cost) AS cost, 0 AS conversation_cost
              FROM billing.month_usage AS u WHERE u.month = m GROUP BY u.model
            UNION ALL
            SELECT l.model, sum(l.cost), sum(l.cost) FILTER (WHERE l.conversation_id IS NOT NULL)
              FROM billing._ledger_spend(p_from, p_to, billing._estimate_model(),
                                         CASE WHEN applies.conversation THEN ARRAY[conv] END) AS l
             GROUP BY l.model
            UNION ALL
            SELECT NULL, 0, c.cost
              FROM billing.tracked_tables AS t
              JOIN billing.conversation_usage AS c ON c.source_id = t.id AND c.month = m AND c.conversation_id = conv
             WHERE applies.conversation) AS x;
    IF applies.aws THEN
        aws := billing._aws_month_cost(m);
    END IF;
    SELECT s.name, s.left_over INTO budget, remaining
      FROM (SELECT b.name, b.amount - CASE b.scope WHEN 'all' THEN openai + aws WHEN 'openai' THEN openai
                                                  WHEN 'model' THEN model_spent ELSE conversation_spent END AS left_over
              FROM billing.budgets AS b
             WHERE b.scope IN ('all', 'openai') OR (b.scope = 'model' AND b.model = target)
                OR (b.scope = 'conversation' AND billing._key(b.conversation_id) = conv)) AS s
     ORDER BY s.left_over, s.name
     LIMIT 1;
    SELECT b.name INTO blocked_by
      FROM billing.budgets AS b
     WHERE b.blocks
       AND (b.scope IN ('all', 'openai') OR (b.scope = 'model' AND b.model = target)
            OR (b.scope = 'conversation' AND billing._key(b.conversation_id) = conv))
       AND b.amount <= CASE b.scope WHEN 'all' THEN openai + aws WHEN 'openai' THEN openai
                                    WHEN 'model' THEN model_spent ELSE conversation_spent END
     ORDER BY b.name
     LIMIT 1;
    allowed := blocked_by IS NULL;
END
$$;
COMMENT ON FUNCTION billing.allowance(text, text) IS
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
    a billing.alerts;
    fired integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM billing.budgets) THEN
        RETURN 0;
    END IF;
    FOR a IN
        WITH due AS (
            SELECT b.name, m AS period, b.amount, b.thresholds, s.spent
              FROM billing.budgets AS b JOIN billing._budget_spent(m) AS s ON s.budget = b.name
            UNION ALL
            SELECT b.name, previous, b.amount, b.thresholds, s.spent
              FROM billing.budgets AS b JOIN billing._budget_spent(previous) AS s ON s.budget = b.name
             WHERE b.created_at < billing.month_end(previous)
        )
        INSERT INTO billing.alerts AS x (budget, threshold, period, spent, amount)
        SELECT d.name, t.threshold, d.period, d.spent, d.amount
          FROM due AS d CROSS JOIN LATERAL unnest(d.thresholds) AS t(threshold)
         WHERE d.spent >= d.amount * t.threshold / 100
           AND NOT EXISTS (SELECT 1 FROM billing.alerts AS f
                            WHERE f.budget = d.name AND f.period = d.period AND f.threshold = t.threshold)
         ORDER BY d.period, d.name, t.threshold
        ON CONFLICT (budget, period, threshold) DO NOTHING
        RETURNING x.*
    LOOP
        PERFORM pg_notify('billing_alert', billing._alert_payload(a));
        fired := fired + 1;
    END LOOP;
    RETURN fired;
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

-- Who may do what (README "Permissions"): the app calls allowance() with
-- EXECUTE granted explicitly (it runs as the extension's owner and only
-- returns the budgets' figures); checking alerts writes and notifies, for
-- the extension's owner (merge()) only.
ALTER FUNCTION billing._budget_checked() SECURITY DEFINER;
REVOKE ALL ON FUNCTION billing._budget_checked() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.allowance(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.check_alerts(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._merge_alerts() FROM PUBLIC;
