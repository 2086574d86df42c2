"""Every head against the naive float64 re-implementation in ``reference.py``.

Values of the loss and of ``margin_logits``, gradients with respect to the embeddings and the
class weights (and the softmax bias), and the inference scores of ``logits``, over several
random shapes (D = 2 included) and hyper-parameter settings.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import pytest
import torch
from torch import Tensor

from marginkit.losses import MarginHead, build
from marginkit.schedules import lsoftmax_lambda, sphereface_lambda

from .reference import (
    embedding_at_angle,
    random_problem,
    reference_logits,
    reference_loss,
    reference_scores,
)

SHAPES = [(5, 3, 2), (6, 4, 3), (4, 7, 8)]  # (B, C, D)

CASES: list[tuple[str, dict[str, Any]]] = [
    ("softmax", {}),
    *[("lsoftmax", {"margin": m, "lambda_": lam}) for m in range(1, 6) for lam in (0.0, 0.7, 25.0)],
    *[("sphereface", {"margin": m, "lambda_": lam}) for m in (1, 2, 3, 4) for lam in (0.0, 5.0)],
    ("normface", {"scale": 16.0}),
    ("normface", {"scale": 30.0}),
    ("cosface", {"scale": 30.0, "margin": 0.35}),
    ("cosface", {"scale": 64.0, "margin": 0.0}),
    ("cosface", {"scale": 10.0, "margin": 0.8}),
    ("arcface", {"scale": 64.0, "margin": 0.5}),
    ("arcface", {"scale": 30.0, "margin": 0.2}),
    ("arcface", {"scale": 16.0, "margin": 1.2}),
    ("arcface", {"scale": 64.0, "margin": 0.0}),
    ("combined", {"scale": 64.0, "multiplicative": 1.0, "angular": 0.5, "additive": 0.0}),
    ("combined", {"scale": 30.0, "multiplicative": 1.0, "angular": 0.3, "additive": 0.2}),
    ("combined", {"scale": 30.0, "multiplicative": 1.35, "angular": 0.0, "additive": 0.0}),
    ("combined", {"scale": 20.0, "multiplicative": 2.0, "angular": 0.2, "additive": 0.1}),
    ("combined", {"scale": 16.0, "multiplicative": 3.0, "angular": 0.0, "additive": 0.3}),
    ("virtual", {}),
    *[
        ("camsoftmax", {"scale": 20.0, "c": c, "normalize": True})
        for c in (math.pi / 2, math.pi / 3, math.pi / 4, 1.0, 2.0)
    ],
    *[
        ("camsoftmax", {"c": c, "normalize": False})
        for c in (math.pi / 2, math.pi / 3, math.pi / 4, 2.0)
    ],
]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, kwargs = case
    return name + "".join(f"-{key}={value:.3g}" for key, value in kwargs.items())


def make_head(name: str, kwargs: dict[str, Any], weight: Tensor) -> MarginHead:
    head = build(name, num_classes=weight.shape[0], embedding_dim=weight.shape[1], **kwargs)
    head = head.double()
    with torch.no_grad():
        head.weight.copy_(weight)
    return head


def head_loss_and_grads(
    head: MarginHead, embeddings: Tensor, labels: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    x = embeddings.clone().requires_grad_(True)
    head.zero_grad()
    loss = head(x, labels)
    loss.backward()
    assert x.grad is not None and head.weight.grad is not None
    return loss.detach(), x.grad, head.weight.grad.clone()


def reference_loss_and_grads(
    name: str,
    kwargs: dict[str, Any],
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    x = embeddings.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    loss = reference_loss(name, x, w, labels, bias, **kwargs)
    loss.backward()
    assert x.grad is not None and w.grad is not None
    return loss.detach(), x.grad, w.grad


def assert_matches(actual: Tensor, expected: Tensor, what: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-8, atol=1e-9, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-C{}-D{}".format(*s))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_loss_and_gradients_match_reference(
    case: tuple[str, dict[str, Any]], shape: tuple[int, int, int]
) -> None:
    name, kwargs = case
    embeddings, weight, labels, _ = random_problem(*shape, seed=zlib.crc32(case_id(case).encode()))
    head = make_head(name, kwargs, weight)
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels)
    ref_loss, ref_grad_x, ref_grad_w = reference_loss_and_grads(
        name, kwargs, embeddings, weight, labels
    )
    assert loss.dtype == torch.float64
    assert_matches(loss, ref_loss, "loss")
    assert_matches(grad_x, ref_grad_x, "d loss / d embeddings")
    assert_matches(grad_w, ref_grad_w, "d loss / d weight")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-C{}-D{}".format(*s))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_margin_logits_and_scores_match_reference(
    case: tuple[str, dict[str, Any]], shape: tuple[int, int, int]
) -> None:
    name, kwargs = case
    embeddings, weight, labels, _ = random_problem(
        *shape, seed=1 + zlib.crc32(case_id(case).encode())
    )
    head = make_head(name, kwargs, weight)
    expected = reference_logits(name, embeddings, weight, labels, **kwargs)
    assert_matches(head.margin_logits(embeddings, labels).detach(), expected, "margin_logits")
    scores = reference_scores(name, embeddings, weight, normalize=kwargs.get("normalize", True))
    assert_matches(head.logits(embeddings).detach(), scores, "logits")


@pytest.mark.parametrize("shape", SHAPES[:2], ids=lambda s: "B{}-C{}-D{}".format(*s))
def test_softmax_with_bias_matches_reference(shape: tuple[int, int, int]) -> None:
    embeddings, weight, labels, generator = random_problem(*shape, seed=7)
    bias = torch.randn(weight.shape[0], dtype=torch.float64, generator=generator)
    head = make_head("softmax", {"bias": True}, weight)
    with torch.no_grad():
        head.bias.copy_(bias)
    assert_matches(
        head.margin_logits(embeddings, labels).detach(),
        reference_logits("softmax", embeddings, weight, labels, bias),
        "margin_logits",
    )
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels)
    b = bias.clone().requires_grad_(True)
    x = embeddings.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    ref_loss = reference_loss("softmax", x, w, labels, b)
    ref_loss.backward()
    assert_matches(loss, ref_loss.detach(), "loss")
    assert_matches(grad_x, x.grad, "d loss / d embeddings")
    assert_matches(grad_w, w.grad, "d loss / d weight")
    assert_matches(head.bias.grad, b.grad, "d loss / d bias")


def test_softmax_with_bias_scores_include_bias() -> None:
    embeddings, weight, _, generator = random_problem(5, 4, 3, seed=8)
    bias = torch.randn(4, dtype=torch.float64, generator=generator)
    head = make_head("softmax", {"bias": True}, weight)
    with torch.no_grad():
        head.bias.copy_(bias)
    expected = reference_scores("softmax", embeddings, weight, bias)
    assert_matches(head.logits(embeddings).detach(), expected, "logits")


@pytest.mark.parametrize("name", ["lsoftmax", "sphereface"])
def test_official_annealed_lambda_matches_reference(name: str) -> None:
    """With the official step-based lambda annealing (``lsoftmax_lambda()`` /
    ``sphereface_lambda()``) the loss uses the value in force at that step."""
    embeddings, weight, labels, _ = random_problem(6, 4, 3, seed=11)
    preset = lsoftmax_lambda() if name == "lsoftmax" else sphereface_lambda()
    head = make_head(name, {"margin": 3, "lambda_": preset}, weight)
    for _ in range(40):  # move the schedule away from its start
        head(embeddings, labels)
    lambda_ = head.hyperparameters()["lambda_"]
    # the official formula after 40 steps (the constants of docs/losses.md)
    if name == "lsoftmax":
        assert lambda_ == pytest.approx(1000.0 * (1.0 + 2.5e-5 * 40) ** -35.0, rel=1e-12)
    else:
        assert lambda_ == pytest.approx(max(5.0, 1000.0 / (1.0 + 0.12 * 40)), rel=1e-12)
    assert lambda_ < 1000.0
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels)
    kwargs = {"margin": 3, "lambda_": lambda_}
    ref_loss, ref_grad_x, ref_grad_w = reference_loss_and_grads(
        name, kwargs, embeddings, weight, labels
    )
    assert_matches(loss, ref_loss, "loss")
    assert_matches(grad_x, ref_grad_x, "d loss / d embeddings")
    assert_matches(grad_w, ref_grad_w, "d loss / d weight")


@pytest.mark.parametrize("name", ["lsoftmax", "sphereface"])
def test_default_run_relative_lambda_matches_reference(name: str) -> None:
    """The default lambda is run-relative (1000 down to its floor over the first 40 % of the
    run, power 1, shape 199): after 40 of 500 steps (a fifth of the 200-step decay) it is the
    normalised power decay's value, and the loss uses it."""
    embeddings, weight, labels, _ = random_problem(6, 4, 3, seed=11)
    head = build(name, num_classes=weight.shape[0], embedding_dim=weight.shape[1], margin=3)
    head = head.set_total_steps(500).double()
    with torch.no_grad():
        head.weight.copy_(weight)
    for _ in range(40):
        head(embeddings, labels)
    lambda_ = head.hyperparameters()["lambda_"]
    floor = 5.0  # L-Softmax's default lambda is SphereFace's run-relative one
    end = 1.0 / 200.0  # (1 + 199)^-1
    expected = floor + (1000.0 - floor) * (1.0 / (1.0 + 199.0 * 40 / 200) - end) / (1.0 - end)
    assert lambda_ == pytest.approx(expected, rel=1e-12)
    assert floor < lambda_ < 1000.0
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels)
    kwargs = {"margin": 3, "lambda_": lambda_}
    ref_loss, ref_grad_x, ref_grad_w = reference_loss_and_grads(
        name, kwargs, embeddings, weight, labels
    )
    assert_matches(loss, ref_loss, "loss")
    assert_matches(grad_x, ref_grad_x, "d loss / d embeddings")
    assert_matches(grad_w, ref_grad_w, "d loss / d weight")


def constructed_problem(
    angles: list[float], classes: int, dim: int, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Embeddings placed at the given angles from their class weight (one sample each)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(classes, dim, dtype=torch.float64, generator=generator)
    labels = torch.arange(len(angles)) % classes
    norms = 0.5 + 2.0 * torch.rand(len(angles), generator=generator).double()
    embeddings = torch.stack(
        [
            embedding_at_angle(weight[int(label)], angle, float(norm), generator)
            for angle, label, norm in zip(angles, labels, norms, strict=True)
        ]
    )
    return embeddings, weight, labels


@pytest.mark.parametrize("dim", [2, 5])
@pytest.mark.parametrize("margin", [0.5, 1.2])
def test_arcface_past_pi_minus_margin_matches_reference(dim: int, margin: float) -> None:
    """Samples with theta + m > pi take the monotone fallback ``s (cos - m sin m)``."""
    boundary = math.pi - margin
    angles = [0.3, 0.9, boundary - 0.2, boundary + 0.05, boundary + 0.3, math.pi - 0.02]
    embeddings, weight, labels = constructed_problem(angles, classes=3, dim=dim, seed=3)
    kwargs = {"scale": 16.0, "margin": margin}
    cosines = torch.nn.functional.cosine_similarity(embeddings, weight[labels])
    past = torch.acos(cosines) + margin > math.pi
    assert 2 <= int(past.sum()) < len(angles)  # both branches are exercised
    head = make_head("arcface", kwargs, weight)
    expected = reference_logits("arcface", embeddings, weight, labels, **kwargs)
    assert_matches(head.margin_logits(embeddings, labels).detach(), expected, "margin_logits")
    target = expected.gather(1, labels.unsqueeze(1)).squeeze(1)
    fallback = kwargs["scale"] * (cosines - margin * math.sin(margin))
    assert_matches(target[past], fallback[past], "fallback target logit")
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels)
    ref = reference_loss_and_grads("arcface", kwargs, embeddings, weight, labels)
    assert_matches(loss, ref[0], "loss")
    assert_matches(grad_x, ref[1], "d loss / d embeddings")
    assert_matches(grad_w, ref[2], "d loss / d weight")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": 20.0, "multiplicative": 2.0, "angular": 0.2, "additive": 0.1},
        {"scale": 20.0, "multiplicative": 1.0, "angular": 0.6, "additive": 0.2},
    ],
)
def test_combined_past_pi_matches_reference(kwargs: dict[str, float]) -> None:
    """Past ``m1 theta + m2 = pi`` the combined margin follows its documented continuation."""
    limit = (math.pi - kwargs["angular"]) / kwargs["multiplicative"]
    angles = [0.2, limit - 0.3, limit + 0.1, limit + 0.4, math.pi - 0.05]
    embeddings, weight, labels = constructed_problem(angles, classes=3, dim=4, seed=5)
    head = make_head("combined", kwargs, weight)
    expected = reference_logits("combined", embeddings, weight, labels, **kwargs)
    assert_matches(head.margin_logits(embeddings, labels).detach(), expected, "margin_logits")
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels)
    ref = reference_loss_and_grads("combined", kwargs, embeddings, weight, labels)
    assert_matches(loss, ref[0], "loss")
    assert_matches(grad_x, ref[1], "d loss / d embeddings")
    assert_matches(grad_w, ref[2], "d loss / d weight")


@pytest.mark.parametrize("margin", [2, 3, 4, 5])
@pytest.mark.parametrize("name", ["lsoftmax", "sphereface"])
def test_lsoftmax_every_psi_interval_matches_reference(name: str, margin: int) -> None:
    """One sample inside each interval ``[k pi / m, (k + 1) pi / m]`` of ``psi``."""
    angles = [(k + 0.5) * math.pi / margin for k in range(margin)]
    angles += [(k + 0.1) * math.pi / margin for k in range(margin)]
    embeddings, weight, labels = constructed_problem(angles, classes=3, dim=3, seed=margin)
    kwargs = {"margin": margin, "lambda_": 0.0}
    head = make_head(name, kwargs, weight)
    expected = reference_logits(name, embeddings, weight, labels, **kwargs)
    assert_matches(head.margin_logits(embeddings, labels).detach(), expected, "margin_logits")
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels)
    ref = reference_loss_and_grads(name, kwargs, embeddings, weight, labels)
    assert_matches(loss, ref[0], "loss")
    assert_matches(grad_x, ref[1], "d loss / d embeddings")
    assert_matches(grad_w, ref[2], "d loss / d weight")


def test_learned_scale_normface_matches_reference() -> None:
    embeddings, weight, labels, _ = random_problem(5, 4, 3, seed=13)
    head = make_head("normface", {"scale": 12.0, "learn_scale": True}, weight)
    scale_value = head.hyperparameters()["scale"]  # exp(log 12) after a float32 round trip
    assert scale_value == pytest.approx(12.0, rel=1e-6)
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels)
    ref = reference_loss_and_grads("normface", {"scale": scale_value}, embeddings, weight, labels)
    assert_matches(loss, ref[0], "loss")
    assert_matches(grad_x, ref[1], "d loss / d embeddings")
    assert_matches(grad_w, ref[2], "d loss / d weight")
    # d loss / d log s = s * d loss / d s, with d loss / d s through the reference
    scale = torch.tensor(scale_value, dtype=torch.float64, requires_grad=True)
    reference_loss("normface", embeddings, weight, labels, scale=scale).backward()
    assert head.log_scale is not None and head.log_scale.grad is not None
    assert scale.grad is not None
    assert_matches(head.log_scale.grad, scale_value * scale.grad, "d loss / d log_scale")
