// Test-only helpers shared by the unit tests: hex fixtures to bytes, 128-bit
// integers to text (GoogleTest cannot print __int128), and byte mutators that
// hand every mutated copy to the code under test in a heap buffer of exactly
// the mutated size, so that AddressSanitizer (BILLING_SANITIZE=ON) flags any
// read past the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "jsonb_reader.h"
#include "money.h"
#include "pg_numeric.h"
#include "pg_varlena.h"
#include "usage.h"

namespace billing_test {

using Bytes = std::vector<uint8_t>;
using billing::Atto;
using billing::UAtto;

inline Bytes from_hex(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::invalid_argument("bad hex digit");
  };
  if (hex.size() % 2 != 0) throw std::invalid_argument("odd hex length");
  Bytes out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2)
    out.push_back(static_cast<uint8_t>(nibble(hex[i]) * 16 + nibble(hex[i + 1])));
  return out;
}

// Decimal text of a signed 128-bit integer, written independently of the
// code under test (money.cpp's format_atto) so that tests can compare with it.
inline std::string i128_str(Atto v) {
  const bool neg = v < 0;
  UAtto m = neg ? static_cast<UAtto>(-(v + 1)) + 1 : static_cast<UAtto>(v);
  std::string s;
  do {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(m % 10)));
    m /= 10;
  } while (m != 0);
  if (neg) s.insert(s.begin(), '-');
  return s;
}

// A 128-bit literal from decimal text (C++ has no 128-bit literals).
inline Atto i128(std::string_view text) {
  bool neg = false;
  if (!text.empty() && text[0] == '-') {
    neg = true;
    text.remove_prefix(1);
  }
  UAtto m = 0;
  for (char c : text) {
    if (c < '0' || c > '9') throw std::invalid_argument("bad i128 literal");
    m = m * 10 + static_cast<unsigned>(c - '0');
  }
  return neg ? static_cast<Atto>(~m + 1) : static_cast<Atto>(m);
}

inline constexpr Atto kI128Max = static_cast<Atto>(~static_cast<UAtto>(0) >> 1);
inline constexpr Atto kI128Min = -kI128Max - 1;

// The varlena `v` (1-byte or 4-byte header) re-headed with a 4-byte header,
// as PostgreSQL hands a detoasted datum to C code. Little-endian only, like
// the fixtures.
inline Bytes with_4byte_header(const Bytes& v) {
  const billing::VarlenaView view = billing::read_varlena(v.data(), v.size());
  if (!view.ok) throw std::invalid_argument("not a varlena");
  const uint32_t total = static_cast<uint32_t>(view.payload_size + 4);
  const uint32_t header = total << 2;
  Bytes out(4);
  std::memcpy(out.data(), &header, 4);
  out.insert(out.end(), view.payload, view.payload + view.payload_size);
  return out;
}

// The jsonb container (the varlena's payload) of a captured jsonb datum.
inline Bytes jsonb_container(std::string_view hex) {
  const Bytes datum = from_hex(hex);
  const billing::VarlenaView view = billing::read_varlena(datum.data(), datum.size());
  if (!view.ok) throw std::invalid_argument("fixture is not an inline varlena");
  return Bytes(view.payload, view.payload + view.payload_size);
}

inline billing::JsonbContainerView view_of(const Bytes& b) { return billing::JsonbContainerView{b.data(), b.size()}; }

// Calls fn(const uint8_t* data, size_t size) on every strict prefix of
// `bytes` (lengths 0 .. size-1), each copied into its own exact-size heap
// block (nullptr for length 0).
template <typename Fn>
void for_each_truncation(const Bytes& bytes, Fn&& fn) {
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    if (len == 0) {
      fn(static_cast<const uint8_t*>(nullptr), std::size_t{0});
      continue;
    }
    std::unique_ptr<uint8_t[]> copy(new uint8_t[len]);
    std::memcpy(copy.get(), bytes.data(), len);
    fn(static_cast<const uint8_t*>(copy.get()), len);
  }
}

// Calls fn(data, size) on copies of `bytes` where one byte is changed, for
// every position and each of several mutations (xor with single bits and
// 0xFF, set to 0x00, 0x7F, 0x80, 0xFF). Each copy is an exact-size heap block.
template <typename Fn>
void for_each_byte_mutation(const Bytes& bytes, Fn&& fn) {
  static constexpr uint8_t kXor[] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF};
  static constexpr uint8_t kSet[] = {0x00, 0x7F, 0x80, 0xFF};
  std::unique_ptr<uint8_t[]> copy(new uint8_t[bytes.size() ? bytes.size() : 1]);
  for (std::size_t pos = 0; pos < bytes.size(); ++pos) {
    for (uint8_t x : kXor) {
      std::memcpy(copy.get(), bytes.data(), bytes.size());
      copy[pos] ^= x;
      fn(static_cast<const uint8_t*>(copy.get()), bytes.size());
    }
    for (uint8_t s : kSet) {
      std::memcpy(copy.get(), bytes.data(), bytes.size());
      if (copy[pos] == s) continue;
      copy[pos] = s;
      fn(static_cast<const uint8_t*>(copy.get()), bytes.size());
    }
  }
}

// Calls fn(data, size) on copies of `bytes` where each aligned 32-bit word
// (jsonb headers and JEntries are 32-bit) is replaced by a few hostile values:
// huge counts/offsets, every type code, HAS_OFF with small and large offsets.
template <typename Fn>
void for_each_word_mutation(const Bytes& bytes, Fn&& fn) {
  static constexpr uint32_t kWords[] = {
      0x00000000u, 0xFFFFFFFFu, 0x0FFFFFFFu, 0x8FFFFFFFu, 0x80000000u, 0x80000001u, 0x20000001u, 0x2FFFFFFFu,
      0x40000001u, 0x50000001u, 0x5000000Fu, 0x10000001u, 0x10000003u, 0x60000000u, 0x70000004u, 0x90000008u,
      0xD0000010u, 0x50001000u, 0x18000000u,
  };
  std::unique_ptr<uint8_t[]> copy(new uint8_t[bytes.size() ? bytes.size() : 1]);
  for (std::size_t pos = 0; pos + 4 <= bytes.size(); pos += 4) {
    for (uint32_t w : kWords) {
      std::memcpy(copy.get(), bytes.data(), bytes.size());
      std::memcpy(copy.get() + pos, &w, 4);
      fn(static_cast<const uint8_t*>(copy.get()), bytes.size());
    }
  }
}

}  // namespace billing_test

// Readable names for the core's enums in GoogleTest failure messages (found by
// argument-dependent lookup, so they live in namespace billing).
namespace billing {

inline void PrintTo(NumericStatus s, std::ostream* os) {
  static const char* const names[] = {"Ok", "NotANumber", "Infinite", "TooPrecise", "OutOfRange", "Malformed"};
  const auto i = static_cast<unsigned>(s);
  *os << (i < 6 ? names[i] : "NumericStatus(?)");
}

inline void PrintTo(JsonKind k, std::ostream* os) {
  static const char* const names[] = {"Missing", "Null", "String", "Number", "True",
                                      "False", "Object", "Array", "Malformed"};
  const auto i = static_cast<unsigned>(k);
  *os << (i < 9 ? names[i] : "JsonKind(?)");
}

inline void PrintTo(UsageStatus s, std::ostream* os) {
  static const char* const names[] = {"Ok", "NoUsage", "TotalOnly", "Invalid"};
  const auto i = static_cast<unsigned>(s);
  *os << (i < 4 ? names[i] : "UsageStatus(?)");
}

inline void PrintTo(UsageError e, std::ostream* os) {
  static const char* const names[] = {"None", "NotAnObject", "NotANumber", "NotAnInteger", "OutOfRange",
                                      "Negative", "CachedExceedsPrompt", "ModelNotAString"};
  const auto i = static_cast<unsigned>(e);
  *os << (i < 8 ? names[i] : "UsageError(?)");
}

inline void PrintTo(TokenField f, std::ostream* os) {
  static const char* const names[] = {"Prompt", "Completion", "Total", "Cached", "CachedDetail", "Count"};
  const auto i = static_cast<unsigned>(f);
  *os << (i < 6 ? names[i] : "TokenField(?)");
}

}  // namespace billing
