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

Steps or fractions of the run: every schedule that changes with time takes its length either
in training steps or as ``fraction`` of the run (``Warmup(0.5, fraction=0.2)``: the margin
reaches 0.5 after the first 20 % of the steps). A run-relative schedule needs the run's total
number of steps: the head's ``total_steps=`` argument or its
:meth:`~marginkit.losses.MarginHead.set_total_steps` passes it on (``marginkit.train.fit``
calls the latter); training with a run-relative schedule of the user's before that raises a
``RuntimeError`` that says so. A head's own run-relative default (L-Softmax's and SphereFace's
lambda, Cam-softmax's ``c``) instead falls back to the paper's step-based schedule
(:func:`lsoftmax_lambda`, :func:`sphereface_lambda`, :func:`camsoftmax_ramp` without a
fraction), with one :class:`RunLengthWarning`, so every head trains as built.

The text form (``--loss-arg margin=warmup:0.5:20%``, ``loss_args`` in a config file):
``KIND[:ARG[:ARG...]]`` with numeric (or ``pi``-expression) arguments; a length written with
``%`` is a share of the run (:class:`RunFraction`), otherwise a number of steps.
:func:`parse_schedule` checks the text and :func:`build_schedule` makes the schedule;
:data:`SCHEDULE_KINDS` lists the kinds, :data:`SCHEDULE_FORMS` each one's form.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, ItemsView, Mapping, ValuesView
from typing import Any, TypeVar, cast

import torch
from torch import Tensor, nn

from marginkit._validation import check_count
from marginkit.errors import ConfigError

__all__ = [
    "ANNEAL_FRACTION",
    "SCHEDULE_FORMS",
    "SCHEDULE_KINDS",
    "AdaptiveAngle",
    "Constant",
    "LinearRamp",
    "PowerDecay",
    "RunFraction",
    "RunLengthWarning",
    "Schedule",
    "ScheduleDict",
    "Warmup",
    "as_schedule",
    "build_schedule",
    "camsoftmax_ramp",
    "lsoftmax_lambda",
    "parse_number",
    "parse_schedule",
    "sphereface_lambda",
]


#: Share of the run over which the default run-relative schedules (L-Softmax and SphereFace
#: lambda, Cam-softmax's c) reach their end point, so the full margin is in force for the
#: rest (at least the last 60 % of any run).
ANNEAL_FRACTION = 0.4


class RunLengthWarning(UserWarning):
    """A head trains without the run's length, so a default that follows the run (L-Softmax's
    lambda, Cam-softmax's ``c``) runs the paper's step-based schedule instead (given once per
    head; pass ``total_steps=`` to the head to have the run-relative default)."""


def _check_run_fraction(name: str, value: float) -> float:
    value = _check_finite(name, value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be a fraction of the run in (0, 1]; got {value}")
    return value


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


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _step_checked(method: _Method) -> _Method:
    """``method(self, step, ...)`` that first refuses a negative or non-integer step."""

    @functools.wraps(method)
    def checked(self: Schedule, step: int, *args: Any, **kwargs: Any) -> Any:
        _check_step(step)
        return method(self, step, *args, **kwargs)

    return cast(_Method, checked)  # the same signature: wraps keeps the method's


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
        self.total_steps: int | None = None

    @property
    def relative(self) -> bool:
        """True when the schedule's length is a fraction of the run (needs the total)."""
        return False

    def set_total_steps(self, total_steps: int, step: int = 0) -> None:
        """Tell the schedule the run's length in training steps, and re-read the value at
        ``step`` (the steps already taken).

        Raises:
            TypeError, ValueError: ``total_steps`` is not an integer >= 1.
        """
        self.total_steps = check_count("total_steps", total_steps, 1)
        self._refresh(step)

    def _refresh(self, step: int) -> None:
        self.value.fill_(self.value_at(step))

    def _run_steps(self, fraction: float) -> int:
        """``fraction`` of the run in steps (at least 1)."""
        if self.total_steps is None:
            raise RuntimeError(
                f"{type(self).__name__}({self.extra_repr()}) is given as a fraction of the run: "
                "call head.set_total_steps(N) with the run's number of training steps first, "
                "or pass total_steps=N to the head (marginkit.train.fit sets it)"
            )
        return max(1, round(fraction * self.total_steps))

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Schedule:
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

    Given ``fraction`` instead of ``gamma``, the decay is run-relative and reaches ``minimum``
    exactly at that fraction of the run ``T``, then holds it (any ``minimum >= 0``):
    ``minimum + (base - minimum) * (g(step) - g(T)) / (1 - g(T))`` with
    ``g(t) = (1 + shape * t / T) ** -power`` -- the same curve as the step form, rescaled to
    end at its floor. ``shape = 199`` is the official SphereFace ratio (lambda from 1000 to 5
    in 1658 steps at gamma = 0.12): most of the decay happens early, and lambda is about 10
    half-way.

    Args:
        base: value at step 0.
        gamma: time scale of the decay per step (> 0); or None with ``fraction``.
        power: decay exponent (>= 0; > 0 with ``fraction``).
        minimum: floor of the value (>= 0).
        fraction: the share of the run, in (0, 1], after which the value is ``minimum``.
        shape: with ``fraction``: ``gamma`` times the decay's length (> 0).
    """

    def __init__(
        self,
        base: float,
        gamma: float | None = None,
        power: float = 1.0,
        minimum: float = 0.0,
        *,
        fraction: float | None = None,
        shape: float = 199.0,
    ) -> None:
        super().__init__()
        self.base = _check_finite("base", base)
        self.power = _check_finite("power", power)
        self.minimum = _check_finite("minimum", minimum)
        if (gamma is None) == (fraction is None):
            raise ValueError(
                "PowerDecay takes exactly one of gamma (per step) or fraction (of the run)"
            )
        self.gamma = None if gamma is None else _check_finite("gamma", gamma)
        self.fraction = None if fraction is None else _check_run_fraction("fraction", fraction)
        self.shape = _check_finite("shape", shape)
        if self.gamma is not None and self.gamma <= 0:
            raise ValueError(f"gamma must be > 0; got {gamma}")
        if self.shape <= 0:
            raise ValueError(f"shape must be > 0; got {shape}")
        if self.power < 0 or (self.fraction is not None and self.power == 0):
            bound = "> 0 with fraction" if self.fraction is not None else ">= 0"
            raise ValueError(f"power must be {bound}; got {power}")
        if not 0 <= self.minimum <= self.base:
            raise ValueError(f"minimum must lie in [0, base={base}]; got {minimum}")
        self._start()

    @property
    def relative(self) -> bool:
        return self.fraction is not None

    def value_at(self, step: int) -> float:
        if step <= 0:
            return self.base
        if self.gamma is not None:
            return max(self.minimum, self.base * (1.0 + self.gamma * step) ** (-self.power))
        assert self.fraction is not None
        length = self._run_steps(self.fraction)
        if step >= length:
            return self.minimum
        end = (1.0 + self.shape) ** (-self.power)
        now = (1.0 + self.shape * step / length) ** (-self.power)
        return self.minimum + (self.base - self.minimum) * (now - end) / (1.0 - end)

    def bounds(self) -> tuple[float, float]:
        return self.minimum, self.base

    def extra_repr(self) -> str:
        pace = f"gamma={self.gamma}" if self.gamma is not None else f"fraction={self.fraction}"
        return f"base={self.base}, {pace}, power={self.power}, minimum={self.minimum}"


def lsoftmax_lambda(fraction: float | None = None) -> PowerDecay:
    """L-Softmax's lambda: from 1000 to 0.

    Args:
        fraction: None for the official MNIST annealing (gamma 2.5e-5, power 35: lambda is
            still 665 after 469 steps, one MNIST epoch at batch 128); a fraction of the run for
            the run-relative form (power 1, reaching 0 at that fraction).
    """
    if fraction is None:
        return PowerDecay(base=1000.0, gamma=2.5e-5, power=35.0, minimum=0.0)
    return PowerDecay(base=1000.0, power=1.0, minimum=0.0, fraction=fraction)


def sphereface_lambda(fraction: float | None = None) -> PowerDecay:
    """SphereFace's lambda: from 1000 to its floor 5.

    Args:
        fraction: None for the official annealing (gamma 0.12, power 1: the floor after 1659
            steps); a fraction of the run for the run-relative form (the floor from there on).
    """
    if fraction is None:
        return PowerDecay(base=1000.0, gamma=0.12, power=1.0, minimum=5.0)
    return PowerDecay(base=1000.0, power=1.0, minimum=5.0, fraction=fraction)


class LinearRamp(Schedule):
    """A value moving linearly from ``start`` towards ``end``, then held there.

    Args:
        start: value at step 0.
        end: value held once reached.
        rate: change per step (> 0), in the direction of ``end``; or None with ``fraction``.
        fraction: reach ``end`` after this share of the run, in (0, 1].
    """

    def __init__(
        self, start: float, end: float, rate: float | None = None, *, fraction: float | None = None
    ) -> None:
        super().__init__()
        self.start = _check_finite("start", start)
        self.end = _check_finite("end", end)
        if (rate is None) == (fraction is None):
            raise ValueError(
                "LinearRamp takes exactly one of rate (per step) or fraction (of the run)"
            )
        self.rate = None if rate is None else _check_finite("rate", rate)
        self.fraction = None if fraction is None else _check_run_fraction("fraction", fraction)
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be > 0; got {rate}")
        self._start()

    @property
    def relative(self) -> bool:
        return self.fraction is not None

    def value_at(self, step: int) -> float:
        if step <= 0:
            return self.start
        if self.rate is not None:
            moved = self.rate * step
        else:
            assert self.fraction is not None
            moved = abs(self.end - self.start) * min(1.0, step / self._run_steps(self.fraction))
        if self.end >= self.start:
            return min(self.end, self.start + moved)
        return max(self.end, self.start - moved)

    def bounds(self) -> tuple[float, float]:
        return min(self.start, self.end), max(self.start, self.end)

    def extra_repr(self) -> str:
        pace = f"rate={self.rate}" if self.rate is not None else f"fraction={self.fraction}"
        return f"start={self.start}, end={self.end}, {pace}"


def camsoftmax_ramp(fraction: float | None = None) -> LinearRamp:
    """The Cam-softmax authors' ramp: ``c`` from pi/2 down to pi/4.

    Args:
        fraction: None for the authors' released code (1e-4 per step: pi/4 after 7854
            steps); a fraction of the run for the run-relative form (pi/4 from there on).
    """
    if fraction is None:
        return LinearRamp(start=math.pi / 2, end=math.pi / 4, rate=1e-4)
    return LinearRamp(start=math.pi / 2, end=math.pi / 4, fraction=fraction)


class Warmup(Schedule):
    """Linear warm-up: from ``start`` at step 0 to ``target`` after ``steps`` steps (or after
    ``fraction`` of the run), then constant.

    Usable on any margin, e.g. ``ArcFace(..., margin=Warmup(0.5, steps=2000))`` or
    ``ArcFace(..., margin=Warmup(0.5, fraction=0.2))``.

    Args:
        target: value after the warm-up.
        steps: length of the warm-up in training steps (>= 1); or None with ``fraction``.
        start: value at step 0 (default 0: no margin).
        fraction: length of the warm-up as a share of the run, in (0, 1].
    """

    def __init__(
        self,
        target: float,
        steps: int | None = None,
        start: float = 0.0,
        *,
        fraction: float | None = None,
    ) -> None:
        super().__init__()
        self.target = _check_finite("target", target)
        self.start = _check_finite("start", start)
        if (steps is None) == (fraction is None):
            raise ValueError("Warmup takes exactly one of steps or fraction (of the run)")
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 1
        ):
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        self.steps = steps
        self.fraction = None if fraction is None else _check_run_fraction("fraction", fraction)
        self._start()

    @property
    def relative(self) -> bool:
        return self.fraction is not None

    def value_at(self, step: int) -> float:
        if step <= 0:
            return self.start
        length = self.steps if self.steps is not None else self._run_steps(self.fraction or 1.0)
        return self.start + (self.target - self.start) * min(1.0, step / length)

    def bounds(self) -> tuple[float, float]:
        return min(self.start, self.target), max(self.start, self.target)

    def extra_repr(self) -> str:
        pace = f"steps={self.steps}" if self.steps is not None else f"fraction={self.fraction}"
        return f"target={self.target}, {pace}, start={self.start}"


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
        rate: largest change of ``c`` per step (> 0; default 1e-4, the authors' ramp).
        fraction: instead of ``rate``: the share of the run, in (0, 1], over which ``c``
            could at the fastest go from ``start`` to ``minimum`` (so the rule can reach its
            end point within any run).
    """

    running_quantile: Tensor

    def __init__(
        self,
        start: float = math.pi / 2,
        minimum: float = math.pi / 4,
        quantile: float = 0.5,
        momentum: float = 0.01,
        rate: float | None = None,
        *,
        fraction: float | None = None,
    ) -> None:
        super().__init__()
        self.start = _check_finite("start", start)
        self.minimum = _check_finite("minimum", minimum)
        self.quantile = _check_finite("quantile", quantile)
        self.momentum = _check_finite("momentum", momentum)
        if rate is not None and fraction is not None:
            raise ValueError("AdaptiveAngle takes at most one of rate (per step) or fraction")
        self.rate = _check_finite("rate", 1e-4 if rate is None else rate)
        self.fraction = None if fraction is None else _check_run_fraction("fraction", fraction)
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

    @property
    def relative(self) -> bool:
        return self.fraction is not None

    def _refresh(self, step: int) -> None:
        pass  # the value follows the training statistics, not the step

    def step_rate(self) -> float:
        """The largest change of ``c`` per step."""
        if self.fraction is None:
            return self.rate
        return (self.start - self.minimum) / self._run_steps(self.fraction)

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
            moved = max(proposal, current - self.step_rate())
            if moved - self.minimum < 1e-9:  # snap accumulated rounding onto the end point
                moved = self.minimum
            self.value.fill_(moved)

    def bounds(self) -> tuple[float, float]:
        return self.minimum, self.start

    def extra_repr(self) -> str:
        return (
            f"start={self.start:.4f}, minimum={self.minimum:.4f}, quantile={self.quantile}, "
            f"momentum={self.momentum}, "
            + (f"rate={self.rate}" if self.fraction is None else f"fraction={self.fraction}")
        )


class ScheduleDict(nn.ModuleDict):
    """A head's schedules by name: an ``nn.ModuleDict`` (the same state dict) that holds only
    :class:`Schedule` s, and says so to a type checker."""

    def __init__(self, schedules: Mapping[str, Schedule]) -> None:
        super().__init__(schedules)

    def __getitem__(self, key: str) -> Schedule:
        return cast(Schedule, super().__getitem__(key))

    def items(self) -> ItemsView[str, Schedule]:
        return cast(ItemsView[str, Schedule], super().items())

    def values(self) -> ValuesView[Schedule]:
        return cast(ValuesView[Schedule], super().values())


def as_schedule(value: object, name: str) -> Schedule:
    """Wrap a float as :class:`Constant`; pass a :class:`Schedule` through.

    Raises:
        TypeError: naming ``name`` when ``value`` is neither (None included).
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


# ------------------------------------------------------------------- the text form
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_ANGLE = re.compile(r"(?:([+-]?(?:\d+\.?\d*|\.\d+))\s*\*\s*)?pi(?:\s*/\s*(\d+\.?\d*))?")
#: Each kind of the text form -> its fewest and most arguments.
_ARITY = {
    "warmup": (2, 3),
    "ramp": (0, 3),
    "adaptive": (0, 5),
    "power": (3, 4),
    "lsoftmax": (0, 1),
    "sphereface": (0, 1),
    "constant": (1, 1),
}
#: The kinds of the text form, ``KIND[:ARG[:ARG...]]``.
SCHEDULE_KINDS = tuple(_ARITY)
#: Each kind's text form and what it makes, as ``marginkit train --help`` shows them.
SCHEDULE_FORMS = (
    ("warmup:TARGET:STEPS|P%[:START]", "Warmup"),
    (
        "ramp[:P%] / ramp:START:END:RATE|P%",
        "LinearRamp (bare ramp: the Cam-softmax authors' c, 1e-4 per step)",
    ),
    ("adaptive[:P%] / adaptive:START:MIN:QUANTILE:MOMENTUM:RATE|P%", "AdaptiveAngle"),
    ("power:BASE:GAMMA|P%:POWER[:MINIMUM]", "PowerDecay"),
    (
        "lsoftmax[:P%] / sphereface[:P%]",
        "the lambda annealings (bare: official, per step; with P%: run-relative)",
    ),
    ("constant:VALUE", "Constant"),
)
#: Argument positions that may be a share of the run (``P%``); all others are numbers.
_FRACTION_SLOTS = {"warmup": 1, "ramp": 2, "adaptive": 4, "power": 1}


class RunFraction(float):
    """A schedule length written ``P%``: the share ``P / 100`` of the run."""


def parse_number(text: str, name: str) -> float | None:
    """The value of a number or ``pi`` expression (``0.5``, ``1e-3``, ``pi/4``,
    ``3*pi/8``); None for text of any other form.

    Args:
        text: the text.
        name: the loss argument it is the value of, for the message.

    Raises:
        ConfigError: a number or ``pi`` expression without a usable value (a division by
            zero, an overflow to infinity): an error, never another reading of the text.
    """
    text = text.strip().lower()
    if _NUMBER.fullmatch(text):
        value = float(text)
    elif (angle := _ANGLE.fullmatch(text)) is not None:
        factor = float(angle.group(1)) if angle.group(1) else 1.0
        divisor = float(angle.group(2)) if angle.group(2) else 1.0
        if divisor == 0:
            raise ConfigError(f"loss argument {name}: {text!r} divides by zero")
        value = factor * math.pi / divisor
    else:
        return None
    if not math.isfinite(value):
        raise ConfigError(f"loss argument {name}: {text!r} is not a finite number")
    return value


def _number(text: str, name: str) -> float:
    value = parse_number(text, name)
    if value is None:
        shown = text.strip().lower()
        raise ConfigError(f"loss argument {name}: {shown!r} is not a number (or pi expression)")
    return value


def _argument(text: str, name: str) -> float:
    text = text.strip().lower()
    if text.endswith("%"):
        share = _number(text[:-1], name) / 100.0
        if not 0.0 < share <= 1.0:
            raise ConfigError(
                f"loss argument {name}: {text!r} must be a share of the run in (0%, 100%]"
            )
        return RunFraction(share)
    return _number(text, name)


def parse_schedule(text: str, name: str) -> tuple[str, list[float]] | None:
    """Read the text form of a schedule: ``"warmup:0.5:20%"`` -> ``("warmup", [0.5, 0.2])``
    (the share a :class:`RunFraction`).

    Args:
        text: the text.
        name: the loss argument it is the value of, for the message.

    Returns:
        ``(kind, arguments)``, or None when the text does not start with a kind of
        :data:`SCHEDULE_KINDS` (another kind of value).

    Raises:
        ConfigError: naming the argument: a wrong number of arguments, an argument that is
            not a number, or a share of the run where it is not allowed.
    """
    kind, _, rest = text.strip().lower().partition(":")
    if kind not in _ARITY:
        return None
    arguments = [_argument(part, name) for part in rest.split(":")] if rest else []
    low, high = _ARITY[kind]
    shortcut = len(arguments) == 1 and isinstance(arguments[0], RunFraction)
    if not low <= len(arguments) <= high or (
        kind == "ramp" and len(arguments) not in (0, 3) and not shortcut
    ):
        raise ConfigError(
            f"loss argument {name}: schedule {kind!r} takes {low}..{high} arguments "
            f"separated by ':'; got {len(arguments)}"
        )
    allowed = {0} if shortcut and kind in ("ramp", "adaptive", "lsoftmax", "sphereface") else set()
    allowed.add(_FRACTION_SLOTS.get(kind, -1))
    for position, argument in enumerate(arguments):
        if isinstance(argument, RunFraction) and position not in allowed:
            raise ConfigError(
                f"loss argument {name}: a share of the run (P%) is not allowed as argument "
                f"{position + 1} of {kind!r}"
            )
    if kind in ("lsoftmax", "sphereface") and arguments and not shortcut:
        raise ConfigError(f"loss argument {name}: {kind!r} takes nothing or a share P%")
    return kind, arguments


def _length(value: float, steps: str) -> dict[str, Any]:
    """``{steps: int}`` or ``{"fraction": share}`` for a schedule length argument."""
    if isinstance(value, RunFraction):
        return {"fraction": float(value)}
    if steps == "steps" and value != int(value):
        raise ValueError("warmup steps must be an integer (or a share of the run, P%)")
    return {steps: int(value) if steps == "steps" else value}


def build_schedule(kind: str, arguments: list[float], name: str) -> Schedule:
    """The schedule of text read by :func:`parse_schedule`.

    Args:
        kind: a kind of :data:`SCHEDULE_KINDS`.
        arguments: its arguments, shares of the run as :class:`RunFraction`.
        name: the loss argument it is the value of, for the message.

    Raises:
        ConfigError: arguments the schedule refuses (``warmup:0.5:10.5``: steps that are not
            a whole number), naming the argument.
    """
    try:
        return _build(kind, arguments)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"loss argument {name}: {error}") from None


def _build(kind: str, arguments: list[float]) -> Schedule:
    share = float(arguments[0]) if arguments and isinstance(arguments[0], RunFraction) else None
    if kind == "warmup":
        target, length, *start = arguments
        return Warmup(target, start=start[0] if start else 0.0, **_length(length, "steps"))
    if kind == "ramp":
        if len(arguments) == 3:
            return LinearRamp(arguments[0], arguments[1], **_length(arguments[2], "rate"))
        return camsoftmax_ramp(share)
    if kind == "adaptive":
        if share is not None:
            return AdaptiveAngle(fraction=share)
        named = dict(zip(("start", "minimum", "quantile", "momentum"), arguments[:4], strict=False))
        pace = _length(arguments[4], "rate") if len(arguments) == 5 else {}
        return AdaptiveAngle(**named, **pace)
    if kind == "power":
        base, decay, power, *minimum = arguments
        return PowerDecay(
            base, power=power, minimum=minimum[0] if minimum else 0.0, **_length(decay, "gamma")
        )
    if kind == "lsoftmax":
        return lsoftmax_lambda(share)
    if kind == "sphereface":
        return sphereface_lambda(share)
    return Constant(arguments[0])
