"""Closed-set accuracy, class centres and angular geometry against explicit loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from marginkit.metrics import (
    angular_geometry,
    class_centres,
    nearest_centre_accuracy,
    top1_accuracy,
)
from marginkit.metrics.sphere import angles_between, pairwise_angles


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / math.sqrt(float(np.dot(vector, vector)))


def _angle(first: np.ndarray, second: np.ndarray) -> float:
    cosine = float(np.dot(_unit(first), _unit(second)))
    return math.acos(max(-1.0, min(1.0, cosine)))


def _loop_centres(embeddings: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    centres = {}
    for label in sorted(set(labels.tolist())):
        total = np.zeros(embeddings.shape[1])
        for row, row_label in zip(embeddings, labels, strict=True):
            if row_label == label:
                total += _unit(row)
        centres[label] = _unit(total)
    return centres


@pytest.fixture
def clustered() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(4, 5))
    labels = rng.integers(0, 4, size=120)
    labels[:4] = np.arange(4)
    embeddings = directions[labels] + 0.6 * rng.normal(size=(120, 5))
    weights = directions + 0.3 * rng.normal(size=(4, 5))
    return embeddings * rng.uniform(0.5, 3.0, size=(120, 1)), labels, weights


def test_top1_accuracy_matches_a_loop() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(50, 7))
    labels = rng.integers(0, 7, size=50)
    expected = sum(int(np.argmax(row) == label) for row, label in zip(logits, labels, strict=True))
    assert top1_accuracy(torch.from_numpy(logits), torch.from_numpy(labels)) == expected / 50
    assert top1_accuracy(logits, labels) == expected / 50


def test_nearest_centre_accuracy_matches_a_loop(clustered) -> None:
    embeddings, labels, _ = clustered
    train, test = slice(0, 80), slice(80, 120)
    centres = _loop_centres(embeddings[train], labels[train])
    correct = 0
    for row, label in zip(embeddings[test], labels[test], strict=True):
        best = max(centres, key=lambda k: float(np.dot(_unit(row), centres[k])))
        correct += int(best == label)
    result = nearest_centre_accuracy(
        embeddings[train], labels[train], embeddings[test], labels[test]
    )
    assert result == pytest.approx(correct / 40, abs=0)
    assert 0.3 < result < 1.0  # informative data: neither chance nor trivial


def test_nearest_centre_counts_unseen_test_class_as_error() -> None:
    train = np.array([[1.0, 0.0], [0.0, 1.0]])
    test = np.array([[1.0, 0.1], [0.1, 1.0]])
    assert nearest_centre_accuracy(train, [0, 1], test, [0, 5]) == 0.5


def test_class_centres_match_a_loop(clustered) -> None:
    embeddings, labels, _ = clustered
    classes, centres = class_centres(embeddings, labels)
    expected = _loop_centres(embeddings, labels)
    assert classes.tolist() == sorted(expected)
    for k, label in enumerate(classes.tolist()):
        np.testing.assert_allclose(centres[k].numpy(), expected[label], atol=1e-12)


def test_angles_are_accurate_near_zero_and_pi() -> None:
    theta = torch.tensor([1e-9, 1e-4, 0.5, math.pi - 1e-7], dtype=torch.float64)
    first = torch.stack([torch.ones_like(theta), torch.zeros_like(theta)], dim=1)
    second = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    torch.testing.assert_close(angles_between(first, second), theta, rtol=1e-9, atol=0)
    # the all-pairs form goes through a dot product: absolute accuracy ~ sqrt(eps) ~ 1.5e-8
    torch.testing.assert_close(
        pairwise_angles(first, second).diagonal(), theta, rtol=1e-6, atol=3e-8
    )


def test_angular_geometry_matches_loops(clustered) -> None:
    embeddings, labels, weights = clustered
    result = angular_geometry(torch.from_numpy(embeddings), torch.from_numpy(labels), weights)
    centres = _loop_centres(embeddings, labels)
    intra = np.array(
        [_angle(row, centres[int(label)]) for row, label in zip(embeddings, labels, strict=True)]
    )
    to_weight = np.array(
        [_angle(row, weights[int(label)]) for row, label in zip(embeddings, labels, strict=True)]
    )
    keys = sorted(centres)
    between = {(a, b): _angle(centres[a], centres[b]) for a in keys for b in keys if a < b}
    overall = result["overall"]
    assert result["num_classes"] == 4 and result["num_samples"] == 120
    assert overall["compactness_mean"] == pytest.approx(intra.mean(), abs=1e-10)
    assert overall["compactness_std"] == pytest.approx(intra.std(), abs=1e-10)
    assert overall["separation_min"] == pytest.approx(min(between.values()), abs=1e-10)
    assert overall["separation_mean"] == pytest.approx(np.mean(list(between.values())), abs=1e-10)
    assert overall["ratio"] == pytest.approx(intra.mean() / min(between.values()), rel=1e-9)
    assert overall["weight_angle_mean"] == pytest.approx(to_weight.mean(), abs=1e-10)
    assert overall["weight_angle_std"] == pytest.approx(to_weight.std(), abs=1e-10)
    for entry in result["per_class"]:
        label = entry["label"]
        mask = labels == label
        nearest = {b if a == label else a: v for (a, b), v in between.items() if label in (a, b)}
        nearest_label = min(nearest, key=nearest.get)
        assert entry["count"] == int(mask.sum())
        assert entry["compactness_mean"] == pytest.approx(intra[mask].mean(), abs=1e-10)
        assert entry["compactness_std"] == pytest.approx(intra[mask].std(), abs=1e-10)
        assert entry["nearest_centre_label"] == nearest_label
        assert entry["nearest_centre_angle"] == pytest.approx(nearest[nearest_label], abs=1e-10)
        assert entry["ratio"] == pytest.approx(
            intra[mask].mean() / nearest[nearest_label], rel=1e-9
        )
        assert entry["weight_angle_mean"] == pytest.approx(to_weight[mask].mean(), abs=1e-10)
        assert entry["weight_angle_std"] == pytest.approx(to_weight[mask].std(), abs=1e-10)
        assert entry["centre_weight_angle"] == pytest.approx(
            _angle(centres[label], weights[label]), abs=1e-10
        )


def test_angular_geometry_on_a_known_configuration() -> None:
    # two classes on the circle at +-0.1 rad around 0 and pi/2: centres exactly pi/2 apart
    spread = 0.1
    points = [
        (math.cos(a), math.sin(a))
        for a in (-spread, spread, math.pi / 2 - spread, math.pi / 2 + spread)
    ]
    result = angular_geometry(np.array(points), np.array([0, 0, 1, 1]))
    assert result["overall"]["compactness_mean"] == pytest.approx(spread, abs=1e-12)
    assert result["overall"]["compactness_std"] == pytest.approx(0.0, abs=1e-12)
    assert result["overall"]["separation_min"] == pytest.approx(math.pi / 2, abs=1e-12)
    assert result["overall"]["ratio"] == pytest.approx(spread / (math.pi / 2), rel=1e-10)
    assert "weight_angle_mean" not in result["overall"]


def test_geometry_result_is_json_serialisable(clustered) -> None:
    import json

    embeddings, labels, weights = clustered
    text = json.dumps(angular_geometry(embeddings, labels, weights))
    assert "compactness_mean" in text
