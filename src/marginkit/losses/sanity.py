"""Sanity checks of a head's scale and margin against its C classes and D dimensions.

Two settings make a normalised head unable to fit its data whatever the training does; each is
reported once per configuration with a :class:`MarginWarning` at the head's construction
(``docs/recipes.md``, "Sanity warnings"):

- **Scale too small.** With scale ``s`` and C classes the target's probability cannot exceed
  ``P`` unless ``s >= scale_bound(C, P)`` (NormFace, Wang et al. 2017, Prop. 2). A head whose
  largest scale lies below the bound at ``P = 0.99`` is warned about.
- **No room for the margin.** C class centres on the unit sphere of R^D are at best
  ``neighbour_angle(C, D)`` apart: ``2 pi / C`` on the circle (D = 2), and at most the regular
  simplex's ``acos(-1 / (C - 1))`` for D >= 3 (exact for D >= C - 1, an upper bound below:
  Rankin's bound, so the check then errs on the silent side). The rule: an embedding a quarter
  of that angle from its class centre must be able to meet the margin against the neighbour
  three quarters away, i.e. ``f(cos(g / 4)) > cos(3 g / 4)`` for the target function ``f``:
  ArcFace's angular margin must stay below ``g / 2`` (``pi / C`` in 2-D), CosFace's cosine
  margin below ``cos(g / 4) - cos(3 g / 4)``. Checked for these two additive margins, at the
  largest value their schedule reaches.

A third applies to MagFace only: **regulariser too weak.** Its loss has a unique optimal
magnitude per sample (Meng et al., CVPR 2021: the loss is then strictly convex in the
magnitude; the official trainer checks the same bound) only when
``regularizer_weight >= s k u_a^2 l_a^2 / (u_a^2 - l_a^2)``, with ``k = (u_m - l_m) / (u_a - l_a)``
the slope of the margin in the magnitude (:func:`warn_regularizer`).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import warnings
from collections.abc import Iterator

__all__ = [
    "WARNING_PROBABILITY",
    "MarginWarning",
    "margin_limit",
    "neighbour_angle",
    "scale_bound",
    "unchecked",
    "warn_margin",
    "warn_regularizer",
    "warn_scale",
]

#: The target probability a head's scale must be able to reach, or a warning is given.
WARNING_PROBABILITY = 0.99

#: The configurations already warned about (one warning each per process).
_WARNED: set[tuple[object, ...]] = set()
#: False inside :func:`unchecked` (heads built for pictures, not for training).
_CHECKING: contextvars.ContextVar[bool] = contextvars.ContextVar("checking", default=True)


class MarginWarning(UserWarning):
    """A head's scale or margin cannot work for its number of classes and dimensions."""


def scale_bound(num_classes: int, probability: float = 0.999) -> float:
    """The smallest scale at which a normalised head can give probability ``probability``
    to the target class among ``num_classes`` (NormFace, Wang et al. 2017, Prop. 2):
    ``(C - 1) / C * ln((C - 1) P / (1 - P))``."""
    classes = num_classes
    return (classes - 1) / classes * math.log((classes - 1) * probability / (1 - probability))


def neighbour_angle(num_classes: int, embedding_dim: int) -> float:
    """The largest possible angle (radians) between a class centre and its nearest neighbour
    for C unit vectors in R^D: ``2 pi / C`` for D = 2; ``acos(-1 / (C - 1))`` for D >= 3 (the
    regular simplex: exact for D >= C - 1, an upper bound otherwise); for D = 1, ``pi`` for
    two classes and 0 for more."""
    if embedding_dim == 1:
        return math.pi if num_classes == 2 else 0.0
    if embedding_dim == 2:
        return 2.0 * math.pi / num_classes
    return math.acos(-1.0 / (num_classes - 1))


def margin_limit(kind: str, num_classes: int, embedding_dim: int) -> float:
    """The margin at and above which no embedding a quarter of the neighbour angle ``g`` from
    its centre can meet it: ``g / 2`` for an angular margin (``kind="angular"``, ArcFace),
    ``cos(g / 4) - cos(3 g / 4)`` for a cosine one (``kind="cosine"``, CosFace)."""
    gap = neighbour_angle(num_classes, embedding_dim)
    if kind == "angular":
        return gap / 2.0
    if kind == "cosine":
        return math.cos(gap / 4.0) - math.cos(3.0 * gap / 4.0)
    raise ValueError(f"kind must be 'angular' or 'cosine'; got {kind!r}")


@contextlib.contextmanager
def unchecked() -> Iterator[None]:
    """Heads built inside warn about nothing (and are not counted as warned about): for
    heads that only draw a curve, such as the published settings beside a run's own."""
    token = _CHECKING.set(False)
    try:
        yield
    finally:
        _CHECKING.reset(token)


def _warn_once(key: tuple[object, ...], message: str, stacklevel: int) -> None:
    """Warn unless ``key`` was warned about; ``stacklevel`` counts from the public caller."""
    if key in _WARNED or not _CHECKING.get():
        return
    _WARNED.add(key)
    warnings.warn(message, MarginWarning, stacklevel=stacklevel + 2)


def warn_scale(head_name: str, scale: float, num_classes: int) -> None:
    """Warn (once per head class, scale and C) if ``scale`` is below
    ``scale_bound(num_classes, WARNING_PROBABILITY)``.

    Args:
        head_name: the head's class name, for the message.
        scale: the largest scale the head will use.
        num_classes: C.
    """
    bound = scale_bound(num_classes, WARNING_PROBABILITY)
    if scale >= bound:
        return
    _warn_once(
        ("scale", head_name, scale, num_classes),
        f"{head_name}: scale {scale:g} is below {bound:.2f}, the smallest at which the target "
        f"class can reach probability {WARNING_PROBABILITY} among {num_classes} classes "
        f"(NormFace's bound): use scale >= {math.ceil(bound)}, or leave the scale to the "
        "training recipe",
        stacklevel=3,  # warn_scale <- MarginHead.__init__ <- the head's __init__ <- its caller
    )


def warn_margin(
    head_name: str, kind: str, margin: float, num_classes: int, embedding_dim: int
) -> None:
    """Warn (once per head class, margin, C and D) if ``margin`` is at or above
    :func:`margin_limit`.

    Args:
        head_name: the head's class name, for the message.
        kind: ``"angular"`` (radians, ArcFace) or ``"cosine"`` (CosFace).
        margin: the largest margin the head will use.
        num_classes: C.
        embedding_dim: D.
    """
    limit = margin_limit(kind, num_classes, embedding_dim)
    if margin < limit:
        return
    gap = math.degrees(neighbour_angle(num_classes, embedding_dim))
    _warn_once(
        ("margin", head_name, kind, margin, num_classes, embedding_dim),
        f"{head_name}: margin {margin:g} leaves no room between {num_classes} classes in "
        f"{embedding_dim} dimensions (class centres at best {gap:.1f} degrees apart; no "
        f"embedding a quarter of that from its centre meets the margin): use margin < "
        f"{limit:.4g} or a larger embedding_dim",
        stacklevel=2,  # warn_margin <- the head's __init__ <- its caller
    )


def warn_regularizer(head_name: str, regularizer_weight: float, bound: float) -> None:
    """Warn (once per head class, weight and bound) if ``regularizer_weight < bound``, the
    smallest weight of MagFace's magnitude regulariser for which the loss has a unique
    optimal magnitude (computed by the head from its scale, margins and magnitudes).

    Args:
        head_name: the head's class name, for the message.
        regularizer_weight: the weight ``lambda_g`` of the regulariser.
        bound: ``s k u_a^2 l_a^2 / (u_a^2 - l_a^2)`` at the head's settings.
    """
    if regularizer_weight >= bound:
        return
    _warn_once(
        ("regularizer", head_name, regularizer_weight, bound),
        f"{head_name}: regularizer_weight {regularizer_weight:g} is below {bound:.4g}, the "
        "smallest for which the loss has a unique optimal magnitude per sample (MagFace's "
        f"convexity condition): use regularizer_weight >= {math.ceil(bound)}, a smaller scale or a "
        "smaller margin slope",
        stacklevel=2,  # warn_regularizer <- the head's __init__ <- its caller
    )
