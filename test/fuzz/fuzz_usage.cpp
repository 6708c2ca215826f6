// Fuzzes the jsonb reader and the usage decoder (src/core/jsonb_reader.h,
// src/core/usage.h): jsonb_root_kind, jsonb_for_each_member,
// read_usage_fields, decode_usage and describe_usage_error, and read_usage
// (with and without a UsageLayout) against them.
//
// Input: arbitrary bytes taken as a jsonb root container (what
// VARDATA_ANY() of a jsonb datum points at, without the varlena header).
//
// Checks, besides "no crash, no out-of-bounds read, no UB":
//  * every key, string, number and nested container the walker hands out lies
//    inside the input; numbers decode without crashing;
//  * read_usage_fields reports the root kind of jsonb_root_kind, except that
//    an object whose members cannot all be read is Malformed (a damaged
//    object is never priced from the members before the damage); its model
//    and string views lie inside the input;
//  * decode_usage: Ok means prompt, completion, cached >= 0, cached <= prompt
//    and total = prompt + completion (saturated); TotalOnly means total >= 0;
//    Invalid always names an error and the other statuses never do;
//  * read_usage gives decode_usage(read_usage_fields(root)) field for field,
//    alone, through the layout of the seed's usage object, and through the
//    layout it learns from the input itself;
//  * describe_usage_error writes at most n-1 bytes plus a NUL into a buffer of
//    exactly n bytes, and a smaller buffer gets a prefix of the full message;
//    the full message (256 bytes, as the extension uses) is valid UTF-8 when
//    the string it quotes is (jsonb strings always are).
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>

#include "fuzz_check.h"
#include "jsonb_reader.h"
#include "pg_numeric.h"
#include "usage.h"

using namespace billing;

namespace {

struct Input {
  const uint8_t* data;
  std::size_t size;
};

// Touches every byte of [p, p + n) so that ASan sees any bad read.
unsigned touch(const uint8_t* p, std::size_t n) {
  unsigned sum = 0;
  for (std::size_t i = 0; i < n; ++i) sum += p[i];
  return sum;
}

void check_value(const Input& in, const JsonValue& v, int depth);

void walk_object(const Input& in, JsonbContainerView c, int depth) {
  if (depth > 8) return;
  jsonb_for_each_member(c, [&](std::string_view key, const JsonValue& v) {
    FUZZ_CHECK(fuzz::inside(key.data(), key.size(), in.data, in.size), "key outside the input");
    FUZZ_CHECK(fuzz::inside(key.data(), key.size(), c.data, c.size), "key outside its container");
    touch(reinterpret_cast<const uint8_t*>(key.data()), key.size());
    if (v.data != nullptr)
      FUZZ_CHECK(fuzz::inside(v.data, v.size, c.data, c.size), "value outside its container");
    check_value(in, v, depth + 1);
  });
}

void check_value(const Input& in, const JsonValue& v, int depth) {
  switch (v.kind) {
    case JsonKind::String:
    case JsonKind::Number:
    case JsonKind::Object:
    case JsonKind::Array:
      FUZZ_CHECK(v.data != nullptr, "kind %d without data", static_cast<int>(v.kind));
      FUZZ_CHECK(fuzz::inside(v.data, v.size, in.data, in.size), "value outside the input");
      touch(v.data, v.size);
      break;
    default:
      break;
  }
  if (v.kind == JsonKind::Number) {
    for (int scale : {0, 6, 12, 18}) (void)decode_pg_numeric(v.data, v.size, scale);
  } else if (v.kind == JsonKind::Object || v.kind == JsonKind::Array) {
    // A nested container must itself look like one.
    const JsonKind k = jsonb_root_kind(JsonbContainerView{v.data, v.size});
    FUZZ_CHECK(k == v.kind, "nested container kind %d, root kind says %d", static_cast<int>(v.kind),
               static_cast<int>(k));
    if (v.kind == JsonKind::Object) walk_object(in, JsonbContainerView{v.data, v.size}, depth);
  }
}

void check_view(const Input& in, std::string_view s, const char* what) {
  if (s.empty()) return;
  FUZZ_CHECK(fuzz::inside(s.data(), s.size(), in.data, in.size), "%s view outside the input", what);
}

void check_usage(const UsageFields& f, const Usage& u) {
  const auto i64 = [](int64_t v) { return static_cast<long long>(v); };
  switch (u.status) {
    case UsageStatus::Ok:
      FUZZ_CHECK(u.error == UsageError::None, "Ok with error %d", static_cast<int>(u.error));
      FUZZ_CHECK(u.prompt >= 0 && u.completion >= 0 && u.cached >= 0, "Ok with negative counts %lld/%lld/%lld",
                 i64(u.prompt), i64(u.completion), i64(u.cached));
      FUZZ_CHECK(u.cached <= u.prompt, "Ok with cached %lld > prompt %lld", i64(u.cached), i64(u.prompt));
      {
        int64_t sum;
        if (__builtin_add_overflow(u.prompt, u.completion, &sum)) sum = std::numeric_limits<int64_t>::max();
        FUZZ_CHECK(u.total == sum, "total %lld != prompt %lld + completion %lld", i64(u.total), i64(u.prompt),
                   i64(u.completion));
      }
      break;
    case UsageStatus::TotalOnly:
      FUZZ_CHECK(u.error == UsageError::None, "TotalOnly with error %d", static_cast<int>(u.error));
      FUZZ_CHECK(u.total >= 0, "TotalOnly with total %lld", i64(u.total));
      FUZZ_CHECK(u.prompt == 0 && u.completion == 0 && u.cached == 0, "TotalOnly with a split");
      break;
    case UsageStatus::NoUsage:
      FUZZ_CHECK(u.error == UsageError::None, "NoUsage with error %d", static_cast<int>(u.error));
      FUZZ_CHECK(u.prompt == 0 && u.completion == 0 && u.cached == 0 && u.total == 0, "NoUsage with counts");
      break;
    case UsageStatus::Invalid:
      FUZZ_CHECK(u.error != UsageError::None, "Invalid without an error");
      break;
  }
  // A root that is not an object (nor a SQL/JSON null) is always an error.
  if (f.root != JsonKind::Object && f.root != JsonKind::Null && f.root != JsonKind::Missing)
    FUZZ_CHECK(u.status == UsageStatus::Invalid && u.error == UsageError::NotAnObject,
               "root kind %d gave status %d", static_cast<int>(f.root), static_cast<int>(u.status));
  if (u.has_model) {
    FUZZ_CHECK(f.model_kind == JsonKind::String, "has_model without a string model");
    FUZZ_CHECK(u.model.data() == f.model.data() && u.model.size() == f.model.size(), "model view changed");
  }
}

// Well-formed UTF-8 (RFC 3629: no overlongs, surrogates or code points
// above U+10FFFF), as PostgreSQL's pg_utf8_islegal accepts it.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return false;
    if (s.size() - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

void check_describe(const Usage& u) {
  constexpr std::size_t kFull = 256;  // char message[256] in src/pg
  char full[kFull];
  const std::size_t full_len = describe_usage_error(u, full, kFull);
  FUZZ_CHECK(full_len < kFull && full[full_len] == '\0', "describe: length %zu, no NUL", full_len);
  FUZZ_CHECK(full_len > 0, "describe wrote nothing for error %d", static_cast<int>(u.error));
  FUZZ_CHECK(full_len < kFull - 1, "message cut at %zu bytes: %s", full_len, full);
  if (valid_utf8(u.error_text))
    FUZZ_CHECK(valid_utf8(std::string_view(full, full_len)), "message is not valid UTF-8: %s", full);
  FUZZ_CHECK(describe_usage_error(u, nullptr, 0) == 0, "describe into a 0-byte buffer");
  for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{40}, std::size_t{100}}) {
    // Exactly n bytes on the heap: ASan catches a write past the end.
    std::unique_ptr<char[]> buf(new char[n]);
    const std::size_t len = describe_usage_error(u, buf.get(), n);
    FUZZ_CHECK(len < n && buf[len] == '\0', "describe into %zu bytes: length %zu", n, len);
    const std::size_t want = full_len < n - 1 ? full_len : n - 1;
    FUZZ_CHECK(len == want && std::memcmp(buf.get(), full, len) == 0,
               "describe into %zu bytes is not a prefix of the full message (%zu vs %zu)", n, len, want);
  }
}

// read_usage, the reader the cost functions call for every row, gives
// exactly what the two-step reader gives (the views at the same bytes).
void check_same(const Usage& got, const Usage& want, const char* how) {
  FUZZ_CHECK(got.status == want.status && got.error == want.error && got.error_field == want.error_field &&
                 got.error_kind == want.error_kind && got.error_value == want.error_value &&
                 got.error_text.data() == want.error_text.data() && got.error_text.size() == want.error_text.size() &&
                 got.has_model == want.has_model && got.model.data() == want.model.data() &&
                 got.model.size() == want.model.size() && got.prompt == want.prompt &&
                 got.completion == want.completion && got.cached == want.cached && got.total == want.total,
             "read_usage %s: status %d error %d prompt %lld completion %lld cached %lld total %lld, two-step: "
             "status %d error %d prompt %lld completion %lld cached %lld total %lld",
             how, static_cast<int>(got.status), static_cast<int>(got.error), static_cast<long long>(got.prompt),
             static_cast<long long>(got.completion), static_cast<long long>(got.cached),
             static_cast<long long>(got.total), static_cast<int>(want.status), static_cast<int>(want.error),
             static_cast<long long>(want.prompt), static_cast<long long>(want.completion),
             static_cast<long long>(want.cached), static_cast<long long>(want.total));
}

// The layout of the app's usual object, {"model": "gpt-4o-mini", "tokens": 150,
// "prompt_tokens": 100, "completion_tokens": 50} (pg_fixtures.h seed_usage,
// container bytes): inputs mutated from it are read through it.
UsageLayout seed_layout() {
  static const uint8_t seed[] = {
      0x04, 0x00, 0x00, 0x20, 0x05, 0x00, 0x00, 0x80, 0x06, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x00, 0x00, 0x11, 0x00,
      0x00, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x10, 0x08, 0x00, 0x00, 0x10, 0x08, 0x00, 0x00, 0x10,
      0x6d, 0x6f, 0x64, 0x65, 0x6c, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x73, 0x70, 0x72, 0x6f, 0x6d, 0x70, 0x74, 0x5f,
      0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x73, 0x63, 0x6f, 0x6d, 0x70, 0x6c, 0x65, 0x74, 0x69, 0x6f, 0x6e, 0x5f, 0x74,
      0x6f, 0x6b, 0x65, 0x6e, 0x73, 0x67, 0x70, 0x74, 0x2d, 0x34, 0x6f, 0x2d, 0x6d, 0x69, 0x6e, 0x69, 0x20, 0x00,
      0x00, 0x00, 0x00, 0x80, 0x96, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x80, 0x64, 0x00, 0x20, 0x00, 0x00, 0x00,
      0x00, 0x80, 0x32, 0x00};
  UsageLayout l{};
  (void)read_usage(JsonbContainerView{seed, sizeof seed}, &l);
  FUZZ_CHECK(l.header != 0, "the seed object gives no layout");
  return l;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const Input in{data, size};
  const JsonbContainerView root{data, size};

  const JsonKind kind = jsonb_root_kind(root);
  if (kind == JsonKind::Object) walk_object(in, root, 0);
  FUZZ_CHECK(jsonb_root_kind(JsonbContainerView{nullptr, size}) == JsonKind::Malformed, "null container");
  const bool members_ok = kind == JsonKind::Object && jsonb_for_each_member(root, [](std::string_view, const JsonValue&) {});
  if (kind != JsonKind::Object)
    FUZZ_CHECK(!jsonb_for_each_member(root, [](std::string_view, const JsonValue&) {}), "walked a non-object");

  const UsageFields f = read_usage_fields(root);
  if (kind != JsonKind::Object)
    FUZZ_CHECK(f.root == kind, "read_usage_fields root %d, jsonb_root_kind %d", static_cast<int>(f.root),
               static_cast<int>(kind));
  else if (!members_ok)
    FUZZ_CHECK(f.root == JsonKind::Malformed, "damaged object read as root kind %d", static_cast<int>(f.root));
  else
    FUZZ_CHECK(f.root == JsonKind::Object || f.root == JsonKind::Malformed, "object read as root kind %d",
               static_cast<int>(f.root));
  if (f.model_kind == JsonKind::String) check_view(in, f.model, "model");
  for (const TokenValue& t : f.tokens) {
    if (t.kind == JsonKind::String) check_view(in, t.text, "token string");
  }

  const Usage u = decode_usage(f);
  check_usage(f, u);
  check_same(read_usage(root), u, "alone");
  static const UsageLayout seed = seed_layout();
  UsageLayout layout = seed;
  check_same(read_usage(root, &layout), u, "through the seed's layout");
  UsageLayout own{};
  check_same(read_usage(root, &own), u, "learning its layout");
  check_same(read_usage(root, &own), u, "through its own layout");
  check_view(in, u.model, "usage model");
  check_view(in, u.error_text, "error text");
  check_describe(u);

  // Every other token field combination of the same fields decodes safely
  // too: clear one field at a time (what a row without that key would give).
  for (int i = 0; i < static_cast<int>(TokenField::Count); ++i) {
    UsageFields g = f;
    g.tokens[i] = TokenValue{};
    const Usage v = decode_usage(g);
    check_usage(g, v);
    check_describe(v);
  }
  return 0;
}
