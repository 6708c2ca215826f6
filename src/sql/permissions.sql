-- Privileges and row-level security (README "Permissions"): which functions
-- run as the extension's owner and why, what PUBLIC may not execute, the
-- policies that let a role see a tracked table's costs only if it may read
-- that table.
-- Relies on everything before it.

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
ALTER TABLE billing.conversation_model_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing.usage_ledger ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing.stale_months ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing.estimated_prompts ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing.problem_messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.month_usage FOR SELECT USING (source_id IN (SELECT r.id FROM billing._readable_tables AS r));
CREATE POLICY source_readers ON billing.conversation_usage FOR SELECT USING (source_id IN (SELECT r.id FROM billing._readable_tables AS r));
CREATE POLICY source_readers ON billing.conversation_model_usage FOR SELECT USING (source_id IN (SELECT r.id FROM billing._readable_tables AS r));
CREATE POLICY source_readers ON billing.usage_ledger FOR SELECT USING (source_id IN (SELECT r.id FROM billing._readable_tables AS r));
CREATE POLICY source_readers ON billing.stale_months FOR SELECT USING (source_id IN (SELECT r.id FROM billing._readable_tables AS r));
CREATE POLICY source_readers ON billing.estimated_prompts FOR SELECT USING (source_id IN (SELECT r.id FROM billing._readable_tables AS r));
CREATE POLICY source_readers ON billing.problem_messages FOR SELECT USING (source_id IN (SELECT r.id FROM billing._readable_tables AS r));
ALTER VIEW billing._ledger_priced SET (security_invoker = true);
ALTER VIEW billing.current_period SET (security_invoker = true);
GRANT SELECT ON billing._readable_tables TO PUBLIC;
REVOKE ALL ON FUNCTION billing._depend_on_extension(regprocedure, regclass, name[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._create_trigger_function(billing.tracked_tables) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._grant_trigger_function(regprocedure, regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._grant_execute_only(regprocedure, oid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._create_update_trigger(billing.tracked_tables) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._profiles_counter_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._create_profiles_trigger(regclass, name, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._grant_profiles_function() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._tracked_table_altered() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._tracked_table_dropped() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._tracked_trigger_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._tracked_type_altered() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._ddl_renames_enum_value(pg_ddl_command) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._billings_trigger(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._trigger_replace_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._column_types_changing() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._drop_own_trigger(name, regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._drop_stale_triggers(regclass) FROM PUBLIC;
-- (and every other function that makes or drops billing's triggers: none
-- is for other roles; their SET billing.internal_ddl would refuse them too)
REVOKE ALL ON FUNCTION billing._create_trigger(billing.tracked_tables) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._create_truncate_trigger(regclass, smallint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._fire_as_billing_track(regclass, name, smallint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._drop_trigger_functions(smallint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._record_partitions(billing.tracked_tables) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._take_in_anew(smallint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._forget_table(smallint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._ddl_moves_partitions(pg_ddl_command) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._ddl_sets_unlogged(pg_ddl_command) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._ddl_alters_column_types(pg_ddl_command) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._ddl_renamed_from(pg_ddl_command) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._merge_step(smallint, text, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._trigger_guard(smallint, oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.rebuild_messages(regclass) FROM PUBLIC;

-- A reader sees the tracked tables it may read, no other table's name.
ALTER TABLE billing.tracked_tables ENABLE ROW LEVEL SECURITY;

CREATE POLICY source_readers ON billing.tracked_tables
    USING (pg_catalog.has_table_privilege(relation, 'SELECT'));
