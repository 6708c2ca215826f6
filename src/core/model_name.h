// How a model name as an app stored it maps to names in the price catalog.
//
// Candidates, tried in this order (README "How model names resolve"):
//   1. the name exactly as stored            gpt-4o-2024-05-13
//   2. without a dated-snapshot suffix       gpt-4o-mini-2024-07-18 -> gpt-4o-mini
//      (-YYYY-MM-DD, or OpenAI's older -MMDD as in gpt-4-0613)
//   3. normalised: surrounding spaces trimmed, lower-cased, and an "openai/"
//      provider prefix removed               " OpenAI/GPT-4o " -> gpt-4o
//   4. the normalised name without its dated suffix
// Duplicates are dropped. The first candidate that has a price in effect at
// the message's time prices it.
#pragma once

#include <cstddef>
#include <string_view>

namespace billing {

// Names longer than this are only tried as stored (candidate 1 and 2).
inline constexpr std::size_t kMaxNormalisedName = 200;

struct ModelCandidates {
  static constexpr int kMax = 4;
  std::string_view names[kMax];
  int count = 0;
  // Backing store for the normalised name (candidates 3 and 4 point into it).
  char normalised[kMaxNormalisedName];
};

// Fills `out` with the candidates for `stored`. `out` must outlive its use of
// the views; `stored` too.
void model_candidates(std::string_view stored, ModelCandidates& out) noexcept;

// `name` without a trailing dated-snapshot suffix, or `name` itself.
std::string_view strip_snapshot_suffix(std::string_view name) noexcept;

}  // namespace billing
