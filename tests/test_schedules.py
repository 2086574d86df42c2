"""Schedules of hyper-parameters: formulas, the adaptive Cam-softmax rule, and their state.

Every expected value is computed directly from the formula in the test (and the official
constants of ``docs/losses.md``), never through ``marginkit``.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor

from marginkit.errors import ConfigError
from marginkit.losses import (
    ArcFace,
    CamSoftmax,
    LSoftmax,
    MarginHead,
    SphereFace,
    available,
    build,
)
from marginkit.schedules import (
    ANNEAL_FRACTION,
    SCHEDULE_FORMS,
    SCHEDULE_KINDS,
    AdaptiveAngle,
    Constant,
    LinearRamp,
    PowerDecay,
    RunFraction,
    RunLengthWarning,
    Schedule,
    Warmup,
    as_schedule,
    build_schedule,
    camsoftmax_ramp,
    lsoftmax_lambda,
    parse_number,
    parse_schedule,
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
    """The official step-based presets, passed explicitly, drive the head's lambda."""
    preset = lsoftmax_lambda() if head_class is LSoftmax else sphereface_lambda()
    head = head_class(num_classes=4, embedding_dim=3, margin=2, lambda_=preset)
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
RUN_STEPS = 1_000  # the run length given to heads with run-relative schedules

SCHEDULED_HEADS = {
    "lsoftmax-default": lambda: build("lsoftmax", 3, 4).set_total_steps(RUN_STEPS),
    "sphereface-default": lambda: build("sphereface", 3, 4).set_total_steps(RUN_STEPS),
    "camsoftmax-adaptive": lambda: build("camsoftmax", 3, 4).set_total_steps(RUN_STEPS),
    "lsoftmax-official": lambda: LSoftmax(3, 4, lambda_=lsoftmax_lambda()),
    "sphereface-official": lambda: SphereFace(3, 4, lambda_=sphereface_lambda()),
    "camsoftmax-ramp-fraction": lambda: CamSoftmax(
        3, 4, c=camsoftmax_ramp(fraction=0.4)
    ).set_total_steps(20),
    "arcface-warmup-fraction": lambda: ArcFace(
        3, 4, margin=Warmup(0.5, fraction=0.5)
    ).set_total_steps(20),
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


# ------------------------------------------------------------- fractions of the run
def run_steps(fraction: float, total: int) -> int:
    """``fraction`` of a ``total``-step run, in whole steps (at least one)."""
    return max(1, round(fraction * total))


def normalised_decay(
    step: int, base: float, minimum: float, power: float, shape: float, length: int
) -> float:
    """The run-relative power decay, written from its docstring: ``g(t) = (1 + shape t /
    length)^-power`` rescaled to go from ``base`` at 0 to ``minimum`` at ``length``."""
    if step >= length:
        return minimum
    end = (1.0 + shape) ** -power
    now = (1.0 + shape * step / length) ** -power
    return minimum + (base - minimum) * (now - end) / (1.0 - end)


def test_warmup_fraction_form() -> None:
    warmup = Warmup(0.5, fraction=0.2)  # 0 -> 0.5 over the first 20 % of the run
    assert warmup.relative and warmup.current() == 0.0
    warmup.set_total_steps(100)  # 20 steps
    assert warmup.total_steps == 100
    expected = {0: 0.0, 1: 0.025, 5: 0.125, 10: 0.25, 19: 0.475, 20: 0.5, 21: 0.5, 100: 0.5}
    for step, value in expected.items():
        assert warmup.value_at(step) == pytest.approx(value, abs=1e-12)
        assert advance_to(warmup, step) == pytest.approx(value, abs=1e-12)
    assert warmup.value_at(20) == 0.5  # exactly the target from round(0.2 T) on
    with_start = Warmup(0.35, start=0.1, fraction=0.5)
    with_start.set_total_steps(7)  # round(3.5) = 4 steps
    assert [with_start.value_at(step) for step in range(6)] == pytest.approx(
        [0.1, 0.1625, 0.225, 0.2875, 0.35, 0.35]
    )
    assert with_start.bounds() == (0.1, 0.35)


def test_warmup_fraction_lasts_at_least_one_step() -> None:
    warmup = Warmup(1.0, fraction=0.01)
    warmup.set_total_steps(10)  # 0.1 step: rounded up to one
    assert [warmup.value_at(step) for step in range(3)] == [0.0, 1.0, 1.0]
    whole = Warmup(2.0, fraction=1.0)
    whole.set_total_steps(8)
    assert [whole.value_at(step) for step in (0, 4, 8, 9)] == pytest.approx([0.0, 1.0, 2.0, 2.0])


def test_linear_ramp_fraction_form() -> None:
    down = LinearRamp(2.0, 1.0, fraction=0.5)
    down.set_total_steps(40)  # 20 steps
    for step, value in {0: 2.0, 1: 1.95, 10: 1.5, 19: 1.05, 20: 1.0, 40: 1.0, 99: 1.0}.items():
        assert down.value_at(step) == pytest.approx(value, abs=1e-12)
    assert down.value_at(20) == 1.0
    up = LinearRamp(-1.0, 0.5, fraction=0.25)
    up.set_total_steps(8)  # 2 steps
    assert [up.value_at(step) for step in range(4)] == pytest.approx([-1.0, -0.25, 0.5, 0.5])
    assert down.relative and up.relative and not LinearRamp(0.0, 1.0, rate=0.1).relative
    assert down.bounds() == (1.0, 2.0) and up.bounds() == (-1.0, 0.5)


def test_camsoftmax_ramp_fraction_form() -> None:
    ramp = camsoftmax_ramp(fraction=0.4)
    ramp.set_total_steps(469)  # round(187.6) = 188 steps
    assert ramp.value_at(0) == math.pi / 2
    assert ramp.value_at(94) == pytest.approx(3 * math.pi / 8, abs=1e-12)  # half-way
    assert ramp.value_at(187) == pytest.approx(math.pi / 4 + (math.pi / 4) / 188, abs=1e-12)
    assert ramp.value_at(187) > math.pi / 4
    assert ramp.value_at(188) == ramp.value_at(469) == ramp.value_at(10_000) == math.pi / 4


@pytest.mark.parametrize(
    ("base", "minimum", "power", "shape", "fraction", "total"),
    [
        (1000.0, 0.0, 1.0, 199.0, 0.4, 469),  # the L-Softmax default over one MNIST epoch
        (1000.0, 5.0, 1.0, 199.0, 0.4, 469),  # the SphereFace default
        (50.0, 0.5, 2.0, 10.0, 0.3, 101),
        (3.0, 0.0, 0.5, 1.0, 1.0, 17),
        (7.0, 7.0, 1.0, 199.0, 0.5, 10),  # minimum == base: constant
    ],
)
def test_power_decay_fraction_form(
    base: float, minimum: float, power: float, shape: float, fraction: float, total: int
) -> None:
    schedule = PowerDecay(base, power=power, minimum=minimum, fraction=fraction, shape=shape)
    assert schedule.relative and schedule.current() == base
    schedule.set_total_steps(total)
    length = run_steps(fraction, total)
    values = [schedule.value_at(step) for step in range(total + 5)]
    for step, value in enumerate(values):
        expected = normalised_decay(step, base, minimum, power, shape, length)
        assert value == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert values[0] == base
    assert values[length] == minimum  # exactly the floor at round(fraction T) ...
    assert all(value == minimum for value in values[length:])  # ... and from there on
    assert all(b <= a for a, b in itertools.pairwise(values))  # never up
    if minimum < base:
        assert values[length - 1] > minimum  # not earlier
    assert schedule.bounds() == (minimum, base)


def test_power_decay_fraction_hand_computed_values() -> None:
    """Landmarks worked out by hand for shape 199, power 1 over a 188-step decay (0.4 of a
    469-step run): ``(g - 1/200) / (1 - 1/200)`` is 37213/77013 after one step and 1/201
    half-way."""
    lsoftmax = lsoftmax_lambda(fraction=0.4)
    sphereface = sphereface_lambda(fraction=0.4)
    for schedule in (lsoftmax, sphereface):
        schedule.set_total_steps(469)
    assert lsoftmax.value_at(1) == pytest.approx(1000.0 * 37213 / 77013, rel=1e-12)
    assert lsoftmax.value_at(94) == pytest.approx(1000.0 / 201, rel=1e-12)  # 4.975
    assert sphereface.value_at(94) == pytest.approx(5.0 + 995.0 / 201, rel=1e-12)  # "about 10"
    assert lsoftmax.value_at(188) == 0.0 and sphereface.value_at(188) == 5.0
    # a quadratic decay with shape 3 over 10 steps: g(5) = (1 + 1.5)^-2 = 0.16, g(10) = 1/16
    quadratic = PowerDecay(10.0, power=2.0, minimum=1.0, fraction=0.5, shape=3.0)
    quadratic.set_total_steps(20)
    assert quadratic.value_at(5) == pytest.approx(1.0 + 9.0 * (0.16 - 0.0625) / 0.9375)
    assert quadratic.value_at(10) == 1.0


def test_run_relative_presets() -> None:
    for preset, floor in ((lsoftmax_lambda, 0.0), (sphereface_lambda, 5.0)):
        schedule = preset(fraction=0.25)
        assert isinstance(schedule, PowerDecay) and schedule.relative
        assert (schedule.base, schedule.minimum, schedule.power) == (1000.0, floor, 1.0)
        assert (schedule.gamma, schedule.fraction, schedule.shape) == (None, 0.25, 199.0)
    ramp = camsoftmax_ramp(fraction=0.25)
    assert isinstance(ramp, LinearRamp) and ramp.relative
    assert (ramp.start, ramp.end, ramp.rate, ramp.fraction) == (
        math.pi / 2,
        math.pi / 4,
        None,
        0.25,
    )


def test_official_presets_are_unchanged() -> None:
    """Without ``fraction`` the presets are the official step-based ones, need no run length,
    and give the same values as before (lambda is still about 665 after one MNIST epoch)."""
    lsoftmax, sphereface, ramp = lsoftmax_lambda(), sphereface_lambda(), camsoftmax_ramp()
    assert not (lsoftmax.relative or sphereface.relative or ramp.relative)
    assert (lsoftmax.base, lsoftmax.gamma, lsoftmax.power, lsoftmax.minimum) == (
        1000.0,
        2.5e-5,
        35.0,
        0.0,
    )
    assert (sphereface.base, sphereface.gamma, sphereface.power, sphereface.minimum) == (
        1000.0,
        0.12,
        1.0,
        5.0,
    )
    assert (ramp.start, ramp.end, ramp.rate, ramp.fraction) == (
        math.pi / 2,
        math.pi / 4,
        1e-4,
        None,
    )
    assert lsoftmax.total_steps is None
    assert lsoftmax.value_at(469) == pytest.approx(1000.0 * (1.0 + 2.5e-5 * 469) ** -35.0)
    assert 660.0 < lsoftmax.value_at(469) < 670.0
    # a run length changes nothing for a step-based schedule
    for step in STEPS:
        before = (lsoftmax.value_at(step), sphereface.value_at(step), ramp.value_at(step))
        for schedule in (lsoftmax, sphereface, ramp):
            schedule.set_total_steps(469)
        assert (lsoftmax.value_at(step), sphereface.value_at(step), ramp.value_at(step)) == before
    assert not AdaptiveAngle().relative and AdaptiveAngle().step_rate() == 1e-4
    assert not Constant(1.0).relative and not Warmup(1.0, steps=3).relative


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Warmup(0.5), r"Warmup takes exactly one of steps or fraction"),
        (lambda: Warmup(0.5, steps=10, fraction=0.2), r"Warmup takes exactly one of steps"),
        (lambda: LinearRamp(1.0, 0.0), r"LinearRamp takes exactly one of rate .* or fraction"),
        (lambda: LinearRamp(1.0, 0.0, 0.1, fraction=0.2), r"LinearRamp takes exactly one of"),
        (lambda: PowerDecay(10.0), r"PowerDecay takes exactly one of gamma .* or fraction"),
        (lambda: PowerDecay(10.0, 0.1, fraction=0.2), r"PowerDecay takes exactly one of gamma"),
        (lambda: AdaptiveAngle(rate=1e-3, fraction=0.4), r"at most one of rate .* or fraction"),
        (lambda: PowerDecay(10.0, power=0.0, fraction=0.5), r"power must be > 0 with fraction"),
        (lambda: PowerDecay(10.0, fraction=0.5, shape=0.0), r"shape must be > 0; got 0.0"),
        (lambda: PowerDecay(10.0, fraction=0.5, shape=-1.0), r"shape must be > 0"),
        (lambda: PowerDecay(1.0, minimum=2.0, fraction=0.5), r"minimum must lie in \[0, base"),
    ],
)
def test_exactly_one_pace_and_fraction_form_checks(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        make()


FRACTION_FORMS = {
    "warmup": lambda fraction: Warmup(0.5, fraction=fraction),
    "ramp": lambda fraction: LinearRamp(1.0, 0.0, fraction=fraction),
    "decay": lambda fraction: PowerDecay(10.0, fraction=fraction),
    "adaptive": lambda fraction: AdaptiveAngle(fraction=fraction),
    "lsoftmax": lambda fraction: lsoftmax_lambda(fraction=fraction),
    "sphereface": lambda fraction: sphereface_lambda(fraction=fraction),
    "camsoftmax": lambda fraction: camsoftmax_ramp(fraction=fraction),
}


@pytest.mark.parametrize("make", FRACTION_FORMS.values(), ids=FRACTION_FORMS.keys())
@pytest.mark.parametrize(
    ("fraction", "error", "message"),
    [
        (0.0, ValueError, r"fraction must be a fraction of the run in \(0, 1\]; got 0.0"),
        (-0.2, ValueError, r"fraction must be a fraction of the run in \(0, 1\]; got -0.2"),
        (1.0000001, ValueError, r"fraction must be a fraction of the run in \(0, 1\]"),
        (2, ValueError, r"fraction must be a fraction of the run in \(0, 1\]; got 2.0"),
        (math.nan, ValueError, r"fraction must be finite"),
        (math.inf, ValueError, r"fraction must be finite"),
        (True, TypeError, r"fraction must be a real number; got bool"),
        ("0.5", TypeError, r"fraction must be a real number; got str"),
    ],
)
def test_fraction_must_lie_in_zero_one(make, fraction, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        make(fraction)


@pytest.mark.parametrize("make", FRACTION_FORMS.values(), ids=FRACTION_FORMS.keys())
def test_fraction_one_and_tiny_fractions_are_valid(make) -> None:  # type: ignore[no-untyped-def]
    for fraction in (1.0, 1, 1e-9, 0.4):
        schedule = make(fraction)
        assert schedule.relative and schedule.fraction == fraction
        assert schedule.total_steps is None
        assert "fraction=" in repr(schedule)


@pytest.mark.parametrize("make", FRACTION_FORMS.values(), ids=FRACTION_FORMS.keys())
def test_set_total_steps_checks_its_argument(make) -> None:  # type: ignore[no-untyped-def]
    schedule = make(0.5)
    for bad in (0, -3):
        with pytest.raises(ValueError, match=r"total_steps must be >= 1"):
            schedule.set_total_steps(bad)
    for bad in (2.0, 1.5, True, None, "10"):
        with pytest.raises(TypeError, match=r"total_steps must be an int"):
            schedule.set_total_steps(bad)
    assert schedule.total_steps is None
    schedule.set_total_steps(1)
    assert schedule.total_steps == 1


@pytest.mark.parametrize(
    "make",
    [FRACTION_FORMS[key] for key in ("warmup", "ramp", "decay", "lsoftmax", "camsoftmax")],
    ids=["warmup", "ramp", "decay", "lsoftmax", "camsoftmax"],
)
def test_fraction_form_needs_the_run_length(make) -> None:  # type: ignore[no-untyped-def]
    """Step 0 needs no length (the start value); any later step does, and says how to give it."""
    schedule = make(0.5)
    start = schedule.current()
    assert schedule.value_at(0) == start
    with pytest.raises(RuntimeError, match=r"fraction of the run: call head\.set_total_steps\(N\)"):
        schedule.value_at(1)
    with pytest.raises(RuntimeError, match=r"set_total_steps"):
        schedule.advance(1)
    assert schedule.current() == start


def test_adaptive_angle_fraction_needs_the_run_length_to_move() -> None:
    schedule = AdaptiveAngle(fraction=0.5)
    tight = cosines_at([0.2, 0.3, 0.25, 0.35] * 4)
    with pytest.raises(RuntimeError, match=r"AdaptiveAngle\(.*fraction=0.5\) is given as a"):
        schedule.advance(1, tight)
    assert schedule.current() == math.pi / 2
    schedule.set_total_steps(100)  # 50 steps at the fastest: (pi/2 - pi/4) / 50 per step
    assert schedule.step_rate() == pytest.approx((math.pi / 4) / 50, rel=1e-12)
    schedule.advance(1, tight)
    assert schedule.current() == pytest.approx(math.pi / 2 - (math.pi / 4) / 50, abs=1e-12)


@pytest.mark.parametrize(("total", "fraction"), [(200, 0.25), (469, 0.4), (1000, 0.4), (7, 0.3)])
def test_adaptive_angle_fraction_reaches_its_minimum_within_the_fraction(
    total: int, fraction: float
) -> None:
    """On small target angles the rule descends at its largest rate, (start - minimum) /
    (fraction T), so it is at ``minimum`` after round(fraction T) steps and stays there."""
    schedule = AdaptiveAngle(fraction=fraction)
    schedule.set_total_steps(total)
    length = run_steps(fraction, total)
    rate = (math.pi / 2 - math.pi / 4) / length
    assert schedule.step_rate() == pytest.approx(rate, rel=1e-12)
    tight = cosines_at([0.2, 0.3, 0.25, 0.35] * 4)  # quantile far below pi/4
    values = []
    for step in range(1, total + 1):
        schedule.advance(step, tight)
        values.append(schedule.current())
    for step in range(1, length + 1):
        assert values[step - 1] == pytest.approx(math.pi / 2 - rate * step, abs=1e-12)
    assert values[length - 1] == pytest.approx(math.pi / 4, abs=1e-12)  # within f T steps
    assert all(value == math.pi / 4 for value in values[length:])  # then exactly the floor
    if length > 1:
        assert values[length - 2] > math.pi / 4 + rate / 2  # not earlier


def test_adaptive_angle_fraction_still_follows_the_data() -> None:
    """The fraction sets the pace only: with target angles around 1.2 the rule stops there."""
    schedule = AdaptiveAngle(fraction=0.1, momentum=1.0)
    schedule.set_total_steps(100)  # up to (pi/4) / 10 per step
    angles = cosines_at([1.1, 1.2, 1.3] * 5)  # median 1.2 > pi/4
    for step in range(1, 60):
        schedule.advance(step, angles)
    assert schedule.current() == pytest.approx(1.2, abs=1e-12)


def test_set_total_steps_rereads_the_value_at_the_current_step() -> None:
    warmup = Warmup(1.0, fraction=0.5)
    warmup.set_total_steps(100)  # 50 steps
    assert advance_to(warmup, 10) == pytest.approx(0.2)
    warmup.set_total_steps(40, step=10)  # now 20 steps: at step 10, half-way
    assert warmup.total_steps == 40 and warmup.current() == pytest.approx(0.5)
    warmup.set_total_steps(10, step=10)  # already past the end
    assert warmup.current() == 1.0
    decay = PowerDecay(100.0, fraction=1.0, power=1.0, shape=3.0)
    decay.set_total_steps(8, step=2)  # g(2) = (1 + 3 * 2 / 8)^-1 = 4/7, g(8) = 1/4
    assert decay.current() == pytest.approx(100.0 * (4 / 7 - 0.25) / 0.75, rel=1e-12)
    adaptive = AdaptiveAngle(fraction=0.5)
    adaptive.set_total_steps(100)
    adaptive.advance(1, cosines_at([0.1] * 4))
    moved = adaptive.current()
    adaptive.set_total_steps(10, step=1)  # the value follows the data: kept, only the pace
    assert adaptive.current() == moved
    assert adaptive.step_rate() == pytest.approx((math.pi / 4) / 5)


def test_head_set_total_steps_reaches_every_schedule_and_rereads() -> None:
    head = build(
        "cosface", 3, 4, scale=Warmup(30.0, start=10.0, fraction=0.5), margin=Warmup(0.4, 8)
    )
    assert head.total_steps is None
    assert head.set_total_steps(20) is head  # chainable
    assert head.total_steps == 20
    assert all(schedule.total_steps == 20 for schedule in head.schedules.values())
    embeddings, labels = tight_batch(head)
    for _ in range(5):
        head(embeddings, labels)
    assert head.hyperparameters() == pytest.approx({"scale": 20.0, "margin": 0.25})
    head.set_total_steps(10)  # the scale's warm-up is now 5 steps: over at step 5
    assert int(head.step) == 5 and head.total_steps == 10
    assert head.hyperparameters() == pytest.approx({"scale": 30.0, "margin": 0.25})
    with pytest.raises(ValueError, match=r"total_steps must be >= 1; got 0"):
        head.set_total_steps(0)
    with pytest.raises(TypeError, match=r"total_steps must be an int; got float"):
        head.set_total_steps(10.0)  # type: ignore[arg-type]
    assert head.total_steps == 10


def test_default_heads_are_run_relative() -> None:
    """The defaults of L-Softmax / SphereFace lambda and Cam-softmax's c are run-relative,
    over ANNEAL_FRACTION = 0.4 of the run, with the official start and end points."""
    assert ANNEAL_FRACTION == 0.4
    for head_class, floor in ((LSoftmax, 5.0), (SphereFace, 5.0)):  # SphereFace's floor
        schedule = head_class(3, 4).schedules["lambda_"]
        assert isinstance(schedule, PowerDecay) and schedule.relative
        assert (schedule.base, schedule.minimum, schedule.power) == (1000.0, floor, 1.0)
        assert (schedule.gamma, schedule.fraction, schedule.shape) == (None, 0.4, 199.0)
    c = CamSoftmax(3, 4).schedules["c"]
    assert isinstance(c, AdaptiveAngle) and c.relative and c.fraction == 0.4
    assert (c.start, c.minimum, c.quantile, c.momentum) == (math.pi / 2, math.pi / 4, 0.5, 0.01)
    for name in ("lsoftmax", "sphereface", "camsoftmax", "asoftmax"):
        assert build(name, 3, 4).total_steps is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: LSoftmax(3, 4, lambda_=lsoftmax_lambda(0.4)),
            r"LSoftmax's lambda_ is given as a fraction of the run",
        ),
        (
            lambda: SphereFace(3, 4, lambda_=sphereface_lambda(0.4)),
            r"SphereFace's lambda_ is given as a fraction of the run",
        ),
        (
            lambda: CamSoftmax(3, 4, c=AdaptiveAngle(fraction=0.4)),
            r"CamSoftmax's c is given as a fraction of the run",
        ),
        (
            lambda: CamSoftmax(3, 4, c=camsoftmax_ramp(fraction=0.4)),
            r"CamSoftmax's c is given as a fraction of the run \(LinearRamp\(.*fraction=0.4\)\)",
        ),
        (
            lambda: ArcFace(3, 4, margin=Warmup(0.5, fraction=0.2)),
            r"ArcFace's margin is given as a fraction of the run \(Warmup\(target=0.5",
        ),
    ],
    ids=["lsoftmax", "sphereface", "camsoftmax", "camsoftmax-ramp", "arcface-warmup"],
)
def test_training_without_a_run_length_raises(make, message: str) -> None:  # type: ignore[no-untyped-def]
    """A schedule of the user's that is a fraction of the run has no fallback (unlike the
    heads' own run-relative defaults): training without the run's length is refused."""
    head = make()
    embeddings, labels = tight_batch(head)
    embeddings.requires_grad_(True)
    start = head.hyperparameters()
    with pytest.raises(RuntimeError, match=message) as error:
        head(embeddings, labels)
    assert "call head.set_total_steps(N) with the run's number of training steps" in str(
        error.value
    )
    assert "or pass total_steps=N to the head" in str(error.value)
    # nothing happened: no step, no schedule moved, no gradient
    assert int(head.step) == 0 and head.hyperparameters() == start
    assert embeddings.grad is None and head.weight.grad is None
    # scoring and evaluation need no run length (the schedules do not move)
    assert torch.isfinite(head.logits(embeddings)).all()
    assert torch.isfinite(head.margin_logits(embeddings, labels)).all()
    head.eval()
    loss = head(embeddings, labels)
    assert torch.isfinite(loss)
    loss.backward()  # an eval-mode loss is differentiable too
    assert int(head.step) == 0 and head.hyperparameters() == start
    # once told, it trains
    head.train().set_total_steps(50)
    head(embeddings, labels)
    assert int(head.step) == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: ArcFace(3, 4),
        lambda: LSoftmax(3, 4, lambda_=lsoftmax_lambda()),
        lambda: SphereFace(3, 4, lambda_=sphereface_lambda()),
        lambda: CamSoftmax(3, 4, c=AdaptiveAngle()),
        lambda: CamSoftmax(3, 4, c=camsoftmax_ramp()),
        lambda: ArcFace(3, 4, margin=Warmup(0.5, steps=10)),
        lambda: LSoftmax(3, 4, lambda_=0.0),
    ],
    ids=[
        "arcface",
        "lsoftmax-official",
        "sphereface-official",
        "adaptive-rate",
        "ramp",
        "warmup",
        "float",
    ],
)
def test_step_based_heads_train_without_a_run_length(make) -> None:  # type: ignore[no-untyped-def]
    head = make()
    embeddings, labels = tight_batch(head)
    for step in range(1, 4):
        assert torch.isfinite(head(embeddings, labels))
        assert int(head.step) == step
    assert head.total_steps is None


@pytest.mark.parametrize(
    ("make", "key", "end", "default"),
    [
        (lambda: LSoftmax(3, 4), "lambda_", 5.0, True),
        (lambda: SphereFace(3, 4), "lambda_", 5.0, True),
        (lambda: CamSoftmax(3, 4), "c", math.pi / 4, True),
        (lambda: CamSoftmax(3, 4, c=camsoftmax_ramp(fraction=0.4)), "c", math.pi / 4, False),
        (lambda: ArcFace(3, 4, margin=Warmup(0.5, fraction=0.3)), "margin", 0.5, False),
    ],
    ids=["lsoftmax", "sphereface", "camsoftmax-adaptive", "camsoftmax-ramp", "arcface-warmup"],
)
def test_run_relative_head_resumes_after_set_total_steps(  # type: ignore[no-untyped-def]
    make, key: str, end: float, default: bool
) -> None:
    """The run length is not saved (the trainer gives it again on resume): a fresh head that
    loads the state and is told the same length continues exactly like the original, through
    the end of the annealing. (Trained before it is told, a user's schedule is refused; a
    head's default would fall back to the paper's schedule, tested below.)"""
    total = 40
    head = make().set_total_steps(total)
    embeddings, labels = tight_batch(head)
    for _ in range(7):
        head(embeddings, labels)
    state = head.state_dict()
    assert not any("total" in key for key in state)  # a plain attribute, not state
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = make()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.total_steps is None and int(fresh.step) == 7
    assert fresh.hyperparameters() == head.hyperparameters()
    if not default:
        with pytest.raises(RuntimeError, match=r"set_total_steps"):
            fresh(embeddings, labels)
    assert int(fresh.step) == 7
    assert fresh.set_total_steps(total).hyperparameters() == head.hyperparameters()  # re-read
    for _ in range(7, total + 3):
        head(embeddings, labels)
        fresh(embeddings, labels)
        assert int(fresh.step) == int(head.step)
        assert fresh.hyperparameters() == head.hyperparameters()
    assert fresh.hyperparameters()[key] == end  # the annealing is over by the end of the run


# ------------------------------------------------ heads as built, without a run length
#: The heads whose default follows the run, the hyper-parameter, and the paper's own
#: step-based schedule (``recipe: paper``'s) that it falls back to without a run length.
DEFAULT_FALLBACKS = {
    "lsoftmax": (LSoftmax, "lambda_", lsoftmax_lambda),
    "sphereface": (SphereFace, "lambda_", sphereface_lambda),
    "camsoftmax": (CamSoftmax, "c", camsoftmax_ramp),
}


def fallback_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, RunLengthWarning)]


@pytest.mark.parametrize(
    ("head_class", "key", "paper"), DEFAULT_FALLBACKS.values(), ids=DEFAULT_FALLBACKS.keys()
)
def test_default_without_a_run_length_trains_the_papers_schedule_with_one_warning(  # type: ignore[no-untyped-def]
    head_class, key: str, paper
) -> None:
    """Built as is and trained (the README's plain loop: no run length), the run-relative
    default becomes the paper's step-based schedule: the same losses and values, step by
    step, as a head given that schedule; one RunLengthWarning per head, however many steps."""
    torch.manual_seed(0)
    head = head_class(3, 4)
    torch.manual_seed(0)
    papers = head_class(3, 4, **{key: paper()})
    embeddings, labels = tight_batch(head)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(6):
            assert torch.equal(head(embeddings, labels), papers(embeddings, labels))
            assert head.hyperparameters() == papers.hyperparameters()
        (message,) = fallback_warnings(caught)
        assert message.startswith(
            f"{head_class.__name__} was given no run length, so its {key} follows the "
            f"paper's step-based {paper()!r} instead of the run-relative default; "
        )
        assert "pass total_steps=N" in message and "head.set_total_steps(N)" in message
        head_class(3, 4)(embeddings, labels)  # another head: its own warning
        assert len(fallback_warnings(caught)) == 2
    assert repr(head.schedules[key]) == repr(paper()) and head.total_steps is None
    assert head.hyperparameters()[key] != paper().current()  # it moved, per step


@pytest.mark.parametrize(
    ("head_class", "key", "paper"), DEFAULT_FALLBACKS.values(), ids=DEFAULT_FALLBACKS.keys()
)
def test_a_head_that_fell_back_reloads_into_a_fresh_head(head_class, key: str, paper) -> None:  # type: ignore[no-untyped-def]
    """The state of a head trained on the fallback loads into a head built the same way (the
    Cam-softmax ramp's state has no running quantile), which goes on with the same schedule."""
    head = head_class(3, 4)
    embeddings, labels = tight_batch(head)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunLengthWarning)
        for _ in range(4):
            head(embeddings, labels)
        buffer = io.BytesIO()
        torch.save(head.state_dict(), buffer)
        buffer.seek(0)
        fresh = head_class(3, 4)
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        assert fresh.hyperparameters() == head.hyperparameters() and int(fresh.step) == 4
        for _ in range(3):
            assert torch.equal(fresh(embeddings, labels), head(embeddings, labels))
            assert fresh.hyperparameters() == head.hyperparameters()
    assert repr(fresh.schedules[key]) == repr(paper())


@pytest.mark.parametrize(
    ("make", "key", "end"),
    [
        (lambda **run: LSoftmax(3, 4, **run), "lambda_", 5.0),
        (lambda **run: SphereFace(3, 4, **run), "lambda_", 5.0),
        (lambda **run: CamSoftmax(3, 4, **run), "c", math.pi / 4),  # tight embeddings
        (lambda **run: ArcFace(3, 4, margin=Warmup(0.5, fraction=0.3), **run), "margin", 0.5),
    ],
    ids=["lsoftmax", "sphereface", "camsoftmax", "arcface-warmup"],
)
def test_total_steps_argument_is_the_run_length(make, key: str, end: float) -> None:  # type: ignore[no-untyped-def]
    """``total_steps=N`` at construction is ``set_total_steps(N)`` before training: the
    run-relative schedule stays and follows an N-step run to its end point, without a
    warning."""
    torch.manual_seed(0)
    given = make(total_steps=20)
    torch.manual_seed(0)
    told = make().set_total_steps(20)
    assert given.total_steps == 20
    assert all(schedule.total_steps == 20 for schedule in given.schedules.values())
    assert given.schedules[key].relative
    embeddings, labels = tight_batch(given)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunLengthWarning)
        for _ in range(20):
            assert torch.equal(given(embeddings, labels), told(embeddings, labels))
            assert given.hyperparameters() == told.hyperparameters()
    assert given.schedules[key].relative  # still run-relative: nothing fell back
    assert given.hyperparameters()[key] == end  # at its end point by the run's end


@pytest.mark.parametrize("name", available())
def test_every_head_takes_total_steps(name: str) -> None:
    head = build(name, 3, 4, total_steps=7)
    assert head.total_steps == 7
    with pytest.raises(ValueError, match=r"total_steps must be >= 1; got 0"):
        build(name, 3, 4, total_steps=0)
    with pytest.raises(TypeError, match=r"total_steps must be an int; got float"):
        build(name, 3, 4, total_steps=7.0)


ONE_EPOCH = 469  # MNIST at batch 128


@pytest.mark.parametrize(
    ("make", "key", "end"),
    [
        (lambda: LSoftmax(4, 3, margin=4), "lambda_", 5.0),
        (lambda: SphereFace(4, 3, margin=4), "lambda_", 5.0),
        (lambda: CamSoftmax(4, 3, c=camsoftmax_ramp(fraction=0.4)), "c", math.pi / 4),
        (lambda: CamSoftmax(4, 3), "c", math.pi / 4),  # adaptive, on tight embeddings
    ],
    ids=["lsoftmax", "sphereface", "camsoftmax-ramp", "camsoftmax-adaptive"],
)
def test_one_epoch_run_reaches_the_end_point_by_forty_percent(make, key: str, end: float) -> None:  # type: ignore[no-untyped-def]
    """A one-epoch run (T = 469): the defaults reach their end point by step round(0.4 T) =
    188 and hold it to the end of the run (the official step-based lambda would still be
    about 665 at step 469, and the authors' ramp would be at pi/2 - 0.0469)."""
    head = make().set_total_steps(ONE_EPOCH)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    weight = head.weight.detach()
    embeddings = 2.0 * weight[labels] + 0.01 * torch.randn(6, 3)  # target angles ~ 0
    start = head.hyperparameters()[key]
    values = [start]
    for _ in range(ONE_EPOCH):
        head(embeddings, labels)
        values.append(head.hyperparameters()[key])
    reach = round(0.4 * ONE_EPOCH)
    assert reach == 188
    assert values[reach - 1] > end  # still annealing one step before
    assert all(value == end for value in values[reach:])  # the end point from 188 to 469
    assert all(b <= a for a, b in itertools.pairwise(values))  # monotone
    assert int(head.step) == ONE_EPOCH


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
    """``Warmup(0.5, 1000).value_at(-490)`` used to return -0.245 instead of an error."""
    with pytest.raises(ValueError, match=r"step must be an integer >= 0; got -490"):
        schedule.value_at(-490)
    with pytest.raises(ValueError, match=r"step must be an integer >= 0; got -1"):
        schedule.advance(-1)
    assert schedule.value_at(0) == schedule.current()


# ---------------------------------------------------------------------- the text form
def from_text(text: str) -> Schedule:
    parsed = parse_schedule(text, "x")
    assert parsed is not None
    return build_schedule(*parsed, "x")


def test_every_kind_of_the_text_form_has_its_form_in_the_help() -> None:
    forms = " / ".join(form for form, _ in SCHEDULE_FORMS)
    for kind in SCHEDULE_KINDS:
        assert re.search(rf"(^| ){kind}[:\[]", forms), kind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("warmup:0.5:1000", ("warmup", [0.5, 1000.0])),
        ("Warmup:pi/4:10", ("warmup", [math.pi / 4, 10.0])),
        ("ramp", ("ramp", [])),
        ("adaptive", ("adaptive", [])),
        ("power:1000:0.12:1:5", ("power", [1000.0, 0.12, 1.0, 5.0])),
        ("constant:7", ("constant", [7.0])),
    ],
)
def test_parse_schedule(text: str, expected: tuple[str, list[float]]) -> None:
    assert parse_schedule(text, "x") == expected


@pytest.mark.parametrize("text", ["0.5", "pi", "true", "continuous", "step:1", ""])
def test_text_of_another_form_is_no_schedule(text: str) -> None:
    assert parse_schedule(text, "x") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.5", 0.5), ("-2", -2.0), ("1e-3", 1e-3), (" PI ", math.pi), ("3*pi/8", 3 * math.pi / 8)],
)
def test_parse_number(text: str, expected: float) -> None:
    assert parse_number(text, "x") == pytest.approx(expected)


@pytest.mark.parametrize("text", ["nan", "inf", "0.5x", "a", "pi/"])
def test_parse_number_is_none_for_other_text(text: str) -> None:
    assert parse_number(text, "x") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("warmup:0.5", "schedule 'warmup' takes 2..3 arguments separated by ':'; got 1"),
        ("ramp:1:2", "schedule 'ramp' takes 0..3 arguments"),
        ("warmup:pi/0:10", "'pi/0' divides by zero"),
        ("warmup:1e400:10", "'1e400' is not a finite number"),
        ("warmup:a:10", "'a' is not a number \\(or pi expression\\)"),
        ("warmup:20%:100", r"not allowed as argument 1 of 'warmup'"),
        ("power:50%:0.1:1", r"not allowed as argument 1 of 'power'"),
        ("warmup:0.5:0%", r"'0%' must be a share of the run in \(0%, 100%\]"),
        ("warmup:0.5:150%", r"share of the run in \(0%, 100%\]"),
        ("warmup:0.5:x%", r"'x' is not a number"),
        ("lsoftmax:0.4", r"'lsoftmax' takes nothing or a share P%"),
    ],
)
def test_schedule_text_errors_name_the_argument(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^loss argument margin: .*{message}"):
        parse_schedule(text, "margin")


@pytest.mark.parametrize("text", ["pi/0", "1e400"])
def test_an_unusable_number_is_an_error_not_other_text(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^loss argument margin: "):
        parse_number(text, "margin")


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("warmup:0.5:20%", "warmup", [0.5, 0.2]),
        ("warmup:0.5:100%:0.1", "warmup", [0.5, 1.0, 0.1]),
        ("ramp:40%", "ramp", [0.4]),
        ("ramp:1.5:0.5:25%", "ramp", [1.5, 0.5, 0.25]),
        ("adaptive:40%", "adaptive", [0.4]),
        ("power:1000:50%:1:5", "power", [1000.0, 0.5, 1.0, 5.0]),
        ("lsoftmax:40%", "lsoftmax", [0.4]),
        ("sphereface:30%", "sphereface", [0.3]),
    ],
)
def test_percent_is_a_share_of_the_run(text: str, kind: str, expected: list[float]) -> None:
    parsed = parse_schedule(text, "x")
    assert parsed is not None
    assert parsed[0] == kind
    assert parsed[1] == pytest.approx(expected)
    assert sum(isinstance(value, RunFraction) for value in parsed[1]) == 1


def test_build_schedule_makes_each_kind() -> None:
    margin, ramp = from_text("warmup:0.5:1000"), from_text("ramp")
    adaptive, sphereface = from_text("adaptive:1.5:0.7:0.8:0.1:0.001"), from_text("sphereface")
    constant = from_text("constant:7")
    assert isinstance(margin, Warmup) and margin.value_at(500) == pytest.approx(0.25)
    assert isinstance(ramp, LinearRamp)
    assert ramp.value_at(0) == pytest.approx(math.pi / 2)
    assert ramp.value_at(10**6) == pytest.approx(math.pi / 4)
    assert isinstance(adaptive, AdaptiveAngle)
    assert (adaptive.start, adaptive.minimum, adaptive.quantile) == (1.5, 0.7, 0.8)
    assert isinstance(sphereface, PowerDecay) and sphereface.value_at(10**6) == 5.0
    assert isinstance(constant, Constant) and constant.current() == 7.0


def test_percent_schedules_build_run_relative_schedules() -> None:
    margin, ramp, adaptive = (
        from_text("warmup:0.5:20%"),
        from_text("ramp:40%"),
        from_text("adaptive:40%"),
    )
    sphereface, lsoftmax, power = (
        from_text("sphereface:40%"),
        from_text("lsoftmax"),
        from_text("power:1000:50%:1:5"),
    )
    assert isinstance(margin, Warmup) and margin.fraction == pytest.approx(0.2)
    assert isinstance(ramp, LinearRamp) and ramp.fraction == pytest.approx(0.4)
    assert isinstance(adaptive, AdaptiveAngle) and adaptive.fraction == pytest.approx(0.4)
    assert isinstance(sphereface, PowerDecay)
    assert sphereface.relative and sphereface.minimum == 5.0
    assert not lsoftmax.relative  # bare name: the official step-based annealing
    assert isinstance(power, PowerDecay) and power.fraction == pytest.approx(0.5)
    for schedule in (margin, ramp, sphereface, power):
        schedule.set_total_steps(100)
    assert margin.value_at(10) == pytest.approx(0.25)
    assert margin.value_at(20) == pytest.approx(0.5)
    assert ramp.value_at(40) == pytest.approx(math.pi / 4)
    assert sphereface.value_at(40) == 5.0
    assert power.value_at(50) == 5.0 and power.value_at(49) > 5.0


def test_build_schedule_reports_bad_arguments() -> None:
    with pytest.raises(
        ConfigError, match=r"^loss argument margin: warmup steps must be an integer"
    ):
        build_schedule("warmup", [0.5, 10.5], "margin")
    with pytest.raises(ConfigError, match=r"^loss argument c: .*quantile"):
        build_schedule("adaptive", [1.5, 0.7, 2.0, 0.1, 0.001], "c")
