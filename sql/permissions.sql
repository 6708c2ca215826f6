-- Who may do what: an app role writes messages without any privilege on
-- billing; a dashboard role reads costs but cannot change prices; a role that
-- may not read the messages table sees none of its costs through billing.
SET timezone = 'UTC';
\set SHOW_CONTEXT never
CREATE TABLE perm_messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text,
                            data jsonb, created_at timestamptz DEFAULT now());
SELECT tracked, backfilled, messages, problems, unpriced_models FROM billing.track_messages('perm_messages');

CREATE ROLE regress_billing_app;
CREATE ROLE regress_billing_viewer;
CREATE ROLE regress_billing_outsider;
-- The app: its own table, and recording usage.
GRANT SELECT, INSERT, UPDATE, DELETE ON perm_messages TO regress_billing_app;
GRANT USAGE ON SEQUENCE perm_messages_id_seq TO regress_billing_app;
GRANT USAGE ON SCHEMA billing TO regress_billing_app;
GRANT EXECUTE ON FUNCTION billing.record_usage(text, numeric, timestamptz, text) TO regress_billing_app;
-- The dashboard (README "Permissions"): billing's tables read-only, and the messages.
GRANT USAGE ON SCHEMA billing TO regress_billing_viewer, regress_billing_outsider;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO regress_billing_viewer, regress_billing_outsider;
GRANT SELECT ON perm_messages TO regress_billing_viewer;

SET ROLE regress_billing_app;
-- 1000 x 2.5/1M + 100 x 10/1M = 0.0035
INSERT INTO perm_messages (conversation_id, role, content, data, created_at) VALUES
  ('p1', 'assistant', 'hi', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 100}', '2026-11-02'),
  ('p1', 'assistant', 'no usage here', '{}', '2026-11-02 00:01'),
  ('p1', 'assistant', 'bad', '{"prompt_tokens": "x"}', '2026-11-02 00:02');
UPDATE perm_messages SET created_at = '2026-11-03' WHERE content = 'hi';
DELETE FROM perm_messages WHERE content = 'bad';
SELECT billing.record_usage('ses', 5, '2026-11-03') > 0 AS recorded;
-- ...but cannot read or change billing's tables.
SELECT count(*) FROM billing.usage_ledger;
INSERT INTO billing.aws_usage (service, quantity, at) VALUES ('ses', 1000000, now());
RESET ROLE;

SET ROLE regress_billing_viewer;
-- 0.0035 + the estimated reply: 13 chars = 4 completion tokens, prompt 'hi' =
-- 1 token, as gpt-4o-mini: 1 x 0.15/1M + 4 x 0.6/1M = 0.00000255 -> 0.00350255
SELECT conversation_id, cost, messages FROM billing.conversation_costs;
SELECT (billing.dashboard(1, 5, '2026-11-15') -> 'openai' ->> 'cost')::numeric = 0.00350255 AS viewer_sees_costs;
UPDATE billing.model_prices SET input_per_1m = 0 WHERE model = 'gpt-4o';
SELECT billing.merge();
-- The writes waiting for a merge, of the tables the viewer may read: 3
-- inserts, the UPDATE's taking back and counting again, the DELETE's taking
-- back = 6 ledger rows.
SELECT unmerged_writes FROM billing.merge_status;
RESET ROLE;

SET ROLE regress_billing_outsider;
SELECT count(*) AS conversations FROM billing.conversation_costs;
SELECT count(*) AS rollup_rows FROM billing.conversation_usage;
SELECT unmerged_writes FROM billing.merge_status;
SELECT billing.dashboard(1, 5, '2026-11-15') -> 'openai' ->> 'cost' AS outsider_cost;
-- Stale months would be read from the table itself: still nothing, no error.
RESET ROLE;
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('perm-model', '2026-10-01', 1, 1);
SET ROLE regress_billing_outsider;
SELECT billing.dashboard(1, 5, '2026-11-15') -> 'openai' ->> 'cost' AS outsider_cost_stale;
RESET ROLE;

-- A table with row-level security of its own (one tenant's rows per
-- reader): billing's rollups sum every tenant's rows, so a reader subject
-- to the policy reads none of the table's costs, before a merge (from the
-- table) and after (from the rollups) alike, and no other tenant's
-- conversation. A reader the policy does not apply to (here a superuser)
-- sees them all: 100 + 50 tokens of gpt-4o = $0.00075 for tenant A,
-- 1M prompt tokens = $2.50 for tenant B.
CREATE TABLE perm_tenants (id int PRIMARY KEY, tenant text, conversation_id text, role text, content text,
                           data jsonb, created_at timestamptz);
ALTER TABLE perm_tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY by_tenant ON perm_tenants USING (tenant = current_setting('app.tenant', true));
INSERT INTO perm_tenants VALUES
  (1, 'A', 'ta', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-04'),
  (2, 'B', 'tb', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}', '2026-11-04');
SELECT tracked FROM billing.track_messages('perm_tenants', backfill => false);
GRANT SELECT ON perm_tenants TO regress_billing_viewer;
SET ROLE regress_billing_viewer;
SET app.tenant = 'A';
SELECT count(*) AS tenant_rows FROM perm_tenants;
SELECT conversation_id, cost FROM billing.conversation_costs WHERE conversation_id IN ('ta', 'tb') ORDER BY 1;
RESET ROLE;
SELECT billing.merge() IS NOT NULL AS merged;
SET ROLE regress_billing_viewer;
SELECT conversation_id, cost FROM billing.conversation_costs WHERE conversation_id IN ('ta', 'tb') ORDER BY 1;
SELECT count(*) AS rollup_rows FROM billing.conversation_usage WHERE conversation_id IN ('ta', 'tb');
RESET ROLE;
RESET app.tenant;
SELECT conversation_id, cost FROM billing.conversation_costs WHERE conversation_id IN ('ta', 'tb') ORDER BY 1;
SELECT billing.untrack_messages('perm_tenants');
DROP TABLE perm_tenants;

SELECT billing.untrack_messages('perm_messages');
DELETE FROM billing.model_prices WHERE model = 'perm-model';

-- The app's role owns a partitioned tracked table and runs its own
-- migrations: it creates and attaches partitions. PostgreSQL copies billing's
-- row trigger onto each and checks EXECUTE on its function, which billing
-- grants the table's owner, and no one else.
CREATE ROLE regress_billing_owner;
CREATE ROLE regress_billing_owner2;
CREATE SCHEMA perm_app AUTHORIZATION regress_billing_owner;
SET search_path = perm_app, public;
CREATE TABLE perm_parted (id bigint, conversation_id text, role text, content text, data jsonb,
                          created_at timestamp) PARTITION BY RANGE (created_at);
CREATE TABLE perm_parted_2026_10 PARTITION OF perm_parted FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
ALTER TABLE perm_parted OWNER TO regress_billing_owner;
ALTER TABLE perm_parted_2026_10 OWNER TO regress_billing_owner;
SELECT tracked FROM billing.track_messages('perm_parted');
SELECT format('billing.track_%s()', id) AS track_fn FROM billing.tracked_tables
 WHERE relation = 'perm_parted'::regclass \gset
SELECT r.rolname, has_function_privilege(r.oid, :'track_fn', 'EXECUTE') AS may_execute
  FROM pg_roles AS r WHERE r.rolname IN ('regress_billing_owner', 'regress_billing_owner2', 'regress_billing_app')
 ORDER BY r.rolname;
SET ROLE regress_billing_owner;
CREATE TABLE perm_parted_2026_11 PARTITION OF perm_parted FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE TABLE perm_parted_2026_12 (LIKE perm_parted);
INSERT INTO perm_parted_2026_12 VALUES
  (1, 'q1', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-12-05');
ALTER TABLE perm_parted ATTACH PARTITION perm_parted_2026_12 FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');
INSERT INTO perm_parted VALUES
  (2, 'q1', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-05');
RESET ROLE;
-- gpt-4o 100 + 50 tokens = 100 x 2.5/1M + 50 x 10/1M = $0.00075 in November
-- (the trigger) and in December (the attached partition), before and after merge.
SELECT month, cost, messages FROM billing.monthly_history
 WHERE source = 'openai' AND month IN ('2026-11-01', '2026-12-01') ORDER BY month;
-- (the attached partition's rows came in with no trigger: the table is taken in anew)
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'perm_parted'::regclass;
SELECT billing.merge() IS NOT NULL AS merged;
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'perm_parted'::regclass;
SELECT month, cost, messages FROM billing.monthly_history
 WHERE source = 'openai' AND month IN ('2026-11-01', '2026-12-01') ORDER BY month;
-- Every partition got billing's TRUNCATE trigger, whoever made it.
SELECT c.relname, count(g.tgname) AS truncate_triggers
  FROM pg_partition_tree('perm_parted') AS p JOIN pg_class AS c ON c.oid = p.relid
  LEFT JOIN pg_trigger AS g ON g.tgrelid = p.relid AND g.tgname = 'billing_track_truncate'
 GROUP BY c.relname ORDER BY c.relname;

-- The right follows the table to a new owner, and leaves the old one.
ALTER TABLE perm_parted OWNER TO regress_billing_owner2;
SELECT r.rolname, has_function_privilege(r.oid, :'track_fn', 'EXECUTE') AS may_execute
  FROM pg_roles AS r WHERE r.rolname IN ('regress_billing_owner', 'regress_billing_owner2') ORDER BY r.rolname;
-- REASSIGN OWNED fires no event trigger: the next merge() gives the right.
REASSIGN OWNED BY regress_billing_owner2 TO regress_billing_owner;
SELECT billing.merge() IS NOT NULL AS merged;
SELECT r.rolname, has_function_privilege(r.oid, :'track_fn', 'EXECUTE') AS may_execute
  FROM pg_roles AS r WHERE r.rolname IN ('regress_billing_owner', 'regress_billing_owner2') ORDER BY r.rolname;

-- A sub-partitioned tree whose middle level another role owns: that role
-- adds partitions under it (billing grants every owner of a partitioned
-- table of the tree), and loses the right with the table.
SET ROLE regress_billing_owner;
CREATE TABLE perm_parted_2027 PARTITION OF perm_parted FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')
    PARTITION BY RANGE (created_at);
RESET ROLE;
GRANT USAGE, CREATE ON SCHEMA perm_app TO regress_billing_owner2;
ALTER TABLE perm_parted_2027 OWNER TO regress_billing_owner2;
SELECT r.rolname, has_function_privilege(r.oid, :'track_fn', 'EXECUTE') AS may_execute
  FROM pg_roles AS r WHERE r.rolname IN ('regress_billing_owner', 'regress_billing_owner2') ORDER BY r.rolname;
SET ROLE regress_billing_owner2;
CREATE TABLE perm_parted_2027_01 PARTITION OF perm_parted_2027 FOR VALUES FROM ('2027-01-01') TO ('2027-02-01');
CREATE TABLE perm_parted_2027_02 (id bigint, conversation_id text, role text, content text, data jsonb,
                                  created_at timestamp);
ALTER TABLE perm_parted_2027 ATTACH PARTITION perm_parted_2027_02 FOR VALUES FROM ('2027-02-01') TO ('2027-03-01');
INSERT INTO perm_parted_2027 VALUES
  (4, 'q3', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2027-01-10'),
  (5, 'q3', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 200, "completion_tokens": 100}', '2027-02-10');
RESET ROLE;
-- 100 + 50 tokens of gpt-4o = $0.00075 in January 2027; 200 + 100 =
-- 200 x 2.5/1M + 100 x 10/1M = $0.0015 in February.
SELECT month, cost, messages FROM billing.monthly_history
 WHERE source = 'openai' AND month IN ('2027-01-01', '2027-02-01') ORDER BY month;
-- Given back to the tree's owner, the middle level takes the right with it.
ALTER TABLE perm_parted_2027 OWNER TO regress_billing_owner;
SELECT r.rolname, has_function_privilege(r.oid, :'track_fn', 'EXECUTE') AS may_execute
  FROM pg_roles AS r WHERE r.rolname IN ('regress_billing_owner', 'regress_billing_owner2') ORDER BY r.rolname;

-- The right gives nothing more: the function bills no table outside its
-- tracked table's tree (the write to the owner's own table passes, unbilled).
GRANT USAGE ON SCHEMA billing TO regress_billing_owner;
SET ROLE regress_billing_owner;
CREATE TABLE perm_other (LIKE perm_parted);
CREATE TRIGGER borrowed AFTER INSERT ON perm_other FOR EACH ROW EXECUTE FUNCTION :track_fn;
INSERT INTO perm_other VALUES
  (3, 'q2', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-06');
DROP TABLE perm_other;
RESET ROLE;
SELECT month, cost, messages FROM billing.monthly_history
 WHERE source = 'openai' AND month IN ('2026-11-01', '2026-12-01') ORDER BY month;
SELECT billing.untrack_messages('perm_parted');

-- The same for a partitioned profiles table: its owner creates and attaches
-- partitions, and their counters' increases are recorded (billing grants
-- EXECUTE on the shared profiles trigger function to the owners of tracked
-- profiles tables, and to no one else).
DELETE FROM billing.aws_usage;
CREATE TABLE perm_profiles (id int, region text, data jsonb) PARTITION BY LIST (region);
CREATE TABLE perm_profiles_eu PARTITION OF perm_profiles FOR VALUES IN ('eu');
ALTER TABLE perm_profiles OWNER TO regress_billing_owner;
ALTER TABLE perm_profiles_eu OWNER TO regress_billing_owner;
INSERT INTO perm_profiles VALUES (1, 'eu', '{"emails_sent_this_month": 2}');
SELECT tracked, recorded FROM billing.track_profiles('perm_profiles');   -- 2 sent before tracking
SELECT billing.track_profile_customers('perm_profiles', 'id');
SELECT r.rolname, has_function_privilege(r.oid, 'billing._profiles_counter_changed()', 'EXECUTE') AS may_execute
  FROM pg_roles AS r WHERE r.rolname IN ('regress_billing_owner', 'regress_billing_owner2', 'regress_billing_app')
 ORDER BY r.rolname;
SET ROLE regress_billing_owner;
CREATE TABLE perm_profiles_us PARTITION OF perm_profiles FOR VALUES IN ('us');
CREATE TABLE perm_profiles_ap (LIKE perm_profiles);
INSERT INTO perm_profiles_ap VALUES (3, 'ap', '{"emails_sent_this_month": 4}');
ALTER TABLE perm_profiles ATTACH PARTITION perm_profiles_ap FOR VALUES IN ('ap');
INSERT INTO perm_profiles VALUES (2, 'us', '{"emails_sent_this_month": 5}');         -- +5
UPDATE perm_profiles SET data = '{"emails_sent_this_month": 7}' WHERE id = 1;       -- +5 (2 -> 7)
UPDATE perm_profiles SET data = '{"emails_sent_this_month": 6}' WHERE id = 3;       -- +2 (4 -> 6)
-- Billing's trigger on a tracked profiles table is not the owner's to drop.
DROP TRIGGER billing_track_profiles ON perm_profiles;
-- The right gives nothing more: a trigger of the owner's own on another
-- table, with billing's function, records nothing.
CREATE TABLE perm_other_profiles (id int, data jsonb);
CREATE TRIGGER borrowed AFTER INSERT OR UPDATE ON perm_other_profiles
    FOR EACH ROW EXECUTE FUNCTION billing._profiles_counter_changed('emails_sent_this_month', 'ses');
INSERT INTO perm_other_profiles VALUES (1, '{"emails_sent_this_month": 1000}');
DROP TABLE perm_other_profiles;
RESET ROLE;
-- 2 + 5 + 5 + 2 = 14 e-mails, as SES at $0.10 per 1,000: $0.0014.
SELECT sum(quantity) AS emails, count(*) AS rows, billing.aws_cost(service, quantity, at) AS billed
  FROM billing.aws_usage WHERE origin = 'track_profiles';
-- Each partition's e-mails belong to the profile's customer (its id), the
-- 2 sent before tracking to none.
SELECT customer, sum(quantity) AS emails FROM billing.aws_usage WHERE origin = 'track_profiles'
 GROUP BY customer ORDER BY customer NULLS FIRST;
-- A middle level of the profiles tree owned by another role: it adds a
-- partition under it, and its profiles' e-mails are recorded.
CREATE TABLE perm_profiles_sa PARTITION OF perm_profiles FOR VALUES IN ('sa') PARTITION BY HASH (id);
ALTER TABLE perm_profiles_sa OWNER TO regress_billing_owner2;
SELECT r.rolname, has_function_privilege(r.oid, 'billing._profiles_counter_changed()', 'EXECUTE') AS may_execute
  FROM pg_roles AS r WHERE r.rolname IN ('regress_billing_owner', 'regress_billing_owner2') ORDER BY r.rolname;
SET ROLE regress_billing_owner2;
CREATE TABLE perm_profiles_sa_0 PARTITION OF perm_profiles_sa FOR VALUES WITH (MODULUS 1, REMAINDER 0);
INSERT INTO perm_profiles_sa VALUES (4, 'sa', '{"emails_sent_this_month": 3}');      -- +3
UPDATE perm_profiles_sa SET data = '{"emails_sent_this_month": 4}' WHERE id = 4;    -- +1 (3 -> 4)
RESET ROLE;
-- 14 + 3 + 1 = 18 e-mails: $0.0018; profile 4's 4 are its own.
SELECT sum(quantity) AS emails, billing.aws_cost(service, quantity, at) AS billed
  FROM billing.aws_usage WHERE origin = 'track_profiles';
SELECT customer, sum(quantity) AS emails FROM billing.aws_usage
 WHERE origin = 'track_profiles' AND customer = '4' GROUP BY customer;
-- The right follows the table to a new owner, and goes with untracking.
ALTER TABLE perm_profiles OWNER TO regress_billing_owner2;
SELECT r.rolname, has_function_privilege(r.oid, 'billing._profiles_counter_changed()', 'EXECUTE') AS may_execute
  FROM pg_roles AS r WHERE r.rolname IN ('regress_billing_owner', 'regress_billing_owner2') ORDER BY r.rolname;
-- REASSIGN OWNED fires no event trigger: the next merge() moves the right.
REASSIGN OWNED BY regress_billing_owner2 TO regress_billing_owner;
SELECT billing.merge() IS NOT NULL AS merged;
SELECT r.rolname, has_function_privilege(r.oid, 'billing._profiles_counter_changed()', 'EXECUTE') AS may_execute
  FROM pg_roles AS r WHERE r.rolname IN ('regress_billing_owner', 'regress_billing_owner2') ORDER BY r.rolname;
SELECT billing.untrack_profiles('perm_profiles');
SELECT r.rolname, has_function_privilege(r.oid, 'billing._profiles_counter_changed()', 'EXECUTE') AS may_execute
  FROM pg_roles AS r WHERE r.rolname IN ('regress_billing_owner', 'regress_billing_owner2') ORDER BY r.rolname;
SELECT count(*) AS still_registered FROM billing.tracked_profiles;
DROP TABLE perm_profiles;
DELETE FROM billing.aws_usage;
DROP SCHEMA perm_app CASCADE;
RESET search_path;
REVOKE ALL ON SCHEMA billing FROM regress_billing_owner;
DROP ROLE regress_billing_owner, regress_billing_owner2;
DELETE FROM billing.aws_usage;
DROP TABLE perm_messages;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM regress_billing_viewer, regress_billing_outsider;
REVOKE ALL ON SCHEMA billing FROM regress_billing_app, regress_billing_viewer, regress_billing_outsider;
REVOKE ALL ON FUNCTION billing.record_usage(text, numeric, timestamptz, text) FROM regress_billing_app;
DROP ROLE regress_billing_app, regress_billing_viewer, regress_billing_outsider;
