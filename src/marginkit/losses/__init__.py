"""Margin-based softmax heads: one ``nn.Module`` per method, all with the same interface.

>>> import torch
>>> from marginkit.losses import ArcFace
>>> head = ArcFace(num_classes=10, embedding_dim=2)
>>> loss = head(torch.randn(8, 2), torch.randint(0, 10, (8,)))
>>> head.logits(torch.randn(8, 2)).shape
torch.Size([8, 10])
"""

from marginkit.losses.adacos import AdaCos
from marginkit.losses.adaface import AdaFace
from marginkit.losses.arcface import ArcFace
from marginkit.losses.camsoftmax import CamSoftmax
from marginkit.losses.combined import CombinedMargin
from marginkit.losses.cosface import CosFace
from marginkit.losses.curricularface import CurricularFace
from marginkit.losses.head import MarginHead
from marginkit.losses.lsoftmax import LSoftmax, SphereFace
from marginkit.losses.magface import MagFace
from marginkit.losses.normface import NormFace
from marginkit.losses.pml import from_pml
from marginkit.losses.registry import available, build, resolve
from marginkit.losses.sampling import ClassSampledHead
from marginkit.losses.softmax import Softmax
from marginkit.losses.subcenter import SubCenterArcFace
from marginkit.losses.virtual import VirtualSoftmax

AMSoftmax = CosFace

__all__ = [
    "AMSoftmax",
    "AdaCos",
    "AdaFace",
    "ArcFace",
    "CamSoftmax",
    "ClassSampledHead",
    "CombinedMargin",
    "CosFace",
    "CurricularFace",
    "LSoftmax",
    "MagFace",
    "MarginHead",
    "NormFace",
    "Softmax",
    "SphereFace",
    "SubCenterArcFace",
    "VirtualSoftmax",
    "available",
    "build",
    "from_pml",
    "resolve",
]
