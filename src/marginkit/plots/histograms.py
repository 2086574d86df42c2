"""Histograms: intra- vs inter-class cosine similarity, and clean vs flipped labels.

- :func:`similarity_histograms`: the Virtual Softmax paper's picture (Chen et al., NeurIPS
  2018): the distribution of the cosine between two embeddings of the same class against
  that between two embeddings of different classes. Tight, well-separated classes push the
  first to 1 and the second below it.
- :func:`label_noise_histograms`: the label-noise measurement behind Cam-softmax's claim
  (Süveges & McKenna, ICPR 2020): a quantity such as the target angle or the per-sample
  gradient magnitude, for training samples whose label is correct against those whose
  label was flipped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from marginkit._validation import as_class_indices, as_float_array, check_count
from marginkit.metrics.sphere import normalize_rows
from marginkit.plots.figures import new_figure, save_figure, set_angle_ticks

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "build_label_noise_histograms",
    "build_similarity_histograms",
    "label_noise_histograms",
    "pair_similarities",
    "similarity_histograms",
]

_INTRA_COLOR = "tab:blue"
_INTER_COLOR = "tab:red"


def _draw_density(
    axes: Axes, values: np.ndarray, edges: np.ndarray, color: str, label: str
) -> None:
    """A density histogram of ``values`` on ``edges``: a translucent fill and a solid edge."""
    heights, _ = np.histogram(values, bins=edges, density=True)
    axes.stairs(heights, edges, fill=True, color=color, alpha=0.4, label=label)
    axes.stairs(heights, edges, color=color, linewidth=1.2)


def pair_similarities(
    embeddings: Any, labels: Any, *, max_samples: int = 3000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of every pair of distinct embeddings, split by class agreement.

    With more than ``max_samples`` embeddings, a subset of ``max_samples`` of them, drawn
    without replacement by ``numpy.random.default_rng(seed)``, is used (the same subset on
    every call); all pairs within it are taken.

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) integer classes.
        max_samples: the most embeddings used (>= 2).
        seed: seed of the subset.

    Returns:
        ``(intra, inter)``: cosines of same-class pairs and of different-class pairs.

    Raises:
        ValueError: fewer than two embeddings, labels of another length, a zero embedding,
            no pair within a class or no pair across classes.
    """
    check_count("max_samples", max_samples, 2)
    check_count("seed", seed, 0)
    points = as_float_array("embeddings", embeddings, ndim=2)  # (N, D)
    classes_of = as_class_indices("labels", labels, len(points), "embeddings")  # (N,)
    if len(points) < 2:
        raise ValueError("embeddings has 1 row; expected at least two to form a pair")
    if len(points) > max_samples:
        chosen = np.sort(
            np.random.default_rng(seed).choice(len(points), max_samples, replace=False)
        )
        points, classes_of = points[chosen], classes_of[chosen]
    unit = normalize_rows(points, "embeddings")  # (n, D)
    first, second = np.triu_indices(len(unit), k=1)  # (P,), (P,)
    cosine = np.clip((unit @ unit.T)[first, second], -1.0, 1.0)  # (n, n) -> (P,)
    same = classes_of[first] == classes_of[second]
    if not same.any():
        raise ValueError(
            "labels has no class with two embeddings (in the sample used); "
            "expected at least one same-class pair"
        )
    if same.all():
        raise ValueError("labels has a single class; expected at least two classes")
    return cosine[same], cosine[~same]


def build_similarity_histograms(
    embeddings: Any,
    labels: Any,
    *,
    max_samples: int = 3000,
    seed: int = 0,
    bins: int = 100,
    title: str | None = None,
) -> Figure:
    """The similarity histogram figure (see :func:`similarity_histograms`), not yet saved."""
    check_count("bins", bins, 2)
    intra, inter = pair_similarities(embeddings, labels, max_samples=max_samples, seed=seed)
    edges = np.linspace(-1.0, 1.0, bins + 1)
    fig = new_figure(8.0, 5.0)
    axes = fig.subplots()
    for values, color, name in (
        (intra, _INTRA_COLOR, "intra-class (same label)"),
        (inter, _INTER_COLOR, "inter-class (different labels)"),
    ):
        _draw_density(
            axes, values, edges, color, f"{name}: {len(values):,} pairs, mean {values.mean():.3f}"
        )
        axes.axvline(values.mean(), color=color, linestyle="--", linewidth=1.2)
    axes.set_xlim(-1.0, 1.0)
    axes.set_xlabel("cosine similarity of the pair, cos θ (dimensionless)")
    axes.set_ylabel("density")
    top = axes.secondary_xaxis(
        "top",
        functions=(
            lambda cosine: np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))),
            lambda degrees: np.cos(np.radians(degrees)),
        ),
    )
    top.set_xticks([180, 135, 90, 60, 45, 30, 0])
    top.set_xlabel("angle θ between the pair (degrees)")
    axes.legend(loc="upper left", framealpha=0.9)
    axes.set_title(
        "Intra- vs inter-class cosine similarity (dashed: means)" if title is None else title
    )
    return fig


def similarity_histograms(
    embeddings: Any,
    labels: Any,
    path: str | Path,
    *,
    max_samples: int = 3000,
    seed: int = 0,
    bins: int = 100,
    title: str | None = None,
) -> list[Path]:
    """Histograms (densities) of intra-class and inter-class cosine similarity; PNG + SVG.

    Every pair of distinct embeddings is scored by its cosine; pairs are split by whether
    the two labels agree (:func:`pair_similarities`, which samples ``max_samples``
    embeddings deterministically when there are more). Both histograms share bins on
    ``[-1, 1]``; dashed lines mark the means; the top axis gives the angle in degrees.

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) integer classes.
        path: output path without suffix.
        max_samples: the most embeddings used.
        seed: seed of the subset.
        bins: number of bins on ``[-1, 1]``.
        title: figure title.

    Returns:
        The PNG and SVG paths.
    """
    fig = build_similarity_histograms(
        embeddings, labels, max_samples=max_samples, seed=seed, bins=bins, title=title
    )
    return save_figure(fig, path)


def build_label_noise_histograms(
    clean_values: Any,
    flipped_values: Any,
    quantity: str = "target angle",
    *,
    unit: str | None = "radians",
    bins: int = 60,
    title: str | None = None,
) -> Figure:
    """The clean-vs-flipped figure (see :func:`label_noise_histograms`), not yet saved."""
    if not isinstance(quantity, str) or not quantity.strip():
        raise ValueError(f"quantity must be a non-empty str; got {quantity!r}")
    if unit is not None and not isinstance(unit, str):
        raise TypeError(f"unit must be a str or None; got {type(unit).__name__}")
    check_count("bins", bins, 2)
    clean = as_float_array("clean_values", clean_values, ndim=1)  # (N_clean,)
    flipped = as_float_array("flipped_values", flipped_values, ndim=1)  # (N_flipped,)
    both = np.concatenate([clean, flipped])
    low, high = float(both.min()), float(both.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)

    fig = new_figure(8.0, 5.0)
    axes = fig.subplots()
    for values, color, name in (
        (clean, "tab:green", "clean labels"),
        (flipped, "tab:purple", "flipped labels"),
    ):
        median = float(np.median(values))
        shown = f"{median:.3g}"
        if unit == "radians":
            shown += f" rad ({math.degrees(median):.1f}°)"
        _draw_density(
            axes, values, edges, color, f"{name}: {len(values):,} samples, median {shown}"
        )
        axes.axvline(median, color=color, linestyle="--", linewidth=1.2)
    if unit == "radians" and low >= 0.0 and high <= math.pi:
        axes.set_xlim(0.0, math.pi)
        set_angle_ticks(axes)
    axes.set_xlabel(quantity if unit is None else f"{quantity} ({unit})")
    axes.set_ylabel("density")
    axes.legend(loc="best", framealpha=0.9)
    axes.set_title(
        f"{quantity[0].upper() + quantity[1:]}: clean vs flipped training labels (dashed: medians)"
        if title is None
        else title
    )
    return fig


def label_noise_histograms(
    clean_values: Any,
    flipped_values: Any,
    path: str | Path,
    quantity: str = "target angle",
    *,
    unit: str | None = "radians",
    bins: int = 60,
    title: str | None = None,
) -> list[Path]:
    """Histograms (densities, shared bins) of a per-sample quantity for training samples
    with a clean label against those whose label was flipped; dashed lines mark the medians.

    With ``unit="radians"`` and values inside ``[0, pi]`` the axis spans ``[0, pi]`` with
    ticks in radians and degrees. For a unitless quantity pass ``unit=None``.

    Args:
        clean_values: (N_clean,) the quantity on samples with a correct label.
        flipped_values: (N_flipped,) the quantity on samples with a flipped label.
        path: output path without suffix.
        quantity: what the values are, e.g. ``"target angle"`` or
            ``"per-sample gradient magnitude"``.
        unit: the unit of the values, shown on the axis.
        bins: number of bins.
        title: figure title.

    Returns:
        The PNG and SVG paths.

    Raises:
        ValueError: either set empty, not 1-D or not finite.
    """
    fig = build_label_noise_histograms(
        clean_values, flipped_values, quantity, unit=unit, bins=bins, title=title
    )
    return save_figure(fig, path)
