// Walks PostgreSQL's binary jsonb containers (utils/jsonb.h) without calling
// PostgreSQL: enough to read the members of an object in one pass.
//
// Like the numeric format, the jsonb container format is on-disk and stable.
// Reading it directly lets openai_cost(jsonb) use the datum in place, with no
// copy and no text conversion. Every offset is checked against the container's
// size, so arbitrary bytes give JsonKind::Malformed rather than a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace billing {

enum class JsonKind : uint8_t { Missing, Null, String, Number, True, False, Object, Array, Malformed };

// One value inside a container. For strings `data` is the UTF-8 bytes; for
// numbers it is the numeric varlena; for containers, the nested container.
struct JsonValue {
  JsonKind kind = JsonKind::Missing;
  const uint8_t* data = nullptr;
  std::size_t size = 0;
};

struct JsonbContainerView {
  const uint8_t* data = nullptr;
  std::size_t size = 0;
};

// The kind of a root container (Object, Array, or the kind of a root scalar);
// Malformed when the header does not fit the bytes.
JsonKind jsonb_root_kind(JsonbContainerView c) noexcept;

// Calls visit(std::string_view key, const JsonValue& value) for each member of
// an object container, in key order. Returns false when the container is not
// an object or is malformed (members already visited stay visited). A visitor
// that returns bool stops the walk by returning false, and the walk then
// returns false too.
template <typename Visit>
bool jsonb_for_each_member(JsonbContainerView c, Visit&& visit) noexcept;

namespace jsonb_detail {

constexpr uint32_t kCountMask = 0x0FFFFFFF;
constexpr uint32_t kScalarFlag = 0x10000000;
constexpr uint32_t kObjectFlag = 0x20000000;
constexpr uint32_t kArrayFlag = 0x40000000;
constexpr uint32_t kOffLenMask = 0x0FFFFFFF;
constexpr uint32_t kTypeMask = 0x70000000;
constexpr uint32_t kHasOffset = 0x80000000;
constexpr uint32_t kTypeString = 0x00000000;
constexpr uint32_t kTypeNumeric = 0x10000000;
constexpr uint32_t kTypeFalse = 0x20000000;
constexpr uint32_t kTypeTrue = 0x30000000;
constexpr uint32_t kTypeNull = 0x40000000;
constexpr uint32_t kTypeContainer = 0x50000000;

// Inline: the member walk runs once per row of a cost aggregate.
inline uint32_t read_u32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline std::size_t int_align(std::size_t n) noexcept { return (n + 3) & ~static_cast<std::size_t>(3); }

// Decodes a nested container child (rare in usage objects: out of line).
JsonValue make_container_value(const uint8_t* area, std::size_t start, std::size_t end) noexcept;

// Decodes child `entry` whose bytes span [start, end) of the data area.
inline JsonValue make_value(uint32_t entry, const uint8_t* area, std::size_t start, std::size_t end) noexcept {
  JsonValue v;
  switch (entry & kTypeMask) {
    case kTypeString:
      v.kind = JsonKind::String;
      v.data = area + start;
      v.size = end - start;
      return v;
    case kTypeNull:
      v.kind = JsonKind::Null;
      return v;
    case kTypeTrue:
      v.kind = JsonKind::True;
      return v;
    case kTypeFalse:
      v.kind = JsonKind::False;
      return v;
    case kTypeNumeric: {
      // Numbers start at the next 4-byte boundary of the area.
      const std::size_t aligned = int_align(start);
      if (aligned > end) {
        v.kind = JsonKind::Malformed;
        return v;
      }
      v.kind = JsonKind::Number;
      v.data = area + aligned;
      v.size = end - aligned;
      return v;
    }
    case kTypeContainer:
      return make_container_value(area, start, end);
    default:
      v.kind = JsonKind::Malformed;
      return v;
  }
}

}  // namespace jsonb_detail

template <typename Visit>
bool jsonb_for_each_member(JsonbContainerView c, Visit&& visit) noexcept {
  using namespace jsonb_detail;
  if (c.data == nullptr || c.size < 4) return false;
  const uint32_t header = read_u32(c.data);
  if ((header & kObjectFlag) == 0 || (header & (kArrayFlag | kScalarFlag)) != 0) return false;
  const std::size_t pairs = header & kCountMask;
  const std::size_t children = pairs * 2;
  if (children > (c.size - 4) / 4) return false;
  const uint8_t* entries = c.data + 4;
  const uint8_t* area = entries + children * 4;
  const std::size_t area_size = c.size - 4 - children * 4;

  // Offsets accumulate over all children: the keys first, then the values.
  // Find where the values' data starts by walking the keys once.
  std::size_t key_offset = 0;
  std::size_t value_offset = 0;
  {
    std::size_t off = 0;
    for (std::size_t i = 0; i < pairs; ++i) {
      const uint32_t e = read_u32(entries + i * 4);
      off = (e & kHasOffset) ? (e & kOffLenMask) : off + (e & kOffLenMask);
    }
    value_offset = off;
  }
  for (std::size_t i = 0; i < pairs; ++i) {
    const uint32_t ke = read_u32(entries + i * 4);
    const std::size_t key_end = (ke & kHasOffset) ? (ke & kOffLenMask) : key_offset + (ke & kOffLenMask);
    const uint32_t ve = read_u32(entries + (pairs + i) * 4);
    const std::size_t value_end =
        (ve & kHasOffset) ? (ve & kOffLenMask) : value_offset + (ve & kOffLenMask);
    if ((ke & kTypeMask) != kTypeString || key_end < key_offset || key_end > area_size ||
        value_end < value_offset || value_end > area_size)
      return false;
    const std::string_view key(reinterpret_cast<const char*>(area + key_offset), key_end - key_offset);
    const JsonValue value = make_value(ve, area, value_offset, value_end);
    if constexpr (std::is_same_v<decltype(visit(key, value)), bool>) {
      if (!visit(key, value)) return false;
    } else {
      visit(key, value);
    }
    key_offset = key_end;
    value_offset = value_end;
  }
  return true;
}

}  // namespace billing
