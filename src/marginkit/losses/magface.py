"""MagFace (Meng, Zhao, Huang, Zhou, CVPR 2021): a margin that grows with the feature's
magnitude, a regulariser on the magnitude, and the magnitude as a quality score."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from marginkit.losses.functional import (
    ARCFACE_FALLBACKS,
    arcface_easy_target,
    arcface_target,
    row_norms,
)
from marginkit.losses.head import MAX_SCALE, MarginHead, check_float, check_range
from marginkit.losses.sanity import warn_margin, warn_regularizer
from marginkit.schedules import Schedule

__all__ = ["MAGFACE_FALLBACKS", "MagFace", "regularizer_bound"]

#: The targets past ``theta_y + m(a) = pi``: ArcFace's two continuations, and ``"easy"``, the
#: released MagFace code's ``easy_margin=True`` (no margin where ``cos(theta_y) <= 0``).
MAGFACE_FALLBACKS = (*ARCFACE_FALLBACKS, "easy")


def regularizer_bound(
    scale: float,
    lower_margin: float,
    upper_margin: float,
    lower_magnitude: float,
    upper_magnitude: float,
) -> float:
    """The smallest regulariser weight for which MagFace's loss has a unique optimal
    magnitude per sample: ``s k u_a^2 l_a^2 / (u_a^2 - l_a^2)``, with the margin's slope
    ``k = (u_m - l_m) / (u_a - l_a)`` (Meng et al., CVPR 2021; the official trainer's check).
    About 22.6 at the paper's face-recognition settings (s = 64, margins 0.45..0.8,
    magnitudes 10..110), below their weight 35.
    """
    slope = (upper_margin - lower_margin) / (upper_magnitude - lower_magnitude)
    squares = upper_magnitude**2 * lower_magnitude**2 / (upper_magnitude**2 - lower_magnitude**2)
    return scale * slope * squares


def _check_margin_order(lower: float | Schedule, upper: float | Schedule) -> None:
    """Raise unless ``lower_margin <= upper_margin`` at the end points of their ranges."""
    lower_range = lower.bounds() if isinstance(lower, Schedule) else (lower, lower)
    upper_range = upper.bounds() if isinstance(upper, Schedule) else (upper, upper)
    if lower_range[0] > upper_range[0] or lower_range[1] > upper_range[1]:
        raise ValueError(
            f"lower_margin must not exceed upper_margin; got the ranges {lower_range[0]:g}.."
            f"{lower_range[1]:g} and {upper_range[0]:g}..{upper_range[1]:g}"
        )


class MagFace(MarginHead):
    """MagFace: ArcFace with a per-sample margin that grows with the embedding's magnitude,
    plus a regulariser that rewards large magnitudes (Meng, Zhao, Huang and Zhou, "MagFace:
    A Universal Representation for Face Recognition and Quality Assessment", CVPR 2021).

    With the magnitude ``a_i = clamp(||x_i||, l_a, u_a)`` (``lower_magnitude``,
    ``upper_magnitude``) and the linear margin

        m(a) = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m      (radians, l_m..u_m)

    the target logit is ``s cos(theta_y + m(a_i))`` while ``theta_y + m(a_i) <= pi``, else
    InsightFace's continuation ``s (cos(theta_y) - m sin(m))`` (``fallback``); the other
    logits are ``s cos(theta_j)``. The loss is

        L = mean_i CE_i + lambda_g * mean_i g(a_i),    g(a) = 1 / a + a / u_a^2,

    the cross-entropy plus :meth:`penalty` (``regularizer_weight`` ``lambda_g``), which
    :meth:`~marginkit.losses.head.MarginHead.margin_logits` leaves out. ``g`` decreases on
    ``[l_a, u_a]`` (its minimum is at ``u_a``), so the regulariser pushes the magnitudes up
    while the margin, larger for larger magnitudes, pushes them down for hard samples: at the
    optimum the magnitude grows with the sample's cosine to its class, so the magnitude is the
    sample's quality (:meth:`quality`, the unclamped ``||x||``). As in the official code, the
    gradient flows through ``a_i`` into both the margin and ``g``: the head needs the raw
    (unnormalised) embeddings. The margin touches the target logit only, so the fused (and
    chunked) path applies: the magnitudes enter it as a differentiable per-sample input
    (:meth:`_target_inputs`).

    Magnitudes outside ``[l_a, u_a]``: ``a_i`` is clamped, so an embedding with
    ``||x|| < l_a`` gets the margin ``l_m`` and the penalty ``g(l_a)``, and neither has a
    gradient in its norm (the clamp's derivative is 0 there; the angular cross-entropy never
    pushes along ``x``): nothing in this loss pulls a small norm back up into the range. Keep
    the backbone's embeddings in range (a backbone ending in a batch norm, as the official
    ones do, starts with 512-wide embeddings of norm about ``sqrt(512) = 23``); likewise
    above ``u_a`` (margin ``u_m``). An embedding without a direction (zero, or below the
    float's :func:`~marginkit.losses.functional.direction_floor`) has every logit 0, as for
    every head, and contributes ``g(l_a)``.

    The regulariser makes the loss strictly convex in the magnitude only when
    ``lambda_g >= regularizer_bound(...)`` (22.6 at the defaults); a weaker one is warned
    about once (:class:`~marginkit.losses.sanity.MarginWarning`).

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        scale: s in (0, 1e4], float or schedule (the paper's 64).
        lower_margin: l_m in [0, pi), radians, float or schedule (0.45).
        upper_margin: u_m in [0, pi), radians, float or schedule, at least ``lower_margin``
            (compared at both ends of the schedules' ranges; 0.8).
        lower_magnitude: l_a > 0, a float (10).
        upper_magnitude: u_a > l_a, a float (110).
        regularizer_weight: lambda_g >= 0, a float (35, the official run script's; its
            argument parser's default is 20).
        learn_scale: learn s as the parameter ``log_scale`` (``s = exp(log_scale)``),
            starting from ``scale`` (a float then); default False, the paper's fixed scale.
        fallback: the target past ``theta_y + m = pi``: ``"insightface"`` (default,
            ArcFace's official continuation, and the official MagFace code's with
            ``easy_margin=False``),
            ``"continuous"`` (see :func:`~marginkit.losses.functional.arcface_target`), or
            ``"easy"``, the released code's default ``easy_margin=True``: ``cos(theta_y)``
            without margin wherever ``cos(theta_y) <= 0``
            (:func:`~marginkit.losses.functional.arcface_easy_target`).
        total_steps: the run's number of training steps, for a hyper-parameter given as a
            fraction of the run (as :meth:`MarginHead.set_total_steps`); None: not known.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float | Schedule = 64.0,
        lower_margin: float | Schedule = 0.45,
        upper_margin: float | Schedule = 0.8,
        lower_magnitude: float = 10.0,
        upper_magnitude: float = 110.0,
        regularizer_weight: float = 35.0,
        learn_scale: bool = False,
        fallback: str = "insightface",
        *,
        total_steps: int | None = None,
    ) -> None:
        check_range("scale", scale, 0.0, MAX_SCALE, low_inclusive=False)
        check_range("lower_margin", lower_margin, 0.0, math.pi, high_inclusive=False)
        check_range("upper_margin", upper_margin, 0.0, math.pi, high_inclusive=False)
        _check_margin_order(lower_margin, upper_margin)
        lower_a = check_float("lower_magnitude", lower_magnitude, 0.0, low_inclusive=False)
        upper_a = check_float("upper_magnitude", upper_magnitude, 0.0, low_inclusive=False)
        if lower_a >= upper_a:
            raise ValueError(
                f"upper_magnitude must be above lower_magnitude={lower_a:g}; got {upper_a:g}"
            )
        lambda_g = check_float("regularizer_weight", regularizer_weight, 0.0)
        if fallback not in MAGFACE_FALLBACKS:
            raise ValueError(
                f"fallback must be one of {', '.join(MAGFACE_FALLBACKS)}; got {fallback!r}"
            )
        super().__init__(
            num_classes,
            embedding_dim,
            total_steps=total_steps,
            learn_scale=learn_scale,
            scale=scale,
            lower_margin=lower_margin,
            upper_margin=upper_margin,
        )
        self.lower_magnitude, self.upper_magnitude = lower_a, upper_a
        self.regularizer_weight = lambda_g
        self.fallback = fallback
        self._warn_settings(scale)

    def _warn_settings(self, scale: float | Schedule) -> None:
        """The sanity warnings: no room for the margin every sample gets (the lower one;
        only the most recognisable samples reach the upper one); a too weak regulariser at
        the schedules' end points (the largest scale)."""
        lower, upper = self.schedules["lower_margin"], self.schedules["upper_margin"]
        name = type(self).__name__
        warn_margin(name, "angular", lower.bounds()[1], self.num_classes, self.embedding_dim)
        largest_scale = scale.bounds()[1] if isinstance(scale, Schedule) else float(scale)
        spread = max(upper.bounds()[0] - lower.bounds()[0], upper.bounds()[1] - lower.bounds()[1])
        bound = regularizer_bound(
            largest_scale, 0.0, spread, self.lower_magnitude, self.upper_magnitude
        )
        warn_regularizer(name, self.regularizer_weight, bound)

    # ------------------------------------------------------------------ the margin of a
    def magnitudes(self, embeddings: Tensor) -> Tensor:
        """``a_i = clamp(||x_i||, l_a, u_a)``, (B, D) -> (B,), differentiable inside the range.

        Args:
            embeddings: (B, D) embeddings in the compute dtype.
        """
        return row_norms(embeddings).squeeze(1).clamp(self.lower_magnitude, self.upper_magnitude)

    def margin_at(self, magnitudes: Tensor) -> Tensor:
        """The margins ``m(a) = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m`` (radians) of
        clamped magnitudes ``a`` (any shape), at the current margin values.

        Raises:
            ValueError: the margin schedules have crossed (``lower_margin > upper_margin``).
        """
        lower = self.schedules["lower_margin"].current()
        upper = self.schedules["upper_margin"].current()
        if lower > upper:
            raise ValueError(
                f"lower_margin ({lower:g}) exceeds upper_margin ({upper:g}) at step "
                f"{int(self.step)}: the two schedules cross"
            )
        slope = (upper - lower) / (self.upper_magnitude - self.lower_magnitude)
        return slope * (magnitudes - self.lower_magnitude) + lower

    def target(self, cosine: Tensor, margin: Tensor | float | None = None) -> Tensor:
        """The margin function ``cos(theta + m)`` with the head's ``fallback``, element-wise.

        Args:
            cosine: (B,) target cosines in ``[-1, 1]``.
            margin: the margins (radians; a (B,) tensor, :meth:`margin_at` of the
                magnitudes, or a float); None: the current ``upper_margin``, the margin of
                embeddings of magnitude ``u_a`` or more (what a plot of one curve shows).
        """
        if margin is None:
            margin = self.schedules["upper_margin"].current()
        if self.fallback == "easy":
            return arcface_easy_target(cosine, margin)
        return arcface_target(cosine, margin, self.fallback)

    def _target_inputs(self, embeddings: Tensor) -> tuple[Tensor, ...]:
        """The clamped magnitudes ``a`` (B,), with their gradient: the margin's input."""
        return (self.magnitudes(embeddings),)

    def _target_logits(
        self, rows: Tensor, target_weight: Tensor, *target_inputs: Tensor
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """``s cos(theta_y + m(a))`` (with the fallback) from the (B, D) rows, the (B, D)
        target weights and the (B,) magnitudes ``a`` (:meth:`_target_inputs`)."""
        (magnitudes,) = target_inputs
        cosine, radial = self.margin_geometry.target_cosine_and_radial(rows, target_weight)
        margin = self.margin_at(magnitudes)  # (B,), gradient through ||x||
        return radial * self.target(cosine, margin), None, cosine.detach()

    def penalty(self, embeddings: Tensor) -> Tensor:
        """``lambda_g * mean_i g(a_i)`` with ``g(a) = 1 / a + a / u_a^2`` on the clamped
        magnitudes; the term ``forward`` adds to the cross-entropy.

        Args:
            embeddings: (B, D) embeddings in the compute dtype.
        """
        magnitudes = self.magnitudes(embeddings)  # (B,), in [l_a, u_a]: no division by 0
        regularizer = 1.0 / magnitudes + magnitudes / self.upper_magnitude**2
        return self.regularizer_weight * regularizer.mean()

    # ------------------------------------------------------------------------ quality
    def quality(self, embeddings: Tensor) -> Tensor:
        """The paper's face-quality score: the magnitude ``||x_i||`` of each embedding,
        unclamped and detached, (B, D) -> (B,), float32 (float64 for float64 inputs).

        Larger means more recognisable (a sample nearer its class centre), for a backbone
        trained with this head; no overflow or underflow for norms near 1e30 or 1e-30.

        Args:
            embeddings: (B, D) finite floating-point embeddings.
        """
        self.check_inputs(embeddings)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            embeddings = self._operands(embeddings.detach())[0]
            return row_norms(embeddings).squeeze(1)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, lower_magnitude={self.lower_magnitude:g}, "
            f"upper_magnitude={self.upper_magnitude:g}, "
            f"regularizer_weight={self.regularizer_weight:g}, fallback={self.fallback!r}"
        )
