"""Shared figure machinery: creating and saving figures, class colours, angle axes.

Figures are ``matplotlib.figure.Figure`` objects created directly (never through
``pyplot``), so no global figure state is kept between calls and nothing needs closing;
saving picks the Agg (PNG) and SVG renderers by file type. matplotlib is imported inside the
functions, so ``import marginkit.plots`` stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "MAX_LEGEND_CLASSES",
    "ClassPalette",
    "add_class_key",
    "class_palette",
    "new_figure",
    "save_figure",
    "set_angle_ticks",
]

MAX_LEGEND_CLASSES = 20
"""Up to this many classes get a qualitative colour each and a legend; more get a colorbar."""

_SUFFIXES = (".png", ".svg")


def new_figure(width: float, height: float) -> Figure:
    """A free-standing figure (not registered with ``pyplot``) with constrained layout.

    Args:
        width: width in inches.
        height: height in inches.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, path: str | Path) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` (150 dpi) and ``<path>.svg``; create missing folders.

    Args:
        fig: the figure.
        path: the path without suffix; a trailing ``.png`` or ``.svg`` is dropped (so
            ``"out/roc.png"`` writes ``out/roc.png`` and ``out/roc.svg``). Any other dot in the
            name is kept (``"run.v2"`` writes ``run.v2.png``).

    Returns:
        The two paths written, PNG first.
    """
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure; got {type(fig).__name__}")
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or pathlib.Path; got {type(path).__name__}")
    stem = Path(path)
    if stem.suffix.lower() in _SUFFIXES:
        stem = stem.with_suffix("")
    if stem.name in ("", ".", ".."):
        raise ValueError(f"path must name a file (without suffix); got {str(path)!r}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in _SUFFIXES:
        target = stem.with_name(stem.name + suffix)
        metadata: dict[str, Any] = {"Date": None} if suffix == ".svg" else {}
        fig.savefig(target, format=suffix[1:], dpi=150, bbox_inches="tight", metadata=metadata)
        written.append(target)
    return written


@dataclass(frozen=True)
class ClassPalette:
    """One colour per class.

    Attributes:
        classes: (K,) sorted class indices.
        colors: (K, 4) RGBA colour of each class.
        names: (K,) display name of each class.
        legend: True when K <= ``MAX_LEGEND_CLASSES`` (qualitative colours and a legend);
            False for more classes (a continuous colormap and a colorbar).
    """

    classes: np.ndarray
    colors: np.ndarray
    names: tuple[str, ...]
    legend: bool

    def colors_of(self, labels: np.ndarray) -> np.ndarray:
        """(N, 4) RGBA colour of each label (every label must be one of ``classes``)."""
        return self.colors[np.searchsorted(self.classes, labels)]


def class_palette(classes: np.ndarray, class_names: Sequence[str] | None = None) -> ClassPalette:
    """Colours for the sorted class indices ``classes``: ``tab10`` up to 10 classes,
    ``tab20`` up to 20, and ``turbo`` (a continuous map, by class index) beyond.

    Args:
        classes: (K,) sorted, distinct class indices.
        class_names: optional display names indexed by class index (``class_names[k]`` names
            class ``k``); default the index itself.

    Raises:
        ValueError: ``class_names`` too short for the largest class index.
    """
    from matplotlib import colormaps

    classes = np.asarray(classes, dtype=np.int64)
    count = len(classes)
    if class_names is not None:
        if isinstance(class_names, str) or not isinstance(class_names, Sequence):
            raise TypeError(
                f"class_names must be a sequence of str; got {type(class_names).__name__}"
            )
        if int(classes.min()) < 0 or int(classes.max()) >= len(class_names):
            raise ValueError(
                f"class_names has {len(class_names)} names but the classes run from "
                f"{int(classes.min())} to {int(classes.max())}; expected a name for each"
            )
        names = tuple(str(class_names[int(k)]) for k in classes)
    else:
        names = tuple(str(int(k)) for k in classes)
    if count <= 10:
        colors = colormaps["tab10"](np.arange(count))
    elif count <= MAX_LEGEND_CLASSES:
        colors = colormaps["tab20"](np.arange(count))
    else:
        colors = colormaps["turbo"](np.linspace(0.0, 1.0, count))
    return ClassPalette(classes, colors, names, count <= MAX_LEGEND_CLASSES)


def add_class_key(
    fig: Figure,
    axes: Axes | Sequence[Axes],
    palette: ClassPalette,
    extra_handles: Sequence[Any] = (),
) -> None:
    """A legend of the classes (and ``extra_handles``) outside the axes on the right, or,
    for more than ``MAX_LEGEND_CLASSES`` classes, a colorbar of the class index.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib.lines import Line2D

    handles = list(extra_handles)
    if palette.legend:
        handles = [
            Line2D([], [], linestyle="none", marker="o", markersize=7, color=color, label=name)
            for color, name in zip(palette.colors, palette.names, strict=True)
        ] + handles
    if handles:
        fig.legend(
            handles=handles,
            loc="outside right upper",
            title="class" if palette.legend else None,
            frameon=False,
        )
    if not palette.legend:
        mappable = ScalarMappable(
            norm=Normalize(float(palette.classes[0]), float(palette.classes[-1])),
            cmap=ListedColormap(palette.colors),
        )
        fig.colorbar(
            mappable,
            ax=axes,
            location="bottom",
            shrink=0.6,
            label=f"class index ({len(palette.classes)} classes: too many for a legend)",
        )


def set_angle_ticks(axes: Axes) -> None:
    """x ticks at multiples of pi/4 on ``[0, pi]``, labelled in radians and degrees."""
    names = ("0", "π/4", "π/2", "3π/4", "π")
    axes.set_xticks(
        [k * math.pi / 4 for k in range(5)], [f"{name}\n{45 * k}°" for k, name in enumerate(names)]
    )
