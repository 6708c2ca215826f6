-- billing.forecast(p_at): the month's end cost per source (README
-- "Forecast"), at fixed dates (p_at passed explicitly) in 2025. Prices:
-- gpt-4o $2.50 per 1M prompt tokens, so a reply of 400,000 prompt tokens
-- costs exactly $1.00; SES $0.0001 per e-mail. month_time_zone is UTC.
SET timezone = 'UTC';
-- Nothing left by earlier tests that the forecast would count.
SELECT (SELECT count(*) FROM billing.tracked_tables) AS tracked, (SELECT count(*) FROM billing.aws_usage) AS aws,
       (SELECT count(*) FROM billing.aws_actuals) AS actuals, (SELECT count(*) FROM billing.aws_usage_patterns) AS patterns;

CREATE TABLE fc_messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                          created_at timestamptz);
CREATE INDEX ON fc_messages (created_at);
-- $1.00 replies:
--   March 2025 (the first month with usage): 2, on the 10th;
--   April (30 days): 30, one a day at 12:00 ($30);
--   May (31 days): 62, two a day at 06:00 and 18:00 ($62);
--   June (30 days): one a day at 12:00 on the 1st to the 10th ($10), one at
--   exactly 2025-06-11 00:00 and one on the 20th.
INSERT INTO fc_messages (conversation_id, role, content, data, created_at)
SELECT 'c', 'assistant', 'r', '{"model": "gpt-4o", "prompt_tokens": 400000, "completion_tokens": 0}', t
  FROM (SELECT timestamptz '2025-03-10 08:00+00' AS t UNION ALL SELECT '2025-03-10 09:00+00'
        UNION ALL SELECT generate_series('2025-04-01 12:00+00', '2025-04-30 12:00+00', interval '1 day')
        UNION ALL SELECT generate_series('2025-05-01 06:00+00', '2025-05-31 18:00+00', interval '12 hours')
        UNION ALL SELECT generate_series('2025-06-01 12:00+00', '2025-06-10 12:00+00', interval '1 day')
        UNION ALL SELECT '2025-06-11 00:00+00' UNION ALL SELECT '2025-06-20 12:00+00') AS x;
SELECT tracked, messages FROM billing.track_messages('fc_messages');
-- AWS: 10,000 e-mails in May ($1.00), 5,000 on 5 June ($0.50).
SELECT billing.record_usage('ses', 10000, '2025-05-15 00:00+00') > 0 AS recorded;
SELECT billing.record_usage('ses', 5000, '2025-06-05 00:00+00') > 0 AS recorded;
-- The month totals the forecasts are checked against.
SELECT month, source, cost FROM billing.monthly_history ORDER BY month, source;

-- === With history: 11 June 2025 00:00 =====================================
-- 10 of June's 30 days gone (f = 1/3, 20 days left). The window: April and
-- May (March, the first month with usage, is left out), 30 + 31 = 61 days.
-- The rate blend: spent + 20 x (spent / 30 + (2/3) x past daily)
--               = spent x 5/3 + past daily x 40/3.
--   openai: spent 10 (the reply at exactly 00:00 is not before p_at);
--           past daily (30 + 62) / 61 = 1.508196721... -> 1.508197;
--           forecast 10 x 5/3 + (92 / 61) x 40/3 = 16.666666667 + 20.109289617 = 36.775956284 -> 36.775956
--   aws:    spent 0.5; past daily (0 + 1) / 61 = 0.016393442... -> 0.016393;
--           forecast 0.5 x 5/3 + (1 / 61) x 40/3 = 0.833333333 + 0.218579235 = 1.051912568 -> 1.051913
--   total:  spent 10.5; past daily 93 / 61 = 1.524590164 -> 1.524590;
--           forecast 10.5 x 5/3 + (93 / 61) x 40/3 = 17.5 + 20.327868852 = 37.827868852 -> 37.827869
SELECT * FROM billing.forecast('2025-06-11 00:00+00');
-- Unmerged writes count like merged ones: a $1.00 reply on 3 June, left in
-- the ledger, moves openai to spent 11 and forecast
-- 11 x 5/3 + 20.109289617 = 18.333333333 + 20.109289617 = 38.442622951 -> 38.442623.
INSERT INTO fc_messages (conversation_id, role, content, data, created_at)
VALUES ('c', 'assistant', 'late', '{"model": "gpt-4o", "prompt_tokens": 400000, "completion_tokens": 0}', '2025-06-03 00:00+00');
SELECT source, spent, forecast FROM billing.forecast('2025-06-11 00:00+00') WHERE source = 'openai';
SELECT billing.merge() IS NOT NULL AS merged;
SELECT source, spent, forecast FROM billing.forecast('2025-06-11 00:00+00') WHERE source = 'openai';
DELETE FROM fc_messages WHERE content = 'late';
SELECT billing.merge() IS NOT NULL AS merged;

-- At the month's first instant nothing is spent and f = 0: the forecast is
-- the past daily average over the whole month: openai 30 x 92 / 61 = 45.245901639...
-- -> 45.245902; aws 30 / 61 = 0.491803; total 30 x 93 / 61 = 45.737705.
SELECT source, spent, forecast, method FROM billing.forecast('2025-06-01 00:00+00');
-- The last microsecond of June: spent 12 (all of June's replies), nearly
-- nothing left: 12 + (1e-6 / 86400) x (12 / 30 + ~0 x 92 / 61) -> 12.000000.
SELECT source, spent, forecast FROM billing.forecast('2025-06-30 23:59:59.999999+00') WHERE source = 'openai';

-- === Without history: the run rate ========================================
-- 16 April 00:00: the window would be March only, the first month: empty.
-- openai spent 15 (1st to 15th), 15 of 30 days: 15 x 30 / 15 = 30.
SELECT * FROM billing.forecast('2025-04-16 00:00+00');
-- 11 March: spent 2, 10 of 31 days: 2 x 31 / 10 = 6.2.
SELECT source, spent, forecast, method FROM billing.forecast('2025-03-11 00:00+00');
-- 10 March 12:00: 9.5 days gone: 2 x 31 / 9.5 = 6.526315789... -> 6.526316.
SELECT source, spent, forecast FROM billing.forecast('2025-03-10 12:00+00') WHERE source = 'openai';
-- May 2025 as of the 21st 00:00 (20 of 31 days gone, f = 20/31, 11 days
-- left): the window is April alone (30 days, $30: $1 a day). The rate
-- blend: spent + 11 x (spent / 31 + (11/31) x past daily).
--   openai spent 40: 40 + 11 x (40 + 11) / 31 = 40 + 561/31 = 58.096774193... -> 58.096774;
--   aws spent 1 (the e-mails of the 15th), past daily 0: 1 + 11/31 = 1.354838709... -> 1.354839;
--   total spent 41, past daily 1: 41 + 11 x (41 + 11) / 31 = 41 + 572/31 = 59.451612903... -> 59.451613.
SELECT source, spent, past_daily, past_months, forecast FROM billing.forecast('2025-05-21 00:00+00');

-- === Bad input ============================================================
SELECT * FROM billing.forecast(NULL);
SELECT * FROM billing.forecast('infinity');

-- === A forecast is never below the spend =================================
-- 3 prompt tokens of gpt-4o-mini (3 x 0.15/1M = 0.00000045) in November
-- 2031, asked half a day before its end: the projection rounds to 6
-- decimals, the spend stays exact, so the forecast is at least the spend.
BEGIN;
INSERT INTO fc_messages (conversation_id, role, content, data, created_at)
VALUES ('tiny', 'assistant', 'r', '{"model": "gpt-4o-mini", "prompt_tokens": 3, "completion_tokens": 0}', '2031-11-10 00:00+00');
SELECT source, spent, forecast >= spent AS not_below_spent
  FROM billing.forecast('2031-11-30 12:00+00') WHERE source <> 'aws';
ROLLBACK;
-- Nor after a month of credits (an actual figure of -500 in October 2031,
-- a past daily rate below zero): the forecast is the spend, 0.00000045.
BEGIN;
INSERT INTO fc_messages (conversation_id, role, content, data, created_at)
VALUES ('tiny', 'assistant', 'r', '{"model": "gpt-4o-mini", "prompt_tokens": 3, "completion_tokens": 0}', '2031-11-10 00:00+00');
INSERT INTO billing.aws_actuals (month, service, cost) VALUES ('2031-10-01', 'credits', -500);
SELECT source, spent, forecast FROM billing.forecast('2031-11-20 00:00+00') WHERE source = 'total';
ROLLBACK;

-- === A role without read access gets the readers' error ==================
CREATE ROLE fc_nobody;
SET ROLE fc_nobody;
SELECT * FROM billing.forecast('2025-06-11 00:00+00');
RESET ROLE;
DROP ROLE fc_nobody;

-- Clean up for the tests that follow.
SELECT billing.untrack_messages('fc_messages');
DROP TABLE fc_messages;
DELETE FROM billing.aws_usage;
