#!/usr/bin/env bash
# Install (Debian's package) and start a throwaway PostgreSQL on 127.0.0.1 for the queue tests,
# then print the WSI_PG_* settings to export. Needs root (CI and the dev machines run as root).
set -euo pipefail
port="${WSI_PG_PORT:-55432}"
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
fi
bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")
data=/tmp/wsi-ci-postgres
if ! su postgres -c "$bin/pg_ctl -D $data status" >/dev/null 2>&1; then
  rm -rf "$data"
  mkdir -p "$data" && chown postgres "$data"
  su postgres -c "$bin/initdb -D $data -A trust -U postgres" >/dev/null
  su postgres -c "$bin/pg_ctl -D $data -o '-p $port -k /tmp -c listen_addresses=127.0.0.1' -l $data/log -w start" >/dev/null
fi
echo "export WSI_PG_HOST=127.0.0.1 WSI_PG_PORT=$port WSI_PG_USER=postgres WSI_PG_PASSWORD=postgres WSI_PG_DB=postgres"
