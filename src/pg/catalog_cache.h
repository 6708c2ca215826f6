// The price catalog as each backend caches it.
//
// Every change to billing.model_prices or billing.aws_prices bumps
// billing.catalog_state.generation (a statement trigger sets it to a fresh
// value of a sequence, so no two transactions ever share a generation; with
// the table's OID, not even across DROP and CREATE EXTENSION). A
// cost function reads that one row with its own query snapshot the first time
// it runs in a query, and reloads the catalog only when the generation differs
// from the cached one. So every query prices with exactly the catalog its
// snapshot sees: committed changes from other sessions at once, its own
// uncommitted changes too, and nothing a rolled-back transaction wrote.
//
// Catalogs live in memory contexts under TopMemoryContext. A replaced catalog
// may still be in use by a running query of this transaction, so it is freed
// at the end of the transaction, not at once.
#pragma once

#include <cstdint>

#include "price_catalog.h"

namespace billing::pg {

// Registers the transaction callback that frees replaced catalogs. Call once
// from _PG_init.
void catalog_cache_init();

// The catalog for the current query's snapshot. May ereport (SPI errors, a
// malformed price row); call it only where no C++ object is alive.
const PriceCatalog* current_catalog();

// Whether this node's catalog is the Citus cluster's shared one
// (billing.citus_share_catalog()), and then which version of it, as the
// active snapshot sees billing.catalog_state (one is taken when none is
// active). Read once per snapshot: current_catalog() reads it too, so a
// query that priced rows knows it already. May ereport (as
// current_catalog()).
bool snapshot_shared_catalog_version(int64_t* version);

}  // namespace billing::pg
