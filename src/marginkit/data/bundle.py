"""What :func:`marginkit.data.load_dataset` returns: the splits and what a trainer needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor

__all__ = ["DataBundle", "Split", "VerificationPairs"]


class Split(Protocol):
    """A split of a :class:`DataBundle` (or its pairs' images): a map-style dataset of
    ``(input, label)`` items that also gives the whole split at once
    (:class:`~marginkit.data.ArrayDataset`, :class:`~marginkit.data.stream.ImageFileDataset`).
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[Tensor, int]: ...

    def tensors(self) -> tuple[Tensor, Tensor]:
        """``(inputs (N, *input_shape) float32, labels (N,) long)``: every sample at once."""
        ...


@dataclass
class VerificationPairs:
    """Face-verification pairs (e.g. LFW's ``pairs.txt``) over a set of images.

    Attributes:
        images: items ``(image, -1)``, every image a pair refers to, each once.
        first: ``(P,)`` long indices into ``images``.
        second: ``(P,)`` long indices into ``images``.
        same: ``(P,)`` bool, True for a matched (same identity) pair.
        fold: ``(P,)`` long fold index (View 2 ``pairs.txt``: 0..9; View 1 files: all 0).
        image_names: the file name (``Person/Person_NNNN.jpg``) of each image.
    """

    images: Split
    first: Tensor
    second: Tensor
    same: Tensor
    fold: Tensor
    image_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.first.numel())


@dataclass
class DataBundle:
    """The splits of a data set plus the facts a trainer needs.

    Every Dataset yields ``(input, label)`` with ``input`` a float32 normalised tensor of
    ``input_shape`` and ``label`` an int, and has ``.tensors()`` returning the whole split at
    once. Datasets never augment: when ``augment`` is True a trainer applies
    :func:`marginkit.data.augment_batch` to its training batches.

    Attributes:
        name: data set name, e.g. ``"mnist"``.
        train: training split (noisy labels when ``label_noise > 0``).
        validation: held-out part of the training data (clean labels), or None.
        test: test split with every class (unknown classes labelled ``>= num_classes``), or
            None where the data set has none (``folder``, ``lfw``).
        num_classes: number of training (known) classes.
        input_shape: ``(C, H, W)`` for images, ``(features,)`` for vectors.
        class_names: names of the ``num_classes`` training classes.
        train_labels: ``(N_train,)`` long labels the trainer uses (noisy if noise was asked).
        train_clean_labels: ``(N_train,)`` long true labels.
        test_labels: ``(N_test,)`` long test labels, or None.
        pairs: verification pairs (``lfw``; ``folder`` with a pairs file), or None.
        augment: whether the trainer should augment training batches.
        test_class_names: names of every test label ``0..max``, known classes first.
        validation_labels: ``(N_validation,)`` long validation labels, or None.
        mean: per-channel mean subtracted from inputs scaled to [0, 1].
        std: per-channel standard deviation dividing them.
        fingerprint: what the data were read from (the files' names, sizes and a hash of a
            sample of their contents, :func:`marginkit.data.fingerprint.data_fingerprint`),
            recorded by a run to refuse resuming on other data; None for a bundle not read
            from files by :func:`marginkit.data.load_dataset`.
    """

    name: str
    train: Split
    validation: Split | None
    test: Split | None
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: list[str]
    train_labels: Tensor
    train_clean_labels: Tensor
    test_labels: Tensor | None
    pairs: VerificationPairs | None
    augment: bool = False
    test_class_names: list[str] | None = None
    validation_labels: Tensor | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    fingerprint: dict[str, Any] | None = None

    @property
    def noisy_mask(self) -> Tensor:
        """``(N_train,)`` bool, True where the training label was flipped by label noise."""
        return self.train_labels != self.train_clean_labels
