#include "keyed_table.h"

namespace billing {

namespace {
inline uint64_t mix(uint64_t h) noexcept {  // MurmurHash3's finaliser
  h ^= h >> 33;
  h *= UINT64_C(0xff51afd7ed558ccd);
  h ^= h >> 33;
  h *= UINT64_C(0xc4ceb9fe1a85ec53);
  h ^= h >> 33;
  return h;
}
}  // namespace

uint64_t hash_bytes(const void* data, std::size_t len) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  constexpr uint64_t kMul = UINT64_C(0x9e3779b97f4a7c15);
  uint64_t h = len * kMul;
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ mix(w)) * kMul;
  }
  if (i < len) {
    uint64_t w = 0;
    std::memcpy(&w, p + i, len - i);
    h = (h ^ mix(w ^ (static_cast<uint64_t>(len - i) << 56))) * kMul;
  }
  return mix(h);
}

}  // namespace billing

#include "no_postgres.h"
