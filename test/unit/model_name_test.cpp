// Unit tests for src/core/model_name.h: dated-snapshot suffixes and the
// ordered candidate names a stored model name resolves through.
#include "model_name.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace billing {
namespace {

std::vector<std::string> candidates(std::string_view stored) {
  ModelCandidates c;
  model_candidates(stored, c);
  EXPECT_GE(c.count, 0);
  EXPECT_LE(c.count, ModelCandidates::kMax);
  return std::vector<std::string>(c.names, c.names + c.count);
}

using Names = std::vector<std::string>;

TEST(StripSnapshotSuffix, DatedSuffix) {
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-mini-2024-07-18"), "gpt-4o-mini");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-05-13"), "gpt-4o");
  EXPECT_EQ(strip_snapshot_suffix("x-2024-07-18"), "x");  // 12 chars: one before the suffix
}

TEST(StripSnapshotSuffix, ShortSuffix) {
  EXPECT_EQ(strip_snapshot_suffix("gpt-4-0613"), "gpt-4");
  EXPECT_EQ(strip_snapshot_suffix("gpt-3.5-turbo-0125"), "gpt-3.5-turbo");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4-32k-0613"), "gpt-4-32k");
  EXPECT_EQ(strip_snapshot_suffix("a-0613"), "a");  // 6 chars: one before the suffix
}

TEST(StripSnapshotSuffix, OnlyOneSuffixIsStripped) {
  EXPECT_EQ(strip_snapshot_suffix("gpt-4-0613-0613"), "gpt-4-0613");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-08-06-2024-08-06"), "gpt-4o-2024-08-06");
}

TEST(StripSnapshotSuffix, NamesWithoutASuffix) {
  for (const char* name : {"gpt-4o", "gpt-4o-mini", "gpt-4-1106-preview", "o1", "", "-", "gpt-4o-"}) {
    EXPECT_EQ(strip_snapshot_suffix(name), name);
  }
}

TEST(StripSnapshotSuffix, TooShortOrOnlyDigits) {
  // Nothing may remain empty: the suffix needs at least one character before it.
  EXPECT_EQ(strip_snapshot_suffix("-2024-07-18"), "-2024-07-18");  // 11 chars
  EXPECT_EQ(strip_snapshot_suffix("2024-07-18"), "2024-07-18");    // a date alone
  EXPECT_EQ(strip_snapshot_suffix("-0613"), "-0613");              // 5 chars
  EXPECT_EQ(strip_snapshot_suffix("0613"), "0613");
  EXPECT_EQ(strip_snapshot_suffix("20240718"), "20240718");  // digits only: no dash
  EXPECT_EQ(strip_snapshot_suffix("12345"), "12345");
  EXPECT_EQ(strip_snapshot_suffix("123456"), "123456");
}

TEST(StripSnapshotSuffix, OnlyRealDatesAreStripped) {
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-02-29"), "gpt-4o");             // 2024 is a leap year
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2000-02-29"), "gpt-4o");             // so is 2000 (400)
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2023-02-29"), "gpt-4o-2023-02-29");  // 2023 is not
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2100-02-29"), "gpt-4o-2100-02-29");  // nor 2100 (100)
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-04-31"), "gpt-4o-2024-04-31");  // April has 30 days
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-13-01"), "gpt-4o-2024-13-01");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-00-10"), "gpt-4o-2024-00-10");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-12-00"), "gpt-4o-2024-12-00");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-0000-01-01"), "gpt-4o-0000-01-01");  // no year 0
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-12-31"), "gpt-4o");
  // -MMDD has no year: February 29 is a day some years have.
  EXPECT_EQ(strip_snapshot_suffix("gpt-4-0229"), "gpt-4");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4-0230"), "gpt-4-0230");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4-0431"), "gpt-4-0431");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4-1231"), "gpt-4");
}

TEST(StripSnapshotSuffix, MalformedSuffixesAreKept) {
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-7-18"), "gpt-4o-2024-7-18");    // one-digit month
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-08-0a"), "gpt-4o-2024-08-0a");  // not a digit
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o_2024-08-06"), "gpt-4o_2024-08-06");  // '_' before the year;
  // ...and the short form does not apply either: "08-06" does not start with '-'.
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024/08/06"), "gpt-4o-2024/08/06");
  // Each separator of -YYYY-MM-DD matters:
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o+2024-07-18"), "gpt-4o+2024-07-18");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024x07-18"), "gpt-4o-2024x07-18");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-07x18"), "gpt-4o-2024-07x18");
  // ...and each digit group:
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-20z4-07-18"), "gpt-4o-20z4-07-18");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4o-2024-0z-18"), "gpt-4o-2024-0z-18");
  EXPECT_EQ(strip_snapshot_suffix("gpt-4-061"), "gpt-4-061");    // 3 digits
  EXPECT_EQ(strip_snapshot_suffix("gpt-4-06133"), "gpt-4-06133");  // 5 digits
  EXPECT_EQ(strip_snapshot_suffix("gpt-4-0613 "), "gpt-4-0613 ");  // trailing space
}

TEST(ModelCandidates, ExactNameOnly) {
  EXPECT_EQ(candidates("gpt-4o"), (Names{"gpt-4o"}));  // all four candidates are the same name
  EXPECT_EQ(candidates("anthropic/claude"), (Names{"anthropic/claude"}));  // only "openai/" is removed
}

TEST(ModelCandidates, DatedName) {
  EXPECT_EQ(candidates("gpt-4o-mini-2024-07-18"), (Names{"gpt-4o-mini-2024-07-18", "gpt-4o-mini"}));
  EXPECT_EQ(candidates("gpt-4-0613"), (Names{"gpt-4-0613", "gpt-4"}));
}

TEST(ModelCandidates, Normalisation) {
  // 1. as stored; 2. unchanged (ends in a space); 3. trimmed, lower-cased, prefix removed
  EXPECT_EQ(candidates(" OpenAI/GPT-4o "), (Names{" OpenAI/GPT-4o ", "gpt-4o"}));
  EXPECT_EQ(candidates("\tgpt-4o\r\n"), (Names{"\tgpt-4o\r\n", "gpt-4o"}));
  EXPECT_EQ(candidates("OPENAI/openai/x"), (Names{"OPENAI/openai/x", "openai/x"}));  // one prefix only
}

TEST(ModelCandidates, AllFourCandidates) {
  EXPECT_EQ(candidates("GPT-4-0613"), (Names{"GPT-4-0613", "GPT-4", "gpt-4-0613", "gpt-4"}));
  EXPECT_EQ(candidates(" OpenAI/GPT-4o-Mini-2024-07-18 "),
            (Names{" OpenAI/GPT-4o-Mini-2024-07-18 ", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"}));
}

TEST(ModelCandidates, EmptyNamesAreDropped) {
  EXPECT_EQ(candidates(""), Names{});
  EXPECT_EQ(candidates("   "), (Names{"   "}));        // trimmed to nothing
  EXPECT_EQ(candidates("openai/"), (Names{"openai/"}));  // nothing after the prefix
  EXPECT_EQ(candidates("OpenAI/"), (Names{"OpenAI/"}));
}

TEST(ModelCandidates, NonAsciiBytesAreNotLowerCased) {
  // Only A-Z are lower-cased; "Ü" (C3 9C) is kept as it is.
  EXPECT_EQ(candidates("GPT-\xC3\x9C"), (Names{"GPT-\xC3\x9C", "gpt-\xC3\x9C"}));
}

TEST(ModelCandidates, NormalisedNamesPointIntoTheBackingStore) {
  ModelCandidates c;
  const std::string stored = "GPT-4-0613";
  model_candidates(stored, c);
  ASSERT_EQ(c.count, 4);
  EXPECT_EQ(c.names[0].data(), stored.data());
  EXPECT_EQ(c.names[1].data(), stored.data());
  EXPECT_EQ(c.names[2].data(), c.normalised);
  EXPECT_EQ(c.names[3].data(), c.normalised);
}

TEST(ModelCandidates, ReusedStructIsReset) {
  ModelCandidates c;
  model_candidates("GPT-4-0613", c);
  ASSERT_EQ(c.count, 4);
  model_candidates("gpt-4o", c);
  ASSERT_EQ(c.count, 1);
  EXPECT_EQ(c.names[0], "gpt-4o");
}

TEST(ModelCandidates, LongNames) {
  // Exactly kMaxNormalisedName (200) bytes after trimming: normalised.
  const std::string upper200 = "GPT-" + std::string(196, 'X');
  const std::string lower200 = "gpt-" + std::string(196, 'x');
  ASSERT_EQ(upper200.size(), kMaxNormalisedName);
  EXPECT_EQ(candidates(upper200), (Names{upper200, lower200}));
  EXPECT_EQ(candidates("  " + upper200 + "  "), (Names{"  " + upper200 + "  ", lower200}));
  // 201 bytes: only tried as stored (and without a suffix).
  const std::string upper201 = upper200 + "X";
  EXPECT_EQ(candidates(upper201), (Names{upper201}));
  const std::string dated201 = std::string(190, 'M') + "-2024-07-18";
  ASSERT_EQ(dated201.size(), 201u);
  EXPECT_EQ(candidates(dated201), (Names{dated201, std::string(190, 'M')}));
}

}  // namespace
}  // namespace billing

// -MMDD is stripped only when it is a real month and day: model names that
// end in another 4-digit number keep it (8192 is no date).
TEST(StripSnapshotSuffix, KeepsFourDigitNumbersThatAreNoDate) {
  EXPECT_EQ(billing::strip_snapshot_suffix("llama-3-70b-8192"), "llama-3-70b-8192");
  EXPECT_EQ(billing::strip_snapshot_suffix("model-1300"), "model-1300");  // month 13
  EXPECT_EQ(billing::strip_snapshot_suffix("model-0100"), "model-0100");  // day 00
  EXPECT_EQ(billing::strip_snapshot_suffix("gpt-3.5-turbo-1231"), "gpt-3.5-turbo");
}
