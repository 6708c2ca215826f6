-- The month's end cost, forecast (README "Forecast"): billing.forecast(p_at)
-- says, per source (openai, aws, total), what p_at's month had cost at p_at
-- and what it will have cost at its end, and names the method.
-- billing._budget_status (budgets.sql) forecasts each budget the same way.
-- Relies on views.sql (billing.history) and reads.sql.

-- The history window of a forecast of month p_month: the (up to) 3 whole
-- months before it, left out those before or equal to p_first_month, the
-- first month with any cost (taken as partial: an app starts in the middle
-- of a month); none when p_first_month is NULL. With each month's length
-- in days.
CREATE FUNCTION billing._forecast_window(p_month date, p_first_month date)
RETURNS TABLE (month date, days numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT g.month::date,
           extract(epoch FROM billing.month_end(g.month::date) - billing.month_start(g.month::date)) / 86400
      FROM generate_series(greatest((p_month - interval '3 months')::date, p_first_month + interval '1 month'),
                           p_month - interval '1 month', interval '1 month') AS g(month)
     WHERE p_first_month IS NOT NULL
$$;

-- The method, chosen by the backtest of bench/forecast_backtest.sh (bench/README.md
-- "Forecast backtest"), better than the others there on every day scored:
-- * "rate blend": the days to come at a blend of two daily rates, the
--   month's own (spent / elapsed days) weighted by the elapsed fraction f
--   of the month and the history window's daily average weighted by 1 - f:
--   spent + (days - elapsed) x (f x spent / elapsed + (1 - f) x past daily),
--   where f x spent / elapsed = spent / days (so no division by a near-zero
--   elapsed time at the month's start: the month's own rate weighs f).
-- * "run rate" when the window is empty (no whole month of history):
--   spent x days / elapsed days, the elapsed time counted as at least one
--   day.
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
        SELECT w.month, w.days FROM billing._forecast_window(m, (SELECT min(p.month) FROM past AS p)) AS w
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
               CASE WHEN p.months > 0
                    THEN p.spent + (m_days - m_elapsed) * (p.spent / m_days + (1 - m_elapsed / m_days) * p.daily)
                    ELSE p.spent * m_days / greatest(m_elapsed, 1) END AS forecast
          FROM per AS p
    )
    -- (the projected rest rounded, not the total: the spend is exact, and a
    -- forecast is never below it, even after months of credits)
    SELECT x.source, m, x.spent, round(x.daily, 6), x.months, x.spent + greatest(round(x.forecast - x.spent, 6), 0),
           CASE WHEN x.months > 0 THEN 'rate blend' ELSE 'run rate' END
      FROM (SELECT f.source, f.spent, f.daily, f.months, f.forecast, 1 AS o FROM f WHERE f.source = 'openai'
            UNION ALL
            SELECT f.source, f.spent, f.daily, f.months, f.forecast, 2 FROM f WHERE f.source = 'aws'
            UNION ALL
            SELECT 'total', sum(f.spent), sum(f.daily), min(f.months), sum(f.forecast), 3 FROM f) AS x
     ORDER BY x.o;
END
$$;
COMMENT ON FUNCTION billing.forecast(timestamptz) IS
    'The cost of p_at''s month at its end, per source (openai, aws, total): spent before p_at, the past months'' daily average, and the forecast: spent + remaining days x (f x the month''s own daily rate + (1 - f) x that average), f the elapsed fraction ("rate blend"), or the run rate when there is no whole month of history.';
