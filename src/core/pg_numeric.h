// Reads PostgreSQL's on-disk `numeric` format (the bytes of a numeric varlena,
// header included) into an exact scaled integer, without calling PostgreSQL.
//
// The format is the one every numeric column and every jsonb number is stored
// in (see src/backend/utils/adt/numeric.c: NumericShort / NumericLong, base
// 10000 digits). It is part of PostgreSQL's on-disk compatibility, so it does
// not change between minor or major versions. Reading it here lets the cost
// aggregates turn a jsonb token count into an integer without a text round trip,
// and makes the decoder testable and fuzzable on its own. Every read is bounds
// checked: malformed bytes give NumericStatus::Malformed, never a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "pg_varlena.h"

namespace billing {

enum class NumericStatus : uint8_t {
  Ok,
  NotANumber,   // NaN
  Infinite,     // +/-Infinity
  TooPrecise,   // more decimals than the requested scale
  OutOfRange,   // value * 10^scale does not fit in int64
  Malformed,    // not a numeric varlena
};

struct ScaledNumeric {
  NumericStatus status;
  int64_t value;  // value * 10^scale when status == Ok
};

// `data` points at the varlena header (1-byte or 4-byte) of a numeric datum and
// `size` is how many bytes may be read from there.
ScaledNumeric decode_pg_numeric(const uint8_t* data, std::size_t size, int scale) noexcept;

// The common case of decode_pg_numeric(data, size, 0), inline: a
// non-negative integer below 10^16 in the short format (how PostgreSQL
// stores every token count a usage object holds). True and *value set when
// the bytes are that case, with the value decode_pg_numeric gives; false for
// anything else (then call decode_pg_numeric, which knows every case).
__attribute__((always_inline)) inline bool decode_small_pg_integer(const uint8_t* data, std::size_t size,
                                                                   int64_t* value) noexcept {
  VarlenaView v;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  // How jsonb stores a number: a 4-byte header (low bits 00: uncompressed)
  // whose length is exactly the bytes given. read_varlena says the same of
  // such bytes, with more tests.
  uint32_t word;
  if (size >= 6 && size <= 14 && data != nullptr && (std::memcpy(&word, data, sizeof word), word == size << 2))
    v = VarlenaView{true, data + 4, size - 4};
  else
#endif
    v = read_varlena(data, size);
  // A 2-byte header and at most 4 digits of 2 bytes.
  if (!v.ok || v.payload_size < 2 || v.payload_size > 10 || (v.payload_size & 1) != 0) return false;
  uint16_t header;
  std::memcpy(&header, v.payload, sizeof header);
  // Short format (0x8000), positive (no 0x2000), weight >= 0 (no 0x0040).
  if ((header & 0xE040) != 0x8000) return false;
  const std::size_t weight = header & 0x003F;
  const std::size_t ndigits = (v.payload_size - 2) / 2;
  // value = sum of digit[i] * 10000^(weight - i): an integer when no digit
  // lies after the point, below 10^16 when weight <= 3.
  if (weight > 3 || ndigits > weight + 1) return false;
  int64_t x = 0;
  for (std::size_t i = 0; i < ndigits; ++i) {
    uint16_t d;  // an int16 in [0, 9999]: negative ones are above 9999 here
    std::memcpy(&d, v.payload + 2 + 2 * i, sizeof d);
    if (d > 9999) return false;
    x = x * 10000 + d;
  }
  static constexpr int64_t kPowers[] = {1, 10000, 100000000, 1000000000000, 10000000000000000};
  *value = x * kPowers[weight + 1 - ndigits];  // index 4 only when there is no digit (x = 0)
  return true;
}

}  // namespace billing
