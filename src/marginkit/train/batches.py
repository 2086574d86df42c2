"""Where a run's batches come from: a split's tensors in memory, or its files streamed.

:class:`BatchSource` gives the trainer the same batches either way. An epoch's order is one
``torch.randperm`` drawn from the run's generator, as always; for an in-memory split
(``ArrayDataset``, ``--workers 0``) a batch is ``inputs[index]``, for a streamed one
(:class:`~marginkit.data.stream.ImageFileDataset`, ``--workers N``) the same indices go to a
``DataLoader`` whose ``N`` worker processes decode the files. The workers draw no random
numbers: augmentation stays on the trainer's side, applied to each batch with the run's
generator in the order the batches are used, so the generator's stream (and a resumed
run's weights) are those of the in-memory path.

On several processes each rank asks for its own rows of every batch only (``rows``: the
positions :func:`marginkit.train.accumulation.step_rows` gives), so each rank's workers decode
about ``1/W`` of the batch; the order is drawn whole on every rank, so the rows are those the
rank took of the whole batch before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from marginkit.data.stream import ImageFileDataset, load_batches

if TYPE_CHECKING:
    from marginkit.data.bundle import Split

__all__ = ["BatchSource"]


#: A batch's size -> the positions in it that a process reads, ``(b,)`` long.
Rows = Callable[[int], Tensor]


class _Chunks:
    """The batches of an order of indices, made as they are asked for: ``count`` batches
    of ``batch_size`` (the last may be shorter), each cut to its ``rows`` (None: whole)."""

    def __init__(self, order: Tensor, batch_size: int, count: int, rows: Rows | None) -> None:
        self.order, self.batch_size, self.count, self.rows = order, batch_size, count, rows

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[list[int]]:
        for batch in range(self.count):
            yield self.batch(batch).tolist()

    def batch(self, index: int) -> Tensor:
        """The sample indices read for batch ``index``: ``(b,)`` long."""
        whole = self.order[index * self.batch_size : (index + 1) * self.batch_size]  # (B,)
        return whole if self.rows is None else whole[self.rows(whole.numel())]


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
        self,
        generator: torch.Generator,
        batch_size: int,
        count: int,
        rows: Rows | None = None,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """One shuffled pass: ``torch.randperm(N, generator=generator)`` (drawn when the
        first batch is asked for), cut into ``count`` batches of ``batch_size``.

        Args:
            rows: a batch's size -> the positions in it to read (a process's part); None:
                every sample. Only those samples are taken from memory or decoded.

        Yields:
            ``(x, y)``: ``(b, *input_shape)`` float32 inputs and ``(b,)`` long labels: the
            batch's ``B`` samples, or its ``rows``.
        """
        order = torch.randperm(len(self), generator=generator)  # (N,)
        chunks = _Chunks(order, batch_size, count, rows)
        if self._inputs is not None:
            for batch in range(count):
                index = chunks.batch(batch)  # (b,)
                yield self._inputs[index], self.labels[index]
            return
        yield from self._stream(chunks)

    def in_order(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Every sample in order (evaluation), ``batch_size`` at a time."""
        if self._inputs is not None:
            for start in range(0, len(self), batch_size):
                end = start + batch_size
                yield self._inputs[start:end], self.labels[start:end]
            return
        count = -(-len(self) // batch_size)
        yield from self._stream(_Chunks(torch.arange(len(self)), batch_size, count, None))

    def _stream(self, chunks: _Chunks) -> Iterator[tuple[Tensor, Tensor]]:
        assert self._dataset is not None
        # each batch (B, 3, H, W) float32, (B,) long
        yield from load_batches(  # type: ignore[misc]
            self._dataset, chunks, self._dataset.workers, self.pin_memory
        )
