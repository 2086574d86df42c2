"""``learn_scale=True`` on every head with a scale: one mechanism (``MarginHead``), the scale
``exp(log_scale)`` a float32 parameter, its gradient that of the reference loss, its value in
``hyperparameters()`` and ``state_dict``,
(the recipe and ``marginkit train --loss-arg learn_scale=true``: tests/train)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from marginkit.losses import build

from .reference import reference_loss

#: Every head with a scale, with hyper-parameters that put some targets past ArcFace's switch.
SCALED: list[tuple[str, dict[str, Any]]] = [
    ("normface", {"scale": 12.0}),
    ("cosface", {"scale": 30.0, "margin": 0.35}),
    ("arcface", {"scale": 20.0, "margin": 0.5}),
    ("arcface", {"scale": 20.0, "margin": 1.2, "fallback": "continuous"}),
    ("combined", {"scale": 20.0, "multiplicative": 1.3, "angular": 0.2, "additive": 0.1}),
    ("camsoftmax", {"scale": 20.0, "c": 1.2, "normalize": True}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in kwargs.items()) for name, kwargs in SCALED]


def problem(seed: int = 5, batch: int = 6, dim: int = 4, classes: int = 5):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch, dim, dtype=torch.float64, generator=generator) * 2.0
    weight = torch.randn(classes, dim, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return embeddings, weight, labels


def learned_head(name: str, kwargs: dict[str, Any], weight: torch.Tensor):
    head = build(name, weight.shape[0], weight.shape[1], learn_scale=True, **kwargs)
    head = head.double().eval()
    with torch.no_grad():
        head.weight.copy_(weight)
    return head


@pytest.mark.parametrize(("name", "kwargs"), SCALED, ids=IDS)
def test_learned_scale_is_a_positive_float32_parameter(name: str, kwargs: dict[str, Any]) -> None:
    head = build(name, 5, 4, learn_scale=True, **kwargs)
    assert head.log_scale is not None and head.log_scale.dtype == torch.float32
    assert head.log_scale.requires_grad
    assert "scale" not in head.schedules  # the parameter replaces the fixed scale
    assert head.hyperparameters()["scale"] == pytest.approx(kwargs["scale"], rel=1e-6)
    with torch.no_grad():
        head.log_scale.fill_(-50.0)  # any real log-scale is a positive scale
    assert float(head.hyperparameters()["scale"]) > 0.0
    assert "learn_scale=True" in repr(head)
    fixed = build(name, 5, 4, **kwargs)
    assert fixed.log_scale is None and fixed.hyperparameters()["scale"] == kwargs["scale"]
    assert "log_scale" not in fixed.state_dict()


@pytest.mark.parametrize(("name", "kwargs"), SCALED, ids=IDS)
def test_scale_gradient_matches_reference_and_finite_difference(
    name: str, kwargs: dict[str, Any]
) -> None:
    """Fused and reference paths (float64) give the scale the gradient of the independent
    per-sample reference (``d/d log s = s d/ds``) and of a central finite difference."""
    embeddings, weight, labels = problem()
    head = learned_head(name, kwargs, weight)
    scale = head.hyperparameters()["scale"]
    options = {k: v for k, v in kwargs.items() if k != "scale"}
    reference_scale = torch.tensor(scale, dtype=torch.float64, requires_grad=True)
    expected_loss = reference_loss(
        name, embeddings, weight, labels, scale=reference_scale, **options
    )
    (expected,) = torch.autograd.grad(expected_loss, reference_scale)
    expected = scale * expected  # d loss / d log_scale

    fused = head(embeddings, labels)
    (fused_grad,) = torch.autograd.grad(fused, head.log_scale)
    composed = F.cross_entropy(head.margin_logits(embeddings, labels), labels)
    (composed_grad,) = torch.autograd.grad(composed, head.log_scale)

    step = 1e-6
    with torch.no_grad():
        values = []
        for sign in (1.0, -1.0):
            head.log_scale.add_(sign * step)
            values.append(F.cross_entropy(head.margin_logits(embeddings, labels), labels))
            head.log_scale.sub_(sign * step)
        difference = (values[0] - values[1]) / (2 * step)

    assert abs(float(expected)) > 1e-4  # the case has a real scale gradient
    torch.testing.assert_close(fused.detach(), expected_loss.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fused_grad, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(composed_grad, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(difference, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("name", "kwargs"), SCALED, ids=IDS)
def test_learned_scale_survives_a_state_dict_round_trip(name: str, kwargs: dict[str, Any]) -> None:
    head = build(name, 5, 4, learn_scale=True, **kwargs)
    with torch.no_grad():
        head.log_scale.fill_(math.log(7.5))
    state = head.state_dict()
    assert torch.equal(state["log_scale"], head.log_scale.detach())
    other = build(name, 5, 4, learn_scale=True, **kwargs)
    other.load_state_dict(state)
    assert other.hyperparameters()["scale"] == pytest.approx(7.5, rel=1e-6)
    embeddings, labels = torch.randn(3, 4), torch.tensor([0, 2, 4])
    torch.testing.assert_close(
        other.margin_logits(embeddings, labels), head.margin_logits(embeddings, labels)
    )


def test_learned_scale_under_autocast_stays_float32() -> None:
    head = build("arcface", 5, 4, learn_scale=True)
    embeddings = torch.randn(3, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(embeddings.bfloat16(), torch.tensor([0, 1, 2]))
    loss.backward()
    assert head.log_scale.dtype == torch.float32 and loss.dtype == torch.float32
    assert head.log_scale.grad is not None and head.log_scale.grad.dtype == torch.float32
    assert bool(torch.isfinite(head.log_scale.grad))


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "message"),
    [
        ("cosface", {"learn_scale": 1}, TypeError, r"learn_scale must be a bool; got int"),
        ("arcface", {"learn_scale": True, "scale": "not a number"}, TypeError, r"scale"),
        ("camsoftmax", {"learn_scale": True, "normalize": False}, ValueError,
         r"learn_scale=True needs a head with a scale"),
    ],
)  # fmt: skip
def test_bad_learn_scale_is_refused(name: str, kwargs: dict[str, Any], error: type, message: str):
    with pytest.raises(error, match=message):
        build(name, 5, 4, **kwargs)
