-- billing.settings (database-wide settings that change stored figures:
-- estimate_model, month_time_zone), the months billing groups by
-- (month_of / month_start / month_end in month_time_zone), and the small
-- value guards every read and write uses: _countable (the years billing
-- counts), _sat (bigint figures saturate), _key (long names and ids).
-- Relies on nothing but C functions in src/pg/month.cpp.

CREATE TABLE billing.settings (
    name  text PRIMARY KEY CHECK (name IN ('estimate_model', 'month_time_zone')),
    value text NOT NULL
);
COMMENT ON TABLE billing.settings IS
    'Settings that change stored figures. estimate_model: the model that prices estimated replies that name none. month_time_zone: the time zone of billing''s calendar months (a name from pg_timezone_names; UTC when absent).';
INSERT INTO billing.settings VALUES ('estimate_model', 'gpt-4o-mini');
SELECT pg_catalog.pg_extension_config_dump('billing.settings', '');

-- pg_dump keeps every setting; restoring one replaces the default that
-- CREATE EXTENSION put there (and so does a plain INSERT).
CREATE FUNCTION billing._setting_inserted() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM billing.settings WHERE name = NEW.name;
    RETURN NEW;
END
$$;
CREATE TRIGGER settings_inserted BEFORE INSERT ON billing.settings
    FOR EACH ROW EXECUTE FUNCTION billing._setting_inserted();

-- (a deleted row means the default, as for month_time_zone: a merge that
-- priced its rows with no estimate model at all would lose them)
CREATE FUNCTION billing._estimate_model() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((SELECT value FROM billing.settings WHERE name = 'estimate_model'), 'gpt-4o-mini') $$;

-- STABLE (it reads the setting): each call site reads it once per
-- statement and keeps the zone, so a row costs one time conversion.
-- C body: src/pg/month.cpp (month_of)
CREATE FUNCTION billing.month_of(at timestamptz) RETURNS date
    AS 'MODULE_PATHNAME', 'month_of' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing.month_of(timestamptz) IS
    'The month (its first day) that contains a time, in the month_time_zone setting''s zone.';

-- C body: src/pg/month.cpp (check_time_zone)
CREATE FUNCTION billing._check_time_zone(name text) RETURNS text
    AS 'MODULE_PATHNAME', 'check_time_zone' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing._check_time_zone(text) IS
    'The canonical name of a time zone, or an error when PostgreSQL does not know it.';

-- A bad zone name is refused when it is written, not when a read needs it.
CREATE FUNCTION billing._setting_checked() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.name = 'month_time_zone' THEN
        NEW.value := billing._check_time_zone(NEW.value);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER settings_checked BEFORE INSERT OR UPDATE ON billing.settings
    FOR EACH ROW EXECUTE FUNCTION billing._setting_checked();
INSERT INTO billing.settings VALUES ('month_time_zone', 'UTC');

-- C body: src/pg/month.cpp (month_start)
CREATE FUNCTION billing.month_start(month date) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'month_start' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing.month_start(date) IS
    'When the month that contains a date begins, in the month_time_zone setting''s zone.';

-- C body: src/pg/month.cpp (month_end)
CREATE FUNCTION billing.month_end(month date) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'month_end' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing.month_end(date) IS
    'When the month after the one that contains a date begins: a month is [month_start, month_end).';

-- C body: src/pg/month.cpp (month_zone_text)
CREATE FUNCTION billing._month_zone_text(at timestamptz) RETURNS text
    AS 'MODULE_PATHNAME', 'month_zone_text' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing._month_zone_text(timestamptz) IS
    'A time as JSON shows it, in the month_time_zone setting''s zone with its offset, whatever the session''s TimeZone.';

-- A date created_at as billing reads it: midnight UTC, and +infinity (a
-- time counted in no month) past the last timestamp, the year 294276, where
-- PostgreSQL's own date-to-timestamp conversion raises. C body:
-- src/pg/month.cpp (date_time)
CREATE FUNCTION billing._date_time(d date) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'date_time' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The times billing counts in a month: the years 1 to 9999 (UTC). Rows
-- outside it (and NULL or infinite times) are listed as problems. Inlinable.
CREATE FUNCTION billing._countable(at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT at OPERATOR(pg_catalog.>=) '0001-01-01 00:00:00+00'::pg_catalog.timestamptz
       AND at OPERATOR(pg_catalog.<) '10000-01-01 00:00:00+00'::pg_catalog.timestamptz
$$;
COMMENT ON FUNCTION billing._countable(timestamptz) IS
    'Is a message time counted in a month (the years 1 to 9999, UTC)?';

-- What usage_problems says of a message: its data problem (NULL: none), and
-- a time counted in no month. The backfill, the table reads of
-- usage_problems and the trigger bodies write it so. Inlinable.
CREATE FUNCTION billing._row_problem(problem text, at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN coalesce(billing._countable(at), false) THEN problem
                ELSE coalesce(problem OPERATOR(pg_catalog.||) '; ', '')
                     OPERATOR(pg_catalog.||) 'created_at is NULL, infinite or outside the years 1 to 9999: not counted in any month'
           END
$$;
COMMENT ON FUNCTION billing._row_problem(text, timestamptz) IS
    'The problem text of a message: its data problem and a time counted in no month; NULL when it has none.';

-- A token figure as bigint, saturated at its limits: the rollups keep exact
-- numeric totals; only a sum beyond 9.2e18 tokens (hostile data) is capped.
CREATE FUNCTION billing._sat(n numeric) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN n OPERATOR(pg_catalog.>) 9223372036854775807::pg_catalog.numeric THEN 9223372036854775807
                WHEN n OPERATOR(pg_catalog.<) (-9223372036854775807)::pg_catalog.numeric THEN -9223372036854775807
                ELSE n::pg_catalog.int8 END
$$;
COMMENT ON FUNCTION billing._sat(numeric) IS 'A numeric token total as bigint, capped at +/-9223372036854775807.';

-- The key billing groups and indexes a model name or an id by: itself up to
-- 200 bytes; a longer one is cut and ends with its md5, so that no value an
-- app writes can exceed an index row.
CREATE FUNCTION billing._key(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN pg_catalog.octet_length(value) OPERATOR(pg_catalog.<=) 200 THEN value
                ELSE pg_catalog.left(value, 32) OPERATOR(pg_catalog.||) '... (md5 '
                     OPERATOR(pg_catalog.||) pg_catalog.md5(value) OPERATOR(pg_catalog.||) ')' END
$$;
COMMENT ON FUNCTION billing._key(text) IS
    'A model name or id as billing stores it: unchanged up to 200 bytes, else its first 32 characters and its md5 (at most 173 bytes, so keying a key changes nothing).';
