"""Keep docs/results.md in step with the committed evidence.

    .venv/bin/python scripts/results_page.py --collect reports/mnist   # copy a finished report
    .venv/bin/python scripts/results_page.py                           # rewrite the blocks

``--collect DIR`` copies a finished comparison's ``report.md``, ``report.json`` and
``figures/`` (no run folders, no checkpoints) to ``docs/evidence/<preset>/``. Without it, every
block of ``docs/results.md`` between ``<!-- evidence: NAME -->`` and ``<!-- end evidence -->``
is rewritten from ``docs/evidence/NAME/report.json`` (:func:`evidence_markdown`); the test
``tests/compare/test_results_page.py`` fails when a block and its JSON disagree.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from marginkit.compare.report import evidence_markdown

ROOT = Path(__file__).resolve().parent.parent
EVIDENCE = ROOT / "docs" / "evidence"
PAGE = ROOT / "docs" / "results.md"
BLOCK = re.compile(r"(<!-- evidence: ([\w.-]+) -->\n)(.*?)(<!-- end evidence -->)", re.S)


def collect(report: Path) -> Path:
    """Copy the evidence of the finished comparison in ``report``; its destination."""
    evidence = json.loads((report / "report.json").read_text())
    name = evidence["preset"] or report.name
    target = EVIDENCE / name
    if target.exists():
        shutil.rmtree(target)
    (target / "figures").mkdir(parents=True)
    for file in ("report.md", "report.json"):
        shutil.copy2(report / file, target / file)
    for figure in sorted((report / "figures").glob("*.png")):
        shutil.copy2(figure, target / "figures" / figure.name)
    return target


def rewrite(page: str) -> str:
    """``page`` with every evidence block regenerated from its JSON."""

    def block(match: re.Match[str]) -> str:
        path = EVIDENCE / match[2] / "report.json"
        if not path.is_file():
            raise SystemExit(f"docs/results.md has a block for {match[2]}, but no {path}")
        evidence = json.loads(path.read_text())
        return match[1] + evidence_markdown(evidence) + match[4]

    return BLOCK.sub(block, page)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collect", type=Path, metavar="DIR", help="a finished report folder")
    args = parser.parse_args()
    if args.collect is not None:
        print(collect(args.collect))
    PAGE.write_text(rewrite(PAGE.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
