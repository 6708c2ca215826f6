#include "model_name.h"

namespace billing {

namespace {

bool all_digits(std::string_view s) {
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return !s.empty();
}

void add(ModelCandidates& out, std::string_view name) {
  if (name.empty()) return;
  for (int i = 0; i < out.count; ++i)
    if (out.names[i] == name) return;
  if (out.count < ModelCandidates::kMax) out.names[out.count++] = name;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int two_digits(std::string_view s, std::size_t at) { return (s[at] - '0') * 10 + (s[at + 1] - '0'); }

// Days in a month of the Gregorian calendar; year 0: any year (February 29
// exists in some).
int days_in_month(int year, int month) {
  static constexpr int kDays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month != 2 || year == 0) return kDays[month - 1];
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return leap ? 29 : 28;
}

// A real date: 2023-02-29 and 0230 are not, and such names keep their
// digits (they name no snapshot).
bool real_date(int year, int month, int day) {
  return month >= 1 && month <= 12 && day >= 1 && day <= days_in_month(year, month);
}

}  // namespace

std::string_view strip_snapshot_suffix(std::string_view name) noexcept {
  // -YYYY-MM-DD
  constexpr std::size_t kDated = 11;
  if (name.size() > kDated) {
    const std::string_view tail = name.substr(name.size() - kDated);
    if (tail[0] == '-' && all_digits(tail.substr(1, 4)) && tail[5] == '-' && all_digits(tail.substr(6, 2)) &&
        tail[8] == '-' && all_digits(tail.substr(9, 2))) {
      const int year = two_digits(tail, 1) * 100 + two_digits(tail, 3);
      if (year >= 1 && real_date(year, two_digits(tail, 6), two_digits(tail, 9)))
        return name.substr(0, name.size() - kDated);
    }
  }
  // -MMDD (gpt-4-0613, gpt-3.5-turbo-0125): a real month and day, so that
  // names like llama-3-70b-8192 keep their number.
  constexpr std::size_t kShort = 5;
  if (name.size() > kShort) {
    const std::string_view tail = name.substr(name.size() - kShort);
    if (tail[0] == '-' && all_digits(tail.substr(1)) && real_date(0, two_digits(tail, 1), two_digits(tail, 3)))
      return name.substr(0, name.size() - kShort);
  }
  return name;
}

void model_candidates(std::string_view stored, ModelCandidates& out) noexcept {
  out.count = 0;
  add(out, stored);
  add(out, strip_snapshot_suffix(stored));

  std::size_t begin = 0;
  std::size_t end = stored.size();
  while (begin < end && is_space(stored[begin])) ++begin;
  while (end > begin && is_space(stored[end - 1])) --end;
  std::string_view trimmed = stored.substr(begin, end - begin);
  if (trimmed.size() > kMaxNormalisedName) return;

  std::size_t n = 0;
  for (char c : trimmed) out.normalised[n++] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  std::string_view norm(out.normalised, n);
  constexpr std::string_view kPrefix = "openai/";
  if (norm.substr(0, kPrefix.size()) == kPrefix) norm.remove_prefix(kPrefix.size());
  add(out, norm);
  add(out, strip_snapshot_suffix(norm));
}

}  // namespace billing

#include "no_postgres.h"
