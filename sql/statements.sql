-- Statements: issuing a month freezes a numbered statement per customer,
-- with line items whose total is the views' total; later changes become
-- adjustment lines on the next statement; issued statements never change.
-- Every figure is computed by hand in the comments.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

CREATE TABLE conversations (id text PRIMARY KEY, user_id text);
CREATE TABLE messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                       created_at timestamptz);
CREATE INDEX ON messages (created_at);
INSERT INTO conversations VALUES ('c1', 'alice'), ('c2', 'bob'), ('c3', NULL);
-- October 2026 (gpt-4o $2.50 input, $1.25 cached input, $10.00 output per 1M;
-- gpt-4o-mini $0.15 / $0.60, the estimate model):
-- a  c1 gpt-4o 1000 prompt (400 cached) + 100 completion:
--       600 x 2.5/1M + 400 x 1.25/1M + 100 x 10/1M = 0.0015 + 0.0005 + 0.001 = 0.003
-- b  c1 gpt-9 (no price) 7 prompt: unpriced, 0
-- c  c2 gpt-4o 2000 prompt = 0.005
-- d  c2 a question of 16 characters, then e, a reply of 12 characters
--       without usage: its prompt is estimated from c2's earlier messages, c
--       (1 character: 1 token) and d (16 characters: 4 tokens), 5 tokens, its
--       completion 3 tokens, at gpt-4o-mini:
--       5 x 0.15/1M + 3 x 0.6/1M = 0.00000075 + 0.0000018 = 0.00000255
-- f  c3 (no customer) gpt-4o 400 prompt = 0.001
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c1', 'assistant', 'a', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 100,
                              "prompt_tokens_details": {"cached_tokens": 400}}', '2026-10-05 10:00'),
  ('c1', 'assistant', 'b', '{"model": "gpt-9", "prompt_tokens": 7, "completion_tokens": 0}', '2026-10-07 10:00'),
  ('c2', 'assistant', 'c', '{"model": "gpt-4o", "prompt_tokens": 2000, "completion_tokens": 0}', '2026-10-06 10:00'),
  ('c2', 'user', 'what is the time', '{}', '2026-10-06 11:00'),
  ('c2', 'assistant', 'twelve chars', '{}', '2026-10-06 11:01'),
  ('c3', 'assistant', 'f', '{"model": "gpt-4o", "prompt_tokens": 400, "completion_tokens": 0}', '2026-10-07 10:00');
SELECT backfilled FROM billing.track_messages('messages');
SELECT billing.track_customers('messages', 'conversations');
-- alice's e-mails: 1000 x $0.0001 = 0.10
SELECT billing.record_customer_usage('alice', 'ses', 1000, '2026-10-10') > 0 AS recorded;

-- Refused: not a month's first day, a month that has not ended.
SELECT * FROM billing.issue_statements('2026-10-15');
SELECT * FROM billing.issue_statements('9000-01-01');

-- October: alice 0.003 + 0.10 = 0.103, bob 0.005 + 0.00000255 = 0.00500255;
-- c3's usage has no customer: no statement. (allow_open: the test holds
-- at any date, including dates before October 2026.)
SELECT number, customer, month, usage_total, adjustments_total, total FROM billing.issue_statements('2026-10-01', true);
SELECT s.number, l.line, l.kind, l.source, l.item, l.description, l.quantity, l.unit_price, l.price_name,
       l.price_effective_from, l.amount
  FROM billing.statement_lines AS l JOIN billing.statements AS s ON s.id = l.statement_id ORDER BY s.id, l.line;
-- Each statement's total is its lines' sum, and the views' total.
SELECT s.customer, s.total, (SELECT sum(l.amount) FROM billing.statement_lines AS l WHERE l.statement_id = s.id) AS lines,
       c.total_cost AS views
  FROM billing.statements AS s
  JOIN billing.customer_costs AS c ON c.customer = s.customer AND c.month = s.month ORDER BY s.id;
-- Issuing it again changes nothing (the same two statements).
SELECT number, customer, total FROM billing.issue_statements('2026-10-01', true);
SELECT count(*) AS statements, (SELECT count(*) FROM billing.statement_lines) AS lines FROM billing.statements;

-- Issued statements never change.
UPDATE billing.statements SET total = 0;
DELETE FROM billing.statement_lines;
TRUNCATE billing.statements CASCADE;
DELETE FROM billing.issued_months;

-- Changes to October after it was issued:
-- - a back-dated write: c2, 2026-10-20, gpt-4o 1000 prompt = +0.0025 (bob)
-- - a deleted message: a (alice) -0.003
-- - c3 moves to alice: +0.001 (alice)
-- - a price correction: gpt-4o-mini costs $0.30 input from 2026-10-01:
--   bob's estimate becomes 5 x 0.3/1M + 3 x 0.6/1M = 0.0000015 + 0.0000018 = 0.0000033, +0.00000075
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c2', 'assistant', 'g', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0}', '2026-10-20 10:00');
DELETE FROM messages WHERE content = 'a';
UPDATE conversations SET user_id = 'alice' WHERE id = 'c3';
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('gpt-4o-mini', '2026-10-01', 0.30, 0.60);
-- Pending: alice -0.003 + 0.001 = -0.002 (0.101 in the views, 0.103
-- billed), bob 0.0025 + 0.00000075 = 0.00250075.
SELECT customer, month, statement_id, views_total, billed_total, amount FROM billing.pending_adjustments ORDER BY customer;
-- Issued plus pending equal the views.
SELECT c.customer, c.total_cost = s.total + coalesce(p.amount, 0) AS equal
  FROM billing.customer_costs AS c
  JOIN billing.statements AS s ON s.customer = c.customer AND s.month = c.month
  LEFT JOIN billing.pending_adjustments AS p ON p.customer = c.customer AND p.month = c.month
 WHERE c.month = '2026-10-01' ORDER BY 1;

-- November: a message of bob's (gpt-4o 100 completion = 100 x 10/1M = 0.001).
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c2', 'assistant', 'h', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 100}', '2026-11-03 10:00');
-- November's statements carry October's adjustments, each pointing at the
-- original statement:
-- alice: credits of a per kind of token (cached 400: -0.0005, output 100:
--   -0.001), input tokens 600 - 400 (c3's) = 200 fewer: -0.0005; total -0.002
-- bob: usage 0.001; debit 1000 input tokens 0.0025; the estimate at the old
--   price row credited (5 x 0.15/1M, 3 x 0.6/1M), at the new one debited
--   (5 x 0.3/1M, 3 x 0.6/1M): -0.00000075 - 0.0000018 + 0.0000015 + 0.0000018;
--   total 0.001 + 0.00250075 = 0.00350075
SELECT number, customer, month, usage_total, adjustments_total, total FROM billing.issue_statements('2026-11-01', true);
SELECT s.number, l.line, l.kind, l.month, o.number AS adjusts, l.item, l.description, l.quantity, l.unit_price,
       l.price_name, l.price_effective_from, l.amount
  FROM billing.statement_lines AS l JOIN billing.statements AS s ON s.id = l.statement_id
  LEFT JOIN billing.statements AS o ON o.id = l.adjusts
 WHERE s.month = '2026-11-01' ORDER BY s.id, l.line;
-- Nothing is pending any more: issued statements and their adjustments
-- equal the views, month by month.
SELECT count(*) AS pending FROM billing.pending_adjustments;
SELECT c.customer, c.month, c.total_cost,
       (SELECT sum(l.amount) FROM billing.statement_lines AS l JOIN billing.statements AS s ON s.id = l.statement_id
         WHERE s.customer = c.customer AND l.month = c.month) AS billed
  FROM billing.customer_costs AS c WHERE c.customer IS NOT NULL ORDER BY 2, 1;

-- A customer whose only change is to an issued month still gets a
-- statement: c1 (alice) gets a back-dated November message; December has
-- no usage. 100 x 2.5/1M = 0.00025.
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c1', 'assistant', 'i', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 0}', '2026-11-20 10:00');
SELECT billing.merge() >= 0 AS merged;
SELECT number, customer, month, usage_total, adjustments_total, total FROM billing.issue_statements('2026-12-01', allow_open => true);
SELECT l.kind, l.month, o.number AS adjusts, l.description, l.quantity, l.amount
  FROM billing.statement_lines AS l JOIN billing.statements AS s ON s.id = l.statement_id
  LEFT JOIN billing.statements AS o ON o.id = l.adjusts
 WHERE s.month = '2026-12-01' ORDER BY s.id, l.line;
SELECT month, statements FROM billing.issued_months ORDER BY month;

-- CSV export: every decimal kept (0.00000075, -0.0000018, ...), adjustments
-- with the number of the statement they correct.
COPY (SELECT * FROM billing.export_statement_lines('2026-11-01')) TO STDOUT WITH CSV HEADER;
COPY (SELECT * FROM billing.export_costs('2026-10-01', '2026-12-01', 'month')) TO STDOUT WITH CSV HEADER;
SELECT number, customer, month, usage_total, adjustments_total, total FROM billing.export_statements('2026-10-01');
-- A month is given by its first day: another day is refused (it matched no
-- statement, and the file was silently empty).
SELECT count(*) FROM billing.export_statements('2026-11-15');
SELECT count(*) FROM billing.export_statement_lines('2026-11-15');

-- An ordinary role cannot change them either, nor issue.
CREATE ROLE statement_reader;
GRANT USAGE ON SCHEMA billing TO statement_reader;
GRANT SELECT, UPDATE, DELETE ON billing.statements TO statement_reader;
SET ROLE statement_reader;
UPDATE billing.statements SET total = 0 WHERE customer = 'alice';
DELETE FROM billing.statements;
SELECT * FROM billing.issue_statements('2026-09-01');
RESET ROLE;
REVOKE ALL ON billing.statements FROM statement_reader;
REVOKE ALL ON SCHEMA billing FROM statement_reader;
DROP ROLE statement_reader;

-- A month issued after later ones carries no adjustment of theirs. alice
-- gets a back-dated September message (gpt-4o 200 prompt = 200 x 2.5/1M =
-- 0.0005), bob a late November one (gpt-4o 10 completion = 10 x 10/1M =
-- 0.0001). September's statements: alice's usage, 0.0005, and nothing
-- else (bob's November change stays pending, for a month after November).
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c1', 'assistant', 's', '{"model": "gpt-4o", "prompt_tokens": 200, "completion_tokens": 0}', '2026-09-10 10:00'),
  ('c2', 'assistant', 't', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 10}', '2026-11-25 10:00');
SELECT number, customer, month, usage_total, adjustments_total, total FROM billing.issue_statements('2026-09-01', true);
SELECT count(*) AS adjustment_lines FROM billing.statement_lines AS l JOIN billing.statements AS s ON s.id = l.statement_id
 WHERE s.month = '2026-09-01' AND l.kind <> 'usage';
SELECT customer, month, amount FROM billing.pending_adjustments ORDER BY customer, month;

-- A customer id of any length: one of 4,200 bytes gets its statement, and
-- so does alice, in March 2027 (and bob, for his November change: 0.0001).
-- gpt-4o 100 + 50 tokens = 100 x 2.5/1M + 50 x 10/1M = $0.00075 each; the
-- long one also sent 10 e-mails ($0.001).
INSERT INTO conversations VALUES ('c9', repeat('long-customer-', 300));
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('c9', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2027-03-05 10:00'),
  ('c1', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2027-03-05 10:00');
SELECT billing.record_customer_usage(repeat('long-customer-', 300), 'ses', 10, '2027-03-06') > 0 AS recorded;
SELECT left(customer, 14) AS customer, octet_length(customer) AS bytes, usage_total, total
  FROM billing.issue_statements('2027-03-01', true) ORDER BY 1;

SELECT billing.untrack_messages('messages');
DROP TABLE messages, conversations;
DELETE FROM billing.aws_usage;
DELETE FROM billing.model_prices WHERE model = 'gpt-4o-mini' AND effective_from = '2026-10-01';
-- Issued statements cannot be deleted: the next tests start from a new install.
DROP EXTENSION billing;
CREATE EXTENSION billing;
