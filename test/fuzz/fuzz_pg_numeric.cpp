// Fuzzes decode_pg_numeric() (src/core/pg_numeric.h) with arbitrary bytes and
// scales.
//
// Input: byte 0 is the scale (as int8_t, so out-of-range scales are tried
// too); the rest is handed over as the numeric datum, varlena header included.
//
// Checks, besides "no crash, no out-of-bounds read, no UB":
//  * a scale outside 0..18 gives Malformed;
//  * for every scale 0..18 the result agrees with an independent reference
//    decoder written below from numeric.c's format (status and value);
//  * the reference's decimal text parsed by parse_scaled_int64() gives the
//    same value (a cross-check of the two core parsers);
//  * scaling: Ok at scale s means scale s+1 gives 10x the value or
//    OutOfRange, and scale s-1 gives value/10 or TooPrecise.
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "money.h"
#include "pg_numeric.h"

using billing::Atto;
using billing::NumericStatus;
using billing::ScaledNumeric;

namespace {

const char* status_name(NumericStatus s) {
  switch (s) {
    case NumericStatus::Ok: return "Ok";
    case NumericStatus::NotANumber: return "NotANumber";
    case NumericStatus::Infinite: return "Infinite";
    case NumericStatus::TooPrecise: return "TooPrecise";
    case NumericStatus::OutOfRange: return "OutOfRange";
    case NumericStatus::Malformed: return "Malformed";
  }
  return "?";
}

// What the reference decoder makes of the bytes, independent of the scale.
struct Parsed {
  enum Kind { Malformed, NaN, Inf, BadSpecial, BadDigit, Finite } kind = Malformed;
  bool negative = false;
  int weight = 0;
  std::vector<int> digits;  // base 10000, most significant first
};

Parsed reference_parse(const uint8_t* data, std::size_t size) {
  Parsed r;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  // Varlena header (postgres.h): 1-byte if the low bit is set (0x01 alone is a
  // TOAST pointer), else 4-byte uncompressed if the low two bits are 00.
  if (size < 1) return r;
  std::size_t total, hdr;
  if (data[0] & 1) {
    if (data[0] == 1) return r;
    total = data[0] >> 1;
    hdr = 1;
  } else {
    if ((data[0] & 3) != 0 || size < 4) return r;
    total = (static_cast<std::size_t>(data[0]) | static_cast<std::size_t>(data[1]) << 8 |
             static_cast<std::size_t>(data[2]) << 16 | static_cast<std::size_t>(data[3]) << 24) >> 2;
    hdr = 4;
  }
  if (total < hdr || total > size) return r;
  const uint8_t* p = data + hdr;
  std::size_t n = total - hdr;
  auto u16 = [](const uint8_t* q) { return static_cast<uint16_t>(q[0] | q[1] << 8); };
  if (n < 2) return r;
  const uint16_t header = u16(p);
  p += 2;
  n -= 2;
  switch (header & 0xC000) {
    case 0xC000:  // special: NaN 0xC000, +Inf 0xD000, -Inf 0xF000
      r.kind = header == 0xC000 ? Parsed::NaN : (header == 0xD000 || header == 0xF000) ? Parsed::Inf : Parsed::BadSpecial;
      return r;
    case 0x8000:  // short: sign 0x2000, dscale 0x1F80, weight sign 0x0040, weight 0x003F
      r.negative = (header & 0x2000) != 0;
      r.weight = (header & 0x0040) ? -64 + (header & 0x003F) : (header & 0x003F);
      break;
    default:  // long: sign 0x4000 | dscale, then int16 weight
      r.negative = (header & 0x4000) != 0;
      if (n < 2) return r;
      r.weight = static_cast<int16_t>(u16(p));
      p += 2;
      n -= 2;
      break;
  }
  if (n % 2 != 0) return r;
  r.kind = Parsed::Finite;
  for (std::size_t i = 0; i < n; i += 2) {
    const int d = static_cast<int16_t>(u16(p + i));
    if (d < 0 || d > 9999) r.kind = Parsed::BadDigit;
    r.digits.push_back(d);
  }
#else
  (void)data;
  (void)size;
#endif
  return r;
}

// The exact value of a finite numeric as decimal text ("-123.0045"), when its
// nonzero digits lie within 10^-24 .. 10^27; otherwise nullopt, with `huge` /
// `tiny` telling which end is out of that window.
std::optional<std::string> reference_text(const Parsed& p, bool* huge, bool* tiny) {
  *huge = *tiny = false;
  // Base-10000 exponent of digit i is weight - i.
  long hi = std::numeric_limits<long>::min(), lo = std::numeric_limits<long>::max();
  for (std::size_t i = 0; i < p.digits.size(); ++i) {
    if (p.digits[i] == 0) continue;
    const long e = static_cast<long>(p.weight) - static_cast<long>(i);
    if (e > hi) hi = e;
    if (e < lo) lo = e;
  }
  if (hi == std::numeric_limits<long>::min()) return std::string(p.negative ? "-0" : "0");  // all zero
  if (hi > 6) *huge = true;
  if (lo < -6) *tiny = true;
  if (*huge || *tiny) return std::nullopt;
  auto group = [&](long e) {
    const long i = static_cast<long>(p.weight) - e;
    return (i >= 0 && i < static_cast<long>(p.digits.size())) ? p.digits[static_cast<std::size_t>(i)] : 0;
  };
  std::string s = p.negative ? "-" : "";
  char g[8];
  for (long e = hi > 0 ? hi : 0; e >= 0; --e) {
    std::snprintf(g, sizeof g, "%04d", group(e));
    s += g;
  }
  if (lo < 0) {
    s += '.';
    for (long e = -1; e >= lo; --e) {
      std::snprintf(g, sizeof g, "%04d", group(e));
      s += g;
    }
  }
  return s;
}

// Expected result at `scale` for a Finite parse with valid digits.
void check_finite(const Parsed& p, const std::optional<std::string>& text, bool huge, bool tiny, int scale,
                  const ScaledNumeric& got) {
  char b1[48];
  if (text) {
    // Split into integer digits and decimals; anything nonzero beyond `scale`
    // decimals is too precise; the rest must fit in int64.
    const std::string& t = *text;
    const std::size_t start = p.negative ? 1 : 0;
    const std::size_t point = t.find('.');
    const std::string ip = t.substr(start, point == std::string::npos ? std::string::npos : point - start);
    const std::string fp = point == std::string::npos ? "" : t.substr(point + 1);
    bool too_precise = false;
    for (std::size_t i = static_cast<std::size_t>(scale); i < fp.size(); ++i)
      if (fp[i] != '0') too_precise = true;
    Atto mag = 0;
    bool out_of_range = false;
    const Atto limit = static_cast<Atto>(std::numeric_limits<int64_t>::max()) + (p.negative ? 1 : 0);
    for (int i = 0; i < static_cast<int>(ip.size()) + scale && !out_of_range; ++i) {
      const char c = i < static_cast<int>(ip.size()) ? ip[static_cast<std::size_t>(i)]
                     : static_cast<std::size_t>(i) - ip.size() < fp.size() ? fp[static_cast<std::size_t>(i) - ip.size()]
                                                                             : '0';
      mag = mag * 10 + (c - '0');
      if (mag > limit) out_of_range = true;
    }
    // parse_scaled_int64 must agree on the decimal text.
    const std::optional<int64_t> parsed = billing::parse_scaled_int64(t, scale);
    if (!too_precise && !out_of_range) {
      const int64_t want = static_cast<int64_t>(p.negative ? -mag : mag);
      FUZZ_CHECK(got.status == NumericStatus::Ok && got.value == want,
                 "scale %d, value %s: want Ok %lld, got %s %lld", scale, t.c_str(), static_cast<long long>(want),
                 status_name(got.status), static_cast<long long>(got.value));
      FUZZ_CHECK(parsed && *parsed == want, "parse_scaled_int64(\"%s\", %d) = %s, want %lld", t.c_str(), scale,
                 parsed ? fuzz::i128(*parsed, b1) : "nullopt", static_cast<long long>(want));
    } else {
      FUZZ_CHECK(!parsed, "parse_scaled_int64(\"%s\", %d) = %lld, want nullopt", t.c_str(), scale,
                 static_cast<long long>(*parsed));
      if (too_precise && !out_of_range)
        FUZZ_CHECK(got.status == NumericStatus::TooPrecise, "scale %d, value %s: want TooPrecise, got %s", scale,
                   t.c_str(), status_name(got.status));
      else if (out_of_range && !too_precise)
        FUZZ_CHECK(got.status == NumericStatus::OutOfRange, "scale %d, value %s: want OutOfRange, got %s", scale,
                   t.c_str(), status_name(got.status));
      else
        FUZZ_CHECK(got.status == NumericStatus::OutOfRange || got.status == NumericStatus::TooPrecise,
                   "scale %d, value %s: want OutOfRange or TooPrecise, got %s", scale, t.c_str(),
                   status_name(got.status));
    }
  } else {
    // Nonzero digits beyond 10^27 never fit; below 10^-24 never fit a scale <= 18.
    FUZZ_CHECK(got.status != NumericStatus::Ok, "huge=%d tiny=%d but Ok %lld at scale %d", huge, tiny,
               static_cast<long long>(got.value), scale);
    if (huge && !tiny)
      FUZZ_CHECK(got.status == NumericStatus::OutOfRange || got.status == NumericStatus::TooPrecise,
                 "huge value at scale %d: got %s", scale, status_name(got.status));
    if (tiny && !huge)
      FUZZ_CHECK(got.status == NumericStatus::TooPrecise || got.status == NumericStatus::OutOfRange,
                 "tiny value at scale %d: got %s", scale, status_name(got.status));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const int own_scale = static_cast<int8_t>(data[0]);
  const uint8_t* num = data + 1;
  const std::size_t num_size = size - 1;

  // An arbitrary scale: anything outside 0..18 is rejected up front.
  const ScaledNumeric any = billing::decode_pg_numeric(num, num_size, own_scale);
  if (own_scale < 0 || own_scale > 18)
    FUZZ_CHECK(any.status == NumericStatus::Malformed, "scale %d gave %s", own_scale, status_name(any.status));

  // Also a null pointer must be refused, not read.
  FUZZ_CHECK(billing::decode_pg_numeric(nullptr, num_size, 0).status == NumericStatus::Malformed, "null data");

  ScaledNumeric at[19];
  for (int s = 0; s <= 18; ++s) at[s] = billing::decode_pg_numeric(num, num_size, s);

  // The inline common case answers only what the general decoder answers.
  int64_t small = -1;
  if (billing::decode_small_pg_integer(num, num_size, &small))
    FUZZ_CHECK(at[0].status == NumericStatus::Ok && at[0].value == small && small >= 0 &&
                   small < 10000000000000000,
               "decode_small_pg_integer %lld, decode_pg_numeric %s %lld", static_cast<long long>(small),
               status_name(at[0].status), static_cast<long long>(at[0].value));
  if (own_scale >= 0 && own_scale <= 18)
    FUZZ_CHECK(any.status == at[own_scale].status && (any.status != NumericStatus::Ok || any.value == at[own_scale].value),
               "same input, same scale, different result");

  // Reference decoder.
  const Parsed p = reference_parse(num, num_size);
  bool huge = false, tiny = false;
  std::optional<std::string> text;
  if (p.kind == Parsed::Finite) text = reference_text(p, &huge, &tiny);
  for (int s = 0; s <= 18; ++s) {
    const ScaledNumeric& got = at[s];
    switch (p.kind) {
      case Parsed::Malformed:
        FUZZ_CHECK(got.status == NumericStatus::Malformed, "not a numeric datum, got %s at scale %d",
                   status_name(got.status), s);
        break;
      case Parsed::NaN:
        FUZZ_CHECK(got.status == NumericStatus::NotANumber, "NaN, got %s", status_name(got.status));
        break;
      case Parsed::Inf:
        FUZZ_CHECK(got.status == NumericStatus::Infinite, "Infinity, got %s", status_name(got.status));
        break;
      case Parsed::BadSpecial:  // a special header PostgreSQL never writes
      case Parsed::BadDigit:    // a base-10000 digit outside 0..9999
        FUZZ_CHECK(got.status != NumericStatus::Ok, "invalid numeric accepted as %lld at scale %d",
                   static_cast<long long>(got.value), s);
        break;
      case Parsed::Finite:
        check_finite(p, text, huge, tiny, s, got);
        break;
    }
  }

  // Scaling relations between neighbouring scales.
  for (int s = 0; s < 18; ++s) {
    if (at[s].status != NumericStatus::Ok) continue;
    int64_t ten;
    if (__builtin_mul_overflow(at[s].value, int64_t{10}, &ten))
      FUZZ_CHECK(at[s + 1].status == NumericStatus::OutOfRange, "scale %d Ok %lld, scale %d gave %s", s,
                 static_cast<long long>(at[s].value), s + 1, status_name(at[s + 1].status));
    else
      FUZZ_CHECK(at[s + 1].status == NumericStatus::Ok && at[s + 1].value == ten,
                 "scale %d Ok %lld, scale %d gave %s %lld", s, static_cast<long long>(at[s].value), s + 1,
                 status_name(at[s + 1].status), static_cast<long long>(at[s + 1].value));
  }
  for (int s = 1; s <= 18; ++s) {
    if (at[s].status != NumericStatus::Ok) continue;
    if (at[s].value % 10 == 0)
      FUZZ_CHECK(at[s - 1].status == NumericStatus::Ok && at[s - 1].value == at[s].value / 10,
                 "scale %d Ok %lld, scale %d gave %s %lld", s, static_cast<long long>(at[s].value), s - 1,
                 status_name(at[s - 1].status), static_cast<long long>(at[s - 1].value));
    else
      FUZZ_CHECK(at[s - 1].status == NumericStatus::TooPrecise, "scale %d Ok %lld, scale %d gave %s", s,
                 static_cast<long long>(at[s].value), s - 1, status_name(at[s - 1].status));
  }
  return 0;
}
