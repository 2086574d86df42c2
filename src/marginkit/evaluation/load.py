"""Rebuild a saved run: its config, its networks at a checkpoint, and its data.

- :func:`load_run`: config, backbone and head at a checkpoint, and the data set (``eval``).
- :func:`load_run_backbone`: the backbone alone with the preprocessing of its inputs, from
  ``RUN/preprocessing.json`` without the training data (``verify``, ``export``, ``embed``);
  a run trained before that file existed has its data loaded once for the normalisation.
- :func:`run_checkpoint`: which checkpoint folder is read.
- :func:`run_records`: the files of a run folder that these read besides the checkpoint.

A ``module:callable`` backbone recorded in a run's ``config.yaml`` is built only when the
caller confirms it (``backbone=``, ``--backbone``: :func:`marginkit.models.confirm_backbone`):
the folder may be someone else's.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from marginkit.data.preprocessing import Preprocessing
from marginkit.runfolder import RunFolder

if TYPE_CHECKING:
    from marginkit.data.bundle import DataBundle
    from marginkit.losses.head import MarginHead
    from marginkit.train.config import TrainConfig

__all__ = [
    "RunBackbone",
    "load_run",
    "load_run_backbone",
    "run_checkpoint",
    "run_preprocessing",
    "run_records",
]


def load_run(
    run_dir: str | Path,
    progress: bool = False,
    *,
    data_dir: str | Path | None = None,
    checkpoint: str | None = None,
    bundle: DataBundle | None = None,
    backbone: str | None = None,
) -> tuple[TrainConfig, nn.Module, MarginHead, DataBundle]:
    """Rebuild a run folder written by :func:`marginkit.train.fit`.

    Args:
        run_dir: the run folder (holding ``config.yaml`` and ``checkpoints/``).
        progress: show data-loading progress.
        data_dir: read the data set from this folder instead of the run's ``data_dir``
            (the data moved, or the run found it through ``MARGINKIT_DATA``).
        checkpoint: the checkpoint to load by name (``epoch-0029``); None: the newest.
        bundle: the run's data, already in memory (a comparison grid); None: loaded as in
            training.
        backbone: the ``module:callable`` backbone the run records, confirming that it may
            be imported (None: only a registered backbone is built).

    Returns:
        ``(config, backbone, head, bundle)``: the run's :class:`~marginkit.train.TrainConfig`,
        its backbone and head with the checkpoint's weights (eval mode; which checkpoint:
        :func:`run_checkpoint`), and the data set loaded as in training.

    Raises:
        FileNotFoundError: the folder, its config or the checkpoint is missing.
        CheckpointError: the checkpoint (by default the newest) is damaged, or its weights
            do not fit the networks of the run's config; the message names it.
        BackboneError: the run records an import spec that ``backbone`` does not confirm.
    """
    import dataclasses

    from marginkit.models import confirm_backbone
    from marginkit.train import build_models, load_bundle, load_config
    from marginkit.train.checkpoint import load_checkpoint, load_weights

    run_dir = Path(run_dir)
    folder = run_checkpoint(run_dir, checkpoint)
    config = load_config(RunFolder(run_dir).config)
    confirm_backbone(config.backbone, backbone, RunFolder(run_dir).config)
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=str(data_dir))
    loaded = load_checkpoint(folder)  # verified before anything slow happens
    if bundle is None:
        bundle = load_bundle(config, progress=progress)
    network, head = build_models(config, bundle)
    load_weights(loaded, network, head)
    network.eval()
    head.eval()
    return config, network, head, bundle


def run_checkpoint(run_dir: str | Path, name: str | None = None) -> Path:
    """The checkpoint folder of ``run_dir`` to measure: ``name`` (``"best"``: the one that
    ``checkpoints/best`` names, written by a run with ``--verify``), or the newest one.

    Raises:
        FileNotFoundError: not a run folder, or there is no such checkpoint (or none).
        CheckpointError: the newest checkpoint is damaged (names the newest intact one:
            pass its name to measure it); ``name`` (or what ``best`` names) is not the name
            of a folder in the run's checkpoints folder (a path: another run's checkpoint
            would be scored under this run's name).
    """
    from marginkit.train.checkpoint import CheckpointError, find_checkpoint
    from marginkit.train.verification import BEST

    run_dir = Path(run_dir)
    run = RunFolder(run_dir)
    if not run.holds_run():  # a run of a newer format is refused here
        raise FileNotFoundError(f"{run_dir} is not a run folder: no {run.config.name}")
    if name is not None and not _is_plain_name(name):
        raise CheckpointError(
            f"checkpoint: expected the name of a checkpoint of run {run_dir} (epoch-0029, "
            f"or best), not a path: {name!r}"
        )
    if name == BEST and (run.checkpoints / BEST).is_file():
        name = (run.checkpoints / BEST).read_text().strip()  # the best checkpoint's
        if not _is_plain_name(name):
            raise CheckpointError(
                f"{run.checkpoints / BEST}: expected the name of a checkpoint of the run, "
                f"got {name!r}"
            )
    if name is not None:
        folder = run.checkpoints / name
        if not folder.is_dir():
            raise FileNotFoundError(f"run {run_dir} has no checkpoint {name!r}")
        return folder
    search = find_checkpoint(run_dir)
    if search.damaged:
        hint = "" if search.folder is None else f" (--checkpoint {search.folder.name})"
        raise CheckpointError(search.report() + hint)
    if search.folder is None:
        raise FileNotFoundError(f"run {run_dir} has no complete checkpoint yet")
    return search.folder


def _is_plain_name(name: str) -> bool:
    """Whether ``name`` names a folder inside one folder: no separator, not ``.`` or ``..``."""
    separators = {"/", os.sep, os.altsep or "/"}
    return bool(name) and name not in (".", "..") and not any(s in name for s in separators)


def run_records(run_dir: str | Path) -> list[Path]:
    """The files of ``run_dir`` that loading it reads besides the checkpoint (its options,
    preprocessing and training figures): an output never goes there
    (:func:`marginkit.runfolder.check_output_file`)."""
    return RunFolder(run_dir).records()


@dataclass
class RunBackbone:
    """A run's backbone at a checkpoint, with what is known about its inputs.

    Attributes:
        run_dir: the run folder.
        config: the run's :class:`~marginkit.train.TrainConfig`.
        backbone: the backbone with the checkpoint's weights, in eval mode.
        preprocessing: the input it expects and how images become it.
        checkpoint: the checkpoint folder its weights come from.
        state: the checkpoint's training state (epoch, step, history).
    """

    run_dir: Path
    config: TrainConfig
    backbone: nn.Module
    preprocessing: Preprocessing
    checkpoint: Path
    state: dict[str, Any]

    def loss_record(self) -> dict[str, Any]:
        """The loss, its settings as configured (recipe applied, as in ``config.yaml``) and
        its hyper-parameters' values at the checkpoint (margin, scale, lambda ...)."""
        from marginkit.registry import LOSSES

        history = self.state.get("history") or [{}]
        # a best checkpoint (--verify) taken within an epoch records its own values
        values = self.state.get("hyperparameters", history[-1].get("hyperparameters", {}))
        return {
            "name": LOSSES.canonical(self.config.loss),
            "settings": dict(self.config.loss_args),
            "final_values": dict(values),
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


def run_preprocessing(
    run_dir: str | Path, config: TrainConfig, data_dir: str | os.PathLike[str] | None = None
) -> Preprocessing:
    """The run's recorded preprocessing (``RUN/preprocessing.json``), or for an older run
    without that file, the one of its data (loaded once, from ``data_dir`` if given).

    Raises:
        marginkit.data.DataError: the record is malformed, or the run's data set has no
            per-channel normalisation (names the run folder).
    """
    from marginkit.data.errors import DataError
    from marginkit.data.preprocessing import preprocessing_of
    from marginkit.train import load_bundle
    from marginkit.train.preprocessing import read_preprocessing

    recorded = read_preprocessing(Path(run_dir))
    if recorded is not None:
        return recorded
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=str(data_dir))
    found = preprocessing_of(load_bundle(config, progress=False), config.dataset)
    if found is None:
        raise DataError(
            f"{run_dir}: its data set {config.dataset!r} has no per-channel normalisation to record"
        )
    return found


def load_run_backbone(
    run_dir: str | Path,
    *,
    checkpoint: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    backbone: str | None = None,
) -> RunBackbone:
    """A run folder's backbone at a checkpoint (the head is not built), without its data.

    Args:
        run_dir: a run folder written by :func:`marginkit.train.fit`.
        checkpoint: a checkpoint's name (``epoch-0029``); None: the newest intact one.
        data_dir: where the run's data set now is; read only for a run without
            ``preprocessing.json`` (trained before it existed).
        backbone: the ``module:callable`` backbone the run records, confirming that it may
            be imported (None: only a registered backbone is built).

    Raises:
        FileNotFoundError: not a run folder, or it has no (such) checkpoint (as
            :func:`run_checkpoint`).
        CheckpointError: the checkpoint is damaged (names it and the newest intact one), or
            its weights do not fit the backbone of the run's config (names the difference).
        BackboneError: the run records an import spec that ``backbone`` does not confirm.
        marginkit.data.DataError: no preprocessing can be found (:func:`run_preprocessing`).
    """
    from marginkit.models import build_backbone, confirm_backbone
    from marginkit.train import load_checkpoint, load_config
    from marginkit.train.checkpoint import load_part

    run_dir = Path(run_dir)
    folder = run_checkpoint(run_dir, checkpoint)
    config = load_config(RunFolder(run_dir).config)
    confirm_backbone(config.backbone, backbone, RunFolder(run_dir).config)
    loaded = load_checkpoint(folder)  # verified against its manifest
    preprocessing = run_preprocessing(run_dir, config, data_dir)
    network = build_backbone(config.backbone, preprocessing.input_shape, config.embedding_dim)
    load_part(loaded, "backbone", network)
    network.eval()
    return RunBackbone(run_dir, config, network, preprocessing, folder, loaded.state)
