-- AWS usage estimated from usage patterns (billing.aws_usage_patterns),
-- where a month has no recorded usage and no actual figure for a service.
-- Prices: SES $0.0001 per e-mail, S3 $0.023 per GB-month, Lambda
-- $0.0000002 per request, $0.0000166667 per GB-second.
SET timezone = 'UTC';
CREATE TABLE pattern_messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text,
                               data jsonb, created_at timestamptz);
SELECT tracked, messages FROM billing.track_messages('pattern_messages');
-- November: 10 messages and 25 e-mails; October: only 4 e-mails; no
-- activity in September.
INSERT INTO pattern_messages (conversation_id, role, content, data, created_at)
SELECT 'p', 'assistant', 'x', '{"model": "gpt-4o-mini", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-05'
  FROM generate_series(1, 10);
SELECT billing.record_usage('ses', 25, '2026-11-10') > 0 AS recorded;
SELECT billing.record_usage('ses', 4, '2026-10-10') > 0 AS recorded;
INSERT INTO billing.aws_usage_patterns (service, quantity, per, note) VALUES
  ('s3', 2.5, 'month', 'uploads bucket'),
  ('lambda', 2, 'message', 'two invocations per reply'),
  ('lambda_duration', 0.25, 'email', 'GB-seconds to send one e-mail');
-- November: s3 2.5 x 0.023 = 0.0575; lambda 10 x 2 = 20 requests x 0.0000002
-- = 0.000004; lambda_duration 25 x 0.25 = 6.25 GB-s x 0.0000166667 =
-- 0.000104166875; ses 25 x 0.0001 = 0.0025 (recorded).
-- Total 0.060108166875.
-- October: s3 0.0575; lambda 0 requests; lambda_duration 4 x 0.25 = 1 GB-s
-- = 0.0000166667; ses 0.0004. Total 0.0579166667.
SELECT month, service, quantity, cost, basis FROM billing._aws_usage_by_service('2026-09-01', '2026-12-01') ORDER BY month, service;
SELECT month, cost, basis FROM billing.monthly_history WHERE source = 'aws' ORDER BY month;
SELECT d -> 'aws' ->> 'cost' AS cost, d -> 'aws' ->> 'source' AS source
  FROM billing.dashboard('2026-11-01', '2026-12-01', 0, 1) AS d;
-- Recorded usage replaces the pattern for that month and service: 3
-- GB-months of S3 recorded in November, 3 x 0.023 = 0.069.
SELECT billing.record_usage('s3', 3, '2026-11-15') > 0 AS recorded;
SELECT service, quantity, cost, basis FROM billing._aws_usage_by_service('2026-11-01', '2026-12-01') WHERE service = 's3';
-- An actual figure replaces both.
INSERT INTO billing.aws_actuals (month, service, cost) VALUES ('2026-11-01', 'lambda', 0.01);
SELECT service, cost, basis FROM billing._aws_usage_by_service('2026-11-01', '2026-12-01') WHERE service = 'lambda';
-- Bad patterns are refused by the table's checks.
INSERT INTO billing.aws_usage_patterns VALUES ('sqs', -1, 'month');
INSERT INTO billing.aws_usage_patterns VALUES ('sqs', 1, 'week');
INSERT INTO billing.aws_usage_patterns VALUES ('SQS', 1, 'month');
DELETE FROM billing.aws_usage_patterns;
DELETE FROM billing.aws_actuals;
DELETE FROM billing.aws_usage;
SELECT billing.untrack_messages('pattern_messages');
