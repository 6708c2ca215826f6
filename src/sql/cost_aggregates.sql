-- The cost aggregates and their state type: billing.cost_state (64 bytes,
-- text and binary forms, src/core/cost_state.h), openai_cost and aws_cost
-- (serial, parallel and Citus-splittable), message_cost and usage_problem.
-- Relies on the catalog (read by the C++ code through catalog_cache.cpp).

CREATE TYPE billing.cost_state;

-- C body: src/pg/cost_state_type.cpp (cost_state_in). STABLE: a state a
-- Citus worker stamped with the shared catalog's version is checked against
-- the version the query's snapshot sees (src/sql/citus.sql).
CREATE FUNCTION billing.cost_state_in(cstring) RETURNS billing.cost_state
    AS 'MODULE_PATHNAME', 'cost_state_in' LANGUAGE C STABLE STRICT PARALLEL SAFE;
-- C body: src/pg/cost_state_type.cpp (cost_state_out)
CREATE FUNCTION billing.cost_state_out(billing.cost_state) RETURNS cstring
    AS 'MODULE_PATHNAME', 'cost_state_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
-- C body: src/pg/cost_state_type.cpp (cost_state_recv)
CREATE FUNCTION billing.cost_state_recv(internal) RETURNS billing.cost_state
    AS 'MODULE_PATHNAME', 'cost_state_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
-- C body: src/pg/cost_state_type.cpp (cost_state_send)
CREATE FUNCTION billing.cost_state_send(billing.cost_state) RETURNS bytea
    AS 'MODULE_PATHNAME', 'cost_state_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE billing.cost_state (
    INTERNALLENGTH = 64,
    INPUT = billing.cost_state_in,
    OUTPUT = billing.cost_state_out,
    RECEIVE = billing.cost_state_recv,
    SEND = billing.cost_state_send,
    ALIGNMENT = double,
    STORAGE = plain
);
COMMENT ON TYPE billing.cost_state IS
    'Running state of the cost aggregates: (cost, priced rows, unpriced rows, unpriced units, reason, first unpriced name).';

-- C body: src/pg/cost_state_type.cpp (cost_state_combine)
CREATE FUNCTION billing.cost_state_combine(billing.cost_state, billing.cost_state) RETURNS billing.cost_state
    AS 'MODULE_PATHNAME', 'cost_state_combine' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Transition functions read the catalog, hence STABLE; not STRICT, because a
-- NULL model is a row to report, not to skip.
-- C body: src/pg/openai_cost.cpp (openai_cost_trans)
CREATE FUNCTION billing.openai_cost_trans(billing.cost_state, text, bigint, bigint)
    RETURNS billing.cost_state
    AS 'MODULE_PATHNAME', 'openai_cost_trans' LANGUAGE C STABLE PARALLEL SAFE;
-- C body: src/pg/openai_cost.cpp (openai_cost_trans)
CREATE FUNCTION billing.openai_cost_trans(billing.cost_state, text, bigint, bigint, timestamptz)
    RETURNS billing.cost_state
    AS 'MODULE_PATHNAME', 'openai_cost_trans' LANGUAGE C STABLE PARALLEL SAFE;
-- C body: src/pg/openai_cost.cpp (openai_cost_jsonb_trans)
CREATE FUNCTION billing.openai_cost_trans(billing.cost_state, jsonb)
    RETURNS billing.cost_state
    AS 'MODULE_PATHNAME', 'openai_cost_jsonb_trans' LANGUAGE C STABLE PARALLEL SAFE;
-- C body: src/pg/openai_cost.cpp (openai_cost_jsonb_trans)
CREATE FUNCTION billing.openai_cost_trans(billing.cost_state, jsonb, timestamptz)
    RETURNS billing.cost_state
    AS 'MODULE_PATHNAME', 'openai_cost_jsonb_trans' LANGUAGE C STABLE PARALLEL SAFE;
-- C body: src/pg/openai_cost.cpp (openai_cost_final)
CREATE FUNCTION billing.openai_cost_final(billing.cost_state) RETURNS numeric
    AS 'MODULE_PATHNAME', 'openai_cost_final' LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE AGGREGATE billing.openai_cost(model text, prompt_tokens bigint, completion_tokens bigint) (
    SFUNC = billing.openai_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing.openai_cost_final, PARALLEL = SAFE);
CREATE AGGREGATE billing.openai_cost(model text, prompt_tokens bigint, completion_tokens bigint, at timestamptz) (
    SFUNC = billing.openai_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing.openai_cost_final, PARALLEL = SAFE);
CREATE AGGREGATE billing.openai_cost(usage jsonb) (
    SFUNC = billing.openai_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing.openai_cost_final, PARALLEL = SAFE);
CREATE AGGREGATE billing.openai_cost(usage jsonb, at timestamptz) (
    SFUNC = billing.openai_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing.openai_cost_final, PARALLEL = SAFE);

COMMENT ON AGGREGATE billing.openai_cost(text, bigint, bigint) IS
    'Exact USD cost of OpenAI usage rows at today''s prices; NULL when no row could be priced.';
COMMENT ON AGGREGATE billing.openai_cost(text, bigint, bigint, timestamptz) IS
    'Exact USD cost of OpenAI usage rows, each at the prices in effect at its own time.';
COMMENT ON AGGREGATE billing.openai_cost(jsonb) IS
    'Exact USD cost of messages'' usage objects (model, prompt_tokens, completion_tokens, cached tokens).';
COMMENT ON AGGREGATE billing.openai_cost(jsonb, timestamptz) IS
    'Exact USD cost of messages'' usage objects, each at the prices in effect at its own time.';

-- C body: src/pg/openai_cost.cpp (message_cost)
CREATE FUNCTION billing.message_cost(model text, prompt_tokens bigint, completion_tokens bigint)
    RETURNS numeric AS 'MODULE_PATHNAME', 'message_cost' LANGUAGE C STABLE PARALLEL SAFE;
-- C body: src/pg/openai_cost.cpp (message_cost)
CREATE FUNCTION billing.message_cost(model text, prompt_tokens bigint, completion_tokens bigint, at timestamptz)
    RETURNS numeric AS 'MODULE_PATHNAME', 'message_cost' LANGUAGE C STABLE PARALLEL SAFE;
-- C body: src/pg/openai_cost.cpp (message_cost_jsonb)
CREATE FUNCTION billing.message_cost(usage jsonb)
    RETURNS numeric AS 'MODULE_PATHNAME', 'message_cost_jsonb' LANGUAGE C STABLE PARALLEL SAFE;
-- C body: src/pg/openai_cost.cpp (message_cost_jsonb)
CREATE FUNCTION billing.message_cost(usage jsonb, at timestamptz)
    RETURNS numeric AS 'MODULE_PATHNAME', 'message_cost_jsonb' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION billing.message_cost(text, bigint, bigint) IS
    'Exact USD cost of one usage row at today''s prices; NULL when it carries no usage or cannot be priced.';

-- C body: src/pg/openai_cost.cpp (usage_problem)
CREATE FUNCTION billing.usage_problem(usage jsonb) RETURNS text
    AS 'MODULE_PATHNAME', 'usage_problem' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing.usage_problem(jsonb) IS
    'Why a usage object cannot be read (e.g. a string where a token count belongs), or NULL when it can.';

-- C body: src/pg/aws_cost.cpp (aws_cost_trans)
CREATE FUNCTION billing.aws_cost_trans(billing.cost_state, text, numeric)
    RETURNS billing.cost_state
    AS 'MODULE_PATHNAME', 'aws_cost_trans' LANGUAGE C STABLE PARALLEL SAFE;
-- C body: src/pg/aws_cost.cpp (aws_cost_trans)
CREATE FUNCTION billing.aws_cost_trans(billing.cost_state, text, numeric, timestamptz)
    RETURNS billing.cost_state
    AS 'MODULE_PATHNAME', 'aws_cost_trans' LANGUAGE C STABLE PARALLEL SAFE;
-- C body: src/pg/aws_cost.cpp (aws_cost_final)
CREATE FUNCTION billing.aws_cost_final(billing.cost_state) RETURNS numeric
    AS 'MODULE_PATHNAME', 'aws_cost_final' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION billing.message_cost(text, bigint, bigint, timestamptz) IS
    'Exact USD cost of one usage row at the prices in effect at `at`; NULL when it carries no usage or cannot be priced.';
COMMENT ON FUNCTION billing.message_cost(jsonb) IS
    'Exact USD cost of one message''s usage object (the data column) at today''s prices; NULL when it has no usage or cannot be priced.';
COMMENT ON FUNCTION billing.message_cost(jsonb, timestamptz) IS
    'Exact USD cost of one message''s usage object at the prices in effect at `at`; NULL when it has no usage or cannot be priced.';
COMMENT ON FUNCTION billing.cost_state_in(cstring) IS 'Input function of billing.cost_state, the cost aggregates'' state.';
COMMENT ON FUNCTION billing.cost_state_out(billing.cost_state) IS 'Output function of billing.cost_state, the cost aggregates'' state.';
COMMENT ON FUNCTION billing.cost_state_recv(internal) IS 'Binary input function of billing.cost_state (parallel workers'' states).';
COMMENT ON FUNCTION billing.cost_state_send(billing.cost_state) IS 'Binary output function of billing.cost_state (parallel workers'' states).';
COMMENT ON FUNCTION billing.cost_state_combine(billing.cost_state, billing.cost_state) IS
    'Combine function of the cost aggregates: adds two partial states (parallel workers, Citus shards).';
COMMENT ON FUNCTION billing.openai_cost_trans(billing.cost_state, text, bigint, bigint) IS 'Transition function of billing.openai_cost(text, bigint, bigint).';
COMMENT ON FUNCTION billing.openai_cost_trans(billing.cost_state, text, bigint, bigint, timestamptz) IS 'Transition function of billing.openai_cost(text, bigint, bigint, timestamptz).';
COMMENT ON FUNCTION billing.openai_cost_trans(billing.cost_state, jsonb) IS 'Transition function of billing.openai_cost(jsonb).';
COMMENT ON FUNCTION billing.openai_cost_trans(billing.cost_state, jsonb, timestamptz) IS 'Transition function of billing.openai_cost(jsonb, timestamptz).';
COMMENT ON FUNCTION billing.openai_cost_final(billing.cost_state) IS 'Final function of billing.openai_cost: the exact sum, or NULL.';
COMMENT ON FUNCTION billing.aws_cost_trans(billing.cost_state, text, numeric) IS 'Transition function of billing.aws_cost(text, numeric).';
COMMENT ON FUNCTION billing.aws_cost_trans(billing.cost_state, text, numeric, timestamptz) IS 'Transition function of billing.aws_cost(text, numeric, timestamptz).';
COMMENT ON FUNCTION billing.aws_cost_final(billing.cost_state) IS 'Final function of billing.aws_cost: the exact sum, or NULL.';

CREATE AGGREGATE billing.aws_cost(service text, quantity numeric) (
    SFUNC = billing.aws_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing.aws_cost_final, PARALLEL = SAFE);
CREATE AGGREGATE billing.aws_cost(service text, quantity numeric, at timestamptz) (
    SFUNC = billing.aws_cost_trans, STYPE = billing.cost_state, INITCOND = '(0,0,0,0,0,"")',
    COMBINEFUNC = billing.cost_state_combine, FINALFUNC = billing.aws_cost_final, PARALLEL = SAFE);
COMMENT ON AGGREGATE billing.aws_cost(text, numeric) IS
    'Exact USD cost of AWS usage (quantity in the service''s unit) at today''s prices.';
COMMENT ON AGGREGATE billing.aws_cost(text, numeric, timestamptz) IS
    'Exact USD cost of AWS usage, each row at the prices in effect at its own time.';
