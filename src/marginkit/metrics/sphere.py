"""Directions on the unit sphere: row normalisation, numerically stable angles, class centres.

Angles are computed as ``theta = 2 atan2(||u - v||, ||u + v||)`` for unit vectors ``u`` and
``v`` (Kahan's formula), which stays accurate near 0 and pi where ``acos(u . v)`` loses half
its digits.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from marginkit._validation import ArrayLike, as_labels, as_matrix, check_same_length

__all__ = [
    "angles_between",
    "class_centres",
    "normalize_rows",
    "pairwise_angles",
    "unit_class_centres",
]

#: A matrix of rows: a tensor or a numpy array (:func:`normalize_rows` returns the same kind).
Rows = TypeVar("Rows", Tensor, np.ndarray)


def normalize_rows(matrix: Rows, name: str = "matrix", *, keep_zero: bool = False) -> Rows:
    """Rows scaled to unit length, (N, D) -> (N, D), of the type given (tensor or array).

    Args:
        matrix: (N, D) real rows, a tensor or a numpy array.
        name: what the rows are, for the error message.
        keep_zero: leave zero rows zero instead of refusing them (pictures, which must draw
            whatever a run produced).

    Raises:
        ValueError: naming ``name`` and the first row that is zero (it has no direction),
            unless ``keep_zero``.
    """
    is_array = isinstance(matrix, np.ndarray)
    rows = torch.from_numpy(np.ascontiguousarray(matrix)) if is_array else matrix  # (N, D)
    assert isinstance(rows, Tensor)  # for mypy, which does not narrow through is_array
    norms = rows.norm(dim=1, keepdim=True)  # (N, 1)
    if keep_zero:
        norms = torch.where(norms == 0, torch.ones_like(norms), norms)
    elif bool((norms == 0).any()):
        row = int(torch.nonzero(norms.squeeze(1) == 0)[0])
        raise ValueError(
            f"{name} row {row} has zero norm: the zero vector has no direction on the sphere"
        )
    unit = rows / norms  # (N, D)
    return unit.numpy() if is_array else unit


def angles_between(first: Tensor, second: Tensor) -> Tensor:
    """Angle in radians between matching rows of two unit-row matrices, (N, D) x (N, D) -> (N,)."""
    return 2.0 * torch.atan2((first - second).norm(dim=1), (first + second).norm(dim=1))


def pairwise_angles(first: Tensor, second: Tensor) -> Tensor:
    """Angles in radians between every row of ``first`` and every row of ``second``.

    Both are unit-row matrices, (M, D) x (N, D) -> (M, N). Uses
    ``||u -+ v||^2 = 2 -+ 2 u . v`` so only an (M, N) matrix is formed; through the dot
    product the absolute accuracy is about ``sqrt(machine epsilon)`` (1.5e-8 rad in
    float64), unlike :func:`angles_between`, which is exact to rounding.
    """
    dot = (first @ second.T).clamp(-1.0, 1.0)  # (M, N)
    return 2.0 * torch.atan2((2.0 - 2.0 * dot).clamp_min(0).sqrt(), (2.0 + 2.0 * dot).sqrt())


def class_centres(embeddings: ArrayLike, labels: ArrayLike) -> tuple[Tensor, Tensor]:
    """Class centres on the sphere: the normalised mean of each class's normalised embeddings.

    Args:
        embeddings: (N, D) embeddings (any non-zero norm).
        labels: (N,) integer class labels.

    Returns:
        classes: (K,) the distinct labels, ascending.
        centres: (K, D) float64 unit centres, row ``k`` for ``classes[k]``.

    Raises:
        ValueError: if lengths differ, a row is zero, or a class's embeddings cancel out
            (their mean is the zero vector, so the class has no centre direction).
    """
    embeddings = as_matrix("embeddings", embeddings)
    labels = as_labels("labels", labels)
    check_same_length(embeddings=embeddings, labels=labels)
    return unit_class_centres(normalize_rows(embeddings, "embeddings"), labels)


def unit_class_centres(unit: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`class_centres` of checked unit rows (N, D) and labels (N,): ``(classes (K,),
    centres (K, D))``."""
    classes, index = torch.unique(labels, sorted=True, return_inverse=True)  # (K,), (N,)
    sums = torch.zeros(classes.shape[0], unit.shape[1], dtype=unit.dtype)  # (K, D)
    sums.index_add_(0, index, unit)
    norms = sums.norm(dim=1)  # (K,)
    scale = unit.abs().max() * torch.finfo(unit.dtype).eps * torch.bincount(index)
    if bool((norms <= scale).any()):
        bad = int(classes[norms <= scale][0])
        raise ValueError(f"the embeddings of class {bad} cancel out; their mean has no direction")
    return classes, sums / norms.unsqueeze(1)
