"""Face-recognition backbones for aligned 112x112 crops: IResNet and MobileFaceNet.

- :class:`IResNet` (``iresnet18/34/50/100``): the "improved" ResNet of ArcFace (Deng et al.,
  "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019: its improved
  residual unit and its "BN-Dropout-FC-BN" embedding output), laid out as InsightFace's
  ``arcface_torch/backbones/iresnet.py``.
- :class:`MobileFaceNet`: Chen et al., "MobileFaceNets: Efficient CNNs for Accurate
  Real-Time Face Verification on Mobile Devices", CCBR 2018, Table 1.

Both halve the image four times (3x3 or 1x1 convolutions, stride 2, padding 1 or 0, so a
side of n becomes ceil(n / 2)): a 112x112 crop ends as a 7x7 map. Both need that last map to
be at least the papers' 7x7, i.e. images of at least 97x97; a larger image gives a larger
map, and the layer after it (the FC layer of IResNet, the global depthwise convolution of
MobileFaceNet) grows to cover it. Unlike the other backbones, both end in a batch norm after
the embedding layer (the papers' design): it shifts and scales each feature, and leaves the
embedding's length free (the margin head decides the geometry).

At 112x112 with the papers' embedding widths (multiply-accumulates of convolutions and
linear layers, :func:`marginkit.models.flops.count_macs`):

=================  ====  ==========  =================  ============================
name               D     parameters  MACs               published (params, MACs)
=================  ====  ==========  =================  ============================
``iresnet18``      512   24,025,600  2,609,954,816      24.0 M, 2.6 G (InsightFace)
``iresnet34``      512   34,139,328  4,459,642,880      34.1 M, 4.5 G (InsightFace)
``iresnet50``      512   43,590,848  6,309,330,944      43.6 M, 6.3 G (InsightFace)
``iresnet100``     512   65,156,160  12,089,606,144     65.2 M, 12.1 G (InsightFace)
``mobilefacenet``  128   1,003,136   220,965,376        0.99 M, 221 M (Chen et al.)
=================  ====  ==========  =================  ============================

Parameters include the batch-norm and PReLU ones (and the fixed BN1d scale of IResNet).
MobileFaceNet's convolution and linear weights alone are 976,000, batch norm adds 19,584
and PReLU 7,552: the paper's 0.99 M is within 1.3 % of the whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from marginkit._validation import check_count
from marginkit.models._shapes import check_min_size, check_shape
from marginkit.models.backbones import residual_shortcut

__all__ = [
    "IResNet",
    "MobileFaceNet",
    "arcface_torch_names",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "last_map_size",
]

#: Stride-2 stages of both networks: a side of n ends as ceil(n / 16).
_HALVINGS = 4
#: The side of the papers' last feature map (112x112 input): the smallest accepted.
_PAPER_MAP = 7
#: The smallest image side whose last map is still 7: ceil(97 / 16) = 7, ceil(96 / 16) = 6.
MIN_IMAGE_SIZE = 16 * (_PAPER_MAP - 1) + 1


def last_map_size(size: int) -> int:
    """The side of the last feature map for an image side of ``size`` (each stride-2 layer
    maps n to ceil(n / 2))."""
    for _ in range(_HALVINGS):
        size = -(-size // 2)
    return size


def _check_face_input(input_shape: Sequence[int], name: str) -> tuple[int, int, int]:
    """(C, H, W) of at least 97x97, else a one-line error naming ``name``."""
    shape = check_shape(input_shape, image=True, name=name)
    check_min_size(
        shape,
        MIN_IMAGE_SIZE,
        name,
        "its last feature map must be at least 7x7; 112x112 is standard",
    )
    return shape[0], shape[1], shape[2]


def _check_dropout(dropout: float) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        raise TypeError(f"dropout must be a number; got {type(dropout).__name__}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout}")
    return float(dropout)


# ------------------------------------------------------------------------------ IResNet
class _IBasicBlock(nn.Module):
    """ArcFace's improved residual unit (Deng et al., CVPR 2019):
    ``BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN``, plus the input, or its
    1x1-conv + BN projection when the stride or the width changes."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels_in),
            nn.Conv2d(channels_in, channels_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels_out),
            nn.PReLU(channels_out),
            nn.Conv2d(channels_out, channels_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels_out),
        )
        self.shortcut = residual_shortcut(channels_in, channels_out, stride)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.body(inputs) + self.shortcut(inputs)  # (B, C_out, H/s, W/s)


class IResNet(nn.Module):
    """The IResNet of ArcFace (Deng et al., CVPR 2019), as InsightFace's ``arcface_torch``.

    - Stem: conv3x3 (C -> 64, stride 1) -> BN -> PReLU.
    - Four stages of :class:`_IBasicBlock` at 64, 128, 256 and 512 channels, ``layers``
      blocks each; the first block of every stage has stride 2 and a 1x1-conv + BN
      shortcut. 112x112 -> 56 -> 28 -> 14 -> 7.
    - Output block "E": BN2d -> dropout -> flatten -> FC (512 * 7 * 7 -> D) -> BN1d.

    The final BN1d's scale is fixed at 1 (``requires_grad=False``; MXNet's ``fix_gamma``
    in the original, ``arcface_torch`` likewise): it centres each feature and divides it by
    its batch standard deviation, then adds a learnt shift. So, unlike the other backbones,
    the network does not end in its linear layer; the embedding's length is still free (no
    L2 normalisation), and the head decides the geometry. Convolution kernels start from
    N(0, 0.1^2), as in ``arcface_torch``.

    Args:
        input_shape: (C, H, W), at least 97x97 (the last map at least 7x7); 112x112 is the
            standard aligned crop. A larger image widens the FC layer to its last map.
        embedding_dim: embedding width D (512 in ArcFace).
        layers: blocks per stage: (2, 2, 2, 2) for IResNet-18, (3, 4, 6, 3) -34,
            (3, 4, 14, 3) -50, (3, 13, 30, 3) -100.
        dropout: dropout rate before the FC layer (0 as in ``arcface_torch``; ArcFace used
            0.4 on its small data sets).
        name: the network's name in error messages.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        embedding_dim: int = 512,
        layers: Sequence[int] = (3, 4, 14, 3),
        *,
        dropout: float = 0.0,
        name: str = "iresnet",
    ) -> None:
        super().__init__()
        channels, height, width = _check_face_input(input_shape, name)
        embedding_dim = check_count("embedding_dim", embedding_dim, 1)
        if len(layers) != 4:
            raise ValueError(f"layers must give the blocks of 4 stages; got {tuple(layers)}")
        counts = [check_count(f"layers[{i}]", count, 1) for i, count in enumerate(layers)]
        #: blocks per stage, as ``layers``
        self.stage_blocks: tuple[int, ...] = tuple(counts)
        self.stem = nn.Sequential(
            nn.Conv2d(channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        blocks: list[nn.Module] = []
        channels_in = 64
        for channels_out, count in zip((64, 128, 256, 512), counts, strict=True):
            for index in range(count):
                blocks.append(_IBasicBlock(channels_in, channels_out, 2 if index == 0 else 1))
                channels_in = channels_out
        self.blocks = nn.Sequential(*blocks)
        self.output_norm = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout(_check_dropout(dropout))
        map_area = last_map_size(height) * last_map_size(width)
        self.embedding = nn.Linear(512 * map_area, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim)
        self.features.weight.requires_grad_(False)  # fixed scale 1 (fix_gamma)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.1)

    def forward(self, inputs: Tensor) -> Tensor:
        features = self.blocks(self.stem(inputs))  # (B, 512, H/16, W/16)
        flat = self.dropout(self.output_norm(features)).flatten(1)  # (B, 512 * 7 * 7)
        return self.features(self.embedding(flat))  # (B, D)


def iresnet18(
    input_shape: Sequence[int], embedding_dim: int = 512, *, dropout: float = 0.0
) -> IResNet:
    """IResNet-18: (2, 2, 2, 2) blocks; 24.0 M parameters, 2.61 G MACs at 112x112, D=512."""
    return IResNet(input_shape, embedding_dim, (2, 2, 2, 2), dropout=dropout, name="iresnet18")


def iresnet34(
    input_shape: Sequence[int], embedding_dim: int = 512, *, dropout: float = 0.0
) -> IResNet:
    """IResNet-34: (3, 4, 6, 3) blocks; 34.1 M parameters, 4.46 G MACs at 112x112, D=512."""
    return IResNet(input_shape, embedding_dim, (3, 4, 6, 3), dropout=dropout, name="iresnet34")


def iresnet50(
    input_shape: Sequence[int], embedding_dim: int = 512, *, dropout: float = 0.0
) -> IResNet:
    """IResNet-50: (3, 4, 14, 3) blocks; 43.6 M parameters, 6.31 G MACs at 112x112, D=512."""
    return IResNet(input_shape, embedding_dim, (3, 4, 14, 3), dropout=dropout, name="iresnet50")


def iresnet100(
    input_shape: Sequence[int], embedding_dim: int = 512, *, dropout: float = 0.0
) -> IResNet:
    """IResNet-100: (3, 13, 30, 3) blocks; 65.2 M parameters, 12.09 G MACs at 112x112, D=512."""
    return IResNet(input_shape, embedding_dim, (3, 13, 30, 3), dropout=dropout, name="iresnet100")


#: InsightFace ``arcface_torch``'s names (``backbones/iresnet.py``) of :class:`IResNet`'s
#: modules outside the blocks, ours -> theirs: the stem's conv, BN and PReLU, the output BN2d,
#: FC and BN1d.
_ARCFACE_TORCH_OUTER = {
    "stem.0": "conv1",
    "stem.1": "bn1",
    "stem.2": "prelu",
    "output_norm": "bn2",
    "embedding": "fc",
    "features": "features",
}
#: ... and of a block's layers (its ``IBasicBlock``: bn1, conv1, bn2, prelu, conv2, bn3, and
#: the projection shortcut ``downsample``: 1x1 conv, BN).
_ARCFACE_TORCH_BLOCK = {
    "body.0": "bn1",
    "body.1": "conv1",
    "body.2": "bn2",
    "body.3": "prelu",
    "body.4": "conv2",
    "body.5": "bn3",
    "shortcut.0": "downsample.0",
    "shortcut.1": "downsample.1",
}


def arcface_torch_names(network: IResNet) -> dict[str, str]:
    """Each key of ``network.state_dict()`` -> the name of the same tensor in a state dict of
    InsightFace's ``arcface_torch`` IResNet of the same depth (its ``backbone.pth``).

    ``arcface_torch`` numbers the blocks within each of its stages ``layer1`` ... ``layer4``
    where :class:`IResNet` numbers them through: with (3, 4, 14, 3) blocks (IResNet-50),
    ``blocks.3.body.1.weight`` is ``layer2.0.conv1.weight``. The two networks compute the same
    function of the same tensors (the BN2d -> dropout -> flatten of the output block commute).

    >>> names = arcface_torch_names(iresnet50((3, 112, 112)))
    >>> names["stem.0.weight"], names["blocks.3.shortcut.0.weight"], names["embedding.weight"]
    ('conv1.weight', 'layer2.0.downsample.0.weight', 'fc.weight')
    """
    stages = [
        (stage, index)
        for stage, count in enumerate(network.stage_blocks, start=1)
        for index in range(count)
    ]
    names = {}
    for key in network.state_dict():
        module, _, leaf = key.rpartition(".")
        if module.startswith("blocks."):
            _, number, inner = module.split(".", 2)
            stage, index = stages[int(number)]
            names[key] = f"layer{stage}.{index}.{_ARCFACE_TORCH_BLOCK[inner]}.{leaf}"
        else:
            names[key] = f"{_ARCFACE_TORCH_OUTER[module]}.{leaf}"
    return names


# ------------------------------------------------------------------------ MobileFaceNet
def _conv_unit(
    channels_in: int,
    channels_out: int,
    kernel: int | tuple[int, int] = 1,
    stride: int = 1,
    *,
    groups: int = 1,
    activation: bool = True,
) -> list[nn.Module]:
    """conv (no bias) -> BN [-> PReLU]; 3x3 kernels are padded by 1."""
    padding = 1 if kernel == 3 else 0
    layers: list[nn.Module] = [
        nn.Conv2d(channels_in, channels_out, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(channels_out),
    ]
    return [*layers, nn.PReLU(channels_out)] if activation else layers


class _Bottleneck(nn.Module):
    """MobileNetV2's inverted residual with PReLU (MobileFaceNets, Table 1): 1x1 expansion
    to ``expansion * channels_in`` -> depthwise 3x3 (stride) -> linear 1x1 projection, each
    followed by BN; the input is added back when the stride is 1 and the width unchanged."""

    def __init__(self, channels_in: int, channels_out: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = expansion * channels_in
        self.body = nn.Sequential(
            *_conv_unit(channels_in, hidden),
            *_conv_unit(hidden, hidden, 3, stride, groups=hidden),
            *_conv_unit(hidden, channels_out, activation=False),
        )
        self.residual = stride == 1 and channels_in == channels_out

    def forward(self, inputs: Tensor) -> Tensor:
        out = self.body(inputs)  # (B, C_out, H/s, W/s)
        return inputs + out if self.residual else out


#: MobileFaceNets, Table 1: (expansion t, channels c, repeats n, first stride s).
_BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


class MobileFaceNet(nn.Module):
    """MobileFaceNet (Chen et al., CCBR 2018, Table 1), PReLU activations throughout.

    conv3x3 stride 2 (C -> 64) -> depthwise conv3x3 (64) -> bottlenecks (t, c, n, s) =
    (2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1) -> conv1x1
    (512) -> linear global depthwise conv (GDConv, 7x7 at 112x112: the kernel covers the
    whole last map) -> linear 1x1 conv to D (a bias-free linear layer on the 1x1 map) ->
    BN1d. Every convolution is followed by BN; "linear" ones have no activation. 112x112 ->
    56 -> 28 -> 14 -> 7. The paper gives 0.99 M parameters and 221 M MAdds for D=128; this
    implementation has 1,003,136 parameters (976,000 of them convolution and linear
    weights) and 220,965,376 multiply-accumulates.

    Args:
        input_shape: (C, H, W), at least 97x97 (the last map at least 7x7); 112x112 is the
            standard aligned crop. A larger image gives the GDConv a larger kernel.
        embedding_dim: embedding width D (128 in the paper).
    """

    def __init__(self, input_shape: Sequence[int], embedding_dim: int = 128) -> None:
        super().__init__()
        channels, height, width = _check_face_input(input_shape, "mobilefacenet")
        embedding_dim = check_count("embedding_dim", embedding_dim, 1)
        layers = [*_conv_unit(channels, 64, 3, 2), *_conv_unit(64, 64, 3, groups=64)]
        channels_in = 64
        for expansion, channels_out, repeats, stride in _BOTTLENECKS:
            for index in range(repeats):
                layers.append(
                    _Bottleneck(channels_in, channels_out, expansion, stride if index == 0 else 1)
                )
                channels_in = channels_out
        layers += _conv_unit(channels_in, 512)
        kernel = (last_map_size(height), last_map_size(width))
        layers += _conv_unit(512, 512, kernel, groups=512, activation=False)  # GDConv
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Linear(512, embedding_dim, bias=False)
        self.output_norm = nn.BatchNorm1d(embedding_dim)

    def forward(self, inputs: Tensor) -> Tensor:
        features = self.features(inputs)  # (B, 512, 1, 1)
        return self.output_norm(self.embedding(features.flatten(1)))  # (B, D)
