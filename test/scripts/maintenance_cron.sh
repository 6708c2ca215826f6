#!/usr/bin/env bash
# billing's periodic work runs itself on pg_cron (README "Maintenance"):
#
#  1. on a throwaway cluster with pg_cron preloaded (tools/cluster.sh does
#     that when postgresql-15-cron is installed): before CREATE EXTENSION
#     pg_cron, billing.schedule_maintenance() fails with a clear error; after
#     it, one call schedules the four jobs of billing.maintenance_jobs();
#  2. a reply that crosses a budget is written (unmerged, in the ledger);
#     within a bounded time (pg_cron 1.4 runs a job at most once a minute:
#     150 s) the merge job has run and succeeded, the ledger is empty and the
#     budget's alerts have fired: a reply of 1,000 prompt and 1,000
#     completion tokens at 1,000 USD per 1M tokens each costs
#     1000 x 1000 / 1e6 + 1000 x 1000 / 1e6 = 2.00 USD, over both thresholds
#     (50 % and 100 %) of a 1.00 USD budget: two alerts;
#  3. the statements job's command (run here, not waited for: it runs on the
#     1st): with no customer known it issues nothing (no month is recorded
#     as issued); once usage of a customer is recorded in the month before,
#     it issues that month: 1000 SES e-mails x 0.0001 USD = 0.10 USD;
#     run again, it changes nothing;
#  4. one call removes the jobs; calling it again removes none;
#  5. in a database other than cron.database_name, and on a cluster without
#     pg_cron preloaded, the error says what to do instead.
#
#   test/scripts/maintenance_cron.sh
#
# Starts its own clusters (pg_cron must be preloaded, and cron.database_name
# is the postgres database), whatever the environment has.
set -euo pipefail

root=${BILLING_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$root"
# shellcheck source=tools/cluster.sh
. tools/cluster.sh

if [[ ! -f ${PG_BINDIR:-/usr/lib/postgresql/15/bin}/../lib/pg_cron.so ]]; then
    echo "FAIL: pg_cron.so missing (tools/setup.sh installs postgresql-15-cron)"
    exit 1
fi

fail=0
check() {  # check WHAT GOT WANT
    if [[ $2 == "$3" ]]; then
        echo "ok: $1"
    else
        echo "FAIL: $1: got '$2', want '$3'"
        fail=1
    fi
}
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
# err SQL...: the error message (first line) of a statement that must fail
err() { psql -X -q -At -v ON_ERROR_STOP=1 "$@" 2>&1 >/dev/null | sed -n 's/^ERROR: *//p' | head -n 1; }

# The reply is written now and checked in this month's figures up to 150 s
# later: within 3 minutes of the (UTC) month's end, wait for the next month.
left=$(( $(date -u -d "$(date -u +%Y-%m-01) +1 month" +%s) - $(date -u +%s) ))
if ((left < 180)); then
    echo "the month ends in $left s: waiting for the next one"
    sleep $((left + 2))
fi

trap cluster_stop EXIT
cluster_start >/dev/null
echo "cluster with pg_cron: $BILLING_CLUSTER_DIR port $PGPORT"

q -d postgres <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION billing;
CREATE TABLE public.messages (
    id bigserial PRIMARY KEY, conversation_id text NOT NULL, role text NOT NULL,
    content text NOT NULL, data jsonb, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO billing.model_prices (model, effective_from, input_per_1m, output_per_1m)
VALUES ('cron-test-model', '2000-01-01', 1000, 1000);
SELECT FROM billing.track_messages('public.messages');
INSERT INTO billing.budgets (name, amount, thresholds) VALUES ('cron-test', 1.00, '{50,100}');
SQL

check "without CREATE EXTENSION pg_cron: an error" \
    "$(err -d postgres -c 'SELECT * FROM billing.schedule_maintenance()')" \
    'billing: pg_cron is loaded but its extension is not created in database "postgres"'

q -d postgres -c 'CREATE EXTENSION pg_cron' >/dev/null
check "schedule_maintenance() schedules four jobs" \
    "$(q -d postgres -c "SELECT string_agg(job || ' ' || schedule, ', ' ORDER BY job) FROM billing.schedule_maintenance()")" \
    'billing-alerts:postgres */5 * * * *, billing-merge:postgres * * * * *, billing-month-close:postgres 5 0 1 * *, billing-statements:postgres 10 12 1 * *'
check "a second call updates them (still four jobs in cron.job)" \
    "$(q -d postgres -c 'SELECT count(*) FROM billing.schedule_maintenance()'; q -d postgres -c "SELECT count(*) FROM cron.job WHERE jobname LIKE 'billing-%'")" \
    $'4\n4'

# The reply that crosses the budget; unmerged, nothing has fired yet.
q -d postgres <<'SQL'
INSERT INTO public.messages (conversation_id, role, content, data)
VALUES ('c1', 'assistant', 'expensive answer',
        '{"model": "cron-test-model", "prompt_tokens": 1000, "completion_tokens": 1000}');
SQL
check "before the jobs run: the reply is in the ledger, no alert" \
    "$(q -d postgres -c "SELECT concat_ws(' ', (SELECT count(*) FROM billing.usage_ledger), (SELECT count(*) FROM billing.alerts))")" \
    '1 0'

echo "waiting for pg_cron's merge job (at most 150 s)"
started=$SECONDS state=
while ((SECONDS - started < 150)); do
    state=$(q -d postgres -c "
        SELECT (SELECT count(*) FROM cron.job_run_details AS d JOIN cron.job AS j USING (jobid)
                 WHERE j.jobname = 'billing-merge:postgres' AND d.status = 'succeeded') > 0
               AND NOT EXISTS (SELECT 1 FROM billing.usage_ledger)
               AND (SELECT count(*) FROM billing.alerts) = 2")
    [[ $state == t ]] && break
    sleep 2
done
echo "(waited $((SECONDS - started)) s)"
check "the merge job ran and succeeded, the ledger is merged, the alerts fired" "$state" t
check "the alerts: 50 % and 100 % of cron-test at 2.00 USD spent" \
    "$(q -d postgres -c "SELECT string_agg(budget || ' ' || threshold || ' ' || spent::numeric(10, 2), ', ' ORDER BY threshold) FROM billing.alerts")" \
    'cron-test 50 2.00, cron-test 100 2.00'
# (pg_cron's launcher writes a run's start_time when it sees the run
# started; on a loaded machine the job's own statement can begin first:
# seconds of slack)
check "merge_status: the last merge is a run of the merge job, nothing waits" \
    "$(q -d postgres -c "SELECT (s.last_merge_at BETWEEN (SELECT min(d.start_time) FROM cron.job_run_details AS d
                                                             JOIN cron.job AS j USING (jobid)
                                                            WHERE j.jobname = 'billing-merge:postgres')
                                                          - interval '10 seconds'
                                                     AND now())
                                || ' ' || s.unmerged_writes
                           FROM billing.merge_status AS s")" \
    'true 0'
check "the merged month shows the reply's cost" \
    "$(q -d postgres -c "SELECT ((billing.dashboard(1, 0)) -> 'openai' ->> 'cost')::numeric(10, 2)")" \
    '2.00'
q -d postgres -c "SELECT jobname, status, return_message FROM cron.job_run_details JOIN cron.job USING (jobid) ORDER BY runid" |
    sed 's/^/    run: /'

# The statements job's command, as pg_cron runs it (from cron.job).
statements_job() { q -d postgres -c "SELECT command FROM cron.job WHERE jobname = 'billing-statements:postgres'" | q -d postgres; }
statements_job
check "the statements job with no customer known: nothing issued" \
    "$(q -d postgres -c 'SELECT count(*) FROM billing.issued_months')" 0
q -d postgres -c "SELECT billing.record_customer_usage('acme', 'ses', 1000,
                    billing.month_start(billing.month_of(now())) - interval '10 days')" >/dev/null
statements_job
statements_job
check "then the month before is issued, once: acme 1000 x 0.0001 = 0.10" \
    "$(q -d postgres -c "SELECT string_agg(i.month || ' ' || s.customer || ' ' || s.total::numeric(10, 2), ', ')
                           FROM billing.issued_months AS i JOIN billing.statements AS s USING (month)")" \
    "$(date -u -d "$(q -d postgres -c 'SELECT billing.month_of(now())') -1 month" +%Y-%m-%d) acme 0.10"

check "unschedule_maintenance() removes the four jobs" "$(q -d postgres -c 'SELECT billing.unschedule_maintenance()')" 4
check "and then none is left" \
    "$(q -d postgres -c "SELECT count(*) FROM cron.job WHERE jobname LIKE 'billing-%'"; q -d postgres -c 'SELECT billing.unschedule_maintenance()')" \
    $'0\n0'

# Another database: pg_cron's jobs live in cron.database_name.
q -d postgres -c 'CREATE DATABASE other' >/dev/null
q -d other -c 'SET client_min_messages = warning; CREATE EXTENSION billing' >/dev/null
check "from another database: an error naming cron.database_name" \
    "$(err -d other -c 'SELECT * FROM billing.schedule_maintenance()')" \
    'billing: pg_cron runs in database "postgres" (cron.database_name), not in "other"'
cluster_stop

# A cluster without pg_cron preloaded (the later line wins).
cluster_start "shared_preload_libraries = ''" >/dev/null
q -d postgres -c 'SET client_min_messages = warning; CREATE EXTENSION billing' >/dev/null
check "without pg_cron: an error that says so" \
    "$(err -d postgres -c 'SELECT * FROM billing.schedule_maintenance()')" \
    'billing: pg_cron is not installed, so billing cannot schedule its periodic work'
check "maintenance_jobs() lists the jobs all the same" \
    "$(q -d postgres -c 'SELECT count(*) FROM billing.maintenance_jobs()')" 4

exit "$fail"
