// A function of schema billing, found by name and argument types without
// the schema USAGE check that LookupFuncName makes: billing's event
// triggers run for every role's DDL, and a role without USAGE on schema
// billing (a migration role) got "permission denied for schema billing"
// from them on tables billing does not track.
#pragma once

#include "postgres_headers.h"

namespace billing::pg {

// The function billing.<name>(argtypes), or InvalidOid.
Oid billing_function(const char* name, int nargs, const Oid* argtypes);

}  // namespace billing::pg
