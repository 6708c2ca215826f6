#include "cost_state.h"

#include <fmt/format.h>

#include <cstring>
#include <initializer_list>
#include <limits>

namespace billing {

std::string_view CostState::first_unpriced_name() const noexcept {
  return std::string_view(text, strnlen(text, kTextSize));
}

std::string_view CostState::first_problem_value() const noexcept {
  const std::size_t name_len = strnlen(text, kTextSize);
  if (name_len + 1 >= kTextSize) return std::string_view();
  const char* value = text + name_len + 1;
  return std::string_view(value, strnlen(value, kTextSize - name_len - 1));
}

CostState empty_cost_state() noexcept {
  CostState s;
  std::memset(&s, 0, sizeof s);
  return s;
}

namespace {

constexpr std::size_t kValueReserve = 4;  // bytes a value keeps beside a name
constexpr std::string_view kCut = "...";

int64_t saturating_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::numeric_limits<int64_t>::max();
  return r;
}

// The longest prefix of `s` of at most `n` bytes that does not end inside a
// UTF-8 sequence: names and values end up in messages.
std::string_view utf8_prefix(std::string_view s, std::size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

std::string_view before_nul(std::string_view s) { return s.substr(0, s.find('\0')); }

// Whether the first problem quotes a string (cut with "..." when too long)
// rather than numbers (left out when too long).
bool quotes_a_string(const CostState& s) {
  return s.first_problem == static_cast<uint8_t>(UsageError::NotANumber) &&
         s.problem_kind == static_cast<uint8_t>(JsonKind::String);
}

// The name as it fits in `room` bytes: whole, or cut (never inside a UTF-8
// sequence) and ending in "..." so that a message does not show a cut name
// as if it were the whole one ("gpt-4o-mi..." for gpt-4o-mini-2024-07-18).
// Written to `buf` (room bytes at most); returns its length.
std::size_t fit_name(std::string_view name, std::size_t room, char* buf) {
  if (name.size() <= room) {
    if (!name.empty()) std::memcpy(buf, name.data(), name.size());
    return name.size();
  }
  if (room <= kCut.size()) {
    const std::string_view head = utf8_prefix(name, room);
    if (!head.empty()) std::memcpy(buf, head.data(), head.size());
    return head.size();
  }
  const std::string_view head = utf8_prefix(name, room - kCut.size());
  if (head.empty()) return 0;  // (no whole character to show: no name)
  std::memcpy(buf, head.data(), head.size());
  std::memcpy(buf + head.size(), kCut.data(), kCut.size());
  return head.size() + kCut.size();
}

// Writes the shared text of `s` from a name and a problem value (see the
// header for the rule). Either view may point into s.text.
void lay_out_text(CostState& s, std::string_view name, std::string_view value) {
  name = before_nul(name);
  value = before_nul(value);
  char out[CostState::kTextSize] = {};
  fit_name(name, CostState::kTextSize, out);
  if (!value.empty()) {
    const std::size_t reserve = value.size() < kValueReserve ? value.size() : kValueReserve;
    char shorter[CostState::kTextSize] = {};
    const std::size_t shorter_len = fit_name(name, CostState::kTextSize - 1 - reserve, shorter);
    const std::size_t room = CostState::kTextSize - 1 - shorter_len;
    char* const v = out + shorter_len + 1;
    if (value.size() <= room || quotes_a_string(s)) {
      std::memset(out, 0, sizeof out);
      std::memcpy(out, shorter, shorter_len);
      if (value.size() <= room) {
        std::memcpy(v, value.data(), value.size());
      } else {
        // room >= kValueReserve > kCut.size() here: value.size() > room >= reserve.
        const std::string_view head = utf8_prefix(value, room - kCut.size());
        std::memcpy(v, head.data(), head.size());
        std::memcpy(v + head.size(), kCut.data(), kCut.size());
      }
    }
    // (otherwise a number is shown whole or not at all: the name keeps its 12 bytes)
  }
  std::memcpy(s.text, out, CostState::kTextSize);
}

// A copy of a short view, so that it survives a rewrite of s.text.
struct ShortText {
  char bytes[CostState::kTextSize];
  std::size_t len;
  explicit ShortText(std::string_view v) : len(v.size() < sizeof bytes ? v.size() : sizeof bytes) {
    if (len > 0) std::memcpy(bytes, v.data(), len);
  }
  std::string_view view() const { return std::string_view(bytes, len); }
};

void remember_first(CostState& s, UnpricedReason why, std::string_view name) {
  if (s.first_reason != 0) return;
  s.first_reason = static_cast<uint8_t>(why);
  const ShortText value(s.first_problem_value());
  lay_out_text(s, name, value.view());
}

// A decimal integer exactly as fmt writes it (no '+', no leading zeros).
bool canonical_int(std::string_view text, int64_t* v) {
  const auto parsed = parse_scaled_int64(text, 0);
  if (!parsed) return false;
  char buf[24];
  const auto r = fmt::format_to_n(buf, sizeof buf, "{}", *parsed);
  if (std::string_view(buf, r.size) != text) return false;
  *v = *parsed;
  return true;
}

// "cached prompt", the value of a CachedExceedsPrompt problem.
bool cached_and_prompt(std::string_view value, int64_t* cached, int64_t* prompt) {
  const std::size_t space = value.find(' ');
  if (space == std::string_view::npos) return false;
  return canonical_int(value.substr(0, space), cached) && canonical_int(value.substr(space + 1), prompt) &&
         *prompt >= 0 && *cached > *prompt;
}

// The field byte's parts (the layout in cost_state.h): the TokenField in
// bits 0-3, its spelling in bits 4-5, the prompt's in bits 6-7.
struct FieldByte {
  unsigned field;
  unsigned spelling;
  unsigned prompt_spelling;
};

uint8_t pack_field_byte(const Usage& u) {
  return static_cast<uint8_t>(static_cast<unsigned>(u.error_field) | (u.error_spelling << 4) |
                              (u.prompt_spelling << 6));
}

FieldByte unpack_field_byte(unsigned byte) { return FieldByte{byte & 0x0Fu, (byte >> 4) & 0x03u, byte >> 6}; }

}  // namespace

void add_unpriced(CostState& s, UnpricedReason why, std::string_view name, int64_t units) noexcept {
  s.unpriced_rows = saturating_add(s.unpriced_rows, 1);
  s.unpriced_units = saturating_add(s.unpriced_units, units);
  remember_first(s, why, name);
}

void add_invalid(CostState& s, const Usage& u) noexcept {
  s.invalid_rows = saturating_add(s.invalid_rows, 1);
  if (s.first_problem != 0 || u.error == UsageError::None) return;
  s.first_problem = static_cast<uint8_t>(u.error);
  s.problem_field = pack_field_byte(u);
  s.problem_kind = static_cast<uint8_t>(u.error_kind);
  char number[48];
  std::string_view value;
  try {
    if (quotes_a_string(s)) {
      value = u.error_text;
    } else if (u.error == UsageError::Negative) {
      value = std::string_view(number, fmt::format_to_n(number, sizeof number, "{}", u.error_value).size);
    } else if (u.error == UsageError::CachedExceedsPrompt) {
      value = std::string_view(number, fmt::format_to_n(number, sizeof number, "{} {}", u.error_value, u.prompt).size);
    }
  } catch (...) {
    value = std::string_view();
  }
  const ShortText name(s.first_unpriced_name());
  lay_out_text(s, name.view(), value);
}

bool combine(CostState& a, const CostState& b) noexcept {
  Atto sum;
  if (!add_atto(a.cost(), b.cost(), &sum)) return false;
  if (__builtin_add_overflow(a.priced_rows, b.priced_rows, &a.priced_rows)) return false;
  a.set_cost(sum);
  a.unpriced_rows = saturating_add(a.unpriced_rows, b.unpriced_rows);
  a.unpriced_units = saturating_add(a.unpriced_units, b.unpriced_units);
  a.invalid_rows = saturating_add(a.invalid_rows, b.invalid_rows);
  const bool take_name = a.first_reason == 0 && b.first_reason != 0;
  const bool take_problem = a.first_problem == 0 && b.first_problem != 0;
  if (!take_name && !take_problem) return true;
  const ShortText name(take_name ? b.first_unpriced_name() : a.first_unpriced_name());
  const ShortText value(take_problem ? b.first_problem_value() : a.first_problem_value());
  if (take_name) a.first_reason = b.first_reason;
  if (take_problem) {
    a.first_problem = b.first_problem;
    a.problem_field = b.problem_field;
    a.problem_kind = b.problem_kind;
  }
  lay_out_text(a, name.view(), value.view());
  return true;
}

std::size_t describe_first_problem(const CostState& s, char* buf, std::size_t n) noexcept {
  if (n == 0) return 0;
  buf[0] = '\0';
  if (s.first_problem == 0) return 0;
  Usage u;
  u.status = UsageStatus::Invalid;
  u.error = static_cast<UsageError>(s.first_problem);
  const FieldByte f = unpack_field_byte(s.problem_field);
  u.error_field = static_cast<TokenField>(f.field);
  u.error_spelling = static_cast<uint8_t>(f.spelling);
  u.prompt_spelling = static_cast<uint8_t>(f.prompt_spelling);
  u.error_kind = static_cast<JsonKind>(s.problem_kind);
  const std::string_view value = s.first_problem_value();
  // A number the state could not keep is left out of the sentence.
  bool number_left_out = false;
  if (u.error == UsageError::NotANumber) {
    u.error_text = value;
  } else if (u.error == UsageError::Negative) {
    number_left_out = !canonical_int(value, &u.error_value);
  } else if (u.error == UsageError::CachedExceedsPrompt) {
    number_left_out = !cached_and_prompt(value, &u.error_value, &u.prompt);
  }
  if (!number_left_out) return describe_usage_error(u, buf, n);
  const std::string_view field = token_field_name(u.error_field, u.error_spelling);
  try {
    const auto r = u.error == UsageError::Negative
                       ? fmt::format_to_n(buf, n - 1, "\"{}\" must not be negative", field)
                       : fmt::format_to_n(buf, n - 1, "\"{}\" exceeds \"{}\"", field,
                                          token_field_name(TokenField::Prompt, u.prompt_spelling));
    *r.out = '\0';
    return static_cast<std::size_t>(r.out - buf);
  } catch (...) {
    buf[0] = '\0';
    return 0;
  }
}

std::string_view unpriced_reason_text(UnpricedReason r) noexcept {
  switch (r) {
    case UnpricedReason::None: return "";
    case UnpricedReason::UnknownModel: return "not in the price catalog";
    case UnpricedReason::NoPriceAtTime: return "no price in effect at that time";
    case UnpricedReason::NoModel: return "usage without a model name";
    case UnpricedReason::NoSplit: return "only a total token count, no prompt/completion split";
  }
  return "";
}

namespace {

// The field byte says only what the problem can say (the layout in
// cost_state.h): no field for a root that is not an object; for a model
// that is not a string, at most that it was in a "usage" object; a token
// field and its spelling (the top-level "cached_tokens" has no Responses
// API name); and for cached > prompt, a cached field and the prompt's
// spelling too. What add_invalid writes, and nothing else.
bool field_byte_fits(int64_t problem, int64_t byte) noexcept {
  if (byte < 0 || byte > 0xFF) return false;
  const auto [field, spelling, prompt_spelling] = unpack_field_byte(static_cast<unsigned>(byte));
  if (field >= static_cast<unsigned>(TokenField::Count)) return false;
  const bool cached = field == static_cast<unsigned>(TokenField::Cached);
  if (cached && (spelling & kResponsesName)) return false;
  switch (static_cast<UsageError>(problem)) {
    case UsageError::None:
    case UsageError::NotAnObject:
      return byte == 0;
    case UsageError::ModelNotAString:
      return field == 0 && (spelling & ~unsigned{kInUsageObject}) == 0 && prompt_spelling == 0;
    case UsageError::CachedExceedsPrompt:
      // (a nested "usage" object is read only without an outer prompt, so
      // a cached count there comes with a prompt there, or none)
      return (cached || field == static_cast<unsigned>(TokenField::CachedDetail)) &&
             (!(spelling & kInUsageObject) || (prompt_spelling & kInUsageObject));
    default:
      return prompt_spelling == 0;
  }
}

// The kind of JSON value each problem can have found (add_invalid keeps
// Usage::error_kind): a root that is not an object is anything else; a
// count that is not a number anything present (or a number PostgreSQL's
// numeric would not decode); a count not an integer, out of range or
// negative a number; a model not a string anything present but a string;
// cached > prompt names none.
bool kind_fits(int64_t problem, int64_t kind) noexcept {
  const auto k = static_cast<JsonKind>(kind);
  const bool present = k != JsonKind::Missing && k != JsonKind::Null && k != JsonKind::Malformed;
  switch (static_cast<UsageError>(problem)) {
    case UsageError::None:
    case UsageError::CachedExceedsPrompt:
      return k == JsonKind::Missing;
    case UsageError::NotAnObject:
      return k != JsonKind::Missing && k != JsonKind::Null && k != JsonKind::Object;
    case UsageError::NotANumber:
      return present;
    case UsageError::NotAnInteger:
    case UsageError::OutOfRange:
    case UsageError::Negative:
      return k == JsonKind::Number;
    case UsageError::ModelNotAString:
      return present && k != JsonKind::String;
  }
  return false;
}

}  // namespace

bool assemble_cost_state(const CostStateParts& p, CostState* out) noexcept {
  if (p.priced_rows < 0 || p.unpriced_rows < 0 || p.unpriced_units < 0 || p.invalid_rows < 0) return false;
  if (p.reason < 0 || p.reason > static_cast<int64_t>(UnpricedReason::NoSplit)) return false;
  if (p.problem < 0 || p.problem > static_cast<int64_t>(UsageError::ModelNotAString)) return false;
  if (p.kind < 0 || p.kind > static_cast<int64_t>(JsonKind::Malformed)) return false;
  if (!field_byte_fits(p.problem, p.field) || !kind_fits(p.problem, p.kind)) return false;
  for (std::string_view t : {p.name, p.value})
    if (t.size() > CostState::kMaxInputText || t.find('\0') != std::string_view::npos) return false;
  if (p.reason == 0 && !p.name.empty()) return false;
  if (p.problem == 0 && (p.field != 0 || p.kind != 0 || !p.value.empty())) return false;

  CostState s = empty_cost_state();
  s.set_cost(p.cost);
  s.priced_rows = p.priced_rows;
  s.unpriced_rows = p.unpriced_rows;
  s.unpriced_units = p.unpriced_units;
  s.invalid_rows = p.invalid_rows;
  s.first_reason = static_cast<uint8_t>(p.reason);
  s.first_problem = static_cast<uint8_t>(p.problem);
  s.problem_field = static_cast<uint8_t>(p.field);
  s.problem_kind = static_cast<uint8_t>(p.kind);
  if (!p.value.empty() && !quotes_a_string(s)) {
    int64_t a, b;
    if (s.first_problem == static_cast<uint8_t>(UsageError::Negative)) {
      if (!canonical_int(p.value, &a) || a >= 0) return false;
    } else if (s.first_problem == static_cast<uint8_t>(UsageError::CachedExceedsPrompt)) {
      if (!cached_and_prompt(p.value, &a, &b)) return false;
    } else {
      return false;  // this problem quotes no value
    }
  }
  lay_out_text(s, p.name, p.value);
  *out = s;
  return true;
}

namespace {

// Quotes a name or value, escaping quote and backslash like a record literal.
std::string_view quoted(std::string_view text, char (&buf)[CostState::kTextSize * 2 + 3]) {
  std::size_t n = 0;
  buf[n++] = '"';
  for (char c : text.substr(0, CostState::kTextSize)) {
    if (c == '"' || c == '\\') buf[n++] = '\\';
    buf[n++] = c;
  }
  buf[n++] = '"';
  return std::string_view(buf, n);
}

}  // namespace

std::size_t format_cost_state(const CostState& s, char (&buf)[kCostStateTextSize]) noexcept {
  char cost[kAttoTextSize];
  format_atto(s.cost(), cost);
  char name[CostState::kTextSize * 2 + 3];
  char value[CostState::kTextSize * 2 + 3];
  try {
    auto r = fmt::format_to_n(buf, kCostStateTextSize - 1, "({},{},{},{},{},{}", cost, s.priced_rows,
                              s.unpriced_rows, s.unpriced_units, static_cast<int>(s.first_reason),
                              quoted(s.first_unpriced_name(), name));
    // The invalid-usage fields only when there is something to say, so that a
    // state without invalid rows reads the same as in earlier versions.
    if (s.invalid_rows != 0 || s.first_problem != 0) {
      const std::size_t used = static_cast<std::size_t>(r.out - buf);
      r = fmt::format_to_n(r.out, kCostStateTextSize - 1 - used, ",{},{},{},{},{}", s.invalid_rows,
                           static_cast<int>(s.first_problem), static_cast<int>(s.problem_field),
                           static_cast<int>(s.problem_kind), quoted(s.first_problem_value(), value));
    }
    const std::size_t used = static_cast<std::size_t>(r.out - buf);
    if (used >= kCostStateTextSize - 1) {
      buf[0] = '\0';
      return 0;
    }
    buf[used] = ')';
    buf[used + 1] = '\0';
    return used + 1;
  } catch (...) {
    buf[0] = '\0';
    return 0;
  }
}

std::size_t format_stamped_cost_state(const CostState& s, int64_t catalog_version,
                                      char (&buf)[kStampedCostStateTextSize]) noexcept {
  char plain[kCostStateTextSize];
  const std::size_t n = format_cost_state(s, plain);
  if (n == 0) {
    buf[0] = '\0';
    return 0;
  }
  try {
    const auto r = fmt::format_to_n(buf, kStampedCostStateTextSize - 1, "{}@{}", std::string_view(plain, n),
                                    catalog_version);
    const std::size_t used = static_cast<std::size_t>(r.out - buf);
    if (used >= kStampedCostStateTextSize - 1) {
      buf[0] = '\0';
      return 0;
    }
    buf[used] = '\0';
    return used;
  } catch (...) {
    buf[0] = '\0';
    return 0;
  }
}

bool split_catalog_stamp(std::string_view text, std::string_view* state, bool* has_version,
                         int64_t* catalog_version) noexcept {
  *has_version = false;
  *catalog_version = 0;
  // The state's text ends in ')' and quotes its strings, so an '@' after the
  // last ')' can only be a stamp.
  const std::size_t close = text.rfind(')');
  const std::size_t at = text.rfind('@');
  if (at == std::string_view::npos || close == std::string_view::npos || at < close) {
    *state = text;
    return true;
  }
  std::string_view digits = text.substr(at + 1);
  while (!digits.empty() && digits.back() == ' ') digits.remove_suffix(1);
  if (digits.empty() || digits.size() > 19) return false;
  uint64_t v = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  *state = text.substr(0, at);
  *has_version = true;
  *catalog_version = static_cast<int64_t>(v);
  return true;
}

namespace {

// Splits off the next comma-separated field of a "(...)" body.
bool next_field(std::string_view& rest, std::string_view& field) {
  const std::size_t comma = rest.find(',');
  if (comma == std::string_view::npos) return false;
  field = rest.substr(0, comma);
  rest.remove_prefix(comma + 1);
  return true;
}

// Reads a quoted name or value at the front of `rest` into buf (a backslash
// escapes any character). False when it is not quoted, not closed, or longer
// than the buffer.
bool next_quoted(std::string_view& rest, char (&buf)[CostState::kMaxInputText], std::string_view* out) {
  if (rest.empty() || rest.front() != '"') return false;
  std::size_t n = 0;
  for (std::size_t i = 1; i < rest.size(); ++i) {
    char c = rest[i];
    if (c == '"') {
      *out = std::string_view(buf, n);
      rest.remove_prefix(i + 1);
      return true;
    }
    if (c == '\\') {
      if (++i == rest.size()) return false;
      c = rest[i];
    }
    if (n == sizeof buf) return false;
    buf[n++] = c;
  }
  return false;
}

bool next_int(std::string_view& rest, int64_t* out) {
  std::string_view f;
  if (!next_field(rest, f)) return false;
  const auto v = parse_scaled_int64(f, 0);
  if (!v) return false;
  *out = *v;
  return true;
}

}  // namespace

bool parse_cost_state(std::string_view text, CostState* out) noexcept {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.size() < 2 || text.front() != '(' || text.back() != ')') return false;
  std::string_view rest = text.substr(1, text.size() - 2);

  CostStateParts p;
  std::string_view f;
  if (!next_field(rest, f)) return false;
  const auto cost = parse_scaled_decimal(f, kAttoScale);
  if (!cost) return false;
  p.cost = *cost;
  for (int64_t* c : {&p.priced_rows, &p.unpriced_rows, &p.unpriced_units, &p.reason})
    if (!next_int(rest, c)) return false;
  char name[CostState::kMaxInputText];
  if (!next_quoted(rest, name, &p.name)) return false;
  char value[CostState::kMaxInputText];
  if (!rest.empty()) {
    // The invalid-usage fields: ,invalid_rows,problem,field,kind,"value"
    if (rest.front() != ',') return false;
    rest.remove_prefix(1);
    for (int64_t* c : {&p.invalid_rows, &p.problem, &p.field, &p.kind})
      if (!next_int(rest, c)) return false;
    if (!next_quoted(rest, value, &p.value) || !rest.empty()) return false;
  }
  return assemble_cost_state(p, out);
}

}  // namespace billing

#include "no_postgres.h"
