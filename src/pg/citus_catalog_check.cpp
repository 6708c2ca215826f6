// A distributed SELECT that prices on the workers fails when the cluster's
// shared price catalog changed while its workers ran it.
//
// Citus commits a change of the shared catalog on the coordinator first,
// then on each worker, and each node reads with its own snapshot, taken
// when the query reaches it. A worker that has not committed the change
// yet is caught where it reads its catalog (billing._catalog_in_flux);
// billing's partial twins stamp the version they priced with, which the
// coordinator checks (cost_state_in). What neither sees: an aggregate that
// Citus pushes down whole (grouped by the distribution column), whose
// worker sends its final figure, and a split one run through Citus's
// worker_partial_agg (workers that do not load billing). So, once such a
// query has run (ExecutorFinish: every worker has answered), its node
// compares the version of the shared catalog that its own snapshot sees
// with the newest committed one. The same: no change committed on this
// node since the snapshot, so none on any worker either (a worker commits
// after the coordinator), and every worker priced with the snapshot's
// version. Different: a worker may have priced with the new one, and the
// query fails (SQLSTATE 40001) rather than return what may mix them.
//
// Which queries: SELECTs whose plan has a Citus custom scan and whose text
// calls one of billing's functions that price (or read its settings) where
// they run, in a database where billing is installed, by a role that may
// read billing.catalog_state, where the catalog is shared. The
// check is conservative: a change that commits while such a query runs
// fails it even if no worker saw the change.
#include "citus_catalog_check.h"

#include <cctype>
#include <cstring>

#include "catalog_cache.h"
#include "postgres_headers.h"

extern "C" {
#include "access/parallel.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/plannodes.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
}

namespace billing::pg {

namespace {

ExecutorFinish_hook_type previous_finish = nullptr;

// Whether text calls one of billing's functions that read the catalog or
// its settings where they run (case-insensitive: a name in a query's text
// may be written in capitals). Other queries that name billing (its views,
// the reads of a distributed ledger) price on the coordinator only.
bool calls_pricing(const char* text) {
  static const char* const kNames[] = {"openai_cost", "aws_cost",    "message_cost", "usage_cost",
                                       "month_of",    "month_start", "month_end",    "model_price",
                                       "aws_price",   "_citus_partial_"};
  if (text == nullptr) return false;
  for (const char* p = text; *p != '\0'; ++p)
    for (const char* name : kNames)
      if (std::tolower(static_cast<unsigned char>(*p)) == name[0] && strncasecmp(p, name, std::strlen(name)) == 0)
        return true;
  return false;
}

// Whether the plan runs a Citus distributed query (one of Citus's custom scans).
bool citus_scan(Plan* plan) {
  if (plan == nullptr) return false;
  if (IsA(plan, CustomScan)) {
    const CustomScanMethods* m = reinterpret_cast<CustomScan*>(plan)->methods;
    if (m != nullptr && m->CustomName != nullptr && std::strncmp(m->CustomName, "Citus", 5) == 0) return true;
  }
  if (citus_scan(plan->lefttree) || citus_scan(plan->righttree)) return true;
  if (IsA(plan, Append)) {
    ListCell* lc;
    foreach (lc, reinterpret_cast<Append*>(plan)->appendplans)
      if (citus_scan(static_cast<Plan*>(lfirst(lc)))) return true;
  }
  if (IsA(plan, SubqueryScan)) return citus_scan(reinterpret_cast<SubqueryScan*>(plan)->subplan);
  return false;
}

bool distributed_billing_query(const QueryDesc* q) {
  // (reads only: an application's write must never fail for billing, and a
  // word in its data could look like a call)
  if (q->plannedstmt == nullptr || q->plannedstmt->commandType != CMD_SELECT) return false;
  bool distributed = citus_scan(q->plannedstmt->planTree);
  ListCell* lc;
  foreach (lc, q->plannedstmt->subplans)
    distributed = distributed || citus_scan(static_cast<Plan*>(lfirst(lc)));
  return distributed && calls_pricing(q->sourceText);
}

// billing.catalog_state, when billing is installed here and the current
// role may read it (one that may not cannot have priced anything either).
bool catalog_state_readable() {
  if (!OidIsValid(get_extension_oid("billing", true))) return false;
  const Oid schema = get_namespace_oid("billing", true);
  if (!OidIsValid(schema) || pg_namespace_aclcheck(schema, GetUserId(), ACL_USAGE) != ACLCHECK_OK) return false;
  const Oid table = get_relname_relid("catalog_state", schema);
  return OidIsValid(table) && pg_class_aclcheck(table, GetUserId(), ACL_SELECT) == ACLCHECK_OK;
}

void check_catalog_unchanged(const QueryDesc* q) {
  if (!catalog_state_readable()) return;
  int64_t seen = 0;
  PushActiveSnapshot(q->snapshot);
  const bool shared = snapshot_shared_catalog_version(&seen);
  PopActiveSnapshot();
  int64_t newest = 0;
  PushActiveSnapshot(GetLatestSnapshot());
  const bool shared_now = snapshot_shared_catalog_version(&newest);
  PopActiveSnapshot();
  if (!shared && !shared_now) return;
  if (shared == shared_now && seen == newest) return;
  ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                  errmsg("billing: the cluster's price catalog changed while this distributed query ran"),
                  errdetail("This query's snapshot sees version %lld of the shared catalog, and version %lld "
                            "has committed since: its workers may have priced with either, and the query "
                            "fails rather than return figures that may mix them.",
                            static_cast<long long>(seen), static_cast<long long>(newest)),
                  errhint("Run the query again (in a REPEATABLE READ transaction that began before the "
                          "change: in a new transaction).")));
}

void billing_executor_finish(QueryDesc* q) {
  if (previous_finish != nullptr)
    previous_finish(q);
  else
    standard_ExecutorFinish(q);
  if (!IsParallelWorker() && q->snapshot != nullptr && distributed_billing_query(q)) check_catalog_unchanged(q);
}

}  // namespace

void citus_catalog_check_init() {
  previous_finish = ExecutorFinish_hook;
  ExecutorFinish_hook = billing_executor_finish;
}

}  // namespace billing::pg
