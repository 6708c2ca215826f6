// Text of the app's (a model name, a usage value) quoted in a message to
// the client. PostgreSQL converts every message to the client's encoding
// and fails the whole query when it cannot: a WARNING naming "gpt😀" made a
// LATIN1 client's SELECT billing.openai_cost(...) fail instead of warn.
#pragma once

#include "postgres_headers.h"

namespace billing::pg {

// `msg` itself when the client reads it as it is (the same encoding as the
// database's, or SQL_ASCII on either side, where nothing is converted) or it
// is ASCII; else a palloc'd copy in which every character past ASCII is
// written \uXXXX (\UXXXXXXXX past the BMP) in a UTF8 database, \xHH per
// byte in another.
const char* client_safe(const char* msg);

}  // namespace billing::pg
