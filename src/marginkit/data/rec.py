"""``--dataset rec``: the training images of a RecordIO folder (``train.rec``, ``train.idx``
and, for InsightFace's files, ``property``), read without MXNet.

The files' format is :mod:`marginkit.data.recordio`'s. Two layouts are read:

- **InsightFace's** (MS1MV2/V3, Glint360K, WebFace..., as ``arcface_torch``'s
  ``MXFaceDataset`` reads them): record 0 is a header whose labels are ``(first identity
  record, end)``; the images are records ``1 .. first - 1``, the identity records
  ``first .. end - 1`` (each labelled with its images' key range); ``property`` holds
  ``classes,height,width``. Record 0 is recognised by what it is (two labels or more, no
  image bytes), ``property`` is optional and, when present, checked against the labels.
- **im2rec's** (MXNet's classification files): every record the ``.idx`` lists is an
  image, in its order.

Either way an image's class is the first of its labels (an integer >= 0); the classes are
the labels found, in increasing order, named by their number. The images keep their own
encoding (JPEG, PNG ...) and are decoded, cropped and resized as a ``folder``'s are
(:mod:`marginkit.data.images`); with ``workers > 0`` they are only indexed
(:class:`RecordImages`: a record's byte offset and its label, 16 bytes per image) and read by
the ``DataLoader`` workers, each through its own file descriptor.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from marginkit.data.errors import DataError
from marginkit.data.raw import RawSplits
from marginkit.data.recordio import (
    RecordIndex,
    RecordReader,
    read_index,
    read_labels,
    unpack_image_record,
)
from marginkit.data.stream import EncodedImages
from marginkit.progress import Progress

__all__ = [
    "INDEX_FILE",
    "PROPERTY_FILE",
    "REC_FILE",
    "RecordImages",
    "RecordProperty",
    "RecordSet",
    "read_property",
    "read_rec",
    "scan_records",
]

#: The files of a RecordIO folder, as InsightFace names them.
REC_FILE, INDEX_FILE, PROPERTY_FILE = "train.rec", "train.idx", "property"
#: The largest class label accepted (labels are float32: exact up to 2**24).
_LARGEST_LABEL = 1 << 24


class RecordImages(EncodedImages):
    """The images of a ``.rec`` file, by the byte offsets of their records.

    Args:
        reader: the ``.rec`` file (one descriptor per process).
        offsets: ``(N,)`` int64, where each image's record starts.
        size, height_fraction, workers: as for :class:`~marginkit.data.stream.EncodedImages`.
    """

    def __init__(
        self,
        reader: RecordReader,
        offsets: np.ndarray,
        size: tuple[int, int],
        height_fraction: float = 1.0,
        workers: int = 0,
    ) -> None:
        super().__init__(size, height_fraction, workers)
        self.reader = reader
        self.offsets = np.asarray(offsets, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def __getitem__(self, indices: Tensor) -> RecordImages:
        """The images at ``indices`` (a ``(K,)`` long tensor), in that order."""
        chosen = self.offsets[np.asarray(torch.as_tensor(indices, dtype=torch.long))]
        return RecordImages(self.reader, chosen, self.size, self.height_fraction, self.workers)

    def encoded(self, index: int) -> tuple[Path | bytes, str]:
        """Image ``index``'s encoded bytes, named by its file, byte offset and key.

        Raises:
            DataError: the record is damaged (see :meth:`RecordReader.read`).
        """
        offset = int(self.offsets[index])
        where = f"{self.reader.path}: byte {offset}"
        record = unpack_image_record(self.reader.read(offset), where)
        return record.image, f"{where} (record {record.key})"


@dataclass(frozen=True)
class RecordProperty:
    """InsightFace's ``property`` file: ``classes,height,width``."""

    classes: int
    height: int
    width: int


def read_property(path: Path) -> RecordProperty | None:
    """The ``property`` file at ``path``, or None when there is none.

    Raises:
        DataError: it is not three positive integers ``classes,height,width``.
    """
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    try:
        values = [int(value) for value in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 1:
        raise DataError(
            f"{path}: expected 'classes,height,width' (three positive integers), got {text[:60]!r}"
        )
    return RecordProperty(*values)


@dataclass(frozen=True)
class RecordSet:
    """What a RecordIO folder's images are.

    Attributes:
        reader: the ``.rec`` file.
        offsets: ``(N,)`` int64 byte offsets of the image records.
        labels: ``(N,)`` int64 class of each image (its first label).
        layout: ``"insightface"`` or ``"im2rec"``.
        identity_records: InsightFace's header: how many identity records it announces.
        property: the ``property`` file, when there is one.
    """

    reader: RecordReader
    offsets: np.ndarray
    labels: np.ndarray
    layout: str
    identity_records: int | None
    property: RecordProperty | None

    def summary(self) -> str:
        """One line: the file, its images and identities, its layout."""
        classes = len(np.unique(self.labels))
        shape = f", {self.property.height}x{self.property.width}" if self.property else ""
        return (
            f"{self.reader.path}: {len(self.labels):,} images of {classes:,} identities "
            f"({self.layout} layout{shape})"
        )


def _header_record(reader: RecordReader, index: RecordIndex) -> tuple[int, int] | None:
    """InsightFace's header, record 0: ``(first identity record, end)``, or None when the
    file has no such record (im2rec's layout: record 0, if any, is an image)."""
    if not np.any(index.keys == 0):
        return None
    offset = int(index.offsets_of(np.zeros(1, np.int64), "the header")[0])
    where = f"{reader.path}: byte {offset} (record 0)"
    record = unpack_image_record(reader.read(offset), where)
    if record.image or len(record.labels) < 2:
        return None
    first, end = record.labels[0], record.labels[1]
    if not (first.is_integer() and end.is_integer() and 1 <= first <= end < _LARGEST_LABEL):
        raise DataError(
            f"{where}: expected InsightFace's header labels (first identity record, end) "
            f"with 1 <= first <= end, got {list(record.labels)}"
        )
    return int(first), int(end)


def _first_labels(reader: RecordReader, offsets: np.ndarray, progress: bool) -> np.ndarray:
    """The class (first label) of each image record: ``(N,)`` int64, from its header.

    Raises:
        DataError: a damaged record, or a first label that is not an integer in
            ``0 .. 2**24 - 1``; naming the file and byte offset.
    """
    labels = np.empty(len(offsets), dtype=np.int64)
    with Progress(len(offsets), "reading record headers", enabled=progress, unit="rec") as bar:
        for position, offset in enumerate(offsets.tolist()):
            where = f"{reader.path}: byte {offset}"
            value = read_labels(reader, offset, where)[0]
            if not (value.is_integer() and 0 <= value < _LARGEST_LABEL):
                raise DataError(
                    f"{where}: expected a class label (an integer >= 0) as the first label, "
                    f"got {value:g}"
                )
            labels[position] = int(value)
            bar.update()
    return labels


def _check_not_cut(reader: RecordReader, index: RecordIndex) -> None:
    """Refuse a ``.rec`` file cut short: the record that reaches past its end, or else the
    first record the index places beyond it, is named (records 0 .. end are checked
    whether they are images or not).

    Raises:
        DataError: naming the file and the record's byte offset.
    """
    size = reader.size
    inside = index.offsets[index.offsets < size]
    if len(inside):
        reader.read(int(inside.max()), limit=0)  # its part header and length
    if len(inside) < len(index.offsets):
        reader.read(int(index.offsets[index.offsets >= size].min()), limit=0)


def scan_records(directory: Path, progress: bool = False) -> RecordSet:
    """Index the images of the RecordIO folder ``directory`` and read their classes.

    Raises:
        DataError: a file is missing or damaged (naming it, and the byte offset in the
            ``.rec`` file), or the labels do not fit ``property``'s class count.
    """
    missing = [name for name in (REC_FILE, INDEX_FILE) if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"{directory}: expected {REC_FILE} and {INDEX_FILE} (and, from InsightFace, "
            f"{PROPERTY_FILE}), missing {' and '.join(missing)}"
        )
    reader = RecordReader(directory / REC_FILE)
    index = read_index(directory / INDEX_FILE)
    _check_not_cut(reader, index)
    header = _header_record(reader, index)
    if header is None:
        layout, identities, offsets = "im2rec", None, index.offsets
    else:
        keys = np.arange(1, header[0], dtype=np.int64)
        layout, identities = "insightface", header[1] - header[0]
        offsets = index.offsets_of(keys, "an image, by the header record 0")
    if not len(offsets):
        raise DataError(f"{reader.path}: expected image records, found none")
    labels = _first_labels(reader, offsets, progress)
    found = read_property(directory / PROPERTY_FILE)
    if found is not None and int(labels.max()) >= found.classes:
        where = int(offsets[int(np.argmax(labels))])
        raise DataError(
            f"{reader.path}: byte {where}: label {int(labels.max())} is not below the "
            f"{found.classes} classes of {directory / PROPERTY_FILE}"
        )
    return RecordSet(reader, offsets, labels, layout, identities, found)


def read_rec(
    directory: Path,
    size: tuple[int, int] | None,
    fallback_size: tuple[int, int],
    *,
    progress: bool = False,
    workers: int = 0,
) -> RawSplits:
    """Decode (``workers == 0``) or index (``workers > 0``) the images of a RecordIO folder.

    Args:
        directory: the folder holding ``train.rec``, ``train.idx`` (and ``property``).
        size: output ``(height, width)``; None: ``property``'s size, else ``fallback_size``.
        fallback_size: the size when neither ``size`` nor ``property`` gives one.
        progress: report the files' images and identities, and the reading's progress, on
            stderr.
        workers: 0 decodes every image into memory; more indexes them (see the module).

    Raises:
        DataError: a missing or damaged file (see :func:`scan_records`), or an image that
            cannot be decoded.
    """
    found = scan_records(directory, progress)
    if progress:
        print(found.summary(), file=sys.stderr, flush=True)
    if size is None:
        size = (found.property.height, found.property.width) if found.property else fallback_size
    classes, labels = np.unique(found.labels, return_inverse=True)
    images = RecordImages(found.reader, found.offsets, size, 1.0, workers)
    return RawSplits(
        train_data=images if workers > 0 else images.decode_all(progress),
        train_labels=torch.from_numpy(labels.reshape(-1).astype(np.int64)),
        test_data=None,
        test_labels=None,
        class_names=[str(label) for label in classes.tolist()],
    )
