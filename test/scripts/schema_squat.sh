#!/usr/bin/env bash
# CREATE EXTENSION billing refuses a schema billing it does not own or that
# holds objects: a role that created it first (say through a restore that
# failed at CREATE EXTENSION) could otherwise put functions there that
# billing's triggers would call with billing's rights.
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
db=billing_schema_squat
fail=0
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql_q -d "$db" >/dev/null <<'SQL'
DROP ROLE IF EXISTS regress_squatter;
CREATE ROLE regress_squatter;
GRANT CREATE ON DATABASE billing_schema_squat TO regress_squatter;
SET ROLE regress_squatter;
CREATE SCHEMA billing;
RESET ROLE;
SQL
# 1. A schema owned by another role.
if out=$(psql_q -d "$db" -c 'CREATE EXTENSION billing' 2>&1); then
    echo "FAIL: CREATE EXTENSION accepted a schema billing owned by another role"; fail=1
elif [[ $out != *"schema billing already exists and belongs to role regress_squatter"* ]]; then
    echo "FAIL: unexpected error: $out"; fail=1
else
    echo "refused: $(grep -o 'billing: .*' <<<"$out" | head -1)"
fi
# 2. A schema of the installing role's own that holds a function.
psql_q -d "$db" >/dev/null <<'SQL'
DROP SCHEMA billing;
CREATE SCHEMA billing;
CREATE FUNCTION billing._mark_stale_from(timestamptz) RETURNS void LANGUAGE sql AS 'SELECT';
SQL
if out=$(psql_q -d "$db" -c 'CREATE EXTENSION billing' 2>&1); then
    echo "FAIL: CREATE EXTENSION accepted a schema billing that holds objects"; fail=1
elif [[ $out != *"schema billing already exists and holds objects"* ]]; then
    echo "FAIL: unexpected error: $out"; fail=1
else
    echo "refused: $(grep -o 'billing: .*' <<<"$out" | head -1)"
fi
# 2b. A function named like a Citus table's trigger function
# (billing.citus_track_N, which Citus creates before the extension on a
# node it adds) is accepted only when a superuser owns it: one owned by
# another role is refused like any object.
psql_q -d "$db" >/dev/null <<'SQL'
DROP SCHEMA billing CASCADE;
CREATE SCHEMA billing;
GRANT CREATE ON SCHEMA billing TO regress_squatter;
SET ROLE regress_squatter;
CREATE FUNCTION billing.citus_track_1() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
RESET ROLE;
SQL
if out=$(psql_q -d "$db" -c 'CREATE EXTENSION billing' 2>&1); then
    echo "FAIL: CREATE EXTENSION accepted billing.citus_track_1 owned by another role"; fail=1
elif [[ $out != *"schema billing already exists and holds objects"* ]]; then
    echo "FAIL: unexpected error: $out"; fail=1
else
    echo "refused (citus_track_1 of another role): $(grep -o 'billing: .*' <<<"$out" | head -1)"
fi
psql_q -d "$db" >/dev/null <<'SQL'
DROP FUNCTION billing.citus_track_1();
REVOKE CREATE ON SCHEMA billing FROM regress_squatter;
CREATE FUNCTION billing.citus_track_1() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE FUNCTION billing.citus_track_1_full() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
SQL
if ! out=$(psql_q -d "$db" -c 'CREATE EXTENSION billing' 2>&1); then
    echo "FAIL: a superuser's billing.citus_track_1 and _full were refused: $out"; fail=1
elif [[ $(psql_q -d "$db" -c "SELECT count(*) FROM pg_depend AS d JOIN pg_proc AS p ON p.oid = d.objid
                               WHERE p.proname LIKE 'citus\_track\_1%' AND d.deptype = 'e'") != 0 ]]; then
    echo "FAIL: the trigger functions became members of the extension"; fail=1
else
    echo "accepted: a superuser's billing.citus_track_1 and citus_track_1_full (left outside the extension)"
fi
psql_q -d "$db" -c 'DROP EXTENSION billing' -c 'DROP SCHEMA billing CASCADE' >/dev/null
# 2c. Likewise billing's Citus tables (billing.citus_ledger_N and the
# others, with their indexes and row types), which Citus may create before
# the extension on a node it adds: a superuser's are accepted, another
# role's refused.
psql_q -d "$db" >/dev/null <<'SQL'
CREATE SCHEMA billing;
GRANT CREATE ON SCHEMA billing TO regress_squatter;
SET ROLE regress_squatter;
CREATE TABLE billing.citus_ledger_3 (conversation text, n integer);
RESET ROLE;
SQL
if out=$(psql_q -d "$db" -c 'CREATE EXTENSION billing' 2>&1); then
    echo "FAIL: CREATE EXTENSION accepted billing.citus_ledger_3 owned by another role"; fail=1
elif [[ $out != *"schema billing already exists and holds objects"* || $out != *"relation citus_ledger_3"* ]]; then
    echo "FAIL: unexpected error: $out"; fail=1
else
    echo "refused (citus_ledger_3 of another role): $(grep -o 'billing: .*' <<<"$out" | head -1)"
fi
psql_q -d "$db" >/dev/null <<'SQL'
DROP TABLE billing.citus_ledger_3;
REVOKE CREATE ON SCHEMA billing FROM regress_squatter;
CREATE TABLE billing.citus_ledger_3 (conversation text, n integer);
CREATE INDEX ON billing.citus_ledger_3 (conversation);
CREATE TABLE billing.citus_estimates_3 (conversation text, message_id text, PRIMARY KEY (conversation, message_id));
CREATE TABLE billing.cluster_catalog (singleton boolean PRIMARY KEY);
SQL
if ! out=$(psql_q -d "$db" -c 'CREATE EXTENSION billing' 2>&1); then
    echo "FAIL: a superuser's billing.citus_ledger_3, citus_estimates_3 and cluster_catalog were refused: $out"; fail=1
else
    echo "accepted: a superuser's billing.citus_ledger_3 (and its index), citus_estimates_3 and cluster_catalog"
fi
psql_q -d "$db" -c 'DROP EXTENSION billing' -c 'DROP SCHEMA billing CASCADE' >/dev/null
# 3. An empty schema of its own is fine, and so is none.
psql_q -d "$db" -c 'CREATE SCHEMA billing' -c 'CREATE EXTENSION billing' >/dev/null 2>&1 \
    || { echo "FAIL: an empty schema billing of the installing role was refused"; fail=1; }
psql_q -d "$db" -c 'DROP EXTENSION billing' -c 'DROP SCHEMA IF EXISTS billing' -c 'CREATE EXTENSION billing' >/dev/null \
    || { echo "FAIL: CREATE EXTENSION without a schema failed"; fail=1; }
dropdb "$db"
psql_q -c 'DROP ROLE regress_squatter'
((fail == 0)) && echo "schema squatting: refused; an empty schema of the installer's own is accepted"
exit "$fail"
