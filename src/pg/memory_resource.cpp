#include "memory_resource.h"

#include <new>

namespace billing::pg {

void* ContextMemoryResource::do_allocate(std::size_t bytes, std::size_t alignment) {
  // palloc chunks are MAXALIGNed; over-allocate for anything stricter.
  const std::size_t extra = alignment > MAXIMUM_ALIGNOF ? alignment : 0;
  void* p = MemoryContextAllocExtended(cxt_, bytes + extra, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
  if (p == nullptr) throw std::bad_alloc();
  if (extra == 0) return p;
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  return reinterpret_cast<void*>((addr + alignment - 1) & ~(static_cast<std::uintptr_t>(alignment) - 1));
}

}  // namespace billing::pg
