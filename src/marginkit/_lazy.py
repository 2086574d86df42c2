"""Package attributes loaded from their submodule on first access (PEP 562), so that
importing a package, or one light submodule of it, loads nothing heavy."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, exports: Mapping[str, Sequence[str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each name from its submodule.

    Args:
        package: the package's ``__name__``.
        exports: submodule (relative to ``package``) -> the names it exports.

    Returns:
        The function to assign to the package's ``__getattr__``.
    """
    origins = {name: module for module, names in exports.items() for name in names}

    def load(name: str) -> Any:
        origin = origins.get(name)
        if origin is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{origin}"), name)

    return load
