"""``marginkit verify``: a saved run's backbone on verification files, into ``verify.json``.

>>> from marginkit.verify import verify_run, summarize_verification
>>> print(summarize_verification(verify_run("runs/faces", ["lfw.bin"])))  # doctest: +SKIP

The images are prepared as the run's training inputs were: resized to the run's input size
and normalised with the run's per-channel mean and standard deviation, read from
``RUN/preprocessing.json`` (:func:`marginkit.evaluation.load_run_backbone`: the training data
is not read). A run trained before that file existed has its data set loaded once, as
``marginkit eval`` loads it, for those statistics.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from marginkit.data.errors import DataError
from marginkit.pairs.evaluate import evaluate_both, evaluate_pairs
from marginkit.pairs.files import check_crop, find_pairs_file, is_bin, load_pair_set
from marginkit.runfolder import ACCURACY_UNIT, VERIFY, RunFolder

__all__ = ["VERIFY_FILE", "summarize_verification", "verify_run"]

#: The report's file name in the run folder (:attr:`marginkit.runfolder.RunFolder.verify`).
VERIFY_FILE = VERIFY


def _check_device(device: str | None) -> None:
    """Refuse a device that torch does not know or this machine lacks, before any work."""
    import torch

    from marginkit.evaluation.embedding import EvaluationError

    if device is None:
        return
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as error:
        raise EvaluationError(f"device: {device!r} is not a torch device ({error})") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise EvaluationError(f"device: {device!r} asked for, but CUDA is not available here")


def _input_size(run_dir: Path, input_shape: Sequence[int]) -> tuple[int, int]:
    if len(input_shape) != 3 or input_shape[0] != 3:
        raise DataError(
            f"{run_dir}: verification needs a run trained on RGB images, input shape "
            f"(3, H, W); this run's is {tuple(input_shape)}"
        )
    return int(input_shape[1]), int(input_shape[2])


def verify_run(
    run_dir: str | os.PathLike,
    pairs_files: Sequence[str | os.PathLike],
    *,
    flip: bool = True,
    batch_size: int = 256,
    data_dir: str | os.PathLike | None = None,
    checkpoint: str | None = None,
    crop: float | None = None,
    device: str | None = None,
    progress: bool = False,
    backbone: str | None = None,
) -> dict[str, Any]:
    """Verification figures of a run's backbone on ``.bin`` and pairs files, written to
    ``RUN/verify.json`` (atomically) and returned.

    Args:
        run_dir: a run folder written by :func:`marginkit.train.fit`.
        pairs_files: ``.bin`` files and LFW-style pairs files (:mod:`marginkit.pairs.files`);
            a relative name that is not found as given is looked for in the run's data
            folder and in ``$MARGINKIT_DATA/lfw``, and a pairs file's images beside it, then
            there.
        flip: report flip test-time augmentation too (the figures without it always are).
        batch_size: images per forward pass.
        data_dir: the run's data folder, where its data moved (as ``marginkit eval``).
        checkpoint: the checkpoint to measure (``epoch-0029``); None: the newest.
        crop: the centre crop's share of the image height; None: each file's default.
        device: where to run the backbone (``"cuda"``); None: the CPU.
        progress: report progress on stderr.
        backbone: confirms a ``module:callable`` backbone the run records
            (:func:`~marginkit.evaluation.load_run_backbone`).

    Returns:
        ``{"run", "checkpoint", "epoch", "step", "backbone", "loss", "input_shape",
        "accuracy_unit", "sets": [{"file", "format", "num_pairs", "num_images", "flip",
        "no_flip"}, ...]}``; ``flip`` and ``no_flip`` are
        :func:`~marginkit.verify.evaluate_pairs` reports (``flip`` None with ``flip=False``).

    Raises:
        DataError: no pairs file, a file missing, damaged or malformed (named), a crop
            out of (0, 1], or a run not trained on RGB images.
        EvaluationError: an unknown or unavailable ``device``.
        FileNotFoundError, CheckpointError: no run folder or checkpoint (as ``eval``), or
            weights that do not fit the run's config.
        BackboneError: the run records an import spec that ``backbone`` does not confirm.
        OutputError: ``verify.json`` cannot be written.
    """
    from marginkit.evaluation import load_run_backbone, run_checkpoint
    from marginkit.train import load_config
    from marginkit.train.verification import search_folders

    run_dir = Path(run_dir)
    if not pairs_files:
        raise DataError("pairs_files: expected at least one .bin or pairs file")
    check_crop(crop)
    _check_device(device)
    folder = run_checkpoint(run_dir, checkpoint)  # before anything slow happens
    folders = search_folders(load_config(RunFolder(run_dir).config), data_dir)
    paths = [find_pairs_file(file, folders) for file in pairs_files]
    source = load_run_backbone(
        run_dir, checkpoint=folder.name, data_dir=data_dir, backbone=backbone
    )
    network, preprocessing = source.backbone, source.preprocessing
    size = _input_size(run_dir, preprocessing.input_shape)
    if device is not None:
        network.to(device)
    sets = [
        _measure(
            network, path, size, preprocessing, folders, flip, batch_size, crop, device, progress
        )
        for path in paths
    ]
    report = _report(run_dir, source, sets)
    RunFolder(run_dir).write_verify(report)
    return report


def _report(run_dir: Path, source: Any, sets: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of :func:`verify_run`: what was scored, named by the checkpoint whose
    weights were loaded (``source``: a :class:`~marginkit.evaluation.RunBackbone`)."""
    from marginkit.train.checkpoint import epoch_of

    folder = source.checkpoint
    return {
        "run": str(run_dir),
        "checkpoint": str(folder),
        "epoch": int(source.state.get("epoch", epoch_of(folder) or 0)) or None,  # best's too
        "step": source.state.get("step"),
        "backbone": source.config.backbone,
        "loss": source.config.loss,
        "input_shape": list(source.preprocessing.input_shape),
        "accuracy_unit": ACCURACY_UNIT,
        "sets": sets,
    }


def _measure(
    backbone: Any,
    path: Path,
    size: tuple[int, int],
    preprocessing: Any,
    folders: list[Path],
    flip: bool,
    batch_size: int,
    crop: float | None,
    device: str | None,
    progress: bool,
) -> dict[str, Any]:
    """One file's entry of the report: what it holds and the figures with and without
    flip (with ``flip`` only: ``"flip"`` is None otherwise)."""
    pairs = load_pair_set(
        path,
        size,
        preprocessing.mean,
        preprocessing.std,
        crop=crop,
        image_folders=folders,
        progress=progress,
    )
    reports: Mapping[str, dict[str, Any] | None]
    if flip:
        reports = evaluate_both(backbone, pairs, batch_size, device, progress=progress)
    else:
        plain = evaluate_pairs(backbone, pairs, False, batch_size, device, progress=progress)
        reports = {"flip": None, "no_flip": plain}
    return {
        "file": str(path),
        "format": "bin" if is_bin(path) else "pairs",
        "num_pairs": len(pairs),
        "num_images": pairs.num_images,
        "crop_height_fraction": pairs.crop,  # the centre crop the images were read with
        **reports,
    }


def _crop_text(entry: Mapping[str, Any]) -> str:
    """``", centre crop 60 % of the height"``; nothing for a report that does not say (one
    written before the crop was recorded) or for the whole height."""
    crop = entry.get("crop_height_fraction")  # absent from reports of earlier versions
    return "" if crop is None or crop == 1.0 else f", centre crop {100 * crop:.0f} % of the height"


def _figures(report: dict[str, Any]) -> str:
    """One line of a verification report's headline figures, rates in percent."""
    fold = report["ten_fold"]
    tars = ", ".join(
        f"TAR@FAR={point['far']:g} "
        + ("n/a" if point["rate"] is None else f"{100 * point['rate']:.2f} %")
        for point in report["tar_at_far"]
    )
    eer = "n/a" if report["eer"] is None else f"{100 * report['eer']:.2f} %"
    return (
        f"10-fold accuracy {100 * fold['mean']:.2f} +- {100 * fold['std']:.2f} %, "
        f"AUC {report['auc']:.4f}, EER {eer}; {tars}"
    )


def summarize_verification(report: dict[str, Any]) -> str:
    """A few readable lines of a :func:`verify_run` report: per file, the figures with and
    without flip test-time augmentation."""
    lines = [f"{report['run']}, epoch {report.get('epoch')} (checkpoint {report['checkpoint']})"]
    for entry in report["sets"]:
        lines.append(
            f"  {entry['file']} ({entry['num_pairs']} pairs, {entry['num_images']} images"
            f"{_crop_text(entry)})"
        )
        if entry["flip"] is not None:
            lines.append(f"    with flip:    {_figures(entry['flip'])}")
        lines.append(f"    without flip: {_figures(entry['no_flip'])}")
    return "\n".join(lines)
