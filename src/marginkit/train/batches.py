"""Where a run's batches come from: a split's tensors in memory, or its files streamed.

:class:`BatchSource` gives the trainer the same batches either way. An epoch's order is one
``torch.randperm`` drawn from the run's generator, as always; for an in-memory split
(``ArrayDataset``, ``--workers 0``) a batch is ``inputs[index]``, for a streamed one
(:class:`~marginkit.data.stream.ImageFileDataset`, ``--workers N``) the same indices go to a
``DataLoader`` whose ``N`` worker processes decode the files. The workers draw no random
numbers: augmentation stays on the trainer's side, applied to each batch with the run's
generator in the order the batches are used, so the generator's stream (and a resumed
run's weights) are those of the in-memory path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from marginkit.data.stream import ImageFileDataset, load_batches

if TYPE_CHECKING:
    from marginkit.data.bundle import Split

__all__ = ["BatchSource"]


class _Chunks:
    """The batches of an order of indices, made as they are asked for: ``count`` batches
    of ``batch_size`` (the last may be shorter)."""

    def __init__(self, order: Tensor, batch_size: int, count: int) -> None:
        self.order, self.batch_size, self.count = order, batch_size, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[list[int]]:
        for batch in range(self.count):
            yield self.order[batch * self.batch_size : (batch + 1) * self.batch_size].tolist()


class BatchSource:
    """The samples of a split, batch by batch.

    Args:
        dataset: an in-memory split (with ``.tensors()``) or an
            :class:`~marginkit.data.stream.ImageFileDataset`.
        pin_memory: page-locked batches for a fast copy to a GPU (None: when CUDA is
            available); streamed splits only.
    """

    def __init__(self, dataset: Split, pin_memory: bool | None = None) -> None:
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._dataset: ImageFileDataset | None = None
        self._inputs: Tensor | None = None
        if isinstance(dataset, ImageFileDataset):
            self._dataset = dataset
            self.labels: Tensor = dataset.labels  # (N,)
        else:
            self._inputs, self.labels = dataset.tensors()  # (N, *input_shape), (N,) long

    @property
    def streamed(self) -> bool:
        """Whether batches are decoded from files by ``DataLoader`` workers."""
        return self._dataset is not None

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, keep: Tensor) -> BatchSource:
        """The samples at ``keep`` (``(K,)`` long indices), in that order."""
        if self._dataset is not None:
            return BatchSource(self._dataset.subset(keep), self.pin_memory)
        chosen = BatchSource.__new__(BatchSource)
        chosen.pin_memory, chosen._dataset = self.pin_memory, None
        assert self._inputs is not None
        chosen._inputs, chosen.labels = self._inputs[keep], self.labels[keep]
        return chosen

    def epoch(
        self, generator: torch.Generator, batch_size: int, count: int
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """One shuffled pass: ``torch.randperm(N, generator=generator)`` (drawn when the
        first batch is asked for), cut into ``count`` batches of ``batch_size``.

        Yields:
            ``(x, y)``: ``(B, *input_shape)`` float32 inputs and ``(B,)`` long labels.
        """
        order = torch.randperm(len(self), generator=generator)  # (N,)
        if self._inputs is not None:
            for batch in range(count):
                index = order[batch * batch_size : (batch + 1) * batch_size]  # (B,)
                yield self._inputs[index], self.labels[index]
            return
        yield from self._stream(_Chunks(order, batch_size, count))

    def in_order(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Every sample in order (evaluation), ``batch_size`` at a time."""
        if self._inputs is not None:
            for start in range(0, len(self), batch_size):
                end = start + batch_size
                yield self._inputs[start:end], self.labels[start:end]
            return
        count = -(-len(self) // batch_size)
        yield from self._stream(_Chunks(torch.arange(len(self)), batch_size, count))

    def _stream(self, chunks: _Chunks) -> Iterator[tuple[Tensor, Tensor]]:
        assert self._dataset is not None
        # each batch (B, 3, H, W) float32, (B,) long
        yield from load_batches(  # type: ignore[misc]
            self._dataset, chunks, self._dataset.workers, self.pin_memory
        )
