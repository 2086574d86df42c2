"""The verdict rules of the papers' claims, on made-up statistics."""

from __future__ import annotations

import pytest

from marginkit.compare.claims import check_claim, judge
from marginkit.train import ConfigError


def claim(check: str, **extra: object) -> dict[str, object]:
    return {"claim": "c", "source": "s", "check": check, "metric": "test_error", **extra}


STATS = {
    "softmax": {"test_error": (1.0, 0.05)},
    "lsoftmax": {"test_error": (0.8, 0.05)},
    "noisy": {"test_error": (0.9, 0.2)},
    "single": {"test_error": (0.5, None)},
}


def test_lower_needs_a_difference_beyond_the_seeds_spread() -> None:
    assert judge(claim("lower", runs=["lsoftmax"], baseline="softmax"), STATS).verdict == (
        "reproduced"
    )
    assert judge(claim("lower", runs=["noisy"], baseline="softmax"), STATS).verdict == (
        "not reproduced"
    )
    assert judge(claim("higher", runs=["lsoftmax"], baseline="softmax"), STATS).verdict == (
        "not reproduced"
    )
    tolerant = claim("lower", runs=["lsoftmax"], baseline="softmax", tolerance=0.3)
    assert judge(tolerant, STATS).verdict == "not reproduced"
    assert "one seed" not in judge(tolerant, STATS).rule
    single = judge(claim("lower", runs=["single"], baseline="softmax"), STATS)
    assert single.verdict == "reproduced" and "one seed: the spread" in single.rule


def test_at_most_compares_with_the_papers_number() -> None:
    assert judge(claim("at_most", runs=["single"], value=0.4, tolerance=0.1), STATS).verdict == (
        "reproduced"
    )
    verdict = judge(claim("at_most", runs=["lsoftmax"], value=0.31), STATS)
    assert verdict.verdict == "not reproduced" and "lsoftmax 0.80 ± 0.05 %" in verdict.ours


def test_trends_use_rank_correlation() -> None:
    down = claim("decreasing", runs=["softmax", "noisy", "lsoftmax", "single"])
    verdict = judge(down, STATS)
    assert verdict.verdict == "reproduced" and "ρ = -1.00" in verdict.ours
    assert judge(claim("increasing", runs=["softmax", "lsoftmax"]), STATS).verdict == (
        "not reproduced"
    )


def test_missing_runs_and_measures_are_not_testable() -> None:
    verdict = judge(claim("lower", runs=["arcface"], baseline="softmax"), STATS)
    assert verdict.verdict == "not testable here" and "no run 'arcface'" in verdict.rule
    stats = {"softmax": {"test_error": (1.0, None), "open_set_auroc": None}}
    absent = {**claim("at_least", runs=["softmax"], value=0.9), "metric": "open_set_auroc"}
    assert "does not apply" in judge(absent, stats).rule


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
