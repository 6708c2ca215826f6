// What a cost function keeps for the length of one query at its call site
// (fn_extra, or call_site_memory below when the caller makes a new FmgrInfo
// for every row, as Citus does): the catalog its snapshot sees, the
// transaction's now(), the model names it met with their resolution and
// last price (src/core/price_cache.h), so that a scan resolves each
// distinct name once and looks a price up by date only when a row's time
// leaves the span of the name's last price, and the keys of the last usage
// object (UsageLayout, src/core/usage.h).
//
// Plain data only: it lives in the query's memory context and is never
// destroyed, so nothing here has a destructor.
#pragma once

#include "cost_state.h"
#include "postgres_headers.h"
#include "price_cache.h"
#include "price_catalog.h"
#include "usage.h"

namespace billing::pg {

struct CostCall {
  const PriceCatalog* catalog;
  TimestampTz now;
  bool warned;          // the scalar functions warn once per call site about unpriced rows
  bool warned_invalid;  // ... and once about invalid usage
  PriceCache prices;    // zeroed: empty
  UsageLayout layout;   // the jsonb forms' last usage keys; zeroed: none yet
  uintptr_t previous_usage;  // where the previous row's jsonb was (openai_cost.cpp, prefetch_next_usage)
};

// Memory that a function keeps at its call site for the rest of the query,
// zeroed when new (*fresh). Ordinarily fn_extra, in fn_mcxt; but Citus calls
// an aggregate's own functions through an FmgrInfo of its own, made afresh
// for every row (worker_partial_agg_sfunc) or group (coord_combine_agg_ffunc),
// so an aggregate's call site is also found by its query: the executor's
// query context, the Aggref and the function, in a backend-wide list whose
// entries leave it when that context goes (a reset callback). The memory is
// allocated in that context, which is where fn_mcxt points for an
// aggregate's functions anyway, so it lives exactly as long either way.
// `size` must be the same for every call with the same function. May
// ereport (out of memory) only when it allocates.
void* call_site_memory(FunctionCallInfo fcinfo, size_t size, bool* fresh);

// Creates the call state of this call site (cost_call's first use), or finds
// the one of this query's call site (call_site_memory). May ereport.
CostCall* new_cost_call(FunctionCallInfo fcinfo);

// The call state of this function call site, created on first use. May
// ereport. Inline: the aggregates call it for every row.
inline CostCall* cost_call(FunctionCallInfo fcinfo) {
  auto* call = static_cast<CostCall*>(fcinfo->flinfo->fn_extra);
  return call != nullptr ? call : new_cost_call(fcinfo);
}

// The catalog series `name` resolves through (cached). The reference stays
// valid until the next lookup in `call`.
const ModelResolution& resolve_model_cached(FunctionCallInfo fcinfo, CostCall* call, const char* name, int len);

// The price of `name` at `at` (cached): price_at of its resolution.
inline CachedPrice price_cached(CostCall* call, const char* name, int len, TimestampTz at) {
  return cached_price(call->prices, *call->catalog, std::string_view(name, len), at);
}

// A copy of the state argument, for a call outside an aggregate.
CostState* copied_state(FunctionCallInfo fcinfo, int argno);

// Either the state the aggregate owns (updated in place) or, when called
// outside an aggregate, a fresh copy. Inline, for every row: the test is
// AggCheckCallContext's (an aggregate or a window aggregate calls).
inline CostState* writable_state(FunctionCallInfo fcinfo, int argno) {
  if (fcinfo->context != nullptr && (IsA(fcinfo->context, AggState) || IsA(fcinfo->context, WindowAggState)))
    return reinterpret_cast<CostState*>(PG_GETARG_POINTER(argno));
  return copied_state(fcinfo, argno);
}

// ereport for a row that could not be priced, per `policy`. Returns only
// when the policy is warn or ignore. `at` is the time the caller gave, if any.
void check_unpriced_policy(int policy, const char* kind, UnpricedReason why, const char* name, int name_len,
                           const TimestampTz* at);

// What a warning is about: an aggregate's total, or one row of a scalar
// function (which returns NULL for it and warns once per call site).
enum class WarnedFor { Total, ScalarRow };

// The WARNING a final function raises for a state with unpriced rows.
void warn_unpriced(const CostState& s, const char* kind, const char* setting, WarnedFor what = WarnedFor::Total);

// A final function under billing.unknown_model (or unknown_service) =
// 'error' given a state with unpriced rows: they were left out where the
// rows were read under another setting (on Citus, a worker's session,
// which does not have the coordinator's), and this session's setting
// decides. Raises the ERROR the first such row would have raised here
// (without its time, which the state does not keep); returns otherwise.
void error_unpriced_state(const CostState& s, const char* kind, int policy);

// The same for billing.invalid_usage = 'error' and rows with invalid usage.
void error_invalid_usage_state(const CostState& s);

// The WARNING for a state with rows whose usage could not be read.
void warn_invalid_usage(const CostState& s, WarnedFor what = WarnedFor::Total);

// A numeric Datum for an exact amount of atto-dollars.
Datum atto_to_numeric(Atto v);

// usage_cost's rule for the counts of one row (a message, or a ledger row
// that takes one back): all >= 0 or all <= 0, cached <= prompt. Makes them
// non-negative and returns whether they were negative; ereports otherwise.
bool unsign_token_counts(int64* prompt, int64* completion, int64* cached);

// The cost of non-negative counts at `p`, negated when `negative`;
// ereports when it is out of range.
Atto signed_token_cost(const TokenPrice& p, int64 prompt, int64 completion, int64 cached, bool negative);

}  // namespace billing::pg
