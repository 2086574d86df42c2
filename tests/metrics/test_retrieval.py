"""Precision@1, R-precision and MAP@R against a direct loop and pytorch-metric-learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marginkit.metrics import retrieval_metrics


def _loop(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    totals, queries = np.zeros(3), 0
    for query in range(len(labels)):
        relevant = int((labels == labels[query]).sum()) - 1
        if relevant == 0:
            continue
        queries += 1
        others = [j for j in range(len(labels)) if j != query]
        ranked = sorted(others, key=lambda j: -float(np.dot(unit[query], unit[j])))
        hits = [labels[j] == labels[query] for j in ranked[:relevant]]
        totals[0] += hits[0]
        totals[1] += sum(hits) / relevant
        average_precision, found = 0.0, 0
        for i, hit in enumerate(hits, start=1):
            if hit:
                found += 1
                average_precision += found / i
        totals[2] += average_precision / relevant
    return dict(zip(("precision_at_1", "r_precision", "map_at_r"), totals / queries, strict=True))


@pytest.fixture
def labelled() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=90)
    labels[-1] = 9  # a label seen once: no relevant reference, left out
    centres = rng.normal(size=(10, 8))
    return centres[labels] + 1.0 * rng.normal(size=(90, 8)), labels


@pytest.mark.parametrize("chunk_size", [1, 7, 256])
def test_retrieval_matches_a_loop(labelled, chunk_size: int) -> None:
    embeddings, labels = labelled
    result = retrieval_metrics(torch.from_numpy(embeddings), labels, chunk_size=chunk_size)
    expected = _loop(embeddings, labels)
    assert result["num_queries"] == 89
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    assert 0.2 < result["map_at_r"] < result["r_precision"] < result["precision_at_1"] < 1


def test_retrieval_matches_pytorch_metric_learning(labelled) -> None:
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    embeddings, labels = labelled
    calculator = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        knn_func=CustomKNN(CosineSimilarity()),
    )
    query = torch.from_numpy(embeddings).float()
    expected = calculator.get_accuracy(
        query, torch.from_numpy(labels), query, torch.from_numpy(labels), ref_includes_query=True
    )
    result = retrieval_metrics(embeddings, labels)
    assert result["precision_at_1"] == pytest.approx(expected["precision_at_1"], abs=1e-6)
    assert result["r_precision"] == pytest.approx(expected["r_precision"], abs=1e-6)
    assert result["map_at_r"] == pytest.approx(expected["mean_average_precision_at_r"], abs=1e-6)


def test_retrieval_of_perfectly_separated_classes_is_one() -> None:
    labels = np.repeat(np.arange(3), 4)
    embeddings = np.eye(3)[labels] + 0.01 * np.random.default_rng(1).normal(size=(12, 3))
    result = retrieval_metrics(embeddings, labels)
    assert result["precision_at_1"] == result["r_precision"] == result["map_at_r"] == 1.0


def test_retrieval_needs_a_repeated_label() -> None:
    with pytest.raises(ValueError, match="labels must contain some label at least twice"):
        retrieval_metrics(np.eye(3), np.array([0, 1, 2]))
