"""Class sampling for huge numbers of classes (Partial FC; An et al., ICCV-W 2021 / CVPR 2022).

With millions of identities most negative classes contribute almost nothing to a step's
gradient. Partial FC (InsightFace) computes the softmax over the batch's *positive* classes
plus a uniformly sampled subset of the others, so a step costs ``fraction`` of the head's
matrix products; the class weights that were not sampled get no gradient that step.

:class:`ClassSampledHead` wraps any :class:`~marginkit.losses.head.MarginHead`::

    head = ClassSampledHead(ArcFace(num_classes=1_000_000, embedding_dim=512), fraction=0.1)
    loss = head(embeddings, labels)     # softmax over ~100k classes, positives always in
    scores = head.logits(embeddings)    # (B, C): inference still scores every class

The loss is exactly the wrapped head's loss restricted to the sampled classes (the columns
of :meth:`~marginkit.losses.head.MarginHead.margin_logits` at ``sampled_classes``, labels
remapped): the wrapped head's own ``forward(embeddings, labels, classes=sampled_classes)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from marginkit._validation import check_count
from marginkit.losses.head import MarginHead

__all__ = ["ClassSampledHead", "draw_classes"]


def draw_classes(
    labels: Tensor, num_classes: int, num_sampled: int, generator: torch.Generator
) -> Tensor:
    """One step's classes: every label's class plus classes drawn uniformly from the others.

    The rule of :meth:`ClassSampledHead.sample` (and of the sharded head of
    :mod:`marginkit.distributed`, which draws the same classes on every rank).

    Args:
        labels: (B,) class indices in ``[0, num_classes)``.
        num_classes: C.
        num_sampled: classes to keep when the batch has fewer distinct labels.
        generator: a CPU generator; one (C,) uniform draw is taken from it.

    Returns:
        (K,) sorted int64 class indices on the labels' device,
        ``K = max(num_sampled, number of distinct labels)``.
    """
    # Uniform priorities, positives pushed to the top: the top-K are the positives plus a
    # uniform sample of the others (as in InsightFace's PartialFC.sample).
    priority = torch.rand(num_classes, generator=generator)  # (C,) in [0, 1)
    priority[labels.cpu()] = 2.0
    positives = int((priority == 2.0).sum())
    count = max(num_sampled, positives)
    chosen = priority.topk(count, sorted=False).indices
    return chosen.sort().values.to(labels.device)


class ClassSampledHead(nn.Module):
    """A margin head that trains on the positive classes plus a sampled fraction of the rest.

    Each training step keeps every class present in ``labels`` and fills up to
    ``ceil(fraction * C)`` classes with classes drawn uniformly without replacement from the
    others (InsightFace's Partial FC rule); if the batch has more distinct labels than that,
    all of them are kept. The draw uses the wrapper's own seeded ``torch.Generator``, so two
    wrappers with the same seed and inputs sample the same classes.

    Args:
        head: the wrapped head (its weights, schedules and step counter are the wrapper's).
        fraction: share of the classes in each step's softmax, in (0, 1].
        seed: seed of the sampling generator.

    Attributes:
        sampled_classes: (K,) sorted int64 indices of the classes of the last forward call.
    """

    sampled_classes: Tensor

    def __init__(self, head: MarginHead, fraction: float, seed: int = 0) -> None:
        if not isinstance(head, MarginHead):
            raise TypeError(f"head must be a MarginHead; got {type(head).__name__}")
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"fraction must be a float in (0, 1]; got {type(fraction).__name__}")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must lie in (0, 1]; got {fraction}")
        check_count("seed", seed, -(2**63))
        super().__init__()
        self.head = head
        self.fraction = float(fraction)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.register_buffer("sampled_classes", torch.empty(0, dtype=torch.long), persistent=False)

    @property
    def num_sampled(self) -> int:
        """Classes per step when the batch has few distinct labels: ``ceil(fraction * C)``."""
        return max(1, math.ceil(self.fraction * self.head.num_classes))

    def sample(self, labels: Tensor) -> Tensor:
        """Draw one step's classes: every label's class plus uniform others.

        Args:
            labels: (B,) class indices.

        Returns:
            (K,) sorted int64 class indices on the labels' device,
            ``K = max(ceil(fraction * C), number of distinct labels)``.
        """
        return draw_classes(labels, self.head.num_classes, self.num_sampled, self.generator)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy over the sampled classes; advances the schedules in training.

        Args:
            embeddings: (B, D) embeddings.
            labels: (B,) integer class indices in ``[0, C)``.

        Returns:
            Scalar loss, as the wrapped head's ``forward`` (which advances its schedules in
            training mode).
        """
        self.head.check_inputs(embeddings, labels)  # before the draw, which indexes by label
        self.sampled_classes = self.sample(labels.long())
        return self.head(embeddings, labels, classes=self.sampled_classes)

    def logits(self, embeddings: Tensor) -> Tensor:
        """Inference scores over *all* classes, (B, C): the wrapped head's ``logits``."""
        return self.head.logits(embeddings)

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}, seed={self.seed}"
