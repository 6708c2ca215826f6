-- Customers: who each tracked message (and recorded AWS usage) is billed
-- to, and the costs per customer: billing.customer_sources (a tracked
-- table's customer, looked up through a mapping table by conversation),
-- record_customer_usage, _usage_by_customer (OpenAI) and _aws_by_customer,
-- the view customer_costs, costs(from, to, group_by, customer) and
-- dashboard(customer => ...), and the reading-as-one-customer setting.
-- Relies on reads.sql, aws_usage.sql and dashboard.sql; views.sql (loaded
-- last) gives billing.history and usage_problems their customer parts.
--
-- Why the customer is resolved when read: a customer found through a
-- conversation (the app's conversations table: conversation id -> user) is
-- joined, at read time, to the per-conversation rollups
-- (billing.conversation_usage, or conversation_model_usage for one
-- customer, plus the unmerged ledger), which are exact already. The write
-- path is unchanged (no lookup per message, no lock on the mapping), and
-- when a conversation moves to another customer every view follows the
-- current mapping, exactly, with nothing to rebuild.

-- No foreign key to billing.tracked_tables: both tables are dumped, and
-- pg_restore -j loads their data in parallel, in any order (a row whose
-- table came second was refused, and that table's customers lost). A
-- source goes with its table (billing._tracked_table_forgotten, below), and
-- reads leave out one whose table is not there (_readable_customer_source).
CREATE TABLE billing.customer_sources (
    source_id       smallint PRIMARY KEY,
    lookup          regclass NOT NULL,
    lookup_key      name     NOT NULL,
    customer_column name     NOT NULL,
    customer_member text     CHECK (customer_member <> ''),
    per_message     boolean  NOT NULL DEFAULT false,
    CHECK (per_message OR customer_member IS NULL)
);
COMMENT ON TABLE billing.customer_sources IS
    'The customer of a tracked table''s messages: lookup.customer_column of the row whose lookup_key is the message''s conversation (billing.track_customers); per_message: the customer_column, or the data member customer_member, of the conversation''s latest message that names one (billing.track_message_customers).';
SELECT pg_catalog.pg_extension_config_dump('billing.customer_sources', '');

-- What ON DELETE CASCADE did: a table no longer tracked has no customers.
-- SECURITY DEFINER, as a foreign key's action runs as the table's owner:
-- the role that drops its tracked table may not write this one.
CREATE FUNCTION billing._tracked_table_forgotten() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cs billing.customer_sources;
BEGIN
    DELETE FROM billing.customer_sources AS s WHERE s.source_id = OLD.id RETURNING * INTO cs;
    -- (untracked while the table is there, to change a column's type say:
    -- its customers would be gone without a word when it is tracked again)
    IF cs.source_id IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class AS c WHERE c.oid = OLD.relation) THEN
        RAISE NOTICE 'billing: the customers of % (its customer mapping) go with it', OLD.relation
            USING HINT = 'To map them again once it is tracked again: ' || CASE WHEN cs.per_message
                THEN format('SELECT billing.track_message_customers(%L, %s => %L);', OLD.relation::text,
                            CASE WHEN cs.customer_member IS NULL THEN 'customer_column' ELSE 'data_member' END,
                            coalesce(cs.customer_member, cs.customer_column))
                ELSE format('SELECT billing.track_customers(%L, %L, lookup_key => %L, customer_column => %L);',
                            OLD.relation::text, cs.lookup::text, cs.lookup_key, cs.customer_column) END;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION billing._tracked_table_forgotten() FROM PUBLIC;
CREATE TRIGGER tracked_tables_forgotten AFTER DELETE ON billing.tracked_tables
    FOR EACH ROW EXECUTE FUNCTION billing._tracked_table_forgotten();

-- Probes of one customer's conversations.
CREATE INDEX conversation_usage_conversation ON billing.conversation_usage (source_id, conversation_id, month);

-- Recorded AWS usage may name its customer.
ALTER TABLE billing.aws_usage ADD COLUMN customer text CHECK (customer <> '');
-- (hash: a customer id is the app's, of any length, and a btree row holds
-- at most 2704 bytes)
CREATE INDEX aws_usage_customer ON billing.aws_usage USING hash (customer) WHERE customer IS NOT NULL;

-- The mapping table must give one customer per conversation: its key column
-- must be unique (a primary key or a unique index on that column alone).
-- Whether column `col` of `relation` is unique by an index on it alone (a
-- primary key, a unique constraint or index, not partial): what a lookup
-- table's key must be to give one customer per conversation.
CREATE FUNCTION billing._unique_key(relation regclass, col name) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_index AS i
                     JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = relation AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
                      AND a.attname = col)
$$;
REVOKE ALL ON FUNCTION billing._unique_key(regclass, name) FROM PUBLIC;

CREATE FUNCTION billing.track_customers(relation regclass, lookup regclass,
                                        lookup_key name DEFAULT 'id', customer_column name DEFAULT 'user_id')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    sid smallint;
BEGIN
    IF lookup IS NULL OR lookup_key IS NULL OR customer_column IS NULL THEN
        RAISE EXCEPTION 'billing: lookup, lookup_key and customer_column must be given, got %, %, %',
                        coalesce(lookup::text, 'NULL'), coalesce(quote_ident(lookup_key), 'NULL'),
                        coalesce(quote_ident(customer_column), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT t.id INTO sid FROM billing.tracked_tables AS t WHERE t.relation = track_customers.relation;
    IF sid IS NULL THEN
        RAISE EXCEPTION 'billing: table % is not tracked', relation USING ERRCODE = 'undefined_object',
              HINT = 'billing.track_messages() starts tracking it.';
    END IF;
    -- Both columns exist and have a type billing reads as an id (else an error naming it).
    PERFORM billing._column_reader(lookup, lookup_key, 'conversation', 'c');
    PERFORM billing._column_reader(lookup, customer_column, 'customer', 'c');
    IF NOT billing._unique_key(lookup, lookup_key) THEN
        RAISE EXCEPTION 'billing: column % of table % is not unique, so it cannot give one customer per conversation',
                        quote_ident(lookup_key), lookup
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use the table''s primary key (or a column with a unique index of its own). Nothing was changed.';
    END IF;
    INSERT INTO billing.customer_sources VALUES (sid, lookup, lookup_key, customer_column)
    ON CONFLICT (source_id) DO UPDATE
       SET lookup = excluded.lookup, lookup_key = excluded.lookup_key, customer_column = excluded.customer_column,
           customer_member = NULL, per_message = false;
END
$$;
COMMENT ON FUNCTION billing.track_customers(regclass, regclass, name, name) IS
    'The customer of a tracked table''s messages: lookup.customer_column of the row whose lookup_key is the message''s conversation, read when costs are read.';

CREATE FUNCTION billing.untrack_customers(relation regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    IF relation IS NULL THEN
        RAISE EXCEPTION 'billing: relation must be given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM billing.customer_sources AS c
     USING billing.tracked_tables AS t
     WHERE t.id = c.source_id AND t.relation = untrack_customers.relation;
    -- (as untrack_messages: nothing to forget is an error, not a silent success)
    IF NOT FOUND THEN
        RAISE EXCEPTION 'billing: table % has no customer mapping', relation USING ERRCODE = 'undefined_object',
              HINT = 'billing.track_customers() or billing.track_message_customers() makes one.';
    END IF;
END
$$;
COMMENT ON FUNCTION billing.untrack_customers(regclass) IS
    'Forgets which customer a tracked table''s messages belong to; its costs then belong to no customer.';

-- After DDL on the table a customer source reads (its lookup table, or
-- the tracked table itself for track_message_customers), or on a parent
-- of it: a renamed column is followed (`new_names`: the names the command
-- gave, which replace the names that are gone). A source the command left
-- unreadable (a column of a type billing cannot read, a lookup key that is
-- no longer unique) gets a WARNING: reads of customers would fail on it,
-- or bill a conversation twice. Never fails the command: a restore, say,
-- adds a lookup's constraints one by one. (A column billing reads is not
-- dropped: billing._tracked_table_dropped refuses it.)
CREATE FUNCTION billing._customer_source_altered(p_source smallint, new_names name[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s billing.customer_sources;
    present name[];
    fresh name;
BEGIN
    SELECT * INTO s FROM billing.customer_sources AS c WHERE c.source_id = p_source;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    present := ARRAY(SELECT a.attname FROM pg_attribute AS a
                      WHERE a.attrelid = s.lookup AND a.attnum > 0 AND NOT a.attisdropped);
    fresh := (SELECT n FROM unnest(new_names) AS n WHERE n = ANY (present) LIMIT 1);
    IF fresh IS NOT NULL AND NOT (s.lookup_key = ANY (present) AND s.customer_column = ANY (present)) THEN
        UPDATE billing.customer_sources AS c
           SET lookup_key = CASE WHEN s.lookup_key = ANY (present) THEN s.lookup_key ELSE fresh END,
               customer_column = CASE WHEN s.customer_column = ANY (present) THEN s.customer_column ELSE fresh END
         WHERE c.source_id = p_source
        RETURNING * INTO s;
    END IF;
    BEGIN
        PERFORM billing._column_reader(s.lookup, s.lookup_key, 'conversation', 'c');
        IF s.customer_member IS NULL THEN
            PERFORM billing._column_reader(s.lookup, s.customer_column, 'customer', 'c');
        END IF;
        IF NOT s.per_message AND NOT billing._unique_key(s.lookup, s.lookup_key) THEN
            RAISE EXCEPTION 'column % is not unique, so it cannot give one customer per conversation',
                            quote_ident(s.lookup_key);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'billing: % gives the customers of tracked table %, and %', s.lookup,
                      (SELECT t.relation FROM billing.tracked_tables AS t WHERE t.id = p_source),
                      regexp_replace(SQLERRM, '^billing: ', '')
            USING HINT = 'Reads of customers fail (or count twice) until billing.track_customers() or track_message_customers() names a readable source again.';
    END;
END
$$;
REVOKE ALL ON FUNCTION billing._customer_source_altered(smallint, name[]) FROM PUBLIC;

-- The customer as a column of the tracked table itself, or as a member of
-- its data (billing.track_message_customers): the messages table is its own
-- mapping, read when costs are read, like a lookup table. Costs are kept
-- per conversation, so a conversation has one customer: the one its latest
-- message (by time, then id) that names a customer names. A conversation
-- whose messages name different customers is listed in
-- billing.usage_problems ('several customers'), with the customer it is
-- billed to; one none of whose messages names a customer (NULL or empty)
-- belongs to no customer.
CREATE FUNCTION billing.track_message_customers(relation regclass, customer_column name DEFAULT NULL,
                                                data_member text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    t billing.tracked_tables;
BEGIN
    SELECT tt.* INTO t FROM billing.tracked_tables AS tt WHERE tt.relation = track_message_customers.relation;
    IF t.id IS NULL THEN
        RAISE EXCEPTION 'billing: table % is not tracked', relation USING ERRCODE = 'undefined_object',
              HINT = 'billing.track_messages() starts tracking it.';
    END IF;
    IF (customer_column IS NULL) = (data_member IS NULL) OR btrim(data_member) = '' THEN
        RAISE EXCEPTION 'billing: give either customer_column or data_member'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'customer_column: a column of the table names the customer; data_member: a member of its data does. Nothing was changed.';
    END IF;
    IF customer_column IS NOT NULL THEN
        -- A column of a type billing reads as an id (else an error naming it).
        PERFORM billing._column_reader(relation, customer_column, 'customer', 'c');
    END IF;
    INSERT INTO billing.customer_sources AS cs (source_id, lookup, lookup_key, customer_column, customer_member, per_message)
    VALUES (t.id, relation, t.conversation_column, coalesce(customer_column, t.data_column), data_member, true)
    ON CONFLICT (source_id) DO UPDATE
       SET lookup = excluded.lookup, lookup_key = excluded.lookup_key, customer_column = excluded.customer_column,
           customer_member = excluded.customer_member, per_message = true;
END
$$;
COMMENT ON FUNCTION billing.track_message_customers(regclass, name, text) IS
    'The customer of a tracked table''s conversations: the customer_column (or the data member data_member) of its latest message that names one, read when costs are read.';

-- A member of usage data held as text or json, or NULL when it is not JSON
-- (read as usage is, by billing._jsonb_of_text).
CREATE FUNCTION billing._json_member(data text, member text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT billing._jsonb_of_text(data) OPERATOR(pg_catalog.->>) member
$$;

-- The SQL expression that reads the customer a message (alias c) names,
-- NULL for none (NULL, empty, not a member of its data); with p_raw, the
-- plain expression an index on it can serve (for comparing to a customer).
CREATE FUNCTION billing._message_customer_reader(s billing.customer_sources, t billing.tracked_tables, p_raw boolean)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    x text;
BEGIN
    IF s.customer_member IS NULL THEN
        x := billing._column_reader(t.relation, s.customer_column, 'customer', 'c');
    ELSIF billing._column_base_type(t.relation, t.data_column) = 'jsonb'::regtype THEN
        x := format('(%s OPERATOR(pg_catalog.->>) %L::pg_catalog.text)',
                    billing._column_reader(t.relation, t.data_column, 'data', 'c'), s.customer_member);
    ELSE
        x := format('billing._json_member(%s, %L)', billing._column_reader(t.relation, t.data_column, 'data', 'c'),
                    s.customer_member);
    END IF;
    RETURN CASE WHEN p_raw THEN x ELSE format('NULLIF(%s, ''''::pg_catalog.text)', x) END;
END
$$;

-- The customers of a tracked table whose messages name them
-- (track_message_customers), per conversation: of every conversation, of
-- one customer's (p_customer: probed through an index on the customer
-- column or data member, when there is one, then through the conversation
-- column), or of some conversations (p_keys, keys as billing keys them).
-- Read as the caller; the caller checks that it may read the table.
CREATE FUNCTION billing._message_customers(p_source smallint, p_customer text, p_keys text[])
RETURNS TABLE (source_id smallint, conversation_id text, customer text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s billing.customer_sources;
    t billing.tracked_tables;
    q1 text;
    q2 text;
    filter text;
    ktype text;
BEGIN
    SELECT cs.* INTO s FROM billing.customer_sources AS cs WHERE cs.source_id = p_source AND cs.per_message;
    SELECT tt.* INTO t FROM billing.tracked_tables AS tt WHERE tt.id = p_source;
    IF s.source_id IS NULL OR t.id IS NULL THEN
        RETURN;
    END IF;
    -- The latest message naming a customer, per conversation.
    q1 := format('SELECT %s::pg_catalog.int2, billing._key(x.k), x.cu
                    FROM (SELECT DISTINCT ON (c.%I) %s AS k, %s AS cu FROM %s AS c WHERE (',
                 p_source, t.conversation_column,
                 billing._column_reader(t.relation, t.conversation_column, 'conversation', 'c'),
                 billing._message_customer_reader(s, t, false), t.relation);
    q2 := format(') AND c.%I IS NOT NULL AND %s IS NOT NULL
                          ORDER BY c.%I, %s DESC NULLS LAST, c.%I DESC) AS x
                   WHERE $1 IS NULL OR x.cu = $1',
                 t.conversation_column, billing._message_customer_reader(s, t, false), t.conversation_column,
                 billing._column_reader(t.relation, t.created_at_column, 'created_at', 'c'), t.id_column);
    IF p_customer IS NOT NULL THEN
        IF s.customer_member IS NULL THEN
            filter := format('c.%I = $1::%s', s.customer_column,
                             format_type((SELECT a.atttypid FROM pg_attribute AS a
                                           WHERE a.attrelid = t.relation AND a.attname = s.customer_column), NULL));
        ELSE
            filter := format('%s = $1', billing._message_customer_reader(s, t, true));
        END IF;
        BEGIN
            RETURN QUERY EXECUTE q1 || format('c.%I IN (SELECT c.%I FROM %s AS c WHERE %s)',
                                                  t.conversation_column, t.conversation_column, t.relation, filter) || q2
                USING p_customer, p_keys;
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            NULL;   -- not a value of the column's type: no conversation of that customer
        END;
    ELSIF p_keys IS NOT NULL THEN
        ktype := format_type((SELECT a.atttypid FROM pg_attribute AS a
                               WHERE a.attrelid = t.relation AND a.attname = t.conversation_column), NULL);
        BEGIN
            -- (through an index on the conversation column)
            RETURN QUERY EXECUTE q1 || format('c.%I = ANY ($2::%s[])', t.conversation_column, ktype) || q2
                USING NULL::text, ARRAY(SELECT y FROM unnest(p_keys) AS y WHERE y NOT LIKE '%... (md5 %');
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            -- a key that is no value of the column's type: compared as text
            RETURN QUERY EXECUTE q1 || format('billing._key(%s) = ANY ($2)',
                                              billing._column_reader(t.relation, t.conversation_column, 'conversation', 'c')) || q2
                USING NULL::text, p_keys;
            RETURN;
        END;
        IF EXISTS (SELECT 1 FROM unnest(p_keys) AS y WHERE y LIKE '%... (md5 %') THEN
            -- a key billing shortened (billing._key) is matched through the key
            RETURN QUERY EXECUTE q1 || format('billing._key(%s) = ANY ($2)',
                                              billing._column_reader(t.relation, t.conversation_column, 'conversation', 'c')) || q2
                USING NULL::text, ARRAY(SELECT y FROM unnest(p_keys) AS y WHERE y LIKE '%... (md5 %');
        END IF;
    ELSE
        RETURN QUERY EXECUTE q1 || 'true' || q2 USING NULL::text, p_keys;
    END IF;
END
$$;

-- Conversations whose messages name different customers, of the tables
-- the caller may read: the customers named, the one the conversation is
-- billed to (its latest message's), and how many messages name another.
CREATE FUNCTION billing._customer_conflicts()
RETURNS TABLE (source_id smallint, conversation_id text, customers text[], customer text, messages bigint,
               last_message_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s billing.customer_sources;
    t billing.tracked_tables;
    cu text;
    at text;
BEGIN
    FOR s IN SELECT cs.* FROM billing.customer_sources AS cs
              WHERE cs.per_message AND billing._readable_customer_source(cs)
              ORDER BY cs.source_id LOOP
        SELECT tt.* INTO t FROM billing.tracked_tables AS tt WHERE tt.id = s.source_id;
        cu := billing._message_customer_reader(s, t, false);
        at := billing._column_reader(t.relation, t.created_at_column, 'created_at', 'c');
        RETURN QUERY EXECUTE format(
            'SELECT %s::pg_catalog.int2, billing._key(x.k), x.named, x.named_last[1],
                    (SELECT pg_catalog.count(*) FROM pg_catalog.unnest(x.every) AS e WHERE e <> x.named_last[1]), x.last_at
               FROM (SELECT pg_catalog.min(%s) AS k,
                            pg_catalog.array_agg(DISTINCT %s ORDER BY %s) AS named,
                            pg_catalog.array_agg(%s ORDER BY %s DESC NULLS LAST, c.%I DESC) AS named_last,
                            pg_catalog.array_agg(%s) AS every, pg_catalog.max(%s) AS last_at
                       FROM %s AS c
                      WHERE c.%I IS NOT NULL AND %s IS NOT NULL
                      GROUP BY c.%I
                     HAVING pg_catalog.count(DISTINCT %s) > 1) AS x',
            s.source_id, billing._column_reader(t.relation, t.conversation_column, 'conversation', 'c'),
            cu, cu, cu, at, t.id_column, cu, at, t.relation, t.conversation_column, cu, t.conversation_column, cu);
    END LOOP;
END
$$;

-- AWS usage of a customer: billing.record_usage's checks, and the customer.
CREATE FUNCTION billing.record_customer_usage(customer text, service text, quantity numeric,
                                              at timestamptz DEFAULT now(), note text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF customer IS NULL OR btrim(customer) = '' THEN
        RAISE EXCEPTION 'billing: customer must be given' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'billing.record_usage() records usage of no customer.';
    END IF;
    new_id := billing.record_usage(service, quantity, at, note);
    UPDATE billing.aws_usage AS u SET customer = record_customer_usage.customer WHERE u.id = new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION billing.record_customer_usage(text, text, numeric, timestamptz, text) IS
    'Records AWS usage of a customer (as billing.record_usage does, with the customer).';
REVOKE ALL ON FUNCTION billing.record_customer_usage(text, text, numeric, timestamptz, text) FROM PUBLIC;

-- The customer an app reads as (the setting billing.customer, set per
-- request), or NULL: the caller reads every customer it may read.
CREATE FUNCTION billing.current_customer() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN pg_catalog.current_setting('billing.customer', true) OPERATOR(pg_catalog.<>) ''
                THEN pg_catalog.current_setting('billing.customer', true) END
$$;
COMMENT ON FUNCTION billing.current_customer() IS
    'The setting billing.customer: when set, every read of billing shows that customer''s costs only.';

-- Raises (datatype_mismatch, undefined_column) when billing cannot read a
-- column that customer source `s` of tracked table `t` reads.
CREATE FUNCTION billing._check_customer_source(s billing.customer_sources, t billing.tracked_tables) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF s.per_message THEN
        PERFORM billing._message_customer_reader(s, t, false);
    ELSE
        PERFORM billing._column_reader(s.lookup, s.lookup_key, 'conversation', 'c');
        PERFORM billing._column_reader(s.lookup, s.customer_column, 'customer', 'c');
    END IF;
END
$$;

-- Whether the caller's reads of customers use source `s`: its tracked
-- table readable by the caller (billing._may_read_table), its lookup still
-- there. A lookup the caller may not read, or a column billing cannot read
-- (its type changed since track_customers), leaves the source out with a
-- WARNING that says what fixes it: its conversations then count as no
-- customer's, and every other source, budget and alert reads as before.
CREATE FUNCTION billing._readable_customer_source(s billing.customer_sources) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t billing.tracked_tables;
    -- (one warning per source and transaction: a read asks many times)
    warned text := coalesce(current_setting('billing_reads.unreadable_customer_sources', true), '');
    mark text := format('[%s]', s.source_id);
BEGIN
    SELECT tt.* INTO t FROM billing.tracked_tables AS tt WHERE tt.id = s.source_id;
    IF t.id IS NULL OR NOT billing._may_read_table(s.source_id)
       OR NOT EXISTS (SELECT 1 FROM pg_class AS r WHERE r.oid = s.lookup) THEN   -- (not dropped since)
        RETURN false;
    END IF;
    IF NOT has_table_privilege(s.lookup, 'SELECT') THEN
        IF strpos(warned, mark) = 0 THEN
            PERFORM set_config('billing_reads.unreadable_customer_sources', warned || mark, true);
            RAISE WARNING 'billing: role "%" may not read %, which gives the customers of tracked table %: its conversations count as no customer''s',
                          current_user, s.lookup, t.relation
                USING HINT = format('GRANT SELECT ON %s TO %I;', s.lookup, current_user);
        END IF;
        RETURN false;
    END IF;
    BEGIN
        PERFORM billing._check_customer_source(s, t);
    EXCEPTION WHEN datatype_mismatch OR undefined_column THEN
        IF strpos(warned, mark) = 0 THEN
            PERFORM set_config('billing_reads.unreadable_customer_sources', warned || mark, true);
            RAISE WARNING 'billing: the customers of tracked table % cannot be read, and its conversations count as no customer''s: %',
                          t.relation, regexp_replace(SQLERRM, '^billing: ', '')
                USING HINT = 'Change the column back to a type billing reads, or name the customers again with billing.track_customers() or billing.track_message_customers() (README "Customers").';
        END IF;
        RETURN false;
    END;
    RETURN true;
END
$$;

-- Raises, for the caller, the first reason a customer source of a table it
-- reads cannot be read (what billing._readable_customer_source warns of
-- and reads past): for statements, which are kept for good.
CREATE FUNCTION billing._require_customer_sources() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s billing.customer_sources;
    t billing.tracked_tables;
BEGIN
    FOR s IN SELECT cs.* FROM billing.customer_sources AS cs
              WHERE billing._may_read_table(cs.source_id)
                AND EXISTS (SELECT 1 FROM pg_class AS r WHERE r.oid = cs.lookup)
              ORDER BY cs.source_id LOOP
        SELECT tt.* INTO STRICT t FROM billing.tracked_tables AS tt WHERE tt.id = s.source_id;
        IF NOT has_table_privilege(s.lookup, 'SELECT') THEN
            RAISE EXCEPTION 'billing: role "%" may not read %, which gives the customers of tracked table %',
                            current_user, s.lookup, t.relation
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('GRANT SELECT ON %s TO %I;', s.lookup, current_user);
        END IF;
        PERFORM billing._check_customer_source(s, t);
    END LOOP;
END
$$;

-- The conversations of one customer (p_customer), or of every customer
-- (p_every), per tracked table, read from the mapping tables as the caller.
-- A conversation without a row in the mapping (or whose customer is NULL)
-- has no customer.
CREATE FUNCTION billing._customer_conversations(p_customer text, p_every boolean)
RETURNS TABLE (source_id smallint, conversation_id text, customer text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s billing.customer_sources;
    k text;
    c text;
    ctype text;
BEGIN
    -- (a mapping the caller may not read gives no customer, with a
    -- warning: its conversations count as no customer's)
    FOR s IN SELECT cs.* FROM billing.customer_sources AS cs
              WHERE billing._readable_customer_source(cs)
              ORDER BY cs.source_id LOOP
        IF s.per_message THEN
            -- (the customer a column or data member of the messages names)
            IF p_every OR p_customer IS NOT NULL THEN
                RETURN QUERY SELECT * FROM billing._message_customers(s.source_id, CASE WHEN NOT p_every THEN p_customer END,
                                                                      NULL);
            END IF;
            CONTINUE;
        END IF;
        k := billing._column_reader(s.lookup, s.lookup_key, 'conversation', 'c');
        c := billing._column_reader(s.lookup, s.customer_column, 'customer', 'c');
        IF p_every THEN
            RETURN QUERY EXECUTE format('SELECT %s::pg_catalog.int2, billing._key(%s), %s FROM %s AS c WHERE %s IS NOT NULL',
                                        s.source_id, k, c, s.lookup, c);
        ELSIF p_customer IS NOT NULL THEN
            -- Compared in the column's own type, so that an index on it is used.
            ctype := format_type((SELECT a.atttypid FROM pg_attribute AS a
                                   WHERE a.attrelid = s.lookup AND a.attname = s.customer_column), NULL);
            BEGIN
                RETURN QUERY EXECUTE format('SELECT %s::pg_catalog.int2, billing._key(%s), %s FROM %s AS c WHERE c.%I = $1::%s',
                                            s.source_id, k, c, s.lookup, s.customer_column, ctype)
                    USING p_customer;
            EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
                NULL;   -- not a value of the column's type: no conversation of that customer
            END;
        END IF;
    END LOOP;
END
$$;

-- OpenAI usage per customer and month, with p_from <= time < p_to: of one
-- customer (p_customer), or of every customer (p_customer NULL; messages of
-- no customer under a NULL customer). Conversations of tracked tables
-- without a customer source belong to no customer.
CREATE FUNCTION billing._usage_by_customer(p_from timestamptz, p_to timestamptz, p_customer text)
RETURNS TABLE (customer text, month date, messages bigint, prompt_tokens numeric, completion_tokens numeric,
               cached_tokens numeric, estimated_tokens numeric, cost numeric, unpriced_tokens numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s record;
BEGIN
    PERFORM billing._require_reader();
    IF p_customer IS NULL AND NOT isfinite(p_from) AND NOT isfinite(p_to) THEN
        -- Every customer, every month (billing.customer_costs): the parts
        -- billing._usage_by_conversation reads (fresh months' rollups and
        -- unmerged ledger rows, the tables for the rest), summed per
        -- customer and month at once: no grouping
        -- per conversation first, no first and last message times, and
        -- the freshness test as an anti-join (one hash, not one probe per
        -- rollup row): 1.6x faster with 200,000 customers. (For a bounded
        -- range, as statements read one month, grouping per conversation
        -- first, below, measured as fast or faster.)
        RETURN QUERY
        WITH map AS MATERIALIZED (
            SELECT * FROM billing._customer_conversations(NULL, true)
        ), stale AS MATERIALIZED (
            SELECT sm.source_id, sm.month FROM billing.stale_months AS sm
            UNION ALL
            SELECT t.id, NULL FROM billing.tracked_tables AS t WHERE NOT t.backfilled
        ), x AS (
            SELECT u.source_id, u.conversation_id, u.month, u.messages, u.prompt_tokens, u.completion_tokens,
                   u.cached_tokens, u.estimated_tokens, u.cost, u.unpriced_tokens
              FROM billing.conversation_usage AS u
             WHERE u.month >= billing.month_of(p_from)
               AND billing.month_start(u.month) >= p_from
               AND billing.month_end(u.month) <= p_to
            UNION ALL
            SELECT l.source_id, l.conversation_id, l.month, l.messages, l.prompt_tokens, l.completion_tokens,
                   l.cached_tokens, l.estimated_prompt + l.estimated_completion, l.cost + l.estimated_cost,
                   l.unpriced_tokens
              FROM billing._ledger_usage(p_from, p_to, billing._estimate_model()) AS l
        ), y AS (
            SELECT x.* FROM x
             WHERE NOT EXISTS (SELECT 1 FROM stale AS st
                                WHERE st.source_id = x.source_id AND (st.month = x.month OR st.month IS NULL))
            UNION ALL
            SELECT r.source_id, r.conversation_id, r.month, r.messages, r.prompt_tokens, r.completion_tokens,
                   r.cached_tokens, r.estimated_tokens, r.cost, r.unpriced_tokens
              FROM billing._table_ranges(p_from, p_to) AS g
             CROSS JOIN LATERAL (SELECT g.source_id, t.conversation_id, t.month, t.messages, t.prompt_tokens,
                                        t.completion_tokens, t.cached_tokens,
                                        t.estimated_prompt + t.estimated_completion AS estimated_tokens,
                                        t.cost + t.estimated_cost AS cost, t.unpriced_tokens
                                   FROM billing._scan_table_safely(g.source_id, g.range_from, g.range_to) AS t) AS r
        )
        SELECT m.customer, y.month, sum(y.messages)::bigint, sum(y.prompt_tokens), sum(y.completion_tokens),
               sum(y.cached_tokens), sum(y.estimated_tokens), sum(y.cost), sum(y.unpriced_tokens)
          FROM y
          LEFT JOIN map AS m ON m.source_id = y.source_id AND m.conversation_id = y.conversation_id
         GROUP BY m.customer, y.month
        HAVING sum(y.messages) <> 0;
        RETURN;
    END IF;
    IF p_customer IS NULL THEN
        RETURN QUERY
        SELECT m.customer, c.month, sum(c.messages)::bigint, sum(c.prompt_tokens)::numeric,
               sum(c.completion_tokens)::numeric, sum(c.cached_tokens)::numeric, sum(c.estimated_tokens)::numeric,
               sum(c.cost), sum(c.unpriced_tokens)::numeric
          FROM billing._usage_by_conversation(p_from, p_to) AS c
          LEFT JOIN (SELECT * FROM billing._customer_conversations(NULL, true)) AS m
                 ON m.source_id = c.source_id AND m.conversation_id = c.conversation_id
         GROUP BY m.customer, c.month
        HAVING sum(c.messages) <> 0;
        RETURN;
    END IF;

    -- One customer: its per-model rows (the customer's dashboard reads the
    -- same), summed per month.
    RETURN QUERY
    SELECT p_customer, r.month, sum(r.messages)::bigint, sum(r.prompt_tokens), sum(r.completion_tokens),
           sum(r.cached_tokens), sum(r.estimated_prompt + r.estimated_completion),
           sum(r.cost + r.estimated_cost), sum(r.unpriced_tokens)
      FROM billing._customer_usage_by_model(p_from, p_to, p_customer) AS r
     GROUP BY r.month;
END
$$;

-- AWS per customer, month and service with p_from <= at < p_to. A
-- customer's AWS costs are its recorded usage at the prices of its time;
-- everything else (usage recorded without a customer, usage patterns,
-- actual figures in place of the estimate) is the NULL customer's, so that
-- the customers add up to billing's AWS figures. p_customer: that customer
-- only.
CREATE FUNCTION billing._aws_by_customer(p_from timestamptz, p_to timestamptz, p_customer text)
RETURNS TABLE (customer text, month date, service text, quantity numeric, cost numeric, unpriced_quantity numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET billing.unknown_service = 'ignore'
AS $$
BEGIN
    IF p_customer IS NOT NULL THEN
        RETURN QUERY
        SELECT u.customer, billing.month_of(u.at), u.service, sum(u.quantity),
               coalesce(billing.aws_cost(u.service, u.quantity, u.at), 0),
               coalesce(sum(u.quantity) FILTER (WHERE billing.resolve_aws_price(u.service, u.at) IS NULL), 0)
          FROM billing.aws_usage AS u
         WHERE u.customer = p_customer AND u.at >= p_from AND u.at < p_to
         GROUP BY 1, 2, 3;
        RETURN;
    END IF;
    RETURN QUERY
    WITH named AS MATERIALIZED (
        SELECT u.customer, billing.month_of(u.at) AS month, u.service, sum(u.quantity) AS quantity,
               coalesce(billing.aws_cost(u.service, u.quantity, u.at), 0) AS cost,
               coalesce(sum(u.quantity) FILTER (WHERE billing.resolve_aws_price(u.service, u.at) IS NULL), 0)
                   AS unpriced_quantity
          FROM billing.aws_usage AS u
         WHERE u.customer IS NOT NULL AND u.at >= p_from AND u.at < p_to
         GROUP BY 1, 2, 3
    ), named_total AS (
        SELECT n.month, n.service, sum(n.quantity) AS quantity, sum(n.cost) AS cost,
               sum(n.unpriced_quantity) AS unpriced_quantity
          FROM named AS n GROUP BY 1, 2
    ), everything AS (
        SELECT a.month, a.service, a.quantity, a.cost, a.unpriced_quantity FROM billing._aws_usage_by_service(p_from, p_to) AS a
    )
    SELECT n.customer, n.month, n.service, n.quantity, n.cost, n.unpriced_quantity FROM named AS n
    UNION ALL
    SELECT NULL, coalesce(e.month, t.month), coalesce(e.service, t.service),
           coalesce(e.quantity, 0) - coalesce(t.quantity, 0), coalesce(e.cost, 0) - coalesce(t.cost, 0),
           greatest(coalesce(e.unpriced_quantity, 0) - coalesce(t.unpriced_quantity, 0), 0)
      FROM everything AS e FULL JOIN named_total AS t ON t.month = e.month AND t.service = e.service
     WHERE coalesce(e.quantity, 0) <> coalesce(t.quantity, 0) OR coalesce(e.cost, 0) <> coalesce(t.cost, 0);
END
$$;

-- Costs per customer and month with p_from <= time < p_to (whole or
-- partial months): OpenAI and AWS. p_customer NULL: every customer (and the
-- NULL customer: usage of no customer); under the setting billing.customer,
-- only that customer, whatever p_customer says.
CREATE FUNCTION billing._customer_months(p_from timestamptz, p_to timestamptz, p_customer text)
RETURNS TABLE (customer text, month date, openai_cost numeric, aws_cost numeric, total_cost numeric, tokens numeric,
               prompt_tokens numeric, completion_tokens numeric, cached_tokens numeric, estimated_tokens numeric,
               unpriced_tokens numeric, messages bigint, emails numeric, unpriced_aws_quantity numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    who text := coalesce(billing.current_customer(), p_customer);
BEGIN
    IF billing.current_customer() IS NOT NULL AND p_customer IS DISTINCT FROM billing.current_customer()
       AND p_customer IS NOT NULL THEN
        RETURN;   -- reading as one customer: no other customer's figures
    END IF;
    RETURN QUERY
    WITH o AS (
        SELECT * FROM billing._usage_by_customer(p_from, p_to, who)
    ), a AS (
        SELECT x.customer, x.month, sum(x.cost) AS cost,
               coalesce(sum(x.quantity) FILTER (WHERE x.service = 'ses'), 0) AS emails,
               sum(x.unpriced_quantity) AS unpriced_quantity
          FROM billing._aws_by_customer(p_from, p_to, who) AS x
         GROUP BY x.customer, x.month
    )
    SELECT coalesce(o.customer, a.customer), coalesce(o.month, a.month), coalesce(o.cost, 0), coalesce(a.cost, 0),
           coalesce(o.cost, 0) + coalesce(a.cost, 0),
           coalesce(o.prompt_tokens + o.completion_tokens + o.estimated_tokens, 0),
           coalesce(o.prompt_tokens, 0), coalesce(o.completion_tokens, 0), coalesce(o.cached_tokens, 0),
           coalesce(o.estimated_tokens, 0), coalesce(o.unpriced_tokens, 0), coalesce(o.messages, 0),
           coalesce(a.emails, 0), coalesce(a.unpriced_quantity, 0)
      -- (equalities only, so that the join is hashed on the customer too: an
      -- IS NOT DISTINCT FROM would compare every customer's row with every
      -- other's of the same month)
      FROM o FULL JOIN a ON a.month = o.month AND (a.customer IS NULL) = (o.customer IS NULL)
                        AND coalesce(a.customer, '') = coalesce(o.customer, '');
END
$$;

CREATE VIEW billing.customer_costs WITH (security_invoker = true) AS
SELECT c.customer, c.month, c.openai_cost, c.aws_cost, c.total_cost, c.tokens, c.prompt_tokens,
       c.completion_tokens, c.cached_tokens, c.estimated_tokens, c.unpriced_tokens, c.messages, c.emails,
       c.unpriced_aws_quantity
  FROM billing._customer_months('-infinity', 'infinity', NULL) AS c;
COMMENT ON VIEW billing.customer_costs IS
    'Cost per customer and month: OpenAI (actual and estimated) and AWS, tokens, messages, estimated and unpriced parts. customer NULL: usage of no customer.';

-- Costs of any range, per day or month, of every customer or one.
CREATE FUNCTION billing._costs("from" timestamptz, "to" timestamptz, group_by text, p_customer text)
RETURNS TABLE (period date, customer text, openai_cost numeric, aws_cost numeric, total_cost numeric,
               tokens numeric, estimated_tokens numeric, unpriced_tokens numeric, messages bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    who text := coalesce(billing.current_customer(), p_customer);
    tz text := (SELECT s.value FROM billing.settings AS s WHERE s.name = 'month_time_zone');
BEGIN
    IF "from" IS NULL OR "to" IS NULL THEN
        RAISE EXCEPTION 'billing: the range must be given, got % to %', coalesce("from"::text, 'NULL'),
                        coalesce("to"::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- ('' or blanks name no customer: every customer is NULL)
    IF btrim(p_customer) = '' THEN
        RAISE EXCEPTION 'billing: customer must be given, or NULL for every customer' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF "to" <= "from" OR NOT billing._countable("from")
       OR NOT billing._countable("to" - interval '1 microsecond') THEN
        RAISE EXCEPTION 'billing: the range must have a start before its end, within the years 1 to 9999'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF group_by IS NULL OR group_by NOT IN ('day', 'month') THEN
        RAISE EXCEPTION 'billing: group_by must be ''day'' or ''month'', got %',
                        coalesce(quote_literal(CASE WHEN length(group_by) > 60 THEN left(group_by, 60) || '...' ELSE group_by END), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF billing.current_customer() IS NOT NULL AND p_customer IS NOT NULL
       AND p_customer <> billing.current_customer() THEN
        RETURN;
    END IF;
    PERFORM billing._require_reader();
    IF group_by = 'month' THEN
        RETURN QUERY
        SELECT c.month, c.customer, c.openai_cost, c.aws_cost, c.total_cost, c.tokens, c.estimated_tokens,
               c.unpriced_tokens, c.messages
          FROM billing._customer_months("from", "to", who) AS c;
        RETURN;
    END IF;
    IF ("to" - "from") > interval '3700 days' THEN
        RAISE EXCEPTION 'billing: a range by day may not exceed about ten years' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- By day: each day read from the tracked tables (as the caller), the
    -- days in the month_time_zone setting's zone; AWS from recorded usage
    -- (usage patterns and actual figures are monthly: they are in the
    -- month rows only).
    RETURN QUERY
    WITH days AS (
        SELECT g.d::date AS day, greatest("from", timezone(tz, g.d::timestamp)) AS d_from,
               least("to", timezone(tz, g.d::timestamp + interval '1 day')) AS d_to
          FROM generate_series(timezone(tz, "from")::date, timezone(tz, "to" - interval '1 microsecond')::date,
                               interval '1 day') AS g(d)
    ), map AS MATERIALIZED (
        SELECT * FROM billing._customer_conversations(who, who IS NULL)
    ), o AS (
        SELECT days.day, m.customer, sum(r.cost + r.estimated_cost) AS cost,
               sum(r.prompt_tokens + r.completion_tokens + r.estimated_prompt + r.estimated_completion) AS tokens,
               sum(r.estimated_prompt + r.estimated_completion) AS estimated_tokens,
               sum(r.unpriced_tokens) AS unpriced_tokens, sum(r.messages)::bigint AS messages
          FROM days
         CROSS JOIN billing.tracked_tables AS t
         CROSS JOIN LATERAL billing._scan_table_safely(t.id, days.d_from, days.d_to) AS r
          LEFT JOIN map AS m ON m.source_id = t.id AND m.conversation_id = r.conversation_id
         WHERE billing._may_read_table(t.id) AND (who IS NULL OR m.customer IS NOT NULL)
         GROUP BY 1, 2
        HAVING sum(r.messages) <> 0
    ), a AS (
        SELECT timezone(tz, u.at)::date AS day, u.customer,
               coalesce(billing.aws_cost(u.service, u.quantity, u.at), 0) AS cost
          FROM billing.aws_usage AS u
         WHERE u.at >= "from" AND u.at < "to" AND (who IS NULL OR u.customer = who)
         GROUP BY 1, 2
    )
    SELECT coalesce(o.day, a.day), coalesce(o.customer, a.customer), coalesce(o.cost, 0), coalesce(a.cost, 0),
           coalesce(o.cost, 0) + coalesce(a.cost, 0), coalesce(o.tokens, 0), coalesce(o.estimated_tokens, 0),
           coalesce(o.unpriced_tokens, 0), coalesce(o.messages, 0)
      FROM o FULL JOIN a ON a.day = o.day AND (a.customer IS NULL) = (o.customer IS NULL)
                        AND coalesce(a.customer, '') = coalesce(o.customer, '');
END
$$;

CREATE FUNCTION billing.costs("from" timestamptz, "to" timestamptz, group_by text DEFAULT 'month',
                              customer text DEFAULT NULL)
RETURNS TABLE (period date, customer text, openai_cost numeric, aws_cost numeric, total_cost numeric,
               tokens numeric, estimated_tokens numeric, unpriced_tokens numeric, messages bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    SELECT * FROM billing._costs($1, $2, $3, $4) AS c ORDER BY c.period, c.customer NULLS FIRST
$$;
COMMENT ON FUNCTION billing.costs(timestamptz, timestamptz, text, text) IS
    'Costs with from <= time < to per customer and day or month (group_by), of every customer or of one.';

-- The customers of some conversations of one tracked table (keys as
-- billing keys them), read from its mapping as the caller through the
-- mapping's unique index: for a few thousand conversations, cheaper than
-- reading the whole mapping. (A key billing shortened, see billing._key,
-- is matched through the key.)
CREATE FUNCTION billing._customers_of(p_source smallint, p_keys text[])
RETURNS TABLE (source_id smallint, conversation_id text, customer text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s billing.customer_sources;
    k text;
    c text;
    ktype text;
BEGIN
    SELECT cs.* INTO s FROM billing.customer_sources AS cs
     WHERE cs.source_id = p_source AND billing._readable_customer_source(cs);
    IF NOT FOUND OR p_keys IS NULL THEN
        RETURN;
    END IF;
    IF s.per_message THEN
        RETURN QUERY SELECT * FROM billing._message_customers(p_source, NULL, p_keys);
        RETURN;
    END IF;
    k := billing._column_reader(s.lookup, s.lookup_key, 'conversation', 'c');
    c := billing._column_reader(s.lookup, s.customer_column, 'customer', 'c');
    ktype := format_type((SELECT a.atttypid FROM pg_attribute AS a
                           WHERE a.attrelid = s.lookup AND a.attname = s.lookup_key), NULL);
    BEGIN
        RETURN QUERY EXECUTE format(
            'SELECT %s::pg_catalog.int2, billing._key(%s), %s FROM %s AS c WHERE c.%I = ANY ($1::%s[]) AND %s IS NOT NULL',
            p_source, k, c, s.lookup, s.lookup_key, ktype, c)
            USING ARRAY(SELECT x FROM unnest(p_keys) AS x WHERE x NOT LIKE '%... (md5 %)');
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
        -- a key that is no value of the column's type: look them up one by one
        RETURN QUERY EXECUTE format(
            'SELECT %s::pg_catalog.int2, billing._key(%s), %s FROM %s AS c WHERE %s = ANY ($1) AND %s IS NOT NULL',
            p_source, k, c, s.lookup, k, c)
            USING p_keys;
        RETURN;
    END;
    IF EXISTS (SELECT 1 FROM unnest(p_keys) AS x WHERE x LIKE '%... (md5 %)') THEN
        RETURN QUERY EXECUTE format(
            'SELECT %s::pg_catalog.int2, billing._key(%s), %s FROM %s AS c WHERE billing._key(%s) = ANY ($1) AND %s IS NOT NULL',
            p_source, k, c, s.lookup, k, c)
            USING ARRAY(SELECT x FROM unnest(p_keys) AS x WHERE x LIKE '%... (md5 %)');
    END IF;
END
$$;

-- The top 10 customers of a period, for the owner's dashboard: a
-- "customers" entry once billing knows customers (else nothing, and no
-- read). The period's conversations are read once, and their customers
-- looked up through the mapping's index.
CREATE FUNCTION billing._dashboard_customers(p_from timestamptz, p_to timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    mon date := billing.month_of(p_from);
    whole_month boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM billing.customer_sources)
       AND NOT EXISTS (SELECT 1 FROM billing.aws_usage AS u WHERE u.customer IS NOT NULL) THEN
        RETURN '{}'::jsonb;
    END IF;
    -- One whole month that the rollups hold (the usual dashboard): its
    -- conversations' rollups are read through an index on the month, one
    -- probe per tracked table (LATERAL ... OFFSET 0: parameterized by the
    -- table, so never a scan of every month's rows, whatever the statistics
    -- say), plus the unmerged ledger rows.
    whole_month := p_from = billing.month_start(mon) AND p_to = billing.month_end(mon)
                   AND NOT EXISTS (SELECT 1 FROM billing.tracked_tables AS t
                                    WHERE NOT EXISTS (SELECT 1 FROM billing._rollups_current(t.id, mon)));
    RETURN jsonb_build_object('customers', (
        WITH conv AS MATERIALIZED (
            SELECT c.source_id, c.conversation_id, c.cost, c.prompt_tokens, c.completion_tokens, c.estimated_tokens,
                   c.messages
              FROM billing._usage_by_conversation(p_from, p_to) AS c
             WHERE NOT whole_month
            UNION ALL
            SELECT x.source_id, x.conversation_id, sum(x.cost), sum(x.prompt_tokens), sum(x.completion_tokens),
                   sum(x.estimated_tokens), sum(x.messages)
              FROM (SELECT u.source_id, u.conversation_id, u.cost, u.prompt_tokens, u.completion_tokens,
                           u.estimated_tokens, u.messages
                      FROM billing.tracked_tables AS t
                     CROSS JOIN LATERAL (SELECT r.source_id, r.conversation_id, r.cost, r.prompt_tokens,
                                                r.completion_tokens, r.estimated_tokens, r.messages
                                           FROM billing.conversation_usage AS r
                                          WHERE r.source_id = t.id AND r.month = mon
                                         OFFSET 0) AS u
                    UNION ALL
                    SELECT l.source_id, l.conversation_id, l.cost + l.estimated_cost, l.prompt_tokens,
                           l.completion_tokens, l.estimated_prompt + l.estimated_completion, l.messages
                      FROM billing._ledger_usage(p_from, p_to, billing._estimate_model()) AS l) AS x
             WHERE whole_month
             GROUP BY x.source_id, x.conversation_id
            HAVING sum(x.messages) <> 0
        ), keys AS (
            SELECT c.source_id, array_agg(c.conversation_id) AS keys FROM conv AS c
             WHERE c.source_id IN (SELECT cs.source_id FROM billing.customer_sources AS cs)
               AND c.conversation_id IS NOT NULL
             GROUP BY c.source_id
        ), map AS MATERIALIZED (
            SELECT m.* FROM keys AS k CROSS JOIN LATERAL billing._customers_of(k.source_id, k.keys) AS m
        ), x AS (
            SELECT m.customer, c.cost AS openai, 0 AS aws, c.prompt_tokens::numeric + c.completion_tokens
                   + c.estimated_tokens AS tokens, c.messages
              FROM conv AS c JOIN map AS m ON m.source_id = c.source_id AND m.conversation_id = c.conversation_id
            UNION ALL
            SELECT a.customer, 0, a.cost, 0, 0 FROM billing._aws_by_customer(p_from, p_to, NULL) AS a
             WHERE a.customer IS NOT NULL
        )
        SELECT coalesce(jsonb_agg(jsonb_build_object('customer', t.customer, 'cost', t.cost, 'openai', t.openai,
                                                     'aws', t.aws, 'tokens', t.tokens, 'messages', t.messages)
                                  ORDER BY t.cost DESC, t.customer), '[]'::jsonb)
          FROM (SELECT x.customer, sum(x.openai + x.aws) AS cost, sum(x.openai) AS openai, sum(x.aws) AS aws,
                       sum(x.tokens) AS tokens, sum(x.messages) AS messages
                  FROM x GROUP BY x.customer
                 ORDER BY 2 DESC, 1
                 LIMIT 10) AS t));
END
$$;

-- One customer's OpenAI usage per month and model (the model as billing._key
-- keys it, '' for none), with p_from <= time < p_to: its conversations'
-- per-model rollups (whole fresh months), probed one key at a time through
-- the rollups' unique index whatever the statistics say (LATERAL ... OFFSET
-- 0), the unmerged ledger rows of those conversations, and the parts read
-- from the tables (stale months, partial months at the ends): the rules of
-- billing._usage_by_model, for the conversations of one customer. The one
-- read of one customer's usage: its dashboard, and its costs
-- (billing._usage_by_customer sums it over conversations and models).
CREATE FUNCTION billing._customer_usage_by_model(p_from timestamptz, p_to timestamptz, p_customer text)
RETURNS TABLE (month date, conversation_id text, model text, messages bigint, prompt_tokens numeric, completion_tokens numeric,
               cached_tokens numeric, estimated_prompt numeric, estimated_completion numeric,
               unsplit_tokens numeric, problems bigint, cost numeric, estimated_cost numeric,
               unpriced_tokens numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    s record;
    ks smallint[];
    kc text[];
BEGIN
    PERFORM billing._require_reader();
    IF p_customer IS NULL OR (billing.current_customer() IS NOT NULL AND billing.current_customer() <> p_customer) THEN
        RETURN;   -- reading as one customer: no other customer's figures
    END IF;
    SELECT array_agg(k.source_id), array_agg(k.conversation_id) INTO ks, kc
      FROM (SELECT DISTINCT c.source_id, c.conversation_id FROM billing._customer_conversations(p_customer, false) AS c
             WHERE billing._may_read_table(c.source_id)) AS k;
    IF ks IS NULL THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH x AS (
        SELECT u.source_id, u.month, u.conversation_id, u.model, u.messages, u.prompt_tokens, u.completion_tokens, u.cached_tokens,
               u.estimated_prompt, u.estimated_completion, u.unsplit_tokens, u.problems, u.cost,
               u.estimated_cost, u.unpriced_tokens
          FROM unnest(ks, kc) AS k(source_id, conversation_id)
         CROSS JOIN LATERAL (SELECT r.* FROM billing.conversation_model_usage AS r
                              WHERE r.source_id = k.source_id AND r.conversation_id = k.conversation_id
                                AND r.month >= billing.month_of(p_from)
                                AND billing.month_start(r.month) >= p_from
                                AND billing.month_end(r.month) <= p_to
                             OFFSET 0) AS u
        UNION ALL
        SELECT l.source_id, l.month, l.conversation_id, l.model, l.messages, l.prompt_tokens, l.completion_tokens, l.cached_tokens,
               l.estimated_prompt, l.estimated_completion, l.unsplit_tokens, l.problems, l.cost,
               l.estimated_cost, l.unpriced_tokens
          FROM billing._ledger_usage(p_from, p_to, billing._estimate_model()) AS l
          JOIN unnest(ks, kc) AS k(source_id, conversation_id)
            ON k.source_id = l.source_id AND k.conversation_id = l.conversation_id
    )
    SELECT x.month, x.conversation_id, x.model, sum(x.messages)::bigint, sum(x.prompt_tokens), sum(x.completion_tokens),
           sum(x.cached_tokens), sum(x.estimated_prompt), sum(x.estimated_completion), sum(x.unsplit_tokens),
           sum(x.problems)::bigint, sum(x.cost), sum(x.estimated_cost), sum(x.unpriced_tokens)
      FROM x
     CROSS JOIN LATERAL billing._rollups_current(x.source_id, x.month) AS fresh
     GROUP BY x.month, x.conversation_id, x.model
    HAVING sum(x.messages) <> 0;

    FOR s IN SELECT r.* FROM billing._table_ranges(p_from, p_to) AS r
              WHERE r.source_id = ANY (ks) LOOP
        RETURN QUERY
        SELECT r.month, r.conversation_id, coalesce(r.model, ''), sum(r.messages)::bigint, sum(r.prompt_tokens),
               sum(r.completion_tokens), sum(r.cached_tokens), sum(r.estimated_prompt), sum(r.estimated_completion),
               sum(r.unsplit_tokens), sum(r.problems)::bigint, sum(r.cost), sum(r.estimated_cost),
               sum(r.unpriced_tokens)
          FROM billing._scan_table_safely(s.source_id, s.range_from, s.range_to) AS r
          JOIN unnest(ks, kc) AS k(source_id, conversation_id)
            ON k.source_id = s.source_id AND k.conversation_id = r.conversation_id
         GROUP BY r.month, r.conversation_id, coalesce(r.model, '');
    END LOOP;
END
$$;

-- A customer's dashboard "budgets" entry: the status in month p_month of
-- the budgets that concern that customer alone (scope customer for it,
-- scope conversation for one of its conversations), computed as that
-- customer reads them (the setting billing.customer, for this call only),
-- so that the owner's billing.dashboard(customer => ...) and the customer's
-- own read give the same figures (its forecast's history is its own).
-- NULL for a role that may not read billing.budgets.
CREATE FUNCTION billing._customer_dashboard_budgets(p_month date, p_customer text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before text := current_setting('billing.customer', true);
    result jsonb;
BEGIN
    IF NOT has_table_privilege('billing.budgets', 'SELECT') THEN
        RETURN NULL;
    END IF;
    IF (billing.current_customer() IS NOT NULL AND billing.current_customer() <> p_customer)
       OR NOT EXISTS (SELECT 1 FROM billing.budgets AS b WHERE b.scope IN ('customer', 'conversation')) THEN
        RETURN '[]';
    END IF;
    PERFORM set_config('billing.customer', p_customer, true);
    -- Most customers have no budget of their own: then the status of every
    -- budget (all of them read as this customer) is not computed only to be
    -- filtered away. The same condition as the filter below, so the result
    -- is the same.
    IF NOT EXISTS (SELECT 1 FROM billing.budgets AS b
                    WHERE (b.scope = 'customer' AND b.customer = p_customer)
                       OR (b.scope = 'conversation'
                           AND billing._key(b.conversation_id) IN (SELECT c.conversation_id
                                                                     FROM billing._customer_conversations(p_customer, false) AS c))) THEN
        PERFORM set_config('billing.customer', coalesce(before, ''), true);
        RETURN '[]';
    END IF;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'budget', s.budget, 'scope', s.scope, 'model', s.model, 'conversation_id', s.conversation_id,
               'customer', s.customer,
               'amount', s.amount, 'spent', s.spent, 'remaining', s.remaining, 'percent', s.percent,
               'forecast', s.forecast, 'forecast_method', s.forecast_method, 'state', s.state,
               'blocks', s.blocks)
           ORDER BY s.budget), '[]'::jsonb)
      INTO result
      FROM billing._budget_status(p_month, now()) AS s
     WHERE (s.scope = 'customer' AND s.customer = p_customer)
        OR (s.scope = 'conversation'
            AND billing._key(s.conversation_id) IN (SELECT c.conversation_id
                                                      FROM billing._customer_conversations(p_customer, false) AS c));
    PERFORM set_config('billing.customer', coalesce(before, ''), true);
    RETURN result;
END
$$;

-- One customer's dashboard: the owner's payload (README "The dashboard
-- payload"), of that customer's usage, with its budgets and its name.
CREATE FUNCTION billing.dashboard(period_start timestamptz, period_end timestamptz, customer text,
                                  top_conversations integer DEFAULT 50, months integer DEFAULT 6)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    who text := dashboard.customer;
    last_month date;
    history_from date;
    whole_months boolean;
    shown boolean;
    m_all jsonb;        -- per month, conversation and model, the history's months
    period_rows jsonb;  -- the same of the period (from m_all when it is whole months of the history)
    aws_all jsonb;      -- per month and service, the history's months
    aws_rows jsonb;     -- the same of the period
    openai jsonb;
    aws jsonb;
    hist jsonb;
    conversations jsonb;
BEGIN
    -- ('' or blanks name no customer, as for record_customer_usage)
    IF who IS NULL OR btrim(who) = '' THEN
        RAISE EXCEPTION 'billing: customer must be given' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF period_start IS NULL OR period_end IS NULL THEN
        RAISE EXCEPTION 'billing: the period must be given, got % to %', coalesce(period_start::text, 'NULL'),
                        coalesce(period_end::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF period_end <= period_start
       OR NOT billing._countable(period_start) OR NOT billing._countable(period_end - interval '1 microsecond') THEN
        RAISE EXCEPTION 'billing: the period must have a start before its end, within the years 1 to 9999'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM billing._check_dashboard_limits(top_conversations, months);
    PERFORM billing._require_reader();
    IF NOT has_table_privilege('billing.conversation_model_usage', 'SELECT') THEN
        RAISE EXCEPTION 'billing: role "%" may not read billing''s figures: it has no SELECT on billing.conversation_model_usage',
                        current_user
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('A superuser or the extension''s owner grants it: GRANT SELECT ON ALL TABLES IN SCHEMA billing TO %I;',
                                current_user);
    END IF;
    -- Reading as one customer: no other customer's figures (every part empty).
    shown := billing.current_customer() IS NULL OR billing.current_customer() = who;
    last_month := billing.month_of(period_end - interval '1 microsecond');
    history_from := (last_month - (months - 1) * interval '1 month')::date;
    whole_months := period_start = billing.month_start(billing.month_of(period_start))
                    AND period_end = billing.month_end(last_month) AND billing.month_of(period_start) >= history_from;

    -- One read of the history's months serves the history and, for whole
    -- months (the usual call), the cards and the top conversations.
    SELECT coalesce(jsonb_agg(to_jsonb(m)), '[]') INTO m_all
      FROM billing._customer_usage_by_model(billing.month_start(history_from), billing.month_end(last_month), who) AS m
     WHERE shown;
    SELECT coalesce(jsonb_agg(to_jsonb(a)), '[]') INTO aws_all
      FROM billing._aws_by_customer(billing.month_start(history_from), billing.month_end(last_month), who) AS a
     WHERE shown;

    IF whole_months THEN
        period_rows := coalesce((SELECT jsonb_agg(e) FROM jsonb_array_elements(m_all) AS e
                                  WHERE (e ->> 'month')::date >= billing.month_of(period_start)), '[]');
        aws_rows := coalesce((SELECT jsonb_agg(e) FROM jsonb_array_elements(aws_all) AS e
                               WHERE (e ->> 'month')::date >= billing.month_of(period_start)), '[]');
    ELSE
        period_rows := (SELECT coalesce(jsonb_agg(to_jsonb(m)), '[]')
                          FROM billing._customer_usage_by_model(period_start, period_end, who) AS m
                         WHERE shown);
        aws_rows := (SELECT coalesce(jsonb_agg(to_jsonb(a)), '[]')
                       FROM billing._aws_by_customer(period_start, period_end, who) AS a
                      WHERE shown);
    END IF;
    openai := billing._openai_card(period_rows);
    aws := (SELECT jsonb_build_object(
                       'cost', coalesce(sum(a.cost), 0),
                       'emails', coalesce(sum(a.quantity) FILTER (WHERE a.service = 'ses'), 0),
                       'breakdown', coalesce(jsonb_object_agg(a.service, billing._aws_service_entry(
                                        a.quantity, a.cost, a.unpriced_quantity, 'estimate')), '{}'::jsonb))
              FROM (SELECT x.service, sum(x.quantity) AS quantity, sum(x.cost) AS cost,
                           sum(x.unpriced_quantity) AS unpriced_quantity
                      FROM jsonb_to_recordset(aws_rows) AS x(service text, quantity numeric, cost numeric,
                                                             unpriced_quantity numeric)
                     GROUP BY x.service) AS a);
    -- (AWS actual figures are not kept per customer: the customer's AWS
    -- cost is its recorded usage, an estimate.)
    aws := aws || jsonb_build_object('source', 'estimate');

    SELECT jsonb_agg(jsonb_build_object(
               -- (a month before the year 1 says so: 0001-12 BC comes before 0001-01)
               'month', to_char(g.m, 'YYYY-MM') || CASE WHEN g.m < '0001-01-01' THEN ' BC' ELSE '' END,
               'openai', o.cost, 'aws', a.cost, 'total', o.cost + a.cost)
             ORDER BY g.m)
      INTO hist
      FROM generate_series(history_from, last_month, interval '1 month') AS g(m)
     CROSS JOIN LATERAL (SELECT coalesce(sum(x.cost + x.estimated_cost), 0) AS cost
                           FROM jsonb_to_recordset(m_all) AS x(month date, cost numeric, estimated_cost numeric)
                          WHERE x.month = g.m) AS o
     CROSS JOIN LATERAL (SELECT coalesce(sum(x.cost), 0) AS cost
                           FROM jsonb_to_recordset(aws_all) AS x(month date, cost numeric)
                          WHERE x.month = g.m) AS a;

    -- Its top conversations, from the same rows (tokens: prompt +
    -- completion + estimated, as the owner's list counts them).
    SELECT coalesce(jsonb_agg(jsonb_build_object('conversation_id', x.conversation_id, 'cost', x.cost,
                                                 'tokens', x.tokens, 'messages', x.messages)
                              ORDER BY x.cost DESC, x.conversation_id), '[]'::jsonb)
      INTO conversations
      FROM (SELECT c.conversation_id, sum(c.cost + c.estimated_cost) AS cost,
                   sum(c.prompt_tokens + c.completion_tokens + c.estimated_prompt + c.estimated_completion) AS tokens,
                   sum(c.messages) AS messages
              FROM jsonb_to_recordset(period_rows) AS c(conversation_id text, messages numeric, prompt_tokens numeric,
                                                        completion_tokens numeric, estimated_prompt numeric,
                                                        estimated_completion numeric, cost numeric, estimated_cost numeric)
             GROUP BY c.conversation_id
            HAVING sum(c.messages) <> 0
             ORDER BY 2 DESC, 1
             LIMIT top_conversations) AS x;

    RETURN jsonb_build_object(
        'customer', who,
        -- (in the month zone: the bounds read the same in every session)
        'period', jsonb_build_object('start', billing._month_zone_text(period_start),
                                     'end', billing._month_zone_text(period_end)),
        'openai', openai,
        'aws', aws,
        'total_cost', (openai ->> 'cost')::numeric + (aws ->> 'cost')::numeric,
        'conversations', conversations,
        'history', hist,
        'budgets', billing._customer_dashboard_budgets(last_month, who));
END
$$;
COMMENT ON FUNCTION billing.dashboard(timestamptz, timestamptz, text, integer, integer) IS
    'One customer''s billing page for usage with period_start <= time < period_end: the owner''s payload (OpenAI card with by_model, AWS card, top conversations, history, budgets) of that customer''s usage.';

CREATE FUNCTION billing.dashboard(customer text, months integer DEFAULT 6, top_conversations integer DEFAULT 50,
                                  at timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    PERFORM billing._require_reader();
    PERFORM billing._check_dashboard_at(at);
    RETURN billing.dashboard(billing.month_start(billing.month_of(at)), billing.month_end(billing.month_of(at)),
                             customer, top_conversations, months);
END
$$;
COMMENT ON FUNCTION billing.dashboard(text, integer, integer, timestamptz) IS
    'One customer''s billing page for the month that contains `at`: SELECT billing.dashboard(customer => ''u1'');';


-- Reading as one customer. An app that shows each of its customers their
-- own costs sets billing.customer for the request (SET LOCAL
-- billing.customer = 'u1', or set_config('billing.customer', 'u1', true));
-- then every read of billing, as any role other than billing's owner,
-- shows that customer's costs only: the restrictive policies below hide
-- every other customer's rows of the rollups, the ledger (unmerged writes),
-- recorded AWS usage and statements; month_usage (not kept per customer),
-- problem rows and AWS actual figures are hidden whole; the reads of the
-- tracked tables themselves (stale months, partial months) keep that
-- customer's conversations only (billing._scan_table_safely); and
-- billing.dashboard() and billing.history() give that customer's figures.
-- The setting only ever narrows what a role sees: a role sees a customer's
-- costs only if it may read them without it.
CREATE POLICY as_customer ON billing.usage_ledger AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL
           OR (source_id, billing._key(conversation_id)) IN
              (SELECT c.source_id, c.conversation_id
                 FROM billing._customer_conversations(billing.current_customer(), false) AS c));
CREATE POLICY as_customer ON billing.conversation_usage AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL
           OR (source_id, conversation_id) IN
              (SELECT c.source_id, c.conversation_id
                 FROM billing._customer_conversations(billing.current_customer(), false) AS c));
CREATE POLICY as_customer ON billing.conversation_model_usage AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL
           OR (source_id, conversation_id) IN
              (SELECT c.source_id, c.conversation_id
                 FROM billing._customer_conversations(billing.current_customer(), false) AS c));
CREATE POLICY as_customer ON billing.month_usage AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL);
CREATE POLICY as_customer ON billing.problem_messages AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL);
-- (a reply's frozen prompt estimate, by message id: the scans of a tracked
-- table read the ones of the rows they read as billing's owner)
CREATE POLICY as_customer ON billing.estimated_prompts AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL);
ALTER TABLE billing.aws_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.aws_usage USING (true);
CREATE POLICY as_customer ON billing.aws_usage AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL OR customer = billing.current_customer());
ALTER TABLE billing.aws_actuals ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.aws_actuals USING (true);
CREATE POLICY as_customer ON billing.aws_actuals AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL);
ALTER TABLE billing.aws_usage_patterns ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.aws_usage_patterns USING (true);
CREATE POLICY as_customer ON billing.aws_usage_patterns AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL);
-- Budgets and their alerts: one customer's own budgets and its
-- conversations' (as billing.dashboard(customer => ...) shows them), and
-- the alerts its own budgets fired (the customer is kept with the alert: a
-- budget's name may be given to another budget later). A budget of the
-- whole app or of a model says what others spend.
ALTER TABLE billing.budgets ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.budgets USING (true);
CREATE POLICY as_customer ON billing.budgets AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL
           OR (scope = 'customer' AND customer = billing.current_customer())
           OR (scope = 'conversation'
               AND billing._key(conversation_id) IN (SELECT c.conversation_id
                                                       FROM billing._customer_conversations(billing.current_customer(), false) AS c)));
ALTER TABLE billing.alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY everyone ON billing.alerts USING (true);
CREATE POLICY as_customer ON billing.alerts AS RESTRICTIVE FOR SELECT
    USING (billing.current_customer() IS NULL OR customer = billing.current_customer());

-- The customer of a profiles table's e-mails (billing.track_profiles): a
-- column of the profile (its id, when a profile is a user).
CREATE TABLE billing.profile_customers (
    relation        regclass PRIMARY KEY,
    customer_column name     NOT NULL
);
COMMENT ON TABLE billing.profile_customers IS
    'The column of a tracked profiles table that names the customer of its e-mails (billing.track_profile_customers).';
SELECT pg_catalog.pg_extension_config_dump('billing.profile_customers', '');
-- A reader sees the customer sources and the profiles tables of the tables
-- it may read, no other table's name (as billing.tracked_tables shows it).
ALTER TABLE billing.customer_sources ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.customer_sources
    USING (source_id IN (SELECT r.id FROM billing._readable_tables AS r));
ALTER TABLE billing.tracked_profiles ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.tracked_profiles
    USING (pg_catalog.has_table_privilege(relation, 'SELECT'));
ALTER TABLE billing.untracked_profiles ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.untracked_profiles
    USING (pg_catalog.has_table_privilege(relation, 'SELECT'));
ALTER TABLE billing.profile_customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY source_readers ON billing.profile_customers
    USING (pg_catalog.has_table_privilege(relation, 'SELECT'));

CREATE FUNCTION billing.track_profile_customers(relation regclass, customer_column name DEFAULT 'id')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF customer_column IS NULL THEN
        RAISE EXCEPTION 'billing: customer_column must be given' USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Leave it out for id.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger AS g WHERE g.tgrelid = relation AND g.tgname = 'billing_track_profiles') THEN
        RAISE EXCEPTION 'billing: table % is not tracked by track_profiles', relation USING ERRCODE = 'undefined_object',
              HINT = 'billing.track_profiles() starts tracking it.';
    END IF;
    -- A column of a type billing reads as an id (else an error naming it).
    PERFORM billing._column_reader(relation, customer_column, 'customer', 'p');
    INSERT INTO billing.profile_customers AS pc VALUES (relation, customer_column)
    ON CONFLICT ON CONSTRAINT profile_customers_pkey DO UPDATE SET customer_column = excluded.customer_column;
END
$$;
COMMENT ON FUNCTION billing.track_profile_customers(regclass, name) IS
    'The e-mails a tracked profiles table''s counter records from now on belong to the customer its customer_column names.';

-- The customer of a profile row (NULL when its table has no customer
-- column, or the column is NULL or empty), for the profiles trigger (which
-- runs as billing's owner). The column is read with built-in conversions
-- only (billing._column_reader).
CREATE FUNCTION billing._profile_customer(p_relation regclass, p_row anyelement) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col name := (SELECT pc.customer_column FROM billing.profile_customers AS pc WHERE pc.relation = p_relation);
    who text;
BEGIN
    IF col IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT %s', billing._column_reader(p_relation, col, 'customer', '($1)')) INTO who USING p_row;
    RETURN CASE WHEN who <> '' THEN who END;
EXCEPTION WHEN undefined_column OR datatype_mismatch THEN
    RETURN NULL;   -- the column was dropped or changed type: the e-mails belong to no customer
END
$$;
REVOKE ALL ON FUNCTION billing._profile_customer(regclass, anyelement) FROM PUBLIC;
