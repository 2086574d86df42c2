"""Schedules of hyper-parameters: formulas, the adaptive Cam-softmax rule, and their state.

Every expected value is computed directly from the formula in the test (and the official
constants from the reference sheet), never through ``marginkit``.
"""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch
from torch import Tensor

from marginkit.losses import ArcFace, CamSoftmax, LSoftmax, MarginHead, SphereFace, build
from marginkit.schedules import (
    AdaptiveAngle,
    Constant,
    LinearRamp,
    PowerDecay,
    Schedule,
    Warmup,
    as_schedule,
    camsoftmax_ramp,
    lsoftmax_lambda,
    sphereface_lambda,
)

STEPS = [0, 1, 2, 7, 100, 1_000, 1_658, 1_659, 5_000, 10_000, 30_000, 200_000]


def power_decay(step: int, base: float, gamma: float, power: float, minimum: float) -> float:
    return max(minimum, base * (1.0 + gamma * step) ** (-power))


def advance_to(schedule: Schedule, step: int) -> float:
    schedule.advance(step)
    return schedule.current()


@pytest.mark.parametrize("step", STEPS)
def test_power_decay_formula(step: int) -> None:
    schedule = PowerDecay(base=50.0, gamma=0.01, power=2.0, minimum=0.5)
    expected = power_decay(step, 50.0, 0.01, 2.0, 0.5)
    assert schedule.value_at(step) == pytest.approx(expected, rel=1e-12)
    assert advance_to(schedule, step) == pytest.approx(expected, rel=1e-12)
    assert schedule.bounds() == (0.5, 50.0)


@pytest.mark.parametrize("step", STEPS)
def test_lsoftmax_preset_is_the_official_mnist_annealing(step: int) -> None:
    # official L-Softmax MNIST: base 1000, gamma 2.5e-5, power 35, lambda_min 0
    expected = power_decay(step, 1000.0, 2.5e-5, 35.0, 0.0)
    assert lsoftmax_lambda().value_at(step) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("step", STEPS)
def test_sphereface_preset_is_the_official_annealing(step: int) -> None:
    # official SphereFace: base 1000, gamma 0.12, power 1, lambda_min 5
    expected = power_decay(step, 1000.0, 0.12, 1.0, 5.0)
    assert sphereface_lambda().value_at(step) == pytest.approx(expected, rel=1e-12)


def test_presets_landmarks() -> None:
    assert lsoftmax_lambda().value_at(0) == 1000.0
    assert lsoftmax_lambda().value_at(10_000) == pytest.approx(1000.0 * 1.25**-35)
    assert sphereface_lambda().value_at(1_658) > 5.0  # 1000 / (1 + 0.12 * 1658) = 5.0003
    assert sphereface_lambda().value_at(1_659) == 5.0  # the floor from there on


@pytest.mark.parametrize("head_class", [LSoftmax, SphereFace])
def test_head_lambda_follows_preset_step_by_step(head_class: type[MarginHead]) -> None:
    head = head_class(num_classes=4, embedding_dim=3, margin=2)
    constants = (1000.0, 2.5e-5, 35.0, 0.0) if head_class is LSoftmax else (1000.0, 0.12, 1.0, 5.0)
    embeddings, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 3, 0, 1])
    for step in range(1, 6):
        head(embeddings, labels)
        expected = power_decay(step, *constants)
        assert head.hyperparameters()["lambda_"] == pytest.approx(expected, rel=1e-12)


def test_linear_ramp_down_and_up() -> None:
    down = LinearRamp(start=2.0, end=1.0, rate=0.1)
    up = LinearRamp(start=-1.0, end=0.5, rate=0.2)
    for step in range(0, 30):
        assert down.value_at(step) == pytest.approx(max(1.0, 2.0 - 0.1 * step), abs=1e-12)
        assert up.value_at(step) == pytest.approx(min(0.5, -1.0 + 0.2 * step), abs=1e-12)
    assert down.bounds() == (1.0, 2.0) and up.bounds() == (-1.0, 0.5)


def test_camsoftmax_ramp_is_the_authors_schedule() -> None:
    ramp = camsoftmax_ramp()
    assert ramp.value_at(0) == math.pi / 2
    assert ramp.value_at(1_000) == pytest.approx(math.pi / 2 - 0.1, abs=1e-12)
    # pi/2 - 1e-4 s reaches pi/4 between s = 7853 and s = 7854, then holds
    assert ramp.value_at(7_853) == pytest.approx(math.pi / 2 - 0.7853, abs=1e-12)
    assert ramp.value_at(7_853) > math.pi / 4
    assert ramp.value_at(7_854) == math.pi / 4
    assert ramp.value_at(100_000) == math.pi / 4


@pytest.mark.parametrize(
    ("target", "steps", "start"), [(0.5, 10, 0.0), (0.35, 7, 0.1), (1.0, 1, 2.0)]
)
def test_warmup_formula(target: float, steps: int, start: float) -> None:
    warmup = Warmup(target, steps=steps, start=start)
    for step in range(0, 3 * steps + 2):
        expected = start + (target - start) * min(1.0, step / steps)
        assert warmup.value_at(step) == pytest.approx(expected, abs=1e-12)
    assert warmup.bounds() == (min(start, target), max(start, target))


def test_warmup_on_a_head_margin() -> None:
    """``ArcFace(margin=Warmup(0.5, 4))``: margin 0 at step 0 (NormFace), 0.5 from step 4."""
    head = ArcFace(num_classes=4, embedding_dim=3, scale=10.0, margin=Warmup(0.5, steps=4))
    normface = build("normface", num_classes=4, embedding_dim=3, scale=10.0)
    normface.load_state_dict({"weight": head.weight.detach().clone()}, strict=False)
    embeddings, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(head(embeddings, labels), normface(embeddings, labels))
    margins = [head.hyperparameters()["margin"]]
    for _ in range(5):
        head(embeddings, labels)
        margins.append(head.hyperparameters()["margin"])
    assert margins == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5, 0.5])


def test_as_schedule_and_constant() -> None:
    constant = as_schedule(0.35, "margin")
    assert isinstance(constant, Constant)
    assert constant.current() == 0.35 and constant.value_at(10**6) == 0.35
    ramp = camsoftmax_ramp()
    assert as_schedule(ramp, "c") is ramp
    with pytest.raises(TypeError, match="margin must be a float or a"):
        as_schedule("0.35", "margin")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- AdaptiveAngle
def cosines_at(angles: Tensor | list[float]) -> Tensor:
    return torch.cos(torch.as_tensor(angles, dtype=torch.float64))


def wide_cosines(generator: torch.Generator, batch: int = 64) -> Tensor:
    """Target cosines of random embeddings and weights in 16-D: angles around pi/2."""
    embeddings = torch.randn(batch, 16, generator=generator, dtype=torch.float64)
    weights = torch.randn(batch, 16, generator=generator, dtype=torch.float64)
    return torch.nn.functional.cosine_similarity(embeddings, weights)


def test_adaptive_angle_starts_at_softmax() -> None:
    schedule = AdaptiveAngle()
    assert schedule.current() == math.pi / 2
    assert CamSoftmax(num_classes=3, embedding_dim=2).hyperparameters()["c"] == math.pi / 2
    assert schedule.bounds() == (math.pi / 4, math.pi / 2)
    with pytest.raises(RuntimeError, match="training statistics"):
        schedule.value_at(5)


def test_adaptive_angle_stays_while_angles_are_wide() -> None:
    """Every target angle at least a right angle: c stays at pi/2 exactly (default rule)."""
    schedule = AdaptiveAngle()
    generator = torch.Generator().manual_seed(0)
    for step in range(1, 201):
        angles = math.pi / 2 + (math.pi / 2) * torch.rand(64, generator=generator).double()
        schedule.advance(step, cosines_at(angles))
        assert schedule.current() == math.pi / 2


def test_adaptive_angle_high_quantile_stays_on_random_embeddings() -> None:
    """With a high quantile, isotropic random 16-D embeddings never move c."""
    schedule = AdaptiveAngle(quantile=0.9)
    generator = torch.Generator().manual_seed(0)
    for step in range(1, 201):
        cosines = wide_cosines(generator)
        assert float(torch.quantile(torch.acos(cosines), 0.9)) > math.pi / 2  # really wide
        schedule.advance(step, cosines)
        assert schedule.current() == math.pi / 2


def test_adaptive_angle_default_barely_moves_on_random_embeddings() -> None:
    """The default (median) rule on isotropic random embeddings, whose median target angle
    is pi/2 itself: the one-way ratchet may drift, but by far less than the ramp would."""
    schedule = AdaptiveAngle()
    generator = torch.Generator().manual_seed(0)
    for step in range(1, 1001):
        schedule.advance(step, wide_cosines(generator))
    drift = math.pi / 2 - schedule.current()
    assert 0.0 <= drift < 0.01  # the authors' ramp would have moved 0.1 in 1000 steps


def test_adaptive_angle_moves_down_at_most_rate_per_step() -> None:
    rate = 1e-3
    schedule = AdaptiveAngle(rate=rate)
    tight = cosines_at([0.2, 0.3, 0.25, 0.35] * 4)  # quantile far below pi/4
    for step in range(1, 51):
        schedule.advance(step, tight)
        assert schedule.current() == pytest.approx(math.pi / 2 - rate * step, abs=1e-12)


def test_adaptive_angle_follows_running_quantile() -> None:
    """With a large rate, c equals the running quantile (EMA of batch quantiles), clipped."""
    schedule = AdaptiveAngle(quantile=0.9, momentum=0.5, rate=10.0, minimum=0.3)
    generator = torch.Generator().manual_seed(1)
    running = None
    lowest = math.pi / 2
    for step in range(1, 20):
        angles = 0.6 + 0.6 * torch.rand(32, generator=generator, dtype=torch.float64)
        batch_quantile = float(np.quantile(angles.numpy(), 0.9))  # numpy's linear rule
        running = batch_quantile if running is None else running + 0.5 * (batch_quantile - running)
        schedule.advance(step, cosines_at(angles))
        assert float(schedule.running_quantile) == pytest.approx(running, abs=1e-12)
        lowest = min(lowest, max(0.3, running))  # never up: c is the lowest proposal so far
        assert schedule.current() == pytest.approx(lowest, abs=1e-12)


def test_adaptive_angle_never_below_minimum_never_up() -> None:
    schedule = AdaptiveAngle(minimum=1.0, rate=0.1, momentum=1.0)
    tight = cosines_at([0.1] * 8)
    values = []
    for step in range(1, 20):
        schedule.advance(step, tight)
        values.append(schedule.current())
    assert min(values) == 1.0  # reached the floor and stayed there
    assert values[-1] == 1.0
    assert all(b <= a for a, b in itertools.pairwise(values))
    generator = torch.Generator().manual_seed(2)
    for step in range(20, 60):  # wide again: c does not rise back
        schedule.advance(step, wide_cosines(generator))
        assert schedule.current() == 1.0


def test_adaptive_angle_ignores_missing_statistics() -> None:
    schedule = AdaptiveAngle()
    schedule.advance(1, None)
    schedule.advance(2, torch.empty(0, dtype=torch.float64))
    assert schedule.current() == math.pi / 2
    assert math.isnan(float(schedule.running_quantile))


def test_adaptive_angle_through_a_head() -> None:
    """A CamSoftmax head feeds its target cosines to the rule once per training step."""
    head = CamSoftmax(num_classes=3, embedding_dim=4, c=AdaptiveAngle(rate=1e-3))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    weight = head.weight.detach()
    embeddings = 2.0 * weight[labels] + 0.01 * torch.randn(6, 4)  # tight: angles ~ 0
    for step in range(1, 6):
        head(embeddings, labels)
        assert head.hyperparameters()["c"] == pytest.approx(math.pi / 2 - 1e-3 * step)
    head.eval()
    head(embeddings, labels)
    assert head.hyperparameters()["c"] == pytest.approx(math.pi / 2 - 5e-3)


# ----------------------------------------------------------------------- steps and state
SCHEDULED_HEADS = {
    "lsoftmax-default": lambda: build("lsoftmax", num_classes=3, embedding_dim=4),
    "sphereface-default": lambda: build("sphereface", num_classes=3, embedding_dim=4),
    "camsoftmax-adaptive": lambda: build("camsoftmax", num_classes=3, embedding_dim=4),
    "camsoftmax-ramp": lambda: CamSoftmax(3, 4, c=LinearRamp(math.pi / 2, math.pi / 4, 0.01)),
    "arcface-warmup": lambda: ArcFace(3, 4, margin=Warmup(0.5, steps=10)),
    "cosface-warmup-scale": lambda: build(
        "cosface", 3, 4, scale=Warmup(30.0, steps=5, start=10.0), margin=Warmup(0.35, 8)
    ),
}


def tight_batch(head: MarginHead) -> tuple[Tensor, Tensor]:
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    weight = head.weight.detach()
    return 2.0 * weight[labels] + 0.05 * torch.randn(6, 4), labels


@pytest.mark.parametrize("make", SCHEDULED_HEADS.values(), ids=SCHEDULED_HEADS.keys())
def test_step_advances_once_per_training_forward(make) -> None:  # type: ignore[no-untyped-def]
    head = make()
    embeddings, labels = tight_batch(head)
    history = [head.hyperparameters()]
    for expected_step in range(1, 4):
        head(embeddings, labels)
        assert int(head.step) == expected_step
        history.append(head.hyperparameters())
    assert history[-1] != history[0]  # the schedule moved
    head.eval()
    head(embeddings, labels)
    head.logits(embeddings)
    assert int(head.step) == 3 and head.hyperparameters() == history[-1]


@pytest.mark.parametrize("make", SCHEDULED_HEADS.values(), ids=SCHEDULED_HEADS.keys())
def test_schedule_state_survives_save_and_load(make) -> None:  # type: ignore[no-untyped-def]
    head = make()
    embeddings, labels = tight_batch(head)
    for _ in range(4):
        head(embeddings, labels)
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    fresh = make()
    assert fresh.hyperparameters() != head.hyperparameters()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert int(fresh.step) == 4
    assert fresh.hyperparameters() == head.hyperparameters()
    for _ in range(3):  # and both continue identically
        head(embeddings, labels)
        fresh(embeddings, labels)
        assert fresh.hyperparameters() == head.hyperparameters()


def test_schedule_state_is_not_cast_with_the_head() -> None:
    """``head.half()`` / ``.double()`` move the weights, not the schedules' float64 state."""
    head = CamSoftmax(3, 4, c=camsoftmax_ramp())
    head.schedules["c"].advance(3)
    value = head.hyperparameters()["c"]
    head.half()
    assert head.weight.dtype == torch.float16
    assert head.schedules["c"].value.dtype == torch.float64
    assert head.hyperparameters()["c"] == value == math.pi / 2 - 3e-4


@pytest.mark.parametrize(
    "schedule",
    [
        Constant(0.5),
        Warmup(0.5, 1000),
        PowerDecay(1000.0, 0.12, 1.0, 5.0),
        LinearRamp(0.0, 1.0, 0.01),
        AdaptiveAngle(),
    ],
    ids=["constant", "warmup", "power", "ramp", "adaptive"],
)
def test_a_negative_step_is_refused(schedule: Schedule) -> None:
    """``Warmup(0.5, 1000).value_at(-490)`` was -0.245 (issue 9)."""
    with pytest.raises(ValueError, match=r"step must be an integer >= 0; got -490"):
        schedule.value_at(-490)
    with pytest.raises(ValueError, match=r"step must be an integer >= 0; got -1"):
        schedule.advance(-1)
    assert schedule.value_at(0) == schedule.current()
