// SQL: billing._scan_table_grouped(t, p_from, p_to, p_estimate_model) (C
// body `scan_table_grouped`), what billing._scan_table returns, and
// billing._backfill_rows(t) (C body `backfill_rows`), the rows a backfill
// records in estimated_prompts and problem_messages.
//
// Both read a tracked table in one pass, with the queries that
// billing._scan_queries(t) writes (the columns as stored, the data as jsonb
// or, for data stored as text, billing._usage_of_text's columns), run with
// SPI as the caller (row-level security applies) into a DestReceiver, so
// that no row is copied: each is taken apart where the executor holds it.
//
// _scan_table_grouped replaces a query that called usage_of, usage_cost
// twice, _key and month_of on every row: here each row's usage is read with
// the core (read_usage, message_figures), priced through the call's price
// cache, and added to its (month, conversation key, model key) group in a
// KeyedTable of exact sums (src/core/scan_totals.h), made into numerics
// once per group. The rules are billing's SQL ones, stated once each:
// - the columns are read as billing._column_reader reads them: ids and
//   conversations as text (a uuid or an integer in its text form, a
//   character(n) without its trailing spaces), keyed by billing._key; a
//   time without time zone (or a date) as UTC; conversations grouped by
//   their key's bytes, as the ledger and merge() group them (the SQL
//   grouped them under the column's collation: under a nondeterministic
//   one, 'Conv' and 'conv' made one group there, two here);
// - usage as billing.usage_of gives it (message_figures), a reply without
//   usage estimated from its content (src/core/usage.h);
// - costs as billing.usage_cost (usage_cost_rule), the estimate's for the
//   row's model or else the estimate model;
// - an estimated reply's prompt is its frozen billing.estimated_prompts
//   row, else (before the table's first backfill) the estimate of its
//   conversation's earlier messages (EarlierSums below), else 0.
//
// _backfill_rows takes the FOR SHARE locks of the old backfill's first
// statement on the rows it lists (estimated replies, problems, times
// billing does not count), then computes the estimates of the estimated
// replies with a fresh snapshot, set-based: one read of the messages of
// their conversations instead of a query per reply.
//
// Nothing here throws or keeps an object with a destructor across a call
// that may ereport: the core calls are noexcept, the state is plain data in
// memory contexts.
#include "cost_call.h"
#include "keyed_table.h"
#include "ledger_read.h"
#include "ledger_row.h"
#include "month.h"
#include "reply_role.h"
#include "postgres_headers.h"
#include "scan_totals.h"
#include "text_estimate.h"
#include "usage.h"

extern "C" {
#include "catalog/pg_enum.h"
#include "common/md5.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "mb/pg_wchar.h"
#include "nodes/params.h"
#include "tcop/dest.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/date.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(scan_table_grouped);
PG_FUNCTION_INFO_V1(backfill_rows);
PG_FUNCTION_INFO_V1(backfill_scan);
}

using namespace billing;
using namespace billing::pg;

namespace {

// ---------------------------------------------------------------------------
// Columns
// ---------------------------------------------------------------------------

// The base types billing reads (billing._column_reader accepts no other).
enum class Kind : uint8 { Text, Bpchar, Uuid, Int2, Int4, Int8, Enum, TimestampTz, Timestamp, Date, Jsonb, Other };

struct Column {
  Oid base;
  Oid collation;
  Kind kind;
};

Column column_of(TupleDesc desc, int index) {
  const Form_pg_attribute a = TupleDescAttr(desc, index);
  Column c;
  c.base = getBaseType(a->atttypid);
  c.collation = a->attcollation;
  switch (c.base) {
    case TEXTOID:
    case VARCHAROID: c.kind = Kind::Text; break;
    case BPCHAROID: c.kind = Kind::Bpchar; break;
    case UUIDOID: c.kind = Kind::Uuid; break;
    case INT2OID: c.kind = Kind::Int2; break;
    case INT4OID: c.kind = Kind::Int4; break;
    case INT8OID: c.kind = Kind::Int8; break;
    case TIMESTAMPTZOID: c.kind = Kind::TimestampTz; break;
    case TIMESTAMPOID: c.kind = Kind::Timestamp; break;
    case DATEOID: c.kind = Kind::Date; break;
    case JSONBOID: c.kind = Kind::Jsonb; break;
    default: c.kind = get_typtype(c.base) == TYPTYPE_ENUM ? Kind::Enum : Kind::Other; break;
  }
  return c;
}

// A result column of the wrong type: billing._scan_queries and this file disagree.
void expect_kind(const Column& c, bool ok, const char* what) {
  if (!ok)
    ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                    errmsg("billing: the scan of a tracked table read %s as type %s", what, format_type_be(c.base))));
}
bool is_id_kind(Kind k) {
  return k == Kind::Text || k == Kind::Bpchar || k == Kind::Uuid || k == Kind::Int2 || k == Kind::Int4 ||
         k == Kind::Int8;
}
bool is_text_kind(Kind k) { return k == Kind::Text || k == Kind::Bpchar; }
bool is_time_kind(Kind k) { return k == Kind::TimestampTz || k == Kind::Timestamp || k == Kind::Date; }

// Bytes of a text value, without a copy unless it is toasted (then the copy
// is made in the current memory context).
struct Bytes {
  const char* data;
  int len;
};

// A text, varchar or character value as text: a character(n) without its
// trailing spaces, as its cast to text gives it.
Bytes text_bytes(Datum v, Kind k) {
  const struct varlena* t = pg_detoast_datum_packed(reinterpret_cast<struct varlena*>(DatumGetPointer(v)));
  Bytes b{VARDATA_ANY(t), static_cast<int>(VARSIZE_ANY_EXHDR(t))};
  if (k == Kind::Bpchar)
    while (b.len > 0 && b.data[b.len - 1] == ' ') --b.len;
  return b;
}

// Room for an id's text (a uuid, an integer) or a shortened key.
constexpr int kKeyBuffer = 256;

// An id or conversation value as its column reader gives it as text
// (`x::uuid::text`, `x::bigint::text`, ...), written into buf when it is
// not a text already.
Bytes id_text(Datum v, Kind k, char (&buf)[kKeyBuffer]) {
  switch (k) {
    case Kind::Text:
    case Kind::Bpchar:
      return text_bytes(v, k);
    case Kind::Uuid: {
      // uuid_out's form: lower-case hex, 8-4-4-4-12.
      static constexpr char kHex[] = "0123456789abcdef";
      const pg_uuid_t* u = DatumGetUUIDP(v);
      int n = 0;
      for (int i = 0; i < UUID_LEN; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) buf[n++] = '-';
        buf[n++] = kHex[u->data[i] >> 4];
        buf[n++] = kHex[u->data[i] & 0x0F];
      }
      return Bytes{buf, n};
    }
    case Kind::Int2: return Bytes{buf, pg_lltoa(DatumGetInt16(v), buf)};
    case Kind::Int4: return Bytes{buf, pg_lltoa(DatumGetInt32(v), buf)};
    case Kind::Int8: return Bytes{buf, pg_lltoa(DatumGetInt64(v), buf)};
    default: break;
  }
  elog(ERROR, "billing: not an id type");
  return Bytes{nullptr, 0};
}

// billing._key(): a value as is up to 200 bytes, else its first 32
// characters, '... (md5 ', its md5 and ')' (written into buf).
Bytes key_of(Bytes value, char (&buf)[kKeyBuffer]) {
  if (static_cast<size_t>(value.len) <= kMaxPlainKeyBytes) return value;
  char md5[33];
  const char* errstr = nullptr;
  if (!pg_md5_hash(value.data, value.len, md5, &errstr)) elog(ERROR, "billing: md5 failed: %s", errstr);
  const int head = pg_mbcharcliplen(value.data, value.len, 32);
  const int n = snprintf(buf, kKeyBuffer, "%.*s... (md5 %s)", head, value.data, md5);
  return Bytes{buf, n};
}

// A message time as billing counts it: a timestamp without time zone read
// as UTC, a date as midnight UTC (an error beyond timestamp's range, as the
// cast gives).
TimestampTz time_of(Datum v, Kind k) {
  switch (k) {
    case Kind::TimestampTz: return DatumGetTimestampTz(v);
    case Kind::Timestamp: return DatumGetTimestamp(v);
    case Kind::Date: return date_as_time(DatumGetDateADT(v));
    default: break;
  }
  elog(ERROR, "billing: not a time type");
  return 0;
}

// The estimate of a text (src/core/usage.h), counted in characters.
int64 text_estimate(Datum v, Kind k) {
  const Bytes b = text_bytes(v, k);
  return billing::pg::text_estimate(b.data, b.len);
}

// Whether a role says an assistant's reply; an enum's label is looked up
// once per value.
struct RoleReader {
  Kind kind;
  Oid last_enum;
  bool last_assistant;
};
bool is_assistant(RoleReader* r, Datum v) {
  if (r->kind != Kind::Enum) {
    const Bytes b = text_bytes(v, r->kind);
    return is_assistant_role(std::string_view(b.data, b.len));
  }
  const Oid label = DatumGetObjectId(v);
  if (label != r->last_enum || !OidIsValid(label)) {
    HeapTuple tup = SearchSysCache1(ENUMOID, ObjectIdGetDatum(label));
    if (!HeapTupleIsValid(tup)) elog(ERROR, "billing: invalid internal value for enum: %u", label);
    r->last_assistant = is_assistant_role(NameStr(reinterpret_cast<Form_pg_enum>(GETSTRUCT(tup))->enumlabel));
    ReleaseSysCache(tup);
    r->last_enum = label;
  }
  return r->last_assistant;
}

// ---------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------

// A DestReceiver that hands each row to a function, where the executor
// holds it (no copy).
struct RowReceiver {
  DestReceiver pub;  // first: the executor sees a DestReceiver
  void (*start)(void* state, TupleDesc desc);
  void (*row)(void* state, TupleTableSlot* slot);
  void* state;
};

bool receive_slot(TupleTableSlot* slot, DestReceiver* self) {
  auto* r = reinterpret_cast<RowReceiver*>(self);
  r->row(r->state, slot);
  return true;
}
void receiver_startup(DestReceiver* self, int, TupleDesc desc) {
  auto* r = reinterpret_cast<RowReceiver*>(self);
  r->start(r->state, desc);
}
void receiver_nothing(DestReceiver*) {}

// Runs `sql` with SPI (connected by the caller) into `start` and `row`.
// read_only: in the caller's snapshot; else with a new snapshot, as any
// statement of a volatile function. Never a parallel plan: the rows must
// reach this backend's receiver, and a worker would copy each row whole.
void run_query(const char* sql, int nargs, Oid* types, Datum* values, bool read_only,
               void (*start)(void*, TupleDesc), void (*row)(void*, TupleTableSlot*), void* state) {
  SPIPlanPtr plan = SPI_prepare_cursor(sql, nargs, types, 0);
  if (plan == nullptr) elog(ERROR, "billing: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
  ParamListInfo params = nargs > 0 ? makeParamList(nargs) : nullptr;
  for (int i = 0; i < nargs; ++i) {
    params->params[i].value = values[i];
    params->params[i].isnull = false;
    params->params[i].pflags = PARAM_FLAG_CONST;
    params->params[i].ptype = types[i];
  }
  RowReceiver receiver;
  memset(&receiver, 0, sizeof receiver);
  receiver.pub.receiveSlot = receive_slot;
  receiver.pub.rStartup = receiver_startup;
  receiver.pub.rShutdown = receiver_nothing;
  receiver.pub.rDestroy = receiver_nothing;
  receiver.pub.mydest = DestNone;
  receiver.start = start;
  receiver.row = row;
  receiver.state = state;
  SPIExecuteOptions options;
  memset(&options, 0, sizeof options);
  options.params = params;
  options.read_only = read_only;
  options.dest = &receiver.pub;
  const int rc = SPI_execute_plan_extended(plan, &options);
  if (rc < 0) elog(ERROR, "billing: SPI_execute failed: %s", SPI_result_code_string(rc));
  SPI_freeplan(plan);
}

// The queries of billing._scan_queries(t), copied into `cxt`.
struct ScanQueries {
  char* rows;
  char* recorded;
  char* earlier;
  char* every;
};
ScanQueries scan_queries(Datum t, MemoryContext cxt) {
  Oid type = HeapTupleHeaderGetTypeId(DatumGetHeapTupleHeader(t));
  if (SPI_execute_with_args("SELECT q.rows, q.recorded, q.earlier, q.every FROM billing._scan_queries($1) AS q", 1,
                            &type, &t, nullptr, true, 1) != SPI_OK_SELECT ||
      SPI_processed != 1)
    elog(ERROR, "billing: billing._scan_queries returned no queries");
  ScanQueries q;
  const MemoryContext old = MemoryContextSwitchTo(cxt);
  q.rows = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
  q.recorded = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
  q.earlier = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
  q.every = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
  MemoryContextSwitchTo(old);
  if (q.rows == nullptr || q.recorded == nullptr || q.earlier == nullptr || q.every == nullptr)
    elog(ERROR, "billing: billing._scan_queries returned no queries");
  return q;
}

// The arena of the core's tables: blocks of a memory context, cut up in
// 8-byte steps (palloc rounds a small chunk up to a power of two: a group,
// about 300 bytes, would take 512), never freed one by one.
struct BlockArena {
  MemoryContext cxt;
  char* next;
  Size left;
};
void* block_allocate(void* context, std::size_t bytes) noexcept {
  auto* a = static_cast<BlockArena*>(context);
  constexpr Size kBlock = 64 * 1024;
  bytes = (bytes + 7) & ~static_cast<std::size_t>(7);
  if (bytes > kBlock / 8) return MemoryContextAllocExtended(a->cxt, bytes, MCXT_ALLOC_NO_OOM);
  if (a->left < bytes) {
    a->next = static_cast<char*>(MemoryContextAllocExtended(a->cxt, kBlock, MCXT_ALLOC_NO_OOM));
    if (a->next == nullptr) {
      a->left = 0;
      return nullptr;
    }
    a->left = kBlock;
  }
  void* p = a->next;
  a->next += bytes;
  a->left -= bytes;
  return p;
}
Arena arena_in(MemoryContext cxt) {
  auto* a = static_cast<BlockArena*>(MemoryContextAllocZero(cxt, sizeof(BlockArena)));
  a->cxt = cxt;
  return Arena{block_allocate, a};
}

void out_of_memory() {
  ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("billing: out of memory grouping a tracked table's rows")));
}

// ---------------------------------------------------------------------------
// The rows of the scan queries
// ---------------------------------------------------------------------------

// The first columns of billing._scan_queries' `rows` and `recorded`
// queries, then the data (jsonb) or billing._usage_of_text's columns.
enum RowColumn { kConversation, kId, kCreatedAt, kRole, kContent, kData, kRowColumns };
enum DecodedColumn { kModel = kData, kPrompt, kCompletion, kCached, kEstimatedCompletion, kUnsplit, kProblem,
                     kEstimated, kDecodedColumns };

// How a scan reads its rows.
struct RowReader {
  Column conversation, id, created_at, content;
  RoleReader role;
  bool decoded;        // usage from billing._usage_of_text's columns, not from jsonb
  UsageLayout layout;  // read_usage's keys of the last usage object; zeroed: none
};

void start_rows(RowReader* r, TupleDesc desc) {
  if (desc->natts != kRowColumns && desc->natts != kDecodedColumns)
    elog(ERROR, "billing: the scan of a tracked table got %d columns", desc->natts);
  r->conversation = column_of(desc, kConversation);
  r->id = column_of(desc, kId);
  r->created_at = column_of(desc, kCreatedAt);
  r->content = column_of(desc, kContent);
  const Column role = column_of(desc, kRole);
  expect_kind(r->conversation, is_id_kind(r->conversation.kind), "a conversation id");
  expect_kind(r->id, is_id_kind(r->id.kind), "a message id");
  expect_kind(r->created_at, is_time_kind(r->created_at.kind), "a message time");
  expect_kind(r->content, is_text_kind(r->content.kind), "message content");
  expect_kind(role, is_text_kind(role.kind) || role.kind == Kind::Enum, "a role");
  r->role.kind = role.kind;
  r->role.last_enum = InvalidOid;
  r->decoded = desc->natts == kDecodedColumns;
  if (!r->decoded) expect_kind(column_of(desc, kData), column_of(desc, kData).kind == Kind::Jsonb, "usage data");
}

// What one row says of its message: billing.usage_of's figures, its
// completion estimate, and the usage (to word a problem, jsonb data only).
struct RowUsage {
  MessageFigures f;
  int64 estimated_completion;
  Usage usage;
};

RowUsage usage_of_row(RowReader* r, const Datum* v, const bool* null) {
  RowUsage u;
  u.usage = Usage{};
  u.estimated_completion = 0;
  if (!r->decoded) {
    if (!null[kData]) {
      const struct varlena* d = pg_detoast_datum_packed(reinterpret_cast<struct varlena*>(DatumGetPointer(v[kData])));
      u.usage = read_usage(JsonbContainerView{reinterpret_cast<const uint8_t*>(VARDATA_ANY(d)), VARSIZE_ANY_EXHDR(d)},
                           &r->layout);
    }
    // The role matters only to a message without usage.
    const bool assistant =
        u.usage.status == UsageStatus::NoUsage && !null[kRole] && is_assistant(&r->role, v[kRole]);
    u.f = message_figures(u.usage, assistant);
    if (u.f.estimated && !null[kContent]) u.estimated_completion = text_estimate(v[kContent], r->content.kind);
    return u;
  }
  // billing._usage_of_text's columns (its counts are never NULL).
  u.f = MessageFigures{};
  if (!null[kModel]) {
    const Bytes m = text_bytes(v[kModel], Kind::Text);
    u.f.has_model = true;
    u.f.model = std::string_view(m.data, m.len);
  }
  auto count = [&](int c) { return null[c] ? int64{0} : DatumGetInt64(v[c]); };
  u.f.prompt = count(kPrompt);
  u.f.completion = count(kCompletion);
  u.f.cached = count(kCached);
  u.f.unsplit = count(kUnsplit);
  u.estimated_completion = count(kEstimatedCompletion);
  u.f.problem = !null[kProblem];
  u.f.estimated = !null[kEstimated] && DatumGetBool(v[kEstimated]);
  return u;
}

// ---------------------------------------------------------------------------
// The estimate of a reply's prompt from its conversation's earlier messages
// ---------------------------------------------------------------------------
//
// For each target reply r: sum(billing._estimated_tokens(content)) over the
// messages m with m.conversation = r.conversation that come before it
// (billing._earlier_condition): earlier; at the same time, with integer ids
// the smaller id, with other ids a message that is not a reply, then
// another reply whose id sorts first. The columns are compared as stored (their types'
// own equality and order, with the columns' collations), as the SQL did per
// reply. Here one query reads the messages of the targets' conversations.

struct Target {
  Datum at, id;  // as stored; copies
  bool at_null, id_null;
  Sum128 sum;
  Target* next;  // the next target of the same conversation
};

struct Conversation {
  Datum value;
  uint32 hash;
  Target* targets;
  Conversation* next;  // the next one of the same bucket
};

struct EarlierSums {
  MemoryContext cxt;
  Column conversation, at, id, content;  // from the scan's row reader
  RoleReader role;
  bool ids_in_order;  // integer ids: a sequence's, in the order rows are stored; a tie in time is theirs alone
  int16 conversation_len;
  bool conversation_byval;
  char conversation_align;
  TypeCacheEntry* conversation_type;
  TypeCacheEntry* at_type;
  TypeCacheEntry* id_type;
  Conversation** buckets;
  int nbuckets;  // a power of two
  int nconversations;
  Conversation** list;  // the conversations, in the order added
  int list_size;
  MemoryContext row_cxt;
};

void earlier_init(EarlierSums* e, const RowReader& r, MemoryContext parent) {
  memset(e, 0, sizeof *e);
  e->cxt = AllocSetContextCreate(parent, "billing earlier messages", ALLOCSET_DEFAULT_SIZES);
  e->row_cxt = AllocSetContextCreate(parent, "billing earlier message", ALLOCSET_SMALL_SIZES);
  e->conversation = r.conversation;
  e->at = r.created_at;
  e->id = r.id;
  e->content = r.content;
  e->role = RoleReader{r.role.kind, InvalidOid, false};
  e->ids_in_order = billing::pg::ids_in_storage_order(r.id.base);
  get_typlenbyvalalign(e->conversation.base, &e->conversation_len, &e->conversation_byval, &e->conversation_align);
  e->conversation_type = lookup_type_cache(e->conversation.base, TYPECACHE_HASH_PROC_FINFO | TYPECACHE_EQ_OPR_FINFO);
  e->at_type = lookup_type_cache(e->at.base, TYPECACHE_CMP_PROC_FINFO);
  e->id_type = lookup_type_cache(e->id.base, TYPECACHE_CMP_PROC_FINFO);
  if (!OidIsValid(e->conversation_type->hash_proc) || !OidIsValid(e->conversation_type->eq_opr) ||
      !OidIsValid(e->at_type->cmp_proc) || !OidIsValid(e->id_type->cmp_proc))
    elog(ERROR, "billing: the column types of a tracked table have no hash or order");
  e->nbuckets = 256;
  e->buckets = static_cast<Conversation**>(MemoryContextAllocZero(e->cxt, sizeof(Conversation*) * e->nbuckets));
  e->list = static_cast<Conversation**>(MemoryContextAlloc(e->cxt, sizeof(Conversation*) * 64));
  e->list_size = 64;
}

uint32 conversation_hash(const EarlierSums* e, Datum v) {
  return DatumGetUInt32(FunctionCall1Coll(&e->conversation_type->hash_proc_finfo, e->conversation.collation, v));
}

Conversation* find_conversation(const EarlierSums* e, Datum v, uint32 h) {
  for (Conversation* c = e->buckets[h & (e->nbuckets - 1)]; c != nullptr; c = c->next)
    if (c->hash == h &&
        DatumGetBool(FunctionCall2Coll(&e->conversation_type->eq_opr_finfo, e->conversation.collation, c->value, v)))
      return c;
  return nullptr;
}

// A reply to estimate (a NULL conversation has no earlier messages: not a
// target). Its values are copied.
Target* earlier_add(EarlierSums* e, Datum conversation, Datum at, bool at_null, Datum id, bool id_null) {
  const MemoryContext old = MemoryContextSwitchTo(e->cxt);
  const uint32 h = conversation_hash(e, conversation);
  Conversation* c = find_conversation(e, conversation, h);
  if (c == nullptr) {
    if (e->nconversations >= e->nbuckets) {  // twice the buckets
      const int n = e->nbuckets * 2;
      auto** buckets = static_cast<Conversation**>(palloc0(sizeof(Conversation*) * n));
      for (int i = 0; i < e->nconversations; ++i) {
        Conversation* x = e->list[i];
        x->next = buckets[x->hash & (n - 1)];
        buckets[x->hash & (n - 1)] = x;
      }
      pfree(e->buckets);
      e->buckets = buckets;
      e->nbuckets = n;
    }
    if (e->nconversations == e->list_size) {
      e->list_size *= 2;
      e->list = static_cast<Conversation**>(repalloc(e->list, sizeof(Conversation*) * e->list_size));
    }
    c = static_cast<Conversation*>(palloc0(sizeof(Conversation)));
    c->value = datumCopy(conversation, e->conversation_byval, e->conversation_len);
    c->hash = h;
    c->next = e->buckets[h & (e->nbuckets - 1)];
    e->buckets[h & (e->nbuckets - 1)] = c;
    e->list[e->nconversations++] = c;
  }
  auto* t = static_cast<Target*>(palloc0(sizeof(Target)));
  t->at_null = at_null;
  t->id_null = id_null;
  t->at = at_null ? 0 : datumCopy(at, e->at_type->typbyval, e->at_type->typlen);
  t->id = id_null ? 0 : datumCopy(id, e->id_type->typbyval, e->id_type->typlen);
  t->next = c->targets;
  c->targets = t;
  MemoryContextSwitchTo(old);
  return t;
}

// A message's role, read only when a tie in time asks for it.
struct RoleOf {
  RoleReader* reader;
  Datum value;
  bool null;
  int8 reply;  // -1: not read yet
  bool is_reply() {
    if (reply < 0) reply = !null && is_assistant(reader, value);
    return reply != 0;
  }
};

// billing._earlier_condition against a target, a reply: SQL's (a1, a2) <
// (b1, b2) for (created_at, id) with integer ids, else (a1, a2, a3) < (b1,
// b2, b3) for (created_at, billing._reply_rank(role), id), the target's rank
// 1: NULL (false here) as soon as a pair to compare has a NULL.
bool earlier_than(const EarlierSums* e, Datum at, bool at_null, RoleOf* role, Datum id, bool id_null,
                  const Target* t) {
  if (at_null || t->at_null) return false;
  const int32 c = DatumGetInt32(FunctionCall2Coll(&e->at_type->cmp_proc_finfo, e->at.collation, at, t->at));
  if (c != 0) return c < 0;
  if (!e->ids_in_order && !role->is_reply()) return true;  // its question, stored at the same time
  if (id_null || t->id_null) return false;
  return DatumGetInt32(FunctionCall2Coll(&e->id_type->cmp_proc_finfo, e->id.collation, id, t->id)) < 0;
}

void earlier_start(void*, TupleDesc desc) {
  if (desc->natts != 5) elog(ERROR, "billing: the earlier messages' query got %d columns", desc->natts);
}

void earlier_row(void* state, TupleTableSlot* slot) {
  auto* e = static_cast<EarlierSums*>(state);
  slot_getallattrs(slot);
  const Datum* v = slot->tts_values;
  const bool* null = slot->tts_isnull;
  if (null[0]) return;
  const MemoryContext old = MemoryContextSwitchTo(e->row_cxt);
  Conversation* c = find_conversation(e, v[0], conversation_hash(e, v[0]));
  if (c != nullptr && !null[3]) {
    int64 tokens = -1;  // counted once, for the first target it is earlier than
    RoleOf role{&e->role, v[4], null[4], -1};
    for (Target* t = c->targets; t != nullptr; t = t->next) {
      if (!earlier_than(e, v[1], null[1], &role, v[2], null[2], t)) continue;
      if (tokens < 0) tokens = text_estimate(v[3], e->content.kind);
      t->sum += tokens;
    }
  }
  MemoryContextSwitchTo(old);
  MemoryContextReset(e->row_cxt);
}

// Computes every target's sum with `sql` (billing._scan_queries' `earlier`:
// the messages whose conversation = ANY ($1)).
void earlier_compute(EarlierSums* e, const char* sql, bool read_only) {
  if (e->nconversations == 0) return;
  Datum* values = static_cast<Datum*>(palloc(sizeof(Datum) * e->nconversations));
  for (int i = 0; i < e->nconversations; ++i) values[i] = e->list[i]->value;
  ArrayType* array = construct_array(values, e->nconversations, e->conversation.base, e->conversation_len,
                                     e->conversation_byval, e->conversation_align);
  Oid type = get_array_type(e->conversation.base);
  if (!OidIsValid(type)) elog(ERROR, "billing: no array type for %s", format_type_be(e->conversation.base));
  Datum arg = PointerGetDatum(array);
  run_query(sql, 1, &type, &arg, read_only, earlier_start, earlier_row, e);
}

// A target's sum as the SQL's bigint (an error beyond it, as its cast).
int64 earlier_sum(const Target* t) {
  if (t->sum > PG_INT64_MAX)
    ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("bigint out of range")));
  return static_cast<int64>(t->sum);
}

// ---------------------------------------------------------------------------
// The rows a backfill records
// ---------------------------------------------------------------------------

// A row the backfill records.
struct Recorded {
  char* message_id;  // billing._key(id); nullptr when the id is NULL
  int message_id_len;
  bool at_null;
  TimestampTz at;
  bool estimated;
  Target* target;  // nullptr: a NULL conversation, no earlier messages
  char* problem;   // the usage's problem, nullptr when none
};

struct Recording {
  MemoryContext work;
  MemoryContext row_cxt;
  RowReader reader;
  Recorded* rows;
  int nrows, size;
  EarlierSums earlier;
  bool earlier_ready;
};

void record_start(void* state, TupleDesc desc) { start_rows(&static_cast<Recording*>(state)->reader, desc); }

// Adds the row of v / null, whose usage is u and time at (unless at_null),
// to the rows recorded, with an earlier-messages target for an estimated
// reply: `estimated_in_pass` when the caller estimates it in its own read,
// else one the `earlier` query will estimate.
void record(Recording* r, const RowReader& reader, const Datum* v, const bool* null, const RowUsage& u, bool at_null,
            TimestampTz at, Target* estimated_in_pass = nullptr) {
  // The problem's words: usage_of's for jsonb, _usage_of_text's column for text.
  char problem[256];
  if (u.f.problem && !reader.decoded) describe_usage_error(u.usage, problem, sizeof problem);
  char id_buf[kKeyBuffer], key_buf[kKeyBuffer];
  Bytes id{nullptr, 0};
  if (!null[kId]) id = key_of(id_text(v[kId], reader.id.kind, id_buf), key_buf);

  const MemoryContext old = MemoryContextSwitchTo(r->work);
  if (r->nrows == r->size) {
    r->size = r->size == 0 ? 64 : r->size * 2;
    r->rows = static_cast<Recorded*>(r->rows == nullptr ? palloc(sizeof(Recorded) * r->size)
                                                         : repalloc(r->rows, sizeof(Recorded) * r->size));
  }
  Recorded* x = &r->rows[r->nrows++];
  memset(x, 0, sizeof *x);
  if (id.data != nullptr) {
    x->message_id = pnstrdup(id.data, id.len);
    x->message_id_len = id.len;
  }
  x->at_null = at_null;
  x->at = at;
  x->estimated = u.f.estimated;
  if (u.f.problem) x->problem = reader.decoded ? text_to_cstring(DatumGetTextPP(v[kProblem])) : pstrdup(problem);
  if (x->estimated && !null[kConversation]) {
    if (estimated_in_pass != nullptr) {
      x->target = estimated_in_pass;
    } else {
      if (!r->earlier_ready) {
        earlier_init(&r->earlier, reader, r->work);
        r->earlier_ready = true;
      }
      x->target = earlier_add(&r->earlier, v[kConversation], v[kCreatedAt], at_null, v[kId], null[kId]);
    }
  }
  MemoryContextSwitchTo(old);
}

void record_row(void* state, TupleTableSlot* slot) {
  auto* r = static_cast<Recording*>(state);
  slot_getallattrs(slot);
  const Datum* v = slot->tts_values;
  const bool* null = slot->tts_isnull;
  const MemoryContext old = MemoryContextSwitchTo(r->row_cxt);
  const RowUsage u = usage_of_row(&r->reader, v, null);
  const bool at_null = null[kCreatedAt];
  record(r, r->reader, v, null, u, at_null, at_null ? 0 : time_of(v[kCreatedAt], r->reader.created_at.kind));
  MemoryContextSwitchTo(old);
  MemoryContextReset(r->row_cxt);
}

// The recorded row i as _backfill_rows returns it: message_id, created_at,
// estimated, its prompt estimate, problem, into v / n.
void recorded_values(const Recording* r, int i, Datum* v, bool* n) {
  const Recorded& x = r->rows[i];
  n[0] = x.message_id == nullptr;
  v[0] = n[0] ? 0 : PointerGetDatum(cstring_to_text_with_len(x.message_id, x.message_id_len));
  n[1] = x.at_null;
  v[1] = TimestampTzGetDatum(x.at);
  n[2] = false;
  v[2] = BoolGetDatum(x.estimated);
  n[3] = !x.estimated;
  v[3] = Int64GetDatum(x.target == nullptr ? 0 : earlier_sum(x.target));
  n[4] = x.problem == nullptr;
  v[4] = n[4] ? 0 : CStringGetTextDatum(x.problem);
}

// ---------------------------------------------------------------------------
// _scan_table_grouped
// ---------------------------------------------------------------------------

// A group: its totals, and where its month, conversation key and model key
// are (the conversation and model keys are in the entry's key bytes). A
// uuid or integer conversation is kept as stored, 16 or 8 bytes, and made
// text only for the group (its text is short: the key is the text itself).
struct Group {
  ScanTotals totals;
  DateADT month;
  bool conversation_null, model_null;
  Kind conversation_kind;  // Uuid or Int8: the key holds the value as stored; else its key's text
  uint32 conversation_at, conversation_len;
  uint32 model_at, model_len;
};
using GroupTable = KeyedTable<Group>;

// An estimated reply, counted once its prompt estimate is known.
struct Pending {
  char* key;  // its group's key
  uint32 key_len;
  Group shape;  // the group's month and key positions
  ScanRow row;  // everything but the estimate's prompt and cost
  bool has_estimate_name;
  char* estimate_name;  // the row's model, else the estimate model
  int estimate_name_len;
  char* id_key;  // billing._key(id), nullptr when the id is NULL
  int id_key_len;
  Target* target;  // before the first backfill: its earlier messages' estimate
  bool found;      // a frozen estimate was found
  int64 estimated_prompt;
};

// The backfill's one read also estimates the replies' prompts, when it can:
// while the rows of a conversation come in the order of
// billing._earlier_condition (the table read by its created_at index),
// every row read before a reply is
// earlier than it, so the reply's estimate is the sum of those rows'
// estimates so far, plus that of any later-read row that turns out to be
// earlier. The replies of a conversation read out of that order (no such
// index, or rows of equal times read out of that order), or with a NULL id,
// are left to the `earlier` query. A row without a time is earlier than
// none, and nothing is earlier than it.
struct ConvState {
  bool unordered;  // a row came out of that order, or with a NULL
  bool has_last;
  bool last_reply;
  Datum last_at, last_id;  // the last row's; last_id in id_copy when by reference
  char* id_copy;
  Size id_copy_size;
  Sum128 total;     // the estimates of its rows read so far
  Target* targets;  // its replies estimated in this read
};

// A conversation's value as its equality compares it: a text as its bytes
// (a character(n) without trailing spaces), a uuid's 16 bytes, an
// integer's 8.
Bytes conversation_value(Datum v, Kind kind, int64* integer) {
  switch (kind) {
    case Kind::Uuid: return Bytes{reinterpret_cast<const char*>(DatumGetUUIDP(v)->data), UUID_LEN};
    case Kind::Int2: *integer = DatumGetInt16(v); break;
    case Kind::Int4: *integer = DatumGetInt32(v); break;
    case Kind::Int8: *integer = DatumGetInt64(v); break;
    default: return text_bytes(v, kind);
  }
  return Bytes{reinterpret_cast<const char*>(integer), sizeof *integer};
}

struct TableScan {
  CostCall* call;
  Oid relation;           // the tracked_tables row's table, as the caller gave it
  MemoryContext work;     // groups, pending rows: the length of the call
  MemoryContext row_cxt;  // reset after every row
  RowReader reader;
  MonthCache months;
  const char* estimate_model;
  int estimate_model_len;
  bool backfilled;
  GroupTable* groups;
  StringInfoData key;  // the current row's group key
  Pending* pending;
  int npending, pending_size;
  EarlierSums earlier;  // the pending replies' earlier messages (read mode, before the first backfill)
  bool earlier_ready;
  Recording* rec;  // the backfill's one pass: the rows it records (their targets estimate the pending replies too)
  KeyedTable<ConvState>* convs;  // ... and each conversation's rows so far (nullptr: every estimate by query)
  // Its progress: rows read, and when it last said so (a NOTICE every 5 s).
  int64 rows_read;
  TimestampTz started, reported;
  double rows_expected;
  const char* relation_name;
};

const TokenPrice* price_of(TableScan* s, const char* name, int len, TimestampTz at) {
  return price_cached(s->call, name, len, at).price;
}

// usage_cost(name, prompt, completion, cached, at) into *priced / *cost,
// raising its errors.
void price_row(TableScan* s, bool has_name, const char* name, int len, TimestampTz at, int64 prompt, int64 completion,
               int64 cached, bool* priced, Sum128* out) {
  Atto cost;
  const CostRule rule = usage_cost_rule(
      has_name, prompt, completion, cached, [&]() { return price_of(s, name, len, at); }, &cost);
  *out = cost;
  switch (rule) {
    case CostRule::Priced: *priced = true; return;
    case CostRule::Unpriced: *priced = false; return;
    case CostRule::SignsDiffer:
      ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                      errmsg("billing: token counts of one row must all have the same sign")));
      break;
    case CostRule::CachedExceedsPrompt:
      ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("billing: cached tokens exceed prompt tokens")));
      break;
    case CostRule::OutOfRange:
      ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("billing: cost out of range")));
      break;
  }
}

void add_to_group(TableScan* s, const char* key, uint32 key_len, const Group& shape, const ScanRow& row) {
  bool added = false;
  GroupTable::Entry* e = s->groups->find_or_add(key, key_len, &added);
  if (e == nullptr) out_of_memory();
  if (added) {
    e->value = shape;
    e->value.totals = ScanTotals{};
  }
  e->value.totals.add(row);
}

void scan_start(void* state, TupleDesc desc) { start_rows(&static_cast<TableScan*>(state)->reader, desc); }

// Adds a row with a countable time at, whose usage is u, to its group; an
// estimated reply to the pending ones.
void group_row(TableScan* s, const Datum* v, const bool* null, TimestampTz at, const RowUsage& u) {
  // The group key: month, conversation key, model key (each with a NULL flag).
  Group shape;
  memset(&shape, 0, sizeof shape);
  shape.month = s->months.month_of(at);
  resetStringInfo(&s->key);
  appendBinaryStringInfo(&s->key, reinterpret_cast<const char*>(&shape.month), sizeof shape.month);
  char id_buf[kKeyBuffer], key_buf[kKeyBuffer];
  shape.conversation_null = null[kConversation];
  appendStringInfoChar(&s->key, shape.conversation_null ? 'n' : 'v');
  if (!shape.conversation_null) {
    const Kind kind = s->reader.conversation.kind;
    Bytes k;
    int64 integer;
    if (kind == Kind::Uuid) {
      shape.conversation_kind = Kind::Uuid;
      k = Bytes{reinterpret_cast<const char*>(DatumGetUUIDP(v[kConversation])->data), UUID_LEN};
    } else if (kind == Kind::Int2 || kind == Kind::Int4 || kind == Kind::Int8) {
      shape.conversation_kind = Kind::Int8;
      integer = kind == Kind::Int2 ? DatumGetInt16(v[kConversation])
                : kind == Kind::Int4 ? DatumGetInt32(v[kConversation]) : DatumGetInt64(v[kConversation]);
      k = Bytes{reinterpret_cast<const char*>(&integer), sizeof integer};
    } else {
      shape.conversation_kind = Kind::Text;
      k = key_of(id_text(v[kConversation], kind, id_buf), key_buf);
    }
    appendBinaryStringInfo(&s->key, reinterpret_cast<const char*>(&k.len), sizeof k.len);
    shape.conversation_at = s->key.len;
    shape.conversation_len = k.len;
    appendBinaryStringInfo(&s->key, k.data, k.len);
  }
  shape.model_null = !u.f.has_model;
  appendStringInfoChar(&s->key, shape.model_null ? 'n' : 'v');
  shape.model_at = s->key.len;
  if (u.f.has_model) {
    const Bytes k = key_of(Bytes{u.f.model.data(), static_cast<int>(u.f.model.size())}, key_buf);
    shape.model_len = k.len;
    appendBinaryStringInfo(&s->key, k.data, k.len);
  }

  ScanRow row;
  row.at = at;
  row.prompt = u.f.prompt;
  row.completion = u.f.completion;
  row.cached = u.f.cached;
  row.unsplit = u.f.unsplit;
  row.problem = u.f.problem;
  row.estimated_completion = u.estimated_completion;
  price_row(s, u.f.has_model, u.f.model.data(), static_cast<int>(u.f.model.size()), at, row.prompt, row.completion,
            row.cached, &row.priced, &row.cost);
  // The estimate is priced as the row's model, else the estimate model.
  const bool has_estimate_name = u.f.has_model || s->estimate_model != nullptr;
  const char* estimate_name = u.f.has_model ? u.f.model.data() : s->estimate_model;
  const int estimate_name_len = u.f.has_model ? static_cast<int>(u.f.model.size()) : s->estimate_model_len;

  if (!u.f.estimated) {
    // No estimate: usage_cost(name, 0, 0, 0, at) is 0, or NULL without a name.
    price_row(s, has_estimate_name, estimate_name, estimate_name_len, at, 0, 0, 0, &row.estimate_priced,
              &row.estimated_cost);
    add_to_group(s, s->key.data, s->key.len, shape, row);
  } else {
    // Counted once its prompt estimate is known (after the scan).
    const MemoryContext old = MemoryContextSwitchTo(s->work);
    if (s->npending == s->pending_size) {
      s->pending_size = s->pending_size == 0 ? 64 : s->pending_size * 2;
      s->pending = static_cast<Pending*>(s->pending == nullptr ? palloc(sizeof(Pending) * s->pending_size)
                                                                : repalloc(s->pending, sizeof(Pending) * s->pending_size));
    }
    Pending* p = &s->pending[s->npending++];
    *p = Pending{};
    p->key = static_cast<char*>(palloc(s->key.len));
    memcpy(p->key, s->key.data, s->key.len);
    p->key_len = s->key.len;
    p->shape = shape;
    p->row = row;
    p->has_estimate_name = has_estimate_name;
    if (has_estimate_name) {
      p->estimate_name = pnstrdup(estimate_name, estimate_name_len);
      p->estimate_name_len = estimate_name_len;
    }
    if (!null[kId]) {
      const Bytes k = key_of(id_text(v[kId], s->reader.id.kind, id_buf), key_buf);
      p->id_key = pnstrdup(k.data, k.len);
      p->id_key_len = k.len;
    }
    // (the backfill estimates it by its key, from the rows it records)
    if (!s->backfilled && s->rec == nullptr && !null[kConversation]) {
      if (!s->earlier_ready) {
        earlier_init(&s->earlier, s->reader, s->work);
        s->earlier_ready = true;
      }
      p->target = earlier_add(&s->earlier, v[kConversation], v[kCreatedAt], null[kCreatedAt], v[kId], null[kId]);
    }
    MemoryContextSwitchTo(old);
  }
}

void scan_row(void* state, TupleTableSlot* slot) {
  auto* s = static_cast<TableScan*>(state);
  slot_getallattrs(slot);
  const Datum* v = slot->tts_values;
  const bool* null = slot->tts_isnull;
  const MemoryContext old = MemoryContextSwitchTo(s->row_cxt);
  // The query's WHERE keeps the times of [p_from, p_to), countable ones.
  if (null[kCreatedAt]) elog(ERROR, "billing: the scan of a tracked table read a row without a time");
  const TimestampTz at = time_of(v[kCreatedAt], s->reader.created_at.kind);
  if (!countable_time(at)) elog(ERROR, "billing: the scan of a tracked table read a row outside the years it counts");
  group_row(s, v, null, at, usage_of_row(&s->reader, v, null));
  MemoryContextSwitchTo(old);
  MemoryContextReset(s->row_cxt);
}

// Follows row v / null in its conversation; returns the target of an
// estimated reply when this read estimates it (nullptr: the query will).
Target* follow_conversation(TableScan* s, const Datum* v, const bool* null, bool estimated) {
  if (null[kConversation]) return nullptr;
  const EarlierSums* e = &s->rec->earlier;
  int64 integer;
  const Bytes value = conversation_value(v[kConversation], s->reader.conversation.kind, &integer);
  bool added = false;
  auto* entry = s->convs->find_or_add(value.data, static_cast<uint32>(value.len), &added);
  if (entry == nullptr) out_of_memory();
  ConvState& c = entry->value;
  const bool at_null = null[kCreatedAt], id_null = null[kId];
  RoleOf role{&s->rec->earlier.role, v[kRole], null[kRole], -1};
  if (at_null) {
    if (!estimated) return nullptr;
    const MemoryContext old = MemoryContextSwitchTo(s->work);
    auto* target = static_cast<Target*>(palloc0(sizeof(Target)));  // its estimate: 0
    target->at_null = true;
    MemoryContextSwitchTo(old);
    return target;
  }
  if (!c.unordered) {
    if (id_null) {
      c.unordered = true;
    } else if (c.has_last) {
      int order = DatumGetInt32(FunctionCall2Coll(&e->at_type->cmp_proc_finfo, e->at.collation, v[kCreatedAt], c.last_at));
      if (order == 0 && !e->ids_in_order) order = static_cast<int>(role.is_reply()) - static_cast<int>(c.last_reply);
      if (order == 0)
        order = DatumGetInt32(FunctionCall2Coll(&e->id_type->cmp_proc_finfo, e->id.collation, v[kId], c.last_id));
      if (order <= 0) c.unordered = true;
    }
    if (!c.unordered) {
      c.last_at = v[kCreatedAt];  // (a time is passed by value)
      if (!e->ids_in_order) c.last_reply = role.is_reply();
      if (e->id_type->typbyval) {
        c.last_id = v[kId];
      } else {
        const Size size = datumGetSize(v[kId], false, e->id_type->typlen);
        if (size > c.id_copy_size) {
          c.id_copy_size = size < 64 ? 64 : size * 2;
          c.id_copy = static_cast<char*>(MemoryContextAlloc(s->work, c.id_copy_size));
        }
        memcpy(c.id_copy, DatumGetPointer(v[kId]), size);
        c.last_id = PointerGetDatum(c.id_copy);
      }
      c.has_last = true;
    }
  }
  if (c.unordered && c.targets == nullptr) return nullptr;  // (its replies: the query's)
  const int64 tokens = null[kContent] ? 0 : text_estimate(v[kContent], s->reader.content.kind);
  for (Target* t = c.targets; t != nullptr; t = t->next)
    if (earlier_than(e, v[kCreatedAt], false, &role, v[kId], id_null, t)) t->sum += tokens;
  Target* target = nullptr;
  if (estimated && !c.unordered) {
    // Every row of the conversation read so far is earlier than this one.
    const MemoryContext old = MemoryContextSwitchTo(s->work);
    target = static_cast<Target*>(palloc0(sizeof(Target)));
    target->at = v[kCreatedAt];
    target->id = datumCopy(v[kId], e->id_type->typbyval, e->id_type->typlen);
    target->sum = c.total;
    target->next = c.targets;
    c.targets = target;
    MemoryContextSwitchTo(old);
  }
  c.total += tokens;
  return target;
}

// Every 5 s of a backfill: how far it is.
void report_progress(TableScan* s) {
  const TimestampTz now = GetCurrentTimestamp();
  if (now - s->reported < 5 * USECS_PER_SEC) return;
  s->reported = now;
  const double seconds = static_cast<double>(now - s->started) / USECS_PER_SEC;
  const double rate = s->rows_read / (seconds > 0.001 ? seconds : 0.001);
  const double expected = s->rows_expected > s->rows_read ? s->rows_expected : static_cast<double>(s->rows_read);
  ereport(NOTICE, (errmsg("billing: taking in %s: %lld of about %.0f rows, %.0f rows/s, about %.0f s left",
                          s->relation_name, static_cast<long long>(s->rows_read), expected, rate,
                          (expected - s->rows_read) / (rate > 1 ? rate : 1))));
}

void backfill_start(void* state, TupleDesc desc) {
  auto* s = static_cast<TableScan*>(state);
  start_rows(&s->reader, desc);
  Recording* r = s->rec;
  earlier_init(&r->earlier, s->reader, s->work);
  r->earlier_ready = true;
  // Equal conversations have equal bytes, unless a collation says otherwise.
  const Oid collation = s->reader.conversation.collation;
  if (OidIsValid(collation) && !get_collation_isdeterministic(collation)) return;
  const MemoryContext old = MemoryContextSwitchTo(s->work);
  s->convs = static_cast<KeyedTable<ConvState>*>(palloc0(sizeof(KeyedTable<ConvState>)));
  MemoryContextSwitchTo(old);
  if (!s->convs->init(arena_in(s->work), 1024)) out_of_memory();
}

// A row of the backfill's one pass: recorded if it is an estimated reply,
// has a problem or a time billing does not count; grouped if its time counts.
void backfill_row(void* state, TupleTableSlot* slot) {
  auto* s = static_cast<TableScan*>(state);
  slot_getallattrs(slot);
  const Datum* v = slot->tts_values;
  const bool* null = slot->tts_isnull;
  const MemoryContext old = MemoryContextSwitchTo(s->row_cxt);
  const RowUsage u = usage_of_row(&s->reader, v, null);
  const bool at_null = null[kCreatedAt];
  const TimestampTz at = at_null ? 0 : time_of(v[kCreatedAt], s->reader.created_at.kind);
  const bool countable = !at_null && countable_time(at);
  Target* estimated_in_pass = s->convs == nullptr ? nullptr : follow_conversation(s, v, null, u.f.estimated);
  if (u.f.estimated || u.f.problem || !countable) record(s->rec, s->reader, v, null, u, at_null, at, estimated_in_pass);
  if (countable) group_row(s, v, null, at, u);
  MemoryContextSwitchTo(old);
  MemoryContextReset(s->row_cxt);
  if ((++s->rows_read & 0xFFFF) == 0) report_progress(s);
}

// The frozen estimates of the pending replies (billing.estimated_prompts,
// read as the caller: its row-level security applies as to the SQL join).
void frozen_start(void*, TupleDesc desc) {
  if (desc->natts != 2) elog(ERROR, "billing: the estimates' query got %d columns", desc->natts);
}
struct Frozen {
  KeyedTable<int64>* table;
};
void frozen_row(void* state, TupleTableSlot* slot) {
  auto* f = static_cast<Frozen*>(state);
  slot_getallattrs(slot);
  if (slot->tts_isnull[0] || slot->tts_isnull[1]) return;
  const Bytes id = text_bytes(slot->tts_values[0], Kind::Text);
  bool added = false;
  auto* e = f->table->find_or_add(id.data, static_cast<uint32>(id.len), &added);
  if (e == nullptr) out_of_memory();
  e->value = DatumGetInt64(slot->tts_values[1]);
}

// The owner of billing.estimated_prompts (billing's), or InvalidOid.
Oid estimated_prompts_owner() {
  const Oid schema = get_namespace_oid("billing", true);
  const Oid relid = OidIsValid(schema) ? get_relname_relid("estimated_prompts", schema) : InvalidOid;
  if (!OidIsValid(relid)) return InvalidOid;
  HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
  if (!HeapTupleIsValid(tuple)) return InvalidOid;
  const Oid owner = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple))->relowner;
  ReleaseSysCache(tuple);
  return owner;
}

// Reads the frozen estimates of the message keys `keys` into `table`: the
// replies the caller has just read from the table, under its own rights
// (row security included). They are read as billing's owner, as a
// PostgreSQL foreign key check reads the other table as its owner: as one
// customer (billing.customer) row security hides estimated_prompts whole
// from other roles, since its rows name no conversation to narrow it by,
// and it listed every customer's message ids and estimates.
void frozen_estimates(int16 source_id, Oid relation, Datum* keys, int nkeys, KeyedTable<int64>* table) {
  if (nkeys == 0) return;
  Oid types[2] = {INT2OID, TEXTARRAYOID};
  Datum args[2] = {Int16GetDatum(source_id),
                   PointerGetDatum(construct_array(keys, nkeys, TEXTOID, -1, false, TYPALIGN_INT))};
  Frozen f{table};
  Oid caller;
  int context;
  GetUserIdAndSecContext(&caller, &context);
  const Oid owner = estimated_prompts_owner();
  // As billing's owner only for the table tracked as source_id, which the
  // caller may read: the scans take the tracked_tables row from their
  // caller, and a row made up with another table's id and a table of the
  // caller's own read that table's estimates of the ids the caller chose.
  // Otherwise the read stays the caller's, row security and all. (An error
  // on the way resets the user, as the (sub)transaction's abort does.)
  if (OidIsValid(owner) && OidIsValid(relation) && pg_class_aclcheck(relation, caller, ACL_SELECT) == ACLCHECK_OK) {
    SetUserIdAndSecContext(owner, context | SECURITY_LOCAL_USERID_CHANGE);
    Oid id_type = INT2OID;
    Datum id = Int16GetDatum(source_id);
    bool same = false;
    if (SPI_execute_with_args("SELECT t.relation::pg_catalog.oid FROM billing.tracked_tables AS t "
                              "WHERE t.id OPERATOR(pg_catalog.=) $1",
                              1, &id_type, &id, nullptr, true, 1) == SPI_OK_SELECT &&
        SPI_processed == 1) {
      bool isnull = false;
      const Datum tracked = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
      same = !isnull && DatumGetObjectId(tracked) == relation;
    }
    if (!same) SetUserIdAndSecContext(caller, context);
  }
  run_query("SELECT e.message_id, e.prompt_tokens FROM billing.estimated_prompts AS e "
            "WHERE e.source_id OPERATOR(pg_catalog.=) $1 AND e.message_id OPERATOR(pg_catalog.=) ANY ($2)",
            2, types, args, true, frozen_start, frozen_row, &f);
  SetUserIdAndSecContext(caller, context);
  // A distributed table tracked by its shards' triggers keeps them beside
  // its messages (billing.citus_estimates_N, src/sql/citus.sql).
  if (citus_present())
    run_query("SELECT e.message_id, e.prompt_tokens FROM billing._citus_frozen_estimates($1, $2) AS e", 2, types, args,
              true, frozen_start, frozen_row, &f);
}

// Counts a pending reply, its prompt estimate known.
void settle(TableScan* s, Pending* p) {
  p->row.estimated_prompt = p->estimated_prompt;
  price_row(s, p->has_estimate_name, p->estimate_name, p->estimate_name_len, p->row.at, p->row.estimated_prompt,
            p->row.estimated_completion, 0, &p->row.estimate_priced, &p->row.estimated_cost);
  add_to_group(s, p->key, p->key_len, p->shape, p->row);
}

// _scan_table: a pending reply's estimate is its frozen one, else 0 once
// the table is backfilled, else its earlier messages'.
void settle_pending(TableScan* s, int16 source_id, const ScanQueries& q) {
  if (s->npending == 0) return;
  int nkeys = 0;
  Datum* keys = static_cast<Datum*>(palloc(sizeof(Datum) * s->npending));
  for (int i = 0; i < s->npending; ++i)
    if (s->pending[i].id_key != nullptr)
      keys[nkeys++] = PointerGetDatum(cstring_to_text_with_len(s->pending[i].id_key, s->pending[i].id_key_len));
  auto* frozen = static_cast<KeyedTable<int64>*>(palloc0(sizeof(KeyedTable<int64>)));
  if (!frozen->init(arena_in(s->work), s->npending)) out_of_memory();
  frozen_estimates(source_id, s->relation, keys, nkeys, frozen);
  bool any_missing = false;
  for (int i = 0; i < s->npending; ++i) {
    Pending* p = &s->pending[i];
    const auto* e = p->id_key == nullptr ? nullptr : frozen->find(p->id_key, static_cast<uint32>(p->id_key_len));
    p->found = e != nullptr;
    p->estimated_prompt = p->found ? e->value : 0;
    if (!p->found && p->target != nullptr) any_missing = true;
  }
  if (any_missing) earlier_compute(&s->earlier, q.earlier, true);
  for (int i = 0; i < s->npending; ++i) {
    Pending* p = &s->pending[i];
    if (!p->found && p->target != nullptr) p->estimated_prompt = earlier_sum(p->target);
    settle(s, p);
  }
}

// The backfill's one pass: the estimates it records are what
// estimated_prompts holds once its INSERT ... ON CONFLICT DO NOTHING has
// run (a frozen one first, then the first recorded reply of each key), and
// what the rebuild of each month then reads for the pending replies.
void settle_backfill(TableScan* s, int16 source_id, const ScanQueries& q) {
  Recording* r = s->rec;
  if (r->earlier_ready) earlier_compute(&r->earlier, q.earlier, true);
  int nkeys = 0;
  Datum* keys = static_cast<Datum*>(palloc(sizeof(Datum) * (r->nrows + 1)));
  for (int i = 0; i < r->nrows; ++i)
    if (r->rows[i].estimated && r->rows[i].message_id != nullptr)
      keys[nkeys++] = PointerGetDatum(cstring_to_text_with_len(r->rows[i].message_id, r->rows[i].message_id_len));
  auto* estimates = static_cast<KeyedTable<int64>*>(palloc0(sizeof(KeyedTable<int64>)));
  if (!estimates->init(arena_in(s->work), nkeys + 1)) out_of_memory();
  frozen_estimates(source_id, s->relation, keys, nkeys, estimates);
  for (int i = 0; i < r->nrows; ++i) {
    const Recorded& x = r->rows[i];
    if (!x.estimated || x.message_id == nullptr) continue;
    bool added = false;
    auto* e = estimates->find_or_add(x.message_id, static_cast<uint32>(x.message_id_len), &added);
    if (e == nullptr) out_of_memory();
    if (added) e->value = x.target == nullptr ? 0 : earlier_sum(x.target);
  }
  for (int i = 0; i < s->npending; ++i) {
    Pending* p = &s->pending[i];
    const auto* e = p->id_key == nullptr ? nullptr : estimates->find(p->id_key, static_cast<uint32>(p->id_key_len));
    p->estimated_prompt = e == nullptr ? 0 : e->value;
    settle(s, p);
  }
}

Datum sum_to_numeric(Sum128 v) {
  char buf[48];
  char* p = buf + sizeof buf;
  *--p = '\0';
  const bool negative = v < 0;
  UAtto u = negative ? -static_cast<UAtto>(v) : static_cast<UAtto>(v);
  do {
    *--p = static_cast<char>('0' + static_cast<int>(u % 10));
    u /= 10;
  } while (u != 0);
  if (negative) *--p = '-';
  return DirectFunctionCall3(numeric_in, CStringGetDatum(p), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

Datum cost_to_numeric(const AttoSum& sum, int scale) {
  char buf[kAttoSumTextSize];
  format_atto_sum(sum, buf, scale);
  return DirectFunctionCall3(numeric_in, CStringGetDatum(buf), ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

Datum key_text(const GroupTable::Entry* e, uint32 at, uint32 len) {
  return PointerGetDatum(cstring_to_text_with_len(e->key + at, static_cast<int>(len)));
}

// The group's conversation key as text: billing._key(conversation::text).
Datum conversation_text(const GroupTable::Entry* e) {
  const Group& g = e->value;
  char buf[kKeyBuffer];
  Bytes b{e->key + g.conversation_at, static_cast<int>(g.conversation_len)};
  if (g.conversation_kind == Kind::Uuid) {
    pg_uuid_t u;
    memcpy(u.data, b.data, UUID_LEN);
    b = id_text(UUIDPGetDatum(&u), Kind::Uuid, buf);
  } else if (g.conversation_kind == Kind::Int8) {
    int64 integer;
    memcpy(&integer, b.data, sizeof integer);
    b = id_text(Int64GetDatum(integer), Kind::Int8, buf);
  }
  return PointerGetDatum(cstring_to_text_with_len(b.data, b.len));
}

// One row per group, with _scan_table's columns from column `first` (the
// columns before it NULL, but a false first one when first > 0).
void return_groups(ReturnSetInfo* rsinfo, const GroupTable* groups, MemoryContext row_cxt, int first, int columns) {
  for (const GroupTable::Entry* e = groups->first(); e != nullptr; e = e->next) {
    const MemoryContext old = MemoryContextSwitchTo(row_cxt);
    const Group& g = e->value;
    const ScanTotals& t = g.totals;
    Datum all[32];
    bool all_null[32];
    for (int i = 0; i < first; ++i) {
      all[i] = 0;
      all_null[i] = true;
    }
    if (first > 0) {
      all[0] = BoolGetDatum(false);
      all_null[0] = false;
    }
    Datum* v = all + first;
    bool* n = all_null + first;
    for (int i = 0; i < 16; ++i) n[i] = false;
    v[0] = DateADTGetDatum(g.month);
    n[1] = g.conversation_null;
    v[1] = g.conversation_null ? 0 : conversation_text(e);
    n[2] = g.model_null;
    v[2] = g.model_null ? 0 : key_text(e, g.model_at, g.model_len);
    v[3] = Int64GetDatum(t.messages);
    v[4] = sum_to_numeric(t.prompt);
    v[5] = sum_to_numeric(t.completion);
    v[6] = sum_to_numeric(t.cached);
    v[7] = sum_to_numeric(t.estimated_prompt);
    v[8] = sum_to_numeric(t.estimated_completion);
    v[9] = sum_to_numeric(t.unsplit);
    v[10] = Int64GetDatum(t.problems);
    v[11] = cost_to_numeric(t.cost, t.cost_scale);
    v[12] = cost_to_numeric(t.estimated_cost, t.estimated_cost_scale);
    v[13] = sum_to_numeric(t.unpriced);
    v[14] = TimestampTzGetDatum(t.first_at);
    v[15] = TimestampTzGetDatum(t.last_at);
    Assert(first + 16 == columns);
    (void)columns;
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, all, all_null);
    MemoryContextSwitchTo(old);
    MemoryContextReset(row_cxt);
  }
}

// A field of the tracked_tables row.
Datum table_field(HeapTupleHeader t, const char* name, bool* null) { return GetAttributeByName(t, name, null); }

}  // namespace

namespace {

// A scan of the table of tracked_tables row t (the function's first
// argument), its estimate model the function's argument `model_arg`.
TableScan* new_scan(FunctionCallInfo fcinfo, int model_arg, int16* source_id) {
  const HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
  bool null = false;
  *source_id = DatumGetInt16(table_field(row, "id", &null));
  if (null) elog(ERROR, "billing: a tracked table without an id");
  const Datum relation = table_field(row, "relation", &null);
  const bool backfilled = DatumGetBool(table_field(row, "backfilled", &null)) && !null;
  const text* estimate_model = PG_ARGISNULL(model_arg) ? nullptr : PG_GETARG_TEXT_PP(model_arg);

  auto* s = static_cast<TableScan*>(palloc0(sizeof(TableScan)));
  s->call = cost_call(fcinfo);
  s->relation = null ? InvalidOid : DatumGetObjectId(relation);
  s->work = AllocSetContextCreate(CurrentMemoryContext, "billing table scan", ALLOCSET_DEFAULT_SIZES);
  s->row_cxt = AllocSetContextCreate(CurrentMemoryContext, "billing table scan row", ALLOCSET_SMALL_SIZES);
  s->backfilled = backfilled;
  if (estimate_model != nullptr) {
    s->estimate_model = VARDATA_ANY(estimate_model);
    s->estimate_model_len = static_cast<int>(VARSIZE_ANY_EXHDR(estimate_model));
  }
  const MemoryContext old = MemoryContextSwitchTo(s->work);
  initStringInfo(&s->key);
  s->groups = static_cast<GroupTable*>(palloc0(sizeof(GroupTable)));
  MemoryContextSwitchTo(old);
  if (!s->groups->init(arena_in(s->work), 1024)) out_of_memory();
  return s;
}

void delete_scan(TableScan* s) {
  MemoryContextDelete(s->row_cxt);
  MemoryContextDelete(s->work);
}

}  // namespace

// _scan_table_grouped(t billing.tracked_tables, p_from timestamptz, p_to
// timestamptz, p_estimate_model text) -> the groups of billing._scan_table.
// The bounds are the caller's, already within the countable years.
extern "C" Datum scan_table_grouped(PG_FUNCTION_ARGS) {
  InitMaterializedSRF(fcinfo, 0);
  auto* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
  if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2)) return static_cast<Datum>(0);
  const Datum t = PG_GETARG_DATUM(0);
  Datum bounds[2] = {PG_GETARG_DATUM(1), PG_GETARG_DATUM(2)};
  int16 source_id;
  TableScan* s = new_scan(fcinfo, 3, &source_id);

  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "billing: SPI_connect failed");
  s->months.set_time_zone(month_time_zone());
  const ScanQueries q = scan_queries(t, s->work);
  Oid types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
  run_query(q.rows, 2, types, bounds, true, scan_start, scan_row, s);
  settle_pending(s, source_id, q);
  SPI_finish();

  return_groups(rsinfo, s->groups, s->row_cxt, 0, 16);
  delete_scan(s);
  return static_cast<Datum>(0);
}

// _backfill_scan(t billing.tracked_tables, p_estimate_model text) ->
// (recorded, then _backfill_rows' columns, then _scan_table's): a
// backfill in one read of the table, for a table no writer can reach (the
// caller holds a lock that conflicts with theirs, as track_messages does
// with CREATE TRIGGER's): no row to lock, so the rows to record (recorded
// true) and the groups of every month (recorded false) come from the same
// read. The groups are what _scan_table gives after those rows are
// recorded: the backfilled table's. A NOTICE every 5 s tells how far it is.
extern "C" Datum backfill_scan(PG_FUNCTION_ARGS) {
  InitMaterializedSRF(fcinfo, 0);
  auto* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
  if (PG_ARGISNULL(0)) return static_cast<Datum>(0);
  const Datum t = PG_GETARG_DATUM(0);
  int16 source_id;
  TableScan* s = new_scan(fcinfo, 1, &source_id);
  s->backfilled = true;  // (its pending replies are estimated by settle_backfill)
  s->rec = static_cast<Recording*>(palloc0(sizeof(Recording)));
  s->rec->work = s->work;
  s->rec->row_cxt = s->row_cxt;

  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "billing: SPI_connect failed");
  s->months.set_time_zone(month_time_zone());
  const ScanQueries q = scan_queries(t, s->work);
  {
    // Progress: the planner's count of the table's rows, and its name.
    bool null = false;
    Datum relation = table_field(PG_GETARG_HEAPTUPLEHEADER(0), "relation", &null);
    Oid type = REGCLASSOID;
    if (SPI_execute_with_args("SELECT sum(greatest(c.reltuples, 0))::pg_catalog.float8, $1::pg_catalog.text "
                              "FROM pg_catalog.pg_class AS c "
                              "WHERE c.oid OPERATOR(pg_catalog.=) $1 OR c.oid OPERATOR(pg_catalog.=) ANY "
                              "(SELECT p.relid FROM pg_catalog.pg_partition_tree($1) AS p)",
                              1, &type, &relation, nullptr, true, 1) != SPI_OK_SELECT ||
        SPI_processed != 1)
      elog(ERROR, "billing: cannot read the size of a tracked table");
    const Datum rows = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &null);
    s->rows_expected = null ? 0 : DatumGetFloat8(rows);
    const MemoryContext old = MemoryContextSwitchTo(s->work);
    s->relation_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
    MemoryContextSwitchTo(old);
    s->started = s->reported = GetCurrentTimestamp();
  }
  run_query(q.every, 0, nullptr, nullptr, true, backfill_start, backfill_row, s);
  settle_backfill(s, source_id, q);
  SPI_finish();

  constexpr int kColumns = 22;  // recorded, 5 of _backfill_rows, 16 of _scan_table
  for (int i = 0; i < s->rec->nrows; ++i) {
    const MemoryContext old = MemoryContextSwitchTo(s->row_cxt);
    Datum v[kColumns];
    bool n[kColumns];
    for (int c = 0; c < kColumns; ++c) {
      v[c] = 0;
      n[c] = true;
    }
    v[0] = BoolGetDatum(true);
    n[0] = false;
    recorded_values(s->rec, i, v + 1, n + 1);
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
    MemoryContextSwitchTo(old);
    MemoryContextReset(s->row_cxt);
  }
  return_groups(rsinfo, s->groups, s->row_cxt, 6, kColumns);
  delete_scan(s);
  return static_cast<Datum>(0);
}

// _backfill_rows(t billing.tracked_tables) -> (message_id text, created_at
// timestamptz, estimated boolean, estimated_prompt bigint, problem text):
// every row of the table that is an estimated reply, has a problem or a
// time billing does not count, locked FOR SHARE, in the order read; the
// prompt estimate of each estimated reply; the usage's problem. Volatile:
// it locks, and reads the estimates with a snapshot taken after the locks.
extern "C" Datum backfill_rows(PG_FUNCTION_ARGS) {
  InitMaterializedSRF(fcinfo, 0);
  auto* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
  if (PG_ARGISNULL(0)) return static_cast<Datum>(0);
  const Datum t = PG_GETARG_DATUM(0);

  auto* r = static_cast<Recording*>(palloc0(sizeof(Recording)));
  r->work = AllocSetContextCreate(CurrentMemoryContext, "billing backfill rows", ALLOCSET_DEFAULT_SIZES);
  r->row_cxt = AllocSetContextCreate(CurrentMemoryContext, "billing backfill row", ALLOCSET_SMALL_SIZES);

  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "billing: SPI_connect failed");
  const ScanQueries q = scan_queries(t, r->work);
  run_query(q.recorded, 0, nullptr, nullptr, false, record_start, record_row, r);
  if (r->earlier_ready) earlier_compute(&r->earlier, q.earlier, false);
  SPI_finish();

  for (int i = 0; i < r->nrows; ++i) {
    const MemoryContext old = MemoryContextSwitchTo(r->row_cxt);
    Datum v[5];
    bool n[5];
    recorded_values(r, i, v, n);
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
    MemoryContextSwitchTo(old);
    MemoryContextReset(r->row_cxt);
  }
  MemoryContextDelete(r->row_cxt);
  MemoryContextDelete(r->work);
  return static_cast<Datum>(0);
}
