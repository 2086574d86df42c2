"""The decoded contents of a data set's files, before options are applied."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from marginkit.data.stream import EncodedImages

__all__ = ["RawPairs", "RawSplits"]


@dataclass
class RawPairs:
    """Verification pairs with their images still as codes.

    Attributes:
        data: ``(I, *input_shape)`` codes of every image the pairs refer to, once each.
        first: ``(P,)`` long indices into ``data``.
        second: ``(P,)`` long indices into ``data``.
        same: ``(P,)`` bool, True for a matched pair.
        fold: ``(P,)`` long fold index.
        image_names: the relative file name of each image.
    """

    data: Tensor
    first: Tensor
    second: Tensor
    same: Tensor
    fold: Tensor
    image_names: list[str]


@dataclass
class RawSplits:
    """Decoded training and test arrays as stored on disk.

    Attributes:
        train_data: ``(N, *input_shape)`` integer codes (``uint8`` pixels for images), or
            the index of encoded images (files, records) decoded lazily (``workers > 0``, see
            :mod:`marginkit.data.stream`).
        train_labels: ``(N,)`` long labels in ``0..len(class_names)-1``.
        test_data: ``(M, *input_shape)`` codes, or None when there is no test split.
        test_labels: ``(M,)`` long labels, or None.
        class_names: one name per class.
        value_scale: factor from codes to values in [0, 1].
        augment: the data set's default for training augmentation.
        pairs: verification pairs, when the data set defines them.
    """

    train_data: Tensor | EncodedImages
    train_labels: Tensor
    test_data: Tensor | None
    test_labels: Tensor | None
    class_names: list[str]
    value_scale: float = 1.0 / 255.0
    augment: bool = False
    pairs: RawPairs | None = None
