"""AM-Softmax / CosFace (Wang et al., 2018): an additive cosine margin on the target."""

from __future__ import annotations

from torch import Tensor

from marginkit.losses.functional import cosface_target
from marginkit.losses.head import MAX_SCALE, MarginHead, check_range
from marginkit.losses.sanity import warn_margin
from marginkit.schedules import Schedule

__all__ = ["CosFace"]


class CosFace(MarginHead):
    """Target logit ``s (cos(theta_y) - m)``; others ``s cos(theta_j)``.

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        scale: s in (0, 1e4], float or schedule.
        margin: m, a cosine offset in [0, 2), float or schedule (e.g. ``Warmup(0.35, 1000)``).
        learn_scale: learn s as the parameter ``log_scale`` (``s = exp(log_scale)``),
            starting from ``scale`` (a float then); default False, the paper's fixed scale.
        total_steps: the run's number of training steps, for a hyper-parameter given as a
            fraction of the run (as :meth:`MarginHead.set_total_steps`); None: not known.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float | Schedule = 30.0,
        margin: float | Schedule = 0.35,
        learn_scale: bool = False,
        *,
        total_steps: int | None = None,
    ) -> None:
        check_range("scale", scale, 0.0, MAX_SCALE, low_inclusive=False)
        check_range("margin", margin, 0.0, 2.0, high_inclusive=False)
        super().__init__(
            num_classes,
            embedding_dim,
            total_steps=total_steps,
            learn_scale=learn_scale,
            scale=scale,
            margin=margin,
        )
        largest = self.schedules["margin"].bounds()[1]
        warn_margin(type(self).__name__, "cosine", largest, num_classes, embedding_dim)

    def target(self, cosine: Tensor) -> Tensor:
        return cosface_target(cosine, self.schedules["margin"].current())
