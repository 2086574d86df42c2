"""Argument checks shared across sub-packages (no heavy imports)."""

from __future__ import annotations

__all__ = ["check_count"]


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
