"""The measurements of a trained run, as JSON-serialisable report sections.

Pure functions of embeddings, labels and the head (no data loading, no pictures): the
closed-set, geometry, retrieval and open-set sections of the measured split, and pair
verification on the data set's own pairs or on a seeded sample of the measured split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from marginkit import metrics
from marginkit.losses import MarginHead

if TYPE_CHECKING:
    from marginkit.data import VerificationPairs

__all__ = [
    "MAX_RETRIEVAL",
    "PAIRS_PER_KIND",
    "MeasuredSplit",
    "pairs_file_verification",
    "sampled_verification",
    "split_sections",
    "unseen_identification",
]

#: Positive (and negative) pairs sampled from the measured split when the data set has none.
PAIRS_PER_KIND = 3000
#: Retrieval uses a seeded sample of at most this many known samples (its cost grows as N^2).
MAX_RETRIEVAL = 20_000


@dataclass(frozen=True)
class MeasuredSplit:
    """The embeddings of the split a run is measured on.

    Attributes:
        name: ``"train"``, ``"validation"`` or ``"test"``.
        embeddings: (M, D) embeddings.
        labels: (M,) labels; ``>= num_known`` marks a class unseen in training.
        num_known: the number of training (known) classes.
    """

    name: str
    embeddings: Tensor
    labels: Tensor
    num_known: int

    @property
    def known(self) -> Tensor:
        """(M,) bool, True for the samples of known classes."""
        return self.labels < self.num_known

    def known_part(self) -> tuple[Tensor, Tensor]:
        """``(embeddings (K, D), labels (K,))`` of the samples of known classes."""
        known = self.known
        return self.embeddings[known], self.labels[known]


def split_sections(
    head: MarginHead, train_embeddings: Tensor, train_labels: Tensor, measured: MeasuredSplit
) -> dict[str, Any]:
    """``closed_set``, and where they apply ``geometry`` and ``retrieval`` (two known classes
    or more) and ``open_set`` (samples of unknown classes).

    Args:
        head: the trained head; its class weights (C, D) are the reference directions.
        train_embeddings: (N, D) training embeddings, for the class centres.
        train_labels: (N,) their (training) labels.
        measured: the measured split.
    """
    weight = head.class_weight().float()  # (C, D)
    known_embeddings, known_labels = measured.known_part()
    with torch.no_grad():
        logits = head.logits(known_embeddings)  # (K, C)
    sections: dict[str, Any] = {
        "closed_set": {
            "samples": int(known_labels.numel()),
            "top1_accuracy": metrics.top1_accuracy(logits, known_labels),
            "nearest_centre_accuracy": metrics.nearest_centre_accuracy(
                train_embeddings, train_labels, known_embeddings, known_labels
            ),
        }
    }
    if torch.unique(known_labels).numel() >= 2:
        sections["geometry"] = metrics.angular_geometry(known_embeddings, known_labels, weight)
        sample = _subsample(len(known_labels), MAX_RETRIEVAL)
        sections["retrieval"] = {
            **metrics.retrieval_metrics(known_embeddings[sample], known_labels[sample]),
            "sampled_from": len(known_labels),
        }
    if not bool(measured.known.all()):
        sections["open_set"] = _open_set(measured, weight)
    return sections


def _open_set(measured: MeasuredSplit, weight: Tensor) -> dict[str, Any]:
    """The open-set protocols, each under its own name.

    - ``auroc``, ``oscr``, ``closed_set_accuracy``: seen-vs-unseen *detection* by the largest
      cosine to a trained class's weight (C, D).
    - ``unseen_identification``: identification *among the unseen identities*, as in
      open-set face recognition: one image of each unseen class enrolled as the gallery,
      their other images as probes; rank-1 averaged over 10 seeded enrolments
      (:func:`unseen_identification`), with the chance level ``1 / classes``.
    - ``watch_list``: the watch-list protocol: one enrolment image of each *seen* identity as
      the gallery; probes are the seen identities' other images (mated) and every unseen
      image (non-mated, to be rejected): rank-1 of the mated probes and DIR at FAR.
    """
    embeddings, labels = measured.embeddings, measured.labels
    gallery, probe = metrics.split_gallery_probe(labels, measured.num_known, seed=0)
    return {
        **metrics.open_set_report(embeddings, labels, weight, measured.num_known),
        "unseen_identification": unseen_identification(
            embeddings[~measured.known], labels[~measured.known]
        ),
        "watch_list": metrics.identification_report(
            embeddings[gallery], labels[gallery], embeddings[probe], labels[probe]
        ),
    }


def unseen_identification(
    embeddings: Tensor, labels: Tensor, draws: int = 10, enrolment: int = 1
) -> dict[str, Any]:
    """Rank-1 identification among identities unseen in training.

    For each of ``draws`` seeded draws, ``enrolment`` images of every unseen identity form
    the gallery and their other images the probes (all mated); rank-1 is the share of probes
    whose most similar gallery image (cosine) has their identity.

    Args:
        embeddings: (U, D) embeddings of the unseen classes' samples.
        labels: (U,) their identities.
        draws: seeded enrolments averaged.
        enrolment: gallery images per identity.

    Returns:
        ``{"rank1", "rank1_per_draw", "classes", "chance", "num_gallery",
        "num_probes", "enrolment"}``; ``rank1`` None when no identity has a probe.
    """
    _, relabelled = torch.unique(labels, return_inverse=True)  # (U,) in 0..K-1
    classes = int(relabelled.max()) + 1 if relabelled.numel() else 0
    rates: list[float] = []
    gallery_size = probe_size = 0
    for seed in range(draws):
        gallery, probe = metrics.split_gallery_probe(
            relabelled, max(classes, 1), gallery_per_class=enrolment, seed=seed
        )
        if classes < 2 or probe.numel() == 0:
            break
        rates.append(
            metrics.rank1_accuracy(
                embeddings[gallery], relabelled[gallery], embeddings[probe], relabelled[probe]
            )
        )
        gallery_size, probe_size = int(gallery.numel()), int(probe.numel())
    return {
        "rank1": sum(rates) / len(rates) if rates else None,
        "rank1_per_draw": rates,
        "classes": classes,
        "chance": 1.0 / classes if classes else None,
        "num_gallery": gallery_size,
        "num_probes": probe_size,
        "enrolment": enrolment,
    }


def pairs_file_verification(image_embeddings: Tensor, pairs: VerificationPairs) -> dict[str, Any]:
    """Verification on the data set's own pairs.

    Args:
        image_embeddings: (I, D) embeddings of ``pairs.images``.
        pairs: the data set's pairs (indices into the images, truth and folds).
    """
    report = metrics.verification_report(
        image_embeddings[pairs.first], image_embeddings[pairs.second], pairs.same, pairs.fold
    )
    report["pairs_source"] = "the data set's pairs file"
    return report


def sampled_verification(measured: MeasuredSplit) -> dict[str, Any] | None:
    """Verification on seeded positive and negative pairs of the measured split's known
    samples (:data:`PAIRS_PER_KIND` of each, or all there are); None below four samples."""
    embeddings, labels = measured.known_part()
    if labels.numel() < 4:
        return None
    pairs = metrics.make_pairs(
        labels,
        num_positive=_available(labels, same=True, wanted=PAIRS_PER_KIND),
        num_negative=_available(labels, same=False, wanted=PAIRS_PER_KIND),
        seed=0,
    )
    report = metrics.verification_report(
        embeddings[pairs.first], embeddings[pairs.second], pairs.same, pairs.fold
    )
    report["pairs_source"] = f"seeded sample of the {measured.name} split"
    return report


def _subsample(count: int, limit: int, seed: int = 0) -> Tensor:
    """Sorted indices of a seeded sample of at most ``limit`` of ``count`` items."""
    if count <= limit:
        return torch.arange(count)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:limit].sort().values


def _available(labels: Tensor, *, same: bool, wanted: int) -> int:
    """How many pairs of one kind to sample: ``wanted``, or all there are."""
    counts = torch.bincount(labels).double()
    total = labels.numel()
    positives = float((counts * (counts - 1) / 2).sum())
    pairs = positives if same else total * (total - 1) / 2 - positives
    return int(min(wanted, pairs))
