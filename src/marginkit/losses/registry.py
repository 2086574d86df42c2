"""Name -> head class, for the command line and config files (:data:`marginkit.registry.LOSSES`).

Library code imports the classes directly; ``build("arcface", num_classes=..., ...)`` is for
the edges (CLI, YAML configs).
"""

from __future__ import annotations

from typing import Any

from marginkit.losses.head import MarginHead
from marginkit.registry import LOSSES

__all__ = ["ALIASES", "REGISTRY", "available", "build", "resolve"]

#: Canonical name -> head class, in the order of the literature.
REGISTRY: dict[str, type[MarginHead]] = {name: LOSSES.get(name) for name in LOSSES.names()}

#: Alias -> canonical name.
ALIASES: dict[str, str] = LOSSES.aliases


def available() -> list[str]:
    """The registered loss names (canonical, in the order of the literature)."""
    return LOSSES.names()


def resolve(name: str) -> type[MarginHead]:
    """The head class registered under ``name`` or one of its aliases (any case, ``-``/``_``).

    Raises:
        TypeError: ``name`` is not a str.
        marginkit.registry.UnknownNameError: a ``ValueError`` naming the unknown loss and
            listing the known ones.
    """
    return LOSSES.get(name)


def build(name: str, num_classes: int, embedding_dim: int, **kwargs: Any) -> MarginHead:
    """Construct the head registered as ``name``.

    Args:
        name: a name from :func:`available` or an alias (``amsoftmax``, ``asoftmax``).
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        **kwargs: the method's hyper-parameters by full name.
    """
    return resolve(name)(num_classes, embedding_dim, **kwargs)
