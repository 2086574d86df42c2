"""Pictures of runs: ROC curves of several runs overlaid, learning curves from metrics.json.

- :func:`roc_curves`: verification ROC (true accept rate against false accept rate) with a
  logarithmic FAR axis, where face-verification operating points (FAR 1e-3, 1e-4) live.
- :func:`learning_curves`: loss and accuracy per epoch from one or more runs'
  ``metrics.json``, with the scheduled hyper-parameters (L-Softmax's lambda, Cam-softmax's
  c, ...) on a twin axis when they change.

``metrics.json`` (written by :mod:`marginkit.train`) holds ``{"epochs": [{"epoch": 1,
"train_loss": ..., "train_accuracy": ..., "validation_accuracy": ..., "test_accuracy": ...,
"hyperparameters": {...}, ...}, ...], "final": {...}}`` with accuracies in percent; any key
may be missing (a missing ``epoch`` counts from 1; a missing value is a gap in the line).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from marginkit._validation import as_float_array
from marginkit.metrics.roc import trapezoid_area
from marginkit.plots.figures import new_figure, save_figure
from marginkit.runfolder import RunFolder

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "build_learning_curves",
    "build_roc_curves",
    "learning_curves",
    "load_run_metrics",
    "roc_curves",
]

_LINESTYLES = ("-", "--", "-.", ":")


# --------------------------------------------------------------------------------- ROC
def _check_curve(name: str, curve: Any) -> tuple[np.ndarray, np.ndarray]:
    """(far, tar) of one curve as float arrays sorted by FAR, validated."""
    if not isinstance(curve, (tuple, list, np.ndarray)) or len(curve) != 2:
        raise ValueError(f"curves[{name!r}] must be a pair (far, tar) of 1-D arrays")
    far = as_float_array(f"curves[{name!r}] far", curve[0], ndim=1)
    tar = as_float_array(f"curves[{name!r}] tar", curve[1], ndim=1)
    if len(far) != len(tar):
        raise ValueError(
            f"curves[{name!r}] has {len(far)} FAR values but {len(tar)} TAR values; "
            "the lengths must match"
        )
    for label, values in (("far", far), ("tar", tar)):
        if values.min() < 0.0 or values.max() > 1.0:
            raise ValueError(
                f"curves[{name!r}] {label} must lie in [0, 1]; "
                f"got values from {values.min():g} to {values.max():g}"
            )
    order = np.lexsort((tar, far))
    return far[order], tar[order]


def _area(far: np.ndarray, tar: np.ndarray) -> float | None:
    """Trapezoid area under a sorted ROC that spans FAR 0 to 1, else None (no made-up AUC)."""
    if far[0] != 0.0 or far[-1] != 1.0:
        return None
    return trapezoid_area(far, tar)


def build_roc_curves(curves: Mapping[str, tuple[Any, Any]], *, title: str | None = None) -> Figure:
    """The ROC figure (see :func:`roc_curves`), not yet saved."""
    if not isinstance(curves, Mapping):
        raise TypeError(f"curves must be a dict of name -> (far, tar); got {type(curves).__name__}")
    if not curves:
        raise ValueError("curves is empty; expected at least one name -> (far, tar)")
    checked = {str(name): _check_curve(str(name), curve) for name, curve in curves.items()}
    positive = [far[far > 0.0] for far, _ in checked.values()]
    if not any(len(values) for values in positive):
        raise ValueError("curves has no point with FAR > 0; a log-scale FAR axis needs some")
    smallest = min(float(values.min()) for values in positive if len(values))
    left = 10.0 ** math.floor(math.log10(smallest))

    fig = new_figure(8.0, 6.0)
    axes = fig.subplots()
    for index, (name, (far, tar)) in enumerate(checked.items()):
        keep = far > 0.0
        area = _area(far, tar)
        axes.plot(
            far[keep],
            tar[keep],
            color=f"C{index % 10}",
            linestyle=_LINESTYLES[(index // 10) % len(_LINESTYLES)],
            linewidth=1.8,
            drawstyle="steps-post",
            label=name if area is None else f"{name} (AUC {area:.4f})",
        )
    chance = np.logspace(math.log10(left), 0.0, 200)
    axes.plot(chance, chance, color="0.6", linestyle=":", linewidth=1.0, label="chance (TAR = FAR)")
    axes.set_xscale("log")
    axes.set_xlim(left, 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.grid(True, which="major", color="0.9")
    axes.set_xlabel("false accept rate, FAR (log scale)")
    axes.set_ylabel("true accept rate, TAR")
    axes.legend(loc="lower right", frameon=False)
    axes.set_title("Verification ROC" if title is None else title)
    return fig


def roc_curves(
    curves: Mapping[str, tuple[Any, Any]], path: str | Path, *, title: str | None = None
) -> list[Path]:
    """Overlay the ROC curves of several runs with a log-scale FAR axis; PNG + SVG.

    Each curve is a pair ``(far, tar)`` of equal-length 1-D arrays in ``[0, 1]`` (e.g.
    ``sklearn.metrics.roc_curve``'s ``fpr, tpr``); it is sorted by FAR and drawn as a step
    function. Points at FAR = 0 cannot appear on a log axis and are left out of the line;
    the axis starts at the power of ten below the smallest positive FAR. The legend gives
    the trapezoid AUC of a curve that spans FAR 0 to 1 (none otherwise). A dotted line marks
    chance (TAR = FAR).

    Args:
        curves: legend name -> (far, tar).
        path: output path without suffix.
        title: figure title.

    Returns:
        The PNG and SVG paths.
    """
    return save_figure(build_roc_curves(curves, title=title), path)


# --------------------------------------------------------------------- learning curves
RunSource = str | Path | Mapping[str, Any]


def load_run_metrics(source: RunSource) -> dict[str, Any]:
    """The metrics dict of a run: a dict as is, or read from a ``metrics.json`` path or a
    run folder that contains one.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the JSON has no ``"epochs"`` list of dicts.
    """
    if isinstance(source, Mapping):
        metrics, where = dict(source), "the metrics dict"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            path = RunFolder(path).metrics
        if not path.is_file():
            raise FileNotFoundError(f"no metrics file at {path}")
        with path.open(encoding="utf-8") as handle:
            metrics = json.load(handle)
        where = str(path)
        if not isinstance(metrics, dict):
            raise ValueError(f"{where} must hold a JSON object; got {type(metrics).__name__}")
    else:
        raise TypeError(
            "runs entries must be a metrics dict, a metrics.json path or a run folder; "
            f"got {type(source).__name__}"
        )
    epochs = metrics.get("epochs")
    if not isinstance(epochs, list) or not all(isinstance(entry, dict) for entry in epochs):
        raise ValueError(f"{where} must have an 'epochs' list of per-epoch dicts")
    return metrics


def _run_label(source: RunSource, index: int) -> str:
    if isinstance(source, (str, Path)):
        path = Path(source)
        return path.name if path.is_dir() else path.parent.name or path.stem
    return f"run {index + 1}"


def _series(epochs: list[dict[str, Any]], key: str) -> np.ndarray:
    """(E,) float values of ``key`` per epoch, NaN where missing or not a number."""
    values = []
    for entry in epochs:
        value = entry.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values.append(float(value))
        else:
            values.append(math.nan)
    return np.array(values, dtype=np.float64)


def _epoch_numbers(epochs: list[dict[str, Any]]) -> np.ndarray:
    numbers = _series(epochs, "epoch")
    fallback = np.arange(1, len(epochs) + 1, dtype=np.float64)
    return np.where(np.isnan(numbers), fallback, numbers)


def _hyperparameter_series(epochs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """(E,) values per epoch of every hyper-parameter any epoch records (NaN elsewhere)."""
    found = [entry.get("hyperparameters") for entry in epochs]
    tables = [table if isinstance(table, dict) else {} for table in found]
    names = list(dict.fromkeys(key for table in tables for key in table))
    return {key: _series(tables, key) for key in names}


def _verification_series(
    epochs: list[dict[str, Any]],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per ``--verify`` set, ``(x, accuracy)`` of every verification in ``epochs`` (within
    an epoch and at its end), ``x`` in epochs: a verification at step ``s`` of epoch ``e``
    (steps ``S[e-1]+1 .. S[e]``) is at ``e - 1 + (s - S[e-1]) / (S[e] - S[e-1])``."""
    points: dict[str, list[tuple[float, float]]] = {}
    previous = 0.0
    for number, entry in zip(_epoch_numbers(epochs), epochs, strict=True):
        end = float(entry.get("step") or 0)
        records = [*entry.get("verification_steps", []), entry.get("verification")]
        for record in records:
            if not isinstance(record, dict):
                continue
            share = (record["step"] - previous) / (end - previous) if end > previous else 1.0
            for name, figures in record.get("sets", {}).items():
                points.setdefault(name, []).append((number - 1 + share, figures["accuracy"]))
        previous = end
    return {
        name: (np.array([x for x, _ in pairs]), np.array([y for _, y in pairs]))
        for name, pairs in points.items()
    }


def _plot_verification(
    axes: Axes, epochs: list[dict[str, Any]], style: _RunStyle, scale: float
) -> None:
    """Each ``--verify`` set's 10-fold accuracy (flip TTA) as a dotted line."""
    for index, (name, (x, accuracy)) in enumerate(_verification_series(epochs).items()):
        axes.plot(
            x,
            accuracy * scale,
            color=style.color,
            linestyle=":",
            marker="x^sDv"[index % 5],
            markersize=4,
            label=f"{style.prefix}verification {name} (10-fold, flip)",
        )


def _normalise_runs(runs: Any) -> list[tuple[str, dict[str, Any]]]:
    if isinstance(runs, (str, Path)) or (isinstance(runs, Mapping) and "epochs" in runs):
        runs = [runs]
    if isinstance(runs, Mapping):
        items = [(str(name), source) for name, source in runs.items()]
    elif isinstance(runs, Sequence):
        items = [(_run_label(source, index), source) for index, source in enumerate(runs)]
    else:
        raise TypeError(
            "runs must be a metrics dict, a path, or a list or dict of them; "
            f"got {type(runs).__name__}"
        )
    if not items:
        raise ValueError("runs is empty; expected at least one run")
    loaded = [(name, load_run_metrics(source)) for name, source in items]
    for name, metrics in loaded:
        if not metrics["epochs"]:
            raise ValueError(f"run {name!r} has no epochs recorded")
    return loaded


class _ScheduleAxes:
    """One twin axis of the loss panel per changing hyper-parameter, extra ones on offset
    right spines."""

    def __init__(self, loss_axes: Axes) -> None:
        self.loss_axes = loss_axes
        self.by_key: dict[str, Axes] = {}

    def axes_for(self, key: str) -> Axes:
        if key not in self.by_key:
            twin = self.loss_axes.twinx()
            if self.by_key:
                twin.spines["right"].set_position(("axes", 1.0 + 0.16 * len(self.by_key)))
            name = key.rstrip("_")
            twin.set_ylabel(f"{name} (radians)" if name == "c" else name)
            self.by_key[key] = twin
        return self.by_key[key]

    def marker_of(self, key: str) -> str:
        return "^sDv"[list(self.by_key).index(key) % 4]


@dataclass(frozen=True)
class _RunStyle:
    """How one run's lines look: its colour, legend prefix and epoch numbers (E,)."""

    color: str
    prefix: str
    epoch: np.ndarray


def _plot_series(
    axes: Axes,
    epochs: list[dict[str, Any]],
    style: _RunStyle,
    series: tuple[tuple[str, str, str], ...],
    scale: float = 1.0,
) -> None:
    """Each ``(key, linestyle, legend text)`` of ``series`` recorded in some epoch, as a line."""
    for key, linestyle, text in series:
        values = _series(epochs, key)
        if np.isfinite(values).any():
            axes.plot(
                style.epoch,
                values * scale,
                color=style.color,
                linestyle=linestyle,
                marker="o",
                markersize=3,
                label=f"{style.prefix}{text}",
            )


def _plot_hyperparameters(
    epochs: list[dict[str, Any]], style: _RunStyle, schedules: _ScheduleAxes
) -> list[str]:
    """Draw the hyper-parameters that change on their twin axes; return the constant ones
    as ``name=value`` texts."""
    constants = []
    for key, values in _hyperparameter_series(epochs).items():
        finite = values[np.isfinite(values)]
        if not finite.size:
            continue
        if np.ptp(finite) <= 1e-12 * max(1.0, float(np.abs(finite).max())):
            constants.append(f"{key.rstrip('_')}={finite[0]:.3g}")
            continue
        twin = schedules.axes_for(key)
        twin.plot(
            style.epoch,
            values,
            color=style.color,
            linestyle=":",
            linewidth=2.0,
            marker=schedules.marker_of(key),
            markersize=4,
            label=f"{style.prefix}{key.rstrip('_')} (axis on the right)",
        )
    return constants


def _finish_panels(loss_axes: Axes, accuracy_axes: Axes, schedules: _ScheduleAxes) -> None:
    """Titles, axis labels, grids and legends of the two panels."""
    from matplotlib.ticker import MaxNLocator

    for axes, label in ((loss_axes, "Loss"), (accuracy_axes, "Accuracy")):
        axes.set_title(label)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, color="0.92")
        if not axes.lines:
            axes.text(0.5, 0.5, "not recorded", transform=axes.transAxes, ha="center")
    loss_axes.set_ylabel("mean cross-entropy loss (nats)")
    accuracy_axes.set_ylabel("top-1 accuracy (%)")
    handles, labels = loss_axes.get_legend_handles_labels()
    for twin in schedules.by_key.values():
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        loss_axes.legend(handles, labels, loc="best", fontsize="small", framealpha=0.9)
    if accuracy_axes.lines:
        accuracy_axes.legend(loc="lower right", fontsize="small", framealpha=0.9)


_LOSSES = (("train_loss", "-", "train loss"), ("test_loss", "--", "test loss"))
_ACCURACIES = (
    ("train_accuracy", "-", "train accuracy"),
    ("validation_accuracy", "-.", "validation accuracy"),
    ("test_accuracy", "--", "test accuracy"),
)


def build_learning_curves(
    runs: Any,
    *,
    accuracy_unit: Literal["percent", "fraction"] | None = None,
    title: str | None = None,
) -> Figure:
    """The learning-curve figure (see :func:`learning_curves`), not yet saved.

    Returns:
        A figure with two axes titled ``"Loss"`` and ``"Accuracy"``; the loss axes carries
        a twin axis (an offset right spine each) per hyper-parameter that changes in a run.
    """
    if accuracy_unit not in (None, "percent", "fraction"):
        raise ValueError(
            f"accuracy_unit must be 'percent', 'fraction' or None; got {accuracy_unit!r}"
        )
    loaded = _normalise_runs(runs)
    fig = new_figure(13.0, 5.5)
    loss_axes, accuracy_axes = fig.subplots(1, 2)
    schedules = _ScheduleAxes(loss_axes)
    for index, (name, metrics) in enumerate(loaded):
        epochs = metrics["epochs"]
        style = _RunStyle(
            color=f"C{index % 10}",
            prefix=f"{name}: " if len(loaded) > 1 else "",
            epoch=_epoch_numbers(epochs),
        )
        _plot_series(loss_axes, epochs, style, _LOSSES)
        # a run's own unit: "fraction" in marginkit's files, percent in files without one
        unit = accuracy_unit or metrics.get("accuracy_unit") or "percent"
        to_percent = 100.0 if unit == "fraction" else 1.0
        _plot_series(accuracy_axes, epochs, style, _ACCURACIES, scale=to_percent)
        _plot_verification(accuracy_axes, epochs, style, scale=to_percent)
        constants = _plot_hyperparameters(epochs, style, schedules)
        if constants:
            accuracy_axes.plot(
                [], [], linestyle="none", label=f"{style.prefix}constant: {', '.join(constants)}"
            )
    _finish_panels(loss_axes, accuracy_axes, schedules)
    fig.suptitle("Learning curves" if title is None else title)
    return fig


def learning_curves(
    runs: Any,
    path: str | Path,
    *,
    accuracy_unit: Literal["percent", "fraction"] | None = None,
    title: str | None = None,
) -> list[Path]:
    """Plot loss and accuracy against epoch for one or more runs; PNG + SVG.

    Left: train (solid) and, when recorded, test (dashed) loss; hyper-parameters that change
    over the run (e.g. ``lambda``, ``c``) are drawn dotted on twin axes on the right of this
    panel, one axis per hyper-parameter name (so lambda's 1000 does not flatten c's
    radians). Right: train (solid), validation (dash-dot) and test (dashed) top-1 accuracy,
    and the 10-fold accuracy of each ``--verify`` set (dotted, at every verification)
    in percent; constant hyper-parameters are listed in its legend. One colour
    per run. Missing keys are tolerated: a missing value leaves a gap, a missing series is
    not drawn, a panel with nothing to draw says "not recorded".

    Args:
        runs: one run or several: each a metrics dict, a ``metrics.json`` path or a run
            folder holding one; several as a list (labelled by run folder name, or
            ``run 1``...) or a dict of label -> run.
        path: output path without suffix.
        accuracy_unit: how the accuracies are stored: ``"fraction"`` (multiplied by 100
            for the plot) or ``"percent"``; None: each run's own ``accuracy_unit`` key
            (``"fraction"`` in marginkit's ``metrics.json``), percent where it has none.
        title: figure title.

    Returns:
        The PNG and SVG paths.
    """
    return save_figure(build_learning_curves(runs, accuracy_unit=accuracy_unit, title=title), path)
