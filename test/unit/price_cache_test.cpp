// Unit tests for src/core/price_cache.h: the span of times a price covers
// (price_span_at) and the per-scan cache of resolutions and last prices.
// Whatever the cache holds, it must answer what price_at of the name's
// resolution answers, for every name and time in any order.
#include "price_cache.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace billing {
namespace {

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kDay = 86400000000;

// A catalog with the shapes resolution meets: a family with a price change
// (gpt-4o), a dated name with its own row that starts after the family's
// first price (gpt-4o-2024-08-06), a family priced before and after a dated
// snapshot (gpt-4o-mini), rows from -infinity and at +infinity, and a
// series whose first price comes late.
std::unique_ptr<PriceCatalog> make_catalog() {
  auto cat = std::make_unique<PriceCatalog>();
  cat->add_model_price("gpt-4o", TokenPrice{100 * kDay, 5, 5, 15});
  cat->add_model_price("gpt-4o", TokenPrice{200 * kDay, 2, 1, 10});
  cat->add_model_price("gpt-4o-2024-08-06", TokenPrice{150 * kDay, 3, 1, 9});
  cat->add_model_price("gpt-4o-mini", TokenPrice{120 * kDay, 1, 1, 6});
  cat->add_model_price("old", TokenPrice{kI64Min, 7, 7, 7});
  cat->add_model_price("old", TokenPrice{50 * kDay, 8, 8, 8});
  cat->add_model_price("late", TokenPrice{kI64Max, 9, 9, 9});
  cat->add_model_price("late-2024-01-01", TokenPrice{300 * kDay, 4, 4, 4});
  cat->finish();
  return cat;
}

const std::vector<std::string>& names() {
  static const std::vector<std::string> n = {
      "gpt-4o",       "gpt-4o-2024-08-06", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", " OpenAI/GPT-4o ",
      "old",          "late",              "late-2024-01-01", "unknown-model", "", "gpt-4o-0613",
      std::string(PriceCache::kMaxName, 'x'), std::string(PriceCache::kMaxName + 1, 'x'),
      std::string(PriceCache::kMaxName + 1, 'x') + "-2024-08-06",
  };
  return n;
}

// Times around every effective_from of the catalog, and the extremes.
std::vector<int64_t> times() {
  std::vector<int64_t> t = {kI64Min, kI64Min + 1, 0, kI64Max - 1, kI64Max};
  for (int64_t d : {50, 100, 120, 150, 200, 300}) {
    for (int64_t delta : {-kDay, int64_t{-1}, int64_t{0}, int64_t{1}, kDay}) t.push_back(d * kDay + delta);
  }
  return t;
}

TEST(PriceSpanAt, SameAnswerAsPriceAtOverItsWholeSpan) {
  const auto cat = make_catalog();
  const std::vector<int64_t> ts = times();
  for (const std::string& name : names()) {
    SCOPED_TRACE(name);
    const ModelResolution r = cat->resolve_model(name);
    for (int64_t t : ts) {
      const ModelSeries* used = nullptr;
      const TokenPrice* p = price_at(r, t, &used);
      const PriceSpan s = price_span_at(r, t);
      EXPECT_EQ(s.price, p) << t;
      if (p == nullptr) continue;
      EXPECT_EQ(s.series, used);
      ASSERT_LE(s.from, t);
      ASSERT_LE(t, s.last);
      // Every time of the span (its ends and the times listed inside it)
      // has the same answer, and the times just outside it another one.
      EXPECT_EQ(price_at(r, s.from), p);
      EXPECT_EQ(price_at(r, s.last), p);
      for (int64_t u : ts) {
        if (u >= s.from && u <= s.last) {
          EXPECT_EQ(price_at(r, u), p) << u;
        }
      }
      if (s.from != kI64Min) {
        EXPECT_NE(price_at(r, s.from - 1), p);
      }
      if (s.last != kI64Max) {
        EXPECT_NE(price_at(r, s.last + 1), p);
      }
    }
  }
}

TEST(PriceSpanAt, EarlierSeriesCutTheSpan) {
  // gpt-4o-2024-08-06 resolves to its own series, then gpt-4o. Before its
  // own first price (day 150), gpt-4o's launch price applies, up to day 150.
  const auto cat = make_catalog();
  const ModelResolution r = cat->resolve_model("gpt-4o-2024-08-06");
  ASSERT_EQ(r.count, 2);
  const PriceSpan before = price_span_at(r, 120 * kDay);
  ASSERT_NE(before.price, nullptr);
  EXPECT_EQ(before.series, r.series[1]);
  EXPECT_EQ(before.from, 100 * kDay);
  EXPECT_EQ(before.last, 150 * kDay - 1);
  const PriceSpan after = price_span_at(r, 250 * kDay);
  EXPECT_EQ(after.series, r.series[0]);
  EXPECT_EQ(after.from, 150 * kDay);
  EXPECT_EQ(after.last, kI64Max);
  EXPECT_EQ(price_span_at(r, 100 * kDay - 1).price, nullptr);
}

// The cache against the uncached answer on a long sequence of (name, time)
// pairs: names repeat and come back after being evicted (more names than
// entries), times move forward, back and jump across price changes.
TEST(PriceCache, AnswersWhatPriceAtAnswers) {
  const auto cat = make_catalog();
  const std::vector<std::string>& ns = names();
  static_assert(PriceCache::kEntries < 14, "the test names more models than the cache keeps");
  const std::vector<int64_t> ts = times();
  auto cache = std::make_unique<PriceCache>(empty_price_cache());
  uint64_t x = 88172645463325252ull;  // xorshift64
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (int i = 0; i < 20000; ++i) {
    // Mostly a few names, as in a table; now and then any of them.
    const std::string& name = ns[next() % 8 < 6 ? next() % 3 : next() % ns.size()];
    const int64_t t = ts[next() % ts.size()];
    const ModelResolution r = cat->resolve_model(name);
    const ModelSeries* used = nullptr;
    const TokenPrice* want = price_at(r, t, &used);
    const CachedPrice got = cached_price(*cache, *cat, name, t);
    ASSERT_EQ(got.price, want) << name << " at " << t << " (step " << i << ")";
    ASSERT_EQ(got.series, want ? used : nullptr);
    ASSERT_EQ(got.known, r.count > 0);
    const ModelResolution& cr = cached_resolution(*cache, *cat, name);
    ASSERT_EQ(cr.count, r.count);
    for (int k = 0; k < r.count; ++k) ASSERT_EQ(cr.series[k], r.series[k]);
  }
  EXPECT_EQ(cache->used, PriceCache::kEntries);
}

TEST(PriceCache, KeepsNamesAndSpans) {
  const auto cat = make_catalog();
  auto cache = std::make_unique<PriceCache>(empty_price_cache());
  const CachedPrice a = cached_price(*cache, *cat, "gpt-4o", 250 * kDay);
  ASSERT_NE(a.price, nullptr);
  EXPECT_EQ(a.price->input, 2);
  ASSERT_EQ(cache->used, 1);
  const PriceCache::Entry& e = cache->entries[0];
  EXPECT_EQ(std::string(e.name, e.key.len), "gpt-4o");
  EXPECT_EQ(e.span.from, 200 * kDay);
  EXPECT_EQ(e.span.last, kI64Max);
  // Back in time: the span moves to the launch price.
  const CachedPrice b = cached_price(*cache, *cat, "gpt-4o", 150 * kDay);
  EXPECT_EQ(b.price->input, 5);
  EXPECT_EQ(e.span.from, 100 * kDay);
  EXPECT_EQ(e.span.last, 200 * kDay - 1);
  // No price at that time: the last span stays, the name is known.
  const CachedPrice c = cached_price(*cache, *cat, "gpt-4o", 10 * kDay);
  EXPECT_EQ(c.price, nullptr);
  EXPECT_TRUE(c.known);
  EXPECT_EQ(e.span.from, 100 * kDay);
  // An unknown name is kept too (and is not known).
  const CachedPrice d = cached_price(*cache, *cat, "claude", 150 * kDay);
  EXPECT_EQ(d.price, nullptr);
  EXPECT_FALSE(d.known);
  EXPECT_EQ(cache->used, 2);
  // A name too long to keep is resolved each time and takes no entry.
  const std::string long_name(PriceCache::kMaxName + 1, 'a');
  EXPECT_FALSE(cached_price(*cache, *cat, long_name, 150 * kDay).known);
  EXPECT_EQ(cache->used, 2);
}

// A name of up to kExactNameKey bytes is all in its key: changing any one
// byte, or the length, changes the key. Longer names keep their first 16
// and last 8 bytes in it.
TEST(NameKey, CoversEveryByteOfShortNames) {
  for (std::size_t n = 0; n <= kExactNameKey + 8; ++n) {
    std::string name;
    for (std::size_t i = 0; i < n; ++i) name.push_back(static_cast<char>('a' + i % 26));
    const NameKey k = name_key(name);
    EXPECT_EQ(k.len, n);
    EXPECT_EQ(name_key(std::string(name)), k);  // a function of the bytes only
    EXPECT_FALSE(name_key(name + "a") == k);
    for (std::size_t i = 0; i < n; ++i) {
      for (unsigned char flip : {0x01, 0x80, 0xFF}) {
        std::string other = name;
        other[i] = static_cast<char>(static_cast<unsigned char>(other[i]) ^ flip);
        const bool covered = n <= kExactNameKey || i < 16 || i >= n - 8;
        EXPECT_EQ(!(name_key(other) == k), covered) << "length " << n << " byte " << i;
      }
    }
  }
}

TEST(PriceCache, LongNamesWithTheSameKey) {
  // Two names longer than kExactNameKey that differ only in a byte the key
  // does not hold: both cached, each priced as itself.
  auto cat = std::make_unique<PriceCatalog>();
  const std::string a = "model-" + std::string(20, 'x') + "-aaaaaaaaa";
  std::string b = a;
  b[18] = 'y';
  ASSERT_TRUE(name_key(a) == name_key(b));
  cat->add_model_price(a, TokenPrice{0, 1, 1, 1});
  cat->add_model_price(b, TokenPrice{0, 2, 2, 2});
  cat->finish();
  auto cache = std::make_unique<PriceCache>(empty_price_cache());
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(cached_price(*cache, *cat, a, kDay).price->input, 1);
    EXPECT_EQ(cached_price(*cache, *cat, b, kDay).price->input, 2);
  }
  EXPECT_EQ(cache->used, 2);
}

TEST(PriceCache, ZeroedIsEmpty) {
  auto zeroed = std::make_unique<PriceCache>();
  std::memset(static_cast<void*>(zeroed.get()), 0, sizeof(PriceCache));
  const auto cat = make_catalog();
  const CachedPrice p = cached_price(*zeroed, *cat, "gpt-4o-mini-2024-07-18", 150 * kDay);
  ASSERT_NE(p.price, nullptr);
  EXPECT_EQ(p.price->output, 6);
  EXPECT_EQ(p.series, cat->find_model("gpt-4o-mini"));
}

}  // namespace
}  // namespace billing
