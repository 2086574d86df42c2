"""Similarity and label-noise histograms against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from marginkit.plots import (
    build_label_noise_histograms,
    build_similarity_histograms,
    label_noise_histograms,
    pair_similarities,
    similarity_histograms,
)


def _data(count: int = 30, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, 5)), rng.integers(0, classes, count)


def _loop_similarities(embeddings, labels):
    intra, inter = [], []
    for i in range(len(embeddings)):
        for j in range(i + 1, len(embeddings)):
            a, b = embeddings[i], embeddings[j]
            cosine = float(a @ b / (math.sqrt(a @ a) * math.sqrt(b @ b)))
            (intra if labels[i] == labels[j] else inter).append(cosine)
    return np.array(intra), np.array(inter)


def test_pair_similarities_match_a_direct_loop():
    embeddings, labels = _data()
    intra, inter = pair_similarities(torch.tensor(embeddings), torch.tensor(labels))
    expected_intra, expected_inter = _loop_similarities(embeddings, labels)
    np.testing.assert_allclose(np.sort(intra), np.sort(expected_intra), atol=1e-12)
    np.testing.assert_allclose(np.sort(inter), np.sort(expected_inter), atol=1e-12)


def test_pair_similarities_sample_deterministically_when_large():
    embeddings, labels = _data(count=200)
    first = pair_similarities(embeddings, labels, max_samples=50, seed=1)
    again = pair_similarities(embeddings, labels, max_samples=50, seed=1)
    other = pair_similarities(embeddings, labels, max_samples=50, seed=2)
    assert len(first[0]) + len(first[1]) == 50 * 49 // 2
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(np.sort(first[1]), np.sort(other[1]))
    chosen = np.sort(np.random.default_rng(1).choice(200, 50, replace=False))
    expected = _loop_similarities(embeddings[chosen], labels[chosen])
    np.testing.assert_allclose(np.sort(first[0]), np.sort(expected[0]), atol=1e-12)


def test_similarity_figure_bars_are_densities_of_the_pairs(tmp_path):
    embeddings, labels = _data(count=60)
    fig = build_similarity_histograms(embeddings, labels, bins=20)
    (axes,) = [a for a in fig.axes if a.get_ylabel() == "density"]
    intra, inter = _loop_similarities(embeddings, labels)
    edges = np.linspace(-1, 1, 21)
    heights = axes.patches[0].get_data().values  # the filled intra-class histogram
    expected, _ = np.histogram(intra, bins=edges, density=True)
    np.testing.assert_allclose(heights, expected)
    texts = [t.get_text() for t in axes.get_legend().get_texts()]
    assert texts[0].startswith(f"intra-class (same label): {len(intra):,} pairs")
    assert texts[1].startswith(f"inter-class (different labels): {len(inter):,} pairs")
    assert "cosine similarity" in axes.get_xlabel()
    paths = similarity_histograms(embeddings, labels, tmp_path / "sim")
    assert all(p.stat().st_size > 1000 for p in paths)


@pytest.mark.parametrize(
    ("embeddings", "labels", "error", "match"),
    [
        (np.ones((4, 3)), np.zeros(3, dtype=int), ValueError, "labels has 3 entries"),
        (np.ones((4, 3)), np.zeros(4, dtype=int), ValueError, "single class"),
        (np.ones((3, 3)), np.arange(3), ValueError, "no class with two"),
        (np.ones(4), np.zeros(4, dtype=int), ValueError, r"embeddings must have shape \(N, D\)"),
        (np.ones((4, 3)), np.zeros(4), TypeError, "labels must be integer"),
    ],
)
def test_similarity_bad_input(embeddings, labels, error, match):
    with pytest.raises(error, match=match):
        pair_similarities(embeddings, labels)


def test_label_noise_histograms_show_both_sets(tmp_path):
    rng = np.random.default_rng(0)
    clean, flipped = rng.uniform(0, 1, 300), rng.uniform(1.5, 3, 40)
    fig = build_label_noise_histograms(clean, torch.tensor(flipped))
    (axes,) = fig.axes
    texts = [t.get_text() for t in axes.get_legend().get_texts()]
    degrees = math.degrees(np.median(clean))
    assert texts[0] == (
        f"clean labels: 300 samples, median {np.median(clean):.3g} rad ({degrees:.1f}°)"
    )
    assert texts[1].startswith("flipped labels: 40 samples")
    assert axes.get_xlabel() == "target angle (radians)"
    assert axes.get_xlim() == pytest.approx((0.0, math.pi))
    medians = [line.get_xdata()[0] for line in axes.lines]
    assert medians == pytest.approx([np.median(clean), np.median(flipped)])
    paths = label_noise_histograms(clean, flipped, tmp_path / "noise", "gradient", unit=None)
    assert all(p.stat().st_size > 1000 for p in paths)


def test_label_noise_histograms_bad_input():
    with pytest.raises(ValueError, match="flipped_values is empty"):
        build_label_noise_histograms([0.1, 0.2], [])
    with pytest.raises(ValueError, match=r"clean_values must have shape \(N,\)"):
        build_label_noise_histograms(np.ones((2, 2)), [0.1])
    with pytest.raises(ValueError, match="quantity"):
        build_label_noise_histograms([0.1], [0.2], quantity="")
