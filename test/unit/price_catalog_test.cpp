// Unit tests for src/core/price_catalog.h: effective-dated price series,
// model/service resolution, and the exact cost arithmetic.
#include "price_catalog.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory_resource>
#include <string>

#include "test_support.h"

namespace billing {
namespace {

using billing_test::i128_str;

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kMinusInfinity = kI64Min;  // timestamptz '-infinity'
constexpr int64_t kInfinity = kI64Max;       // timestamptz 'infinity'

// Microseconds since 2000-01-01 00:00 UTC (PostgreSQL's timestamptz); one day
// is 86,400,000,000 us.
// 2000-01-01 .. 2024-01-01: 24 x 365 + 6 leap days (2000, 04, 08, 12, 16, 20) = 8766 days;
// + Jan 31 + Feb 29 + Mar 31 + Apr 30 = 121 -> May 1 = day 8887, May 13 = day 8899.
constexpr int64_t k2024_05_13 = 768873600000000;  // 8899 x 86,400,000,000
// + May 31 + Jun 30 + Jul 31 = 92 -> Aug 1 = day 8979, Aug 6 = day 8984.
constexpr int64_t k2024_08_06 = 776217600000000;  // 8984 x 86,400,000,000
// Jul 1 = 8887 + 31 + 30 = day 8948, Jul 18 = day 8965.
constexpr int64_t k2024_07_18 = 774576000000000;  // 8965 x 86,400,000,000
// Sep 1 = Aug 1 + 31 = day 9010.
constexpr int64_t k2024_09_01 = 778464000000000;  // 9010 x 86,400,000,000

// Prices per token in atto-dollars = price per 1M tokens x 10^12.
constexpr int64_t kUsd0_075 = 75000000000;     // $0.075/1M
constexpr int64_t kUsd0_15 = 150000000000;     // $0.15/1M
constexpr int64_t kUsd0_60 = 600000000000;     // $0.60/1M
constexpr int64_t kUsd1_25 = 1250000000000;    // $1.25/1M
constexpr int64_t kUsd2_50 = 2500000000000;    // $2.50/1M
constexpr int64_t kUsd5 = 5000000000000;       // $5/1M
constexpr int64_t kUsd10 = 10000000000000;     // $10/1M
constexpr int64_t kUsd15 = 15000000000000;     // $15/1M
constexpr int64_t kUsd30 = 30000000000000;     // $30/1M
constexpr int64_t kUsd60 = 60000000000000;     // $60/1M

// The input price in effect at t; -1 when none, -2 without a series (never
// dereferences null, so a wrong result fails the test instead of crashing it).
int64_t input_at(const ModelSeries* s, int64_t t) {
  if (s == nullptr) return -2;
  const TokenPrice* p = s->at(t);
  return p ? p->input : -1;
}

int64_t first_unit_price(const ServiceSeries* s) { return s && !s->rows.empty() ? s->rows[0].per_unit : -1; }

ModelSeries series_with(std::initializer_list<int64_t> times) {
  ModelSeries s(std::pmr::get_default_resource());
  int64_t price = 1;
  for (int64_t t : times) s.rows.push_back(TokenPrice{t, price, price, price++});
  return s;
}

TEST(PriceSeries, AtBoundaries) {
  const ModelSeries s = series_with({100, 200, 300});  // input prices 1, 2, 3
  EXPECT_EQ(s.at(99), nullptr);  // before the first effective_from
  EXPECT_EQ(s.at(kMinusInfinity), nullptr);
  ASSERT_NE(s.at(100), nullptr);  // exactly at effective_from: that row applies
  EXPECT_EQ(input_at(&s, 100), 1);
  EXPECT_EQ(input_at(&s, 199), 1);
  EXPECT_EQ(input_at(&s, 200), 2);
  EXPECT_EQ(input_at(&s, 299), 2);
  EXPECT_EQ(input_at(&s, 300), 3);
  EXPECT_EQ(input_at(&s, kInfinity), 3);
}

TEST(PriceSeries, InfiniteEffectiveFrom) {
  const ModelSeries s = series_with({kMinusInfinity, 0, kInfinity});
  ASSERT_NE(s.at(kMinusInfinity), nullptr);  // a price from -infinity covers everything
  EXPECT_EQ(input_at(&s, kMinusInfinity), 1);
  EXPECT_EQ(input_at(&s, -1), 1);
  EXPECT_EQ(input_at(&s, 0), 2);
  EXPECT_EQ(input_at(&s, kInfinity - 1), 2);
  EXPECT_EQ(input_at(&s, kInfinity), 3);  // only 'infinity' itself
}

TEST(PriceSeries, Empty) {
  const ModelSeries s(std::pmr::get_default_resource());
  EXPECT_EQ(s.at(0), nullptr);
  EXPECT_EQ(s.at(kInfinity), nullptr);
}

TEST(PriceSeries, ServiceSeries) {
  ServiceSeries s(std::pmr::get_default_resource());
  s.rows.push_back(UnitPrice{k2024_05_13, 23000000000});
  EXPECT_EQ(s.at(k2024_05_13 - 1), nullptr);
  ASSERT_NE(s.at(k2024_05_13), nullptr);
  EXPECT_EQ(s.at(k2024_05_13)->per_unit, 23000000000);
}

// A catalog like billing.model_prices, rows added in no particular order.
class Catalog : public ::testing::Test {
 protected:
  void SetUp() override {
    cat.add_model_price("gpt-4o-mini", TokenPrice{k2024_07_18, kUsd0_15, kUsd0_075, kUsd0_60});
    cat.add_model_price("gpt-4o", TokenPrice{k2024_08_06, kUsd2_50, kUsd1_25, kUsd10});
    cat.add_model_price("gpt-4", TokenPrice{kMinusInfinity, kUsd30, kUsd30, kUsd60});
    cat.add_model_price("gpt-4o", TokenPrice{k2024_05_13, kUsd5, kUsd5, kUsd15});
    // The dated snapshot has its own row, effective from its release.
    cat.add_model_price("gpt-4o-2024-08-06", TokenPrice{k2024_08_06, kUsd2_50, kUsd1_25, kUsd10 - 1});
    cat.finish();
  }
  PriceCatalog cat;
};

TEST_F(Catalog, FindModel) {
  EXPECT_EQ(cat.model_count(), 4u);
  const ModelSeries* s = cat.find_model("gpt-4o");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->name, "gpt-4o");
  ASSERT_EQ(s->rows.size(), 2u);
  EXPECT_EQ(s->rows[0].effective_from, k2024_05_13);  // sorted by finish()
  EXPECT_EQ(s->rows[1].effective_from, k2024_08_06);
  for (const char* name : {"gpt-4o-mini", "gpt-4", "gpt-4o-2024-08-06"}) {
    const ModelSeries* m = cat.find_model(name);
    ASSERT_NE(m, nullptr) << name;
    EXPECT_EQ(m->name, name);
  }
  EXPECT_EQ(cat.find_model("GPT-4o"), nullptr);  // exact only
  EXPECT_EQ(cat.find_model("gpt-4o "), nullptr);
  EXPECT_EQ(cat.find_model(""), nullptr);
  EXPECT_EQ(cat.find_model("zzz"), nullptr);
  EXPECT_EQ(cat.find_model("a"), nullptr);
}

TEST_F(Catalog, PricesAtBoundaries) {
  const ModelSeries* s = cat.find_model("gpt-4o");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->at(k2024_05_13 - 1), nullptr);  // before the first price
  EXPECT_EQ(input_at(s, k2024_05_13), kUsd5);
  EXPECT_EQ(input_at(s, k2024_08_06 - 1), kUsd5);  // 1 us before the cut
  EXPECT_EQ(input_at(s, k2024_08_06), kUsd2_50);   // exactly at the cut
  EXPECT_EQ(input_at(s, kInfinity), kUsd2_50);
  EXPECT_EQ(s->at(kMinusInfinity), nullptr);
  EXPECT_EQ(input_at(cat.find_model("gpt-4"), kMinusInfinity), kUsd30);  // row from -infinity
}

TEST_F(Catalog, SnapshotSuffixResolvesToFamily) {
  const ModelResolution r = cat.resolve_model("gpt-4o-mini-2024-07-18");
  ASSERT_EQ(r.count, 1);
  EXPECT_EQ(r.series[0]->name, "gpt-4o-mini");
  const ModelResolution r2 = cat.resolve_model("gpt-4-0613");
  ASSERT_EQ(r2.count, 1);
  EXPECT_EQ(r2.series[0]->name, "gpt-4");
}

TEST_F(Catalog, NormalisedName) {
  const ModelResolution r = cat.resolve_model(" OpenAI/GPT-4o ");
  ASSERT_EQ(r.count, 1);
  EXPECT_EQ(r.series[0]->name, "gpt-4o");
}

TEST_F(Catalog, DatedNameWithItsOwnRow) {
  const ModelResolution r = cat.resolve_model("gpt-4o-2024-08-06");
  ASSERT_EQ(r.count, 2);
  EXPECT_EQ(r.series[0]->name, "gpt-4o-2024-08-06");
  EXPECT_EQ(r.series[1]->name, "gpt-4o");

  // From its effective_from on, the dated row prices it (output $10 - 1 atto
  // tells it apart from the family's $10).
  const ModelSeries* used = nullptr;
  const TokenPrice* p = price_at(r, k2024_09_01, &used);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->output, kUsd10 - 1);
  EXPECT_EQ(used, r.series[0]);
  used = nullptr;
  p = price_at(r, k2024_08_06, &used);  // exactly at the dated row's effective_from
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->output, kUsd10 - 1);
  ASSERT_NE(used, nullptr);
  EXPECT_EQ(used->name, "gpt-4o-2024-08-06");

  // Before it, the family's price in effect then ($5 in, $15 out).
  used = nullptr;
  p = price_at(r, k2024_08_06 - 1, &used);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->input, kUsd5);
  EXPECT_EQ(p->output, kUsd15);
  ASSERT_NE(used, nullptr);
  EXPECT_EQ(used->name, "gpt-4o");

  // Before the family's first price: nothing, and `used` is left alone.
  used = nullptr;
  EXPECT_EQ(price_at(r, k2024_05_13 - 1, &used), nullptr);
  EXPECT_EQ(used, nullptr);
  EXPECT_EQ(price_at(r, kMinusInfinity), nullptr);
  p = price_at(r, kInfinity);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->output, kUsd10 - 1);
}

TEST_F(Catalog, NormalisedDatedNameWithItsOwnRow) {
  const ModelResolution r = cat.resolve_model("OpenAI/GPT-4o-2024-08-06");
  // candidates: as stored, stripped as stored ("OpenAI/GPT-4o"), normalised, normalised stripped
  ASSERT_EQ(r.count, 2);
  EXPECT_EQ(r.series[0]->name, "gpt-4o-2024-08-06");
  EXPECT_EQ(r.series[1]->name, "gpt-4o");
}

TEST_F(Catalog, UnknownModel) {
  const ModelResolution r = cat.resolve_model("claude-3-opus");
  EXPECT_EQ(r.count, 0);
  const ModelSeries* used = nullptr;
  EXPECT_EQ(price_at(r, k2024_09_01, &used), nullptr);
  EXPECT_EQ(used, nullptr);
  EXPECT_EQ(cat.resolve_model("").count, 0);
}

TEST(PriceCatalog, DuplicateEffectiveFromLaterRowWins) {
  PriceCatalog cat;
  cat.add_model_price("m", TokenPrice{100, 1, 1, 1});
  cat.add_model_price("m", TokenPrice{200, 2, 2, 2});
  cat.add_model_price("m", TokenPrice{100, 3, 3, 3});  // same effective_from as the first, added later
  cat.finish();
  const ModelSeries* s = cat.find_model("m");
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->rows.size(), 2u);
  EXPECT_EQ(s->rows[0].effective_from, 100);
  EXPECT_EQ(s->rows[0].input, 3);
  EXPECT_EQ(s->rows[1].effective_from, 200);
  EXPECT_EQ(s->rows[1].input, 2);
}

TEST(PriceCatalog, InterleavedNamesAndUnsortedRows) {
  PriceCatalog cat;
  cat.add_model_price("b", TokenPrice{30, 3, 3, 3});
  cat.add_model_price("a", TokenPrice{10, 1, 1, 1});
  cat.add_model_price("b", TokenPrice{10, 1, 1, 1});  // back to "b" after "a"
  cat.add_model_price("c", TokenPrice{kInfinity, 9, 9, 9});
  cat.add_model_price("b", TokenPrice{20, 2, 2, 2});
  cat.add_model_price("a", TokenPrice{kMinusInfinity, 0, 0, 0});
  cat.finish();
  EXPECT_EQ(cat.model_count(), 3u);
  const ModelSeries* a = cat.find_model("a");
  const ModelSeries* b = cat.find_model("b");
  const ModelSeries* c = cat.find_model("c");
  ASSERT_TRUE(a && b && c);
  ASSERT_EQ(a->rows.size(), 2u);
  EXPECT_EQ(a->rows[0].effective_from, kMinusInfinity);
  EXPECT_EQ(a->rows[1].effective_from, 10);
  ASSERT_EQ(b->rows.size(), 3u);
  EXPECT_EQ(b->rows[0].input, 1);
  EXPECT_EQ(b->rows[1].input, 2);
  EXPECT_EQ(b->rows[2].input, 3);
  EXPECT_EQ(input_at(b, 25), 2);
  EXPECT_EQ(c->at(kI64Max - 1), nullptr);
  EXPECT_EQ(input_at(c, kInfinity), 9);
}

TEST(PriceCatalog, ManyModelsAreFound) {
  PriceCatalog cat;
  for (int i = 99; i >= 0; --i) cat.add_model_price("model-" + std::to_string(i), TokenPrice{0, i, i, i});
  cat.finish();
  EXPECT_EQ(cat.model_count(), 100u);
  for (int i = 0; i < 100; ++i) {
    const ModelSeries* s = cat.find_model("model-" + std::to_string(i));
    ASSERT_NE(s, nullptr) << i;
    EXPECT_EQ(input_at(s, 0), i);
  }
  EXPECT_EQ(cat.find_model("model-100"), nullptr);
}

TEST(PriceCatalog, Services) {
  PriceCatalog cat;
  cat.add_service_price("amazons3", UnitPrice{k2024_05_13, 23000000000});   // $0.023 per unit
  cat.add_service_price("AmazonEC2", UnitPrice{kMinusInfinity, 96000000000});  // stored mixed-case
  cat.add_service_price("amazonec2", UnitPrice{kMinusInfinity, 1});
  cat.finish();
  EXPECT_EQ(cat.service_count(), 3u);
  EXPECT_EQ(cat.model_count(), 0u);
  ASSERT_NE(cat.find_service("amazons3"), nullptr);
  EXPECT_EQ(cat.find_service("AmazonS3"), nullptr);
  EXPECT_EQ(cat.resolve_service("AmazonS3"), cat.find_service("amazons3"));
  EXPECT_EQ(cat.resolve_service("  AMAZONS3  "), cat.find_service("amazons3"));
  EXPECT_EQ(first_unit_price(cat.resolve_service("AmazonEC2")), 96000000000);  // exact match first
  EXPECT_EQ(first_unit_price(cat.resolve_service("AMAZONEC2")), 1);             // else lower-cased
  EXPECT_EQ(cat.resolve_service("\tamazons3"), nullptr);  // only spaces are trimmed
  EXPECT_EQ(cat.resolve_service("amazon"), nullptr);
  EXPECT_EQ(cat.resolve_service(""), nullptr);
  EXPECT_EQ(cat.resolve_service("   "), nullptr);
}

TEST(PriceCatalog, ServiceNameLengthLimit) {
  PriceCatalog cat;
  const std::string name64(64, 's');
  const std::string name65(65, 's');
  cat.add_service_price(name64, UnitPrice{0, 1});
  cat.add_service_price(name65, UnitPrice{0, 2});
  cat.finish();
  EXPECT_EQ(first_unit_price(cat.resolve_service(std::string(64, 'S'))), 1);  // lower-cased in 64 bytes
  EXPECT_EQ(first_unit_price(cat.resolve_service(name65)), 2);              // exact match needs no copy
  EXPECT_EQ(cat.resolve_service(std::string(65, 'S')), nullptr);             // too long to lower-case
  EXPECT_EQ(first_unit_price(cat.resolve_service(" " + std::string(64, 'S') + " ")), 1);
}

// A memory resource that counts what it hands out.
class CountingResource : public std::pmr::memory_resource {
 public:
  std::size_t allocations = 0;
  std::size_t live_bytes = 0;

 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    ++allocations;
    live_bytes += bytes;
    return std::pmr::new_delete_resource()->allocate(bytes, align);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    live_bytes -= bytes;
    std::pmr::new_delete_resource()->deallocate(p, bytes, align);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
};

TEST(PriceCatalog, AllocatesOnlyFromTheGivenResource) {
  CountingResource counting;
  std::pmr::memory_resource* const previous = std::pmr::set_default_resource(std::pmr::null_memory_resource());
  {
    PriceCatalog cat(&counting);
    // Names longer than any small-string buffer, so that they allocate too.
    cat.add_model_price("a-model-name-that-is-long-enough-to-allocate", TokenPrice{0, 1, 1, 1});
    cat.add_model_price("another-model-name-that-is-long-enough", TokenPrice{0, 2, 2, 2});
    cat.add_model_price("a-model-name-that-is-long-enough-to-allocate", TokenPrice{5, 3, 3, 3});
    cat.add_service_price("a-service-name-that-is-long-enough-to-allocate", UnitPrice{0, 1});
    cat.finish();
    EXPECT_GT(counting.allocations, 0u);
    EXPECT_EQ(input_at(cat.find_model("a-model-name-that-is-long-enough-to-allocate"), 5), 3);
    EXPECT_EQ(cat.resolve_model("another-model-name-that-is-long-enough").count, 1);
  }
  std::pmr::set_default_resource(previous);
  EXPECT_EQ(counting.live_bytes, 0u);  // everything given back
}

// ---------------------------------------------------------------------------
// token_cost and unit_cost

std::string cost_of(const TokenPrice& p, int64_t prompt, int64_t completion, int64_t cached) {
  Atto out = -1;
  if (!token_cost(p, prompt, completion, cached, &out)) return "overflow";
  return i128_str(out);
}

TEST(TokenCost, BriefExample) {
  // 100 prompt x $2.50/1M + 50 completion x $10/1M
  // = 100 x 2500000000000 + 50 x 10000000000000 = 250000000000000 + 500000000000000
  // = 750000000000000 atto-dollars = $0.00075
  EXPECT_EQ(cost_of(TokenPrice{0, kUsd2_50, kUsd1_25, kUsd10}, 100, 50, 0), "750000000000000");
}

TEST(TokenCost, SeedGpt4oMini) {
  // 100 x $0.15/1M + 50 x $0.60/1M = 100 x 150000000000 + 50 x 600000000000
  // = 15000000000000 + 30000000000000 = 45000000000000 = $0.000045
  EXPECT_EQ(cost_of(TokenPrice{0, kUsd0_15, kUsd0_075, kUsd0_60}, 100, 50, 0), "45000000000000");
}

TEST(TokenCost, CachedTokens) {
  // gpt-4o: 1,000,000 prompt of which 400,000 cached, 2,000 completion:
  //   600000 x 2500000000000  = 1500000000000000000
  // + 400000 x 1250000000000  =  500000000000000000
  // +   2000 x 10000000000000 =   20000000000000000
  // = 2020000000000000000 atto = $2.02
  EXPECT_EQ(cost_of(TokenPrice{0, kUsd2_50, kUsd1_25, kUsd10}, 1000000, 2000, 400000), "2020000000000000000");
  // All cached: 10 x 1250000000000 = 12500000000000
  EXPECT_EQ(cost_of(TokenPrice{0, kUsd2_50, kUsd1_25, kUsd10}, 10, 0, 10), "12500000000000");
}

TEST(TokenCost, Zero) {
  EXPECT_EQ(cost_of(TokenPrice{0, kUsd2_50, kUsd1_25, kUsd10}, 0, 0, 0), "0");
  EXPECT_EQ(cost_of(TokenPrice{0, 0, 0, 0}, kI64Max, kI64Max, 0), "0");
}

TEST(TokenCost, BigintLimits) {
  // 9223372036854775807 prompt tokens x $2.50/1M = 9223372036854775807 x 2500000000000
  // = 23058430092136939517500000000000
  EXPECT_EQ(cost_of(TokenPrice{0, kUsd2_50, kUsd1_25, kUsd10}, kI64Max, 0, 0), "23058430092136939517500000000000");
  // Every factor at INT64_MAX: (2^63 - 1)^2 x 2 = 170141183460469231694793815568465002498,
  // still below 2^127 - 1 = 170141183460469231731687303715884105727.
  EXPECT_EQ(cost_of(TokenPrice{0, kI64Max, kI64Max, kI64Max}, kI64Max, kI64Max, 0),
            "170141183460469231694793815568465002498");
  EXPECT_EQ(cost_of(TokenPrice{0, kI64Max, kI64Max, kI64Max}, kI64Max, kI64Max, kI64Max),
            "170141183460469231694793815568465002498");
  // Half cached: (2^62 - 1) x (2^63 - 1) + 2^62 x (2^63 - 1) = (2^63 - 1)^2
  EXPECT_EQ(cost_of(TokenPrice{0, kI64Max, kI64Max, 0}, kI64Max, 0, 4611686018427387904),
            "85070591730234615847396907784232501249");
}

TEST(TokenCost, NegativePricesAtTheLimits) {
  // A negative (credit) price is representable: -2^63 x (2^63 - 1) x 2
  // = -170141183460469231713240559642174554112 > -2^127
  EXPECT_EQ(cost_of(TokenPrice{0, kI64Min, kI64Min, kI64Min}, kI64Max, kI64Max, 0),
            "-170141183460469231713240559642174554112");
}

TEST(UnitCost, Basics) {
  Atto out = -1;
  // 1.5 units (1500000 micro-units) x $0.023 (23000000000 pico-dollars)
  // = 34500000000000000 atto = $0.0345
  ASSERT_TRUE(unit_cost(UnitPrice{0, 23000000000}, 1500000, &out));
  EXPECT_EQ(i128_str(out), "34500000000000000");
  ASSERT_TRUE(unit_cost(UnitPrice{0, 23000000000}, 0, &out));
  EXPECT_EQ(i128_str(out), "0");
  // (2^63 - 1) x (2^63 - 1) = 85070591730234615847396907784232501249
  ASSERT_TRUE(unit_cost(UnitPrice{0, kI64Max}, kI64Max, &out));
  EXPECT_EQ(i128_str(out), "85070591730234615847396907784232501249");
  // -2^63 x -2^63 = 2^126 = 85070591730234615865843651857942052864
  ASSERT_TRUE(unit_cost(UnitPrice{0, kI64Min}, kI64Min, &out));
  EXPECT_EQ(i128_str(out), "85070591730234615865843651857942052864");
  // a negative quantity (a refund): -1000000 x 5 = -5000000
  ASSERT_TRUE(unit_cost(UnitPrice{0, 5}, -1000000, &out));
  EXPECT_EQ(i128_str(out), "-5000000");
}

}  // namespace
}  // namespace billing
