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
    tolerance: 0.05           # optional: the smallest effect that counts (metric units)
    reason: ...               # not_testable: why
    note: ...                 # optional: what is known about the outcome (shown with the rule)

Every claim is decided by the comparison's :class:`~marginkit.compare.evidence.Rule`
(fixed in the preset before any run; :mod:`marginkit.compare.evidence` states it), on a
contrast paired over seeds:

- ``lower`` / ``higher``: each listed run minus the baseline, claimed negative (positive);
  with ``tolerance``, by more than that much.
- ``at_most`` / ``at_least``: each listed run minus the paper's ``value``, claimed at most
  (at least) zero.
- ``increasing`` / ``decreasing``: the least-squares slope of the measure along the runs in
  the order given (e.g. a growing margin), per step, claimed positive (negative).
- ``not_testable``: the claim cannot be tested with these data or budgets; ``reason``
  says why.

A claim over several runs is *contradicted* when any run contradicts it, *reproduced* when
every run reproduces it, and *inconclusive* otherwise. A claim whose runs are not in the
grid, or whose measure does not apply to them, is *not testable here* with that reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from marginkit.compare.evidence import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    REPRODUCED,
    Estimate,
    Rule,
    combine,
    decide,
    estimate,
)
from marginkit.compare.measures import MEASURES, measure_label
from marginkit.train.config import ConfigError

__all__ = ["CHECKS", "Observed", "Verdict", "check_claim", "contrast", "judge"]

CHECKS = ("lower", "higher", "at_most", "at_least", "increasing", "decreasing", "not_testable")


@dataclass(frozen=True)
class Observed:
    """One run's measures at one seed.

    Attributes:
        values: measure name -> value (None where it does not apply).
        errors: measure name -> test-set standard error (None where unknown).
    """

    values: dict[str, float | None]
    errors: dict[str, float | None]


#: run name -> seed -> what was measured.
Observations = dict[str, dict[int, Observed]]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim.

    Attributes:
        verdict: one of :data:`marginkit.compare.evidence.VERDICTS`.
        ours: our numbers, as text: each contrast with its interval and seeds.
        rule: the rule applied, as text (or the reason it could not be).
        estimates: ``label -> Estimate`` of each contrast (empty when not testable).
    """

    verdict: str
    ours: str
    rule: str
    estimates: dict[str, Estimate] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (``report.json``)."""
        return {
            "verdict": self.verdict,
            "ours": self.ours,
            "rule": self.rule,
            "contrasts": {label: e.to_dict() for label, e in self.estimates.items()},
        }


def check_claim(claim: Any, where: str) -> None:
    """Raise :class:`ConfigError` naming ``where`` when ``claim`` is malformed."""
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


def contrast(
    observed: Observations, weights: dict[str, float], metric: str, rule: Rule, value: float = 0.0
) -> Estimate | str:
    """``sum(w_r * run_r) - value`` of ``metric``, paired over the seeds every weighted run
    has, with its interval under ``rule``; a reason (text) when it cannot be computed."""
    runs = [name for name, weight in weights.items() if weight != 0]
    shared = sorted(set.intersection(*(set(observed[name]) for name in runs)))
    # each seed's values of the runs, in the order of ``runs``: the seeds where all are known
    known = {
        seed: found
        for seed in shared
        if (found := _all_known([observed[n][seed].values.get(metric) for n in runs])) is not None
    }
    if not known:
        return f"no seed has {MEASURES[metric].label} for every run of {', '.join(runs)}"
    per_seed = [
        sum(weights[n] * v for n, v in zip(runs, found, strict=True)) - value
        for found in known.values()
    ]

    def error(name: str) -> float | None:
        errors = _all_known([observed[name][s].errors.get(metric) for s in known])
        if errors is None:
            return None
        return math.sqrt(sum(e * e for e in errors) / len(errors))

    sampling = combine([weights[n] for n in runs], [error(n) for n in runs])
    return estimate(per_seed, sampling, rule)


def _all_known(values: list[float | None]) -> list[float] | None:
    """``values`` when none is missing, else None."""
    known = [value for value in values if value is not None]
    return known if len(known) == len(values) else None


def _slope_weights(runs: list[str]) -> dict[str, float]:
    """Weights whose sum over the runs is the least-squares slope along their order."""
    count = len(runs)
    centre = (count - 1) / 2
    spread = sum((k - centre) ** 2 for k in range(count))
    return {name: (k - centre) / spread for k, name in enumerate(runs)}


def _shown(result: Estimate, digits: int, unit: str) -> str:
    seeds = f"{result.seeds} seed{'s' if result.seeds > 1 else ''}"
    if result.low is None:
        return f"{result.difference:+.{digits}f}{unit} (no interval, {seeds})"
    return (
        f"{result.difference:+.{digits}f}{unit} "
        f"[{result.low:+.{digits}f}, {result.high:+.{digits}f}], {seeds}"
    )


def judge(
    claim: dict[str, Any], observed: Observations, rule: Rule | None = None, split: str = "test"
) -> Verdict:
    """The verdict of ``claim`` given what the grid measured.

    Args:
        claim: a claim mapping (checked by :func:`check_claim`).
        observed: run name -> seed -> :class:`Observed`.
        rule: the comparison's rule (default :class:`Rule`'s defaults).
        split: the split the runs were measured on (named in the verdict's text).
    """
    rule = Rule() if rule is None else rule
    check = claim["check"]
    if check == "not_testable":
        return Verdict(NOT_TESTABLE, "—", claim["reason"])
    metric = claim["metric"]
    measure, label = MEASURES[metric], measure_label(metric, split)
    names = list(claim["runs"]) + ([claim["baseline"]] if "baseline" in claim else [])
    missing = [name for name in names if not observed.get(name)]
    if missing:
        return Verdict(NOT_TESTABLE, "—", f"the grid has no finished run {missing[0]!r}")
    empty = [
        name
        for name in names
        if all(seen.values.get(metric) is None for seen in observed[name].values())
    ]
    if empty:
        return Verdict(NOT_TESTABLE, "—", f"{label} does not apply to {empty[0]!r}")

    tolerance = float(claim.get("tolerance", 0.0))
    contrasts: dict[str, tuple[dict[str, float], float]] = {}
    if check in ("lower", "higher"):
        base = claim["baseline"]
        direction = -1.0 if check == "lower" else 1.0
        for name in claim["runs"]:
            contrasts[f"{name} − {base}"] = ({name: 1.0, base: -1.0}, 0.0)
        word = "below" if check == "lower" else "above"
        text = f"{label} of every listed run {word} {base}'s"
    elif check in ("at_most", "at_least"):
        value = float(claim["value"])
        direction = -1.0 if check == "at_most" else 1.0
        for name in claim["runs"]:
            contrasts[f"{name} − {value:g}"] = ({name: 1.0}, value)
        word = "at most" if check == "at_most" else "at least"
        text = f"{label} {word} the paper's {value:g}{measure.suffix}"
    else:
        direction = 1.0 if check == "increasing" else -1.0
        contrasts["slope per step"] = (_slope_weights(list(claim["runs"])), 0.0)
        text = f"{label} {check} along the listed runs (least-squares slope per step)"
    if tolerance:
        text += f", by more than {tolerance:g}{measure.suffix}"
    estimates: dict[str, Estimate] = {}
    verdicts: list[str] = []
    for label, (weights, value) in contrasts.items():
        result = contrast(observed, weights, metric, rule, value)
        if isinstance(result, str):
            return Verdict(NOT_TESTABLE, "—", result)
        estimates[label] = result
        verdicts.append(decide(result, direction, tolerance))
    if CONTRADICTED in verdicts:
        verdict = CONTRADICTED
    elif all(v == REPRODUCED for v in verdicts):
        verdict = REPRODUCED
    else:
        verdict = INCONCLUSIVE
    means = "; ".join(
        f"{name} {_mean(observed[name], metric):.{measure.digits}f}{measure.suffix}"
        for name in names
    )
    ours = "; ".join(
        f"{label}: {_shown(e, measure.digits, measure.suffix)}" for label, e in estimates.items()
    )
    return Verdict(verdict, f"{ours} ({means})", f"claimed: {text}", estimates)


def _mean(runs: dict[int, Observed], metric: str) -> float:
    values = [seen.values[metric] for seen in runs.values() if seen.values.get(metric) is not None]
    return sum(values) / len(values)  # type: ignore[arg-type]
