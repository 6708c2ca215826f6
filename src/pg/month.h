// The months billing groups by (src/pg/month.cpp), for C code that needs
// them without a SQL call per row.
#pragma once

#include "postgres_headers.h"
extern "C" {
#include "pgtime.h"
#include "utils/date.h"
}

namespace billing::pg {

// A `date` created_at as billing reads it: midnight UTC; a date past the
// last timestamp (year 294276) as +infinity, a time counted in no month
// (PostgreSQL's own conversion raises there, which would fail the app's
// write and every read of the table).
inline TimestampTz date_as_time(DateADT d) {
  int overflow = 0;
  const Timestamp t = date2timestamp_opt_overflow(d, &overflow);
  if (overflow > 0) return DT_NOEND;
  if (overflow < 0) return DT_NOBEGIN;
  return t;  // (the same microseconds, read as UTC)
}

// The month_time_zone setting, read now (one SPI query; UTC when unset).
pg_tz* month_time_zone();

// The first day of the month that contains `at` in `tz` (infinite stays infinite).
DateADT month_containing(TimestampTz at, pg_tz* tz);

// When the month `month_offset` months after `month` begins in `tz`.
TimestampTz month_begins(DateADT month, int month_offset, pg_tz* tz);

// The months of the rows of one read, which come in runs of one month: the
// month of the last time asked for is kept with its [start, end), and only
// a time outside it calls month_containing and month_begins. Zeroed (as
// palloc0 and value-initialization leave it) it holds no month; the time
// zone is set before the first month_of.
class MonthCache {
 public:
  void set_time_zone(pg_tz* tz) {
    tz_ = tz;
    start_ = end_ = 0;  // (an empty span: the next time computes its month)
  }
  // The first day of the month that contains `at`, as month_containing.
  DateADT month_of(TimestampTz at) {
    if (at < start_ || at >= end_) refill(at);
    return month_;
  }

 private:
  void refill(TimestampTz at);

  pg_tz* tz_;
  DateADT month_;
  TimestampTz start_, end_;  // [start_, end_): month_'s span (infinite months: empty)
};

}  // namespace billing::pg
