#!/usr/bin/env bash
# Set up, put demo slides in the upload folder, and start Dagster (webserver + daemon) on 127.0.0.1.
# Stops cleanly on Ctrl-C or SIGTERM, also when started in the background (`scripts/run.sh &`).
#   WSI_PORT         webserver port (default 3000)
#   WSI_WEBSERVER_URL the UI's address in links the CLIs print (default http://127.0.0.1:$WSI_PORT)
#   WSI_OUTPUTS_PORT port of the read-only server of result files, for report links (default WSI_PORT + 1)
#   WSI_USER_FILES   upload root (default ./user_files)
#   DAGSTER_HOME     instance folder (default ./.dagster_home; dagster.yaml is copied into it)
#   WSI_VENV         the virtualenv (default .venv)
#   WSI_SKIP_SETUP   1: do not run scripts/setup.sh first (~10 s even when everything is installed)
#   WSI_STOP_GRACE_S seconds Dagster gets to stop before it is killed (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${WSI_VENV:-.venv}"
port="${WSI_PORT:-3000}"
grace="${WSI_STOP_GRACE_S:-20}"

if [ "${WSI_SKIP_SETUP:-0}" != 1 ]; then
  scripts/setup.sh
fi
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
export WSI_USER_FILES="${WSI_USER_FILES:-$PWD/user_files}"
# Runs and sensors started from here print links to the port actually served.
export WSI_WEBSERVER_URL="${WSI_WEBSERVER_URL:-http://127.0.0.1:${port}}"
# Report links in the UI open over http: browsers do not follow file:// links from a web page.
outputs_port="${WSI_OUTPUTS_PORT:-$((port + 1))}"
export WSI_OUTPUTS_URL="${WSI_OUTPUTS_URL:-http://127.0.0.1:${outputs_port}}"
mkdir -p "$DAGSTER_HOME"
DAGSTER_HOME="$(cd "$DAGSTER_HOME" && pwd)"  # Dagster wants an absolute path
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
# submit and queue, from any shell, link to (and launch through) the webserver of this instance.
printf '%s\n' "$WSI_WEBSERVER_URL" >"$DAGSTER_HOME/webserver_url"
"$venv/bin/python" -m wsi_assets.cli.demo

dagster_pid=""
outputs_pid=""

# The group's live processes, one "pid command" line each (zombies do not count).
group_members() {
  local stat fields state pgrp pid
  for stat in /proc/[0-9]*/stat; do
    { read -r fields <"$stat"; } 2>/dev/null || continue
    read -r state _ pgrp _ <<<"${fields##*) }"
    [ "$pgrp" = "$dagster_pid" ] && [ "$state" != Z ] && [ "$state" != X ] || continue
    pid="${stat#/proc/}"
    pid="${pid%/stat}"
    echo "$pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-150)"
  done
}

group_alive() {
  if [ -r /proc/self/stat ]; then
    [ -n "$(group_members)" ]
  else
    kill -0 -- "-$dagster_pid" 2>/dev/null
  fi
}

stop() {
  trap '' INT TERM
  [ -z "$outputs_pid" ] || kill -TERM "$outputs_pid" 2>/dev/null || true
  [ -n "$dagster_pid" ] || exit 1
  echo "run.sh: $1 received; stopping Dagster (SIGTERM to process group $dagster_pid, SIGKILL after ${grace} s)"
  kill -TERM -- "-$dagster_pid" 2>/dev/null || kill -TERM "$dagster_pid" 2>/dev/null || true
  local waited=0
  while group_alive && [ "$waited" -lt $((grace * 2)) ]; do
    sleep 0.5
    waited=$((waited + 1))
  done
  local status=0
  if group_alive; then
    echo "run.sh: Dagster did not stop within ${grace} s; killing what is left:"
    group_members | sed 's/^/run.sh:   /'
    kill -KILL -- "-$dagster_pid" 2>/dev/null || true
    status=1
  fi
  wait "$dagster_pid" 2>/dev/null || true
  echo "run.sh: Dagster stopped"
  exit "$status"
}
trap 'stop SIGINT' INT
trap 'stop SIGTERM' TERM

# `dagster dev` runs in its own session (so its own process group): a stop reaches the webserver,
# the daemon, the code server and the runs they started, and nothing else. It is not exec'd: this
# script stays to forward the stop and to kill what is left after the grace period.
# The small Python wrapper restores default SIGINT handling before exec'ing Dagster. A job started
# with `&` by a non-interactive shell inherits SIGINT as ignored, bash cannot undo that, and
# Dagster maps SIGTERM to its SIGINT handler, so it would ignore SIGTERM too and never stop.
"$venv/bin/python" -c '
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setsid()
os.execv(sys.argv[1], sys.argv[1:])
' "$venv/bin/dagster" dev -h 127.0.0.1 -p "$port" -w workspace.yaml &
dagster_pid=$!
mkdir -p "$WSI_USER_FILES"
"$venv/bin/python" -m wsi_assets.cli.outputs_server --root "$WSI_USER_FILES" --port "$outputs_port" &
outputs_pid=$!

echo "Dagster UI: ${WSI_WEBSERVER_URL}  (uploads: $WSI_USER_FILES/<user>/inputs/<branch>/)"
echo "Stop with Ctrl-C, or kill -TERM $$"
status=0
wait "$dagster_pid" || status=$?
# Dagster exited by itself: leave nothing of it behind.
kill -TERM "$outputs_pid" 2>/dev/null || true
kill -KILL -- "-$dagster_pid" 2>/dev/null || true
exit "$status"
