"""A tiny trained run for the export tests (imported by conftest.py and the tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from marginkit.data import DataBundle
from marginkit.train import TrainConfig


@dataclass
class TinyRun:
    """A one-epoch ResNet-20 (batch norm included) CosFace run on 16x16 RGB images.

    Attributes:
        images: the image folder it trained on (``c<k>/<i>.png``, 3 classes x 4).
        names: the images' relative paths, sorted (the loader's order).
        run_dir: the run folder.
        config: the run's options.
        backbone: the trained backbone (eval mode).
        bundle: the data it trained on.
    """

    images: Path
    names: list[str]
    run_dir: Path
    config: TrainConfig
    backbone: nn.Module
    bundle: DataBundle
