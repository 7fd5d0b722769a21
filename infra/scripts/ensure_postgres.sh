#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 for `make test`, which creates a scratch
# database of its own there and drops it at the end.
#   - A server that already answers is used as it is: nothing here changes it.
#   - Otherwise Debian's postgresql is installed if missing, and a cluster on that port (an existing
#     stopped one, else a new one) is started, its pg_hba.conf first told to trust user postgres
#     over local TCP (127.0.0.1 and ::1 only).
# Idempotent; exits non-zero, saying why, when it cannot get there.
set -euo pipefail

HOST=127.0.0.1
PORT="${ENSURE_POSTGRES_PORT:-5432}"
MARK="kimp: infra/scripts/ensure_postgres.sh"

say() { echo "ensure_postgres: $*" >&2; }
die() { say "$*"; exit 1; }

answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$HOST" -p "$PORT" -t 3
  else
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
  fi
}

# `select 1` as postgres without a password; without psql, pg_isready's word has to do.
usable() {
  command -v psql >/dev/null 2>&1 || return 0
  psql -w -X -q -A -t -h "$HOST" -p "$PORT" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1 </dev/null
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

if answers; then
  usable && exit 0
  die "a server answers on $HOST:$PORT but refuses user postgres without a password. It is left as it is:
  let it trust postgres over local TCP, or run \`make test TEST_DATABASE_URL=postgres://USER:PASSWORD@$HOST:$PORT/kimp\`
  with a user that may create databases."
fi

say "nothing answers on $HOST:$PORT; setting up a local PostgreSQL"

if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || ! command -v pg_lsclusters >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and there is no apt-get here: install a server that listens on $HOST:$PORT"
  say "installing Debian's postgresql"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  installed_now=1
  # The package may have created and started a cluster on $PORT itself.
  if answers && usable; then say "PostgreSQL is up on $HOST:$PORT"; exit 0; fi
fi
command -v pg_lsclusters >/dev/null 2>&1 || die "pg_lsclusters is missing (Debian's postgresql-common); cannot manage a cluster here"

# The cluster on our port, if there is one: "version name status".
cluster=$(pg_lsclusters -h | awk -v port="$PORT" '$3 == port { print $1, $2, $4; exit }')
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  name=main
  if [ -d "/etc/postgresql/$version/main" ]; then name="kimp_$PORT"; fi
  say "creating cluster $version/$name on port $PORT"
  as_root pg_createcluster "$version" "$name" -p "$PORT" >/dev/null
  status=down
else
  read -r version name status <<<"$cluster"
fi
# A running cluster is changed only when this script has just installed it (Debian's package starts
# it with password authentication for TCP); the machine's own running server never.
if [ "$status" != down ] && [ -z "${installed_now:-}" ]; then
  die "cluster $version/$name on port $PORT is $status but does not let user postgres in on $HOST:$PORT;
  not touching a running server: make it listen on $HOST and trust postgres there, or stop it"
fi

hba="/etc/postgresql/$version/$name/pg_hba.conf"
[ -f "$hba" ] || die "no $hba"
if ! as_root grep -qF "$MARK" "$hba"; then
  say "letting user postgres in over local TCP without a password ($hba)"
  tmp=$(mktemp)
  {
    echo "# $MARK: the tests connect as postgres over local TCP"
    echo "host    all    postgres    127.0.0.1/32    trust"
    echo "host    all    postgres    ::1/128         trust"
    as_root cat "$hba"
  } >"$tmp"
  as_root cp "$tmp" "$hba"
  rm -f "$tmp"
fi

if [ "$status" = down ]; then
  say "starting cluster $version/$name"
  as_root pg_ctlcluster "$version" "$name" start || die "pg_ctlcluster $version $name start failed; see /var/log/postgresql/postgresql-$version-$name.log"
else
  say "reloading cluster $version/$name"
  as_root pg_ctlcluster "$version" "$name" reload || die "pg_ctlcluster $version $name reload failed"
fi
for _ in $(seq 1 60); do
  if answers && usable; then say "PostgreSQL $version is up on $HOST:$PORT"; exit 0; fi
  sleep 0.5
done
die "cluster $version/$name started but $HOST:$PORT does not let user postgres in; see /var/log/postgresql/postgresql-$version-$name.log"
