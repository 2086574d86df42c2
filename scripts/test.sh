#!/usr/bin/env bash
# The test suite: set up (if needed), lint, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev >&2
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
exec .venv/bin/python -m pytest "$@"
