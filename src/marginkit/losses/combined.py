"""Combined margin (InsightFace): multiplicative, angular and additive margins at once."""

from __future__ import annotations

import math

from torch import Tensor

from marginkit.losses.functional import combined_target
from marginkit.losses.head import MAX_SCALE, MarginHead, check_range
from marginkit.schedules import Schedule

__all__ = ["CombinedMargin"]

_MARGINS = ("multiplicative", "angular", "additive")


class CombinedMargin(MarginHead):
    """Target logit ``s (cos(multiplicative theta_y + angular) - additive)``.

    ``(1, m, 0)`` is ArcFace, ``(1, 0, m)`` CosFace, ``(m, 0, 0)`` a SphereFace-style
    multiplicative margin without lambda; every combination is handled, with a continuous,
    monotone continuation past ``multiplicative theta + angular = pi`` (see
    :func:`~marginkit.losses.functional.combined_target`).

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        scale: s in (0, 1e4].
        multiplicative: angle multiplier (>= 1).
        angular: additive angle in radians, in [0, pi).
        additive: cosine offset, in [0, 2).
        learn_scale: learn s as the parameter ``log_scale`` (``s = exp(log_scale)``),
            starting from ``scale`` (a float then); default False, the paper's fixed scale.
        total_steps: the run's number of training steps, for a hyper-parameter given as a
            fraction of the run (as :meth:`MarginHead.set_total_steps`); None: not known.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float | Schedule = 64.0,
        multiplicative: float | Schedule = 1.0,
        angular: float | Schedule = 0.5,
        additive: float | Schedule = 0.0,
        learn_scale: bool = False,
        *,
        total_steps: int | None = None,
    ) -> None:
        check_range("scale", scale, 0.0, MAX_SCALE, low_inclusive=False)
        check_range("multiplicative", multiplicative, 1.0)
        check_range("angular", angular, 0.0, math.pi, high_inclusive=False)
        check_range("additive", additive, 0.0, 2.0, high_inclusive=False)
        super().__init__(
            num_classes,
            embedding_dim,
            total_steps=total_steps,
            learn_scale=learn_scale,
            scale=scale,
            multiplicative=multiplicative,
            angular=angular,
            additive=additive,
        )

    def target(self, cosine: Tensor) -> Tensor:
        values = {name: self.schedules[name].current() for name in _MARGINS}
        return combined_target(
            cosine, values["multiplicative"], values["angular"], values["additive"]
        )
