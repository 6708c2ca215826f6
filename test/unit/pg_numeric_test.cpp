// Unit tests for src/core/pg_numeric.h (and pg_varlena.h), on genuine numeric
// datums captured from PostgreSQL 15 (pg_fixtures.h) plus hand-built and
// mutated bytes.
#include "pg_numeric.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "pg_fixtures.h"
#include "pg_varlena.h"
#include "test_support.h"

namespace billing {

namespace {

using billing_test::Bytes;
using billing_test::from_hex;
using billing_test::with_4byte_header;
namespace hex = billing_test::numeric_hex;

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();

ScaledNumeric decode(const Bytes& b, int scale) { return decode_pg_numeric(b.data(), b.size(), scale); }

// Decodes the fixture both as captured (1-byte header, or 4-byte for the wide
// one) and re-headed with a 4-byte header (how a detoasted datum and a number
// inside jsonb look); both must agree.
ScaledNumeric decode_hex(const char* h, int scale) {
  const Bytes as_stored = from_hex(h);
  const ScaledNumeric a = decode(as_stored, scale);
  const ScaledNumeric b = decode(with_4byte_header(as_stored), scale);
  EXPECT_EQ(a.status, b.status) << h << " scale " << scale;
  EXPECT_EQ(a.value, b.value) << h << " scale " << scale;
  return a;
}

void expect_ok(const char* h, int scale, int64_t want) {
  const ScaledNumeric r = decode_hex(h, scale);
  EXPECT_EQ(r.status, NumericStatus::Ok) << h << " scale " << scale;
  EXPECT_EQ(r.value, want) << h << " scale " << scale;
}

void expect_status(const char* h, int scale, NumericStatus want) {
  const ScaledNumeric r = decode_hex(h, scale);
  EXPECT_EQ(r.status, want) << h << " scale " << scale;
  EXPECT_EQ(r.value, 0) << "a failed decode reports value 0";
}

TEST(PgVarlena, ShortHeader) {
  const Bytes b = from_hex(hex::one);  // 0x0b = 5 << 1 | 1: 1-byte header, total 5 bytes
  const VarlenaView v = read_varlena(b.data(), b.size());
  ASSERT_TRUE(v.ok);
  EXPECT_EQ(v.payload, b.data() + 1);
  EXPECT_EQ(v.payload_size, 4u);  // 5 - 1 header byte
}

TEST(PgVarlena, FourByteHeader) {
  const Bytes b = from_hex(hex::wide_4b_header);  // 0x00000290 >> 2 = 164 bytes
  ASSERT_EQ(b.size(), 164u);
  const VarlenaView v = read_varlena(b.data(), b.size());
  ASSERT_TRUE(v.ok);
  EXPECT_EQ(v.payload, b.data() + 4);
  EXPECT_EQ(v.payload_size, 160u);  // 164 - 4
}

TEST(PgVarlena, SizeLargerThanDatumIsFine) {
  Bytes b = from_hex(hex::one);
  b.push_back(0xEE);
  b.push_back(0xEE);
  const VarlenaView v = read_varlena(b.data(), b.size());
  ASSERT_TRUE(v.ok);
  EXPECT_EQ(v.payload_size, 4u);  // the header's length, not the buffer's
}

TEST(PgVarlena, Rejects) {
  const uint8_t toast_pointer[] = {0x01, 0x12, 0, 0, 0, 0, 0, 0};
  EXPECT_FALSE(read_varlena(toast_pointer, sizeof toast_pointer).ok);  // external TOAST pointer
  const uint8_t compressed[] = {0x22, 0x00, 0x00, 0x00, 1, 2, 3, 4};  // low bits 10: compressed inline
  EXPECT_FALSE(read_varlena(compressed, sizeof compressed).ok);
  const uint8_t four_short[] = {0x08, 0x00, 0x00};  // 4-byte header but only 3 bytes given
  EXPECT_FALSE(read_varlena(four_short, sizeof four_short).ok);
  const uint8_t four_too_small[] = {0x0C, 0x00, 0x00, 0x00};  // 0x0C >> 2 = 3 < 4: impossible total
  EXPECT_FALSE(read_varlena(four_too_small, sizeof four_too_small).ok);
  const uint8_t four_empty[] = {0x10, 0x00, 0x00, 0x00};  // total 4: an empty payload is fine
  EXPECT_TRUE(read_varlena(four_empty, sizeof four_empty).ok);
  EXPECT_EQ(read_varlena(four_empty, sizeof four_empty).payload_size, 0u);
  const uint8_t one_byte_empty[] = {0x03};  // 1 << 1 | 1: total 1, empty payload
  EXPECT_TRUE(read_varlena(one_byte_empty, 1).ok);
  EXPECT_EQ(read_varlena(one_byte_empty, 1).payload_size, 0u);
  const uint8_t one_byte_long[] = {0x0B, 0x00};  // says 5 bytes, 2 available
  EXPECT_FALSE(read_varlena(one_byte_long, sizeof one_byte_long).ok);
  EXPECT_FALSE(read_varlena(nullptr, 10).ok);
  EXPECT_FALSE(read_varlena(one_byte_empty, 0).ok);
}

TEST(PgNumeric, SmallIntegers) {
  expect_ok(hex::zero, 0, 0);
  expect_ok(hex::zero, 18, 0);
  expect_ok(hex::one, 0, 1);
  expect_ok(hex::one, 6, 1000000);                 // 1 x 10^6
  expect_ok(hex::one, 18, 1000000000000000000);    // 1 x 10^18
  expect_ok(hex::hundred, 0, 100);
  expect_ok(hex::hundred, 16, 1000000000000000000);  // 100 x 10^16 = 10^18
  expect_ok(hex::hundred_point_zero, 0, 100);        // dscale 1, same digits
  expect_ok(hex::ten_thousand, 0, 10000);            // digit 1 at weight 1: 1 x 10000^1
  expect_ok(hex::zero_scale2, 0, 0);
}

TEST(PgNumeric, Negative) {
  expect_ok(hex::minus_five, 0, -5);
  expect_ok(hex::minus_five, 18, -5000000000000000000);  // -5 x 10^18 > INT64_MIN (-9.22e18)
  expect_ok(hex::minus_0_5, 1, -5);                       // -0.5 x 10
  expect_status(hex::minus_0_5, 0, NumericStatus::TooPrecise);
  expect_status(hex::minus_five, 19, NumericStatus::Malformed);  // scale outside [0, 18]
}

TEST(PgNumeric, Fractions) {
  expect_status(hex::one_point_five, 0, NumericStatus::TooPrecise);
  expect_ok(hex::one_point_five, 1, 15);                   // 1 x 10 + 5000 / 1000
  expect_ok(hex::one_point_five, 18, 1500000000000000000);  // 1.5 x 10^18
  // 0.000001: one digit 100 at weight -2 (100 x 10000^-2 = 10^-6), dscale 6
  expect_ok(hex::one_millionth, 6, 1);
  expect_ok(hex::one_millionth, 18, 1000000000000);  // 10^-6 x 10^18 = 10^12
  expect_status(hex::one_millionth, 5, NumericStatus::TooPrecise);
  expect_status(hex::one_millionth, 0, NumericStatus::TooPrecise);
  // 12345.6789 = 1 | 2345 . 6789
  expect_ok(hex::twelve_thousand_345_6789, 4, 123456789);
  expect_status(hex::twelve_thousand_345_6789, 3, NumericStatus::TooPrecise);
  expect_status(hex::twelve_thousand_345_6789, 0, NumericStatus::TooPrecise);
}

TEST(PgNumeric, BigintLimits) {
  expect_ok(hex::int64_max, 0, kI64Max);  // 9223372036854775807
  expect_status(hex::int64_max, 1, NumericStatus::OutOfRange);
  expect_status(hex::int64_max_plus_1, 0, NumericStatus::OutOfRange);  // 9223372036854775808
  expect_ok(hex::int64_min, 0, kI64Min);                                // -9223372036854775808
  expect_status(hex::int64_min_minus_1, 0, NumericStatus::OutOfRange);
  expect_status(hex::one_e20, 0, NumericStatus::OutOfRange);  // 10^20 > 9.22e18
  expect_status(hex::hundred, 17, NumericStatus::OutOfRange);  // 100 x 10^17 = 10^19 > 9.22e18
  expect_status(hex::one, 19, NumericStatus::Malformed);      // not a supported scale
}

TEST(PgNumeric, SpecialValues) {
  for (int scale : {0, 6, 18}) {
    expect_status(hex::nan, scale, NumericStatus::NotANumber);
    expect_status(hex::infinity, scale, NumericStatus::Infinite);
    expect_status(hex::minus_infinity, scale, NumericStatus::Infinite);
  }
}

TEST(PgNumeric, LongFormat) {
  // numeric(100,70): dscale 70 > 63 forces NumericLong; digits 1|2345|6789.1234|5678|9000
  // at scale 9: 1e17 + 2345e13 + 6789e9 + 1234e5 + 5678e1 + 9000/1000
  //           = 123456789123456789
  expect_ok(hex::long_scale70, 9, 123456789123456789);
  expect_ok(hex::long_scale70, 10, 1234567891234567890);  // x 10 still < 9.22e18
  expect_status(hex::long_scale70, 11, NumericStatus::OutOfRange);  // 1.23e19
  expect_status(hex::long_scale70, 8, NumericStatus::TooPrecise);
  expect_ok(hex::long_neg_scale64, 1, -15);  // -1.5 x 10, long format, sign 0x4000
  expect_status(hex::long_neg_scale64, 0, NumericStatus::TooPrecise);
  expect_status(hex::long_weight_big, 0, NumericStatus::OutOfRange);    // 1e300, weight 75
  expect_status(hex::long_weight_small, 18, NumericStatus::TooPrecise);  // 1e-300, weight -75
  expect_status(hex::wide_4b_header, 0, NumericStatus::OutOfRange);      // 1e299 + 1e-10
}

TEST(PgNumeric, ScaleRange) {
  const Bytes one = from_hex(hex::one);
  EXPECT_EQ(decode(one, -1).status, NumericStatus::Malformed);
  EXPECT_EQ(decode(one, 19).status, NumericStatus::Malformed);
  EXPECT_EQ(decode(one, 18).status, NumericStatus::Ok);
}

// Hand-built datums: 1-byte varlena header = (total length << 1) | 1, then the
// numeric header (uint16) and, for the long format, the int16 weight, then
// base-10000 digits (int16), all little-endian.
TEST(PgNumericHandBuilt, DigitOutOfRange) {
  const Bytes ten_thousand_digit = {0x0B, 0x00, 0x80, 0x10, 0x27};  // total 5, digit 0x2710 = 10000
  EXPECT_EQ(decode(ten_thousand_digit, 0).status, NumericStatus::Malformed);
  const Bytes negative_digit = {0x0B, 0x00, 0x80, 0xFF, 0xFF};  // digit -1
  EXPECT_EQ(decode(negative_digit, 0).status, NumericStatus::Malformed);
  const Bytes max_digit = {0x0B, 0x00, 0x80, 0x0F, 0x27};  // digit 0x270F = 9999
  const ScaledNumeric r = decode(max_digit, 0);
  EXPECT_EQ(r.status, NumericStatus::Ok);
  EXPECT_EQ(r.value, 9999);
}

TEST(PgNumericHandBuilt, TooShortPayloads) {
  const Bytes empty = {0x03};  // total 1: no numeric header at all
  EXPECT_EQ(decode(empty, 0).status, NumericStatus::Malformed);
  const Bytes one_byte = {0x05, 0x00};  // total 2: half a numeric header
  EXPECT_EQ(decode(one_byte, 0).status, NumericStatus::Malformed);
  const Bytes half_digit = {0x09, 0x00, 0x80, 0x01};  // total 4: header + 1 byte of a digit
  EXPECT_EQ(decode(half_digit, 0).status, NumericStatus::Malformed);
  const Bytes long_no_weight = {0x07, 0x00, 0x00};  // total 3: long header 0x0000, no weight
  EXPECT_EQ(decode(long_no_weight, 0).status, NumericStatus::Malformed);
  const Bytes four_byte_empty = {0x10, 0x00, 0x00, 0x00};  // 4-byte header, total 4
  EXPECT_EQ(decode(four_byte_empty, 0).status, NumericStatus::Malformed);
  EXPECT_EQ(decode_pg_numeric(nullptr, 0, 0).status, NumericStatus::Malformed);
  EXPECT_EQ(decode_pg_numeric(nullptr, 100, 0).status, NumericStatus::Malformed);
}

TEST(PgNumericHandBuilt, LongFormatZeroAndExtremeWeights) {
  const Bytes zero_long = {0x0B, 0x00, 0x00, 0x00, 0x00};  // total 5: sign/dscale 0, weight 0, no digits
  ScaledNumeric r = decode(zero_long, 0);
  EXPECT_EQ(r.status, NumericStatus::Ok);
  EXPECT_EQ(r.value, 0);
  // weight 32767 (0x7FFF), digit 1: 10000^32767
  const Bytes huge = {0x0F, 0x00, 0x00, 0xFF, 0x7F, 0x01, 0x00};
  EXPECT_EQ(decode(huge, 0).status, NumericStatus::OutOfRange);
  EXPECT_EQ(decode(huge, 18).status, NumericStatus::OutOfRange);
  // weight -32768 (0x8000), digit 1: 10000^-32768
  const Bytes tiny = {0x0F, 0x00, 0x00, 0x00, 0x80, 0x01, 0x00};
  EXPECT_EQ(decode(tiny, 18).status, NumericStatus::TooPrecise);
  // short format, weight -64 (sign bit 0x40, bits 0): digit 1 x 10000^-64
  const Bytes short_tiny = {0x0B, 0x40, 0x80, 0x01, 0x00};
  EXPECT_EQ(decode(short_tiny, 18).status, NumericStatus::TooPrecise);
  // short format, weight 63: digit 1 x 10000^63
  const Bytes short_huge = {0x0B, 0x3F, 0x80, 0x01, 0x00};
  EXPECT_EQ(decode(short_huge, 0).status, NumericStatus::OutOfRange);
}

TEST(PgNumericHandBuilt, ZeroDigitsAreSkipped) {
  // 1 | 0 | 0 at weight 0 (trailing zero digits; PostgreSQL strips them): 1
  const Bytes trailing = {0x13, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00};  // total 9
  ScaledNumeric r = decode(trailing, 0);
  EXPECT_EQ(r.status, NumericStatus::Ok);
  EXPECT_EQ(r.value, 1);
  // 5 followed by five zero digits at weights -1..-5 (exponents -4..-20 at scale 0): 5
  const Bytes deep = {0x1F, 0x00, 0x80, 0x05, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};  // total 15
  r = decode(deep, 0);
  EXPECT_EQ(r.status, NumericStatus::Ok);
  EXPECT_EQ(r.value, 5);
}

TEST(PgNumericHandBuilt, SpecialValuesIgnoreTrailingBytes) {
  const Bytes nan8 = {0x20, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00};  // 4-byte header, total 8
  EXPECT_EQ(decode(nan8, 0).status, NumericStatus::NotANumber);
  const Bytes pinf = {0x07, 0x00, 0xD0};  // header 0xD000
  EXPECT_EQ(decode(pinf, 0).status, NumericStatus::Infinite);
  const Bytes ninf = {0x07, 0x00, 0xF0};  // header 0xF000
  EXPECT_EQ(decode(ninf, 0).status, NumericStatus::Infinite);
}

TEST(PgNumericHandBuilt, Int64MinThroughAFraction) {
  // -922337203685477580.8 at scale 1 = -9223372036854775808 = INT64_MIN.
  // Short header: 0x8000 | sign 0x2000 | dscale 1 << 7 (0x0080) | weight 4 = 0xA084.
  // Digits 92|2337|2036|8547|7580 . 8000 = 0x005C 0x0921 0x07F4 0x2163 0x1D9C 0x1F40.
  // Payload 2 + 6 x 2 = 14 bytes, total 15: header byte 15 << 1 | 1 = 0x1F.
  const Bytes min = {0x1F, 0x84, 0xA0, 0x5C, 0x00, 0x21, 0x09, 0xF4, 0x07, 0x63, 0x21, 0x9C, 0x1D, 0x40, 0x1F};
  ScaledNumeric r = decode(min, 1);
  EXPECT_EQ(r.status, NumericStatus::Ok);
  EXPECT_EQ(r.value, kI64Min);
  EXPECT_EQ(decode(min, 0).status, NumericStatus::TooPrecise);
  // Positive (header 0x8084): 9223372036854775808 = INT64_MAX + 1
  Bytes plus = min;
  plus[2] = 0x80;
  EXPECT_EQ(decode(plus, 1).status, NumericStatus::OutOfRange);
  // Last digit 9000 (0x2328): -9223372036854775809
  Bytes below = min;
  below[13] = 0x28;
  below[14] = 0x23;
  EXPECT_EQ(decode(below, 1).status, NumericStatus::OutOfRange);
  // Last digit 7000 (0x1B58): 9223372036854775807 = INT64_MAX when positive
  Bytes max = plus;
  max[13] = 0x58;
  max[14] = 0x1B;
  r = decode(max, 1);
  EXPECT_EQ(r.status, NumericStatus::Ok);
  EXPECT_EQ(r.value, kI64Max);
}

TEST(PgNumeric, ExtraBytesAfterTheDatumAreIgnored) {
  Bytes b = from_hex(hex::int64_max);
  b.insert(b.end(), {0xFF, 0xFF, 0xFF, 0xFF});
  const ScaledNumeric r = decode(b, 0);
  EXPECT_EQ(r.status, NumericStatus::Ok);
  EXPECT_EQ(r.value, kI64Max);
}


bool valid_result(const ScaledNumeric& r) {
  switch (r.status) {
    case NumericStatus::Ok: return true;
    case NumericStatus::NotANumber:
    case NumericStatus::Infinite:
    case NumericStatus::TooPrecise:
    case NumericStatus::OutOfRange:
    case NumericStatus::Malformed: return r.value == 0;
  }
  return false;
}

TEST(PgNumericMutation, EveryTruncationIsMalformed) {
  for (std::size_t f = 0; f < std::size(hex::kAll); ++f) {
    const char* h = hex::kAllNames[f];
    for (const Bytes& full : {from_hex(hex::kAll[f]), with_4byte_header(from_hex(hex::kAll[f]))}) {
      billing_test::for_each_truncation(full, [&](const uint8_t* p, std::size_t n) {
        for (int scale : {0, 9, 18}) {
          const ScaledNumeric r = decode_pg_numeric(p, n, scale);
          // The varlena header says how long the datum is; any prefix is short.
          EXPECT_EQ(r.status, NumericStatus::Malformed) << h << " truncated to " << n;
          EXPECT_EQ(r.value, 0);
        }
      });
    }
  }
}

TEST(PgNumericMutation, FlippedBytesNeverCrash) {
  std::size_t runs = 0;
  for (std::size_t f = 0; f < std::size(hex::kAll); ++f) {
    const char* h = hex::kAllNames[f];
    for (const Bytes& full : {from_hex(hex::kAll[f]), with_4byte_header(from_hex(hex::kAll[f]))}) {
      billing_test::for_each_byte_mutation(full, [&](const uint8_t* p, std::size_t n) {
        for (int scale : {0, 6, 18}) {
          const ScaledNumeric r = decode_pg_numeric(p, n, scale);
          EXPECT_TRUE(valid_result(r)) << h;
          ++runs;
        }
      });
    }
  }
  EXPECT_GT(runs, 10000u);
}

// ---------------------------------------------------------------------------
// decode_small_pg_integer: the inline common case. Whenever it answers, it
// answers what decode_pg_numeric(..., 0) does.

// True when decode_small_pg_integer takes the bytes; then checks its value.
bool small_agrees(const uint8_t* p, std::size_t n) {
  int64_t v = -1;
  if (!decode_small_pg_integer(p, n, &v)) return false;
  const ScaledNumeric r = decode_pg_numeric(p, n, 0);
  EXPECT_EQ(r.status, NumericStatus::Ok);
  EXPECT_EQ(r.value, v);
  EXPECT_GE(v, 0);
  EXPECT_LT(v, 10000000000000000);
  return true;
}

TEST(DecodeSmallPgInteger, FixturesBothHeaders) {
  for (std::size_t f = 0; f < std::size(hex::kAll); ++f) {
    SCOPED_TRACE(hex::kAllNames[f]);
    const Bytes stored = from_hex(hex::kAll[f]);
    const Bytes wide = with_4byte_header(stored);
    EXPECT_EQ(small_agrees(stored.data(), stored.size()), small_agrees(wide.data(), wide.size()));
  }
  // Taken: non-negative integers below 10^16, a scale of zeros too.
  for (const char* h : {hex::zero, hex::one, hex::hundred, hex::hundred_point_zero, hex::ten_thousand,
                        hex::zero_scale2}) {
    const Bytes b = from_hex(h);
    EXPECT_TRUE(small_agrees(b.data(), b.size())) << h;
  }
  // Left to decode_pg_numeric: fractions, negatives, NaN and infinities, the
  // long format, and what may not fit.
  for (const char* h : {hex::one_point_five, hex::minus_five, hex::minus_0_5, hex::int64_max, hex::one_e20,
                        hex::nan, hex::infinity, hex::long_weight_big, hex::twelve_thousand_345_6789}) {
    const Bytes b = from_hex(h);
    int64_t v = 0;
    EXPECT_FALSE(decode_small_pg_integer(b.data(), b.size(), &v)) << h;
  }
}

// A short-format numeric with a 4-byte header: `digits` (base 10000) at
// weight `weight`, built by hand.
Bytes short_numeric(int weight, const std::vector<uint16_t>& digits, bool negative = false) {
  const uint16_t header = static_cast<uint16_t>(0x8000 | (negative ? 0x2000 : 0) |
                                                (weight < 0 ? 0x0040 | ((weight + 64) & 0x3F) : weight));
  const uint32_t total = static_cast<uint32_t>(4 + 2 + 2 * digits.size()) << 2;
  Bytes out;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(total >> (8 * i)));
  out.push_back(static_cast<uint8_t>(header & 0xFF));
  out.push_back(static_cast<uint8_t>(header >> 8));
  for (uint16_t d : digits) {
    out.push_back(static_cast<uint8_t>(d & 0xFF));
    out.push_back(static_cast<uint8_t>(d >> 8));
  }
  return out;
}

TEST(DecodeSmallPgInteger, EveryWeightAndDigitCount) {
  for (int weight = -2; weight <= 5; ++weight) {
    for (std::size_t n = 0; n <= 6; ++n) {
      for (uint16_t d : {uint16_t{0}, uint16_t{1}, uint16_t{4321}, uint16_t{9999}, uint16_t{10000}, uint16_t{0x8000}}) {
        std::vector<uint16_t> digits(n, d);
        if (n > 0) digits[0] = 7;
        const Bytes b = short_numeric(weight, digits);
        const bool taken = small_agrees(b.data(), b.size());
        const bool bad_digit = n > 1 && d > 9999;
        const bool expected = weight >= 0 && weight <= 3 && n <= static_cast<std::size_t>(weight) + 1 && !bad_digit;
        EXPECT_EQ(taken, expected) << "weight " << weight << " digits " << n << " of " << d;
      }
    }
  }
  int64_t v = 0;
  const Bytes negative = short_numeric(0, {5}, true);
  EXPECT_FALSE(decode_small_pg_integer(negative.data(), negative.size(), &v));
  const Bytes largest = short_numeric(3, {9999, 9999, 9999, 9999});
  ASSERT_TRUE(decode_small_pg_integer(largest.data(), largest.size(), &v));
  EXPECT_EQ(v, 9999999999999999);
  const Bytes spread = short_numeric(3, {12});  // 12 x 10000^3
  ASSERT_TRUE(decode_small_pg_integer(spread.data(), spread.size(), &v));
  EXPECT_EQ(v, 12000000000000);
  const Bytes none = short_numeric(3, {});  // no digit: zero
  ASSERT_TRUE(decode_small_pg_integer(none.data(), none.size(), &v));
  EXPECT_EQ(v, 0);
}

TEST(DecodeSmallPgInteger, MutationsAgree) {
  std::size_t taken = 0;
  for (std::size_t f = 0; f < std::size(hex::kAll); ++f) {
    for (const Bytes& full : {from_hex(hex::kAll[f]), with_4byte_header(from_hex(hex::kAll[f]))}) {
      auto run = [&](const uint8_t* p, std::size_t n) { taken += small_agrees(p, n); };
      billing_test::for_each_truncation(full, run);
      billing_test::for_each_byte_mutation(full, run);
    }
  }
  EXPECT_GT(taken, 100u);
}

}  // namespace
}  // namespace billing
