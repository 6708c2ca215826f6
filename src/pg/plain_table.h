// Whether a table of billing's is the plain table its C writers expect
// (src/pg/plain_table.cpp): they write it with heap and index inserts,
// which would skip what a statement's INSERT honours.
#pragma once

#include "postgres_headers.h"

extern "C" {
#include "utils/rel.h"
}

namespace billing::pg {

// rel is an ordinary table of exactly the columns `types` (in order, none
// dropped or generated), with no rule, trigger, check constraint or
// default. (Its indexes are the caller's to check.)
bool plain_table(Relation rel, const Oid* types, int natts);

}  // namespace billing::pg
