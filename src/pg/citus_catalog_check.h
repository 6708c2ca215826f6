// The end-of-query check of the shared catalog on a Citus cluster
// (src/pg/citus_catalog_check.cpp).
#pragma once

namespace billing::pg {

// Installs the executor hooks. Called once, from _PG_init.
void citus_catalog_check_init();

}  // namespace billing::pg
