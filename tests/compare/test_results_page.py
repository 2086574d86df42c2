"""docs/results.md says only what the committed evidence (docs/evidence/*/report.json) says."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from marginkit.compare.report import evidence_markdown

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "results.md").read_text()


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("results_page", ROOT / "scripts/results_page.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EVIDENCE = sorted((ROOT / "docs" / "evidence").glob("*/report.json"))


def test_there_is_committed_evidence() -> None:
    assert EVIDENCE, "docs/evidence/<preset>/report.json: none committed"


@pytest.mark.parametrize("path", EVIDENCE, ids=lambda path: path.parent.name)
def test_every_number_of_a_block_equals_its_json(path: Path) -> None:
    evidence = json.loads(path.read_text())
    name = path.parent.name
    start = f"<!-- evidence: {name} -->\n"
    assert start in PAGE, f"docs/results.md has no block for {name}"
    block = PAGE.split(start)[1].split("<!-- end evidence -->")[0]
    assert block == evidence_markdown(evidence)
    assert evidence["format"] == 1 and len({run["seed"] for run in evidence["runs"]}) >= 3
    for figure in re.findall(r"\]\((evidence/[^)]+\.png)\)", PAGE):
        assert (ROOT / "docs" / figure).is_file()


def test_the_page_is_what_the_script_writes() -> None:
    assert _script().rewrite(PAGE) == PAGE


def test_no_measured_number_outside_the_blocks() -> None:
    """Prose may name budgets and commands, never a measured figure of its own."""
    prose = re.sub(r"<!-- evidence: .*?<!-- end evidence -->", "", PAGE, flags=re.S)
    prose = re.sub(r"`[^`]*`", "", prose)  # commands
    figures = re.findall(r"\d+\.\d+|\d+ ?%|\d+ ?°", prose)
    assert not figures, f"docs/results.md states figures outside the evidence: {figures[:5]}"
