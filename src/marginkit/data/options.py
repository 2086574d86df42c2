"""The experiment options every data set shares: class subsets, label noise, validation splits.

All randomness comes from a ``torch.Generator`` derived from the user's seed and the option's
name, so the noise and the split are reproducible and independent of each other.
"""

from __future__ import annotations

import operator
import zlib
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from marginkit.data.errors import DataError

__all__ = [
    "check_classes",
    "check_fraction",
    "check_integer",
    "class_mapping",
    "derived_generator",
    "inject_symmetric_noise",
    "stratified_split",
]


def derived_generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and a purpose string (e.g. ``"label_noise"``)."""
    generator = torch.Generator()
    generator.manual_seed((int(seed) * 1_000_003 + zlib.crc32(purpose.encode())) % (2**63))
    return generator


def check_fraction(name: str, value: float) -> float:
    """Return ``value`` as a float after checking it lies in [0, 1).

    Raises:
        TypeError: ``value`` is not a real number.
        DataError: ``value`` is outside [0, 1); the message names ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number in [0, 1), got {type(value).__name__}")
    if not 0.0 <= float(value) < 1.0:
        raise DataError(f"{name}: expected a number in [0, 1), got {value!r}")
    return float(value)


def check_integer(name: str, value: int, minimum: int | None = None) -> int:
    """Return ``value`` after checking it is an int (``bool`` refused), at least ``minimum``.

    Raises:
        TypeError: ``value`` is not an int; the message names ``name``.
        DataError: ``value`` is below ``minimum``.
    """
    expected = "an int" if minimum is None else f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise DataError(f"{name}: expected {expected}, got {value!r}")
    return value


def check_classes(classes: Iterable[int] | None, available: int) -> list[int] | None:
    """Validate a class subset against ``available`` classes numbered ``0..available-1``.

    Raises:
        TypeError: ``classes`` is not a sequence of integers.
        DataError: ``classes`` is empty, repeats a class or names an absent one.
    """
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
        raise TypeError(f"classes: expected a sequence of ints, got {type(classes).__name__}")
    chosen: list[int] = []
    for value in classes:
        if isinstance(value, bool):
            raise TypeError(f"classes: expected ints, got {value!r}")
        try:
            chosen.append(operator.index(value))
        except TypeError:
            raise TypeError(f"classes: expected ints, got {value!r}") from None
    if not chosen:
        raise DataError("classes: expected at least one class, got an empty sequence")
    duplicates = sorted({c for c in chosen if chosen.count(c) > 1})
    if duplicates:
        raise DataError(f"classes: expected distinct classes, {duplicates} appear twice")
    absent = [c for c in chosen if not 0 <= c < available]
    if absent:
        raise DataError(f"classes: {absent} absent; this data set has classes 0..{available - 1}")
    return chosen


def class_mapping(classes: Sequence[int], num_classes: int) -> Tensor:
    """Table from original class to open-set label.

    The known ``classes`` become ``0..k-1`` in the given order; every other class becomes
    ``k, k+1, ...`` in increasing order of its original label, so ``label < k`` marks a
    known class.

    Args:
        classes: the k known classes (validated).
        num_classes: number of original classes.

    Returns:
        ``(num_classes,)`` long tensor: ``mapping[original] = new label``.
    """
    known = list(classes)
    unknown = [c for c in range(num_classes) if c not in set(known)]
    mapping = torch.empty(num_classes, dtype=torch.long)
    mapping[torch.tensor(known + unknown, dtype=torch.long)] = torch.arange(num_classes)
    return mapping


def stratified_split(
    labels: Tensor, fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Hold out ``fraction`` of every class, at random.

    The held-out total is ``round(fraction * N)``, shared among the classes by largest
    remainder (ties to the lower class), and each class keeps at least one sample on the
    kept side when it has one.

    Args:
        labels: ``(N,)`` long labels.
        fraction: share to hold out, in [0, 1).
        generator: source of randomness.

    Returns:
        ``(kept, held_out)``: sorted ``(N - M,)`` and ``(M,)`` long indices.
    """
    labels = labels.long()
    if fraction == 0.0 or labels.numel() == 0:
        return torch.arange(labels.numel()), torch.zeros(0, dtype=torch.long)
    classes, counts = torch.unique(labels, return_counts=True)
    ideal = counts.double() * fraction  # (K,)
    quota = ideal.floor().long()
    remaining = round(fraction * labels.numel()) - int(quota.sum())
    if remaining > 0:
        order = sorted(range(len(classes)), key=lambda k: (-(ideal[k] - quota[k]).item(), k))
        for k in order[:remaining]:
            quota[k] += 1
    quota = torch.minimum(quota, counts - 1)
    held: list[Tensor] = []
    for cls, take in zip(classes.tolist(), quota.tolist(), strict=True):
        members = torch.nonzero(labels == cls).flatten()
        permuted = members[torch.randperm(members.numel(), generator=generator)]
        held.append(permuted[:take])
    held_out = torch.sort(torch.cat(held)).values
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[held_out] = False
    return torch.nonzero(mask).flatten(), held_out


def inject_symmetric_noise(
    labels: Tensor, rate: float, num_classes: int, generator: torch.Generator
) -> Tensor:
    """Symmetric label noise: each label flips with probability ``rate`` to a different class.

    The new class is drawn uniformly from the other ``num_classes - 1`` classes (the
    "symmetric" noise of e.g. Patrini et al., CVPR 2017).

    Args:
        labels: ``(N,)`` long clean labels in ``0..num_classes-1``.
        rate: flip probability in [0, 1).
        num_classes: number of classes (>= 2 when ``rate > 0``).
        generator: source of randomness.

    Returns:
        ``(N,)`` long noisy labels (a new tensor).
    """
    if rate > 0.0 and num_classes < 2:
        raise ValueError(f"label_noise: needs at least 2 classes to flip labels, got {num_classes}")
    labels = labels.long()
    flip = torch.rand(labels.shape, generator=generator) < rate  # (N,)
    offset = torch.randint(1, max(num_classes, 2), labels.shape, generator=generator)  # (N,)
    return torch.where(flip, (labels + offset) % num_classes, labels)
