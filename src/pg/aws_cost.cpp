// SQL: billing.aws_cost(service, quantity [, at]) aggregate.
#include "cost_call.h"
#include "pg_numeric.h"
#include "settings.h"

extern "C" {
PG_FUNCTION_INFO_V1(aws_cost_trans);
PG_FUNCTION_INFO_V1(aws_cost_final);
}

using namespace billing;
using namespace billing::pg;

namespace {

// A quantity as millionths of a unit; ereports when it is not a usable amount.
int64 quantity_micro(Datum d) {
  const struct varlena* v = PG_DETOAST_DATUM_PACKED(d);
  const ScaledNumeric q = decode_pg_numeric(reinterpret_cast<const uint8_t*>(v), VARSIZE_ANY(v), kQuantityScale);
  switch (q.status) {
    case NumericStatus::Ok:
      break;
    case NumericStatus::OutOfRange:
      ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("billing: quantity is out of range")));
      break;
    case NumericStatus::TooPrecise:
      ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                      errmsg("billing: quantity has more than %d decimals", kQuantityScale)));
      break;
    default:
      ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("billing: quantity must be a finite number")));
  }
  if (q.value < 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("billing: quantity must not be negative")));
  return q.value;
}

}  // namespace

// aws_cost_trans(state, service text, quantity numeric [, at timestamptz])
extern "C" Datum aws_cost_trans(PG_FUNCTION_ARGS) {
  CostState* state = writable_state(fcinfo, 0);
  if (PG_ARGISNULL(2)) PG_RETURN_POINTER(state);  // no quantity: nothing used
  CostCall* call = cost_call(fcinfo);
  const int64 quantity = quantity_micro(PG_GETARG_DATUM(2));
  const bool has_at = PG_NARGS() > 3;
  const bool at_is_null = has_at && PG_ARGISNULL(3);
  const TimestampTz at = has_at ? (at_is_null ? 0 : PG_GETARG_TIMESTAMPTZ(3)) : call->now;

  const char* name = nullptr;
  int name_len = -1;
  UnpricedReason why = UnpricedReason::NoModel;
  if (!PG_ARGISNULL(1)) {
    text* service = PG_GETARG_TEXT_PP(1);
    name = VARDATA_ANY(service);
    name_len = VARSIZE_ANY_EXHDR(service);
    const ServiceSeries* series = call->catalog->resolve_service(std::string_view(name, name_len));
    const UnitPrice* price = (series != nullptr && !at_is_null) ? series->at(at) : nullptr;
    if (price != nullptr) {
      Atto cost;
      unit_cost(*price, quantity, &cost);
      if (!add_priced(*state, cost))
        ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("billing: total cost out of range")));
      PG_RETURN_POINTER(state);
    }
    why = series == nullptr ? UnpricedReason::UnknownModel : UnpricedReason::NoPriceAtTime;
  }
  check_unpriced_policy(unknown_service_policy, "service", why, name, name_len,
                        has_at && !at_is_null ? &at : nullptr);
  add_unpriced(*state, why, name ? std::string_view(name, name_len) : std::string_view("(none)"), quantity);
  PG_RETURN_POINTER(state);
}

// aws_cost_final(state) -> numeric: NULL when no row could be priced.
extern "C" Datum aws_cost_final(PG_FUNCTION_ARGS) {
  const auto* state = reinterpret_cast<const CostState*>(PG_GETARG_POINTER(0));
  error_unpriced_state(*state, "service", unknown_service_policy);  // (as openai_cost_final)
  // Once per query (call_site_memory, as openai_cost_final).
  if (state->unpriced_rows > 0 && unknown_service_policy == kUnpricedWarn) {
    bool fresh;
    auto* warned = static_cast<bool*>(call_site_memory(fcinfo, sizeof(bool), &fresh));
    fcinfo->flinfo->fn_extra = warned;
    if (!*warned) {
      *warned = true;
      warn_unpriced(*state, "service", "billing.unknown_service");
    }
  }
  if (state->priced_rows == 0) PG_RETURN_NULL();
  return atto_to_numeric(state->cost());
}
