// The split cost aggregates at native speed on Citus's workers
// (src/pg/citus_partials.cpp).
#pragma once

namespace billing::pg {

// billing.citus_partial_aggregates: whether a worker runs Citus's
// worker_partial_agg(<billing cost aggregate>, ...) as billing's own
// partial aggregate (on) or through Citus's generic one (off).
extern bool citus_partial_aggregates;

// Installs the planner hook. Called once, from _PG_init.
void citus_partials_init();

}  // namespace billing::pg
