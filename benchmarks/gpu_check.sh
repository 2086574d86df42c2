#!/usr/bin/env bash
# The GPU check of issue 11, for a machine with a CUDA GPU (run it there, e.g. with the
# `device` tool): the head benchmark on CUDA against plain linear + cross-entropy (and
# pytorch-metric-learning when installed), and short trainings in fp32, bf16 and fp16.
# Needs a CUDA build of torch in $PYTHON (default: python). Writes under $OUT
# (default: benchmarks/results/gpu); about 5 minutes on a current GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/machine.txt"
# the heads on CUDA: median fwd+bwd time against plain linear + cross-entropy
"$PY" benchmarks/head_benchmark.py --device cuda --classes 10000 100000 1000000 \
    --repeats 15 --large-repeats 5 --no-memory \
    --only plain softmax normface cosface arcface sphereface pml-arcface pml-cosface \
    --out "$OUT/heads" | tee "$OUT/heads.txt"
# short trainings with every precision (digits need no download)
for precision in fp32 bf16 fp16; do
    start=$SECONDS
    "$PY" -m marginkit.cli train --dataset digits --backbone mlp --loss arcface --epochs 10 \
        --device cuda --precision "$precision" --out "$OUT/digits-$precision" --quiet \
        | tee "$OUT/digits-$precision.txt"
    echo "wall $((SECONDS - start)) s" | tee -a "$OUT/digits-$precision.txt"
done
