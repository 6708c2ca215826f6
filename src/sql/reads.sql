-- Exact reads: rollups plus the unmerged ledger for fresh months, the
-- tracked table itself for stale months and partial ranges (_usage_by_model,
-- _usage_by_conversation, _top_conversations); the readable-tables rule of
-- row-level security (_readable_tables); the check that names a missing
-- grant.
-- Relies on ledger_and_merge.sql.

-- Cost of the unmerged ledger rows, priced with the reader's snapshot.
-- (Each ledger row's counts fit bigint; their sums are taken as numeric.)
CREATE VIEW billing._ledger_priced WITH (security_invoker = true) AS
SELECT l.source_id, billing.month_of(l.created_at) AS month, l.conversation_id,
       billing._key(coalesce(l.model, '')) AS model, l.created_at, l.messages, l.prompt_tokens, l.completion_tokens,
       l.cached_tokens, l.estimated_prompt, l.estimated_completion, l.unsplit_tokens, l.problems,
       coalesce(c.cost, 0) AS cost, coalesce(e.cost, 0) AS estimated_cost,
       billing._sat(billing._unpriced_tokens(c.cost, e.cost, l.prompt_tokens, l.completion_tokens, l.estimated_prompt,
                                             l.estimated_completion, l.unsplit_tokens)) AS unpriced_tokens
  FROM billing.usage_ledger AS l
 CROSS JOIN (SELECT billing._estimate_model() AS estimate_model) AS s
 CROSS JOIN LATERAL billing.usage_cost(l.model, l.prompt_tokens, l.completion_tokens, l.cached_tokens,
                                       l.created_at) AS c(cost)
 CROSS JOIN LATERAL billing.usage_cost(coalesce(l.model, s.estimate_model), l.estimated_prompt,
                                       l.estimated_completion, 0, l.created_at) AS e(cost);

CREATE FUNCTION billing._may_read_table(p_source smallint) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT p_source OPERATOR(pg_catalog.=) ANY (SELECT r.id FROM billing._readable_tables AS r)
$$;
-- The rule that says where a month of a tracked table is read from: one row
-- when the rollups plus the ledger hold it exactly (the table is backfilled
-- and the month is not stale), none when it must be read from the table.
-- Callers join it LATERAL; being a plain SQL function (no SET clause,
-- operators qualified) it is inlined, and its two NOT EXISTS become hashed
-- sub-plans: one hash per query, not one lookup per row.
CREATE FUNCTION billing._rollups_current(p_source smallint, p_month date) RETURNS SETOF boolean
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
AS $$
    SELECT true
     WHERE NOT EXISTS (SELECT 1 FROM billing.stale_months AS s
                        WHERE s.source_id OPERATOR(pg_catalog.=) p_source
                          AND s.month OPERATOR(pg_catalog.=) p_month)
       AND NOT EXISTS (SELECT 1 FROM billing.tracked_tables AS t
                        WHERE t.id OPERATOR(pg_catalog.=) p_source AND NOT t.backfilled)
$$;

-- One group of unmerged ledger rows, as billing._ledger_usage returns it
-- (per tracked table, month, conversation and model); the dashboard reads
-- the ledger once and hands the groups, as an array, to each of its reads.
CREATE TYPE billing._ledger_group AS (
    source_id smallint, month date, conversation_id text, model text, messages bigint,
    prompt_tokens numeric, completion_tokens numeric, cached_tokens numeric,
    estimated_prompt numeric, estimated_completion numeric, unsplit_tokens numeric, problems bigint,
    cost numeric, estimated_cost numeric, unpriced_tokens numeric,
    first_added timestamptz, last_added timestamptz, first_removed timestamptz, last_removed timestamptz);

-- The unmerged ledger rows of the whole months within [p_from, p_to),
-- priced and summed per tracked table, month, conversation and model (the
-- model as billing._key keys it, '' for none): what the reads add to the
-- rollups. The rules are those of billing._ledger_priced, applied in C
-- (each row priced with the catalog cache, summed exactly) so that an
-- unmerged write costs a read about 1 us instead of 8. Reads the ledger
-- as the caller: row-level security applies.
-- C body: src/pg/ledger_usage.cpp (ledger_usage)
CREATE FUNCTION billing._ledger_usage(p_from timestamptz, p_to timestamptz, p_estimate_model text)
RETURNS SETOF billing._ledger_group
AS 'MODULE_PATHNAME', 'ledger_usage' LANGUAGE C STABLE ROWS 100;

-- The groups of billing._ledger_usage over [p_from, p_to), taken from
-- p_unmerged when the caller has read them already (over a range that holds
-- this one), else read now.
CREATE FUNCTION billing._unmerged_groups(p_from timestamptz, p_to timestamptz, p_unmerged billing._ledger_group[])
RETURNS SETOF billing._ledger_group
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.* FROM unnest(p_unmerged) AS l
     WHERE billing.month_start(l.month) >= p_from AND billing.month_end(l.month) <= p_to
    UNION ALL
    SELECT l.* FROM billing._ledger_usage(p_from, p_to, billing._estimate_model()) AS l
     WHERE p_unmerged IS NULL
$$;

-- OpenAI usage with p_from <= time < p_to, per table, month and model, the
-- unmerged ledger's groups given (billing._unmerged_groups) or NULL.
CREATE FUNCTION billing._usage_by_model(p_from timestamptz, p_to timestamptz, p_unmerged billing._ledger_group[])
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
    PERFORM billing._require_reader();
    -- Whole fresh months come from the rollups plus the ledger.
    RETURN QUERY
    SELECT x.source_id, x.month, x.model, sum(x.messages)::bigint, billing._sat(sum(x.prompt_tokens)),
           billing._sat(sum(x.completion_tokens)), billing._sat(sum(x.cached_tokens)),
           billing._sat(sum(x.estimated_prompt)), billing._sat(sum(x.estimated_completion)),
           billing._sat(sum(x.unsplit_tokens)), sum(x.problems)::bigint,
           sum(x.cost), sum(x.estimated_cost), billing._sat(sum(x.unpriced_tokens))
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
              FROM billing._unmerged_groups(p_from, p_to, p_unmerged) AS l) AS x
     CROSS JOIN LATERAL billing._rollups_current(x.source_id, x.month) AS fresh
     GROUP BY x.source_id, x.month, x.model
    HAVING sum(x.messages) <> 0;

    -- Stale months, and the partial months at the ends of the range, come
    -- from the source.
    FOR s IN SELECT * FROM billing._table_ranges(p_from, p_to) LOOP
        RETURN QUERY
        SELECT s.source_id, r.month, coalesce(r.model, ''), sum(r.messages)::bigint,
               billing._sat(sum(r.prompt_tokens)), billing._sat(sum(r.completion_tokens)),
               billing._sat(sum(r.cached_tokens)), billing._sat(sum(r.estimated_prompt)),
               billing._sat(sum(r.estimated_completion)), billing._sat(sum(r.unsplit_tokens)),
               sum(r.problems)::bigint, sum(r.cost), sum(r.estimated_cost), billing._sat(sum(r.unpriced_tokens))
          FROM billing._scan_table_safely(s.source_id, s.range_from, s.range_to) AS r
         GROUP BY r.month, coalesce(r.model, '');
    END LOOP;
END
$$;

-- The same, the ledger read by it.
CREATE FUNCTION billing._usage_by_model(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (source_id smallint, month date, model text, messages bigint, prompt_tokens bigint,
               completion_tokens bigint, cached_tokens bigint, estimated_prompt bigint,
               estimated_completion bigint, unsplit_tokens bigint, problems bigint, cost numeric,
               estimated_cost numeric, unpriced_tokens bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM billing._usage_by_model(p_from, p_to, NULL)
$$;

-- The parts of [p_from, p_to) that must be read from each tracked table:
-- all of it when the table is not backfilled yet; else its stale months and
-- the partial months at the ends of the range.
CREATE FUNCTION billing._table_ranges(p_from timestamptz, p_to timestamptz)
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
     WHERE NOT t.backfilled AND billing._may_read_table(t.id)
    UNION ALL
    SELECT m.source_id, greatest(p_from, billing.month_start(m.month)),
           least(p_to, billing.month_end(m.month))
      FROM months AS m
      JOIN billing.tracked_tables AS t ON t.id = m.source_id AND t.backfilled
     WHERE billing._may_read_table(t.id)
       AND billing.month_end(m.month) > p_from
       AND billing.month_start(m.month) < p_to
$$;

-- OpenAI usage with p_from <= time < p_to, per table, month and conversation.
CREATE FUNCTION billing._usage_by_conversation(p_from timestamptz, p_to timestamptz)
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
    PERFORM billing._require_reader();
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
               l.unpriced_tokens, l.first_added, l.last_added, l.first_removed, l.last_removed, false
          FROM billing._ledger_usage(p_from, p_to, billing._estimate_model()) AS l
    ), g AS (
        SELECT x.source_id, x.month, x.conversation_id, sum(x.messages)::bigint AS messages,
               billing._sat(sum(x.prompt_tokens)) AS prompt_tokens,
               billing._sat(sum(x.completion_tokens)) AS completion_tokens,
               billing._sat(sum(x.cached_tokens)) AS cached_tokens,
               billing._sat(sum(x.estimated_tokens)) AS estimated_tokens,
               sum(x.cost) AS cost, billing._sat(sum(x.unpriced_tokens)) AS unpriced_tokens,
               min(x.first_add) AS first_add, max(x.last_add) AS last_add,
               min(x.first_removed) AS first_removed, max(x.last_removed) AS last_removed,
               bool_or(x.bounds_stale) AS bounds_stale
          FROM x
         CROSS JOIN LATERAL billing._rollups_current(x.source_id, x.month) AS fresh
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

    FOR s IN SELECT * FROM billing._table_ranges(p_from, p_to) LOOP
        RETURN QUERY
        SELECT s.source_id, r.month, r.conversation_id, sum(r.messages)::bigint,
               billing._sat(sum(r.prompt_tokens)), billing._sat(sum(r.completion_tokens)),
               billing._sat(sum(r.cached_tokens)), billing._sat(sum(r.estimated_prompt + r.estimated_completion)),
               sum(r.cost + r.estimated_cost), billing._sat(sum(r.unpriced_tokens)),
               min(r.first_message_at), max(r.last_message_at)
          FROM billing._scan_table_safely(s.source_id, s.range_from, s.range_to) AS r
         GROUP BY r.month, r.conversation_id;
    END LOOP;
END
$$;

-- The top conversations of a period. For one whole fresh month (the usual
-- dashboard) it reads the rollup's (month, cost) index: the first N + K rows,
-- K being the conversations with unmerged ledger rows, are enough to be exact.
-- The unmerged ledger's groups are given (billing._unmerged_groups) or NULL.
CREATE FUNCTION billing._top_conversations(p_from timestamptz, p_to timestamptz, p_limit integer,
                                           p_unmerged billing._ledger_group[])
RETURNS TABLE (conversation_id text, cost numeric, tokens bigint, messages bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m date := billing.month_of(p_from);
    whole_month boolean;
BEGIN
    whole_month := p_from = billing.month_start(m)
                   AND p_to = billing.month_end(m)
                   AND NOT EXISTS (SELECT 1 FROM billing.tracked_tables AS t
                                    WHERE NOT EXISTS (SELECT 1 FROM billing._rollups_current(t.id, m)));
    IF NOT whole_month THEN
        RETURN QUERY
        SELECT c.conversation_id, sum(c.cost),
               billing._sat(sum(c.prompt_tokens::numeric + c.completion_tokens + c.estimated_tokens)),
               sum(c.messages)::bigint
          FROM billing._usage_by_conversation(p_from, p_to) AS c
         GROUP BY c.conversation_id
         ORDER BY 2 DESC, 1
         LIMIT p_limit;
        RETURN;
    END IF;

    -- The ledger is read once (a read after a large merge scans its dead
    -- rows until vacuum): its groups give K and the unmerged figures.
    RETURN QUERY
    WITH unmerged AS MATERIALIZED (
        SELECT * FROM billing._unmerged_groups(p_from, p_to, p_unmerged)
    ), candidates AS (
        (SELECT u.source_id, u.conversation_id FROM billing.conversation_usage AS u
          WHERE u.month = m ORDER BY u.cost DESC, u.conversation_id
          LIMIT p_limit + (SELECT count(*) FROM (SELECT DISTINCT l.source_id, l.conversation_id FROM unmerged AS l) AS d))
        UNION
        SELECT DISTINCT l.source_id, l.conversation_id FROM unmerged AS l
    ), totals AS (
        SELECT x.conversation_id, sum(x.cost) AS cost, billing._sat(sum(x.tokens)) AS tokens,
               sum(x.messages)::bigint AS messages
          FROM (-- One probe of the rollup's unique index per candidate:
                -- LATERAL, and fenced (LIMIT 1) so that the planner cannot
                -- flatten it into a join that, under statistics that believe
                -- the month empty (as at the start of every month), scans
                -- all of the month's rows once per candidate. The NULL
                -- conversation apart (its probe is IS NULL).
                SELECT u.conversation_id, u.cost, u.prompt_tokens + u.completion_tokens + u.estimated_tokens AS tokens,
                       u.messages
                  FROM candidates AS c
                 CROSS JOIN LATERAL (SELECT r.conversation_id, r.cost, r.prompt_tokens, r.completion_tokens,
                                            r.estimated_tokens, r.messages
                                       FROM billing.conversation_usage AS r
                                      WHERE r.source_id = c.source_id AND r.month = m
                                        AND r.conversation_id = c.conversation_id
                                      -- (the unique index's own order: no
                                      -- other index can look cheaper)
                                      ORDER BY r.source_id, r.month, r.conversation_id LIMIT 1) AS u
                UNION ALL
                SELECT u.conversation_id, u.cost, u.prompt_tokens + u.completion_tokens + u.estimated_tokens, u.messages
                  FROM candidates AS c
                 CROSS JOIN LATERAL (SELECT r.conversation_id, r.cost, r.prompt_tokens, r.completion_tokens,
                                            r.estimated_tokens, r.messages
                                       FROM billing.conversation_usage AS r
                                      WHERE r.source_id = c.source_id AND r.month = m AND r.conversation_id IS NULL
                                      ORDER BY r.source_id, r.month, r.conversation_id LIMIT 1) AS u
                 WHERE c.conversation_id IS NULL
                UNION ALL
                SELECT l.conversation_id, l.cost + l.estimated_cost,
                       l.prompt_tokens + l.completion_tokens + l.estimated_prompt + l.estimated_completion,
                       l.messages
                  FROM unmerged AS l) AS x
         GROUP BY x.conversation_id
        HAVING sum(x.messages) <> 0
    )
    SELECT t.conversation_id, t.cost, t.tokens, t.messages FROM totals AS t
     ORDER BY t.cost DESC, t.conversation_id
     LIMIT p_limit;
END
$$;

-- The same, the ledger read by it.
CREATE FUNCTION billing._top_conversations(p_from timestamptz, p_to timestamptz, p_limit integer)
RETURNS TABLE (conversation_id text, cost numeric, tokens bigint, messages bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM billing._top_conversations(p_from, p_to, p_limit, NULL)
$$;

-- The tracked tables the current role may read: the one statement of the
-- rule "a role sees a table's costs only if it may SELECT the table".
-- security_invoker: it reads billing.tracked_tables with the reader's own
-- privileges, as 0.2's billing._may_read_table() did. PUBLIC may select
-- from it (what it returns depends on the caller), so that roles granted
-- SELECT on billing's tables before this view existed keep reading.
-- A role subject to a tracked table's own row-level security reads none of
-- its costs: the rollups sum every row of the table, whichever tenant's
-- they are, and a read of the table itself would show that role fewer rows
-- than the rollups it reads after a merge.
CREATE VIEW billing._readable_tables WITH (security_invoker = true) AS
SELECT t.id FROM billing.tracked_tables AS t
 WHERE pg_catalog.has_table_privilege(t.relation, 'SELECT') AND NOT pg_catalog.row_security_active(t.relation);

-- Raises a clear error when the calling role lacks a grant the reads need
-- (instead of "permission denied for table settings" from deep inside).
CREATE FUNCTION billing._require_reader() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    missing text[];
BEGIN
    -- Every table and view of the extension, as the README's grant (ON ALL
    -- TABLES) gives them: a list of names fell behind the tables a new
    -- version added, and a reader granted under 0.3 got PostgreSQL's bare
    -- "permission denied for table tracked_profiles" after the update.
    SELECT array_agg(c.oid::regclass::text ORDER BY c.relname) INTO missing
      FROM pg_depend AS d
      JOIN pg_class AS c ON c.oid = d.objid
     WHERE d.refclassid = 'pg_extension'::regclass
       AND d.refobjid = (SELECT e.oid FROM pg_extension AS e WHERE e.extname = 'billing')
       AND d.classid = 'pg_class'::regclass AND d.deptype = 'e'
       AND c.relkind IN ('r', 'p', 'v', 'm')
       AND NOT has_table_privilege(c.oid, 'SELECT');
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'billing: role "%" may not read billing''s figures: it has no SELECT on %', current_user,
                        CASE WHEN cardinality(missing) <= 5 THEN array_to_string(missing, ', ')
                             ELSE format('%s of billing''s tables and views (%s, ...)', cardinality(missing),
                                         array_to_string(missing[1:3], ', ')) END
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('A superuser or the extension''s owner grants it: GRANT USAGE ON SCHEMA billing TO %1$I; '
                                'GRANT SELECT ON ALL TABLES IN SCHEMA billing TO %1$I; (README "Permissions"; '
                                'again after ALTER EXTENSION billing UPDATE, which may add tables)',
                                current_user);
    END IF;
END
$$;

-- The unmerged writes of the distributed tables tracked by their shards'
-- triggers (citus.sql: billing.citus_ledger_N, a table distributed like
-- the messages), with p_from <= created_at < p_to, as billing.usage_ledger
-- rows: the C readers of the ledger (_ledger_usage, _ledger_spend) add them
-- to its own. Only the tables the caller may read; as one customer, that
-- customer's conversations only (the ledger's policies). Read as the
-- caller (the table's policy: SELECT on the tracked table). Nothing
-- without Citus. The rows of merges this snapshot sees (billing.ledger_merges,
-- in billing.usage_ledger or the rollups already) are left out, whatever
-- the worker's own snapshot says; a row that a merge is committing on its
-- worker fails the read (_citus_ledger_row_settled).
CREATE FUNCTION billing._citus_ledger_rows(p_from timestamptz, p_to timestamptz)
RETURNS SETOF billing.usage_ledger
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tt.id, billing._citus_companion(tt.id, 'ledger') AS ledger FROM billing.tracked_tables AS tt
              WHERE billing._may_read_table(tt.id) ORDER BY tt.id LOOP
        CONTINUE WHEN t.ledger IS NULL;
        -- The customer's filter only when reading as one: Citus plans its
        -- subquery apart and sends the result to every node, a round trip
        -- more (60 ms on the test cluster) even when it is empty.
        RETURN QUERY EXECUTE format(
            'SELECT l.source_id, l.conversation_id, l.created_at, l.model, l.messages, l.prompt_tokens,
                    l.completion_tokens, l.cached_tokens, l.estimated_prompt, l.estimated_completion,
                    l.unsplit_tokens, l.problems
               FROM %s AS l
              WHERE l.created_at >= $1 AND l.created_at < $2
                AND CASE WHEN l.merged_by = ANY ($4) THEN false   -- (in the rollups or billing.usage_ledger)
                         WHEN l.xmax = ''0''::pg_catalog.xid THEN true
                         ELSE billing._citus_ledger_row_settled(l.xmax) END', t.ledger)
            || CASE WHEN billing.current_customer() IS NOT NULL THEN
                   ' AND l.conversation_id IN (SELECT c.conversation_id
                                                FROM billing._customer_conversations(billing.current_customer(), false) AS c
                                               WHERE c.source_id = $3)'
               ELSE '' END
            USING p_from, p_to, t.id,
                  ARRAY(SELECT m.epoch FROM billing.ledger_merges AS m WHERE m.source_id = t.id);
    END LOOP;
END
$$;

-- The frozen prompt estimates of messages `p_keys` of a distributed table
-- tracked by its shards' triggers (billing.citus_estimates_N): what
-- billing.estimated_prompts holds for a local table. Read by the C scans
-- of the table (src/pg/table_scan.cpp) beside estimated_prompts.
CREATE FUNCTION billing._citus_frozen_estimates(p_source smallint, p_keys text[])
RETURNS TABLE (message_id text, prompt_tokens bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    estimates regclass := billing._citus_companion(p_source, 'estimates');
BEGIN
    IF estimates IS NULL OR NOT billing._may_read_table(p_source) THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format('SELECT e.message_id, e.prompt_tokens FROM %s AS e WHERE e.message_id = ANY ($1)',
                                estimates)
        USING p_keys;
END
$$;

-- The problem rows of the distributed tables tracked by their shards'
-- triggers (billing.citus_problems_N), as billing.problem_messages rows:
-- billing.usage_problems shows them beside that table's. Hidden when
-- reading as one customer, as problem_messages is.
CREATE FUNCTION billing._citus_problem_rows()
RETURNS SETOF billing.problem_messages
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    IF billing.current_customer() IS NOT NULL THEN
        RETURN;
    END IF;
    FOR t IN SELECT tt.id, billing._citus_companion(tt.id, 'problems') AS problems FROM billing.tracked_tables AS tt
              WHERE billing._may_read_table(tt.id) ORDER BY tt.id LOOP
        CONTINUE WHEN t.problems IS NULL;
        RETURN QUERY EXECUTE format('SELECT p.source_id, p.message_id, p.created_at, p.problem FROM %s AS p',
                                    t.problems);
    END LOOP;
END
$$;
