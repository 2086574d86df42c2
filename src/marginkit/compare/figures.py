"""The comparison report's figures: every run of a grid side by side or overlaid.

Each function draws one figure from data read from the runs' files and writes it as a PNG
(the report embeds PNGs); matplotlib is imported inside, without ``pyplot``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marginkit.metrics.sphere import normalize_rows
from marginkit.plots.figures import class_palette, new_figure

__all__ = [
    "features_grid",
    "label_noise_accuracy",
    "label_noise_training",
    "learning_curves",
    "open_set_scores",
    "roc_overlay",
    "similarity_grid",
]

#: Points drawn per feature panel (a seeded sample).
MAX_POINTS = 2000
_DPI = 110


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI, bbox_inches="tight")
    return path


def _panels(count: int, width: float, height: float, projection: str | None = None) -> tuple:
    """A figure with ``count`` panels in rows of at most 5."""
    columns = min(count, 5)
    rows = math.ceil(count / columns)
    fig = new_figure(width * columns, height * rows)
    axes = [
        fig.add_subplot(rows, columns, index + 1, projection=projection) for index in range(count)
    ]
    return fig, axes


def _sample(count: int, limit: int = MAX_POINTS) -> np.ndarray:
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(0).choice(count, size=limit, replace=False))


def features_grid(
    runs: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    path: Path,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """The test features of every run in one figure, one panel per run.

    2-D embeddings are drawn as they are, with the direction of each class weight as a ray;
    wider ones are normalised onto the unit sphere and, above 3-D, projected onto the three
    principal components of all the panel's points (then normalised again) and drawn in 3-D.

    Args:
        runs: run name -> (embeddings (N, D), labels (N,), class weights (C, D)).
        path: the PNG to write.
        class_names: display name of each class index.
        title: the figure's title.
    """
    from matplotlib.lines import Line2D

    dimension = next(iter(runs.values()))[0].shape[1]
    labels_all = np.concatenate([labels for _, labels, _ in runs.values()])
    palette = class_palette(np.unique(labels_all), class_names)
    fig, axes = _panels(len(runs), 3.4, 3.4, projection="3d" if dimension >= 3 else None)
    for axis, (name, (embeddings, labels, weight)) in zip(axes, runs.items(), strict=True):
        keep = _sample(len(labels))
        points, classes = embeddings[keep], labels[keep]
        colors = palette.colors_of(classes)
        if dimension == 2:
            axis.scatter(points[:, 0], points[:, 1], c=colors, s=3, linewidths=0, alpha=0.7)
            radius = float(np.quantile(np.linalg.norm(points, axis=1), 0.99)) or 1.0
            for index, direction in enumerate(normalize_rows(weight, "weight", keep_zero=True)):
                if index in palette.classes:
                    color = palette.colors_of(np.array([index]))[0]
                    axis.plot(
                        [0, 1.1 * radius * direction[0]],
                        [0, 1.1 * radius * direction[1]],
                        color=color,
                        linewidth=1.5,
                    )
            axis.set_aspect("equal", adjustable="datalim")
            axis.tick_params(labelsize=7)
        else:
            unit = normalize_rows(points, "embeddings", keep_zero=True)
            if dimension > 3:
                centred = unit - unit.mean(axis=0, keepdims=True)
                _, _, components = np.linalg.svd(centred, full_matrices=False)
                unit = normalize_rows(unit @ components[:3].T, "projections", keep_zero=True)
            axis.scatter(unit[:, 0], unit[:, 1], unit[:, 2], c=colors, s=2, linewidths=0)
            axis.set_box_aspect((1, 1, 1))
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_zticks([])
        axis.set_title(name, fontsize=10)
    handles = [
        Line2D([], [], marker="o", linestyle="none", color=color, label=label)
        for color, label in zip(palette.colors, palette.names, strict=True)
    ]
    if palette.legend:
        fig.legend(handles=handles, loc="outside right center", fontsize=8, title="class")
    fig.suptitle(title)
    return _save(fig, path)


def roc_overlay(curves: Mapping[str, tuple[Any, Any]], path: Path, title: str) -> Path:
    """Verification ROC curves of every run overlaid (``plots.build_roc_curves``)."""
    from marginkit.plots import build_roc_curves

    return _save(build_roc_curves(curves, title=title), path)


def learning_curves(
    runs: Mapping[str, list[dict[str, Any]]],
    path: Path,
    title: str,
    accuracy_label: str = "test accuracy",
) -> Path:
    """Training loss and test accuracy per epoch, one line per run.

    Args:
        runs: run name -> the run's per-epoch rows (``metrics.json`` ``epochs``, accuracies
            as fractions: :func:`marginkit.runfolder.metrics_in_fractions`).
        accuracy_label: the accuracy panel's title (the split the runs were measured on).
    """
    fig = new_figure(12.0, 4.5)
    loss_axis, accuracy_axis = fig.subplots(1, 2)
    for index, (name, epochs) in enumerate(runs.items()):
        style = {"color": f"C{index % 10}", "linestyle": "-" if index < 10 else "--"}
        number = [row["epoch"] for row in epochs]
        loss_axis.plot(
            number, [row["train_loss"] for row in epochs], marker="o", ms=3, label=name, **style
        )
        accuracy = [row.get("test_accuracy") for row in epochs]  # fractions
        accuracy = [np.nan if value is None else 100.0 * value for value in accuracy]
        accuracy_axis.plot(number, accuracy, marker="o", ms=3, label=name, **style)
    loss_axis.set_yscale("log")
    loss_axis.set(title="training loss", xlabel="epoch", ylabel="mean cross-entropy (log)")
    accuracy_axis.set(title=accuracy_label, xlabel="epoch", ylabel="top-1 accuracy (%)")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(True, color="0.92")
    accuracy_axis.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    return _save(fig, path)


def similarity_grid(
    runs: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str
) -> Path:
    """Cosine similarity of same-class vs different-class test pairs, one panel per run."""
    from marginkit.plots import pair_similarities

    fig, axes = _panels(len(runs), 3.2, 2.6)
    bins = np.linspace(-1.0, 1.0, 81)
    for axis, (name, (embeddings, labels)) in zip(axes, runs.items(), strict=True):
        same, different = pair_similarities(embeddings, labels, max_samples=1500)
        axis.hist(different, bins=bins, density=True, alpha=0.55, color="C3", label="different")
        axis.hist(same, bins=bins, density=True, alpha=0.55, color="C0", label="same class")
        axis.set_title(name, fontsize=10)
        axis.set_yticks([])
        axis.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.supxlabel("cosine similarity of a test pair")
    fig.suptitle(title)
    return _save(fig, path)


def open_set_scores(
    runs: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    num_known: int,
    path: Path,
    title: str,
) -> Path:
    """Largest cosine to a known class's weight: test samples of seen vs unseen classes.

    Args:
        runs: run name -> (embeddings (N, D), labels (N,), class weights (C, D)); labels
            ``>= num_known`` are classes left out of training.
    """
    fig, axes = _panels(len(runs), 3.2, 2.6)
    for axis, (name, (embeddings, labels, weight)) in zip(axes, runs.items(), strict=True):
        unit = normalize_rows(embeddings, "embeddings", keep_zero=True)  # (N, D)
        scores = (unit @ normalize_rows(weight, "weight", keep_zero=True).T).max(axis=1)  # (N,)
        low, high = float(scores.min()), float(scores.max())
        pad = max(1e-3, 0.02 * (high - low))
        bins = np.linspace(low - pad, high + pad, 61)  # each panel's own range
        known = labels < num_known
        axis.hist(scores[known], bins=bins, density=True, alpha=0.55, color="C0", label="seen")
        axis.hist(scores[~known], bins=bins, density=True, alpha=0.55, color="C3", label="unseen")
        axis.set_title(name, fontsize=10)
        axis.set_yticks([])
        axis.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.supxlabel("max cosine to a trained class's weight")
    fig.suptitle(title)
    return _save(fig, path)


def label_noise_training(runs: Mapping[str, list[dict[str, Any]]], path: Path, title: str) -> Path:
    """During training: mean gradient norm of flipped / clean samples, and their mean target
    angles, per epoch (``noise_snapshots.json``), one line per run."""
    fig = new_figure(12.0, 4.5)
    ratio_axis, angle_axis = fig.subplots(1, 2)
    for index, (name, rows) in enumerate(runs.items()):
        color = f"C{index % 10}"
        epochs = [row["epoch"] for row in rows]
        ratio = [np.nan if row["gradient_ratio"] is None else row["gradient_ratio"] for row in rows]
        ratio_axis.plot(epochs, ratio, marker="o", ms=3, color=color, label=name)
        for key, style in (("angle_clean", "-"), ("angle_flipped", "--")):
            values = [np.nan if row[key] is None else row[key] for row in rows]
            angle_axis.plot(
                epochs,
                values,
                marker="o",
                ms=3,
                color=color,
                linestyle=style,
                label=f"{name} ({key.split('_')[1]})",
            )
    ratio_axis.axhline(1.0, color="0.6", linewidth=1, linestyle=":")
    ratio_axis.set(
        title="gradient norm: flipped / clean labels",
        xlabel="epoch",
        ylabel="ratio of mean per-sample gradient norms",
    )
    angle_axis.set(
        title="angle to the training label's weight", xlabel="epoch", ylabel="mean angle (degrees)"
    )
    for axis in (ratio_axis, angle_axis):
        axis.grid(True, color="0.92")
    ratio_axis.legend(fontsize=8)
    angle_axis.legend(fontsize=6, ncol=2)
    fig.suptitle(title)
    return _save(fig, path)


def label_noise_accuracy(
    series: Mapping[str, tuple[list[float], list[float], list[float]]], path: Path, title: str
) -> Path:
    """Test accuracy against the training-label noise rate, one line per loss.

    Args:
        series: loss -> (noise rates in %, mean accuracies, standard deviations).
    """
    fig = new_figure(6.5, 4.5)
    axis = fig.subplots()
    for index, (name, (rates, means, stds)) in enumerate(series.items()):
        axis.errorbar(
            rates, means, yerr=stds, marker="o", ms=4, capsize=3, color=f"C{index % 10}", label=name
        )
    axis.set(xlabel="symmetric label noise (%)", ylabel="test accuracy (%)")
    axis.grid(True, color="0.92")
    axis.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)
