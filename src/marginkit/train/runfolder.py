"""Run folders that cannot lose work: safe writes, one-line OS errors and the run lock.

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
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from marginkit.errors import MarginkitError

__all__ = [
    "CHECKPOINTS",
    "LOCK",
    "RUN_FILES",
    "OutputError",
    "RunFolderError",
    "RunLock",
    "apply_umask",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_file",
    "foreign_entries",
    "listed",
    "lock_holder",
    "make_folder",
    "run_entries",
    "write_file",
]

#: The lock file's name inside a run folder.
LOCK = ".lock"
#: The folder of a run's checkpoints, inside the run folder.
CHECKPOINTS = "checkpoints"
#: What marginkit writes at the top of a run folder (``train``, ``eval``, ``verify``, a
#: comparison grid), the lock aside; ``train --overwrite`` removes these and nothing else.
RUN_FILES = frozenset(
    {
        "config.yaml",
        "data.json",
        "preprocessing.json",
        "metrics.json",
        "log.csv",
        "steps.csv",
        CHECKPOINTS,
        "tensorboard",
        "eval.json",
        "verify.json",
        "plots",
        "embeddings.npz",
        "noise_snapshots.json",
    }
)
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
        if folder.name == CHECKPOINTS and (folder.parent / "config.yaml").is_file():
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


def _write_all(descriptor: int, data: bytes) -> None:
    """Write every byte of ``data`` to an open file descriptor."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def write_file(path: Path, data: bytes) -> None:
    """Write a new file ``path`` (which must not exist), flushed to disk.

    Raises:
        OutputError: naming ``path`` and the cause (the partial file is removed).
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise OutputError("write", path, error) from None
    try:
        try:
            _write_all(descriptor, data)
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
