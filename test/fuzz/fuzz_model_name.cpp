// Fuzzes model-name resolution (src/core/model_name.h, price_catalog.h):
// model_candidates, strip_snapshot_suffix, PriceCatalog::resolve_model and
// PriceCatalog::resolve_service.
//
// Input: the stored name is everything up to the first NUL byte (a text value
// never contains one); every further NUL-separated piece is added to the
// catalog as both a model and a service name, next to a fixed set of real
// names. model_candidates/strip_snapshot_suffix also get the whole input,
// NULs included.
//
// Checks, besides "no crash, no out-of-bounds read, no UB":
//  * at most 4 candidates, none empty, no two equal, each a view into the
//    stored name or into the ModelCandidates' own normalised buffer;
//  * the candidates are exactly those of the rules in model_name.h, recomputed
//    here with std::string (stored, stripped, normalised, normalised
//    stripped) -- keep ref_strip/ref_candidates in step with those rules;
//  * strip_snapshot_suffix returns a prefix of its input, shorter by 0, 5
//    (-MMDD, a real month and day) or 11 (-YYYY-MM-DD, a real date) bytes;
//  * resolve_model returns, in order, the catalog series of the candidates
//    that exist, and price_at picks the first of them priced at a time;
//  * resolve_service finds the name as stored, else trimmed + lower-cased.
#include <cstdint>
#include <ctime>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.h"
#include "model_name.h"
#include "price_catalog.h"

using namespace billing;

namespace {

bool digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// Whether year-month-day is a real date, by the C library's calendar
// (timegm normalises an impossible date into another one), not by the
// month lengths model_name.cpp writes out.
bool real_date(int year, int month, int day) {
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > 31) return false;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = 12;
  if (timegm(&tm) == static_cast<time_t>(-1)) return false;  // (never at noon of a real date)
  return tm.tm_year == year - 1900 && tm.tm_mon == month - 1 && tm.tm_mday == day;
}

// README "How model names resolve" / model_name.h, written out independently.
std::string ref_strip(const std::string& n) {
  if (n.size() > 11) {
    const std::string t = n.substr(n.size() - 11);
    if (t[0] == '-' && digits(t.substr(1, 4)) && t[5] == '-' && digits(t.substr(6, 2)) && t[8] == '-' &&
        digits(t.substr(9, 2)) &&
        real_date(std::stoi(t.substr(1, 4)), std::stoi(t.substr(6, 2)), std::stoi(t.substr(9, 2))))
      return n.substr(0, n.size() - 11);
  }
  if (n.size() > 5) {
    // -MMDD only when it is a real month and day (in some year: a leap
    // year's), so that llama-3-70b-8192 and gpt-4-0230 keep their number.
    const std::string t = n.substr(n.size() - 5);
    if (t[0] == '-' && digits(t.substr(1)) && real_date(2000, std::stoi(t.substr(1, 2)), std::stoi(t.substr(3, 2))))
      return n.substr(0, n.size() - 5);
  }
  return n;
}

std::vector<std::string> ref_candidates(std::string_view stored) {
  std::vector<std::string> out;
  auto add = [&](const std::string& s) {
    if (s.empty() || out.size() == 4) return;
    for (const auto& o : out)
      if (o == s) return;
    out.push_back(s);
  };
  const std::string s(stored);
  add(s);
  add(ref_strip(s));
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  std::size_t b = 0, e = s.size();
  while (b < e && space(s[b])) ++b;
  while (e > b && space(s[e - 1])) --e;
  if (e - b > kMaxNormalisedName) return out;
  std::string norm = s.substr(b, e - b);
  for (char& c : norm)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (norm.rfind("openai/", 0) == 0) norm.erase(0, 7);
  add(norm);
  add(ref_strip(norm));
  return out;
}

void check_candidates(std::string_view stored) {
  ModelCandidates c;
  std::memset(&c, 0xAB, sizeof c);  // garbage in, as on a fresh stack frame
  model_candidates(stored, c);
  FUZZ_CHECK(c.count >= 0 && c.count <= ModelCandidates::kMax, "count %d", c.count);
  for (int i = 0; i < c.count; ++i) {
    const std::string_view n = c.names[i];
    FUZZ_CHECK(!n.empty(), "candidate %d is empty", i);
    FUZZ_CHECK(fuzz::inside(n.data(), n.size(), stored.data(), stored.size()) ||
                   fuzz::inside(n.data(), n.size(), c.normalised, sizeof c.normalised),
               "candidate %d points outside the name and the normalised buffer", i);
    for (int j = 0; j < i; ++j) FUZZ_CHECK(c.names[j] != n, "candidates %d and %d are equal", j, i);
  }
  if (!stored.empty()) FUZZ_CHECK(c.count >= 1 && c.names[0] == stored, "first candidate is not the stored name");

  const std::vector<std::string> want = ref_candidates(stored);
  FUZZ_CHECK(static_cast<std::size_t>(c.count) == want.size(), "%d candidates, README rules give %zu", c.count,
             want.size());
  for (int i = 0; i < c.count; ++i)
    FUZZ_CHECK(c.names[i] == want[static_cast<std::size_t>(i)], "candidate %d is \"%.*s\", README rules give \"%s\"",
               i, static_cast<int>(c.names[i].size()), c.names[i].data(), want[static_cast<std::size_t>(i)].c_str());

  const std::string_view stripped = strip_snapshot_suffix(stored);
  const std::size_t cut = stored.size() - stripped.size();
  FUZZ_CHECK(stripped.data() == stored.data() && stripped.size() <= stored.size() && (cut == 0 || cut == 5 || cut == 11),
             "strip_snapshot_suffix cut %zu bytes", cut);
  FUZZ_CHECK(stripped == ref_strip(std::string(stored)), "strip_snapshot_suffix disagrees with the README rule");
}

const char* const kKnownModels[] = {
    "gpt-4o", "gpt-4o-mini", "gpt-4o-2024-05-13", "gpt-4", "gpt-4-0613", "gpt-3.5-turbo", "o1", "o3-mini",
    "text-embedding-3-small", "gpt-4.1", "openai/gpt-4o", "GPT-4o",
};
const char* const kKnownServices[] = {"AmazonEC2", "amazons3", "awslambda", "AmazonRDS", "amazon cloudfront", ""};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view whole(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = whole.find('\0');
  const std::string_view stored = whole.substr(0, nul);

  check_candidates(whole);
  if (nul != std::string_view::npos) check_candidates(stored);

  // A catalog of real names plus the input's extra pieces.
  std::vector<std::string_view> extra;
  for (std::size_t pos = nul; pos != std::string_view::npos && extra.size() < 16;) {
    const std::size_t next = whole.find('\0', pos + 1);
    extra.push_back(whole.substr(pos + 1, next == std::string_view::npos ? std::string_view::npos : next - pos - 1));
    pos = next;
  }
  PriceCatalog cat;
  int64_t t = 0;
  for (const char* m : kKnownModels) cat.add_model_price(m, TokenPrice{t++ * 1000, 1, 1, 1});
  for (const char* s : kKnownServices) cat.add_service_price(s, UnitPrice{0, 1});
  for (std::string_view e : extra) {
    // Series with no price before 0, or starting at -infinity / infinity.
    cat.add_model_price(e, TokenPrice{static_cast<int64_t>(e.size() % 3) - 1, 2, 2, 2});
    cat.add_model_price(e, TokenPrice{e.size() % 2 ? std::numeric_limits<int64_t>::min()
                                                   : std::numeric_limits<int64_t>::max(),
                                      3, 3, 3});
    cat.add_service_price(e, UnitPrice{0, 2});
  }
  cat.finish();

  ModelCandidates c;
  model_candidates(stored, c);
  const ModelResolution r = cat.resolve_model(stored);
  FUZZ_CHECK(r.count >= 0 && r.count <= 4 && r.count <= c.count, "resolution count %d (%d candidates)", r.count,
             c.count);
  int k = 0;
  for (int i = 0; i < c.count; ++i) {
    const ModelSeries* s = cat.find_model(c.names[i]);
    if (s == nullptr) continue;
    FUZZ_CHECK(k < r.count && r.series[k] == s, "series %d should be the catalog's \"%.*s\"", k,
               static_cast<int>(c.names[i].size()), c.names[i].data());
    FUZZ_CHECK(std::string_view(s->name) == c.names[i], "find_model returned another name");
    ++k;
  }
  FUZZ_CHECK(k == r.count, "resolve_model returned %d series, %d candidates are in the catalog", r.count, k);
  for (int64_t when : {std::numeric_limits<int64_t>::min(), int64_t{-1}, int64_t{0}, int64_t{5000},
                       std::numeric_limits<int64_t>::max()}) {
    const ModelSeries* used = nullptr;
    const TokenPrice* p = price_at(r, when, &used);
    const TokenPrice* want = nullptr;
    const ModelSeries* want_used = nullptr;
    for (int i = 0; i < r.count && want == nullptr; ++i)
      if ((want = r.series[i]->at(when)) != nullptr) want_used = r.series[i];
    FUZZ_CHECK(p == want && (p == nullptr || used == want_used), "price_at picked another price");
    if (p != nullptr) FUZZ_CHECK(p->effective_from <= when, "price from the future");
  }

  // Services: as stored, else spaces trimmed and lower-cased (up to 64 bytes).
  const ServiceSeries* svc = cat.resolve_service(stored);
  const ServiceSeries* want_svc = cat.find_service(stored);
  if (want_svc == nullptr) {
    std::size_t b = 0, e = stored.size();
    while (b < e && stored[b] == ' ') ++b;
    while (e > b && stored[e - 1] == ' ') --e;
    if (e - b <= 64) {
      std::string lower(stored.substr(b, e - b));
      for (char& ch : lower)
        if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
      want_svc = cat.find_service(lower);
    }
  }
  FUZZ_CHECK(svc == want_svc, "resolve_service found %s, expected %s", svc ? "a series" : "nothing",
             want_svc ? "a series" : "nothing");
  return 0;
}
