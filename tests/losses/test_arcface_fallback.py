"""ArcFace's ``fallback="continuous"``: past ``theta + m = pi`` the target continues as
``cos(theta) - (1 - cos m)``, continuous and decreasing on ``[0, pi]``, with finite gradients;
the default (InsightFace's) fallback is unchanged."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from marginkit.losses import build
from marginkit.losses.functional import arcface_target

MARGINS = [0.2, 0.5, 1.2, 2.5]


def angles(count: int = 20_001) -> torch.Tensor:
    return torch.linspace(0.0, math.pi, count, dtype=torch.float64)


@pytest.mark.parametrize("margin", MARGINS)
def test_continuous_at_the_switch(margin: float) -> None:
    switch = torch.tensor(math.pi - margin, dtype=torch.float64)
    side = torch.stack([switch - 1e-9, switch + 1e-9])
    values = arcface_target(torch.cos(side), margin, "continuous")
    assert abs(float(values[0] - values[1])) < 1e-7
    assert float(values[1]) == pytest.approx(-1.0, abs=1e-7)  # cos(pi): where cos(theta + m) ends
    # the default fallback jumps there (about 0.12 for m = 0.5)
    default = arcface_target(torch.cos(side), margin)
    jump = 1.0 - math.cos(margin) - margin * math.sin(margin)
    assert float(default[0] - default[1]) == pytest.approx(-jump, abs=1e-6)


@pytest.mark.parametrize("margin", MARGINS)
def test_decreasing_and_equal_to_cos_theta_plus_m_below_the_switch(margin: float) -> None:
    theta = angles()
    values = arcface_target(torch.cos(theta), margin, "continuous")
    assert bool((values[1:] < values[:-1]).all())  # strictly decreasing on the grid
    below = theta + margin <= math.pi - 1e-9
    torch.testing.assert_close(values[below], torch.cos(theta[below] + margin), rtol=0, atol=1e-12)
    beyond = ~below
    expected = torch.cos(theta[beyond]) - (1.0 - math.cos(margin))
    torch.testing.assert_close(values[beyond], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("margin", [0.5, 1.2])
def test_gradcheck_near_the_switch_and_the_poles(margin: float) -> None:
    switch = math.pi - margin
    theta = torch.tensor(
        [
            0.01,
            0.3,
            switch - 1e-3,
            switch - 1e-4,
            switch + 1e-4,
            switch + 1e-3,
            3.0,
            math.pi - 0.01,
        ],
        dtype=torch.float64,
    )
    cosine = torch.cos(theta).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda c: arcface_target(c, margin, "continuous"), (cosine,), eps=1e-6, atol=1e-6
    )
    poles = torch.tensor([1.0, -1.0], dtype=torch.float64, requires_grad=True)
    values = arcface_target(poles, margin, "continuous")
    (gradient,) = torch.autograd.grad(values.sum(), poles)
    assert bool(torch.isfinite(values).all()) and bool(torch.isfinite(gradient).all())
    assert float(gradient[1]) == 1.0  # beyond the switch the derivative in cos is 1
    assert float(values[1].detach()) == pytest.approx(-2.0 + math.cos(margin))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_head_is_nan_free_at_the_edges_of_the_sphere(dtype: torch.dtype) -> None:
    head = build("arcface", 4, 3, margin=0.5, fallback="continuous").to(dtype)
    weight = head.weight.detach()
    embeddings = torch.cat([weight, -weight, torch.zeros(1, 3, dtype=dtype)]).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])  # cos = +1, cos = -1, no direction
    loss = head(embeddings, labels)
    loss.backward()
    assert bool(torch.isfinite(loss))
    assert bool(torch.isfinite(embeddings.grad).all()) and bool(
        torch.isfinite(head.weight.grad).all()
    )


def test_fused_path_equals_margin_logits_past_the_switch() -> None:
    generator = torch.Generator().manual_seed(2)
    head = build("arcface", 5, 3, scale=16.0, margin=1.2, fallback="continuous").double()
    embeddings = torch.randn(12, 3, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, 5, (12,), generator=generator)
    with torch.no_grad():  # half the rows point away from their class: past the switch
        embeddings[:6] = -head.weight[labels[:6]] + 0.3 * embeddings[:6]
    cosine = F.cosine_similarity(embeddings, head.weight.detach()[labels])
    assert bool((cosine < -math.cos(1.2)).any()) and bool((cosine > -math.cos(1.2)).any())
    fused_x = embeddings.clone().requires_grad_(True)
    fused = head(fused_x, labels)
    fused.backward()
    fused_grads = (fused_x.grad, head.weight.grad.clone())
    head.weight.grad = None
    reference_x = embeddings.clone().requires_grad_(True)
    reference = F.cross_entropy(head.margin_logits(reference_x, labels), labels)
    reference.backward()
    torch.testing.assert_close(fused, reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        fused_grads, (reference_x.grad, head.weight.grad), rtol=1e-10, atol=1e-12
    )


def test_unknown_fallback_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"fallback must be one of insightface, continuous; got 'smooth'"
    ):
        build("arcface", 4, 3, fallback="smooth")
    assert "fallback='continuous'" in repr(build("arcface", 4, 3, fallback="continuous"))
