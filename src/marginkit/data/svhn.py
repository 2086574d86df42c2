"""SVHN cropped digits (Netzer et al., NIPS 2011 workshop) from ``train_32x32.mat`` and
``test_32x32.mat``: ``X`` is ``(32, 32, 3, N)`` uint8 and ``y`` is ``(N, 1)`` with the digit
0 stored as label 10 (mapped back to 0 here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from marginkit.data.errors import DataError
from marginkit.data.raw import RawSplits

__all__ = ["SVHN_FILES", "read_svhn"]

SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")


def _read_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        content = loadmat(path)
    except (MatReadError, ValueError, TypeError, OSError, EOFError, NotImplementedError) as error:
        raise DataError(f"{path}: expected a MATLAB .mat file ({error})") from error
    if "X" not in content or "y" not in content:
        raise DataError(f"{path}: expected variables 'X' and 'y'")
    images, labels = np.asarray(content["X"]), np.asarray(content["y"]).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: expected 'X' as (32, 32, 3, N) uint8, got {images.shape}")
    if labels.shape != (images.shape[3],):
        raise DataError(f"{path}: expected {images.shape[3]} labels, got {labels.shape[0]}")
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: expected labels 1..10 (10 for the digit 0)")
    data = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)))  # (N, 3, 32, 32)
    return data, torch.from_numpy(labels.astype(np.int64) % 10)


def read_svhn(directory: Path) -> RawSplits:
    """Decode SVHN's training and test ``.mat`` files from ``directory``.

    Raises:
        DataError: a file is missing or malformed; names the file.
    """
    missing = [file for file in SVHN_FILES if not (directory / file).is_file()]
    if missing:
        raise DataError(
            f"{directory}: missing {', '.join(missing)}; expected {', '.join(SVHN_FILES)}"
        )
    train_data, train_labels = _read_mat(directory / SVHN_FILES[0])
    test_data, test_labels = _read_mat(directory / SVHN_FILES[1])
    return RawSplits(
        train_data=train_data,
        train_labels=train_labels,
        test_data=test_data,
        test_labels=test_labels,
        class_names=[str(digit) for digit in range(10)],
        augment=True,
    )
