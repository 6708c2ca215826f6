-- The month's end cost, forecast (README "Forecast"): billing.forecast(p_at)
-- says, per source (openai, aws, total), what p_at's month had cost at p_at
-- and what it will have cost at its end, and names the method.
-- Relies on views.sql (billing.history) and reads.sql.

-- The method, chosen by the backtest of bench/forecast_backtest.sh (bench/README.md
-- "Forecast backtest"):
-- * "month so far + past daily average": spent + remaining days x the
--   daily average of the history window. The window is the (up to) 3
--   whole months before p_at's month, left out those before or equal to
--   the first month with any cost (that month is taken as partial: an app
--   starts in the middle of a month). It is the run rate and the history
--   blended by the elapsed fraction f of the month:
--   f x (spent / f) + (1 - f) x (past daily x days) = spent + (1 - f) x days x past daily.
-- * "run rate" when the window is empty (no whole month of history):
--   spent x days / elapsed days, the elapsed time counted as at least one
--   day, as billing.budget_status's forecast.
-- spent is what billing.history(month start, p_at) shows: only usage with
-- time < p_at counts, so that the forecast can be asked as of a past day.
-- That read of a partial month reads the tracked tables' rows of the month
-- up to p_at (by their created_at index); the window's whole months come
-- from the rollups. AWS: recorded usage before p_at and the month's actual
-- figures when loaded; the usage patterns count only whole months, so a
-- partial month's spent (and forecast) leaves them out.
CREATE FUNCTION billing.forecast(p_at timestamptz DEFAULT now())
RETURNS TABLE (source text, period date, spent numeric, past_daily numeric, past_months integer,
               forecast numeric, method text)
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m date;
    m_from timestamptz;
    m_to timestamptz;
    m_days numeric;      -- the month's length in days
    m_elapsed numeric;   -- days of it gone at p_at
BEGIN
    IF p_at IS NULL OR NOT isfinite(p_at) THEN
        RAISE EXCEPTION 'billing.forecast: p_at must be a finite time, got %', coalesce(p_at::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM billing._require_reader();
    m := billing.month_of(p_at);
    m_from := billing.month_start(m);
    m_to := billing.month_end(m);
    m_days := extract(epoch FROM m_to - m_from) / 86400;
    m_elapsed := extract(epoch FROM p_at - m_from) / 86400;
    RETURN QUERY
    WITH past AS MATERIALIZED (
        SELECT h.month, h.source, h.cost FROM billing.history('-infinity', m_from) AS h
    ), win AS MATERIALIZED (
        SELECT g.month::date AS month,
               extract(epoch FROM billing.month_end(g.month::date) - billing.month_start(g.month::date)) / 86400 AS days
          FROM (SELECT min(p.month) AS first_month FROM past AS p) AS f
         CROSS JOIN LATERAL generate_series(greatest((m - interval '3 months')::date, f.first_month + interval '1 month'),
                                            m - interval '1 month', interval '1 month') AS g(month)
         WHERE f.first_month IS NOT NULL
    ), rate AS (
        SELECT s.source,
               (SELECT sum(p.cost) FROM past AS p JOIN win AS w ON w.month = p.month WHERE p.source = s.source)
                   AS cost,
               (SELECT sum(w.days) FROM win AS w) AS days,
               (SELECT count(*) FROM win)::integer AS months
          FROM (VALUES ('openai'), ('aws')) AS s(source)
    ), now_ AS (
        SELECT h.source, sum(h.cost) AS cost FROM billing.history(m_from, p_at) AS h GROUP BY h.source
    ), per AS (
        SELECT r.source, coalesce(n.cost, 0) AS spent,
               CASE WHEN r.months > 0 THEN coalesce(r.cost, 0) / r.days END AS daily, r.months
          FROM rate AS r LEFT JOIN now_ AS n ON n.source = r.source
    ), f AS (
        SELECT p.source, p.spent, p.daily, p.months,
               CASE WHEN p.months > 0 THEN p.spent + (m_days - m_elapsed) * p.daily
                    ELSE p.spent * m_days / greatest(m_elapsed, 1) END AS forecast
          FROM per AS p
    )
    SELECT x.source, m, x.spent, round(x.daily, 6), x.months, round(x.forecast, 6),
           CASE WHEN x.months > 0 THEN 'month so far + past daily average' ELSE 'run rate' END
      FROM (SELECT f.source, f.spent, f.daily, f.months, f.forecast, 1 AS o FROM f WHERE f.source = 'openai'
            UNION ALL
            SELECT f.source, f.spent, f.daily, f.months, f.forecast, 2 FROM f WHERE f.source = 'aws'
            UNION ALL
            SELECT 'total', sum(f.spent), sum(f.daily), min(f.months), sum(f.forecast), 3 FROM f) AS x
     ORDER BY x.o;
END
$$;
COMMENT ON FUNCTION billing.forecast(timestamptz) IS
    'The cost of p_at''s month at its end, per source (openai, aws, total): spent before p_at, the past months'' daily average, and the forecast: spent + remaining days x that average ("month so far + past daily average"), or the run rate when there is no whole month of history.';
