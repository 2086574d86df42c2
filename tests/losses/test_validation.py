"""Bad input gets a ValueError or TypeError naming the argument, before any arithmetic.

Every call is checked with ``pytest.raises(..., match=...)`` on the argument's name; a failed
call must leave the head untouched (no step taken, no schedule moved, no gradient).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from marginkit.losses import MarginHead, available, build
from marginkit.schedules import AdaptiveAngle, Constant, LinearRamp, PowerDecay, Warmup

from .runs import RUN_STEPS

CLASSES, DIM, BATCH = 5, 3, 4
ALIASES = ["amsoftmax", "asoftmax", "ArcFace", "cos-face", "am_softmax", "Sub-Center-ArcFace"]


def good_inputs() -> tuple[Tensor, Tensor]:
    return torch.randn(BATCH, DIM), torch.tensor([0, 1, 4, 2])


BAD_CALLS: list[tuple[str, Callable[[], tuple[Any, Any]], type[Exception], str]] = [
    # (id, inputs, exception, match)
    ("label-too-large", lambda: (torch.randn(4, DIM), torch.tensor([0, 1, 5, 2])), ValueError,
     r"labels must lie in \[0, 5\)"),
    ("label-negative", lambda: (torch.randn(4, DIM), torch.tensor([0, -1, 3, 2])), ValueError,
     r"labels must lie in \[0, 5\)"),
    ("labels-float", lambda: (torch.randn(4, DIM), torch.tensor([0.0, 1.0, 3.0, 2.0])),
     TypeError, r"labels must be an integer tensor"),
    ("labels-bool", lambda: (torch.randn(2, DIM), torch.tensor([True, False])), TypeError,
     r"labels must be an integer tensor"),
    ("labels-2d", lambda: (torch.randn(4, DIM), torch.zeros(4, 1, dtype=torch.long)),
     ValueError, r"labels must have shape \(batch,\)"),
    ("labels-list", lambda: (torch.randn(4, DIM), [0, 1, 2, 3]), TypeError,
     r"labels must be a torch.Tensor"),
    ("batch-sizes-differ", lambda: (torch.randn(4, DIM), torch.tensor([0, 1, 2])), ValueError,
     r"labels has 3 entries but embeddings has 4 rows"),
    ("width-not-embedding-dim", lambda: (torch.randn(4, DIM + 1), torch.tensor([0, 1, 2, 3])),
     ValueError, r"embeddings must have 3 columns \(embedding_dim\); got 4"),
    ("empty-batch", lambda: (torch.randn(0, DIM), torch.zeros(0, dtype=torch.long)), ValueError,
     r"embeddings is an empty batch"),
    ("embeddings-nan", lambda: (torch.tensor([[0.0, math.nan, 1.0]]), torch.tensor([1])),
     ValueError, r"embeddings contains NaN or infinite"),
    ("embeddings-inf", lambda: (torch.tensor([[0.0, math.inf, 1.0]]), torch.tensor([1])),
     ValueError, r"embeddings contains NaN or infinite"),
    ("embeddings-1d", lambda: (torch.randn(DIM), torch.tensor([1])), ValueError,
     r"embeddings must have shape \(batch, 3\)"),
    ("embeddings-int", lambda: (torch.ones(2, DIM, dtype=torch.long), torch.tensor([0, 1])),
     TypeError, r"embeddings must be a floating-point tensor"),
    ("embeddings-numpy", lambda: (torch.randn(2, DIM).numpy(), torch.tensor([0, 1])),
     TypeError, r"embeddings must be a torch.Tensor"),
]  # fmt: skip


@pytest.mark.parametrize("name", available())
@pytest.mark.parametrize(
    ("make", "error", "match"),
    [pytest.param(make, error, match, id=case) for case, make, error, match in BAD_CALLS],
)
def test_bad_inputs_raise_before_arithmetic(
    name: str, make: Callable[[], tuple[Any, Any]], error: type[Exception], match: str
) -> None:
    head = build(name, num_classes=CLASSES, embedding_dim=DIM)
    before = {key: value.clone() for key, value in head.state_dict().items()}
    embeddings, labels = make()
    with pytest.raises(error, match=match):
        head(embeddings, labels)
    with pytest.raises(error, match=match):
        head.margin_logits(embeddings, labels)
    after = head.state_dict()
    for key, value in before.items():  # nothing moved: no step, no schedule, no weight
        assert torch.equal(after[key], value) or (value.isnan().all() and after[key].isnan().all())
    assert head.weight.grad is None


@pytest.mark.parametrize("name", available())
def test_logits_validates_embeddings(name: str) -> None:
    head = build(name, num_classes=CLASSES, embedding_dim=DIM)
    with pytest.raises(ValueError, match=r"embeddings must have 3 columns \(embedding_dim\)"):
        head.logits(torch.randn(2, DIM + 2))
    with pytest.raises(ValueError, match="embeddings is an empty batch"):
        head.logits(torch.randn(0, DIM))
    with pytest.raises(ValueError, match="embeddings contains NaN or infinite"):
        head.logits(torch.full((2, DIM), math.nan))
    with pytest.raises(TypeError, match="embeddings must be a floating-point tensor"):
        head.logits(torch.ones(2, DIM, dtype=torch.int32))


def test_valid_inputs_pass() -> None:
    """The checks accept every valid input (the negative tests above are not vacuous)."""
    embeddings, labels = good_inputs()
    for name in available():
        head = build(name, num_classes=CLASSES, embedding_dim=DIM).set_total_steps(RUN_STEPS)
        assert torch.isfinite(head(embeddings, labels))
        assert torch.isfinite(head(embeddings, labels.int()))  # any integer dtype


BAD_HYPERPARAMETERS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("lsoftmax", {"margin": 0}, ValueError, r"margin must be an integer m >= 1; got 0"),
    ("lsoftmax", {"margin": -2}, ValueError, r"margin must be an integer m >= 1"),
    ("lsoftmax", {"margin": 2.0}, TypeError, r"margin must be an integer m >= 1; got 2.0"),
    ("lsoftmax", {"margin": 1.5}, TypeError, r"margin must be an integer"),
    ("lsoftmax", {"margin": True}, TypeError, r"margin must be an integer"),
    ("sphereface", {"margin": 0}, ValueError, r"margin must be an integer m >= 1"),
    ("sphereface", {"margin": 3.5}, TypeError, r"margin must be an integer"),
    ("lsoftmax", {"lambda_": -1.0}, ValueError, r"lambda_ must lie in \[0.0, inf\]"),
    ("lsoftmax", {"lambda_": math.nan}, ValueError, r"lambda_ must be finite"),
    ("sphereface", {"lambda_": -0.5}, ValueError, r"lambda_ must lie in"),
    *[(name, {"scale": 0.0}, ValueError, r"scale must lie in \(0.0, 10000.0\]")
      for name in ("normface", "cosface", "arcface", "combined", "camsoftmax")],
    *[(name, {"scale": -3.0}, ValueError, r"scale must lie in \(0.0, 10000.0\]")
      for name in ("normface", "cosface", "arcface", "combined", "camsoftmax")],
    ("normface", {"scale": math.inf}, ValueError, r"scale must be finite"),
    ("normface", {"scale": torch.tensor(3.0)}, TypeError, r"scale must be a float or a"),
    ("cosface", {"margin": -0.1}, ValueError, r"margin must lie in \[0.0, 2.0\)"),
    ("cosface", {"margin": 2.0}, ValueError, r"margin must lie in \[0.0, 2.0\)"),
    ("arcface", {"margin": -0.1}, ValueError, r"margin must lie in \[0.0, 3.14159"),
    ("arcface", {"margin": math.pi}, ValueError, r"margin must lie in \[0.0, 3.14159\d*\)"),
    ("arcface", {"margin": 4.0}, ValueError, r"margin must lie in"),
    ("combined", {"multiplicative": 0.5}, ValueError, r"multiplicative must lie in \[1.0, inf\]"),
    ("combined", {"angular": -0.1}, ValueError, r"angular must lie in \[0.0, 3.14159"),
    ("combined", {"angular": math.pi}, ValueError, r"angular must lie in"),
    ("combined", {"additive": -0.2}, ValueError, r"additive must lie in \[0.0, 2.0\)"),
    ("camsoftmax", {"c": 0.0}, ValueError, r"c must lie in \(0.0, 3.14159\d*\)"),
    ("camsoftmax", {"c": math.pi}, ValueError, r"c must lie in \(0.0, 3.14159\d*\)"),
    ("camsoftmax", {"c": -0.3}, ValueError, r"c must lie in"),
    ("camsoftmax", {"c": 3.5}, ValueError, r"c must lie in"),
    ("camsoftmax", {"c": math.nan}, ValueError, r"c must be finite"),
    ("camsoftmax", {"normalize": 1}, TypeError, r"normalize must be a bool"),
    ("softmax", {"bias": 1}, TypeError, r"bias must be a bool"),
    ("normface", {"learn_scale": "yes"}, TypeError, r"learn_scale must be a bool"),
    ("normface", {"learn_scale": True, "scale": Warmup(16.0, 10, start=1.0)}, TypeError,
     r"scale must be a float when learn_scale=True"),
    # schedules whose range leaves the valid interval
    ("arcface", {"margin": Warmup(4.0, steps=10)}, ValueError,
     r"margin must lie in .*a schedule spanning 0.0..4.0"),
    ("cosface", {"margin": Warmup(0.35, steps=10, start=-0.1)}, ValueError,
     r"margin must lie in .*a schedule spanning -0.1..0.35"),
    ("camsoftmax", {"c": LinearRamp(start=math.pi / 2, end=0.0, rate=1e-3)}, ValueError,
     r"c must lie in .*a schedule spanning 0.0..1.57"),
    ("camsoftmax", {"c": LinearRamp(start=math.pi / 2, end=3.2, rate=1e-3)}, ValueError,
     r"c must lie in .*a schedule spanning 1.57\d*..3.2"),
    ("camsoftmax", {"c": AdaptiveAngle(start=3.0, minimum=0.5)}, None, ""),  # valid: no error
    ("lsoftmax", {"lambda_": LinearRamp(start=1.0, end=-1.0, rate=0.1)}, ValueError,
     r"lambda_ must lie in .*a schedule spanning -1.0..1.0"),
    ("normface", {"scale": LinearRamp(start=0.0, end=16.0, rate=0.1)}, ValueError,
     r"scale must lie in .*a schedule spanning 0.0..16.0"),
    ("combined", {"angular": PowerDecay(base=4.0, gamma=0.1, power=1.0)}, ValueError,
     r"angular must lie in .*a schedule spanning 0.0..4.0"),
    # the constructor's own arguments
    ("arcface", {"num_classes": 1}, ValueError, r"num_classes must be >= 2; got 1"),
    ("arcface", {"num_classes": 5.0}, TypeError, r"num_classes must be an int"),
    ("arcface", {"embedding_dim": 0}, ValueError, r"embedding_dim must be >= 1; got 0"),
    ("arcface", {"embedding_dim": "3"}, TypeError, r"embedding_dim must be an int"),
    ("arcface", {"margin_degrees": 28.6}, TypeError, r"margin_degrees"),
]  # fmt: skip


def hyperparameter_id(case: tuple[str, dict[str, Any], Any, str]) -> str:
    name, kwargs, _, _ = case
    return name + "".join(f"-{key}={value!r}"[:40] for key, value in kwargs.items())


@pytest.mark.parametrize("case", BAD_HYPERPARAMETERS, ids=hyperparameter_id)
def test_bad_hyperparameters_raise(case: tuple[str, dict[str, Any], Any, str]) -> None:
    name, kwargs, error, match = case
    arguments: dict[str, Any] = {"num_classes": CLASSES, "embedding_dim": DIM, **kwargs}
    if error is None:
        head = build(name, **arguments)
        assert isinstance(head, MarginHead)
        return
    with pytest.raises(error, match=match):
        build(name, **arguments)


@pytest.mark.parametrize(
    ("name", "argument"),
    [("normface", "scale"), ("arcface", "margin"), ("camsoftmax", "c"), ("lsoftmax", "lambda_")],
)
def test_non_number_hyperparameter_names_the_argument(name: str, argument: str) -> None:
    with pytest.raises(TypeError, match=rf"^{argument} must be"):
        build(name, num_classes=CLASSES, embedding_dim=DIM, **{argument: "0.5"})


def test_unknown_registry_name() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'nope'; expected one of: softmax"):
        build("nope", num_classes=CLASSES, embedding_dim=DIM)
    with pytest.raises(TypeError, match=r"name must be a str; got int"):
        build(3, num_classes=CLASSES, embedding_dim=DIM)  # type: ignore[arg-type]


@pytest.mark.parametrize("alias", ALIASES)
def test_aliases_resolve(alias: str) -> None:
    head = build(alias, num_classes=CLASSES, embedding_dim=DIM)
    assert type(head).__name__ in {"CosFace", "SphereFace", "ArcFace", "SubCenterArcFace"}


BAD_SCHEDULES: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: PowerDecay(base=1000.0, gamma=0.0, power=1.0), ValueError, r"gamma must be > 0"),
    (lambda: PowerDecay(base=1000.0, gamma=0.1, power=-1.0), ValueError, r"power must be >= 0"),
    (lambda: PowerDecay(base=10.0, gamma=0.1, power=1.0, minimum=20.0), ValueError,
     r"minimum must lie in \[0, base=10.0\]"),
    (lambda: PowerDecay(base=10.0, gamma=0.1, power=1.0, minimum=-1.0), ValueError,
     r"minimum must lie in"),
    (lambda: PowerDecay(base=math.nan, gamma=0.1, power=1.0), ValueError, r"base must be finite"),
    (lambda: PowerDecay(base="1", gamma=0.1, power=1.0), TypeError, r"base must be a real"),
    (lambda: LinearRamp(start=1.0, end=0.0, rate=0.0), ValueError, r"rate must be > 0"),
    (lambda: LinearRamp(start=1.0, end=math.inf, rate=0.1), ValueError, r"end must be finite"),
    (lambda: Warmup(0.5, steps=0), ValueError, r"steps must be an integer >= 1"),
    (lambda: Warmup(0.5, steps=10.5), ValueError, r"steps must be an integer >= 1"),
    (lambda: Warmup(math.nan, steps=10), ValueError, r"target must be finite"),
    (lambda: AdaptiveAngle(start=1.0, minimum=1.2), ValueError, r"need 0 < minimum <= start"),
    (lambda: AdaptiveAngle(start=math.pi), ValueError, r"need 0 < minimum <= start < pi"),
    (lambda: AdaptiveAngle(minimum=0.0), ValueError, r"need 0 < minimum"),
    (lambda: AdaptiveAngle(quantile=1.0), ValueError, r"quantile must lie in \(0, 1\)"),
    (lambda: AdaptiveAngle(momentum=0.0), ValueError, r"momentum must lie in \(0, 1\]"),
    (lambda: AdaptiveAngle(rate=-1e-4), ValueError, r"rate must be > 0"),
    (lambda: Constant(math.inf), ValueError, r"value must be finite"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "error", "match"), BAD_SCHEDULES)
def test_bad_schedule_arguments_raise(
    make: Callable[[], Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("name", ["normface", "cosface", "arcface", "combined", "camsoftmax"])
def test_a_scale_that_overflows_float32_is_refused(name: str) -> None:
    """``scale=1e38`` used to be accepted and gave NaN."""
    with pytest.raises(ValueError, match=r"scale must lie in \(0.0, 10000.0\]; got 1e\+38"):
        build(name, num_classes=CLASSES, embedding_dim=DIM, scale=1e38)
    with pytest.raises(ValueError, match=r"scale must lie in"):
        build(name, num_classes=CLASSES, embedding_dim=DIM, scale=Warmup(2e4, 10))
    head = build(name, num_classes=CLASSES, embedding_dim=DIM, scale=1e4).set_total_steps(10)
    embeddings, labels = good_inputs()
    assert torch.isfinite(head(embeddings, labels))


def test_normface_learned_scale_is_bounded_too() -> None:
    with pytest.raises(ValueError, match=r"scale must lie in"):
        build("normface", num_classes=CLASSES, embedding_dim=DIM, scale=1e38, learn_scale=True)


@pytest.mark.parametrize("where", ["embeddings", "labels", "weight"])
def test_meta_device_tensors_are_one_line_errors(where: str) -> None:
    head = build("arcface", num_classes=CLASSES, embedding_dim=DIM)
    embeddings, labels = good_inputs()
    if where == "embeddings":
        embeddings = embeddings.to("meta")
    elif where == "labels":
        labels = labels.to("meta")
    else:
        head = head.to("meta")
    for call in (lambda: head(embeddings, labels), lambda: head.margin_logits(embeddings, labels)):
        with pytest.raises(ValueError, match=rf"^{where} is on the meta device") as caught:
            call()
        assert "\n" not in str(caught.value)
