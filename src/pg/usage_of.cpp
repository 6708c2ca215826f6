// SQL: billing.usage_of(data, role, content) and billing.usage_cost(model, prompt,
// completion, cached, at): the per-message building blocks of the tracked
// views; billing._estimated_or_problem(data, role), which of them a backfill
// records. Unlike message_cost they never warn or raise for data problems: the
// tracking triggers must never fail or slow down an application's write, so
// problems come back as values for billing to keep visible.
#include "cost_call.h"
#include "ledger_row.h"
#include "text_estimate.h"
#include "usage.h"

extern "C" {
PG_FUNCTION_INFO_V1(usage_of);
PG_FUNCTION_INFO_V1(usage_cost);
PG_FUNCTION_INFO_V1(text_estimated_tokens);
PG_FUNCTION_INFO_V1(reply_rank);
PG_FUNCTION_INFO_V1(estimated_or_problem);
}

using namespace billing;
using namespace billing::pg;

namespace {
// The estimate of a text (src/core/usage.h), counted in characters.
int64 text_estimate(const text* content) {
  return pg::text_estimate(VARDATA_ANY(content), static_cast<int>(VARSIZE_ANY_EXHDR(content)));
}
}  // namespace

// usage_of(data jsonb, role text, content text) -> (model, prompt_tokens,
//   completion_tokens, cached_tokens, estimated_completion, unsplit_tokens, problem,
//   estimated)
extern "C" Datum usage_of(PG_FUNCTION_ARGS) {
  // The result's descriptor, built once per call site: building it from
  // pg_proc took about a sixth of a backfill's time when done per row.
  auto desc = static_cast<TupleDesc>(fcinfo->flinfo->fn_extra);
  if (desc == nullptr) {
    const MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
    TupleDesc built;
    if (get_call_result_type(fcinfo, nullptr, &built) != TYPEFUNC_COMPOSITE)
      elog(ERROR, "billing: usage_of must be called where a record is accepted");
    desc = BlessTupleDesc(CreateTupleDescCopy(built));
    MemoryContextSwitchTo(old);
    fcinfo->flinfo->fn_extra = desc;
  }
  Datum values[8] = {};
  bool nulls[8] = {true, false, false, false, false, false, true, false};
  for (int i = 1; i <= 5; ++i) values[i] = Int64GetDatum(0);
  values[7] = BoolGetDatum(false);

  Usage u;  // NoUsage unless data says otherwise
  if (!PG_ARGISNULL(0)) {
    const struct varlena* v = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));
    u = message_usage(JsonbContainerView{reinterpret_cast<const uint8_t*>(VARDATA_ANY(v)), VARSIZE_ANY_EXHDR(v)});
  }
  // The role matters only to a message without usage: an assistant's reply
  // is estimated from its text.
  bool assistant = false;
  if (u.status == UsageStatus::NoUsage && !PG_ARGISNULL(1)) {
    text* role = PG_GETARG_TEXT_PP(1);
    assistant = is_assistant_role(std::string_view(VARDATA_ANY(role), VARSIZE_ANY_EXHDR(role)));
  }
  const MessageFigures f = message_figures(u, assistant);
  if (f.has_model) {
    values[0] = PointerGetDatum(cstring_to_text_with_len(f.model.data(), static_cast<int>(f.model.size())));
    nulls[0] = false;
  }
  values[1] = Int64GetDatum(f.prompt);
  values[2] = Int64GetDatum(f.completion);
  values[3] = Int64GetDatum(f.cached);
  values[5] = Int64GetDatum(f.unsplit);
  values[7] = BoolGetDatum(f.estimated);
  // (an empty reply still has a prompt: its conversation)
  if (f.estimated && !PG_ARGISNULL(2)) values[4] = Int64GetDatum(text_estimate(PG_GETARG_TEXT_PP(2)));
  if (f.problem) {
    char message[256];
    describe_usage_error(u, message, sizeof message);
    values[6] = PointerGetDatum(cstring_to_text(message));
    nulls[6] = false;
  }
  return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

// usage_cost(model, prompt, completion, cached, at) -> numeric, NULL when it
// cannot be priced. Counts may all be negative (a ledger row that takes a
// message back): the cost is then negative. Never warns.
extern "C" Datum usage_cost(PG_FUNCTION_ARGS) {
  for (int i = 0; i < 5; ++i)
    if (PG_ARGISNULL(i)) PG_RETURN_NULL();
  int64 prompt = PG_GETARG_INT64(1);
  int64 completion = PG_GETARG_INT64(2);
  int64 cached = PG_GETARG_INT64(3);
  // (checked first: cached tokens beside no prompt were costed 0)
  const bool negative = unsign_token_counts(&prompt, &completion, &cached);
  if (prompt == 0 && completion == 0) return atto_to_numeric(0);
  CostCall* call = cost_call(fcinfo);
  text* model = PG_GETARG_TEXT_PP(0);
  const ModelResolution& r = resolve_model_cached(fcinfo, call, VARDATA_ANY(model), VARSIZE_ANY_EXHDR(model));
  const TokenPrice* p = price_at(r, PG_GETARG_TIMESTAMPTZ(4));
  if (p == nullptr) PG_RETURN_NULL();
  return atto_to_numeric(signed_token_cost(*p, prompt, completion, cached, negative));
}

// _estimated_tokens(content text) -> bigint: the tokens billing estimates for
// a text (one per four characters, rounded up), as usage_of does for a reply.
extern "C" Datum text_estimated_tokens(PG_FUNCTION_ARGS) { PG_RETURN_INT64(text_estimate(PG_GETARG_TEXT_PP(0))); }

// _reply_rank(role text) -> integer: 1 for a reply's role ("assistant" in
// any case of ASCII letters), else 0 (NULL too). With ids that are not
// integers, a reply's earlier messages are those before it in (created_at,
// _reply_rank(role), id) order (billing._earlier_condition): at the same
// time, a question comes before the reply it was stored with.
extern "C" Datum reply_rank(PG_FUNCTION_ARGS) {
  if (PG_ARGISNULL(0)) PG_RETURN_INT32(0);
  const text* role = PG_GETARG_TEXT_PP(0);
  PG_RETURN_INT32(is_assistant_role(std::string_view(VARDATA_ANY(role), VARSIZE_ANY_EXHDR(role))) ? 1 : 0);
}

// _estimated_or_problem(data jsonb, role text) -> boolean: usage_of(data,
// role, content).estimated OR its problem IS NOT NULL, without making the
// record: the rows a backfill records in estimated_prompts or
// problem_messages (and locks), found in a read of the whole table. The
// usage is read with read_usage and the call site's layout (fn_extra),
// which gives message_usage's result in one pass.
extern "C" Datum estimated_or_problem(PG_FUNCTION_ARGS) {
  Usage u;  // NoUsage unless data says otherwise
  if (!PG_ARGISNULL(0)) {
    auto* layout = static_cast<UsageLayout*>(fcinfo->flinfo->fn_extra);
    if (layout == nullptr) {
      layout = static_cast<UsageLayout*>(MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(UsageLayout)));
      fcinfo->flinfo->fn_extra = layout;
    }
    const struct varlena* v = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));
    u = read_usage(JsonbContainerView{reinterpret_cast<const uint8_t*>(VARDATA_ANY(v)), VARSIZE_ANY_EXHDR(v)}, layout);
  }
  bool assistant = false;
  if (u.status == UsageStatus::NoUsage && !PG_ARGISNULL(1)) {
    text* role = PG_GETARG_TEXT_PP(1);
    assistant = is_assistant_role(std::string_view(VARDATA_ANY(role), VARSIZE_ANY_EXHDR(role)));
  }
  const MessageFigures f = message_figures(u, assistant);
  PG_RETURN_BOOL(f.estimated || f.problem);
}
