"""Each loss's validation accuracy in two comparisons of the same grid at two settings, and the
paired difference (second minus first) with its 95 % interval (``marginkit compare``'s rule).

    .venv/bin/python scripts/validation_table.py FIRST SECOND

FIRST and SECOND are ``marginkit compare --out`` folders whose runs hold out a validation
split (``validation_fraction`` > 0) and differ in one setting (e.g. the learning rate): the
same seeds give the same initial weights, batches and validation split, so the runs pair by
name. A choice of setting made from this table looks at no test image (docs/recipes.md).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from marginkit.compare.evidence import Rule, combine, estimate, proportion_error


def validation_accuracies(folder: Path) -> dict[str, float]:
    """``{run folder name: final validation accuracy in %}`` of every finished run."""
    found = {}
    for metrics in sorted(folder.glob("runs/*/metrics.json")):
        final = json.loads(metrics.read_text())["final"]
        if final.get("validation_accuracy") is None:
            raise SystemExit(f"{metrics}: no validation accuracy (validation_fraction 0?)")
        found[metrics.parent.name] = 100.0 * final["validation_accuracy"]
    return found


def _validation_size(folder: Path) -> int:
    """The number of validation images of the comparison's first run."""
    from marginkit.data import load_dataset

    config = json.loads(next(folder.glob("runs/*/metrics.json")).read_text())["config"]
    bundle = load_dataset(
        config["dataset"],
        data_dir=config["data_dir"],
        validation_fraction=config["validation_fraction"],
        seed=config["seed"],
        progress=False,
    )
    return len(bundle.validation)


def _rms_error(percents: list[float], count: int) -> float:
    """The root mean square over the seeds of each accuracy's binomial error on ``count``
    images (:func:`marginkit.compare.claims.contrast`'s rule)."""
    errors = [proportion_error(percent, count) for percent in percents]
    if any(error is None for error in errors):
        raise SystemExit(f"an accuracy that is not a finite percentage: {percents}")
    return math.sqrt(sum(e * e for e in errors if e is not None) / len(errors))


def main() -> int:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    first, second = Path(sys.argv[1]), Path(sys.argv[2])
    before, after = validation_accuracies(first), validation_accuracies(second)
    count = _validation_size(first)
    runs: dict[str, list[str]] = {}  # loss -> its run folder names present in both
    for name in before:
        if name in after:
            runs.setdefault(name.rsplit("-seed", 1)[0], []).append(name)
    print(f"| loss | {first.name} | {second.name} | difference [95 % interval] |")
    print("|---|---|---|---|")
    for loss, names in runs.items():
        a, b = [before[n] for n in names], [after[n] for n in names]
        # each run's sampling error as compare's claims take it: the RMS over the seeds
        error = combine([1.0, 1.0], [_rms_error(a, count), _rms_error(b, count)])
        result = estimate([y - x for x, y in zip(a, b, strict=True)], error, Rule())
        print(
            f"| {loss} | {sum(a) / len(a):.2f} % | {sum(b) / len(b):.2f} % | "
            f"{result.difference:+.2f} [{result.low:+.2f}, {result.high:+.2f}] "
            f"({len(names)} seeds) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
