#include "jsonb_reader.h"

#include <cstring>

namespace billing {

namespace jsonb_detail {

uint32_t read_u32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

JsonValue make_value(uint32_t entry, const uint8_t* area, std::size_t start, std::size_t end) noexcept {
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
    case kTypeNumeric:
    case kTypeContainer: {
      // Numbers and containers start at the next 4-byte boundary of the area.
      const std::size_t aligned = int_align(start);
      if (aligned > end) {
        v.kind = JsonKind::Malformed;
        return v;
      }
      v.data = area + aligned;
      v.size = end - aligned;
      if ((entry & kTypeMask) == kTypeNumeric) {
        v.kind = JsonKind::Number;
      } else {
        v.kind = jsonb_root_kind(JsonbContainerView{v.data, v.size});
        if (v.kind != JsonKind::Object && v.kind != JsonKind::Array) v.kind = JsonKind::Malformed;
      }
      return v;
    }
    default:
      v.kind = JsonKind::Malformed;
      return v;
  }
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
