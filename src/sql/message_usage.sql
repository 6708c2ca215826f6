-- What one message contributes: usage_of (its usage, the estimate of a reply
-- without usage, or its problem), _usage_of_text (the same for data stored
-- as text or json), _estimated_or_problem (whether a backfill records it)
-- and usage_cost (token counts priced at a time).
-- Relies on the catalog.

-- C body: src/pg/usage_of.cpp (usage_of)
CREATE FUNCTION billing.usage_of(data jsonb, role text, content text,
    OUT model text, OUT prompt_tokens bigint, OUT completion_tokens bigint, OUT cached_tokens bigint,
    OUT estimated_completion bigint, OUT unsplit_tokens bigint, OUT problem text, OUT estimated boolean)
    AS 'MODULE_PATHNAME', 'usage_of' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION billing.usage_of(jsonb, text, text) IS
    'What one message contributes: its usage, the estimate of a reply without usage, or the problem of its data.';

-- Whether usage_of(data, role, content) says an estimated reply or a
-- problem: the rows a backfill records in estimated_prompts and
-- problem_messages, found without making usage_of's record for every row.
-- C body: src/pg/usage_of.cpp (estimated_or_problem)
CREATE FUNCTION billing._estimated_or_problem(data jsonb, role text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'estimated_or_problem' LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- C body: src/pg/usage_of.cpp (usage_cost)
CREATE FUNCTION billing.usage_cost(model text, prompt_tokens bigint, completion_tokens bigint,
                                   cached_tokens bigint, at timestamptz)
    RETURNS numeric AS 'MODULE_PATHNAME', 'usage_cost' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION billing.usage_cost(text, bigint, bigint, bigint, timestamptz) IS
    'Cost of token counts at a time (negative counts give a negative cost); NULL when unpriced; never warns.';

-- Usage of a message whose data is text: JSON that does not parse is a
-- problem of the row, never an error of the app's write. (A subtransaction
-- per call, paid only by tables whose data column is not jsonb.)
CREATE FUNCTION billing._usage_of_text(data text, role text, content text,
    OUT model text, OUT prompt_tokens bigint, OUT completion_tokens bigint, OUT cached_tokens bigint,
    OUT estimated_completion bigint, OUT unsplit_tokens bigint, OUT problem text, OUT estimated boolean)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parsed jsonb;
BEGIN
    BEGIN
        parsed := data::jsonb;
    EXCEPTION WHEN untranslatable_character THEN
        -- Valid JSON (json accepts it) with a \u0000 escape in some string,
        -- which jsonb cannot store: read with U+FFFD in its place (the
        -- counts are numbers, and an escaped backslash before "u0000" is
        -- left alone).
        BEGIN
            parsed := regexp_replace(data, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd', 'g')::jsonb;
        EXCEPTION WHEN OTHERS THEN
            prompt_tokens := 0; completion_tokens := 0; cached_tokens := 0;
            estimated_completion := 0; unsplit_tokens := 0; estimated := false;
            problem := 'data is not valid JSON';
            RETURN;
        END;
    WHEN OTHERS THEN
        prompt_tokens := 0; completion_tokens := 0; cached_tokens := 0;
        estimated_completion := 0; unsplit_tokens := 0; estimated := false;
        problem := 'data is not valid JSON';
        RETURN;
    END;
    SELECT * INTO model, prompt_tokens, completion_tokens, cached_tokens, estimated_completion,
                  unsplit_tokens, problem, estimated
      FROM billing.usage_of(parsed, role, content);
END
$$;
COMMENT ON FUNCTION billing._usage_of_text(text, text, text) IS
    'billing.usage_of for data stored as text or json: data that is not JSON is reported as the row''s problem.';

-- The tokens a message leaves unpriced: its reported tokens when they
-- found no price, its estimate when that found none, and always its
-- total-only tokens (a total cannot be priced). The one definition of
-- unpriced_tokens, used by the direct reads, the ledger reads and merge().
-- Inlinable (no SET clause; every operator qualified).
CREATE FUNCTION billing._unpriced_tokens(cost numeric, estimated_cost numeric, prompt bigint, completion bigint,
                                         estimated_prompt bigint, estimated_completion bigint, unsplit bigint)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN cost IS NULL THEN prompt::pg_catalog.numeric OPERATOR(pg_catalog.+) completion ELSE 0 END
           OPERATOR(pg_catalog.+)
           CASE WHEN estimated_cost IS NULL
                THEN estimated_prompt::pg_catalog.numeric OPERATOR(pg_catalog.+) estimated_completion ELSE 0 END
           OPERATOR(pg_catalog.+) unsplit
$$;

-- The tokens billing estimates for a text: one per four characters,
-- rounded up (src/core/usage.h, the rule usage_of applies to a reply).
-- C body: src/pg/usage_of.cpp (text_estimated_tokens)
CREATE FUNCTION billing._estimated_tokens(content text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'text_estimated_tokens' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
