-- Tracking an app's messages table: billing.tracked_tables, the column
-- readers (which types billing reads and how, with built-in conversions
-- only), the per-table trigger function billing.track_N generated from the
-- table's row (trigger -> ledger), track_messages / untrack_messages, and
-- the marks that make DROP EXTENSION drop the triggers too.
-- Relies on settings_and_months and message_usage; the ledger tables it
-- writes are in ledger_and_merge.sql (PL/pgSQL resolves them at run time).

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

-- The names of a tracked table's trigger functions, made in one place:
-- billing.track_N (the trigger), billing.track_N_full (the PL/pgSQL body it
-- calls) and, for a distributed table, billing.citus_track_N and
-- citus_track_N_full. _trigger_function_name is the quoted name to create;
-- _trigger_function the function, NULL when it does not exist.
CREATE FUNCTION billing._trigger_function_name(p_source integer, full_body boolean DEFAULT false,
                                               distributed boolean DEFAULT false) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format('billing.%I', CASE WHEN distributed THEN 'citus_track_' ELSE 'track_' END
                                           OPERATOR(pg_catalog.||) p_source::pg_catalog.text
                                           OPERATOR(pg_catalog.||) CASE WHEN full_body THEN '_full' ELSE '' END)
$$;
CREATE FUNCTION billing._trigger_function(p_source integer, full_body boolean DEFAULT false,
                                          distributed boolean DEFAULT false) RETURNS regprocedure
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.to_regprocedure(billing._trigger_function_name(p_source, full_body, distributed)
                                      OPERATOR(pg_catalog.||) '()')
$$;

-- A reply's frozen prompt estimate handed from its DELETE to its INSERT in
-- one statement: an archive move (README "Keeping billed history"), an
-- UPDATE that moves it to another partition. Keyed by billing._key of its
-- id and of its conversation; taken once; gone at the statement's end.
-- C body: src/pg/handed_estimates.cpp
CREATE FUNCTION billing._hand_over_estimate(message text, conversation text, prompt_tokens bigint) RETURNS void
    AS 'MODULE_PATHNAME', 'hand_over_estimate' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION billing._take_handed_estimate(message text, conversation text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'take_handed_estimate' LANGUAGE C VOLATILE PARALLEL UNSAFE;
-- (only billing's trigger bodies, which run as the extension's owner, hand over)
REVOKE ALL ON FUNCTION billing._hand_over_estimate(text, text, bigint), billing._take_handed_estimate(text, text)
    FROM PUBLIC;

-- Under REPEATABLE READ or SERIALIZABLE, fails with a serialization
-- failure (naming p_table) when a merge took the source in after the
-- transaction's snapshot (its billing.tracked_tables row backfilled now,
-- not in the snapshot): a trigger body calls it before it takes back a
-- message's frozen estimate or problem row, which that snapshot may not
-- see. C body:
-- src/pg/tracking_seen.cpp
CREATE FUNCTION billing._require_tracking_seen(p_source smallint, p_table text) RETURNS void
    AS 'MODULE_PATHNAME', 'require_tracking_seen' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
-- (billing's trigger bodies run as the extension's owner)
REVOKE ALL ON FUNCTION billing._require_tracking_seen(smallint, text) FROM PUBLIC;

-- The body of a tracked table's trigger function (billing.track_N). The
-- estimate of a reply's prompt: every earlier message of its conversation
-- (the app sends the whole history), one token per 4 characters.
CREATE FUNCTION billing._trigger_function_body(t billing.tracked_tables) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    o record := billing._row_reader(t, 'OLD');
    n record := billing._row_reader(t, 'NEW');
    earlier_content text := billing._column_reader(t.relation, t.content_column, 'content', 'm');
BEGIN
    RETURN format($body$
DECLARE
    o record;
    n record;
    est bigint := 0;
    old_est bigint := 0;
    old_frozen bigint;                -- OLD's estimate in billing.estimated_prompts, if it has one
    old_estimated boolean := false;   -- OLD was a reply estimated from its text
    old_logged boolean := false;      -- OLD is in billing.problem_messages
    old_id text;
    new_id text;
    old_at timestamptz;
    new_at timestamptz;
BEGIN
    -- This function serves one table: the one it was made for (checked by
    -- OID and name), else whatever billing.tracked_tables says (a
    -- partition of it, or the table after a restore gave it a new OID).
    -- Elsewhere it bills nothing: NEW (OLD for a DELETE), which an AFTER
    -- trigger's result never is otherwise, tells billing.track_N() so.
    IF TG_RELID <> %16$s::pg_catalog.oid OR TG_TABLE_SCHEMA <> %17$L OR TG_TABLE_NAME <> %18$L THEN
        IF NOT billing._trigger_guard(%1$s::pg_catalog.int2, TG_RELID) THEN
            IF TG_OP = 'DELETE' THEN
                RETURN OLD;
            END IF;
            RETURN NEW;
        END IF;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_id := billing._key(%4$s);
        old_at := %6$s;
        SELECT * INTO o FROM %8$s;
        old_estimated := o.estimated;
        old_logged := o.problem IS NOT NULL OR NOT coalesce(billing._countable(old_at), false);
        IF old_estimated OR old_logged THEN
            -- (a snapshot older than the merge that took the table in does
            -- not see what it froze for OLD: such a write fails with 40001)
            PERFORM billing._require_tracking_seen(%1$s::pg_catalog.int2, %15$L);
        END IF;
        IF old_estimated THEN
            SELECT e.prompt_tokens INTO old_frozen FROM billing.estimated_prompts AS e
             WHERE e.source_id = %1$s AND e.message_id = old_id;
            old_est := coalesce(old_frozen, 0);
        END IF;
        IF billing._countable(old_at) THEN
            INSERT INTO billing.usage_ledger VALUES (%1$s, billing._key(%2$s), old_at, o.model, -1,
                -o.prompt_tokens, -o.completion_tokens, -o.cached_tokens, -old_est, -o.estimated_completion,
                -o.unsplit_tokens, CASE WHEN o.problem IS NULL THEN 0 ELSE -1 END);
        END IF;
        IF TG_OP = 'DELETE' THEN
            IF old_frozen IS NOT NULL THEN
                -- (to the same reply inserted later in the statement: an archive
                -- move. Not an estimate it does not have yet: a table billing
                -- reads itself until a merge takes it in.)
                PERFORM billing._hand_over_estimate(old_id, billing._key(%2$s), old_frozen);
            END IF;
            IF old_estimated THEN
                DELETE FROM billing.estimated_prompts WHERE source_id = %1$s AND message_id = old_id;
            END IF;
            IF old_logged THEN
                DELETE FROM billing.problem_messages WHERE source_id = %1$s AND message_id = old_id;
            END IF;
            RETURN NULL;
        END IF;
    END IF;

    new_id := billing._key(%5$s);
    new_at := %7$s;
    SELECT * INTO n FROM %9$s;
    IF old_estimated AND (NOT n.estimated OR old_id <> new_id) THEN
        DELETE FROM billing.estimated_prompts WHERE source_id = %1$s AND message_id = old_id;
    END IF;
    IF n.estimated THEN
        IF old_estimated AND old_id = new_id THEN
            est := old_est;   -- the estimate was taken when the reply was stored
        ELSIF pg_catalog.to_regclass(%15$L)
              IS DISTINCT FROM coalesce(pg_catalog.pg_partition_root(TG_RELID), TG_RELID::pg_catalog.regclass) THEN
            -- The table was renamed in a way billing did not follow: its old
            -- name may now be another relation. Read nothing by that name.
            n.problem := coalesce(n.problem || '; ', '')
                         || 'prompt not estimated: the table was renamed; a billing.merge() makes its trigger anew';
        ELSE
            -- (frozen when the reply was first stored: a DELETE of it earlier in
            -- this statement handed its estimate over)
            est := billing._take_handed_estimate(new_id, billing._key(%3$s));
            IF est IS NULL THEN
                SELECT coalesce(sum(billing._estimated_tokens(%14$s)), 0)::bigint INTO est
                  FROM %10$s AS m
                 WHERE m.%11$I = NEW.%11$I AND %19$s;
            END IF;
            INSERT INTO billing.estimated_prompts VALUES (%1$s, new_id, est)
                ON CONFLICT (source_id, message_id) DO UPDATE SET prompt_tokens = excluded.prompt_tokens;
        END IF;
    END IF;

    IF NOT coalesce(billing._countable(new_at), false) THEN
        n.problem := billing._row_problem(n.problem, new_at);
    ELSE
        INSERT INTO billing.usage_ledger VALUES (%1$s, billing._key(%3$s), new_at, n.model, 1,
            n.prompt_tokens, n.completion_tokens, n.cached_tokens, est, n.estimated_completion,
            n.unsplit_tokens, CASE WHEN n.problem IS NULL THEN 0 ELSE 1 END);
    END IF;
    IF old_logged AND (n.problem IS NULL OR old_id <> new_id) THEN
        DELETE FROM billing.problem_messages WHERE source_id = %1$s AND message_id = old_id;
    END IF;
    IF n.problem IS NOT NULL THEN
        INSERT INTO billing.problem_messages
        VALUES (%1$s, new_id, CASE WHEN isfinite(new_at) THEN new_at END, n.problem)
            ON CONFLICT (source_id, message_id) DO UPDATE SET created_at = excluded.created_at, problem = excluded.problem;
    END IF;
    RETURN NULL;
END
$body$, t.id, o.conversation, n.conversation, o.id, n.id, o.at, n.at, o.usage, n.usage,
        t.relation, t.conversation_column, t.created_at_column, t.id_column, earlier_content,
        t.relation::text, t.relation::oid,
        (SELECT ns.nspname FROM pg_class AS cl JOIN pg_namespace AS ns ON ns.oid = cl.relnamespace
          WHERE cl.oid = t.relation),
        (SELECT cl.relname FROM pg_class AS cl WHERE cl.oid = t.relation), billing._earlier_condition(t, 'm', 'NEW'));
END
$fn$;
-- Refuses, with a message that says why, a relation whose writes billing's
-- triggers would not all see, or that would leave costs behind: not a table
-- (a view, a foreign table ...), a temporary table (it goes with its
-- session, and no event says so), a table with inheritance children (its
-- reads would include their rows, which no trigger of its sees), a
-- partition of a tracked table (followed with it already), a partitioned
-- table one of whose partitions is tracked on its own.
CREATE FUNCTION billing._check_trackable(p_relation regclass) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pg_class := (SELECT k FROM pg_class AS k WHERE k.oid = p_relation);
    other regclass;
BEGIN
    IF c.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'billing: % is a %, not a table: billing tracks a table''s writes with triggers', p_relation,
                        CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
                                       WHEN 'S' THEN 'sequence' WHEN 'i' THEN 'index' WHEN 'I' THEN 'index'
                                       ELSE 'relation of kind ' || c.relkind::text END
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Track the table the view or copy reads from.';
    END IF;
    IF c.relpersistence = 't' THEN
        RAISE EXCEPTION 'billing: % is a temporary table: it goes with its session, and billing would keep its costs', p_relation
            USING ERRCODE = 'feature_not_supported';
    END IF;
    SELECT p.relid::regclass INTO other FROM pg_partition_tree(p_relation) AS p JOIN pg_class AS k ON k.oid = p.relid
     WHERE k.relpersistence = 'u' ORDER BY p.level, p.relid LIMIT 1;
    IF c.relpersistence = 'u' OR other IS NOT NULL THEN
        RAISE EXCEPTION 'billing: % is an unlogged table: a crash empties it, and billing would keep its costs',
                        coalesce(other, p_relation)
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'ALTER TABLE ... SET LOGGED first.';
    END IF;
    SELECT i.inhrelid::regclass INTO other FROM pg_inherits AS i JOIN pg_class AS k ON k.oid = i.inhrelid
     WHERE i.inhparent = p_relation AND NOT k.relispartition ORDER BY i.inhrelid LIMIT 1;
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'billing: % has inheritance children (%): its reads would include their rows, which its trigger would not see', p_relation, other
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Track each table of the hierarchy that has no children on its own, or make it a partitioned table.';
    END IF;
    IF c.relispartition THEN
        other := (SELECT t.relation FROM billing.tracked_tables AS t
                   WHERE t.id = billing._tracked_tree_of(p_relation) AND t.relation <> p_relation);
        IF other IS NOT NULL THEN
            RAISE EXCEPTION 'billing: % is a partition of tracked table %, whose trigger follows it already', p_relation, other
                USING ERRCODE = 'duplicate_object';
        END IF;
    END IF;
    SELECT t.relation INTO other FROM pg_partition_tree(p_relation) AS p
      JOIN billing.tracked_tables AS t ON t.relation = p.relid AND p.level > 0 LIMIT 1;
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'billing: partition % of % is tracked on its own', other, p_relation
            USING ERRCODE = 'duplicate_object',
                  HINT = format('Run SELECT billing.untrack_messages(%L) first.', other::text);
    END IF;
END
$$;

-- billing's triggers on a table it does not track, left there by a restore
-- of part of a database (pg_dump -n of a tracked table brings them, calling
-- the trigger functions of whichever table has that number here, and
-- billing._trigger_guard lets the writes pass unbilled), or on a partition
-- detached from a tracked table (its TRUNCATE trigger): track_messages
-- replaces them. Known by their functions, billing's; a trigger of the app's
-- own is left (and one with billing's name makes CREATE TRIGGER say so).
CREATE FUNCTION billing._drop_stale_triggers(p_relation regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT t.tgname, t.tgrelid::regclass AS relation
               FROM pg_trigger AS t JOIN pg_proc AS p ON p.oid = t.tgfoid
              WHERE t.tgrelid IN (SELECT pt.relid FROM pg_partition_tree(p_relation) AS pt UNION SELECT p_relation)
                AND NOT t.tgisinternal AND t.tgparentid = 0
                AND p.pronamespace = 'billing'::regnamespace
                AND (p.proname ~ '^(citus_)?track_[0-9]+$' OR p.proname = '_tracked_truncated')
              ORDER BY t.tgrelid, t.tgname LOOP
        RAISE NOTICE 'billing: dropping trigger % on %, which served another table (a restore of part of a database, or DETACH PARTITION, leaves billing''s triggers behind)',
                     g.tgname, g.relation;
        PERFORM billing._drop_own_trigger(g.tgname, g.relation);
    END LOOP;
END
$$;

-- A timestamp column (without time zone) whose default is the current
-- time holds the local time of the session that writes it, and billing
-- reads a timestamp as UTC: where the writers' TimeZone is not UTC (at
-- some time of the year), rows near a month's end would land in the next
-- or the last month, and prices would change hours early or late. Said
-- when tracking starts, with the ways out. The writers' zone is not known
-- here: this session's, its default (postgresql.conf, ALTER DATABASE or
-- ALTER ROLE of this role) and every ALTER DATABASE / ALTER ROLE setting of
-- this database's roles are looked at (a DBA's session in UTC beside an
-- app's in Europe/Berlin was missed).
CREATE FUNCTION billing._local_time_default_notice(t billing.tracked_tables) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    default_expr text := (SELECT pg_get_expr(d.adbin, d.adrelid)
                            FROM pg_attribute AS a
                            JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                           JOIN pg_type AS ty ON ty.oid = a.atttypid
                           WHERE a.attrelid = t.relation AND a.attname = t.created_at_column
                             -- (or a domain over it)
                             AND coalesce(nullif(ty.typbasetype, 0), ty.oid) = 'timestamp'::regtype);
    zones text;
BEGIN
    -- (a default that converts the time, now() AT TIME ZONE 'UTC', is left alone)
    IF NOT coalesce(default_expr ~* '(now|current_timestamp|localtimestamp|statement_timestamp|transaction_timestamp|clock_timestamp)'
                    AND default_expr !~* '(at time zone|timezone[(])', false) THEN
        RETURN;
    END IF;
    SELECT string_agg(DISTINCT z.zone, ', ' ORDER BY z.zone) INTO zones
      FROM (SELECT current_setting('TimeZone') AS zone
            UNION SELECT s.reset_val FROM pg_settings AS s WHERE s.name = 'TimeZone'
            UNION SELECT substr(c.setting, length('TimeZone=') + 1)
                    FROM pg_db_role_setting AS r CROSS JOIN LATERAL unnest(r.setconfig) AS c(setting)
                   WHERE r.setdatabase IN (0, (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database()))
                     AND lower(c.setting) LIKE 'timezone=%') AS z
     WHERE EXISTS (SELECT 1 FROM (VALUES (timestamptz '2000-01-15 12:00+00'), (timestamptz '2000-07-15 12:00+00')) AS d(at)
                    WHERE timezone(z.zone, d.at) <> timezone('UTC', d.at));
    IF zones IS NULL THEN
        RETURN;
    END IF;
    RAISE NOTICE 'billing: column % of % is a timestamp without time zone whose default (%) gives the local time of the session that writes it, and billing reads it as UTC; sessions here may be in %',
                 quote_ident(t.created_at_column), t.relation, default_expr, zones
        USING DETAIL = 'Rows whose time the app sends itself (Prisma Client fills @default(now()) itself, in UTC) are not affected; rows that take the default are.',
              HINT = format('Store UTC there: the app''s sessions in UTC (ALTER DATABASE ... SET timezone = ''UTC''), or ALTER TABLE %1$s ALTER COLUMN %2$I SET DEFAULT (now() AT TIME ZONE ''UTC''), or make the column timestamptz (ALTER TABLE %1$s ALTER COLUMN %2$I TYPE timestamptz USING %2$I AT TIME ZONE ''<the zone its rows were written in>'').',
                            t.relation, t.created_at_column);
END
$$;

CREATE FUNCTION billing.track_messages(
    relation regclass,
    id_column name DEFAULT 'id',
    conversation_column name DEFAULT 'conversation_id',
    role_column name DEFAULT 'role',
    content_column name DEFAULT 'content',
    data_column name DEFAULT 'data',
    created_at_column name DEFAULT 'created_at',
    backfill boolean DEFAULT true,
    OUT tracked regclass, OUT backfilled boolean, OUT messages numeric, OUT problems bigint,
    OUT unpriced_models text[], OUT seconds numeric)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    started timestamptz := clock_timestamp();
    missing_param text;
    missing_col name;
    twice record;
BEGIN
    IF relation IS NULL OR NOT EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = relation) THEN
        RAISE EXCEPTION 'billing: relation must name a table, got %', coalesce(relation::oid::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF backfill IS NULL THEN
        RAISE EXCEPTION 'billing: backfill must be true or false, got NULL' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Leave it out for true.';
    END IF;
    IF EXISTS (SELECT 1 FROM billing.tracked_tables tt WHERE tt.relation = track_messages.relation) THEN
        RAISE EXCEPTION 'billing: table % is already tracked', relation USING ERRCODE = 'duplicate_object';
    END IF;
    PERFORM billing._check_trackable(relation);
    -- (a column that is not there: the error names the parameter that names it)
    SELECT p.param, p.col INTO missing_param, missing_col
      FROM (VALUES (1, 'id_column', id_column), (2, 'conversation_column', conversation_column),
                   (3, 'role_column', role_column), (4, 'content_column', content_column),
                   (5, 'data_column', data_column), (6, 'created_at_column', created_at_column)) AS p(n, param, col)
     WHERE billing._column_base_type(relation, p.col) IS NULL ORDER BY p.n LIMIT 1;
    IF missing_param IS NOT NULL THEN
        RAISE EXCEPTION 'billing: table % has no column %', relation, missing_col USING ERRCODE = 'undefined_column',
            HINT = format('Name the table''s column with the parameter %s => ''...''.', missing_param);
    END IF;
    PERFORM billing._drop_stale_triggers(relation);
    INSERT INTO billing.tracked_tables (relation, id_column, conversation_column, role_column,
                                        content_column, data_column, created_at_column)
    VALUES (relation, id_column, conversation_column, role_column, content_column, data_column,
            created_at_column)
    RETURNING * INTO t;
    -- Every column exists and has a type billing reads (else an error that
    -- names it, and nothing is kept).
    PERFORM billing._row_reader(t, 'NEW');
    -- One column for two roles: PostgreSQL's bare "column ... specified
    -- more than once" from the trigger billing makes. (After the type
    -- checks, which say more.)
    SELECT p1.param AS a, p2.param AS b, p1.col INTO twice
      FROM (VALUES (1, 'id_column', id_column), (2, 'conversation_column', conversation_column),
                   (3, 'role_column', role_column), (4, 'content_column', content_column),
                   (5, 'data_column', data_column), (6, 'created_at_column', created_at_column)) AS p1(n, param, col)
      JOIN (VALUES (1, 'id_column', id_column), (2, 'conversation_column', conversation_column),
                   (3, 'role_column', role_column), (4, 'content_column', content_column),
                   (5, 'data_column', data_column), (6, 'created_at_column', created_at_column)) AS p2(n, param, col)
        ON p2.col = p1.col AND p2.n > p1.n
     ORDER BY p1.n, p2.n LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'billing: % and % both name column %', twice.a, twice.b, quote_ident(twice.col)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Each parameter names a column of its own.';
    END IF;
    -- A table Citus distributes is followed by triggers on its shards when
    -- it can be, else recomputed by every merge() (citus.sql).
    IF billing._citus_distributed(relation) THEN
        PERFORM billing._citus_set_up_triggers(t);
    ELSE
        PERFORM billing._create_trigger(t);
    END IF;
    -- Logical replication's apply worker writes as a replica: it fires no
    -- trigger that is not ENABLE ALWAYS.
    IF billing._subscribed(relation) THEN
        RAISE NOTICE 'billing: table % is written by a logical replication subscription, whose writes fire billing''s triggers only when they are ENABLE ALWAYS', relation
            USING HINT = format('ALTER TABLE %s ENABLE ALWAYS TRIGGER billing_track, ENABLE ALWAYS TRIGGER billing_track_update, ENABLE ALWAYS TRIGGER billing_track_truncate;', relation);
    END IF;
    PERFORM billing._local_time_default_notice(t);
    tracked := relation;
    backfilled := track_messages.backfill;
    IF backfill THEN
        PERFORM billing._backfill(t.id);
        SELECT sum(u.messages), array_agg(DISTINCT u.model ORDER BY u.model)
                                  FILTER (WHERE u.model <> '' AND u.unpriced_tokens > u.unsplit_tokens)
          INTO messages, unpriced_models
          FROM billing.month_usage AS u WHERE u.source_id = t.id;
        messages := coalesce(messages, 0);
        SELECT count(*) INTO problems
          FROM (SELECT p.source_id FROM billing.problem_messages AS p
                UNION ALL
                SELECT p.source_id FROM billing._citus_problem_rows() AS p) AS p   -- (citus.sql)
         WHERE p.source_id = t.id;
    END IF;
    seconds := round(extract(epoch FROM clock_timestamp() - started)::numeric, 3);
END
$$;
COMMENT ON FUNCTION billing.track_messages(regclass, name, name, name, name, name, name, boolean) IS
    'Starts tracking a messages table: a trigger follows its writes; existing rows are taken in now (backfill) or by the next billing.merge(). Returns what was taken in.';

CREATE FUNCTION billing._create_trigger(t billing.tracked_tables) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
DECLARE
    fn regprocedure := billing._create_trigger_function(t);
BEGIN
    PERFORM billing._create_row_trigger(t, fn);
    PERFORM billing._create_truncate_trigger(t.relation, t.id);
    PERFORM billing._create_update_trigger(t);
    PERFORM billing._partition_truncate_triggers(t);
    PERFORM billing._record_partitions(t);
END
$$;

-- billing_track, the row trigger of tracked table `t`, calling `fn`.
CREATE FUNCTION billing._create_row_trigger(t billing.tracked_tables, fn regprocedure) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
BEGIN
    -- The column list is kept by attribute number: it also tells
    -- billing._tracked_table_altered which columns a rename touched.
    EXECUTE format('CREATE TRIGGER billing_track AFTER INSERT OR DELETE OR UPDATE OF %I, %I, %I, %I, %I, %I ON %s
                    FOR EACH ROW EXECUTE FUNCTION %s',
                   t.id_column, t.conversation_column, t.role_column, t.content_column, t.data_column,
                   t.created_at_column, t.relation, fn);
    PERFORM billing._depend_on_extension(NULL, t.relation, ARRAY['billing_track']::name[]);
END
$$;
REVOKE ALL ON FUNCTION billing._create_row_trigger(billing.tracked_tables, regprocedure) FROM PUBLIC;

-- billing's row triggers dropped at the start of an ALTER TABLE that changes
-- a column's type, with their modes (and the data column a profiles
-- table's trigger follows), until its end makes them again (empty outside
-- such a command: one transaction writes and deletes its rows).
CREATE TABLE billing.lifted_triggers (
    relation     oid  NOT NULL,
    trigger_name name NOT NULL,
    enabled      "char" NOT NULL,
    column_name  name,
    PRIMARY KEY (relation, trigger_name)
);
REVOKE ALL ON billing.lifted_triggers FROM PUBLIC;

-- The modes of billing's trigger p_trigger on p_relation and of its copies
-- on the partitions (ENABLE ALWAYS on the partition a subscriber
-- replicates, DISABLE on another), kept in billing.lifted_triggers while
-- billing makes the trigger again (with p_column, the data column a
-- profiles table's trigger follows): a trigger made on a partitioned table
-- gives its copies its own mode, and the replicated writes of such a
-- partition went unbilled after an ALTER ... TYPE.
CREATE FUNCTION billing._keep_trigger_modes(p_relation oid, p_trigger name, p_column name DEFAULT NULL) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO billing.lifted_triggers (relation, trigger_name, enabled, column_name)
    SELECT g.tgrelid, g.tgname, g.tgenabled, CASE WHEN p.level = 0 THEN p_column END
      FROM (SELECT t.relid, t.level FROM pg_catalog.pg_partition_tree(p_relation::pg_catalog.regclass) AS t
            UNION SELECT p_relation::pg_catalog.regclass, 0) AS p   -- (a plain table has no partition tree)
      JOIN pg_catalog.pg_trigger AS g ON g.tgrelid = p.relid AND g.tgname = p_trigger
                                     AND (g.tgparentid = 0) = (p.level = 0)   -- (the table's own, the partitions' copies)
    ON CONFLICT (relation, trigger_name) DO UPDATE SET enabled = excluded.enabled, column_name = excluded.column_name
$$;
REVOKE ALL ON FUNCTION billing._keep_trigger_modes(oid, name, name) FROM PUBLIC;

-- ... given back to the trigger made again and its copies, and forgotten:
-- the table first, then each level of partitions (a mode set on a
-- partitioned table reaches the partitions under it).
CREATE FUNCTION billing._restore_trigger_modes(p_relation regclass, p_trigger name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
DECLARE
    k record;
BEGIN
    FOR k IN WITH tree AS (SELECT t.relid, t.level FROM pg_partition_tree(p_relation) AS t
                           UNION SELECT p_relation, 0),   -- (a plain table has no partition tree)
                  kept AS (DELETE FROM billing.lifted_triggers AS l
                            WHERE l.trigger_name = p_trigger AND l.relation IN (SELECT tree.relid FROM tree)
                        RETURNING l.relation, l.enabled)
             SELECT kept.relation::regclass AS relation, kept.enabled
               FROM kept JOIN tree ON tree.relid = kept.relation
              ORDER BY tree.level, kept.relation LOOP
        PERFORM billing._set_trigger_mode(k.relation, p_trigger, k.enabled);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION billing._restore_trigger_modes(regclass, name) FROM PUBLIC;

-- The row triggers of tracked table `t` made again after a change of a
-- column's type (billing._lift_row_triggers dropped them, keeping their
-- modes in billing.lifted_triggers): its trigger functions made for the new
-- types (another type is refused, with SQLSTATE 42804, as track_messages
-- refuses it), each trigger in the mode it had (ENABLE ALWAYS on a
-- subscriber, DISABLE as the owner left it). The frozen prompt estimates
-- are keyed by the id's text: a USING clause that changed it (id TYPE text
-- USING 'm' || id) would leave them behind, and the replies would be
-- estimated anew from the conversation as it is now; refused instead.
CREATE FUNCTION billing._restore_row_triggers(t billing.tracked_tables) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
DECLARE
    fn regprocedure := billing._create_trigger_function(t);
    lost bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM billing.estimated_prompts AS e WHERE e.source_id = t.id) THEN
        -- (one pass over the table, not a probe per estimate: the key is
        -- an expression no index holds)
        EXECUTE format('SELECT count(*) FROM (SELECT e.message_id FROM billing.estimated_prompts AS e WHERE e.source_id = $1
                                              EXCEPT SELECT billing._key(%s) FROM %s AS m) AS x',
                       (billing._row_reader(t, 'm')).id, t.relation)
           INTO lost USING t.id;
        IF lost > 0 THEN
            RAISE EXCEPTION 'billing: % frozen prompt estimates of tracked table % name ids the table no longer holds: the change of column % changed their text',
                            lost, t.relation, quote_ident(t.id_column)
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Keep the ids'' text (USING the old values), or untrack the table first (its replies'' prompts are then estimated anew from their conversations).';
        END IF;
    END IF;
    -- (billing_track first, in its modes, then billing_track_update, which
    -- takes billing_track's, in its own: each ALTER's own end then sees the
    -- modes alike, as they were, and says nothing)
    PERFORM billing._create_row_trigger(t, fn);
    PERFORM billing._restore_trigger_modes(t.relation, 'billing_track');
    PERFORM billing._create_update_trigger(t);
    PERFORM billing._restore_trigger_modes(t.relation, 'billing_track_update');
END
$$;
REVOKE ALL ON FUNCTION billing._restore_row_triggers(billing.tracked_tables) FROM PUBLIC;

-- The trigger of every UPDATE that changes a column billing reads,
-- whatever its SET list names: billing_track fires only for an UPDATE
-- that names one of them (PostgreSQL's rule for a column list), so a value
-- the app's BEFORE trigger sets would pass it. The C function (track_row)
-- leaves an UPDATE to this trigger where it exists; made only once the
-- table's function is that C function, which knows to (a table tracked by
-- 0.3 gets it at the first merge after the update, with its C function:
-- billing._refresh_trigger_functions). The columns are compared with their
-- types' own equality (made here, with search_path pg_catalog: built-in
-- operators), json as text (it has no equality).
CREATE FUNCTION billing._create_update_trigger(t billing.tracked_tables) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
DECLARE
    fn regprocedure := billing._trigger_function(t.id);
    changed text;
BEGIN
    IF fn IS NULL OR (SELECT p.prosrc FROM pg_proc AS p WHERE p.oid = fn) IS DISTINCT FROM 'track_row'
       OR EXISTS (SELECT 1 FROM pg_trigger AS g
                   WHERE g.tgrelid = t.relation AND g.tgfoid = fn AND g.tgparentid = 0 AND cardinality(g.tgattr::int2[]) = 0
                     AND (g.tgtype::int & 16) <> 0) THEN   -- (16: TRIGGER_TYPE_UPDATE)
        RETURN;
    END IF;
    -- (the cheap columns first: OR stops at the first change; text is
    -- compared byte for byte, in the "C" collation: a nondeterministic
    -- collation of the column's would call equal two values billing reads
    -- differently, "PROMPT_TOKENS" and "prompt_tokens" say)
    SELECT string_agg(CASE WHEN billing._column_base_type(t.relation, c) = 'json'::regtype
                           THEN format('((OLD.%1$I)::pg_catalog.text COLLATE pg_catalog."C") IS DISTINCT FROM ((NEW.%1$I)::pg_catalog.text COLLATE pg_catalog."C")', c)
                           WHEN billing._column_base_type(t.relation, c) IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype)
                           THEN format('(OLD.%1$I COLLATE pg_catalog."C") IS DISTINCT FROM (NEW.%1$I COLLATE pg_catalog."C")', c)
                           ELSE format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', c) END, ' OR ' ORDER BY n)
      INTO changed
      FROM unnest(ARRAY[t.id_column, t.conversation_column, t.role_column, t.created_at_column, t.data_column,
                        t.content_column]) WITH ORDINALITY AS u(c, n);
    EXECUTE format('CREATE TRIGGER billing_track_update AFTER UPDATE ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION %s',
                   t.relation, changed, fn);
    PERFORM billing._depend_on_extension(NULL, t.relation, ARRAY['billing_track_update']::name[]);
    PERFORM billing._fire_as_billing_track(t.relation, 'billing_track_update', t.id);
    -- (each partition's copy as that partition's billing_track fires: a
    -- subscriber may replicate one partition alone, ENABLE ALWAYS there; a
    -- table tracked under 0.3 gets this trigger at its first merge)
    PERFORM billing._set_trigger_mode(p.relid, 'billing_track_update', g.tgenabled)
       FROM pg_partition_tree(t.relation) AS p
       JOIN pg_trigger AS g ON g.tgrelid = p.relid AND g.tgname = 'billing_track' AND g.tgparentid <> 0
      WHERE p.level > 0 AND g.tgenabled IN ('A', 'O');
END
$$;

-- Whether a logical replication subscription of this database writes the
-- relation or a partition of it (its apply worker writes as a replica, and
-- fires only ENABLE ALWAYS triggers).
CREATE FUNCTION billing._subscribed(relation regclass) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_subscription_rel AS sr
                    WHERE sr.srrelid IN (SELECT p.relid FROM pg_partition_tree(relation) AS p UNION SELECT relation))
$$;

-- A trigger billing adds to a tracked table after billing_track (the UPDATE
-- trigger a table tracked by 0.3 gets, the TRUNCATE trigger of a partition)
-- fires as billing_track does: ENABLE ALWAYS where the owner made it so, as
-- a logical replication subscriber needs (README "Tracking"), and back to
-- the ordinary mode after. (billing_track disabled, or on a replica only, is
-- the owner's to undo: left alone.)
CREATE FUNCTION billing._fire_as_billing_track(relation regclass, p_trigger name, p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
DECLARE
    mode "char" := (SELECT g.tgenabled FROM billing.tracked_tables AS t JOIN pg_trigger AS g ON g.tgrelid = t.relation
                     WHERE t.id = p_source AND g.tgname = 'billing_track');
BEGIN
    IF mode IN ('A', 'O') THEN
        PERFORM billing._set_trigger_mode(relation, p_trigger, mode);
    END IF;
END
$$;

-- Sets trigger `p_trigger` of `relation` to fire as pg_trigger.tgenabled
-- `mode` says (O: ENABLE, A: ENABLE ALWAYS, R: ENABLE REPLICA, D: DISABLE),
-- where it exists and fires otherwise; nothing for a NULL mode.
CREATE FUNCTION billing._set_trigger_mode(relation regclass, p_trigger name, mode "char") RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
BEGIN
    IF mode IN ('O', 'A', 'R', 'D') AND EXISTS (SELECT 1 FROM pg_trigger AS g
                                                 WHERE g.tgrelid = relation AND g.tgname = p_trigger AND g.tgenabled <> mode) THEN
        EXECUTE format('ALTER TABLE %s %s TRIGGER %I', relation,
                       CASE mode WHEN 'A' THEN 'ENABLE ALWAYS' WHEN 'R' THEN 'ENABLE REPLICA' WHEN 'D' THEN 'DISABLE'
                                 ELSE 'ENABLE' END,
                       p_trigger);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION billing._set_trigger_mode(regclass, name, "char") FROM PUBLIC;

-- Whether trigger g is billing's TRUNCATE trigger for tracked table
-- p_source (billing._tracked_truncated with that table's id), on the table
-- or on one of its partitions.
CREATE FUNCTION billing._is_truncate_trigger(g pg_catalog.pg_trigger, p_source smallint) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.tgfoid = 'billing._tracked_truncated()'::regprocedure
           AND g.tgnargs = 1 AND encode(g.tgargs, 'escape') = p_source::text || E'\\000'
$$;

-- billing's TRUNCATE trigger on `relation`, for tracked table `p_source`.
-- One that billing left on a table that has since left another tracked
-- tree (a detached partition keeps it: nothing drops it) is replaced; a
-- trigger of another function by that name is the owner's, and the
-- CREATE fails on it.
CREATE FUNCTION billing._create_truncate_trigger(relation regclass, p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
BEGIN
    EXECUTE format('CREATE %s TRIGGER billing_track_truncate AFTER TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION billing._tracked_truncated(%s)',
                   CASE WHEN EXISTS (SELECT 1 FROM pg_trigger AS g
                                      WHERE g.tgrelid = relation AND g.tgname = 'billing_track_truncate'
                                        AND g.tgfoid = 'billing._tracked_truncated()'::regprocedure)
                        THEN 'OR REPLACE' ELSE '' END,
                   relation, p_source);
    PERFORM billing._depend_on_extension(NULL, relation, ARRAY['billing_track_truncate']::name[]);
    PERFORM billing._fire_as_billing_track(relation, 'billing_track_truncate', p_source);
END
$$;

-- The TRUNCATE trigger on every partition of a partitioned tracked table
-- (at any level) that lacks it. PostgreSQL clones a row trigger onto each
-- partition, never a statement trigger, and a TRUNCATE of one partition
-- fires that partition's triggers alone. Run again when a partition is
-- created or attached (billing._tracked_table_altered).
CREATE FUNCTION billing._partition_truncate_triggers(t billing.tracked_tables) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    IF billing._citus_distributed(t.relation) THEN
        RETURN;   -- (Citus places a distributed table's triggers itself: citus.sql)
    END IF;
    -- (not on a foreign partition, which PostgreSQL lets have no TRUNCATE
    -- trigger: tracking a table with one failed)
    FOR part IN SELECT p.relid FROM pg_partition_tree(t.relation) AS p
                  JOIN pg_class AS c ON c.oid = p.relid AND c.relkind <> 'f'
                 WHERE p.level > 0
                   AND NOT EXISTS (SELECT 1 FROM pg_trigger AS g
                                    WHERE g.tgrelid = p.relid AND billing._is_truncate_trigger(g, t.id))
                 ORDER BY p.level, p.relid LOOP
        PERFORM billing._create_truncate_trigger(part, t.id);
    END LOOP;
END
$$;

-- The partitions (at every level) of each partitioned tracked table, as
-- billing last saw them. A dropped partition is known by its OID alone:
-- the sql_drop event trigger sees no parent any more, and the name of a
-- trigger it carried is one any role can give a table of its own (which
-- then made every role's DROP take the merge lock and every tracked table
-- in anew). Kept by track_messages, by DDL on the tree and by every
-- merge(); not dumped (a restore's DDL and the first merge fill it).
CREATE TABLE billing.tracked_partitions (
    relid     oid PRIMARY KEY,
    source_id smallint NOT NULL REFERENCES billing.tracked_tables (id) ON DELETE CASCADE
);
COMMENT ON TABLE billing.tracked_partitions IS
    'The partitions of each partitioned tracked table, by OID, as billing last saw them: a dropped one takes its table in anew.';

-- Records the partitions of tracked table `t` as they are now (writing
-- only what changed).
CREATE FUNCTION billing._record_partitions(t billing.tracked_tables) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM billing.tracked_partitions AS p
     WHERE p.source_id = t.id
       AND p.relid NOT IN (SELECT x.relid FROM pg_partition_tree(t.relation) AS x WHERE x.level > 0);
    INSERT INTO billing.tracked_partitions AS p (relid, source_id)
    SELECT x.relid, t.id FROM pg_partition_tree(t.relation) AS x WHERE x.level > 0
    ON CONFLICT (relid) DO UPDATE SET source_id = excluded.source_id WHERE p.source_id <> excluded.source_id;
$$;

-- A tracked table whose rows changed without its row trigger: a partition
-- attached, detached, truncated alone or dropped, a trigger of billing's
-- disabled, rows loaded under session_replication_role = replica
-- (billing.rebuild_messages). Its rollups and ledger
-- no longer say what the table holds, so it is taken in anew, as after a
-- price change back to the beginning of time: the reads go to the table at
-- once, and the next merge() rebuilds every month from it (frozen prompt
-- estimates are kept).
CREATE FUNCTION billing._take_in_anew(p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Wait for a running merge: it may be folding rows the change removed.
    PERFORM 1 FROM billing.merge_lock FOR UPDATE;
    UPDATE billing.tracked_tables SET backfilled = false WHERE id = p_source AND backfilled;
END
$$;

-- Whether one of billing's triggers on tracked table p_source, or on one
-- of its partitions, is disabled (ALTER TABLE ... DISABLE TRIGGER, ALL or
-- by name): the writes it would see pass unbilled. billing then reads the
-- table itself (billing._tracked_table_altered takes it in anew) and
-- merge() leaves it so until the trigger is enabled again.
CREATE FUNCTION billing._trigger_disabled(p_source smallint) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- (R: fires only on a replica. Mixed modes: ENABLE ALWAYS on some of
    -- billing's triggers, as a logical replication subscriber needs on all
    -- of them, and not on others: the apply worker's UPDATEs, say, would
    -- pass the one trigger that takes them.)
    -- (false for a table without billing's triggers: a distributed one
    -- recomputed by every merge)
    SELECT coalesce(bool_or(g.tgenabled IN ('D', 'R')), false) OR count(DISTINCT g.tgenabled) > 1
      FROM billing.tracked_tables AS t
     CROSS JOIN LATERAL (SELECT p.relid FROM pg_partition_tree(t.relation) AS p
                         UNION SELECT t.relation) AS r
      JOIN pg_trigger AS g ON g.tgrelid = r.relid
     WHERE t.id = p_source
       AND (g.tgfoid = billing._trigger_function(t.id)
            OR billing._is_truncate_trigger(g, t.id))
$$;

-- The WARNING that tracked table `relation` is now read from the table
-- itself, its triggers disabled or firing unalike (billing._trigger_disabled),
-- with the ALTER that ends it.
CREATE FUNCTION billing._warn_trigger_disabled(relation regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE WARNING 'billing: a trigger of tracked table % is disabled, fires only on a replica, or does not fire as billing''s other triggers do: billing reads the table itself until they fire alike again', relation
        USING DETAIL = 'Writes the trigger does not see are billed all the same, from the table; reads cost more meanwhile, and the merge() after the triggers are enabled alike again takes the table in anew.',
              HINT = CASE WHEN billing._subscribed(relation)
                          THEN format('ALTER TABLE %1$s ENABLE ALWAYS TRIGGER billing_track, ENABLE ALWAYS TRIGGER billing_track_update, ENABLE ALWAYS TRIGGER billing_track_truncate; (a logical replication subscription writes the table)', relation)
                          ELSE format('ALTER TABLE %1$s ENABLE TRIGGER billing_track, ENABLE TRIGGER billing_track_update, ENABLE TRIGGER billing_track_truncate; (ENABLE ALWAYS, all three, on a logical replication subscriber)', relation) END;
END
$$;

-- Has billing take a tracked table in anew, for rows written where its
-- trigger could not see them (a load under session_replication_role =
-- replica, as logical replication and pg_restore --disable-triggers do).
CREATE FUNCTION billing.rebuild_messages(relation regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid smallint := (SELECT t.id FROM billing.tracked_tables AS t WHERE t.relation = rebuild_messages.relation);
BEGIN
    IF sid IS NULL THEN
        RAISE EXCEPTION 'billing: table % is not tracked', relation USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM billing._take_in_anew(sid);
END
$$;
COMMENT ON FUNCTION billing.rebuild_messages(regclass) IS
    'Takes a tracked table in anew: the reads go to the table at once, and the next billing.merge() rebuilds its months from it (frozen prompt estimates kept). For rows its trigger did not see (session_replication_role = replica).';

-- The tracked table whose partition tree holds the relation (the relation
-- itself included), or NULL.
-- A relation and every ancestor it has through pg_inherits, pending links
-- included: a partition whose DETACH ... CONCURRENTLY is pending, at any
-- level, is left out by pg_partition_ancestors and pg_partition_root, but
-- still counted with its table until the detach completes.
CREATE FUNCTION billing._lineage(p_relid oid) RETURNS SETOF oid
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE up (rel) AS (
        SELECT p_relid
        UNION SELECT i.inhparent FROM pg_inherits AS i JOIN up ON i.inhrelid = up.rel)
    SELECT up.rel FROM up
$$;

CREATE FUNCTION billing._tracked_tree_of(p_relation oid) RETURNS smallint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- (pg_partition_ancestors returns no row for a table outside any
    -- partition tree)
    SELECT t.id FROM (SELECT a.relid FROM pg_partition_ancestors(p_relation) AS a
                      UNION SELECT p_relation::regclass) AS a
      JOIN billing.tracked_tables AS t ON t.relation = a.relid
     ORDER BY t.id LIMIT 1
$$;

-- Forgets a tracked table that is gone (dropped, or a temporary table gone
-- with its session): everything billing stored about it, its row of
-- billing.tracked_tables and its trigger functions. (Citus's part first:
-- Citus drops a function on every node, which it refuses after a
-- distributed DELETE in the transaction.)
CREATE FUNCTION billing._forget_table(p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM billing._citus_drop_triggers(p_source);   -- (citus.sql)
    PERFORM billing._forget_rows(p_source);
    DELETE FROM billing.tracked_tables WHERE id = p_source;
    PERFORM billing._drop_trigger_functions(p_source);
    PERFORM billing._drop_leftover_truncate_triggers(p_source);
END
$$;

-- billing's TRUNCATE triggers that still name tracked table `p_source`
-- once it is untracked or dropped: those its partitions kept when they were
-- detached (PostgreSQL drops only the row trigger's clones). Nothing else
-- would drop them, and merge() would warn at every run of a table that
-- carries billing's trigger untracked.
CREATE FUNCTION billing._drop_leftover_truncate_triggers(p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tg name;
    rel regclass;
BEGIN
    FOR tg, rel IN SELECT g.tgname, g.tgrelid::regclass FROM pg_trigger AS g
                    WHERE g.tgfoid = 'billing._tracked_truncated()'::regprocedure AND g.tgparentid = 0
                      AND billing._is_truncate_trigger(g, p_source)
    LOOP
        PERFORM billing._drop_own_trigger(tg, rel);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION billing._drop_leftover_truncate_triggers(smallint) FROM PUBLIC;

-- Everything billing stored about a tracked table's rows.
-- Deletes the rows of source p_source from billing's table p_table, the
-- newest committed ones under REPEATABLE READ or SERIALIZABLE too (a plain
-- DELETE there leaves those committed after the transaction's snapshot:
-- an app's insert a TRUNCATE waited for, a month a merge wrote). How many.
-- C body: src/pg/delete_source_rows.cpp
CREATE FUNCTION billing._delete_source_rows(p_table regclass, p_source smallint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'delete_source_rows' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION billing._delete_source_rows(regclass, smallint) FROM PUBLIC;

CREATE FUNCTION billing._forget_rows(p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM billing._delete_source_rows(x, p_source)
       FROM unnest(ARRAY['billing.usage_ledger', 'billing.month_usage', 'billing.conversation_usage',
                         'billing.conversation_model_usage', 'billing.stale_months',
                         'billing.estimated_prompts', 'billing.problem_messages']::regclass[]) AS x;
    IF billing._citus_triggered(p_source) THEN
        -- (a distributed table's, kept beside its messages: citus.sql)
        PERFORM billing._citus_retire_ledger(p_source);
        EXECUTE format('DELETE FROM %s', billing._citus_companion(p_source, 'estimates'));
        EXECUTE format('DELETE FROM %s', billing._citus_companion(p_source, 'problems'));
    END IF;
END
$$;

-- The TRUNCATE trigger of tracked table TG_ARGV[0]: what billing stored
-- about the table goes with its rows. On one of its partitions, truncated
-- alone, the table is taken in anew (billing._take_in_anew). Only on
-- the tracked table and its partitions:
-- Citus copies a distributed table's triggers, this one too, to a node it
-- adds later and to the shards it places there, where a TRUNCATE fires the
-- copy for a shard (there is nothing of the table's to forget on a worker,
-- and forgetting it there would run a distributed query from a shard).
CREATE FUNCTION billing._tracked_truncated() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM billing.tracked_tables AS t
                WHERE t.id = TG_ARGV[0]::smallint AND t.relation = TG_RELID) THEN
        PERFORM billing._forget_rows(TG_ARGV[0]::smallint);
    ELSIF billing._tracked_tree_of(TG_RELID) = TG_ARGV[0]::smallint THEN
        PERFORM billing._take_in_anew(TG_ARGV[0]::smallint);
    END IF;
    RETURN NULL;
END
$$;

-- Stops tracking a table: billing's triggers are found by their functions
-- (the table's owner may have renamed them, or named a trigger of its own
-- like billing's), then everything billing stored about the table goes.
CREATE FUNCTION billing.untrack_messages(relation regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid smallint;
    fn regprocedure;
    tg name;
    part regclass;
BEGIN
    SELECT id INTO sid FROM billing.tracked_tables tt WHERE tt.relation = untrack_messages.relation;
    IF sid IS NULL THEN
        RAISE EXCEPTION 'billing: table % is not tracked', relation USING ERRCODE = 'undefined_object';
    END IF;
    fn := billing._trigger_function(sid);
    PERFORM billing._citus_drop_triggers(sid);   -- (a distributed table's: citus.sql)
    -- (and the TRUNCATE triggers of its partitions; not the row trigger's
    -- clones on them, which go with it)
    FOR tg, part IN SELECT g.tgname, g.tgrelid::regclass FROM pg_trigger AS g
                     WHERE g.tgrelid IN (SELECT p.relid FROM pg_partition_tree(relation) AS p
                                         UNION SELECT relation)
                       AND NOT g.tgisinternal AND g.tgparentid = 0
                       AND ((g.tgfoid = fn AND g.tgrelid = relation) OR billing._is_truncate_trigger(g, sid))
    LOOP
        PERFORM billing._drop_own_trigger(tg, part);
    END LOOP;
    PERFORM billing._drop_trigger_functions(sid);
    PERFORM billing._drop_leftover_truncate_triggers(sid);   -- (a detached partition's)
    PERFORM billing._forget_rows(sid);
    DELETE FROM billing.tracked_tables WHERE id = sid;
END
$$;
COMMENT ON FUNCTION billing.untrack_messages(regclass) IS
    'Stops tracking a table: drops its trigger and everything billing stored about it.';

-- Marks the objects that track_messages / track_profiles create on a table
-- as depending on the extension: DROP EXTENSION billing then drops them too,
-- while pg_dump still dumps them (with these marks) because they are not
-- members.
CREATE FUNCTION billing._depend_on_extension(fn regprocedure, relation regclass, triggers name[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
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

-- The trigger functions of one tracked table, made from its row of
-- billing.tracked_tables (the column names, and the table's name for the
-- estimate of replies without usage). Also run again when the table or one
-- of its columns is renamed (billing._tracked_table_altered).
--
-- billing.track_N is C (src/pg/track_row.cpp): it writes the common INSERT
-- (a message whose data says its usage) to the ledger itself and passes
-- every other write to billing.track_N_full, the PL/pgSQL body below. The C
-- function runs as the app's role and runs no SQL; only the full body runs
-- with billing's rights.
CREATE FUNCTION billing._create_trigger_function(t billing.tracked_tables) RETURNS regprocedure
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn text := billing._trigger_function_name(t.id);
    full_fn text := billing._trigger_function_name(t.id, full_body => true);
BEGIN
    -- SECURITY DEFINER: the app's role writes its own table and needs no
    -- privilege on billing's tables for the trigger to keep them up to date.
    EXECUTE format('CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
                    SET search_path = pg_catalog, pg_temp AS %L', full_fn, billing._trigger_function_body(t));
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', full_fn);
    EXECUTE format('CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE c AS %L, %L', fn,
                   (SELECT p.probin FROM pg_proc AS p WHERE p.oid = 'billing.usage_of(jsonb, text, text)'::regprocedure),
                   'track_row');
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fn);
    PERFORM billing._grant_trigger_function(format('%s()', fn)::regprocedure, t.relation);
    -- (again after a replace: CREATE OR REPLACE drops the mark)
    PERFORM billing._depend_on_extension(format('%s()', full_fn)::regprocedure, t.relation, ARRAY[]::name[]);
    PERFORM billing._depend_on_extension(format('%s()', fn)::regprocedure, t.relation, ARRAY[]::name[]);
    RETURN format('%s()', fn)::regprocedure;
END
$$;

-- The roles that may add a partition to `relation`'s tree: the owners of
-- it and of every partitioned table under it (CREATE TABLE ... PARTITION OF
-- and ATTACH PARTITION need the parent's ownership, or membership in its
-- owner's role). A sub-partitioned table whose middle level another role
-- owns needs that role too.
CREATE FUNCTION billing._tree_owners(p_relation regclass) RETURNS oid[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT c.relowner ORDER BY c.relowner), '{}')
      FROM (SELECT p_relation::oid AS relid UNION SELECT t.relid FROM pg_partition_tree(p_relation) AS t) AS m
      JOIN pg_class AS c ON c.oid = m.relid AND (c.oid = p_relation::oid OR c.relkind = 'p')
$$;

-- EXECUTE on billing's function `fn` for `grantees`, and for no one else
-- but the function's owner (a grant to PUBLIC revoked too). Checked by
-- PostgreSQL when it copies a row trigger onto a partition being created
-- or attached; billing's trigger functions need no more (the C ones run as
-- their caller and refuse a table outside the trees they were made for).
CREATE FUNCTION billing._grant_execute_only(fn regprocedure, grantees oid[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn_owner oid := (SELECT p.proowner FROM pg_proc AS p WHERE p.oid = fn);
    grantee oid;
BEGIN
    FOR grantee IN SELECT DISTINCT a.grantee
                     FROM pg_proc AS p CROSS JOIN LATERAL aclexplode(p.proacl) AS a
                    WHERE p.oid = fn AND a.grantee <> fn_owner AND a.grantee <> ALL (grantees)
                    ORDER BY 1 LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %s', fn, CASE grantee WHEN 0 THEN 'PUBLIC'
                                                                 ELSE grantee::regrole::text END);
    END LOOP;
    FOREACH grantee IN ARRAY grantees LOOP
        IF grantee <> fn_owner AND NOT has_function_privilege(grantee, fn, 'EXECUTE') THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', fn, grantee::regrole);
        END IF;
    END LOOP;
END
$$;

-- EXECUTE on trigger function `fn` for the roles that may add partitions
-- to `relation`'s tree (billing._tree_owners), and for no one else but the
-- function's owner: without it the app's own migrations fail. The right
-- gives nothing more: the C function runs as its caller, and refuses any
-- table outside its tracked table's tree (billing._trigger_guard). Run
-- again whenever a table of the tree is created or altered, so ALTER TABLE
-- ... OWNER TO moves the right to the new owner, and by billing.merge()
-- (billing._refresh_trigger_functions), which catches an owner changed by
-- REASSIGN OWNED.
CREATE FUNCTION billing._grant_trigger_function(fn regprocedure, relation regclass) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT billing._grant_execute_only(fn, billing._tree_owners(relation))
$$;

-- Drops billing's trigger `p_trigger` on `p_relation`, if it is there: the
-- way billing's own functions drop one of its triggers on a tracked table,
-- which the drop guard (billing._tracked_table_dropped) lets through only
-- while billing.internal_ddl is on. That setting is superuser-only and set
-- by the SET clauses of this function and of the few others that drop or
-- replace billing's triggers; a table's owner cannot turn it on.
CREATE FUNCTION billing._drop_own_trigger(p_trigger name, p_relation regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', p_trigger, p_relation);
END
$$;

-- Drops the trigger functions of tracked table `p_source` (CASCADE: a
-- trigger some other table's owner attached to billing's function, where it
-- refuses to run, must not keep them).
CREATE FUNCTION billing._drop_trigger_functions(p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
DECLARE
    fn regprocedure;
BEGIN
    FOREACH fn IN ARRAY ARRAY[billing._trigger_function(p_source),
                              billing._trigger_function(p_source, full_body => true)] LOOP
        IF fn IS NOT NULL THEN
            EXECUTE format('DROP FUNCTION %s CASCADE', fn);
        END IF;
    END LOOP;
END
$$;

-- The type of a column, through any domains to the base type.
CREATE FUNCTION billing._column_base_type(relation regclass, col name) RETURNS oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE t(oid, depth) AS (
        SELECT a.atttypid, 0 FROM pg_attribute AS a
         WHERE a.attrelid = relation AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT y.typbasetype, t.depth + 1 FROM t JOIN pg_type AS y ON y.oid = t.oid
         WHERE y.typtype = 'd' AND t.depth < 32
    )
    SELECT oid FROM t ORDER BY depth DESC LIMIT 1
$$;

-- An SQL expression that reads column `col` of row `r` (NEW, OLD, or a table
-- alias) for the role it plays: 'id', 'conversation' and 'customer' (as text), 'role'
-- and 'content' (text), 'data' (jsonb, or text to be parsed), 'created_at'
-- (timestamptz). Only built-in types, read with built-in conversions: these
-- expressions run inside SECURITY DEFINER triggers, so nothing the table's
-- owner defines (a cast, an operator, a function) may run in them. Any other
-- type is refused here, with an error naming the column and its type.
CREATE FUNCTION billing._column_reader(relation regclass, col name, purpose text, r text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    typ oid := billing._column_base_type(relation, col);
    x text := format('(%s.%I)', r, col);
    tname name := (SELECT typname FROM pg_type WHERE oid = typ);
    accepted text;
BEGIN
    IF typ IS NULL THEN
        RAISE EXCEPTION 'billing: table % has no column %', relation, col USING ERRCODE = 'undefined_column';
    END IF;
    CASE purpose
    WHEN 'id', 'conversation', 'customer' THEN
        IF typ IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'uuid'::regtype,
                   'int2'::regtype, 'int4'::regtype, 'int8'::regtype) THEN
            RETURN format('%s::pg_catalog.%s::pg_catalog.text', x, tname);
        END IF;
        accepted := 'text, character varying, character, uuid, smallint, integer or bigint';
    WHEN 'role' THEN
        IF typ IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype) THEN
            RETURN format('%s::pg_catalog.%s::pg_catalog.text', x, tname);
        END IF;
        -- An enum's label through the built-in output function, not a cast
        -- (the enum's owner may have defined one).
        IF (SELECT typtype FROM pg_type WHERE oid = typ) = 'e'
           AND typ = (SELECT atttypid FROM pg_attribute WHERE attrelid = relation AND attname = col) THEN
            RETURN format('pg_catalog.textin(pg_catalog.enum_out(%s))', x);
        END IF;
        accepted := 'text, character varying, character or an enum';
    WHEN 'content' THEN
        IF typ IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype) THEN
            RETURN format('%s::pg_catalog.%s::pg_catalog.text', x, tname);
        END IF;
        accepted := 'text, character varying or character';
    WHEN 'data' THEN
        IF typ = 'jsonb'::regtype THEN
            RETURN format('%s::pg_catalog.jsonb', x);
        ELSIF typ IN ('json'::regtype, 'text'::regtype, 'varchar'::regtype) THEN
            RETURN format('%s::pg_catalog.%s::pg_catalog.text', x, tname);
        END IF;
        accepted := 'jsonb, json, text or character varying';
    WHEN 'created_at' THEN
        IF typ = 'timestamptz'::regtype THEN
            RETURN format('%s::pg_catalog.timestamptz', x);
        ELSIF typ = 'timestamp'::regtype THEN
            RETURN format('pg_catalog.timezone(''UTC'', %s::pg_catalog.timestamp)', x);
        ELSIF typ = 'date'::regtype THEN
            RETURN format('billing._date_time(%s::pg_catalog.date)', x);
        END IF;
        accepted := 'timestamp with time zone, timestamp without time zone (read as UTC) or date (midnight UTC)';
    END CASE;
    RAISE EXCEPTION 'billing: column % of table % has type %, which billing cannot read as %',
                    quote_ident(col), relation,
                    format_type((SELECT atttypid FROM pg_attribute WHERE attrelid = relation AND attname = col), NULL),
                    CASE purpose WHEN 'id' THEN 'a message id' WHEN 'conversation' THEN 'a conversation id'
                                 WHEN 'customer' THEN 'a customer id'
                                 WHEN 'role' THEN 'a role' WHEN 'content' THEN 'message content'
                                 WHEN 'data' THEN 'usage data' ELSE 'a message time' END
        USING ERRCODE = 'datatype_mismatch',
              HINT = format('billing reads %s from %s. Nothing was changed.',
                            CASE purpose WHEN 'id' THEN 'message ids' WHEN 'conversation' THEN 'conversation ids'
                                         WHEN 'customer' THEN 'customer ids'
                                         WHEN 'role' THEN 'roles' WHEN 'content' THEN 'content'
                                         WHEN 'data' THEN 'usage data' ELSE 'message times' END, accepted);
END
$$;

-- The expressions that read a tracked table's row `r`: every column as
-- billing uses it, and the usage call. Raises for a column type billing
-- cannot read.
CREATE FUNCTION billing._row_reader(t billing.tracked_tables, r text,
    OUT id text, OUT conversation text, OUT role text, OUT content text, OUT at text, OUT usage text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    data text := billing._column_reader(t.relation, t.data_column, 'data', r);
BEGIN
    id := billing._column_reader(t.relation, t.id_column, 'id', r);
    conversation := billing._column_reader(t.relation, t.conversation_column, 'conversation', r);
    role := billing._column_reader(t.relation, t.role_column, 'role', r);
    content := billing._column_reader(t.relation, t.content_column, 'content', r);
    at := billing._column_reader(t.relation, t.created_at_column, 'created_at', r);
    usage := format(CASE WHEN billing._column_base_type(t.relation, t.data_column) = 'jsonb'::regtype
                         THEN 'billing.usage_of(%s, %s, %s)' ELSE 'billing._usage_of_text(%s, %s, %s)' END,
                    data, role, content);
END
$$;

-- The condition "message m comes before reply r in its conversation", by
-- which a reply's prompt is estimated (README "Estimated usage"): an
-- earlier created_at; at the same created_at, with integer ids (a
-- sequence's, given in the order rows are stored) the smaller id; with
-- other ids (uuid, text: they do not tell that order) a message that is not
-- a reply (the question stored with it in one transaction, at the same
-- now()), then another reply whose id sorts first.
-- C: src/pg/prompt_estimate.cpp (estimate_prompt), src/pg/table_scan.cpp
-- (earlier_than).
CREATE FUNCTION billing._earlier_condition(t billing.tracked_tables, m text, r text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN billing._column_base_type(t.relation, t.id_column) IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
                THEN format('(%1$s.%2$I, %1$s.%3$I) < (%4$s.%2$I, %4$s.%3$I)', m, t.created_at_column, t.id_column, r)
                ELSE format('(%1$s.%2$I, billing._reply_rank(%5$s), %1$s.%3$I) < (%4$s.%2$I, 1, %4$s.%3$I)',
                            m, t.created_at_column, t.id_column, r,
                            billing._column_reader(t.relation, t.role_column, 'role', m)) END
$$;

-- A condition "the time column of alias r is >= / < the timestamptz `bound`"
-- in the column's own type, so that an index on it is used.
CREATE FUNCTION billing._at_compare(t billing.tracked_tables, r text, op text, bound text) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%s.%I %s %s', r, t.created_at_column, op,
                  CASE WHEN billing._column_base_type(t.relation, t.created_at_column) = 'timestamptz'::regtype
                       THEN bound ELSE format('pg_catalog.timezone(''UTC'', %s)', bound) END)
$$;

-- The queries with which the C scans of src/pg/table_scan.cpp read a
-- tracked table's rows as the caller, all with the same first columns:
-- conversation, id, created_at, role and content as stored (the C code reads
-- them as _column_reader would), then the data as jsonb, or, for data
-- stored as text or json, the columns of billing._usage_of_text.
-- rows: the rows with $1 <= created_at < $2 (billing._scan_table).
-- recorded: the rows a backfill records, locked FOR SHARE: estimated
--   replies, problems, times billing does not count (billing._backfill).
-- earlier: conversation, created_at, id, content and role of the messages
--   whose conversation = ANY ($1), to estimate replies' prompts.
-- every: every row, unlocked (the backfill of a table no writer can reach),
--   in created_at order when a btree index on it gives that order: each
--   conversation's rows then come in time order, which lets the backfill
--   estimate its replies' prompts as it reads them.
-- Raises for a column type billing cannot read.
CREATE FUNCTION billing._scan_queries(t billing.tracked_tables, OUT rows text, OUT recorded text, OUT earlier text,
                                      OUT every text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record := billing._row_reader(t, 'm');
    stored text := format('m.%I, m.%I, m.%I, m.%I, m.%I', t.conversation_column, t.id_column, t.created_at_column,
                          t.role_column, t.content_column);
    data text := billing._column_reader(t.relation, t.data_column, 'data', 'm');
    source text;
    recorded_if text;
    in_order boolean := EXISTS (
        SELECT 1 FROM pg_index AS i
          JOIN pg_class AS ic ON ic.oid = i.indexrelid
          JOIN pg_am AS am ON am.oid = ic.relam
          JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = t.relation AND a.attname = t.created_at_column AND am.amname = 'btree'
           AND i.indpred IS NULL AND i.indisvalid);
BEGIN
    IF billing._column_base_type(t.relation, t.data_column) = 'jsonb'::regtype THEN
        source := format('SELECT %s, %s FROM %s AS m', stored, data, t.relation);
        recorded_if := format('billing._estimated_or_problem(%s, %s)', data, m.role);
    ELSE
        source := format('SELECT %s, u.model, u.prompt_tokens, u.completion_tokens, u.cached_tokens,
                                 u.estimated_completion, u.unsplit_tokens, u.problem, u.estimated
                            FROM %s AS m CROSS JOIN LATERAL %s AS u', stored, t.relation, m.usage);
        recorded_if := '(u.estimated OR u.problem IS NOT NULL)';
    END IF;
    rows := format('%s WHERE %s AND %s', source,
                   billing._at_compare(t, 'm', '>=', '$1'), billing._at_compare(t, 'm', '<', '$2'));
    recorded := format('%s WHERE %s OR NOT coalesce(billing._countable(%s), false) FOR SHARE OF m',
                       source, recorded_if, m.at);
    earlier := format('SELECT m.%I, m.%I, m.%I, m.%I, m.%I FROM %s AS m WHERE m.%I OPERATOR(pg_catalog.=) ANY ($1)',
                      t.conversation_column, t.created_at_column, t.id_column, t.content_column, t.role_column,
                      t.relation, t.conversation_column);
    every := source || CASE WHEN in_order THEN format(' ORDER BY m.%I', t.created_at_column) ELSE '' END;
END
$$;

-- Are a tracked table's trigger functions the ones this version makes: the
-- C function, and the full body as _trigger_function_body (a distributed
-- table's: _citus_trigger_body, citus.sql) writes it now? A table tracked
-- by 0.3 (a PL/pgSQL track_N, no track_N_full) or a body an earlier build
-- wrote is not. PL/pgSQL: _citus_trigger_body is made after this file.
CREATE FUNCTION billing._trigger_functions_current(t billing.tracked_tables, p_distributed boolean)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT p.prosrc FROM pg_proc AS p
             WHERE p.oid = billing._trigger_function(t.id, distributed => p_distributed))
               IS NOT DISTINCT FROM CASE WHEN p_distributed THEN 'citus_track_row' ELSE 'track_row' END
       AND (SELECT p.prosrc FROM pg_proc AS p
             WHERE p.oid = billing._trigger_function(t.id, full_body => true, distributed => p_distributed))
               IS NOT DISTINCT FROM CASE WHEN p_distributed THEN billing._citus_trigger_body(t)
                                         ELSE billing._trigger_function_body(t) END;
END
$$;

-- Makes anew every tracked table's trigger function whose body is not what
-- this version writes (a distributed table's on every node, citus.sql). An extension script cannot replace a function that
-- is not a member, so tables tracked under 0.3 are moved by the first
-- billing.merge() after the update (and by any ALTER TABLE of theirs). A
-- table it cannot move (a column of a type 0.4 refuses) keeps its function,
-- with a warning: untrack it, or change the column's type.
CREATE FUNCTION billing._refresh_trigger_functions() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    -- The trigger DDL below locks the app's table against writes, and the
    -- app's writes queue behind its lock request while it waits: it waits
    -- at most 1 s (merge_lock_timeout when shorter), then the table keeps
    -- its trigger function until the next merge (a table tracked by an
    -- earlier version, after ALTER EXTENSION ... UPDATE).
    ddl_ms integer := CASE WHEN billing._merge_lock_timeout() BETWEEN 1 AND 1000 THEN billing._merge_lock_timeout()
                           ELSE 1000 END;
    caller_ms integer;
BEGIN
    -- The owners of tracked profiles tables may copy its trigger onto new
    -- partitions (after a REASSIGN OWNED, which no event trigger sees); a
    -- profiles table gone without an event (a temporary one) is forgotten.
    DELETE FROM billing.tracked_profiles AS tp
     WHERE NOT EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = tp.relation::oid);
    DELETE FROM billing.untracked_profiles AS u
     WHERE NOT EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = u.relation::oid);
    -- (a no-op when every right is in place)
    PERFORM billing._grant_profiles_function();
    -- A tracked table that is gone without an event billing heard (a
    -- temporary table, which versions before 0.4 let be tracked, dropped
    -- with its session) is forgotten, as a dropped table is.
    FOR t IN SELECT tt.* FROM billing.tracked_tables AS tt
              WHERE NOT EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = tt.relation::oid)
              ORDER BY tt.id LOOP
        RAISE NOTICE 'billing: tracked table % is gone: its costs are forgotten', t.relation::oid;
        PERFORM billing._forget_table(t.id);
    END LOOP;
    FOR t IN SELECT tt.* FROM billing.tracked_tables AS tt
               JOIN pg_proc AS p ON p.oid = billing._trigger_function(tt.id)
              ORDER BY tt.id LOOP
        BEGIN
            IF NOT billing._trigger_functions_current(t, false) THEN
                -- (undone below; an error undoes it with the block)
                caller_ms := billing._limit_lock_timeout(ddl_ms);
                PERFORM billing._create_trigger_function(t);
                PERFORM billing._create_update_trigger(t);
                PERFORM set_config('lock_timeout', caller_ms || 'ms', true);
            ELSE
                -- (an owner changed by REASSIGN OWNED, which no event
                -- trigger sees; a no-op when every right is in place)
                PERFORM billing._grant_trigger_function(billing._trigger_function(t.id),
                                                        t.relation);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            IF SQLSTATE = '55P03' THEN   -- (lock_not_available)
                RAISE WARNING 'billing: tracked table % keeps its earlier trigger function: %', t.relation, SQLERRM
                    USING HINT = 'Another transaction holds a lock on the table (pg_locks, pg_stat_activity); the next merge tries again, waiting at most 1 s so that the app''s writes do not queue behind it.';
            ELSE
                RAISE WARNING 'billing: tracked table % keeps its earlier trigger function: %', t.relation, SQLERRM;
            END IF;
        END;
    END LOOP;
    -- The partitions of partitioned tracked tables, as they are now (a
    -- restored database's first merge records them).
    FOR t IN SELECT tt.* FROM billing.tracked_tables AS tt
               JOIN pg_class AS c ON c.oid = tt.relation AND c.relkind = 'p'
              ORDER BY tt.id LOOP
        PERFORM billing._record_partitions(t);
    END LOOP;
    -- Distributed tables followed by their shards' triggers: their trigger
    -- functions, on every node (citus.sql, _citus_create_trigger_functions).
    FOR t IN SELECT tt.* FROM billing.tracked_tables AS tt
              WHERE billing._citus_triggered(tt.id) ORDER BY tt.id LOOP
        BEGIN
            IF NOT billing._trigger_functions_current(t, true) THEN
                PERFORM billing._citus_create_trigger_functions(t);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'billing: tracked table % keeps its earlier trigger function: %', t.relation, SQLERRM;
        END;
    END LOOP;
END
$$;

-- A tracked table's trigger function runs as the role that tracked the
-- table (usually a superuser). It bills no other table (one attached
-- elsewhere, e.g. after a restore without privileges made it executable by
-- PUBLIC), and reads its table by name for a prompt estimate only while
-- that name is still the table's. Both checks are made here, in the body,
-- so that its safety depends on no ACL.
-- On another table the write passes, unbilled, with a WARNING: the app's
-- write never fails because of billing. A restore of part of a database
-- does this without anyone meaning it: pg_dump -n of a tracked table brings
-- billing's triggers, which then call another table's function, and a
-- --data-only restore loads the app's rows before billing.tracked_tables
-- (whose restored rows then take the table in from its rows).
CREATE FUNCTION billing._trigger_guard(p_source smallint, p_relid oid) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- (every ancestor, pending links too: a partition being detached
    -- concurrently writes to its table until the detach completes)
    IF EXISTS (SELECT 1 FROM billing._lineage(p_relid) AS l(rel)
                 JOIN billing.tracked_tables AS t ON t.relation = l.rel::regclass
                WHERE t.id = p_source) THEN
        RETURN true;
    END IF;
    RAISE WARNING 'billing: this trigger function tracks %, not %: the write is not billed',
                  coalesce((SELECT t.relation::text FROM billing.tracked_tables AS t WHERE t.id = p_source),
                           'a table not tracked (yet)'), p_relid::regclass
        USING HINT = format('A restore of part of a database leaves billing''s triggers on tables billing does not track (yet). '
                            'When the restore brings billing.tracked_tables, the next billing.merge() takes the table in from its rows; '
                            'else SELECT billing.track_messages(%L); tracks it and replaces them.', p_relid::regclass::text);
    RETURN false;
END
$$;
