"""Angular geometry of an embedding on the unit sphere: compactness and separation.

These are the quantities the margin losses are designed to change: L-Softmax and
SphereFace (Liu et al., ICML 2016 / CVPR 2017) shrink the angle between a feature and its
class, CosFace and ArcFace (Wang et al., CVPR 2018; Deng et al., CVPR 2019) push the
classes apart by a margin on the same sphere.

Definitions (all angles in radians, every embedding normalised to unit length first):

- class centre ``mu_k``: the normalised mean of the normalised embeddings of class ``k``.
- compactness of class ``k``: mean and (population) standard deviation, over its samples,
  of the angle between each embedding and ``mu_k``. Overall: the same over all samples.
- separation: angles between distinct class centres. Per class: the angle to the nearest
  other centre. Overall: the minimum and the mean over all unordered pairs of classes.
- ratio: compactness over separation, ``mean intra-class angle / min inter-centre angle``
  overall, and ``class mean angle / angle to the nearest other centre`` per class.
  Smaller is better; above 0.5 the typical feature is closer (in angle) to the midpoint
  between two centres than to its own centre.
- weight angle (only with class weights, shape (C, D)): the angle between each embedding
  and the weight of its label, mean and standard deviation per class and overall, and
  the angle between each class centre and its class weight.
"""

from __future__ import annotations

from typing import Any

import torch

from marginkit._validation import (
    ArrayLike,
    as_labels,
    as_matrix,
    check_num_classes,
    check_same_length,
)
from marginkit.metrics.sphere import (
    angles_between,
    normalize_rows,
    pairwise_angles,
    unit_class_centres,
)

__all__ = ["angular_geometry"]


def angular_geometry(
    embeddings: ArrayLike, labels: ArrayLike, weights: ArrayLike | None = None
) -> dict[str, Any]:
    """Compactness, separation, their ratio and the angle to the class weights, in one call.

    See the module docstring for the definitions.

    Args:
        embeddings: (N, D) embeddings (non-zero rows).
        labels: (N,) integer labels, at least two distinct classes.
        weights: optional (C, D) class weights (``head.class_weight()``), row ``j`` for label ``j``;
            every label must be below C.

    Returns:
        A JSON-serialisable dict::

            {"num_samples": N, "num_classes": K,
             "overall": {"compactness_mean", "compactness_std", "separation_min",
                         "separation_mean", "ratio",
                         "weight_angle_mean", "weight_angle_std"},   # last two with weights
             "per_class": [{"label", "count", "compactness_mean", "compactness_std",
                            "nearest_centre_angle", "nearest_centre_label", "ratio",
                            "weight_angle_mean", "weight_angle_std",
                            "centre_weight_angle"}, ...]}            # last three with weights

    Raises:
        ValueError: lengths differ, fewer than two classes, a zero row, a label without a
            weight row, or ``weights`` of another width.
    """
    embeddings, labels, unit_weights = _checked_inputs(embeddings, labels, weights)
    unit = normalize_rows(embeddings, "embeddings")  # (N, D)
    classes, centres = unit_class_centres(unit, labels)  # (K,), (K, D)
    index = torch.searchsorted(classes, labels)  # (N,) row of each sample's centre
    counts = torch.bincount(index, minlength=classes.shape[0]).double()  # (K,)
    intra = angles_between(unit, centres[index])  # (N,)
    overall, per_class = _compactness_and_separation(intra, index, counts, classes, centres)
    if unit_weights is not None:
        to_weight = angles_between(unit, unit_weights[labels])  # (N,)
        weight_mean = _group_mean(to_weight, index, counts)  # (K,)
        weight_std = _group_std(to_weight, index, counts, weight_mean)  # (K,)
        centre_weight = angles_between(centres, unit_weights[classes])  # (K,)
        overall["weight_angle_mean"] = float(to_weight.mean())
        overall["weight_angle_std"] = float(to_weight.std(correction=0))
        for k, entry in enumerate(per_class):
            entry["weight_angle_mean"] = float(weight_mean[k])
            entry["weight_angle_std"] = float(weight_std[k])
            entry["centre_weight_angle"] = float(centre_weight[k])
    return {
        "num_samples": int(labels.shape[0]),
        "num_classes": int(classes.shape[0]),
        "overall": overall,
        "per_class": per_class,
    }


def _checked_inputs(
    embeddings: ArrayLike, labels: ArrayLike, weights: ArrayLike | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Checked ``(embeddings (N, D), labels (N,), unit weights (C, D) or None)``."""
    embeddings = as_matrix("embeddings", embeddings)
    labels = as_labels("labels", labels)
    check_same_length(embeddings=embeddings, labels=labels)
    check_num_classes("labels", labels)
    if weights is None:
        return embeddings, labels, None
    weights = as_matrix("weights", weights)
    if weights.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"weights must have {embeddings.shape[1]} columns (the embedding width); "
            f"got {weights.shape[1]}"
        )
    if int(labels.max()) >= weights.shape[0]:
        raise ValueError(
            f"labels must lie in [0, {weights.shape[0]}) (the rows of weights); "
            f"got a maximum of {int(labels.max())}"
        )
    return embeddings, labels, normalize_rows(weights, "weights")


def _compactness_and_separation(
    intra: torch.Tensor,
    index: torch.Tensor,
    counts: torch.Tensor,
    classes: torch.Tensor,
    centres: torch.Tensor,
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    """The ``overall`` and ``per_class`` entries without the weight angles.

    Args:
        intra: (N,) angle of each sample to its class centre.
        index: (N,) row of each sample's class in ``classes``.
        counts: (K,) samples per class.
        classes: (K,) the distinct labels, ascending.
        centres: (K, D) unit class centres.
    """
    class_mean = _group_mean(intra, index, counts)  # (K,)
    class_std = _group_std(intra, index, counts, class_mean)  # (K,)
    between = pairwise_angles(centres, centres)  # (K, K)
    between.fill_diagonal_(float("inf"))
    nearest_angle, nearest = between.min(dim=1)  # (K,), (K,)
    upper = torch.triu_indices(classes.shape[0], classes.shape[0], offset=1)
    pair_angles = between[upper[0], upper[1]]  # (K (K - 1) / 2,)
    overall: dict[str, float | None] = {
        "compactness_mean": float(intra.mean()),
        "compactness_std": float(intra.std(correction=0)),
        "separation_min": float(pair_angles.min()),
        "separation_mean": float(pair_angles.mean()),
        "ratio": _ratio(float(intra.mean()), float(pair_angles.min())),
    }
    per_class: list[dict[str, Any]] = [
        {
            "label": int(classes[k]),
            "count": int(counts[k]),
            "compactness_mean": float(class_mean[k]),
            "compactness_std": float(class_std[k]),
            "nearest_centre_angle": float(nearest_angle[k]),
            "nearest_centre_label": int(classes[nearest[k]]),
            "ratio": _ratio(float(class_mean[k]), float(nearest_angle[k])),
        }
        for k in range(classes.shape[0])
    ]
    return overall, per_class


def _group_mean(values: torch.Tensor, index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (N,) per group ``index`` (N,) with ``counts`` (K,) -> (K,)."""
    return torch.zeros_like(counts).index_add_(0, index, values) / counts


def _group_std(
    values: torch.Tensor, index: torch.Tensor, counts: torch.Tensor, means: torch.Tensor
) -> torch.Tensor:
    """Population standard deviation per group, (N,) -> (K,), two-pass for accuracy."""
    squared = (values - means[index]) ** 2  # (N,)
    return (torch.zeros_like(counts).index_add_(0, index, squared) / counts).sqrt()


def _ratio(compactness: float, separation: float) -> float | None:
    """Compactness over separation; None when two centres coincide (separation 0)."""
    return compactness / separation if separation > 0 else None
