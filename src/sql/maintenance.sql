-- Periodic work on pg_cron (README "Maintenance"): billing.maintenance_jobs()
-- lists the jobs, billing.schedule_maintenance() schedules them in pg_cron
-- and billing.unschedule_maintenance() removes them. pg_cron is called
-- through dynamic SQL, so the extension installs and works without it; the
-- two calls then fail with an error that says what to do instead.
-- Relies on ledger_and_merge.sql (merge) and budgets.sql (check_alerts).

-- The merge job's schedule, as maintenance_jobs and schedule_maintenance
-- take it: given and not blank (pg_cron checks the rest when it schedules).
CREATE FUNCTION billing._check_schedule(p_function text, p_schedule text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_schedule IS NULL OR btrim(p_schedule) = '' THEN
        RAISE EXCEPTION '%: merge_schedule must be a cron schedule such as ''* * * * *''', p_function
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN true;
END
$$;

-- The jobs, one row each: name (suffixed with the database's name when
-- scheduled, as pg_cron's job names are per user, not per database),
-- schedule (pg_cron's cron syntax, in GMT) and command.
-- * merge: folds the ledger into the monthly rollups and checks the budget
--   alerts last (billing.merge() runs billing.check_alerts()).
-- * alerts: checks the alerts again on their own, so that a merge that
--   failed, or found nothing to merge, does not hold an alert back.
-- * month-close: on the 1st of each month, a merge and an alert check for
--   the month that just ended (check_alerts looks at the month before too).
-- * statements: the month that just ended is issued (issue_statements), at
--   12:10 GMT on the 1st: then the month has ended in every time zone
--   (UTC-12 to UTC+14: 00:10 on the 1st to 02:10 on the 2nd), so the month
--   before month_of(now()) is it whatever month_time_zone says, and late
--   writes have had hours to land. Only once billing knows customers (a
--   mapping, a profiles column or AWS usage of a customer): issuing a month
--   records it as issued, and months issued with no customer would turn all
--   their usage into adjustments once customers are tracked.
CREATE FUNCTION billing.maintenance_jobs(merge_schedule text DEFAULT '* * * * *')
RETURNS TABLE (job text, schedule text, command text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT j.job, j.schedule, j.command
      FROM (VALUES (1, 'billing-merge', merge_schedule, 'SELECT billing.merge()'),
                   (2, 'billing-alerts', '*/5 * * * *', 'SELECT billing.check_alerts()'),
                   (3, 'billing-month-close', '5 0 1 * *', 'SELECT billing.merge(); SELECT billing.check_alerts()'),
                   (4, 'billing-statements', '10 12 1 * *',
                    'DO $j$ BEGIN IF EXISTS (SELECT FROM billing.customer_sources) OR EXISTS (SELECT FROM billing.profile_customers) '
                    'OR EXISTS (SELECT FROM billing.aws_usage WHERE customer IS NOT NULL) THEN '
                    'PERFORM billing.issue_statements((billing.month_of(now()) - interval ''1 month'')::date); END IF; END $j$'))
           AS j(o, job, schedule, command)
     WHERE billing._check_schedule('billing.maintenance_jobs', merge_schedule)
     ORDER BY j.o
$$;
COMMENT ON FUNCTION billing.maintenance_jobs(text) IS
    'billing''s periodic work as pg_cron jobs (name, schedule in GMT, command): the merge (every minute by default), alert checks every 5 minutes, a merge and alert check on the 1st of each month, and the statements of the month that ended on the 1st at 12:10 GMT.';

-- Where pg_cron can be called from this database: the error (with a hint
-- that says what to do, to schedule the jobs or, p_unschedule, to remove
-- them) when it cannot.
CREATE FUNCTION billing._require_pg_cron(p_unschedule boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
BEGIN
    IF to_regprocedure('cron.schedule(text, text, text)') IS NOT NULL THEN
        RETURN;
    END IF;
    -- (a postgresql.conf line makes cron.database_name a placeholder even
    -- when pg_cron is not loaded; pg_settings lists only real settings)
    IF cron_db IS NULL OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name = 'cron.database_name') THEN
        RAISE EXCEPTION 'billing: pg_cron is not installed, so billing cannot schedule its periodic work'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Install pg_cron (Debian: postgresql-15-cron), add it to shared_preload_libraries, restart '
                         'and CREATE EXTENSION pg_cron; or have the app run SELECT billing.merge(); every minute '
                         '(README "Maintenance").';
    END IF;
    IF cron_db <> current_database() AND p_unschedule THEN
        RAISE EXCEPTION 'billing: pg_cron runs in database "%" (cron.database_name), not in "%"', cron_db, current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Remove the jobs from database ' || quote_ident(cron_db) || ': '
                         || (SELECT string_agg(format('SELECT cron.unschedule(%L);', m.job || ':' || current_database()),
                                               ' ' ORDER BY m.job)
                               FROM billing.maintenance_jobs() AS m);
    ELSIF cron_db <> current_database() THEN
        RAISE EXCEPTION 'billing: pg_cron runs in database "%" (cron.database_name), not in "%"', cron_db, current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Schedule the jobs from database ' || quote_ident(cron_db) || ': '
                         || (SELECT string_agg(format('SELECT cron.schedule_in_database(%L, %L, %L, %L);',
                                                      m.job || ':' || current_database(), m.schedule, m.command,
                                                      current_database()), ' ' ORDER BY m.job)
                               FROM billing.maintenance_jobs() AS m);
    END IF;
    RAISE EXCEPTION 'billing: pg_cron is loaded but its extension is not created in database "%"', cron_db
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'CREATE EXTENSION pg_cron; then call this function again.';
END
$$;

-- Schedules (or reschedules: pg_cron updates a job of the same name) the
-- jobs of billing.maintenance_jobs() in this database, as the calling role.
CREATE FUNCTION billing.schedule_maintenance(merge_schedule text DEFAULT '* * * * *')
RETURNS TABLE (job text, jobid bigint, schedule text, command text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j record;
BEGIN
    PERFORM billing._check_schedule('billing.schedule_maintenance', merge_schedule);
    PERFORM billing._require_pg_cron();
    FOR j IN SELECT * FROM billing.maintenance_jobs(merge_schedule) LOOP
        job := j.job || ':' || current_database();
        schedule := j.schedule;
        command := j.command;
        EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO jobid USING job, j.schedule, j.command;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION billing.schedule_maintenance(text) IS
    'Schedules billing''s periodic work (billing.maintenance_jobs()) in pg_cron for this database, as the calling role; calling it again updates the jobs. Needs pg_cron in this database.';

-- Removes the jobs billing.schedule_maintenance() made for this database;
-- returns how many it removed.
CREATE FUNCTION billing.unschedule_maintenance() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM billing._require_pg_cron(p_unschedule => true);
    EXECUTE 'SELECT count(cron.unschedule(c.jobid))::integer FROM cron.job AS c
              WHERE c.jobname IN (SELECT m.job || '':'' || current_database() FROM billing.maintenance_jobs() AS m)
                AND c.username = current_user'
       INTO removed;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION billing.unschedule_maintenance() IS
    'Removes the pg_cron jobs billing.schedule_maintenance() scheduled for this database (those of the calling role); returns how many.';

REVOKE ALL ON FUNCTION billing.schedule_maintenance(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.unschedule_maintenance() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing._require_pg_cron(boolean) FROM PUBLIC;

-- Whether the periodic work runs: when the last merge() committed, and what
-- waits for the next one. The reads are exact without merges, so nothing
-- else shows that merges stopped (pg_cron down, a database renamed under
-- its jobs), while alerts and statements wait on them. Counts are of the
-- rows the caller may read (the ledger's row-level security).
CREATE VIEW billing.merge_status WITH (security_invoker = true) AS
SELECT l.last_merge_at,
       l.last_merge_rollups,
       (SELECT count(*) FROM billing.usage_ledger) AS unmerged_writes,
       (SELECT count(*) FROM billing.stale_months) AS stale_months,
       (SELECT count(*) FROM billing.tracked_tables WHERE NOT backfilled) AS tables_to_take_in
  FROM billing.merge_lock AS l;
COMMENT ON VIEW billing.merge_status IS
    'When billing.merge() last committed (last_merge_at, the start of its transaction; NULL: never in this database) and what waits for the next merge: ledger rows, stale months, tables to take in.';
