#!/usr/bin/env bash
# The "ops" S3 endpoint that stands for the off-host store on this machine: a second MinIO server, not the app's,
# with its own data directory and port, on loopback only. It holds the shared Pulumi state (bucket fetchml-state)
# and the write-once audit sink (bucket fetchml-audit, created with Object Lock).
#
#   scripts/ops-store.sh up      start it (once; a second call checks it answers), create the buckets
#   scripts/ops-store.sh down    stop it (its data stays)
#   scripts/ops-store.sh env     print the file to point a shell at it:  export FETCHML_OPS_ENV=<that file>
#
# FETCHML_OPS_DIR (default ~/.cache/fetchml-infra/ops-store) and FETCHML_OPS_PORT (default 9190) move it.
# The server is the MinIO binary scripts/images.sh builds from its Go module.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/scripts/images.env"
cache=${FETCHML_CACHE:-$HOME/.cache/fetchml-infra}
dir=${FETCHML_OPS_DIR:-$cache/ops-store}
port=${FETCHML_OPS_PORT:-9190}
minio=$cache/toolchain/minio-$MINIO_VERSION/minio
say() { printf '\033[1m[ops-store]\033[0m %s\n' "$*"; }
live() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/minio/health/live" 2>/dev/null; }

case ${1:-} in
up)
  [[ -x $minio ]] || { echo "[ops-store] error: no MinIO binary at $minio; run scripts/images.sh first" >&2; exit 1; }
  mkdir -p "$dir/data"
  chmod 700 "$dir"
  if [[ ! -s $dir/ops.env ]]; then
    (
      umask 077
      secret=$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | cut -c1-32)
      printf '%s\n' "# the ops S3 endpoint of scripts/ops-store.sh: export FETCHML_OPS_ENV=$dir/ops.env" \
        "FETCHML_OPS_S3=http://127.0.0.1:$port" "AWS_ACCESS_KEY_ID=fetchml-ops" "AWS_SECRET_ACCESS_KEY=$secret" \
        "AWS_REGION=us-east-1" >"$dir/ops.env"
    )
  fi
  if live; then
    say "answering on 127.0.0.1:$port"
  else
    if ss -Hltn "sport = :$port" | grep -q .; then
      echo "[ops-store] error: port $port is held by another process (ss -ltnp 'sport = :$port'); set FETCHML_OPS_PORT" >&2
      exit 1
    fi
    user=$(sed -n 's/^AWS_ACCESS_KEY_ID=//p' "$dir/ops.env") pass=$(sed -n 's/^AWS_SECRET_ACCESS_KEY=//p' "$dir/ops.env")
    MINIO_ROOT_USER=$user MINIO_ROOT_PASSWORD=$pass MINIO_UPDATE=off MINIO_BROWSER=off \
      setsid "$minio" server --quiet --address "127.0.0.1:$port" --console-address "127.0.0.1:$((port + 1))" \
      "$dir/data" >>"$dir/server.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    for _ in $(seq 100); do live && break; sleep 0.1; done
    live || { echo "[ops-store] error: MinIO did not answer on 127.0.0.1:$port; see $dir/server.log" >&2; exit 1; }
    say "started MinIO on 127.0.0.1:$port (data in $dir/data, pid $(cat "$dir/pid"))"
  fi
  FETCHML_OPS_ENV=$dir/ops.env "$repo/.venv/bin/python" -m fetchml_infra.ops_store
  ;;
down)
  if [[ -s $dir/pid ]] && kill "$(cat "$dir/pid")" 2>/dev/null; then
    for _ in $(seq 50); do live || break; sleep 0.1; done
    say "stopped (data kept in $dir/data)"
  else
    say "not running"
  fi
  rm -f "$dir/pid"
  ;;
env) echo "$dir/ops.env" ;;
*)
  echo "usage: scripts/ops-store.sh up|down|env" >&2
  exit 2
  ;;
esac
