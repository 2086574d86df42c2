#!/usr/bin/env bash
# A refactor's check: train a 2-epoch digits run of every loss with the marginkit in SRC (a
# checkout's src/ folder; default: this one) and print a SHA-256 digest of each run's final
# weights (tensor bytes, by name). Equal digests before and after a change mean bitwise the
# same training. Usage: bash scripts/weights_digest.sh [SRC] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(cd "${1:-src}" && pwd)
OUT=${2:-$(mktemp -d)}
PY=.venv/bin/python
rm -rf "$OUT" && mkdir -p "$OUT"
for LOSS in softmax lsoftmax sphereface normface cosface arcface combined virtual camsoftmax; do
    PYTHONPATH=$SRC OMP_NUM_THREADS=1 $PY -m marginkit.cli train --dataset digits --epochs 2 \
        --loss "$LOSS" --threads 1 --quiet --out "$OUT/$LOSS" >"$OUT/$LOSS.log" 2>&1 \
        || { echo "train $LOSS failed: $OUT/$LOSS.log" >&2; exit 1; }
done
PYTHONPATH=$SRC $PY - "$OUT" <<'PY'
import hashlib
import sys
from pathlib import Path

from safetensors.torch import load_file

for run in sorted(path for path in Path(sys.argv[1]).iterdir() if path.is_dir()):
    tensors = load_file(str(run / "checkpoints" / "epoch-0002" / "weights.safetensors"))
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().numpy().tobytes())
    print(f"{run.name:12s} {digest.hexdigest()[:16]}")
PY
