"""MagFace (Meng, Zhao, Huang, Zhou, CVPR 2021) against a naive float64 reference written from
the paper: loss, logits and gradients; gradcheck; NaN-free edges; validation; state; quality.

The reference loops over samples and classes with scalar math, takes ``acos`` directly and
clamps the magnitude by hand (a constant outside ``[l_a, u_a]``): the paper's

    L = mean_i [-log softmax_i(y_i)] + lambda_g mean_i (1 / a_i + a_i / u_a^2),

target logit ``s cos(theta_y + m(a_i))`` (the chosen continuation past ``theta_y + m = pi``),
``m(a) = (u_m - l_m) / (u_a - l_a) (a - l_a) + l_m``, other logits ``s cos(theta_j)``.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from marginkit.losses import sanity
from marginkit.losses.functional import arcface_easy_target, arcface_target
from marginkit.losses.magface import MagFace, regularizer_bound
from marginkit.losses.sanity import MarginWarning
from marginkit.schedules import Warmup

from .reference import edge_embeddings

# The margin check rightly warns for 5 classes on a circle at u_m = 0.8; not the subject here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:MagFace. margin:marginkit.losses.sanity.MarginWarning"
)

CLASSES, BATCH = 5, 12
DEFAULTS: dict[str, Any] = {
    "scale": 64.0,
    "lower_margin": 0.45,
    "upper_margin": 0.8,
    "lower_magnitude": 10.0,
    "upper_magnitude": 110.0,
    "regularizer_weight": 35.0,
    "fallback": "insightface",
}


# ------------------------------------------------------------------------------ reference
def clamped_magnitude(norm: Tensor, lower: float, upper: float) -> Tensor:
    """``a = ||x||`` inside ``[lower, upper]``; outside, the bound as a constant."""
    if float(norm.detach()) < lower:
        return torch.tensor(lower, dtype=norm.dtype)
    if float(norm.detach()) > upper:
        return torch.tensor(upper, dtype=norm.dtype)
    return norm


def reference_logits(x: Tensor, w: Tensor, labels: Tensor, **hyper: Any) -> Tensor:
    """(B, C) training logits of the paper's formula, one scalar at a time."""
    scale = hyper["scale"]
    lower_m, upper_m = hyper["lower_margin"], hyper["upper_margin"]
    lower_a, upper_a = hyper["lower_magnitude"], hyper["upper_magnitude"]
    rows = []
    for i in range(x.shape[0]):
        norm = torch.sqrt((x[i] * x[i]).sum())
        a = clamped_magnitude(norm, lower_a, upper_a)
        m = (upper_m - lower_m) / (upper_a - lower_a) * (a - lower_a) + lower_m
        row = []
        for j in range(w.shape[0]):
            cosine = (x[i] * w[j]).sum() / (norm * torch.sqrt((w[j] * w[j]).sum()))
            if j != int(labels[i]):
                row.append(scale * cosine)
                continue
            theta = torch.acos(cosine)
            if hyper["fallback"] == "easy":
                target = torch.cos(theta + m) if float(cosine.detach()) > 0 else cosine
            elif float((theta + m).detach()) <= math.pi:
                target = torch.cos(theta + m)
            elif hyper["fallback"] == "continuous":
                target = cosine - (1.0 - torch.cos(m))
            else:
                target = cosine - m * torch.sin(m)
            row.append(scale * target)
        rows.append(torch.stack(row))
    return torch.stack(rows)


def reference_loss(x: Tensor, w: Tensor, labels: Tensor, **hyper: Any) -> Tensor:
    """Mean cross-entropy of :func:`reference_logits` plus ``lambda_g`` times mean ``g(a)``."""
    logits = reference_logits(x, w, labels, **hyper)
    lower_a, upper_a = hyper["lower_magnitude"], hyper["upper_magnitude"]
    total = torch.zeros((), dtype=x.dtype)
    for i in range(x.shape[0]):
        target = logits[i, int(labels[i])]
        total = total + torch.log(torch.exp(logits[i] - target).sum())
        a = clamped_magnitude(torch.sqrt((x[i] * x[i]).sum()), lower_a, upper_a)
        total = total + hyper["regularizer_weight"] * (1.0 / a + a / upper_a**2)
    return total / x.shape[0]


# ------------------------------------------------------------------------------- helpers
def make(dim: int, dtype: torch.dtype = torch.float64, seed: int = 0, **kwargs: Any) -> MagFace:
    torch.manual_seed(seed)
    return MagFace(CLASSES, dim, **kwargs).to(dtype)


def batch(dim: int, seed: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Embeddings with norms from 4 to 140 (some below l_a = 10, some above u_a = 110)."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(BATCH, dim, dtype=torch.float64, generator=generator)
    directions = directions / directions.norm(dim=1, keepdim=True)
    norms = torch.linspace(4.0, 140.0, BATCH, dtype=torch.float64)
    norms = norms[torch.randperm(BATCH, generator=generator)]
    labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    return (directions * norms.unsqueeze(1)).to(dtype), labels


def hyper_of(head: MagFace) -> dict[str, Any]:
    values = head.hyperparameters()
    return {
        "scale": values["scale"],
        "lower_margin": values["lower_margin"],
        "upper_margin": values["upper_margin"],
        "lower_magnitude": head.lower_magnitude,
        "upper_magnitude": head.upper_magnitude,
        "regularizer_weight": head.regularizer_weight,
        "fallback": head.fallback,
    }


def head_and_reference_gradients(
    head: MagFace, embeddings: Tensor, labels: Tensor
) -> tuple[list[Tensor], list[Tensor]]:
    """(loss, d/dx, d/dW[, d/d log_scale]) of the head's forward and of the reference."""
    hyper = hyper_of(head)  # the values in force for this step
    x = embeddings.clone().requires_grad_(True)
    loss = head(x, labels)
    loss.backward()
    got = [loss.detach(), x.grad, head.weight.grad]
    x_ref = embeddings.clone().requires_grad_(True)
    w_ref = head.weight.detach().clone().requires_grad_(True)
    inputs = [x_ref, w_ref]
    if head.log_scale is not None:
        log_scale = head.log_scale.detach().clone().requires_grad_(True)
        hyper["scale"] = log_scale.exp()
        inputs.append(log_scale)
        got.append(head.log_scale.grad)
    expected_loss = reference_loss(x_ref, w_ref, labels, **hyper)
    expected = [expected_loss.detach(), *torch.autograd.grad(expected_loss, inputs)]
    return got, expected


# ----------------------------------------------------------------------------- reference
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dim", [2, 8])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"scale": 16.0, "learn_scale": True}, {"fallback": "continuous"}, {"fallback": "easy"}],
    ids=["defaults", "learned-scale", "continuous", "easy"],
)
def test_loss_and_gradients_match_the_reference(
    kwargs: dict[str, Any], dim: int, seed: int, training: bool
) -> None:
    head = make(dim, seed=seed, **kwargs).train(training)
    embeddings, labels = batch(dim, seed)
    got, expected = head_and_reference_gradients(head, embeddings, labels)
    for value, reference in zip(got, expected, strict=True):
        torch.testing.assert_close(value, reference, rtol=1e-10, atol=1e-10)
    assert int(head.step) == (1 if training else 0)


@pytest.mark.parametrize("fallback", ["insightface", "continuous", "easy"])
def test_the_continuation_past_pi_is_exercised_and_matches(fallback: str) -> None:
    """Targets nearly opposite their class (theta + m > pi) take the chosen continuation."""
    dim = 8
    head = make(dim, seed=3, fallback=fallback, scale=16.0)
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    noise = 0.2 * torch.randn(BATCH, dim, dtype=torch.float64, generator=generator)
    unit = -head.weight.detach()[labels] / head.weight.detach()[labels].norm(dim=1, keepdim=True)
    embeddings = 50.0 * (unit + noise)
    cosine = F.cosine_similarity(embeddings, head.weight.detach()[labels], dim=1)
    assert bool((torch.acos(cosine) + 0.8 > math.pi).any())  # some past the switch
    got, expected = head_and_reference_gradients(head, embeddings, labels)
    for value, reference in zip(got, expected, strict=True):
        torch.testing.assert_close(value, reference, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dim", [2, 16])
def test_margin_logits_are_the_reference_logits(dim: int, training: bool) -> None:
    head = make(dim, seed=4).train(training)
    embeddings, labels = batch(dim, 4)
    expected = reference_logits(embeddings, head.weight.detach(), labels, **hyper_of(head))
    torch.testing.assert_close(
        head.margin_logits(embeddings, labels), expected, rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_forward_is_cross_entropy_of_margin_logits_plus_the_penalty(training: bool) -> None:
    head = make(8, seed=5).train(training)
    embeddings, labels = batch(8, 5)
    logits = head.margin_logits(embeddings, labels)  # before forward moves anything
    penalty = head.penalty(embeddings)
    expected = F.cross_entropy(logits, labels) + penalty
    torch.testing.assert_close(head(embeddings, labels), expected, rtol=1e-12, atol=0.0)
    magnitudes = embeddings.norm(dim=1).clamp(10.0, 110.0)
    expected_penalty = 35.0 * (1.0 / magnitudes + magnitudes / 110.0**2).mean()
    torch.testing.assert_close(penalty, expected_penalty, rtol=1e-12, atol=0.0)


def test_logits_are_the_plain_cosines() -> None:
    head = make(8, seed=6)
    embeddings, labels = batch(8, 6)
    expected = F.normalize(embeddings, dim=1) @ F.normalize(head.weight.detach(), dim=1).T
    scores = head.logits(embeddings)
    assert scores.shape == (BATCH, CLASSES)
    torch.testing.assert_close(scores, expected, rtol=1e-12, atol=1e-12)
    # the non-target training logits are s cos(theta_j)
    mask = F.one_hot(labels, CLASSES).bool()
    torch.testing.assert_close(
        head.margin_logits(embeddings, labels)[~mask], 64.0 * expected[~mask], rtol=1e-12, atol=0
    )


def test_class_subset_is_cross_entropy_over_those_columns() -> None:
    head = make(4, seed=7).eval()
    embeddings, labels = batch(4, 7)
    labels = torch.tensor([1, 4, 4, 1, 1, 4, 1, 1, 4, 4, 1, 4])
    classes = torch.tensor([0, 1, 4])
    expected = F.cross_entropy(
        head.margin_logits(embeddings, labels)[:, classes], torch.searchsorted(classes, labels)
    ) + head.penalty(embeddings)
    torch.testing.assert_close(
        head(embeddings, labels, classes=classes), expected, rtol=1e-12, atol=0.0
    )


# ------------------------------------------------------------------------ the magnitude
def test_the_norm_gets_no_gradient_outside_the_magnitude_range() -> None:
    """Below l_a and above u_a the magnitude is clamped: the loss's gradient has no radial
    component there (the angular cross-entropy never has one); inside it does."""
    dim = 4
    head = make(dim, seed=8)
    generator = torch.Generator().manual_seed(8)
    unit = F.normalize(torch.randn(3, dim, dtype=torch.float64, generator=generator), dim=1)
    embeddings = unit * torch.tensor([[5.0], [50.0], [200.0]], dtype=torch.float64)
    embeddings.requires_grad_(True)
    head(embeddings, torch.tensor([0, 1, 2])).backward()
    assert embeddings.grad is not None
    radial = (embeddings.grad * unit).sum(dim=1)  # d loss / d ||x|| along each direction
    assert abs(float(radial[0])) < 1e-12
    assert abs(float(radial[2])) < 1e-12
    assert abs(float(radial[1])) > 1e-4
    # inside: the margin's share (through m(a)) and the regulariser's g'(a) / B
    head.zero_grad()
    x = embeddings.detach()[1:2].clone().requires_grad_(True)
    head.penalty(x).backward()
    assert x.grad is not None
    g_prime = -1.0 / 50.0**2 + 1.0 / 110.0**2
    torch.testing.assert_close(
        (x.grad * unit[1]).sum(), torch.tensor(35.0 * g_prime, dtype=torch.float64)
    )


def test_margin_is_linear_in_the_clamped_magnitude() -> None:
    head = make(2)
    magnitudes = torch.tensor([10.0, 60.0, 110.0], dtype=torch.float64)
    torch.testing.assert_close(
        head.margin_at(magnitudes), torch.tensor([0.45, 0.625, 0.8], dtype=torch.float64)
    )
    embeddings = torch.tensor([[3.0, 4.0], [0.0, 60.0], [300.0, 400.0]], dtype=torch.float64)
    torch.testing.assert_close(head.magnitudes(embeddings), magnitudes)


def test_quality_is_the_unclamped_detached_norm() -> None:
    head = make(3, dtype=torch.float32)
    embeddings = torch.tensor(
        [[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [1e30, 0.0, 1e30], [1e-30, 0.0, 0.0]],
        requires_grad=True,
    )
    quality = head.quality(embeddings)
    assert quality.shape == (4,) and quality.dtype == torch.float32
    assert not quality.requires_grad
    expected = torch.tensor([5.0, 0.0, math.sqrt(2.0) * 1e30, 1e-30])
    torch.testing.assert_close(quality, expected, rtol=1e-6, atol=0.0)
    assert head.quality(embeddings.detach().double()).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert head.quality(embeddings.detach().bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match=r"embeddings must have 3 columns"):
        head.quality(torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"embeddings contains NaN or infinite"):
        head.quality(torch.tensor([[math.nan, 0.0, 1.0]]))
    with pytest.raises(TypeError, match=r"embeddings must be a torch.Tensor"):
        head.quality([[1.0, 2.0, 3.0]])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- gradcheck
def embedding_at(theta: float, class_weight: Tensor, norm: float, generator: torch.Generator):
    """An embedding of norm ``norm`` at angle ``theta`` from ``class_weight``, (D,)."""
    unit = class_weight / class_weight.norm()
    other = torch.randn(unit.shape[0], dtype=unit.dtype, generator=generator)
    if unit.shape[0] == 2:
        other = torch.stack([-unit[1], unit[0]])
    other = other - (other @ unit) * unit
    other = other / other.norm()
    return norm * (math.cos(theta) * unit + math.sin(theta) * other)


@pytest.mark.parametrize("fallback", ["insightface", "easy"])
@pytest.mark.parametrize("dim", [2, 6])
def test_gradcheck(dim: int, fallback: str) -> None:
    """At smooth points: norms inside (l_a, u_a), away from theta + m = pi, cos = +-1 and
    (the easy margin's kink) cos = 0."""
    head = make(dim, seed=9, scale=8.0, fallback=fallback)
    labels = torch.tensor([0, 1, 2, 3, 4, 2])
    weight = head.weight.detach().clone()
    thetas = [0.3, 0.9, 1.3, 1.8, 2.2, 2.6]  # the last one past theta + m = pi
    norms = [15.0, 30.0, 45.0, 60.0, 80.0, 100.0]
    generator = torch.Generator().manual_seed(9)
    embeddings = torch.stack(
        [
            embedding_at(theta, weight[label], norm, generator)
            for theta, label, norm in zip(thetas, labels.tolist(), norms, strict=True)
        ]
    )
    cosine = F.cosine_similarity(embeddings, weight[labels], dim=1)
    margin = head.margin_at(torch.tensor(norms, dtype=torch.float64))
    assert bool(((torch.acos(cosine) + margin - math.pi).abs() > 0.05).all())
    assert bool((cosine.abs() > 0.05).all() and (cosine.abs() < 0.96).all())
    head.eval()  # no step taken between the evaluations

    def loss(x: Tensor, w: Tensor) -> Tensor:
        return torch.func.functional_call(head, {"weight": w}, (x, labels))

    assert torch.autograd.gradcheck(
        loss, (embeddings.requires_grad_(True), weight.requires_grad_(True)), eps=1e-6, atol=1e-6
    )


# --------------------------------------------------------------------------------- edges
@pytest.mark.parametrize("fallback", ["insightface", "continuous", "easy"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("edge", ["aligned", "opposite", "tiny", "huge", "zero", "zero-row"])
@pytest.mark.parametrize("dim", [2, 16])
def test_finite_loss_and_gradients_at_edges(
    dim: int, edge: str, dtype: torch.dtype, fallback: str
) -> None:
    head = make(dim, dtype=dtype, fallback=fallback, learn_scale=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    embeddings = edge_embeddings(edge, head.weight[labels], dtype, norm=25.0).requires_grad_(True)
    loss = head(embeddings, labels)
    assert loss.dtype == dtype and torch.isfinite(loss)
    loss.backward()
    assert embeddings.grad is not None and torch.isfinite(embeddings.grad).all()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert torch.isfinite(head.margin_logits(embeddings.detach(), labels)).all()
    assert torch.isfinite(head.quality(embeddings.detach())).all()


def test_bfloat16_autocast_gives_a_float32_finite_loss() -> None:
    torch.manual_seed(10)
    backbone = torch.nn.Linear(6, 8)
    head = MagFace(CLASSES, 8)
    inputs, labels = 10.0 * torch.randn(6, 6), torch.tensor([0, 1, 2, 3, 4, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = backbone(inputs)
        assert embeddings.dtype == torch.bfloat16
        loss = head(embeddings, labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    expected = head.eval()(embeddings.detach().float(), labels)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-6, atol=1e-6)
    loss.backward()
    assert head.weight.dtype == torch.float32
    for parameter in [*head.parameters(), *backbone.parameters()]:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scale": 0.0}, ValueError, r"^scale must lie in \(0.0, 10000.0\]"),
        ({"scale": 2e4}, ValueError, r"^scale must lie in"),
        ({"lower_margin": -0.1}, ValueError, r"^lower_margin must lie in \[0.0, 3.14"),
        ({"upper_margin": math.pi}, ValueError, r"^upper_margin must lie in \[0.0, 3.14"),
        ({"lower_margin": 0.9}, ValueError, r"^lower_margin must not exceed upper_margin"),
        ({"lower_margin": "0.4"}, TypeError, r"^lower_margin must be a float"),
        ({"lower_magnitude": 0.0}, ValueError, r"^lower_magnitude must lie in \(0.0, inf"),
        ({"lower_magnitude": math.nan}, ValueError, r"^lower_magnitude must be finite"),
        ({"upper_magnitude": math.inf}, ValueError, r"^upper_magnitude must be finite"),
        ({"upper_magnitude": 10.0}, ValueError, r"^upper_magnitude must be above lower_magni"),
        ({"upper_magnitude": "110"}, TypeError, r"^upper_magnitude must be a float; got str"),
        ({"upper_magnitude": Warmup(110.0, 5)}, TypeError, r"^upper_magnitude must be a float"),
        ({"regularizer_weight": -1.0}, ValueError, r"^regularizer_weight must lie in \[0.0"),
        ({"regularizer_weight": True}, TypeError, r"^regularizer_weight must be a float"),
        ({"fallback": "easy-margin"}, ValueError, r"^fallback must be one of insightface"),
        ({"learn_scale": 1}, TypeError, r"^learn_scale must be a bool"),
    ],
)
def test_bad_hyperparameters_are_refused_in_one_line(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as caught:
        MagFace(CLASSES, 4, **kwargs)
    assert "\n" not in str(caught.value)


def test_margin_schedules_are_compared_at_both_ends() -> None:
    MagFace(CLASSES, 4, lower_margin=Warmup(0.45, 10), upper_margin=Warmup(0.8, 10))
    with pytest.raises(ValueError, match=r"^lower_margin must not exceed upper_margin"):
        MagFace(CLASSES, 4, lower_margin=Warmup(0.45, 10), upper_margin=0.3)
    # end points in order, but the schedules cross on the way: refused when it happens
    head = MagFace(CLASSES, 4, lower_margin=Warmup(0.5, 2), upper_margin=Warmup(0.8, 8))
    embeddings, labels = batch(4, 11, torch.float32)
    head(embeddings, labels)  # step 0: both 0
    with pytest.raises(ValueError, match=r"lower_margin \(0.25\) exceeds upper_margin \(0.1\)"):
        head(embeddings, labels)
    assert int(head.step) == 1  # the refused call changed nothing


def test_wrong_shapes_are_refused_by_the_base() -> None:
    head = MagFace(CLASSES, 4)
    with pytest.raises(ValueError, match=r"embeddings must have 4 columns"):
        head(torch.randn(3, 5), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels has 2 entries but embeddings has 3 rows"):
        head(torch.randn(3, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize("chunk_size", [1, 2, 3])
def test_the_fused_and_chunked_paths_equal_the_composed_one(chunk_size: int) -> None:
    """The margin touches the target only: the fused path (magnitudes as a differentiable
    input) and its class blocks give the loss and every gradient of CE(margin_logits) +
    penalty, the gradient through ||x|| included; sharding is refused with its reason."""
    generator = torch.Generator().manual_seed(chunk_size)
    head = MagFace(CLASSES, 4).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(CLASSES, 4, generator=generator, dtype=torch.float64))
    directions = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    norms = torch.linspace(5.0, 130.0, 9, dtype=torch.float64).unsqueeze(1)  # some clamped
    embeddings = directions / directions.norm(dim=1, keepdim=True) * norms
    labels = torch.arange(9) % CLASSES
    results = []
    for chunk in (None, chunk_size, "composed"):
        x = embeddings.clone().requires_grad_(True)
        head.zero_grad()
        if chunk == "composed":
            logits = head.margin_logits(x, labels)
            loss = torch.nn.functional.cross_entropy(logits, labels) + head.penalty(x)
        else:
            loss = head.set_chunk_size(chunk)(x, labels)
        loss.backward()
        results.append((loss.detach(), x.grad.clone(), head.weight.grad.clone()))
    for got in results[1:]:
        for value, expected in zip(got, results[0], strict=True):
            torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    assert float(results[0][1].norm()) > 0.0


def test_a_weak_regulariser_is_warned_about_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sanity, "_WARNED", set())  # what other tests warned about
    assert regularizer_bound(64.0, 0.45, 0.8, 10.0, 110.0) == pytest.approx(22.5867, rel=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MarginWarning)
        MagFace(CLASSES, 64)  # the paper's settings: 35 >= 22.6
        # warmed-up margins reach the same slope: no warning either
        MagFace(CLASSES, 64, lower_margin=Warmup(0.45, 5), upper_margin=Warmup(0.8, 5))
    with pytest.warns(MarginWarning, match=r"regularizer_weight 20 is below 22.59"):
        MagFace(CLASSES, 64, regularizer_weight=20.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MarginWarning)
        MagFace(CLASSES, 64, regularizer_weight=20.0)  # once per configuration


# ------------------------------------------------------------------ state, modes, schedules
def test_state_dict_round_trip_with_a_moved_schedule() -> None:
    def fresh() -> MagFace:
        return make(4, seed=12, lower_margin=Warmup(0.45, 10), upper_margin=Warmup(0.8, 10))

    head = fresh()
    embeddings, labels = batch(4, 12)
    for _ in range(3):
        head(embeddings, labels)
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    restored = fresh()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert int(restored.step) == 3
    assert restored.hyperparameters() == head.hyperparameters()
    torch.testing.assert_close(
        restored.margin_logits(embeddings, labels), head.margin_logits(embeddings, labels)
    )
    torch.testing.assert_close(restored(embeddings, labels), head(embeddings, labels))
    assert restored.hyperparameters() == head.hyperparameters()


def test_eval_and_scoring_never_change_the_state() -> None:
    head = make(4, seed=13, lower_margin=Warmup(0.45, 10), upper_margin=Warmup(0.8, 10))
    embeddings, labels = batch(4, 13)
    head(embeddings, labels)
    state = {key: value.clone() for key, value in head.state_dict().items()}
    head.eval()
    head(embeddings, labels)
    head.margin_logits(embeddings, labels)
    head.train()
    head.margin_logits(embeddings, labels)
    head.logits(embeddings)
    head.quality(embeddings)
    head.penalty(embeddings)
    for key, value in head.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_warmed_up_margins_follow_the_schedule_and_the_reference() -> None:
    head = make(4, seed=14, lower_margin=Warmup(0.45, 4), upper_margin=Warmup(0.8, 4))
    embeddings, labels = batch(4, 14)
    seen = []
    for _ in range(6):
        hyper = hyper_of(head)
        seen.append((hyper["lower_margin"], hyper["upper_margin"]))
        expected = reference_loss(embeddings, head.weight.detach(), labels, **hyper)
        torch.testing.assert_close(head(embeddings, labels), expected, rtol=1e-10, atol=1e-10)
    assert seen[0] == (0.0, 0.0)
    assert seen[2] == pytest.approx((0.225, 0.4))
    assert seen[5] == pytest.approx((0.45, 0.8))


# ------------------------------------------------------------------- margin functions
@pytest.mark.parametrize("fallback", ["insightface", "continuous"])
def test_arcface_target_with_per_sample_margins(fallback: str) -> None:
    """A tensor margin gives, element by element, the float margin's value; its gradient
    in the margin is d cos(theta + m) / dm = -sin(theta + m) below the switch."""
    theta = torch.linspace(0.0, math.pi, 41, dtype=torch.float64)
    margin = torch.linspace(0.0, 1.5, 41, dtype=torch.float64).requires_grad_(True)
    values = arcface_target(torch.cos(theta), margin, fallback)
    for i in range(41):
        single = arcface_target(torch.cos(theta[i : i + 1]), float(margin[i].detach()), fallback)
        torch.testing.assert_close(values[i : i + 1].detach(), single, rtol=0.0, atol=1e-15)
    (gradient,) = torch.autograd.grad(values.sum(), margin)
    below = theta + margin.detach() < math.pi - 1e-9
    torch.testing.assert_close(gradient[below], -torch.sin(theta[below] + margin.detach()[below]))
    easy = arcface_easy_target(torch.cos(theta), margin.detach())
    positive = torch.cos(theta) > 0
    torch.testing.assert_close(easy[positive], torch.cos(theta + margin.detach())[positive])
    torch.testing.assert_close(easy[~positive], torch.cos(theta)[~positive])


def test_trains_a_small_separable_problem() -> None:
    torch.manual_seed(15)
    centres = 3.0 * torch.randn(CLASSES, 6)
    labels = torch.arange(CLASSES).repeat(20)
    inputs = centres[labels] + 0.3 * torch.randn(labels.shape[0], 6)
    backbone = torch.nn.Linear(6, 8)
    head = MagFace(CLASSES, 8)
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=0.05)
    for _ in range(30):
        optimizer.zero_grad()
        loss, _ = head.loss_and_correct(backbone(inputs), labels)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (head.logits(backbone(inputs)).argmax(dim=1) == labels).float().mean()
    assert float(accuracy) >= 0.95
