#include "catalog_cache.h"

#include <new>

#include "memory_resource.h"
#include "pg_numeric.h"

extern "C" {
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "storage/proc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
}

namespace billing::pg {

namespace {

// The queries name their tables with the schema and use no operator or
// function, so no search_path can redirect them.
// The generation comes with the table's OID: DROP EXTENSION and CREATE
// EXTENSION in one connection restart the sequence, so a generation alone
// can repeat; the pair cannot (a new table gets a new OID).
// The third column: whether a transaction still in progress is changing this
// node's catalog while the Citus coordinator shares it (src/sql/citus.sql);
// false at once when no transaction has touched the row since it was written.
// The fourth: the version of the Citus cluster's shared catalog this node's
// tables hold (NULL when it is not shared), which billing's partial twins
// stamp on the states they send to the coordinator.
constexpr const char* kGenerationQuery =
    "SELECT generation, tableoid, CASE WHEN xmax OPERATOR(pg_catalog.=) '0'::pg_catalog.xid THEN false "
    "ELSE billing._catalog_in_flux(xmax) END, cluster_version FROM billing.catalog_state";
constexpr const char* kModelQuery =
    "SELECT model, effective_from, input_per_1m, cached_input_per_1m, output_per_1m FROM billing.model_prices";
constexpr const char* kServiceQuery = "SELECT service, effective_from, unit_price FROM billing.aws_prices";

struct Cache {
  MemoryContext parent = nullptr;   // holds the current catalog's context
  MemoryContext retired = nullptr;  // replaced catalogs, reset at transaction end
  MemoryContext current_cxt = nullptr;
  PriceCatalog* current = nullptr;
  int64 generation = 0;
  Oid state_table = InvalidOid;  // billing.catalog_state's OID when generation was read
  bool valid = false;
  SPIPlanPtr generation_plan = nullptr;
};

Cache cache;

void at_transaction_end(XactEvent event, void*) {
  switch (event) {
    case XACT_EVENT_COMMIT:
    case XACT_EVENT_ABORT:
    case XACT_EVENT_PARALLEL_COMMIT:
    case XACT_EVENT_PARALLEL_ABORT:
    case XACT_EVENT_PREPARE:
      if (cache.retired != nullptr) MemoryContextReset(cache.retired);
      break;
    default:
      break;
  }
}

// Reads a numeric column as an integer scaled by 10^scale.
int64 scaled_column(HeapTuple tuple, TupleDesc desc, int column, int scale, const char* what, const char* name,
                    bool* isnull) {
  const Datum d = SPI_getbinval(tuple, desc, column, isnull);
  if (*isnull) return 0;
  const struct varlena* v = PG_DETOAST_DATUM_PACKED(d);
  const ScaledNumeric n =
      decode_pg_numeric(reinterpret_cast<const uint8_t*>(v), VARSIZE_ANY(v), scale);
  if (n.status != NumericStatus::Ok)
    ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
                    errmsg("billing: %s of \"%s\" cannot be used as a price", what, name),
                    errdetail("Prices are kept exactly with at most %d decimals and must fit in 64 bits once scaled.",
                              scale)));
  return n.value;
}

struct Generation {
  int64 value;
  Oid table;
  bool shared;            // the catalog is the Citus cluster's
  int64 cluster_version;  // which version of it (when shared)
};

Generation read_generation() {
  if (cache.generation_plan == nullptr) {
    SPIPlanPtr plan = SPI_prepare(kGenerationQuery, 0, nullptr);
    if (plan == nullptr) elog(ERROR, "billing: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
    SPI_keepplan(plan);
    cache.generation_plan = plan;
  }
  const int rc = SPI_execute_plan(cache.generation_plan, nullptr, nullptr, true, 1);
  if (rc != SPI_OK_SELECT || SPI_processed != 1)
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("billing: billing.catalog_state must hold exactly one row")));
  bool isnull;
  const Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
  bool table_isnull;
  const Datum table = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &table_isnull);
  bool flux_isnull;
  const Datum flux = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &flux_isnull);
  if (!flux_isnull && DatumGetBool(flux))
    ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                    errmsg("billing: this node's price catalog is being changed by a transaction "
                           "this query does not see"),
                    errdetail("This transaction changed prices over another connection to this node, or a "
                              "committed change is still being applied here: the coordinator may price with "
                              "another catalog than this node, and the query fails rather than mix them."),
                    errhint("Run the query again once the change has committed; in the transaction that "
                            "changes prices, SET LOCAL citus.multi_shard_modify_mode = 'sequential' before "
                            "the change keeps one connection per node.")));
  bool version_isnull;
  const Datum version = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &version_isnull);
  return Generation{isnull ? 0 : DatumGetInt64(d), table_isnull ? InvalidOid : DatumGetObjectId(table),
                    !version_isnull, version_isnull ? 0 : DatumGetInt64(version)};
}

// Fails the query when this node's prices are not the Citus cluster's
// (billing._catalog_divergence(), citus.sql; looked up by name, so that
// this library also serves an install not yet updated to the version that
// has it).
void check_cluster_catalog() {
  const Oid schema = get_namespace_oid("billing", true);
  if (!OidIsValid(schema)) return;
  const Oid check = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum("_catalog_divergence"),
                                    PointerGetDatum(buildoidvector(nullptr, 0)), ObjectIdGetDatum(schema));
  if (!OidIsValid(check)) return;
  LOCAL_FCINFO(call, 0);
  FmgrInfo flinfo;
  fmgr_info(check, &flinfo);
  InitFunctionCallInfoData(*call, &flinfo, 0, InvalidOid, nullptr, nullptr);
  const Datum why = FunctionCallInvoke(call);
  if (call->isnull) return;
  ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                  errmsg("billing: this node's price catalog is not the Citus cluster's: %s",
                         TextDatumGetCString(why)),
                  errdetail("Its shards would be priced with other prices or settings than the coordinator's; "
                            "the query fails rather than add them up."),
                  errhint("Run SELECT billing.citus_share_catalog(); on the coordinator: it makes the "
                          "coordinator's prices and settings every node's again.")));
}

// Builds a catalog from the two price tables into a new memory context.
void load(Generation generation) {
  check_cluster_catalog();
  if (SPI_execute(kModelQuery, true, 0) != SPI_OK_SELECT) elog(ERROR, "billing: cannot read billing.model_prices");
  SPITupleTable* models = SPI_tuptable;
  const uint64 nmodels = SPI_processed;
  if (SPI_execute(kServiceQuery, true, 0) != SPI_OK_SELECT) elog(ERROR, "billing: cannot read billing.aws_prices");
  SPITupleTable* services = SPI_tuptable;
  const uint64 nservices = SPI_processed;

  // Decode every row first (this may ereport), keeping only plain values.
  struct ModelRow { const char* name; int len; TokenPrice price; };
  struct ServiceRow { const char* name; int len; UnitPrice price; };
  auto* model_rows = static_cast<ModelRow*>(palloc0(sizeof(ModelRow) * (nmodels + 1)));
  auto* service_rows = static_cast<ServiceRow*>(palloc0(sizeof(ServiceRow) * (nservices + 1)));
  bool isnull;
  for (uint64 i = 0; i < nmodels; ++i) {
    HeapTuple t = models->vals[i];
    TupleDesc d = models->tupdesc;
    text* name = DatumGetTextPP(SPI_getbinval(t, d, 1, &isnull));
    ModelRow& r = model_rows[i];
    r.name = VARDATA_ANY(name);
    r.len = VARSIZE_ANY_EXHDR(name);
    const char* label = text_to_cstring(name);
    r.price.effective_from = DatumGetTimestampTz(SPI_getbinval(t, d, 2, &isnull));
    r.price.input = scaled_column(t, d, 3, kTokenPriceScale, "input_per_1m", label, &isnull);
    r.price.cached_input = scaled_column(t, d, 4, kTokenPriceScale, "cached_input_per_1m", label, &isnull);
    if (isnull) r.price.cached_input = r.price.input;  // NULL: no discount
    r.price.output = scaled_column(t, d, 5, kTokenPriceScale, "output_per_1m", label, &isnull);
  }
  for (uint64 i = 0; i < nservices; ++i) {
    HeapTuple t = services->vals[i];
    TupleDesc d = services->tupdesc;
    text* name = DatumGetTextPP(SPI_getbinval(t, d, 1, &isnull));
    ServiceRow& r = service_rows[i];
    r.name = VARDATA_ANY(name);
    r.len = VARSIZE_ANY_EXHDR(name);
    r.price.effective_from = DatumGetTimestampTz(SPI_getbinval(t, d, 2, &isnull));
    r.price.per_unit = scaled_column(t, d, 3, kUnitPriceScale, "unit_price", text_to_cstring(name), &isnull);
  }

  MemoryContext cxt = AllocSetContextCreate(cache.parent, "billing price catalog", ALLOCSET_SMALL_SIZES);
  PriceCatalog* catalog = nullptr;
  bool out_of_memory = false;
  try {
    void* resource_mem = MemoryContextAllocExtended(cxt, sizeof(ContextMemoryResource), MCXT_ALLOC_NO_OOM);
    void* catalog_mem = MemoryContextAllocExtended(cxt, sizeof(PriceCatalog), MCXT_ALLOC_NO_OOM);
    if (resource_mem == nullptr || catalog_mem == nullptr) throw std::bad_alloc();
    auto* resource = new (resource_mem) ContextMemoryResource(cxt);
    catalog = new (catalog_mem) PriceCatalog(resource);
    for (uint64 i = 0; i < nmodels; ++i)
      catalog->add_model_price(std::string_view(model_rows[i].name, model_rows[i].len), model_rows[i].price);
    for (uint64 i = 0; i < nservices; ++i)
      catalog->add_service_price(std::string_view(service_rows[i].name, service_rows[i].len), service_rows[i].price);
    catalog->finish();
  } catch (...) {
    out_of_memory = true;
  }
  // No C++ object is alive past this point: the catalog is never destroyed,
  // its memory goes with its context.
  if (out_of_memory) {
    MemoryContextDelete(cxt);
    ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("billing: out of memory loading the price catalog")));
  }
  if (cache.current_cxt != nullptr) MemoryContextSetParent(cache.current_cxt, cache.retired);
  cache.current_cxt = cxt;
  cache.current = catalog;
  cache.generation = generation.value;
  cache.state_table = generation.table;
  cache.valid = true;
}

}  // namespace

void catalog_cache_init() {
  cache.parent = AllocSetContextCreate(TopMemoryContext, "billing catalogs", ALLOCSET_SMALL_SIZES);
  cache.retired = AllocSetContextCreate(TopMemoryContext, "billing retired catalogs", ALLOCSET_SMALL_SIZES);
  RegisterXactCallback(at_transaction_end, nullptr);
}

namespace {

// The shared catalog's version as the last read of billing.catalog_state
// saw it, and the snapshot it read with. What identifies a snapshot's view
// of committed rows: this transaction, its command id, xmin, xmax and the
// number of transactions it saw running. With the same xmax, the
// transactions below it are the same ones and can only finish, so a later
// snapshot that still counts as many running sees exactly what the earlier
// one saw. (Not snapXactCompletionCount: an active snapshot is a copy,
// where it is always 0.)
struct SnapshotKey {
  LocalTransactionId lxid;
  CommandId curcid;
  TransactionId xmin, xmax;
  uint32 xcnt;
  int32 subxcnt;
  bool suboverflowed;
};

struct VersionMemo {
  SnapshotKey key{InvalidLocalTransactionId, 0, InvalidTransactionId, InvalidTransactionId, 0, 0, false};
  bool shared = false;
  int64 version = 0;
};

VersionMemo memo;

SnapshotKey active_snapshot_key() {
  const Snapshot snap = GetActiveSnapshot();
  return SnapshotKey{MyProc->lxid, snap->curcid, snap->xmin, snap->xmax, snap->xcnt, snap->subxcnt,
                     snap->suboverflowed};
}

bool same_snapshot(const SnapshotKey& a, const SnapshotKey& b) {
  return a.lxid != InvalidLocalTransactionId && a.lxid == b.lxid && a.curcid == b.curcid && a.xmin == b.xmin &&
         a.xmax == b.xmax && a.xcnt == b.xcnt && a.subxcnt == b.subxcnt && a.suboverflowed == b.suboverflowed;
}

// read_generation(), remembering the version it saw for the active snapshot.
Generation read_generation_remembered() {
  memo.key.lxid = InvalidLocalTransactionId;  // (not valid until read)
  const Generation g = read_generation();
  memo.shared = g.shared;
  memo.version = g.cluster_version;
  memo.key = active_snapshot_key();
  return g;
}

}  // namespace

const PriceCatalog* current_catalog() {
  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "billing: SPI_connect failed");
  const Generation generation = read_generation_remembered();
  if (!cache.valid || generation.value != cache.generation || generation.table != cache.state_table) load(generation);
  SPI_finish();
  return cache.current;
}

bool snapshot_shared_catalog_version(int64_t* version) {
  const bool pushed = !ActiveSnapshotSet();
  if (pushed) PushActiveSnapshot(GetTransactionSnapshot());
  if (!same_snapshot(active_snapshot_key(), memo.key)) {
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "billing: SPI_connect failed");
    read_generation_remembered();
    SPI_finish();
  }
  if (pushed) PopActiveSnapshot();
  *version = memo.version;
  return memo.shared;
}

}  // namespace billing::pg
