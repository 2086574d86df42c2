#!/usr/bin/env bash
# A refactor's check: train every loss with the marginkit in SRC (a checkout's src/ folder;
# default: this one) -- 2 epochs of the digits, and (when MNIST is found under $MARGINKIT_DATA)
# one epoch on a tenth of MNIST -- and print a SHA-256 digest of each run's final weights
# (tensor bytes, by name). Equal digests before and after a change mean bitwise the same
# training. Usage: bash scripts/weights_digest.sh [SRC] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(cd "${1:-src}" && pwd)
OUT=${2:-$(mktemp -d)}
PY=.venv/bin/python
LOSSES="softmax lsoftmax sphereface normface cosface arcface combined virtual camsoftmax"
rm -rf "$OUT" && mkdir -p "$OUT"

train() {  # NAME ARGUMENTS...: one run, in $OUT/NAME, its log beside it
    local name=$1
    shift
    PYTHONPATH=$SRC OMP_NUM_THREADS=1 $PY -m marginkit.cli train "$@" --threads 1 --quiet \
        --out "$OUT/$name" >"$OUT/$name.log" 2>&1 \
        || { echo "train $name failed: $OUT/$name.log" >&2; exit 1; }
}

for LOSS in $LOSSES; do
    train "digits-$LOSS" --dataset digits --epochs 2 --loss "$LOSS"
done
if [ -d "${MARGINKIT_DATA:-/nonexistent}/mnist" ]; then
    for LOSS in $LOSSES; do
        train "mnist-$LOSS" --dataset mnist --data-dir "$MARGINKIT_DATA/mnist" --epochs 1 \
            --train-fraction 0.1 --loss "$LOSS"
    done
else
    echo "no MNIST under \$MARGINKIT_DATA: the digits runs only" >&2
fi
PYTHONPATH=$SRC $PY - "$OUT" <<'PY'
import hashlib
import sys
from pathlib import Path

from safetensors.torch import load_file

for run in sorted(path for path in Path(sys.argv[1]).iterdir() if path.is_dir()):
    last = sorted((run / "checkpoints").glob("epoch-*"))[-1]  # the final epoch's checkpoint
    tensors = load_file(str(last / "weights.safetensors"))
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().numpy().tobytes())
    print(f"{run.name:18s} {last.name} {digest.hexdigest()[:16]}")
PY
