"""Numerics that never silently fail: NaN-free losses and gradients at the edges.

- ``cos theta_y = +1`` (an embedding a positive multiple of its class weight) and ``-1``
  (a negative multiple), where ``d acos / d cos`` and ``d sqrt(1 - cos^2) / d cos`` are
  infinite;
- tiny (1e-20) and huge (1e15) embedding norms;
- in float32 and float64, for every method (several hyper-parameter settings);
- the bfloat16 ``torch.autocast`` case: float32 margin arithmetic and loss, parameters never
  cast, finite gradients.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import Tensor

from marginkit.losses import MarginHead, available, build

from .runs import RUN_STEPS, training_loss

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    *[(name, {}) for name in available()],  # the paper defaults
    ("softmax", {"bias": True}),
    ("lsoftmax", {"margin": 4, "lambda_": 0.0}),
    ("lsoftmax", {"margin": 5, "lambda_": 0.0}),
    ("sphereface", {"margin": 4, "lambda_": 0.0}),
    ("normface", {"scale": 16.0, "learn_scale": True}),
    ("arcface", {"scale": 64.0, "margin": 1.2}),
    ("combined", {"scale": 64.0, "multiplicative": 2.0, "angular": 0.3, "additive": 0.1}),
    ("combined", {"scale": 64.0, "multiplicative": 1.0, "angular": 0.3, "additive": 0.2}),
    ("camsoftmax", {"c": math.pi / 4}),
    ("camsoftmax", {"c": 2.0}),
    ("camsoftmax", {"c": math.pi / 4, "normalize": False}),
]

EDGES = ["aligned", "opposite", "tiny", "huge", "aligned-tiny", "opposite-huge"]
CLASSES = 4


def config_id(config: tuple[str, dict[str, Any]]) -> str:
    name, kwargs = config
    return name + "".join(f"-{key}={value:.3g}" for key, value in kwargs.items())


def edge_embeddings(edge: str, weight: Tensor, labels: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, D) embeddings at one of the numerical edges, built in float64 then cast."""
    weight = weight.detach().double()
    generator = torch.Generator().manual_seed(0)
    random = torch.randn(labels.shape[0], weight.shape[1], dtype=torch.float64, generator=generator)
    if edge.startswith("aligned"):
        direction = weight[labels]  # cos theta_y = +1
    elif edge.startswith("opposite"):
        direction = -weight[labels]  # cos theta_y = -1
    else:
        direction = random
    unit = direction / direction.norm(dim=1, keepdim=True)
    norm = 1e-20 if edge.endswith("tiny") else 1e15 if edge.endswith("huge") else 2.5
    return (norm * unit).to(dtype)


def assert_finite_everywhere(head: MarginHead, loss: Tensor, embeddings: Tensor) -> None:
    assert torch.isfinite(loss), f"loss is {loss}"
    assert embeddings.grad is not None
    assert torch.isfinite(embeddings.grad).all(), "d loss / d embeddings is not finite"
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(parameter.grad).all(), f"d loss / d {name} is not finite"


CASES = [(config, 2) for config in CONFIGS] + [((name, {}), 16) for name in available()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{config_id(case[0])}-D{case[1]}")
def test_finite_loss_and_gradients_at_edges(
    case: tuple[tuple[str, dict[str, Any]], int], edge: str, dtype: torch.dtype
) -> None:
    (name, kwargs), dim = case
    head = (
        build(name, num_classes=CLASSES, embedding_dim=dim, **kwargs)
        .set_total_steps(RUN_STEPS)
        .to(dtype)
    )
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    embeddings = edge_embeddings(edge, head.weight, labels, dtype).requires_grad_(True)
    loss = head(embeddings, labels)
    assert loss.dtype == dtype
    loss.backward()
    assert_finite_everywhere(head, loss, embeddings)
    scores = head.logits(embeddings.detach())
    assert torch.isfinite(scores).all()
    assert torch.isfinite(head.margin_logits(embeddings.detach(), labels)).all()


@pytest.mark.parametrize("name", ["arcface", "combined", "cosface", "normface", "camsoftmax"])
def test_aligned_gradient_is_not_silently_zeroed(name: str) -> None:
    """At cos = +1 the other classes still pull: the weight gradient is finite and non-zero."""
    head = build(name, num_classes=CLASSES, embedding_dim=2).set_total_steps(RUN_STEPS)
    labels = torch.tensor([0, 1])
    embeddings = edge_embeddings("aligned", head.weight, labels, torch.float32)
    head(embeddings.requires_grad_(True), labels).backward()
    assert head.weight.grad is not None
    assert torch.isfinite(head.weight.grad).all()
    assert float(head.weight.grad.abs().sum()) > 0.0


def make_backbone(dim: int) -> torch.nn.Linear:
    return torch.nn.Linear(6, dim)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_bfloat16_autocast_float32_head(config: tuple[str, dict[str, Any]]) -> None:
    name, kwargs = config
    dim = 8
    backbone = make_backbone(dim)
    head = build(name, num_classes=CLASSES, embedding_dim=dim, **kwargs).set_total_steps(RUN_STEPS)
    inputs = torch.randn(6, 6)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = backbone(inputs)  # (B, D) bfloat16
    assert embeddings.dtype == torch.bfloat16
    # the same loss in float32 on the same bfloat16 values, without autocast, from a copy at
    # the same step (a training step moves schedules and batch statistics)
    expected = copy.deepcopy(head)(embeddings.detach().float(), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(embeddings, labels)
        margin_logits = head.margin_logits(embeddings, labels)
        scores = head.logits(embeddings)
    assert loss.dtype == torch.float32
    assert margin_logits.dtype == torch.float32
    assert scores.dtype == torch.float32
    assert torch.isfinite(loss)
    assert head.weight.dtype == torch.float32
    # the margin arithmetic ran in float32 (bfloat16 arithmetic would differ by ~1e-2)
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-6, atol=1e-6)
    loss.backward()
    assert head.weight.dtype == torch.float32
    for parameter in [*head.parameters(), *backbone.parameters()]:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
        assert parameter.grad.dtype == parameter.dtype


@pytest.mark.parametrize("parameter_dtype", [torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_bfloat16_autocast_keeps_parameter_dtype(
    config: tuple[str, dict[str, Any]], parameter_dtype: torch.dtype
) -> None:
    """A bfloat16 head and a float64 head under bfloat16 autocast: dtype never changed."""
    name, kwargs = config
    dim = 8
    head = (
        build(name, num_classes=CLASSES, embedding_dim=dim, **kwargs)
        .set_total_steps(RUN_STEPS)
        .to(parameter_dtype)
    )
    dtypes = {key: parameter.dtype for key, parameter in head.named_parameters()}
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    raw = torch.randn(6, dim, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = raw.to(torch.bfloat16)
        loss = head(embeddings, labels)
    # margin arithmetic in float32 at least: float32 for the bfloat16 head, float64 for the
    # float64 one (the promoted dtype; never bfloat16)
    assert loss.dtype == (torch.float64 if parameter_dtype == torch.float64 else torch.float32)
    assert torch.isfinite(loss)
    loss.backward()
    assert {key: p.dtype for key, p in head.named_parameters()} == dtypes
    assert raw.grad is not None and torch.isfinite(raw.grad).all()
    for key, parameter in head.named_parameters():
        assert parameter.grad is not None, key
        assert parameter.grad.dtype == parameter_dtype, key
        assert torch.isfinite(parameter.grad).all(), key


@pytest.mark.parametrize("edge", ["aligned", "opposite"])
@pytest.mark.parametrize("name", available())
def test_bfloat16_autocast_at_cosine_edges(name: str, edge: str) -> None:
    head = build(name, num_classes=CLASSES, embedding_dim=2).set_total_steps(RUN_STEPS)
    labels = torch.tensor([0, 1, 2, 3])
    raw = edge_embeddings(edge, head.weight, labels, torch.float32).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(raw.to(torch.bfloat16), labels)
    assert loss.dtype == torch.float32
    loss.backward()
    assert_finite_everywhere(head, loss, raw)


# A row whose norm is below tiny / eps (zero included) has no direction: every logit it
# produces is 0 (plus the bias of a softmax with bias), so its loss term is log C, and its
# gradient is finite.
NEAR_ZERO = {
    torch.float32: [0.0, 1e-45, 1e-40, 1e-33, 1e-25],
    torch.float64: [0.0, 5e-324, 1e-300, 1e-200],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{config_id(case[0])}-D{case[1]}")
def test_zero_and_near_zero_embeddings_are_finite(
    case: tuple[tuple[str, dict[str, Any]], int], dtype: torch.dtype
) -> None:
    (name, kwargs), dim = case
    # eval mode: the schedules stay put between the two computations compared below
    head = build(name, num_classes=CLASSES, embedding_dim=dim, **kwargs).to(dtype).eval()
    norms = NEAR_ZERO[dtype]
    labels = torch.arange(len(norms) + 1) % CLASSES
    direction = torch.randn(len(norms) + 1, dim, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True)
    scale = torch.tensor([*norms, 1.0], dtype=torch.float64).unsqueeze(1)
    embeddings = (direction * scale).to(dtype).requires_grad_(True)  # the last row: norm 1
    loss = head(embeddings, labels)
    loss.backward()
    assert_finite_everywhere(head, loss, embeddings)
    # the fused loss equals the cross-entropy of margin_logits, gradients included
    fused = embeddings.grad.clone()
    embeddings.grad = None
    head.zero_grad()
    logits = head.margin_logits(embeddings, labels)
    training_loss(head, logits, embeddings, labels).backward()
    assert_finite_everywhere(head, loss, embeddings)
    # the smallest subnormal (second row) is only required finite: its rounding decides
    # which of its cosines each path clamps to +-1
    keep = [row for row in range(len(labels)) if row != 1]
    torch.testing.assert_close(fused[keep], embeddings.grad[keep])
    torch.testing.assert_close(
        head(embeddings, labels), training_loss(head, logits, embeddings, labels)
    )
    assert torch.isfinite(head.logits(embeddings.detach())).all()


@pytest.mark.parametrize("name", available())
def test_zero_embedding_has_every_logit_zero(name: str) -> None:
    head = build(name, num_classes=10, embedding_dim=8).eval()
    embeddings = torch.zeros(1, 8, requires_grad=True)
    loss = head(embeddings, torch.tensor([3]))
    classes = 11 if head.virtual_class else 10
    penalty = head.penalty(embeddings.detach())  # MagFace's regulariser, of the norm alone
    expected = math.log(classes) + (0.0 if penalty is None else float(penalty))
    torch.testing.assert_close(loss.detach(), torch.tensor(expected))
    loss.backward()
    assert torch.isfinite(embeddings.grad).all() and torch.isfinite(head.weight.grad).all()
    logits = head.margin_logits(embeddings.detach(), torch.tensor([3]))
    assert torch.equal(logits, torch.zeros_like(logits))


def test_softmax_at_zero_is_the_plain_linear_layer() -> None:
    """No margin, so no special case: the loss and gradients of ``F.linear`` + cross-entropy."""
    head = build("softmax", num_classes=10, embedding_dim=8, bias=True)
    with torch.no_grad():
        head.bias.normal_()
    embeddings = torch.zeros(2, 8, requires_grad=True)
    labels = torch.tensor([3, 5])
    head(embeddings, labels).backward()
    plain = embeddings.detach().clone().requires_grad_(True)
    weight = head.weight.detach().clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(
        torch.nn.functional.linear(plain, weight, head.bias.detach()), labels
    ).backward()
    torch.testing.assert_close(embeddings.grad, plain.grad)
    torch.testing.assert_close(head.weight.grad, weight.grad)
