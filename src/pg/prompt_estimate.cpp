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

#include "backend_cache.h"
#include "plain_table.h"
#include "reply_role.h"
#include "text_estimate.h"

extern "C" {
#include "access/genam.h"
#include "access/heapam.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "catalog/partition.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "access/xact.h"
#include "common/int.h"
#include "partitioning/partdesc.h"
#include "executor/tuptable.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/typcache.h"
#include "utils/reltrigger.h"
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
    index_choices = backend_hash_table("billing conversation indexes", sizeof(IndexChoiceKey), sizeof(IndexChoice));
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

namespace {

// The partition root found last for each partition, per backend:
// get_partition_ancestors reads pg_inherits level by level, about 22,000
// instructions for every estimated reply of a partitioned table. All are
// forgotten at any relcache invalidation (an ATTACH or DETACH invalidates
// the relations it changes); a root gone stale otherwise is caught where it
// is used: the partition must be among the root's leaves (tables_to_read).
struct RootChoice {
  Oid partition;  // the key
  Oid root;
};
HTAB* root_choices = nullptr;

void forget_root_choices(Datum, Oid) {
  if (root_choices == nullptr) return;
  HASH_SEQ_STATUS seq;
  hash_seq_init(&seq, root_choices);
  while (auto* choice = static_cast<RootChoice*>(hash_seq_search(&seq)))
    hash_search(root_choices, &choice->partition, HASH_REMOVE, nullptr);  // (the current one: allowed)
}

Oid partition_root(Oid relid) {
  if (root_choices == nullptr) {
    root_choices = backend_hash_table("billing partition roots", sizeof(Oid), sizeof(RootChoice));
    CacheRegisterRelcacheCallback(forget_root_choices, 0);
  }
  const auto* known = static_cast<RootChoice*>(hash_search(root_choices, &relid, HASH_FIND, nullptr));
  if (known != nullptr) return known->root;
  List* ancestors = get_partition_ancestors(relid);
  if (ancestors == NIL) return InvalidOid;
  const Oid root = llast_oid(ancestors);
  list_free(ancestors);
  static_cast<RootChoice*>(hash_search(root_choices, &relid, HASH_ENTER, nullptr))->root = root;
  return root;
}

// The partition root of `relid` when it is the table billing tracks: its
// trigger of `function` is its own (not a partition's copy of it). The full
// body reads the root by the tracked table's name and estimates nothing when
// they differ; InvalidOid leaves the reply to it. The root is locked as the
// full body's query locks it, to the end of the transaction.
Oid tracked_root(Oid relid, Oid function) {
  const Oid root = partition_root(relid);
  if (!OidIsValid(root)) return InvalidOid;
  Relation r = try_relation_open(root, AccessShareLock);
  if (r == nullptr) return InvalidOid;
  bool tracked = false;
  for (int i = 0; r->trigdesc != nullptr && i < r->trigdesc->numtriggers; ++i) {
    const Trigger& t = r->trigdesc->triggers[i];
    tracked = tracked || (t.tgfoid == function && !t.tgisclone);
  }
  relation_close(r, NoLock);
  return tracked ? root : InvalidOid;
}

// Appends the leaf partitions under `parent` (locked) to *leaves, as a query
// of the parent reads them (partitions pending detach left out); false when
// one is not a plain table (a foreign table, say: the full body's query
// reads it, this cannot).
bool append_leaves(Relation parent, List** leaves) {
  const PartitionDesc parts = RelationGetPartitionDesc(parent, true);
  // (copied first: opening a sub-partitioned child may process invalidations)
  const int n = parts->nparts;
  Oid* oids = static_cast<Oid*>(palloc(sizeof(Oid) * Max(n, 1)));
  bool* leaf = static_cast<bool*>(palloc(sizeof(bool) * Max(n, 1)));
  memcpy(oids, parts->oids, sizeof(Oid) * n);
  memcpy(leaf, parts->is_leaf, sizeof(bool) * n);
  bool ok = true;
  for (int i = 0; ok && i < n; ++i) {
    if (leaf[i]) {
      ok = get_rel_relkind(oids[i]) == RELKIND_RELATION;
      *leaves = lappend_oid(*leaves, oids[i]);
      continue;
    }
    Relation child = try_relation_open(oids[i], AccessShareLock);
    ok = child != nullptr && child->rd_rel->relkind == RELKIND_PARTITIONED_TABLE && append_leaves(child, leaves);
    if (child != nullptr) relation_close(child, NoLock);
  }
  pfree(oids);
  pfree(leaf);
  return ok;
}

// The tables the full body's query of the tracked table reads, `rel` (the
// table the trigger fired on) among them: `rel` alone, or every leaf
// partition of its tracked partition root. NIL when one of them cannot be
// read here.
List* tables_to_read(Relation rel, Oid function) {
  const Oid relid = RelationGetRelid(rel);
  List* tables = NIL;
  if (rel->rd_rel->relispartition) {
    const Oid root = tracked_root(relid, function);
    if (!OidIsValid(root)) return NIL;
    Relation r = relation_open(root, NoLock);  // (locked by tracked_root)
    const bool ok = r->rd_rel->relkind == RELKIND_PARTITIONED_TABLE && append_leaves(r, &tables);
    relation_close(r, NoLock);
    if (!ok || !list_member_oid(tables, relid)) {
      list_free(tables);
      return NIL;
    }
    return tables;
  }
  // (track_messages refuses a table with inheritance children; one given
  // children later is left to the full body, whose query reads them)
  if (rel->rd_rel->relhassubclass) return NIL;
  return list_make1_oid(relid);
}

// The column of `table` that is column `attnum` of `from` (partitions'
// columns are matched by name: their numbers may differ, after a dropped
// column or an attached table of another order).
AttrNumber same_column(Relation table, Relation from, AttrNumber attnum) {
  if (table == from) return attnum;
  const char* name = NameStr(TupleDescAttr(RelationGetDescr(from), attnum - 1)->attname);
  const TupleDesc desc = RelationGetDescr(table);
  if (attnum <= desc->natts) {
    const Form_pg_attribute a = TupleDescAttr(desc, attnum - 1);
    if (!a->attisdropped && strcmp(NameStr(a->attname), name) == 0) return attnum;
  }
  return get_attnum(RelationGetRelid(table), name);
}

// One table to read, with its conversation index and its column numbers.
struct TableRead {
  Relation table;
  Relation index;
  Oid equals;
  ReplyColumns columns;
};

// Opens each of `tables` and its conversation index into reads[]; false
// (everything opened closed again) when one has no such index.
bool open_reads(Relation rel, List* tables, const ReplyColumns& columns, const ColumnType& conversation_type,
                TableRead* reads) {
  int opened = 0;
  bool ok = true;
  ListCell* cell;
  foreach (cell, tables) {
    const Oid oid = lfirst_oid(cell);
    TableRead& r = reads[opened];
    // (a partition dropped since the list was made, after a pending
    // DETACH ... CONCURRENTLY, say: left to the full body's query)
    r.table = oid == RelationGetRelid(rel) ? rel : try_table_open(oid, AccessShareLock);
    if (r.table == nullptr) {
      ok = false;
      break;
    }
    r.columns = ReplyColumns{same_column(r.table, rel, columns.id), same_column(r.table, rel, columns.conversation),
                             same_column(r.table, rel, columns.content), same_column(r.table, rel, columns.created_at),
                             same_column(r.table, rel, columns.role)};
    r.index = nullptr;
    if (r.columns.id != InvalidAttrNumber && r.columns.conversation != InvalidAttrNumber &&
        r.columns.content != InvalidAttrNumber && r.columns.created_at != InvalidAttrNumber &&
        r.columns.role != InvalidAttrNumber)
      r.index = open_conversation_index(r.table, r.columns.conversation,
                                        ColumnType{conversation_type.type, column_type(r.table, r.columns.conversation).collation});
    r.equals = r.index != nullptr ? equality_function(r.index->rd_opfamily[0], r.index->rd_opcintype[0]) : InvalidOid;
    if (r.index != nullptr && !OidIsValid(r.equals)) {
      index_close(r.index, AccessShareLock);
      r.index = nullptr;
    }
    if (r.index == nullptr) {
      if (r.table != rel) table_close(r.table, NoLock);
      ok = false;
      break;
    }
    ++opened;
  }
  if (!ok) {
    for (int i = 0; i < opened; ++i) {
      index_close(reads[i].index, NoLock);
      if (reads[i].table != rel) table_close(reads[i].table, NoLock);
    }
  }
  return ok;
}

}  // namespace

bool estimate_prompt(const TriggerData* td, const ReplyColumns& columns, int64* tokens) {
  Relation rel = td->tg_relation;
  // A foreign or other table is left to the full body. Row security does
  // not apply to the full body's query (it runs as the extension's owner, a
  // superuser), nor does it here: both read every row.
  if (rel->rd_rel->relkind != RELKIND_RELATION) return false;
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
  const Oid role_type = column_type(rel, columns.role).type;
  const bool ids_in_order = ids_in_storage_order(id_type.type);
  FmgrInfo* at_cmp = comparison(at_type.type);
  FmgrInfo* id_cmp = comparison(id_type.type);
  if (at_cmp == nullptr || id_cmp == nullptr) return false;
  const ColumnType conversation_type = column_type(rel, columns.conversation);
  // The tracked table's rows, wherever they are: in every partition (a
  // conversation spans a monthly partitioned table's months), each read
  // through its own conversation index.
  List* tables = tables_to_read(rel, td->tg_trigger->tgfoid);
  if (tables == NIL) return false;
  auto* reads = static_cast<TableRead*>(palloc(sizeof(TableRead) * list_length(tables)));
  if (!open_reads(rel, tables, columns, conversation_type, reads)) {
    pfree(reads);
    list_free(tables);
    return false;
  }
  const int nreads = list_length(tables);
  list_free(tables);

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
  int64 sum = 0;
  bool ok = true;
  for (int i = 0; i < nreads; ++i) {
    const TableRead& r = reads[i];
    ScanKeyData key;
    ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid, r.index->rd_indcollation[0], r.equals,
                           conversation);
    TupleTableSlot* slot = table_slot_create(r.table, nullptr);
    IndexScanDesc scan = index_beginscan(r.table, r.index, read_as, 1, 0);
    index_rescan(scan, &key, 1, nullptr, 0);
    while (ok && index_getnext_slot(scan, ForwardScanDirection, slot)) {
      // billing._earlier_condition: (m.created_at, m.id) < (NEW.created_at,
      // NEW.id) for integer ids, else (m.created_at, billing._reply_rank(m.role),
      // m.id) < (NEW.created_at, 1, NEW.id), as SQL compares rows: a NULL
      // decides nothing, so the row is not counted.
      const Datum m_at = slot_getattr(slot, r.columns.created_at, &null);
      if (null) continue;
      const int by_time = compare(at_cmp, at_type.collation, m_at, at);
      if (by_time > 0) continue;
      if (by_time == 0) {
        // At the same time, a message that is not a reply came before it
        // (its question, stored in the same transaction at the same now());
        // another reply, when its id sorts first. With integer ids, the id
        // alone.
        bool known = true;
        bool reply = true;
        if (!ids_in_order) {
          const Datum m_role = slot_getattr(slot, r.columns.role, &null);
          reply = !null && role_says_reply(role_type, m_role, &known);
        }
        if (!known) {
          ok = false;  // (a role of a type the full body reads)
          break;
        }
        if (reply) {
          const Datum m_id = slot_getattr(slot, r.columns.id, &null);
          if (null || compare(id_cmp, id_type.collation, m_id, id) >= 0) continue;
        }
      }
      const Datum content = slot_getattr(slot, r.columns.content, &null);
      if (null) continue;  // (_estimated_tokens is strict: sum() skips it)
      ok = add_content(content, &sum);
    }
    index_endscan(scan);
    ExecDropSingleTupleTableSlot(slot);
    // (held to the end of the transaction, as a query holds them)
    index_close(r.index, NoLock);
    if (r.table != rel) table_close(r.table, NoLock);
  }
  pfree(reads);
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
