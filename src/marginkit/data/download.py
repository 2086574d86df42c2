"""Fetching data set files into the cache: mirrors, checksums, atomic writes, extraction.

A file is downloaded to a temporary name in the destination folder, its checksum is checked,
and only then is it renamed into place (``os.replace`` is atomic on one file system), so a
half-written or corrupted download is never read. A cached file is checked again on every use
and re-downloaded when it no longer matches.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from marginkit.data.errors import DataError

__all__ = [
    "REGISTRY",
    "RemoteFile",
    "default_cache_dir",
    "download_file",
    "ensure_files",
    "file_digest",
]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One published file of a data set.

    Attributes:
        name: file name in the cache folder.
        urls: mirrors, tried in order.
        checksum: expected hex digest.
        algorithm: ``"md5"`` or ``"sha256"``.
        extract: for a ``.tar.gz`` archive, the top-level folder it unpacks to (the archive
            is unpacked next to itself); empty for a file used as is.
    """

    name: str
    urls: tuple[str, ...]
    checksum: str
    algorithm: str = "md5"
    extract: str = ""


def _mirrored(bases: tuple[str, ...], files: dict[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(name, tuple(base + name for base in bases), digest)
        for name, digest in files.items()
    )


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://ossci-datasets.s3.amazonaws.com/fashion-mnist/",
)
_KMNIST_MIRRORS = ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",)
_SVHN_MIRRORS = ("http://ufldl.stanford.edu/housenumbers/",)
_LFW_MIRRORS = ("https://vis-www.cs.umass.edu/lfw/", "http://vis-www.cs.umass.edu/lfw/")

#: Published files of every downloadable data set, with their MD5 checksums (the values
#: used by torchvision and the data sets' own pages).
REGISTRY: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": _mirrored(
        _MNIST_MIRRORS,
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": _mirrored(
        _FASHION_MIRRORS,
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "kmnist": _mirrored(
        _KMNIST_MIRRORS,
        {
            "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
        },
    ),
    "cifar10": (
        RemoteFile(
            "cifar-10-python.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            "c58f30108f718f92721af3b95e74349a",
            extract="cifar-10-batches-py",
        ),
    ),
    "cifar100": (
        RemoteFile(
            "cifar-100-python.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
            "eb9058c3a382ffc7106e4002c42a8d85",
            extract="cifar-100-python",
        ),
    ),
    "svhn": _mirrored(
        _SVHN_MIRRORS,
        {
            "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
            "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
        },
    ),
    "lfw": (
        RemoteFile(
            "lfw-deepfunneled.tgz",
            tuple(base + "lfw-deepfunneled.tgz" for base in _LFW_MIRRORS),
            "68331da3eb755a505a502b5aacb3c201",
            extract="lfw-deepfunneled",
        ),
        *_mirrored(
            _LFW_MIRRORS,
            {
                "pairs.txt": "9f1ba174e4e1c508ff7cdf10ac338a7d",
                "pairsDevTrain.txt": "4f27cbf15b2da4a85c1907eb4181ad21",
                "pairsDevTest.txt": "5132f7440eb68cf58910c8a45a2ac10b",
                "people.txt": "450f0863dd89e85e73936a6d71a3474b",
                "peopleDevTrain.txt": "54eaac34beb6d042ed3a7d883e247a21",
                "peopleDevTest.txt": "e4bf5be0a43b5dcd9dc5ccfcb8fb19c5",
            },
        ),
    ),
}


def default_cache_dir() -> Path:
    """``$MARGINKIT_CACHE`` if set, else ``~/.cache/marginkit``."""
    configured = os.environ.get("MARGINKIT_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "marginkit"


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file's bytes with ``algorithm`` (``"md5"`` or ``"sha256"``)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _progress_line(name: str, done: int, total: int | None) -> str:
    if total:
        return f"\rdownloading {name}: {done / 2**20:.1f}/{total / 2**20:.1f} MiB "
    return f"\rdownloading {name}: {done / 2**20:.1f} MiB "


def _fetch(url: str, destination: Path, name: str, progress: bool) -> None:
    """Stream ``url`` into ``destination``; raise OSError on a short or failed transfer."""
    with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        while block := response.read(_CHUNK):
            out.write(block)
            done += len(block)
            if progress:
                sys.stderr.write(_progress_line(name, done, total))
                sys.stderr.flush()
        if progress:
            sys.stderr.write("\n")
        if total is not None and done != total:
            raise OSError(f"received {done} of {total} bytes")


def download_file(remote: RemoteFile, directory: Path, progress: bool = True) -> Path:
    """Download ``remote`` into ``directory``, verified, under its final name.

    Each mirror is tried in turn; the bytes go to a temporary file beside the target, which
    is renamed into place only once its checksum matches.

    Returns:
        The path of the verified file.

    Raises:
        DataError: no mirror delivered a file with the expected checksum; names the file and
            the checksum, and the partial file is deleted.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / remote.name
    failures: list[str] = []
    for url in remote.urls:
        handle, temporary_name = tempfile.mkstemp(prefix=f".{remote.name}.", dir=directory)
        os.close(handle)
        temporary = Path(temporary_name)
        try:
            try:
                _fetch(url, temporary, remote.name, progress)
            except (OSError, http.client.HTTPException, ValueError) as error:
                failures.append(f"{url}: {error}")
                continue
            found = file_digest(temporary, remote.algorithm)
            if found != remote.checksum:
                failures.append(f"{url}: got {remote.algorithm} {found}")
                continue
            os.replace(temporary, target)
            return target
        finally:
            temporary.unlink(missing_ok=True)
    raise DataError(
        f"{remote.name}: download failed, expected {remote.algorithm} {remote.checksum} "
        f"({'; '.join(failures)}); nothing was kept"
    )


def _safe_members(archive: tarfile.TarFile, path: Path) -> list[tarfile.TarInfo]:
    members = []
    for member in archive.getmembers():
        parts = Path(member.name).parts
        if member.name.startswith(("/", "\\")) or ".." in parts:
            raise DataError(f"{path}: archive member {member.name!r} would leave the folder")
        if not (member.isfile() or member.isdir()):
            continue
        members.append(member)
    return members


def _extract(archive_path: Path, remote: RemoteFile) -> None:
    """Unpack ``archive_path`` next to itself, atomically replacing ``remote.extract``."""
    directory = archive_path.parent
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=directory))
    try:
        try:
            with tarfile.open(archive_path, "r:*") as archive:
                archive.extractall(staging, members=_safe_members(archive, archive_path))
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DataError(f"{archive_path}: not a readable tar archive ({error})") from error
        unpacked = staging / remote.extract
        if not unpacked.is_dir():
            raise DataError(f"{archive_path}: expected the archive to hold {remote.extract}/")
        final = directory / remote.extract
        if final.exists():
            shutil.rmtree(final)
        os.replace(unpacked, final)
        _marker(archive_path).write_text(remote.checksum)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _marker(archive_path: Path) -> Path:
    return archive_path.with_name(f".{archive_path.name}.extracted")


def ensure_files(name: str, directory: Path, download: bool = True, progress: bool = True) -> Path:
    """Make every registered file of data set ``name`` present and verified in ``directory``.

    A file that is present but fails its checksum is deleted and downloaded again (or, with
    ``download=False``, reported). Archives are unpacked after verification.

    Returns:
        ``directory``.

    Raises:
        DataError: a file is missing or corrupted and cannot be downloaded; the message names
            the file(s) and the expected checksum.
    """
    remotes = REGISTRY[name]
    missing = [remote for remote in remotes if not (directory / remote.name).is_file()]
    if missing and not download:
        raise DataError(
            f"{directory}: missing {', '.join(r.name for r in missing)} and download=False; "
            f"expected the files {', '.join(r.name for r in remotes)}"
        )
    for remote in remotes:
        path = directory / remote.name
        fresh = False
        if path.is_file():
            found = file_digest(path, remote.algorithm)
            if found != remote.checksum:
                if not download:
                    raise DataError(
                        f"{path}: corrupted, {remote.algorithm} {found} but expected "
                        f"{remote.checksum}; delete it or allow download to fetch it again"
                    )
                if progress:
                    sys.stderr.write(f"{path}: checksum mismatch, downloading it again\n")
                path.unlink()
        if not path.is_file():
            download_file(remote, directory, progress)
            fresh = True
        if remote.extract:
            marker = _marker(path)
            extracted = (directory / remote.extract).is_dir()
            if fresh or not extracted or not marker.is_file():
                _extract(path, remote)
    return directory
