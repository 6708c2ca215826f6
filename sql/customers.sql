-- Customers: the customer of each message, looked up through the app's
-- conversations table when read; billing.customer_costs, costs() by month
-- and day, dashboard(customer => ...) and the owner's top customers.
-- Every figure is computed by hand in the comments.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

CREATE TABLE conversations (id text PRIMARY KEY, user_id text);
CREATE TABLE messages (
    id bigserial PRIMARY KEY,
    conversation_id text,
    role text,
    content text,
    data jsonb,
    created_at timestamptz
);
CREATE INDEX ON messages (created_at);
-- c1 -> alice, c2 -> bob, c3 has no user, c9 has no row in conversations.
INSERT INTO conversations VALUES ('c1', 'alice'), ('c2', 'bob'), ('c3', NULL);
-- gpt-4o is $2.50 / $10.00 per 1M tokens, gpt-4o-mini $0.15 / $0.60.
-- c1 2026-10-05: 1000 x 2.5/1M + 100 x 10/1M = 0.0025 + 0.001 = 0.0035
-- c2 2026-10-06: 2000 x 2.5/1M = 0.005
-- c3 2026-10-07:  400 x 2.5/1M = 0.001
-- c9 2026-10-08: 4000 x 2.5/1M = 0.01
-- c1 2026-11-02: gpt-4o-mini 1,000,000 x 0.15/1M = 0.15
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c1', 'assistant', 'a', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 100}', '2026-10-05 10:00'),
  ('c2', 'assistant', 'b', '{"model": "gpt-4o", "prompt_tokens": 2000, "completion_tokens": 0}', '2026-10-06 10:00'),
  ('c3', 'assistant', 'c', '{"model": "gpt-4o", "prompt_tokens": 400, "completion_tokens": 0}', '2026-10-07 10:00'),
  ('c9', 'assistant', 'd', '{"model": "gpt-4o", "prompt_tokens": 4000, "completion_tokens": 0}', '2026-10-08 10:00'),
  ('c1', 'assistant', 'e', '{"model": "gpt-4o-mini", "prompt_tokens": 1000000, "completion_tokens": 0}', '2026-11-02 10:00');

-- Refused: a table that is not tracked, a key that is not unique.
SELECT billing.track_customers('messages', 'conversations');
SELECT backfilled FROM billing.track_messages('messages');
CREATE TABLE loose (conv text, user_id text);
SELECT billing.track_customers('messages', 'loose', 'conv');
SELECT billing.track_customers('messages', 'conversations', customer_column => 'nope');
SELECT billing.track_customers('messages', 'conversations');
SELECT t.relation, c.lookup, c.lookup_key, c.customer_column
  FROM billing.customer_sources AS c JOIN billing.tracked_tables AS t ON t.id = c.source_id;

-- AWS usage: 1000 e-mails of alice (1000 x $0.0001 = 0.10) and 500 of no
-- customer (0.05), in October.
SELECT billing.record_customer_usage('alice', 'ses', 1000, '2026-10-10') > 0 AS recorded;
SELECT billing.record_usage('ses', 500, '2026-10-10') > 0 AS recorded;
SELECT billing.record_customer_usage('', 'ses', 1, '2026-10-10');

-- October: alice 0.0035 + 0.10 = 0.1035; bob 0.005; no customer (c3, c9
-- and the 500 e-mails) 0.001 + 0.01 + 0.05 = 0.061. November: alice 0.15.
SELECT customer, month, openai_cost, aws_cost, total_cost, tokens, messages, emails
  FROM billing.customer_costs ORDER BY month, customer NULLS FIRST;
-- The customers add up to the owner's figures: October 0.0035 + 0.005 +
-- 0.011 = 0.0195 OpenAI and 0.15 AWS.
SELECT c.month, sum(c.openai_cost) AS openai, sum(c.aws_cost) AS aws,
       (SELECT sum(h.cost) FROM billing.monthly_history AS h WHERE h.month = c.month AND h.source = 'openai') AS history_openai,
       (SELECT sum(h.cost) FROM billing.monthly_history AS h WHERE h.month = c.month AND h.source = 'aws') AS history_aws
  FROM billing.customer_costs AS c GROUP BY c.month ORDER BY c.month;

-- An unmerged write of alice: c1 2026-10-20, 1000 x 2.5/1M = 0.0025 ->
-- alice's October OpenAI 0.0035 + 0.0025 = 0.0060.
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c1', 'assistant', 'f', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0}', '2026-10-20 10:00');
SELECT * FROM billing.costs('2026-10-01', '2026-11-01', customer => 'alice');
SELECT * FROM billing.costs('2026-10-01', '2026-12-01');
-- By day (a partial range: October 6 to 21): c2 on the 6th, c3 on the
-- 7th, c9 on the 8th, the e-mails on the 10th, c1 on the 20th.
SELECT * FROM billing.costs('2026-10-06', '2026-10-21', group_by => 'day');
SELECT * FROM billing.costs('2026-10-06', '2026-10-21', group_by => 'day', customer => 'alice');
SELECT * FROM billing.costs('2026-10-06', '2026-10-01');
SELECT * FROM billing.costs('2026-10-01', '2026-11-01', group_by => 'week');

-- The conversation c2 moves to alice: the views follow at once, merged or
-- not. alice October: 0.0060 + 0.005 = 0.0110 OpenAI; bob has nothing.
UPDATE conversations SET user_id = 'alice' WHERE id = 'c2';
SELECT customer, month, openai_cost, aws_cost, total_cost, messages FROM billing.customer_costs ORDER BY month, customer NULLS FIRST;
SELECT billing.merge() > 0 AS merged;
SELECT customer, month, openai_cost, aws_cost, total_cost, messages FROM billing.customer_costs ORDER BY month, customer NULLS FIRST;

-- alice's dashboard for October: OpenAI 0.0110 (3 messages, 4000 prompt +
-- 100 completion tokens), AWS 0.10, total 0.1110; conversations c1 0.0060
-- and c2 0.005; history September 0, October 0.1110.
SELECT jsonb_pretty(billing.dashboard(customer => 'alice', months => 2, at => '2026-10-15'));
-- A period form; a customer without usage; an unknown customer.
SELECT billing.dashboard('2026-10-01'::timestamptz, '2026-12-01'::timestamptz, customer => 'alice', months => 1) -> 'openai' ->> 'cost' AS alice_oct_nov;   -- 0.0110 + 0.15 = 0.1610
SELECT billing.dashboard(customer => 'bob', months => 1, at => '2026-10-15') -> 'openai';
SELECT billing.dashboard(customer => 'nobody', months => 1, at => '2026-10-15') ->> 'total_cost' AS nobody;
SELECT billing.dashboard(customer => NULL::text);
-- The owner's dashboard lists the top customers: October alice 0.1110.
SELECT jsonb_pretty(billing.dashboard(1, 0, '2026-10-15') -> 'customers');
-- A stale month (a price change) is read from the table: the same figures.
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('gpt-4o', '2026-10-15', 5.00, 10.00);
-- alice October: 0.0035 + 0.005 + 1000 x 5/1M (the 20th) = 0.0135
SELECT count(*) > 0 AS stale FROM billing.stale_months;
SELECT customer, month, openai_cost FROM billing.customer_costs WHERE customer = 'alice' ORDER BY month;
SELECT billing.dashboard(customer => 'alice', months => 1, at => '2026-10-15') -> 'openai' ->> 'cost' AS alice_october;
SELECT billing.merge() >= 0 AS merged;
SELECT customer, month, openai_cost FROM billing.customer_costs WHERE customer = 'alice' ORDER BY month;
DELETE FROM billing.model_prices WHERE model = 'gpt-4o' AND effective_from = '2026-10-15';
SELECT billing.merge() >= 0 AS merged;

-- An integer mapping: the customer column may be any id type.
CREATE TABLE chats (id bigint PRIMARY KEY, account bigint);
CREATE TABLE chat_messages (id bigserial PRIMARY KEY, chat bigint, role text, content text, data jsonb, created_at timestamptz);
INSERT INTO chats VALUES (1, 42);
INSERT INTO chat_messages (chat, role, content, data, created_at) VALUES
  (1, 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 0}', '2026-10-03');
SELECT backfilled FROM billing.track_messages('chat_messages', conversation_column => 'chat');
SELECT billing.track_customers('chat_messages', 'chats', customer_column => 'account');
-- 100 x 2.5/1M = 0.00025
SELECT * FROM billing.costs('2026-10-01', '2026-11-01', customer => '42');
SELECT * FROM billing.costs('2026-10-01', '2026-11-01', customer => 'not a number');
-- The mapping's columns renamed: followed, the same 0.00025. Dropping a
-- column it reads, or the constraint that keeps its key unique, is refused
-- (reads of customers would fail, or bill a conversation twice); a type
-- billing cannot read is a WARNING, and reads of its customers then fail
-- with an error naming the column.
ALTER TABLE chats RENAME COLUMN account TO account_id;
ALTER TABLE chats RENAME COLUMN id TO chat_id;
SELECT lookup_key, customer_column FROM billing.customer_sources WHERE lookup = 'chats'::regclass;
SELECT * FROM billing.costs('2026-10-01', '2026-11-01', customer => '42');
-- A reader that may read the messages but not the lookup: a WARNING names
-- the table and the GRANT, and the conversations count as no customer's;
-- with the grant, customer 42 has its 0.00025.
CREATE ROLE regress_lookup_reader;
GRANT USAGE ON SCHEMA billing TO regress_lookup_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO regress_lookup_reader;
GRANT SELECT ON chat_messages TO regress_lookup_reader;
SET ROLE regress_lookup_reader;
SELECT customer, openai_cost FROM billing.costs('2026-10-01', '2026-11-01', customer => '42');
RESET ROLE;
GRANT SELECT ON chats TO regress_lookup_reader;
SET ROLE regress_lookup_reader;
SELECT customer, openai_cost FROM billing.costs('2026-10-01', '2026-11-01', customer => '42');
RESET ROLE;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM regress_lookup_reader;
REVOKE ALL ON SCHEMA billing FROM regress_lookup_reader;
REVOKE ALL ON chat_messages, chats FROM regress_lookup_reader;
DROP ROLE regress_lookup_reader;
ALTER TABLE chats DROP COLUMN account_id;
ALTER TABLE chats DROP CONSTRAINT chats_pkey;
ALTER TABLE chats ALTER COLUMN account_id TYPE point USING point(account_id, 0);
SELECT * FROM billing.costs('2026-10-01', '2026-11-01', customer => '42');
-- Every other read goes on (before, each failed on that column): the
-- owner's dashboard, the budgets and their alerts; statements, which are
-- kept for good, are not issued until the column is readable again.
INSERT INTO billing.budgets (name, amount) VALUES ('regress-app', 1000);
INSERT INTO billing.budgets (name, scope, customer, amount) VALUES ('regress-42', 'customer', '42', 10);
SELECT billing.dashboard('2026-10-01', '2026-11-01') ? 'customers' AS dashboard_answers;
SELECT budget FROM billing.budget_status WHERE budget IN ('regress-app', 'regress-42') ORDER BY budget;
SELECT billing.check_alerts('2026-10-31') >= 0 AS alerts_answer;
SELECT count(*) FROM billing.issue_statements('2026-10-01', allow_open => true);
-- allowance() is a gate: for a customer whose spend cannot be read, it
-- fails closed, with the error, rather than allow on a figure too low.
SELECT allowed FROM billing.allowance(customer => '42');
DELETE FROM billing.budgets WHERE name IN ('regress-app', 'regress-42');
SELECT billing.untrack_customers('chat_messages');
SELECT * FROM billing.costs('2026-10-01', '2026-11-01', customer => '42');
-- Renames made by any command, or on a parent of the lookup, are followed;
-- a column dropped by DROP DOMAIN ... CASCADE is refused like DROP COLUMN.
CREATE DOMAIN account_id AS bigint;
CREATE TABLE chats_all (id bigint, region text, account account_id, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE chats_eu PARTITION OF chats_all FOR VALUES IN ('eu');
CREATE UNIQUE INDEX chats_eu_id ON chats_eu (id);
INSERT INTO chats_all VALUES (1, 'eu', 42);
SELECT billing.track_customers('chat_messages', 'chats_eu', customer_column => 'account');
ALTER TABLE chats_all RENAME COLUMN account TO owner_account;
ALTER VIEW chats_all RENAME COLUMN id TO chat;
SELECT lookup_key, customer_column FROM billing.customer_sources WHERE lookup = 'chats_eu'::regclass;
SELECT customer, openai_cost FROM billing.costs('2026-10-01', '2026-11-01', customer => '42');
DROP DOMAIN account_id CASCADE;
SELECT billing.untrack_customers('chat_messages');
-- Untracked already: an error, as untrack_messages gives.
SELECT billing.untrack_customers('chat_messages');
-- NULL arguments are named (they were an error about formatting a NULL
-- identifier); a blank data member is refused as '' is.
SELECT billing.track_customers('chat_messages', 'chats', NULL);
SELECT billing.track_customers('chat_messages', NULL);
SELECT billing.track_message_customers('chat_messages', data_member => '   ');
DROP TABLE chats_all;
DROP DOMAIN account_id;
SELECT billing.untrack_messages('chat_messages');

-- A profiles table's e-mails belong to the profile's customer (its id):
-- 3 e-mails, then 2 more = 5 x $0.0001 = 0.0005 for customer 42 in the
-- month they are recorded.
CREATE TABLE profiles (id integer PRIMARY KEY, data jsonb);
SELECT billing.track_profile_customers('profiles');
SELECT billing.track_profiles('profiles');
SELECT billing.track_profile_customers('profiles', 'nope');
SELECT billing.track_profile_customers('profiles');
INSERT INTO profiles VALUES (42, '{"emails_sent_this_month": 3}');
UPDATE profiles SET data = '{"emails_sent_this_month": 5}' WHERE id = 42;
SELECT service, quantity, customer, origin FROM billing.aws_usage WHERE origin = 'track_profiles' ORDER BY id;
SELECT customer, aws_cost, emails FROM billing.customer_costs WHERE customer = '42';
SELECT billing.untrack_profiles('profiles');
SELECT count(*) AS profile_customers FROM billing.profile_customers;
DROP TABLE profiles;
-- A mapping table dropped: its conversations belong to no one, reads go on.
CREATE TABLE gone (id text PRIMARY KEY, user_id text);
SELECT billing.track_customers('messages', 'gone');
DROP TABLE gone;
SELECT customer, month, openai_cost FROM billing.customer_costs WHERE customer IS DISTINCT FROM '42' ORDER BY month, customer NULLS FIRST;   -- October 0.022, November 0.15, all no one's
SELECT billing.track_customers('messages', 'conversations');

-- Leave the database as the next tests expect it.
SELECT billing.untrack_messages('messages');
DROP TABLE messages, conversations, loose, chats, chat_messages;
DELETE FROM billing.aws_usage;
