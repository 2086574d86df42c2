"""Rebuild a saved run: its config, its networks at a checkpoint, and its data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["load_run", "run_checkpoint"]


def load_run(
    run_dir: str | Path,
    progress: bool = False,
    *,
    data_dir: str | Path | None = None,
    checkpoint: str | None = None,
    bundle: Any = None,
) -> tuple[Any, nn.Module, nn.Module, Any]:
    """Rebuild a run folder written by :func:`marginkit.train.fit`.

    Args:
        run_dir: the run folder (holding ``config.yaml`` and ``checkpoints/``).
        progress: show data-loading progress.
        data_dir: read the data set from this folder instead of the run's ``data_dir``
            (the data moved, or the run found it through ``MARGINKIT_DATA``).
        checkpoint: the checkpoint to load by name (``epoch-0029``); None: the newest.
        bundle: the run's data, already in memory (a comparison grid); None: loaded as in
            training.

    Returns:
        ``(config, backbone, head, bundle)``: the run's :class:`~marginkit.train.TrainConfig`,
        its backbone and head with the checkpoint's weights (eval mode; which checkpoint:
        :func:`run_checkpoint`), and the data set loaded as in training.

    Raises:
        FileNotFoundError: the folder, its config or the checkpoint is missing.
        CheckpointError: the checkpoint (by default the newest) is damaged; the message
            names the file and the newest intact checkpoint.
    """
    import dataclasses

    from marginkit.train import build_models, load_bundle, load_config
    from marginkit.train.checkpoint import load_checkpoint, load_weights

    run_dir = Path(run_dir)
    folder = run_checkpoint(run_dir, checkpoint)
    config = load_config(run_dir / "config.yaml")
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=str(data_dir))
    loaded = load_checkpoint(folder)  # verified before anything slow happens
    if bundle is None:
        bundle = load_bundle(config, progress=progress)
    backbone, head = build_models(config, bundle)
    load_weights(loaded, backbone, head)
    backbone.eval()
    head.eval()
    return config, backbone, head, bundle


def run_checkpoint(run_dir: str | Path, name: str | None = None) -> Path:
    """The checkpoint folder of ``run_dir`` to measure: ``name``, or the newest one.

    Raises:
        FileNotFoundError: not a run folder, or there is no such checkpoint (or none).
        CheckpointError: the newest checkpoint is damaged (names the newest intact one:
            pass its name to measure it).
    """
    from marginkit.train.checkpoint import CHECKPOINTS, CheckpointError, find_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: no config.yaml")
    if name is not None:
        folder = run_dir / CHECKPOINTS / name
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
