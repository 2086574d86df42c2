"""A data set's fingerprint: what a run records of the files it trains on, so that resuming
it on other data is refused (:mod:`marginkit.train.datarecord`).

The fingerprint of a folder covers every file under it (hidden ones aside: temporary files of
a download, ``.DS_Store``): its path, its size and, for an evenly spread sample of at most
:data:`SAMPLED_FILES` files, a hash of its contents (all of a small file, evenly spread blocks
of a large one). It is cheap: one ``stat`` per file and a few MiB read, also for the 13,000
images of LFW. A bundled data set (the digits) is fingerprinted by the file it ships in, a
generated one (the glyphs) by the program that draws it.

The same files give the same fingerprint wherever they are (data that moved is the same
data); the folder is recorded too, to be named when the files differ.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from marginkit.data.errors import DataError

__all__ = ["SAMPLED_FILES", "data_fingerprint", "fingerprint_difference"]

#: How many files' contents are hashed (evenly spread over the sorted paths).
SAMPLED_FILES = 256
#: A file larger than ``_BLOCKS`` blocks of ``_BLOCK`` bytes has that many hashed, evenly
#: spread from its start to its end; a smaller one is hashed whole.
_BLOCK = 1 << 16
_BLOCKS = 16
#: Where a bundled data set's file (or a generated one's program) lies: ``(package, file name)``.
_BUNDLED_FILES = {
    "digits": ("sklearn.datasets.data", "digits.csv.gz"),
    "glyphs": ("marginkit.data", "glyphs.py"),  # the program that draws them
}


def data_fingerprint(name: str, directory: Path | None) -> dict[str, Any]:
    """The fingerprint of data set ``name`` read from ``directory`` (None: a bundled data
    set, fingerprinted by the file it ships in).

    Returns:
        ``{"dataset", "source", "files", "bytes", "entries"}``: the folder (resolved), the
        number and total size of the files, and a digest of each top-level file or folder
        of it by name (of the paths, sizes and sampled contents of the files it holds).

    Raises:
        DataError: a file or folder cannot be read (names it).
    """
    if directory is None:
        from importlib import resources

        package, file = _BUNDLED_FILES[name]
        directory = Path(str(resources.files(package)))
        files = [(file, _size(directory / file))]
    else:
        directory = Path(directory).resolve()
        files = sorted(_files_under(directory, ""))
    sampled = _sample(len(files))
    digests: dict[str, Any] = {}
    for index, (relative, size) in enumerate(files):
        content = _content_digest(directory / relative, size) if index in sampled else ""
        entry = digests.setdefault(relative.split("/", 1)[0], hashlib.sha256())
        entry.update(f"{relative}\0{size}\0{content}\n".encode())
    return {
        "dataset": name,
        "source": str(directory),
        "files": len(files),
        "bytes": sum(size for _, size in files),
        "entries": {entry: digest.hexdigest()[:16] for entry, digest in digests.items()},
    }


def fingerprint_difference(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """How the data of fingerprint ``current`` differ from ``recorded``, or None when they
    are the same files (wherever they are now).

    Returns:
        e.g. ``"data_dir: /a there, /b now; changed: train-images-idx3-ubyte.gz"``: the
        folders when they differ, then the top-level files or folders changed, only there
        and only now (a few of each, and how many more).
    """
    there, now = recorded["entries"], current["entries"]
    if there == now and recorded.get("dataset") == current["dataset"]:
        return None
    parts = []
    if recorded.get("dataset") != current["dataset"]:
        parts.append(f"dataset: {recorded.get('dataset')} there, {current['dataset']} now")
    if recorded.get("source") != current["source"]:
        parts.append(f"data_dir: {recorded.get('source')} there, {current['source']} now")
    for what, names in (
        ("changed", [key for key in there if key in now and there[key] != now[key]]),
        ("only there", [key for key in there if key not in now]),
        ("only now", [key for key in now if key not in there]),
    ):
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            parts.append(f"{what}: {', '.join(sorted(names)[:3])}{more}")
    return "; ".join(parts)


def _files_under(directory: Path, prefix: str) -> list[tuple[str, int]]:
    """``(path relative to the data folder, size)`` of every file under ``directory``
    (links followed, hidden names and broken links skipped), in no particular order."""
    found: list[tuple[str, int]] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                relative = prefix + entry.name
                if entry.is_dir():
                    found += _files_under(Path(entry.path), relative + "/")
                elif entry.is_file():
                    found.append((relative, entry.stat().st_size))
    except OSError as error:
        raise DataError(f"{directory}: cannot read ({(error.strerror or '').lower()})") from None
    return found


def _sample(count: int) -> set[int]:
    """The indices of the files whose contents are hashed: all, or an even spread."""
    if count <= SAMPLED_FILES:
        return set(range(count))
    return {round(k * (count - 1) / (SAMPLED_FILES - 1)) for k in range(SAMPLED_FILES)}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as error:
        raise DataError(f"{path}: cannot read ({(error.strerror or '').lower()})") from None


def _content_digest(path: Path, size: int) -> str:
    """A hash of the whole file, or of :data:`_BLOCKS` blocks spread over a large one."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            if size <= _BLOCK * _BLOCKS:
                digest.update(handle.read())
            else:
                for block in range(_BLOCKS):
                    handle.seek(block * (size - _BLOCK) // (_BLOCKS - 1))
                    digest.update(handle.read(_BLOCK))
    except OSError as error:
        raise DataError(f"{path}: cannot read ({(error.strerror or '').lower()})") from None
    return digest.hexdigest()
