// SQL type billing.cost_state: input/output, binary send/receive, and the
// combine function shared by every cost aggregate.
#include "cost_call.h"

extern "C" {
PG_FUNCTION_INFO_V1(cost_state_in);
PG_FUNCTION_INFO_V1(cost_state_out);
PG_FUNCTION_INFO_V1(cost_state_recv);
PG_FUNCTION_INFO_V1(cost_state_send);
PG_FUNCTION_INFO_V1(cost_state_combine);
}

using namespace billing;
using namespace billing::pg;

extern "C" Datum cost_state_in(PG_FUNCTION_ARGS) {
  const char* text = PG_GETARG_CSTRING(0);
  auto* s = static_cast<CostState*>(palloc(sizeof(CostState)));
  if (!parse_cost_state(text, s))
    ereport(ERROR, (errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
                    errmsg("billing: invalid input syntax for type billing.cost_state: \"%s\"", text),
                    errdetail("Expected (cost,priced_rows,unpriced_rows,unpriced_units,reason,\"name\").")));
  PG_RETURN_POINTER(s);
}

extern "C" Datum cost_state_out(PG_FUNCTION_ARGS) {
  const auto* s = reinterpret_cast<const CostState*>(PG_GETARG_POINTER(0));
  char text[kCostStateTextSize];
  format_cost_state(*s, text);
  PG_RETURN_CSTRING(pstrdup(text));
}

// Binary form: cost as two int64 (high, low), the three counters, the reason
// byte, then the name as counted text.
extern "C" Datum cost_state_send(PG_FUNCTION_ARGS) {
  const auto* s = reinterpret_cast<const CostState*>(PG_GETARG_POINTER(0));
  StringInfoData buf;
  pq_begintypsend(&buf);
  pq_sendint64(&buf, s->cost_hi);
  pq_sendint64(&buf, static_cast<int64>(s->cost_lo));
  pq_sendint64(&buf, s->priced_rows);
  pq_sendint64(&buf, s->unpriced_rows);
  pq_sendint64(&buf, s->unpriced_units);
  pq_sendbyte(&buf, s->first_reason);
  const std::string_view name = s->first_unpriced_name();
  pq_sendint32(&buf, static_cast<uint32>(name.size()));
  pq_sendbytes(&buf, name.data(), static_cast<int>(name.size()));
  PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

extern "C" Datum cost_state_recv(PG_FUNCTION_ARGS) {
  StringInfo buf = reinterpret_cast<StringInfo>(PG_GETARG_POINTER(0));
  auto* s = static_cast<CostState*>(palloc0(sizeof(CostState)));
  s->cost_hi = pq_getmsgint64(buf);
  s->cost_lo = static_cast<uint64>(pq_getmsgint64(buf));
  s->priced_rows = pq_getmsgint64(buf);
  s->unpriced_rows = pq_getmsgint64(buf);
  s->unpriced_units = pq_getmsgint64(buf);
  s->first_reason = static_cast<uint8>(pq_getmsgbyte(buf));
  const uint32 len = pq_getmsgint(buf, 4);
  // Accept exactly what the text form can also express: a name only with a
  // reason, and no NUL byte in it.
  if (len > CostState::kNameSize || s->priced_rows < 0 || s->unpriced_rows < 0 || s->unpriced_units < 0 ||
      s->first_reason > static_cast<uint8>(UnpricedReason::NoSplit) || (s->first_reason == 0 && len > 0))
    ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION), errmsg("billing: invalid billing.cost_state")));
  const char* name = pq_getmsgbytes(buf, static_cast<int>(len));
  if (memchr(name, '\0', len) != nullptr)
    ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION), errmsg("billing: invalid billing.cost_state")));
  memcpy(s->first_name, name, len);
  PG_RETURN_POINTER(s);
}

// cost_state_combine(a, b): a + b, in place when called by an aggregate.
extern "C" Datum cost_state_combine(PG_FUNCTION_ARGS) {
  CostState* a = writable_state(fcinfo, 0);
  const auto* b = reinterpret_cast<const CostState*>(PG_GETARG_POINTER(1));
  if (!combine(*a, *b))
    ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("billing: total cost out of range")));
  PG_RETURN_POINTER(a);
}
