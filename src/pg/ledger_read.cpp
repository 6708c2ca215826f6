// The one way billing's C readers run a query over billing.usage_ledger
// (src/pg/ledger_usage.cpp, src/pg/ledger_spend.cpp): SPI as the caller, so
// row-level security applies as to any read, with each row handed from the
// executor to the reader's callback, taken apart once and never copied
// into an SPI tuple table (the copy cost more than the reader's own work).
#include "ledger_read.h"

extern "C" {
#include "catalog/pg_namespace.h"
#include "nodes/params.h"
#include "utils/lsyscache.h"
#include "tcop/dest.h"
}

namespace billing::pg {

namespace {

// No destructor: it lives on the stack of a function that may raise.
struct RowReceiver {
  DestReceiver pub;  // first: the executor sees a DestReceiver
  LedgerRowFn add;
  void* state;
};

void receiver_startup(DestReceiver*, int, TupleDesc) {}
void receiver_shutdown(DestReceiver*) {}

bool receive_row(TupleTableSlot* slot, DestReceiver* self) {
  CHECK_FOR_INTERRUPTS();
  slot_getallattrs(slot);
  auto* r = reinterpret_cast<RowReceiver*>(self);
  r->add(r->state, slot->tts_values, slot->tts_isnull);
  return true;
}

}  // namespace

void read_ledger_rows(const char* query, TimestampTz from, TimestampTz to, LedgerRowFn add, void* state) {
  Oid types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
  SPIPlanPtr plan = SPI_prepare(query, 2, types);
  if (plan == nullptr) elog(ERROR, "billing: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
  ParamListInfo params = makeParamList(2);
  params->params[0] = ParamExternData{TimestampTzGetDatum(from), false, PARAM_FLAG_CONST, TIMESTAMPTZOID};
  params->params[1] = ParamExternData{TimestampTzGetDatum(to), false, PARAM_FLAG_CONST, TIMESTAMPTZOID};

  RowReceiver receiver{};
  receiver.pub.receiveSlot = receive_row;
  receiver.pub.rStartup = receiver_startup;
  receiver.pub.rShutdown = receiver_shutdown;
  receiver.pub.rDestroy = receiver_shutdown;
  receiver.pub.mydest = DestNone;
  receiver.add = add;
  receiver.state = state;

  SPIExecuteOptions options;
  memset(&options, 0, sizeof options);
  options.params = params;
  options.read_only = true;
  options.dest = &receiver.pub;
  const int rc = SPI_execute_plan_extended(plan, &options);
  // (SPI says SPI_OK_UTILITY for a SELECT whose rows go to a DestNone receiver)
  if (rc < 0) elog(ERROR, "billing: reading the ledger failed: %s", SPI_result_code_string(rc));
}

bool citus_present() {
  return OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE));
}

}  // namespace billing::pg
