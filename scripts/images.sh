#!/usr/bin/env bash
# Build the container images the stack runs, locally (no registry is reachable here), from
# scripts/images.env:
#   - ghcr.io/jfraeysd/fetchml-{api,worker}:TAG  stand-ins (images/standin, one static Go binary), each with
#     the schema versions it runs on in labels org.fetchml.schema.{target,min,max};
#   - $REDIS_IMAGE  redis-server from Debian's package plus the shared libraries it links;
#   - $POSTGRES_IMAGE  PostgreSQL 15 from Debian's package, the same way (scripts/images-postgres.sh);
#   - $MINIO_IMAGE  the MinIO server built from its Go module (binary cached per machine);
#   - $PROXY_IMAGE  the front proxy, Caddy built from its Go module (scripts/images-proxy.sh);
#   - $PROBE_IMAGE  the stand-in binary alone, running `standin probe`, built with the stand-ins (scripts/images-probe.sh).
# Every image is a `docker import` of a root-filesystem tarball, configured with --change.
# Idempotent: each image carries a label fetchml-infra.build-key, a hash of its inputs (sources,
# versions, this script); an image whose tag exists with the same key is skipped. A freshly built
# image is smoke-tested before the script ends (--verify smoke-tests all of them).
#
# usage: scripts/images.sh [--verify] [--only=redis,postgres,standin,minio,proxy] [TAG[:MODE[:TARGET/MIN-MAX]] ...]
#   extra TAGs are built as stand-ins too, e.g. sha-abcdef0:broken or sha-abcdef0:healthy:3/1-3;
#   MODE is healthy (the default), broken, noncompliant or crash; TARGET/MIN-MAX (default 1/0-2) is the schema
#   version the api migrates the database to and the range the image runs on (MIN <= TARGET <= MAX);
#   --only builds (and checks) just the named kinds; --verify smoke-tests existing images too.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# shellcheck source=images.env
. "$REPO/scripts/images.env"

usage() { sed -n '/^# usage:/,/^[^#]/s/^# //p' "$0"; exit "${1:-0}"; }
verify_all=0 only=redis,postgres,standin,minio,proxy
declare -a extra=()
for a in "$@"; do
  case $a in
    --verify) verify_all=1 ;;
    --only=*) only=${a#--only=} ;;
    -h | --help) usage 0 ;;
    -*) usage 2 >&2 ;;
    *) extra+=("$a") ;;
  esac
done

# Stand-in tags, TAG[:MODE[:TARGET/MIN-MAX]]: images.env's, then the command line's (a later one wins).
# The target can be no higher than the last migration in images/standin/migrations (NNNN_name.sql).
st_last=$(find "$REPO/images/standin/migrations" -name '[0-9][0-9][0-9][0-9]_*.sql' -printf '%f\n' | cut -c1-4 | sort -n | tail -1)
st_last=$((10#${st_last:-0}))
declare -a st_tags=()
declare -A st_mode=() st_schema=() # st_schema[TAG]="TARGET MIN MAX"
IFS=, read -ra spec <<<"$STANDIN_TAGS"
for s in "${spec[@]}" ${extra[@]+"${extra[@]}"}; do
  t=${s%%:*} m=healthy sch=1/0-2
  [[ $s == *:* ]] && m=${s#*:}
  [[ $m == *:* ]] && sch=${m#*:} m=${m%%:*}
  [[ $t =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "bad image tag '$t' (in '$s')"
  [[ $m =~ ^(healthy|broken|noncompliant|crash)$ ]] || die "bad mode '$m' for tag $t: want healthy, broken, noncompliant or crash"
  [[ $sch =~ ^([0-9]{1,4})/([0-9]{1,4})-([0-9]{1,4})$ ]] ||
    die "bad schema '$sch' for tag $t: want TARGET/MIN-MAX, schema version numbers, e.g. 2/0-2"
  st_target=$((10#${BASH_REMATCH[1]})) st_min=$((10#${BASH_REMATCH[2]})) st_max=$((10#${BASH_REMATCH[3]}))
  ((st_min <= st_target && st_target <= st_max)) ||
    die "bad schema '$sch' for tag $t: want MIN <= TARGET <= MAX (an image runs on the schema it migrates to)"
  ((st_target <= st_last)) || die "bad schema '$sch' for tag $t: the migrations in images/standin/migrations end at $st_last"
  [[ -n ${st_mode[$t]:-} ]] || st_tags+=("$t")
  st_mode[$t]=$m st_schema[$t]="$st_target $st_min $st_max"
done
[[ $only =~ ^(redis|postgres|standin|minio|proxy)(,(redis|postgres|standin|minio|proxy))*$ ]] ||
  die "bad --only=$only: want a comma-separated list of redis, postgres, standin, minio, proxy"

cache=${FETCHML_CACHE:-$HOME/.cache/fetchml-infra}
LABEL=fetchml-infra.build-key
[[ :$PATH: == *:/usr/local/go/bin:* ]] || PATH=$PATH:/usr/local/go/bin
docker info >/dev/null 2>&1 || "$REPO/scripts/docker-engine.sh"

want() { [[ ,$only, == *,$1,* ]]; }
hash12() { sha256sum | cut -c1-12; }
# root_user ROOT HOME PROGRAM: the image's only user, root, as /etc/passwd and /etc/group say it.
root_user() {
  printf 'root:x:0:0:root:%s:%s\n' "$2" "$3" >"$1/etc/passwd"
  printf 'root:x:0:\n' >"$1/etc/group"
}
# go_binary PATH PACKAGE@VERSION LDFLAGS WHAT COLD: `go install` PACKAGE@VERSION to PATH, built in a scratch
# directory beside it and moved into place only when the build succeeded (a cut-off build leaves nothing).
go_binary() {
  local path=$1 pkg=$2 ldflags=$3 what=$4 cold=$5 tmp t0=$SECONDS
  tmp=$(dirname "$path").tmp
  say "building $what $pkg (CGO_ENABLED=0, nice; cold, modules included: $cold on 2 cores)"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  (cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-buildvcs=false \
    nice -n 10 go install -trimpath -ldflags "$ldflags" "$pkg") ||
    die "building $pkg failed (see the go output above)"
  mkdir -p "$(dirname "$path")"
  mv "$tmp/$(basename "${pkg%@*}")" "$path"
  rm -rf "$tmp"
  say "built $what in $((SECONDS - t0)) s: $path"
}
recipe=$(hash12 <"$REPO/scripts/images.sh") # any change to how images are made rebuilds them all

# Scratch space and test containers, removed on any exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/fetchml-images.XXXXXX")
vprefix=fetchml-images-verify-$$
declare -a cleanup_containers=() cleanup_volumes=() cleanup_networks=()
cleanup() {
  local c
  for c in "${cleanup_containers[@]}"; do docker rm -f -v "$c" >/dev/null 2>&1 || true; done
  for c in "${cleanup_volumes[@]}"; do docker volume rm -f "$c" >/dev/null 2>&1 || true; done
  for c in "${cleanup_networks[@]}"; do docker network rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Label value of an image, or nothing if the image does not exist.
build_key() { docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }

# import_image NAME ROOTFS_DIR KEY --change... : tarball of ROOTFS_DIR (root-owned) imported as NAME.
# The image it replaces, if any and now untagged, is removed.
import_image() {
  local name=$1 root=$2 key=$3 old tarball
  shift 3
  local -a args=(--change "LABEL $LABEL=$key" --message "built by fetchml-infra scripts/images.sh") late=()
  local c
  for c in "$@"; do
    if [[ $c == STOPSIGNAL* ]]; then late+=("$c"); else args+=(--change "$c"); fi
  done
  tarball=$work/$(basename "$root").tar
  [[ -f $tarball ]] || tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$tarball" .
  old=$(docker image inspect -f '{{.Id}}' "$name" 2>/dev/null || true)
  docker import "${args[@]}" "$tarball" "$name" >/dev/null
  if ((${#late[@]})); then # `docker import --change` refuses STOPSIGNAL: set on top, a build with no layer
    c=$(printf 'FROM %s\n%s\n' "$name" "$(printf '%s\n' "${late[@]}")" | DOCKER_BUILDKIT=0 docker build -q -t "$name" - 2>&1) ||
      die "setting ${late[*]} on $name failed: $c"
  fi
  if [[ -n $old && $old != $(docker image inspect -f '{{.Id}}' "$name") ]]; then
    [[ -n $(docker image inspect -f '{{.RepoTags}}' "$old" 2>/dev/null | tr -d '[]') ]] ||
      docker rmi "$old" >/dev/null 2>&1 || true
  fi
}

# upload CONTAINER PATH CONTENT: a root-only file written into a created container, as the stack's Pulumi
# program does it (a tar stream extracted at /, so missing directories are made).
upload() {
  local d
  d=$(mktemp -d "$work/upload.XXXXXX")
  mkdir -p "$d$(dirname "$2")"
  (umask 077 && printf '%s' "$3" >"$d$2")
  tar --numeric-owner --owner=0 --group=0 -C "$d" -cf - "${2#/}" | docker cp - "$1:/"
  rm -rf "$d"
}
# pg_start NAME VOLUME NETWORK PASSWORD [docker-create args...]: a $POSTGRES_IMAGE container on VOLUME, its
# password uploaded as POSTGRES_PASSWORD_FILE the way the stack does it.
pg_start() {
  local c=$1 vol=$2 net=$3 pw=$4
  shift 4
  cleanup_containers+=("$c")
  docker create --name "$c" --network "$net" -v "$vol:/var/lib/postgresql/data" \
    -e POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password "$@" "$POSTGRES_IMAGE" >/dev/null
  upload "$c" /run/secrets/postgres-password "$pw"
  docker start "$c" >/dev/null
}
# pg_query CONTAINER SQL: one query's output, by docker exec as the CLI runs it (local trust, no password).
pg_query() { docker exec "$1" psql -X -v ON_ERROR_STOP=1 -U postgres -d fetchml -tAc "$2"; }
# wait_schema CONTAINER VERSION: the database's max(schema_migrations.version) reaches VERSION.
wait_schema() {
  local i v=
  for ((i = 0; i < 120; i++)); do
    v=$(pg_query "$1" 'select coalesce(max(version), 0) from schema_migrations' 2>/dev/null) && [[ $v == "$2" ]] && return 0
    sleep 0.25
  done
  say "  $1: schema ${v:-not readable}, not $2"
  return 1
}
# wait_log CONTAINER REGEX: a line of the container's log matches.
wait_log() {
  local i
  for ((i = 0; i < 120; i++)); do
    docker logs "$1" 2>&1 | grep -E "$2" >/dev/null && return 0 # not -q: under pipefail, an early exit fails docker logs
    sleep 0.25
  done
  say "  $1: no log line matching /$2/"
  return 1
}
# Host port that 127.0.0.1 publishes for CONTAINER's PORT/tcp.
host_port() { docker port "$1" "$2/tcp" | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -1; }
# wait_http URL CODE [SECONDS]: poll until GET URL answers CODE.
wait_http() {
  local i code=
  for ((i = 0; i < ${3:-20} * 4; i++)); do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true)
    [[ $code == "$2" ]] && return 0
    sleep 0.25
  done
  say "  $1 answered ${code:-nothing}, not $2"
  return 1
}
# json_field JSON KEY: value of a top-level key ("<absent>" when missing).
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], "<absent>"))' "$1" "$2"; }
# wait_healthy CONTAINER: Docker's own HEALTHCHECK reports healthy.
wait_healthy() {
  local i s=
  for ((i = 0; i < 60; i++)); do
    s=$(docker inspect -f '{{.State.Health.Status}}' "$1")
    [[ $s == healthy ]] && return 0
    sleep 0.5
  done
  say "  $1: Docker health status is ${s:-none}, not healthy"
  return 1
}

# The stand-in binary (images/standin) also serves other images as their HEALTHCHECK (no curl in them).
src=$REPO/images/standin
standin_key=$({ echo "$recipe"; cd "$src" && cat go.mod go.sum ./*.go && grep -H '' migrations/*.sql; } | hash12)
standin_bin() { # path of the freshly built binary, built on first use
  if [[ ! -x $work/bin/standin ]]; then
    say "building the stand-in binary (images/standin, CGO_ENABLED=0)" >&2
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false nice -n 10 go build -trimpath -ldflags '-s -w' -o "$work/bin/standin" .) >&2 ||
      die "go build of images/standin failed"
  fi
  echo "$work/bin/standin"
}

declare -a table=() # rows: image tag mode
declare -a failures=()
fail() { say "FAILED: $*"; failures+=("$*"); }

###############################################################################
# Redis: Debian's redis-server (and redis-cli, for a HEALTHCHECK) with the libraries they link.
###############################################################################
redis_name=${REDIS_IMAGE%:*} redis_tag=${REDIS_IMAGE##*:}
if want redis; then
if [[ ! -x /usr/sbin/redis-server && ! -x /usr/bin/redis-server ]] || ! command -v redis-cli >/dev/null; then
  say "installing Debian's redis-server (and redis-tools)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq redis-server redis-tools >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null; }
fi
redis_bin=$(readlink -f "$(command -v redis-server || echo /usr/bin/redis-server)")
redis_key=$({ echo "$recipe"; sha256sum "$redis_bin" "$(readlink -f "$(command -v redis-cli)")" | cut -d' ' -f1; } | hash12)
redis_built=0
if [[ $(build_key "$REDIS_IMAGE") == "$redis_key" ]]; then
  say "$REDIS_IMAGE is up to date ($LABEL=$redis_key)"
else
  t0=$SECONDS
  say "building $REDIS_IMAGE from $(dpkg-query -W -f '${Package} ${Version}' redis-server 2>/dev/null || echo "$redis_bin")"
  root=$work/redis-rootfs
  mkdir -p "$root"/{usr/bin,data,tmp,etc}
  chmod 1777 "$root/tmp"
  # The binary decides what it is from argv[0] (Debian's redis-server is a link to redis-check-rdb).
  cp -L "$redis_bin" "$root/usr/bin/redis-server"
  cp -L "$(command -v redis-cli)" "$root/usr/bin/redis-cli"
  for lib in $(ldd "$root/usr/bin/redis-server" "$root/usr/bin/redis-cli" | grep -v ":$" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  root_user "$root" /data /usr/bin/redis-server
  import_image "$REDIS_IMAGE" "$root" "$redis_key" \
    'CMD ["/usr/bin/redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", "--appendonly", "yes"]' \
    'WORKDIR /data' 'EXPOSE 6379/tcp' \
    'HEALTHCHECK --interval=3s --timeout=2s --start-period=3s --retries=3 CMD ["/usr/bin/redis-cli", "-p", "6379", "ping"]' \
    "LABEL org.opencontainers.image.version=$(dpkg-query -W -f '${Version}' redis-server 2>/dev/null || echo unknown)"
  say "built $REDIS_IMAGE in $((SECONDS - t0)) s"
  redis_built=1
fi
table+=("$redis_name $redis_tag - -")

verify_redis() {
  say "verifying $REDIS_IMAGE: PING/SET/GET with the host's redis-cli, data kept in the /data volume"
  local c=$vprefix-redis vol=$vprefix-redis-data port i v
  cleanup_volumes+=("$vol")
  docker volume create "$vol" >/dev/null
  for i in 1 2; do
    cleanup_containers+=("$c-$i")
    docker run -d --name "$c-$i" -p 127.0.0.1::6379 -v "$vol:/data" "$REDIS_IMAGE" >/dev/null
    port=$(host_port "$c-$i" 6379)
    for ((v = 0; v < 40; v++)); do
      [[ $(redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null) == PONG ]] && break
      sleep 0.25
    done
    [[ $(redis-cli -h 127.0.0.1 -p "$port" PING 2>&1) == PONG ]] || { fail "redis: no PONG on 127.0.0.1:$port"; return; }
    if [[ $i == 1 ]]; then
      [[ $(redis-cli -h 127.0.0.1 -p "$port" SET fetchml:verify "v-$$") == OK ]] || { fail "redis: SET"; return; }
    fi
    v=$(redis-cli -h 127.0.0.1 -p "$port" GET fetchml:verify)
    [[ $v == "v-$$" ]] || { fail "redis: GET in container $i returned '$v'"; return; }
    say "  container $i on 127.0.0.1:$port: PONG, GET fetchml:verify = $v"
    docker stop -t 5 "$c-$i" >/dev/null # SIGTERM: redis flushes its append-only file
  done
  docker run --rm -d --name "$c-3" "$REDIS_IMAGE" >/dev/null && cleanup_containers+=("$c-3")
  wait_healthy "$c-3" || fail "redis: HEALTHCHECK"
  for i in 1 2 3; do docker rm -f -v "$c-$i" >/dev/null 2>&1 || true; done
  docker volume rm -f "$vol" >/dev/null
  say "  ok: PING/SET/GET, the value survived a new container on the same /data volume, HEALTHCHECK healthy"
}
if ((redis_built || verify_all)); then verify_redis; fi
fi # want redis

###############################################################################
# PostgreSQL: Debian's postgresql-15, the same way (scripts/images-postgres.sh).
###############################################################################
# shellcheck source=images-postgres.sh
if want postgres; then . "$REPO/scripts/images-postgres.sh"; fi

###############################################################################
# Stand-ins for the FetchML API and worker.
###############################################################################
if want standin; then
standin_image_key() { printf '%s %s %s %s %s\n' "$standin_key" "$1" "$2" "$3" "${st_schema[$2]}" | hash12; } # role tag mode
st_spec() { local a b c; read -r a b c <<<"${st_schema[$1]}"; echo "$a/$b-$c"; } # TAG -> TARGET/MIN-MAX
declare -a st_todo=() st_built=()
for t in "${st_tags[@]}"; do
  for role in api worker; do
    repo=$API_IMAGE_REPO
    [[ $role == worker ]] && repo=$WORKER_IMAGE_REPO
    if [[ $(build_key "$repo:$t") == "$(standin_image_key "$role" "$t" "${st_mode[$t]}")" ]]; then
      say "$repo:$t (${st_mode[$t]}, schema $(st_spec "$t")) is up to date"
    else
      st_todo+=("$role $t")
    fi
    table+=("$repo $t ${st_mode[$t]} $(st_spec "$t")")
  done
done

if ((${#st_todo[@]})); then
  t0=$SECONDS
  root=$work/standin-rootfs
  mkdir -p "$root/tmp"
  chmod 1777 "$root/tmp"
  bin=$(standin_bin)
  cp "$bin" "$root/standin"
  for item in "${st_todo[@]}"; do
    read -r role t <<<"$item"
    m=${st_mode[$t]} repo=$API_IMAGE_REPO port=$STANDIN_API_PORT
    [[ $role == worker ]] && repo=$WORKER_IMAGE_REPO port=$STANDIN_WORKER_PORT
    read -r st_target st_min st_max <<<"${st_schema[$t]}"
    say "importing $repo:$t (mode $m, schema $(st_spec "$t"))"
    import_image "$repo:$t" "$root" "$(standin_image_key "$role" "$t" "$m")" \
      "ENV FETCHML_VERSION=$t" "ENV FETCHML_STANDIN_MODE=$m" \
      "ENV FETCHML_SCHEMA_TARGET=$st_target" "ENV FETCHML_SCHEMA_MAX=$st_max" "LABEL org.fetchml.schema.target=$st_target" \
      "LABEL org.fetchml.schema.min=$st_min" "LABEL org.fetchml.schema.max=$st_max" \
      "CMD [\"/standin\", \"$role\"]" "EXPOSE $port/tcp" \
      "HEALTHCHECK --interval=3s --timeout=2s --start-period=5s --retries=3 CMD [\"/standin\", \"healthcheck\", \"http://127.0.0.1:$port/health\"]" \
      "LABEL org.opencontainers.image.version=$t" "LABEL fetchml-infra.role=$role" "LABEL fetchml-infra.standin-mode=$m"
    st_built+=("$t")
  done
  say "built ${#st_todo[@]} stand-in image(s) in $((SECONDS - t0)) s"
fi

# st_api NAME NETWORK TAG PASSWORD [docker-create args...]: TAG's api on NETWORK, with Redis at redis:6379 and
# the database at postgres:5432, its password uploaded as the stack does it.
st_api() {
  local c=$1 net=$2 t=$3 pw=$4
  shift 4
  cleanup_containers+=("$c")
  docker create --name "$c" --network "$net" -e FETCHML_REDIS_ADDR=redis:6379 -e FETCHML_DATABASE_ADDR=postgres:5432 \
    -e FETCHML_DATABASE_PASSWORD_FILE=/run/secrets/fetchml-postgres "$@" "$API_IMAGE_REPO:$t" >/dev/null
  upload "$c" /run/secrets/fetchml-postgres "$pw"$'\n'
  docker start "$c" >/dev/null
}

# verify_standins TAG...: each tag's api and worker behave as their mode says, each tag against its own
# Redis and PostgreSQL containers on its own network (so no other worker can take its jobs); the api migrates
# the database to its target. Then verify_schema_forward, when TAG... has healthy targets 1 and 2.
verify_standins() {
  local t m a w r d net pa pw body job i role repo dbpw st_target st_min st_max t1='' t2='' t3=''
  say "verifying stand-ins: $*"
  dbpw=verify-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  for t; do
    m=${st_mode[$t]} a=$vprefix-api-$t w=$vprefix-worker-$t r=$vprefix-redis-$t d=$vprefix-pg-$t net=$vprefix-net-$t
    read -r st_target st_min st_max <<<"${st_schema[$t]}"
    if [[ $m == crash ]]; then
      for role in api worker; do
        repo=$API_IMAGE_REPO
        [[ $role == worker ]] && repo=$WORKER_IMAGE_REPO
        cleanup_containers+=("$vprefix-$role-$t")
        set +e
        body=$(timeout 30 docker run --rm --name "$vprefix-$role-$t" "$repo:$t" 2>&1)
        i=$?
        set -e
        if [[ $i == 1 ]]; then say "  $repo:$t exits 1 at once: $body"; else fail "$repo:$t (crash) exited $i: $body"; fi
      done
      continue
    fi
    cleanup_networks+=("$net")
    cleanup_containers+=("$w" "$r")
    cleanup_volumes+=("$d-data")
    docker network create "$net" >/dev/null
    docker run -d --name "$r" --network "$net" --network-alias redis "$REDIS_IMAGE" >/dev/null
    pg_start "$d" "$d-data" "$net" "$dbpw" --network-alias postgres
    for ((i = 0; i < 40; i++)); do [[ $(docker exec "$r" redis-cli PING 2>/dev/null) == PONG ]] && break; sleep 0.25; done
    st_api "$a" "$net" "$t" "$dbpw" -p "127.0.0.1::$STANDIN_API_PORT" -e FETCHML_COMPLIANCE_MODE=hipaa
    docker run -d --name "$w" --network "$net" -p "127.0.0.1::$STANDIN_WORKER_PORT" \
      -e FETCHML_REDIS_ADDR=redis:6379 "$WORKER_IMAGE_REPO:$t" >/dev/null
    pa=$(host_port "$a" "$STANDIN_API_PORT") pw=$(host_port "$w" "$STANDIN_WORKER_PORT")
    job=verify-$t-$$
    if [[ $m == broken ]]; then
      wait_http "http://127.0.0.1:$pa/health" 503 || fail "$API_IMAGE_REPO:$t (broken): /health not 503"
      wait_http "http://127.0.0.1:$pw/health" 503 || fail "$WORKER_IMAGE_REPO:$t (broken): /health not 503"
      body=$(curl -s "http://127.0.0.1:$pa/health")
      [[ $(json_field "$body" status) == starting ]] || fail "$API_IMAGE_REPO:$t (broken): body $body"
      docker exec "$r" redis-cli LPUSH fetchml:queue:pending "$job" >/dev/null
      sleep 2
      [[ $(docker exec "$r" redis-cli LLEN fetchml:queue:pending) == 1 &&
        $(docker inspect -f '{{.State.Running}}' "$a" "$w") == $'true\ntrue' ]] ||
        fail "$WORKER_IMAGE_REPO:$t (broken) took a job or died"
      wait_schema "$d" "$st_target" || fail "$API_IMAGE_REPO:$t (broken): did not migrate the database to $st_target"
      say "  $t (broken): api and worker keep running, /health 503 $body, the job stays pending; the api migrated to schema $st_target"
    else
      want_mode=hipaa
      [[ $m == noncompliant ]] && want_mode=none # it ignores FETCHML_COMPLIANCE_MODE=hipaa on purpose
      wait_http "http://127.0.0.1:$pa/health" 200 || fail "$API_IMAGE_REPO:$t: /health not 200"
      body=$(curl -s "http://127.0.0.1:$pa/health")
      [[ $(json_field "$body" status) == ok && $(json_field "$body" version) == "$t" &&
        $(json_field "$body" redis) == ok && $(json_field "$body" compliance_mode) == "$want_mode" ]] ||
        fail "$API_IMAGE_REPO:$t: /health body $body"
      wait_http "http://127.0.0.1:$pw/health" 200 || fail "$WORKER_IMAGE_REPO:$t: /health not 200"
      docker exec "$r" redis-cli LPUSH fetchml:queue:pending "$job" >/dev/null
      for ((i = 0; i < 40; i++)); do
        [[ $(docker exec "$r" redis-cli SISMEMBER fetchml:jobs:done "$job") == 1 ]] && break
        sleep 0.25
      done
      [[ $(docker exec "$r" redis-cli SISMEMBER fetchml:jobs:done "$job") == 1 &&
        $(docker exec "$r" redis-cli LLEN fetchml:queue:running) == 0 &&
        $(docker exec "$r" redis-cli LLEN fetchml:queue:pending) == 0 ]] ||
        fail "$WORKER_IMAGE_REPO:$t: job $job not recorded done"
      wait_healthy "$a" || fail "$API_IMAGE_REPO:$t: Docker HEALTHCHECK"
      wait_healthy "$w" || fail "$WORKER_IMAGE_REPO:$t: Docker HEALTHCHECK"
      say "  $t ($m): api /health 200 $body; worker took $job and recorded it done; both Docker-healthy"
      # The database: migrated to the image's target, and /health says so.
      wait_schema "$d" "$st_target" || fail "$API_IMAGE_REPO:$t: did not migrate the database to schema $st_target"
      body=$(curl -s "http://127.0.0.1:$pa/health")
      [[ $(json_field "$body" database) == ok && $(json_field "$body" schema) == "$st_target" &&
        $(json_field "$body" schema_max) == "$st_max" && $(json_field "$body" schema_compatible) == '<absent>' ]] ||
        fail "$API_IMAGE_REPO:$t: /health after migrating: $body"
      body="versions $(pg_query "$d" "select string_agg(version::text, ',' order by version) from schema_migrations"), /health $body"
      say "  $t: migrated to schema $st_target ($body)"
      [[ $m == healthy ]] && case $st_target in 1) t1=${t1:-$t} ;; 2) t2=${t2:-$t} ;; 3) t3=${t3:-$t} ;; esac
      # Redis and the database gone: the api still answers 200 with both unreachable, the worker 503.
      docker stop -t 2 "$r" "$d" >/dev/null
      wait_http "http://127.0.0.1:$pw/health" 503 10 || fail "$WORKER_IMAGE_REPO:$t: /health not 503 without Redis"
      body=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$pa/health" | tr -d '\n')
      [[ $body == *'"database":"unreachable"'*'"redis":"unreachable"'*' 200' ]] ||
        fail "$API_IMAGE_REPO:$t: without Redis and the database: $body"
      say "  $t without Redis and the database: worker /health 503, api /health $body"
    fi
    docker rm -f -v "$a" "$w" "$r" "$d" >/dev/null
    docker volume rm -f "$d-data" >/dev/null
    docker network rm "$net" >/dev/null
  done
  if [[ -n $t1 && -n $t2 ]]; then
    verify_schema_forward "$t2" "$t1" "$t3" "$dbpw"
  else
    say "  (migrations only forward: not checked, no healthy stand-ins with targets 1 and 2 among these tags)"
  fi
}

# verify_schema_forward T2 T1 T3 PASSWORD: on one database, two target-2 apis started side by side (a blue/green
# deploy) migrate it to 2 once; the target-1 api then leaves it at 2 (no down-migration). With T3 (target 3),
# that takes it to 3, and T1, if it runs on up to 2 only, still runs: it warns and says "schema_compatible": false.
verify_schema_forward() {
  local t2=$1 t1=$2 t3=$3 pw=$4 net=$vprefix-net-schema d=$vprefix-pg-schema a=$vprefix-api-schema body p max1 rows
  say "verifying that migrations only go forward: $t2 twice at once, then $t1${t3:+, then $t3 and $t1 again}"
  cleanup_networks+=("$net")
  cleanup_volumes+=("$d-data")
  docker network create "$net" >/dev/null
  st_api "$a-2a" "$net" "$t2" "$pw" # before the database: they keep trying
  st_api "$a-2b" "$net" "$t2" "$pw"
  pg_start "$d" "$d-data" "$net" "$pw" --network-alias postgres
  if ! wait_schema "$d" 2 || ! wait_log "$a-2a" 'database schema is' || ! wait_log "$a-2b" 'database schema is'; then
    fail "$API_IMAGE_REPO:$t2: side by side, did not migrate to 2"
  fi
  rows=$(pg_query "$d" "select string_agg(version || '=' || applied_by, ',' order by version) from schema_migrations")
  [[ $rows == "1=$t2,2=$t2" ]] || fail "$t2 side by side: schema_migrations is $rows"
  if { docker logs "$a-2a" && docker logs "$a-2b"; } 2>&1 | grep -E 'already exists|duplicate key'; then
    fail "$t2 side by side: the two apis raced their migrations"
  fi
  docker rm -f "$a-2a" "$a-2b" >/dev/null
  say "  two $t2 apis side by side: migrated once under the advisory lock ($rows)"
  st_api "$a-1" "$net" "$t1" "$pw" -p "127.0.0.1::$STANDIN_API_PORT"
  p=$(host_port "$a-1" "$STANDIN_API_PORT")
  wait_log "$a-1" "schema is 2, above this image's target 1: nothing applied, nothing reverted" || fail "$t1 on schema 2: log"
  body=$(curl -s "http://127.0.0.1:$p/health")
  [[ $(pg_query "$d" "select string_agg(version || '=' || applied_by, ',' order by version) from schema_migrations") == "$rows" &&
    $(json_field "$body" schema) == 2 && $(json_field "$body" schema_compatible) == '<absent>' ]] ||
    fail "$t1 after $t2: the schema moved or /health is $body"
  docker rm -f "$a-1" >/dev/null
  say "  $t1 (target 1) after $t2: the schema stays 2, nothing reverted, /health $body"
  read -r _ _ max1 <<<"${st_schema[$t1]}"
  if [[ -n $t3 ]] && ((max1 < 3)); then
    st_api "$a-3" "$net" "$t3" "$pw"
    wait_schema "$d" 3 || fail "$t3: did not migrate to 3"
    docker rm -f "$a-3" >/dev/null
    st_api "$a-1b" "$net" "$t1" "$pw" -p "127.0.0.1::$STANDIN_API_PORT"
    p=$(host_port "$a-1b" "$STANDIN_API_PORT")
    wait_log "$a-1b" "WARNING: the live database schema is 3, above the highest this image runs on" ||
      fail "$t1 on schema 3: no warning"
    body=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$p/health" | tr -d '\n')
    [[ $body == *'"schema":3,"schema_compatible":false,"schema_max":'"$max1"*'"status":"ok"'*' 200' &&
      $(pg_query "$d" 'select max(version) from schema_migrations') == 3 ]] || fail "$t1 on schema 3: /health $body"
    docker rm -f "$a-1b" >/dev/null
    say "  $t1 forced onto schema 3 (after $t3): still runs, warns, /health $body"
  fi
  docker rm -f -v "$d" >/dev/null
  docker volume rm -f "$d-data" >/dev/null
  docker network rm "$net" >/dev/null
}
if ((verify_all || ${#st_built[@]})); then
  [[ -n $(build_key "$REDIS_IMAGE") ]] || die "checking the stand-ins needs $REDIS_IMAGE: build it first (--only=redis)"
  [[ -n $(build_key "$POSTGRES_IMAGE") ]] || die "checking the stand-ins needs $POSTGRES_IMAGE: build it first (--only=postgres)"
fi
if ((verify_all)); then
  verify_standins "${st_tags[@]}"
elif ((${#st_built[@]})); then
  mapfile -t st_built < <(printf '%s\n' "${st_built[@]}" | sort -u)
  verify_standins "${st_built[@]}"
fi
# shellcheck source=images-probe.sh
. "$REPO/scripts/images-probe.sh"
fi # want standin

###############################################################################
# MinIO, built from its Go module once per machine.
###############################################################################
if want minio; then
minio_dir=$cache/toolchain/minio-$MINIO_VERSION
minio_bin=$minio_dir/minio
if [[ ! -x $minio_bin ]]; then
  ldflags="-s -w"
  if [[ $MINIO_VERSION =~ ^v0\.0\.0-([0-9]{14})-([0-9a-f]{12})$ ]]; then
    # Release metadata as MinIO's buildscripts/gen-ldflags.go sets it, from the pseudo-version.
    ts=${BASH_REMATCH[1]} commit=${BASH_REMATCH[2]} pkg=github.com/minio/minio/cmd
    rel="${ts:0:4}-${ts:4:2}-${ts:6:2}T${ts:8:2}:${ts:10:2}:${ts:12:2}Z"
    ldflags+=" -X $pkg.Version=$rel -X $pkg.CopyrightYear=${ts:0:4} -X $pkg.ReleaseTag=DEVELOPMENT.${rel//:/-}"
    ldflags+=" -X $pkg.CommitID=$commit -X $pkg.ShortCommitID=$commit"
  fi
  go_binary "$minio_bin" "$MINIO_MODULE@$MINIO_VERSION" "$ldflags" "MinIO" "~6 min"
  say "  ($("$minio_bin" --version | head -1))"
fi
minio_name=${MINIO_IMAGE%:*} minio_tag=${MINIO_IMAGE##*:}
minio_key=$({ echo "$recipe" "$MINIO_MODULE@$MINIO_VERSION" "$standin_key"; sha256sum "$minio_bin" | cut -d' ' -f1; } | hash12)
minio_built=0
if [[ $(build_key "$MINIO_IMAGE") == "$minio_key" ]]; then
  say "$MINIO_IMAGE is up to date ($LABEL=$minio_key)"
else
  t0=$SECONDS
  say "building $MINIO_IMAGE from $minio_bin"
  root=$work/minio-rootfs
  mkdir -p "$root"/{usr/bin,data,tmp,root,etc}
  chmod 1777 "$root/tmp"
  cp "$minio_bin" "$root/usr/bin/minio"
  bin=$(standin_bin)
  cp "$bin" "$root/usr/bin/fetchml-standin" # its `healthcheck URL` is the HEALTHCHECK
  root_user "$root" /root /usr/bin/minio
  import_image "$MINIO_IMAGE" "$root" "$minio_key" \
    'CMD ["/usr/bin/minio", "server", "/data", "--address", ":9000", "--console-address", ":9001"]' \
    'ENV HOME=/root' 'ENV MINIO_UPDATE=off' 'WORKDIR /data' 'EXPOSE 9000/tcp' 'EXPOSE 9001/tcp' \
    'HEALTHCHECK --interval=3s --timeout=2s --start-period=10s --retries=3 CMD ["/usr/bin/fetchml-standin", "healthcheck", "http://127.0.0.1:9000/minio/health/live"]' \
    "LABEL org.opencontainers.image.version=$MINIO_VERSION" "LABEL org.opencontainers.image.source=$MINIO_MODULE"
  say "built $MINIO_IMAGE in $((SECONDS - t0)) s"
  minio_built=1
fi
table+=("$minio_name $minio_tag - -")

verify_minio() {
  say "verifying $MINIO_IMAGE: bucket, put_object/get_object with the Python minio client"
  local c=$vprefix-minio p9000 p9001 user=fetchml-verify pass
  pass=verify-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cleanup_containers+=("$c")
  docker run -d --name "$c" -p 127.0.0.1::9000 -p 127.0.0.1::9001 \
    -e MINIO_ROOT_USER=$user -e MINIO_ROOT_PASSWORD="$pass" "$MINIO_IMAGE" >/dev/null
  p9000=$(host_port "$c" 9000) p9001=$(host_port "$c" 9001)
  if ! wait_http "http://127.0.0.1:$p9000/minio/health/live" 200 60; then
    docker logs "$c" 2>&1 | tail -20
    fail "minio: not live"
    return
  fi
  if "$REPO/.venv/bin/python" - "127.0.0.1:$p9000" "$user" "$pass" <<'EOF'; then
import io, sys
from minio import Minio
endpoint, user, password = sys.argv[1:4]
client = Minio(endpoint, access_key=user, secret_key=password, secure=False)
bucket, data = "fetchml-verify", b"fetchml artifact \x00\x01" * 1000
client.make_bucket(bucket)
client.put_object(bucket, "runs/1/model.bin", io.BytesIO(data), len(data))
resp = client.get_object(bucket, "runs/1/model.bin")
try:
    got = resp.read()
finally:
    resp.close()
    resp.release_conn()
assert got == data, "object read back differs"
assert [o.object_name for o in client.list_objects(bucket, recursive=True)] == ["runs/1/model.bin"]
print(f"  put_object/get_object of {len(data)} bytes in s3://{bucket} round-tripped")
EOF
    wait_http "http://127.0.0.1:$p9001/" 200 20 || fail "minio: console on :9001 not answering 200"
    wait_healthy "$c" || fail "minio: Docker HEALTHCHECK"
    say "  ok: S3 API on 127.0.0.1:$p9000, console on 127.0.0.1:$p9001, Docker-healthy ($(docker exec "$c" /usr/bin/minio --version | head -1))"
  else
    fail "minio: Python client round trip"
  fi
  docker rm -f -v "$c" >/dev/null
}
if ((minio_built || verify_all)); then verify_minio; fi
fi # want minio

###############################################################################
# The front proxy (Caddy), built from its Go module once per machine.
###############################################################################
# shellcheck source=images-proxy.sh
if want proxy; then . "$REPO/scripts/images-proxy.sh"; fi

###############################################################################
say "images:"
printf '  %-32s %-20s %-12s %-7s %s\n' IMAGE TAG MODE SCHEMA "IMAGE ID"
for row in "${table[@]}"; do
  read -r name tag mode schema <<<"$row"
  printf '  %-32s %-20s %-12s %-7s %s\n' "$name" "$tag" "$mode" "$schema" "$(docker image inspect -f '{{.Id}}' "$name:$tag" | cut -c8-19)"
done
((${#failures[@]} == 0)) || die "${#failures[@]} check(s) failed: ${failures[*]}"
