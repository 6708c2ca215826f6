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
  // Exactly the label: the role is compared as stored, no case folding or trimming.
  EXPECT_TRUE(is_assistant_role("assistant"));
  EXPECT_FALSE(is_assistant_role("Assistant"));
  EXPECT_FALSE(is_assistant_role("assistant "));
  EXPECT_FALSE(is_assistant_role("user"));
  EXPECT_FALSE(is_assistant_role(""));
}

}  // namespace
}  // namespace billing
