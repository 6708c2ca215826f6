// What the C readers of billing.usage_ledger share (src/pg/ledger_usage.cpp,
// src/pg/ledger_spend.cpp): the key a model name or conversation id is
// grouped by, the cost of one ledger row's counts, and how a query over the
// ledger is run (ledger_read.cpp). One definition each, the first two the
// rules of billing._key() and billing.usage_cost().
#pragma once

#include "cost_call.h"
#include "ledger_row.h"

extern "C" {
#include "common/md5.h"
#include "mb/pg_wchar.h"
}

namespace billing::pg {

// Called with each row of a ledger query: its columns in the query's order.
using LedgerRowFn = void (*)(void* state, const Datum* values, const bool* nulls);

// Runs `query` (whose $1 and $2 are timestamptz bounds) with SPI as the
// caller, read-only, handing every row to add(state, ...) straight from the
// executor. The caller has done SPI_connect().
void read_ledger_rows(const char* query, TimestampTz from, TimestampTz to, LedgerRowFn add, void* state);

// Whether Citus is installed in this database (its catalog pg_dist_partition
// exists): only then may a distributed table be tracked by its shards'
// triggers, whose unmerged writes are in billing.citus_ledger_N tables
// (billing._citus_ledger_rows, src/sql/reads.sql).
bool citus_present();

// billing._key(): as is up to 200 bytes, else its first 32 characters,
// '... (md5 ', its md5 and ')' (palloc'd in the current context).
inline const char* ledger_key(const char* value, int len, int* key_len) {
  if (static_cast<size_t>(len) <= billing::kMaxPlainKeyBytes) {
    *key_len = len;
    return value;
  }
  char md5[33];
  const char* errstr = nullptr;
  if (!pg_md5_hash(value, len, md5, &errstr)) elog(ERROR, "billing: md5 failed: %s", errstr);
  const int head = pg_mbcharcliplen(value, len, 32);
  char* key = psprintf("%.*s... (md5 %s)", head, value, md5);
  *key_len = static_cast<int>(strlen(key));
  return key;
}

// usage_cost(): the cost of counts at price `p` (the price in effect at the
// row's time; nullptr when it has none), or false when unpriced.
inline bool ledger_row_cost(const TokenPrice* p, int64 prompt, int64 completion, int64 cached, Atto* cost) {
  if (prompt == 0 && completion == 0) {
    *cost = 0;
    return true;
  }
  const bool negative = unsign_token_counts(&prompt, &completion, &cached);
  if (p == nullptr) return false;
  *cost = signed_token_cost(*p, prompt, completion, cached, negative);
  return true;
}

}  // namespace billing::pg
