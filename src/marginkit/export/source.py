"""A run folder's backbone alone, at a checkpoint, with the preprocessing of its inputs,
for export: :func:`marginkit.evaluation.load.load_run_backbone` (shared with ``marginkit
verify``) with its failures as :class:`~marginkit.export.sidecar.ExportError`.

Nothing here needs the training data when the run recorded ``preprocessing.json`` (every run
trained since it exists); for an older run the data is loaded once to recover the
normalisation.
"""

from __future__ import annotations

from pathlib import Path

from marginkit.evaluation.load import RunBackbone
from marginkit.evaluation.load import load_run_backbone as _load_run_backbone
from marginkit.export.sidecar import ExportError

__all__ = ["RunBackbone", "load_run_backbone"]


def load_run_backbone(
    run_dir: str | Path,
    *,
    checkpoint: str | None = None,
    data_dir: str | Path | None = None,
    backbone: str | None = None,
) -> RunBackbone:
    """A run folder's backbone at a checkpoint (the head is not built).

    Args:
        run_dir: a run folder written by :func:`marginkit.train.fit`.
        checkpoint: a checkpoint's name (``epoch-0029``); None: the newest intact one.
        data_dir: where the run's data set now is; read only for a run without
            ``preprocessing.json`` (trained before it existed).
        backbone: the ``module:callable`` backbone the run records, confirming that it may
            be imported (None: only a registered backbone is built).

    Raises:
        ExportError: not a run folder, or it has no (such) checkpoint; names the folder.
        CheckpointError: the checkpoint is damaged (names it and the newest intact one), or
            its weights do not fit the run's config.
        BackboneError: the run records an import spec that ``backbone`` does not confirm.
        marginkit.data.DataError: ``preprocessing.json`` is malformed, or the run's data
            set has no per-channel normalisation (names the file or the folder).
    """
    try:
        return _load_run_backbone(
            run_dir, checkpoint=checkpoint, data_dir=data_dir, backbone=backbone
        )
    except FileNotFoundError as error:  # "run RUN has no complete checkpoint yet"
        raise ExportError(str(error)) from None
