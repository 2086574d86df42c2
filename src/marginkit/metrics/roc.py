"""ROC analysis of scores for a binary question (same identity? known class?).

Convention: a higher score means "positive"; a pair is accepted when its score is
``>= threshold``. The curve has one point per distinct score plus the point (0, 0) at
threshold ``+inf``, exactly as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.

- FAR (false accept rate) = accepted negatives / negatives (the ROC's false-positive rate).
- TAR (true accept rate) = accepted positives / positives (the true-positive rate).
- AUC: trapezoidal area under TAR(FAR); equals the probability that a random positive
  outscores a random negative, ties counting one half (Hanley & McNeil, 1982).
- EER: the rate where FAR = FRR = 1 - TAR on the piecewise-linear ROC.
- TAR at FAR f: the highest TAR over ROC points with FAR <= f. It needs at least
  ``ceil(1 / f)`` negatives, otherwise a FAR of f cannot be measured (the first accepted
  negative already exceeds it) and the value is reported as unavailable with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from marginkit._validation import ArrayLike, as_flags, as_vector, check_fars, check_same_length

__all__ = [
    "DEFAULT_FARS",
    "OperatingPoint",
    "RocCurve",
    "auc",
    "checked_scores",
    "equal_error_rate",
    "operating_point",
    "roc_curve",
    "tar_at_far",
    "trapezoid_area",
]

DEFAULT_FARS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)


@dataclass(frozen=True)
class RocCurve:
    """A ROC curve: ``far``, ``tar`` and ``thresholds``, numpy arrays of equal length P.

    ``thresholds`` decrease from ``+inf`` (nothing accepted) to the lowest score;
    ``far`` and ``tar`` increase from 0.
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray
    num_positive: int
    num_negative: int

    @classmethod
    def from_checked(cls, scores: np.ndarray, positive: np.ndarray) -> RocCurve:
        """The ROC of checked numpy ``scores`` (N,) (``-inf`` allowed) and booleans
        ``positive`` (N,) holding both kinds (:func:`checked_scores`)."""
        order = np.argsort(-scores, kind="stable")
        sorted_scores = scores[order]
        sorted_positive = positive[order]
        # the last index of every run of equal scores
        ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
        true_accepts = np.cumsum(sorted_positive)[ends]
        false_accepts = (ends + 1) - true_accepts
        num_positive = int(positive.sum())
        num_negative = int(positive.shape[0] - num_positive)
        return cls(
            far=np.r_[0.0, false_accepts / num_negative],
            tar=np.r_[0.0, true_accepts / num_positive],
            thresholds=np.r_[np.inf, sorted_scores[ends]],
            num_positive=num_positive,
            num_negative=num_negative,
        )

    def auc(self) -> float:
        """Trapezoidal area under TAR(FAR)."""
        return trapezoid_area(self.far, self.tar)

    def equal_error_rate(self) -> tuple[float, float]:
        """``(eer, threshold)``: see :func:`equal_error_rate`."""
        gap = self.far + self.tar - 1.0  # FAR - FRR, non-decreasing from -1 to +1
        index = int(np.argmax(gap >= 0.0))
        if gap[index] == 0.0:
            return float(self.far[index]), float(self.thresholds[index])
        before, after = gap[index - 1], gap[index]
        fraction = -before / (after - before)
        eer = self.far[index - 1] + fraction * (self.far[index] - self.far[index - 1])
        return float(eer), float(self.thresholds[index])

    def to_dict(self, max_points: int | None = None) -> dict[str, Any]:
        """JSON-ready lists (threshold ``+inf`` becomes None), optionally thinned to at most
        ``max_points`` evenly spaced points that keep both ends."""
        index = np.arange(self.far.shape[0])
        if max_points is not None and index.shape[0] > max_points:
            if max_points < 2:
                raise ValueError(f"max_points must be >= 2; got {max_points}")
            index = np.unique(np.linspace(0, index.shape[0] - 1, max_points).round().astype(int))
        return {
            "far": self.far[index].tolist(),
            "tar": self.tar[index].tolist(),
            "thresholds": [_finite_or_none(value) for value in self.thresholds[index]],
        }


@dataclass(frozen=True)
class OperatingPoint:
    """A rate measured at a requested false accept rate, or the reason it is unavailable.

    Attributes:
        far: the requested FAR.
        rate: TAR (verification) or DIR (identification) at that FAR; None if unavailable.
        threshold: the lowest score threshold (accept ``score >= threshold``) whose FAR does
            not exceed ``far``; ``inf`` if only "accept nothing" qualifies; None if
            unavailable.
        achieved_far: the FAR actually obtained at ``threshold`` (<= ``far``).
        reason: why the rate is unavailable; None when it is available.
    """

    far: float
    rate: float | None
    threshold: float | None
    achieved_far: float | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (an infinite threshold becomes None)."""
        return {
            "far": self.far,
            "rate": self.rate,
            "threshold": None if self.threshold is None else _finite_or_none(self.threshold),
            "achieved_far": self.achieved_far,
            "available": self.available,
            "reason": self.reason,
        }


def roc_curve(scores: ArrayLike, same: ArrayLike) -> RocCurve:
    """ROC of ``scores`` for the binary truth ``same``.

    Args:
        scores: (N,) finite scores, higher meaning "positive" (e.g. cosine of a pair).
        same: (N,) booleans, True for positives (same identity).

    Returns:
        The curve, identical to ``sklearn.metrics.roc_curve(same, scores,
        drop_intermediate=False)``.

    Raises:
        ValueError: lengths differ, or ``same`` lacks positives or negatives.
    """
    return RocCurve.from_checked(*checked_scores(scores, same))


def auc(scores: ArrayLike, same: ArrayLike) -> float:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score(same, scores)``).

    Args:
        scores: (N,) scores.
        same: (N,) booleans, True for positives.
    """
    return roc_curve(scores, same).auc()


def equal_error_rate(scores: ArrayLike, same: ArrayLike) -> tuple[float, float]:
    """The equal error rate and a threshold at it.

    The EER is where the piecewise-linear ROC crosses ``FAR = 1 - TAR``, interpolated
    linearly between the two ROC points around the crossing.

    Args:
        scores: (N,) scores.
        same: (N,) booleans, True for positives.

    Returns:
        ``(eer, threshold)``: the rate, and the threshold of the first ROC point where
        FAR >= FRR (accept ``score >= threshold``).
    """
    return roc_curve(scores, same).equal_error_rate()


def tar_at_far(
    scores: ArrayLike, same: ArrayLike, fars: Sequence[float] | float = DEFAULT_FARS
) -> list[OperatingPoint]:
    """True accept rate at each requested false accept rate.

    Args:
        scores: (N,) scores.
        same: (N,) booleans, True for positives.
        fars: FARs strictly inside (0, 1).

    Returns:
        One :class:`OperatingPoint` per FAR, in the order given; a FAR needing more than
        the available negatives (``ceil(1 / far)``) is reported unavailable with the
        reason, never estimated.
    """
    checked_fars = check_fars(fars)
    curve = roc_curve(scores, same)
    return [operating_point(curve, far, "negative pairs") for far in checked_fars]


# ----------------------------------------------------------------- shared by other modules
def checked_scores(scores: ArrayLike, same: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` (N,) float64 and ``same`` (N,) bool as numpy arrays, checked.

    Raises:
        ValueError: lengths differ, or ``same`` lacks positives or negatives.
    """
    scores_t = as_vector("scores", scores)
    same_t = as_flags("same", same)
    check_same_length(scores=scores_t, same=same_t)
    num_positive = int(same_t.sum())
    if num_positive == 0 or num_positive == same_t.shape[0]:
        raise ValueError(
            f"same must contain both positives and negatives; got {num_positive} positive(s) "
            f"of {same_t.shape[0]}"
        )
    return scores_t.numpy(), same_t.numpy()


def trapezoid_area(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoidal area under y(x), both (P,), for non-decreasing x."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def operating_point(curve: RocCurve, far: float, negatives: str) -> OperatingPoint:
    """The curve's best rate at FAR <= ``far``; unavailable when the negatives are too few.

    Args:
        curve: the ROC (its ``tar`` is reported as the rate).
        far: a FAR in (0, 1).
        negatives: what the negatives are, for the reason text (e.g. "negative pairs").
    """
    needed = math.ceil(1.0 / far - 1e-9)
    if curve.num_negative < needed:
        return OperatingPoint(
            far=far,
            rate=None,
            threshold=None,
            achieved_far=None,
            reason=(
                f"only {curve.num_negative} {negatives}; a FAR of {far:g} needs at least "
                f"{needed} so that one false accept is within it"
            ),
        )
    index = int(np.searchsorted(curve.far, far, side="right")) - 1
    return OperatingPoint(
        far=far,
        rate=float(curve.tar[index]),
        threshold=float(curve.thresholds[index]),
        achieved_far=float(curve.far[index]),
    )


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
