"""``--init-from``: a run that starts from trained weights (fine-tuning) instead of its seed's.

**Sources** (:func:`read_source`), by what the path is:

- a run folder (it holds ``config.yaml``): its newest intact checkpoint, the one ``--resume``
  would continue from (a finished run's final weights). A damaged newest checkpoint is
  refused, naming the intact one to give instead; it is never passed over in silence.
- a checkpoint folder of a run (``RUN/checkpoints/epoch-0003``, or the best one by
  verification, ``RUN/checkpoints/best-SSSSSSS``): that checkpoint, checked against its
  manifest.
- a ``.safetensors`` file: a backbone's state dict (``marginkit export --format
  safetensors``), or a checkpoint's ``weights.safetensors`` (its ``backbone.`` tensors).
- any other file: a PyTorch state dict of tensors (``backbone.pth``), read with
  ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
  containers: a file from someone else cannot run code. Its keys are marginkit's, or those
  of InsightFace's ``arcface_torch`` IResNet (``recognition/arcface_torch/backbones/
  iresnet.py``: ``conv1.weight``, ``layer1.0.bn1.weight``, ``layer1.0.downsample.0.weight``,
  ``fc.weight``, ``features.running_mean``, ...), mapped onto an ``iresnet*`` backbone by
  :func:`marginkit.models.faces.arcface_torch_names`. A ``module.`` prefix on every key (a
  ``DataParallel``/DDP wrapper's) is removed; ``num_batches_tracked`` may be absent (no
  computation reads it).

**The backbone** takes every tensor of the source, strictly: a missing or unexpected key, or
a tensor of another shape, is refused with one line naming the key (as the file names it)
and both shapes; so is a tensor holding NaN or infinity.

**The head** starts from the source run's when the source is a run or one of its checkpoints
trained on the same classes: the same data set, class subset and smallest class
(``config.yaml``; marginkit records no class names, so these stand for them), the same data
files where both runs record them (``data.json``), and head parameters of the same names
and shapes (the same number of classes). Only its parameters are taken (the class weights,
a bias, a learnt scale); its step counter, its schedules' state and its batch statistics
start afresh, at the new run's step 0. Otherwise the head starts from the seed, and the
reason is printed. A file holds no head: the head starts from the seed.

**The record.** ``RUN/init_from.json`` names the source, the file read and its SHA-256 and
size, the key names (``marginkit`` or ``arcface_torch``) and where the head came from.
``--resume`` continues from the run's own checkpoint without reading the source again; a
source that changed since (another SHA-256) or is gone is noted. A run resumed before its
first checkpoint starts from the source again, and is refused if the source changed.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import torch
from torch import Tensor, nn

from marginkit.errors import MarginkitError, first_line
from marginkit.runfolder import RunFolder, RunFolderError
from marginkit.train.checkpoint import (
    MANIFEST,
    WEIGHTS,
    Checkpoint,
    CheckpointError,
    checked_bytes,
    find_checkpoint,
    head_rows,
    latest_checkpoint,
    state_mismatch,
    verify_checkpoint,
)
from marginkit.train.config import TrainConfig, load_config, parse_classes
from marginkit.train.datarecord import data_difference

if TYPE_CHECKING:
    from marginkit.data.bundle import DataBundle

__all__ = [
    "InitFromError",
    "Source",
    "check_resumed_source",
    "check_source_path",
    "describe",
    "initial_weights",
    "initialise",
    "locate_source",
    "read_source",
    "start_weights",
]

#: The options of a source run's ``config.yaml`` that, equal to the new run's, stand for the
#: same classes (with the same number of classes and, where recorded, the same data files).
_CLASS_OPTIONS = ("dataset", "classes", "min_images_per_person")


class InitFromError(MarginkitError, ValueError):
    """The ``--init-from`` source cannot start this run: one line naming it and why."""


@dataclass
class Source:
    """Trained weights read from an ``--init-from`` source.

    Attributes:
        given: the source as given (``config.init_from``).
        kind: ``"run"``, ``"checkpoint"``, ``"safetensors"`` or ``"state dict"``.
        file: the file the weights were read from.
        sha256: that file's SHA-256 (hex).
        size: its size in bytes.
        weights: the backbone's tensors, by the file's key names.
        head: the run's head's tensors (a run or checkpoint source), else None.
        run_dir: the run the weights come from (a run or checkpoint source), else None.
    """

    given: str
    kind: str
    file: Path
    sha256: str
    size: int
    weights: dict[str, Tensor]
    head: dict[str, Tensor] | None = None
    run_dir: Path | None = None


def _fail(given: str, why: str) -> InitFromError:
    return InitFromError(f"init_from {given}: {why}")


def locate_source(given: str) -> tuple[str, Path, Path | None]:
    """What ``given`` is, without reading its weights: ``(kind, weights file, run folder)``.

    Raises:
        InitFromError: no such file or folder; a folder that is neither a run nor a
            checkpoint; a run without a checkpoint, or whose newest one is damaged.
        RunFolderError: a run of a newer format.
    """
    path = Path(given)
    if path.is_file():
        return ("safetensors" if path.suffix == ".safetensors" else "state dict"), path, None
    if not path.is_dir():
        raise _fail(given, "no such file or folder")
    if (path / MANIFEST).is_file():  # RUN/checkpoints/NAME
        run_dir = path.parent.parent
        return "checkpoint", path / WEIGHTS, run_dir if RunFolder(run_dir).holds_run() else None
    if not RunFolder(path).holds_run():
        raise _fail(
            given,
            "a folder that is neither a run (no config.yaml) nor a checkpoint (no manifest.json)",
        )
    search = find_checkpoint(path)
    if search.damaged:
        hint = "" if search.folder is None else f"; give {search.folder} to start from it"
        raise _fail(given, search.report() + hint)
    if search.folder is None:
        raise _fail(given, "the run has no complete checkpoint yet")
    return "run", search.folder / WEIGHTS, path


def _read_bytes(given: str, file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as error:
        raise _fail(given, f"cannot read {file}: {error.strerror or first_line(error)}") from None


def _load_safetensors(given: str, file: Path, data: bytes) -> dict[str, Tensor]:
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as error:  # a damaged or truncated header, a bad dtype ...
        raise _fail(given, f"{file} is not a safetensors file ({first_line(error)})") from None


def _load_state_dict(given: str, file: Path, data: bytes) -> dict[str, Tensor]:
    try:
        with warnings.catch_warnings():  # e.g. a TorchScript archive's: the error says it all
            warnings.simplefilter("ignore")
            values = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # code in the pickle, a damaged archive, not torch.save's
        raise _fail(
            given,
            f"{file} is not a PyTorch state dict file: torch.load(weights_only=True), which "
            f"runs no code from the file, refused it ({_load_failure(error)})",
        ) from None
    if not isinstance(values, dict) or not all(
        isinstance(key, str) and isinstance(value, Tensor) for key, value in values.items()
    ):
        nested = (
            [key for key, value in values.items() if isinstance(value, dict)]
            if (isinstance(values, dict))
            else []
        )
        if nested:
            raise _fail(
                given,
                f"{file} holds a checkpoint whose {nested[0]!r} entry is a dict, not a flat "
                f"state dict of tensors: save that entry alone "
                f"(torch.save(checkpoint[{nested[0]!r}], FILE)) and give FILE",
            )
        raise _fail(given, f"{file} holds a {type(values).__name__}, not a state dict of tensors")
    return dict(values)


def _load_failure(error: Exception) -> str:
    """What ``torch.load`` found wrong, in a few words, without its advice to load unsafely."""
    text = str(error)
    if "TorchScript" in text:
        return "a TorchScript archive: give the run, or its safetensors export"
    for line in text.splitlines():
        if "Unsupported global" in line:  # a Python object the safe loader will not build
            return f"it holds Python objects, not only tensors: {line.split('. ')[0].strip()}"
    if text.startswith("Weights only load failed") and "Unsupported operand" not in text:
        return "it holds Python objects, not only tensors"
    return "not a file torch.save wrote"


def _part(weights: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors under ``prefix.``, without it."""
    start = len(prefix) + 1
    return {key[start:]: value for key, value in weights.items() if key.startswith(prefix + ".")}


def read_source(given: str) -> Source:
    """Read the weights of the ``--init-from`` source ``given`` (see the module's notes).

    Raises:
        InitFromError: the source is missing, damaged (a checkpoint that does not match its
            manifest, a file that is not safetensors or a state dict), or not one of the
            kinds above.
        RunFolderError: a run of a newer format.
    """
    kind, file, run_dir = locate_source(given)
    layout = None
    if kind in ("run", "checkpoint"):
        try:
            manifest = verify_checkpoint(file.parent)
            data = checked_bytes(file.parent, WEIGHTS)
        except CheckpointError as error:
            raise _fail(given, str(error)) from None
        layout = manifest.get("layout")
    else:
        data = _read_bytes(given, file)
    digest = hashlib.sha256(data).hexdigest()
    if kind == "state dict":
        weights = _load_state_dict(given, file, data)
    else:
        weights = _load_safetensors(given, file, data)
    head = None
    if kind in ("run", "checkpoint"):
        if layout is not None:  # a shard-local checkpoint: the head from its shard files
            checkpoint = Checkpoint(file.parent, {}, {}, manifest)
            weights.update(head_rows(checkpoint, (0, int(layout["num_classes"]))))
        head, weights = _part(weights, "head"), _part(weights, "backbone")
    elif any(key.startswith("backbone.") for key in weights):  # a checkpoint's weights file
        weights = _part(weights, "backbone")
    if weights and all(key.startswith("module.") for key in weights):  # DataParallel's
        weights = _part(weights, "module")
    return Source(given, kind, file, digest, len(data), weights, head, run_dir)


def start_weights(source: Source, backbone: nn.Module) -> tuple[dict[str, Tensor], str]:
    """The source's backbone tensors by ``backbone``'s key names, checked to fit it, and the
    names they had (``"marginkit"`` or ``"arcface_torch"``).

    Raises:
        InitFromError: a key missing or unexpected, a tensor of another shape (one line
            naming the key as the file names it, and both shapes) or not finite.
    """
    from marginkit.models.faces import IResNet, arcface_torch_names

    expected = backbone.state_dict()
    weights, names, convention = dict(source.weights), None, "marginkit"
    if isinstance(backbone, IResNet):  # arcface_torch's names, when more of them match
        theirs = arcface_torch_names(backbone)  # ours -> theirs
        if len(weights.keys() & set(theirs.values())) > len(weights.keys() & expected.keys()):
            ours = {name: key for key, name in theirs.items()}
            weights = {ours.get(key, key): value for key, value in weights.items()}
            names, convention = theirs, "arcface_torch"
    for key, value in expected.items():  # read by no computation: an older file may lack it
        if key.endswith("num_batches_tracked") and key not in weights:
            weights[key] = value
    problem = state_mismatch(backbone, weights, names)
    if problem is not None:
        raise _fail(
            source.given,
            f"its weights do not fit this run's backbone {type(backbone).__name__} ({problem})",
        )
    _check_finite(source.given, weights, names)
    return weights, convention


def _check_finite(
    given: str, weights: dict[str, Tensor], names: dict[str, str] | None = None
) -> None:
    for key, value in weights.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            shown = (names or {}).get(key, key)
            raise _fail(given, f"{shown} holds NaN or infinite values")


def _head_start(
    source: Source, config: TrainConfig, bundle: DataBundle, head: nn.Module
) -> tuple[dict[str, Tensor] | None, str]:
    """The source run's head parameters for ``head`` when it was trained on the same
    classes (None otherwise), and why (a few words)."""
    if source.head is None:
        return None, f"a {source.kind} file holds no head"
    if source.run_dir is None:
        return None, "the checkpoint is not in a run folder: its classes are unknown"
    saved = load_config(RunFolder(source.run_dir).config)
    for option in _CLASS_OPTIONS:
        there, here = getattr(saved, option), getattr(config, option)
        if option == "classes" and there is not None and here is not None:
            there, here = parse_classes(there), parse_classes(here)  # "0-2" is [0, 1, 2]
        if there != here:
            return (
                None,
                f"other classes: {option} {there!r} in the source run, {here!r} in this one",
            )
    difference = data_difference(source.run_dir, bundle)
    if difference is not None:
        return None, f"other classes: the source run's data differ ({difference})"
    parameters = dict(head.named_parameters())
    for name, parameter in parameters.items():
        value = source.head.get(name)
        if value is None or value.shape != parameter.shape:
            there = "none" if value is None else tuple(value.shape)
            return None, (
                f"the source run's head ({saved.loss}) has {name} {there}, this run's "
                f"({config.loss}) {tuple(parameter.shape)}"
            )
    taken = {name: source.head[name] for name in parameters}
    _check_finite(source.given, {f"head.{name}": value for name, value in taken.items()})
    return taken, f"the same {bundle.num_classes} classes as the source run"


def initialise(
    config: TrainConfig, backbone: nn.Module, head: nn.Module, bundle: DataBundle
) -> dict[str, Any]:
    """Start ``backbone`` (and ``head``, when it can) from ``config.init_from``.

    Args:
        config: the run's options (``init_from`` set).
        backbone: the run's backbone as built from the seed; its weights are replaced.
        head: the run's whole head as built from the seed; its parameters are replaced by
            the source run's when it was trained on the same classes.
        bundle: the run's data (its classes).

    Returns:
        The record of the source (``RUN/init_from.json``): ``init_from``, ``kind``,
        ``file``, ``sha256``, ``bytes``, ``names``, ``head`` (``"source"`` or ``"seed"``)
        and ``head_reason``.

    Raises:
        InitFromError: the source cannot be read or does not fit the backbone (one line).
    """
    assert config.init_from is not None
    source = read_source(config.init_from)
    weights, convention = start_weights(source, backbone)
    parameters, reason = _head_start(source, config, bundle, head)
    backbone.load_state_dict(weights, strict=True)
    if parameters is not None:
        with torch.no_grad():
            for name, parameter in head.named_parameters():
                parameter.copy_(parameters[name])
    return {
        "init_from": source.given,
        "kind": source.kind,
        "file": str(source.file.resolve()),
        "sha256": source.sha256,
        "bytes": source.size,
        "names": convention,
        "head": "seed" if parameters is None else "source",
        "head_reason": reason,
    }


def describe(record: dict[str, Any]) -> str:
    """One line on where a run's weights start (:func:`initialise`'s record)."""
    head = "from the source run" if record["head"] == "source" else "from the seed"
    return (
        f"init_from {record['init_from']}: backbone from {record['file']} (sha256 "
        f"{record['sha256'][:12]}, {record['names']} names); head {head} "
        f"({record['head_reason']})"
    )


def check_source_path(config: TrainConfig, resume: bool = False) -> None:
    """Before the data are read: refuse an ``init_from`` that lies in the run's own folder
    (``--overwrite`` would remove it, a resume replace it) or, for a run that is not resumed
    (a resumed one may not need it), does not exist.

    Raises:
        InitFromError: one line naming the source.
    """
    if config.init_from is None:
        return
    source = Path(config.init_from)
    if not resume and not source.exists():
        raise _fail(config.init_from, "no such file or folder")
    if config.out is not None:
        out = Path(config.out).resolve()
        if source.resolve() == out or out in source.resolve().parents:
            raise _fail(config.init_from, f"it is inside the run's own folder {config.out}")


def check_resumed_source(config: TrainConfig, run_dir: Path, stream: TextIO) -> None:
    """On ``--resume`` from a checkpoint: say on ``stream`` when the source recorded in
    ``RUN/init_from.json`` is gone or changed (the run does not read it again)."""
    recorded = RunFolder(run_dir).read_init_from()
    if config.init_from is None or recorded is None:
        return
    try:
        _, file, _ = locate_source(config.init_from)
        data = _read_bytes(config.init_from, file)
    except (InitFromError, RunFolderError) as error:
        now = f"cannot be read now ({str(error).removeprefix(f'init_from {config.init_from}: ')})"
    else:
        digest = hashlib.sha256(data).hexdigest()
        if digest == recorded["sha256"]:
            return
        now = (
            f"has changed since the run started (sha256 {recorded['sha256'][:12]} recorded in "
            f"{RunFolder(run_dir).init_from.name}, {digest[:12]} now)"
        )
    print(
        f"note: init_from {config.init_from} {now}; the run resumes from its own checkpoint, "
        "which does not need it",
        file=stream,
        flush=True,
    )


def _check_restarted_source(record: dict[str, Any], run_dir: Path) -> None:
    """On ``--resume`` of a run without a checkpoint (it starts from the source again):
    refuse a source that changed since the run recorded it."""
    recorded = RunFolder(run_dir).read_init_from()
    if recorded is not None and recorded["sha256"] != record["sha256"]:
        raise RunFolderError(
            f"--resume: init_from {record['init_from']} has changed since the run in {run_dir} "
            f"started (sha256 {recorded['sha256'][:12]} recorded, {record['sha256'][:12]} now) "
            "and the run has no checkpoint yet; restore the source or start a new run"
        )


def initial_weights(
    config: TrainConfig,
    run_dir: Path | None,
    resume: bool,
    networks: tuple[nn.Module, nn.Module],
    bundle: DataBundle,
) -> dict[str, Any] | None:
    """Start a run's ``(backbone, head)`` from ``config.init_from``, unless it is resumed
    from a checkpoint (whose weights replace them): the record of the source, or None.

    Raises:
        InitFromError: the source cannot be read, or does not fit (one line).
        RunFolderError: a run resumed before its first checkpoint whose source changed.
    """
    if config.init_from is None:
        return None
    if resume and run_dir is not None and latest_checkpoint(run_dir) is not None:
        return None  # its checkpoint holds the weights (check_resumed_source notes the source)
    record = initialise(config, *networks, bundle)
    if resume and run_dir is not None:
        _check_restarted_source(record, run_dir)
    return record
