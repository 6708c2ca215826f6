#!/usr/bin/env bash
# ALTER EXTENSION billing UPDATE from every released version gives the same
# objects as a fresh install, and keeps the user's price rows.
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

current=$(sed -n "s/^default_version = '\(.*\)'/\1/p" billing.control)
# Released versions: every version an install or update script starts from.
mapfile -t versions < <(ls src/sql/updates/billing--*.sql | sed -E 's#^.*/billing--([^-]+)(--.*)?\.sql$#\1#' | sort -uV)
objects=$(cat test/scripts/lib/extension_objects.sql)
# The dump of a database holding only the extension (its configuration
# tables' rows included), without the lines that differ between any two dumps.
dump() { pg_dump -d "$1" | grep -v -E '^(--|SET |SELECT pg_catalog.set_config|\\(un)?restrict )'; }

# A fresh install runs the one built script (make billing--<current>.sql);
# no update script is involved.
dropdb --if-exists billing_fresh 2>/dev/null
createdb billing_fresh
psql_q -d billing_fresh -c 'CREATE EXTENSION billing'
fresh=$(psql_q -d billing_fresh -c "$objects")
fresh_dump=$(dump billing_fresh)
# The comparison can fail: one altered object in a copy must show.
psql_q -d billing_fresh -c "COMMENT ON FUNCTION billing.merge() IS 'altered'" \
       -c "ALTER POLICY source_readers ON billing.stale_months USING (true)"
altered=$(psql_q -d billing_fresh -c "$objects")
dropdb billing_fresh
if [[ "$altered" == "$fresh" ]]; then
    echo "FAIL: an altered comment and policy went unnoticed by the object comparison"; exit 1
fi
echo "object comparison: an altered comment and policy are seen ($(diff <(echo "$fresh") <(echo "$altered") | grep -c '^[<>]') lines differ)"

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
    psql_q -d "$db" -c "DELETE FROM billing.model_prices WHERE model = 'kept-model'"
    updated_dump=$(dump "$db")
    dropdb "$db"
    if [[ "$got_version" != "$current" ]]; then echo "FAIL: $v updated to $got_version, not $current"; exit 1; fi
    if [[ "$updated" != "$fresh" ]]; then
        echo "FAIL: $v -> $current differs from a fresh install:"; diff <(echo "$fresh") <(echo "$updated") | head -40
        exit 1
    fi
    [[ "$kept" == t ]] || { echo "FAIL: the user's price row did not survive the update from $v"; exit 1; }
    if [[ "$updated_dump" != "$fresh_dump" ]]; then
        echo "FAIL: pg_dump after $v -> $current differs from a fresh install's:"
        diff <(echo "$fresh_dump") <(echo "$updated_dump") | head -40
        exit 1
    fi
    echo "upgrade $v -> $current: same objects and the same pg_dump as a fresh install, user rows kept"
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
-- (an UPDATE before the first merge: the 0.3 function takes it, once)
UPDATE messages SET data = '{"model": "gpt-4o", "prompt_tokens": 200, "completion_tokens": 50}';
SELECT billing.merge();
-- (and one after, with billing_track_update in place: once too)
UPDATE messages SET data = '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}';
INSERT INTO messages (conversation_id, role, content, data, created_at)
VALUES ('a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}',
        '294276-12-31 23:59:59+00');
SQL
# 100 x $2.50 / 1M + 50 x $10 / 1M = $0.00075; the far row is a problem.
got=$(psql_q -d "$db" -c "SELECT (SELECT sum(cost) FROM billing.monthly_history) = 0.00075
                                 AND EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'messages'::regclass
                                                                      AND tgname = 'billing_track_update')
                                 AND (SELECT count(*) FROM billing.usage_problems WHERE kind = 'malformed data') = 1
                                 AND billing.merge() >= 0
                                 -- the C trigger, with its PL/pgSQL body beside it
                                 AND (SELECT l.lanname FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
                                       WHERE p.oid = 'billing.track_1()'::regprocedure) = 'c'
                                 AND to_regprocedure('billing.track_1_full()') IS NOT NULL")
dropdb "$db"
[[ "$got" == t ]] || { echo "FAIL: a table tracked under 0.3 did not get the $current trigger function"; exit 1; }
echo "upgrade 0.3 -> $current: tracked tables get the new trigger function at the first merge"

# The first merge after the update makes the table's triggers anew, which
# locks the table against writes; while it waits for that lock the app's
# writes queue behind it. With an app transaction left open on the table
# (a request waiting on OpenAI before COMMIT), the merge gives up after 1 s
# with a WARNING, and the next merge, after that COMMIT, does it. Both
# replies are billed: 2 x $0.00075.
db=billing_upgrade_busy_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION billing VERSION '0.3';
CREATE TABLE messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text,
                       data jsonb, created_at timestamptz);
SELECT billing.track_messages('messages');
INSERT INTO messages (conversation_id, role, content, data, created_at)
VALUES ('a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-01-01');
ALTER EXTENSION billing UPDATE;
SQL
psql_q -d "$db" -c "BEGIN" \
    -c "INSERT INTO messages (conversation_id, role, content, data, created_at)
        VALUES ('b', 'assistant', 'x', '{\"model\": \"gpt-4o\", \"prompt_tokens\": 100, \"completion_tokens\": 50}', '2026-01-02')" \
    -c "SELECT pg_sleep(6)" -c "COMMIT" >/dev/null &
open_txn=$!
for _ in $(seq 1 50); do   # (until the open transaction holds its lock)
    [[ $(psql_q -d "$db" -c "SELECT count(*) FROM pg_locks WHERE relation = 'messages'::regclass AND mode = 'RowExclusiveLock' AND granted") -gt 0 ]] && break
    sleep 0.1
done
started=$(date +%s%N)
warned=$(psql_q -d "$db" -c "SELECT billing.merge()" 2>&1 >/dev/null || true)
waited_ms=$(( ($(date +%s%N) - started) / 1000000 ))
lang_during=$(psql_q -d "$db" -c "SELECT l.lanname FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
                                   WHERE p.oid = 'billing.track_1()'::regprocedure")
wait "$open_txn"
psql_q -d "$db" -c "SELECT billing.merge()" >/dev/null
got=$(psql_q -d "$db" -c "SELECT (SELECT l.lanname FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
                                   WHERE p.oid = 'billing.track_1()'::regprocedure)
                                 || ' ' || (SELECT sum(cost) FROM billing.monthly_history)")
dropdb "$db"
if [[ $warned != *"keeps its earlier trigger function: canceling statement due to lock timeout"* ]] || ((waited_ms > 4000)) ||
   [[ $lang_during != plpgsql || $got != "c 0.00150" ]]; then
    echo "FAIL: the first merge beside an open app transaction: waited ${waited_ms} ms, function $lang_during then '$got' (want plpgsql, then 'c 0.00150'); said: $warned"
    exit 1
fi
echo "upgrade 0.3 -> $current: beside an open app transaction, the first merge waits ${waited_ms} ms for its trigger DDL (at most 1 s), and the next one makes it"

# aws_actuals loaded under 0.3 with names spelled apart from the recorded
# usage's: the update respells them, and joins two rows of one month that
# then share a name into one of their summed cost (0.3 counted both). SES:
# 'SES' 5 + 'ses' 3 = 8, replacing the estimate of 100 recorded e-mails
# (100 x $0.0001 = $0.01); ' S3 ' 2 alone becomes 's3'. November: $10.
db=billing_upgrade_actuals_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION billing VERSION '0.3';
SELECT billing.record_usage('ses', 100, '2026-11-10 00:00+00');
INSERT INTO billing.aws_actuals (month, service, cost, note) VALUES
  ('2026-11-01', 'SES', 5, 'from the CSV'), ('2026-11-01', 'ses', 3, NULL), ('2026-11-01', ' S3 ', 2, NULL);
ALTER EXTENSION billing UPDATE;
SQL
got=$(psql_q -d "$db" -c "SELECT string_agg(format('%s %s %s', service, cost, note), ' | ' ORDER BY service) FROM billing.aws_actuals" \
             -c "SELECT cost FROM billing.monthly_history WHERE source = 'aws' AND month = '2026-11-01'")
refused=$(psql_q -d "$db" -c "INSERT INTO billing.aws_actuals (month, service, cost) VALUES ('2026-12-01', 'SES', 1)" 2>&1 || true)
[[ "$refused" == *aws_actuals_service_check* ]] && refused=1
dropdb "$db"
want="s3 2  | ses 8 from the CSV; billing 0.4 joined 2 rows: 'SES': 5, 'ses': 3
10"
[[ "$got/$refused" == "$want/1" ]] || { echo "FAIL: aws_actuals spelled apart under 0.3: got '$got' refused $refused (want '$want' refused 1)"; exit 1; }
echo "upgrade 0.3 -> $current: aws_actuals spelled apart under 0.3 are respelled and joined (SES 5 + 3 = 8), November \$10, and 'SES' is refused after"

# A profiles table tracked under 0.3 with service 'SES' recorded its
# e-mails as 'SES', and an actual figure for 'SES' replaced their estimate.
# The update respells the three alike ('ses'): this month's AWS cost stays
# the actual $5 (not $5 + 1000 x $0.0001 = $5.10), and the next increase is
# recorded as 'ses'.
db=billing_upgrade_profiles_ses_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION billing VERSION '0.3';
CREATE TABLE profiles (id int PRIMARY KEY, data jsonb);
INSERT INTO profiles VALUES (1, '{"emails_sent_this_month": 0}');
SELECT billing.track_profiles('profiles', service => 'SES');
UPDATE profiles SET data = '{"emails_sent_this_month": 1000}';
INSERT INTO billing.aws_actuals (month, service, cost) VALUES (billing.month_of(now()), 'SES', 5);
ALTER EXTENSION billing UPDATE;
UPDATE profiles SET data = '{"emails_sent_this_month": 1001}';
SQL
got=$(psql_q -d "$db" -c "SELECT cost FROM billing.monthly_history WHERE source = 'aws' AND month = billing.month_of(now())" \
             -c "SELECT string_agg(DISTINCT service, ',') FROM (SELECT service FROM billing.aws_usage UNION ALL SELECT service FROM billing.tracked_profiles) AS s")
dropdb "$db"
[[ "$got" == $'5\nses' ]] || { echo "FAIL: a profiles table tracked under 0.3 with service SES: got '$got' (want 5, ses)"; exit 1; }
echo "upgrade 0.3 -> $current: e-mails recorded as 'SES' under 0.3 are respelled with their actual figure: \$5, not \$5.10"

# A reader granted as the README says under 0.3 (ON ALL TABLES: the tables
# there were then) has no SELECT on the tables 0.4 adds: the update names it
# in a WARNING with the GRANT to run, its reads fail with billing's error
# (not PostgreSQL's "permission denied for table ..."), and the GRANT mends
# them: 100 x $2.50/1M + 50 x $10/1M = $0.00075.
db=billing_upgrade_reader_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -d "$db" -c "DROP ROLE IF EXISTS \"upgrade Reader\"" -c "CREATE ROLE \"upgrade Reader\"" >/dev/null
warned=$(psql_q -d "$db" 2>&1 >/dev/null <<'SQL'
CREATE EXTENSION billing VERSION '0.3';
CREATE TABLE messages (id serial PRIMARY KEY, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
-- (tracked empty, then written: the 0.3 SQL under this library reads no price until the update)
SELECT billing.track_messages('messages');
INSERT INTO messages (conversation_id, role, content, data, created_at)
VALUES ('a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-01-01');
GRANT USAGE ON SCHEMA billing TO "upgrade Reader";
GRANT SELECT ON ALL TABLES IN SCHEMA billing TO "upgrade Reader";
GRANT SELECT ON messages TO "upgrade Reader";
ALTER EXTENSION billing UPDATE;
SQL
)
failed=$(psql_q -d "$db" -c 'SET ROLE "upgrade Reader"' -c "SELECT billing.dashboard(1, 5, '2026-01-15')" 2>&1 || true)
got=$(psql_q -d "$db" -c 'GRANT SELECT ON ALL TABLES IN SCHEMA billing TO "upgrade Reader"' \
             -c 'SET ROLE "upgrade Reader"' -c "SELECT billing.dashboard(1, 5, '2026-01-15') -> 'openai' ->> 'cost'")
dropdb "$db"
psql_q -c "DROP ROLE \"upgrade Reader\""
[[ "$warned" == *'role "upgrade Reader" reads billing'*'GRANT SELECT ON ALL TABLES IN SCHEMA billing TO "upgrade Reader";'* ]] \
    || { echo "FAIL: a 0.3 reader: the update's warning: $warned"; exit 1; }
[[ "$failed" == *'role "upgrade Reader" may not read billing'*'again after ALTER EXTENSION billing UPDATE'* ]] \
    || { echo "FAIL: a 0.3 reader after the update: $failed"; exit 1; }
[[ "$got" == 0.00075 ]] || { echo "FAIL: a 0.3 reader granted again: got '$got' (want 0.00075)"; exit 1; }
echo "upgrade 0.3 -> $current: a reader granted under 0.3 is named in a WARNING, gets billing's error, and reads \$0.00075 once granted again"

# A partitioned profiles table tracked under 0.3, owned by the app's role,
# its counter named in French on a service of its own: the update records it
# in billing.tracked_profiles (counter and service read back from the
# trigger's arguments), and its owner may then add partitions. By hand:
# 1 e-mail when tracking began, + 2 on the old partition, + 3 on the new one.
db=billing_upgrade_profiles_03
dropdb --if-exists "$db" 2>/dev/null
psql_q -c "DROP ROLE IF EXISTS billing_upgrade_owner" >/dev/null 2>&1
createdb "$db"
psql_q -d "$db" >/dev/null <<'SQL'
CREATE ROLE billing_upgrade_owner;
GRANT CREATE ON SCHEMA public TO billing_upgrade_owner;
CREATE EXTENSION billing VERSION '0.3';
INSERT INTO billing.aws_prices (service, unit, unit_price, effective_from)
VALUES ('ses-eu', 'email', 0.0001, '2020-01-01');
CREATE TABLE profiles (id int, region text, data jsonb) PARTITION BY LIST (region);
CREATE TABLE profiles_eu PARTITION OF profiles FOR VALUES IN ('eu');
ALTER TABLE profiles OWNER TO billing_upgrade_owner;
ALTER TABLE profiles_eu OWNER TO billing_upgrade_owner;
INSERT INTO profiles VALUES (1, 'eu', '{"courriels_envoyés": 1}');
SELECT billing.track_profiles('profiles', counter => 'courriels_envoyés', service => 'ses-eu');
ALTER EXTENSION billing UPDATE;
SET ROLE billing_upgrade_owner;
UPDATE profiles SET data = '{"courriels_envoyés": 3}';
CREATE TABLE profiles_us PARTITION OF profiles FOR VALUES IN ('us');
INSERT INTO profiles VALUES (2, 'us', '{"courriels_envoyés": 3}');
RESET ROLE;
SQL
got=$(psql_q -d "$db" -c "SELECT (SELECT string_agg(counter || '/' || service, ',') FROM billing.tracked_profiles)
                                 || ' ' || (SELECT sum(quantity) FROM billing.aws_usage WHERE service = 'ses-eu')")
dropdb "$db"
psql_q -c "DROP ROLE billing_upgrade_owner" >/dev/null
[[ "$got" == "courriels_envoyés/ses-eu 6" ]] || { echo "FAIL: profiles tracked under 0.3: got '$got' (want 'courriels_envoyés/ses-eu 6')"; exit 1; }
echo "upgrade 0.3 -> $current: a tracked profiles table is registered, and its owner may add partitions"

# A temporary table tracked under 0.3 (0.4 refuses them), gone with its
# session without an event: the first merge after the update forgets it and
# its $0.00075, which the views had kept for good.
db=billing_upgrade_temp_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION billing VERSION '0.3';
CREATE TEMP TABLE scratch (id int, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
SELECT billing.track_messages('scratch');
INSERT INTO scratch VALUES (1, 'tmp', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-01-01');
SQL
before=$(psql_q -d "$db" -c "SELECT count(*) FROM billing.tracked_tables")
psql_q -d "$db" -c "ALTER EXTENSION billing UPDATE" -c "SELECT billing.merge()" >/dev/null 2>&1
got=$(psql_q -d "$db" -c "SELECT (SELECT count(*) FROM billing.tracked_tables) || '/' || coalesce((SELECT sum(cost) FROM billing.monthly_history), 0)")
dropdb "$db"
[[ "$before/$got" == 1/0/0 ]] || { echo "FAIL: a temporary table tracked under 0.3: tracked before/after, cost after: $before/$got (want 1/0/0)"; exit 1; }
echo "upgrade 0.3 -> $current: a temporary table tracked under 0.3 and gone is forgotten at the first merge"

# billing's triggers renamed under 0.3 (which allowed it): the update gives
# them their names back, their owner cannot drop them, and writes are
# billed: 100 x 2.5/1M + 50 x 10/1M = $0.00075 and 5 e-mails.
db=billing_upgrade_renamed_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS billing_upgrade_renamer" -c "CREATE ROLE billing_upgrade_renamer" >/dev/null
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION billing VERSION '0.3';
CREATE TABLE m (id int, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
CREATE TABLE p (id int PRIMARY KEY, data jsonb);
ALTER TABLE m OWNER TO billing_upgrade_renamer;
ALTER TABLE p OWNER TO billing_upgrade_renamer;
SELECT billing.track_messages('m');
SELECT billing.track_profiles('p');
SET ROLE billing_upgrade_renamer;
ALTER TRIGGER billing_track ON m RENAME TO renamed_in_03;
ALTER TRIGGER billing_track_profiles ON p RENAME TO profiles_renamed_in_03;
RESET ROLE;
ALTER EXTENSION billing UPDATE;
SQL
refused=0
names=$(psql_q -d "$db" -c "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid IN ('m'::regclass, 'p'::regclass)")
for stmt in "DROP TRIGGER billing_track ON m" "DROP TRIGGER billing_track_profiles ON p"; do
    psql_q -d "$db" -c "SET ROLE billing_upgrade_renamer" -c "$stmt" >/dev/null 2>&1 || refused=$((refused + 1))
done
got=$(psql_q -d "$db" \
        -c "INSERT INTO m VALUES (1, 'a', 'assistant', 'x', '{\"model\": \"gpt-4o\", \"prompt_tokens\": 100, \"completion_tokens\": 50}', '2026-01-01')" \
        -c "INSERT INTO p VALUES (1, '{\"emails_sent_this_month\": 5}')" \
        -c "SELECT billing.merge() >= 0" \
        -c "SELECT (SELECT sum(cost) FROM billing.monthly_history WHERE source = 'openai') || '/'
                   || (SELECT sum(quantity) FROM billing.aws_usage WHERE origin = 'track_profiles')")
dropdb "$db"
psql_q -c "DROP ROLE billing_upgrade_renamer" >/dev/null
want_names=billing_track,billing_track_profiles,billing_track_truncate
[[ "$names/$refused/$got" == "$want_names/2/t"$'\n''0.00075/5' ]] || { echo "FAIL: triggers renamed under 0.3: names/refused drops/merged/figures: $names/$refused/$got (want $want_names/2/t, 0.00075/5)"; exit 1; }
echo "upgrade 0.3 -> $current: billing's triggers renamed under 0.3 get their names back, cannot be dropped, and bill the writes"

# A logical replication subscriber under 0.3: its owner made billing's
# triggers ENABLE ALWAYS, as the README says, so that the subscription's
# writes (session_replication_role = replica, as its apply worker runs)
# are billed. The update and the first merge, which make the table's
# triggers anew, keep every one of them ALWAYS, billing_track_update (new
# in 0.4) included. By hand: a replicated reply 100 x 2.5/1M + 50 x 10/1M
# = $0.00075 before the merge, a second after it, and the first one's
# usage replicated as 200 prompt tokens, + 100 x 2.5/1M = $0.00025:
# $0.00175.
db=billing_upgrade_subscriber_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
modes=$(psql_q -d "$db" <<'SQL'
\set QUIET on
CREATE EXTENSION billing VERSION '0.3';
CREATE TABLE messages (id int PRIMARY KEY, conversation_id text, role text, content text,
                       data jsonb, created_at timestamptz);
SELECT count(*) >= 0 FROM billing.track_messages('messages') \g /dev/null
DO $$
DECLARE g name;
BEGIN
    FOR g IN SELECT tgname FROM pg_trigger WHERE tgrelid = 'messages'::regclass AND tgname LIKE 'billing%' LOOP
        EXECUTE format('ALTER TABLE messages ENABLE ALWAYS TRIGGER %I', g);
    END LOOP;
END
$$;
ALTER EXTENSION billing UPDATE;
SET session_replication_role = replica;
INSERT INTO messages VALUES (1, 'a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-01-01');
RESET session_replication_role;
SELECT billing.merge() >= 0 \g /dev/null
SET session_replication_role = replica;
INSERT INTO messages VALUES (2, 'a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-01-02');
UPDATE messages SET data = '{"model": "gpt-4o", "prompt_tokens": 200, "completion_tokens": 50}' WHERE id = 1;
RESET session_replication_role;
SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger
 WHERE tgrelid = 'messages'::regclass AND NOT tgisinternal;
SELECT sum(cost) FROM billing.monthly_history WHERE source = 'openai';
SELECT billing.merge() >= 0 \g /dev/null
SELECT sum(cost) FROM billing.monthly_history WHERE source = 'openai';
SQL
) || modes="psql failed"
dropdb "$db"
want="billing_track=A,billing_track_truncate=A,billing_track_update=A"$'\n''0.00175'$'\n''0.00175'
[[ "$modes" == "$want" ]] || { echo "FAIL: a subscriber's ALWAYS triggers through the update: got [$modes], want [$want]"; exit 1; }
echo "upgrade 0.3 -> $current: a subscriber's ENABLE ALWAYS triggers stay ALWAYS (billing_track_update too) and its replicated writes are billed, \$0.00175"

# A partitioned table tracked under 0.3: the update records its partitions
# (billing.tracked_partitions), so that dropping one takes its $0.0015 out
# of the figures at once, and puts the TRUNCATE trigger on them, so that
# truncating the other alone takes its $0.00075 out (to 0).
db=billing_upgrade_partitioned_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION billing VERSION '0.3';
CREATE TABLE pmessages (id int, conversation_id text, role text, content text, data jsonb, created_at timestamptz)
    PARTITION BY RANGE (created_at);
CREATE TABLE pmessages_2025 PARTITION OF pmessages FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE pmessages_2026 PARTITION OF pmessages FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT billing.track_messages('pmessages');
-- gpt-4o: 100 x 2.5/1M + 50 x 10/1M = 0.00075; 200 x 2.5/1M + 100 x 10/1M = 0.0015
INSERT INTO pmessages VALUES
    (1, 'a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-01-01'),
    (2, 'b', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 200, "completion_tokens": 100}', '2025-06-01');
ALTER EXTENSION billing UPDATE;
SQL
got=$(psql_q -d "$db" -c "SELECT count(*) = 2 FROM billing.tracked_partitions" \
             -c "SELECT billing.merge() >= 0" \
             -c "SELECT (SELECT sum(cost) FROM billing.monthly_history) = 0.00225
                        AND (SELECT count(*) FROM pg_trigger
                              WHERE tgrelid = 'pmessages_2026'::regclass AND tgname = 'billing_track_truncate') = 1" \
             -c "DROP TABLE pmessages_2025" \
             -c "SELECT sum(cost) = 0.00075 FROM billing.monthly_history" \
             -c "TRUNCATE pmessages_2026" \
             -c "SELECT coalesce(sum(cost), 0) = 0 AND billing.merge() >= 0 FROM billing.monthly_history" \
             -c "SELECT coalesce(sum(cost), 0) = 0 FROM billing.monthly_history")
dropdb "$db"
[[ "$got" == $'t\nt\nt\nt\nt\nt' ]] || { echo "FAIL: a partitioned table tracked under 0.3: got $got"; exit 1; }
echo "upgrade 0.3 -> $current: a partitioned tracked table's partitions are recorded and get the TRUNCATE trigger"

# The same table on a subscriber (its row trigger ENABLE ALWAYS): the
# update's own ALTERs fire billing's event triggers, and an earlier script
# failed there ("relation billing.tracked_profiles does not exist"). The
# trigger stays ALWAYS and a write after the update is billed: 0.00075.
db=billing_upgrade_partitioned_always_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION billing VERSION '0.3';
CREATE TABLE pmessages (id int, conversation_id text, role text, content text, data jsonb, created_at timestamptz)
    PARTITION BY RANGE (created_at);
CREATE TABLE pmessages_2026 PARTITION OF pmessages FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT billing.track_messages('pmessages');
ALTER TABLE pmessages ENABLE ALWAYS TRIGGER billing_track;
ALTER EXTENSION billing UPDATE;
SQL
got=$(psql_q -d "$db" -c "SELECT billing.merge() >= 0" \
             -c "INSERT INTO pmessages VALUES (1, 'a', 'assistant', 'x', '{\"model\": \"gpt-4o\", \"prompt_tokens\": 100, \"completion_tokens\": 50}', '2026-01-01')" \
             -c "SELECT sum(cost) = 0.00075 FROM billing.monthly_history" \
             -c "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'pmessages'::regclass AND tgname = 'billing_track'")
dropdb "$db"
[[ "$got" == $'t\nt\nA' ]] || { echo "FAIL: a partitioned table tracked under 0.3 with its trigger ALWAYS: got $got"; exit 1; }
echo "upgrade 0.3 -> $current: a partitioned tracked table whose trigger fires ALWAYS is updated, stays ALWAYS and bills, \$0.00075"

# Under 0.3, one partition replicated by a subscriber (its billing_track
# ENABLE ALWAYS) and another table's triggers left disabled (a fixture
# loader's DISABLE TRIGGER ALL): after the update, the first merge reads
# both tables themselves (the update says so in a WARNING each, as an
# ALTER under 0.4 would); the new billing_track_update fires ALWAYS there.
# A replicated UPDATE there (100 + 50 -> 200 + 100 gpt-4o tokens) and a
# write into the disabled table are billed: 0.0015 and 0.00075 + 0.00075.
db=billing_upgrade_modes_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
warnings=$(psql -X -q -v ON_ERROR_STOP=1 -At -d "$db" 2>&1 >/dev/null <<'SQL' | grep -c "WARNING:  billing: a trigger of tracked table" || true
CREATE EXTENSION billing VERSION '0.3';
CREATE TABLE pm (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamptz)
    PARTITION BY RANGE (created_at);
CREATE TABLE pm_2026 PARTITION OF pm FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE pm_2027 PARTITION OF pm FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
SELECT billing.track_messages('pm');
ALTER TABLE pm_2026 ENABLE ALWAYS TRIGGER billing_track;
INSERT INTO pm VALUES (1, 'r', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-02');
CREATE TABLE dm (id bigint, conversation_id text, role text, content text, data jsonb, created_at timestamptz);
SELECT billing.track_messages('dm');
ALTER TABLE dm DISABLE TRIGGER ALL;
INSERT INTO dm VALUES (1, 'd', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-02');
ALTER EXTENSION billing UPDATE;
SQL
)
got=$(psql_q -d "$db" -c "SELECT billing.merge() >= 0" \
             -c "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'pm_2026'::regclass AND tgname = 'billing_track_update'" \
             -c "SET session_replication_role = replica" \
             -c "UPDATE pm SET data = '{\"model\": \"gpt-4o\", \"prompt_tokens\": 200, \"completion_tokens\": 100}' WHERE id = 1" \
             -c "RESET session_replication_role" \
             -c "INSERT INTO dm VALUES (2, 'd', 'assistant', 'x', '{\"model\": \"gpt-4o\", \"prompt_tokens\": 100, \"completion_tokens\": 50}', '2026-11-03')" \
             -c "SELECT billing.merge() >= 0" \
             -c "SELECT string_agg(conversation_id || '=' || (cost = 0.0015), ',' ORDER BY conversation_id) FROM billing.conversation_costs")
dropdb "$db"
[[ "$warnings" == 2 && "$got" == $'t\nA\nt\nd=true,r=true' ]] || {
    echo "FAIL: triggers disabled or ALWAYS on one partition under 0.3: $warnings warnings, got $got"; exit 1; }
echo "upgrade 0.3 -> $current: triggers disabled, or ALWAYS on one partition, under 0.3: the tables are read themselves (2 warnings), \$0.0015 each"

# A reply whose role is ASSISTANT (an ORM's enum label), stored without
# usage under 0.3, which counted it as a user message at no cost (in its
# ledger: the 0.3 SQL cannot merge beside the 0.4 library here): the first
# merge after the update takes the table in anew and estimates it, its
# prompt included: 'what is the time' (16 characters, 4 tokens), 'it is
# late' (10, 3) at gpt-4o-mini: 4 x 0.15/1M + 3 x 0.60/1M = 0.0000024.
db=billing_upgrade_assistant_03
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION billing VERSION '0.3';
CREATE TYPE role AS ENUM ('USER', 'ASSISTANT');
CREATE TABLE "Message" (id text PRIMARY KEY, "conversationId" text, role role, content text, data jsonb, "createdAt" timestamptz(3));
CREATE INDEX ON "Message" ("conversationId");
SELECT billing.track_messages('"Message"', conversation_column => 'conversationId', created_at_column => 'createdAt');
INSERT INTO "Message" VALUES ('a', 'c', 'USER', 'what is the time', '{}', '2026-11-02 10:00'),
                             ('b', 'c', 'ASSISTANT', 'it is late', '{}', '2026-11-02 10:01');
ALTER EXTENSION billing UPDATE;
SQL
got=$(psql_q -d "$db" -c "SELECT billing.merge() >= 0" \
             -c "SELECT estimated_tokens || '=' || cost FROM billing.conversation_costs")
dropdb "$db"
[[ "$got" == $'t\n7=0.0000024' ]] || { echo "FAIL: an ASSISTANT reply of 0.3 after the update: got $got"; exit 1; }
echo "upgrade 0.3 -> $current: an ASSISTANT reply stored without usage under 0.3 is estimated by the first merge, prompt included: 7 tokens, \$0.0000024"
