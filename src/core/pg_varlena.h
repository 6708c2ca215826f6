// The varlena header of PostgreSQL's on-disk values (postgres.h, varatt_*),
// read without PostgreSQL. Only the two uncompressed inline forms are accepted;
// callers detoast before handing bytes to the core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace billing {

struct VarlenaView {
  bool ok;
  const uint8_t* payload;
  std::size_t payload_size;
};

inline VarlenaView read_varlena(const uint8_t* data, std::size_t size) noexcept {
  if (data == nullptr || size < 1) return {false, nullptr, 0};
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const uint8_t first = data[0];
  if ((first & 0x01) == 0x01) {
    // 1-byte header; 0x01 alone marks an external TOAST pointer.
    if (first == 0x01) return {false, nullptr, 0};
    const std::size_t total = first >> 1;
    if (total < 1 || total > size) return {false, nullptr, 0};
    return {true, data + 1, total - 1};
  }
  if ((first & 0x03) != 0x00 || size < 4) return {false, nullptr, 0};  // compressed or short
  uint32_t h;
  std::memcpy(&h, data, sizeof h);
  const std::size_t total = (h >> 2) & 0x3FFFFFFF;
#else
  const uint8_t first = data[0];
  if ((first & 0x80) == 0x80) {
    if (first == 0x80) return {false, nullptr, 0};
    const std::size_t total = first & 0x7F;
    if (total < 1 || total > size) return {false, nullptr, 0};
    return {true, data + 1, total - 1};
  }
  if ((first & 0xC0) != 0x00 || size < 4) return {false, nullptr, 0};
  uint32_t h;
  std::memcpy(&h, data, sizeof h);
  const std::size_t total = h & 0x3FFFFFFF;
#endif
  if (total < 4 || total > size) return {false, nullptr, 0};
  return {true, data + 4, total - 4};
}

}  // namespace billing
