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
