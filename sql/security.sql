-- search_path attacks: a hostile schema placed before pg_catalog cannot make
-- billing run its functions or operators. Every hostile object raises if called.
SET timezone = 'UTC';
\set SHOW_CONTEXT never
CREATE SCHEMA evil;
CREATE FUNCTION evil.hijacked() RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'hijacked: a hostile function was called'; END $$;
CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN $1; END $$;
CREATE FUNCTION evil.btrim(text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN $1; END $$;
CREATE FUNCTION evil.date_trunc(text, timestamp) RETURNS timestamp LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN $2; END $$;
CREATE FUNCTION evil.timezone(text, timestamptz) RETURNS timestamp LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN NULL; END $$;
CREATE FUNCTION evil.isfinite(timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN true; END $$;
CREATE FUNCTION evil.char_length(text) RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN 0; END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN NULL; END $$;
CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN $1 = $2; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq);
CREATE FUNCTION evil.int2_eq(smallint, smallint) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = smallint, RIGHTARG = smallint, FUNCTION = evil.int2_eq);
CREATE FUNCTION evil.num_eq(numeric, numeric) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = evil.num_eq);
-- (xid: the price cache's query of billing.catalog_state, run by every C
-- cost function, which pins no search_path)
CREATE FUNCTION evil.xid_eq(xid, xid) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM evil.hijacked(); RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = xid, RIGHTARG = xid, FUNCTION = evil.xid_eq);
-- A look-alike of the catalog table, for unqualified names.
CREATE TABLE evil.model_prices (model text, effective_from timestamptz, input_per_1m numeric,
                                cached_input_per_1m numeric, output_per_1m numeric);
INSERT INTO evil.model_prices VALUES ('gpt-4o', '2000-01-01', 1000, 1000, 1000);

CREATE TABLE public.sec_messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text,
                                  data jsonb, created_at timestamptz);
INSERT INTO public.sec_messages (conversation_id, role, content, data, created_at) VALUES
  ('a', 'user', 'hello there', '{}', '2026-11-02'),
  ('a', 'assistant', 'reply', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-02'),
  ('a', 'assistant', 'an estimated reply', '{}', '2026-11-03');

-- pg_catalog explicitly after the hostile schema: the worst case.
SET search_path = evil, pg_catalog, public;
-- 100 x 2.5/1M + 50 x 10/1M = 0.00075, not the look-alike's price.
SELECT billing.openai_cost('gpt-4o', 100, 50) AS cost;
SELECT billing.message_cost('{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}'::jsonb) AS cost;
SELECT tracked, backfilled, messages, problems, unpriced_models FROM billing.track_messages('public.sec_messages');
INSERT INTO public.sec_messages (conversation_id, role, content, data, created_at)
VALUES ('b', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0}', '2026-11-04');
-- (the test's own statements qualify their operators: evil.= would catch them too)
UPDATE public.sec_messages SET created_at = '2026-11-05' WHERE conversation_id OPERATOR(pg_catalog.=) 'b';
DELETE FROM public.sec_messages WHERE content OPERATOR(pg_catalog.=) 'reply';
INSERT INTO public.sec_messages (conversation_id, role, content, data, created_at)
VALUES ('a', 'assistant', 'reply', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-02');
SELECT billing.record_usage(' SES ', 10, '2026-11-04') > 0 AS recorded;
SELECT billing.merge() >= 0 AS merged;
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('sec-model', '2026-01-01', 1, 1);
SELECT billing.merge() >= 0 AS merged;
SELECT month, conversation_id, cost, messages FROM billing.conversation_costs ORDER BY conversation_id;
SELECT month, source, cost FROM billing.monthly_history ORDER BY source;
SELECT billing.dashboard(1, 5, '2026-11-15') -> 'openai' ->> 'cost' AS dashboard_cost;
SELECT count(*) AS problems FROM billing.usage_problems;
SELECT billing.untrack_messages('public.sec_messages');
RESET search_path;

-- SECURITY DEFINER only where app roles write through billing (the triggers,
-- and event triggers on their DDL, that keep billing's tables in step;
-- record_usage; allowance() and the three functions that deliver alerts,
-- granted explicitly), each with a pinned search_path and no EXECUTE for PUBLIC.
SELECT p.oid::regprocedure AS security_definer, p.proconfig AS config,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_execute
  FROM pg_proc AS p WHERE p.pronamespace = 'billing'::regnamespace AND p.prosecdef ORDER BY 1;
-- Every SQL or PL/pgSQL function pins its search_path, except the inlinable
-- ones, whose names are all schema-qualified.
SELECT p.oid::regprocedure AS unpinned
  FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
 WHERE p.pronamespace = 'billing'::regnamespace AND l.lanname IN ('sql', 'plpgsql')
   AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
 ORDER BY p.oid::regprocedure::text;  -- by name, not by OID (creation order)
-- Every user-facing function and aggregate says what it does (\df+,
-- obj_description); trigger functions, the tables' own, are exempt.
SELECT p.oid::regprocedure AS uncommented
  FROM pg_proc AS p
 WHERE p.pronamespace = 'billing'::regnamespace AND p.proname !~ '^_'
   AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
   AND obj_description(p.oid, 'pg_proc') IS NULL
 ORDER BY p.oid::regprocedure::text;

DROP TABLE public.sec_messages;
DROP SCHEMA evil CASCADE;
DELETE FROM billing.aws_usage;
DELETE FROM billing.model_prices WHERE model = 'sec-model';
