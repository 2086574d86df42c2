"""The numbers in a run folder's files: accuracies as fractions, how to read older files,
and no NaN or infinity in a JSON file (:func:`json_safe`).

``metrics.json``, ``log.csv``, ``eval.json`` and the checkpoints' training history hold every
accuracy as a fraction in ``[0, 1]``; percentages are for printing only. ``metrics.json``,
``eval.json`` and the checkpoint state say so with ``"accuracy_unit": "fraction"``. Files
written by earlier versions held percentages and carry no unit: :func:`metrics_in_fractions`
converts them, so that no reader ever mixes the two.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "ACCURACY_KEYS",
    "ACCURACY_UNIT",
    "json_safe",
    "metrics_in_fractions",
    "percent",
    "rows_in_fractions",
]

#: The per-epoch accuracies of a training history row.
ACCURACY_KEYS = ("train_accuracy", "validation_accuracy", "test_accuracy")
#: The unit of every accuracy marginkit writes.
ACCURACY_UNIT = "fraction"


def json_safe(value: Any) -> Any:
    """A JSON-safe copy of ``value``: non-finite floats become None (never NaN in a file)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def rows_in_fractions(rows: list[dict[str, Any]], unit: str | None) -> list[dict[str, Any]]:
    """History rows with their accuracies as fractions; ``unit`` is the rows' own unit
    (None: an earlier version's file, in percent)."""
    if unit == ACCURACY_UNIT:
        return [dict(row) for row in rows]
    return [
        {
            key: value / 100.0 if key in ACCURACY_KEYS and value is not None else value
            for key, value in row.items()
        }
        for row in rows
    ]


def metrics_in_fractions(metrics: dict[str, Any]) -> dict[str, Any]:
    """A ``metrics.json`` dict with every accuracy a fraction, whatever version wrote it."""
    unit = metrics.get("accuracy_unit")
    converted = dict(metrics, accuracy_unit=ACCURACY_UNIT)
    if isinstance(metrics.get("epochs"), list):
        converted["epochs"] = rows_in_fractions(metrics["epochs"], unit)
    if isinstance(metrics.get("final"), dict):
        converted["final"] = rows_in_fractions([metrics["final"]], unit)[0]
    return converted


def percent(fraction: float | None) -> float | None:
    """A fraction as a percentage (None stays None)."""
    return None if fraction is None else 100.0 * fraction
