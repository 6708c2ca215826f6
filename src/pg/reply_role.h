// Whether a message's role says an assistant's reply (src/core/usage.h,
// is_assistant_role), read from the role column's stored value by the
// tracking trigger's C path: the row's own role (track_row.cpp), and, at a
// tie in time, the role of an earlier message of its conversation
// (prompt_estimate.cpp). And whether ids alone decide such a tie
// (prompt_estimate.cpp, table_scan.cpp): billing._earlier_condition's rule
// in C.
#pragma once

#include "postgres_headers.h"

namespace billing::pg {

// `base_type` is the column's type through any domains. Text and varchar
// are read as their characters, an enum as its label (what the built-in
// enum_out gives). False in *known for another type, or an enum value
// without a label: the PL/pgSQL full body decides those.
bool role_says_reply(Oid base_type, Datum value, bool* known);

// Whether ids of type `base_type` (through any domains) are given in the
// order rows are stored, as a sequence or an identity gives integers: at a
// tie in created_at they decide alone. Others (uuid, text) tell nothing of
// that order, and the roles decide first.
bool ids_in_storage_order(Oid base_type);

}  // namespace billing::pg
