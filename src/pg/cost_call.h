// What a cost function keeps for the length of one query, in fn_extra: the
// catalog its snapshot sees, the transaction's now(), and a small cache of
// resolved model names so that a scan resolves each distinct name once.
//
// Plain data only: it lives in the query's memory context and is never
// destroyed, so nothing here has a destructor.
#pragma once

#include "cost_state.h"
#include "postgres_headers.h"
#include "price_catalog.h"

namespace billing::pg {

struct CachedModel {
  char* name;  // copy in fn_mcxt
  int len;
  ModelResolution resolution;
};

struct CostCall {
  static constexpr int kCachedModels = 16;

  const PriceCatalog* catalog;
  TimestampTz now;
  bool warned;          // the scalar functions warn once per call site about unpriced rows
  bool warned_invalid;  // ... and once about invalid usage
  int next_slot;
  int last_hit;
  CachedModel models[kCachedModels];
};

// The call state of this function call site, created on first use. May ereport.
CostCall* cost_call(FunctionCallInfo fcinfo);

// The catalog series `name` resolves through (cached).
const ModelResolution& resolve_model_cached(FunctionCallInfo fcinfo, CostCall* call, const char* name, int len);

// Either the state the aggregate owns (updated in place) or, when called
// outside an aggregate, a fresh copy.
CostState* writable_state(FunctionCallInfo fcinfo, int argno);

// ereport for a row that could not be priced, per `policy`. Returns only
// when the policy is warn or ignore. `at` is the time the caller gave, if any.
void check_unpriced_policy(int policy, const char* kind, UnpricedReason why, const char* name, int name_len,
                           const TimestampTz* at);

// The WARNING a final function raises for a state with unpriced rows.
void warn_unpriced(const CostState& s, const char* kind, const char* setting);

// The WARNING for a state with rows whose usage could not be read.
void warn_invalid_usage(const CostState& s);

// A numeric Datum for an exact amount of atto-dollars.
Datum atto_to_numeric(Atto v);

}  // namespace billing::pg
