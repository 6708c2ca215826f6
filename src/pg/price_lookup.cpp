// SQL: billing.resolve_model_price(model, at) and billing.resolve_aws_price(service, at):
// which catalog row prices a name at a time. They make every cost traceable
// to the price row behind it (billing.model_price and billing.aws_price wrap them).
#include "cost_call.h"

extern "C" {
PG_FUNCTION_INFO_V1(resolve_model_price);
PG_FUNCTION_INFO_V1(resolve_aws_price);
}

using namespace billing;
using namespace billing::pg;

namespace {

Datum name_and_time(FunctionCallInfo fcinfo, std::string_view name, TimestampTz from) {
  TupleDesc desc;
  if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
    elog(ERROR, "billing: function returning record called in a context that cannot accept it");
  desc = BlessTupleDesc(desc);
  Datum values[2] = {PointerGetDatum(cstring_to_text_with_len(name.data(), static_cast<int>(name.size()))),
                     TimestampTzGetDatum(from)};
  bool nulls[2] = {false, false};
  return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

}  // namespace

// resolve_model_price(model text, at timestamptz) -> (model text, effective_from timestamptz)
extern "C" Datum resolve_model_price(PG_FUNCTION_ARGS) {
  if (PG_ARGISNULL(0) || PG_ARGISNULL(1)) PG_RETURN_NULL();
  CostCall* call = cost_call(fcinfo);
  text* model = PG_GETARG_TEXT_PP(0);
  const ModelResolution& r = resolve_model_cached(fcinfo, call, VARDATA_ANY(model), VARSIZE_ANY_EXHDR(model));
  const ModelSeries* used = nullptr;
  const TokenPrice* p = price_at(r, PG_GETARG_TIMESTAMPTZ(1), &used);
  if (p == nullptr) PG_RETURN_NULL();
  return name_and_time(fcinfo, used->name, p->effective_from);
}

// resolve_aws_price(service text, at timestamptz) -> (service text, effective_from timestamptz)
extern "C" Datum resolve_aws_price(PG_FUNCTION_ARGS) {
  if (PG_ARGISNULL(0) || PG_ARGISNULL(1)) PG_RETURN_NULL();
  CostCall* call = cost_call(fcinfo);
  text* service = PG_GETARG_TEXT_PP(0);
  const ServiceSeries* s = call->catalog->resolve_service(std::string_view(VARDATA_ANY(service), VARSIZE_ANY_EXHDR(service)));
  const UnitPrice* p = s ? s->at(PG_GETARG_TIMESTAMPTZ(1)) : nullptr;
  if (p == nullptr) PG_RETURN_NULL();
  return name_and_time(fcinfo, s->name, p->effective_from);
}
