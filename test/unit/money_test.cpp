// Unit tests for src/core/money.h: overflow-checked 128-bit arithmetic,
// exact decimal formatting and parsing of atto-dollar amounts.
#include "money.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "test_support.h"

namespace billing {
namespace {

using billing_test::i128;
using billing_test::i128_str;
using billing_test::kI128Max;
using billing_test::kI128Min;

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();

std::string fmt_atto(Atto v, int min_decimals = 0) {
  char buf[kAttoTextSize];
  std::memset(buf, 'X', sizeof buf);
  const std::size_t len = format_atto(v, buf, min_decimals);
  // The return value is the length and a NUL always follows.
  EXPECT_EQ(buf[len], '\0');
  EXPECT_EQ(std::strlen(buf), len);
  return std::string(buf, len);
}

std::string parsed(std::string_view text, int scale) {
  const auto v = parse_scaled_decimal(text, scale);
  return v ? i128_str(*v) : std::string("nullopt");
}

TEST(MoneyConstants, Scales) {
  EXPECT_EQ(kAttoScale, 18);
  EXPECT_EQ(kTokenPriceScale, 12);
  EXPECT_EQ(kUnitPriceScale, 12);
  EXPECT_EQ(kQuantityScale, 6);
  // A price per token = price per 1M tokens x 1e-6 dollars = x 1e12 atto-dollars,
  // and a quantity (1e-6) x a unit price (1e-12) is in 1e-18: both add to 18.
  EXPECT_EQ(kTokenPriceScale + 6, kAttoScale);
  EXPECT_EQ(kUnitPriceScale + kQuantityScale, kAttoScale);
  // sign + 39 digits + point + NUL = 42 <= 48
  EXPECT_GE(kAttoTextSize, 42u);
}

TEST(AddAtto, SmallValues) {
  Atto out = -7;
  ASSERT_TRUE(add_atto(1, 2, &out));
  EXPECT_EQ(i128_str(out), "3");  // 1 + 2 = 3
  ASSERT_TRUE(add_atto(-5, 3, &out));
  EXPECT_EQ(i128_str(out), "-2");  // -5 + 3 = -2
}

TEST(AddAtto, SeedCostsAdd) {
  // $0.00075 + $0.000045 = $0.000795
  // 750000000000000 + 45000000000000 = 795000000000000 atto-dollars
  Atto out = 0;
  ASSERT_TRUE(add_atto(750000000000000, 45000000000000, &out));
  EXPECT_EQ(i128_str(out), "795000000000000");
}

TEST(AddAtto, LimitsWithoutOverflow) {
  Atto out = 0;
  ASSERT_TRUE(add_atto(kI128Max, 0, &out));
  EXPECT_EQ(i128_str(out), "170141183460469231731687303715884105727");  // 2^127 - 1
  ASSERT_TRUE(add_atto(kI128Max, kI128Min, &out));
  EXPECT_EQ(i128_str(out), "-1");  // (2^127 - 1) + (-2^127) = -1
  ASSERT_TRUE(add_atto(kI128Min + 1, -1, &out));
  EXPECT_EQ(i128_str(out), "-170141183460469231731687303715884105728");  // -2^127
}

TEST(AddAtto, OverflowDetected) {
  Atto out = 0;
  EXPECT_FALSE(add_atto(kI128Max, 1, &out));   // 2^127 does not fit
  EXPECT_FALSE(add_atto(kI128Min, -1, &out));  // -2^127 - 1 does not fit
  EXPECT_FALSE(add_atto(kI128Max, kI128Max, &out));
  EXPECT_FALSE(add_atto(kI128Min, kI128Min, &out));
}

TEST(MulAtto, PriceTimesTokens) {
  // 100 prompt tokens x $2.50/1M = 100 x 2500000000000 atto = 250000000000000
  Atto out = 0;
  ASSERT_TRUE(mul_atto(2500000000000, 100, &out));
  EXPECT_EQ(i128_str(out), "250000000000000");
  // 50 completion tokens x $10/1M = 50 x 10000000000000 = 500000000000000
  ASSERT_TRUE(mul_atto(10000000000000, 50, &out));
  EXPECT_EQ(i128_str(out), "500000000000000");
  ASSERT_TRUE(mul_atto(-3, 7, &out));
  EXPECT_EQ(i128_str(out), "-21");  // -3 x 7
  ASSERT_TRUE(mul_atto(12345, 0, &out));
  EXPECT_EQ(i128_str(out), "0");
}

TEST(MulAtto, BigintLimits) {
  Atto out = 0;
  // 9223372036854775807 tokens x $1/1M (1e12 atto per token)
  // = 9223372036854775807 x 10^12 = 9223372036854775807000000000000
  ASSERT_TRUE(mul_atto(1000000000000, kI64Max, &out));
  EXPECT_EQ(i128_str(out), "9223372036854775807000000000000");
  // (2^63 - 1)^2 = 85070591730234615847396907784232501249
  ASSERT_TRUE(mul_atto(kI64Max, kI64Max, &out));
  EXPECT_EQ(i128_str(out), "85070591730234615847396907784232501249");
  // (2^63 - 1) x -2^63 = -85070591730234615856620279821087277056
  ASSERT_TRUE(mul_atto(kI64Max, kI64Min, &out));
  EXPECT_EQ(i128_str(out), "-85070591730234615856620279821087277056");
  // 10^19 x (2^63 - 1) = 92233720368547758070000000000000000000 < 2^127 (~1.7e38)
  ASSERT_TRUE(mul_atto(i128("10000000000000000000"), kI64Max, &out));
  EXPECT_EQ(i128_str(out), "92233720368547758070000000000000000000");
}

TEST(MulAtto, OverflowDetected) {
  Atto out = 0;
  EXPECT_FALSE(mul_atto(kI128Max, 2, &out));
  EXPECT_FALSE(mul_atto(kI128Min, -1, &out));  // 2^127 does not fit
  EXPECT_FALSE(mul_atto(kI128Min, 2, &out));
  // 2 x 10^19 x (2^63 - 1) = 1.84e38 > 2^127 - 1 = 1.70e38
  EXPECT_FALSE(mul_atto(i128("20000000000000000000"), kI64Max, &out));
  // 2^65 x 2^62 = 2^127: just too big; -2^65 x 2^62 = -2^127: just fits.
  // 2^65 = 36893488147419103232, 2^62 = 4611686018427387904
  EXPECT_FALSE(mul_atto(i128("36893488147419103232"), 4611686018427387904, &out));
  ASSERT_TRUE(mul_atto(i128("-36893488147419103232"), 4611686018427387904, &out));
  EXPECT_EQ(i128_str(out), "-170141183460469231731687303715884105728");
  // 2^64 x -2^63 = -2^127 (2^64 = 18446744073709551616)
  ASSERT_TRUE(mul_atto(i128("18446744073709551616"), kI64Min, &out));
  EXPECT_EQ(i128_str(out), "-170141183460469231731687303715884105728");
  ASSERT_TRUE(mul_atto(kI128Min, 1, &out));
  EXPECT_EQ(i128_str(out), "-170141183460469231731687303715884105728");
}

TEST(FormatAtto, Basics) {
  EXPECT_EQ(fmt_atto(0), "0");
  EXPECT_EQ(fmt_atto(750000000000000), "0.00075");          // 7.5e14 / 1e18 = 0.00075
  EXPECT_EQ(fmt_atto(i128("2000000000000000000")), "2");    // 2e18 / 1e18 = 2
  EXPECT_EQ(fmt_atto(-i128("1500000000000000000")), "-1.5");  // -1.5e18 / 1e18
  EXPECT_EQ(fmt_atto(1), "0.000000000000000001");           // 1e-18
  EXPECT_EQ(fmt_atto(-1), "-0.000000000000000001");
  EXPECT_EQ(fmt_atto(i128("1000000000000000000")), "1");
  EXPECT_EQ(fmt_atto(i128("10000000000000000000")), "10");  // 1e19 / 1e18
  EXPECT_EQ(fmt_atto(i128("2020000000000000000")), "2.02");
  EXPECT_EQ(fmt_atto(i128("123456789012345678901")), "123.456789012345678901");
}

TEST(FormatAtto, MinDecimals) {
  EXPECT_EQ(fmt_atto(i128("2000000000000000000"), 2), "2.00");
  EXPECT_EQ(fmt_atto(750000000000000000, 2), "0.75");  // 7.5e17 / 1e18
  EXPECT_EQ(fmt_atto(0, 2), "0.00");
  EXPECT_EQ(fmt_atto(750000000000000, 2), "0.00075");  // more decimals than the minimum are kept
  EXPECT_EQ(fmt_atto(i128("1234500000000000000000"), 2), "1234.50");  // 1234.5 dollars
  EXPECT_EQ(fmt_atto(-500000000000000000, 3), "-0.500");
  EXPECT_EQ(fmt_atto(i128("1000000000000000000"), 18), "1.000000000000000000");
  // Out-of-range minimums are clamped to [0, 18].
  EXPECT_EQ(fmt_atto(i128("1000000000000000000"), 50), "1.000000000000000000");
  EXPECT_EQ(fmt_atto(i128("1000000000000000000"), -3), "1");
}

TEST(FormatAtto, Int128Limits) {
  // (2^127 - 1) atto = 170141183460469231731.687303715884105727 dollars: 41 chars with sign
  EXPECT_EQ(fmt_atto(kI128Max), "170141183460469231731.687303715884105727");
  EXPECT_EQ(fmt_atto(kI128Min), "-170141183460469231731.687303715884105728");
  char buf[kAttoTextSize];
  EXPECT_EQ(format_atto(kI128Min, buf), 41u);  // 1 sign + 21 + 1 point + 18
  EXPECT_EQ(format_atto(kI128Min, buf, 18), 41u);
}

TEST(ParseScaledDecimal, Accepts) {
  EXPECT_EQ(parsed("12", 2), "1200");           // 12 x 10^2
  EXPECT_EQ(parsed("-0.5", 18), "-500000000000000000");  // -0.5 x 10^18
  EXPECT_EQ(parsed("3.140", 2), "314");         // trailing zero beyond the scale is fine
  EXPECT_EQ(parsed("+7", 0), "7");
  EXPECT_EQ(parsed("1.", 0), "1");
  EXPECT_EQ(parsed(".5", 1), "5");
  EXPECT_EQ(parsed("-0", 3), "0");
  EXPECT_EQ(parsed("0.00075", 18), "750000000000000");  // 0.00075 x 10^18
  EXPECT_EQ(parsed("2.5", 12), "2500000000000");        // $2.50/1M as atto per token
  EXPECT_EQ(parsed("0.000000000000000001", 18), "1");
  EXPECT_EQ(parsed("1.000000000000000000000000000000", 18), "1000000000000000000");
  EXPECT_EQ(parsed("0000000000000000000000000000000000000000000001", 0), "1");  // zeros do not overflow
}

TEST(ParseScaledDecimal, Rejects) {
  for (const char* bad : {"", "-", "+", ".", "-.", "1.2.3", "1e5", " 1", "1 ", "--1", "+-1", "1,5", "0x10",
                          "12a", "abc", "1-"}) {
    EXPECT_EQ(parsed(bad, 2), "nullopt") << '"' << bad << '"';
  }
  EXPECT_EQ(parsed("3.141", 2), "nullopt");  // a non-zero third decimal at scale 2
  EXPECT_EQ(parsed("0.5", 0), "nullopt");
  EXPECT_EQ(parsed("0.0000000000000000001", 18), "nullopt");  // 1e-19
}

TEST(ParseScaledDecimal, Int128Limits) {
  EXPECT_EQ(parsed("170141183460469231731.687303715884105727", 18), "170141183460469231731687303715884105727");
  EXPECT_EQ(parsed("170141183460469231731.687303715884105728", 18), "nullopt");  // 2^127
  EXPECT_EQ(parsed("-170141183460469231731.687303715884105727", 18), "-170141183460469231731687303715884105727");
  EXPECT_EQ(parsed("170141183460469231731687303715884105727", 0), "170141183460469231731687303715884105727");
  EXPECT_EQ(parsed("1701411834604692317316873037158841057270", 0), "nullopt");  // 10 x (2^127 - 1)
  // 1 x 10^38 fits, 1 x 10^39 does not (2^127 ~ 1.7e38), so the scale overflows.
  EXPECT_EQ(parsed("1", 38), "100000000000000000000000000000000000000");
  EXPECT_EQ(parsed("1", 39), "nullopt");
  EXPECT_EQ(parsed("0", 60), "0");
}

// -2^127, the most negative Atto, is what format_atto writes for INT128_MIN;
// it must parse back although its magnitude has no positive counterpart.
TEST(ParseScaledDecimal, MostNegativeValueRoundTrips) {
  EXPECT_EQ(parsed("-170141183460469231731.687303715884105728", 18), "-170141183460469231731687303715884105728");
  EXPECT_EQ(parsed("-170141183460469231731687303715884105728", 0), "-170141183460469231731687303715884105728");
  // -2^127 - 1 is out of range (2^127 itself: see Int128Limits).
  EXPECT_EQ(parsed("-170141183460469231731.687303715884105729", 18), "nullopt");
  EXPECT_EQ(parsed("-170141183460469231731687303715884105729", 0), "nullopt");
  // The same digits with the point elsewhere: -2^127 at scales 1 and 2.
  EXPECT_EQ(parsed("-17014118346046923173168730371588410572.8", 1), "-170141183460469231731687303715884105728");
  EXPECT_EQ(parsed("-1701411834604692317316873037158841057.28", 2), "-170141183460469231731687303715884105728");
  EXPECT_EQ(parsed("-1701411834604692317316873037158841057.29", 2), "nullopt");  // -2^127 - 1
  // Scaling up past it: -17014118346046923173168730371588410572.8 x 100 = -2^127 x 10.
  EXPECT_EQ(parsed("-17014118346046923173168730371588410572.8", 2), "nullopt");
  // -1.7e37 x 10 fits (-2^127 ~ -1.7e38): -17014118346046923173168730371588410572 x 10
  EXPECT_EQ(parsed("-17014118346046923173168730371588410572", 1), "-170141183460469231731687303715884105720");
}

TEST(FormatAndParse, RoundTrip) {
  for (const char* v : {"0", "1", "-1", "750000000000000", "2020000000000000000", "-123456789012345678901",
                        "170141183460469231731687303715884105727", "-170141183460469231731687303715884105727",
                        "-170141183460469231731687303715884105728"}) {
    const Atto a = i128(v);
    for (int min_dec : {0, 2, 18}) {
      const std::string text = fmt_atto(a, min_dec);
      EXPECT_EQ(parsed(text, kAttoScale), v) << text;
    }
  }
}

TEST(ParseScaledInt64, Limits) {
  EXPECT_EQ(parse_scaled_int64("9223372036854775807", 0), std::optional<int64_t>(kI64Max));
  EXPECT_EQ(parse_scaled_int64("9223372036854775808", 0), std::nullopt);  // 2^63
  EXPECT_EQ(parse_scaled_int64("-9223372036854775808", 0), std::optional<int64_t>(kI64Min));
  EXPECT_EQ(parse_scaled_int64("-9223372036854775809", 0), std::nullopt);
  // 9223372.036854775807 x 10^12 = 9223372036854775807 = INT64_MAX
  EXPECT_EQ(parse_scaled_int64("9223372.036854775807", 12), std::optional<int64_t>(kI64Max));
  EXPECT_EQ(parse_scaled_int64("9223372.036854775808", 12), std::nullopt);
  // $0.15/1M as atto per token: 0.15 x 10^12 = 150000000000
  EXPECT_EQ(parse_scaled_int64("0.15", kTokenPriceScale), std::optional<int64_t>(150000000000));
  // 1.5 units in micro-units: 1.5 x 10^6 = 1500000
  EXPECT_EQ(parse_scaled_int64("1.5", kQuantityScale), std::optional<int64_t>(1500000));
  EXPECT_EQ(parse_scaled_int64("1.5", 0), std::nullopt);
  EXPECT_EQ(parse_scaled_int64("", 0), std::nullopt);
}

}  // namespace
}  // namespace billing
