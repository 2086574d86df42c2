"""NormFace / L2-softmax (Wang et al., 2017; Ranjan et al., 2017): scaled cosine logits."""

from __future__ import annotations

from marginkit.losses.head import MAX_SCALE, MarginHead, check_range
from marginkit.schedules import Schedule

__all__ = ["NormFace"]


class NormFace(MarginHead):
    """Normalised softmax: every logit ``s cos(theta_j)``, no margin.

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        scale: the scale s in (0, 1e4], a float or a schedule.
        learn_scale: learn s as the parameter ``log_scale`` (``s = exp(log_scale)``, kept
            positive), starting from ``scale`` (a float then); see :class:`MarginHead`.
        total_steps: the run's number of training steps, for a hyper-parameter given as a
            fraction of the run (as :meth:`MarginHead.set_total_steps`); None: not known.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float | Schedule = 16.0,
        learn_scale: bool = False,
        *,
        total_steps: int | None = None,
    ) -> None:
        check_range("scale", scale, 0.0, MAX_SCALE, low_inclusive=False)
        super().__init__(
            num_classes,
            embedding_dim,
            learn_scale=learn_scale,
            scale=scale,
            total_steps=total_steps,
        )
