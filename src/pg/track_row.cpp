// SQL: billing.track_N(), the trigger function of tracked table N (made by
// billing._create_trigger_function; C body `track_row`).
//
// Every write to a tracked table runs it, so it is billing's tax on the app.
// The common write, an INSERT of a message that says all billing needs (a
// reply with its usage, a user's message, a total-only usage) at a countable
// time, is written to billing.usage_ledger here, with no SQL statement and
// no change of role or search_path. So is a reply without usage, whose
// prompt is estimated from its conversation's earlier messages, when the
// table has an index on its conversation column to read them by
// (src/pg/prompt_estimate.cpp). Every other write (UPDATE, DELETE, such a
// reply without that index, data with a problem, json or text data, an
// unusual column type, a key long enough to be shortened) goes to
// billing.track_N_full(), the PL/pgSQL body that handles them all; so does
// the first row a backend sees from each table, which is how the full
// body's check that the function serves this table (billing._trigger_guard)
// also guards the fast path. On a table it does not serve (billing's
// triggers brought by a partial restore) the full body bills nothing and
// returns the row; the write passes, and so do the table's other writes in
// that transaction, with one WARNING.
//
// Nothing here throws or holds an object with a destructor: the core calls
// are noexcept and return plain values.
#include "ledger_row.h"
#include "backend_cache.h"
#include "handed_estimates.h"
#include "month.h"
#include "plain_table.h"
#include "postgres_headers.h"
#include "prompt_estimate.h"
#include "reply_role.h"
#include "settings.h"
#include "text_estimate.h"

extern "C" {
#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "pgstat.h"
#include "storage/proc.h"
#include "utils/syscache.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(track_row);
PG_FUNCTION_INFO_V1(citus_track_row);
}

using namespace billing;

namespace {

// The trigger's UPDATE OF list, in the order _create_trigger writes it.
enum Column { kId, kConversation, kRole, kContent, kData, kCreatedAt, kColumns };

// billing.usage_ledger, in its column order.
constexpr int kLedgerColumns = 12;
constexpr Oid kLedgerTypes[kLedgerColumns] = {INT2OID, TEXTOID, TIMESTAMPTZOID, TEXTOID, INT4OID, INT8OID,
                                              INT8OID, INT8OID, INT8OID,         INT8OID, INT8OID, INT4OID};

// What a backend knows about one trigger function on one table (a
// partition of a tracked table is a table of its own here).
struct TrackKey {
  Oid function;
  Oid relation;
};
struct TrackEntry {
  TrackKey key;
  int16 source_id;  // -1: the function's name is not track_<id> (citus_track_<id> when citus)
  bool citus;       // billing.citus_track_N, on a shard of a Citus distributed table
  Oid full_function;
  Oid schema;
  bool verified;  // the full body ran here once without refusing the table
  LocalTransactionId refused_in;  // the transaction in which the full body refused the table
};

HTAB* entries = nullptr;

// Any change to pg_proc (a trigger function replaced or dropped, the
// extension dropped and created again) forgets everything: entries are
// cheap to make again, and a stale one could name a function that is gone.
void forget_entries(Datum, int, uint32) {
  if (entries != nullptr) {
    hash_destroy(entries);
    entries = nullptr;
  }
}

constexpr char kTrackPrefix[] = "track_";
constexpr char kCitusTrackPrefix[] = "citus_track_";

// N of a function named <prefix>N, or -1.
int16 source_id_of(const char* name, const char* prefix) {
  const size_t prefix_len = strlen(prefix);
  if (strncmp(name, prefix, prefix_len) != 0) return -1;
  const char* digits = name + prefix_len;
  if (*digits == '\0') return -1;
  int64 id = 0;
  for (const char* p = digits; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9') return -1;
    id = id * 10 + (*p - '0');
    if (id > PG_INT16_MAX) return -1;
  }
  return static_cast<int16>(id);
}

HTAB* entry_table() {
  static bool callback_registered = false;
  if (!callback_registered) {
    CacheRegisterSyscacheCallback(PROCOID, forget_entries, 0);
    callback_registered = true;
  }
  if (entries == nullptr) {
    entries = pg::backend_hash_table("billing tracked-table triggers", sizeof(TrackKey), sizeof(TrackEntry));
  }
  return entries;
}

TrackKey key_of(Oid function, Oid relation) {
  TrackKey key;
  memset(&key, 0, sizeof key);
  key.function = function;
  key.relation = relation;
  return key;
}

// A copy of the entry: any catalog lookup may process invalidations and
// forget the table, so no pointer into it is kept across one.
TrackEntry entry_for(Oid function, Oid relation) {
  const TrackKey key = key_of(function, relation);
  if (const auto* cached = static_cast<TrackEntry*>(hash_search(entry_table(), &key, HASH_FIND, nullptr)))
    return *cached;
  TrackEntry e;
  memset(&e, 0, sizeof e);
  e.key = key;
  e.source_id = -1;
  e.full_function = InvalidOid;
  e.schema = get_func_namespace(function);
  if (char* name = get_func_name(function)) {
    e.citus = strncmp(name, kCitusTrackPrefix, sizeof kCitusTrackPrefix - 1) == 0;
    e.source_id = source_id_of(name, e.citus ? kCitusTrackPrefix : kTrackPrefix);
    e.full_function = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum(psprintf("%s_full", name)),
                                      PointerGetDatum(buildoidvector(nullptr, 0)), ObjectIdGetDatum(e.schema));
  }
  // (the lookups above may have forgotten the table: enter into the current one)
  auto* stored = static_cast<TrackEntry*>(hash_search(entry_table(), &key, HASH_ENTER, nullptr));
  *stored = e;
  return e;
}

// Remembers what the full body said of the table: it serves it (verified),
// or it refused it in this transaction.
void remember_outcome(const TrackEntry& e, bool refused) {
  auto* stored = static_cast<TrackEntry*>(hash_search(entry_table(), &e.key, HASH_ENTER, nullptr));
  *stored = e;
  stored->verified = !refused;
  if (refused) stored->refused_in = MyProc->lxid;
}

// Whether the full body refused this table earlier in this transaction
// (it said so once: the table's later writes pass without a word).
bool refused_now(const TrackEntry& e) { return e.refused_in == MyProc->lxid; }

// Runs billing.track_N_full() on this row, as the trigger would have; its
// result, NULL unless it refused the table.
Datum call_full_body(FunctionCallInfo fcinfo, const TrackEntry& e) {
  if (!OidIsValid(e.full_function))
    ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
                    errmsg("billing: the full trigger body of %s is missing", get_func_name(fcinfo->flinfo->fn_oid)),
                    errhint("Run SELECT billing.merge(); as the extension's owner: it makes the trigger functions of "
                            "tracked tables anew.")));
  // One FmgrInfo per statement: PL/pgSQL keeps its compiled body there.
  auto* full = static_cast<FmgrInfo*>(fcinfo->flinfo->fn_extra);
  if (full == nullptr || full->fn_oid != e.full_function) {
    full = static_cast<FmgrInfo*>(MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo)));
    fmgr_info_cxt(e.full_function, full, fcinfo->flinfo->fn_mcxt);
    fcinfo->flinfo->fn_extra = full;
  }
  LOCAL_FCINFO(call, 0);
  InitFunctionCallInfoData(*call, full, 0, InvalidOid, fcinfo->context, nullptr);
  // Counted in pg_stat_user_functions (track_functions) as the executor
  // counts the trigger itself: how many writes took the full body.
  PgStat_FunctionCallUsage usage;
  pgstat_init_function_usage(call, &usage);
  const Datum result = FunctionCallInvoke(call);
  pgstat_end_function_usage(&usage, true);
  return call->isnull ? PointerGetDatum(nullptr) : result;
}

// The full body on this row: the table marked verified when it accepted the
// table, refused when it did not. The trigger's result is NULL either way
// (an AFTER trigger's is ignored).
Datum run_full_body(FunctionCallInfo fcinfo, const TrackEntry& e) {
  const bool refused = DatumGetPointer(call_full_body(fcinfo, e)) != nullptr;
  if (refused || !e.verified) remember_outcome(e, refused);
  return PointerGetDatum(nullptr);
}

// The column's type through any domains, and whether it is null.
struct Column_value {
  Datum value;
  bool null;
  Oid type;
};
Column_value column(const TriggerData* td, int which) {
  const AttrNumber attnum = td->tg_trigger->tgattr[which];
  const TupleDesc desc = RelationGetDescr(td->tg_relation);
  Column_value c;
  c.value = heap_getattr(td->tg_trigtuple, attnum, desc, &c.null);
  c.type = getBaseType(TupleDescAttr(desc, attnum - 1)->atttypid);
  return c;
}

// The conversation id as billing keys it, or false to leave it to the full
// body (a type read with more care there, or a key long enough to shorten).
bool conversation_key(const Column_value& c, Datum* key, bool* null) {
  *null = c.null;
  if (c.null) return true;
  switch (c.type) {
    case TEXTOID:
    case VARCHAROID:
      *key = PointerGetDatum(pg_detoast_datum_packed(reinterpret_cast<struct varlena*>(DatumGetPointer(c.value))));
      break;
    case UUIDOID:
      *key = CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(uuid_out, c.value)));
      break;
    case INT2OID:
      *key = CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(int2out, c.value)));
      break;
    case INT4OID:
      *key = CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(int4out, c.value)));
      break;
    case INT8OID:
      *key = CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(int8out, c.value)));
      break;
    default:
      return false;
  }
  return VARSIZE_ANY_EXHDR(DatumGetPointer(*key)) <= kMaxPlainKeyBytes;
}

// Whether the role says an assistant's reply; false in *known when the
// full body must decide (a type it reads with more care).
bool is_assistant(const Column_value& c, bool* known) {
  *known = true;
  return !c.null && pg::role_says_reply(c.type, c.value, known);
}

// The message's time as billing counts it (timestamp read as UTC, a date at
// midnight UTC), or false when it is not countable or needs the full body.
bool message_time(const Column_value& c, TimestampTz* at) {
  if (c.null) return false;
  switch (c.type) {
    case TIMESTAMPTZOID:
      *at = DatumGetTimestampTz(c.value);
      break;
    case TIMESTAMPOID:
      *at = DatumGetTimestamp(c.value);  // same microseconds, read as UTC
      break;
    case DATEOID: {
      const DateADT d = DatumGetDateADT(c.value);
      if (DATE_NOT_FINITE(d)) return false;
      *at = pg::date_as_time(d);
      break;
    }
    default:
      return false;
  }
  return countable_time(*at);
}

// billing.usage_ledger's row for the common INSERT (a message whose data
// says all billing needs, or a reply without usage, at a countable time),
// in values/nulls; false when the full body must handle the write. For a
// reply without usage *estimated is set, and the caller fills in its
// estimates (values[8] and [9]: estimate_reply) or leaves the write to the
// full body.
bool common_insert_row(const TriggerData* td, int16 source_id, Datum* values, bool* nulls, bool* estimated) {
  const Column_value data = column(td, kData);
  Usage usage;
  if (data.null) {
    usage = message_without_data();
  } else if (data.type == JSONBOID) {
    const struct varlena* v = pg_detoast_datum_packed(reinterpret_cast<struct varlena*>(DatumGetPointer(data.value)));
    usage = message_usage(JsonbContainerView{reinterpret_cast<const uint8_t*>(VARDATA_ANY(v)), VARSIZE_ANY_EXHDR(v)});
  } else {
    return false;  // json or text: parsed with care there
  }
  bool assistant = false;
  if (usage.status == UsageStatus::NoUsage) {
    bool known = false;
    assistant = is_assistant(column(td, kRole), &known);
    if (!known) return false;
  }
  LedgerCounts counts;
  *estimated = false;
  if (!direct_ledger_counts(usage, assistant, &counts)) {
    const MessageFigures f = message_figures(usage, assistant);
    if (!f.estimated || f.problem) return false;
    *estimated = true;
    counts = LedgerCounts{};
    counts.has_model = f.has_model;
    counts.model = f.model;
  }
  TimestampTz at = 0;
  Datum conversation = 0;
  bool conversation_null = false;
  if (!message_time(column(td, kCreatedAt), &at) ||
      !conversation_key(column(td, kConversation), &conversation, &conversation_null))
    return false;
  for (int i = 0; i < kLedgerColumns; ++i) nulls[i] = false;
  values[0] = Int16GetDatum(source_id);
  values[1] = conversation;
  nulls[1] = conversation_null;
  values[2] = TimestampTzGetDatum(at);
  if (counts.has_model) {
    values[3] = PointerGetDatum(cstring_to_text_with_len(counts.model.data(), static_cast<int>(counts.model.size())));
  } else {
    values[3] = 0;
    nulls[3] = true;
  }
  values[4] = Int32GetDatum(1);  // one message
  values[5] = Int64GetDatum(counts.prompt);
  values[6] = Int64GetDatum(counts.completion);
  values[7] = Int64GetDatum(counts.cached);
  values[8] = Int64GetDatum(0);  // estimated prompt: only for replies without usage (the caller's)
  values[9] = Int64GetDatum(0);  // estimated completion: same
  values[10] = Int64GetDatum(counts.unsplit);
  values[11] = Int32GetDatum(0);  // no problem
  return true;
}

// The estimates of a reply without usage, and its message's key
// (billing._key of its id), under which the caller stores the prompt's
// estimate as the full body does; false (nothing read) to leave the reply
// to the full body. The prompt's is the one a DELETE of this reply handed
// over earlier in the transaction (an archive move), else read from the
// conversation (`conversation`: billing._key of it, 0 for none).
struct ReplyEstimate {
  int64 prompt = 0;
  int64 completion = 0;
  Datum message = 0;
  Datum conversation = 0;
  bool handed = false;  // the prompt's estimate was handed over (and taken)
};
// Gives a taken hand-over back when the write goes to the full body, which
// takes it again.
void give_back(const ReplyEstimate& r) {
  if (r.handed)
    pg::hand_over_estimate(DatumGetTextPP(r.message), r.conversation == 0 ? nullptr : DatumGetTextPP(r.conversation),
                           r.prompt);
}
bool estimate_reply(const TriggerData* td, Datum conversation, ReplyEstimate* r) {
  const Column_value content = column(td, kContent);
  r->completion = 0;  // (an empty reply still has a prompt: its conversation)
  if (!content.null) {
    if (content.type != TEXTOID && content.type != VARCHAROID) return false;
    const struct varlena* v = pg_detoast_datum_packed(reinterpret_cast<struct varlena*>(DatumGetPointer(content.value)));
    r->completion = pg::text_estimate(VARDATA_ANY(v), static_cast<int>(VARSIZE_ANY_EXHDR(v)));
  }
  bool message_null = false;
  if (!conversation_key(column(td, kId), &r->message, &message_null) || message_null) return false;
  r->conversation = conversation;
  r->handed = pg::take_handed_estimate(DatumGetTextPP(r->message),
                                       conversation == 0 ? nullptr : DatumGetTextPP(conversation), &r->prompt);
  if (r->handed) return true;
  const int16* att = td->tg_trigger->tgattr;
  const pg::ReplyColumns columns{att[kId], att[kConversation], att[kContent], att[kCreatedAt], att[kRole]};
  return pg::estimate_prompt(td, columns, &r->prompt);
}


// Whether rel is a plain table the fast path may write with a heap insert:
// `leading` columns of the types in leading_types, then billing.usage_ledger's
// columns (then, for a ledger shard, merged_by: bigint, NULL when written),
// and no index, trigger, check constraint, default or rule (else the full
// body's INSERT does what they ask).
bool plain_ledger(Relation rel, int leading, const Oid* leading_types) {
  Oid types[1 + kLedgerColumns + 1];
  if (leading < 0 || leading > 1) return false;  // (a ledger shard has one: the conversation)
  for (int i = 0; i < leading; ++i) types[i] = leading_types[i];
  for (int i = 0; i < kLedgerColumns; ++i) types[leading + i] = kLedgerTypes[i];
  const int trailing = leading;  // (a ledger shard's merged_by: src/sql/citus.sql, billing.ledger_merges)
  if (trailing == 1) types[leading + kLedgerColumns] = INT8OID;
  return !rel->rd_rel->relhasindex && pg::plain_table(rel, types, leading + kLedgerColumns + trailing);
}

// billing.usage_ledger when it is the plain table the fast path writes;
// nullptr to use the full body.
Relation open_ledger(Oid schema) {
  const Oid ledger = get_relname_relid("usage_ledger", schema);
  if (!OidIsValid(ledger)) return nullptr;
  Relation rel = table_open(ledger, RowExclusiveLock);
  if (!plain_ledger(rel, 0, nullptr)) {
    table_close(rel, RowExclusiveLock);
    return nullptr;
  }
  return rel;
}

// Whether the table has billing's trigger of every UPDATE that changes a
// column billing reads (billing_track_update: the same function, no column
// list, enabled). billing_track fires only for an UPDATE that names one of
// those columns in its SET list, so a change made by the app's BEFORE
// trigger would pass it; where billing_track_update exists it takes every
// UPDATE, and billing_track leaves them to it.
bool has_update_trigger(Relation rel, Oid function) {
  const TriggerDesc* triggers = rel->trigdesc;
  if (triggers == nullptr) return false;
  for (int i = 0; i < triggers->numtriggers; ++i) {
    const Trigger& t = triggers->triggers[i];
    if (t.tgfoid == function && t.tgnattr == 0 && TRIGGER_FOR_ROW(t.tgtype) && TRIGGER_FOR_AFTER(t.tgtype) &&
        TRIGGER_FOR_UPDATE(t.tgtype) && t.tgenabled != TRIGGER_DISABLED)
      return true;
  }
  return false;
}

}  // namespace

extern "C" Datum track_row(PG_FUNCTION_ARGS) {
  if (!CALLED_AS_TRIGGER(fcinfo))
    ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                    errmsg("billing: a tracked table's trigger function can only run as a trigger")));
  auto* td = reinterpret_cast<TriggerData*>(fcinfo->context);
  if (TRIGGER_FIRED_BY_UPDATE(td->tg_event) && td->tg_trigger->tgnattr > 0 &&
      has_update_trigger(td->tg_relation, fcinfo->flinfo->fn_oid))
    return PointerGetDatum(nullptr);  // (billing_track_update takes this UPDATE)
  const TrackEntry e = entry_for(fcinfo->flinfo->fn_oid, RelationGetRelid(td->tg_relation));
  if (refused_now(e)) return PointerGetDatum(nullptr);

  const bool simple_event = TRIGGER_FIRED_BY_INSERT(td->tg_event) && TRIGGER_FIRED_FOR_ROW(td->tg_event) &&
                            TRIGGER_FIRED_AFTER(td->tg_event) && td->tg_trigger->tgnattr == kColumns;
  if (!e.verified || e.source_id < 0 || e.citus || !simple_event || !pg::trigger_fast_path) {
    return run_full_body(fcinfo, e);
  }

  Datum values[kLedgerColumns];
  bool nulls[kLedgerColumns] = {};
  bool estimated = false;  // a reply without usage: its prompt and completion estimated
  if (!common_insert_row(td, e.source_id, values, nulls, &estimated)) return run_full_body(fcinfo, e);
  Relation ledger = open_ledger(e.schema);
  if (ledger == nullptr) return run_full_body(fcinfo, e);
  // (the estimate stored last: nothing after it can leave the write to the full body)
  ReplyEstimate r;
  if (estimated &&
      !(estimate_reply(td, nulls[1] ? 0 : values[1], &r) && pg::store_prompt_estimate(e.schema, e.source_id, r.message, r.prompt))) {
    give_back(r);
    table_close(ledger, RowExclusiveLock);
    return run_full_body(fcinfo, e);
  }
  values[8] = Int64GetDatum(r.prompt);  // only for replies without usage
  values[9] = Int64GetDatum(r.completion);
  HeapTuple row = heap_form_tuple(RelationGetDescr(ledger), values, nulls);
  simple_heap_insert(ledger, row);
  table_close(ledger, NoLock);  // the lock is held to the end of the transaction
  return PointerGetDatum(nullptr);
}

// ==== Citus: billing.citus_track_N() on the shards of a distributed table ====
//
// SQL: billing.citus_track_N() (C body `citus_track_row`), the trigger that
// Citus puts on every shard of tracked distributed table N (made by
// billing._citus_set_up_triggers; docs/citus.md). It runs on the node that
// holds the shard. The common INSERT (as above) is written here, with a heap
// insert, into the shard of billing.citus_ledger_N co-located with the
// messages' shard: the same hash range in the same colocation group, on this
// node. A reply without usage is estimated from the messages' shard itself
// (its conversation's messages are all there) and its estimate stored in the
// shard of billing.citus_estimates_N beside it, found the same way.
// Everything else goes to billing.citus_track_N_full(), the PL/pgSQL body,
// whose INSERT Citus routes to that same shard (one statement through
// Citus's planner per write: what the fast path saves). So does the first
// row a backend sees on each shard (its check that the function serves a
// shard of its table guards the fast path, as for a local table).
//
// Where the ledger shard is comes from Citus's metadata (pg_dist_shard,
// pg_dist_partition, pg_dist_placement, pg_dist_local_group), read once per
// backend and shard with catalog scans as Citus reads it, and kept until a
// relcache invalidation of the table, the ledger or either shard: Citus
// invalidates a distributed table's relcache entry whenever the metadata of
// its shards or placements changes (a shard moved, split, or its placement
// marked), and a DROP invalidates the shard. When anything is not as
// expected, the write goes to the PL/pgSQL body, which lets Citus route it:
// - the ledger shard is not on this node by pg_dist_placement (a shard
//   being moved or cleaned up: the messages' own shard here may be an old
//   copy; Citus knows where the write belongs),
// - no ledger shard has the messages shard's hash range (a split under way,
//   or tables no longer co-located), or the table is not hash-distributed,
// - the shard's name is not <table>_<shard id> of its pg_dist_shard row,
// - the ledger shard is not a plain table of the expected columns,
// - an invalidation arrived during the lookup (not cached; looked up again
//   at the next row).
// A move takes co-located shards together, and Citus blocks the group's
// writes before it switches placements: a write and its ledger row, written
// in one transaction on one node, move together.

namespace {

struct ShardKey {
  Oid function;
  Oid relation;  // the messages' shard the trigger fires on
};
struct ShardEntry {
  ShardKey key;
  Oid ledger_shard;     // InvalidOid: every write through the full body
  Oid estimates_shard;  // InvalidOid: replies without usage through the full body
  Oid table;            // the distributed table (Citus's shell), its ledger's and estimates'
  Oid ledger_table;
  Oid estimates_table;
};

HTAB* shard_entries = nullptr;
uint64 shard_generation = 0;  // moves on at every invalidation that forgets entries

void forget_shard_entries(Datum, Oid relid) {
  if (shard_entries == nullptr) return;
  if (!OidIsValid(relid)) {
    hash_destroy(shard_entries);
    shard_entries = nullptr;
    ++shard_generation;
    return;
  }
  HASH_SEQ_STATUS seq;
  hash_seq_init(&seq, shard_entries);
  while (auto* entry = static_cast<ShardEntry*>(hash_seq_search(&seq))) {
    if (entry->key.relation == relid || entry->ledger_shard == relid || entry->table == relid ||
        entry->ledger_table == relid || entry->estimates_shard == relid || entry->estimates_table == relid) {
      hash_search(shard_entries, &entry->key, HASH_REMOVE, nullptr);  // (the current one: allowed)
      ++shard_generation;
    }
  }
}

void forget_all_shard_entries(Datum, int, uint32) { forget_shard_entries(0, InvalidOid); }

HTAB* shard_table() {
  static bool callbacks_registered = false;
  if (!callbacks_registered) {
    CacheRegisterRelcacheCallback(forget_shard_entries, 0);
    CacheRegisterSyscacheCallback(PROCOID, forget_all_shard_entries, 0);
    callbacks_registered = true;
  }
  if (shard_entries == nullptr) {
    shard_entries = pg::backend_hash_table("billing Citus ledger shards", sizeof(ShardKey), sizeof(ShardEntry));
  }
  return shard_entries;
}

// One of Citus's catalog tables (in pg_catalog), or InvalidOid.
Oid citus_catalog(const char* name) { return get_relname_relid(name, PG_CATALOG_NAMESPACE); }

// Reads rows of a Citus catalog table: the rows whose column `key_column`
// equals `key` (compared with `eq`), through `visit` until it returns false.
// False when the table or a column is missing.
template <typename Visit>
bool scan_citus_catalog(const char* table, const char* key_column, RegProcedure eq, Datum key, Visit visit) {
  const Oid relid = citus_catalog(table);
  if (!OidIsValid(relid)) return false;
  Relation rel = table_open(relid, AccessShareLock);
  const AttrNumber key_attnum = key_column == nullptr ? InvalidAttrNumber : get_attnum(relid, key_column);
  if (key_column != nullptr && key_attnum == InvalidAttrNumber) {
    table_close(rel, AccessShareLock);
    return false;
  }
  ScanKeyData skey;
  if (key_column != nullptr) ScanKeyInit(&skey, key_attnum, BTEqualStrategyNumber, eq, key);
  SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, nullptr, key_column == nullptr ? 0 : 1, &skey);
  bool ok = true;
  for (HeapTuple tup; (tup = systable_getnext(scan)) != nullptr;) {
    if (!visit(rel, tup, &ok)) break;
  }
  systable_endscan(scan);
  table_close(rel, AccessShareLock);
  return ok;
}

// A column of a Citus catalog row by name; false when missing or null.
bool citus_column(Relation rel, HeapTuple tup, const char* name, Datum* value) {
  const AttrNumber attnum = get_attnum(RelationGetRelid(rel), name);
  if (attnum == InvalidAttrNumber) return false;
  bool isnull = true;
  *value = heap_getattr(tup, attnum, RelationGetDescr(rel), &isnull);
  return !isnull;
}

struct DistShard {
  bool found = false;
  Oid table = InvalidOid;
  char* min = nullptr;  // the hash range, as pg_dist_shard keeps it
  char* max = nullptr;
};

DistShard dist_shard(int64 shard_id) {
  DistShard d;
  scan_citus_catalog("pg_dist_shard", "shardid", F_INT8EQ, Int64GetDatum(shard_id),
                     [&](Relation rel, HeapTuple tup, bool* ok) {
                       Datum table, min, max;
                       if (!citus_column(rel, tup, "logicalrelid", &table) ||
                           !citus_column(rel, tup, "shardminvalue", &min) ||
                           !citus_column(rel, tup, "shardmaxvalue", &max)) {
                         *ok = false;
                         return false;
                       }
                       d.found = true;
                       d.table = DatumGetObjectId(table);
                       d.min = TextDatumGetCString(min);
                       d.max = TextDatumGetCString(max);
                       return false;
                     });
  return d;
}

// The colocation group of a table distributed by hash, or -1.
int64 hash_colocation(Oid table) {
  int64 colocation = -1;
  scan_citus_catalog("pg_dist_partition", "logicalrelid", F_OIDEQ, ObjectIdGetDatum(table),
                     [&](Relation rel, HeapTuple tup, bool*) {
                       Datum method, group;
                       if (citus_column(rel, tup, "partmethod", &method) && DatumGetChar(method) == 'h' &&
                           citus_column(rel, tup, "colocationid", &group))
                         colocation = DatumGetInt32(group);
                       return false;
                     });
  return colocation;
}

// The shard of `table` with the hash range [min, max], or -1 (none, or more than one).
int64 shard_with_range(Oid table, const char* min, const char* max) {
  int64 found = -1;
  int matches = 0;
  const bool ok = scan_citus_catalog("pg_dist_shard", "logicalrelid", F_OIDEQ, ObjectIdGetDatum(table),
                                     [&](Relation rel, HeapTuple tup, bool* ok_) {
                                       Datum id, lo, hi;
                                       if (!citus_column(rel, tup, "shardid", &id) ||
                                           !citus_column(rel, tup, "shardminvalue", &lo) ||
                                           !citus_column(rel, tup, "shardmaxvalue", &hi))
                                         return true;
                                       if (strcmp(TextDatumGetCString(lo), min) == 0 &&
                                           strcmp(TextDatumGetCString(hi), max) == 0) {
                                         found = DatumGetInt64(id);
                                         ++matches;
                                       }
                                       (void)ok_;
                                       return true;
                                     });
  return ok && matches == 1 ? found : -1;
}

// This node's group in the cluster, or -1.
int64 local_group() {
  int64 group = -1;
  scan_citus_catalog("pg_dist_local_group", nullptr, InvalidOid, 0, [&](Relation rel, HeapTuple tup, bool*) {
    Datum g;
    if (citus_column(rel, tup, "groupid", &g)) group = DatumGetInt32(g);
    return false;
  });
  return group;
}

// Whether the shard has an active placement in group `group`.
bool placed_in(int64 shard_id, int64 group) {
  bool placed = false;
  scan_citus_catalog("pg_dist_placement", "shardid", F_INT8EQ, Int64GetDatum(shard_id),
                     [&](Relation rel, HeapTuple tup, bool*) {
                       Datum g, state;
                       // (shardstate 1: active; a Citus without the column keeps only active ones)
                       const bool active = !citus_column(rel, tup, "shardstate", &state) || DatumGetInt32(state) == 1;
                       if (citus_column(rel, tup, "groupid", &g) && DatumGetInt32(g) == group && active) placed = true;
                       return !placed;
                     });
  return placed;
}

// The shard id at the end of a shard's name (<table>_<shard id>), or -1.
int64 shard_id_of(const char* name) {
  const char* sep = strrchr(name, '_');
  if (sep == nullptr || sep[1] == '\0') return -1;
  int64 id = 0;
  for (const char* p = sep + 1; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9') return -1;
    if (id > (PG_INT64_MAX - 9) / 10) return -1;
    id = id * 10 + (*p - '0');
  }
  return id;
}

// The shard of `table` (a table of billing's beside the distributed table,
// named in schema), colocated with it, with the hash range [min, max] and
// placed on this node (group), or InvalidOid.
Oid companion_shard(Oid schema, const char* name, Oid table, int64 colocation, const DistShard& d, int64 group) {
  if (!OidIsValid(table) || hash_colocation(table) != colocation) return InvalidOid;
  const int64 shard_id = shard_with_range(table, d.min, d.max);
  if (shard_id < 0 || !placed_in(shard_id, group)) return InvalidOid;
  return get_relname_relid(psprintf("%s_" INT64_FORMAT, name, shard_id), schema);
}

// Finds, in Citus's metadata, the ledger and estimates shards beside the
// messages' shard `shard` (see above); entry.ledger_shard stays InvalidOid
// when the fast path must not write it, entry.estimates_shard when it must
// leave replies without usage to the full body.
ShardEntry look_up_ledger_shard(const TrackEntry& e, Relation shard) {
  ShardEntry s;
  memset(&s, 0, sizeof s);
  s.key.function = e.key.function;
  s.key.relation = RelationGetRelid(shard);
  s.ledger_shard = InvalidOid;
  const char* shard_name = RelationGetRelationName(shard);
  const int64 shard_id = shard_id_of(shard_name);
  if (shard_id < 0) return s;  // the coordinator's shell, or not a shard
  const DistShard d = dist_shard(shard_id);
  if (!d.found) return s;
  s.table = d.table;
  const char* table_name = get_rel_name(d.table);
  if (table_name == nullptr || get_rel_namespace(d.table) != RelationGetNamespace(shard) ||
      strcmp(psprintf("%s_" INT64_FORMAT, table_name, shard_id), shard_name) != 0)
    return s;
  const char* ledger_name = psprintf("citus_ledger_%d", e.source_id);
  const char* estimates_name = psprintf("citus_estimates_%d", e.source_id);
  s.ledger_table = get_relname_relid(ledger_name, e.schema);
  s.estimates_table = get_relname_relid(estimates_name, e.schema);
  const int64 colocation = hash_colocation(d.table);
  const int64 group = local_group();
  if (colocation < 0 || group < 0 || !placed_in(shard_id, group)) return s;
  s.ledger_shard = companion_shard(e.schema, ledger_name, s.ledger_table, colocation, d, group);
  if (OidIsValid(s.ledger_shard))
    s.estimates_shard = companion_shard(e.schema, estimates_name, s.estimates_table, colocation, d, group);
  return s;
}

// The ledger shard beside `shard`, opened and locked, when the fast path may
// write it (and in *estimates_shard the estimates shard beside it, or
// InvalidOid); nullptr to use the full body.
Relation open_ledger_shard(const TrackEntry& e, Relation shard, Oid conversation_type, Oid* estimates_shard) {
  const ShardKey key{e.key.function, RelationGetRelid(shard)};
  ShardEntry s;
  if (const auto* cached = static_cast<ShardEntry*>(hash_search(shard_table(), &key, HASH_FIND, nullptr))) {
    s = *cached;
  } else {
    const uint64 generation = shard_generation;
    s = look_up_ledger_shard(e, shard);
    if (generation != shard_generation) return nullptr;  // (the metadata changed meanwhile: not cached)
    *static_cast<ShardEntry*>(hash_search(shard_table(), &key, HASH_ENTER, nullptr)) = s;
  }
  if (!OidIsValid(s.ledger_shard)) return nullptr;
  const uint64 generation = shard_generation;
  Relation rel = try_table_open(s.ledger_shard, RowExclusiveLock);
  if (rel == nullptr) return nullptr;
  // (taking the lock processed invalidations: the shard may be gone from the metadata since)
  if (generation != shard_generation || !plain_ledger(rel, 1, &conversation_type)) {
    table_close(rel, RowExclusiveLock);
    return nullptr;
  }
  *estimates_shard = s.estimates_shard;
  return rel;
}

}  // namespace

extern "C" Datum citus_track_row(PG_FUNCTION_ARGS) {
  if (!CALLED_AS_TRIGGER(fcinfo))
    ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                    errmsg("billing: a tracked table's trigger function can only run as a trigger")));
  auto* td = reinterpret_cast<TriggerData*>(fcinfo->context);
  const TrackEntry e = entry_for(fcinfo->flinfo->fn_oid, RelationGetRelid(td->tg_relation));
  if (refused_now(e)) return PointerGetDatum(nullptr);

  const bool simple_event = TRIGGER_FIRED_BY_INSERT(td->tg_event) && TRIGGER_FIRED_FOR_ROW(td->tg_event) &&
                            TRIGGER_FIRED_AFTER(td->tg_event) && td->tg_trigger->tgnattr == kColumns;
  if (!e.verified || e.source_id < 0 || !e.citus || !simple_event || !pg::trigger_fast_path) {
    return run_full_body(fcinfo, e);
  }

  // billing.citus_ledger_N's row: the conversation in the messages' own type, then usage_ledger's columns,
  // then merged_by (NULL: not merged yet).
  Datum values[1 + kLedgerColumns + 1];
  bool nulls[1 + kLedgerColumns + 1] = {};
  values[1 + kLedgerColumns] = 0;
  nulls[1 + kLedgerColumns] = true;
  bool estimated = false;  // a reply without usage: its prompt and completion estimated
  if (!common_insert_row(td, e.source_id, values + 1, nulls + 1, &estimated)) return run_full_body(fcinfo, e);
  const AttrNumber conversation_attnum = td->tg_trigger->tgattr[kConversation];
  const Form_pg_attribute conversation_attr =
      TupleDescAttr(RelationGetDescr(td->tg_relation), conversation_attnum - 1);
  bool conversation_null = true;
  values[0] = heap_getattr(td->tg_trigtuple, conversation_attnum, RelationGetDescr(td->tg_relation),
                           &conversation_null);
  if (conversation_null) return run_full_body(fcinfo, e);  // (the ledger refuses it: the full body says so)
  if (conversation_attr->attlen == -1)
    values[0] = PointerGetDatum(pg_detoast_datum_packed(reinterpret_cast<struct varlena*>(DatumGetPointer(values[0]))));

  Oid estimates_shard = InvalidOid;
  Relation ledger = open_ledger_shard(e, td->tg_relation, conversation_attr->atttypid, &estimates_shard);
  if (ledger == nullptr) return run_full_body(fcinfo, e);
  // (the estimate stored last: nothing after it can leave the write to the full body)
  ReplyEstimate r;
  if (estimated && !(OidIsValid(estimates_shard) && estimate_reply(td, nulls[2] ? 0 : values[2], &r) &&
                     pg::store_citus_prompt_estimate(estimates_shard, conversation_attr->atttypid, values[0],
                                                     e.source_id, r.message, r.prompt))) {
    give_back(r);
    table_close(ledger, RowExclusiveLock);
    return run_full_body(fcinfo, e);
  }
  values[1 + 8] = Int64GetDatum(r.prompt);  // only for replies without usage
  values[1 + 9] = Int64GetDatum(r.completion);
  HeapTuple row = heap_form_tuple(RelationGetDescr(ledger), values, nulls);
  simple_heap_insert(ledger, row);
  table_close(ledger, NoLock);  // the lock is held to the end of the transaction
  return PointerGetDatum(nullptr);
}
