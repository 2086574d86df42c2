"""count_macs: hand counts on tiny nets, what is and is not counted, modes restored."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from marginkit.models import build_backbone, count_macs
from marginkit.models.flops import layer_macs


def tiny_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # 5x5 -> 5x5
        nn.BatchNorm2d(4),
        nn.PReLU(4),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),  # depthwise, 5x5 -> 3x3
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 5),
        nn.BatchNorm1d(5),
    )


def test_tiny_net_matches_the_hand_count() -> None:
    full = 5 * 5 * 4 * (3 * 3 * 3)  # output elements x (in_channels x kernel area)
    depthwise = 3 * 3 * 4 * (1 * 3 * 3)  # one input channel per group
    linear = 5 * 36
    assert count_macs(tiny_net(), (3, 5, 5)) == full + depthwise + linear == 3204


def test_lenetpp_matches_the_hand_count() -> None:
    net = build_backbone("lenetpp", (1, 28, 28), 2)
    convs = 28 * 28 * (32 * 1 + 32 * 32) + 14 * 14 * (64 * 32 + 64 * 64)
    convs += 7 * 7 * (128 * 64 + 128 * 128)
    assert count_macs(net, (1, 28, 28)) == convs * 25 + 128 * 3 * 3 * 2 == 80_911_104


def test_a_layer_called_twice_counts_twice() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(6, 6)

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.linear(self.linear(inputs))

    assert count_macs(Twice(), (6,)) == 2 * 36
    assert count_macs(nn.Sequential(nn.ReLU(), nn.Flatten()), (3, 4)) == 0


def test_counts_batch_of_one_in_eval_mode_and_restores_modes() -> None:
    net = tiny_net()  # its BatchNorm1d would refuse a training batch of one
    net.train()
    net[1].eval()  # a mixed state must come back as it was
    assert count_macs(net, [3, 5, 5]) == 3204
    assert net.training and not net[1].training and net[6].training
    assert not any(module._forward_hooks for module in net.modules())


def test_layer_macs_ignores_other_layers() -> None:
    output = torch.zeros(2, 4, 3, 3)
    assert layer_macs(nn.BatchNorm2d(4), output) == 0
    assert layer_macs(nn.Conv2d(8, 4, 3, groups=2), output) == output.numel() * 4 * 9


@pytest.mark.parametrize(
    ("shape", "error", "message"),
    [
        ("3x5x5", TypeError, "input_shape must be a sequence of ints; got str"),
        ((3, 0, 5), ValueError, r"input_shape\[1\] must be >= 1; got 0"),
        ((3, 5.0, 5), TypeError, r"input_shape\[1\] must be an int; got float"),
    ],
)
def test_bad_input_shape(shape: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        count_macs(tiny_net(), shape)  # type: ignore[arg-type]
