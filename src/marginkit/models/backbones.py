"""The backbone networks and their name registry.

Every backbone maps a batch of inputs (B, *input_shape) to embeddings (B, embedding_dim).
The ones here end in an ``nn.Linear`` with nothing after it, so the margin head sees the raw
features (their norm matters for the unnormalised losses; the angle for all of them); the
face-recognition networks of :mod:`marginkit.models.faces` end, as in their papers, in a
batch norm after that layer, which shifts and scales each feature but does not normalise the
embedding's length either.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from marginkit._validation import check_count
from marginkit.models._shapes import BackboneError, check_min_size, check_shape
from marginkit.registry import BACKBONES, is_spec

__all__ = [
    "BACKBONES",
    "MLP",
    "FaceNet",
    "LeNetPP",
    "MNISTNet",
    "ResNet20",
    "available_backbones",
    "build_backbone",
    "confirm_backbone",
    "has_normalization",
]

#: Layers that normalise activations (batch, instance, layer, group and RMS norm).
NORMALIZATION_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


# --------------------------------------------------------------------------- helpers
def has_normalization(backbone: nn.Module) -> bool:
    """Whether ``backbone`` holds a normalisation layer (:data:`NORMALIZATION_LAYERS`).

    Such a network starts with embeddings of norm about 1 or more (MLP 3.1, ResNet-20 5.1,
    MNISTNet 6.1 in 64-D), one without can start far smaller (LeNet++ 0.16); the
    ``marginkit`` recipe's learning rate for the normalised heads follows from it
    (``docs/recipes.md``, cause 2).
    """
    return any(isinstance(module, NORMALIZATION_LAYERS) for module in backbone.modules())


def _flat_features(features: nn.Module, shape: tuple[int, ...]) -> int:
    """Number of features ``features`` produces for one input of ``shape``."""
    with torch.no_grad():
        return int(features(torch.zeros(1, *shape)).flatten(1).shape[1])


# --------------------------------------------------------------------------------- MLP
class MLP(nn.Module):
    """A multi-layer perceptron for vector inputs (anything is flattened first).

    ``Linear -> BatchNorm1d -> ReLU`` per hidden layer, then a linear layer to the
    embedding.

    Args:
        input_shape: shape of one input, e.g. ``(64,)`` or ``(1, 8, 8)``.
        embedding_dim: embedding width D.
        hidden: widths of the hidden layers.
    """

    def __init__(
        self, input_shape: Sequence[int], embedding_dim: int, hidden: Sequence[int] = (256, 256)
    ) -> None:
        super().__init__()
        shape = check_shape(input_shape, image=False, name="mlp")
        embedding_dim = check_count("embedding_dim", embedding_dim, 1)
        widths = [math.prod(shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], embedding_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.layers(inputs)  # (B, *input_shape) -> (B, D)


# ------------------------------------------------------------------------------ LeNet++
class LeNetPP(nn.Module):
    """LeNet++: the MNIST net of the center-loss paper (Wen et al., ECCV 2016), used for
    the 2-D feature pictures of L-Softmax (Liu et al., ICML 2016).

    Three stages of two 5x5 convolutions (32-32, 64-64, 128-128 channels, padding 2), each
    followed by PReLU, and a 2x2 max-pool after each stage; then a linear layer to the
    embedding (with ``embedding_dim=2`` it draws the classic 2-D feature picture).
    For 28x28 inputs: 28 -> 14 -> 7 -> 3, so the linear layer sees 128 * 3 * 3 features.

    Args:
        input_shape: (C, H, W), at least 8x8.
        embedding_dim: embedding width D.
    """

    def __init__(self, input_shape: Sequence[int], embedding_dim: int) -> None:
        super().__init__()
        shape = check_shape(input_shape, image=True, name="lenetpp")
        check_min_size(shape, 8, "lenetpp")
        embedding_dim = check_count("embedding_dim", embedding_dim, 1)
        layers: list[nn.Module] = []
        channels_in = shape[0]
        for channels in (32, 64, 128):
            for _ in range(2):
                layers += [nn.Conv2d(channels_in, channels, 5, padding=2), nn.PReLU(channels)]
                channels_in = channels
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Linear(_flat_features(self.features, shape), embedding_dim)

    def forward(self, inputs: Tensor) -> Tensor:
        features = self.features(inputs)  # (B, 128, H/8, W/8)
        return self.embedding(features.flatten(1))  # (B, D)


# ----------------------------------------------------------------------------- MNISTNet
def _conv_bn(channels_in: int, channels_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.PReLU(channels_out),
    ]


class MNISTNet(nn.Module):
    """The official L-Softmax MNIST network (Liu et al., ICML 2016, and the authors' code).

    A 3x3 convolution to 64 channels, then three stages of three 3x3 convolutions (64, 128
    and 256 channels), batch norm after every convolution, a 2x2 max-pool after each stage,
    and a linear layer to the embedding (the paper's FC 512 is ``embedding_dim=512``).
    The activation after each batch norm is PReLU (marginkit's choice: the description this
    follows names none).

    Args:
        input_shape: (C, H, W), at least 8x8.
        embedding_dim: embedding width D.
    """

    def __init__(self, input_shape: Sequence[int], embedding_dim: int) -> None:
        super().__init__()
        shape = check_shape(input_shape, image=True, name="mnistnet")
        check_min_size(shape, 8, "mnistnet")
        embedding_dim = check_count("embedding_dim", embedding_dim, 1)
        layers = _conv_bn(shape[0], 64)
        channels_in = 64
        for channels in (64, 128, 256):
            for _ in range(3):
                layers += _conv_bn(channels_in, channels)
                channels_in = channels
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Linear(_flat_features(self.features, shape), embedding_dim)

    def forward(self, inputs: Tensor) -> Tensor:
        features = self.features(inputs)  # (B, 256, H/8, W/8)
        return self.embedding(features.flatten(1))  # (B, D)


# ----------------------------------------------------------------------------- ResNet20
def residual_shortcut(channels_in: int, channels_out: int, stride: int) -> nn.Module:
    """A residual block's shortcut (He et al., CVPR 2016): the identity where the shape is
    kept, else a 1x1 convolution with ``stride`` and batch norm (projection shortcut)."""
    if stride == 1 and channels_in == channels_out:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
        nn.BatchNorm2d(channels_out),
    )


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut = residual_shortcut(channels_in, channels_out, stride)

    def forward(self, inputs: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(inputs)))  # (B, C_out, H/s, W/s)
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(inputs))


class ResNet20(nn.Module):
    """ResNet-20 for 32x32 images (He et al., CVPR 2016, section 4.2).

    A 3x3 convolution to 16 channels, three stages of three basic blocks (16, 32, 64
    channels; stride 2 at the start of the second and third), global average pooling and a
    linear layer to the embedding. Down-sampling shortcuts are 1x1 conv + batch norm
    (the paper's option B) -- about 0.27 M parameters before the embedding layer.

    Args:
        input_shape: (C, H, W), at least 8x8 (32x32 for CIFAR/SVHN).
        embedding_dim: embedding width D.
    """

    def __init__(self, input_shape: Sequence[int], embedding_dim: int) -> None:
        super().__init__()
        shape = check_shape(input_shape, image=True, name="resnet20")
        check_min_size(shape, 8, "resnet20")
        embedding_dim = check_count("embedding_dim", embedding_dim, 1)
        self.stem = nn.Sequential(
            nn.Conv2d(shape[0], 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        channels_in = 16
        for stage, channels in enumerate((16, 32, 64)):
            for index in range(3):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(_BasicBlock(channels_in, channels, stride))
                channels_in = channels
        self.blocks = nn.Sequential(*blocks)
        self.embedding = nn.Linear(64, embedding_dim)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, inputs: Tensor) -> Tensor:
        features = self.blocks(self.stem(inputs))  # (B, 64, H/4, W/4)
        pooled = features.mean(dim=(2, 3))  # (B, 64)
        return self.embedding(pooled)  # (B, D)


# ------------------------------------------------------------------------------ FaceNet
class _FaceResidual(nn.Module):
    """SphereFace's residual unit: ``x + PReLU(conv(PReLU(conv(x))))``, no batch norm."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.PReLU(channels),
        )

    def forward(self, inputs: Tensor) -> Tensor:
        return inputs + self.body(inputs)


class FaceNet(nn.Module):
    """A narrow SphereFace-style residual network for aligned 112x96 RGB face crops.

    SphereFace-20 (Liu et al., CVPR 2017, Table 2) has four stages, each a stride-2 3x3
    convolution with PReLU followed by residual units (1, 2, 4, 1 of them) of two 3x3
    convolutions with PReLU, at 64/128/256/512 channels, then FC 512. This net keeps the
    design at a width and depth that trains on a CPU: ``widths`` (32, 64, 128, 256) and
    ``units`` (1, 2, 2, 1) by default (about 2.3 M parameters before the FC layer). For
    112x96 inputs the last feature map is 7x6.

    Args:
        input_shape: (C, H, W), at least 16x16 (112x96 for aligned faces).
        embedding_dim: embedding width D (512 in SphereFace/ArcFace).
        widths: channels of the four stages.
        units: residual units per stage.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        embedding_dim: int = 512,
        widths: Sequence[int] = (32, 64, 128, 256),
        units: Sequence[int] = (1, 2, 2, 1),
    ) -> None:
        super().__init__()
        shape = check_shape(input_shape, image=True, name="facenet")
        check_min_size(shape, 16, "facenet")
        embedding_dim = check_count("embedding_dim", embedding_dim, 1)
        if len(widths) != len(units):
            raise ValueError(
                f"widths and units must have the same length; got {len(widths)} and {len(units)}"
            )
        layers: list[nn.Module] = []
        channels_in = shape[0]
        for channels, count in zip(widths, units, strict=True):
            layers += [nn.Conv2d(channels_in, channels, 3, stride=2, padding=1), nn.PReLU(channels)]
            layers += [_FaceResidual(channels) for _ in range(count)]
            channels_in = channels
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Linear(_flat_features(self.features, shape), embedding_dim)

    def forward(self, inputs: Tensor) -> Tensor:
        features = self.features(inputs)  # (B, 256, H/16, W/16)
        return self.embedding(features.flatten(1))  # (B, D)


# ----------------------------------------------------------------------------- registry
def available_backbones() -> list[str]:
    """The registered backbone names (:data:`marginkit.registry.BACKBONES`)."""
    return BACKBONES.names()


def build_backbone(name: str, input_shape: Sequence[int], embedding_dim: int) -> nn.Module:
    """Construct the backbone registered as ``name``, or the one an import spec builds.

    A registered builder is called as ``builder(input_shape, embedding_dim)``. An import spec
    ``"module:callable"`` (``--backbone my_pkg.nets:build``) imports ``callable`` from
    ``module`` (which must be importable: installed, or on ``sys.path``) and calls it with
    keywords: ``callable(embedding_dim=D)``, plus ``input_shape=(C, H, W)`` when its
    signature has an ``input_shape`` parameter (or ``**kwargs``). It must return an
    ``nn.Module`` mapping (B, *input_shape) to (B, embedding_dim).

    Args:
        name: one of :func:`available_backbones` (any case, ``-``/``_`` ignored), or a
            ``module:callable`` import spec.
        input_shape: shape of one input without the batch axis, (C, H, W) or (F,).
        embedding_dim: embedding width D.

    Returns:
        A module mapping (B, *input_shape) to (B, embedding_dim).

    Raises:
        UnknownNameError: an unknown name (listing the known ones), or a spec whose module
            or attribute does not exist.
        BackboneError: images too small for the backbone, or a spec whose callable returns
            something other than an ``nn.Module``.
        TypeError, ValueError: a bad shape or embedding width.
    """
    builder = BACKBONES.get(name)
    if not is_spec(name):
        return builder(input_shape, embedding_dim)
    embedding_dim = check_count("embedding_dim", embedding_dim, 1)
    keywords: dict[str, Any] = {"embedding_dim": embedding_dim}
    if _accepts(builder, "input_shape"):
        keywords["input_shape"] = tuple(input_shape)
    spec_builder: Callable[..., object] = builder  # the user's callable: anything may come back
    network = spec_builder(**keywords)
    if not isinstance(network, nn.Module):
        raise BackboneError(
            f"backbone {name.strip()!r} returned a {type(network).__name__}, not a torch.nn.Module"
        )
    return network


def confirm_backbone(name: str, confirmed: str | None, record: str | Path) -> None:
    """Refuse a backbone import spec that a file records unless the user confirms it.

    A run's ``config.yaml`` or an export's ``.json`` record may come from someone else; a
    ``module:callable`` spec in it would import that module and call the callable, which can
    run any code. It is built only when the user names the same spec (``--backbone SPEC``,
    ``backbone=SPEC``). A registered name imports only marginkit's own code and passes.

    Args:
        name: the recorded backbone (a registered name or a ``module:callable`` spec).
        confirmed: the backbone the user named, or None.
        record: the file that records ``name``, for the message.

    Raises:
        BackboneError: an unconfirmed spec, or a ``confirmed`` backbone other than the
            recorded one; one line naming ``record`` and how to confirm.
        UnknownNameError: ``confirmed`` is neither a registered name nor a spec.
    """
    if confirmed is not None:
        if BACKBONES.canonical(confirmed) != BACKBONES.canonical(name):
            raise BackboneError(
                f"{record}: records backbone {name.strip()!r}, not {confirmed.strip()!r} "
                "(--backbone confirms the recorded one)"
            )
        return
    if is_spec(name):
        spec = name.strip()
        raise BackboneError(
            f"{record}: backbone {spec!r} would import module {spec.partition(':')[0]!r} and run "
            f"its code; only if you trust it, confirm with --backbone {spec}"
        )


def _accepts(function: Callable[..., Any], keyword: str) -> bool:
    """Whether ``function`` can be called with the keyword argument ``keyword``."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return False
    return any(
        (p.name == keyword and p.kind is not p.POSITIONAL_ONLY) or p.kind is p.VAR_KEYWORD
        for p in parameters
    )
