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

Cosines are clamped to ``[-1, 1]`` as in the reference (gradient zero where the clamp bites);
the (rare) clamped entries are found from the per-row extrema, so the common case pays no
mask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor

from marginkit.losses.functional import direction_floor, row_norms

__all__ = [
    "TargetFunction",
    "column_norms",
    "fused_margin_cross_entropy",
    "inverse_column_norms",
]

TargetFunction = Callable[..., tuple[Tensor, Tensor | None, Tensor]]
"""``(rows (B, D), target_weight (B, D), *target_inputs) -> (target_logit (B,),
virtual_logit (B,) | None, target_cosine (B,))``, differentiable in every argument; the
``target_inputs`` are per-sample tensors the margin also depends on (MagFace's magnitudes)."""


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


def _block_scores(
    rows: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    inverse_norms: Tensor | None,
    bound: Tensor | None,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Scores of one class block and the clamped entries.

    Args:
        rows: (B, D) left operand (``s x_hat``, ``x`` ...).
        weight: (Cb, D) the block's raw class weights.
        bias: (Cb,) or None.
        inverse_norms: (Cb,) ``1 / ||W_j||`` for the normalised-weight geometries, or None.
        bound: (B, 1) the largest allowed magnitude per row (the radial factor), or None.
        out: optional (B, Cb) buffer to write into.

    Returns:
        scores: (B, Cb) ``rows . W_j (/ ||W_j||) (+ b_j)``, clamped to ``[-bound, bound]``.
        clamped: (K, 2) indices of the entries the clamp changed, or None.
        signs: (K,) +-1, the side each clamped entry was clamped to, or None.
    """
    if bias is not None:
        scores = torch.addmm(bias, rows, weight.t(), out=out)  # (B, Cb)
    else:
        scores = torch.mm(rows, weight.t(), out=out)  # (B, Cb)
    if inverse_norms is not None:
        scores.mul_(inverse_norms)
    if bound is None:
        return scores, None, None
    over = scores.amax(dim=1, keepdim=True) > bound
    under = scores.amin(dim=1, keepdim=True) < -bound
    if not bool((over | under).any()):
        return scores, None, None
    high = scores > bound
    low = scores < -bound
    clamped = (high | low).nonzero()  # (K, 2)
    signs = high[clamped[:, 0], clamped[:, 1]].to(scores.dtype) * 2.0 - 1.0  # (K,)
    torch.maximum(scores, -bound, out=scores)
    torch.minimum(scores, bound, out=scores)
    return scores, clamped, signs


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
) -> _Block:
    """The scores of the classes ``start:stop`` with their target entries set to ``-inf``
    (``batch_index``: ``arange(B)``)."""
    block_weight = weight[start:stop]  # (Cb, D)
    inverse_norms = column_norms(block_weight).reciprocal_() if normalized_weight else None
    scores, clamped, signs = _block_scores(
        rows, block_weight, None if bias is None else bias[start:stop], inverse_norms, bound
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
    )


def _class_blocks(
    rows: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    bound: Tensor | None,
    normalized_weight: bool,
    block: int,
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
    """
    batch_index = torch.arange(rows.shape[0], device=rows.device)
    for start in range(0, weight.shape[0], block):
        stop = min(start + block, weight.shape[0])
        yield _score_block(
            rows, weight, bias, labels, bound, normalized_weight, batch_index, start, stop
        )


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
) -> tuple[Tensor, Tensor]:
    """``exp(z - maximum)`` in place, with the weight-normalisation statistic on the way.

    The weight gradient of ``z_ij = rows_i . W_j / ||W_j||`` has the radial part
    ``-z_ij W_j / ||W_j||^2``; weighted by the softmax it needs
    ``u_j = sum_i z_ij exp(z_ij - maximum_i) / partition_i`` over the non-target, unclamped
    entries. It is accumulated while both ``z`` and its exponential exist, a few rows at a
    time through a small reused work buffer, so no second (B, Cb) buffer is allocated.

    Args:
        scores: (B, Cb) block scores, target entries ``-inf``; overwritten with the
            exponentials (target entries 0).
        maximum: (B,) the log-sum-exp shift.
        target_rows, target_columns: (T,) the block's target entries.
        clamped, signs: the block's clamped entries (K, 2) and their sides (K,), or None.
        bound: (B, 1) the clamp bound per row (the clamped value is ``signs * bound``).
        partition: (B,) ``sum_j exp(z_ij - maximum_i)`` over all logits, if known; else
        extra: (B,) the part of that sum outside this block's scores (target, virtual).

    Returns:
        The (B,) row sums of the exponentials and the (Cb,) statistic ``u``.
    """
    batch, width = scores.shape
    step = max(1, min(batch, (1 << 21) // max(1, width)))  # about 8 MB of float32 rows
    work = scores.new_empty(step, width)
    row_sums = scores.new_empty(batch)
    statistic = scores.new_zeros(width)
    target_column = torch.full((batch,), -1, dtype=torch.long, device=scores.device)
    target_column[target_rows] = target_columns
    weights = scores.new_empty(batch)
    for start in range(0, batch, step):
        stop = min(start + step, batch)
        block = scores[start:stop]  # (r, Cb) view
        exponentials = work[: stop - start]
        torch.sub(block, maximum[start:stop].unsqueeze(1), out=exponentials).exp_()
        torch.sum(exponentials, dim=1, out=row_sums[start:stop])
        if partition is None:
            assert extra is not None
            weights[start:stop] = (row_sums[start:stop] + extra[start:stop]).reciprocal()
        else:
            weights[start:stop] = partition[start:stop].reciprocal()
        has_target = (target_column[start:stop] >= 0).nonzero().squeeze(1)
        block[has_target, target_column[start:stop][has_target]] = 0.0  # -inf * 0 otherwise
        statistic.addmv_(block.mul_(exponentials).t(), weights[start:stop])
        block.copy_(exponentials)
    if clamped is not None and signs is not None:
        rows, columns = clamped[:, 0], clamped[:, 1]
        values = signs * bound[rows, 0] * scores[rows, columns] * weights[rows]
        statistic.index_put_((columns,), -values, accumulate=True)
    return row_sums, statistic


def _plain_target_score(
    rows: Tensor, weight: Tensor, bias: Tensor | None, labels: Tensor, bound: Tensor | None
) -> Tensor:
    """The (B,) label's score without margin, as the non-target scores are computed:
    ``rows_i . W_y / ||W_y||`` clamped to ``+-bound_i`` (normalised weights, ``bound`` given),
    else ``rows_i . W_y + b_y``."""
    target_weight = weight[labels]  # (B, D)
    score = (rows * target_weight).sum(dim=1)  # (B,)
    if bound is not None:
        bound = bound.squeeze(1)
        return torch.minimum(torch.maximum(score / column_norms(target_weight), -bound), bound)
    return score if bias is None else score + bias[labels]


def _accumulate_rows(target: Tensor, index: Tensor, values: Tensor) -> None:
    """``target[index[i]] += values[i]`` with repeated indices summed, (C, D) += (B, D)."""
    if index.numel() <= 4096:  # a few small adds beat the (C, D)-wide index_add_ on CPU
        for row, value in zip(index.tolist(), values, strict=True):
            target[row].add_(value)
    else:
        target.index_put_((index,), values, accumulate=True)


def _exponential_blocks(
    ctx: Any,
    rows: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    labels: Tensor,
    bound: Tensor | None,
    maximum: Tensor,
    partition: Tensor,
) -> Iterator[tuple[int, int, Tensor, Tensor | None, Tensor | None, list[tuple[Tensor, Tensor]]]]:
    """The backward pass's class blocks: ``start``, ``stop``, the (B, Cb) buffer
    ``exp(z - maximum)`` (target entries 0), the block's ``1 / ||W_j||`` and statistic ``u``
    (normalised weights, else None) and its clamped entries with their sides.

    The forward pass's one-block buffer is used, and consumed in place, by the first backward
    pass; another (``retain_graph``), or a run in several blocks, recomputes each block's
    scores through :func:`_class_blocks`.
    """
    exponentials, inverse_norms, statistic = ctx.buffers
    if exponentials is not None and not ctx.consumed:
        ctx.consumed = True
        ctx.buffers = (None, None, None)
        yield 0, weight.shape[0], exponentials, inverse_norms, statistic, ctx.clamped_blocks
        return
    del exponentials
    parts = _class_blocks(rows, weight, bias, labels, bound, ctx.normalized_weight, ctx.block)
    for part in parts:
        statistic = None
        if ctx.normalized_weight:
            assert bound is not None
            _, statistic = _exponentials(
                part.scores,
                maximum,
                part.target_rows,
                part.target_columns,
                part.clamped,
                part.signs,
                bound,
                partition=partition,
            )
        else:
            part.scores.sub_(maximum.unsqueeze(1)).exp_()
        clamped = []
        if part.clamped is not None and part.signs is not None:
            clamped.append((part.clamped, part.signs))
        yield part.start, part.stop, part.scores, part.inverse_norms, statistic, clamped
        del part  # the block's (B, Cb) buffer goes before the next one is allocated


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
        *target_inputs: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        num_classes = weight.shape[0]
        block = num_classes if chunk_size is None else min(chunk_size, num_classes)
        single = block == num_classes

        # The margin: a small graph on the (B, D) rows and the (B, D) target weights.
        rows_leaf = rows.detach().requires_grad_(rows.requires_grad)
        target_weight = weight.detach()[labels].requires_grad_(weight.requires_grad)  # (B, D)
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
            bound = None
            if normalized_weight:
                bound = row_norms(rows)  # (B, 1) |z_ij| <= ||rows_i||: cosines in [-1, 1]
            # Online log-sum-exp over the non-target classes, `block` classes at a time.
            maximum = target if virtual is None else torch.maximum(target, virtual)  # (B,)
            total = torch.zeros_like(maximum)  # (B,) sum_j exp(z_ij - maximum_i), non-target
            if virtual is not None:
                total += torch.exp(virtual - maximum)
            exponentials = inverse_norms = statistic = None
            rival = torch.full_like(maximum, -torch.inf)  # (B,) largest non-target score
            clamped_blocks: list[tuple[Tensor, Tensor]] = []
            for part in _class_blocks(rows, weight, bias, labels, bound, normalized_weight, block):
                scores, inverse_norms = part.scores, part.inverse_norms  # (B, Cb), (Cb,)
                if part.clamped is not None and part.signs is not None:  # set together
                    clamped_blocks.append((part.clamped, part.signs))
                block_rival = scores.amax(dim=1)  # (B,)
                rival = torch.maximum(rival, block_rival)
                block_maximum = torch.maximum(maximum, block_rival)
                total.mul_(torch.exp(maximum - block_maximum))
                maximum = block_maximum
                if single and normalized_weight:
                    # One block: keep exp(z - maximum) for the backward pass, and the
                    # statistic of the weight-normalisation correction, while z exists.
                    assert bound is not None  # set for normalised weights
                    row_sums, statistic = _exponentials(
                        scores,
                        maximum,
                        part.target_rows,
                        part.target_columns,
                        part.clamped,
                        part.signs,
                        bound,
                        extra=total + torch.exp(target - maximum),
                    )
                    total.add_(row_sums)
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
            correct = _plain_target_score(rows, weight, bias, labels, bound) >= rival  # (B,)

        ctx.block = block
        ctx.normalized_weight = normalized_weight
        ctx.clamped_blocks = clamped_blocks
        ctx.consumed = False
        ctx.graph = (target_logit, virtual_logit, rows_leaf, target_weight, input_leaves)
        # The (B, C) buffer is consumed in place by the backward pass: kept on ctx, not
        # saved (a saved tensor's in-place change is an autograd error).
        ctx.buffers = (exponentials, inverse_norms, statistic)
        ctx.save_for_backward(rows, weight, bias, labels, maximum, total, bound)
        ctx.mark_non_differentiable(target_cosine, correct)
        return loss, target_cosine.detach(), correct

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_cosine: Tensor, _grad_correct: Tensor):
        rows, weight, bias, labels, maximum, total, bound = ctx.saved_tensors
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

        with torch.no_grad():
            scaled_rows = rows * row_factor.unsqueeze(1) if grad_weight is not None else None
            blocks = _exponential_blocks(ctx, rows, weight, bias, labels, bound, maximum, partition)
            for start, stop, exponentials, inverse_norms, statistic, clamped_list in blocks:
                block_weight = weight[start:stop]  # (Cb, D)
                # Clamped cosines (z = +-||rows_i||): no gradient to the weight; the radial
                # one d z / d rows_i = +-rows_i / ||rows_i|| remains.
                for clamped, signs in clamped_list:
                    values = exponentials[clamped[:, 0], clamped[:, 1]]  # (K,)
                    exponentials[clamped[:, 0], clamped[:, 1]] = 0.0
                    if grad_rows is not None:
                        radial = torch.zeros_like(maximum).index_put_(
                            (clamped[:, 0],), values * signs, accumulate=True
                        )  # (B,)
                        direction = rows / bound.clamp_min(torch.finfo(rows.dtype).tiny)
                        grad_rows.addcmul_(direction, (radial * row_factor).unsqueeze(1))
                if grad_bias is not None:
                    torch.mv(exponentials.t(), row_factor, out=grad_bias[start:stop])
                if inverse_norms is not None:
                    exponentials.mul_(inverse_norms)
                if grad_rows is not None:
                    grad_rows.addcmul_(exponentials @ block_weight, row_factor.unsqueeze(1))
                if grad_weight is not None:
                    assert scaled_rows is not None  # made with grad_weight
                    block_grad = grad_weight[start:stop]  # (Cb, D)
                    torch.mm(exponentials.t(), scaled_rows, out=block_grad)
                    if inverse_norms is not None:
                        assert statistic is not None  # made with inverse_norms
                        # d z_ij / d W_j = rows_i / ||W_j|| - z_ij W_j / ||W_j||^2:
                        # the second term is (grad / B) u_j W_j / ||W_j||^2.
                        coefficient = statistic * inverse_norms.square() * (grad_loss / batch)
                        block_grad.addcmul_(block_weight, coefficient.unsqueeze(1), value=-1.0)
                del exponentials
            if grad_bias is not None:
                grad_bias.index_put_((labels,), grads[0], accumulate=True)  # target b_y

        if target_weight_grad is not None and grad_weight is not None:
            _accumulate_rows(grad_weight, labels, target_weight_grad)
        extra = [input_grads.get(id(leaf)) for leaf in input_leaves]
        return grad_rows, grad_weight, grad_bias, None, None, None, None, *extra


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
) -> tuple[Tensor, Tensor, Tensor]:
    """Mean cross-entropy over margin logits without materialising them through autograd.

    The logits are ``z_ij = rows_i . W_j / ||W_j||`` (``normalized_weight``, clamped to
    ``+-||rows_i||``, i.e. cosines clamped to ``[-1, 1]``) or ``rows_i . W_j + b_j``, except
    the target entry ``z_iy``, which is ``target_logit_i`` from ``target_function``, plus an
    optional virtual logit per row.

    Args:
        rows: (B, D) left operand (``s x / ||x||``, ``x`` ...), float32 or float64.
        weight: (C, D) raw class weights, same dtype.
        bias: (C,) or None (unnormalised geometry only).
        labels: (B,) int64 class indices in ``[0, C)``.
        target_function: computes the target logits from
            ``(rows, weight[labels], *target_inputs)``.
        normalized_weight: whether the non-target logits use normalised weights.
        chunk_size: classes per block, or None for a single block.
        target_inputs: more per-sample tensors the target logits depend on (differentiable;
            MagFace's magnitudes), passed on to ``target_function``; none by default.

    Returns:
        loss: scalar mean cross-entropy (differentiable in rows, weight, bias).
        target_cosine: (B,) detached target cosines (for adaptive schedules).
        correct: (B,) bool, whether the label's plain score (no margin) is at least every
            other class's: top-1 correctness from the scores the loss computed anyway.
    """
    loss, target_cosine, correct = _FusedMarginCrossEntropy.apply(
        rows, weight, bias, labels, target_function, normalized_weight, chunk_size, *target_inputs
    )
    return loss, target_cosine.detach(), correct
