"""ROC, AUC, EER, TAR@FAR against scikit-learn; LFW 10-fold and pair generation against loops."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from data_writers import SHARED_DATA, needs_real
from scipy.optimize import brentq
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from marginkit.data.pairs import read_pairs
from marginkit.metrics import (
    assign_folds,
    auc,
    cosine_scores,
    equal_error_rate,
    lfw_ten_fold,
    make_pairs,
    roc_curve,
    tar_at_far,
    verification_report,
)
from marginkit.metrics.verification import MAX_ENUMERATED_PAIRS, _upper_pair


def _scored(size: int, seed: int, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = rng.random(size) < 0.4
    scores = rng.normal(size=size) + 1.2 * same
    if decimals is not None:  # coarse scores: many ties across positives and negatives
        scores = np.round(scores, decimals)
    return scores, same


@pytest.mark.parametrize(("size", "seed", "decimals"), [(400, 0, None), (400, 1, 1), (37, 2, 0)])
def test_roc_and_auc_match_sklearn(size: int, seed: int, decimals: int | None) -> None:
    scores, same = _scored(size, seed, decimals)
    curve = roc_curve(torch.from_numpy(scores), torch.from_numpy(same))
    far, tar, thresholds = sklearn_roc_curve(same, scores, drop_intermediate=False)
    np.testing.assert_allclose(curve.far, far, rtol=0, atol=1e-15)
    np.testing.assert_allclose(curve.tar, tar, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(curve.thresholds, thresholds)
    assert auc(scores, same) == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    assert curve.num_positive == int(same.sum())


@pytest.mark.parametrize(("seed", "decimals"), [(3, None), (4, 1), (5, 0)])
def test_equal_error_rate_matches_a_root_of_the_sklearn_roc(
    seed: int, decimals: int | None
) -> None:
    scores, same = _scored(300, seed, decimals)
    far, tar, thresholds = sklearn_roc_curve(same, scores, drop_intermediate=False)

    def tar_of(x: float) -> float:  # upper envelope of the piecewise-linear ROC
        right = np.searchsorted(far, x, side="right")
        if right >= far.shape[0]:
            return float(tar[-1])
        left = right - 1
        return float(
            tar[left] + (x - far[left]) * (tar[right] - tar[left]) / (far[right] - far[left])
        )

    expected = brentq(lambda x: 1.0 - x - tar_of(x), 0.0, 1.0, xtol=1e-14)
    eer, threshold = equal_error_rate(scores, same)
    assert eer == pytest.approx(expected, abs=1e-9)
    # the threshold is that of the first ROC point with FAR >= FRR
    first = int(np.argmax(far >= 1.0 - tar))
    assert threshold == thresholds[first]


def test_tar_at_far_matches_the_sklearn_roc() -> None:
    scores, same = _scored(3000, 6, 2)
    far, tar, thresholds = sklearn_roc_curve(same, scores, drop_intermediate=False)
    points = tar_at_far(scores, same, fars=(0.3, 0.1, 1e-3, 1e-4))
    num_negative = int((~same).sum())
    assert [p.far for p in points] == [0.3, 0.1, 1e-3, 1e-4]
    for point in points[:3]:
        index = np.flatnonzero(far <= point.far)[-1]
        assert point.available and point.reason is None
        assert point.rate == tar[index]
        assert point.threshold == thresholds[index]
        assert point.achieved_far <= point.far
        # the rate really is measured at that threshold
        accepted = scores >= point.threshold
        assert point.rate == accepted[same].mean()
        assert point.achieved_far == accepted[~same].sum() / num_negative
    assert not points[3].available and points[3].rate is None
    assert f"only {num_negative} negative pairs" in points[3].reason
    assert "at least 10000" in points[3].reason


def test_tar_at_far_is_unavailable_below_one_over_far_negatives() -> None:
    rng = np.random.default_rng(7)
    same = np.r_[np.ones(200, bool), np.zeros(50, bool)]
    scores = rng.normal(size=250) + same
    exact, short = tar_at_far(scores, same, fars=(1 / 50, 1e-2))
    assert exact.available and exact.rate is not None
    assert not short.available and short.rate is None and short.threshold is None
    assert short.reason == (
        "only 50 negative pairs; a FAR of 0.01 needs at least 100 so that one false accept "
        "is within it"
    )


def test_tar_at_far_when_the_top_score_is_a_negative() -> None:
    scores = np.array([0.9, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01, 0.0, -0.1, -0.2])
    same = np.array([0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0], bool)  # two tied negatives on top
    (point,) = tar_at_far(scores, same, fars=0.1)  # 10 negatives: 1 false accept allowed
    assert point.available and point.rate == 0.0 and point.threshold == math.inf
    assert point.to_dict()["threshold"] is None


# ------------------------------------------------------------------------ 10-fold
def _loop_ten_fold(scores, same, fold):
    accuracies, thresholds = [], []
    for held_out in sorted(set(fold.tolist())):
        train = [(s, t) for s, t, f in zip(scores, same, fold, strict=True) if f != held_out]
        values = sorted({s for s, _ in train})
        candidates = [values[0]]
        candidates += [(a + b) / 2 for a, b in itertools.pairwise(values)]
        candidates.append(float(np.nextafter(values[-1], np.inf)))
        accuracy = [sum((s >= c) == t for s, t in train) for c in candidates]
        best = [c for c, a in zip(candidates, accuracy, strict=True) if a == max(accuracy)]
        threshold = best[(len(best) - 1) // 2]
        test = [(s, t) for s, t, f in zip(scores, same, fold, strict=True) if f == held_out]
        accuracies.append(sum((s >= threshold) == t for s, t in test) / len(test))
        thresholds.append(threshold)
    return accuracies, thresholds


@pytest.mark.parametrize("decimals", [None, 1])
def test_lfw_ten_fold_matches_a_loop(decimals: int | None) -> None:
    scores, same = _scored(300, 8, decimals)
    fold = np.random.default_rng(9).permutation(np.arange(300) % 10)
    result = lfw_ten_fold(scores, same, fold)
    accuracies, thresholds = _loop_ten_fold(scores, same, fold)
    assert result["folds"] == list(range(10))
    np.testing.assert_allclose(result["accuracies"], accuracies, rtol=0, atol=1e-15)
    np.testing.assert_allclose(result["thresholds"], thresholds, rtol=0, atol=1e-15)
    assert result["mean"] == pytest.approx(np.mean(accuracies), abs=1e-15)
    assert result["std"] == pytest.approx(np.std(accuracies), abs=1e-15)
    assert result["standard_error"] == pytest.approx(np.std(accuracies, ddof=1) / math.sqrt(10))
    assert 0.6 < result["mean"] < 0.95


def test_lfw_ten_fold_on_separable_pairs_is_perfect() -> None:
    same = np.tile([True, False], 20)
    scores = np.where(same, 0.8, 0.2) + np.linspace(0, 0.1, 40)
    result = lfw_ten_fold(scores, same, np.arange(40) % 10)
    assert result["accuracies"] == [1.0] * 10 and result["std"] == 0.0
    assert all(0.3 < t < 0.8 for t in result["thresholds"])


# ---------------------------------------------------------------------------- pairs
def test_upper_pair_decoding_is_exact() -> None:
    for size in range(2, 40):
        first, second = np.triu_indices(size, k=1)
        decoded = _upper_pair(np.arange(first.shape[0]), size)
        np.testing.assert_array_equal(decoded[0], first)
        np.testing.assert_array_equal(decoded[1], second)
    size = 3_000_000  # row boundaries where a float square root could be off by one
    rows = np.array([0, 1, 2, 1_000_000, size - 3, size - 2])
    starts = rows * (2 * size - rows - 1) // 2
    index = np.concatenate([starts, starts[1:] - 1])
    first, second = _upper_pair(index, size)
    np.testing.assert_array_equal(first, np.concatenate([rows, rows[1:] - 1]))
    np.testing.assert_array_equal(second[: rows.shape[0]], rows + 1)
    np.testing.assert_array_equal(second[rows.shape[0] :], np.full(rows.shape[0] - 1, size - 1))


def test_make_pairs_enumerates_all_pairs() -> None:
    labels = np.array([3, 1, 3, 2, 1, 3, 0])
    pairs = make_pairs(labels)
    expected_positive = [
        (i, j) for i, j in itertools.combinations(range(7), 2) if labels[i] == labels[j]
    ]
    expected_negative = [
        (i, j) for i, j in itertools.combinations(range(7), 2) if labels[i] != labels[j]
    ]
    got = list(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))
    assert got == expected_positive + expected_negative
    assert pairs.same.tolist() == [True] * len(expected_positive) + [False] * len(expected_negative)
    assert pairs.first.dtype == torch.int64 and pairs.same.dtype == torch.bool


@pytest.mark.parametrize(("size", "num_negative"), [(300, 500), (300, 20000), (200_000, 3000)])
def test_make_pairs_samples_valid_distinct_deterministic_pairs(
    size: int, num_negative: int
) -> None:
    labels = np.random.default_rng(10).integers(0, 12, size=size)
    pairs = make_pairs(labels, num_positive=400, num_negative=num_negative, seed=5)
    first, second, same = pairs.first.numpy(), pairs.second.numpy(), pairs.same.numpy()
    assert same.sum() == 400 and (~same).sum() == num_negative
    assert (first < second).all() and (second < size).all()
    np.testing.assert_array_equal(labels[first] == labels[second], same)
    assert len(set(zip(first.tolist(), second.tolist(), strict=True))) == first.shape[0]
    again = make_pairs(labels, num_positive=400, num_negative=num_negative, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(pairs, again, strict=True))
    other = make_pairs(labels, num_positive=400, num_negative=num_negative, seed=6)
    assert not torch.equal(pairs.first, other.first)
    for kind in (same, ~same):  # folds balanced within positives and within negatives
        counts = np.bincount(pairs.fold.numpy()[kind], minlength=10)
        assert counts.max() - counts.min() <= 1


def test_make_pairs_refuses_an_enumeration_too_large() -> None:
    labels = np.arange(10_000) % 2  # ~25e6 pairs of each kind
    assert MAX_ENUMERATED_PAIRS < 5000 * 4999
    with pytest.raises(ValueError, match="num_positive must be given"):
        make_pairs(labels)
    with pytest.raises(ValueError, match="num_negative must be given"):
        make_pairs(labels, num_positive=10)
    with pytest.raises(
        ValueError, match="num_negative asks for 9 different-label pairs but only 8 exist"
    ):
        make_pairs(np.array([0, 0, 1, 1, 2]), num_negative=9)


# --------------------------------------------------------------------------- report
def test_cosine_scores_match_a_loop() -> None:
    rng = np.random.default_rng(11)
    first, second = rng.normal(size=(20, 6)), rng.normal(size=(20, 6))
    expected = [
        float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))
        for a, b in zip(first, second, strict=True)
    ]
    np.testing.assert_allclose(cosine_scores(first, second), expected, rtol=0, atol=1e-14)


def test_verification_report_bundles_the_measures() -> None:
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 30, size=400)
    centres = rng.normal(size=(30, 16))
    embeddings = centres[labels] + 0.8 * rng.normal(size=(400, 16))
    pairs = make_pairs(labels, num_positive=300, num_negative=300, seed=0)
    first, second = embeddings[pairs.first.numpy()], embeddings[pairs.second.numpy()]
    report = verification_report(first, second, pairs.same, pairs.fold, max_roc_points=50)
    scores = cosine_scores(first, second)
    same = pairs.same.numpy()
    json.dumps(report, allow_nan=False)  # strict JSON: no inf, no NaN
    assert report["num_pairs"] == 600 and report["num_negative"] == 300
    assert report["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    assert report["eer"] == pytest.approx(equal_error_rate(scores, same)[0], abs=0)
    assert [p["available"] for p in report["tar_at_far"]] == [True, True, False, False]
    assert report["ten_fold"] == {
        **lfw_ten_fold(scores, same, pairs.fold),
        "fold_source": "given",
    }
    assert len(report["roc"]["far"]) == 50 and report["roc"]["thresholds"][0] is None
    assert report["roc"]["far"][-1] == 1.0 and report["roc"]["tar"][-1] == 1.0
    assert report["auc"] > 0.9
    # no folds (or a single one, as in LFW View 1 files): folds are assigned, and said so
    for fold in (None, torch.zeros(600, dtype=torch.int64)):
        assigned = verification_report(first, second, pairs.same, fold)["ten_fold"]
        assert assigned["fold_source"].startswith("assigned: 10 folds")
        expected = lfw_ten_fold(scores, same, assign_folds(pairs.same))
        assert assigned["accuracies"] == expected["accuracies"]


def test_assign_folds_cuts_each_kind_into_runs_in_order() -> None:
    same = torch.tensor([True, True, False, True, False, False, True])
    assert assign_folds(same, num_folds=2).tolist() == [0, 0, 0, 1, 0, 1, 1]
    # runs as scikit-learn's KFold without shuffling: the first count % 10 one longer
    assert assign_folds(torch.ones(23, dtype=torch.bool)).bincount().tolist() == [3] * 3 + [2] * 7
    assert assign_folds(torch.tensor([True] * 3 + [False])).tolist() == [0, 1, 2, 0]


def test_assign_folds_gives_the_official_blocks_and_ignores_the_order_of_kinds() -> None:
    """Ten blocks of 30 matched and 20 mismatched pairs, shuffled within each block (the
    layout of LFW's pairs.txt and InsightFace's lfw.bin): the folds are the blocks; the same
    pairs grouped by kind (a View 1 file's layout) keep every pair's fold, and each fold
    holds both kinds in the file's proportion."""
    rng = np.random.default_rng(0)
    blocks = [rng.permutation([True] * 30 + [False] * 20) for _ in range(10)]
    same = torch.from_numpy(np.concatenate(blocks))
    folds = assign_folds(same)
    assert torch.equal(folds, torch.arange(500) // 50)
    by_kind = torch.argsort(~same, stable=True)  # matched first, each kind in order
    assert torch.equal(assign_folds(same[by_kind]), folds[by_kind])
    for fold in range(10):
        assert same[folds == fold].sum() == 30 and (~same[folds == fold]).sum() == 20


@needs_real("lfw")
def test_assigned_folds_of_the_real_pairs_txt_are_its_official_folds() -> None:
    listed = read_pairs(SHARED_DATA / "lfw" / "pairs.txt")  # View 2: 10 x (300 + 300)
    assert torch.equal(assign_folds(listed.same), listed.fold)
