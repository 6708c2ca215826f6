#include "pg_numeric.h"

#include <cstring>
#include <limits>

#include "money.h"
#include "pg_varlena.h"

namespace billing {

namespace {

// Header bits of a numeric (numeric.c).
constexpr uint16_t kSignMask = 0xC000;
constexpr uint16_t kPositive = 0x0000;
constexpr uint16_t kNegative = 0x4000;
constexpr uint16_t kShort = 0x8000;
constexpr uint16_t kSpecial = 0xC000;
constexpr uint16_t kShortSignMask = 0x2000;
constexpr uint16_t kShortWeightSignMask = 0x0040;
constexpr uint16_t kShortWeightMask = 0x003F;
constexpr uint16_t kSpecialNaN = 0xC000;
constexpr uint16_t kExtSignMask = 0xF000;
constexpr int kDigitsPerBase = 4;  // NBASE = 10000
constexpr int kMaxDigitValue = 9999;

ScaledNumeric fail(NumericStatus s) { return ScaledNumeric{s, 0}; }

}  // namespace

ScaledNumeric decode_pg_numeric(const uint8_t* data, std::size_t size, int scale) noexcept {
  if (scale < 0 || scale > 18) return fail(NumericStatus::Malformed);
  const VarlenaView v = read_varlena(data, size);
  if (!v.ok || v.payload_size < sizeof(uint16_t)) return fail(NumericStatus::Malformed);
  const uint8_t* p = v.payload;
  std::size_t left = v.payload_size;

  uint16_t header;
  std::memcpy(&header, p, sizeof header);
  p += sizeof header;
  left -= sizeof header;

  bool negative;
  int weight;
  if ((header & kSignMask) == kSpecial) {
    return fail((header & kExtSignMask) == kSpecialNaN ? NumericStatus::NotANumber
                                                       : NumericStatus::Infinite);
  }
  if ((header & kSignMask) == kShort) {
    negative = (header & kShortSignMask) != 0;
    weight = (header & kShortWeightSignMask) ? static_cast<int>(header & kShortWeightMask) - 64
                                             : static_cast<int>(header & kShortWeightMask);
  } else {
    if ((header & kSignMask) != kPositive && (header & kSignMask) != kNegative)
      return fail(NumericStatus::Malformed);
    negative = (header & kSignMask) == kNegative;
    if (left < sizeof(int16_t)) return fail(NumericStatus::Malformed);
    int16_t w;
    std::memcpy(&w, p, sizeof w);
    p += sizeof w;
    left -= sizeof w;
    weight = w;
  }
  if (left % sizeof(int16_t) != 0) return fail(NumericStatus::Malformed);
  const std::size_t ndigits = left / sizeof(int16_t);

  // value * 10^scale = sum of digit[i] * 10^(4 * (weight - i) + scale).
  Atto total = 0;
  for (std::size_t i = 0; i < ndigits; ++i) {
    int16_t d;
    std::memcpy(&d, p + i * sizeof d, sizeof d);
    if (d < 0 || d > kMaxDigitValue) return fail(NumericStatus::Malformed);
    if (d == 0) continue;
    const long exponent = kDigitsPerBase * (static_cast<long>(weight) - static_cast<long>(i)) + scale;
    Atto term = d;
    if (exponent < 0) {
      // A fractional part below the scale: exact only if it divides away.
      if (exponent < -kDigitsPerBase) return fail(NumericStatus::TooPrecise);
      for (long k = 0; k < -exponent; ++k) {
        if (term % 10 != 0) return fail(NumericStatus::TooPrecise);
        term /= 10;
      }
    } else {
      // 10^19 already exceeds int64, so larger exponents can only overflow.
      if (exponent > 19) return fail(NumericStatus::OutOfRange);
      for (long k = 0; k < exponent; ++k) term *= 10;
    }
    total += term;
    if (total > static_cast<Atto>(std::numeric_limits<int64_t>::max()) + 1)
      return fail(NumericStatus::OutOfRange);
  }
  if (negative) total = -total;
  if (total > std::numeric_limits<int64_t>::max() || total < std::numeric_limits<int64_t>::min())
    return fail(NumericStatus::OutOfRange);
  return ScaledNumeric{NumericStatus::Ok, static_cast<int64_t>(total)};
}

}  // namespace billing

#include "no_postgres.h"
