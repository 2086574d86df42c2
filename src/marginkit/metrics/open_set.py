"""Open-set recognition and open-set identification.

Known-vs-unknown detection and open-set classification (train on known classes, test on
known and unknown ones) use the maximum cosine score of each test embedding against
reference directions of the known classes (class weights ``head.class_weight()`` or class
centres). Convention of the data loader: with ``num_known`` known classes, labels
``>= num_known`` are unknown.

- AUROC: area under the ROC of "known" (positive) vs "unknown" by the maximum score.
- OSCR, the open-set classification rate (Dhamija, Günther & Boult, NeurIPS 2018,
  "Reducing Network Agnostophobia"): for a threshold ``t``, the correct classification
  rate ``CCR(t)`` is the fraction of known samples that are classified correctly (argmax at
  the true class) with maximum score ``>= t``, and ``FPR(t)`` the fraction of unknown
  samples with maximum score ``>= t``. OSCR is the trapezoidal area under CCR(FPR), one
  point per distinct score plus (0, 0); it ends at (1, closed-set accuracy on the knowns).
- Identification on a gallery/probe split (Grother & Ngan, NIST FRVT, "Face Recognition
  Vendor Test: Identification"): each probe is matched to its most similar gallery
  embedding (cosine). Mated probes are those whose identity is in the gallery. Rank-1
  accuracy is the fraction of mated probes whose best match has their identity. DIR at FAR
  (detection and identification rate) is the fraction of mated probes identified at rank 1
  with a best score ``>= t``, where ``t`` is the lowest threshold at which at most a
  fraction FAR of the non-mated probes reach ``t`` (same rules as TAR@FAR in
  :mod:`marginkit.metrics.roc`, including "unavailable" when there are fewer than
  ``ceil(1 / FAR)`` non-mated probes).
- Rank-k accuracy (the cumulative match characteristic at rank k, Grother & Ngan, NIST FRVT):
  the fraction of mated probes whose identity is among the k gallery identities that score
  highest against them (an identity scores the best cosine of its gallery embeddings). A
  tie with another identity counts against the probe: its identity's rank is one plus the
  number of other identities scoring at least as high, so a search listing tied candidates
  in any order is never credited with the better place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from marginkit._validation import (
    ArrayLike,
    as_labels,
    as_matrix,
    check_count,
    check_fars,
    check_same_length,
    labelled_sets,
)
from marginkit.metrics.roc import (
    DEFAULT_FARS,
    OperatingPoint,
    RocCurve,
    operating_point,
    trapezoid_area,
)
from marginkit.metrics.sphere import normalize_rows

__all__ = [
    "cosine_scores_to",
    "dir_at_far",
    "identification_report",
    "known_unknown_auroc",
    "open_set_report",
    "oscr",
    "rank1_accuracy",
    "rank_accuracies",
    "split_gallery_probe",
]


def cosine_scores_to(embeddings: ArrayLike, references: ArrayLike) -> Tensor:
    """Cosine of every embedding with every reference direction, (N, D) x (C, D) -> (N, C).

    Args:
        embeddings: (N, D) embeddings.
        references: (C, D) class weights (``head.class_weight()``) or class centres.
    """
    embeddings = as_matrix("embeddings", embeddings)
    references = as_matrix("references", references)
    if references.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"references must have {embeddings.shape[1]} columns (the embedding width); "
            f"got {references.shape[1]}"
        )
    unit = normalize_rows(embeddings, "embeddings")  # (N, D)
    return (unit @ normalize_rows(references, "references").T).clamp(-1, 1)


def _open_set_inputs(
    scores: ArrayLike, labels: ArrayLike, num_known: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated maximum scores (N,), known mask (N,), correct mask (N,)."""
    scores_t = as_matrix("scores", scores)
    labels_t = as_labels("labels", labels)
    check_same_length(scores=scores_t, labels=labels_t)
    classes = scores_t.shape[1]
    if num_known is None:
        num_known = classes
    if check_count("num_known", num_known, 1) != classes:
        raise ValueError(
            f"num_known must equal the columns of scores (one per known class); "
            f"got num_known={num_known} and {classes} columns"
        )
    known = labels_t < num_known
    if not bool(known.any()) or bool(known.all()):
        raise ValueError(
            f"labels must contain both known (< {num_known}) and unknown (>= {num_known}) "
            f"samples; got {int(known.sum())} known of {labels_t.shape[0]}"
        )
    best, predicted = scores_t.max(dim=1)
    correct = known & (predicted == labels_t)
    return best.numpy(), known.numpy(), correct.numpy()


def known_unknown_auroc(
    scores: ArrayLike, labels: ArrayLike, num_known: int | None = None
) -> float:
    """AUROC of known (positive) vs unknown samples by their maximum score.

    Args:
        scores: (N, C) scores against the C known classes (e.g. :func:`cosine_scores_to`).
        labels: (N,) labels; ``>= num_known`` means unknown.
        num_known: the number of known classes; must equal C (default C).
    """
    best, known, _ = _open_set_inputs(scores, labels, num_known)
    return RocCurve.from_checked(best, known).auc()


def oscr(scores: ArrayLike, labels: ArrayLike, num_known: int | None = None) -> dict[str, Any]:
    """Open-set classification rate (Dhamija et al., 2018); see the module docstring.

    Args:
        scores: (N, C) scores against the C known classes.
        labels: (N,) labels; ``>= num_known`` means unknown.
        num_known: the number of known classes; must equal C (default C).

    Returns:
        ``{"oscr", "closed_set_accuracy", "curve": {"fpr", "ccr", "thresholds"}}``; the
        curve's first threshold (nothing accepted) is None.
    """
    best, known, correct = _open_set_inputs(scores, labels, num_known)
    order = np.argsort(-best, kind="stable")
    ordered = best[order]
    ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
    ccr = np.r_[0.0, np.cumsum(correct[order])[ends] / known.sum()]
    fpr = np.r_[0.0, np.cumsum(~known[order])[ends] / (~known).sum()]
    return {
        "oscr": trapezoid_area(fpr, ccr),
        "closed_set_accuracy": float(correct.sum() / known.sum()),
        "curve": {
            "fpr": fpr.tolist(),
            "ccr": ccr.tolist(),
            "thresholds": [None, *ordered[ends].tolist()],
        },
    }


def open_set_report(
    embeddings: ArrayLike,
    labels: ArrayLike,
    references: ArrayLike,
    num_known: int | None = None,
) -> dict[str, Any]:
    """AUROC and OSCR of test embeddings by maximum cosine to the known classes.

    Args:
        embeddings: (N, D) test embeddings of known and unknown classes.
        labels: (N,) labels; ``>= num_known`` means unknown.
        references: (C, D) one direction per known class (class weights or centres).
        num_known: the number of known classes; must equal C (default C).

    Returns:
        ``{"num_known_samples", "num_unknown_samples", "auroc", "oscr",
        "closed_set_accuracy"}`` (JSON-serialisable).
    """
    scores = cosine_scores_to(embeddings, references)
    result = oscr(scores, labels, num_known)
    known = as_labels("labels", labels) < scores.shape[1]
    return {
        "num_known_samples": int(known.sum()),
        "num_unknown_samples": int((~known).sum()),
        "auroc": known_unknown_auroc(scores, labels, num_known),
        "oscr": result["oscr"],
        "closed_set_accuracy": result["closed_set_accuracy"],
    }


# -------------------------------------------------------------------- identification
def split_gallery_probe(
    labels: ArrayLike, num_known: int, gallery_per_class: int = 1, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """A seeded gallery/probe split of a labelled set for open-set identification.

    For each known identity (label ``< num_known``), ``gallery_per_class`` randomly chosen
    samples go to the gallery and the rest to the probes; every sample of an unknown
    identity is a (non-mated) probe. A known identity with no more samples than
    ``gallery_per_class`` contributes only gallery samples.

    Returns:
        ``(gallery_index, probe_index)``: int64 index tensors, ascending.
    """
    labels_t = as_labels("labels", labels)
    check_count("num_known", num_known, 1)
    check_count("gallery_per_class", gallery_per_class, 1)
    check_count("seed", seed, 0)
    label_np = labels_t.numpy()
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(label_np.shape[0])
    # rank of each sample within its class in the shuffled order
    by_label = shuffled[np.argsort(label_np[shuffled], kind="stable")]
    starts = np.r_[0, np.flatnonzero(np.diff(label_np[by_label])) + 1]
    rank = np.arange(by_label.shape[0]) - np.repeat(starts, np.diff(np.r_[starts, by_label.size]))
    in_gallery = np.zeros(label_np.shape[0], dtype=bool)
    in_gallery[by_label] = (rank < gallery_per_class) & (label_np[by_label] < num_known)
    return (
        torch.from_numpy(np.flatnonzero(in_gallery)),
        torch.from_numpy(np.flatnonzero(~in_gallery)),
    )


def _identification_inputs(
    gallery_embeddings: ArrayLike,
    gallery_labels: ArrayLike,
    probe_embeddings: ArrayLike,
    probe_labels: ArrayLike,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best gallery score (M,), mated mask (M,) and rank-1 hit mask (M,) of the probes."""
    gallery, gallery_labels_t, probes, probe_labels_t = labelled_sets(
        "gallery", gallery_embeddings, gallery_labels, "probe", probe_embeddings, probe_labels
    )
    mated = torch.isin(probe_labels_t, gallery_labels_t)
    if not bool(mated.any()):
        raise ValueError("probe_labels has no identity that is in gallery_labels (no mated probe)")
    unit_probes = normalize_rows(probes, "probe_embeddings")  # (M, D)
    cosine = unit_probes @ normalize_rows(gallery, "gallery_embeddings").T  # (M, G)
    best, nearest = cosine.max(dim=1)
    hit = mated & (gallery_labels_t[nearest] == probe_labels_t)
    return best.numpy(), mated.numpy(), hit.numpy()


def rank1_accuracy(
    gallery_embeddings: ArrayLike,
    gallery_labels: ArrayLike,
    probe_embeddings: ArrayLike,
    probe_labels: ArrayLike,
) -> float:
    """Fraction of mated probes whose most similar gallery embedding has their identity.

    Args:
        gallery_embeddings: (G, D) enrolled embeddings.
        gallery_labels: (G,) their identities.
        probe_embeddings: (M, D) probe embeddings.
        probe_labels: (M,) their identities; those absent from the gallery are ignored.
    """
    _, mated, hit = _identification_inputs(
        gallery_embeddings, gallery_labels, probe_embeddings, probe_labels
    )
    return float(hit.sum() / mated.sum())


def dir_at_far(
    gallery_embeddings: ArrayLike,
    gallery_labels: ArrayLike,
    probe_embeddings: ArrayLike,
    probe_labels: ArrayLike,
    fars: Sequence[float] | float = DEFAULT_FARS,
) -> list[dict[str, Any]]:
    """Detection and identification rate at each FAR on the non-mated probes.

    Args:
        gallery_embeddings: (G, D) enrolled embeddings.
        gallery_labels: (G,) their identities.
        probe_embeddings: (M, D) probe embeddings, mated and non-mated.
        probe_labels: (M,) their identities.
        fars: FARs strictly inside (0, 1).

    Returns:
        One :meth:`OperatingPoint.to_dict` per FAR (``rate`` is the DIR); unavailable,
        with the reason, when the non-mated probes are fewer than ``ceil(1 / FAR)``.
    """
    checked_fars = check_fars(fars)
    best, mated, hit = _identification_inputs(
        gallery_embeddings, gallery_labels, probe_embeddings, probe_labels
    )
    return _dir_points(best, mated, hit, checked_fars)


def _dir_points(
    best: np.ndarray, mated: np.ndarray, hit: np.ndarray, fars: tuple[float, ...]
) -> list[dict[str, Any]]:
    if not bool((~mated).any()):
        reason = "there are no non-mated probes (every probe identity is in the gallery)"
        return [OperatingPoint(far, None, None, None, reason=reason).to_dict() for far in fars]
    # a mated probe counts only when identified at rank 1: a missed one never reaches t
    scores = np.where(mated & ~hit, -np.inf, best)
    curve = RocCurve.from_checked(scores, mated)
    return [operating_point(curve, far, "non-mated probes").to_dict() for far in fars]


def identification_report(
    gallery_embeddings: ArrayLike,
    gallery_labels: ArrayLike,
    probe_embeddings: ArrayLike,
    probe_labels: ArrayLike,
    fars: Sequence[float] | float = DEFAULT_FARS,
) -> dict[str, Any]:
    """Rank-1 accuracy and DIR at FAR on a gallery/probe split, JSON-serialisable.

    Returns:
        ``{"num_gallery", "num_mated_probes", "num_non_mated_probes", "rank1",
        "dir_at_far": [...]}``.
    """
    checked_fars = check_fars(fars)
    best, mated, hit = _identification_inputs(
        gallery_embeddings, gallery_labels, probe_embeddings, probe_labels
    )
    return {
        "num_gallery": len(gallery_labels),
        "num_mated_probes": int(mated.sum()),
        "num_non_mated_probes": int((~mated).sum()),
        "rank1": float(hit.sum() / mated.sum()),
        "dir_at_far": _dir_points(best, mated, hit, checked_fars),
    }


def rank_accuracies(
    gallery_embeddings: ArrayLike,
    gallery_labels: ArrayLike,
    probe_embeddings: ArrayLike,
    probe_labels: ArrayLike,
    ranks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
) -> dict[int, float]:
    """Rank-k accuracy of the mated probes at each k (see the module docstring).

    Args:
        gallery_embeddings: (G, D) enrolled embeddings (several per identity allowed).
        gallery_labels: (G,) their identities.
        probe_embeddings: (M, D) probe embeddings.
        probe_labels: (M,) their identities; those absent from the gallery are ignored.
        ranks: the k's, whole numbers >= 1.
        chunk_size: probes scored at once (memory ~ ``chunk_size * G`` floats).

    Returns:
        ``{k: fraction of mated probes whose identity ranks <= k}``, in the order of
        ``ranks``.

    Raises:
        ValueError: no probe identity is in the gallery, or a bad rank or chunk size.
    """
    gallery, gallery_labels_t, probes, probe_labels_t = labelled_sets(
        "gallery", gallery_embeddings, gallery_labels, "probe", probe_embeddings, probe_labels
    )
    checked = [check_count("ranks", rank, 1) for rank in ranks]
    check_count("chunk_size", chunk_size, 1)
    identities, column = torch.unique(gallery_labels_t, return_inverse=True)  # (C,), (G,)
    mated = torch.isin(probe_labels_t, identities)
    if not bool(mated.any()):
        raise ValueError("probe_labels has no identity that is in gallery_labels (no mated probe)")
    unit_gallery = normalize_rows(gallery, "gallery_embeddings")  # (G, D)
    unit_probes = normalize_rows(probes[mated], "probe_embeddings")  # (M', D)
    own = torch.searchsorted(identities, probe_labels_t[mated])  # (M',) each probe's column
    place = torch.empty(own.shape[0], dtype=torch.long)
    for start in range(0, own.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        cosine = unit_probes[rows] @ unit_gallery.T  # (m, G)
        best = torch.full((cosine.shape[0], identities.shape[0]), -torch.inf, dtype=cosine.dtype)
        best.scatter_reduce_(1, column.expand_as(cosine), cosine, reduce="amax")  # (m, C)
        mate = best.gather(1, own[rows].unsqueeze(1))  # (m, 1)
        place[rows] = (best >= mate).sum(dim=1)  # the mate's own column counts: rank 1 up
    return {rank: float((place <= rank).double().mean()) for rank in checked}
