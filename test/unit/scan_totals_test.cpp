// Unit tests for src/core/scan_totals.h: billing.usage_cost's rule, the
// scale of its numerics, 192-bit cost sums and a group's totals, each
// against what the SQL of billing._scan_table gave.
#include "scan_totals.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "test_support.h"

namespace billing {
namespace {

using billing_test::i128;
using billing_test::i128_str;

// gpt-4o: $2.50 / $1.25 / $10.00 per 1M input / cached input / output tokens.
constexpr TokenPrice kGpt4o{0, 2500000000000, 1250000000000, 10000000000000};

struct Lookup {
  const TokenPrice* price;
  int* calls;
  const TokenPrice* operator()() const {
    ++*calls;
    return price;
  }
};

TEST(UsageCostRule, NoNameIsNullWhateverTheTokens) {
  int calls = 0;
  Atto cost = 1;
  EXPECT_EQ(usage_cost_rule(false, 100, 50, 0, Lookup{&kGpt4o, &calls}, &cost), CostRule::Unpriced);
  EXPECT_EQ(usage_cost_rule(false, 0, 0, 0, Lookup{&kGpt4o, &calls}, &cost), CostRule::Unpriced);
  EXPECT_EQ(calls, 0);
}

TEST(UsageCostRule, NoTokensCostZeroWithoutAPrice) {
  int calls = 0;
  Atto cost = 1;
  EXPECT_EQ(usage_cost_rule(true, 0, 0, 0, Lookup{nullptr, &calls}, &cost), CostRule::Priced);
  EXPECT_EQ(cost, 0);
  EXPECT_EQ(calls, 0);
}

TEST(UsageCostRule, PricedAndUnpriced) {
  int calls = 0;
  Atto cost = 0;
  // 600 x 2.50/1M + 400 x 1.25/1M + 50 x 10/1M = 0.0015 + 0.0005 + 0.0005
  EXPECT_EQ(usage_cost_rule(true, 1000, 50, 400, Lookup{&kGpt4o, &calls}, &cost), CostRule::Priced);
  EXPECT_EQ(i128_str(cost), "2500000000000000");
  EXPECT_EQ(usage_cost_rule(true, 1000, 50, 400, Lookup{nullptr, &calls}, &cost), CostRule::Unpriced);
  EXPECT_EQ(calls, 2);
}

TEST(UsageCostRule, NegativeRowsAndErrors) {
  int calls = 0;
  Atto cost = 0;
  EXPECT_EQ(usage_cost_rule(true, -1000, -50, -400, Lookup{&kGpt4o, &calls}, &cost), CostRule::Priced);
  EXPECT_EQ(i128_str(cost), "-2500000000000000");
  EXPECT_EQ(usage_cost_rule(true, -1, 1, 0, Lookup{&kGpt4o, &calls}, &cost), CostRule::SignsDiffer);
  EXPECT_EQ(usage_cost_rule(true, INT64_MIN, 0, 0, Lookup{&kGpt4o, &calls}, &cost), CostRule::SignsDiffer);
  EXPECT_EQ(usage_cost_rule(true, 1, 0, 2, Lookup{&kGpt4o, &calls}, &cost), CostRule::CachedExceedsPrompt);
  // (token_cost cannot overflow with int64 counts and prices: at most
  // 2 x (2^63 - 1)^2 < 2^127; CostRule::OutOfRange is its false, kept as
  // usage_cost raises it.)
  const TokenPrice absurd{0, INT64_MAX, INT64_MAX, INT64_MAX};
  EXPECT_EQ(usage_cost_rule(true, INT64_MAX, INT64_MAX, 0, Lookup{&absurd, &calls}, &cost), CostRule::Priced);
  EXPECT_EQ(i128_str(cost), "170141183460469231694793815568465002498");
}

TEST(UsageCostScale, AtLeastTwoDecimals) {
  EXPECT_EQ(atto_decimals(0), 0);
  EXPECT_EQ(usage_cost_scale(0), 2);                                  // 0.00
  EXPECT_EQ(usage_cost_scale(i128("750000000000000000")), 2);         // 0.75
  EXPECT_EQ(usage_cost_scale(i128("2000000000000000000")), 2);        // 2.00
  EXPECT_EQ(usage_cost_scale(i128("750000000000000")), 5);            // 0.00075
  EXPECT_EQ(usage_cost_scale(i128("1")), 18);                         // 1e-18
  EXPECT_EQ(usage_cost_scale(i128("-750000000000000")), 5);           // -0.00075
  EXPECT_EQ(usage_cost_scale(i128("23058430092136939517500000000000")), 7);  // 23058430092136.9395175
}

std::string text(const AttoSum& s, int decimals) {
  char buf[kAttoSumTextSize];
  format_atto_sum(s, buf, decimals);
  return buf;
}

TEST(AttoSum, FormatsLikeFormatAtto) {
  const Atto values[] = {0, 1, -1, i128("750000000000000"), i128("-2500000000000000000"), billing_test::kI128Max,
                         billing_test::kI128Min, i128("123456789012345678901234567890")};
  for (Atto v : values) {
    for (int decimals : {0, 2, 5, 18}) {
      AttoSum s{};
      s.add(v);
      char expected[kAttoTextSize];
      format_atto(v, expected, decimals);
      EXPECT_EQ(text(s, decimals), expected) << i128_str(v) << " " << decimals;
    }
  }
}

TEST(AttoSum, BeyondOneHundredTwentyEightBits) {
  AttoSum s{};
  for (int i = 0; i < 4; ++i) s.add(billing_test::kI128Max);
  // 4 x (2^127 - 1) = 2^129 - 4 = 680564733841876926926749214863536422908 atto-dollars
  EXPECT_EQ(text(s, 2), "680564733841876926926.749214863536422908");
  for (int i = 0; i < 4; ++i) s.add(-billing_test::kI128Max);
  EXPECT_EQ(text(s, 0), "0");
  EXPECT_EQ(text(s, 2), "0.00");
  for (int i = 0; i < 3; ++i) s.add(billing_test::kI128Min);
  // 3 x -2^127 = -510423550381407695195061911147652317184
  EXPECT_EQ(text(s, 5), "-510423550381407695195.061911147652317184");
  s.add(billing_test::kI128Max);
  s.add(billing_test::kI128Max);
  s.add(billing_test::kI128Max);
  EXPECT_EQ(text(s, 0), "-0.000000000000000003");
}

ScanRow row(int64_t at, int64_t prompt, int64_t completion, bool priced, Atto cost) {
  ScanRow r;
  r.at = at;
  r.prompt = prompt;
  r.completion = completion;
  r.priced = priced;
  r.cost = cost;
  return r;
}

TEST(ScanTotals, SumsTimesAndProblems) {
  ScanTotals t{};
  t.add(row(50, 100, 50, true, i128("750000000000000")));
  t.add(row(10, 1000, 0, true, i128("2500000000000000")));
  ScanRow p;
  p.at = 70;
  p.problem = true;  // priced at 0: no tokens
  p.priced = true;
  t.add(p);
  EXPECT_EQ(t.messages, 3);
  EXPECT_EQ(i128_str(t.prompt), "1100");
  EXPECT_EQ(i128_str(t.completion), "50");
  EXPECT_EQ(t.problems, 1);
  EXPECT_EQ(t.first_at, 10);
  EXPECT_EQ(t.last_at, 70);
  EXPECT_EQ(i128_str(t.unpriced), "0");
  // 0.00075 + 0.0025 + 0.00 = 0.00325, at the scale of the finest term (5)
  char buf[kAttoSumTextSize];
  format_atto_sum(t.cost, buf, t.cost_scale);
  EXPECT_STREQ(buf, "0.00325");
}

TEST(ScanTotals, ScaleIsTheLargestTermsNotTheSums) {
  // 0.00075 + 0.00025 = 0.00100 in numeric (scale 5), not 0.001
  ScanTotals t{};
  t.add(row(1, 100, 50, true, i128("750000000000000")));
  t.add(row(2, 100, 0, true, i128("250000000000000")));
  char buf[kAttoSumTextSize];
  format_atto_sum(t.cost, buf, t.cost_scale);
  EXPECT_STREQ(buf, "0.00100");
}

TEST(ScanTotals, UnpricedRowsLeaveTheSumZero) {
  // coalesce(sum(NULL), 0) = 0, scale 0; their tokens are unpriced
  ScanTotals t{};
  t.add(row(1, 100, 50, false, 0));
  ScanRow r = row(2, 0, 0, false, 0);
  r.unsplit = 150;  // a total without a split: always unpriced
  r.estimated_prompt = 40;
  r.estimated_completion = 2;
  r.estimate_priced = false;
  t.add(r);
  EXPECT_EQ(t.cost_scale, 0);
  char buf[kAttoSumTextSize];
  format_atto_sum(t.cost, buf, t.cost_scale);
  EXPECT_STREQ(buf, "0");
  EXPECT_EQ(i128_str(t.unpriced), "342");  // 150 + 150 + 42
  EXPECT_EQ(i128_str(t.unsplit), "150");
}

TEST(ScanTotals, EstimatesPricedApart) {
  ScanTotals t{};
  ScanRow r;
  r.at = 5;
  r.priced = true;  // no tokens: 0.00
  r.estimated_prompt = 10;
  r.estimated_completion = 2;
  r.estimate_priced = true;
  r.estimated_cost = i128("2700000000000");  // 10 x 0.15/1M + 2 x 0.60/1M = 0.0000027
  t.add(r);
  char buf[kAttoSumTextSize];
  format_atto_sum(t.cost, buf, t.cost_scale);
  EXPECT_STREQ(buf, "0.00");
  format_atto_sum(t.estimated_cost, buf, t.estimated_cost_scale);
  EXPECT_STREQ(buf, "0.0000027");
  EXPECT_EQ(i128_str(t.unpriced), "0");
  // counts at the bigint limit add up exactly
  ScanTotals big{};
  big.add(row(1, INT64_MAX, INT64_MAX, false, 0));
  big.add(row(1, INT64_MAX, INT64_MAX, false, 0));
  EXPECT_EQ(i128_str(big.prompt), "18446744073709551614");
  EXPECT_EQ(i128_str(big.unpriced), "36893488147419103228");
}

}  // namespace
}  // namespace billing

namespace billing {
namespace {

// The scale of a sum is the largest usage_cost_scale of its terms, whatever
// their order: checked against that definition on many terms.
TEST(ScanTotals, ScaleOfManyTerms) {
  uint64_t seed = 7;
  for (int round = 0; round < 200; ++round) {
    ScanTotals t{};
    int expected = 0;
    for (int i = 0; i < 50; ++i) {
      seed = seed * 6364136223846793005u + 1442695040888963407u;
      // amounts with 0 to 18 significant decimals, some beyond 64 bits
      const int zeros = static_cast<int>((seed >> 33) % 19);
      Atto v = static_cast<Atto>((seed >> 40) % 1000 + 1);
      for (int z = 0; z < zeros; ++z) v *= 10;
      if (i % 17 == 0) v *= static_cast<Atto>(INT64_C(1000000000000));
      ScanRow r;
      r.priced = true;
      r.cost = v;
      t.add(r);
      expected = std::max(expected, usage_cost_scale(v));
    }
    EXPECT_EQ(t.cost_scale, expected) << round;
  }
}

}  // namespace
}  // namespace billing
