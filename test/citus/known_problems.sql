-- What does not work on Citus yet (issue 14), reproduced on the test
-- cluster: bash test/citus/run.sh --known-problems runs this after the
-- cluster is made (coordinator and two workers, CREATE EXTENSION billing on
-- the coordinator) and prints what each statement does. Not a test: its
-- output is the record of today's behaviour (docs/citus.md).
\set VERBOSITY default
SET timezone = 'UTC';
SET citus.shard_count = 8;
SET citus.coordinator_aggregation_strategy = 'disabled';

\echo '==== setup: messages distributed by conversation_id, messages_local the same rows'
CREATE TABLE messages_local (
    id              bigint      NOT NULL,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL,
    content         text        NOT NULL DEFAULT '',
    data            jsonb,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, id)
);
INSERT INTO messages_local (id, conversation_id, role, data, created_at)
SELECT i,
       overlay(overlay(md5('conversation ' || i % 40) PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid,
       CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,
       CASE WHEN i % 2 = 0 THEN '{}'::jsonb
            WHEN i % 50 = 1 THEN jsonb_build_object('model', 'gpt-9', 'prompt_tokens', 1000, 'completion_tokens', 10)
            ELSE jsonb_build_object('model', 'gpt-4o', 'prompt_tokens', 1000 + i, 'completion_tokens', 100) END,
       -- 2025-01-31 00:00 UTC and after: the last hours of January in New York are February in UTC
       timestamptz '2025-01-31 00:00+00' + (i % 48) * interval '1 hour'
  FROM generate_series(1, 2000) AS i;
CREATE TABLE messages (LIKE messages_local INCLUDING ALL);
SELECT create_distributed_table('messages', 'conversation_id');
INSERT INTO messages SELECT * FROM messages_local;

\echo '==== 1. a price added on the coordinator is not seen by the workers'
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('gpt-9', '2020-01-01', 1.00, 2.00);
SELECT (SELECT billing.openai_cost(data, created_at) FROM messages) AS distributed,
       (SELECT billing.openai_cost(data, created_at) FROM messages_local) AS local;
SELECT * FROM run_command_on_workers($$SELECT count(*) FROM billing.model_prices WHERE model = 'gpt-9'$$);
\echo '---- ... nor a change in an open transaction (seen on the coordinator, not by the workers)'
BEGIN;
UPDATE billing.model_prices SET input_per_1m = 100 WHERE model = 'gpt-4o' AND effective_from = '2024-10-02 00:00+00';
SELECT (SELECT billing.openai_cost(data, created_at) FROM messages) AS distributed,
       (SELECT billing.openai_cost(data, created_at) FROM messages_local) AS local;
ROLLBACK;
\echo '---- ... and billing.model_prices cannot be made a reference table'
SELECT create_reference_table('billing.model_prices');
DELETE FROM billing.model_prices WHERE model = 'gpt-9';

\echo '==== 2. month_time_zone is read on each node: month_of groups by the workers'' zone'
UPDATE billing.settings SET value = 'America/New_York' WHERE name = 'month_time_zone';
SELECT * FROM run_command_on_workers($$SELECT value FROM billing.settings WHERE name = 'month_time_zone'$$);
SELECT billing.month_of(created_at) AS month, count(*) FROM messages GROUP BY 1 ORDER BY 1;
SELECT billing.month_of(created_at) AS month, count(*) FROM messages_local GROUP BY 1 ORDER BY 1;
UPDATE billing.settings SET value = 'UTC' WHERE name = 'month_time_zone';

\echo '==== 3. billing.unknown_model = error is not seen by the workers'
SET billing.unknown_model = 'error';
\echo '---- split: the transition function runs on the workers, where the setting is warn; the coordinator''s final function raises the error'
SELECT billing.openai_cost(data, created_at) FROM messages;
\echo '---- pushed down (grouped by conversation): warnings from the workers, no error'
SELECT count(*), sum(c) FROM (SELECT conversation_id, billing.openai_cost(data, created_at) AS c FROM messages GROUP BY 1) AS s;
\echo '---- the local copy'
SELECT billing.openai_cost(data, created_at) FROM messages_local;
\echo '---- SET LOCAL in a transaction with citus.propagate_set_commands = local'
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL billing.unknown_model = 'error';
SELECT billing.openai_cost(data, created_at) FROM messages;
ROLLBACK;
RESET billing.unknown_model;

\echo '==== 4. warnings of pushed-down aggregates come from each shard query'
SELECT count(*), sum(c) FROM (SELECT conversation_id, billing.openai_cost(data, created_at) AS c FROM messages GROUP BY 1) AS s;
SELECT sum(billing.message_cost(data, created_at)) FROM messages;
SELECT sum(billing.message_cost(data, created_at)) FROM messages_local;

\echo '==== 5. track_messages on the distributed table: refused (a local table tracks: test/citus/sql/local_tracking.sql)'
SELECT billing.track_messages('messages');
SELECT billing.track_profiles('messages');
