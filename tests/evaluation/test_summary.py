"""marginkit.evaluation.summary: the report's fractions printed as percentages."""

from __future__ import annotations

from marginkit.evaluation import summarize


def test_fractions_are_printed_as_percentages() -> None:
    report = {
        "run": "runs/x",
        "epoch": 3,
        "checkpoint": "runs/x/checkpoints/epoch-0003",
        "loss": "arcface",
        "dataset": "digits",
        "split": "test",
        "accuracy": 0.8074,
        "analysis": {"closed_set": {"nearest_centre_accuracy": 0.7946}},
    }
    lines = summarize(report).splitlines()
    assert lines[0].endswith("arcface on digits (test), accuracy 80.74 %")
    assert lines[1] == "  nearest class centre: 79.46 %"
    assert summarize({**report, "accuracy": None}).splitlines()[0].endswith("accuracy n/a")
