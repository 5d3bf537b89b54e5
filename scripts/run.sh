#!/usr/bin/env bash
# Set up, put demo slides in the upload folder, and start Dagster (webserver + daemon) on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
export WSI_USER_FILES="${WSI_USER_FILES:-$PWD/user_files}"
mkdir -p "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
.venv/bin/python -m wsi_assets.cli.demo
echo "Dagster UI: http://127.0.0.1:${WSI_PORT:-3000}  (uploads: $WSI_USER_FILES/<user>/inputs/<branch>/)"
exec .venv/bin/dagster dev -h 127.0.0.1 -p "${WSI_PORT:-3000}" -w workspace.yaml
