// What a message's `data` object says about OpenAI usage, and whether it can be
// billed. PostgreSQL-free: the input is the jsonb container's bytes.
//
// Accepted shapes (first match wins, documented in README "Usage JSON"):
//   prompt_tokens | input_tokens            prompt (input) tokens
//   completion_tokens | output_tokens       completion (output) tokens
//   tokens | total_tokens                   total only: cannot be priced
//   prompt_tokens_details.cached_tokens | input_tokens_details.cached_tokens
//                                           cached part of the prompt
//   cached_tokens                           same, when no *_details object
//   model                                   model name (string)
// When the object has none of the token fields but has a `usage` object, the
// fields are read from there (model from the outer object first).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "jsonb_reader.h"
#include "pg_numeric.h"

namespace billing {

enum class TokenField : uint8_t { Prompt, Completion, Total, Cached, CachedDetail, Count };

// How the data spelled a token count, for messages: OpenAI's Chat
// Completions name ("prompt_tokens") or the Responses API's
// ("input_tokens"), at the top level or in a nested "usage" object.
// Bit flags; 0 is the Chat Completions name at the top level.
enum TokenSpelling : uint8_t {
  kResponsesName = 1,
  kInUsageObject = 2,
  kSpellings = 4,  // one past the largest combination
};

// Where a token count came from, before validation.
struct TokenValue {
  JsonKind kind = JsonKind::Missing;
  NumericStatus number = NumericStatus::Ok;  // when kind == Number
  int64_t value = 0;
  std::string_view text;  // when kind == String, for messages
  uint8_t spelling = 0;   // TokenSpelling flags, for messages
};

struct UsageFields {
  JsonKind root = JsonKind::Missing;
  JsonKind model_kind = JsonKind::Missing;
  bool model_in_usage = false;  // read from a nested "usage" object, for messages
  std::string_view model;
  TokenValue tokens[static_cast<int>(TokenField::Count)];
};

// Reads the fields above from a jsonb root container.
UsageFields read_usage_fields(JsonbContainerView root) noexcept;

enum class UsageStatus : uint8_t {
  Ok,         // prompt/completion known (one may be absent, then 0)
  NoUsage,    // no token field at all (e.g. a user message)
  TotalOnly,  // only a total: tokens known, split unknown, so unpriced
  Invalid,    // a present field is not usable; see UsageError
};

enum class UsageError : uint8_t {
  None,
  NotAnObject,          // the root is an array, string, number or boolean
  NotANumber,           // a token field is a string, boolean, object or array
  NotAnInteger,         // a token field has a fractional part, or is NaN/Infinity
  OutOfRange,           // a token field does not fit in bigint
  Negative,             // a token field is below zero
  CachedExceedsPrompt,  // cached tokens > prompt tokens
  ModelNotAString,      // model is a number, boolean, object or array
};

struct Usage {
  UsageStatus status = UsageStatus::NoUsage;
  UsageError error = UsageError::None;
  TokenField error_field = TokenField::Prompt;
  uint8_t error_spelling = 0;   // how the data spelled error_field (TokenSpelling; for a
                                // model that is not a string, only kInUsageObject)
  uint8_t prompt_spelling = 0;  // and the prompt count, for CachedExceedsPrompt
  JsonKind error_kind = JsonKind::Missing;
  int64_t error_value = 0;
  std::string_view error_text;

  bool has_model = false;
  std::string_view model;
  int64_t prompt = 0;
  int64_t completion = 0;
  int64_t cached = 0;
  int64_t total = 0;  // prompt + completion, or the stated total when TotalOnly
};

Usage decode_usage(const UsageFields& fields) noexcept;

// The keys of the last usage object read_usage read in one pass, and which
// member holds the model and each token count. An app writes every row's
// usage with the same code, so most objects of a table have the same keys:
// an object with exactly these (the same header, key entries and key bytes)
// is read without looking at its keys. Plain data: zeroed, it is empty.
struct UsageLayout {
  static constexpr std::size_t kMaxMembers = 16;
  static constexpr std::size_t kMaxKeyBytes = 256;

  uint32_t header;     // the object's header word; 0: no layout yet
  uint32_t key_bytes;  // length of the key names, which begin the data area
  int8_t model;        // the member holding "model"; -1: none
  int8_t token[static_cast<int>(TokenField::Count)];  // the member each count is read from; -1: none
  int8_t counts;       // how many counts are read: the TokenFields in count_field[0, counts)
  int8_t count_field[static_cast<int>(TokenField::Count)];
  uint32_t key_entries[kMaxMembers];  // the keys' JEntries
  char keys[kMaxKeyBytes];
};

// decode_usage(read_usage_fields(root)), read in one pass when the object has
// the usual shape: token counts that are non-negative integers below 10^16,
// at the top level or as *_tokens_details.cached_tokens, a string model, and
// no "usage" member. Any other object (a null, a string or fractional count,
// a nested "usage" object, cached > prompt, damaged bytes...) and any other
// root take the two-step path, so the result is always the same. What the
// cost functions call for every row. With a layout (kept by the caller
// from row to row), an object with the layout's keys is read without
// matching its keys, and a flat object read in one pass becomes the layout.
Usage read_usage(JsonbContainerView root, UsageLayout* layout = nullptr) noexcept;

// The member a message names for a field as the data spelled it:
// "prompt_tokens", "input_tokens", "usage.input_tokens",
// "prompt_tokens_details.cached_tokens"...
std::string_view token_field_name(TokenField f, uint8_t spelling = 0) noexcept;

// Describes an Invalid usage in one sentence, e.g.
// `"prompt_tokens" must be a non-negative integer, got the string "12a"`.
// Writes at most n-1 bytes plus a NUL; returns the length written.
std::size_t describe_usage_error(const Usage& u, char* buf, std::size_t n) noexcept;

// The estimate of a text billing has no usage for (README "Estimated
// usage"): one token per four characters, rounded up. The one definition:
// usage_of applies it to a reply, billing._estimated_tokens(text) to the
// earlier messages of its conversation.
inline constexpr int64_t kCharsPerToken = 4;
// The role of the replies that are estimated when they carry no usage:
// "assistant" in any case of ASCII letters, as ORMs spell an enum's labels
// (Prisma's ASSISTANT, a Rails or Django Assistant). Before 0.4 only the
// lower-case spelling counted, and such replies went unpriced unseen.
inline bool is_assistant_role(std::string_view role) noexcept {
  constexpr std::string_view kAssistant = "assistant";
  if (role.size() != kAssistant.size()) return false;
  for (size_t i = 0; i < role.size(); ++i) {
    const char c = role[i];
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (lower != kAssistant[i]) return false;
  }
  return true;
}
inline constexpr int64_t estimated_tokens(int64_t chars) noexcept {
  return chars <= 0 ? 0 : (chars - 1) / kCharsPerToken + 1;
}

// The characters of valid UTF-8 text: its bytes that do not continue a
// character (10xxxxxx). What PostgreSQL's pg_mbstrlen_with_len counts in a
// UTF-8 database, whose text is always valid UTF-8 without NUL bytes, eight
// bytes at a time.
std::size_t utf8_char_count(const char* s, std::size_t n) noexcept;

}  // namespace billing
