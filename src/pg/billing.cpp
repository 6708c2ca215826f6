// Module entry point: PG_MODULE_MAGIC, settings, the catalog cache, the
// filter of warnings relayed from Citus workers, the planner hook of the
// split cost aggregates on them and the end-of-query check of the shared
// catalog (citus_catalog_check.cpp).
#include "postgres_headers.h"

#include "catalog_cache.h"
#include "citus_catalog_check.h"
#include "citus_partials.h"
#include "settings.h"
#include "worker_warnings.h"

extern "C" {
PG_MODULE_MAGIC;
void _PG_init(void);
}

namespace billing::pg {

int unknown_model_policy = kUnpricedWarn;
int unknown_service_policy = kUnpricedWarn;
int invalid_usage_policy = kUnpricedWarn;
bool trigger_fast_path = true;
char* customer_setting = nullptr;  // billing.customer: read by SQL (billing.current_customer())
bool citus_triggers = true;        // billing.citus_triggers: read by SQL (src/sql/citus.sql)
int merge_lock_timeout_ms = 10000;  // billing.merge_lock_timeout: read by SQL (billing._merge_lock_timeout())
bool internal_ddl = false;          // billing.internal_ddl: read by SQL (billing._internal_ddl())

namespace {
const struct config_enum_entry kPolicies[] = {
    {"warn", kUnpricedWarn, false},
    {"error", kUnpricedError, false},
    {"ignore", kUnpricedIgnore, false},
    {nullptr, 0, false},
};
}  // namespace

void define_settings() {
  DefineCustomEnumVariable("billing.unknown_model",
                           "What the OpenAI cost functions do with a row they cannot price.",
                           "warn: leave the row unpriced and raise one WARNING per call naming the model; "
                           "error: raise an ERROR; ignore: leave it unpriced silently.",
                           &unknown_model_policy, kUnpricedWarn, kPolicies, PGC_USERSET, 0, nullptr, nullptr,
                           nullptr);
  DefineCustomEnumVariable("billing.unknown_service",
                           "What the AWS cost functions do with a row they cannot price.",
                           "warn, error or ignore, as for billing.unknown_model.", &unknown_service_policy,
                           kUnpricedWarn, kPolicies, PGC_USERSET, 0, nullptr, nullptr, nullptr);
  DefineCustomEnumVariable("billing.invalid_usage",
                           "What the OpenAI cost functions do with usage JSON they cannot read.",
                           "warn: skip the row and raise one WARNING per call naming the first problem "
                           "and the number of such rows; error: raise an ERROR; ignore: skip it silently.",
                           &invalid_usage_policy, kUnpricedWarn, kPolicies, PGC_USERSET, 0, nullptr, nullptr,
                           nullptr);
  DefineCustomBoolVariable("billing.trigger_fast_path",
                           "Whether tracked tables' triggers write a plain INSERT's ledger row in C.",
                           "on (default): an INSERT whose data says its usage is written by the C trigger; "
                           "off: every write runs the PL/pgSQL body billing.track_N_full (same rows, slower).",
                           &trigger_fast_path, true, PGC_USERSET, 0, nullptr, nullptr, nullptr);
  DefineCustomStringVariable("billing.customer",
                             "The customer whose costs billing's reads show (empty: every customer).",
                             "Set per request by an app that shows each customer its own costs "
                             "(README \"Reading as one customer\").",
                             &customer_setting, "", PGC_USERSET, 0, nullptr, nullptr, nullptr);
  DefineCustomBoolVariable("billing.citus_triggers",
                           "Whether track_messages follows a Citus distributed table by triggers on its shards.",
                           "on (default): when the table is distributed by hash on its conversation column, "
                           "triggers on its shards write a ledger distributed like it; off, or for any other "
                           "distributed table: every billing.merge() recomputes the table (docs/citus.md).",
                           &citus_triggers, true, PGC_USERSET, 0, nullptr, nullptr, nullptr);
  DefineCustomBoolVariable("billing.citus_partial_aggregates",
                           "Whether a Citus worker runs a split cost aggregate as billing's own partial aggregate.",
                           "on (default): worker_partial_agg(<billing cost aggregate>, ...) is planned as "
                           "billing._citus_partial_<aggregate>(...), the same result at the native aggregate's "
                           "cost per row; off: through Citus's generic worker_partial_agg (docs/citus.md).",
                           &citus_partial_aggregates, true, PGC_USERSET, 0, nullptr, nullptr, nullptr);
  DefineCustomIntVariable("billing.merge_lock_timeout",
                          "How long billing.merge() waits for a lock held on one tracked table's rows or table.",
                          "A table whose lock is held longer (an app transaction left open, say) is left for "
                          "the next merge with a WARNING, and every other table goes on: no writer can stall "
                          "merging. 0: wait as long as it takes.",
                          &merge_lock_timeout_ms, 10000, 0, INT_MAX, PGC_USERSET, GUC_UNIT_MS, nullptr, nullptr,
                          nullptr);
  DefineCustomBoolVariable("billing.internal_ddl",
                           "On while billing's own functions drop or change its triggers on tracked tables.",
                           "Set only by billing's functions (a SET clause of theirs); a superuser-only setting, "
                           "so that no other role can pass the guards of billing's triggers.",
                           &internal_ddl, false, PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
                           nullptr, nullptr, nullptr);
  MarkGUCPrefixReserved("billing");
}

}  // namespace billing::pg

void _PG_init(void) {
  billing::pg::define_settings();
  billing::pg::catalog_cache_init();
  billing::pg::worker_warnings_init();
  billing::pg::citus_partials_init();
  billing::pg::citus_catalog_check_init();
}
