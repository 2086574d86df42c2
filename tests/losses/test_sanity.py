"""Scale and margin sanity warnings: once for a hopeless setting, silent for the defaults."""

from __future__ import annotations

import math
import warnings

import pytest

from marginkit.losses import ArcFace, CosFace, NormFace, available, build, sanity
from marginkit.losses.sanity import MarginWarning, margin_limit, neighbour_angle, scale_bound
from marginkit.schedules import Warmup
from marginkit.train import recipe
from marginkit.train.config import TrainConfig, loss_kwargs


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no configuration warned about yet."""
    monkeypatch.setattr(sanity, "_WARNED", set())


def _margin_warnings(make) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make()
    return [str(w.message) for w in caught if issubclass(w.category, MarginWarning)]


def test_neighbour_angle_is_the_circle_and_the_simplex() -> None:
    assert neighbour_angle(10, 2) == pytest.approx(2 * math.pi / 10)
    assert neighbour_angle(4, 3) == pytest.approx(math.acos(-1 / 3))  # tetrahedron, 109.47 deg
    assert neighbour_angle(2, 2) == pytest.approx(math.pi) == neighbour_angle(2, 50)
    assert neighbour_angle(3, 1) == 0.0


def test_margin_limits_are_the_quarter_spacing_rule_of_the_recipes_doc() -> None:
    """docs/recipes.md: ten classes in 2-D allow ArcFace 0.314 and CosFace 0.0967."""
    assert margin_limit("angular", 10, 2) == pytest.approx(math.pi / 10)
    assert margin_limit("cosine", 10, 2) == pytest.approx(0.0967, abs=5e-5)
    with pytest.raises(ValueError, match=r"^kind must be"):
        margin_limit("additive", 10, 2)


def test_recipe_uses_the_same_scale_bound() -> None:
    assert recipe.scale_bound is scale_bound


def test_too_small_scale_warns_once_saying_what_to_change() -> None:
    messages = _margin_warnings(lambda: [NormFace(10, 8, scale=2.0) for _ in range(3)])
    assert len(messages) == 1
    bound = scale_bound(10, 0.99)  # 6.11
    assert messages[0].startswith("NormFace: scale 2 is below 6.11")
    assert f"use scale >= {math.ceil(bound)}" in messages[0]
    assert _margin_warnings(lambda: NormFace(10, 8, scale=6.2)) == []


def test_arcface_half_radian_with_ten_classes_in_two_dimensions_warns_once() -> None:
    messages = _margin_warnings(lambda: [ArcFace(10, 2, margin=0.5) for _ in range(2)])
    assert len(messages) == 1
    assert "margin 0.5 leaves no room between 10 classes in 2 dimensions" in messages[0]
    assert "36.0 degrees" in messages[0] and "use margin < 0.3142" in messages[0]
    assert _margin_warnings(lambda: ArcFace(10, 2, margin=0.3)) == []
    assert _margin_warnings(lambda: ArcFace(10, 3, margin=0.5)) == []  # simplex bound: room


def test_margin_schedule_is_checked_at_its_largest_value() -> None:
    messages = _margin_warnings(lambda: ArcFace(10, 2, margin=Warmup(0.5, fraction=0.2)))
    assert len(messages) == 1
    assert _margin_warnings(lambda: CosFace(10, 2, margin=0.09)) == []
    assert len(_margin_warnings(lambda: CosFace(10, 2, margin=0.1))) == 1


@pytest.mark.parametrize("name", available())
def test_defaults_are_silent_at_ten_classes_in_128_dimensions(name: str) -> None:
    assert _margin_warnings(lambda: build(name, 10, 128)) == []


@pytest.mark.parametrize("num_classes", [10, 100_000])
@pytest.mark.parametrize("name", available())
def test_marginkit_recipe_resolved_config_is_silent(name: str, num_classes: int) -> None:
    """The recipe raises NormFace's and Cam-softmax's scale to the bound at P = 0.999."""
    config = recipe.apply_recipe(TrainConfig(loss=name), num_classes, (1, 8, 8))
    arguments = loss_kwargs(config.loss_args)
    assert _margin_warnings(lambda: build(name, num_classes, 16, **arguments)) == []


@pytest.mark.parametrize("name", available())
def test_paper_recipe_is_silent_at_ten_classes(name: str) -> None:
    config = recipe.apply_recipe(TrainConfig(loss=name, recipe="paper"), 10, (1, 8, 8))
    arguments = loss_kwargs(config.loss_args)
    assert _margin_warnings(lambda: build(name, 10, 16, **arguments)) == []


def test_paper_recipe_keeps_normface_16_and_is_told_at_100_000_classes() -> None:
    """The paper recipe keeps NormFace's 16, below the 0.99 bound (16.11) at C = 100,000."""
    config = recipe.apply_recipe(TrainConfig(loss="normface", recipe="paper"), 100_000, (1, 8, 8))
    arguments = loss_kwargs(config.loss_args)
    messages = _margin_warnings(lambda: build("normface", 100_000, 16, **arguments))
    assert len(messages) == 1 and "use scale >= 17" in messages[0]


def test_heads_built_unchecked_warn_nothing_and_are_not_counted(
    recwarn: pytest.WarningsRecorder,
) -> None:
    from marginkit.losses import ArcFace
    from marginkit.losses.sanity import MarginWarning, unchecked

    with unchecked():
        ArcFace(num_classes=13, embedding_dim=2)  # m = 0.5 > pi / 13: would warn
    assert not [w for w in recwarn if issubclass(w.category, MarginWarning)]
    with pytest.warns(MarginWarning, match="13 classes in 2 dimensions"):
        ArcFace(num_classes=13, embedding_dim=2)  # outside: warned about, once
