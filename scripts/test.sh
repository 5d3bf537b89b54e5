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
echo "test: ruff (lint and format)"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
echo "test: import contracts"
"$venv/bin/lint-imports"
echo "test: type check (mypy: core, results, queue, uploads)"
"$venv/bin/mypy"
echo "test: dagster definitions validate"
# Loads workspace.yaml's code location as the webserver and daemon do, and fails on definitions
# Dagster refuses (an import error, a job selecting an asset that is not there, ...). It needs no
# running instance: a throwaway DAGSTER_HOME keeps it off any real one. (`dg check defs` is the
# successor; dagster-dg-cli is not a dependency, hence the warning filter.)
defs_home=$(mktemp -d "${TMPDIR:-/tmp}/wsi-defs-validate.XXXXXX")
: >"$defs_home/dagster.yaml"
DAGSTER_HOME="$defs_home" PYTHONWARNINGS='ignore:Function `definitions_validate_command` is superseded' \
  "$venv/bin/dagster" definitions validate -w workspace.yaml
rm -rf "$defs_home"
echo "test: docs build (mkdocs --strict)"
NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict --quiet --site-dir "${TMPDIR:-/tmp}/wsi-assets-site"
echo "test: running pytest $*"
exec "$venv/bin/python" -m pytest "$@"
