#!/usr/bin/env bash
# Create .venv (if needed) and install marginkit with the extras named in $1 (default: dev).
# Torch is installed first, pinned, so that pip never resolves an unpinned torch by itself:
# on machines that hold a local CPU wheel of torch 2.13.0 this takes seconds. Elsewhere set
# MARGINKIT_TORCH (e.g. "torch==2.5.1") and/or PIP_INDEX_URL / PIP_EXTRA_INDEX_URL as usual.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
py=.venv/bin/python
if ! "$py" -c "import torch" 2>/dev/null; then
    "$py" -m pip install --quiet --disable-pip-version-check "${MARGINKIT_TORCH:-torch==2.13.0}"
fi
stamp=".venv/.marginkit-$extras-$(cat pyproject.toml | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
    "$py" -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
    touch "$stamp"
fi
