#!/usr/bin/env bash
# Create .venv (if needed) and install wsi-assets with its test tools into it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${WSI_VENV:-.venv}"
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# Keep any torch already installed (e.g. a CUDA build). Otherwise prefer the CPU build:
# a locally available wheel first, then PyTorch's CPU index, so pip does not pull GBs of CUDA wheels.
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  "$venv/bin/python" -m pip install -q --no-index "torch==2.13.0" 2>/dev/null \
    || "$venv/bin/python" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
    || "$venv/bin/python" -m pip install -q torch
fi
"$venv/bin/python" -m pip install -q -e ".[test]"
