"""In-memory image and vector data sets stored compactly and normalised on access."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "ArrayDataset",
    "channel_statistics",
    "channel_tensors",
    "moments_of_counts",
    "normalise_codes",
]


class ArrayDataset(Dataset):
    """Samples kept as integer codes (usually ``uint8`` pixels) and normalised when read.

    An item is ``((data[i] * value_scale - mean) / std, label)`` with ``mean`` and ``std``
    broadcast per channel (dimension 0 of a sample). Storing ``uint8`` keeps MNIST at about
    47 MB instead of 188 MB of float32.

    No augmentation is applied here: a consumer that wants the standard random crop + flip
    applies :func:`marginkit.data.augment_batch` to the batches it draws (see
    :class:`marginkit.data.DataBundle`'s ``augment`` flag).

    Args:
        data: ``(N, *input_shape)`` integer tensor (``uint8`` for images).
        labels: ``(N,)`` integer labels.
        mean: per-channel mean of the scaled values, length ``input_shape[0]``.
        std: per-channel standard deviation of the scaled values (all > 0).
        value_scale: factor from stored codes to values in [0, 1] (1/255 for 8-bit images).
        clean_labels: ``(N,)`` true labels when ``labels`` carry injected noise; defaults to
            ``labels``.
    """

    def __init__(
        self,
        data: Tensor,
        labels: Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        value_scale: float = 1.0 / 255.0,
        clean_labels: Tensor | None = None,
    ) -> None:
        if data.dim() < 2:
            raise ValueError(f"data: expected a (N, C, ...) tensor, got shape {tuple(data.shape)}")
        if labels.shape != (data.shape[0],):
            raise ValueError(
                f"labels: expected shape ({data.shape[0]},) to match data, "
                f"got {tuple(labels.shape)}"
            )
        if clean_labels is not None and clean_labels.shape != labels.shape:
            raise ValueError(
                f"clean_labels: expected shape {tuple(labels.shape)} like labels, "
                f"got {tuple(clean_labels.shape)}"
            )
        self.data = data
        self.labels = labels.long()
        self.clean_labels = self.labels if clean_labels is None else clean_labels.long()
        self.value_scale = float(value_scale)
        self.mean, self.std = channel_tensors(mean, std, data.shape[1:])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(1, 28, 28)``."""
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return self.data.shape[0]

    def _normalise(self, codes: Tensor) -> Tensor:
        return normalise_codes(codes, self.value_scale, self.mean, self.std)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self._normalise(self.data[index]), int(self.labels[index])

    def tensors(self) -> tuple[Tensor, Tensor]:
        """Every sample at once, without augmentation.

        Returns:
            ``(inputs, labels)``: ``(N, *input_shape)`` float32 normalised inputs and ``(N,)``
            long labels (the noisy ones where label noise was injected).
        """
        return self._normalise(self.data), self.labels.clone()


def channel_tensors(
    mean: Sequence[float], std: Sequence[float], input_shape: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std as float32 tensors that broadcast over one input of shape
    ``input_shape`` ``(C, ...)`` (and over a batch of them).

    Raises:
        ValueError: not one value per channel, or a std that is not positive.
    """
    channels = input_shape[0]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean/std: expected {channels} values (one per channel), "
            f"got {len(mean)} and {len(std)}"
        )
    if any(not s > 0 for s in std):
        raise ValueError(f"std: expected positive values, got {list(std)}")
    view = (channels,) + (1,) * (len(input_shape) - 1)
    return (
        torch.tensor(list(mean), dtype=torch.float32).view(view),
        torch.tensor(list(std), dtype=torch.float32).view(view),
    )


def normalise_codes(codes: Tensor, value_scale: float, mean: Tensor, std: Tensor) -> Tensor:
    """Stored integer codes -> network inputs, ``(codes * value_scale - mean) / std`` in
    float32: the one formula of the in-memory and the streamed data sets (so an image gives
    bitwise the same tensor either way)."""
    return (codes.to(torch.float32) * value_scale - mean) / std


def channel_statistics(
    data: Tensor, value_scale: float = 1.0 / 255.0, chunk: int = 1 << 22
) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and standard deviation of integer-coded samples.

    Counts each code with a histogram (chunked, so a 47 MB ``uint8`` array never becomes a
    188 MB float copy) and takes the moments of ``code * value_scale``.

    Args:
        data: ``(N, C, ...)`` tensor of non-negative integer codes below 65,536.
        value_scale: factor from codes to values.
        chunk: number of elements histogrammed at a time.

    Returns:
        ``(mean, std)``, each a list of C floats (population standard deviation).
    """
    if data.numel() == 0:
        raise ValueError("data: expected at least one sample to compute statistics from")
    means: list[float] = []
    stds: list[float] = []
    per_channel = data.transpose(0, 1).reshape(data.shape[1], -1)  # (C, N * H * W)
    for channel in per_channel:
        counts = torch.zeros(0, dtype=torch.float64)
        for start in range(0, channel.numel(), chunk):
            piece = torch.bincount(channel[start : start + chunk].to(torch.int64))
            if piece.numel() > counts.numel():
                piece[: counts.numel()] += counts.to(torch.int64)
                counts = piece.to(torch.float64)
            else:
                counts[: piece.numel()] += piece.to(torch.float64)
        mean, std = moments_of_counts(counts, value_scale)
        means.append(mean)
        stds.append(std)
    return means, stds


def moments_of_counts(counts: Tensor, value_scale: float) -> tuple[float, float]:
    """Mean and population standard deviation of values ``code * value_scale`` given how
    often each code occurs.

    Args:
        counts: ``(K,)`` float64, ``counts[k]`` the number of samples with code ``k``
            (``K`` one more than the largest code present, as ``torch.bincount`` gives).
        value_scale: factor from codes to values.

    Returns:
        ``(mean, std)``; a zero standard deviation is returned as 1.0 (nothing to scale).
    """
    values = torch.arange(counts.numel(), dtype=torch.float64) * value_scale
    total = counts.sum()
    mean = float((counts * values).sum() / total)
    variance = float((counts * (values - mean) ** 2).sum() / total)
    return mean, max(variance, 0.0) ** 0.5 or 1.0
