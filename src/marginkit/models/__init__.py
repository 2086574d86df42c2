"""Backbones: networks mapping inputs (B, *input_shape) to embeddings (B, embedding_dim).

>>> from marginkit.models import build_backbone
>>> net = build_backbone("lenetpp", input_shape=(1, 28, 28), embedding_dim=2)

Registered names (:func:`available_backbones`): ``lenetpp``, ``mnistnet``, ``resnet20``,
``facenet``, ``mlp``. Each network ends in a linear layer to the embedding, with no
activation or normalisation after it: the margin head decides the geometry.
:func:`~marginkit.models.flops.count_macs` measures a network's multiply-accumulates.
"""

from marginkit.models.backbones import (
    MLP,
    FaceNet,
    LeNetPP,
    MNISTNet,
    ResNet20,
    available_backbones,
    build_backbone,
)
from marginkit.models.flops import count_macs

__all__ = [
    "MLP",
    "FaceNet",
    "LeNetPP",
    "MNISTNet",
    "ResNet20",
    "available_backbones",
    "build_backbone",
    "count_macs",
]
