// Unit tests for src/core/cost_state.h: the 64-byte aggregate state, its
// arithmetic, the first-unpriced-name bookkeeping (UTF-8 safe truncation) and
// its text form.
#include "cost_state.h"

#include <gtest/gtest.h>

#include <cstddef>
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

std::string text_of(const CostState& s) {
  char buf[kCostStateTextSize];
  std::memset(buf, 'X', sizeof buf);
  const std::size_t len = format_cost_state(s, buf);
  EXPECT_LT(len, kCostStateTextSize);
  EXPECT_EQ(buf[len], '\0');
  return std::string(buf, len);
}

bool same(const CostState& a, const CostState& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

CostState state(Atto cost, int64_t priced, int64_t unpriced, int64_t units, UnpricedReason why,
                std::string_view name) {
  CostState s = empty_cost_state();
  s.set_cost(cost);
  s.priced_rows = priced;
  s.unpriced_rows = unpriced;
  s.unpriced_units = units;
  s.first_reason = static_cast<uint8_t>(why);
  std::memcpy(s.first_name, name.data(), name.size());
  return s;
}

TEST(CostStateLayout, SixtyFourBytes) {
  // The SQL type is declared INTERNALLENGTH = 64: the layout is on-disk.
  EXPECT_EQ(sizeof(CostState), 64u);
  EXPECT_EQ(offsetof(CostState, cost_lo), 0u);
  EXPECT_EQ(offsetof(CostState, cost_hi), 8u);
  EXPECT_EQ(offsetof(CostState, priced_rows), 16u);
  EXPECT_EQ(offsetof(CostState, unpriced_rows), 24u);
  EXPECT_EQ(offsetof(CostState, unpriced_units), 32u);
  EXPECT_EQ(offsetof(CostState, first_reason), 40u);
  EXPECT_EQ(offsetof(CostState, first_name), 41u);
  EXPECT_EQ(CostState::kNameSize, 23u);  // 41 + 23 = 64
}

TEST(CostState, EmptyIsAllZero) {
  const CostState s = empty_cost_state();
  const unsigned char zero[64] = {};
  EXPECT_EQ(std::memcmp(&s, zero, 64), 0);
  EXPECT_EQ(i128_str(s.cost()), "0");
  EXPECT_EQ(s.first_unpriced_name(), "");
}

TEST(CostState, CostHalves) {
  CostState s = empty_cost_state();
  s.set_cost(750000000000000);  // fits in the low word
  EXPECT_EQ(s.cost_lo, 750000000000000u);
  EXPECT_EQ(s.cost_hi, 0);
  s.set_cost(-1);  // two's complement over (hi, lo)
  EXPECT_EQ(s.cost_lo, ~uint64_t{0});
  EXPECT_EQ(s.cost_hi, -1);
  EXPECT_EQ(i128_str(s.cost()), "-1");
  s.set_cost(i128("18446744073709551616"));  // 2^64
  EXPECT_EQ(s.cost_lo, 0u);
  EXPECT_EQ(s.cost_hi, 1);
  s.set_cost(i128("-18446744073709551616"));  // -2^64
  EXPECT_EQ(s.cost_lo, 0u);
  EXPECT_EQ(s.cost_hi, -1);
  s.set_cost(kI128Max);
  EXPECT_EQ(s.cost_lo, ~uint64_t{0});
  EXPECT_EQ(s.cost_hi, kI64Max);
  EXPECT_EQ(i128_str(s.cost()), "170141183460469231731687303715884105727");
  s.set_cost(kI128Min);
  EXPECT_EQ(s.cost_lo, 0u);
  EXPECT_EQ(s.cost_hi, kI64Min);
  EXPECT_EQ(i128_str(s.cost()), "-170141183460469231731687303715884105728");
}

TEST(AddPriced, SumsCostsAndCountsRows) {
  CostState s = empty_cost_state();
  ASSERT_TRUE(add_priced(s, 750000000000000));  // $0.00075
  ASSERT_TRUE(add_priced(s, 45000000000000));   // $0.000045
  EXPECT_EQ(i128_str(s.cost()), "795000000000000");  // 750000000000000 + 45000000000000
  EXPECT_EQ(s.priced_rows, 2);
  EXPECT_EQ(s.unpriced_rows, 0);
  ASSERT_TRUE(add_priced(s, 0));
  EXPECT_EQ(s.priced_rows, 3);  // a free row is still a priced row
}

TEST(AddPriced, CarriesIntoTheHighWord) {
  CostState s = empty_cost_state();
  ASSERT_TRUE(add_priced(s, i128("18446744073709551615")));  // 2^64 - 1
  ASSERT_TRUE(add_priced(s, 1));
  EXPECT_EQ(s.cost_lo, 0u);
  EXPECT_EQ(s.cost_hi, 1);
  EXPECT_EQ(i128_str(s.cost()), "18446744073709551616");  // 2^64
}

TEST(AddPriced, CostOverflow) {
  CostState s = empty_cost_state();
  ASSERT_TRUE(add_priced(s, kI128Max));
  EXPECT_FALSE(add_priced(s, 1));
}

TEST(AddPriced, RowCountOverflow) {
  CostState s = empty_cost_state();
  s.priced_rows = kI64Max;
  EXPECT_FALSE(add_priced(s, 1));
}

TEST(AddUnpriced, FirstReasonAndNameAreKept) {
  CostState s = empty_cost_state();
  add_unpriced(s, UnpricedReason::UnknownModel, "claude-3-opus", 150);
  add_unpriced(s, UnpricedReason::NoPriceAtTime, "gpt-4o", 50);
  add_unpriced(s, UnpricedReason::NoModel, "", 7);
  EXPECT_EQ(s.unpriced_rows, 3);
  EXPECT_EQ(s.unpriced_units, 207);  // 150 + 50 + 7
  EXPECT_EQ(s.first_reason, static_cast<uint8_t>(UnpricedReason::UnknownModel));
  EXPECT_EQ(s.first_unpriced_name(), "claude-3-opus");
  EXPECT_EQ(s.priced_rows, 0);
  EXPECT_EQ(i128_str(s.cost()), "0");
}

TEST(AddUnpriced, NameIsNulPadded) {
  CostState s = empty_cost_state();
  std::memset(s.first_name, 'Z', sizeof s.first_name);
  add_unpriced(s, UnpricedReason::UnknownModel, "abc", 1);
  EXPECT_EQ(s.first_unpriced_name(), "abc");
  for (std::size_t i = 3; i < CostState::kNameSize; ++i) EXPECT_EQ(s.first_name[i], '\0') << i;
}

TEST(AddUnpriced, CountersSaturate) {
  CostState s = empty_cost_state();
  s.unpriced_rows = kI64Max;
  s.unpriced_units = kI64Max - 10;
  add_unpriced(s, UnpricedReason::NoSplit, "", 9223372036854775807);  // 2^63 - 1 tokens
  EXPECT_EQ(s.unpriced_rows, kI64Max);
  EXPECT_EQ(s.unpriced_units, kI64Max);
  s.unpriced_units = kI64Max - 10;
  add_unpriced(s, UnpricedReason::NoSplit, "", 10);  // exactly reaches INT64_MAX
  EXPECT_EQ(s.unpriced_units, kI64Max);
}

std::string first_name_after(std::string_view name) {
  CostState s = empty_cost_state();
  add_unpriced(s, UnpricedReason::UnknownModel, name, 1);
  return std::string(s.first_unpriced_name());
}

TEST(AddUnpriced, LongAsciiNamesAreTruncatedTo23Bytes) {
  EXPECT_EQ(first_name_after(std::string(23, 'a')), std::string(23, 'a'));  // fits with no NUL
  EXPECT_EQ(first_name_after(std::string(24, 'a')), std::string(23, 'a'));
  EXPECT_EQ(first_name_after("gpt-4o-mini-2024-07-18-extra"), "gpt-4o-mini-2024-07-18-");  // 28 -> 23
}

TEST(AddUnpriced, Utf8IsNotCutInHalf) {
  const std::string euro = "\xE2\x82\xAC";        // 3 bytes
  const std::string grin = "\xF0\x9F\x98\x80";    // 4 bytes
  const std::string e_acute = "\xC3\xA9";         // 2 bytes
  // 22 ASCII + "€" = 25 bytes: byte 23 is a continuation byte, back off to 22.
  EXPECT_EQ(first_name_after(std::string(22, 'a') + euro), std::string(22, 'a'));
  // 21 + "€" = 24 bytes: bytes 22..23 of the euro would be cut: 21.
  EXPECT_EQ(first_name_after(std::string(21, 'a') + euro), std::string(21, 'a'));
  // 20 + "€" = 23 bytes: fits exactly.
  EXPECT_EQ(first_name_after(std::string(20, 'a') + euro), std::string(20, 'a') + euro);
  // 20 + "€" + "b" = 24 bytes: the cut falls after the euro.
  EXPECT_EQ(first_name_after(std::string(20, 'a') + euro + "b"), std::string(20, 'a') + euro);
  // 20 + 4-byte emoji = 24 bytes: 20.
  EXPECT_EQ(first_name_after(std::string(20, 'a') + grin), std::string(20, 'a'));
  // 19 + emoji = 23 bytes: fits.
  EXPECT_EQ(first_name_after(std::string(19, 'a') + grin), std::string(19, 'a') + grin);
  // 12 x "é" = 24 bytes: 11 whole characters = 22 bytes.
  std::string twelve, eleven;
  for (int i = 0; i < 12; ++i) twelve += e_acute;
  for (int i = 0; i < 11; ++i) eleven += e_acute;
  EXPECT_EQ(first_name_after(twelve), eleven);
  // Every position of a 4-byte character around the cut.
  for (std::size_t prefix = 15; prefix <= 24; ++prefix) {
    const std::string name = std::string(prefix, 'x') + grin + "tail";
    const std::string got = first_name_after(name);
    // Whole characters only: either the emoji fits entirely in 23 bytes or it is dropped.
    const std::string want = prefix + 4 <= 23 ? name.substr(0, 23) : std::string(prefix < 23 ? prefix : 23, 'x');
    EXPECT_EQ(got, want) << prefix;
  }
}

TEST(AddUnpriced, InvalidUtf8OfContinuationBytesOnly) {
  // Nothing but continuation bytes: backing off finds no lead byte, the name is empty.
  EXPECT_EQ(first_name_after(std::string(30, '\x80')), "");
}

TEST(Combine, AddsEverything) {
  CostState a = state(750000000000000, 1, 2, 300, UnpricedReason::None, "");
  const CostState b = state(45000000000000, 4, 5, 600, UnpricedReason::NoSplit, "gpt-4o");
  ASSERT_TRUE(combine(a, b));
  EXPECT_EQ(i128_str(a.cost()), "795000000000000");  // 750000000000000 + 45000000000000
  EXPECT_EQ(a.priced_rows, 5);                        // 1 + 4
  EXPECT_EQ(a.unpriced_rows, 7);                      // 2 + 5
  EXPECT_EQ(a.unpriced_units, 900);                   // 300 + 600
  EXPECT_EQ(a.first_reason, static_cast<uint8_t>(UnpricedReason::NoSplit));  // taken from b
  EXPECT_EQ(a.first_unpriced_name(), "gpt-4o");
}

TEST(Combine, FirstNameOfAWins) {
  CostState a = state(0, 0, 1, 1, UnpricedReason::UnknownModel, "first");
  const CostState b = state(0, 0, 1, 1, UnpricedReason::NoPriceAtTime, "second");
  ASSERT_TRUE(combine(a, b));
  EXPECT_EQ(a.first_reason, static_cast<uint8_t>(UnpricedReason::UnknownModel));
  EXPECT_EQ(a.first_unpriced_name(), "first");
}

TEST(Combine, FullLengthNameIsCopiedWhole) {
  CostState a = empty_cost_state();
  const std::string name23 = std::string(20, 'a') + "\xE2\x82\xAC";  // 23 bytes, no NUL inside
  const CostState b = state(0, 0, 1, 1, UnpricedReason::UnknownModel, name23);
  ASSERT_TRUE(combine(a, b));
  EXPECT_EQ(a.first_unpriced_name(), name23);
}

TEST(Combine, WithEmptyIsIdentity) {
  const CostState orig = state(i128("-123456789012345678901234567890"), 3, 4, 5, UnpricedReason::NoModel, "x");
  CostState a = orig;
  ASSERT_TRUE(combine(a, empty_cost_state()));
  EXPECT_TRUE(same(a, orig));
}

TEST(Combine, Overflow) {
  CostState a = state(kI128Max, 0, 0, 0, UnpricedReason::None, "");
  EXPECT_FALSE(combine(a, state(1, 0, 0, 0, UnpricedReason::None, "")));
  CostState b = state(kI128Min, 0, 0, 0, UnpricedReason::None, "");
  EXPECT_FALSE(combine(b, state(-1, 0, 0, 0, UnpricedReason::None, "")));
  CostState c = state(0, kI64Max, 0, 0, UnpricedReason::None, "");
  EXPECT_FALSE(combine(c, state(0, 1, 0, 0, UnpricedReason::None, "")));
}

TEST(Combine, UnpricedCountersSaturate) {
  CostState a = state(0, 0, kI64Max, kI64Max - 1, UnpricedReason::None, "");
  ASSERT_TRUE(combine(a, state(0, 0, 5, 5, UnpricedReason::None, "")));
  EXPECT_EQ(a.unpriced_rows, kI64Max);
  EXPECT_EQ(a.unpriced_units, kI64Max);
}

// ---------------------------------------------------------------------------
// Text form

TEST(FormatCostState, Examples) {
  EXPECT_EQ(text_of(empty_cost_state()), "(0,0,0,0,0,\"\")");
  // The header's example: one row at $0.00075.
  EXPECT_EQ(text_of(state(750000000000000, 1, 0, 0, UnpricedReason::None, "")), "(0.00075,1,0,0,0,\"\")");
  EXPECT_EQ(text_of(state(i128("2020000000000000000"), 12, 3, 450, UnpricedReason::UnknownModel, "claude-3-opus")),
            "(2.02,12,3,450,1,\"claude-3-opus\")");
  EXPECT_EQ(text_of(state(-500000000000000000, 0, 1, 0, UnpricedReason::NoSplit, "")), "(-0.5,0,1,0,4,\"\")");
}

TEST(FormatCostState, QuotesAndBackslashesAreEscaped) {
  EXPECT_EQ(text_of(state(0, 0, 1, 1, UnpricedReason::UnknownModel, "a\"b\\c")), "(0,0,1,1,1,\"a\\\"b\\\\c\")");
}

TEST(FormatCostState, LongestPossibleTextFits) {
  // cost -2^127 (41 chars), three counters at INT64_MIN (20 chars each), reason 255
  // (3 chars), 23 quotes escaped (46 chars): 1 + 41 + 1 + 20 + 1 + 20 + 1 + 20 + 1 + 3
  // + 1 + (1 + 46 + 1) + 1 = 159 = kCostStateTextSize - 1.
  CostState s = state(kI128Min, kI64Min, kI64Min, kI64Min, UnpricedReason::None, std::string(23, '"'));
  s.first_reason = 255;
  std::string quotes;
  for (int i = 0; i < 23; ++i) quotes += "\\\"";
  const std::string want = "(-170141183460469231731.687303715884105728,-9223372036854775808,-9223372036854775808,"
                           "-9223372036854775808,255,\"" + quotes + "\")";
  ASSERT_EQ(want.size(), 159u);
  EXPECT_EQ(text_of(s), want);
}

std::string round_trip(const CostState& s) {
  CostState back;
  std::memset(&back, 0xAB, sizeof back);
  const std::string text = text_of(s);
  if (!parse_cost_state(text, &back)) return "parse failed: " + text;
  if (!same(back, s)) return "differs: " + text + " vs " + text_of(back);
  return "ok";
}

TEST(ParseCostState, RoundTrip) {
  const std::string euro = "\xE2\x82\xAC";
  const CostState cases[] = {
      empty_cost_state(),
      state(750000000000000, 1, 0, 0, UnpricedReason::None, ""),
      state(1, kI64Max, kI64Max, kI64Max, UnpricedReason::NoSplit, ""),
      state(kI128Max, 1, 1, 1, UnpricedReason::UnknownModel, std::string(23, 'z')),
      state(-kI128Max, 1, 1, 1, UnpricedReason::NoPriceAtTime, "a\"b\\c"),
      state(i128("-123456789012345678901234567890"), 0, 2, 3, UnpricedReason::NoModel, "model,with,commas"),
      state(0, 0, 1, 1, UnpricedReason::UnknownModel, "(parens) \"\"" ),
      state(0, 0, 1, 1, UnpricedReason::UnknownModel, std::string(20, 'a') + euro),
      state(0, 0, 1, 1, UnpricedReason::UnknownModel, std::string(23, '\\')),
      state(0, 0, 1, 1, UnpricedReason::UnknownModel, std::string(23, '"')),
      state(0, 0, 1, 1, UnpricedReason::UnknownModel, " spaces "),
  };
  for (const CostState& s : cases) EXPECT_EQ(round_trip(s), "ok");
}

TEST(ParseCostState, RoundTripAfterUtf8Truncation) {
  CostState s = empty_cost_state();
  add_unpriced(s, UnpricedReason::UnknownModel, std::string(21, 'a') + "\xE2\x82\xAC" + "tail", 10);
  EXPECT_EQ(s.first_unpriced_name(), std::string(21, 'a'));
  EXPECT_EQ(round_trip(s), "ok");
}

// The type's output must be readable by its input at the most negative cost too.
TEST(ParseCostState, RoundTripOfTheMostNegativeCost) {
  EXPECT_EQ(round_trip(state(kI128Min, 0, 0, 0, UnpricedReason::None, "")), "ok");
}

TEST(ParseCostState, AcceptedSpellings) {
  CostState s;
  ASSERT_TRUE(parse_cost_state("  (0.00075,1,0,0,0,\"\")  ", &s));  // spaces outside the parentheses
  EXPECT_EQ(i128_str(s.cost()), "750000000000000");
  EXPECT_EQ(s.priced_rows, 1);
  ASSERT_TRUE(parse_cost_state("(0.000750000000000000000,+1,0,0,0,\"\")", &s));  // extra zero decimals, '+'
  EXPECT_EQ(i128_str(s.cost()), "750000000000000");
  ASSERT_TRUE(parse_cost_state("(1,0,2,3,3,\"\")", &s));  // a reason with no name (NoModel)
  EXPECT_EQ(s.first_reason, 3);
  EXPECT_EQ(i128_str(s.cost()), "1000000000000000000");  // $1 = 10^18 atto
  ASSERT_TRUE(parse_cost_state("(0,0,1,1,1,\"a,b\")", &s));  // commas inside the name
  EXPECT_EQ(s.first_unpriced_name(), "a,b");
  ASSERT_TRUE(parse_cost_state("(0,0,1,1,1,\"\\a\")", &s));  // a backslash escapes any character
  EXPECT_EQ(s.first_unpriced_name(), "a");
}

TEST(ParseCostState, Rejects) {
  const char* const bad[] = {
      "",
      "()",
      "(",
      "0,0,0,0,0,\"\"",                          // no parentheses
      "(0,0,0,0,0,\"\"",                         // no closing parenthesis
      "(0,0,0,0,\"\")",                          // a field missing
      "(0,0,0,0,0,\"\",1)",                      // a field too many
      "(0,0,0,0,0,)",                            // name not quoted
      "(0,0,0,0,0,\")",                          // a lone quote
      "(0,0,0,0,0,\"a\"b\")",                    // unescaped quote inside
      "(0,0,0,0,0,\"a\\\")",                     // ends inside an escape
      "(x,0,0,0,0,\"\")",                        // cost not a number
      "(1e3,0,0,0,0,\"\")",                      // no exponents
      "(0.0000000000000000001,0,0,0,0,\"\")",    // below one atto-dollar
      "(170141183460469231731.687303715884105728,0,0,0,0,\"\")",  // 2^127 atto
      "(0,-1,0,0,0,\"\")",                       // negative counters
      "(0,0,-1,0,0,\"\")",
      "(0,0,0,-1,0,\"\")",
      "(0,9223372036854775808,0,0,0,\"\")",      // counter beyond bigint
      "(0,1.5,0,0,0,\"\")",
      "(0,0,0,0,5,\"\")",                        // reason out of range
      "(0,0,0,0,-1,\"\")",
      "(0,0,0,0,0,\"name\")",                    // a name without a reason
      "(0,0,1,1,1,\"aaaaaaaaaaaaaaaaaaaaaaaa\")",  // 24-byte name
      "( 0,0,0,0,0,\"\")",                       // spaces inside
      "(0 ,0,0,0,0,\"\")",
      "(0,0,0,0,0, \"\")",
      "(,0,0,0,0,\"\")",
  };
  for (const char* text : bad) {
    CostState s = state(7, 7, 7, 7, UnpricedReason::NoModel, "keep");
    const CostState before = s;
    EXPECT_FALSE(parse_cost_state(text, &s)) << text;
    EXPECT_TRUE(same(s, before)) << "output changed on failure: " << text;
  }
}

TEST(ParseCostState, NameOfExactly23Bytes) {
  CostState s;
  ASSERT_TRUE(parse_cost_state("(0,0,1,1,1,\"aaaaaaaaaaaaaaaaaaaaaaa\")", &s));
  EXPECT_EQ(s.first_unpriced_name(), std::string(23, 'a'));
  std::string escaped = "(0,0,1,1,1,\"";
  for (int i = 0; i < 23; ++i) escaped += "\\\\";
  escaped += "\")";
  ASSERT_TRUE(parse_cost_state(escaped, &s));  // 46 chars of text, 23 bytes of name
  EXPECT_EQ(s.first_unpriced_name(), std::string(23, '\\'));
}

TEST(UnpricedReasonText, AllReasons) {
  EXPECT_EQ(unpriced_reason_text(UnpricedReason::None), "");
  EXPECT_EQ(unpriced_reason_text(UnpricedReason::UnknownModel), "not in the price catalog");
  EXPECT_EQ(unpriced_reason_text(UnpricedReason::NoPriceAtTime), "no price in effect at that time");
  EXPECT_EQ(unpriced_reason_text(UnpricedReason::NoModel), "usage without a model name");
  EXPECT_EQ(unpriced_reason_text(UnpricedReason::NoSplit), "only a total token count, no prompt/completion split");
  EXPECT_EQ(unpriced_reason_text(static_cast<UnpricedReason>(9)), "");
}

}  // namespace
}  // namespace billing
