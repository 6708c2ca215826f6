#!/usr/bin/env bash
# Backtest of billing.forecast() (README "Forecast") on the bench's
# generated messages (bench/generate.sql, tracked): for each past complete
# month of the data, the forecast made on day 5, 10, 15 and 20 (p_at = the
# month's start + that many days: only usage before p_at counts) against
# the month's actual total (billing.monthly_history). Methods compared, all
# from the same two figures billing.forecast() returns (spent before p_at,
# the past months' daily average):
#   - run rate (the baseline; billing.forecast's without history): spent x
#     days / elapsed days;
#   - past daily average only: past daily x days (ignores the month so far);
#   - rate blend (billing.forecast's method, and budget_status's): spent +
#     remaining days x (f x spent / elapsed + (1 - f) x past daily), f the
#     elapsed fraction of the month; the run rate where there is no history;
#   - month so far + past daily average (billing.forecast's method before
#     the rate blend): spent + remaining days x past daily.
# The error is the mean absolute percentage error, |forecast - actual| /
# actual, over the months, per day and method; the report also lists every
# month's figures.
#
#   bench/forecast_backtest.sh [--messages N] [--no-setup]
#   bench/forecast_backtest.sh --existing    (the cluster of the caller's PG* variables, data already there)
#
# Default 1,000,000 messages. Without --existing it runs tools/setup.sh
# (not with --no-setup), starts a throwaway cluster with the bench's
# settings (tools/cluster.sh honours PG_BINDIR), generates the messages and
# tracks them. The report is saved in bench/results/forecast-<time>-<messages>.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

messages=1000000
setup=1
existing=0
usage() { sed -n '21,22s/^# \{0,1\}//p' "$0"; }
while (($#)); do
    case $1 in
        --messages) messages=${2:-}; shift ;;
        --no-setup) setup=0 ;;
        --existing) existing=1 setup=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "forecast_backtest.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $messages =~ ^[1-9][0-9]*$ ]] || { echo "forecast_backtest.sh: --messages takes a positive integer, got '$messages'" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-forecast.XXXXXX")
cleanup() {
    ((existing)) || cluster_stop
    rm -rf -- "$tmp"
}
# shellcheck source=tools/cluster.sh
. tools/cluster.sh
trap cleanup EXIT

if ((setup)); then
    log "tools/setup.sh"
    bash tools/setup.sh >&2
fi
load_before=$(load_average)
if ((existing)); then
    : "${PGHOST:?--existing: set PGHOST (and PGPORT) to the cluster to use}"
    messages=$(pg -At -c 'SELECT count(*) FROM messages')
else
    start_cluster_with_tracked_messages "$messages"
fi

log "forecasting each complete month on days 5, 10, 15, 20"
# One row per month, day and source: month, day, source, actual, spent,
# past daily, past months, days, forecast (billing.forecast), timing (ms).
pg -At -F $'\t' >"$tmp/rows.tsv" <<'SQL'
SET timezone = 'UTC';
CREATE TEMP TABLE actual AS SELECT month, source, cost FROM billing.monthly_history;
-- The complete months: after the first month with usage, before the current one.
CREATE TEMP TABLE months AS
SELECT m::date AS month FROM generate_series((SELECT min(month) FROM actual) + interval '1 month',
                                             billing.month_of(now()) - interval '1 month', interval '1 month') AS m;
SELECT to_char(m.month, 'YYYY-MM'), d.day, f.source,
       coalesce(CASE WHEN f.source = 'total' THEN (SELECT sum(a.cost) FROM actual AS a WHERE a.month = m.month)
                     ELSE (SELECT a.cost FROM actual AS a WHERE a.month = m.month AND a.source = f.source) END, 0),
       f.spent, coalesce(f.past_daily::text, ''), f.past_months,
       extract(epoch FROM billing.month_end(m.month) - billing.month_start(m.month)) / 86400, f.forecast
  FROM months AS m
 CROSS JOIN (VALUES (5), (10), (15), (20)) AS d(day)
 CROSS JOIN LATERAL billing.forecast(billing.month_start(m.month) + d.day * interval '1 day') AS f
 ORDER BY 1, 2, f.source;
SQL
# Timing: one forecast as of now (the current month's partial read).
now_ms=$(printf '\\timing on\nSELECT * FROM billing.forecast();\nSELECT * FROM billing.forecast();\nSELECT * FROM billing.forecast();\n' |
    psql_times | sort -g | sed -n 2p)
load_after=$(load_average)

# The methods, per row: awk prints "source day method ape" lines and the table.
awk -F '\t' -v OFS='\t' '
    {
        month = $1; day = $2; src = $3; actual = $4; spent = $5; daily = $6; n = $7; days = $8; fc = $9
        if (actual <= 0) next
        f = day / days
        rr = spent * days / (day < 1 ? 1 : day)
        if (n > 0) { hist = daily * days; blend = spent + (days - day) * (f * spent / day + (1 - f) * daily); mine = spent + (days - day) * daily }
        else { hist = rr; blend = rr; mine = rr }
        printf "%s\t%d\trun rate\t%.6f\n", src, day, (rr - actual) / actual
        printf "%s\t%d\tpast daily average only\t%.6f\n", src, day, (hist - actual) / actual
        printf "%s\t%d\trate blend\t%.6f\n", src, day, (blend - actual) / actual
        printf "%s\t%d\tmonth so far + past daily average\t%.6f\n", src, day, (mine - actual) / actual
        printf "%s\t%d\tbilling.forecast() itself\t%.6f\n", src, day, (fc - actual) / actual
    }' "$tmp/rows.tsv" >"$tmp/errors.tsv"

mape() { # SOURCE DAY METHOD: mean |error| in percent, and the worst
    awk -F '\t' -v s="$1" -v d="$2" -v m="$3" '
        $1 == s && $2 == d && $3 == m { e = $4 < 0 ? -$4 : $4; t += e; n++; if (e > w) w = e }
        END { if (n) printf "%.1f%% (worst %.1f%%)", 100 * t / n, 100 * w; else printf "n/a" }' "$tmp/errors.tsv"
}
nmonths=$(awk -F '\t' '$3 == "total" && $2 == 5' "$tmp/rows.tsv" | wc -l)
nhist=$(awk -F '\t' '$3 == "total" && $2 == 5 && $7 > 0' "$tmp/rows.tsv" | wc -l)
has_aws=$(awk -F '\t' '$3 == "aws" && $4 > 0' "$tmp/rows.tsv" | wc -l)
methods=("run rate" "past daily average only" "rate blend" "month so far + past daily average")

report="$tmp/report.md"
{
    echo "# Forecast backtest, $messages messages"
    echo
    echo "- made: $(utc_time), by \`bash bench/forecast_backtest.sh --messages $messages\`"
    echo "- server: $(server_version); billing $(billing_version)"
    machine_line "$load_before" "$load_after"
    echo "- data: bench/generate.sql, $messages messages over the 12 months before the run; $nmonths complete months" \
         "backtested ($nhist with history: the first complete month has none, the data's first month being partial)"
    echo "- forecast on day D: \`billing.forecast(month start + D days)\`; error: |forecast - actual month total| / actual," \
         "mean over the months (and the worst month)"
    echo "- \`billing.forecast()\` as of now (the current month read from the table up to now): ${now_ms} ms (median of 3)"
    ((has_aws)) || echo "- AWS: the generated data records no AWS usage (every month \$0): only the total (= OpenAI) is scored"
    echo
    echo "## Total, mean absolute percentage error"
    echo
    md_row "method" "day 5" "day 10" "day 15" "day 20"
    md_row "---" "---:" "---:" "---:" "---:"
    for m in "${methods[@]}"; do
        md_row "$m" "$(mape total 5 "$m")" "$(mape total 10 "$m")" "$(mape total 15 "$m")" "$(mape total 20 "$m")"
    done
    echo
    echo "\"rate blend\" is billing.forecast()'s method; its errors computed from the function's own" \
         "forecast column: day 5 $(mape total 5 'billing.forecast() itself'), day 20 $(mape total 20 'billing.forecast() itself')."
    echo
    echo "## Every month (total)"
    echo
    md_row "month" "day" "actual" "spent" "past daily" "run rate" "billing.forecast()"
    md_row "---" "---:" "---:" "---:" "---:" "---:" "---:"
    awk -F '\t' '$3 == "total" {
        rr = $5 * $8 / $2
        printf "| %s | %d | %.2f | %.2f | %s | %.2f | %.2f |\n", $1, $2, $4, $5, ($7 > 0 ? sprintf("%.4f", $6) : "-"), rr, $9
    }' "$tmp/rows.tsv"
} >"$report"
save_report "$report" "bench/results/forecast-$(utc_stamp)-$messages.md"
