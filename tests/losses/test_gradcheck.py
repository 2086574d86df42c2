"""``torch.autograd.gradcheck`` in float64 on every head, w.r.t. embeddings and weight.

The points are random but kept away from the kinks of the margin functions (ArcFace's
switch at ``theta + m = pi``, the combined margin's at ``m1 theta + m2 = pi``) and from
``cos theta = +-1``, where the analytic derivative is capped on purpose.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.func import functional_call

from marginkit.losses import MarginHead, build

CASES: list[tuple[str, dict[str, Any]]] = [
    ("softmax", {}),
    ("softmax", {"bias": True}),
    ("lsoftmax", {"margin": 1, "lambda_": 0.0}),
    ("lsoftmax", {"margin": 2, "lambda_": 0.0}),
    ("lsoftmax", {"margin": 4, "lambda_": 3.0}),
    ("lsoftmax", {"margin": 5, "lambda_": 0.0}),
    ("sphereface", {"margin": 4, "lambda_": 0.0}),
    ("sphereface", {"margin": 3, "lambda_": 5.0}),
    ("normface", {"scale": 16.0}),
    ("normface", {"scale": 16.0, "learn_scale": True}),
    ("cosface", {"scale": 30.0, "margin": 0.35}),
    ("arcface", {"scale": 64.0, "margin": 0.5}),
    ("arcface", {"scale": 16.0, "margin": 1.5}),
    ("arcface", {"scale": 16.0, "margin": 1.5, "fallback": "continuous"}),
    ("cosface", {"scale": 30.0, "margin": 0.35, "learn_scale": True}),
    ("arcface", {"scale": 16.0, "margin": 0.5, "learn_scale": True}),
    (
        "combined",
        {
            "scale": 20.0,
            "multiplicative": 1.3,
            "angular": 0.2,
            "additive": 0.1,
            "learn_scale": True,
        },
    ),
    ("camsoftmax", {"scale": 20.0, "c": 1.2, "normalize": True, "learn_scale": True}),
    ("combined", {"scale": 64.0, "multiplicative": 1.0, "angular": 0.3, "additive": 0.2}),
    ("combined", {"scale": 20.0, "multiplicative": 2.0, "angular": 0.2, "additive": 0.1}),
    ("combined", {"scale": 20.0, "multiplicative": 1.35, "angular": 0.0, "additive": 0.0}),
    ("virtual", {}),
    ("camsoftmax", {"scale": 20.0, "c": math.pi / 4, "normalize": True}),
    ("camsoftmax", {"scale": 20.0, "c": 2.0, "normalize": True}),
    ("camsoftmax", {"c": math.pi / 3, "normalize": False}),
]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, kwargs = case
    return name + "".join(
        f"-{key}={value:.3g}" if isinstance(value, float) else f"-{key}={value}"
        for key, value in kwargs.items()
    )


def kink_angles(name: str, kwargs: dict[str, Any]) -> list[float]:
    """Target angles where the head's margin function switches branch (non-smooth)."""
    if name == "arcface":
        return [math.pi - kwargs["margin"]]
    if name == "combined":
        return [(math.pi - kwargs["angular"]) / kwargs["multiplicative"]]
    return []


def smooth_point(
    name: str, kwargs: dict[str, Any], batch: int, classes: int, dim: int, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Random float64 (embeddings, weight, labels) with every angle >= 0.05 from a kink or 0/pi."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(100):
        embeddings = torch.randn(batch, dim, dtype=torch.float64, generator=generator)
        weight = torch.randn(classes, dim, dtype=torch.float64, generator=generator)
        labels = torch.randint(0, classes, (batch,), generator=generator)
        cosines = (
            torch.nn.functional.normalize(embeddings, dim=1)
            @ torch.nn.functional.normalize(weight, dim=1).T
        )
        angles = torch.acos(cosines.clamp(-1.0, 1.0))
        target = angles.gather(1, labels.unsqueeze(1)).squeeze(1)
        avoid = [0.0, math.pi, *kink_angles(name, kwargs)]
        if (
            all(float((target - kink).abs().min()) > 0.05 for kink in avoid)
            and float(angles.min()) > 0.05
            and float(angles.max()) < math.pi - 0.05
        ):
            return embeddings, weight, labels
    raise RuntimeError("no smooth point found")


@pytest.mark.parametrize("dim", [2, 4])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gradcheck(case: tuple[str, dict[str, Any]], dim: int) -> None:
    name, kwargs = case
    embeddings, weight, labels = smooth_point(name, kwargs, 5, 3, dim, seed=dim)
    head: MarginHead = build(name, num_classes=3, embedding_dim=dim, **kwargs).double().eval()
    extra = {
        key: parameter.detach().clone() + 0.1
        for key, parameter in head.named_parameters()
        if key != "weight"
    }  # the softmax bias, a learned log-scale
    extra_names = list(extra)

    def loss(x: Tensor, w: Tensor, *others: Tensor) -> Tensor:
        parameters = {"weight": w, **dict(zip(extra_names, others, strict=True))}
        return functional_call(head, parameters, (x, labels))

    inputs = (embeddings, weight, *extra.values())
    inputs = tuple(tensor.clone().requires_grad_(True) for tensor in inputs)
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("c", [math.pi / 4, math.pi / 2, 2.0])
def test_gradcheck_margin_functions_on_target_cosines(c: float) -> None:
    """The pure margin functions on a grid of cosines inside (-1, 1)."""
    from marginkit.losses.functional import (
        arcface_target,
        camsoftmax_target,
        combined_target,
        lsoftmax_target,
    )

    # 20 cosines 0.1 apart, none within 0.01 of a switch: ArcFace's cos(pi - 0.5) = -0.878,
    # L-Softmax's cos(k pi / 4) = 0, +-0.707, the combined margin's cos((pi - 0.2) / 1.35)
    cosine = torch.linspace(-0.96, 0.96, 20, dtype=torch.float64)
    switches = torch.tensor([-math.cos(0.5), 0.0, 0.5**0.5, -(0.5**0.5)], dtype=torch.float64)
    switches = torch.cat([switches, torch.tensor([math.cos((math.pi - 0.2) / 1.35)]).double()])
    assert float((cosine.unsqueeze(1) - switches).abs().min()) > 0.01
    cosine.requires_grad_(True)
    functions = [
        lambda v: camsoftmax_target(v, c),
        lambda v: arcface_target(v, 0.5),
        lambda v: lsoftmax_target(v, 4, 0.5),
        lambda v: combined_target(v, 1.35, 0.2, 0.1),
    ]
    for function in functions:
        assert torch.autograd.gradcheck(function, (cosine,), eps=1e-6, atol=1e-6, rtol=1e-5)
