#!/usr/bin/env bash
# A refactor's speed check: benchmarks/train_overhead.py run alternately with the marginkit of
# BEFORE (a checkout's src/ folder, e.g. `git archive COMMIT src | tar -x -C /tmp/before`) and
# this one, ROUNDS times each, and each side's figures summarised: the trainer's images per CPU
# second and its ratio to the plain loop timed beside it in the same process (the machine's
# state, shared by the two, cancels out of that ratio). Usage:
#   bash benchmarks/train_overhead_before_after.sh BEFORE_SRC [ROUNDS] [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=$(cd "$1" && pwd)
ROUNDS=${2:-6}
OUT=${3:-$(mktemp -d)}
mkdir -p "$OUT"
DATA=()
[ -d "${MARGINKIT_DATA:-/nonexistent}/mnist" ] && DATA=(--data-dir "$MARGINKIT_DATA/mnist")
for ROUND in $(seq "$ROUNDS"); do
    for SIDE in before after; do
        SRC=$BEFORE
        [ "$SIDE" = after ] && SRC=$PWD/src
        PYTHONPATH=$SRC OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_overhead.py \
            "${DATA[@]}" --steps 20 --repeats 3 --out "$OUT/$SIDE-$ROUND.json" >/dev/null
    done
done
.venv/bin/python - "$OUT" <<'PY'
import json
import math
import statistics
import sys
from pathlib import Path

from scipy import stats

folder = Path(sys.argv[1])
rounds = sorted(int(p.stem.split("-")[1]) for p in folder.glob("after-*.json"))
cpu = {
    side: [json.loads((folder / f"{side}-{n}.json").read_text())["cpu"] for n in rounds]
    for side in ("before", "after")
}
for key, name in (("median_marginkit", "fit images/CPU-s"), ("median_pairwise_ratio", "fit/plain")):
    before = [figures[key] for figures in cpu["before"]]
    after = [figures[key] for figures in cpu["after"]]
    change = [a / b - 1 for a, b in zip(after, before, strict=True)]  # round by round
    mean = statistics.mean(change)
    half = stats.t.ppf(0.975, len(change) - 1) * statistics.stdev(change) / math.sqrt(len(change))
    print(
        f"{name:17s} before {statistics.median(before):7.3f}  after {statistics.median(after):7.3f}"
        f"  after/before {mean:+.2%} [{mean - half:+.2%}, {mean + half:+.2%}] ({len(change)} rounds)"
    )
PY
