"""The run folder: every file of a run, its format version, and writes that cannot lose work.

This module owns a run folder. It is floor-level: it imports nothing of marginkit, so every
package (``train``, ``evaluation``, ``verify``, ``export``, ``compare``, ``cli``, ``plots``)
reads and writes a run's files through it, and no file name is written anywhere else.

**The files** (:class:`RunFolder` has a path, and for the JSON ones a typed read and write,
for each):

=========================  ==============================================================
``format.json``            ``{"format_version": N}``: the layout the run was written in
``config.yaml``            the resolved options (``train.config.load_config``/``save_config``)
``data.json``              the fingerprint of the training data (``train.datarecord``)
``init_from.json``         where ``--init-from`` took the initial weights (``train.initfrom``)
``preprocessing.json``     the inputs' shape, normalisation and crop (``train.preprocessing``)
``metrics.json``           the options and one row per epoch, and the final row
``log.csv``                one row per epoch; ``steps.csv``: one row per optimiser step
``checkpoints/``           ``epoch-NNNN/`` folders, ``latest`` (``train.checkpoint``)
``tensorboard/``           TensorBoard events, when installed
``eval.json``, ``plots/``  ``marginkit eval``'s report and pictures
``embeddings.npz``         the measured split's embeddings (a comparison's runs)
``verify.json``            ``marginkit verify``'s report
``ijb.json``               ``marginkit ijb``'s report (IJB-B and IJB-C, one entry per set)
``noise_snapshots.json``   per-epoch label-noise statistics (a comparison's noisy runs)
``.lock``                  held while a training writes (:class:`RunLock`)
=========================  ==============================================================

**The format version.** :data:`FORMAT_VERSION` is written into ``RUN/format.json`` when a
training opens the folder (a new run, or one resumed). Every read of :class:`RunFolder`
checks it first: a folder of a newer format is refused with one line naming it and both
versions; a folder without the file was written by an earlier marginkit, before the version
existed, and is read as version 1. Its files are brought to the current layout in one place,
:func:`upgraded` (accuracies in percent become fractions; the older names of ``eval.json``'s
sections). A file's own markers (``accuracy_unit``) say which of its layouts it has, so a
version-1 run resumed or evaluated by this version (holding files of both) is read right.
What version 1 may lack (``data.json``, ``preprocessing.json``) its readers get as None.

**Numbers.** Every accuracy in ``metrics.json``, ``log.csv``, ``eval.json``, ``verify.json``
and a checkpoint's history is a fraction in ``[0, 1]`` (``"accuracy_unit": "fraction"``);
percentages are for printing only (:func:`percent`). No NaN or infinity is written to a JSON
file (:func:`json_safe`).

**Safe writes.**

- :func:`atomic_write_bytes` writes through a temporary file that is flushed to disk and
  renamed into place, so a reader sees the old file or the new one, never a part. Files and
  folders are created with the usual ``0o666`` / ``0o777`` modes, so the umask decides (not
  ``mkstemp``'s ``0o600``).
- Every ``OSError`` on a path the user gave (no space left, read-only file system, a file
  where a folder should be, no permission) becomes an :class:`OutputError` whose message is
  one line naming the path and the cause.
- :func:`check_output_file` refuses, before any work, to write a named output file where it
  would lose something: over an existing file without ``force``, and never (``force`` or not)
  over a file the command reads or into a run's ``checkpoints/`` folder.
- :func:`apply_umask` gives a file that a library wrote with mode ``0o600`` (safetensors
  does) the mode every other output gets.
- :class:`RunLock` is held (``RUN/.lock``, an ``flock`` plus the holder's PID) for as long as
  a training writes into a run folder: a second training into the same folder is refused,
  naming the holder's PID. The operating system drops the lock when its process dies, so the
  lock file of a killed run is stale and the next training takes it over.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marginkit.errors import MarginkitError

__all__ = [
    "ACCURACY_KEYS",
    "ACCURACY_UNIT",
    "CHECKPOINTS",
    "CONFIG",
    "DATA",
    "EMBEDDINGS",
    "EVAL",
    "FORMAT",
    "FORMAT_VERSION",
    "IJB",
    "INIT_FROM",
    "LOCK",
    "LOG",
    "METRICS",
    "NOISE_SNAPSHOTS",
    "PLOTS",
    "PREPROCESSING",
    "RUN_FILES",
    "STEPS",
    "TENSORBOARD",
    "UNVERSIONED",
    "VERIFY",
    "EvalReport",
    "Metrics",
    "OutputError",
    "RunFolder",
    "RunFolderError",
    "RunLock",
    "Section",
    "apply_umask",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_file",
    "foreign_entries",
    "json_safe",
    "listed",
    "lock_holder",
    "make_folder",
    "metrics_in_fractions",
    "percent",
    "rows_in_fractions",
    "run_entries",
    "upgraded",
    "write_chunks",
    "write_file",
]

#: The layout this marginkit writes; a run folder without ``format.json`` is version 1.
FORMAT_VERSION = 2
#: The format of a run folder written before the version was recorded.
UNVERSIONED = 1

FORMAT = "format.json"
CONFIG = "config.yaml"
DATA = "data.json"
INIT_FROM = "init_from.json"
PREPROCESSING = "preprocessing.json"
METRICS = "metrics.json"
LOG = "log.csv"
STEPS = "steps.csv"
#: The folder of a run's checkpoints, inside the run folder.
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
EVAL = "eval.json"
VERIFY = "verify.json"
IJB = "ijb.json"
PLOTS = "plots"
EMBEDDINGS = "embeddings.npz"
NOISE_SNAPSHOTS = "noise_snapshots.json"
#: The lock file's name inside a run folder.
LOCK = ".lock"
#: What marginkit writes at the top of a run folder (``train``, ``eval``, ``verify``, ``ijb``, a
#: comparison grid), the lock aside; ``train --overwrite`` removes these and nothing else.
RUN_FILES = frozenset(
    {
        FORMAT,
        CONFIG,
        DATA,
        INIT_FROM,
        PREPROCESSING,
        METRICS,
        LOG,
        STEPS,
        CHECKPOINTS,
        TENSORBOARD,
        EVAL,
        VERIFY,
        IJB,
        PLOTS,
        EMBEDDINGS,
        NOISE_SNAPSHOTS,
    }
)
#: The unit of every accuracy marginkit writes.
ACCURACY_UNIT = "fraction"
#: The per-epoch accuracies of a training history row.
ACCURACY_KEYS = ("train_accuracy", "validation_accuracy", "test_accuracy")
#: The name of a temporary file of :func:`atomic_write_bytes` left by a killed writer.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}")

_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "it exists and is not a folder",
    errno.EISDIR: "it is a folder",
}


class RunFolderError(MarginkitError, ValueError):
    """The output folder cannot be used (it holds a different run, no run, or is in use), or
    an output file cannot be written without losing something (:func:`check_output_file`)."""


class OutputError(MarginkitError, OSError):
    """A file or folder cannot be read or written; the message is one line naming the path
    and the cause (``errno`` is the operating system's)."""

    def __init__(self, action: str, path: str | os.PathLike, error: OSError) -> None:
        cause = _CAUSES.get(error.errno or 0) or (error.strerror or str(error)).lower()
        super().__init__(error.errno, f"cannot {action} {path}: {cause}")
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.strerror)


def make_folder(path: Path) -> None:
    """Create ``path`` and its parents (mode ``0o777`` less the umask); an existing folder
    is fine.

    Raises:
        OutputError: naming ``path`` and the cause.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError("create folder", path, error) from None


def _same_file(path: Path, other: Path) -> bool:
    """Whether ``path`` and ``other`` name one file (after links, hard links included)."""
    if path.resolve() == other.resolve():
        return True
    try:
        return os.path.samefile(path, other)
    except OSError:  # one of them does not exist
        return False


def check_output_file(
    path: Path, *, force: bool = False, reads: Iterable[Path] = (), option: str = "out"
) -> None:
    """Refuse to write the output file ``path`` where that would lose something.

    Refused even with ``force``: a file the command reads (``reads``; the same file through
    a link counts), and any path inside a run's checkpoints folder (``RUN/checkpoints/...``
    of a folder holding ``config.yaml``: its own checkpoint is all a run has). Refused
    without ``force``: an existing path.

    Args:
        path: the file the command is about to write.
        force: the user allows replacing an existing file (``--force``).
        reads: the files the command reads.
        option: the argument that named ``path``, for the message.

    Raises:
        RunFolderError: one line naming ``option``, ``path`` and what to do.
    """
    for read in reads:
        if _same_file(path, read):
            raise RunFolderError(
                f"{option}: {path} is a file this command reads; choose another path"
            )
    for folder in path.resolve().parents:
        if folder.name == CHECKPOINTS and (folder.parent / CONFIG).is_file():
            raise RunFolderError(
                f"{option}: {path} is inside the checkpoints folder of run {folder.parent}, "
                "which is never written over; choose another path"
            )
    if not force and (path.exists() or path.is_symlink()):
        raise RunFolderError(f"{option}: {path} exists; pass --force to replace it")


def apply_umask(path: Path) -> None:
    """Give ``path`` mode ``0o666`` less the umask, the mode ``open()`` creates files with
    (a library that writes through its own temporary file leaves ``0o600``).

    Raises:
        OutputError: naming ``path`` and the cause.
    """
    umask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(umask)
    try:
        os.chmod(path, 0o666 & ~umask)
    except OSError as error:
        raise OutputError("write", path, error) from None


def _write_all(descriptor: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to an open file descriptor."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def write_file(path: Path, data: bytes) -> None:
    """Write a new file ``path`` (which must not exist), flushed to disk.

    Raises:
        OutputError: naming ``path`` and the cause (the partial file is removed).
    """
    write_chunks(path, [data])


def write_chunks(path: Path, chunks: Iterable[bytes | memoryview]) -> None:
    """Write a new file ``path`` (which must not exist) from ``chunks``, one at a time (a
    file larger than the memory one chunk takes), flushed to disk.

    Raises:
        OutputError: naming ``path`` and the cause (the partial file is removed).
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise OutputError("write", path, error) from None
    try:
        try:
            for chunk in chunks:
                _write_all(descriptor, chunk)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        path.unlink(missing_ok=True)
        raise OutputError("write", path, error) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def fsync_folder(path: Path) -> None:
    """Flush a folder's entries (renames into it) to disk."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise OutputError("write", path, error) from None


def temporary_name(path: Path) -> Path:
    """A fresh hidden name beside ``path``: ``.NAME.RANDOM``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place.

    Raises:
        OutputError: naming ``path`` and the cause; ``path`` is then unchanged.
    """
    make_folder(path.parent)
    temporary = temporary_name(path)
    write_file(temporary, data)
    try:
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OutputError("write", path, error) from None
    fsync_folder(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def run_entries(run_dir: Path) -> list[Path]:
    """What ``run_dir`` holds, the lock file excepted ([] when it does not exist).

    Raises:
        RunFolderError: ``run_dir`` exists and is not a folder.
        OutputError: it cannot be read.
    """
    try:
        if not run_dir.exists():
            return []
        if not run_dir.is_dir():
            raise RunFolderError(f"out folder {run_dir} exists and is not a folder")
        return [entry for entry in run_dir.iterdir() if entry.name != LOCK]
    except OSError as error:
        raise OutputError("read", run_dir, error) from None


def foreign_entries(entries: list[Path]) -> list[Path]:
    """The ``entries`` of a run folder that marginkit did not write: neither one of
    :data:`RUN_FILES` nor a temporary file of one (the user's notes, analyses ...)."""

    def ours(entry: Path) -> bool:
        temporary = _TEMPORARY.fullmatch(entry.name)
        return (temporary.group("name") if temporary else entry.name) in RUN_FILES

    return sorted((entry for entry in entries if not ours(entry)), key=lambda e: e.name)


def listed(entries: list[Path], most: int = 5) -> str:
    """``"notes.txt, analysis/"``: the names of ``entries`` (folders with a ``/``), the
    first ``most`` of them and how many more."""
    names = [entry.name + ("/" if entry.is_dir() else "") for entry in entries]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _try_lock(descriptor: int) -> bool:
    """Take an exclusive ``flock`` on ``descriptor`` without waiting; False if held."""
    import fcntl

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder_pid(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def lock_holder(run_dir: Path) -> str | None:
    """The PID (as text) of the process holding ``run_dir``'s lock, or None when free."""
    path = run_dir / LOCK
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file (or unreadable: acquiring will say so)
    try:
        return None if _try_lock(descriptor) else _holder_pid(path)
    finally:
        os.close(descriptor)  # also drops the probe's lock


class RunLock:
    """The lock of one run folder, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock (the folder must exist); a stale lock file is taken over.

        Raises:
            RunFolderError: another live process holds it; names its PID.
            OutputError: the lock file cannot be created.
        """
        while True:
            try:
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                raise OutputError("write", self.path, error) from None
            if not _try_lock(descriptor):
                os.close(descriptor)
                raise RunFolderError(
                    f"out folder {self.path.parent} is in use by another training "
                    f"(PID {_holder_pid(self.path)}, lock file {self.path}); wait for it to "
                    "finish or choose another folder"
                )
            try:  # the holder may have released (removed) the file between open and lock
                same = os.stat(self.path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(descriptor)
        try:
            os.ftruncate(descriptor, 0)
            _write_all(descriptor, f"{os.getpid()}\n".encode())
        except OSError as error:
            os.close(descriptor)
            raise OutputError("write", self.path, error) from None
        self._descriptor = descriptor

    def release(self) -> None:
        """Remove the lock file and drop the lock (nothing when not held)."""
        if self._descriptor is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._descriptor)
        self._descriptor = None


@contextlib.contextmanager
def held(run_dir: Path) -> Iterator[RunLock]:
    """``with held(run_dir):`` the run folder's lock, released on the way out."""
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


# ------------------------------------------------------------------------------ numbers
def json_safe(value: Any) -> Any:
    """A JSON-safe copy of ``value``: non-finite floats become None (never NaN in a file)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def percent(fraction: float | None) -> float | None:
    """A fraction as a percentage (None stays None)."""
    return None if fraction is None else 100.0 * fraction


# ---------------------------------------------------------------- older layouts, upgraded
# Every difference between the layouts marginkit has written and the current one is
# undone here, and nowhere else. Version 1 (no ``format.json``) held its accuracies in
# percent and said no unit; ``eval.json`` named the watch-list section ``identification``
# and, before 0.2, had no ``unseen_identification``.


def rows_in_fractions(rows: list[dict[str, Any]], unit: str | None) -> list[dict[str, Any]]:
    """History rows (``metrics.json``'s, a checkpoint's) with their accuracies as fractions;
    ``unit`` is the rows' own unit (None: an earlier version's file, in percent)."""
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


def _eval_upgraded(report: dict[str, Any]) -> dict[str, Any]:
    """An ``eval.json`` dict in the current layout: the accuracy a fraction, the open-set
    sections under their current names."""
    report = dict(report)
    if report.get("accuracy_unit") != ACCURACY_UNIT:
        if report.get("accuracy") is not None:
            report["accuracy"] = report["accuracy"] / 100.0  # an earlier version's: in percent
        report["accuracy_unit"] = ACCURACY_UNIT
    analysis = report.get("analysis")
    if isinstance(analysis, dict) and isinstance(analysis.get("open_set"), dict):
        open_set = dict(analysis["open_set"])
        if "watch_list" not in open_set and "identification" in open_set:
            open_set["watch_list"] = open_set.pop("identification")
        open_set.setdefault("unseen_identification", None)  # before 0.2: not measured
        report["analysis"] = dict(analysis, open_set=open_set)
    return report


def upgraded(name: str, values: Any) -> Any:
    """The contents of the run file ``name`` (``metrics.json``, ``eval.json``), read from a
    run of any format this marginkit reads, in the current layout.

    The one place that knows the older layouts: what each file's own markers
    (``accuracy_unit``) say was written by an earlier version is converted; a file of the
    current layout is returned as it is (a copy)."""
    if name == METRICS and isinstance(values, dict):
        return metrics_in_fractions(values)
    if name == EVAL and isinstance(values, dict):
        return _eval_upgraded(values)
    return values


# --------------------------------------------------------------------------- typed files
@dataclass
class Metrics:
    """``metrics.json``: the run's options and its training history (fractions).

    Attributes:
        config: the resolved options, as in ``config.yaml``.
        epochs: one row per finished epoch (``epoch``, ``step``, ``lr``, ``train_loss``,
            the accuracies, ``images_per_second``, times, ``hyperparameters`` ...).
        final: the last epoch's row once the run is finished; empty before.
    """

    config: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether the run finished (its final row is written)."""
        return bool(self.final)

    def to_dict(self) -> dict[str, Any]:
        """The file's contents."""
        return {
            "config": self.config,
            "accuracy_unit": ACCURACY_UNIT,
            "epochs": self.epochs,
            "final": self.final,
        }

    @classmethod
    def from_dict(cls, values: Any, path: Path) -> Metrics:
        """The metrics of a ``metrics.json`` dict in the current layout (:func:`upgraded`).

        Raises:
            RunFolderError: not the mapping marginkit writes (names ``path`` and what).
        """
        config = values.get("config") if isinstance(values, dict) else None
        epochs = values.get("epochs") if isinstance(values, dict) else None
        final = values.get("final") if isinstance(values, dict) else None
        if not (
            isinstance(config, dict)
            and isinstance(epochs, list)
            and all(isinstance(row, dict) for row in epochs)
            and isinstance(final, dict)
        ):
            raise RunFolderError(
                f"{path}: expected marginkit's training metrics (a mapping with config, "
                "epochs and final); the file is damaged or not marginkit's"
            )
        return cls(config=config, epochs=epochs, final=final)


class Section:
    """A mapping read from a run file, read by key: a key it must hold and does not is an
    error naming the file and where, never a silent None (a renamed key fails loudly).

    Args:
        values: the mapping.
        file: the file it was read from, for the message.
        keys: where in the file (``("analysis", "verification")``); the whole file: none.
    """

    def __init__(self, values: dict[str, Any], file: str, keys: tuple[str, ...] = ()) -> None:
        self.values = values
        self.file = file
        self.keys = keys

    @property
    def where(self) -> str:
        """``"RUN/eval.json: analysis.verification"``: the file and the keys to the part."""
        return f"{self.file}: {'.'.join(self.keys)}" if self.keys else self.file

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __getitem__(self, key: str) -> Any:
        """The value of ``key`` (a mapping comes as a :class:`Section`; may be None).

        Raises:
            RunFolderError: there is no ``key``.
        """
        if key not in self.values:
            raise RunFolderError(
                f"{self.where} has no {key!r}; the file is damaged or of another version "
                "(measure the run again: marginkit eval RUN)"
            )
        value = self.values[key]
        return Section(value, self.file, (*self.keys, key)) if isinstance(value, dict) else value

    def section(self, key: str) -> Section | None:
        """The part ``key``, or None where it is absent or None (not measured)."""
        if self.values.get(key) is None:
            return None
        value = self[key]
        if not isinstance(value, Section):
            raise RunFolderError(f"{self.where}: {key} is not a mapping; the file is damaged")
        return value


class EvalReport(Section):
    """``eval.json`` (:func:`marginkit.evaluation.evaluate_run`), in the current layout.

    ``report["accuracy"]`` (a fraction, or None), ``report["split"]``, and the measured
    sections: ``report.analysis()`` is None when the run was evaluated without the analysis;
    ``report.analysis().section("verification")`` None when verification did not apply. An
    analysis holding a section of another name than :data:`SECTIONS` is refused: a section
    renamed by the writer would otherwise read as one that did not apply.
    """

    #: The sections an analysis may hold.
    SECTIONS = frozenset(
        {
            "split",
            "closed_set",
            "geometry",
            "retrieval",
            "verification",
            "open_set",
            "label_noise",
            "plots",
        }
    )

    def analysis(self) -> Section | None:
        """The analysis, or None when the run was evaluated without it.

        Raises:
            RunFolderError: it holds a section of an unknown name.
        """
        analysis = self.section("analysis")
        if analysis is not None:
            unknown = sorted(set(analysis.values) - self.SECTIONS)
            if unknown:
                raise RunFolderError(
                    f"{analysis.where} holds unknown sections ({', '.join(unknown)}); the file "
                    "is of another version (measure the run again: marginkit eval RUN)"
                )
        return analysis


class RunFolder:
    """The files of one run folder: their paths, typed reads and writes, and the format.

    Every ``read_*`` method checks the folder's format first (:meth:`check_format`) and
    returns the file in the current layout (:func:`upgraded`), or None when the run has no
    such file; every ``write_*`` method writes atomically (:func:`atomic_write_text`),
    without NaN (:func:`json_safe`).

    Args:
        path: the run folder (it need not exist yet).

    Raises (the methods):
        RunFolderError: the folder is of a newer format, or a file is not what marginkit
            writes (one line naming it).
        OutputError: a file cannot be read or written (one line naming it and the cause).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._version: int | None = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ---------------------------------------------------------------- the files' paths
    @property
    def format_file(self) -> Path:
        """``format.json``: the run's :data:`FORMAT_VERSION`."""
        return self.path / FORMAT

    @property
    def config(self) -> Path:
        """``config.yaml``: the resolved options."""
        return self.path / CONFIG

    @property
    def data(self) -> Path:
        """``data.json``: the fingerprint of the training data."""
        return self.path / DATA

    @property
    def init_from(self) -> Path:
        """``init_from.json``: the source of the initial weights (``--init-from``)."""
        return self.path / INIT_FROM

    @property
    def preprocessing(self) -> Path:
        """``preprocessing.json``: the inputs' shape, normalisation and crop."""
        return self.path / PREPROCESSING

    @property
    def metrics(self) -> Path:
        """``metrics.json``: the training history (:class:`Metrics`)."""
        return self.path / METRICS

    @property
    def log(self) -> Path:
        """``log.csv``: one row per epoch."""
        return self.path / LOG

    @property
    def steps(self) -> Path:
        """``steps.csv``: one row per optimiser step."""
        return self.path / STEPS

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: the ``epoch-NNNN`` checkpoint folders."""
        return self.path / CHECKPOINTS

    @property
    def tensorboard(self) -> Path:
        """``tensorboard/``: TensorBoard's events."""
        return self.path / TENSORBOARD

    @property
    def eval(self) -> Path:
        """``eval.json``: the evaluation report (:class:`EvalReport`)."""
        return self.path / EVAL

    @property
    def plots(self) -> Path:
        """``plots/``: the evaluation's pictures."""
        return self.path / PLOTS

    @property
    def embeddings(self) -> Path:
        """``embeddings.npz``: the measured split's embeddings, labels and class weights."""
        return self.path / EMBEDDINGS

    @property
    def verify(self) -> Path:
        """``verify.json``: the verification report."""
        return self.path / VERIFY

    @property
    def ijb(self) -> Path:
        """``ijb.json``: the IJB-B / IJB-C report (:mod:`marginkit.ijb`)."""
        return self.path / IJB

    @property
    def noise_snapshots(self) -> Path:
        """``noise_snapshots.json``: per-epoch statistics of clean and flipped labels."""
        return self.path / NOISE_SNAPSHOTS

    @property
    def lock(self) -> Path:
        """``.lock``: held while a training writes (:class:`RunLock`)."""
        return self.path / LOCK

    def records(self) -> list[Path]:
        """The files that loading the run reads besides its checkpoint (its options,
        preprocessing and training figures): an output never goes there."""
        return [self.config, self.preprocessing, self.metrics]

    # --------------------------------------------------------------------- the format
    @property
    def format_version(self) -> int:
        """The folder's format: what ``format.json`` says, :data:`UNVERSIONED` (1) when
        there is none (a run of an earlier marginkit, or no run yet).

        Raises:
            RunFolderError: ``format.json`` is not ``{"format_version": N}``.
        """
        if self._version is None:
            values = self._read_json(self.format_file, checked=False)
            version = values.get("format_version") if isinstance(values, dict) else None
            if values is None:
                version = UNVERSIONED
            elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise RunFolderError(
                    f'{self.format_file}: expected {{"format_version": N}} with N a whole '
                    "number >= 1; the file is damaged or not marginkit's"
                )
            self._version = version
        return self._version

    def check_format(self) -> None:
        """Refuse a run folder of a newer format than this marginkit reads.

        Raises:
            RunFolderError: one line naming the folder and both versions.
        """
        if self.format_version > FORMAT_VERSION:
            raise RunFolderError(
                f"run folder {self.path} is of format version {self.format_version}; this "
                f"marginkit reads versions up to {FORMAT_VERSION}: upgrade marginkit to use it"
            )

    def write_format(self) -> None:
        """Record that the folder is of this marginkit's :data:`FORMAT_VERSION` (a run
        of an earlier one is resumed: its older files are still read right, by their
        own markers, :func:`upgraded`)."""
        self._write_json(self.format_file, {"format_version": FORMAT_VERSION})
        self._version = FORMAT_VERSION

    def holds_run(self) -> bool:
        """Whether the folder holds a run (its ``config.yaml``), checked to be of a format
        this marginkit reads (:meth:`check_format`) when it does."""
        if not self.config.is_file():
            return False
        self.check_format()
        return True

    # ------------------------------------------------------------------ typed reading
    def _read_json(self, path: Path, *, checked: bool = True) -> Any:
        """The JSON in ``path`` (None: no such file), after :meth:`check_format`."""
        if checked:
            self.check_format()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            raise OutputError("read", path, error) from None
        try:
            return json.loads(text)
        except ValueError:
            raise RunFolderError(
                f"{path}: expected JSON; the file is damaged (or written by hand)"
            ) from None

    def _write_json(self, path: Path, values: Any) -> None:
        atomic_write_text(path, json.dumps(json_safe(values), indent=2, allow_nan=False) + "\n")

    def read_metrics(self) -> Metrics | None:
        """``metrics.json`` (accuracies as fractions), or None when there is none."""
        values = self._read_json(self.metrics)
        if values is None:
            return None
        return Metrics.from_dict(upgraded(METRICS, values), self.metrics)

    def write_metrics(self, metrics: Metrics) -> None:
        """Write ``metrics.json``."""
        self._write_json(self.metrics, metrics.to_dict())

    def read_eval(self) -> EvalReport | None:
        """``eval.json`` in the current layout, or None when the run was not evaluated."""
        values = self._read_json(self.eval)
        if values is None:
            return None
        if not isinstance(values, dict):
            raise RunFolderError(f"{self.eval}: expected an evaluation report (a mapping)")
        return EvalReport(upgraded(EVAL, values), str(self.eval))

    def write_eval(self, report: dict[str, Any]) -> None:
        """Write ``eval.json`` (``report``: :func:`marginkit.evaluation.evaluate_run`'s)."""
        self._write_json(self.eval, report)

    def read_verify(self) -> Section | None:
        """``verify.json``, or None when the run was not verified."""
        values = self._read_json(self.verify)
        if values is None:
            return None
        if not isinstance(values, dict):
            raise RunFolderError(f"{self.verify}: expected a verification report (a mapping)")
        return Section(values, str(self.verify))

    def write_verify(self, report: dict[str, Any]) -> None:
        """Write ``verify.json`` (``report``: :func:`marginkit.verify.verify_run`'s)."""
        self._write_json(self.verify, report)

    def read_data_record(self) -> dict[str, Any] | None:
        """The fingerprint of the run's data (``data.json``): None when the run records
        none (version 1 before it existed, or data not read from files), ``{}`` when the
        record is damaged (unreadable, not JSON, not a fingerprint)."""
        self.check_format()
        try:
            recorded = self._read_json(self.data)
        except (RunFolderError, OutputError):
            return {}
        if recorded is None:
            return None
        valid = isinstance(recorded, dict) and isinstance(recorded.get("entries"), dict)
        return recorded if valid else {}

    def write_data_record(self, fingerprint: dict[str, Any]) -> None:
        """Write ``data.json``."""
        self._write_json(self.data, fingerprint)

    def read_init_from(self) -> dict[str, Any] | None:
        """Where the run's initial weights came from (``init_from.json``), or None when the
        run started from its seed (or a run of an earlier marginkit).

        Raises:
            RunFolderError: the file is not JSON, or not a mapping with the source's
                ``sha256``.
            OutputError: it cannot be read.
        """
        values = self._read_json(self.init_from)
        if values is not None and not (
            isinstance(values, dict) and isinstance(values.get("sha256"), str)
        ):
            raise RunFolderError(
                f"{self.init_from}: expected the record of the initial weights' source (a "
                "mapping with its sha256); the file is damaged"
            )
        return values

    def write_init_from(self, record: dict[str, Any]) -> None:
        """Write ``init_from.json`` (``record``: :func:`marginkit.train.initfrom.initialise`'s)."""
        self._write_json(self.init_from, record)

    def read_preprocessing(self) -> object:
        """The JSON of ``preprocessing.json`` as read (unchecked: ``Preprocessing.from_dict``
        checks it), or None when the run has none (version 1 before it existed).

        Raises:
            OutputError: the file cannot be read.
            RunFolderError: it is not JSON.
        """
        return self._read_json(self.preprocessing)

    def write_preprocessing(self, values: dict[str, Any]) -> None:
        """Write ``preprocessing.json``."""
        self._write_json(self.preprocessing, values)

    def read_noise_snapshots(self) -> list[dict[str, Any]]:
        """The rows of ``noise_snapshots.json`` (none when there is no file)."""
        rows = self._read_json(self.noise_snapshots)
        if rows is None:
            return []
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise RunFolderError(f"{self.noise_snapshots}: expected a list of per-epoch rows")
        return rows

    def write_noise_snapshots(self, rows: list[dict[str, Any]]) -> None:
        """Write ``noise_snapshots.json``."""
        self._write_json(self.noise_snapshots, rows)

    def read_config_values(self) -> dict[str, Any]:
        """The options in ``config.yaml`` as written (a mapping; ``{}`` when empty).

        Raises:
            RunFolderError: no such file, or not a YAML mapping.
            OutputError: it cannot be read.
        """
        import yaml

        self.check_format()
        try:
            text = self.config.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RunFolderError(f"{self.path} is not a run folder: no {CONFIG}") from None
        except OSError as error:
            raise OutputError("read", self.config, error) from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            raise RunFolderError(f"{self.config}: expected YAML; the file is damaged") from None
        if not isinstance(values, dict):
            raise RunFolderError(f"{self.config}: expected a mapping of option names to values")
        return values

    def write_log(self, text: str) -> None:
        """Write ``log.csv`` (the CSV text)."""
        atomic_write_text(self.log, text)
