# shellcheck shell=bash
# Sourced by scripts/images.sh (its helpers and variables in scope): $POSTGRES_IMAGE, PostgreSQL 15 from
# Debian's postgresql-15 package, the way Redis is made: the real binaries of /usr/lib/postgresql/15/bin (not
# the Perl wrappers in /usr/bin), the libraries they and the server's modules link, its share directory, the
# time zones and the C.UTF-8 locale, with images/postgres/entrypoint.sh run by dash.
#
# The contract fetchml_infra/database.py relies on:
#   - the data volume at /var/lib/postgresql/data, PGDATA=/var/lib/postgresql/data/pgdata; an empty one is
#     initialised on first start (superuser postgres, password from the file POSTGRES_PASSWORD_FILE names,
#     database fetchml), a used one is kept as it is;
#   - the server runs as user postgres (uid/gid 999); the entrypoint starts as root to own PGDATA, then drops
#     privileges with setpriv (util-linux) and execs the server (see the entrypoint's header);
#   - pg_hba: local all all trust (`docker exec C psql -U postgres -d fetchml` needs no password), host all all
#     all scram-sha-256; listen_addresses '*', port 5432, jit off (no LLVM in the image);
#   - PATH starts with /usr/lib/postgresql/15/bin (psql, pg_dump, pg_restore, pg_isready for `docker exec`);
#     EXPOSE 5432/tcp, STOPSIGNAL SIGINT (fast shutdown), HEALTHCHECK pg_isready over TCP.
pg_dir=/usr/lib/postgresql/15
pg_share=/usr/share/postgresql/15
pg_programs=(postgres initdb pg_ctl pg_isready psql pg_dump pg_restore)
# What the entrypoint runs besides the server: dash as /bin/sh (pg_ctl starts the server through it too),
# setpriv for the privilege drop, the coreutils it needs, and locale (initdb imports the system collations
# from `locale -a`).
pg_tools=(/usr/bin/setpriv /usr/bin/locale /bin/mkdir /bin/chown /bin/chmod /bin/rm /bin/rmdir /bin/mv)
pg_uid=999
pg_ready='"-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", "fetchml"' # over TCP: not during the first start's init
mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }
if [[ ! -x $pg_dir/bin/postgres || ! -x /usr/bin/setpriv ]]; then
  say "installing Debian's postgresql-15"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq postgresql-15 util-linux >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq postgresql-15 util-linux >/dev/null; }
fi
pg_version=$(dpkg-query -W -f '${Version}' postgresql-15 2>/dev/null || echo unknown)
# The server's modules, less the JIT provider (LLVM alone is ~100 MB; the server runs with jit=off).
mapfile -t pg_modules < <(find "$pg_dir/lib" -maxdepth 1 -name '*.so' ! -name 'llvmjit*' | sort)
mapfile -t pg_libs < <(ldd "${pg_programs[@]/#/$pg_dir/bin/}" "${pg_modules[@]}" /usr/bin/dash "${pg_tools[@]}" |
  grep -v ':$' | grep -o '/[^ ]*' | sort -u)
postgres_name=${POSTGRES_IMAGE%:*} postgres_tag=${POSTGRES_IMAGE##*:}
postgres_key=$({
  echo "$recipe" "$pg_version"
  cat "$REPO/scripts/images-postgres.sh" "$REPO/images/postgres/entrypoint.sh"
  sha256sum "${pg_programs[@]/#/$pg_dir/bin/}" "${pg_modules[@]}" "${pg_libs[@]}" /usr/bin/dash "${pg_tools[@]}" | cut -d' ' -f1
} | hash12)
postgres_built=0
if [[ $(build_key "$POSTGRES_IMAGE") == "$postgres_key" ]]; then
  say "$POSTGRES_IMAGE is up to date ($LABEL=$postgres_key)"
else
  t0=$SECONDS
  say "building $POSTGRES_IMAGE from postgresql-15 $pg_version"
  root=$work/postgres-rootfs
  mkdir -p "$root"/{bin,usr/bin,usr/local/bin,"$pg_dir"/bin,"$pg_dir"/lib,usr/share/postgresql,usr/lib/locale,etc,tmp}
  mkdir -p "$root"/{run/postgresql,var/lib/postgresql/data}
  ln -s /run "$root/var/run"
  chmod 1777 "$root/tmp"
  cp "${pg_programs[@]/#/$pg_dir/bin/}" "$root$pg_dir/bin/"
  cp "${pg_modules[@]}" "$root$pg_dir/lib/"
  cp -R "$pg_share" "$root/usr/share/postgresql/"
  rm -rf "$root$pg_share/man"
  cp -a /usr/share/zoneinfo "$root/usr/share/"
  cp -a /usr/lib/locale/C.utf8 "$root/usr/lib/locale/"
  cp -L /usr/bin/dash "$root/bin/sh"
  for tool in "${pg_tools[@]}"; do cp -L "$tool" "$root$tool"; done
  for lib in "${pg_libs[@]}"; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  cp "$REPO/images/postgres/entrypoint.sh" "$root/usr/local/bin/postgres-entrypoint"
  chmod 755 "$root/usr/local/bin/postgres-entrypoint"
  root_user "$root" /root /bin/sh
  mkdir -p "$root/root"
  printf 'postgres:x:%s:%s:PostgreSQL administrator:/var/lib/postgresql:/bin/sh\n' $pg_uid $pg_uid >>"$root/etc/passwd"
  printf 'postgres:x:%s:\n' $pg_uid >>"$root/etc/group"
  import_image "$POSTGRES_IMAGE" "$root" "$postgres_key" \
    'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]' \
    "ENV PATH=$pg_dir/bin:/usr/local/bin:/usr/bin:/bin" 'ENV PGDATA=/var/lib/postgresql/data/pgdata' \
    'ENV LANG=C.UTF-8' 'WORKDIR /var/lib/postgresql' 'EXPOSE 5432/tcp' 'STOPSIGNAL SIGINT' \
    "HEALTHCHECK --interval=3s --timeout=3s --start-period=60s --retries=3 CMD [\"$pg_dir/bin/pg_isready\", \"-q\", $pg_ready]" \
    "LABEL org.opencontainers.image.version=$pg_version" 'LABEL org.opencontainers.image.source=debian:postgresql-15'
  say "built $POSTGRES_IMAGE in $((SECONDS - t0)) s ($(mb "$POSTGRES_IMAGE"))"
  postgres_built=1
fi
table+=("$postgres_name $postgres_tag - -")

verify_postgres() {
  say "verifying $POSTGRES_IMAGE: init on a fresh volume, psql/pg_dump/pg_restore by docker exec, data kept, password auth"
  local c=$vprefix-pg vol=$vprefix-pg-data vol2=$vprefix-pg-empty net=$vprefix-pg-net pw out code failed=${#failures[@]}
  pw=verify-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cleanup_networks+=("$net")
  cleanup_volumes+=("$vol" "$vol2")
  docker network create "$net" >/dev/null
  docker volume create "$vol" >/dev/null
  pg_start "$c-1" "$vol" "$net" "$pw" --network-alias db
  if ! wait_healthy "$c-1"; then
    docker logs "$c-1" 2>&1 | tail -20
    fail "postgres: not healthy on a fresh volume"
    return
  fi
  out=$(docker top "$c-1" -eo pid,uid | awk 'NR > 1 {print $2}' | sort -u | tr '\n' ' ')
  [[ $out == "$pg_uid " ]] || fail "postgres: server processes run as uid(s) $out, not only $pg_uid (postgres)"
  out=$(pg_query "$c-1" "select current_user || ' ' || current_setting('data_directory') || ' ' ||
    current_setting('listen_addresses') || ' ' || current_setting('port') || ' ' || current_setting('jit') || ' ' ||
    current_setting('server_encoding') || ' ' || current_setting('lc_collate')") || true
  [[ $out == "postgres /var/lib/postgresql/data/pgdata * 5432 off UTF8 C.UTF-8" ]] ||
    fail "postgres: settings are '$out'"
  pg_query "$c-1" "create table verify(id int primary key, note text); insert into verify values (1, 'kept-$$')" >/dev/null ||
    fail "postgres: create table/insert by docker exec psql"
  docker exec "$c-1" pg_dump -U postgres -d fetchml -Fc >"$work/verify.dump" || fail "postgres: pg_dump -Fc to stdout"
  pg_query "$c-1" "drop table verify" >/dev/null
  docker exec -i "$c-1" pg_restore -U postgres -d fetchml --clean --if-exists --single-transaction <"$work/verify.dump" ||
    fail "postgres: pg_restore from stdin"
  [[ $(pg_query "$c-1" "select note from verify where id = 1") == "kept-$$" ]] ||
    fail "postgres: the row did not come back from the dump"
  out="$(pg_query "$c-1" 'show server_version' | cut -d' ' -f1), pg_dump -Fc ($(wc -c <"$work/verify.dump") bytes)"
  say "  $c-1: healthy, server as uid $pg_uid, $out restored after a drop"
  # Over the network: scram-sha-256 with the password from the file, and a wrong one refused.
  out=$(docker run --rm --network "$net" -e PGPASSWORD="$pw" "$POSTGRES_IMAGE" \
    psql -X -h db -U postgres -d fetchml -tAc 'select note from verify' 2>&1) || true
  [[ $out == "kept-$$" ]] || fail "postgres: password login over the network: $out"
  out=$(docker run --rm --network "$net" -e PGPASSWORD=wrong "$POSTGRES_IMAGE" \
    psql -X -h db -U postgres -d fetchml -tAc 'select 1' 2>&1) && fail "postgres: a wrong password was accepted"
  [[ $out == *'password authentication failed for user "postgres"'* ]] || fail "postgres: wrong password: $out"
  say "  over the network: the password logs in, a wrong one is refused (scram-sha-256)"
  # Stopped with its STOPSIGNAL (SIGINT, fast shutdown), then a new container on the same volume keeps the data
  # and no longer needs the password file.
  docker stop -t 30 "$c-1" >/dev/null
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c-1")
  out=$(docker logs "$c-1" 2>&1)
  if [[ $code != 0 || $out != *'database system is shut down'* ]]; then
    fail "postgres: stop exited $code without a clean shutdown"
  fi
  cleanup_containers+=("$c-2")
  docker run -d --name "$c-2" -v "$vol:/var/lib/postgresql/data" "$POSTGRES_IMAGE" >/dev/null
  if wait_healthy "$c-2" && [[ $(pg_query "$c-2" "select note from verify where id = 1") == "kept-$$" ]]; then
    say "  stopped cleanly (exit 0); a new container on the same volume has the row"
  else
    docker logs "$c-2" 2>&1 | tail -20
    fail "postgres: the row is gone in a new container on the same volume"
  fi
  # Killed (SIGKILL: a stale postmaster.pid and socket lock are left) and started again: it recovers.
  docker kill "$c-2" >/dev/null
  docker start "$c-2" >/dev/null
  if wait_healthy "$c-2" && [[ $(pg_query "$c-2" "select note from verify where id = 1") == "kept-$$" ]]; then
    say "  killed and started again: recovered, the row is there"
  else
    docker logs "$c-2" 2>&1 | tail -20
    fail "postgres: no recovery after SIGKILL and a restart"
  fi
  # A fresh volume without POSTGRES_PASSWORD_FILE: exits non-zero and names the variable.
  cleanup_containers+=("$c-3")
  set +e
  out=$(timeout 60 docker run --name "$c-3" -v "$vol2:/var/lib/postgresql/data" "$POSTGRES_IMAGE" 2>&1)
  code=$?
  set -e
  if [[ $code != 0 && $out == *POSTGRES_PASSWORD_FILE* ]]; then
    say "  no POSTGRES_PASSWORD_FILE on a fresh volume: exit $code, $(grep -m1 error: <<<"$out")"
  else
    fail "postgres: without POSTGRES_PASSWORD_FILE exited $code: $out"
  fi
  docker rm -f -v "$c-1" "$c-2" "$c-3" >/dev/null
  docker volume rm -f "$vol" "$vol2" >/dev/null
  docker network rm "$net" >/dev/null
  ((${#failures[@]} > failed)) || say "  ok: $POSTGRES_IMAGE ($(mb "$POSTGRES_IMAGE"))"
}
if ((postgres_built || verify_all)); then verify_postgres; fi
