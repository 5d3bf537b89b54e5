#!/usr/bin/env bash
# Set up, then lint, build the docs and run the whole test suite (extra arguments go to pytest,
# e.g. -m "not slow").
#   WSI_VENV        the virtualenv (default .venv)
#   WSI_SKIP_SETUP  1: do not run scripts/setup.sh first
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${WSI_VENV:-.venv}"
if [ "${WSI_SKIP_SETUP:-0}" != 1 ]; then
  scripts/setup.sh
fi
# The checks that need no services run first: a lint error or a broken docs link fails in seconds.
echo "test: ruff"
"$venv/bin/ruff" check .
echo "test: type check (mypy: core, results, queue, uploads)"
"$venv/bin/mypy"
echo "test: docs build (mkdocs --strict)"
NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict --quiet --site-dir "${TMPDIR:-/tmp}/wsi-assets-site"
echo "test: running pytest $*"
exec "$venv/bin/python" -m pytest "$@"
