#!/usr/bin/env bash
# pg_dump / pg_restore of a database that uses billing keeps the user's price
# rows and seed removals, duplicates no seed row, and restores a catalog that
# prices exactly as the original; budgets, fired alerts (with their
# delivery state) and the user's savings pairs are kept, an alert fired
# before the dump does not fire again after the restore, and a delivered
# one is not claimed for delivery again; issued statements and their lines
# are kept byte for byte, and stay unchangeable; the app's role that owns a
# partitioned tracked table still adds partitions to it. Runs
# against the cluster tools/test.sh started (PGHOST/PGPORT/PGUSER in the
# environment).
set -euo pipefail

src=billing_dump_src
dst=billing_dump_dst
dump=$(mktemp)
app_role=billing_dump_app
trap 'rm -f "$dump"; dropdb --if-exists "$src"; dropdb --if-exists "$dst"; psql -X -q -d postgres -c "DROP ROLE IF EXISTS $app_role"' EXIT
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

dropdb --if-exists "$src" 2>/dev/null
dropdb --if-exists "$dst" 2>/dev/null
psql_q -d postgres -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS $app_role" -c "CREATE ROLE $app_role"
createdb "$src"
psql_q -d "$src" >/dev/null <<'SQL'
CREATE EXTENSION billing;
-- a new model, a changed seed price, a removed seed row, a new AWS service
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m, note)
VALUES ('my-finetune', '2025-01-01', 3.00, 12.00, 'user row');
UPDATE billing.model_prices SET output_per_1m = 0.65 WHERE model = 'gpt-4o-mini';
DELETE FROM billing.model_prices WHERE model = 'o1-preview';
INSERT INTO billing.aws_prices (service, unit, unit_price, effective_from)
VALUES ('sqs', 'request', 0.0000004, '2020-01-01');
CREATE TABLE messages (id serial PRIMARY KEY, conversation_id text, role text, content text,
                       data jsonb, created_at timestamptz);
INSERT INTO messages (conversation_id, role, content, data, created_at) VALUES
  ('a', 'assistant', 'x', '{"model": "my-finetune", "prompt_tokens": 1000000, "completion_tokens": 1000000}', '2026-01-01'),
  ('a', 'assistant', 'y', '{"model": "gpt-4o-mini", "prompt_tokens": 1000000, "completion_tokens": 1000000}', '2026-01-01'),
  ('b', 'assistant', 'z', '{"model": "gpt-4o", "prompt_tokens": 1000000, "completion_tokens": 0}', '2024-09-01');
UPDATE billing.settings SET value = 'gpt-4o' WHERE name = 'estimate_model';
UPDATE billing.settings SET value = 'Europe/Paris' WHERE name = 'month_time_zone';
SELECT billing.track_messages('messages');
-- a reply without usage (estimated), a write after tracking, recorded e-mails
INSERT INTO messages (conversation_id, role, content, data, created_at)
VALUES ('a', 'assistant', 'twelve chars', '{}', '2026-01-02');
SELECT billing.merge();
INSERT INTO messages (conversation_id, role, content, data, created_at)
VALUES ('b', 'assistant', 'w', '{"model": "gpt-4o", "prompt_tokens": 10, "completion_tokens": 10}', '2026-01-03');
SELECT billing.record_usage('ses', 250, '2026-01-05');
-- Customers and issued statements: September 2024, then January 2026 with
-- the adjustments of September after conversation b moved to another customer.
-- (the key unique by an index of its own, the primary key on another
-- column: the restore adds them one by one, and billing must let it)
CREATE TABLE conversations (pk serial PRIMARY KEY, id text NOT NULL, user_id text);
CREATE UNIQUE INDEX conversations_id ON conversations (id);
INSERT INTO conversations (id, user_id) VALUES ('a', 'acme'), ('b', 'bolt');
SELECT billing.track_customers('messages', 'conversations');
SELECT billing.record_customer_usage('acme', 'ses', 100, '2026-01-06');
SELECT count(*) FROM billing.issue_statements('2024-09-01', true);
UPDATE conversations SET user_id = 'acme' WHERE id = 'b';
SELECT count(*) FROM billing.issue_statements('2026-01-01', true);
-- (a dropped column before data: the restored table numbers its columns anew)
CREATE TABLE profiles (id int PRIMARY KEY, old_counter int, data jsonb);
ALTER TABLE profiles DROP COLUMN old_counter;
SELECT billing.track_profiles('profiles');
INSERT INTO billing.aws_actuals (month, service, cost) VALUES ('2025-12-01', 'ses', 1.23);
-- A budget and the alert it fired: January 2026 holds 15 + 0.80 + ..., past
-- 50% of 20 (10), not 100%.
INSERT INTO billing.budgets (name, scope, amount, thresholds, created_at) VALUES ('january', 'all', 20, '{50,100}', '2026-01-01');
SELECT billing.check_alerts('2026-01-20');
-- Its delivery: one failed attempt, then delivered.
SELECT count(*) FROM billing.claim_alerts('deliverer', 10);
SELECT billing.alert_failed(1, 'deliverer', 'HTTP 503', '0 seconds');
SELECT count(*) FROM billing.claim_alerts('deliverer', 10);
SELECT billing.alert_delivered(1, 'deliverer');
-- Savings pairs: one on the user's own model (restored after its price),
-- a changed default (now the user's), a default switched off.
INSERT INTO billing.savings_pairs (model, cheaper_model) VALUES ('my-finetune', 'gpt-4o-mini');
UPDATE billing.savings_pairs SET cheaper_model = 'gpt-4.1-nano' WHERE model = 'gpt-4.1';
UPDATE billing.savings_pairs SET cheaper_model = NULL WHERE model = 'o1';
-- A customer named by the messages' data (track_message_customers), in a
-- month no statement covers: n1 cobalt 1000 x $2.50/1M = 0.0025.
CREATE TABLE notes (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                    created_at timestamptz);
INSERT INTO notes (conversation_id, role, content, data, created_at)
VALUES ('n1', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 1000, "completion_tokens": 0, "customer": "cobalt"}', '2025-12-04');
SELECT backfilled FROM billing.track_messages('notes');
SELECT billing.track_message_customers('notes', data_member => 'customer');
-- The app's role owns its partitioned table, and its migrations add
-- partitions (billing grants it EXECUTE on the table's trigger function).
CREATE SCHEMA app AUTHORIZATION billing_dump_app;
CREATE TABLE app.events (id bigint, conversation_id text, role text, content text, data jsonb,
                         created_at timestamp, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
CREATE TABLE app.events_2025_06 PARTITION OF app.events FOR VALUES FROM ('2025-06-01') TO ('2025-07-01');
ALTER TABLE app.events OWNER TO billing_dump_app;
ALTER TABLE app.events_2025_06 OWNER TO billing_dump_app;
SELECT backfilled FROM billing.track_messages('app.events');
SQL

pg_dump -Fc -d "$src" -f "$dump"
createdb "$dst"
# (in one transaction: an error anywhere, such as a trigger billing made
# again before the dump's own, fails the restore)
pg_restore -d "$dst" --exit-on-error --single-transaction "$dump"

# The same catalog, row for row, and no seed row twice.
catalog=$(cat <<'SQL'
SELECT string_agg(format('%s|%s|%s|%s|%s|%s', model, effective_from, input_per_1m,
                         cached_input_per_1m, output_per_1m, origin), E'\n' ORDER BY model, effective_from)
  FROM billing.model_prices
SQL
)
aws=$(cat <<'SQL'
SELECT string_agg(format('%s|%s|%s|%s', service, effective_from, unit_price, origin), E'\n'
                  ORDER BY service, effective_from)
  FROM billing.aws_prices
SQL
)
removed="SELECT string_agg(name, ',' ORDER BY name) FROM billing.removed_seed_prices"
history="SELECT string_agg(format('%s|%s|%s|%s', month, source, cost, messages), ',' ORDER BY month, source) FROM billing.monthly_history"
conversations="SELECT string_agg(format('%s|%s|%s|%s', month, conversation_id, cost, first_message_at), ',' ORDER BY month, conversation_id) FROM billing.conversation_costs"
estimates="SELECT string_agg(format('%s|%s', message_id, prompt_tokens), ',' ORDER BY message_id) FROM billing.estimated_prompts"
settings="SELECT string_agg(name || '=' || value, ',' ORDER BY name) FROM billing.settings"
budgets="SELECT string_agg(format('%s|%s|%s|%s|%s|%s', name, scope, amount, thresholds, blocks, created_at), ',' ORDER BY name) FROM billing.budgets"
alerts="SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s', id, budget, threshold, period, spent, fired_at, delivered_at,
                                  attempts, last_error, claimed_by, next_attempt_at), ',' ORDER BY id) FROM billing.alerts"
pairs="SELECT string_agg(format('%s|%s|%s', model, cheaper_model, origin), ',' ORDER BY model) FROM billing.savings_pairs"
savings="SELECT string_agg(format('%s|%s|%s|%s', model, cheaper_model, cost, cheaper_cost), ',' ORDER BY model) FROM billing.savings('2026-01-01', '2026-02-01')"
# Statements byte for byte (every column's text), and the customers' views.
statements="SELECT string_agg(s::text, E'\\n' ORDER BY s.id) FROM billing.statements AS s"
lines="SELECT string_agg(l::text, E'\\n' ORDER BY l.statement_id, l.line) FROM billing.statement_lines AS l"
issued="SELECT string_agg(i::text, E'\\n' ORDER BY i.month) FROM billing.issued_months AS i"
customers="SELECT string_agg(c::text, E'\\n' ORDER BY c.month, c.customer) FROM billing.customer_costs AS c"
same_as_source() {   # DB WHAT: every figure and row of billing's tables as in the source
    local q a b
    for q in "$catalog" "$aws" "$removed" "$history" "$conversations" "$estimates" "$settings" "$budgets" "$alerts" "$pairs" \
             "$savings" "$statements" "$lines" "$issued" "$customers"; do
        a=$(psql_q -d "$src" -c "$q")
        b=$(psql_q -d "$1" -c "$q")
        if [[ "$a" != "$b" ]]; then
            echo "FAIL: differs after $2: $q"; diff <(echo "$a") <(echo "$b") || true; exit 1
        fi
    done
}
same_as_source "$dst" restore

# pg_restore loads the data of billing's tables in any order: in parallel
# with -j, or in the order a list (-L) gives. Every row comes back either
# way: before, a foreign key between two of them refused the rows of the
# one loaded first (statement lines, customers), and a savings pair on the
# user's own model was refused before that model's price came.
for how in reversed parallel; do
    db=${src}_$how
    dropdb --if-exists "$db"; createdb "$db"
    if [[ $how == reversed ]]; then
        # (the data entries, from the first to the last, in reverse order)
        pg_restore -l "$dump" | awk '{ line[NR] = $0 } / TABLE DATA / { if (!first) first = NR; last = NR }
            END { for (i = 1; i <= NR; i++) print (i >= first && i <= last) ? line[first + last - i] : line[i] }' >"$dump.list"
        pg_restore -d "$db" --exit-on-error --single-transaction -L "$dump.list" "$dump"
    else
        pg_restore -d "$db" --exit-on-error -j 4 "$dump"
    fi
    same_as_source "$db" "a $how restore"
    dropdb "$db"
done
rm -f "$dump.list"

# Three statements: bolt's of September 2024 (conversation b), then in
# January 2026 acme's (its usage, and b's September as a debit) and bolt's
# (the credit of b's September).
n=$(psql_q -d "$dst" -c "SELECT count(*) || '/' || count(*) FILTER (WHERE adjustments_total <> 0) FROM billing.statements")
[[ "$n" == 3/2 ]] || { echo "FAIL: restored statements: $n (want 3/2)"; exit 1; }
cobalt=$(psql_q -d "$dst" -c "SELECT openai_cost FROM billing.customer_costs WHERE customer = 'cobalt' AND month = '2025-12-01'")
[[ "$cobalt" == 0.0025 ]] || { echo "FAIL: restored customer named by the messages' data: cobalt $cobalt (want 0.0025)"; exit 1; }
# Restored statements still cannot change, issuing an issued month changes
# nothing, and nothing is pending.
if psql_q -d "$dst" -c "UPDATE billing.statements SET total = 0" 2>/dev/null; then
    echo "FAIL: a restored statement could be changed"; exit 1
fi
again=$(psql_q -d "$dst" -c "SELECT count(*) FROM billing.issue_statements('2026-01-01', true)")
pending=$(psql_q -d "$dst" -c "SELECT count(*) FROM billing.pending_adjustments")
[[ "$again" == 2 && "$pending" == 0 ]] || { echo "FAIL: after restore: reissue gave $again, pending $pending"; exit 1; }

# The restored database is read from the source until merged; then the same.
psql_q -d "$dst" -c "SELECT billing.merge()" >/dev/null
a=$(psql_q -d "$src" -c "$history"); b=$(psql_q -d "$dst" -c "$history")
[[ "$a" == "$b" ]] || { echo "FAIL: history differs after merge of the restored database"; exit 1; }
# A write to the restored database is tracked.
psql_q -d "$dst" -c "INSERT INTO messages (conversation_id, role, content, data, created_at)
                     VALUES ('c', 'assistant', 'v', '{\"model\": \"gpt-4o\", \"prompt_tokens\": 1000000, \"completion_tokens\": 0}', '2026-01-04')"
tracked=$(psql_q -d "$dst" -c "SELECT cost = 2.50 FROM billing.conversation_costs WHERE conversation_id = 'c'")
[[ "$tracked" == t ]] || { echo "FAIL: a write after restore was not tracked"; exit 1; }
# The app's role adds a partition to its restored table, and its row is
# billed: gpt-4o 100 x 2.5/1M + 50 x 10/1M = 0.00075 in July 2025.
psql_q -d "$dst" >/dev/null <<'SQL'
SET ROLE billing_dump_app;
CREATE TABLE app.events_2025_07 PARTITION OF app.events FOR VALUES FROM ('2025-07-01') TO ('2025-08-01');
INSERT INTO app.events VALUES
  (1, 'e', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2025-07-02');
SQL
july=$(psql_q -d "$dst" -c "SELECT cost FROM billing.monthly_history WHERE source = 'openai' AND month = '2025-07-01'")
[[ "$july" == 0.00075 ]] || { echo "FAIL: the app role's new partition after restore: July 2025 costs '$july', not 0.00075"; exit 1; }
# So is the e-mail counter: 7 e-mails after restore.
psql_q -d "$dst" -c "INSERT INTO profiles VALUES (1, '{\"emails_sent_this_month\": 7}')"
emails=$(psql_q -d "$dst" -c "SELECT sum(quantity) FROM billing.aws_usage WHERE origin = 'track_profiles'")
[[ "$emails" == 7 ]] || { echo "FAIL: the e-mail counter after restore recorded '$emails', not 7"; exit 1; }

# Hand-computed: my-finetune 1M x 3 + 1M x 12 = 15; gpt-4o-mini (edited) 1M x 0.15 + 1M x 0.65 = 0.80;
# gpt-4o on 2024-09-01 (old price) 1M x 5 = 5; 10 + 10 tokens of gpt-4o = 0.000125. Total 20.800125.
for db in "$src" "$dst"; do
    got=$(psql_q -d "$db" -c "SELECT billing.openai_cost(data, created_at) = 20.800125 FROM messages WHERE conversation_id <> 'c'")
    [[ "$got" == t ]] || { echo "FAIL: costs in $db are not 20.80"; exit 1; }
done
dups=$(psql_q -d "$dst" -c "SELECT count(*) FROM (SELECT model, effective_from FROM billing.model_prices
                                                  GROUP BY 1, 2 HAVING count(*) > 1) d")
removed_back=$(psql_q -d "$dst" -c "SELECT count(*) FROM billing.model_prices WHERE model = 'o1-preview'")
[[ "$dups" == 0 && "$removed_back" == 0 ]] || { echo "FAIL: duplicates=$dups o1-preview rows=$removed_back"; exit 1; }

# The user's pairs as written (and the defaults as shipped).
want_pairs="gpt-4.1|gpt-4.1-nano|user my-finetune|gpt-4o-mini|user o1||user"
got_pairs=$(psql_q -d "$dst" -c "SELECT string_agg(format('%s|%s|%s', model, cheaper_model, origin), ' ' ORDER BY model)
                                   FROM billing.savings_pairs WHERE origin = 'user'")
[[ $got_pairs == "$want_pairs" ]] || { echo "FAIL: the restored user pairs are '$got_pairs', not '$want_pairs'"; exit 1; }
[[ $(psql_q -d "$dst" -c "SELECT cheaper_model FROM billing.savings_pairs WHERE model = 'gpt-4o'") == gpt-4o-mini ]] ||
    { echo "FAIL: the default pair of gpt-4o is not restored"; exit 1; }

# The restored alert does not fire again, and the alerts' ids go on: 2M
# gpt-4o prompt tokens (5.00) take January past 100% of 20.
[[ $(psql_q -d "$src" -c "SELECT count(*) FROM billing.alerts") == 1 ]] || { echo "FAIL: no alert fired before the dump"; exit 1; }
fired=$(psql_q -d "$dst" -c "SELECT billing.check_alerts('2026-01-20')")
psql_q -d "$dst" -c "INSERT INTO messages (conversation_id, role, content, data, created_at)
                     VALUES ('bud', 'assistant', 'b', '{\"model\": \"gpt-4o\", \"prompt_tokens\": 2000000, \"completion_tokens\": 0}', '2026-01-06')"
again=$(psql_q -d "$dst" -c "SELECT billing.check_alerts('2026-01-20')")
ids=$(psql_q -d "$dst" -c "SELECT string_agg(id || ':' || threshold, ',' ORDER BY id) FROM billing.alerts")
if [[ $fired != 0 || $again != 1 || $ids != '1:50,2:100' ]]; then
    echo "FAIL: after restore the check fired $fired then $again, alerts $ids (want 0, 1, 1:50,2:100)"; exit 1
fi
# Delivery goes on where it was: only the new alert is claimed.
claimed=$(psql_q -d "$dst" -c "SELECT string_agg(id || ':' || attempts, ',') FROM billing.claim_alerts('deliverer', 10)")
[[ $claimed == 2:1 ]] || { echo "FAIL: after restore the delivery claimed '$claimed', not the new alert alone (2:1)"; exit 1; }

# A restore of part of a database. Source: one tracked table, chats, with
# one reply (gpt-4o 100 + 50 tokens: 100 x 2.5/1M + 50 x 10/1M = 0.00075).
part_src=${src}_part
part=${src}_part_dst
for db in "$part_src" "$part"; do dropdb --if-exists "$db"; createdb "$db"; done
chats="CREATE TABLE chats (id bigint PRIMARY KEY, conversation_id text, role text, content text, data jsonb, created_at timestamptz)"
reply() {   # ID DAY: a gpt-4o reply of 100 + 50 tokens (0.00075) on that day of January 2026
    echo "INSERT INTO chats VALUES ($1, 'k', 'assistant', 'x', '{\"model\": \"gpt-4o\", \"prompt_tokens\": 100, \"completion_tokens\": 50}', '2026-01-$2')"
}
january() { psql_q -d "$1" -c "SELECT trim_scale(coalesce(sum(cost), 0)) FROM billing.monthly_history WHERE source = 'openai' AND month = '2026-01-01'"; }
psql_q -d "$part_src" -c "CREATE EXTENSION billing" -c "$chats" -c "SELECT 1 FROM billing.track_messages('chats')" -c "$(reply 1 05)" >/dev/null
pg_dump -Fc -d "$part_src" -f "$dump.part"
pg_dump -Fc -d "$part_src" -t chats -f "$dump.chats"

# pg_dump -t brings chats with billing's triggers, which call the trigger
# functions of table 1; here table 1 is another one (other: gpt-4o 1000
# prompt tokens, 0.0025). The app's writes pass, unbilled, with one WARNING
# per transaction, and other's figures do not move.
psql_q -d "$part" -c "CREATE EXTENSION billing" \
    -c "CREATE TABLE other (id bigint PRIMARY KEY, conversation_id text, role text, content text, data jsonb, created_at timestamptz)" \
    -c "SELECT 1 FROM billing.track_messages('other')" \
    -c "INSERT INTO other VALUES (1, 'o', 'assistant', 'x', '{\"model\": \"gpt-4o\", \"prompt_tokens\": 1000, \"completion_tokens\": 0}', '2026-01-05')" >/dev/null
pg_restore -d "$part" --exit-on-error "$dump.chats"
out=$(psql_q -d "$part" -c "BEGIN" -c "$(reply 2 06)" -c "$(reply 3 07)" -c "COMMIT" 2>&1) ||
    { echo "FAIL: a write to a table restored with another table's triggers failed: $out"; exit 1; }
warnings=$(grep -c "WARNING:  billing: this trigger function tracks public.other, not public.chats: the write is not billed" <<<"$out" || true)
[[ $warnings == 1 && $(january "$part") == 0.0025 ]] ||
    { echo "FAIL: writes to chats under other's triggers: $warnings warning(s), January $(january "$part") (want 1, 0.0025): $out"; exit 1; }
# track_messages replaces those triggers (a NOTICE names each) and takes
# chats in: 0.0025 + 3 x 0.00075 = 0.00475; its next write is billed (0.0055).
out=$(psql -X -q -v ON_ERROR_STOP=1 -At -d "$part" -c "SELECT 1 FROM billing.track_messages('chats')" 2>&1)
dropped=$(grep -c "NOTICE:  billing: dropping trigger billing_track[a-z_]* on public.chats" <<<"$out" || true)
[[ $dropped == 3 && $(january "$part") == 0.00475 ]] ||
    { echo "FAIL: tracking chats after the partial restore: $dropped trigger(s) replaced, January $(january "$part") (want 3, 0.00475): $out"; exit 1; }
psql_q -d "$part" -c "$(reply 4 08)"
[[ $(january "$part") == 0.0055 ]] ||
    { echo "FAIL: a write to chats once tracked again: January $(january "$part") (want 0.0055)"; exit 1; }

# Schema first, data later (pg_restore --schema-only, then --data-only):
# between the two, billing's triggers are there and billing.tracked_tables
# is empty. The app's write passes, unbilled, with a WARNING; the data step
# loads every row (chats' COPY too); its tracked_tables row takes chats in
# from its rows: 0.00075 (restored) + 0.00075 (written in between).
dropdb "$part"; createdb "$part"
pg_restore -d "$part" --exit-on-error --schema-only "$dump.part"
out=$(psql_q -d "$part" -c "$(reply 100 09)" 2>&1) ||
    { echo "FAIL: a write between a schema-only and a data-only restore failed: $out"; exit 1; }
grep -q "WARNING:  billing: this trigger function tracks a table not tracked (yet), not public.chats: the write is not billed" <<<"$out" ||
    { echo "FAIL: no WARNING for the write between the two restores: $out"; exit 1; }
pg_restore -d "$part" --exit-on-error --data-only "$dump.part" 2>/dev/null
rows=$(psql_q -d "$part" -c "SELECT count(*) FROM chats")
[[ $rows == 2 && $(january "$part") == 0.0015 ]] ||
    { echo "FAIL: schema then data: $rows rows, January $(january "$part") (want 2, 0.0015)"; exit 1; }
psql_q -d "$part" -c "SELECT billing.merge()" >/dev/null
[[ $(january "$part") == 0.0015 ]] || { echo "FAIL: schema then data, merged: January $(january "$part") (want 0.0015)"; exit 1; }
dropdb "$part"; dropdb "$part_src"; rm -f "$dump.part" "$dump.chats"

# pg_restore --clean of the app's schema over the live database drops the
# tracked tables (billing forgets them) and brings billing's triggers back
# without the tracking: every merge says so, its hint the calls that track
# them again, and those calls work (track_profiles replaces the restored
# trigger, where it refused "already tracked"). By hand: one reply of
# gpt-4o 100 + 50 tokens, 0.00075 in November 2026, again after tracking.
cl=billing_dump_clean
dropdb --if-exists "$cl" 2>/dev/null; createdb "$cl"
psql_q -d "$cl" >/dev/null <<'SQL'
CREATE EXTENSION billing;
CREATE TABLE cl_messages (id bigserial PRIMARY KEY, conversation_id text, role text, content text, data jsonb,
                          created_at timestamptz);
CREATE TABLE cl_profiles (id int PRIMARY KEY, data jsonb);
INSERT INTO cl_messages (conversation_id, role, content, data, created_at)
VALUES ('a', 'assistant', 'x', '{"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 50}', '2026-11-02');
INSERT INTO cl_profiles VALUES (1, '{"emails_sent_this_month": 5}');
SELECT count(*) FROM billing.track_messages('cl_messages');
SELECT count(*) FROM billing.track_profiles('cl_profiles');
SQL
pg_dump -Fc -n public -f "$dump.clean" "$cl"
pg_restore --clean --if-exists -d "$cl" "$dump.clean" >/dev/null 2>&1 || true
said=$(psql_q -d "$cl" -c "SELECT billing.merge()" 2>&1 >/dev/null)
want_hint="HINT:  SELECT billing.track_messages('public.cl_messages'); SELECT billing.track_profiles('public.cl_profiles');"
[[ $said == "WARNING:  billing: a table carries billing's trigger but is not tracked"*"$want_hint"* ]] ||
    { echo "FAIL: a merge after pg_restore --clean said: $said"; exit 1; }
got=$(psql_q -d "$cl" -c "SELECT count(*) FROM billing.track_messages('cl_messages')" \
                      -c "SELECT count(*) FROM billing.track_profiles('cl_profiles')" \
                      -c "SELECT billing.merge() >= 0" \
                      -c "SELECT sum(cost) FROM billing.monthly_history WHERE source = 'openai'" 2>/dev/null | tail -n 1)
said=$(psql_q -d "$cl" -c "SELECT billing.merge()" 2>&1 >/dev/null)
[[ $got == 0.00075 && -z $said ]] || { echo "FAIL: tracked again after pg_restore --clean: $got, merge said [$said] (want 0.00075, nothing)"; exit 1; }
dropdb "$cl"; rm -f "$dump.clean"

# The restored triggers still go away with the extension: the app's table
# stays writable after DROP EXTENSION billing.
psql_q -d "$dst" -c "DROP EXTENSION billing"
left=$(psql_q -d "$dst" -c "SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('messages'::regclass, 'profiles'::regclass)")
[[ "$left" == 0 ]] || { echo "FAIL: $left trigger(s) left on messages after DROP EXTENSION"; exit 1; }
psql_q -d "$dst" -c "INSERT INTO messages (conversation_id, role, content, data, created_at)
                     VALUES ('d', 'assistant', 'u', '{}', '2026-01-05')"
echo "dump/restore: catalog, removals, settings, budgets, alerts (and their delivery), savings pairs, costs and statements (byte for byte) identical, also restored in parallel and in reverse order; a partial restore never fails the app's writes; after pg_restore --clean of the app's schema, merge names the tables to track again; no alert fires or is delivered twice; the app's role adds partitions to its restored table; DROP EXTENSION leaves the app's table writable"
