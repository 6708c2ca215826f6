// The prompt estimate of a reply stored without usage, for the tracking
// trigger's C path (src/pg/track_row.cpp). The full body (PL/pgSQL,
// billing._trigger_function_body) estimates such a reply with one query
// on the table; an app that stores replies without usage (streamed
// replies, say) paid that query, a PL/pgSQL call and an INSERT ... ON
// CONFLICT for each. Here the same rows are read through the table's own
// index on its conversation column, as the planner would read them, and
// the estimate is stored with a speculative heap insert and an index insert,
// as ON CONFLICT stores a row.
//
// Nothing here throws or holds an object with a destructor.
#include "prompt_estimate.h"

#include "plain_table.h"
#include "text_estimate.h"

extern "C" {
#include "access/genam.h"
#include "access/heapam.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "access/xact.h"
#include "common/int.h"
#include "executor/tuptable.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/typcache.h"
}

namespace billing::pg {
namespace {

struct ColumnType {
  Oid type;  // through any domain
  Oid collation;
};

ColumnType column_type(Relation rel, AttrNumber attnum) {
  const Form_pg_attribute a = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
  return ColumnType{getBaseType(a->atttypid), a->attcollation};
}

// Whether `index` (opened) is a btree index of `table` whose first key is the
// conversation column, compared as the column's `=` compares it (the
// type's default operator family, its collation), over every row (no
// predicate), and usable now.
bool is_conversation_index(Relation index, Oid table, AttrNumber conversation, Oid family, Oid collation) {
  const Form_pg_index ix = index->rd_index;
  return ix->indrelid == table && index->rd_rel->relam == BTREE_AM_OID && ix->indisvalid && ix->indisready && ix->indislive &&
         ix->indnkeyatts >= 1 && ix->indkey.values[0] == conversation && index->rd_opfamily[0] == family &&
         index->rd_indcollation[0] == collation &&
         heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, nullptr);
}

// The conversation index found last for each table (InvalidOid: none),
// per backend: finding it opens the table's indexes one by one, 2,700
// instructions each, for every estimated reply. Forgotten when the table's
// relcache entry is invalidated, as it is when an index is created,
// dropped or changed; the index is checked again once opened.
struct IndexChoiceKey {
  Oid relation;
  AttrNumber conversation;
};
struct IndexChoice {
  IndexChoiceKey key;
  Oid index;
};
HTAB* index_choices = nullptr;

void forget_index_choices(Datum, Oid relid) {
  if (index_choices == nullptr) return;
  HASH_SEQ_STATUS seq;
  hash_seq_init(&seq, index_choices);
  while (auto* choice = static_cast<IndexChoice*>(hash_seq_search(&seq))) {
    if (relid == InvalidOid || choice->key.relation == relid)
      hash_search(index_choices, &choice->key, HASH_REMOVE, nullptr);  // (the current one: allowed)
  }
}

IndexChoice* index_choice(Oid relation, AttrNumber conversation, HASHACTION action) {
  if (index_choices == nullptr) {
    HASHCTL ctl;
    memset(&ctl, 0, sizeof ctl);
    ctl.keysize = sizeof(IndexChoiceKey);
    ctl.entrysize = sizeof(IndexChoice);
    ctl.hcxt = TopMemoryContext;
    index_choices = hash_create("billing conversation indexes", 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
    CacheRegisterRelcacheCallback(forget_index_choices, 0);
  }
  IndexChoiceKey key;
  memset(&key, 0, sizeof key);
  key.relation = relation;
  key.conversation = conversation;
  return static_cast<IndexChoice*>(hash_search(index_choices, &key, action, nullptr));
}

// The table's conversation index (is_conversation_index), opened, or
// nullptr.
Relation open_conversation_index(Relation rel, AttrNumber conversation, const ColumnType& type) {
  // (the type cache keeps the default btree opclass's family, which
  // GetDefaultOpClass finds by a scan of pg_opclass: 85,000 instructions a
  // reply, half of what the estimate cost in a 10-message conversation)
  const Oid family = lookup_type_cache(type.type, TYPECACHE_BTREE_OPFAMILY)->btree_opf;
  if (!OidIsValid(family)) return nullptr;
  const IndexChoice* choice = index_choice(RelationGetRelid(rel), conversation, HASH_FIND);
  if (choice != nullptr) {
    const Oid chosen = choice->index;
    if (!OidIsValid(chosen)) return nullptr;
    // (the relcache callback forgets a dropped index first; the check costs little)
    if (get_rel_relkind(chosen) == RELKIND_INDEX) {
      Relation index = index_open(chosen, AccessShareLock);
      if (is_conversation_index(index, RelationGetRelid(rel), conversation, family, type.collation)) return index;
      index_close(index, AccessShareLock);
    }
  }
  List* indexes = RelationGetIndexList(rel);
  Relation found = nullptr;
  ListCell* cell;
  foreach (cell, indexes) {
    Relation index = index_open(lfirst_oid(cell), AccessShareLock);
    if (is_conversation_index(index, RelationGetRelid(rel), conversation, family, type.collation)) {
      found = index;
      break;
    }
    index_close(index, AccessShareLock);
  }
  list_free(indexes);
  // (entered only now: opening an index may have processed invalidations,
  // or failed)
  index_choice(RelationGetRelid(rel), conversation, HASH_ENTER)->index =
      found != nullptr ? RelationGetRelid(found) : InvalidOid;
  return found;
}

// The function of the operator family's `=` for the type, or InvalidOid.
Oid equality_function(Oid family, Oid type) {
  const Oid op = get_opfamily_member(family, type, type, BTEqualStrategyNumber);
  return OidIsValid(op) ? get_opcode(op) : InvalidOid;
}

// The btree comparison of a column's type (as `<` and `=` compare it), or nullptr.
FmgrInfo* comparison(Oid type) {
  TypeCacheEntry* t = lookup_type_cache(type, TYPECACHE_CMP_PROC_FINFO);
  return OidIsValid(t->cmp_proc_finfo.fn_oid) ? &t->cmp_proc_finfo : nullptr;
}

int compare(FmgrInfo* cmp, Oid collation, Datum a, Datum b) {
  return DatumGetInt32(FunctionCall2Coll(cmp, collation, a, b));
}

// Adds the content's estimate to *sum; false past bigint.
bool add_content(Datum content, int64* sum) {
  auto* raw = reinterpret_cast<struct varlena*>(DatumGetPointer(content));
  struct varlena* v = pg_detoast_datum_packed(raw);
  const int64 tokens = text_estimate(VARDATA_ANY(v), static_cast<int>(VARSIZE_ANY_EXHDR(v)));
  if (v != raw) pfree(v);
  return !pg_add_s64_overflow(*sum, tokens, sum);
}

}  // namespace

bool estimate_prompt(const TriggerData* td, const ReplyColumns& columns, int64* tokens) {
  Relation rel = td->tg_relation;
  // The full body reads the table it was made for, with its partitions or
  // inheritance children, under its row security: left to it.
  if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relispartition || rel->rd_rel->relhassubclass ||
      rel->rd_rel->relrowsecurity)
    return false;
  const TupleDesc desc = RelationGetDescr(rel);
  const ColumnType content_type = column_type(rel, columns.content);
  if (content_type.type != TEXTOID && content_type.type != VARCHAROID) return false;

  bool null = false;
  const Datum conversation = heap_getattr(td->tg_trigtuple, columns.conversation, desc, &null);
  if (null) {  // m.conversation = NULL holds for no row
    *tokens = 0;
    return true;
  }
  const Datum at = heap_getattr(td->tg_trigtuple, columns.created_at, desc, &null);
  if (null) return false;
  const Datum id = heap_getattr(td->tg_trigtuple, columns.id, desc, &null);
  if (null) return false;  // (NULL, NULL) < ... holds for no row: the full body says so

  const ColumnType at_type = column_type(rel, columns.created_at);
  const ColumnType id_type = column_type(rel, columns.id);
  FmgrInfo* at_cmp = comparison(at_type.type);
  FmgrInfo* id_cmp = comparison(id_type.type);
  if (at_cmp == nullptr || id_cmp == nullptr) return false;
  const ColumnType conversation_type = column_type(rel, columns.conversation);
  Relation index = open_conversation_index(rel, columns.conversation, conversation_type);
  if (index == nullptr) return false;
  const Oid equals = equality_function(index->rd_opfamily[0], index->rd_opcintype[0]);
  if (!OidIsValid(equals)) {
    index_close(index, AccessShareLock);
    return false;
  }

  // What the full body's query would see, taken as SPI takes it: this
  // transaction's writes so far (the statement's other rows included) and
  // what others committed (under REPEATABLE READ, what they had committed
  // when the transaction began).
  CommandCounterIncrement();
  PushActiveSnapshot(GetTransactionSnapshot());
  UpdateActiveSnapshotCommandId();
  // Under SERIALIZABLE an MVCC read takes predicate locks, and a btree leaf
  // page holds many conversations: two app transactions writing two
  // conversations then failed each other (SQLSTATE 40001) through billing's
  // reads alone. There the conversation is read as committed now, with the
  // transaction's own writes (SnapshotSelf), which PostgreSQL's serializable
  // checks leave alone: an estimate, frozen as it is taken, needs no more.
  const Snapshot read_as = IsolationIsSerializable() ? SnapshotSelf : GetActiveSnapshot();
  ScanKeyData key;
  ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid, index->rd_indcollation[0], equals,
                         conversation);
  TupleTableSlot* slot = table_slot_create(rel, nullptr);
  IndexScanDesc scan = index_beginscan(rel, index, read_as, 1, 0);
  index_rescan(scan, &key, 1, nullptr, 0);
  int64 sum = 0;
  bool ok = true;
  while (ok && index_getnext_slot(scan, ForwardScanDirection, slot)) {
    // (m.created_at, m.id) < (NEW.created_at, NEW.id), as SQL compares rows:
    // a NULL decides nothing, so the row is not counted.
    const Datum m_at = slot_getattr(slot, columns.created_at, &null);
    if (null) continue;
    const int by_time = compare(at_cmp, at_type.collation, m_at, at);
    if (by_time > 0) continue;
    if (by_time == 0) {
      const Datum m_id = slot_getattr(slot, columns.id, &null);
      if (null || compare(id_cmp, id_type.collation, m_id, id) >= 0) continue;
    }
    const Datum content = slot_getattr(slot, columns.content, &null);
    if (null) continue;  // (_estimated_tokens is strict: sum() skips it)
    ok = add_content(content, &sum);
  }
  index_endscan(scan);
  ExecDropSingleTupleTableSlot(slot);
  index_close(index, AccessShareLock);
  PopActiveSnapshot();
  *tokens = sum;
  return ok;
}

namespace {

constexpr int kMaxEstimateColumns = 4;  // billing.citus_estimates_N's

// Inserts one row into `rel_oid` when it is the plain table the estimates
// are kept in: columns of exactly `types` (no default, check, rule, trigger
// or generated column) and one index, a unique btree on the columns
// `key_attnums` (two of them). False, having written nothing, when it is
// not; false, having written only a row already dead to every snapshot,
// when the row's key already has a row there (committed or not: the full
// body's INSERT ... ON CONFLICT waits for it and replaces it).
bool insert_new_key(Oid rel_oid, const Oid* types, int natts, const AttrNumber key_attnums[2], Datum* values) {
  if (!OidIsValid(rel_oid)) return false;
  Relation rel = try_table_open(rel_oid, RowExclusiveLock);
  if (rel == nullptr) return false;
  const TupleDesc desc = RelationGetDescr(rel);
  bool plain = natts <= kMaxEstimateColumns && plain_table(rel, types, natts);
  Oid index_oid = InvalidOid;
  if (plain) {
    List* indexes = RelationGetIndexList(rel);
    plain = list_length(indexes) == 1;
    if (plain) index_oid = linitial_oid(indexes);
    list_free(indexes);
  }
  Relation index = nullptr;
  if (plain) {
    index = index_open(index_oid, RowExclusiveLock);
    const Form_pg_index ix = index->rd_index;
    plain = index->rd_rel->relam == BTREE_AM_OID && ix->indisunique && ix->indisvalid && ix->indisready &&
            ix->indnkeyatts == 2 && ix->indnatts == 2 && ix->indkey.values[0] == key_attnums[0] &&
            ix->indkey.values[1] == key_attnums[1] &&
            heap_attisnull(index->rd_indextuple, Anum_pg_index_indexprs, nullptr) &&
            heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, nullptr);
  }
  if (!plain) {
    if (index != nullptr) index_close(index, RowExclusiveLock);
    table_close(rel, RowExclusiveLock);
    return false;
  }
  // Inserted as INSERT ... ON CONFLICT inserts, speculatively: the unique
  // index's own check (partial: it neither waits nor raises) says whether
  // the key is already there, and if so the row is taken back at once. A
  // probe of the index before the insert cost as much as the insert's own
  // descent, for a key that is almost never there.
  bool nulls[kMaxEstimateColumns] = {};
  HeapTuple row = heap_form_tuple(desc, values, nulls);
  const TransactionId xid = GetCurrentTransactionId();
  const uint32 token = SpeculativeInsertionLockAcquire(xid);
  HeapTupleHeaderSetSpeculativeToken(row->t_data, token);
  heap_insert(rel, row, GetCurrentCommandId(true), HEAP_INSERT_SPECULATIVE, nullptr);
  // (the index's key columns, in its order)
  Datum index_values[2] = {values[key_attnums[0] - 1], values[key_attnums[1] - 1]};
  const bool unique =
      index_insert(index, index_values, nulls, &row->t_self, rel, UNIQUE_CHECK_PARTIAL, false, nullptr);
  if (unique)
    heap_finish_speculative(rel, &row->t_self);
  else
    heap_abort_speculative(rel, &row->t_self);  // (its index entry now points at a dead row)
  SpeculativeInsertionLockRelease(xid);
  if (!unique) {
    index_close(index, RowExclusiveLock);
    table_close(rel, RowExclusiveLock);
    return false;
  }
  index_close(index, NoLock);
  table_close(rel, NoLock);  // the locks are held to the end of the transaction
  return true;
}

}  // namespace

bool store_prompt_estimate(Oid schema, int16 source_id, Datum message_key, int64 tokens) {
  static constexpr Oid kTypes[3] = {INT2OID, TEXTOID, INT8OID};
  static constexpr AttrNumber kKey[2] = {1, 2};  // (source_id, message_id)
  Datum values[3] = {Int16GetDatum(source_id), message_key, Int64GetDatum(tokens)};
  return insert_new_key(get_relname_relid("estimated_prompts", schema), kTypes, 3, kKey, values);
}

bool store_citus_prompt_estimate(Oid estimates_shard, Oid conversation_type, Datum conversation, int16 source_id,
                                 Datum message_key, int64 tokens) {
  const Oid types[4] = {conversation_type, INT2OID, TEXTOID, INT8OID};
  static constexpr AttrNumber kKey[2] = {1, 3};  // (conversation, message_id)
  Datum values[4] = {conversation, Int16GetDatum(source_id), message_key, Int64GetDatum(tokens)};
  return insert_new_key(estimates_shard, types, 4, kKey, values);
}

}  // namespace billing::pg
