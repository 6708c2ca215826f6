-- Savings (README "Savings"): billing.savings_pairs (which cheaper model of
-- its family each model is compared with; seeded, edited with plain SQL,
-- user rows kept by pg_dump) and billing.savings() (per model: what the
-- period's tokens cost, what they would have cost on the cheaper model, and
-- what prompt caching saved).
-- Relies on reads.sql (_usage_by_model) and the catalog.

CREATE TABLE billing.savings_pairs (
    model         text PRIMARY KEY,
    cheaper_model text,
    origin        text NOT NULL DEFAULT 'user' CHECK (origin IN ('seed', 'user'))
);
COMMENT ON TABLE billing.savings_pairs IS
    'Which cheaper model billing.savings() prices each model''s tokens on (model: a catalog name the usage resolves to). cheaper_model NULL: no comparison for that model.';
COMMENT ON COLUMN billing.savings_pairs.origin IS
    'seed: shipped with the extension; user: added or changed by a user (kept by pg_dump).';
SELECT pg_catalog.pg_extension_config_dump('billing.savings_pairs', 'WHERE origin = ''user''');

-- A pair as written: both names must be models of the price catalog (an
-- error naming the field, SQLSTATE 23502 when missing, 23514 when wrong),
-- and not the same. A user row replaces the seed row of the same model; a
-- changed seed row becomes the user's (so pg_dump keeps it). A seed row is
-- not deleted (its deletion would not survive a restore, which re-creates
-- the seed rows): setting cheaper_model to NULL turns it off, and is kept.
-- SECURITY DEFINER (see the end of this file): it reads the price catalog.
CREATE FUNCTION billing._savings_pair_checked() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    check_bodies boolean := current_setting('check_function_bodies')::boolean;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.origin = 'seed' AND pg_trigger_depth() = 1 THEN
            RAISE EXCEPTION 'billing.savings_pairs: the pair of model "%" is one of billing''s defaults and cannot be deleted', OLD.model
                USING ERRCODE = 'object_not_in_prerequisite_state', SCHEMA = 'billing', TABLE = 'savings_pairs',
                      HINT = format('To stop comparing it (and keep that through pg_dump and restore): '
                                    'UPDATE billing.savings_pairs SET cheaper_model = NULL WHERE model = %L;', OLD.model);
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.model IS NULL OR btrim(NEW.model) = '' THEN
        RAISE EXCEPTION 'billing.savings_pairs: model must be given'
            USING ERRCODE = 'not_null_violation', COLUMN = 'model', SCHEMA = 'billing', TABLE = 'savings_pairs';
    END IF;
    -- (not while a restore loads the pairs: check_function_bodies is off in
    -- pg_dump's scripts, as for CREATE FUNCTION, and pg_restore -j may load
    -- this table before the user's own prices; a pair whose model has no
    -- price compares nothing)
    IF NOT EXISTS (SELECT 1 FROM billing.model_prices AS p WHERE p.model = NEW.model) AND check_bodies THEN
        RAISE EXCEPTION 'billing.savings_pairs: model "%" has no price in billing.model_prices', NEW.model
            USING ERRCODE = 'check_violation', COLUMN = 'model', SCHEMA = 'billing', TABLE = 'savings_pairs',
                  HINT = 'Name a model as the catalog does (SELECT DISTINCT model FROM billing.model_prices).';
    END IF;
    IF NEW.cheaper_model IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM billing.model_prices AS p WHERE p.model = NEW.cheaper_model)
           AND check_bodies THEN
            RAISE EXCEPTION 'billing.savings_pairs: cheaper_model "%" has no price in billing.model_prices', NEW.cheaper_model
                USING ERRCODE = 'check_violation', COLUMN = 'cheaper_model', SCHEMA = 'billing', TABLE = 'savings_pairs',
                      HINT = 'Name a model as the catalog does (SELECT DISTINCT model FROM billing.model_prices).';
        END IF;
        IF NEW.cheaper_model = NEW.model THEN
            RAISE EXCEPTION 'billing.savings_pairs: cheaper_model must differ from model, got "%" for both', NEW.model
                USING ERRCODE = 'check_violation', COLUMN = 'cheaper_model', SCHEMA = 'billing', TABLE = 'savings_pairs';
        END IF;
    END IF;
    IF pg_trigger_depth() = 1 THEN
        IF TG_OP = 'INSERT' AND NEW.origin = 'user' THEN
            DELETE FROM billing.savings_pairs AS s WHERE s.model = NEW.model AND s.origin = 'seed';
        ELSIF TG_OP = 'UPDATE' THEN
            NEW.origin := 'user';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER savings_pairs_checked BEFORE INSERT OR UPDATE OR DELETE ON billing.savings_pairs
    FOR EACH ROW EXECUTE FUNCTION billing._savings_pair_checked();

INSERT INTO billing.savings_pairs (model, cheaper_model, origin)
VALUES ('gpt-4o',            'gpt-4o-mini',  'seed'),
       ('gpt-4o-2024-05-13', 'gpt-4o-mini',  'seed'),
       ('gpt-4o-2024-08-06', 'gpt-4o-mini',  'seed'),
       ('gpt-4o-2024-11-20', 'gpt-4o-mini',  'seed'),
       ('gpt-4.1',           'gpt-4.1-mini', 'seed'),
       ('gpt-4.1-mini',      'gpt-4.1-nano', 'seed'),
       ('gpt-5',             'gpt-5-mini',   'seed'),
       ('gpt-5-mini',        'gpt-5-nano',   'seed'),
       ('o1',                'o1-mini',      'seed');

-- What the period's OpenAI usage (p_from <= time < p_to; the current month
-- by default) cost per model, and what it could have cost. It reads what
-- the views read (billing._usage_by_model: rollups plus the unmerged
-- ledger, the tracked tables for stale and partial months), with the
-- reader's privileges. Reported token counts only: estimated replies and
-- usage without a model are left out (they are in the views' cost).
--
-- The rule for prices: the rollups hold a month's tokens per model, not
-- per price period, so each month's tokens (of the part of the month
-- inside the period) are re-priced at the prices in effect at that part's
-- last instant (min(p_to, month end) - 1 microsecond), where the model
-- name is also resolved (as budgets of scope model do). Exact whenever no
-- price of the model used or of its cheaper model takes effect inside that
-- part of a month; price_changed says when one does. cost is always the
-- exact cost at each message's own prices.
--
-- Per model as stored: priced_as (the catalog model it resolves to, whose
-- pair applies), tokens, cost; cheaper_model and cheaper_cost (the same
-- prompt, completion and cached tokens on it, by billing.usage_cost's
-- rules: cached tokens at its cached-input price), saving = cost -
-- cheaper_cost; caching_saved = cached tokens x (input - cached-input
-- price) of the model used. NULL where a figure cannot be exact: no pair,
-- a model without a price then, or some of the month's tokens unpriced.
CREATE FUNCTION billing.savings(p_from timestamptz DEFAULT billing.month_start(billing.month_of(pg_catalog.now())),
                                p_to timestamptz DEFAULT billing.month_end(billing.month_of(pg_catalog.now())))
RETURNS TABLE (model text, priced_as text, prompt_tokens bigint, completion_tokens bigint, cached_tokens bigint,
               cost numeric, cheaper_model text, cheaper_cost numeric, saving numeric, caching_saved numeric,
               price_changed boolean)
-- PARALLEL UNSAFE: _usage_by_model (plpgsql, reads the ledger) is.
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM billing._range_given(p_from, p_to);
    -- First, so that a role without the grants gets the readers' error.
    PERFORM billing._require_reader();
    RETURN QUERY
    WITH m AS (
        SELECT u.month, u.model, billing._sat(sum(u.prompt_tokens)) AS p,
               billing._sat(sum(u.completion_tokens)) AS c, billing._sat(sum(u.cached_tokens)) AS k,
               sum(u.cost) AS cost, sum(u.unpriced_tokens) AS unpriced,
               greatest(p_from, billing.month_start(u.month)) AS part_from,
               least(p_to, billing.month_end(u.month)) - interval '1 microsecond' AS at
          FROM billing._usage_by_model(p_from, p_to) AS u
         WHERE u.model <> ''
         GROUP BY u.month, u.model
        HAVING sum(u.prompt_tokens) <> 0 OR sum(u.completion_tokens) <> 0
    ), r AS (
        SELECT m.*, x.model AS priced_as, s.cheaper_model
          FROM m
          LEFT JOIN LATERAL billing.resolve_model_price(m.model, m.at) AS x ON true
          LEFT JOIN billing.savings_pairs AS s ON s.model = x.model
    ), priced AS (
        SELECT r.*,
               CASE WHEN r.unpriced = 0 THEN billing.usage_cost(r.cheaper_model, r.p, r.c, r.k, r.at) END AS cheaper_cost,
               CASE WHEN r.unpriced = 0
                    THEN billing.usage_cost(r.model, r.k, 0, 0, r.at) - billing.usage_cost(r.model, r.k, 0, r.k, r.at)
               END AS caching_saved,
               EXISTS (SELECT 1 FROM billing.model_prices AS mp
                        WHERE mp.model IN (r.priced_as, r.cheaper_model)
                          AND mp.effective_from > r.part_from AND mp.effective_from <= r.at) AS price_changed
          FROM r
    )
    -- (a cost is NULL where tokens went unpriced: no price is not zero cost)
    SELECT q.model, q.priced_as, billing._sat(sum(q.p)), billing._sat(sum(q.c)), billing._sat(sum(q.k)),
           CASE WHEN sum(q.unpriced) = 0 THEN sum(q.cost) END,
           q.cheaper_model,
           CASE WHEN count(q.cheaper_cost) = count(*) THEN sum(q.cheaper_cost) END,
           CASE WHEN count(q.cheaper_cost) = count(*) THEN sum(q.cost) - sum(q.cheaper_cost) END,
           CASE WHEN count(q.caching_saved) = count(*) THEN sum(q.caching_saved) END,
           bool_or(q.price_changed)
      FROM priced AS q
     GROUP BY q.model, q.priced_as, q.cheaper_model;
END
$$;
COMMENT ON FUNCTION billing.savings(timestamptz, timestamptz) IS
    'Per model, for usage with p_from <= time < p_to: cost, the same tokens on the cheaper model of billing.savings_pairs, the saving, and what prompt caching saved.';

ALTER FUNCTION billing._savings_pair_checked() SECURITY DEFINER;
REVOKE ALL ON FUNCTION billing._savings_pair_checked() FROM PUBLIC;
-- The pairs are configuration, not figures: every reader of billing.savings() may read them.
GRANT SELECT ON billing.savings_pairs TO PUBLIC;
