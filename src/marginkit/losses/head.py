"""The one base class of every margin head: weight, validation, geometry, schedules.

A head is a classifier layer and its loss in one module. It owns the class-weight matrix
``weight`` of shape (C, D) (``nn.Linear``'s layout) and is called like a
pytorch-metric-learning loss::

    loss = head(embeddings, labels)      # scalar, batch mean of the cross-entropy
    scores = head.logits(embeddings)     # (B, C) inference scores: no margin, no virtual class

Subclasses choose a *geometry* (``geometry``, one of the three of
:mod:`marginkit.losses.geometry`: ``"normalized"`` for logits ``s cos(theta_j)``,
``"weight_normalized"`` for ``||x|| cos(theta_j)``, ``"unnormalized"`` for ``W_j . x``) and a
*target function* (one of :mod:`marginkit.losses.functional`), which maps the target cosine to
the margin-shaped value ``f(cos theta_y)``: the target logit becomes ``r_y f(cos theta_y)`` with
``r_y`` the radial factor of the geometry (``s``, ``||x||`` or ``||W_y|| ||x||``). The
formulas of every head are in ``docs/losses.md``.

Training (``forward``) goes through the fused margin cross-entropy of
:mod:`marginkit.losses.fused`: the same loss and gradients as ``F.cross_entropy`` on
:meth:`MarginHead.margin_logits`, at about the cost of a plain linear layer. Both paths take
the geometry from one :class:`~marginkit.losses.geometry.Geometry` and the target logit from one
method. For very many classes set ``head.chunk_size = 65536`` (or call
:meth:`MarginHead.set_chunk_size`): the classes are then processed in blocks and the memory
beyond the weights is O(B x chunk_size); ``forward(embeddings, labels, classes=...)`` restricts
the softmax to a subset of the classes (class sampling,
:class:`~marginkit.losses.sampling.ClassSampledHead`).

An embedding without a direction (zero, or a norm below
:func:`~marginkit.losses.functional.direction_floor`, about 1e-31 in float32) has every logit 0,
the target's included (plus the class biases of a softmax with bias): its loss term is ``log C``
and its gradients are finite. For the normalised geometries its normalised form is the zero
vector (cosine 0 with every class) and the radial factor of its target logit is 0 too, so no
margin is applied to an angle that does not exist.

All margin arithmetic runs in float32 (or float64 when an input is float64), with autocast
switched off inside the head: under ``torch.autocast`` the embeddings are up-cast, the
parameters are never cast in place, and the returned logits and loss are float32.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol

import torch
from torch import Tensor, nn

from marginkit._validation import check_count
from marginkit.losses.fused import NegativeModulation, fused_margin_cross_entropy
from marginkit.losses.geometry import GEOMETRIES, Geometry, GeometryName
from marginkit.losses.sanity import warn_scale
from marginkit.schedules import RunLengthWarning, Schedule, ScheduleDict, as_schedule

__all__ = [
    "MAX_SCALE",
    "MarginHead",
    "RunRelativeDefault",
    "ShardedBatch",
    "check_float",
    "check_range",
]

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


def check_float(
    name: str,
    value: float,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """``value`` as a float, for a hyper-parameter that cannot be scheduled (a momentum, a
    magnitude bound): a ``TypeError`` naming ``name`` for a bool, a schedule or a non-number,
    else :func:`check_range`'s errors (NaN and inf included).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float; got {type(value).__name__}")
    check_range(name, value, low, high, low_inclusive=low_inclusive, high_inclusive=high_inclusive)
    return float(value)


class RunRelativeDefault(NamedTuple):
    """The default of a hyper-parameter that follows the run's length (L-Softmax's lambda,
    Cam-softmax's ``c``), and what it falls back to without one.

    Attributes:
        run_relative: makes marginkit's default, a fraction of the run: what the head is
            built with.
        step_based: makes the paper's own step-based schedule (what ``recipe: paper``
            trains with): what the default becomes, with one
            :class:`~marginkit.schedules.RunLengthWarning`, when the head trains without
            the run's length.
    """

    run_relative: Callable[[], Schedule]
    step_based: Callable[[], Schedule]


def _learned_scale_start(
    learn_scale: bool, hyperparameters: dict[str, float | Schedule]
) -> float | None:
    """The starting scale of a learned scale (``learn_scale=True``), or None.

    Raises:
        TypeError: ``learn_scale`` not a bool, or a scheduled ``scale`` with it.
        ValueError: ``learn_scale=True`` for a head without a scale.
    """
    if not isinstance(learn_scale, bool):
        raise TypeError(f"learn_scale must be a bool; got {type(learn_scale).__name__}")
    if not learn_scale:
        return None
    if "scale" not in hyperparameters:
        raise ValueError("learn_scale=True needs a head with a scale (normalised embeddings)")
    scale = hyperparameters["scale"]
    if isinstance(scale, Schedule):
        raise TypeError("scale must be a float when learn_scale=True; got a schedule")
    return float(scale)


class ShardedBatch(Protocol):
    """A global batch whose classes are split over ranks, as a head's batch statistics see
    it (:meth:`MarginHead._shard_statistics`; :class:`marginkit.distributed.ShardedHead`
    implements it with its counted collectives)."""

    def target_cosines(self) -> Tensor:
        """(B,) detached: every sample's target cosine ``cos(theta_y)`` between its unit
        embedding and its class's raw weight (0 for an embedding without a direction), as
        the whole head computes it, from the rank that holds the class."""
        ...

    def all_sum(self, tensor: Tensor) -> Tensor:
        """``tensor`` summed over the ranks (a new tensor)."""
        ...

    def all_max(self, tensor: Tensor) -> Tensor:
        """``tensor``'s element-wise maximum over the ranks (a new tensor)."""
        ...

    def all_gather(self, tensor: Tensor) -> list[Tensor]:
        """Every rank's ``tensor`` (the same shape on every rank), in rank order."""
        ...


@dataclass
class _HeldStep:
    """The training passes of one step under :meth:`MarginHead.one_step`."""

    passes: int
    seen: int = 0
    cosines: list[Tensor] = field(default_factory=list)  # (b,) target cosines of each pass


class MarginHead(nn.Module):
    """Base class of all heads. See the module docstring for the contract.

    ``forward`` runs the fused margin cross-entropy (:mod:`marginkit.losses.fused`), equal in
    value and gradient to ``F.cross_entropy(margin_logits(x, y), y)`` (plus :meth:`penalty`,
    MagFace's regulariser; :meth:`_negatives` for the heads that change the non-target
    logits too: sub-centres, CurricularFace's hard negatives). Set
    ``head.chunk_size = 65536`` (or :meth:`set_chunk_size`) to process the classes in blocks
    for very large C (memory beyond the weights O(B x chunk_size)); None (default) is one block.

    Args:
        num_classes: number of classes C (>= 2).
        embedding_dim: width D of the embeddings.
        rows_per_class: rows of ``weight`` per class (sub-centres), 1 for every other head:
            ``weight`` is (C x rows_per_class, D).
        learn_scale: learn the scale ``s`` as the float32 parameter ``log_scale``
            (``s = exp(log_scale)``, so it stays positive), starting from the float
            ``scale`` in ``hyperparameters`` (NormFace's learned scale, Wang et al., 2017);
            False (default) keeps ``scale`` fixed or scheduled. Only for a head with a scale.
        total_steps: the run's number of training steps (>= 1), for the schedules given as a
            fraction of the run; the same as calling :meth:`set_total_steps` before training.
            None (default): no run length yet (see :attr:`run_relative_defaults`).
        **hyperparameters: the method's hyper-parameters by name; each a float or a
            :class:`~marginkit.schedules.Schedule` (floats become constant schedules), or
            None for one named in :attr:`run_relative_defaults`: its default.
    """

    #: The geometry's name (:data:`~marginkit.losses.geometry.GEOMETRIES`); a class's default,
    #: which a head whose geometry is a constructor argument (Cam-softmax) sets per instance.
    geometry: GeometryName = "normalized"
    virtual_class: ClassVar[bool] = False
    #: No margin (plain softmax): the target logit is the plain score ``W_y . x``, so the
    #: loss and its gradients are exactly those of ``F.linear`` + cross-entropy everywhere,
    #: a zero embedding included.
    margin_free: ClassVar[bool] = False
    #: The head can be split over ranks by :func:`marginkit.distributed.shard`: its margin
    #: needs only each sample's own target and no statistic of the batch or of the other
    #: classes. The reason it cannot, else (shown by ``shard``).
    unshardable: ClassVar[str | None] = None
    #: The hyper-parameters whose default follows the run's length (name ->
    #: :class:`RunRelativeDefault`). So that the head works as built, a head that starts
    #: training without the run's length (no ``total_steps=``, no :meth:`set_total_steps`)
    #: replaces such a default by the paper's step-based schedule and says so once (a
    #: :class:`~marginkit.schedules.RunLengthWarning`). A schedule that the user gives as a
    #: fraction of the run has no fallback: training without the run's length raises.
    run_relative_defaults: ClassVar[Mapping[str, RunRelativeDefault]] = {}

    weight: nn.Parameter
    step: Tensor
    #: The learned log-scale (``learn_scale=True``), or None for a fixed or scheduled scale.
    log_scale: nn.Parameter | None

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        learn_scale: bool = False,
        rows_per_class: int = 1,
        total_steps: int | None = None,
        **hyperparameters: float | Schedule | None,
    ) -> None:
        super().__init__()
        self._held: _HeldStep | None = None  # within one_step: the passes counted so far
        self.num_classes = check_count("num_classes", num_classes, 2)
        self.embedding_dim = check_count("embedding_dim", embedding_dim, 1)
        if total_steps is not None:
            check_count("total_steps", total_steps, 1)
        #: The hyper-parameters on their run-relative default (which may still fall back).
        self._relative_defaults: set[str] = set()
        given: dict[str, float | Schedule] = {}
        for name, value in hyperparameters.items():
            if value is None and name in self.run_relative_defaults:
                self._relative_defaults.add(name)
                value = self.run_relative_defaults[name].run_relative()
            # a None without a default: as_schedule's TypeError naming it
            given[name] = as_schedule(value, name) if value is None else value
        rows = num_classes * check_count("rows_per_class", rows_per_class, 1)
        self.weight = nn.Parameter(torch.empty(rows, embedding_dim))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.chunk_size: int | None = None
        self.total_steps: int | None = None  # the run's length (set_total_steps)
        start = _learned_scale_start(learn_scale, given)
        if start is not None:
            del given["scale"]  # the parameter replaces the schedule
        self.schedules = ScheduleDict(
            {name: as_schedule(value, name) for name, value in given.items()}
        )
        self.log_scale = None
        #: Batch statistics in use during one call (see :meth:`_batch_statistics`).
        self._statistics: dict[str, Tensor] | None = None
        if start is not None:
            self.log_scale = nn.Parameter(torch.tensor(start, dtype=torch.float32).log())
        self.reset_parameters()
        if "scale" in self.schedules:  # a MarginWarning if s cannot reach P = 0.99
            warn_scale(type(self).__name__, self.schedules["scale"].bounds()[1], num_classes)
        if total_steps is not None:
            self.set_total_steps(total_steps)

    def reset_parameters(self) -> None:
        """Initialise ``weight`` as ``nn.Linear`` does (Kaiming-uniform)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    # ----------------------------------------------------------------- hyper-parameters
    def hyperparameters(self) -> dict[str, float]:
        """Current value of every scheduled hyper-parameter (and of a learned scale)."""
        values = {name: schedule.current() for name, schedule in self.schedules.items()}
        if self.log_scale is not None:
            values["scale"] = float(self.log_scale.detach().exp())
        return values

    def target(self, cosine: Tensor) -> Tensor:
        """The method's margin function: target cosine -> ``f(cos theta_y)``, element-wise.

        Args:
            cosine: (B,) target cosines in ``[-1, 1]``.
        """
        return cosine

    def scale_value(self) -> Tensor | float:
        """The scale ``s`` of the normalised geometry (a tensor if learned)."""
        if self.log_scale is not None:
            return self.log_scale.exp()
        if "scale" not in self.schedules:
            raise NotImplementedError(f"{type(self).__name__} has no scale")
        return self.schedules["scale"].current()

    # ------------------------------------------------------------------ batch statistics
    def _batch_statistics(
        self,
        embeddings: Tensor,
        weight: Tensor,
        labels: Tensor,
        classes: Tensor | None,
        update: bool,
    ) -> dict[str, Tensor]:
        """The statistics of the batch that the margin uses (AdaCos's scale, CurricularFace's
        ``t``, AdaFace's norm mean and spread), detached; none for most heads.

        Both paths take them from here, so ``forward`` in training mode and
        :meth:`margin_logits` in training mode see the same values: the running values
        updated with this batch (``update``, the paper's order: update, then use). In eval
        mode (``update`` False) they are the running values. Entries named like a buffer
        are stored into it by a training ``forward``; the others (per-sample values) live
        for the call only.

        Args:
            embeddings: (B, D) embeddings in the compute dtype.
            weight: (K, D) the class weights of the softmax (all, or the sampled ones).
            labels: (B,) int64 labels indexing ``weight``'s classes.
            classes: (K,) the sampled classes (``classes[labels]`` are the class indices),
                or None for all.
            update: whether to fold this batch into the running values.
        """
        return {}

    def _shard_statistics(
        self,
        embeddings: Tensor,
        weight: Tensor,
        targets: Tensor,
        classes: Tensor | None,
        batch: ShardedBatch,
        update: bool,
    ) -> dict[str, Tensor]:
        """:meth:`_batch_statistics` on one rank of a sharded head: the same values, on every
        rank, as the whole head's on the gathered batch (the collectives through ``batch``).

        This default serves the heads whose statistics need no class weight (none, or
        AdaFace's norms): the gathered embeddings hold all they need.

        Args:
            embeddings: (B, D) the gathered global batch in the compute dtype.
            weight: (K_r, D) the rank's class weights of the softmax (K_r x rows per class).
            targets: (B,) int64 each sample's class index into ``weight``'s classes, -1
                where another rank holds the class.
            classes: (K_r,) the indices of ``weight``'s classes among the rank's own class
                entries (class sampling), or None for all of them.
            batch: the collectives over the global batch.
            update: whether to fold this batch into the running values.
        """
        return self._batch_statistics(embeddings, weight, targets.clamp_min(0), classes, update)

    def _statistic(self, name: str) -> Tensor:
        """The batch statistic ``name`` of the current call, else the buffer of that name."""
        if self._statistics is not None and name in self._statistics:
            return self._statistics[name]
        return getattr(self, name)

    def _store_statistics(self, statistics: dict[str, Tensor]) -> None:
        """Copy the entries of ``statistics`` that name a buffer into it (training step)."""
        buffers = dict(self.named_buffers(recurse=False))
        with torch.no_grad():
            for name, value in statistics.items():
                if name in buffers:
                    buffers[name].copy_(value)

    # ----------------------------------------------------------------------- validation
    def check_inputs(
        self, embeddings: Tensor, labels: Tensor | None = None, classes: Tensor | None = None
    ) -> None:
        """Raise the ``TypeError`` or ``ValueError`` that ``forward`` raises for these inputs.

        Args:
            embeddings: (B, D) floating-point, finite embeddings.
            labels: (B,) integer class indices in ``[0, C)``, or None (inference).
            classes: a class subset for ``forward`` (see there), or None.
        """
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
        if classes is not None:
            self._check_classes(classes, labels)

    def _check_classes(self, classes: Tensor, labels: Tensor) -> None:
        """The ``classes`` of ``forward``: (K,) int64, increasing, in range, every label in."""
        if not isinstance(classes, Tensor):
            raise TypeError(f"classes must be a torch.Tensor; got {type(classes).__name__}")
        if classes.dtype != torch.long:
            raise TypeError(
                f"classes must be an int64 tensor of class indices; got {classes.dtype}"
            )
        if classes.dim() != 1 or classes.shape[0] == 0:
            raise ValueError(f"classes must have shape (K,), K >= 1; got {tuple(classes.shape)}")
        valid = (
            (classes[1:] > classes[:-1]).all()
            & (classes[0] >= 0)
            & (classes[-1] < self.num_classes)
            & torch.isin(labels, classes).all()
        )  # one device sync
        if not bool(valid):
            raise ValueError(
                f"classes must be increasing class indices in [0, {self.num_classes}) "
                "that contain every label"
            )

    # ------------------------------------------------------------------------ geometry
    @property
    def margin_geometry(self) -> Geometry:
        """The rules of the head's geometry (:class:`~marginkit.losses.geometry.Geometry`)."""
        return GEOMETRIES[self.geometry]

    def radial_factor(self, embedding_norm: float) -> float:
        """The radial factor ``r`` of an embedding of norm ``embedding_norm`` against unit-norm
        class weights: the current scale ``s`` of a head with normalised embeddings (fixed,
        scheduled or learned), ``embedding_norm`` otherwise.

        Args:
            embedding_norm: ``||x||`` (> 0), standing for ``||W_y|| ||x||`` with raw weights.
        """
        radial = self.margin_geometry.radial_factor(self._scale(), embedding_norm)
        return float(radial.detach()) if isinstance(radial, Tensor) else float(radial)

    def _scale(self) -> Tensor | float | None:
        """The scale ``s`` of the rows, or None for a geometry without one."""
        return self.scale_value() if self.margin_geometry.normalized_embeddings else None

    def _operands(self, embeddings: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Embeddings (B, D), weight (C, D) and class bias (C,) or None, in the compute dtype:
        float32, or float64 when an input is float64. Only raw class weights take a bias."""
        dtype = torch.promote_types(
            torch.promote_types(embeddings.dtype, self.weight.dtype), torch.float32
        )
        bias = getattr(self, "bias", None)
        if bias is not None and not self.margin_geometry.normalized_weights:
            bias = bias.to(dtype)
        else:  # a bias only with raw class weights
            bias = None
        return embeddings.to(dtype), self.weight.to(dtype), bias

    def _target_inputs(self, embeddings: Tensor) -> tuple[Tensor, ...]:
        """Per-sample tensors the target logit depends on besides the rows and the target
        weight, with their gradient (MagFace's magnitudes ``||x||``); none for most heads.
        Both paths pass them to :meth:`_target_logits`.

        Args:
            embeddings: (B, D) embeddings in the compute dtype.
        """
        return ()

    def _target_logits(
        self, rows: Tensor, target_weight: Tensor, *target_inputs: Tensor
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """The target logit, the virtual logit (or None) and the detached target cosine, (B,)
        each, from the (B, D) rows and the (B, D) weights of their classes (and the
        :meth:`_target_inputs`); the one margin of both paths (the fused path's
        ``target_function``, see :mod:`marginkit.losses.fused`).
        """
        cosine, radial = self.margin_geometry.target_cosine_and_radial(rows, target_weight)
        if self.margin_free:
            target_logit = (rows * target_weight).sum(dim=1)  # W_y . x
        else:
            target_logit = radial * self.target(cosine)  # (B,)
        virtual_logit = radial if self.virtual_class else None
        return target_logit, virtual_logit, cosine.detach()

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

    def _rows_of_classes(self, weight: Tensor, classes: Tensor) -> Tensor:
        """The rows of ``weight`` that belong to ``classes`` (class sampling), in order.

        Args:
            weight: (C, D) the head's weight in the compute dtype (a head with several rows
                per class overrides this).
            classes: (K,) increasing class indices.
        """
        return weight[classes]

    # ---------------------------------------------------------------------- public API
    def class_weight(self) -> Tensor:
        """One weight per class, (C, D), detached: the class directions that the geometry
        measures, the plots draw and open-set scoring compares with. ``weight`` itself for
        every head with one row per class; a head with several rows per class (sub-centres)
        picks one.
        """
        return self.weight.detach()

    def logits(self, embeddings: Tensor) -> Tensor:
        """Inference scores (B, C): ``cos(theta_j)`` for heads with normalised weights,
        ``W_j . x`` (+ bias) for the unnormalised ones; no margin and no virtual class.

        Args:
            embeddings: (B, D) embeddings.
        """
        self.check_inputs(embeddings)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            embeddings, weight, bias = self._operands(embeddings)
            return self.margin_geometry.inference_scores(embeddings, weight, bias)

    def margin_logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Exactly what the cross-entropy sees in training: (B, C), or (B, C + 1) for
        Virtual Softmax, at the current hyper-parameter values (and, in training mode, with
        the batch statistics a training step on this batch would use). Does not advance the
        step or store any statistic.

        The reference path: plain scores, target logit scattered in, composed with autograd
        (``forward`` computes the same loss by the fused path; MagFace adds its
        :meth:`penalty`).

        Args:
            embeddings: (B, D) embeddings.
            labels: (B,) integer class indices in ``[0, C)``.
        """
        self.check_inputs(embeddings, labels)
        labels = labels.long()
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            embeddings, weight, bias = self._operands(embeddings)
            statistics = self._batch_statistics(embeddings, weight, labels, None, self.training)
            with self._using(statistics):
                return self._training_logits(embeddings, weight, bias, labels)[0]

    @contextlib.contextmanager
    def _using(self, statistics: dict[str, Tensor]) -> Iterator[None]:
        """A context in which :meth:`_statistic` returns the entries of ``statistics``."""
        self._statistics = statistics
        try:
            yield
        finally:
            self._statistics = None

    def _training_logits(
        self, embeddings: Tensor, weight: Tensor, bias: Tensor | None, labels: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The training logits composed with autograd, the plain scores and target cosines.

        The reference path of every head (a head that changes the non-target logits
        overrides it).

        Args:
            embeddings: (B, D) embeddings in the compute dtype.
            weight: (K, D) class weights (all, or a sampled subset); bias: (K,) or None.
            labels: (B,) int64 indices into ``weight``'s rows.

        Returns:
            logits: (B, K) (or (B, K + 1) with a virtual class), differentiable.
            plain: (B, K) detached plain scores (no margin), for top-1 correctness.
            target_cosine: (B,) detached target cosines.
        """
        rows = self.margin_geometry.rows(embeddings, self._scale())  # (B, D)
        logits = self.margin_geometry.scores(rows, weight, bias)  # (B, K)
        plain = logits.detach()
        target_logit, virtual_logit, target_cosine = self._target_logits(
            rows, weight[labels], *self._target_inputs(embeddings)
        )
        if not self.margin_free:  # margin-free: the plain scores are the training logits
            if bias is not None:  # the target class keeps its bias
                target_logit = target_logit + bias[labels]
            logits = logits.scatter(1, labels.unsqueeze(1), target_logit.unsqueeze(1))
        if virtual_logit is not None:
            logits = torch.cat([logits, virtual_logit.unsqueeze(1)], dim=1)  # (B, K + 1)
        return logits, plain, target_cosine

    def penalty(self, embeddings: Tensor) -> Tensor | None:
        """A term ``forward`` adds to the cross-entropy, or None (MagFace's regulariser).

        Args:
            embeddings: (B, D) embeddings in the compute dtype.
        """
        return None

    def forward(self, embeddings: Tensor, labels: Tensor, classes: Tensor | None = None) -> Tensor:
        """Mean cross-entropy of the margin logits; advances the schedules in training mode.

        Args:
            embeddings: (B, D) embeddings (any floating dtype; autocast-safe).
            labels: (B,) integer class indices in ``[0, C)``.
            classes: optional (K,) int64 class indices, increasing and containing every label
                (class sampling, Partial FC): the softmax is then over those K classes only,
                ``F.cross_entropy(margin_logits(x, y)[:, classes], y remapped to 0..K-1)``,
                and the other class weights get no gradient.

        Returns:
            Scalar float32 (float64 for float64 inputs) loss.
        """
        return self.loss_and_correct(embeddings, labels, classes)[0]

    def loss_and_correct(
        self, embeddings: Tensor, labels: Tensor, classes: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """:meth:`forward`'s loss and, from the same pass over the classes, whether each
        sample is classified correctly: its label's plain score (:meth:`logits`, no margin)
        is at least every other class's (among ``classes`` when given). A trainer's running
        accuracy at no extra cost (no second pass over the (C, D) weight).

        Args:
            embeddings, labels, classes: as for :meth:`forward`.

        Returns:
            The scalar loss and a (B,) bool tensor.
        """
        self.check_inputs(embeddings, labels, classes)
        if self.training:
            self._check_total_steps()
        labels = labels.long()
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            embeddings, weight, bias = self._operands(embeddings)
            if classes is not None:
                weight = self._rows_of_classes(weight, classes)  # (K, D), K rows per class
                bias = None if bias is None else bias[classes]
                labels = torch.searchsorted(classes, labels)
            statistics = self._batch_statistics(embeddings, weight, labels, classes, self.training)
            with self._using(statistics):
                rows = self.margin_geometry.rows(embeddings, self._scale())  # (B, D)
                subcenters, modulation = self._negatives(rows, weight, labels)
                loss, target_cosine, correct = fused_margin_cross_entropy(
                    rows,
                    weight,
                    bias,
                    labels,
                    self._target_logits,
                    normalized_weight=self.margin_geometry.normalized_weights,
                    chunk_size=self.chunk_size,
                    target_inputs=self._target_inputs(embeddings),
                    subcenters=subcenters,
                    modulation=modulation,
                )
                penalty = self.penalty(embeddings)
        if penalty is not None:
            loss = loss + penalty
        if self.training:
            self._store_statistics(statistics)
            self.advance(target_cosine)
        return loss, correct

    def _negatives(
        self, rows: Tensor, weight: Tensor, labels: Tensor
    ) -> tuple[int, NegativeModulation | None]:
        """How the fused path forms the non-target logits beyond the plain scores: the
        weight's rows a class (sub-centres, the class's score the largest) and
        CurricularFace's modulation; ``(1, None)`` for every head that changes only the
        target logit.

        Args:
            rows: (B, D) the rows of the fused pass (:meth:`Geometry.rows
                <marginkit.losses.geometry.Geometry.rows>`).
            weight: (K, D) the class weights of the softmax (all, or the sampled ones).
            labels: (B,) int64 indices of the classes in ``weight``.
        """
        return 1, None

    def set_total_steps(self, total_steps: int) -> MarginHead:
        """Tell every schedule the run's length, in training steps (forward calls in training
        mode); the ``total_steps=`` constructor argument does the same. A schedule given as a
        fraction of the run (``Warmup(0.5, fraction=0.2)``) needs it before the first
        training step; without it, a run-relative default (:attr:`run_relative_defaults`:
        the lambda of L-Softmax and SphereFace, Cam-softmax's ``c``) falls back to the
        paper's step-based schedule at the first training step. Call it again to change the
        length (values are re-read at the current step).

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
        """Before a training step: refuse a schedule of the user's that is a fraction of a
        run of unknown length, and replace a run-relative default without the length by the
        paper's step-based schedule (read at the current step), with one warning.

        Raises:
            RuntimeError: such a schedule of the user's, named, and how to give the length.
        """
        waiting = [
            name
            for name, schedule in self.schedules.items()
            if schedule.relative and schedule.total_steps is None
        ]
        for name in waiting:
            if name not in self._relative_defaults:  # the user's: no fallback
                schedule = self.schedules[name]
                raise RuntimeError(
                    f"{type(self).__name__}'s {name} is given as a fraction of the run "
                    f"({type(schedule).__name__}({schedule.extra_repr()})): call "
                    "head.set_total_steps(N) with the run's number of training steps before "
                    "training, or pass total_steps=N to the head (marginkit.train.fit does)"
                )
        if not waiting:
            return
        for name in waiting:
            self._fall_back(name)
        fallbacks = ", ".join(
            f"{name} follows the paper's step-based "
            f"{type(self.schedules[name]).__name__}({self.schedules[name].extra_repr()})"
            for name in waiting
        )
        warnings.warn(
            f"{type(self).__name__} was given no run length, so its {fallbacks} instead of "
            "the run-relative default; for that, pass total_steps=N (the run's number of "
            "training steps) to the head or call head.set_total_steps(N) before training",
            RunLengthWarning,
            stacklevel=6,  # the line calling head(embeddings, labels)
        )

    def _fall_back(self, name: str) -> None:
        """Replace the run-relative default ``name`` by the paper's step-based schedule, at
        the current step."""
        schedule = self.run_relative_defaults[name].step_based()
        schedule.advance(int(self.step))
        self.schedules[name] = schedule
        self._relative_defaults.discard(name)

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        errors: list[str],
    ) -> None:
        # The state of a head that fell back holds the step-based schedule's buffers (the
        # Cam-softmax ramp has no running quantile): take that schedule before loading it.
        for name in sorted(self._relative_defaults):
            schedule_prefix = f"{prefix}schedules.{name}."
            saved = {key for key in state_dict if key.startswith(schedule_prefix)}
            built = self.schedules[name].state_dict()
            fallback = self.run_relative_defaults[name].step_based().state_dict()
            if saved != {schedule_prefix + key for key in built} and saved == {
                schedule_prefix + key for key in fallback
            }:
                self._fall_back(name)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )

    @contextlib.contextmanager
    def one_step(self, passes: int) -> Iterator[None]:
        """Count the ``passes`` training forward passes run inside as one training step
        (gradient accumulation: one optimiser step from several micro-batches).

        :meth:`advance` is held back until the last pass, and then moves the step counter and
        the schedules once, with the target cosines of every pass in order: the values one
        pass over the whole batch would give. What a pass stores besides (the statistics of
        its batch) is stored as it comes. Nothing is held for one pass.

        Args:
            passes: the forward passes of the step (>= 1).
        """
        if passes == 1:
            yield
            return
        self._held = _HeldStep(check_count("passes", passes, 1))
        try:
            yield
        finally:
            self._held = None

    def advance(self, target_cosine: Tensor | None = None) -> None:
        """Count one training step and move every schedule to it (within :meth:`one_step`,
        at its last pass only).

        Args:
            target_cosine: (B,) detached target cosines of the step's batch, for adaptive
                schedules.
        """
        held = self._held
        if held is not None:
            held.seen += 1
            if target_cosine is not None:
                held.cosines.append(target_cosine)
            if held.seen < held.passes:
                return
            self._held = None
            target_cosine = torch.cat(held.cosines) if held.cosines else None
        with torch.no_grad():
            self.step += 1
        step = int(self.step)
        for schedule in self.schedules.values():
            schedule.advance(step, target_cosine)

    def extra_repr(self) -> str:
        text = f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}"
        if self.log_scale is not None or "scale" in self.schedules:
            text += f", learn_scale={self.log_scale is not None}"
        return text
