#!/usr/bin/env bash
# Celery smoke test on this machine: a Redis broker, a GPU worker (queue `gpu`, one step at a
# time) and a default worker, the daemon and the webserver on a fresh PostgreSQL database;
# uploads 2 slides in each of 2 branches, waits for the 4 runs and checks (smoke_audit.py):
# segmentation on the GPU worker and every other step on the default worker, never two GPU
# steps at once, branch order held. Exits non-zero on any failure; always stops what it started.
#
#   deploy/celery/smoke.sh [--kill]
#
# --kill: then start a second GPU worker and kill one in the middle of a segmentation step
# (kill_check.py): the run must be failed within 60 s and the branch's next run must succeed.
#
# Uses WSI_PG_* when set, else starts PostgreSQL with .ci/start_postgres.sh; uses
# WSI_CELERY_BROKER/WSI_CELERY_BACKEND when set, else starts Redis with .ci/start_redis.sh (and
# stops it afterwards). WSI_PYTHON: the venv's python (default .venv/bin/python);
# WSI_SMOKE_PORT: the webserver port (default 3131); WSI_SMOKE_KEEP=1 keeps the work folder.
set -euo pipefail
kill_test=0
case "${1:-}" in
  --kill) kill_test=1 ;;
  "") ;;
  *) echo "usage: $0 [--kill]" >&2; exit 2 ;;
esac
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
py="${WSI_PYTHON:-$repo/.venv/bin/python}"
bin="$(dirname "$py")"
port="${WSI_SMOKE_PORT:-3131}"
work="$(mktemp -d /tmp/wsi-celery-smoke.XXXXXX)"
pgroups=()
started_redis=""
database=""

say() { echo "smoke: $(date +%T) $*"; }

stop_all() {
  local status=$?
  trap - EXIT INT TERM
  for group in "${pgroups[@]}"; do kill -TERM -- "-$group" 2>/dev/null || true; done
  for group in "${pgroups[@]}"; do
    for _ in $(seq 100); do kill -0 -- "-$group" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$group" 2>/dev/null || true
  done
  if [ -n "$database" ]; then
    "$py" - "$database" <<'PY' || true
import os, sys, psycopg2
c = psycopg2.connect(host=os.environ["WSI_PG_HOST"], port=os.environ["WSI_PG_PORT"], user=os.environ["WSI_PG_USER"],
                     password=os.environ["WSI_PG_PASSWORD"], dbname="postgres")
c.autocommit = True
c.cursor().execute(f"DROP DATABASE IF EXISTS {sys.argv[1]} WITH (FORCE)")
PY
  fi
  if [ -n "$started_redis" ]; then redis-cli -p "$started_redis" shutdown nosave >/dev/null 2>&1 || true; fi
  if [ "${WSI_SMOKE_KEEP:-0}" = 1 ] || [ "$status" != 0 ]; then
    say "logs and instance kept in $work"
  else
    rm -rf "$work"
  fi
  say "stopped everything it started (exit $status)"
  exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Each service in its own process group (setsid), so stopping it stops its children too.
start() {
  local name="$1"; shift
  setsid "$@" >"$work/$name.log" 2>&1 &
  pgroups+=("$!")
}

if [ -z "${WSI_PG_HOST:-}" ]; then eval "$(bash .ci/start_postgres.sh)"; fi
if [ -z "${WSI_CELERY_BROKER:-}" ]; then
  redis_port="${WSI_REDIS_PORT:-56379}"
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 || started_redis="$redis_port"
  eval "$(WSI_REDIS_PORT=$redis_port bash .ci/start_redis.sh)"
fi
database="wsi_smoke_$(date +%s)_$$"
"$py" - "$database" <<'PY'
import os, sys, psycopg2
c = psycopg2.connect(host=os.environ["WSI_PG_HOST"], port=os.environ["WSI_PG_PORT"], user=os.environ["WSI_PG_USER"],
                     password=os.environ["WSI_PG_PASSWORD"], dbname="postgres")
c.autocommit = True
c.cursor().execute(f"CREATE DATABASE {sys.argv[1]}")
PY

mkdir -p "$work/home" "$work/user_files"
cp deploy/celery/dagster.yaml "$work/home/dagster.yaml"
export DAGSTER_HOME="$work/home" WSI_USER_FILES="$work/user_files" WSI_PG_DB="$database" WSI_EXECUTOR=celery
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The broker's queues may hold tasks of an earlier, interrupted smoke run: start empty.
"$py" -c "import os, redis; [redis.Redis.from_url(os.environ[k]).flushdb() for k in ('WSI_CELERY_BROKER', 'WSI_CELERY_BACKEND') if os.environ.get(k)]"
# Create the schema once, before several processes would race to create it.
"$py" -c "from dagster import DagsterInstance; DagsterInstance.get().dispose()"
say "broker $WSI_CELERY_BROKER, database $database, work folder $work"

start gpu-worker "$py" -m wsi_assets.cli.celery_worker --queue gpu --name gpu1 --concurrency 1
start default-worker "$py" -m wsi_assets.cli.celery_worker --queue dagster --name cpu1 --concurrency 2
start daemon "$bin/dagster-daemon" run -w workspace.yaml
start webserver "$bin/dagster-webserver" -h 127.0.0.1 -p "$port" -w workspace.yaml
for _ in $(seq 180); do
  curl -sf "http://127.0.0.1:$port/server_info" >/dev/null 2>&1 && break
  sleep 1
done
curl -sf "http://127.0.0.1:$port/server_info" >/dev/null || { say "FAILED: webserver did not answer on port $port"; exit 1; }
wait_for_workers() {
  "$py" - "$@" <<'PY'
import os, socket, sys
from wsi_assets.queue.celery_liveness import unanswered_workers
names = [f"{name}@{socket.gethostname()}" for name in sys.argv[1:]]
missing = unanswered_workers(os.environ["WSI_CELERY_BROKER"], names, timeout=30, attempts=3)
sys.exit(f"smoke: FAILED: workers not answering: {missing}" if missing else 0)
PY
}
wait_for_workers gpu1 cpu1
say "services up: GPU worker, default worker, daemon, webserver on 127.0.0.1:$port"

"$py" - "$work/user_files" <<'PY'
import shutil, sys, tempfile
from pathlib import Path
from wsi_assets.slides.synthetic import SyntheticSlideSpec, write_synthetic_slide
root = Path(sys.argv[1])
source = Path(tempfile.mkdtemp()) / "tiny.svs"
write_synthetic_slide(source, SyntheticSlideSpec(width=1500, height=1200, mpp=0.25, seed=5))
for branch in ("main", "cohort-b"):
    folder = root / "ana" / "inputs" / branch
    folder.mkdir(parents=True)
    for stem in ("s1", "s2"):
        shutil.copyfile(source, folder / f".{stem}.part")
        (folder / f".{stem}.part").rename(folder / f"{stem}.svs")
shutil.rmtree(source.parent)
PY
say "uploaded ana/main/{s1,s2} and ana/cohort-b/{s1,s2}; waiting for the runs"
"$py" deploy/celery/smoke_audit.py --runs 4 --timeout "${WSI_SMOKE_TIMEOUT_S:-600}"

if [ "$kill_test" = 1 ]; then
  gpu1_group="${pgroups[0]}"
  start gpu-worker-2 "$py" -m wsi_assets.cli.celery_worker --queue gpu --name gpu2 --concurrency 1
  wait_for_workers gpu2
  say "second GPU worker up; killing a GPU worker in the middle of a segmentation step"
  "$py" deploy/celery/kill_check.py --gpu-worker "gpu1=$gpu1_group" --gpu-worker "gpu2=${pgroups[-1]}" --bound 60
fi
