// A hash table of values keyed by byte strings, for scans that sum rows per
// key (billing._scan_table's groups, src/pg/table_scan.cpp). PostgreSQL-free.
//
// Plain data with no destructor: its memory (slots, entries, copies of the
// keys) comes from an Arena, which the glue backs with a PostgreSQL memory
// context, so the table may be abandoned at any point (an ERROR) and goes
// with its context. Entries never move once added, and are visited in the
// order they were added.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace billing {

// Where a table gets memory: allocate(context, bytes) returns a block
// aligned to 8 bytes, or nullptr when out of memory. Blocks are never
// freed one by one.
struct Arena {
  void* (*allocate)(void* context, std::size_t bytes) noexcept;
  void* context;
};

// A 64-bit hash of bytes (not for adversaries who can choose keys to
// collide: they only slow their own scan down).
uint64_t hash_bytes(const void* data, std::size_t len) noexcept;

template <typename V>
class KeyedTable {
  static_assert(std::is_trivially_copyable_v<V> && std::is_trivially_destructible_v<V>,
                "values live in arena memory and are never destroyed");

 public:
  struct Entry {
    Entry* next;  // the entry added after this one
    uint64_t hash;
    const char* key;  // a copy, in the arena
    uint32_t key_len;
    V value;  // zeroed when added
  };

  // An empty table; false when out of memory. A zeroed KeyedTable must be
  // initialised before use.
  bool init(Arena arena, std::size_t expected = 64) noexcept {
    arena_ = arena;
    std::size_t capacity = 16;
    while (capacity < expected * 2) capacity *= 2;
    size_ = 0;
    head_ = tail_ = nullptr;
    return allocate_slots(capacity);
  }

  // The entry of `key`, or nullptr.
  Entry* find(const char* key, uint32_t len) const noexcept {
    const uint64_t h = hash_bytes(key, len);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      Entry* e = slots_[i];
      if (e == nullptr) return nullptr;
      if (matches(e, h, key, len)) return e;
    }
  }

  // The entry of `key`: the one found, or a new one whose value is zeroed
  // (then *added is true). nullptr when out of memory.
  Entry* find_or_add(const char* key, uint32_t len, bool* added) noexcept {
    *added = false;
    const uint64_t h = hash_bytes(key, len);
    std::size_t i = h & mask_;
    for (;; i = (i + 1) & mask_) {
      Entry* e = slots_[i];
      if (e == nullptr) break;
      if (matches(e, h, key, len)) return e;
    }
    if ((size_ + 1) * 2 > mask_ + 1) {
      if (!grow()) return nullptr;
      for (i = h & mask_; slots_[i] != nullptr; i = (i + 1) & mask_) {
      }
    }
    auto* e = static_cast<Entry*>(arena_.allocate(arena_.context, sizeof(Entry)));
    char* copy = static_cast<char*>(arena_.allocate(arena_.context, len == 0 ? 1 : len));
    if (e == nullptr || copy == nullptr) return nullptr;
    std::memset(static_cast<void*>(e), 0, sizeof(Entry));
    if (len != 0) std::memcpy(copy, key, len);
    e->hash = h;
    e->key = copy;
    e->key_len = len;
    slots_[i] = e;
    if (tail_ == nullptr) {
      head_ = e;
    } else {
      tail_->next = e;
    }
    tail_ = e;
    ++size_;
    *added = true;
    return e;
  }

  // The first entry added (then follow Entry::next), nullptr when empty.
  Entry* first() const noexcept { return head_; }
  std::size_t size() const noexcept { return size_; }

 private:
  static bool matches(const Entry* e, uint64_t h, const char* key, uint32_t len) noexcept {
    return e->hash == h && e->key_len == len && (len == 0 || std::memcmp(e->key, key, len) == 0);
  }

  bool allocate_slots(std::size_t capacity) noexcept {
    auto* slots = static_cast<Entry**>(arena_.allocate(arena_.context, capacity * sizeof(Entry*)));
    if (slots == nullptr) return false;
    std::memset(static_cast<void*>(slots), 0, capacity * sizeof(Entry*));
    slots_ = slots;
    mask_ = capacity - 1;
    return true;
  }

  // Twice the slots; the old ones are left to the arena.
  bool grow() noexcept {
    if (!allocate_slots((mask_ + 1) * 2)) return false;
    for (Entry* e = head_; e != nullptr; e = e->next) {
      std::size_t i = e->hash & mask_;
      while (slots_[i] != nullptr) i = (i + 1) & mask_;
      slots_[i] = e;
    }
    return true;
  }

  Arena arena_;
  Entry** slots_;
  std::size_t mask_;  // slots - 1 (a power of two minus one)
  std::size_t size_;
  Entry* head_;
  Entry* tail_;
};

}  // namespace billing
