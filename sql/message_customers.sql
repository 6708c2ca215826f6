-- Customers named by the messages themselves (track_message_customers): a
-- column of the tracked table, or a member of its data. The customer of a
-- conversation is the one its latest message that names a customer names,
-- found when costs are read; a conversation whose messages disagree is
-- listed in usage_problems; NULL or empty names no customer. Every figure
-- is computed by hand in the comments.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

-- gpt-4o is $2.50 / $10.00 per 1M tokens.
-- m1: the customer is the column customer_id.
CREATE TABLE m1 (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                 created_at timestamptz, customer_id text);
CREATE INDEX ON m1 (conversation_id);
CREATE INDEX ON m1 (customer_id);
-- k1 alice:  1000 x 2.5/1M + 100 x 10/1M = 0.0035, then 2000 x 2.5/1M = 0.005: 0.0085
-- k2 bob on the 7th (400: 0.001), carol on the 8th (800: 0.002), no one on
--    the 9th (4000: 0.01): billed to carol, 0.013, listed as a problem
-- k3 NULL (1200: 0.003), k4 '' (2000: 0.005): no customer, 0.008
INSERT INTO m1 (conversation_id, role, content, data, created_at, customer_id) VALUES
  ('k1', 'assistant', 'a', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 100}', '2026-10-05 10:00', 'alice'),
  ('k1', 'assistant', 'b', '{"model": "gpt-4o", "prompt_tokens": 2000, "completion_tokens": 0}', '2026-10-06 10:00', 'alice'),
  ('k2', 'assistant', 'c', '{"model": "gpt-4o", "prompt_tokens": 400, "completion_tokens": 0}', '2026-10-07 10:00', 'bob'),
  ('k2', 'assistant', 'd', '{"model": "gpt-4o", "prompt_tokens": 800, "completion_tokens": 0}', '2026-10-08 10:00', 'carol'),
  ('k2', 'assistant', 'e', '{"model": "gpt-4o", "prompt_tokens": 4000, "completion_tokens": 0}', '2026-10-09 10:00', NULL),
  ('k3', 'assistant', 'f', '{"model": "gpt-4o", "prompt_tokens": 1200, "completion_tokens": 0}', '2026-10-10 10:00', NULL),
  ('k4', 'assistant', 'g', '{"model": "gpt-4o", "prompt_tokens": 2000, "completion_tokens": 0}', '2026-10-11 10:00', '');
-- m2: the customer is the member "customer" of the data (jsonb).
CREATE TABLE m2 (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                 created_at timestamptz);
CREATE INDEX ON m2 (conversation_id);
CREATE INDEX ON m2 ((data ->> 'customer'));
-- j1 alice 1000: 0.0025; j2 no member, 2000: 0.005; j3 dave 400 + 100 out: 0.001 + 0.001 = 0.002
INSERT INTO m2 (conversation_id, role, content, data, created_at) VALUES
  ('j1', 'assistant', 'a', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0, "customer": "alice"}', '2026-10-05 11:00'),
  ('j2', 'assistant', 'b', '{"model": "gpt-4o", "prompt_tokens": 2000, "completion_tokens": 0}', '2026-10-06 11:00'),
  ('j3', 'assistant', 'c', '{"model": "gpt-4o", "prompt_tokens": 400, "completion_tokens": 100, "customer": "dave"}', '2026-10-07 11:00');
-- m3: data held as text, conversations as bigint; 7 dave 800: 0.002.
CREATE TABLE m3 (id bigserial PRIMARY KEY, conversation_id bigint, role text, content text, data text,
                 created_at timestamptz);
INSERT INTO m3 (conversation_id, role, content, data, created_at) VALUES
  (7, 'assistant', 'a', '{"model": "gpt-4o", "prompt_tokens": 800, "completion_tokens": 0, "customer": "dave"}', '2026-10-08 11:00');

SELECT backfilled FROM billing.track_messages('m1');
SELECT backfilled FROM billing.track_messages('m2');
SELECT backfilled FROM billing.track_messages('m3');

-- Refused: a table that is not tracked, both or neither way, an empty
-- member, a column that is missing or of a type that is no id.
CREATE TABLE untracked (id int);
SELECT billing.track_message_customers('untracked', 'id');
SELECT billing.track_message_customers('m1');
SELECT billing.track_message_customers('m1', 'customer_id', 'customer');
SELECT billing.track_message_customers('m2', data_member => '');
SELECT billing.track_message_customers('m1', 'nope');
SELECT billing.track_message_customers('m1', 'data');
SELECT count(*) AS sources FROM billing.customer_sources;

SELECT billing.track_message_customers('m1', 'customer_id');
SELECT billing.track_message_customers('m2', data_member => 'customer');
SELECT billing.track_message_customers('m3', data_member => 'customer');
SELECT t.relation, c.lookup, c.lookup_key, c.customer_column, c.customer_member, c.per_message
  FROM billing.customer_sources AS c JOIN billing.tracked_tables AS t ON t.id = c.source_id ORDER BY t.relation::text;

-- October: alice 0.0085 (k1) + 0.0025 (j1) = 0.0110; carol 0.013 (k2);
-- dave 0.002 (j3) + 0.002 (7) = 0.004; no customer 0.008 (k3, k4) +
-- 0.005 (j2) = 0.013. Sum 0.011 + 0.013 + 0.004 + 0.013 = 0.041.
SELECT customer, month, openai_cost, tokens, messages FROM billing.customer_costs ORDER BY month, customer NULLS FIRST;
SELECT sum(openai_cost) AS customers, (SELECT sum(cost) FROM billing.monthly_history WHERE source = 'openai') AS history
  FROM billing.customer_costs;
-- k2 names bob and carol: billed to carol (its latest message that names
-- one), bob's one message named in messages.
SELECT source_table, month, kind, detail, messages FROM billing.usage_problems WHERE kind = 'several customers';

-- An unmerged write of alice in k1 (1000: 0.0025): alice 0.0110 + 0.0025 = 0.0135.
INSERT INTO m1 (conversation_id, role, content, data, created_at, customer_id) VALUES
  ('k1', 'assistant', 'h', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0}', '2026-10-12 10:00', 'alice');
SELECT * FROM billing.costs('2026-10-01', '2026-11-01', customer => 'alice');
SELECT * FROM billing.costs('2026-10-01', '2026-11-01', customer => 'carol');
-- By day, carol: k2's messages on the 7th (0.001), 8th (0.002), 9th (0.01).
SELECT period, customer, openai_cost, messages FROM billing.costs('2026-10-07', '2026-10-10', 'day', customer => 'carol');
-- The owner's dashboard's top customers (looked up by conversation).
SELECT jsonb_path_query_array(billing.dashboard('2026-10-01', '2026-11-01') -> 'customers', '$[*].customer') AS top,
       jsonb_path_query_array(billing.dashboard('2026-10-01', '2026-11-01') -> 'customers', '$[*].cost') AS cost;

-- k1 changes hands by UPDATE of the column: its 0.011 moves from alice to
-- bob, merged or not. alice 0.0025 (j1), bob 0.011.
UPDATE m1 SET customer_id = 'bob' WHERE conversation_id = 'k1';
SELECT customer, month, openai_cost, messages FROM billing.customer_costs ORDER BY month, customer NULLS FIRST;
SELECT billing.merge() > 0 AS merged;
SELECT customer, month, openai_cost, messages FROM billing.customer_costs ORDER BY month, customer NULLS FIRST;
-- A data member changed by UPDATE: j2 becomes dave's (0.004 + 0.005 = 0.009).
UPDATE m2 SET data = data || '{"customer": "dave"}' WHERE conversation_id = 'j2';
SELECT customer, openai_cost, messages FROM billing.customer_costs WHERE customer = 'dave';

-- Statements issued for these customers equal the views.
SELECT number, customer, month, usage_total, total FROM billing.issue_statements('2026-10-01', true) ORDER BY customer;
SELECT count(*) AS differ FROM billing.statements AS s
  FULL JOIN (SELECT * FROM billing.customer_costs WHERE customer IS NOT NULL) AS c ON c.customer = s.customer AND c.month = s.month
 WHERE s.total IS DISTINCT FROM c.total_cost;

-- Read as one customer: carol sees k2 only, and no problem rows.
CREATE ROLE regress_msgcust_app;
GRANT USAGE ON SCHEMA billing TO regress_msgcust_app;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO regress_msgcust_app;
GRANT SELECT ON m1, m2, m3 TO regress_msgcust_app;
SET ROLE regress_msgcust_app;
SET billing.customer = 'carol';
SELECT customer, month, openai_cost, messages FROM billing.customer_costs;
SELECT conversation_id, cost, messages FROM billing.conversation_costs ORDER BY conversation_id;
SELECT count(*) AS problems FROM billing.usage_problems;
SELECT customer, total FROM billing.statements;
-- bob: k1 (0.011) only, not k2, which one of his messages names but
-- which is billed to carol.
SET billing.customer = 'bob';
SELECT conversation_id, cost FROM billing.conversation_costs ORDER BY conversation_id;
RESET billing.customer;
RESET ROLE;

-- The customer column renamed: followed (bob 0.011 as before); dropped:
-- refused, since every read of customers would fail on it.
ALTER TABLE m1 RENAME COLUMN customer_id TO customer;
SELECT customer_column FROM billing.customer_sources WHERE lookup = 'm1'::regclass;
SELECT customer, openai_cost FROM billing.customer_costs WHERE customer = 'bob';
ALTER TABLE m1 DROP COLUMN customer;
SELECT customer, openai_cost FROM billing.customer_costs WHERE customer = 'bob';

-- Back to a lookup table: the per-message source is replaced.
CREATE TABLE convs (id text PRIMARY KEY, user_id text);
INSERT INTO convs VALUES ('k1', 'erin');
SELECT billing.track_customers('m1', 'convs');
SELECT customer_member, per_message FROM billing.customer_sources AS c
  JOIN billing.tracked_tables AS t ON t.id = c.source_id WHERE t.relation = 'm1'::regclass;
SELECT billing.untrack_customers('m1');
SELECT count(*) AS several FROM billing.usage_problems WHERE kind = 'several customers';
DROP OWNED BY regress_msgcust_app;
DROP ROLE regress_msgcust_app;

-- Issued statements cannot be deleted: the next tests start from a new install.
DROP TABLE m1, m2, m3, untracked, convs;
DROP EXTENSION billing;
CREATE EXTENSION billing;
