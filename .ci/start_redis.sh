#!/usr/bin/env bash
# Install (Debian's redis-server) and start a throwaway Redis on 127.0.0.1 as the Celery broker
# for the Celery tests, then print the settings to export. Needs root (CI and the dev machines
# run as root). Stop it with: redis-cli -p "$WSI_REDIS_PORT" shutdown nosave
set -euo pipefail
port="${WSI_REDIS_PORT:-56379}"
if ! command -v redis-server >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq redis-server >/dev/null
fi
if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
  data=/tmp/wsi-ci-redis-$port
  mkdir -p "$data"
  # No persistence: a broker for tests; --daemonize returns once it listens.
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$data" \
    --daemonize yes --pidfile "$data/redis.pid" --logfile "$data/redis.log" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" ping >/dev/null
fi
echo "export WSI_REDIS_PORT=$port WSI_CELERY_BROKER=redis://127.0.0.1:$port/0 WSI_CELERY_BACKEND=redis://127.0.0.1:$port/1"
