// SQL type billing.cost_state: input/output, binary send/receive, and the
// combine function shared by every cost aggregate.
#include "catalog_cache.h"
#include "cost_call.h"

extern "C" {
PG_FUNCTION_INFO_V1(cost_state_in);
PG_FUNCTION_INFO_V1(cost_state_out);
PG_FUNCTION_INFO_V1(cost_state_stamped_out);
PG_FUNCTION_INFO_V1(cost_state_recv);
PG_FUNCTION_INFO_V1(cost_state_send);
PG_FUNCTION_INFO_V1(cost_state_combine);
}

using namespace billing;
using namespace billing::pg;

namespace {

// A state stamped by a Citus worker (billing's partial twins, below) is
// taken in only where the snapshot of the query that reads it sees the same
// version of the cluster's shared catalog. Citus commits a change on the
// coordinator first, then on each worker, and each node reads with its own
// snapshot: without this, a query running across a price change could add
// up one worker's totals at the old prices and another's at the new.
void check_catalog_stamp(int64_t worker_version) {
  int64_t here = 0;
  const bool shared = snapshot_shared_catalog_version(&here);
  if (shared && here == worker_version) return;
  if (!shared)
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("billing: a billing.cost_state stamped with version %lld of a Citus cluster's shared "
                           "price catalog, where this query sees no shared catalog",
                           static_cast<long long>(worker_version)),
                    errdetail("Only billing's partial aggregates on a Citus worker stamp a state, for a "
                              "coordinator that shares its catalog (billing.citus_share_catalog())."),
                    errhint("Leave out the \"@%lld\" that follows the state.",
                            static_cast<long long>(worker_version))));
  ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                  errmsg("billing: a worker priced rows of this query with another version of the cluster's "
                         "price catalog than this query sees"),
                  errdetail("The worker priced with version %lld; this node's snapshot sees version %lld. A "
                            "change of prices or settings committed on the workers while this query ran: the "
                            "query fails rather than add up totals of two catalogs.",
                            static_cast<long long>(worker_version), static_cast<long long>(here)),
                  errhint("Run the query again (in a REPEATABLE READ transaction that began before the "
                          "change: in a new transaction).")));
}

}  // namespace

extern "C" Datum cost_state_in(PG_FUNCTION_ARGS) {
  const char* text = PG_GETARG_CSTRING(0);
  auto* s = static_cast<CostState*>(palloc(sizeof(CostState)));
  std::string_view state;
  bool stamped = false;
  int64_t version = 0;
  if (!split_catalog_stamp(text, &state, &stamped, &version) || !parse_cost_state(state, s))
    ereport(ERROR, (errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
                    errmsg("billing: invalid input syntax for type billing.cost_state: \"%s\"", text),
                    errdetail("Expected (cost,priced_rows,unpriced_rows,unpriced_units,reason,\"name\"), "
                              "optionally followed by ,invalid_rows,problem,field,kind,\"value\", "
                              "and by @catalog_version.")));
  if (stamped) check_catalog_stamp(version);
  PG_RETURN_POINTER(s);
}

namespace {

// The state's text form, palloc'd.
char* state_text(const CostState& s) {
  char text[kCostStateTextSize];
  format_cost_state(s, text);
  return pstrdup(text);
}

}  // namespace

extern "C" Datum cost_state_out(PG_FUNCTION_ARGS) {
  PG_RETURN_CSTRING(state_text(*reinterpret_cast<const CostState*>(PG_GETARG_POINTER(0))));
}

// The final function of billing's partial twins (the aggregates a Citus
// worker runs for its part of a split cost aggregate, citus_partials.cpp):
// the state's text, stamped with the version of the cluster's shared
// catalog that priced it, which cost_state_in checks on the coordinator.
// The transition function's catalog read saw that version with this
// query's snapshot already (in a parallel plan, the leader reads it once);
// a state that priced no row, or a catalog that is not shared, is sent
// unstamped.
extern "C" Datum cost_state_stamped_out(PG_FUNCTION_ARGS) {
  const auto* s = reinterpret_cast<const CostState*>(PG_GETARG_POINTER(0));
  int64_t version = 0;
  if ((s->priced_rows != 0 || s->unpriced_rows != 0 || s->invalid_rows != 0) &&
      snapshot_shared_catalog_version(&version)) {
    char text[kStampedCostStateTextSize];
    if (format_stamped_cost_state(*s, version, text) == 0) elog(ERROR, "billing: cannot format a billing.cost_state");
    PG_RETURN_CSTRING(pstrdup(text));
  }
  PG_RETURN_CSTRING(state_text(*s));
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
