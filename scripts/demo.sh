#!/usr/bin/env bash
# The main job: set up (if needed), then train every loss briefly on scikit-learn's digits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all >&2
exec .venv/bin/marginkit "$@"
