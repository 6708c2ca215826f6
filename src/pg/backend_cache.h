// billing's per-backend caches (a tracked table's trigger entry, its
// conversation index, a partition's root, a Citus shard's ledger): hash
// tables of fixed-size keys compared as bytes, kept in TopMemoryContext for
// the backend's life, each emptied by its own invalidation callback.
#pragma once

#include "postgres_headers.h"

extern "C" {
#include "utils/hsearch.h"
#include "utils/memutils.h"
}

namespace billing::pg {

inline HTAB* backend_hash_table(const char* name, Size keysize, Size entrysize) {
  HASHCTL ctl;
  memset(&ctl, 0, sizeof ctl);
  ctl.keysize = keysize;
  ctl.entrysize = entrysize;
  ctl.hcxt = TopMemoryContext;
  return hash_create(name, 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

}  // namespace billing::pg
