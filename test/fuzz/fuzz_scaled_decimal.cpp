// Fuzzes the exact decimal text of money (src/core/money.h):
// parse_scaled_decimal, parse_scaled_int64 and format_atto.
//
// Input, used two ways:
//  * the whole input as text for parse_scaled_decimal at scales 0..18;
//  * when at least 16 bytes long, its first 16 bytes as an atto-dollar amount
//    (native __int128) and byte 16, if any, as format_atto's min_decimals.
//
// Checks, besides "no crash, no out-of-bounds read, no UB":
//  * text -> value: a value parsed at scale 18 formats with format_atto into
//    text that parses back to the same value, and that text is canonical
//    (formatting the reparsed value gives it again);
//  * value -> text: format_atto's output is a plain decimal with at least
//    min_decimals (clamped to 0..18) and no other trailing zeros, fits its
//    buffer, and parses back at scale 18 to the same value;
//  * scales agree: text parsed at scale s < 18 is the scale-18 value divided
//    by 10^(18-s) (nullopt exactly when that is not whole or does not fit);
//  * parse_scaled_int64 is parse_scaled_decimal restricted to int64.
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>

#include "fuzz_check.h"
#include "money.h"

using billing::Atto;

namespace {

constexpr Atto pow10(int k) {
  Atto p = 1;
  for (int i = 0; i < k; ++i) p *= 10;
  return p;
}

// format_atto's output: [-]digits[.digits], at least `min_decimals` decimals,
// no trailing zero beyond those, no leading zeros before the point.
void check_shape(const char* s, std::size_t n, int min_decimals) {
  const int want_min = min_decimals < 0 ? 0 : min_decimals > 18 ? 18 : min_decimals;
  std::size_t i = 0;
  if (i < n && s[i] == '-') ++i;
  const std::size_t int_start = i;
  while (i < n && s[i] >= '0' && s[i] <= '9') ++i;
  FUZZ_CHECK(i > int_start, "no integer digits in \"%s\"", s);
  FUZZ_CHECK(s[int_start] != '0' || i == int_start + 1, "leading zero in \"%s\"", s);
  int decimals = 0;
  if (i < n && s[i] == '.') {
    ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9') ++i, ++decimals;
    FUZZ_CHECK(decimals > 0, "point without decimals in \"%s\"", s);
    FUZZ_CHECK(decimals <= want_min || s[n - 1] != '0', "trailing zero in \"%s\" (min_decimals %d)", s, min_decimals);
  }
  FUZZ_CHECK(i == n, "stray byte in \"%s\"", s);
  FUZZ_CHECK(decimals >= want_min && decimals <= 18, "%d decimals in \"%s\" (min_decimals %d)", decimals, s,
             min_decimals);
}

void round_trip(Atto v, int min_decimals) {
  char b1[48], b2[48];
  char text[billing::kAttoTextSize];
  std::memset(text, 0x7F, sizeof text);
  const std::size_t n = billing::format_atto(v, text, min_decimals);
  FUZZ_CHECK(n < sizeof text && text[n] == '\0' && std::strlen(text) == n, "format_atto(%s) wrote %zu bytes",
             fuzz::i128(v, b1), n);
  check_shape(text, n, min_decimals);
  const std::optional<Atto> back = billing::parse_scaled_decimal(std::string_view(text, n), billing::kAttoScale);
  FUZZ_CHECK(back && *back == v, "format_atto(%s) = \"%s\" parses back as %s", fuzz::i128(v, b1), text,
             back ? fuzz::i128(*back, b2) : "nullopt");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  char b1[48], b2[48];
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  std::optional<Atto> at[19];
  for (int s = 0; s <= 18; ++s) at[s] = billing::parse_scaled_decimal(text, s);
  const std::optional<Atto>& v18 = at[18];

  if (v18) {
    round_trip(*v18, 0);
    round_trip(*v18, 2);
    // Canonical: format(parse(format(v))) == format(v).
    char t1[billing::kAttoTextSize], t2[billing::kAttoTextSize];
    const std::size_t n1 = billing::format_atto(*v18, t1);
    const auto again = billing::parse_scaled_decimal(std::string_view(t1, n1), 18);
    const std::size_t n2 = again ? billing::format_atto(*again, t2) : 0;
    FUZZ_CHECK(again && n1 == n2 && std::memcmp(t1, t2, n1) == 0, "format_atto is not canonical for \"%s\"", t1);
  }

  for (int s = 0; s < 18; ++s) {
    const Atto scale = pow10(18 - s);
    if (at[s]) {
      Atto up;
      if (__builtin_mul_overflow(*at[s], scale, &up))
        FUZZ_CHECK(!v18, "scale %d gives %s, too big for scale 18, which gives %s", s, fuzz::i128(*at[s], b1),
                   fuzz::i128(*v18, b2));
      else
        FUZZ_CHECK(v18 && *v18 == up, "scale %d gives %s, scale 18 gives %s", s, fuzz::i128(*at[s], b1),
                   v18 ? fuzz::i128(*v18, b2) : "nullopt");
    } else if (v18) {
      FUZZ_CHECK(*v18 % scale != 0, "\"%.*s\" gives %s at scale 18 but nullopt at scale %d",
                 static_cast<int>(size < 80 ? size : 80), text.data(), fuzz::i128(*v18, b1), s);
    }
  }

  for (int s : {0, 6, 12, 18}) {
    const std::optional<int64_t> i = billing::parse_scaled_int64(text, s);
    const bool fits = at[s] && *at[s] >= std::numeric_limits<int64_t>::min() &&
                      *at[s] <= std::numeric_limits<int64_t>::max();
    FUZZ_CHECK(i.has_value() == fits && (!i || *i == *at[s]), "parse_scaled_int64 disagrees at scale %d", s);
  }

  if (size >= 16) {
    Atto v;
    std::memcpy(&v, data, sizeof v);
    const int min_decimals = size > 16 ? static_cast<int8_t>(data[16]) : 0;
    round_trip(v, min_decimals);
  }
  return 0;
}
