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

}  // namespace billing
