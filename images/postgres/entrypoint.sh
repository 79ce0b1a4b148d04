#!/bin/sh
# Entrypoint of fetchml-infra/postgres:15 (built by scripts/images-postgres.sh from Debian's postgresql-15).
#
# It starts as root, because the data volume arrives root-owned: it makes PGDATA (a subdirectory of the
# volume at /var/lib/postgresql/data) and the socket directory belong to the user postgres, initialises an
# empty PGDATA once, and then drops to postgres for good. The image has no su or gosu: the drop is util-linux's
# setpriv (--reuid/--regid/--init-groups: setgroups, setgid, then setuid, then exec), the same calls gosu makes,
# and it execs, so the server is PID 1 and gets Docker's stop signal (SIGINT: fast shutdown) itself.
#
# First start (no PGDATA/PG_VERSION): initdb in PGDATA.init as postgres, superuser postgres with the password
# from the file named by POSTGRES_PASSWORD_FILE (read here, as root; handed to initdb in a file only postgres
# can read, removed at once), pg_hba "local all all trust" + "host all all all scram-sha-256", database
# fetchml; then PGDATA.init is renamed to PGDATA, so a start cut off half-way starts over next time. Later
# starts keep PGDATA as it is (the password file is not read again: the database keeps its password).
#
# With arguments that are not options (`docker run IMAGE psql -h db ...`) it runs them instead, as root.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data/pgdata}
run=/var/run/postgresql

say() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

case ${1-} in
  '' | -*) ;;
  *) exec "$@" ;;
esac

mkdir -p "$run"
chown postgres:postgres "$run"
chmod 2775 "$run"

initialise() {
  [ -n "${POSTGRES_PASSWORD_FILE-}" ] ||
    die "POSTGRES_PASSWORD_FILE is not set: it must name a file holding the password of the superuser" \
      "postgres (needed to initialise the empty data directory $PGDATA)"
  if [ ! -f "$POSTGRES_PASSWORD_FILE" ] || [ ! -r "$POSTGRES_PASSWORD_FILE" ]; then
    die "POSTGRES_PASSWORD_FILE=$POSTGRES_PASSWORD_FILE: no such readable file (needed to initialise the" \
      "empty data directory $PGDATA)"
  fi
  password=
  IFS= read -r password <"$POSTGRES_PASSWORD_FILE" || true # false without a final newline, yet it read the line
  [ -n "$password" ] || die "POSTGRES_PASSWORD_FILE=$POSTGRES_PASSWORD_FILE: the first line is empty"
  staging=$PGDATA.init
  rm -rf "$staging"
  mkdir -p "$staging"
  chown postgres:postgres "$staging"
  chmod 700 "$staging"
  pwfile=$run/initdb-password
  (umask 077 && printf '%s\n' "$password" >"$pwfile")
  chown postgres:postgres "$pwfile"
  unset password
  say "initialising $PGDATA (superuser postgres, database fetchml)"
  if ! as_postgres initdb --pgdata="$staging" --username=postgres --pwfile="$pwfile" --encoding=UTF8 \
    --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null; then
    rm -f "$pwfile"
    die "initdb failed (see above)"
  fi
  rm -f "$pwfile"
  printf '%s\n' '# fetchml-infra: no password through the socket (docker exec), scram-sha-256 over the network.' \
    'local all all trust' 'host all all all scram-sha-256' >"$staging/pg_hba.conf"
  printf '%s\n' '' '# fetchml-infra' "listen_addresses = '*'" 'port = 5432' 'jit = off' \
    >>"$staging/postgresql.conf"
  chown postgres:postgres "$staging/pg_hba.conf"
  # The database, with a server listening on the socket only (nothing from the network sees it half made).
  as_postgres pg_ctl --pgdata="$staging" --options="-c listen_addresses=''" --wait --silent start
  as_postgres psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres -c 'CREATE DATABASE fetchml' ||
    die "CREATE DATABASE fetchml failed"
  as_postgres pg_ctl --pgdata="$staging" --mode=fast --wait --silent stop
  if [ -e "$PGDATA" ]; then
    rmdir "$PGDATA" 2>/dev/null || die "$PGDATA exists, is not empty and has no PG_VERSION: not touching it"
  fi
  mv "$staging" "$PGDATA"
  say "initialised $PGDATA"
}

if [ -s "$PGDATA/PG_VERSION" ]; then
  read -r version <"$PGDATA/PG_VERSION" || true
  say "data directory $PGDATA kept (PostgreSQL ${version-?})"
else
  initialise
fi
chown postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"
exec setpriv --reuid=postgres --regid=postgres --init-groups -- postgres -D "$PGDATA" "$@"
