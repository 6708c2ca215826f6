// What a newly stored message adds to billing's usage ledger, when the
// message alone says it (PostgreSQL-free). The tracking trigger writes such
// rows itself; a message that needs more (a reply without usage, whose
// prompt is estimated from its conversation, or data with a problem, listed
// in billing.problem_messages) goes to the full trigger body in SQL.
#pragma once

#include <cstdint>
#include <string_view>

#include "jsonb_reader.h"
#include "usage.h"

namespace billing {

// The usage of one message's data, as billing.usage_of reads it: the
// fields decoded, and the model kept even when there is no usage (it prices
// the estimate of a reply without usage). The one definition, shared by
// usage_of and the trigger.
Usage message_usage(JsonbContainerView data) noexcept;

// A message without data: no usage, no model.
inline Usage message_without_data() noexcept { return Usage{}; }

// What billing.usage_of returns for a message, but the estimate of a
// reply's completion (its content's characters, which the glue counts):
// the usage's model and counts, a total without a split, whether the usage
// cannot be read (usage_of's `problem`, which describe_usage_error words),
// and whether the message is a reply whose prompt and completion are
// estimated. The one definition, shared by usage_of and the table scans.
struct MessageFigures {
  bool has_model = false;
  std::string_view model;
  int64_t prompt = 0;
  int64_t completion = 0;
  int64_t cached = 0;
  int64_t unsplit = 0;
  bool problem = false;
  bool estimated = false;
};
MessageFigures message_figures(const Usage& u, bool assistant) noexcept;

// The token columns of a ledger row.
struct LedgerCounts {
  bool has_model = false;
  std::string_view model;
  int64_t prompt = 0;
  int64_t completion = 0;
  int64_t cached = 0;
  int64_t unsplit = 0;  // a total without a prompt/completion split
};

// Fills `out` and returns true when the message's ledger row follows from
// its usage and whether it is an assistant's reply; false when it needs
// the full path: invalid usage, or a reply without usage (to be estimated).
bool direct_ledger_counts(const Usage& u, bool assistant, LedgerCounts* out) noexcept;

// PostgreSQL timestamps count microseconds from 2000-01-01 00:00 UTC.
// billing counts the years 1 to 9999: [0001-01-01, 10000-01-01) UTC, the
// same bounds as billing._countable().
inline constexpr int64_t kMicrosPerDay = INT64_C(86400000000);
inline constexpr int64_t kFirstCountable = -INT64_C(730119) * kMicrosPerDay;  // 0001-01-01
inline constexpr int64_t kEndCountable = INT64_C(2921940) * kMicrosPerDay;    // 10000-01-01
inline constexpr bool countable_time(int64_t micros_since_2000) noexcept {
  return micros_since_2000 >= kFirstCountable && micros_since_2000 < kEndCountable;
}

// Keys longer than this (in bytes) are shortened with an md5 by
// billing._key() (and, for model names, by billing._ledger_usage); the
// trigger leaves those to the full path.
inline constexpr std::size_t kMaxPlainKeyBytes = 200;

}  // namespace billing
