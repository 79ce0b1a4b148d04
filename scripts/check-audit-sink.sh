#!/usr/bin/env bash
# The runbook's "audit sink verification": compare a stack's local audit chain, its write-once sink and its
# stack outputs, and name every finding with its index.
#   scripts/check-audit-sink.sh --stack prod
# Exit 0 all agree; 1 findings (one line each: KIND, stack, index, detail); 2 the sink could not be checked.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/scripts/env.sh" 2>/dev/null
exec "$repo/.venv/bin/fetchml-infra" audit check-sink "$@"
