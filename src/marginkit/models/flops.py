"""Multiply-accumulate counts of a network, measured with forward hooks.

The counts follow the convention of the face-recognition papers (MobileFaceNets' "MAdds",
InsightFace's "FLOPs"): one per multiply-accumulate of a convolution or a fully connected
layer, for one input. Biases, batch norm, activations, pooling and residual additions are
not counted (they are a fraction of a percent in these networks).

>>> from marginkit.models import build_backbone
>>> from marginkit.models.flops import count_macs
>>> count_macs(build_backbone("lenetpp", (1, 28, 28), 2), (1, 28, 28))
80911104
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from marginkit._validation import check_count

__all__ = ["count_macs", "layer_macs"]


def layer_macs(layer: nn.Module, output: Tensor) -> int:
    """The multiply-accumulates ``layer`` spent on ``output`` (its whole batch).

    A convolution spends ``in_channels / groups * prod(kernel_size)`` per output element, a
    linear layer ``in_features`` per output element; any other layer counts 0.

    Args:
        layer: the layer that produced ``output``.
        output: its output, (B, C_out, *spatial) or (B, ..., out_features).
    """
    if isinstance(layer, nn.modules.conv._ConvNd):
        per_output = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        return output.numel() * per_output
    if isinstance(layer, nn.Linear):
        return output.numel() * layer.in_features
    return 0


def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of ``module`` on one input.

    Runs ``module`` once in eval mode on a zero batch of one (on its parameters' device and
    dtype) without gradients, summing :func:`layer_macs` over every convolution and linear
    layer it calls (a layer called twice counts twice); the module's training mode is
    restored afterwards.

    Args:
        module: the network, taking (B, *input_shape).
        input_shape: shape of one input without the batch axis, e.g. ``(3, 112, 112)``.

    Returns:
        The count for one input (multiply by 2 for floating-point operations).

    Raises:
        TypeError, ValueError: ``input_shape`` is not a sequence of ints >= 1.
    """
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape must be a sequence of ints; got {type(input_shape).__name__}")
    shape = tuple(check_count(f"input_shape[{i}]", size, 1) for i, size in enumerate(input_shape))
    first = next(module.parameters(), None)
    inputs = torch.zeros(1, *shape, device=None if first is None else first.device)
    if first is not None and first.is_floating_point():
        inputs = inputs.to(first.dtype)
    total = 0

    def hook(layer: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        total += layer_macs(layer, output)

    modes = {layer: layer.training for layer in module.modules()}
    handles = [
        layer.register_forward_hook(hook)
        for layer in module.modules()
        if isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    try:
        module.eval()
        with torch.no_grad():
            module(inputs)
    finally:
        for handle in handles:
            handle.remove()
        for layer, training in modes.items():
            layer.training = training
    return total
