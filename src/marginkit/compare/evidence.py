"""The statistical rule that turns measurements over seeds into a verdict.

Every comparison a report makes (a paper's claim, or a loss against the baseline) is a
*contrast*: a weighted sum of runs' measures, minus a constant. For two runs it is the
difference ``run - baseline``; for a paper's number it is ``run - value``; for a trend along
runs (a growing margin) it is the least-squares slope per step. Its estimate:

- **Paired over seeds.** Every run of a seed starts from the same initial weights and sees
  the same batches, so the contrast is computed seed by seed (``d_1 .. d_n``) and averaged:
  the seed's luck cancels. Its seed half-width is Student's ``t_{n-1} s_d / sqrt(n)`` at the
  rule's confidence (two-sided).
- **Test-set sampling counts too.** Where a measure is a proportion of test items (an
  accuracy, a rank-1 rate) or an area under a ROC, the test set itself is a sample: its
  standard error (binomial ``sqrt(p (1 - p) / N)``, Hanley and McNeil 1982 for an AUC) is
  combined with the seed half-width, ``h = sqrt(h_seeds^2 + (z SE_test)^2)``. The errors of
  two runs on the same test set are combined as if independent, which over-states the
  error of a paired difference (conservative), and are not divided by the number of seeds,
  since every seed uses the same test set.
- **One seed** has no spread between seeds: the interval is ``d ± k SE_test`` with the
  rule's ``single_seed_factor`` k (default 3), so one seed says something only when the
  effect exceeds the test set's own sampling noise k times over; a measure with no known
  sampling error gives no interval with one seed.

Verdicts (:func:`decide`): *reproduced* when the interval lies wholly on the claimed side of
``tolerance`` (default 0); *contradicted* when it lies wholly on the other side of zero;
*inconclusive* otherwise (and whenever there is no interval). Equal numbers therefore never
count as a result.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from marginkit.train.config import ConfigError

__all__ = [
    "CONTRADICTED",
    "INCONCLUSIVE",
    "NOT_TESTABLE",
    "REPRODUCED",
    "VERDICTS",
    "Estimate",
    "Rule",
    "auc_error",
    "combine",
    "decide",
    "estimate",
    "proportion_error",
]

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable here"
#: Every verdict a report gives.
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)


@dataclass(frozen=True)
class Rule:
    """The decision rule of a comparison, fixed in its preset before any run.

    Attributes:
        confidence: two-sided confidence of the interval (0.5 to 0.999).
        single_seed_factor: with one seed, how many test-set standard errors an effect
            must exceed.
    """

    confidence: float = 0.95
    single_seed_factor: float = 3.0

    def __post_init__(self) -> None:
        if not (isinstance(self.confidence, (int, float)) and 0.5 <= self.confidence <= 0.999):
            raise ConfigError(f"rule.confidence must be in [0.5, 0.999]; got {self.confidence!r}")
        factor = self.single_seed_factor
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor >= 1):
            raise ConfigError(f"rule.single_seed_factor must be a number >= 1; got {factor!r}")

    @classmethod
    def from_dict(cls, values: Any, source: str = "rule") -> Rule:
        """Read a preset's ``rule:`` mapping (None: the defaults)."""
        if values is None:
            return cls()
        if not isinstance(values, dict):
            raise ConfigError(f"{source} must be a mapping with confidence, single_seed_factor")
        unknown = set(values) - {"confidence", "single_seed_factor"}
        if unknown:
            raise ConfigError(f"{source}: unknown key {sorted(unknown)[0]!r}")
        return cls(**values)

    def to_dict(self) -> dict[str, float]:
        """Plain-data form."""
        return {"confidence": self.confidence, "single_seed_factor": self.single_seed_factor}

    def describe(self) -> str:
        """The rule in one paragraph, for the report."""
        percent = f"{100 * self.confidence:g} %"
        return (
            f"Each difference is paired by seed (same initial weights and batches) and "
            f"given with its {percent} interval: Student's t over the seeds, combined with "
            f"the test set's own sampling error where the measure has one (binomial for "
            f"accuracies and rates, Hanley-McNeil for AUCs; conservative for paired runs). "
            f"With one seed the interval is the difference ± {self.single_seed_factor:g} "
            f"test-set standard errors, and a measure without a sampling error gets none. "
            f"*Reproduced*: the interval lies wholly on the claimed side (beyond the claim's "
            f"tolerance, if it states one); *contradicted*: wholly on the other side of zero; "
            f"*inconclusive*: otherwise."
        )

    def quantile(self, degrees_of_freedom: int | None = None) -> float:
        """The two-sided critical value at :attr:`confidence`: Student's t with
        ``degrees_of_freedom``, or the normal's where that is None."""
        from scipy import stats

        tail = 0.5 + self.confidence / 2
        if degrees_of_freedom is None:
            return float(stats.norm.ppf(tail))
        return float(stats.t.ppf(tail, degrees_of_freedom))


@dataclass(frozen=True)
class Estimate:
    """A contrast's mean over seeds and its interval.

    Attributes:
        difference: the mean over seeds of the per-seed contrast.
        low: the interval's lower end (None: no interval).
        high: its upper end (None: no interval).
        seeds: the number of seeds.
        sampling_error: the test-set standard error of the contrast (None: unknown).
    """

    difference: float
    low: float | None
    high: float | None
    seeds: int
    sampling_error: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (``report.json``)."""
        return {
            "difference": self.difference,
            "interval": None if self.low is None else [self.low, self.high],
            "seeds": self.seeds,
            "sampling_error": self.sampling_error,
        }


def proportion_error(percent: float | None, count: int | None) -> float | None:
    """Binomial standard error, in percentage points, of a rate ``percent`` on ``count``
    items (None when either is unknown or ``count < 1``)."""
    if percent is None or count is None or count < 1 or not math.isfinite(percent):
        return None
    p = min(max(percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1.0 - p) / count)


def auc_error(auc: float | None, positives: int | None, negatives: int | None) -> float | None:
    """Hanley and McNeil's (Radiology, 1982) standard error of an AUC on ``positives`` and
    ``negatives`` items (None when unknown)."""
    if auc is None or not positives or not negatives or not math.isfinite(auc):
        return None
    a = min(max(auc, 0.0), 1.0)
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    variance = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))


def combine(weights: Sequence[float], errors: Sequence[float | None]) -> float | None:
    """The sampling error of ``sum(w_r y_r)`` from each run's error (independent runs);
    None when any weighted run's error is unknown."""
    total = 0.0
    for weight, error in zip(weights, errors, strict=True):
        if weight == 0:
            continue
        if error is None:
            return None
        total += (weight * error) ** 2
    return math.sqrt(total)


def estimate(per_seed: Sequence[float], sampling_error: float | None, rule: Rule) -> Estimate:
    """The mean of a contrast over seeds and its interval under ``rule``.

    Args:
        per_seed: the contrast of each seed (paired runs), at least one.
        sampling_error: the test-set standard error of the contrast (None: unknown).
        rule: the comparison's rule.
    """
    if not per_seed:
        raise ValueError("per_seed must hold at least one seed's contrast")
    seeds = len(per_seed)
    difference = statistics.fmean(per_seed)
    if seeds == 1:
        if sampling_error is None:
            return Estimate(difference, None, None, 1, None)
        half = rule.single_seed_factor * sampling_error
    else:
        seed_half = rule.quantile(seeds - 1) * statistics.stdev(per_seed) / math.sqrt(seeds)
        sampling_half = 0.0 if sampling_error is None else rule.quantile() * sampling_error
        half = math.hypot(seed_half, sampling_half)
    return Estimate(difference, difference - half, difference + half, seeds, sampling_error)


def decide(result: Estimate, direction: float, tolerance: float = 0.0) -> str:
    """The verdict on ``result`` for a claim that the contrast is positive (``direction``
    +1) or negative (-1), beyond ``tolerance`` (>= 0)."""
    if result.low is None or result.high is None:
        return INCONCLUSIVE
    low, high = (result.low, result.high) if direction > 0 else (-result.high, -result.low)
    if low > tolerance:
        return REPRODUCED
    if high < 0:
        return CONTRADICTED
    return INCONCLUSIVE
