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
// also guards the fast path.
//
// Nothing here throws or holds an object with a destructor: the core calls
// are noexcept and return plain values.
#include "ledger_row.h"
#include "postgres_headers.h"
#include "prompt_estimate.h"
#include "settings.h"
#include "text_estimate.h"

extern "C" {
#include "access/heapam.h"
#include "access/table.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_proc.h"
#include "commands/trigger.h"
#include "utils/date.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(track_row);
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
  int16 source_id;  // -1: the function's name is not track_<id>
  Oid full_function;
  Oid schema;
  bool verified;  // the full body ran here once without refusing the table
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

int16 source_id_of(const char* name) {
  static constexpr char kPrefix[] = "track_";
  if (strncmp(name, kPrefix, sizeof kPrefix - 1) != 0) return -1;
  const char* digits = name + sizeof kPrefix - 1;
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
    HASHCTL ctl;
    memset(&ctl, 0, sizeof ctl);
    ctl.keysize = sizeof(TrackKey);
    ctl.entrysize = sizeof(TrackEntry);
    ctl.hcxt = TopMemoryContext;
    entries = hash_create("billing tracked-table triggers", 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
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
    e.source_id = source_id_of(name);
    e.full_function = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum(psprintf("%s_full", name)),
                                      PointerGetDatum(buildoidvector(nullptr, 0)), ObjectIdGetDatum(e.schema));
  }
  // (the lookups above may have forgotten the table: enter into the current one)
  auto* stored = static_cast<TrackEntry*>(hash_search(entry_table(), &key, HASH_ENTER, nullptr));
  *stored = e;
  return e;
}

void mark_verified(const TrackEntry& e) {
  auto* stored = static_cast<TrackEntry*>(hash_search(entry_table(), &e.key, HASH_ENTER, nullptr));
  *stored = e;
  stored->verified = true;
}

// Runs billing.track_N_full() on this row, as the trigger would have.
Datum run_full_body(FunctionCallInfo fcinfo, const TrackEntry& e) {
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
  return FunctionCallInvoke(call);
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
  if (c.null) return false;
  if (c.type == TEXTOID || c.type == VARCHAROID) {
    const struct varlena* v = pg_detoast_datum_packed(reinterpret_cast<struct varlena*>(DatumGetPointer(c.value)));
    return is_assistant_role(std::string_view(VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v)));
  }
  if (get_typtype(c.type) == TYPTYPE_ENUM) {
    // The label, as the built-in enum_out would give it.
    HeapTuple tup = SearchSysCache1(ENUMOID, c.value);
    if (!HeapTupleIsValid(tup)) {
      *known = false;
      return false;
    }
    const bool assistant = is_assistant_role(NameStr(reinterpret_cast<Form_pg_enum>(GETSTRUCT(tup))->enumlabel));
    ReleaseSysCache(tup);
    return assistant;
  }
  *known = false;
  return false;
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
      *at = static_cast<TimestampTz>(d) * USECS_PER_DAY;
      break;
    }
    default:
      return false;
  }
  return countable_time(*at);
}

// billing.usage_ledger when it is the plain table the fast path writes:
// these columns, no index, trigger, check constraint or rule (else the full
// body's INSERT does what they ask). nullptr to use the full body.
Relation open_ledger(Oid schema) {
  const Oid ledger = get_relname_relid("usage_ledger", schema);
  if (!OidIsValid(ledger)) return nullptr;
  Relation rel = table_open(ledger, RowExclusiveLock);
  const TupleDesc desc = RelationGetDescr(rel);
  bool plain = rel->rd_rel->relkind == RELKIND_RELATION && !rel->rd_rel->relhasindex && !rel->rd_rel->relhasrules &&
               rel->trigdesc == nullptr && desc->natts == kLedgerColumns &&
               (desc->constr == nullptr || (desc->constr->num_check == 0 && desc->constr->num_defval == 0));
  for (int i = 0; plain && i < kLedgerColumns; ++i) {
    const Form_pg_attribute a = TupleDescAttr(desc, i);
    plain = !a->attisdropped && a->atttypid == kLedgerTypes[i] && a->attgenerated == '\0';
  }
  if (!plain) {
    table_close(rel, RowExclusiveLock);
    return nullptr;
  }
  return rel;
}

// The estimates of a reply without usage, its prompt stored in
// billing.estimated_prompts as the full body stores it; false (nothing
// written) to leave the reply to the full body.
bool estimate_reply(const TriggerData* td, const TrackEntry& e, int64* prompt, int64* completion) {
  const Column_value content = column(td, kContent);
  *completion = 0;  // (an empty reply still has a prompt: its conversation)
  if (!content.null) {
    if (content.type != TEXTOID && content.type != VARCHAROID) return false;
    const struct varlena* v = pg_detoast_datum_packed(reinterpret_cast<struct varlena*>(DatumGetPointer(content.value)));
    *completion = pg::text_estimate(VARDATA_ANY(v), static_cast<int>(VARSIZE_ANY_EXHDR(v)));
  }
  Datum message = 0;
  bool message_null = false;
  if (!conversation_key(column(td, kId), &message, &message_null) || message_null) return false;
  const int16* att = td->tg_trigger->tgattr;
  const pg::ReplyColumns columns{att[kId], att[kConversation], att[kContent], att[kCreatedAt]};
  return pg::estimate_prompt(td, columns, prompt) && pg::store_prompt_estimate(e.schema, e.source_id, message, *prompt);
}

}  // namespace

extern "C" Datum track_row(PG_FUNCTION_ARGS) {
  if (!CALLED_AS_TRIGGER(fcinfo))
    ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                    errmsg("billing: a tracked table's trigger function can only run as a trigger")));
  auto* td = reinterpret_cast<TriggerData*>(fcinfo->context);
  const TrackEntry e = entry_for(fcinfo->flinfo->fn_oid, RelationGetRelid(td->tg_relation));

  const bool simple_event = TRIGGER_FIRED_BY_INSERT(td->tg_event) && TRIGGER_FIRED_FOR_ROW(td->tg_event) &&
                            TRIGGER_FIRED_AFTER(td->tg_event) && td->tg_trigger->tgnattr == kColumns;
  if (!e.verified || e.source_id < 0 || !simple_event || !pg::trigger_fast_path) {
    const Datum result = run_full_body(fcinfo, e);
    // (reached only when the full body accepted the table: it raises otherwise)
    if (!e.verified) mark_verified(e);
    return result;
  }

  // The usage.
  const Column_value data = column(td, kData);
  Usage usage;
  if (data.null) {
    usage = message_without_data();
  } else if (data.type == JSONBOID) {
    const struct varlena* v = pg_detoast_datum_packed(reinterpret_cast<struct varlena*>(DatumGetPointer(data.value)));
    usage = message_usage(JsonbContainerView{reinterpret_cast<const uint8_t*>(VARDATA_ANY(v)), VARSIZE_ANY_EXHDR(v)});
  } else {
    return run_full_body(fcinfo, e);  // json or text: parsed with care there
  }
  bool assistant = false;
  if (usage.status == UsageStatus::NoUsage) {
    bool known = false;
    assistant = is_assistant(column(td, kRole), &known);
    if (!known) return run_full_body(fcinfo, e);
  }
  LedgerCounts counts;
  bool estimated = false;  // a reply without usage: its prompt and completion estimated
  if (!direct_ledger_counts(usage, assistant, &counts)) {
    const MessageFigures f = message_figures(usage, assistant);
    if (!f.estimated || f.problem) return run_full_body(fcinfo, e);
    estimated = true;
    counts = LedgerCounts{};
    counts.has_model = f.has_model;
    counts.model = f.model;
  }
  TimestampTz at = 0;
  Datum conversation = 0;
  bool conversation_null = false;
  if (!message_time(column(td, kCreatedAt), &at) ||
      !conversation_key(column(td, kConversation), &conversation, &conversation_null))
    return run_full_body(fcinfo, e);

  Relation ledger = open_ledger(e.schema);
  if (ledger == nullptr) return run_full_body(fcinfo, e);
  int64 estimated_prompt = 0;
  int64 estimated_completion = 0;
  if (estimated && !estimate_reply(td, e, &estimated_prompt, &estimated_completion)) {
    table_close(ledger, RowExclusiveLock);
    return run_full_body(fcinfo, e);
  }
  Datum values[kLedgerColumns];
  bool nulls[kLedgerColumns] = {};
  values[0] = Int16GetDatum(e.source_id);
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
  values[8] = Int64GetDatum(estimated_prompt);  // only for replies without usage
  values[9] = Int64GetDatum(estimated_completion);
  values[10] = Int64GetDatum(counts.unsplit);
  values[11] = Int32GetDatum(0);  // no problem
  HeapTuple row = heap_form_tuple(RelationGetDescr(ledger), values, nulls);
  simple_heap_insert(ledger, row);
  table_close(ledger, NoLock);  // the lock is held to the end of the transaction
  return PointerGetDatum(nullptr);
}
