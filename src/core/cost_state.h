// The transition state of billing's cost aggregates (SQL type billing.cost_state).
//
// A fixed 64-byte, trivially copyable value, so that PostgreSQL can keep it as
// a real type: parallel workers and Citus ship it as a plain datum or through
// its text form, and the transition functions update it in place. It carries
// the exact running cost and enough about unpriced rows to warn once, naming a
// model, from the final function (which runs in the leader even when the rows
// were read by parallel workers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "money.h"

namespace billing {

enum class UnpricedReason : uint8_t {
  None = 0,
  UnknownModel = 1,  // no catalog row for any candidate name
  NoPriceAtTime = 2, // known name, but no price in effect at that time
  NoModel = 3,       // usage without a model name
  NoSplit = 4,       // only a total token count, no prompt/completion split
};

struct CostState {
  static constexpr std::size_t kNameSize = 23;

  uint64_t cost_lo;         // atto-dollars, two's complement over (hi, lo)
  int64_t cost_hi;
  int64_t priced_rows;
  int64_t unpriced_rows;
  int64_t unpriced_units;   // tokens (OpenAI) or micro-units (AWS) left unpriced
  uint8_t first_reason;     // UnpricedReason of the first unpriced row
  char first_name[kNameSize];  // its model/service, NUL-padded, truncated

  Atto cost() const noexcept;
  void set_cost(Atto v) noexcept;
  std::string_view first_unpriced_name() const noexcept;
};

static_assert(sizeof(CostState) == 64, "billing.cost_state is declared with INTERNALLENGTH = 64");
static_assert(std::is_trivially_copyable_v<CostState>);

CostState empty_cost_state() noexcept;

// Adds a priced row; false on overflow.
bool add_priced(CostState& s, Atto cost) noexcept;
// Counts an unpriced row and remembers the first one's reason and name.
void add_unpriced(CostState& s, UnpricedReason why, std::string_view name, int64_t units) noexcept;
// a += b; false on overflow. The first unpriced name of `a` wins.
bool combine(CostState& a, const CostState& b) noexcept;

// Text form (the type's input/output):
//   (cost,priced_rows,unpriced_rows,unpriced_units,reason,"name")
// e.g. (0.00075,1,0,0,0,"") -- cost is an exact decimal in dollars.
inline constexpr std::size_t kCostStateTextSize = 160;
std::size_t format_cost_state(const CostState& s, char (&buf)[kCostStateTextSize]) noexcept;
bool parse_cost_state(std::string_view text, CostState* out) noexcept;

std::string_view unpriced_reason_text(UnpricedReason r) noexcept;

}  // namespace billing
