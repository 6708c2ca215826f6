#include "cost_call.h"

#include <cstring>

#include "catalog_cache.h"
#include "settings.h"

namespace billing::pg {

CostCall* new_cost_call(FunctionCallInfo fcinfo) {
  const PriceCatalog* catalog = current_catalog();
  auto* call = static_cast<CostCall*>(MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(CostCall)));
  call->catalog = catalog;
  call->now = GetCurrentTransactionStartTimestamp();
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
}  // namespace

void check_unpriced_policy(int policy, const char* kind, UnpricedReason why, const char* name, int name_len,
                           const TimestampTz* at) {
  if (policy != kUnpricedError) return;
  const char* shown = name_len >= 0 ? pnstrdup(name, name_len) : "(none)";
  const std::string_view reason = reason_for(why, kind);
  // Name the time only when the caller gave one: now() would make messages vary.
  const char* when = at == nullptr ? "" : psprintf(" at %s", timestamptz_to_str(*at));
  ereport(ERROR,
          (errcode(why == UnpricedReason::UnknownModel ? ERRCODE_UNDEFINED_OBJECT : ERRCODE_INVALID_PARAMETER_VALUE),
           errmsg("billing: %s \"%s\" cannot be priced%s: %.*s", kind, shown, when,
                  static_cast<int>(reason.size()), reason.data()),
           errhint("Add a row to billing.%s, or set billing.unknown_%s to 'warn' or 'ignore'.",
                   std::strcmp(kind, "model") == 0 ? "model_prices" : "aws_prices", kind)));
}

void warn_unpriced(const CostState& s, const char* kind, const char* setting) {
  if (s.unpriced_rows == 0) return;
  const std::string_view name = s.first_unpriced_name();
  const std::string_view reason = reason_for(static_cast<UnpricedReason>(s.first_reason), kind);
  ereport(WARNING,
          (errcode(ERRCODE_WARNING),
           errmsg("billing: %s \"%.*s\" cannot be priced: %.*s", kind, static_cast<int>(name.size()), name.data(),
                  static_cast<int>(reason.size()), reason.data()),
           errdetail("%lld row(s) were left out of the total.", static_cast<long long>(s.unpriced_rows)),
           errhint("Add the missing price to billing.%s, or set %s = 'ignore'.",
                   std::strcmp(kind, "model") == 0 ? "model_prices" : "aws_prices", setting)));
}

void warn_invalid_usage(const CostState& s) {
  if (s.invalid_rows == 0) return;
  char problem[256];
  if (describe_first_problem(s, problem, sizeof problem) == 0) strlcpy(problem, "usage cannot be read", sizeof problem);
  ereport(WARNING,
          (errcode(ERRCODE_WARNING), errmsg("billing: %s", problem),
           errdetail("%lld row(s) with invalid usage were left out of the total.",
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
    if (*prompt > 0 || *completion > 0 || *cached > 0 || *prompt == PG_INT64_MIN || *completion == PG_INT64_MIN ||
        *cached == PG_INT64_MIN)
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
