"""The one base class of every margin head: weight, validation, geometry, schedules.

A head is a classifier layer and its loss in one module. It owns the class-weight matrix
``weight`` of shape (C, D) (``nn.Linear``'s layout) and is called like a
pytorch-metric-learning loss::

    loss = head(embeddings, labels)      # scalar, batch mean of the cross-entropy
    scores = head.logits(embeddings)     # (B, C) inference scores: no margin, no virtual class

Subclasses choose a *geometry* and a *target function*:

- ``geometry = "normalized"``: logits ``s cos(theta_j)`` (embeddings and weights on the unit
  sphere, scale ``s``); inference scores ``cos(theta_j)``.
- ``geometry = "weight_normalized"``: logits ``||x|| cos(theta_j)`` (A-Softmax); inference
  scores ``cos(theta_j)``.
- ``geometry = "unnormalized"``: logits ``W_j . x`` (plus an optional bias); inference scores
  the same.

The target function (one of :mod:`marginkit.losses.functional`) maps the target cosine to the
margin-shaped value ``f(cos theta_y)``, and the target logit becomes ``r_y f(cos theta_y)``
with ``r_y`` the radial factor of the geometry (``s``, ``||x||`` or ``||W_y|| ||x||``).

Training (``forward``) goes through the fused margin cross-entropy of
:mod:`marginkit.losses.fused`: the same loss and gradients as ``F.cross_entropy`` on
:meth:`MarginHead.margin_logits`, at about the cost of a plain linear layer. For very many
classes set ``head.chunk_size = 65536`` (or call :meth:`MarginHead.set_chunk_size`): the classes
are then processed in blocks and the memory beyond the weights is O(B x chunk_size).

An embedding without a direction (zero, or a norm below :func:`direction_floor`, about 1e-31
in float32) has every logit 0, the target's included (plus the class biases of a softmax with
bias): its loss term is ``log C`` and its gradients are finite. For the normalised geometries
its normalised form is the zero vector (cosine 0 with every class) and the radial factor of
its target logit is 0 too, so no margin is applied to an angle that does not exist.

All margin arithmetic runs in float32 (or float64 when an input is float64), with autocast
switched off inside the head: under ``torch.autocast`` the embeddings are up-cast, the
parameters are never cast in place, and the returned logits and loss are float32.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marginkit._validation import check_count
from marginkit.schedules import Schedule, as_schedule

if TYPE_CHECKING:
    from marginkit.losses.fused import TargetFunction

Geometry = Literal["normalized", "weight_normalized", "unnormalized"]

__all__ = ["MAX_SCALE", "MarginHead", "check_range", "directions"]

#: Largest scale ``s`` a normalised head accepts: logits ``s cos`` and their gradients stay
#: far inside float32's range (a scale near 1e38 overflows to inf and NaN).
MAX_SCALE = 1e4


def check_range(
    name: str,
    value: float | Schedule,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise ``ValueError`` naming ``name`` unless every value it can take lies in the range.

    For a schedule the check covers its whole range (``Schedule.bounds``).
    """
    value = as_schedule(value, name)  # a TypeError naming ``name`` for a non-number
    lowest, highest = value.bounds()
    below = lowest < low if low_inclusive else lowest <= low
    above = highest > high if high_inclusive else highest >= high
    if below or above:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        shown = lowest if lowest == highest else f"a schedule spanning {lowest}..{highest}"
        raise ValueError(f"{name} must lie in {left}{low}, {high}{right}; got {shown}")


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


class MarginHead(nn.Module):
    """Base class of all heads. See the module docstring for the contract.

    ``forward`` runs the fused margin cross-entropy (:mod:`marginkit.losses.fused`), equal in
    value and gradient to ``F.cross_entropy(margin_logits(x, y), y)``. Set
    ``head.chunk_size = 65536`` (or :meth:`set_chunk_size`) to process the classes in blocks
    for very large C (memory beyond the weights O(B x chunk_size)); None (default) is one block.

    Args:
        num_classes: number of classes C (>= 2).
        embedding_dim: width D of the embeddings.
        **hyperparameters: the method's hyper-parameters by name; each a float or a
            :class:`~marginkit.schedules.Schedule` (floats become constant schedules).
    """

    geometry: ClassVar[Geometry] = "normalized"
    virtual_class: ClassVar[bool] = False
    #: No margin (plain softmax): the target logit is the plain score ``W_y . x``, so the
    #: loss and its gradients are exactly those of ``F.linear`` + cross-entropy everywhere,
    #: a zero embedding included.
    margin_free: ClassVar[bool] = False

    weight: nn.Parameter
    step: Tensor

    def __init__(
        self, num_classes: int, embedding_dim: int, **hyperparameters: float | Schedule
    ) -> None:
        super().__init__()
        self.num_classes = check_count("num_classes", num_classes, 2)
        self.embedding_dim = check_count("embedding_dim", embedding_dim, 1)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.chunk_size: int | None = None
        self.total_steps: int | None = None  # the run's length (set_total_steps)
        self.schedules = nn.ModuleDict(
            {name: as_schedule(value, name) for name, value in hyperparameters.items()}
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise ``weight`` as ``nn.Linear`` does (Kaiming-uniform)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    # ----------------------------------------------------------------- hyper-parameters
    def hyperparameters(self) -> dict[str, float]:
        """Current value of every scheduled hyper-parameter (and of a learned scale)."""
        return {name: schedule.current() for name, schedule in self.schedules.items()}

    def target(self, cosine: Tensor) -> Tensor:
        """The method's margin function: target cosine -> ``f(cos theta_y)``, element-wise.

        Args:
            cosine: (B,) target cosines in ``[-1, 1]``.
        """
        return cosine

    def scale_value(self) -> Tensor | float:
        """The scale ``s`` of the normalised geometry (a tensor if learned)."""
        if "scale" not in self.schedules:
            raise NotImplementedError(f"{type(self).__name__} has no scale")
        return self.schedules["scale"].current()

    # ----------------------------------------------------------------------- validation
    def _check_inputs(self, embeddings: Tensor, labels: Tensor | None) -> None:
        if not isinstance(embeddings, Tensor):
            raise TypeError(f"embeddings must be a torch.Tensor; got {type(embeddings).__name__}")
        for name, tensor in (
            ("embeddings", embeddings),
            ("labels", labels),
            ("weight", self.weight),
        ):
            if isinstance(tensor, Tensor) and tensor.is_meta:
                raise ValueError(
                    f"{name} is on the meta device (a shape without values); "
                    "move the head and its inputs to a real device first"
                )
        if not embeddings.is_floating_point():
            raise TypeError(f"embeddings must be a floating-point tensor; got {embeddings.dtype}")
        if embeddings.dim() != 2:
            raise ValueError(
                f"embeddings must have shape (batch, {self.embedding_dim}); "
                f"got shape {tuple(embeddings.shape)}"
            )
        if embeddings.shape[0] == 0:
            raise ValueError("embeddings is an empty batch; expected at least one row")
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"embeddings must have {self.embedding_dim} columns (embedding_dim); "
                f"got {embeddings.shape[1]}"
            )
        if not bool(torch.isfinite(embeddings).all()):
            raise ValueError("embeddings contains NaN or infinite values")
        if labels is None:
            return
        if not isinstance(labels, Tensor):
            raise TypeError(f"labels must be a torch.Tensor; got {type(labels).__name__}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(
                f"labels must be an integer tensor of class indices; got {labels.dtype}"
            )
        if labels.dim() != 1:
            raise ValueError(f"labels must have shape (batch,); got shape {tuple(labels.shape)}")
        if labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"labels has {labels.shape[0]} entries but embeddings has "
                f"{embeddings.shape[0]} rows; the batch sizes must match"
            )
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}) (num_classes); "
                f"got values from {low} to {high}"
            )

    # ------------------------------------------------------------------------ geometry
    def _compute_dtype(self, embeddings: Tensor) -> torch.dtype:
        return torch.promote_types(
            torch.promote_types(embeddings.dtype, self.weight.dtype), torch.float32
        )

    def _scores_and_target_cosine(
        self, embeddings: Tensor, labels: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Plain scores, their radial factor per row, and target cosine/radial factor.

        Returns:
            scores: (B, C) logits without margin (``s cos``, ``||x|| cos`` or ``W x + b``).
            cosine_scores: (B, C) the inference scores (cosines, or ``W x + b``).
            target_cosine: (B,) cosine of each embedding with its class weight, or None.
            target_radial: (B,) radial factor of each target logit, or None.
        """
        dtype = self._compute_dtype(embeddings)
        x = embeddings.to(dtype)  # (B, D)
        weight = self.weight.to(dtype)  # (C, D)
        x_norm = row_norms(x)  # (B, 1)
        if self.geometry == "unnormalized":
            bias = getattr(self, "bias", None)
            scores = F.linear(x, weight, None if bias is None else bias.to(dtype))  # (B, C)
            if labels is None:
                return scores, scores, None, None
            target_weight = weight[labels]  # (B, D)
            target_weight_norm = row_norms(target_weight)  # (B, 1)
            target_cosine = (directions(x, x_norm) * (target_weight / target_weight_norm)).sum(
                dim=1
            )
            target_radial = (x_norm * target_weight_norm).squeeze(1)
            return scores, scores, target_cosine, target_radial
        unit_weight = weight / row_norms(weight)  # (C, D)
        cosine = F.linear(directions(x, x_norm), unit_weight).clamp(-1.0, 1.0)  # (B, C)
        radial = self.scale_value() if self.geometry == "normalized" else x_norm  # s or (B, 1)
        if self.geometry == "normalized":
            scores = radial * cosine  # (B, C)
        else:  # ||x|| cos as x . W_j / ||W_j||: differentiable at x = 0 too
            scores = F.linear(x, unit_weight).clamp(-x_norm, x_norm)  # (B, C)
        if labels is None:
            return scores, cosine, None, None
        target_cosine = cosine.gather(1, labels.unsqueeze(1)).squeeze(1)  # (B,)
        if isinstance(radial, Tensor) and radial.dim() == 2:
            target_radial = radial.squeeze(1)
        else:  # s, or 0 for a row without a direction (see the module docstring)
            has_direction = (x_norm.squeeze(1) >= direction_floor(dtype)).to(dtype)  # (B,)
            target_radial = torch.as_tensor(radial, dtype=dtype) * has_direction
        return scores, cosine, target_cosine, target_radial

    def _margin_logits(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Training logits and the (detached) target cosines, inputs already validated."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            scores, _, target_cosine, target_radial = self._scores_and_target_cosine(
                embeddings, labels
            )
            assert target_cosine is not None and target_radial is not None
            if self.margin_free:
                logits = scores
            else:
                target_logit = target_radial * self.target(target_cosine)  # (B,)
                bias = getattr(self, "bias", None)
                if bias is not None:  # the target class keeps its bias
                    target_logit = target_logit + bias.to(target_logit.dtype)[labels]
                logits = scores.scatter(1, labels.unsqueeze(1), target_logit.unsqueeze(1))
            if self.virtual_class:
                logits = torch.cat([logits, target_radial.unsqueeze(1)], dim=1)  # (B, C + 1)
        return logits, target_cosine.detach()

    def set_chunk_size(self, chunk_size: int | None) -> MarginHead:
        """Process the classes in blocks of ``chunk_size`` in ``forward`` (None: one block).

        Same loss and gradients; the memory beyond the weights drops from O(B x C) to
        O(B x chunk_size) at the price of recomputing each block's scores in the backward pass.

        Args:
            chunk_size: classes per block (>= 1), or None.

        Returns:
            The head itself.
        """
        self.chunk_size = None if chunk_size is None else check_count("chunk_size", chunk_size, 1)
        return self

    def _target_function(self) -> TargetFunction:
        """The fused path's margin: ``(rows, target_weight) -> (target logit, virtual logit,
        target cosine)`` on (B, D) tensors; see :mod:`marginkit.losses.fused`."""
        normalized_weight = self.geometry != "unnormalized"

        def target_function(
            rows: Tensor, target_weight: Tensor
        ) -> tuple[Tensor, Tensor | None, Tensor]:
            rows_norm = row_norms(rows)  # (B, 1): the radial factor s or ||x|| (0: no direction)
            weight_norm = row_norms(target_weight)  # (B, 1)
            unit = directions(rows, rows_norm)  # (B, D)
            cosine = (unit * (target_weight / weight_norm)).sum(dim=1)  # (B,)
            if normalized_weight:
                cosine = cosine.clamp(-1.0, 1.0)
                radial = rows_norm.squeeze(1)
            else:
                radial = (rows_norm * weight_norm).squeeze(1)
            if self.margin_free:
                target_logit = (rows * target_weight).sum(dim=1)  # W_y . x
            else:
                target_logit = radial * self.target(cosine)  # (B,)
            virtual_logit = radial if self.virtual_class else None
            return target_logit, virtual_logit, cosine.detach()

        return target_function

    def _fused_loss(
        self, embeddings: Tensor, labels: Tensor, class_index: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy of the margin logits by the fused path; inputs validated.

        Args:
            embeddings: (B, D).
            labels: (B,) class indices in ``[0, C)``.
            class_index: optional sorted (K,) subset of the classes that must contain every
                label (class sampling); the loss is then over those K classes only.

        Returns:
            The scalar loss and the (B,) detached target cosines.
        """
        from marginkit.losses.fused import fused_margin_cross_entropy

        labels = labels.long()
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            dtype = self._compute_dtype(embeddings)
            x = embeddings.to(dtype)  # (B, D)
            weight = self.weight.to(dtype)  # (C, D)
            bias = getattr(self, "bias", None)
            bias = None if bias is None or self.geometry != "unnormalized" else bias.to(dtype)
            if class_index is not None:
                weight = weight[class_index]  # (K, D)
                bias = None if bias is None else bias[class_index]
                labels = torch.searchsorted(class_index, labels)
            if self.geometry == "normalized":
                scale = self.scale_value()
                rows = directions(x, row_norms(x)) * (
                    scale.to(dtype) if isinstance(scale, Tensor) else scale
                )
            else:
                rows = x
            return fused_margin_cross_entropy(
                rows,
                weight,
                bias,
                labels,
                self._target_function(),
                normalized_weight=self.geometry != "unnormalized",
                chunk_size=self.chunk_size,
            )

    # ---------------------------------------------------------------------- public API
    def logits(self, embeddings: Tensor) -> Tensor:
        """Inference scores (B, C): ``cos(theta_j)`` for heads with normalised weights,
        ``W_j . x`` (+ bias) for the unnormalised ones; no margin and no virtual class.

        Args:
            embeddings: (B, D) embeddings.
        """
        self._check_inputs(embeddings, None)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self._scores_and_target_cosine(embeddings, None)[1]

    def margin_logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Exactly what the cross-entropy sees in training: (B, C), or (B, C + 1) for
        Virtual Softmax, at the current hyper-parameter values. Does not advance the step.

        Args:
            embeddings: (B, D) embeddings.
            labels: (B,) integer class indices in ``[0, C)``.
        """
        self._check_inputs(embeddings, labels)
        return self._margin_logits(embeddings, labels)[0]

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy of the margin logits; advances the schedules in training mode.

        Args:
            embeddings: (B, D) embeddings (any floating dtype; autocast-safe).
            labels: (B,) integer class indices in ``[0, C)``.

        Returns:
            Scalar float32 (float64 for float64 inputs) loss.
        """
        self._check_inputs(embeddings, labels)
        if self.training:
            self._check_total_steps()
        loss, target_cosine = self._fused_loss(embeddings, labels)
        if self.training:
            self.advance(target_cosine)
        return loss

    def set_total_steps(self, total_steps: int) -> MarginHead:
        """Tell every schedule the run's length, in training steps (forward calls in training
        mode). Run-relative schedules (``Warmup(0.5, fraction=0.2)``, the default lambda of
        L-Softmax and SphereFace, Cam-softmax's default ``c``) need it before the first
        training step; call it again to change the length (values are re-read at the current
        step).

        Args:
            total_steps: the number of training steps of the whole run (>= 1).

        Returns:
            The head itself.
        """
        self.total_steps = check_count("total_steps", total_steps, 1)
        for schedule in self.schedules.values():
            schedule.set_total_steps(self.total_steps, int(self.step))
        return self

    def _check_total_steps(self) -> None:
        for name, schedule in self.schedules.items():
            if schedule.relative and schedule.total_steps is None:
                raise RuntimeError(
                    f"{type(self).__name__}'s {name} is given as a fraction of the run "
                    f"({type(schedule).__name__}({schedule.extra_repr()})): call "
                    "head.set_total_steps(N) with the run's number of training steps before "
                    "training (marginkit.train.fit does)"
                )

    def advance(self, target_cosine: Tensor | None = None) -> None:
        """Count one training step and move every schedule to it.

        Args:
            target_cosine: (B,) detached target cosines of the step's batch, for adaptive
                schedules.
        """
        with torch.no_grad():
            self.step += 1
        step = int(self.step)
        for schedule in self.schedules.values():
            schedule.advance(step, target_cosine)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}"
