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

MessageFigures message_figures(const Usage& u, bool assistant) noexcept {
  MessageFigures f;
  f.has_model = u.has_model;
  f.model = u.model;
  switch (u.status) {
    case UsageStatus::Ok:
      f.prompt = u.prompt;
      f.completion = u.completion;
      f.cached = u.cached;
      break;
    case UsageStatus::TotalOnly:
      f.unsplit = u.total;
      break;
    case UsageStatus::Invalid:
      f.problem = true;
      break;
    case UsageStatus::NoUsage:
      f.estimated = assistant;  // an empty reply still has a prompt: its conversation
      break;
  }
  return f;
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
