"""docs/recipes.md's budget tables say only what docs/evidence/budgets.json says, and the
script reads a comparison's report as ``marginkit compare`` writes it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "budgets_table", ROOT / "scripts/budgets_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipes_page_block_equals_the_committed_json() -> None:
    script = _script()
    evidence = json.loads(script.EVIDENCE.read_text())
    page = script.PAGE.read_text()
    assert script.rewrite(page, evidence) == page, "run: python scripts/budgets_table.py"
    assert "| softmax (accuracy) |" in page


def _loss(difference: float, low: float, high: float) -> dict[str, Any]:
    return {"difference": difference, "interval": [low, high]}


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        (_loss(-0.5, -1.0, 0.0), True),  # the mean on the line
        (_loss(-0.51, -0.9, -0.5), True),  # below, the interval reaching the line
        (_loss(-0.9, -1.5, -0.51), False),  # below, the interval too
        (_loss(+1.0, +0.2, +1.8), True),
    ],
)
def test_holds_is_the_issues_line(loss: dict[str, Any], expected: bool) -> None:
    assert _script().holds(loss) is expected


def _report(folder: Path, steps: dict[str, int]) -> None:
    """A finished comparison's report.json and run metrics, as marginkit compare writes."""
    config = {"dataset": "digits", "backbone": "mlp", "embedding_dim": 32, "epochs": 3}
    runs, accuracies = [], {"softmax": [97.0, 96.0], "lsoftmax": [95.0, 95.0]}
    for name, values in accuracies.items():
        for seed, value in enumerate(values):
            run_folder = f"runs/{name}-seed{seed}"
            (folder / run_folder).mkdir(parents=True)
            final = {"final": {"step": steps[name]}}
            (folder / run_folder / "metrics.json").write_text(json.dumps(final))
            measures = {"test_accuracy": value}
            runs.append({"name": name, "seed": seed, "folder": run_folder, "measures": measures})
            runs[-1]["config"] = {**config, "loss": name, "max_steps": None}
    comparisons = [
        {"run": "lsoftmax", "baseline": "softmax", "measure": "test_accuracy"}
        | {"difference": -1.5, "interval": [-2.5, -0.7], "seeds": 2},
        {"run": "lsoftmax", "baseline": "softmax", "measure": "test_error"}
        | {"difference": 1.5, "interval": [0.7, 2.5], "seeds": 2},
    ]
    report = {"baseline": "softmax", "comparison": {"seeds": 2}, "runs": runs}
    report["comparisons"] = comparisons
    (folder / "report.json").write_text(json.dumps(report))


def test_summarise_and_render_a_report(tmp_path: Path) -> None:
    script = _script()
    _report(tmp_path / "digits-3-epochs", {"softmax": 57, "lsoftmax": 57})
    summary = script.summarise(tmp_path / "digits-3-epochs")
    assert summary["steps"] == 57 and summary["seeds"] == 2
    assert summary["losses"]["softmax"] == {"test_accuracy": 96.5, "seeds": 2}
    lsoftmax = summary["losses"]["lsoftmax"]
    assert lsoftmax == {
        "test_accuracy": 95.0,
        "seeds": 2,
        "difference": -1.5,
        "interval": [-2.5, -0.7],
    }
    table = script.budgets_markdown({"reports": [summary]})
    assert "| softmax (accuracy) | 96.50 % |" in table
    assert "| lsoftmax | -1.50 [-2.50, -0.70] **below** |" in table
    assert "Below the line: lsoftmax at 57 steps." in table


def test_runs_of_different_lengths_are_refused(tmp_path: Path) -> None:
    _report(tmp_path / "mixed", {"softmax": 57, "lsoftmax": 50})
    with pytest.raises(SystemExit, match="different numbers of steps"):
        _script().summarise(tmp_path / "mixed")
