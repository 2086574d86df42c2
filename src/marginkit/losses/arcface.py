"""ArcFace (Deng et al., CVPR 2019): an additive angular margin on the target."""

from __future__ import annotations

import math

from torch import Tensor

from marginkit.losses.functional import ARCFACE_FALLBACKS, arcface_target
from marginkit.losses.head import MAX_SCALE, MarginHead, check_range
from marginkit.losses.sanity import warn_margin
from marginkit.schedules import Schedule

__all__ = ["ArcFace"]


class ArcFace(MarginHead):
    """Target logit ``s cos(theta_y + m)`` while ``theta_y + m <= pi``, else the monotone
    fallback ``s (cos(theta_y) - m sin(m))`` (InsightFace's, default) or, with
    ``fallback="continuous"``, ``s (cos(theta_y) - (1 - cos(m)))``, continuous at the switch;
    others ``s cos(theta_j)``.

    The margin is in radians (0.5 rad, about 28.6 degrees, in the paper), and the gradient
    flows through it (no straight-through estimate).

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        scale: s in (0, 1e4], float or schedule.
        margin: m in [0, pi), radians, float or schedule.
        learn_scale: learn s as the parameter ``log_scale`` (``s = exp(log_scale)``),
            starting from ``scale`` (a float then); default False, the paper's fixed scale.
        fallback: the target past ``theta_y + m = pi``: ``"insightface"`` (default) or
            ``"continuous"`` (see :func:`~marginkit.losses.functional.arcface_target`).
        total_steps: the run's number of training steps, for a hyper-parameter given as a
            fraction of the run (as :meth:`MarginHead.set_total_steps`); None: not known.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float | Schedule = 64.0,
        margin: float | Schedule = 0.5,
        learn_scale: bool = False,
        fallback: str = "insightface",
        *,
        total_steps: int | None = None,
    ) -> None:
        check_range("scale", scale, 0.0, MAX_SCALE, low_inclusive=False)
        check_range("margin", margin, 0.0, math.pi, high_inclusive=False)
        if fallback not in ARCFACE_FALLBACKS:
            raise ValueError(
                f"fallback must be one of {', '.join(ARCFACE_FALLBACKS)}; got {fallback!r}"
            )
        super().__init__(
            num_classes,
            embedding_dim,
            total_steps=total_steps,
            learn_scale=learn_scale,
            scale=scale,
            margin=margin,
        )
        self.fallback = fallback
        largest = self.schedules["margin"].bounds()[1]
        warn_margin(type(self).__name__, "angular", largest, num_classes, embedding_dim)

    def target(self, cosine: Tensor) -> Tensor:
        return arcface_target(cosine, self.schedules["margin"].current(), self.fallback)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fallback={self.fallback!r}"
