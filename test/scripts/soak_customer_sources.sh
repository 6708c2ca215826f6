#!/usr/bin/env bash
# The soak (test/scripts/soak.sh) and the crash test (crash.sh) with the
# customers named by the messages themselves: a column of the messages,
# then a member of their data (billing.track_message_customers), the load
# changing which customer each message names. Every customer's costs, its
# dashboard's by_model and its statements must equal the recomputation
# (the customer of a conversation's latest message that names one).
#
#   test/scripts/soak_customer_sources.sh
#
# Environment: SOAK_SECONDS (30 per source here), SOAK_CLIENTS (4), and
# those of soak.sh and crash.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
rc=0
for source in column member; do
    echo "==> soak, customers from the messages' $source"
    SOAK_CUSTOMER_SOURCE=$source SOAK_SECONDS=${SOAK_SECONDS:-30} SOAK_CLIENTS=${SOAK_CLIENTS:-4} \
        bash ./soak.sh || rc=1
done
echo "==> crash, customers from a member of the messages' data"
SOAK_CUSTOMER_SOURCE=member bash ./crash.sh || rc=1
exit "$rc"
