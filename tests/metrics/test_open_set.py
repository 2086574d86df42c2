"""AUROC, OSCR, rank-1, rank-k and DIR at FAR on hand-made cases and against brute-force loops."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from marginkit.metrics import (
    cosine_scores_to,
    dir_at_far,
    identification_report,
    known_unknown_auroc,
    open_set_report,
    oscr,
    rank1_accuracy,
    rank_accuracies,
    split_gallery_probe,
)


def _scores_with_max(best: list[float], predicted: list[int], num_classes: int = 3) -> np.ndarray:
    """A score matrix whose row maxima and argmaxes are the given ones."""
    scores = np.full((len(best), num_classes), -1.0)
    scores[np.arange(len(best)), predicted] = best
    return scores


# known (label < 3): 0.9 correct, 0.8 wrong, 0.6 correct, 0.3 correct; unknown: 0.7, 0.4
HAND_SCORES = _scores_with_max([0.9, 0.8, 0.7, 0.6, 0.4, 0.3], [0, 1, 2, 2, 0, 1])
HAND_LABELS = np.array([0, 2, 3, 2, 5, 1])


def test_oscr_on_a_hand_made_case() -> None:
    result = oscr(HAND_SCORES, HAND_LABELS)
    # (FPR, CCR): (0,0) (0,.25) (0,.25) (.5,.25) (.5,.5) (1,.5) (1,.75)
    assert result["curve"]["fpr"] == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    assert result["curve"]["ccr"] == [0.0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.75]
    assert result["curve"]["thresholds"] == [None, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3]
    assert result["oscr"] == pytest.approx(0.5 * 0.25 + 0.5 * 0.5, abs=1e-15)
    assert result["closed_set_accuracy"] == 0.75


def test_oscr_groups_tied_scores() -> None:
    # a correct known and an unknown tie at 0.5: one diagonal step, area 0.5 * (0 + 1) / 2
    result = oscr(_scores_with_max([0.5, 0.5], [0, 0], 1), np.array([0, 1]))
    assert result["curve"]["fpr"] == [0.0, 1.0] and result["curve"]["ccr"] == [0.0, 1.0]
    assert result["oscr"] == 0.5


def test_oscr_of_a_perfect_open_set_classifier_is_one() -> None:
    scores = _scores_with_max([0.9, 0.8, 0.2, 0.1], [0, 1, 0, 1], 2)
    assert oscr(scores, np.array([0, 1, 2, 3]))["oscr"] == 1.0


def test_known_unknown_auroc_by_hand_and_by_sklearn() -> None:
    # known maxima 0.9, 0.8, 0.6, 0.3 vs unknown 0.7, 0.4: 5 of 8 pairs ordered right
    assert known_unknown_auroc(HAND_SCORES, HAND_LABELS) == 5 / 8
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 4)).round(1)
    labels = rng.integers(0, 7, size=200)
    expected = roc_auc_score(labels < 4, scores.max(axis=1))
    assert known_unknown_auroc(scores, labels, num_known=4) == pytest.approx(expected, abs=1e-12)


def test_open_set_report_uses_cosine_to_the_references() -> None:
    rng = np.random.default_rng(1)
    references = rng.normal(size=(3, 5))
    embeddings = rng.normal(size=(60, 5))
    labels = rng.integers(0, 5, size=60)
    cosine = np.array(
        [
            [np.dot(e, r) / np.linalg.norm(e) / np.linalg.norm(r) for r in references]
            for e in embeddings
        ]
    )
    np.testing.assert_allclose(cosine_scores_to(embeddings, references).numpy(), cosine, atol=1e-14)
    report = open_set_report(embeddings, labels, references)
    json.dumps(report, allow_nan=False)
    assert report["auroc"] == pytest.approx(roc_auc_score(labels < 3, cosine.max(axis=1)))
    assert report["oscr"] == pytest.approx(oscr(cosine, labels)["oscr"], abs=1e-12)
    assert report["num_unknown_samples"] == int((labels >= 3).sum())


# -------------------------------------------------------------------- identification
def _probe(identity: int, cosine: float) -> list[float]:
    """A unit probe at the given cosine to gallery direction ``identity`` (0 or 1), the rest
    of its length along the third axis (so its cosine to the other identity is 0)."""
    vector = [0.0, 0.0, math.sqrt(1 - cosine**2)]
    vector[identity] = cosine
    return vector


GALLERY = np.eye(3)[:2]  # identity 0 along x, identity 1 along y
GALLERY_LABELS = np.array([0, 1])
# mated: identity 0 found at 0.9; identity 1 but nearer identity 0 (a miss); identity 1 at 0.5
MATED = [_probe(0, 0.9), _probe(0, 0.7), _probe(1, 0.5)]
MATED_LABELS = [0, 1, 1]
NON_MATED_SCORES = [0.05 + 0.1 * k for k in range(10)]  # 0.05 ... 0.95
PROBES = np.array(MATED + [_probe(0, s) for s in NON_MATED_SCORES])
PROBE_LABELS = np.array(MATED_LABELS + [7] * 10)


def test_rank1_and_dir_at_far_on_a_hand_made_case() -> None:
    assert rank1_accuracy(GALLERY, GALLERY_LABELS, PROBES, PROBE_LABELS) == 2 / 3
    points = dir_at_far(GALLERY, GALLERY_LABELS, PROBES, PROBE_LABELS, fars=(0.1, 0.2, 0.5, 0.01))
    # FAR 0.1: one non-mated accept allowed (0.95) -> threshold 0.9, only the 0.9 hit counts
    assert points[0]["rate"] == pytest.approx(1 / 3) and points[0]["threshold"] == pytest.approx(
        0.9
    )
    assert points[0]["achieved_far"] == pytest.approx(0.1)
    # FAR 0.2: two allowed -> threshold 0.85; FAR 0.5: five allowed -> threshold 0.5 (the
    # identity-1 hit); the miss at 0.7 never counts
    assert points[1]["rate"] == pytest.approx(1 / 3) and points[1]["threshold"] == pytest.approx(
        0.85
    )
    assert points[2]["rate"] == pytest.approx(2 / 3) and points[2]["threshold"] == pytest.approx(
        0.5
    )
    assert points[3]["available"] is False and points[3]["rate"] is None
    assert "only 10 non-mated probes" in points[3]["reason"]


def test_dir_at_far_matches_a_threshold_loop() -> None:
    rng = np.random.default_rng(2)
    gallery = rng.normal(size=(20, 6))
    gallery_labels = np.arange(20)
    probe_labels = rng.integers(0, 40, size=300)
    probes = np.where(
        (probe_labels < 20)[:, None], gallery[np.minimum(probe_labels, 19)], 0.0
    ) + 1.2 * rng.normal(size=(300, 6))
    cosine = cosine_scores_to(probes, gallery).numpy()
    best, nearest = cosine.max(axis=1), cosine.argmax(axis=1)
    mated = probe_labels < 20
    hit = mated & (nearest == probe_labels)
    for far in (0.1, 0.02):
        best_rate = 0.0
        for threshold in sorted(set(best.tolist())):  # every candidate threshold
            false_accepts = sum(
                1 for s, m in zip(best, mated, strict=True) if not m and s >= threshold
            )
            if false_accepts <= far * (~mated).sum():
                hits = sum(1 for s, h in zip(best, hit, strict=True) if h and s >= threshold)
                best_rate = max(best_rate, hits / mated.sum())
        (point,) = dir_at_far(gallery, gallery_labels, probes, probe_labels, fars=far)
        assert point["rate"] == pytest.approx(best_rate, abs=1e-15)
    assert rank1_accuracy(gallery, gallery_labels, probes, probe_labels) == hit.sum() / mated.sum()


def test_dir_without_non_mated_probes_is_unavailable() -> None:
    report = identification_report(GALLERY, GALLERY_LABELS, PROBES[:3], PROBE_LABELS[:3])
    assert report["rank1"] == 2 / 3 and report["num_non_mated_probes"] == 0
    assert all(
        not p["available"] and "no non-mated probes" in p["reason"] for p in report["dir_at_far"]
    )
    json.dumps(report, allow_nan=False)


def test_split_gallery_probe() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 4])  # known: 0, 1, 2
    gallery, probe = split_gallery_probe(labels, num_known=3, gallery_per_class=1, seed=4)
    assert sorted(gallery.tolist() + probe.tolist()) == list(range(9))
    assert sorted(labels[gallery.numpy()].tolist()) == [0, 1, 2]
    assert set(labels[probe.numpy()].tolist()) == {0, 1, 3, 4}
    again = split_gallery_probe(labels, num_known=3, gallery_per_class=1, seed=4)
    assert gallery.tolist() == again[0].tolist()
    two, _ = split_gallery_probe(labels, num_known=3, gallery_per_class=2, seed=4)
    assert sorted(labels[two.numpy()].tolist()) == [0, 0, 1, 1, 2]


def _naive_ranks(
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    probes: np.ndarray,
    probe_labels: np.ndarray,
    ranks: tuple[int, ...],
) -> dict[int, float]:
    """Rank-k by plain loops: per mated probe, each identity's best cosine, then the number
    of identities scoring at least as high as the probe's own."""
    places = []
    for probe, label in zip(probes, probe_labels, strict=True):
        if label not in set(gallery_labels.tolist()):
            continue
        best: dict[int, float] = {}
        for row, identity in zip(gallery, gallery_labels.tolist(), strict=True):
            cosine = float(probe @ row / (np.linalg.norm(probe) * np.linalg.norm(row)))
            best[identity] = max(best.get(identity, -2.0), cosine)
        places.append(sum(1 for score in best.values() if score >= best[int(label)]))
    return {k: sum(1 for place in places if place <= k) / len(places) for k in ranks}


def test_rank_accuracies_on_a_hand_made_case() -> None:
    # identity 0: two gallery rows (x, and y); identity 1: z; identity 2: -x
    gallery = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [-1.0, 0, 0]])
    gallery_labels = np.array([0, 0, 1, 2])
    probes = np.array(
        [
            [0.1, 0.9, 0.2],  # identity 0 (its second row) first: rank 1
            [0.9, 0.1, 0.5],  # identity 1: below identity 0 -> rank 2
            [-0.9, 0.2, 0.1],  # identity 1: below 2 and 0 -> rank 3
            [0.0, 0.0, 1.0],  # identity 9: not in the gallery, ignored
        ]
    )
    probe_labels = np.array([0, 1, 1, 9])
    assert rank_accuracies(gallery, gallery_labels, probes, probe_labels, (1, 2, 3, 5)) == {
        1: 1 / 3,
        2: 2 / 3,
        3: 1.0,
        5: 1.0,
    }


def test_a_tie_with_another_identity_counts_against_the_probe() -> None:
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    probe = np.array([[1.0, 1.0]])  # equal cosine with both identities
    assert rank_accuracies(gallery, np.array([0, 1]), probe, np.array([0]), (1, 2)) == {
        1: 0.0,
        2: 1.0,
    }


def test_rank_accuracies_match_plain_loops_in_chunks() -> None:
    rng = np.random.default_rng(5)
    gallery = rng.normal(size=(30, 5))
    gallery_labels = rng.integers(0, 12, size=30)  # several rows per identity
    probe_labels = rng.integers(0, 16, size=200)
    probes = rng.normal(size=(200, 5)) + np.where(
        np.isin(probe_labels, gallery_labels)[:, None],
        gallery[np.argmax(gallery_labels[None, :] == probe_labels[:, None], axis=1)],
        0.0,
    )
    ranks = (1, 2, 5, 10)
    expected = _naive_ranks(gallery, gallery_labels, probes, probe_labels, ranks)
    for chunk_size in (7, 1024):
        found = rank_accuracies(gallery, gallery_labels, probes, probe_labels, ranks, chunk_size)
        assert found == pytest.approx(expected, abs=1e-15)
    assert found[1] == rank1_accuracy(gallery, gallery_labels, probes, probe_labels)


def test_rank_accuracies_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="no mated probe"):
        rank_accuracies(GALLERY, GALLERY_LABELS, PROBES, PROBE_LABELS + 100)
    with pytest.raises(ValueError, match="ranks"):
        rank_accuracies(GALLERY, GALLERY_LABELS, PROBES, PROBE_LABELS, (0,))
