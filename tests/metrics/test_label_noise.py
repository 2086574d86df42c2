"""Target angles and per-sample gradient magnitudes against a one-sample-at-a-time loop."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from marginkit.losses import build
from marginkit.metrics import (
    label_noise_report,
    label_noise_samples,
    per_sample_gradient_norms,
    summarize_label_noise,
    target_angles,
)

HEADS = [
    ("softmax", {}),
    ("arcface", {"margin": 0.5}),
    ("cosface", {}),
    ("virtual", {}),
    ("camsoftmax", {"c": 1.2}),
    ("lsoftmax", {}),
]


@pytest.fixture
def noisy_set() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(64, 6, generator=generator, dtype=torch.float64)
    clean = torch.randint(0, 5, (64,), generator=generator)
    noisy = clean.clone()
    noisy[::4] = (noisy[::4] + 1 + torch.arange(16) % 4) % 5  # a quarter flipped
    return embeddings, noisy, clean


def _head(name: str, hyperparameters: dict) -> torch.nn.Module:
    return build(name, num_classes=5, embedding_dim=6, **hyperparameters)


@pytest.mark.parametrize(("name", "hyperparameters"), HEADS)
def test_gradient_norms_match_a_per_sample_loop(
    noisy_set, name: str, hyperparameters: dict
) -> None:
    embeddings, noisy, _ = noisy_set
    torch.manual_seed(1)
    head = _head(name, hyperparameters)
    head.train()
    step = int(head.step)
    result = per_sample_gradient_norms(head, embeddings, noisy, chunk_size=10)
    expected = []
    head.eval()
    for row, label in zip(embeddings, noisy, strict=True):
        x = row.unsqueeze(0).clone().requires_grad_(True)
        loss = F.cross_entropy(head.margin_logits(x, label.view(1)), label.view(1))
        loss.backward()
        expected.append(float(x.grad.norm()))
    np.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-12)
    head.weight.grad = None  # filled by the loop's backward
    head.train()
    per_sample_gradient_norms(head, embeddings, noisy)
    assert head.training and int(head.step) == step and head.weight.grad is None
    assert (result > 0).all()


def test_target_angles_match_a_loop(noisy_set) -> None:
    embeddings, noisy, _ = noisy_set
    head = _head("arcface", {})
    weight = head.weight.detach().double().numpy()
    expected = [
        math.acos(float(np.dot(e, weight[y]) / np.linalg.norm(e) / np.linalg.norm(weight[y])))
        for e, y in zip(embeddings.numpy(), noisy.numpy(), strict=True)
    ]
    np.testing.assert_allclose(target_angles(head, embeddings, noisy), expected, atol=1e-12)


def test_label_noise_report_splits_clean_and_flipped(noisy_set) -> None:
    embeddings, noisy, clean = noisy_set
    head = _head("camsoftmax", {"c": 1.2})
    report = label_noise_report(head, embeddings, noisy, clean, test_accuracy=0.8, num_bins=12)
    json.dumps(report, allow_nan=False)
    flipped = (noisy != clean).numpy()
    angles = target_angles(head, embeddings, noisy)
    gradients = per_sample_gradient_norms(head, embeddings, noisy)
    assert report["num_flipped"] == 16 and report["flip_rate"] == 0.25
    assert report["test_accuracy"] == 0.8
    for key, values in (("target_angle", angles), ("gradient_norm", gradients)):
        for group, mask in (("clean", ~flipped), ("flipped", flipped)):
            summary = report[key][group]
            assert summary["count"] == int(mask.sum())
            assert summary["mean"] == pytest.approx(values[mask].mean(), rel=1e-12)
            assert summary["std"] == pytest.approx(values[mask].std(), rel=1e-12)
            assert summary["quantiles"]["0.5"] == pytest.approx(np.median(values[mask]), rel=1e-12)
            edges = np.array(report[key]["edges"])
            assert summary["histogram"] == np.histogram(values[mask], bins=edges)[0].tolist()
            assert sum(summary["histogram"]) == int(mask.sum())
    assert report["target_angle"]["edges"][-1] == pytest.approx(math.pi)


def test_the_samples_are_measured_once_for_the_summary_and_the_pictures(noisy_set) -> None:
    embeddings, noisy, clean = noisy_set
    head = _head("arcface", {})
    samples = label_noise_samples(head, embeddings, noisy, clean)
    np.testing.assert_array_equal(samples.angles, target_angles(head, embeddings, noisy))
    np.testing.assert_array_equal(
        samples.gradient_norms, per_sample_gradient_norms(head, embeddings, noisy)
    )
    np.testing.assert_array_equal(samples.flipped, (noisy != clean).numpy())
    summary = summarize_label_noise(samples, test_accuracy=0.5, num_bins=8)
    assert summary == label_noise_report(head, embeddings, noisy, clean, 0.5, num_bins=8)


def test_label_noise_report_without_flips_has_an_empty_group(noisy_set) -> None:
    embeddings, _, clean = noisy_set
    report = label_noise_report(_head("cosface", {}), embeddings, clean, clean)
    assert report["num_flipped"] == 0 and report["test_accuracy"] is None
    assert report["gradient_norm"]["flipped"]["mean"] is None
    assert sum(report["gradient_norm"]["flipped"]["histogram"]) == 0
