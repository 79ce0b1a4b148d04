#!/usr/bin/env bash
# Make sure a Docker engine answers. If none does: install Debian's docker.io when dockerd is missing,
# start dockerd in the background with its log in a file, and wait for it. Safe to re-run.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

log=${FETCHML_DOCKERD_LOG:-/var/log/fetchml-dockerd.log}
if docker info >/dev/null 2>&1; then
  say "Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  exit 0
fi
if ! command -v dockerd >/dev/null; then
  [[ $(id -u) == 0 ]] || die "no dockerd and not root: install docker.io (or start your Docker engine) and re-run"
  say "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi
command -v docker >/dev/null || die "dockerd is installed but the docker client is not on PATH"
[[ $(id -u) == 0 ]] || die "no Docker engine answers and starting dockerd needs root"
say "starting dockerd (log: $log)"
# No iptables here: containers publish ports through docker-proxy on 127.0.0.1 only.
nohup dockerd --iptables=false --ip6tables=false >>"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    say "Docker engine answers ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 1
done
tail -20 "$log" >&2 || true
die "dockerd did not answer within 60 s; its log is $log"
