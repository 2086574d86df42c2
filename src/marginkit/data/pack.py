"""``marginkit pack``: a folder of identity sub-folders written as InsightFace's RecordIO files
(``train.rec``, ``train.idx``, ``property``), which ``--dataset rec`` reads.

The layout is the one InsightFace's ``face2rec2.py`` writes and ``arcface_torch`` reads
(:mod:`marginkit.data.rec`), for ``N`` images of ``C`` identities:

- record 0: the header, labels ``(N + 1, N + 1 + C)``, no image;
- records ``1 .. N``: the images, identity by identity (the sub-folders sorted by name, the
  images by file name, as ``--dataset folder`` reads them): label the identity's number
  ``0 .. C - 1``, id the record's key, and the image file's bytes unchanged (so a round
  trip gives every byte back; nothing is decoded and encoded again);
- records ``N + 1 .. N + C``: one per identity, labels ``(first, end)``, the key range of
  its images;
- ``property``: ``C,height,width``: every image must have the one size (aligned crops);
  a folder of mixed sizes is refused, naming the first image that differs.

Each file is written under a temporary name beside its final one and renamed into place only
when whole, so no reader ever finds part of a file under a final name; existing files are
refused unless ``force``, and then ``train.idx`` goes first and comes back last, so that a
``train.rec`` is never found with another file's index.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from marginkit.data.errors import DataError
from marginkit.data.folder import image_classes
from marginkit.data.rec import INDEX_FILE, PROPERTY_FILE, REC_FILE
from marginkit.data.recordio import frame_record, pack_image_record
from marginkit.progress import Progress
from marginkit.runfolder import (
    OutputError,
    check_output_file,
    fsync_folder,
    make_folder,
    temporary_name,
    write_file,
)

__all__ = ["PackSummary", "pack_folder"]


@dataclass(frozen=True)
class PackSummary:
    """What :func:`pack_folder` wrote.

    Attributes:
        out: the folder of the three files.
        images: image records written.
        identities: identities (sub-folders holding images).
        height, width: the images' size (``property``'s).
        rec_bytes: the size of ``train.rec``.
    """

    out: Path
    images: int
    identities: int
    height: int
    width: int
    rec_bytes: int


class _RecordWriter:
    """Records appended to a ``.rec`` file, each listed in the ``.idx`` file."""

    def __init__(self, rec: BinaryIO, index: BinaryIO) -> None:
        self.rec, self.index, self.position = rec, index, 0

    def add(self, key: int, payload: bytes) -> None:
        framed = frame_record(payload)
        self.rec.write(framed)
        self.index.write(f"{key}\t{self.position}\n".encode("ascii"))
        self.position += len(framed)


def _image_size(image: bytes, path: Path) -> tuple[int, int]:
    """``(height, width)`` of an encoded image, from its header (nothing decoded).

    Raises:
        DataError: PIL does not recognise it as an image; naming ``path``.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image)) as opened:
            width, height = opened.size
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"{path}: expected a readable image file ({error})") from None
    return height, width


def _write_records(
    writer: _RecordWriter, paths: list[Path], labels: list[int], progress: bool
) -> tuple[int, int]:
    """Records 0 .. N + C (see the module) through ``writer``; returns the images' size.

    Raises:
        DataError: an image is unreadable or of another size than the first.
    """
    count = len(paths)
    per_identity = np.bincount(np.asarray(labels, dtype=np.int64))  # (C,) images each
    identities = len(per_identity)
    writer.add(0, pack_image_record([count + 1, count + 1 + identities], 0, b""))
    size: tuple[int, int] | None = None
    with Progress(count, "packing images", enabled=progress, unit="img") as bar:
        for key, (path, label) in enumerate(zip(paths, labels, strict=True), 1):
            try:
                image = path.read_bytes()
            except OSError as error:
                raise DataError(f"{path}: cannot read ({error.strerror})") from None
            found = _image_size(image, path)
            if size is not None and found != size:
                raise DataError(
                    f"{path}: expected {size[0]}x{size[1]} pixels like {paths[0]} "
                    f"(property records one size: align or resize the images first), "
                    f"got {found[0]}x{found[1]}"
                )
            size = found
            writer.add(key, pack_image_record([float(label)], key, image))
            bar.update()
    ends = 1 + np.cumsum(per_identity)  # (C,) one past each identity's last image key
    for identity, end in enumerate(ends.tolist()):
        start = end - int(per_identity[identity])
        key = count + 1 + identity
        writer.add(key, pack_image_record([float(start), float(end)], key, b""))
    assert size is not None  # image_classes found at least one image
    return size


def _write_files(
    targets: list[Path],
    temporaries: list[Path],
    paths: list[Path],
    labels: list[int],
    progress: bool,
) -> tuple[int, int]:
    """Write the three files under their temporary names, then rename them into place
    (``train.idx`` last); returns the images' size.

    Raises:
        DataError: an image is unreadable or of another size than the first.
        OSError: a file cannot be written.
    """
    with open(temporaries[0], "xb") as rec, open(temporaries[1], "xb") as index:
        height, width = _write_records(_RecordWriter(rec, index), paths, labels, progress)
        for handle in (rec, index):
            handle.flush()
            os.fsync(handle.fileno())
    write_file(temporaries[2], f"{max(labels) + 1},{height},{width}\n".encode("ascii"))
    targets[1].unlink(missing_ok=True)  # (force) never a train.rec beside another's index
    for position in (0, 2, 1):
        os.replace(temporaries[position], targets[position])
    return height, width


def pack_folder(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    force: bool = False,
    progress: bool = False,
) -> PackSummary:
    """Write the images of ``folder`` (one sub-folder per identity) as InsightFace's
    RecordIO files in ``out`` (see the module).

    Args:
        folder: a folder of identity sub-folders of images (as ``--dataset folder``).
        out: the folder to write ``train.rec``, ``train.idx`` and ``property`` into.
        force: replace those files where they exist.
        progress: show the packing's progress on stderr.

    Raises:
        DataError: ``folder`` is not a folder of identity sub-folders of images, or an
            image is unreadable or of another size than the others; nothing is left
            written (a folder ``out`` created for the files is removed again).
        RunFolderError: a file exists and ``force`` is not given; before any work.
        OutputError: a file cannot be written (no space, no permission); naming it.
    """
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise DataError(f"FOLDER: {folder} is not a folder")
    _, paths, labels = image_classes(folder)
    targets = [out / name for name in (REC_FILE, INDEX_FILE, PROPERTY_FILE)]
    for target in targets:
        check_output_file(target, force=force, option="--out")
    created = not out.exists()
    make_folder(out)
    temporaries = [temporary_name(target) for target in targets]
    try:
        height, width = _write_files(targets, temporaries, paths, labels, progress)
    except OSError as error:
        named = dict(zip(map(str, temporaries), targets, strict=True)).get(str(error.filename), out)
        raise OutputError("write", named, error) from None
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
    fsync_folder(out)
    rec_bytes = targets[0].stat().st_size
    return PackSummary(out, len(paths), max(labels) + 1, height, width, rec_bytes)
