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
ALTER FUNCTION billing._create_trigger(billing.tracked_tables) SET citus.enable_ddl_propagation = off;
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

-- A table whose rows Citus keeps in shards cannot be tracked yet: the
-- trigger would be on the coordinator's empty shell only, and no write
-- would be counted. Refused before anything is made (track_messages
-- inserts its row here first).
CREATE FUNCTION billing._citus_tracked_table_checked() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF billing._citus_table(NEW.relation) THEN
        RAISE EXCEPTION 'billing: table % is a Citus table, which billing cannot track yet', NEW.relation
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Its rows are in shards on the workers, where billing''s trigger would not run: no write would be counted.',
                  HINT = 'Track a local table, or price the distributed table with the cost aggregates (README, "Citus").';
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
BEGIN
    IF billing._catalog_shared() AND billing._citus_coordinator() THEN
        s := billing._catalog_snapshot();
        UPDATE billing.cluster_catalog
           SET model_prices = s.model_prices, aws_prices = s.aws_prices, settings = s.settings;
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
            settings     jsonb NOT NULL
        );
        COMMENT ON TABLE billing.cluster_catalog IS
            'The coordinator''s prices and settings (billing.citus_share_catalog()): a Citus reference table that every worker copies into its own.';
        INSERT INTO billing.cluster_catalog VALUES (true, s.model_prices, s.aws_prices, s.settings);
        CREATE TRIGGER cluster_catalog_received AFTER INSERT OR UPDATE ON billing.cluster_catalog
            FOR EACH ROW EXECUTE FUNCTION billing._catalog_received();
        PERFORM create_reference_table('billing.cluster_catalog');
    ELSE
        PERFORM replicate_reference_tables();
    END IF;
    -- Written again once it is on every node: each worker takes it in.
    UPDATE billing.cluster_catalog
       SET model_prices = s.model_prices, aws_prices = s.aws_prices, settings = s.settings;
    EXECUTE 'SELECT count(DISTINCT groupid)::integer FROM pg_catalog.pg_dist_placement AS p
               JOIN pg_catalog.pg_dist_shard AS s USING (shardid)
              WHERE s.logicalrelid = ''billing.cluster_catalog''::regclass' INTO nodes;
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
    DROP TABLE IF EXISTS billing.cluster_catalog;
END
$$;
COMMENT ON FUNCTION billing.citus_unshare_catalog() IS
    'On a Citus coordinator: stops sharing its prices and settings with the workers (before DROP EXTENSION billing).';

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
DECLARE
    found boolean;
BEGIN
    IF x = '0'::xid OR NOT billing._catalog_shared() OR billing._citus_coordinator() THEN
        RETURN false;
    END IF;
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
-- (As the caller: the other connection of the same distributed transaction
-- is the caller's own, whose transaction id pg_stat_activity shows it.)

REVOKE ALL ON FUNCTION billing._catalog_sent(), billing._catalog_received(), billing.citus_share_catalog(),
    billing.citus_unshare_catalog() FROM PUBLIC;
ALTER FUNCTION billing._catalog_sent() SECURITY DEFINER;
ALTER FUNCTION billing._catalog_received() SECURITY DEFINER;
