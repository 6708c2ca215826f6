#include "ledger_row.h"

namespace billing {

Usage message_usage(JsonbContainerView data) noexcept {
  const UsageFields fields = read_usage_fields(data);
  Usage u = decode_usage(fields);
  if (u.status == UsageStatus::NoUsage && fields.model_kind == JsonKind::String) {
    u.has_model = true;
    u.model = fields.model;
  }
  return u;
}

bool direct_ledger_counts(const Usage& u, bool assistant, LedgerCounts* out) noexcept {
  LedgerCounts c;
  c.has_model = u.has_model;
  c.model = u.model;
  switch (u.status) {
    case UsageStatus::Ok:
      c.prompt = u.prompt;
      c.completion = u.completion;
      c.cached = u.cached;
      break;
    case UsageStatus::TotalOnly:
      c.unsplit = u.total;
      break;
    case UsageStatus::NoUsage:
      if (assistant) return false;  // its prompt and completion are estimated
      break;
    case UsageStatus::Invalid:
      return false;  // a listed problem
  }
  *out = c;
  return true;
}

}  // namespace billing

#include "no_postgres.h"
