#!/usr/bin/env bash
# Install Debian's chromium for the browser test (wsi_assets_tests/test_markup.py renders the
# Dagster UI's asset pages headless and checks no user text became a link or an image).
# Needs root (CI and the dev machines run as root); does nothing when a Chromium is already there.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq chromium >/dev/null
fi
