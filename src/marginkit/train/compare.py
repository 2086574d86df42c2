"""Train every loss briefly on the same data and tabulate test accuracy and time.

This is what ``marginkit`` with no arguments runs: on scikit-learn's 8x8 digits with the
``mlp`` backbone each registered loss trains for a few epochs with its published default
hyper-parameters, from the same seed and the same batches.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from marginkit.train.config import TrainConfig
from marginkit.train.loop import fit, load_bundle

__all__ = ["compare", "format_table"]


def compare(
    losses: list[str] | None = None,
    base: TrainConfig | None = None,
    *,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train ``base`` once per loss (in memory, nothing written) and collect the results.

    Args:
        losses: loss names (default: every registered loss, ``marginkit.losses.available()``).
        base: the shared settings (default: digits, mlp, 32-D embedding, 15 epochs of
            SGD with a cosine schedule); ``loss`` and ``out`` are replaced per run.
        progress: print each run's progress lines.

    Returns:
        One dict per loss: ``loss``, ``test_accuracy`` (%), ``train_loss``,
        ``hyperparameters`` (final values), ``wall_time`` (s), ``images_per_second``.
    """
    from marginkit.losses import available, resolve

    losses = available() if losses is None else list(losses)
    if base is None:
        base = TrainConfig(
            dataset="digits",
            backbone="mlp",
            embedding_dim=32,
            epochs=15,
            batch_size=64,
            lr=0.05,
            lr_schedule="cosine",
        )
    for name in losses:  # fail on a bad name before training anything
        resolve(name)
    bundle = load_bundle(base, progress=progress)
    rows = []
    for name in losses:
        config = dataclasses.replace(base, loss=name, out=None)
        start = time.perf_counter()
        result = fit(config, bundle=bundle, progress=progress)
        rows.append(
            {
                "loss": name,
                "test_accuracy": result.final["test_accuracy"],
                "train_loss": result.final["train_loss"],
                "hyperparameters": result.final["hyperparameters"],
                "wall_time": time.perf_counter() - start,
                "images_per_second": result.final["images_per_second"],
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`compare`'s rows."""
    lines = [f"{'loss':<12} {'test acc %':>10} {'train loss':>10} {'time s':>7}  settings"]
    for row in rows:
        accuracy = row["test_accuracy"]
        shown = "n/a" if accuracy is None else f"{accuracy:.2f}"
        settings = " ".join(f"{k}={v:.3g}" for k, v in row["hyperparameters"].items())
        lines.append(
            f"{row['loss']:<12} {shown:>10} {row['train_loss']:>10.4f} "
            f"{row['wall_time']:>7.1f}  {settings}"
        )
    return "\n".join(lines)
