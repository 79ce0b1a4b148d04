# Shared helpers for the bootstrap scripts (sourced, not run).
say() { printf '\033[1m[%s]\033[0m %s\n' "${0##*/}" "$*"; }
die() { printf '[%s] error: %s\n' "${0##*/}" "$*" >&2; exit 1; }
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=toolchain.env
. "$REPO/scripts/toolchain.env"
# Value of one versioned toolchain directory (pulumi | docker), from fetchml_infra/offline.py.
toolchain_dir() { "$REPO/.venv/bin/python" -m fetchml_infra.offline --dirs | sed -n "s/^$1=//p"; }
