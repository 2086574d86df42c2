"""Claims of the papers and the rule that turns our measurements into a verdict.

A claim (in a preset's ``claims:`` list) is a mapping::

    claim: L-Softmax lowers the MNIST test error below softmax's   # in our words
    source: Liu et al., ICML 2016 (L-Softmax), MNIST table          # where it comes from
    paper: 0.31 % vs 0.40 %                                         # the paper's number
    check: lower              # the rule, one of CHECKS
    metric: test_error        # a name of marginkit.compare.measures.MEASURES
    runs: [lsoftmax]          # the runs the claim is about
    baseline: softmax         # lower/higher: the run they are compared with
    value: 0.31               # at_most/at_least: the paper's number, in the metric's unit
    tolerance: 0.05           # optional slack (metric units), default 0
    reason: ...               # not_testable: why
    note: ...                 # optional: what is known about the outcome (shown with the rule)

Verdicts (:func:`judge`), from the mean and standard deviation over seeds of each run:

- ``lower`` / ``higher``: *reproduced* when every run's mean is below (above) the
  baseline's by more than ``max(tolerance, std of the run, std of the baseline)`` (with a
  single seed there is no std, and the rule says so).
- ``at_most`` / ``at_least``: *reproduced* when every run's mean is at most (at least)
  ``value`` plus (minus) ``tolerance``.
- ``increasing`` / ``decreasing``: the runs in the order given (e.g. growing margin);
  *reproduced* when the Spearman rank correlation between position and mean is at least
  0.8 (at most -0.8) and the last run beats the first by more than ``tolerance``.
- ``not_testable``: the claim cannot be tested with these data or budgets; ``reason``
  says why.

A claim whose runs are not in the grid, or whose measure does not apply to them, is *not
testable here* with that reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from marginkit.train.config import ConfigError

__all__ = ["CHECKS", "Verdict", "check_claim", "judge"]

CHECKS = ("lower", "higher", "at_most", "at_least", "increasing", "decreasing", "not_testable")
#: Spearman rank correlation a trend needs to count as reproduced.
TREND_CORRELATION = 0.8

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable here"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim.

    Attributes:
        verdict: ``"reproduced"``, ``"not reproduced"`` or ``"not testable here"``.
        ours: our numbers, as text.
        rule: the rule applied, as text (or the reason it could not be).
    """

    verdict: str
    ours: str
    rule: str


def check_claim(claim: Any, where: str) -> None:
    """Raise :class:`ConfigError` naming ``where`` when ``claim`` is malformed."""
    from marginkit.compare.measures import MEASURES

    if not isinstance(claim, dict):
        raise ConfigError(f"{where} must be a mapping with claim, source, check, ...")
    known = {"claim", "source", "paper", "check", "metric", "runs", "baseline", "value"}
    known |= {"tolerance", "reason", "note"}
    unknown = set(claim) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    for key in ("claim", "source", "check"):
        if not isinstance(claim.get(key), str):
            raise ConfigError(f"{where}: {key} must be text")
    if "note" in claim and not isinstance(claim["note"], str):
        raise ConfigError(f"{where}: note must be text")
    check = claim["check"]
    if check not in CHECKS:
        raise ConfigError(f"{where}: check must be one of {', '.join(CHECKS)}; got {check!r}")
    if check == "not_testable":
        if not isinstance(claim.get("reason"), str):
            raise ConfigError(f"{where}: a not_testable claim needs a reason")
        return
    if claim.get("metric") not in MEASURES:
        raise ConfigError(
            f"{where}: metric must be one of {', '.join(MEASURES)}; got {claim.get('metric')!r}"
        )
    runs = claim.get("runs")
    if not isinstance(runs, list) or not runs or not all(isinstance(r, str) for r in runs):
        raise ConfigError(f"{where}: runs must be a list of run names")
    if check in ("lower", "higher") and not isinstance(claim.get("baseline"), str):
        raise ConfigError(f"{where}: check {check!r} needs a baseline run name")
    if check in ("at_most", "at_least") and not _is_number(claim.get("value")):
        raise ConfigError(f"{where}: check {check!r} needs a numeric value")
    if check in ("increasing", "decreasing") and len(runs) < 2:
        raise ConfigError(f"{where}: check {check!r} needs at least two runs")
    if "tolerance" in claim and not (_is_number(claim["tolerance"]) and claim["tolerance"] >= 0):
        raise ConfigError(f"{where}: tolerance must be a number >= 0")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _spearman(values: list[float]) -> float:
    """Rank correlation of ``values`` with their positions 0..n-1 (ties get mean ranks)."""
    count = len(values)
    order = sorted(range(count), key=lambda index: values[index])
    ranks = [0.0] * count
    start = 0
    while start < count:
        end = start
        while end + 1 < count and values[order[end + 1]] == values[order[start]]:
            end += 1
        for index in order[start : end + 1]:
            ranks[index] = (start + end) / 2
        start = end + 1
    positions = list(range(count))
    mean_rank, mean_position = sum(ranks) / count, (count - 1) / 2
    covariance = sum(
        (r - mean_rank) * (p - mean_position) for r, p in zip(ranks, positions, strict=True)
    )
    spread = math.sqrt(
        sum((r - mean_rank) ** 2 for r in ranks) * sum((p - mean_position) ** 2 for p in positions)
    )
    return 0.0 if spread == 0 else covariance / spread


def judge(
    claim: dict[str, Any], stats: dict[str, dict[str, tuple[float, float | None] | None]]
) -> Verdict:
    """The verdict of ``claim`` given the grid's statistics.

    Args:
        claim: a claim mapping (checked by :func:`check_claim`).
        stats: ``run name -> measure name -> (mean, std over seeds)``: std None for a single
            seed; None where the measure does not apply.
    """
    from marginkit.compare.measures import MEASURES

    check = claim["check"]
    if check == "not_testable":
        return Verdict(NOT_TESTABLE, "—", claim["reason"])
    metric = claim["metric"]
    measure = MEASURES[metric]
    tolerance = float(claim.get("tolerance", 0.0))
    names = list(claim["runs"]) + ([claim["baseline"]] if "baseline" in claim else [])
    missing = [name for name in names if name not in stats]
    if missing:
        return Verdict(NOT_TESTABLE, "—", f"the grid has no run {missing[0]!r}")
    empty = [name for name in names if stats[name].get(metric) is None]
    if empty:
        return Verdict(NOT_TESTABLE, "—", f"{measure.label} does not apply to {empty[0]!r}")

    means = {name: stats[name][metric][0] for name in names}  # type: ignore[index]
    spreads = {name: stats[name][metric][1] or 0.0 for name in names}  # type: ignore[index]

    def shown(name: str) -> str:
        std = stats[name][metric][1]  # type: ignore[index]
        spread = "" if std is None else f" ± {std:.{measure.digits}f}"
        unit = f" {measure.unit}" if measure.unit == "%" else measure.unit
        return f"{name} {means[name]:.{measure.digits}f}{spread}{unit}"

    ours = ", ".join(shown(name) for name in names)
    label = measure.label
    if check in ("lower", "higher"):
        base = claim["baseline"]
        sign = -1.0 if check == "lower" else 1.0
        passed = all(
            sign * (means[name] - means[base]) > max(tolerance, spreads[name], spreads[base])
            for name in claim["runs"]
        )
        word = "below" if check == "lower" else "above"
        rule = (
            f"{label} of every listed run {word} {claim['baseline']}'s by more than "
            f"max({tolerance:g}, the standard deviations over seeds)"
        )
    elif check in ("at_most", "at_least"):
        value = float(claim["value"])
        limit = value + tolerance if check == "at_most" else value - tolerance
        passed = all(
            means[name] <= limit if check == "at_most" else means[name] >= limit
            for name in claim["runs"]
        )
        word = "at most" if check == "at_most" else "at least"
        rule = f"{label} {word} {limit:g}{measure.unit} (the paper's {value:g} ± {tolerance:g})"
    else:
        trend = [means[name] for name in claim["runs"]]
        rho = _spearman(trend)
        sign = 1.0 if check == "increasing" else -1.0
        passed = sign * rho >= TREND_CORRELATION and sign * (trend[-1] - trend[0]) > tolerance
        ours += f"; Spearman ρ = {rho:+.2f}"
        rule = (
            f"{label} {check} along the listed runs: Spearman ρ "
            f"{'≥' if sign > 0 else '≤'} {sign * TREND_CORRELATION:+.1f} and last beats first"
        )
    if check in ("lower", "higher", "increasing", "decreasing") and any(
        stats[name][metric][1] is None  # type: ignore[index]
        for name in names
    ):
        rule += "; one seed: the spread between seeds is not estimated (use --seeds 3)"
    return Verdict(REPRODUCED if passed else NOT_REPRODUCED, ours, rule)
