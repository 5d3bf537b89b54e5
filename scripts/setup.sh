#!/usr/bin/env bash
# Create .venv (if needed) and install wsi-assets with its test tools into it.
# Says what it does at each step; pip itself stays quiet unless something goes wrong.
#   WSI_VENV   the virtualenv to create/use (default .venv)
#   PYTHON     the interpreter that creates it (default python3, >= 3.10)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${WSI_VENV:-.venv}"
python="${PYTHON:-python3}"
# The CPU build tried first: a wheel that pip's find-links or index already offers (no CUDA libraries).
cpu_torch="torch==2.13.0+cpu"
cpu_index="https://download.pytorch.org/whl/cpu"

say() { echo "setup: $*"; }
pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@"; }
started=$SECONDS

if [ -x "$venv/bin/python" ]; then
  say "using the virtualenv $venv ($("$venv/bin/python" -V 2>&1))"
else
  say "creating the virtualenv $venv with $("$python" -V 2>&1)"
  "$python" -m venv "$venv"
fi

# Keep any torch already installed (e.g. a CUDA build the user put there first). Otherwise install
# a CPU build, so pip does not pull several GB of CUDA wheels: a CPU wheel pip can already see
# (find-links / a local mirror), then PyTorch's CPU index, then whatever pip picks as a last resort.
# The first two fail fast (no retries, 15 s timeouts) where their source is unreachable; the
# first fails within a second where no such wheel is offered (PyPI has no "+cpu" builds).
version_of() { "$venv/bin/python" -I -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null; }
if torch_version=$(version_of torch); then
  say "keeping torch $torch_version already in $venv (setup never replaces an installed torch, e.g. a CUDA build)"
else
  say "installing torch, CPU build (~200 MB instead of GBs of CUDA wheels; for a GPU install your CUDA build into $venv first and rerun)"
  say "  trying $cpu_torch from pip's configured sources"
  # Their errors are expected where the source lacks the build, so only the outcome is shown.
  if pip install -q --retries 0 --timeout 15 "$cpu_torch" 2>/dev/null; then
    :
  else
    say "  not available there; trying PyTorch's CPU index $cpu_index"
    if pip install -q --retries 0 --timeout 15 --index-url "$cpu_index" torch 2>/dev/null; then
      :
    else
      say "  not available there either (unreachable?); installing torch from pip's default index (on Linux a CUDA build: GBs)"
      pip install -q torch
    fi
  fi
  say "torch $(version_of torch) installed"
fi

if version_of wsi-assets >/dev/null; then
  say "updating wsi-assets and its dependencies in $venv (editable install of $PWD)"
else
  say "installing wsi-assets and its dependencies into $venv (first time: a few minutes)"
fi
pip install -q -e ".[test]"
say "done in $((SECONDS - started)) s: $venv is ready"
