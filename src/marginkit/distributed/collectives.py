"""The collectives of the sharded head, counted, and the two autograd steps built on them.

Every collective the sharded head runs goes through one :class:`Collectives`, which adds the
size of the tensors it moves to :attr:`Collectives.bytes`: an all-gather counts its output
(world x the input), an all-reduce its tensor. The head resets the count at each step, so
``ShardedHead.step_bytes`` is what one step (forward and backward) sends: O(world B D + world
B), whatever the number of classes.

Two autograd functions carry the gradient across ranks (the Partial FC scheme; An et al.,
ICCV-W 2021):

- :class:`SumGradients`: identity forward; backward all-reduces (sums) the gradient. Applied
  to the (B, D) rows every rank computes from the gathered batch, it turns each rank's partial
  gradient (from its own block of classes) into the whole head's gradient, on every rank, for
  everything upstream of the rows: the gathered embeddings and a learned scale.
- :class:`GatherRows`: all-gathers the ranks' (B_r, D) embeddings into the (B, D) global
  batch; backward keeps the rank's own rows of a gradient that is already the sum over ranks
  (the rows' :class:`SumGradients` is the only way from the gathered batch to the loss).
"""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Collectives", "GatherRows", "SumGradients", "free_port"]


class Collectives:
    """All-gather and all-reduce on one process group, counting the bytes moved.

    Args:
        group: the process group (None: the default one).
        world_size: ranks in ``group``.
    """

    def __init__(self, group: dist.ProcessGroup | None, world_size: int) -> None:
        self.group = group
        self.world_size = world_size
        #: Bytes of the collectives' tensors since the last :meth:`reset`.
        self.bytes = 0

    def reset(self) -> None:
        """Start counting afresh (the head does at the start of each step)."""
        self.bytes = 0

    def all_gather(self, tensor: Tensor) -> list[Tensor]:
        """Every rank's ``tensor`` (same shape on every rank), in rank order."""
        tensor = tensor.contiguous()
        gathered = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(gathered, tensor, group=self.group)
        self.bytes += self.world_size * tensor.numel() * tensor.element_size()
        return gathered

    def gather_rows(self, rows: Tensor, sizes: list[int]) -> Tensor:
        """The ranks' (B_r, ...) ``rows`` concatenated in rank order, (sum B_r, ...); rank r
        holds ``sizes[r]`` rows, padded to the largest for the all-gather."""
        padded = rows.new_zeros(max(sizes), *rows.shape[1:])
        padded[: rows.shape[0]] = rows
        gathered = self.all_gather(padded)
        return torch.cat([part[:size] for part, size in zip(gathered, sizes, strict=True)])

    def all_reduce(self, tensor: Tensor, op: dist.ReduceOp.RedOpType) -> Tensor:
        """``tensor`` reduced over the ranks with ``op``, in place; returned."""
        dist.all_reduce(tensor, op=op, group=self.group)
        self.bytes += tensor.numel() * tensor.element_size()
        return tensor


class SumGradients(torch.autograd.Function):
    """Identity forward; backward sums the gradient over the ranks (one all-reduce)."""

    @staticmethod
    def forward(ctx, tensor: Tensor, collectives: Collectives) -> Tensor:
        ctx.collectives = collectives
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, gradient: Tensor) -> tuple[Tensor, None]:
        summed = gradient.contiguous().clone()
        ctx.collectives.all_reduce(summed, dist.ReduceOp.SUM)
        return summed, None


class GatherRows(torch.autograd.Function):
    """The ranks' (B_r, D) rows, concatenated in rank order into (B, D); B_r may differ.

    Each rank pads its rows to the largest B_r for the all-gather. The backward returns the
    rank's own slice of the incoming gradient, which must already be summed over the ranks
    (see the module docstring).
    """

    @staticmethod
    def forward(ctx, rows: Tensor, sizes: list[int], rank: int, collectives: Collectives) -> Tensor:
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return collectives.gather_rows(rows.detach(), sizes)

    @staticmethod
    def backward(ctx, gradient: Tensor) -> tuple[Tensor, None, None, None]:
        return gradient[ctx.start : ctx.stop], None, None, None


def free_port() -> int:
    """A TCP port free on the loopback interface now (for a process group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
