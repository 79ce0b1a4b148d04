# Source this file (`. scripts/env.sh`) to get the offline Pulumi environment in a shell.
# The settings themselves live in fetchml_infra/offline.py, the one place scripts, tests and the CLI share.
_fetchml_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ! -x "$_fetchml_repo/.venv/bin/python" ]]; then
  echo "scripts/env.sh: no virtualenv at $_fetchml_repo/.venv; run scripts/bootstrap first" >&2
  return 1 2>/dev/null || exit 1
fi
eval "$("$_fetchml_repo/.venv/bin/python" -m fetchml_infra.offline --interactive)"
unset _fetchml_repo
