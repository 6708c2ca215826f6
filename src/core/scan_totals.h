// The arithmetic of billing._scan_table, PostgreSQL-free: what one message
// of a tracked table adds to its (month, conversation, model) group, and
// the group's exact totals, as the SQL it replaced computed them.
//
// The SQL summed, per group, usage_cost() of every message (a numeric, NULL
// when unpriced) and the token counts; the C scan (src/pg/table_scan.cpp)
// adds 128-bit integers instead and makes numerics once per group. Two
// things make the results identical, text included:
// - the cost rule of billing.usage_cost (usage_cost_rule below): NULL for a
//   message without a model name, 0 for one without tokens, else its price
//   at the message's time or NULL;
// - the scale of a numeric sum is the largest scale of its terms, and
//   usage_cost writes at least two decimals: 0.00075 + 0.00025 is 0.00100,
//   and coalesce(sum(NULLs), 0) is 0. ScanTotals keeps that scale.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "money.h"
#include "price_catalog.h"

namespace billing {

// Sums kept in dynamically allocated groups: 128-bit integers aligned to 8
// bytes, not 16 (allocators such as PostgreSQL's palloc only promise 8, and
// a 16-byte aligned access to a misaligned __int128 faults).
__extension__ typedef __int128 Sum128 __attribute__((aligned(8)));
__extension__ typedef unsigned __int128 USum128 __attribute__((aligned(8)));

// What billing.usage_cost(name, prompt, completion, cached, at) returns.
enum class CostRule : uint8_t {
  Priced,               // *out holds the cost (0 for no tokens)
  Unpriced,             // NULL: no name, or no price at that time
  SignsDiffer,          // an ERROR: counts of one row must all have the same sign
  CachedExceedsPrompt,  // an ERROR: cached > prompt
  OutOfRange,           // an ERROR: the cost does not fit
};

// billing.usage_cost's rule for counts (all >= 0 or all <= 0; a negative
// row takes a message back and costs minus as much). `price()` returns the
// name's price at the row's time (nullptr: none); it is called only when
// the name is given and there are tokens, as usage_cost looks it up.
template <typename PriceLookup>
CostRule usage_cost_rule(bool has_name, int64_t prompt, int64_t completion, int64_t cached, PriceLookup&& price,
                         Atto* out) noexcept {
  *out = 0;
  if (!has_name) return CostRule::Unpriced;
  if (prompt == 0 && completion == 0) return CostRule::Priced;
  const bool negative = prompt < 0 || completion < 0 || cached < 0;
  if (negative) {
    constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
    if (prompt > 0 || completion > 0 || cached > 0 || prompt == kMin || completion == kMin || cached == kMin)
      return CostRule::SignsDiffer;
    prompt = -prompt;
    completion = -completion;
    cached = -cached;
  }
  if (cached > prompt) return CostRule::CachedExceedsPrompt;
  const TokenPrice* p = price();
  if (p == nullptr) return CostRule::Unpriced;
  Atto cost;
  if (!token_cost(*p, prompt, completion, cached, &cost)) return CostRule::OutOfRange;
  *out = negative ? -cost : cost;
  return CostRule::Priced;
}

// How many decimals format_atto(v, buf, 0) writes: the decimals of v
// dollars without trailing zeros (0 to 18).
int atto_decimals(Atto v) noexcept;

// The scale of the numeric billing.usage_cost returns for a cost of v
// atto-dollars: at least two decimals (0.00, 0.75, 0.00075).
inline int usage_cost_scale(Atto v) noexcept {
  const int d = atto_decimals(v);
  return d < 2 ? 2 : d;
}

// A sum of atto-dollar amounts that cannot overflow: a 192-bit two's
// complement integer, high * 2^128 + low. (One message costs at most about
// 2.6e32 atto-dollars, 128 bits hold 1.7e38: a million messages of absurd
// counts at absurd prices would overflow them.) Zeroed, it is 0.
struct AttoSum {
  USum128 low;
  int64_t high;

  void add(Atto v) noexcept {
    const USum128 before = low;
    low = before + static_cast<USum128>(v);
    high += (v < 0 ? -1 : 0) + (low < before ? 1 : 0);
  }
};

// Longest text format_atto_sum writes: sign, 58 digits, point, terminator.
inline constexpr std::size_t kAttoSumTextSize = 64;

// Writes the sum as dollars with exactly max(decimals, its own decimals)
// decimals (decimals 0 to 18), as format_atto does for one amount. Returns
// the length written, not counting the terminating NUL.
std::size_t format_atto_sum(const AttoSum& s, char (&buf)[kAttoSumTextSize], int decimals) noexcept;

// One message as billing._scan_table counts it in its group: its countable
// time, its counts (as billing.usage_of gives them, with the prompt
// estimate of an estimated reply) and the two usage_cost results. (Its
// amounts are Sum128, 8-byte aligned: a row may be kept in palloc'd memory.)
struct ScanRow {
  int64_t at = 0;
  int64_t prompt = 0;
  int64_t completion = 0;
  int64_t cached = 0;
  int64_t estimated_prompt = 0;
  int64_t estimated_completion = 0;
  int64_t unsplit = 0;
  bool problem = false;
  bool priced = false;  // usage_cost(model, prompt, completion, cached, at) is not NULL
  Sum128 cost = 0;
  bool estimate_priced = false;  // usage_cost(model or the estimate model, estimates, 0, at) is not NULL
  Sum128 estimated_cost = 0;
};

// The totals of one group, as the SQL aggregates gave them: count(*),
// sum() of the counts, count(problem), coalesce(sum(cost), 0) and its
// scale, sum(_unpriced_tokens(...)), min() and max() of the times. Plain
// data; zeroed, it is a group without rows.
struct ScanTotals {
  int64_t messages;
  Sum128 prompt, completion, cached, estimated_prompt, estimated_completion, unsplit, unpriced;
  int64_t problems;
  AttoSum cost, estimated_cost;
  // The numeric scale of each cost sum: the largest of its terms', at least
  // 2; 0 while no row was priced, when the sum is coalesce(NULL, 0), 0.
  int8_t cost_scale, estimated_cost_scale;
  int64_t first_at, last_at;  // set by the first row

  void add(const ScanRow& r) noexcept;
};

// Both may live in memory aligned to 8 bytes only.
static_assert(alignof(ScanRow) <= 8 && alignof(ScanTotals) <= 8 && alignof(AttoSum) <= 8);

}  // namespace billing
