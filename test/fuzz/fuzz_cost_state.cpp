// Fuzzes the text form of billing.cost_state (src/core/cost_state.h):
// parse_cost_state, format_cost_state, combine and describe_first_problem.
//
// Input: arbitrary bytes as the text to parse.
//
// Checks, besides "no crash, no out-of-bounds read, no UB":
//  * a parsed state is valid: counters >= 0, reason 0..4, problem 0..7,
//    field 0..4, kind 0..8, no name without a reason, no field, kind or
//    value without a problem, and the name and value fit the 12 shared
//    bytes together (name, NUL, value);
//  * round trip: t = format(parse(x)) fits the buffer, parses again, and
//    formatting that state gives t byte for byte; the two states are equal
//    (every field, name and value; all 64 bytes when x has no NUL byte,
//    as text input from PostgreSQL never does);
//  * combine(empty, s) gives s back; combine(s, s) keeps s's first name and
//    problem;
//  * describe_first_problem writes a NUL-terminated sentence that fits 256
//    bytes, empty exactly when the state names no problem.
#include <cstdint>
#include <cstring>
#include <string_view>

#include "cost_state.h"
#include "fuzz_check.h"

using namespace billing;

namespace {

bool same_state(const CostState& a, const CostState& b) {
  return a.cost() == b.cost() && a.priced_rows == b.priced_rows && a.unpriced_rows == b.unpriced_rows &&
         a.unpriced_units == b.unpriced_units && a.invalid_rows == b.invalid_rows &&
         a.first_reason == b.first_reason && a.first_problem == b.first_problem &&
         a.problem_field == b.problem_field && a.problem_kind == b.problem_kind &&
         a.first_unpriced_name() == b.first_unpriced_name() && a.first_problem_value() == b.first_problem_value();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CostState s;
  std::memset(&s, 0xA5, sizeof s);
  if (!parse_cost_state(text, &s)) return 0;

  FUZZ_CHECK(s.priced_rows >= 0 && s.unpriced_rows >= 0 && s.unpriced_units >= 0 && s.invalid_rows >= 0,
             "negative counter accepted");
  FUZZ_CHECK(s.first_reason <= static_cast<uint8_t>(UnpricedReason::NoSplit), "reason %d accepted", s.first_reason);
  FUZZ_CHECK(s.first_problem <= static_cast<uint8_t>(UsageError::ModelNotAString), "problem %d accepted",
             s.first_problem);
  FUZZ_CHECK((s.problem_field & 0x0F) < static_cast<uint8_t>(TokenField::Count), "field %d accepted", s.problem_field);
  FUZZ_CHECK((s.problem_field >> 6) == 0 || s.first_problem == static_cast<uint8_t>(UsageError::CachedExceedsPrompt),
             "a prompt spelling without cached > prompt accepted (field %d)", s.problem_field);
  FUZZ_CHECK(s.first_problem != static_cast<uint8_t>(UsageError::NotAnObject) || s.problem_field == 0,
             "a field for a root that is not an object accepted (field %d)", s.problem_field);
  FUZZ_CHECK(s.first_problem != static_cast<uint8_t>(UsageError::ModelNotAString) ||
                 (s.problem_field & ~static_cast<unsigned>(kInUsageObject << 4)) == 0,
             "a token field for a model accepted (field %d)", s.problem_field);
  FUZZ_CHECK(s.problem_kind <= static_cast<uint8_t>(JsonKind::Malformed), "kind %d accepted", s.problem_kind);
  FUZZ_CHECK(s.first_reason != 0 || s.first_unpriced_name().empty(), "a name without a reason accepted");
  FUZZ_CHECK(s.first_problem != 0 || (s.problem_field == 0 && s.problem_kind == 0 && s.first_problem_value().empty()),
             "problem details without a problem accepted");
  const std::size_t name_len = s.first_unpriced_name().size();
  const std::size_t value_len = s.first_problem_value().size();
  FUZZ_CHECK(name_len + (value_len == 0 ? 0 : 1 + value_len) <= CostState::kTextSize,
             "name (%zu) and value (%zu) overflow the shared text", name_len, value_len);

  char t1[kCostStateTextSize];
  const std::size_t n1 = format_cost_state(s, t1);
  FUZZ_CHECK(n1 > 0 && n1 < kCostStateTextSize && t1[n1] == '\0' && std::strlen(t1) == n1,
             "format wrote %zu bytes", n1);

  CostState s2;
  std::memset(&s2, 0x5A, sizeof s2);
  FUZZ_CHECK(parse_cost_state(std::string_view(t1, n1), &s2), "format(parse(x)) does not parse: %s", t1);
  char t2[kCostStateTextSize];
  const std::size_t n2 = format_cost_state(s2, t2);
  FUZZ_CHECK(n2 == n1 && std::memcmp(t1, t2, n1) == 0, "format(parse(format(parse(x)))) differs:\n  %s\n  %s", t1,
             t2);
  FUZZ_CHECK(same_state(s, s2), "parse(format(s)) is another state: %s", t1);
  if (text.find('\0') == std::string_view::npos)
    FUZZ_CHECK(std::memcmp(&s, &s2, sizeof s) == 0, "parse(format(s)) differs in its bytes: %s", t1);

  CostState sum = empty_cost_state();
  FUZZ_CHECK(combine(sum, s), "combine(empty, s) overflowed");
  FUZZ_CHECK(same_state(sum, s), "combine(empty, s) != s");
  CostState twice = s;
  if (combine(twice, s)) {
    FUZZ_CHECK(twice.first_reason == s.first_reason && twice.first_unpriced_name() == s.first_unpriced_name() &&
                   twice.first_problem == s.first_problem && twice.first_problem_value() == s.first_problem_value(),
               "combine(s, s) changed the first name or problem: %s", t1);
  }

  char sentence[256];
  std::memset(sentence, 'X', sizeof sentence);
  const std::size_t len = describe_first_problem(s, sentence, sizeof sentence);
  FUZZ_CHECK(len < sizeof sentence && sentence[len] == '\0' && std::strlen(sentence) == len,
             "describe_first_problem wrote %zu bytes", len);
  FUZZ_CHECK((len > 0) == (s.first_problem != 0), "sentence of %zu bytes for problem %d", len, s.first_problem);
  return 0;
}
