"""A verification pair set in memory: images ready for a backbone, pairs, flags and folds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from marginkit._validation import as_flags, as_labels, check_same_length

__all__ = ["PairSet"]

#: Factor from 8-bit pixel codes to values in [0, 1], as in training.
_VALUE_SCALE = 1.0 / 255.0


@dataclass(frozen=True)
class PairSet:
    """Verification pairs over a set of images.

    Images are kept once each (a pairs file names many images in several pairs) and, as
    ``uint8`` pixel codes, normalised a batch at a time exactly as training normalised its
    inputs: ``(code / 255 - mean) / std`` per channel (LFW's 6,000 pairs at 112x96 take
    250 MB this way, a quarter of float32).

    Attributes:
        images: ``(I, C, H, W)`` ``uint8`` pixel codes (``mean`` and ``std`` required), or
            floating-point inputs given to the backbone as they are (no ``mean``/``std``).
        first: ``(P,)`` long index into ``images`` of each pair's first image.
        second: ``(P,)`` long index of its second image.
        same: ``(P,)`` bool, True for a pair of one identity.
        fold: ``(P,)`` long fold of each pair, or None (folds are then assigned by
            :func:`marginkit.metrics.verification_report`: stratified, in order,
            :func:`~marginkit.metrics.assign_folds`).
        mean: per-channel mean subtracted from codes scaled to [0, 1].
        std: per-channel standard deviation dividing them.
        source: where the pairs come from (a file name), for reports.
        fold_source: how ``fold`` was made, reported in place of ``"given"``.
        crop: the centre crop's share of each image's height the images were read with
            (None: not known), for reports.

    Raises:
        TypeError, ValueError: an attribute of the wrong type, shape or range (named).
    """

    images: Tensor
    first: Tensor
    second: Tensor
    same: Tensor
    fold: Tensor | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str = ""
    fold_source: str | None = field(default=None)
    crop: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or self.images.dim() != 4:
            shape = tuple(self.images.shape) if isinstance(self.images, Tensor) else None
            raise ValueError(f"images: expected an (I, C, H, W) tensor, got {shape}")
        first = as_labels("first", self.first)
        second = as_labels("second", self.second)
        same = as_flags("same", self.same)
        check_same_length(first=first, second=second, same=same)
        fold = None if self.fold is None else as_labels("fold", self.fold)
        if fold is not None:
            check_same_length(first=first, fold=fold)
        count = self.images.shape[0]
        if int(torch.maximum(first, second).max()) >= count:
            raise ValueError(f"first/second: expected indices below the {count} images")
        object.__setattr__(self, "first", first)
        object.__setattr__(self, "second", second)
        object.__setattr__(self, "same", same)
        object.__setattr__(self, "fold", fold)
        self._check_normalisation()

    def _check_normalisation(self) -> None:
        if self.images.dtype == torch.uint8:
            channels = self.images.shape[1]
            for name, values in (("mean", self.mean), ("std", self.std)):
                if values is None or len(values) != channels:
                    raise ValueError(
                        f"{name}: expected {channels} values (one per channel) for uint8 images"
                    )
            if not all(value > 0 for value in self.std or ()):
                raise ValueError(f"std: expected positive values, got {list(self.std or ())}")
        elif self.images.is_floating_point():
            if self.mean is not None or self.std is not None:
                raise ValueError("mean/std: only for uint8 images; float images are used as given")
        else:
            raise TypeError(f"images: expected uint8 or floating point, got {self.images.dtype}")

    @classmethod
    def consecutive(
        cls,
        images: Tensor,
        same: Sequence[bool] | Tensor,
        *,
        fold: Tensor | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        source: str = "",
        fold_source: str | None = None,
    ) -> PairSet:
        """Pairs stored as consecutive images (InsightFace's layout): pair ``i`` is images
        ``2 i`` and ``2 i + 1`` of ``images`` ``(2P, C, H, W)``."""
        flags = as_flags("same", same)
        if images.dim() != 4 or images.shape[0] != 2 * flags.shape[0]:
            raise ValueError(
                f"images: expected (2P, C, H, W) = ({2 * flags.shape[0]}, ...) for "
                f"{flags.shape[0]} pairs, got shape {tuple(images.shape)}"
            )
        first = torch.arange(0, images.shape[0], 2, dtype=torch.long)
        return cls(images, first, first + 1, flags, fold, mean, std, source, fold_source)

    def __len__(self) -> int:
        return int(self.same.shape[0])

    @property
    def num_images(self) -> int:
        """I, the number of distinct images."""
        return int(self.images.shape[0])

    def inputs(self, start: int, stop: int) -> Tensor:
        """``(stop - start, C, H, W)`` float32 inputs of images ``start:stop``."""
        batch = self.images[start:stop]
        if batch.dtype != torch.uint8:
            return batch.float()
        view = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(view)
        std = torch.tensor(self.std, dtype=torch.float32).view(view)
        return (batch.to(torch.float32) * _VALUE_SCALE - mean) / std
