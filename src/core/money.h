// Exact money arithmetic for billing: no floating point anywhere.
//
// Every amount is an integer count of atto-dollars (1e-18 USD) held in a signed
// 128-bit integer. Token prices are stored as atto-dollars per token (a price
// "per 1M tokens" with up to 12 decimals), AWS unit prices as pico-dollars per
// unit and quantities as micro-units, so every product of a count and a price
// is an exact integer in atto-dollars.
//
// This header knows nothing of PostgreSQL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace billing {

// 128-bit integers are a GCC and Clang extension: __extension__ keeps
// -Wpedantic quiet here, and every other use goes through these two names.
__extension__ typedef __int128 Atto;
__extension__ typedef unsigned __int128 UAtto;

inline constexpr int kAttoScale = 18;        // decimals of one atto-dollar
inline constexpr int kTokenPriceScale = 12;  // decimals kept of a price per 1M tokens
inline constexpr int kUnitPriceScale = 12;   // decimals kept of an AWS price per unit
inline constexpr int kQuantityScale = 6;     // decimals kept of an AWS quantity

// Overflow-checked arithmetic; false when the result does not fit. Inline:
// the cost aggregates add once or more per row.
inline bool add_atto(Atto a, Atto b, Atto* out) noexcept { return !__builtin_add_overflow(a, b, out); }
inline bool mul_atto(Atto a, int64_t b, Atto* out) noexcept {
  return !__builtin_mul_overflow(a, static_cast<Atto>(b), out);
}

// Longest text format_atto can write: sign, 39 digits, point, terminator.
inline constexpr std::size_t kAttoTextSize = 48;

// Writes `v` atto-dollars as an exact decimal number of dollars with trailing
// zeros trimmed down to `min_decimals` ("0.00075", "2", "-1.5"; with 2:
// "2.00", "0.75"). Returns the length written, not counting the terminating
// NUL that is always written.
std::size_t format_atto(Atto v, char (&buf)[kAttoTextSize], int min_decimals = 0) noexcept;

// Parses a plain decimal ("12", "-0.5", "3.140") into value * 10^scale.
// No exponent, no spaces. Returns nullopt when the text is not a decimal
// number, has more than `scale` decimals, or does not fit in 128 bits.
std::optional<Atto> parse_scaled_decimal(std::string_view text, int scale) noexcept;

// Same, for values that must fit in int64 (e.g. counters and prices).
std::optional<int64_t> parse_scaled_int64(std::string_view text, int scale) noexcept;

}  // namespace billing
