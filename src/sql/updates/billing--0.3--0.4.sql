-- billing 0.3 -> 0.4: real app tables, any date, and no single row or table
-- that can stop billing for everyone.
--
-- * Tracked columns may have the types ORMs create: created_at as
--   timestamp without time zone (read as UTC) or date; data as json or text
--   (text that is not JSON is a listed problem, never a failed write); ids
--   and conversation ids as text, varchar, uuid, smallint, integer or bigint;
--   role as text or an enum. Any other type is refused by track_messages
--   with an error naming the column and its type. Every column is read with
--   built-in conversions only: no cast or function the table's owner could
--   define ever runs inside billing's triggers.
-- * One row never stops billing: token totals of the rollups are numeric
--   (figures returned as bigint saturate at its limit; costs stay exact);
--   a created_at outside the years 1 to 9999 is a listed problem, counted in
--   no month; model names and conversation or message ids longer than 200
--   bytes are grouped under a shortened key that ends with their md5.
-- * merge() and the reads go on past a tracked table they cannot read, with
--   a WARNING naming it, instead of failing for every table.
-- * Before its first merge, a table tracked with backfill => false gets the
--   prompt estimates of its older replies computed from the table, as the
--   backfill would store them (the views missed them).
-- * track_messages returns what it did.
-- * AWS usage estimated from usage patterns (billing.aws_usage_patterns)
--   where none is recorded; record_usage follows billing.unknown_service.
-- * billing.dashboard('2026-11-01', '2026-12-01') with untyped literals.
-- * Budgets and alerts: billing.budgets, billing.budget_status (also the
--   dashboard's "budgets"), billing.allowance() for the app before each
--   OpenAI request, billing.alerts with billing.check_alerts(), which
--   billing.merge() runs last (NOTIFY billing_alert on commit).
-- * Savings: billing.savings_pairs and billing.savings() (per model, the
--   same tokens on a cheaper model, and what prompt caching saved).
-- * billing's triggers on tracked tables keep their names and functions
--   (renaming or replacing them is refused); billing's own functions mark
--   their drops with the superuser-only setting billing.internal_ddl.
-- * A dropped partition is known by its OID (billing.tracked_partitions),
--   so no other role's DROP can take billing's merge lock.
-- * A customer source that cannot be read (a lookup the reader may not
--   read, a column of another type) is left out with a WARNING instead of
--   failing every read; statements are not issued then.
-- * A reply's role is "assistant" in any letter case (ORM enums).

\echo Use "ALTER EXTENSION billing UPDATE TO '0.4'" to load this file. \quit

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

-- A trigger billing adds to a tracked table after billing_track (the UPDATE
-- trigger a table tracked by 0.3 gets, the TRUNCATE trigger of a partition)
-- fires as billing_track does: ENABLE ALWAYS where the owner made it so, as
-- a logical replication subscriber needs (README "Tracking"), and back to
-- the ordinary mode after. (billing_track disabled, or on a replica only, is
-- the owner's to undo: left alone.)
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

------------------------------------------------------------------------------
-- billing's own DDL on its triggers, and the partitions of tracked tables
-- (used by the event triggers this script replaces further down)
------------------------------------------------------------------------------

-- Whether relation `p_relid` is a tracked profiles table or lies in the
-- tree of one (billing.tracked_profiles; pending detaches too).
CREATE FUNCTION billing._in_tracked_profiles_tree(p_relid oid) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- (PL/pgSQL: the update script makes this before billing.tracked_profiles)
    RETURN EXISTS (SELECT 1 FROM billing._lineage(p_relid) AS l(rel)
                     JOIN billing.tracked_profiles AS tp ON tp.relation::oid = l.rel);
END
$$;

-- One service's entry in the AWS breakdowns (the dashboard's, history's):
-- its quantity, cost and basis, and the quantity no price covers. A service
-- none of whose usage has a price shows a null cost, not 0 (as an unpriced
-- model does in the OpenAI breakdown): no price is not zero cost.
CREATE FUNCTION billing._aws_service_entry(p_quantity numeric, p_cost numeric, p_unpriced numeric, p_basis text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('quantity', p_quantity,
                              'cost', CASE WHEN p_unpriced <> 0 AND p_unpriced = p_quantity THEN NULL ELSE p_cost END,
                              'basis', p_basis)
           || CASE WHEN p_unpriced <> 0 THEN jsonb_build_object('unpriced_quantity', p_unpriced) ELSE '{}' END
$$;

-- Whether one of billing's own functions is dropping or changing billing's
-- triggers (billing.internal_ddl, a superuser-only setting those functions
-- turn on in their SET clauses). C body: src/pg/ddl_command.cpp
-- (internal_ddl_active), which reads it once the module is loaded.
CREATE FUNCTION billing._internal_ddl() RETURNS boolean
AS 'MODULE_PATHNAME', 'internal_ddl_active' LANGUAGE C VOLATILE;

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

REVOKE ALL ON FUNCTION billing._drop_own_trigger(name, regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._record_partitions(billing.tracked_tables) FROM PUBLIC;

------------------------------------------------------------------------------
-- Names: internal functions say what they return, and "source" means only
-- openai/aws (and a tracked table's id column, source_id)
------------------------------------------------------------------------------

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

-- Whether column `col` of `relation` is unique by an index on it alone (a
-- primary key, a unique constraint or index, not partial): what a lookup
-- table's key must be to give one customer per conversation.
CREATE FUNCTION billing._unique_key(relation regclass, col name) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_index AS i
                     JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = relation AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
                      AND a.attname = col)
$$;
REVOKE ALL ON FUNCTION billing._unique_key(regclass, name) FROM PUBLIC;

ALTER FUNCTION billing._model_usage(timestamptz, timestamptz) RENAME TO _usage_by_model;
ALTER FUNCTION billing._conversation_usage(timestamptz, timestamptz) RENAME TO _usage_by_conversation;
ALTER FUNCTION billing._aws_usage(timestamptz, timestamptz) RENAME TO _aws_usage_by_service;
ALTER FUNCTION billing._scan_source(smallint, timestamptz, timestamptz) RENAME TO _scan_table;
ALTER FUNCTION billing._source_ranges(timestamptz, timestamptz) RENAME TO _table_ranges;
ALTER FUNCTION billing._may_read_source(smallint) RENAME TO _may_read_table;
ALTER FUNCTION billing._trigger_source(billing.tracked_tables) RENAME TO _trigger_function_body;
ALTER VIEW billing._readable_sources RENAME TO _readable_tables;
CREATE OR REPLACE FUNCTION billing._may_read_table(p_source smallint) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT p_source OPERATOR(pg_catalog.=) ANY (SELECT r.id FROM billing._readable_tables AS r)
$$;

CREATE OR REPLACE FUNCTION billing._table_ranges(p_from timestamptz, p_to timestamptz)
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

-- A body that calls a renamed function (_rebuild, which does too, is made anew
-- further down).
CREATE OR REPLACE FUNCTION billing._create_trigger_function(t billing.tracked_tables) RETURNS regprocedure
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

-- EXECUTE on trigger function `fn` for the owner of `relation`, and for no
-- one else but the function's owner. PostgreSQL checks that right when it
-- copies the row trigger onto a partition being created or attached, which
-- only the table's owner (or a member of its role) may do; without it the
-- app's own migrations fail. The right gives nothing more: the C function
-- runs as its caller, and refuses any table outside its tracked table's tree
-- (billing._trigger_guard). Run again whenever the table is altered, so
-- ALTER TABLE ... OWNER TO moves the right to the new owner, and by
-- billing.merge() (billing._refresh_trigger_functions), which catches an
-- owner changed by REASSIGN OWNED.
CREATE FUNCTION billing._grant_trigger_function(fn regprocedure, relation regclass) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT billing._grant_execute_only(fn, billing._tree_owners(relation))
$$;
REVOKE ALL ON FUNCTION billing._grant_trigger_function(regprocedure, regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._grant_execute_only(regprocedure, oid[]) FROM PUBLIC;

-- Replaced by _rollups_current, which the planner can join.
DROP FUNCTION billing._is_stale(smallint, date);

------------------------------------------------------------------------------
-- Values that cannot stop billing
------------------------------------------------------------------------------

-- A date created_at as billing reads it: midnight UTC, and +infinity (a
-- time counted in no month) past the last timestamp, the year 294276, where
-- PostgreSQL's own date-to-timestamp conversion raises. C body:
-- src/pg/month.cpp (date_time)
CREATE FUNCTION billing._date_time(d date) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'date_time' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The times billing counts in a month: the years 1 to 9999 (UTC). Rows
-- outside it (and NULL or infinite times) are listed as problems. Inlinable.
CREATE FUNCTION billing._countable(at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT at OPERATOR(pg_catalog.>=) '0001-01-01 00:00:00+00'::pg_catalog.timestamptz
       AND at OPERATOR(pg_catalog.<) '10000-01-01 00:00:00+00'::pg_catalog.timestamptz
$$;
COMMENT ON FUNCTION billing._countable(timestamptz) IS
    'Is a message time counted in a month (the years 1 to 9999, UTC)?';

-- What usage_problems says of a message: its data problem (NULL: none), and
-- a time counted in no month. The backfill, the table reads of
-- usage_problems and the trigger bodies write it so. Inlinable.
CREATE FUNCTION billing._row_problem(problem text, at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN coalesce(billing._countable(at), false) THEN problem
                ELSE coalesce(problem OPERATOR(pg_catalog.||) '; ', '')
                     OPERATOR(pg_catalog.||) 'created_at is NULL, infinite or outside the years 1 to 9999: not counted in any month'
           END
$$;
COMMENT ON FUNCTION billing._row_problem(text, timestamptz) IS
    'The problem text of a message: its data problem and a time counted in no month; NULL when it has none.';

-- A token figure as bigint, saturated at its limits: the rollups keep exact
-- numeric totals; only a sum beyond 9.2e18 tokens (hostile data) is capped.
CREATE FUNCTION billing._sat(n numeric) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN n OPERATOR(pg_catalog.>) 9223372036854775807::pg_catalog.numeric THEN 9223372036854775807
                WHEN n OPERATOR(pg_catalog.<) (-9223372036854775807)::pg_catalog.numeric THEN -9223372036854775807
                ELSE n::pg_catalog.int8 END
$$;
COMMENT ON FUNCTION billing._sat(numeric) IS 'A numeric token total as bigint, capped at +/-9223372036854775807.';

-- The key billing groups and indexes a model name or an id by: itself up to
-- 200 bytes; a longer one is cut and ends with its md5, so that no value an
-- app writes can exceed an index row.
CREATE FUNCTION billing._key(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN pg_catalog.octet_length(value) OPERATOR(pg_catalog.<=) 200 THEN value
                ELSE pg_catalog.left(value, 32) OPERATOR(pg_catalog.||) '... (md5 '
                     OPERATOR(pg_catalog.||) pg_catalog.md5(value) OPERATOR(pg_catalog.||) ')' END
$$;
COMMENT ON FUNCTION billing._key(text) IS
    'A model name or id as billing stores it: unchanged up to 200 bytes, else its first 32 characters and its md5 (at most 173 bytes, so keying a key changes nothing).';

-- The tokens billing estimates for a text: one per four characters,
-- rounded up (src/core/usage.h, the rule usage_of applies to a reply).
CREATE FUNCTION billing._estimated_tokens(content text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'text_estimated_tokens' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The tokens a message leaves unpriced: its reported tokens when they
-- found no price, its estimate when that found none, and always its
-- total-only tokens (a total cannot be priced). The one definition of
-- unpriced_tokens, used by the direct reads, the ledger reads and merge().
-- Inlinable (no SET clause; every operator qualified).
CREATE FUNCTION billing._unpriced_tokens(cost numeric, estimated_cost numeric, prompt bigint, completion bigint,
                                         estimated_prompt bigint, estimated_completion bigint, unsplit bigint)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN cost IS NULL THEN prompt::pg_catalog.numeric OPERATOR(pg_catalog.+) completion ELSE 0 END
           OPERATOR(pg_catalog.+)
           CASE WHEN estimated_cost IS NULL
                THEN estimated_prompt::pg_catalog.numeric OPERATOR(pg_catalog.+) estimated_completion ELSE 0 END
           OPERATOR(pg_catalog.+) unsplit
$$;

------------------------------------------------------------------------------
-- Reading the columns of a tracked table
------------------------------------------------------------------------------

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
-- alias) for the role it plays: 'id' and 'conversation' (as text), 'role'
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

-- Data stored as text or json, as jsonb; NULL when it is not JSON. A \u
-- escape jsonb cannot store in valid JSON (json accepts it) is read in
-- place: \u0000 and a lone surrogate (JavaScript's JSON.stringify writes
-- one for text cut inside an emoji) in any database, and in one whose
-- encoding is not UTF8 a character that encoding lacks (an emoji or a euro
-- sign in LATIN1, anything past ASCII in SQL_ASCII), which Python's
-- json.dumps writes by default. Such an escape is read as U+FFFD in UTF8
-- and as "?" elsewhere; every other escape as it is. A backslash escaped
-- before "u" is left alone. A subtransaction per call, paid only by tables
-- whose data column is not jsonb (and, for data jsonb does not take at
-- once, one per distinct escape it may refuse, up to 64).
CREATE FUNCTION billing._jsonb_of_text(data text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN data::jsonb;
EXCEPTION WHEN OTHERS THEN
    -- The error's code depends on the encoding (untranslatable_character,
    -- feature_not_supported in SQL_ASCII), so any data with a \u is read
    -- again; data that is not JSON fails again.
    IF pg_catalog.strpos(data, E'\\u') = 0 THEN
        RETURN NULL;
    END IF;
    DECLARE
        utf8 boolean := pg_catalog.current_setting('server_encoding') = 'UTF8';
        unreadable text := CASE WHEN utf8 THEN E'\\\\ufffd' ELSE '?' END;   -- (as regexp_replace writes them)
        -- The escapes jsonb may refuse (a surrogate pair as one): in UTF8
        -- \u0000 and surrogates, elsewhere also every one past ASCII. The
        -- prefix skips a backslash that is itself escaped.
        prefix text := E'(?<!\\\\)((?:\\\\\\\\)*)';
        candidate text := E'\\\\u[Dd][89ABab][0-9A-Fa-f]{2}\\\\u[Dd][C-Fc-f][0-9A-Fa-f]{2}|\\\\u0000|'
                          OPERATOR(pg_catalog.||) CASE WHEN utf8 THEN E'\\\\u[Dd][89A-Fa-f][0-9A-Fa-f]{2}'
                                                       ELSE E'\\\\u(?!00[0-7])[0-9A-Fa-f]{4}' END;
        escapes text[];
        esc text;
        fixed text := data;
    BEGIN
        SELECT pg_catalog.array_agg(DISTINCT m[2]) INTO escapes
          FROM pg_catalog.regexp_matches(data, prefix OPERATOR(pg_catalog.||) '(' OPERATOR(pg_catalog.||) candidate
                                               OPERATOR(pg_catalog.||) ')', 'g') AS m;
        IF pg_catalog.cardinality(escapes) > 64 THEN
            -- (a long text in a script the encoding lacks: all at once)
            RETURN pg_catalog.regexp_replace(data, prefix OPERATOR(pg_catalog.||) '(?:' OPERATOR(pg_catalog.||) candidate
                                                   OPERATOR(pg_catalog.||) ')', E'\\1' OPERATOR(pg_catalog.||) unreadable, 'g')::jsonb;
        END IF;
        -- Each one on its own, so that the others stay ("\u00c9mile" is
        -- still "Émile" in LATIN1 beside an emoji).
        FOREACH esc IN ARRAY coalesce(escapes, '{}') LOOP
            BEGIN
                PERFORM ('"' OPERATOR(pg_catalog.||) esc OPERATOR(pg_catalog.||) '"')::jsonb;
            EXCEPTION WHEN OTHERS THEN
                fixed := pg_catalog.regexp_replace(fixed, prefix OPERATOR(pg_catalog.||) pg_catalog.replace(esc, E'\\', E'\\\\'),
                                                   E'\\1' OPERATOR(pg_catalog.||) unreadable, 'g');
            END;
        END LOOP;
        RETURN fixed::jsonb;
    EXCEPTION WHEN OTHERS THEN
        RETURN NULL;
    END;
END
$$;

-- Usage of a message whose data is text: JSON that does not parse is a
-- problem of the row, never an error of the app's write.
CREATE FUNCTION billing._usage_of_text(data text, role text, content text,
    OUT model text, OUT prompt_tokens bigint, OUT completion_tokens bigint, OUT cached_tokens bigint,
    OUT estimated_completion bigint, OUT unsplit_tokens bigint, OUT problem text, OUT estimated boolean)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parsed jsonb := billing._jsonb_of_text(data);
BEGIN
    IF parsed IS NULL AND data IS NOT NULL AND btrim(data, E' \t\r\n') <> '' THEN
        prompt_tokens := 0; completion_tokens := 0; cached_tokens := 0;
        estimated_completion := 0; unsplit_tokens := 0; estimated := false;
        problem := 'data is not valid JSON';
        RETURN;
    END IF;
    SELECT * INTO model, prompt_tokens, completion_tokens, cached_tokens, estimated_completion,
                  unsplit_tokens, problem, estimated
      FROM billing.usage_of(parsed, role, content);
END
$$;
COMMENT ON FUNCTION billing._usage_of_text(text, text, text) IS
    'billing.usage_of for data stored as text or json: data that is not JSON is reported as the row''s problem.';

-- Whether usage_of(data, role, content) says an estimated reply or a
-- problem: the rows a backfill records in estimated_prompts and
-- problem_messages, found without making usage_of's record for every row.
-- C body: src/pg/usage_of.cpp (estimated_or_problem)
CREATE FUNCTION billing._estimated_or_problem(data jsonb, role text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'estimated_or_problem' LANGUAGE C IMMUTABLE PARALLEL SAFE;

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

-- The queries with which the C scans of src/pg/table_scan.cpp read a
-- tracked table's rows as the caller, all with the same first columns:
-- conversation, id, created_at, role and content as stored (the C code reads
-- them as _column_reader would), then the data as jsonb, or, for data
-- stored as text or json, the columns of billing._usage_of_text.
-- rows: the rows with $1 <= created_at < $2 (billing._scan_table).
-- recorded: the rows a backfill records, locked FOR SHARE: estimated
--   replies, problems, times billing does not count (billing._backfill).
-- earlier: conversation, created_at, id and content of the messages whose
--   conversation = ANY ($1), to estimate replies' prompts.
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

------------------------------------------------------------------------------
-- The tracking trigger, the backfill and the direct reads, through the readers
------------------------------------------------------------------------------

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
CREATE OR REPLACE FUNCTION billing._trigger_function_body(t billing.tracked_tables) RETURNS text
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

DROP FUNCTION billing._scan_table(smallint, timestamptz, timestamptz);
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
CREATE OR REPLACE FUNCTION billing._conversation_bounds(p_source smallint, p_month date, p_conversation text,
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

------------------------------------------------------------------------------
-- Rollups keep exact numeric token totals
------------------------------------------------------------------------------

ALTER TABLE billing.month_usage
    ALTER COLUMN prompt_tokens TYPE numeric, ALTER COLUMN completion_tokens TYPE numeric,
    ALTER COLUMN cached_tokens TYPE numeric, ALTER COLUMN estimated_prompt TYPE numeric,
    ALTER COLUMN estimated_completion TYPE numeric, ALTER COLUMN unsplit_tokens TYPE numeric,
    ALTER COLUMN unpriced_tokens TYPE numeric;
ALTER TABLE billing.conversation_usage
    ALTER COLUMN prompt_tokens TYPE numeric, ALTER COLUMN completion_tokens TYPE numeric,
    ALTER COLUMN cached_tokens TYPE numeric, ALTER COLUMN estimated_tokens TYPE numeric,
    ALTER COLUMN unpriced_tokens TYPE numeric;

-- Cost of the unmerged ledger rows, priced with the reader's snapshot.
-- (Each ledger row's counts fit bigint; their sums are taken as numeric.)
CREATE OR REPLACE VIEW billing._ledger_priced WITH (security_invoker = true) AS
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

-- billing.merge_lock_timeout in milliseconds (0: no limit).
-- C body: src/pg/merge_lock_timeout.cpp
CREATE FUNCTION billing._merge_lock_timeout() RETURNS integer
AS 'MODULE_PATHNAME', 'merge_lock_timeout' LANGUAGE C STABLE PARALLEL SAFE;

------------------------------------------------------------------------------
-- Exact reads: token figures saturate instead of failing, and a tracked
-- table that cannot be read is reported instead of failing every read
------------------------------------------------------------------------------

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


------------------------------------------------------------------------------
-- Readers: a missing grant is named
------------------------------------------------------------------------------

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

-- OpenAI usage with p_from <= time < p_to, per table, month and conversation.
CREATE OR REPLACE FUNCTION billing._usage_by_conversation(p_from timestamptz, p_to timestamptz)
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

CREATE OR REPLACE VIEW billing.conversation_costs WITH (security_invoker = true) AS
SELECT c.month, c.conversation_id, t.relation AS source_table, c.cost,
       billing._sat(c.prompt_tokens::numeric + c.completion_tokens + c.estimated_tokens) AS tokens,
       c.prompt_tokens, c.completion_tokens,
       c.cached_tokens, c.estimated_tokens, c.unpriced_tokens, c.messages,
       c.first_message_at, c.last_message_at
  FROM billing._usage_by_conversation('-infinity', 'infinity') AS c
  JOIN billing.tracked_tables AS t ON t.id = c.source_id;

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

CREATE OR REPLACE VIEW billing.current_period WITH (security_invoker = true) AS
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

------------------------------------------------------------------------------
-- AWS: say what happened
------------------------------------------------------------------------------

-- SECURITY DEFINER: an app role granted EXECUTE records validated usage
-- without write access to billing.aws_usage. A service the catalog does not
-- price at that time follows billing.unknown_service now, when it is
-- recorded (it is still kept with warn and ignore, and shown unpriced).
CREATE OR REPLACE FUNCTION billing.record_usage(service text, quantity numeric, at timestamptz DEFAULT now(),
                                                note text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
    policy text := coalesce(current_setting('billing.unknown_service', true), 'warn');
    spelled text := lower(btrim(service));   -- (as aws_usage keeps it)
    shown text := CASE WHEN length(service) > 60 THEN left(spelled, 60) || '...' ELSE spelled END;
BEGIN
    IF service IS NULL OR btrim(service) = '' THEN
        RAISE EXCEPTION 'billing: service must be given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF quantity IS NULL OR quantity < 0 OR quantity = 'NaN' OR quantity = 'Infinity' THEN
        RAISE EXCEPTION 'billing: quantity must be a finite number >= 0, got %', quantity
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF quantity >= 1e12 THEN
        RAISE EXCEPTION 'billing: quantity must be below one trillion, got %', quantity
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF quantity <> round(quantity, 6) THEN
        RAISE EXCEPTION 'billing: quantity has more than 6 decimals: %', quantity
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- (the years billing counts months in: a time in the year 10000 or BC
    -- was recorded, and shown in a month with no end or no era)
    IF at IS NULL OR NOT isfinite(at) OR NOT billing._countable(at) THEN
        RAISE EXCEPTION 'billing: at must be a finite time within the years 1 to 9999, got %', coalesce(at::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF policy <> 'ignore' AND billing.resolve_aws_price(spelled, at) IS NULL THEN
        IF policy = 'error' THEN
            RAISE EXCEPTION 'billing: AWS service "%" has no price in billing.aws_prices at that time', shown
                USING ERRCODE = 'undefined_object',
                      HINT = 'Add its price to billing.aws_prices, or SET billing.unknown_service = warn to record it unpriced.';
        END IF;
        RAISE WARNING 'billing: AWS service "%" has no price in billing.aws_prices at that time: recorded, shown unpriced', shown
            USING HINT = 'Add its price to billing.aws_prices; the setting billing.unknown_service decides whether such usage is kept.';
    END IF;
    INSERT INTO billing.aws_usage (service, quantity, at, note)
    VALUES (spelled, quantity, at, note)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

-- The month form checks the reader's grants before month_of reads a setting.
CREATE OR REPLACE FUNCTION billing.dashboard(months integer DEFAULT 6, top_conversations integer DEFAULT 50,
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

------------------------------------------------------------------------------
-- AWS estimated from usage patterns
------------------------------------------------------------------------------

-- What the seed's estimateAWSCosts() did, as data: a service's usage per
-- month, per tracked message or per e-mail sent. A month gets the pattern's
-- estimate for a service only when it has neither recorded usage nor an
-- actual figure for that service, and only if it has some activity
-- (messages, e-mails or recorded AWS usage); only whole months of a range.
CREATE TABLE billing.aws_usage_patterns (
    service  text    PRIMARY KEY CHECK (service <> '' AND service = lower(btrim(service))),
    quantity numeric NOT NULL CHECK (quantity >= 0 AND quantity = round(quantity, 6) AND quantity < 1e12),
    per      text    NOT NULL CHECK (per IN ('month', 'message', 'email')),
    note     text
);
COMMENT ON TABLE billing.aws_usage_patterns IS
    'Estimated AWS usage when none is recorded: quantity of a service per month, per tracked message or per e-mail (e.g. s3 2.5 GB-months per month; lambda 1 request per message).';
SELECT pg_catalog.pg_extension_config_dump('billing.aws_usage_patterns', '');
-- Nothing to rebuild when it changes: AWS figures are computed when read.

-- AWS per month and service with p_from <= at < p_to: recorded usage, or
-- the usage pattern's estimate where a month has none, replaced by actual
-- figures where a month has them.
CREATE OR REPLACE FUNCTION billing._aws_usage_by_service(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (month date, service text, quantity numeric, cost numeric, unpriced_quantity numeric, basis text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET billing.unknown_service = 'ignore'
AS $$
BEGIN
    RETURN QUERY
    WITH rec AS (
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
    ), pat AS (
        SELECT x.month, x.service, x.quantity,
               coalesce(billing.aws_cost(x.service, x.quantity, billing.month_start(x.month)), 0) AS cost,
               CASE WHEN billing.resolve_aws_price(x.service, billing.month_start(x.month)) IS NULL
                    THEN x.quantity ELSE 0 END AS unpriced_quantity
          FROM billing._aws_pattern_usage(p_from, p_to,
                   (SELECT coalesce(jsonb_object_agg(to_char(r.month, 'YYYY-MM-DD'), r.quantity), '{}') FROM rec AS r WHERE r.service = 'ses'),
                   ARRAY(SELECT DISTINCT r.month FROM rec AS r UNION SELECT a.month FROM act AS a)) AS x
         WHERE NOT EXISTS (SELECT 1 FROM rec AS r WHERE r.month = x.month AND r.service = x.service)
         GROUP BY x.month, x.service, x.quantity
    ), est AS (
        SELECT r.month, r.service, r.quantity, r.cost, r.unpriced_quantity, 'estimate' AS basis FROM rec AS r
        UNION ALL
        SELECT p.month, p.service, p.quantity, p.cost, p.unpriced_quantity, 'pattern' FROM pat AS p
    )
    SELECT coalesce(e.month, a.month), coalesce(e.service, a.service), coalesce(e.quantity, 0),
           coalesce(a.cost, e.cost), CASE WHEN a.cost IS NULL THEN e.unpriced_quantity ELSE 0 END,
           CASE WHEN a.cost IS NULL THEN e.basis ELSE 'actual' END
      FROM est AS e FULL JOIN act AS a ON a.month = e.month AND a.service = e.service;
END
$$;

-- The pattern quantities of the whole months of [p_from, p_to) that have
-- activity: tracked messages, e-mails (given as jsonb: {"YYYY-MM-DD": n}) or other
-- AWS months. Reads the messages only when a pattern needs them.
CREATE FUNCTION billing._aws_pattern_usage(p_from timestamptz, p_to timestamptz, emails jsonb, aws_months date[])
RETURNS TABLE (month date, service text, quantity numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    messages jsonb := '{}';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM billing.aws_usage_patterns) THEN
        RETURN;
    END IF;
    SELECT coalesce(jsonb_object_agg(to_char(m.month, 'YYYY-MM-DD'), m.n), '{}') INTO messages
      FROM (SELECT u.month, sum(u.messages) AS n FROM billing._usage_by_model(p_from, p_to) AS u
             GROUP BY u.month) AS m;
    RETURN QUERY
    SELECT g.month, p.service,
           trim_scale(round(p.quantity * CASE p.per WHEN 'month' THEN 1
                                         WHEN 'message' THEN coalesce((messages ->> to_char(g.month, 'YYYY-MM-DD'))::numeric, 0)
                                         ELSE coalesce((emails ->> to_char(g.month, 'YYYY-MM-DD'))::numeric, 0) END, 6))
      FROM (SELECT DISTINCT x.m AS month
              FROM (SELECT to_date(k.key, 'YYYY-MM-DD') AS m FROM jsonb_each(messages) AS k
                    UNION SELECT to_date(k.key, 'YYYY-MM-DD') FROM jsonb_each(emails) AS k
                    UNION SELECT unnest(aws_months)) AS x
             WHERE billing.month_start(x.m) >= p_from AND billing.month_end(x.m) <= p_to) AS g
     CROSS JOIN billing.aws_usage_patterns AS p;
END
$$;

------------------------------------------------------------------------------
-- Security: nothing a less privileged role controls runs with billing's
-- rights, and no role without the right to merge can stall merging
------------------------------------------------------------------------------

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
REVOKE ALL ON FUNCTION billing._trigger_guard(smallint, oid) FROM PUBLIC;

-- Whether an ALTER TABLE made its table unlogged (SET UNLOGGED).
-- C body: src/pg/ddl_command.cpp (ddl_sets_unlogged)
CREATE FUNCTION billing._ddl_sets_unlogged(pg_ddl_command) RETURNS boolean
AS 'MODULE_PATHNAME', 'ddl_sets_unlogged' LANGUAGE C STRICT STABLE;
REVOKE ALL ON FUNCTION billing._ddl_sets_unlogged(pg_ddl_command) FROM PUBLIC;

-- The name a relation had before the command renamed it, or NULL.
-- C body: src/pg/ddl_command.cpp (ddl_renamed_from)
CREATE FUNCTION billing._ddl_renamed_from(pg_ddl_command) RETURNS text
AS 'MODULE_PATHNAME', 'ddl_renamed_from' LANGUAGE C STRICT STABLE;
REVOKE ALL ON FUNCTION billing._ddl_renamed_from(pg_ddl_command) FROM PUBLIC;

-- The e-mail counter is read from its column by attribute (no whole-row
-- conversion: to_jsonb(NEW) would run a cast to json that the table's
-- owner may have defined for a type of another column), and only from a
-- jsonb column.
CREATE OR REPLACE FUNCTION billing._profiles_counter_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col name;
    col_type oid;
    tracked regclass;
    counter text;
    service text;
    new_value jsonb;
    old_value jsonb;
    before numeric := 0;
    after numeric;
BEGIN
    -- (the table or one of its ancestors, pending detaches too)
    SELECT tp.relation, tp.counter, tp.service INTO tracked, counter, service
      FROM billing._lineage(TG_RELID) AS l(rel) JOIN billing.tracked_profiles AS tp ON tp.relation = l.rel::regclass
     LIMIT 1;
    IF NOT FOUND THEN
        RAISE WARNING 'billing: trigger % on % is not one that billing.track_profiles made: nothing recorded',
                      TG_NAME, TG_RELID::regclass;
        RETURN NULL;
    END IF;
    SELECT a.attname, a.atttypid INTO col, col_type
      FROM pg_trigger AS g
      JOIN pg_attribute AS a ON a.attrelid = g.tgrelid AND a.attnum = g.tgattr[0]
     WHERE g.tgrelid = TG_RELID AND g.tgname = TG_NAME;
    IF col_type IS DISTINCT FROM 'jsonb'::regtype THEN
        RETURN NULL;   -- not a jsonb column (any more): nothing billing reads
    END IF;
    EXECUTE format('SELECT ($1).%I OPERATOR(pg_catalog.->) $2', col) INTO new_value USING NEW, counter;
    -- Counters that are not plain numbers are ignored (nothing to count).
    IF jsonb_typeof(new_value) = 'number' THEN
        after := new_value::text::numeric;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        EXECUTE format('SELECT ($1).%I OPERATOR(pg_catalog.->) $2', col) INTO old_value USING OLD, counter;
        IF jsonb_typeof(old_value) = 'number' THEN
            before := old_value::text::numeric;
        END IF;
        -- A counter that held no count of e-mails (a string, a negative or
        -- a fractional number) gives no baseline: its change is not usage.
        -- An absent counter, or JSON null, counts from 0.
        IF coalesce(jsonb_typeof(old_value), 'null') <> 'null' AND
           (jsonb_typeof(old_value) <> 'number' OR before < 0 OR before <> round(before)) THEN
            RETURN NULL;
        END IF;
    END IF;
    -- Only increases are usage; a decrease is the monthly reset. An
    -- increase of a trillion or more is not e-mails sent: it is left out,
    -- with a warning, so that no counter can make AWS figures overflow.
    IF after > before AND after = round(after) THEN
        IF after - before >= 1e12 THEN
            RAISE WARNING 'billing: % of % jumped by %: not counted as usage', counter, TG_RELID::regclass, after - before;
        ELSE
            -- (customer: the profile's, billing.track_profile_customers in customers.sql)
            INSERT INTO billing.aws_usage (service, quantity, at, note, origin, customer)
            VALUES (service, after - before, now(), NULL, 'track_profiles', billing._profile_customer(tracked, NEW));
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- A reader sees the tracked tables it may read, no other table's name.
ALTER TABLE billing.tracked_tables ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.tracked_tables
    USING (pg_catalog.has_table_privilege(relation, 'SELECT'));

-- The trigger of a tracked table is C (billing.track_N) with its PL/pgSQL
-- body in billing.track_N_full; tables tracked by 0.3 move to it at the
-- first billing.merge() (billing._refresh_trigger_functions).
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

------------------------------------------------------------------------------
-- Budgets and alerts (src/sql/budgets.sql, as a fresh install has them);
-- merge() checks the alerts last, dashboard() reports the budgets.
------------------------------------------------------------------------------

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

------------------------------------------------------------------------------
-- Savings (src/sql/savings.sql, as a fresh install has it)
------------------------------------------------------------------------------

-- Savings (README "Savings"): billing.savings_pairs (which cheaper model of
-- its family each model is compared with; seeded, edited with plain SQL,
-- user rows kept by pg_dump) and billing.savings() (per model: what the
-- period's tokens cost, what they would have cost on the cheaper model, and
-- what prompt caching saved).
-- Relies on reads.sql (_usage_by_model) and the catalog.

CREATE TABLE billing.savings_pairs (
    model         text PRIMARY KEY,
    cheaper_model text,
    origin        text NOT NULL DEFAULT 'user' CHECK (origin IN ('seed', 'user'))
);
COMMENT ON TABLE billing.savings_pairs IS
    'Which cheaper model billing.savings() prices each model''s tokens on (model: a catalog name the usage resolves to). cheaper_model NULL: no comparison for that model.';
COMMENT ON COLUMN billing.savings_pairs.origin IS
    'seed: shipped with the extension; user: added or changed by a user (kept by pg_dump).';
SELECT pg_catalog.pg_extension_config_dump('billing.savings_pairs', 'WHERE origin = ''user''');

-- A pair as written: both names must be models of the price catalog (an
-- error naming the field, SQLSTATE 23502 when missing, 23514 when wrong),
-- and not the same. A user row replaces the seed row of the same model; a
-- changed seed row becomes the user's (so pg_dump keeps it). A seed row is
-- not deleted (its deletion would not survive a restore, which re-creates
-- the seed rows): setting cheaper_model to NULL turns it off, and is kept.
-- SECURITY DEFINER (see the end of this file): it reads the price catalog.
CREATE FUNCTION billing._savings_pair_checked() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    check_bodies boolean := current_setting('check_function_bodies')::boolean;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.origin = 'seed' AND pg_trigger_depth() = 1 THEN
            RAISE EXCEPTION 'billing.savings_pairs: the pair of model "%" is one of billing''s defaults and cannot be deleted', OLD.model
                USING ERRCODE = 'object_not_in_prerequisite_state', SCHEMA = 'billing', TABLE = 'savings_pairs',
                      HINT = format('To stop comparing it (and keep that through pg_dump and restore): '
                                    'UPDATE billing.savings_pairs SET cheaper_model = NULL WHERE model = %L;', OLD.model);
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.model IS NULL OR btrim(NEW.model) = '' THEN
        RAISE EXCEPTION 'billing.savings_pairs: model must be given'
            USING ERRCODE = 'not_null_violation', COLUMN = 'model', SCHEMA = 'billing', TABLE = 'savings_pairs';
    END IF;
    -- (not while a restore loads the pairs: check_function_bodies is off in
    -- pg_dump's scripts, as for CREATE FUNCTION, and pg_restore -j may load
    -- this table before the user's own prices; a pair whose model has no
    -- price compares nothing)
    IF NOT EXISTS (SELECT 1 FROM billing.model_prices AS p WHERE p.model = NEW.model) AND check_bodies THEN
        RAISE EXCEPTION 'billing.savings_pairs: model "%" has no price in billing.model_prices', NEW.model
            USING ERRCODE = 'check_violation', COLUMN = 'model', SCHEMA = 'billing', TABLE = 'savings_pairs',
                  HINT = 'Name a model as the catalog does (SELECT DISTINCT model FROM billing.model_prices).';
    END IF;
    IF NEW.cheaper_model IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM billing.model_prices AS p WHERE p.model = NEW.cheaper_model)
           AND check_bodies THEN
            RAISE EXCEPTION 'billing.savings_pairs: cheaper_model "%" has no price in billing.model_prices', NEW.cheaper_model
                USING ERRCODE = 'check_violation', COLUMN = 'cheaper_model', SCHEMA = 'billing', TABLE = 'savings_pairs',
                      HINT = 'Name a model as the catalog does (SELECT DISTINCT model FROM billing.model_prices).';
        END IF;
        IF NEW.cheaper_model = NEW.model THEN
            RAISE EXCEPTION 'billing.savings_pairs: cheaper_model must differ from model, got "%" for both', NEW.model
                USING ERRCODE = 'check_violation', COLUMN = 'cheaper_model', SCHEMA = 'billing', TABLE = 'savings_pairs';
        END IF;
    END IF;
    IF pg_trigger_depth() = 1 THEN
        IF TG_OP = 'INSERT' AND NEW.origin = 'user' THEN
            DELETE FROM billing.savings_pairs AS s WHERE s.model = NEW.model AND s.origin = 'seed';
        ELSIF TG_OP = 'UPDATE' THEN
            NEW.origin := 'user';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER savings_pairs_checked BEFORE INSERT OR UPDATE OR DELETE ON billing.savings_pairs
    FOR EACH ROW EXECUTE FUNCTION billing._savings_pair_checked();

INSERT INTO billing.savings_pairs (model, cheaper_model, origin)
VALUES ('gpt-4o',            'gpt-4o-mini',  'seed'),
       ('gpt-4o-2024-05-13', 'gpt-4o-mini',  'seed'),
       ('gpt-4o-2024-08-06', 'gpt-4o-mini',  'seed'),
       ('gpt-4o-2024-11-20', 'gpt-4o-mini',  'seed'),
       ('gpt-4.1',           'gpt-4.1-mini', 'seed'),
       ('gpt-4.1-mini',      'gpt-4.1-nano', 'seed'),
       ('gpt-5',             'gpt-5-mini',   'seed'),
       ('gpt-5-mini',        'gpt-5-nano',   'seed'),
       ('o1',                'o1-mini',      'seed');

-- What the period's OpenAI usage (p_from <= time < p_to; the current month
-- by default) cost per model, and what it could have cost. It reads what
-- the views read (billing._usage_by_model: rollups plus the unmerged
-- ledger, the tracked tables for stale and partial months), with the
-- reader's privileges. Reported token counts only: estimated replies and
-- usage without a model are left out (they are in the views' cost).
--
-- The rule for prices: the rollups hold a month's tokens per model, not
-- per price period, so each month's tokens (of the part of the month
-- inside the period) are re-priced at the prices in effect at that part's
-- last instant (min(p_to, month end) - 1 microsecond), where the model
-- name is also resolved (as budgets of scope model do). Exact whenever no
-- price of the model used or of its cheaper model takes effect inside that
-- part of a month; price_changed says when one does. cost is always the
-- exact cost at each message's own prices.
--
-- Per model as stored: priced_as (the catalog model it resolves to, whose
-- pair applies), tokens, cost; cheaper_model and cheaper_cost (the same
-- prompt, completion and cached tokens on it, by billing.usage_cost's
-- rules: cached tokens at its cached-input price), saving = cost -
-- cheaper_cost; caching_saved = cached tokens x (input - cached-input
-- price) of the model used. NULL where a figure cannot be exact: no pair,
-- a model without a price then, or some of the month's tokens unpriced.
CREATE FUNCTION billing.savings(p_from timestamptz DEFAULT billing.month_start(billing.month_of(pg_catalog.now())),
                                p_to timestamptz DEFAULT billing.month_end(billing.month_of(pg_catalog.now())))
RETURNS TABLE (model text, priced_as text, prompt_tokens bigint, completion_tokens bigint, cached_tokens bigint,
               cost numeric, cheaper_model text, cheaper_cost numeric, saving numeric, caching_saved numeric,
               price_changed boolean)
-- PARALLEL UNSAFE: _usage_by_model (plpgsql, reads the ledger) is.
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM billing._range_given(p_from, p_to);
    -- First, so that a role without the grants gets the readers' error.
    PERFORM billing._require_reader();
    RETURN QUERY
    WITH m AS (
        SELECT u.month, u.model, billing._sat(sum(u.prompt_tokens)) AS p,
               billing._sat(sum(u.completion_tokens)) AS c, billing._sat(sum(u.cached_tokens)) AS k,
               sum(u.cost) AS cost, sum(u.unpriced_tokens) AS unpriced,
               greatest(p_from, billing.month_start(u.month)) AS part_from,
               least(p_to, billing.month_end(u.month)) - interval '1 microsecond' AS at
          FROM billing._usage_by_model(p_from, p_to) AS u
         WHERE u.model <> ''
         GROUP BY u.month, u.model
        HAVING sum(u.prompt_tokens) <> 0 OR sum(u.completion_tokens) <> 0
    ), r AS (
        SELECT m.*, x.model AS priced_as, s.cheaper_model
          FROM m
          LEFT JOIN LATERAL billing.resolve_model_price(m.model, m.at) AS x ON true
          LEFT JOIN billing.savings_pairs AS s ON s.model = x.model
    ), priced AS (
        SELECT r.*,
               CASE WHEN r.unpriced = 0 THEN billing.usage_cost(r.cheaper_model, r.p, r.c, r.k, r.at) END AS cheaper_cost,
               CASE WHEN r.unpriced = 0
                    THEN billing.usage_cost(r.model, r.k, 0, 0, r.at) - billing.usage_cost(r.model, r.k, 0, r.k, r.at)
               END AS caching_saved,
               EXISTS (SELECT 1 FROM billing.model_prices AS mp
                        WHERE mp.model IN (r.priced_as, r.cheaper_model)
                          AND mp.effective_from > r.part_from AND mp.effective_from <= r.at) AS price_changed
          FROM r
    )
    -- (a cost is NULL where tokens went unpriced: no price is not zero cost)
    SELECT q.model, q.priced_as, billing._sat(sum(q.p)), billing._sat(sum(q.c)), billing._sat(sum(q.k)),
           CASE WHEN sum(q.unpriced) = 0 THEN sum(q.cost) END,
           q.cheaper_model,
           CASE WHEN count(q.cheaper_cost) = count(*) THEN sum(q.cheaper_cost) END,
           CASE WHEN count(q.cheaper_cost) = count(*) THEN sum(q.cost) - sum(q.cheaper_cost) END,
           CASE WHEN count(q.caching_saved) = count(*) THEN sum(q.caching_saved) END,
           bool_or(q.price_changed)
      FROM priced AS q
     GROUP BY q.model, q.priced_as, q.cheaper_model;
END
$$;
COMMENT ON FUNCTION billing.savings(timestamptz, timestamptz) IS
    'Per model, for usage with p_from <= time < p_to: cost, the same tokens on the cheaper model of billing.savings_pairs, the saving, and what prompt caching saved.';

ALTER FUNCTION billing._savings_pair_checked() SECURITY DEFINER;
REVOKE ALL ON FUNCTION billing._savings_pair_checked() FROM PUBLIC;
-- The pairs are configuration, not figures: every reader of billing.savings() may read them.
GRANT SELECT ON billing.savings_pairs TO PUBLIC;

-- ==== forecast.sql (billing.forecast)
-- The month's end cost, forecast (README "Forecast"): billing.forecast(p_at)
-- says, per source (openai, aws, total), what p_at's month had cost at p_at
-- and what it will have cost at its end, and names the method.
-- billing._budget_status (budgets.sql) forecasts each budget the same way.
-- Relies on views.sql (billing.history) and reads.sql.

-- The history window of a forecast of month p_month: the (up to) 3 whole
-- months before it, left out those before or equal to p_first_month, the
-- first month with any cost (taken as partial: an app starts in the middle
-- of a month); none when p_first_month is NULL. With each month's length
-- in days.
CREATE FUNCTION billing._forecast_window(p_month date, p_first_month date)
RETURNS TABLE (month date, days numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.month::date,
           extract(epoch FROM billing.month_end(g.month::date) - billing.month_start(g.month::date)) / 86400
      FROM generate_series(greatest((p_month - interval '3 months')::date, p_first_month + interval '1 month'),
                           p_month - interval '1 month', interval '1 month') AS g(month)
     WHERE p_first_month IS NOT NULL
$$;

-- The method, chosen by the backtest of bench/forecast_backtest.sh (bench/README.md
-- "Forecast backtest"), better than the others there on every day scored:
-- * "rate blend": the days to come at a blend of two daily rates, the
--   month's own (spent / elapsed days) weighted by the elapsed fraction f
--   of the month and the history window's daily average weighted by 1 - f:
--   spent + (days - elapsed) x (f x spent / elapsed + (1 - f) x past daily),
--   where f x spent / elapsed = spent / days (so no division by a near-zero
--   elapsed time at the month's start: the month's own rate weighs f).
-- * "run rate" when the window is empty (no whole month of history):
--   spent x days / elapsed days, the elapsed time counted as at least one
--   day.
-- spent is what billing.history(month start, p_at) shows: only usage with
-- time < p_at counts, so that the forecast can be asked as of a past day.
-- That read of a partial month reads the tracked tables' rows of the month
-- up to p_at (by their created_at index); the window's whole months come
-- from the rollups. AWS: recorded usage before p_at and the month's actual
-- figures when loaded; the usage patterns count only whole months, so a
-- partial month's spent (and forecast) leaves them out.
CREATE FUNCTION billing.forecast(p_at timestamptz DEFAULT now())
RETURNS TABLE (source text, period date, spent numeric, past_daily numeric, past_months integer,
               forecast numeric, method text)
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m date;
    m_from timestamptz;
    m_to timestamptz;
    m_days numeric;      -- the month's length in days
    m_elapsed numeric;   -- days of it gone at p_at
BEGIN
    IF p_at IS NULL OR NOT isfinite(p_at) THEN
        RAISE EXCEPTION 'billing.forecast: p_at must be a finite time, got %', coalesce(p_at::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM billing._require_reader();
    m := billing.month_of(p_at);
    m_from := billing.month_start(m);
    m_to := billing.month_end(m);
    m_days := extract(epoch FROM m_to - m_from) / 86400;
    m_elapsed := extract(epoch FROM p_at - m_from) / 86400;
    RETURN QUERY
    WITH past AS MATERIALIZED (
        SELECT h.month, h.source, h.cost FROM billing.history('-infinity', m_from) AS h
    ), win AS MATERIALIZED (
        SELECT w.month, w.days FROM billing._forecast_window(m, (SELECT min(p.month) FROM past AS p)) AS w
    ), rate AS (
        SELECT s.source,
               (SELECT sum(p.cost) FROM past AS p JOIN win AS w ON w.month = p.month WHERE p.source = s.source)
                   AS cost,
               (SELECT sum(w.days) FROM win AS w) AS days,
               (SELECT count(*) FROM win)::integer AS months
          FROM (VALUES ('openai'), ('aws')) AS s(source)
    ), now_ AS (
        SELECT h.source, sum(h.cost) AS cost FROM billing.history(m_from, p_at) AS h GROUP BY h.source
    ), per AS (
        SELECT r.source, coalesce(n.cost, 0) AS spent,
               CASE WHEN r.months > 0 THEN coalesce(r.cost, 0) / r.days END AS daily, r.months
          FROM rate AS r LEFT JOIN now_ AS n ON n.source = r.source
    ), f AS (
        SELECT p.source, p.spent, p.daily, p.months,
               CASE WHEN p.months > 0
                    THEN p.spent + (m_days - m_elapsed) * (p.spent / m_days + (1 - m_elapsed / m_days) * p.daily)
                    ELSE p.spent * m_days / greatest(m_elapsed, 1) END AS forecast
          FROM per AS p
    )
    -- (the projected rest rounded, not the total: the spend is exact, and a
    -- forecast is never below it, even after months of credits)
    SELECT x.source, m, x.spent, round(x.daily, 6), x.months, x.spent + greatest(round(x.forecast - x.spent, 6), 0),
           CASE WHEN x.months > 0 THEN 'rate blend' ELSE 'run rate' END
      FROM (SELECT f.source, f.spent, f.daily, f.months, f.forecast, 1 AS o FROM f WHERE f.source = 'openai'
            UNION ALL
            SELECT f.source, f.spent, f.daily, f.months, f.forecast, 2 FROM f WHERE f.source = 'aws'
            UNION ALL
            SELECT 'total', sum(f.spent), sum(f.daily), min(f.months), sum(f.forecast), 3 FROM f) AS x
     ORDER BY x.o;
END
$$;
COMMENT ON FUNCTION billing.forecast(timestamptz) IS
    'The cost of p_at''s month at its end, per source (openai, aws, total): spent before p_at, the past months'' daily average, and the forecast: spent + remaining days x (f x the month''s own daily rate + (1 - f) x that average), f the elapsed fraction ("rate blend"), or the run rate when there is no whole month of history.';

-- ==== maintenance.sql (billing.maintenance_jobs, schedule_maintenance, unschedule_maintenance)
-- Periodic work on pg_cron (README "Maintenance"): billing.maintenance_jobs()
-- lists the jobs, billing.schedule_maintenance() schedules them in pg_cron
-- and billing.unschedule_maintenance() removes them. pg_cron is called
-- through dynamic SQL, so the extension installs and works without it; the
-- two calls then fail with an error that says what to do instead.
-- Relies on ledger_and_merge.sql (merge) and budgets.sql (check_alerts).

-- The merge job's schedule, as maintenance_jobs and schedule_maintenance
-- take it: given and not blank (pg_cron checks the rest when it schedules).
CREATE FUNCTION billing._check_schedule(p_function text, p_schedule text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_schedule IS NULL OR btrim(p_schedule) = '' THEN
        RAISE EXCEPTION '%: merge_schedule must be a cron schedule such as ''* * * * *''', p_function
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN true;
END
$$;

-- The jobs, one row each: name (suffixed with the database's name when
-- scheduled, as pg_cron's job names are per user, not per database),
-- schedule (pg_cron's cron syntax, in GMT) and command.
-- * merge: folds the ledger into the monthly rollups and checks the budget
--   alerts last (billing.merge() runs billing.check_alerts()).
-- * alerts: checks the alerts again on their own, so that a merge that
--   failed, or found nothing to merge, does not hold an alert back.
-- * month-close: on the 1st of each month, a merge and an alert check for
--   the month that just ended (check_alerts looks at the month before too).
-- * statements: the month that just ended is issued (issue_statements), at
--   12:10 GMT on the 1st: then the month has ended in every time zone
--   (UTC-12 to UTC+14: 00:10 on the 1st to 02:10 on the 2nd), so the month
--   before month_of(now()) is it whatever month_time_zone says, and late
--   writes have had hours to land. Only once billing knows customers (a
--   mapping, a profiles column or AWS usage of a customer): issuing a month
--   records it as issued, and months issued with no customer would turn all
--   their usage into adjustments once customers are tracked.
CREATE FUNCTION billing.maintenance_jobs(merge_schedule text DEFAULT '* * * * *')
RETURNS TABLE (job text, schedule text, command text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT j.job, j.schedule, j.command
      FROM (VALUES (1, 'billing-merge', merge_schedule, 'SELECT billing.merge()'),
                   (2, 'billing-alerts', '*/5 * * * *', 'SELECT billing.check_alerts()'),
                   (3, 'billing-month-close', '5 0 1 * *', 'SELECT billing.merge(); SELECT billing.check_alerts()'),
                   (4, 'billing-statements', '10 12 1 * *',
                    'DO $j$ BEGIN IF EXISTS (SELECT FROM billing.customer_sources) OR EXISTS (SELECT FROM billing.profile_customers) '
                    'OR EXISTS (SELECT FROM billing.aws_usage WHERE customer IS NOT NULL) THEN '
                    'PERFORM billing.issue_statements((billing.month_of(now()) - interval ''1 month'')::date); END IF; END $j$'))
           AS j(o, job, schedule, command)
     WHERE billing._check_schedule('billing.maintenance_jobs', merge_schedule)
     ORDER BY j.o
$$;
COMMENT ON FUNCTION billing.maintenance_jobs(text) IS
    'billing''s periodic work as pg_cron jobs (name, schedule in GMT, command): the merge (every minute by default), alert checks every 5 minutes, a merge and alert check on the 1st of each month, and the statements of the month that ended on the 1st at 12:10 GMT.';

-- Where pg_cron can be called from this database: the error (with a hint
-- that says what to do, to schedule the jobs or, p_unschedule, to remove
-- them) when it cannot.
CREATE FUNCTION billing._require_pg_cron(p_unschedule boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
BEGIN
    IF to_regprocedure('cron.schedule(text, text, text)') IS NOT NULL THEN
        RETURN;
    END IF;
    -- (a postgresql.conf line makes cron.database_name a placeholder even
    -- when pg_cron is not loaded; pg_settings lists only real settings)
    IF cron_db IS NULL OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name = 'cron.database_name') THEN
        RAISE EXCEPTION 'billing: pg_cron is not installed, so billing cannot schedule its periodic work'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Install pg_cron (Debian: postgresql-15-cron), add it to shared_preload_libraries, restart '
                         'and CREATE EXTENSION pg_cron; or have the app run SELECT billing.merge(); every minute '
                         '(README "Maintenance").';
    END IF;
    IF cron_db <> current_database() AND p_unschedule THEN
        RAISE EXCEPTION 'billing: pg_cron runs in database "%" (cron.database_name), not in "%"', cron_db, current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Remove the jobs from database ' || quote_ident(cron_db) || ': '
                         || (SELECT string_agg(format('SELECT cron.unschedule(%L);', m.job || ':' || current_database()),
                                               ' ' ORDER BY m.job)
                               FROM billing.maintenance_jobs() AS m);
    ELSIF cron_db <> current_database() THEN
        RAISE EXCEPTION 'billing: pg_cron runs in database "%" (cron.database_name), not in "%"', cron_db, current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Schedule the jobs from database ' || quote_ident(cron_db) || ': '
                         || (SELECT string_agg(format('SELECT cron.schedule_in_database(%L, %L, %L, %L);',
                                                      m.job || ':' || current_database(), m.schedule, m.command,
                                                      current_database()), ' ' ORDER BY m.job)
                               FROM billing.maintenance_jobs() AS m);
    END IF;
    RAISE EXCEPTION 'billing: pg_cron is loaded but its extension is not created in database "%"', cron_db
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'CREATE EXTENSION pg_cron; then call this function again.';
END
$$;

-- Schedules (or reschedules: pg_cron updates a job of the same name) the
-- jobs of billing.maintenance_jobs() in this database, as the calling role.
CREATE FUNCTION billing.schedule_maintenance(merge_schedule text DEFAULT '* * * * *')
RETURNS TABLE (job text, jobid bigint, schedule text, command text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j record;
BEGIN
    PERFORM billing._check_schedule('billing.schedule_maintenance', merge_schedule);
    PERFORM billing._require_pg_cron();
    FOR j IN SELECT * FROM billing.maintenance_jobs(merge_schedule) LOOP
        job := j.job || ':' || current_database();
        schedule := j.schedule;
        command := j.command;
        EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO jobid USING job, j.schedule, j.command;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION billing.schedule_maintenance(text) IS
    'Schedules billing''s periodic work (billing.maintenance_jobs()) in pg_cron for this database, as the calling role; calling it again updates the jobs. Needs pg_cron in this database.';

-- Removes the jobs billing.schedule_maintenance() made for this database;
-- returns how many it removed.
CREATE FUNCTION billing.unschedule_maintenance() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM billing._require_pg_cron(p_unschedule => true);
    EXECUTE 'SELECT count(cron.unschedule(c.jobid))::integer FROM cron.job AS c
              WHERE c.jobname IN (SELECT m.job || '':'' || current_database() FROM billing.maintenance_jobs() AS m)
                AND c.username = current_user'
       INTO removed;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION billing.unschedule_maintenance() IS
    'Removes the pg_cron jobs billing.schedule_maintenance() scheduled for this database (those of the calling role); returns how many.';

REVOKE ALL ON FUNCTION billing.schedule_maintenance(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.unschedule_maintenance() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._require_pg_cron(boolean) FROM PUBLIC;

-- ==== citus.sql (new in 0.4) ====
-- billing on a Citus coordinator (docs/citus.md, README "Citus"). Nothing
-- here needs Citus: without it these functions answer "not a Citus table"
-- and the settings below are inert placeholders.
-- Relies on tracking.sql and aws_usage.sql (the functions it alters).

-- The objects billing makes for a tracked table (the trigger functions
-- billing.track_N and track_N_full, the triggers) belong to this node's
-- billing, like the extension's own. Citus would otherwise propagate each
-- CREATE FUNCTION to the workers as a distributed function, and then
-- refuse to make it depend on the extension ("distributed functions are
-- not allowed to depend on an extension"): no table could be tracked on a
-- coordinator. The setting is the function's own: it ends with the call.
-- (billing._create_trigger, made anew further down, gets it there.)
ALTER FUNCTION billing._create_trigger_function(billing.tracked_tables) SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._grant_trigger_function(regprocedure, regclass) SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._grant_execute_only(regprocedure, oid[]) SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._drop_trigger_functions(smallint) SET citus.enable_ddl_propagation = off;

-- Whether Citus manages a relation (a distributed table, a partition of
-- one, a reference table or a Citus local table): its rows then live in
-- shards, where billing's triggers do not run. False without Citus.
CREATE FUNCTION billing._citus_table(relation regclass) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found boolean;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1)'
       INTO found USING relation;
    RETURN found;
END
$$;

-- Whether Citus distributes a table's rows over shards by a column (a
-- distributed table, not a reference or Citus local table). False without
-- Citus.
CREATE FUNCTION billing._citus_distributed(relation regclass) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found boolean;
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                             WHERE logicalrelid = $1 AND partmethod <> ''n'')'
       INTO found USING relation;
    RETURN found;
END
$$;

-- A distributed table is tracked by recomputation (docs/citus.md,
-- "Tracking a distributed table"): track_messages makes no trigger on it
-- (its rows are in shards on the workers); its backfill reads it whole,
-- without row locks (billing._backfill), and every billing.merge() does
-- that again, replacing its rollups, frozen estimates and problem rows.
-- Its figures are those of the last merge (exact as of then), and a
-- month a price change made stale is read from the table until the next
-- merge. It is tracked from the coordinator, which holds the rollups.
-- A reference or Citus local table is refused: refused before anything
-- is made (track_messages inserts its row here first).
CREATE FUNCTION billing._citus_tracked_table_checked() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF billing._citus_distributed(NEW.relation) THEN
        IF NOT billing._citus_coordinator() THEN
            RAISE EXCEPTION 'billing: distributed table % is tracked from the Citus coordinator', NEW.relation
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Run billing.track_messages() on the coordinator: its merge() recomputes the table''s figures.';
        END IF;
    ELSIF billing._citus_table(NEW.relation) THEN
        RAISE EXCEPTION 'billing: table % is a Citus reference or local table, which billing cannot track', NEW.relation
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its rows are in shards, where billing''s trigger would not run: no write would be counted.',
                  HINT = 'Track a local or a distributed table, or price this one with the cost aggregates (README, "Citus").';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER tracked_tables_citus_checked BEFORE INSERT ON billing.tracked_tables
    FOR EACH ROW EXECUTE FUNCTION billing._citus_tracked_table_checked();
REVOKE ALL ON FUNCTION billing._citus_tracked_table_checked() FROM PUBLIC;

-- One catalog for the cluster (opt-in: billing.citus_share_catalog(), on
-- the coordinator). The coordinator's billing.model_prices, aws_prices and
-- settings stay where users edit them; every change to them writes their
-- whole content, in the same transaction, to billing.cluster_catalog, which
-- Citus makes a reference table: a copy on every node, written by Citus's
-- two-phase commit. A trigger on each worker's copy rewrites that worker's
-- own price and settings tables from it, still in that transaction: a
-- change is seen by every node on commit, and by none on rollback. The
-- workers' C code reads its own tables as before.
-- billing.cluster_catalog is made by citus_share_catalog(), not by the
-- extension's script: Citus cannot undo a reference table that belongs to
-- an extension, and DROP EXTENSION would leave its copies on every node.
-- It holds one row: (singleton, model_prices, aws_prices, settings), each
-- table's rows as a jsonb array.
-- The functions that send and receive it (billing._catalog_sent,
-- _catalog_received), citus_share_catalog() and citus_unshare_catalog()
-- are made below, with the catalog's version (billing.catalog_state).

-- Whether billing.citus_share_catalog() made the catalog the cluster's.
CREATE FUNCTION billing._catalog_shared() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(billing._citus_table(pg_catalog.to_regclass('billing.cluster_catalog')), false) $$;

-- Whether this node is the Citus coordinator (false without Citus).
CREATE FUNCTION billing._citus_coordinator() RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    coordinator boolean;
BEGIN
    IF pg_catalog.to_regprocedure('pg_catalog.citus_is_coordinator()') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO coordinator;
    RETURN coordinator;
END
$$;

-- The coordinator's prices and settings, as billing.cluster_catalog holds them.
CREATE FUNCTION billing._catalog_snapshot(OUT model_prices jsonb, OUT aws_prices jsonb, OUT settings jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (SELECT coalesce(jsonb_agg(to_jsonb(p) ORDER BY p.model, p.effective_from), '[]')
              FROM billing.model_prices AS p),
           (SELECT coalesce(jsonb_agg(to_jsonb(p) ORDER BY p.service, p.effective_from), '[]')
              FROM billing.aws_prices AS p),
           (SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.name), '[]') FROM billing.settings AS s)
$$;

-- ==== 0.4: customers and statements (src/sql/customers.sql, statements.sql, customer_reads.sql)

-- Customers: who each tracked message (and recorded AWS usage) is billed
-- to, and the costs per customer: billing.customer_sources (a tracked
-- table's customer, looked up through a mapping table by conversation),
-- record_customer_usage, _usage_by_customer (OpenAI) and _aws_by_customer,
-- the view customer_costs, costs(from, to, group_by, customer) and
-- dashboard(customer => ...), and the reading-as-one-customer setting.
-- Relies on reads.sql, views.sql, aws_usage.sql and dashboard.sql.
--
-- Why the customer is resolved when read: a customer found through a
-- conversation (the app's conversations table: conversation id -> user) is
-- joined, at read time, to the per-conversation rollups
-- (billing.conversation_usage plus the unmerged ledger), which are exact
-- already. The write path is unchanged (no lookup per message, no lock on
-- the mapping), and when a conversation moves to another customer every
-- view follows the current mapping, exactly, with nothing to rebuild.

-- No foreign key to billing.tracked_tables: both tables are dumped, and
-- pg_restore -j loads their data in parallel, in any order (a row whose
-- table came second was refused, and that table's customers lost). A
-- source goes with its table (billing._tracked_table_forgotten, below), and
-- reads leave out one whose table is not there (_readable_customer_source).
CREATE TABLE billing.customer_sources (
    source_id       smallint PRIMARY KEY,
    lookup          regclass NOT NULL,
    lookup_key      name     NOT NULL,
    customer_column name     NOT NULL,
    customer_member text     CHECK (customer_member <> ''),
    per_message     boolean  NOT NULL DEFAULT false,
    CHECK (per_message OR customer_member IS NULL)
);
COMMENT ON TABLE billing.customer_sources IS
    'The customer of a tracked table''s messages: lookup.customer_column of the row whose lookup_key is the message''s conversation (billing.track_customers); per_message: the customer_column, or the data member customer_member, of the conversation''s latest message that names one (billing.track_message_customers).';
SELECT pg_catalog.pg_extension_config_dump('billing.customer_sources', '');

-- What ON DELETE CASCADE did: a table no longer tracked has no customers.
-- SECURITY DEFINER, as a foreign key's action runs as the table's owner:
-- the role that drops its tracked table may not write this one.
CREATE FUNCTION billing._tracked_table_forgotten() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cs billing.customer_sources;
BEGIN
    DELETE FROM billing.customer_sources AS s WHERE s.source_id = OLD.id RETURNING * INTO cs;
    -- (untracked while the table is there, to change a column's type say:
    -- its customers would be gone without a word when it is tracked again)
    IF cs.source_id IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = OLD.relation) THEN
        RAISE NOTICE 'billing: the customers of % (its customer mapping) go with it', OLD.relation
            USING HINT = 'To map them again once it is tracked again: ' || CASE WHEN cs.per_message
                THEN format('SELECT billing.track_message_customers(%L, %s => %L);', OLD.relation::text,
                            CASE WHEN cs.customer_member IS NULL THEN 'customer_column' ELSE 'data_member' END,
                            coalesce(cs.customer_member, cs.customer_column))
                ELSE format('SELECT billing.track_customers(%L, %L, lookup_key => %L, customer_column => %L);',
                            OLD.relation::text, cs.lookup::text, cs.lookup_key, cs.customer_column) END;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION billing._tracked_table_forgotten() FROM PUBLIC;
CREATE TRIGGER tracked_tables_forgotten AFTER DELETE ON billing.tracked_tables
    FOR EACH ROW EXECUTE FUNCTION billing._tracked_table_forgotten();

-- Probes of one customer's conversations.
CREATE INDEX conversation_usage_conversation ON billing.conversation_usage (source_id, conversation_id, month);

-- Recorded AWS usage may name its customer (indexed by hash: a customer id
-- may be of any length, and a btree row holds at most 2704 bytes).
ALTER TABLE billing.aws_usage ADD COLUMN customer text CHECK (customer <> '');
CREATE INDEX aws_usage_customer ON billing.aws_usage USING hash (customer) WHERE customer IS NOT NULL;

-- The mapping table must give one customer per conversation: its key column
-- must be unique (a primary key or a unique index on that column alone).
CREATE FUNCTION billing.track_customers(relation regclass, lookup regclass,
                                        lookup_key name DEFAULT 'id', customer_column name DEFAULT 'user_id')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    sid smallint;
BEGIN
    IF lookup IS NULL OR lookup_key IS NULL OR customer_column IS NULL THEN
        RAISE EXCEPTION 'billing: lookup, lookup_key and customer_column must be given, got %, %, %',
                        coalesce(lookup::text, 'NULL'), coalesce(quote_ident(lookup_key), 'NULL'),
                        coalesce(quote_ident(customer_column), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT t.id INTO sid FROM billing.tracked_tables AS t WHERE t.relation = track_customers.relation;
    IF sid IS NULL THEN
        RAISE EXCEPTION 'billing: table % is not tracked', relation USING ERRCODE = 'undefined_object',
              HINT = 'billing.track_messages() starts tracking it.';
    END IF;
    -- Both columns exist and have a type billing reads as an id (else an error naming it).
    PERFORM billing._column_reader(lookup, lookup_key, 'conversation', 'c');
    PERFORM billing._column_reader(lookup, customer_column, 'customer', 'c');
    IF NOT billing._unique_key(lookup, lookup_key) THEN
        RAISE EXCEPTION 'billing: column % of table % is not unique, so it cannot give one customer per conversation',
                        quote_ident(lookup_key), lookup
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use the table''s primary key (or a column with a unique index of its own). Nothing was changed.';
    END IF;
    INSERT INTO billing.customer_sources VALUES (sid, lookup, lookup_key, customer_column)
    ON CONFLICT (source_id) DO UPDATE
       SET lookup = excluded.lookup, lookup_key = excluded.lookup_key, customer_column = excluded.customer_column,
           customer_member = NULL, per_message = false;
END
$$;
COMMENT ON FUNCTION billing.track_customers(regclass, regclass, name, name) IS
    'The customer of a tracked table''s messages: lookup.customer_column of the row whose lookup_key is the message''s conversation, read when costs are read.';

CREATE FUNCTION billing.untrack_customers(relation regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    IF relation IS NULL THEN
        RAISE EXCEPTION 'billing: relation must be given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM billing.customer_sources AS c
     USING billing.tracked_tables AS t
     WHERE t.id = c.source_id AND t.relation = untrack_customers.relation;
    -- (as untrack_messages: nothing to forget is an error, not a silent success)
    IF NOT FOUND THEN
        RAISE EXCEPTION 'billing: table % has no customer mapping', relation USING ERRCODE = 'undefined_object',
              HINT = 'billing.track_customers() or billing.track_message_customers() makes one.';
    END IF;
END
$$;

-- The customer as a column of the tracked table itself, or as a member of
-- its data (billing.track_message_customers): the messages table is its own
-- mapping, read when costs are read, like a lookup table. Costs are kept
-- per conversation, so a conversation has one customer: the one its latest
-- message (by time, then id) that names a customer names. A conversation
-- whose messages name different customers is listed in
-- billing.usage_problems ('several customers'), with the customer it is
-- billed to; one none of whose messages names a customer (NULL or empty)
-- belongs to no customer.
CREATE FUNCTION billing.track_message_customers(relation regclass, customer_column name DEFAULT NULL,
                                                data_member text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    t billing.tracked_tables;
BEGIN
    SELECT tt.* INTO t FROM billing.tracked_tables AS tt WHERE tt.relation = track_message_customers.relation;
    IF t.id IS NULL THEN
        RAISE EXCEPTION 'billing: table % is not tracked', relation USING ERRCODE = 'undefined_object',
              HINT = 'billing.track_messages() starts tracking it.';
    END IF;
    IF (customer_column IS NULL) = (data_member IS NULL) OR btrim(data_member) = '' THEN
        RAISE EXCEPTION 'billing: give either customer_column or data_member'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'customer_column: a column of the table names the customer; data_member: a member of its data does. Nothing was changed.';
    END IF;
    IF customer_column IS NOT NULL THEN
        -- A column of a type billing reads as an id (else an error naming it).
        PERFORM billing._column_reader(relation, customer_column, 'customer', 'c');
    END IF;
    INSERT INTO billing.customer_sources AS cs (source_id, lookup, lookup_key, customer_column, customer_member, per_message)
    VALUES (t.id, relation, t.conversation_column, coalesce(customer_column, t.data_column), data_member, true)
    ON CONFLICT (source_id) DO UPDATE
       SET lookup = excluded.lookup, lookup_key = excluded.lookup_key, customer_column = excluded.customer_column,
           customer_member = excluded.customer_member, per_message = true;
END
$$;
COMMENT ON FUNCTION billing.track_message_customers(regclass, name, text) IS
    'The customer of a tracked table''s conversations: the customer_column (or the data member data_member) of its latest message that names one, read when costs are read.';

-- A member of usage data held as text or json, or NULL when it is not JSON
-- (read as usage is, by billing._jsonb_of_text).
CREATE FUNCTION billing._json_member(data text, member text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT billing._jsonb_of_text(data) OPERATOR(pg_catalog.->>) member
$$;

-- The SQL expression that reads the customer a message (alias c) names,
-- NULL for none (NULL, empty, not a member of its data); with p_raw, the
-- plain expression an index on it can serve (for comparing to a customer).
CREATE FUNCTION billing._message_customer_reader(s billing.customer_sources, t billing.tracked_tables, p_raw boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    x text;
BEGIN
    IF s.customer_member IS NULL THEN
        x := billing._column_reader(t.relation, s.customer_column, 'customer', 'c');
    ELSIF billing._column_base_type(t.relation, t.data_column) = 'jsonb'::regtype THEN
        x := format('(%s OPERATOR(pg_catalog.->>) %L::pg_catalog.text)',
                    billing._column_reader(t.relation, t.data_column, 'data', 'c'), s.customer_member);
    ELSE
        x := format('billing._json_member(%s, %L)', billing._column_reader(t.relation, t.data_column, 'data', 'c'),
                    s.customer_member);
    END IF;
    RETURN CASE WHEN p_raw THEN x ELSE format('NULLIF(%s, ''''::pg_catalog.text)', x) END;
END
$$;

-- The customers of a tracked table whose messages name them
-- (track_message_customers), per conversation: of every conversation, of
-- one customer's (p_customer: probed through an index on the customer
-- column or data member, when there is one, then through the conversation
-- column), or of some conversations (p_keys, keys as billing keys them).
-- Read as the caller; the caller checks that it may read the table.
CREATE FUNCTION billing._message_customers(p_source smallint, p_customer text, p_keys text[])
RETURNS TABLE (source_id smallint, conversation_id text, customer text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s billing.customer_sources;
    t billing.tracked_tables;
    q1 text;
    q2 text;
    filter text;
    ktype text;
BEGIN
    SELECT cs.* INTO s FROM billing.customer_sources AS cs WHERE cs.source_id = p_source AND cs.per_message;
    SELECT tt.* INTO t FROM billing.tracked_tables AS tt WHERE tt.id = p_source;
    IF s.source_id IS NULL OR t.id IS NULL THEN
        RETURN;
    END IF;
    -- The latest message naming a customer, per conversation.
    q1 := format('SELECT %s::pg_catalog.int2, billing._key(x.k), x.cu
                    FROM (SELECT DISTINCT ON (c.%I) %s AS k, %s AS cu FROM %s AS c WHERE (',
                 p_source, t.conversation_column,
                 billing._column_reader(t.relation, t.conversation_column, 'conversation', 'c'),
                 billing._message_customer_reader(s, t, false), t.relation);
    q2 := format(') AND c.%I IS NOT NULL AND %s IS NOT NULL
                          ORDER BY c.%I, %s DESC NULLS LAST, c.%I DESC) AS x
                   WHERE $1 IS NULL OR x.cu = $1',
                 t.conversation_column, billing._message_customer_reader(s, t, false), t.conversation_column,
                 billing._column_reader(t.relation, t.created_at_column, 'created_at', 'c'), t.id_column);
    IF p_customer IS NOT NULL THEN
        IF s.customer_member IS NULL THEN
            filter := format('c.%I = $1::%s', s.customer_column,
                             format_type((SELECT a.atttypid FROM pg_attribute AS a
                                           WHERE a.attrelid = t.relation AND a.attname = s.customer_column), NULL));
        ELSE
            filter := format('%s = $1', billing._message_customer_reader(s, t, true));
        END IF;
        BEGIN
            RETURN QUERY EXECUTE q1 || format('c.%I IN (SELECT c.%I FROM %s AS c WHERE %s)',
                                                  t.conversation_column, t.conversation_column, t.relation, filter) || q2
                USING p_customer, p_keys;
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            NULL;   -- not a value of the column's type: no conversation of that customer
        END;
    ELSIF p_keys IS NOT NULL THEN
        ktype := format_type((SELECT a.atttypid FROM pg_attribute AS a
                               WHERE a.attrelid = t.relation AND a.attname = t.conversation_column), NULL);
        BEGIN
            -- (through an index on the conversation column)
            RETURN QUERY EXECUTE q1 || format('c.%I = ANY ($2::%s[])', t.conversation_column, ktype) || q2
                USING NULL::text, ARRAY(SELECT y FROM unnest(p_keys) AS y WHERE y NOT LIKE '%... (md5 %');
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            -- a key that is no value of the column's type: compared as text
            RETURN QUERY EXECUTE q1 || format('billing._key(%s) = ANY ($2)',
                                              billing._column_reader(t.relation, t.conversation_column, 'conversation', 'c')) || q2
                USING NULL::text, p_keys;
            RETURN;
        END;
        IF EXISTS (SELECT 1 FROM unnest(p_keys) AS y WHERE y LIKE '%... (md5 %') THEN
            -- a key billing shortened (billing._key) is matched through the key
            RETURN QUERY EXECUTE q1 || format('billing._key(%s) = ANY ($2)',
                                              billing._column_reader(t.relation, t.conversation_column, 'conversation', 'c')) || q2
                USING NULL::text, ARRAY(SELECT y FROM unnest(p_keys) AS y WHERE y LIKE '%... (md5 %');
        END IF;
    ELSE
        RETURN QUERY EXECUTE q1 || 'true' || q2 USING NULL::text, p_keys;
    END IF;
END
$$;

-- Conversations whose messages name different customers, of the tables
-- the caller may read: the customers named, the one the conversation is
-- billed to (its latest message's), and how many messages name another.
CREATE FUNCTION billing._customer_conflicts()
RETURNS TABLE (source_id smallint, conversation_id text, customers text[], customer text, messages bigint,
               last_message_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s billing.customer_sources;
    t billing.tracked_tables;
    cu text;
    at text;
BEGIN
    FOR s IN SELECT cs.* FROM billing.customer_sources AS cs
              WHERE cs.per_message AND billing._readable_customer_source(cs)
              ORDER BY cs.source_id LOOP
        SELECT tt.* INTO t FROM billing.tracked_tables AS tt WHERE tt.id = s.source_id;
        cu := billing._message_customer_reader(s, t, false);
        at := billing._column_reader(t.relation, t.created_at_column, 'created_at', 'c');
        RETURN QUERY EXECUTE format(
            'SELECT %s::pg_catalog.int2, billing._key(x.k), x.named, x.named_last[1],
                    (SELECT pg_catalog.count(*) FROM pg_catalog.unnest(x.every) AS e WHERE e <> x.named_last[1]), x.last_at
               FROM (SELECT pg_catalog.min(%s) AS k,
                            pg_catalog.array_agg(DISTINCT %s ORDER BY %s) AS named,
                            pg_catalog.array_agg(%s ORDER BY %s DESC NULLS LAST, c.%I DESC) AS named_last,
                            pg_catalog.array_agg(%s) AS every, pg_catalog.max(%s) AS last_at
                       FROM %s AS c
                      WHERE c.%I IS NOT NULL AND %s IS NOT NULL
                      GROUP BY c.%I
                     HAVING pg_catalog.count(DISTINCT %s) > 1) AS x',
            s.source_id, billing._column_reader(t.relation, t.conversation_column, 'conversation', 'c'),
            cu, cu, cu, at, t.id_column, cu, at, t.relation, t.conversation_column, cu, t.conversation_column, cu);
    END LOOP;
END
$$;

-- AWS usage of a customer: billing.record_usage's checks, and the customer.
CREATE FUNCTION billing.record_customer_usage(customer text, service text, quantity numeric,
                                              at timestamptz DEFAULT now(), note text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF customer IS NULL OR btrim(customer) = '' THEN
        RAISE EXCEPTION 'billing: customer must be given' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'billing.record_usage() records usage of no customer.';
    END IF;
    new_id := billing.record_usage(service, quantity, at, note);
    UPDATE billing.aws_usage AS u SET customer = record_customer_usage.customer WHERE u.id = new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION billing.record_customer_usage(text, text, numeric, timestamptz, text) IS
    'Records AWS usage of a customer (as billing.record_usage does, with the customer).';
REVOKE ALL ON FUNCTION billing.record_customer_usage(text, text, numeric, timestamptz, text) FROM PUBLIC;

-- The customer an app reads as (the setting billing.customer, set per
-- request), or NULL: the caller reads every customer it may read.
CREATE FUNCTION billing.current_customer() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN pg_catalog.current_setting('billing.customer', true) OPERATOR(pg_catalog.<>) ''
                THEN pg_catalog.current_setting('billing.customer', true) END
$$;
COMMENT ON FUNCTION billing.current_customer() IS
    'The setting billing.customer: when set, every read of billing shows that customer''s costs only.';

-- The conversations of one customer (p_customer), or of every customer
-- (p_every), per tracked table, read from the mapping tables as the caller.
-- A conversation without a row in the mapping (or whose customer is NULL)
-- has no customer.
CREATE FUNCTION billing._customer_conversations(p_customer text, p_every boolean)
RETURNS TABLE (source_id smallint, conversation_id text, customer text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s billing.customer_sources;
    k text;
    c text;
    ctype text;
BEGIN
    -- (a mapping the caller may not read gives no customer, with a
    -- warning: its conversations count as no customer's)
    FOR s IN SELECT cs.* FROM billing.customer_sources AS cs
              WHERE billing._readable_customer_source(cs)
              ORDER BY cs.source_id LOOP
        IF s.per_message THEN
            -- (the customer a column or data member of the messages names)
            IF p_every OR p_customer IS NOT NULL THEN
                RETURN QUERY SELECT * FROM billing._message_customers(s.source_id, CASE WHEN NOT p_every THEN p_customer END,
                                                                      NULL);
            END IF;
            CONTINUE;
        END IF;
        k := billing._column_reader(s.lookup, s.lookup_key, 'conversation', 'c');
        c := billing._column_reader(s.lookup, s.customer_column, 'customer', 'c');
        IF p_every THEN
            RETURN QUERY EXECUTE format('SELECT %s::pg_catalog.int2, billing._key(%s), %s FROM %s AS c WHERE %s IS NOT NULL',
                                        s.source_id, k, c, s.lookup, c);
        ELSIF p_customer IS NOT NULL THEN
            -- Compared in the column's own type, so that an index on it is used.
            ctype := format_type((SELECT a.atttypid FROM pg_attribute AS a
                                   WHERE a.attrelid = s.lookup AND a.attname = s.customer_column), NULL);
            BEGIN
                RETURN QUERY EXECUTE format('SELECT %s::pg_catalog.int2, billing._key(%s), %s FROM %s AS c WHERE c.%I = $1::%s',
                                            s.source_id, k, c, s.lookup, s.customer_column, ctype)
                    USING p_customer;
            EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
                NULL;   -- not a value of the column's type: no conversation of that customer
            END;
        END IF;
    END LOOP;
END
$$;

-- OpenAI usage per customer and month, with p_from <= time < p_to: of one
-- customer (p_customer), or of every customer (p_customer NULL; messages of
-- no customer under a NULL customer). Conversations of tracked tables
-- without a customer source belong to no customer. (PL/pgSQL: it calls
-- billing._customer_usage_by_model and _ledger_usage, made further down.)
CREATE FUNCTION billing._usage_by_customer(p_from timestamptz, p_to timestamptz, p_customer text)
RETURNS TABLE (customer text, month date, messages bigint, prompt_tokens numeric, completion_tokens numeric,
               cached_tokens numeric, estimated_tokens numeric, cost numeric, unpriced_tokens numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s record;
BEGIN
    PERFORM billing._require_reader();
    IF p_customer IS NULL AND NOT isfinite(p_from) AND NOT isfinite(p_to) THEN
        -- Every customer, every month (billing.customer_costs): the parts
        -- billing._usage_by_conversation reads (fresh months' rollups and
        -- unmerged ledger rows, the tables for the rest), summed per
        -- customer and month at once: no grouping
        -- per conversation first, no first and last message times, and
        -- the freshness test as an anti-join (one hash, not one probe per
        -- rollup row): 1.6x faster with 200,000 customers. (For a bounded
        -- range, as statements read one month, grouping per conversation
        -- first, below, measured as fast or faster.)
        RETURN QUERY
        WITH map AS MATERIALIZED (
            SELECT * FROM billing._customer_conversations(NULL, true)
        ), stale AS MATERIALIZED (
            SELECT sm.source_id, sm.month FROM billing.stale_months AS sm
            UNION ALL
            SELECT t.id, NULL FROM billing.tracked_tables AS t WHERE NOT t.backfilled
        ), x AS (
            SELECT u.source_id, u.conversation_id, u.month, u.messages, u.prompt_tokens, u.completion_tokens,
                   u.cached_tokens, u.estimated_tokens, u.cost, u.unpriced_tokens
              FROM billing.conversation_usage AS u
             WHERE u.month >= billing.month_of(p_from)
               AND billing.month_start(u.month) >= p_from
               AND billing.month_end(u.month) <= p_to
            UNION ALL
            SELECT l.source_id, l.conversation_id, l.month, l.messages, l.prompt_tokens, l.completion_tokens,
                   l.cached_tokens, l.estimated_prompt + l.estimated_completion, l.cost + l.estimated_cost,
                   l.unpriced_tokens
              FROM billing._ledger_usage(p_from, p_to, billing._estimate_model()) AS l
        ), y AS (
            SELECT x.* FROM x
             WHERE NOT EXISTS (SELECT 1 FROM stale AS st
                                WHERE st.source_id = x.source_id AND (st.month = x.month OR st.month IS NULL))
            UNION ALL
            SELECT r.source_id, r.conversation_id, r.month, r.messages, r.prompt_tokens, r.completion_tokens,
                   r.cached_tokens, r.estimated_tokens, r.cost, r.unpriced_tokens
              FROM billing._table_ranges(p_from, p_to) AS g
             CROSS JOIN LATERAL (SELECT g.source_id, t.conversation_id, t.month, t.messages, t.prompt_tokens,
                                        t.completion_tokens, t.cached_tokens,
                                        t.estimated_prompt + t.estimated_completion AS estimated_tokens,
                                        t.cost + t.estimated_cost AS cost, t.unpriced_tokens
                                   FROM billing._scan_table_safely(g.source_id, g.range_from, g.range_to) AS t) AS r
        )
        SELECT m.customer, y.month, sum(y.messages)::bigint, sum(y.prompt_tokens), sum(y.completion_tokens),
               sum(y.cached_tokens), sum(y.estimated_tokens), sum(y.cost), sum(y.unpriced_tokens)
          FROM y
          LEFT JOIN map AS m ON m.source_id = y.source_id AND m.conversation_id = y.conversation_id
         GROUP BY m.customer, y.month
        HAVING sum(y.messages) <> 0;
        RETURN;
    END IF;
    IF p_customer IS NULL THEN
        RETURN QUERY
        SELECT m.customer, c.month, sum(c.messages)::bigint, sum(c.prompt_tokens)::numeric,
               sum(c.completion_tokens)::numeric, sum(c.cached_tokens)::numeric, sum(c.estimated_tokens)::numeric,
               sum(c.cost), sum(c.unpriced_tokens)::numeric
          FROM billing._usage_by_conversation(p_from, p_to) AS c
          LEFT JOIN (SELECT * FROM billing._customer_conversations(NULL, true)) AS m
                 ON m.source_id = c.source_id AND m.conversation_id = c.conversation_id
         GROUP BY m.customer, c.month
        HAVING sum(c.messages) <> 0;
        RETURN;
    END IF;

    -- One customer: its per-model rows (the customer's dashboard reads the
    -- same), summed per month.
    RETURN QUERY
    SELECT p_customer, r.month, sum(r.messages)::bigint, sum(r.prompt_tokens), sum(r.completion_tokens),
           sum(r.cached_tokens), sum(r.estimated_prompt + r.estimated_completion),
           sum(r.cost + r.estimated_cost), sum(r.unpriced_tokens)
      FROM billing._customer_usage_by_model(p_from, p_to, p_customer) AS r
     GROUP BY r.month;
END
$$;

-- AWS per customer, month and service with p_from <= at < p_to. A
-- customer's AWS costs are its recorded usage at the prices of its time;
-- everything else (usage recorded without a customer, usage patterns,
-- actual figures in place of the estimate) is the NULL customer's, so that
-- the customers add up to billing's AWS figures. p_customer: that customer
-- only.
CREATE FUNCTION billing._aws_by_customer(p_from timestamptz, p_to timestamptz, p_customer text)
RETURNS TABLE (customer text, month date, service text, quantity numeric, cost numeric, unpriced_quantity numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET billing.unknown_service = 'ignore'
AS $$
BEGIN
    IF p_customer IS NOT NULL THEN
        RETURN QUERY
        SELECT u.customer, billing.month_of(u.at), u.service, sum(u.quantity),
               coalesce(billing.aws_cost(u.service, u.quantity, u.at), 0),
               coalesce(sum(u.quantity) FILTER (WHERE billing.resolve_aws_price(u.service, u.at) IS NULL), 0)
          FROM billing.aws_usage AS u
         WHERE u.customer = p_customer AND u.at >= p_from AND u.at < p_to
         GROUP BY 1, 2, 3;
        RETURN;
    END IF;
    RETURN QUERY
    WITH named AS MATERIALIZED (
        SELECT u.customer, billing.month_of(u.at) AS month, u.service, sum(u.quantity) AS quantity,
               coalesce(billing.aws_cost(u.service, u.quantity, u.at), 0) AS cost,
               coalesce(sum(u.quantity) FILTER (WHERE billing.resolve_aws_price(u.service, u.at) IS NULL), 0)
                   AS unpriced_quantity
          FROM billing.aws_usage AS u
         WHERE u.customer IS NOT NULL AND u.at >= p_from AND u.at < p_to
         GROUP BY 1, 2, 3
    ), named_total AS (
        SELECT n.month, n.service, sum(n.quantity) AS quantity, sum(n.cost) AS cost,
               sum(n.unpriced_quantity) AS unpriced_quantity
          FROM named AS n GROUP BY 1, 2
    ), everything AS (
        SELECT a.month, a.service, a.quantity, a.cost, a.unpriced_quantity FROM billing._aws_usage_by_service(p_from, p_to) AS a
    )
    SELECT n.customer, n.month, n.service, n.quantity, n.cost, n.unpriced_quantity FROM named AS n
    UNION ALL
    SELECT NULL, coalesce(e.month, t.month), coalesce(e.service, t.service),
           coalesce(e.quantity, 0) - coalesce(t.quantity, 0), coalesce(e.cost, 0) - coalesce(t.cost, 0),
           greatest(coalesce(e.unpriced_quantity, 0) - coalesce(t.unpriced_quantity, 0), 0)
      FROM everything AS e FULL JOIN named_total AS t ON t.month = e.month AND t.service = e.service
     WHERE coalesce(e.quantity, 0) <> coalesce(t.quantity, 0) OR coalesce(e.cost, 0) <> coalesce(t.cost, 0);
END
$$;

-- Costs per customer and month with p_from <= time < p_to (whole or
-- partial months): OpenAI and AWS. p_customer NULL: every customer (and the
-- NULL customer: usage of no customer); under the setting billing.customer,
-- only that customer, whatever p_customer says.
CREATE FUNCTION billing._customer_months(p_from timestamptz, p_to timestamptz, p_customer text)
RETURNS TABLE (customer text, month date, openai_cost numeric, aws_cost numeric, total_cost numeric, tokens numeric,
               prompt_tokens numeric, completion_tokens numeric, cached_tokens numeric, estimated_tokens numeric,
               unpriced_tokens numeric, messages bigint, emails numeric, unpriced_aws_quantity numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    who text := coalesce(billing.current_customer(), p_customer);
BEGIN
    IF billing.current_customer() IS NOT NULL AND p_customer IS DISTINCT FROM billing.current_customer()
       AND p_customer IS NOT NULL THEN
        RETURN;   -- reading as one customer: no other customer's figures
    END IF;
    RETURN QUERY
    WITH o AS (
        SELECT * FROM billing._usage_by_customer(p_from, p_to, who)
    ), a AS (
        SELECT x.customer, x.month, sum(x.cost) AS cost,
               coalesce(sum(x.quantity) FILTER (WHERE x.service = 'ses'), 0) AS emails,
               sum(x.unpriced_quantity) AS unpriced_quantity
          FROM billing._aws_by_customer(p_from, p_to, who) AS x
         GROUP BY x.customer, x.month
    )
    SELECT coalesce(o.customer, a.customer), coalesce(o.month, a.month), coalesce(o.cost, 0), coalesce(a.cost, 0),
           coalesce(o.cost, 0) + coalesce(a.cost, 0),
           coalesce(o.prompt_tokens + o.completion_tokens + o.estimated_tokens, 0),
           coalesce(o.prompt_tokens, 0), coalesce(o.completion_tokens, 0), coalesce(o.cached_tokens, 0),
           coalesce(o.estimated_tokens, 0), coalesce(o.unpriced_tokens, 0), coalesce(o.messages, 0),
           coalesce(a.emails, 0), coalesce(a.unpriced_quantity, 0)
      -- (equalities only, so that the join is hashed on the customer too: an
      -- IS NOT DISTINCT FROM would compare every customer's row with every
      -- other's of the same month)
      FROM o FULL JOIN a ON a.month = o.month AND (a.customer IS NULL) = (o.customer IS NULL)
                        AND coalesce(a.customer, '') = coalesce(o.customer, '');
END
$$;

CREATE VIEW billing.customer_costs WITH (security_invoker = true) AS
SELECT c.customer, c.month, c.openai_cost, c.aws_cost, c.total_cost, c.tokens, c.prompt_tokens,
       c.completion_tokens, c.cached_tokens, c.estimated_tokens, c.unpriced_tokens, c.messages, c.emails,
       c.unpriced_aws_quantity
  FROM billing._customer_months('-infinity', 'infinity', NULL) AS c;
COMMENT ON VIEW billing.customer_costs IS
    'Cost per customer and month: OpenAI (actual and estimated) and AWS, tokens, messages, estimated and unpriced parts. customer NULL: usage of no customer.';

-- Costs of any range, per day or month, of every customer or one.
CREATE FUNCTION billing._costs("from" timestamptz, "to" timestamptz, group_by text, p_customer text)
RETURNS TABLE (period date, customer text, openai_cost numeric, aws_cost numeric, total_cost numeric,
               tokens numeric, estimated_tokens numeric, unpriced_tokens numeric, messages bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    who text := coalesce(billing.current_customer(), p_customer);
    tz text := (SELECT s.value FROM billing.settings AS s WHERE s.name = 'month_time_zone');
BEGIN
    IF "from" IS NULL OR "to" IS NULL THEN
        RAISE EXCEPTION 'billing: the range must be given, got % to %', coalesce("from"::text, 'NULL'),
                        coalesce("to"::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- ('' or blanks name no customer: every customer is NULL)
    IF btrim(p_customer) = '' THEN
        RAISE EXCEPTION 'billing: customer must be given, or NULL for every customer' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF "to" <= "from" OR NOT billing._countable("from")
       OR NOT billing._countable("to" - interval '1 microsecond') THEN
        RAISE EXCEPTION 'billing: the range must have a start before its end, within the years 1 to 9999'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF group_by IS NULL OR group_by NOT IN ('day', 'month') THEN
        RAISE EXCEPTION 'billing: group_by must be ''day'' or ''month'', got %',
                        coalesce(quote_literal(CASE WHEN length(group_by) > 60 THEN left(group_by, 60) || '...' ELSE group_by END), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF billing.current_customer() IS NOT NULL AND p_customer IS NOT NULL
       AND p_customer <> billing.current_customer() THEN
        RETURN;
    END IF;
    PERFORM billing._require_reader();
    IF group_by = 'month' THEN
        RETURN QUERY
        SELECT c.month, c.customer, c.openai_cost, c.aws_cost, c.total_cost, c.tokens, c.estimated_tokens,
               c.unpriced_tokens, c.messages
          FROM billing._customer_months("from", "to", who) AS c;
        RETURN;
    END IF;
    IF ("to" - "from") > interval '3700 days' THEN
        RAISE EXCEPTION 'billing: a range by day may not exceed about ten years' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- By day: each day read from the tracked tables (as the caller), the
    -- days in the month_time_zone setting's zone; AWS from recorded usage
    -- (usage patterns and actual figures are monthly: they are in the
    -- month rows only).
    RETURN QUERY
    WITH days AS (
        SELECT g.d::date AS day, greatest("from", timezone(tz, g.d::timestamp)) AS d_from,
               least("to", timezone(tz, g.d::timestamp + interval '1 day')) AS d_to
          FROM generate_series(timezone(tz, "from")::date, timezone(tz, "to" - interval '1 microsecond')::date,
                               interval '1 day') AS g(d)
    ), map AS MATERIALIZED (
        SELECT * FROM billing._customer_conversations(who, who IS NULL)
    ), o AS (
        SELECT days.day, m.customer, sum(r.cost + r.estimated_cost) AS cost,
               sum(r.prompt_tokens + r.completion_tokens + r.estimated_prompt + r.estimated_completion) AS tokens,
               sum(r.estimated_prompt + r.estimated_completion) AS estimated_tokens,
               sum(r.unpriced_tokens) AS unpriced_tokens, sum(r.messages)::bigint AS messages
          FROM days
         CROSS JOIN billing.tracked_tables AS t
         CROSS JOIN LATERAL billing._scan_table_safely(t.id, days.d_from, days.d_to) AS r
          LEFT JOIN map AS m ON m.source_id = t.id AND m.conversation_id = r.conversation_id
         WHERE billing._may_read_table(t.id) AND (who IS NULL OR m.customer IS NOT NULL)
         GROUP BY 1, 2
        HAVING sum(r.messages) <> 0
    ), a AS (
        SELECT timezone(tz, u.at)::date AS day, u.customer,
               coalesce(billing.aws_cost(u.service, u.quantity, u.at), 0) AS cost
          FROM billing.aws_usage AS u
         WHERE u.at >= "from" AND u.at < "to" AND (who IS NULL OR u.customer = who)
         GROUP BY 1, 2
    )
    SELECT coalesce(o.day, a.day), coalesce(o.customer, a.customer), coalesce(o.cost, 0), coalesce(a.cost, 0),
           coalesce(o.cost, 0) + coalesce(a.cost, 0), coalesce(o.tokens, 0), coalesce(o.estimated_tokens, 0),
           coalesce(o.unpriced_tokens, 0), coalesce(o.messages, 0)
      FROM o FULL JOIN a ON a.day = o.day AND (a.customer IS NULL) = (o.customer IS NULL)
                        AND coalesce(a.customer, '') = coalesce(o.customer, '');
END
$$;

CREATE FUNCTION billing.costs("from" timestamptz, "to" timestamptz, group_by text DEFAULT 'month',
                              customer text DEFAULT NULL)
RETURNS TABLE (period date, customer text, openai_cost numeric, aws_cost numeric, total_cost numeric,
               tokens numeric, estimated_tokens numeric, unpriced_tokens numeric, messages bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    SELECT * FROM billing._costs($1, $2, $3, $4) AS c ORDER BY c.period, c.customer NULLS FIRST
$$;
COMMENT ON FUNCTION billing.costs(timestamptz, timestamptz, text, text) IS
    'Costs with from <= time < to per customer and day or month (group_by), of every customer or of one.';

-- The customers of some conversations of one tracked table (keys as
-- billing keys them), read from its mapping as the caller through the
-- mapping's unique index: for a few thousand conversations, cheaper than
-- reading the whole mapping. (A key billing shortened, see billing._key,
-- is matched through the key.)
CREATE FUNCTION billing._customers_of(p_source smallint, p_keys text[])
RETURNS TABLE (source_id smallint, conversation_id text, customer text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s billing.customer_sources;
    k text;
    c text;
    ktype text;
BEGIN
    SELECT cs.* INTO s FROM billing.customer_sources AS cs
     WHERE cs.source_id = p_source AND billing._readable_customer_source(cs);
    IF NOT FOUND OR p_keys IS NULL THEN
        RETURN;
    END IF;
    IF s.per_message THEN
        RETURN QUERY SELECT * FROM billing._message_customers(p_source, NULL, p_keys);
        RETURN;
    END IF;
    k := billing._column_reader(s.lookup, s.lookup_key, 'conversation', 'c');
    c := billing._column_reader(s.lookup, s.customer_column, 'customer', 'c');
    ktype := format_type((SELECT a.atttypid FROM pg_attribute AS a
                           WHERE a.attrelid = s.lookup AND a.attname = s.lookup_key), NULL);
    BEGIN
        RETURN QUERY EXECUTE format(
            'SELECT %s::pg_catalog.int2, billing._key(%s), %s FROM %s AS c WHERE c.%I = ANY ($1::%s[]) AND %s IS NOT NULL',
            p_source, k, c, s.lookup, s.lookup_key, ktype, c)
            USING ARRAY(SELECT x FROM unnest(p_keys) AS x WHERE x NOT LIKE '%... (md5 %)');
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
        -- a key that is no value of the column's type: look them up one by one
        RETURN QUERY EXECUTE format(
            'SELECT %s::pg_catalog.int2, billing._key(%s), %s FROM %s AS c WHERE %s = ANY ($1) AND %s IS NOT NULL',
            p_source, k, c, s.lookup, k, c)
            USING p_keys;
        RETURN;
    END;
    IF EXISTS (SELECT 1 FROM unnest(p_keys) AS x WHERE x LIKE '%... (md5 %)') THEN
        RETURN QUERY EXECUTE format(
            'SELECT %s::pg_catalog.int2, billing._key(%s), %s FROM %s AS c WHERE billing._key(%s) = ANY ($1) AND %s IS NOT NULL',
            p_source, k, c, s.lookup, k, c)
            USING ARRAY(SELECT x FROM unnest(p_keys) AS x WHERE x LIKE '%... (md5 %)');
    END IF;
END
$$;

-- One customer's dashboard for the month that contains `at` (the form with a
-- period is made further down).
CREATE FUNCTION billing.dashboard(customer text, months integer DEFAULT 6, top_conversations integer DEFAULT 50,
                                  at timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    PERFORM billing._require_reader();
    PERFORM billing._check_dashboard_at(at);
    RETURN billing.dashboard(billing.month_start(billing.month_of(at)), billing.month_end(billing.month_of(at)),
                             customer, top_conversations, months);
END
$$;
COMMENT ON FUNCTION billing.dashboard(text, integer, integer, timestamptz) IS
    'One customer''s billing page for the month that contains `at`: SELECT billing.dashboard(customer => ''u1'');';


-- Reading as one customer. An app that shows each of its customers their
-- own costs sets billing.customer for the request (SET LOCAL
-- billing.customer = 'u1', or set_config('billing.customer', 'u1', true));
-- then every read of billing, as any role other than billing's owner,
-- shows that customer's costs only: the restrictive policies below hide
-- every other customer's rows of the rollups, the ledger (unmerged writes),
-- recorded AWS usage and statements; month_usage (not kept per customer),
-- problem rows and AWS actual figures are hidden whole; the reads of the
-- tracked tables themselves (stale months, partial months) keep that
-- customer's conversations only (billing._scan_table_safely); and
-- billing.dashboard() and billing.history() give that customer's figures.
-- The setting only ever narrows what a role sees: a role sees a customer's
-- costs only if it may read them without it.
CREATE POLICY as_customer ON billing.usage_ledger AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL
           OR (source_id, billing._key(conversation_id)) IN
              (SELECT c.source_id, c.conversation_id
                 FROM billing._customer_conversations(billing.current_customer(), false) AS c));
CREATE POLICY as_customer ON billing.conversation_usage AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL
           OR (source_id, conversation_id) IN
              (SELECT c.source_id, c.conversation_id
                 FROM billing._customer_conversations(billing.current_customer(), false) AS c));
CREATE POLICY as_customer ON billing.month_usage AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL);
CREATE POLICY as_customer ON billing.problem_messages AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL);
-- (a reply's frozen prompt estimate, by message id: the scans of a tracked
-- table read the ones of the rows they read as billing's owner)
CREATE POLICY as_customer ON billing.estimated_prompts AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL);
ALTER TABLE billing.aws_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.aws_usage USING (true);
CREATE POLICY as_customer ON billing.aws_usage AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL OR customer = billing.current_customer());
ALTER TABLE billing.aws_actuals ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.aws_actuals USING (true);
CREATE POLICY as_customer ON billing.aws_actuals AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL);
ALTER TABLE billing.aws_usage_patterns ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.aws_usage_patterns USING (true);
CREATE POLICY as_customer ON billing.aws_usage_patterns AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL);

-- One row per month and cost source ('openai', 'aws'), for every month with
-- usage; read as one customer (the setting billing.customer), that
-- customer's months (its conversations' usage, its recorded AWS usage).
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

CREATE OR REPLACE FUNCTION billing.history(p_from timestamptz DEFAULT '-infinity', p_to timestamptz DEFAULT 'infinity')
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

-- The customer of a profiles table's e-mails (billing.track_profiles): a
-- column of the profile (its id, when a profile is a user).
CREATE TABLE billing.profile_customers (
    relation        regclass PRIMARY KEY,
    customer_column name     NOT NULL
);
COMMENT ON TABLE billing.profile_customers IS
    'The column of a tracked profiles table that names the customer of its e-mails (billing.track_profile_customers).';
SELECT pg_catalog.pg_extension_config_dump('billing.profile_customers', '');

CREATE FUNCTION billing.track_profile_customers(relation regclass, customer_column name DEFAULT 'id')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF customer_column IS NULL THEN
        RAISE EXCEPTION 'billing: customer_column must be given' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Leave it out for id.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger AS g WHERE g.tgrelid = relation AND g.tgname = 'billing_track_profiles') THEN
        RAISE EXCEPTION 'billing: table % is not tracked by track_profiles', relation USING ERRCODE = 'undefined_object',
              HINT = 'billing.track_profiles() starts tracking it.';
    END IF;
    -- A column of a type billing reads as an id (else an error naming it).
    PERFORM billing._column_reader(relation, customer_column, 'customer', 'p');
    INSERT INTO billing.profile_customers AS pc VALUES (relation, customer_column)
    ON CONFLICT ON CONSTRAINT profile_customers_pkey DO UPDATE SET customer_column = excluded.customer_column;
END
$$;
COMMENT ON FUNCTION billing.track_profile_customers(regclass, name) IS
    'The e-mails a tracked profiles table''s counter records from now on belong to the customer its customer_column names.';

-- The customer of a profile row (NULL when its table has no customer
-- column, or the column is NULL or empty), for the profiles trigger (which
-- runs as billing's owner). The column is read with built-in conversions
-- only (billing._column_reader).
CREATE FUNCTION billing._profile_customer(p_relation regclass, p_row anyelement) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col name := (SELECT pc.customer_column FROM billing.profile_customers AS pc WHERE pc.relation = p_relation);
    who text;
BEGIN
    IF col IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT %s', billing._column_reader(p_relation, col, 'customer', '($1)')) INTO who USING p_row;
    RETURN CASE WHEN who <> '' THEN who END;
EXCEPTION WHEN undefined_column OR datatype_mismatch THEN
    RETURN NULL;   -- the column was dropped or changed type: the e-mails belong to no customer
END
$$;
REVOKE ALL ON FUNCTION billing._profile_customer(regclass, anyelement) FROM PUBLIC;

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

-- ==== 0.4: one customer's dashboard is the owner's payload (by_model,
-- budgets); faster reads of every customer ====

-- Per conversation and model rollups (ledger_and_merge.sql).
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
ALTER TABLE billing.conversation_model_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.conversation_model_usage FOR SELECT USING (source_id IN (SELECT r.id FROM billing._readable_tables AS r));
CREATE POLICY as_customer ON billing.conversation_model_usage AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL
           OR (source_id, conversation_id) IN
              (SELECT c.source_id, c.conversation_id
                 FROM billing._customer_conversations(billing.current_customer(), false) AS c));

-- The months merged before this update have no per-model rows per
-- conversation yet: they are read from the tables until the next merge
-- rebuilds them (exact meanwhile).
INSERT INTO billing.stale_months (source_id, month)
SELECT DISTINCT u.source_id, u.month FROM billing.month_usage AS u
ON CONFLICT DO NOTHING;

-- The top 10 customers of a period, for the owner's dashboard: a
-- "customers" entry once billing knows customers (else nothing, and no
-- read). The period's conversations are read once, and their customers
-- looked up through the mapping's index.
CREATE FUNCTION billing._dashboard_customers(p_from timestamptz, p_to timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    mon date := billing.month_of(p_from);
    whole_month boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM billing.customer_sources)
       AND NOT EXISTS (SELECT 1 FROM billing.aws_usage AS u WHERE u.customer IS NOT NULL) THEN
        RETURN '{}'::jsonb;
    END IF;
    -- One whole month that the rollups hold (the usual dashboard): its
    -- conversations' rollups are read through an index on the month, one
    -- probe per tracked table (LATERAL ... OFFSET 0: parameterized by the
    -- table, so never a scan of every month's rows, whatever the statistics
    -- say), plus the unmerged ledger rows.
    whole_month := p_from = billing.month_start(mon) AND p_to = billing.month_end(mon)
                   AND NOT EXISTS (SELECT 1 FROM billing.tracked_tables AS t
                                    WHERE NOT EXISTS (SELECT 1 FROM billing._rollups_current(t.id, mon)));
    RETURN jsonb_build_object('customers', (
        WITH conv AS MATERIALIZED (
            SELECT c.source_id, c.conversation_id, c.cost, c.prompt_tokens, c.completion_tokens, c.estimated_tokens,
                   c.messages
              FROM billing._usage_by_conversation(p_from, p_to) AS c
             WHERE NOT whole_month
            UNION ALL
            SELECT x.source_id, x.conversation_id, sum(x.cost), sum(x.prompt_tokens), sum(x.completion_tokens),
                   sum(x.estimated_tokens), sum(x.messages)
              FROM (SELECT u.source_id, u.conversation_id, u.cost, u.prompt_tokens, u.completion_tokens,
                           u.estimated_tokens, u.messages
                      FROM billing.tracked_tables AS t
                     CROSS JOIN LATERAL (SELECT r.source_id, r.conversation_id, r.cost, r.prompt_tokens,
                                                r.completion_tokens, r.estimated_tokens, r.messages
                                           FROM billing.conversation_usage AS r
                                          WHERE r.source_id = t.id AND r.month = mon
                                         OFFSET 0) AS u
                    UNION ALL
                    SELECT l.source_id, l.conversation_id, l.cost + l.estimated_cost, l.prompt_tokens,
                           l.completion_tokens, l.estimated_prompt + l.estimated_completion, l.messages
                      FROM billing._ledger_usage(p_from, p_to, billing._estimate_model()) AS l) AS x
             WHERE whole_month
             GROUP BY x.source_id, x.conversation_id
            HAVING sum(x.messages) <> 0
        ), keys AS (
            SELECT c.source_id, array_agg(c.conversation_id) AS keys FROM conv AS c
             WHERE c.source_id IN (SELECT cs.source_id FROM billing.customer_sources AS cs)
               AND c.conversation_id IS NOT NULL
             GROUP BY c.source_id
        ), map AS MATERIALIZED (
            SELECT m.* FROM keys AS k CROSS JOIN LATERAL billing._customers_of(k.source_id, k.keys) AS m
        ), x AS (
            SELECT m.customer, c.cost AS openai, 0 AS aws, c.prompt_tokens::numeric + c.completion_tokens
                   + c.estimated_tokens AS tokens, c.messages
              FROM conv AS c JOIN map AS m ON m.source_id = c.source_id AND m.conversation_id = c.conversation_id
            UNION ALL
            SELECT a.customer, 0, a.cost, 0, 0 FROM billing._aws_by_customer(p_from, p_to, NULL) AS a
             WHERE a.customer IS NOT NULL
        )
        SELECT coalesce(jsonb_agg(jsonb_build_object('customer', t.customer, 'cost', t.cost, 'openai', t.openai,
                                                     'aws', t.aws, 'tokens', t.tokens, 'messages', t.messages)
                                  ORDER BY t.cost DESC, t.customer), '[]'::jsonb)
          FROM (SELECT x.customer, sum(x.openai + x.aws) AS cost, sum(x.openai) AS openai, sum(x.aws) AS aws,
                       sum(x.tokens) AS tokens, sum(x.messages) AS messages
                  FROM x GROUP BY x.customer
                 ORDER BY 2 DESC, 1
                 LIMIT 10) AS t));
END
$$;

CREATE FUNCTION billing._customer_usage_by_model(p_from timestamptz, p_to timestamptz, p_customer text)
RETURNS TABLE (month date, conversation_id text, model text, messages bigint, prompt_tokens numeric, completion_tokens numeric,
               cached_tokens numeric, estimated_prompt numeric, estimated_completion numeric,
               unsplit_tokens numeric, problems bigint, cost numeric, estimated_cost numeric,
               unpriced_tokens numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s record;
    ks smallint[];
    kc text[];
BEGIN
    PERFORM billing._require_reader();
    IF p_customer IS NULL OR (billing.current_customer() IS NOT NULL AND billing.current_customer() <> p_customer) THEN
        RETURN;   -- reading as one customer: no other customer's figures
    END IF;
    SELECT array_agg(k.source_id), array_agg(k.conversation_id) INTO ks, kc
      FROM (SELECT DISTINCT c.source_id, c.conversation_id FROM billing._customer_conversations(p_customer, false) AS c
             WHERE billing._may_read_table(c.source_id)) AS k;
    IF ks IS NULL THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH x AS (
        SELECT u.source_id, u.month, u.conversation_id, u.model, u.messages, u.prompt_tokens, u.completion_tokens, u.cached_tokens,
               u.estimated_prompt, u.estimated_completion, u.unsplit_tokens, u.problems, u.cost,
               u.estimated_cost, u.unpriced_tokens
          FROM unnest(ks, kc) AS k(source_id, conversation_id)
         CROSS JOIN LATERAL (SELECT r.* FROM billing.conversation_model_usage AS r
                              WHERE r.source_id = k.source_id AND r.conversation_id = k.conversation_id
                                AND r.month >= billing.month_of(p_from)
                                AND billing.month_start(r.month) >= p_from
                                AND billing.month_end(r.month) <= p_to
                             OFFSET 0) AS u
        UNION ALL
        SELECT l.source_id, l.month, l.conversation_id, l.model, l.messages, l.prompt_tokens, l.completion_tokens, l.cached_tokens,
               l.estimated_prompt, l.estimated_completion, l.unsplit_tokens, l.problems, l.cost,
               l.estimated_cost, l.unpriced_tokens
          FROM billing._ledger_usage(p_from, p_to, billing._estimate_model()) AS l
          JOIN unnest(ks, kc) AS k(source_id, conversation_id)
            ON k.source_id = l.source_id AND k.conversation_id = l.conversation_id
    )
    SELECT x.month, x.conversation_id, x.model, sum(x.messages)::bigint, sum(x.prompt_tokens), sum(x.completion_tokens),
           sum(x.cached_tokens), sum(x.estimated_prompt), sum(x.estimated_completion), sum(x.unsplit_tokens),
           sum(x.problems)::bigint, sum(x.cost), sum(x.estimated_cost), sum(x.unpriced_tokens)
      FROM x
     CROSS JOIN LATERAL billing._rollups_current(x.source_id, x.month) AS fresh
     GROUP BY x.month, x.conversation_id, x.model
    HAVING sum(x.messages) <> 0;

    FOR s IN SELECT r.* FROM billing._table_ranges(p_from, p_to) AS r
              WHERE r.source_id = ANY (ks) LOOP
        RETURN QUERY
        SELECT r.month, r.conversation_id, coalesce(r.model, ''), sum(r.messages)::bigint, sum(r.prompt_tokens),
               sum(r.completion_tokens), sum(r.cached_tokens), sum(r.estimated_prompt), sum(r.estimated_completion),
               sum(r.unsplit_tokens), sum(r.problems)::bigint, sum(r.cost), sum(r.estimated_cost),
               sum(r.unpriced_tokens)
          FROM billing._scan_table_safely(s.source_id, s.range_from, s.range_to) AS r
          JOIN unnest(ks, kc) AS k(source_id, conversation_id)
            ON k.source_id = s.source_id AND k.conversation_id = r.conversation_id
         GROUP BY r.month, r.conversation_id, coalesce(r.model, '');
    END LOOP;
END
$$;

CREATE FUNCTION billing._customer_dashboard_budgets(p_month date, p_customer text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before text := current_setting('billing.customer', true);
    result jsonb;
BEGIN
    IF NOT has_table_privilege('billing.budgets', 'SELECT') THEN
        RETURN NULL;
    END IF;
    IF (billing.current_customer() IS NOT NULL AND billing.current_customer() <> p_customer)
       OR NOT EXISTS (SELECT 1 FROM billing.budgets AS b WHERE b.scope IN ('customer', 'conversation')) THEN
        RETURN '[]';
    END IF;
    PERFORM set_config('billing.customer', p_customer, true);
    -- Most customers have no budget of their own: then the status of every
    -- budget (all of them read as this customer) is not computed only to be
    -- filtered away. The same condition as the filter below, so the result
    -- is the same.
    IF NOT EXISTS (SELECT 1 FROM billing.budgets AS b
                    WHERE (b.scope = 'customer' AND b.customer = p_customer)
                       OR (b.scope = 'conversation'
                           AND billing._key(b.conversation_id) IN (SELECT c.conversation_id
                                                                     FROM billing._customer_conversations(p_customer, false) AS c))) THEN
        PERFORM set_config('billing.customer', coalesce(before, ''), true);
        RETURN '[]';
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'budget', s.budget, 'scope', s.scope, 'model', s.model, 'conversation_id', s.conversation_id,
               'customer', s.customer,
               'amount', s.amount, 'spent', s.spent, 'remaining', s.remaining, 'percent', s.percent,
               'forecast', s.forecast, 'forecast_method', s.forecast_method, 'state', s.state,
               'blocks', s.blocks)
           ORDER BY s.budget), '[]'::jsonb)
      INTO result
      FROM billing._budget_status(p_month, now()) AS s
     WHERE (s.scope = 'customer' AND s.customer = p_customer)
        OR (s.scope = 'conversation'
            AND billing._key(s.conversation_id) IN (SELECT c.conversation_id
                                                      FROM billing._customer_conversations(p_customer, false) AS c));
    PERFORM set_config('billing.customer', coalesce(before, ''), true);
    RETURN result;
END
$$;

-- One customer's dashboard: the owner's payload (README "The dashboard
-- payload"), of that customer's usage, with its budgets and its name.
CREATE FUNCTION billing.dashboard(period_start timestamptz, period_end timestamptz, customer text,
                                  top_conversations integer DEFAULT 50, months integer DEFAULT 6)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    who text := dashboard.customer;
    last_month date;
    history_from date;
    whole_months boolean;
    shown boolean;
    m_all jsonb;        -- per month, conversation and model, the history's months
    period_rows jsonb;  -- the same of the period (from m_all when it is whole months of the history)
    aws_all jsonb;      -- per month and service, the history's months
    aws_rows jsonb;     -- the same of the period
    openai jsonb;
    aws jsonb;
    hist jsonb;
    conversations jsonb;
BEGIN
    -- ('' or blanks name no customer, as for record_customer_usage)
    IF who IS NULL OR btrim(who) = '' THEN
        RAISE EXCEPTION 'billing: customer must be given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF period_start IS NULL OR period_end IS NULL THEN
        RAISE EXCEPTION 'billing: the period must be given, got % to %', coalesce(period_start::text, 'NULL'),
                        coalesce(period_end::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF period_end <= period_start
       OR NOT billing._countable(period_start) OR NOT billing._countable(period_end - interval '1 microsecond') THEN
        RAISE EXCEPTION 'billing: the period must have a start before its end, within the years 1 to 9999'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM billing._check_dashboard_limits(top_conversations, months);
    PERFORM billing._require_reader();
    IF NOT has_table_privilege('billing.conversation_model_usage', 'SELECT') THEN
        RAISE EXCEPTION 'billing: role "%" may not read billing''s figures: it has no SELECT on billing.conversation_model_usage',
                        current_user
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('A superuser or the extension''s owner grants it: GRANT SELECT ON ALL TABLES IN SCHEMA billing TO %I;',
                                current_user);
    END IF;
    -- Reading as one customer: no other customer's figures (every part empty).
    shown := billing.current_customer() IS NULL OR billing.current_customer() = who;
    last_month := billing.month_of(period_end - interval '1 microsecond');
    history_from := (last_month - (months - 1) * interval '1 month')::date;
    whole_months := period_start = billing.month_start(billing.month_of(period_start))
                    AND period_end = billing.month_end(last_month) AND billing.month_of(period_start) >= history_from;

    -- One read of the history's months serves the history and, for whole
    -- months (the usual call), the cards and the top conversations.
    SELECT coalesce(jsonb_agg(to_jsonb(m)), '[]') INTO m_all
      FROM billing._customer_usage_by_model(billing.month_start(history_from), billing.month_end(last_month), who) AS m
     WHERE shown;
    SELECT coalesce(jsonb_agg(to_jsonb(a)), '[]') INTO aws_all
      FROM billing._aws_by_customer(billing.month_start(history_from), billing.month_end(last_month), who) AS a
     WHERE shown;

    IF whole_months THEN
        period_rows := coalesce((SELECT jsonb_agg(e) FROM jsonb_array_elements(m_all) AS e
                                  WHERE (e ->> 'month')::date >= billing.month_of(period_start)), '[]');
        aws_rows := coalesce((SELECT jsonb_agg(e) FROM jsonb_array_elements(aws_all) AS e
                               WHERE (e ->> 'month')::date >= billing.month_of(period_start)), '[]');
    ELSE
        period_rows := (SELECT coalesce(jsonb_agg(to_jsonb(m)), '[]')
                          FROM billing._customer_usage_by_model(period_start, period_end, who) AS m
                         WHERE shown);
        aws_rows := (SELECT coalesce(jsonb_agg(to_jsonb(a)), '[]')
                       FROM billing._aws_by_customer(period_start, period_end, who) AS a
                      WHERE shown);
    END IF;
    openai := billing._openai_card(period_rows);
    aws := (SELECT jsonb_build_object(
                       'cost', coalesce(sum(a.cost), 0),
                       'emails', coalesce(sum(a.quantity) FILTER (WHERE a.service = 'ses'), 0),
                       'breakdown', coalesce(jsonb_object_agg(a.service, billing._aws_service_entry(
                                        a.quantity, a.cost, a.unpriced_quantity, 'estimate')), '{}'::jsonb))
              FROM (SELECT x.service, sum(x.quantity) AS quantity, sum(x.cost) AS cost,
                           sum(x.unpriced_quantity) AS unpriced_quantity
                      FROM jsonb_to_recordset(aws_rows) AS x(service text, quantity numeric, cost numeric,
                                                             unpriced_quantity numeric)
                     GROUP BY x.service) AS a);
    -- (AWS actual figures are not kept per customer: the customer's AWS
    -- cost is its recorded usage, an estimate.)
    aws := aws || jsonb_build_object('source', 'estimate');

    SELECT jsonb_agg(jsonb_build_object(
               -- (a month before the year 1 says so: 0001-12 BC comes before 0001-01)
               'month', to_char(g.m, 'YYYY-MM') || CASE WHEN g.m < '0001-01-01' THEN ' BC' ELSE '' END,
               'openai', o.cost, 'aws', a.cost, 'total', o.cost + a.cost)
             ORDER BY g.m)
      INTO hist
      FROM generate_series(history_from, last_month, interval '1 month') AS g(m)
     CROSS JOIN LATERAL (SELECT coalesce(sum(x.cost + x.estimated_cost), 0) AS cost
                           FROM jsonb_to_recordset(m_all) AS x(month date, cost numeric, estimated_cost numeric)
                          WHERE x.month = g.m) AS o
     CROSS JOIN LATERAL (SELECT coalesce(sum(x.cost), 0) AS cost
                           FROM jsonb_to_recordset(aws_all) AS x(month date, cost numeric)
                          WHERE x.month = g.m) AS a;

    -- Its top conversations, from the same rows (tokens: prompt +
    -- completion + estimated, as the owner's list counts them).
    SELECT coalesce(jsonb_agg(jsonb_build_object('conversation_id', x.conversation_id, 'cost', x.cost,
                                                 'tokens', x.tokens, 'messages', x.messages)
                              ORDER BY x.cost DESC, x.conversation_id), '[]'::jsonb)
      INTO conversations
      FROM (SELECT c.conversation_id, sum(c.cost + c.estimated_cost) AS cost,
                   sum(c.prompt_tokens + c.completion_tokens + c.estimated_prompt + c.estimated_completion) AS tokens,
                   sum(c.messages) AS messages
              FROM jsonb_to_recordset(period_rows) AS c(conversation_id text, messages numeric, prompt_tokens numeric,
                                                        completion_tokens numeric, estimated_prompt numeric,
                                                        estimated_completion numeric, cost numeric, estimated_cost numeric)
             GROUP BY c.conversation_id
            HAVING sum(c.messages) <> 0
             ORDER BY 2 DESC, 1
             LIMIT top_conversations) AS x;

    RETURN jsonb_build_object(
        'customer', who,
        -- (in the month zone: the bounds read the same in every session)
        'period', jsonb_build_object('start', billing._month_zone_text(period_start),
                                     'end', billing._month_zone_text(period_end)),
        'openai', openai,
        'aws', aws,
        'total_cost', (openai ->> 'cost')::numeric + (aws ->> 'cost')::numeric,
        'conversations', conversations,
        'history', hist,
        'budgets', billing._customer_dashboard_budgets(last_month, who));
END
$$;
COMMENT ON FUNCTION billing.dashboard(timestamptz, timestamptz, text, integer, integer) IS
    'One customer''s billing page for usage with period_start <= time < period_end: the owner''s payload (OpenAI card with by_model, AWS card, top conversations, history, budgets) of that customer''s usage.';

-- ==== Tracking a distributed table by its shards' triggers (issue 14) ====
-- (and the functions of reads.sql, views, citus.sql, tracking.sql,
-- ledger_and_merge.sql and ddl_events.sql it changes)

-- The companion table of kind p_kind ('ledger', 'estimates' or 'problems')
-- of tracked table p_source: billing.citus_<kind>_<id>, the distributed
-- table beside its messages that _citus_set_up_triggers made (below);
-- NULL when there is none (the table is not followed by its shards'
-- triggers). The one place that finds a companion by its name (the
-- trigger's body, run on the workers, and _citus_set_up_triggers, which
-- makes them, name them themselves).
CREATE FUNCTION billing._citus_companion(p_source smallint, p_kind text) RETURNS regclass
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('ledger', 'estimates', 'problems') THEN
        RAISE EXCEPTION 'billing: no companion table of kind %', coalesce(quote_literal(p_kind), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN (SELECT c.oid::regclass FROM pg_class AS c
             WHERE c.relname = 'citus_' || p_kind || '_' || p_source
               AND c.relnamespace = 'billing'::regnamespace);
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

-- Messages billing cannot read (a distributed table's too: _citus_problem_rows),
-- usage it cannot price, and the conversations whose messages name
-- different customers (track_message_customers): one row each, the
-- customers named, the one billed, and in messages how many of its
-- messages name another customer (hidden when reading as one customer).
CREATE OR REPLACE VIEW billing.usage_problems WITH (security_invoker = true) AS
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

-- ==== A distributed table tracked by its shards' triggers ====
-- (docs/citus.md, "Tracking a distributed table"). When the table is
-- distributed by hash on its conversation column (and billing.citus_triggers
-- is on), track_messages makes, for tracked table N:
-- - billing.citus_ledger_N: its unmerged writes, billing.usage_ledger's
--   columns after `conversation` (the conversation in the messages' own
--   type), distributed by it and co-located with the messages: a shard's
--   trigger writes the ledger shard beside it, on the same worker;
-- - billing.citus_estimates_N and billing.citus_problems_N: its frozen
--   prompt estimates and its problem rows (estimated_prompts and
--   problem_messages for a local table), distributed the same way;
-- - billing.citus_track_N(), the trigger function, C (src/pg/track_row.cpp,
--   citus_track_row: the common INSERT written into the co-located ledger
--   shard directly), and billing.citus_track_N_full(), the PL/pgSQL body
--   like a local table's billing.track_N_full writing those three tables,
--   for every other write; Citus creates both on every node (they are not
--   marked as depending on the extension, which Citus refuses for a
--   distributed function) and puts the trigger on every shard
--   (citus.enable_unsafe_triggers). A reply stored
--   without usage has its prompt estimated from its conversation's earlier
--   messages with one query on the table by name and conversation, which
--   Citus routes to the shard beside it.
-- The reads take the ledger in beside billing.usage_ledger
-- (_citus_ledger_rows), the scans of the table its estimates
-- (_citus_frozen_estimates), usage_problems its problems
-- (_citus_problem_rows). merge() moves the ledger into the rollups
-- (_citus_take_ledger: a distributed DELETE ... RETURNING whose rows go
-- to billing.usage_ledger, in merge()'s transaction, then folded with the
-- local ledger). The backfill and the rebuild of a stale month read the
-- table under a SHARE lock (Citus takes it on every shard: writers wait),
-- not row locks. These objects belong to no extension: untrack_messages,
-- the table's DROP and DROP EXTENSION billing (_citus_extension_dropped,
-- below) drop them.

-- Whether tracked table p_source is followed by its shards' triggers.
CREATE FUNCTION billing._citus_triggered(p_source smallint) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT billing._citus_companion(p_source, 'ledger') IS NOT NULL $$;

-- Whether tracked table p_source is a distributed table tracked by
-- recomputation at each merge (citus.sql, above).
CREATE FUNCTION billing._citus_recomputed(p_source smallint) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT billing._citus_distributed(t.relation) AND NOT billing._citus_triggered(t.id)
      FROM billing.tracked_tables AS t WHERE t.id = p_source
$$;

-- Why a distributed table cannot be followed by its shards' triggers (NULL
-- when it can): it is then tracked by recomputation.
CREATE FUNCTION billing._citus_trigger_refusal(t billing.tracked_tables) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    method "char";
    dist_column text;
BEGIN
    IF NOT coalesce(current_setting('billing.citus_triggers', true), 'on')::boolean THEN
        RETURN 'billing.citus_triggers is off';
    END IF;
    EXECUTE 'SELECT partmethod, pg_catalog.column_to_column_name(logicalrelid, partkey)
               FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1'
       INTO method, dist_column USING t.relation;
    IF method IS DISTINCT FROM 'h' THEN
        RETURN 'it is not distributed by hash';
    ELSIF dist_column IS DISTINCT FROM t.conversation_column THEN
        RETURN format('it is distributed by %I, not by its conversation column %I', dist_column,
                      t.conversation_column);
    ELSIF (SELECT c.relkind FROM pg_class AS c WHERE c.oid = t.relation) <> 'r' THEN
        RETURN 'it is partitioned';
    END IF;
    RETURN NULL;
END
$$;

-- The body of billing.citus_track_N_full: billing._trigger_function_body's
-- rules, writing the distributed ledger, estimates and problems, each row
-- beside its message (the conversation first). It runs on the worker that
-- holds the shard, on a shard of the table it was made for only.
CREATE FUNCTION billing._citus_trigger_body(t billing.tracked_tables) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    o record := billing._row_reader(t, 'OLD');
    n record := billing._row_reader(t, 'NEW');
    earlier_content text := billing._column_reader(t.relation, t.content_column, 'content', 'm');
    nsp name := (SELECT ns.nspname FROM pg_class AS cl JOIN pg_namespace AS ns ON ns.oid = cl.relnamespace
                  WHERE cl.oid = t.relation);
    rel name := (SELECT cl.relname FROM pg_class AS cl WHERE cl.oid = t.relation);
BEGIN
    RETURN format($body$
DECLARE
    o record;
    n record;
    est bigint := 0;
    old_est bigint := 0;
    old_estimated boolean := false;   -- OLD was a reply estimated from its text
    old_logged boolean := false;      -- OLD is in billing.%19$I
    old_id text;
    new_id text;
    old_at timestamptz;
    new_at timestamptz;
BEGIN
    -- This function serves the shards of one table (by name: the OIDs
    -- differ from node to node). Elsewhere the write passes unbilled, with a
    -- WARNING (billing._trigger_guard), and NEW (OLD for a DELETE) tells
    -- billing.citus_track_N() so.
    IF TG_TABLE_SCHEMA <> %16$L OR NOT EXISTS (
           SELECT 1 FROM pg_catalog.pg_dist_shard AS s
            WHERE s.logicalrelid = pg_catalog.to_regclass(%15$L)
              AND TG_TABLE_NAME IN (%17$L, %17$L || '_' || s.shardid)) THEN
        RAISE WARNING 'billing: this trigger function tracks the shards of %%, not %%.%%: the write is not billed', %15$L,
                      TG_TABLE_SCHEMA, TG_TABLE_NAME;
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_id := billing._key(%4$s);
        old_at := %6$s;
        SELECT * INTO o FROM %8$s;
        old_estimated := o.estimated;
        old_logged := o.problem IS NOT NULL OR NOT coalesce(billing._countable(old_at), false);
        IF old_estimated THEN
            SELECT coalesce(max(e.prompt_tokens), 0) INTO old_est FROM billing.%18$I AS e
             WHERE e.conversation = OLD.%11$I AND e.message_id = old_id;
        END IF;
        IF billing._countable(old_at) THEN
            INSERT INTO billing.%20$I VALUES (OLD.%11$I, %1$s, billing._key(%2$s), old_at, o.model, -1,
                -o.prompt_tokens, -o.completion_tokens, -o.cached_tokens, -old_est, -o.estimated_completion,
                -o.unsplit_tokens, CASE WHEN o.problem IS NULL THEN 0 ELSE -1 END);
        END IF;
        IF TG_OP = 'DELETE' THEN
            IF old_estimated THEN
                DELETE FROM billing.%18$I WHERE conversation = OLD.%11$I AND message_id = old_id;
            END IF;
            IF old_logged THEN
                DELETE FROM billing.%19$I WHERE conversation = OLD.%11$I AND message_id = old_id;
            END IF;
            RETURN NULL;
        END IF;
    END IF;

    new_id := billing._key(%5$s);
    new_at := %7$s;
    SELECT * INTO n FROM %9$s;
    IF old_estimated AND (NOT n.estimated OR old_id <> new_id) THEN
        DELETE FROM billing.%18$I WHERE conversation = OLD.%11$I AND message_id = old_id;
    END IF;
    IF n.estimated THEN
        IF old_estimated AND old_id = new_id THEN
            est := old_est;   -- the estimate was taken when the reply was stored
        ELSE
            -- (by the table's name and conversation: Citus routes it to the shard beside this one)
            SELECT coalesce(sum(billing._estimated_tokens(%14$s)), 0)::bigint INTO est
              FROM %10$s AS m
             WHERE m.%11$I = NEW.%11$I AND %21$s;
            INSERT INTO billing.%18$I VALUES (NEW.%11$I, %1$s, new_id, est)
                ON CONFLICT (conversation, message_id) DO UPDATE SET prompt_tokens = excluded.prompt_tokens;
        END IF;
    END IF;

    IF NOT coalesce(billing._countable(new_at), false) THEN
        n.problem := billing._row_problem(n.problem, new_at);
    ELSE
        INSERT INTO billing.%20$I VALUES (NEW.%11$I, %1$s, billing._key(%3$s), new_at, n.model, 1,
            n.prompt_tokens, n.completion_tokens, n.cached_tokens, est, n.estimated_completion,
            n.unsplit_tokens, CASE WHEN n.problem IS NULL THEN 0 ELSE 1 END);
    END IF;
    IF old_logged AND (n.problem IS NULL OR old_id <> new_id) THEN
        DELETE FROM billing.%19$I WHERE conversation = OLD.%11$I AND message_id = old_id;
    END IF;
    IF n.problem IS NOT NULL THEN
        INSERT INTO billing.%19$I
        VALUES (NEW.%11$I, %1$s, new_id, CASE WHEN isfinite(new_at) THEN new_at END, n.problem)
            ON CONFLICT (conversation, message_id) DO UPDATE SET created_at = excluded.created_at, problem = excluded.problem;
    END IF;
    RETURN NULL;
END
$body$, t.id, o.conversation, n.conversation, o.id, n.id, o.at, n.at, o.usage, n.usage,
        t.relation, t.conversation_column, t.created_at_column, t.id_column, earlier_content,
        format('%I.%I', nsp, rel), nsp, rel,
        'citus_estimates_' || t.id, 'citus_problems_' || t.id, 'citus_ledger_' || t.id,
        billing._earlier_condition(t, 'm', 'NEW'));
END
$fn$;

-- The trigger functions of tracked distributed table t (made anew when they
-- exist, on every node: Citus propagates CREATE OR REPLACE of a distributed
-- function): billing.citus_track_N, C (src/pg/track_row.cpp,
-- citus_track_row), which writes the common INSERT into the co-located
-- ledger shard itself and passes every other write to
-- billing.citus_track_N_full, the PL/pgSQL body (_citus_trigger_body). Made
-- by _citus_set_up_triggers, and by _refresh_trigger_functions (every
-- merge()) when their bodies are not what this version writes, as after
-- ALTER EXTENSION billing UPDATE. Run on the coordinator, before any
-- parallel operation on a distributed table in the transaction.
CREATE FUNCTION billing._citus_create_trigger_functions(t billing.tracked_tables) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn text := billing._trigger_function_name(t.id, distributed => true);
    full_fn text := billing._trigger_function_name(t.id, full_body => true, distributed => true);
BEGIN
    -- SECURITY DEFINER: the app's role writes its own table only. The C
    -- function runs as the app's role and runs no SQL.
    EXECUTE format('CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
                    SET search_path = pg_catalog, pg_temp AS %L', full_fn, billing._citus_trigger_body(t));
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', full_fn);
    EXECUTE format('CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE c AS %L, %L', fn,
                   (SELECT p.probin FROM pg_proc AS p WHERE p.oid = 'billing.usage_of(jsonb, text, text)'::regprocedure),
                   'citus_track_row');
    EXECUTE format('REVOKE ALL ON FUNCTION %s() FROM PUBLIC', fn);
END
$$;

-- A column rename (or a rename of the table) would leave the shards'
-- trigger reading columns or a table that are no longer there, and every
-- write of the app would fail: refused, with the command.
CREATE FUNCTION billing._citus_table_altered() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    same boolean;
BEGIN
    FOR t IN SELECT DISTINCT ON (tt.id) tt.*
               FROM billing.tracked_tables AS tt
               JOIN pg_event_trigger_ddl_commands() AS c
                 ON c.classid = 'pg_class'::regclass AND c.objid = tt.relation::oid
              ORDER BY tt.id
    LOOP
        CONTINUE WHEN NOT billing._citus_triggered(t.id);
        BEGIN
            -- (the full body; before the C fast path, citus_track_N itself)
            same := billing._citus_trigger_body(t) IN (
                        (SELECT p.prosrc FROM pg_proc AS p
                          WHERE p.oid = billing._trigger_function(t.id, full_body => true, distributed => true)),
                        (SELECT p.prosrc FROM pg_proc AS p
                          WHERE p.oid = billing._trigger_function(t.id, distributed => true)));
        EXCEPTION WHEN OTHERS THEN
            same := false;
        END;
        IF NOT coalesce(same, false) THEN
            RAISE EXCEPTION 'billing: distributed table % is tracked by its shards'' triggers, which this change would break', t.relation
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'billing.untrack_messages() it first, then billing.track_messages() it again.';
        END IF;
    END LOOP;
END
$$;
CREATE EVENT TRIGGER billing_citus_table_altered ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION billing._citus_table_altered();

REVOKE ALL ON FUNCTION billing._citus_create_trigger_functions(billing.tracked_tables),
    billing._citus_table_altered() FROM PUBLIC;

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
REVOKE ALL ON FUNCTION billing._drop_stale_triggers(regclass) FROM PUBLIC;

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

-- track_messages checks the column types first, and returns what it took in
-- (a new result type: the function is made anew).
DROP FUNCTION billing.track_messages(regclass, name, name, name, name, name, name, boolean);
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

-- Replaces the rollups of [p_from, p_to) for one table with a recomputation
-- from the table, and drops the ledger rows and stale marks that it covers.
-- One statement, so one snapshot: a write committed after it started stays
-- in the ledger and is added on top.
CREATE OR REPLACE FUNCTION billing._rebuild(p_source smallint, p_from timestamptz, p_to timestamptz) RETURNS void
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

CREATE OR REPLACE FUNCTION billing.merge() RETURNS bigint
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

CREATE OR REPLACE FUNCTION billing._mark_stale_from(p_from timestamptz) RETURNS void
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
REVOKE ALL ON FUNCTION billing._merge_step(smallint, text, date) FROM PUBLIC;

-- DROP EXTENSION billing (with or without CASCADE) would leave a
-- distributed table's trigger on the workers' shards, calling functions of
-- the extension that is gone, and every write to the table would fail:
-- before the drop, such tables stop being followed by their shards'
-- triggers (billing._citus_drop_triggers: the trigger function, the
-- triggers and the distributed tables go, on every node). The command's
-- text names the extensions dropped (an event trigger cannot see them at
-- ddl_command_start); the drop happens in the same transaction, so a drop
-- that fails undoes this too.
CREATE FUNCTION billing._citus_extension_dropped() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s smallint;
BEGIN
    IF current_query() !~* E'\\mbilling\\M' THEN
        RETURN;
    END IF;
    FOR s IN SELECT t.id FROM billing.tracked_tables AS t ORDER BY t.id LOOP
        IF billing._citus_triggered(s) THEN
            PERFORM billing._citus_drop_triggers(s);
        END IF;
    END LOOP;
END
$$;
CREATE EVENT TRIGGER billing_citus_extension_dropped ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION billing._citus_extension_dropped();
REVOKE ALL ON FUNCTION billing._citus_extension_dropped() FROM PUBLIC;

-- Why this node would price with other prices or settings than the
-- cluster's (NULL when it would not: the catalog is not shared, or this
-- node's tables hold what its copy of billing.cluster_catalog holds). The
-- C catalog reader asks each time it loads the prices (src/pg/catalog_cache.cpp)
-- and fails the query when this is not NULL: a worker whose prices were
-- changed on it alone, restored from an older backup, or added to the
-- cluster without billing.citus_share_catalog() would otherwise price its
-- shards with its own catalog and the coordinator add them up without a
-- word. Rows are compared as rows (jsonb would compare timestamps in the
-- time zone of the session that wrote them).
CREATE FUNCTION billing._catalog_divergence() RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    copy regclass;
    c record;
BEGIN
    IF NOT billing._catalog_shared() THEN
        RETURN NULL;
    END IF;
    -- This node's copy, read as the plain table it is here: inside a shard
    -- query Citus refuses a query on the reference table itself.
    EXECUTE $q$SELECT pg_catalog.to_regclass(pg_catalog.shard_name(s.logicalrelid, s.shardid))
                 FROM pg_catalog.pg_dist_shard AS s
                WHERE s.logicalrelid = 'billing.cluster_catalog'::pg_catalog.regclass$q$
       INTO copy;
    IF copy IS NULL THEN
        IF billing._citus_coordinator() THEN
            RETURN NULL;   -- (its prices are the ones it sends)
        END IF;
        RETURN 'this node holds no copy of billing.cluster_catalog';
    END IF;
    EXECUTE format('SELECT model_prices, aws_prices, settings FROM %s', copy) INTO c;
    IF c.model_prices IS NULL THEN
        RETURN 'its copy of billing.cluster_catalog is empty';
    END IF;
    IF EXISTS (SELECT * FROM jsonb_populate_recordset(NULL::billing.model_prices, c.model_prices)
               EXCEPT ALL SELECT * FROM billing.model_prices)
       OR EXISTS (SELECT * FROM billing.model_prices
                  EXCEPT ALL SELECT * FROM jsonb_populate_recordset(NULL::billing.model_prices, c.model_prices)) THEN
        RETURN 'its billing.model_prices differ from the cluster''s';
    END IF;
    IF EXISTS (SELECT * FROM jsonb_populate_recordset(NULL::billing.aws_prices, c.aws_prices)
               EXCEPT ALL SELECT * FROM billing.aws_prices)
       OR EXISTS (SELECT * FROM billing.aws_prices
                  EXCEPT ALL SELECT * FROM jsonb_populate_recordset(NULL::billing.aws_prices, c.aws_prices)) THEN
        RETURN 'its billing.aws_prices differ from the cluster''s';
    END IF;
    IF EXISTS (SELECT * FROM jsonb_populate_recordset(NULL::billing.settings, c.settings)
               EXCEPT ALL SELECT * FROM billing.settings)
       OR EXISTS (SELECT * FROM billing.settings
                  EXCEPT ALL SELECT * FROM jsonb_populate_recordset(NULL::billing.settings, c.settings)) THEN
        RETURN 'its billing.settings differ from the cluster''s';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION billing._catalog_divergence() FROM PUBLIC;
ALTER FUNCTION billing._catalog_divergence() SECURITY DEFINER;   -- (read for every role that prices)

-- Trigger functions of local tables that Citus copied to the workers and
-- left there: create_distributed_table of a tracked table copies the
-- table's trigger function (billing.track_N) to every worker before it
-- refuses the table (its trigger depends on an extension), and does not
-- take the copies back. They belong to no extension on the workers, so
-- DROP EXTENSION billing left them in the workers' schema billing, and
-- CREATE EXTENSION billing then refused that schema as not empty. They are
-- dropped from the workers with the extension.
CREATE FUNCTION billing._citus_leftovers_dropped() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_query() !~* E'\\mbilling\\M' OR NOT billing._citus_coordinator() THEN
        RETURN;
    END IF;
    EXECUTE $q$SELECT pg_catalog.run_command_on_workers($c$
        DO $d$
        DECLARE
            f regprocedure;
        BEGIN
            FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc AS p
                      WHERE p.pronamespace = pg_catalog.to_regnamespace('billing')
                        AND p.proname ~ '^track_[0-9]+(_full)?$'
                        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS d
                                         WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                                           AND d.objid = p.oid AND d.deptype = 'e') LOOP
                EXECUTE pg_catalog.format('DROP FUNCTION %s CASCADE', f);
            END LOOP;
        END
        $d$ $c$)$q$;
END
$$;
CREATE EVENT TRIGGER billing_citus_leftovers_dropped ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION billing._citus_leftovers_dropped();
REVOKE ALL ON FUNCTION billing._citus_leftovers_dropped() FROM PUBLIC;

-- ==== One OpenAI card for both dashboards (src/sql/dashboard.sql) ====

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

-- ==== Citus: companion tables found by billing._citus_companion (src/sql/citus.sql) ====

-- After a backfill of tracked table p_source (which recorded its estimates
-- and problem rows in estimated_prompts and problem_messages, on the
-- coordinator), moves them beside their messages: a distributed INSERT of
-- each row with its message's conversation (a frozen estimate already
-- there is kept, as ON CONFLICT DO NOTHING keeps it for a local table).
CREATE FUNCTION billing._citus_ship_recorded(t billing.tracked_tables) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record := billing._row_reader(t, 'm');
BEGIN
    EXECUTE format('WITH e AS MATERIALIZED (
                        SELECT message_id, prompt_tokens FROM billing.estimated_prompts WHERE source_id = $1)
                    INSERT INTO %s
                    SELECT m.%I, $1, e.message_id, e.prompt_tokens
                      FROM %s AS m JOIN e ON billing._key(%s) = e.message_id
                    ON CONFLICT (conversation, message_id) DO NOTHING',
                   billing._citus_companion(t.id, 'estimates'), t.conversation_column, t.relation, m.id)
        USING t.id;
    EXECUTE format('WITH p AS MATERIALIZED (
                        SELECT message_id, created_at, problem FROM billing.problem_messages WHERE source_id = $1)
                    INSERT INTO %s
                    SELECT m.%I, $1, p.message_id, p.created_at, p.problem
                      FROM %s AS m JOIN p ON billing._key(%s) = p.message_id
                    ON CONFLICT (conversation, message_id) DO NOTHING',
                   billing._citus_companion(t.id, 'problems'), t.conversation_column, t.relation, m.id)
        USING t.id;
    DELETE FROM billing.estimated_prompts WHERE source_id = t.id;
    DELETE FROM billing.problem_messages WHERE source_id = t.id;
END
$$;
REVOKE ALL ON FUNCTION billing._citus_ship_recorded(billing.tracked_tables) FROM PUBLIC;

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

-- ==== Citus: a node added while a distributed table is tracked (src/sql/citus.sql, tracking.sql) ====
-- The TRUNCATE trigger (billing._tracked_truncated, further down) acts on the
-- tracked table and its partitions only (Citus copies it to added nodes and
-- their shards), and untracking drops those copies
-- (billing._citus_drop_truncate_copies, further down).

-- The TRUNCATE trigger of a distributed table followed by its shards'
-- triggers: on the coordinator's copy of the table only (Citus runs a
-- TRUNCATE there too, and its trigger there), where it empties billing's
-- rows of the table and its distributed ledger, estimates and problems
-- (billing._tracked_truncated, _forget_rows). p_create false: dropped.
CREATE FUNCTION billing._citus_truncate_trigger(t billing.tracked_tables, p_create boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET citus.enable_ddl_propagation = off
SET billing.internal_ddl = on
AS $$
DECLARE
    failed text;
BEGIN
    IF p_create THEN
        EXECUTE format('CREATE TRIGGER billing_track_truncate AFTER TRUNCATE ON %s
                        FOR EACH STATEMENT EXECUTE FUNCTION billing._tracked_truncated(%s)', t.relation, t.id);
    ELSE
        IF EXISTS (SELECT 1 FROM pg_trigger AS g
                    WHERE g.tgrelid = t.relation AND g.tgname = 'billing_track_truncate'
                      AND g.tgfoid = 'billing._tracked_truncated()'::regprocedure) THEN
            PERFORM billing._drop_own_trigger('billing_track_truncate', t.relation);
        END IF;
        -- The copies Citus made on nodes added since (see below).
        FOR failed IN SELECT format('%s:%s: %s', w.nodename, w.nodeport, w.result)
                        FROM run_command_on_workers(format('SELECT billing._citus_drop_truncate_copies(%L)',
                                                           t.relation::text)) AS w
                       WHERE NOT w.success LOOP
            RAISE WARNING 'billing: could not drop the copies of the TRUNCATE trigger of table % on node %',
                          t.relation, failed
                USING HINT = format('They do nothing there; run SELECT billing._citus_drop_truncate_copies(%L) '
                                    'on that node before DROP EXTENSION billing.', t.relation::text);
        END LOOP;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION billing._citus_truncate_trigger(billing.tracked_tables, boolean) FROM PUBLIC;

-- ==== One read of the unmerged ledger per dashboard (src/sql/reads.sql, dashboard.sql) ====
-- billing._ledger_usage returns the named row type billing._ledger_group;
-- _usage_by_model and _top_conversations take its groups as an array.
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
CREATE OR REPLACE FUNCTION billing._usage_by_model(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (source_id smallint, month date, model text, messages bigint, prompt_tokens bigint,
               completion_tokens bigint, cached_tokens bigint, estimated_prompt bigint,
               estimated_completion bigint, unsplit_tokens bigint, problems bigint, cost numeric,
               estimated_cost numeric, unpriced_tokens bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM billing._usage_by_model(p_from, p_to, NULL)
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
CREATE OR REPLACE FUNCTION billing._top_conversations(p_from timestamptz, p_to timestamptz, p_limit integer)
RETURNS TABLE (conversation_id text, cost numeric, tokens bigint, messages bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM billing._top_conversations(p_from, p_to, p_limit, NULL)
$$;

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

-- On a worker: drops the copies of billing's TRUNCATE trigger of
-- distributed table p_table (named as on the coordinator) from its shell
-- and from its shards on this node; returns how many. billing puts that
-- trigger on the coordinator's copy of the table only, but Citus copies a
-- distributed table's triggers to a node added to the cluster later, and
-- to the shards it places there. There they do nothing
-- (billing._tracked_truncated acts on the tracked table only), yet they
-- would make DROP EXTENSION billing fail on that node. Run on every worker
-- by billing._citus_truncate_trigger when the table is untracked.
CREATE FUNCTION billing._citus_drop_truncate_copies(p_table text) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET citus.enable_ddl_propagation = off
SET citus.enable_manual_changes_to_shards = on
AS $$
DECLARE
    shell regclass := to_regclass(p_table);
    g record;
    dropped integer := 0;
BEGIN
    IF shell IS NULL THEN
        RETURN 0;
    END IF;
    FOR g IN SELECT tg.tgname, tg.tgrelid::regclass AS rel
               FROM pg_trigger AS tg
              WHERE tg.tgfoid = 'billing._tracked_truncated()'::regprocedure
                AND (tg.tgrelid = shell
                     -- (shard_name() qualifies the name unless the schema
                     -- is public, which this function's search_path leaves out)
                     OR tg.tgrelid IN (SELECT to_regclass(CASE WHEN c.relnamespace::regnamespace::text = 'public'
                                                               THEN 'public.' ELSE '' END
                                                          || shard_name(s.logicalrelid, s.shardid))
                                         FROM pg_dist_shard AS s JOIN pg_class AS c ON c.oid = s.logicalrelid
                                        WHERE s.logicalrelid = shell)) LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', g.tgname, g.rel);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;
REVOKE ALL ON FUNCTION billing._citus_drop_truncate_copies(text) FROM PUBLIC;

-- ==== Citus: the split cost aggregates' partial twins (src/sql/citus.sql, src/pg/citus_partials.cpp) ====
-- The partial twins of the cost aggregates, for Citus's workers: each is
-- what Citus's worker_partial_agg(<aggregate>, ...) computes for its
-- aggregate (the same transition function, state and initial value, the
-- state as text: to_cstring(<aggregate without its final function>)), so
-- that the coordinator's coord_combine_agg reads its result unchanged.
-- billing's planner hook plans a worker's worker_partial_agg call as its
-- twin (src/pg/citus_partials.cpp; setting billing.citus_partial_aggregates):
-- the native aggregate's cost per row instead of about twice it.
-- (Made below, with the catalog's version that their state carries.)

-- Citus: citus_share_catalog() says when the workers' sessions do not load billing (src/sql/citus.sql)
-- Whether every worker's new sessions load billing before they plan a
-- query (shared_preload_libraries or session_preload_libraries, as a new
-- session there sees them): where they do, billing's planner hook runs a
-- split cost aggregate as its partial twin (src/pg/citus_partials.cpp).
CREATE FUNCTION billing._citus_workers_load_billing() RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NOT EXISTS (
        SELECT 1
          FROM run_command_on_workers($q$SELECT current_setting('shared_preload_libraries') || ','
                                                || current_setting('session_preload_libraries')$q$) AS w
         WHERE w.success AND w.result !~ E'(^|[,/" ])billing(\\.so)?($|[," ])');
END
$$;
REVOKE ALL ON FUNCTION billing._citus_workers_load_billing() FROM PUBLIC;

-- The shared catalog's version (billing.cluster_catalog.version, and in
-- billing.catalog_state on each node): billing's partial twins stamp it on
-- the states a Citus worker sends, and cost_state_in, now STABLE, refuses
-- a state priced with another version than the reading query's snapshot
-- sees.
ALTER TABLE billing.catalog_state ADD COLUMN cluster_version bigint;
COMMENT ON TABLE billing.catalog_state IS
    'One row: the generation of the price catalog, renewed by every change to billing.model_prices or billing.aws_prices; on a Citus cluster sharing the catalog, the version of it this node holds.';
ALTER FUNCTION billing.cost_state_in(cstring) STABLE;

-- After each statement that changes the coordinator's prices or settings:
-- the new content goes to billing.cluster_catalog (and so to every node).
CREATE FUNCTION billing._catalog_sent() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    v bigint;
BEGIN
    IF billing._catalog_shared() AND billing._citus_coordinator() THEN
        s := billing._catalog_snapshot();
        v := nextval('billing.catalog_generation');   -- (Citus refuses a volatile call in the UPDATE)
        UPDATE billing.cluster_catalog
           SET model_prices = s.model_prices, aws_prices = s.aws_prices, settings = s.settings, version = v;
        UPDATE billing.catalog_state SET cluster_version = v;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER model_prices_sent AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON billing.model_prices
    FOR EACH STATEMENT EXECUTE FUNCTION billing._catalog_sent();
CREATE TRIGGER aws_prices_sent AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON billing.aws_prices
    FOR EACH STATEMENT EXECUTE FUNCTION billing._catalog_sent();
CREATE TRIGGER settings_sent AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON billing.settings
    FOR EACH STATEMENT EXECUTE FUNCTION billing._catalog_sent();

-- On a worker's copy of billing.cluster_catalog (Citus puts the trigger on
-- every node's copy): that worker's prices and settings become the
-- coordinator's. Their own triggers renew the worker's catalog generation.
CREATE FUNCTION billing._catalog_received() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF billing._citus_coordinator() THEN
        RETURN NULL;
    END IF;
    DELETE FROM billing.model_prices;
    INSERT INTO billing.model_prices
    SELECT * FROM jsonb_populate_recordset(NULL::billing.model_prices, NEW.model_prices);
    DELETE FROM billing.aws_prices;
    INSERT INTO billing.aws_prices
    SELECT * FROM jsonb_populate_recordset(NULL::billing.aws_prices, NEW.aws_prices);
    DELETE FROM billing.settings;
    INSERT INTO billing.settings
    SELECT * FROM jsonb_populate_recordset(NULL::billing.settings, NEW.settings);
    UPDATE billing.catalog_state SET cluster_version = NEW.version;
    RETURN NULL;
END
$$;

-- Makes the coordinator's catalog the cluster's (run once, on the
-- coordinator, after CREATE EXTENSION billing; again after adding a node).
-- Returns the number of nodes that hold it.
CREATE FUNCTION billing.citus_share_catalog() RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET citus.enable_unsafe_triggers = on
AS $$
DECLARE
    s record;
    nodes integer;
    v bigint;
BEGIN
    IF NOT billing._citus_coordinator() THEN
        RAISE EXCEPTION 'billing: citus_share_catalog() runs on the Citus coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run it on the coordinator of a Citus cluster (SELECT citus_is_coordinator()).';
    END IF;
    s := billing._catalog_snapshot();
    IF NOT billing._catalog_shared() THEN
        DROP TABLE IF EXISTS billing.cluster_catalog;   -- (one a restore brought back, not Citus's)
        CREATE TABLE billing.cluster_catalog (
            singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            model_prices jsonb NOT NULL,
            aws_prices   jsonb NOT NULL,
            settings     jsonb NOT NULL,
            version      bigint
        );
        COMMENT ON TABLE billing.cluster_catalog IS
            'The coordinator''s prices and settings (billing.citus_share_catalog()): a Citus reference table that every worker copies into its own.';
        INSERT INTO billing.cluster_catalog VALUES (true, s.model_prices, s.aws_prices, s.settings,
                                                    nextval('billing.catalog_generation'));
        CREATE TRIGGER cluster_catalog_received AFTER INSERT OR UPDATE ON billing.cluster_catalog
            FOR EACH ROW EXECUTE FUNCTION billing._catalog_received();
        PERFORM create_reference_table('billing.cluster_catalog');
    ELSE
        -- (to a node added since; block_writes: the catalog is one row, and
        -- Citus's default would need wal_level = logical)
        PERFORM replicate_reference_tables('block_writes');
    END IF;
    -- Written again once it is on every node: each worker takes it in.
    v := nextval('billing.catalog_generation');
    UPDATE billing.cluster_catalog
       SET model_prices = s.model_prices, aws_prices = s.aws_prices, settings = s.settings, version = v;
    UPDATE billing.catalog_state SET cluster_version = v;
    EXECUTE 'SELECT count(DISTINCT groupid)::integer FROM pg_catalog.pg_dist_placement AS p
               JOIN pg_catalog.pg_dist_shard AS s USING (shardid)
              WHERE s.logicalrelid = ''billing.cluster_catalog''::regclass' INTO nodes;
    -- A worker whose sessions do not load billing runs a split cost
    -- aggregate through Citus's worker_partial_agg, not billing's partial
    -- twin (src/pg/citus_partials.cpp): said once here, at set-up.
    IF NOT billing._citus_workers_load_billing() THEN
        RAISE NOTICE 'billing: the workers'' sessions do not load billing, so a split cost aggregate runs there through Citus''s worker_partial_agg, at about twice the cost per row'
            USING HINT = 'Add billing to shared_preload_libraries on each worker, or run on each worker: BEGIN; '
                         'SET LOCAL citus.enable_ddl_propagation = off; ALTER DATABASE <database> SET '
                         'session_preload_libraries = ''billing''; COMMIT; (README "Citus")';
    END IF;
    RETURN nodes;
END
$$;
COMMENT ON FUNCTION billing.citus_share_catalog() IS
    'On a Citus coordinator: makes its prices and settings the cluster''s, changed on every node in the same transaction from then on. Returns the number of nodes that hold them.';

-- Undoes citus_share_catalog() (DROP EXTENSION billing needs it first, or
-- CASCADE): every node keeps its tables as they are.
CREATE FUNCTION billing.citus_unshare_catalog() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF billing._catalog_shared() THEN
        -- (each worker's copy tells its billing.catalog_state, in this
        -- transaction, that the catalog is no longer shared)
        UPDATE billing.cluster_catalog SET version = NULL;
    END IF;
    UPDATE billing.catalog_state SET cluster_version = NULL;
    DROP TABLE IF EXISTS billing.cluster_catalog;
END
$$;
COMMENT ON FUNCTION billing.citus_unshare_catalog() IS
    'On a Citus coordinator: stops sharing its prices and settings with the workers (before DROP EXTENSION billing).';

REVOKE ALL ON FUNCTION billing._catalog_sent(), billing._catalog_received(), billing.citus_share_catalog(),
    billing.citus_unshare_catalog() FROM PUBLIC;
ALTER FUNCTION billing._catalog_sent() SECURITY DEFINER;
ALTER FUNCTION billing._catalog_received() SECURITY DEFINER;

-- C body: src/pg/cost_state_type.cpp (cost_state_stamped_out)
CREATE FUNCTION billing._citus_partial_state_out(billing.cost_state) RETURNS cstring
AS 'MODULE_PATHNAME', 'cost_state_stamped_out'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- The partial twins (see above), their state stamped with the catalog's version.
CREATE AGGREGATE billing._citus_partial_openai_cost(text, bigint, bigint) (
    SFUNC = billing.openai_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing._citus_partial_state_out, PARALLEL = SAFE);
CREATE AGGREGATE billing._citus_partial_openai_cost(text, bigint, bigint, timestamptz) (
    SFUNC = billing.openai_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing._citus_partial_state_out, PARALLEL = SAFE);
CREATE AGGREGATE billing._citus_partial_openai_cost(jsonb) (
    SFUNC = billing.openai_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing._citus_partial_state_out, PARALLEL = SAFE);
CREATE AGGREGATE billing._citus_partial_openai_cost(jsonb, timestamptz) (
    SFUNC = billing.openai_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing._citus_partial_state_out, PARALLEL = SAFE);
CREATE AGGREGATE billing._citus_partial_aws_cost(text, numeric) (
    SFUNC = billing.aws_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing._citus_partial_state_out, PARALLEL = SAFE);
CREATE AGGREGATE billing._citus_partial_aws_cost(text, numeric, timestamptz) (
    SFUNC = billing.aws_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing._citus_partial_state_out, PARALLEL = SAFE);

-- Merges of a distributed ledger that survive Citus's two-phase commit
-- (billing.ledger_merges): merge() marks the rows it takes with its epoch
-- instead of deleting them, the reads leave out the epochs their snapshot
-- sees merged and fail on a row a merge is committing on its worker.
CREATE SEQUENCE billing.ledger_merge_epoch;
CREATE TABLE billing.ledger_merges (
    source_id smallint NOT NULL,
    epoch     bigint   NOT NULL,
    state     text     NOT NULL CHECK (state IN ('merged', 'purged')),
    xact      xid8     NOT NULL,   -- the transaction that set the state
    PRIMARY KEY (source_id, epoch)
);
COMMENT ON TABLE billing.ledger_merges IS
    'The merges whose rows are still in the distributed ledgers of tracked Citus tables, marked with their epoch: the reads leave them out.';
GRANT SELECT ON billing.ledger_merges TO PUBLIC;   -- (the reads run as their caller; epochs only)
CREATE FUNCTION billing._xact_committed(xid) RETURNS boolean
AS 'MODULE_PATHNAME', 'xact_committed' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE FUNCTION billing._xact_before_every_snapshot(xid8, regclass) RETURNS boolean
AS 'MODULE_PATHNAME', 'xact_before_every_snapshot' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

-- Whether transaction x, which this shard query does not see, may be
-- one the coordinator sees: x is prepared on this node (Citus's two-phase
-- commit ends on the workers after the coordinator commits), or run by
-- another backend of this node in the caller's own Citus distributed
-- transaction (another of the coordinator's connections to this node). As
-- the caller: that connection is the caller's own, whose transaction id
-- pg_stat_activity shows it.
CREATE FUNCTION billing._citus_xact_unseen(x xid) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found boolean;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_xacts AS p WHERE p.transaction = x) THEN
        RETURN true;
    END IF;
    EXECUTE $q$
        SELECT EXISTS (
            SELECT 1 FROM pg_catalog.pg_stat_activity AS a
              JOIN pg_catalog.get_all_active_transactions() AS t ON t.process_id = a.pid
             CROSS JOIN pg_catalog.get_current_transaction_id() AS me
             WHERE a.backend_xid = $1 AND a.pid <> pg_catalog.pg_backend_pid()
               AND me.transaction_number <> 0
               AND t.transaction_number = me.transaction_number
               AND t.transaction_stamp = me.transaction_stamp)$q$
       INTO found USING x;
    RETURN found;
END
$$;

-- Whether this worker's catalog, as this shard query sees it, may not be
-- the coordinator's: the row of billing.catalog_state it reads has an
-- updater (x, its xmax) that is
-- - a prepared transaction: a change the coordinator may have committed
--   already (Citus's two-phase commit ends on the workers after it), or
-- - a backend of this same distributed transaction: a change made earlier
--   in it, over another of the coordinator's connections to this worker,
--   which this one does not see.
-- Another transaction's change still in progress is no such case: the
-- coordinator does not see it either. The C catalog reader fails the query
-- when this is true (src/pg/catalog_cache.cpp). Only for a shared catalog,
-- on a worker; it is not even called while the row has no updater.
CREATE FUNCTION billing._catalog_in_flux(x xid) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF x = '0'::xid OR NOT billing._catalog_shared() OR billing._citus_coordinator() THEN
        RETURN false;
    END IF;
    RETURN billing._citus_xact_unseen(x);
END
$$;

CREATE FUNCTION billing._citus_ledger_row_settled(x xid) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF billing._xact_committed(x) OR billing._citus_xact_unseen(x) THEN
        RAISE EXCEPTION 'billing: a merge of this ledger is committing on this node'
            USING ERRCODE = 'serialization_failure',
                  DETAIL = 'Citus commits a merge on the coordinator first, then on each worker: this query '
                           'could count the write twice, and fails instead.',
                  HINT = 'Run the query again.';
    END IF;
    RETURN true;
END
$$;

-- Sets up the shards' triggers of a distributed table (see "A distributed
-- table tracked by its shards' triggers", above), or returns why it cannot
-- (the table is then tracked by recomputation).
CREATE FUNCTION billing._citus_set_up_triggers(t billing.tracked_tables) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET citus.enable_unsafe_triggers = on
SET billing.internal_ddl = on
AS $$
DECLARE
    refusal text := billing._citus_trigger_refusal(t);
    conv_type text;
    ledger text := format('billing.%I', 'citus_ledger_' || t.id);
    estimates text := format('billing.%I', 'citus_estimates_' || t.id);
    problems text := format('billing.%I', 'citus_problems_' || t.id);
    fn text := billing._trigger_function_name(t.id, distributed => true);
    readable text;
    x text;
BEGIN
    IF refusal IS NOT NULL THEN
        RETURN refusal;
    END IF;
    -- The trigger functions first: Citus creates them on every node, which it
    -- refuses after a parallel operation on a distributed table in the
    -- same transaction (create_distributed_table below).
    PERFORM billing._citus_create_trigger_functions(t);
    -- The conversation in the messages' own type and collation: Citus
    -- co-locates only columns of the same type.
    SELECT format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attcollation <> 0 THEN ' COLLATE ' || (SELECT format('%I.%I', n.nspname, c.collname)
                                                                    FROM pg_collation AS c
                                                                    JOIN pg_namespace AS n ON n.oid = c.collnamespace
                                                                   WHERE c.oid = a.attcollation)
                   ELSE '' END
      INTO conv_type
      FROM pg_attribute AS a WHERE a.attrelid = t.relation AND a.attname = t.conversation_column;
    -- (merged_by: the epoch of the merge that took the row in, NULL until
    -- then: billing.ledger_merges)
    EXECUTE format('CREATE TABLE %s (conversation %s NOT NULL, LIKE billing.usage_ledger, merged_by bigint)',
                   ledger, conv_type);
    EXECUTE format('CREATE TABLE %s (conversation %s NOT NULL, source_id smallint NOT NULL, message_id text NOT NULL,
                                     prompt_tokens bigint NOT NULL, PRIMARY KEY (conversation, message_id))',
                   estimates, conv_type);
    EXECUTE format('CREATE TABLE %s (conversation %s NOT NULL, source_id smallint NOT NULL, message_id text NOT NULL,
                                     created_at timestamptz, problem text NOT NULL,
                                     PRIMARY KEY (conversation, message_id))', problems, conv_type);
    -- Readable as billing.usage_ledger, estimated_prompts and problem_messages
    -- are: by a role that may read the tracked table (checked by its name:
    -- the policy runs on the workers too, whose OIDs differ).
    readable := format('pg_catalog.has_table_privilege(%L, ''SELECT'')', t.relation::text);
    FOREACH x IN ARRAY ARRAY[ledger, estimates, problems] LOOP
        EXECUTE format('COMMENT ON TABLE %s IS %L', x,
                       format('billing: %s of tracked distributed table %s (billing.untrack_messages drops it).',
                              CASE x WHEN ledger THEN 'the unmerged writes' WHEN estimates THEN 'the frozen prompt estimates'
                                     ELSE 'the problem rows' END, t.relation));
        EXECUTE format('SELECT create_distributed_table(%L, ''conversation'', colocate_with => %L)', x, t.relation::text);
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', x);
        EXECUTE format('CREATE POLICY readers ON %s FOR SELECT USING (%s)', x, readable);
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', x);
        EXECUTE format('GRANT SELECT ON %s TO PUBLIC', x);
    END LOOP;
    EXECUTE format('CREATE TRIGGER billing_track AFTER INSERT OR DELETE OR UPDATE OF %I, %I, %I, %I, %I, %I ON %s
                    FOR EACH ROW EXECUTE FUNCTION %s()',
                   t.id_column, t.conversation_column, t.role_column, t.content_column, t.data_column,
                   t.created_at_column, t.relation, fn);
    PERFORM billing._citus_truncate_trigger(t, true);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION billing._citus_set_up_triggers(billing.tracked_tables) FROM PUBLIC;

-- Drops what _citus_set_up_triggers made for tracked table p_source (the
-- trigger goes with its function, on the table and on every shard).
CREATE FUNCTION billing._citus_drop_triggers(p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
DECLARE
    fn regprocedure;
    t billing.tracked_tables;
    x text;
    companion regclass;
BEGIN
    SELECT * INTO t FROM billing.tracked_tables AS tt WHERE tt.id = p_source;
    IF FOUND AND billing._citus_triggered(p_source) THEN
        PERFORM billing._citus_truncate_trigger(t, false);
    END IF;
    FOREACH fn IN ARRAY ARRAY[billing._trigger_function(p_source, distributed => true),
                              billing._trigger_function(p_source, full_body => true, distributed => true)] LOOP
        IF fn IS NOT NULL THEN
            EXECUTE format('DROP FUNCTION %s CASCADE', fn);
        END IF;
    END LOOP;
    FOREACH x IN ARRAY ARRAY['ledger', 'estimates', 'problems'] LOOP
        companion := billing._citus_companion(p_source, x);
        IF companion IS NOT NULL THEN
            EXECUTE format('DROP TABLE %s', companion);
        END IF;
    END LOOP;
    DELETE FROM billing.ledger_merges WHERE source_id = p_source;
END
$$;
REVOKE ALL ON FUNCTION billing._citus_drop_triggers(smallint) FROM PUBLIC;

CREATE FUNCTION billing._citus_retire_ledger(p_source smallint) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ledger regclass := billing._citus_companion(p_source, 'ledger');
    epoch bigint := nextval('billing.ledger_merge_epoch');
BEGIN
    IF ledger IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('UPDATE %s AS l SET merged_by = $1 WHERE l.merged_by IS NULL', ledger) USING epoch;
    INSERT INTO billing.ledger_merges VALUES (p_source, epoch, 'merged', pg_current_xact_id());
END
$$;

REVOKE ALL ON FUNCTION billing._citus_retire_ledger(smallint) FROM PUBLIC;

-- Takes tracked table p_source's distributed ledger into billing.usage_ledger
-- in the caller's transaction (merge() then folds it into the rollups with
-- the local ledger): one distributed UPDATE ... RETURNING marks the rows not
-- yet merged with a new epoch and sends them here, where the epoch is
-- recorded in billing.ledger_merges (each row is taken once; a write
-- committed meanwhile stays for the next merge). Before that, it deletes
-- the rows of epochs every snapshot here sees merged, and forgets the
-- epochs an earlier merge deleted (see billing.ledger_merges). With p_lock,
-- first a SHARE lock on the table, which Citus takes on every shard: no
-- write can come until the transaction ends (the rebuild of a stale month,
-- which reads the table then). Returns the rows taken.
CREATE FUNCTION billing._citus_take_ledger(p_source smallint, p_lock boolean) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ledger regclass := billing._citus_companion(p_source, 'ledger');
    purged bigint[];
    epoch bigint;
    moved bigint;
BEGIN
    IF ledger IS NULL THEN
        RETURN 0;   -- (not followed by its shards' triggers: no ledger of its own)
    END IF;
    IF p_lock THEN
        EXECUTE format('LOCK TABLE %s IN SHARE MODE', (SELECT t.relation FROM billing.tracked_tables AS t
                                                         WHERE t.id = p_source));
    END IF;
    -- (their rows left every worker when that merge committed)
    DELETE FROM billing.ledger_merges AS m
     WHERE m.source_id = p_source AND m.state = 'purged' AND m.xact <> pg_current_xact_id();
    WITH gone AS (
        UPDATE billing.ledger_merges AS m SET state = 'purged', xact = pg_current_xact_id()
         WHERE m.source_id = p_source AND m.state = 'merged'
           AND billing._xact_before_every_snapshot(m.xact, 'billing.ledger_merges')
        RETURNING m.epoch
    )
    SELECT array_agg(g.epoch) INTO purged FROM gone AS g;
    IF purged IS NOT NULL THEN
        EXECUTE format('DELETE FROM %s AS l WHERE l.merged_by = ANY ($1)', ledger) USING purged;
    END IF;
    epoch := nextval('billing.ledger_merge_epoch');
    EXECUTE format('WITH moved AS (
                        UPDATE %s AS l SET merged_by = $1
                         WHERE l.merged_by IS NULL
                        RETURNING l.source_id, l.conversation_id, l.created_at, l.model, l.messages, l.prompt_tokens,
                                  l.completion_tokens, l.cached_tokens, l.estimated_prompt, l.estimated_completion,
                                  l.unsplit_tokens, l.problems)
                    INSERT INTO billing.usage_ledger SELECT * FROM moved', ledger)
        USING epoch;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        INSERT INTO billing.ledger_merges VALUES (p_source, epoch, 'merged', pg_current_xact_id());
    END IF;
    RETURN moved;
END
$$;
REVOKE ALL ON FUNCTION billing._citus_take_ledger(smallint, boolean) FROM PUBLIC;

-- Takes in a tracked table's existing rows: the estimates of replies stored
-- without usage, the rows with problems, then every month.
CREATE OR REPLACE FUNCTION billing._backfill(p_source smallint) RETURNS void
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

-- Deletes the rows of source p_source from billing's table p_table, the
-- newest committed ones under REPEATABLE READ or SERIALIZABLE too (a plain
-- DELETE there leaves those committed after the transaction's snapshot:
-- an app's insert a TRUNCATE waited for, a month a merge wrote). How many.
-- C body: src/pg/delete_source_rows.cpp
CREATE FUNCTION billing._delete_source_rows(p_table regclass, p_source smallint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'delete_source_rows' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION billing._delete_source_rows(regclass, smallint) FROM PUBLIC;

-- Everything billing stored about a tracked table's rows.
CREATE OR REPLACE FUNCTION billing._forget_rows(p_source smallint) RETURNS void
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


-- Partitions attached, detached, truncated alone or dropped move rows that
-- no row trigger sees: the tracked table is then taken in anew
-- (billing._take_in_anew), and every partition carries the TRUNCATE
-- trigger (billing._partition_truncate_triggers), the partitions of tables
-- tracked before this change included.
CREATE FUNCTION billing._ddl_moves_partitions(pg_ddl_command) RETURNS boolean
AS 'MODULE_PATHNAME', 'ddl_moves_partitions' LANGUAGE C STRICT STABLE;

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

-- The TRUNCATE trigger of tracked table TG_ARGV[0]: what billing stored
-- about the table goes with its rows. On one of its partitions, truncated
-- alone, the table is taken in anew (billing._take_in_anew). Only on
-- the tracked table and its partitions:
-- Citus copies a distributed table's triggers, this one too, to a node it
-- adds later and to the shards it places there, where a TRUNCATE fires the
-- copy for a shard (there is nothing of the table's to forget on a worker,
-- and forgetting it there would run a distributed query from a shard).
CREATE OR REPLACE FUNCTION billing._tracked_truncated() RETURNS trigger
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
ALTER FUNCTION billing._tracked_truncated() SECURITY DEFINER;

REVOKE ALL ON FUNCTION billing._take_in_anew(smallint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._ddl_moves_partitions(pg_ddl_command) FROM PUBLIC;

DO $$
DECLARE
    t billing.tracked_tables;
BEGIN
    FOR t IN SELECT * FROM billing.tracked_tables ORDER BY id LOOP
        PERFORM billing._partition_truncate_triggers(t);
    END LOOP;
END
$$;

-- Relations whose writes the triggers would not all see are refused when
-- tracked; a disabled trigger has billing read the table itself; rows
-- loaded without the trigger are taken in by billing.rebuild_messages();
-- a reader subject to a tracked table's row-level security reads none of its costs.
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
REVOKE ALL ON FUNCTION billing.rebuild_messages(regclass) FROM PUBLIC;

-- A role subject to a tracked table's own row-level security reads none of
-- its costs: the rollups sum every row of the table, whichever tenant's
-- they are, and a read of the table itself would show that role fewer rows
-- than the rollups it reads after a merge.
CREATE OR REPLACE VIEW billing._readable_tables WITH (security_invoker = true) AS
SELECT t.id FROM billing.tracked_tables AS t
 WHERE pg_catalog.has_table_privilege(t.relation, 'SELECT') AND NOT pg_catalog.row_security_active(t.relation);

-- The trigger of every UPDATE that changes a column billing reads,
-- whatever its SET list names: billing_track fires only for an UPDATE
-- that names one of them (PostgreSQL's rule for a column list), so a value
-- the app's BEFORE trigger sets would pass it. The C function (track_row)
-- leaves an UPDATE to this trigger where it exists; made only once the
-- table's function is that C function, which knows to (a table tracked by
-- 0.3 gets it at the first merge after the update, with its C function:
-- billing._refresh_trigger_functions). The columns are compared as text:
-- json has no equality, and every type billing reads has a text form.
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
REVOKE ALL ON FUNCTION billing._create_update_trigger(billing.tracked_tables) FROM PUBLIC;
ALTER FUNCTION billing._create_update_trigger(billing.tracked_tables) SET citus.enable_ddl_propagation = off;

------------------------------------------------------------------------------
-- Tracked profiles tables, in a table of their own: the shared trigger
-- function reads its settings there and records nothing for any other
-- table, so the owners of tracked profiles tables may be given EXECUTE on
-- it, which PostgreSQL requires of them to create or attach partitions.
------------------------------------------------------------------------------
-- The profiles tables billing.track_profiles follows, with the counter it
-- reads and the service it records. The shared trigger function reads its
-- settings here, not from its trigger's arguments, and records nothing for
-- a table that is not here nor a partition of one: so any role may create
-- a trigger with it (PostgreSQL requires that right of a table's owner when
-- it copies the trigger onto a new partition), and gains nothing by it.
CREATE TABLE billing.tracked_profiles (
    relation regclass PRIMARY KEY,
    counter  text     NOT NULL,
    service  text     NOT NULL
);
COMMENT ON TABLE billing.tracked_profiles IS
    'Profiles tables whose e-mail counter billing.track_profiles follows: the counter (a key of the jsonb column) and the service recorded.';
SELECT pg_catalog.pg_extension_config_dump('billing.tracked_profiles', '');

-- The tables 0.3 tracked with the shared function, their counter and
-- service from their trigger's arguments (partitions' copies left out).
DO $$
DECLARE
    g record;
    rest bytea;
    n integer;
    args text[];
BEGIN
    FOR g IN SELECT t.tgrelid::regclass AS relation, t.tgargs, t.tgnargs
               FROM pg_catalog.pg_trigger AS t
              WHERE t.tgparentid = 0   -- (by its function: 0.3 let its owner rename it)
                AND t.tgfoid = 'billing._profiles_counter_changed()'::regprocedure
              ORDER BY t.tgrelid LOOP
        CONTINUE WHEN g.tgnargs <> 2;
        rest := g.tgargs;
        args := ARRAY[]::text[];
        FOR i IN 1 .. g.tgnargs LOOP
            n := position('\x00'::bytea IN rest);
            args := args || convert_from(substring(rest FROM 1 FOR n - 1), getdatabaseencoding());
            rest := substring(rest FROM n + 1);
        END LOOP;
        -- (the service spelled as record_usage records it, as 0.4's
        -- track_profiles spells it: the e-mails 0.3 recorded as 'SES' are
        -- respelled below, with the actual figures)
        INSERT INTO billing.tracked_profiles
        VALUES (g.relation, args[1], coalesce(nullif(lower(btrim(args[2])), ''), 'unnamed')) ON CONFLICT DO NOTHING;
    END LOOP;
END
$$;
-- EXECUTE on the profiles trigger's function for the owners of the tracked
-- profiles tables, and for no one else but the function's owner.
-- PostgreSQL checks that right when it copies the trigger onto a partition
-- being created or attached, which only the table's owner may do; without
-- it the app's own migrations fail. The right gives nothing more: the
-- function records nothing for a table outside billing.tracked_profiles'
-- trees, and reads its settings from there. Run again by track_profiles,
-- untrack_profiles, ALTER TABLE on a tracked profiles table (OWNER TO) and
-- billing.merge() (REASSIGN OWNED, which no event trigger sees).
CREATE FUNCTION billing._grant_profiles_function() RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT billing._grant_execute_only('billing._profiles_counter_changed()'::regprocedure,
                                       ARRAY(SELECT DISTINCT o.owner FROM billing.tracked_profiles AS tp
                                              CROSS JOIN LATERAL unnest(billing._tree_owners(tp.relation)) AS o(owner)
                                              ORDER BY 1))
$$;
REVOKE ALL ON FUNCTION billing._grant_profiles_function() FROM PUBLIC;
ALTER FUNCTION billing._grant_profiles_function() SET citus.enable_ddl_propagation = off;
SELECT billing._grant_profiles_function();

-- TRUNCATE billing.settings is a change of settings too (every one back to
-- its default): the months are read anew, as after a DELETE.
DROP TRIGGER settings_changed ON billing.settings;
CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON billing.settings
    FOR EACH STATEMENT EXECUTE FUNCTION billing._settings_changed();


-- A deleted estimate_model row means the default, gpt-4o-mini, as a
-- deleted month_time_zone means UTC. Before, merge() priced its rows with
-- no estimate model at all, and lost them.
CREATE OR REPLACE FUNCTION billing._estimate_model() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((SELECT value FROM billing.settings WHERE name = 'estimate_model'), 'gpt-4o-mini') $$;

-- Budgets and their alerts, read as one customer: that customer's own only.
ALTER TABLE billing.budgets ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.budgets USING (true);
CREATE POLICY as_customer ON billing.budgets AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL
           OR (scope = 'customer' AND customer = billing.current_customer())
           OR (scope = 'conversation'
               AND billing._key(conversation_id) IN (SELECT c.conversation_id
                                                       FROM billing._customer_conversations(billing.current_customer(), false) AS c)));
ALTER TABLE billing.alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.alerts USING (true);
CREATE POLICY as_customer ON billing.alerts AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL OR customer = billing.current_customer());

-- After DDL on the table a customer source reads (its lookup table, or
-- the tracked table itself for track_message_customers), or on a parent
-- of it: a renamed column is followed (`new_names`: the names the command
-- gave, which replace the names that are gone). A source the command left
-- unreadable (a column of a type billing cannot read, a lookup key that is
-- no longer unique) gets a WARNING: reads of customers would fail on it,
-- or bill a conversation twice. Never fails the command: a restore, say,
-- adds a lookup's constraints one by one. (A column billing reads is not
-- dropped: billing._tracked_table_dropped refuses it.)
CREATE FUNCTION billing._customer_source_altered(p_source smallint, new_names name[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s billing.customer_sources;
    present name[];
    fresh name;
BEGIN
    SELECT * INTO s FROM billing.customer_sources AS c WHERE c.source_id = p_source;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    present := ARRAY(SELECT a.attname FROM pg_attribute AS a
                      WHERE a.attrelid = s.lookup AND a.attnum > 0 AND NOT a.attisdropped);
    fresh := (SELECT n FROM unnest(new_names) AS n WHERE n = ANY (present) LIMIT 1);
    IF fresh IS NOT NULL AND NOT (s.lookup_key = ANY (present) AND s.customer_column = ANY (present)) THEN
        UPDATE billing.customer_sources AS c
           SET lookup_key = CASE WHEN s.lookup_key = ANY (present) THEN s.lookup_key ELSE fresh END,
               customer_column = CASE WHEN s.customer_column = ANY (present) THEN s.customer_column ELSE fresh END
         WHERE c.source_id = p_source
        RETURNING * INTO s;
    END IF;
    BEGIN
        PERFORM billing._column_reader(s.lookup, s.lookup_key, 'conversation', 'c');
        IF s.customer_member IS NULL THEN
            PERFORM billing._column_reader(s.lookup, s.customer_column, 'customer', 'c');
        END IF;
        IF NOT s.per_message AND NOT billing._unique_key(s.lookup, s.lookup_key) THEN
            RAISE EXCEPTION 'column % is not unique, so it cannot give one customer per conversation',
                            quote_ident(s.lookup_key);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'billing: % gives the customers of tracked table %, and %', s.lookup,
                      (SELECT t.relation FROM billing.tracked_tables AS t WHERE t.id = p_source),
                      regexp_replace(SQLERRM, '^billing: ', '')
            USING HINT = 'Reads of customers fail (or count twice) until billing.track_customers() or track_message_customers() names a readable source again.';
    END;
END
$$;
REVOKE ALL ON FUNCTION billing._customer_source_altered(smallint, name[]) FROM PUBLIC;

------------------------------------------------------------------------------
-- billing's triggers keep their names and functions; one customer source
-- that cannot be read no longer stops other reads; rights on trigger
-- functions for every owner of a partitioned table of a tracked tree
------------------------------------------------------------------------------

-- Why trigger `g`, on a table of a tracked tree, is not one of billing's
-- triggers as billing makes it (NULL: it is, or it is none of billing's;
-- p_altered: after an ALTER TRIGGER). billing's trigger names call billing's
-- matching function, fire as billing made them fire (a condition or a
-- narrower column list would let writes pass unbilled), and keep their
-- dependency on the extension (DROP EXTENSION billing takes them); billing's
-- functions are called by those triggers alone (another trigger would bill
-- each write twice). A new trigger can be billing's under these rules only
-- when a restore makes it (billing refuses renames, replacements and drops
-- of its own); the update trigger's condition is not compared, as it is
-- made only where none is.
CREATE FUNCTION billing._unsound_trigger(g pg_catalog.pg_trigger, p_altered boolean) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid smallint := billing._tracked_tree_of(g.tgrelid);
    t billing.tracked_tables;
    row_fns oid[];
    profiles boolean := billing._in_tracked_profiles_tree(g.tgrelid);
    billings boolean := (SELECT p.pronamespace = 'billing'::regnamespace FROM pg_proc AS p WHERE p.oid = g.tgfoid);
    named boolean := g.tgname IN ('billing_track', 'billing_track_update', 'billing_track_truncate',
                                  'billing_track_profiles');
BEGIN
    IF NOT (named OR billings) OR (sid IS NULL AND NOT profiles) THEN
        RETURN NULL;
    END IF;
    IF NOT named THEN
        RETURN 'billing''s trigger functions are called by billing''s own triggers alone';
    END IF;
    IF p_altered AND g.tgparentid = 0
       AND NOT EXISTS (SELECT 1 FROM pg_depend AS d
                        WHERE d.classid = 'pg_trigger'::regclass AND d.objid = g.oid
                          AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'x') THEN
        RETURN 'billing''s triggers depend on the extension, so that DROP EXTENSION billing takes them';
    END IF;
    IF sid IS NOT NULL THEN
        SELECT tt.* INTO t FROM billing.tracked_tables AS tt WHERE tt.id = sid;
        row_fns := ARRAY[billing._trigger_function(sid),
                         billing._trigger_function(sid, distributed => true)]::oid[];
    END IF;
    CASE g.tgname
    WHEN 'billing_track' THEN
        IF sid IS NULL OR g.tgfoid <> ALL (row_fns) OR g.tgtype <> 29 OR g.tgqual IS NOT NULL OR g.tgnargs <> 0
           OR ARRAY(SELECT x FROM unnest(g.tgattr::int2[]) AS x ORDER BY 1)
              <> ARRAY(SELECT a.attnum FROM pg_attribute AS a
                        WHERE a.attrelid = g.tgrelid AND NOT a.attisdropped
                          AND a.attname IN (t.id_column, t.conversation_column, t.role_column, t.content_column,
                                            t.data_column, t.created_at_column)
                        ORDER BY 1) THEN
            RETURN 'billing_track calls the table''s billing.track_N() after each INSERT, DELETE and UPDATE of the columns billing reads, with no condition';
        END IF;
    WHEN 'billing_track_update' THEN
        IF sid IS NULL OR g.tgfoid <> ALL (row_fns) OR g.tgtype <> 17 OR g.tgnargs <> 0
           OR cardinality(g.tgattr::int2[]) <> 0 OR g.tgqual IS NULL THEN
            RETURN 'billing_track_update calls the table''s billing.track_N() after each UPDATE that changes a column billing reads';
        END IF;
    WHEN 'billing_track_truncate' THEN
        IF sid IS NULL OR NOT billing._is_truncate_trigger(g, sid) OR g.tgtype <> 32 OR g.tgqual IS NOT NULL THEN
            RETURN 'billing_track_truncate calls billing._tracked_truncated(N) after each TRUNCATE';
        END IF;
    ELSE   -- billing_track_profiles
        IF NOT profiles OR NOT billings OR g.tgtype <> 21 OR g.tgqual IS NOT NULL
           OR cardinality(g.tgattr::int2[]) <> 1 THEN
            RETURN 'billing_track_profiles calls billing._profiles_counter_changed() after each INSERT and UPDATE of the profiles'' data column, with no condition';
        END IF;
    END CASE;
    RETURN NULL;
END
$$;

-- billing's triggers on a tracked table keep their names, their functions
-- and how they fire (billing._unsound_trigger): the drop guard above knows
-- them by name and by function, and a renamed, narrowed or replaced one
-- would let the table's writes go unbilled without a word. CREATE TRIGGER
-- and ALTER TRIGGER that leave one otherwise are refused, unless billing
-- itself makes the change (billing.internal_ddl); CREATE OR REPLACE of one
-- of billing's is refused before it runs (billing._trigger_replace_guard).
CREATE FUNCTION billing._tracked_trigger_changed() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    why text;
BEGIN
    IF billing._internal_ddl() THEN
        RETURN;
    END IF;
    FOR d IN SELECT g AS trig, g.tgname, g.tgrelid::regclass AS relation, c.command_tag
               FROM pg_event_trigger_ddl_commands() AS c
               JOIN pg_trigger AS g ON g.oid = c.objid
              WHERE c.classid = 'pg_trigger'::regclass
              ORDER BY g.oid LOOP
        why := billing._unsound_trigger(d.trig, d.command_tag = 'ALTER TRIGGER');
        IF why IS NOT NULL THEN
            RAISE EXCEPTION 'billing: % would leave trigger % on tracked table % other than billing made it: %',
                            d.command_tag, d.tgname, d.relation, why
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'To stop billing a table, untrack it: billing.untrack_messages() or billing.untrack_profiles().';
        END IF;
    END LOOP;
    -- (a restore makes billing's triggers after its tables' rows are back:
    -- the partitions of the tables they track are recorded then)
    PERFORM billing._record_partitions(t)
       FROM billing.tracked_tables AS t
      WHERE t.id IN (SELECT billing._tracked_tree_of(g.tgrelid)
                       FROM pg_event_trigger_ddl_commands() AS c JOIN pg_trigger AS g ON g.oid = c.objid
                      WHERE c.classid = 'pg_trigger'::regclass AND c.command_tag = 'CREATE TRIGGER');
END
$$;
CREATE EVENT TRIGGER billing_tracked_trigger_changed ON ddl_command_end
    WHEN TAG IN ('ALTER TRIGGER', 'CREATE TRIGGER')
    EXECUTE FUNCTION billing._tracked_trigger_changed();
REVOKE ALL ON FUNCTION billing._tracked_trigger_changed() FROM PUBLIC;

-- Whether the caller's reads of customers use source `s`: its tracked
-- table readable by the caller (billing._may_read_table), its lookup still
-- there. A lookup the caller may not read, or a column billing cannot read
-- (its type changed since track_customers), leaves the source out with a
-- WARNING that says what fixes it: its conversations then count as no
-- customer's, and every other source, budget and alert reads as before.
CREATE FUNCTION billing._readable_customer_source(s billing.customer_sources) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    -- (one warning per source and transaction: a read asks many times)
    warned text := coalesce(current_setting('billing_reads.unreadable_customer_sources', true), '');
    mark text := format('[%s]', s.source_id);
BEGIN
    SELECT tt.* INTO t FROM billing.tracked_tables AS tt WHERE tt.id = s.source_id;
    IF t.id IS NULL OR NOT billing._may_read_table(s.source_id)
       OR NOT EXISTS (SELECT 1 FROM pg_class AS r WHERE r.oid = s.lookup) THEN   -- (not dropped since)
        RETURN false;
    END IF;
    IF NOT has_table_privilege(s.lookup, 'SELECT') THEN
        IF strpos(warned, mark) = 0 THEN
            PERFORM set_config('billing_reads.unreadable_customer_sources', warned || mark, true);
            RAISE WARNING 'billing: role "%" may not read %, which gives the customers of tracked table %: its conversations count as no customer''s',
                          current_user, s.lookup, t.relation
                USING HINT = format('GRANT SELECT ON %s TO %I;', s.lookup, current_user);
        END IF;
        RETURN false;
    END IF;
    BEGIN
        PERFORM billing._check_customer_source(s, t);
    EXCEPTION WHEN datatype_mismatch OR undefined_column THEN
        IF strpos(warned, mark) = 0 THEN
            PERFORM set_config('billing_reads.unreadable_customer_sources', warned || mark, true);
            RAISE WARNING 'billing: the customers of tracked table % cannot be read, and its conversations count as no customer''s: %',
                          t.relation, regexp_replace(SQLERRM, '^billing: ', '')
                USING HINT = 'Change the column back to a type billing reads, or name the customers again with billing.track_customers() or billing.track_message_customers() (README "Customers").';
        END IF;
        RETURN false;
    END;
    RETURN true;
END
$$;

-- Raises, for the caller, the first reason a customer source of a table it
-- reads cannot be read (what billing._readable_customer_source warns of
-- and reads past): for statements, which are kept for good.
CREATE FUNCTION billing._require_customer_sources() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s billing.customer_sources;
    t billing.tracked_tables;
BEGIN
    FOR s IN SELECT cs.* FROM billing.customer_sources AS cs
              WHERE billing._may_read_table(cs.source_id)
                AND EXISTS (SELECT 1 FROM pg_class AS r WHERE r.oid = cs.lookup)
              ORDER BY cs.source_id LOOP
        SELECT tt.* INTO STRICT t FROM billing.tracked_tables AS tt WHERE tt.id = s.source_id;
        IF NOT has_table_privilege(s.lookup, 'SELECT') THEN
            RAISE EXCEPTION 'billing: role "%" may not read %, which gives the customers of tracked table %',
                            current_user, s.lookup, t.relation
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('GRANT SELECT ON %s TO %I;', s.lookup, current_user);
        END IF;
        PERFORM billing._check_customer_source(s, t);
    END LOOP;
END
$$;

-- The partitions of the tables tracked before this update.
SELECT billing._record_partitions(t) FROM billing.tracked_tables AS t
  JOIN pg_catalog.pg_class AS c ON c.oid = t.relation AND c.relkind = 'p'
 ORDER BY t.id;

-- A reader sees the customer sources and the profiles tables of the tables
-- it may read, no other table's name (as billing.tracked_tables shows it).
ALTER TABLE billing.customer_sources ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.customer_sources
    USING (source_id IN (SELECT r.id FROM billing._readable_tables AS r));
ALTER TABLE billing.tracked_profiles ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.tracked_profiles
    USING (pg_catalog.has_table_privilege(relation, 'SELECT'));
ALTER TABLE billing.profile_customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.profile_customers
    USING (pg_catalog.has_table_privilege(relation, 'SELECT'));

-- Whether trigger `p_trigger` is one of billing's (by its name or its
-- function) on a table of a tracked tree: for the guard below, which runs
-- as the role replacing it. SECURITY DEFINER: it reads billing's tables.
CREATE FUNCTION billing._billings_trigger(p_trigger oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_trigger AS g JOIN pg_proc AS p ON p.oid = g.tgfoid
         WHERE g.oid = p_trigger
           AND (p.pronamespace = 'billing'::regnamespace
                OR g.tgname IN ('billing_track', 'billing_track_update', 'billing_track_truncate', 'billing_track_profiles'))
           AND (billing._tracked_tree_of(g.tgrelid) IS NOT NULL OR billing._in_tracked_profiles_tree(g.tgrelid)))
$$;

-- CREATE OR REPLACE TRIGGER of one of billing's triggers on a tracked table
-- (billing._billings_trigger) is refused before it runs: a replacement keeps
-- the name and may keep the function, and only the statement says that it
-- replaces. C body: src/pg/ddl_command.cpp (trigger_replace_guard).
CREATE FUNCTION billing._trigger_replace_guard() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'trigger_replace_guard' LANGUAGE C;
CREATE EVENT TRIGGER billing_trigger_replaced ON ddl_command_start
    WHEN TAG IN ('CREATE TRIGGER')
    EXECUTE FUNCTION billing._trigger_replace_guard();
REVOKE ALL ON FUNCTION billing._billings_trigger(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._trigger_replace_guard() FROM PUBLIC;

-- billing's own trigger DDL passes its guards (billing.internal_ddl).
CREATE OR REPLACE FUNCTION billing._depend_on_extension(fn regprocedure, relation regclass, triggers name[])
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

CREATE OR REPLACE FUNCTION billing._create_profiles_trigger(relation regclass, data_column name, counter text, service text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER billing_track_profiles AFTER INSERT OR UPDATE OF %I ON %s
                    FOR EACH ROW EXECUTE FUNCTION billing._profiles_counter_changed(%L, %L)',
                   data_column, relation, counter, service);
    PERFORM billing._depend_on_extension(NULL, relation, ARRAY['billing_track_profiles']::name[]);
END
$$;

-- billing's triggers that 0.3 let their table's owner rename get their
-- names back (0.4 knows them by name and by function, and refuses renames).
DO $$
DECLARE
    g record;
BEGIN
    PERFORM pg_catalog.set_config('billing.internal_ddl', 'on', true);
    FOR g IN SELECT x.tgname, x.tgrelid::regclass AS relation, x.wanted
               FROM (SELECT tg.tgname, tg.tgrelid,
                            CASE WHEN tg.tgfoid = 'billing._profiles_counter_changed()'::regprocedure
                                      THEN 'billing_track_profiles'
                                 WHEN tg.tgfoid = 'billing._tracked_truncated()'::regprocedure
                                      THEN 'billing_track_truncate'
                                 WHEN t.id IS NOT NULL
                                      AND tg.tgfoid = pg_catalog.to_regprocedure(pg_catalog.format('billing.%I()', 'track_' || t.id))
                                      THEN 'billing_track' END AS wanted
                       FROM pg_catalog.pg_trigger AS tg
                       LEFT JOIN billing.tracked_tables AS t ON t.relation = tg.tgrelid::regclass
                      WHERE tg.tgparentid = 0 AND NOT tg.tgisinternal) AS x
              WHERE x.wanted IS NOT NULL AND x.tgname <> x.wanted
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS o WHERE o.tgrelid = x.tgrelid AND o.tgname = x.wanted)
              ORDER BY x.tgrelid, x.tgname LOOP
        EXECUTE pg_catalog.format('ALTER TRIGGER %I ON %s RENAME TO %I', g.tgname, g.relation, g.wanted);
    END LOOP;
    PERFORM pg_catalog.set_config('billing.internal_ddl', 'off', true);
END
$$;

REVOKE ALL ON FUNCTION billing._create_trigger(billing.tracked_tables) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._create_truncate_trigger(regclass, smallint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._fire_as_billing_track(regclass, name, smallint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._drop_trigger_functions(smallint) FROM PUBLIC;

-- Whether an ALTER TYPE renamed a value of an enum (RENAME VALUE).
-- C body: src/pg/ddl_command.cpp (ddl_renames_enum_value)
CREATE FUNCTION billing._ddl_renames_enum_value(pg_ddl_command) RETURNS boolean
AS 'MODULE_PATHNAME', 'ddl_renames_enum_value' LANGUAGE C STRICT STABLE;

-- ALTER TYPE ... RENAME VALUE of the enum a tracked table's role column
-- has: its rows now read another role ("bot" renamed "assistant" makes
-- replies of them, estimated when they carry no usage), and no row trigger
-- saw it. The table is taken in anew, as after any change its trigger
-- could not see.
CREATE FUNCTION billing._tracked_type_altered() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sid smallint;
BEGIN
    FOR sid IN SELECT DISTINCT t.id
                 FROM pg_event_trigger_ddl_commands() AS c
                 JOIN billing.tracked_tables AS t
                   ON billing._column_base_type(t.relation, t.role_column) = c.objid
                WHERE c.classid = 'pg_type'::regclass AND billing._ddl_renames_enum_value(c.command)
                ORDER BY t.id LOOP
        PERFORM billing._take_in_anew(sid);
    END LOOP;
END
$$;
CREATE EVENT TRIGGER billing_tracked_type_altered ON ddl_command_end
    WHEN TAG IN ('ALTER TYPE')
    EXECUTE FUNCTION billing._tracked_type_altered();

REVOKE ALL ON FUNCTION billing._tracked_type_altered() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._ddl_renames_enum_value(pg_ddl_command) FROM PUBLIC;

-- Raises (datatype_mismatch, undefined_column) when billing cannot read a
-- column that customer source `s` of tracked table `t` reads.
CREATE FUNCTION billing._check_customer_source(s billing.customer_sources, t billing.tracked_tables) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF s.per_message THEN
        PERFORM billing._message_customer_reader(s, t, false);
    ELSE
        PERFORM billing._column_reader(s.lookup, s.lookup_key, 'conversation', 'c');
        PERFORM billing._column_reader(s.lookup, s.customer_column, 'customer', 'c');
    END IF;
END
$$;

-- The limits of dashboard()'s arguments (also of its customer form,
-- customers.sql): at most 10,000 conversations and 1,200 months.
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

-- C body: src/pg/month.cpp (month_zone_text)
CREATE FUNCTION billing._month_zone_text(at timestamptz) RETURNS text
    AS 'MODULE_PATHNAME', 'month_zone_text' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing._month_zone_text(timestamptz) IS
    'A time as JSON shows it, in the month_time_zone setting''s zone with its offset, whatever the session''s TimeZone.';

-- ==== When merges last ran (src/sql/ledger_and_merge.sql, maintenance.sql) ====
-- Whether the periodic work runs: when the last merge() committed, and what
-- waits for the next one. The reads are exact without merges, so nothing
-- else shows that merges stopped (pg_cron down, a database renamed under
-- its jobs), while alerts and statements wait on them. Counts are of the
-- rows the caller may read (the ledger's row-level security).
CREATE VIEW billing.merge_status WITH (security_invoker = true) AS
SELECT l.last_merge_at,
       l.last_merge_rollups,
       (SELECT count(*) FROM billing.usage_ledger) AS unmerged_writes,
       (SELECT count(*) FROM billing.stale_months) AS stale_months,
       (SELECT count(*) FROM billing.tracked_tables WHERE NOT backfilled) AS tables_to_take_in
  FROM billing.merge_lock AS l;
COMMENT ON VIEW billing.merge_status IS
    'When billing.merge() last committed (last_merge_at, the start of its transaction; NULL: never in this database) and what waits for the next merge: ledger rows, stale months, tables to take in.';

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

-- ==== The periodic work refuses a standby with its own error (src/sql/ledger_and_merge.sql) ====
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

-- ==== billing's tables publishable by a publication FOR ALL TABLES (src/sql/ledger_and_merge.sql) ====
-- No primary key (an index would cost every tracked write), so REPLICA
-- IDENTITY FULL: PostgreSQL refuses deletes from a published table without
-- a replica identity, and merge() and the app's TRUNCATE would fail.
ALTER TABLE billing.usage_ledger REPLICA IDENTITY FULL;
ALTER TABLE billing.conversation_usage REPLICA IDENTITY FULL;
ALTER TABLE billing.conversation_model_usage REPLICA IDENTITY FULL;

-- ==== a detached partition's TRUNCATE trigger goes with its former table (src/sql/tracking.sql) ====
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
REVOKE ALL ON FUNCTION billing._forget_table(smallint) FROM PUBLIC;

-- Stops tracking a table: billing's triggers are found by their functions
-- (the table's owner may have renamed them, or named a trigger of its own
-- like billing's), then everything billing stored about the table goes.
CREATE OR REPLACE FUNCTION billing.untrack_messages(relation regclass) RETURNS void
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

-- ==== a profiles table tracked again in the month it was untracked records only what its counters rose by (src/sql/aws_usage.sql) ====
-- A profiles table untracked, with its counters then: tracked again in the
-- same month, only what the counters rose by meanwhile is recorded as sent
-- before tracking. (Recording all they hold, as a first tracking does,
-- counted the month's e-mails twice: the untrack/track of a column swap,
-- say.) Profile by profile (counters, by the table's primary key), so that
-- a profile deleted meanwhile, or a counter reset, hides no one else's
-- e-mails; by their sum alone for a table without a primary key.
CREATE TABLE billing.untracked_profiles (
    relation     regclass    PRIMARY KEY,
    counter_sum  numeric     NOT NULL CHECK (counter_sum >= 0),
    untracked_at timestamptz NOT NULL,
    -- (what the sum is of: tracked again with another counter or service,
    -- the sum is not subtracted; another column is taken for the same
    -- counter, as the column swap that ends in it needs)
    counter      text        NOT NULL,
    service      text        NOT NULL,
    -- {"<the profile's primary key, as a row's text>": its counter, ...}
    counters     jsonb
);
COMMENT ON TABLE billing.untracked_profiles IS
    'Profiles tables untracked, with the sum of their counters then: billing.track_profiles records only what they rose by since, when it tracks one again in the same month.';
SELECT pg_catalog.pg_extension_config_dump('billing.untracked_profiles', '');

-- The condition "the counter `counter` in jsonb column `data_column` of
-- profile `p` is a count of e-mails" (a whole number from 1 to under a
-- trillion; the trigger counts nothing else), and its value.
CREATE FUNCTION billing._profiles_counter_condition(data_column name, counter text, OUT countable text, OUT value text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format($q$jsonb_typeof(p.%1$I -> %2$L) = 'number' AND (p.%1$I ->> %2$L)::numeric > 0
                     AND (p.%1$I ->> %2$L)::numeric < 1e12
                     AND (p.%1$I ->> %2$L)::numeric = round((p.%1$I ->> %2$L)::numeric)$q$, data_column, counter),
           format('(p.%I ->> %L)::numeric', data_column, counter)
$$;

-- A profile's key (alias p) for billing.untracked_profiles.counters: its
-- primary key's values as a row's text; NULL for a table without one.
CREATE FUNCTION billing._profile_key(relation regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN count(*) > 0 THEN format('ROW(%s)::text', string_agg(format('p.%I', a.attname), ', ' ORDER BY k.ord)) END
      FROM pg_index AS i
     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = relation AND i.indisprimary
$$;

-- The e-mails a profiles table's counters rose by since `counters` (what
-- billing.untracked_profiles kept): each profile's counter less its kept
-- value, or all of it when it fell (reset meanwhile, as the trigger reads
-- a fall) or was not kept (a new profile); a profile deleted meanwhile
-- counts nothing.
CREATE FUNCTION billing._profiles_counter_rise(relation regclass, data_column name, counter text, counters jsonb)
RETURNS numeric
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record := billing._profiles_counter_condition(data_column, counter);
    total numeric;
BEGIN
    EXECUTE format($q$SELECT sum(CASE WHEN k.kept IS NULL OR k.now < k.kept THEN k.now ELSE k.now - k.kept END)
          FROM (SELECT %1$s AS now, ($1 ->> %2$s)::numeric AS kept FROM %3$s AS p WHERE %4$s) AS k $q$,
                   c.value, billing._profile_key(relation), relation, c.countable)
       INTO total USING counters;
    RETURN coalesce(total, 0);
END
$$;
REVOKE ALL ON FUNCTION billing._profiles_counter_rise(regclass, name, text, jsonb) FROM PUBLIC;

-- The sum of the counters `counter` in jsonb column `data_column` of
-- `relation` that are counts of e-mails, or 0; with `by_profile`, also
-- each profile's counter, by its key (NULL without a primary key).
CREATE FUNCTION billing._profiles_counter_sum(relation regclass, data_column name, counter text,
                                              by_profile boolean DEFAULT false, OUT total numeric, OUT counters jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record := billing._profiles_counter_condition(data_column, counter);
    k text := CASE WHEN by_profile THEN billing._profile_key(relation) END;
BEGIN
    EXECUTE format($q$SELECT sum(%1$s), %2$s FROM %3$s AS p WHERE %4$s $q$,
                   c.value, CASE WHEN k IS NULL THEN 'NULL::jsonb'
                                 ELSE format('coalesce(jsonb_object_agg(%s, %s), ''{}'')', k, c.value) END,
                   relation, c.countable)
       INTO total, counters;
    total := coalesce(total, 0);
END
$$;
REVOKE ALL ON FUNCTION billing._profiles_counter_sum(regclass, name, text, boolean) FROM PUBLIC;
ALTER TABLE billing.untracked_profiles ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.untracked_profiles
    USING (pg_catalog.has_table_privilege(relation, 'SELECT'));

-- Tracking a profiles table twice says so (it used to fail on the trigger's
-- name), and it returns what it did: the usage the counters already held.
DROP FUNCTION billing.track_profiles(regclass, text, name, text);
CREATE FUNCTION billing.track_profiles(relation regclass, counter text DEFAULT 'emails_sent_this_month',
                                       data_column name DEFAULT 'data', service text DEFAULT 'ses',
                                       OUT tracked regclass, OUT recorded numeric)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total numeric;
    earlier numeric;
    kept jsonb;
    by_profile boolean;
BEGIN
    -- Every argument checked first: a blank service was accepted, and then
    -- every increase of a counter failed the app's UPDATE on
    -- aws_usage's check; a blank counter would never count anything.
    IF relation IS NULL THEN
        RAISE EXCEPTION 'billing: relation must be given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF counter IS NULL OR btrim(counter) = '' THEN
        RAISE EXCEPTION 'billing: counter must name the member of the JSON column that counts e-mails, got %',
                        coalesce(quote_literal(counter), 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Leave it out for emails_sent_this_month.';
    END IF;
    IF data_column IS NULL THEN
        RAISE EXCEPTION 'billing: data_column must be given' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Leave it out for data.';
    END IF;
    IF service IS NULL OR btrim(service) = '' THEN
        RAISE EXCEPTION 'billing: service must be given' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Leave it out for ses.';
    END IF;
    -- (spelled as record_usage records it)
    service := lower(btrim(service));
    IF billing.resolve_aws_price(service, now()) IS NULL THEN
        RAISE WARNING 'billing: AWS service "%" has no price in billing.aws_prices now: its e-mails are recorded, shown unpriced', service
            USING HINT = 'Add its price to billing.aws_prices.';
    END IF;
    IF EXISTS (SELECT 1 FROM billing.tracked_profiles AS tp WHERE tp.relation = track_profiles.relation) THEN
        RAISE EXCEPTION 'billing: table % is already tracked by track_profiles', relation
            USING ERRCODE = 'duplicate_object', HINT = 'billing.untrack_profiles() stops it.';
    END IF;
    -- billing's trigger on a table billing does not track: a restore of the
    -- table brought it without the tracking (pg_restore --clean of the
    -- app's schema); it records nothing, and is made anew below.
    IF EXISTS (SELECT 1 FROM pg_trigger AS g
                WHERE g.tgrelid = relation AND g.tgname = 'billing_track_profiles') THEN
        RAISE NOTICE 'billing: trigger billing_track_profiles on % was left by an earlier tracking (a restore?): replaced', relation;
        PERFORM billing._drop_own_trigger('billing_track_profiles', relation);
    END IF;
    -- On Citus, the rows of a distributed (or reference) table are in shards
    -- on the workers, where this trigger would record into each worker's own
    -- billing.aws_usage, which no read on the coordinator sees.
    IF billing._citus_table(relation) THEN
        RAISE EXCEPTION 'billing: table % is a Citus distributed, reference or local table, which track_profiles cannot follow', relation
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its rows are in shards, where the trigger would record the usage on the workers, not on the coordinator that reads it.',
                  HINT = 'Record the sends on the coordinator with billing.record_usage(''ses'', quantity) where the app makes them, or keep the counters in a local table of the coordinator (README "Citus").';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute AS a
                    WHERE a.attrelid = relation AND a.attname = data_column AND a.attnum > 0
                      AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'billing: table % has no column %', relation, data_column USING ERRCODE = 'undefined_column';
    END IF;
    IF (SELECT a.atttypid FROM pg_attribute AS a WHERE a.attrelid = relation AND a.attname = data_column)
       <> 'jsonb'::regtype THEN
        RAISE EXCEPTION 'billing: column % of table % has type %, and track_profiles reads a jsonb column',
                        quote_ident(data_column), relation,
                        format_type((SELECT a.atttypid FROM pg_attribute AS a
                                      WHERE a.attrelid = relation AND a.attname = data_column), NULL)
            USING ERRCODE = 'datatype_mismatch', HINT = 'Nothing was changed.';
    END IF;
    INSERT INTO billing.tracked_profiles AS tp VALUES (relation, counter, service)
        ON CONFLICT ON CONSTRAINT tracked_profiles_pkey DO UPDATE SET counter = excluded.counter, service = excluded.service;
    PERFORM billing._create_profiles_trigger(relation, data_column, counter, service);
    PERFORM billing._grant_profiles_function();
    -- What the counters already hold was sent this month before tracking
    -- began; tracked again in the month it was untracked, only what they
    -- rose by since (the rest is recorded already).
    total := (billing._profiles_counter_sum(relation, data_column, counter)).total;
    DELETE FROM billing.untracked_profiles AS u WHERE u.relation = track_profiles.relation
    RETURNING CASE WHEN billing.month_of(u.untracked_at) = billing.month_of(now()) AND u.counter = track_profiles.counter
                        AND u.service = track_profiles.service
                   THEN u.counter_sum END,
              u.counters
         INTO earlier, kept;
    -- (profile by profile when they were kept, and the table still has the
    -- primary key they are kept by)
    by_profile := kept IS NOT NULL AND billing._profile_key(relation) IS NOT NULL;
    recorded := CASE WHEN earlier IS NULL THEN total
                     WHEN by_profile THEN billing._profiles_counter_rise(relation, data_column, counter, kept)
                     ELSE greatest(total - earlier, 0) END;
    IF recorded > 0 THEN
        INSERT INTO billing.aws_usage (service, quantity, at, note, origin)
        VALUES (service, recorded,  now(),
                CASE WHEN earlier IS NULL THEN 'counter value when tracking began'
                     ELSE 'counter increase while not tracked' END, 'track_profiles');
    END IF;
    IF earlier IS NOT NULL AND by_profile THEN
        RAISE NOTICE 'billing: % was tracked earlier this month, its counters then summing to %: % e-mails recorded, what each profile''s counter rose by since (their sum is % now)',
                     relation, earlier, recorded, total;
    ELSIF earlier IS NOT NULL THEN
        RAISE NOTICE 'billing: % was tracked earlier this month, its counters then summing to %: % e-mails recorded, what their sum rose by since (it is % now)',
                     relation, earlier, recorded, total
            USING DETAIL = 'A sum, for a table without a primary key: a profile deleted or reset meanwhile makes it rise by less than the e-mails sent.';
    END IF;
    tracked := relation;
    recorded := coalesce(recorded, 0);
END
$$;
COMMENT ON FUNCTION billing.track_profiles(regclass, text, name, text) IS
    'Turns increases of a JSON counter (default data.emails_sent_this_month) into recorded usage; resets are ignored. Returns the usage the counters held when tracking began (recorded as of now; tracked again in the month it was untracked, what they rose by since).';

-- untrack_profiles also forgets the table's customer column (customers.sql),
-- and keeps the sum of its counters (billing.untracked_profiles).
CREATE OR REPLACE FUNCTION billing.untrack_profiles(relation regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    legacy regprocedure;
    customer_column name;
    followed name;   -- the data column the trigger follows (renamed with it)
    counter text := (SELECT tp.counter FROM billing.tracked_profiles AS tp WHERE tp.relation = untrack_profiles.relation);
BEGIN
    IF relation IS NULL THEN
        RAISE EXCEPTION 'billing: relation must be given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    legacy := to_regprocedure(format('billing.%I()', 'track_profiles_' || relation::oid));
    -- (as untrack_messages: a table never tracked, or untracked already, is
    -- an error, not a silent success)
    IF counter IS NULL AND legacy IS NULL
       AND NOT EXISTS (SELECT 1 FROM pg_trigger AS g WHERE g.tgrelid = relation AND g.tgname = 'billing_track_profiles') THEN
        RAISE EXCEPTION 'billing: table % is not tracked by track_profiles', relation USING ERRCODE = 'undefined_object';
    END IF;
    SELECT a.attname INTO followed
      FROM pg_trigger AS g JOIN pg_attribute AS a ON a.attrelid = g.tgrelid AND a.attnum = g.tgattr[0]
     WHERE g.tgrelid = relation AND g.tgname = 'billing_track_profiles' AND g.tgparentid = 0;
    IF counter IS NOT NULL AND followed IS NOT NULL
       AND (SELECT a.atttypid FROM pg_attribute AS a WHERE a.attrelid = relation AND a.attname = followed) = 'jsonb'::regtype THEN
        INSERT INTO billing.untracked_profiles AS u
        SELECT relation, s.total, now(), counter,
               (SELECT tp.service FROM billing.tracked_profiles AS tp WHERE tp.relation = untrack_profiles.relation),
               s.counters
          FROM billing._profiles_counter_sum(relation, followed, counter, by_profile => true) AS s
            ON CONFLICT ON CONSTRAINT untracked_profiles_pkey DO UPDATE
            SET counter_sum = excluded.counter_sum, untracked_at = excluded.untracked_at, counter = excluded.counter,
                service = excluded.service, counters = excluded.counters;
    END IF;
    PERFORM billing._drop_own_trigger('billing_track_profiles', relation);
    DELETE FROM billing.tracked_profiles AS tp WHERE tp.relation = untrack_profiles.relation;
    PERFORM billing._grant_profiles_function();
    DELETE FROM billing.profile_customers AS pc WHERE pc.relation = untrack_profiles.relation
    RETURNING pc.customer_column INTO customer_column;
    -- (untracked to be tracked again: its e-mails' customers would be gone
    -- without a word)
    IF customer_column IS NOT NULL THEN
        RAISE NOTICE 'billing: the customers of %''s e-mails (its customer mapping) go with it', relation
            USING HINT = format('To map them again once it is tracked again: SELECT billing.track_profile_customers(%L, %L);',
                                relation::text, customer_column);
    END IF;
    -- The per-table function of a table tracked before 0.3 (see the end of
    -- this script), if one was left.
    IF legacy IS NOT NULL THEN
        EXECUTE format('DROP FUNCTION %s', legacy);
    END IF;
END
$$;

-- A dropped tracked table takes its costs with it, as a recomputation from
-- the (now missing) table would; its trigger function goes too, and so does
-- the e-mail counter's function of a dropped profiles table.
CREATE OR REPLACE FUNCTION billing._tracked_table_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    sid smallint;
BEGIN
    -- billing's own trigger dropped while its table stays tracked (ALTER
    -- TABLE ... DROP COLUMN ... CASCADE of a column billing reads, DROP
    -- TRIGGER, DROP FUNCTION billing.track_N() CASCADE): the table's writes
    -- would go unbilled, and nothing would say so. Refused, unless billing
    -- itself drops it (untrack_messages and the like, which turn on the
    -- superuser-only billing.internal_ddl; the names on the call stack,
    -- which a table's owner can choose, no longer count). Renaming
    -- billing's triggers first is refused too (_tracked_trigger_changed).
    IF NOT billing._internal_ddl() THEN
        FOR d IN SELECT o.address_names[3] AS trigger_name, r.relation, t.relation AS tracked
                   FROM pg_event_trigger_dropped_objects() AS o
                  CROSS JOIN LATERAL (SELECT to_regclass(format('%I.%I', o.address_names[1], o.address_names[2]))
                                             AS relation) AS r
                   JOIN billing.tracked_tables AS t ON t.id = billing._tracked_tree_of(r.relation)
                  WHERE o.object_type = 'trigger'
                    AND (o.address_names[3] IN ('billing_track', 'billing_track_truncate', 'billing_track_update')
                         -- (by its function too: a trigger renamed before
                         -- 0.4 refused renames; the table stays tracked
                         -- only with its row trigger)
                         OR (billing._trigger_function(t.id) IS NOT NULL
                             AND NOT EXISTS (SELECT 1 FROM pg_trigger AS g
                                              WHERE g.tgrelid = t.relation AND g.tgparentid = 0
                                                AND g.tgfoid = billing._trigger_function(t.id)
                                                AND g.tgtype::int & 4 <> 0)))   -- (4: TRIGGER_TYPE_INSERT)
                  ORDER BY t.id LIMIT 1 LOOP
            RAISE EXCEPTION 'billing: this would drop trigger % on %, which bills the writes of tracked table %',
                            d.trigger_name, d.relation, d.tracked
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = format('Run SELECT billing.untrack_messages(%L) first, and track it again after.',
                                    d.tracked::text);
        END LOOP;
        -- The same for the e-mail counter's trigger of a tracked profiles table.
        FOR d IN SELECT r.relation, tp.relation AS tracked
                   FROM pg_event_trigger_dropped_objects() AS o
                  CROSS JOIN LATERAL (SELECT to_regclass(format('%I.%I', o.address_names[1], o.address_names[2]))
                                             AS relation) AS r
                   JOIN billing.tracked_profiles AS tp
                     ON tp.relation::oid IN (SELECT l.rel FROM billing._lineage(r.relation) AS l(rel))
                  WHERE o.object_type = 'trigger'
                    AND (o.address_names[3] = 'billing_track_profiles'
                         OR NOT EXISTS (SELECT 1 FROM pg_trigger AS g
                                         WHERE g.tgrelid = tp.relation AND g.tgparentid = 0
                                           AND g.tgfoid = 'billing._profiles_counter_changed()'::regprocedure))
                  ORDER BY tp.relation::oid LIMIT 1 LOOP
            RAISE EXCEPTION 'billing: this would drop trigger billing_track_profiles on %, which records the e-mails of tracked profiles table %',
                            d.relation, d.tracked
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = format('Run SELECT billing.untrack_profiles(%L) first, and track it again after.',
                                    d.tracked::text);
        END LOOP;
    END IF;
    -- A dropped partition of a tracked table took rows its trigger never
    -- saw go: the table is taken in anew. Known by its OID among the
    -- partitions billing recorded (billing.tracked_partitions), not by the
    -- names of its triggers: any role may give a table of its own such a
    -- trigger, and must not make billing take its merge lock.
    FOR sid IN SELECT DISTINCT p.source_id
                 FROM pg_event_trigger_dropped_objects() AS o
                 JOIN billing.tracked_partitions AS p ON p.relid = o.objid
                 JOIN billing.tracked_tables AS t ON t.id = p.source_id
                WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0
                  AND NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() AS x
                                   WHERE x.classid = 'pg_class'::regclass AND x.objid = t.relation::oid)
                ORDER BY 1 LOOP
        PERFORM billing._take_in_anew(sid);
        DELETE FROM billing.tracked_partitions AS p
         WHERE p.source_id = sid
           AND p.relid IN (SELECT o.objid FROM pg_event_trigger_dropped_objects() AS o
                            WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0);
    END LOOP;
    DELETE FROM billing.tracked_profiles AS tp
     WHERE tp.relation::oid IN (SELECT o.objid FROM pg_event_trigger_dropped_objects() AS o
                                 WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0);
    IF FOUND THEN
        PERFORM billing._grant_profiles_function();
    END IF;
    DELETE FROM billing.untracked_profiles AS u
     WHERE u.relation::oid IN (SELECT o.objid FROM pg_event_trigger_dropped_objects() AS o
                                WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0);
    -- A customer lookup table dropped: its tracked table's customers are no
    -- longer known (every read of customers would fail on it).
    -- (not while the extension's own script runs: customers.sql makes the
    -- table after this file)
    IF to_regclass('billing.customer_sources') IS NOT NULL THEN
        FOR d IN SELECT cs.source_id FROM billing.customer_sources AS cs
                  WHERE NOT cs.per_message
                    AND cs.lookup::oid IN (SELECT o.objid FROM pg_event_trigger_dropped_objects() AS o
                                            WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0)
                  ORDER BY 1 LOOP
            DELETE FROM billing.customer_sources AS cs WHERE cs.source_id = d.source_id;
            RAISE WARNING 'billing: the lookup table of the customers of tracked table % is dropped: its costs belong to no customer now',
                          (SELECT t.relation FROM billing.tracked_tables AS t WHERE t.id = d.source_id)
                USING HINT = 'billing.track_customers() names another lookup table.';
        END LOOP;
        -- A column a customer source reads, dropped (ALTER TABLE ... DROP
        -- COLUMN, or DROP TYPE/DOMAIN ... CASCADE): refused, as every read of
        -- customers would fail on it.
        FOR d IN SELECT cs.lookup, t.relation AS tracked, o.address_names[3] AS col
                   FROM pg_event_trigger_dropped_objects() AS o
                   JOIN billing.customer_sources AS cs
                     ON cs.lookup = to_regclass(format('%I.%I', o.address_names[1], o.address_names[2]))
                    AND o.address_names[3] IN (cs.lookup_key, cs.customer_column)
                   JOIN billing.tracked_tables AS t ON t.id = cs.source_id
                  WHERE o.object_type = 'table column'
                  ORDER BY cs.source_id LIMIT 1 LOOP
            RAISE EXCEPTION 'billing: this would drop column % of %, which gives the customers of tracked table %',
                            quote_ident(d.col), d.lookup, d.tracked
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = format('Run SELECT billing.untrack_customers(%L) first.', d.tracked::text);
        END LOOP;
        -- A constraint of a lookup table dropped that made its key unique:
        -- refused, as a conversation would be billed to several customers.
        FOR d IN SELECT DISTINCT cs.source_id, cs.lookup, cs.lookup_key, t.relation AS tracked
                   FROM pg_event_trigger_dropped_objects() AS o
                   JOIN billing.customer_sources AS cs
                     ON cs.lookup = to_regclass(format('%I.%I', o.address_names[1], o.address_names[2]))
                   JOIN billing.tracked_tables AS t ON t.id = cs.source_id
                  WHERE o.object_type = 'table constraint' AND NOT cs.per_message
                    AND NOT billing._unique_key(cs.lookup, cs.lookup_key)
                  ORDER BY cs.source_id LIMIT 1 LOOP
            RAISE EXCEPTION 'billing: column % of % would no longer be unique, and it gives one customer per conversation of tracked table %',
                            quote_ident(d.lookup_key), d.lookup, d.tracked
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = format('Run SELECT billing.untrack_customers(%L) first.', d.tracked::text);
        END LOOP;
        -- Any index dropped: the same, as a WARNING (DROP INDEX does not say
        -- which table the index was on).
        IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() AS o WHERE o.object_type IN ('index', 'table constraint')) THEN
            FOR sid IN SELECT cs.source_id FROM billing.customer_sources AS cs
                        WHERE NOT cs.per_message AND EXISTS (SELECT 1 FROM pg_class AS k WHERE k.oid = cs.lookup) ORDER BY 1 LOOP
                PERFORM billing._customer_source_altered(sid, ARRAY[]::name[]);
            END LOOP;
        END IF;
    END IF;
    FOR d IN SELECT o.objid, o.object_identity, t.id AS source_id,
                    to_regprocedure(format('billing.%I()', 'track_profiles_' || o.objid)) AS profiles_fn
               FROM pg_event_trigger_dropped_objects() AS o
               LEFT JOIN billing.tracked_tables AS t ON t.relation::oid = o.objid
              WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0 AND o.object_type = 'table'
              ORDER BY o.object_identity   -- (the NOTICEs in one order, whatever the plan)
    LOOP
        CONTINUE WHEN d.source_id IS NULL AND d.profiles_fn IS NULL;
        BEGIN
            IF d.source_id IS NOT NULL THEN
                PERFORM billing._forget_table(d.source_id);
                -- (said: a restore that drops the table and makes it again,
                -- pg_restore --clean -t, brings it back untracked)
                RAISE NOTICE 'billing: tracked table % is dropped: billing forgets its costs, history and customers', d.object_identity
                    USING HINT = format('If it comes back (a restore), track it again: SELECT billing.track_messages(%L);',
                                        d.object_identity);
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

-- Tables tracked under 0.3 get the 0.4 trigger function.
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

-- ==== a column billing reads may change type: its row triggers are made again for the new type (src/sql/tracking.sql, src/sql/ddl_events.sql) ====
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

-- The row triggers of tracked table `t` made again after a change of a
-- column's type (billing._lift_row_triggers dropped them): its trigger
-- functions made for the new types (another type is refused, with
-- SQLSTATE 42804, as track_messages refuses it), and billing_track in the
-- mode its TRUNCATE trigger kept (ENABLE ALWAYS on a subscriber, say);
-- billing_track_update follows it.
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

CREATE OR REPLACE FUNCTION billing._create_trigger(t billing.tracked_tables) RETURNS void
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

-- (the SET of citus.sql, which CREATE OR REPLACE resets)
ALTER FUNCTION billing._create_trigger(billing.tracked_tables) SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._create_row_trigger(billing.tracked_tables, regprocedure) SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._restore_row_triggers(billing.tracked_tables) SET citus.enable_ddl_propagation = off;

-- Whether it is an ALTER TABLE ... ALTER COLUMN ... TYPE. C body:
-- src/pg/ddl_command.cpp (ddl_alters_column_types).
CREATE FUNCTION billing._ddl_alters_column_types(pg_ddl_command) RETURNS boolean
AS 'MODULE_PATHNAME', 'ddl_alters_column_types' LANGUAGE C STRICT STABLE;
REVOKE ALL ON FUNCTION billing._ddl_alters_column_types(pg_ddl_command) FROM PUBLIC;

-- ALTER TABLE ... ALTER COLUMN ... TYPE of a column billing reads, on a
-- tracked table: PostgreSQL refuses to change the type of a column a
-- trigger lists (billing_track's UPDATE OF list, billing_track_update's
-- WHEN clause), which stopped the app's migrations (Rails' change_column,
-- Django's AlterField, Prisma's @db.VarChar), even to the same type. At
-- the command's start (billing._column_types_changing, C: only C sees the
-- statement there) billing drops its two row triggers; at its end
-- billing._tracked_table_altered makes them again for the new types, or
-- refuses a type billing does not read (and the ALTER with it), and takes
-- the table in anew (a USING clause may have changed what the rows hold).
-- Not on a Citus distributed table, whose triggers Citus keeps on every
-- shard: there the ALTER is refused as before.
CREATE FUNCTION billing._lift_row_triggers(p_relation oid, p_columns text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
DECLARE
    t billing.tracked_tables;
    g record;
    profiles record;
BEGIN
    SELECT a.attname INTO profiles
      FROM billing.tracked_profiles AS tp
      JOIN pg_trigger AS tg ON tg.tgrelid = tp.relation AND tg.tgname = 'billing_track_profiles' AND tg.tgparentid = 0
      JOIN pg_attribute AS a ON a.attrelid = tg.tgrelid AND a.attnum = tg.tgattr[0]
     WHERE tp.relation = p_relation AND a.attname = ANY (p_columns) AND NOT billing._citus_distributed(p_relation::regclass);
    IF FOUND THEN
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', p_relation::regclass);
        PERFORM billing._keep_trigger_modes(p_relation, 'billing_track_profiles', profiles.attname);
        PERFORM billing._drop_own_trigger('billing_track_profiles', p_relation::regclass);
    END IF;
    SELECT * INTO t FROM billing.tracked_tables AS tt WHERE tt.relation = p_relation;
    IF NOT FOUND OR billing._citus_triggered(t.id) OR billing._trigger_function(t.id) IS NULL
       OR NOT (ARRAY[t.id_column, t.conversation_column, t.role_column, t.content_column, t.data_column,
                     t.created_at_column]::text[] && p_columns) THEN
        RETURN;
    END IF;
    -- The lock the ALTER takes next, taken first, as it takes it (the
    -- table, then its partitions): dropping the triggers locks each
    -- partition before the parent, and an app transaction that had written
    -- a partition and then read the conversation in the others deadlocked
    -- with it.
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', p_relation::regclass);
    FOR g IN SELECT tg.tgname FROM pg_trigger AS tg
              WHERE tg.tgrelid = p_relation AND tg.tgparentid = 0 AND tg.tgfoid = billing._trigger_function(t.id)
              ORDER BY tg.tgname LOOP
        -- (each trigger's mode, for the end of the command: ENABLE ALWAYS,
        -- DISABLE, as the owner left it, on the table and on each partition)
        PERFORM billing._keep_trigger_modes(p_relation, g.tgname);
        PERFORM billing._drop_own_trigger(g.tgname, p_relation::regclass);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION billing._lift_row_triggers(oid, text[]) FROM PUBLIC;
CREATE FUNCTION billing._column_types_changing() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'column_types_changing' LANGUAGE C;
CREATE EVENT TRIGGER billing_column_types_changing ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION billing._column_types_changing();
REVOKE ALL ON FUNCTION billing._column_types_changing() FROM PUBLIC;

-- ALTER TABLE ... ATTACH PARTITION of a table billing tracks on its own (or
-- whose partitions it does) under a tracked table: PostgreSQL would copy
-- billing's row triggers onto it, which has its own, and failed with its
-- bare "trigger ... already exists". Refused here, at the command's start
-- (billing._partition_attaching_guard, C: only C sees the statement there),
-- with the way out: untrack the partition, then attach it; its rows are
-- then billed through the table it joins, which takes them in anew.
CREATE FUNCTION billing._partition_attaching(p_parent oid, p_partition oid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tracked regclass;
    own regclass;
    untrack text;
BEGIN
    FOR untrack IN VALUES ('untrack_messages'), ('untrack_profiles') LOOP
        -- The tracked table above (the parent itself or one of its
        -- ancestors), and the one tracked on its own (the partition, or a
        -- partition of it), from the one registry untrack names.
        WITH r AS (
            SELECT tt.relation FROM billing.tracked_tables AS tt WHERE untrack = 'untrack_messages'
            UNION ALL
            SELECT tp.relation FROM billing.tracked_profiles AS tp WHERE untrack = 'untrack_profiles'
        )
        SELECT (SELECT r.relation FROM r
                 WHERE r.relation = p_parent OR r.relation IN (SELECT a.relid FROM pg_partition_ancestors(p_parent) AS a)
                 ORDER BY r.relation LIMIT 1),
               (SELECT r.relation FROM r
                 WHERE r.relation = p_partition OR r.relation IN (SELECT pt.relid FROM pg_partition_tree(p_partition) AS pt)
                 ORDER BY r.relation LIMIT 1)
          INTO tracked, own;
        CONTINUE WHEN tracked IS NULL OR own IS NULL;
        RAISE EXCEPTION 'billing: table % is tracked on its own; it cannot be attached as a partition of %', own,
                        CASE WHEN tracked = p_parent::regclass THEN format('tracked table %s', tracked)
                             ELSE format('%s, under tracked table %s', p_parent::regclass, tracked) END
            USING ERRCODE = 'duplicate_object',
                  DETAIL = format('PostgreSQL copies billing''s triggers on %s onto each partition attached; %s has its own.', tracked, own),
                  HINT = format('Untrack it first: SELECT billing.%s(%L); then attach it. Its rows are billed through %s from then on: attaching takes them in anew.', untrack, own::text, tracked);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION billing._partition_attaching(oid, oid) FROM PUBLIC;
CREATE FUNCTION billing._partition_attaching_guard() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'partition_attaching' LANGUAGE C;
CREATE EVENT TRIGGER billing_partition_attaching ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION billing._partition_attaching_guard();
REVOKE ALL ON FUNCTION billing._partition_attaching_guard() FROM PUBLIC;

-- DDL on a tracked table: a partition attached or detached (at any level of
-- its tree) moved rows its trigger never saw, so the table is taken in anew;
-- a partition created or attached gets the TRUNCATE trigger; renames are
-- followed whatever command made them (ALTER INDEX, ALTER VIEW ... RENAME
-- also rename a table), billing's own trigger is found by its function, not
-- by a name the table's owner can give another trigger, and a column changed
-- to a type billing cannot read is refused with the command (the app's
-- writes would fail otherwise).
CREATE OR REPLACE FUNCTION billing._tracked_table_altered() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    cols name[];
    sid smallint;
    moved boolean;
    created boolean;
    heir record;
BEGIN
    -- A column's type changed: the row triggers billing dropped at the
    -- command's start (billing._lift_row_triggers) made again for the new
    -- types, first (the checks below look at them), and the table taken in
    -- anew. A type billing does not read is refused, and the ALTER with it.
    FOR t IN SELECT DISTINCT ON (tt.id) tt.*
               FROM billing.tracked_tables AS tt
               JOIN pg_event_trigger_ddl_commands() AS c
                 ON c.classid = 'pg_class'::regclass AND c.objid = tt.relation::oid
              WHERE c.command_tag = 'ALTER TABLE' AND billing._ddl_alters_column_types(c.command)
                AND billing._trigger_function(tt.id) IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM pg_trigger AS g
                                 WHERE g.tgrelid = tt.relation AND g.tgparentid = 0
                                   AND g.tgfoid = billing._trigger_function(tt.id))
              ORDER BY tt.id
    LOOP
        -- (a Citus distributed table's triggers are on its shards; citus.sql
        -- is loaded after this file)
        CONTINUE WHEN billing._citus_triggered(t.id);
        BEGIN
            PERFORM billing._restore_row_triggers(t);
        EXCEPTION WHEN datatype_mismatch THEN
            RAISE EXCEPTION 'billing: % is tracked, and %', t.relation, regexp_replace(SQLERRM, '^billing: ', '')
                USING ERRCODE = 'datatype_mismatch',
                      HINT = 'billing.untrack_messages() first, or keep a type billing reads (README "Tracking the app''s tables").';
        END;
        PERFORM billing._take_in_anew(t.id);
    END LOOP;
    -- The same for the data column of a tracked profiles table.
    FOR heir IN SELECT l.relation::regclass AS relation, l.column_name
                  FROM billing.lifted_triggers AS l
                 WHERE l.trigger_name = 'billing_track_profiles' AND l.column_name IS NOT NULL   -- (not a partition's mode)
                 ORDER BY l.relation LOOP
        PERFORM billing._restore_profiles_trigger(heir.relation, heir.column_name);
    END LOOP;
    -- A table made an inheritance child of a tracked table (CREATE TABLE
    -- ... INHERITS, ALTER TABLE ... INHERIT): its rows would be read with
    -- the tracked table's, and its writes never seen. Refused, as
    -- track_messages refuses a table that has such children.
    FOR heir IN SELECT c.objid::regclass AS child, tt.relation AS tracked
                  FROM pg_event_trigger_ddl_commands() AS c
                  JOIN pg_inherits AS i ON i.inhrelid = c.objid
                  JOIN pg_class AS k ON k.oid = c.objid AND NOT k.relispartition
                  JOIN billing.tracked_tables AS tt ON tt.relation = i.inhparent
                 WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0
                 ORDER BY tt.id LIMIT 1 LOOP
        RAISE EXCEPTION 'billing: % would inherit from tracked table %, whose reads would include its rows and whose trigger would not see its writes',
                        heir.child, heir.tracked
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('Untrack %s first (SELECT billing.untrack_messages(%L)), or make it a partitioned table.',
                                heir.tracked, heir.tracked::text);
    END LOOP;
    -- A table of a tracked tree made unlogged (ALTER TABLE ... SET UNLOGGED,
    -- CREATE UNLOGGED TABLE ... PARTITION OF, ATTACH PARTITION of an
    -- unlogged table): a crash would empty it, and billing would keep its
    -- costs. Refused, as track_messages refuses it. (Only those commands:
    -- a tree unlogged already, as 0.3 let one be tracked, keeps its other
    -- DDL and its restores.)
    FOR heir IN SELECT k.oid::regclass AS child, tt.relation AS tracked
                  FROM pg_event_trigger_ddl_commands() AS c
                 CROSS JOIN LATERAL (SELECT p.relid FROM pg_partition_tree(c.objid::regclass) AS p
                                      WHERE c.command_tag = 'ALTER TABLE' AND billing._ddl_moves_partitions(c.command)
                                     UNION ALL SELECT c.objid::regclass
                                      WHERE c.command_tag = 'CREATE TABLE'
                                         OR billing._ddl_sets_unlogged(c.command)) AS m
                  JOIN pg_class AS k ON k.oid = m.relid AND k.relpersistence = 'u'
                  JOIN billing.tracked_tables AS tt ON tt.id = billing._tracked_tree_of(k.oid)
                 WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0
                   AND c.command_tag IN ('ALTER TABLE', 'CREATE TABLE')
                 ORDER BY tt.id LIMIT 1 LOOP
        RAISE EXCEPTION 'billing: % would be unlogged, and it holds rows of tracked table %: a crash would empty it, and billing would keep its costs',
                        heir.child, heir.tracked
            USING ERRCODE = 'feature_not_supported',
                  HINT = format('Untrack %s first (SELECT billing.untrack_messages(%L)).', heir.tracked, heir.tracked::text);
    END LOOP;
    FOR sid, moved, created IN
                     SELECT tree.id, bool_or(c.command_tag = 'ALTER TABLE' AND billing._ddl_moves_partitions(c.command)),
                            bool_or(c.command_tag = 'CREATE TABLE')
                        FROM pg_event_trigger_ddl_commands() AS c
                       CROSS JOIN LATERAL (SELECT billing._tracked_tree_of(c.objid) AS id) AS tree
                       WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0
                         AND c.command_tag IN ('ALTER TABLE', 'CREATE TABLE') AND tree.id IS NOT NULL
                       GROUP BY tree.id ORDER BY tree.id
    LOOP
        SELECT * INTO STRICT t FROM billing.tracked_tables WHERE id = sid;
        BEGIN
            IF moved THEN
                PERFORM billing._take_in_anew(t.id);
            END IF;
            -- (ENABLE ALWAYS on a partitioned table reaches its partitions'
            -- row triggers, never their TRUNCATE triggers, which billing
            -- makes one by one: they follow billing_track's mode)
            PERFORM billing._fire_as_billing_track(g.tgrelid, g.tgname, t.id)
               FROM pg_partition_tree(t.relation) AS p
               JOIN pg_trigger AS g ON g.tgrelid = p.relid AND billing._is_truncate_trigger(g, t.id)
              WHERE p.level > 0;
            -- (said once, at the end of the app's command: not again for
            -- each ALTER billing makes inside it, setting modes back)
            IF billing._trigger_disabled(t.id) THEN
                PERFORM billing._take_in_anew(t.id);
                IF NOT billing._internal_ddl() THEN
                    PERFORM billing._warn_trigger_disabled(t.relation);
                END IF;
            END IF;
            -- (the TRUNCATE triggers only for a partition created or
            -- attached: any other ALTER, as a restore's ADD CONSTRAINT after
            -- billing's tables are back, would make the ones the restore
            -- itself creates next collide)
            IF moved OR created THEN
                PERFORM billing._partition_truncate_triggers(t);
            END IF;
            -- (also a restore's DDL on the tree, after billing's tables are back)
            PERFORM billing._record_partitions(t);
            -- (a table of the tree given to another owner, created or
            -- attached: the roles that may add partitions to it keep or
            -- get the right that needs)
            IF billing._trigger_function(t.id) IS NOT NULL THEN
                PERFORM billing._grant_trigger_function(billing._trigger_function(t.id),
                                                        t.relation);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'billing: could not follow the partitions of tracked table %: %', t.relation, SQLERRM
                USING HINT = 'Run billing.untrack_messages() and billing.track_messages() on it again.';
        END;
    END LOOP;
    -- Customer sources (customers.sql): renames followed, whatever command
    -- made them, on the source's table or on a parent of it (a rename
    -- there renames the column of every partition or child). (Not while
    -- the extension's own script runs: customers.sql makes the table after
    -- this file.)
    IF to_regclass('billing.customer_sources') IS NOT NULL THEN
        FOR sid IN SELECT DISTINCT s.source_id FROM billing.customer_sources AS s
                     JOIN pg_event_trigger_ddl_commands() AS c ON c.classid = 'pg_class'::regclass
                    WHERE c.objid IN (SELECT l.rel FROM billing._lineage(s.lookup::oid) AS l(rel))
                    ORDER BY 1 LOOP
            PERFORM billing._customer_source_altered(sid,
                ARRAY(SELECT a.attname FROM pg_event_trigger_ddl_commands() AS c
                        JOIN pg_attribute AS a ON a.attrelid = c.objid AND a.attnum = c.objsubid
                       WHERE c.classid = 'pg_class'::regclass AND c.objsubid > 0));
        END LOOP;
    END IF;
    -- (ALTER TABLE ... OWNER TO of a table of a tracked profiles tree, or a
    -- partition created or attached: the roles that may add partitions get
    -- the right their migrations need, a former owner loses it)
    IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() AS c
                WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0
                  AND c.command_tag IN ('ALTER TABLE', 'CREATE TABLE')
                  AND billing._in_tracked_profiles_tree(c.objid)) THEN
        PERFORM billing._grant_profiles_function();
    END IF;
    -- A tracked table renamed: followed, and said, as the rename may be the
    -- first half of a table swap (a new table renamed into the old one's
    -- name), after which billing would follow the table the app no longer
    -- writes.
    FOR heir IN SELECT c.objid::regclass AS relation, r.was,
                       EXISTS (SELECT 1 FROM billing.tracked_profiles AS tp WHERE tp.relation::oid = c.objid) AS profiles
                  FROM pg_event_trigger_ddl_commands() AS c
                 CROSS JOIN LATERAL (SELECT billing._ddl_renamed_from(c.command) AS was) AS r
                 WHERE c.classid = 'pg_class'::regclass AND c.objsubid = 0 AND r.was IS NOT NULL
                   AND (EXISTS (SELECT 1 FROM billing.tracked_tables AS tt WHERE tt.relation::oid = c.objid)
                        OR EXISTS (SELECT 1 FROM billing.tracked_profiles AS tp WHERE tp.relation::oid = c.objid))
                 ORDER BY c.objid LOOP
        RAISE WARNING 'billing: tracked table % is now %, and billing follows it under that name', heir.was, heir.relation
            USING HINT = format('If another table takes the name %s (a table swapped in), track that one once the swap is done: SELECT billing.%s(%L); (and untrack this one if the app no longer writes it).',
                                heir.was, CASE WHEN heir.profiles THEN 'track_profiles' ELSE 'track_messages' END, heir.was);
    END LOOP;
    -- The same for the column a tracked profiles table's counter is read
    -- from (the columns of a messages table: below).
    FOR heir IN SELECT c.objid::regclass AS relation, r.was, quote_ident(a.attname) AS now
                  FROM pg_event_trigger_ddl_commands() AS c
                  JOIN billing.tracked_profiles AS tp ON tp.relation::oid = c.objid
                  JOIN pg_attribute AS a ON a.attrelid = c.objid AND a.attnum = c.objsubid
                  JOIN pg_trigger AS g ON g.tgrelid = c.objid AND g.tgname = 'billing_track_profiles'
                                      AND c.objsubid = ANY (g.tgattr::int2[])
                 CROSS JOIN LATERAL (SELECT billing._ddl_renamed_from(c.command) AS was) AS r
                 WHERE c.classid = 'pg_class'::regclass AND c.objsubid > 0 AND r.was IS NOT NULL
                 ORDER BY c.objid LOOP
        RAISE WARNING 'billing: column % of tracked profiles table % is now %, and billing reads the e-mail counter there',
                      heir.was, heir.relation, heir.now
            USING HINT = format('If the app writes another column named %s from now on (a column swapped in), track the table again once the swap is done: SELECT billing.untrack_profiles(%L); then billing.track_profiles with that column.',
                                heir.was, heir.relation::text);
    END LOOP;
    FOR t IN SELECT DISTINCT ON (tt.id) tt.*
               FROM billing.tracked_tables AS tt
               JOIN pg_event_trigger_ddl_commands() AS c
                 ON c.classid = 'pg_class'::regclass AND c.objid = tt.relation::oid
              ORDER BY tt.id
    LOOP
        SELECT array_agg(a.attname ORDER BY k.ord) INTO cols
          FROM pg_trigger AS g
         CROSS JOIN LATERAL unnest(g.tgattr::int2[]) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute AS a ON a.attrelid = g.tgrelid AND a.attnum = k.attnum
         WHERE g.tgrelid = t.relation AND NOT g.tgisinternal
           AND g.tgfoid = billing._trigger_function(t.id);
        CONTINUE WHEN cardinality(cols) IS DISTINCT FROM 6;
        -- A column billing reads renamed: followed, and said, as the rename
        -- may be the first half of a swap (add a new column, copy, rename
        -- the old one away and the new one into its name: the usual way to
        -- change a column's type without a long lock), after which billing
        -- would read the old column, which the app no longer writes.
        FOR heir IN SELECT o.name AS was, k.name AS now
                      FROM unnest(ARRAY[t.id_column, t.conversation_column, t.role_column, t.content_column,
                                        t.data_column, t.created_at_column]) WITH ORDINALITY AS o(name, ord)
                      JOIN unnest(cols) WITH ORDINALITY AS k(name, ord) ON k.ord = o.ord
                     WHERE k.name <> o.name
                     ORDER BY o.ord LOOP
            RAISE WARNING 'billing: column % of tracked table % is now %, and billing reads it under that name',
                          quote_ident(heir.was), t.relation, quote_ident(heir.now)
                USING HINT = format('If the app writes another column named %s from now on (a column swapped in), track the table again once the swap is done: SELECT billing.untrack_messages(%L); then billing.track_messages with that column (and billing.track_customers again if it had customers).',
                                    quote_ident(heir.was), t.relation::text);
        END LOOP;
        UPDATE billing.tracked_tables
           SET id_column = cols[1], conversation_column = cols[2], role_column = cols[3],
               content_column = cols[4], data_column = cols[5], created_at_column = cols[6]
         WHERE id = t.id
        RETURNING * INTO t;
        BEGIN
            PERFORM billing._create_trigger_function(t);
        EXCEPTION
            WHEN datatype_mismatch THEN
                RAISE EXCEPTION 'billing: % is tracked, and %', t.relation, regexp_replace(SQLERRM, '^billing: ', '')
                    USING ERRCODE = 'datatype_mismatch',
                          HINT = 'billing.untrack_messages() first, or keep a type billing reads (README "Tracking the app''s tables").';
            WHEN OTHERS THEN
                RAISE WARNING 'billing: could not follow ALTER of tracked table %: %', t.relation, SQLERRM
                    USING HINT = 'Run billing.untrack_messages() and billing.track_messages() on it again.';
        END;
    END LOOP;
END
$$;
DROP EVENT TRIGGER billing_tracked_table_altered;
CREATE EVENT TRIGGER billing_tracked_table_altered ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'ALTER INDEX', 'ALTER VIEW', 'ALTER SEQUENCE', 'ALTER MATERIALIZED VIEW',
                 'ALTER FOREIGN TABLE', 'CREATE TABLE')
    EXECUTE FUNCTION billing._tracked_table_altered();

-- ==== a schema of tracked tables renamed: their PL/pgSQL bodies made again (src/sql/ddl_events.sql) ====
-- ALTER SCHEMA ... RENAME TO of a schema holding tracked tables: their
-- PL/pgSQL bodies read each table by name (the estimate of a reply without
-- usage, when the C trigger leaves it to them), and found no table by the
-- old name: replies stored until the next merge() made the bodies again
-- lost their prompt estimates. Made again at once.
CREATE FUNCTION billing._tracked_schema_renamed() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
BEGIN
    FOR t IN SELECT tt.* FROM billing.tracked_tables AS tt
              WHERE (SELECT p.prosrc FROM pg_proc AS p WHERE p.oid = billing._trigger_function(tt.id, full_body => true))
                    IS DISTINCT FROM billing._trigger_function_body(tt)
              ORDER BY tt.id LOOP
        CONTINUE WHEN billing._citus_triggered(t.id);
        PERFORM billing._create_trigger_function(t);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION billing._tracked_schema_renamed() FROM PUBLIC;
CREATE EVENT TRIGGER billing_tracked_schema_renamed ON ddl_command_end
    WHEN TAG IN ('ALTER SCHEMA')
    EXECUTE FUNCTION billing._tracked_schema_renamed();

-- ==== The order of a conversation's messages for an estimate (src/sql/message_usage.sql) ====
-- 1 for a reply's role ("assistant" in any case of ASCII letters), else 0,
-- NULL included. With ids that are not integers, a reply's prompt is
-- estimated from the messages before it in (created_at, _reply_rank(role),
-- id) order (billing._earlier_condition): at the same time, the question
-- stored with it in one transaction comes first.
-- C body: src/pg/usage_of.cpp (reply_rank)
CREATE FUNCTION billing._reply_rank(role text) RETURNS integer
    AS 'MODULE_PATHNAME', 'reply_rank' LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- ==== A tracked profiles table's data column changes type (src/sql/aws_usage.sql) ====
-- The trigger of tracked profiles table p_relation made again, in the modes
-- it had, at the end of an ALTER TABLE that changed the type of its data
-- column p_column (billing._lift_row_triggers dropped it as the command
-- began: PostgreSQL refuses to change the type of a column a trigger's
-- UPDATE OF list names, which stopped Rails' change_column even to jsonb
-- again). Another type than jsonb is refused, and the ALTER with it, as
-- track_profiles refuses it. Counters a USING clause changed are not
-- recorded: no trigger sees such a change.
CREATE FUNCTION billing._restore_profiles_trigger(p_relation regclass, p_column name) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET billing.internal_ddl = on
AS $$
DECLARE
    tp billing.tracked_profiles;
    now_type regtype := (SELECT a.atttypid::regtype FROM pg_attribute AS a
                          WHERE a.attrelid = p_relation AND a.attname = p_column AND NOT a.attisdropped);
BEGIN
    SELECT * INTO tp FROM billing.tracked_profiles AS p WHERE p.relation = p_relation;
    IF FOUND THEN
        IF now_type IS DISTINCT FROM 'jsonb'::regtype THEN
            RAISE EXCEPTION 'billing: % is a tracked profiles table, and its column % would have type %, where billing reads a jsonb column',
                            p_relation, quote_ident(p_column), coalesce(now_type::text, 'none')
                USING ERRCODE = 'datatype_mismatch',
                      HINT = 'Keep the column jsonb, or billing.untrack_profiles() first (README "AWS usage").';
        END IF;
        PERFORM billing._create_profiles_trigger(p_relation, p_column, tp.counter, tp.service);
    END IF;
    -- (the kept modes forgotten, also where no trigger was made again)
    PERFORM billing._restore_trigger_modes(p_relation, 'billing_track_profiles');
END
$$;
REVOKE ALL ON FUNCTION billing._restore_profiles_trigger(regclass, name) FROM PUBLIC;

-- ==== Tables tracked under 0.3 taken in anew by the first merge ====
-- 0.4 bills replies 0.3 did not (a role spelled Assistant or ASSISTANT,
-- estimated when stored without usage) and has no frozen prompt estimate
-- for them: the first merge() takes every tracked table in anew, as
-- billing.rebuild_messages does (its months recomputed by 0.4's rules,
-- frozen estimates kept, the missing ones taken then); until then the
-- views read the tables, exact meanwhile.
UPDATE billing.tracked_tables SET backfilled = false WHERE backfilled;
-- A table whose triggers were disabled, or fired unalike, under 0.3 is
-- read from the table itself while they stay so (0.3 billed nothing it did
-- not see): said here, as 0.4 says it at the ALTER that does it.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tt.relation FROM billing.tracked_tables AS tt WHERE billing._trigger_disabled(tt.id) ORDER BY tt.id LOOP
        PERFORM billing._warn_trigger_disabled(t.relation);
    END LOOP;
END
$$;

-- ==== billing's triggers on its own tables fire ALWAYS (src/sql/own_triggers.sql) ====
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT t.tgrelid::regclass AS relation, t.tgname
               FROM pg_catalog.pg_trigger AS t
               JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
              WHERE c.relnamespace = 'billing'::regnamespace AND NOT t.tgisinternal AND t.tgenabled = 'O'
              ORDER BY t.tgrelid, t.tgname LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', g.relation, g.tgname);
    END LOOP;
END
$$;

-- billing's event triggers fire ALWAYS too: DDL run under
-- session_replication_role = replica (a migration tool's session, DDL a
-- replication system applies on a subscriber) would otherwise pass them
-- all: a renamed column left the trigger function reading the old name,
-- and every later write of the app failed; a trigger disabled or dropped
-- there went unseen.
DO $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT et.evtname
               FROM pg_catalog.pg_event_trigger AS et
               JOIN pg_catalog.pg_proc AS p ON p.oid = et.evtfoid
              WHERE p.pronamespace = 'billing'::regnamespace AND et.evtenabled = 'O'
              ORDER BY et.evtname LOOP
        EXECUTE pg_catalog.format('ALTER EVENT TRIGGER %I ENABLE ALWAYS', e.evtname);
    END LOOP;
END
$$;

-- AWS usage recorded by a profiles table's counter under 0.3 kept the
-- service as track_profiles was given it ('SES'); record_usage's rows are
-- lower case and trimmed already. All spelled alike, so that the actual
-- figures below, respelled too, replace their estimates.
UPDATE billing.aws_usage SET service = lower(btrim(service))
 WHERE service <> lower(btrim(service)) AND btrim(service) <> '';
UPDATE billing.untracked_profiles SET service = lower(btrim(service))
 WHERE service <> lower(btrim(service)) AND btrim(service) <> '';

-- billing.aws_actuals' service names are spelled as record_usage records
-- them (lower case, trimmed), as aws_usage_patterns' are: an actual figure
-- for 'SES' replaced no estimate of the recorded 'ses', and both were
-- counted. Names spelled otherwise are respelled; two rows of a month
-- that then share a name ('SES' and 'ses') become one, of their summed
-- cost, as 0.3 counted them, with a WARNING and a note that say so (an
-- extension script's NOTICEs are not shown); a blank
-- name becomes 'unnamed'.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT a.month, coalesce(nullif(lower(btrim(a.service)), ''), 'unnamed') AS service,
                    count(*) AS n, sum(a.cost) AS cost, max(a.loaded_at) AS loaded_at,
                    string_agg(format('%L: %s', a.service, a.cost), ', ' ORDER BY a.service) AS parts,
                    string_agg(a.note, '; ' ORDER BY a.service) AS notes
               FROM billing.aws_actuals AS a
              GROUP BY 1, 2
             HAVING count(*) > 1 OR bool_or(a.service <> coalesce(nullif(lower(btrim(a.service)), ''), 'unnamed'))
              ORDER BY 1, 2 LOOP
        DELETE FROM billing.aws_actuals AS a
         WHERE a.month = r.month AND coalesce(nullif(lower(btrim(a.service)), ''), 'unnamed') = r.service;
        INSERT INTO billing.aws_actuals (month, service, cost, note, loaded_at)
        VALUES (r.month, r.service, r.cost,
                CASE WHEN r.n = 1 THEN r.notes
                     ELSE concat_ws('; ', r.notes, format('billing 0.4 joined %s rows: %s', r.n, r.parts)) END,
                r.loaded_at);
        IF r.n > 1 THEN
            RAISE WARNING 'billing: aws_actuals of % for service % were % rows spelled apart (%): now one, of cost %',
                         to_char(r.month, 'YYYY-MM'), r.service, r.n, r.parts, r.cost;
        END IF;
    END LOOP;
END
$$;
ALTER TABLE billing.aws_actuals ADD CONSTRAINT aws_actuals_service_check
    CHECK (service <> '' AND service = lower(btrim(service)));

-- Roles that read billing's tables (a grant on billing.month_usage, which
-- every version had) get no SELECT on the tables this version adds: a
-- GRANT ... ON ALL TABLES covers the tables there were when it ran. Each is
-- named in a WARNING with the GRANT to run. Not granted here: a grant made
-- by an extension script counts as the extension's own, which pg_dump does
-- not dump, and a restore would lose it.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT g.grantee,
                    CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END AS name
               FROM (SELECT DISTINCT a.grantee FROM pg_class AS c, aclexplode(c.relacl) AS a
                      WHERE c.oid = 'billing.month_usage'::regclass AND a.privilege_type = 'SELECT'
                        AND a.grantee <> c.relowner) AS g
              WHERE EXISTS (SELECT 1
                              FROM pg_depend AS d
                              JOIN pg_class AS c ON c.oid = d.objid AND c.relkind IN ('r', 'p', 'v', 'm')
                             WHERE d.refclassid = 'pg_extension'::regclass AND d.classid = 'pg_class'::regclass
                               AND d.refobjid = (SELECT e.oid FROM pg_extension AS e WHERE e.extname = 'billing')
                               AND d.deptype = 'e'
                               AND NOT CASE WHEN g.grantee = 0 THEN has_table_privilege('public', c.oid, 'SELECT')
                                            ELSE has_table_privilege(g.grantee, c.oid, 'SELECT') END)
              ORDER BY 2 LOOP
        RAISE WARNING 'billing: role % reads billing''s tables, but has no SELECT on those billing 0.4 adds: its reads (dashboard(), the views) fail until it is granted', r.name
            USING HINT = format('GRANT SELECT ON ALL TABLES IN SCHEMA billing TO %s;', r.name);
    END LOOP;
END
$$;

-- Every user-facing function has a comment (support functions say which
-- aggregate or type they serve).
COMMENT ON FUNCTION billing.message_cost(text, bigint, bigint, timestamptz) IS
    'Exact USD cost of one usage row at the prices in effect at `at`; NULL when it carries no usage or cannot be priced.';
COMMENT ON FUNCTION billing.message_cost(jsonb) IS
    'Exact USD cost of one message''s usage object (the data column) at today''s prices; NULL when it has no usage or cannot be priced.';
COMMENT ON FUNCTION billing.message_cost(jsonb, timestamptz) IS
    'Exact USD cost of one message''s usage object at the prices in effect at `at`; NULL when it has no usage or cannot be priced.';
COMMENT ON FUNCTION billing.cost_state_in(cstring) IS 'Input function of billing.cost_state, the cost aggregates'' state.';
COMMENT ON FUNCTION billing.cost_state_out(billing.cost_state) IS 'Output function of billing.cost_state, the cost aggregates'' state.';
COMMENT ON FUNCTION billing.cost_state_recv(internal) IS 'Binary input function of billing.cost_state (parallel workers'' states).';
COMMENT ON FUNCTION billing.cost_state_send(billing.cost_state) IS 'Binary output function of billing.cost_state (parallel workers'' states).';
COMMENT ON FUNCTION billing.cost_state_combine(billing.cost_state, billing.cost_state) IS
    'Combine function of the cost aggregates: adds two partial states (parallel workers, Citus shards).';
COMMENT ON FUNCTION billing.openai_cost_trans(billing.cost_state, text, bigint, bigint) IS 'Transition function of billing.openai_cost(text, bigint, bigint).';
COMMENT ON FUNCTION billing.openai_cost_trans(billing.cost_state, text, bigint, bigint, timestamptz) IS 'Transition function of billing.openai_cost(text, bigint, bigint, timestamptz).';
COMMENT ON FUNCTION billing.openai_cost_trans(billing.cost_state, jsonb) IS 'Transition function of billing.openai_cost(jsonb).';
COMMENT ON FUNCTION billing.openai_cost_trans(billing.cost_state, jsonb, timestamptz) IS 'Transition function of billing.openai_cost(jsonb, timestamptz).';
COMMENT ON FUNCTION billing.openai_cost_final(billing.cost_state) IS 'Final function of billing.openai_cost: the exact sum, or NULL.';
COMMENT ON FUNCTION billing.aws_cost_trans(billing.cost_state, text, numeric) IS 'Transition function of billing.aws_cost(text, numeric).';
COMMENT ON FUNCTION billing.aws_cost_trans(billing.cost_state, text, numeric, timestamptz) IS 'Transition function of billing.aws_cost(text, numeric, timestamptz).';
COMMENT ON FUNCTION billing.aws_cost_final(billing.cost_state) IS 'Final function of billing.aws_cost: the exact sum, or NULL.';
COMMENT ON FUNCTION billing.resolve_model_price(text, timestamptz) IS
    'The catalog row that prices a stored model name at `at` (its model and effective_from, after the name''s candidates: exact, undated, normalised), or NULL.';
COMMENT ON FUNCTION billing.resolve_aws_price(text, timestamptz) IS
    'The catalog row that prices an AWS service at `at` (its service and effective_from), or NULL.';
COMMENT ON FUNCTION billing.untrack_profiles(regclass) IS
    'Stops turning a profiles table''s counter increases into recorded usage; what was recorded stays.';
COMMENT ON FUNCTION billing.untrack_customers(regclass) IS
    'Forgets which customer a tracked table''s messages belong to; its costs then belong to no customer.';
