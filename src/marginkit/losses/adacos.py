"""AdaCos (Zhang et al., CVPR 2019): a cosine softmax without margin whose scale sets itself.

Zhang, Zhao, Qiao, Wang and Li, "AdaCos: Adaptively Scaling Cosine Logits for Effectively
Learning Deep Face Representations", CVPR 2019.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from marginkit._validation import check_count
from marginkit.losses.fused import inverse_column_norms
from marginkit.losses.geometry import GEOMETRIES
from marginkit.losses.head import MAX_SCALE, MarginHead, ShardedBatch

__all__ = ["AdaCos", "dynamic_scale", "fixed_scale", "log_mean_nontarget_sum", "scale_from"]

#: The median target angle is capped at pi / 4 before its cosine is taken (the paper's eq. 16).
ANGLE_CAP = math.pi / 4


def fixed_scale(num_classes: int) -> float:
    """AdaCos's fixed scale ``s_f = sqrt(2) ln(C - 1)`` (the paper's eq. 14), for C >= 3."""
    return math.sqrt(2.0) * math.log(num_classes - 1)


def log_mean_nontarget_sum(
    unit_rows: Tensor,
    weight: Tensor,
    labels: Tensor,
    scale: Tensor,
    chunk_size: int | None = None,
) -> Tensor:
    """``ln B_avg``, ``B_avg = (1/B) sum_i sum_{j != y_i} exp(s cos theta_ij)``, as a
    log-sum-exp: finite in float32 for any scale up to ``MAX_SCALE`` (``exp(1e4 cos)`` would
    overflow).

    Args:
        unit_rows: (B, D) unit embeddings (zero rows for embeddings without a direction:
            cosine 0 with every class).
        weight: (K, D) raw class weights of the softmax (all, or the sampled ones).
        labels: (B,) int64 indices into ``weight``'s rows.
        scale: 0-d, the scale ``s`` in the exponent.
        chunk_size: classes per block (memory O(B x chunk_size)), or None for one block.

    Returns:
        0-d ``ln B_avg``; ``-inf`` when the softmax has no class besides the target (K = 1).
    """
    classes, batch = weight.shape[0], unit_rows.shape[0]
    step = classes if chunk_size is None else chunk_size
    rows = torch.arange(batch, device=labels.device)
    blocks = []
    for start in range(0, classes, step):
        block = weight[start : start + step]  # (k, D)
        # s cos(theta) in one (B, k) buffer, changed in place: the weights are not copied
        scaled = torch.mm(unit_rows, block.t())  # (B, k)
        scaled.mul_(inverse_column_norms(block)).clamp_(-1.0, 1.0).mul_(scale)
        inside = (labels >= start) & (labels < start + block.shape[0])
        scaled[rows[inside], labels[inside] - start] = -math.inf  # the targets leave the sum
        largest = scaled.max()
        if torch.isinf(largest):  # only targets in this block (k = 1): nothing to add
            blocks.append(largest)
            continue
        blocks.append(largest + scaled.sub_(largest).exp_().sum().log())
    return torch.logsumexp(torch.stack(blocks), dim=0) - math.log(batch)


def dynamic_scale(
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    previous: Tensor,
    chunk_size: int | None = None,
) -> Tensor:
    """One step of AdaCos's dynamic scale (the paper's eq. 16 and Algorithm 1), detached:

        s_new = ln B_avg / cos(min(pi / 4, theta_med))

    with ``B_avg`` taken at the previous scale (:func:`log_mean_nontarget_sum`) and
    ``theta_med`` the median of the batch's target angles; for an even batch the lower of
    the two middle angles (``torch.median``, as in the widely used reference code).

    Guard: ``ln B_avg`` is negative when the non-target cosines are all near -1 (for
    example ``ln 2 - s`` for three classes with both non-targets at cosine -1), and ``-inf``
    for a softmax over the target alone; the formula then gives no usable scale, so the
    previous scale is kept wherever the new value is not positive (NaN included). The
    result is capped at ``MAX_SCALE``. ``cos(min(pi / 4, theta_med)) >= cos(pi / 4)``, so
    the division is always safe.

    Args:
        embeddings: (B, D) embeddings in the compute dtype.
        weight: (K, D) raw class weights of the softmax.
        labels: (B,) int64 indices into ``weight``'s rows.
        previous: 0-d, the scale before this step (``s^(t-1)``).
        chunk_size: classes per block for ``B_avg``, or None.

    Returns:
        0-d scale ``s^(t)`` in ``(0, MAX_SCALE]``, in ``embeddings``' dtype.
    """
    with torch.no_grad():
        previous = previous.to(embeddings.dtype)
        geometry = GEOMETRIES["normalized"]
        unit_rows = geometry.rows(embeddings, 1.0)  # (B, D), 0 without a direction
        target_cosine, _ = geometry.target_cosine_and_radial(unit_rows, weight[labels])  # (B,)
        target_angle = torch.acos(target_cosine)  # (B,) radians
        log_b_avg = log_mean_nontarget_sum(unit_rows, weight, labels, previous, chunk_size)
        return scale_from(log_b_avg, target_angle, previous)


def scale_from(log_b_avg: Tensor, target_angle: Tensor, previous: Tensor) -> Tensor:
    """``s^(t) = ln B_avg / cos(min(pi / 4, theta_med))`` with :func:`dynamic_scale`'s
    guard and cap, from the 0-d ``ln B_avg``, the batch's (B,) target angles and the 0-d
    previous scale (the part of :func:`dynamic_scale` a sharded head shares)."""
    median_angle = torch.median(target_angle)  # the lower middle value for even B
    value = log_b_avg / torch.cos(median_angle.clamp(max=ANGLE_CAP))
    return torch.where(value > 0, value, previous).clamp(max=MAX_SCALE)


class AdaCos(MarginHead):
    """Cosine logits ``s cos(theta_j)`` for every class, the target's included (no margin),
    with a scale ``s`` chosen by the method instead of by hand.

    Fixed (``dynamic=False``): ``s_f = sqrt(2) ln(C - 1)``.

    Dynamic (``dynamic=True``, default; the paper's Algorithm 1): ``s^(0) = s_f``, and each
    training step, before the batch's logits are formed (update, then use):

        B_avg     = (1/B) sum_i sum_{j != y_i} exp(s^(t-1) cos theta_ij)
        theta_med = median_i theta_{i, y_i}             (the lower middle one for even B)
        s^(t)     = ln B_avg / cos(min(pi / 4, theta_med))

    over the classes of the softmax (the sampled ones with ``forward(x, y, classes=...)``).
    The scale is a detached statistic: no gradient flows through it. It lives in the
    buffer ``adaptive_scale`` (in ``state_dict``); eval mode, :meth:`logits` and
    :meth:`margin_logits` never change it (``margin_logits`` in training mode shows the
    scale the next training step would use). The buffer is float64 and follows the head's
    device but not its dtype (bookkeeping, as a schedule's value): ``s_f`` is stored
    exactly, a float64 head starts from it unrounded, and each step's scale, computed in
    the head's compute dtype, is stored without rounding. ``hyperparameters()["scale"]`` reports the
    scale in force. Where the formula gives a non-positive value (non-target cosines all
    near -1, see :func:`dynamic_scale`) the previous scale is kept; the scale is capped at
    ``MAX_SCALE``. With ``chunk_size`` set, ``B_avg`` is computed in class blocks too.

    Zhang, Zhao, Qiao, Wang and Li, "AdaCos: Adaptively Scaling Cosine Logits for
    Effectively Learning Deep Face Representations", CVPR 2019.

    Args:
        num_classes: number of classes C (>= 3: ``ln(C - 1)`` is 0 for C = 2).
        embedding_dim: embedding width D.
        dynamic: adapt the scale every training step (default) or keep ``s_f``.
        total_steps: the run's number of training steps, for a hyper-parameter given as a
            fraction of the run (as :meth:`MarginHead.set_total_steps`); None: not known.
    """

    adaptive_scale: Tensor

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        dynamic: bool = True,
        *,
        total_steps: int | None = None,
    ) -> None:
        check_count("num_classes", num_classes, 2)
        if num_classes < 3:
            raise ValueError(
                f"num_classes must be >= 3 for AdaCos (its scale sqrt(2) ln(C - 1) is 0 for "
                f"C = 2); got {num_classes}"
            )
        if not isinstance(dynamic, bool):
            raise TypeError(f"dynamic must be a bool; got {type(dynamic).__name__}")
        super().__init__(num_classes, embedding_dim, total_steps=total_steps)
        self.dynamic = dynamic
        self.fixed_scale = fixed_scale(num_classes)
        if dynamic:
            self.register_buffer(
                "adaptive_scale", torch.tensor(self.fixed_scale, dtype=torch.float64)
            )

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> AdaCos:
        # ``head.to(dtype)`` converts the weight as asked; the scale's buffer goes along to
        # the new device but stays float64, its value unrounded (a float32 copy of s_f would
        # carry a 3.5e-8 relative error into a float64 head's loss and gradients).
        scale = self._buffers.get("adaptive_scale")
        super()._apply(fn, recurse)
        moved = self._buffers.get("adaptive_scale")
        if scale is not None and moved is not None and moved.dtype != scale.dtype:
            self._buffers["adaptive_scale"] = scale.to(moved.device)
        return self

    def scale_value(self) -> Tensor | float:
        """The scale in force: ``s_f``, or the dynamic scale of this call (a training step
        or training-mode ``margin_logits``), else the stored one."""
        if not self.dynamic:
            return self.fixed_scale
        return self._statistic("adaptive_scale")

    def hyperparameters(self) -> dict[str, float]:
        values = super().hyperparameters()
        values["scale"] = float(self.scale_value())
        return values

    def _batch_statistics(
        self,
        embeddings: Tensor,
        weight: Tensor,
        labels: Tensor,
        classes: Tensor | None,
        update: bool,
    ) -> dict[str, Tensor]:
        if not (self.dynamic and update):
            return {}
        scale = dynamic_scale(embeddings, weight, labels, self.adaptive_scale, self.chunk_size)
        return {"adaptive_scale": scale}

    def _shard_statistics(
        self,
        embeddings: Tensor,
        weight: Tensor,
        targets: Tensor,
        classes: Tensor | None,
        batch: ShardedBatch,
        update: bool,
    ) -> dict[str, Tensor]:
        """The whole head's dynamic scale on the gathered batch: each rank's ``ln`` of its
        classes' share of ``B B_avg``, combined by a log-sum-exp of the ranks' values (an
        all-gather of one number each), and the exact median of every sample's target angle
        (the (B,) target cosines all-reduced)."""
        if not (self.dynamic and update):
            return {}
        with torch.no_grad():
            previous = self.adaptive_scale.to(embeddings.dtype)
            unit_rows = GEOMETRIES["normalized"].rows(embeddings, 1.0)  # (B, D)
            own = (  # a rank may hold none of a class sample's classes
                log_mean_nontarget_sum(unit_rows, weight, targets, previous, self.chunk_size)
                if weight.shape[0]
                else previous.new_full((), -math.inf)
            )
            log_b_avg = torch.logsumexp(torch.stack(batch.all_gather(own.reshape(1))), dim=0)[0]
            target_angle = torch.acos(batch.target_cosines())  # (B,)
            return {"adaptive_scale": scale_from(log_b_avg, target_angle, previous)}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dynamic={self.dynamic}"
