"""marginkit: margin-based softmax losses for discriminative deep feature learning.

Importing ``marginkit`` is cheap and has no side effects; the sub-packages
(``marginkit.losses``, ``marginkit.schedules``, ...) load on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

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
