#!/usr/bin/env bash
# Soak test of the --nproc launcher: COUNT consecutive 2-process digits trainings of 3 epochs
# (batch 16), with the marginkit of this checkout's src/. Run N goes to OUT/runN, its output
# to OUT/runN.log. Prints each run's exit status, then one summary line; exits 1 when a run
# did not exit 0. A finished run that aborts at shutdown shows here as exit status 2.
# Usage: bash scripts/nproc_soak.sh [COUNT] [OUT]
#   COUNT: runs (default 20); OUT: a new or empty folder (default: a new temporary one).
#   PYTHON: the interpreter (default: .venv/bin/python).
set -uo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-20}
OUT=${2:-$(mktemp -d)}
PY=${PYTHON:-.venv/bin/python}
if ! [[ "$COUNT" =~ ^[1-9][0-9]*$ ]]; then
    echo "nproc_soak.sh: COUNT must be a positive integer, got '$COUNT'" >&2
    exit 2
fi
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
    echo "nproc_soak.sh: OUT $OUT is not an empty folder; give a new one" >&2
    exit 2
fi
mkdir -p "$OUT" || exit 2
SRC=$PWD/src
passed=0
failed=()
for i in $(seq "$COUNT"); do
    PYTHONPATH=$SRC OMP_NUM_THREADS=1 "$PY" -m marginkit.cli train --dataset digits \
        --backbone mlp --embedding-dim 8 --threads 1 --quiet --epochs 3 --batch-size 16 \
        --nproc 2 --out "$OUT/run$i" >"$OUT/run$i.log" 2>&1
    status=$?
    echo "run $i: exit status $status"
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed+=("run$i ($status)")
    fi
done
if [ "${#failed[@]}" -eq 0 ]; then
    echo "nproc soak: $passed of $COUNT runs exited 0 (logs in $OUT)"
else
    echo "nproc soak: $passed of $COUNT runs exited 0; failed: ${failed[*]} (logs in $OUT)"
    exit 1
fi
