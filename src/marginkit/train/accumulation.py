"""Gradient accumulation (``--accumulate N``): one optimiser step from N micro-batches.

A paper's batch (512 faces and more) often does not fit on the devices at hand. With
``--accumulate N`` an optimiser step takes the samples a run with ``--batch-size N*B`` would
take (the next ``N x B`` indices of the epoch's order, augmented as one batch with the run's
generator), cuts them into micro-batches of ``B`` (:func:`micro_batch_sizes`) and runs the
forward and backward pass of each in turn; the gradients add up, and one optimiser step
follows. Each micro-batch's mean loss is multiplied by its share of the step's samples
(``b_k / T``), so the summed gradient is that of the step's mean loss over all ``T`` samples,
the large batch's. The learning rate, the margins' schedules, gradient clipping, fp16's
gradient scaler, ``steps.csv`` and the checkpoints all count optimiser steps.

The head counts one training step per optimiser step
(:meth:`~marginkit.losses.head.MarginHead.one_step`): its step counter and schedules
advance once, after the step's last micro-batch, with the target cosines of all of its
micro-batches (an adaptive schedule, Cam-softmax's ``c``, sees the
whole step's batch). Statistics of the batch that a head computes and uses in the same
step (AdaCos's dynamic scale, AdaFace's norm mean and spread, CurricularFace's ``t``) are
those of each micro-batch, folded into the running values one micro-batch after another,
as a run with ``--batch-size B`` folds its batches (``docs/single-runs.md``); sub-centre
ArcFace's counts count every sample, as the large batch's do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from marginkit.losses.head import MarginHead

if TYPE_CHECKING:
    from marginkit.train.distributed import Distribution

__all__ = ["MicroBatch", "micro_batch_sizes", "micro_batches", "step_rows", "training_head"]


@dataclass(frozen=True)
class MicroBatch:
    """This process's part of one micro-batch of an optimiser step.

    Attributes:
        inputs: (b, *input_shape) the process's rows (all of the micro-batch for one process).
        labels: (b,) their class indices.
        share: the micro-batch's share of the step's samples (its rows over all processes
            divided by the step's), the factor of its mean loss; None for a step of one
            micro-batch (the loss is used as it is).
    """

    inputs: Tensor
    labels: Tensor
    share: float | None


def micro_batch_sizes(total: int, batch_size: int, world: int = 1) -> list[int]:
    """The sizes of the micro-batches of a step of ``total`` samples.

    ``ceil(total / batch_size)`` micro-batches of nearly equal size (as
    ``torch.tensor_split``): ``N`` of ``batch_size`` for a full step of ``N x batch_size``,
    and for the shorter last step of an epoch as many as it needs, none larger than
    ``batch_size``; fewer (larger) ones only where one would give a process fewer than 2 rows
    (batch norm cannot train on one).

    Args:
        total: the step's samples, over all processes (>= 1).
        batch_size: the micro-batch size ``B`` (>= 1).
        world: the number of processes sharing each micro-batch.

    Returns:
        The sizes, summing to ``total``.
    """
    count = max(1, min(math.ceil(total / batch_size), total // (2 * world)))
    base, extra = divmod(total, count)
    return [base + 1 if index < extra else base for index in range(count)]


def step_rows(total: int, batch_size: int, part: Distribution) -> Tensor:
    """The positions in a step's batch of this process's rows, micro-batch after
    micro-batch: its part (:meth:`~marginkit.train.distributed.Distribution.rows`) of each
    micro-batch (:func:`micro_batch_sizes`). A process reads (decodes) only these samples.

    Args:
        total: the step's samples, over all processes.
        batch_size: the micro-batch size ``B``.
        part: this process's place among the run's processes.

    Returns:
        ``(t,)`` long positions in ``[0, total)``, increasing.
    """
    pieces, start = [], 0
    for size in micro_batch_sizes(total, batch_size, part.world):
        own = part.rows(size)
        pieces.append(torch.arange(start + own.start, start + own.stop))
        start += size
    return torch.cat(pieces)


def micro_batches(
    inputs: Tensor, labels: Tensor, total: int, batch_size: int, part: Distribution
) -> list[MicroBatch]:
    """This process's rows of a step (:func:`step_rows`) cut into its part of each
    micro-batch (:func:`micro_batch_sizes`).

    Args:
        inputs: (t, *input_shape) this process's rows of the step, in :func:`step_rows`'s
            order (all ``total`` samples for one process).
        labels: (t,) their class indices.
        total: the step's samples, over all processes.
        batch_size: the micro-batch size ``B``.
        part: this process's place among the run's processes.
    """
    sizes = micro_batch_sizes(total, batch_size, part.world)
    parts, start = [], 0
    for size in sizes:
        own = part.rows(size)  # this process's rows of the micro-batch
        rows = slice(start, start + own.stop - own.start)
        share = None if len(sizes) == 1 else size / total
        parts.append(MicroBatch(inputs[rows], labels[rows], share))
        start = rows.stop
    return parts


def training_head(head: nn.Module) -> MarginHead:
    """The margin head inside the training head (itself, its class-sampling wrapper's or its
    shard's): the one that counts the steps."""
    return next(module for module in head.modules() if isinstance(module, MarginHead))
