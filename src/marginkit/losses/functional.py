"""Pure tensor functions of the heads: row normalisation and the margin functions.

Every margin-based softmax in marginkit replaces the target logit ``r * cos(theta_y)`` by
``r * f(cos(theta_y))``, where ``r`` is the radial factor (a fixed scale ``s`` for the
normalised family, ``||x||`` or ``||W_y|| ||x||`` for the unnormalised one; see
:mod:`marginkit.losses.geometry`) and ``f`` is the method's margin function defined here. Each
margin function is element-wise, takes the target cosines of any shape, and is differentiable
everywhere on ``[-1, 1]`` with finite gradients, including the end points where
``d acos / d cos`` is infinite (see ``sine_from_cosine``).

The row normalisation (:func:`row_norms`, :func:`directions`) is the one every head and the
fused path use: free of overflow and underflow, and NaN-free for rows without a direction.

Angles are in radians throughout. The formulas are those of ``docs/losses.md``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "ARCFACE_FALLBACKS",
    "adaface_target",
    "arccos",
    "arcface_easy_target",
    "arcface_target",
    "camsoftmax_exponent",
    "camsoftmax_target",
    "chebyshev",
    "combined_target",
    "cosface_target",
    "cosine_of_sum",
    "curricular_negatives",
    "direction_floor",
    "directions",
    "lsoftmax_psi",
    "lsoftmax_target",
    "row_norms",
    "sine_from_cosine",
]


def row_norms(matrix: Tensor) -> Tensor:
    """Euclidean norms of the rows, (N, D) -> (N, 1), free of overflow and underflow.

    Each row is divided by its largest magnitude (a detached constant, so the gradient is
    the exact ``x / ||x||``) before squaring: rows with norms near 1e-30 or 1e30 in float32
    keep a correct norm instead of 0 or inf.
    """
    largest = (
        matrix.detach().abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(matrix.dtype).tiny)
    )
    return (matrix / largest).norm(dim=1, keepdim=True) * largest


def direction_floor(dtype: torch.dtype) -> float:
    """Smallest norm at which a row still has a direction: ``tiny / eps`` of ``dtype``.

    About 1e-31 in float32 and 1e-292 in float64; below it ``1 / ||x||``, the factor that
    the normalisation puts on the gradient, could overflow.
    """
    info = torch.finfo(dtype)
    return info.tiny / info.eps


def directions(matrix: Tensor, norms: Tensor) -> Tensor:
    """Unit rows ``matrix / norms``, (N, D); a row without a direction becomes the zero row.

    A row whose norm is below :func:`direction_floor` (a zero row included) has no
    direction: its normalised form is 0, so its cosine with every class is 0, and no
    gradient flows through it, instead of ``0 / 0 = NaN`` or an overflowing ``1 / ||x||``.

    Args:
        matrix: (N, D) rows.
        norms: (N, 1) their norms (:func:`row_norms`).
    """
    usable = norms >= direction_floor(matrix.dtype)  # (N, 1)
    safe = torch.where(usable, norms, torch.ones_like(norms))  # no 0 / 0, even unused
    return torch.where(usable, matrix / safe, torch.zeros_like(matrix))


def _resolution(dtype: torch.dtype) -> float:
    """Smallest sine that a cosine in ``dtype`` can resolve: ``sqrt(machine epsilon)``.

    A cosine within one ulp of 1 leaves the angle undetermined below this sine, so the
    derivative ``1 / sin(theta)`` is capped there: the chain rule then gives the bounded
    gradient the exact function has, instead of ``inf * 0 = NaN`` at ``cos = +-1``.
    """
    return torch.finfo(dtype).eps ** 0.5


class _SineFromCosine(torch.autograd.Function):
    """``sin(theta) = sqrt(1 - cos^2)``, exact forward, derivative capped at ``cos = +-1``."""

    @staticmethod
    def forward(ctx, cosine: Tensor) -> Tensor:
        sine = (1.0 - cosine * cosine).clamp_min(0.0).sqrt()
        ctx.save_for_backward(cosine, sine)
        return sine

    @staticmethod
    def backward(ctx, grad_sine: Tensor) -> Tensor:
        cosine, sine = ctx.saved_tensors
        return -grad_sine * cosine / sine.clamp_min(_resolution(sine.dtype))


class _Arccos(torch.autograd.Function):
    """``acos`` with the derivative ``-1 / sin(theta)`` capped at ``cos = +-1``."""

    @staticmethod
    def forward(ctx, cosine: Tensor) -> Tensor:
        cosine = cosine.clamp(-1.0, 1.0)
        ctx.save_for_backward(cosine)
        return torch.acos(cosine)

    @staticmethod
    def backward(ctx, grad_angle: Tensor) -> Tensor:
        (cosine,) = ctx.saved_tensors
        sine = (1.0 - cosine * cosine).clamp_min(0.0).sqrt()
        return -grad_angle / sine.clamp_min(_resolution(sine.dtype))


def sine_from_cosine(cosine: Tensor) -> Tensor:
    """``sin(theta)`` for ``theta`` in ``[0, pi]`` from ``cos(theta)``, NaN-free at ``+-1``.

    Args:
        cosine: cosines in ``[-1, 1]``, any shape.

    Returns:
        Tensor of the same shape; its gradient is finite everywhere.
    """
    return _SineFromCosine.apply(cosine)


def arccos(cosine: Tensor) -> Tensor:
    """``theta = acos(cos)`` in ``[0, pi]`` with a finite gradient at ``cos = +-1``.

    Values outside ``[-1, 1]`` (rounding of a normalised dot product) are clamped first.
    """
    return _Arccos.apply(cosine)


def cosine_of_sum(
    cosine: Tensor, angle: float | Tensor
) -> tuple[Tensor, Tensor | float, Tensor | float]:
    """``cos(theta + angle)`` from ``cos(theta)``, with ``cos(angle)`` and ``sin(angle)``.

    ``cos(theta + a) = cos(theta) cos(a) - sin(theta) sin(a)``: no ``acos`` is taken, and
    ``sin(theta)`` comes from :func:`sine_from_cosine`, so the gradient is finite at
    ``cos = +-1``. The shared step of ArcFace, its easy margin, MagFace, AdaFace and
    CurricularFace's hard-negative boundary.

    Args:
        cosine: cosines in ``[-1, 1]``, any shape.
        angle: a float (through ``math.cos``/``math.sin``), or a tensor broadcastable to
            ``cosine`` (per-sample angles; the gradient flows into it too).

    Returns:
        ``cos(theta + angle)`` (the shape of ``cosine``), ``cos(angle)`` and ``sin(angle)``.
    """
    cos_angle: Tensor | float
    sin_angle: Tensor | float
    if isinstance(angle, Tensor):
        cos_angle, sin_angle = torch.cos(angle), torch.sin(angle)
    else:
        cos_angle, sin_angle = math.cos(angle), math.sin(angle)
    return cosine * cos_angle - sine_from_cosine(cosine) * sin_angle, cos_angle, sin_angle


def cosface_target(cosine: Tensor, margin: float | Tensor) -> Tensor:
    """AM-Softmax / CosFace: ``cos(theta) - margin`` (Wang et al., 2018)."""
    return cosine - margin


#: The continuations of ArcFace's target past ``theta + m = pi`` (``arcface_target``).
ARCFACE_FALLBACKS = ("insightface", "continuous")


def arcface_target(cosine: Tensor, margin: float | Tensor, fallback: str = "insightface") -> Tensor:
    """ArcFace: ``cos(theta + margin)`` while ``theta + margin <= pi``, else a monotone
    continuation (Deng et al., CVPR 2019).

    ``fallback="insightface"`` (default, the official code's): ``cos(theta) - m sin(m)``,
    decreasing but below ``-1`` at the switch (a jump of ``1 - cos m - m sin m``, about
    0.12 for m = 0.5). ``fallback="continuous"``: ``cos(theta) - (1 - cos(m))``, which
    equals ``-1 = cos(pi)`` at the switch ``theta = pi - m``, so the target is continuous
    and strictly decreasing on ``[0, pi]`` with derivative 1 in ``cos(theta)`` beyond.

    ``cos(theta + m)`` comes from :func:`cosine_of_sum` (no ``acos``; finite gradient at
    ``+-1``). ``margin`` is one float for every sample, or a tensor broadcastable to ``cosine``
    (a per-sample margin, e.g. MagFace's ``m(a_i)``, shape (B,)); the gradient then flows
    into the margin as well. A float is used through ``math.cos``/``math.sin``, as before.
    """
    if fallback not in ARCFACE_FALLBACKS:
        raise ValueError(
            f"fallback must be one of {', '.join(ARCFACE_FALLBACKS)}; got {fallback!r}"
        )
    cosine = cosine.clamp(-1.0, 1.0)
    shifted, cos_margin, sin_margin = cosine_of_sum(cosine, margin)
    if fallback == "continuous":
        beyond = cosine - (1.0 - cos_margin)
    else:
        beyond = cosine - margin * sin_margin
    # theta + m <= pi  <=>  cos(theta) >= cos(pi - m) = -cos(m)
    return torch.where(cosine >= -cos_margin, shifted, beyond)


def arcface_easy_target(cosine: Tensor, margin: float | Tensor) -> Tensor:
    """ArcFace's "easy margin" (InsightFace's and the official MagFace code's
    ``easy_margin=True``): ``cos(theta + margin)`` where ``cos(theta) > 0``, else
    ``cos(theta)`` (no margin for ``theta >= pi / 2``).

    Not monotone: at ``theta = pi / 2`` the target jumps up from ``-sin(m)`` to 0. For
    ``margin > pi / 2`` the shifted angle can pass ``pi`` below ``theta = pi / 2``, where
    ``cos(theta + m)`` rises again (no continuation, as in that code).

    Args:
        cosine: target cosines, any shape.
        margin: a float, or a tensor broadcastable to ``cosine`` (per-sample margins);
            differentiable in both.
    """
    cosine = cosine.clamp(-1.0, 1.0)
    return torch.where(cosine > 0.0, cosine_of_sum(cosine, margin)[0], cosine)


def combined_target(
    cosine: Tensor, multiplicative: float, angular: float, additive: float
) -> Tensor:
    """Combined margin (InsightFace): ``cos(multiplicative * theta + angular) - additive``.

    With ``multiplicative == 1`` this is exactly ``arcface_target(cos, angular) - additive``
    (including ArcFace's fallback), so ``(1, m, 0)`` is ArcFace and ``(1, 0, m)`` is CosFace.
    Otherwise, past the point ``theta* = (pi - angular) / multiplicative`` where the shifted
    angle reaches ``pi``, the target continues as ``-1 - additive - (cos(theta*) - cos(theta))``:
    continuous and still decreasing in ``theta``, so the target logit stays monotone.
    """
    if multiplicative == 1.0:
        return arcface_target(cosine, angular) - additive
    cosine = cosine.clamp(-1.0, 1.0)
    shifted = torch.cos(multiplicative * arccos(cosine) + angular) - additive
    limit = (math.pi - angular) / multiplicative
    if limit >= math.pi:
        return shifted
    fallback = -1.0 - additive - (math.cos(limit) - cosine)
    return torch.where(cosine >= math.cos(limit), shifted, fallback)


def chebyshev(cosine: Tensor, degree: int) -> Tensor:
    """``cos(degree * theta)`` as the Chebyshev polynomial ``T_degree(cos(theta))``."""
    previous, current = torch.ones_like(cosine), cosine
    if degree == 0:
        return previous
    for _ in range(degree - 1):
        previous, current = current, 2.0 * cosine * current - previous
    return current


def lsoftmax_psi(cosine: Tensor, margin: int) -> Tensor:
    """L-Softmax's ``psi(theta) = (-1)^k cos(m theta) - 2k`` for ``theta`` in
    ``[k pi / m, (k + 1) pi / m]`` (Liu et al., ICML 2016), computed without ``acos``.

    ``k`` counts the thresholds ``cos(j pi / m)``, ``j = 1..m-1``, that ``cos(theta)`` lies
    below. ``psi`` is continuous and decreasing on ``[0, pi]`` with range ``[-(2m - 1), 1]``.
    """
    cosine = cosine.clamp(-1.0, 1.0)
    thresholds = torch.cos(
        torch.arange(1, margin, dtype=cosine.dtype, device=cosine.device) * (math.pi / margin)
    )
    k = (cosine.unsqueeze(-1) < thresholds).sum(dim=-1).to(cosine.dtype)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * chebyshev(cosine, margin) - 2.0 * k


def lsoftmax_target(cosine: Tensor, margin: int, lambda_: float) -> Tensor:
    """L-Softmax / A-Softmax target: ``(lambda cos(theta) + psi(theta)) / (1 + lambda)``.

    ``lambda_`` blends in plain softmax: ``lambda_ -> inf`` is softmax, ``0`` the full margin.
    """
    return (lambda_ * cosine + lsoftmax_psi(cosine, margin)) / (1.0 + lambda_)


def camsoftmax_exponent(c: float) -> float:
    """Cam-softmax's ``g(c) = 1 / (1 - log2(1 + cos(c)))``; ``g(pi / 2) = 1``."""
    return 1.0 / (1.0 - math.log2(1.0 + math.cos(c)))


def camsoftmax_target(cosine: Tensor, c: float) -> Tensor:
    """Cam-softmax: ``f = (1 + cos(theta))^g / 2^(g - 1) - 1`` with ``g = g(c)``
    (Süveges & McKenna, ICPR 2020; the denominator as in the authors' code).

    ``f(c) = 0``, ``f(0) = 1``, ``f(pi) = -1``; ``c = pi / 2`` gives ``f = cos(theta)``.
    The derivative is taken at the base ``1 + cos`` raised to at least machine epsilon, so
    it is finite at ``theta = pi`` even for ``c > pi / 2`` (exponent below 1) and equals 1
    there for ``c = pi / 2``; the value is that of the exact base (a detached correction),
    so ``f(pi) = -1`` holds exactly.
    """
    exponent = camsoftmax_exponent(c)
    base = 1.0 + cosine.clamp(-1.0, 1.0)
    raised = base + (base.clamp_min(torch.finfo(cosine.dtype).eps) - base).detach()
    safe = raised.pow(exponent)
    power = safe + (base.detach().pow(exponent) - safe.detach())
    return power / 2.0 ** (exponent - 1.0) - 1.0


def curricular_negatives(cosine: Tensor, boundary: Tensor, t: Tensor | float) -> Tensor:
    """CurricularFace's non-target cosines ``N(t, cos(theta_j))`` (Huang et al., CVPR 2020).

    ``cos(theta_j)`` for an easy negative (``cos(theta_j) <= boundary``) and
    ``cos(theta_j) (t + cos(theta_j))`` for a hard one (``cos(theta_j) > boundary``),
    element-wise. The comparison takes no gradient; both branches are polynomials in the
    cosine, so the gradient is finite everywhere.

    Args:
        cosine: (B, K) cosines ``cos(theta_ij)`` in ``[-1, 1]``.
        boundary: (B, 1) each sample's boundary (CurricularFace: ``cos(theta_y + m)``).
        t: the modulation parameter, a float or a 0-d tensor without gradient.
    """
    hard = cosine > boundary  # (B, K)
    return torch.where(hard, cosine * (t + cosine), cosine)


def adaface_target(cosine: Tensor, margin: float, margin_scaler: Tensor | float = 0.0) -> Tensor:
    """AdaFace: ``cos(clip(theta + g_angle, 0, pi)) - g_add`` with the per-sample margins
    ``g_angle = -margin z`` and ``g_add = margin + margin z`` (Kim, Jain and Liu, CVPR 2022).

    ``z`` (``margin_scaler``, in ``[-1, 1]``) is the sample's normalised feature norm: ``z = 1``
    (a high-quality sample) gives ``cos(theta - m) - 2m``, ``z = 0`` CosFace's
    ``cos(theta) - m``, ``z = -1`` ArcFace's ``cos(theta + m)``.

    ``cos(theta + g)`` comes from :func:`cosine_of_sum` (no ``acos``). The clip of the
    angle to ``[0, pi]`` is a comparison of cosines (``|g| <= pi``): ``theta + g <= 0`` iff
    ``g < 0`` and ``cos(theta) >= cos(g)`` (the target is then ``1 - g_add``),
    ``theta + g >= pi`` iff ``g > 0`` and ``cos(theta) <= -cos(g)`` (then ``-1 - g_add``);
    there the target is flat in ``theta`` (zero gradient), as the clip of the paper's formula.

    Args:
        cosine: target cosines in ``[-1, 1]``, any shape.
        margin: m (radians for the angular part, a cosine offset for the additive one).
        margin_scaler: ``z``, a float or a tensor broadcastable to ``cosine``; detached.
    """
    cosine = cosine.clamp(-1.0, 1.0)
    scaler = torch.as_tensor(margin_scaler, dtype=cosine.dtype, device=cosine.device)
    angle = -margin * scaler  # g_angle
    additive = margin + margin * scaler  # g_add
    shifted, cos_angle, _ = cosine_of_sum(cosine, angle)  # cos(theta + g)
    one = torch.ones_like(shifted)
    shifted = torch.where((angle < 0) & (cosine >= cos_angle), one, shifted)  # theta + g <= 0
    shifted = torch.where((angle > 0) & (cosine <= -cos_angle), -one, shifted)  # >= pi
    return shifted - additive
