#!/usr/bin/env bash
# Set up, then run the whole test suite (extra arguments go to pytest, e.g. -m "not slow").
#   WSI_VENV        the virtualenv (default .venv)
#   WSI_SKIP_SETUP  1: do not run scripts/setup.sh first
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${WSI_VENV:-.venv}"
if [ "${WSI_SKIP_SETUP:-0}" != 1 ]; then
  scripts/setup.sh
fi
echo "test: running pytest $*"
exec "$venv/bin/python" -m pytest "$@"
