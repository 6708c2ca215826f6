#include "money.h"

#include <limits>

namespace billing {

std::size_t format_atto(Atto v, char (&buf)[kAttoTextSize], int min_decimals) noexcept {
  // Work on the magnitude as unsigned so that the most negative value is fine.
  const bool negative = v < 0;
  UAtto mag = negative ? static_cast<UAtto>(-(v + 1)) + 1
                                   : static_cast<UAtto>(v);
  char digits[kAttoTextSize];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + static_cast<int>(mag % 10));
    mag /= 10;
  } while (mag != 0);
  // Pad so that there is at least one digit before the point.
  while (n <= kAttoScale) digits[n++] = '0';

  // digits[] holds the number least significant first; the lowest kAttoScale
  // of them are decimals. Trim the decimals' trailing zeros.
  int first_kept_decimal = 0;
  const int keep_from = kAttoScale - (min_decimals < 0 ? 0 : min_decimals > kAttoScale ? kAttoScale : min_decimals);
  while (first_kept_decimal < keep_from && digits[first_kept_decimal] == '0') ++first_kept_decimal;

  std::size_t len = 0;
  if (negative) buf[len++] = '-';
  for (int i = n - 1; i >= kAttoScale; --i) buf[len++] = digits[i];
  if (first_kept_decimal < kAttoScale) {
    buf[len++] = '.';
    for (int i = kAttoScale - 1; i >= first_kept_decimal; --i) buf[len++] = digits[i];
  }
  buf[len] = '\0';
  return len;
}

std::optional<Atto> parse_scaled_decimal(std::string_view text, int scale) noexcept {
  std::size_t i = 0;
  bool negative = false;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) {
    negative = text[i] == '-';
    ++i;
  }
  // Accumulate the magnitude unsigned: the most negative value has no
  // positive counterpart in 128 bits.
  using U = UAtto;
  const U limit = negative ? (static_cast<U>(1) << 127) : (static_cast<U>(1) << 127) - 1;
  U value = 0;
  int decimals = 0;
  bool seen_digit = false;
  bool seen_point = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '.') {
      if (seen_point) return std::nullopt;
      seen_point = true;
      continue;
    }
    if (c < '0' || c > '9') return std::nullopt;
    seen_digit = true;
    if (seen_point) {
      // Extra decimals are acceptable only when they are zeros.
      if (decimals == scale) {
        if (c != '0') return std::nullopt;
        continue;
      }
      ++decimals;
    }
    if (value > (limit - static_cast<U>(c - '0')) / 10) return std::nullopt;
    value = value * 10 + static_cast<U>(c - '0');
  }
  if (!seen_digit) return std::nullopt;
  for (; decimals < scale; ++decimals) {
    if (value > limit / 10) return std::nullopt;
    value *= 10;
  }
  if (negative) return static_cast<Atto>(~value + 1);  // two's complement, also for -2^127
  return static_cast<Atto>(value);
}

std::optional<int64_t> parse_scaled_int64(std::string_view text, int scale) noexcept {
  const auto v = parse_scaled_decimal(text, scale);
  if (!v || *v > std::numeric_limits<int64_t>::max() || *v < std::numeric_limits<int64_t>::min())
    return std::nullopt;
  return static_cast<int64_t>(*v);
}

}  // namespace billing

#include "no_postgres.h"
