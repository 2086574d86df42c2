"""Schedules for hyper-parameters that the literature varies during training.

A head accepts a plain float or a :class:`Schedule` for every hyper-parameter that may vary.
The head owns the training step: it reads each schedule's current ``value`` in a forward
pass, then (in training mode) advances the step and calls :meth:`Schedule.advance` with the
new step and the batch's target cosines. Schedules are small ``nn.Module`` objects whose state
(current value, and any running statistics) lives in buffers, so it is part of the head's
``state_dict`` and survives a checkpoint/resume.

Provided:

- :class:`Constant`: a fixed value (what a float becomes).
- :class:`PowerDecay`: the L-Softmax / SphereFace ``lambda`` annealing
  ``max(minimum, base * (1 + gamma * step) ** -power)``; :func:`lsoftmax_lambda` and
  :func:`sphereface_lambda` give the official settings.
- :class:`LinearRamp`: a value moving linearly by ``rate`` per step from ``start`` to ``end``
  (Cam-softmax authors' ``c`` from pi/2 to pi/4 at 1e-4 per step: :func:`camsoftmax_ramp`).
- :class:`Warmup`: a linear warm-up to a target value over a number of steps, for any margin.
- :class:`AdaptiveAngle`: marginkit's adaptive rule for Cam-softmax's ``c``, driven by the
  running distribution of target angles (see its docstring and ``docs/schedules.md``).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "AdaptiveAngle",
    "Constant",
    "LinearRamp",
    "PowerDecay",
    "Schedule",
    "Warmup",
    "as_schedule",
    "camsoftmax_ramp",
    "lsoftmax_lambda",
    "sphereface_lambda",
]


def _check_finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    return float(value)


def _check_step(step: int) -> None:
    try:
        index = None if isinstance(step, bool) else operator.index(step)
    except TypeError:
        index = None
    if index is None or index < 0:
        raise ValueError(f"step must be an integer >= 0; got {step!r}")


def _step_checked(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method(self, step, ...)`` that first refuses a negative or non-integer step."""

    @functools.wraps(method)
    def checked(self: Schedule, step: int, *args: Any, **kwargs: Any) -> Any:
        _check_step(step)
        return method(self, step, *args, **kwargs)

    return checked


class Schedule(nn.Module):
    """Base class: a hyper-parameter value as a function of the training step.

    Subclasses implement :meth:`value_at`. ``value`` is the value in force now; the head
    calls :meth:`advance` after each training forward pass. Both refuse a step that is not
    an integer >= 0 (``ValueError``), in every subclass: a schedule read before the run
    starts has no value (a warm-up read at step -490 would give a negative margin).
    """

    value: Tensor

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("value_at", "advance"):
            if name in cls.__dict__:
                setattr(cls, name, _step_checked(cls.__dict__[name]))

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("value", torch.zeros((), dtype=torch.float64))

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # Schedule state is bookkeeping, not model data: ``head.to(device/dtype)`` leaves it
        # on the CPU in float64, so no value is rounded and reading it never syncs a GPU.
        return self

    def _start(self) -> None:
        """Set ``value`` to the value at step 0; call at the end of ``__init__``."""
        self.value.fill_(self.value_at(0))

    @_step_checked
    def value_at(self, step: int) -> float:
        """The value after ``step`` training steps (deterministic schedules)."""
        raise NotImplementedError

    @_step_checked
    def advance(self, step: int, target_cosines: Tensor | None = None) -> None:
        """Move to ``step`` (the number of training steps taken so far).

        Args:
            step: the new step count.
            target_cosines: (B,) detached cosines between each embedding of the batch just
                seen and its class weight; only adaptive schedules use them.
        """
        self.value.fill_(self.value_at(step))

    def current(self) -> float:
        """The value in force, as a Python float."""
        return float(self.value)

    def bounds(self) -> tuple[float, float]:
        """The lowest and highest value the schedule can take (for range validation)."""
        raise NotImplementedError


class Constant(Schedule):
    """A fixed value."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.constant = _check_finite("value", value)
        self._start()

    def value_at(self, step: int) -> float:
        return self.constant

    def bounds(self) -> tuple[float, float]:
        return self.constant, self.constant

    def extra_repr(self) -> str:
        return f"{self.constant}"


class PowerDecay(Schedule):
    """``max(minimum, base * (1 + gamma * step) ** -power)``: L-Softmax's lambda annealing.

    Args:
        base: value at step 0.
        gamma: time scale of the decay (> 0).
        power: decay exponent (>= 0).
        minimum: floor of the value (>= 0).
    """

    def __init__(self, base: float, gamma: float, power: float, minimum: float = 0.0) -> None:
        super().__init__()
        self.base = _check_finite("base", base)
        self.gamma = _check_finite("gamma", gamma)
        self.power = _check_finite("power", power)
        self.minimum = _check_finite("minimum", minimum)
        if self.gamma <= 0:
            raise ValueError(f"gamma must be > 0; got {gamma}")
        if self.power < 0:
            raise ValueError(f"power must be >= 0; got {power}")
        if not 0 <= self.minimum <= self.base:
            raise ValueError(f"minimum must lie in [0, base={base}]; got {minimum}")
        self._start()

    def value_at(self, step: int) -> float:
        return max(self.minimum, self.base * (1.0 + self.gamma * step) ** (-self.power))

    def bounds(self) -> tuple[float, float]:
        return self.minimum, self.base

    def extra_repr(self) -> str:
        return f"base={self.base}, gamma={self.gamma}, power={self.power}, minimum={self.minimum}"


def lsoftmax_lambda() -> PowerDecay:
    """Official L-Softmax MNIST annealing: base 1000, gamma 2.5e-5, power 35, minimum 0."""
    return PowerDecay(base=1000.0, gamma=2.5e-5, power=35.0, minimum=0.0)


def sphereface_lambda() -> PowerDecay:
    """Official SphereFace annealing: base 1000, gamma 0.12, power 1, minimum 5."""
    return PowerDecay(base=1000.0, gamma=0.12, power=1.0, minimum=5.0)


class LinearRamp(Schedule):
    """A value moving linearly from ``start`` towards ``end`` by ``rate`` per step.

    Args:
        start: value at step 0.
        end: value held once reached.
        rate: change per step (> 0), in the direction of ``end``.
    """

    def __init__(self, start: float, end: float, rate: float) -> None:
        super().__init__()
        self.start = _check_finite("start", start)
        self.end = _check_finite("end", end)
        self.rate = _check_finite("rate", rate)
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0; got {rate}")
        self._start()

    def value_at(self, step: int) -> float:
        if self.end >= self.start:
            return min(self.end, self.start + self.rate * step)
        return max(self.end, self.start - self.rate * step)

    def bounds(self) -> tuple[float, float]:
        return min(self.start, self.end), max(self.start, self.end)

    def extra_repr(self) -> str:
        return f"start={self.start}, end={self.end}, rate={self.rate}"


def camsoftmax_ramp() -> LinearRamp:
    """The Cam-softmax authors' schedule: ``c`` from pi/2 down to pi/4 by 1e-4 per step."""
    return LinearRamp(start=math.pi / 2, end=math.pi / 4, rate=1e-4)


class Warmup(Schedule):
    """Linear warm-up: from ``start`` at step 0 to ``target`` at step ``steps``, then constant.

    Usable on any margin, e.g. ``ArcFace(..., margin=Warmup(0.5, steps=2000))``.

    Args:
        target: value after the warm-up.
        steps: length of the warm-up in training steps (>= 1).
        start: value at step 0 (default 0: no margin).
    """

    def __init__(self, target: float, steps: int, start: float = 0.0) -> None:
        super().__init__()
        self.target = _check_finite("target", target)
        self.start = _check_finite("start", start)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        self.steps = steps
        self._start()

    def value_at(self, step: int) -> float:
        fraction = min(1.0, step / self.steps)
        return self.start + (self.target - self.start) * fraction

    def bounds(self) -> tuple[float, float]:
        return min(self.start, self.target), max(self.start, self.target)

    def extra_repr(self) -> str:
        return f"target={self.target}, steps={self.steps}, start={self.start}"


class AdaptiveAngle(Schedule):
    """marginkit's adaptive rule for Cam-softmax's ``c``: follow the classes as they tighten.

    Cam-softmax's target function ``f(theta; c)`` is zero at ``theta = c`` and its gradient
    fades beyond ``c``; at ``c = pi/2`` it is plain (normalised) softmax. The rule keeps ``c``
    at ``start`` (pi/2: softmax) while the target angles are still wide, and lets it follow the
    running ``quantile`` (default: the median) of the target-angle distribution as the classes
    tighten:

    1. each training step, take the ``quantile`` of the batch's target angles
       ``theta_y = acos(cos theta_y)``, and fold it into an exponential moving average
       (``momentum`` per step; the first batch initialises it);
    2. the proposal is that running quantile, clipped to ``[minimum, start]``;
    3. ``c`` moves towards the proposal by at most ``rate`` per step, and only downwards
       (``c`` never rises back: a monotone departure from softmax, as in the paper).

    So ``c`` leaves pi/2 only once most samples are closer to their class weight than
    orthogonal to it, descends no faster than the authors' ramp (``rate = 1e-4``), and stops
    where the data are (the median target angle) or at ``minimum`` (pi/4, the ramp's end). The
    median is robust to label noise: with a 30 % noise rate the flipped samples sit in the far
    tail, beyond ``c``, where ``df/dcos`` is small (the robustness the paper claims), while a
    high quantile would be dragged up by them and keep ``c`` at pi/2. See
    ``docs/schedules.md`` for the comparison with the ramp.

    Args:
        start: initial ``c`` (pi/2: softmax).
        minimum: lowest ``c`` (pi/4, the end of the authors' ramp).
        quantile: which quantile of the target angles ``c`` follows, in (0, 1).
        momentum: weight of the newest batch in the running quantile, in (0, 1].
        rate: largest change of ``c`` per step (> 0).
    """

    running_quantile: Tensor

    def __init__(
        self,
        start: float = math.pi / 2,
        minimum: float = math.pi / 4,
        quantile: float = 0.5,
        momentum: float = 0.01,
        rate: float = 1e-4,
    ) -> None:
        super().__init__()
        self.start = _check_finite("start", start)
        self.minimum = _check_finite("minimum", minimum)
        self.quantile = _check_finite("quantile", quantile)
        self.momentum = _check_finite("momentum", momentum)
        self.rate = _check_finite("rate", rate)
        if not 0 < self.minimum <= self.start < math.pi:
            raise ValueError(
                f"need 0 < minimum <= start < pi; got minimum={minimum}, start={start}"
            )
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must lie in (0, 1); got {quantile}")
        if not 0 < self.momentum <= 1:
            raise ValueError(f"momentum must lie in (0, 1]; got {momentum}")
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0; got {rate}")
        # NaN marks "no batch seen yet"; a buffer, so it is saved with the head.
        self.register_buffer("running_quantile", torch.full((), math.nan, dtype=torch.float64))
        self._start()

    def value_at(self, step: int) -> float:
        if step != 0:
            raise RuntimeError("AdaptiveAngle depends on training statistics, not on the step")
        return self.start

    def advance(self, step: int, target_cosines: Tensor | None = None) -> None:
        if target_cosines is None or target_cosines.numel() == 0:
            return
        angles = torch.acos(target_cosines.detach().double().clamp(-1.0, 1.0)).flatten()
        batch_quantile = float(torch.quantile(angles.cpu(), self.quantile))
        running = float(self.running_quantile)
        if math.isnan(running):
            running = batch_quantile
        else:
            running += self.momentum * (batch_quantile - running)
        self.running_quantile.fill_(running)
        proposal = min(self.start, max(self.minimum, running))
        current = float(self.value)
        if proposal < current:
            self.value.fill_(max(proposal, current - self.rate))

    def bounds(self) -> tuple[float, float]:
        return self.minimum, self.start

    def extra_repr(self) -> str:
        return (
            f"start={self.start:.4f}, minimum={self.minimum:.4f}, quantile={self.quantile}, "
            f"momentum={self.momentum}, rate={self.rate}"
        )


def as_schedule(value: float | Schedule, name: str) -> Schedule:
    """Wrap a float as :class:`Constant`; pass a :class:`Schedule` through.

    Raises:
        TypeError: naming ``name`` when ``value`` is neither.
    """
    if isinstance(value, Schedule):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a float or a marginkit.schedules.Schedule; got {type(value).__name__}"
        )
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    return Constant(float(value))
