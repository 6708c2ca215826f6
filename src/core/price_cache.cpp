#include "price_cache.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace billing {

PriceSpan price_span_at(const ModelResolution& r, int64_t t) noexcept {
  // The first series with a price at t gives it (price_at). That answer
  // holds until the series' next row, and until any earlier series, which
  // has no price at t, gets its first one.
  int64_t last = std::numeric_limits<int64_t>::max();
  for (int i = 0; i < r.count; ++i) {
    const ModelSeries& s = *r.series[i];
    if (s.rows.empty()) continue;
    const auto next = std::upper_bound(s.rows.begin(), s.rows.end(), t,
                                       [](int64_t time, const TokenPrice& p) { return time < p.effective_from; });
    // next->effective_from > t >= INT64_MIN: subtracting 1 cannot overflow.
    if (next != s.rows.end()) last = std::min(last, next->effective_from - 1);
    if (next == s.rows.begin()) continue;  // no price at t here
    const TokenPrice& p = *(next - 1);
    PriceSpan span;
    span.price = &p;
    span.series = &s;
    span.from = p.effective_from;
    span.last = last;
    return span;
  }
  return PriceSpan{};
}

PriceCache empty_price_cache() noexcept { return PriceCache{}; }

namespace {

bool same_name(const PriceCache::Entry& e, const NameKey& key, std::string_view model) {
  return e.key == key && (model.size() <= kExactNameKey || std::memcmp(e.name, model.data(), model.size()) == 0);
}

PriceCache::Entry& entry_for(PriceCache& c, const PriceCatalog& catalog, std::string_view model) {
  const NameKey key = name_key(model);
  for (int i = 0; i < c.used; ++i) {
    if (same_name(c.entries[i], key, model)) return c.entries[i];
  }
  PriceCache::Entry* e = &c.scratch;
  if (model.size() <= PriceCache::kMaxName) {
    int slot;
    if (c.used < PriceCache::kEntries) {
      slot = c.used++;
    } else {
      slot = c.next;
      c.next = (c.next + 1) % PriceCache::kEntries;
    }
    e = &c.entries[slot];
    if (!model.empty()) std::memcpy(e->name, model.data(), model.size());
  }
  e->key = key;
  e->resolution = catalog.resolve_model(model);
  e->span = PriceSpan{};
  return *e;
}

}  // namespace

const ModelResolution& cached_resolution(PriceCache& cache, const PriceCatalog& catalog,
                                         std::string_view model) noexcept {
  return entry_for(cache, catalog, model).resolution;
}

CachedPrice cached_price_lookup(PriceCache& cache, const PriceCatalog& catalog, std::string_view model,
                                int64_t t) noexcept {
  PriceCache::Entry& e = entry_for(cache, catalog, model);
  if (e.span.price != nullptr && e.span.from <= t && t <= e.span.last)
    return CachedPrice{e.span.price, e.span.series, true};
  const PriceSpan span = price_span_at(e.resolution, t);
  if (span.price != nullptr) e.span = span;
  return CachedPrice{span.price, span.series, e.resolution.count > 0};
}

}  // namespace billing

#include "no_postgres.h"
