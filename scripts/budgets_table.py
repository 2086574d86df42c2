"""The table of docs/recipes.md "Every budget": each loss against softmax at each budget.

    .venv/bin/python scripts/budgets_table.py --collect OUT   # OUT: bash scripts/budgets.sh's
    .venv/bin/python scripts/budgets_table.py                 # rewrite the block in recipes.md

``--collect OUT`` reads every finished comparison in ``OUT`` (``OUT/NAME/report.json``) and
writes what the table needs, and nothing else, to ``docs/evidence/budgets.json``: per report
its data set, steps, seeds and command, and per loss the mean test accuracy and the paired
difference from softmax with its 95 % interval (``marginkit compare``'s rule). Without it,
the block of ``docs/recipes.md`` between ``<!-- budgets -->`` and ``<!-- end budgets -->`` is
rewritten from that JSON (:func:`budgets_markdown`); ``tests/compare/test_budgets_table.py``
fails when they disagree.

The line each loss must hold (issue 25): its mean test accuracy at least softmax's minus
:data:`TOLERANCE` points, or its interval of the difference reaching that line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVIDENCE = ROOT / "docs" / "evidence" / "budgets.json"
PAGE = ROOT / "docs" / "recipes.md"
BLOCK = re.compile(r"(<!-- budgets -->\n)(.*?)(<!-- end budgets -->)", re.S)
#: Points of test accuracy a loss may trail softmax by.
TOLERANCE = 0.5
#: Format of budgets.json.
FORMAT = 1


def _steps(report_dir: Path, run: dict[str, Any]) -> int:
    """The optimiser steps ``run`` took (its metrics' last step)."""
    metrics = json.loads((report_dir / run["folder"] / "metrics.json").read_text())
    return int(metrics["final"]["step"])


def summarise(report_dir: Path) -> dict[str, Any]:
    """What the table needs from the finished comparison in ``report_dir``."""
    report = json.loads((report_dir / "report.json").read_text())
    if report["baseline"] != "softmax":
        raise SystemExit(f"{report_dir}: the baseline is {report['baseline']}, not softmax")
    runs = report["runs"]
    first = runs[0]["config"]
    accuracies: dict[str, list[float]] = {}
    for run in runs:
        accuracies.setdefault(run["name"], []).append(run["measures"]["test_accuracy"])
    losses: dict[str, Any] = {
        name: {"test_accuracy": sum(values) / len(values), "seeds": len(values)}
        for name, values in accuracies.items()
    }
    for row in report["comparisons"]:
        if row["measure"] == "test_accuracy" and row["baseline"] == "softmax":
            losses[row["run"]].update(difference=row["difference"], interval=row["interval"])
    steps = sorted({_steps(report_dir, run) for run in runs})
    if len(steps) != 1:
        raise SystemExit(f"{report_dir}: the runs took different numbers of steps {steps}")
    return {
        "name": report_dir.name,
        "dataset": first["dataset"],
        "backbone": first["backbone"],
        "embedding_dim": first["embedding_dim"],
        "steps": steps[0],
        "epochs": first["epochs"],
        "max_steps": first["max_steps"],
        "seeds": report["comparison"]["seeds"],
        "losses": losses,
    }


def holds(loss: dict[str, Any]) -> bool:
    """Whether a loss holds the line: mean at least softmax's - TOLERANCE, or its interval
    reaching it."""
    return loss["difference"] >= -TOLERANCE or loss["interval"][1] >= -TOLERANCE


def _cell(loss: dict[str, Any] | None) -> str:
    if loss is None:
        return "not run"
    low, high = loss["interval"]
    mark = "" if holds(loss) else " **below**"
    return f"{loss['difference']:+.2f} [{low:+.2f}, {high:+.2f}]{mark}"


def budgets_markdown(evidence: dict[str, Any]) -> str:
    """One table per data set: a row per loss, a column per budget (steps)."""
    blocks = []
    for dataset in dict.fromkeys(report["dataset"] for report in evidence["reports"]):
        reports = sorted(
            (report for report in evidence["reports"] if report["dataset"] == dataset),
            key=lambda report: report["steps"],
        )
        columns = [f"{report['steps']} steps ({report['name']})" for report in reports]
        lines = [
            f"**{dataset}** ({reports[0]['backbone']}, {reports[0]['embedding_dim']}-D, "
            f"{reports[0]['seeds']} seeds): test accuracy of softmax, then each loss's "
            "difference from softmax in points with its 95 % interval",
            "",
            "| loss | " + " | ".join(columns) + " |",
            "|---|" + "---|" * len(columns),
            "| softmax (accuracy) | "
            + " | ".join(f"{r['losses']['softmax']['test_accuracy']:.2f} %" for r in reports)
            + " |",
        ]
        names = dict.fromkeys(name for r in reports for name in r["losses"] if name != "softmax")
        for name in names:
            cells = [_cell(report["losses"].get(name)) for report in reports]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        below = [
            f"{name} at {report['steps']} steps"
            for report in reports
            for name, loss in report["losses"].items()
            if name != "softmax" and not holds(loss)
        ]
        lines += ["", "Below the line: " + (", ".join(below) if below else "none") + "."]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def collect(out: Path) -> Path:
    """Write budgets.json from every finished report in ``out``; its path."""
    reports = [summarise(path.parent) for path in sorted(out.glob("*/report.json"))]
    if not reports:
        raise SystemExit(f"{out}: no finished report (*/report.json)")
    EVIDENCE.write_text(
        json.dumps({"format": FORMAT, "tolerance": TOLERANCE, "reports": reports}, indent=1) + "\n"
    )
    return EVIDENCE


def rewrite(page: str, evidence: dict[str, Any]) -> str:
    """``page`` with its budgets block regenerated from ``evidence``."""
    if BLOCK.search(page) is None:
        raise SystemExit(f"{PAGE} has no <!-- budgets --> ... <!-- end budgets --> block")
    return BLOCK.sub(lambda match: match[1] + budgets_markdown(evidence) + match[3], page)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collect", type=Path, metavar="OUT", help="bash scripts/budgets.sh's OUT")
    args = parser.parse_args()
    if args.collect is not None:
        print(collect(args.collect))
    evidence = json.loads(EVIDENCE.read_text())
    PAGE.write_text(rewrite(PAGE.read_text(), evidence))
    return 0


if __name__ == "__main__":
    sys.exit(main())
