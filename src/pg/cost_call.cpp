#include "cost_call.h"

#include <cstring>

#include "catalog_cache.h"
#include "client_text.h"
#include "settings.h"

namespace billing::pg {

namespace {

// One call site's memory in a query (call_site_memory).
struct SiteEntry {
  const Aggref* aggref;
  Oid fn_oid;
  void* memory;
  SiteEntry* next;
};

// The call sites met in one query whose context is alive. Allocated in that
// context; its reset callback takes it out of live_queries.
struct QuerySites {
  MemoryContext cxt;
  SiteEntry* sites;
  QuerySites* next;
  MemoryContextCallback forget;
};

// The queries of this backend running an aggregate of billing's now: usually
// one, more when a query runs inside another (a function in an argument).
QuerySites* live_queries = nullptr;

void forget_query(void* arg) {
  for (QuerySites** q = &live_queries; *q != nullptr; q = &(*q)->next) {
    if (*q == arg) {
      *q = (*q)->next;
      return;
    }
  }
}

// The query context of an aggregate's call, and its Aggref; false when the
// call is not an aggregate's (a window aggregate's FmgrInfo is kept anyway).
bool aggregate_site(FunctionCallInfo fcinfo, MemoryContext* cxt, const Aggref** aggref) {
  if (fcinfo->context == nullptr || !IsA(fcinfo->context, AggState)) return false;
  *aggref = AggGetAggref(fcinfo);
  const EState* estate = reinterpret_cast<const PlanState*>(fcinfo->context)->state;
  if (*aggref == nullptr || estate == nullptr || estate->es_query_cxt == nullptr) return false;
  *cxt = estate->es_query_cxt;
  return true;
}

}  // namespace

void* call_site_memory(FunctionCallInfo fcinfo, size_t size, bool* fresh) {
  *fresh = false;
  if (fcinfo->flinfo->fn_extra != nullptr) return fcinfo->flinfo->fn_extra;
  MemoryContext cxt;
  const Aggref* aggref;
  if (!aggregate_site(fcinfo, &cxt, &aggref)) {
    *fresh = true;
    return MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, size);
  }
  const Oid fn_oid = fcinfo->flinfo->fn_oid;
  QuerySites* query = live_queries;
  while (query != nullptr && query->cxt != cxt) query = query->next;
  if (query != nullptr) {
    for (SiteEntry* e = query->sites; e != nullptr; e = e->next)
      if (e->aggref == aggref && e->fn_oid == fn_oid) return e->memory;
  }
  // Allocate everything first (palloc may ereport), then link: no list
  // ever points to memory that is not all there.
  void* memory = MemoryContextAllocZero(cxt, size);
  auto* entry = static_cast<SiteEntry*>(MemoryContextAllocZero(cxt, sizeof(SiteEntry)));
  QuerySites* added = nullptr;
  if (query == nullptr) added = static_cast<QuerySites*>(MemoryContextAllocZero(cxt, sizeof(QuerySites)));
  if (added != nullptr) {
    added->cxt = cxt;
    added->forget.func = forget_query;
    added->forget.arg = added;
    MemoryContextRegisterResetCallback(cxt, &added->forget);
    added->next = live_queries;
    live_queries = added;
    query = added;
  }
  entry->aggref = aggref;
  entry->fn_oid = fn_oid;
  entry->memory = memory;
  entry->next = query->sites;
  query->sites = entry;
  *fresh = true;
  return memory;
}

CostCall* new_cost_call(FunctionCallInfo fcinfo) {
  bool fresh;
  auto* call = static_cast<CostCall*>(call_site_memory(fcinfo, sizeof(CostCall), &fresh));
  // A call site's catalog is read once per query, with the query's snapshot
  // (its first row's); a site whose read failed has none yet.
  if (call->catalog == nullptr) {
    call->catalog = current_catalog();
    call->now = GetCurrentTransactionStartTimestamp();
  }
  fcinfo->flinfo->fn_extra = call;
  return call;
}

const ModelResolution& resolve_model_cached(FunctionCallInfo, CostCall* call, const char* name, int len) {
  return cached_resolution(call->prices, *call->catalog, std::string_view(name, len));
}

CostState* copied_state(FunctionCallInfo fcinfo, int argno) {
  auto* s = reinterpret_cast<CostState*>(PG_GETARG_POINTER(argno));
  auto* copy = static_cast<CostState*>(palloc(sizeof(CostState)));
  std::memcpy(copy, s, sizeof(CostState));
  return copy;
}

namespace {
// The reason in words, for a model or a service ("usage without a model
// name" would be wrong for an AWS row without a service).
std::string_view reason_for(UnpricedReason why, const char* kind) {
  if (why == UnpricedReason::NoModel && std::strcmp(kind, "service") == 0) return "usage without a service name";
  return unpriced_reason_text(why);
}

// What fixes it: a price for an unknown model or a time without one, but
// no price can name a row's missing model or split its total.
const char* fix_for(UnpricedReason why, const char* kind) {
  const bool model = std::strcmp(kind, "model") == 0;
  if (why == UnpricedReason::NoModel)
    return model ? "Store the model's name with the usage (its \"model\" member: no price fits a row that names none)"
                 : "Record the usage with its service's name";
  if (why == UnpricedReason::NoSplit)
    return "Store prompt_tokens and completion_tokens with the usage (no price splits a total alone)";
  return model ? "Add the missing price to billing.model_prices" : "Add the missing price to billing.aws_prices";
}
}  // namespace

void check_unpriced_policy(int policy, const char* kind, UnpricedReason why, const char* name, int name_len,
                           const TimestampTz* at) {
  if (policy != kUnpricedError) return;
  const char* shown = name_len >= 0 ? client_safe(pnstrdup(name, name_len)) : "(none)";
  const std::string_view reason = reason_for(why, kind);
  // Name the time only when the caller gave one: now() would make messages vary.
  const char* when = at == nullptr ? "" : psprintf(" at %s", timestamptz_to_str(*at));
  ereport(ERROR,
          (errcode(why == UnpricedReason::UnknownModel ? ERRCODE_UNDEFINED_OBJECT : ERRCODE_INVALID_PARAMETER_VALUE),
           errmsg("billing: %s \"%s\" cannot be priced%s: %.*s", kind, shown, when,
                  static_cast<int>(reason.size()), reason.data()),
           errhint("%s, or set billing.unknown_%s to 'warn' or 'ignore'.", fix_for(why, kind), kind)));
}

namespace {
// (a scalar function has no total: it answers NULL for the row, and warns
// once per call site, not once per such row)
constexpr const char* kScalarDetail =
    "The function returns NULL for such a row; this warning is given once per query, for the first one.";
}  // namespace

void warn_unpriced(const CostState& s, const char* kind, const char* setting, WarnedFor what) {
  if (s.unpriced_rows == 0) return;
  const std::string_view name = s.first_unpriced_name();
  const char* shown = client_safe(pnstrdup(name.data(), name.size()));
  const std::string_view reason = reason_for(static_cast<UnpricedReason>(s.first_reason), kind);
  ereport(WARNING,
          (errcode(ERRCODE_WARNING),
           errmsg("billing: %s \"%s\" cannot be priced: %.*s", kind, shown, static_cast<int>(reason.size()),
                  reason.data()),
           what == WarnedFor::ScalarRow
               ? errdetail("%s", kScalarDetail)
               : errdetail("%lld row(s) were left out of the total.", static_cast<long long>(s.unpriced_rows)),
           errhint("%s, or set %s = 'ignore'.", fix_for(static_cast<UnpricedReason>(s.first_reason), kind),
                   setting)));
}

void error_unpriced_state(const CostState& s, const char* kind, int policy) {
  if (s.unpriced_rows == 0 || policy != kUnpricedError) return;
  const std::string_view name = s.first_unpriced_name();
  check_unpriced_policy(kUnpricedError, kind, static_cast<UnpricedReason>(s.first_reason), name.data(),
                        static_cast<int>(name.size()), nullptr);
}

void error_invalid_usage_state(const CostState& s) {
  if (s.invalid_rows == 0 || invalid_usage_policy != kUnpricedError) return;
  char problem[256];
  if (describe_first_problem(s, problem, sizeof problem) == 0) strlcpy(problem, "usage cannot be read", sizeof problem);
  ereport(ERROR, (errcode(static_cast<UsageError>(s.first_problem) == UsageError::OutOfRange
                              ? ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE
                              : ERRCODE_INVALID_PARAMETER_VALUE),
                  errmsg("billing: %s", client_safe(problem)),
                  errhint("billing.usage_problem(data) names the problem of each row without raising an error.")));
}

void warn_invalid_usage(const CostState& s, WarnedFor what) {
  if (s.invalid_rows == 0) return;
  char problem[256];
  if (describe_first_problem(s, problem, sizeof problem) == 0) strlcpy(problem, "usage cannot be read", sizeof problem);
  ereport(WARNING,
          (errcode(ERRCODE_WARNING), errmsg("billing: %s", client_safe(problem)),
           what == WarnedFor::ScalarRow ? errdetail("%s", kScalarDetail)
                                        : errdetail("%lld row(s) with invalid usage were left out of the total.",
                                                    static_cast<long long>(s.invalid_rows)),
           errhint("Find the rows with billing.usage_problem(data), or set billing.invalid_usage = 'ignore'.")));
}

Datum atto_to_numeric(Atto v) {
  char text[kAttoTextSize];
  format_atto(v, text, 2);  // dollars and cents at least: 2.00, 0.75, 0.00075
  return DirectFunctionCall3(numeric_in, CStringGetDatum(text), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

bool unsign_token_counts(int64* prompt, int64* completion, int64* cached) {
  const bool negative = *prompt < 0 || *completion < 0 || *cached < 0;
  if (negative) {
    // (the smallest bigint has no negation: out of range, not of the wrong sign)
    if (*prompt == PG_INT64_MIN || *completion == PG_INT64_MIN || *cached == PG_INT64_MIN)
      ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
                      errmsg("billing: a token count of %lld is out of range", static_cast<long long>(PG_INT64_MIN))));
    if (*prompt > 0 || *completion > 0 || *cached > 0)
      ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                      errmsg("billing: token counts of one row must all have the same sign")));
    *prompt = -*prompt;
    *completion = -*completion;
    *cached = -*cached;
  }
  if (*cached > *prompt)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("billing: cached tokens exceed prompt tokens")));
  return negative;
}

Atto signed_token_cost(const TokenPrice& p, int64 prompt, int64 completion, int64 cached, bool negative) {
  Atto cost;
  if (!token_cost(p, prompt, completion, cached, &cost))
    ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("billing: cost out of range")));
  return negative ? -cost : cost;
}

}  // namespace billing::pg
