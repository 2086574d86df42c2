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

    Returns:
        ``(B, C, H, W)`` augmented batch on the device of ``inputs``.
    """
    if not isinstance(inputs, Tensor) or inputs.dim() != 4:
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"inputs: expected a (B, C, H, W) tensor, got {shape}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding: expected an int >= 0, got {padding!r}")
    batch, _, height, width = inputs.shape
    if batch == 0:
        return inputs.clone()
    offsets_y = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)  # (B,)
    offsets_x = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)  # (B,)
    mirror = torch.rand(batch, generator=generator) < 0.5  # (B,)
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
