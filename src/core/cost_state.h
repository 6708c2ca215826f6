// The transition state of billing's cost aggregates (SQL type billing.cost_state).
//
// A fixed 64-byte, trivially copyable value, so that PostgreSQL can keep it as
// a real type: parallel workers and Citus ship it as a plain datum or through
// its text form, and the transition functions update it in place. It carries
// the exact running cost and enough about unpriced rows and rows with invalid
// usage to warn once about each, naming a model and a problem, from the final
// function (which runs in the leader even when the rows were read by parallel
// workers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "money.h"
#include "usage.h"

namespace billing {

enum class UnpricedReason : uint8_t {
  None = 0,
  UnknownModel = 1,  // no catalog row for any candidate name
  NoPriceAtTime = 2, // known name, but no price in effect at that time
  NoModel = 3,       // usage without a model name
  NoSplit = 4,       // only a total token count, no prompt/completion split
};

// Layout (the SQL type is INTERNALLENGTH = 64, so this is on-disk):
//
//   0  cost_lo, cost_hi      the exact total, 128-bit atto-dollars
//  16  priced_rows
//  24  unpriced_rows, 32 unpriced_units
//  40  invalid_rows          rows skipped because their usage could not be read
//  48  first_reason          UnpricedReason of the first unpriced row
//  49  first_problem         UsageError of the first row with invalid usage,
//  50  problem_field           the TokenField it names (low 4 bits; 0 when
//                              it names none), how the data spelled it or,
//                              for a model, where it was (bits 4-5) and, for
//                              cached > prompt, the prompt count (bits 6-7)
//                              (TokenSpelling flags: 0 in earlier versions),
//  51  problem_kind            and the JsonKind found there
//  52  text[12]              the first unpriced name, then, when the problem
//                            has a value to quote, a NUL and that value
//                            ("12a", "-3", or "11 10" for cached > prompt);
//                            NUL-padded
//
// The name and the value share the 12 bytes: alone, the name keeps up to 12
// bytes and the value up to 11; together, the value keeps at least
// min(its length, 4) bytes and the name the rest. Cut names and strings end
// in "..." (a name cut to 12 bytes keeps 9 of its own); a number that does
// not fit is left out (the message then omits it). Names and strings are
// never cut inside a UTF-8 sequence.
struct CostState {
  static constexpr std::size_t kTextSize = 12;
  // Longest name or value the text and binary forms accept: what earlier
  // versions, which kept 23 bytes of name, could write. Longer input is cut.
  static constexpr std::size_t kMaxInputText = 23;

  uint64_t cost_lo;         // atto-dollars, two's complement over (hi, lo)
  int64_t cost_hi;
  int64_t priced_rows;
  int64_t unpriced_rows;
  int64_t unpriced_units;   // tokens (OpenAI) or micro-units (AWS) left unpriced
  int64_t invalid_rows;     // rows with invalid usage, skipped (not priced, not unpriced)
  uint8_t first_reason;     // UnpricedReason of the first unpriced row
  uint8_t first_problem;    // UsageError of the first row with invalid usage
  uint8_t problem_field;    // its TokenField and spellings (see above)
  uint8_t problem_kind;     // its JsonKind
  char text[kTextSize];     // first unpriced name [NUL problem value], NUL-padded

  Atto cost() const noexcept {
    const UAtto u = (static_cast<UAtto>(static_cast<uint64_t>(cost_hi)) << 64) | cost_lo;
    return static_cast<Atto>(u);
  }
  void set_cost(Atto v) noexcept {
    const auto u = static_cast<UAtto>(v);
    cost_lo = static_cast<uint64_t>(u);
    cost_hi = static_cast<int64_t>(static_cast<uint64_t>(u >> 64));
  }
  std::string_view first_unpriced_name() const noexcept;
  std::string_view first_problem_value() const noexcept;
};

static_assert(sizeof(CostState) == 64, "billing.cost_state is declared with INTERNALLENGTH = 64");
static_assert(std::is_trivially_copyable_v<CostState>);

CostState empty_cost_state() noexcept;

// Adds a priced row; false on overflow. Inline: once per priced row.
inline bool add_priced(CostState& s, Atto cost) noexcept {
  Atto sum;
  if (!add_atto(s.cost(), cost, &sum)) return false;
  s.set_cost(sum);
  return !__builtin_add_overflow(s.priced_rows, 1, &s.priced_rows);
}
// Counts an unpriced row and remembers the first one's reason and name.
void add_unpriced(CostState& s, UnpricedReason why, std::string_view name, int64_t units) noexcept;
// Counts a row whose usage is Invalid and remembers the first one's problem.
void add_invalid(CostState& s, const Usage& u) noexcept;
// a += b; false on overflow. The first unpriced name and the first problem of
// `a` win; those `a` lacks are taken from `b`.
bool combine(CostState& a, const CostState& b) noexcept;

// The sentence describe_usage_error gives for the first problem (with the
// quoted value cut, or a number left out, when the state could not keep it
// whole). Writes at most n-1 bytes plus a NUL; returns the length written.
// Empty when the state names no problem.
std::size_t describe_first_problem(const CostState& s, char* buf, std::size_t n) noexcept;

// Every part of a state, as the text and binary forms carry it.
struct CostStateParts {
  Atto cost = 0;
  int64_t priced_rows = 0;
  int64_t unpriced_rows = 0;
  int64_t unpriced_units = 0;
  int64_t reason = 0;
  std::string_view name;
  int64_t invalid_rows = 0;
  int64_t problem = 0;
  int64_t field = 0;
  int64_t kind = 0;
  std::string_view value;
};

// Checks the parts and lays them out as a state; false (and *out untouched)
// when they describe no state this code could have made: a negative counter,
// a code out of range, a name without a reason, problem details without a
// problem, a value the problem does not quote, a NUL byte, or a name or
// value longer than kMaxInputText. A longer name or value is cut to fit.
bool assemble_cost_state(const CostStateParts& p, CostState* out) noexcept;

// Text form (the type's input/output):
//   (cost,priced_rows,unpriced_rows,unpriced_units,reason,"name")
// e.g. (0.00075,1,0,0,0,"") -- cost is an exact decimal in dollars; and when
// some row had invalid usage, five more fields:
//   (...,"name",invalid_rows,problem,field,kind,"value")
// e.g. (0.00225,3,0,0,0,"",2,2,0,2,"12a"). The six-field form is read too.
inline constexpr std::size_t kCostStateTextSize = 192;
std::size_t format_cost_state(const CostState& s, char (&buf)[kCostStateTextSize]) noexcept;
bool parse_cost_state(std::string_view text, CostState* out) noexcept;

// A partial state as a Citus worker sends it through billing's partial
// twins: the text form, then '@' and the version of the cluster's shared
// catalog that priced its rows, e.g. (0.00075,1,0,0,0,"")@42. The
// coordinator compares that version with the one its own snapshot sees
// (src/pg/cost_state_type.cpp): the fixed 64-byte state has no room for it,
// so it travels in the text only.
inline constexpr std::size_t kStampedCostStateTextSize = kCostStateTextSize + 24;
std::size_t format_stamped_cost_state(const CostState& s, int64_t catalog_version,
                                      char (&buf)[kStampedCostStateTextSize]) noexcept;
// Splits text into the state's text and its stamp. *has_version is false
// (and *catalog_version 0) for a text without '@' after its ')'. False when
// what follows '@' is not a non-negative 64-bit decimal.
bool split_catalog_stamp(std::string_view text, std::string_view* state, bool* has_version,
                         int64_t* catalog_version) noexcept;

std::string_view unpriced_reason_text(UnpricedReason r) noexcept;

}  // namespace billing
