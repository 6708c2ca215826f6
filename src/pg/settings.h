// Run-time settings (GUCs) of the extension, defined in _PG_init.
#pragma once

namespace billing::pg {

// What a cost function does with a row it cannot price
// (billing.unknown_model for OpenAI rows, billing.unknown_service for AWS),
// and with a row whose usage JSON cannot be read (billing.invalid_usage).
enum UnpricedPolicy { kUnpricedWarn = 0, kUnpricedError = 1, kUnpricedIgnore = 2 };

extern int unknown_model_policy;
extern int unknown_service_policy;
extern int invalid_usage_policy;

// billing.trigger_fast_path: whether track_row writes the common INSERT
// itself (on) or passes every write to the PL/pgSQL body (off).
extern bool trigger_fast_path;

// billing.merge_lock_timeout: how long merge() waits, in milliseconds, for
// a lock held on one tracked table (0: no limit).
extern int merge_lock_timeout_ms;

// billing.internal_ddl: on while one of billing's own functions drops or
// changes billing's triggers on a tracked table (a function SET clause);
// the guards of src/sql/ddl_events.sql let only those changes through.
// PGC_SUSET: no other role can turn it on.
extern bool internal_ddl;

void define_settings();

}  // namespace billing::pg
