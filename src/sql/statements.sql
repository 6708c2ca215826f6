-- Statements: issuing a month freezes, per customer with usage, a numbered
-- statement with line items (billing.statements, billing.statement_lines)
-- whose total is the views' exact total for that customer and month. Issued
-- statements never change: a later change to an issued month becomes
-- adjustment lines (credit or debit, pointing at the original statement) on
-- the customer's next statement. billing.pending_adjustments shows what the
-- next statements will carry.
-- Relies on customers.sql.

CREATE TABLE billing.statements (
    id                bigint      PRIMARY KEY,
    number            text        NOT NULL UNIQUE,
    customer          text        NOT NULL,
    month             date        NOT NULL,
    issued_at         timestamptz NOT NULL,
    usage_total       numeric     NOT NULL,   -- the month's own usage
    adjustments_total numeric     NOT NULL,   -- corrections of earlier months
    total             numeric     NOT NULL,   -- usage_total + adjustments_total
    CHECK (total = usage_total + adjustments_total)
);
-- One statement per customer and month. The customer id is the app's, of
-- any length; a btree row holds at most 2704 bytes, so its md5 is indexed.
CREATE UNIQUE INDEX statements_customer_month_key ON billing.statements (pg_catalog.md5(customer), month);
COMMENT ON TABLE billing.statements IS
    'Issued statements (billing.issue_statements): one per customer and month, never changed once issued.';
SELECT pg_catalog.pg_extension_config_dump('billing.statements', '');

-- No foreign key to billing.statements (statement_id, adjusts): both tables
-- are dumped, and pg_restore -j loads their data in parallel, in any order.
-- Only issue_statements() writes them, both in one transaction, and
-- neither can change once written.
CREATE TABLE billing.statement_lines (
    statement_id         bigint      NOT NULL,
    line                 integer     NOT NULL,
    kind                 text        NOT NULL CHECK (kind IN ('usage', 'credit', 'debit')),
    month                date        NOT NULL,   -- the month of the usage: the statement's, or the one adjusted
    adjusts              bigint,                 -- adjustments: the original statement
    source               text        NOT NULL CHECK (source IN ('openai', 'aws')),
    item                 text        NOT NULL,   -- the model as stored, or the AWS service
    description          text        NOT NULL,   -- input tokens, output tokens, ..., or the AWS unit
    quantity             numeric     NOT NULL,
    unit_price           numeric,                -- USD per unit (per token); NULL: unpriced
    price_name           text,                   -- the price row: model_prices.model or aws_prices.service
    price_effective_from timestamptz,            --   and its effective_from
    amount               numeric     NOT NULL,
    PRIMARY KEY (statement_id, line)
);
COMMENT ON TABLE billing.statement_lines IS
    'The lines of issued statements: usage per model (and price row) and AWS service, and adjustments of earlier months.';
SELECT pg_catalog.pg_extension_config_dump('billing.statement_lines', '');

CREATE TABLE billing.issued_months (
    month      date        PRIMARY KEY,
    issued_at  timestamptz NOT NULL,
    statements integer     NOT NULL
);
COMMENT ON TABLE billing.issued_months IS 'Months whose statements are issued (billing.issue_statements).';
SELECT pg_catalog.pg_extension_config_dump('billing.issued_months', '');

-- Issued is issued: no role changes or removes a statement, a line or an
-- issued month (only DROP EXTENSION removes them).
CREATE FUNCTION billing._statements_immutable() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'billing: issued statements cannot be changed (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'A later change to an issued month becomes an adjustment on the customer''s next statement.';
END
$$;
CREATE TRIGGER statements_immutable BEFORE UPDATE OR DELETE ON billing.statements
    FOR EACH ROW EXECUTE FUNCTION billing._statements_immutable();
CREATE TRIGGER statements_immutable_truncate BEFORE TRUNCATE ON billing.statements
    FOR EACH STATEMENT EXECUTE FUNCTION billing._statements_immutable();
CREATE TRIGGER statement_lines_immutable BEFORE UPDATE OR DELETE ON billing.statement_lines
    FOR EACH ROW EXECUTE FUNCTION billing._statements_immutable();
CREATE TRIGGER statement_lines_immutable_truncate BEFORE TRUNCATE ON billing.statement_lines
    FOR EACH STATEMENT EXECUTE FUNCTION billing._statements_immutable();
CREATE TRIGGER issued_months_immutable BEFORE UPDATE OR DELETE ON billing.issued_months
    FOR EACH ROW EXECUTE FUNCTION billing._statements_immutable();
CREATE TRIGGER issued_months_immutable_truncate BEFORE TRUNCATE ON billing.issued_months
    FOR EACH STATEMENT EXECUTE FUNCTION billing._statements_immutable();

-- The items of one month's usage per customer, as the views count it now:
-- OpenAI per model, price row and kind of token (the month is cut at every
-- price change within it, so that each part has one price row per model),
-- from the tracked tables with a customer source; AWS per service and price
-- row, from usage recorded with a customer. Each model's lines add up to
-- the exact cost the views give it (else one line with that cost and no
-- unit price). Read as the caller.
CREATE FUNCTION billing._month_items(p_month date)
RETURNS TABLE (customer text, source text, item text, description text, quantity numeric, unit_price numeric,
               price_name text, price_effective_from timestamptz, amount numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET billing.unknown_service = 'ignore'
AS $$
DECLARE
    m_from timestamptz := billing.month_start(p_month);
    m_to timestamptz := billing.month_end(p_month);
    est_model text := billing._estimate_model();
BEGIN
    RETURN QUERY
    WITH cuts AS (
        SELECT DISTINCT x.at FROM (
            SELECT m_from AS at UNION ALL SELECT m_to
            UNION ALL SELECT p.effective_from FROM billing.model_prices AS p
             WHERE p.effective_from > m_from AND p.effective_from < m_to) AS x
    ), parts AS (
        SELECT c.at AS p_from, lead(c.at) OVER (ORDER BY c.at) AS p_to FROM cuts AS c
    ), map AS MATERIALIZED (
        SELECT * FROM billing._customer_conversations(NULL, true)
    ), scanned AS MATERIALIZED (
        -- (each part of each table read once, before any join)
        SELECT cs.source_id, parts.p_from, r.*
          FROM parts
         CROSS JOIN billing.customer_sources AS cs
         CROSS JOIN LATERAL billing._scan_table_safely(cs.source_id, parts.p_from, parts.p_to) AS r
         WHERE parts.p_to IS NOT NULL AND billing._may_read_table(cs.source_id)
    ), groups AS (
        SELECT k.customer, r.p_from, coalesce(r.model, '') AS model,
               sum(r.prompt_tokens) AS prompt, sum(r.completion_tokens) AS completion, sum(r.cached_tokens) AS cached,
               sum(r.estimated_prompt) AS est_prompt, sum(r.estimated_completion) AS est_completion,
               sum(r.unpriced_tokens) AS unpriced, sum(r.cost) AS cost, sum(r.estimated_cost) AS estimated_cost,
               sum(r.messages) AS messages
          FROM scanned AS r
          JOIN map AS k ON k.source_id = r.source_id AND k.conversation_id = r.conversation_id
         GROUP BY 1, 2, 3
    ), priced AS (
        SELECT g.*, p.model AS p_name, p.effective_from AS p_at, p.input_per_1m / 1000000 AS p_in,
               coalesce(p.cached_input_per_1m, p.input_per_1m) / 1000000 AS p_cached, p.output_per_1m / 1000000 AS p_out,
               e.model AS e_name, e.effective_from AS e_at, e.input_per_1m / 1000000 AS e_in,
               e.output_per_1m / 1000000 AS e_out
          FROM groups AS g
          LEFT JOIN LATERAL (SELECT mp.* FROM billing.resolve_model_price(nullif(g.model, ''), g.p_from) AS k
                               JOIN billing.model_prices AS mp ON mp.model = k.model AND mp.effective_from = k.effective_from) AS p ON true
          LEFT JOIN LATERAL (SELECT mp.* FROM billing.resolve_model_price(coalesce(nullif(g.model, ''), est_model), g.p_from) AS k
                               JOIN billing.model_prices AS mp ON mp.model = k.model AND mp.effective_from = k.effective_from) AS e ON true
    ), lines AS (
        SELECT pr.customer, pr.model, pr.p_from, pr.cost + pr.estimated_cost AS group_cost, l.*
          FROM priced AS pr
         CROSS JOIN LATERAL (VALUES
             (1, 'input tokens', pr.prompt - pr.cached, pr.p_in, pr.p_name, pr.p_at),
             (2, 'cached input tokens', pr.cached, pr.p_cached, pr.p_name, pr.p_at),
             (3, 'output tokens', pr.completion, pr.p_out, pr.p_name, pr.p_at),
             (4, 'estimated input tokens', pr.est_prompt, pr.e_in, pr.e_name, pr.e_at),
             (5, 'estimated output tokens', pr.est_completion, pr.e_out, pr.e_name, pr.e_at)
         ) AS l(ord, description, quantity, unit_price, price_name, price_at)
         -- (tokens no price covers are the unpriced line's)
         WHERE l.quantity <> 0 AND l.price_name IS NOT NULL
    ), checked AS (
        -- A group whose priced lines do not make its exact cost (usage a
        -- price cannot be read from line by line) gets one line instead.
        SELECT l.*, sum(coalesce(l.quantity * l.unit_price, 0)) OVER (PARTITION BY l.customer, l.model, l.p_from) AS lines_cost
          FROM lines AS l
    )
    SELECT c.customer, 'openai', CASE WHEN c.model = '' THEN '(none)' ELSE c.model END, c.description,
           sum(c.quantity), trim_scale(c.unit_price), c.price_name, c.price_at,
           trim_scale(sum(coalesce(c.quantity * c.unit_price, 0)))
      FROM checked AS c
     WHERE c.lines_cost = c.group_cost
     GROUP BY c.customer, c.model, c.ord, c.description, c.unit_price, c.price_name, c.price_at
    UNION ALL
    SELECT g.customer, 'openai', CASE WHEN g.model = '' THEN '(none)' ELSE g.model END, 'tokens',
           sum(g.quantity), NULL, NULL, NULL, trim_scale(g.group_cost)
      FROM (SELECT DISTINCT c.customer, c.model, c.p_from, c.group_cost,
                   sum(c.quantity) OVER (PARTITION BY c.customer, c.model, c.p_from) AS quantity
              FROM checked AS c WHERE c.lines_cost <> c.group_cost) AS g
     GROUP BY g.customer, g.model, g.p_from, g.group_cost
    UNION ALL
    -- Usage no price covers: shown with its tokens, at no cost.
    SELECT pr.customer, 'openai', CASE WHEN pr.model = '' THEN '(none)' ELSE pr.model END, 'unpriced tokens',
           sum(pr.unpriced), NULL, NULL, NULL, 0
      FROM priced AS pr WHERE pr.unpriced <> 0
     GROUP BY pr.customer, pr.model
    UNION ALL
    SELECT u.customer, 'aws', u.service, coalesce(p.unit, 'units'), sum(u.quantity), trim_scale(p.unit_price), p.service,
           p.effective_from, trim_scale(coalesce(sum(u.quantity * p.unit_price), 0))
      FROM billing.aws_usage AS u
      LEFT JOIN LATERAL (SELECT ap.* FROM billing.resolve_aws_price(u.service, u.at) AS k
                           JOIN billing.aws_prices AS ap ON ap.service = k.service AND ap.effective_from = k.effective_from) AS p ON true
     WHERE u.customer IS NOT NULL AND u.at >= m_from AND u.at < m_to
       AND (billing.current_customer() IS NULL OR u.customer = billing.current_customer())
     GROUP BY u.customer, u.service, p.unit, p.unit_price, p.service, p.effective_from;
END
$$;

-- What the statements of a customer already say about a month: its usage
-- lines plus every adjustment of that month, per item.
CREATE VIEW billing._billed_items WITH (security_invoker = true) AS
SELECT s.customer, l.month, l.source, l.item, l.description, l.unit_price, l.price_name, l.price_effective_from,
       sum(CASE WHEN l.kind = 'credit' THEN -l.quantity ELSE l.quantity END) AS quantity, sum(l.amount) AS amount,
       (SELECT o.id FROM billing.statements AS o WHERE o.customer = s.customer AND o.month = l.month) AS original
  FROM billing.statement_lines AS l
  JOIN billing.statements AS s ON s.id = l.statement_id
 GROUP BY s.customer, l.month, l.source, l.item, l.description, l.unit_price, l.price_name, l.price_effective_from;

-- The differences between what the views give each customer for the issued
-- months before p_before and what its statements already say: the
-- adjustments the statements of p_before carry. Not those of later
-- months: a month issued after a later one (a back-dated month, say) put
-- the later month's changes on the earlier month's statement; they wait
-- for the statements of a month after them.
CREATE FUNCTION billing._adjustment_items(p_before date)
RETURNS TABLE (customer text, month date, original bigint, source text, item text, description text,
               quantity numeric, unit_price numeric, price_name text, price_effective_from timestamptz, amount numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    m date;
BEGIN
    FOR m IN SELECT i.month FROM billing.issued_months AS i
              WHERE i.month < p_before ORDER BY i.month LOOP
        -- Only months whose totals moved are read item by item.
        IF EXISTS (SELECT 1 FROM billing._pending_totals(m) AS t) THEN
            RETURN QUERY
            WITH now_items AS (
                SELECT * FROM billing._month_items(m)
            ), billed AS (
                SELECT * FROM billing._billed_items AS b WHERE b.month = m
            )
            SELECT coalesce(n.customer, b.customer), m, (SELECT o.id FROM billing.statements AS o
                                                          WHERE o.customer = coalesce(n.customer, b.customer) AND o.month = m),
                   coalesce(n.source, b.source), coalesce(n.item, b.item), coalesce(n.description, b.description),
                   coalesce(n.quantity, 0) - coalesce(b.quantity, 0), coalesce(n.unit_price, b.unit_price),
                   coalesce(n.price_name, b.price_name), coalesce(n.price_effective_from, b.price_effective_from),
                   coalesce(n.amount, 0) - coalesce(b.amount, 0)
              FROM now_items AS n
              FULL JOIN billed AS b
                ON b.customer = n.customer AND b.source = n.source AND b.item = n.item AND b.description = n.description
               AND b.unit_price IS NOT DISTINCT FROM n.unit_price AND b.price_name IS NOT DISTINCT FROM n.price_name
               AND b.price_effective_from IS NOT DISTINCT FROM n.price_effective_from
             WHERE coalesce(n.quantity, 0) <> coalesce(b.quantity, 0) OR coalesce(n.amount, 0) <> coalesce(b.amount, 0);
        END IF;
    END LOOP;
END
$$;

-- Per customer, the difference between the views' total of an issued month
-- and what its statements say about it (rows only where they differ).
CREATE FUNCTION billing._pending_totals(p_month date)
RETURNS TABLE (customer text, month date, views_total numeric, billed_total numeric, amount numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    WITH v AS (
        SELECT c.customer, sum(c.cost) AS openai
          FROM billing._usage_by_customer(billing.month_start(p_month), billing.month_end(p_month), NULL) AS c
         WHERE c.customer IS NOT NULL
         GROUP BY c.customer
    ), a AS (
        SELECT u.customer, billing.aws_cost(u.service, u.quantity, u.at) AS aws
          FROM billing.aws_usage AS u
         WHERE u.customer IS NOT NULL AND u.at >= billing.month_start(p_month) AND u.at < billing.month_end(p_month)
         GROUP BY u.customer
    ), views AS (
        SELECT coalesce(v.customer, a.customer) AS customer, coalesce(v.openai, 0) + coalesce(a.aws, 0) AS total
          FROM v FULL JOIN a ON a.customer = v.customer
    ), billed AS (
        SELECT b.customer, sum(b.amount) AS total FROM billing._billed_items AS b WHERE b.month = p_month
         GROUP BY b.customer
    )
    SELECT coalesce(v.customer, b.customer), p_month, coalesce(v.total, 0), coalesce(b.total, 0),
           coalesce(v.total, 0) - coalesce(b.total, 0)
      FROM views AS v FULL JOIN billed AS b ON b.customer = v.customer
     WHERE coalesce(v.total, 0) <> coalesce(b.total, 0)
       AND (billing.current_customer() IS NULL OR coalesce(v.customer, b.customer) = billing.current_customer())
$$;

-- Changes to issued months not yet on a statement, per customer and month:
-- issued statements plus these equal the views.
CREATE VIEW billing.pending_adjustments WITH (security_invoker = true) AS
SELECT t.customer, t.month, (SELECT s.id FROM billing.statements AS s WHERE s.customer = t.customer AND s.month = t.month)
           AS statement_id,
       t.views_total, t.billed_total, t.amount
  FROM billing.issued_months AS i
 CROSS JOIN LATERAL billing._pending_totals(i.month) AS t;
COMMENT ON VIEW billing.pending_adjustments IS
    'Changes to issued months (back-dated writes, deletions, price corrections, conversations moved) that the customer''s next statement will carry: views_total = billed_total + amount.';

-- Issues the statements of a month: one per customer with usage in it or
-- with pending adjustments. Issuing an issued month returns its statements
-- and changes nothing; a month that has not ended is refused unless
-- allow_open.
CREATE FUNCTION billing.issue_statements(month date, allow_open boolean DEFAULT false)
RETURNS SETOF billing.statements
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    m date := issue_statements.month;
    next_id bigint;
    n integer;
BEGIN
    PERFORM billing._require_primary('billing.issue_statements()');
    IF m IS NULL OR m <> date_trunc('month', m)::date THEN
        RAISE EXCEPTION 'billing: a month is given by its first day, got %', m USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT billing._countable(billing.month_start(m)) OR NOT billing._countable(billing.month_end(m) - interval '1 microsecond') THEN
        RAISE EXCEPTION 'billing: month % is outside the years billing counts', m USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF billing.current_customer() IS NOT NULL THEN
        RAISE EXCEPTION 'billing: statements are issued for every customer: reset billing.customer first'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- One issuer at a time; the second waits, then finds the month issued.
    LOCK TABLE billing.issued_months IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM billing.issued_months AS i WHERE i.month = m) THEN
        RETURN QUERY SELECT s.* FROM billing.statements AS s WHERE s.month = m ORDER BY s.id;
        RETURN;
    END IF;
    IF billing.month_end(m) > now() AND NOT coalesce(allow_open, false) THEN
        RAISE EXCEPTION 'billing: month % has not ended (it ends at %)', to_char(m, 'YYYY-MM'), billing.month_end(m)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Its usage may still change; billing.issue_statements(month, allow_open => true) issues it anyway.';
    END IF;
    -- (kept for good: not issued while the customers of a table cannot be
    -- read, which reads would give to no customer)
    PERFORM billing._require_customer_sources();

    IF to_regclass('pg_temp.billing_issue_lines') IS NULL THEN
        CREATE TEMP TABLE billing_issue_lines (
        customer text, kind text, month date, adjusts bigint, source text, item text, description text,
        quantity numeric, unit_price numeric, price_name text, price_effective_from timestamptz, amount numeric);
    END IF;
    TRUNCATE billing_issue_lines;
    INSERT INTO billing_issue_lines
    SELECT i.customer, 'usage', m, NULL, i.source, i.item, i.description, i.quantity, i.unit_price, i.price_name,
           i.price_effective_from, i.amount
      FROM billing._month_items(m) AS i;
    INSERT INTO billing_issue_lines
    SELECT a.customer, CASE WHEN a.amount < 0 OR (a.amount = 0 AND a.quantity < 0) THEN 'credit' ELSE 'debit' END,
           a.month, a.original, a.source, a.item, a.description,
           CASE WHEN a.amount < 0 OR (a.amount = 0 AND a.quantity < 0) THEN -a.quantity ELSE a.quantity END,
           a.unit_price, a.price_name, a.price_effective_from, a.amount
      FROM billing._adjustment_items(m) AS a;

    next_id := coalesce((SELECT max(s.id) FROM billing.statements AS s), 0);
    WITH customers AS (
        SELECT l.customer, sum(l.amount) FILTER (WHERE l.kind = 'usage') AS usage_total,
               sum(l.amount) FILTER (WHERE l.kind <> 'usage') AS adjustments_total,
               row_number() OVER (ORDER BY l.customer) AS rn
          FROM billing_issue_lines AS l GROUP BY l.customer
    )
    INSERT INTO billing.statements (id, number, customer, month, issued_at, usage_total, adjustments_total, total)
    SELECT next_id + c.rn, format('%s-%s', to_char(m, 'YYYYMM'), lpad((next_id + c.rn)::text, 6, '0')), c.customer, m,
           now(), coalesce(c.usage_total, 0), coalesce(c.adjustments_total, 0),
           coalesce(c.usage_total, 0) + coalesce(c.adjustments_total, 0)
      FROM customers AS c;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO billing.statement_lines
    SELECT s.id, row_number() OVER (PARTITION BY s.id ORDER BY l.kind <> 'usage', l.month, l.source, l.item,
                                                              l.price_effective_from NULLS LAST, l.description, l.unit_price),
           l.kind, l.month, l.adjusts, l.source, l.item, l.description, l.quantity, l.unit_price, l.price_name,
           l.price_effective_from, l.amount
      FROM billing_issue_lines AS l
      JOIN billing.statements AS s ON s.customer = l.customer AND s.month = m;
    INSERT INTO billing.issued_months VALUES (m, now(), n);
    TRUNCATE billing_issue_lines;
    RETURN QUERY SELECT s.* FROM billing.statements AS s WHERE s.month = m ORDER BY s.id;
EXCEPTION WHEN query_canceled THEN
    PERFORM billing._raise_if_timed_out('billing.issue_statements()', SQLERRM);
    RAISE;
END
$$;
COMMENT ON FUNCTION billing.issue_statements(date, boolean) IS
    'Issues a month''s statements: per customer with usage, its usage lines and the adjustments of earlier issued months. Issuing an issued month changes nothing; an open month is refused unless allow_open.';
REVOKE ALL ON FUNCTION billing.issue_statements(date, boolean) FROM PUBLIC;

-- Read as one customer (billing.customer, customers.sql): its statements only.
ALTER TABLE billing.statements ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.statements USING (true);
CREATE POLICY as_customer ON billing.statements AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL OR customer = billing.current_customer());
ALTER TABLE billing.statement_lines ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.statement_lines USING (true);
CREATE POLICY as_customer ON billing.statement_lines AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL
           OR statement_id IN (SELECT s.id FROM billing.statements AS s WHERE s.customer = billing.current_customer()));

-- A month given by its first day, or NULL (every month): another day
-- matched no statement, and the export was silently empty.
CREATE FUNCTION billing._month_first_day(p_month date) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_month IS NOT NULL AND (NOT isfinite(p_month) OR p_month <> date_trunc('month', p_month)::date) THEN
        RAISE EXCEPTION 'billing: a month is given by its first day, got %', p_month
            USING ERRCODE = 'invalid_parameter_value', HINT = format('%s, say.', to_char(date_trunc('month', p_month), 'YYYY-MM-DD'));
    END IF;
    RETURN true;
END
$$;

-- CSV export: set-returning functions for COPY (SELECT ...) TO STDOUT WITH
-- CSV HEADER and \copy (tools/export_month.sh writes a month's files).
-- Amounts are numeric: their text is exact, every decimal kept.
CREATE FUNCTION billing.export_statements(month date DEFAULT NULL)
RETURNS TABLE (number text, customer text, month date, issued_at timestamptz, usage_total numeric,
               adjustments_total numeric, total numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    SELECT s.number, s.customer, s.month, s.issued_at, s.usage_total, s.adjustments_total, s.total
      FROM billing.statements AS s
     WHERE billing._month_first_day($1) AND ($1 IS NULL OR s.month = $1)
     ORDER BY s.id
$$;
COMMENT ON FUNCTION billing.export_statements(date) IS
    'Issued statements (of one month, or all), for CSV: COPY (SELECT * FROM billing.export_statements(''2026-10-01'')) TO STDOUT WITH CSV HEADER.';

CREATE FUNCTION billing.export_statement_lines(month date DEFAULT NULL)
RETURNS TABLE (number text, customer text, statement_month date, line integer, kind text, month date,
               adjusts text, source text, item text, description text, quantity numeric, unit_price numeric,
               price_name text, price_effective_from timestamptz, amount numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    SELECT s.number, s.customer, s.month, l.line, l.kind, l.month, o.number, l.source, l.item, l.description,
           l.quantity, l.unit_price, l.price_name, l.price_effective_from, l.amount
      FROM billing.statements AS s
      JOIN billing.statement_lines AS l ON l.statement_id = s.id
      LEFT JOIN billing.statements AS o ON o.id = l.adjusts
     WHERE billing._month_first_day($1) AND ($1 IS NULL OR s.month = $1)
     ORDER BY s.id, l.line
$$;
COMMENT ON FUNCTION billing.export_statement_lines(date) IS
    'The lines of issued statements (of one month, or all), for CSV, with the number of the statement an adjustment corrects.';

CREATE FUNCTION billing.export_costs("from" timestamptz, "to" timestamptz, group_by text DEFAULT 'month',
                                     customer text DEFAULT NULL)
RETURNS TABLE (period date, customer text, openai_cost numeric, aws_cost numeric, total_cost numeric,
               tokens numeric, estimated_tokens numeric, unpriced_tokens numeric, messages bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    SELECT * FROM billing.costs($1, $2, $3, $4)
$$;
COMMENT ON FUNCTION billing.export_costs(timestamptz, timestamptz, text, text) IS
    'billing.costs() for CSV: costs of any range per customer and day or month.';
