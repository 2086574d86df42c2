"""Evaluate a saved run: reload it, embed a split, report metrics into ``eval.json``.

>>> from marginkit.evaluate import evaluate_run
>>> report = evaluate_run("runs/mnist-arcface")  # doctest: +SKIP

The pieces are separate so that analyses can reuse them: :func:`load_run` rebuilds the
config, networks (at their last checkpoint) and data of a run folder; :func:`embed` maps a
dataset through the backbone; :func:`evaluate_run` puts them together.
"""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["embed", "evaluate_run", "load_run", "run_checkpoint", "summarize"]

_SPLITS = ("train", "validation", "test")


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


@torch.no_grad()
def embed(
    backbone: nn.Module,
    dataset: Any,
    batch_size: int = 512,
    *,
    progress: bool = False,
    name: str = "",
) -> tuple[Tensor, Tensor]:
    """Embeddings of a whole dataset, in order.

    Args:
        backbone: maps (B, *input_shape) -> (B, D); put in eval mode here.
        dataset: a dataset with ``.tensors()`` -> (inputs (N, ...), labels (N,)).
        batch_size: inputs per forward pass.
        progress: show the progress (with an ETA) on stderr.
        name: what is embedded, for the progress line (e.g. ``"test"``).

    Returns:
        ``(embeddings (N, D) float32, labels (N,) long)``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    from marginkit.progress import Progress

    inputs, labels = dataset.tensors()  # (N, *input_shape), (N,)
    backbone.eval()
    chunks = []
    description = f"embedding {name}".strip()
    with Progress(len(inputs), description, enabled=progress, unit="img") as bar:
        for start in range(0, len(inputs), batch_size):
            chunks.append(backbone(inputs[start : start + batch_size]))
            bar.update(len(chunks[-1]))
    return torch.cat(chunks).float(), labels.long()  # (N, D), (N,)


def _split(bundle: Any, split: str) -> Any:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(_SPLITS)}; got {split!r}")
    dataset = getattr(bundle, split)
    if dataset is None:
        raise ValueError(f"the run's data set {bundle.name!r} has no {split} split")
    return dataset


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
    bundle: Any = None,
) -> dict[str, Any]:
    """Metrics of a saved run on one split, written to ``RUN/eval.json`` and returned.

    With ``analysis`` (the default) the report also holds ``analysis``: every measurement of
    :func:`marginkit.analysis.analyse` that applies to the run (nearest-centre accuracy,
    geometry, retrieval, verification, open-set when trained on a class subset, label-noise
    statistics when trained with noisy labels); with ``plots`` the pictures go to
    ``RUN/plots/`` (PNG + SVG).

    Reported: top-1 accuracy (%) of ``head.logits`` over the samples of known classes
    (``label < num_classes``), the sample counts, and how many test samples belong to
    classes unseen in training (open-set runs). With ``save_embeddings``, the split's
    embeddings and labels go to an ``.npz`` file (arrays ``embeddings`` (N, D) and
    ``labels`` (N,), and the head's class weights ``weight`` (C, D)).

    Args:
        run_dir: a run folder written by :func:`marginkit.train.fit`.
        split: ``"train"``, ``"validation"`` or ``"test"`` (a data set without a test split,
            such as ``lfw``, is measured on its validation split).
        save_embeddings: optional ``.npz`` path for the embeddings.
        batch_size: inputs per forward pass.
        analysis: add the full measurement report.
        plots: draw the pictures (with ``analysis``).
        data_dir: read the data from this folder instead of the run's ``data_dir``.
        checkpoint: measure this checkpoint (``epoch-0029``) instead of the newest.
        progress: report progress (data loading, embedding) on stderr.
        bundle: the run's data, already in memory (a comparison grid); None: loaded from
            the run's config.

    The report names what was measured: ``run``, ``epoch`` and ``checkpoint`` (its folder).

    Raises:
        FileNotFoundError: not a run folder, or no (such) checkpoint.
        CheckpointError: the checkpoint is damaged (names the newest intact one).
        OutputError: ``eval.json``, the pictures or ``save_embeddings`` cannot be written.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(_SPLITS)}; got {split!r}")
    from marginkit.train.checkpoint import epoch_of

    run_dir = Path(run_dir)
    folder = run_checkpoint(run_dir, checkpoint)
    if progress:
        print(f"evaluating {run_dir}, epoch {epoch_of(folder)} ({folder})", file=sys.stderr)
    config, backbone, head, bundle = load_run(
        run_dir, progress, data_dir=data_dir, checkpoint=folder.name, bundle=bundle
    )
    if split == "test" and bundle.test is None and bundle.validation is not None:
        split = "validation"  # data sets without a test split (folder, lfw): the held-out part
    dataset = _split(bundle, split)
    embeddings, labels = embed(
        backbone, dataset, batch_size, progress=progress, name=split
    )  # (N, D), (N,)
    known = labels < bundle.num_classes  # (N,)
    report: dict[str, Any] = {
        "run": str(run_dir),
        "epoch": epoch_of(folder),
        "checkpoint": str(folder),
        "split": split,
        "dataset": config.dataset,
        "backbone": config.backbone,
        "loss": config.loss,
        "embedding_dim": config.embedding_dim,
        "samples": int(labels.numel()),
        "known_samples": int(known.sum()),
        "unknown_samples": int((~known).sum()),
        "accuracy": None,
    }
    if bool(known.any()):
        with torch.no_grad():
            scores = head.logits(embeddings[known])  # (N_known, C)
        correct = int((scores.argmax(1) == labels[known]).sum())
        report["accuracy"] = 100.0 * correct / int(known.sum())
    if save_embeddings is not None:
        import numpy as np

        from marginkit.train.runfolder import atomic_write_bytes

        path = Path(save_embeddings)
        if path.suffix != ".npz":  # numpy would append it anyway
            path = path.with_name(path.name + ".npz")
        buffer = io.BytesIO()
        np.savez(
            buffer,
            embeddings=embeddings.numpy(),
            labels=labels.numpy(),
            weight=head.weight.detach().float().numpy(),
        )
        atomic_write_bytes(path, buffer.getvalue())
        report["embeddings_file"] = str(path)
    if analysis:
        from marginkit.analysis import analyse

        report["analysis"] = analyse(
            backbone,
            head,
            bundle,
            loss_name=config.loss,
            label_noise=config.label_noise,
            plots_dir=run_dir / "plots" if plots else None,
            metrics_file=run_dir / "metrics.json",
            batch_size=batch_size,
            embedded={split: (embeddings, labels)},
            progress=progress,
        )
    from marginkit.train.runfolder import atomic_write_text

    atomic_write_text(run_dir / "eval.json", json.dumps(_finite(report), indent=2) + "\n")
    return report


def summarize(report: dict[str, Any]) -> str:
    """A few readable lines of an :func:`evaluate_run` report (the headline figures)."""

    def percent(value: Any) -> str:
        return "n/a" if value is None else f"{100 * value:.2f} %"

    accuracy = report.get("accuracy")
    lines = [
        f"{report['run']}, epoch {report.get('epoch')} (checkpoint {report.get('checkpoint')}): "
        f"{report['loss']} on {report['dataset']} ({report['split']}), "
        f"accuracy {'n/a' if accuracy is None else f'{accuracy:.2f} %'}"
    ]
    analysis = report.get("analysis") or {}
    closed = analysis.get("closed_set")
    if closed:
        lines.append(f"  nearest class centre: {percent(closed['nearest_centre_accuracy'])}")
    geometry = analysis.get("geometry")
    if geometry:
        overall = geometry["overall"]
        lines.append(
            "  geometry: angle to class centre "
            f"{math.degrees(overall['compactness_mean']):.1f} deg (mean), min angle between "
            f"centres {math.degrees(overall['separation_min']):.1f} deg"
        )
    retrieval = analysis.get("retrieval")
    if retrieval:
        lines.append(
            f"  retrieval: P@1 {percent(retrieval['precision_at_1'])}, "
            f"R-precision {percent(retrieval['r_precision'])}, "
            f"MAP@R {percent(retrieval['map_at_r'])}"
        )
    verification = analysis.get("verification")
    if verification:
        fold = verification["ten_fold"]
        tars = ", ".join(
            f"TAR@FAR={point['far']:g} "
            + ("n/a" if point["rate"] is None else f"{100 * point['rate']:.2f} %")
            for point in verification["tar_at_far"]
        )
        lines.append(
            f"  verification ({verification['num_pairs']} pairs, {verification['pairs_source']}): "
            f"10-fold accuracy {100 * fold['mean']:.2f} +- {100 * fold['std']:.2f} %, "
            f"AUC {verification['auc']:.4f}, EER {percent(verification['eer'])}; {tars}"
        )
    open_set = analysis.get("open_set")
    if open_set:
        lines.append(
            f"  open set: AUROC {open_set['auroc']:.4f}, OSCR {open_set['oscr']:.4f}, rank-1 "
            f"{percent(open_set['identification']['rank1'])}"
        )
    noise = analysis.get("label_noise")
    if noise:
        angle, gradient = noise["target_angle"], noise["gradient_norm"]
        lines.append(
            f"  label noise ({noise['num_flipped']} flipped): mean target angle clean "
            f"{angle['clean']['mean']:.3f} / flipped {angle['flipped']['mean']:.3f} rad, mean "
            f"gradient norm clean {gradient['clean']['mean']:.4g} / flipped "
            f"{gradient['flipped']['mean']:.4g}"
        )
    if analysis.get("plots"):
        lines.append(f"  {len(analysis['plots'])} picture files in {report['run']}/plots")
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value
