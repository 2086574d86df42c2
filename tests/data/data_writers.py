"""Writers of miniature data set files in their real formats, independent of the loaders."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

#: The real data sets (``mnist/``, ``lfw/``): ``$MARGINKIT_DATA``, by default the
#: ``shared/data`` folder beside the project folder.
SHARED_DATA = Path(
    os.environ.get("MARGINKIT_DATA")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data"
)


def needs_real(name: str) -> pytest.MarkDecorator:
    """Skip a test of the real data set ``name`` when it is absent, unless
    ``MARGINKIT_DATA`` is set (as ``.ci/run`` does): then a missing folder fails the test,
    so CI never skips for missing data."""
    explicit = bool(os.environ.get("MARGINKIT_DATA"))
    return pytest.mark.skipif(
        not explicit and not (SHARED_DATA / name).is_dir(),
        reason=f"real {name} not found in {SHARED_DATA}; set MARGINKIT_DATA to its parent",
    )


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


def write_cifar(
    directory: Path, name: str = "cifar10", per_batch: int = 12, test_count: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Miniature CIFAR pickle batches in the distributed layout (bytes keys, like python 2).

    Returns:
        ``(train_x (N, 3, 32, 32), train_y, test_x, test_y)`` as numpy arrays.
    """
    import pickle

    rng = np.random.default_rng(seed)
    classes = 10 if name == "cifar10" else 100
    folder = directory / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    batches = [f"data_batch_{k}" for k in range(1, 6)] if name == "cifar10" else ["train"]
    train_x, train_y = [], []
    for batch in batches:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, classes, per_batch)]
        content = {b"data": data, label_key: labels, b"batch_label": batch.encode()}
        (folder / batch).write_bytes(pickle.dumps(content, protocol=2))
        train_x.append(data.reshape(-1, 3, 32, 32))
        train_y += labels
    test = rng.integers(0, 256, (test_count, 3072), dtype=np.uint8)
    test_labels = [int(v) for v in rng.integers(0, classes, test_count)]
    test_name = "test_batch" if name == "cifar10" else "test"
    (folder / test_name).write_bytes(pickle.dumps({b"data": test, label_key: test_labels}))
    names = [f"class{k}".encode() for k in range(classes)]
    meta_name, meta_key = (
        ("batches.meta", b"label_names") if name == "cifar10" else ("meta", b"fine_label_names")
    )
    (folder / meta_name).write_bytes(pickle.dumps({meta_key: names}))
    return (
        np.concatenate(train_x),
        np.array(train_y),
        test.reshape(-1, 3, 32, 32),
        np.array(test_labels),
    )


def write_svhn(
    directory: Path, train_count: int = 30, test_count: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Miniature SVHN ``.mat`` files (X (32, 32, 3, N), y (N, 1) with 10 for the digit 0).

    Returns:
        ``(train_x (N, 3, 32, 32), train_y in 0..9, test_x, test_y)``.
    """
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    result = []
    for file, count in (("train_32x32.mat", train_count), ("test_32x32.mat", test_count)):
        images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
        digits = np.arange(count) % 10
        stored = np.where(digits == 0, 10, digits).reshape(-1, 1).astype(np.uint8)
        savemat(directory / file, {"X": images.transpose(2, 3, 1, 0), "y": stored})
        result += [images, digits]
    return result[0], result[1], result[2], result[3]


def write_image(path: Path, array: np.ndarray) -> None:
    """Save an (H, W, 3) uint8 array as an image (format from the extension)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_lfw(directory: Path, people: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """A miniature LFW tree: ``lfw-deepfunneled/<P>/<P>_NNNN.png`` images (lossless, so the
    loader's pixels can be compared), plus people and pairs files written by the test.

    Each image is a flat colour, distinct per image, so crops keep the colour exactly.

    Returns:
        File name (``P/P_NNNN.jpg``, the protocol's spelling) -> its (3,) colour.
    """
    rng = np.random.default_rng(seed)
    colours = {}
    for person, count in people.items():
        for number in range(1, count + 1):
            colour = rng.integers(0, 256, 3, dtype=np.uint8)
            name = f"{person}/{person}_{number:04d}"
            write_image(
                directory / "lfw-deepfunneled" / f"{name}.png",
                np.broadcast_to(colour, (250, 250, 3)).copy(),
            )
            colours[f"{name}.jpg"] = colour
    return colours


def write_image_folder(
    directory: Path,
    classes: int = 3,
    per_class: int = 4,
    size: tuple[int, int] = (20, 24),
    extension: str = "png",
) -> list[str]:
    """A miniature ``folder`` data set: ``c<k>/<i>.png`` random RGB images of ``size``
    (height, width), lossless (or ``c<k>/<i>.<extension>``, e.g. ``jpg``).

    Returns:
        The images' paths relative to ``directory``, sorted (the loader's order).
    """
    rng = np.random.default_rng(7)
    names = []
    for label in range(classes):
        for index in range(per_class):
            name = f"c{label}/{index}.{extension}"
            write_image(directory / name, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
            names.append(name)
    return sorted(names)


#: The people of :func:`write_pairs_tree`: name -> number of images.
PAIRS_PEOPLE = {"Ann_A": 3, "Ben_B": 2, "Cid_C": 2, "Dee_D": 1}
#: Its pairs.txt, View 2: 2 folds of 2 matched and 2 mismatched pairs; Ann_A_0001 is in
#: three pairs.
PAIRS_TXT = (
    "2\t2\n"
    "Ann_A\t1\t2\nBen_B\t1\t2\nAnn_A\t1\tBen_B\t1\nCid_C\t1\tDee_D\t1\n"
    "Ann_A\t1\t3\nCid_C\t2\t1\nAnn_A\t2\tDee_D\t1\nBen_B\t2\tCid_C\t2\n"
)


def write_pairs_tree(directory: Path, seed: int = 0) -> Path:
    """A miniature LFW tree of textured 40x32 JPEG images (a mirror or crop changes them)
    and its ``pairs.txt`` (:data:`PAIRS_TXT`); returns the image folder."""
    rng = np.random.default_rng(seed)
    root = directory / "lfw-deepfunneled"
    for person, count in PAIRS_PEOPLE.items():
        for number in range(1, count + 1):
            pixels = rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)
            write_image(root / person / f"{person}_{number:04d}.jpg", pixels)
    (directory / "pairs.txt").write_text(PAIRS_TXT)
    return root
