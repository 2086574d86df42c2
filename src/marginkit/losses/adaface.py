"""AdaFace (Kim, Jain and Liu, CVPR 2022): a margin that adapts to the feature norm.

The norm ``||x_i||`` of an embedding is a proxy of its image quality. AdaFace normalises it
with running batch statistics and turns it into a per-sample margin: an angular margin for
low-quality samples (ArcFace-like, emphasising easy samples) and a negative angular plus a
larger additive margin for high-quality ones (emphasising hard samples).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginkit.losses.functional import adaface_target, row_norms
from marginkit.losses.head import MAX_SCALE, MarginHead, check_float, check_range
from marginkit.losses.sanity import warn_margin
from marginkit.schedules import Schedule

__all__ = ["AdaFace"]

#: The norms are clipped to this range before the statistics (the official code's).
NORM_RANGE = (0.001, 100.0)
#: Added to the running standard deviation before dividing by it (the official code's).
STD_EPSILON = 1e-3
#: Starting values of the running norm statistics (the official code's).
INITIAL_MEAN, INITIAL_STD = 20.0, 100.0


class AdaFace(MarginHead):
    """Target logit ``s (cos(clip(theta_y + g_angle, 0, pi)) - g_add)``; others
    ``s cos(theta_j)`` (Kim, Jain and Liu, "AdaFace: Quality Adaptive Margin for Face
    Recognition", CVPR 2022).

    Per sample ``i``, with ``n_i = clip(||x_i||, 0.001, 100)`` (detached) and the running
    statistics ``mu`` (``batch_mean``) and ``sigma`` (``batch_std``) of the norms::

        z_i     = clip(h (n_i - mu) / (sigma + 0.001), -1, 1)      (the margin scaler)
        g_angle = -m z_i
        g_add   = m + m z_i

    ``z = -1`` is ArcFace's ``cos(theta + m)``, ``z = 0`` CosFace's ``cos(theta) - m``,
    ``z = 1`` ``cos(theta - m) - 2m``. In a training step the statistics are first updated
    with the batch (the paper's order), ``mu <- a mean(n) + (1 - a) mu`` and
    ``sigma <- a std(n) + (1 - a) sigma`` (``a`` = ``momentum``, the unbiased ``std`` of
    ``torch.std``; a batch of one row has none and leaves ``sigma`` as it is), then used; in
    eval mode the running values are used unchanged. ``z`` is detached (no gradient through
    the norm), so only the target logit changes and the fused, chunked and class-sampled
    paths apply.

    ``target(cosine)`` called outside a forward pass (the margin plots) has no batch: it
    uses ``z = 0``, the sample of average norm (CosFace's target).

    Differences from the official code (mk-minchul/AdaFace, ``head.py``), which clamps every
    cosine to ``[-1 + 0.001, 1 - 0.001]`` and the shifted angle to ``[0.001, pi - 0.001]``
    "for stability": marginkit follows the paper's formula (plain ``cos theta_j`` for the
    other classes, the angle clipped to ``[0, pi]``), since its margin functions have finite
    gradients at ``cos = +-1`` without those clamps.

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        scale: s in (0, 1e4], float or schedule (64 in the paper).
        margin: m in [0, pi / 2], float or schedule (0.4 in the paper).
        concentration: h > 0, float or schedule: ``z`` reaches +-1 at ``1 / h`` standard
            deviations from the mean norm (0.333 in the paper: three standard deviations).
        momentum: the weight ``a`` in (0, 1] of each batch in the running statistics, a
            float (0.01 as in the paper and the official training script, whose ``head.py``
            class defaults to 1.0: each batch's own statistics).
        learn_scale: learn s as the parameter ``log_scale`` (``s = exp(log_scale)``),
            starting from ``scale`` (a float then); default False, the paper's fixed scale.
        total_steps: the run's number of training steps, for a hyper-parameter given as a
            fraction of the run (as :meth:`MarginHead.set_total_steps`); None: not known.
    """

    batch_mean: Tensor
    batch_std: Tensor

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float | Schedule = 64.0,
        margin: float | Schedule = 0.4,
        concentration: float | Schedule = 0.333,
        momentum: float = 0.01,
        learn_scale: bool = False,
        *,
        total_steps: int | None = None,
    ) -> None:
        check_range("scale", scale, 0.0, MAX_SCALE, low_inclusive=False)
        check_range("margin", margin, 0.0, math.pi / 2.0)
        check_range("concentration", concentration, 0.0, low_inclusive=False)
        momentum = check_float("momentum", momentum, 0.0, 1.0, low_inclusive=False)
        super().__init__(
            num_classes,
            embedding_dim,
            total_steps=total_steps,
            learn_scale=learn_scale,
            scale=scale,
            margin=margin,
            concentration=concentration,
        )
        self.momentum = momentum
        self.register_buffer("batch_mean", torch.tensor(INITIAL_MEAN))
        self.register_buffer("batch_std", torch.tensor(INITIAL_STD))
        largest = self.schedules["margin"].bounds()[1]  # z = 0: CosFace's margin m
        warn_margin(type(self).__name__, "cosine", largest, num_classes, embedding_dim)

    def _batch_statistics(
        self,
        embeddings: Tensor,
        weight: Tensor,
        labels: Tensor,
        classes: Tensor | None,
        update: bool,
    ) -> dict[str, Tensor]:
        """The running norm mean and spread, updated with this batch when ``update``,
        detached. They need the embeddings only, so a sharded head's ranks compute them from
        the gathered batch (:meth:`_shard_statistics`' default)."""
        if not update:
            return {}
        norms = self._clipped_norms(embeddings)  # (B,)
        momentum = self.momentum
        mean = momentum * norms.mean() + (1.0 - momentum) * self.batch_mean.to(norms.dtype)
        spread = self.batch_std.to(norms.dtype)
        if norms.shape[0] > 1:  # one row has no spread: keep the running one
            spread = momentum * norms.std() + (1.0 - momentum) * spread
        return {"batch_mean": mean, "batch_std": spread}

    @staticmethod
    def _clipped_norms(embeddings: Tensor) -> Tensor:
        """(B, D) -> (B,) detached norms clipped to ``NORM_RANGE``."""
        return row_norms(embeddings.detach()).squeeze(1).clamp(*NORM_RANGE)

    def _target_inputs(self, embeddings: Tensor) -> tuple[Tensor, ...]:
        """The (B,) detached margin scalers ``z`` of the batch, from the statistics in use
        (this call's, else the running ones): per sample, so a shard takes its targets'."""
        norms = self._clipped_norms(embeddings)  # (B,)
        mean = self._statistic("batch_mean").to(norms.dtype)
        spread = self._statistic("batch_std").to(norms.dtype)
        concentration = self.schedules["concentration"].current()
        return ((concentration * (norms - mean) / (spread + STD_EPSILON)).clamp(-1.0, 1.0),)

    def target(self, cosine: Tensor, margin_scaler: Tensor | None = None) -> Tensor:
        """``cos(clip(theta + g_angle, 0, pi)) - g_add`` element-wise.

        Args:
            cosine: (B,) target cosines in ``[-1, 1]``.
            margin_scaler: (B,) the samples' ``z``; None (no batch, e.g. the margin plots)
                is ``z = 0``, the sample of average norm.
        """
        scaler = 0.0 if margin_scaler is None else margin_scaler
        return adaface_target(cosine, self.schedules["margin"].current(), scaler)

    def _target_logits(
        self, rows: Tensor, target_weight: Tensor, *target_inputs: Tensor
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        cosine, radial = self.margin_geometry.target_cosine_and_radial(rows, target_weight)
        (scaler,) = target_inputs  # (B,) the rows' z (_target_inputs)
        return radial * self.target(cosine, scaler), None, cosine.detach()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, momentum={self.momentum}"
