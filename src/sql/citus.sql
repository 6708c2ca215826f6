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
ALTER FUNCTION billing._create_trigger_function(billing.tracked_tables) SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._grant_trigger_function(regprocedure, regclass) SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._grant_profiles_function() SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._grant_execute_only(regprocedure, oid[]) SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._create_trigger(billing.tracked_tables) SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._create_update_trigger(billing.tracked_tables) SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._create_row_trigger(billing.tracked_tables, regprocedure) SET citus.enable_ddl_propagation = off;
ALTER FUNCTION billing._restore_row_triggers(billing.tracked_tables) SET citus.enable_ddl_propagation = off;
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
-- It holds one row: (singleton, model_prices, aws_prices, settings,
-- version), each table's rows as a jsonb array, and the version: a fresh
-- value of billing.catalog_generation at every change (NULL once
-- unshared), which each node also keeps in billing.catalog_state.
-- billing's partial twins stamp it on the states a worker sends, and the
-- coordinator refuses a state priced with another version than its own
-- snapshot sees (src/pg/cost_state_type.cpp).

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

REVOKE ALL ON FUNCTION billing._catalog_sent(), billing._catalog_received(), billing.citus_share_catalog(),
    billing.citus_unshare_catalog() FROM PUBLIC;
ALTER FUNCTION billing._catalog_sent() SECURITY DEFINER;
ALTER FUNCTION billing._catalog_received() SECURITY DEFINER;

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
-- (_citus_problem_rows). merge() takes the ledger into the rollups
-- (_citus_take_ledger: a distributed UPDATE ... RETURNING that marks its
-- rows with the merge's epoch and sends them to billing.usage_ledger, in
-- merge()'s transaction, then folded with the local ledger; the reads
-- leave out the epochs their snapshot sees merged, and a later merge
-- deletes them: billing.ledger_merges, below). The backfill and the rebuild of a stale month read the
-- table under a SHARE lock (Citus takes it on every shard: writers wait),
-- not row locks. These objects belong to no extension: untrack_messages,
-- the table's DROP and DROP EXTENSION billing (_citus_extension_dropped,
-- below) drop them.

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

-- Whether tracked table p_source is followed by its shards' triggers.
CREATE FUNCTION billing._citus_triggered(p_source smallint) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT billing._citus_companion(p_source, 'ledger') IS NOT NULL $$;

-- The merges of a distributed ledger (docs/citus.md, "Merges and the
-- two-phase commit"). Citus commits a transaction on the coordinator first,
-- then on each worker, and each node reads with its own snapshot: a read
-- that falls between would count a write twice (in the rollups here, and
-- still in a worker's ledger) or not at all, if merge() moved the rows with
-- a DELETE. So merge() does not delete them: in its transaction it marks
-- them on the workers (merged_by = its epoch), copies them into
-- billing.usage_ledger and records the epoch here, on the coordinator. A
-- read leaves out of the workers' ledgers exactly the epochs its own
-- snapshot here sees merged (_citus_ledger_rows), whatever a worker's
-- snapshot says, and fails on a row whose merge is still committing on its
-- worker (_citus_ledger_row_settled). A later merge deletes an epoch's rows
-- once every snapshot here sees it merged ('purged'), and the one after
-- forgets it.
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

-- C bodies: src/pg/xact_status.cpp
CREATE FUNCTION billing._xact_committed(xid) RETURNS boolean
AS 'MODULE_PATHNAME', 'xact_committed' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE FUNCTION billing._xact_before_every_snapshot(xid8, regclass) RETURNS boolean
AS 'MODULE_PATHNAME', 'xact_before_every_snapshot' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

-- On a worker, for a row of a distributed ledger that the reading shard
-- query sees and that has an updater x (its xmax): true, or an error when
-- the row may be counted twice. Only merges update or delete those rows.
-- x committed (after this snapshot was taken), prepared (committed on the
-- coordinator, perhaps), or run by another backend of this same distributed
-- transaction: the coordinator may already see that merge, and with it the
-- row in its rollups. A merge still running elsewhere (not prepared) is no
-- such case: the coordinator cannot have committed it.
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

-- Sets up the shards' triggers of a distributed table (see above), or
-- returns why it cannot (the table is then tracked by recomputation).
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

-- Retires every row of tracked table p_source's distributed ledger not yet
-- merged, in the caller's transaction, which has made them obsolete (a
-- backfill that reads the whole table, a TRUNCATE): marked with a new
-- epoch recorded as merged, so that the reads leave them out exactly when
-- they see the caller's transaction, and deleted by a later merge.
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

REVOKE ALL ON FUNCTION billing._citus_set_up_triggers(billing.tracked_tables),
    billing._citus_create_trigger_functions(billing.tracked_tables),
    billing._citus_truncate_trigger(billing.tracked_tables, boolean),
    billing._citus_drop_truncate_copies(text), billing._citus_drop_triggers(smallint), billing._citus_take_ledger(smallint, boolean), billing._citus_retire_ledger(smallint),
    billing._citus_ship_recorded(billing.tracked_tables), billing._citus_table_altered() FROM PUBLIC;

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

-- The partial twins of the cost aggregates, for Citus's workers: each is
-- what Citus's worker_partial_agg(<aggregate>, ...) computes for its
-- aggregate (the same transition function, state and initial value, the
-- state as text: to_cstring(<aggregate without its final function>)), so
-- that the coordinator's coord_combine_agg reads its result unchanged.
-- billing's planner hook plans a worker's worker_partial_agg call as its
-- twin (src/pg/citus_partials.cpp; setting billing.citus_partial_aggregates):
-- the native aggregate's cost per row instead of about twice it. Their
-- final function also stamps the state with the version of the shared
-- catalog that priced it, which the coordinator checks against its own
-- snapshot's when it reads the state (cost_state_in): a query that runs
-- across a price change fails instead of adding up two catalogs' totals.
-- C body: src/pg/cost_state_type.cpp (cost_state_stamped_out)
CREATE FUNCTION billing._citus_partial_state_out(billing.cost_state) RETURNS cstring
AS 'MODULE_PATHNAME', 'cost_state_stamped_out'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
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
