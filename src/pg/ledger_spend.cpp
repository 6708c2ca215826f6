// SQL: billing._ledger_spend(p_from, p_to, p_estimate_model, p_conversations),
// the dollars of the unmerged ledger rows with p_from <= created_at < p_to,
// summed per tracked table, month and model key, and apart for the
// conversations asked for (C body `ledger_spend`). What budgets need from
// the ledger: billing.allowance() runs before every OpenAI request, so it
// cannot afford billing._ledger_usage's groups per conversation (about 1 us
// a row); here a row costs its pricing and one probe of a small hash table.
//
// The rules are those of billing._ledger_usage (src/pg/ledger_usage.cpp):
// a row's dollars are usage_cost(model, prompt, completion, cached, at)
// plus the cost of its estimate, priced as the row's model or, without
// one, as the estimate model; unpriced rows add nothing. The model key is
// billing._key(coalesce(model, '')), a conversation is matched by its
// billing._key(). A caller to whom row-level security on the ledger
// applies reads it with SPI, so that the policies apply as to any read;
// any other caller (the extension's owner: billing.allowance() runs as it)
// scans the table directly, with the query's snapshot and the privilege
// check a SELECT makes (no tuple is copied: a row costs about 0.1 us).
//
// Nothing here has a destructor: groups live in a dynahash table in the
// call's memory context.
#include "cost_call.h"
#include "ledger_read.h"
#include "month.h"
#include "postgres_headers.h"

extern "C" {
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(ledger_spend);
}

using namespace billing;
using namespace billing::pg;

namespace {

// Exact sums, aligned to 8 bytes (dynahash entries are only MAXALIGNed).
__extension__ typedef __int128 Sum __attribute__((aligned(8)));

// The columns read, in this order (the SPI query's, and the names the
// direct scan looks up).
constexpr const char* kColumns[] = {"source_id", "created_at", "conversation_id", "model", "prompt_tokens",
                                    "completion_tokens", "cached_tokens", "estimated_prompt", "estimated_completion"};
constexpr int kColumnCount = 9;
constexpr const char* kSpendQuery =
    "SELECT l.source_id, l.created_at, l.conversation_id, l.model, l.prompt_tokens, l.completion_tokens, "
    "l.cached_tokens, l.estimated_prompt, l.estimated_completion FROM billing.usage_ledger AS l "
    "WHERE l.created_at OPERATOR(pg_catalog.>=) $1 AND l.created_at OPERATOR(pg_catalog.<) $2";

// The same columns of the distributed tables' ledgers (Citus only).
constexpr const char* kCitusSpendQuery =
    "SELECT l.source_id, l.created_at, l.conversation_id, l.model, l.prompt_tokens, l.completion_tokens, "
    "l.cached_tokens, l.estimated_prompt, l.estimated_completion FROM billing._citus_ledger_rows($1, $2) AS l";

struct Key {
  const char* bytes;
  int len;
};

struct SpendGroup {
  Key key;  // source id, month, conversation flag (+ key), model key
  int16 source_id;
  DateADT month;
  const char* conversation;  // nullptr: not one of the conversations asked for
  int conversation_len;
  const char* model;
  int model_len;
  Sum cost;  // atto-dollars
};

struct Wanted {  // one conversation asked for
  Key key;
};

uint32 hash_key(const void* key, Size) {
  const auto* k = static_cast<const Key*>(key);
  return DatumGetUInt32(hash_any(reinterpret_cast<const unsigned char*>(k->bytes), k->len));
}
int match_key(const void* a, const void* b, Size) {
  const auto* x = static_cast<const Key*>(a);
  const auto* y = static_cast<const Key*>(b);
  return x->len == y->len && memcmp(x->bytes, y->bytes, x->len) == 0 ? 0 : 1;
}

HTAB* key_table(const char* name, Size entry_size, MemoryContext cxt) {
  HASHCTL ctl;
  memset(&ctl, 0, sizeof ctl);
  ctl.keysize = sizeof(Key);
  ctl.entrysize = entry_size;
  ctl.hash = hash_key;
  ctl.match = match_key;
  ctl.hcxt = cxt;
  return hash_create(name, 64, &ctl, HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

constexpr int kRecent = 16;
// Longest group key: table (2), month (4), flag (1), length (4), and a
// conversation and a model as billing._key keys them (at most 200 bytes each).
constexpr int kMaxKey = 2 + 4 + 1 + 4 + 200 + 200;

// One call's sums: the groups, and what each row needs to be priced.
struct Spend {
  FunctionCallInfo fcinfo;
  CostCall* call;
  const char* estimate_model;
  ModelResolution estimate_resolution;
  MemoryContext work;
  HTAB* groups;
  HTAB* wanted;  // nullptr: no conversation asked for
  Key only;      // the one conversation asked for, when there is one (bytes nullptr: not one)
  MonthCache months;
  // The groups met last, tried before the hash table: a scan meets few
  // models, in any order.
  SpendGroup* recent[kRecent];
  int next_recent;
};

int64 int_at(const Datum* v, const bool* n, int i) { return n[i] ? 0 : DatumGetInt64(v[i]); }

// Adds one ledger row, its columns in kColumns' order.
void add_row(Spend* s, const Datum* v, const bool* n) {
  const int16 source_id = DatumGetInt16(v[0]);
  const TimestampTz at = DatumGetTimestampTz(v[1]);
  const DateADT month = s->months.month_of(at);
  const text* model = n[3] ? nullptr : DatumGetTextPP(v[3]);
  const int64 prompt = int_at(v, n, 4);
  const int64 completion = int_at(v, n, 5);
  const int64 cached = int_at(v, n, 6);
  const int64 est_prompt = int_at(v, n, 7);
  const int64 est_completion = int_at(v, n, 8);

  const char* model_bytes = model == nullptr ? "" : VARDATA_ANY(model);
  const int model_len = model == nullptr ? 0 : static_cast<int>(VARSIZE_ANY_EXHDR(model));
  Atto cost = 0, estimated_cost = 0;
  if (model != nullptr) {
    // (one price for both: the estimate is priced as the row's model)
    const TokenPrice* p = price_at(resolve_model_cached(s->fcinfo, s->call, model_bytes, model_len), at);
    if (!ledger_row_cost(p, prompt, completion, cached, &cost)) cost = 0;
    if (!ledger_row_cost(p, est_prompt, est_completion, 0, &estimated_cost)) estimated_cost = 0;
  } else if (s->estimate_model != nullptr) {
    if (!ledger_row_cost(price_at(s->estimate_resolution, at), est_prompt, est_completion, 0, &estimated_cost))
      estimated_cost = 0;
  }

  // The conversation, when it is one of those asked for.
  const char* conversation = nullptr;
  int conversation_len = 0;
  if (s->wanted != nullptr && !n[2]) {
    const text* c = DatumGetTextPP(v[2]);
    int len = 0;
    const char* ckey = ledger_key(VARDATA_ANY(c), static_cast<int>(VARSIZE_ANY_EXHDR(c)), &len);
    Key probe{ckey, len};
    const bool found = s->only.bytes != nullptr
                           ? s->only.len == len && memcmp(s->only.bytes, ckey, len) == 0
                           : hash_search(s->wanted, &probe, HASH_FIND, nullptr) != nullptr;
    if (found) {
      conversation = ckey;
      conversation_len = len;
    }
  }

  // The group: table, month, conversation asked for, model key, built on
  // the stack and copied only when the group is new.
  int key_len = 0;
  const char* mkey = ledger_key(model_bytes, model_len, &key_len);
  if (conversation_len > 200 || key_len > 200) elog(ERROR, "billing: a ledger key is longer than 200 bytes");
  char k[kMaxKey];
  int len = 0;
  memcpy(k + len, &source_id, sizeof source_id);
  len += sizeof source_id;
  memcpy(k + len, &month, sizeof month);
  len += sizeof month;
  k[len++] = conversation == nullptr ? 'n' : 'v';
  memcpy(k + len, &conversation_len, sizeof conversation_len);
  len += sizeof conversation_len;
  if (conversation != nullptr) {
    memcpy(k + len, conversation, conversation_len);
    len += conversation_len;
  }
  const int model_at = len;
  memcpy(k + len, mkey, key_len);
  len += key_len;
  SpendGroup* g = nullptr;
  for (SpendGroup* r : s->recent) {
    if (r != nullptr && r->key.len == len && memcmp(r->key.bytes, k, len) == 0) {
      g = r;
      break;
    }
  }
  if (g == nullptr) {
    Key key{k, len};
    g = static_cast<SpendGroup*>(hash_search(s->groups, &key, HASH_FIND, nullptr));
    if (g == nullptr) {
      char* stored = static_cast<char*>(MemoryContextAlloc(s->work, len));
      memcpy(stored, k, len);
      key.bytes = stored;
      g = static_cast<SpendGroup*>(hash_search(s->groups, &key, HASH_ENTER, nullptr));
      memset(reinterpret_cast<char*>(g) + sizeof(Key), 0, sizeof(SpendGroup) - sizeof(Key));
      g->source_id = source_id;
      g->month = month;
      g->conversation = conversation == nullptr ? nullptr : stored + model_at - conversation_len;
      g->conversation_len = conversation_len;
      g->model = stored + model_at;
      g->model_len = key_len;
    }
    s->recent[s->next_recent] = g;
    s->next_recent = (s->next_recent + 1) % kRecent;
  }
  g->cost += static_cast<Sum>(cost) + estimated_cost;
}

// The ledger through SPI, as the caller: row-level security applies.
void add_spend_row(void* spend, const Datum* values, const bool* nulls) {
  add_row(static_cast<Spend*>(spend), values, nulls);
}

// The ledger scanned directly with the query's snapshot, for a caller to
// whom no row-level security applies; false (nothing read) otherwise.
bool read_directly(Spend* s, Oid ledger, TimestampTz from, TimestampTz to) {
  if (check_enable_rls(ledger, InvalidOid, true) == RLS_ENABLED) return false;
  const AclResult acl = pg_class_aclcheck(ledger, GetUserId(), ACL_SELECT);
  if (acl != ACLCHECK_OK) aclcheck_error(acl, OBJECT_TABLE, get_rel_name(ledger));
  Relation rel = table_open(ledger, AccessShareLock);
  const TupleDesc desc = RelationGetDescr(rel);
  int attno[kColumnCount];  // 0-based attribute of each column
  int last = 0;
  for (int c = 0; c < kColumnCount; ++c) {
    attno[c] = -1;
    for (int a = 0; a < desc->natts; ++a) {
      const Form_pg_attribute att = TupleDescAttr(desc, a);
      if (!att->attisdropped && strcmp(NameStr(att->attname), kColumns[c]) == 0) attno[c] = a;
    }
    if (attno[c] < 0) elog(ERROR, "billing: billing.usage_ledger has no column %s", kColumns[c]);
    if (attno[c] + 1 > last) last = attno[c] + 1;
  }
  TupleTableSlot* slot = table_slot_create(rel, nullptr);
  TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, nullptr);
  Datum v[kColumnCount];
  bool n[kColumnCount];
  while (table_scan_getnextslot(scan, ForwardScanDirection, slot)) {
    CHECK_FOR_INTERRUPTS();
    slot_getsomeattrs(slot, last);
    for (int c = 0; c < kColumnCount; ++c) {
      v[c] = slot->tts_values[attno[c]];
      n[c] = slot->tts_isnull[attno[c]];
    }
    if (n[1]) continue;
    const TimestampTz at = DatumGetTimestampTz(v[1]);
    if (at < from || at >= to) continue;
    add_row(s, v, n);
  }
  table_endscan(scan);
  ExecDropSingleTupleTableSlot(slot);
  table_close(rel, AccessShareLock);
  return true;
}

}  // namespace

extern "C" Datum ledger_spend(PG_FUNCTION_ARGS) {
  InitMaterializedSRF(fcinfo, 0);
  auto* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
  if (PG_ARGISNULL(0) || PG_ARGISNULL(1)) PG_RETURN_NULL();
  const TimestampTz from = PG_GETARG_TIMESTAMPTZ(0);
  const TimestampTz to = PG_GETARG_TIMESTAMPTZ(1);

  Spend s{};
  s.fcinfo = fcinfo;
  s.estimate_model = PG_ARGISNULL(2) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(2));
  s.work = AllocSetContextCreate(CurrentMemoryContext, "billing ledger spend", ALLOCSET_DEFAULT_SIZES);
  s.groups = key_table("billing ledger spend groups", sizeof(SpendGroup), s.work);
  if (!PG_ARGISNULL(3)) {
    ArrayType* conversations = PG_GETARG_ARRAYTYPE_P(3);
    Datum* elems;
    bool* nulls;
    int count;
    deconstruct_array(conversations, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &count);
    for (int i = 0; i < count; ++i) {
      if (nulls[i]) continue;
      if (s.wanted == nullptr) s.wanted = key_table("billing ledger spend conversations", sizeof(Wanted), s.work);
      const text* t = DatumGetTextPP(elems[i]);
      const int len = static_cast<int>(VARSIZE_ANY_EXHDR(t));
      char* copy = static_cast<char*>(MemoryContextAlloc(s.work, len + 1));
      memcpy(copy, VARDATA_ANY(t), len);
      Key key{copy, len};
      hash_search(s.wanted, &key, HASH_ENTER, nullptr);
    }
    // (billing.allowance() asks for one: a comparison instead of a probe)
    if (s.wanted != nullptr && hash_get_num_entries(s.wanted) == 1) {
      HASH_SEQ_STATUS scan;
      hash_seq_init(&scan, s.wanted);
      s.only = static_cast<Wanted*>(hash_seq_search(&scan))->key;
      hash_seq_term(&scan);
    }
  }
  s.call = cost_call(fcinfo);
  if (s.estimate_model != nullptr)
    s.estimate_resolution =
        resolve_model_cached(fcinfo, s.call, s.estimate_model, static_cast<int>(strlen(s.estimate_model)));

  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "billing: SPI_connect failed");
  s.months.set_time_zone(month_time_zone());
  const Oid ledger = get_relname_relid("usage_ledger", get_namespace_oid("billing", false));
  if (!OidIsValid(ledger)) elog(ERROR, "billing: billing.usage_ledger is missing");
  if (!read_directly(&s, ledger, from, to)) read_ledger_rows(kSpendQuery, from, to, add_spend_row, &s);
  if (citus_present()) read_ledger_rows(kCitusSpendQuery, from, to, add_spend_row, &s);
  SPI_finish();

  HASH_SEQ_STATUS scan;
  hash_seq_init(&scan, s.groups);
  while (auto* g = static_cast<SpendGroup*>(hash_seq_search(&scan))) {
    Datum v[5];
    bool n[5] = {};
    v[0] = Int16GetDatum(g->source_id);
    v[1] = DateADTGetDatum(g->month);
    v[2] = PointerGetDatum(cstring_to_text_with_len(g->model, g->model_len));
    if (g->conversation == nullptr) {
      n[3] = true;
      v[3] = 0;
    } else {
      v[3] = PointerGetDatum(cstring_to_text_with_len(g->conversation, g->conversation_len));
    }
    v[4] = atto_to_numeric(static_cast<Atto>(g->cost));
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
  }
  MemoryContextDelete(s.work);
  return static_cast<Datum>(0);
}
