"""Which rank holds which class rows, and state dicts between a whole head and its shards.

Rank ``r`` of ``W`` holds the contiguous block of class rows ``[lo, hi)``: ``C // W`` rows
each, the first ``C % W`` ranks one more (:func:`shard_bounds`). A shard's state dict is the
whole head's with ``head.`` in front of every key, the class-indexed entries (``weight``,
``bias``) cut to the block, and ``shard_layout``, the int64 ``[rank, world_size, lo, hi,
num_classes]`` that :meth:`ShardedHead.load_state_dict
<marginkit.distributed.head.ShardedHead.load_state_dict>` checks. These functions need no
process group: a trainer saves one shard per rank, :func:`join_state_dicts` puts them back
into the whole head's state dict, and :func:`reshard_state_dict` cuts a whole one for any
(rank, world size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from marginkit._validation import check_count

__all__ = [
    "CLASS_INDEXED",
    "LAYOUT_KEY",
    "class_block",
    "join_state_dicts",
    "reshard_state_dict",
    "same_values",
    "shard_bounds",
]

#: The whole head's state-dict entries with rows per class: ``weight`` (K rows a class for
#: sub-centre ArcFace), ``bias``, and sub-centre ArcFace's (C, K) ``subcenter_counts``.
CLASS_INDEXED = ("weight", "bias", "subcenter_counts")
#: The shard's own entry: int64 ``[rank, world_size, lo, hi, num_classes]``.
LAYOUT_KEY = "shard_layout"
_PREFIX = "head."


def shard_bounds(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """The block ``[lo, hi)`` of class rows that ``rank`` holds.

    Args:
        num_classes: C (>= world_size: every rank holds at least one row).
        world_size: W (>= 1).
        rank: r in ``[0, W)``.

    Returns:
        ``(lo, hi)``; ``hi - lo`` is ``C // W + 1`` for the first ``C % W`` ranks, else
        ``C // W``.
    """
    num_classes = check_count("num_classes", num_classes, 1)
    world_size = check_count("world_size", world_size, 1)
    rank = check_count("rank", rank, 0)
    if world_size > num_classes:
        raise ValueError(
            f"world_size must not exceed num_classes ({num_classes}): every rank holds at "
            f"least one class row; got {world_size}"
        )
    if rank >= world_size:
        raise ValueError(f"rank must lie in [0, {world_size}) (world_size); got {rank}")
    base, extra = divmod(num_classes, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def class_block(value: Tensor, num_classes: int, lo: int, hi: int) -> Tensor:
    """The rows of classes ``[lo, hi)`` of a class-indexed entry that holds the same number
    of rows for each of ``num_classes`` classes (class j's K rows are ``j K .. j K + K - 1``,
    InsightFace's sub-centre layout), a view."""
    per_class = value.shape[0] // num_classes
    return value[lo * per_class : hi * per_class]


def _num_classes(state: Mapping[str, Tensor]) -> int:
    """C of a whole head's state dict: the fewest rows among its class-indexed entries
    (sub-centre ArcFace's weight holds K rows a class, its counts one)."""
    return min(int(state[name].shape[0]) for name in CLASS_INDEXED if name in state)


def same_values(first: Tensor, second: Tensor) -> bool:
    """Whether two tensors hold the same values, NaN equal to NaN (a schedule's unset
    statistic)."""
    if torch.equal(first, second):
        return True
    if first.shape != second.shape or not first.is_floating_point():
        return False
    return bool(((first == second) | (first.isnan() & second.isnan())).all())


def layout_tensor(rank: int, world_size: int, num_classes: int) -> Tensor:
    """The ``shard_layout`` entry of rank ``rank`` of ``world_size``, (5,) int64."""
    lo, hi = shard_bounds(num_classes, world_size, rank)
    return torch.tensor([rank, world_size, lo, hi, num_classes], dtype=torch.long)


def reshard_state_dict(
    whole_state: Mapping[str, Tensor], rank: int, world_size: int
) -> dict[str, Tensor]:
    """The state dict of rank ``rank``'s shard, cut from a whole head's state dict.

    Args:
        whole_state: a whole :class:`~marginkit.losses.head.MarginHead`'s ``state_dict()``
            (for a ``ClassSampledHead``, its ``head.state_dict()``), e.g. from
            :func:`join_state_dicts` of another world size's shards.
        rank: the rank r in ``[0, world_size)``.
        world_size: W, at most the number of classes.

    Returns:
        What ``ShardedHead.load_state_dict`` takes on rank ``rank`` of ``world_size``.
    """
    if not isinstance(whole_state, Mapping) or "weight" not in whole_state:
        raise ValueError("whole_state must be a whole head's state_dict, with a 'weight' entry")
    num_classes = _num_classes(whole_state)
    lo, hi = shard_bounds(num_classes, world_size, rank)
    state = {
        _PREFIX + key: class_block(value, num_classes, lo, hi).clone()
        if key in CLASS_INDEXED
        else value
        for key, value in whole_state.items()
    }
    state[LAYOUT_KEY] = layout_tensor(rank, world_size, num_classes)
    return state


def join_state_dicts(shard_states: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """The whole head's state dict from every rank's shard state dict (any order).

    Args:
        shard_states: one ``ShardedHead.state_dict()`` per rank of one world size.

    Returns:
        The state dict of the whole :class:`~marginkit.losses.head.MarginHead` (for a
        ``ClassSampledHead``, what its ``head.load_state_dict`` takes).
    """
    layouts = []
    for index, state in enumerate(shard_states):
        if not isinstance(state, Mapping) or LAYOUT_KEY not in state:
            raise ValueError(f"shard_states[{index}] is not a shard's state_dict (no shard_layout)")
        layouts.append([int(value) for value in state[LAYOUT_KEY]])
    world_size, num_classes = len(shard_states), layouts[0][4] if layouts else 0
    ranks = sorted(layout[0] for layout in layouts)
    if world_size == 0 or ranks != list(range(world_size)):
        raise ValueError(
            f"shard_states must hold each rank of one world size once; got ranks {ranks}"
        )
    expected = [layout_tensor(rank, world_size, num_classes).tolist() for rank in ranks]
    if sorted(layouts) != expected:
        raise ValueError(
            f"shard_states' layouts {sorted(layouts)} are not those of {world_size} ranks "
            f"over {num_classes} classes ({expected})"
        )
    ordered = [shard_states[[layout[0] for layout in layouts].index(r)] for r in ranks]
    whole: dict[str, Tensor] = {}
    for key, value in ordered[0].items():
        if key == LAYOUT_KEY:
            continue
        name = key.removeprefix(_PREFIX)
        if name in CLASS_INDEXED:
            whole[name] = torch.cat([state[key] for state in ordered])
        elif all(same_values(state[key], value) for state in ordered):
            whole[name] = value
        else:
            raise ValueError(f"shard_states disagree on {key!r}, which every rank holds whole")
    return whole
