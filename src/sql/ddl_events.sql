-- Following DDL on tracked tables: event triggers that remake a tracked
-- table's trigger function after a rename (whatever command made it) and
-- forget a dropped table.
-- Relies on tracking.sql.

-- Whether an ALTER TABLE attached or detached a partition (SQL sees the
-- command as "ALTER TABLE" on the parent, as it sees ADD COLUMN).
-- C body: src/pg/ddl_command.cpp (ddl_moves_partitions)
CREATE FUNCTION billing._ddl_moves_partitions(pg_ddl_command) RETURNS boolean
AS 'MODULE_PATHNAME', 'ddl_moves_partitions' LANGUAGE C STRICT STABLE;

-- The name a relation had before the command renamed it, or NULL.
-- C body: src/pg/ddl_command.cpp (ddl_renamed_from)
CREATE FUNCTION billing._ddl_renamed_from(pg_ddl_command) RETURNS text
AS 'MODULE_PATHNAME', 'ddl_renamed_from' LANGUAGE C STRICT STABLE;

-- Whether an ALTER TABLE made its table unlogged (SET UNLOGGED).
-- C body: src/pg/ddl_command.cpp (ddl_sets_unlogged)
CREATE FUNCTION billing._ddl_sets_unlogged(pg_ddl_command) RETURNS boolean
AS 'MODULE_PATHNAME', 'ddl_sets_unlogged' LANGUAGE C STRICT STABLE;
-- Whether it is an ALTER TABLE ... ALTER COLUMN ... TYPE. C body:
-- src/pg/ddl_command.cpp (ddl_alters_column_types).
CREATE FUNCTION billing._ddl_alters_column_types(pg_ddl_command) RETURNS boolean
AS 'MODULE_PATHNAME', 'ddl_alters_column_types' LANGUAGE C STRICT STABLE;

-- Whether one of billing's own functions is dropping or changing billing's
-- triggers (billing.internal_ddl, a superuser-only setting those functions
-- turn on in their SET clauses). C body: src/pg/ddl_command.cpp
-- (internal_ddl_active), which reads it once the module is loaded.
CREATE FUNCTION billing._internal_ddl() RETURNS boolean
AS 'MODULE_PATHNAME', 'internal_ddl_active' LANGUAGE C VOLATILE;

-- DDL on a tracked table: a partition attached or detached (at any level of
-- its tree) moved rows its trigger never saw, so the table is taken in anew;
-- a partition created or attached gets the TRUNCATE trigger; renames are
-- followed whatever command made them (ALTER INDEX, ALTER VIEW ... RENAME also rename a table), billing's own
-- trigger is found by its function, not by a name the table's owner can
-- give another trigger, and a column changed to a type billing cannot read
-- is refused with the command (the app's writes would fail otherwise).
CREATE FUNCTION billing._tracked_table_altered() RETURNS event_trigger
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
CREATE EVENT TRIGGER billing_tracked_table_altered ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'ALTER INDEX', 'ALTER VIEW', 'ALTER SEQUENCE', 'ALTER MATERIALIZED VIEW',
                 'ALTER FOREIGN TABLE', 'CREATE TABLE')
    EXECUTE FUNCTION billing._tracked_table_altered();

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
-- shard: there the ALTER is refused as before. The same for the data
-- column of a tracked profiles table (billing_track_profiles' UPDATE OF
-- list): its trigger is made again at the end if the column is still
-- jsonb (billing._restore_profiles_trigger).
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

-- A dropped tracked table takes its costs with it, as a recomputation from
-- the (now missing) table would; its trigger function goes too, and so does
-- the e-mail counter's function of a dropped profiles table.
CREATE FUNCTION billing._tracked_table_dropped() RETURNS event_trigger
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
CREATE EVENT TRIGGER billing_tracked_table_dropped ON sql_drop
    EXECUTE FUNCTION billing._tracked_table_dropped();

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
