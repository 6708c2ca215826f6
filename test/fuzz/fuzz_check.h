// Shared by the libFuzzer targets in this directory (not a target itself:
// CMake builds one fuzzer per test/fuzz/*.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

// An invariant violation: print where and what, then abort so that libFuzzer
// records the input as a crash (crash-<sha1> in the artifact directory).
#define FUZZ_CHECK(cond, ...)                                                       \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "\n%s:%d: invariant failed: %s\n  ", __FILE__, __LINE__, \
                   #cond);                                                          \
      std::fprintf(stderr, __VA_ARGS__);                                            \
      std::fprintf(stderr, "\n");                                                   \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

namespace fuzz {

// True when [p, p + n) lies inside [base, base + size).
inline bool inside(const void* p, std::size_t n, const void* base, std::size_t size) {
  const auto pp = reinterpret_cast<std::uintptr_t>(p);
  const auto bb = reinterpret_cast<std::uintptr_t>(base);
  return pp >= bb && pp - bb <= size && n <= size - (pp - bb);
}

// Prints an __int128 in decimal for messages.
inline const char* i128(__int128 v, char (&buf)[48]) {
  char tmp[48];
  int n = 0;
  const bool neg = v < 0;
  unsigned __int128 m = neg ? static_cast<unsigned __int128>(-(v + 1)) + 1 : static_cast<unsigned __int128>(v);
  do {
    tmp[n++] = static_cast<char>('0' + static_cast<int>(m % 10));
    m /= 10;
  } while (m != 0);
  int k = 0;
  if (neg) buf[k++] = '-';
  while (n > 0) buf[k++] = tmp[--n];
  buf[k] = '\0';
  return buf;
}

}  // namespace fuzz
