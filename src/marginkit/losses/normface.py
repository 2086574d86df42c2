"""NormFace / L2-softmax (Wang et al., 2017; Ranjan et al., 2017): scaled cosine logits."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from marginkit.losses.head import MAX_SCALE, MarginHead, check_range
from marginkit.schedules import Schedule

__all__ = ["NormFace"]


class NormFace(MarginHead):
    """Normalised softmax: every logit ``s cos(theta_j)``, no margin.

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        scale: the scale s in (0, 1e4], a float or a schedule.
        learn_scale: learn s as a parameter ``log_scale`` (kept positive), starting from
            ``scale`` (a float then).
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float | Schedule = 16.0,
        learn_scale: bool = False,
    ) -> None:
        check_range("scale", scale, 0.0, MAX_SCALE, low_inclusive=False)
        if not isinstance(learn_scale, bool):
            raise TypeError(f"learn_scale must be a bool; got {type(learn_scale).__name__}")
        if learn_scale and isinstance(scale, Schedule):
            raise TypeError("scale must be a float when learn_scale=True; got a schedule")
        super().__init__(num_classes, embedding_dim, **({} if learn_scale else {"scale": scale}))
        self.log_scale: nn.Parameter | None = (
            nn.Parameter(torch.tensor(float(scale)).log()) if learn_scale else None
        )

    def scale_value(self) -> Tensor | float:
        if self.log_scale is not None:
            return self.log_scale.exp()
        return super().scale_value()

    def hyperparameters(self) -> dict[str, float]:
        values = super().hyperparameters()
        if self.log_scale is not None:
            values["scale"] = float(self.log_scale.detach().exp())
        return values

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, learn_scale={self.log_scale is not None}"
