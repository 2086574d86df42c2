"""Sub-center ArcFace (Deng, Guo, Liu, Gong and Zafeiriou, ECCV 2020): K sub-centres per
class, the class's cosine is the largest over them, and ArcFace's margin on the target.

"Sub-center ArcFace: Boosting Face Recognition by Large-scale Noisy Web Faces". A class with
noisy labels spreads its samples over several sub-centres: the clean majority gathers around
one dominant sub-centre, the mislabelled faces around the others, so they stop pulling the
dominant one. Once the model is discriminative,
:meth:`SubCenterArcFace.drop_non_dominant` cleans the data the paper's way (samples far from
their class's dominant sub-centre are dropped) and keeps one sub-centre per class.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from marginkit._validation import check_count
from marginkit.losses.functional import arcface_target, directions, row_norms
from marginkit.losses.fused import NegativeModulation, inverse_column_norms
from marginkit.losses.head import MAX_SCALE, MarginHead, ShardedBatch, check_range
from marginkit.losses.sanity import warn_margin
from marginkit.schedules import Schedule

__all__ = ["SubCenterArcFace"]

#: The paper's angle threshold for dropping samples: 75 degrees.
PAPER_DROP_ANGLE = math.radians(75.0)


def _check_angle(name: str, value: float) -> float:
    """``value`` as a float in ``(0, pi]``; a one-line error naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number (radians); got {type(value).__name__}")
    if not 0.0 < value <= math.pi:  # NaN fails this too
        raise ValueError(f"{name} must lie in (0, pi] radians; got {value}")
    return float(value)


def _subcenter_cosines(embeddings: Tensor, subcentres: Tensor) -> Tensor:
    """Cosine of each embedding with each of its own K sub-centres, (B, K), no gradient use.

    Args:
        embeddings: (B, D) embeddings.
        subcentres: (B, K, D) the sub-centres of each embedding's class (raw rows).
    """
    unit_rows = directions(embeddings, row_norms(embeddings))  # (B, D), 0 without direction
    flat = subcentres.flatten(0, 1)  # (B K, D)
    unit_subcentres = directions(flat, row_norms(flat)).view_as(subcentres)  # (B, K, D)
    cosines = torch.einsum("bkd,bd->bk", unit_subcentres, unit_rows)  # (B, K)
    return cosines.clamp(-1.0, 1.0)


class _SubcenterMaxima(torch.autograd.Function):
    """``z_ij = max_k rows_i . W_jk / ||W_jk||`` (clamped to ``+-||rows_i||``), (B, N), with
    the gradient through each arg-max sub-centre only, in one (B, N K) buffer.

    Composed with autograd, the same maxima keep a normalised copy of the (N K, D) weight
    and several (B, N K) tensors (and their gradients) alive: 4.1 GB and 20x a plain layer's
    time at C = 100k, K = 3. Here the forward keeps only the (B, N) maxima and arg-maxima;
    the backward scatters the (B, N) gradient into one (B, N K) buffer and takes the two
    products of a linear layer, with the weight-normalisation correction
    ``-(sum_i g_ic z_ic) W_c / ||W_c||^2`` as a (N K,) reduction. A clamped maximum
    (``|z| = ||rows_i||``, a cosine rounded past +-1) passes no gradient to the weight and
    the radial one ``+-rows_i / ||rows_i||`` to the row, as the clamp of the reference.
    """

    @staticmethod
    def forward(ctx, rows: Tensor, weight: Tensor, subcenters: int) -> tuple[Tensor, Tensor]:
        inverse = inverse_column_norms(weight)  # (N K,)
        bound = row_norms(rows)  # (B, 1)
        scores = torch.mm(rows, weight.t()).mul_(inverse)  # (B, N K)
        torch.maximum(scores, -bound, out=scores)
        torch.minimum(scores, bound, out=scores)
        maxima, nearest = scores.unflatten(1, (-1, subcenters)).max(dim=2)  # (B, N) each
        del scores
        ctx.subcenters = subcenters
        ctx.save_for_backward(rows, weight, inverse, bound, maxima, nearest)
        ctx.mark_non_differentiable(nearest)
        return maxima, nearest

    @staticmethod
    def backward(ctx, grad_maxima: Tensor, _grad_nearest: Tensor):
        rows, weight, inverse, bound, maxima, nearest = ctx.saved_tensors
        batch, classes = maxima.shape
        clamped = maxima.abs() >= bound  # (B, N): the cosine was clamped to +-1
        radial = (grad_maxima * maxima.sign() * clamped).sum(dim=1, keepdim=True)  # (B, 1)
        gradient = grad_maxima.masked_fill(clamped, 0.0)  # (B, N) through the product
        spread = gradient.new_zeros(batch, weight.shape[0])  # (B, N K)
        by_class = spread.view(batch, classes, ctx.subcenters)  # (B, N, K) view
        index = nearest.unsqueeze(2)  # (B, N, 1): each maximum's sub-centre
        by_class.scatter_(2, index, (gradient * maxima).unsqueeze(2))
        statistic = spread.sum(dim=0)  # (N K,): sum_i g_ic z_ic
        by_class.scatter_(2, index, gradient.unsqueeze(2))  # the same places: g_ic
        spread.mul_(inverse)  # g_ic / ||W_c||
        grad_rows = grad_weight = None
        if ctx.needs_input_grad[0]:
            direction = rows / bound.clamp_min(torch.finfo(rows.dtype).tiny)
            grad_rows = spread @ weight + radial * direction  # (B, D)
        if ctx.needs_input_grad[1]:
            grad_weight = spread.t() @ rows  # (N K, D)
            grad_weight.addcmul_(weight, (statistic * inverse.square()).unsqueeze(1), value=-1.0)
        return grad_rows, grad_weight, None


class SubCenterArcFace(MarginHead):
    """ArcFace with K sub-centres per class (Deng et al., ECCV 2020).

    With ``W_jk`` the k-th sub-centre of class j and ``cos(theta_ij) = max_k cos(x_i, W_jk)``,
    the training logits are::

        target:  s * cos(theta_iy + m)   while theta_iy + m <= pi,
                 s * (cos(theta_iy) - m sin(m))   beyond (InsightFace's fallback, as ArcFace)
        others:  s * cos(theta_ij)

    The gradient of each logit flows through its arg-max sub-centre only. :meth:`logits` is
    the (B, C) matrix of ``max_k cos(x_i, W_jk)``. With ``subcenters=1`` the head is exactly
    :class:`~marginkit.losses.arcface.ArcFace`. Angles in radians (the paper: s = 64,
    m = 0.5, K = 3).

    ``weight`` has shape (C K, D): row ``j K + k`` is sub-centre k of class j (InsightFace's
    layout, ``weight.view(C, K, D)``). :meth:`class_weight` gives each class's *dominant*
    sub-centre: the one most of its training samples were nearest to, counted in the buffer
    ``subcenter_counts`` (C, K) by every training ``forward`` (ties and untrained classes:
    the lowest k).

    The paper's cleaning, :meth:`drop_non_dominant`: once the model is discriminative, each
    class's dominant sub-centre is found from the training embeddings, the samples more than
    75 degrees from it are dropped as noise, and only the dominant sub-centre of each class is
    kept (K becomes 1); the paper then retrains on the kept samples.

    ``forward`` runs the fused cross-entropy with K rows a class (each block's maxima from
    one product per sub-centre, the gradient to the arg-max sub-centres; ``chunk_size``
    allowed); :meth:`margin_logits` composes the same logits with autograd. Class sampling
    (``forward(x, y, classes=...)``) takes all K rows of each sampled class.

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        scale: s in (0, 1e4], float or schedule.
        margin: m in [0, pi), radians, float or schedule.
        subcenters: K, the sub-centres per class, an int >= 1.
        learn_scale: learn s as the parameter ``log_scale`` (``s = exp(log_scale)``),
            starting from ``scale`` (a float then); default False, the paper's fixed scale.
        total_steps: the run's number of training steps, for a hyper-parameter given as a
            fraction of the run (as :meth:`MarginHead.set_total_steps`); None: not known.
    """

    subcenter_counts: Tensor

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        scale: float | Schedule = 64.0,
        margin: float | Schedule = 0.5,
        subcenters: int = 3,
        learn_scale: bool = False,
        *,
        total_steps: int | None = None,
    ) -> None:
        check_range("scale", scale, 0.0, MAX_SCALE, low_inclusive=False)
        check_range("margin", margin, 0.0, math.pi, high_inclusive=False)
        check_count("subcenters", subcenters, 1)
        super().__init__(
            num_classes,
            embedding_dim,
            total_steps=total_steps,
            learn_scale=learn_scale,
            rows_per_class=subcenters,  # weight (C K, D), nn.Linear's init (fan-in D)
            scale=scale,
            margin=margin,
        )
        self.subcenters = subcenters
        self.register_buffer(
            "subcenter_counts", torch.zeros(num_classes, subcenters, dtype=torch.long)
        )
        largest = self.schedules["margin"].bounds()[1]
        warn_margin(type(self).__name__, "angular", largest, num_classes, embedding_dim)

    def target(self, cosine: Tensor) -> Tensor:
        return arcface_target(cosine, self.schedules["margin"].current())

    def _negatives(
        self, rows: Tensor, weight: Tensor, labels: Tensor
    ) -> tuple[int, NegativeModulation | None]:
        return self.subcenters, None

    # ------------------------------------------------------------------ sub-centre layout
    def _by_class(self, weight: Tensor) -> Tensor:
        """(N K, D) rows -> (N, K, D) sub-centres by class."""
        return weight.unflatten(0, (-1, self.subcenters))

    def _rows_of_classes(self, weight: Tensor, classes: Tensor) -> Tensor:
        """All K rows of each class of ``classes``, (len(classes) K, D), classes in order."""
        return self._by_class(weight)[classes].flatten(0, 1)

    def dominant_subcenters(self) -> Tensor:
        """(C,) int64: each class's dominant sub-centre k, the arg-max of ``subcenter_counts``
        (ties: the lowest k; 0 before any training)."""
        return self.subcenter_counts.argmax(dim=1)  # the first maximum on ties

    def class_weight(self) -> Tensor:
        """(C, D) detached: the dominant sub-centre of each class (:meth:`dominant_subcenters`)."""
        classes = torch.arange(self.num_classes, device=self.weight.device)
        dominant = self.dominant_subcenters().to(self.weight.device)
        return self._by_class(self.weight.detach())[classes, dominant]

    # --------------------------------------------------------------------- training path
    def _batch_statistics(
        self,
        embeddings: Tensor,
        weight: Tensor,
        labels: Tensor,
        classes: Tensor | None,
        update: bool,
    ) -> dict[str, Tensor]:
        """``subcenter_counts`` with this batch's nearest target sub-centres added (training);
        nothing in eval mode (the margin itself uses no statistic)."""
        if not update:
            return {}
        with torch.no_grad():
            subcentres = self._by_class(weight.detach())[labels]  # (B, K, D)
            nearest = _subcenter_cosines(embeddings.detach(), subcentres).argmax(dim=1)  # (B,)
            indices = labels if classes is None else classes[labels]  # (B,) class indices
            counts = self.subcenter_counts.index_put(
                (indices, nearest), torch.ones_like(nearest), accumulate=True
            )  # (C, K)
        return {"subcenter_counts": counts}

    def _shard_statistics(
        self,
        embeddings: Tensor,
        weight: Tensor,
        targets: Tensor,
        classes: Tensor | None,
        batch: ShardedBatch,
        update: bool,
    ) -> dict[str, Tensor]:
        """The rank's rows of ``subcenter_counts`` (a shard holds its classes' counts, as
        their K weight rows) with the nearest sub-centres of the samples it holds the class
        of: no collective."""
        held = targets >= 0
        return self._batch_statistics(embeddings[held], weight, targets[held], classes, update)

    def _training_logits(
        self, embeddings: Tensor, weight: Tensor, bias: Tensor | None, labels: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Logits (B, N) from the (N K, D) sub-centres of N classes (all, or a sample):
        ``s max_k cos`` for the others, ArcFace's target on the target's largest cosine."""
        rows = self.margin_geometry.rows(embeddings, self._scale())  # (B, D): s x / ||x||
        # (B, N): s times the largest cosine over each class's K sub-centres; the gradient
        # goes to the arg-max sub-centre
        scores, nearest = _SubcenterMaxima.apply(rows, weight, self.subcenters)
        plain = scores.detach()
        target_rows = labels * self.subcenters + nearest.gather(1, labels.unsqueeze(1)).squeeze(1)
        target_logit, _, target_cosine = self._target_logits(rows, weight[target_rows])  # (B,)
        logits = scores.scatter(1, labels.unsqueeze(1), target_logit.unsqueeze(1))  # (B, N)
        return logits, plain, target_cosine

    def logits(self, embeddings: Tensor) -> Tensor:
        """Inference scores (B, C): ``max_k cos(x_i, W_jk)``, no margin.

        Args:
            embeddings: (B, D) embeddings.
        """
        self.check_inputs(embeddings)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            embeddings, weight, _ = self._operands(embeddings)
            cosines = self.margin_geometry.inference_scores(embeddings, weight, None)  # (B, C K)
            return cosines.unflatten(1, (-1, self.subcenters)).max(dim=2).values  # (B, C)

    # -------------------------------------------------------------------------- cleaning
    def drop_non_dominant(
        self, embeddings: Tensor, labels: Tensor, max_angle: float = PAPER_DROP_ANGLE
    ) -> Tensor:
        """The paper's cleaning: drop the noisy samples and the non-dominant sub-centres.

        From the given training embeddings (all of the training set, or a large sample of it),
        each class's dominant sub-centre is the one most of the class's samples are nearest to
        (ties: the lowest k; a class without samples here keeps the dominant sub-centre of
        ``subcenter_counts``). A sample more than ``max_angle`` from its class's dominant
        sub-centre is noise, to be dropped (an embedding without a direction is 90 degrees
        from everything). The head then keeps only the dominant sub-centre of each class: K
        becomes 1, ``weight`` is a new (C, D) Parameter and ``subcenter_counts`` (C, 1) keeps
        the dominant sub-centre's column.

        The optimiser must be rebuilt afterwards (it holds the old ``weight``), and the state
        dict now loads into ``SubCenterArcFace(C, D, subcenters=1)``. The paper then retrains
        on the kept samples (``embeddings[keep]``'s images).

        Args:
            embeddings: (N, D) training embeddings.
            labels: (N,) their integer class indices in ``[0, C)``.
            max_angle: the angle threshold in radians, in (0, pi]; the paper's 75 degrees.

        Returns:
            (N,) bool: True for the samples to keep.
        """
        self.check_inputs(embeddings, labels)
        max_angle = _check_angle("max_angle", max_angle)
        with torch.no_grad(), torch.autocast(embeddings.device.type, enabled=False):
            embeddings, weight, _ = self._operands(embeddings.detach())
            labels = labels.long().to(weight.device)
            subcentres = self._by_class(weight)  # (C, K, D)
            cosines = torch.stack(  # (N, K): a (N, D) gather at a time, not (N, K, D)
                [
                    _subcenter_cosines(embeddings, subcentres[labels, k].unsqueeze(1))[:, 0]
                    for k in range(self.subcenters)
                ],
                dim=1,
            )
            votes = torch.zeros_like(self.subcenter_counts).index_put(
                (labels, cosines.argmax(dim=1)), torch.ones_like(labels), accumulate=True
            )  # (C, K): samples nearest to each sub-centre
            counted = votes.sum(dim=1) > 0
            dominant = torch.where(counted, votes.argmax(dim=1), self.dominant_subcenters())
            keep = cosines.gather(1, dominant[labels].unsqueeze(1)).squeeze(1) >= math.cos(
                max_angle
            )
            self._keep_subcenters(dominant)
        return keep

    def _keep_subcenters(self, chosen: Tensor) -> None:
        """Keep sub-centre ``chosen[j]`` of each class j only: K becomes 1."""
        classes = torch.arange(self.num_classes, device=self.weight.device)
        kept = self._by_class(self.weight.detach())[classes, chosen].clone()  # (C, D)
        self.weight = nn.Parameter(kept, requires_grad=self.weight.requires_grad)
        self.subcenter_counts = self.subcenter_counts.gather(1, chosen.unsqueeze(1)).clone()
        self.subcenters = 1

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, subcenters={self.subcenters}"
