"""Validation and conversion of the arrays and tensors handed to the plot functions.

Every check runs before any arithmetic or drawing, and every error names the argument and
what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["as_float_array", "as_labels", "unit_rows"]


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
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
    value: Any, name: str, *, ndim: int, columns: int | None = None, min_columns: int = 1
) -> np.ndarray:
    """``value`` as a finite float64 numpy array of ``ndim`` dimensions and at least one row.

    Args:
        value: a tensor, array or nested sequence of real numbers.
        name: the argument's name, for the error messages.
        ndim: the required number of dimensions (1 or 2).
        columns: for ``ndim == 2``, the exact number of columns required (or None).
        min_columns: for ``ndim == 2``, the least number of columns accepted.

    Raises:
        TypeError: not numeric.
        ValueError: wrong shape, empty, or not finite.
    """
    array = _to_numpy(value, name)
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


def as_labels(value: Any, name: str, count: int, other: str) -> np.ndarray:
    """``value`` as an int64 array of ``count`` class indices.

    Args:
        value: a 1-D integer tensor, array or sequence.
        name: the argument's name (``"labels"``).
        count: the number of rows of the array the labels belong to.
        other: that array's name, for the length-mismatch message.
    """
    array = _to_numpy(value, name)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be integer class indices; got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must have shape (N,); got shape {array.shape}")
    if array.shape[0] != count:
        raise ValueError(
            f"{name} has {array.shape[0]} entries but {other} has {count} rows; "
            "the lengths must match"
        )
    return array.astype(np.int64)


def unit_rows(array: np.ndarray, name: str) -> np.ndarray:
    """Rows of ``array`` (N, D) divided by their Euclidean norms.

    Raises:
        ValueError: naming ``name`` and the first row whose norm is zero.
    """
    norms = np.linalg.norm(array, axis=1, keepdims=True)  # (N, 1)
    zero = np.flatnonzero(norms[:, 0] == 0.0)
    if zero.size:
        raise ValueError(
            f"{name} row {int(zero[0])} has zero norm; it has no direction to normalise"
        )
    return array / norms
