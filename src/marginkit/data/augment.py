"""Standard batch augmentation for small images: random crop with padding + horizontal flip."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_batch"]


def augment_batch(
    inputs: Tensor,
    generator: torch.Generator | None = None,
    padding: int = 4,
    flip: bool = True,
    *,
    rows: Tensor | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """Random crop after zero padding, then a random horizontal flip, per image.

    The augmentation of He et al. (CVPR 2016) for CIFAR: pad ``padding`` pixels of zeros on
    every side (zero is the data set mean after normalisation), crop a window of the original
    size at a uniformly random offset, and mirror left-right with probability 1/2.

    Args:
        inputs: ``(B, C, H, W)`` float batch (already normalised).
        generator: CPU ``torch.Generator`` for the offsets and flips (global RNG if None).
        padding: pixels of padding per side (>= 0).
        flip: whether to apply random horizontal flips.
        rows: ``(b,)`` long, with ``batch_size``: ``inputs`` are these rows of a batch of
            ``batch_size`` images (a process's part of a distributed batch). The offsets and
            flips of the whole batch are drawn (the generator advances as for it) and each
            row gets its own: the result is bitwise the whole batch's augmentation at
            ``rows``.
        batch_size: the whole batch's size (with ``rows``).

    Returns:
        ``(B, C, H, W)`` augmented batch on the device of ``inputs`` (``(b, C, H, W)`` with
        ``rows``).
    """
    if not isinstance(inputs, Tensor) or inputs.dim() != 4:
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"inputs: expected a (B, C, H, W) tensor, got {shape}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding: expected an int >= 0, got {padding!r}")
    if (rows is None) != (batch_size is None):
        raise ValueError("rows, batch_size: expected both or neither")
    batch, _, height, width = inputs.shape
    drawn = batch if batch_size is None else batch_size
    if rows is not None and rows.shape != (batch,):
        raise ValueError(f"rows: expected shape ({batch},), got {tuple(rows.shape)}")
    if drawn == 0:
        return inputs.clone()
    offsets_y = torch.randint(0, 2 * padding + 1, (drawn,), generator=generator)  # (B,)
    offsets_x = torch.randint(0, 2 * padding + 1, (drawn,), generator=generator)  # (B,)
    mirror = torch.rand(drawn, generator=generator) < 0.5  # (B,)
    if rows is not None:  # this part's rows of the whole batch's draws: (b,) each
        offsets_y, offsets_x, mirror = offsets_y[rows], offsets_x[rows], mirror[rows]
    padded = F.pad(inputs, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p)
    device = inputs.device
    rows = offsets_y.to(device)[:, None] + torch.arange(height, device=device)  # (B, H)
    cols = offsets_x.to(device)[:, None] + torch.arange(width, device=device)  # (B, W)
    if flip:
        cols = torch.where(mirror.to(device)[:, None], cols.flip(1), cols)
    channels = inputs.shape[1]
    rows = rows[:, None, :, None].expand(batch, channels, height, padded.shape[3])
    picked_rows = padded.gather(2, rows)  # (B, C, H, W+2p)
    cols = cols[:, None, None, :].expand(batch, channels, height, width)
    return picked_rows.gather(3, cols)  # (B, C, H, W)
