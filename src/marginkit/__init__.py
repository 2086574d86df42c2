"""marginkit: margin-based softmax losses for discriminative deep feature learning.

Importing ``marginkit`` is cheap and has no side effects; the sub-packages
(``marginkit.losses``, ``marginkit.schedules``, ...) load on first access.
:class:`MarginkitError` is the base of every error marginkit raises for its user
(:mod:`marginkit.errors`).
"""

from __future__ import annotations

import importlib
from typing import Any

from marginkit.errors import MarginkitError

__all__ = ["MarginkitError", "__version__"]

__version__ = "0.1.0"

_SUBMODULES = {
    "cli",
    "data",
    "distributed",
    "export",
    "losses",
    "metrics",
    "models",
    "plots",
    "schedules",
    "train",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"marginkit.{name}")
    raise AttributeError(f"module 'marginkit' has no attribute {name!r}")
