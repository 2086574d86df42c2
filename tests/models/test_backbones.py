"""Backbones: output shapes, parameter counts against hand counts, gradient flow, errors."""

from __future__ import annotations

import pytest
import torch

from marginkit.models import (
    MLP,
    FaceNet,
    LeNetPP,
    MNISTNet,
    ResNet20,
    available_backbones,
    build_backbone,
)

SHAPES = {
    "lenetpp": (1, 28, 28),
    "mnistnet": (1, 28, 28),
    "resnet20": (3, 32, 32),
    "facenet": (3, 112, 96),
    "mlp": (64,),
}


def conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def test_registry_lists_every_backbone() -> None:
    assert available_backbones() == [
        "lenetpp",
        "mnistnet",
        "resnet20",
        "facenet",
        "iresnet18",
        "iresnet34",
        "iresnet50",
        "iresnet100",
        "mobilefacenet",
        "mlp",
    ]


@pytest.mark.parametrize("name", list(SHAPES))
def test_output_shape_and_gradient_flow(name: str) -> None:
    torch.manual_seed(0)
    net = build_backbone(name, SHAPES[name], embedding_dim=7)
    inputs = torch.randn(3, *SHAPES[name])
    out = net(inputs)
    assert out.shape == (3, 7)
    assert out.dtype == torch.float32
    (out * torch.randn_like(out)).sum().backward()
    for parameter_name, parameter in net.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


def test_lenetpp_parameter_count_by_hand() -> None:
    net = LeNetPP((1, 28, 28), embedding_dim=2)
    convs = conv(1, 32, 5) + conv(32, 32, 5) + conv(32, 64, 5) + conv(64, 64, 5)
    convs += conv(64, 128, 5) + conv(128, 128, 5)
    prelu = 32 + 32 + 64 + 64 + 128 + 128
    fc = 128 * 3 * 3 * 2 + 2  # 28 -> 14 -> 7 -> 3
    assert sum(p.numel() for p in net.parameters()) == convs + prelu + fc


def test_mnistnet_parameter_count_by_hand() -> None:
    net = MNISTNet((1, 28, 28), embedding_dim=512)
    widths = [(1, 64), (64, 64), (64, 64), (64, 64), (64, 128), (128, 128), (128, 128)]
    widths += [(128, 256), (256, 256), (256, 256)]
    per_layer = [conv(a, b, 3, bias=False) + 2 * b + b for a, b in widths]  # conv, BN, PReLU
    fc = 256 * 3 * 3 * 512 + 512
    assert sum(p.numel() for p in net.parameters()) == sum(per_layer) + fc
    # ten convolutions, each followed by batch norm, three pools
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 10
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 3


def test_resnet20_has_the_papers_size() -> None:
    net = ResNet20((3, 32, 32), embedding_dim=10)
    count = sum(p.numel() for p in net.parameters())
    # He et al. report 0.27 M for ResNet-20 (option A shortcuts); option B adds two 1x1 convs
    projections = conv(16, 32, 1, bias=False) + 2 * 32 + conv(32, 64, 1, bias=False) + 2 * 64
    assert 0.26e6 < count - projections < 0.28e6
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19  # 19 conv layers + the FC layer = 20 weighted layers


def test_facenet_shapes_and_width() -> None:
    net = FaceNet((3, 112, 96))
    assert net.embedding.in_features == 256 * 7 * 6
    assert net.embedding.out_features == 512
    assert isinstance(build_backbone("facenet", (3, 112, 96), 64), FaceNet)


def test_mlp_flattens_images() -> None:
    net = MLP((1, 8, 8), embedding_dim=4, hidden=(16,))
    assert net(torch.randn(5, 1, 8, 8)).shape == (5, 4)
    assert sum(p.numel() for p in net.parameters()) == 64 * 16 + 16 + 2 * 16 + 16 * 4 + 4


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg'.*lenetpp.*mlp"):
        build_backbone("vgg", (1, 28, 28), 2)


def test_name_is_case_insensitive() -> None:
    assert isinstance(build_backbone("LeNet-PP", (1, 28, 28), 2), LeNetPP)


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("lenetpp", (784,), r"input_shape \(C, H, W\)"),
        ("resnet20", (3, 4, 4), "at least 8x8"),
        ("mlp", (0,), "positive ints"),
        ("mlp", "64", "sequence of ints"),
    ],
)
def test_bad_input_shapes(name: str, shape: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        build_backbone(name, shape, 2)  # type: ignore[arg-type]


def test_bad_embedding_dim() -> None:
    with pytest.raises(ValueError, match="embedding_dim must be >= 1"):
        build_backbone("mlp", (4,), 0)
    with pytest.raises(TypeError, match="embedding_dim must be an int"):
        build_backbone("mlp", (4,), 2.0)  # type: ignore[arg-type]
