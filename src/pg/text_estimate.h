// The estimate of a text billing has no usage for (src/core/usage.h: one
// token per four characters), its characters counted as PostgreSQL counts
// them in the database's encoding: in UTF-8, whose text is always valid,
// by the core's count of the bytes that begin a character, a few times
// faster than pg_mbstrlen_with_len and equal to it.
#pragma once

#include "postgres_headers.h"
#include "usage.h"

extern "C" {
#include "mb/pg_wchar.h"
}

namespace billing::pg {

inline int64 text_estimate(const char* data, int len) {
  const int64 chars = GetDatabaseEncoding() == PG_UTF8 ? static_cast<int64>(utf8_char_count(data, len))
                                                       : pg_mbstrlen_with_len(data, len);
  return estimated_tokens(chars);
}

}  // namespace billing::pg
