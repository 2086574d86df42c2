"""Which split is measured, and its embeddings, computed once.

:func:`measured_split` is the one rule for the split a run is measured on (``marginkit eval
--split``, :func:`~marginkit.evaluation.evaluate_run` and
:func:`~marginkit.evaluation.analyse` all use it); :func:`embed` maps a dataset through the
backbone; :class:`EmbeddedSplits` embeds each split of a bundle at most once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from marginkit._validation import check_count
from marginkit.errors import MarginkitError

if TYPE_CHECKING:
    from marginkit.data.bundle import DataBundle, Split

__all__ = [
    "SPLITS",
    "EmbeddedSplits",
    "EvaluationError",
    "check_split",
    "embed",
    "measured_split",
    "split_dataset",
]

#: The splits of a :class:`~marginkit.data.DataBundle`.
SPLITS = ("train", "validation", "test")


class EvaluationError(MarginkitError, ValueError):
    """A run cannot be measured as asked (no such split); one line naming it."""


def check_split(split: str) -> str:
    """``split`` if it names a split; else :class:`EvaluationError` listing them."""
    if split not in SPLITS:
        raise EvaluationError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    return split


def measured_split(bundle: DataBundle, requested: str = "test") -> str:
    """The split to measure when ``requested`` is asked for.

    The requested split, except that a data set without a test split (``folder``, ``lfw``)
    is measured on its validation split (the held-out part of the training data) when the
    test split is asked for.

    Args:
        bundle: the run's :class:`~marginkit.data.DataBundle`.
        requested: ``"train"``, ``"validation"`` or ``"test"``.
    """
    check_split(requested)
    if requested == "test" and bundle.test is None and bundle.validation is not None:
        return "validation"
    return requested


def split_dataset(bundle: DataBundle, split: str) -> Split:
    """The dataset of ``split``; :class:`EvaluationError` when the data set has no such
    split."""
    dataset = getattr(bundle, check_split(split))
    if dataset is None:
        raise EvaluationError(f"the run's data set {bundle.name!r} has no {split} split")
    return dataset


@torch.no_grad()
def embed(
    backbone: nn.Module,
    dataset: Split,
    batch_size: int = 512,
    *,
    progress: bool = False,
    name: str = "",
) -> tuple[Tensor, Tensor]:
    """Embeddings of a whole dataset, in order.

    Args:
        backbone: maps (B, *input_shape) -> (B, D); put in eval mode here.
        dataset: a dataset with ``.tensors()`` -> (inputs (N, ...), labels (N,)).
        batch_size: inputs per forward pass (an int >= 1).
        progress: show the progress (with an ETA) on stderr.
        name: what is embedded, for the progress line (e.g. ``"test"``).

    Returns:
        ``(embeddings (N, D) float32, labels (N,) long)``.
    """
    check_count("batch_size", batch_size, 1)
    from marginkit.progress import Progress

    inputs, labels = dataset.tensors()  # (N, *input_shape), (N,)
    backbone.eval()
    chunks = []
    description = f"embedding {name}".strip()
    with Progress(len(inputs), description, enabled=progress, unit="img") as bar:
        for start in range(0, len(inputs), batch_size):
            chunks.append(backbone(inputs[start : start + batch_size]))
            bar.update(len(chunks[-1]))
    return torch.cat(chunks).float(), labels.long()  # (N, D), (N,)


class EmbeddedSplits:
    """The embeddings of a bundle's splits (and of its verification pairs' images), each
    computed on first use and kept.

    Args:
        backbone: the trained backbone.
        bundle: the run's :class:`~marginkit.data.DataBundle`.
        batch_size: inputs per forward pass.
        progress: show the progress of each embedding on stderr.
        embedded: embeddings the caller has already, by split name: ``(embeddings (N, D),
            labels (N,))``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        bundle: DataBundle,
        *,
        batch_size: int = 512,
        progress: bool = False,
        embedded: dict[str, tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        self.backbone = backbone
        self.bundle = bundle
        self.batch_size = batch_size
        self.progress = progress
        self.embedded = dict(embedded or {})
        self.pair_embeddings: Tensor | None = None

    def __call__(self, split: str) -> tuple[Tensor, Tensor]:
        """``(embeddings (N, D), labels (N,))`` of ``split`` (which must exist)."""
        if split not in self.embedded:
            self.embedded[split] = embed(
                self.backbone,
                split_dataset(self.bundle, split),
                self.batch_size,
                progress=self.progress,
                name=split,
            )
        return self.embedded[split]

    def pair_images(self) -> Tensor:
        """(I, D) embeddings of the images of the bundle's verification pairs."""
        if self.pair_embeddings is None:
            assert self.bundle.pairs is not None  # asked for only where the bundle has pairs
            self.pair_embeddings, _ = embed(
                self.backbone,
                self.bundle.pairs.images,
                self.batch_size,
                progress=self.progress,
                name="pairs",
            )
        return self.pair_embeddings
