"""Bad input: a clear error naming the argument, or an honest "unavailable"."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marginkit.losses import build
from marginkit.metrics import (
    angular_geometry,
    class_centres,
    dir_at_far,
    identification_report,
    label_noise_report,
    lfw_ten_fold,
    make_pairs,
    nearest_centre_accuracy,
    open_set_report,
    oscr,
    retrieval_metrics,
    roc_curve,
    tar_at_far,
    top1_accuracy,
    verification_report,
)

EMBEDDINGS = np.random.default_rng(0).normal(size=(10, 3))
LABELS = np.array([0, 1] * 5)
SCORES = np.linspace(-1, 1, 10)
SAME = np.array([True, False] * 5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: top1_accuracy(EMBEDDINGS, LABELS[:9]), "logits has 10, labels has 9"),
        (lambda: angular_geometry(EMBEDDINGS, LABELS[:9]), "embeddings has 10, labels has 9"),
        (lambda: class_centres(EMBEDDINGS[:8], LABELS), "embeddings has 8, labels has 10"),
        (lambda: retrieval_metrics(EMBEDDINGS, LABELS[:3]), "embeddings has 10, labels has 3"),
        (
            lambda: nearest_centre_accuracy(EMBEDDINGS, LABELS, EMBEDDINGS, LABELS[:2]),
            "test_embeddings has 10, test_labels has 2",
        ),
        (lambda: roc_curve(SCORES, SAME[:4]), "scores has 10, same has 4"),
        (lambda: lfw_ten_fold(SCORES, SAME, LABELS[:5]), "fold has 5"),
        (
            lambda: verification_report(EMBEDDINGS, EMBEDDINGS[:9], SAME),
            "embeddings_first has 10, embeddings_second has 9",
        ),
        (
            lambda: label_noise_report(
                build("arcface", num_classes=2, embedding_dim=3), EMBEDDINGS, LABELS, LABELS[:7]
            ),
            "clean_labels has 7",
        ),
        (
            lambda: dir_at_far(EMBEDDINGS, LABELS, EMBEDDINGS[:4], LABELS),
            "probe_embeddings has 4, probe_labels has 10",
        ),
    ],
)
def test_lengths_must_match(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_a_single_class_is_refused() -> None:
    one_class = np.zeros(10, dtype=np.int64)
    with pytest.raises(ValueError, match="labels must contain at least 2 classes; got 1"):
        angular_geometry(EMBEDDINGS, one_class)
    with pytest.raises(ValueError, match="train_labels must contain at least 2 classes; got 1"):
        nearest_centre_accuracy(EMBEDDINGS, one_class, EMBEDDINGS, one_class)
    with pytest.raises(ValueError, match="same must contain both positives and negatives"):
        roc_curve(SCORES, np.ones(10, dtype=bool))
    with pytest.raises(ValueError, match="labels must contain both known"):
        oscr(EMBEDDINGS, LABELS)  # every label < 3 columns: no unknown sample


@pytest.mark.parametrize("far", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_fars_outside_the_open_interval_are_refused(far: float) -> None:
    with pytest.raises(ValueError, match=r"fars must lie strictly inside \(0, 1\)"):
        tar_at_far(SCORES, SAME, fars=(0.1, far))
    with pytest.raises(ValueError, match=r"fars must lie strictly inside \(0, 1\)"):
        verification_report(EMBEDDINGS, EMBEDDINGS[::-1], SAME, fars=far)
    with pytest.raises(ValueError, match=r"fars must lie strictly inside \(0, 1\)"):
        identification_report(EMBEDDINGS, LABELS, EMBEDDINGS, LABELS + 1, fars=(far,))


def test_fars_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(TypeError, match="fars must hold floats; got str"):
        tar_at_far(SCORES, SAME, fars=("0.1",))
    with pytest.raises(ValueError, match="fars must name at least one"):
        tar_at_far(SCORES, SAME, fars=())


def test_too_few_pairs_for_a_far_is_reported_unavailable_never_estimated() -> None:
    points = tar_at_far(SCORES, SAME, fars=(0.2, 0.1))  # 5 negative pairs
    assert points[0].available and points[0].rate is not None
    assert not points[1].available
    assert (points[1].rate, points[1].threshold, points[1].achieved_far) == (None, None, None)
    assert points[1].reason.startswith("only 5 negative pairs; a FAR of 0.1 needs at least 10")
    report = verification_report(EMBEDDINGS, EMBEDDINGS[::-1], SAME)
    assert all(p["rate"] is None and not p["available"] for p in report["tar_at_far"])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: top1_accuracy(EMBEDDINGS, LABELS.astype(float)),
            TypeError,
            "labels must be an integer",
        ),
        (lambda: top1_accuracy(EMBEDDINGS, LABELS + 3), ValueError, r"labels must lie in \[0, 3\)"),
        (lambda: angular_geometry(EMBEDDINGS, -LABELS), ValueError, "labels must be >= 0"),
        (lambda: angular_geometry(EMBEDDINGS[:, :1] * 0, LABELS), ValueError, "zero vector"),
        (
            lambda: angular_geometry(EMBEDDINGS, LABELS, np.ones((1, 3))),
            ValueError,
            r"labels must lie in \[0, 1\) \(the rows of weights\)",
        ),
        (
            lambda: angular_geometry(EMBEDDINGS, LABELS, np.ones((2, 4))),
            ValueError,
            "weights must have 3 columns",
        ),
        (
            lambda: angular_geometry(np.full((10, 3), np.nan), LABELS),
            ValueError,
            "embeddings contains NaN",
        ),
        (
            lambda: angular_geometry(EMBEDDINGS[0], LABELS),
            ValueError,
            r"embeddings must have shape \(N, D\)",
        ),
        (lambda: angular_geometry("x", LABELS), TypeError, "embeddings must be a torch.Tensor"),
        (lambda: roc_curve(SCORES, LABELS * 2), ValueError, "same must hold only 0/1"),
        (
            lambda: lfw_ten_fold(SCORES, SAME, np.zeros(10, np.int64)),
            ValueError,
            "at least two folds",
        ),
        (lambda: make_pairs(LABELS, num_positive=-1), ValueError, "num_positive must be >= 0"),
        (lambda: make_pairs(LABELS, num_folds=1), ValueError, "num_folds must be >= 2"),
        (
            lambda: retrieval_metrics(EMBEDDINGS, LABELS, chunk_size=0),
            ValueError,
            "chunk_size must be >= 1",
        ),
        (
            lambda: open_set_report(EMBEDDINGS, LABELS + 1, np.ones((2, 3)), num_known=3),
            ValueError,
            "num_known must equal the columns of scores",
        ),
        (
            lambda: identification_report(EMBEDDINGS, LABELS, EMBEDDINGS, LABELS + 2),
            ValueError,
            "no mated probe",
        ),
        (
            lambda: label_noise_report(
                build("cosface", num_classes=2, embedding_dim=3), EMBEDDINGS, LABELS, LABELS, 1.5
            ),
            ValueError,
            r"test_accuracy must lie in \[0, 1\]",
        ),
        (
            lambda: label_noise_report(torch.nn.Linear(3, 2), EMBEDDINGS, LABELS, LABELS),
            TypeError,
            "head must be a marginkit MarginHead",
        ),
        (
            lambda: label_noise_report(
                build("cosface", num_classes=2, embedding_dim=3), EMBEDDINGS, LABELS + 1, LABELS
            ),
            ValueError,
            r"labels must lie in \[0, 2\) \(head.num_classes\)",
        ),
    ],
)
def test_bad_values_name_the_argument(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("value", [True, False], ids=["only-positive", "only-negative"])
def test_lfw_ten_fold_needs_both_kinds_of_pairs(value: bool) -> None:
    """A threshold fitted on one kind of pair measures nothing (it used to report 97.5 %)."""
    scores = np.linspace(-1.0, 1.0, 40)
    with pytest.raises(ValueError, match="same must contain both positives and negatives"):
        lfw_ten_fold(scores, np.full(40, value), np.arange(40) % 10)
