// SQL: billing._ddl_moves_partitions(pg_ddl_command),
// billing._ddl_sets_unlogged(pg_ddl_command) and billing._internal_ddl(),
// for the event triggers that follow DDL on tracked tables
// (src/sql/ddl_events.sql). An ALTER
// TABLE that attaches or detaches a partition moves rows into or out of a
// tracked table without a row trigger firing, and SQL sees that command only
// as "ALTER TABLE" on the parent, as it sees ADD COLUMN; its subcommands are
// visible from C alone.
//
// Nothing here throws or holds an object with a destructor.
#include "postgres_headers.h"

#include "settings.h"

extern "C" {
#include "nodes/parsenodes.h"
#include "tcop/deparse_utility.h"

PG_FUNCTION_INFO_V1(ddl_moves_partitions);
PG_FUNCTION_INFO_V1(ddl_sets_unlogged);
PG_FUNCTION_INFO_V1(internal_ddl_active);
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

// Whether billing.internal_ddl is on: one of billing's own functions is
// changing its triggers. Read here, not by current_setting(): calling a C
// function loads the module, whose settings then replace any placeholder
// value a role without the right to set it gave before the load.
extern "C" Datum internal_ddl_active(PG_FUNCTION_ARGS) {
  PG_RETURN_BOOL(billing::pg::internal_ddl);
}
