-- AWS usage: recorded usage, the app's e-mail counter, and actual figures
-- that replace the estimate of their month.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

-- 3 + 22 e-mails in November = 25 x $0.10/1000 = 0.0025; 2M Lambda requests
-- = 2 x $0.20 = 0.40; 10 GB-months of S3 = 0.23. November: 0.6325.
SELECT billing.record_usage('ses', 3, '2026-11-02') > 0 AS recorded;
SELECT billing.record_usage('SES ', 22, '2026-11-20') > 0 AS recorded;
SELECT billing.record_usage('lambda', 2000000, '2026-11-05') > 0 AS recorded;
SELECT billing.record_usage('s3', 10, '2026-11-01', 'GB-months of November') > 0 AS recorded;
-- October: 100 e-mails = 0.01
SELECT billing.record_usage('ses', 100, '2026-10-15') > 0 AS recorded;
SELECT jsonb_pretty(billing.dashboard(2, 0, '2026-11-15') -> 'aws');
SELECT month, source, cost, basis, emails FROM billing.monthly_history ORDER BY month, source;

-- Bad input to record_usage is refused with a clear error.
SELECT billing.record_usage('ses', -1);
SELECT billing.record_usage('ses', NULL);
SELECT billing.record_usage('ses', 0.0000001);
SELECT billing.record_usage('', 1);
SELECT billing.record_usage('ses', 1, 'infinity');
-- An unknown service is kept, shown unpriced, and listed as a problem.
SELECT billing.record_usage('sqs', 5, '2026-11-03') > 0 AS recorded;
SELECT kind, detail FROM billing.usage_problems;

-- Actual figures for a month and service replace the estimate: SES in
-- November cost 0.05 according to the AWS bill.
INSERT INTO billing.aws_actuals (month, service, cost, note) VALUES ('2026-11-01', 'ses', 0.05, 'Cost Explorer');
-- Spelled as record_usage records it, or refused: 'SES' beside the recorded
-- 'ses' would replace no estimate, and both would be counted.
-- (terse: the failing row's DETAIL shows loaded_at, the time of the test)
\set VERBOSITY terse
INSERT INTO billing.aws_actuals (month, service, cost) VALUES ('2026-11-01', 'SES', 0.05);
INSERT INTO billing.aws_actuals (month, service, cost) VALUES ('2026-11-01', ' s3', 0.05);
\set VERBOSITY default
SELECT jsonb_pretty(billing.dashboard(1, 0, '2026-11-15') -> 'aws' -> 'breakdown' -> 'ses');
-- 0.05 + 0.40 + 0.23 = 0.68, partly actual
SELECT (billing.dashboard(1, 0, '2026-11-15') -> 'aws' ->> 'cost')::numeric = 0.68 AS ok,
       billing.dashboard(1, 0, '2026-11-15') -> 'aws' ->> 'source' AS source;
-- The unpriced service: a null cost (no price is not zero cost) and its
-- unpriced quantity, in the dashboard and in monthly_history alike.
SELECT billing.dashboard(1, 0, '2026-11-15') -> 'aws' -> 'breakdown' -> 'sqs' AS sqs;
SELECT services -> 'sqs' AS sqs FROM billing.monthly_history WHERE source = 'aws' AND month = '2026-11-01';

-- The app's counter: increases are e-mails, the monthly reset is ignored.
CREATE TABLE profiles (id int PRIMARY KEY, type text, data jsonb);
INSERT INTO profiles VALUES (1, 'owner', '{"emails_sent_this_month": 7}');
-- Refused before anything is done: a blank service (the app's next counter
-- increase then failed on aws_usage's check), a blank or NULL counter, no
-- table; untracking a table not tracked.
SELECT * FROM billing.track_profiles('profiles', service => '  ');
SELECT * FROM billing.track_profiles('profiles', counter => ' ');
SELECT * FROM billing.track_profiles('profiles', counter => NULL);
SELECT * FROM billing.track_profiles(NULL);
SELECT billing.untrack_profiles('profiles');
SELECT billing.untrack_profiles(0);
-- A service spelled otherwise is recorded as record_usage records it.
BEGIN;
SELECT tracked FROM billing.track_profiles('profiles', service => ' SES ');
SELECT service FROM billing.tracked_profiles;
ROLLBACK;
SELECT * FROM billing.track_profiles('profiles');
UPDATE profiles SET data = '{"emails_sent_this_month": 8}';
UPDATE profiles SET data = '{"emails_sent_this_month": 10}';
UPDATE profiles SET data = '{"emails_sent_this_month": 0, "last_billing_reset": "now"}';
UPDATE profiles SET data = '{"emails_sent_this_month": 1}';
UPDATE profiles SET data = '{"emails_sent_this_month": "many"}';
-- A counter that held no count (a string, a negative or fractional number)
-- gives no baseline: its next change records nothing. An absent one counts
-- from 0.
UPDATE profiles SET data = '{"emails_sent_this_month": 2}';       -- from "many": nothing
UPDATE profiles SET data = '{"emails_sent_this_month": -1000}';   -- a decrease
UPDATE profiles SET data = '{"emails_sent_this_month": 0}';       -- from -1000: nothing
UPDATE profiles SET data = '{"emails_sent_this_month": 2.5}';     -- not whole: nothing
UPDATE profiles SET data = '{"emails_sent_this_month": 3}';       -- from 2.5: nothing
UPDATE profiles SET data = '{"emails_sent_this_month": 4}';       -- + 1
UPDATE profiles SET data = '{"other": true}';                     -- the counter gone
UPDATE profiles SET data = '{"emails_sent_this_month": 2}';       -- from absent: + 2
-- 7 at the start + 1 + 2 + 1, then + 1 + 2 = 14 e-mails recorded, in 6 rows
SELECT sum(quantity) AS emails, count(*) AS rows FROM billing.aws_usage WHERE origin = 'track_profiles';
-- (each untrack and track again in one transaction, so that both fall in
-- one month at any date the suite runs)
BEGIN;
SELECT billing.untrack_profiles('profiles');
UPDATE profiles SET data = '{"emails_sent_this_month": 50}';
SELECT sum(quantity) AS emails_after_untrack FROM billing.aws_usage WHERE origin = 'track_profiles';
-- Tracked again in the month it was untracked: only what the counters rose
-- by since is recorded (50 now, 2 when untracked: 48), not all 50 again.
-- The same after a column swap, which the untrack/track of its hint ends:
-- the counters copied into the new column (50) were counted already.
SELECT * FROM billing.track_profiles('profiles');
COMMIT;
ALTER TABLE profiles ADD COLUMN data2 jsonb;
UPDATE profiles SET data2 = data;
ALTER TABLE profiles RENAME COLUMN data TO data_old;
ALTER TABLE profiles RENAME COLUMN data2 TO data;
UPDATE profiles SET data = '{"emails_sent_this_month": 53}';        -- the app writes the new column: + 3 unseen
BEGIN;
SELECT billing.untrack_profiles('profiles');                          -- the old column held 50
SELECT * FROM billing.track_profiles('profiles');                     -- 53 - 50 = 3
COMMIT;
UPDATE profiles SET data = '{"emails_sent_this_month": 54}';        -- + 1
-- 14 + 48 + 3 + 1 = 66 e-mails: the counter's 50 + 4 since, and the 12 of
-- before the reset
SELECT sum(quantity) AS emails, count(*) FILTER (WHERE note = 'counter increase while not tracked') AS rises_while_untracked
  FROM billing.aws_usage WHERE origin = 'track_profiles';
-- Untracked in an earlier month (the counters were reset since): all they
-- hold is recorded, as at a first tracking.
SELECT billing.untrack_profiles('profiles');
UPDATE billing.untracked_profiles SET untracked_at = untracked_at - interval '40 days' WHERE relation = 'profiles'::regclass;
SELECT * FROM billing.track_profiles('profiles');                     -- 54
SELECT count(*) AS untracked_left FROM billing.untracked_profiles;
-- Tracked again with another counter (or service): its sum is
-- not the one kept, so all the new counter holds is recorded (5 SMS).
BEGIN;
SELECT billing.untrack_profiles('profiles');
UPDATE profiles SET data = data || '{"sms_sent_this_month": 5}';
SELECT * FROM billing.track_profiles('profiles', counter => 'sms_sent_this_month', service => 'sns');
COMMIT;
SELECT billing.untrack_profiles('profiles');

-- Leave no usage behind for the other tests.
DELETE FROM billing.aws_usage;
DELETE FROM billing.aws_actuals;
DROP TABLE profiles;

-- The type of a tracked profiles table's data column changed (Rails'
-- change_column emits it even to jsonb again; PostgreSQL refuses it for a
-- column a trigger's UPDATE OF list names): billing's trigger is made again
-- in the mode it had, and e-mails are still recorded. Another type than
-- jsonb is refused, with the ALTER.
CREATE TABLE typed_profiles (id bigint PRIMARY KEY, data jsonb);
INSERT INTO typed_profiles VALUES (1, '{"emails_sent_this_month": 1}');
SELECT * FROM billing.track_profiles('typed_profiles');
ALTER TABLE typed_profiles ENABLE ALWAYS TRIGGER billing_track_profiles;
ALTER TABLE typed_profiles ALTER COLUMN data TYPE jsonb, ALTER COLUMN data SET DEFAULT '{}';
SELECT tgname, tgenabled, tgattr FROM pg_trigger WHERE tgrelid = 'typed_profiles'::regclass AND NOT tgisinternal;
UPDATE typed_profiles SET data = '{"emails_sent_this_month": 4}';         -- + 3
ALTER TABLE typed_profiles ALTER COLUMN data TYPE json;
SELECT format_type(atttypid, atttypmod) AS data_type FROM pg_attribute
 WHERE attrelid = 'typed_profiles'::regclass AND attname = 'data';
UPDATE typed_profiles SET data = '{"emails_sent_this_month": 6}';         -- + 2
-- 1 when tracked + 3 + 2 = 6 e-mails
SELECT sum(quantity) AS emails FROM billing.aws_usage WHERE origin = 'track_profiles';
SELECT count(*) AS lifted_left FROM billing.lifted_triggers;
SELECT billing.untrack_profiles('typed_profiles');
DELETE FROM billing.aws_usage;
DROP TABLE typed_profiles;
-- A partitioned profiles table whose partitions' triggers fire in modes of
-- their own (one replicated by a subscriber: ENABLE ALWAYS; one DISABLEd):
-- each keeps its mode through the type change, and the replicated
-- increase is recorded: 2 + 3 when tracked, + 4 replicated = 9 e-mails.
CREATE TABLE parted_profiles (id bigint, region text, data jsonb, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE parted_profiles_us PARTITION OF parted_profiles FOR VALUES IN ('us');
CREATE TABLE parted_profiles_eu PARTITION OF parted_profiles FOR VALUES IN ('eu');
INSERT INTO parted_profiles VALUES (1, 'us', '{"emails_sent_this_month": 2}'), (2, 'eu', '{"emails_sent_this_month": 3}');
SELECT * FROM billing.track_profiles('parted_profiles');
ALTER TABLE parted_profiles_us ENABLE ALWAYS TRIGGER billing_track_profiles;
ALTER TABLE parted_profiles_eu DISABLE TRIGGER billing_track_profiles;
ALTER TABLE parted_profiles ALTER COLUMN data TYPE jsonb;
SELECT tgrelid::regclass AS relation, tgenabled FROM pg_trigger WHERE tgname = 'billing_track_profiles' ORDER BY 1;
SET session_replication_role = replica;
UPDATE parted_profiles SET data = '{"emails_sent_this_month": 6}' WHERE id = 1;
RESET session_replication_role;
SELECT sum(quantity) AS emails FROM billing.aws_usage WHERE origin = 'track_profiles';
SELECT count(*) AS lifted_left FROM billing.lifted_triggers;
SELECT billing.untrack_profiles('parted_profiles');
DELETE FROM billing.aws_usage;
DROP TABLE parted_profiles;

-- Tracked again in the month it was untracked, profile by profile (by the
-- table's primary key): a profile deleted, or a counter reset, while the
-- table was not tracked hides no one else's e-mails. Profiles 1 (10), 2
-- (20), 3 (30) when untracked; meanwhile 1 rises to 15 (+5), 2 is deleted,
-- 3 is reset and sends 4 (+4), 4 is new with 6 (+6): 15 recorded, though
-- the counters' sum fell from 60 to 25. Without a primary key, by the sum:
-- nothing. (Each in one transaction: one month at any date.)
CREATE TABLE kept_profiles (id int PRIMARY KEY, data jsonb);
CREATE TABLE summed_profiles (id int, data jsonb);
CREATE FUNCTION untracked_meanwhile(t regclass) RETURNS TABLE (tracked_first numeric, tracked_again numeric)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($q$INSERT INTO %s VALUES (1, '{"emails_sent_this_month": 10}'), (2, '{"emails_sent_this_month": 20}'),
                                           (3, '{"emails_sent_this_month": 30}')$q$, t);
    tracked_first := (billing.track_profiles(t)).recorded;
    PERFORM billing.untrack_profiles(t);
    EXECUTE format($q$UPDATE %s SET data = '{"emails_sent_this_month": 15}' WHERE id = 1$q$, t);
    EXECUTE format('DELETE FROM %s WHERE id = 2', t);
    EXECUTE format($q$UPDATE %s SET data = '{"emails_sent_this_month": 4}' WHERE id = 3$q$, t);
    EXECUTE format($q$INSERT INTO %s VALUES (4, '{"emails_sent_this_month": 6}')$q$, t);
    tracked_again := (billing.track_profiles(t)).recorded;
    PERFORM billing.untrack_profiles(t);
    RETURN NEXT;
END
$$;
SELECT * FROM untracked_meanwhile('kept_profiles');
SELECT * FROM untracked_meanwhile('summed_profiles');
DELETE FROM billing.aws_usage;
DELETE FROM billing.untracked_profiles;
DROP FUNCTION untracked_meanwhile(regclass);
DROP TABLE kept_profiles, summed_profiles;
