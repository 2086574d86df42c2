"""CIFAR-10 and CIFAR-100 from their python pickle batches (Krizhevsky, 2009).

``cifar-10-batches-py/`` holds ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
``batches.meta``; ``cifar-100-python/`` holds ``train``, ``test`` and ``meta`` (the 100 fine
labels are used). Each batch is a dict with ``data``, an ``(N, 3072)`` uint8 array of
channel-major 32x32 RGB images, and the labels.

The pickles are read with an unpickler that only builds plain containers and numpy arrays, so
a malicious file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marginkit.data.binfile import check_declared_sizes
from marginkit.data.errors import DataError
from marginkit.data.raw import RawSplits

__all__ = ["CIFAR_LAYOUT", "read_cifar"]

#: For each data set: its folder, training batches, test batch, meta file, label key and
#: the meta key of the class names.
CIFAR_LAYOUT: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{k}" for k in range(1, 6)],
        "test": "test_batch",
        "meta": "batches.meta",
        "labels": "labels",
        "names": "label_names",
        "classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": "test",
        "meta": "meta",
        "labels": "fine_labels",
        "names": "fine_label_names",
        "classes": 100,
    },
}

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_pickle(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
        check_declared_sizes(data)  # before the unpickler allocates what the file declares
        content = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{path}: expected a CIFAR python pickle batch ({error})") from error
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(content).__name__}")
    return {
        (key.decode("latin1") if isinstance(key, bytes) else str(key)): value
        for key, value in content.items()
    }


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _load_pickle(path)
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path}: expected keys 'data' and {label_key!r}, got {sorted(batch)}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{path}: expected 'data' as (N, 3072) uint8, got {data.shape} {data.dtype}"
        )
    if labels.shape != (data.shape[0],):
        raise DataError(
            f"{path}: expected {data.shape[0]} labels to match the images, got {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: expected labels in 0..{num_classes - 1}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())  # (N, 3, 32, 32)
    return images, torch.from_numpy(labels.astype(np.int64))


def _class_names(path: Path, key: str, num_classes: int) -> list[str]:
    if not path.is_file():
        return [str(k) for k in range(num_classes)]
    names = _load_pickle(path).get(key)
    if not isinstance(names, list) or len(names) != num_classes:
        raise DataError(f"{path}: expected {num_classes} class names under {key!r}")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def read_cifar(directory: Path, name: str) -> RawSplits:
    """Decode CIFAR-10 or CIFAR-100 from ``directory`` or its ``cifar-*`` sub-folder.

    Raises:
        DataError: a batch is missing or malformed; names the file.
    """
    layout = CIFAR_LAYOUT[name]
    folder = directory / layout["folder"]
    if not folder.is_dir():
        folder = directory
    files = [*layout["train"], layout["test"]]
    missing = [file for file in files if not (folder / file).is_file()]
    if missing:
        raise DataError(
            f"{folder}: missing {', '.join(missing)}; expected {layout['folder']}/ with "
            f"{', '.join(files)}"
        )
    parts = [_read_batch(folder / f, layout["labels"], layout["classes"]) for f in layout["train"]]
    test_images, test_labels = _read_batch(
        folder / layout["test"], layout["labels"], layout["classes"]
    )
    return RawSplits(
        train_data=torch.cat([images for images, _ in parts]),
        train_labels=torch.cat([labels for _, labels in parts]),
        test_data=test_images,
        test_labels=test_labels,
        class_names=_class_names(folder / layout["meta"], layout["names"], layout["classes"]),
        augment=True,
    )
