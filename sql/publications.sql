-- A publication FOR ALL TABLES (Debezium makes one; so does a move by
-- logical replication) publishes billing's own tables too, and PostgreSQL
-- refuses UPDATE and DELETE on a published table that has no replica
-- identity. So every table of billing's has a primary key or REPLICA
-- IDENTITY FULL, and merge(), a rebuild, the app's DELETE and TRUNCATE,
-- untrack_messages and DROP TABLE all work with such a publication.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

-- Every table of billing's, whatever a later version adds, is publishable.
SELECT c.oid::regclass AS unpublishable
  FROM pg_class AS c
 WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind IN ('r', 'p')
   AND (c.relreplident = 'n'
        OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index AS i WHERE i.indrelid = c.oid AND i.indisprimary)))
 ORDER BY c.oid::regclass::text;

CREATE TABLE pub_messages (id bigserial PRIMARY KEY, conversation_id text NOT NULL, role text NOT NULL,
                           content text, data jsonb, created_at timestamptz NOT NULL);
CREATE TABLE pub_other (LIKE pub_messages INCLUDING ALL);
SELECT tracked FROM billing.track_messages('pub_messages');
SELECT tracked FROM billing.track_messages('pub_other');
SELECT billing.merge() IS NOT NULL AS merged;
-- (wal_level is not logical here: CREATE PUBLICATION warns that it would
-- not be streamed; PostgreSQL's checks on the tables apply all the same)
SET client_min_messages = error;
CREATE PUBLICATION regress_billing_all FOR ALL TABLES;
RESET client_min_messages;

-- 4 replies of 100 + 50 tokens of gpt-4o = 4 x (100 x 2.5/1M + 50 x 10/1M)
-- = 4 x 0.00075 = 0.003 in March 2026; one in pub_other.
INSERT INTO pub_messages (conversation_id, role, content, data, created_at)
SELECT 'pub' || g, 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-03-10'
  FROM generate_series(1, 4) AS g;
INSERT INTO pub_other (conversation_id, role, content, data, created_at)
VALUES ('pub-other', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-03-10');
CREATE FUNCTION pub_cost() RETURNS numeric LANGUAGE sql AS $$
    SELECT coalesce(sum(cost), 0) FROM billing.conversation_costs WHERE conversation_id LIKE 'pub%'
$$;
SELECT pub_cost();
SELECT billing.merge() IS NOT NULL AS merged;
SELECT unmerged_writes FROM billing.merge_status;
SELECT pub_cost();
-- A table taken in anew: its rollups are deleted and rebuilt.
SELECT billing.rebuild_messages('pub_messages');
SELECT billing.merge() IS NOT NULL AS merged;
SELECT pub_cost();
-- The app's DELETE (0.00375 - 0.00075 = 0.003) and TRUNCATE (pub_other's
-- 0.00075 left), merged.
DELETE FROM pub_messages WHERE conversation_id = 'pub1';
SELECT billing.merge() IS NOT NULL AS merged;
SELECT pub_cost();
TRUNCATE pub_messages;
SELECT billing.merge() IS NOT NULL AS merged;
SELECT pub_cost();
-- Untracking, and dropping a tracked table: its costs go.
SELECT billing.untrack_messages('pub_messages');
DROP TABLE pub_other;
SELECT pub_cost();

DROP PUBLICATION regress_billing_all;
DROP TABLE pub_messages;
DROP FUNCTION pub_cost();

-- A logical replication subscriber: the apply worker writes with
-- session_replication_role = replica, as the writes below do, and fires
-- only ENABLE ALWAYS triggers. Replies of 100 + 50 tokens of gpt-4o cost
-- 0.00075; 200 + 100 tokens cost 200 x 2.5/1M + 100 x 10/1M = 0.0015.
CREATE TABLE sub_messages (id bigserial PRIMARY KEY, conversation_id text NOT NULL, role text NOT NULL,
                           content text, data jsonb, created_at timestamptz NOT NULL);
SELECT tracked FROM billing.track_messages('sub_messages');
CREATE FUNCTION sub_cost() RETURNS numeric LANGUAGE sql AS $$
    SELECT coalesce(sum(cost), 0) FROM billing.conversation_costs WHERE conversation_id LIKE 'sub%'
$$;
-- ENABLE ALWAYS on billing_track alone: its UPDATEs would pass
-- billing_track_update unseen, so billing reads the table itself (with a
-- WARNING) until its triggers fire alike.
ALTER TABLE sub_messages ENABLE ALWAYS TRIGGER billing_track;
SET session_replication_role = replica;
INSERT INTO sub_messages (conversation_id, role, content, data, created_at) VALUES
  ('sub1', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-03-10'),
  ('sub2', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-03-10');
UPDATE sub_messages SET data = '{"model": "gpt-4o", "prompt_tokens": 200, "completion_tokens": 100}'
 WHERE conversation_id = 'sub2';
RESET session_replication_role;
SELECT billing._trigger_disabled(id) AS read_from_table FROM billing.tracked_tables WHERE relation = 'sub_messages'::regclass;
-- 0.00075 + 0.0015
SELECT sub_cost();
SELECT billing.merge() IS NOT NULL AS merged;
SELECT sub_cost();
-- All three ENABLE ALWAYS, as README "On a logical replication subscriber"
-- says: the replica's writes are billed through the ledger. sub2 back to
-- 0.00075, a third reply, then sub1 deleted: 0.00075 x 2 = 0.0015.
ALTER TABLE sub_messages ENABLE ALWAYS TRIGGER billing_track_update, ENABLE ALWAYS TRIGGER billing_track_truncate;
SELECT billing.merge() IS NOT NULL AS merged;
SET session_replication_role = replica;
UPDATE sub_messages SET data = '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}'
 WHERE conversation_id = 'sub2';
INSERT INTO sub_messages (conversation_id, role, content, data, created_at)
VALUES ('sub3', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-03-10');
DELETE FROM sub_messages WHERE conversation_id = 'sub1';
RESET session_replication_role;
SELECT count(*) > 0 AS through_the_ledger FROM billing.usage_ledger;
SELECT sub_cost();
SELECT billing.merge() IS NOT NULL AS merged;
SELECT sub_cost();
SET session_replication_role = replica;
TRUNCATE sub_messages;
RESET session_replication_role;
SELECT sub_cost();
SELECT billing.untrack_messages('sub_messages');

-- A partitioned table on a subscriber: the ALTER TABLE of the README on
-- the table reaches the partitions' row triggers (PostgreSQL) and their
-- TRUNCATE triggers (billing), so no WARNING; a partition created later
-- gets them all ENABLE ALWAYS too.
CREATE TABLE sub_parts (id bigint, conversation_id text NOT NULL, role text NOT NULL, content text, data jsonb,
                        created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
CREATE TABLE sub_parts_2026 PARTITION OF sub_parts FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT tracked FROM billing.track_messages('sub_parts');
ALTER TABLE sub_parts ENABLE ALWAYS TRIGGER billing_track, ENABLE ALWAYS TRIGGER billing_track_update,
                      ENABLE ALWAYS TRIGGER billing_track_truncate;
CREATE TABLE sub_parts_2027 PARTITION OF sub_parts FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
SELECT tgrelid::regclass AS relation, tgname, tgenabled FROM pg_trigger
 WHERE tgrelid IN ('sub_parts'::regclass, 'sub_parts_2026'::regclass, 'sub_parts_2027'::regclass) AND NOT tgisinternal
 ORDER BY tgrelid::regclass::text, tgname;
SELECT billing._trigger_disabled(id) AS read_from_table FROM billing.tracked_tables WHERE relation = 'sub_parts'::regclass;
SET session_replication_role = replica;
INSERT INTO sub_parts VALUES (1, 'sub-p', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2027-03-10');
RESET session_replication_role;
SELECT count(*) AS ledger_rows FROM billing.usage_ledger WHERE conversation_id = 'sub-p';
SELECT billing.untrack_messages('sub_parts');
DROP TABLE sub_parts, sub_messages;
DROP FUNCTION sub_cost();

-- billing's own catalog edited under session_replication_role = replica (a
-- DBA's bulk load of prices): billing's triggers on its own tables fire
-- ALWAYS, so the months the change reaches are rebuilt and this session's
-- prices follow at once. A merged reply of 100 + 50 tokens of a model of
-- its own, $1 / $4 per 1M: 100 x 1/1M + 50 x 4/1M = 0.0003; from 1 March
-- 2026 at $5 / $20: 100 x 5/1M + 50 x 20/1M = 0.0005 + 0.001 = 0.0015.
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('regress-replica-model', '2020-01-01 00:00+00', 1, 4);
CREATE TABLE own_messages (id bigserial PRIMARY KEY, conversation_id text NOT NULL, role text NOT NULL,
                           content text, data jsonb, created_at timestamptz NOT NULL);
SELECT tracked FROM billing.track_messages('own_messages');
INSERT INTO own_messages (conversation_id, role, content, data, created_at) VALUES
  ('own1', 'assistant', 'x', '{"model": "regress-replica-model", "prompt_tokens": 100, "completion_tokens": 50}', '2026-03-10');
SELECT billing.merge() IS NOT NULL AS merged;
SELECT cost FROM billing.conversation_costs WHERE conversation_id = 'own1';
SELECT billing.message_cost('regress-replica-model', 100, 50, '2026-03-10');
SET session_replication_role = replica;
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('regress-replica-model', '2026-03-01 00:00+00', 5, 20);
RESET session_replication_role;
SELECT billing.message_cost('regress-replica-model', 100, 50, '2026-03-10');
SELECT count(*) > 0 AS months_marked_stale FROM billing.stale_months
 WHERE source_id = (SELECT id FROM billing.tracked_tables WHERE relation = 'own_messages'::regclass) AND month = '2026-03-01';
SELECT cost FROM billing.conversation_costs WHERE conversation_id = 'own1';
SELECT billing.merge() IS NOT NULL AS merged;
SELECT cost FROM billing.conversation_costs WHERE conversation_id = 'own1';
-- every trigger on billing's tables fires ALWAYS
SELECT count(*) AS not_always FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'billing'::regnamespace AND NOT t.tgisinternal AND t.tgenabled <> 'A';
SELECT billing.untrack_messages('own_messages');
DROP TABLE own_messages;
DELETE FROM billing.model_prices WHERE model = 'regress-replica-model';
