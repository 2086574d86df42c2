#!/usr/bin/env bash
# The test suite: set up (if needed), lint, type-check, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev >&2
# The report's browser test (tests/compare/test_report_browser.py) needs headless Chromium:
# install Debian's package where it is missing and we may (root, apt-get present).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
    echo "installing chromium for the report's browser test..." >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq chromium; } >&2 \
        || echo "could not install chromium: the browser test will be skipped" >&2
fi
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy  # src/marginkit, as [tool.mypy] of pyproject.toml sets
exec .venv/bin/python -m pytest "$@"
