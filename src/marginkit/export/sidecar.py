"""The JSON file beside an exported model: what it expects, what it gives, where it came from.

An exported ``FILE`` (``model.onnx``, ``model.pt``, ``model.safetensors``) has its record at
``FILE + ".json"`` (``model.onnx.json``): appended rather than replacing the suffix, so two
formats exported side by side (``face.onnx``, ``face.pt``) never share a record. It holds the
format, the file's name, size and SHA-256 (checked on every load), the marginkit and torch
versions, the backbone and embedding size, the input's preprocessing
(:class:`~marginkit.data.preprocessing.Preprocessing`: shape (C, H, W), mean and std, crop),
the loss and its settings, the run and checkpoint it came from, and the check made after
writing (runtime, batch sizes, largest difference from PyTorch, tolerance).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from marginkit.errors import MarginkitError, first_line

__all__ = [
    "FORMATS",
    "ExportError",
    "check_format",
    "file_digest",
    "first_line",
    "read_sidecar",
    "sidecar_path",
]

#: The export formats, by name.
FORMATS = ("onnx", "torchscript", "safetensors")

#: Keys every record holds (:func:`read_sidecar` checks them).
_REQUIRED = ("format", "sha256", "bytes", "backbone", "embedding_dim", "preprocessing")


class ExportError(MarginkitError, ValueError):
    """An export or an exported file cannot be used as asked; the message is one line
    naming the run folder or file and what is wrong."""


def check_format(format: str) -> str:
    """``format`` in lower case if it is one of :data:`FORMATS`.

    Raises:
        ExportError: naming the format and listing :data:`FORMATS`.
    """
    name = format.strip().lower() if isinstance(format, str) else format
    if name not in FORMATS:
        raise ExportError(
            f"format: unknown format {format!r}; expected one of {', '.join(FORMATS)}"
        )
    return str(name)


def sidecar_path(model_path: str | Path) -> Path:
    """The record of ``model_path``: the same name with ``.json`` appended."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def file_digest(path: Path) -> tuple[str, int]:
    """``(sha256 hex digest, size in bytes)`` of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    """The record of an exported file, after checking the file against it.

    Raises:
        ExportError: the file or its record is missing or malformed, or the file's size or
            SHA-256 differs from the record's (it changed after the export).
    """
    path = Path(model_path)
    record = sidecar_path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    try:
        info = json.loads(record.read_text())
    except FileNotFoundError:
        raise ExportError(
            f"{path}: its record {record.name} is missing (marginkit export writes it beside "
            "the file)"
        ) from None
    except (OSError, ValueError) as error:
        raise ExportError(f"{record}: expected the JSON record of {path.name} ({error})") from None
    missing = [key for key in _REQUIRED if not isinstance(info, dict) or key not in info]
    if missing:
        raise ExportError(f"{record}: expected an export record, missing {', '.join(missing)}")
    try:
        check_format(info["format"])
    except ExportError as error:
        raise ExportError(f"{record}: {error}") from None
    digest, size = file_digest(path)
    if size != info["bytes"] or digest != info["sha256"]:
        raise ExportError(
            f"{path}: its size or SHA-256 differs from {record.name}'s (changed after export)"
        )
    return info
