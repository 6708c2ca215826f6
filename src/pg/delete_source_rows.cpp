// SQL: billing._delete_source_rows(regclass, smallint)
// (src/sql/tracking.sql), what billing._forget_rows runs to delete one of
// billing's tables' rows of a source (a tracked table truncated, dropped or
// untracked).
//
// A plain DELETE reads with the transaction's snapshot. Under REPEATABLE
// READ or SERIALIZABLE one older than the rows it must delete leaves them:
// a TRUNCATE whose snapshot was taken before it waited for an app's
// INSERT, or before a merge wrote a month's rollup, left those figures
// counted for a table that is empty or gone. So the DELETE reads the
// newest committed rows instead (as PostgreSQL's own foreign key actions
// do at those levels), with SPI_execute_snapshot. READ COMMITTED takes a
// snapshot per statement: the plain one.
//
// Nothing here throws or holds an object with a destructor.
#include "billing_function.h"
#include "postgres_headers.h"

extern "C" {
#include "catalog/namespace.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(delete_source_rows);
}

extern "C" Datum delete_source_rows(PG_FUNCTION_ARGS) {
  const Oid table = PG_GETARG_OID(0);
  const int16 source = PG_GETARG_INT16(1);
  // (billing's own tables only: the function deletes by source_id)
  if (get_rel_namespace(table) != get_namespace_oid("billing", false))
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("billing: relation %u is not one of billing's tables", table)));
  const char* name = quote_qualified_identifier("billing", get_rel_name(table));
  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "billing: SPI_connect failed");
  Oid argtypes[1] = {INT2OID};
  SPIPlanPtr plan = SPI_prepare(psprintf("DELETE FROM %s WHERE source_id OPERATOR(pg_catalog.=) $1", name), 1, argtypes);
  if (plan == nullptr) elog(ERROR, "billing: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
  Datum values[1] = {Int16GetDatum(source)};
  const Snapshot snapshot = IsolationUsesXactSnapshot() ? GetLatestSnapshot() : InvalidSnapshot;
  const int rc = SPI_execute_snapshot(plan, values, nullptr, snapshot, InvalidSnapshot, false, true, 0);
  if (rc != SPI_OK_DELETE) elog(ERROR, "billing: deleting the rows of source %d from %s failed: %s",
                                static_cast<int>(source), name, SPI_result_code_string(rc));
  const uint64 deleted = SPI_processed;
  SPI_finish();
  PG_RETURN_INT64(static_cast<int64>(deleted));
}
