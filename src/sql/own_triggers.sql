-- billing's triggers on its own tables fire ALWAYS, whatever
-- session_replication_role a session sets: a price changed under 'replica'
-- (a DBA's bulk load, say) must still mark the months it changes stale and
-- reach every session's price cache, a setting or budget is still checked,
-- and an issued statement stays as issued. Loaded last, after every file
-- that creates one. (billing's triggers on the app's tables fire as the
-- table's owner sets them: see billing._fire_as_billing_track.)
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT t.tgrelid::regclass AS relation, t.tgname
               FROM pg_catalog.pg_trigger AS t
               JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
              WHERE c.relnamespace = 'billing'::regnamespace AND NOT t.tgisinternal AND t.tgenabled = 'O'
              ORDER BY t.tgrelid, t.tgname LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', g.relation, g.tgname);
    END LOOP;
END
$$;

-- billing's event triggers fire ALWAYS too: DDL run under
-- session_replication_role = replica (a migration tool's session, DDL a
-- replication system applies on a subscriber) would otherwise pass them
-- all: a renamed column left the trigger function reading the old name,
-- and every later write of the app failed; a trigger disabled or dropped
-- there went unseen.
DO $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT et.evtname
               FROM pg_catalog.pg_event_trigger AS et
               JOIN pg_catalog.pg_proc AS p ON p.oid = et.evtfoid
              WHERE p.pronamespace = 'billing'::regnamespace AND et.evtenabled = 'O'
              ORDER BY et.evtname LOOP
        EXECUTE pg_catalog.format('ALTER EVENT TRIGGER %I ENABLE ALWAYS', e.evtname);
    END LOOP;
END
$$;
