"""Name -> head class registry, for the command line and config files.

Library code imports the classes directly; ``build("arcface", num_classes=..., ...)`` is for
the edges (CLI, YAML configs).
"""

from __future__ import annotations

from typing import Any

from marginkit.losses.arcface import ArcFace
from marginkit.losses.camsoftmax import CamSoftmax
from marginkit.losses.combined import CombinedMargin
from marginkit.losses.cosface import CosFace
from marginkit.losses.head import MarginHead
from marginkit.losses.lsoftmax import LSoftmax, SphereFace
from marginkit.losses.normface import NormFace
from marginkit.losses.softmax import Softmax
from marginkit.losses.virtual import VirtualSoftmax

__all__ = ["ALIASES", "REGISTRY", "available", "build", "resolve"]

REGISTRY: dict[str, type[MarginHead]] = {
    "softmax": Softmax,
    "lsoftmax": LSoftmax,
    "sphereface": SphereFace,
    "normface": NormFace,
    "cosface": CosFace,
    "arcface": ArcFace,
    "combined": CombinedMargin,
    "virtual": VirtualSoftmax,
    "camsoftmax": CamSoftmax,
}

ALIASES: dict[str, str] = {"amsoftmax": "cosface", "asoftmax": "sphereface"}


def available() -> list[str]:
    """The registered loss names (canonical, in the order of the literature)."""
    return list(REGISTRY)


def resolve(name: str) -> type[MarginHead]:
    """The head class registered under ``name`` or one of its aliases.

    Raises:
        ValueError: naming the unknown loss and listing the known ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str; got {type(name).__name__}")
    key = name.strip().lower().replace("-", "").replace("_", "")
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        known = ", ".join([*REGISTRY, *ALIASES])
        raise ValueError(f"unknown loss {name!r}; expected one of: {known}")
    return REGISTRY[key]


def build(name: str, num_classes: int, embedding_dim: int, **kwargs: Any) -> MarginHead:
    """Construct the head registered as ``name``.

    Args:
        name: a name from :func:`available` or an alias (``amsoftmax``, ``asoftmax``).
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        **kwargs: the method's hyper-parameters by full name.
    """
    return resolve(name)(num_classes, embedding_dim, **kwargs)
