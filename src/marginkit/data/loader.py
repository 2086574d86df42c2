"""``load_dataset``: find or download a data set's files, decode them, apply the options."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from marginkit.data.arrays import ArrayDataset, channel_statistics
from marginkit.data.bundle import DataBundle, VerificationPairs
from marginkit.data.errors import DataError
from marginkit.data.options import (
    check_classes,
    check_fraction,
    class_mapping,
    derived_generator,
    inject_symmetric_noise,
    stratified_split,
)
from marginkit.data.raw import RawSplits

__all__ = ["DATASETS", "DATA_ENVIRONMENT_VARIABLE", "assemble", "data_root", "load_dataset"]

#: The environment variable naming a folder of data sets by name (see :func:`data_root`).
DATA_ENVIRONMENT_VARIABLE = "MARGINKIT_DATA"

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = (
    "digits",
    "mnist",
    "fashion-mnist",
    "kmnist",
    "cifar10",
    "cifar100",
    "svhn",
    "folder",
    "lfw",
)

_DOWNLOADABLE = ("mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "svhn", "lfw")
_LFW_IMAGE_SIZE = (112, 96)


def _check_image_size(image_size: tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)
    ):
        raise ValueError(f"image_size: expected (height, width) positive ints, got {image_size!r}")
    return (int(image_size[0]), int(image_size[1]))


def _resolve_directory(
    name: str,
    data_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike | None,
    download: bool,
    progress: bool,
) -> Path:
    """The folder to read ``name``'s files from: ``data_dir``, else
    ``$MARGINKIT_DATA/<name>`` when that folder exists, else the cache (downloading into it
    if needed)."""
    if data_dir is not None:
        directory = Path(data_dir).expanduser()
        if not directory.is_dir():
            raise DataError(f"data_dir: {directory} is not a folder")
        return directory
    shared = data_root()
    if shared is not None and (shared / name).is_dir():
        return shared / name
    if name not in _DOWNLOADABLE:
        raise ValueError(f"data_dir: data set {name!r} has no download; give the folder to read")
    from marginkit.data.download import default_cache_dir, ensure_files

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return ensure_files(name, root / name, download=download, progress=progress)


def data_root() -> Path | None:
    """``$MARGINKIT_DATA``: a folder holding data sets by name (``mnist/``, ``lfw/`` ...),
    or None when the variable is unset or empty."""
    configured = os.environ.get(DATA_ENVIRONMENT_VARIABLE, "")
    return Path(configured).expanduser() if configured else None


def _read(
    name: str,
    directory: Path | None,
    image_size: tuple[int, int] | None,
    min_images_per_person: int,
    pairs_file: str,
    progress: bool,
) -> RawSplits:
    if name == "digits":
        from marginkit.data.digits import read_digits

        return read_digits()
    if directory is None:
        raise ValueError(f"data_dir: data set {name!r} needs a folder to read")
    if name in ("mnist", "fashion-mnist", "kmnist"):
        from marginkit.data.idx import read_idx_dataset

        return read_idx_dataset(directory, name)
    if name in ("cifar10", "cifar100"):
        from marginkit.data.cifar import read_cifar

        return read_cifar(directory, name)
    if name == "svhn":
        from marginkit.data.svhn import read_svhn

        return read_svhn(directory)
    if name == "folder":
        from marginkit.data.folder import read_folder

        return read_folder(directory, image_size or _LFW_IMAGE_SIZE, pairs_file, progress=progress)
    from marginkit.data.lfw import read_lfw

    return read_lfw(
        directory,
        image_size or _LFW_IMAGE_SIZE,
        min_images_per_person,
        pairs_file,
        progress=progress,
    )


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    classes: Sequence[int] | None = None,
    label_noise: float = 0.0,
    validation_fraction: float = 0.0,
    augment: bool | None = None,
    seed: int = 0,
    image_size: tuple[int, int] | None = None,
    min_images_per_person: int = 10,
    pairs_file: str = "pairsDevTest.txt",
    progress: bool = True,
) -> DataBundle:
    """Load a data set with the options experiments need.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: folder holding the data set's files as distributed (IDX files, pickle
            batches, ``.mat`` files, class sub-folders, the LFW tree). None:
            ``$MARGINKIT_DATA/<name>`` when the environment variable names a folder that
            holds it (e.g. ``MARGINKIT_DATA=~/data`` and ``~/data/mnist``), else the cache
            folder, downloading missing or corrupted files (not for ``digits``, bundled,
            or ``folder``, which needs a folder).
        cache_dir: cache root, default ``$MARGINKIT_CACHE`` or ``~/.cache/marginkit``;
            each data set lives in ``cache_dir/<name>``.
        download: allow downloading into the cache.
        classes: known classes for training, an open-set split: train/validation keep only
            these, relabelled ``0..k-1`` in the given order; the test set keeps every class,
            unknown ones labelled ``k, k+1, ...`` in increasing original order. None: all.
        label_noise: symmetric noise rate in [0, 1) applied to training labels only (not the
            validation split); ``train_clean_labels`` keeps the truth.
        validation_fraction: share of the training data held out, stratified, in [0, 1).
        augment: whether the trainer should random-crop + flip training batches; None uses
            the data set default (True for CIFAR-10/100 and SVHN).
        seed: seed for the validation split and the label noise (independent streams).
        image_size: ``(height, width)`` of ``folder``/``lfw`` images, default ``(112, 96)``.
        min_images_per_person: ``lfw``: keep DevTrain people with at least this many images.
        pairs_file: ``lfw`` (and ``folder``, when present) verification pairs file.
        progress: report download and image-decoding progress (with its ETA) on stderr.

    Returns:
        A :class:`DataBundle`.

    Raises:
        ValueError: unknown ``name`` or an option out of range (the message names it).
        DataError: missing, malformed or corrupted files (the message names the file).
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"name: unknown data set {name!r}; expected one of {', '.join(DATASETS)}")
    label_noise = check_fraction("label_noise", label_noise)
    validation_fraction = check_fraction("validation_fraction", validation_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if augment is not None and not isinstance(augment, bool):
        raise TypeError(f"augment: expected True, False or None, got {augment!r}")
    image_size = _check_image_size(image_size)
    if classes is not None:
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
            raise TypeError(f"classes: expected a sequence of ints, got {type(classes).__name__}")
        classes = list(classes)
        if label_noise > 0.0 and len(classes) == 1:
            raise ValueError("label_noise: needs at least 2 known classes to flip labels, got 1")
    if (
        isinstance(min_images_per_person, bool)
        or not isinstance(min_images_per_person, int)
        or min_images_per_person < 1
    ):
        raise ValueError(
            f"min_images_per_person: expected an int >= 1, got {min_images_per_person!r}"
        )
    if not isinstance(pairs_file, str) or not pairs_file:
        raise ValueError(f"pairs_file: expected a file name, got {pairs_file!r}")
    if name == "folder" and data_dir is None:
        raise ValueError("data_dir: the 'folder' data set needs the folder of class sub-folders")
    directory = (
        None
        if name == "digits"
        else _resolve_directory(name, data_dir, cache_dir, download, progress)
    )
    raw = _read(name, directory, image_size, min_images_per_person, pairs_file, progress)
    return assemble(
        name,
        raw,
        classes=classes,
        label_noise=label_noise,
        validation_fraction=validation_fraction,
        augment=augment,
        seed=seed,
    )


def assemble(
    name: str,
    raw: RawSplits,
    *,
    classes: Sequence[int] | None = None,
    label_noise: float = 0.0,
    validation_fraction: float = 0.0,
    augment: bool | None = None,
    seed: int = 0,
) -> DataBundle:
    """Apply the class subset, validation split and label noise to decoded splits.

    Normalisation statistics come from the whole training file (before any option), so they
    do not change with the options. Order: class subset, then the stratified validation split,
    then noise on what remains for training.
    """
    total_classes = len(raw.class_names)
    chosen = check_classes(classes, total_classes)
    mean, std = channel_statistics(raw.train_data, raw.value_scale)

    def dataset(data: torch.Tensor, labels: torch.Tensor) -> ArrayDataset:
        return ArrayDataset(data, labels, mean, std, raw.value_scale)

    train_data, train_labels = raw.train_data, raw.train_labels.long()
    test_labels = None if raw.test_labels is None else raw.test_labels.long()
    if chosen is None:
        num_classes = total_classes
        class_names = list(raw.class_names)
        test_class_names = list(raw.class_names)
    else:
        mapping = class_mapping(chosen, total_classes)  # (total_classes,)
        keep = torch.nonzero(torch.isin(train_labels, torch.tensor(chosen))).flatten()
        train_data, train_labels = train_data[keep], mapping[train_labels[keep]]
        if test_labels is not None:
            test_labels = mapping[test_labels]
        num_classes = len(chosen)
        order = torch.argsort(mapping).tolist()
        test_class_names = [raw.class_names[k] for k in order]
        class_names = test_class_names[:num_classes]

    validation = None
    validation_labels = None
    if validation_fraction > 0.0:
        kept, held = stratified_split(
            train_labels, validation_fraction, derived_generator(seed, "validation_split")
        )
        validation_labels = train_labels[held]
        validation = dataset(train_data[held], validation_labels)
        train_data, train_labels = train_data[kept], train_labels[kept]

    clean_labels = train_labels
    noisy_labels = train_labels
    if label_noise > 0.0:
        noisy_labels = inject_symmetric_noise(
            train_labels, label_noise, num_classes, derived_generator(seed, "label_noise")
        )
    train = ArrayDataset(
        train_data, noisy_labels, mean, std, raw.value_scale, clean_labels=clean_labels
    )
    test = None
    if raw.test_data is not None and test_labels is not None:
        test = dataset(raw.test_data, test_labels)
    pairs = None
    if raw.pairs is not None:
        pairs = VerificationPairs(
            images=dataset(
                raw.pairs.data, torch.full((raw.pairs.data.shape[0],), -1, dtype=torch.long)
            ),
            first=raw.pairs.first,
            second=raw.pairs.second,
            same=raw.pairs.same,
            fold=raw.pairs.fold,
            image_names=list(raw.pairs.image_names),
        )
    return DataBundle(
        name=name,
        train=train,
        validation=validation,
        test=test,
        num_classes=num_classes,
        input_shape=tuple(raw.train_data.shape[1:]),
        class_names=class_names,
        train_labels=noisy_labels,
        train_clean_labels=clean_labels,
        test_labels=test_labels,
        pairs=pairs,
        augment=raw.augment if augment is None else augment,
        test_class_names=test_class_names if test is not None else None,
        validation_labels=validation_labels,
        mean=tuple(mean),
        std=tuple(std),
    )
