"""A naive per-sample float64 re-implementation of every loss, from the formula sheet.

Written from the formulas of ``docs/losses.md`` and nothing else: it shares no code with
``marginkit``. It is deliberately slow and literal: loops over samples and classes, scalar
math on 0-d float64 tensors, ``acos`` taken directly, ``cos(m theta)`` evaluated as such (no
Chebyshev expansion), ``psi`` with ``k = floor(theta m / pi)``, Cam-softmax's ``f`` with the
``2^(g - 1)`` denominator, Virtual Softmax's extra logit ``||W_y|| ||x||``, and the optional
softmax bias. Being plain autograd arithmetic, its gradients are a reference for the heads'
gradients wherever ``acos`` is differentiable (away from ``cos theta = +-1``).

Not a test module (no ``test_`` prefix); imported by the tests in this package.

Hyper-parameters are passed by the same keyword names as the heads' constructors; every one
the method needs must be given (no defaults here, so a test states what it compares).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "EDGES",
    "camsoftmax_f",
    "edge_embeddings",
    "embedding_at_angle",
    "lsoftmax_psi",
    "random_problem",
    "reference_logits",
    "reference_loss",
    "reference_per_sample_loss",
    "reference_scores",
]

NORMALIZED_METHODS = {"normface", "cosface", "arcface", "combined"}


def _norm(vector: Tensor) -> Tensor:
    return torch.sqrt((vector * vector).sum())


def _dot(first: Tensor, second: Tensor) -> Tensor:
    return (first * second).sum()


def lsoftmax_psi(theta: Tensor, margin: int) -> Tensor:
    """``psi(theta) = (-1)^k cos(m theta) - 2k`` with ``k = floor(theta m / pi)``.

    ``k`` is capped at ``m - 1`` so that ``theta = pi`` falls in the last interval.
    """
    k = min(math.floor(float(theta.detach()) * margin / math.pi), margin - 1)
    return (-1.0) ** k * torch.cos(margin * theta) - 2.0 * k


def camsoftmax_f(cosine: Tensor | float, c: float) -> Tensor | float:
    """``f(cos; c) = (1 + cos)^g / 2^(g - 1) - 1`` with ``g = 1 / (1 - log2(1 + cos c))``."""
    g = 1.0 / (1.0 - math.log2(1.0 + math.cos(c)))
    return (1.0 + cosine) ** g / 2.0 ** (g - 1.0) - 1.0


def _target_logit(
    method: str, x: Tensor, w: Tensor, hyperparameters: dict[str, Any], bias: Tensor | None
) -> Tensor:
    """The logit of the labelled class for one sample."""
    x_norm, w_norm = _norm(x), _norm(w)
    dot = _dot(w, x)
    cosine = dot / (w_norm * x_norm)
    theta = torch.acos(cosine)
    if method == "softmax":
        return dot if bias is None else dot + bias
    if method == "virtual":
        return dot
    if method in ("lsoftmax", "sphereface"):
        margin, lambda_ = hyperparameters["margin"], hyperparameters["lambda_"]
        radial = w_norm * x_norm if method == "lsoftmax" else x_norm
        return radial * (lambda_ * cosine + lsoftmax_psi(theta, margin)) / (1.0 + lambda_)
    if method == "camsoftmax":
        f = camsoftmax_f(cosine, hyperparameters["c"])
        if hyperparameters["normalize"]:
            return hyperparameters["scale"] * f
        return w_norm * x_norm * f
    scale = hyperparameters["scale"]
    if method == "normface":
        return scale * cosine
    if method == "cosface":
        return scale * (cosine - hyperparameters["margin"])
    if method == "arcface":
        margin = hyperparameters["margin"]
        if float(theta.detach()) + margin <= math.pi:
            return scale * torch.cos(theta + margin)
        if hyperparameters.get("fallback", "insightface") == "continuous":
            return scale * (cosine - (1.0 - math.cos(margin)))
        return scale * (cosine - margin * math.sin(margin))
    if method == "combined":
        m1 = hyperparameters["multiplicative"]
        m2 = hyperparameters["angular"]
        m3 = hyperparameters["additive"]
        if m1 * float(theta.detach()) + m2 <= math.pi:
            return scale * (torch.cos(m1 * theta + m2) - m3)
        # Past m1 theta + m2 = pi the papers state nothing; marginkit documents its own
        # monotone continuation (ArcFace's fallback when m1 = 1, else continuous in theta).
        if m1 == 1.0:
            return scale * (cosine - m2 * math.sin(m2) - m3)
        limit = (math.pi - m2) / m1
        return scale * (-1.0 - m3 - (math.cos(limit) - cosine))
    raise ValueError(f"unknown method {method!r}")


def _other_logit(
    method: str, x: Tensor, w: Tensor, hyperparameters: dict[str, Any], bias: Tensor | None
) -> Tensor:
    """The logit of a class other than the label: no margin."""
    dot = _dot(w, x)
    if method in ("softmax",):
        return dot if bias is None else dot + bias
    if method in ("lsoftmax", "virtual"):
        return dot
    if method == "camsoftmax" and not hyperparameters["normalize"]:
        return dot
    cosine = dot / (_norm(w) * _norm(x))
    if method == "sphereface":
        return _norm(x) * cosine
    return hyperparameters["scale"] * cosine


def reference_logits(
    method: str,
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    bias: Tensor | None = None,
    **hyperparameters: Any,
) -> Tensor:
    """The logits fed to the cross-entropy, one sample and one class at a time.

    Args:
        method: a registry name (``softmax``, ``lsoftmax``, ...).
        embeddings: (B, D) float64.
        weight: (C, D) float64.
        labels: (B,) class indices.
        bias: (C,) softmax bias, or None.
        **hyperparameters: the method's hyper-parameters (current values).

    Returns:
        (B, C), or (B, C + 1) for ``virtual`` (the virtual class last).
    """
    rows = []
    for i in range(embeddings.shape[0]):
        x, y = embeddings[i], int(labels[i])
        row = []
        for j in range(weight.shape[0]):
            b = None if bias is None else bias[j]
            logit_of = _target_logit if j == y else _other_logit
            row.append(logit_of(method, x, weight[j], hyperparameters, b))
        if method == "virtual":
            row.append(_norm(weight[y]) * _norm(x))
        rows.append(torch.stack(row))
    return torch.stack(rows)


def reference_per_sample_loss(
    method: str,
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    bias: Tensor | None = None,
    **hyperparameters: Any,
) -> Tensor:
    """(B,) cross-entropy ``log sum_j exp(z_j) - z_y`` of each sample, written out."""
    logits = reference_logits(method, embeddings, weight, labels, bias, **hyperparameters)
    losses = []
    for i in range(logits.shape[0]):
        row = logits[i]
        top = row.max().detach()
        log_sum = top + torch.log(torch.exp(row - top).sum())
        losses.append(log_sum - row[int(labels[i])])
    return torch.stack(losses)


def reference_loss(
    method: str,
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    bias: Tensor | None = None,
    **hyperparameters: Any,
) -> Tensor:
    """Scalar batch mean of :func:`reference_per_sample_loss`."""
    per_sample = reference_per_sample_loss(
        method, embeddings, weight, labels, bias, **hyperparameters
    )
    return per_sample.sum() / per_sample.shape[0]


def reference_scores(
    method: str,
    embeddings: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    normalize: bool = True,
) -> Tensor:
    """(B, C) inference scores: ``cos theta_j``, or ``W_j . x`` (+ bias) for unnormalised heads."""
    unnormalized = method in ("softmax", "lsoftmax", "virtual") or (
        method == "camsoftmax" and not normalize
    )
    rows = []
    for i in range(embeddings.shape[0]):
        x = embeddings[i]
        row = []
        for j in range(weight.shape[0]):
            dot = _dot(weight[j], x)
            if unnormalized:
                row.append(dot if bias is None else dot + bias[j])
            else:
                row.append(dot / (_norm(weight[j]) * _norm(x)))
        rows.append(torch.stack(row))
    return torch.stack(rows)


def random_problem(
    batch: int, classes: int, dim: int, seed: int
) -> tuple[Tensor, Tensor, Tensor, torch.Generator]:
    """Random float64 embeddings (B, D) and weights (C, D) with varied norms, labels (B,)
    (every class appears when B >= C), and the generator, to draw more from the same seed."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch, dim, dtype=torch.float64, generator=generator)
    embeddings = embeddings * (0.5 + 2.5 * torch.rand(batch, 1, generator=generator).double())
    weight = torch.randn(classes, dim, dtype=torch.float64, generator=generator)
    weight = weight * (0.5 + 1.5 * torch.rand(classes, 1, generator=generator).double())
    labels = torch.randint(0, classes, (batch,), generator=generator)
    labels[:classes] = torch.arange(min(batch, classes))  # every class appears
    return embeddings, weight, labels, generator


#: The numerical edges of :func:`edge_embeddings` that every head's tests cover.
EDGES = ["aligned", "opposite", "tiny", "zero-row", "huge"]


def edge_embeddings(edge: str, targets: Tensor, dtype: torch.dtype, *, norm: float = 2.5) -> Tensor:
    """(B, D) embeddings at a numerical edge, built in float64 then cast to ``dtype``.

    ``aligned`` / ``opposite``: along / against ``targets`` (cos = +1 / -1); ``tiny`` /
    ``huge``: random directions of norm 1e-30 / 1e30; ``zero``: every row 0; ``zero-row``:
    row 0 without a direction among random rows of norm ``norm``; anything else: random
    directions of norm ``norm`` (a fixed seed).

    Args:
        edge: the edge's name.
        targets: (B, D) the weight row each embedding lines up with (``weight[labels]``).
        dtype: the embeddings' dtype.
        norm: the norm of the ordinary rows.
    """
    targets = targets.detach().double()
    generator = torch.Generator().manual_seed(0)
    random = torch.randn(targets.shape, dtype=torch.float64, generator=generator)
    direction = {"aligned": targets, "opposite": -targets}.get(edge, random)
    unit = direction / direction.norm(dim=1, keepdim=True)
    embeddings = {"tiny": 1e-30, "huge": 1e30, "zero": 0.0}.get(edge, norm) * unit
    if edge == "zero-row":
        embeddings[0] = 0.0
    return embeddings.to(dtype)


def embedding_at_angle(
    direction: Tensor, angle: float, norm: float, generator: torch.Generator
) -> Tensor:
    """A (D,) vector of the given norm at exactly ``angle`` radians from ``direction`` (D >= 2).

    Built as ``cos(angle) u + sin(angle) v`` with ``u`` the unit ``direction`` and ``v`` a
    random unit vector orthogonal to it.
    """
    unit = direction / _norm(direction)
    other = torch.randn(direction.shape, dtype=direction.dtype, generator=generator)
    other = other - _dot(other, unit) * unit
    other = other / _norm(other)
    return norm * (math.cos(angle) * unit + math.sin(angle) * other)
