// billing's warnings relayed by Citus from its workers, once per statement
// (src/pg/worker_warnings.cpp).
#pragma once

namespace billing::pg {

// Installs the emit_log_hook that silences a billing warning relayed again
// by Citus in the same statement. Called once, from _PG_init.
void worker_warnings_init();

}  // namespace billing::pg
