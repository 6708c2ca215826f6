#include "price_catalog.h"

#include <algorithm>

#include "model_name.h"

namespace billing {

template <typename Price>
const Price* PriceSeries<Price>::at(int64_t t) const noexcept {
  // Last row whose effective_from <= t.
  auto it = std::upper_bound(rows.begin(), rows.end(), t,
                             [](int64_t time, const Price& p) { return time < p.effective_from; });
  if (it == rows.begin()) return nullptr;
  return &*(it - 1);
}

template struct PriceSeries<TokenPrice>;
template struct PriceSeries<UnitPrice>;

PriceCatalog::PriceCatalog(std::pmr::memory_resource* mr) : mr_(mr), models_(mr), services_(mr) {}

template <typename Series, typename Price>
void PriceCatalog::add(std::pmr::vector<Series>& all, std::string_view name, const Price& price,
                       std::pmr::memory_resource* mr) {
  // Rows arrive sorted by name in practice, so the last series is the usual hit.
  if (all.empty() || all.back().name != name) {
    auto it = std::find_if(all.begin(), all.end(), [&](const Series& s) { return s.name == name; });
    if (it == all.end()) {
      all.emplace_back(mr);
      all.back().name.assign(name.data(), name.size());
      all.back().rows.push_back(price);
      return;
    }
    it->rows.push_back(price);
    return;
  }
  all.back().rows.push_back(price);
}

void PriceCatalog::add_model_price(std::string_view model, const TokenPrice& price) {
  add(models_, model, price, mr_);
}

void PriceCatalog::add_service_price(std::string_view service, const UnitPrice& price) {
  add(services_, service, price, mr_);
}

namespace {
template <typename Series>
void sort_series(std::pmr::vector<Series>& all) {
  std::sort(all.begin(), all.end(), [](const Series& a, const Series& b) { return a.name < b.name; });
  for (Series& s : all) {
    std::stable_sort(s.rows.begin(), s.rows.end(),
                     [](const auto& a, const auto& b) { return a.effective_from < b.effective_from; });
    // Two rows with the same effective_from cannot both apply; the table's
    // primary key prevents it, and the later one wins here if it ever happens.
    auto last = std::unique(s.rows.rbegin(), s.rows.rend(), [](const auto& a, const auto& b) {
      return a.effective_from == b.effective_from;
    });
    s.rows.erase(s.rows.begin(), last.base());
  }
}
}  // namespace

void PriceCatalog::finish() {
  sort_series(models_);
  sort_series(services_);
}

template <typename Series>
const Series* PriceCatalog::find(const std::pmr::vector<Series>& all, std::string_view name) noexcept {
  auto it = std::lower_bound(all.begin(), all.end(), name,
                             [](const Series& s, std::string_view n) { return std::string_view(s.name) < n; });
  if (it == all.end() || std::string_view(it->name) != name) return nullptr;
  return &*it;
}

const ModelSeries* PriceCatalog::find_model(std::string_view name) const noexcept { return find(models_, name); }

const ServiceSeries* PriceCatalog::find_service(std::string_view name) const noexcept {
  return find(services_, name);
}

ModelResolution PriceCatalog::resolve_model(std::string_view stored) const noexcept {
  ModelCandidates candidates;
  model_candidates(stored, candidates);
  ModelResolution r;
  for (int i = 0; i < candidates.count; ++i) {
    if (const ModelSeries* s = find_model(candidates.names[i])) r.series[r.count++] = s;
  }
  return r;
}

const ServiceSeries* PriceCatalog::resolve_service(std::string_view stored) const noexcept {
  if (const ServiceSeries* s = find_service(stored)) return s;
  std::size_t b = 0, e = stored.size();
  while (b < e && stored[b] == ' ') ++b;
  while (e > b && stored[e - 1] == ' ') --e;
  char lower[64];
  if (e - b > sizeof lower) return nullptr;
  for (std::size_t i = b; i < e; ++i) {
    const char c = stored[i];
    lower[i - b] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  return find_service(std::string_view(lower, e - b));
}

const TokenPrice* price_at(const ModelResolution& r, int64_t t, const ModelSeries** used) noexcept {
  for (int i = 0; i < r.count; ++i) {
    if (const TokenPrice* p = r.series[i]->at(t)) {
      if (used) *used = r.series[i];
      return p;
    }
  }
  return nullptr;
}

bool unit_cost(const UnitPrice& p, int64_t quantity_micro, Atto* out) noexcept {
  *out = static_cast<Atto>(quantity_micro) * p.per_unit;  // 1e-6 x 1e-12 = 1e-18
  return true;
}

}  // namespace billing

#include "no_postgres.h"
