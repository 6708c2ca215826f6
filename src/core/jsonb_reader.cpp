#include "jsonb_reader.h"

#include <cstring>

namespace billing {

namespace jsonb_detail {

JsonValue make_container_value(const uint8_t* area, std::size_t start, std::size_t end) noexcept {
  // Containers, like numbers, start at the next 4-byte boundary of the area.
  JsonValue v;
  const std::size_t aligned = int_align(start);
  if (aligned > end) {
    v.kind = JsonKind::Malformed;
    return v;
  }
  v.data = area + aligned;
  v.size = end - aligned;
  v.kind = jsonb_root_kind(JsonbContainerView{v.data, v.size});
  if (v.kind != JsonKind::Object && v.kind != JsonKind::Array) v.kind = JsonKind::Malformed;
  return v;
}

}  // namespace jsonb_detail

JsonKind jsonb_root_kind(JsonbContainerView c) noexcept {
  using namespace jsonb_detail;
  if (c.data == nullptr || c.size < 4) return JsonKind::Malformed;
  const uint32_t header = read_u32(c.data);
  const std::size_t count = header & kCountMask;
  if ((header & kObjectFlag) != 0) {
    if ((header & (kArrayFlag | kScalarFlag)) != 0 || count * 2 > (c.size - 4) / 4) return JsonKind::Malformed;
    return JsonKind::Object;
  }
  if ((header & kArrayFlag) == 0 || count > (c.size - 4) / 4) return JsonKind::Malformed;
  if ((header & kScalarFlag) == 0) return JsonKind::Array;
  // A root scalar is stored as a one-element array flagged scalar.
  if (count != 1) return JsonKind::Malformed;
  const uint32_t e = read_u32(c.data + 4);
  if ((e & kTypeMask) == kTypeContainer) return JsonKind::Malformed;  // no recursion on bad bytes
  const std::size_t end = (e & kOffLenMask);
  if (end > c.size - 8) return JsonKind::Malformed;
  return make_value(e, c.data + 8, 0, end).kind;
}

}  // namespace billing

#include "no_postgres.h"
