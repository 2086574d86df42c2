"""The fast path of every head: one fused (optionally class-chunked) margin cross-entropy.

:meth:`MarginHead.margin_logits <marginkit.losses.head.MarginHead.margin_logits>` builds the
training logits by composing normalise / matmul / scatter with autograd, which materialises a
normalised copy of the (C, D) weight and several (B, C) intermediates and their gradients.
This module computes the same loss and the same gradients with one
:class:`torch.autograd.Function`:

- the plain scores come from one (B, D) x (D, C) product of the *rows*
  (:meth:`Geometry.rows <marginkit.losses.geometry.Geometry.rows>`: ``s x / ||x||`` for the
  normalised geometry, ``x`` otherwise) with the raw weight; for the geometries with
  normalised weights the columns are divided by the weight norms afterwards, so no
  normalised copy of the weight exists;
- the margin touches only the B target entries: the target (and virtual) logits are computed
  from the (B, D) rows and the (B, D) gathered target weights by a small autograd graph, the
  ``target_function`` the head passes in: the same one its reference path uses, which calls
  :meth:`~marginkit.losses.head.MarginHead.target`, so every margin is still written once,
  in :mod:`marginkit.losses.functional`;
- the log-sum-exp is taken in place in the one (B, C) score buffer, and the backward pass
  reuses that buffer (``exp(z - m)``) for the two gradient products; the softmax row factor
  ``1 / (B S_i)`` is applied to the (B, D) operands instead of the (B, C) buffer, and the
  weight-normalisation correction ``-((M_j . W_j) / ||W_j||^2) W_j`` is a (C,) reduction;
- with ``chunk_size`` set, the classes are processed in blocks: an online log-sum-exp
  forward keeps only (B,) statistics, and the backward recomputes each block's scores, so
  the memory beyond the weights and their gradient is O(B x chunk_size) instead of O(B x C).

The virtual class of Virtual Softmax is one extra (B,) logit folded into the log-sum-exp,
never a concatenated (B, C + 1) matrix.

Two descendants change the non-target scores too, block by block, inside the same pass:

- sub-centres (``subcenters = K``, Deng et al., ECCV 2020): the weight has K rows per class
  and a class's score is the largest of its K scores; each is one (B, D) x (D, Cb) product
  of a strided view of the weight, reduced into the running maximum and arg-max, so no
  (B, Cb K) buffer exists; in the backward pass each entry's gradient goes to its arg-max
  sub-centre, one masked (B, Cb) product per sub-centre;
- CurricularFace's hard negatives (:class:`NegativeModulation`, Huang et al., CVPR 2020):
  ``z_ij`` becomes ``r_i N(t, z_ij / r_i)`` (``r_i = ||rows_i||``) before the log-sum-exp,
  and the backward pass multiplies by ``dN / dc`` and adds the radial term
  ``(N - c dN / dc) rows_i / r_i``, a few rows at a time while the block is in cache.

Cosines are clamped to ``[-1, 1]`` as in the reference (gradient zero where the clamp bites);
the (rare) clamped entries are found from the per-row extrema, so the common case pays no
mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from marginkit.losses.functional import direction_floor, row_norms

__all__ = [
    "NegativeModulation",
    "Reduction",
    "TargetFunction",
    "column_norms",
    "fused_margin_cross_entropy",
    "inverse_column_norms",
    "sharded_fused_cross_entropy",
]

TargetFunction = Callable[..., tuple[Tensor, Tensor | None, Tensor]]
"""``(rows (B, D), target_weight (B, D), *target_inputs) -> (target_logit (B,),
virtual_logit (B,) | None, target_cosine (B,))``, differentiable in every argument; the
``target_inputs`` are per-sample tensors the margin also depends on (MagFace's magnitudes)."""


class NegativeModulation(NamedTuple):
    """CurricularFace's non-target logits (Huang et al., CVPR 2020): ``r_i N(t, c_ij)`` in
    place of the plain ``z_ij = r_i c_ij`` (``r_i = ||rows_i||``, ``c_ij`` the clamped
    cosine), with :func:`~marginkit.losses.functional.curricular_negatives`' ``N(t, c) =
    c (t + c)`` for a hard negative (``c > boundary_i``) and ``c`` otherwise.

    Attributes:
        t: the modulation parameter, a float (no gradient).
        boundary: (B,) each sample's boundary ``cos(theta_y + m)``, detached.
    """

    t: float
    boundary: Tensor


class _Modulation(NamedTuple):
    """:class:`NegativeModulation` with its (B, 1) row quantities, as the blocks use them."""

    t: float
    #: (B, 1) the boundaries.
    boundary: Tensor
    #: (B, 1) ``1 / ||rows_i||``; 0 for a row without a direction (its cosines are 0).
    inverse_radius: Tensor


def _row_step(batch: int, width: int) -> int:
    """Rows of a (B, width) block worked on at a time: about 8 MB of float32."""
    return max(1, min(batch, (1 << 21) // max(1, width)))


def column_norms(weight: Tensor) -> Tensor:
    """Norms of the class weights, (C, D) -> (C,), in one pass when that is exact.

    The plain ``sqrt(sum w^2)`` is used unless some norm is so small or so large that its
    square loses precision or overflows in the dtype; those weights are then recomputed with
    the scaled :func:`~marginkit.losses.functional.row_norms`.
    """
    norms = torch.linalg.vector_norm(weight, dim=1)  # (C,)
    info = torch.finfo(weight.dtype)
    low = info.tiny**0.5 / info.eps
    high = (info.max / weight.shape[1]) ** 0.5 * info.eps
    unsafe = ~((norms > low) & (norms < high))
    if bool(unsafe.any()):
        index = unsafe.nonzero().squeeze(1)
        norms[index] = row_norms(weight[index]).squeeze(1)
    return norms


def inverse_column_norms(weight: Tensor) -> Tensor:
    """``1 / ||W_j||`` of the class weights, (C, D) -> (C,); 0 for a weight without a
    direction (norm below :func:`~marginkit.losses.functional.direction_floor`), whose
    cosine with every embedding is then 0 instead of NaN."""
    norms = column_norms(weight)
    return torch.where(norms >= direction_floor(norms.dtype), 1.0 / norms, 0.0)


def _subcenter_maxima(
    rows: Tensor, weight: Tensor, inverse_norms: Tensor, subcenters: int
) -> tuple[Tensor, Tensor]:
    """Each class's largest sub-centre score and its arg-max, one (B, Cb) product per
    sub-centre: no (B, Cb K) buffer.

    Args:
        rows: (B, D) left operand.
        weight: (Cb K, D) the block's sub-centres, row ``j K + k`` sub-centre k of class j.
        inverse_norms: (Cb K,) ``1 / ||W_jk||``.
        subcenters: K (>= 2).

    Returns:
        scores: (B, Cb) ``max_k rows_i . W_jk / ||W_jk||``.
        nearest: (B, Cb) the arg-max k, as a float of the scores' dtype (float compares and
            masks run several times faster than bool or uint8 ones on the CPU); ties: the
            lowest k.
    """
    by_subcenter = weight.unflatten(0, (-1, subcenters))  # (Cb, K, D) view
    inverse = inverse_norms.view(-1, subcenters)  # (Cb, K)
    scores = torch.mm(rows, by_subcenter[:, 0].t()).mul_(inverse[:, 0].contiguous())
    nearest, work = torch.empty_like(scores), torch.empty_like(scores)
    closer = torch.empty_like(scores) if subcenters > 2 else nearest
    for k in range(1, subcenters):
        torch.mm(rows, by_subcenter[:, k].t(), out=work).mul_(inverse[:, k].contiguous())
        if k == 1:  # strictly closer: ties keep the lowest k
            torch.gt(work, scores, out=nearest)
        else:  # k exceeds every earlier index
            torch.maximum(nearest, torch.gt(work, scores, out=closer).mul_(k), out=nearest)
        torch.maximum(scores, work, out=scores)
    return scores, nearest


def _block_scores(
    rows: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    inverse_norms: Tensor | None,
    bound: Tensor | None,
    out: Tensor | None = None,
    subcenters: int = 1,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Scores of one class block and the clamped entries.

    Args:
        rows: (B, D) left operand (``s x_hat``, ``x`` ...).
        weight: (Cb K, D) the block's raw class weights (K = ``subcenters`` rows a class).
        bias: (Cb,) or None (K = 1 only).
        inverse_norms: (Cb K,) ``1 / ||W_j||`` for the normalised-weight geometries, or None
            (K = 1 only).
        bound: (B, 1) the largest allowed magnitude per row (the radial factor), or None.
        out: optional (B, Cb) buffer to write into (K = 1 only).
        subcenters: K, the rows of each class; a class's score is the largest of its K.

    Returns:
        scores: (B, Cb) ``rows . W_j (/ ||W_j||) (+ b_j)`` (the largest over the class's
            sub-centres), clamped to ``[-bound, bound]``.
        clamped: (K, 2) indices of the entries the clamp changed, or None.
        signs: (K,) +-1, the side each clamped entry was clamped to, or None.
        nearest: (B, Cb) each score's sub-centre (a float, see :func:`_subcenter_maxima`),
            or None for one row a class.
    """
    nearest = None
    if subcenters > 1:
        assert inverse_norms is not None and bias is None and out is None
        scores, nearest = _subcenter_maxima(rows, weight, inverse_norms, subcenters)
    elif bias is not None:
        scores = torch.addmm(bias, rows, weight.t(), out=out)  # (B, Cb)
    else:
        scores = torch.mm(rows, weight.t(), out=out)  # (B, Cb)
    if inverse_norms is not None and nearest is None:
        scores.mul_(inverse_norms)
    if bound is None:
        return scores, None, None, nearest
    over = scores.amax(dim=1, keepdim=True) > bound
    under = scores.amin(dim=1, keepdim=True) < -bound
    if not bool((over | under).any()):
        return scores, None, None, nearest
    high = scores > bound
    low = scores < -bound
    clamped = (high | low).nonzero()  # (K, 2)
    signs = high[clamped[:, 0], clamped[:, 1]].to(scores.dtype) * 2.0 - 1.0  # (K,)
    torch.maximum(scores, -bound, out=scores)
    torch.minimum(scores, bound, out=scores)
    return scores, clamped, signs, nearest


class _Block(NamedTuple):
    """One block of classes, ``start:stop``, with its scores (see :func:`_class_blocks`)."""

    start: int
    stop: int
    #: (Cb,) ``1 / ||W_j||`` for the normalised-weight geometries, or None.
    inverse_norms: Tensor | None
    #: (B, Cb) the scores of :func:`_block_scores`, target entries ``-inf``.
    scores: Tensor
    #: (K, 2) the entries the clamp changed and (K,) their sides, or None.
    clamped: Tensor | None
    signs: Tensor | None
    #: (T,) the block's target entries: rows and columns within the block.
    target_rows: Tensor
    target_columns: Tensor
    #: (B, Cb) each score's arg-max sub-centre, or None for one row a class.
    nearest: Tensor | None


def _score_block(
    rows: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    bound: Tensor | None,
    normalized_weight: bool,
    batch_index: Tensor,
    start: int,
    stop: int,
    subcenters: int = 1,
) -> _Block:
    """The scores of the classes ``start:stop`` with their target entries set to ``-inf``
    (``batch_index``: ``arange(B)``; ``subcenters``: the weight's rows a class)."""
    block_weight = weight[start * subcenters : stop * subcenters]  # (Cb K, D)
    inverse_norms = column_norms(block_weight).reciprocal_() if normalized_weight else None
    block_bias = None if bias is None else bias[start:stop]
    scores, clamped, signs, nearest = _block_scores(
        rows, block_weight, block_bias, inverse_norms, bound, subcenters=subcenters
    )  # (B, Cb)
    inside = (labels >= start) & (labels < stop)
    target_rows, target_columns = batch_index[inside], labels[inside] - start
    scores[target_rows, target_columns] = -torch.inf
    return _Block(
        start,
        stop,
        inverse_norms,
        scores,
        clamped,
        signs,
        target_rows,
        target_columns,
        nearest,
    )


def _class_blocks(
    rows: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    bound: Tensor | None,
    normalized_weight: bool,
    block: int,
    subcenters: int = 1,
) -> Iterator[_Block]:
    """The classes in blocks of ``block``, each with its non-target scores: the one block loop
    of the forward pass and of the backward pass (which recomputes the scores).

    A block's (B, Cb) scores are referenced by the yielded :class:`_Block` only, so a caller
    that drops it before asking for the next block holds one (B, Cb) buffer at a time.

    Args:
        rows, weight, bias, labels: as for :func:`fused_margin_cross_entropy`.
        bound: (B, 1) the clamp bound per row (normalised weights), or None.
        normalized_weight: whether the scores divide by the weight norms.
        block: classes per block (>= 1).
        subcenters: the weight's rows a class (K; ``weight`` is (C K, D)).
    """
    batch_index = torch.arange(rows.shape[0], device=rows.device)
    num_classes = weight.shape[0] // subcenters
    for start in range(0, num_classes, block):
        stop = min(start + block, num_classes)
        yield _score_block(
            rows,
            weight,
            bias,
            labels,
            bound,
            normalized_weight,
            batch_index,
            start,
            stop,
            subcenters,
        )


def _modulate_rows(
    scores: Tensor,
    modulation: _Modulation,
    rows: slice,
    targets: tuple[Tensor, Tensor],
    buffers: list[Tensor],
) -> None:
    """CurricularFace's logits ``r N(t, z / r)`` of some rows of a block, with arithmetic
    masks only (a float compare and products: ``torch.where`` and bool masks cost several
    times more on the CPU).

    With ``c = z / r`` and ``hard`` 1 where ``c > boundary`` (0 elsewhere and at the targets),
    ``q = hard (t - 1 + c)`` and the logit is ``z (1 + q)``: ``z (t + c)`` on a hard
    negative, ``z`` itself otherwise.

    Args:
        scores: (r, Cb) the rows' plain scores ``z``, their target entries 0 (finite).
        modulation: the modulation; ``rows`` picks the rows' boundaries and radii.
        targets: the target entries within the rows, (T,) rows and (T,) columns.
        buffers: (r, Cb) each, filled with ``c`` (0 for a row without a direction),
            ``hard``, ``q`` and the modulated logits (0 at the targets).
    """
    cosine, hard, excess, logits = buffers
    torch.mul(scores, modulation.inverse_radius[rows], out=cosine)
    torch.gt(cosine, modulation.boundary[rows], out=hard)
    hard[targets] = 0.0
    torch.add(cosine, modulation.t - 1.0, out=excess).mul_(hard)
    torch.addcmul(scores, scores, excess, out=logits)


def _row_targets(target_column: Tensor, rows: slice) -> tuple[Tensor, Tensor]:
    """The target entries of some rows of a block: their rows (within ``rows``) and columns,
    from ``target_column`` (B,), each row's target column or -1."""
    has_target = (target_column[rows] >= 0).nonzero().squeeze(1)
    return has_target, target_column[rows][has_target]


def _target_columns(batch: int, target_rows: Tensor, target_columns: Tensor) -> Tensor:
    """(B,) each row's target column within a block, -1 for a row whose label is elsewhere."""
    column = torch.full((batch,), -1, dtype=torch.long, device=target_rows.device)
    column[target_rows] = target_columns
    return column


def _modulated_maximum(
    scores: Tensor, modulation: _Modulation, target_rows: Tensor, target_columns: Tensor
) -> Tensor:
    """Overwrite a block's scores (target entries ``-inf``, which stay so) with their
    modulated logits (:func:`_modulate_rows`), a few rows at a time, and return their (B,)
    row maxima."""
    batch, width = scores.shape
    step = _row_step(batch, width)
    buffers = [scores.new_empty(step, width) for _ in range(4)]
    target_column = _target_columns(batch, target_rows, target_columns)
    maxima = scores.new_empty(batch)
    for start in range(0, batch, step):
        rows = slice(start, min(start + step, batch))
        block, targets = scores[rows], _row_targets(target_column, rows)
        views = [buffer[: len(block)] for buffer in buffers]
        block[targets] = 0.0
        _modulate_rows(block, modulation, rows, targets, views)
        block.copy_(views[3])
        block[targets] = -torch.inf
        torch.amax(block, dim=1, out=maxima[rows])
    return maxima


def _row_exponentials(
    scores: Tensor,
    exponentials: Tensor,
    buffers: list[Tensor],
    maximum: Tensor,
    extra: Tensor | None,
    modulation: _Modulation | None,
    rows: slice,
    targets: tuple[Tensor, Tensor],
) -> None:
    """``exp(z - maximum)`` of some rows of a block into ``exponentials`` (targets 0); with a
    modulation ``exp(z' - maximum)``, with ``c``, ``hard`` and ``q`` of
    :func:`_modulate_rows` left in ``buffers``.

    With ``extra`` (the forward pass's one block) each row's shift is first raised in place
    to the row's largest modulated logit, and ``extra[rows]`` rescaled with it: one pass
    over the block instead of a pass for the maxima and another for the exponentials.

    Args:
        scores: (r, Cb) the rows' plain scores, target entries 0.
        exponentials: (r, Cb) output.
        buffers: (r, Cb) each, for ``c``, ``hard`` and ``q``.
        maximum, extra: (B,) the shift, and the partition's part outside the block or None.
        modulation, rows, targets: as for :func:`_modulate_rows` (``modulation`` or None).
    """
    if modulation is None:
        torch.sub(scores, maximum[rows].unsqueeze(1), out=exponentials).exp_()
        exponentials[targets] = 0.0
        return
    _modulate_rows(scores, modulation, rows, targets, [*buffers, exponentials])
    exponentials[targets] = -torch.inf
    shift = maximum[rows]
    if extra is not None:
        raised = torch.maximum(shift, exponentials.amax(dim=1))  # (r,)
        extra[rows] *= torch.exp(shift - raised)
        maximum[rows] = shift = raised
    exponentials.sub_(shift.unsqueeze(1)).exp_()


def _modulation_slopes(
    exponentials: Tensor, cosine: Tensor, hard: Tensor, excess: Tensor
) -> Tensor:
    """Turn ``e = exp(z' - maximum)`` into ``e dN / dc`` in place and return the (r,) radial
    coefficients ``sum_j e (N - c dN / dc)``: the logit ``z' = r N(t, c)`` has the gradient
    ``d z' / d rows_i = (dN / dc) W_j / ||W_j|| + (N - c dN / dc) rows_i / r_i``, where
    ``dN / dc = t + 2c`` and ``N - c dN / dc = -c^2`` on a hard negative (1 and 0 elsewhere).

    Args:
        exponentials: (r, Cb) ``e``.
        cosine, hard, excess: (r, Cb) ``c``, ``hard`` and ``q`` of :func:`_modulate_rows`
            (overwritten).
    """
    hard_cosine = cosine.mul_(hard)  # hard c
    radial = torch.mul(hard_cosine, hard_cosine, out=hard).mul_(exponentials).sum(dim=1)
    exponentials.addcmul_(exponentials, excess.add_(hard_cosine))  # e (1 + q + hard c)
    return radial.neg_()


def _exponentials(
    scores: Tensor,
    maximum: Tensor,
    target_rows: Tensor,
    target_columns: Tensor,
    clamped: Tensor | None,
    signs: Tensor | None,
    bound: Tensor,
    *,
    partition: Tensor | None = None,
    extra: Tensor | None = None,
    nearest: Tensor | None = None,
    subcenters: int = 1,
    modulation: _Modulation | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``exp(z - maximum)`` in place, with the weight-normalisation statistic on the way.

    The weight gradient of ``z_ij = rows_i . W_j / ||W_j||`` has the radial part
    ``-z_ij W_j / ||W_j||^2``; weighted by the softmax it needs
    ``u_j = sum_i z_ij exp(z_ij - maximum_i) / partition_i`` over the non-target, unclamped
    entries. It is accumulated while both ``z`` and its exponential exist, a few rows at a
    time through a small reused work buffer, so no second (B, Cb) buffer is allocated.

    With sub-centres ``u`` is split by arg-max sub-centre; with a modulation (of ``z'``,
    :func:`_row_exponentials`) the buffer keeps ``e dN/dc``, ``u`` sums ``z e dN/dc`` and
    radial coefficients are returned (:func:`_modulation_slopes`, :func:`_clamped_radial`).

    Args:
        scores: (B, Cb) block scores, target entries ``-inf``; overwritten with the
            exponentials (target entries 0).
        maximum: (B,) the log-sum-exp shift (raised in place with a modulation and
            ``extra``: :func:`_row_exponentials`).
        target_rows, target_columns: (T,) the block's target entries.
        clamped, signs: the block's clamped entries (K, 2) and their sides (K,), or None.
        bound: (B, 1) the clamp bound per row (the clamped value is ``signs * bound``).
        partition: (B,) ``sum_j exp(z_ij - maximum_i)`` over all logits, if known; else
        extra: (B,) the part of that sum outside this block's scores (target, virtual).
        nearest, subcenters: (B, Cb) each entry's arg-max sub-centre (or None) and K.
        modulation: CurricularFace's modulation, or None.

    Returns:
        (B,) row sums, the (Cb K,) ``u`` of each weight row, (B,) radial coefficients or None.
    """
    batch, width = scores.shape
    step = _row_step(batch, width)
    work = scores.new_empty(step, width)
    mask = None if nearest is None else torch.empty_like(work)
    buffers = [] if modulation is None else [torch.empty_like(work) for _ in range(3)]
    row_sums = scores.new_empty(batch)
    statistic = scores.new_zeros(width, subcenters)  # (Cb, K): u of each weight row
    radial = None if modulation is None else scores.new_empty(batch)
    target_column = _target_columns(batch, target_rows, target_columns)
    assert partition is not None or extra is not None
    known = partition if partition is not None else extra.clone()  # type: ignore[union-attr]
    weights = scores.new_empty(batch)
    for start in range(0, batch, step):
        rows = slice(start, min(start + step, batch))
        block, targets = scores[rows], _row_targets(target_column, rows)  # (r, Cb) view
        exponentials, views = work[: len(block)], [buffer[: len(block)] for buffer in buffers]
        block[targets] = 0.0  # -inf * 0 otherwise
        outside = None if partition is not None else known  # a modulation raises maximum
        _row_exponentials(block, exponentials, views, maximum, outside, modulation, rows, targets)
        torch.sum(exponentials, dim=1, out=row_sums[rows])
        if partition is None:  # the part outside the block, completed row by row
            known[rows] += row_sums[rows]
        weights[rows] = known[rows].reciprocal()
        if radial is not None:
            radial[rows] = _modulation_slopes(exponentials, *views)
        nearest_rows = None if nearest is None else nearest[rows]
        _add_statistic(statistic, block.mul_(exponentials), weights[rows], nearest_rows, mask)
        block.copy_(exponentials)
    if clamped is not None and signs is not None:  # no weight term: out of u
        entries = (clamped[:, 0], clamped[:, 1])
        values = signs * bound[entries[0], 0] * scores[entries] * weights[entries[0]]
        slots = entries[1] * subcenters + (0 if nearest is None else nearest[entries].long())
        statistic.view(-1).index_put_((slots,), -values, accumulate=True)
        if modulation is not None and radial is not None:
            _clamped_radial(scores, entries, signs, modulation, radial)
    return row_sums, statistic.view(-1), radial


def _add_statistic(
    statistic: Tensor,
    products: Tensor,
    weights: Tensor,
    nearest: Tensor | None,
    mask: Tensor | None,
) -> None:
    """``statistic[j, k] += sum_i weights_i products_ij`` over the entries whose arg-max
    sub-centre is k (every entry, k = 0, for one row a class).

    Args:
        statistic: (Cb, K) accumulated into.
        products: (r, Cb) ``z e`` of some rows (target entries 0).
        weights: (r,) their ``1 / partition``.
        nearest: (r, Cb) their arg-max sub-centres, or None.
        mask: (>= r, Cb) work buffer, with ``nearest``.
    """
    if nearest is None or mask is None:
        statistic[:, 0].addmv_(products.t(), weights)
        return
    mask = mask[: len(products)]
    for k in range(statistic.shape[1]):
        torch.eq(nearest, k, out=mask)
        statistic[:, k].addmv_(mask.mul_(products).t(), weights)


def _clamped_radial(
    exponentials: Tensor,
    entries: tuple[Tensor, Tensor],
    signs: Tensor,
    modulation: _Modulation,
    radial: Tensor,
) -> None:
    """Correct the radial coefficients of a modulated block for its clamped entries, and
    zero those entries: a clamped cosine ``+-1`` makes the logit ``r N(t, +-1)``, whose
    gradient is ``N(t, +-1) rows_i / r_i`` alone (no product term).

    Args:
        exponentials: (B, Cb) the block's ``exp(z' - maximum) dN / dc``.
        entries: the clamped entries' rows and columns, (K,) each.
        signs: (K,) their sides, +-1.
        modulation: the modulation.
        radial: (B,) the block's radial coefficients, corrected in place.
    """
    hard = signs > modulation.boundary[entries[0], 0]  # (K,)
    slope = torch.where(hard, modulation.t + 2.0 * signs, 1.0)
    value = torch.where(hard, signs * (modulation.t + signs), signs)  # N(t, +-1)
    # the slopes counted -c^2 e = -e for a hard one: replaced by e N(t, +-1)
    correction = exponentials[entries] / slope * (value + hard.to(value.dtype))
    radial.index_put_((entries[0],), correction, accumulate=True)
    exponentials[entries] = 0.0


def _plain_target_score(
    rows: Tensor, weight: Tensor, bias: Tensor | None, target_rows: Tensor, bound: Tensor | None
) -> Tensor:
    """The (B,) label's score without margin, as the non-target scores are computed:
    ``rows_i . W_y / ||W_y||`` clamped to ``+-bound_i`` (normalised weights, ``bound`` given),
    else ``rows_i . W_y + b_y``; ``target_rows`` (B,) are the rows ``W_y`` of ``weight``
    (the labels, or each label's nearest sub-centre)."""
    target_weight = weight[target_rows]  # (B, D)
    score = (rows * target_weight).sum(dim=1)  # (B,)
    if bound is not None:
        bound = bound.squeeze(1)
        return torch.minimum(torch.maximum(score / column_norms(target_weight), -bound), bound)
    return score if bias is None else score + bias[target_rows]


def _nearest_target_rows(rows: Tensor, weight: Tensor, labels: Tensor, subcenters: int) -> Tensor:
    """(B,) the row of ``weight`` of each label's nearest sub-centre, ``y K + k``, with ``k``
    the arg-max of ``rows_i . W_yk / ||W_yk||`` over the K sub-centres (ties: the lowest k),
    from a (B, K, D) gather; ``labels`` themselves for one row a class."""
    if subcenters == 1:
        return labels
    candidates = weight.unflatten(0, (-1, subcenters))[labels]  # (B, K, D)
    inverse = inverse_column_norms(candidates.flatten(0, 1)).view(-1, subcenters)  # (B, K)
    scores = torch.einsum("bkd,bd->bk", candidates, rows) * inverse  # (B, K)
    return labels * subcenters + scores.argmax(dim=1)


def _accumulate_rows(target: Tensor, index: Tensor, values: Tensor) -> None:
    """``target[index[i]] += values[i]`` with repeated indices summed, (C, D) += (B, D)."""
    if index.numel() <= 4096:  # a few small adds beat the (C, D)-wide index_add_ on CPU
        for row, value in zip(index.tolist(), values, strict=True):
            target[row].add_(value)
    else:
        target.index_put_((index,), values, accumulate=True)


class _GradientBlock(NamedTuple):
    """One class block of the backward pass (see :func:`_exponential_blocks`)."""

    start: int
    stop: int
    #: (B, Cb) ``exp(z - maximum)`` (target entries 0; with a modulation, times ``dN/dc``).
    exponentials: Tensor
    #: (Cb K,) ``1 / ||W_j||`` and the statistic ``u`` (normalised weights), else None.
    inverse_norms: Tensor | None
    statistic: Tensor | None
    #: the block's clamped entries (K, 2) with their sides (K,).
    clamped: list[tuple[Tensor, Tensor]]
    #: (B, Cb) each entry's arg-max sub-centre, or None.
    nearest: Tensor | None
    #: (B,) the radial coefficients of a modulation, or None.
    radial: Tensor | None


def _exponential_blocks(
    ctx: Any,
    rows: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    bound: Tensor | None,
    maximum: Tensor,
    partition: Tensor,
) -> Iterator[_GradientBlock]:
    """The backward pass's class blocks (:class:`_GradientBlock`).

    The forward pass's one-block buffer is used, and consumed in place, by the first backward
    pass; another (``retain_graph``), or a run in several blocks, recomputes each block's
    scores through :func:`_class_blocks`.
    """
    exponentials, inverse_norms, statistic, nearest, radial = ctx.buffers
    if exponentials is not None and not ctx.consumed:
        ctx.consumed = True
        ctx.buffers = (None,) * 5
        yield _GradientBlock(
            0,
            weight.shape[0] // ctx.subcenters,
            exponentials,
            inverse_norms,
            statistic,
            ctx.clamped_blocks,
            nearest,
            radial,
        )
        return
    del exponentials, nearest, radial
    parts = _class_blocks(
        rows, weight, bias, labels, bound, ctx.normalized_weight, ctx.block, ctx.subcenters
    )
    for part in parts:
        statistic = radial = None
        if ctx.normalized_weight:
            assert bound is not None
            _, statistic, radial = _exponentials(
                part.scores,
                maximum,
                part.target_rows,
                part.target_columns,
                part.clamped,
                part.signs,
                bound,
                partition=partition,
                nearest=part.nearest,
                subcenters=ctx.subcenters,
                modulation=ctx.modulation,
            )
        else:
            part.scores.sub_(maximum.unsqueeze(1)).exp_()
        clamped = []
        if part.clamped is not None and part.signs is not None:
            clamped.append((part.clamped, part.signs))
        yield _GradientBlock(
            part.start,
            part.stop,
            part.scores,
            part.inverse_norms,
            statistic,
            clamped,
            part.nearest,
            radial,
        )
        del part  # the block's (B, Cb) buffer goes before the next one is allocated


def _subcenter_products(
    block: _GradientBlock,
    block_weight: Tensor,
    subcenters: int,
    row_factor: Tensor,
    scaled_rows: Tensor | None,
    grad_rows: Tensor | None,
    block_grad: Tensor | None,
    correction_scale: Tensor,
) -> None:
    """The two gradient products of a block of sub-centre classes: each entry's gradient
    goes to its arg-max sub-centre, one masked (B, Cb) product per sub-centre k (no
    (B, Cb K) buffer); the sub-centres' rows of the weight and of its gradient are strided
    views (row ``j K + k``).

    Args:
        block: the block (normalised weights: ``inverse_norms``, ``statistic``, ``nearest``).
        block_weight: (Cb K, D) the block's sub-centres.
        subcenters: K.
        row_factor: (B,) ``grad / (B partition_i)``.
        scaled_rows: (B, D) ``rows * row_factor``, with ``block_grad``.
        grad_rows: (B, D) accumulated into, or None.
        block_grad: (Cb K, D) the block's weight gradient, written, or None.
        correction_scale: the factor ``grad / B`` of the weight-normalisation correction.
    """
    assert block.inverse_norms is not None and block.statistic is not None
    assert block.nearest is not None
    by_subcenter = block_weight.unflatten(0, (-1, subcenters))  # (Cb, K, D)
    inverse = block.inverse_norms.view(-1, subcenters)  # (Cb, K)
    gradients = None if block_grad is None else block_grad.unflatten(0, (-1, subcenters))
    masked = torch.empty_like(block.exponentials)
    for k in range(subcenters):
        torch.eq(block.nearest, k, out=masked).mul_(block.exponentials)
        masked.mul_(inverse[:, k].contiguous())
        if grad_rows is not None:
            grad_rows.addcmul_(masked @ by_subcenter[:, k], row_factor.unsqueeze(1))
        if gradients is not None:
            assert scaled_rows is not None
            torch.mm(masked.t(), scaled_rows, out=gradients[:, k])
    if block_grad is not None:  # d z / d W_jk's radial part, as for one row a class
        coefficient = block.statistic * block.inverse_norms.square() * correction_scale
        block_grad.addcmul_(block_weight, coefficient.unsqueeze(1), value=-1.0)


def _class_gradients(
    ctx: Any,
    rows: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    bound: Tensor | None,
    maximum: Tensor,
    partition: Tensor,
    grad_loss: Tensor,
    gradients: tuple[Tensor | None, Tensor | None, Tensor | None],
) -> None:
    """The class blocks' part of the backward pass (the one of the whole and the sharded
    Functions): accumulates into ``grad_rows`` (B, D) and writes ``grad_weight`` (C K, D)
    and ``grad_bias`` (C,) (each or None) the non-target logits' gradients, from
    ``exp(z - maximum) / partition`` ((B,) each) and ``grad_loss / B``; the target entries
    are left to the caller. ``ctx`` holds the pass's settings (see :func:`_exponential_blocks`).
    """
    grad_rows, grad_weight, grad_bias = gradients
    batch, subcenters = rows.shape[0], ctx.subcenters
    row_factor = grad_loss / (batch * partition)  # (B,)
    with torch.no_grad():
        scaled_rows = rows * row_factor.unsqueeze(1) if grad_weight is not None else None
        direction = None
        if bound is not None:  # d ||rows_i|| / d rows_i, for the radial terms
            direction = rows / bound.clamp_min(torch.finfo(rows.dtype).tiny)
        blocks = _exponential_blocks(ctx, rows, weight, bias, labels, bound, maximum, partition)
        for part in blocks:
            start, stop, exponentials, inverse_norms = part[:4]
            block_weight = weight[start * subcenters : stop * subcenters]  # (Cb K, D)
            # Clamped cosines (z = +-||rows_i||): no gradient to the weight; the radial
            # one d z / d rows_i = +-rows_i / ||rows_i|| remains (a modulated block has
            # counted its clamped entries in its radial coefficients and zeroed them).
            for clamped, signs in part.clamped:
                values = exponentials[clamped[:, 0], clamped[:, 1]]  # (K,)
                exponentials[clamped[:, 0], clamped[:, 1]] = 0.0
                if grad_rows is not None:
                    assert direction is not None  # clamps need normalised weights
                    radial = torch.zeros_like(maximum).index_put_(
                        (clamped[:, 0],), values * signs, accumulate=True
                    )  # (B,)
                    grad_rows.addcmul_(direction, (radial * row_factor).unsqueeze(1))
            if part.radial is not None and grad_rows is not None:
                assert direction is not None
                grad_rows.addcmul_(direction, (part.radial * row_factor).unsqueeze(1))
            if grad_bias is not None:
                torch.mv(exponentials.t(), row_factor, out=grad_bias[start:stop])
            block_grad = None
            if grad_weight is not None:
                block_grad = grad_weight[start * subcenters : stop * subcenters]
            if part.nearest is not None:
                _subcenter_products(
                    part,
                    block_weight,
                    subcenters,
                    row_factor,
                    scaled_rows,
                    grad_rows,
                    block_grad,
                    grad_loss / batch,
                )
                del exponentials, part
                continue
            if inverse_norms is not None:
                exponentials.mul_(inverse_norms)
            if grad_rows is not None:
                grad_rows.addcmul_(exponentials @ block_weight, row_factor.unsqueeze(1))
            if block_grad is not None:
                assert scaled_rows is not None  # made with grad_weight
                torch.mm(exponentials.t(), scaled_rows, out=block_grad)
                if inverse_norms is not None:
                    assert part.statistic is not None  # made with inverse_norms
                    # d z_ij / d W_j = rows_i / ||W_j|| - z_ij W_j / ||W_j||^2:
                    # the second term is (grad / B) u_j W_j / ||W_j||^2.
                    coefficient = part.statistic * inverse_norms.square() * (grad_loss / batch)
                    block_grad.addcmul_(block_weight, coefficient.unsqueeze(1), value=-1.0)
            del exponentials, part


class _FusedMarginCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of margin logits; see the module docstring."""

    @staticmethod
    def forward(
        ctx,
        rows: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        labels: Tensor,
        target_function: TargetFunction,
        normalized_weight: bool,
        chunk_size: int | None,
        subcenters: int,
        negative_modulation: NegativeModulation | None,
        *target_inputs: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        num_classes = weight.shape[0] // subcenters
        block = num_classes if chunk_size is None else min(chunk_size, num_classes)
        single = block == num_classes

        # The margin: a small graph on the (B, D) rows and the (B, D) target weights (each
        # label's nearest sub-centre: no gradient through the choice).
        with torch.no_grad():
            target_rows = _nearest_target_rows(rows, weight, labels, subcenters)  # (B,)
        rows_leaf = rows.detach().requires_grad_(rows.requires_grad)
        target_weight = weight.detach()[target_rows].requires_grad_(weight.requires_grad)
        input_leaves = [x.detach().requires_grad_(x.requires_grad) for x in target_inputs]  # (B,)
        with torch.enable_grad():
            target_logit, virtual_logit, target_cosine = target_function(
                rows_leaf, target_weight, *input_leaves
            )
            if bias is not None:
                # The target class keeps its bias: z_iy = t_i + b_y (its gradient is added
                # to the bias's in the backward pass).
                target_logit = target_logit + bias.detach()[labels]
        with torch.no_grad():
            target = target_logit.detach()  # (B,)
            virtual = None if virtual_logit is None else virtual_logit.detach()
            bound = modulation = None
            if normalized_weight:
                bound = row_norms(rows)  # (B, 1) |z_ij| <= ||rows_i||: cosines in [-1, 1]
            if negative_modulation is not None:
                assert bound is not None, "a modulation needs normalised weights"
                modulation = _Modulation(
                    negative_modulation.t,
                    negative_modulation.boundary.detach().to(rows.dtype).unsqueeze(1),
                    torch.where(bound > 0, 1.0 / bound, 0.0),
                )
            # Online log-sum-exp over the non-target classes, `block` classes at a time.
            maximum = target if virtual is None else torch.maximum(target, virtual)  # (B,)
            total = torch.zeros_like(maximum)  # (B,) sum_j exp(z_ij - maximum_i), non-target
            if virtual is not None:
                total += torch.exp(virtual - maximum)
            exponentials = inverse_norms = statistic = nearest = radial = None
            rival = torch.full_like(maximum, -torch.inf)  # (B,) largest non-target score
            clamped_blocks: list[tuple[Tensor, Tensor]] = []
            parts = _class_blocks(
                rows, weight, bias, labels, bound, normalized_weight, block, subcenters
            )
            for part in parts:
                scores, inverse_norms = part.scores, part.inverse_norms  # (B, Cb), (Cb K,)
                nearest = part.nearest
                if part.clamped is not None and part.signs is not None:  # set together
                    clamped_blocks.append((part.clamped, part.signs))
                block_rival = scores.amax(dim=1)  # (B,) plain scores: top-1 correctness
                rival = torch.maximum(rival, block_rival)
                if modulation is not None:  # the largest modulated logits: the block is
                    # modulated in place, or (one block, which keeps z for the backward
                    # pass's factors) _exponentials raises the shift row by row
                    block_rival = maximum
                    if not single:
                        block_rival = _modulated_maximum(
                            scores, modulation, part.target_rows, part.target_columns
                        )
                block_maximum = torch.maximum(maximum, block_rival)  # a new tensor
                total.mul_(torch.exp(maximum - block_maximum))
                maximum = block_maximum
                if single and normalized_weight:
                    # One block: keep exp(z - maximum) for the backward pass, and the
                    # statistic of the weight-normalisation correction, while z exists.
                    assert bound is not None  # set for normalised weights
                    shift = maximum.clone()
                    row_sums, statistic, radial = _exponentials(
                        scores,
                        maximum,
                        part.target_rows,
                        part.target_columns,
                        part.clamped,
                        part.signs,
                        bound,
                        extra=total + torch.exp(target - maximum),
                        nearest=nearest,
                        subcenters=subcenters,
                        modulation=modulation,
                    )  # a modulation raises `maximum` in place
                    total.mul_(torch.exp(shift - maximum)).add_(row_sums)
                    exponentials = scores
                else:
                    scores.sub_(maximum.unsqueeze(1)).exp_()
                    total.add_(scores.sum(dim=1))
                    if single:
                        exponentials = scores
            # loss_i = log(1 + total_i exp(maximum_i - t_i)): the log1p form while the target
            # is near the maximum keeps tiny losses exact.
            gap = maximum - target  # (B,) >= 0
            losses = torch.where(
                gap < 30.0,
                torch.log1p(total * torch.exp(gap.clamp_max(30.0))),
                gap + torch.log(total + torch.exp(-gap)),
            )
            loss = losses.mean()
            plain_target = _plain_target_score(rows, weight, bias, target_rows, bound)  # (B,)
            correct = plain_target >= rival

        ctx.block = block
        ctx.normalized_weight = normalized_weight
        ctx.subcenters = subcenters
        ctx.modulation = modulation
        ctx.clamped_blocks = clamped_blocks
        ctx.consumed = False
        ctx.graph = (target_logit, virtual_logit, rows_leaf, target_weight, input_leaves)
        # The (B, C) buffer is consumed in place by the backward pass: kept on ctx, not
        # saved (a saved tensor's in-place change is an autograd error).
        ctx.buffers = (exponentials, inverse_norms, statistic, nearest, radial)
        ctx.save_for_backward(rows, weight, bias, labels, target_rows, maximum, total, bound)
        ctx.mark_non_differentiable(target_cosine, correct)
        return loss, target_cosine.detach(), correct

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_cosine: Tensor, _grad_correct: Tensor):
        rows, weight, bias, labels, target_rows, maximum, total, bound = ctx.saved_tensors
        target_logit, virtual_logit, rows_leaf, target_weight, input_leaves = ctx.graph
        batch = rows.shape[0]
        need_rows, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_rows = torch.zeros_like(rows) if need_rows else None
        grad_bias = torch.empty_like(bias) if (need_bias and bias is not None) else None
        with torch.no_grad():
            # d loss / d z_ij = p_ij / B off the target, p_ij = exp(z_ij - maximum_i) / partition_i.
            # The (B, C) buffer holds exp(z - maximum); the row factor grad / (B partition_i)
            # goes onto the (B, D) operands of the two products instead.
            partition = total + torch.exp(target_logit.detach() - maximum)  # (B,)
            row_factor = grad_loss / (batch * partition)  # (B,)
            # The target (and virtual) logits first, before the (C, D) gradient exists (lower
            # peak memory): d loss / d t_i = (p_iy - 1) / B = -(non-target mass) / B, without
            # cancellation; d loss / d v_i = p_iv / B.
            outputs = [target_logit]
            grads = [-total * row_factor]
            if virtual_logit is not None:
                outputs.append(virtual_logit)
                grads.append(torch.exp(virtual_logit.detach() - maximum) * row_factor)
        target_weight_grad = None
        input_grads: dict[int, Tensor | None] = {}
        leaves = [leaf for leaf in (rows_leaf, target_weight, *input_leaves) if leaf.requires_grad]
        if leaves and target_logit.requires_grad:
            leaf_grads = torch.autograd.grad(
                outputs, leaves, grads, retain_graph=True, allow_unused=True
            )
            for leaf, leaf_grad in zip(leaves, leaf_grads, strict=True):
                if leaf is rows_leaf and grad_rows is not None and leaf_grad is not None:
                    grad_rows.add_(leaf_grad)
                elif leaf is target_weight:
                    target_weight_grad = leaf_grad  # (B, D), added once grad_weight exists
                else:
                    input_grads[id(leaf)] = leaf_grad  # a target input's (B,) gradient
        grad_weight = torch.empty_like(weight) if need_weight else None

        _class_gradients(
            ctx,
            rows,
            weight,
            bias,
            labels,
            bound,
            maximum,
            partition,
            grad_loss,
            (grad_rows, grad_weight, grad_bias),
        )
        with torch.no_grad():
            if grad_bias is not None:
                grad_bias.index_put_((labels,), grads[0], accumulate=True)  # target b_y

        if target_weight_grad is not None and grad_weight is not None:
            _accumulate_rows(grad_weight, target_rows, target_weight_grad)
        extra = [input_grads.get(id(leaf)) for leaf in input_leaves]
        return grad_rows, grad_weight, grad_bias, None, None, None, None, None, None, *extra


def fused_margin_cross_entropy(
    rows: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    target_function: TargetFunction,
    *,
    normalized_weight: bool,
    chunk_size: int | None = None,
    target_inputs: tuple[Tensor, ...] = (),
    subcenters: int = 1,
    modulation: NegativeModulation | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mean cross-entropy over margin logits without materialising them through autograd.

    The logits are ``z_ij = rows_i . W_j / ||W_j||`` (``normalized_weight``, clamped to
    ``+-||rows_i||``, i.e. cosines clamped to ``[-1, 1]``) or ``rows_i . W_j + b_j``, except
    the target entry ``z_iy``, which is ``target_logit_i`` from ``target_function``, plus an
    optional virtual logit per row. With ``subcenters = K`` a class's ``z_ij`` is the largest
    over its K rows of the weight; with a ``modulation`` the non-target ``z_ij`` become
    CurricularFace's ``r_i N(t, z_ij / r_i)``.

    Args:
        rows: (B, D) left operand (``s x / ||x||``, ``x`` ...), float32 or float64.
        weight: (C K, D) raw class weights, same dtype; rows ``j K`` to ``j K + K - 1`` are
            class j's (K = ``subcenters``).
        bias: (C,) or None (unnormalised geometry and K = 1 only).
        labels: (B,) int64 class indices in ``[0, C)``.
        target_function: computes the target logits from
            ``(rows, weight[target rows], *target_inputs)``; the target row of a label is its
            nearest sub-centre (the largest score; the label's row for K = 1).
        normalized_weight: whether the non-target logits use normalised weights.
        chunk_size: classes per block, or None for a single block.
        target_inputs: more per-sample tensors the target logits depend on (differentiable;
            MagFace's magnitudes), passed on to ``target_function``; none by default.
        subcenters: K, the weight's rows a class (sub-centre ArcFace), >= 1; K > 1 needs
            normalised weights.
        modulation: CurricularFace's modulation of the non-target logits
            (:class:`NegativeModulation`; normalised weights), or None.

    Returns:
        loss: scalar mean cross-entropy (differentiable in rows, weight, bias).
        target_cosine: (B,) detached target cosines (for adaptive schedules).
        correct: (B,) bool, whether the label's plain score (no margin) is at least every
            other class's: top-1 correctness from the scores the loss computed anyway.
    """
    if (subcenters > 1 or modulation is not None) and not normalized_weight:
        raise ValueError("subcenters > 1 and modulation need normalized_weight=True")
    loss, target_cosine, correct = _FusedMarginCrossEntropy.apply(
        rows,
        weight,
        bias,
        labels,
        target_function,
        normalized_weight,
        chunk_size,
        subcenters,
        modulation,
        *target_inputs,
    )
    return loss, target_cosine.detach(), correct


class Reduction(Protocol):
    """The two all-reduces the sharded fused pass needs (of a copy of ``tensor``; detached);
    the sharded head's collectives provide them, so this layer needs no process group."""

    def all_max(self, tensor: Tensor) -> Tensor: ...

    def all_sum(self, tensor: Tensor) -> Tensor: ...


def _rescale(old: Tensor, new: Tensor) -> Tensor:
    """``exp(old - new)``, 0 where ``old`` is ``-inf`` (an empty sum, whatever ``new``)."""
    return torch.where(old > -torch.inf, torch.exp(old - new), 0.0)


class _ShardedFusedCrossEntropy(torch.autograd.Function):
    """One rank's share of the fused pass over a class-sharded head; see
    :func:`sharded_fused_cross_entropy`."""

    @staticmethod
    def forward(
        ctx,
        rows: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        target_function: TargetFunction,
        normalized_weight: bool,
        chunk_size: int | None,
        reduction: Reduction,
        subcenters: int,
        negative_modulation: NegativeModulation | None,
        *target_inputs: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        batch, num_classes = rows.shape[0], weight.shape[0] // subcenters
        block = max(1, num_classes if chunk_size is None else min(chunk_size, num_classes))
        owned = (targets >= 0).nonzero().squeeze(1)  # (T,)
        columns = targets[owned]  # (T,)
        with torch.no_grad():  # each held label's nearest sub-centre (its row for K = 1)
            target_rows = _nearest_target_rows(rows[owned], weight, columns, subcenters)
        rows_leaf = rows.detach().requires_grad_(rows.requires_grad)
        target_weight = weight.detach()[target_rows].requires_grad_(weight.requires_grad)
        input_leaves = [x.detach().requires_grad_(x.requires_grad) for x in target_inputs]  # (B,)
        with torch.enable_grad():
            target_logit, virtual_logit, target_cosine = target_function(
                rows_leaf[owned], target_weight, *(leaf[owned] for leaf in input_leaves)
            )  # (T,) each
            if bias is not None:  # the target class keeps its bias
                target_logit = target_logit + bias.detach()[columns]
        with torch.no_grad():
            bound = row_norms(rows) if normalized_weight else None  # (B, 1)
            modulation = None
            if negative_modulation is not None:
                assert bound is not None, "a modulation needs normalised weights"
                modulation = _Modulation(
                    negative_modulation.t,
                    negative_modulation.boundary.detach().to(rows.dtype).unsqueeze(1),
                    torch.where(bound > 0, 1.0 / bound, 0.0),
                )
            # The rank's online log-sum-exp over its non-target classes, then the global one.
            local = rows.new_full((batch,), -torch.inf)  # (B,) the rank's shift
            total = rows.new_zeros(batch)  # (B,) sum_j exp(z_ij - local_i), non-target
            rival = rows.new_full((batch,), -torch.inf)  # (B,) largest non-target score
            parts = _class_blocks(
                rows, weight, bias, targets, bound, normalized_weight, block, subcenters
            )
            for part in parts:
                block_maximum = part.scores.amax(dim=1)  # (B,) plain scores: top-1
                rival = torch.maximum(rival, block_maximum)
                if modulation is not None:  # the block's scores become its logits
                    block_maximum = _modulated_maximum(
                        part.scores, modulation, part.target_rows, part.target_columns
                    )
                block_maximum = torch.maximum(local, block_maximum)
                total.mul_(_rescale(local, block_maximum))
                local = block_maximum
                shift = torch.where(local > -torch.inf, local, 0.0)  # rows of -inf only
                total.add_(part.scores.sub_(shift.unsqueeze(1)).exp_().sum(dim=1))
                del part
            target, virtual = target_logit.detach(), None
            maxima = torch.stack([local, rival])  # (2, B)
            maxima[0, owned] = torch.maximum(maxima[0, owned], target)
            if virtual_logit is not None:
                virtual = virtual_logit.detach()
                maxima[0, owned] = torch.maximum(maxima[0, owned], virtual)
            maximum, rival = reduction.all_max(maxima)
            sums = rows.new_zeros(4, batch)
            sums[0] = total * _rescale(local, maximum)
            if virtual is not None:
                sums[0, owned] += torch.exp(virtual - maximum[owned])
            sums[1, owned] = target
            sums[2, owned] = target_cosine.detach()
            owned_bound = None if bound is None else bound[owned]
            sums[3, owned] = _plain_target_score(
                rows[owned], weight, bias, target_rows, owned_bound
            )
            total, target, cosine, plain_target = reduction.all_sum(sums)
            gap = maximum - target  # (B,) >= 0; the loss as the whole fused pass's
            losses = torch.where(
                gap < 30.0,
                torch.log1p(total * torch.exp(gap.clamp_max(30.0))),
                gap + torch.log(total + torch.exp(-gap)),
            )
        ctx.block, ctx.normalized_weight = block, normalized_weight
        ctx.subcenters, ctx.modulation = subcenters, modulation
        ctx.buffers, ctx.consumed, ctx.clamped_blocks = (None,) * 5, True, []
        ctx.graph = (target_logit, virtual_logit, rows_leaf, target_weight, input_leaves)
        ctx.save_for_backward(
            rows, weight, bias, targets, owned, target_rows, maximum, total, target, bound
        )
        correct = plain_target >= rival
        ctx.mark_non_differentiable(cosine, correct)
        return losses.mean(), cosine, correct

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_cosine: Tensor, _grad_correct: Tensor):
        rows, weight, bias, targets, owned, target_rows = ctx.saved_tensors[:6]
        maximum, total, target, bound = ctx.saved_tensors[6:]
        target_logit, virtual_logit, rows_leaf, target_weight, input_leaves = ctx.graph
        need_rows, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_rows = torch.zeros_like(rows) if need_rows else None
        grad_bias = torch.empty_like(bias) if (need_bias and bias is not None) else None
        with torch.no_grad():
            partition = total + torch.exp(target - maximum)  # (B,) the global normaliser
            row_factor = (grad_loss / (rows.shape[0] * partition))[owned]  # (T,)
            outputs, grads = [target_logit], [-total[owned] * row_factor]
            if virtual_logit is not None:
                outputs.append(virtual_logit)
                grads.append(torch.exp(virtual_logit.detach() - maximum[owned]) * row_factor)
        leaves = [leaf for leaf in (rows_leaf, target_weight, *input_leaves) if leaf.requires_grad]
        found: dict[int, Tensor | None] = {}
        if leaves and target_logit.requires_grad:
            leaf_grads = torch.autograd.grad(
                outputs, leaves, grads, retain_graph=True, allow_unused=True
            )
            found = {id(leaf): value for leaf, value in zip(leaves, leaf_grads, strict=True)}
        rows_grad = found.get(id(rows_leaf))
        if grad_rows is not None and rows_grad is not None:
            grad_rows.add_(rows_grad)
        grad_weight = torch.empty_like(weight) if need_weight else None
        gradients = (grad_rows, grad_weight, grad_bias)
        _class_gradients(
            ctx, rows, weight, bias, targets, bound, maximum, partition, grad_loss, gradients
        )
        with torch.no_grad():
            if grad_bias is not None:
                grad_bias.index_put_((targets[owned],), grads[0], accumulate=True)
        target_weight_grad = found.get(id(target_weight))
        if target_weight_grad is not None and grad_weight is not None:
            _accumulate_rows(grad_weight, target_rows, target_weight_grad)
        extra = [found.get(id(leaf)) for leaf in input_leaves]
        return grad_rows, grad_weight, grad_bias, *(None,) * 7, *extra


def sharded_fused_cross_entropy(
    rows: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    target_function: TargetFunction,
    reduction: Reduction,
    *,
    normalized_weight: bool,
    chunk_size: int | None = None,
    target_inputs: tuple[Tensor, ...] = (),
    subcenters: int = 1,
    modulation: NegativeModulation | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One rank's share of :func:`fused_margin_cross_entropy` when the classes are split
    over ranks (Partial FC, An et al., ICCV-W 2021): the same loss on every rank, with no
    (B, C_r) autograd graph.

    The rank scores the gathered batch against its own classes in blocks of ``chunk_size``
    (an online log-sum-exp keeping (B,) statistics), computes the margin target logits of
    the rows whose class it holds, and combines the normaliser with two all-reduces (the
    row maxima, then the rescaled sums with the owners' target logits, target cosines and
    plain target scores): ``loss_i = log(1 + S_i exp(M_i - t_i))`` with the global shift
    ``M_i`` and non-target sum ``S_i``. The backward pass recomputes each block's scores.
    Sub-centres keep a class's K rows on one rank; CurricularFace's modulation needs the
    (B,) boundaries of the whole batch on every rank.

    The gradient returned for ``rows`` and ``target_inputs`` is this rank's part (its
    classes' terms); the caller sums it over the ranks. ``weight`` and ``bias`` get their
    whole gradient.

    Args:
        rows: (B, D) the gathered batch's rows (``s x / ||x||``, ``x`` ...).
        weight: (C_r, D) the rank's class weights; bias: (C_r,) or None.
        targets: (B,) int64 each row's class index in ``weight``, -1 where another rank
            holds it (every row's class is held by exactly one rank).
        target_function: as for :func:`fused_margin_cross_entropy`.
        reduction: the all-reduces over the ranks (:class:`Reduction`).
        normalized_weight, chunk_size, target_inputs, subcenters, modulation: as for
            :func:`fused_margin_cross_entropy` (``target_inputs`` (B,) each; ``weight`` is
            (C_r K, D) for K sub-centres).

    Returns:
        loss: the scalar global mean cross-entropy (the same on every rank).
        target_cosine: (B,) detached target cosines of the whole batch.
        correct: (B,) bool, whether each label's plain score is at least every other's.
    """
    return _ShardedFusedCrossEntropy.apply(
        rows,
        weight,
        bias,
        targets,
        target_function,
        normalized_weight,
        chunk_size,
        reduction,
        subcenters,
        modulation,
        *target_inputs,
    )
