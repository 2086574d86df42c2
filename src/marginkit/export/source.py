"""A run folder's backbone alone, at a checkpoint, with the preprocessing of its inputs.

Unlike :func:`marginkit.evaluation.load_run`, nothing here needs the training data when the
run recorded ``preprocessing.json`` (every run trained since it exists); for an older run the
data is loaded once to recover the normalisation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from marginkit.data.preprocessing import Preprocessing
from marginkit.export.sidecar import ExportError

__all__ = ["RunBackbone", "load_run_backbone"]


@dataclass
class RunBackbone:
    """A run's backbone with what an export records about it.

    Attributes:
        run_dir: the run folder.
        config: the run's :class:`~marginkit.train.TrainConfig`.
        backbone: the backbone with the checkpoint's weights, in eval mode.
        preprocessing: the input it expects and how images become it.
        checkpoint: the checkpoint folder its weights come from.
        state: the checkpoint's training state (epoch, step, history).
    """

    run_dir: Path
    config: Any
    backbone: nn.Module
    preprocessing: Preprocessing
    checkpoint: Path
    state: dict[str, Any]

    def loss_record(self) -> dict[str, Any]:
        """The loss, its settings as configured (recipe applied, as in ``config.yaml``) and
        its hyper-parameters' values at the checkpoint (margin, scale, lambda ...)."""
        from marginkit.registry import LOSSES

        history = self.state.get("history") or [{}]
        return {
            "name": LOSSES.canonical(self.config.loss),
            "settings": dict(self.config.loss_args),
            "final_values": dict(history[-1].get("hyperparameters", {})),
        }

    def run_record(self) -> dict[str, Any]:
        """Where the weights come from: run folder, checkpoint, epoch, step, data set."""
        return {
            "folder": str(self.run_dir.resolve()),
            "checkpoint": self.checkpoint.name,
            "epoch": int(self.state.get("epoch", 0)),
            "step": int(self.state.get("step", 0)),
            "dataset": self.config.dataset,
            "seed": self.config.seed,
        }


def _checkpoint_folder(run_dir: Path, checkpoint: str | None) -> Path:
    """The checkpoint to export; :class:`ExportError` when there is none."""
    from marginkit.evaluation.load import run_checkpoint

    try:
        return run_checkpoint(run_dir, checkpoint)
    except FileNotFoundError as error:
        raise ExportError(str(error)) from None  # "run RUN has no complete checkpoint yet"


def _preprocessing(run_dir: Path, config: Any, data_dir: str | Path | None) -> Preprocessing:
    """The run's recorded preprocessing, or (an older run) the one of its data."""
    from marginkit.data.preprocessing import preprocessing_of
    from marginkit.train import load_bundle
    from marginkit.train.preprocessing import read_preprocessing

    recorded = read_preprocessing(run_dir)
    if recorded is not None:
        return recorded
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=str(data_dir))
    found = preprocessing_of(load_bundle(config, progress=False), config.dataset)
    if found is None:
        raise ExportError(
            f"{run_dir}: its data set {config.dataset!r} has no per-channel normalisation to record"
        )
    return found


def load_run_backbone(
    run_dir: str | Path,
    *,
    checkpoint: str | None = None,
    data_dir: str | Path | None = None,
) -> RunBackbone:
    """A run folder's backbone at a checkpoint (the head is not built).

    Args:
        run_dir: a run folder written by :func:`marginkit.train.fit`.
        checkpoint: a checkpoint's name (``epoch-0029``); None: the newest intact one.
        data_dir: where the run's data set now is; read only for a run without
            ``preprocessing.json`` (trained before it existed).

    Raises:
        ExportError: not a run folder, or it has no (such) checkpoint; names the folder.
        CheckpointError: the checkpoint is damaged (names it and the newest intact one).
    """
    from marginkit.models import build_backbone
    from marginkit.train import load_checkpoint, load_config

    run_dir = Path(run_dir)
    folder = _checkpoint_folder(run_dir, checkpoint)
    config = load_config(run_dir / "config.yaml")
    loaded = load_checkpoint(folder)  # verified against its manifest
    preprocessing = _preprocessing(run_dir, config, data_dir)
    backbone = build_backbone(config.backbone, preprocessing.input_shape, config.embedding_dim)
    prefix = "backbone."
    weights = {k[len(prefix) :]: v for k, v in loaded.weights.items() if k.startswith(prefix)}
    backbone.load_state_dict(weights, strict=True)
    backbone.eval()
    return RunBackbone(run_dir, config, backbone, preprocessing, folder, loaded.state)
