"""The statistical rule: intervals, sampling errors and verdict words."""

from __future__ import annotations

import math

import numpy as np
import pytest

from marginkit.compare.evidence import (
    Estimate,
    Rule,
    auc_error,
    combine,
    decide,
    estimate,
    proportion_error,
)
from marginkit.train import ConfigError


def test_proportion_error_is_binomial_in_points() -> None:
    assert proportion_error(99.0, 10_000) == pytest.approx(100 * math.sqrt(0.99 * 0.01 / 1e4))
    assert proportion_error(None, 10) is None and proportion_error(50.0, 0) is None


def test_auc_error_matches_a_simulation() -> None:
    """Hanley-McNeil's standard error against the spread of AUCs of simulated scores."""
    rng = np.random.default_rng(0)
    positives, negatives, shift = 200, 300, 1.0
    aucs = []
    for _ in range(400):
        pos = rng.normal(shift, 1, positives)
        neg = rng.normal(0, 1, negatives)
        aucs.append(float((pos[:, None] > neg[None, :]).mean()))
    spread = float(np.std(aucs, ddof=1))
    predicted = auc_error(float(np.mean(aucs)), positives, negatives)
    assert predicted == pytest.approx(spread, rel=0.15)


def test_combine_needs_every_weighted_error() -> None:
    assert combine([1.0, -1.0], [0.3, 0.4]) == pytest.approx(0.5)
    assert combine([1.0, 0.0], [0.3, None]) == pytest.approx(0.3)
    assert combine([1.0, -1.0], [0.3, None]) is None


def test_decide_words() -> None:
    around = Estimate(0.1, -0.2, 0.4, 3, None)
    above = Estimate(0.5, 0.2, 0.8, 3, None)
    assert decide(around, +1) == "inconclusive"
    assert decide(above, +1) == "reproduced" and decide(above, -1) == "contradicted"
    assert decide(above, +1, tolerance=0.3) == "inconclusive"
    assert decide(Estimate(0.5, None, None, 1, None), +1) == "inconclusive"


def test_identical_seeds_give_a_point_and_zero_is_inconclusive() -> None:
    result = estimate([0.0, 0.0, 0.0], None, Rule())
    assert (result.low, result.high) == (0.0, 0.0)
    assert decide(result, +1) == decide(result, -1) == "inconclusive"


def test_confidence_widens_the_interval() -> None:
    narrow = estimate([1.0, 2.0, 3.0], None, Rule(confidence=0.8))
    wide = estimate([1.0, 2.0, 3.0], None, Rule(confidence=0.99))
    assert wide.high - wide.low > narrow.high - narrow.low


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"confidence": 1.5}, "rule.confidence"),
        ({"single_seed_factor": 0}, "rule.single_seed_factor"),
        ({"colour": 1}, "unknown key 'colour'"),
        ([1], "must be a mapping"),
    ],
)
def test_bad_rules_are_one_line_errors(values: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Rule.from_dict(values)


def test_the_rule_states_itself() -> None:
    text = Rule(confidence=0.9, single_seed_factor=2).describe()
    assert "90 % interval" in text and "± 2 test-set standard errors" in text
