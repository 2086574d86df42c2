"""A comparison's measures, read from a run's files through :class:`RunFolder`: a run of the
previous layout is measured, and a figure missing from eval.json is an error, not a blank."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from marginkit.compare.measures import run_measures, sampling_errors
from marginkit.runfolder import RunFolderError

PREVIOUS_LAYOUT = Path(__file__).parents[1] / "fixtures" / "run-v1-digits"


def test_a_run_of_the_previous_layout_is_measured() -> None:
    values = run_measures(PREVIOUS_LAYOUT)
    assert values["test_accuracy"] == pytest.approx(88.22, abs=0.01)  # eval.json, a fraction
    assert values["train_loss"] == pytest.approx(1.007, abs=1e-3)
    assert values["nearest_centre_accuracy"] == pytest.approx(90.89, abs=0.01)
    assert values["verification_auc"] is not None and values["intra_angle"] is not None
    assert values["precision_at_1"] is not None and values["unseen_rank1"] is None
    errors = sampling_errors(PREVIOUS_LAYOUT, values)
    assert errors["test_accuracy"] is not None and errors["test_accuracy"] > 0


@pytest.mark.parametrize(
    ("section", "key"),
    [("verification", "auc"), ("geometry", "overall"), ("retrieval", "map_at_r")],
)
def test_a_renamed_figure_of_eval_json_fails_loudly(tmp_path: Path, section: str, key: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(PREVIOUS_LAYOUT, run)
    report = json.loads((run / "eval.json").read_text())
    report["analysis"][section][key + "_renamed"] = report["analysis"][section].pop(key)
    (run / "eval.json").write_text(json.dumps(report))
    with pytest.raises(RunFolderError, match=rf"analysis\.{section} has no '{key}'"):
        run_measures(run)
