#!/usr/bin/env bash
# A self-test of bench/lib.sh's statistics and formatting: one "ok" or
# "FAIL" line per check; exit status 1 when a check failed. Needs no
# cluster.
#
#   bash bench/lib_test.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

tmp=$(mktemp -d "${TMPDIR:-/tmp}/billing-lib-test.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

failed=0
# check WHAT EXPECTED ACTUAL
check() {
    if [[ $2 == "$3" ]]; then
        echo "ok   $1"
    else
        echo "FAIL $1: expected '$2', got '$3'"
        failed=1
    fi
}

# Samples as the scripts write them: tab-separated, keys first.
printf '%s\n' 4 1 3 2 >"$tmp/four"
printf '%s\n' 10 50 20 40 30 >"$tmp/five"
printf 'a\t1\t5\nb\t1\t100\na\t1\t7\na\t2\t1000\na\t1\t6\n' >"$tmp/keyed"
printf '9.5\n10.25\n' >"$tmp/two"

check "median of 1,2,3,4 is 2.5 (the mean of the two middle values)" \
    "2.5 1.0 4.0" "$(sample_stats 1 1 "$tmp/four")"
check "median of 5 values is the middle one" \
    "30 10 50" "$(sample_stats 0 1 "$tmp/five")"
check "values sorted as numbers, not as text (10 > 9.5)" \
    "9.875 9.500 10.250" "$(sample_stats 3 1 "$tmp/two")"
check "only the lines whose first fields equal the keys" \
    "6.0 5.0 7.0" "$(sample_stats 1 3 "$tmp/keyed" a 1)"
check "one key" \
    "6.5 5.0 1000.0" "$(sample_stats 1 3 "$tmp/keyed" a)"
if sample_stats 1 3 "$tmp/keyed" c >"$tmp/none" 2>&1; then
    check "no matching line fails" "failure" "success: $(cat "$tmp/none")"
else
    check "no matching line fails, printing nothing" "" "$(cat "$tmp/none")"
fi

check "ratio: two decimals" "0.87" "$(ratio 319.3 368.4)"
check "ratio x: two decimals below 10" "3.23×" "$(ratio 14.2 4.4 x)"
check "ratio x: no decimals from 10 up" "419×" "$(ratio 1842.8 4.4 x)"
check "ratio %: a percentage" "83%" "$(ratio 3071 3679 %)"

check "md_row: cells, an empty one kept" "| a | 1.0 |  | b c |" "$(md_row a 1.0 "" "b c")"
check "md_row: separator row" "| --- | ---: |" "$(md_row --- ---:)"

exit $failed
