// billing's warnings relayed by Citus from its workers, once per statement.
//
// An aggregate that Citus pushes down to the workers (grouped by the
// distribution column, say) runs its final function once per shard, each
// in a worker backend of its own; each backend raises billing's warning
// once (an unpriced model, unreadable usage), and Citus relays every one to
// the client (DefaultCitusNoticeReceiver, its DETAIL "from host:port"): one
// warning per shard with such rows. On the coordinator this emit_log_hook
// lets the first of each through and silences the same warning relayed
// again in the same statement (its first line compared: the rest holds the
// shard's own count and node). So a pushed-down query warns once, as a
// split one does (whose final function runs once, on the coordinator), and
// its DETAIL counts the rows of the first shard that reported, as the split
// path's counts those of its first group.
//
// The hook is installed when the library is loaded in the coordinator's
// backend: by the first call of one of billing's C functions in the session
// (the split path's final function, any read of billing's views), or at
// connection start with session_preload_libraries (docs/citus.md).
//
// A hook runs while an error is being reported: nothing here allocates,
// raises or calls the catalog.
#include "postgres_headers.h"

#include "worker_warnings.h"

extern "C" {
#include "common/hashfn.h"
#include "utils/elog.h"
}

namespace billing::pg {
namespace {

emit_log_hook_type previous_hook = nullptr;

// The first lines seen in the current statement (by their hash); a full
// list lets the rest through.
constexpr int kSeenMax = 64;
uint64 seen[kSeenMax];
int seen_count = 0;
TimestampTz seen_statement = 0;

constexpr char kPrefix[] = "billing: ";

bool relayed_by_citus(const ErrorData* e) {
  return e->funcname != nullptr && strcmp(e->funcname, "DefaultCitusNoticeReceiver") == 0;
}

// True when the warning was already relayed in this statement (and records it).
bool seen_before(const char* message) {
  const TimestampTz statement = GetCurrentStatementStartTimestamp();
  if (statement != seen_statement) {
    seen_statement = statement;
    seen_count = 0;
  }
  const char* end = strchr(message, '\n');
  const size_t length = end == nullptr ? strlen(message) : static_cast<size_t>(end - message);
  const uint64 h = hash_bytes_extended(reinterpret_cast<const unsigned char*>(message), static_cast<int>(length), 0);
  for (int i = 0; i < seen_count; ++i)
    if (seen[i] == h) return true;
  if (seen_count < kSeenMax) seen[seen_count++] = h;
  return false;
}

void once_per_statement(ErrorData* e) {
  if (e->elevel == WARNING && e->message != nullptr && strncmp(e->message, kPrefix, sizeof kPrefix - 1) == 0 &&
      relayed_by_citus(e) && seen_before(e->message)) {
    e->output_to_client = false;
    e->output_to_server = false;
  }
  if (previous_hook != nullptr) previous_hook(e);
}

}  // namespace

void worker_warnings_init() {
  previous_hook = emit_log_hook;
  emit_log_hook = once_per_statement;
}

}  // namespace billing::pg
