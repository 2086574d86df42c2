"""The IJB figures from image embeddings: templates pooled, then 1:1 and 1:N measured.

- **1:1 verification** (the template pairs of ``*_template_pair_label.txt``): each pair is
  scored by the cosine of its two template embeddings; the ROC over all pairs gives the AUC
  and the true accept rate (TAR) at each false accept rate (FAR) of
  :data:`VERIFICATION_FARS`: the highest TAR over thresholds whose FAR does not exceed it
  (:func:`marginkit.metrics.roc.operating_point`). A FAR below ``1 / (different-subject
  pairs)`` cannot be measured (one false accept already exceeds it): it is reported
  unavailable, with the reason, never extrapolated. (InsightFace's table takes the ROC point
  whose FAR is *nearest* the column's, which may exceed it; here the FAR never does.)
- **1:N identification** (open-set search, Grother & Ngan, NIST FRVT; the mixed probes against
  each gallery in turn): probes whose subject is in the gallery are mated, the others (the
  other gallery's subjects) non-mated. Rank-k (k in :data:`RANKS`) is the fraction of mated
  probes whose subject is among the k best-scoring gallery subjects
  (:func:`marginkit.metrics.rank_accuracies`; a tie counts against the probe). TPIR at FPIR
  f is the fraction of mated probes found at rank 1 with a score over the threshold at which
  at most a fraction f of the non-mated probes' best scores reach it
  (:func:`marginkit.metrics.dir_at_far`; the rank-1 of this count takes the first of tied
  candidates, so the two can differ only where scores tie exactly). Each figure is given
  per gallery and as the mean of the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from marginkit.data.errors import DataError
from marginkit.ijb.pooling import pool_templates
from marginkit.ijb.protocol import Enrolment, Protocol
from marginkit.metrics import dir_at_far, rank_accuracies, roc_curve
from marginkit.metrics.roc import RocCurve, operating_point

__all__ = [
    "IDENTIFICATION_FPIRS",
    "RANKS",
    "VERIFICATION_FARS",
    "identification_figures",
    "ijb_report",
    "pair_scores",
    "verification_figures",
]

#: The FARs of the 1:1 table (the columns of InsightFace's ``ijb_11.py``).
VERIFICATION_FARS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
#: The FPIRs of the 1:N table.
IDENTIFICATION_FPIRS: tuple[float, ...] = (1e-2, 1e-1)
#: The ranks of the 1:N table.
RANKS: tuple[int, ...] = (1, 5, 10)
#: The FARs at which the ROC is written: ten a decade, 1e-6 to 10^-0.1.
ROC_FARS: tuple[float, ...] = tuple(float(10.0 ** (k / 10)) for k in range(-60, 0))
#: Pairs scored at a time (memory ~ 2 x chunk x D floats).
_PAIR_CHUNK = 65536


def _rows(template_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The row of each of ``wanted`` in the ascending ``template_ids`` (all present)."""
    rows = np.searchsorted(template_ids, wanted)
    assert np.array_equal(template_ids[np.minimum(rows, len(template_ids) - 1)], wanted)
    return rows


def pair_scores(template_ids: np.ndarray, features: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The cosine of each pair's templates.

    Args:
        template_ids: ``(T,)`` ascending ids.
        features: ``(T, D)`` their unit embeddings.
        pairs: ``(P, >= 2)`` the two templates of each pair in its first columns.

    Returns:
        ``(P,)`` float64.
    """
    first = _rows(template_ids, pairs[:, 0])
    second = _rows(template_ids, pairs[:, 1])
    scores = np.empty(pairs.shape[0], dtype=np.float64)
    for start in range(0, pairs.shape[0], _PAIR_CHUNK):
        part = slice(start, start + _PAIR_CHUNK)
        scores[part] = np.einsum("pd,pd->p", features[first[part]], features[second[part]])
    return scores


def _renamed(point: dict[str, Any], rate: str, far: str) -> dict[str, Any]:
    """An :class:`~marginkit.metrics.OperatingPoint` dict with its rate and FAR named (the
    reason's "a FAR of" too: "an FPIR of")."""
    reason = point["reason"]
    if reason is not None and far != "far":
        reason = reason.replace("a FAR of", f"an {far.upper()} of")
    return {
        far: point["far"],
        rate: point["rate"],
        "threshold": point["threshold"],
        f"achieved_{far}": point["achieved_far"],
        "available": point["available"],
        "reason": reason,
    }


def _roc_points(curve: RocCurve, negatives: str) -> dict[str, list[float]]:
    """The ROC at :data:`ROC_FARS`, those that the negatives can measure."""
    points = [operating_point(curve, far, negatives) for far in ROC_FARS]
    kept = [point for point in points if point.available]
    return {
        "far": [point.far for point in kept],
        "tar": [float(point.rate) for point in kept if point.rate is not None],
    }


def verification_figures(
    template_ids: np.ndarray,
    features: np.ndarray,
    pairs: np.ndarray,
    fars: tuple[float, ...] = VERIFICATION_FARS,
) -> dict[str, Any]:
    """The 1:1 figures (see the module).

    Args:
        template_ids: ``(T,)`` ascending ids.
        features: ``(T, D)`` their unit embeddings.
        pairs: ``(P, 3)`` template, template, label (1: same subject), both labels present.
        fars: the FARs of the table.

    Returns:
        ``{"num_pairs", "num_same", "num_different", "auc", "tar_at_far": [{"far", "tar",
        "threshold", "achieved_far", "available", "reason"}, ...], "roc": {"far", "tar"}}``.
    """
    scores = pair_scores(template_ids, features, pairs)
    curve = roc_curve(scores, pairs[:, 2] == 1)
    negatives = "different-subject pairs"
    return {
        "num_pairs": int(pairs.shape[0]),
        "num_same": curve.num_positive,
        "num_different": curve.num_negative,
        "auc": curve.auc(),
        "tar_at_far": [
            _renamed(operating_point(curve, far, negatives).to_dict(), "tar", "far") for far in fars
        ],
        "roc": _roc_points(curve, negatives),
    }


def _gallery_figures(
    template_ids: np.ndarray,
    features: np.ndarray,
    gallery: Enrolment,
    probes: Enrolment,
    ranks: tuple[int, ...],
    fpirs: tuple[float, ...],
) -> dict[str, Any]:
    """The 1:N figures of the probes against one gallery."""
    mated = np.isin(probes.subjects, gallery.subjects)
    if not bool(mated.any()):
        raise DataError(
            f"{gallery.file}: no probe of {probes.file} has a subject of this gallery; "
            "expected the mixed probes of both galleries"
        )
    enrolled = features[_rows(template_ids, gallery.templates)]  # (G, D)
    searched = features[_rows(template_ids, probes.templates)]  # (M, D)
    found = rank_accuracies(enrolled, gallery.subjects, searched, probes.subjects, ranks)
    points = dir_at_far(enrolled, gallery.subjects, searched, probes.subjects, fars=fpirs)
    return {
        "file": str(gallery.file),
        "num_gallery_templates": int(gallery.templates.shape[0]),
        "num_mated_probes": int(mated.sum()),
        "num_non_mated_probes": int((~mated).sum()),
        "rank": {str(k): found[k] for k in ranks},
        "tpir_at_fpir": [_renamed(point, "tpir", "fpir") for point in points],
    }


def _mean(values: list[float | None]) -> float | None:
    """The mean, or None when any value is unavailable."""
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if len(present) == len(values) else None


def identification_figures(
    template_ids: np.ndarray,
    features: np.ndarray,
    galleries: dict[str, Enrolment],
    probes: Enrolment,
    ranks: tuple[int, ...] = RANKS,
    fpirs: tuple[float, ...] = IDENTIFICATION_FPIRS,
) -> dict[str, Any]:
    """The 1:N figures of the probes against each gallery, and their means.

    Returns:
        ``{"probes": file, "num_probe_templates", "galleries": {name: {"file",
        "num_gallery_templates", "num_mated_probes", "num_non_mated_probes", "rank": {"1",
        "5", "10"}, "tpir_at_fpir": [{"fpir", "tpir", ...}]}}, "mean": {"rank",
        "tpir_at_fpir": [{"fpir", "tpir"}]}}``; a mean is None where a gallery's figure
        is unavailable.
    """
    per_gallery = {
        name: _gallery_figures(template_ids, features, gallery, probes, ranks, fpirs)
        for name, gallery in galleries.items()
    }
    figures = list(per_gallery.values())
    return {
        "probes": str(probes.file),
        "num_probe_templates": int(probes.templates.shape[0]),
        "galleries": per_gallery,
        "mean": {
            "rank": {str(k): _mean([g["rank"][str(k)] for g in figures]) for k in ranks},
            "tpir_at_fpir": [
                {"fpir": fpir, "tpir": _mean([g["tpir_at_fpir"][i]["tpir"] for g in figures])}
                for i, fpir in enumerate(fpirs)
            ],
        },
    }


def ijb_report(
    protocol: Protocol, embeddings: np.ndarray, *, score_weighting: bool = False
) -> dict[str, Any]:
    """Every figure of one set from its images' embeddings.

    Args:
        protocol: the set's meta files (:func:`~marginkit.ijb.protocol.load_protocol`).
        embeddings: ``(N, D)`` the embedding of each image of ``protocol.names``.
        score_weighting: weight each image by its detector score when pooling
            (:func:`~marginkit.ijb.pooling.pool_templates`).

    Returns:
        ``{"set", "num_images", "num_media", "num_templates", "score_weighting",
        "verification", "identification"}``; ``identification`` is None when the set's
        folder has no 1:N file.
    """
    scores = protocol.scores if score_weighting else None
    template_ids, features = pool_templates(embeddings, protocol.templates, protocol.medias, scores)
    media = np.unique(np.stack([protocol.templates, protocol.medias], axis=1), axis=0)
    identification = None
    if protocol.probes is not None:
        identification = identification_figures(
            template_ids, features, protocol.galleries, protocol.probes
        )
    return {
        "set": protocol.name,
        "num_images": len(protocol.names),
        "num_media": int(media.shape[0]),
        "num_templates": int(template_ids.shape[0]),
        "score_weighting": score_weighting,
        "verification": verification_figures(template_ids, features, protocol.pairs),
        "identification": identification,
    }
