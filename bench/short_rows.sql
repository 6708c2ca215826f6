-- Benchmark data of short rows: public.short_messages, the columns of the
-- app's messages table (bench/generate.sql) with contents of 12 to 84
-- characters, so that taking a row apart costs little and the cost
-- aggregate's own work per row shows.
--
--   psql -v messages=1000000 -f bench/short_rows.sql
--
-- Shape, for :messages = M (default 1,000,000):
-- * M messages, every one an assistant reply carrying usage
--   {"tokens": p+c, "prompt_tokens": p, "completion_tokens": c, "model": m}
--   (the seed's keys; no user messages, no rows without usage: each row
--   costs the aggregate the most it can);
-- * the model drawn per row, so that consecutive rows change model: the
--   seed's five, gpt-4o-mini 60%, gpt-4o-mini-2024-07-18 12%, gpt-4o 15%,
--   gpt-4o-2024-08-06 8%, gpt-4o-2024-05-13 5% (names priced as stored, by
--   their family, and by an exact row whose family also has one);
-- * created_at spread evenly, in insertion order, over the fixed year from
--   2024-09-01 to 2025-09-01 UTC, which crosses gpt-4o's price change of
--   2024-10-02: the price in effect depends on the row's date. Fixed dates,
--   not now(): every model is priced on every row, on any day;
-- * contents of 12 to 84 characters (uniform), M/100 conversations of 100
--   consecutive messages;
-- * no index but the primary key: every query of bench/row_cost.sh reads
--   the whole table.
--
-- Deterministic: setseed() fixes every draw, rows are inserted in id order.
-- The table is created and filled in one transaction (no WAL under
-- wal_level = minimal); about 10 s for 1M rows.

\set ON_ERROR_STOP on
\if :{?messages}
\else
\set messages 1000000
\endif

SET client_min_messages = warning;
SET timezone = 'UTC';

SELECT setseed(0.1984) AS seed \gset

BEGIN;

DROP TABLE IF EXISTS public.short_messages;

CREATE TABLE public.short_messages (
    id              bigserial   PRIMARY KEY,
    conversation_id uuid        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content         text        NOT NULL,
    data            jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Text to cut contents from: 2 kB of hex "words".
CREATE TEMP TABLE short_text AS
SELECT string_agg(substr(md5(i::text), 1, 3 + i % 9), ' ' ORDER BY i) AS block
  FROM generate_series(1, 300) AS i;

INSERT INTO public.short_messages (conversation_id, role, content, data, created_at)
SELECT overlay(overlay(md5('short conversation ' || (r.i / 100)) PLACING '4' FROM 13) PLACING '8' FROM 17)::uuid,
       'assistant',
       substr(t.block, 1 + floor(r.start_draw * 1500)::int, 12 + floor(r.length_draw * 73)::int),
       jsonb_build_object(
           'tokens', r.p + r.c,
           'prompt_tokens', r.p,
           'completion_tokens', r.c,
           'model', CASE WHEN r.model_draw < 0.60 THEN 'gpt-4o-mini'
                         WHEN r.model_draw < 0.72 THEN 'gpt-4o-mini-2024-07-18'
                         WHEN r.model_draw < 0.87 THEN 'gpt-4o'
                         WHEN r.model_draw < 0.95 THEN 'gpt-4o-2024-08-06'
                         ELSE 'gpt-4o-2024-05-13' END),
       timestamptz '2024-09-01 00:00+00'
           + (r.i + 0.9 * r.time_draw) / :messages * (timestamptz '2025-09-01 00:00+00' - timestamptz '2024-09-01 00:00+00')
  FROM (SELECT i,
               random() AS start_draw,
               random() AS length_draw,
               random() AS model_draw,
               random() AS time_draw,
               200 + floor(random() * 8000)::bigint AS p,
               20 + floor(random() ^ 2 * 1200)::bigint AS c
          FROM generate_series(0, :messages - 1) AS i) AS r,
       short_text AS t
 ORDER BY r.i;

COMMIT;

VACUUM (FREEZE, ANALYZE) public.short_messages;
