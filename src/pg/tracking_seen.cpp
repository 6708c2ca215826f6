// SQL: billing._require_tracking_seen(smallint, text) (src/sql/tracking.sql),
// called by a tracked table's trigger body before it takes back what
// billing froze for a message it updates or deletes: the reply's prompt
// estimate in billing.estimated_prompts, its row in
// billing.problem_messages.
//
// The body reads those with the transaction's snapshot. Under REPEATABLE
// READ or SERIALIZABLE a snapshot taken before the merge that took the
// table in (which writes them without changing the app's rows) misses
// them: the take-back would leave the estimate counted and the problem
// listed for good. Such a write fails with a serialization failure
// instead, which these isolation levels already ask an app to retry; the
// retry's snapshot sees the merge. That merge sets the table's
// billing.tracked_tables row's backfilled; the check compares the row the
// transaction's snapshot sees with the newest committed one, and fails
// when the newest says taken in and the snapshot's does not. (A table
// taken in anew twice over, its triggers disabled and enabled again within
// one such transaction, is not seen.) READ COMMITTED takes a snapshot per
// statement: nothing to check.
//
// Nothing here throws or holds an object with a destructor.
#include "billing_function.h"
#include "postgres_headers.h"

extern "C" {
#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(require_tracking_seen);
}

namespace {

// The table's tracking as a snapshot sees its tracked_tables row: not
// tracked, tracked but read by billing itself (backfilled false), or taken
// in (true). A heap scan: the table holds a row per tracked table.
enum class Tracking { None, ReadItself, TakenIn };

Tracking tracking_seen_by(Relation rel, AttrNumber id_column, AttrNumber backfilled_column, int16 source,
                          Snapshot snapshot) {
  ScanKeyData key;
  ScanKeyInit(&key, id_column, BTEqualStrategyNumber, F_INT2EQ, Int16GetDatum(source));
  SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, snapshot, 1, &key);
  Tracking seen = Tracking::None;
  HeapTuple tuple = systable_getnext(scan);
  if (HeapTupleIsValid(tuple)) {
    bool isnull = false;
    const Datum backfilled = heap_getattr(tuple, backfilled_column, RelationGetDescr(rel), &isnull);
    seen = !isnull && DatumGetBool(backfilled) ? Tracking::TakenIn : Tracking::ReadItself;
  }
  systable_endscan(scan);
  return seen;
}

}  // namespace

extern "C" Datum require_tracking_seen(PG_FUNCTION_ARGS) {
  if (!IsolationUsesXactSnapshot()) PG_RETURN_VOID();
  const int16 source = PG_GETARG_INT16(0);
  const Oid table = get_relname_relid("tracked_tables", get_namespace_oid("billing", false));
  if (!OidIsValid(table)) PG_RETURN_VOID();
  const AttrNumber id_column = get_attnum(table, "id");
  const AttrNumber backfilled_column = get_attnum(table, "backfilled");
  if (id_column == InvalidAttrNumber || backfilled_column == InvalidAttrNumber) PG_RETURN_VOID();
  Relation rel = table_open(table, AccessShareLock);
  const Tracking seen = tracking_seen_by(rel, id_column, backfilled_column, source, GetTransactionSnapshot());
  const Tracking newest = tracking_seen_by(rel, id_column, backfilled_column, source, GetLatestSnapshot());
  table_close(rel, AccessShareLock);
  // (the row changes for other reasons too, a rename followed, a setting:
  // only a take-in the snapshot missed froze what it does not see)
  if (newest != Tracking::TakenIn || seen == Tracking::TakenIn) PG_RETURN_VOID();
  ereport(ERROR,
          (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
           errmsg("billing: could not serialize access to the frozen estimates and problem rows of tracked table %s",
                  text_to_cstring(PG_GETARG_TEXT_PP(1))),
           errdetail("A billing.merge() took the table in after this transaction's snapshot: the snapshot "
                     "does not see the prompt estimate or problem row billing keeps for this message, and "
                     "taking it back without it would leave it counted for good."),
           errhint("Retry the transaction, as for any serialization failure.")));
}
