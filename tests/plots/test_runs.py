"""ROC and learning-curve pictures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from marginkit.plots import build_learning_curves, build_roc_curves, learning_curves, roc_curves


def _roc(separation: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = np.r_[np.ones(200), np.zeros(200)]
    scores = np.r_[rng.normal(separation, 1, 200), rng.normal(0, 1, 200)]
    far, tar, _ = roc_curve(truth, scores)
    return (far, tar), roc_auc_score(truth, scores)


def test_roc_curves_draw_each_run_on_a_log_far_axis(tmp_path):
    (curve_a, auc_a), (curve_b, auc_b) = _roc(1.0), _roc(2.0, seed=1)
    fig = build_roc_curves({"softmax": curve_a, "ArcFace": curve_b})
    (axes,) = fig.axes
    assert axes.get_xscale() == "log"
    assert "FAR" in axes.get_xlabel() and "TAR" in axes.get_ylabel()
    labels = [t.get_text() for t in axes.get_legend().get_texts()]
    assert labels == [
        f"softmax (AUC {auc_a:.4f})",
        f"ArcFace (AUC {auc_b:.4f})",
        "chance (TAR = FAR)",
    ]
    line = axes.lines[0]
    keep = curve_a[0] > 0
    np.testing.assert_allclose(line.get_xdata(), curve_a[0][keep])
    np.testing.assert_allclose(line.get_ydata(), curve_a[1][keep])
    smallest = min(curve_a[0][keep].min(), curve_b[0][curve_b[0] > 0].min())
    assert axes.get_xlim()[0] == pytest.approx(10 ** math.floor(math.log10(smallest)))
    paths = roc_curves({"softmax": curve_a}, tmp_path / "roc")
    assert all(p.stat().st_size > 1000 for p in paths)


def test_roc_curve_that_does_not_span_far_0_to_1_gets_no_auc():
    fig = build_roc_curves({"partial": ([1e-3, 1e-2, 0.1], [0.2, 0.5, 0.9])})
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "partial"


@pytest.mark.parametrize(
    ("curves", "error", "match"),
    [
        ({}, ValueError, "curves is empty"),
        ([([0, 1], [0, 1])], TypeError, "curves must be a dict"),
        ({"a": ([0, 0.5, 1], [0, 1])}, ValueError, r"curves\['a'\] has 3 FAR values but 2"),
        ({"a": ([0, 1], [0, 1.5])}, ValueError, r"curves\['a'\] tar must lie in \[0, 1\]"),
        ({"a": ([0, 0], [0, 1])}, ValueError, "FAR > 0"),
        ({"a": [0, 1, 2]}, ValueError, "pair"),
    ],
)
def test_roc_curves_bad_input(curves, error, match):
    with pytest.raises(error, match=match):
        build_roc_curves(curves)


def _metrics(epochs: int = 5, with_lambda: bool = True) -> dict:
    rows = []
    for epoch in range(1, epochs + 1):
        row = {
            "epoch": epoch,
            "train_loss": 2.0 / epoch,
            "train_accuracy": 1 - 0.5 / epoch,
            "test_accuracy": 1 - 0.6 / epoch,
            "images_per_second": 100.0,
            "wall_time": float(epoch),
            "hyperparameters": {"scale": 1.0},
        }
        if with_lambda:
            row["hyperparameters"]["lambda_"] = 1000.0 / epoch**2
        rows.append(row)
    return {"epochs": rows, "final": {"test_accuracy": 0.88}}


def test_learning_curves_from_a_run_folder(tmp_path):
    run = tmp_path / "runs" / "lsoftmax"
    run.mkdir(parents=True)
    metrics = _metrics()
    (run / "metrics.json").write_text(json.dumps(metrics))
    fig = build_learning_curves(run, accuracy_unit="fraction")
    loss_axes, accuracy_axes, lambda_axes = fig.axes
    assert loss_axes.get_title() == "Loss" and accuracy_axes.get_title() == "Accuracy"
    assert loss_axes.get_xlabel() == "epoch"
    (train_loss,) = [line for line in loss_axes.lines if line.get_label() == "train loss"]
    np.testing.assert_allclose(train_loss.get_xdata(), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(train_loss.get_ydata(), [2.0 / e for e in range(1, 6)])
    (test_accuracy,) = [line for line in accuracy_axes.lines if line.get_label() == "test accuracy"]
    np.testing.assert_allclose(
        test_accuracy.get_ydata(), [100 * (1 - 0.6 / e) for e in range(1, 6)]
    )
    assert lambda_axes.get_ylabel() == "lambda"
    np.testing.assert_allclose(
        lambda_axes.lines[0].get_ydata(), [1000.0 / e**2 for e in range(1, 6)]
    )
    legend = [t.get_text() for t in accuracy_axes.get_legend().get_texts()]
    assert "constant: scale=1" in legend
    paths = learning_curves(run / "metrics.json", tmp_path / "curves")
    assert all(p.stat().st_size > 1000 for p in paths)


def test_learning_curves_tolerate_missing_keys_and_label_several_runs():
    sparse = {
        "epochs": [
            {"train_loss": 1.0, "hyperparameters": None},
            {"train_loss": 0.5, "test_accuracy": 0.7, "hyperparameters": ["not", "a", "dict"]},
            {},
        ]
    }
    fig = build_learning_curves({"full": _metrics(3, with_lambda=False), "sparse": sparse})
    loss_axes, accuracy_axes = fig.axes  # nothing changes, so no twin axis
    (sparse_loss,) = [line for line in loss_axes.lines if line.get_label() == "sparse: train loss"]
    np.testing.assert_allclose(sparse_loss.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(sparse_loss.get_ydata(), [1.0, 0.5, np.nan])
    labels = [line.get_label() for line in accuracy_axes.lines]
    assert "sparse: test accuracy" in labels and "sparse: train accuracy" not in labels
    (sparse_test,) = [
        line for line in accuracy_axes.lines if line.get_label() == "sparse: test accuracy"
    ]
    np.testing.assert_allclose(sparse_test.get_ydata(), [np.nan, 0.7, np.nan])  # percent as is


def test_learning_curves_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no epochs"):
        build_learning_curves({"epochs": []})
    with pytest.raises(ValueError, match="'epochs' list"):
        build_learning_curves([{"final": {}}])
    with pytest.raises(FileNotFoundError, match="metrics"):
        build_learning_curves(tmp_path / "missing")
    with pytest.raises(TypeError, match="runs"):
        build_learning_curves(3)
    with pytest.raises(ValueError, match="accuracy_unit"):
        build_learning_curves({"epochs": [{}]}, accuracy_unit="ratio")  # type: ignore[arg-type]


def test_learning_curves_read_each_runs_own_accuracy_unit():
    fraction = {**_metrics(2, with_lambda=False), "accuracy_unit": "fraction"}
    percent = _metrics(2, with_lambda=False)  # an earlier version's file: percent, no unit
    for row in percent["epochs"]:
        row["test_accuracy"] *= 100
    fig = build_learning_curves({"new": fraction, "old": percent})
    accuracy_axes = fig.axes[1]
    for name in ("new", "old"):
        (line,) = [x for x in accuracy_axes.lines if x.get_label() == f"{name}: test accuracy"]
        np.testing.assert_allclose(line.get_ydata(), [100 * (1 - 0.6 / e) for e in (1, 2)])


def test_verifications_are_drawn_at_their_place_within_the_epoch() -> None:
    def record(step: int, accuracy: float) -> dict[str, object]:
        return {"step": step, "sets": {"lfw": {"accuracy": accuracy, "auc": 0.9}}}

    epochs = [
        {
            "epoch": 1,
            "step": 4,
            "train_loss": 1.0,
            "train_accuracy": 0.5,
            "verification_steps": [record(3, 0.6)],
            "verification": record(4, 0.7),
        },
        {
            "epoch": 2,
            "step": 8,
            "train_loss": 0.5,
            "train_accuracy": 0.6,
            "verification_steps": [record(6, 0.8)],
            "verification": record(8, 0.75),
        },
    ]
    figure = build_learning_curves({"epochs": epochs, "accuracy_unit": "fraction"})
    (line,) = [
        line
        for line in figure.axes[1].lines
        if line.get_label() == "verification lfw (10-fold, flip)"
    ]
    np.testing.assert_allclose(line.get_xdata(), [0.75, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(line.get_ydata(), [60.0, 70.0, 80.0, 75.0])
