"""How an image file becomes a backbone's input, exactly as in training.

A run trains on images decoded by :func:`marginkit.data.images.decode_images` (converted to
RGB, centre-cropped to the output's aspect ratio, resized bilinearly to (H, W)) and normalised
per channel, ``(pixel / 255 - mean) / std``, with the training file's statistics
(:func:`marginkit.data.arrays.channel_statistics`). :class:`Preprocessing` records those
facts, so that a saved or exported model can embed new image files the way it saw its
training images, without the training data.

>>> prep = Preprocessing(input_shape=(3, 112, 96), mean=(0.5,) * 3, std=(0.25,) * 3)
>>> inputs = prep.load_images(paths)  # doctest: +SKIP  # (N, 3, 112, 96) float32
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from marginkit.data.errors import DataError

if TYPE_CHECKING:
    from marginkit.data.bundle import DataBundle

__all__ = ["PIXEL_SCALE", "Preprocessing", "preprocessing_of"]

#: Image pixels (8-bit) become values in [0, 1] by this factor before normalisation.
PIXEL_SCALE = 1.0 / 255.0
#: ITU-R BT.601 luma weights in 1/65536 (PIL's ``convert("L")``): grey = R .299 + G .587 +
#: B .114, rounded; they sum to 65536, so a grey image (R = G = B) keeps its values.
_LUMA = (19595, 38470, 7471)


@dataclass(frozen=True)
class Preprocessing:
    """The input a backbone expects and how image files are turned into it.

    Attributes:
        input_shape: one input, ``(C, H, W)`` for images (C is 3 for RGB, 1 for grey).
        mean: per-channel mean of the training pixels scaled to [0, 1].
        std: per-channel standard deviation of those values (all > 0).
        crop_height_fraction: the centred crop's height as a share of the image height
            (LFW: 0.6; every other data set: 1.0), see :func:`~marginkit.data.images.crop_box`.
    """

    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_height_fraction: float = 1.0

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise DataError(f"input_shape: expected positive ints, got {self.input_shape!r}")
        channels = shape[0]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != channels or not all(math.isfinite(float(v)) for v in values):
                raise DataError(
                    f"{name}: expected {channels} finite values (one per channel), got {values!r}"
                )
        if not all(float(s) > 0 for s in self.std):
            raise DataError(f"std: expected positive values, got {self.std!r}")
        if not 0.0 < float(self.crop_height_fraction) <= 1.0:
            raise DataError(
                "crop_height_fraction: expected a value in (0, 1], "
                f"got {self.crop_height_fraction!r}"
            )
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "crop_height_fraction", float(self.crop_height_fraction))

    @property
    def channels(self) -> str:
        """``"RGB"`` or ``"L"`` (grey), the mode images are converted to; ``""`` when the
        input is not a 1- or 3-channel image."""
        if len(self.input_shape) != 3:
            return ""
        return {3: "RGB", 1: "L"}.get(self.input_shape[0], "")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (:meth:`from_dict` reads it back)."""
        return {
            "input_shape": list(self.input_shape),
            "channels": self.channels,
            "pixel_scale": PIXEL_SCALE,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_height_fraction": self.crop_height_fraction,
            "resize": "bilinear",
            "formula": "(pixel * pixel_scale - mean) / std, per channel, NCHW float32",
        }

    @classmethod
    def from_dict(cls, data: Any, source: str | Path) -> Preprocessing:
        """Read :meth:`to_dict`'s form.

        Raises:
            DataError: a key is missing or malformed; names ``source`` and the key.
        """
        try:
            return cls(
                input_shape=tuple(data["input_shape"]),
                mean=tuple(data["mean"]),
                std=tuple(data["std"]),
                crop_height_fraction=data.get("crop_height_fraction", 1.0),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise DataError(f"{source}: expected a preprocessing record, missing {error}") from None
        except DataError as error:
            raise DataError(f"{source}: {error}") from None

    def normalise(self, pixels: Tensor) -> Tensor:
        """8-bit RGB images as the backbone's input.

        Args:
            pixels: ``(N, 3, H, W)`` uint8 RGB images of the input's size.

        Returns:
            ``(N, *input_shape)`` float32: grey (BT.601 luma, as PIL) when C is 1, then
            ``(pixel / 255 - mean) / std`` per channel.
        """
        if self.channels == "L":
            weights = torch.tensor(_LUMA, dtype=torch.int64).view(1, 3, 1, 1)
            grey = ((pixels.to(torch.int64) * weights).sum(1, keepdim=True) + 32768) >> 16
            pixels = grey  # (N, 1, H, W)
        view = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(view)
        std = torch.tensor(self.std, dtype=torch.float32).view(view)
        return (pixels.to(torch.float32) * PIXEL_SCALE - mean) / std

    def load_images(self, paths: Sequence[Path]) -> Tensor:
        """Decode, crop, resize and normalise image files, as the run's training images.

        Returns:
            ``(N, *input_shape)`` float32.

        Raises:
            DataError: the input is not a 1- or 3-channel image, or a file cannot be read
                as an image (the message names it).
        """
        from marginkit.data.images import decode_images

        if not self.channels:
            raise DataError(
                f"input_shape: image files need a (1 or 3, H, W) input, got {self.input_shape}"
            )
        size = (self.input_shape[1], self.input_shape[2])
        return self.normalise(decode_images(list(paths), size, self.crop_height_fraction))


def preprocessing_of(bundle: DataBundle, dataset: str) -> Preprocessing | None:
    """What a run trained on ``bundle`` (of data set ``dataset``) feeds its backbone, or None
    when the bundle carries no per-channel statistics (vector data, a hand-made bundle
    without them).

    The statistics are the bundle's ``mean``/``std``, else those of its training split
    (an :class:`~marginkit.data.arrays.ArrayDataset`'s ``mean``/``std`` tensors).
    """
    from marginkit.data.lfw import LFW_CROP_FRACTION
    from marginkit.registry import DATASETS, UnknownNameError

    mean, std = tuple(bundle.mean), tuple(bundle.std)
    if not mean:
        train_mean, train_std = (
            getattr(bundle.train, "mean", None),
            getattr(bundle.train, "std", None),
        )
        if not isinstance(train_mean, Tensor) or not isinstance(train_std, Tensor):
            return None
        mean, std = tuple(train_mean.flatten().tolist()), tuple(train_std.flatten().tolist())
    try:
        lfw = DATASETS.canonical(dataset) == "lfw"
    except UnknownNameError:
        lfw = False
    try:
        return Preprocessing(
            input_shape=tuple(bundle.input_shape),
            mean=mean,
            std=std,
            crop_height_fraction=LFW_CROP_FRACTION if lfw else 1.0,
        )
    except DataError:  # statistics that do not fit the input (not per channel)
        return None
