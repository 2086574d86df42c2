"""Evaluate a saved run: reload it, embed a split, report metrics into ``eval.json``.

>>> from marginkit.evaluate import evaluate_run
>>> report = evaluate_run("runs/mnist-arcface")  # doctest: +SKIP

The pieces are separate so that analyses can reuse them: :func:`load_run` rebuilds the
config, networks (at their last checkpoint) and data of a run folder; :func:`embed` maps a
dataset through the backbone; :func:`evaluate_run` puts them together.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["embed", "evaluate_run", "load_run", "summarize"]

_SPLITS = ("train", "validation", "test")


def load_run(
    run_dir: str | Path, progress: bool = False, bundle: Any = None
) -> tuple[Any, nn.Module, nn.Module, Any]:
    """Rebuild a run folder written by :func:`marginkit.train.fit`.

    Args:
        run_dir: the run folder (holding ``config.yaml`` and ``checkpoints/``).
        progress: show data-loading progress.
        bundle: the run's data, already in memory (None: loaded as in training).

    Returns:
        ``(config, backbone, head, bundle)``: the run's :class:`~marginkit.train.TrainConfig`,
        its backbone and head with the weights of the last complete checkpoint (eval mode),
        and the data set loaded as in training.

    Raises:
        FileNotFoundError: when the folder, its config or its checkpoint is missing.
    """
    from marginkit.train import build_models, latest_checkpoint, load_bundle, load_config
    from marginkit.train.checkpoint import load_checkpoint, load_weights

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: no config.yaml")
    folder = latest_checkpoint(run_dir)
    if folder is None:
        raise FileNotFoundError(f"run {run_dir} has no complete checkpoint yet")
    config = load_config(run_dir / "config.yaml")
    if bundle is None:
        bundle = load_bundle(config, progress=progress)
    backbone, head = build_models(config, bundle)
    load_weights(load_checkpoint(folder), backbone, head)
    backbone.eval()
    head.eval()
    return config, backbone, head, bundle


@torch.no_grad()
def embed(backbone: nn.Module, dataset: Any, batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """Embeddings of a whole dataset, in order.

    Args:
        backbone: maps (B, *input_shape) -> (B, D); put in eval mode here.
        dataset: a dataset with ``.tensors()`` -> (inputs (N, ...), labels (N,)).
        batch_size: inputs per forward pass.

    Returns:
        ``(embeddings (N, D) float32, labels (N,) long)``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    inputs, labels = dataset.tensors()  # (N, *input_shape), (N,)
    backbone.eval()
    chunks = [
        backbone(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)
    ]
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
        bundle: the run's data, already in memory (a comparison grid); None: loaded from
            the run's config.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(_SPLITS)}; got {split!r}")
    run_dir = Path(run_dir)
    config, backbone, head, bundle = load_run(run_dir, bundle=bundle)
    if split == "test" and bundle.test is None and bundle.validation is not None:
        split = "validation"  # data sets without a test split (folder, lfw): the held-out part
    dataset = _split(bundle, split)
    embeddings, labels = embed(backbone, dataset, batch_size)  # (N, D), (N,)
    known = labels < bundle.num_classes  # (N,)
    report: dict[str, Any] = {
        "run": str(run_dir),
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

        path = Path(save_embeddings)
        if path.suffix != ".npz":  # numpy would append it anyway
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            embeddings=embeddings.numpy(),
            labels=labels.numpy(),
            weight=head.weight.detach().float().numpy(),
        )
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
        )
    from marginkit.train.checkpoint import atomic_write_text

    atomic_write_text(run_dir / "eval.json", json.dumps(_finite(report), indent=2) + "\n")
    return report


def summarize(report: dict[str, Any]) -> str:
    """A few readable lines of an :func:`evaluate_run` report (the headline figures)."""

    def percent(value: Any) -> str:
        return "n/a" if value is None else f"{100 * value:.2f} %"

    accuracy = report.get("accuracy")
    lines = [
        f"{report['run']}: {report['loss']} on {report['dataset']} ({report['split']}), "
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
