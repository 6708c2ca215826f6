// Unit tests for src/core/jsonb_reader.h on genuine jsonb datums captured from
// PostgreSQL 15 (pg_fixtures.h), hand-patched copies of them, and mutated
// bytes (truncations, flipped bytes, hostile 32-bit words).
#include "jsonb_reader.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <iterator>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "pg_fixtures.h"
#include "pg_numeric.h"
#include "test_support.h"

namespace billing {

namespace {

using billing_test::Bytes;
using billing_test::jsonb_container;
using billing_test::view_of;
namespace hex = billing_test::jsonb_hex;

// A number as text: its value at the smallest scale (0..18) that holds it
// exactly, e.g. 150 -> "150", 1.5 -> "15e-1"; or its decode status.
std::string number_text(const JsonValue& v) {
  for (int scale = 0; scale <= 18; ++scale) {
    const ScaledNumeric n = decode_pg_numeric(v.data, v.size, scale);
    if (n.status == NumericStatus::Ok)
      return std::to_string(n.value) + (scale ? "e-" + std::to_string(scale) : std::string());
    if (n.status != NumericStatus::TooPrecise) return "<numeric status " + std::to_string(static_cast<int>(n.status)) + ">";
  }
  return "<too precise>";
}

std::string describe_object(JsonbContainerView c, bool* ok = nullptr);

std::string value_text(const JsonValue& v) {
  switch (v.kind) {
    case JsonKind::String: return '"' + std::string(reinterpret_cast<const char*>(v.data), v.size) + '"';
    case JsonKind::Number: return number_text(v);
    case JsonKind::True: return "true";
    case JsonKind::False: return "false";
    case JsonKind::Null: return "null";
    case JsonKind::Object: return "{" + describe_object(JsonbContainerView{v.data, v.size}) + "}";
    case JsonKind::Array: return "[array]";
    case JsonKind::Missing: return "<missing>";
    case JsonKind::Malformed: return "<malformed>";
  }
  return "?";
}

// "key=value key=value ..." in the container's order.
std::string describe_object(JsonbContainerView c, bool* ok) {
  std::string out;
  const bool r = jsonb_for_each_member(c, [&](std::string_view key, const JsonValue& v) {
    if (!out.empty()) out += ' ';
    out += std::string(key) + "=" + value_text(v);
  });
  if (ok) *ok = r;
  return out;
}

std::string describe_fixture(const char* h, bool* ok = nullptr) {
  const Bytes c = jsonb_container(h);
  return describe_object(view_of(c), ok);
}

uint32_t word_at(const Bytes& b, std::size_t off) {
  uint32_t w;
  std::memcpy(&w, b.data() + off, 4);
  return w;
}

void set_word(Bytes& b, std::size_t off, uint32_t w) { std::memcpy(b.data() + off, &w, 4); }

std::size_t find_bytes(const Bytes& hay, const Bytes& needle) {
  for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i)
    if (std::memcmp(hay.data() + i, needle.data(), needle.size()) == 0) return i;
  ADD_FAILURE() << "pattern not found";
  return 0;
}

TEST(JsonbFixtures, VarlenaHeaders) {
  // Small datums are stored with a 1-byte header, large ones with a 4-byte one.
  EXPECT_EQ(billing_test::from_hex(hex::seed_usage).size(), 113u);
  EXPECT_EQ(jsonb_container(hex::seed_usage).size(), 112u);  // 113 - 1 header byte
  EXPECT_EQ(billing_test::from_hex(hex::long_strings).size(), 1396u);
  EXPECT_EQ(jsonb_container(hex::long_strings).size(), 1392u);  // 1396 - 4 header bytes
}

TEST(JsonbRootKind, CapturedRoots) {
  struct Case {
    const char* hex;
    JsonKind kind;
  };
  const Case cases[] = {
      {hex::seed_usage, JsonKind::Object},     {hex::many_keys, JsonKind::Object},
      {hex::long_strings, JsonKind::Object},   {hex::empty_object, JsonKind::Object},
      {hex::array_root, JsonKind::Array},      {hex::array_of_objects, JsonKind::Array},
      {hex::empty_array, JsonKind::Array},     {hex::scalar_number, JsonKind::Number},
      {hex::scalar_string, JsonKind::String},  {hex::scalar_true, JsonKind::True},
      {hex::scalar_false, JsonKind::False},    {hex::scalar_null, JsonKind::Null},
  };
  for (const Case& c : cases) {
    const Bytes b = jsonb_container(c.hex);
    EXPECT_EQ(jsonb_root_kind(view_of(b)), c.kind) << c.hex;
  }
}

TEST(JsonbRootKind, TooSmallOrNull) {
  EXPECT_EQ(jsonb_root_kind(JsonbContainerView{nullptr, 0}), JsonKind::Malformed);
  EXPECT_EQ(jsonb_root_kind(JsonbContainerView{nullptr, 16}), JsonKind::Malformed);
  const uint8_t three[] = {0x00, 0x00, 0x00};
  EXPECT_EQ(jsonb_root_kind(JsonbContainerView{three, 3}), JsonKind::Malformed);
}

TEST(JsonbRootKind, MalformedHeaders) {
  const Bytes seed = jsonb_container(hex::seed_usage);
  ASSERT_EQ(word_at(seed, 0), 0x20000004u);  // object, 4 pairs
  struct Case {
    uint32_t header;
    JsonKind kind;
  };
  const Case cases[] = {
      {0x2FFFFFFFu, JsonKind::Malformed},  // 2^28 - 1 pairs cannot fit in 112 bytes
      // (112 - 4) / 4 = 27 JEntries fit after the header.
      {0x2000000Eu, JsonKind::Malformed},  // 14 pairs = 28 JEntries = 112 bytes > 108
      {0x2000000Du, JsonKind::Object},     // 13 pairs = 26 JEntries = 104 bytes <= 108
      {0x60000004u, JsonKind::Malformed},  // object and array
      {0x30000004u, JsonKind::Malformed},  // object and scalar
      {0x00000004u, JsonKind::Malformed},  // neither object nor array
      {0x40000004u, JsonKind::Array},      // an array of 4 (the bytes are not checked further)
      {0x4000001Cu, JsonKind::Malformed},  // 28 JEntries = 112 bytes > 108
      {0x4000001Bu, JsonKind::Array},      // 27 JEntries = 108 bytes
      {0x50000002u, JsonKind::Malformed},  // a root scalar must have exactly one element
      {0x50000000u, JsonKind::Malformed},
  };
  for (const Case& c : cases) {
    Bytes b = seed;
    set_word(b, 0, c.header);
    EXPECT_EQ(jsonb_root_kind(view_of(b)), c.kind) << std::hex << c.header;
  }
}

TEST(JsonbRootKind, MalformedRootScalars) {
  const Bytes num = jsonb_container(hex::scalar_number);
  ASSERT_EQ(num.size(), 16u);
  ASSERT_EQ(word_at(num, 0), 0x50000001u);  // array | scalar, 1 element
  ASSERT_EQ(word_at(num, 4), 0x90000008u);  // HAS_OFF | numeric, end 8
  {
    Bytes b = num;
    set_word(b, 4, 0xD0000008u);  // a container where a scalar must be
    EXPECT_EQ(jsonb_root_kind(view_of(b)), JsonKind::Malformed);
  }
  {
    // Even when the bytes there would read as a valid (empty) object, a root
    // scalar cannot be a container: no recursion on a scalar root.
    Bytes b = num;
    set_word(b, 4, 0xD0000004u);  // HAS_OFF | container, end 4
    set_word(b, 8, 0x20000000u);  // an empty object's header
    EXPECT_EQ(jsonb_root_kind(view_of(b)), JsonKind::Malformed);
  }
  {
    Bytes b = num;
    set_word(b, 4, 0x90000009u);  // ends one byte past the 8-byte data area
    EXPECT_EQ(jsonb_root_kind(view_of(b)), JsonKind::Malformed);
  }
  {
    Bytes b = num;
    set_word(b, 4, 0x60000008u);  // type 6 does not exist
    EXPECT_EQ(jsonb_root_kind(view_of(b)), JsonKind::Malformed);
  }
  {
    Bytes b = num;
    set_word(b, 4, 0xB0000000u);  // true (no data)
    EXPECT_EQ(jsonb_root_kind(view_of(b)), JsonKind::True);
  }
  {
    Bytes b = num;
    set_word(b, 0, 0x40000001u);  // not flagged scalar: a one-element array
    EXPECT_EQ(jsonb_root_kind(view_of(b)), JsonKind::Array);
  }
  {
    const Bytes cut(num.begin(), num.begin() + 7);  // header + 3 bytes of the JEntry
    EXPECT_EQ(jsonb_root_kind(view_of(cut)), JsonKind::Malformed);
  }
}

TEST(JsonbMembers, SeedUsage) {
  bool ok = false;
  // jsonb sorts keys by length, then bytes: model(5) tokens(6) prompt_tokens(13) completion_tokens(17)
  EXPECT_EQ(describe_fixture(hex::seed_usage, &ok),
            "model=\"gpt-4o-mini\" tokens=150 prompt_tokens=100 completion_tokens=50");
  EXPECT_TRUE(ok);
}

TEST(JsonbMembers, NumbersHaveFourByteHeadersAndAreAligned) {
  const Bytes c = jsonb_container(hex::seed_usage);
  int numbers = 0;
  ASSERT_TRUE(jsonb_for_each_member(view_of(c), [&](std::string_view, const JsonValue& v) {
    if (v.kind != JsonKind::Number) return;
    ++numbers;
    EXPECT_EQ(v.data[0] & 0x03, 0) << "4-byte varlena header";
    EXPECT_EQ(v.size, 8u);  // 4 header + 2 numeric header + 1 digit
    EXPECT_EQ((v.data - c.data()) % 4, 0) << "numbers start on a 4-byte boundary";
  }));
  EXPECT_EQ(numbers, 3);
}

TEST(JsonbMembers, PaddingBeforeNumbers) {
  // Data area: keys "abccddmodel" (11 bytes), "x" at 11, number 1 at 12 (aligned),
  // "yyy" at 20..23, one padding byte, number 2 at 24, "q" at 32.
  bool ok = false;
  EXPECT_EQ(describe_fixture(hex::numbers_after_odd_strings, &ok), "a=\"x\" b=1 cc=\"yyy\" dd=2 model=\"q\"");
  EXPECT_TRUE(ok);
}

TEST(JsonbMembers, NestedObjects) {
  EXPECT_EQ(describe_fixture(hex::openai_cached_details),
            "model=\"gpt-4o\" total_tokens=1002000 prompt_tokens=1000000 completion_tokens=2000 "
            "prompt_tokens_details={cached_tokens=400000}");
  EXPECT_EQ(describe_fixture(hex::responses_api),
            "model=\"gpt-4.1\" input_tokens=1200 total_tokens=1500 output_tokens=300 "
            "input_tokens_details={cached_tokens=200} output_tokens_details={reasoning_tokens=100}");
  EXPECT_EQ(describe_fixture(hex::nested_usage),
            "id=\"chatcmpl-1\" model=\"gpt-4o-mini-2024-07-18\" "
            "usage={total_tokens=15 prompt_tokens=10 completion_tokens=5}");
}

TEST(JsonbMembers, ScalarKinds) {
  EXPECT_EQ(describe_fixture(hex::string_token), "model=\"gpt-4o\" prompt_tokens=\"12a\" completion_tokens=5");
  EXPECT_EQ(describe_fixture(hex::bool_token), "prompt_tokens=true completion_tokens=5");
  EXPECT_EQ(describe_fixture(hex::null_tokens), "model=null prompt_tokens=null completion_tokens=5");
  EXPECT_EQ(describe_fixture(hex::float_token), "prompt_tokens=15e-1 completion_tokens=5");  // 1.5
  EXPECT_EQ(describe_fixture(hex::integral_float_token), "prompt_tokens=100 completion_tokens=100");
  EXPECT_EQ(describe_fixture(hex::negative_token), "prompt_tokens=-5 completion_tokens=5");
  EXPECT_EQ(describe_fixture(hex::bigint_max_token),
            "prompt_tokens=9223372036854775807 completion_tokens=9223372036854775807");
  EXPECT_EQ(describe_fixture(hex::container_tokens), "prompt_tokens=[array] completion_tokens={a=1}");
  EXPECT_EQ(describe_fixture(hex::model_number), "model=4 prompt_tokens=1 completion_tokens=1");
}

TEST(JsonbMembers, OutOfRangeNumberIsStillANumber) {
  const Bytes c = jsonb_container(hex::bigint_overflow_token);
  bool seen = false;
  ASSERT_TRUE(jsonb_for_each_member(view_of(c), [&](std::string_view key, const JsonValue& v) {
    if (key != "prompt_tokens") return;
    seen = true;
    ASSERT_EQ(v.kind, JsonKind::Number);
    EXPECT_EQ(decode_pg_numeric(v.data, v.size, 0).status, NumericStatus::OutOfRange);  // 2^63
  }));
  EXPECT_TRUE(seen);
}

TEST(JsonbMembers, Utf8Strings) {
  // "ü" = C3 BC, "ï" = C3 AF, "ø" = C3 B8, "é" = C3 A9: 10 ASCII + 4 x 2 = 18 bytes
  const Bytes c = jsonb_container(hex::unicode_model);
  std::string model;
  ASSERT_TRUE(jsonb_for_each_member(view_of(c), [&](std::string_view key, const JsonValue& v) {
    if (key == "model") model.assign(reinterpret_cast<const char*>(v.data), v.size);
  }));
  EXPECT_EQ(model, "gpt-4o-\xC3\xBCn\xC3\xAF" "c\xC3\xB8" "d\xC3\xA9");
  EXPECT_EQ(model.size(), 18u);
}

TEST(JsonbMembers, LongStrings) {
  const Bytes c = jsonb_container(hex::long_strings);
  std::vector<std::string> keys;
  std::string note, model;
  bool ok = jsonb_for_each_member(view_of(c), [&](std::string_view key, const JsonValue& v) {
    keys.emplace_back(key);
    if (key == "note") note.assign(reinterpret_cast<const char*>(v.data), v.size);
    if (key == "model") model.assign(reinterpret_cast<const char*>(v.data), v.size);
    if (key == "prompt_tokens") {
      EXPECT_EQ(number_text(v), "11");
    }
    if (key == "completion_tokens") {
      EXPECT_EQ(number_text(v), "22");
    }
  });
  EXPECT_TRUE(ok);
  EXPECT_EQ(keys, (std::vector<std::string>{"note", "model", "prompt_tokens", "completion_tokens"}));
  EXPECT_EQ(note, std::string(1000, 'n'));
  EXPECT_EQ(model, std::string(300, 'm'));
}

TEST(JsonbMembers, MoreThan32KeysUseStoredOffsets) {
  const Bytes c = jsonb_container(hex::many_keys);
  // 40 keys k00..k39 plus model, prompt_tokens, completion_tokens = 43 pairs.
  ASSERT_EQ(word_at(c, 0), 0x2000002Bu);
  // PostgreSQL stores an end offset (JENTRY_HAS_OFF, 0x80000000) instead of a
  // length in every 32nd JEntry: keys 0 and 32, and value 21 (21 + 43 = 64).
  EXPECT_EQ(word_at(c, 4 + 0 * 4), 0x80000003u);          // k00 ends at 3
  EXPECT_EQ(word_at(c, 4 + 32 * 4), 0x80000063u);         // k32 ends at 33 x 3 = 99
  EXPECT_EQ(word_at(c, 4 + (43 + 21) * 4), 0x9000014Cu);  // numeric k21 ends at 332
  EXPECT_EQ(word_at(c, 4 + 1 * 4), 0x00000003u);          // k01: a plain length

  std::string want;
  for (int i = 0; i < 40; ++i) {
    char kv[16];
    std::snprintf(kv, sizeof kv, "k%02d=%d ", i, i);
    want += kv;
  }
  want += "model=\"gpt-4o\" prompt_tokens=1234 completion_tokens=567";
  bool ok = false;
  EXPECT_EQ(describe_fixture(hex::many_keys, &ok), want);
  EXPECT_TRUE(ok);
}

TEST(JsonbMembers, NonObjectsAreRefused) {
  for (const char* h : {hex::array_root, hex::array_of_objects, hex::empty_array, hex::scalar_number,
                        hex::scalar_string, hex::scalar_true, hex::scalar_null}) {
    const Bytes c = jsonb_container(h);
    int visits = 0;
    EXPECT_FALSE(jsonb_for_each_member(view_of(c), [&](std::string_view, const JsonValue&) { ++visits; })) << h;
    EXPECT_EQ(visits, 0);
  }
  EXPECT_FALSE(jsonb_for_each_member(JsonbContainerView{nullptr, 100}, [](std::string_view, const JsonValue&) {}));
}

TEST(JsonbMembers, EmptyObject) {
  const Bytes c = jsonb_container(hex::empty_object);
  ASSERT_EQ(c.size(), 4u);
  int visits = 0;
  EXPECT_TRUE(jsonb_for_each_member(view_of(c), [&](std::string_view, const JsonValue&) { ++visits; }));
  EXPECT_EQ(visits, 0);
}

// Seed container layout (112 bytes): header 0x20000004 at 0, JEntries at 4..36
// (keys: model HAS_OFF end 5, tokens 6, prompt_tokens 13, completion_tokens 17;
// values: string 11, then three numerics of 8), data area at 36..112 (76 bytes:
// keys 0..41, "gpt-4o-mini" 41..52, numbers 52..60, 60..68, 68..76).
class SeedPatch : public ::testing::Test {
 protected:
  void SetUp() override {
    seed = jsonb_container(hex::seed_usage);
    ASSERT_EQ(seed.size(), 112u);
    ASSERT_EQ(word_at(seed, 4), 0x80000005u);
    ASSERT_EQ(word_at(seed, 8), 0x00000006u);
    ASSERT_EQ(word_at(seed, 20), 0x0000000Bu);
    ASSERT_EQ(word_at(seed, 24), 0x10000008u);
    ASSERT_EQ(word_at(seed, 32), 0x10000008u);
  }
  static constexpr std::size_t kEntry(int i) { return 4 + 4 * static_cast<std::size_t>(i); }
  std::vector<std::string> keys_visited(const Bytes& b, bool* ok) {
    std::vector<std::string> keys;
    *ok = jsonb_for_each_member(view_of(b), [&](std::string_view k, const JsonValue&) { keys.emplace_back(k); });
    return keys;
  }
  Bytes seed;
};

TEST_F(SeedPatch, KeyThatIsNotAStringStopsTheWalk) {
  set_word(seed, kEntry(1), 0x10000006u);  // "tokens" key typed numeric
  bool ok = true;
  const auto keys = keys_visited(seed, &ok);
  EXPECT_FALSE(ok);
  EXPECT_EQ(keys, std::vector<std::string>{"model"});  // members already visited stay visited
}

TEST_F(SeedPatch, ValuePastTheEndStopsTheWalk) {
  set_word(seed, kEntry(7), 0x10000009u);  // last number 68..77 > 76
  bool ok = true;
  const auto keys = keys_visited(seed, &ok);
  EXPECT_FALSE(ok);
  EXPECT_EQ(keys, (std::vector<std::string>{"model", "tokens", "prompt_tokens"}));
}

TEST_F(SeedPatch, KeyOffsetPastTheEnd) {
  set_word(seed, kEntry(3), 0x80000100u);  // completion_tokens ends at 256 (HAS_OFF)
  // Values are located after the last key, so already the first value is out of bounds.
  bool ok = true;
  EXPECT_TRUE(keys_visited(seed, &ok).empty());
  EXPECT_FALSE(ok);
}

TEST_F(SeedPatch, DecreasingKeyOffset) {
  set_word(seed, kEntry(1), 0x80000003u);  // "tokens" ends at 3, before "model" ends at 5
  bool ok = true;
  const auto keys = keys_visited(seed, &ok);
  EXPECT_FALSE(ok);
  EXPECT_EQ(keys, std::vector<std::string>{"model"});
}

TEST_F(SeedPatch, DecreasingValueOffset) {
  set_word(seed, kEntry(5), 0x90000030u);  // tokens value ends at 48, before the model value ends at 52
  bool ok = true;
  const auto keys = keys_visited(seed, &ok);
  EXPECT_FALSE(ok);
  EXPECT_EQ(keys, std::vector<std::string>{"model"});
}

TEST_F(SeedPatch, UnknownValueTypeIsMalformedButTheWalkGoesOn) {
  set_word(seed, kEntry(4), 0x6000000Bu);  // model value: type 6 does not exist
  bool ok = false;
  EXPECT_EQ(describe_object(view_of(seed), &ok), "model=<malformed> tokens=150 prompt_tokens=100 completion_tokens=50");
  EXPECT_TRUE(ok);
}

TEST_F(SeedPatch, NumberWithoutRoomAfterAlignment) {
  // model value 41..50 (9 bytes), tokens numeric 50..51: aligned start 52 > 51.
  set_word(seed, kEntry(4), 0x00000009u);
  set_word(seed, kEntry(5), 0x10000001u);
  bool ok = false;
  const std::string d = describe_object(view_of(seed), &ok);
  EXPECT_TRUE(ok);
  // prompt_tokens: 51..59, aligned 52..59 = 7 bytes of an 8-byte numeric;
  // completion_tokens: 59..67, aligned 60..67 = 7 bytes: both fail to decode.
  EXPECT_EQ(d, "model=\"gpt-4o-mi\" tokens=<malformed> prompt_tokens=<numeric status 5> "
               "completion_tokens=<numeric status 5>");
}

TEST_F(SeedPatch, StringThatClaimsTheWholeArea) {
  // HAS_OFF end offsets for every value: model value 41..76, then empty numbers at 76.
  set_word(seed, kEntry(4), 0x8000004Cu);
  set_word(seed, kEntry(5), 0x9000004Cu);
  set_word(seed, kEntry(6), 0x9000004Cu);
  set_word(seed, kEntry(7), 0x9000004Cu);
  bool ok = false;
  int numbers = 0;
  std::size_t model_size = 0;
  ok = jsonb_for_each_member(view_of(seed), [&](std::string_view k, const JsonValue& v) {
    if (k == "model") model_size = v.size;
    if (v.kind == JsonKind::Number) {
      ++numbers;
      EXPECT_EQ(v.size, 0u);
      EXPECT_EQ(decode_pg_numeric(v.data, v.size, 0).status, NumericStatus::Malformed);
    }
  });
  EXPECT_TRUE(ok);
  EXPECT_EQ(model_size, 35u);  // 76 - 41
  EXPECT_EQ(numbers, 3);
}

TEST(JsonbNested, ContainerValueThatIsAScalarIsMalformed) {
  Bytes c = jsonb_container(hex::openai_cached_details);
  // The nested {"cached_tokens":400000}: header 0x20000001, key JEntry 0x8000000D.
  const std::size_t at = find_bytes(c, billing_test::from_hex("010000200d000080"));
  set_word(c, at, 0x50000001u);  // now a root-scalar header inside a container
  EXPECT_EQ(describe_object(view_of(c)),
            "model=\"gpt-4o\" total_tokens=1002000 prompt_tokens=1000000 completion_tokens=2000 "
            "prompt_tokens_details=<malformed>");
  set_word(c, at, 0x40000001u);  // a one-element array
  EXPECT_EQ(describe_object(view_of(c)),
            "model=\"gpt-4o\" total_tokens=1002000 prompt_tokens=1000000 completion_tokens=2000 "
            "prompt_tokens_details=[array]");
}

// ---------------------------------------------------------------------------
// Mutations: every truncation and many single-byte and single-word changes of
// every fixture. The walk touches every byte of every key and value it is
// given, so with BILLING_SANITIZE=ON any range outside the buffer aborts.


struct Walk {
  Walk(const uint8_t* l, const uint8_t* h) : lo(l), hi(h) {}
  const uint8_t* lo;
  const uint8_t* hi;
  unsigned sum = 0;
  int depth = 0;

  void touch(const uint8_t* p, std::size_t n) {
    if (n == 0) return;
    ASSERT_GE(p, lo);
    ASSERT_LE(p + n, hi);
    for (std::size_t i = 0; i < n; ++i) sum += p[i];
  }
  void value(const JsonValue& v) {
    switch (v.kind) {
      case JsonKind::String: touch(v.data, v.size); break;
      case JsonKind::Number:
        touch(v.data, v.size);
        (void)decode_pg_numeric(v.data, v.size, 0);
        (void)decode_pg_numeric(v.data, v.size, 18);
        break;
      case JsonKind::Object:
        touch(v.data, v.size);
        object(JsonbContainerView{v.data, v.size});
        break;
      case JsonKind::Array: touch(v.data, v.size); break;
      default: break;
    }
  }
  bool object(JsonbContainerView c) {
    ++depth;
    EXPECT_LT(depth, 1000);
    (void)jsonb_root_kind(c);
    const bool ok = jsonb_for_each_member(c, [&](std::string_view key, const JsonValue& v) {
      touch(reinterpret_cast<const uint8_t*>(key.data()), key.size());
      value(v);
    });
    --depth;
    return ok;
  }
};

bool walk(const uint8_t* p, std::size_t n) {
  Walk w(p, p + n);
  const JsonKind root = jsonb_root_kind(JsonbContainerView{p, n});
  EXPECT_LE(static_cast<int>(root), static_cast<int>(JsonKind::Malformed));
  return w.object(JsonbContainerView{p, n});
}

TEST(JsonbMutation, EveryTruncationOfAnObjectIsRefused) {
  for (std::size_t f = 0; f < std::size(hex::kAll); ++f) {
    const char* h = hex::kAllNames[f];
    const Bytes c = jsonb_container(hex::kAll[f]);
    const bool is_object = jsonb_root_kind(view_of(c)) == JsonKind::Object;
    EXPECT_EQ(walk(c.data(), c.size()), is_object) << h;
    billing_test::for_each_truncation(c, [&](const uint8_t* p, std::size_t n) {
      // The last member of an object ends exactly at the end of the
      // container, so any shorter buffer must be refused.
      EXPECT_FALSE(walk(p, n)) << h << " truncated to " << n;
    });
  }
}

TEST(JsonbMutation, FlippedBytesStayInBounds) {
  std::size_t runs = 0;
  for (std::size_t f = 0; f < std::size(hex::kAll); ++f) {
    const char* h = hex::kAllNames[f];
    SCOPED_TRACE(h);
    const Bytes c = jsonb_container(hex::kAll[f]);
    billing_test::for_each_byte_mutation(c, [&](const uint8_t* p, std::size_t n) {
      walk(p, n);
      ++runs;
    });
  }
  EXPECT_GT(runs, 50000u);
}

TEST(JsonbMutation, HostileWordsStayInBounds) {
  std::size_t runs = 0;
  for (std::size_t f = 0; f < std::size(hex::kAll); ++f) {
    const char* h = hex::kAllNames[f];
    SCOPED_TRACE(h);
    const Bytes c = jsonb_container(hex::kAll[f]);
    billing_test::for_each_word_mutation(c, [&](const uint8_t* p, std::size_t n) {
      walk(p, n);
      ++runs;
    });
  }
  EXPECT_GT(runs, 5000u);
}

}  // namespace
}  // namespace billing
