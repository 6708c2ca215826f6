-- The /api/billing payload computed with plain SQL straight from
-- public.messages and public.profiles, the way a user would write it without
-- the billing extension: it reads no billing function, only the price
-- catalog table billing.model_prices. Used by bench/dashboard.sh, which
-- checks that it returns the same dollars as billing.dashboard().
--
--   psql -X -At -f bench/dashboard-plain.sql
--
-- * period: the current UTC month; history: it and the 5 months before it;
-- * a message's cost: the price row of its exact model name in effect at its
--   created_at, else that of the name without a dated suffix (-YYYY-MM-DD or
--   -MMDD), with validity ranges from a self-join: the plain-SQL cost of
--   bench/run.sh. Cached prompt tokens at the cached-input price. Tokens are
--   summed per month, conversation and price, and the dollars computed once
--   per group with numeric (exact);
-- * a reply stored without token counts is estimated as billing documents it:
--   completion = ceil(characters / 4), prompt = ceil(characters / 4) summed
--   over every earlier message of its conversation (a correlated subquery on
--   the conversation_id index; it runs only for those replies), priced as
--   its model, else gpt-4o-mini; its estimated tokens count in `tokens`, as
--   in dashboard() since billing 0.4;
-- * AWS: the owner profile's emails_sent_this_month x $0.10 / 1,000, in the
--   current month (the seed's counter);
-- * top 50 conversations of the current month by cost.
-- The last resort of billing's name resolution (lower-case, trim, strip
-- "openai/") is not done: the generated data never needs it.
WITH prices AS NOT MATERIALIZED (
    SELECT p.model, p.effective_from,
           coalesce(min(n.effective_from), 'infinity') AS effective_to,
           p.input_per_1m,
           coalesce(p.cached_input_per_1m, p.input_per_1m) AS cached_input_per_1m,
           p.output_per_1m
      FROM billing.model_prices AS p
      LEFT JOIN billing.model_prices AS n
        ON n.model = p.model AND n.effective_from > p.effective_from
     GROUP BY p.model, p.effective_from
), usage AS (
    SELECT m.conversation_id,
           m.created_at,
           date_trunc('month', m.created_at AT TIME ZONE 'UTC')::date AS month,
           coalesce(m.data->>'model', CASE WHEN e.estimated THEN 'gpt-4o-mini' END) AS model,
           CASE WHEN e.estimated
                THEN (SELECT coalesce(sum(ceil(char_length(p.content) / 4.0)), 0)::bigint
                        FROM messages AS p
                       WHERE p.conversation_id = m.conversation_id
                         AND (p.created_at, p.id) < (m.created_at, m.id))
                ELSE (m.data->>'prompt_tokens')::bigint END AS prompt,
           CASE WHEN e.estimated THEN 0
                ELSE coalesce((m.data->'prompt_tokens_details'->>'cached_tokens')::bigint, 0) END AS cached,
           CASE WHEN e.estimated THEN ceil(char_length(m.content) / 4.0)::bigint
                ELSE (m.data->>'completion_tokens')::bigint END AS completion
      FROM messages AS m
     CROSS JOIN LATERAL (
           SELECT m.role = 'assistant'
                  AND NOT coalesce(m.data ?| array['prompt_tokens', 'completion_tokens', 'input_tokens',
                                                   'output_tokens', 'tokens', 'total_tokens', 'usage'],
                                   false) AS estimated) AS e
     WHERE m.created_at >= (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '5 months') AT TIME ZONE 'UTC'
       AND m.created_at < (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'
), per_price AS (
    SELECT u.month, u.conversation_id,
           coalesce(e.input_per_1m, s.input_per_1m) AS input_per_1m,
           coalesce(e.cached_input_per_1m, s.cached_input_per_1m) AS cached_input_per_1m,
           coalesce(e.output_per_1m, s.output_per_1m) AS output_per_1m,
           sum(u.prompt - u.cached) AS uncached, sum(u.cached) AS cached, sum(u.completion) AS completion,
           sum(coalesce(u.prompt, 0) + coalesce(u.completion, 0)) AS tokens, count(*) AS messages
      FROM usage AS u
      LEFT JOIN prices AS e
        ON e.model = u.model
       AND u.created_at >= e.effective_from AND u.created_at < e.effective_to
      LEFT JOIN prices AS s
        ON s.model = CASE WHEN e.model IS NULL
                          THEN regexp_replace(u.model, '-(\d{4}-\d{2}-\d{2}|\d{4})$', '') END
       AND u.created_at >= s.effective_from AND u.created_at < s.effective_to
     GROUP BY 1, 2, 3, 4, 5
), conversations AS (
    -- (x 0.000001, not / 1000000: numeric multiplication is exact)
    SELECT month, conversation_id,
           coalesce(sum(uncached * input_per_1m + cached * cached_input_per_1m
                        + completion * output_per_1m), 0) * 0.000001 AS cost,
           sum(tokens) AS tokens, sum(messages) AS messages
      FROM per_price
     GROUP BY 1, 2
), period AS (
    SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date AS month,
           (SELECT coalesce(sum((p.data->>'emails_sent_this_month')::numeric), 0)
              FROM profiles AS p WHERE p.type = 'owner') AS emails
), cards AS (
    SELECT coalesce(sum(c.cost), 0) AS cost, coalesce(sum(c.tokens), 0) AS tokens,
           coalesce(sum(c.messages), 0) AS messages
      FROM conversations AS c, period
     WHERE c.month = period.month
)
SELECT jsonb_build_object(
           'period', jsonb_build_object(
               'start', period.month::timestamp AT TIME ZONE 'UTC',
               'end', (period.month + interval '1 month') AT TIME ZONE 'UTC'),
           'openai', jsonb_build_object('cost', cards.cost, 'tokens', cards.tokens, 'messages', cards.messages),
           'aws', jsonb_build_object('cost', period.emails * 0.0001, 'emails', period.emails),
           'total_cost', cards.cost + period.emails * 0.0001,
           'conversations', (
               SELECT coalesce(jsonb_agg(jsonb_build_object('conversation_id', t.conversation_id, 'cost', t.cost,
                                                            'tokens', t.tokens, 'messages', t.messages)
                                         ORDER BY t.cost DESC, t.conversation_id::text), '[]')
                 FROM (SELECT c.* FROM conversations AS c
                        WHERE c.month = period.month
                        ORDER BY c.cost DESC, c.conversation_id::text
                        LIMIT 50) AS t),
           'history', (
               SELECT jsonb_agg(jsonb_build_object(
                          'month', to_char(g.m, 'YYYY-MM'),
                          'openai', coalesce(h.cost, 0),
                          'aws', CASE WHEN g.m = period.month THEN period.emails * 0.0001 ELSE 0 END,
                          'total', coalesce(h.cost, 0)
                                   + CASE WHEN g.m = period.month THEN period.emails * 0.0001 ELSE 0 END)
                          ORDER BY g.m)
                 FROM generate_series(period.month - interval '5 months', period.month, interval '1 month') AS g(m)
                 LEFT JOIN (SELECT c.month, sum(c.cost) AS cost FROM conversations AS c GROUP BY c.month) AS h
                        ON h.month = g.m))
  FROM period, cards;
