#include "usage.h"

#include <fmt/format.h>

#include <cstring>
#include <limits>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace billing {

namespace {

constexpr int idx(TokenField f) { return static_cast<int>(f); }

TokenValue token_value(const JsonValue& v) noexcept {
  TokenValue t;
  t.kind = v.kind;
  if (v.kind == JsonKind::Number) {
    const ScaledNumeric n = decode_pg_numeric(v.data, v.size, 0);
    t.number = n.status;
    t.value = n.value;
  } else if (v.kind == JsonKind::String) {
    t.text = std::string_view(reinterpret_cast<const char*>(v.data), v.size);
  }
  return t;
}

bool present(const TokenValue& t) { return t.kind != JsonKind::Missing && t.kind != JsonKind::Null; }

// Member names we read, by the field they feed. Aliases come after the
// preferred name so that the preferred one wins when both are present.
struct Sink {
  explicit Sink(UsageFields* fields, bool nested = false) : out(fields), model_only(nested) {}

  UsageFields* out;
  bool model_only;  // reading the nested `usage` object for tokens, outer model kept
  bool usage_object_seen = false;
  JsonValue usage_object{};

  // A value beats a null or a missing member; between two values, the
  // preferred spelling wins.
  void set_token(TokenField f, const JsonValue& v, bool preferred) {
    TokenValue& slot = out->tokens[idx(f)];
    const bool slot_empty = slot.kind == JsonKind::Missing || slot.kind == JsonKind::Null;
    const auto spelling = static_cast<uint8_t>((preferred ? 0 : kResponsesName) | (model_only ? kInUsageObject : 0));
    if (v.kind == JsonKind::Null) {
      if (slot.kind == JsonKind::Missing) {
        slot = token_value(v);
        slot.spelling = spelling;
      }
      return;
    }
    if (preferred || slot_empty) {
      slot = token_value(v);
      slot.spelling = spelling;
    }
  }

  void read_details(const JsonValue& v, bool preferred) {
    if (v.kind != JsonKind::Object) return;
    jsonb_for_each_member(JsonbContainerView{v.data, v.size}, [&](std::string_view key, const JsonValue& inner) {
      if (key == "cached_tokens") set_token(TokenField::CachedDetail, inner, preferred);
    });
  }

  // Dispatches on the key's length first: each member costs one or two
  // comparisons, as this runs for every row a cost aggregate reads.
  void operator()(std::string_view key, const JsonValue& v) {
    switch (key.size()) {
      case 5:
        if (key == "model") {
          if (out->model_kind == JsonKind::Missing || out->model_kind == JsonKind::Null) {
            out->model_kind = v.kind;
            out->model_in_usage = model_only;
            if (v.kind == JsonKind::String) out->model = std::string_view(reinterpret_cast<const char*>(v.data), v.size);
          }
        } else if (key == "usage" && !model_only) {
          usage_object_seen = true;
          usage_object = v;
        }
        break;
      case 6:
        if (key == "tokens") set_token(TokenField::Total, v, true);
        break;
      case 12:
        if (key == "input_tokens") set_token(TokenField::Prompt, v, false);
        else if (key == "total_tokens") set_token(TokenField::Total, v, false);
        break;
      case 13:
        if (key == "prompt_tokens") set_token(TokenField::Prompt, v, true);
        else if (key == "output_tokens") set_token(TokenField::Completion, v, false);
        else if (key == "cached_tokens") set_token(TokenField::Cached, v, true);
        break;
      case 17:
        if (key == "completion_tokens") set_token(TokenField::Completion, v, true);
        break;
      case 20:
        if (key == "input_tokens_details") read_details(v, false);
        break;
      case 21:
        if (key == "prompt_tokens_details") read_details(v, true);
        break;
      default:
        break;
    }
  }
};

}  // namespace

UsageFields read_usage_fields(JsonbContainerView root) noexcept {
  UsageFields f;
  f.root = jsonb_root_kind(root);
  if (f.root != JsonKind::Object) return f;
  Sink sink(&f);
  // A container that stops making sense part-way is not priced from the
  // members read before the damage.
  if (!jsonb_for_each_member(root, sink)) {
    f = UsageFields{};
    f.root = JsonKind::Malformed;
    return f;
  }

  // The nested `usage` object is read when the top level gives no split:
  // no token member at all, or a total alone (an app's own total beside
  // OpenAI's usage object, whose split then prices the row: the total is
  // used only without one, as ever).
  const bool has_split = present(f.tokens[idx(TokenField::Prompt)]) ||
                         present(f.tokens[idx(TokenField::Completion)]);
  if (!has_split && sink.usage_object_seen && sink.usage_object.kind == JsonKind::Object) {
    const TokenValue outer_total = f.tokens[idx(TokenField::Total)];
    Sink nested(&f, true);
    if (!jsonb_for_each_member(JsonbContainerView{sink.usage_object.data, sink.usage_object.size}, nested)) {
      f = UsageFields{};
      f.root = JsonKind::Malformed;
      return f;
    }
    // (with no split in there either, the top level's total stands: the
    // nested object's replaced only what the top level lacked)
    if (present(outer_total) && !present(f.tokens[idx(TokenField::Prompt)]) &&
        !present(f.tokens[idx(TokenField::Completion)]))
      f.tokens[idx(TokenField::Total)] = outer_total;
  }
  return f;
}

std::string_view token_field_name(TokenField f, uint8_t spelling) noexcept {
  // [in a usage object][Responses API name], as Sink reads them. The top
  // level "cached_tokens" has no Responses API spelling.
  static constexpr std::string_view kNames[static_cast<int>(TokenField::Count)][2][2] = {
      {{"prompt_tokens", "input_tokens"}, {"usage.prompt_tokens", "usage.input_tokens"}},
      {{"completion_tokens", "output_tokens"}, {"usage.completion_tokens", "usage.output_tokens"}},
      {{"tokens", "total_tokens"}, {"usage.tokens", "usage.total_tokens"}},
      {{"cached_tokens", "cached_tokens"}, {"usage.cached_tokens", "usage.cached_tokens"}},
      {{"prompt_tokens_details.cached_tokens", "input_tokens_details.cached_tokens"},
       {"usage.prompt_tokens_details.cached_tokens", "usage.input_tokens_details.cached_tokens"}},
  };
  const int i = static_cast<int>(f);
  if (i < 0 || i >= static_cast<int>(TokenField::Count) || spelling >= kSpellings) return "?";
  return kNames[i][(spelling & kInUsageObject) ? 1 : 0][(spelling & kResponsesName) ? 1 : 0];
}

Usage decode_usage(const UsageFields& fields) noexcept {
  Usage u;
  if (fields.root == JsonKind::Null || fields.root == JsonKind::Missing) return u;  // no usage
  if (fields.root != JsonKind::Object) {
    u.status = UsageStatus::Invalid;
    u.error = UsageError::NotAnObject;
    u.error_kind = fields.root;
    return u;
  }

  // Validate every present token field first, so that a bad value is
  // reported even when the row would otherwise count as "no usage".
  int64_t value[static_cast<int>(TokenField::Count)] = {};
  bool has[static_cast<int>(TokenField::Count)] = {};
  for (int i = 0; i < idx(TokenField::Count); ++i) {
    const TokenValue& t = fields.tokens[i];
    if (!present(t)) continue;
    auto invalid = [&](UsageError e) {
      u.status = UsageStatus::Invalid;
      u.error = e;
      u.error_field = static_cast<TokenField>(i);
      u.error_spelling = t.spelling;
      u.error_kind = t.kind;
      u.error_value = t.value;
      u.error_text = t.text;
      return u;
    };
    if (t.kind != JsonKind::Number) return invalid(UsageError::NotANumber);
    switch (t.number) {
      case NumericStatus::Ok: break;
      case NumericStatus::OutOfRange: return invalid(UsageError::OutOfRange);
      case NumericStatus::Malformed: return invalid(UsageError::NotANumber);
      default: return invalid(UsageError::NotAnInteger);
    }
    if (t.value < 0) return invalid(UsageError::Negative);
    has[i] = true;
    value[i] = t.value;
  }

  switch (fields.model_kind) {
    case JsonKind::String:
      u.has_model = true;
      u.model = fields.model;
      break;
    case JsonKind::Missing:
    case JsonKind::Null:
      break;
    default:
      u.status = UsageStatus::Invalid;
      u.error = UsageError::ModelNotAString;
      u.error_spelling = fields.model_in_usage ? kInUsageObject : 0;
      u.error_kind = fields.model_kind;
      return u;
  }

  const bool has_prompt = has[idx(TokenField::Prompt)];
  const bool has_completion = has[idx(TokenField::Completion)];
  if (!has_prompt && !has_completion) {
    if (!has[idx(TokenField::Total)]) return u;  // NoUsage
    u.status = UsageStatus::TotalOnly;
    u.total = value[idx(TokenField::Total)];
    return u;
  }
  u.prompt = value[idx(TokenField::Prompt)];
  u.completion = value[idx(TokenField::Completion)];
  if (has[idx(TokenField::CachedDetail)]) {
    u.cached = value[idx(TokenField::CachedDetail)];
  } else if (has[idx(TokenField::Cached)]) {
    u.cached = value[idx(TokenField::Cached)];
  }
  if (u.cached > u.prompt) {
    u.status = UsageStatus::Invalid;
    u.error = UsageError::CachedExceedsPrompt;
    u.error_field = has[idx(TokenField::CachedDetail)] ? TokenField::CachedDetail : TokenField::Cached;
    u.error_spelling = fields.tokens[idx(u.error_field)].spelling;
    // (a prompt count that is missing, so 0, is named as the completion
    // count is spelled, or else as the cached count's object spells it)
    const TokenValue& prompt = fields.tokens[idx(TokenField::Prompt)];
    const TokenValue& completion = fields.tokens[idx(TokenField::Completion)];
    u.prompt_spelling = prompt.kind != JsonKind::Missing       ? prompt.spelling
                        : completion.kind != JsonKind::Missing ? completion.spelling
                                                               : u.error_spelling;
    u.error_value = u.cached;
    return u;
  }
  if (__builtin_add_overflow(u.prompt, u.completion, &u.total)) u.total = std::numeric_limits<int64_t>::max();
  u.status = UsageStatus::Ok;
  return u;
}

namespace {

// `key` equals `name`, whose length the caller has already matched: a
// memcmp of constant size, which the compiler inlines.
template <std::size_t N>
bool is(std::string_view key, const char (&name)[N]) {
  return std::memcmp(key.data(), name, N - 1) == 0;
}

constexpr int kFields = static_cast<int>(TokenField::Count);
static_assert(kFields == 5, "FlatUsage::token_at lists one -1 per field");

// The members read_usage takes in one pass. Each call returns false as soon
// as the member needs the general path (the walk then stops); members it
// does not read are skipped as the general path skips them. It also notes
// where it found each field, for a UsageLayout.
struct FlatUsage {
  int64_t value[kFields] = {};
  bool has[kFields] = {};
  bool has_model = false;
  std::string_view model;

  int member = 0;                  // index of the member being visited
  int model_at = -1;               // the member the model was read from
  int token_at[kFields] = {-1, -1, -1, -1, -1};  // the member each field was read from
  unsigned names_seen = 0;         // one bit per member name read, to see one twice
  bool layout_ok = true;           // no *_details object, no name twice

  // A token count; between two spellings the preferred one wins, as in Sink.
  bool token(TokenField f, const JsonValue& v, bool preferred) {
    int64_t x;
    if (v.kind != JsonKind::Number || !decode_small_pg_integer(v.data, v.size, &x)) return false;
    const int i = idx(f);
    if (preferred || !has[i]) {
      value[i] = x;
      has[i] = true;
      token_at[i] = member;
    }
    return true;
  }

  bool details(const JsonValue& v, bool preferred) {
    layout_ok = false;
    if (v.kind != JsonKind::Object) return false;
    return jsonb_for_each_member(JsonbContainerView{v.data, v.size}, [&](std::string_view key, const JsonValue& inner) {
      return key.size() != 13 || !is(key, "cached_tokens") || token(TokenField::CachedDetail, inner, preferred);
    });
  }

  void seen(unsigned bit) {
    if (names_seen & bit) layout_ok = false;
    names_seen |= bit;
  }

  bool operator()(std::string_view key, const JsonValue& v) {
    const bool ok = read(key, v);
    ++member;
    return ok;
  }

  bool read(std::string_view key, const JsonValue& v) {
    // One call of token() below, so that the numeric decoder is inlined once.
    TokenField field;
    bool preferred = true;
    switch (key.size()) {
      case 5:
        if (is(key, "model")) {
          if (v.kind != JsonKind::String) return false;
          seen(1u << 0);
          if (!has_model) {
            has_model = true;
            model = std::string_view(reinterpret_cast<const char*>(v.data), v.size);
            model_at = member;
          }
          return true;
        }
        return !is(key, "usage");
      case 6:
        if (!is(key, "tokens")) return true;
        seen(1u << 1);
        field = TokenField::Total;
        break;
      case 12:
        if (is(key, "input_tokens")) {
          seen(1u << 2);
          field = TokenField::Prompt;
        } else if (is(key, "total_tokens")) {
          seen(1u << 3);
          field = TokenField::Total;
        } else {
          return true;
        }
        preferred = false;
        break;
      case 13:
        if (is(key, "prompt_tokens")) {
          seen(1u << 4);
          field = TokenField::Prompt;
        } else if (is(key, "output_tokens")) {
          seen(1u << 5);
          field = TokenField::Completion;
          preferred = false;
        } else if (is(key, "cached_tokens")) {
          seen(1u << 6);
          field = TokenField::Cached;
        } else {
          return true;
        }
        break;
      case 17:
        if (!is(key, "completion_tokens")) return true;
        seen(1u << 7);
        field = TokenField::Completion;
        break;
      case 20:
        return !is(key, "input_tokens_details") || details(v, false);
      case 21:
        return !is(key, "prompt_tokens_details") || details(v, true);
      default:
        return true;
    }
    return token(field, v, preferred);
  }
};

// What decode_usage makes of fields that are all present and valid
// (value[i] where has[i]), written into *out, a default Usage; false when
// cached > prompt, which is Invalid and worded by the general path (*out is
// then to be overwritten).
__attribute__((always_inline)) inline bool usage_from_valid(const int64_t* value, const bool* has, bool has_model,
                                                            std::string_view model, Usage* out) {
  out->has_model = has_model;
  out->model = model;
  if (!has[idx(TokenField::Prompt)] && !has[idx(TokenField::Completion)]) {
    if (has[idx(TokenField::Total)]) {
      out->status = UsageStatus::TotalOnly;
      out->total = value[idx(TokenField::Total)];
    }
    return true;  // NoUsage or TotalOnly
  }
  out->prompt = has[idx(TokenField::Prompt)] ? value[idx(TokenField::Prompt)] : 0;
  out->completion = has[idx(TokenField::Completion)] ? value[idx(TokenField::Completion)] : 0;
  if (has[idx(TokenField::CachedDetail)]) {
    out->cached = value[idx(TokenField::CachedDetail)];
  } else if (has[idx(TokenField::Cached)]) {
    out->cached = value[idx(TokenField::Cached)];
  }
  if (out->cached > out->prompt) return false;
  out->total = out->prompt + out->completion;  // both below 10^16
  out->status = UsageStatus::Ok;
  return true;
}

// Reads `root` through `l` into *out, a default Usage: false unless root has
// exactly l's keys (same header, key entries and key bytes), every value lies
// where jsonb_for_each_member would accept it, the members l reads are a
// string model and small integer counts, and cached <= prompt. With the same
// keys the general path reads the same members, so the result is the same.
bool read_with_layout(JsonbContainerView root, const UsageLayout& l, Usage* out) {
  using namespace jsonb_detail;
  if (root.data == nullptr || root.size < 4 || read_u32(root.data) != l.header) return false;
  const std::size_t pairs = l.header & kCountMask;
  if (pairs * 2 > (root.size - 4) / 4) return false;
  const uint8_t* entries = root.data + 4;
  const uint8_t* area = entries + pairs * 8;
  const std::size_t area_size = root.size - 4 - pairs * 8;
  if (l.key_bytes > area_size || std::memcmp(entries, l.key_entries, pairs * 4) != 0 ||
      std::memcmp(area, l.keys, l.key_bytes) != 0)
    return false;

  uint32_t entry[UsageLayout::kMaxMembers];
  std::size_t start[UsageLayout::kMaxMembers];
  std::size_t end[UsageLayout::kMaxMembers];
  std::size_t off = l.key_bytes;  // the values' data follows the keys
  for (std::size_t i = 0; i < pairs; ++i) {
    const uint32_t e = read_u32(entries + (pairs + i) * 4);
    const std::size_t stop = (e & kHasOffset) ? (e & kOffLenMask) : off + (e & kOffLenMask);
    if (stop < off || stop > area_size) return false;
    entry[i] = e;
    start[i] = off;
    end[i] = stop;
    off = stop;
  }

  std::string_view model;
  if (l.model >= 0) {
    const int m = l.model;
    if ((entry[m] & kTypeMask) != kTypeString) return false;
    model = std::string_view(reinterpret_cast<const char*>(area + start[m]), end[m] - start[m]);
  }
  int64_t value[kFields] = {};
  bool has[kFields] = {};
  for (int k = 0; k < l.counts; ++k) {
    const int f = l.count_field[k];
    const int m = l.token[f];
    const std::size_t aligned = int_align(start[m]);  // numbers start 4-byte aligned
    if ((entry[m] & kTypeMask) != kTypeNumeric || aligned > end[m] ||
        !decode_small_pg_integer(area + aligned, end[m] - aligned, &value[f]))
      return false;
    has[f] = true;
  }
  return usage_from_valid(value, has, l.model >= 0, model, out);
}

// Keeps the keys of `root`, which `f` has just read, as the layout for the
// next rows (when they fit and say where every field is).
void learn(JsonbContainerView root, const FlatUsage& f, UsageLayout* l) {
  using namespace jsonb_detail;
  if (!f.layout_ok) return;
  const uint32_t header = read_u32(root.data);
  const std::size_t pairs = header & kCountMask;
  if (pairs == 0 || pairs > UsageLayout::kMaxMembers) return;
  const uint8_t* entries = root.data + 4;
  std::size_t key_bytes = 0;
  for (std::size_t i = 0; i < pairs; ++i) {
    const uint32_t e = read_u32(entries + i * 4);
    key_bytes = (e & kHasOffset) ? (e & kOffLenMask) : key_bytes + (e & kOffLenMask);
  }
  if (key_bytes > UsageLayout::kMaxKeyBytes) return;
  l->header = header;
  l->key_bytes = static_cast<uint32_t>(key_bytes);
  std::memcpy(l->key_entries, entries, pairs * 4);
  std::memcpy(l->keys, entries + pairs * 8, key_bytes);
  l->model = static_cast<int8_t>(f.model_at);
  l->counts = 0;
  for (int i = 0; i < kFields; ++i) {
    l->token[i] = static_cast<int8_t>(f.token_at[i]);
    if (f.token_at[i] >= 0) l->count_field[l->counts++] = static_cast<int8_t>(i);
  }
}

}  // namespace

Usage read_usage(JsonbContainerView root, UsageLayout* layout) noexcept {
  Usage u;  // every path writes here: one Usage, returned in place
  if (layout != nullptr && layout->header != 0 && read_with_layout(root, *layout, &u)) return u;
  u = Usage{};
  FlatUsage f;
  if (jsonb_for_each_member(root, f) && usage_from_valid(f.value, f.has, f.has_model, f.model, &u)) {
    if (layout != nullptr) learn(root, f, layout);
  } else {
    u = decode_usage(read_usage_fields(root));
  }
  return u;
}

namespace {

std::string_view kind_name(JsonKind k) {
  switch (k) {
    case JsonKind::String: return "a string";
    case JsonKind::Number: return "a number";
    case JsonKind::True:
    case JsonKind::False: return "a boolean";
    case JsonKind::Object: return "an object";
    case JsonKind::Array: return "an array";
    case JsonKind::Null: return "null";
    case JsonKind::Missing: return "nothing";
    case JsonKind::Malformed: return "malformed jsonb";
  }
  return "?";
}

}  // namespace

std::size_t describe_usage_error(const Usage& u, char* buf, std::size_t n) noexcept {
  if (n == 0) return 0;
  const std::string_view field = token_field_name(u.error_field, u.error_spelling);
  // Quote at most 40 bytes of a bad string value, enough to recognise it,
  // cut at a character boundary: the message must stay valid UTF-8.
  std::string_view shown = u.error_text.substr(0, 40);
  if (shown.size() < u.error_text.size())
    while (!shown.empty() && (static_cast<unsigned char>(u.error_text[shown.size()]) & 0xC0) == 0x80)
      shown.remove_suffix(1);
  try {
    fmt::format_to_n_result<char*> r{buf, 0};
    switch (u.error) {
      case UsageError::None:
        r = fmt::format_to_n(buf, n - 1, "usage is valid");
        break;
      case UsageError::NotAnObject:
        r = fmt::format_to_n(buf, n - 1, "usage must be a JSON object, got {}", kind_name(u.error_kind));
        break;
      case UsageError::NotANumber:
        if (u.error_kind == JsonKind::String)
          r = fmt::format_to_n(buf, n - 1, "\"{}\" must be a non-negative integer, got the string \"{}\"", field, shown);
        else
          r = fmt::format_to_n(buf, n - 1, "\"{}\" must be a non-negative integer, got {}", field, kind_name(u.error_kind));
        break;
      case UsageError::NotAnInteger:
        r = fmt::format_to_n(buf, n - 1, "\"{}\" must be a non-negative integer, got a fractional or non-finite number", field);
        break;
      case UsageError::OutOfRange:
        r = fmt::format_to_n(buf, n - 1, "\"{}\" is out of range for bigint", field);
        break;
      case UsageError::Negative:
        r = fmt::format_to_n(buf, n - 1, "\"{}\" must not be negative, got {}", field, u.error_value);
        break;
      case UsageError::CachedExceedsPrompt:
        r = fmt::format_to_n(buf, n - 1, "\"{}\" ({}) exceeds \"{}\" ({})", field, u.error_value,
                             token_field_name(TokenField::Prompt, u.prompt_spelling), u.prompt);
        break;
      case UsageError::ModelNotAString:
        r = fmt::format_to_n(buf, n - 1, "\"{}model\" must be a string, got {}",
                             (u.error_spelling & kInUsageObject) ? "usage." : "", kind_name(u.error_kind));
        break;
    }
    const std::size_t len = static_cast<std::size_t>(r.out - buf);
    buf[len] = '\0';
    return len;
  } catch (...) {
    buf[0] = '\0';
    return 0;
  }
}

std::size_t utf8_char_count(const char* s, std::size_t n) noexcept {
  constexpr uint64_t kHigh = UINT64_C(0x8080808080808080);
  std::size_t continuing = 0;
  std::size_t i = 0;
#ifdef __SSE2__
  // 16 bytes at a time: a byte continues a character when, as a signed
  // byte, it is below -64 (0x80 to 0xBF); movemask gathers the 16 tests.
  const __m128i kBelow = _mm_set1_epi8(static_cast<char>(-64));
  for (; i + 16 <= n; i += 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmplt_epi8(bytes, kBelow)));
    // (a popcount of 16 bits without the POPCNT instruction)
    unsigned m = mask - ((mask >> 1) & 0x5555u);
    m = (m & 0x3333u) + ((m >> 2) & 0x3333u);
    m = (m + (m >> 4)) & 0x0F0Fu;
    continuing += (m + (m >> 8)) & 0x1Fu;
  }
#endif
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, s + i, 8);
    // A byte continues a character when its bit 7 is set and bit 6 clear:
    // (w << 1) moves each byte's bit 6 to its bit 7. The marks, one bit per
    // byte, are summed by a multiplication into the top byte.
    const uint64_t marks = (w & ~(w << 1) & kHigh) >> 7;
    continuing += static_cast<std::size_t>((marks * UINT64_C(0x0101010101010101)) >> 56);
  }
  for (; i < n; ++i) continuing += (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80;
  return n - continuing;
}

}  // namespace billing

#include "no_postgres.h"
