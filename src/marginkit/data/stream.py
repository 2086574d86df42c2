"""Image files decoded lazily, in ``torch.utils.data`` worker processes (``--workers N``).

With ``workers > 0`` the ``folder``, ``lfw`` and ``rec`` readers keep only an index of their
training images (an :class:`EncodedImages`: for image files :class:`ImageFiles`, the paths as
one compact byte array; for a RecordIO file :class:`marginkit.data.rec.RecordImages`, the
records' byte offsets) and the labels, instead of decoding them all into one tensor.
:class:`ImageFileDataset` decodes an image when it is asked for one, with the decode, crop,
resize (:func:`marginkit.data.images.decode_images`) and normalisation
(:class:`marginkit.data.ArrayDataset`) of the in-memory path, so an image gives the same
tensor either way. :func:`load_batches` feeds given batches of indices through a
``DataLoader`` of ``workers`` processes; an image that cannot be decoded there is reported as
one line naming its path (or its record's file and byte offset).

The normalisation statistics are those of the in-memory path, exactly: one streaming pass
(:func:`file_statistics`) counts every code of every channel and takes the same moments
(:func:`marginkit.data.arrays.moments_of_counts`).

Memory: the index (a path or an offset, and a label, per image) plus the batches in
flight; no decoded image is kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from marginkit.data.arrays import channel_tensors, moments_of_counts, normalise_codes
from marginkit.data.errors import DataError
from marginkit.data.images import decode_image, decode_images
from marginkit.progress import Progress

__all__ = ["EncodedImages", "ImageFileDataset", "ImageFiles", "file_statistics", "load_batches"]

#: Images per batch of the statistics pass.
_STATISTICS_BATCH = 64


class EncodedImages:
    """The index of a set of encoded images (image files, or the records of a RecordIO file:
    :class:`marginkit.data.rec.RecordImages`), with the output size and crop; an image is
    decoded when asked for (:meth:`codes`).

    A subclass says how many images there are, where image ``index`` is (:meth:`encoded`)
    and which images a subset holds (:meth:`__getitem__`); the decoding is this class's,
    one piece of code for every source.

    Args:
        size: output ``(height, width)``.
        height_fraction: centre-crop height as a share of the image height (see
            :func:`marginkit.data.images.crop_box`).
        workers: decoding processes of the ``DataLoader``s that read these images (0: in
            the calling process).
    """

    def __init__(
        self, size: tuple[int, int], height_fraction: float = 1.0, workers: int = 0
    ) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.height_fraction = float(height_fraction)
        self.workers = int(workers)

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, indices: Tensor) -> EncodedImages:
        """The images at ``indices`` (a ``(K,)`` long tensor), in that order."""
        raise NotImplementedError

    def encoded(self, index: int) -> tuple[Path | bytes, str]:
        """Image ``index``: its file (or its encoded bytes) and its name for a message."""
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, 3, height, width)``, the shape of the decoded codes."""
        return (len(self), 3, *self.size)

    def codes(self, index: int) -> Tensor:
        """Image ``index`` decoded, cropped and resized: ``(3, H, W)`` uint8."""
        source, name = self.encoded(index)
        array = decode_image(source, self.size, self.height_fraction, name)  # (H, W, 3)
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def decode_all(self, progress: bool = False) -> Tensor:
        """Every image at once: ``(N, 3, H, W)`` uint8 (memory grows with N)."""
        entries = [self.encoded(index) for index in range(len(self))]
        return decode_images(
            [source for source, _ in entries],
            self.size,
            self.height_fraction,
            progress=progress,
            names=[name for _, name in entries],
        )


class ImageFiles(EncodedImages):
    """The index of a set of image files: their paths, the output size and crop.

    The paths are held as one numpy byte array (no Python object per image), so a worker
    process forked from the trainer does not copy them as it reads them.

    Args:
        paths: the image files, in the order of their labels.
        size, height_fraction, workers: as for :class:`EncodedImages`.
    """

    def __init__(
        self,
        paths: Sequence[Path | str] | np.ndarray,
        size: tuple[int, int],
        height_fraction: float = 1.0,
        workers: int = 0,
    ) -> None:
        super().__init__(size, height_fraction, workers)
        if isinstance(paths, np.ndarray):
            self._paths = paths
        else:
            encoded = [os.fsencode(path) for path in paths]
            self._paths = np.array(encoded, dtype=bytes) if encoded else np.zeros(0, dtype="S1")

    def __len__(self) -> int:
        return int(self._paths.shape[0])

    def path(self, index: int) -> str:
        """The file of image ``index``."""
        return os.fsdecode(bytes(self._paths[index]))

    def __getitem__(self, indices: Tensor) -> ImageFiles:
        """The files at ``indices`` (a ``(K,)`` long tensor), in that order."""
        chosen = self._paths[np.asarray(torch.as_tensor(indices, dtype=torch.long))]
        return ImageFiles(chosen, self.size, self.height_fraction, self.workers)

    def encoded(self, index: int) -> tuple[Path | bytes, str]:
        """Image ``index``'s file, named by its path."""
        path = self.path(index)
        return Path(path), path


class ImageFileDataset(Dataset):
    """Image files decoded and normalised when read, as :class:`~marginkit.data.ArrayDataset`.

    An item is ``((codes * value_scale - mean) / std, label)``: ``(3, H, W)`` float32 and an
    int, bitwise equal to the in-memory data set's item for the same file.

    Args:
        files: the index of the images.
        labels: ``(N,)`` integer labels.
        mean: per-channel mean of the pixels scaled to [0, 1] (3 values).
        std: per-channel standard deviation (3 positive values).
        value_scale: factor from 8-bit codes to [0, 1].
        clean_labels: ``(N,)`` true labels where ``labels`` carry injected noise.
    """

    def __init__(
        self,
        files: EncodedImages,
        labels: Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        value_scale: float = 1.0 / 255.0,
        clean_labels: Tensor | None = None,
    ) -> None:
        if labels.shape != (len(files),):
            raise ValueError(
                f"labels: expected shape ({len(files)},) to match the files, "
                f"got {tuple(labels.shape)}"
            )
        self.files = files
        self.labels = labels.long()
        self.clean_labels = self.labels if clean_labels is None else clean_labels.long()
        self.value_scale = float(value_scale)
        self.mean, self.std = channel_tensors(mean, std, files.shape[1:])  # (3, 1, 1) each

    @property
    def workers(self) -> int:
        """Decoding processes of the ``DataLoader``s that read this data set."""
        return self.files.workers

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, ``(3, H, W)``."""
        return tuple(self.files.shape[1:])

    def __len__(self) -> int:
        return len(self.files)

    def _normalise(self, codes: Tensor) -> Tensor:
        return normalise_codes(codes, self.value_scale, self.mean, self.std)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self._normalise(self.files.codes(index)), int(self.labels[index])

    def subset(self, indices: Tensor) -> ImageFileDataset:
        """The samples at ``indices`` (``(K,)`` long), in that order."""
        return ImageFileDataset(
            self.files[indices],
            self.labels[indices],
            self.mean.flatten().tolist(),
            self.std.flatten().tolist(),
            self.value_scale,
            clean_labels=self.clean_labels[indices],
        )

    def tensors(self) -> tuple[Tensor, Tensor]:
        """Every sample at once (decoded whole: memory grows with N; the trainer reads a
        streamed split in batches, :func:`load_batches`).

        Returns:
            ``(inputs, labels)``: ``(N, 3, H, W)`` float32 and ``(N,)`` long.
        """
        return self._normalise(self.files.decode_all()), self.labels.clone()


# ------------------------------------------------------------------ worker processes
@dataclass(frozen=True)
class _Failure:
    """An image a worker could not decode: the one-line message naming its path."""

    message: str


class _Guarded(Dataset):
    """``dataset``'s items, or a :class:`_Failure` where reading one raises a DataError
    (a worker's exception would reach the trainer as a multi-line traceback)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, index: int) -> object:
        try:
            return self.dataset[index]
        except DataError as error:
            return _Failure(str(error))


def _collate(items: list[object]) -> object:
    for item in items:
        if isinstance(item, _Failure):
            return item
    return default_collate(items)


def load_batches(
    dataset: Dataset,
    batches: Iterable[Sequence[int]],
    workers: int,
    pin_memory: bool = False,
) -> Iterator[object]:
    """The collated items of each batch of indices, read by ``workers`` processes.

    Args:
        dataset: a map-style data set (e.g. :class:`ImageFileDataset`).
        batches: the indices of each batch, in order (iterated in this process).
        workers: ``DataLoader`` worker processes (0: read in this process).
        pin_memory: put batches in page-locked memory (for a fast copy to a GPU).

    Yields:
        Each batch as ``default_collate`` makes it, e.g. ``(x (B, 3, H, W), y (B,))``.

    Raises:
        DataError: a file cannot be decoded; one line naming it.
    """
    loader = DataLoader(
        _Guarded(dataset),
        # any iterable of index sequences works; torch's hint names lists only
        batch_sampler=batches,  # type: ignore[arg-type]
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
    )
    for batch in loader:
        if isinstance(batch, _Failure):
            raise DataError(batch.message)
        yield batch


class _Histograms(Dataset):
    """Per image, the count of each 8-bit code in each channel: ``(3, 256)`` int64."""

    def __init__(self, files: EncodedImages) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        codes = self.files.codes(index).reshape(3, -1).to(torch.int64)  # (3, H * W)
        return torch.stack([torch.bincount(channel, minlength=256) for channel in codes])


def file_statistics(
    files: EncodedImages, value_scale: float = 1.0 / 255.0, progress: bool = False
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of the decoded images, in one streaming pass.

    Equal to :func:`marginkit.data.arrays.channel_statistics` of the decoded tensor (the
    same code counts, the same moments), without holding more than a batch of images.

    Raises:
        ValueError: ``files`` is empty.
        DataError: a file cannot be decoded; one line naming it.
    """
    if len(files) == 0:
        raise ValueError("data: expected at least one sample to compute statistics from")
    counts = torch.zeros((3, 256), dtype=torch.int64)
    starts = range(0, len(files), _STATISTICS_BATCH)
    batches = [range(s, min(s + _STATISTICS_BATCH, len(files))) for s in starts]
    with Progress(len(files), "image statistics", enabled=progress, unit="img") as bar:
        for histograms in load_batches(_Histograms(files), batches, files.workers):
            assert isinstance(histograms, Tensor)
            counts += histograms.sum(0)  # (3, 256)
            bar.update(histograms.shape[0])
    means: list[float] = []
    stds: list[float] = []
    for channel in counts:
        used = int(torch.nonzero(channel).max()) + 1  # as bincount: up to the largest code
        mean, std = moments_of_counts(channel[:used].to(torch.float64), value_scale)
        means.append(mean)
        stds.append(std)
    return means, stds
