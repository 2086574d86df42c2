#!/usr/bin/env bash
# Every loss against softmax at several training budgets (issue 25, docs/recipes.md "Every
# budget"): `marginkit compare` with the defaults, three seeds, one report per budget.
# Usage: bash scripts/budgets.sh OUT [digits|mnist|glyphs ...]
#   OUT: a folder for the reports (finished reports are reused: an interrupted call resumes);
#   MNIST needs $MARGINKIT_DATA/mnist. Then: python scripts/budgets_table.py --collect OUT
set -euo pipefail
out=${1:?usage: bash scripts/budgets.sh OUT [digits|mnist ...]}
shift
sets=${*:-digits mnist glyphs}
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
compare() {  # NAME, then compare's options
    local name=$1
    shift
    if [[ -f $out/$name/report.json ]]; then
        echo "$name: done"
    else
        echo "$name: marginkit compare $*"
        "$python" -m marginkit.cli compare "$@" --out "$out/$name" --quiet
    fi
}
mkdir -p "$out"
for set in $sets; do
    case $set in
    digits)  # the digits preset (MLP, 32-D, lr chosen on validation); 19 steps an epoch
        compare digits-100-steps --epochs 100 --max-steps 100
        compare digits-250-steps --epochs 100 --max-steps 250
        compare digits-1000-steps --epochs 100 --max-steps 1000
        compare digits-1-epoch --epochs 1
        compare digits-3-epochs --epochs 3
        compare digits-15-epochs  # the preset as it is: what `marginkit` runs without arguments
        ;;
    mnist)  # the issue's quick look: LeNet++, 128-D, a quarter of MNIST (118 steps an epoch)
        mnist=(--dataset mnist --losses all --backbone lenetpp --embedding-dim 128
            --train-fraction 0.25 --seeds 3 --threads 1)
        compare mnist-100-steps "${mnist[@]}" --epochs 9 --max-steps 100
        compare mnist-1-epoch "${mnist[@]}" --epochs 1
        compare mnist-250-steps "${mnist[@]}" --epochs 9 --max-steps 250
        compare mnist-1000-steps "${mnist[@]}" --epochs 9 --max-steps 1000
        compare mnist-3-epochs "${mnist[@]}" --epochs 3
        ;;
    glyphs)  # generated data no default was chosen on, with compare's defaults (MLP, 64-D); 47 steps an epoch
        glyphs=(--dataset glyphs --losses all --seeds 3 --threads 1)
        compare glyphs-100-steps "${glyphs[@]}" --epochs 100 --max-steps 100
        compare glyphs-250-steps "${glyphs[@]}" --epochs 100 --max-steps 250
        compare glyphs-1000-steps "${glyphs[@]}" --epochs 100 --max-steps 1000
        compare glyphs-1-epoch "${glyphs[@]}" --epochs 1
        compare glyphs-3-epochs "${glyphs[@]}" --epochs 3
        ;;
    *)
        echo "budgets.sh: unknown set $set (expected digits, mnist or glyphs)" >&2
        exit 2
        ;;
    esac
done
