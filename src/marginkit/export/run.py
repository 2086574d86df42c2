"""``export_run``: a run's backbone into one deployable file and its JSON record."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from marginkit.export.formats import (
    CHECK_BATCH_SIZES,
    EXAMPLE_BATCH,
    INPUT_NAME,
    OUTPUT_NAME,
    WRITERS,
    largest_difference,
    read_model,
)
from marginkit.export.sidecar import ExportError, check_format, file_digest, sidecar_path
from marginkit.export.source import RunBackbone, load_run_backbone

__all__ = ["TOLERANCE", "export_run"]

#: The largest absolute difference allowed between an exported file's embeddings and
#: PyTorch's, on the same inputs.
TOLERANCE = 1e-4


def _runtime(format: str) -> str:
    if format == "onnx":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    return f"torch {torch.__version__}"


def _record(source: RunBackbone, format: str, out: Path) -> dict[str, Any]:
    """The record's fields that do not depend on the written file."""
    from marginkit import __version__

    return {
        "format": format,
        "file": out.name,
        "marginkit_version": __version__,
        "torch_version": torch.__version__,
        "backbone": source.config.backbone,
        "embedding_dim": int(source.config.embedding_dim),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "batch": "dynamic",
        "preprocessing": source.preprocessing.to_dict(),
        "loss": source.loss_record(),
        "run": source.run_record(),
    }


def _write_checked(
    source: RunBackbone,
    format: str,
    out: Path,
    temporary: Path,
    record: dict[str, Any],
    tolerance: float,
) -> dict[str, Any]:
    """Write the file at ``temporary``, read it back and compare with PyTorch; the record's
    format and check fields.

    Raises:
        ExportError: the file's embeddings differ by more than ``tolerance`` (or have
            another shape): names ``out`` and the difference.
    """
    shape = source.preprocessing.input_shape
    example = torch.randn((EXAMPLE_BATCH, *shape), generator=torch.Generator().manual_seed(1))
    try:
        fields = WRITERS[format](source.backbone, example, temporary)
        # the record's backbone is the run's, which load_run_backbone built (confirmed)
        forward = read_model(temporary, format, record, backbone=source.config.backbone)
        difference = largest_difference(forward, source.backbone, shape)
    except ExportError as error:
        raise ExportError(f"{out}: {error}; nothing was written") from error.__cause__
    if not difference <= tolerance:
        raise ExportError(
            f"{out}: the {format} model's embeddings differ from PyTorch's by up to "
            f"{difference:.3g} (tolerance {tolerance:g}, batches of "
            f"{', '.join(map(str, CHECK_BATCH_SIZES))}); nothing was written"
        )
    check = {
        "runtime": _runtime(format),
        "batch_sizes": list(CHECK_BATCH_SIZES),
        "max_abs_difference": difference,
        "tolerance": tolerance,
    }
    return {**fields, "check": check}


def export_run(
    run_dir: str | Path,
    format: str,
    out_path: str | Path,
    *,
    checkpoint: str | None = None,
    data_dir: str | Path | None = None,
    tolerance: float = TOLERANCE,
    force: bool = False,
    backbone: str | None = None,
) -> Path:
    """Export a run's backbone (not the head) to ``out_path``, with its record beside it.

    The file is written under a temporary name, read back with its own runtime
    (onnxruntime for ONNX) and compared with the PyTorch backbone on random batches of
    1 and 3 inputs (the export saw 2: the batch axis is dynamic); only a file within
    ``tolerance`` is moved into place, with the mode the umask gives, followed by its
    record ``out_path + ".json"`` (:mod:`marginkit.export.sidecar`). An existing file or
    record is replaced only with ``force``; a file of the run, or anything inside a run's
    checkpoints folder, never.

    Args:
        run_dir: a run folder written by :func:`marginkit.train.fit`.
        format: ``"onnx"``, ``"torchscript"`` or ``"safetensors"``.
        out_path: the file to write (its folder is created).
        checkpoint: the checkpoint to export (``epoch-0029``); None: the newest intact one.
        data_dir: where the run's data now is, for a run trained before runs recorded
            ``preprocessing.json``.
        tolerance: the largest absolute difference of any embedding component.
        force: replace an existing ``out_path`` (and its record).
        backbone: the ``module:callable`` backbone the run records, confirming that it may
            be imported (None: only a registered backbone is built).

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        ExportError: an unknown format (lists them), a run without a checkpoint (names the
            folder), an export that fails or whose file's embeddings differ from PyTorch's
            beyond ``tolerance`` (names the file and the difference; nothing is written).
        CheckpointError: the checkpoint is damaged, or does not fit the run's config.
        RunFolderError: ``out_path`` or its record exists (without ``force``), is a file
            of the run, or lies inside a run's checkpoints folder; before any work.
        BackboneError: the run records an import spec that ``backbone`` does not confirm.
        OutputError: ``out_path`` cannot be written.
    """
    from marginkit.evaluation.load import run_records
    from marginkit.runfolder import (
        OutputError,
        apply_umask,
        atomic_write_text,
        check_output_file,
        make_folder,
        temporary_name,
    )

    format = check_format(format)
    if not tolerance >= 0.0:
        raise ExportError(f"tolerance: expected a number >= 0, got {tolerance!r}")
    out = Path(out_path)
    for path in (out, sidecar_path(out)):
        check_output_file(path, force=force, reads=run_records(run_dir))
    source = load_run_backbone(run_dir, checkpoint=checkpoint, data_dir=data_dir, backbone=backbone)
    record = _record(source, format, out)
    make_folder(out.parent)
    temporary = temporary_name(out)
    try:
        record.update(_write_checked(source, format, out, temporary, record, tolerance))
        record["sha256"], record["bytes"] = file_digest(temporary)
        apply_umask(temporary)  # safetensors writes its files with mode 0o600
        os.replace(temporary, out)
    except OutputError:
        raise
    except OSError as error:  # no space, no permission: name the file asked for
        raise OutputError("write", out, error) from None
    finally:
        temporary.unlink(missing_ok=True)
    atomic_write_text(sidecar_path(out), json.dumps(record, indent=2) + "\n")
    return out
