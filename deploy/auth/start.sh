#!/usr/bin/env bash
# Dagster behind a login: nginx (auth_basic) in front of a read-only webserver for viewers and a
# full one for operators, both on the instance of $DAGSTER_HOME, plus the daemon. Ctrl-C or
# SIGTERM stops everything. Add users first:
#   .venv/bin/python -m wsi_assets.cli.auth_proxy add-user alice --role operator
#   deploy/auth/start.sh [--listen 127.0.0.1:8080] [--no-daemon] [--tls-cert C --tls-key K]
#   DAGSTER_HOME  instance folder (default ./.dagster_home; dagster.yaml is copied there if missing)
#   WSI_AUTH_DIR  users.htpasswd, roles.map, nginx's config and logs (default $DAGSTER_HOME/auth)
#   WSI_VENV      the virtualenv (default .venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${WSI_VENV:-.venv}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
export WSI_USER_FILES="${WSI_USER_FILES:-$PWD/user_files}"
mkdir -p "$DAGSTER_HOME"
DAGSTER_HOME="$(cd "$DAGSTER_HOME" && pwd)"  # Dagster wants an absolute path
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
exec "$venv/bin/python" -m wsi_assets.cli.auth_proxy start "$@"
