// SQL: billing.openai_cost(...) aggregates, billing.message_cost(...) and
// billing.usage_problem(jsonb). The pricing itself is in src/core.
#include "cost_call.h"
#include "settings.h"
#include "usage.h"

extern "C" {
PG_FUNCTION_INFO_V1(openai_cost_trans);
PG_FUNCTION_INFO_V1(openai_cost_jsonb_trans);
PG_FUNCTION_INFO_V1(openai_cost_final);
PG_FUNCTION_INFO_V1(message_cost);
PG_FUNCTION_INFO_V1(message_cost_jsonb);
PG_FUNCTION_INFO_V1(usage_problem);
}

namespace billing::pg {
namespace {

// One row of usage, already validated.
struct Row {
  const char* model;  // nullptr: no model given
  int model_len;
  int64 prompt;
  int64 completion;
  int64 cached;
  TimestampTz at;
  bool at_given;    // the caller passed a time (else now())
  bool at_is_null;
};

struct RowPrice {
  bool priced;
  Atto cost;
  UnpricedReason why;
};

// The time to name in an error: only one the caller gave (and not NULL).
const TimestampTz* shown_time(const Row& row) { return row.at_given && !row.at_is_null ? &row.at : nullptr; }

RowPrice price_row(FunctionCallInfo fcinfo, CostCall* call, const Row& row) {
  RowPrice out{false, 0, UnpricedReason::None};
  if (row.model == nullptr) {
    out.why = UnpricedReason::NoModel;
  } else if (row.at_is_null) {
    out.why = UnpricedReason::NoPriceAtTime;
  } else {
    const CachedPrice p = price_cached(call, row.model, row.model_len, row.at);
    if (p.price == nullptr) {
      out.why = p.known ? UnpricedReason::NoPriceAtTime : UnpricedReason::UnknownModel;
    } else {
      if (!token_cost(*p.price, row.prompt, row.completion, row.cached, &out.cost))
        ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("billing: cost out of range")));
      out.priced = true;
    }
  }
  if (!out.priced)
    check_unpriced_policy(unknown_model_policy, "model", out.why, row.model, row.model ? row.model_len : -1,
                          shown_time(row));
  return out;
}

void add_to_state(CostState* s, const Row& row, const RowPrice& price, int64 units) {
  if (price.priced) {
    if (!add_priced(*s, price.cost))
      ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("billing: total cost out of range")));
  } else {
    add_unpriced(*s, price.why, row.model ? std::string_view(row.model, row.model_len) : std::string_view("(none)"),
                 units);
  }
}

void check_token_arg(int64 v, const char* name) {
  if (v < 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("billing: %s must not be negative, got %lld", name, static_cast<long long>(v))));
}

// Reads (model, prompt, completion[, at]) starting at argument `first`.
// False when a token count is NULL: such a row carries no usage.
bool text_row(FunctionCallInfo fcinfo, int first, CostCall* call, Row* row) {
  if (PG_ARGISNULL(first + 1) || PG_ARGISNULL(first + 2)) return false;
  row->prompt = PG_GETARG_INT64(first + 1);
  row->completion = PG_GETARG_INT64(first + 2);
  check_token_arg(row->prompt, "prompt_tokens");
  check_token_arg(row->completion, "completion_tokens");
  row->cached = 0;
  if (PG_ARGISNULL(first)) {
    row->model = nullptr;
    row->model_len = 0;
  } else {
    text* model = PG_GETARG_TEXT_PP(first);
    row->model = VARDATA_ANY(model);
    row->model_len = VARSIZE_ANY_EXHDR(model);
  }
  const bool has_at = PG_NARGS() > first + 3;
  row->at_given = has_at;
  row->at_is_null = has_at && PG_ARGISNULL(first + 3);
  row->at = has_at ? (row->at_is_null ? 0 : PG_GETARG_TIMESTAMPTZ(first + 3)) : call->now;
  return true;
}

// Asks the CPU for the bytes of a coming row's usage before they are needed.
//
// A sequential scan returns the rows of a heap page in the order they were
// inserted, and PostgreSQL places each new tuple just below the previous one
// in the page: with rows of similar sizes, the usage two rows on lies about
// twice as far below this one as this one lies below the previous one. On
// short rows the cache misses of reading each usage object cost as much as
// pricing it; asked for two rows ahead (one row ahead is too late to hide
// them all: bench/row_cost.sh), they overlap with the work on the rows in
// between, and PostgreSQL's own reading of those tuples gains too. A
// prefetch is a hint, never a read: a wrong guess (a new page, rows of
// varying sizes, a detoasted copy) only fetches lines nobody uses.
void prefetch_next_usage(CostCall* call, const struct varlena* v) {
  constexpr uintptr_t kLine = 64;
  const uintptr_t here = reinterpret_cast<uintptr_t>(v);
  const uintptr_t previous = call->previous_usage;
  call->previous_usage = here;
  if (previous <= here || previous - here > BLCKSZ) return;
  const uintptr_t next = here - 2 * (previous - here);
  const uintptr_t end = next + VARSIZE_ANY(v) + kLine;  // one line of slack either side
  for (uintptr_t p = next - kLine; p < end; p += kLine) __builtin_prefetch(reinterpret_cast<const void*>(p));
}

// The usage of a jsonb argument. With a call (the aggregate's and
// message_cost's), read through the call's UsageLayout, and a coming row's
// usage prefetched.
Usage jsonb_usage(FunctionCallInfo fcinfo, int argno, CostCall* call) {
  // PG_DETOAST_DATUM_PACKED's test inline: short usage objects are stored
  // inline and uncompressed, and read in place.
  auto* v = reinterpret_cast<struct varlena*>(DatumGetPointer(PG_GETARG_DATUM(argno)));
  if (VARATT_IS_COMPRESSED(v) || VARATT_IS_EXTERNAL(v)) v = pg_detoast_datum_packed(v);
  const JsonbContainerView root{reinterpret_cast<const uint8_t*>(VARDATA_ANY(v)), VARSIZE_ANY_EXHDR(v)};
  if (call == nullptr) return read_usage(root);
  prefetch_next_usage(call, v);
  return read_usage(root, &call->layout);
}

void report_invalid_usage(const Usage& u) {
  char message[256];
  describe_usage_error(u, message, sizeof message);
  ereport(ERROR, (errcode(u.error == UsageError::OutOfRange ? ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE
                                                           : ERRCODE_INVALID_PARAMETER_VALUE),
                  errmsg("billing: %s", message),
                  errhint("billing.usage_problem(data) names the problem of each row without raising an error.")));
}

// What jsonb_row found: usage to price, none (a user message), or usage that
// cannot be read.
enum class JsonbRow { Usage, NoUsage, Invalid };

// The row of usage `u`, read from the jsonb argument `first` (and the
// optional at after it). On Usage, *units is the number of tokens
// concerned. An invalid row raises the error under billing.invalid_usage =
// 'error'; otherwise it is counted in *invalid, for the warning, and skipped.
JsonbRow jsonb_row(FunctionCallInfo fcinfo, int first, CostCall* call, const Usage& u, Row* row,
                   UnpricedReason* forced, int64* units, CostState* invalid) {
  *forced = UnpricedReason::None;
  switch (u.status) {
    case UsageStatus::NoUsage: return JsonbRow::NoUsage;
    case UsageStatus::Invalid:
      if (invalid_usage_policy == kUnpricedError) report_invalid_usage(u);
      add_invalid(*invalid, u);
      return JsonbRow::Invalid;
    case UsageStatus::TotalOnly: *forced = UnpricedReason::NoSplit; break;
    case UsageStatus::Ok: break;
  }
  row->model = u.has_model ? u.model.data() : nullptr;
  row->model_len = u.has_model ? static_cast<int>(u.model.size()) : 0;
  row->prompt = u.prompt;
  row->completion = u.completion;
  row->cached = u.cached;
  const bool has_at = PG_NARGS() > first + 1;
  row->at_given = has_at;
  row->at_is_null = has_at && PG_ARGISNULL(first + 1);
  row->at = has_at ? (row->at_is_null ? 0 : PG_GETARG_TIMESTAMPTZ(first + 1)) : call->now;
  *units = u.total;
  return JsonbRow::Usage;
}

RowPrice price_jsonb_row(FunctionCallInfo fcinfo, CostCall* call, const Row& row, UnpricedReason forced) {
  if (forced == UnpricedReason::None) return price_row(fcinfo, call, row);
  check_unpriced_policy(unknown_model_policy, "model", forced, row.model, row.model ? row.model_len : -1,
                        shown_time(row));
  return RowPrice{false, 0, forced};
}

// The scalar functions: NULL unless priced, warning once per call site.
Datum scalar_result(FunctionCallInfo fcinfo, CostCall* call, const Row& row, const RowPrice& price, int64 units) {
  if (price.priced) return atto_to_numeric(price.cost);
  if (unknown_model_policy == kUnpricedWarn && !call->warned) {
    call->warned = true;
    CostState s = empty_cost_state();
    add_to_state(&s, row, price, units);
    warn_unpriced(s, "model", "billing.unknown_model", WarnedFor::ScalarRow);
  }
  PG_RETURN_NULL();
}

// The scalar function's answer to a row with invalid usage: NULL, warning
// once per call site.
Datum scalar_invalid(FunctionCallInfo fcinfo, CostCall* call, const CostState& one_row) {
  if (invalid_usage_policy == kUnpricedWarn && !call->warned_invalid) {
    call->warned_invalid = true;
    warn_invalid_usage(one_row, WarnedFor::ScalarRow);
  }
  PG_RETURN_NULL();
}

// What a final function has warned about in this query (call_site_memory).
struct FinalWarnings {
  bool unpriced;
  bool invalid;
};

}  // namespace
}  // namespace billing::pg

using namespace billing;
using namespace billing::pg;

// openai_cost_trans(state, model text, prompt bigint, completion bigint [, at timestamptz])
extern "C" Datum openai_cost_trans(PG_FUNCTION_ARGS) {
  CostState* state = writable_state(fcinfo, 0);
  CostCall* call = cost_call(fcinfo);
  Row row;
  if (!text_row(fcinfo, 1, call, &row)) PG_RETURN_POINTER(state);
  const RowPrice price = price_row(fcinfo, call, row);
  int64 units;
  if (__builtin_add_overflow(row.prompt, row.completion, &units)) units = PG_INT64_MAX;
  add_to_state(state, row, price, units);
  PG_RETURN_POINTER(state);
}

// openai_cost_jsonb_trans(state, usage jsonb [, at timestamptz])
extern "C" Datum openai_cost_jsonb_trans(PG_FUNCTION_ARGS) {
  CostState* state = writable_state(fcinfo, 0);
  CostCall* call = cost_call(fcinfo);
  if (PG_ARGISNULL(1)) PG_RETURN_POINTER(state);  // no usage
  const Usage u = jsonb_usage(fcinfo, 1, call);
  // The usual row, priced here: valid usage with a model, at a time given
  // (not NULL) or now(), and a price in effect then.
  const bool has_at = PG_NARGS() > 2;
  if (u.status == UsageStatus::Ok && u.has_model && !(has_at && PG_ARGISNULL(2))) {
    const TimestampTz at = has_at ? PG_GETARG_TIMESTAMPTZ(2) : call->now;
    const CachedPrice p = price_cached(call, u.model.data(), static_cast<int>(u.model.size()), at);
    Atto cost;
    if (p.price != nullptr && token_cost(*p.price, u.prompt, u.completion, u.cached, &cost)) {
      if (!add_priced(*state, cost))
        ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("billing: total cost out of range")));
      PG_RETURN_POINTER(state);
    }
  }
  // Every other row: no usage, invalid usage, or a row that cannot be priced.
  Row row;
  UnpricedReason forced;
  int64 units;
  if (jsonb_row(fcinfo, 1, call, u, &row, &forced, &units, state) != JsonbRow::Usage) PG_RETURN_POINTER(state);
  add_to_state(state, row, price_jsonb_row(fcinfo, call, row, forced), units);
  PG_RETURN_POINTER(state);
}

// openai_cost_final(state) -> numeric: NULL when no row could be priced.
extern "C" Datum openai_cost_final(PG_FUNCTION_ARGS) {
  const auto* state = reinterpret_cast<const CostState*>(PG_GETARG_POINTER(0));
  // Rows left out under 'warn' or 'ignore' where they were read (a Citus
  // worker) fail here under 'error': this session's setting decides.
  error_invalid_usage_state(*state);
  error_unpriced_state(*state, "model", unknown_model_policy);
  // Warn once per query about each kind of row left out, even when the
  // aggregate has many groups: invalid usage first, then unpriced rows.
  const bool warn_invalid = state->invalid_rows > 0 && invalid_usage_policy == kUnpricedWarn;
  const bool warn_priceless = state->unpriced_rows > 0 && unknown_model_policy == kUnpricedWarn;
  if (warn_invalid || warn_priceless) {
    // (call_site_memory: under Citus's coord_combine_agg_ffunc, a fresh
    // FmgrInfo for every group, so fn_extra alone would warn per group.)
    bool fresh;
    auto* warned = static_cast<FinalWarnings*>(call_site_memory(fcinfo, sizeof(FinalWarnings), &fresh));
    fcinfo->flinfo->fn_extra = warned;
    if (warn_invalid && !warned->invalid) {
      warned->invalid = true;
      warn_invalid_usage(*state);
    }
    if (warn_priceless && !warned->unpriced) {
      warned->unpriced = true;
      warn_unpriced(*state, "model", "billing.unknown_model");
    }
  }
  if (state->priced_rows == 0) PG_RETURN_NULL();
  return atto_to_numeric(state->cost());
}

// message_cost(model text, prompt bigint, completion bigint [, at timestamptz]) -> numeric
extern "C" Datum message_cost(PG_FUNCTION_ARGS) {
  CostCall* call = cost_call(fcinfo);
  Row row;
  if (!text_row(fcinfo, 0, call, &row)) PG_RETURN_NULL();
  int64 units;
  if (__builtin_add_overflow(row.prompt, row.completion, &units)) units = PG_INT64_MAX;
  return scalar_result(fcinfo, call, row, price_row(fcinfo, call, row), units);
}

// message_cost(usage jsonb [, at timestamptz]) -> numeric
extern "C" Datum message_cost_jsonb(PG_FUNCTION_ARGS) {
  CostCall* call = cost_call(fcinfo);
  Row row;
  UnpricedReason forced;
  int64 units;
  CostState invalid = empty_cost_state();
  if (PG_ARGISNULL(0)) PG_RETURN_NULL();  // no usage
  const Usage u = jsonb_usage(fcinfo, 0, call);
  switch (jsonb_row(fcinfo, 0, call, u, &row, &forced, &units, &invalid)) {
    case JsonbRow::NoUsage: PG_RETURN_NULL();
    case JsonbRow::Invalid: return scalar_invalid(fcinfo, call, invalid);
    case JsonbRow::Usage: break;
  }
  return scalar_result(fcinfo, call, row, price_jsonb_row(fcinfo, call, row, forced), units);
}

// usage_problem(data jsonb) -> text: NULL when the usage is valid or absent.
extern "C" Datum usage_problem(PG_FUNCTION_ARGS) {
  if (PG_ARGISNULL(0)) PG_RETURN_NULL();
  const Usage u = jsonb_usage(fcinfo, 0, nullptr);
  if (u.status != UsageStatus::Invalid) PG_RETURN_NULL();
  char message[256];
  describe_usage_error(u, message, sizeof message);
  PG_RETURN_TEXT_P(cstring_to_text(message));
}
