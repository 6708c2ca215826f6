-- billing tells the user what happened: what tracking took in, what it
-- cannot price, what it refuses, and which grant a role lacks.
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- With no table tracked the dashboard says so.
SELECT count(*) AS tracked_tables FROM billing.tracked_tables;
SELECT (billing.dashboard('2026-11-01', '2026-12-01') -> 'openai' ->> 'cost')::numeric AS openai_cost;

-- A period must be finite and within the years billing counts: a read can
-- never run a month series to infinity.
SELECT billing.dashboard('2026-11-01', 'infinity', 0, 1);
SELECT billing.dashboard('-infinity'::timestamptz, '2026-12-01'::timestamptz);
SELECT billing.dashboard('2026-11-01', '12000-01-01');
SELECT billing.dashboard(1201, 0);
-- NULL for any of them is refused too: an app passing an unset query
-- parameter got a page of zeros (months), every conversation
-- (top_conversations), or a message about the period's ends (at).
SELECT billing.dashboard(NULL::integer, 50);
SELECT billing.dashboard(6, NULL);
SELECT billing.dashboard(6, 50, NULL::timestamptz);
SELECT billing.dashboard(NULL::timestamptz, '2026-12-01'::timestamptz);
SELECT billing.dashboard(customer => 'u1', at => NULL);
SELECT billing.dashboard(customer => 'u1', months => NULL);
-- ('' names no customer)
SELECT billing.dashboard(customer => '');
SELECT billing.dashboard(customer => '   ');
SELECT billing.dashboard(6, 50, 'infinity');
-- A history that reaches before the year 1 says so: December 1 BC, then
-- January of the year 1.
SELECT billing.dashboard(2, 0, '0001-01-15') -> 'history' -> 0 ->> 'month' AS first,
       billing.dashboard(2, 0, '0001-01-15') -> 'history' -> 1 ->> 'month' AS second;
-- The same for the other reads of a range: NULL or reversed bounds, and a
-- blank customer, returned no rows, as if there were no usage.
SELECT count(*) FROM billing.history(NULL, '2026-12-01');
SELECT count(*) FROM billing.history('2026-12-01', '2026-11-01');
SELECT count(*) FROM billing.savings('2026-11-01', NULL);
SELECT count(*) FROM billing.costs(NULL, '2026-12-01');
SELECT count(*) FROM billing.costs('2026-11-01', '2026-12-01', 'month', '');
SELECT count(*) FROM billing.export_costs('2026-11-01', '2026-12-01', 'month', '  ');
SELECT billing.record_customer_usage('   ', 'ses', 1);
-- (an empty range is not reversed: no rows)
SELECT count(*) FROM billing.history('2026-12-01', '2026-12-01');
-- Arguments of the writing functions, refused with what is wrong: no
-- table, NULL for backfill, one column named twice (PostgreSQL's bare
-- "specified more than once" before), a time outside the years 1 to 9999
-- (recorded before, in a month with no end), an alert id that names no
-- alert, a NULL worker.
CREATE TABLE feedback_twice (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
SELECT * FROM billing.track_messages(NULL);
SELECT * FROM billing.track_messages(0);
SELECT * FROM billing.track_messages('feedback_twice', backfill => NULL);
SELECT * FROM billing.track_messages('feedback_twice', role_column => 'content');
DROP TABLE feedback_twice;
SELECT billing.record_usage('ses', 1, '10000-03-01');
SELECT billing.record_usage('ses', 1, '0002-03-01 BC');
SELECT billing.alert_failed(-1, 'w', 'error', '1 minute');
SELECT billing.alert_delivered(-1, NULL);
-- The jobs listed for a schedule given as NULL or blank: refused, as
-- schedule_maintenance refuses it (a job with no schedule was listed).
SELECT count(*) FROM billing.maintenance_jobs(NULL);
SELECT count(*) FROM billing.maintenance_jobs(' ');
SELECT job, schedule FROM billing.maintenance_jobs('*/2 * * * *') WHERE job = 'billing-merge';

-- Usage of a service the catalog does not price follows
-- billing.unknown_service when it is recorded: kept with a warning (and
-- shown unpriced), refused with error, silent with ignore.
SELECT billing.record_usage('sqs', 5, '2026-11-02') > 0 AS recorded;
SET billing.unknown_service = error;
SELECT billing.record_usage('sqs', 5, '2026-11-02') > 0 AS recorded;
SET billing.unknown_service = ignore;
SELECT billing.record_usage('sqs', 5, '2026-11-02') > 0 AS recorded;
RESET billing.unknown_service;
-- ses is priced: no warning. 3 e-mails at $0.10 per 1,000 = $0.0003.
SELECT billing.record_usage('ses', 3, '2026-11-02') > 0 AS recorded;
SELECT service, quantity, cost, unpriced_quantity FROM billing._aws_usage_by_service('2026-11-01', '2026-12-01') ORDER BY service;
DELETE FROM billing.aws_usage;

-- AWS usage without a service name is called that (not "a model name").
SELECT billing.aws_cost(s, 1) AS cost FROM (VALUES (NULL::text)) AS v(s);

-- Tracking a profiles table twice says so.
CREATE TABLE feedback_profiles (id int PRIMARY KEY, data jsonb);
SELECT * FROM billing.track_profiles('feedback_profiles');
SELECT * FROM billing.track_profiles('feedback_profiles');
SELECT billing.untrack_profiles('feedback_profiles');

-- A role without billing's grants is told which grant it lacks.
CREATE ROLE feedback_reader;
GRANT USAGE ON SCHEMA billing TO feedback_reader;
SET ROLE feedback_reader;
SELECT billing.dashboard();
SELECT * FROM billing.monthly_history;
RESET ROLE;
GRANT SELECT ON billing.monthly_history TO feedback_reader;
SET ROLE feedback_reader;
SELECT * FROM billing.monthly_history;
RESET ROLE;
REVOKE SELECT ON billing.monthly_history FROM feedback_reader;
REVOKE USAGE ON SCHEMA billing FROM feedback_reader;
DROP ROLE feedback_reader;
DROP TABLE feedback_profiles;
