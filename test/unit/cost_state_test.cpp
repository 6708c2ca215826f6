// Unit tests for src/core/cost_state.h: the 64-byte aggregate state, its
// arithmetic, the first-unpriced-name and first-problem bookkeeping (the
// shared text, UTF-8 safe truncation) and its text form.
#include "cost_state.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>

#include "pg_fixtures.h"
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

// A state as the tests need it; `name` (at most 12 bytes) goes into the shared text.
CostState state(Atto cost, int64_t priced, int64_t unpriced, int64_t units, UnpricedReason why,
                std::string_view name) {
  CostState s = empty_cost_state();
  s.set_cost(cost);
  s.priced_rows = priced;
  s.unpriced_rows = unpriced;
  s.unpriced_units = units;
  s.first_reason = static_cast<uint8_t>(why);
  std::memcpy(s.text, name.data(), name.size() < CostState::kTextSize ? name.size() : CostState::kTextSize);
  return s;
}

std::string round_trip(const CostState& s) {
  CostState back;
  std::memset(&back, 0xAB, sizeof back);
  const std::string text = text_of(s);
  if (!parse_cost_state(text, &back)) return "parse failed: " + text;
  if (!same(back, s)) return "differs: " + text + " vs " + text_of(back);
  return "ok";
}

// The sentence the state gives for its first problem.
std::string problem_of(const CostState& s) {
  char buf[256];
  std::memset(buf, 'X', sizeof buf);
  const std::size_t len = describe_first_problem(s, buf, sizeof buf);
  EXPECT_LT(len, sizeof buf);
  EXPECT_EQ(std::strlen(buf), len);
  return std::string(buf, len);
}

// The sentence usage_problem() gives for the same usage.
std::string usage_message(const Usage& u) {
  char buf[256];
  const std::size_t len = describe_usage_error(u, buf, sizeof buf);
  return std::string(buf, len);
}

// Usage decoded from a genuine jsonb container (pg_fixtures.h); keeps the bytes alive.
struct Decoded {
  explicit Decoded(const char* h) : bytes(billing_test::jsonb_container(h)) {
    usage = decode_usage(read_usage_fields(billing_test::view_of(bytes)));
  }
  billing_test::Bytes bytes;
  Usage usage;
};

// An Invalid usage built by hand.
Usage invalid_usage(UsageError e, TokenField f, JsonKind k, std::string_view text = {}, int64_t value = 0,
                    int64_t prompt = 0) {
  Usage u;
  u.status = UsageStatus::Invalid;
  u.error = e;
  u.error_field = f;
  u.error_kind = k;
  u.error_text = text;
  u.error_value = value;
  u.prompt = prompt;
  return u;
}

Usage string_usage(std::string_view text) {
  return invalid_usage(UsageError::NotANumber, TokenField::Prompt, JsonKind::String, text);
}

TEST(CostStateLayout, SixtyFourBytes) {
  // The SQL type is declared INTERNALLENGTH = 64: the layout is on-disk.
  EXPECT_EQ(sizeof(CostState), 64u);
  EXPECT_EQ(offsetof(CostState, cost_lo), 0u);
  EXPECT_EQ(offsetof(CostState, cost_hi), 8u);
  EXPECT_EQ(offsetof(CostState, priced_rows), 16u);
  EXPECT_EQ(offsetof(CostState, unpriced_rows), 24u);
  EXPECT_EQ(offsetof(CostState, unpriced_units), 32u);
  EXPECT_EQ(offsetof(CostState, invalid_rows), 40u);
  EXPECT_EQ(offsetof(CostState, first_reason), 48u);
  EXPECT_EQ(offsetof(CostState, first_problem), 49u);
  EXPECT_EQ(offsetof(CostState, problem_field), 50u);
  EXPECT_EQ(offsetof(CostState, problem_kind), 51u);
  EXPECT_EQ(offsetof(CostState, text), 52u);
  EXPECT_EQ(CostState::kTextSize, 12u);  // 52 + 12 = 64
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
  add_unpriced(s, UnpricedReason::UnknownModel, "claude-3", 150);
  add_unpriced(s, UnpricedReason::NoPriceAtTime, "gpt-4o", 50);
  add_unpriced(s, UnpricedReason::NoModel, "", 7);
  EXPECT_EQ(s.unpriced_rows, 3);
  EXPECT_EQ(s.unpriced_units, 207);  // 150 + 50 + 7
  EXPECT_EQ(s.first_reason, static_cast<uint8_t>(UnpricedReason::UnknownModel));
  EXPECT_EQ(s.first_unpriced_name(), "claude-3");
  EXPECT_EQ(s.priced_rows, 0);
  EXPECT_EQ(i128_str(s.cost()), "0");
}

TEST(AddUnpriced, NameIsNulPadded) {
  CostState s = empty_cost_state();
  std::memset(s.text, 'Z', sizeof s.text);
  add_unpriced(s, UnpricedReason::UnknownModel, "abc", 1);
  EXPECT_EQ(s.first_unpriced_name(), "abc");
  EXPECT_EQ(s.first_problem_value(), "");
  for (std::size_t i = 3; i < CostState::kTextSize; ++i) EXPECT_EQ(s.text[i], '\0') << i;
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

TEST(AddUnpriced, LongAsciiNamesAreCutTo12BytesEndingInDots) {
  EXPECT_EQ(first_name_after(std::string(12, 'a')), std::string(12, 'a'));  // fits with no NUL
  // A cut name ends in "...", so that a message does not pass it off as whole.
  EXPECT_EQ(first_name_after(std::string(13, 'a')), std::string(9, 'a') + "...");
  EXPECT_EQ(first_name_after("claude-3-5-sonnet-20241022"), "claude-3-...");  // 26 -> 9 + "..."
  EXPECT_EQ(first_name_after("gpt-4o-mini-2024-07-18"), "gpt-4o-mi...");
}

TEST(AddUnpriced, Utf8IsNotCutInHalf) {
  const std::string euro = "\xE2\x82\xAC";        // 3 bytes
  const std::string grin = "\xF0\x9F\x98\x80";    // 4 bytes
  const std::string e_acute = "\xC3\xA9";         // 2 bytes
  const std::string dots = "...";
  // A name that fits is kept whole; a longer one keeps the whole characters
  // of its first 9 bytes, then "...".
  // 11 ASCII + "€" = 14 bytes: 9 + "...".
  EXPECT_EQ(first_name_after(std::string(11, 'a') + euro), std::string(9, 'a') + dots);
  // 9 + "€" = 12 bytes: fits exactly.
  EXPECT_EQ(first_name_after(std::string(9, 'a') + euro), std::string(9, 'a') + euro);
  // 9 + "€" + "b" = 13 bytes: 9 + "...".
  EXPECT_EQ(first_name_after(std::string(9, 'a') + euro + "b"), std::string(9, 'a') + dots);
  // 8 + emoji = 12 bytes: fits.
  EXPECT_EQ(first_name_after(std::string(8, 'a') + grin), std::string(8, 'a') + grin);
  // 7 + "€" + "bbb" = 13 bytes: byte 9 is inside the euro, back off to 7.
  EXPECT_EQ(first_name_after(std::string(7, 'a') + euro + "bbb"), std::string(7, 'a') + dots);
  // 7 x "é" = 14 bytes: 4 whole characters (8 bytes) + "...".
  std::string seven, four;
  for (int i = 0; i < 7; ++i) seven += e_acute;
  for (int i = 0; i < 4; ++i) four += e_acute;
  EXPECT_EQ(first_name_after(seven), four + dots);
  // Every position of a 4-byte character around the cut.
  for (std::size_t prefix = 4; prefix <= 13; ++prefix) {
    const std::string name = std::string(prefix, 'x') + grin + "tail";
    const std::string got = first_name_after(name);
    // Whole characters only: the emoji is kept entirely or dropped.
    std::string want;
    if (name.size() <= 12) {
      want = name;
    } else if (prefix >= 9) {
      want = std::string(9, 'x') + dots;
    } else if (prefix + 4 <= 9) {
      want = name.substr(0, 9) + dots;
    } else {
      want = std::string(prefix, 'x') + dots;
    }
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
  const std::string name12 = std::string(9, 'a') + "\xE2\x82\xAC";  // 12 bytes, no NUL inside
  const CostState b = state(0, 0, 1, 1, UnpricedReason::UnknownModel, name12);
  ASSERT_TRUE(combine(a, b));
  EXPECT_EQ(a.first_unpriced_name(), name12);
  EXPECT_TRUE(same(a, b));
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
// Rows with invalid usage

namespace fx = billing_test::jsonb_hex;

constexpr uint8_t u8(UsageError e) { return static_cast<uint8_t>(e); }
constexpr uint8_t u8(TokenField f) { return static_cast<uint8_t>(f); }
constexpr uint8_t u8(JsonKind k) { return static_cast<uint8_t>(k); }

TEST(AddInvalid, CountsRowsAndKeepsTheFirstProblem) {
  const Decoded first(fx::string_token);     // {"prompt_tokens":"12a","completion_tokens":5,"model":"gpt-4o"}
  const Decoded second(fx::negative_token);  // {"prompt_tokens":-5,"completion_tokens":5}
  ASSERT_EQ(first.usage.status, UsageStatus::Invalid);
  ASSERT_EQ(second.usage.status, UsageStatus::Invalid);
  CostState s = empty_cost_state();
  add_invalid(s, first.usage);
  add_invalid(s, second.usage);
  add_invalid(s, first.usage);
  EXPECT_EQ(s.invalid_rows, 3);
  EXPECT_EQ(s.first_problem, u8(UsageError::NotANumber));
  EXPECT_EQ(s.problem_field, u8(TokenField::Prompt));
  EXPECT_EQ(s.problem_kind, u8(JsonKind::String));
  EXPECT_EQ(s.first_problem_value(), "12a");
  EXPECT_EQ(problem_of(s), "\"prompt_tokens\" must be a non-negative integer, got the string \"12a\"");
  // An invalid row is neither priced nor unpriced.
  EXPECT_EQ(i128_str(s.cost()), "0");
  EXPECT_EQ(s.priced_rows, 0);
  EXPECT_EQ(s.unpriced_rows, 0);
  EXPECT_EQ(s.unpriced_units, 0);
  EXPECT_EQ(s.first_reason, 0);
  EXPECT_EQ(s.first_unpriced_name(), "");
}

// For every kind of invalid usage whose value fits, the state rebuilds the
// very sentence billing.usage_problem() gives.
TEST(AddInvalid, SentenceIsTheOneUsageProblemGives) {
  const char* const fixtures[] = {
      fx::string_token,  fx::bool_token,       fx::float_token,          fx::negative_token,
      fx::bigint_overflow_token, fx::cached_exceeds_prompt, fx::model_number, fx::container_tokens,
      fx::array_root,    fx::scalar_string,    fx::scalar_number,        fx::scalar_true,
      fx::negative_cached, fx::float_cached_detail, fx::usage_not_object, fx::total_invalid_with_split,
  };
  int invalid = 0;
  for (const char* h : fixtures) {
    const Decoded d(h);
    if (d.usage.status != UsageStatus::Invalid) continue;
    ++invalid;
    CostState s = empty_cost_state();
    add_invalid(s, d.usage);
    EXPECT_EQ(s.invalid_rows, 1);
    const std::string want = usage_message(d.usage);
    EXPECT_FALSE(want.empty());
    EXPECT_EQ(problem_of(s), want);
    // ...and so does a state that also names an unpriced model.
    add_unpriced(s, UnpricedReason::UnknownModel, "gpt-9", 1);
    EXPECT_EQ(s.first_unpriced_name(), "gpt-9");
    EXPECT_EQ(problem_of(s), want);
  }
  EXPECT_GE(invalid, 12);
}

TEST(AddInvalid, ValuesOfEachProblem) {
  struct Case {
    Usage usage;
    const char* value;
    const char* sentence;
  };
  const Case cases[] = {
      {string_usage("12a"), "12a", "\"prompt_tokens\" must be a non-negative integer, got the string \"12a\""},
      {string_usage(""), "", "\"prompt_tokens\" must be a non-negative integer, got the string \"\""},
      {invalid_usage(UsageError::Negative, TokenField::Completion, JsonKind::Number, {}, -3), "-3",
       "\"completion_tokens\" must not be negative, got -3"},
      {invalid_usage(UsageError::CachedExceedsPrompt, TokenField::CachedDetail, JsonKind::Missing, {}, 11, 10),
       "11 10", "\"prompt_tokens_details.cached_tokens\" (11) exceeds \"prompt_tokens\" (10)"},
      {invalid_usage(UsageError::NotAnObject, TokenField::Prompt, JsonKind::Array), "",
       "usage must be a JSON object, got an array"},
      {invalid_usage(UsageError::ModelNotAString, TokenField::Prompt, JsonKind::Number), "",
       "\"model\" must be a string, got a number"},
      {invalid_usage(UsageError::OutOfRange, TokenField::Total, JsonKind::Number), "",
       "\"tokens\" is out of range for bigint"},
      // Only a string is quoted: a boolean has no value to keep.
      {invalid_usage(UsageError::NotANumber, TokenField::Prompt, JsonKind::True, "ignored"), "",
       "\"prompt_tokens\" must be a non-negative integer, got a boolean"},
  };
  for (const Case& c : cases) {
    CostState s = empty_cost_state();
    add_invalid(s, c.usage);
    EXPECT_EQ(s.first_problem_value(), c.value) << c.sentence;
    EXPECT_EQ(problem_of(s), c.sentence);
    EXPECT_EQ(problem_of(s), usage_message(c.usage));
    EXPECT_EQ(round_trip(s), "ok") << c.sentence;
  }
}

TEST(AddInvalid, LongStringsAreCutWithAnEllipsis) {
  const Decoded d(fx::long_string_token);  // "0123456789012345678901234567890123456789ABCDEFGHIJ"
  CostState s = empty_cost_state();
  add_invalid(s, d.usage);
  EXPECT_EQ(s.first_problem_value(), "01234567...");  // 11 bytes: all the text has without a name
  EXPECT_EQ(problem_of(s), "\"prompt_tokens\" must be a non-negative integer, got the string \"01234567...\"");
  add_invalid(s, string_usage("0123456789A"));  // exactly 11 bytes: only the first row counts
  EXPECT_EQ(s.first_problem_value(), "01234567...");
  CostState t = empty_cost_state();
  add_invalid(t, string_usage("0123456789A"));
  EXPECT_EQ(t.first_problem_value(), "0123456789A");  // fits whole
}

TEST(AddInvalid, Utf8StringsAreCutAtACharacterBoundary) {
  const Decoded d(fx::utf8_string_token);  // "a" followed by 24 x "é"
  CostState s = empty_cost_state();
  add_invalid(s, d.usage);
  // 8 bytes before "...": "a" + 3 x "é" is 7; the fourth "é" would be cut.
  EXPECT_EQ(s.first_problem_value(), "a\xC3\xA9\xC3\xA9\xC3\xA9...");
  EXPECT_EQ(round_trip(s), "ok");
}

TEST(AddInvalid, NumbersThatDoNotFitAreLeftOut) {
  CostState s = empty_cost_state();
  add_invalid(s, invalid_usage(UsageError::Negative, TokenField::Prompt, JsonKind::Number, {}, kI64Min));
  EXPECT_EQ(s.first_problem_value(), "");  // 20 characters
  EXPECT_EQ(problem_of(s), "\"prompt_tokens\" must not be negative");
  CostState t = empty_cost_state();
  add_invalid(t, invalid_usage(UsageError::Negative, TokenField::Prompt, JsonKind::Number, {}, -1234567890));
  EXPECT_EQ(t.first_problem_value(), "-1234567890");  // 11 characters: fits
  EXPECT_EQ(problem_of(t), "\"prompt_tokens\" must not be negative, got -1234567890");
  CostState c = empty_cost_state();
  add_invalid(c, invalid_usage(UsageError::CachedExceedsPrompt, TokenField::Cached, JsonKind::Missing, {},
                               1000001, 1000000));
  EXPECT_EQ(c.first_problem_value(), "");  // "1000001 1000000" is 15 characters
  EXPECT_EQ(problem_of(c), "\"cached_tokens\" exceeds \"prompt_tokens\"");
  EXPECT_EQ(round_trip(c), "ok");
}

TEST(AddInvalid, UsageWithoutAnErrorIsOnlyCounted) {
  CostState s = empty_cost_state();
  add_invalid(s, Usage{});
  EXPECT_EQ(s.invalid_rows, 1);
  EXPECT_EQ(s.first_problem, 0);
  EXPECT_EQ(problem_of(s), "");
  add_invalid(s, string_usage("x"));  // the first row that names a problem is kept
  EXPECT_EQ(s.invalid_rows, 2);
  EXPECT_EQ(s.first_problem_value(), "x");
}

TEST(AddInvalid, CountSaturates) {
  CostState s = empty_cost_state();
  s.invalid_rows = kI64Max;
  add_invalid(s, string_usage("x"));
  EXPECT_EQ(s.invalid_rows, kI64Max);
}

TEST(AddInvalid, KeepsHowTheDataSpelledTheMember) {
  // {"input_tokens":10,"output_tokens":1,"input_tokens_details":{"cached_tokens":11}}
  Usage u;
  u.status = UsageStatus::Invalid;
  u.error = UsageError::CachedExceedsPrompt;
  u.error_field = TokenField::CachedDetail;
  u.error_spelling = kResponsesName;
  u.prompt_spelling = kResponsesName;
  u.error_value = 11;
  u.prompt = 10;
  CostState s = empty_cost_state();
  add_invalid(s, u);
  // CachedDetail (4) | Responses name << 4 | the prompt's << 6
  EXPECT_EQ(s.problem_field, 4 + 16 + 64);
  EXPECT_EQ(problem_of(s), "\"input_tokens_details.cached_tokens\" (11) exceeds \"input_tokens\" (10)");
  EXPECT_EQ(problem_of(s), usage_message(u));
  EXPECT_EQ(text_of(s), "(0,0,0,0,0,\"\",1,6,84,0,\"11 10\")");
  EXPECT_EQ(round_trip(s), "ok");

  // {"usage":{"input_tokens":"12a"}}
  Usage v;
  v.status = UsageStatus::Invalid;
  v.error = UsageError::NotANumber;
  v.error_field = TokenField::Prompt;
  v.error_spelling = kResponsesName | kInUsageObject;
  v.error_kind = JsonKind::String;
  v.error_text = "12a";
  CostState t = empty_cost_state();
  add_invalid(t, v);
  EXPECT_EQ(problem_of(t), "\"usage.input_tokens\" must be a non-negative integer, got the string \"12a\"");
  EXPECT_EQ(round_trip(t), "ok");

  // A prompt spelling says something only beside cached > prompt.
  CostState back;
  EXPECT_TRUE(parse_cost_state("(0,0,0,0,0,\"\",1,2,48,2,\"12a\")", &back));
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,2,64,2,\"12a\")", &back));
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,2,256,2,\"12a\")", &back));
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,2,21,2,\"12a\")", &back));  // field 5

  // Only what a problem can say: no field beside a root that is not an
  // object; for a model, where it was and no token field; no Responses API
  // name for the top-level cached_tokens; a cached field for cached > prompt.
  EXPECT_TRUE(parse_cost_state("(0,0,0,0,0,\"\",1,1,0,3,\"\")", &back));
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,1,48,6,\"\")", &back));
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,1,1,3,\"\")", &back));
  EXPECT_TRUE(parse_cost_state("(0,0,0,0,0,\"\",1,7,32,3,\"\")", &back));
  EXPECT_EQ(problem_of(back), "\"usage.model\" must be a string, got a number");
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,7,48,3,\"\")", &back));
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,7,1,3,\"\")", &back));
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,2,19,2,\"x\")", &back));   // Responses cached_tokens
  EXPECT_TRUE(parse_cost_state("(0,0,0,0,0,\"\",1,2,35,2,\"x\")", &back));    // usage.cached_tokens
  EXPECT_EQ(problem_of(back), "\"usage.cached_tokens\" must be a non-negative integer, got the string \"x\"");
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,6,64,0,\"5 1\")", &back)); // prompt_tokens is not cached
  EXPECT_TRUE(parse_cost_state("(0,0,0,0,0,\"\",1,6,67,0,\"5 1\")", &back));
  EXPECT_EQ(problem_of(back), "\"cached_tokens\" (5) exceeds \"input_tokens\" (1)");
  // A cached count in a nested object comes with a prompt there.
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,6,36,0,\"5 1\")", &back));
  EXPECT_TRUE(parse_cost_state("(0,0,0,0,0,\"\",1,6,164,0,\"5 1\")", &back));
  EXPECT_EQ(problem_of(back), "\"usage.prompt_tokens_details.cached_tokens\" (5) exceeds \"usage.prompt_tokens\" (1)");

  // And only a kind of value the problem can have found.
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,1,0,6,\"\")", &back));   // not an object: an object
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,7,0,2,\"\")", &back));   // model not a string: a string
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,2,0,1,\"\")", &back));   // not a number: null
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,5,0,2,\"-3\")", &back)); // negative: a string
  EXPECT_FALSE(parse_cost_state("(0,0,0,0,0,\"\",1,6,4,3,\"5 1\")", &back)); // cached > prompt names none
  EXPECT_TRUE(parse_cost_state("(0,0,0,0,0,\"\",1,1,0,7,\"\")", &back));
  EXPECT_EQ(problem_of(back), "usage must be a JSON object, got an array");
}

TEST(DescribeFirstProblem, SmallBuffers) {
  CostState s = empty_cost_state();
  add_invalid(s, string_usage("12a"));
  char buf[16];
  EXPECT_EQ(describe_first_problem(s, buf, 0), 0u);
  std::memset(buf, 'X', sizeof buf);
  EXPECT_EQ(describe_first_problem(s, buf, 1), 0u);
  EXPECT_EQ(buf[0], '\0');
  EXPECT_EQ(describe_first_problem(s, buf, 10), 9u);
  EXPECT_EQ(std::string(buf), "\"prompt_t");
  CostState n = empty_cost_state();
  add_invalid(n, invalid_usage(UsageError::Negative, TokenField::Prompt, JsonKind::Number, {}, kI64Min));
  EXPECT_EQ(describe_first_problem(n, buf, 10), 9u);  // the sentence without its number, cut too
  EXPECT_EQ(std::string(buf), "\"prompt_t");
}

// ---------------------------------------------------------------------------
// The unpriced name and the problem's value share 12 bytes

TEST(SharedText, NameAndValueSideBySide) {
  CostState s = empty_cost_state();
  add_unpriced(s, UnpricedReason::UnknownModel, "gpt-9", 150);
  add_invalid(s, string_usage("12a"));
  EXPECT_EQ(std::string(s.text, sizeof s.text), std::string("gpt-9\0" "12a\0\0\0", 12));
  EXPECT_EQ(s.first_unpriced_name(), "gpt-9");
  EXPECT_EQ(s.first_problem_value(), "12a");
  // The same, the other way round.
  CostState t = empty_cost_state();
  add_invalid(t, string_usage("12a"));
  EXPECT_EQ(std::string(t.text, sizeof t.text), std::string("\0" "12a\0\0\0\0\0\0\0\0", 12));
  add_unpriced(t, UnpricedReason::UnknownModel, "gpt-9", 150);
  EXPECT_TRUE(same(s, t));
}

TEST(SharedText, TheValueKeepsFourBytesBesideALongName) {
  const std::string model = "claude-3-5-sonnet-20241022";
  struct Case {
    Usage usage;
    const char* name;
    const char* value;
  };
  const Case cases[] = {
      // (the name, cut, ends in "...")
      {string_usage("12a"), "claud...", "12a"},         // 3 bytes of value: 8 of name
      {string_usage("12ab"), "clau...", "12ab"},        // 4: 7
      {string_usage("12abcdefgh"), "clau...", "1..."},  // longer: 4 bytes, cut
      {invalid_usage(UsageError::Negative, TokenField::Prompt, JsonKind::Number, {}, -3), "claude...", "-3"},
      // A number longer than the room is left out: the name keeps 12 bytes.
      {invalid_usage(UsageError::Negative, TokenField::Prompt, JsonKind::Number, {}, -123456), "claude-3-...", ""},
      {invalid_usage(UsageError::NotAnInteger, TokenField::Prompt, JsonKind::Number), "claude-3-...", ""},
  };
  for (const Case& c : cases) {
    // Whichever comes first, the layout is the same.
    CostState a = empty_cost_state();
    add_unpriced(a, UnpricedReason::UnknownModel, model, 1);
    add_invalid(a, c.usage);
    CostState b = empty_cost_state();
    add_invalid(b, c.usage);
    add_unpriced(b, UnpricedReason::UnknownModel, model, 1);
    for (const CostState* s : {&a, &b}) {
      EXPECT_EQ(s->first_unpriced_name(), c.name) << c.name;
      EXPECT_EQ(s->first_problem_value(), c.value) << c.name;
      EXPECT_EQ(round_trip(*s), "ok");
    }
  }
}

TEST(SharedText, NameCutsNeverSplitACharacter) {
  const std::string euro = "\xE2\x82\xAC";
  CostState s = empty_cost_state();
  add_unpriced(s, UnpricedReason::UnknownModel, "abcdef" + euro + "xyz", 1);  // 12 bytes
  add_invalid(s, string_usage("12a"));  // the name may keep 8 bytes: 5 + "..."
  EXPECT_EQ(s.first_unpriced_name(), "abcde...");
  EXPECT_EQ(s.first_problem_value(), "12a");
}

// ---------------------------------------------------------------------------
// combine with invalid rows

TEST(Combine, InvalidRowsAddAndTheFirstProblemOfAWins) {
  CostState a = empty_cost_state();
  add_invalid(a, string_usage("12a"));
  CostState b = empty_cost_state();
  add_invalid(b, invalid_usage(UsageError::Negative, TokenField::Completion, JsonKind::Number, {}, -3));
  add_invalid(b, string_usage("x"));
  ASSERT_TRUE(combine(a, b));
  EXPECT_EQ(a.invalid_rows, 3);  // 1 + 2
  EXPECT_EQ(a.first_problem, u8(UsageError::NotANumber));
  EXPECT_EQ(a.first_problem_value(), "12a");
}

TEST(Combine, TheProblemComesFromBWhenAHasNone) {
  CostState a = empty_cost_state();
  ASSERT_TRUE(add_priced(a, 750000000000000));
  add_unpriced(a, UnpricedReason::UnknownModel, "gpt-9", 150);
  CostState b = empty_cost_state();
  add_invalid(b, invalid_usage(UsageError::Negative, TokenField::Completion, JsonKind::Number, {}, -3));
  ASSERT_TRUE(combine(a, b));
  EXPECT_EQ(a.invalid_rows, 1);
  EXPECT_EQ(a.first_unpriced_name(), "gpt-9");  // from a
  EXPECT_EQ(a.first_problem_value(), "-3");     // from b
  EXPECT_EQ(problem_of(a), "\"completion_tokens\" must not be negative, got -3");
  // And the unpriced name from b when a has none.
  CostState c = empty_cost_state();
  add_invalid(c, string_usage("12a"));
  CostState d = empty_cost_state();
  add_unpriced(d, UnpricedReason::NoPriceAtTime, "gpt-5", 7);
  ASSERT_TRUE(combine(c, d));
  EXPECT_EQ(c.first_reason, static_cast<uint8_t>(UnpricedReason::NoPriceAtTime));
  EXPECT_EQ(c.first_unpriced_name(), "gpt-5");
  EXPECT_EQ(c.first_problem_value(), "12a");
}

TEST(Combine, EitherOrderNamesRowsThatExist) {
  CostState a = empty_cost_state();
  add_unpriced(a, UnpricedReason::UnknownModel, "model-a", 1);
  add_invalid(a, string_usage("aaa"));
  CostState b = empty_cost_state();
  add_unpriced(b, UnpricedReason::UnknownModel, "model-b", 2);
  add_invalid(b, string_usage("bbb"));
  CostState ab = a, ba = b;
  ASSERT_TRUE(combine(ab, b));
  ASSERT_TRUE(combine(ba, a));
  // The counts agree; each order names the rows of its first state.
  for (const CostState* s : {&ab, &ba}) {
    EXPECT_EQ(s->unpriced_rows, 2);
    EXPECT_EQ(s->unpriced_units, 3);
    EXPECT_EQ(s->invalid_rows, 2);
  }
  EXPECT_EQ(ab.first_unpriced_name(), "model-a");
  EXPECT_EQ(ab.first_problem_value(), "aaa");
  EXPECT_EQ(ba.first_unpriced_name(), "model-b");
  EXPECT_EQ(ba.first_problem_value(), "bbb");
}

// A scan split across parallel workers and combined in order gives the
// state of one serial scan, byte for byte.
TEST(Combine, SplitScanEqualsOneScan) {
  enum Kind { Priced, Unpriced, Invalid };
  struct Row {
    Kind kind;
    const char* text;
  };
  const Row rows[] = {
      {Priced, nullptr}, {Invalid, "12a"}, {Priced, nullptr},   {Unpriced, "claude-3-5-sonnet"},
      {Invalid, "N/A"},  {Priced, nullptr}, {Unpriced, "gpt-9"}, {Invalid, "0x10"},
  };
  auto add = [](CostState& s, const Row& r) {
    switch (r.kind) {
      case Priced: ASSERT_TRUE(add_priced(s, 750000000000000)); break;
      case Unpriced: add_unpriced(s, UnpricedReason::UnknownModel, r.text, 150); break;
      case Invalid: add_invalid(s, string_usage(r.text)); break;
    }
  };
  CostState serial = empty_cost_state();
  for (const Row& r : rows) add(serial, r);
  EXPECT_EQ(i128_str(serial.cost()), "2250000000000000");  // 3 x 0.00075 = 0.00225
  EXPECT_EQ(serial.priced_rows, 3);
  EXPECT_EQ(serial.unpriced_rows, 2);
  EXPECT_EQ(serial.invalid_rows, 3);
  EXPECT_EQ(serial.first_unpriced_name(), "claud...");
  EXPECT_EQ(serial.first_problem_value(), "12a");
  for (std::size_t cut1 = 0; cut1 <= std::size(rows); ++cut1) {
    for (std::size_t cut2 = cut1; cut2 <= std::size(rows); ++cut2) {
      CostState parts[3] = {empty_cost_state(), empty_cost_state(), empty_cost_state()};
      for (std::size_t i = 0; i < std::size(rows); ++i) add(parts[i < cut1 ? 0 : i < cut2 ? 1 : 2], rows[i]);
      CostState leader = empty_cost_state();
      for (const CostState& p : parts) ASSERT_TRUE(combine(leader, p));
      EXPECT_TRUE(same(leader, serial)) << cut1 << " " << cut2 << ": " << text_of(leader);
    }
  }
}

TEST(Combine, InvalidCountSaturates) {
  CostState a = empty_cost_state();
  a.invalid_rows = kI64Max - 1;
  CostState b = empty_cost_state();
  b.invalid_rows = 5;
  ASSERT_TRUE(combine(a, b));
  EXPECT_EQ(a.invalid_rows, kI64Max);
}

// ---------------------------------------------------------------------------
// Text form

TEST(FormatCostState, Examples) {
  EXPECT_EQ(text_of(empty_cost_state()), "(0,0,0,0,0,\"\")");
  // The header's example: one row at $0.00075.
  EXPECT_EQ(text_of(state(750000000000000, 1, 0, 0, UnpricedReason::None, "")), "(0.00075,1,0,0,0,\"\")");
  EXPECT_EQ(text_of(state(i128("2020000000000000000"), 12, 3, 450, UnpricedReason::UnknownModel, "claude-3")),
            "(2.02,12,3,450,1,\"claude-3\")");
  EXPECT_EQ(text_of(state(-500000000000000000, 0, 1, 0, UnpricedReason::NoSplit, "")), "(-0.5,0,1,0,4,\"\")");
}

TEST(FormatCostState, InvalidRowsAddFiveFields) {
  // 3 rows at $0.00075 and 2 with invalid usage, the first "prompt_tokens": "12a".
  CostState s = empty_cost_state();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(add_priced(s, 750000000000000));
  add_invalid(s, string_usage("12a"));
  add_invalid(s, string_usage("x"));
  EXPECT_EQ(text_of(s), "(0.00225,3,0,0,0,\"\",2,2,0,2,\"12a\")");
  add_unpriced(s, UnpricedReason::UnknownModel, "gpt-9", 150);
  EXPECT_EQ(text_of(s), "(0.00225,3,1,150,1,\"gpt-9\",2,2,0,2,\"12a\")");
  CostState c = empty_cost_state();
  add_invalid(c, invalid_usage(UsageError::CachedExceedsPrompt, TokenField::CachedDetail, JsonKind::Missing, {},
                               11, 10));
  EXPECT_EQ(text_of(c), "(0,0,0,0,0,\"\",1,6,4,0,\"11 10\")");
  // A problem without a value, and a count without a problem.
  CostState o = empty_cost_state();
  add_invalid(o, invalid_usage(UsageError::NotAnObject, TokenField::Prompt, JsonKind::Array));
  EXPECT_EQ(text_of(o), "(0,0,0,0,0,\"\",1,1,0,7,\"\")");
  CostState n = empty_cost_state();
  n.invalid_rows = 4;
  EXPECT_EQ(text_of(n), "(0,0,0,0,0,\"\",4,0,0,0,\"\")");
}

TEST(FormatCostState, QuotesAndBackslashesAreEscaped) {
  EXPECT_EQ(text_of(state(0, 0, 1, 1, UnpricedReason::UnknownModel, "a\"b\\c")), "(0,0,1,1,1,\"a\\\"b\\\\c\")");
  CostState s = empty_cost_state();
  add_invalid(s, string_usage("\"\\"));
  EXPECT_EQ(text_of(s), "(0,0,0,0,0,\"\",1,2,0,2,\"\\\"\\\\\")");
}

TEST(FormatCostState, LongestPossibleTextFits) {
  // cost -2^127 (41 chars), four counters at INT64_MIN (20 chars each), four
  // codes at 255 (3 chars each), 12 quotes escaped (24 chars) as the name and
  // an empty value: "(" 1 + 41 + 3 x (1 + 20) + (1 + 3) + (1 + 2 + 24) + (1 + 20)
  // + 3 x (1 + 3) + (1 + 2) + ")" 1 = 173.
  CostState s = state(kI128Min, kI64Min, kI64Min, kI64Min, UnpricedReason::None, std::string(12, '"'));
  s.invalid_rows = kI64Min;
  s.first_reason = s.first_problem = s.problem_field = s.problem_kind = 255;
  std::string quotes;
  for (int i = 0; i < 12; ++i) quotes += "\\\"";
  const std::string want = "(-170141183460469231731.687303715884105728,-9223372036854775808,-9223372036854775808,"
                           "-9223372036854775808,255,\"" + quotes + "\",-9223372036854775808,255,255,255,\"\")";
  ASSERT_EQ(want.size(), 173u);
  ASSERT_LT(want.size(), kCostStateTextSize);
  EXPECT_EQ(text_of(s), want);
}

TEST(ParseCostState, RoundTrip) {
  const std::string euro = "\xE2\x82\xAC";
  CostState with_problem = state(750000000000000, 1, 1, 1, UnpricedReason::UnknownModel, "gpt-9");
  add_invalid(with_problem, string_usage("a\"b,c)"));
  CostState problem_only = empty_cost_state();
  add_invalid(problem_only, invalid_usage(UsageError::CachedExceedsPrompt, TokenField::Cached, JsonKind::Missing,
                                          {}, 9999, 10));
  const CostState cases[] = {
      empty_cost_state(),
      state(750000000000000, 1, 0, 0, UnpricedReason::None, ""),
      state(1, kI64Max, kI64Max, kI64Max, UnpricedReason::NoSplit, ""),
      state(kI128Max, 1, 1, 1, UnpricedReason::UnknownModel, std::string(12, 'z')),
      state(-kI128Max, 1, 1, 1, UnpricedReason::NoPriceAtTime, "a\"b\\c"),
      state(i128("-123456789012345678901234567890"), 0, 2, 3, UnpricedReason::NoModel, "model,commas"),
      state(0, 0, 1, 1, UnpricedReason::UnknownModel, "(paren) \"\""),
      state(0, 0, 1, 1, UnpricedReason::UnknownModel, std::string(9, 'a') + euro),
      state(0, 0, 1, 1, UnpricedReason::UnknownModel, std::string(12, '\\')),
      state(0, 0, 1, 1, UnpricedReason::UnknownModel, std::string(12, '"')),
      state(0, 0, 1, 1, UnpricedReason::UnknownModel, " spaces "),
      with_problem,
      problem_only,
  };
  for (const CostState& s : cases) EXPECT_EQ(round_trip(s), "ok");
}

TEST(ParseCostState, RoundTripAfterUtf8Truncation) {
  CostState s = empty_cost_state();
  add_unpriced(s, UnpricedReason::UnknownModel, std::string(10, 'a') + "\xE2\x82\xAC" + "tail", 10);
  EXPECT_EQ(s.first_unpriced_name(), std::string(9, 'a') + "...");
  EXPECT_EQ(round_trip(s), "ok");
}

// The type's output must be readable by its input at the most negative cost too.
TEST(ParseCostState, RoundTripOfTheMostNegativeCost) {
  EXPECT_EQ(round_trip(state(kI128Min, 0, 0, 0, UnpricedReason::None, "")), "ok");
}

// Every pair of name and value lengths: the text form reads back into the
// same 64 bytes (the layout rule is stable under its own output).
TEST(ParseCostState, RoundTripOfEveryNameAndValueLength) {
  const std::string euro = "\xE2\x82\xAC";
  for (std::size_t name_len = 0; name_len <= 30; ++name_len) {
    for (std::size_t value_len = 0; value_len <= 30; ++value_len) {
      std::string name, value;
      while (name.size() < name_len) name += name.size() % 4 == 1 ? euro : "n";
      while (value.size() < value_len) value += value.size() % 5 == 2 ? euro : "v";
      CostState s = empty_cost_state();
      if (name_len > 0) add_unpriced(s, UnpricedReason::UnknownModel, name, 1);
      add_invalid(s, string_usage(value));
      EXPECT_LE(s.first_unpriced_name().size() + (s.first_problem_value().empty() ? 0 : 1) +
                    s.first_problem_value().size(),
                CostState::kTextSize);
      EXPECT_EQ(round_trip(s), "ok") << name_len << " " << value_len;
    }
  }
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
  // The invalid-usage fields.
  ASSERT_TRUE(parse_cost_state("(0.00225,3,0,0,0,\"\",2,2,0,2,\"12a\")", &s));
  EXPECT_EQ(s.invalid_rows, 2);
  EXPECT_EQ(problem_of(s), "\"prompt_tokens\" must be a non-negative integer, got the string \"12a\"");
  ASSERT_TRUE(parse_cost_state("(0,0,1,1,1,\"gpt-9\",1,2,0,2,\"a,\\\"b\\\")\")", &s));  // commas, quotes, parens
  EXPECT_EQ(s.first_unpriced_name(), "gpt-9");
  EXPECT_EQ(s.first_problem_value(), "a,\"b\")");
  ASSERT_TRUE(parse_cost_state("(0,0,0,0,0,\"\",1,5,1,3,\"-3\")", &s));
  EXPECT_EQ(problem_of(s), "\"completion_tokens\" must not be negative, got -3");
  ASSERT_TRUE(parse_cost_state("(0,0,0,0,0,\"\",1,6,3,0,\"11 10\")", &s));
  EXPECT_EQ(problem_of(s), "\"cached_tokens\" (11) exceeds \"prompt_tokens\" (10)");
  ASSERT_TRUE(parse_cost_state("(0,0,0,0,0,\"\",3,0,0,0,\"\")", &s));  // a count without a problem
  EXPECT_EQ(s.invalid_rows, 3);
  // All-zero invalid-usage fields are the six-field state.
  ASSERT_TRUE(parse_cost_state("(0.00075,1,0,0,0,\"\",0,0,0,0,\"\")", &s));
  EXPECT_EQ(text_of(s), "(0.00075,1,0,0,0,\"\")");
}

// Everything an earlier version could write still reads: names of up to 23
// bytes are cut to what the state keeps now (ending in "...").
TEST(ParseCostState, OldNamesOfUpTo23BytesAreCut) {
  CostState s;
  ASSERT_TRUE(parse_cost_state("(0,0,1,1,1,\"aaaaaaaaaaaaaaaaaaaaaaa\")", &s));
  EXPECT_EQ(s.first_unpriced_name(), std::string(9, 'a') + "...");
  std::string escaped = "(0,0,1,1,1,\"";
  for (int i = 0; i < 23; ++i) escaped += "\\\\";
  escaped += "\")";
  ASSERT_TRUE(parse_cost_state(escaped, &s));  // 46 chars of text, 23 bytes of name
  EXPECT_EQ(s.first_unpriced_name(), std::string(9, '\\') + "...");
  ASSERT_TRUE(parse_cost_state("(0,0,1,1,1,\"gpt-4o-mini-2024-07-18\")", &s));
  EXPECT_EQ(text_of(s), "(0,0,1,1,1,\"gpt-4o-mi...\")");
  ASSERT_TRUE(parse_cost_state("(0,0,1,1,1,\"gpt-4o\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\")", &s));  // 14 bytes
  EXPECT_EQ(s.first_unpriced_name(), "gpt-4o\xC3\xA9...");                               // 8 + "..."
  // A long name beside a value is cut to leave the value its room.
  ASSERT_TRUE(parse_cost_state("(0,0,1,1,1,\"claude-3-5-sonnet\",2,2,0,2,\"12a\")", &s));
  EXPECT_EQ(s.first_unpriced_name(), "claud...");
  EXPECT_EQ(s.first_problem_value(), "12a");
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
      // The invalid-usage fields: all five or none.
      "(0,0,0,0,0,\"\",1,2,0,2)",
      "(0,0,0,0,0,\"\",1,2,0,2,\"x\",1)",
      "(0,0,0,0,0,\"\"x)",                       // something after the name
      "(0,0,0,0,0,\"\" ,1,2,0,2,\"x\")",
      "(0,0,0,0,0,\"\",1,2,0,2,x)",              // value not quoted
      "(0,0,0,0,0,\"\",1,2,0,2,\"x\"y)",
      "(0,0,0,0,0,\"\",-1,2,0,2,\"x\")",         // negative count
      "(0,0,0,0,0,\"\",9223372036854775808,2,0,2,\"x\")",
      "(0,0,0,0,0,\"\",1,8,0,0,\"\")",           // problem out of range
      "(0,0,0,0,0,\"\",1,-1,0,0,\"\")",
      "(0,0,0,0,0,\"\",1,2,5,2,\"\")",           // field out of range
      "(0,0,0,0,0,\"\",1,2,0,9,\"\")",           // kind out of range
      "(0,0,0,0,0,\"\",1,0,1,0,\"\")",           // details without a problem
      "(0,0,0,0,0,\"\",1,0,0,2,\"\")",
      "(0,0,0,0,0,\"\",1,0,0,0,\"x\")",
      "(0,0,0,0,0,\"\",1,3,0,3,\"x\")",          // a value for a problem that quotes none
      "(0,0,0,0,0,\"\",1,2,0,6,\"x\")",          // not a string: nothing to quote
      "(0,0,0,0,0,\"\",1,5,0,3,\"3\")",          // a negative value that is not negative
      "(0,0,0,0,0,\"\",1,5,0,3,\"-03\")",        // numbers as written by the state only
      "(0,0,0,0,0,\"\",1,5,0,3,\"+-3\")",
      "(0,0,0,0,0,\"\",1,5,0,3,\"-3 \")",
      "(0,0,0,0,0,\"\",1,6,4,0,\"10 11\")",      // cached not above prompt
      "(0,0,0,0,0,\"\",1,6,4,0,\"11\")",
      "(0,0,0,0,0,\"\",1,6,4,0,\"11  10\")",
      "(0,0,0,0,0,\"\",1,2,0,2,\"aaaaaaaaaaaaaaaaaaaaaaaa\")",  // 24-byte value
  };
  for (const char* text : bad) {
    CostState s = state(7, 7, 7, 7, UnpricedReason::NoModel, "keep");
    const CostState before = s;
    EXPECT_FALSE(parse_cost_state(text, &s)) << text;
    EXPECT_TRUE(same(s, before)) << "output changed on failure: " << text;
  }
}

TEST(ParseCostState, NulBytesAreRefused) {
  CostState s;
  EXPECT_FALSE(parse_cost_state(std::string_view("(0,0,1,1,1,\"a\0b\")", 17), &s));
  EXPECT_FALSE(parse_cost_state(std::string_view("(0,0,0,0,0,\"\",1,2,0,2,\"a\0b\")", 27), &s));
}

TEST(AssembleCostState, AcceptsWhatTheBinaryFormCarries) {
  CostStateParts p;
  p.cost = 750000000000000;
  p.priced_rows = 1;
  p.invalid_rows = 2;
  p.problem = static_cast<int64_t>(UsageError::NotANumber);
  p.kind = static_cast<int64_t>(JsonKind::String);
  p.value = "12a";
  CostState s;
  ASSERT_TRUE(assemble_cost_state(p, &s));
  EXPECT_EQ(text_of(s), "(0.00075,1,0,0,0,\"\",2,2,0,2,\"12a\")");
  p.value = std::string_view("1\0" "2", 3);
  EXPECT_FALSE(assemble_cost_state(p, &s));
  p.value = "12a";
  p.name = "x";  // a name without a reason
  EXPECT_FALSE(assemble_cost_state(p, &s));
}

// What a worker's partial twin sends: the text form, '@', the catalog
// version; split back into the two, with '@' and ')' inside quoted names
// left to the state.
TEST(CatalogStamp, FormatsAndSplits) {
  CostState s = empty_cost_state();
  ASSERT_TRUE(add_priced(s, 750000000000000));  // $0.00075
  char buf[kStampedCostStateTextSize];
  ASSERT_GT(format_stamped_cost_state(s, 42, buf), 0u);
  EXPECT_STREQ(buf, "(0.00075,1,0,0,0,\"\")@42");

  std::string_view state;
  bool has;
  int64_t v;
  ASSERT_TRUE(split_catalog_stamp(buf, &state, &has, &v));
  EXPECT_TRUE(has);
  EXPECT_EQ(v, 42);
  EXPECT_EQ(state, "(0.00075,1,0,0,0,\"\")");

  ASSERT_TRUE(split_catalog_stamp("(0.00075,1,0,0,0,\"\")", &state, &has, &v));  // no stamp
  EXPECT_FALSE(has);
  EXPECT_EQ(v, 0);
  EXPECT_EQ(state, "(0.00075,1,0,0,0,\"\")");
  ASSERT_TRUE(split_catalog_stamp("(0,0,1,1,1,\"a)@7\")", &state, &has, &v));  // '@' inside the name
  EXPECT_FALSE(has);
  ASSERT_TRUE(split_catalog_stamp("(0,0,1,1,1,\"a)@7\")@9", &state, &has, &v));
  EXPECT_TRUE(has);
  EXPECT_EQ(v, 9);
  EXPECT_EQ(state, "(0,0,1,1,1,\"a)@7\")");
  ASSERT_TRUE(split_catalog_stamp("(0,0,0,0,0,\"\")@9223372036854775807", &state, &has, &v));
  EXPECT_EQ(v, INT64_MAX);

  for (const char* bad : {"(0,0,0,0,0,\"\")@", "(0,0,0,0,0,\"\")@-1", "(0,0,0,0,0,\"\")@4x",
                          "(0,0,0,0,0,\"\")@9223372036854775808", "(0,0,0,0,0,\"\")@99999999999999999999"})
    EXPECT_FALSE(split_catalog_stamp(bad, &state, &has, &v)) << bad;

  // The longest state still fits with the longest version.
  CostState big = empty_cost_state();
  big.set_cost(-(static_cast<Atto>(1) << 126));
  big.priced_rows = big.unpriced_rows = big.unpriced_units = big.invalid_rows = INT64_MAX;
  add_unpriced(big, UnpricedReason::UnknownModel, "\"\"\"\"\"\"\"\"\"\"\"\"", 0);
  big.unpriced_rows = INT64_MAX;
  ASSERT_GT(format_stamped_cost_state(big, INT64_MAX, buf), 0u) << buf;
  ASSERT_TRUE(split_catalog_stamp(buf, &state, &has, &v));
  EXPECT_EQ(v, INT64_MAX);
  CostState back;
  ASSERT_TRUE(parse_cost_state(state, &back));
  EXPECT_EQ(text_of(back), std::string(state));
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
