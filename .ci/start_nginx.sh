#!/usr/bin/env bash
# Install Debian's nginx for the auth proxy test (wsi_assets_tests/test_auth_proxy.py starts its
# own nginx through deploy/auth/start.sh), then print the setting to export. Needs root (CI and
# the dev machines run as root). With WSI_NGINX set, the test fails instead of skipping when
# nginx is missing.
set -euo pipefail
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # The package's service is not started: containers' policy-rc.d forbids it, and the test's
  # nginx runs with its own config and port anyway.
  apt-get install -y -qq nginx >/dev/null
fi
echo "export WSI_NGINX=$(command -v nginx || echo /usr/sbin/nginx)"
