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
                    errdetail("Expected (cost,priced_rows,unpriced_rows,unpriced_units,reason,\"name\"), "
                              "optionally followed by ,invalid_rows,problem,field,kind,\"value\".")));
  PG_RETURN_POINTER(s);
}

extern "C" Datum cost_state_out(PG_FUNCTION_ARGS) {
  const auto* s = reinterpret_cast<const CostState*>(PG_GETARG_POINTER(0));
  char text[kCostStateTextSize];
  format_cost_state(*s, text);
  PG_RETURN_CSTRING(pstrdup(text));
}

// Binary form: cost as two int64 (high, low), the three counters, the reason
// byte, the name as counted text; then, only when some row had invalid usage
// (as in the text form), invalid_rows as int64, the problem, field and kind
// bytes and the value as counted text.
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
  if (s->invalid_rows != 0 || s->first_problem != 0) {
    pq_sendint64(&buf, s->invalid_rows);
    pq_sendbyte(&buf, s->first_problem);
    pq_sendbyte(&buf, s->problem_field);
    pq_sendbyte(&buf, s->problem_kind);
    const std::string_view value = s->first_problem_value();
    pq_sendint32(&buf, static_cast<uint32>(value.size()));
    pq_sendbytes(&buf, value.data(), static_cast<int>(value.size()));
  }
  PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

namespace {

void invalid_binary_state() {
  ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION), errmsg("billing: invalid billing.cost_state")));
}

// Counted text of at most CostState::kMaxInputText bytes (a longer one is refused).
std::string_view recv_text(StringInfo buf) {
  const uint32 len = pq_getmsgint(buf, 4);
  if (len > CostState::kMaxInputText) invalid_binary_state();
  return std::string_view(pq_getmsgbytes(buf, static_cast<int>(len)), len);
}

}  // namespace

// Accepts exactly what the text form can also express (assemble_cost_state
// checks both), with or without the invalid-usage part.
extern "C" Datum cost_state_recv(PG_FUNCTION_ARGS) {
  StringInfo buf = reinterpret_cast<StringInfo>(PG_GETARG_POINTER(0));
  CostStateParts p;
  const int64 cost_hi = pq_getmsgint64(buf);
  const uint64 cost_lo = static_cast<uint64>(pq_getmsgint64(buf));
  p.cost = static_cast<Atto>((static_cast<UAtto>(static_cast<uint64>(cost_hi)) << 64) | cost_lo);
  p.priced_rows = pq_getmsgint64(buf);
  p.unpriced_rows = pq_getmsgint64(buf);
  p.unpriced_units = pq_getmsgint64(buf);
  p.reason = pq_getmsgbyte(buf);
  p.name = recv_text(buf);
  if (buf->cursor < buf->len) {
    p.invalid_rows = pq_getmsgint64(buf);
    p.problem = pq_getmsgbyte(buf);
    p.field = pq_getmsgbyte(buf);
    p.kind = pq_getmsgbyte(buf);
    p.value = recv_text(buf);
  }
  auto* s = static_cast<CostState*>(palloc(sizeof(CostState)));
  if (!assemble_cost_state(p, s)) invalid_binary_state();
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
