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

struct PriceCache {
  static constexpr int kEntries = 8;
  // Longer names are resolved again on every row (model names rarely come
  // near this; fine-tuned ones like "ft:gpt-4o-mini-2024-07-18:org::id"
  // are about 40 bytes).
  static constexpr std::size_t kMaxName = 64;

  struct Entry {
    ModelResolution resolution;
    PriceSpan span;  // the price last found for this name (price nullptr: none yet)
    uint32_t len;
    char name[kMaxName];
  };

  int used;      // entries[0, used) hold names
  int last_hit;  // the entry the previous row found (when used > 0)
  int next;      // the entry a new name replaces once all are used
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

// price_at(catalog.resolve_model(model), t), with the series that priced it.
CachedPrice cached_price(PriceCache& cache, const PriceCatalog& catalog, std::string_view model,
                         int64_t t) noexcept;

}  // namespace billing
