"""Atomic run-folder files and checkpoints.

A checkpoint is a folder ``RUN/checkpoints/epoch-NNNN/`` holding

- ``weights.safetensors``: the backbone's and the head's ``state_dict`` (keys prefixed
  ``backbone.`` and ``head.``), buffers included: batch-norm statistics, the head's step
  counter and every schedule's state;
- ``state.pt`` (``torch.save``): optimiser state, the global step, the completed epoch,
  the shuffling/augmentation generator's state, the global torch RNG state and the metrics
  history.

``RUN/checkpoints/latest`` names the newest *complete* checkpoint. A checkpoint is written
into a temporary folder, flushed to disk, renamed into place, and only then does ``latest``
move to it (itself replaced by an atomic rename); older checkpoints are deleted after that.
A process killed at any moment therefore leaves ``latest`` pointing at a complete checkpoint.

The environment variable ``MARGINKIT_FAULT`` injects crashes for the tests: ``checkpoint:E``
makes the process SIGKILL itself half-way through writing the checkpoint of epoch E (after
the weights, before the state and the pointer), ``step:N`` after training step N.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "Checkpoint",
    "atomic_write_text",
    "fault_point",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINTS = "checkpoints"
LATEST = "latest"
WEIGHTS = "weights.safetensors"
STATE = "state.pt"


def fault_point(kind: str, value: int) -> None:
    """SIGKILL this process if ``MARGINKIT_FAULT`` is ``f"{kind}:{value}"`` (test hook)."""
    if os.environ.get("MARGINKIT_FAULT", "") == f"{kind}:{value}":
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclass
class Checkpoint:
    """A loaded checkpoint: weights by key and the training state."""

    path: Path
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])


def _prefixed(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    # contiguous clones: safetensors refuses shared or non-contiguous storage
    return {
        f"{prefix}.{key}": value.detach().cpu().contiguous().clone()
        for key, value in module.state_dict().items()
    }


def save_checkpoint(
    run_dir: Path, backbone: nn.Module, head: nn.Module, state: dict[str, Any]
) -> Path:
    """Write the checkpoint of ``state["epoch"]`` atomically; return its folder.

    Args:
        run_dir: the run folder.
        backbone: the backbone (its ``state_dict`` goes to safetensors).
        head: the margin head (its ``state_dict``, schedule buffers included).
        state: ``epoch`` plus optimiser/RNG/metrics state for ``torch.save``.
    """
    from safetensors.torch import save_file

    epoch = int(state["epoch"])
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:04d}"
    temporary = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        weights = {**_prefixed("backbone", backbone), **_prefixed("head", head)}
        save_file(weights, str(temporary / WEIGHTS), metadata={"epoch": str(epoch)})
        fault_point("checkpoint", epoch)
        torch.save(state, temporary / STATE)
        for file in (WEIGHTS, STATE):
            with open(temporary / file, "rb") as handle:
                os.fsync(handle.fileno())
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    _fsync_directory(root)
    atomic_write_text(root / LATEST, name + "\n")
    for stale in root.iterdir():
        if stale.name not in (name, LATEST):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder of the newest complete checkpoint of ``run_dir``, or None."""
    pointer = run_dir / CHECKPOINTS / LATEST
    if not pointer.is_file():
        return None
    folder = run_dir / CHECKPOINTS / pointer.read_text().strip()
    if not (folder / WEIGHTS).is_file() or not (folder / STATE).is_file():
        return None
    return folder


def load_checkpoint(folder: Path) -> Checkpoint:
    """Read a checkpoint folder written by :func:`save_checkpoint`."""
    from safetensors.torch import load_file

    weights = load_file(str(folder / WEIGHTS))
    state = torch.load(folder / STATE, map_location="cpu", weights_only=False)
    return Checkpoint(path=folder, weights=weights, state=state)


def load_weights(checkpoint: Checkpoint, backbone: nn.Module, head: nn.Module) -> None:
    """Copy a checkpoint's weights into ``backbone`` and ``head`` (strict key match)."""
    for prefix, module in (("backbone", backbone), ("head", head)):
        start = len(prefix) + 1
        part = {k[start:]: v for k, v in checkpoint.weights.items() if k.startswith(prefix + ".")}
        module.load_state_dict(part, strict=True)
