#!/usr/bin/env bash
# ALTER EXTENSION billing UPDATE from every released version gives the same
# objects as a fresh install, and keeps the user's price rows.
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

current=$(sed -n "s/^default_version = '\(.*\)'/\1/p" billing.control)
# Released versions: every version an install or upgrade script starts from.
mapfile -t versions < <(ls billing--*.sql | sed -E 's/^billing--([^-]+)(--.*)?\.sql$/\1/' | sort -uV)

# Every object of the extension, with its definition where it has one.
objects=$(cat <<'SQL'
SELECT string_agg(d, E'\n' ORDER BY d) FROM (
    SELECT pg_describe_object(classid, objid, 0)
           || coalesce(' = ' || CASE WHEN classid = 'pg_proc'::regclass AND (SELECT prokind FROM pg_proc WHERE oid = objid) <> 'a'
                                          THEN pg_get_functiondef(objid)
                                     WHEN classid = 'pg_class'::regclass
                                          AND (SELECT relkind FROM pg_class WHERE oid = objid) = 'v'
                                          THEN pg_get_viewdef(objid) END, '') AS d
      FROM pg_depend
     WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
       AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'billing')
    UNION ALL
    SELECT format('column %s.%s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnum)
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'billing' AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('trigger %s on %s', tgname, tgrelid::regclass) FROM pg_trigger
     WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'billing.%'
) AS x(d)
SQL
)

dropdb --if-exists billing_fresh 2>/dev/null
createdb billing_fresh
psql_q -d billing_fresh -c 'CREATE EXTENSION billing'
fresh=$(psql_q -d billing_fresh -c "$objects")
dropdb billing_fresh

for v in "${versions[@]}"; do
    [[ "$v" == "$current" ]] && continue
    db="billing_upgrade_${v//./_}"
    dropdb --if-exists "$db" 2>/dev/null
    createdb "$db"
    psql_q -d "$db" <<SQL
CREATE EXTENSION billing VERSION '$v';
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('kept-model', '2025-01-01', 1, 2);
ALTER EXTENSION billing UPDATE;
SQL
    got_version=$(psql_q -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'billing'")
    updated=$(psql_q -d "$db" -c "$objects")
    kept=$(psql_q -d "$db" -c "SELECT billing.message_cost('kept-model', 1000000, 1000000) = 3")
    dropdb "$db"
    if [[ "$got_version" != "$current" ]]; then echo "FAIL: $v updated to $got_version, not $current"; exit 1; fi
    if [[ "$updated" != "$fresh" ]]; then
        echo "FAIL: $v -> $current differs from a fresh install:"; diff <(echo "$fresh") <(echo "$updated") | head -40
        exit 1
    fi
    [[ "$kept" == t ]] || { echo "FAIL: the user's price row did not survive the update from $v"; exit 1; }
    echo "upgrade $v -> $current: same objects as a fresh install, user rows kept"
done

# A table tracked under 0.2 keeps being tracked after the update, and from
# then on DROP EXTENSION takes its triggers along (0.2 left them behind).
db=billing_upgrade_tracked
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION billing VERSION '0.2';
CREATE TABLE messages (id serial PRIMARY KEY, conversation_id text, role text, content text,
                       data jsonb, created_at timestamptz);
CREATE TABLE profiles (id int PRIMARY KEY, data jsonb);
SELECT billing.track_messages('messages');
SELECT billing.track_profiles('profiles');
ALTER EXTENSION billing UPDATE;
INSERT INTO messages (conversation_id, role, content, data, created_at)
VALUES ('a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-01-01');
INSERT INTO profiles VALUES (1, '{"emails_sent_this_month": 1}');
UPDATE profiles SET data = '{"emails_sent_this_month": 4}';
ALTER TABLE profiles RENAME COLUMN data TO settings;
UPDATE profiles SET settings = '{"emails_sent_this_month": 6}';
SQL
# The counter followed under 0.2 moved to the shared trigger function (which
# follows the rename): 1 + 3 + 2 e-mails, and no per-table function left.
emails=$(psql_q -d "$db" -c "SELECT sum(quantity) FROM billing.aws_usage WHERE service = 'ses'")
legacy=$(psql_q -d "$db" -c "SELECT count(*) FROM pg_proc WHERE proname LIKE 'track\_profiles\_%'")
# 100 x $2.50 / 1M + 50 x $10 / 1M = $0.00075
tracked=$(psql_q -d "$db" -c "SELECT sum(cost) = 0.00075 FROM billing.conversation_costs")
psql_q -d "$db" -c "DROP EXTENSION billing"
left=$(psql_q -d "$db" -c "SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('messages'::regclass, 'profiles'::regclass)")
psql_q -d "$db" -c "INSERT INTO messages (conversation_id, role, content, data) VALUES ('b', 'user', 'y', '{}');
                    INSERT INTO profiles VALUES (2, '{\"emails_sent_this_month\": 1}')"
dropdb "$db"
[[ "$tracked" == t ]] || { echo "FAIL: a table tracked under 0.2 is not tracked after the update"; exit 1; }
[[ "$emails" == 6 && "$legacy" == 0 ]] || { echo "FAIL: profiles tracked under 0.2: $emails e-mails (want 6), $legacy old function(s)"; exit 1; }
[[ "$left" == 0 ]] || { echo "FAIL: $left trigger(s) left on the app's tables after DROP EXTENSION"; exit 1; }
echo "upgrade 0.2 -> $current: tracked tables still tracked; DROP EXTENSION leaves them writable"

# A table tracked under 0.3 keeps being tracked, and the first merge() after
# the update gives it this version's trigger function (an extension script
# cannot replace a function that is not a member): a row far outside the
# years billing counts then becomes a listed problem instead of a ledger row
# whose month has no end.
db=billing_upgrade_tracked_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION billing VERSION '0.3';
CREATE TABLE messages (id serial PRIMARY KEY, conversation_id text, role text, content text,
                       data jsonb, created_at timestamptz);
SELECT billing.track_messages('messages');
INSERT INTO messages (conversation_id, role, content, data, created_at)
VALUES ('a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-01-01');
ALTER EXTENSION billing UPDATE;
SELECT billing.merge();
INSERT INTO messages (conversation_id, role, content, data, created_at)
VALUES ('a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}',
        '294276-12-31 23:59:59+00');
SQL
# 100 x $2.50 / 1M + 50 x $10 / 1M = $0.00075; the far row is a problem.
got=$(psql_q -d "$db" -c "SELECT (SELECT sum(cost) FROM billing.monthly_history) = 0.00075
                                 AND (SELECT count(*) FROM billing.usage_problems WHERE kind = 'malformed data') = 1
                                 AND billing.merge() >= 0")
dropdb "$db"
[[ "$got" == t ]] || { echo "FAIL: a table tracked under 0.3 did not get the $current trigger function"; exit 1; }
echo "upgrade 0.3 -> $current: tracked tables get the new trigger function at the first merge"
