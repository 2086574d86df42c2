"""Pictures of the embedding space: 2-D features with class-weight rays, 3-D features on
the sphere.

- :func:`features_2d`: the L-Softmax picture (Liu et al., ICML 2016, Fig. 2): each class's
  2-D features, and the class-weight directions as rays from the origin; with
  ``normalized=True`` a second panel beside it shows the same features projected onto the
  unit circle (the NormFace / ArcFace view, where only angles matter).
- :func:`features_3d`: the ArcFace blog-post view: features on the unit sphere in 3-D (by PCA
  when the embedding is wider), over a faint wireframe sphere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from marginkit._validation import as_class_indices, as_float_array
from marginkit.metrics.sphere import normalize_rows
from marginkit.plots.figures import (
    ClassPalette,
    add_class_key,
    class_palette,
    new_figure,
    save_figure,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["build_features_2d", "build_features_3d", "features_2d", "features_3d"]

_POINT_ALPHA = 0.6


def _drawing_order(count: int) -> np.ndarray:
    """A fixed permutation of the points, so no class is always drawn on top of the others."""
    return np.random.default_rng(0).permutation(count)


def _point_size(count: int) -> float:
    """Marker area (points^2) that keeps a few hundred to ~100k points readable."""
    return float(np.clip(3000.0 / np.sqrt(count), 1.0, 30.0))


def _scatter_points(axes: Any, points: np.ndarray, colors: Any, size: float) -> None:
    """Class-coloured 2-D points, rasterised (small SVGs), above the rays."""
    axes.scatter(
        points[:, 0],
        points[:, 1],
        c=colors,
        s=size,
        alpha=_POINT_ALPHA,
        linewidths=0,
        rasterized=True,
        zorder=2,
    )


def _draw_rays(
    axes: Axes, directions: np.ndarray, length: float, palette: ClassPalette, classes: np.ndarray
) -> None:
    """Rays from the origin along the unit ``directions`` (C, 2), coloured by class."""
    import matplotlib.patheffects as path_effects

    outline = [path_effects.Stroke(linewidth=2.8, foreground="black"), path_effects.Normal()]
    for index, direction in zip(classes, directions[classes], strict=True):
        color = palette.colors_of(np.array([index]))[0]
        axes.plot(
            [0.0, length * direction[0]],
            [0.0, length * direction[1]],
            color=color,
            linewidth=1.5,
            solid_capstyle="round",
            path_effects=outline,
            zorder=1.5,  # under the points (zorder 2), so the rays never hide them
            gid=f"weight-ray-{index}",
        )


def build_features_2d(
    embeddings: Any,
    labels: Any,
    weights: Any = None,
    *,
    normalized: bool = False,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """The 2-D feature figure (see :func:`features_2d`), not yet saved.

    Returns:
        The figure; its axes are titled ``"Raw features"`` and, with ``normalized=True``,
        ``"Projected onto the unit circle"``.
    """
    from matplotlib.lines import Line2D

    if not isinstance(normalized, bool):
        raise TypeError(f"normalized must be a bool; got {type(normalized).__name__}")
    points = as_float_array("embeddings", embeddings, ndim=2, columns=2)  # (N, 2)
    classes_of = as_class_indices("labels", labels, len(points), "embeddings")  # (N,)
    present = np.unique(classes_of)
    directions = None
    if weights is not None:
        weight = as_float_array("weights", weights, ndim=2, columns=2)  # (C, 2)
        if present[0] < 0 or present[-1] >= len(weight):
            raise ValueError(
                f"labels must lie in [0, {len(weight)}) (one row of weights per class); "
                f"got values from {present[0]} to {present[-1]}"
            )
        directions = normalize_rows(weight, "weights")  # (C, 2)
        classes = np.arange(len(weight))
    else:
        classes = present
    palette = class_palette(classes, class_names)
    order = _drawing_order(len(points))
    size = _point_size(len(points))

    fig = new_figure(12.5 if normalized else 7.0, 6.0)
    panels = fig.subplots(1, 2 if normalized else 1, squeeze=False)[0]
    raw = panels[0]
    colors = palette.colors_of(classes_of[order])
    _scatter_points(raw, points[order], colors, size)
    radius = float(np.quantile(np.linalg.norm(points, axis=1), 0.99))
    radius = radius if radius > 0 else 1.0
    if directions is not None:
        _draw_rays(raw, directions, 1.1 * radius, palette, classes)
    raw.axhline(0.0, color="0.8", linewidth=0.8, zorder=0)
    raw.axvline(0.0, color="0.8", linewidth=0.8, zorder=0)
    raw.set_aspect("equal", adjustable="datalim")
    raw.set_title("Raw features")
    raw.set_xlabel("feature 1 (embedding units)")
    raw.set_ylabel("feature 2 (embedding units)")

    if normalized:
        circle = panels[1]
        unit = normalize_rows(points, "embeddings")  # (N, 2)
        angle = np.linspace(0.0, 2.0 * np.pi, 361)
        circle.plot(np.cos(angle), np.sin(angle), color="0.6", linewidth=0.8, zorder=0)
        _scatter_points(circle, unit[order], colors, size)
        if directions is not None:
            _draw_rays(circle, directions, 1.2, palette, classes)
        circle.set_xlim(-1.35, 1.35)
        circle.set_ylim(-1.35, 1.35)
        circle.set_aspect("equal")
        circle.set_title("Projected onto the unit circle")
        circle.set_xlabel("x₁ / ‖x‖")
        circle.set_ylabel("x₂ / ‖x‖")

    extra = []
    if directions is not None:
        extra.append(Line2D([], [], color="black", linewidth=2.2, label="class-weight direction"))
    add_class_key(fig, list(panels), palette, extra)
    if title is None:
        title = "2-D features by class"
        if directions is not None:
            title += " (rays: directions of the class weights W_c)"
    fig.suptitle(title)
    return fig


def features_2d(
    embeddings: Any,
    labels: Any,
    weights: Any,
    path: str | Path,
    normalized: bool = False,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> list[Path]:
    """Plot 2-D features per class with the class-weight directions, and save PNG + SVG.

    One figure: the raw features; with ``normalized=True`` the same figure gets a second
    panel to the right with each feature divided by its norm (points on the unit circle),
    so the two views share one legend and can be compared side by side. Class-weight
    directions ``W_c / ||W_c||`` are drawn as rays from the origin in the class's colour
    (reaching just past the 99th-percentile feature norm in the raw panel). Points are drawn
    in a fixed random order so no class hides the others.

    Args:
        embeddings: (N, 2) features, tensor or array.
        labels: (N,) integer classes.
        weights: (C, 2) class weights (``head.class_weight()``), or None for no rays. With weights,
            labels must lie in ``[0, C)`` and every class gets its colour by index.
        path: output path without suffix (writes ``.png`` and ``.svg``).
        normalized: add the unit-circle panel.
        class_names: optional name of each class index (e.g. digits), for the legend.
        title: figure title; default says what is drawn.

    Returns:
        The PNG and SVG paths.

    Raises:
        ValueError: embeddings not (N, 2), labels of another length, weights not (C, 2),
            labels outside ``[0, C)``, a zero weight row or (normalised) zero feature.
    """
    fig = build_features_2d(
        embeddings, labels, weights, normalized=normalized, class_names=class_names, title=title
    )
    return save_figure(fig, path)


def _pca_to_3d(unit: np.ndarray) -> tuple[np.ndarray, float]:
    """Project unit rows (N, D), D > 3, onto their first three principal components.

    Returns:
        The (N, 3) projection and the fraction of the variance those components explain.
    """
    centred = unit - unit.mean(axis=0, keepdims=True)  # (N, D)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)  # (K,), (K, D)
    variance = singular**2
    explained = float(variance[:3].sum() / variance.sum()) if variance.sum() > 0 else 1.0
    return centred @ components[:3].T, explained  # (N, 3)


def build_features_3d(
    embeddings: Any,
    labels: Any,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """The 3-D sphere figure (see :func:`features_3d`), not yet saved."""
    points = as_float_array("embeddings", embeddings, ndim=2, min_columns=3)  # (N, D)
    classes_of = as_class_indices("labels", labels, len(points), "embeddings")  # (N,)
    unit = normalize_rows(points, "embeddings")  # (N, D)
    if unit.shape[1] == 3:
        projected, note = unit, "3-D features divided by their norms (no projection)"
        axis_names = ("axis 1", "axis 2", "axis 3")
    else:
        if len(unit) < 3:
            raise ValueError(
                f"embeddings has {len(unit)} rows; PCA to 3 dimensions needs at least 3"
            )
        pcs, explained = _pca_to_3d(unit)
        norms = np.linalg.norm(pcs, axis=1, keepdims=True)  # (N, 1)
        projected = pcs / np.maximum(norms, np.finfo(np.float64).tiny)
        note = (
            f"PCA of the {unit.shape[1]}-D normalised features to 3-D "
            f"({100 * explained:.0f}% of the variance), renormalised"
        )
        axis_names = ("PC 1", "PC 2", "PC 3")
    palette = class_palette(np.unique(classes_of), class_names)
    order = _drawing_order(len(projected))

    fig = new_figure(8.0, 7.0)
    axes = fig.add_subplot(projection="3d")
    longitude, latitude = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
    axes.plot_wireframe(
        np.cos(longitude) * np.sin(latitude),
        np.sin(longitude) * np.sin(latitude),
        np.cos(latitude),
        color="0.55",
        linewidth=0.35,
        alpha=0.35,
    )
    axes.scatter(
        projected[order, 0],
        projected[order, 1],
        projected[order, 2],
        c=palette.colors_of(classes_of[order]),
        s=_point_size(len(projected)),
        alpha=0.8,
        linewidths=0,
        depthshade=True,
        rasterized=True,
    )
    axes.set_xlim(-1, 1)
    axes.set_ylim(-1, 1)
    axes.set_zlim(-1, 1)
    axes.set_box_aspect((1, 1, 1))
    for ticks in (axes.set_xticks, axes.set_yticks, axes.set_zticks):
        ticks([-1.0, -0.5, 0.0, 0.5, 1.0])
    axes.view_init(elev=20, azim=35)
    axes.set_xlabel(axis_names[0])
    axes.set_ylabel(axis_names[1])
    axes.set_zlabel(axis_names[2])
    axes.set_title(note, fontsize="medium")
    add_class_key(fig, axes, palette)
    fig.suptitle("Features on the unit sphere" if title is None else title)
    return fig


def features_3d(
    embeddings: Any,
    labels: Any,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> list[Path]:
    """Plot features on the unit sphere in 3-D, coloured by class, and save PNG + SVG.

    Each feature is divided by its norm; a 3-D embedding is drawn as it is, a wider one
    (D > 3) is projected onto the first three principal components of the normalised
    features (centred PCA) and renormalised onto the sphere; the variance explained by the
    three components is stated on the figure. A faint wireframe marks the sphere.

    Args:
        embeddings: (N, D) features, D >= 3.
        labels: (N,) integer classes.
        path: output path without suffix.
        class_names: optional name of each class index, for the legend.
        title: figure title.

    Returns:
        The PNG and SVG paths.

    Raises:
        ValueError: D < 3, labels of another length, a zero feature.
    """
    fig = build_features_3d(embeddings, labels, class_names=class_names, title=title)
    return save_figure(fig, path)
