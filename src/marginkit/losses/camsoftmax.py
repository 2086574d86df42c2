"""Cam-softmax (Süveges & McKenna, ICPR 2020): a target function shaped by an angle c."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from marginkit.losses.functional import camsoftmax_target
from marginkit.losses.head import MAX_SCALE, MarginHead, RunRelativeDefault, check_range
from marginkit.schedules import ANNEAL_FRACTION, AdaptiveAngle, Schedule, camsoftmax_ramp

__all__ = ["CamSoftmax"]


class CamSoftmax(MarginHead):
    """Target logit ``s f(cos theta_y; c)`` with
    ``f = (1 + cos)^g / 2^(g - 1) - 1``, ``g = 1 / (1 - log2(1 + cos c))``; others
    ``s cos(theta_j)``. Unnormalised form (``normalize=False``): target
    ``||W_y|| ||x|| f(cos theta_y; c)``, others ``W_j . x``.

    ``c = pi/2`` is exactly (normalised) softmax. By default ``c`` follows marginkit's
    adaptive rule (:class:`~marginkit.schedules.AdaptiveAngle`), which starts at pi/2 and
    departs as the classes tighten, fast enough to reach pi/4 within the first 40 % of the
    run, given the run's length (``total_steps``, or ``head.set_total_steps(N)`` before
    training). Without it the head trains, after one ``RunLengthWarning``, on the authors'
    linear ramp per step (:func:`~marginkit.schedules.camsoftmax_ramp`). Pass
    ``c=camsoftmax_ramp()`` for that ramp (``fraction=`` for its run-relative form), or a
    float.

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        scale: s in (0, 1e4] of the normalised form; ignored when ``normalize=False``.
        c: the angle (radians, in (0, pi)) where the target function crosses zero.
        normalize: the normalised (authors' code) or unnormalised form.
        learn_scale: learn s as the parameter ``log_scale`` (``s = exp(log_scale)``),
            starting from ``scale`` (a float then); normalised form only. Default False.
        total_steps: the run's number of training steps, or None (see above).
    """

    run_relative_defaults: ClassVar[Mapping[str, RunRelativeDefault]] = {
        "c": RunRelativeDefault(
            functools.partial(AdaptiveAngle, fraction=ANNEAL_FRACTION), camsoftmax_ramp
        )
    }

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float | Schedule = 20.0,
        c: float | Schedule | None = None,
        normalize: bool = True,
        learn_scale: bool = False,
        *,
        total_steps: int | None = None,
    ) -> None:
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool; got {type(normalize).__name__}")
        check_range("scale", scale, 0.0, MAX_SCALE, low_inclusive=False)
        if c is not None:  # None: the default (run_relative_defaults)
            check_range("c", c, 0.0, math.pi, low_inclusive=False, high_inclusive=False)
        # Any: mypy would match the dict against every keyword parameter (rows_per_class: int)
        hyperparameters: dict[str, Any] = {"scale": scale, "c": c} if normalize else {"c": c}
        super().__init__(
            num_classes,
            embedding_dim,
            learn_scale=learn_scale,
            total_steps=total_steps,
            **hyperparameters,
        )
        self.normalize = normalize
        self.geometry = "normalized" if normalize else "unnormalized"

    def target(self, cosine: Tensor) -> Tensor:
        return camsoftmax_target(cosine, self.schedules["c"].current())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, normalize={self.normalize}"
