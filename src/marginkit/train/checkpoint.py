"""Checkpoints that are verified before they are trusted, written by every rank of a run.

A checkpoint is a folder ``RUN/checkpoints/epoch-NNNN/``. Its manifest says which of two
layouts it holds (``"format"``, :data:`FORMAT`; a manifest without one is format 1, a
newer one is refused in one line: :class:`CheckpointFormatError`):

**One process** (the whole head, as every checkpoint of format 1):

- ``weights.safetensors``: the backbone's and the head's ``state_dict`` (keys prefixed
  ``backbone.`` and ``head.``), buffers included: batch-norm statistics, the head's step
  counter and every schedule's state;
- ``state.pt`` (``torch.save``, loaded with ``weights_only=True``: tensors, numbers, strings,
  lists and dicts only, so a run folder from someone else cannot run code): optimiser state,
  the global step, the completed epoch, the shuffling/augmentation generator's state, the
  global torch RNG state and the metrics history;
- ``manifest.json``: the format, and the SHA-256 and size of both files, written last.

**Several processes** (shard-local: no process ever holds the whole head to save it):

- ``weights.safetensors``: the backbone alone (rank 0's; every rank holds the same);
- ``head-rank-RRRRR-of-WWWWW.safetensors``, one per rank: that rank's ``ShardedHead``
  state dict (its class rows of ``head.weight``, ``head.bias``, sub-centre counts, and the
  head's replicated buffers: step counter, schedules), written by the rank itself;
- ``optimizer-rank-RRRRR-of-WWWWW.safetensors``, one per rank: every tensor of that rank's
  optimiser state as ``state.<parameter>.<name>`` (the class rows' momentum or Adam
  moments are as large as the rows);
- ``state.pt``: as above, but each rank's optimiser state without its tensors (its
  ``param_groups`` and any number) and each rank's RNG state under ``ranks``, and
  ``world_size``;
- ``manifest.json``: the SHA-256 and size of every file, and the class layout
  (``num_classes``, ``rows_per_class``, ``world_size``, each rank's class range ``[lo,
  hi)`` and files), written by rank 0 last, once every rank's files are flushed.

The safetensors files are written a block at a time (:func:`write_tensors`, no copy of a
whole tensor in memory; any safetensors reader reads them) and read a tensor's rows at a
time, with positioned reads into the tensor that receives them (``safe_open`` would map the
whole file into the process's address space): a resumed rank of any world size opens only
the shard files whose class range meets its own and reads only its rows of them
(:func:`read_rows`, weights and optimiser moments alike). Every file's SHA-256 is computed
in blocks of 1 MiB, never from the whole file in memory: :func:`find_checkpoint` (rank 0,
before it names the checkpoint to the other ranks) checks every file; :func:`load_checkpoint`
checks ``weights.safetensors`` and ``state.pt``; :func:`read_rows` checks each shard file
before it reads from it.

A checkpoint is written into a temporary folder (every rank writes its files there), flushed
to disk and renamed into place; ``RUN/checkpoints/latest`` then names it (for people: readers
take the newest intact checkpoint, see :func:`find_checkpoint`). A process killed at any
moment therefore leaves every finished checkpoint intact. Loading verifies the manifest:
damage (a truncated file, a flipped bit, a missing shard) is reported as "checkpoint
epoch-0030 is damaged (head-rank-00001-of-00002.safetensors: checksum mismatch)" instead of
a traceback or silently wrong weights. The :data:`KEEP` newest checkpoints are kept (the
previous one is the fallback should the newest be damaged); only older ones, superseded,
and the temporary folders of interrupted writes are removed.

This module alone knows these file names and layouts; ``marginkit.train.distributed`` says
which rows a rank holds and calls :func:`write_shard` and :func:`read_rows`.

The environment variable ``MARGINKIT_FAULT`` injects crashes for the tests: ``checkpoint:E``
makes the process SIGKILL itself half-way through writing the checkpoint of epoch E (after
the weights, or a rank's shard files, before the state and the pointer), ``step:N`` after
training step N; ``step:N:hang`` makes it sleep for ever there instead. With
``MARGINKIT_FAULT_RANK=R`` only the process of rank R (``RANK``, 0 when unset) fails (a dead
or hung rank of several).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Mapping
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
    write_chunks,
    write_file,
)

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointError",
    "CheckpointFormatError",
    "CheckpointSearch",
    "ShardPart",
    "ShardWriter",
    "check_state",
    "checked_bytes",
    "damaged_state",
    "epoch_of",
    "fault_point",
    "find_checkpoint",
    "head_rows",
    "join_optimizer_state",
    "latest_checkpoint",
    "load_checkpoint",
    "load_fitting",
    "load_part",
    "load_weights",
    "read_optimizer_rows",
    "read_rows",
    "save_checkpoint",
    "split_optimizer_state",
    "state_mismatch",
    "verify_checkpoint",
    "whole_weights",
    "write_shard",
    "write_tensors",
]

LATEST = "latest"
WEIGHTS = "weights.safetensors"
STATE = "state.pt"
MANIFEST = "manifest.json"
#: The checkpoint format this marginkit writes: 2 adds ``format`` to the manifest and the
#: shard-local layout of several processes; a manifest without ``format`` is format 1.
FORMAT = 2
#: How many of the newest checkpoints a run keeps.
KEEP = 2
_NAME = re.compile(r"epoch-(\d{4,})")
#: Bytes read at a time to hash a file, and written at a time from a tensor.
_BLOCK = 1 << 20
_WRITE_BLOCK = 16 << 20
#: safetensors' names of the dtypes a checkpoint holds.
_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
#: A key of an optimiser file: ``state.<parameter number>.<name>``.
_OPTIMIZER_KEY = re.compile(r"state\.(\d+)\.(.+)")


class CheckpointError(MarginkitError, ValueError):
    """A checkpoint is damaged or missing; the message is one line naming it and why."""


class CheckpointFormatError(CheckpointError):
    """A checkpoint of a newer format than this marginkit reads (never taken for damage:
    an older checkpoint is not resumed in its place)."""


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
    """A loaded checkpoint: weights by key, the training state and the manifest.

    Attributes:
        path: the checkpoint's folder.
        weights: ``weights.safetensors``: ``backbone.*`` and, for a whole-head checkpoint,
            ``head.*``.
        state: ``state.pt``.
        manifest: ``manifest.json`` (its ``layout`` for a shard-local checkpoint).
    """

    path: Path
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])

    @property
    def layout(self) -> dict[str, Any] | None:
        """The class layout of a shard-local checkpoint (several processes), else None."""
        layout = self.manifest.get("layout")
        return layout if isinstance(layout, dict) else None


def _prefixed(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    # contiguous clones: safetensors refuses shared or non-contiguous storage
    return {
        f"{prefix}.{key}": value.detach().cpu().contiguous().clone()
        for key, value in module.state_dict().items()
    }


def _tensor_blocks(tensor: torch.Tensor) -> Iterator[bytes]:
    """The bytes of ``tensor`` (little-endian, C order) in blocks of at most 16 MiB, one
    block copied (to the CPU) at a time, never the whole tensor."""
    flat = tensor.detach().reshape(-1)  # a view of a contiguous tensor
    per_block = max(1, _WRITE_BLOCK // max(1, flat.element_size()))
    for start in range(0, flat.numel(), per_block):
        block = flat[start : start + per_block].cpu().contiguous()
        yield block.view(torch.uint8).numpy().tobytes()


def write_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Write ``tensors`` to a new safetensors file ``path``, a block at a time, flushed.

    The file is the format of ``safetensors.torch.save`` (an 8-byte little-endian header
    length, the JSON header with each tensor's dtype, shape and byte range, the data),
    streamed from the tensors so that a shard larger than the free memory can be saved.

    Returns:
        ``{"sha256": ..., "bytes": ...}`` of the file, for the manifest.

    Raises:
        OutputError: naming ``path`` and the cause.
    """
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for key, value in tensors.items():
        size = value.numel() * value.element_size()
        header[key] = {
            "dtype": _DTYPES[value.dtype],
            "shape": list(value.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes
    digest, total = hashlib.sha256(), 0

    def chunks() -> Iterator[bytes | memoryview]:
        nonlocal total
        for chunk in (len(text).to_bytes(8, "little"), text):
            digest.update(chunk)
            total += len(chunk)
            yield chunk
        for value in tensors.values():
            for block in _tensor_blocks(value):
                digest.update(block)
                total += len(block)
                yield block

    write_chunks(path, chunks())
    return {"sha256": digest.hexdigest(), "bytes": total}


def _entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


# ------------------------------------------------------------ a rank's shard files
def shard_files(rank: int, world_size: int) -> tuple[str, str]:
    """The names of rank ``rank``'s head and optimiser files in a shard-local checkpoint."""
    suffix = f"rank-{rank:05d}-of-{world_size:05d}.safetensors"
    return f"head-{suffix}", f"optimizer-{suffix}"


def split_optimizer_state(
    state_dict: Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser ``state_dict`` as its tensors (``state.<parameter>.<name>``) and the
    rest (``param_groups``, numbers; each parameter's entry without its tensors)."""
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[Any, dict[str, Any]] = {}
    for index, values in state_dict["state"].items():
        rest[index] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value
            else:
                rest[index][name] = value
    return tensors, {"state": rest, "param_groups": state_dict["param_groups"]}


def join_optimizer_state(
    tensors: Mapping[str, torch.Tensor], rest: Mapping[str, Any]
) -> dict[str, Any]:
    """The optimiser ``state_dict`` that :func:`split_optimizer_state` split."""
    state: dict[Any, dict[str, Any]] = {
        index: dict(values) for index, values in rest["state"].items()
    }
    for key, value in tensors.items():
        match = _OPTIMIZER_KEY.fullmatch(key)
        if match is None:
            raise ValueError(f"not an optimiser state key: {key!r}")
        state.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return {"state": state, "param_groups": rest["param_groups"]}


@dataclass
class ShardPart:
    """What one rank saves of a shard-local checkpoint.

    Attributes:
        rank, world_size: the rank, of how many.
        classes: its class range ``(lo, hi)`` of ``num_classes``.
        num_classes: C.
        head_state: its ``ShardedHead.state_dict()``.
        optimizer_state: its optimiser's ``state_dict()``.
        torch_rng: its global torch RNG state.
    """

    rank: int
    world_size: int
    classes: tuple[int, int]
    num_classes: int
    head_state: Mapping[str, torch.Tensor]
    optimizer_state: Mapping[str, Any]
    torch_rng: torch.Tensor


#: Rank 0's writer of every rank's shard files into the temporary folder it is given (a
#: collective, ``Distribution.write_shards``): their manifest entries, in rank order.
ShardWriter = Callable[[Path], list[dict[str, Any]]]


def write_shard(folder: Path, part: ShardPart, epoch: int) -> dict[str, Any]:
    """Write one rank's head and optimiser files into the checkpoint's temporary ``folder``.

    Returns:
        The rank's entry for rank 0's manifest and ``state.pt`` (picklable, small): its
        class range, rows per class, files with their SHA-256 and size, its optimiser state
        without tensors and its RNG state.
    """
    head_name, optimizer_name = shard_files(part.rank, part.world_size)
    lo, hi = part.classes
    head = {key: value for key, value in part.head_state.items() if key != "shard_layout"}
    tensors, rest = split_optimizer_state(part.optimizer_state)
    metadata = {"classes": f"{lo},{hi}", "num_classes": str(part.num_classes)}
    files = {
        head_name: write_tensors(folder / head_name, head, metadata),
        optimizer_name: write_tensors(folder / optimizer_name, tensors, metadata),
    }
    fault_point("checkpoint", epoch)
    weight = head.get("head.weight")
    return {
        "rank": part.rank,
        "classes": [lo, hi],
        "rows_per_class": 1 if weight is None else int(weight.shape[0]) // max(1, hi - lo),
        "head": head_name,
        "optimizer": optimizer_name,
        "files": files,
        "state": {"optimizer": rest, "torch_rng": part.torch_rng},
    }


def _shard_layout(entries: list[dict[str, Any]], num_classes: int) -> dict[str, Any]:
    return {
        "num_classes": num_classes,
        "rows_per_class": entries[0]["rows_per_class"],
        "world_size": len(entries),
        "shards": [
            {key: entry[key] for key in ("rank", "classes", "head", "optimizer")}
            for entry in entries
        ],
    }


# ---------------------------------------------------------------------- writing
def save_checkpoint(
    run_dir: Path,
    backbone: nn.Module,
    head: nn.Module | None,
    state: dict[str, Any],
    *,
    name: str | None = None,
    shards: ShardWriter | None = None,
) -> Path:
    """Write the checkpoint of ``state["epoch"]`` atomically; return its folder.

    Args:
        run_dir: the run folder.
        backbone: the backbone (its ``state_dict`` goes to safetensors).
        head: the whole margin head (its ``state_dict``, schedule buffers included); None
            with ``shards``.
        state: ``epoch`` plus optimiser/RNG/metrics state for ``torch.save`` (with
            ``shards``: without the optimiser and RNG, which each rank gives its writer).
        name: None: the epoch's checkpoint ``epoch-NNNN``, then named in ``latest``, and
            the superseded ones removed. Else a checkpoint of that name (the best one,
            :mod:`marginkit.train.verification`), written the same way but neither named
            in ``latest`` nor used to resume; no other checkpoint is touched.
        shards: several processes: every rank's writer of its files into the temporary
            folder (rank 0 calls it; the other ranks take part in its collectives), whose
            entries go into the manifest's ``layout`` and ``state.pt``'s ``ranks``.

    Raises:
        OutputError: a file cannot be written (no space, read-only ...): one line naming
            it; the checkpoints written before stay intact.
    """
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
        weights = _prefixed("backbone", backbone)
        if head is not None:
            weights.update(_prefixed("head", head))
        files = {WEIGHTS: write_tensors(temporary / WEIGHTS, weights, {"epoch": str(epoch)})}
        manifest: dict[str, Any] = {"format": FORMAT, "epoch": epoch}
        if shards is not None:  # every rank's files, flushed before their entries come
            entries = shards(temporary)
            for entry in entries:
                files.update(entry["files"])
            manifest["layout"] = _shard_layout(entries, entries[-1]["classes"][1])
            ranks = [entry["state"] for entry in entries]
            state = {**state, "world_size": len(entries), "ranks": ranks}
        fault_point("checkpoint", epoch)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_file(temporary / STATE, buffer.getvalue())
        files[STATE] = _entry(buffer.getvalue())
        manifest["files"] = files
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


# -------------------------------------------------------------------- verifying
def _damaged(folder: Path, file: str, what: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {folder.name} is damaged ({file}: {what})")


def _manifest(folder: Path) -> dict[str, Any]:
    """The checkpoint's manifest, its format checked and its listing of files."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        listed = manifest["files"]
    except FileNotFoundError:
        raise _damaged(folder, MANIFEST, "missing") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise _damaged(folder, MANIFEST, "unreadable") from None
    version = manifest.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _damaged(folder, MANIFEST, f"format {version!r} is not a version number")
    if version > FORMAT:
        raise CheckpointFormatError(
            f"checkpoint {folder} is of format {version}; this marginkit reads checkpoint "
            f"formats up to {FORMAT}: upgrade marginkit to use it"
        )
    if not isinstance(listed, dict) or not all(isinstance(e, dict) for e in listed.values()):
        raise _damaged(folder, MANIFEST, "unreadable")
    for file in (WEIGHTS, STATE):
        if file not in listed:
            raise _damaged(folder, MANIFEST, f"no entry for {file}")
    layout = manifest.get("layout")
    if layout is not None and _layout_problem(layout, listed) is not None:
        raise _damaged(folder, MANIFEST, f"layout: {_layout_problem(layout, listed)}")
    return dict(manifest)


def _layout_problem(layout: Any, listed: Mapping[str, Any]) -> str | None:
    """What keeps ``layout`` from being a shard-local checkpoint's, or None."""
    try:
        shards, world = layout["shards"], int(layout["world_size"])
        bounds = [(int(s["classes"][0]), int(s["classes"][1])) for s in shards]
        names = [name for s in shards for name in (s["head"], s["optimizer"])]
        num_classes, per_class = int(layout["num_classes"]), int(layout["rows_per_class"])
    except (KeyError, TypeError, ValueError, IndexError):
        return "not a list of each rank's classes and files"
    if len(shards) != world or [s.get("rank") for s in shards] != list(range(world)):
        return f"{len(shards)} shards listed for a world size of {world}"
    edges = [0] + [hi for _, hi in bounds]
    if [lo for lo, _ in bounds] != edges[:-1] or edges[-1] != num_classes or per_class < 1:
        return f"class ranges {bounds} do not cover the {num_classes} classes in order"
    missing = [name for name in names if name not in listed]
    return f"no entry for {missing[0]}" if missing else None


def _check_file(folder: Path, manifest: Mapping[str, Any], file: str) -> None:
    """Check ``file`` against its manifest entry, hashing it a block at a time.

    Raises:
        CheckpointError: "checkpoint NAME is damaged (FILE: what)".
    """
    entry = manifest["files"].get(file)
    if not isinstance(entry, dict):
        raise _damaged(folder, MANIFEST, f"no entry for {file}")
    digest, size = hashlib.sha256(), 0
    try:
        with open(folder / file, "rb") as stream:
            while block := stream.read(_BLOCK):
                digest.update(block)
                size += len(block)
    except FileNotFoundError:
        raise _damaged(folder, file, "missing") from None
    except OSError as error:
        raise _damaged(folder, file, f"unreadable, {error.strerror}") from None
    if entry.get("bytes") != size:
        raise _damaged(folder, file, f"{size} bytes, {entry.get('bytes')} expected")
    if entry.get("sha256") != digest.hexdigest():
        raise _damaged(folder, file, "checksum mismatch")


def verify_checkpoint(folder: Path) -> dict[str, Any]:
    """The checkpoint's manifest, once every file it lists is checked against it (each
    hashed a block at a time: a checkpoint of any size, in little memory).

    Raises:
        CheckpointFormatError: a newer format than this marginkit reads (one line).
        CheckpointError: "checkpoint NAME is damaged (FILE: what)".
    """
    manifest = _manifest(folder)
    for file in manifest["files"]:
        _check_file(folder, manifest, file)
    return manifest


def checked_bytes(folder: Path, file: str) -> bytes:
    """The bytes of ``file`` (``weights.safetensors``, ``state.pt``) of a checkpoint,
    checked against its manifest.

    Raises:
        CheckpointFormatError, CheckpointError: as :func:`verify_checkpoint`.
    """
    manifest = _manifest(folder)
    entry = manifest["files"][file]
    try:
        data = (folder / file).read_bytes()
    except FileNotFoundError:
        raise _damaged(folder, file, "missing") from None
    except OSError as error:
        raise _damaged(folder, file, f"unreadable, {error.strerror}") from None
    if entry.get("bytes") != len(data):
        raise _damaged(folder, file, f"{len(data)} bytes, {entry.get('bytes')} expected")
    if entry.get("sha256") != _entry(data)["sha256"]:
        raise _damaged(folder, file, "checksum mismatch")
    return data


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
    A shard-local checkpoint's shard files are not read here: :func:`read_rows` reads (and
    checks) the rows a process needs of them.

    Args:
        folder: the checkpoint's folder.
        map_location: the device of the returned weights.

    Raises:
        CheckpointFormatError: a newer format than this marginkit reads (one line).
        CheckpointError: the folder is damaged (one line naming the file and why), its
            ``state.pt`` included: not a training state (:func:`check_state`).
    """
    from safetensors.torch import load

    manifest = _manifest(folder)
    try:
        weights = load(checked_bytes(folder, WEIGHTS))  # CPU tensors
    except CheckpointError:
        raise
    except Exception as error:  # the manifest matched, so the writer wrote it wrong
        raise _damaged(folder, WEIGHTS, f"unreadable, {error}") from None
    device = torch.device(map_location)
    if device.type != "cpu":
        weights = {key: value.to(device) for key, value in weights.items()}
    data = checked_bytes(folder, STATE)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:
        raise damaged_state(folder, "unreadable", error) from None
    return Checkpoint(folder, weights, check_state(folder, state), manifest)


# ------------------------------------------------------------ reading class rows
class _TensorFile:
    """A safetensors file read a tensor's rows at a time with positioned reads into the
    tensor that receives them (``safe_open`` maps the whole file into the address space,
    as large as the shard: a process under a memory limit could not open its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as stream:
            size = int.from_bytes(stream.read(8), "little")
            header = json.loads(stream.read(size))
        self.data_start = 8 + size
        header.pop("__metadata__", None)
        self.entries: dict[str, dict[str, Any]] = header
        self.dtypes = {name: dtype for dtype, name in _DTYPES.items()}

    def shape(self, key: str) -> list[int]:
        return [int(size) for size in self.entries[key]["shape"]]

    def read(self, key: str, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """Rows ``[start, stop)`` of tensor ``key`` (all of it by default)."""
        entry, shape = self.entries[key], self.shape(key)
        dtype = self.dtypes[entry["dtype"]]
        begin, end = (int(offset) for offset in entry["data_offsets"])
        row_bytes = torch.empty((), dtype=dtype).element_size() * math.prod(shape[1:])
        if end - begin != row_bytes * (shape[0] if shape else 1):
            raise ValueError(f"{key}: {end - begin} bytes for a {dtype} tensor of shape {shape}")
        if not shape:
            start, stop, rows = 0, 1, torch.empty((), dtype=dtype)
        else:
            start, stop = start or 0, shape[0] if stop is None else stop
            rows = torch.empty((stop - start, *shape[1:]), dtype=dtype)
        view = rows.reshape(-1).view(torch.uint8).numpy().data.cast("B")
        with open(self.path, "rb") as stream:
            stream.seek(self.data_start + begin + start * row_bytes)
            done = 0
            while done < len(view):
                count = stream.readinto(view[done:])
                if not count:
                    raise ValueError(f"{key}: the file ends before its data")
                done += count
        return rows


def _take_rows(file: Path, reader: _TensorFile, key: str, start: int, stop: int) -> torch.Tensor:
    """Rows ``[start, stop)`` of tensor ``key`` of the safetensors ``file``; nothing else of
    it is read."""
    return reader.read(key, start, stop)


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(parts)``, into one tensor allocated once (the parts freed as copied)."""
    if len(parts) == 1:
        return parts[0]
    joined = parts[0].new_empty((sum(len(part) for part in parts), *parts[0].shape[1:]))
    start = 0
    while parts:
        part = parts.pop(0)
        joined[start : start + len(part)] = part
        start += len(part)
    return joined


def read_rows(
    checkpoint: Checkpoint,
    kind: str,
    classes: tuple[int, int],
    is_rows: Callable[[str, list[int]], bool],
) -> dict[str, torch.Tensor]:
    """The entries of a shard-local checkpoint's ``kind`` files for the classes ``[lo,
    hi)``: only the files whose class range meets it are opened (each checked against the
    manifest first, a block at a time), and of each only those classes' rows are read.

    Args:
        checkpoint: a shard-local checkpoint (:attr:`Checkpoint.layout` is not None).
        kind: ``"head"`` (the ``ShardedHead`` state dicts) or ``"optimizer"`` (the
            optimiser state tensors, :func:`split_optimizer_state`).
        classes: ``(lo, hi)``, the classes the reading process holds.
        is_rows: ``is_rows(key, shape)``: whether an entry holds rows per class (the same
            number for each class of a file: K rows for sub-centres); the others are the
            same in every rank's file and taken from the first one opened.

    Returns:
        The entries by key; class-indexed ones hold the rows of classes ``[lo, hi)``.

    Raises:
        CheckpointError: a file read is damaged (one line naming it).
    """
    layout = checkpoint.layout
    if layout is None:
        raise ValueError(f"checkpoint {checkpoint.path} is not shard-local (no layout)")
    lo, hi = classes
    pieces: dict[str, list[torch.Tensor]] = {}
    whole: dict[str, torch.Tensor] = {}
    for shard in layout["shards"]:
        first, last = shard["classes"]
        start, stop = max(lo, first), min(hi, last)
        if start >= stop:
            continue
        file = checkpoint.path / shard[kind]
        _check_file(checkpoint.path, checkpoint.manifest, file.name)
        try:
            reader = _TensorFile(file)
            for key in reader.entries:
                shape = reader.shape(key)
                if is_rows(key, shape):
                    per_class = shape[0] // (last - first)
                    rows = (start - first) * per_class, (stop - first) * per_class
                    pieces.setdefault(key, []).append(_take_rows(file, reader, key, *rows))
                elif key not in whole:
                    whole[key] = reader.read(key)
        except (ValueError, KeyError, TypeError) as error:  # it matched the manifest
            first_line = (str(error).splitlines() or [type(error).__name__])[0]
            raise _damaged(checkpoint.path, file.name, f"unreadable, {first_line}") from None
        except OSError as error:
            raise CheckpointError(
                f"checkpoint {checkpoint.path.name}: cannot read {file.name} ({error.strerror})"
            ) from None
    return {**whole, **{key: _joined(parts) for key, parts in pieces.items()}}


def _is_head_rows(key: str, shape: list[int]) -> bool:
    """Whether a ``ShardedHead`` state-dict entry holds rows per class."""
    from marginkit.distributed.state import CLASS_INDEXED

    return key.removeprefix("head.") in CLASS_INDEXED and len(shape) >= 1


def head_rows(checkpoint: Checkpoint, classes: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The ``ShardedHead`` state dict entries (``head.*``, no ``shard_layout``) of the
    classes ``[lo, hi)`` of a shard-local checkpoint (:func:`read_rows`)."""
    return read_rows(checkpoint, "head", classes, _is_head_rows)


def whole_weights(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """``backbone.*`` and the whole head's ``head.*`` of any checkpoint: a shard-local
    one's head assembled from every rank's file.

    For a head one process can hold (``marginkit eval``'s measures of the class weights,
    ``--init-from`` a run's head, the tests); a run too large for that never calls it.
    """
    layout = checkpoint.layout
    if layout is None:
        return checkpoint.weights
    head = head_rows(checkpoint, (0, int(layout["num_classes"])))
    return {**checkpoint.weights, **head}


def read_optimizer_rows(
    checkpoint: Checkpoint, classes: tuple[int, int], class_rows: set[int], entry: int
) -> dict[str, Any]:
    """One process's optimiser ``state_dict`` from a shard-local checkpoint.

    Args:
        checkpoint: a shard-local checkpoint.
        classes: ``(lo, hi)``, the classes the process holds.
        class_rows: the numbers of the optimiser's parameters with rows per class (the
            head's class weights and biases): their state is read for ``[lo, hi)`` only.
        entry: the saved rank whose numbers and ``param_groups`` are taken (the process's
            own on the saved world size; any other's are the same).
    """
    rest = checkpoint.state["ranks"][entry]["optimizer"]

    def is_rows(key: str, shape: list[int]) -> bool:
        match = _OPTIMIZER_KEY.fullmatch(key)
        return match is not None and int(match.group(1)) in class_rows and len(shape) >= 1

    tensors = read_rows(checkpoint, "optimizer", classes, is_rows)
    return join_optimizer_state(tensors, rest)


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
        except CheckpointFormatError:
            raise
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
    shape match); ``head``: the whole head, a shard-local checkpoint's assembled from its
    shard files (:func:`whole_weights`: for a head one process can hold).

    Raises:
        CheckpointError: they do not fit the module (its run's ``config.yaml`` describes
            another network than the one trained): names the checkpoint and the first
            difference.
    """
    start = len(prefix) + 1
    weights = whole_weights(checkpoint) if prefix == "head" else checkpoint.weights
    part = {k[start:]: v for k, v in weights.items() if k.startswith(prefix + ".")}
    load_fitting(checkpoint, f"{prefix} weights", module, part)


def load_fitting(
    checkpoint: Checkpoint, what: str, module: nn.Module, state: dict[str, torch.Tensor]
) -> None:
    """``module.load_state_dict(state)`` once :func:`state_mismatch` finds no difference.

    Raises:
        CheckpointError: ``state`` (``what`` of ``checkpoint``: "head weights", "head
            rows") does not fit ``module``: names the checkpoint and the first difference.
    """
    problem = state_mismatch(module, state)
    if problem is not None:
        noun = what.split()[0]
        raise CheckpointError(
            f"checkpoint {checkpoint.path}: its {what} do not fit the {noun} that the run's "
            f"config.yaml describes ({problem})"
        )
    module.load_state_dict(state, strict=True)


def load_weights(checkpoint: Checkpoint, backbone: nn.Module, head: nn.Module) -> None:
    """Copy a checkpoint's weights into ``backbone`` and ``head`` (:func:`load_part`).

    Raises:
        CheckpointError: the weights do not fit the networks (names the first difference).
    """
    load_part(checkpoint, "backbone", backbone)
    load_part(checkpoint, "head", head)
