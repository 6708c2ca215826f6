// A std::pmr::memory_resource that draws from a PostgreSQL memory context.
//
// Core containers (the price catalog) allocate through it, so everything that
// outlives a call lives in a memory context and goes away with it. Allocation
// never ereports: on out-of-memory it throws std::bad_alloc, which the glue
// catches before any PostgreSQL error is raised (see load() in catalog_cache.cpp).
#pragma once

#include <memory_resource>

#include "postgres_headers.h"

namespace billing::pg {

class ContextMemoryResource final : public std::pmr::memory_resource {
 public:
  explicit ContextMemoryResource(MemoryContext cxt) noexcept : cxt_(cxt) {}

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override;
  // Memory is returned to the context as a whole when it is deleted.
  void do_deallocate(void*, std::size_t, std::size_t) noexcept override {}
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }

  MemoryContext cxt_;
};

}  // namespace billing::pg
