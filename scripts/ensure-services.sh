#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1 for the test suite: start the local
# services if they are installed but stopped, install them from Debian's packages if absent and
# we are root, else stop with a clear message. Idempotent.
set -euo pipefail

PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    port_open "$port" && return 0
    sleep 0.5
  done
  echo "ensure-services: $name did not start listening on 127.0.0.1:$port within 30 s" >&2
  return 1
}

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ensure-services: $1 is not installed and I cannot install it (need root and apt-get)." >&2
    echo "  Install PostgreSQL and Redis, or point DATABASE_URL and REDIS_URL at running ones." >&2
    exit 1
  fi
  echo "ensure-services: installing $* from Debian's packages"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if port_open "$PG_PORT"; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    local fresh=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "ensure-services: starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port "$PG_PORT" PostgreSQL
  if [ -n "${fresh:-}" ]; then
    # A fresh Debian cluster asks for a password over TCP; give the postgres role the one the
    # test settings use.
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
  fi
}

ensure_redis() {
  if port_open "$REDIS_PORT"; then return 0; fi
  command -v redis-server >/dev/null || apt_install redis-server
  echo "ensure-services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  local dir=/var/lib/redis logfile=/var/log/redis/ci.log
  [ -w "$dir" ] || { dir=$(mktemp -d); logfile="$dir/redis.log"; }
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --maxmemory-policy noeviction --dir "$dir" --logfile "$logfile"
  wait_port "$REDIS_PORT" Redis
}

ensure_postgres
ensure_redis
echo "ensure-services: PostgreSQL on :$PG_PORT and Redis on :$REDIS_PORT are up"
