-- The price catalog: billing.model_prices and billing.aws_prices (effective-
-- dated, edited with plain SQL, user rows kept by pg_dump), the seed rows,
-- billing.removed_seed_prices (seed rows a user deleted stay deleted), the
-- generation that the C++ catalog cache is keyed on (src/pg/catalog_cache.cpp),
-- and the traceability functions model_price / aws_price.
-- Relies on nothing: it is loaded first, after the check that the schema
-- billing is the extension's own.

-- The schema billing must be the extension's own: CREATE EXTENSION uses a
-- schema of that name if one exists, and objects its owner put there (or
-- puts there later) would be called by billing's triggers with billing's
-- rights. Refuse a schema owned by another role, or one that holds objects.
-- One exception: on a node that Citus adds to a cluster where a distributed
-- table is tracked, Citus creates the objects it keeps in pg_dist_object in
-- that table's order, which is not always dependency-first for billing's:
-- a tracked table's trigger functions (billing.citus_track_N and
-- citus_track_N_full) and billing's Citus tables (billing.citus_ledger_N,
-- citus_estimates_N, citus_problems_N, cluster_catalog, with their indexes
-- and row types), none of which belongs to the extension (docs/citus.md),
-- may come before the extension. Those, owned by a superuser, are left to
-- be billing's own.
DO $$
DECLARE
    s record;
    held text;   -- (the first object found, named in the error)
BEGIN
    SELECT n.oid, n.nspowner::regrole AS owner INTO s FROM pg_catalog.pg_namespace AS n WHERE n.nspname = 'billing';
    IF s.owner::oid <> (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'billing: schema billing already exists and belongs to role %', s.owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Drop or rename that schema (after checking what it holds), then CREATE EXTENSION billing.';
    END IF;
    WITH superusers AS (
        SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolsuper
    ), citus_tables AS (   -- (billing's Citus tables, a superuser's)
        SELECT c.oid FROM pg_catalog.pg_class AS c
         WHERE c.relnamespace = s.oid AND c.relkind = 'r'
           AND c.relname ~ '^(citus_(ledger|estimates|problems)_[0-9]+|cluster_catalog)$'
           AND c.relowner IN (SELECT u.oid FROM superusers AS u)
    )
    SELECT o INTO held
      FROM (SELECT format('relation %s', c.relname) FROM pg_catalog.pg_class AS c
             WHERE c.relnamespace = s.oid
               AND c.oid NOT IN (SELECT t.oid FROM citus_tables AS t)
               AND c.oid NOT IN (SELECT i.indexrelid FROM pg_catalog.pg_index AS i
                                  WHERE i.indrelid IN (SELECT t.oid FROM citus_tables AS t))
            UNION ALL
            SELECT format('function %s', p.proname) FROM pg_catalog.pg_proc AS p
             WHERE p.pronamespace = s.oid
               AND NOT (p.proname ~ '^citus_track_[0-9]+(_full)?$'
                        AND p.proowner IN (SELECT u.oid FROM superusers AS u))
            UNION ALL
            SELECT format('type %s', t.typname) FROM pg_catalog.pg_type AS t
             WHERE t.typnamespace = s.oid
               AND t.typrelid NOT IN (SELECT c.oid FROM citus_tables AS c)
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type AS e   -- (a row type's array type)
                                WHERE e.oid = t.typelem AND e.typrelid IN (SELECT c.oid FROM citus_tables AS c))
            UNION ALL
            SELECT format('operator %s', o.oprname) FROM pg_catalog.pg_operator AS o WHERE o.oprnamespace = s.oid
           ) AS x(o)
     ORDER BY 1 LIMIT 1;
    IF held IS NOT NULL THEN
        RAISE EXCEPTION 'billing: schema billing already exists and holds objects'
            USING ERRCODE = 'duplicate_schema', DETAIL = format('For example %s.', held),
                  HINT = 'CREATE EXTENSION billing needs an empty schema billing of its own: drop or rename that one first.';
    END IF;
END
$$;

CREATE SEQUENCE billing.catalog_generation;

CREATE TABLE billing.catalog_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation bigint  NOT NULL,
    -- On a Citus cluster whose catalog is shared (src/sql/citus.sql): the
    -- version of it this node's tables hold; NULL otherwise.
    cluster_version bigint
);
COMMENT ON TABLE billing.catalog_state IS
    'One row: the generation of the price catalog, renewed by every change to billing.model_prices or billing.aws_prices; on a Citus cluster sharing the catalog, the version of it this node holds.';

INSERT INTO billing.catalog_state (singleton, generation)
VALUES (true, pg_catalog.nextval('billing.catalog_generation'));

CREATE FUNCTION billing.catalog_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE billing.catalog_state SET generation = nextval('billing.catalog_generation');
    RETURN NULL;
END
$$;

CREATE TABLE billing.model_prices (
    model               text        NOT NULL,
    effective_from      timestamptz NOT NULL,
    input_per_1m        numeric     NOT NULL,
    cached_input_per_1m numeric,
    output_per_1m       numeric     NOT NULL,
    note                text,
    origin              text        NOT NULL DEFAULT 'user',
    PRIMARY KEY (model, effective_from),
    CONSTRAINT model_prices_model_check CHECK (model <> '' AND length(model) <= 200),
    CONSTRAINT model_prices_effective_from_check CHECK (effective_from <> 'infinity'),
    CONSTRAINT model_prices_input_check
        CHECK (input_per_1m >= 0 AND input_per_1m < 9000000 AND input_per_1m = round(input_per_1m, 12)),
    CONSTRAINT model_prices_cached_input_check
        CHECK (cached_input_per_1m >= 0 AND cached_input_per_1m < 9000000
               AND cached_input_per_1m = round(cached_input_per_1m, 12)),
    CONSTRAINT model_prices_output_check
        CHECK (output_per_1m >= 0 AND output_per_1m < 9000000 AND output_per_1m = round(output_per_1m, 12)),
    CONSTRAINT model_prices_origin_check CHECK (origin IN ('seed', 'user'))
);
COMMENT ON TABLE billing.model_prices IS
    'OpenAI prices in USD per 1M tokens. A row applies from effective_from until the next row of the same model.';
COMMENT ON COLUMN billing.model_prices.cached_input_per_1m IS
    'Price of cached prompt tokens; NULL means no discount (cached tokens cost input_per_1m).';
COMMENT ON COLUMN billing.model_prices.origin IS
    'seed: shipped with the extension; user: added or changed by a user (kept by pg_dump).';

CREATE TABLE billing.aws_prices (
    service        text        NOT NULL,
    unit           text        NOT NULL,
    unit_price     numeric     NOT NULL,
    effective_from timestamptz NOT NULL,
    note           text,
    origin         text        NOT NULL DEFAULT 'user',
    PRIMARY KEY (service, effective_from),
    CONSTRAINT aws_prices_service_check CHECK (service <> '' AND length(service) <= 64),
    CONSTRAINT aws_prices_effective_from_check CHECK (effective_from <> 'infinity'),
    CONSTRAINT aws_prices_unit_price_check
        CHECK (unit_price >= 0 AND unit_price < 9000000 AND unit_price = round(unit_price, 12)),
    CONSTRAINT aws_prices_origin_check CHECK (origin IN ('seed', 'user'))
);
COMMENT ON TABLE billing.aws_prices IS
    'AWS prices in USD per one unit. A row applies from effective_from until the next row of the same service.';

CREATE TABLE billing.removed_seed_prices (
    price_table    text        NOT NULL CHECK (price_table IN ('model_prices', 'aws_prices')),
    name           text        NOT NULL,
    effective_from timestamptz NOT NULL,
    PRIMARY KEY (price_table, name, effective_from)
);
COMMENT ON TABLE billing.removed_seed_prices IS
    'Seed price rows a user deleted or re-keyed, so that a restore from pg_dump removes them again.';

-- Keeps origin and the removed-seed list right as users edit prices.
-- Internal statements (trigger depth > 1) are left alone.
CREATE FUNCTION billing.price_row_edited() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_name text;
    new_name text;
BEGIN
    -- Each table names its key differently; IF (not CASE) so that only the
    -- branch for this table is ever planned.
    IF TG_TABLE_NAME = 'model_prices' THEN
        IF TG_OP <> 'INSERT' THEN old_name := OLD.model; END IF;
        IF TG_OP <> 'DELETE' THEN new_name := NEW.model; END IF;
    ELSE
        IF TG_OP <> 'INSERT' THEN old_name := OLD.service; END IF;
        IF TG_OP <> 'DELETE' THEN new_name := NEW.service; END IF;
    END IF;

    IF TG_OP = 'INSERT' THEN
        -- A user row (or a restored one) replaces a seed row with the same key.
        IF NEW.origin = 'user' THEN
            IF TG_TABLE_NAME = 'model_prices' THEN
                DELETE FROM billing.model_prices
                 WHERE model = new_name AND effective_from = NEW.effective_from AND origin = 'seed';
            ELSE
                DELETE FROM billing.aws_prices
                 WHERE service = new_name AND effective_from = NEW.effective_from AND origin = 'seed';
            END IF;
        END IF;
        RETURN NEW;
    END IF;

    IF pg_trigger_depth() > 1 THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;

    IF OLD.origin = 'seed'
       AND (TG_OP = 'DELETE' OR old_name IS DISTINCT FROM new_name
            OR OLD.effective_from IS DISTINCT FROM NEW.effective_from) THEN
        INSERT INTO billing.removed_seed_prices (price_table, name, effective_from)
        VALUES (TG_TABLE_NAME, old_name, OLD.effective_from)
        ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    NEW.origin := 'user';
    RETURN NEW;
END
$$;

-- Replays a removal when billing.removed_seed_prices is restored by pg_dump.
CREATE FUNCTION billing.removed_seed_price_restored() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_trigger_depth() = 1 THEN
        IF NEW.price_table = 'model_prices' THEN
            DELETE FROM billing.model_prices
             WHERE model = NEW.name AND effective_from = NEW.effective_from AND origin = 'seed';
        ELSE
            DELETE FROM billing.aws_prices
             WHERE service = NEW.name AND effective_from = NEW.effective_from AND origin = 'seed';
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER model_prices_edited
    BEFORE INSERT OR UPDATE OR DELETE ON billing.model_prices
    FOR EACH ROW EXECUTE FUNCTION billing.price_row_edited();
CREATE TRIGGER aws_prices_edited
    BEFORE INSERT OR UPDATE OR DELETE ON billing.aws_prices
    FOR EACH ROW EXECUTE FUNCTION billing.price_row_edited();
CREATE TRIGGER removed_seed_prices_restored
    AFTER INSERT ON billing.removed_seed_prices
    FOR EACH ROW EXECUTE FUNCTION billing.removed_seed_price_restored();

CREATE TRIGGER model_prices_catalog_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON billing.model_prices
    FOR EACH STATEMENT EXECUTE FUNCTION billing.catalog_changed();
CREATE TRIGGER aws_prices_catalog_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON billing.aws_prices
    FOR EACH STATEMENT EXECUTE FUNCTION billing.catalog_changed();

SELECT pg_catalog.pg_extension_config_dump('billing.model_prices', 'WHERE origin = ''user''');
SELECT pg_catalog.pg_extension_config_dump('billing.aws_prices', 'WHERE origin = ''user''');
SELECT pg_catalog.pg_extension_config_dump('billing.removed_seed_prices', '');

INSERT INTO billing.model_prices
    (model, effective_from, input_per_1m, cached_input_per_1m, output_per_1m, origin, note)
VALUES
    -- GPT-4o family. The gpt-4o alias moved to the cheaper 2024-08-06 snapshot on 2024-10-02.
    ('gpt-4o',             '2024-05-13 00:00+00',  5.00,  NULL,   15.00, 'seed', 'launch price (alias of gpt-4o-2024-05-13)'),
    ('gpt-4o',             '2024-10-02 00:00+00',  2.50,  1.25,   10.00, 'seed', 'alias of gpt-4o-2024-08-06'),
    ('gpt-4o-2024-05-13',  '2024-05-13 00:00+00',  5.00,  NULL,   15.00, 'seed', 'original snapshot, no cached-input discount'),
    ('gpt-4o-2024-08-06',  '2024-08-06 00:00+00',  2.50,  1.25,   10.00, 'seed', NULL),
    ('gpt-4o-2024-11-20',  '2024-11-20 00:00+00',  2.50,  1.25,   10.00, 'seed', NULL),
    ('chatgpt-4o-latest',  '2024-08-13 00:00+00',  5.00,  NULL,   15.00, 'seed', NULL),
    ('gpt-4o-mini',        '2024-07-18 00:00+00',  0.15,  0.075,   0.60, 'seed', NULL),
    -- GPT-4.1 and GPT-4.5
    ('gpt-4.1',            '2025-04-14 00:00+00',  2.00,  0.50,    8.00, 'seed', NULL),
    ('gpt-4.1-mini',       '2025-04-14 00:00+00',  0.40,  0.10,    1.60, 'seed', NULL),
    ('gpt-4.1-nano',       '2025-04-14 00:00+00',  0.10,  0.025,   0.40, 'seed', NULL),
    ('gpt-4.5-preview',    '2025-02-27 00:00+00', 75.00, 37.50,  150.00, 'seed', NULL),
    -- GPT-5
    ('gpt-5',              '2025-08-07 00:00+00',  1.25,  0.125,  10.00, 'seed', NULL),
    ('gpt-5-mini',         '2025-08-07 00:00+00',  0.25,  0.025,   2.00, 'seed', NULL),
    ('gpt-5-nano',         '2025-08-07 00:00+00',  0.05,  0.005,   0.40, 'seed', NULL),
    -- Reasoning models
    ('o1',                 '2024-12-17 00:00+00', 15.00,  7.50,   60.00, 'seed', NULL),
    ('o1-preview',         '2024-09-12 00:00+00', 15.00,  7.50,   60.00, 'seed', NULL),
    ('o1-mini',            '2024-09-12 00:00+00',  3.00,  1.50,   12.00, 'seed', 'launch price'),
    ('o1-mini',            '2025-01-31 00:00+00',  1.10,  0.55,    4.40, 'seed', 'price cut with the o3-mini launch'),
    ('o3-mini',            '2025-01-31 00:00+00',  1.10,  0.55,    4.40, 'seed', NULL),
    ('o3',                 '2025-04-16 00:00+00', 10.00,  2.50,   40.00, 'seed', 'launch price'),
    ('o3',                 '2025-06-10 00:00+00',  2.00,  0.50,    8.00, 'seed', 'price cut'),
    ('o4-mini',            '2025-04-16 00:00+00',  1.10,  0.275,   4.40, 'seed', NULL),
    -- Older chat models
    ('gpt-4-turbo',        '2024-04-09 00:00+00', 10.00,  NULL,   30.00, 'seed', NULL),
    ('gpt-4',              '2023-03-14 00:00+00', 30.00,  NULL,   60.00, 'seed', NULL),
    ('gpt-3.5-turbo',      '2024-01-25 00:00+00',  0.50,  NULL,    1.50, 'seed', 'alias of gpt-3.5-turbo-0125'),
    ('gpt-3.5-turbo-1106', '2023-11-06 00:00+00',  1.00,  NULL,    2.00, 'seed', NULL),
    -- Embeddings: input only
    ('text-embedding-3-small', '2024-01-25 00:00+00', 0.02, NULL, 0, 'seed', NULL),
    ('text-embedding-3-large', '2024-01-25 00:00+00', 0.13, NULL, 0, 'seed', NULL),
    ('text-embedding-ada-002', '2022-12-15 00:00+00', 0.10, NULL, 0, 'seed', NULL);

INSERT INTO billing.aws_prices (service, unit, unit_price, effective_from, origin, note)
VALUES
    ('ses',    'email',     0.0001,       '2011-01-25 00:00+00', 'seed', 'SES outbound: $0.10 per 1,000 e-mails'),
    ('s3',     'gb_month',  0.023,        '2016-12-01 00:00+00', 'seed', 'S3 Standard, first 50 TB per month'),
    ('lambda', 'request',   0.0000002,    '2014-11-13 00:00+00', 'seed', 'Lambda: $0.20 per 1M requests'),
    ('lambda_duration', 'gb_second', 0.0000166667, '2014-11-13 00:00+00', 'seed', 'Lambda compute, x86');

-- C body: src/pg/price_lookup.cpp (resolve_model_price)
CREATE FUNCTION billing.resolve_model_price(model text, at timestamptz,
                                            OUT model text, OUT effective_from timestamptz)
    AS 'MODULE_PATHNAME', 'resolve_model_price' LANGUAGE C STABLE STRICT PARALLEL SAFE;
-- C body: src/pg/price_lookup.cpp (resolve_aws_price)
CREATE FUNCTION billing.resolve_aws_price(service text, at timestamptz,
                                          OUT service text, OUT effective_from timestamptz)
    AS 'MODULE_PATHNAME', 'resolve_aws_price' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing.resolve_model_price(text, timestamptz) IS
    'The catalog row that prices a stored model name at `at` (its model and effective_from, after the name''s candidates: exact, undated, normalised), or NULL.';
COMMENT ON FUNCTION billing.resolve_aws_price(text, timestamptz) IS
    'The catalog row that prices an AWS service at `at` (its service and effective_from), or NULL.';

CREATE FUNCTION billing.model_price(model text, at timestamptz DEFAULT now())
RETURNS SETOF billing.model_prices
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.*
      FROM billing.resolve_model_price(model, at) AS r
      JOIN billing.model_prices AS p ON p.model = r.model AND p.effective_from = r.effective_from
$$;
COMMENT ON FUNCTION billing.model_price(text, timestamptz) IS
    'The billing.model_prices row that prices a model name at a time (none when it cannot be priced).';

CREATE FUNCTION billing.aws_price(service text, at timestamptz DEFAULT now())
RETURNS SETOF billing.aws_prices
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.*
      FROM billing.resolve_aws_price(service, at) AS r
      JOIN billing.aws_prices AS p ON p.service = r.service AND p.effective_from = r.effective_from
$$;
COMMENT ON FUNCTION billing.aws_price(text, timestamptz) IS
    'The billing.aws_prices row that prices a service at a time (none when it cannot be priced).';
