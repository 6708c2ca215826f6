// The effective-dated price catalog, as the cost functions see it.
//
// Built from the rows of billing.model_prices and billing.aws_prices; each
// model (or service) has a series of prices sorted by effective_from, and a
// price applies from its effective_from until the next one of the same name.
// Times are microseconds since 2000-01-01 UTC (PostgreSQL's timestamptz), with
// INT64_MIN / INT64_MAX for -infinity / infinity.
//
// Containers draw memory from a caller-supplied std::pmr::memory_resource, so
// the extension can keep a catalog in a PostgreSQL memory context while the
// unit tests use the default heap.
#pragma once

#include <cstdint>
#include <memory_resource>
#include <string_view>
#include <vector>
#include <string>

#include "money.h"

namespace billing {

// A price per token in atto-dollars (a price per 1M tokens times 1e12).
struct TokenPrice {
  int64_t effective_from;
  int64_t input;
  int64_t cached_input;  // equals input when the model has no cached-input discount
  int64_t output;
};

// A price per unit in pico-dollars (dollars times 1e12).
struct UnitPrice {
  int64_t effective_from;
  int64_t per_unit;
};

template <typename Price>
struct PriceSeries {
  std::pmr::string name;
  std::pmr::vector<Price> rows;  // sorted by effective_from, no duplicates

  explicit PriceSeries(std::pmr::memory_resource* mr) : name(mr), rows(mr) {}
  // The price in effect at `t`, or nullptr before the first effective_from.
  const Price* at(int64_t t) const noexcept;
};

using ModelSeries = PriceSeries<TokenPrice>;
using ServiceSeries = PriceSeries<UnitPrice>;

// The catalog series a stored model name resolves through, in order.
struct ModelResolution {
  const ModelSeries* series[4] = {};
  int count = 0;
};

class PriceCatalog {
 public:
  explicit PriceCatalog(std::pmr::memory_resource* mr = std::pmr::get_default_resource());

  // Loading. These allocate and may throw std::bad_alloc; call finish() last.
  void add_model_price(std::string_view model, const TokenPrice& price);
  void add_service_price(std::string_view service, const UnitPrice& price);
  void finish();

  const ModelSeries* find_model(std::string_view name) const noexcept;
  const ServiceSeries* find_service(std::string_view name) const noexcept;

  // Every catalog series the stored name can resolve to (model_name.h).
  ModelResolution resolve_model(std::string_view stored) const noexcept;
  // The service exactly as stored, else trimmed and lower-cased.
  const ServiceSeries* resolve_service(std::string_view stored) const noexcept;

  std::size_t model_count() const noexcept { return models_.size(); }
  std::size_t service_count() const noexcept { return services_.size(); }

 private:
  template <typename Series, typename Price>
  static void add(std::pmr::vector<Series>& all, std::string_view name, const Price& price,
                  std::pmr::memory_resource* mr);
  template <typename Series>
  static const Series* find(const std::pmr::vector<Series>& all, std::string_view name) noexcept;

  std::pmr::memory_resource* mr_;
  std::pmr::vector<ModelSeries> models_;
  std::pmr::vector<ServiceSeries> services_;
};

// The first series of `r` with a price in effect at `t`; nullptr when none.
// `used` (optional) receives the series that priced it.
const TokenPrice* price_at(const ModelResolution& r, int64_t t, const ModelSeries** used = nullptr) noexcept;

// (prompt - cached) x input + cached x cached_input + completion x output, in
// atto-dollars. Counts must be non-negative with cached <= prompt. False on
// overflow (only possible for absurd prices).
inline bool token_cost(const TokenPrice& p, int64_t prompt, int64_t completion, int64_t cached, Atto* out) noexcept {
  // Each product of two int64 values fits in 127 bits; only the sums can overflow.
  const Atto uncached = static_cast<Atto>(prompt - cached) * p.input;
  const Atto cached_part = static_cast<Atto>(cached) * p.cached_input;
  const Atto output = static_cast<Atto>(completion) * p.output;
  Atto sum;
  return add_atto(uncached, cached_part, &sum) && add_atto(sum, output, out);
}

// quantity (in millionths of a unit) x price, in atto-dollars.
bool unit_cost(const UnitPrice& p, int64_t quantity_micro, Atto* out) noexcept;

}  // namespace billing
