// SQL: billing._ledger_usage(p_from, p_to, p_estimate_model), the unmerged
// ledger rows of the whole months within [p_from, p_to), priced and summed
// per tracked table, month, conversation and model (C body `ledger_usage`).
//
// The exact reads add these to the rollups. Done in SQL (the view
// billing._ledger_priced) each unmerged write cost about 8 us per read, and
// the dashboard reads the ledger three times; here each row is priced with
// the catalog cache and added to an int128 sum, and only the groups become
// numerics. The rows are read with SPI as the caller, so row-level security
// on the ledger applies as it does to any read.
//
// The rules are the SQL ones: a row's cost is usage_cost(model, prompt,
// completion, cached, at) (NULL when it has no model or no price, 0 when it
// has no tokens), its estimate's cost the same for coalesce(model, the
// estimate model) and its estimated tokens, its unpriced tokens those of
// billing._unpriced_tokens, its model key billing._key(coalesce(model, '')).
//
// Nothing here has a destructor: groups live in a dynahash table in the
// call's memory context.
#include "cost_call.h"
#include "ledger_read.h"
#include "ledger_row.h"
#include "month.h"
#include "postgres_headers.h"

extern "C" {
#include "common/hashfn.h"
#include "utils/hsearch.h"

PG_FUNCTION_INFO_V1(ledger_usage);
}

using namespace billing;
using namespace billing::pg;

namespace {

// Exact sums. Aligned to 8 bytes, not 16: dynahash entries are only
// MAXALIGNed, and 16-byte aligned loads of a misaligned __int128 fault.
__extension__ typedef __int128 Sum __attribute__((aligned(8)));

constexpr const char* kLedgerQuery =
    "SELECT l.source_id, l.created_at, l.conversation_id, l.model, l.messages, l.prompt_tokens, "
    "l.completion_tokens, l.cached_tokens, l.estimated_prompt, l.estimated_completion, l.unsplit_tokens, "
    "l.problems FROM billing.usage_ledger AS l "
    "WHERE l.created_at OPERATOR(pg_catalog.>=) $1 AND l.created_at OPERATOR(pg_catalog.<) $2";
// The same columns of the distributed tables' ledgers (Citus only).
constexpr const char* kCitusLedgerQuery =
    "SELECT l.source_id, l.created_at, l.conversation_id, l.model, l.messages, l.prompt_tokens, "
    "l.completion_tokens, l.cached_tokens, l.estimated_prompt, l.estimated_completion, l.unsplit_tokens, "
    "l.problems FROM billing._citus_ledger_rows($1, $2) AS l";
constexpr int kBatch = 1000;  // rows per fetch: small enough to reuse memory, not map it anew

struct GroupKey {
  const char* bytes;  // source id, month, conversation (with a null flag), model key
  int len;
};

struct LedgerGroup {
  GroupKey key;
  int16 source_id;
  DateADT month;
  const char* conversation;  // nullptr: NULL
  int conversation_len;
  const char* model;
  int model_len;
  int64 messages;
  Sum prompt, completion, cached, estimated_prompt, estimated_completion, unsplit, unpriced;
  int64 problems;
  Sum cost, estimated_cost;  // atto-dollars
  bool any_added, any_removed;
  TimestampTz first_added, last_added, first_removed, last_removed;
};

uint32 hash_key(const void* key, Size) {
  const auto* k = static_cast<const GroupKey*>(key);
  return DatumGetUInt32(hash_any(reinterpret_cast<const unsigned char*>(k->bytes), k->len));
}
int match_key(const void* a, const void* b, Size) {
  const auto* x = static_cast<const GroupKey*>(a);
  const auto* y = static_cast<const GroupKey*>(b);
  return x->len == y->len && memcmp(x->bytes, y->bytes, x->len) == 0 ? 0 : 1;
}

Datum sum_to_numeric(Sum v) {
  char buf[48];
  char* p = buf + sizeof buf;
  *--p = '\0';
  const bool negative = v < 0;
  unsigned __int128 u = negative ? -static_cast<unsigned __int128>(v) : static_cast<unsigned __int128>(v);
  do {
    *--p = static_cast<char>('0' + static_cast<int>(u % 10));
    u /= 10;
  } while (u != 0);
  if (negative) *--p = '-';
  return DirectFunctionCall3(numeric_in, CStringGetDatum(p), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

int64 int_column(const Datum* values, const bool* nulls, int i, bool int32_column) {
  if (nulls[i]) return 0;
  return int32_column ? DatumGetInt32(values[i]) : DatumGetInt64(values[i]);
}

// The receiver of the ledger's rows: what add_row() needs, and no
// destructor (it lives on the stack of a function that may raise).
struct LedgerReader {
  FunctionCallInfo fcinfo;
  CostCall* call;
  ModelResolution estimate_resolution;
  bool has_estimate_model;
  MonthCache months;
  HTAB* groups;
  MemoryContext work;  // groups and their keys
  StringInfoData key;  // the group key of the current row, in `work`
};

// Adds one ledger row (the columns of kLedgerQuery) to its group.
void add_row(LedgerReader* r, const Datum* values, const bool* nulls) {
  const int16 source_id = DatumGetInt16(values[0]);
  const TimestampTz at = DatumGetTimestampTz(values[1]);
  const DateADT month = r->months.month_of(at);
  const text* conversation = nulls[2] ? nullptr : DatumGetTextPP(values[2]);
  const text* model = nulls[3] ? nullptr : DatumGetTextPP(values[3]);
  const int64 messages = int_column(values, nulls, 4, true);
  const int64 prompt = int_column(values, nulls, 5, false);
  const int64 completion = int_column(values, nulls, 6, false);
  const int64 cached = int_column(values, nulls, 7, false);
  const int64 est_prompt = int_column(values, nulls, 8, false);
  const int64 est_completion = int_column(values, nulls, 9, false);
  const int64 unsplit = int_column(values, nulls, 10, false);
  const int64 problems = int_column(values, nulls, 11, true);

  // The prices.
  const char* model_bytes = model == nullptr ? "" : VARDATA_ANY(model);
  const int model_len = model == nullptr ? 0 : static_cast<int>(VARSIZE_ANY_EXHDR(model));
  Atto cost = 0, estimated_cost = 0;
  bool priced = false, estimate_priced = false;
  if (model != nullptr) {
    // (one price for both: the estimate is priced as the row's model)
    const TokenPrice* p = price_at(resolve_model_cached(r->fcinfo, r->call, model_bytes, model_len), at);
    priced = ledger_row_cost(p, prompt, completion, cached, &cost);
    estimate_priced = ledger_row_cost(p, est_prompt, est_completion, 0, &estimated_cost);
  } else if (r->has_estimate_model) {
    estimate_priced = ledger_row_cost(price_at(r->estimate_resolution, at), est_prompt, est_completion, 0, &estimated_cost);
  }
  Sum unpriced = unsplit;
  if (!priced) unpriced += static_cast<Sum>(prompt) + completion;
  if (!estimate_priced) unpriced += static_cast<Sum>(est_prompt) + est_completion;

  // The group: table, month, conversation, model key. The key is built
  // in a reused buffer and copied only when the group is new.
  int key_len = 0;
  const char* mkey = ledger_key(model_bytes, model_len, &key_len);
  const int conversation_len = conversation == nullptr ? 0 : static_cast<int>(VARSIZE_ANY_EXHDR(conversation));
  resetStringInfo(&r->key);
  appendBinaryStringInfo(&r->key, reinterpret_cast<const char*>(&source_id), sizeof source_id);
  appendBinaryStringInfo(&r->key, reinterpret_cast<const char*>(&month), sizeof month);
  appendStringInfoChar(&r->key, conversation == nullptr ? 'n' : 'v');
  appendBinaryStringInfo(&r->key, reinterpret_cast<const char*>(&conversation_len), sizeof conversation_len);
  if (conversation != nullptr) appendBinaryStringInfo(&r->key, VARDATA_ANY(conversation), conversation_len);
  const int model_at = r->key.len;
  appendBinaryStringInfo(&r->key, mkey, key_len);
  GroupKey key{r->key.data, r->key.len};
  auto* g = static_cast<LedgerGroup*>(hash_search(r->groups, &key, HASH_FIND, nullptr));
  if (g == nullptr) {
    char* stored = static_cast<char*>(MemoryContextAlloc(r->work, r->key.len));
    memcpy(stored, r->key.data, r->key.len);
    key.bytes = stored;
    g = static_cast<LedgerGroup*>(hash_search(r->groups, &key, HASH_ENTER, nullptr));
    memset(reinterpret_cast<char*>(g) + sizeof(GroupKey), 0, sizeof(LedgerGroup) - sizeof(GroupKey));
    g->source_id = source_id;
    g->month = month;
    g->conversation = conversation == nullptr ? nullptr : stored + model_at - conversation_len;
    g->conversation_len = conversation_len;
    g->model = stored + model_at;
    g->model_len = key_len;
  }

  g->messages += messages;
  g->prompt += prompt;
  g->completion += completion;
  g->cached += cached;
  g->estimated_prompt += est_prompt;
  g->estimated_completion += est_completion;
  g->unsplit += unsplit;
  g->unpriced += unpriced;
  g->problems += problems;
  g->cost += cost;
  g->estimated_cost += estimated_cost;
  if (messages > 0) {
    if (!g->any_added || at < g->first_added) g->first_added = at;
    if (!g->any_added || at > g->last_added) g->last_added = at;
    g->any_added = true;
  } else if (messages < 0) {
    if (!g->any_removed || at < g->first_removed) g->first_removed = at;
    if (!g->any_removed || at > g->last_removed) g->last_removed = at;
    g->any_removed = true;
  }
}

void add_ledger_row(void* reader, const Datum* values, const bool* nulls) {
  add_row(static_cast<LedgerReader*>(reader), values, nulls);
}

}  // namespace

extern "C" Datum ledger_usage(PG_FUNCTION_ARGS) {
  InitMaterializedSRF(fcinfo, 0);
  auto* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
  if (PG_ARGISNULL(0) || PG_ARGISNULL(1)) PG_RETURN_NULL();
  const TimestampTz from = PG_GETARG_TIMESTAMPTZ(0);
  const TimestampTz to = PG_GETARG_TIMESTAMPTZ(1);
  const char* estimate_model = PG_ARGISNULL(2) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(2));

  // Groups and their keys live in this context until the rows are returned.
  const MemoryContext work = AllocSetContextCreate(CurrentMemoryContext, "billing ledger usage", ALLOCSET_DEFAULT_SIZES);
  HASHCTL ctl;
  memset(&ctl, 0, sizeof ctl);
  ctl.keysize = sizeof(GroupKey);
  ctl.entrysize = sizeof(LedgerGroup);
  ctl.hash = hash_key;
  ctl.match = match_key;
  ctl.hcxt = work;
  HTAB* groups = hash_create("billing ledger groups", 256, &ctl, HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);

  CostCall* call = cost_call(fcinfo);
  ModelResolution estimate_resolution;
  if (estimate_model != nullptr)
    estimate_resolution = resolve_model_cached(fcinfo, call, estimate_model, static_cast<int>(strlen(estimate_model)));

  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "billing: SPI_connect failed");
  pg_tz* tz = month_time_zone();
  // The months fully inside [from, to): their rows are the ones wanted.
  const DateADT first_month = month_containing(from, tz);
  const TimestampTz first_start = month_begins(first_month, 0, tz);
  const TimestampTz lo = first_start >= from ? first_start : month_begins(first_month, 1, tz);
  const DateADT last_month = month_containing(to, tz);
  const TimestampTz hi = TIMESTAMP_NOT_FINITE(to) ? to : month_begins(last_month, 0, tz);

  // The rows go straight from the executor to add_row() (ledger_read.cpp).
  LedgerReader reader{};
  reader.fcinfo = fcinfo;
  reader.call = call;
  reader.estimate_resolution = estimate_resolution;
  reader.has_estimate_model = estimate_model != nullptr;
  reader.months.set_time_zone(tz);
  reader.groups = groups;
  reader.work = work;
  {
    const MemoryContext old = MemoryContextSwitchTo(work);
    initStringInfo(&reader.key);
    MemoryContextSwitchTo(old);
  }
  read_ledger_rows(kLedgerQuery, lo, hi, add_ledger_row, &reader);
  if (citus_present()) read_ledger_rows(kCitusLedgerQuery, lo, hi, add_ledger_row, &reader);
  SPI_finish();

  // One row per group.
  HASH_SEQ_STATUS scan;
  hash_seq_init(&scan, groups);
  while (auto* g = static_cast<LedgerGroup*>(hash_seq_search(&scan))) {
    Datum v[18];
    bool n[18] = {};
    v[0] = Int16GetDatum(g->source_id);
    v[1] = DateADTGetDatum(g->month);
    if (g->conversation == nullptr) {
      n[2] = true;
      v[2] = 0;
    } else {
      v[2] = PointerGetDatum(cstring_to_text_with_len(g->conversation, g->conversation_len));
    }
    v[3] = PointerGetDatum(cstring_to_text_with_len(g->model, g->model_len));
    v[4] = Int64GetDatum(g->messages);
    v[5] = sum_to_numeric(g->prompt);
    v[6] = sum_to_numeric(g->completion);
    v[7] = sum_to_numeric(g->cached);
    v[8] = sum_to_numeric(g->estimated_prompt);
    v[9] = sum_to_numeric(g->estimated_completion);
    v[10] = sum_to_numeric(g->unsplit);
    v[11] = Int64GetDatum(g->problems);
    v[12] = atto_to_numeric(g->cost);
    v[13] = atto_to_numeric(g->estimated_cost);
    v[14] = sum_to_numeric(g->unpriced);
    v[15] = TimestampTzGetDatum(g->first_added);
    n[15] = !g->any_added;
    v[16] = TimestampTzGetDatum(g->last_added);
    n[16] = !g->any_added;
    v[17] = TimestampTzGetDatum(g->first_removed);
    n[17] = !g->any_removed;
    Datum all[19];
    bool all_null[19];
    memcpy(all, v, sizeof v);
    memcpy(all_null, n, sizeof n);
    all[18] = TimestampTzGetDatum(g->last_removed);
    all_null[18] = !g->any_removed;
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, all, all_null);
  }
  MemoryContextDelete(work);
  return static_cast<Datum>(0);
}
