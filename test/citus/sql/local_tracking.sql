-- Tracking on a Citus coordinator: a local table tracks as on plain
-- PostgreSQL (its trigger functions stay on the coordinator, Citus does not
-- make them distributed objects); its views and dashboard() give what the
-- cost aggregates give on the table itself, after a backfill, inserts,
-- updates, deletes, a price change and merges; a Citus table is refused
-- with an error that says why; a table merge() cannot read does not stop
-- the others; billing's session settings reach the workers through ALTER
-- ROLE / ALTER DATABASE ... SET, which Citus propagates.
-- (no CONTEXT lines: a PL/pgSQL line number ties the output to the text of a function)
\set SHOW_CONTEXT never
SET timezone = 'UTC';
SET client_min_messages = warning;

-- 4,000 of setup's messages (ids 1 to 4000: two of each odd kind: an
-- invalid token count, the unknown model gpt-9, a reply with a model only),
-- in a local table of the coordinator.
CREATE TABLE citus_test.tracked_local (
    id              bigint      NOT NULL,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL,
    content         text        NOT NULL DEFAULT '',
    data            jsonb,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, id)
);
INSERT INTO citus_test.tracked_local (id, conversation_id, role, data, created_at)
SELECT id, conversation_id, role, data, created_at FROM messages_local WHERE id <= 4000;

SELECT tracked, backfilled, messages, problems, unpriced_models
  FROM billing.track_messages('citus_test.tracked_local');

-- Nothing of it reached the workers or Citus's metadata: its trigger
-- functions are the coordinator's alone.
SELECT count(*) AS distributed_trigger_functions
  FROM pg_dist_object AS o JOIN pg_proc AS p ON o.classid = 'pg_proc'::regclass AND o.objid = p.oid
 WHERE p.proname ~ '^track_[0-9]+';
SELECT nodeport > 0 AS worker, result AS trigger_functions
  FROM run_command_on_workers($$SELECT count(*) FROM pg_proc WHERE proname ~ '^track_[0-9]+'$$);
SELECT tgname FROM pg_trigger WHERE tgrelid = 'citus_test.tracked_local'::regclass ORDER BY 1;

-- The views against the aggregates on the table itself, per month and
-- conversation: cost (openai_cost at each row's time leaves out the
-- unpriced rows, gpt-9 and o1 before its first price, and the invalid
-- ones, as the views do) and messages; per month: messages.
CREATE FUNCTION citus_test.views_match(OUT conversations_same boolean, OUT conversations int,
                                       OUT months_same boolean, OUT months int)
LANGUAGE plpgsql AS $$
DECLARE
    v text[];
    d text[];
BEGIN
    v := citus_test.rows_of($q$
        SELECT month, conversation_id, trim_scale(cost), messages FROM billing.conversation_costs
         WHERE source_table = 'citus_test.tracked_local'::regclass $q$);
    d := citus_test.rows_of($q$
        SELECT billing.month_of(created_at), conversation_id::text,
               trim_scale(coalesce(billing.openai_cost(data, created_at), 0)), count(*)
          FROM citus_test.tracked_local AS m
         GROUP BY 1, 2 $q$);
    conversations_same := v = d;
    conversations := cardinality(v);
    v := citus_test.rows_of($q$
        SELECT month, messages FROM billing.monthly_history WHERE source = 'openai' $q$);
    d := citus_test.rows_of($q$
        SELECT billing.month_of(created_at), count(*) FROM citus_test.tracked_local GROUP BY 1 $q$);
    months_same := v = d;
    months := cardinality(v);
END
$$;

SET client_min_messages = error;   -- (the aggregates' warnings: o1, gpt-9, "12a")
SELECT * FROM citus_test.views_match();

-- Writes: 200 new replies (the ledger), 100 updated, 100 deleted; the
-- views still match the aggregates before and after a merge, and merge()
-- moves the ledger into the rollups without changing a figure.
INSERT INTO citus_test.tracked_local (id, conversation_id, role, data, created_at)
SELECT id + 100000, conversation_id, role, data, created_at + interval '1 hour'
  FROM citus_test.tracked_local WHERE role = 'assistant' AND id BETWEEN 1001 AND 1400;
UPDATE citus_test.tracked_local SET data = data || '{"completion_tokens": 5}'
 WHERE role = 'assistant' AND id BETWEEN 2001 AND 2200 AND data ? 'prompt_tokens';
DELETE FROM citus_test.tracked_local WHERE id BETWEEN 3001 AND 3100;
SELECT count(*) > 0 AS ledger_rows FROM billing.usage_ledger;
SELECT * FROM citus_test.views_match();
-- dashboard() gives the same payload before and after the merge
CREATE TEMP TABLE dash AS SELECT billing.dashboard('2024-09-01', '2025-03-01', months => 12) AS before_merge;
SELECT billing.merge() >= 0 AS merged;
SELECT count(*) AS ledger_rows FROM billing.usage_ledger;
SELECT * FROM citus_test.views_match();
SELECT before_merge = billing.dashboard('2024-09-01', '2025-03-01', months => 12) AS dashboard_same,
       jsonb_typeof(before_merge) AS payload
  FROM dash;

-- A price change: the months it touches are repriced (views exact at once,
-- the rollups rebuilt by the next merge).
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('gpt-9', '2024-01-01', 1.00, 2.00);
SELECT * FROM citus_test.views_match();
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.views_match();
DELETE FROM billing.model_prices WHERE model = 'gpt-9';
SELECT billing.merge() >= 0 AS merged;
SELECT * FROM citus_test.views_match();
SET client_min_messages = warning;

-- A Citus reference table cannot be tracked (its rows are in shards,
-- where the trigger would not run; a distributed table is tracked by
-- recomputation: distributed_tracking), and a tracked table cannot be
-- distributed.
CREATE TABLE citus_test.reference_messages (LIKE messages_local INCLUDING ALL);
SELECT create_reference_table('citus_test.reference_messages');
\set VERBOSITY terse
SELECT billing.track_messages('citus_test.reference_messages', content_column => 'role');
SELECT count(*) AS tracked FROM billing.tracked_tables;
SELECT billing.track_profiles('citus_test.reference_messages');
SET citus.enable_unsafe_triggers = on;
SELECT create_distributed_table('citus_test.tracked_local', 'conversation_id');
RESET citus.enable_unsafe_triggers;
SELECT create_distributed_table('citus_test.tracked_local', 'conversation_id');
DROP TABLE citus_test.reference_messages;
\set VERBOSITY default
-- track_profiles refuses a distributed table, saying why and what to do
-- instead; nothing is made (no trigger on any node, no usage recorded).
SELECT count(*) AS aws_rows FROM billing.aws_usage \gset
SELECT billing.track_profiles('messages');
SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'billing\_track\_profiles%') AS triggers,
       (SELECT count(*) FROM billing.aws_usage) - :aws_rows AS recorded;
SELECT nodeport > 0 AS worker, result AS triggers
  FROM run_command_on_workers($$SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'billing\_track\_profiles%'$$);
-- The alternative: the sends recorded on the coordinator (by hand: 3 + 4).
SELECT billing.record_usage('ses', 3, '2025-01-15 10:00+00') IS NOT NULL AS recorded,
       billing.record_usage('ses', 4, '2025-01-15 11:00+00') IS NOT NULL AS recorded_again;
SELECT sum(quantity) AS ses_sends FROM billing.aws_usage
 WHERE service = 'ses' AND at >= '2025-01-15' AND at < '2025-01-16';
DELETE FROM billing.aws_usage WHERE service = 'ses' AND at >= '2025-01-15' AND at < '2025-01-16';

-- A table merge() cannot read does not stop it for the others: two tables
-- tracked without backfill, one of them locked by another session (dblink)
-- while merge() runs under a lock_timeout.
CREATE EXTENSION IF NOT EXISTS dblink;
CREATE TABLE citus_test.readable (LIKE citus_test.tracked_local INCLUDING ALL);
CREATE TABLE citus_test.locked (LIKE citus_test.tracked_local INCLUDING ALL);
INSERT INTO citus_test.readable SELECT * FROM citus_test.tracked_local WHERE id <= 100;
INSERT INTO citus_test.locked SELECT * FROM citus_test.tracked_local WHERE id <= 100;
SELECT tracked, backfilled FROM billing.track_messages('citus_test.readable', backfill => false);
SELECT tracked, backfilled FROM billing.track_messages('citus_test.locked', backfill => false);
SELECT dblink_connect('locker', format('host=127.0.0.1 port=%s dbname=%s user=%s',
                                      current_setting('port'), current_database(), current_user));
SELECT dblink_exec('locker', 'BEGIN');
SELECT dblink_exec('locker', 'LOCK TABLE citus_test.locked IN ACCESS EXCLUSIVE MODE');
SET lock_timeout = '200ms';
SET client_min_messages = notice;
SELECT billing.merge() >= 0 AS merged;
SET client_min_messages = warning;
RESET lock_timeout;
SELECT dblink_exec('locker', 'ROLLBACK');
SELECT dblink_disconnect('locker');
DROP EXTENSION dblink;
SELECT relation, backfilled FROM billing.tracked_tables ORDER BY id;
-- the readable table's 100 rows are in its rollups
SELECT sum(u.messages) AS readable_messages
  FROM billing.month_usage AS u JOIN billing.tracked_tables AS t ON t.id = u.source_id
 WHERE t.relation = 'citus_test.readable'::regclass;
-- and the next merge takes in the other
SELECT billing.merge() >= 0 AS merged;
SELECT relation, backfilled FROM billing.tracked_tables ORDER BY id;
SELECT billing.untrack_messages('citus_test.readable');
SELECT billing.untrack_messages('citus_test.locked');
DROP TABLE citus_test.readable, citus_test.locked;

-- billing's session settings: ALTER ROLE ... SET (and ALTER DATABASE ...
-- SET) are propagated by Citus to every node, so the workers' connections
-- read the rows under the same policy. (A new session: connections to the
-- workers that were open before keep the settings they started with.)
CREATE ROLE billing_strict LOGIN;
ALTER ROLE billing_strict SET billing.unknown_model = 'error';
SELECT nodeport > 0 AS worker, result
  FROM run_command_on_workers($$SELECT rolconfig FROM pg_roles WHERE rolname = 'billing_strict'$$);
-- (a reader needs SELECT on billing's tables on every node: Citus does not
-- propagate GRANTs on tables it does not manage)
GRANT USAGE ON SCHEMA billing TO billing_strict;
GRANT SELECT ON messages TO billing_strict;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO billing_strict;
SELECT nodeport > 0 AS worker, result
  FROM run_command_on_workers($$GRANT SELECT ON ALL TABLES IN SCHEMA billing TO billing_strict$$);
-- (whether a query raises billing's error, whichever row it names)
CREATE FUNCTION citus_test.raises(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE query;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN CASE WHEN SQLERRM LIKE 'billing: model "%" cannot be priced at %' THEN 'error: model cannot be priced'
                ELSE SQLERRM END;
END
$$;
GRANT USAGE ON SCHEMA citus_test TO billing_strict;
\c - billing_strict
SHOW billing.unknown_model;
-- grouped by the distribution column: the whole aggregate runs on the
-- workers, which raise the error themselves (under the default 'warn' they
-- would only warn, once per shard); split, likewise. (Which shard's row the
-- error names depends on which shard answers first.)
SELECT citus_test.raises($$SELECT count(*), sum(c) FROM (SELECT conversation_id, billing.openai_cost(data, created_at) AS c
                                                       FROM messages GROUP BY 1) AS s$$) AS pushed_down,
       citus_test.raises($$SELECT billing.openai_cost(data, created_at) FROM messages$$) AS split;
\c - postgres
REVOKE ALL ON messages FROM billing_strict;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM billing_strict;
SELECT nodeport > 0 AS worker, result
  FROM run_command_on_workers($$REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM billing_strict$$);
REVOKE ALL ON SCHEMA billing, citus_test FROM billing_strict;
DROP ROLE billing_strict;
