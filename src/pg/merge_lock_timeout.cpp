// SQL: billing._merge_lock_timeout() RETURNS integer, the setting
// billing.merge_lock_timeout in milliseconds (0: no limit), for
// billing._merge_step. Read here rather than with current_setting(): the
// call loads the library, so the value is the setting's, parsed with its
// unit, and not a placeholder's raw text.
#include "postgres_headers.h"
#include "settings.h"

extern "C" {
PG_FUNCTION_INFO_V1(merge_lock_timeout);
}

extern "C" Datum merge_lock_timeout(PG_FUNCTION_ARGS) { PG_RETURN_INT32(billing::pg::merge_lock_timeout_ms); }
