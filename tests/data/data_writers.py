"""Writers of miniature data set files in their real formats, independent of the loaders."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write ``array`` (uint8) as an IDX file, built independently of the loader."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_idx_dataset(
    directory: Path,
    train_count: int = 60,
    test_count: int = 20,
    compress: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A miniature MNIST-format data set; returns (train_x, train_y, test_x, test_y)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    train_x = rng.integers(0, 256, (train_count, 28, 28), dtype=np.uint8)
    train_y = (np.arange(train_count) % 10).astype(np.uint8)
    test_x = rng.integers(0, 256, (test_count, 28, 28), dtype=np.uint8)
    test_y = (np.arange(test_count) % 10).astype(np.uint8)
    write_idx(directory / "train-images-idx3-ubyte", train_x, compress)
    write_idx(directory / "train-labels-idx1-ubyte", train_y, compress)
    write_idx(directory / "t10k-images-idx3-ubyte", test_x, compress)
    write_idx(directory / "t10k-labels-idx1-ubyte", test_y, compress)
    return train_x, train_y, test_x, test_y
