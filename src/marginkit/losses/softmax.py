"""Plain softmax cross-entropy over a linear classifier (the baseline every margin beats)."""

from __future__ import annotations

from torch import Tensor, nn

from marginkit.losses.head import MarginHead

__all__ = ["Softmax"]


class Softmax(MarginHead):
    """Softmax loss: logits ``W_j . x`` (+ ``b_j`` if ``bias``), no margin.

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        bias: learn a per-class bias (off by default, as in the margin papers).
        total_steps: the run's number of training steps, for a hyper-parameter given as a
            fraction of the run (as :meth:`MarginHead.set_total_steps`); None: not known.
    """

    geometry = "unnormalized"
    margin_free = True

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        bias: bool = False,
        *,
        total_steps: int | None = None,
    ) -> None:
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool; got {type(bias).__name__}")
        super().__init__(num_classes, embedding_dim, total_steps=total_steps)
        self.bias: nn.Parameter | None = (
            nn.Parameter(self.weight.new_zeros(num_classes)) if bias else None
        )

    def target(self, cosine: Tensor) -> Tensor:
        return cosine

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bias={self.bias is not None}"
