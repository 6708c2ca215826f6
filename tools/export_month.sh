#!/usr/bin/env bash
# Writes a month's CSV files: its statements, their lines, and its costs by
# customer per month and per day.
#
#   bash tools/export_month.sh 2026-10 [directory]      (PG* variables name the database)
#
# Files: statements-2026-10.csv, statement-lines-2026-10.csv,
# costs-2026-10.csv (per customer), costs-by-day-2026-10.csv. Amounts are
# written as PostgreSQL's numeric text: exact, every decimal kept.
set -euo pipefail
month=${1:?usage: export_month.sh YYYY-MM [directory]}
dir=${2:-.}
if [[ ! $month =~ ^[0-9]{4}-[0-9]{2}$ ]]; then
    echo "export_month.sh: the month is YYYY-MM, got '$month'" >&2; exit 2
fi
mkdir -p "$dir"
first="$month-01"
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
range="billing.month_start('$first'), billing.month_end('$first')"
q -c "\\copy (SELECT * FROM billing.export_statements('$first')) TO '$dir/statements-$month.csv' WITH (FORMAT csv, HEADER)"
q -c "\\copy (SELECT * FROM billing.export_statement_lines('$first')) TO '$dir/statement-lines-$month.csv' WITH (FORMAT csv, HEADER)"
q -c "\\copy (SELECT * FROM billing.export_costs($range, 'month')) TO '$dir/costs-$month.csv' WITH (FORMAT csv, HEADER)"
q -c "\\copy (SELECT * FROM billing.export_costs($range, 'day')) TO '$dir/costs-by-day-$month.csv' WITH (FORMAT csv, HEADER)"
for f in statements statement-lines costs costs-by-day; do
    echo "$dir/$f-$month.csv: $(($(wc -l < "$dir/$f-$month.csv") - 1)) rows"
done
