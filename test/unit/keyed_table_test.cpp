// Unit tests for src/core/keyed_table.h: finding and adding byte keys,
// growth, insertion order, running out of memory.
#include "keyed_table.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace billing {
namespace {

// An arena over the heap that can be told to fail after a number of blocks.
struct TestArena {
  std::vector<std::unique_ptr<std::max_align_t[]>> blocks;
  long budget = -1;  // blocks left before failing; -1: no limit

  static void* allocate(void* self, std::size_t bytes) noexcept {
    auto* a = static_cast<TestArena*>(self);
    if (a->budget == 0) return nullptr;
    if (a->budget > 0) --a->budget;
    a->blocks.emplace_back(new std::max_align_t[bytes / sizeof(std::max_align_t) + 1]);
    return a->blocks.back().get();
  }
  Arena arena() { return Arena{&TestArena::allocate, this}; }
};

TEST(KeyedTable, FindsWhatWasAdded) {
  TestArena a;
  KeyedTable<long> t;
  ASSERT_TRUE(t.init(a.arena(), 4));
  std::map<std::string, long> expected;
  for (long i = 0; i < 5000; ++i) {
    const std::string key = "key " + std::to_string(i % 1700) + std::string(i % 7, 'x');
    bool added = false;
    auto* e = t.find_or_add(key.data(), static_cast<uint32_t>(key.size()), &added);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(added, expected.count(key) == 0);
    if (added) {
      EXPECT_EQ(e->value, 0);
    }
    e->value += i;
    expected[key] += i;
  }
  EXPECT_EQ(t.size(), expected.size());
  for (const auto& [key, sum] : expected) {
    const auto* e = t.find(key.data(), static_cast<uint32_t>(key.size()));
    ASSERT_NE(e, nullptr) << key;
    EXPECT_EQ(e->value, sum);
    EXPECT_EQ(std::string(e->key, e->key_len), key);
  }
  EXPECT_EQ(t.find("absent", 6), nullptr);
}

TEST(KeyedTable, EmptyAndBinaryKeys) {
  TestArena a;
  KeyedTable<int> t;
  ASSERT_TRUE(t.init(a.arena()));
  bool added = false;
  t.find_or_add("", 0, &added)->value = 1;
  EXPECT_TRUE(added);
  const char zero[] = {'\0', '\0'};
  t.find_or_add(zero, 1, &added)->value = 2;
  EXPECT_TRUE(added);
  t.find_or_add(zero, 2, &added)->value = 3;
  EXPECT_TRUE(added);
  EXPECT_EQ(t.find("", 0)->value, 1);
  EXPECT_EQ(t.find(zero, 1)->value, 2);
  EXPECT_EQ(t.find(zero, 2)->value, 3);
}

TEST(KeyedTable, VisitsInInsertionOrder) {
  TestArena a;
  KeyedTable<int> t;
  ASSERT_TRUE(t.init(a.arena(), 1));
  bool added;
  for (int i = 0; i < 300; ++i) {
    const std::string key = std::to_string(i * 7919 % 1000);
    t.find_or_add(key.data(), static_cast<uint32_t>(key.size()), &added)->value = i;
  }
  int i = 0;
  for (auto* e = t.first(); e != nullptr; e = e->next) EXPECT_EQ(e->value, i++);
  EXPECT_EQ(i, 300);
}

TEST(KeyedTable, OutOfMemoryLeavesTheTableUsable) {
  TestArena a;
  KeyedTable<int> t;
  ASSERT_TRUE(t.init(a.arena(), 1));
  a.budget = 40;
  bool added;
  int kept = 0;
  for (int i = 0; i < 100; ++i) {
    const std::string key = "k" + std::to_string(i);
    auto* e = t.find_or_add(key.data(), static_cast<uint32_t>(key.size()), &added);
    if (e == nullptr) break;
    e->value = i;
    ++kept;
  }
  EXPECT_LT(kept, 100);
  EXPECT_EQ(t.size(), static_cast<std::size_t>(kept));
  for (int i = 0; i < kept; ++i) {
    const std::string key = "k" + std::to_string(i);
    ASSERT_NE(t.find(key.data(), static_cast<uint32_t>(key.size())), nullptr);
  }
  TestArena none;
  none.budget = 0;
  KeyedTable<int> u;
  EXPECT_FALSE(u.init(none.arena()));
}

TEST(HashBytes, DependsOnEveryByteAndTheLength) {
  const std::string a = "conversation 0123456789abcdef";
  for (std::size_t i = 0; i < a.size(); ++i) {
    std::string b = a;
    b[i] ^= 1;
    EXPECT_NE(hash_bytes(a.data(), a.size()), hash_bytes(b.data(), b.size())) << i;
  }
  const char zeros[16] = {};
  for (std::size_t n = 0; n < 16; ++n) EXPECT_NE(hash_bytes(zeros, n), hash_bytes(zeros, n + 1)) << n;
}

}  // namespace
}  // namespace billing
