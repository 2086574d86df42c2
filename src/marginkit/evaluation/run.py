"""Evaluate a saved run: reload it, embed the measured split once, measure, draw, and write
``eval.json``.

>>> from marginkit.evaluation import evaluate_run
>>> report = evaluate_run("runs/mnist-arcface")  # doctest: +SKIP

:func:`evaluate_run` (``marginkit eval``) decides the split (:func:`measured_split`) and
hands it to :func:`analyse`, which measures everything that applies on that split and
draws the pictures.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from marginkit import metrics
from marginkit.evaluation import measure
from marginkit.evaluation.draw import Drawing, draw
from marginkit.evaluation.embedding import EmbeddedSplits, check_split, measured_split
from marginkit.evaluation.load import load_run, run_checkpoint, run_records
from marginkit.losses import MarginHead
from marginkit.progress import Progress
from marginkit.runfolder import ACCURACY_UNIT, RunFolder

if TYPE_CHECKING:
    from marginkit.data.bundle import DataBundle
    from marginkit.train.config import TrainConfig

__all__ = ["analyse", "evaluate_run"]


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    save_embeddings: str | Path | None = None,
    batch_size: int = 512,
    analysis: bool = True,
    plots: bool = True,
    *,
    data_dir: str | Path | None = None,
    checkpoint: str | None = None,
    progress: bool = False,
    bundle: DataBundle | None = None,
    force: bool = False,
    backbone: str | None = None,
) -> dict[str, Any]:
    """Metrics of a saved run on one split, written to ``RUN/eval.json`` and returned.

    The report names what was measured (``run``, ``epoch``, ``checkpoint``, ``split``) and
    holds the sample counts (``unknown_samples``: of classes unseen in training) and the
    top-1 ``accuracy`` (a fraction) of ``head.logits`` on the samples of known classes; with
    ``analysis``, every measurement of :func:`analyse` on the same split (pictures in
    ``RUN/plots/`` with ``plots``). ``save_embeddings`` writes an ``.npz`` of the split's
    ``embeddings`` (N, D), ``labels`` (N,) and the head's class ``weight`` (C, D).

    Args:
        run_dir: a run folder written by :func:`marginkit.train.fit`.
        split: ``"train"``, ``"validation"`` or ``"test"`` (a data set without a test split,
            such as ``lfw``, is measured on its validation split: :func:`measured_split`).
        save_embeddings: optional ``.npz`` path for the embeddings (``.npz`` appended when
            missing), checked before any work (``RunFolderError``: :func:`_embeddings_file`).
        batch_size: inputs per forward pass.
        analysis: add the full measurement report.
        plots: draw the pictures (with ``analysis``).
        data_dir: read the data from this folder instead of the run's ``data_dir``.
        checkpoint: measure this checkpoint (``epoch-0029``) instead of the newest.
        progress: report progress (data loading, embedding) on stderr.
        bundle: the run's data, already in memory (a comparison grid); None: loaded from
            the run's config.
        force: replace an existing ``save_embeddings`` file (never one of the run's).
        backbone: confirms a ``module:callable`` backbone the run records (unconfirmed:
            ``BackboneError``, :func:`load_run`).

    Raises:
        ValueError: no such split.
        FileNotFoundError: not a run folder, or no (such) checkpoint.
        CheckpointError: the checkpoint is damaged (names the newest intact one).
        OutputError: ``eval.json``, the pictures or ``save_embeddings`` cannot be written.
    """
    check_split(split)  # before anything slow happens
    run_dir = Path(run_dir)
    run = RunFolder(run_dir)
    embeddings_path = _embeddings_file(run_dir, save_embeddings, force)
    folder = run_checkpoint(run_dir, checkpoint)
    config, network, head, bundle = _load(run_dir, folder, progress, data_dir, bundle, backbone)
    split = measured_split(bundle, split)
    splits = EmbeddedSplits(network, bundle, batch_size=batch_size, progress=progress)
    measured = measure.MeasuredSplit(split, *splits(split), bundle.num_classes)
    report = {
        **_what_was_measured(run_dir, folder, split, config),
        **_known_accuracy(head, measured),
    }
    if embeddings_path is not None:
        report["embeddings_file"] = str(_save_embeddings(embeddings_path, measured, head))
    if analysis:
        report["analysis"] = analyse(
            network,
            head,
            bundle,
            loss_name=config.loss,
            split=split,
            label_noise=config.label_noise,
            plots_dir=run.plots if plots else None,
            metrics_file=run.metrics,
            batch_size=batch_size,
            embedded=splits.embedded,
            progress=progress,
        )
    run.write_eval(report)
    return report


def _embeddings_file(run_dir: Path, save_embeddings: str | Path | None, force: bool) -> Path | None:
    """The ``.npz`` that ``save_embeddings`` names, or None; checked before any work
    (:func:`~marginkit.runfolder.check_output_file`): an existing file is replaced
    only with ``force``, a file of the run or one in a run's checkpoints folder never."""
    from marginkit.runfolder import check_output_file

    if save_embeddings is None:
        return None
    path = _npz_path(Path(save_embeddings))
    check_output_file(path, force=force, reads=run_records(run_dir), option="save_embeddings")
    return path


def _load(
    run_dir: Path,
    folder: Path,
    progress: bool,
    data_dir: str | Path | None,
    bundle: DataBundle | None,
    backbone: str | None,
) -> tuple[Any, nn.Module, MarginHead, Any]:
    """:func:`load_run` at the checkpoint ``folder``, said on stderr with ``progress``."""
    from marginkit.train.checkpoint import epoch_of

    if progress:
        print(f"evaluating {run_dir}, epoch {epoch_of(folder)} ({folder})", file=sys.stderr)
    return load_run(
        run_dir,
        progress,
        data_dir=data_dir,
        checkpoint=folder.name,
        bundle=bundle,
        backbone=backbone,
    )


def _what_was_measured(
    run_dir: Path, folder: Path, split: str, config: TrainConfig
) -> dict[str, Any]:
    """The run, its checkpoint (folder and epoch), the split, and the run's data set,
    backbone, loss and embedding width."""
    from marginkit.train.checkpoint import epoch_of

    return {
        "run": str(run_dir),
        "epoch": epoch_of(folder),
        "checkpoint": str(folder),
        "split": split,
        "dataset": config.dataset,
        "backbone": config.backbone,
        "loss": config.loss,
        "embedding_dim": config.embedding_dim,
    }


def _known_accuracy(head: MarginHead, measured: measure.MeasuredSplit) -> dict[str, Any]:
    """Sample counts and the top-1 accuracy (a fraction; None without known samples)."""
    known = measured.known  # (N,)
    counts: dict[str, Any] = {
        "samples": int(measured.labels.numel()),
        "known_samples": int(known.sum()),
        "unknown_samples": int((~known).sum()),
        "accuracy": None,
        "accuracy_unit": ACCURACY_UNIT,
    }
    if bool(known.any()):
        embeddings, labels = measured.known_part()
        with torch.no_grad():
            scores = head.logits(embeddings)  # (N_known, C)
        correct = int((scores.argmax(1) == labels).sum())
        counts["accuracy"] = correct / int(known.sum())
    return counts


def _npz_path(path: Path) -> Path:
    """``path`` with ``.npz`` appended when it has another suffix (numpy would append it)."""
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def _save_embeddings(path: Path, measured: measure.MeasuredSplit, head: MarginHead) -> Path:
    """Write the split's embeddings, labels and the head's class weights to ``path``;
    return it."""
    import numpy as np

    from marginkit.runfolder import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(
        buffer,
        embeddings=measured.embeddings.numpy(),
        labels=measured.labels.numpy(),
        weight=head.class_weight().float().numpy(),
    )
    atomic_write_bytes(path, buffer.getvalue())
    return path


def analyse(
    backbone: nn.Module,
    head: MarginHead,
    bundle: DataBundle,
    *,
    loss_name: str,
    split: str = "test",
    label_noise: float = 0.0,
    plots_dir: str | Path | None = None,
    metrics_file: str | Path | None = None,
    batch_size: int = 512,
    embedded: dict[str, tuple[Tensor, Tensor]] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Measure (and draw) a trained backbone + head on one split of its data.

    Verification uses the data set's own pairs (LFW's ``pairsDevTest.txt``: people never
    seen in training) or else a seeded sample of pairs of the measured split.

    Args:
        backbone: the trained backbone (put in eval mode).
        head: the trained head (put in eval mode; its step does not move).
        bundle: the run's :class:`~marginkit.data.DataBundle`.
        loss_name: the registry name of the head, for titles.
        split: the split asked for; :func:`measured_split` says which is measured.
        label_noise: the training-label noise rate the run used (0: no noise section).
        plots_dir: folder for the PNG + SVG pictures, or None for no pictures.
        metrics_file: the run's ``metrics.json`` (learning curves), if any.
        batch_size: inputs per forward pass when embedding.
        embedded: embeddings the caller has already, by split name: ``(embeddings (N, D),
            labels (N,))``; the other splits are embedded here.
        progress: show the progress of the embedding and of the five stages (embeddings,
            measurements, verification, label noise, pictures) on stderr, with an ETA.

    Returns:
        JSON-serialisable ``split`` and the sections that apply: ``closed_set``, ``geometry``,
        ``retrieval``, ``verification``, ``open_set``, ``label_noise``, ``plots`` (files).
    """
    split = measured_split(bundle, split)
    stages = Progress(5, "analysis", enabled=progress, every=1, unit="stage")
    backbone.eval()
    head.eval()
    splits = EmbeddedSplits(
        backbone, bundle, batch_size=batch_size, progress=progress, embedded=embedded
    )
    train_embeddings, train_labels = splits("train")  # (N, D), (N,)
    measured = None  # a data set without held-out data has no split to measure
    if getattr(bundle, split) is not None:
        measured = measure.MeasuredSplit(split, *splits(split), bundle.num_classes)
    stages.update(postfix="embeddings done")
    report: dict[str, Any] = {"split": split}
    if measured is not None:
        report |= measure.split_sections(head, train_embeddings, train_labels, measured)
    stages.update(postfix="closed-set, geometry, retrieval and open-set measures done")
    verification = _verification(bundle, splits, measured)
    if verification is not None:
        report["verification"] = verification
    stages.update(postfix="verification done")
    noise = None
    if label_noise > 0:
        noise, report["label_noise"] = _label_noise(head, bundle, train_embeddings, report)
    stages.update(postfix="label-noise statistics done")
    if plots_dir is not None:
        drawing = Drawing(
            folder=Path(plots_dir),
            head=head,
            loss_name=loss_name,
            title=f"{bundle.name}, {loss_name}",
            split=split,
            class_names=list(bundle.class_names),
            features=None if measured is None else measured.known_part(),
            verification=verification,
            metrics_file=None if metrics_file is None else Path(metrics_file),
            label_noise=noise,
        )
        report["plots"] = draw(drawing)
    stages.update(postfix="pictures done")
    stages.close()
    return report


def _verification(
    bundle: DataBundle, splits: EmbeddedSplits, measured: measure.MeasuredSplit | None
) -> dict[str, Any] | None:
    """Verification on the data set's own pairs, or else on pairs of the measured split."""
    if bundle.pairs is not None:
        return measure.pairs_file_verification(splits.pair_images(), bundle.pairs)
    if measured is not None:
        return measure.sampled_verification(measured)
    return None


def _label_noise(
    head: MarginHead, bundle: DataBundle, train_embeddings: Tensor, report: dict[str, Any]
) -> tuple[metrics.LabelNoiseSamples, dict[str, Any]]:
    """The training samples' label-noise quantities (for the pictures) and their summary,
    with the measured split's top-1 accuracy from ``report``."""
    samples = metrics.label_noise_samples(
        head, train_embeddings, bundle.train_labels, bundle.train_clean_labels
    )
    test_accuracy = report.get("closed_set", {}).get("top1_accuracy")
    return samples, metrics.summarize_label_noise(samples, test_accuracy)
