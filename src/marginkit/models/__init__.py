"""Backbones: networks mapping inputs (B, *input_shape) to embeddings (B, embedding_dim).

>>> from marginkit.models import build_backbone
>>> net = build_backbone("lenetpp", input_shape=(1, 28, 28), embedding_dim=2)
>>> face = build_backbone("iresnet50", input_shape=(3, 112, 112), embedding_dim=512)

Registered names (:func:`available_backbones`): ``lenetpp``, ``mnistnet``, ``resnet20``,
``facenet``, ``iresnet18``, ``iresnet34``, ``iresnet50``, ``iresnet100``,
``mobilefacenet``, ``mlp``; or any ``nn.Module`` of one's own through a ``module:callable``
import spec (:func:`build_backbone`; one recorded in a file is built only when the user
confirms it: :func:`confirm_backbone`). The small networks end in a linear layer to the
embedding, with no activation or normalisation after it; the face networks
(:mod:`marginkit.models.faces`) end, as in their papers, in a batch norm after it, which
does not normalise the embedding's length: the margin head decides the geometry.
:func:`~marginkit.models.flops.count_macs` measures a network's multiply-accumulates.
"""

from marginkit.models._shapes import BackboneError
from marginkit.models.backbones import (
    MLP,
    FaceNet,
    LeNetPP,
    MNISTNet,
    ResNet20,
    available_backbones,
    build_backbone,
    confirm_backbone,
    has_normalization,
)
from marginkit.models.faces import (
    IResNet,
    MobileFaceNet,
    arcface_torch_names,
    iresnet18,
    iresnet34,
    iresnet50,
    iresnet100,
)
from marginkit.models.flops import count_macs

__all__ = [
    "MLP",
    "BackboneError",
    "FaceNet",
    "IResNet",
    "LeNetPP",
    "MNISTNet",
    "MobileFaceNet",
    "ResNet20",
    "arcface_torch_names",
    "available_backbones",
    "build_backbone",
    "confirm_backbone",
    "count_macs",
    "has_normalization",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
]
