// SQL: billing._ddl_moves_partitions(pg_ddl_command),
// billing._ddl_sets_unlogged(pg_ddl_command),
// billing._ddl_alters_column_types(pg_ddl_command),
// billing._ddl_renames_enum_value(pg_ddl_command),
// billing._ddl_renamed_from(pg_ddl_command), billing._internal_ddl() and
// the event trigger functions billing._trigger_replace_guard(),
// billing._column_types_changing() and billing._partition_attaching_guard(),
// for the event triggers that follow DDL on tracked tables
// (src/sql/ddl_events.sql). An ALTER
// TABLE that attaches or detaches a partition moves rows into or out of a
// tracked table without a row trigger firing, and SQL sees that command only
// as "ALTER TABLE" on the parent, as it sees ADD COLUMN; its subcommands are
// visible from C alone.
//
// Nothing here throws or holds an object with a destructor.
#include "billing_function.h"
#include "postgres_headers.h"

#include "settings.h"

extern "C" {
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "nodes/parsenodes.h"
#include "nodes/value.h"
#include "tcop/deparse_utility.h"
#include "catalog/pg_type.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(ddl_moves_partitions);
PG_FUNCTION_INFO_V1(ddl_sets_unlogged);
PG_FUNCTION_INFO_V1(ddl_alters_column_types);
PG_FUNCTION_INFO_V1(internal_ddl_active);
PG_FUNCTION_INFO_V1(trigger_replace_guard);
PG_FUNCTION_INFO_V1(column_types_changing);
PG_FUNCTION_INFO_V1(partition_attaching);
PG_FUNCTION_INFO_V1(ddl_renames_enum_value);
PG_FUNCTION_INFO_V1(ddl_renamed_from);
}

namespace {

// Whether the collected command is an ALTER TABLE with a subcommand for
// which `wanted` is true.
template <typename Predicate>
bool has_subcommand(const CollectedCommand* command, Predicate wanted) {
  if (command == nullptr || command->type != SCT_AlterTable) return false;
  ListCell* cell;
  foreach (cell, command->d.alterTable.subcmds) {
    const auto* collected = static_cast<const CollectedATSubcmd*>(lfirst(cell));
    const Node* parsed = collected->parsetree;
    if (parsed != nullptr && IsA(parsed, AlterTableCmd) && wanted(reinterpret_cast<const AlterTableCmd*>(parsed)->subtype))
      return true;
  }
  return false;
}

}  // namespace

// Whether the collected command is an ALTER TABLE with an ATTACH PARTITION
// or DETACH PARTITION (plain, CONCURRENTLY or FINALIZE) among its subcommands.
extern "C" Datum ddl_moves_partitions(PG_FUNCTION_ARGS) {
  const auto* command = reinterpret_cast<const CollectedCommand*>(PG_GETARG_POINTER(0));
  PG_RETURN_BOOL(has_subcommand(command, [](AlterTableType t) {
    return t == AT_AttachPartition || t == AT_DetachPartition || t == AT_DetachPartitionFinalize;
  }));
}

// Whether the collected command is an ALTER TABLE ... SET UNLOGGED: the one
// change that makes a table a crash empties (billing refuses it on a
// tracked table, whose costs it would keep).
extern "C" Datum ddl_sets_unlogged(PG_FUNCTION_ARGS) {
  const auto* command = reinterpret_cast<const CollectedCommand*>(PG_GETARG_POINTER(0));
  PG_RETURN_BOOL(has_subcommand(command, [](AlterTableType t) { return t == AT_SetUnLogged; }));
}

// Whether the collected command is an ALTER TABLE ... ALTER COLUMN ... TYPE:
// the command billing._column_types_changing saw start (it drops billing's
// row triggers, made again at its end). Not any ALTER TABLE of a table
// found without them: a restore's ALTER TABLE ... ADD CONSTRAINT runs
// before the restore makes them itself.
extern "C" Datum ddl_alters_column_types(PG_FUNCTION_ARGS) {
  const auto* command = reinterpret_cast<const CollectedCommand*>(PG_GETARG_POINTER(0));
  PG_RETURN_BOOL(has_subcommand(command, [](AlterTableType t) { return t == AT_AlterColumnType; }));
}

// Whether billing.internal_ddl is on: one of billing's own functions is
// changing its triggers. Read here, not by current_setting(): calling a C
// function loads the module, whose settings then replace any placeholder
// value a role without the right to set it gave before the load.
extern "C" Datum internal_ddl_active(PG_FUNCTION_ARGS) {
  PG_RETURN_BOOL(billing::pg::internal_ddl);
}

// ddl_command_start of CREATE TRIGGER: CREATE OR REPLACE TRIGGER of one of
// billing's triggers on a tracked table is refused, unless billing itself
// runs it (billing.internal_ddl). Only the statement says that it replaces
// (the trigger keeps its OID and name), and only C sees the statement.
// Which triggers are billing's, SQL says (billing._billings_trigger).
extern "C" Datum trigger_replace_guard(PG_FUNCTION_ARGS) {
  if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
    ereport(ERROR, (errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
                    errmsg("billing: billing._trigger_replace_guard() runs only as an event trigger")));
  const auto* data = reinterpret_cast<const EventTriggerData*>(fcinfo->context);
  if (billing::pg::internal_ddl || data->parsetree == nullptr || !IsA(data->parsetree, CreateTrigStmt))
    PG_RETURN_VOID();
  const auto* stmt = reinterpret_cast<const CreateTrigStmt*>(data->parsetree);
  if (!stmt->replace || stmt->relation == nullptr || stmt->trigname == nullptr) PG_RETURN_VOID();
  const Oid relid = RangeVarGetRelid(stmt->relation, NoLock, true);
  if (!OidIsValid(relid)) PG_RETURN_VOID();
  const Oid trigger = get_trigger_oid(relid, stmt->trigname, true);
  if (!OidIsValid(trigger)) PG_RETURN_VOID();  // (nothing to replace: a new trigger, checked at its end)
  const Oid argtypes[1] = {OIDOID};
  const Oid check = billing::pg::billing_function("_billings_trigger", 1, argtypes);
  if (!OidIsValid(check)) PG_RETURN_VOID();
  if (DatumGetBool(OidFunctionCall1(check, ObjectIdGetDatum(trigger))))
    ereport(ERROR, (errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
                    errmsg("billing: CREATE OR REPLACE TRIGGER would replace billing's trigger %s on tracked table %s",
                           stmt->trigname,
                           quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid))),
                    errhint("To stop billing a table, untrack it: billing.untrack_messages() or "
                            "billing.untrack_profiles().")));
  PG_RETURN_VOID();
}

// ddl_command_start of ALTER TABLE: the columns whose type an ALTER TABLE
// ... ALTER COLUMN ... TYPE changes are passed, with the table, to
// billing._lift_row_triggers(oid, text[]), before PostgreSQL refuses to
// change the type of a column a trigger lists (billing's UPDATE OF list and
// WHEN clause): the app's migrations (Rails' change_column, Django's
// AlterField) failed on every tracked table. Which columns and tables
// matter, and what is done, SQL says; only C sees the statement here.
extern "C" Datum column_types_changing(PG_FUNCTION_ARGS) {
  if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
    ereport(ERROR, (errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
                    errmsg("billing: billing._column_types_changing() runs only as an event trigger")));
  const auto* data = reinterpret_cast<const EventTriggerData*>(fcinfo->context);
  if (billing::pg::internal_ddl || data->parsetree == nullptr || !IsA(data->parsetree, AlterTableStmt))
    PG_RETURN_VOID();
  const auto* stmt = reinterpret_cast<const AlterTableStmt*>(data->parsetree);
  if (stmt->objtype != OBJECT_TABLE || stmt->relation == nullptr) PG_RETURN_VOID();
  List* columns = NIL;
  ListCell* cell;
  foreach (cell, stmt->cmds) {
    const Node* node = static_cast<const Node*>(lfirst(cell));
    if (!IsA(node, AlterTableCmd)) continue;
    const auto* cmd = reinterpret_cast<const AlterTableCmd*>(node);
    switch (cmd->subtype) {
      case AT_AlterColumnType:
        if (cmd->name != nullptr) columns = lappend(columns, DatumGetPointer(CStringGetTextDatum(cmd->name)));
        break;
      // A statement that also names triggers (ENABLE ALWAYS TRIGGER
      // billing_track, ...) or drops a column would find billing's triggers
      // gone, or drop a column billing reads without the refusal its
      // trigger gives: PostgreSQL's refusal of the type change stands there.
      case AT_EnableTrig:
      case AT_EnableAlwaysTrig:
      case AT_EnableReplicaTrig:
      case AT_DisableTrig:
      case AT_EnableTrigAll:
      case AT_DisableTrigAll:
      case AT_EnableTrigUser:
      case AT_DisableTrigUser:
      case AT_DropColumn:
        PG_RETURN_VOID();
      default:
        break;
    }
  }
  if (columns == NIL) PG_RETURN_VOID();
  const Oid relid = RangeVarGetRelid(stmt->relation, NoLock, true);
  if (!OidIsValid(relid)) PG_RETURN_VOID();  // (ALTER TABLE IF EXISTS of no table: PostgreSQL says so)
  // Only for the table's owner, whose ALTER PostgreSQL lets through:
  // _lift_row_triggers runs as billing's owner and locks the table, so any
  // other role's ALTER queued that lock ahead of the app's writes before
  // PostgreSQL refused it ("must be owner").
  if (!pg_class_ownercheck(relid, GetUserId())) PG_RETURN_VOID();
  const Oid argtypes[2] = {OIDOID, TEXTARRAYOID};
  const Oid lift = billing::pg::billing_function("_lift_row_triggers", 2, argtypes);
  if (!OidIsValid(lift)) PG_RETURN_VOID();
  const int n = list_length(columns);
  auto* items = static_cast<Datum*>(palloc(sizeof(Datum) * n));
  for (int i = 0; i < n; ++i) items[i] = PointerGetDatum(list_nth(columns, i));
  ArrayType* array = construct_array(items, n, TEXTOID, -1, false, TYPALIGN_INT);
  OidFunctionCall2(lift, ObjectIdGetDatum(relid), PointerGetDatum(array));
  PG_RETURN_VOID();
}

// ddl_command_start of ALTER TABLE: each ATTACH PARTITION's parent and
// partition are passed to billing._partition_attaching(oid, oid), which
// refuses, with the way out in its hint, a table tracked on its own that
// is attached under a tracked table: PostgreSQL copies billing's row
// triggers onto it and failed with its bare "trigger ... already exists".
// Which tables clash, SQL says; only C sees the statement here.
extern "C" Datum partition_attaching(PG_FUNCTION_ARGS) {
  if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
    ereport(ERROR, (errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
                    errmsg("billing: billing._partition_attaching_guard() runs only as an event trigger")));
  const auto* data = reinterpret_cast<const EventTriggerData*>(fcinfo->context);
  if (billing::pg::internal_ddl || data->parsetree == nullptr || !IsA(data->parsetree, AlterTableStmt))
    PG_RETURN_VOID();
  const auto* stmt = reinterpret_cast<const AlterTableStmt*>(data->parsetree);
  if (stmt->relation == nullptr) PG_RETURN_VOID();
  const Oid argtypes[2] = {OIDOID, OIDOID};
  Oid check = InvalidOid;
  Oid parent = InvalidOid;
  ListCell* cell;
  foreach (cell, stmt->cmds) {
    const Node* node = static_cast<const Node*>(lfirst(cell));
    if (!IsA(node, AlterTableCmd)) continue;
    const auto* cmd = reinterpret_cast<const AlterTableCmd*>(node);
    if (cmd->subtype != AT_AttachPartition || cmd->def == nullptr || !IsA(cmd->def, PartitionCmd)) continue;
    const RangeVar* name = reinterpret_cast<const PartitionCmd*>(cmd->def)->name;
    if (name == nullptr) continue;
    if (!OidIsValid(parent)) {
      parent = RangeVarGetRelid(stmt->relation, NoLock, true);
      // (no such table, or one the role may not alter: PostgreSQL says so,
      // and billing tells no other role what it tracks)
      if (!OidIsValid(parent) || !pg_class_ownercheck(parent, GetUserId())) PG_RETURN_VOID();
      check = billing::pg::billing_function("_partition_attaching", 2, argtypes);
      if (!OidIsValid(check)) PG_RETURN_VOID();
    }
    const Oid partition = RangeVarGetRelid(name, NoLock, true);
    if (OidIsValid(partition) && pg_class_ownercheck(partition, GetUserId())) OidFunctionCall2(check, ObjectIdGetDatum(parent), ObjectIdGetDatum(partition));
  }
  PG_RETURN_VOID();
}

// Whether the collected command is ALTER TYPE ... RENAME VALUE: every row
// of a tracked table whose role column has that enum type now reads
// another label, with no write its trigger could see (SQL sees the
// command only as "ALTER TYPE", as it sees ADD VALUE, which changes no row).
extern "C" Datum ddl_renames_enum_value(PG_FUNCTION_ARGS) {
  const auto* command = reinterpret_cast<const CollectedCommand*>(PG_GETARG_POINTER(0));
  if (command == nullptr || command->type != SCT_Simple || command->parsetree == nullptr ||
      !IsA(command->parsetree, AlterEnumStmt))
    PG_RETURN_BOOL(false);
  PG_RETURN_BOOL(reinterpret_cast<const AlterEnumStmt*>(command->parsetree)->oldVal != nullptr);
}

// The name a relation had before the collected command renamed it (ALTER
// TABLE, VIEW, INDEX, ... RENAME TO), as the command wrote it, or moved it
// to another schema (ALTER TABLE ... SET SCHEMA), schema-qualified; for
// RENAME COLUMN, the column's former name; NULL for any other command. A
// tracked table or column renamed or moved may be the first half of a
// swap, after which billing would follow the one the app no longer writes.
extern "C" Datum ddl_renamed_from(PG_FUNCTION_ARGS) {
  const auto* command = reinterpret_cast<const CollectedCommand*>(PG_GETARG_POINTER(0));
  // (SET SCHEMA is collected with the former schema as its secondary object)
  if (command != nullptr && command->type == SCT_Simple && command->parsetree != nullptr &&
      IsA(command->parsetree, AlterObjectSchemaStmt) && command->d.simple.address.classId == RelationRelationId &&
      command->d.simple.address.objectSubId == 0 &&
      command->d.simple.secondaryObject.classId == NamespaceRelationId) {
    const char* schema = get_namespace_name(command->d.simple.secondaryObject.objectId);
    const char* name = get_rel_name(command->d.simple.address.objectId);
    if (schema == nullptr || name == nullptr) PG_RETURN_NULL();
    PG_RETURN_TEXT_P(cstring_to_text(quote_qualified_identifier(schema, name)));
  }
  if (command == nullptr || command->type != SCT_Simple || command->parsetree == nullptr ||
      !IsA(command->parsetree, RenameStmt))
    PG_RETURN_NULL();
  const auto* stmt = reinterpret_cast<const RenameStmt*>(command->parsetree);
  if (stmt->renameType == OBJECT_COLUMN && stmt->subname != nullptr)
    PG_RETURN_TEXT_P(cstring_to_text(quote_identifier(stmt->subname)));
  const bool relation = stmt->renameType == OBJECT_TABLE || stmt->renameType == OBJECT_FOREIGN_TABLE ||
                        stmt->renameType == OBJECT_VIEW || stmt->renameType == OBJECT_MATVIEW ||
                        stmt->renameType == OBJECT_INDEX || stmt->renameType == OBJECT_SEQUENCE;
  if (!relation || stmt->relation == nullptr || stmt->relation->relname == nullptr) PG_RETURN_NULL();
  PG_RETURN_TEXT_P(cstring_to_text(quote_qualified_identifier(stmt->relation->schemaname, stmt->relation->relname)));
}
