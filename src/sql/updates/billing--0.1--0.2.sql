-- billing 0.1 -> 0.2: billing views over the app's own tables, and the
-- /api/billing payload as one call (billing.dashboard).
--
-- How the views stay exact while the app writes (README "How tracking works"):
-- * a trigger on each tracked table appends one row per change to
--   billing.usage_ledger (a message counted, or taken back): insert-only, so
--   writers never wait on each other or on billing;
-- * billing.merge() folds the ledger into monthly rollups in one statement,
--   so every snapshot sees each change exactly once, in the ledger or in a
--   rollup; reads add the unmerged ledger rows, priced at read time;
-- * a change that cannot be applied as a delta (a price change, tracking a
--   table with existing rows, a restore) marks months stale: until the next
--   merge rebuilds them, reads compute those months from the source table.

\echo Use "ALTER EXTENSION billing UPDATE TO '0.2'" to load this file. \quit

------------------------------------------------------------------------------
-- Settings
------------------------------------------------------------------------------

CREATE TABLE billing.settings (
    name  text PRIMARY KEY CHECK (name IN ('estimate_model')),
    value text NOT NULL
);
COMMENT ON TABLE billing.settings IS
    'Settings that change stored figures. estimate_model: the model that prices estimated replies that name none.';
INSERT INTO billing.settings VALUES ('estimate_model', 'gpt-4o-mini');
SELECT pg_catalog.pg_extension_config_dump('billing.settings', '');

-- pg_dump keeps every setting; restoring one replaces the default that
-- CREATE EXTENSION put there (and so does a plain INSERT).
CREATE FUNCTION billing._setting_inserted() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM billing.settings WHERE name = NEW.name;
    RETURN NEW;
END
$$;
CREATE TRIGGER settings_inserted BEFORE INSERT ON billing.settings
    FOR EACH ROW EXECUTE FUNCTION billing._setting_inserted();

CREATE FUNCTION billing._estimate_model() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT value FROM billing.settings WHERE name = 'estimate_model' $$;

-- Months are UTC calendar months. No SET clause, so that the planner can
-- inline it into per-row expressions; every name in it is qualified instead.
CREATE FUNCTION billing.month_of(at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT pg_catalog.date_trunc('month', pg_catalog.timezone('UTC', at))::pg_catalog.date $$;
COMMENT ON FUNCTION billing.month_of(timestamptz) IS 'The UTC month (its first day) that contains a time.';

------------------------------------------------------------------------------
-- Per-message building blocks (src/pg/usage_of.cpp)
------------------------------------------------------------------------------

CREATE FUNCTION billing.usage_of(data jsonb, role text, content text,
    OUT model text, OUT prompt_tokens bigint, OUT completion_tokens bigint, OUT cached_tokens bigint,
    OUT estimated_completion bigint, OUT unsplit_tokens bigint, OUT problem text, OUT estimated boolean)
    AS 'MODULE_PATHNAME', 'usage_of' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION billing.usage_of(jsonb, text, text) IS
    'What one message contributes: its usage, the estimate of a reply without usage, or the problem of its data.';

CREATE FUNCTION billing.usage_cost(model text, prompt_tokens bigint, completion_tokens bigint,
                                   cached_tokens bigint, at timestamptz)
    RETURNS numeric AS 'MODULE_PATHNAME', 'usage_cost' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION billing.usage_cost(text, bigint, bigint, bigint, timestamptz) IS
    'Cost of token counts at a time (negative counts give a negative cost); NULL when unpriced; never warns.';

------------------------------------------------------------------------------
-- Tracked tables, the ledger and the rollups
------------------------------------------------------------------------------

CREATE TABLE billing.tracked_tables (
    id                smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    relation          regclass NOT NULL UNIQUE,
    id_column         name NOT NULL,
    conversation_column name NOT NULL,
    role_column       name NOT NULL,
    content_column    name NOT NULL,
    data_column       name NOT NULL,
    created_at_column name NOT NULL,
    tracked_since     timestamptz NOT NULL DEFAULT now(),
    backfilled        boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE billing.tracked_tables IS
    'Message tables billing follows (billing.track_messages). backfilled = false: its rows are read from the table until billing.merge() takes them in.';
SELECT pg_catalog.pg_extension_config_dump('billing.tracked_tables', '');
SELECT pg_catalog.pg_extension_config_dump('billing.tracked_tables_id_seq', '');

-- A restored (or newly tracked) table has no rollups yet: always start unbackfilled.
CREATE FUNCTION billing._tracked_table_added() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.backfilled := false;
    RETURN NEW;
END
$$;
CREATE TRIGGER tracked_tables_added BEFORE INSERT ON billing.tracked_tables
    FOR EACH ROW EXECUTE FUNCTION billing._tracked_table_added();

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

CREATE TABLE billing.month_usage (
    source_id            smallint NOT NULL,
    month                date     NOT NULL,
    model                text     NOT NULL,   -- '' for rows without a model
    messages             bigint   NOT NULL,
    prompt_tokens        bigint   NOT NULL,
    completion_tokens    bigint   NOT NULL,
    cached_tokens        bigint   NOT NULL,
    estimated_prompt     bigint   NOT NULL,
    estimated_completion bigint   NOT NULL,
    unsplit_tokens       bigint   NOT NULL,
    problems             bigint   NOT NULL,
    cost                 numeric  NOT NULL,
    estimated_cost       numeric  NOT NULL,
    unpriced_tokens      bigint   NOT NULL,
    PRIMARY KEY (source_id, month, model)
);
COMMENT ON TABLE billing.month_usage IS 'Merged usage per tracked table, UTC month and model as stored.';

CREATE TABLE billing.conversation_usage (
    source_id            smallint NOT NULL,
    month                date     NOT NULL,
    conversation_id      text,
    messages             bigint   NOT NULL,
    prompt_tokens        bigint   NOT NULL,
    completion_tokens    bigint   NOT NULL,
    cached_tokens        bigint   NOT NULL,
    estimated_tokens     bigint   NOT NULL,
    cost                 numeric  NOT NULL,   -- actual and estimated
    unpriced_tokens      bigint   NOT NULL,
    first_message_at     timestamptz,
    last_message_at      timestamptz,
    bounds_stale         boolean  NOT NULL DEFAULT false,
    UNIQUE NULLS NOT DISTINCT (source_id, month, conversation_id)
);
CREATE INDEX conversation_usage_top ON billing.conversation_usage (month, cost DESC, conversation_id);
COMMENT ON TABLE billing.conversation_usage IS 'Merged usage per tracked table, UTC month and conversation.';

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

------------------------------------------------------------------------------
-- Reading a tracked table directly (rebuilds, backfills, stale months)
------------------------------------------------------------------------------

-- Usage of one tracked table's messages with from <= created_at < to, per
-- month, conversation and model. STABLE: it runs in its caller's snapshot.
CREATE FUNCTION billing._scan_source(p_source smallint, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (month date, conversation_id text, model text, messages bigint, prompt_tokens bigint,
               completion_tokens bigint, cached_tokens bigint, estimated_prompt bigint,
               estimated_completion bigint, unsplit_tokens bigint, problems bigint, cost numeric,
               estimated_cost numeric, unpriced_tokens bigint,
               first_message_at timestamptz, last_message_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
BEGIN
    SELECT * INTO STRICT t FROM billing.tracked_tables WHERE id = p_source;
    RETURN QUERY EXECUTE format($q$
        SELECT billing.month_of(r.at), r.conv, r.model, count(*)::bigint,
               sum(r.p)::bigint, sum(r.c)::bigint, sum(r.k)::bigint, sum(r.ep)::bigint, sum(r.ec)::bigint,
               sum(r.unsplit)::bigint, count(r.problem)::bigint,
               coalesce(sum(r.cost), 0), coalesce(sum(r.est_cost), 0),
               sum(CASE WHEN r.cost IS NULL THEN r.p + r.c ELSE 0 END
                   + CASE WHEN r.est_cost IS NULL THEN r.ep + r.ec ELSE 0 END + r.unsplit)::bigint,
               min(r.at), max(r.at)
          FROM (SELECT m.%4$I AS at, m.%2$I::text AS conv, u.model,
                       u.prompt_tokens AS p, u.completion_tokens AS c, u.cached_tokens AS k,
                       CASE WHEN u.estimated THEN coalesce(e.prompt_tokens, 0) ELSE 0 END AS ep,
                       u.estimated_completion AS ec,
                       u.unsplit_tokens AS unsplit, u.problem,
                       billing.usage_cost(u.model, u.prompt_tokens, u.completion_tokens, u.cached_tokens, m.%4$I) AS cost,
                       billing.usage_cost(coalesce(u.model, $4),
                                          CASE WHEN u.estimated THEN coalesce(e.prompt_tokens, 0) ELSE 0 END,
                                          u.estimated_completion, 0, m.%4$I) AS est_cost
                  FROM %1$s AS m
                  CROSS JOIN LATERAL billing.usage_of(m.%5$I::jsonb, m.%6$I::text, m.%7$I::text) AS u
                  LEFT JOIN billing.estimated_prompts AS e
                         ON e.source_id = $1 AND e.message_id = m.%3$I::text
                 WHERE m.%4$I >= $2 AND m.%4$I < $3 AND isfinite(m.%4$I)) AS r
         GROUP BY 1, 2, 3 $q$,
        t.relation, t.conversation_column, t.id_column, t.created_at_column,
        t.data_column, t.role_column, t.content_column)
    USING p_source, p_from, p_to, billing._estimate_model();
END
$$;

-- First and last message time of a conversation in a month, from the source.
CREATE FUNCTION billing._conversation_bounds(p_source smallint, p_month date, p_conversation text,
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
      USING p_conversation, p_month::timestamp AT TIME ZONE 'UTC',
            (p_month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
END
$$;

------------------------------------------------------------------------------
-- Tracking a messages table
------------------------------------------------------------------------------

-- The estimate of a reply's prompt: every earlier message of its
-- conversation (the app sends the whole history), one token per 4 characters.
CREATE FUNCTION billing._trigger_source(t billing.tracked_tables) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
SELECT format($body$
DECLARE
    o record;
    n record;
    est bigint := 0;
    old_est bigint := 0;
    old_estimated boolean := false;   -- OLD was a reply estimated from its text
    old_logged boolean := false;      -- OLD is in billing.problem_messages
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT * INTO o FROM billing.usage_of(OLD.%5$I::jsonb, OLD.%6$I::text, OLD.%7$I::text);
        old_estimated := o.estimated;
        old_logged := o.problem IS NOT NULL OR OLD.%4$I IS NULL OR NOT isfinite(OLD.%4$I);
        IF old_estimated THEN
            SELECT coalesce(max(prompt_tokens), 0) INTO old_est FROM billing.estimated_prompts
             WHERE source_id = %1$s AND message_id = OLD.%3$I::text;
        END IF;
        IF NOT (OLD.%4$I IS NULL OR NOT isfinite(OLD.%4$I)) THEN
            INSERT INTO billing.usage_ledger VALUES (%1$s, OLD.%2$I::text, OLD.%4$I, o.model, -1,
                -o.prompt_tokens, -o.completion_tokens, -o.cached_tokens, -old_est, -o.estimated_completion,
                -o.unsplit_tokens, CASE WHEN o.problem IS NULL THEN 0 ELSE -1 END);
        END IF;
        IF TG_OP = 'DELETE' THEN
            IF old_estimated THEN
                DELETE FROM billing.estimated_prompts WHERE source_id = %1$s AND message_id = OLD.%3$I::text;
            END IF;
            IF old_logged THEN
                DELETE FROM billing.problem_messages WHERE source_id = %1$s AND message_id = OLD.%3$I::text;
            END IF;
            RETURN NULL;
        END IF;
    END IF;

    SELECT * INTO n FROM billing.usage_of(NEW.%5$I::jsonb, NEW.%6$I::text, NEW.%7$I::text);
    IF old_estimated AND (NOT n.estimated OR OLD.%3$I::text <> NEW.%3$I::text) THEN
        DELETE FROM billing.estimated_prompts WHERE source_id = %1$s AND message_id = OLD.%3$I::text;
    END IF;
    IF n.estimated THEN
        IF old_estimated AND OLD.%3$I::text = NEW.%3$I::text THEN
            est := old_est;   -- the estimate was taken when the reply was stored
        ELSE
            SELECT coalesce(sum(ceil(char_length(m.%7$I::text) / 4.0)), 0)::bigint INTO est
              FROM %8$s AS m
             WHERE m.%2$I = NEW.%2$I AND (m.%4$I, m.%3$I) < (NEW.%4$I, NEW.%3$I);
            INSERT INTO billing.estimated_prompts VALUES (%1$s, NEW.%3$I::text, est)
                ON CONFLICT (source_id, message_id) DO UPDATE SET prompt_tokens = excluded.prompt_tokens;
        END IF;
    END IF;

    IF NEW.%4$I IS NULL OR NOT isfinite(NEW.%4$I) THEN
        n.problem := coalesce(n.problem || '; ', '') || 'created_at is NULL or infinite: not counted in any month';
    ELSE
        INSERT INTO billing.usage_ledger VALUES (%1$s, NEW.%2$I::text, NEW.%4$I, n.model, 1,
            n.prompt_tokens, n.completion_tokens, n.cached_tokens, est, n.estimated_completion,
            n.unsplit_tokens, CASE WHEN n.problem IS NULL THEN 0 ELSE 1 END);
    END IF;
    IF old_logged AND (n.problem IS NULL OR OLD.%3$I::text <> NEW.%3$I::text) THEN
        DELETE FROM billing.problem_messages WHERE source_id = %1$s AND message_id = OLD.%3$I::text;
    END IF;
    IF n.problem IS NOT NULL THEN
        INSERT INTO billing.problem_messages VALUES (%1$s, NEW.%3$I::text, NEW.%4$I, n.problem)
            ON CONFLICT (source_id, message_id) DO UPDATE SET created_at = excluded.created_at, problem = excluded.problem;
    END IF;
    RETURN NULL;
END
$body$, t.id, t.conversation_column, t.id_column, t.created_at_column, t.data_column,
        t.role_column, t.content_column, t.relation)
$fn$;

CREATE FUNCTION billing.track_messages(
    relation regclass,
    id_column name DEFAULT 'id',
    conversation_column name DEFAULT 'conversation_id',
    role_column name DEFAULT 'role',
    content_column name DEFAULT 'content',
    data_column name DEFAULT 'data',
    created_at_column name DEFAULT 'created_at',
    backfill boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    col name;
BEGIN
    FOREACH col IN ARRAY ARRAY[id_column, conversation_column, role_column, content_column,
                               data_column, created_at_column] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute
                        WHERE attrelid = relation AND attname = col AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'billing: table % has no column %', relation, col
                USING ERRCODE = 'undefined_column';
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM billing.tracked_tables tt WHERE tt.relation = track_messages.relation) THEN
        RAISE EXCEPTION 'billing: table % is already tracked', relation USING ERRCODE = 'duplicate_object';
    END IF;

    INSERT INTO billing.tracked_tables (relation, id_column, conversation_column, role_column,
                                        content_column, data_column, created_at_column)
    VALUES (relation, id_column, conversation_column, role_column, content_column, data_column,
            created_at_column)
    RETURNING * INTO t;
    PERFORM billing._create_trigger(t);
    IF backfill THEN
        PERFORM billing._backfill(t.id);
    END IF;
END
$$;
COMMENT ON FUNCTION billing.track_messages(regclass, name, name, name, name, name, name, boolean) IS
    'Starts tracking a messages table: a trigger follows its writes; existing rows are taken in now (backfill) or by the next billing.merge().';

CREATE FUNCTION billing._create_trigger(t billing.tracked_tables) RETURNS void
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
    EXECUTE format('CREATE TRIGGER billing_track AFTER INSERT OR DELETE OR UPDATE OF %I, %I, %I, %I, %I, %I ON %s
                    FOR EACH ROW EXECUTE FUNCTION %s()',
                   t.id_column, t.conversation_column, t.role_column, t.content_column, t.data_column,
                   t.created_at_column, t.relation, fn);
    EXECUTE format('CREATE TRIGGER billing_track_truncate AFTER TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION billing._tracked_truncated(%s)', t.relation, t.id);
END
$$;

-- Everything billing stored about a tracked table's rows.
CREATE FUNCTION billing._forget_rows(p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM billing.usage_ledger WHERE source_id = p_source;
    DELETE FROM billing.month_usage WHERE source_id = p_source;
    DELETE FROM billing.conversation_usage WHERE source_id = p_source;
    DELETE FROM billing.stale_months WHERE source_id = p_source;
    DELETE FROM billing.estimated_prompts WHERE source_id = p_source;
    DELETE FROM billing.problem_messages WHERE source_id = p_source;
END
$$;

CREATE FUNCTION billing._tracked_truncated() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM billing._forget_rows(TG_ARGV[0]::smallint);
    RETURN NULL;
END
$$;

CREATE FUNCTION billing.untrack_messages(relation regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid smallint;
BEGIN
    SELECT id INTO sid FROM billing.tracked_tables tt WHERE tt.relation = untrack_messages.relation;
    IF sid IS NULL THEN
        RAISE EXCEPTION 'billing: table % is not tracked', relation USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('DROP TRIGGER IF EXISTS billing_track ON %s', relation);
    EXECUTE format('DROP TRIGGER IF EXISTS billing_track_truncate ON %s', relation);
    EXECUTE format('DROP FUNCTION IF EXISTS billing.%I()', 'track_' || sid);
    PERFORM billing._forget_rows(sid);
    DELETE FROM billing.tracked_tables WHERE id = sid;
END
$$;
COMMENT ON FUNCTION billing.untrack_messages(regclass) IS
    'Stops tracking a table: drops its trigger and everything billing stored about it.';

------------------------------------------------------------------------------
-- Rebuilding months from the source, and merging the ledger
------------------------------------------------------------------------------

-- Replaces the rollups of [p_from, p_to) for one table with a recomputation
-- from the table, and drops the ledger rows and stale marks that it covers.
-- One statement, so one snapshot: a write committed after it started stays
-- in the ledger and is added on top.
CREATE FUNCTION billing._rebuild(p_source smallint, p_from timestamptz, p_to timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    WITH scan AS MATERIALIZED (
        SELECT * FROM billing._scan_source(p_source, p_from, p_to)
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
    )
    INSERT INTO billing.conversation_usage
    SELECT p_source, s.month, s.conversation_id, sum(s.messages), sum(s.prompt_tokens),
           sum(s.completion_tokens), sum(s.cached_tokens), sum(s.estimated_prompt + s.estimated_completion),
           sum(s.cost + s.estimated_cost), sum(s.unpriced_tokens), min(s.first_message_at),
           max(s.last_message_at), false
      FROM scan s
     WHERE (SELECT count(*) FROM drop_conversations) >= 0
     GROUP BY s.month, s.conversation_id;
END
$$;

-- Takes in a tracked table's existing rows: the estimates of replies stored
-- without usage, then every month.
CREATE FUNCTION billing._backfill(p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
BEGIN
    SELECT * INTO STRICT t FROM billing.tracked_tables WHERE id = p_source;
    -- Writers may change these rows while we record them. Lock the ones we
    -- are about to record (estimated replies and unreadable rows, a small
    -- part of the table): a concurrent update or delete of one of them waits
    -- for us, and its trigger then sees our row and takes it back. The next
    -- statements read with a fresh snapshot, after the locks.
    EXECUTE format($q$
        SELECT count(*) FROM (
            SELECT 1 FROM %1$s AS r
             CROSS JOIN LATERAL billing.usage_of(r.%2$I::jsonb, r.%3$I::text, r.%4$I::text) AS u
             WHERE u.estimated OR u.problem IS NOT NULL OR r.%5$I IS NULL OR NOT isfinite(r.%5$I)
               FOR SHARE OF r) AS locked $q$,
        t.relation, t.data_column, t.role_column, t.content_column, t.created_at_column);
    EXECUTE format($q$
        INSERT INTO billing.estimated_prompts
        SELECT $1, r.%3$I::text,
               (SELECT coalesce(sum(ceil(char_length(m.%6$I::text) / 4.0)), 0)::bigint
                  FROM %1$s AS m
                 WHERE m.%2$I = r.%2$I AND (m.%4$I, m.%3$I) < (r.%4$I, r.%3$I))
          FROM %1$s AS r
         CROSS JOIN LATERAL billing.usage_of(r.%5$I::jsonb, r.%7$I::text, r.%6$I::text) AS u
         WHERE u.estimated
        ON CONFLICT (source_id, message_id) DO NOTHING $q$,
        t.relation, t.conversation_column, t.id_column, t.created_at_column, t.data_column,
        t.content_column, t.role_column)
    USING p_source;
    EXECUTE format($q$
        INSERT INTO billing.problem_messages
        SELECT $1, r.%2$I::text, r.%3$I,
               coalesce(u.problem, 'created_at is NULL or infinite: not counted in any month')
          FROM %1$s AS r
         CROSS JOIN LATERAL billing.usage_of(r.%4$I::jsonb, NULL, NULL) AS u
         WHERE u.problem IS NOT NULL OR r.%3$I IS NULL OR NOT isfinite(r.%3$I)
        ON CONFLICT (source_id, message_id) DO NOTHING $q$,
        t.relation, t.id_column, t.created_at_column, t.data_column)
    USING p_source;
    PERFORM billing._rebuild(p_source, '-infinity', 'infinity');
    UPDATE billing.tracked_tables SET backfilled = true WHERE id = p_source;
END
$$;

-- Cost of the unmerged ledger rows, priced with the reader's snapshot.
CREATE VIEW billing._ledger_priced AS
SELECT l.source_id, billing.month_of(l.created_at) AS month, l.conversation_id,
       coalesce(l.model, '') AS model, l.created_at, l.messages, l.prompt_tokens, l.completion_tokens,
       l.cached_tokens, l.estimated_prompt, l.estimated_completion, l.unsplit_tokens, l.problems,
       coalesce(c.cost, 0) AS cost, coalesce(e.cost, 0) AS estimated_cost,
       (CASE WHEN c.cost IS NULL THEN l.prompt_tokens + l.completion_tokens ELSE 0 END
        + CASE WHEN e.cost IS NULL THEN l.estimated_prompt + l.estimated_completion ELSE 0 END
        + l.unsplit_tokens) AS unpriced_tokens
  FROM billing.usage_ledger AS l
 CROSS JOIN (SELECT value AS estimate_model FROM billing.settings WHERE name = 'estimate_model') AS s
 CROSS JOIN LATERAL billing.usage_cost(l.model, l.prompt_tokens, l.completion_tokens, l.cached_tokens,
                                       l.created_at) AS c(cost)
 CROSS JOIN LATERAL billing.usage_cost(coalesce(l.model, s.estimate_model), l.estimated_prompt,
                                       l.estimated_completion, 0, l.created_at) AS e(cost);

-- Costs derive from the app's messages: a role may read a tracked table's
-- figures only if it may read that table. Row-level security on every table
-- keyed by source_id, and views that run with the reader's privileges.
CREATE FUNCTION billing._may_read_source(p_source smallint) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce((SELECT pg_catalog.has_table_privilege(t.relation, 'SELECT')
                       FROM billing.tracked_tables AS t WHERE t.id OPERATOR(pg_catalog.=) p_source), false)
$$;
-- Is a month of a table read from the source (not backfilled yet, or stale)?
-- Inlinable (no SET clause; operators qualified).
CREATE FUNCTION billing._is_stale(p_source smallint, p_month date) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT EXISTS (SELECT 1 FROM billing.stale_months AS s
                    WHERE s.source_id OPERATOR(pg_catalog.=) p_source AND s.month OPERATOR(pg_catalog.=) p_month)
        OR EXISTS (SELECT 1 FROM billing.tracked_tables AS t
                    WHERE t.id OPERATOR(pg_catalog.=) p_source AND NOT t.backfilled)
$$;

CREATE FUNCTION billing.merge() RETURNS bigint
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
        PERFORM billing._rebuild(s.source_id, s.month::timestamp AT TIME ZONE 'UTC',
                                 (s.month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    END LOOP;

    WITH moved AS (
        DELETE FROM billing.usage_ledger AS l
         WHERE NOT billing._is_stale(l.source_id, billing.month_of(l.created_at))
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
COMMENT ON FUNCTION billing.merge() IS
    'Folds the usage ledger into the monthly rollups and rebuilds stale months. Reads are exact whether or not it runs; run it every minute or so (pg_cron) to keep them fast.';

------------------------------------------------------------------------------
-- Price changes: months from the earliest changed effective_from go stale
------------------------------------------------------------------------------

-- Marks every tracked table's months from p_from's month on as stale. The
-- months up to next month are marked whether or not this snapshot sees data
-- in them, so that a write it cannot see yet is covered too; later months
-- only where data exists. From -infinity: every table goes back to being read
-- from the source until the next merge rebuilds it all.
CREATE FUNCTION billing._mark_stale_from(p_from timestamptz) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Wait for a running merge: it may be folding writes at the old prices.
    PERFORM pg_advisory_xact_lock(hashtext('billing.merge'));
    IF NOT isfinite(p_from) THEN
        UPDATE billing.tracked_tables SET backfilled = false WHERE backfilled;
        RETURN;
    END IF;
    INSERT INTO billing.stale_months (source_id, month)
    SELECT t.id, m::date
      FROM billing.tracked_tables AS t,
           generate_series(billing.month_of(p_from), billing.month_of(now()) + interval '1 month',
                           interval '1 month') AS m
    UNION
    SELECT source_id, month FROM billing.month_usage WHERE month >= billing.month_of(p_from)
    UNION
    SELECT source_id, billing.month_of(created_at) FROM billing.usage_ledger WHERE created_at >= p_from
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
CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE ON billing.settings
    FOR EACH STATEMENT EXECUTE FUNCTION billing._settings_changed();

------------------------------------------------------------------------------
-- Exact reads: rollups and ledger for fresh months, the source for stale ones
------------------------------------------------------------------------------

-- OpenAI usage with p_from <= time < p_to, per table, month and model.
CREATE FUNCTION billing._model_usage(p_from timestamptz, p_to timestamptz)
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
               AND (u.month::timestamp AT TIME ZONE 'UTC') >= p_from
               AND ((u.month + interval '1 month')::timestamp AT TIME ZONE 'UTC') <= p_to
            UNION ALL
            SELECT l.source_id, l.month, l.model, l.messages, l.prompt_tokens, l.completion_tokens,
                   l.cached_tokens, l.estimated_prompt, l.estimated_completion, l.unsplit_tokens,
                   l.problems, l.cost, l.estimated_cost, l.unpriced_tokens
              FROM billing._ledger_priced AS l
             WHERE (l.month::timestamp AT TIME ZONE 'UTC') >= p_from
               AND ((l.month + interval '1 month')::timestamp AT TIME ZONE 'UTC') <= p_to) AS x
     WHERE NOT billing._is_stale(x.source_id, x.month)
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
CREATE FUNCTION billing._source_ranges(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (source_id smallint, range_from timestamptz, range_to timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH months AS (
        SELECT s.source_id, s.month FROM billing.stale_months AS s
        UNION
        SELECT t.id, billing.month_of(p_from) FROM billing.tracked_tables AS t
         WHERE isfinite(p_from) AND p_from <> (billing.month_of(p_from)::timestamp AT TIME ZONE 'UTC')
        UNION
        SELECT t.id, billing.month_of(p_to - interval '1 microsecond') FROM billing.tracked_tables AS t
         WHERE isfinite(p_to) AND p_to <> (billing.month_of(p_to)::timestamp AT TIME ZONE 'UTC')
    )
    SELECT t.id, p_from, p_to FROM billing.tracked_tables AS t
     WHERE NOT t.backfilled AND billing._may_read_source(t.id)
    UNION ALL
    SELECT m.source_id, greatest(p_from, m.month::timestamp AT TIME ZONE 'UTC'),
           least(p_to, (m.month + interval '1 month')::timestamp AT TIME ZONE 'UTC')
      FROM months AS m
      JOIN billing.tracked_tables AS t ON t.id = m.source_id AND t.backfilled
     WHERE billing._may_read_source(t.id)
       AND (m.month + interval '1 month')::timestamp AT TIME ZONE 'UTC' > p_from
       AND m.month::timestamp AT TIME ZONE 'UTC' < p_to
$$;

-- OpenAI usage with p_from <= time < p_to, per table, month and conversation.
CREATE FUNCTION billing._conversation_usage(p_from timestamptz, p_to timestamptz)
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
           AND (u.month::timestamp AT TIME ZONE 'UTC') >= p_from
           AND ((u.month + interval '1 month')::timestamp AT TIME ZONE 'UTC') <= p_to
        UNION ALL
        SELECT l.source_id, l.month, l.conversation_id, l.messages, l.prompt_tokens, l.completion_tokens,
               l.cached_tokens, l.estimated_prompt + l.estimated_completion, l.cost + l.estimated_cost,
               l.unpriced_tokens,
               CASE WHEN l.messages > 0 THEN l.created_at END, CASE WHEN l.messages > 0 THEN l.created_at END,
               CASE WHEN l.messages < 0 THEN l.created_at END, CASE WHEN l.messages < 0 THEN l.created_at END,
               false
          FROM billing._ledger_priced AS l
         WHERE (l.month::timestamp AT TIME ZONE 'UTC') >= p_from
           AND ((l.month + interval '1 month')::timestamp AT TIME ZONE 'UTC') <= p_to
    ), g AS (
        SELECT x.source_id, x.month, x.conversation_id, sum(x.messages)::bigint AS messages,
               sum(x.prompt_tokens)::bigint AS prompt_tokens, sum(x.completion_tokens)::bigint AS completion_tokens,
               sum(x.cached_tokens)::bigint AS cached_tokens, sum(x.estimated_tokens)::bigint AS estimated_tokens,
               sum(x.cost) AS cost, sum(x.unpriced_tokens)::bigint AS unpriced_tokens,
               min(x.first_add) AS first_add, max(x.last_add) AS last_add,
               min(x.first_removed) AS first_removed, max(x.last_removed) AS last_removed,
               bool_or(x.bounds_stale) AS bounds_stale
          FROM x
         WHERE NOT billing._is_stale(x.source_id, x.month)
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

------------------------------------------------------------------------------
-- AWS usage
------------------------------------------------------------------------------

CREATE TABLE billing.aws_usage (
    id          bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    service     text        NOT NULL CHECK (service <> ''),
    quantity    numeric     NOT NULL CHECK (quantity >= 0 AND quantity = round(quantity, 6)),
    at          timestamptz NOT NULL CHECK (isfinite(at)),
    note        text,
    origin      text        NOT NULL DEFAULT 'record_usage',
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX aws_usage_at ON billing.aws_usage (at);
COMMENT ON TABLE billing.aws_usage IS
    'Recorded AWS usage: e-mails, requests, GB-months... one row per billing.record_usage call (or counter increase).';
SELECT pg_catalog.pg_extension_config_dump('billing.aws_usage', '');
SELECT pg_catalog.pg_extension_config_dump('billing.aws_usage_id_seq', '');

CREATE TABLE billing.aws_actuals (
    month     date    NOT NULL CHECK (month = date_trunc('month', month)),
    service   text    NOT NULL,
    cost      numeric NOT NULL,
    note      text,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (month, service)
);
COMMENT ON TABLE billing.aws_actuals IS
    'Actual AWS costs of a month and service (e.g. from Cost Explorer): they replace the estimate from recorded usage.';
SELECT pg_catalog.pg_extension_config_dump('billing.aws_actuals', '');

-- SECURITY DEFINER: an app role granted EXECUTE records validated usage
-- without write access to billing.aws_usage.
CREATE FUNCTION billing.record_usage(service text, quantity numeric, at timestamptz DEFAULT now(),
                                     note text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF service IS NULL OR btrim(service) = '' THEN
        RAISE EXCEPTION 'billing: service must be given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF quantity IS NULL OR quantity < 0 OR quantity = 'NaN' OR quantity = 'Infinity' THEN
        RAISE EXCEPTION 'billing: quantity must be a finite number >= 0, got %', quantity
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF quantity <> round(quantity, 6) THEN
        RAISE EXCEPTION 'billing: quantity has more than 6 decimals: %', quantity
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF at IS NULL OR NOT isfinite(at) THEN
        RAISE EXCEPTION 'billing: at must be a finite time' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO billing.aws_usage (service, quantity, at, note)
    VALUES (lower(btrim(service)), quantity, at, note)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION billing.record_usage(text, numeric, timestamptz, text) IS
    'Records AWS usage (e-mails for ses, requests for lambda, GB-months for s3...) at a time. Unknown services are kept and shown unpriced.';

-- AWS per month and service with p_from <= at < p_to: the estimate from
-- recorded usage, replaced by actual figures where a month has them.
CREATE FUNCTION billing._aws_usage(p_from timestamptz, p_to timestamptz)
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
         WHERE (a.month::timestamp AT TIME ZONE 'UTC') >= p_from AND (a.month::timestamp AT TIME ZONE 'UTC') < p_to
    )
    SELECT coalesce(e.month, a.month), coalesce(e.service, a.service), coalesce(e.quantity, 0),
           coalesce(a.cost, e.cost), CASE WHEN a.cost IS NULL THEN e.unpriced_quantity ELSE 0 END,
           CASE WHEN a.cost IS NULL THEN 'estimate' ELSE 'actual' END
      FROM est AS e FULL JOIN act AS a ON a.month = e.month AND a.service = e.service
$$;

-- Counting the app's e-mail counter (profiles.data.emails_sent_this_month).
CREATE FUNCTION billing.track_profiles(relation regclass, counter text DEFAULT 'emails_sent_this_month',
                                       data_column name DEFAULT 'data', service text DEFAULT 'ses')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn text := format('billing.%I', 'track_profiles_' || relation::oid);
BEGIN
    EXECUTE format($f$CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = pg_catalog, pg_temp AS $b$
        DECLARE
            before numeric := 0;
            after numeric;
        BEGIN
            -- Counters that are not plain numbers are ignored (nothing to count).
            IF jsonb_typeof(NEW.%2$I -> %3$L) = 'number' THEN
                after := (NEW.%2$I ->> %3$L)::numeric;
            END IF;
            IF TG_OP = 'UPDATE' AND jsonb_typeof(OLD.%2$I -> %3$L) = 'number' THEN
                before := (OLD.%2$I ->> %3$L)::numeric;
            END IF;
            -- Only increases are usage; a decrease is the monthly reset.
            IF after > before AND after = round(after) THEN
                INSERT INTO billing.aws_usage (service, quantity, at, note, origin)
                VALUES (%4$L, after - before, now(), NULL, 'track_profiles');
            END IF;
            RETURN NULL;
        END $b$ $f$, fn, data_column, counter, service);
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fn);
    EXECUTE format('CREATE TRIGGER billing_track_profiles AFTER INSERT OR UPDATE OF %I ON %s
                    FOR EACH ROW EXECUTE FUNCTION %s()', data_column, relation, fn);
    -- What the counters already hold was sent this month before tracking began.
    EXECUTE format($q$INSERT INTO billing.aws_usage (service, quantity, at, note, origin)
        SELECT %3$L, sum((p.%1$I ->> %2$L)::numeric), now(), 'counter value when tracking began', 'track_profiles'
          FROM %4$s AS p
         WHERE jsonb_typeof(p.%1$I -> %2$L) = 'number' AND (p.%1$I ->> %2$L)::numeric > 0
        HAVING sum((p.%1$I ->> %2$L)::numeric) > 0 $q$, data_column, counter, service, relation);
END
$$;
COMMENT ON FUNCTION billing.track_profiles(regclass, text, name, text) IS
    'Turns increases of a JSON counter (default data.emails_sent_this_month) into recorded usage; resets are ignored.';

CREATE FUNCTION billing.untrack_profiles(relation regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS billing_track_profiles ON %s', relation);
    EXECUTE format('DROP FUNCTION IF EXISTS billing.%I()', 'track_profiles_' || relation::oid);
END
$$;

------------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------------

-- One row per month and cost source ('openai', 'aws'), for every month with usage.
CREATE FUNCTION billing.history(p_from timestamptz DEFAULT '-infinity', p_to timestamptz DEFAULT 'infinity')
RETURNS TABLE (month date, source text, cost numeric, basis text, messages bigint, prompt_tokens bigint,
               completion_tokens bigint, cached_tokens bigint, estimated_tokens bigint,
               unpriced_tokens bigint, emails numeric, services jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.month, 'openai', sum(m.cost + m.estimated_cost),
           CASE WHEN sum(m.estimated_prompt + m.estimated_completion) > 0 THEN 'partly estimated' ELSE 'actual usage' END,
           sum(m.messages)::bigint, sum(m.prompt_tokens)::bigint, sum(m.completion_tokens)::bigint,
           sum(m.cached_tokens)::bigint, sum(m.estimated_prompt + m.estimated_completion)::bigint,
           sum(m.unpriced_tokens)::bigint, NULL::numeric, NULL::jsonb
      FROM billing._model_usage(p_from, p_to) AS m
     GROUP BY m.month
    UNION ALL
    SELECT a.month, 'aws', sum(a.cost),
           CASE WHEN bool_and(a.basis = 'actual') THEN 'actual'
                WHEN bool_or(a.basis = 'actual') THEN 'mixed' ELSE 'estimate' END,
           NULL, NULL, NULL, NULL, NULL, NULL,
           coalesce(sum(a.quantity) FILTER (WHERE a.service = 'ses'), 0),
           jsonb_object_agg(a.service, jsonb_build_object('quantity', a.quantity, 'cost', a.cost, 'basis', a.basis))
      FROM billing._aws_usage(p_from, p_to) AS a
     GROUP BY a.month
$$;
COMMENT ON FUNCTION billing.history(timestamptz, timestamptz) IS
    'Costs per UTC month and source (openai, aws) for usage with p_from <= time < p_to.';

CREATE VIEW billing.monthly_history AS
SELECT h.*, sum(h.cost) OVER (PARTITION BY h.month) AS month_total
  FROM billing.history() AS h;
COMMENT ON VIEW billing.monthly_history IS
    'One row per UTC month and cost source (openai, aws): cost, tokens, messages, e-mails, AWS services, and the month''s total.';

CREATE VIEW billing.conversation_costs AS
SELECT c.month, c.conversation_id, t.relation AS source_table, c.cost,
       c.prompt_tokens + c.completion_tokens AS tokens, c.prompt_tokens, c.completion_tokens,
       c.cached_tokens, c.estimated_tokens, c.unpriced_tokens, c.messages,
       c.first_message_at, c.last_message_at
  FROM billing._conversation_usage('-infinity', 'infinity') AS c
  JOIN billing.tracked_tables AS t ON t.id = c.source_id;
COMMENT ON VIEW billing.conversation_costs IS 'Cost, tokens and messages per conversation and UTC month.';

CREATE VIEW billing.usage_problems AS
SELECT t.relation AS source_table, p.message_id, p.created_at, billing.month_of(p.created_at) AS month,
       'malformed data'::text AS kind, p.problem AS detail, 1::bigint AS messages, NULL::bigint AS tokens
  FROM billing.problem_messages AS p
  JOIN billing.tracked_tables AS t ON t.id = p.source_id
UNION ALL
SELECT t.relation, NULL, NULL, m.month,
       CASE WHEN m.model = '' THEN 'no model' ELSE 'unpriced model' END,
       CASE WHEN m.model = '' THEN 'usage without a model name'
            ELSE format('model "%s" has no price in billing.model_prices at that time',
                        CASE WHEN length(m.model) > 60 THEN left(m.model, 60) || '...' ELSE m.model END) END,
       NULL, m.unpriced_tokens - m.unsplit_tokens
  FROM billing._model_usage('-infinity', 'infinity') AS m
  JOIN billing.tracked_tables AS t ON t.id = m.source_id
 WHERE m.unpriced_tokens - m.unsplit_tokens <> 0
UNION ALL
SELECT t.relation, NULL, NULL, m.month, 'no token split',
       format('usage of model "%s" gives only a total token count: the split decides the price',
              CASE WHEN length(m.model) > 60 THEN left(m.model, 60) || '...' ELSE m.model END),
       NULL, m.unsplit_tokens
  FROM billing._model_usage('-infinity', 'infinity') AS m
  JOIN billing.tracked_tables AS t ON t.id = m.source_id
 WHERE m.unsplit_tokens <> 0
UNION ALL
SELECT NULL, NULL, NULL, a.month, 'unpriced AWS service',
       format('service "%s" has no price in billing.aws_prices', a.service), NULL, NULL
  FROM billing._aws_usage('-infinity', 'infinity') AS a
 WHERE a.unpriced_quantity <> 0;
COMMENT ON VIEW billing.usage_problems IS
    'Messages whose data billing cannot read (one row each), and per month the usage that could not be priced.';

------------------------------------------------------------------------------
-- The dashboard: the /api/billing payload in one call
------------------------------------------------------------------------------

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
          FROM billing.history(history_from::timestamp AT TIME ZONE 'UTC',
                               (last_month + interval '1 month')::timestamp AT TIME ZONE 'UTC') AS h
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

CREATE FUNCTION billing.dashboard(months integer DEFAULT 6, top_conversations integer DEFAULT 50,
                                  at timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT billing.dashboard(billing.month_of(at)::timestamp AT TIME ZONE 'UTC',
                             (billing.month_of(at) + interval '1 month')::timestamp AT TIME ZONE 'UTC',
                             top_conversations, months)
$$;
COMMENT ON FUNCTION billing.dashboard(integer, integer, timestamptz) IS
    'The billing page for the UTC month that contains `at`: SELECT billing.dashboard(); is the whole /api/billing payload.';

-- The top conversations of a period. For one whole fresh month (the usual
-- dashboard) it reads the rollup's (month, cost) index: the first N + K rows,
-- K being the conversations with unmerged ledger rows, are enough to be exact.
CREATE FUNCTION billing._top_conversations(p_from timestamptz, p_to timestamptz, p_limit integer)
RETURNS TABLE (conversation_id text, cost numeric, tokens bigint, messages bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m date := billing.month_of(p_from);
    whole_month boolean;
    k bigint;
BEGIN
    whole_month := p_from = (m::timestamp AT TIME ZONE 'UTC')
                   AND p_to = ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC')
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

    SELECT count(DISTINCT (l.source_id, l.conversation_id)) INTO k
      FROM billing.usage_ledger AS l
     WHERE l.created_at >= p_from AND l.created_at < p_to;
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

CREATE VIEW billing.current_period AS
SELECT (d -> 'period' ->> 'start')::timestamptz AS period_start,
       (d -> 'period' ->> 'end')::timestamptz AS period_end,
       (d -> 'openai' ->> 'cost')::numeric AS openai_cost,
       (d -> 'openai' ->> 'tokens')::bigint AS openai_tokens,
       (d -> 'openai' ->> 'prompt_tokens')::bigint AS prompt_tokens,
       (d -> 'openai' ->> 'completion_tokens')::bigint AS completion_tokens,
       (d -> 'openai' ->> 'cached_tokens')::bigint AS cached_tokens,
       (d -> 'openai' ->> 'messages')::bigint AS messages,
       (d -> 'openai' ->> 'estimated_tokens')::bigint AS estimated_tokens,
       (d -> 'openai' ->> 'unpriced_tokens')::bigint AS unpriced_tokens,
       (d -> 'aws' ->> 'cost')::numeric AS aws_cost,
       (d -> 'aws' ->> 'emails')::numeric AS emails,
       d -> 'aws' -> 'breakdown' AS aws_breakdown,
       d -> 'aws' ->> 'source' AS aws_source,
       (d ->> 'total_cost')::numeric AS total_cost
  FROM billing.dashboard(1, 0) AS d;
COMMENT ON VIEW billing.current_period IS 'The current UTC month''s cards: OpenAI, AWS and total.';

------------------------------------------------------------------------------
-- Privileges (README "Permissions")
------------------------------------------------------------------------------

-- Triggers that keep billing's tables in step with writes made by roles that
-- have no privilege on them run as the extension's owner. Each pins
-- search_path and only touches billing's own tables.
ALTER FUNCTION billing.catalog_changed() SECURITY DEFINER;
ALTER FUNCTION billing.price_row_edited() SECURITY DEFINER;
ALTER FUNCTION billing.removed_seed_price_restored() SECURITY DEFINER;
ALTER FUNCTION billing._prices_changed() SECURITY DEFINER;
ALTER FUNCTION billing._settings_changed() SECURITY DEFINER;
ALTER FUNCTION billing._setting_inserted() SECURITY DEFINER;
ALTER FUNCTION billing._tracked_truncated() SECURITY DEFINER;
REVOKE ALL ON FUNCTION billing.catalog_changed(), billing.price_row_edited(),
    billing.removed_seed_price_restored(), billing._prices_changed(), billing._settings_changed(),
    billing._setting_inserted(), billing._tracked_truncated(), billing._tracked_table_added(),
    billing._forget_rows(smallint) FROM PUBLIC;
-- Recording usage is granted explicitly.
REVOKE ALL ON FUNCTION billing.record_usage(text, numeric, timestamptz, text) FROM PUBLIC;

ALTER TABLE billing.month_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing.conversation_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing.usage_ledger ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing.stale_months ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing.estimated_prompts ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing.problem_messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.month_usage FOR SELECT USING (billing._may_read_source(source_id));
CREATE POLICY source_readers ON billing.conversation_usage FOR SELECT USING (billing._may_read_source(source_id));
CREATE POLICY source_readers ON billing.usage_ledger FOR SELECT USING (billing._may_read_source(source_id));
CREATE POLICY source_readers ON billing.stale_months FOR SELECT USING (billing._may_read_source(source_id));
CREATE POLICY source_readers ON billing.estimated_prompts FOR SELECT USING (billing._may_read_source(source_id));
CREATE POLICY source_readers ON billing.problem_messages FOR SELECT USING (billing._may_read_source(source_id));
ALTER VIEW billing._ledger_priced SET (security_invoker = true);
ALTER VIEW billing.monthly_history SET (security_invoker = true);
ALTER VIEW billing.conversation_costs SET (security_invoker = true);
ALTER VIEW billing.usage_problems SET (security_invoker = true);
ALTER VIEW billing.current_period SET (security_invoker = true);
