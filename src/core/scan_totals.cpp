#include "scan_totals.h"

#include <cstdint>

namespace billing {

namespace {

constexpr int64_t kPow10[kAttoScale + 1] = {
    INT64_C(1), INT64_C(10), INT64_C(100), INT64_C(1000), INT64_C(10000), INT64_C(100000), INT64_C(1000000),
    INT64_C(10000000), INT64_C(100000000), INT64_C(1000000000), INT64_C(10000000000), INT64_C(100000000000),
    INT64_C(1000000000000), INT64_C(10000000000000), INT64_C(100000000000000), INT64_C(1000000000000000),
    INT64_C(10000000000000000), INT64_C(100000000000000000), INT64_C(1000000000000000000)};

// v % 10^k, in 64 bits when v fits (a 128-bit division is a library call).
inline int64_t remainder_pow10(Atto v, int k) noexcept {
  if (v >= INT64_MIN && v <= INT64_MAX) return static_cast<int64_t>(v) % kPow10[k];
  return static_cast<int64_t>(v % kPow10[k]);
}

// Makes *scale the numeric scale of a sum that also has the term v (a
// usage_cost result: at least 2 decimals). Most terms change nothing: one
// remainder tells.
inline void widen_scale(int8_t* scale, Atto v) noexcept {
  int s = *scale < 2 ? 2 : *scale;
  if (s < kAttoScale && remainder_pow10(v, kAttoScale - s) != 0) s = atto_decimals(v);
  *scale = static_cast<int8_t>(s);
}

}  // namespace

int atto_decimals(Atto v) noexcept {
  int64_t fraction = remainder_pow10(v, kAttoScale);
  if (fraction == 0) return 0;
  int decimals = kAttoScale;
  while (fraction % 10 == 0) {
    fraction /= 10;
    --decimals;
  }
  return decimals;
}

std::size_t format_atto_sum(const AttoSum& s, char (&buf)[kAttoSumTextSize], int decimals) noexcept {
  // The magnitude, as three 64-bit limbs, most significant first.
  const bool negative = s.high < 0;
  uint64_t limb[3] = {static_cast<uint64_t>(s.high), static_cast<uint64_t>(s.low >> 64), static_cast<uint64_t>(s.low)};
  if (negative) {
    // Two's complement negation of all 192 bits.
    for (uint64_t& l : limb) l = ~l;
    for (int i = 2; i >= 0; --i)
      if (++limb[i] != 0) break;
  }
  // Decimal digits, least significant first (192 bits: at most 58 digits).
  char digits[kAttoSumTextSize];
  int n = 0;
  do {
    UAtto rest = 0;
    for (uint64_t& l : limb) {
      const UAtto cur = (rest << 64) | l;
      l = static_cast<uint64_t>(cur / 10);
      rest = cur % 10;
    }
    digits[n++] = static_cast<char>('0' + static_cast<int>(rest));
  } while (limb[0] != 0 || limb[1] != 0 || limb[2] != 0);
  while (n <= kAttoScale) digits[n++] = '0';  // a digit before the point

  const int keep_from = kAttoScale - (decimals < 0 ? 0 : decimals > kAttoScale ? kAttoScale : decimals);
  int first_kept = 0;  // the lowest decimal written
  while (first_kept < keep_from && digits[first_kept] == '0') ++first_kept;

  std::size_t len = 0;
  if (negative) buf[len++] = '-';
  for (int i = n - 1; i >= kAttoScale; --i) buf[len++] = digits[i];
  if (first_kept < kAttoScale) {
    buf[len++] = '.';
    for (int i = kAttoScale - 1; i >= first_kept; --i) buf[len++] = digits[i];
  }
  buf[len] = '\0';
  return len;
}

void ScanTotals::add(const ScanRow& r) noexcept {
  if (messages == 0 || r.at < first_at) first_at = r.at;
  if (messages == 0 || r.at > last_at) last_at = r.at;
  ++messages;
  prompt += r.prompt;
  completion += r.completion;
  cached += r.cached;
  estimated_prompt += r.estimated_prompt;
  estimated_completion += r.estimated_completion;
  unsplit += r.unsplit;
  // billing._unpriced_tokens: the reported tokens that found no price, the
  // estimate that found none, and always the tokens without a split.
  Sum128 left = r.unsplit;
  if (!r.priced) left += static_cast<Sum128>(r.prompt) + r.completion;
  if (!r.estimate_priced) left += static_cast<Sum128>(r.estimated_prompt) + r.estimated_completion;
  unpriced += left;
  if (r.problem) ++problems;
  if (r.priced) {
    cost.add(r.cost);
    widen_scale(&cost_scale, r.cost);
  }
  if (r.estimate_priced) {
    estimated_cost.add(r.estimated_cost);
    widen_scale(&estimated_cost_scale, r.estimated_cost);
  }
}

}  // namespace billing

#include "no_postgres.h"
