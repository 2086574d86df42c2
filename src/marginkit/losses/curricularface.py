"""CurricularFace (Huang et al., CVPR 2020): ArcFace's target with adaptively modulated hard
negatives."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginkit.losses.functional import (
    arcface_target,
    cosine_of_sum,
    curricular_negatives,
)
from marginkit.losses.fused import NegativeModulation, inverse_column_norms
from marginkit.losses.head import MAX_SCALE, MarginHead, ShardedBatch, check_float, check_range
from marginkit.losses.sanity import warn_margin
from marginkit.schedules import Schedule

__all__ = ["CurricularFace"]


class _CurricularNegatives(torch.autograd.Function):
    """``N(t, cos(theta_ij))`` of every class, (B, N), and the plain cosines, from unit rows
    and raw class weights, without a normalised copy of the weight.

    Composed with autograd, the same values keep the normalised (N, D) weight, its gradient
    and several (B, N) intermediates alive (4.9x a plain layer's time at C = 100k). Here the
    forward keeps the (B, N) cosines; the backward multiplies the incoming gradient by
    ``dN / dcos`` (1, or ``t + 2 cos`` for a hard negative) in one (B, N) buffer and takes
    the two products of a linear layer with the weight-normalisation correction
    ``-(sum_i g_ij cos_ij) W_j / ||W_j||^2``. A cosine clamped to +-1 (rounding) passes no
    gradient, as the reference's clamp.
    """

    @staticmethod
    def forward(
        ctx, unit_rows: Tensor, weight: Tensor, boundary: Tensor, t: float
    ) -> tuple[Tensor, Tensor]:
        inverse = inverse_column_norms(weight)  # (N,)
        cosine = torch.mm(unit_rows, weight.t()).mul_(inverse)  # (B, N)
        clamped = (cosine.abs() > 1.0).nonzero()  # (K, 2): rare, rounding past +-1
        cosine.clamp_(-1.0, 1.0)
        ctx.t = t
        ctx.save_for_backward(unit_rows, weight, inverse, cosine, boundary, clamped)
        ctx.mark_non_differentiable(cosine)
        return curricular_negatives(cosine, boundary, t), cosine

    @staticmethod
    def backward(ctx, grad_negatives: Tensor, _grad_cosine: Tensor):
        unit_rows, weight, inverse, cosine, boundary, clamped = ctx.saved_tensors
        # g_ij = dL/dN_ij * dN/dcos_ij, in one (B, N) buffer
        gradient = torch.where(cosine > boundary, ctx.t + 2.0 * cosine, 1.0).mul_(grad_negatives)
        gradient[clamped[:, 0], clamped[:, 1]] = 0.0
        statistic = (gradient * cosine).sum(dim=0)  # (N,): sum_i g_ij cos_ij
        gradient.mul_(inverse)  # g_ij / ||W_j||
        grad_rows = gradient @ weight if ctx.needs_input_grad[0] else None  # (B, D)
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = gradient.t() @ unit_rows  # (N, D)
            grad_weight.addcmul_(weight, (statistic * inverse.square()).unsqueeze(1), value=-1.0)
        return grad_rows, grad_weight, None, None


class CurricularFace(MarginHead):
    """CurricularFace: Adaptive Curriculum Learning Loss for Deep Face Recognition (Yuge Huang,
    Yuhan Wang, Ying Tai, Xiaoming Liu, Pengcheng Shen, Shaoxin Li, Jilin Li, Feiyue Huang,
    CVPR 2020).

    Normalised embeddings and class weights; with ``cos(theta_j)`` the cosine between the
    embedding and class ``j`` and ``y`` the label:

    - target logit ``s T(cos(theta_y))``, ArcFace's ``T = cos(theta_y + m)`` while
      ``theta_y + m <= pi``, else the fallback ``cos(theta_y) - m sin(m)`` (as the official
      code, :func:`~marginkit.losses.functional.arcface_target` with ``"insightface"``);
    - non-target logits ``s N(t, cos(theta_j))`` with ``N = cos(theta_j)`` for an easy negative
      (``cos(theta_j) <= cos(theta_y + m)``) and ``N = cos(theta_j) (t + cos(theta_j))`` for a
      hard one (``cos(theta_j) > cos(theta_y + m)``). As in the official code
      (HuangYG123/CurricularFace, ``head/metrics.py``) the hard test compares with
      ``cos(theta_y + m) = cos(theta_y) cos(m) - sin(theta_y) sin(m)`` itself, also past
      ``theta_y + m = pi``, not with the fallback-applied target; the test takes no gradient.
    - ``t``, the buffer ``t`` (0 at the start, no gradient): in each training step, before it
      is used on the batch (the official order), ``t <- momentum r + (1 - momentum) t`` with
      ``r`` the batch's mean target cosine ``cos(theta_y)`` (an embedding without a direction
      counts with cosine 0). Early in training ``t`` is small and hard negatives are damped
      (easy samples first); as ``t`` grows towards 1 they are emphasised. Only a training
      ``forward`` stores ``t``; eval mode, :meth:`logits` and :meth:`margin_logits` read it
      (the latter, in training mode, with this batch folded in, as ``forward`` would use it).
      The official code updates ``t`` in every call, eval included.

    The whole (B, C) logit matrix changes: ``forward`` passes ``t`` and the boundaries to
    the fused cross-entropy (:class:`~marginkit.losses.fused.NegativeModulation`), which
    modulates each block of scores in place (``chunk_size`` allowed);
    :meth:`margin_logits` composes the same logits with autograd. Angles in radians.

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        scale: s in (0, 1e4], float or schedule (64 in the paper).
        margin: m in [0, pi), radians, float or schedule (0.5 in the paper).
        momentum: weight of the new batch in ``t``'s moving average, in (0, 1]; 0.01 as in
            the official code.
        learn_scale: learn s as the parameter ``log_scale`` (``s = exp(log_scale)``),
            starting from ``scale`` (a float then); default False, the paper's fixed scale.
        total_steps: the run's number of training steps, for a hyper-parameter given as a
            fraction of the run (as :meth:`MarginHead.set_total_steps`); None: not known.
    """

    t: Tensor

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float | Schedule = 64.0,
        margin: float | Schedule = 0.5,
        momentum: float = 0.01,
        learn_scale: bool = False,
        *,
        total_steps: int | None = None,
    ) -> None:
        check_range("scale", scale, 0.0, MAX_SCALE, low_inclusive=False)
        check_range("margin", margin, 0.0, math.pi, high_inclusive=False)
        momentum = check_float("momentum", momentum, 0.0, 1.0, low_inclusive=False)
        super().__init__(
            num_classes,
            embedding_dim,
            total_steps=total_steps,
            learn_scale=learn_scale,
            scale=scale,
            margin=margin,
        )
        self.momentum = momentum
        self.register_buffer("t", torch.zeros(()))
        largest = self.schedules["margin"].bounds()[1]
        warn_margin(type(self).__name__, "angular", largest, num_classes, embedding_dim)

    def target(self, cosine: Tensor) -> Tensor:
        return arcface_target(cosine, self.schedules["margin"].current())

    def _batch_statistics(
        self,
        embeddings: Tensor,
        weight: Tensor,
        labels: Tensor,
        classes: Tensor | None,
        update: bool,
    ) -> dict[str, Tensor]:
        """``t`` with this batch folded in (training), else nothing (the buffer is used)."""
        if not update:
            return {}
        with torch.no_grad():
            unit_rows = self.margin_geometry.rows(embeddings, 1.0)  # (B, D), 0: no direction
            cosine, _ = self.margin_geometry.target_cosine_and_radial(unit_rows, weight[labels])
            t = self.t.to(cosine.dtype)
            return {"t": self.momentum * cosine.mean() + (1.0 - self.momentum) * t}

    def _shard_statistics(
        self,
        embeddings: Tensor,
        weight: Tensor,
        targets: Tensor,
        classes: Tensor | None,
        batch: ShardedBatch,
        update: bool,
    ) -> dict[str, Tensor]:
        """``t`` as the whole head's (training), from every sample's target cosine (one
        all-reduce of (B,)), and the (B,) boundaries ``cos(theta_y + m)`` of the
        hard-negative test, which every rank needs for its classes."""
        cosine = batch.target_cosines()  # (B,)
        statistics = {"boundary": cosine_of_sum(cosine, self.schedules["margin"].current())[0]}
        if update:
            t = self.t.to(cosine.dtype)
            statistics["t"] = self.momentum * cosine.mean() + (1.0 - self.momentum) * t
        return statistics

    def _boundary(self, rows: Tensor, target_weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The (B,) target cosines, the radial factors and the (B,) detached boundaries
        ``cos(theta_y + m)`` (without the fallback), from the rows and their class weights,
        (B, D) each: both paths' hard-negative test."""
        target_cosine, radial = self.margin_geometry.target_cosine_and_radial(
            rows, target_weight
        )  # (B,) each; radial s, or 0 without a direction
        margin = self.schedules["margin"].current()
        with torch.no_grad():
            boundary = cosine_of_sum(target_cosine.detach(), margin)[0]  # (B,)
        return target_cosine, radial, boundary

    def _negatives(
        self, rows: Tensor, weight: Tensor, labels: Tensor
    ) -> tuple[int, NegativeModulation | None]:
        with torch.no_grad():
            boundary = self._boundary(rows, weight[labels])[2]
        return 1, NegativeModulation(float(self._statistic("t")), boundary)

    def _training_logits(
        self, embeddings: Tensor, weight: Tensor, bias: Tensor | None, labels: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        rows = self.margin_geometry.rows(embeddings, self._scale())  # (B, D): s x / ||x||
        target_cosine, radial, boundary = self._boundary(rows, weight[labels])
        unit_rows = self.margin_geometry.rows(embeddings, 1.0)  # (B, D)
        boundary = boundary.unsqueeze(1)  # (B, 1)
        t = float(self._statistic("t"))
        # (B, K) each: N(t, cos theta_j) and the plain cos theta_j
        negatives, cosine = _CurricularNegatives.apply(unit_rows, weight, boundary, t)
        logits = radial.unsqueeze(1) * negatives
        target_logit = radial * self.target(target_cosine)  # (B,)
        logits = logits.scatter(1, labels.unsqueeze(1), target_logit.unsqueeze(1))
        plain = (radial.unsqueeze(1) * cosine).detach()  # (B, K) scores without margin
        return logits, plain, target_cosine.detach()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, momentum={self.momentum}"
