// Unit tests for src/core/ledger_row.h: which new messages the trigger can
// write to the ledger by itself, with what counts, and the countable years.
#include "ledger_row.h"

#include <gtest/gtest.h>

#include "pg_fixtures.h"
#include "test_support.h"

namespace billing {
namespace {

using billing_test::jsonb_container;
using billing_test::view_of;
namespace hex = billing_test::jsonb_hex;

struct Direct {
  explicit Direct(const char* h, bool assistant) : bytes(jsonb_container(h)) {
    usage = message_usage(view_of(bytes));
    direct = direct_ledger_counts(usage, assistant, &counts);
  }
  billing_test::Bytes bytes;
  Usage usage;
  LedgerCounts counts;
  bool direct = false;
};

TEST(LedgerRow, ReplyWithUsage) {
  // {"tokens":150,"prompt_tokens":100,"completion_tokens":50,"model":"gpt-4o-mini"}
  Direct d(hex::seed_usage, true);
  ASSERT_TRUE(d.direct);
  EXPECT_TRUE(d.counts.has_model);
  EXPECT_EQ(d.counts.model, "gpt-4o-mini");
  EXPECT_EQ(d.counts.prompt, 100);
  EXPECT_EQ(d.counts.completion, 50);
  EXPECT_EQ(d.counts.cached, 0);
  EXPECT_EQ(d.counts.unsplit, 0);
}

TEST(LedgerRow, CachedTokens) {
  // prompt 1000000, completion 2000, cached 400000 (prompt_tokens_details)
  Direct d(hex::openai_cached_details, true);
  ASSERT_TRUE(d.direct);
  EXPECT_EQ(d.counts.prompt, 1000000);
  EXPECT_EQ(d.counts.completion, 2000);
  EXPECT_EQ(d.counts.cached, 400000);
}

TEST(LedgerRow, TotalOnlyIsUnsplit) {
  // {"tokens":150,"model":"gpt-4o"}
  Direct d(hex::total_only, false);
  ASSERT_TRUE(d.direct);
  EXPECT_EQ(d.counts.model, "gpt-4o");
  EXPECT_EQ(d.counts.prompt, 0);
  EXPECT_EQ(d.counts.completion, 0);
  EXPECT_EQ(d.counts.unsplit, 150);
}

TEST(LedgerRow, UserMessageIsDirectWithZeros) {
  // {"role":"user","content":"hello"}: no usage, not a reply
  Direct d(hex::user_message, false);
  ASSERT_TRUE(d.direct);
  EXPECT_FALSE(d.counts.has_model);
  EXPECT_EQ(d.counts.prompt + d.counts.completion + d.counts.cached + d.counts.unsplit, 0);
}

TEST(LedgerRow, ReplyWithoutUsageNeedsTheTable) {
  Direct d(hex::empty_object, true);
  EXPECT_FALSE(d.direct);
  // A model without usage is kept: it prices the estimate.
  Direct m(hex::usage_not_object, true);  // {"usage":"none","model":"gpt-4o"}
  EXPECT_EQ(m.usage.status, UsageStatus::NoUsage);
  EXPECT_TRUE(m.usage.has_model);
  EXPECT_EQ(m.usage.model, "gpt-4o");
  EXPECT_FALSE(m.direct);
}

TEST(LedgerRow, ProblemsNeedTheFullPath) {
  EXPECT_FALSE(Direct(hex::string_token, true).direct);        // "12a"
  EXPECT_FALSE(Direct(hex::negative_token, false).direct);     // -5
  EXPECT_FALSE(Direct(hex::array_root, false).direct);         // not an object
  EXPECT_FALSE(Direct(hex::cached_exceeds_prompt, true).direct);
}

TEST(LedgerRow, MessageWithoutData) {
  LedgerCounts c;
  EXPECT_TRUE(direct_ledger_counts(message_without_data(), false, &c));
  EXPECT_FALSE(c.has_model);
  EXPECT_FALSE(direct_ledger_counts(message_without_data(), true, &c));
}

TEST(LedgerRow, CountableYears) {
  // 0001-01-01 00:00 UTC is 730119 days before 2000-01-01 (4 x 146097 days
  // for 1600 years, then 399 x 365 + 96 leap days); 10000-01-01 is 20 x
  // 146097 = 2921940 days after it.
  constexpr int64_t day = INT64_C(86400000000);
  EXPECT_TRUE(countable_time(0));
  EXPECT_TRUE(countable_time(-730119 * day));
  EXPECT_FALSE(countable_time(-730119 * day - 1));
  EXPECT_TRUE(countable_time(2921940 * day - 1));
  EXPECT_FALSE(countable_time(2921940 * day));
  EXPECT_FALSE(countable_time(INT64_MIN));  // -infinity
  EXPECT_FALSE(countable_time(INT64_MAX));  // infinity
}

}  // namespace
}  // namespace billing

namespace billing {
namespace {

TEST(LedgerRow, AssistantRole) {
  // The label in any case of ASCII letters (ORM enums), no trimming.
  EXPECT_TRUE(is_assistant_role("assistant"));
  EXPECT_TRUE(is_assistant_role("Assistant"));
  EXPECT_TRUE(is_assistant_role("ASSISTANT"));
  EXPECT_FALSE(is_assistant_role("assistants"));
  EXPECT_FALSE(is_assistant_role("assistan"));
  EXPECT_FALSE(is_assistant_role("ASSİSTANT"));  // (a non-ASCII letter is not folded)
  EXPECT_FALSE(is_assistant_role("assistant "));
  EXPECT_FALSE(is_assistant_role("user"));
  EXPECT_FALSE(is_assistant_role(""));
}

}  // namespace
}  // namespace billing

namespace billing {
namespace {

// message_figures: what billing.usage_of returns for each kind of data.
MessageFigures figures_of(const char* h, bool assistant) {
  static std::vector<billing_test::Bytes> kept;  // the figures point into the bytes
  kept.push_back(jsonb_container(h));
  return message_figures(message_usage(view_of(kept.back())), assistant);
}

TEST(MessageFigures, ReplyWithUsage) {
  const MessageFigures f = figures_of(hex::openai_cached_details, true);
  EXPECT_TRUE(f.has_model);
  EXPECT_EQ(f.prompt, 1000000);
  EXPECT_EQ(f.completion, 2000);
  EXPECT_EQ(f.cached, 400000);
  EXPECT_EQ(f.unsplit, 0);
  EXPECT_FALSE(f.problem);
  EXPECT_FALSE(f.estimated);
}

TEST(MessageFigures, TotalOnlyIsUnsplit) {
  const MessageFigures f = figures_of(hex::total_only, true);  // {"tokens":150,"model":"gpt-4o"}
  EXPECT_TRUE(f.has_model);
  EXPECT_EQ(f.model, "gpt-4o");
  EXPECT_EQ(f.prompt + f.completion + f.cached, 0);
  EXPECT_EQ(f.unsplit, 150);
  EXPECT_FALSE(f.estimated);
}

TEST(MessageFigures, OnlyARepliesWithoutUsageAreEstimated) {
  EXPECT_TRUE(figures_of(hex::empty_object, true).estimated);
  EXPECT_FALSE(figures_of(hex::empty_object, false).estimated);
  EXPECT_FALSE(figures_of(hex::seed_usage, true).estimated);
  EXPECT_TRUE(message_figures(message_without_data(), true).estimated);  // NULL data
  EXPECT_FALSE(message_figures(message_without_data(), true).has_model);
  // {"usage":"none","model":"gpt-4o"}: the model prices the estimate
  const MessageFigures f = figures_of(hex::usage_not_object, true);
  EXPECT_TRUE(f.estimated);
  EXPECT_TRUE(f.has_model);
  EXPECT_EQ(f.model, "gpt-4o");
}

TEST(MessageFigures, ProblemsCountNoTokens) {
  for (const char* h : {hex::string_token, hex::negative_token, hex::array_root, hex::model_number,
                        hex::bigint_overflow_token, hex::cached_exceeds_prompt}) {
    const MessageFigures f = figures_of(h, true);
    EXPECT_TRUE(f.problem) << h;
    EXPECT_FALSE(f.estimated) << h;
    EXPECT_EQ(f.prompt + f.completion + f.cached + f.unsplit, 0) << h;
  }
  EXPECT_FALSE(figures_of(hex::model_number, true).has_model);  // {"model":4,...}
}

// The scans read usage with read_usage (one pass, a layout kept from row to
// row); usage_of and the trigger with message_usage. They must agree.
TEST(MessageFigures, ReadUsageAgreesWithMessageUsage) {
  const char* all[] = {hex::seed_usage, hex::openai_cached_details, hex::responses_api, hex::nested_usage,
                       hex::nested_usage_inner_model, hex::nested_usage_ignored, hex::outer_null_nested_alias,
                       hex::string_token, hex::bool_token, hex::null_tokens, hex::float_token,
                       hex::integral_float_token, hex::negative_token, hex::bigint_max_token,
                       hex::bigint_overflow_token, hex::total_only, hex::total_tokens_only,
                       hex::cached_exceeds_prompt, hex::top_level_cached, hex::preferred_and_alias,
                       hex::model_number, hex::container_tokens, hex::unicode_model, hex::user_message,
                       hex::usage_not_object, hex::array_root, hex::array_of_objects, hex::empty_array,
                       hex::scalar_number, hex::scalar_string, hex::scalar_true, hex::scalar_false,
                       hex::scalar_null, hex::empty_object, hex::many_keys, hex::long_strings,
                       hex::numbers_after_odd_strings, hex::outer_null_nested_preferred,
                       hex::cached_top_and_detail, hex::cached_without_prompt, hex::both_details,
                       hex::total_invalid_with_split, hex::long_string_token, hex::model_in_both,
                       hex::model_null_outer, hex::usage_array};
  UsageLayout layout{};
  for (int round = 0; round < 2; ++round) {  // the second round with layouts learnt
    for (const char* h : all) {
      const billing_test::Bytes b = jsonb_container(h);
      for (bool assistant : {false, true}) {
        const Usage ua = message_usage(view_of(b));
        const Usage ur = read_usage(view_of(b), &layout);
        const MessageFigures a = message_figures(ua, assistant);
        const MessageFigures r = message_figures(ur, assistant);
        char da[256], dr[256];
        describe_usage_error(ua, da, sizeof da);
        describe_usage_error(ur, dr, sizeof dr);
        EXPECT_STREQ(da, dr) << h;
        EXPECT_EQ(a.has_model, r.has_model) << h;
        EXPECT_EQ(a.model, r.model) << h;
        EXPECT_EQ(a.prompt, r.prompt) << h;
        EXPECT_EQ(a.completion, r.completion) << h;
        EXPECT_EQ(a.cached, r.cached) << h;
        EXPECT_EQ(a.unsplit, r.unsplit) << h;
        EXPECT_EQ(a.problem, r.problem) << h;
        EXPECT_EQ(a.estimated, r.estimated) << h;
      }
    }
  }
}

}  // namespace
}  // namespace billing
