// SQL: billing.month_of(at), billing.month_start(month), billing.month_end(month),
// billing._month_zone_text(at) and billing._check_time_zone(name): the
// calendar months billing groups by,
// in the time zone of the month_time_zone setting (billing.settings, UTC by
// default).
//
// Each call site reads the setting once (the first row it sees, in the
// query's snapshot) and keeps the resolved zone in fn_extra, so the per-row
// cost is a time conversion, with no lookup of the zone. The setting cannot
// change under a running statement: a change marks every month stale
// (billing._settings_changed), and the next billing.merge() rebuilds them.
#include "month.h"
#include "postgres_headers.h"

extern "C" {
#include "pgtime.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/json.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(month_of);
PG_FUNCTION_INFO_V1(month_start);
PG_FUNCTION_INFO_V1(month_end);
PG_FUNCTION_INFO_V1(check_time_zone);
PG_FUNCTION_INFO_V1(month_zone_text);
PG_FUNCTION_INFO_V1(date_time);
}

namespace {

// Every operator qualified: this runs with the caller's search_path, where a
// role may have put an "=" of its own before pg_catalog.
constexpr const char* kZoneQuery =
    "SELECT value FROM billing.settings WHERE name OPERATOR(pg_catalog.=) 'month_time_zone'::pg_catalog.text";
constexpr const char* kDefaultZone = "UTC";

SPIPlanPtr zone_plan = nullptr;  // kept for the backend's life

// A zone name as PostgreSQL's tz database knows it, or an error that says
// where the bad name came from.
pg_tz* resolve_zone(const char* name, const char* origin) {
  pg_tz* tz = pg_tzset(name);
  if (tz == nullptr)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("billing: \"%s\" is not a time zone%s", name, origin),
                    errhint("Use a name from pg_timezone_names, such as UTC or Europe/Paris.")));
  return tz;
}

pg_tz* read_month_zone() {
  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "billing: SPI_connect failed");
  if (zone_plan == nullptr) {
    SPIPlanPtr plan = SPI_prepare(kZoneQuery, 0, nullptr);
    if (plan == nullptr) elog(ERROR, "billing: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
    SPI_keepplan(plan);
    zone_plan = plan;
  }
  if (SPI_execute_plan(zone_plan, nullptr, nullptr, true, 1) != SPI_OK_SELECT)
    elog(ERROR, "billing: cannot read billing.settings");
  // No row: the default. The name is copied out of SPI's memory by pg_tzset.
  const char* name = kDefaultZone;
  if (SPI_processed == 1) {
    char* value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
    if (value != nullptr) name = value;
  }
  pg_tz* tz = resolve_zone(name, " (billing.settings month_time_zone)");
  SPI_finish();
  return tz;
}

// The zone of this call site, read on its first call. pg_tzset's zones live
// as long as the backend, so the pointer may be kept.
pg_tz* month_zone(FunctionCallInfo fcinfo) {
  auto* cached = static_cast<pg_tz**>(fcinfo->flinfo->fn_extra);
  if (cached == nullptr) {
    pg_tz* tz = read_month_zone();
    cached = static_cast<pg_tz**>(MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(pg_tz*)));
    *cached = tz;
    fcinfo->flinfo->fn_extra = cached;
  }
  return *cached;
}

// The first instant of the month that contains date d, in zone tz.
TimestampTz start_of_month(DateADT d, int month_offset, pg_tz* tz) {
  int year, month, day;
  j2date(d + POSTGRES_EPOCH_JDATE, &year, &month, &day);
  month += month_offset;
  year += (month - 1) / 12;
  month = (month - 1) % 12 + 1;
  struct pg_tm tm = {};
  tm.tm_year = year;
  tm.tm_mon = month;
  tm.tm_mday = 1;
  int offset = DetermineTimeZoneOffset(&tm, tz);
  TimestampTz result;
  if (tm2timestamp(&tm, 0, &offset, &result) != 0 || !IS_VALID_TIMESTAMP(result))
    ereport(ERROR, (errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE), errmsg("billing: month out of range")));
  return result;
}

TimestampTz month_bound(FunctionCallInfo fcinfo, int month_offset) {
  const DateADT d = PG_GETARG_DATEADT(0);
  if (DATE_IS_NOBEGIN(d)) return DT_NOBEGIN;
  if (DATE_IS_NOEND(d)) return DT_NOEND;
  return start_of_month(d, month_offset, month_zone(fcinfo));
}

}  // namespace

// month_of(at timestamptz) -> date: the first day of the month that contains
// `at` in the month time zone; -infinity / infinity stay infinite.
namespace billing::pg {

pg_tz* month_time_zone() { return read_month_zone(); }

DateADT month_containing(TimestampTz at, pg_tz* tz) {
  if (TIMESTAMP_IS_NOBEGIN(at)) { DateADT d; DATE_NOBEGIN(d); return d; }
  if (TIMESTAMP_IS_NOEND(at)) { DateADT d; DATE_NOEND(d); return d; }
  struct pg_tm tm;
  fsec_t fsec;
  int offset;
  if (timestamp2tm(at, &offset, &tm, &fsec, nullptr, tz) != 0)
    ereport(ERROR, (errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE), errmsg("billing: timestamp out of range")));
  return date2j(tm.tm_year, tm.tm_mon, 1) - POSTGRES_EPOCH_JDATE;
}

TimestampTz month_begins(DateADT month, int month_offset, pg_tz* tz) {
  if (DATE_IS_NOBEGIN(month)) return DT_NOBEGIN;
  if (DATE_IS_NOEND(month)) return DT_NOEND;
  return start_of_month(month, month_offset, tz);
}

void MonthCache::refill(TimestampTz at) {
  month_ = month_containing(at, tz_);
  start_ = month_begins(month_, 0, tz_);
  end_ = month_begins(month_, 1, tz_);
}

}  // namespace billing::pg

extern "C" Datum month_of(PG_FUNCTION_ARGS) {
  PG_RETURN_DATEADT(billing::pg::month_containing(PG_GETARG_TIMESTAMPTZ(0), month_zone(fcinfo)));
}

// month_start(month date) -> timestamptz: when the month that contains the
// date begins, in the month time zone.
extern "C" Datum month_start(PG_FUNCTION_ARGS) { PG_RETURN_TIMESTAMPTZ(month_bound(fcinfo, 0)); }

// month_end(month date) -> timestamptz: when the next month begins (the
// month is [month_start, month_end)).
extern "C" Datum month_end(PG_FUNCTION_ARGS) { PG_RETURN_TIMESTAMPTZ(month_bound(fcinfo, 1)); }

// _check_time_zone(name text) -> text: the zone's canonical name, or an error.
extern "C" Datum check_time_zone(PG_FUNCTION_ARGS) {
  char* name = text_to_cstring(PG_GETARG_TEXT_PP(0));
  pg_tz* tz = resolve_zone(name, "");
  PG_RETURN_TEXT_P(cstring_to_text(pg_get_timezone_name(tz)));
}

// _month_zone_text(at timestamptz) -> text: the time as JSON shows a
// timestamptz, but in the month time zone, with its offset, whatever the
// session's TimeZone: a month's bounds read as its first days
// ("2026-12-01T00:00:00+00:00", not "2026-11-30T13:00:00-11:00").
extern "C" Datum month_zone_text(PG_FUNCTION_ARGS) {
  const TimestampTz at = PG_GETARG_TIMESTAMPTZ(0);
  char buf[MAXDATELEN + 1];
  if (TIMESTAMP_NOT_FINITE(at)) {
    JsonEncodeDateTime(buf, TimestampTzGetDatum(at), TIMESTAMPTZOID, nullptr);
  } else {
    pg_tm tm;
    fsec_t fsec;
    int offset = 0;  // seconds west of UTC, as PostgreSQL counts it
    if (timestamp2tm(at, &offset, &tm, &fsec, nullptr, month_zone(fcinfo)) != 0)
      ereport(ERROR, (errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE), errmsg("timestamp out of range")));
    JsonEncodeDateTime(buf, TimestampTzGetDatum(at), TIMESTAMPTZOID, &offset);
  }
  PG_RETURN_TEXT_P(cstring_to_text(buf));
}

// _date_time(date) -> timestamptz: a date created_at as billing reads it
// (billing::pg::date_as_time): midnight UTC, +infinity past the last
// timestamp.
extern "C" Datum date_time(PG_FUNCTION_ARGS) {
  PG_RETURN_TIMESTAMPTZ(billing::pg::date_as_time(PG_GETARG_DATEADT(0)));
}
