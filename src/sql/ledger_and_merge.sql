-- The ledger and its merge: billing.usage_ledger (insert-only, one row per
-- change), the rollups month_usage and conversation_usage, stale_months,
-- the frozen prompt estimates and the problem rows; reading a tracked table
-- directly (_scan_table), rebuilding months from it, the backfill, merge()
-- and its lock, and the price and setting changes that mark months stale.
-- Relies on tracking.sql and message_usage.sql.

CREATE TABLE billing.usage_ledger (
    source_id            smallint    NOT NULL,
    conversation_id      text,
    created_at           timestamptz NOT NULL,
    model                text,
    messages             integer     NOT NULL,
    prompt_tokens        bigint      NOT NULL,
    completion_tokens    bigint      NOT NULL,
    cached_tokens        bigint      NOT NULL,
    estimated_prompt     bigint      NOT NULL,
    estimated_completion bigint      NOT NULL,
    unsplit_tokens       bigint      NOT NULL,
    problems             integer     NOT NULL
);
COMMENT ON TABLE billing.usage_ledger IS
    'Insert-only: one row per message counted (+) or taken back (-) since the last billing.merge().';
-- The ledger is a queue: vacuum it often.
ALTER TABLE billing.usage_ledger SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
-- No primary key (an index would cost every tracked write), so REPLICA
-- IDENTITY FULL: a publication FOR ALL TABLES in the database (Debezium
-- makes one) publishes billing's tables too, and PostgreSQL refuses deletes
-- from a published table without a replica identity: merge() and the app's
-- TRUNCATE of a tracked table would fail. Costs nothing unless wal_level is
-- logical. (The same for the two rollups below, whose unique keys hold a
-- nullable conversation id.)
ALTER TABLE billing.usage_ledger REPLICA IDENTITY FULL;

CREATE TABLE billing.month_usage (
    source_id            smallint NOT NULL,
    month                date     NOT NULL,
    model                text     NOT NULL,   -- '' for rows without a model
    messages             bigint   NOT NULL,
    prompt_tokens        numeric  NOT NULL,
    completion_tokens    numeric  NOT NULL,
    cached_tokens        numeric  NOT NULL,
    estimated_prompt     numeric  NOT NULL,
    estimated_completion numeric  NOT NULL,
    unsplit_tokens       numeric  NOT NULL,
    problems             bigint   NOT NULL,
    cost                 numeric  NOT NULL,
    estimated_cost       numeric  NOT NULL,
    unpriced_tokens      numeric  NOT NULL,
    PRIMARY KEY (source_id, month, model)
);

COMMENT ON TABLE billing.month_usage IS 'Merged usage per tracked table, month and model as stored.';

CREATE TABLE billing.conversation_usage (
    source_id            smallint NOT NULL,
    month                date     NOT NULL,
    conversation_id      text,
    messages             bigint   NOT NULL,
    prompt_tokens        numeric  NOT NULL,
    completion_tokens    numeric  NOT NULL,
    cached_tokens        numeric  NOT NULL,
    estimated_tokens     numeric  NOT NULL,
    cost                 numeric  NOT NULL,   -- actual and estimated
    unpriced_tokens      numeric  NOT NULL,
    first_message_at     timestamptz,
    last_message_at      timestamptz,
    bounds_stale         boolean  NOT NULL DEFAULT false,
    UNIQUE NULLS NOT DISTINCT (source_id, month, conversation_id)
);
CREATE INDEX conversation_usage_top ON billing.conversation_usage (month, cost DESC, conversation_id);
COMMENT ON TABLE billing.conversation_usage IS 'Merged usage per tracked table, month and conversation.';
ALTER TABLE billing.conversation_usage REPLICA IDENTITY FULL;

-- The same usage per conversation and model: what one customer's per-model
-- figures (billing.dashboard(customer => ...)'s by_model) are read from. A
-- conversation's customer is found when costs are read (customers.sql), so
-- per-customer figures must come from rollups keyed by conversation; this
-- one adds the model (as billing._key keys it, '' for none).
CREATE TABLE billing.conversation_model_usage (
    source_id            smallint NOT NULL,
    month                date     NOT NULL,
    conversation_id      text,
    model                text     NOT NULL,
    messages             bigint   NOT NULL,
    prompt_tokens        numeric  NOT NULL,
    completion_tokens    numeric  NOT NULL,
    cached_tokens        numeric  NOT NULL,
    estimated_prompt     numeric  NOT NULL,
    estimated_completion numeric  NOT NULL,
    unsplit_tokens       numeric  NOT NULL,
    problems             bigint   NOT NULL,
    cost                 numeric  NOT NULL,
    estimated_cost       numeric  NOT NULL,
    unpriced_tokens      numeric  NOT NULL,
    UNIQUE NULLS NOT DISTINCT (source_id, conversation_id, month, model)
);
COMMENT ON TABLE billing.conversation_model_usage IS 'Merged usage per tracked table, month, conversation and model as stored.';
ALTER TABLE billing.conversation_model_usage REPLICA IDENTITY FULL;

CREATE TABLE billing.stale_months (
    source_id smallint NOT NULL,
    month     date     NOT NULL,
    PRIMARY KEY (source_id, month)
);
COMMENT ON TABLE billing.stale_months IS
    'Months whose rollups a price change invalidated: read from the source until billing.merge() rebuilds them.';

-- The prompt estimate of a reply stored without usage, taken once when the
-- reply is stored (or tracking starts): what the model was sent then.
CREATE TABLE billing.estimated_prompts (
    source_id     smallint NOT NULL,
    message_id    text     NOT NULL,
    prompt_tokens bigint   NOT NULL,
    PRIMARY KEY (source_id, message_id)
);
SELECT pg_catalog.pg_extension_config_dump('billing.estimated_prompts', '');

-- Messages whose data billing cannot read, kept visible in billing.usage_problems.
CREATE TABLE billing.problem_messages (
    source_id  smallint NOT NULL,
    message_id text     NOT NULL,
    created_at timestamptz,
    problem    text     NOT NULL,
    PRIMARY KEY (source_id, message_id)
);
-- What the rollups hold for a table's rows with p_from <= created_at < p_to,
-- read from the table, per month, conversation key and model key (NULL:
-- none): the rows' usage (billing.usage_of), their costs (billing.usage_cost,
-- the estimate's for the row's model or else the estimate model), an
-- estimated reply's prompt as frozen in estimated_prompts or, before the
-- table's first backfill, estimated from its conversation's earlier
-- messages. Computed in C, in one read of the table as the caller (row-level
-- security applies), the rows grouped in C++ with exact sums.
-- C body: src/pg/table_scan.cpp (scan_table_grouped)
CREATE FUNCTION billing._scan_table_grouped(t billing.tracked_tables, p_from timestamptz, p_to timestamptz,
                                            p_estimate_model text)
RETURNS TABLE (month date, conversation_id text, model text, messages bigint, prompt_tokens numeric,
               completion_tokens numeric, cached_tokens numeric, estimated_prompt numeric,
               estimated_completion numeric, unsplit_tokens numeric, problems bigint, cost numeric,
               estimated_cost numeric, unpriced_tokens numeric,
               first_message_at timestamptz, last_message_at timestamptz)
AS 'MODULE_PATHNAME', 'scan_table_grouped' LANGUAGE C STABLE ROWS 1000
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION billing._scan_table(p_source smallint, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (month date, conversation_id text, model text, messages bigint, prompt_tokens numeric,
               completion_tokens numeric, cached_tokens numeric, estimated_prompt numeric,
               estimated_completion numeric, unsplit_tokens numeric, problems bigint, cost numeric,
               estimated_cost numeric, unpriced_tokens numeric,
               first_message_at timestamptz, last_message_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
BEGIN
    SELECT * INTO STRICT t FROM billing.tracked_tables WHERE id = p_source;
    PERFORM billing._row_reader(t, 'm');   -- a column billing cannot read raises here
    p_from := greatest(p_from, '0001-01-01 00:00:00+00');
    p_to := least(p_to, '10000-01-01 00:00:00+00');
    IF p_from >= p_to THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM billing._scan_table_grouped(t, p_from, p_to, billing._estimate_model());
END
$$;

-- The rows of a table that a backfill records, in one read of the table:
-- estimated replies, rows with a problem, rows whose time billing does not
-- count, each locked FOR SHARE (a concurrent update or delete of one waits
-- for the backfill, and its trigger then sees what the backfill recorded),
-- with its key, its time, its usage's problem, and for an estimated reply
-- the estimate of its prompt (its conversation's earlier messages, read
-- after the locks, with a fresh snapshot).
-- C body: src/pg/table_scan.cpp (backfill_rows)
CREATE FUNCTION billing._backfill_rows(t billing.tracked_tables)
RETURNS TABLE (message_id text, created_at timestamptz, estimated boolean, estimated_prompt bigint, problem text)
AS 'MODULE_PATHNAME', 'backfill_rows' LANGUAGE C VOLATILE ROWS 1000
SET search_path = pg_catalog, pg_temp;

-- First and last message time of a conversation (as billing keys it) in a
-- month, from the source.
CREATE FUNCTION billing._conversation_bounds(p_source smallint, p_month date, p_conversation text,
                                                        OUT first_at timestamptz, OUT last_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    m record;
BEGIN
    SELECT * INTO STRICT t FROM billing.tracked_tables WHERE id = p_source;
    m := billing._row_reader(t, 'm');
    EXECUTE format('SELECT min(%1$s), max(%1$s) FROM %2$s AS m WHERE %3$s IS NOT DISTINCT FROM $1 AND %4$s AND %5$s',
                   m.at, t.relation,
                   -- a shortened key (see billing._key) matches only through the key
                   CASE WHEN p_conversation LIKE '%... (md5 %)' THEN format('billing._key(%s)', m.conversation)
                        ELSE m.conversation END,
                   billing._at_compare(t, 'm', '>=', '$2'), billing._at_compare(t, 'm', '<', '$3'))
       INTO first_at, last_at
      USING p_conversation, billing.month_start(p_month), billing.month_end(p_month);
END
$$;

-- Replaces the rollups of [p_from, p_to) for one table with a recomputation
-- from the table, and drops the ledger rows and stale marks that it covers.
-- One statement, so one snapshot: a write committed after it started stays
-- in the ledger and is added on top.
CREATE FUNCTION billing._rebuild(p_source smallint, p_from timestamptz, p_to timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    m record;
BEGIN
    IF billing._citus_triggered(p_source) THEN
        -- A distributed table followed by its shards' triggers: writers
        -- wait until we commit, and its ledger joins the local one, whose
        -- rows of the range the rebuild replaces (citus.sql).
        PERFORM billing._citus_take_ledger(p_source, true);
    END IF;
    WITH scan AS MATERIALIZED (
        SELECT * FROM billing._scan_table(p_source, p_from, p_to)
    ), drop_ledger AS (
        DELETE FROM billing.usage_ledger
         WHERE source_id = p_source AND created_at >= p_from AND created_at < p_to
    ), drop_stale AS (
        DELETE FROM billing.stale_months
         WHERE source_id = p_source AND month >= billing.month_of(p_from)
           AND month <= billing.month_of(p_to - interval '1 microsecond')
    ), drop_months AS (
        DELETE FROM billing.month_usage
         WHERE source_id = p_source AND month >= billing.month_of(p_from)
           AND month <= billing.month_of(p_to - interval '1 microsecond')
        RETURNING 1
    ), drop_conversations AS (
        DELETE FROM billing.conversation_usage
         WHERE source_id = p_source AND month >= billing.month_of(p_from)
           AND month <= billing.month_of(p_to - interval '1 microsecond')
        RETURNING 1
    ), drop_conversation_models AS (
        DELETE FROM billing.conversation_model_usage
         WHERE source_id = p_source AND month >= billing.month_of(p_from)
           AND month <= billing.month_of(p_to - interval '1 microsecond')
        RETURNING 1
    ), add_months AS (
        -- Reading the DELETE's output makes it run before this INSERT.
        INSERT INTO billing.month_usage
        SELECT p_source, s.month, coalesce(s.model, ''), sum(s.messages), sum(s.prompt_tokens),
               sum(s.completion_tokens), sum(s.cached_tokens), sum(s.estimated_prompt),
               sum(s.estimated_completion), sum(s.unsplit_tokens), sum(s.problems), sum(s.cost),
               sum(s.estimated_cost), sum(s.unpriced_tokens)
          FROM scan s
         WHERE (SELECT count(*) FROM drop_months) >= 0
         GROUP BY s.month, coalesce(s.model, '')
    ), add_conversation_models AS (
        INSERT INTO billing.conversation_model_usage
        SELECT p_source, s.month, s.conversation_id, coalesce(s.model, ''), sum(s.messages), sum(s.prompt_tokens),
               sum(s.completion_tokens), sum(s.cached_tokens), sum(s.estimated_prompt),
               sum(s.estimated_completion), sum(s.unsplit_tokens), sum(s.problems), sum(s.cost),
               sum(s.estimated_cost), sum(s.unpriced_tokens)
          FROM scan s
         WHERE (SELECT count(*) FROM drop_conversation_models) >= 0
         GROUP BY s.month, s.conversation_id, coalesce(s.model, '')
    )
    INSERT INTO billing.conversation_usage
    SELECT p_source, s.month, s.conversation_id, sum(s.messages), sum(s.prompt_tokens),
           sum(s.completion_tokens), sum(s.cached_tokens), sum(s.estimated_prompt + s.estimated_completion),
           sum(s.cost + s.estimated_cost), sum(s.unpriced_tokens), min(s.first_message_at),
           max(s.last_message_at), false
      FROM scan s
     WHERE (SELECT count(*) FROM drop_conversations) >= 0
     GROUP BY s.month, s.conversation_id;
    -- Problem rows of the range whose message is gone without a row
    -- trigger seeing it (a partition dropped, detached or truncated: its
    -- months are rebuilt here). Read only when the range has any. (A
    -- distributed table's are made anew by every merge: citus.sql.)
    IF EXISTS (SELECT 1 FROM billing.problem_messages AS p
                WHERE p.source_id = p_source AND p.created_at >= p_from AND p.created_at < p_to) THEN
        SELECT * INTO STRICT t FROM billing.tracked_tables WHERE id = p_source;
        IF billing._citus_distributed(t.relation) THEN
            RETURN;
        END IF;
        m := billing._row_reader(t, 'm');
        -- (by ctid, the row versions this statement sees: one the app's
        -- trigger wrote since, for a message moved back, stays)
        EXECUTE format('DELETE FROM billing.problem_messages AS p
                         USING (SELECT q.ctid AS tid FROM billing.problem_messages AS q
                                 WHERE q.source_id = $1 AND q.created_at >= $2 AND q.created_at < $3
                                   AND NOT EXISTS (SELECT 1 FROM %s AS m
                                                    WHERE %s AND %s AND billing._key(%s) = q.message_id)) AS gone
                         WHERE p.ctid = gone.tid',
                       t.relation, billing._at_compare(t, 'm', '>=', '$2'), billing._at_compare(t, 'm', '<', '$3'), m.id)
            USING p_source, p_from, p_to;
    END IF;
END
$$;

-- The rows _backfill_rows records (recorded true) and the groups of every
-- month that _scan_table gives once they are recorded (recorded false), in
-- one read of the table, locking no row: for a table no writer can reach
-- (billing._writers_locked_out). A NOTICE every 5 s tells how far it is.
-- (enable_sort off: when the table is read in created_at order, by its
-- index, however little the planner knows of the table.)
-- C body: src/pg/table_scan.cpp (backfill_scan)
CREATE FUNCTION billing._backfill_scan(t billing.tracked_tables, p_estimate_model text)
RETURNS TABLE (recorded boolean, message_id text, created_at timestamptz, estimated boolean, prompt_estimate bigint,
               problem text, month date, conversation_id text, model text, messages bigint, prompt_tokens numeric,
               completion_tokens numeric, cached_tokens numeric, estimated_prompt numeric,
               estimated_completion numeric, unsplit_tokens numeric, problems bigint, cost numeric,
               estimated_cost numeric, unpriced_tokens numeric,
               first_message_at timestamptz, last_message_at timestamptz)
AS 'MODULE_PATHNAME', 'backfill_scan' LANGUAGE C STABLE ROWS 1000
SET search_path = pg_catalog, pg_temp SET enable_sort = off;

-- Whether this transaction holds, on a table and on every table it reads
-- (partitions, children), a lock that keeps writers out until it ends, as
-- the one CREATE TRIGGER takes in track_messages.
CREATE FUNCTION billing._writers_locked_out(relation regclass) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE tree(relid) AS (
        SELECT relation::oid
        UNION
        SELECT i.inhrelid FROM pg_inherits AS i JOIN tree ON i.inhparent = tree.relid
    )
    SELECT NOT EXISTS (
        SELECT 1 FROM tree
         WHERE NOT EXISTS (SELECT 1 FROM pg_locks AS l
                            WHERE l.locktype = 'relation' AND l.relation = tree.relid
                              AND l.database = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
                              AND l.pid = pg_backend_pid() AND l.granted
                              AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                                             'AccessExclusiveLock')))
$$;

-- Takes in a tracked table's existing rows: the estimates of replies stored
-- without usage, the rows with problems, then every month.
CREATE FUNCTION billing._backfill(p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
BEGIN
    SELECT * INTO STRICT t FROM billing.tracked_tables WHERE id = p_source;
    IF billing._citus_triggered(p_source) THEN
        -- A distributed table followed by its shards' triggers (citus.sql):
        -- writers wait until we commit (a SHARE lock, which Citus takes on
        -- every shard; it allows no row locks on them), and the one read
        -- below takes in every write its ledger holds.
        EXECUTE format('LOCK TABLE %s IN SHARE MODE', t.relation);
        PERFORM billing._citus_retire_ledger(p_source);
    ELSIF billing._citus_distributed(t.relation) THEN
        -- No trigger follows this table Citus distributes: each merge takes
        -- it in anew, whole, in the one read below (citus.sql).
        PERFORM billing._forget_rows(p_source);
    END IF;
    IF billing._writers_locked_out(t.relation) OR billing._citus_distributed(t.relation) THEN
        -- No writer can change the table before we commit (track_messages:
        -- the lock CREATE TRIGGER took): one read gives the rows to record
        -- and the rollups of every month, as _backfill_months would build
        -- them once the rows are recorded.
        WITH scan AS MATERIALIZED (
            SELECT * FROM billing._backfill_scan(t, billing._estimate_model())
        ), estimates AS (
            INSERT INTO billing.estimated_prompts
            SELECT p_source, s.message_id, s.prompt_estimate FROM scan AS s WHERE s.recorded AND s.estimated
            ON CONFLICT (source_id, message_id) DO NOTHING
        ), problems AS (
            -- (a row listed before keeps its message's time and problem as
            -- they are now: a column's type changed, a row moved or mended
            -- while the trigger was disabled. One per id, the latest.)
            INSERT INTO billing.problem_messages
            SELECT DISTINCT ON (s.message_id)
                   p_source, s.message_id, CASE WHEN isfinite(s.created_at) THEN s.created_at END,
                   billing._row_problem(s.problem, s.created_at)
              FROM scan AS s
             WHERE s.recorded AND billing._row_problem(s.problem, s.created_at) IS NOT NULL
             ORDER BY s.message_id, s.created_at DESC NULLS FIRST, s.problem
            ON CONFLICT (source_id, message_id) DO UPDATE SET created_at = excluded.created_at, problem = excluded.problem
                WHERE (problem_messages.created_at, problem_messages.problem)
                      IS DISTINCT FROM (excluded.created_at, excluded.problem)
        ), drop_problems AS (
            -- (rows gone or mended while billing was not following the
            -- table: its trigger disabled, say. Only the row versions this
            -- statement's snapshot sees, by ctid: one the app's trigger
            -- wrote since, for a row it made wrong again, is re-checked
            -- under READ COMMITTED as a new version, and stays.)
            DELETE FROM billing.problem_messages AS p
             USING (SELECT q.ctid AS tid FROM billing.problem_messages AS q
                     WHERE q.source_id = p_source
                       AND NOT EXISTS (SELECT 1 FROM scan AS s
                                        WHERE s.recorded AND s.message_id = q.message_id
                                          AND billing._row_problem(s.problem, s.created_at) IS NOT NULL)) AS gone
             WHERE p.ctid = gone.tid
        ), drop_ledger AS (
            DELETE FROM billing.usage_ledger WHERE source_id = p_source
        ), drop_stale AS (
            DELETE FROM billing.stale_months WHERE source_id = p_source
        ), drop_months AS (
            DELETE FROM billing.month_usage WHERE source_id = p_source RETURNING 1
        ), drop_conversations AS (
            DELETE FROM billing.conversation_usage WHERE source_id = p_source RETURNING 1
        ), drop_conversation_models AS (
            DELETE FROM billing.conversation_model_usage WHERE source_id = p_source RETURNING 1
        ), add_months AS (
            -- Reading the DELETE's output makes it run before this INSERT.
            INSERT INTO billing.month_usage
            SELECT p_source, s.month, coalesce(s.model, ''), sum(s.messages), sum(s.prompt_tokens),
                   sum(s.completion_tokens), sum(s.cached_tokens), sum(s.estimated_prompt),
                   sum(s.estimated_completion), sum(s.unsplit_tokens), sum(s.problems), sum(s.cost),
                   sum(s.estimated_cost), sum(s.unpriced_tokens)
              FROM scan AS s
             WHERE NOT s.recorded AND (SELECT count(*) FROM drop_months) >= 0
             GROUP BY s.month, coalesce(s.model, '')
        ), add_conversation_models AS (
            INSERT INTO billing.conversation_model_usage
            SELECT p_source, s.month, s.conversation_id, coalesce(s.model, ''), sum(s.messages), sum(s.prompt_tokens),
                   sum(s.completion_tokens), sum(s.cached_tokens), sum(s.estimated_prompt),
                   sum(s.estimated_completion), sum(s.unsplit_tokens), sum(s.problems), sum(s.cost),
                   sum(s.estimated_cost), sum(s.unpriced_tokens)
              FROM scan AS s
             WHERE NOT s.recorded AND (SELECT count(*) FROM drop_conversation_models) >= 0
             GROUP BY s.month, s.conversation_id, coalesce(s.model, '')
        )
        INSERT INTO billing.conversation_usage
        SELECT p_source, s.month, s.conversation_id, sum(s.messages), sum(s.prompt_tokens),
               sum(s.completion_tokens), sum(s.cached_tokens), sum(s.estimated_prompt + s.estimated_completion),
               sum(s.cost + s.estimated_cost), sum(s.unpriced_tokens), min(s.first_message_at),
               max(s.last_message_at), false
          FROM scan AS s
         WHERE NOT s.recorded AND (SELECT count(*) FROM drop_conversations) >= 0
         GROUP BY s.month, s.conversation_id;
        IF billing._citus_triggered(p_source) THEN
            -- (its estimates and problem rows live beside its messages)
            PERFORM billing._citus_ship_recorded(t);
        END IF;
        UPDATE billing.tracked_tables SET backfilled = true WHERE id = p_source;
        RETURN;
    END IF;
    -- Writers may change these rows while we record them: _backfill_rows
    -- locks the ones it lists (estimated replies and unreadable rows, a
    -- small part of the table) before it estimates their prompts.
    WITH recorded AS MATERIALIZED (
        SELECT * FROM billing._backfill_rows(t)
    ), estimates AS (
        INSERT INTO billing.estimated_prompts
        SELECT p_source, r.message_id, r.estimated_prompt FROM recorded AS r WHERE r.estimated
        ON CONFLICT (source_id, message_id) DO NOTHING
    ), drop_problems AS (
        -- (as above: a problem row a writer adds or changes after this
        -- statement's snapshot stays)
        DELETE FROM billing.problem_messages AS p
         USING (SELECT q.ctid AS tid FROM billing.problem_messages AS q
                 WHERE q.source_id = p_source
                   AND NOT EXISTS (SELECT 1 FROM recorded AS r
                                    WHERE r.message_id = q.message_id
                                      AND billing._row_problem(r.problem, r.created_at) IS NOT NULL)) AS gone
         WHERE p.ctid = gone.tid
    )
    INSERT INTO billing.problem_messages
    SELECT DISTINCT ON (r.message_id)
           p_source, r.message_id, CASE WHEN isfinite(r.created_at) THEN r.created_at END,
           billing._row_problem(r.problem, r.created_at)
      FROM recorded AS r
     WHERE billing._row_problem(r.problem, r.created_at) IS NOT NULL
     ORDER BY r.message_id, r.created_at DESC NULLS FIRST, r.problem
    ON CONFLICT (source_id, message_id) DO UPDATE SET created_at = excluded.created_at, problem = excluded.problem
        -- (a row unchanged keeps its version: a REPEATABLE READ app that
        -- mends the message later does not conflict with this merge)
        WHERE (problem_messages.created_at, problem_messages.problem)
              IS DISTINCT FROM (excluded.created_at, excluded.problem);
    -- Every estimate is frozen now: the rebuilds read them (this
    -- transaction's mark is seen by no one else before it commits).
    UPDATE billing.tracked_tables SET backfilled = true WHERE id = p_source RETURNING * INTO t;
    PERFORM billing._backfill_months(t);
END
$$;

-- billing's periodic work (merge, check_alerts, issue_statements) does its
-- work in one statement: a statement_timeout shorter than it cancels every
-- run, and each starts over. Said in one line with the way out, where the
-- cancelled statement's own context quoted a hundred lines of SQL. Called
-- from their handlers of query_canceled, which re-raise anything else.
CREATE FUNCTION billing._raise_if_timed_out(p_what text, p_message text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_message LIKE '%statement timeout%' THEN
        RAISE EXCEPTION 'billing: % was cancelled by statement_timeout (%): it does its work in one statement, so every run that takes longer starts over',
                        p_what, current_setting('statement_timeout')
            USING ERRCODE = 'query_canceled',
                  HINT = 'Run it without a time limit: ALTER ROLE <the role that runs it> SET statement_timeout = 0 (pg_cron''s job runs as the role that scheduled it). The reads stay exact meanwhile, only slower.';
    END IF;
END
$$;

-- billing's periodic work (merge, check_alerts, issue_statements) writes its
-- tables: on a standby it stops at once with an error that says where to
-- run it, instead of PostgreSQL's first read-only error from deep inside.
CREATE FUNCTION billing._require_primary(p_what text) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'billing: % writes billing''s tables, so it cannot run on a standby', p_what
            USING ERRCODE = 'read_only_sql_transaction',
                  HINT = 'Run it on the primary (pg_cron runs its jobs there only). The reads on a standby are exact without it.';
    END IF;
END
$$;

-- What merge() sees wrong around it, each said at every merge in a WARNING
-- with the way out: its own isolation level, a subscription writing
-- billing's tables, a partition half detached, billing's triggers on a
-- table billing does not track.
CREATE FUNCTION billing._merge_warnings() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- A subscription that writes billing's own tables (a publication FOR ALL
    -- TABLES of another billing database) adds that database's ledger and
    -- rollups to this one's: said at every merge, as it bills twice.
    subscriptions text := (SELECT string_agg(DISTINCT ps.subname, ', ' ORDER BY ps.subname)
                             FROM pg_subscription_rel AS sr JOIN pg_class AS c ON c.oid = sr.srrelid
                             JOIN pg_subscription AS ps ON ps.oid = sr.srsubid
                            WHERE c.relnamespace = 'billing'::regnamespace);
    -- A DETACH PARTITION ... CONCURRENTLY that was cancelled leaves its
    -- partition half gone until FINALIZE: PostgreSQL no longer reads it
    -- through the table, while the months merged before still count it.
    -- Said at every merge, with the statement that ends it.
    pending_detaches text := (SELECT string_agg(format('ALTER TABLE %s DETACH PARTITION %s FINALIZE;',
                                                       i.inhparent::regclass, i.inhrelid::regclass), ' '
                                                ORDER BY i.inhrelid::regclass::text)
                                FROM pg_inherits AS i
                               WHERE i.inhdetachpending
                                 AND i.inhparent IN (SELECT p.relid FROM billing.tracked_tables AS t
                                                      CROSS JOIN LATERAL pg_partition_tree(t.relation) AS p));
    -- billing's triggers on a table billing does not track (a restore that
    -- dropped and made the table again, pg_restore --clean, brings them
    -- back without the tracking; or only the TRUNCATE trigger, when the
    -- row triggers' functions went with the forgotten table): its writes
    -- go unbilled. (The TRUNCATE trigger a detached partition keeps names
    -- a table still tracked: not counted.)
    untracked_triggers text := (SELECT string_agg(DISTINCT format('SELECT billing.%s(%L);',
                                                         CASE WHEN g.tgname = 'billing_track_profiles' THEN 'track_profiles'
                                                              ELSE 'track_messages' END, g.tgrelid::regclass::text), ' ')
                                  FROM pg_trigger AS g
                                 WHERE g.tgname IN ('billing_track', 'billing_track_truncate', 'billing_track_profiles')
                                   AND g.tgparentid = 0
                                   AND CASE g.tgname
                                       WHEN 'billing_track_profiles' THEN NOT billing._in_tracked_profiles_tree(g.tgrelid)
                                       WHEN 'billing_track' THEN billing._tracked_tree_of(g.tgrelid) IS NULL
                                       ELSE billing._tracked_tree_of(g.tgrelid) IS NULL
                                            AND g.tgfoid = 'billing._tracked_truncated()'::regprocedure
                                            AND NOT EXISTS (SELECT 1 FROM billing.tracked_tables AS t
                                                             WHERE billing._is_truncate_trigger(g, t.id)) END);
BEGIN
    IF untracked_triggers IS NOT NULL THEN
        RAISE WARNING 'billing: a table carries billing''s trigger but is not tracked (a restore brought the trigger back without the tracking?): its writes are not billed'
            USING HINT = untracked_triggers || ' (or drop the trigger, if the table is not to be billed). track_profiles records the counters'' current values as sent, which billing''s tables may hold already: README "track_profiles" says how to take them back.';
    END IF;
    IF subscriptions IS NOT NULL THEN
        RAISE WARNING 'billing: a logical replication subscription writes billing''s own tables (%): the rows it copies add to this database''s own figures',
                      subscriptions
            USING HINT = 'Subscribe to the app''s tables only: on the publisher, a publication FOR TABLE or FOR TABLES IN SCHEMA of them.';
    END IF;
    IF pending_detaches IS NOT NULL THEN
        RAISE WARNING 'billing: a partition of a tracked table is still being detached (a DETACH PARTITION ... CONCURRENTLY did not finish): the months merged before count its rows, what billing reads from the table does not'
            USING HINT = pending_detaches;
    END IF;
    -- At SERIALIZABLE its reads of the ledger and of the tables would take
    -- predicate locks, and the app's serializable transactions that write
    -- them would fail (SQLSTATE 40001) because of the merge.
    IF current_setting('transaction_isolation') = 'serializable' THEN
        RAISE WARNING 'billing: merge() runs at SERIALIZABLE isolation: its reads can make the app''s serializable transactions fail (SQLSTATE 40001)'
            USING HINT = 'Run it at READ COMMITTED: ALTER ROLE <the role that runs it> SET default_transaction_isolation = ''read committed'' (pg_cron''s job runs as the role that scheduled it).';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION billing._merge_warnings() FROM PUBLIC;

CREATE FUNCTION billing.merge() RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    merged bigint;
BEGIN
    PERFORM billing._require_primary('billing.merge()');
    -- One merge at a time; a second caller has nothing to do.
    -- (a row lock: only a role that may update billing's tables can hold it)
    IF NOT EXISTS (SELECT 1 FROM billing.merge_lock FOR UPDATE SKIP LOCKED) THEN
        RETURN 0;
    END IF;
    PERFORM billing._merge_warnings();
    PERFORM billing._refresh_trigger_functions();
    -- A table whose triggers are disabled or fire unalike, still read from
    -- the ledger: the event trigger that switches it to reading the table
    -- missed the change (made under 0.3 before the update, say). Read from
    -- the table from now on, as that event trigger would have had it.
    FOR s IN SELECT id, relation FROM billing.tracked_tables WHERE backfilled AND billing._trigger_disabled(id) ORDER BY id LOOP
        PERFORM billing._take_in_anew(s.id);
        PERFORM billing._warn_trigger_disabled(s.relation);
    END LOOP;
    -- The ledgers of distributed tables followed by their shards' triggers
    -- join the local one (citus.sql).
    FOR s IN SELECT id FROM billing.tracked_tables WHERE backfilled AND billing._citus_triggered(id)
              ORDER BY id LOOP
        PERFORM billing._merge_step(s.id, 'take', NULL);
    END LOOP;
    -- (a table whose trigger is disabled stays read from the table itself)
    FOR s IN SELECT id FROM billing.tracked_tables
              WHERE (NOT backfilled OR billing._citus_recomputed(id)) AND NOT billing._trigger_disabled(id)
              ORDER BY id LOOP
        PERFORM billing._merge_step(s.id, 'backfill', NULL);
    END LOOP;
    FOR s IN SELECT sm.source_id, sm.month FROM billing.stale_months AS sm
               JOIN billing.tracked_tables AS t ON t.id = sm.source_id AND t.backfilled
              ORDER BY 1, 2 LOOP
        PERFORM billing._merge_step(s.source_id, 'rebuild', s.month);
    END LOOP;

    WITH moved AS (
        -- (a join on ctid: billing._rollups_current must be joined, not
        -- called per row from a WHERE clause, to be planned as one hash)
        DELETE FROM billing.usage_ledger AS l
         USING (SELECT f.ctid FROM billing.usage_ledger AS f
                 CROSS JOIN LATERAL billing._rollups_current(f.source_id, billing.month_of(f.created_at)) AS fresh
               ) AS current_rows
         WHERE l.ctid = current_rows.ctid
        RETURNING l.*
    ), priced AS MATERIALIZED (
        SELECT m.*, billing.month_of(m.created_at) AS month, billing._key(coalesce(m.model, '')) AS model_key,
               billing.usage_cost(m.model, m.prompt_tokens, m.completion_tokens, m.cached_tokens, m.created_at) AS c,
               billing.usage_cost(coalesce(m.model, cfg.estimate_model), m.estimated_prompt,
                                  m.estimated_completion, 0, m.created_at) AS e
          FROM moved AS m
         CROSS JOIN (SELECT billing._estimate_model() AS estimate_model) AS cfg
    ), rows AS MATERIALIZED (
        SELECT p.*, coalesce(p.c, 0) AS cost, coalesce(p.e, 0) AS estimated_cost,
               billing._unpriced_tokens(p.c, p.e, p.prompt_tokens, p.completion_tokens, p.estimated_prompt,
                                        p.estimated_completion, p.unsplit_tokens) AS unpriced_tokens
          FROM priced AS p
    ), months AS (
        INSERT INTO billing.month_usage AS u
        SELECT r.source_id, r.month, r.model_key, sum(r.messages), sum(r.prompt_tokens),
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
    ), conversation_models AS (
        INSERT INTO billing.conversation_model_usage AS u
        SELECT r.source_id, r.month, billing._key(r.conversation_id), r.model_key, sum(r.messages),
               sum(r.prompt_tokens), sum(r.completion_tokens), sum(r.cached_tokens), sum(r.estimated_prompt),
               sum(r.estimated_completion), sum(r.unsplit_tokens), sum(r.problems), sum(r.cost),
               sum(r.estimated_cost), sum(r.unpriced_tokens)
          FROM rows AS r GROUP BY 1, 2, 3, 4
        ON CONFLICT (source_id, conversation_id, month, model) DO UPDATE SET
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
    SELECT r.source_id, r.month, billing._key(r.conversation_id), sum(r.messages), sum(r.prompt_tokens),
           sum(r.completion_tokens), sum(r.cached_tokens), sum(r.estimated_prompt::numeric + r.estimated_completion),
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
    DELETE FROM billing.conversation_model_usage WHERE messages = 0;
    UPDATE billing.conversation_usage AS c
       SET first_message_at = b.first_at, last_message_at = b.last_at, bounds_stale = false
      FROM (SELECT source_id, month, conversation_id FROM billing.conversation_usage WHERE bounds_stale) AS k,
           LATERAL billing._conversation_bounds(k.source_id, k.month, k.conversation_id) AS b
     WHERE c.source_id = k.source_id AND c.month = k.month
       AND c.conversation_id IS NOT DISTINCT FROM k.conversation_id;
    -- Budget alerts fire at the latest here (budgets.sql).
    PERFORM billing._merge_alerts();
    -- What billing.merge_status shows: when merges last ran, so that a DBA
    -- sees that they stopped (pg_cron down, a renamed database).
    UPDATE billing.merge_lock SET last_merge_at = now(), last_merge_rollups = merged;
    RETURN merged;
EXCEPTION WHEN query_canceled THEN
    PERFORM billing._raise_if_timed_out('billing.merge()', SQLERRM);
    RAISE;
END
$$;
COMMENT ON FUNCTION billing.merge() IS
    'Folds the usage ledger into the monthly rollups and rebuilds stale months. Reads are exact whether or not it runs; run it every minute or so (pg_cron) to keep them fast.';

CREATE FUNCTION billing._mark_stale_from(p_from timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Wait for a running merge: it may be folding writes at the old prices.
    PERFORM 1 FROM billing.merge_lock FOR UPDATE;
    IF NOT isfinite(p_from) THEN
        UPDATE billing.tracked_tables SET backfilled = false WHERE backfilled;
        RETURN;
    END IF;
    INSERT INTO billing.stale_months (source_id, month)
    SELECT t.id, m::date
      FROM billing.tracked_tables AS t,
           generate_series(billing.month_of(greatest(p_from, '0001-01-01 00:00:00+00')),
                           billing.month_of(now()) + interval '1 month', interval '1 month') AS m
    UNION
    SELECT source_id, month FROM billing.month_usage WHERE month >= billing.month_of(p_from)
    UNION
    SELECT source_id, billing.month_of(created_at) FROM billing.usage_ledger WHERE created_at >= p_from
    UNION
    SELECT source_id, billing.month_of(created_at) FROM billing._citus_ledger_rows(p_from, 'infinity')
    ON CONFLICT DO NOTHING;
END
$$;

CREATE FUNCTION billing._prices_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    earliest timestamptz;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT min(effective_from) INTO earliest FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT min(effective_from) INTO earliest FROM old_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT min(x.effective_from) INTO earliest
          FROM (SELECT effective_from FROM old_rows UNION ALL SELECT effective_from FROM new_rows) AS x;
    ELSE
        earliest := '-infinity';   -- TRUNCATE
    END IF;
    IF earliest IS NOT NULL THEN
        PERFORM billing._mark_stale_from(earliest);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER model_prices_stale_insert AFTER INSERT ON billing.model_prices
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._prices_changed();
CREATE TRIGGER model_prices_stale_update AFTER UPDATE ON billing.model_prices
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._prices_changed();
CREATE TRIGGER model_prices_stale_delete AFTER DELETE ON billing.model_prices
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._prices_changed();
CREATE TRIGGER model_prices_stale_truncate AFTER TRUNCATE ON billing.model_prices
    FOR EACH STATEMENT EXECUTE FUNCTION billing._prices_changed();

CREATE FUNCTION billing._settings_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM billing._mark_stale_from('-infinity');
    RETURN NULL;
END
$$;
CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON billing.settings
    FOR EACH STATEMENT EXECUTE FUNCTION billing._settings_changed();

-- The rollups of every month of a table, from the table. Where an index on
-- created_at makes a month cheap to read, month by month with a NOTICE
-- every 5 seconds (rows done, rows per second, time left); else in one
-- statement (one read of the table), saying so.
CREATE FUNCTION billing._backfill_months(t billing.tracked_tables) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record := billing._row_reader(t, 'r');
    indexed boolean;
    lo timestamptz;
    hi timestamptz;
    m date;
    last_month date;
    total numeric;
    done numeric := 0;
    started timestamptz := clock_timestamp();
    reported timestamptz := clock_timestamp();
    rate numeric;
BEGIN
    SELECT EXISTS (SELECT 1 FROM pg_index AS i JOIN pg_attribute AS a
                       ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = t.relation AND a.attname = t.created_at_column)
      INTO indexed;
    IF indexed THEN
        EXECUTE format('SELECT min(%1$s), max(%1$s) FROM %2$s AS r WHERE billing._countable(%1$s)', r.at, t.relation)
           INTO lo, hi;
    END IF;
    IF lo IS NULL OR billing.month_of(hi) > (billing.month_of(lo) + interval '1200 months')::date THEN
        IF NOT indexed AND (SELECT c.reltuples FROM pg_class AS c WHERE c.oid = t.relation) > 1000000 THEN
            RAISE NOTICE 'billing: taking in %: one read of the whole table (an index on % would let billing report progress and rebuild months faster)',
                         t.relation, quote_ident(t.created_at_column);
        END IF;
        PERFORM billing._rebuild(t.id, '-infinity', 'infinity');
        RETURN;
    END IF;
    SELECT sum(greatest(c.reltuples, 0)) INTO total
      FROM pg_class AS c
     WHERE c.oid = t.relation OR c.oid IN (SELECT p.relid FROM pg_partition_tree(t.relation) AS p);
    m := billing.month_of(lo);
    last_month := billing.month_of(hi);
    PERFORM billing._rebuild(t.id, '-infinity', billing.month_start(m));
    LOOP
        PERFORM billing._rebuild(t.id, billing.month_start(m), billing.month_end(m));
        done := done + coalesce((SELECT sum(u.messages) FROM billing.month_usage AS u
                                  WHERE u.source_id = t.id AND u.month = m), 0);
        EXIT WHEN m >= last_month;
        m := (m + interval '1 month')::date;
        IF clock_timestamp() - reported >= interval '5 seconds' THEN
            reported := clock_timestamp();
            rate := done / greatest(extract(epoch FROM reported - started)::numeric, 0.001);
            RAISE NOTICE 'billing: taking in %: % of about % rows, % rows/s, about % s left (next month %)',
                         t.relation, done, round(greatest(total, done)), round(rate),
                         round(greatest(total - done, 0) / greatest(rate, 1)), to_char(m, 'YYYY-MM');
        END IF;
    END LOOP;
    PERFORM billing._rebuild(t.id, billing.month_end(last_month), 'infinity');
END
$$;

-- billing.merge_lock_timeout in milliseconds (0: no limit).
-- C body: src/pg/merge_lock_timeout.cpp
CREATE FUNCTION billing._merge_lock_timeout() RETURNS integer
AS 'MODULE_PATHNAME', 'merge_lock_timeout' LANGUAGE C STABLE PARALLEL SAFE;

-- Sets lock_timeout, for the rest of the transaction (or of the block
-- that an error undoes), to p_ms milliseconds when that is shorter than the
-- caller's (0: no limit on either side); returns the caller's, to be set
-- back. The waits of merge() on an app's table (_merge_step,
-- _refresh_trigger_functions).
CREATE FUNCTION billing._limit_lock_timeout(p_ms integer) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller_ms integer := (SELECT s.setting::integer FROM pg_settings AS s WHERE s.name = 'lock_timeout');
BEGIN
    IF p_ms > 0 AND (caller_ms = 0 OR p_ms < caller_ms) THEN
        PERFORM set_config('lock_timeout', p_ms || 'ms', true);
    END IF;
    RETURN caller_ms;
END
$$;

-- Runs one tracked table's part of merge(): a table billing cannot read
-- (dropped column, lost privilege, ...) is reported and left for the next
-- merge, and every other table goes on. So is a table whose rows or table
-- another transaction holds locked longer than billing.merge_lock_timeout
-- (the backfill locks the rows it records FOR SHARE), or the caller's own
-- lock_timeout when that is shorter: an app transaction left open must not
-- stall the merge of every table.
CREATE FUNCTION billing._merge_step(p_source smallint, p_what text, p_month date) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller_ms integer;
BEGIN
    -- (in the block, not its declarations: an error undoes it with the
    -- block; set back at the end)
    caller_ms := billing._limit_lock_timeout(billing._merge_lock_timeout());
    IF p_what = 'backfill' THEN
        PERFORM billing._backfill(p_source);
    ELSIF p_what = 'take' THEN
        PERFORM billing._citus_take_ledger(p_source, false);
    ELSE
        PERFORM billing._rebuild(p_source, billing.month_start(p_month), billing.month_end(p_month));
    END IF;
    PERFORM set_config('lock_timeout', caller_ms || 'ms', true);
    RETURN true;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'billing: merge could not % tracked table %: %',
                  CASE WHEN p_what = 'backfill' THEN 'take in' WHEN p_what = 'take' THEN 'take in the ledger of'
                       ELSE format('rebuild month %s of', p_month) END,
                  (SELECT relation FROM billing.tracked_tables WHERE id = p_source), SQLERRM
        USING HINT = CASE WHEN SQLSTATE = '55P03' THEN 'Another transaction holds a lock on its rows or on the table (pg_locks, pg_stat_activity); the next merge tries again. billing.merge_lock_timeout sets the wait.'
                          WHEN p_what = 'take' THEN 'Its unmerged writes stay in its ledger, which the reads take in, until a merge succeeds.'
                          ELSE 'Its figures are read from the table until a merge succeeds; billing.usage_problems and the server log say more.' END;
    RETURN false;
END
$$;

-- billing._scan_table, except that a table that cannot be read gives a
-- WARNING and no rows instead of failing the whole read. (No row of a
-- failed scan can have been returned: its grouping consumes every input row
-- before it returns one, and errors come from reading input rows.)
CREATE FUNCTION billing._scan_table_safely(p_source smallint, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (month date, conversation_id text, model text, messages bigint, prompt_tokens numeric,
               completion_tokens numeric, cached_tokens numeric, estimated_prompt numeric,
               estimated_completion numeric, unsplit_tokens numeric, problems bigint, cost numeric,
               estimated_cost numeric, unpriced_tokens numeric,
               first_message_at timestamptz, last_message_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Read as one customer (the setting billing.customer, customers.sql):
    -- the rows of that customer's conversations only.
    RETURN QUERY SELECT * FROM billing._scan_table(p_source, p_from, p_to) AS r
                  WHERE billing.current_customer() IS NULL
                     OR r.conversation_id IN (SELECT c.conversation_id
                                                FROM billing._customer_conversations(billing.current_customer(), false) AS c
                                               WHERE c.source_id = p_source);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'billing: could not read tracked table %: %; its costs are missing from this result',
                  (SELECT t.relation FROM billing.tracked_tables AS t WHERE t.id = p_source), SQLERRM;
END
$$;

-- The merge lock is a row of a billing table, locked FOR UPDATE: only a role
-- that may update billing's tables can take it (an advisory lock could be
-- taken by any role that can connect, and stall every merge).
CREATE TABLE billing.merge_lock (
    id                 integer PRIMARY KEY CHECK (id = 1),
    last_merge_at      timestamptz,   -- start of the last merge() that committed
    last_merge_rollups bigint         -- what it returned
);
COMMENT ON TABLE billing.merge_lock IS
    'One row, locked by billing.merge() and by price and setting changes (which wait for a running merge); holds when the last merge ran (billing.merge_status).';
INSERT INTO billing.merge_lock VALUES (1);
