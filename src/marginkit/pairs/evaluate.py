"""Scoring a backbone on verification pairs, with flip test-time augmentation.

Flip test-time augmentation (the evaluation of ArcFace, Deng et al., CVPR 2019, and of
SphereFace, Liu et al., CVPR 2017): the embedding of an image is the sum of the embeddings
of the image and of its horizontal mirror; pairs are then scored by the cosine of their
embeddings. The figures are those of ``marginkit eval``'s verification section
(:func:`marginkit.metrics.verification_report`: k-fold accuracy, AUC, EER, TAR@FAR).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from marginkit._validation import check_count
from marginkit.metrics import verification_report
from marginkit.metrics.roc import DEFAULT_FARS
from marginkit.pairs.pairset import PairSet
from marginkit.progress import Progress

__all__ = ["embed_pair_images", "evaluate_both", "evaluate_pairs", "pairs_report"]


def _device_of(backbone: nn.Module) -> torch.device:
    """Where the backbone's weights are (the CPU for a module without any)."""
    for tensor in (*backbone.parameters(), *backbone.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _evaluation_mode(backbone: nn.Module) -> Iterator[None]:
    """The backbone in eval mode, without gradients; its own mode back afterwards (so a
    verification in the middle of training leaves it training)."""
    training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        backbone.train(training)


def _embed_views(
    backbone: nn.Module,
    pairs: PairSet,
    *,
    mirrored: bool,
    batch_size: int,
    device: torch.device | str | None,
    progress: bool,
    images: slice | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``(I, D)`` embeddings of the images and, with ``mirrored``, of their mirrors (of the
    images ``images`` only, ``(I', D)``, where given)."""
    check_count("batch_size", batch_size, 1)
    if not isinstance(pairs, PairSet):
        raise TypeError(f"pairs: expected a PairSet, got {type(pairs).__name__}")
    target = _device_of(backbone) if device is None else torch.device(device)
    plain: list[Tensor] = []
    mirrors: list[Tensor] = []
    description = f"embedding {pairs.source or 'pairs'}" + (" (and mirrors)" if mirrored else "")
    first, stop, _ = (images or slice(None)).indices(pairs.num_images)
    with (
        _evaluation_mode(backbone),
        Progress(stop - first, description, enabled=progress, unit="img") as bar,
    ):
        for start in range(first, stop, batch_size):
            end = min(start + batch_size, stop)
            inputs = pairs.inputs(start, end).to(target)  # (B, C, H, W)
            plain.append(backbone(inputs).float().cpu())  # (B, D)
            if mirrored:
                mirrors.append(backbone(torch.flip(inputs, dims=(-1,))).float().cpu())
            bar.update(inputs.shape[0])
    if not plain:  # no image in ``images``: (0, D) is unknown without a forward pass
        raise ValueError(f"images: expected a non-empty range of {pairs.num_images}, got {images}")
    return torch.cat(plain), torch.cat(mirrors) if mirrored else None


def embed_pair_images(
    backbone: nn.Module,
    pairs: PairSet,
    flip: bool = True,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    *,
    progress: bool = False,
    images: slice | None = None,
) -> Tensor:
    """The embedding of every image of ``pairs`` (or of the images ``images``: a process's
    share, :meth:`marginkit.train.distributed.Distribution.rows`).

    Args:
        backbone: maps ``(B, C, H, W)`` inputs to ``(B, D)`` embeddings; run in eval mode
            without gradients, its own mode restored afterwards.
        pairs: the pair set.
        flip: embed each image as the sum of the embeddings of the image and of its
            horizontal mirror.
        batch_size: images per forward pass.
        device: where the inputs go (the backbone must be there); None: the device of
            the backbone's weights.
        progress: show the progress on stderr.
        images: a non-empty range of the images to embed (a step of 1); None: all.

    Returns:
        ``(I, D)`` float32 embeddings on the CPU, one per image of ``pairs.images`` (of
        ``images``: ``(I', D)``).
    """
    plain, mirrors = _embed_views(
        backbone,
        pairs,
        mirrored=flip,
        batch_size=batch_size,
        device=device,
        progress=progress,
        images=images,
    )
    return plain if mirrors is None else plain + mirrors  # (I, D)


def pairs_report(
    embeddings: Tensor,
    pairs: PairSet,
    *,
    flip: bool,
    fars: Sequence[float] | float = DEFAULT_FARS,
) -> dict[str, Any]:
    """The verification report of ``pairs`` from the embeddings of its images.

    Args:
        embeddings: ``(I, D)`` embeddings of ``pairs.images``.
        pairs: the pair set.
        flip: whether ``embeddings`` used flip test-time augmentation (recorded).
        fars: false-accept rates for TAR@FAR.

    Returns:
        :func:`~marginkit.metrics.verification_report`'s dict, plus ``flip`` and
        ``pairs_source``.
    """
    report = verification_report(
        embeddings[pairs.first], embeddings[pairs.second], pairs.same, pairs.fold, fars=fars
    )
    if pairs.fold_source is not None and pairs.fold is not None:
        report["ten_fold"]["fold_source"] = pairs.fold_source
    report["flip"] = flip
    report["pairs_source"] = pairs.source
    return report


def evaluate_pairs(
    backbone: nn.Module,
    pairs: PairSet,
    flip: bool = True,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    *,
    fars: Sequence[float] | float = DEFAULT_FARS,
    progress: bool = False,
) -> dict[str, Any]:
    """Verification figures of a backbone on a pair set, as ``marginkit eval`` reports them.

    Each image is embedded (with ``flip``: the sum of the embeddings of the image and its
    horizontal mirror), pairs are scored by the cosine of their embeddings, and the report
    gives the k-fold accuracy (``ten_fold``: the pairs' folds, else ten assigned ones), AUC,
    EER and TAR@FAR (:func:`~marginkit.metrics.verification_report`).

    Args:
        backbone: maps ``(B, C, H, W)`` to ``(B, D)``; its mode is restored afterwards.
        pairs: the pair set (:func:`marginkit.pairs.load_pair_set` reads one from a file).
        flip: flip test-time augmentation.
        batch_size: images per forward pass.
        device: where the inputs go; None: where the backbone's weights are.
        fars: false-accept rates for TAR@FAR.
        progress: show the embedding's progress on stderr.

    Returns:
        The report (fractions), with ``flip`` and ``pairs_source``.
    """
    embeddings = embed_pair_images(
        backbone, pairs, flip, batch_size, device, progress=progress
    )  # (I, D)
    return pairs_report(embeddings, pairs, flip=flip, fars=fars)


def evaluate_both(
    backbone: nn.Module,
    pairs: PairSet,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    *,
    fars: Sequence[float] | float = DEFAULT_FARS,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_pairs` with and without flip, from one pass over the images.

    Returns:
        ``{"flip": report, "no_flip": report}``.
    """
    plain, mirrors = _embed_views(
        backbone, pairs, mirrored=True, batch_size=batch_size, device=device, progress=progress
    )
    assert mirrors is not None  # asked for
    return {
        "flip": pairs_report(plain + mirrors, pairs, flip=True, fars=fars),
        "no_flip": pairs_report(plain, pairs, flip=False, fars=fars),
    }
