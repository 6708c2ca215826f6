-- What one message contributes: usage_of (its usage, the estimate of a reply
-- without usage, or its problem), _usage_of_text (the same for data stored
-- as text or json, read by _jsonb_of_text), _estimated_or_problem (whether a backfill records it)
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

-- Data stored as text or json, as jsonb; NULL when it is not JSON. A \u
-- escape jsonb cannot store in valid JSON (json accepts it) is read in
-- place: \u0000 and a lone surrogate (JavaScript's JSON.stringify writes
-- one for text cut inside an emoji) in any database, and in one whose
-- encoding is not UTF8 a character that encoding lacks (an emoji or a euro
-- sign in LATIN1, anything past ASCII in SQL_ASCII), which Python's
-- json.dumps writes by default. Such an escape is read as U+FFFD in UTF8
-- and as "?" elsewhere; every other escape as it is. A backslash escaped
-- before "u" is left alone. A subtransaction per call, paid only by tables
-- whose data column is not jsonb (and, for data jsonb does not take at
-- once, one per distinct escape it may refuse, up to 64).
-- Its backslashes are written in E'' strings, which mean the same whatever
-- standard_conforming_strings the session sets.
CREATE FUNCTION billing._jsonb_of_text(data text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN data::jsonb;
EXCEPTION WHEN OTHERS THEN
    -- The error's code depends on the encoding (untranslatable_character,
    -- feature_not_supported in SQL_ASCII), so any data with a \u is read
    -- again; data that is not JSON fails again.
    IF pg_catalog.strpos(data, E'\\u') = 0 THEN
        RETURN NULL;
    END IF;
    DECLARE
        utf8 boolean := pg_catalog.current_setting('server_encoding') = 'UTF8';
        unreadable text := CASE WHEN utf8 THEN E'\\\\ufffd' ELSE '?' END;   -- (as regexp_replace writes them)
        -- The escapes jsonb may refuse (a surrogate pair as one): in UTF8
        -- \u0000 and surrogates, elsewhere also every one past ASCII. The
        -- prefix skips a backslash that is itself escaped.
        prefix text := E'(?<!\\\\)((?:\\\\\\\\)*)';
        candidate text := E'\\\\u[Dd][89ABab][0-9A-Fa-f]{2}\\\\u[Dd][C-Fc-f][0-9A-Fa-f]{2}|\\\\u0000|'
                          OPERATOR(pg_catalog.||) CASE WHEN utf8 THEN E'\\\\u[Dd][89A-Fa-f][0-9A-Fa-f]{2}'
                                                       ELSE E'\\\\u(?!00[0-7])[0-9A-Fa-f]{4}' END;
        escapes text[];
        esc text;
        fixed text := data;
    BEGIN
        SELECT pg_catalog.array_agg(DISTINCT m[2]) INTO escapes
          FROM pg_catalog.regexp_matches(data, prefix OPERATOR(pg_catalog.||) '(' OPERATOR(pg_catalog.||) candidate
                                               OPERATOR(pg_catalog.||) ')', 'g') AS m;
        IF pg_catalog.cardinality(escapes) > 64 THEN
            -- (a long text in a script the encoding lacks: all at once)
            RETURN pg_catalog.regexp_replace(data, prefix OPERATOR(pg_catalog.||) '(?:' OPERATOR(pg_catalog.||) candidate
                                                   OPERATOR(pg_catalog.||) ')', E'\\1' OPERATOR(pg_catalog.||) unreadable, 'g')::jsonb;
        END IF;
        -- Each one on its own, so that the others stay ("\u00c9mile" is
        -- still "Émile" in LATIN1 beside an emoji).
        FOREACH esc IN ARRAY coalesce(escapes, '{}') LOOP
            BEGIN
                PERFORM ('"' OPERATOR(pg_catalog.||) esc OPERATOR(pg_catalog.||) '"')::jsonb;
            EXCEPTION WHEN OTHERS THEN
                fixed := pg_catalog.regexp_replace(fixed, prefix OPERATOR(pg_catalog.||) pg_catalog.replace(esc, E'\\', E'\\\\'),
                                                   E'\\1' OPERATOR(pg_catalog.||) unreadable, 'g');
            END;
        END LOOP;
        RETURN fixed::jsonb;
    EXCEPTION WHEN OTHERS THEN
        RETURN NULL;
    END;
END
$$;

-- Usage of a message whose data is text: JSON that does not parse is a
-- problem of the row, never an error of the app's write. Empty text (or
-- only white space) is no data, as NULL is: Django's TextField(blank=True)
-- stores '' for no value, and a reply stored so is estimated.
CREATE FUNCTION billing._usage_of_text(data text, role text, content text,
    OUT model text, OUT prompt_tokens bigint, OUT completion_tokens bigint, OUT cached_tokens bigint,
    OUT estimated_completion bigint, OUT unsplit_tokens bigint, OUT problem text, OUT estimated boolean)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parsed jsonb := billing._jsonb_of_text(data);
BEGIN
    IF parsed IS NULL AND data IS NOT NULL AND btrim(data, E' \t\r\n') <> '' THEN
        prompt_tokens := 0; completion_tokens := 0; cached_tokens := 0;
        estimated_completion := 0; unsplit_tokens := 0; estimated := false;
        problem := 'data is not valid JSON';
        RETURN;
    END IF;
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

-- 1 for a reply's role ("assistant" in any case of ASCII letters), else 0,
-- NULL included. With ids that are not integers, a reply's prompt is
-- estimated from the messages before it in (created_at, _reply_rank(role),
-- id) order (billing._earlier_condition): at the same time, the question
-- stored with it in one transaction comes first.
-- C body: src/pg/usage_of.cpp (reply_rank)
CREATE FUNCTION billing._reply_rank(role text) RETURNS integer
    AS 'MODULE_PATHNAME', 'reply_rank' LANGUAGE C IMMUTABLE PARALLEL SAFE;
