"""Argument checks shared by every sub-package: each error names the argument.

- :func:`check_count`: an ``int`` at least a minimum (``TypeError`` for a non-int, ``bool``
  included; ``ValueError`` below the minimum).
- Arrays: each checker takes the argument's name first, then a ``torch.Tensor``, a
  ``numpy.ndarray`` or a nested sequence, and raises ``TypeError``/``ValueError`` before any
  arithmetic.

  - For :mod:`marginkit.metrics`: :func:`as_matrix`, :func:`as_vector`, :func:`as_labels`,
    :func:`as_flags` return a CPU tensor in a fixed dtype (float64 for real values, int64
    for labels, bool for flags); :func:`check_same_length`, :func:`check_fars`,
    :func:`check_num_classes`, :func:`labelled_sets` check them together.
  - For :mod:`marginkit.plots`: :func:`as_float_array` and :func:`as_class_indices` return
    numpy arrays (float64, int64).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ArrayLike",
    "as_class_indices",
    "as_flags",
    "as_float_array",
    "as_labels",
    "as_matrix",
    "as_vector",
    "check_count",
    "check_fars",
    "check_num_classes",
    "check_same_length",
    "labelled_sets",
]

ArrayLike = Tensor | np.ndarray | Sequence


# ---------------------------------------------------------------------------- scalars
def check_count(name: str, value: int, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``; else raise naming ``name``.

    Raises:
        TypeError: ``value`` is not an int (``bool`` is refused too).
        ValueError: ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


# ---------------------------------------------------------------- torch, for the metrics
def _as_tensor(name: str, value: ArrayLike) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{name} must be a numeric array; got dtype object")
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (list, tuple)):
        try:
            return torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be a numeric array; {error}") from None
    raise TypeError(
        f"{name} must be a torch.Tensor, numpy.ndarray or sequence; got {type(value).__name__}"
    )


def as_matrix(name: str, value: ArrayLike, *, min_rows: int = 1) -> Tensor:
    """A finite real (N, D) matrix as float64, N >= ``min_rows``, D >= 1."""
    tensor = _as_tensor(name, value)
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must hold real numbers; got {tensor.dtype}")
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D); got shape {tuple(tensor.shape)}")
    if tensor.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} row(s); got {tensor.shape[0]}")
    if tensor.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column; got shape {tuple(tensor.shape)}")
    tensor = tensor.to(torch.float64)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def as_vector(name: str, value: ArrayLike, *, min_length: int = 1) -> Tensor:
    """A finite real (N,) vector as float64, N >= ``min_length``."""
    tensor = _as_tensor(name, value)
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must hold real numbers; got {tensor.dtype}")
    if tensor.dim() != 1:
        raise ValueError(f"{name} must have shape (N,); got shape {tuple(tensor.shape)}")
    if tensor.shape[0] < min_length:
        raise ValueError(
            f"{name} must have at least {min_length} entr(y/ies); got {tensor.shape[0]}"
        )
    tensor = tensor.to(torch.float64)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def as_labels(name: str, value: ArrayLike, *, min_length: int = 1) -> Tensor:
    """Integer class labels (N,) as int64, all >= 0."""
    tensor = _as_tensor(name, value)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer array of class labels; got {tensor.dtype}")
    if tensor.dim() != 1:
        raise ValueError(f"{name} must have shape (N,); got shape {tuple(tensor.shape)}")
    if tensor.shape[0] < min_length:
        raise ValueError(
            f"{name} must have at least {min_length} entr(y/ies); got {tensor.shape[0]}"
        )
    tensor = tensor.to(torch.int64)
    if tensor.numel() and int(tensor.min()) < 0:
        raise ValueError(f"{name} must be >= 0; got a minimum of {int(tensor.min())}")
    return tensor


def as_flags(name: str, value: ArrayLike, *, min_length: int = 1) -> Tensor:
    """A boolean (N,) vector; integer 0/1 arrays are accepted too."""
    tensor = _as_tensor(name, value)
    if tensor.dim() != 1:
        raise ValueError(f"{name} must have shape (N,); got shape {tuple(tensor.shape)}")
    if tensor.shape[0] < min_length:
        raise ValueError(
            f"{name} must have at least {min_length} entr(y/ies); got {tensor.shape[0]}"
        )
    if tensor.dtype == torch.bool:
        return tensor
    if tensor.is_floating_point() or tensor.is_complex():
        raise TypeError(f"{name} must be a boolean (or 0/1 integer) array; got {tensor.dtype}")
    if tensor.numel() and not bool(((tensor == 0) | (tensor == 1)).all()):
        raise ValueError(f"{name} must hold only 0/1 (False/True) values")
    return tensor.to(torch.bool)


def check_same_length(**named: Tensor) -> None:
    """Raise ``ValueError`` naming every argument unless all have the same first dimension."""
    lengths = {name: int(tensor.shape[0]) for name, tensor in named.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name} has {length}" for name, length in lengths.items())
        raise ValueError(f"lengths differ: {shown}; they must describe the same samples")


def check_fars(fars: Sequence[float] | float) -> tuple[float, ...]:
    """False-accept rates as a tuple of floats, each strictly inside (0, 1)."""
    given: object = (
        (fars,) if isinstance(fars, numbers.Real) and not isinstance(fars, bool) else fars
    )
    if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
        raise TypeError(f"fars must be a float or a sequence of floats; got {type(fars).__name__}")
    if len(given) == 0:
        raise ValueError("fars must name at least one false-accept rate")
    checked: list[float] = []
    for far in given:
        if isinstance(far, bool) or not isinstance(far, numbers.Real):
            raise TypeError(f"fars must hold floats; got {type(far).__name__}")
        value = float(far)
        if not math.isfinite(value) or not 0.0 < value < 1.0:
            raise ValueError(f"fars must lie strictly inside (0, 1); got {far}")
        checked.append(value)
    return tuple(checked)


def check_num_classes(name: str, labels: Tensor, minimum: int = 2) -> int:
    """The number of distinct labels; ``ValueError`` naming ``name`` if below ``minimum``."""
    count = int(torch.unique(labels).numel())
    if count < minimum:
        raise ValueError(f"{name} must contain at least {minimum} classes; got {count}")
    return count


def labelled_sets(
    reference: str,
    reference_embeddings: ArrayLike,
    reference_labels: ArrayLike,
    query: str,
    query_embeddings: ArrayLike,
    query_labels: ArrayLike,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Check two labelled embedding sets (train/test, gallery/probe) of one width.

    Argument names are ``f"{reference}_embeddings"``, ``f"{reference}_labels"`` and the same
    for ``query``; errors name them.

    Returns:
        ``(reference_embeddings (N, D), reference_labels (N,), query_embeddings (M, D),
        query_labels (M,))`` as tensors.
    """
    names = [f"{reference}_embeddings", f"{reference}_labels"]
    names += [f"{query}_embeddings", f"{query}_labels"]
    first = as_matrix(names[0], reference_embeddings)
    first_labels = as_labels(names[1], reference_labels)
    second = as_matrix(names[2], query_embeddings)
    second_labels = as_labels(names[3], query_labels)
    check_same_length(**{names[0]: first, names[1]: first_labels})
    check_same_length(**{names[2]: second, names[3]: second_labels})
    if second.shape[1] != first.shape[1]:
        raise ValueError(
            f"{names[2]} has {second.shape[1]} columns but {names[0]} has "
            f"{first.shape[1]}; the embedding_dim must match"
        )
    return first, first_labels, second, second_labels


# ------------------------------------------------------------------- numpy, for the plots
def _to_numpy(name: str, value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return np.asarray(value)
    raise TypeError(
        f"{name} must be a torch.Tensor, a numpy array or a sequence of numbers; "
        f"got {type(value).__name__}"
    )


def as_float_array(
    name: str, value: Any, *, ndim: int, columns: int | None = None, min_columns: int = 1
) -> np.ndarray:
    """``value`` as a finite float64 numpy array of ``ndim`` dimensions and at least one row.

    Args:
        name: the argument's name, for the error messages.
        value: a tensor, array or nested sequence of real numbers.
        ndim: the required number of dimensions (1: shape (N,), or 2: shape (N, D)).
        columns: for ``ndim == 2``, the exact number of columns D required (or None).
        min_columns: for ``ndim == 2``, the least number of columns accepted.

    Raises:
        TypeError: not numeric.
        ValueError: wrong shape, empty, or not finite.
    """
    array = _to_numpy(name, value)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise TypeError(f"{name} must hold real numbers; got dtype {array.dtype}")
    if array.ndim != ndim:
        expected = "(N,)" if ndim == 1 else "(N, D)"
        raise ValueError(f"{name} must have shape {expected}; got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty; expected at least one row")
    if ndim == 2:
        if columns is not None and array.shape[1] != columns:
            raise ValueError(
                f"{name} must have {columns} columns; got shape {array.shape} "
                f"({array.shape[1]} columns)"
            )
        if array.shape[1] < min_columns:
            raise ValueError(
                f"{name} must have at least {min_columns} columns; got shape {array.shape}"
            )
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def as_class_indices(name: str, value: Any, rows: int, other: str) -> np.ndarray:
    """``value`` as an (N,) int64 numpy array of class indices, one per row of ``other``.

    Args:
        name: the argument's name (``"labels"``).
        value: a 1-D integer tensor, array or sequence.
        rows: N, the number of rows of the array the indices belong to.
        other: that array's name, for the length-mismatch message.
    """
    array = _to_numpy(name, value)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be integer class indices; got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must have shape (N,); got shape {array.shape}")
    if array.shape[0] != rows:
        raise ValueError(
            f"{name} has {array.shape[0]} entries but {other} has {rows} rows; "
            "the lengths must match"
        )
    return array.astype(np.int64)
