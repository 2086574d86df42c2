"""The sharded head: model parallel over the classes, for every loss (as Partial FC).

With millions of classes the (C, D) class weights outgrow one device. Partial FC (An et al.,
"Partial FC: Training 10 Million Identities on a Single Machine", ICCV-W 2021) splits them
by rows across the ranks of a data-parallel run; :func:`shard` does that for any
:class:`~marginkit.losses.head.MarginHead` (and a
:class:`~marginkit.losses.sampling.ClassSampledHead`), on ``torch.distributed``::

    head = build("arcface", num_classes=1_000_000, embedding_dim=512)  # same seed on each rank
    head = shard(head)                  # rank r keeps the rows [lo, hi), about C / world
    loss, correct = head.loss_and_correct(embeddings, labels)  # the rank's own (B_r, D), (B_r,)
    loss.backward()                     # on every rank

One step (``docs/distributed.md`` has the formulas):

1. the ranks' embeddings and labels are all-gathered into the global batch (B, D), (B,)
   (ranks may hold different B_r);
2. the head's batch statistics are computed over the global batch (its ``_shard_statistics``:
   AdaFace's norm statistics, CurricularFace's ``t``, AdaCos's scale, sub-centre counts), the
   same on every rank as the whole head's on the gathered batch;
3. each rank runs the fused pass on its classes
   (:func:`~marginkit.losses.fused.sharded_fused_cross_entropy`, the whole head's
   :func:`~marginkit.losses.fused.fused_margin_cross_entropy` split by classes): its scores
   in blocks of the head's ``chunk_size`` with an online log-sum-exp (sub-centre maxima and
   CurricularFace's modulated negatives inside the pass), the margin target logit (and
   Virtual Softmax's virtual logit, which needs ``W_y``) of the samples whose label it owns,
   with the head's own ``_target_logits``; no (B, hi - lo) autograd graph is kept;
4. the softmax normaliser is combined by an all-reduce of the row maxima, then one of the
   rescaled sums of exponentials (together with the owners' target logits, target cosines
   and plain target scores); the loss is the exact global-batch mean, equal on every rank;
5. the backward pass recomputes each block's scores, gives the rank's class rows their
   whole gradient and the rows ``s x / ||x||`` (or ``x``) the rank's part, summed over the
   ranks (one all-reduce of (B, D)), so every rank gets the whole head's gradient for its
   own embeddings, its own class rows, and any replicated parameter (a learned scale).

Every rank's schedules advance with the whole batch's target cosines, so they stay in step
with each other and with the whole head. All margin arithmetic runs in float32 (float64 for
float64 inputs) with autocast off, as in the whole head.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from marginkit.distributed.collectives import Collectives, GatherRows, SumGradients
from marginkit.distributed.state import (
    CLASS_INDEXED,
    LAYOUT_KEY,
    class_block,
    layout_tensor,
    same_values,
    shard_bounds,
)
from marginkit.losses.fused import NegativeModulation, sharded_fused_cross_entropy
from marginkit.losses.geometry import GEOMETRIES
from marginkit.losses.head import MarginHead
from marginkit.losses.sampling import ClassSampledHead, draw_classes

__all__ = ["ShardedHead", "shard"]


def _unwrap(head: object) -> tuple[MarginHead, ClassSampledHead | None]:
    """The margin head and its class-sampling wrapper (or None); a one-line TypeError else."""
    if isinstance(head, ClassSampledHead):
        return head.head, head
    if isinstance(head, MarginHead):
        return head, None
    raise TypeError(f"head must be a MarginHead or a ClassSampledHead; got {type(head).__name__}")


def _copy_with(head: MarginHead, replacements: Mapping[str, Tensor]) -> MarginHead:
    """A deep copy of ``head`` whose named parameters are new ones holding ``replacements``
    (the originals are never copied: the memo hands the replacement to ``deepcopy``)."""
    memo: dict[int, Any] = {}
    for name, value in replacements.items():
        original = getattr(head, name)
        memo[id(original)] = nn.Parameter(value, requires_grad=original.requires_grad)
    return copy.deepcopy(head, memo)


def _with_class_rows(head: MarginHead, rows: Callable[[str, Tensor], Tensor]) -> MarginHead:
    """A copy of ``head`` whose class-indexed parameters and buffers (``CLASS_INDEXED``)
    are ``rows(name, value)`` of their detached values: a shard's block, or the whole."""
    parameters = {
        name: rows(name, getattr(head, name).detach())
        for name in CLASS_INDEXED
        if isinstance(getattr(head, name, None), nn.Parameter)
    }
    copied = _copy_with(head, parameters)
    for name, buffer in head.named_buffers(recurse=False):
        if name in CLASS_INDEXED:
            setattr(copied, name, rows(name, buffer))
    return copied


class _GlobalBatch:
    """The :class:`~marginkit.losses.head.ShardedBatch` of one step: the gathered batch,
    the rank's class weights and the counted collectives.

    Args:
        embeddings: (B, D) the gathered batch in the compute dtype.
        weight: (hi - lo, D) the rank's class weights (one row per class for
            :meth:`target_cosines`).
        targets: (B,) each sample's class index in ``weight``, -1 where another rank holds it.
        collectives: the step's counted collectives.
    """

    def __init__(
        self, embeddings: Tensor, weight: Tensor, targets: Tensor, collectives: Collectives
    ) -> None:
        self.embeddings, self.weight, self.targets = embeddings, weight, targets
        self.collectives = collectives
        self._target_cosines: Tensor | None = None

    def target_cosines(self) -> Tensor:
        if self._target_cosines is None:
            with torch.no_grad():
                owned = self.targets >= 0
                geometry = GEOMETRIES["normalized"]
                unit_rows = geometry.rows(self.embeddings[owned], 1.0)  # (T, D)
                target_weight = self.weight[self.targets[owned]]  # (T, D)
                cosine = geometry.target_cosine_and_radial(unit_rows, target_weight)[0]
                spread = self.embeddings.new_zeros(self.embeddings.shape[0])
                spread[owned] = cosine  # one rank's value per sample, zeros elsewhere
                self._target_cosines = self.all_sum(spread)  # (B,)
        return self._target_cosines

    def all_sum(self, tensor: Tensor) -> Tensor:
        return self.collectives.all_reduce(tensor.detach().clone(), dist.ReduceOp.SUM)

    def all_max(self, tensor: Tensor) -> Tensor:
        return self.collectives.all_reduce(tensor.detach().clone(), dist.ReduceOp.MAX)

    def all_gather(self, tensor: Tensor) -> list[Tensor]:
        return self.collectives.all_gather(tensor.detach())


class ShardedHead(nn.Module):
    """One rank's shard of a margin head: class rows ``[lo, hi)``; see the module docstring.

    Built by :func:`shard`, which reads the rank from the process group and checks that every
    rank starts from the same whole head. Built directly (rank and world size given), it runs
    no collective until a step or :meth:`gather` (for state dicts and inference).

    Args:
        head: the whole head (a MarginHead, or a ClassSampledHead for class sampling per
            shard); it is not changed.
        rank: this rank, in ``[0, world_size)``.
        world_size: ranks in ``group`` (at most C).
        group: the process group of the collectives (None: the default one).

    Attributes:
        head: a copy of the whole head with ``weight`` (and ``bias``, sub-centre counts)
            cut to the classes ``[lo, hi)`` (K rows a class for sub-centres); its
            ``num_classes`` stays C (the labels' range), its schedules and step counter are
            the shard's.
        lo, hi: the block of class rows held.
        sampled_classes: (K_r,) global indices of the rank's classes in the last step's
            softmax, when it used a subset (class sampling, or ``classes=``).
    """

    shard_layout: Tensor
    sampled_classes: Tensor

    def __init__(
        self,
        head: MarginHead | ClassSampledHead,
        rank: int,
        world_size: int,
        group: dist.ProcessGroup | None = None,
    ) -> None:
        whole, sampler = _unwrap(head)
        if whole.unshardable is not None:
            raise ValueError(f"head: {type(whole).__name__} cannot be sharded: {whole.unshardable}")
        lo, hi = shard_bounds(whole.num_classes, world_size, rank)
        super().__init__()
        self.rank, self.world_size, self.lo, self.hi = rank, world_size, lo, hi
        self.num_classes, self.embedding_dim = whole.num_classes, whole.embedding_dim
        self.rows_per_class = whole.weight.shape[0] // whole.num_classes
        self.head = _with_class_rows(
            whole, lambda name, value: class_block(value, self.num_classes, lo, hi).clone()
        )
        self.collectives = Collectives(group, world_size)
        layout = layout_tensor(rank, world_size, whole.num_classes)
        self.register_buffer(LAYOUT_KEY, layout.to(whole.weight.device))
        self.register_buffer("sampled_classes", layout.new_empty(0), persistent=False)
        self.fraction = None if sampler is None else sampler.fraction
        self.seed = None if sampler is None else sampler.seed
        self.generator = torch.Generator()
        if sampler is not None:  # the whole head's draws, continued in step on every rank
            self.generator.set_state(sampler.generator.get_state())

    # ----------------------------------------------------------------------- delegation
    @property
    def step_bytes(self) -> int:
        """Bytes of the collectives' tensors since the last step began (its forward and
        backward): O(world B D + world B), independent of C."""
        return self.collectives.bytes

    @property
    def step(self) -> Tensor:
        """The training-step counter (the same on every rank)."""
        return self.head.step

    def hyperparameters(self) -> dict[str, float]:
        """The head's current hyper-parameters (the same on every rank)."""
        return self.head.hyperparameters()

    def set_total_steps(self, total_steps: int) -> ShardedHead:
        """The run's length for the head's run-relative schedules (see MarginHead's)."""
        self.head.set_total_steps(total_steps)
        return self

    def logits(self, embeddings: Tensor) -> Tensor:
        """The rank's block of inference scores, (B, hi - lo): the whole head's ``logits``
        columns ``lo..hi`` for these embeddings (no collective).

        Args:
            embeddings: (B, D) embeddings.
        """
        return self.head.logits(embeddings)

    @torch.no_grad()
    def predict(self, embeddings: Tensor) -> Tensor:
        """The whole head's top-1 class of each of this rank's embeddings, by a distributed
        arg-max (a collective: every rank calls it with its own rows, possibly none).

        The ranks' embeddings are gathered; each rank scores them against its own class
        rows (:meth:`logits`) and takes its best class and score; every rank's (score,
        class) pairs are all-gathered and the highest score wins, the lowest class index
        among equal ones (the ranks' blocks are in class order, so this is ``argmax`` of
        the whole head's scores, which takes the first). No rank holds the (B, C) scores;
        the traffic, B D + 2 W B numbers, does not grow with C.

        Args:
            embeddings: (B_r, D) this rank's embeddings.

        Returns:
            (B_r,) int64 class indices in ``[0, C)``.
        """
        count = torch.tensor([embeddings.shape[0]], device=embeddings.device)
        sizes = [int(size) for size in self.collectives.all_gather(count)]
        batch = self.collectives.gather_rows(embeddings, sizes)  # (B, D)
        scores = self.logits(batch)  # (B, hi - lo)
        index = scores.argmax(dim=1)  # (B,) the first of equal scores
        best = scores.gather(1, index[:, None]).squeeze(1)  # (B,)
        bests = torch.stack(self.collectives.all_gather(best))  # (W, B)
        classes = torch.stack(self.collectives.all_gather(index + self.lo))  # (W, B)
        winner = (bests == bests.max(dim=0).values).to(torch.uint8).argmax(dim=0)  # (B,)
        predicted = classes.gather(0, winner[None]).squeeze(0)  # (B,)
        start = sum(sizes[: self.rank])
        return predicted[start : start + sizes[self.rank]]

    # ----------------------------------------------------------------------- the step
    def forward(self, embeddings: Tensor, labels: Tensor, classes: Tensor | None = None) -> Tensor:
        """The global batch's mean loss (see :meth:`loss_and_correct`)."""
        return self.loss_and_correct(embeddings, labels, classes)[0]

    def loss_and_correct(
        self, embeddings: Tensor, labels: Tensor, classes: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """The whole head's loss on the global batch, and ``correct`` for the local rows.

        A collective: every rank calls it with its own rows, then ``loss.backward()``.

        Args:
            embeddings: (B_r, D) the rank's embeddings (B_r may differ between ranks).
            labels: (B_r,) their class indices in ``[0, C)``.
            classes: optional (K,) global class subset, increasing, containing every label of
                the global batch, the same on every rank (as the whole head's ``classes``);
                None for a head with class sampling, which draws its own.

        Returns:
            The scalar loss, the global batch's mean (the same on every rank), and (B_r,)
            bool: whether each local sample's plain score for its label is the highest.
        """
        self.collectives.reset()
        sizes = self._batch_sizes(embeddings, labels)
        all_labels = self.collectives.gather_rows(labels.long(), sizes)  # (B,)
        columns = self._columns(all_labels, classes)
        if self.training:
            self.head._check_total_steps()
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            gathered = GatherRows.apply(embeddings, sizes, self.rank, self.collectives)  # (B, D)
            embeddings_all, weight, bias = self.head._operands(gathered)
            owned = (all_labels >= self.lo) & (all_labels < self.hi)
            targets = torch.where(owned, all_labels - self.lo, -1)  # (B,) into weight's classes
            batch = _GlobalBatch(embeddings_all, weight, targets, self.collectives)
            if columns is not None:  # the softmax's classes among the rank's
                weight = self.head._rows_of_classes(weight, columns)
                bias = None if bias is None else bias[columns]
                targets = torch.where(owned, torch.searchsorted(columns, targets), -1)
            statistics = self.head._shard_statistics(
                embeddings_all, weight, targets, columns, batch, self.training
            )
            with self.head._using(statistics):
                loss, target_cosine, correct = self._step(
                    embeddings_all, weight, bias, targets, statistics.get("boundary")
                )
        if self.training:
            self.head._store_statistics(statistics)
            self.head.advance(target_cosine)
        start = sum(sizes[: self.rank])
        return loss, correct[start : start + sizes[self.rank]]

    def _step(
        self,
        embeddings: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        boundary: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The loss (with the head's penalty), the (B,) target cosines and ``correct`` of the
        gathered (B, D) batch against the rank's (K_r, D) softmax weight, under the batch
        statistics in use, by the fused pass (:func:`~marginkit.losses.fused.
        sharded_fused_cross_entropy`: no (B, K_r) autograd graph); ``targets`` (B,) each
        sample's class in ``weight``'s, -1 where another rank holds it; ``boundary`` (B,)
        CurricularFace's hard-negative boundaries (its statistic), or None."""
        rows = self.head.margin_geometry.rows(embeddings, self.head._scale())  # (B, D)
        rows = SumGradients.apply(rows, self.collectives)
        target_inputs = tuple(  # per sample (MagFace's magnitudes): the owners' gradients
            SumGradients.apply(value, self.collectives) if value.requires_grad else value
            for value in self.head._target_inputs(embeddings)
        )
        modulation = None
        if boundary is not None:  # CurricularFace: its t and the whole batch's boundaries
            modulation = NegativeModulation(float(self.head._statistic("t")), boundary)
        loss, target_cosine, correct = sharded_fused_cross_entropy(
            rows,
            weight,
            bias,
            targets,
            self.head._target_logits,
            _GlobalBatch(embeddings, weight, targets, self.collectives),
            normalized_weight=self.head.margin_geometry.normalized_weights,
            chunk_size=self.head.chunk_size,
            target_inputs=target_inputs,
            subcenters=self.rows_per_class,
            modulation=modulation,
        )
        # The same on every rank, from the gathered batch: each rank's own rows get their
        # whole gradient without a sum (GatherRows keeps the own rows).
        penalty = self.head.penalty(embeddings)
        return (loss if penalty is None else loss + penalty), target_cosine, correct

    def _batch_sizes(self, embeddings: Tensor, labels: Tensor) -> list[int]:
        """Every rank's B_r, after each rank checked its own inputs: a rank with bad input
        raises its one-line error and the others a ValueError naming it (no rank hangs)."""
        error: Exception | None = None
        try:
            self.head.check_inputs(embeddings, labels)
        except (TypeError, ValueError) as caught:
            error = caught
        size = -1 if error is not None else int(embeddings.shape[0])
        found = self.collectives.all_gather(self.shard_layout.new_tensor([size]))
        sizes = [int(value) for value in found]
        if error is not None:
            raise error
        failed = [rank for rank, value in enumerate(sizes) if value < 0]
        if failed:
            raise ValueError(
                f"embeddings or labels of rank(s) {failed} are invalid (those ranks raise why); "
                "every rank stops"
            )
        return sizes

    def _columns(self, labels: Tensor, classes: Tensor | None) -> Tensor | None:
        """The block's columns in this step's softmax (indices into ``weight``), or None for
        all: those of ``classes`` or of the class-sampling draw (the whole
        ClassSampledHead's draw on the global batch, the same on every rank)."""
        if classes is not None:
            if self.fraction is not None:
                raise ValueError(
                    "classes must be None for a head with class sampling (it draws its own)"
                )
            self.head._check_classes(classes, labels)
        elif self.fraction is not None:
            num_sampled = max(1, math.ceil(self.fraction * self.num_classes))
            classes = draw_classes(labels, self.num_classes, num_sampled, self.generator)
        else:
            return None
        self.sampled_classes = classes[(classes >= self.lo) & (classes < self.hi)]
        return self.sampled_classes - self.lo

    # ---------------------------------------------------------------- whole and states
    def gather(self) -> MarginHead | ClassSampledHead:
        """The whole head, on every rank (a collective): the class rows all-gathered, the
        schedules, step counter, learned scale and sampling generator as this shard's.

        Returns:
            A MarginHead (a ClassSampledHead for a sampled shard) whose ``state_dict()`` is
            the whole one.
        """
        sizes = [
            hi - lo
            for lo, hi in (
                shard_bounds(self.num_classes, self.world_size, rank)
                for rank in range(self.world_size)
            )
        ]
        whole = _with_class_rows(
            self.head,
            lambda name, value: self.collectives.gather_rows(
                value, [size * (value.shape[0] // (self.hi - self.lo)) for size in sizes]
            ),
        )
        if self.fraction is None or self.seed is None:
            return whole
        sampled = ClassSampledHead(whole, self.fraction, self.seed)
        sampled.generator.set_state(self.generator.get_state())
        return sampled

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load a shard's state dict, refusing one of another rank or world size with a
        one-line ValueError that says how to reshard."""
        layout = state_dict.get(LAYOUT_KEY) if isinstance(state_dict, Mapping) else None
        if not isinstance(layout, Tensor) or not torch.equal(layout.cpu(), self.shard_layout.cpu()):
            given = "none" if not isinstance(layout, Tensor) else layout.tolist()
            raise ValueError(
                f"state_dict's shard_layout [rank, world_size, lo, hi, num_classes] is {given}, "
                f"this shard's {self.shard_layout.tolist()}: cut one for this rank with "
                "marginkit.distributed.reshard_state_dict(join_state_dicts(shards), rank, "
                "world_size)"
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        sampling = "" if self.fraction is None else f", fraction={self.fraction}"
        return (
            f"rank={self.rank}, world_size={self.world_size}, rows=[{self.lo}, {self.hi}) "
            f"of num_classes={self.num_classes}{sampling}"
        )


def shard(
    head: MarginHead | ClassSampledHead, group: dist.ProcessGroup | None = None
) -> ShardedHead:
    """This rank's :class:`ShardedHead` of a whole head (a collective).

    Every rank passes the same whole head (built from the same seed and settings, or loaded
    from the same state); the shard keeps its block of class rows and a copy of the rest.

    Args:
        head: a :class:`~marginkit.losses.head.MarginHead` (any registered loss) or a
            :class:`~marginkit.losses.sampling.ClassSampledHead` (class sampling per shard).
        group: the process group (None: the default one, ``torch.distributed``
            initialised by ``init_process_group`` or ``torchrun``).

    Returns:
        The rank's shard, rows ``shard_bounds(C, world_size, rank)``.
    """
    _unwrap(head)
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "shard needs torch.distributed initialised on every rank "
            "(torch.distributed.init_process_group, or run under torchrun)"
        )
    sharded = ShardedHead(head, dist.get_rank(group), dist.get_world_size(group), group)
    _check_same_everywhere(head, sharded.collectives)
    return sharded


def _check_same_everywhere(head: MarginHead | ClassSampledHead, collectives: Collectives) -> None:
    """Raise a ValueError on every rank unless every rank passed the same whole head (its
    state dict and sampling generator, compared by their sums and sums of squares)."""
    whole, sampler = _unwrap(head)
    values = [
        torch.stack([value.double().sum(), value.double().square().sum()])
        for _, value in sorted(whole.state_dict().items())
    ]
    if sampler is not None:
        values.append(sampler.generator.get_state().double().sum().reshape(1).to(values[0]))
    found = collectives.all_gather(torch.cat(values).to(whole.weight.device))
    differing = [rank for rank, value in enumerate(found) if not same_values(value, found[0])]
    if differing:
        raise ValueError(
            f"head differs between ranks (ranks {differing} from rank 0: weights, "
            "hyper-parameters, step or sampling state); build it with the same seed and "
            "settings, or load the same state, on every rank"
        )
