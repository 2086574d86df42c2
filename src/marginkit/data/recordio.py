"""MXNet's image RecordIO, read and written without MXNet: the record framing, the image
header and the ``.idx`` index.

The format, as dmlc-core writes it (``include/dmlc/recordio.h``, ``src/recordio.cc``) and
MXNet packs images into it (``python/mxnet/recordio.py``: ``pack``, ``unpack``,
``MXIndexedRecordIO``); every number little-endian:

- **Framing.** A ``.rec`` file is a sequence of parts, each a ``uint32`` magic number
  ``0xced7230a``, a ``uint32`` word ``cflag << 29 | length`` (the 3-bit continuation flag and
  the 29-bit payload length), ``length`` payload bytes and zero bytes up to a multiple of 4.
  ``cflag`` 0 is a whole record; a record whose payload holds the magic number at a
  4-byte-aligned position is cut there into a first part (1), middle parts (2) and a last
  part (3), the magic number itself dropped: the reader puts it back between the parts.
- **Image record.** The payload of an image record starts with the header ``IfQQ``
  (24 bytes): ``flag``, ``label`` (float32), ``id``, ``id2``. With ``flag > 0``, ``flag``
  float32 labels follow the header (and ``label`` is 0); the encoded image (JPEG, PNG...)
  takes the rest.
- **Index.** The ``.idx`` text file has one line per record, ``key<TAB>offset``: the
  record's key (an integer) and the byte offset of its first part in the ``.rec`` file.

Reading checks every step: a part that does not start with the magic number, a length that
runs past the end of the file, a continuation flag out of place or a header longer than its
record is one :class:`~marginkit.data.DataError` naming the file and the byte offset, never
a silently wrong image.
"""

from __future__ import annotations

import array
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marginkit.data.errors import DataError

__all__ = [
    "IMAGE_HEADER_BYTES",
    "MAGIC",
    "ImageRecord",
    "RecordIndex",
    "RecordReader",
    "frame_record",
    "pack_image_record",
    "read_index",
    "read_labels",
    "unpack_image_record",
]

#: The number each part of a record starts with.
MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
#: A part's header: the magic number and ``cflag << 29 | length``.
_PART_HEADER = struct.Struct("<II")
#: The largest payload of one part (29 bits).
_LENGTH_MASK = (1 << 29) - 1
#: ``cflag`` of a whole record, a first, a middle and a last part.
_WHOLE, _FIRST, _MIDDLE, _LAST = 0, 1, 2, 3
#: The image header ``IfQQ``: flag, label, id, id2.
_IMAGE_HEADER = struct.Struct("<IfQQ")
IMAGE_HEADER_BYTES = _IMAGE_HEADER.size  # 24


def _padded(length: int) -> int:
    """``length`` rounded up to a multiple of 4."""
    return (length + 3) & ~3


def frame_record(payload: bytes) -> bytes:
    """One record's bytes in a ``.rec`` file: its parts, cut at each 4-byte-aligned magic
    number of ``payload`` (dropped there), and the padding to a multiple of 4.

    Raises:
        DataError: ``payload`` is ``2**29`` bytes or longer (the format's limit).
    """
    if len(payload) > _LENGTH_MASK:
        raise DataError(
            f"record: expected fewer than {1 << 29} bytes (RecordIO's limit), got {len(payload)}"
        )
    parts: list[bytes] = []
    start = 0
    for position in range(0, len(payload) - 3, 4):
        if payload[position : position + 4] == _MAGIC_BYTES:
            flag = _FIRST if start == 0 else _MIDDLE
            parts += [_PART_HEADER.pack(MAGIC, flag << 29 | (position - start))]
            parts += [payload[start:position]]
            start = position + 4
    flag = _WHOLE if start == 0 else _LAST
    parts += [_PART_HEADER.pack(MAGIC, flag << 29 | (len(payload) - start)), payload[start:]]
    parts += [bytes(_padded(len(payload)) - len(payload))]
    return b"".join(parts)


class RecordReader:
    """Random access to the records of one ``.rec`` file, by byte offset.

    Each process opens its own descriptor on first use (a ``DataLoader`` worker forked from
    the trainer does not share the trainer's), and reads with ``os.pread``, which moves no
    file position; the reader pickles without it.

    Args:
        path: the ``.rec`` file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._descriptor: int | None = None
        self._owner: int | None = None  # the process that opened the descriptor
        self._size = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_descriptor": None, "_owner": None}

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close this process's descriptor (the next read opens a new one)."""
        if self._descriptor is not None and self._owner == os.getpid():
            os.close(self._descriptor)
        self._descriptor = self._owner = None

    @property
    def size(self) -> int:
        """The file's size in bytes (when this process opened it)."""
        self._open()
        return self._size

    def _open(self) -> int:
        if self._descriptor is None or self._owner != os.getpid():
            try:
                descriptor = os.open(self.path, os.O_RDONLY)
            except OSError as error:
                raise DataError(f"{self.path}: cannot read ({error.strerror})") from None
            self._descriptor, self._owner = descriptor, os.getpid()
            self._size = os.fstat(descriptor).st_size
        return self._descriptor

    def _read_exactly(self, count: int, offset: int) -> bytes:
        descriptor = self._open()
        try:
            data = os.pread(descriptor, count, offset)
        except OSError as error:
            raise DataError(f"{self.path}: byte {offset}: cannot read ({error.strerror})") from None
        if len(data) != count:  # the file shrank since it was opened
            raise DataError(
                f"{self.path}: byte {offset}: expected {count} bytes, the file ends after "
                f"{len(data)}"
            )
        return data

    def read(self, offset: int, limit: int | None = None) -> bytes:
        """The payload of the record starting at byte ``offset``, its parts joined.

        Args:
            offset: where the record's first part starts (from the ``.idx`` file).
            limit: read at most this many payload bytes (the header of an image record),
                None: all.

        Raises:
            DataError: no record starts there, a part is cut short by the end of the file,
                or a continuation flag is out of place; naming the file and byte offset.
        """
        parts: list[bytes] = []
        wanted = math.inf if limit is None else limit
        position, first = offset, True
        while True:
            flag, length = self._part_header(position, offset, first)
            end = position + _PART_HEADER.size + length
            if end > self._size:
                raise DataError(
                    f"{self.path}: byte {position}: a record part of {length} bytes runs past "
                    f"the end of the file at byte {self._size} (a truncated file?)"
                )
            count = int(min(length, wanted))
            parts.append(self._read_exactly(count, position + _PART_HEADER.size))
            wanted -= count
            if flag in (_WHOLE, _LAST) or wanted <= 0:
                return b"".join(parts)[:limit]
            parts.append(_MAGIC_BYTES)  # where the writer cut the record
            wanted -= len(_MAGIC_BYTES)
            position, first = position + _PART_HEADER.size + _padded(length), False

    def _part_header(self, position: int, offset: int, first: bool) -> tuple[int, int]:
        """``(cflag, length)`` of the part at ``position`` of the record at ``offset``."""
        self._open()
        if position < 0 or position + _PART_HEADER.size > self._size:
            raise DataError(
                f"{self.path}: byte {position}: expected a record there, the file ends at "
                f"byte {self._size} (a truncated file, or an .idx offset past its end?)"
            )
        magic, word = _PART_HEADER.unpack(self._read_exactly(_PART_HEADER.size, position))
        if magic != MAGIC:
            raise DataError(
                f"{self.path}: byte {position}: expected a record starting with the magic "
                f"number 0x{MAGIC:08x}, found 0x{magic:08x} (a damaged file, or an .idx "
                "offset that is not a record's)"
            )
        flag, length = word >> 29, word & _LENGTH_MASK
        if flag not in ((_WHOLE, _FIRST) if first else (_MIDDLE, _LAST)):
            where = "starts" if first else f"continues (the record at byte {offset})"
            raise DataError(
                f"{self.path}: byte {position}: continuation flag {flag} where a record {where}"
            )
        return flag, length


@dataclass(frozen=True)
class ImageRecord:
    """An image record's payload, unpacked.

    Attributes:
        labels: the label floats (one, the header's, when ``flag`` is 0).
        key: the header's ``id``.
        image: the encoded image (empty for InsightFace's header and identity records).
    """

    labels: tuple[float, ...]
    key: int
    image: bytes


def pack_image_record(labels: Sequence[float], key: int, image: bytes) -> bytes:
    """An image record's payload: the ``IfQQ`` header (``flag`` 0 and the label for one
    label, as MXNet packs a number; else ``flag`` labels after it) and the encoded image."""
    if len(labels) == 1:
        return _IMAGE_HEADER.pack(0, float(labels[0]), key, 0) + image
    floats = np.asarray(labels, dtype="<f4").tobytes()
    return _IMAGE_HEADER.pack(len(labels), 0.0, key, 0) + floats + image


def unpack_image_record(payload: bytes, where: str) -> ImageRecord:
    """The header, labels and image of an image record's payload.

    Args:
        payload: the record's payload (or its start, for the labels only).
        where: the record, for a message (``train.rec: byte 1234``).

    Raises:
        DataError: the payload is shorter than its header and labels; or a label is NaN
            or infinite.
    """
    if len(payload) < IMAGE_HEADER_BYTES:
        raise DataError(
            f"{where}: expected an image record of at least {IMAGE_HEADER_BYTES} bytes "
            f"(its header), got {len(payload)}"
        )
    flag, label, key, _ = _IMAGE_HEADER.unpack_from(payload)
    start = IMAGE_HEADER_BYTES + 4 * flag
    if len(payload) < start:
        raise DataError(
            f"{where}: the header announces {flag} labels, expected {start} bytes of header "
            f"and labels, got {len(payload)}"
        )
    labels = (
        tuple(np.frombuffer(payload, "<f4", flag, IMAGE_HEADER_BYTES).tolist())
        if flag
        else (label,)
    )
    if not all(math.isfinite(value) for value in labels):
        raise DataError(f"{where}: expected finite labels, got {list(labels)}")
    return ImageRecord(labels=labels, key=key, image=payload[start:])


#: Label floats read with an image record's header at first (more: a second read).
_LABELS_AT_ONCE = 8


def read_labels(reader: RecordReader, offset: int, where: str) -> tuple[float, ...]:
    """The labels of the image record at byte ``offset``, reading its header and labels
    only (not the image).

    Raises:
        DataError: a damaged record (see :meth:`RecordReader.read`,
            :func:`unpack_image_record`).
    """
    head = reader.read(offset, limit=IMAGE_HEADER_BYTES + 4 * _LABELS_AT_ONCE)
    if len(head) >= IMAGE_HEADER_BYTES:
        flag = _IMAGE_HEADER.unpack_from(head)[0]
        if flag > _LABELS_AT_ONCE:
            head = reader.read(offset, limit=IMAGE_HEADER_BYTES + 4 * flag)
    return unpack_image_record(head, where).labels


@dataclass(frozen=True)
class RecordIndex:
    """The records a ``.idx`` file lists: ``(R,)`` int64 keys and byte offsets, in its order.

    Attributes:
        path: the ``.idx`` file.
        keys: ``(R,)`` the records' keys.
        offsets: ``(R,)`` where each record starts in the ``.rec`` file.
    """

    path: Path
    keys: np.ndarray
    offsets: np.ndarray

    def offsets_of(self, keys: np.ndarray, role: str) -> np.ndarray:
        """The offsets of the records ``keys`` (``(K,)`` ints).

        Raises:
            DataError: a key is not in the index (naming it and ``role``, what it is for).
        """
        order = np.argsort(self.keys, kind="stable")
        ordered = self.keys[order]
        found = np.clip(np.searchsorted(ordered, keys), 0, len(ordered) - 1)
        present = ordered[found] == keys
        if not np.all(present):
            missing = int(np.asarray(keys)[~present][0])
            raise DataError(f"{self.path}: expected record {missing} ({role}), found no such key")
        return self.offsets[order[found]]


def read_index(path: Path) -> RecordIndex:
    """Read a ``.idx`` file (``key<TAB>offset`` per line; blank lines skipped).

    The keys and offsets are held as compact arrays (8 bytes each), never as a Python object
    per record.

    Raises:
        DataError: a line that is not two integers (naming its number), a negative offset, a
            key listed twice, or no record at all.
    """
    keys, offsets = array.array("q"), array.array("q")
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                fields = line.split()
                if not fields:
                    continue
                try:
                    if len(fields) != 2:
                        raise ValueError(len(fields))
                    key, offset = int(fields[0]), int(fields[1])
                    if offset < 0:
                        raise ValueError(offset)
                except ValueError:
                    raise DataError(
                        f"{path}: line {number}: expected 'key<TAB>offset' (two integers, "
                        f"the offset >= 0), got {line[:60].decode(errors='replace').strip()!r}"
                    ) from None
                keys.append(key)
                offsets.append(offset)
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    index = RecordIndex(path, np.frombuffer(keys, np.int64), np.frombuffer(offsets, np.int64))
    if not len(index.keys):
        raise DataError(f"{path}: expected one 'key<TAB>offset' line per record, found none")
    unique, counts = np.unique(index.keys, return_counts=True)
    if np.any(counts > 1):
        raise DataError(f"{path}: key {int(unique[counts > 1][0])} is listed more than once")
    return index
