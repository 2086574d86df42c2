"""The run length the loss tests give their heads before training them.

The default lambda of L-Softmax and SphereFace and Cam-softmax's default ``c`` are
run-relative (:data:`marginkit.schedules.ANNEAL_FRACTION` of the run), so a head must be told
the run's number of training steps (``head.set_total_steps(N)``, as ``marginkit.train.fit``
does) before a training-mode forward. The tests here take at most a few dozen steps: with
``RUN_STEPS`` they all stay early in the annealing, where the defaults start (lambda 1000,
``c = pi/2``) and move, as the step-based defaults did.

Not a test module (no ``test_`` prefix); imported by the tests in this package.
"""

from __future__ import annotations

import torch
from torch import Tensor

from marginkit.losses import MarginHead

__all__ = ["RUN_STEPS", "training_loss"]

#: The run length given to every head trained in the loss tests.
RUN_STEPS = 1_000


def training_loss(head: MarginHead, logits: Tensor, embeddings: Tensor, labels: Tensor) -> Tensor:
    """What ``head(embeddings, labels)`` computes from its ``margin_logits``: their mean
    cross-entropy, plus the head's ``penalty`` where it has one (MagFace's regulariser)."""
    loss = torch.nn.functional.cross_entropy(logits, labels)
    penalty = head.penalty(embeddings.to(logits.dtype))
    return loss if penalty is None else loss + penalty
