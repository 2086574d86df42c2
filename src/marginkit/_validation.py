"""Argument checks shared by every sub-package: each error names the argument.

- :func:`check_count`: an ``int`` at least a minimum (``TypeError`` for a non-int, ``bool``
  included; ``ValueError`` below the minimum).
- The array checkers (:func:`as_matrix`, :func:`as_vector`, :func:`as_labels`,
  :func:`as_flags`) take the argument's name first, then a ``torch.Tensor``, a
  ``numpy.ndarray`` or a nested sequence; they raise ``TypeError``/``ValueError`` before any
  arithmetic and return a CPU tensor in a fixed dtype (float64 for real values, int64 for
  labels, bool for flags).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ArrayLike",
    "as_flags",
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
    if isinstance(fars, numbers.Real) and not isinstance(fars, bool):
        fars = (fars,)
    if isinstance(fars, (str, bytes)) or not isinstance(fars, Sequence):
        raise TypeError(f"fars must be a float or a sequence of floats; got {type(fars).__name__}")
    if len(fars) == 0:
        raise ValueError("fars must name at least one false-accept rate")
    checked = []
    for far in fars:
        if isinstance(far, bool) or not isinstance(far, numbers.Real):
            raise TypeError(f"fars must hold floats; got {type(far).__name__}")
        if not math.isfinite(far) or not 0.0 < far < 1.0:
            raise ValueError(f"fars must lie strictly inside (0, 1); got {far}")
        checked.append(float(far))
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
