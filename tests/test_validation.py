"""The shared argument checks: one ``check_count``, array checkers taking the name first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from marginkit._validation import (
    as_flags,
    as_labels,
    as_matrix,
    as_vector,
    check_count,
    check_same_length,
)
from marginkit.losses import ArcFace
from marginkit.models import build_backbone
from marginkit.schedules import Warmup


def test_check_count_returns_the_value() -> None:
    assert check_count("bins", 2, 2) == 2
    assert check_count("seed", 0, 0) == 0


@pytest.mark.parametrize("value", [2.0, "2", None, True])
def test_check_count_refuses_a_non_int_with_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match=rf"^bins must be an int; got {type(value).__name__}$"):
        check_count("bins", value, 2)


def test_check_count_refuses_a_small_int_with_value_error() -> None:
    with pytest.raises(ValueError, match=r"^bins must be >= 2; got 1$"):
        check_count("bins", 1, 2)


CALLERS: dict[str, Callable[[Any], object]] = {
    "head": lambda value: ArcFace(num_classes=3, embedding_dim=value),
    "backbone": lambda value: build_backbone("mlp", (4,), value),
    "schedule": lambda value: Warmup(0.5, steps=10).set_total_steps(value),
}


@pytest.mark.parametrize("caller", list(CALLERS))
def test_every_package_raises_the_same_types(caller: str) -> None:
    with pytest.raises(TypeError, match="must be an int; got float"):
        CALLERS[caller](2.0)
    with pytest.raises(ValueError, match="must be >= 1; got 0"):
        CALLERS[caller](0)


def test_array_checkers_take_the_name_first() -> None:
    assert as_labels("labels", [2, 0, 1]).dtype == torch.int64
    assert as_matrix("embeddings", np.ones((2, 3))).dtype == torch.float64
    assert as_vector("scores", (0.5, 1.5)).shape == (2,)
    assert as_flags("same", [0, 1, 1]).tolist() == [False, True, True]
    with pytest.raises(ValueError, match=r"labels must be >= 0; got a minimum of -1"):
        as_labels("labels", [0, -1])
    with pytest.raises(TypeError, match="labels must be an integer array"):
        as_labels("labels", [0.5])


def test_check_same_length_names_every_argument() -> None:
    with pytest.raises(ValueError, match="embeddings has 2, labels has 3"):
        check_same_length(embeddings=torch.zeros(2, 4), labels=torch.zeros(3))
