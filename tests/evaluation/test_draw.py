"""marginkit.evaluation.draw: the heads the margin pictures compare."""

from __future__ import annotations

import math

import pytest

from marginkit.evaluation import comparison_heads
from marginkit.losses import ArcFace


def test_comparison_heads_put_the_run_first_and_skip_its_own_default() -> None:
    head = ArcFace(5, 2, margin=0.3)
    heads = comparison_heads(head, "arcface")
    assert next(iter(heads)) == "this run: arcface"
    assert heads["this run: arcface"] is head
    assert "arcface" not in heads and "cosface" in heads
    assert heads["camsoftmax"].hyperparameters()["c"] == pytest.approx(math.pi / 4)
