"""Accuracies in run files are fractions; files of earlier versions (percent) are converted."""

from __future__ import annotations

import pytest

from marginkit.runfiles import ACCURACY_UNIT, metrics_in_fractions, percent, rows_in_fractions


def test_percent_files_without_a_unit_are_converted() -> None:
    old = {
        "epochs": [{"epoch": 1, "train_accuracy": 90.0, "test_accuracy": 95.5, "lr": 0.1}],
        "final": {"test_accuracy": 95.5, "validation_accuracy": None, "train_loss": 0.3},
    }
    new = metrics_in_fractions(old)
    assert new["accuracy_unit"] == ACCURACY_UNIT == "fraction"
    assert new["epochs"][0] == {
        "epoch": 1,
        "train_accuracy": 0.9,
        "test_accuracy": 0.955,
        "lr": 0.1,
    }
    assert new["final"] == {"test_accuracy": 0.955, "validation_accuracy": None, "train_loss": 0.3}
    assert old["epochs"][0]["test_accuracy"] == 95.5  # not changed in place


def test_fraction_files_are_read_as_they_are() -> None:
    metrics = {"accuracy_unit": "fraction", "epochs": [{"test_accuracy": 0.5}], "final": {}}
    assert metrics_in_fractions(metrics) == metrics
    assert rows_in_fractions([{"test_accuracy": 0.5}], "fraction") == [{"test_accuracy": 0.5}]


def test_percent_for_printing() -> None:
    assert percent(0.9533) == pytest.approx(95.33)
    assert percent(None) is None
