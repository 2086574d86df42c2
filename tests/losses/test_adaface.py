"""AdaFace (Kim, Jain and Liu, CVPR 2022) against a naive float64 reference from the paper.

The reference (:func:`reference_adaface`) is written from the paper's formulas, one sample
and one class at a time, with ``torch.acos`` taken directly and the statistics in Python
floats (detached, as the paper's stop-gradient on the norm):

    n_i = clip(||x_i||, 0.001, 100)
    training: mu <- a mean(n) + (1 - a) mu,  sigma <- a std(n) + (1 - a) sigma  (then used)
    z_i = clip(h (n_i - mu) / (sigma + 0.001), -1, 1)
    z_iy = s (cos(clip(theta_y - m z_i, 0, pi)) - (m + m z_i)),  z_ij = s cos theta_j
"""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from marginkit.losses.adaface import AdaFace
from marginkit.losses.functional import adaface_target
from marginkit.losses.sanity import MarginWarning
from marginkit.schedules import Warmup

from .reference import EDGES, edge_embeddings, embedding_at_angle, random_problem

pytestmark = pytest.mark.filterwarnings("ignore::marginkit.losses.sanity.MarginWarning")

TOLERANCE = {"rtol": 1e-10, "atol": 1e-10}


# --------------------------------------------------------------------------- reference
def reference_adaface(
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    scale: float | Tensor,
    margin: float,
    concentration: float,
    momentum: float,
    batch_mean: float,
    batch_std: float,
    update: bool,
) -> tuple[Tensor, float, float]:
    """The training logits (B, C) and the running mean and std they used, from the paper."""
    batch, classes = embeddings.shape[0], weight.shape[0]
    norms = []
    for i in range(batch):
        norm = math.sqrt(sum(float(value) ** 2 for value in embeddings[i].detach()))
        norms.append(min(max(norm, 0.001), 100.0))  # clipped, detached
    mean, std = batch_mean, batch_std
    if update:
        average = sum(norms) / batch
        mean = momentum * average + (1.0 - momentum) * batch_mean
        if batch > 1:
            variance = sum((norm - average) ** 2 for norm in norms) / (batch - 1)
            std = momentum * math.sqrt(variance) + (1.0 - momentum) * batch_std
    rows = []
    for i in range(batch):
        scaler = min(max(concentration * (norms[i] - mean) / (std + 0.001), -1.0), 1.0)
        angular, additive = -margin * scaler, margin + margin * scaler
        x = embeddings[i]
        row = []
        for j in range(classes):
            w = weight[j]
            cosine = (x * w).sum() / (torch.sqrt((x * x).sum()) * torch.sqrt((w * w).sum()))
            if j == int(labels[i]):
                angle = torch.clamp(torch.acos(cosine) + angular, 0.0, math.pi)
                row.append(scale * (torch.cos(angle) - additive))
            else:
                row.append(scale * cosine)
        rows.append(torch.stack(row))
    return torch.stack(rows), mean, std


def reference_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Batch mean of ``log sum_j exp(z_ij) - z_iy``, written out."""
    losses = []
    for i in range(logits.shape[0]):
        row = logits[i]
        top = row.max().detach()
        losses.append(top + torch.log(torch.exp(row - top).sum()) - row[int(labels[i])])
    return torch.stack(losses).sum() / logits.shape[0]


# ----------------------------------------------------------------------------- helpers
#: (scale, margin, concentration, momentum, batch_mean, batch_std): the paper's defaults
#: with the official starting buffers (z near 0), each batch's own statistics with h = 1
#: (z spread over [-1, 1], some clipped), and preset running values.
SETTINGS: list[dict[str, float]] = [
    {"scale": 64.0, "margin": 0.4, "concentration": 0.333, "momentum": 0.01},
    {"scale": 30.0, "margin": 0.5, "concentration": 1.0, "momentum": 1.0},
    {
        "scale": 20.0,
        "margin": 0.7,
        "concentration": 0.5,
        "momentum": 0.2,
        "batch_mean": 1.5,
        "batch_std": 0.3,
    },
]
SHAPES = [(5, 3, 2), (6, 4, 8), (7, 5, 16)]  # (B, C, D)
SEEDS = [0, 1, 2]


def make_head(weight: Tensor, setting: dict[str, float], **options: Any) -> AdaFace:
    """A float64 AdaFace with ``weight`` and the setting's hyper-parameters and buffers."""
    hyperparameters = {
        key: value for key, value in setting.items() if key not in ("batch_mean", "batch_std")
    }
    head = AdaFace(weight.shape[0], weight.shape[1], **hyperparameters, **options).double()
    with torch.no_grad():
        head.weight.copy_(weight)
        head.batch_mean.fill_(setting.get("batch_mean", 20.0))
        head.batch_std.fill_(setting.get("batch_std", 100.0))
    return head


def reference_for(
    head: AdaFace, embeddings: Tensor, weight: Tensor, labels: Tensor, update: bool
) -> tuple[Tensor, float, float]:
    """:func:`reference_adaface` at the head's current hyper-parameters and buffers."""
    values = head.hyperparameters()
    return reference_adaface(
        embeddings,
        weight,
        labels,
        scale=values["scale"],
        margin=values["margin"],
        concentration=values["concentration"],
        momentum=head.momentum,
        batch_mean=float(head.batch_mean),
        batch_std=float(head.batch_std),
        update=update,
    )


def head_loss_and_grads(
    head: AdaFace, embeddings: Tensor, labels: Tensor, classes: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    x = embeddings.clone().requires_grad_(True)
    head.zero_grad()
    loss = head(x, labels, classes)
    loss.backward()
    assert x.grad is not None and head.weight.grad is not None
    return loss.detach(), x.grad, head.weight.grad.clone()


def reference_loss_and_grads(
    head: AdaFace,
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    update: bool,
    classes: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, float, float]:
    x = embeddings.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    logits, mean, std = reference_for(head, x, w, labels, update)
    if classes is not None:  # the softmax over the sampled classes, labels remapped
        logits = logits[:, classes]
        labels = torch.searchsorted(classes, labels)
    loss = reference_loss(logits, labels)
    loss.backward()
    assert x.grad is not None and w.grad is not None
    return loss.detach(), x.grad, w.grad, mean, std


def setting_id(setting: dict[str, float]) -> str:
    return "-".join(f"{key}={value:g}" for key, value in setting.items())


# ------------------------------------------------------------------ values and gradients
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-C{}-D{}".format(*s))
@pytest.mark.parametrize("setting", SETTINGS, ids=setting_id)
def test_loss_gradients_and_statistics_match_reference(
    setting: dict[str, float], shape: tuple[int, int, int], seed: int, training: bool
) -> None:
    embeddings, weight, labels = random_problem(*shape, seed=seed)[:3]
    head = make_head(weight, setting).train(training)
    expected = reference_loss_and_grads(head, embeddings, weight, labels, update=training)
    ref_loss, ref_grad_x, ref_grad_w, mean, std = expected
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, ref_loss, **TOLERANCE)
    torch.testing.assert_close(grad_x, ref_grad_x, **TOLERANCE)
    torch.testing.assert_close(grad_w, ref_grad_w, **TOLERANCE)
    # a training step stores the updated statistics; eval keeps the running ones
    assert float(head.batch_mean) == pytest.approx(mean, rel=1e-14)
    assert float(head.batch_std) == pytest.approx(std, rel=1e-14)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-C{}-D{}".format(*s))
@pytest.mark.parametrize("setting", SETTINGS, ids=setting_id)
def test_margin_logits_and_scores_match_reference(
    setting: dict[str, float], shape: tuple[int, int, int], training: bool
) -> None:
    embeddings, weight, labels = random_problem(*shape, seed=7)[:3]
    head = make_head(weight, setting).train(training)
    expected, _, _ = reference_for(head, embeddings, weight, labels, update=training)
    torch.testing.assert_close(head.margin_logits(embeddings, labels), expected, **TOLERANCE)
    scores = head.logits(embeddings)
    assert scores.shape == (shape[0], shape[1])
    cosines = expected.new_tensor(
        [
            [float(x @ w / (x.norm() * w.norm())) for w in weight]
            for x in embeddings  # the plain scores: cos theta_j, no scale, no margin
        ]
    )
    torch.testing.assert_close(scores, cosines, **TOLERANCE)


def clipped_problem(dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Samples whose shifted angle is clipped: a large norm near its class (z = +1,
    ``theta - m < 0``), a tiny norm near the opposite (z = -1, ``theta + m > pi``), and
    two in between."""
    generator = torch.Generator().manual_seed(dim)
    weight = torch.randn(3, dim, dtype=torch.float64, generator=generator)
    labels = torch.tensor([0, 1, 2, 0])
    angles_and_norms = [(0.3, 3.0), (2.8, 0.1), (1.2, 1.0), (1.9, 2.0)]
    embeddings = torch.stack(
        [
            embedding_at_angle(weight[int(label)], angle, norm, generator)
            for label, (angle, norm) in zip(labels, angles_and_norms, strict=True)
        ]
    )
    return embeddings, weight, labels


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dim", [2, 8])
def test_clipped_angles_match_reference(dim: int, training: bool) -> None:
    """Margin 1.2 and z = +-1: both clips of the angle (at 0 and at pi) are in force."""
    embeddings, weight, labels = clipped_problem(dim)
    setting = {
        "scale": 16.0,
        "margin": 1.2,
        "concentration": 2.0,
        "momentum": 0.5,
        "batch_mean": 1.5,
        "batch_std": 0.5,
    }
    head = make_head(weight, setting).train(training)
    logits, _, _ = reference_for(head, embeddings, weight, labels, update=training)
    # the clips bite: target 1 - 2m for sample 0, -1 for sample 1 (cos of the clipped angle)
    assert float(logits[0, 0]) == pytest.approx(16.0 * (1.0 - 2.4), rel=1e-12)
    assert float(logits[1, 1]) == pytest.approx(-16.0, rel=1e-12)
    ref_loss, ref_grad_x, ref_grad_w, _, _ = reference_loss_and_grads(
        head, embeddings, weight, labels, update=training
    )
    torch.testing.assert_close(head.margin_logits(embeddings, labels), logits, **TOLERANCE)
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels)
    torch.testing.assert_close(loss, ref_loss, **TOLERANCE)
    torch.testing.assert_close(grad_x, ref_grad_x, **TOLERANCE)
    torch.testing.assert_close(grad_w, ref_grad_w, **TOLERANCE)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_learned_scale_gradient_matches_reference(training: bool) -> None:
    embeddings, weight, labels = random_problem(6, 4, 8, seed=3)[:3]
    setting = {"scale": 30.0, "margin": 0.5, "concentration": 1.0, "momentum": 0.5}
    head = make_head(weight, setting, learn_scale=True).train(training)
    assert head.log_scale is not None
    with torch.no_grad():
        head.log_scale.fill_(math.log(25.0))
    log_scale = torch.tensor(math.log(25.0), dtype=torch.float64, requires_grad=True)
    logits, _, _ = reference_adaface(
        embeddings,
        weight,
        labels,
        scale=log_scale.exp(),
        margin=0.5,
        concentration=1.0,
        momentum=0.5,
        batch_mean=20.0,
        batch_std=100.0,
        update=training,
    )
    expected = reference_loss(logits, labels)
    expected.backward()
    loss = head(embeddings, labels)
    loss.backward()
    torch.testing.assert_close(loss.detach(), expected.detach(), **TOLERANCE)
    assert head.log_scale.grad is not None and log_scale.grad is not None
    torch.testing.assert_close(head.log_scale.grad, log_scale.grad, **TOLERANCE)


# ------------------------------------------------------- fused, chunked and sampled paths
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_chunked_forward_matches_reference(training: bool) -> None:
    embeddings, weight, labels = random_problem(6, 7, 8, seed=4)[:3]
    setting = SETTINGS[1]
    head = make_head(weight, setting).train(training).set_chunk_size(3)
    ref_loss, ref_grad_x, ref_grad_w, mean, std = reference_loss_and_grads(
        head, embeddings, weight, labels, update=training
    )
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels)
    torch.testing.assert_close(loss, ref_loss, **TOLERANCE)
    torch.testing.assert_close(grad_x, ref_grad_x, **TOLERANCE)
    torch.testing.assert_close(grad_w, ref_grad_w, **TOLERANCE)
    assert float(head.batch_mean) == pytest.approx(mean, rel=1e-14)
    assert float(head.batch_std) == pytest.approx(std, rel=1e-14)


@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_class_sampled_forward_matches_reference_and_margin_logits(
    training: bool, chunk_size: int | None
) -> None:
    embeddings, weight, labels = random_problem(6, 9, 8, seed=5)[:3]
    labels = torch.tensor([0, 2, 5, 2, 8, 5])
    classes = torch.tensor([0, 1, 2, 5, 7, 8])
    head = make_head(weight, SETTINGS[2]).train(training).set_chunk_size(chunk_size)
    # the independent computation: margin_logits restricted to the columns, labels remapped
    logits = head.margin_logits(embeddings, labels)[:, classes]
    remapped = (labels.unsqueeze(1) == classes.unsqueeze(0)).long().argmax(dim=1)
    expected = F.cross_entropy(logits, remapped)
    ref_loss, ref_grad_x, ref_grad_w, _, _ = reference_loss_and_grads(
        head, embeddings, weight, labels, update=training, classes=classes
    )
    loss, grad_x, grad_w = head_loss_and_grads(head, embeddings, labels, classes)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss, ref_loss, **TOLERANCE)
    torch.testing.assert_close(grad_x, ref_grad_x, **TOLERANCE)
    torch.testing.assert_close(grad_w, ref_grad_w, **TOLERANCE)
    unsampled = torch.ones(9, dtype=torch.bool)
    unsampled[classes] = False
    assert bool((grad_w[unsampled] == 0).all())


# ---------------------------------------------------------------------------- gradcheck
def smooth_point(
    dim: int, kinks: list[float], seed: int, norm_range: tuple[float, float]
) -> tuple[Tensor, Tensor, Tensor]:
    """float64 (embeddings (5, D), weight (3, D), labels) with every angle >= 0.05 from 0, pi
    and the target angles >= 0.05 from ``kinks``; norms drawn in ``norm_range``."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(200):
        embeddings = F.normalize(torch.randn(5, dim, dtype=torch.float64, generator=generator))
        low, high = norm_range
        norms = low + (high - low) * torch.rand(5, 1, dtype=torch.float64, generator=generator)
        embeddings = embeddings * norms
        weight = torch.randn(3, dim, dtype=torch.float64, generator=generator)
        labels = torch.randint(0, 3, (5,), generator=generator)
        angles = torch.acos((F.normalize(embeddings) @ F.normalize(weight).T).clamp(-1, 1))
        target = angles.gather(1, labels.unsqueeze(1)).squeeze(1)
        if (
            all(float((target - kink).abs().min()) > 0.05 for kink in kinks)
            and float(angles.min()) > 0.05
            and float(angles.max()) < math.pi - 0.05
        ):
            return embeddings, weight, labels
    raise RuntimeError("no smooth point found")


def gradcheck_head(head: AdaFace, embeddings: Tensor, weight: Tensor, labels: Tensor) -> bool:
    def loss(x: Tensor, w: Tensor) -> Tensor:
        return functional_call(head, {"weight": w}, (x, labels))

    inputs = (embeddings.requires_grad_(True), weight.requires_grad_(True))
    return torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


# (batch_mean, batch_std, z of a norm clipped to 100): the running values give z = 0.266
# (official start), +1 and -1 (saturated)
SATURATIONS = [(20.0, 100.0, 0.333 * 80.0 / 100.001), (1.0, 0.01, 1.0), (1000.0, 0.01, -1.0)]


@pytest.mark.parametrize("dim", [2, 8])
@pytest.mark.parametrize("saturation", SATURATIONS, ids=["start", "z=+1", "z=-1"])
def test_gradcheck_embeddings_and_weight(saturation: tuple[float, float, float], dim: int) -> None:
    """Norms above 100 are clipped, so ``z`` is locally constant in the embeddings (it is
    detached: elsewhere the loss's derivative through the norm is dropped by design)."""
    mean, std, scaler = saturation
    margin = 0.5
    shift = -margin * scaler  # g_angle; kink where theta + g_angle = 0 or pi
    embeddings, weight, labels = smooth_point(
        dim, [-shift, math.pi - shift], seed=dim, norm_range=(150.0, 300.0)
    )
    head = AdaFace(3, dim, scale=16.0, margin=margin).double().eval()
    head.batch_mean.fill_(mean)
    head.batch_std.fill_(std)
    assert gradcheck_head(head, embeddings, weight, labels)


@pytest.mark.parametrize("dim", [2, 8])
def test_gradcheck_weight_at_unclipped_norms(dim: int) -> None:
    """With norms of order 1 ``z`` varies by sample; the weight gradient is exact."""
    embeddings, weight, labels = smooth_point(dim, [], seed=10 + dim, norm_range=(0.5, 3.0))
    head = AdaFace(3, dim, scale=16.0, margin=0.2, concentration=0.1).double().eval()
    head.batch_mean.fill_(1.5)
    head.batch_std.fill_(1.0)
    # |g_angle| <= 0.2 * 0.1 * 1.5 / 1.001 < 0.05: the kinks at 0 and pi are avoided above

    def loss(w: Tensor) -> Tensor:
        return functional_call(head, {"weight": w}, (embeddings, labels))

    assert torch.autograd.gradcheck(loss, (weight.requires_grad_(True),), eps=1e-6, atol=1e-6)


def test_gradcheck_target_function() -> None:
    """``adaface_target`` in the cosine, for z spread over [-1, 1], away from the clips."""
    cosine = torch.linspace(-0.95, 0.95, 12, dtype=torch.float64)
    scaler = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64)
    shift = -0.4 * scaler
    angle = torch.acos(cosine)
    assert bool(
        ((angle + shift).abs() > 0.05).all() & ((angle + shift - math.pi).abs() > 0.05).all()
    )
    cosine.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda c: adaface_target(c, 0.4, scaler), (cosine,), eps=1e-6, atol=1e-6, rtol=1e-5
    )


def test_target_function_special_cases() -> None:
    """z = -1 is ArcFace, z = 0 CosFace, z = +1 ``cos(theta - m) - 2m``; clipped at 0, pi."""
    theta = torch.linspace(0.0, math.pi, 41, dtype=torch.float64)
    cosine, margin = torch.cos(theta), 0.4
    arc = torch.cos((theta + margin).clamp(max=math.pi))
    torch.testing.assert_close(adaface_target(cosine, margin, -1.0), arc)
    torch.testing.assert_close(adaface_target(cosine, margin, 0.0), cosine - margin)
    high = torch.cos((theta - margin).clamp(min=0.0)) - 2.0 * margin
    torch.testing.assert_close(adaface_target(cosine, margin, 1.0), high)


# ------------------------------------------------------------------------------ numerics


@pytest.mark.parametrize("learn_scale", [False, True], ids=["fixed", "learned"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("edge", EDGES)
def test_finite_loss_and_gradients_at_edges(
    edge: str, dtype: torch.dtype, training: bool, learn_scale: bool
) -> None:
    head = AdaFace(4, 3, learn_scale=learn_scale).to(dtype).train(training)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    embeddings = edge_embeddings(edge, head.weight[labels], dtype).requires_grad_(True)
    loss = head(embeddings, labels)
    assert loss.dtype == dtype and torch.isfinite(loss)
    loss.backward()
    assert embeddings.grad is not None and torch.isfinite(embeddings.grad).all()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert torch.isfinite(head.batch_mean) and torch.isfinite(head.batch_std)
    assert torch.isfinite(head.margin_logits(embeddings.detach(), labels)).all()
    assert torch.isfinite(head.logits(embeddings.detach())).all()


def test_edge_statistics_use_the_clipped_norms() -> None:
    """Norms 1e30 and 1e-30 enter the statistics as 100 and 0.001."""
    head = AdaFace(2, 3, momentum=1.0).double()
    embeddings = torch.tensor([[1e30, 0.0, 0.0], [0.0, 1e-30, 0.0]], dtype=torch.float64)
    head(embeddings, torch.tensor([0, 1]))
    assert float(head.batch_mean) == pytest.approx((100.0 + 0.001) / 2.0, rel=1e-14)
    assert float(head.batch_std) == pytest.approx((100.0 - 0.001) / math.sqrt(2.0), rel=1e-14)


def test_bfloat16_autocast_float32_head() -> None:
    backbone = torch.nn.Linear(6, 8)
    head = AdaFace(4, 8)
    inputs, labels = torch.randn(6, 6), torch.tensor([0, 1, 2, 3, 1, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = backbone(inputs)
        assert embeddings.dtype == torch.bfloat16
        loss = head(embeddings, labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert head.weight.dtype == head.batch_mean.dtype == torch.float32
    loss.backward()
    for parameter in [*head.parameters(), *backbone.parameters()]:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()


# ---------------------------------------------------------------------------- bad input
BAD_ARGUMENTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"scale": 0.0}, ValueError, r"^scale must lie in \(0\.0, 10000\.0\]"),
    ({"scale": 2e4}, ValueError, r"^scale must lie in"),
    ({"scale": math.nan}, ValueError, r"^scale must be finite"),
    ({"margin": -0.1}, ValueError, r"^margin must lie in \[0\.0, 1\.57"),
    ({"margin": 2.0}, ValueError, r"^margin must lie in"),
    ({"margin": "0.4"}, TypeError, r"^margin must be a float"),
    ({"concentration": 0.0}, ValueError, r"^concentration must lie in \(0\.0, inf\]"),
    ({"concentration": -1.0}, ValueError, r"^concentration must lie in"),
    ({"concentration": math.inf}, ValueError, r"^concentration must be finite"),
    ({"momentum": 0.0}, ValueError, r"^momentum must lie in \(0\.0, 1\.0\]"),
    ({"momentum": 1.5}, ValueError, r"^momentum must lie in"),
    ({"momentum": math.nan}, ValueError, r"^momentum must be finite"),
    ({"momentum": True}, TypeError, r"^momentum must be a float; got bool"),
    ({"momentum": Warmup(0.01, 10)}, TypeError, r"^momentum must be a float; got Warmup"),
    ({"learn_scale": "yes"}, TypeError, r"^learn_scale must be a bool"),
    (
        {"scale": Warmup(64.0, 10, start=30.0), "learn_scale": True},
        TypeError,
        r"^scale must be a float",
    ),
    ({"margin": Warmup(2.0, 10)}, ValueError, r"^margin must lie in .* a schedule spanning"),
]


@pytest.mark.parametrize(("arguments", "error", "match"), BAD_ARGUMENTS)
def test_bad_hyperparameters_are_refused_in_one_line(
    arguments: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as caught:
        AdaFace(5, 3, **arguments)
    assert "\n" not in str(caught.value)


def test_bad_inputs_are_refused_by_the_base() -> None:
    head = AdaFace(5, 3)
    with pytest.raises(ValueError, match=r"embeddings must have 3 columns"):
        head(torch.randn(4, 4), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"labels has 3 entries"):
        head(torch.randn(4, 3), torch.tensor([0, 1, 2]))
    assert float(head.batch_mean) == 20.0 and int(head.step) == 0  # untouched


# ------------------------------------------------------------------------------ contract
def test_defaults_are_the_papers() -> None:
    head = AdaFace(10, 4)
    assert head.hyperparameters() == {"scale": 64.0, "margin": 0.4, "concentration": 0.333}
    assert head.momentum == 0.01
    assert float(head.batch_mean) == 20.0 and float(head.batch_std) == 100.0
    assert head.unshardable is None  # marginkit.distributed.shard splits it
    assert head.weight.shape == (10, 4)


def test_state_dict_round_trip_includes_the_statistics() -> None:
    embeddings, weight, labels = random_problem(6, 4, 3, seed=8)[:3]
    head = make_head(weight, SETTINGS[0])
    for step in range(3):
        head(embeddings * (1.0 + step), labels)
    assert float(head.batch_mean) != 20.0 and float(head.batch_std) != 100.0
    state = head.state_dict()
    assert {"batch_mean", "batch_std", "schedules.concentration.value"} <= set(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = AdaFace(4, 3).double()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh.batch_mean, head.batch_mean)
    assert torch.equal(fresh.batch_std, head.batch_std)
    assert int(fresh.step) == 3
    torch.testing.assert_close(
        fresh.margin_logits(embeddings, labels), head.margin_logits(embeddings, labels)
    )
    torch.testing.assert_close(fresh(embeddings, labels), head(embeddings, labels))
    assert torch.equal(fresh.batch_mean, head.batch_mean)
    assert torch.equal(fresh.batch_std, head.batch_std)


def test_only_a_training_forward_changes_the_statistics() -> None:
    embeddings, weight, labels = random_problem(6, 4, 3, seed=9)[:3]
    head = make_head(weight, SETTINGS[1])
    start = (head.batch_mean.clone(), head.batch_std.clone())
    head.margin_logits(embeddings, labels)  # training mode: uses, never stores
    head.logits(embeddings)
    assert torch.equal(head.batch_mean, start[0]) and torch.equal(head.batch_std, start[1])
    head.eval()
    for _ in range(2):
        head(embeddings, labels)
        head.margin_logits(embeddings, labels)
    assert torch.equal(head.batch_mean, start[0]) and torch.equal(head.batch_std, start[1])
    head.train()
    head(embeddings, labels)
    norms = embeddings.norm(dim=1)
    assert float(head.batch_mean) == pytest.approx(float(norms.mean()), rel=1e-14)  # a = 1
    assert float(head.batch_std) == pytest.approx(float(norms.std()), rel=1e-14)


def test_one_row_batch_keeps_the_running_std() -> None:
    head = AdaFace(3, 2, momentum=0.5).double()
    embeddings = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    loss = head(embeddings, torch.tensor([1]))
    assert torch.isfinite(loss)
    assert float(head.batch_mean) == pytest.approx(0.5 * 5.0 + 0.5 * 20.0, rel=1e-14)
    assert float(head.batch_std) == 100.0


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_loss_is_cross_entropy_of_margin_logits(training: bool) -> None:
    """Both see the same statistics (updated with the batch in training, before storing),
    and the same gradients: no gradient through the norm on either path."""
    embeddings, weight, labels = random_problem(6, 5, 4, seed=11)[:3]
    for setting in SETTINGS:
        head = make_head(weight, setting).train(training)
        x = embeddings.clone().requires_grad_(True)
        expected = F.cross_entropy(head.margin_logits(x, labels), labels)
        expected_grads = torch.autograd.grad(expected, [x, head.weight])
        loss = head(x, labels)
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
        grads = torch.autograd.grad(loss, [x, head.weight])
        for got, want in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_target_without_a_batch_is_the_average_sample() -> None:
    """The plots call ``target`` on a grid of cosines: z = 0, CosFace's ``cos - m``."""
    head = AdaFace(5, 3, margin=0.35)
    cosine = torch.linspace(-1.0, 1.0, 9)
    torch.testing.assert_close(head.target(cosine), cosine - 0.35)


def test_margin_warmup_schedule() -> None:
    embeddings, weight, labels = random_problem(6, 4, 8, seed=12)[:3]
    head = AdaFace(4, 8, margin=Warmup(0.4, steps=4)).double()
    with torch.no_grad():
        head.weight.copy_(weight)
    assert head.hyperparameters()["margin"] == 0.0
    logits = head.eval().margin_logits(embeddings, labels)
    torch.testing.assert_close(logits, 64.0 * head.logits(embeddings), **TOLERANCE)  # no margin
    head.train()
    for _ in range(4):
        head(embeddings, labels)
    assert head.hyperparameters()["margin"] == pytest.approx(0.4)
    expected, _, _ = reference_for(head, embeddings, weight, labels, update=True)
    torch.testing.assert_close(head.margin_logits(embeddings, labels), expected, **TOLERANCE)


def test_margin_warning_for_the_average_sample() -> None:
    """The sample of average norm sees CosFace's margin m: 10 classes on a circle have no
    room for m = 0.4."""
    with pytest.warns(MarginWarning, match="AdaFace: margin 0.4 leaves no room"):
        AdaFace(11, 2)


def test_trains_on_a_separable_problem() -> None:
    torch.manual_seed(0)
    centres = 4.0 * torch.eye(4, 6)
    labels = torch.arange(64) % 4
    inputs = centres[labels] + 0.5 * torch.randn(64, 6)
    backbone = torch.nn.Linear(6, 8)
    head = AdaFace(4, 8)
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=0.05)
    for _ in range(30):
        optimizer.zero_grad()
        head(backbone(inputs), labels).backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (head.logits(backbone(inputs)).argmax(dim=1) == labels).float().mean()
    assert float(accuracy) >= 0.95
    assert float(head.batch_mean) != 20.0  # the statistics moved
