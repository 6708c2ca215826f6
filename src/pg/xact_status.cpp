// What billing's Citus merges ask about transactions (src/sql/citus.sql,
// "The merges of a distributed ledger"): whether one committed, and whether
// every snapshot on this node sees it as finished. SQL has no way to ask
// either of a 32-bit xid stored in a row's xmax, nor of the oldest snapshot
// of every backend (pg_stat_activity hides other roles' backend_xmin).
#include "postgres_headers.h"

extern "C" {
#include "access/relation.h"
#include "access/transam.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "utils/xid8.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(xact_committed);
PG_FUNCTION_INFO_V1(xact_before_every_snapshot);
}

// billing._xact_committed(xid): whether the transaction committed. For the
// xmax of a row the caller's snapshot still sees: true means it committed
// after that snapshot was taken. False for an xid that is not a normal one
// (0: no updater) or is older than the oldest this node still knows.
extern "C" Datum xact_committed(PG_FUNCTION_ARGS) {
  const TransactionId xid = DatumGetTransactionId(PG_GETARG_DATUM(0));
  if (!TransactionIdIsNormal(xid)) PG_RETURN_BOOL(false);
  // An xid older than the commit log's horizon has no status left to read
  // (a row still visible with such an updater was not deleted by it); the
  // lock keeps the log from being truncated meanwhile, as pg_xact_status does.
  LWLockAcquire(XactTruncationLock, LW_SHARED);
  const bool committed =
      !TransactionIdPrecedes(xid, ShmemVariableCache->oldestClogXid) && TransactionIdDidCommit(xid);
  LWLockRelease(XactTruncationLock);
  PG_RETURN_BOOL(committed);
}

// billing._xact_before_every_snapshot(xid8, regclass): whether every
// snapshot that a backend may still read table t with sees transaction x as
// finished: x precedes the oldest xmin of this database's backends (and of
// the replication slots that hold back t's dead rows). Not the horizon of
// shared catalogs, which a logical replication slot holds back for as long
// as it lags (Citus's shard moves make such slots), but the horizon of t.
extern "C" Datum xact_before_every_snapshot(PG_FUNCTION_ARGS) {
  const FullTransactionId x = PG_GETARG_FULLTRANSACTIONID(0);
  const Oid table = PG_GETARG_OID(1);
  const FullTransactionId next = ReadNextFullTransactionId();
  // x must be a finished transaction of this node's recent past
  if (!FullTransactionIdPrecedes(x, next)) PG_RETURN_BOOL(false);
  if (U64FromFullTransactionId(next) - U64FromFullTransactionId(x) >= static_cast<uint64>(MaxTransactionId) / 2)
    PG_RETURN_BOOL(true);  // (older than any xid a snapshot can hold)
  Relation rel = relation_open(table, AccessShareLock);
  const TransactionId horizon = GetOldestNonRemovableTransactionId(rel);
  relation_close(rel, AccessShareLock);
  PG_RETURN_BOOL(TransactionIdPrecedes(XidFromFullTransactionId(x), horizon));
}
