"""The verdicts of the papers' claims, on made-up measurements over seeds."""

from __future__ import annotations

import pytest

from marginkit.compare.claims import Observed, check_claim, judge
from marginkit.compare.evidence import Rule
from marginkit.train import ConfigError


def claim(check: str, **extra: object) -> dict[str, object]:
    return {"claim": "c", "source": "s", "check": check, "metric": "test_error", **extra}


def runs(*per_seed: float, error: float | None = None) -> dict[int, Observed]:
    """A run measured at seeds 0, 1, ... with ``test_error`` values ``per_seed``."""
    return {
        seed: Observed({"test_error": value}, {"test_error": error})
        for seed, value in enumerate(per_seed)
    }


def test_equal_numbers_are_inconclusive() -> None:
    observed = {"a": runs(0.9365, 0.9365, 0.9365), "b": runs(0.9365, 0.9365, 0.9365)}
    for check in ("lower", "higher"):
        assert judge(claim(check, runs=["a"], baseline="b"), observed).verdict == "inconclusive"
    one = {"a": runs(0.9365, error=0.02), "b": runs(0.9365, error=0.02)}
    assert judge(claim("higher", runs=["a"], baseline="b"), one).verdict == "inconclusive"


def test_a_large_clean_effect_over_three_seeds() -> None:
    observed = {"softmax": runs(1.00, 1.10, 0.95), "lsoftmax": runs(0.70, 0.81, 0.64)}
    lower = judge(claim("lower", runs=["lsoftmax"], baseline="softmax"), observed)
    assert lower.verdict == "reproduced"
    estimate = lower.estimates["lsoftmax − softmax"]
    assert estimate.seeds == 3 and estimate.difference == pytest.approx(-0.3)
    assert estimate.high is not None and estimate.high < 0
    assert "3 seeds" in lower.ours
    higher = judge(claim("higher", runs=["lsoftmax"], baseline="softmax"), observed)
    assert higher.verdict == "contradicted"


def test_the_interval_is_a_paired_t_interval_widened_by_test_sampling() -> None:
    observed = {"a": runs(2.0, 3.0, 4.0), "b": runs(1.0, 1.0, 1.0)}  # differences 1, 2, 3
    seeds_only = judge(claim("higher", runs=["a"], baseline="b"), observed).estimates["a − b"]
    half = 4.302652729911275 * 1.0 / 3**0.5  # t(0.975, 2) * sd / sqrt(n)
    assert (seeds_only.low, seeds_only.high) == pytest.approx((2 - half, 2 + half))
    noisy = {"a": runs(2.0, 3.0, 4.0, error=0.3), "b": runs(1.0, 1.0, 1.0, error=0.4)}
    widened = judge(claim("higher", runs=["a"], baseline="b"), noisy).estimates["a − b"]
    sampling = (0.3**2 + 0.4**2) ** 0.5
    assert widened.sampling_error == pytest.approx(sampling)
    expected = (half**2 + (1.959963984540054 * sampling) ** 2) ** 0.5
    assert widened.high - widened.difference == pytest.approx(expected)


def test_one_seed_needs_the_stated_multiple_of_the_sampling_error() -> None:
    big = {"a": runs(0.5, error=0.05), "b": runs(1.0, error=0.05)}  # 0.5 > 3 * 0.0707
    small = {"a": runs(0.9, error=0.05), "b": runs(1.0, error=0.05)}  # 0.1 < 3 * 0.0707
    unknown = {"a": runs(0.1), "b": runs(1.0)}  # no sampling error: no interval
    lower = claim("lower", runs=["a"], baseline="b")
    assert judge(lower, big).verdict == "reproduced"
    assert judge(lower, small).verdict == "inconclusive"
    assert judge(lower, small, Rule(single_seed_factor=1.0)).verdict == "reproduced"
    verdict = judge(lower, unknown)
    assert verdict.verdict == "inconclusive" and "no interval" in verdict.ours


def test_tolerance_is_the_smallest_effect_that_counts() -> None:
    observed = {"softmax": runs(1.00, 1.10, 0.95), "lsoftmax": runs(0.70, 0.81, 0.64)}
    tolerant = claim("lower", runs=["lsoftmax"], baseline="softmax", tolerance=0.5)
    assert judge(tolerant, observed).verdict == "inconclusive"


def test_at_most_compares_with_the_papers_number() -> None:
    observed = {"a": runs(0.30, 0.32, 0.31), "b": runs(0.50, 0.52, 0.49)}
    assert judge(claim("at_most", runs=["a"], value=0.4), observed).verdict == "reproduced"
    verdict = judge(claim("at_most", runs=["b"], value=0.31), observed)
    assert verdict.verdict == "contradicted" and "b 0.50 %" in verdict.ours
    assert judge(claim("at_least", runs=["a"], value=0.31), observed).verdict == "inconclusive"


def test_trends_use_the_slope_along_the_runs() -> None:
    observed = {
        "m1": runs(1.0, 1.1, 0.9),
        "m2": runs(0.8, 0.9, 0.7),
        "m3": runs(0.6, 0.7, 0.5),
    }
    down = judge(claim("decreasing", runs=["m1", "m2", "m3"]), observed)
    assert down.verdict == "reproduced"
    assert down.estimates["slope per step"].difference == pytest.approx(-0.2)
    up = judge(claim("increasing", runs=["m1", "m2", "m3"]), observed)
    assert up.verdict == "contradicted"


def test_several_runs_any_contradiction_wins() -> None:
    observed = {
        "base": runs(1.0, 1.0, 1.0),
        "good": runs(0.5, 0.6, 0.4),
        "bad": runs(1.5, 1.6, 1.4),
        "same": runs(1.1, 0.9, 1.0),
    }
    assert judge(claim("lower", runs=["good", "bad"], baseline="base"), observed).verdict == (
        "contradicted"
    )
    assert judge(claim("lower", runs=["good", "same"], baseline="base"), observed).verdict == (
        "inconclusive"
    )


def test_only_the_seeds_both_runs_have_are_paired() -> None:
    observed = {"a": runs(0.5, 0.6, 0.4), "b": runs(1.0)}
    result = judge(claim("lower", runs=["a"], baseline="b"), observed).estimates["a − b"]
    assert result.seeds == 1 and result.difference == pytest.approx(-0.5)


def test_missing_runs_and_measures_are_not_testable() -> None:
    observed = {"softmax": runs(1.0)}
    verdict = judge(claim("lower", runs=["arcface"], baseline="softmax"), observed)
    assert verdict.verdict == "not testable here" and "no finished run 'arcface'" in verdict.rule
    absent = {**claim("at_least", runs=["softmax"], value=0.9), "metric": "unseen_rank1"}
    assert "does not apply" in judge(absent, observed).rule


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (claim("sideways", runs=["a"]), "check must be one of"),
        (claim("lower", runs=["a"]), "needs a baseline"),
        (claim("at_most", runs=["a"]), "needs a numeric value"),
        (claim("increasing", runs=["a"]), "at least two runs"),
        ({**claim("lower", runs=["a"], baseline="b"), "metric": "nope"}, "metric must be one of"),
        ({"claim": "c", "source": "s", "check": "not_testable"}, "needs a reason"),
        ({**claim("lower", runs=["a"], baseline="b"), "colour": 1}, "unknown key 'colour'"),
        ({**claim("lower", runs=["a"], baseline="b"), "note": 3}, "note must be text"),
    ],
)
def test_malformed_claims_are_one_line_errors(bad: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as error:
        check_claim(bad, "preset x: claims[0]")
    assert str(error.value).startswith("preset x: claims[0]")
    assert "\n" not in str(error.value)
