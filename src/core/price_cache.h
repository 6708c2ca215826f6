// What a scan remembers between rows to price them quickly: the catalog
// series each model name it met resolves through, and the price each name
// last got with the times that price covers. Rows repeat a few model names
// and, in a table read in insertion order, consecutive rows have close
// times, so most rows are priced with one name comparison and one range
// check.
//
// Plain data with no destructor and no allocation (the names it keeps are
// copied inside it): the glue keeps one per call site in fn_extra, zeroed,
// for the length of a query. It points into one PriceCatalog, which must
// outlive it and must not change while it is used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "price_catalog.h"

namespace billing {

// The price `price_span_at` found, and the times [from, last] (both
// included) at which the same resolution gives the same price.
struct PriceSpan {
  const TokenPrice* price = nullptr;  // nullptr: no series has a price at that time
  const ModelSeries* series = nullptr;
  int64_t from = 0;
  int64_t last = 0;
};

// price_at(r, t) with the series that priced it, and the largest span of
// times around t with that same answer. When no series has a price at t,
// price and series are nullptr and the span is not set.
PriceSpan price_span_at(const ModelResolution& r, int64_t t) noexcept;

// A fixed-size summary of a name: its length and up to three 8-byte words
// of it (the first, the second and the last; smaller pieces when shorter).
// Two names of at most kExactNameKey bytes are equal exactly when their keys
// are; longer ones with equal keys still need a comparison.
struct NameKey {
  uint64_t len;
  uint64_t a, b, c;
  bool operator==(const NameKey& o) const noexcept { return len == o.len && a == o.a && b == o.b && c == o.c; }
};
inline constexpr std::size_t kExactNameKey = 24;

inline NameKey name_key(std::string_view name) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(name.data());
  const std::size_t n = name.size();
  auto load64 = [](const unsigned char* q) {
    uint64_t v;
    std::memcpy(&v, q, sizeof v);
    return v;
  };
  auto load32 = [](const unsigned char* q) {
    uint32_t v;
    std::memcpy(&v, q, sizeof v);
    return static_cast<uint64_t>(v);
  };
  NameKey k{n, 0, 0, 0};
  if (n >= 8) {
    // Bytes 0-7, 8-15 (from 16 bytes on) and the last 8: all of a name of
    // up to 24 bytes.
    k.a = load64(p);
    const uint64_t second = load64(p + (n >= 16 ? 8 : 0));
    k.b = n >= 16 ? second : 0;
    k.c = load64(p + n - 8);
  } else if (n >= 4) {
    k.a = load32(p) | load32(p + n - 4) << 32;  // the first 4 and the last 4
  } else if (n > 0) {
    k.a = p[0] | static_cast<uint64_t>(p[n / 2]) << 8 | static_cast<uint64_t>(p[n - 1]) << 16;
  }
  return k;
}

struct PriceCache {
  static constexpr int kEntries = 8;
  // Longer names are resolved again on every row (model names rarely come
  // near this; fine-tuned ones like "ft:gpt-4o-mini-2024-07-18:org::id"
  // are about 40 bytes).
  static constexpr std::size_t kMaxName = 64;

  struct Entry {
    NameKey key;
    ModelResolution resolution;
    PriceSpan span;  // the price last found for this name (price nullptr: none yet)
    char name[kMaxName];
  };

  int used;  // entries[0, used) hold names
  int next;  // the entry a new name replaces once all are used
  Entry entries[kEntries];
  Entry scratch;  // the resolution of a name too long to keep
};

// The glue allocates it zeroed and never destroys it.
static_assert(std::is_trivially_destructible_v<PriceCache> && std::is_trivially_copyable_v<PriceCache>);

// An empty cache (a zeroed PriceCache is one too).
PriceCache empty_price_cache() noexcept;

// The catalog series `model` resolves through: catalog.resolve_model(model),
// kept for the next rows. The reference stays valid until the next call.
const ModelResolution& cached_resolution(PriceCache& cache, const PriceCatalog& catalog,
                                         std::string_view model) noexcept;

struct CachedPrice {
  const TokenPrice* price;    // nullptr: cannot be priced at that time
  const ModelSeries* series;  // the series that priced it
  bool known;                 // the name resolves to at least one series
};

// cached_price for any case: finds or makes the name's entry, and searches
// the price by date when t is outside the span of its last one.
CachedPrice cached_price_lookup(PriceCache& cache, const PriceCatalog& catalog, std::string_view model,
                                int64_t t) noexcept;

// price_at(catalog.resolve_model(model), t), with the series that priced it.
// Inline for the usual row: a name met before (found among the entries by
// its key, without a branch per entry) at a time within its last price's
// span.
inline CachedPrice cached_price(PriceCache& cache, const PriceCatalog& catalog, std::string_view model,
                                int64_t t) noexcept {
  const NameKey key = name_key(model);
  int found = -1;
  for (int i = 0; i < cache.used; ++i) found = cache.entries[i].key == key ? i : found;
  if (found >= 0 && model.size() <= kExactNameKey) {
    const PriceCache::Entry& e = cache.entries[found];
    if (e.span.price != nullptr && e.span.from <= t && t <= e.span.last)
      return CachedPrice{e.span.price, e.span.series, true};
  }
  return cached_price_lookup(cache, catalog, model, t);
}

}  // namespace billing
