#include "cost_state.h"

#include <fmt/format.h>

#include <cstring>
#include <limits>

namespace billing {

Atto CostState::cost() const noexcept {
  const unsigned __int128 u = (static_cast<unsigned __int128>(static_cast<uint64_t>(cost_hi)) << 64) | cost_lo;
  return static_cast<Atto>(u);
}

void CostState::set_cost(Atto v) noexcept {
  const auto u = static_cast<unsigned __int128>(v);
  cost_lo = static_cast<uint64_t>(u);
  cost_hi = static_cast<int64_t>(static_cast<uint64_t>(u >> 64));
}

std::string_view CostState::first_unpriced_name() const noexcept {
  return std::string_view(first_name, strnlen(first_name, kNameSize));
}

CostState empty_cost_state() noexcept {
  CostState s;
  std::memset(&s, 0, sizeof s);
  return s;
}

bool add_priced(CostState& s, Atto cost) noexcept {
  Atto sum;
  if (!add_atto(s.cost(), cost, &sum)) return false;
  s.set_cost(sum);
  return !__builtin_add_overflow(s.priced_rows, 1, &s.priced_rows);
}

namespace {

int64_t saturating_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::numeric_limits<int64_t>::max();
  return r;
}

void remember_first(CostState& s, UnpricedReason why, std::string_view name) {
  if (s.first_reason != 0) return;
  s.first_reason = static_cast<uint8_t>(why);
  std::size_t n = name.size() < CostState::kNameSize ? name.size() : CostState::kNameSize;
  // Never cut a UTF-8 sequence in half: the name ends up in messages.
  if (n < name.size())
    while (n > 0 && (static_cast<unsigned char>(name[n]) & 0xC0) == 0x80) --n;
  std::memset(s.first_name, 0, CostState::kNameSize);
  std::memcpy(s.first_name, name.data(), n);
}

}  // namespace

void add_unpriced(CostState& s, UnpricedReason why, std::string_view name, int64_t units) noexcept {
  s.unpriced_rows = saturating_add(s.unpriced_rows, 1);
  s.unpriced_units = saturating_add(s.unpriced_units, units);
  remember_first(s, why, name);
}

bool combine(CostState& a, const CostState& b) noexcept {
  Atto sum;
  if (!add_atto(a.cost(), b.cost(), &sum)) return false;
  if (__builtin_add_overflow(a.priced_rows, b.priced_rows, &a.priced_rows)) return false;
  a.set_cost(sum);
  a.unpriced_rows = saturating_add(a.unpriced_rows, b.unpriced_rows);
  a.unpriced_units = saturating_add(a.unpriced_units, b.unpriced_units);
  if (b.first_reason != 0) remember_first(a, static_cast<UnpricedReason>(b.first_reason), b.first_unpriced_name());
  return true;
}

std::string_view unpriced_reason_text(UnpricedReason r) noexcept {
  switch (r) {
    case UnpricedReason::None: return "";
    case UnpricedReason::UnknownModel: return "not in the price catalog";
    case UnpricedReason::NoPriceAtTime: return "no price in effect at that time";
    case UnpricedReason::NoModel: return "usage without a model name";
    case UnpricedReason::NoSplit: return "only a total token count, no prompt/completion split";
  }
  return "";
}

std::size_t format_cost_state(const CostState& s, char (&buf)[kCostStateTextSize]) noexcept {
  char cost[kAttoTextSize];
  format_atto(s.cost(), cost);
  // Quote the name, escaping quote and backslash like a record literal.
  char name[CostState::kNameSize * 2 + 1];
  std::size_t n = 0;
  for (char c : s.first_unpriced_name()) {
    if (c == '"' || c == '\\') name[n++] = '\\';
    name[n++] = c;
  }
  name[n] = '\0';
  try {
    const auto r = fmt::format_to_n(buf, kCostStateTextSize - 1, "({},{},{},{},{},\"{}\")", cost, s.priced_rows,
                                    s.unpriced_rows, s.unpriced_units, static_cast<int>(s.first_reason), name);
    *r.out = '\0';
    return static_cast<std::size_t>(r.out - buf);
  } catch (...) {
    buf[0] = '\0';
    return 0;
  }
}

namespace {

// Splits off the next comma-separated field of a "(...)" body.
bool next_field(std::string_view& rest, std::string_view& field) {
  const std::size_t comma = rest.find(',');
  if (comma == std::string_view::npos) return false;
  field = rest.substr(0, comma);
  rest.remove_prefix(comma + 1);
  return true;
}

}  // namespace

bool parse_cost_state(std::string_view text, CostState* out) noexcept {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.size() < 2 || text.front() != '(' || text.back() != ')') return false;
  std::string_view rest = text.substr(1, text.size() - 2);

  CostState s = empty_cost_state();
  std::string_view f;
  if (!next_field(rest, f)) return false;
  const auto cost = parse_scaled_decimal(f, kAttoScale);
  if (!cost) return false;
  s.set_cost(*cost);
  int64_t* counters[] = {&s.priced_rows, &s.unpriced_rows, &s.unpriced_units};
  for (int64_t* c : counters) {
    if (!next_field(rest, f)) return false;
    const auto v = parse_scaled_int64(f, 0);
    if (!v || *v < 0) return false;
    *c = *v;
  }
  if (!next_field(rest, f)) return false;
  const auto reason = parse_scaled_int64(f, 0);
  if (!reason || *reason < 0 || *reason > static_cast<int64_t>(UnpricedReason::NoSplit)) return false;
  s.first_reason = static_cast<uint8_t>(*reason);

  // The rest is the quoted name.
  if (rest.size() < 2 || rest.front() != '"' || rest.back() != '"') return false;
  rest = rest.substr(1, rest.size() - 2);
  std::size_t n = 0;
  for (std::size_t i = 0; i < rest.size(); ++i) {
    char c = rest[i];
    if (c == '\\') {
      if (++i == rest.size()) return false;
      c = rest[i];
    } else if (c == '"') {
      return false;
    }
    if (n == CostState::kNameSize) return false;
    s.first_name[n++] = c;
  }
  if (s.first_reason == 0 && n != 0) return false;
  *out = s;
  return true;
}

}  // namespace billing

#include "no_postgres.h"
