-- Months in the time zone of the month_time_zone setting (UTC by default):
-- boundaries computed by hand, the views and the dashboard before and after
-- a merge, the ledger path, and refused zone names.
SET timezone = 'UTC';
\set SHOW_CONTEXT never

-- UTC by default.
SELECT value FROM billing.settings WHERE name = 'month_time_zone';
SELECT billing.month_of('2026-03-01 03:00+00') AS march_in_utc,
       billing.month_start('2026-03-15') AS march_starts, billing.month_end('2026-12-31') AS december_ends;
SELECT billing.month_of('infinity') AS no_end, billing.month_start('-infinity') AS no_start;

-- A name PostgreSQL does not know is refused when it is written.
UPDATE billing.settings SET value = 'Mars/Olympus_Mons' WHERE name = 'month_time_zone';
INSERT INTO billing.settings VALUES ('month_time_zone', '');

CREATE TABLE zone_messages (
    id bigserial PRIMARY KEY,
    conversation_id text,
    role text,
    content text,
    data jsonb,
    created_at timestamptz
);
-- gpt-4o since 2024-10-02: $2.50 input, $10.00 output per 1M tokens;
-- gpt-4o-mini: $0.15 input.
INSERT INTO zone_messages (conversation_id, role, content, data, created_at) VALUES
    -- 2026-02-28 22:00 in New York (EST, UTC-5): $2.50
    ('a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}', '2026-03-01 03:00+00'),
    -- 2026-03-01 01:00 in New York: $10.00
    ('b', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 0, "completion_tokens": 1000000}', '2026-03-01 06:00+00');
SELECT tracked, backfilled, messages, problems, unpriced_models FROM billing.track_messages('zone_messages');

-- UTC: both in March.
SELECT month, source, cost FROM billing.monthly_history ORDER BY 1, 2;

-- New York: the first one moves to February. The change sends the table
-- back to being read from the source until the next merge.
UPDATE billing.settings SET value = 'america/new_york' WHERE name = 'month_time_zone';
SELECT value FROM billing.settings WHERE name = 'month_time_zone';
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'zone_messages'::regclass;
SELECT billing.month_of('2026-03-01 03:00+00') AS february, billing.month_of('2026-03-01 06:00+00') AS march,
       billing.month_start('2026-03-15') AS march_starts_at_est_midnight,
       billing.month_end('2026-03-15') AS april_starts_at_edt_midnight;
SELECT month, source, cost FROM billing.monthly_history ORDER BY 1, 2;
SELECT month, conversation_id, cost FROM billing.conversation_costs ORDER BY 1, 2;

-- After the merge the rollups hold the New York months.
SELECT billing.merge() >= 0 AS merged;
SELECT backfilled FROM billing.tracked_tables WHERE relation = 'zone_messages'::regclass;
SELECT month, model, cost FROM billing.month_usage ORDER BY 1, 2;
SELECT month, source, cost FROM billing.monthly_history ORDER BY 1, 2;

-- An unmerged write: 2026-04-01 03:00 UTC is 2026-03-31 23:00 in New York
-- (EDT, UTC-4): March, $0.15.
INSERT INTO zone_messages (conversation_id, role, content, data, created_at) VALUES
    ('c', 'assistant', 'x', '{"model": "gpt-4o-mini", "prompt_tokens": 1000000, "completion_tokens": 0}',
     '2026-04-01 03:00+00');
SELECT month, source, cost FROM billing.monthly_history ORDER BY 1, 2;

-- The dashboard's period is the New York month: 2026-03-01 05:00 UTC to
-- 2026-04-01 04:00 UTC; March = 10.00 + 0.15, February = 2.50.
SELECT d -> 'period' AS period, d -> 'openai' -> 'cost' AS openai_cost,
       jsonb_path_query_array(d, '$.conversations[*].conversation_id') AS conversations,
       d -> 'history' AS history
  FROM billing.dashboard(2, 50, '2026-03-15 12:00+00') AS d;
-- The period's bounds are written in the month zone, whatever the session's
-- TimeZone (in Pago Pago, UTC-11, the same instants would read 2026-02-28
-- 18:00 and 2026-03-31 17:00, and an app labelling the card by the date
-- would show February), and name the same instants.
SET timezone = 'Pacific/Pago_Pago';
SELECT d -> 'period' AS period,
       (d -> 'period' ->> 'start')::timestamptz = '2026-03-01 05:00+00' AS same_start,
       (d -> 'period' ->> 'end')::timestamptz = '2026-04-01 04:00+00' AS same_end
  FROM billing.dashboard(2, 50, '2026-03-15 12:00+00') AS d;
SET timezone = 'UTC';
-- The same month asked as an explicit range.
SELECT billing.dashboard('2026-03-01 05:00+00', '2026-04-01 04:00+00', 50, 2)
     = billing.dashboard(2, 50, '2026-03-15 12:00+00') AS same_payload;
SELECT billing.merge() >= 0 AS merged;
SELECT month, source, cost FROM billing.monthly_history ORDER BY 1, 2;

-- AWS usage follows the same months: 1,000 e-mails at $0.10 per 1,000,
-- sent 2026-02-28 22:00 in New York.
SELECT billing.record_usage('ses', 1000, '2026-03-01 03:00+00') IS NOT NULL AS recorded;
SELECT month, source, cost, emails FROM billing.monthly_history WHERE source = 'aws';
DELETE FROM billing.aws_usage;

-- Back to UTC by TRUNCATE billing.settings (a deleted row means the
-- default: UTC months, gpt-4o-mini for estimates): everything in March
-- again, and the rollups agree once merged.
TRUNCATE billing.settings;
SELECT month, source, cost FROM billing.monthly_history ORDER BY 1, 2;
SELECT billing.merge() >= 0 AS merged;
SELECT month, model, cost FROM billing.month_usage ORDER BY 1, 2;
-- Writes after that merge are kept by the next one, an estimated reply
-- priced as the default estimate model: 'sixteen chars!!!' (4 tokens) then
-- a reply 'twelve chars' without usage (3 completion tokens, prompt 4), as
-- gpt-4o-mini: 4 x 0.15/1M + 3 x 0.60/1M = 0.0000024; April 0.1500024.
INSERT INTO zone_messages (conversation_id, role, content, data, created_at) VALUES
    ('e', 'user', 'sixteen chars!!!', '{}', '2026-04-02 10:00+00'),
    ('e', 'assistant', 'twelve chars', '{}', '2026-04-02 10:01+00');
SELECT month, source, cost FROM billing.monthly_history ORDER BY 1, 2;
SELECT billing.merge() >= 0 AS merged;
SELECT month, source, cost FROM billing.monthly_history ORDER BY 1, 2;
SELECT count(*) AS unmerged FROM billing.usage_ledger;
INSERT INTO billing.settings VALUES ('estimate_model', 'gpt-4o-mini'), ('month_time_zone', 'UTC');

SELECT billing.untrack_messages('zone_messages');
DROP TABLE zone_messages;
