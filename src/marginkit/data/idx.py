"""MNIST-style IDX files: MNIST, Fashion-MNIST and KMNIST.

The IDX format (LeCun et al., "Gradient-based learning applied to document recognition",
1998): two zero bytes, a type code (0x08 for unsigned bytes), the number of dimensions, each
dimension as a big-endian 32-bit integer, then the values in row-major order. Files may be
gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from marginkit.data.errors import DataError
from marginkit.data.raw import RawSplits

__all__ = ["IDX_FILES", "find_idx_file", "read_idx", "read_idx_dataset"]

#: The four files of an IDX data set (each may also be present with a ``.gz`` suffix).
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_UNSIGNED_BYTE = 0x08

CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
}


def find_idx_file(directory: Path, name: str) -> Path | None:
    """The path of IDX file ``name`` in ``directory``, plain or ``.gz``, or None."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        head = handle.read(2)
    try:
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: not a readable gzip file ({error})") from error


def read_idx(path: Path, expected_dims: int, expected_shape: tuple[int | None, ...]) -> Tensor:
    """Read one unsigned-byte IDX file and check its header against its size.

    Args:
        path: the file (plain or gzip).
        expected_dims: number of dimensions (3 for images, 1 for labels).
        expected_shape: required size of each dimension, None where any size is allowed.

    Returns:
        ``uint8`` tensor of the declared shape.

    Raises:
        DataError: wrong magic number, type, dimensions or file size; names the file.
    """
    payload = _read_bytes(path)
    magic = 0x800 + expected_dims
    if len(payload) < 4:
        raise DataError(f"{path}: expected an IDX file, got only {len(payload)} bytes")
    found = int.from_bytes(payload[:4], "big")
    if found != magic:
        raise DataError(
            f"{path}: expected IDX magic number {magic} (unsigned bytes, {expected_dims}-D), "
            f"got {found}"
        )
    header = 4 + 4 * expected_dims
    if len(payload) < header:
        raise DataError(f"{path}: expected a {header}-byte IDX header, file has {len(payload)}")
    shape = tuple(
        int.from_bytes(payload[4 + 4 * k : 8 + 4 * k], "big") for k in range(expected_dims)
    )
    for k, (size, wanted) in enumerate(zip(shape, expected_shape, strict=True)):
        if wanted is not None and size != wanted:
            raise DataError(f"{path}: expected dimension {k} of size {wanted}, header says {size}")
    needed = header + int(np.prod(shape))
    if len(payload) != needed:
        raise DataError(
            f"{path}: expected {needed} bytes for shape {shape}, got {len(payload)} "
            "(truncated or wrong file)"
        )
    array = np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(shape)
    return torch.from_numpy(array.copy())


def read_idx_dataset(directory: Path, name: str) -> RawSplits:
    """Decode the four IDX files of ``name`` (``mnist``, ``fashion-mnist``, ``kmnist``).

    Raises:
        DataError: a file is missing, malformed, or images and labels disagree in count.
    """
    found = [find_idx_file(directory, file) for file in IDX_FILES]
    missing = [file for file, path in zip(IDX_FILES, found, strict=True) if path is None]
    if missing:
        raise DataError(
            f"{directory}: missing {', '.join(missing)} (plain or .gz); expected the files "
            f"{', '.join(IDX_FILES)}"
        )
    paths = [path for path in found if path is not None]  # all of them
    train_images = read_idx(paths[0], 3, (None, None, None))
    train_labels = read_idx(paths[1], 1, (train_images.shape[0],))
    test_images = read_idx(paths[2], 3, (None, *train_images.shape[1:]))
    test_labels = read_idx(paths[3], 1, (test_images.shape[0],))
    classes = CLASS_NAMES[name]
    for path, labels in ((paths[1], train_labels), (paths[3], test_labels)):
        if labels.numel() and int(labels.max()) >= len(classes):
            raise DataError(
                f"{path}: expected labels 0..{len(classes) - 1}, found {int(labels.max())}"
            )
    return RawSplits(
        train_data=train_images.unsqueeze(1),  # (N, 1, H, W)
        train_labels=train_labels.long(),
        test_data=test_images.unsqueeze(1),
        test_labels=test_labels.long(),
        class_names=list(classes),
    )
