-- Every object of the extension billing and everything that defines it, as
-- sorted text: functions with their bodies and settings, aggregates, views
-- with their options, tables with columns, defaults, constraints, indexes,
-- row-level security, triggers, policies, event triggers, ACLs, comments,
-- configuration dumps and the schema. test/scripts/upgrade.sh compares a
-- fresh install with every released version updated to the current one.
SELECT string_agg(d, E'\n' ORDER BY d) FROM (
    SELECT pg_describe_object(classid, objid, 0)
           || coalesce(' = ' || CASE WHEN classid = 'pg_proc'::regclass AND (SELECT prokind FROM pg_proc WHERE oid = objid) <> 'a'
                                          THEN pg_get_functiondef(objid)
                                     WHEN classid = 'pg_proc'::regclass
                                          THEN (SELECT format('aggregate %s %s %s %s %s %s', aggtransfn, aggfinalfn, aggcombinefn, aggtranstype::regtype, agginitval, p.proparallel)
                                                  FROM pg_aggregate JOIN pg_proc p ON p.oid = aggfnoid WHERE aggfnoid = objid)
                                     WHEN classid = 'pg_class'::regclass
                                          AND (SELECT relkind FROM pg_class WHERE oid = objid) = 'v'
                                          THEN pg_get_viewdef(objid) || ' ' || coalesce((SELECT reloptions::text FROM pg_class WHERE oid = objid), '')
                                     WHEN classid = 'pg_class'::regclass
                                          THEN (SELECT format('%s rls=%s options=%s', relkind, relrowsecurity, reloptions) FROM pg_class WHERE oid = objid)
                                     WHEN classid = 'pg_event_trigger'::regclass
                                          THEN (SELECT format('%s %s %s %s', evtevent, evtfoid::regproc, evttags, evtenabled) FROM pg_event_trigger WHERE oid = objid)
                                     END, '')
           || coalesce(' acl=' || (SELECT proacl::text FROM pg_proc WHERE classid = 'pg_proc'::regclass AND oid = objid), '')
           || coalesce(' acl=' || (SELECT relacl::text FROM pg_class WHERE classid = 'pg_class'::regclass AND oid = objid), '')
           || coalesce(' comment=' || obj_description(objid, (SELECT relname FROM pg_class WHERE oid = classid)), '') AS d
      FROM pg_depend
     WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
       AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'billing')
    UNION ALL
    SELECT format('column %s.%s %s %s notnull=%s default=%s comment=%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                  a.attnum, a.attnotnull, pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum))
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE n.nspname = 'billing' AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('constraint %s on %s: %s', conname, conrelid::regclass, pg_get_constraintdef(oid))
      FROM pg_constraint WHERE connamespace = 'billing'::regnamespace
    UNION ALL
    SELECT format('index %s', pg_get_indexdef(indexrelid)) FROM pg_index
     WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'billing'::regnamespace)
    UNION ALL
    SELECT format('trigger %s on %s: %s enabled=%s', tgname, tgrelid::regclass, pg_get_triggerdef(oid), tgenabled) FROM pg_trigger
     WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'billing'::regnamespace)
    UNION ALL
    SELECT format('policy %s on %s: %s %s %s %s', polname, polrelid::regclass, polcmd, polroles::regrole[],
                  pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)) FROM pg_policy
     WHERE polrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'billing'::regnamespace)
    UNION ALL
    SELECT format('config dump %s %s', c, w) FROM pg_extension, unnest(extconfig::regclass[], extcondition) AS x(c, w)
     WHERE extname = 'billing'
    UNION ALL
    SELECT format('schema billing owner=%s acl=%s', nspowner::regrole, nspacl) FROM pg_namespace WHERE nspname = 'billing'
) AS x(d)
