"""The face backbones: IResNet (ArcFace, CVPR 2019) and MobileFaceNet (CCBR 2018).

Layouts, exact parameter and multiply-accumulate counts against hand counts and the
published figures, output shape, gradients, the final batch norm, the input-size rule.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from marginkit.models import (
    BackboneError,
    IResNet,
    MobileFaceNet,
    arcface_torch_names,
    available_backbones,
    build_backbone,
    count_macs,
    iresnet18,
)
from marginkit.models.faces import last_map_size

FACE = (3, 112, 112)
LAYERS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
#: Exact counts at 112x112, D=512 (the tables of docs/backbones.md and faces.py).
PARAMETERS = {
    "iresnet18": 24_025_600,
    "iresnet34": 34_139_328,
    "iresnet50": 43_590_848,
    "iresnet100": 65_156_160,
}
MACS = {
    "iresnet18": 2_609_954_816,
    "iresnet34": 4_459_642_880,
    "iresnet50": 6_309_330_944,
    "iresnet100": 12_089_606_144,
}
#: InsightFace's model zoo: millions of parameters, G "FLOPs" (multiply-accumulates).
PUBLISHED = {
    "iresnet18": (24.0, 2.6),
    "iresnet34": (34.1, 4.5),
    "iresnet50": (43.6, 6.3),
    "iresnet100": (65.2, 12.1),
}
STAGES = (64, 128, 256, 512)


def parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def iresnet_parameters_by_hand(layers: tuple[int, ...], embedding_dim: int) -> int:
    total = 3 * 64 * 9 + 2 * 64 + 64  # stem: conv, BN, PReLU
    channels_in = 64
    for channels, count in zip(STAGES, layers, strict=True):
        for index in range(count):
            block = 2 * channels_in + 9 * channels_in * channels + 2 * channels + channels
            block += 9 * channels * channels + 2 * channels  # BN conv BN PReLU conv BN
            if index == 0:
                block += channels_in * channels + 2 * channels  # 1x1 shortcut + BN
            total += block
            channels_in = channels
    # BN2d, FC 512*7*7 -> D with bias, BN1d
    return total + 2 * 512 + 512 * 49 * embedding_dim + embedding_dim + 2 * embedding_dim


def iresnet_macs_by_hand(layers: tuple[int, ...], embedding_dim: int) -> int:
    total = 112 * 112 * 64 * 3 * 9
    channels_in, side = 64, 112
    for channels, count in zip(STAGES, layers, strict=True):
        half = side // 2
        total += side * side * channels * channels_in * 9  # first conv at the input size
        total += half * half * channels * channels * 9  # strided conv
        total += half * half * channels * channels_in  # shortcut
        total += (count - 1) * 2 * half * half * channels * channels * 9
        channels_in, side = channels, half
    return total + 512 * 49 * embedding_dim


#: MobileFaceNets Table 1: bottlenecks (expansion t, channels c, repeats n, first stride s).
BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


def mobilefacenet_weights_and_macs_by_hand(embedding_dim: int) -> tuple[int, int]:
    """Convolution and linear weights, and their multiply-accumulates, at 112x112."""
    weights = 3 * 64 * 9 + 64 * 9  # conv3x3 s2, depthwise conv3x3
    macs = 56 * 56 * weights
    channels_in, side = 64, 56
    for expansion, channels, repeats, first_stride in BOTTLENECKS:
        for index in range(repeats):
            hidden = expansion * channels_in
            out_side = side // (first_stride if index == 0 else 1)
            expand, depthwise, project = channels_in * hidden, 9 * hidden, hidden * channels
            weights += expand + depthwise + project
            macs += side * side * expand + out_side * out_side * (depthwise + project)
            channels_in, side = channels, out_side
    assert side == 7
    tail = 128 * 512 + 512 * 49  # conv1x1 to 512, GDConv7x7 (one output each)
    weights += tail + 512 * embedding_dim  # + linear conv1x1 to D
    return weights, macs + 49 * 128 * 512 + 512 * 49 + 512 * embedding_dim


def test_the_face_backbones_are_registered() -> None:
    names = available_backbones()
    assert names[4:9] == ["iresnet18", "iresnet34", "iresnet50", "iresnet100", "mobilefacenet"]
    assert isinstance(build_backbone("MobileFaceNet", FACE, 128), MobileFaceNet)


@pytest.mark.parametrize("name", list(LAYERS))
def test_iresnet_parameter_and_mac_counts(name: str) -> None:
    net = build_backbone(name, FACE, 512)
    assert isinstance(net, IResNet)
    shortcuts = [block for block in net.blocks if isinstance(block.shortcut, nn.Sequential)]
    assert len(shortcuts) == 4 and len(net.blocks) == sum(LAYERS[name])
    count = parameters(net)
    assert count == iresnet_parameters_by_hand(LAYERS[name], 512) == PARAMETERS[name]
    assert count / 1e6 == pytest.approx(PUBLISHED[name][0], rel=0.01)
    macs = count_macs(net, FACE)
    assert macs == iresnet_macs_by_hand(LAYERS[name], 512) == MACS[name]
    assert macs / 1e9 == pytest.approx(PUBLISHED[name][1], rel=0.03)


def test_mobilefacenet_counts_match_the_paper() -> None:
    net = MobileFaceNet(FACE, embedding_dim=128)
    weights, macs = mobilefacenet_weights_and_macs_by_hand(128)
    learnt = sum(m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert learnt == weights == 976_000
    assert parameters(net) == 1_003_136  # + BN (19,584) + PReLU (7,552)
    assert parameters(net) / 1e6 == pytest.approx(0.99, rel=0.015)  # the paper's 0.99 M
    assert count_macs(net, FACE) == macs == 220_965_376  # the paper's 221 M MAdds
    bottlenecks = [m for m in net.modules() if m.__class__.__name__ == "_Bottleneck"]
    assert len(bottlenecks) == 15 and sum(b.residual for b in bottlenecks) == 12


def test_iresnet_block_order_and_output_block() -> None:
    net = iresnet18(FACE)
    first = net.blocks[0]
    kinds = [type(layer) for layer in first.body]
    assert kinds == [nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d, nn.PReLU, nn.Conv2d, nn.BatchNorm2d]
    assert first.body[1].stride == (1, 1) and first.body[4].stride == (2, 2)
    assert first.shortcut[0].kernel_size == (1, 1) and first.shortcut[0].stride == (2, 2)
    assert isinstance(net.blocks[1].shortcut, nn.Identity)
    assert net.embedding.in_features == 512 * 7 * 7
    assert net.dropout.p == 0.0 and iresnet18(FACE, dropout=0.4).dropout.p == 0.4
    assert not net.features.weight.requires_grad and bool((net.features.weight == 1).all())


def test_arcface_torch_names_number_the_blocks_within_each_stage() -> None:
    """InsightFace's ``arcface_torch/backbones/iresnet.py`` names (``layerS.I.<layer>``):
    IResNet-50's 3, 4, 14, 3 blocks restart their numbers at each stage."""
    net = build_backbone("iresnet50", FACE, 512)
    names = arcface_torch_names(net)  # type: ignore[arg-type]
    state = net.state_dict()
    assert list(names) == list(state) and len(set(names.values())) == len(names)
    published = {  # ours -> arcface_torch's, and the published shape
        "stem.0.weight": ("conv1.weight", (64, 3, 3, 3)),
        "stem.1.running_var": ("bn1.running_var", (64,)),
        "stem.2.weight": ("prelu.weight", (64,)),
        "blocks.0.body.0.weight": ("layer1.0.bn1.weight", (64,)),
        "blocks.0.body.1.weight": ("layer1.0.conv1.weight", (64, 64, 3, 3)),
        "blocks.0.body.3.weight": ("layer1.0.prelu.weight", (64,)),
        "blocks.0.body.4.weight": ("layer1.0.conv2.weight", (64, 64, 3, 3)),
        "blocks.0.body.5.num_batches_tracked": ("layer1.0.bn3.num_batches_tracked", ()),
        "blocks.0.shortcut.0.weight": ("layer1.0.downsample.0.weight", (64, 64, 1, 1)),
        "blocks.2.body.2.bias": ("layer1.2.bn2.bias", (64,)),
        "blocks.3.body.1.weight": ("layer2.0.conv1.weight", (128, 64, 3, 3)),
        "blocks.3.shortcut.1.running_mean": ("layer2.0.downsample.1.running_mean", (128,)),
        "blocks.7.body.4.weight": ("layer3.0.conv2.weight", (256, 256, 3, 3)),
        "blocks.20.body.4.weight": ("layer3.13.conv2.weight", (256, 256, 3, 3)),
        "blocks.21.shortcut.0.weight": ("layer4.0.downsample.0.weight", (512, 256, 1, 1)),
        "blocks.23.body.5.bias": ("layer4.2.bn3.bias", (512,)),
        "output_norm.weight": ("bn2.weight", (512,)),
        "embedding.weight": ("fc.weight", (512, 512 * 7 * 7)),
        "embedding.bias": ("fc.bias", (512,)),
        "features.weight": ("features.weight", (512,)),
    }
    for ours, (theirs, shape) in published.items():
        assert names[ours] == theirs and tuple(state[ours].shape) == shape
    tops = {name.split(".")[0] for name in names.values()}
    assert tops == {"conv1", "bn1", "prelu", "bn2", "fc", "features"} | {
        f"layer{stage}" for stage in range(1, 5)
    }
    blocks = {".".join(name.split(".")[:2]) for name in names.values() if name.startswith("layer")}
    assert sorted(blocks) == sorted(
        f"layer{stage}.{index}"
        for stage, count in enumerate(LAYERS["iresnet50"], start=1)
        for index in range(count)
    )


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_forward_backward_at_112(name: str) -> None:
    net = build_backbone(name, FACE, 32)
    last = net.features if name == "iresnet18" else net.output_norm
    captured: list[torch.Tensor] = []
    net.embedding.register_forward_hook(lambda _m, _i, output: captured.append(output))
    out = net(torch.randn(2, *FACE))
    assert out.shape == (2, 32) and out.dtype == torch.float32
    # the output is the embedding layer's output through a training-mode batch norm
    linear = captured[0]  # (2, 32)
    variance = linear.var(0, unbiased=False) + last.eps
    expected = (linear - linear.mean(0)) / variance.sqrt() * last.weight + last.bias
    assert torch.allclose(out, expected, atol=1e-4)
    (out * torch.randn_like(out)).sum().backward()
    for parameter_name, parameter in net.named_parameters():
        if not parameter.requires_grad:  # IResNet's BN1d scale, fixed at 1: no optimiser moves it
            assert (name, parameter_name) == ("iresnet18", "features.weight")
            assert parameter.grad is None and bool((parameter == 1).all())
            continue
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


def test_last_map_size_halves_four_times_rounding_up() -> None:
    assert [last_map_size(n) for n in (112, 97, 96, 128, 16, 1)] == [7, 7, 6, 8, 1, 1]


@pytest.mark.parametrize("name", ["iresnet18", "iresnet100", "mobilefacenet"])
@pytest.mark.parametrize("shape", [(3, 96, 112), (3, 112, 96), (3, 64, 64)])
def test_smaller_than_97_is_refused_naming_the_backbone(
    name: str, shape: tuple[int, int, int]
) -> None:
    message = rf"^backbone '{name}' needs images of at least 97x97 \(its last feature map "
    with pytest.raises(BackboneError, match=message + r".*112x112 is standard\); got input"):
        build_backbone(name, shape, 16)


def test_97_is_the_smallest_that_works_and_larger_maps_widen_the_last_layer() -> None:
    assert iresnet18((3, 97, 97), 16)(torch.randn(2, 3, 97, 97)).shape == (2, 16)
    assert iresnet18((3, 128, 112), 16).embedding.in_features == 512 * 8 * 7
    net = MobileFaceNet((1, 128, 128), 16)
    gdconv = [m for m in net.features if isinstance(m, nn.Conv2d)][-1]
    assert gdconv.kernel_size == (8, 8) and gdconv.groups == 512
    assert net(torch.randn(2, 1, 128, 128)).shape == (2, 16)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: iresnet18((112, 112), 8), BackboneError, r"input_shape \(C, H, W\)"),
        (lambda: iresnet18(FACE, 0), ValueError, "embedding_dim must be >= 1"),
        (lambda: iresnet18(FACE, dropout=1.0), ValueError, r"dropout must be in \[0, 1\)"),
        (lambda: iresnet18(FACE, dropout="0.1"), TypeError, "dropout must be a number"),
        (lambda: IResNet(FACE, 8, (2, 2, 2)), ValueError, "layers must give the blocks of 4"),
        (lambda: IResNet(FACE, 8, (2, 0, 2, 2)), ValueError, r"layers\[1\] must be >= 1"),
        (lambda: MobileFaceNet(FACE, 1.5), TypeError, "embedding_dim must be an int"),
    ],
)
def test_bad_arguments(build: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]
