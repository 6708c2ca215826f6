// The months billing groups by (src/pg/month.cpp), for C code that needs
// them without a SQL call per row.
#pragma once

#include "postgres_headers.h"
extern "C" {
#include "pgtime.h"
#include "utils/date.h"
}

namespace billing::pg {

// The month_time_zone setting, read now (one SPI query; UTC when unset).
pg_tz* month_time_zone();

// The first day of the month that contains `at` in `tz` (infinite stays infinite).
DateADT month_containing(TimestampTz at, pg_tz* tz);

// When the month `month_offset` months after `month` begins in `tz`.
TimestampTz month_begins(DateADT month, int month_offset, pg_tz* tz);

}  // namespace billing::pg
