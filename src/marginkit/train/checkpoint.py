"""Checkpoints that are verified before they are trusted.

A checkpoint is a folder ``RUN/checkpoints/epoch-NNNN/`` holding

- ``weights.safetensors``: the backbone's and the head's ``state_dict`` (keys prefixed
  ``backbone.`` and ``head.``), buffers included: batch-norm statistics, the head's step
  counter and every schedule's state;
- ``state.pt`` (``torch.save``, loaded with ``weights_only=True``: tensors, numbers, strings,
  lists and dicts only, so a run folder from someone else cannot run code): optimiser state,
  the global step, the completed epoch, the shuffling/augmentation generator's state, the
  global torch RNG state and the metrics history;
- ``manifest.json``: the SHA-256 and size of both files, written last.

A checkpoint is written into a temporary folder, flushed to disk and renamed into place;
``RUN/checkpoints/latest`` then names it (for people: readers take the newest intact
checkpoint, see :func:`find_checkpoint`). A process killed at any moment therefore leaves
every finished checkpoint intact. Loading verifies the manifest: damage (a truncated file, a
flipped bit) is reported as "checkpoint epoch-0030 is damaged (weights.safetensors: checksum
mismatch)" instead of a traceback or silently wrong weights. The :data:`KEEP` newest
checkpoints are kept (the previous one is the fallback should the newest be damaged); only
older ones, superseded, and the temporary folders of interrupted writes are removed.

The environment variable ``MARGINKIT_FAULT`` injects crashes for the tests: ``checkpoint:E``
makes the process SIGKILL itself half-way through writing the checkpoint of epoch E (after
the weights, before the state and the pointer), ``step:N`` after training step N;
``step:N:hang`` makes it sleep for ever there instead. With ``MARGINKIT_FAULT_RANK=R`` only
the process of rank R (``RANK``, 0 when unset) fails (a dead or hung rank of several).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from marginkit.errors import MarginkitError
from marginkit.runfolder import (
    OutputError,
    RunFolder,
    atomic_write_text,
    fsync_folder,
    make_folder,
    temporary_name,
    write_file,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointSearch",
    "check_state",
    "damaged_state",
    "epoch_of",
    "fault_point",
    "find_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "load_part",
    "load_weights",
    "save_checkpoint",
    "state_mismatch",
    "verify_checkpoint",
]

LATEST = "latest"
WEIGHTS = "weights.safetensors"
STATE = "state.pt"
MANIFEST = "manifest.json"
#: How many of the newest checkpoints a run keeps.
KEEP = 2
_NAME = re.compile(r"epoch-(\d{4,})")


class CheckpointError(MarginkitError, ValueError):
    """A checkpoint is damaged or missing; the message is one line naming it and why."""


def fault_point(kind: str, value: int) -> None:
    """SIGKILL this process if ``MARGINKIT_FAULT`` is ``f"{kind}:{value}"``, or hang it if
    that is followed by ``:hang`` (test hook; ``MARGINKIT_FAULT_RANK`` picks one rank)."""
    fault = os.environ.get("MARGINKIT_FAULT", "")
    if not fault.startswith(f"{kind}:{value}"):
        return
    rank = os.environ.get("MARGINKIT_FAULT_RANK")
    if rank is not None and rank != os.environ.get("RANK", "0"):
        return
    if fault == f"{kind}:{value}":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == f"{kind}:{value}:hang":
        while True:
            time.sleep(60)


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


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(
    run_dir: Path,
    backbone: nn.Module,
    head: nn.Module,
    state: dict[str, Any],
    *,
    name: str | None = None,
) -> Path:
    """Write the checkpoint of ``state["epoch"]`` atomically; return its folder.

    Args:
        run_dir: the run folder.
        backbone: the backbone (its ``state_dict`` goes to safetensors).
        head: the margin head (its ``state_dict``, schedule buffers included).
        state: ``epoch`` plus optimiser/RNG/metrics state for ``torch.save``.
        name: None: the epoch's checkpoint ``epoch-NNNN``, then named in ``latest``, and
            the superseded ones removed. Else a checkpoint of that name (the best one,
            :mod:`marginkit.train.verification`), written the same way but neither named
            in ``latest`` nor used to resume; no other checkpoint is touched.

    Raises:
        OutputError: a file cannot be written (no space, read-only ...): one line naming
            it; the checkpoints written before stay intact.
    """
    from safetensors.torch import save

    epoch = int(state["epoch"])
    root = RunFolder(run_dir).checkpoints
    make_folder(root)
    named = name is not None
    name = f"epoch-{epoch:04d}" if name is None else name
    final = root / name
    temporary = temporary_name(final)
    try:
        os.mkdir(temporary)  # mode 0o777 less the umask
    except OSError as error:
        raise OutputError("create folder", temporary, error) from None
    try:
        weights = {**_prefixed("backbone", backbone), **_prefixed("head", head)}
        files = {WEIGHTS: save(weights, metadata={"epoch": str(epoch)})}
        write_file(temporary / WEIGHTS, files[WEIGHTS])
        fault_point("checkpoint", epoch)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        files[STATE] = buffer.getvalue()
        write_file(temporary / STATE, files[STATE])
        manifest = {
            "epoch": epoch,
            "files": {
                file: {"sha256": _digest(data), "bytes": len(data)} for file, data in files.items()
            },
        }
        write_file(temporary / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        if final.exists():
            shutil.rmtree(final)
        try:
            os.replace(temporary, final)
        except OSError as error:
            raise OutputError("write", final, error) from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    fsync_folder(root)
    if not named:
        atomic_write_text(root / LATEST, name + "\n")
        _remove_superseded(root, epoch)
    return final


def epoch_of(folder: Path) -> int | None:
    """The epoch of a checkpoint folder ``epoch-NNNN``, or None for another name."""
    match = _NAME.fullmatch(folder.name)
    return None if match is None else int(match.group(1))


def _checkpoint_folders(root: Path) -> list[Path]:
    """The ``epoch-NNNN`` folders under ``root``, newest first."""
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and epoch_of(p) is not None]
    return sorted(folders, key=lambda p: epoch_of(p) or 0, reverse=True)


def _remove_superseded(root: Path, epoch: int) -> None:
    """Remove the temporary folders of interrupted writes and the checkpoints older than
    the :data:`KEEP` newest up to ``epoch``; never a newer one."""
    kept = [p for p in _checkpoint_folders(root) if (epoch_of(p) or 0) <= epoch][:KEEP]
    for entry in root.iterdir():
        number = epoch_of(entry)
        interrupted = entry.name.startswith(".epoch-") and entry.is_dir()
        superseded = number is not None and number < epoch and entry not in kept
        if interrupted or superseded:
            shutil.rmtree(entry, ignore_errors=True)


def verify_checkpoint(folder: Path) -> dict[str, bytes]:
    """The checkpoint's files by name, after checking them against the manifest.

    Raises:
        CheckpointError: "checkpoint NAME is damaged (FILE: what)".
    """

    def damaged(file: str, what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {folder.name} is damaged ({file}: {what})")

    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        listed = manifest["files"]
    except FileNotFoundError:
        raise damaged(MANIFEST, "missing") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise damaged(MANIFEST, "unreadable") from None
    files = {}
    for file in (WEIGHTS, STATE):
        try:
            data = (folder / file).read_bytes()
        except FileNotFoundError:
            raise damaged(file, "missing") from None
        except OSError as error:
            raise damaged(file, f"unreadable, {error.strerror}") from None
        entry = listed.get(file) if isinstance(listed, dict) else None
        if not isinstance(entry, dict):
            raise damaged(MANIFEST, f"no entry for {file}")
        if entry.get("bytes") != len(data):
            raise damaged(file, f"{len(data)} bytes, {entry.get('bytes')} expected")
        if entry.get("sha256") != _digest(data):
            raise damaged(file, "checksum mismatch")
        files[file] = data
    return files


def damaged_state(folder: Path, why: str, error: Exception | None = None) -> CheckpointError:
    """The error of a checkpoint whose ``state.pt`` matches its manifest but is not the
    training state marginkit writes (a writer's bug, a hand-made file): one line, with the
    first line of ``error`` when one caused it."""
    if error is not None:
        why += ", " + (str(error).splitlines()[0] if str(error) else type(error).__name__)
    return CheckpointError(f"checkpoint {folder.name} is damaged ({STATE}: {why})")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_byte_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def _state_problem(state: Any, resumable: bool) -> str | None:
    """What keeps ``state`` from being a checkpoint's training state, or None.

    Every checkpoint's (a best one's too) holds the ``epoch`` and ``step`` counts and the
    ``history`` of epoch rows; resuming also needs the optimiser's state and the generators'
    (``optimizer``, ``torch_rng``: the process's, or each one's under ``ranks``;
    ``generator``: the batches').
    """
    if not isinstance(state, dict):
        return f"a {type(state).__name__}, not a mapping"
    for key in ("epoch", "step"):
        if key not in state:
            return f"no {key}"
        if not _is_count(state[key]):
            return f"{key} is a {type(state[key]).__name__}, not a count"
    history = state.get("history")
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        return "no history of epochs"
    if not resumable:
        return None
    parts = state.get("ranks", [state])
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
        return "ranks is not a list of each process's state"
    for part in parts:
        optimizer = part.get("optimizer")
        if not isinstance(optimizer, dict) or not isinstance(optimizer.get("param_groups"), list):
            return "no optimizer state"
        if not _is_byte_tensor(part.get("torch_rng")):
            return "no torch_rng state"
    if not _is_byte_tensor(state.get("generator")):
        return "no generator state"
    return None


def check_state(folder: Path, state: Any, *, resumable: bool = False) -> dict[str, Any]:
    """``state``, the training state of checkpoint ``folder``, once its shape is checked.

    Args:
        folder: the checkpoint's folder (for the message).
        state: what its ``state.pt`` holds.
        resumable: also check what resuming needs (optimiser and generator states).

    Raises:
        CheckpointError: "checkpoint NAME is damaged (state.pt: not a training state: no
            optimizer state)".
    """
    problem = _state_problem(state, resumable)
    if problem is not None:
        raise damaged_state(folder, f"not a training state: {problem}")
    return state


def load_checkpoint(folder: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and verify a checkpoint folder written by :func:`save_checkpoint`.

    ``state.pt`` is loaded with ``weights_only=True``: it cannot run code. A checkpoint loads
    on any machine, whatever device wrote it: the weights are stored as CPU tensors and go
    to ``map_location``; the training state is always mapped to the CPU (the RNG states must
    be CPU tensors; ``Optimizer.load_state_dict`` moves the optimiser's state to its
    parameters' device), so a run trained on CUDA loads, and resumes, on a CPU-only machine.

    Args:
        folder: the checkpoint's folder.
        map_location: the device of the returned weights.

    Raises:
        CheckpointError: the folder is damaged (one line naming the file and why), its
            ``state.pt`` included: not a training state (:func:`check_state`).
    """
    from safetensors.torch import load

    files = verify_checkpoint(folder)
    try:
        weights = load(files[WEIGHTS])  # CPU tensors
    except Exception as error:  # the manifest matched, so the writer wrote it wrong
        raise CheckpointError(
            f"checkpoint {folder.name} is damaged ({WEIGHTS}: unreadable, {error})"
        ) from None
    device = torch.device(map_location)
    if device.type != "cpu":
        weights = {key: value.to(device) for key, value in weights.items()}
    try:
        state = torch.load(io.BytesIO(files[STATE]), map_location="cpu", weights_only=True)
    except Exception as error:
        raise damaged_state(folder, "unreadable", error) from None
    return Checkpoint(path=folder, weights=weights, state=check_state(folder, state))


@dataclass
class CheckpointSearch:
    """What :func:`find_checkpoint` found.

    Attributes:
        folder: the newest intact checkpoint, or None.
        damaged: one message per damaged checkpoint newer than ``folder``, newest first.
        damaged_folders: those checkpoints' folders, in the same order.
    """

    folder: Path | None
    damaged: list[str] = field(default_factory=list)
    damaged_folders: list[Path] = field(default_factory=list)

    def report(self) -> str:
        """One line: the newest damage and what is intact (empty when nothing is damaged)."""
        if not self.damaged:
            return ""
        intact = (
            f"the newest intact one is {self.folder.name}"
            if self.folder is not None
            else "no intact checkpoint is left"
        )
        return f"{self.damaged[0]}; {intact}"


def find_checkpoint(run_dir: Path) -> CheckpointSearch:
    """The newest intact checkpoint of ``run_dir``, and the damaged ones newer than it.

    Every ``epoch-NNNN`` folder counts, whether ``latest`` names it or not (a process killed
    between the rename and the pointer update, a deleted or damaged pointer).
    """
    search = CheckpointSearch(folder=None)
    for folder in _checkpoint_folders(RunFolder(run_dir).checkpoints):
        try:
            verify_checkpoint(folder)
        except CheckpointError as error:
            search.damaged.append(str(error))
            search.damaged_folders.append(folder)
            continue
        search.folder = folder
        break
    return search


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder of the newest intact checkpoint of ``run_dir``, or None."""
    return find_checkpoint(run_dir).folder


def state_mismatch(
    module: nn.Module,
    weights: dict[str, torch.Tensor],
    names: Mapping[str, str] | None = None,
) -> str | None:
    """Why ``weights`` cannot be loaded into ``module`` strictly, in a few words (the first
    tensor of another shape, the missing and unexpected keys), or None when they fit.

    Args:
        module: the network built.
        weights: its state dict as saved, by ``module``'s key names.
        names: how the saved file names a key of ``module`` (an ``arcface_torch``
            checkpoint's ``layer1.0.conv1.weight`` for ``blocks.0.body.1.weight``), for the
            message; None: the keys as they are.
    """
    expected = module.state_dict()
    shown = dict(names or {})
    reasons = []
    shapes = [
        key
        for key, value in expected.items()
        if key in weights and tuple(weights[key].shape) != tuple(value.shape)
    ]
    if shapes:
        key = shapes[0]
        more = f" (and {len(shapes) - 1} more of another shape)" if len(shapes) > 1 else ""
        reasons.append(
            f"{shown.get(key, key)} is {tuple(weights[key].shape)} saved, "
            f"{tuple(expected[key].shape)} in the {type(module).__name__} built{more}"
        )
    for what, keys in (
        ("missing", [key for key in expected if key not in weights]),
        ("unexpected", [key for key in weights if key not in expected]),
    ):
        if keys:
            more = f" and {len(keys) - 2} more" if len(keys) > 2 else ""
            reasons.append(f"{what} {', '.join(shown.get(key, key) for key in keys[:2])}{more}")
    return "; ".join(reasons) or None


def load_part(checkpoint: Checkpoint, prefix: str, module: nn.Module) -> None:
    """Copy the weights of ``checkpoint`` under ``prefix.`` into ``module`` (strict key and
    shape match).

    Raises:
        CheckpointError: they do not fit the module (its run's ``config.yaml`` describes
            another network than the one trained): names the checkpoint and the first
            difference.
    """
    start = len(prefix) + 1
    part = {k[start:]: v for k, v in checkpoint.weights.items() if k.startswith(prefix + ".")}
    problem = state_mismatch(module, part)
    if problem is not None:
        raise CheckpointError(
            f"checkpoint {checkpoint.path}: its {prefix} weights do not fit the {prefix} that "
            f"the run's config.yaml describes ({problem})"
        )
    module.load_state_dict(part, strict=True)


def load_weights(checkpoint: Checkpoint, backbone: nn.Module, head: nn.Module) -> None:
    """Copy a checkpoint's weights into ``backbone`` and ``head`` (:func:`load_part`).

    Raises:
        CheckpointError: the weights do not fit the networks (names the first difference).
    """
    load_part(checkpoint, "backbone", backbone)
    load_part(checkpoint, "head", head)
