"""The invariants of ``docs/losses.md`` ("Invariants"): identities between the methods.

Each invariant is its own test, checked on losses, training logits and gradients in float64.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from marginkit.losses import MarginHead, available, build
from marginkit.losses.functional import camsoftmax_target, lsoftmax_psi

from .reference import camsoftmax_f, embedding_at_angle
from .reference import lsoftmax_psi as reference_psi
from .runs import RUN_STEPS

BATCH, CLASSES, DIM = 12, 5, 3


def problem(seed: int, dim: int = DIM) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeddings = 2.0 * torch.randn(BATCH, dim, dtype=torch.float64, generator=generator)
    weight = torch.randn(CLASSES, dim, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    return embeddings, weight, labels


def head_with(name: str, weight: Tensor, **kwargs: Any) -> MarginHead:
    head = build(name, num_classes=weight.shape[0], embedding_dim=weight.shape[1], **kwargs)
    head = head.set_total_steps(RUN_STEPS).double()  # run-relative defaults need the length
    with torch.no_grad():
        head.weight.copy_(weight)
    return head


def loss_and_grads(head: MarginHead, embeddings: Tensor, labels: Tensor) -> list[Tensor]:
    """Training logits, then loss, d/d embeddings and d/d weight of one training forward."""
    logits = head.margin_logits(embeddings, labels).detach()  # before the step advances
    x = embeddings.clone().requires_grad_(True)
    loss = head(x, labels)
    loss.backward()
    assert x.grad is not None and head.weight.grad is not None
    return [logits, loss.detach(), x.grad, head.weight.grad]


def assert_same_loss(first: MarginHead, second: MarginHead, embeddings: Tensor, labels: Tensor):
    for a, b in zip(
        loss_and_grads(first, embeddings, labels),
        loss_and_grads(second, embeddings, labels),
        strict=True,
    ):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scale", [16.0, 64.0])
def test_zero_margins_equal_normface(scale: float) -> None:
    embeddings, weight, labels = problem(1)
    normface = head_with("normface", weight, scale=scale)
    for other in (
        head_with("arcface", weight, scale=scale, margin=0.0),
        head_with("cosface", weight, scale=scale, margin=0.0),
        head_with("combined", weight, scale=scale, multiplicative=1.0, angular=0.0, additive=0.0),
    ):
        normface.zero_grad()
        assert_same_loss(other, normface, embeddings, labels)


@pytest.mark.parametrize("lambda_", [0.0, 0.3, 7.0, 1000.0, None])
def test_lsoftmax_margin_one_equals_softmax(lambda_: float | None) -> None:
    embeddings, weight, labels = problem(2)
    kwargs = {} if lambda_ is None else {"lambda_": lambda_}  # None: the annealed default
    lsoftmax = head_with("lsoftmax", weight, margin=1, **kwargs)
    softmax = head_with("softmax", weight, bias=False)
    assert_same_loss(lsoftmax, softmax, embeddings, labels)


def test_camsoftmax_right_angle_equals_normface() -> None:
    embeddings, weight, labels = problem(3)
    cam = head_with("camsoftmax", weight, scale=20.0, c=math.pi / 2, normalize=True)
    assert_same_loss(cam, head_with("normface", weight, scale=20.0), embeddings, labels)


def test_camsoftmax_right_angle_unnormalized_equals_softmax() -> None:
    embeddings, weight, labels = problem(4)
    cam = head_with("camsoftmax", weight, c=math.pi / 2, normalize=False)
    assert_same_loss(cam, head_with("softmax", weight), embeddings, labels)


def test_camsoftmax_default_starts_as_normface() -> None:
    """The default adaptive c starts at pi/2, so a fresh head is exactly NormFace (s = 20)."""
    embeddings, weight, labels = problem(5)
    cam = head_with("camsoftmax", weight)
    assert cam.hyperparameters()["c"] == math.pi / 2
    assert_same_loss(cam, head_with("normface", weight, scale=20.0), embeddings, labels)


def test_virtual_loss_not_below_softmax() -> None:
    for seed in range(5):
        embeddings, weight, labels = problem(10 + seed)
        virtual = head_with("virtual", weight)(embeddings, labels)
        softmax = head_with("softmax", weight)(embeddings, labels)
        assert virtual > softmax  # one more positive term in every denominator


def test_virtual_per_sample_loss_at_least_ln2() -> None:
    embeddings, weight, labels = problem(20)
    # include samples lined up with their class weight, where W_y . x = ||W_y|| ||x||
    embeddings[:3] = 1.7 * weight[labels[:3]]
    logits = head_with("virtual", weight).margin_logits(embeddings, labels).detach()
    assert logits.shape == (BATCH, CLASSES + 1)
    target_logit = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    assert torch.all(logits[:, -1] >= target_logit - 1e-12)  # ||W_y|| ||x|| >= W_y . x
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    assert torch.all(per_sample >= math.log(2.0) - 1e-12)
    # lined up: the virtual logit equals the target logit (the bound ln 2 is then tight up to
    # the other classes' terms)
    torch.testing.assert_close(logits[:3, -1], target_logit[:3], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("margin", [0.1, 0.35, 0.9])
def test_combined_additive_equals_cosface(margin: float) -> None:
    embeddings, weight, labels = problem(30)
    combined = head_with(
        "combined", weight, scale=30.0, multiplicative=1.0, angular=0.0, additive=margin
    )
    cosface = head_with("cosface", weight, scale=30.0, margin=margin)
    assert_same_loss(combined, cosface, embeddings, labels)


@pytest.mark.parametrize("margin", [0.2, 0.5, 1.0])
def test_combined_angular_equals_arcface_within_range(margin: float) -> None:
    generator = torch.Generator().manual_seed(40)
    weight = torch.randn(CLASSES, 4, dtype=torch.float64, generator=generator)
    labels = torch.arange(BATCH) % CLASSES
    angles = torch.linspace(0.05, math.pi - margin, BATCH)  # theta + m <= pi throughout
    embeddings = torch.stack(
        [
            embedding_at_angle(weight[int(label)], float(angle), 1.5, generator)
            for angle, label in zip(angles, labels, strict=True)
        ]
    )
    combined = head_with(
        "combined", weight, scale=64.0, multiplicative=1.0, angular=margin, additive=0.0
    )
    arcface = head_with("arcface", weight, scale=64.0, margin=margin)
    assert_same_loss(combined, arcface, embeddings, labels)


def test_lsoftmax_large_lambda_tends_to_softmax() -> None:
    embeddings, weight, labels = problem(50)
    softmax = head_with("softmax", weight)(embeddings, labels).detach()
    gaps = []
    for lambda_ in (1.0, 1e2, 1e4, 1e6, 1e8):
        loss = head_with("lsoftmax", weight, margin=4, lambda_=lambda_)(embeddings, labels)
        gaps.append(float((loss.detach() - softmax).abs()))
    assert all(later < earlier for earlier, later in itertools.pairwise(gaps))
    assert gaps[0] > 1e-2  # the margin matters at lambda = 1
    assert gaps[-1] < 1e-6


def test_sphereface_large_lambda_tends_to_weight_normalized_softmax() -> None:
    embeddings, weight, labels = problem(51)
    cosines = F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T
    plain = F.cross_entropy(embeddings.norm(dim=1, keepdim=True) * cosines, labels)
    gaps = []
    for lambda_ in (1.0, 1e3, 1e6, 1e9):
        loss = head_with("sphereface", weight, margin=4, lambda_=lambda_)(embeddings, labels)
        gaps.append(float((loss.detach() - plain).abs()))
    assert all(later < earlier for earlier, later in itertools.pairwise(gaps))
    assert gaps[-1] < 1e-7


@pytest.mark.parametrize("margin", [1, 2, 3, 4, 5, 6])
def test_psi_decreasing_with_range(margin: int) -> None:
    theta = torch.linspace(0.0, math.pi, 2001, dtype=torch.float64)
    psi = lsoftmax_psi(torch.cos(theta), margin)
    assert torch.all(psi[1:] < psi[:-1])  # strictly decreasing in theta
    assert float(psi[0]) == pytest.approx(1.0, abs=1e-12)
    assert float(psi[-1]) == pytest.approx(-(2 * margin - 1), abs=1e-9)
    assert float(psi.max()) <= 1.0 + 1e-12
    assert float(psi.min()) >= -(2 * margin - 1) - 1e-9
    expected = torch.stack([reference_psi(angle, margin) for angle in theta[1:-1]])
    torch.testing.assert_close(psi[1:-1], expected, rtol=1e-9, atol=1e-9)


# sub-centre ArcFace has K rows per class: its scores are maxima (its own tests)
@pytest.mark.parametrize("name", [name for name in available() if name != "subcenter"])
def test_inference_scores_have_no_margin(name: str) -> None:
    embeddings, weight, labels = problem(60)
    head = head_with(name, weight)
    cosines = F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T  # (B, C)
    expected = embeddings @ weight.T if head.geometry == "unnormalized" else cosines
    for mode in (head.train, head.eval):
        mode()
        scores = head.logits(embeddings)
        assert scores.shape == (BATCH, CLASSES)  # no virtual class
        torch.testing.assert_close(scores.detach(), expected, rtol=1e-10, atol=1e-12)
    if name == "curricularface":  # it modulates the hard negatives too (its own tests)
        return
    # the training logits differ from the plain ones only in the target column
    margin = head.margin_logits(embeddings, labels).detach()[:, :CLASSES]
    plain = head.scale_value() * cosines if head.geometry == "normalized" else None
    if head.geometry == "weight_normalized":
        plain = embeddings.norm(dim=1, keepdim=True) * cosines
    if head.geometry == "unnormalized":
        plain = expected
    off_target = torch.ones_like(margin, dtype=torch.bool).scatter(1, labels.unsqueeze(1), False)
    torch.testing.assert_close(margin[off_target], plain[off_target], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("c", [0.3, math.pi / 4, 1.0, math.pi / 3, math.pi / 2, 2.0, 2.8])
def test_camsoftmax_f_fixed_points_and_increasing(c: float) -> None:
    def f(value: float) -> float:
        return float(camsoftmax_target(torch.tensor([value], dtype=torch.float64), c))

    assert f(math.cos(c)) == pytest.approx(0.0, abs=1e-12)
    assert f(1.0) == pytest.approx(1.0, abs=1e-12)
    assert f(-1.0) == pytest.approx(-1.0, abs=1e-12)
    cosine = torch.linspace(-1.0, 1.0, 4001, dtype=torch.float64)
    values = camsoftmax_target(cosine, c)
    assert torch.all(values[1:] >= values[:-1])
    # strictly increasing wherever float64 resolves f + 1 (for small c, f is within an ulp
    # of -1 on a wide range near theta = pi: (1 + cos)^g with g about 30 at c = 0.3)
    resolved = values[:-1] + 1.0 > 1e-12
    assert int(resolved.sum()) > 1000
    assert torch.all(values[1:][resolved] > values[:-1][resolved])
    expected = torch.tensor([camsoftmax_f(float(v), c) for v in cosine[1:]], dtype=torch.float64)
    torch.testing.assert_close(values[1:], expected, rtol=1e-9, atol=1e-12)
    if c == math.pi / 2:
        torch.testing.assert_close(values, cosine, rtol=0, atol=1e-15)
