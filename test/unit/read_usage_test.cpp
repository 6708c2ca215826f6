// Unit tests for read_usage (src/core/usage.h): the one-pass reader of a
// usage object that the cost functions call for every row, and the
// UsageLayout it keeps from row to row. Whatever path it takes, its result
// must be the two-step reference's, decode_usage(read_usage_fields(root)),
// field for field (the views pointing at the same bytes).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <iterator>
#include <string>

#include "pg_fixtures.h"
#include "test_support.h"
#include "usage.h"

namespace billing {
namespace {

using billing_test::Bytes;
using billing_test::jsonb_container;
using billing_test::view_of;

// Usage objects whose keys are those of the app's rows (the layout's case),
// with values the fast paths must hand to the general one. Captured from
// PostgreSQL 15.20 (x86-64, a fresh cluster) like pg_fixtures.h:
//
//   CREATE EXTENSION pageinspect;
//   CREATE TABLE usage_capture(label text, j jsonb);
//   INSERT INTO usage_capture VALUES
//    ('short_gpt_4o', '{"model": "gpt-4o", "tokens": 4766, "prompt_tokens": 4736, "completion_tokens": 30}'),
//    ('short_mini', '{"model": "gpt-4o-mini", "tokens": 5243, "prompt_tokens": 5037, "completion_tokens": 206}'),
//    ('short_mini_dated', '{"model": "gpt-4o-mini-2024-07-18", "tokens": 4587, "prompt_tokens": 4361, "completion_tokens": 226}'),
//    ('same_keys_big_counts', '{"model": "gpt-4o", "tokens": 1012345, "prompt_tokens": 1000000, "completion_tokens": 12345}'),
//    ('same_keys_largest_fast', '{"model": "gpt-4o", "tokens": 9999999999999999, "prompt_tokens": 9999999999999999, "completion_tokens": 0}'),
//    ('same_keys_beyond_fast', '{"model": "gpt-4o", "tokens": 10000000000000000, "prompt_tokens": 10000000000000000, "completion_tokens": 0}'),
//    ('same_keys_null_prompt', '{"model": "gpt-4o", "tokens": 10, "prompt_tokens": null, "completion_tokens": 10}'),
//    ('same_keys_string_prompt', '{"model": "gpt-4o", "tokens": 10, "prompt_tokens": "12a", "completion_tokens": 10}'),
//    ('same_keys_fraction', '{"model": "gpt-4o", "tokens": 10, "prompt_tokens": 1.5, "completion_tokens": 10}'),
//    ('same_keys_model_number', '{"model": 4, "tokens": 10, "prompt_tokens": 5, "completion_tokens": 5}'),
//    ('same_keys_negative_total', '{"model": "gpt-4o", "tokens": -1, "prompt_tokens": 5, "completion_tokens": 5}'),
//    ('same_lengths_other_keys', '{"mode1": "gpt-4o", "tokenz": 10, "prompt_tokenz": 5, "completion_tokenz": 5}'),
//    ('cached_top', '{"model": "gpt-4o", "cached_tokens": 40, "prompt_tokens": 100, "completion_tokens": 1}'),
//    ('cached_top_exceeds', '{"model": "gpt-4o", "cached_tokens": 400, "prompt_tokens": 100, "completion_tokens": 1}'),
//    ('aliases', '{"model": "gpt-4.1", "input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500}'),
//    ('details', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 400}}'),
//    ('total_only_same_keys', '{"model": "gpt-4o", "tokens": 150}');
//   SELECT c.label, encode((tuple_data_split('usage_capture'::regclass, h.t_data, h.t_infomask,
//                           h.t_infomask2, h.t_bits))[2], 'hex')
//     FROM heap_page_items(get_raw_page('usage_capture', 0)) h
//     JOIN usage_capture c ON c.ctid = format('(0,%s)', h.lp)::tid ORDER BY h.lp;
namespace captured {
// short_gpt_4o: 109 bytes
inline constexpr const char* short_gpt_4o =
    "db0400002005000080060000000d00000011000000060000000900001008000010080000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f002000000000809e12200000"
    "00008080122000000000801e00";
// short_mini: 113 bytes
inline constexpr const char* short_mini =
    "e30400002005000080060000000d000000110000000b0000000800001008000010080000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f2d6d696e692000000000807b"
    "14200000000080ad13200000000080ce00";
// short_mini_dated: 125 bytes
inline constexpr const char* short_mini_dated =
    "fb0400002005000080060000000d00000011000000160000000900001008000010080000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f2d6d696e692d323032342d30"
    "372d313800200000000080eb112000000000800911200000000080e200";
// same_keys_big_counts: 115 bytes
inline constexpr const char* same_keys_big_counts =
    "e70400002005000080060000000d00000011000000060000000b0000100a0000100a0000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f002800000001806500290900"
    "00200000000180640028000000018001002909";
// same_keys_largest_fast: 123 bytes
inline constexpr const char* same_keys_largest_fast =
    "f70400002005000080060000000d00000011000000060000000f00001010000010080000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f003800000003800f270f270f"
    "270f2700003800000003800f270f270f270f270000180000000080";
// same_keys_beyond_fast: 107 bytes
inline constexpr const char* same_keys_beyond_fast =
    "d70400002005000080060000000d00000011000000060000000900001008000010060000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f002000000004800100200000"
    "0004800100180000000080";
// same_keys_null_prompt: 101 bytes
inline constexpr const char* same_keys_null_prompt =
    "cb0400002005000080060000000d00000011000000060000000900001000000040080000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f002000000000800a00200000"
    "0000800a00";
// same_keys_string_prompt: 105 bytes
inline constexpr const char* same_keys_string_prompt =
    "d30400002005000080060000000d00000011000000060000000900001003000000090000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f002000000000800a00313261"
    "002000000000800a00";
// same_keys_fraction: 113 bytes
inline constexpr const char* same_keys_fraction =
    "e30400002005000080060000000d0000001100000006000000090000100a0000100a0000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f002000000000800a00280000"
    "0080800100881300002000000000800a00";
// same_keys_model_number: 113 bytes
inline constexpr const char* same_keys_model_number =
    "e30400002005000080060000000d000000110000000b0000100800001008000010080000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e7300000020000000008004002000000000800a"
    "0020000000008005002000000000800500";
// same_keys_negative_total: 109 bytes
inline constexpr const char* same_keys_negative_total =
    "db0400002005000080060000000d00000011000000060000000900001008000010080000106d6f64656c746f6b656e73"
    "70726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f002000000000a00100200000"
    "00008005002000000000800500";
// same_lengths_other_keys: 109 bytes
inline constexpr const char* same_lengths_other_keys =
    "db0400002005000080060000000d00000011000000060000000900001008000010080000106d6f646531746f6b656e7a"
    "70726f6d70745f746f6b656e7a636f6d706c6574696f6e5f746f6b656e7a6770742d346f002000000000800a00200000"
    "00008005002000000000800500";
// cached_top: 117 bytes
inline constexpr const char* cached_top =
    "eb04000020050000800d0000000d00000011000000060000000a00001008000010080000106d6f64656c636163686564"
    "5f746f6b656e7370726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f0000200000"
    "000080280020000000008064002000000000800100";
// cached_top_exceeds: 117 bytes
inline constexpr const char* cached_top_exceeds =
    "eb04000020050000800d0000000d00000011000000060000000a00001008000010080000106d6f64656c636163686564"
    "5f746f6b656e7370726f6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e736770742d346f0000200000"
    "000080900120000000008064002000000000800100";
// aliases: 113 bytes
inline constexpr const char* aliases =
    "e304000020050000800c0000000c0000000d000000070000000b00001008000010080000106d6f64656c696e7075745f"
    "746f6b656e73746f74616c5f746f6b656e736f75747075745f746f6b656e736770742d342e31000000200000000080b0"
    "04200000000080dc052000000000802c01";
// details: 156 bytes
inline constexpr const char* details =
    "7002000004000020050000800d0000001100000015000000060000000a00001008000010240000506d6f64656c70726f"
    "6d70745f746f6b656e73636f6d706c6574696f6e5f746f6b656e7370726f6d70745f746f6b656e735f64657461696c73"
    "6770742d346f0000200000000080e8032000000000801400010000200d0000800b0000106361636865645f746f6b656e"
    "730000002000000000809001";
// total_only_same_keys: 49 bytes
inline constexpr const char* total_only_same_keys =
    "63020000200500008006000000060000000b0000106d6f64656c746f6b656e736770742d346f00000020000000008096"
    "00";

inline constexpr const char* const kAll[] = {
    short_gpt_4o,
    short_mini,
    short_mini_dated,
    same_keys_big_counts,
    same_keys_largest_fast,
    same_keys_beyond_fast,
    same_keys_null_prompt,
    same_keys_string_prompt,
    same_keys_fraction,
    same_keys_model_number,
    same_keys_negative_total,
    same_lengths_other_keys,
    cached_top,
    cached_top_exceeds,
    aliases,
    details,
    total_only_same_keys,
};
inline constexpr const char* const kAllNames[] = {
    "short_gpt_4o",
    "short_mini",
    "short_mini_dated",
    "same_keys_big_counts",
    "same_keys_largest_fast",
    "same_keys_beyond_fast",
    "same_keys_null_prompt",
    "same_keys_string_prompt",
    "same_keys_fraction",
    "same_keys_model_number",
    "same_keys_negative_total",
    "same_lengths_other_keys",
    "cached_top",
    "cached_top_exceeds",
    "aliases",
    "details",
    "total_only_same_keys",
};
}  // namespace captured

constexpr int idx(TokenField f) { return static_cast<int>(f); }

Usage reference(JsonbContainerView root) { return decode_usage(read_usage_fields(root)); }

void expect_same(const Usage& got, const Usage& want) {
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.error, want.error);
  EXPECT_EQ(got.error_field, want.error_field);
  EXPECT_EQ(got.error_kind, want.error_kind);
  EXPECT_EQ(got.error_value, want.error_value);
  EXPECT_EQ(got.error_text.data(), want.error_text.data());
  EXPECT_EQ(got.error_text.size(), want.error_text.size());
  EXPECT_EQ(got.has_model, want.has_model);
  EXPECT_EQ(got.model.data(), want.model.data());
  EXPECT_EQ(got.model.size(), want.model.size());
  EXPECT_EQ(got.prompt, want.prompt);
  EXPECT_EQ(got.completion, want.completion);
  EXPECT_EQ(got.cached, want.cached);
  EXPECT_EQ(got.total, want.total);
}

// read_usage without a layout, and through `layout` (a copy: reading may
// replace it), against the reference.
void check(const uint8_t* p, std::size_t n, const UsageLayout* layout = nullptr) {
  const JsonbContainerView root{p, n};
  const Usage want = reference(root);
  expect_same(read_usage(root), want);
  if (layout != nullptr) {
    UsageLayout copy = *layout;
    expect_same(read_usage(root, &copy), want);
  }
  // And a layout learned from the object itself, then used on it.
  UsageLayout own{};
  expect_same(read_usage(root, &own), want);
  expect_same(read_usage(root, &own), want);
}

UsageLayout learned_from(const char* hex) {
  const Bytes c = jsonb_container(hex);
  UsageLayout l{};
  (void)read_usage(view_of(c), &l);
  return l;
}

// Every fixture: pg_fixtures.h's (every shape the reader knows) and the
// captured ones above.
template <typename Fn>
void for_each_fixture(Fn&& fn) {
  for (std::size_t i = 0; i < std::size(billing_test::jsonb_hex::kAll); ++i) {
    SCOPED_TRACE(billing_test::jsonb_hex::kAllNames[i]);
    fn(billing_test::jsonb_hex::kAll[i]);
  }
  for (std::size_t i = 0; i < std::size(captured::kAll); ++i) {
    SCOPED_TRACE(captured::kAllNames[i]);
    fn(captured::kAll[i]);
  }
}

TEST(ReadUsage, SameAsTheTwoStepReadOnEveryFixture) {
  for_each_fixture([](const char* hex) {
    const Bytes c = jsonb_container(hex);
    check(c.data(), c.size());
  });
}

TEST(ReadUsage, AppRowsAreReadExactly) {
  const Bytes c = jsonb_container(captured::short_mini);
  UsageLayout layout{};
  for (int pass = 0; pass < 2; ++pass) {  // learning the layout, then through it
    const Usage u = read_usage(view_of(c), &layout);
    EXPECT_EQ(u.status, UsageStatus::Ok);
    EXPECT_TRUE(u.has_model);
    EXPECT_EQ(u.model, "gpt-4o-mini");
    EXPECT_EQ(u.prompt, 5037);
    EXPECT_EQ(u.completion, 206);
    EXPECT_EQ(u.cached, 0);
    EXPECT_EQ(u.total, 5243);
  }
  const Bytes big = jsonb_container(captured::same_keys_big_counts);  // two base-10000 digits and more
  const Usage u = read_usage(view_of(big), &layout);
  EXPECT_EQ(u.prompt, 1000000);
  EXPECT_EQ(u.completion, 12345);
  EXPECT_EQ(u.total, 1012345);
}

// A layout learned from any fixture, used on any fixture: every pair.
TEST(ReadUsage, AnyLayoutOnAnyFixture) {
  for_each_fixture([](const char* from) {
    const UsageLayout layout = learned_from(from);
    for_each_fixture([&](const char* hex) {
      const Bytes c = jsonb_container(hex);
      check(c.data(), c.size(), &layout);
    });
  });
}

// Damaged bytes, with and without a layout of the same keys: the fast paths
// either give the reference's result or leave the object to it.
TEST(ReadUsage, MutationsAgreeWithTheTwoStepRead) {
  std::size_t runs = 0;
  for_each_fixture([&](const char* hex) {
    const Bytes c = jsonb_container(hex);
    const UsageLayout layout = learned_from(hex);
    auto run = [&](const uint8_t* p, std::size_t n) {
      check(p, n, &layout);
      ++runs;
    };
    billing_test::for_each_truncation(c, run);
    billing_test::for_each_byte_mutation(c, run);
    billing_test::for_each_word_mutation(c, run);
  });
  EXPECT_GT(runs, 50000u);
}

TEST(UsageLayout, LearnedFromAFlatObject) {
  const UsageLayout l = learned_from(captured::short_gpt_4o);
  EXPECT_NE(l.header, 0u);
  EXPECT_EQ(l.key_bytes, std::strlen("model") + std::strlen("tokens") + std::strlen("prompt_tokens") +
                             std::strlen("completion_tokens"));
  // Members in jsonb's key order (by length, then bytes).
  EXPECT_EQ(l.model, 0);
  EXPECT_EQ(l.token[idx(TokenField::Total)], 1);
  EXPECT_EQ(l.token[idx(TokenField::Prompt)], 2);
  EXPECT_EQ(l.token[idx(TokenField::Completion)], 3);
  EXPECT_EQ(l.token[idx(TokenField::Cached)], -1);
  EXPECT_EQ(l.token[idx(TokenField::CachedDetail)], -1);

  const UsageLayout a = learned_from(captured::aliases);  // model, input, total, output tokens
  EXPECT_EQ(a.model, 0);
  EXPECT_EQ(a.token[idx(TokenField::Prompt)], 1);
  EXPECT_EQ(a.token[idx(TokenField::Total)], 2);
  EXPECT_EQ(a.token[idx(TokenField::Completion)], 3);
}

TEST(UsageLayout, NotLearnedWhenItCouldNotBeUsed) {
  // A *_details object (its own keys vary), no member at all, an object
  // read by the general path, a root that is not an object.
  for (const char* hex : {captured::details, billing_test::jsonb_hex::empty_object,
                          billing_test::jsonb_hex::string_token, billing_test::jsonb_hex::nested_usage,
                          billing_test::jsonb_hex::array_root, billing_test::jsonb_hex::scalar_null}) {
    EXPECT_EQ(learned_from(hex).header, 0u) << hex;
  }
  // Reading such an object keeps the layout the cost function has.
  UsageLayout l = learned_from(captured::short_gpt_4o);
  const UsageLayout before = l;
  const Bytes c = jsonb_container(captured::details);
  (void)read_usage(view_of(c), &l);
  EXPECT_EQ(std::memcmp(&l, &before, sizeof l), 0);
}

// White-box: with the layout's members for prompt and completion swapped,
// an object with the same keys reads swapped, so it was read through the
// layout without looking at its keys; an object whose keys differ only in
// their bytes is not.
TEST(UsageLayout, UsedForExactlyTheSameKeys) {
  UsageLayout l = learned_from(captured::short_gpt_4o);
  std::swap(l.token[idx(TokenField::Prompt)], l.token[idx(TokenField::Completion)]);
  const Bytes mini = jsonb_container(captured::short_mini);
  UsageLayout copy = l;
  const Usage u = read_usage(view_of(mini), &copy);
  EXPECT_EQ(u.prompt, 206);
  EXPECT_EQ(u.completion, 5037);

  const Bytes other = jsonb_container(captured::same_lengths_other_keys);
  copy = l;
  const Usage v = read_usage(view_of(other), &copy);
  EXPECT_EQ(v.status, UsageStatus::NoUsage);  // none of its keys is a usage member
  EXPECT_FALSE(v.has_model);
}

// Objects with the app's keys whose values the layout path must leave to
// the general one: the reference's answer, with the layout in place.
TEST(UsageLayout, SameKeysOtherValues) {
  const UsageLayout l = learned_from(captured::short_gpt_4o);
  std::deque<Bytes> kept;  // the bytes each result points into
  auto read = [&](const char* hex) {
    const Bytes& c = kept.emplace_back(jsonb_container(hex));
    UsageLayout copy = l;
    const Usage u = read_usage(view_of(c), &copy);
    expect_same(u, reference(view_of(c)));
    return u;
  };
  Usage u = read(captured::same_keys_null_prompt);
  EXPECT_EQ(u.status, UsageStatus::Ok);
  EXPECT_EQ(u.prompt, 0);
  EXPECT_EQ(u.completion, 10);
  u = read(captured::same_keys_string_prompt);
  EXPECT_EQ(u.status, UsageStatus::Invalid);
  EXPECT_EQ(u.error, UsageError::NotANumber);
  EXPECT_EQ(u.error_text, "12a");
  u = read(captured::same_keys_fraction);
  EXPECT_EQ(u.error, UsageError::NotAnInteger);
  u = read(captured::same_keys_model_number);
  EXPECT_EQ(u.error, UsageError::ModelNotAString);
  u = read(captured::same_keys_negative_total);
  EXPECT_EQ(u.error, UsageError::Negative);
  EXPECT_EQ(u.error_field, TokenField::Total);
  u = read(captured::same_keys_largest_fast);
  EXPECT_EQ(u.status, UsageStatus::Ok);
  EXPECT_EQ(u.prompt, 9999999999999999);
  u = read(captured::same_keys_beyond_fast);
  EXPECT_EQ(u.status, UsageStatus::Ok);
  EXPECT_EQ(u.prompt, 10000000000000000);

  const UsageLayout c = learned_from(captured::cached_top);
  EXPECT_EQ(c.token[idx(TokenField::Cached)], 1);
  const Bytes exceeds = jsonb_container(captured::cached_top_exceeds);
  UsageLayout copy = c;
  u = read_usage(view_of(exceeds), &copy);
  EXPECT_EQ(u.status, UsageStatus::Invalid);
  EXPECT_EQ(u.error, UsageError::CachedExceedsPrompt);
  expect_same(u, reference(view_of(exceeds)));
}

}  // namespace
}  // namespace billing
